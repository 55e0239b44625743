//! `serve`, `dev` and `config check`: load the configuration (every problem
//! at once, exit 64, before any port is bound), start logging, and run the
//! process ([`crate::serve`]); in dev, publish the extension first
//! (through the registry and installed for the dev tenant when the process
//! runs the registry role) and, for `dev`, rebuild it on save.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{Config, Overrides};
use crate::scaffold::Lang;
use crate::serve::{Listeners, ignore_file_size_signal, serve, shutdown_signal};
use crate::{Runner, devloop};

/// Time in-flight requests get after Ctrl-C in `ext-runner dev`: a local
/// loop has nothing worth waiting long for.
const DEV_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// `ext-runner serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Development mode: no service token needed on loopback, pretty logs, every role
    /// (RUNNER_ROLES=all), and the extension in --extension packed, published and (with the
    /// registry role) installed for dev-tenant at start-up.
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
}

impl ServeArgs {
    pub fn run(self, runtime: &tokio::runtime::Runtime) -> ExitCode {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir,
            cache_dir: self.cache_dir,
            bundle_store: self.store,
            dev: self.dev,
        };
        let config = match load_config(&super::environment(), self.config.as_deref(), &overrides) {
            Ok(config) => config,
            Err(code) => return code,
        };
        let _otlp = super::logging::init(config.server.log_format, config.server.otlp_endpoint.as_deref());
        let extension = DevExtension {
            dir: self.extension,
            rebuild: None,
        };
        let grace = Duration::from_millis(self.shutdown_grace_ms);
        super::report(runtime.block_on(run_server(config, extension, grace)))
    }
}

/// `ext-runner dev`.
#[derive(clap::Args)]
pub struct DevArgs {
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
}

impl DevArgs {
    pub fn run(self, runtime: &tokio::runtime::Runtime) -> ExitCode {
        let overrides = Overrides {
            listen: self.listen,
            data_dir: self.data_dir,
            dev: true,
            ..Overrides::default()
        };
        let config = match load_config(&super::environment(), self.config.as_deref(), &overrides) {
            Ok(config) => config,
            Err(code) => return code,
        };
        let dir = self.dir;
        let Some(lang) = Lang::detect(&dir) else {
            return super::report(Err(anyhow::anyhow!(
                "{}: no Cargo.toml (Rust) or package.json (TypeScript) there, so nothing to build; \
                 `ext-runner new NAME --lang rust|ts` makes a project",
                dir.display()
            )));
        };
        let _logging = super::logging::init(config.server.log_format, None);
        eprintln!("building {}", dir.display());
        if let Err(e) = devloop::build(&dir, lang) {
            return super::report(Err(e.context(format!("building {}", dir.display()))));
        }
        let extension = DevExtension {
            dir,
            rebuild: Some(lang),
        };
        super::report(runtime.block_on(run_server(config, extension, DEV_SHUTDOWN_GRACE)))
    }
}

/// `ext-runner config …`.
#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Load defaults < --config file < environment, report every problem (exit 64) or print the result.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Validate as `serve --dev` would.
        #[arg(long)]
        dev: bool,
    },
}

impl ConfigCommand {
    pub fn run(self) -> ExitCode {
        let ConfigCommand::Check { config, dev } = self;
        let overrides = Overrides {
            dev,
            ..Overrides::default()
        };
        match load_config(&super::environment(), config.as_deref(), &overrides) {
            Ok(config) => {
                println!("configuration is valid:\n{config:#?}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        }
    }
}

/// Defaults < `--config` file < environment < flags; every problem printed
/// at once, exit code 64 (before any port is bound).
fn load_config(env: &HashMap<String, String>, file: Option<&Path>, overrides: &Overrides) -> Result<Config, ExitCode> {
    Config::load_with_file(env, file, overrides).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(super::EXIT_CONFIG)
    })
}

/// The extension `serve --dev` and `dev` publish at start-up.
struct DevExtension {
    dir: PathBuf,
    /// `dev`: rebuild and republish it when its sources change.
    rebuild: Option<Lang>,
}

async fn run_server(mut config: Config, extension: DevExtension, grace: Duration) -> anyhow::Result<()> {
    ignore_file_size_signal();
    let dev = config.server.dev;
    let dev_key = match dev {
        true => Some(devloop::trust_dev_key(&mut config)?),
        false => None,
    };
    if dev && config.host.secrets.key.is_none() {
        config.host.secrets.key = Some(devloop::dev_secrets_key(&config.data_dir)?);
    }
    let gateway_settings = &config.gateway;
    let has_user_keys = gateway_settings.jwt_secret.is_some()
        || gateway_settings.jwks_file.is_some()
        || gateway_settings.jwks_url.is_some();
    if dev && config.roles.gateway && !has_user_keys {
        config.gateway.jwt_secret = Some(devloop::dev_jwt_secret(&config.data_dir)?);
    }
    let no_token = config.server.service_tokens.is_empty();
    let runner = Arc::new(Runner::new(config)?);
    // Fail start-up, not the first request, on a bad STORAGE_KV_URL.
    runner
        .open_kv()
        .await
        .map_err(|f| anyhow::anyhow!("STORAGE_KV_URL: {}", f.message))?;
    let registry = match runner.config().roles.registry {
        true => Some(Arc::new(crate::registry::Registry::open(&runner).await?)),
        false => None,
    };
    let gateway = match runner.config().roles.gateway {
        true => Some(Arc::new(
            crate::gateway::Gateway::open(&runner, registry.as_ref()).await?,
        )),
        false => None,
    };
    let listeners = Listeners::bind(&runner.config().server).await?;
    let local = listeners.service.local_addr()?;
    let roles = runner.config().roles.names();
    tracing::info!(listen = %local, store = %runner.config().storage.url, roles, "ext-runner listening");
    if no_token {
        tracing::warn!("--dev without RUNNER_SERVICE_TOKEN: /v1/execute accepts unauthenticated calls on loopback");
    }
    // Dropped (and so stopped) when the server returns.
    let mut _rebuilding = None;
    if let Some(key) = dev_key {
        // Through the registry when this process runs it, so the dev tenant
        // has an install to show; else straight into the store.
        let destination = match &registry {
            Some(registry) => devloop::Destination::Registry(registry.clone()),
            None => devloop::Destination::Store,
        };
        let served = devloop::publish_dir(&runner, &destination, &key, &extension.dir, local)
            .await
            .with_context(|| format!("publishing {}", extension.dir.display()))?;
        // The host page opens what was just installed.
        if let (Some(install), Some(dev_host)) = (&served.install, gateway.as_ref().and_then(|g| g.dev_host())) {
            dev_host.published(&install.tenant, &install.extension);
        }
        if let Some(lang) = extension.rebuild {
            let dev_loop = devloop::DevLoop {
                runner: runner.clone(),
                destination,
                key,
                dir: extension.dir.clone(),
                lang,
                local,
                current: served,
            };
            _rebuilding = Some(AbortOnDrop(tokio::spawn(dev_loop.run())));
        }
    }
    serve(runner, registry, gateway, listeners, shutdown_signal(), grace).await
}

/// A task that stops when its handle goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
