//! The `ext-runner` binary: parse arguments, load and validate
//! configuration, initialise logging, call the library.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use base64::Engine as _;
use clap::{Parser, Subcommand};
use ext_bundle::signature::KeyAlgorithm;
use ext_runner::config::{Config, LogFormat, Overrides};
use ext_runner::scaffold::Lang;
use ext_runner::server::{AppState, serve};
use ext_runner::store::object::PutOutcome;
use ext_runner::{Runner, cli, devloop};

/// Exit status for configuration errors (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

/// Time in-flight requests get after Ctrl-C in `ext-runner dev`: a local
/// loop has nothing worth waiting long for.
const DEV_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

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
        /// TOML file with settings (same names as the environment, which overrides it).
        #[arg(long)]
        config: Option<PathBuf>,
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
    /// Create a new extension project from a template: manifest.json, ui/, README.md, the
    /// handler and its unit tests (Rust: Cargo.toml, src/lib.rs; TypeScript: package.json,
    /// src/index.ts, test/).
    New {
        /// Directory to create, and the extension's name: `hello` becomes `com.example.hello`
        /// in manifest.json; a reverse-domain name like `com.acme.hello` is used as it is.
        name: String,
        /// Language of the handler.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK to depend on (Rust: the ext-sdk crate, crates/sdk; TypeScript: sdk/ts)
        /// [default: the one beside the source this binary was built from].
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Build an extension project, serve it on loopback as `serve --dev` does (dev key, no
    /// token, a printed curl), and rebuild and republish it whenever its sources change.
    Dev {
        /// The project: Cargo.toml (Rust, built for wasm32-wasip2) or package.json (`npm run build`).
        dir: PathBuf,
        /// Address to listen on [env: RUNNER_LISTEN, default 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
        /// Runner state directory [env: RUNNER_DATA_DIR].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML file with settings (same names as the environment, which overrides it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Pack an extension directory into a deterministic bundle.tar.zst and print its content hash.
    Pack {
        dir: PathBuf,
        /// Output archive path.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a bundle's signature and upload bundle, signature, certificates and manifest.json
    /// under the key layout (default sha256/<hex>/bundle.tar.zst). Idempotent; never overwrites
    /// different content. S3 settings come from the BUNDLE_STORAGE_* variables, as for serve.
    Publish {
        bundle: PathBuf,
        /// Store URL: file:///srv/bundles or s3://bucket/prefix [env: BUNDLE_STORAGE_URL].
        #[arg(long, env = "BUNDLE_STORAGE_URL")]
        store: String,
        /// Detached signature (base64, from `ext-runner sign` or openssl); uploaded as bundle.sig.
        #[arg(long)]
        sig: Option<PathBuf>,
        /// Certificate chain (leaf first) of a certificate signature; uploaded as bundle.pem.
        #[arg(long, requires = "sig")]
        certs: Option<PathBuf>,
        /// Trust bundle to verify --sig against: a PEM file or inline PEM.
        #[arg(long, env = "SIGNING_TRUST_BUNDLE", hide_env_values = true)]
        trust: Option<String>,
        /// Value of {tenant} in BUNDLE_STORAGE_KEY_LAYOUT.
        #[arg(long)]
        tenant: Option<String>,
        /// Value of {extension} in BUNDLE_STORAGE_KEY_LAYOUT [default: the manifest's name].
        #[arg(long)]
        extension: Option<String>,
        /// Publish without a verified signature (no --sig, or no trust bundle to check it).
        #[arg(long)]
        allow_unsigned: bool,
    },
    /// Show a bundle's content hash, manifest, endpoints, capabilities and files.
    Inspect { bundle: PathBuf },
    /// Add precompiled/<arch>-<os>.cwasm (native code for this engine) to a bundle; sign it afterwards.
    Compile {
        bundle: PathBuf,
        /// Output archive path (default: replace the input).
        #[arg(long)]
        out: Option<PathBuf>,
    },
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
    /// Generate a signing key (ECDSA P-256 unless --ed25519); writes the public key beside it
    /// (key.pem -> key.pub.pem) and prints its fingerprint.
    Keygen {
        /// Private key file to create (PKCS#8 PEM, mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Make an Ed25519 key instead of ECDSA P-256.
        #[arg(long)]
        ed25519: bool,
    },
    /// Write a detached signature of a bundle's archive bytes (base64, as
    /// `openssl dgst -sha256 -sign KEY BUNDLE | base64 -w0` writes it).
    Sign {
        bundle: PathBuf,
        /// Private key (PEM: PKCS#8 or SEC1 "EC PRIVATE KEY").
        #[arg(long)]
        key: PathBuf,
        /// Leaf certificate of the key (code signing); writes bundle.pem beside --out.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Intermediate certificates to put in bundle.pem after the leaf.
        #[arg(long, requires = "cert")]
        chain: Option<PathBuf>,
        /// Signature file to write, e.g. bundle.sig.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle's signature and print who signed it, or exit non-zero with the reason.
    Verify {
        bundle: PathBuf,
        /// Signature file (base64).
        #[arg(long)]
        sig: PathBuf,
        /// Trust bundle: a PEM file or inline PEM with PUBLIC KEY and CERTIFICATE (root) blocks.
        #[arg(long, env = "SIGNING_TRUST_BUNDLE", hide_env_values = true)]
        trust: String,
        /// bundle.pem with the leaf certificate and intermediates, for certificate signatures.
        #[arg(long)]
        certs: Option<PathBuf>,
    },
    /// Validate the configuration and print the effective settings (secrets redacted).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Secret envelopes for `cap:secrets.get`.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load defaults < --config file < environment, report every problem (exit 64) or print the result.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Validate as `serve --dev` would.
        #[arg(long)]
        dev: bool,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Print a new random runner key (base64) for RUNNER_SECRETS_KEY.
    Keygen,
    /// Seal a JSON object of secret name → value for one tenant and extension; prints the
    /// `secret_envelope` JSON for the execute envelope. Key from RUNNER_SECRETS_KEY(_FILE).
    Seal {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        extension: String,
        /// RFC 3339 time after which the runner refuses the envelope (e.g.
        /// 2026-12-31T23:59:59Z); bound into the ciphertext, so it cannot be
        /// removed or extended.
        #[arg(long)]
        expires_at: Option<String>,
        /// JSON file with the secrets (default: standard input).
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Before configuration: the default connection caps are sized from it.
    ext_runner::limits::raise_fd_limit();
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
            config: config_file,
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
            let config = match load_config(&env, config_file.as_deref(), &overrides) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let _otlp = init_logging(
                config.server.log_format,
                env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .map(String::as_str)
                    .filter(|v| !v.is_empty()),
            );
            let grace = std::time::Duration::from_millis(shutdown_grace_ms);
            let dev_extension = DevExtension {
                dir: extension,
                rebuild: None,
            };
            report(runtime.block_on(run_server(config, dev_extension, grace)))
        }
        Command::New {
            name,
            lang,
            dir,
            sdk_path,
        } => {
            let args = ext_runner::scaffold::NewArgs {
                name,
                lang,
                parent: dir,
                sdk_path,
            };
            report(ext_runner::scaffold::new_project(&args).map(|created| print_created(&created, lang)))
        }
        Command::Dev {
            dir,
            listen,
            data_dir,
            config: config_file,
        } => {
            let env: HashMap<String, String> = std::env::vars().collect();
            let overrides = Overrides {
                listen,
                data_dir,
                dev: true,
                ..Overrides::default()
            };
            let config = match load_config(&env, config_file.as_deref(), &overrides) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let Some(lang) = Lang::detect(&dir) else {
                return report(Err(anyhow::anyhow!(
                    "{}: no Cargo.toml (Rust) or package.json (TypeScript) there, so nothing to build; \
                     `ext-runner new NAME --lang rust|ts` makes a project",
                    dir.display()
                )));
            };
            let _logging = init_logging(config.server.log_format, None);
            eprintln!("building {}", dir.display());
            if let Err(e) = devloop::build(&dir, lang) {
                return report(Err(e.context(format!("building {}", dir.display()))));
            }
            let dev_extension = DevExtension {
                dir,
                rebuild: Some(lang),
            };
            report(runtime.block_on(run_server(config, dev_extension, DEV_SHUTDOWN_GRACE)))
        }
        Command::Pack { dir, out } => report(cli::pack(&dir, &out).map(|digest| {
            for warning in cli::capability_warnings(&dir) {
                eprintln!("warning: {warning}");
            }
            println!("{digest}");
        })),
        Command::Publish {
            bundle,
            store,
            sig,
            certs,
            trust,
            tenant,
            extension,
            allow_unsigned,
        } => {
            let args = cli::PublishArgs {
                bundle,
                store,
                signature: sig,
                certificates: certs,
                trust,
                tenant,
                extension,
                allow_unsigned,
            };
            let env: HashMap<String, String> = std::env::vars().collect();
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            report(runtime.block_on(cli::publish(&args, &env, progress)).map(|published| {
                let state = if published.bundle_created() {
                    "published"
                } else {
                    "already present"
                };
                println!("{} {state}", published.digest);
                match &published.signer {
                    Some(signer) => println!("  signed by {signer}"),
                    None if args.signature.is_some() => {
                        println!("  signature NOT verified (--allow-unsigned without a trust bundle)")
                    }
                    None => println!("  unsigned (--allow-unsigned)"),
                }
                for (key, outcome) in &published.objects {
                    let what = match outcome {
                        PutOutcome::Created => "created",
                        PutOutcome::AlreadyPresent => "already present",
                    };
                    println!("  {what:<15} {key}");
                }
            }))
        }
        Command::Compile { bundle, out } => {
            let out = out.unwrap_or_else(|| bundle.clone());
            report(cli::compile(&bundle, &out).map(|(digest, artifact)| {
                println!("{digest}");
                eprintln!(
                    "added {artifact} to {}; the content hash changed, so sign the new archive",
                    out.display()
                );
            }))
        }
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
            let _logging = init_logging(LogFormat::Pretty, None);
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
        Command::Keygen { out, ed25519 } => {
            let algorithm = if ed25519 {
                KeyAlgorithm::Ed25519
            } else {
                KeyAlgorithm::EcdsaP256
            };
            report(cli::keygen(&out, algorithm).map(|(public, fingerprint)| {
                println!("{fingerprint}");
                eprintln!(
                    "wrote {} (private, keep it secret) and {} (public: add it to the trust bundle)",
                    out.display(),
                    public.display()
                );
            }))
        }
        Command::Sign {
            bundle,
            key,
            cert,
            chain,
            out,
        } => report(
            cli::sign(&bundle, &key, cert.as_deref(), chain.as_deref(), &out).map(|signed| {
                println!("{}", signed.signer);
                match &signed.certificates {
                    Some(pem) => eprintln!("wrote {} and {}", signed.signature.display(), pem.display()),
                    None => eprintln!("wrote {}", signed.signature.display()),
                }
            }),
        ),
        Command::Config(ConfigCommand::Check { config, dev }) => {
            let env: HashMap<String, String> = std::env::vars().collect();
            let overrides = Overrides {
                dev,
                ..Overrides::default()
            };
            match load_config(&env, config.as_deref(), &overrides) {
                Ok(config) => {
                    println!("configuration is valid:\n{config:#?}");
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Secrets(SecretsCommand::Keygen) => {
            println!("{}", cli::secrets_keygen());
            ExitCode::SUCCESS
        }
        Command::Secrets(SecretsCommand::Seal {
            tenant,
            extension,
            expires_at,
            input,
        }) => {
            let env: HashMap<String, String> = std::env::vars().collect();
            report(
                cli::secrets_seal_until(&env, &tenant, &extension, expires_at.as_deref(), input.as_deref())
                    .map(|json| println!("{json}")),
            )
        }
        Command::Verify {
            bundle,
            sig,
            trust,
            certs,
        } => report(cli::verify(&bundle, &sig, &trust, certs.as_deref()).map(|signer| {
            println!("verified: signed by {signer}");
        })),
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

/// Defaults < `--config` file < environment < flags; every problem printed
/// at once, exit code 64 (before any port is bound).
fn load_config(
    env: &HashMap<String, String>,
    file: Option<&std::path::Path>,
    overrides: &Overrides,
) -> Result<Config, ExitCode> {
    Config::load_with_file(env, file, overrides).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
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

/// Logs to stderr (JSON or pretty, filtered by `RUST_LOG`), plus OTLP trace
/// export of request spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. The
/// returned guard flushes queued spans when dropped.
fn init_logging(format: LogFormat, otlp_endpoint: Option<&str>) -> Option<ext_runner::otlp::OtlpGuard> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn"));
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (otlp, guard) = match otlp_endpoint.map(ext_runner::otlp::layer) {
        Some(Ok((layer, guard))) => (Some(layer), Some(guard)),
        Some(Err(e)) => {
            eprintln!("warning: OTLP export disabled: {e}");
            (None, None)
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt).with(otlp).init();
    guard
}

/// The extension `serve --dev` and `dev` publish at start-up.
struct DevExtension {
    dir: PathBuf,
    /// `dev`: rebuild and republish it when its sources change.
    rebuild: Option<Lang>,
}

/// What `new` made and what to run next.
fn print_created(created: &ext_runner::scaffold::Created, lang: Lang) {
    let dir = created.dir.display();
    let language = match lang {
        Lang::Rust => "Rust",
        Lang::Ts => "TypeScript",
    };
    println!(
        "created {dir}: {} in {language}, SDK {}",
        created.manifest_name,
        created.sdk_path.display()
    );
    for file in &created.files {
        println!("  {file}");
    }
    for note in &created.notes {
        eprintln!("note: {note}");
    }
    println!("\nNext:\n");
    match lang {
        Lang::Rust => println!(
            "  ext-runner dev {dir}          # build, serve on 127.0.0.1:8080, print a curl; rebuilds on save\n  \
             (cd {dir} && cargo test)     # the handler's unit tests"
        ),
        Lang::Ts => println!(
            "  (cd {dir} && npm install && npm test)   # the SDK, TypeScript; the handler's unit tests\n  \
             ext-runner dev {dir}                    # build, serve on 127.0.0.1:8080, print a curl; rebuilds on save"
        ),
    }
}

async fn run_server(mut config: Config, extension: DevExtension, grace: std::time::Duration) -> anyhow::Result<()> {
    ignore_file_size_signal();
    let dev = config.server.dev;
    let dev_key = if dev {
        Some(devloop::trust_dev_key(&mut config)?)
    } else {
        None
    };
    if dev && config.host.secrets.key.is_none() {
        config.host.secrets.key = Some(devloop::dev_secrets_key(&config.data_dir)?);
    }
    let listen = config.server.listen;
    let no_token = config.server.service_tokens.is_empty();
    let runner = Arc::new(Runner::new(config)?);
    // Fail start-up, not the first request, on a bad STORAGE_KV_URL.
    runner
        .open_kv()
        .await
        .map_err(|f| anyhow::anyhow!("STORAGE_KV_URL: {}", f.message))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, store = %runner.config().storage.url, "ext-runner listening");
    if no_token {
        tracing::warn!("--dev without RUNNER_SERVICE_TOKEN: /v1/execute accepts unauthenticated calls on loopback");
    }
    // Dropped (and so stopped) when the server returns.
    let mut _rebuilding = None;
    if let Some(key) = dev_key {
        let published = devloop::publish_dir(&runner, &key, &extension.dir, local)
            .await
            .with_context(|| format!("publishing {}", extension.dir.display()))?;
        if let Some(lang) = extension.rebuild {
            let dev_loop = devloop::DevLoop {
                runner: runner.clone(),
                key,
                dir: extension.dir.clone(),
                lang,
                local,
                current: published.digest,
            };
            _rebuilding = Some(AbortOnDrop(tokio::spawn(dev_loop.run())));
        }
    }
    let public = match runner.config().server.public_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding RUNNER_PUBLIC_LISTEN {addr}: {e}"))?,
        ),
        None => None,
    };
    let state = AppState::new(runner);
    // SIGTERM (F-05): readiness flips to 503 at once, the listeners keep
    // accepting for the drain delay so load balancers notice, then they
    // stop accepting and in-flight work finishes within the grace period.
    let draining = state.clone();
    let drain_delay = state.runner.config().server.drain_delay;
    let shutdown_signal = move || {
        let draining = draining.clone();
        async move {
            shutdown_signal().await;
            draining.runner.start_draining();
            if !drain_delay.is_zero() {
                tracing::info!(
                    delay_ms = drain_delay.as_millis() as u64,
                    "readiness is 503; still accepting for the drain delay"
                );
                tokio::time::sleep(drain_delay).await;
            }
            tracing::info!("no longer accepting connections");
        }
    };
    match public {
        None => serve(listener, state, shutdown_signal(), grace).await?,
        Some(public) => {
            tracing::info!(listen = %public.local_addr()?, "UI assets listening (no /v1/execute here)");
            // One signal stops both listeners.
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            let signal = async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            };
            let app = ext_runner::server::public_router(state.clone());
            let (_, main, ui) = tokio::join!(
                signal,
                serve(listener, state.clone(), stopped(stop_rx.clone()), grace),
                ext_runner::server::serve_app(
                    public,
                    ext_runner::server::Listener::Public,
                    app,
                    &state,
                    stopped(stop_rx),
                    grace
                ),
            );
            main?;
            ui?;
        }
    }
    tracing::info!("ext-runner stopped");
    Ok(())
}

/// A task that stops when its handle goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// F-04: under a file size limit (`RLIMIT_FSIZE`, e.g. `prlimit --fsize`)
/// a write past it raises SIGXFSZ, whose default action kills the process.
/// With a handler installed the write fails with `EFBIG` instead, which the
/// cache handles like a full disk: the request goes on from memory or gets
/// 503, and the failure is counted. (Tokio keeps the handler installed for
/// the life of the process once registered.)
fn ignore_file_size_signal() {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")
    ))]
    {
        /// SIGXFSZ's number on Linux for these architectures (MIPS and
        /// SPARC number it differently).
        const SIGXFSZ: i32 = 25;
        if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ)) {
            tracing::warn!(error = %e, "cannot handle SIGXFSZ; a file size limit would end the process");
        }
    }
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
