//! The server's settings: listeners, service tokens, connection limits,
//! drain, the metrics token, logging.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::source::Source;
use crate::limits;

/// Shortest service or metrics token accepted: guessing must be hopeless.
const MIN_TOKEN_CHARS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone)]
pub struct ServerSettings {
    /// Address the HTTP server binds (`RUNNER_LISTEN`, `PORT`, `--listen`).
    pub listen: SocketAddr,
    /// `RUNNER_PUBLIC_LISTEN`: a second, browser-facing listener serving
    /// only UI assets (never `/v1/execute`).
    pub public_listen: Option<SocketAddr>,
    /// Accepted service tokens (`RUNNER_SERVICE_TOKEN`, comma-separated;
    /// redacted in `Debug`).
    pub service_tokens: Vec<String>,
    /// `serve --dev`: tokens optional on loopback, example extension served.
    pub dev: bool,
    /// `RUNNER_HEADER_READ_TIMEOUT_MS`.
    pub header_read_timeout: Duration,
    /// `RUNNER_BODY_READ_TIMEOUT_MS`.
    pub body_read_timeout: Duration,
    /// `RUNNER_MAX_CONNECTIONS`: connections each listener holds at once.
    pub max_connections: usize,
    /// `RUNNER_IDLE_TIMEOUT_MS`: keep-alive connections idle this long close.
    pub idle_timeout: Duration,
    /// `RUNNER_WRITE_STALL_TIMEOUT_MS`: a response write stuck this long
    /// (the client stopped reading) closes the connection.
    pub write_stall_timeout: Duration,
    /// `RUNNER_DRAIN_DELAY_MS`: after SIGTERM, listeners keep accepting this
    /// long while `/readyz` answers 503.
    pub drain_delay: Duration,
    /// `RUNNER_METRICS_TOKEN`: when set, `/metrics` answers only requests
    /// that present it (redacted in `Debug`).
    pub metrics_token: Option<String>,
    /// `RUNNER_LOG_FORMAT`: `json` (default) or `pretty` (default in dev).
    pub log_format: LogFormat,
    /// `RUNNER_PUBLIC_BASE`: the public origin of UI asset URLs (printed by
    /// `serve --dev`; hosts build iframe URLs from it).
    pub public_base: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: where request spans are exported.
    pub otlp_endpoint: Option<String>,
}

impl ServerSettings {
    pub fn from_source(source: &Source) -> ServerSettings {
        let listen = listen_address(source);
        let service_tokens = service_tokens(source, listen);
        let metrics_token = source.text("RUNNER_METRICS_TOKEN").map(str::to_string);
        if metrics_token.as_deref().is_some_and(|t| t.len() < MIN_TOKEN_CHARS) {
            source.problem(format!(
                "RUNNER_METRICS_TOKEN: must be at least {MIN_TOKEN_CHARS} characters"
            ));
        }
        let log_format = match source.text("RUNNER_LOG_FORMAT") {
            None if source.dev() => LogFormat::Pretty,
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                source.problem(format!("RUNNER_LOG_FORMAT: `{other}` must be `json` or `pretty`"));
                LogFormat::Json
            }
        };
        let public_base = source
            .text("RUNNER_PUBLIC_BASE")
            .map(|url| url.trim_end_matches('/').to_string());
        if let Some(url) = &public_base
            && !crate::config::source::is_http_url(url)
        {
            source.problem(format!("RUNNER_PUBLIC_BASE: `{url}` must be an http(s) origin"));
        }
        ServerSettings {
            listen,
            public_listen: source.addr("RUNNER_PUBLIC_LISTEN"),
            service_tokens,
            dev: source.dev(),
            header_read_timeout: source.millis(
                "RUNNER_HEADER_READ_TIMEOUT_MS",
                limits::DEFAULT_HEADER_READ_TIMEOUT_MS,
                1..=600_000,
            ),
            body_read_timeout: source.millis(
                "RUNNER_BODY_READ_TIMEOUT_MS",
                limits::DEFAULT_BODY_READ_TIMEOUT_MS,
                1..=600_000,
            ),
            max_connections: source.number("RUNNER_MAX_CONNECTIONS", limits::default_max_connections(), 1..=1 << 20)
                as usize,
            idle_timeout: source.millis("RUNNER_IDLE_TIMEOUT_MS", limits::DEFAULT_IDLE_TIMEOUT_MS, 1..=3_600_000),
            write_stall_timeout: source.millis(
                "RUNNER_WRITE_STALL_TIMEOUT_MS",
                limits::DEFAULT_WRITE_STALL_TIMEOUT_MS,
                1..=3_600_000,
            ),
            drain_delay: source.millis("RUNNER_DRAIN_DELAY_MS", limits::DEFAULT_DRAIN_DELAY_MS, 0..=600_000),
            metrics_token,
            log_format,
            public_base,
            otlp_endpoint: source.text("OTEL_EXPORTER_OTLP_ENDPOINT").map(str::to_string),
        }
    }
}

/// `--listen` (folded into `RUNNER_LISTEN`) over `RUNNER_LISTEN` over
/// `PORT` (all interfaces) over loopback 8080.
fn listen_address(source: &Source) -> SocketAddr {
    let text = match (source.text("RUNNER_LISTEN"), source.text("PORT")) {
        (Some(listen), _) => listen.to_string(),
        (None, Some(port)) => format!("0.0.0.0:{port}"),
        (None, None) => "127.0.0.1:8080".to_string(),
    };
    text.parse::<SocketAddr>().unwrap_or_else(|_| {
        source.problem(format!(
            "RUNNER_LISTEN/--listen/PORT: `{text}` is not an address like 127.0.0.1:8080"
        ));
        SocketAddr::from(([127, 0, 0, 1], 8080))
    })
}

/// `RUNNER_SERVICE_TOKEN`: required, unless `--dev` on loopback.
fn service_tokens(source: &Source, listen: SocketAddr) -> Vec<String> {
    let tokens: Vec<String> = source
        .text("RUNNER_SERVICE_TOKEN")
        .map(|v| {
            v.split(',')
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for (i, token) in tokens.iter().enumerate() {
        if token.len() < MIN_TOKEN_CHARS {
            source.problem(format!(
                "RUNNER_SERVICE_TOKEN: token #{} is shorter than {MIN_TOKEN_CHARS} characters",
                i + 1
            ));
        }
    }
    if tokens.is_empty() {
        if !source.dev() {
            source.problem(
                "RUNNER_SERVICE_TOKEN: required (one or more comma-separated tokens) unless `serve --dev` on loopback",
            );
        } else if !listen.ip().is_loopback() {
            source.problem(format!(
                "RUNNER_SERVICE_TOKEN: required when listening on non-loopback {listen}, even with --dev"
            ));
        }
    }
    tokens
}

impl fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSettings")
            .field("listen", &self.listen)
            .field("public_listen", &self.public_listen)
            .field("service_tokens", &format!("[{} redacted]", self.service_tokens.len()))
            .field("dev", &self.dev)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("write_stall_timeout", &self.write_stall_timeout)
            .field("drain_delay", &self.drain_delay)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "[redacted]"))
            .field("log_format", &self.log_format)
            .field("public_base", &self.public_base)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .finish()
    }
}
