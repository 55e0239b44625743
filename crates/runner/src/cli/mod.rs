//! The `ext-runner` command line: one clap `Args` struct per command, each
//! with a `run`, next to the library functions behind it (which tests and
//! other tools call directly). Each function returns text for the user or
//! an error whose message names the file or field at fault; `run` prints
//! it and chooses the exit code.
//!
//! - `serve`: `serve`, `dev` and `config check` (the process around
//!   [`crate::serve`]);
//! - `new`: `new` (templates in [`crate::scaffold`]);
//! - `bundle`: `pack`, `publish`, `compile`, `inspect`;
//! - `imports`: the component import analysis `pack` and `publish` share;
//! - `exec`: `exec`;
//! - `signing`: `keygen`, `sign`, `verify`;
//! - `secrets`: `secrets keygen`, `secrets seal`;
//! - `registry`: `registry publish`, `install`, `upgrade`, … (a client of
//!   the registry role's routes);
//! - `files`: file helpers; `logging`: the log subscriber.

pub mod bundle;
pub mod exec;
pub mod files;
pub mod gateway;
pub mod grant;
pub use crate::imports;
mod logging;
mod new;
pub mod registry;
pub mod secrets;
mod serve;
pub mod signing;
#[cfg(test)]
mod tests;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use bundle::*;
pub use exec::*;
pub use files::*;
pub use imports::*;
pub use secrets::*;
pub use signing::*;

/// Exit status for configuration errors (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "ext-runner",
    version,
    about = "Runs extension handlers as sandboxed WebAssembly components."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve POST /v1/execute. Settings come from the environment (see the README); flags override.
    Serve(serve::ServeArgs),
    /// Create a new extension project from a template: manifest.json, ui/, README.md, the
    /// handler and its unit tests (Rust: Cargo.toml, src/lib.rs; TypeScript: package.json,
    /// src/index.ts, test/).
    New(new::NewCommand),
    /// Build an extension project, serve it on loopback as `serve --dev` does (dev key, no
    /// token, a printed curl), and rebuild and republish it whenever its sources change.
    Dev(serve::DevArgs),
    /// Pack an extension directory into a deterministic bundle.tar.zst and print its content hash.
    Pack(bundle::PackCommand),
    /// Verify a bundle's signature and upload bundle, signature, certificates and manifest.json
    /// under the key layout (default sha256/<hex>/bundle.tar.zst). Idempotent; never overwrites
    /// different content. S3 settings come from the BUNDLE_STORAGE_* variables, as for serve.
    Publish(bundle::PublishArgs),
    /// Show a bundle's content hash, manifest, endpoints, capabilities and files.
    Inspect(bundle::InspectCommand),
    /// Add precompiled/<arch>-<os>.cwasm (native code for this engine) to a bundle; sign it afterwards.
    Compile(bundle::CompileCommand),
    /// Run one handler locally (no server) and print the response.
    Exec(exec::ExecCommand),
    /// Generate a signing key (ECDSA P-256 unless --ed25519); writes the public key beside it
    /// (key.pem -> key.pub.pem) and prints its fingerprint.
    Keygen(signing::KeygenCommand),
    /// Write a detached signature of a bundle's archive bytes (base64, as
    /// `openssl dgst -sha256 -sign KEY BUNDLE | base64 -w0` writes it).
    Sign(signing::SignCommand),
    /// Check a bundle's signature and print who signed it, or exit non-zero with the reason.
    Verify(signing::VerifyCommand),
    /// Validate the configuration and print the effective settings (secrets redacted).
    #[command(subcommand)]
    Config(serve::ConfigCommand),
    /// Secret envelopes for `cap:secrets.get`.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Execution grants: the key pair (RUNNER_GRANT_KEYS) and a signed grant for one envelope.
    #[command(subcommand)]
    Grant(grant::GrantCommand),
    /// Gateway helpers: `gateway token` prints a user token signed with GATEWAY_JWT_SECRET.
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// Talk to a registry (REGISTRY_URL, REGISTRY_TOKEN): publish, install, upgrade, roll back,
    /// uninstall, list, show, history, yank, revoke.
    Registry(registry::RegistryArgs),
}

impl Cli {
    /// Run the command on a fresh async runtime.
    pub fn run(self) -> ExitCode {
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: starting the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match self.command {
            Command::Serve(args) => args.run(&runtime),
            Command::Dev(args) => args.run(&runtime),
            Command::Config(command) => command.run(),
            Command::New(command) => report(command.run()),
            Command::Pack(command) => report(command.run()),
            Command::Publish(args) => report(args.run(&runtime)),
            Command::Inspect(command) => report(command.run()),
            Command::Compile(command) => report(command.run()),
            Command::Exec(command) => report(command.run(&runtime)),
            Command::Keygen(command) => report(command.run()),
            Command::Sign(command) => report(command.run()),
            Command::Verify(command) => report(command.run()),
            Command::Secrets(command) => report(command.run()),
            Command::Grant(command) => report(command.run()),
            Command::Gateway(command) => report(command.run()),
            Command::Registry(args) => report(args.run(&runtime)),
        }
    }
}

/// The exit code of a command's outcome; the error printed with its causes.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The process environment, read once by the commands that take settings from it.
fn environment() -> std::collections::HashMap<String, String> {
    std::env::vars().collect()
}
