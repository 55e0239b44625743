//! The gateway role (system spec "Gateway"): a signed-in user's request →
//! the tenant's install → its version, content hash and manifest endpoint
//! → an execute envelope with a grant → the runner → the guest's answer.
//!
//! - [`settings`]: `GATEWAY_*`, `RUNNER_BASE_URL`, `EXT_GATEWAY_TIMEOUT_MS`;
//! - [`users`]: the user token (HS256, or ES256/RS256/EdDSA from a JWKS);
//! - [`installs`]: install resolution, in-process or from a registry elsewhere;
//! - [`request`]: the inbound request as the guest will see it (path
//!   safety, headers stripped, the envelope);
//! - [`runner_link`]: the runner, in-process or over HTTP, and how its
//!   answers become the gateway's;
//! - [`execution_log`]: one row per call, written off the request path;
//! - [`routes`]: `/api/ext/…`, `/api/ext-proxy/…`, `/api/ext-ui/…`;
//! - [`dev_host`]: `serve --dev`'s host page at `/dev/host`;
//! - [`metrics`]: the gateway's series;
//! - [`openapi`]: its part of `/openapi.json`.

pub mod dev_host;
pub mod execution_log;
pub mod installs;
pub mod metrics;
pub mod openapi;
pub mod request;
pub mod routes;
pub mod runner_link;
pub mod schedules;
pub mod settings;
pub mod users;

use std::sync::Arc;

use anyhow::Context as _;

use crate::execute::Runner;
use crate::grant::GrantSigner;
use crate::quota::{QuotaStats, RateLimiter};
use crate::registry::Registry;
use dev_host::DevHost;
use execution_log::{ExecutionLog, LogSink};
use installs::Installs;
use metrics::GatewayMetrics;
use runner_link::RunnerLink;
use users::UserKeys;

pub use settings::GatewaySettings;

/// Prefix of the Redis keys of the gateway's per-tenant buckets (apart
/// from the runner's `ext-rl:`, so the two limits never share a budget).
pub const REDIS_KEY_PREFIX: &str = "ext-gw-rl:";

/// The gateway role's state.
pub struct Gateway {
    settings: GatewaySettings,
    users: Arc<UserKeys>,
    installs: Installs,
    runner: RunnerLink,
    log: ExecutionLog,
    rate: Option<RateLimiter>,
    /// The rate limiter's fail-open count (Redis not answering).
    rate_stats: Arc<QuotaStats>,
    metrics: Arc<GatewayMetrics>,
    /// Where browsers reach the runner's UI assets (`RUNNER_PUBLIC_BASE`,
    /// default `http://<listen address>`).
    public_base: String,
    /// The runner's body read timeout, also the gateway's.
    body_read_timeout: std::time::Duration,
    /// `serve --dev`'s host page; `None` outside dev.
    dev_host: Option<Arc<DevHost>>,
}

impl Gateway {
    /// The gateway for this process: in-process links to the runner and
    /// the registry when it runs those roles, HTTP to them otherwise.
    ///
    /// # Errors
    /// A setting the chosen links need is missing or unusable (each named),
    /// no user-token keys, a JWKS URL that does not answer.
    pub async fn open(runner: &Arc<Runner>, registry: Option<&Arc<Registry>>) -> anyhow::Result<Gateway> {
        let config = runner.config();
        let settings = config.gateway.clone();
        let metrics = Arc::new(GatewayMetrics::register(runner.metrics()));
        let users = Arc::new(UserKeys::load(&settings).await?);
        let (installs, sink) = match registry {
            Some(registry) => (Installs::local(registry.clone()), LogSink::Local(registry.clone())),
            None => {
                let url = settings.registry_url.as_deref().context(
                    "the gateway role without the registry role needs GATEWAY_REGISTRY_URL (and GATEWAY_REGISTRY_TOKEN)",
                )?;
                let token = settings.registry_token.as_deref().context(
                    "GATEWAY_REGISTRY_URL needs GATEWAY_REGISTRY_TOKEN (a registry token with the gateway scope)",
                )?;
                let sink = LogSink::Remote {
                    client: reqwest::Client::new(),
                    url: format!("{url}/v1/registry/executions"),
                    token: token.to_string(),
                };
                (Installs::remote(url, token)?, sink)
            }
        };
        let runner_link = if config.roles.runner {
            RunnerLink::Local(runner.clone())
        } else {
            let url = settings
                .runner_url
                .as_deref()
                .context("the gateway role without the runner role needs RUNNER_BASE_URL")?;
            let token = settings
                .runner_token
                .as_deref()
                .context("RUNNER_BASE_URL needs GATEWAY_RUNNER_TOKEN (one of the runner's RUNNER_SERVICE_TOKEN)")?;
            let key = settings.grant_key.as_deref().context(
                "RUNNER_BASE_URL needs GATEWAY_GRANT_KEY: every call carries an execution grant (`ext-runner grant keygen`)",
            )?;
            let pem = std::fs::read(key).with_context(|| format!("GATEWAY_GRANT_KEY: reading {}", key.display()))?;
            let signer =
                GrantSigner::from_pem(&pem).with_context(|| format!("GATEWAY_GRANT_KEY: {}", key.display()))?;
            RunnerLink::remote(url, token, Arc::new(signer))?
        };
        let rate = match (settings.rate_limit, &settings.rate_limit_redis) {
            (None, _) => None,
            (Some(limit), None) => Some(RateLimiter::memory(limit)),
            (Some(limit), Some(url)) => {
                Some(RateLimiter::redis(limit, url, REDIS_KEY_PREFIX).context("GATEWAY_RATE_LIMIT_REDIS_URL")?)
            }
        };
        let public_base = config
            .server
            .public_base
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.server.listen));
        let log = ExecutionLog::start(sink, settings.log_queue, metrics.clone());
        let rate_stats = Arc::new(QuotaStats::default());
        runner
            .metrics()
            .register_gauges(metrics::RateLimitGauges(rate_stats.clone()));
        let dev_host = DevHost::for_config(config, &public_base).map(Arc::new);
        Ok(Gateway {
            users,
            installs,
            runner: runner_link,
            log,
            rate,
            rate_stats,
            metrics,
            public_base,
            body_read_timeout: config.server.body_read_timeout,
            dev_host,
            settings,
        })
    }

    /// Keep `GATEWAY_JWKS_URL`'s keys fresh until the returned task is
    /// aborted; `None` without a JWKS URL.
    pub fn refresh_keys(&self) -> Option<tokio::task::JoinHandle<()>> {
        if !self.users.has_remote() {
            return None;
        }
        let users = self.users.clone();
        let every = self.settings.jwks_refresh;
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                users.refresh().await;
            }
        }))
    }

    /// `serve --dev`'s host page, when this process serves it.
    pub fn dev_host(&self) -> Option<&DevHost> {
        self.dev_host.as_deref()
    }
}
