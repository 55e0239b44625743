//! `ext-runner registry …`: a client for the registry role's HTTP routes
//! (`/v1/registry/…`), one subcommand per job.
//!
//! - `client`: the connection flags (`--registry`, `--token`), one call, and
//!   the registry's error answer as [`client::CallError`];
//! - `publish`: `publish`;
//! - `installs`: `install`, `upgrade`, `rollback`, `uninstall`, `history`,
//!   `list --tenant`, `reseal`;
//! - `secrets`: `secrets` (from a file, never the command line);
//! - `catalogue`: `list`, `show`, `yank`, `revoke`;
//! - `output`: what a command shows, JSON (`--json`) or a summary.

pub mod catalogue;
pub mod client;
pub mod installs;
pub mod output;
pub mod publish;
pub mod secrets;

use clap::Subcommand;

use client::{Client, Connection};
use installs::Direction;
use output::Shown;

/// `ext-runner registry`.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Print the registry's JSON answer instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: RegistryCommand,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Publish a signed bundle (201 new, 200 when the same bytes are already published).
    Publish(publish::PublishArgs),
    /// Install a version for a tenant (a first install only: an installed extension is
    /// changed with `upgrade` or `rollback`).
    Install(installs::InstallArgs),
    /// Move a tenant's install to a newer version, keeping its grants and config unless
    /// flags say otherwise; refused if the install changed since it was read.
    Upgrade(installs::ChangeArgs),
    /// Move a tenant's install to an older version (default: the one before the current
    /// one in its history), as `upgrade` does.
    Rollback(installs::ChangeArgs),
    /// Uninstall an extension from a tenant (with --purge: and remove its KV data).
    Uninstall(installs::UninstallArgs),
    /// Replace a tenant's install secrets with the JSON object in --file (`-`: stdin);
    /// the registry seals them, and no command shows a value again.
    Secrets(secrets::SecretsArgs),
    /// The catalogue of extensions, or with --tenant that tenant's installs.
    List {
        /// List this tenant's installs instead of the catalogue.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// One extension with its versions.
    Show {
        /// The extension's name.
        name: String,
    },
    /// The history of a tenant's install, oldest first (action, version, actor, time).
    History(installs::InstallRef),
    /// Yank a version: no new installs of it; installs on it keep running it.
    Yank {
        #[command(flatten)]
        version: catalogue::VersionRef,
        /// Un-yank it.
        #[arg(long)]
        undo: bool,
    },
    /// Revoke a version: no installs of it, and UI validation stops for installs on it.
    Revoke(catalogue::VersionRef),
    /// Re-seal every install's secrets under the registry's current RUNNER_SECRETS_KEY
    /// (admin token; after a key rotation, before dropping the previous key).
    Reseal,
}

impl RegistryArgs {
    /// Run the command and print what it shows.
    ///
    /// # Errors
    /// The command's: a file or flag value at fault (named), the registry's
    /// refusal (`registry: <status> <code>: <message> (request <id>)`), or
    /// no registry at the URL.
    pub fn run(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let client = Client::new(&self.connection)?;
        let shown = runtime.block_on(self.command.run(&client))?;
        print!("{}", shown.render(self.json));
        Ok(())
    }
}

impl RegistryCommand {
    /// What the command shows.
    ///
    /// # Errors
    /// As [`RegistryArgs::run`].
    pub async fn run(&self, client: &Client) -> anyhow::Result<Shown> {
        match self {
            RegistryCommand::Publish(args) => {
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
                publish::publish(client, args, progress).await
            }
            RegistryCommand::Install(args) => installs::install(client, args).await,
            RegistryCommand::Upgrade(args) => installs::change(client, args, Direction::Upgrade).await,
            RegistryCommand::Rollback(args) => installs::change(client, args, Direction::Rollback).await,
            RegistryCommand::Uninstall(args) => installs::uninstall(client, args).await,
            RegistryCommand::Secrets(args) => secrets::put_secrets(client, args).await,
            RegistryCommand::List { tenant: None } => catalogue::extensions(client).await,
            RegistryCommand::List { tenant: Some(tenant) } => installs::installs(client, tenant).await,
            RegistryCommand::Show { name } => catalogue::extension(client, name).await,
            RegistryCommand::History(args) => installs::history(client, args).await,
            RegistryCommand::Yank { version, undo } => catalogue::yank(client, version, *undo).await,
            RegistryCommand::Revoke(version) => catalogue::revoke(client, version).await,
            RegistryCommand::Reseal => installs::reseal(client).await,
        }
    }
}
