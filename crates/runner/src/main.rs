//! The `ext-runner` binary: parse arguments, load and validate
//! configuration, initialise logging, call the library.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine as _;
use clap::{Parser, Subcommand};
use ext_runner::config::{Config, LogFormat, Overrides};
use ext_runner::server::{AppState, serve};
use ext_runner::{Runner, cli};

/// Exit status for configuration errors (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "ext-runner",
    version,
    about = "Runs extension handlers as sandboxed WebAssembly components."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve POST /v1/execute. Settings come from the environment (see the README); flags override.
    Serve {
        /// Development mode: no service token needed on loopback, pretty logs, and the
        /// extension in --extension is packed and published at start-up.
        #[arg(long)]
        dev: bool,
        /// Address to listen on [env: RUNNER_LISTEN, default 127.0.0.1:8080; PORT=n means 0.0.0.0:n].
        #[arg(long)]
        listen: Option<String>,
        /// Runner state directory [env: RUNNER_DATA_DIR].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Cache directory for unpacked bundles and compiled code [env: RUNNER_CACHE_DIR].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Bundle store URL, e.g. file:///srv/bundles [env: BUNDLE_STORAGE_URL].
        #[arg(long)]
        store: Option<String>,
        /// With --dev: extension directory to pack and publish at start-up.
        #[arg(long, default_value = "examples/hello")]
        extension: PathBuf,
        /// Time in-flight requests get to finish after SIGTERM, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        shutdown_grace_ms: u64,
    },
    /// Pack an extension directory into a deterministic bundle.tar.zst and print its content hash.
    Pack {
        dir: PathBuf,
        /// Output archive path.
        #[arg(long)]
        out: PathBuf,
    },
    /// Publish a bundle into a store under sha256/<hex>/bundle.tar.zst (idempotent).
    Publish {
        bundle: PathBuf,
        /// Store URL, e.g. file:///srv/bundles.
        #[arg(long)]
        store: String,
    },
    /// Show a bundle's content hash, manifest, endpoints, capabilities and files.
    Inspect { bundle: PathBuf },
    /// Run one handler locally (no server) and print the response.
    Exec {
        /// A bundle.tar.zst or an extension directory.
        target: PathBuf,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long, default_value = "/")]
        path: String,
        /// Request header as name:value (repeatable).
        #[arg(long = "header", value_name = "NAME:VALUE")]
        headers: Vec<String>,
        /// Request body: literal text, or @file to read a file.
        #[arg(long)]
        body: Option<String>,
        /// Tenant id to run as.
        #[arg(long, default_value = "local")]
        tenant: String,
        /// Execution time limit in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve {
            dev,
            listen,
            data_dir,
            cache_dir,
            store,
            extension,
            shutdown_grace_ms,
        } => {
            let env: HashMap<String, String> = std::env::vars().collect();
            let overrides = Overrides {
                listen,
                data_dir,
                cache_dir,
                bundle_store: store,
                dev,
            };
            let config = match Config::load(&env, &overrides) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            init_logging(config.log_format);
            let grace = std::time::Duration::from_millis(shutdown_grace_ms);
            report(runtime.block_on(run_server(config, extension, grace)))
        }
        Command::Pack { dir, out } => report(cli::pack(&dir, &out).map(|digest| {
            println!("{digest}");
        })),
        Command::Publish { bundle, store } => report(cli::publish(&bundle, &store).map(|(digest, new)| {
            println!("{digest} {}", if new { "published" } else { "already present" });
        })),
        Command::Inspect { bundle } => report(cli::inspect(&bundle).map(|text| print!("{text}"))),
        Command::Exec {
            target,
            method,
            path,
            headers,
            body,
            tenant,
            timeout_ms,
        } => {
            init_logging(LogFormat::Pretty);
            let args = match exec_args(target, method, path, headers, body, tenant, timeout_ms) {
                Ok(args) => args,
                Err(e) => return report(Err(e)),
            };
            report(runtime.block_on(cli::exec(args)).map(|response| {
                println!("status: {}", response.status);
                for (name, value) in &response.headers {
                    println!("{name}: {value}");
                }
                println!();
                let body = response.body.unwrap_or_default();
                match std::str::from_utf8(&body) {
                    Ok(text) => println!("{text}"),
                    Err(_) => println!(
                        "(binary body, base64) {}",
                        base64::engine::general_purpose::STANDARD.encode(&body)
                    ),
                }
            }))
        }
    }
}

fn exec_args(
    target: PathBuf,
    method: String,
    path: String,
    headers: Vec<String>,
    body: Option<String>,
    tenant: String,
    timeout_ms: Option<u64>,
) -> anyhow::Result<cli::ExecArgs> {
    let headers = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--header `{h}`: expected NAME:VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = match body {
        Some(text) => match text.strip_prefix('@') {
            Some(file) => Some(std::fs::read(file).map_err(|e| anyhow::anyhow!("--body @{file}: {e}"))?),
            None => Some(text.into_bytes()),
        },
        None => None,
    };
    Ok(cli::ExecArgs {
        target,
        method,
        path,
        headers,
        body,
        tenant,
        timeout_ms,
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn run_server(config: Config, extension: PathBuf, grace: std::time::Duration) -> anyhow::Result<()> {
    let dev = config.dev;
    let listen = config.listen;
    let no_token = config.service_tokens.is_empty();
    let runner = Arc::new(Runner::new(config)?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, store = %runner.config().bundle_store, "ext-runner listening");
    if no_token {
        tracing::warn!("--dev without RUNNER_SERVICE_TOKEN: /v1/execute accepts unauthenticated calls on loopback");
    }
    if dev {
        announce_dev_extension(&runner, &extension, local)?;
    }
    let state = AppState::new(runner);
    serve(listener, state, shutdown_signal(), grace).await?;
    tracing::info!("ext-runner stopped");
    Ok(())
}

/// `serve --dev`: pack and publish the example so the printed curl works.
fn announce_dev_extension(runner: &Runner, dir: &std::path::Path, local: std::net::SocketAddr) -> anyhow::Result<()> {
    let archive = ext_bundle::pack_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "--extension {}: {e} (build it first: scripts/build-example)",
            dir.display()
        )
    })?;
    let (digest, _) = runner.bundle_store().publish(&archive)?;
    let (_, manifest) = ext_bundle::list(&archive, &ext_bundle::UnpackLimits::default())?;
    let auth = match runner.config().service_tokens.first() {
        Some(_) => " -H \"authorization: Bearer $RUNNER_SERVICE_TOKEN\"",
        None => "",
    };
    let example = format!(
        r#"curl -s http://{local}/v1/execute{auth} -H 'content-type: application/json' -d '{{"context":{{"tenant_id":"dev-tenant","extension_id":"{name}","content_hash":"{digest}"}},"http":{{"method":"GET","path":"/hello"}}}}'"#,
        name = manifest.name,
    );
    tracing::info!(extension = %manifest.name, content_hash = %digest, "dev extension published");
    println!(
        "\n{} {} is ready. Try:\n\n  {example}\n",
        manifest.name, manifest.version
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
