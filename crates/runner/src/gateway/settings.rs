//! The gateway role's settings (`GATEWAY_*`, `RUNNER_BASE_URL`,
//! `EXT_GATEWAY_TIMEOUT_MS`) and the limits they default to.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::source::Source;
use crate::quota::RateLimit;

/// `EXT_GATEWAY_TIMEOUT_MS` unless told: the runner's default execution
/// timeout plus [`RUNNER_TIMEOUT_MARGIN`], so a guest that runs out its
/// time gets the runner's own 504 (with its report) before the gateway
/// gives up.
pub const DEFAULT_GATEWAY_TIMEOUT_MS: u64 = crate::limits::DEFAULT_TIMEOUT_MS + 500;
/// How much sooner than the gateway the runner is told to stop
/// (`limits.timeout_ms` = gateway timeout − this): the runner's answer has
/// to travel back before the gateway's own deadline.
pub const RUNNER_TIMEOUT_MARGIN: Duration = Duration::from_millis(500);
/// Shortest gateway timeout accepted: the margin plus a guest's shortest
/// useful run.
pub const MIN_GATEWAY_TIMEOUT_MS: u64 = 600;
/// Largest request body a user may send (`GATEWAY_MAX_REQUEST_BYTES`): the
/// runner's own default cap on a guest's request.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = crate::limits::DEFAULT_MAX_REQUEST_BYTES;
/// Largest guest answer passed back (`GATEWAY_MAX_RESPONSE_BYTES`): the
/// runner's default cap on a guest's response.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = crate::limits::DEFAULT_MAX_RESPONSE_BYTES;
/// Execution log rows waiting to be written (`GATEWAY_EXECUTION_LOG_QUEUE`):
/// a few seconds of a busy gateway at a few hundred bytes each; beyond it
/// rows are dropped and counted, never waited for.
pub const DEFAULT_EXECUTION_LOG_QUEUE: u64 = 10_000;
/// How often user-token keys from `GATEWAY_JWKS_URL` are fetched again.
pub const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;
/// Shortest accepted HS256 secret: 256 bits, what RFC 7518 §3.2 requires.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// What the gateway role reads.
#[derive(Clone)]
pub struct GatewaySettings {
    /// `GATEWAY_JWT_SECRET`: HS256 user tokens.
    pub jwt_secret: Option<String>,
    /// `GATEWAY_JWKS_FILE`: ES256 / RS256 / EdDSA user-token keys.
    pub jwks_file: Option<PathBuf>,
    /// `GATEWAY_JWKS_URL`: the same, fetched and refreshed.
    pub jwks_url: Option<String>,
    /// `GATEWAY_JWKS_REFRESH_SECS`.
    pub jwks_refresh: Duration,
    /// `GATEWAY_JWT_AUDIENCE`: when set, a user token's `aud` must name it.
    pub jwt_audience: Option<String>,
    /// `GATEWAY_JWT_ISSUER`: when set, a user token's `iss` must be it.
    pub jwt_issuer: Option<String>,
    /// `GATEWAY_REGISTRY_URL`: the registry, when this process does not run it.
    pub registry_url: Option<String>,
    /// `GATEWAY_REGISTRY_TOKEN`: a registry token with the `gateway` scope.
    pub registry_token: Option<String>,
    /// `RUNNER_BASE_URL`: the runner, when this process does not run it.
    pub runner_url: Option<String>,
    /// `GATEWAY_RUNNER_TOKEN`: one of the runner's `RUNNER_SERVICE_TOKEN`s.
    pub runner_token: Option<String>,
    /// `GATEWAY_GRANT_KEY`: the Ed25519 PKCS#8 PEM file execution grants
    /// for a runner elsewhere are signed with.
    pub grant_key: Option<PathBuf>,
    /// `EXT_GATEWAY_TIMEOUT_MS`: how long a call may take end to end.
    pub timeout: Duration,
    /// `GATEWAY_CORS_ORIGINS`: browser origins allowed to call the gateway.
    pub cors_origins: Vec<String>,
    /// `GATEWAY_TENANT_RATE_LIMIT`: calls per tenant; `None` is off.
    pub rate_limit: Option<RateLimit>,
    /// `GATEWAY_RATE_LIMIT_REDIS_URL`: share the buckets across gateways.
    pub rate_limit_redis: Option<String>,
    /// `GATEWAY_MAX_REQUEST_BYTES`.
    pub max_request_bytes: u64,
    /// `GATEWAY_MAX_RESPONSE_BYTES`.
    pub max_response_bytes: u64,
    /// `GATEWAY_EXECUTION_LOG_QUEUE`.
    pub log_queue: usize,
}

impl fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("GatewaySettings")
            .field("jwt_secret", &redacted(&self.jwt_secret))
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url)
            .field("jwks_refresh", &self.jwks_refresh)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("registry_url", &self.registry_url)
            .field("registry_token", &redacted(&self.registry_token))
            .field("runner_url", &self.runner_url)
            .field("runner_token", &redacted(&self.runner_token))
            .field("grant_key", &self.grant_key)
            .field("timeout", &self.timeout)
            .field("cors_origins", &self.cors_origins)
            .field("rate_limit", &self.rate_limit)
            .field(
                "rate_limit_redis",
                &self.rate_limit_redis.as_ref().map(|_| "[redacted]"),
            )
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("log_queue", &self.log_queue)
            .finish()
    }
}

impl GatewaySettings {
    pub fn from_source(source: &Source) -> GatewaySettings {
        let jwt_secret = source.text("GATEWAY_JWT_SECRET").map(str::to_string);
        if jwt_secret.as_ref().is_some_and(|s| s.len() < MIN_JWT_SECRET_BYTES) {
            source.problem(format!(
                "GATEWAY_JWT_SECRET: must be at least {MIN_JWT_SECRET_BYTES} bytes (HS256 needs a 256-bit secret)"
            ));
        }
        let cors_origins: Vec<String> = source
            .text("GATEWAY_CORS_ORIGINS")
            .map(|text| {
                text.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_string())
                    .filter(|o| !o.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for origin in &cors_origins {
            if !is_origin(origin) {
                source.problem(format!(
                    "GATEWAY_CORS_ORIGINS: `{origin}` is not an origin like https://app.example.com"
                ));
            }
        }
        let rate_limit = source.parsed("GATEWAY_TENANT_RATE_LIMIT", "off", RateLimit::parse, None);
        let rate_limit_redis = source.text("GATEWAY_RATE_LIMIT_REDIS_URL").map(|url| {
            if let Err(why) = crate::quota::check_redis_url(url) {
                source.problem(format!("GATEWAY_RATE_LIMIT_REDIS_URL: {why}"));
            } else if rate_limit.is_none() {
                source.problem("GATEWAY_RATE_LIMIT_REDIS_URL: set, but GATEWAY_TENANT_RATE_LIMIT is off");
            }
            url.to_string()
        });
        let timeout_ms = source.number(
            "EXT_GATEWAY_TIMEOUT_MS",
            DEFAULT_GATEWAY_TIMEOUT_MS,
            MIN_GATEWAY_TIMEOUT_MS..=3_600_000,
        );
        GatewaySettings {
            jwt_secret,
            jwks_file: source.text("GATEWAY_JWKS_FILE").map(PathBuf::from),
            jwks_url: source.http_url("GATEWAY_JWKS_URL"),
            jwks_refresh: Duration::from_secs(source.number(
                "GATEWAY_JWKS_REFRESH_SECS",
                DEFAULT_JWKS_REFRESH_SECS,
                10..=86_400,
            )),
            jwt_audience: source.text("GATEWAY_JWT_AUDIENCE").map(str::to_string),
            jwt_issuer: source.text("GATEWAY_JWT_ISSUER").map(str::to_string),
            registry_url: source
                .http_url("GATEWAY_REGISTRY_URL")
                .map(|u| u.trim_end_matches('/').to_string()),
            registry_token: source.text("GATEWAY_REGISTRY_TOKEN").map(str::to_string),
            runner_url: source
                .http_url("RUNNER_BASE_URL")
                .map(|u| u.trim_end_matches('/').to_string()),
            runner_token: source.text("GATEWAY_RUNNER_TOKEN").map(str::to_string),
            grant_key: source.text("GATEWAY_GRANT_KEY").map(PathBuf::from),
            timeout: Duration::from_millis(timeout_ms),
            cors_origins,
            rate_limit,
            rate_limit_redis,
            max_request_bytes: source.bytes("GATEWAY_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, 1),
            max_response_bytes: source.bytes("GATEWAY_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES, 1),
            log_queue: source.number(
                "GATEWAY_EXECUTION_LOG_QUEUE",
                DEFAULT_EXECUTION_LOG_QUEUE,
                1..=1_000_000,
            ) as usize,
        }
    }

    /// The `limits.timeout_ms` the gateway asks the runner for.
    pub fn runner_timeout_ms(&self) -> u64 {
        (self.timeout.saturating_sub(RUNNER_TIMEOUT_MARGIN).as_millis() as u64).max(1)
    }
}

/// `scheme://host[:port]`, nothing after it.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains(['/', '?', '#', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(is_origin("https://app.example.com"));
        assert!(is_origin("http://127.0.0.1:3000"));
        assert!(!is_origin("https://app.example.com/path"));
        assert!(!is_origin("app.example.com"));
        assert!(!is_origin("ftp://x"));
    }

    #[test]
    fn the_runner_is_told_to_stop_before_the_gateway_does() {
        let source = Source::new(std::collections::HashMap::new());
        let settings = GatewaySettings::from_source(&source);
        assert_eq!(settings.runner_timeout_ms(), crate::limits::DEFAULT_TIMEOUT_MS);
    }
}
