//! One typed configuration, merged from defaults < environment < flags and
//! validated before anything binds a port. Every problem is reported at once.
//!
//! Configuration is read from a map (never from the live process
//! environment inside the library) so tests can hand in their own.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::limits;
use crate::store::object::KeyLayout;

/// Fully validated runner configuration.
#[derive(Clone)]
pub struct Config {
    /// Address the HTTP server binds (`RUNNER_LISTEN`, `PORT`, `--listen`).
    pub listen: SocketAddr,
    /// Root for runner-owned state (`RUNNER_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Unpacked bundles and compiled artifacts (`RUNNER_CACHE_DIR`).
    pub cache_dir: PathBuf,
    /// Where bundles are fetched from and how (`BUNDLE_STORAGE_*`).
    pub storage: StorageSettings,
    /// Accepted service tokens (`RUNNER_SERVICE_TOKEN`, comma-separated).
    pub service_tokens: Vec<String>,
    /// `serve --dev`: tokens optional on loopback, example extension served.
    pub dev: bool,
    pub max_memory_mb: u64,
    pub max_timeout_ms: u64,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub max_concurrency: u32,
    /// `RUNNER_MAX_LOADED_COMPONENTS`: compiled components kept in memory.
    pub max_loaded_components: u32,
    /// `RUNNER_COMPILE_CONCURRENCY`: compiles at once (default: the
    /// available cores); a tenant holds at most half of them.
    pub compile_concurrency: u32,
    /// `RUNNER_MAX_COMPONENT_BYTES`: largest component file compiled.
    pub max_component_bytes: u64,
    /// `RUNNER_TENANT_MAX_CONCURRENCY`: executions one tenant may have in flight.
    pub tenant_max_concurrency: u32,
    /// `RUNNER_EXTENSION_MAX_CONCURRENCY`: executions one (tenant, extension)
    /// may have in flight.
    pub extension_max_concurrency: u32,
    /// `RUNNER_TENANT_RATE_LIMIT`: token bucket per tenant; `None` is off.
    pub tenant_rate_limit: Option<crate::quota::RateLimit>,
    /// `RUNNER_RATE_LIMIT_REDIS_URL`: keep the rate-limit buckets and CPU
    /// budgets in Redis, shared by every runner pointing there (may hold a
    /// password: redacted in `Debug`).
    pub rate_limit_redis_url: Option<String>,
    /// `RUNNER_GUEST_THREADS`: threads that run guest code (default: the
    /// available cores); also the CPU slices the fair share hands out.
    pub guest_threads: u32,
    /// `RUNNER_TENANT_CPU_QUEUE`: a tenant's executions that may wait for
    /// their first slice while other tenants compete.
    pub tenant_cpu_queue: u32,
    /// `RUNNER_TENANT_CPU_WEIGHTS`: `tenant=weight,…`; others weigh 1.
    pub tenant_cpu_weights: HashMap<String, u32>,
    /// `RUNNER_TENANT_CPU_MS_PER_SEC`: CPU budget per tenant; `None` is off.
    pub tenant_cpu_budget: Option<crate::quota::cpu_budget::CpuLimit>,
    /// `RUNNER_DEBUG_REDIS_URL`: copy guest log and output lines to Redis
    /// streams `ext-debug:{tenant}:{extension}` (redacted in `Debug`).
    pub debug_redis_url: Option<String>,
    pub header_read_timeout: Duration,
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
    /// `SIGNING_REQUIRED` (default true): refuse bundles whose signature
    /// does not verify against the trust bundle.
    pub signing_required: bool,
    /// `SIGNING_TRUST_BUNDLE`: trusted signer keys and root certificates.
    pub trust: Option<TrustSettings>,
    /// `RUNNER_CACHE_MAX_BYTES`: budget of the bundle disk cache.
    pub cache_max_bytes: u64,
    /// How `secret_envelope`s open: `RUNNER_SECRETS_KEY(_FILE)`,
    /// `RUNNER_ALLOW_INLINE_SECRETS`, `VAULT_ADDR` + `VAULT_TOKEN_FILE`.
    pub secrets: crate::host::secrets::SecretsConfig,
    /// UI asset serving: CSP, size cap, install check.
    pub ui: crate::ui::UiConfig,
    /// `RUNNER_PUBLIC_LISTEN`: a second, browser-facing listener serving
    /// only UI assets (never `/v1/execute`).
    pub public_listen: Option<SocketAddr>,
    /// Egress (`http.fetch`): engine limits and the operator's allowlists
    /// (`EXT_EGRESS_*`).
    pub egress: std::sync::Arc<ext_egress::Settings>,
    /// `RUNNER_PUBLIC_BASE`: the public origin of UI asset URLs (printed by
    /// `serve --dev`; hosts build iframe URLs from it).
    pub public_base: Option<String>,
    /// `UI_PROXY_BASE_URL`: where `ui-proxy.call-route` goes.
    pub ui_proxy_base_url: Option<String>,
    /// `STORAGE_KV_URL`: `postgres://…`, or a redb file path (default
    /// `$RUNNER_DATA_DIR/kv.redb`), for `cap:storage.kv`.
    pub storage_kv_url: String,
    /// `RUNNER_REQUIRE_EXTENSION_MATCH` (default false): refuse a bundle
    /// whose manifest `name` is not the envelope's `extension_id` (B-02),
    /// for gateways that use manifest names as extension ids.
    pub require_extension_match: bool,
    /// `RUNNER_TRUST_PRECOMPILED` (default false): use a signed bundle's
    /// own `precompiled/<triple>.cwasm` when it matches this engine.
    pub trust_precompiled: bool,
}

/// A parsed trust bundle and the identity of its text.
#[derive(Clone)]
pub struct TrustSettings {
    pub bundle: std::sync::Arc<ext_bundle::signature::TrustBundle>,
    /// SHA-256 of the PEM text: cached verdicts name the trust they used.
    pub id: String,
    /// The PEM text itself (public keys and certificates only).
    pub text: String,
}

impl TrustSettings {
    /// Parse PEM text (a trust bundle), naming `source` in errors.
    ///
    /// # Errors
    /// The parse problem, prefixed with `source`.
    pub fn parse(text: &str, source: &str) -> Result<TrustSettings, String> {
        let bundle = ext_bundle::signature::TrustBundle::parse(text).map_err(|e| {
            let message = e.to_string();
            // The parser names inline text itself; add the file it came from.
            if source.starts_with('`') {
                format!("{source}: {message}")
            } else {
                message
            }
        })?;
        Ok(TrustSettings {
            bundle: std::sync::Arc::new(bundle),
            id: ext_bundle::Digest::of(text.as_bytes()).to_string(),
            text: text.to_string(),
        })
    }

    /// `SIGNING_TRUST_BUNDLE`'s value: inline PEM text, or a file path.
    ///
    /// # Errors
    /// Unreadable file or invalid PEM, named.
    pub fn load(value: &str) -> Result<TrustSettings, String> {
        if value.trim_start().starts_with("-----BEGIN") {
            return TrustSettings::parse(value, "inline PEM");
        }
        let text = std::fs::read_to_string(value).map_err(|e| format!("`{value}`: {e}"))?;
        TrustSettings::parse(&text, &format!("`{value}`"))
    }
}

/// A bundle store location (`BUNDLE_STORAGE_URL`, `--store`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file:///absolute/path` (or a plain path): a local directory.
    File(PathBuf),
    /// `s3://bucket/prefix`: an S3-compatible bucket; keys live under
    /// `prefix` (may be empty). Reached with [`S3Settings`].
    S3 { bucket: String, prefix: String },
    /// `http(s)://host/prefix`: read-only, plain GETs below this base URL.
    Http { url: String },
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::File(path) => write!(f, "file://{}", path.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::Http { url } => f.write_str(url),
        }
    }
}

impl StoreUrl {
    /// Parse `file:///abs/path`, a plain path, `s3://bucket[/prefix]` or
    /// `http(s)://host[:port][/prefix]`.
    ///
    /// # Errors
    /// A message naming what is wrong, for the caller to attach to its key.
    pub fn parse(value: &str) -> Result<StoreUrl, String> {
        if let Some(rest) = value.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(format!("`{value}`: file URLs need an absolute path (file:///path)"));
            }
            return Ok(StoreUrl::File(PathBuf::from(rest)));
        }
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_end_matches('/');
            if !is_bucket_name(bucket) {
                return Err(format!(
                    "`{value}`: `{bucket}` is not a bucket name (3-63 lowercase letters, digits, `.` and `-`)"
                ));
            }
            if !prefix.is_empty() {
                check_key_prefix(prefix).map_err(|why| format!("`{value}`: {why}"))?;
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if value.starts_with("http://") || value.starts_with("https://") {
            let (_, rest) = value.split_once("://").expect("checked the scheme");
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() {
                return Err(format!("`{value}`: the URL has no host"));
            }
            if rest.contains(['?', '#']) {
                return Err(format!("`{value}`: a store URL takes no query or fragment"));
            }
            return Ok(StoreUrl::Http {
                url: value.trim_end_matches('/').to_string(),
            });
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(format!(
                "`{value}`: scheme `{scheme}` is not supported (supported: file://, s3://, http://, https://)"
            ));
        }
        if value.is_empty() {
            return Err("must not be empty".to_string());
        }
        Ok(StoreUrl::File(PathBuf::from(value)))
    }
}

/// S3 bucket naming rules (the subset every S3-compatible server accepts).
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The `prefix` of `s3://bucket/prefix`: segments of letters, digits, `.`,
/// `_` and `-`, none empty, `.` or `..`.
fn check_key_prefix(prefix: &str) -> Result<(), String> {
    for segment in prefix.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!("the key prefix `{prefix}` has an empty, `.` or `..` segment"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "the key prefix `{prefix}` has the character {c:?} (letters, digits, `.`, `_`, `-` and `/` only)"
            ));
        }
    }
    Ok(())
}

/// Everything about the bundle store: `BUNDLE_STORAGE_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageSettings {
    /// `BUNDLE_STORAGE_URL` / `--store`.
    pub url: StoreUrl,
    /// How to reach an `s3://` store; ignored by the other schemes.
    pub s3: S3Settings,
    /// `BUNDLE_STORAGE_KEY_LAYOUT`: where a bundle sits in the store.
    pub layout: KeyLayout,
}

/// Connection settings of an `s3://` store.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `BUNDLE_STORAGE_ENDPOINT`: e.g. `https://minio.internal:9000`; unset
    /// means AWS S3 for the region. `http://` is accepted (local servers):
    /// bundles are verified by hash and signature, and SigV4 never sends the
    /// secret.
    pub endpoint: Option<String>,
    /// `BUNDLE_STORAGE_REGION` (default `us-east-1`).
    pub region: Option<String>,
    /// `BUNDLE_STORAGE_ACCESS_KEY_ID`; with the secret, static credentials.
    /// Without both, the standard AWS credential chain applies.
    pub access_key_id: Option<String>,
    /// `BUNDLE_STORAGE_SECRET_ACCESS_KEY` (redacted in `Debug`).
    pub secret_access_key: Option<String>,
    /// `BUNDLE_STORAGE_FORCE_PATH_STYLE`: `endpoint/bucket/key` instead of
    /// `bucket.endpoint/key` (MinIO, SeaweedFS and most self-hosted servers
    /// need `true`).
    pub force_path_style: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "[redacted]"),
            )
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

impl StorageSettings {
    /// A local directory store with the default layout.
    pub fn file(root: PathBuf) -> StorageSettings {
        StorageSettings {
            url: StoreUrl::File(root),
            s3: S3Settings::default(),
            layout: KeyLayout::default(),
        }
    }

    /// The store at `url` with every other `BUNDLE_STORAGE_*` setting read
    /// from `env` (for commands such as `publish` that take `--store`).
    ///
    /// # Errors
    /// [`ConfigError`] listing every bad setting.
    pub fn load(url: &str, env: &HashMap<String, String>) -> Result<StorageSettings, ConfigError> {
        let mut problems = Vec::new();
        let url = StoreUrl::parse(url).unwrap_or_else(|why| {
            problems.push(format!("--store: {why}"));
            StoreUrl::File(PathBuf::from("/"))
        });
        let settings = StorageSettings::from_env(url, env, &mut problems);
        if problems.is_empty() {
            Ok(settings)
        } else {
            problems.sort();
            Err(ConfigError { problems })
        }
    }

    /// The settings besides the URL, pushing every problem onto `problems`.
    fn from_env(url: StoreUrl, env: &HashMap<String, String>, problems: &mut Vec<String>) -> StorageSettings {
        let get = |key: &str| env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let endpoint = get("BUNDLE_STORAGE_ENDPOINT").map(|text| {
            let valid = ["http://", "https://"].iter().any(|scheme| {
                text.strip_prefix(scheme)
                    .is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#']))
            });
            if !valid {
                problems.push(format!(
                    "BUNDLE_STORAGE_ENDPOINT: `{text}` must be a base URL like https://s3.example.com or http://127.0.0.1:8333"
                ));
            }
            text.to_string()
        });
        let region = get("BUNDLE_STORAGE_REGION").map(|text| {
            if !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                problems.push(format!(
                    "BUNDLE_STORAGE_REGION: `{text}` is not a region name like eu-west-1"
                ));
            }
            text.to_string()
        });
        let access_key_id = get("BUNDLE_STORAGE_ACCESS_KEY_ID").map(String::from);
        let secret_access_key = get("BUNDLE_STORAGE_SECRET_ACCESS_KEY").map(String::from);
        match (&access_key_id, &secret_access_key) {
            (Some(_), None) => problems.push(
                "BUNDLE_STORAGE_SECRET_ACCESS_KEY: required when BUNDLE_STORAGE_ACCESS_KEY_ID is set".to_string(),
            ),
            (None, Some(_)) => problems.push(
                "BUNDLE_STORAGE_ACCESS_KEY_ID: required when BUNDLE_STORAGE_SECRET_ACCESS_KEY is set".to_string(),
            ),
            _ => {}
        }
        let force_path_style = match get("BUNDLE_STORAGE_FORCE_PATH_STYLE")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(other) => {
                problems.push(format!(
                    "BUNDLE_STORAGE_FORCE_PATH_STYLE: `{other}` must be true or false"
                ));
                false
            }
        };
        let layout = match get("BUNDLE_STORAGE_KEY_LAYOUT") {
            None => KeyLayout::default(),
            Some(text) => KeyLayout::parse(text).unwrap_or_else(|why| {
                problems.push(format!("BUNDLE_STORAGE_KEY_LAYOUT: {why}"));
                KeyLayout::default()
            }),
        };
        StorageSettings {
            url,
            s3: S3Settings {
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                force_path_style,
            },
            layout,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("cache_dir", &self.cache_dir)
            .field("storage", &self.storage)
            .field(
                "service_tokens",
                &format_args!("[{} redacted]", self.service_tokens.len()),
            )
            .field("dev", &self.dev)
            .field("max_memory_mb", &self.max_memory_mb)
            .field("max_timeout_ms", &self.max_timeout_ms)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_loaded_components", &self.max_loaded_components)
            .field("compile_concurrency", &self.compile_concurrency)
            .field("max_component_bytes", &self.max_component_bytes)
            .field("tenant_max_concurrency", &self.tenant_max_concurrency)
            .field("extension_max_concurrency", &self.extension_max_concurrency)
            .field("tenant_rate_limit", &self.tenant_rate_limit)
            .field("guest_threads", &self.guest_threads)
            .field("tenant_cpu_queue", &self.tenant_cpu_queue)
            .field("tenant_cpu_weights", &self.tenant_cpu_weights)
            .field("tenant_cpu_budget", &self.tenant_cpu_budget)
            .field(
                "rate_limit_redis_url",
                &self.rate_limit_redis_url.as_ref().map(|_| "[redacted]"),
            )
            .field("debug_redis_url", &self.debug_redis_url.as_ref().map(|_| "[redacted]"))
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("write_stall_timeout", &self.write_stall_timeout)
            .field("drain_delay", &self.drain_delay)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "[redacted]"))
            .field("log_format", &self.log_format)
            .field("signing_required", &self.signing_required)
            .field("trust", &self.trust.as_ref().map(|t| &t.id))
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("trust_precompiled", &self.trust_precompiled)
            .field("require_extension_match", &self.require_extension_match)
            .field("secrets", &self.secrets)
            .field("ui", &self.ui)
            .field("public_listen", &self.public_listen)
            .field("egress", &self.egress)
            .field(
                "storage_kv",
                &if self.storage_kv_url.starts_with("postgres") {
                    "postgres (url redacted)"
                } else {
                    self.storage_kv_url.as_str()
                },
            )
            .finish()
    }
}

/// Command-line overrides; `None` leaves the environment's value in place.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub bundle_store: Option<String>,
    pub dev: bool,
}

/// Every problem found while loading configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Names of every environment variable the runner reads (for docs and tests).
pub const ENV_VARS: &[&str] = &[
    "RUNNER_LISTEN",
    "PORT",
    "RUNNER_DATA_DIR",
    "RUNNER_CACHE_DIR",
    "BUNDLE_STORAGE_URL",
    "BUNDLE_STORAGE_ENDPOINT",
    "BUNDLE_STORAGE_REGION",
    "BUNDLE_STORAGE_ACCESS_KEY_ID",
    "BUNDLE_STORAGE_SECRET_ACCESS_KEY",
    "BUNDLE_STORAGE_FORCE_PATH_STYLE",
    "BUNDLE_STORAGE_KEY_LAYOUT",
    "RUNNER_SERVICE_TOKEN",
    "RUNNER_MAX_MEMORY_MB",
    "RUNNER_MAX_TIMEOUT_MS",
    "RUNNER_MAX_REQUEST_BYTES",
    "RUNNER_MAX_RESPONSE_BYTES",
    "RUNNER_MAX_CONCURRENCY",
    "RUNNER_MAX_LOADED_COMPONENTS",
    "RUNNER_COMPILE_CONCURRENCY",
    "RUNNER_MAX_COMPONENT_BYTES",
    "RUNNER_TENANT_MAX_CONCURRENCY",
    "RUNNER_EXTENSION_MAX_CONCURRENCY",
    "RUNNER_TENANT_RATE_LIMIT",
    "RUNNER_RATE_LIMIT_REDIS_URL",
    "RUNNER_GUEST_THREADS",
    "RUNNER_TENANT_CPU_QUEUE",
    "RUNNER_TENANT_CPU_WEIGHTS",
    "RUNNER_TENANT_CPU_MS_PER_SEC",
    "RUNNER_DEBUG_REDIS_URL",
    "RUNNER_HEADER_READ_TIMEOUT_MS",
    "RUNNER_BODY_READ_TIMEOUT_MS",
    "RUNNER_MAX_CONNECTIONS",
    "RUNNER_IDLE_TIMEOUT_MS",
    "RUNNER_WRITE_STALL_TIMEOUT_MS",
    "RUNNER_DRAIN_DELAY_MS",
    "RUNNER_METRICS_TOKEN",
    "RUNNER_LOG_FORMAT",
    "SIGNING_REQUIRED",
    "SIGNING_TRUST_BUNDLE",
    "RUNNER_CACHE_MAX_BYTES",
    "RUNNER_TRUST_PRECOMPILED",
    "RUNNER_REQUIRE_EXTENSION_MATCH",
    "STORAGE_KV_URL",
    "RUNNER_SECRETS_KEY",
    "RUNNER_SECRETS_KEY_FILE",
    "RUNNER_ALLOW_INLINE_SECRETS",
    "VAULT_ADDR",
    "VAULT_TOKEN_FILE",
    "EXT_UI_CONTENT_SECURITY_POLICY",
    "EXT_UI_FRAME_ANCESTORS",
    "EXT_STATIC_MAX_FILE_BYTES",
    "RUNNER_UI_VALIDATE_URL",
    "RUNNER_UI_VALIDATE_MAX_PER_SECOND",
    "RUNNER_PUBLIC_LISTEN",
    "UI_PROXY_BASE_URL",
    "EXT_GATEWAY_TIMEOUT_MS",
    "RUNNER_PUBLIC_BASE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

impl Config {
    /// Merge defaults, `env` and `overrides`, then validate everything.
    ///
    /// # Errors
    /// [`ConfigError`] listing every bad key at once.
    pub fn load(env: &HashMap<String, String>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let get = |key: &str| env.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());

        let listen_text = match (&overrides.listen, get("RUNNER_LISTEN"), get("PORT")) {
            (Some(flag), _, _) => flag.clone(),
            (None, Some(listen), _) => listen.to_string(),
            (None, None, Some(port)) => format!("0.0.0.0:{port}"),
            (None, None, None) => "127.0.0.1:8080".to_string(),
        };
        let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.push(format!(
                "RUNNER_LISTEN/--listen/PORT: `{listen_text}` is not an address like 127.0.0.1:8080"
            ));
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });

        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| get("RUNNER_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| default_data_dir(env));
        let cache_dir = overrides
            .cache_dir
            .clone()
            .or_else(|| get("RUNNER_CACHE_DIR").map(PathBuf::from))
            .unwrap_or_else(|| data_dir.join("cache"));

        let store_text = overrides
            .bundle_store
            .clone()
            .or_else(|| get("BUNDLE_STORAGE_URL").map(String::from));
        let store_url = match store_text {
            Some(text) => StoreUrl::parse(&text).unwrap_or_else(|why| {
                problems.push(format!("BUNDLE_STORAGE_URL: {why}"));
                StoreUrl::File(data_dir.join("bundles"))
            }),
            None => StoreUrl::File(data_dir.join("bundles")),
        };
        let storage = StorageSettings::from_env(store_url, env, &mut problems);

        let service_tokens: Vec<String> = get("RUNNER_SERVICE_TOKEN")
            .map(|v| {
                v.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for (i, token) in service_tokens.iter().enumerate() {
            if token.len() < 16 {
                problems.push(format!(
                    "RUNNER_SERVICE_TOKEN: token #{} is shorter than 16 characters",
                    i + 1
                ));
            }
        }
        if service_tokens.is_empty() {
            if !overrides.dev {
                problems.push(
                    "RUNNER_SERVICE_TOKEN: required (one or more comma-separated tokens) unless `serve --dev` on loopback"
                        .to_string(),
                );
            } else if !listen.ip().is_loopback() {
                problems.push(format!(
                    "RUNNER_SERVICE_TOKEN: required when listening on non-loopback {listen}, even with --dev"
                ));
            }
        }

        let mut number = |key: &str, default: u64, min: u64, max: u64| -> u64 {
            match get(key) {
                None => default,
                Some(text) => match text.parse::<u64>() {
                    Ok(v) if (min..=max).contains(&v) => v,
                    _ => {
                        problems.push(format!("{key}: `{text}` must be an integer in {min}..={max}"));
                        default
                    }
                },
            }
        };
        let max_memory_mb = number("RUNNER_MAX_MEMORY_MB", limits::DEFAULT_MAX_MEMORY_MB, 1, 4096);
        // The seed's EXT_GATEWAY_TIMEOUT_MS (the gateway's own timeout) is
        // the default ceiling when RUNNER_MAX_TIMEOUT_MS is not set.
        let gateway_timeout_ms = number("EXT_GATEWAY_TIMEOUT_MS", limits::DEFAULT_MAX_TIMEOUT_MS, 1, 3_600_000);
        let max_timeout_ms = number("RUNNER_MAX_TIMEOUT_MS", gateway_timeout_ms, 1, 3_600_000);
        let max_request_bytes = number(
            "RUNNER_MAX_REQUEST_BYTES",
            limits::DEFAULT_MAX_REQUEST_BYTES,
            0,
            1 << 30,
        );
        let max_response_bytes = number(
            "RUNNER_MAX_RESPONSE_BYTES",
            limits::DEFAULT_MAX_RESPONSE_BYTES,
            0,
            1 << 30,
        );
        let max_concurrency = number(
            "RUNNER_MAX_CONCURRENCY",
            u64::from(limits::DEFAULT_MAX_CONCURRENCY),
            1,
            10_000,
        ) as u32;
        let max_loaded_components = number(
            "RUNNER_MAX_LOADED_COMPONENTS",
            u64::from(limits::DEFAULT_MAX_LOADED_COMPONENTS),
            1,
            100_000,
        ) as u32;
        let compile_concurrency = number(
            "RUNNER_COMPILE_CONCURRENCY",
            available_cores(),
            1,
            limits::MAX_COMPILE_CONCURRENCY,
        ) as u32;
        let guest_threads = number("RUNNER_GUEST_THREADS", available_cores(), 1, limits::MAX_GUEST_THREADS) as u32;
        let tenant_cpu_queue = number("RUNNER_TENANT_CPU_QUEUE", limits::DEFAULT_TENANT_CPU_QUEUE, 1, 10_000) as u32;
        let tenant_max_concurrency = number(
            "RUNNER_TENANT_MAX_CONCURRENCY",
            u64::from(limits::DEFAULT_TENANT_MAX_CONCURRENCY),
            1,
            10_000,
        ) as u32;
        let extension_max_concurrency = number(
            "RUNNER_EXTENSION_MAX_CONCURRENCY",
            u64::from(limits::DEFAULT_EXTENSION_MAX_CONCURRENCY),
            1,
            10_000,
        ) as u32;
        let validate_per_second = number(
            "RUNNER_UI_VALIDATE_MAX_PER_SECOND",
            u64::from(crate::ui::DEFAULT_VALIDATIONS_PER_SECOND),
            1,
            1_000_000,
        ) as u32;
        let header_read_timeout = Duration::from_millis(number(
            "RUNNER_HEADER_READ_TIMEOUT_MS",
            limits::DEFAULT_HEADER_READ_TIMEOUT_MS,
            1,
            600_000,
        ));
        let body_read_timeout = Duration::from_millis(number(
            "RUNNER_BODY_READ_TIMEOUT_MS",
            limits::DEFAULT_BODY_READ_TIMEOUT_MS,
            1,
            600_000,
        ));
        let max_connections = number("RUNNER_MAX_CONNECTIONS", limits::default_max_connections(), 1, 1 << 20) as usize;
        let idle_timeout = Duration::from_millis(number(
            "RUNNER_IDLE_TIMEOUT_MS",
            limits::DEFAULT_IDLE_TIMEOUT_MS,
            1,
            3_600_000,
        ));
        let write_stall_timeout = Duration::from_millis(number(
            "RUNNER_WRITE_STALL_TIMEOUT_MS",
            limits::DEFAULT_WRITE_STALL_TIMEOUT_MS,
            1,
            3_600_000,
        ));
        let drain_delay = Duration::from_millis(number(
            "RUNNER_DRAIN_DELAY_MS",
            limits::DEFAULT_DRAIN_DELAY_MS,
            0,
            600_000,
        ));
        let metrics_token = get("RUNNER_METRICS_TOKEN").map(str::to_string);
        if metrics_token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            problems.push("RUNNER_METRICS_TOKEN: must be at least 16 characters".to_string());
        }
        let log_format = match get("RUNNER_LOG_FORMAT") {
            None if overrides.dev => LogFormat::Pretty,
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                problems.push(format!("RUNNER_LOG_FORMAT: `{other}` must be `json` or `pretty`"));
                LogFormat::Json
            }
        };

        let mut flag = |key: &str, default: bool| -> bool {
            match get(key).map(str::to_ascii_lowercase).as_deref() {
                None => default,
                Some("true" | "1" | "yes") => true,
                Some("false" | "0" | "no") => false,
                Some(other) => {
                    problems.push(format!("{key}: `{other}` must be true or false"));
                    default
                }
            }
        };
        let signing_required = flag("SIGNING_REQUIRED", true);
        let trust_precompiled = flag("RUNNER_TRUST_PRECOMPILED", false);
        let require_extension_match = flag("RUNNER_REQUIRE_EXTENSION_MATCH", false);
        let allow_inline_secrets = flag("RUNNER_ALLOW_INLINE_SECRETS", false);
        let trust = get("SIGNING_TRUST_BUNDLE").and_then(|value| {
            TrustSettings::load(value)
                .map_err(|why| problems.push(format!("SIGNING_TRUST_BUNDLE: {why}")))
                .ok()
        });
        let secrets_key = match (get("RUNNER_SECRETS_KEY"), get("RUNNER_SECRETS_KEY_FILE")) {
            (Some(_), Some(_)) => {
                problems.push("RUNNER_SECRETS_KEY and RUNNER_SECRETS_KEY_FILE: set one, not both".to_string());
                None
            }
            (Some(text), None) => secrets_key(text)
                .map_err(|why| problems.push(format!("RUNNER_SECRETS_KEY: {why}")))
                .ok(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("`{path}`: {e}"))
                .and_then(|text| secrets_key(&text))
                .map_err(|why| problems.push(format!("RUNNER_SECRETS_KEY_FILE: {why}")))
                .ok(),
            (None, None) => None,
        };
        let vault = match (get("VAULT_ADDR"), get("VAULT_TOKEN_FILE")) {
            (None, None) => None,
            (Some(addr), Some(path)) => {
                if !(addr.starts_with("http://") || addr.starts_with("https://")) {
                    problems.push(format!("VAULT_ADDR: `{addr}` must be an http(s) URL"));
                }
                std::fs::read_to_string(path)
                    .map_err(|e| format!("VAULT_TOKEN_FILE: `{path}`: {e}"))
                    .and_then(|token| {
                        crate::host::secrets::VaultConfig::new(addr.to_string(), token.trim().to_string())
                            .map_err(|why| format!("VAULT_ADDR: {why}"))
                    })
                    .map_err(|why| problems.push(why))
                    .ok()
            }
            _ => {
                problems.push("VAULT_ADDR and VAULT_TOKEN_FILE: set both or neither".to_string());
                None
            }
        };
        let secrets = crate::host::secrets::SecretsConfig {
            key: secrets_key,
            allow_inline: allow_inline_secrets,
            vault,
        };
        let mut csp =
            crate::ui::with_sandbox(get("EXT_UI_CONTENT_SECURITY_POLICY").unwrap_or(crate::ui::DEFAULT_UI_CSP))
                .unwrap_or_else(|why| {
                    problems.push(format!("EXT_UI_CONTENT_SECURITY_POLICY: {why}"));
                    crate::ui::DEFAULT_UI_CSP.to_string()
                });
        if let Some(ancestors) = get("EXT_UI_FRAME_ANCESTORS") {
            csp = format!("{csp}; frame-ancestors {ancestors}");
        }
        if csp.contains(['\r', '\n']) {
            problems.push("EXT_UI_CONTENT_SECURITY_POLICY/EXT_UI_FRAME_ANCESTORS: must be one line".to_string());
        }
        let max_file_bytes = match get("EXT_STATIC_MAX_FILE_BYTES") {
            None => crate::ui::DEFAULT_STATIC_MAX_FILE_BYTES,
            Some(text) => parse_bytes(text).unwrap_or_else(|| {
                problems.push(format!(
                    "EXT_STATIC_MAX_FILE_BYTES: `{text}` must be a byte count like 16MiB"
                ));
                crate::ui::DEFAULT_STATIC_MAX_FILE_BYTES
            }),
        };
        let validate_url = get("RUNNER_UI_VALIDATE_URL").map(String::from);
        if let Some(url) = &validate_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(format!("RUNNER_UI_VALIDATE_URL: `{url}` must be an http(s) URL"));
        }
        let ui = crate::ui::UiConfig {
            csp,
            max_file_bytes,
            validate_url,
            validate_per_second,
        };
        let public_listen = get("RUNNER_PUBLIC_LISTEN").and_then(|text| {
            text.parse::<SocketAddr>()
                .map_err(|_| {
                    problems.push(format!(
                        "RUNNER_PUBLIC_LISTEN: `{text}` is not an address like 0.0.0.0:8081"
                    ))
                })
                .ok()
        });
        let egress = ext_egress::Settings::from_lookup(|key| get(key).map(String::from))
            .map_err(|errors| {
                for e in errors.0 {
                    problems.push(format!("{e}"));
                }
            })
            .unwrap_or_default();
        let public_base = get("RUNNER_PUBLIC_BASE").map(|url| url.trim_end_matches('/').to_string());
        if let Some(url) = &public_base
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(format!("RUNNER_PUBLIC_BASE: `{url}` must be an http(s) origin"));
        }
        let ui_proxy_base_url = get("UI_PROXY_BASE_URL").map(|url| url.trim_end_matches('/').to_string());
        if let Some(url) = &ui_proxy_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(format!("UI_PROXY_BASE_URL: `{url}` must be an http(s) URL"));
        }
        let storage_kv_url = get("STORAGE_KV_URL")
            .map(String::from)
            .unwrap_or_else(|| data_dir.join("kv.redb").display().to_string());
        let cache_max_bytes = match get("RUNNER_CACHE_MAX_BYTES") {
            None => limits::DEFAULT_CACHE_MAX_BYTES,
            Some(text) => parse_bytes(text).unwrap_or_else(|| {
                problems.push(format!(
                    "RUNNER_CACHE_MAX_BYTES: `{text}` must be a byte count like 10737418240, 512MiB or 10GiB"
                ));
                limits::DEFAULT_CACHE_MAX_BYTES
            }),
        };

        let max_component_bytes = match get("RUNNER_MAX_COMPONENT_BYTES") {
            None => limits::DEFAULT_MAX_COMPONENT_BYTES,
            Some(text) => match parse_bytes(text) {
                Some(bytes) if bytes > 0 => bytes,
                _ => {
                    problems.push(format!(
                        "RUNNER_MAX_COMPONENT_BYTES: `{text}` must be a positive byte count like 33554432 or 32MiB"
                    ));
                    limits::DEFAULT_MAX_COMPONENT_BYTES
                }
            },
        };

        let tenant_rate_limit = crate::quota::RateLimit::parse(
            get("RUNNER_TENANT_RATE_LIMIT").unwrap_or(limits::DEFAULT_TENANT_RATE_LIMIT),
        )
        .unwrap_or_else(|why| {
            problems.push(format!("RUNNER_TENANT_RATE_LIMIT: {why}"));
            None
        });
        let tenant_cpu_budget =
            crate::quota::cpu_budget::CpuLimit::parse(get("RUNNER_TENANT_CPU_MS_PER_SEC").unwrap_or("off"))
                .unwrap_or_else(|why| {
                    problems.push(format!("RUNNER_TENANT_CPU_MS_PER_SEC: {why}"));
                    None
                });
        let tenant_cpu_weights = parse_weights(get("RUNNER_TENANT_CPU_WEIGHTS").unwrap_or("")).unwrap_or_else(|why| {
            problems.push(format!("RUNNER_TENANT_CPU_WEIGHTS: {why}"));
            HashMap::new()
        });
        let rate_limit_redis_url = get("RUNNER_RATE_LIMIT_REDIS_URL").map(|url| {
            if let Err(why) = crate::quota::check_redis_url(url) {
                problems.push(format!("RUNNER_RATE_LIMIT_REDIS_URL: {why}"));
            } else if tenant_rate_limit.is_none()
                && get("RUNNER_TENANT_RATE_LIMIT").is_none()
                && get("RUNNER_TENANT_CPU_MS_PER_SEC").is_none()
            {
                problems.push(
                    "RUNNER_RATE_LIMIT_REDIS_URL: set, but neither RUNNER_TENANT_RATE_LIMIT nor RUNNER_TENANT_CPU_MS_PER_SEC is (nothing to share)"
                        .to_string(),
                );
            }
            url.to_string()
        });

        let debug_redis_url = get("RUNNER_DEBUG_REDIS_URL").map(|url| {
            if let Err(why) = crate::host::debug_sink::check_url(url) {
                problems.push(format!("RUNNER_DEBUG_REDIS_URL: {why}"));
            }
            url.to_string()
        });

        for key in env.keys() {
            let known_prefix = key.starts_with("RUNNER_") || key.starts_with("BUNDLE_STORAGE_");
            if known_prefix && !ENV_VARS.contains(&key.as_str()) && !LATER_ENV_VARS.contains(&key.as_str()) {
                problems.push(format!("{key}: unknown setting (see the README's configuration table)"));
            }
        }

        if !problems.is_empty() {
            problems.sort();
            return Err(ConfigError { problems });
        }
        Ok(Config {
            listen,
            data_dir,
            cache_dir,
            storage,
            service_tokens,
            dev: overrides.dev,
            max_memory_mb,
            max_timeout_ms,
            max_request_bytes,
            max_response_bytes,
            max_concurrency,
            max_loaded_components,
            compile_concurrency,
            max_component_bytes,
            tenant_max_concurrency,
            extension_max_concurrency,
            tenant_rate_limit,
            rate_limit_redis_url,
            guest_threads,
            tenant_cpu_queue,
            tenant_cpu_weights,
            tenant_cpu_budget,
            debug_redis_url,
            header_read_timeout,
            body_read_timeout,
            max_connections,
            idle_timeout,
            write_stall_timeout,
            drain_delay,
            metrics_token,
            log_format,
            signing_required,
            trust,
            cache_max_bytes,
            trust_precompiled,
            require_extension_match,
            storage_kv_url,
            secrets,
            ui,
            public_listen,
            egress: std::sync::Arc::new(egress),
            ui_proxy_base_url,
            public_base,
        })
    }

    /// A configuration for tests and `exec`: everything under `dir`, no
    /// network listener in use, default limits.
    pub fn for_dir(dir: &std::path::Path) -> Config {
        let env = HashMap::from([
            ("RUNNER_DATA_DIR".to_string(), dir.display().to_string()),
            ("RUNNER_SERVICE_TOKEN".to_string(), "local-only-token-0000".to_string()),
        ]);
        Config::load(&env, &Overrides::default()).expect("built-in configuration is valid")
    }
}

/// Settings of the seed read by other parts of the platform (the gateway's
/// `RUNNER_BASE_URL`) or by features listed as absent in the README; they
/// are accepted so shared deployment manifests do not fail validation.
const LATER_ENV_VARS: &[&str] = &["RUNNER_BASE_URL"];

/// The environment merged over a TOML configuration file (`--config`):
/// defaults < file < environment < flags. The file is flat, with the same
/// names as the environment (`RUNNER_MAX_MEMORY_MB = 256`; lower case is
/// fine); arrays become comma-separated lists.
///
/// # Errors
/// Unreadable or invalid TOML, unknown keys and nested tables, all at once,
/// each naming the file.
pub fn with_file(
    env: &HashMap<String, String>,
    path: Option<&std::path::Path>,
) -> Result<HashMap<String, String>, ConfigError> {
    let Some(path) = path else {
        return Ok(env.clone());
    };
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![format!("--config {shown}: {e}")],
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
        problems: vec![format!("--config {shown}: {}", e.to_string().trim())],
    })?;
    let mut merged = HashMap::new();
    let mut problems = Vec::new();
    for (key, value) in table {
        let name = key.to_ascii_uppercase();
        let known = ENV_VARS.contains(&name.as_str())
            || ext_egress::config::ENV_VARS.contains(&name.as_str())
            || LATER_ENV_VARS.contains(&name.as_str());
        if !known {
            problems.push(format!(
                "--config {shown}: `{key}`: unknown setting (see the README's configuration table)"
            ));
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let parts: Option<Vec<String>> = items
                    .into_iter()
                    .map(|item| match item {
                        toml::Value::String(s) => Some(s),
                        toml::Value::Integer(i) => Some(i.to_string()),
                        _ => None,
                    })
                    .collect();
                match parts {
                    Some(parts) => parts.join(","),
                    None => {
                        problems.push(format!(
                            "--config {shown}: `{key}`: arrays may hold only strings and integers"
                        ));
                        continue;
                    }
                }
            }
            _ => {
                problems.push(format!(
                    "--config {shown}: `{key}`: must be a string, number, boolean or array"
                ));
                continue;
            }
        };
        merged.insert(name, text);
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(ConfigError { problems });
    }
    // The environment overrides the file.
    merged.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(merged)
}

/// A 32-byte AES key given as base64 (what `ext-runner secrets keygen` prints).
///
/// # Errors
/// A message saying what is wrong (never the key).
pub fn secrets_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "not base64 (expected 32 random bytes in base64, see `ext-runner secrets keygen`)".to_string())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("decodes to {} bytes; 32 are required", bytes.len()))
}

/// The default of `RUNNER_COMPILE_CONCURRENCY` (Cranelift is CPU-bound; see
/// `limits::COMPILE_TENANT_SHARE_DIVISOR`) and `RUNNER_GUEST_THREADS`: the
/// cores this process may use.
fn available_cores() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// `RUNNER_TENANT_CPU_WEIGHTS`: `tenant=weight` pairs separated by commas
/// (`acme=4,globex=2`), weights in 1..=[`limits::MAX_TENANT_CPU_WEIGHT`].
fn parse_weights(text: &str) -> Result<HashMap<String, u32>, String> {
    let mut weights = HashMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let shape = || format!("`{pair}` must be `<tenant id>=<weight>`, e.g. `acme=4`");
        let (tenant, weight) = pair.rsplit_once('=').ok_or_else(shape)?;
        let tenant = tenant.trim();
        if tenant.is_empty() || tenant.len() > limits::MAX_ID_BYTES {
            return Err(shape());
        }
        let weight = match weight.trim().parse::<u32>() {
            Ok(w) if (1..=limits::MAX_TENANT_CPU_WEIGHT).contains(&w) => w,
            _ => {
                return Err(format!(
                    "`{pair}`: the weight must be an integer in 1..={}",
                    limits::MAX_TENANT_CPU_WEIGHT
                ));
            }
        };
        if weights.insert(tenant.to_string(), weight).is_some() {
            return Err(format!("`{tenant}` is named twice"));
        }
    }
    Ok(weights)
}

/// `123`, `512KiB`, `64MiB`, `10GiB` (binary units; `KB`/`MB`/`GB` too).
fn parse_bytes(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale)
}

fn default_data_dir(env: &HashMap<String, String>) -> PathBuf {
    if let Some(xdg) = env.get("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("ext-runner");
    }
    if let Some(home) = env.get("HOME").filter(|v| !v.is_empty() && v.as_str() != "/") {
        return PathBuf::from(home).join(".local/share/ext-runner");
    }
    PathBuf::from("/var/lib/ext-runner")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_a_token_outside_dev() {
        let err = Config::load(&env(&[("HOME", "/home/u")]), &Overrides::default()).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].starts_with("RUNNER_SERVICE_TOKEN: required"), "{err}");

        let dev = Overrides {
            dev: true,
            ..Overrides::default()
        };
        let config = Config::load(&env(&[("HOME", "/home/u")]), &dev).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("/home/u/.local/share/ext-runner"));
        assert_eq!(config.cache_dir, PathBuf::from("/home/u/.local/share/ext-runner/cache"));
        assert_eq!(
            config.storage.url,
            StoreUrl::File(PathBuf::from("/home/u/.local/share/ext-runner/bundles"))
        );
        assert_eq!(config.max_memory_mb, limits::DEFAULT_MAX_MEMORY_MB);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Config::load(
            &env(&[
                ("RUNNER_LISTEN", "nonsense"),
                ("RUNNER_MAX_MEMORY_MB", "lots"),
                ("RUNNER_MAX_TIMEOUT_MS", "0"),
                ("BUNDLE_STORAGE_URL", "gopher://x"),
                ("RUNNER_SERVICE_TOKEN", "short"),
                ("RUNNER_TYPO", "1"),
            ]),
            &Overrides::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "RUNNER_LISTEN/--listen/PORT: `nonsense`",
            "RUNNER_MAX_MEMORY_MB: `lots`",
            "RUNNER_MAX_TIMEOUT_MS: `0`",
            "BUNDLE_STORAGE_URL: `gopher://x`: scheme `gopher`",
            "RUNNER_SERVICE_TOKEN: token #1 is shorter",
            "RUNNER_TYPO: unknown setting",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.problems.len(), 6);
    }

    #[test]
    fn precedence_flag_over_env_over_port() {
        let vars = env(&[
            ("PORT", "9000"),
            ("RUNNER_SERVICE_TOKEN", "a-long-enough-token,another-long-token"),
        ]);
        let config = Config::load(&vars, &Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.service_tokens.len(), 2);
        let mut vars2 = vars.clone();
        vars2.insert("RUNNER_LISTEN".into(), "127.0.0.1:7000".into());
        assert_eq!(
            Config::load(&vars2, &Overrides::default()).unwrap().listen.to_string(),
            "127.0.0.1:7000"
        );
        let flags = Overrides {
            listen: Some("127.0.0.1:6000".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::load(&vars2, &flags).unwrap().listen.to_string(),
            "127.0.0.1:6000"
        );
    }

    #[test]
    fn dev_without_token_only_on_loopback() {
        let dev = Overrides {
            dev: true,
            listen: Some("0.0.0.0:8080".into()),
            ..Overrides::default()
        };
        let err = Config::load(&env(&[]), &dev).unwrap_err();
        assert!(err.to_string().contains("non-loopback"), "{err}");
    }

    #[test]
    fn debug_redacts_tokens() {
        let config = Config::for_dir(std::path::Path::new("/tmp/x"));
        let text = format!("{config:?}");
        assert!(!text.contains("local-only-token"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn store_urls() {
        let ok: &[(&str, StoreUrl)] = &[
            ("file:///srv/b", StoreUrl::File(PathBuf::from("/srv/b"))),
            ("relative/dir", StoreUrl::File(PathBuf::from("relative/dir"))),
            (
                "s3://bundles",
                StoreUrl::S3 {
                    bucket: "bundles".into(),
                    prefix: String::new(),
                },
            ),
            (
                "s3://my.bundles-1/prod/ext/",
                StoreUrl::S3 {
                    bucket: "my.bundles-1".into(),
                    prefix: "prod/ext".into(),
                },
            ),
            (
                "https://cdn.example.com/bundles/",
                StoreUrl::Http {
                    url: "https://cdn.example.com/bundles".into(),
                },
            ),
            (
                "http://127.0.0.1:8080",
                StoreUrl::Http {
                    url: "http://127.0.0.1:8080".into(),
                },
            ),
        ];
        for (text, expected) in ok {
            assert_eq!(&StoreUrl::parse(text).unwrap(), expected, "{text}");
        }
        assert_eq!(StoreUrl::parse("s3://b-1/p/q").unwrap().to_string(), "s3://b-1/p/q");
        let bad = [
            ("file://relative", "absolute path"),
            ("s3://", "not a bucket name"),
            ("s3://Upper", "not a bucket name"),
            ("s3://bucket/a//b", "empty, `.` or `..` segment"),
            ("s3://bucket/a/../b", "empty, `.` or `..` segment"),
            ("s3://bucket/a b", "the character ' '"),
            ("https:///x", "no host"),
            ("https://h/x?y=1", "no query"),
            ("ftp://h/x", "scheme `ftp` is not supported"),
            ("", "must not be empty"),
        ];
        for (text, needle) in bad {
            let err = StoreUrl::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn storage_settings_from_env() {
        let vars = env(&[
            ("RUNNER_SERVICE_TOKEN", "a-long-enough-token"),
            ("BUNDLE_STORAGE_URL", "s3://bundles/prod"),
            ("BUNDLE_STORAGE_ENDPOINT", "http://127.0.0.1:8333"),
            ("BUNDLE_STORAGE_REGION", "eu-west-1"),
            ("BUNDLE_STORAGE_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("BUNDLE_STORAGE_SECRET_ACCESS_KEY", "super-secret-value"),
            ("BUNDLE_STORAGE_FORCE_PATH_STYLE", "true"),
            ("BUNDLE_STORAGE_KEY_LAYOUT", "t/{tenant}/{hex}/bundle.tar.zst"),
        ]);
        let config = Config::load(&vars, &Overrides::default()).unwrap();
        let storage = &config.storage;
        assert_eq!(
            storage.url,
            StoreUrl::S3 {
                bucket: "bundles".into(),
                prefix: "prod".into()
            }
        );
        assert_eq!(storage.s3.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(storage.s3.region.as_deref(), Some("eu-west-1"));
        assert!(storage.s3.force_path_style);
        assert_eq!(storage.layout.template(), "t/{tenant}/{hex}/bundle.tar.zst");
        let text = format!("{config:?}");
        assert!(!text.contains("super-secret-value"), "{text}");
        assert!(text.contains("AKIDEXAMPLE"), "{text}");

        // `--store` overrides the URL; the other settings still apply.
        let flags = Overrides {
            bundle_store: Some("file:///srv/b".into()),
            ..Overrides::default()
        };
        let config = Config::load(&vars, &flags).unwrap();
        assert_eq!(config.storage.url, StoreUrl::File(PathBuf::from("/srv/b")));
        assert_eq!(config.storage.s3.region.as_deref(), Some("eu-west-1"));

        let loaded = StorageSettings::load("s3://bundles/prod", &vars).unwrap();
        assert_eq!(&loaded, storage);
    }

    #[test]
    fn every_storage_problem_is_reported_at_once() {
        let err = Config::load(
            &env(&[
                ("RUNNER_SERVICE_TOKEN", "a-long-enough-token"),
                ("BUNDLE_STORAGE_URL", "s3://x"),
                ("BUNDLE_STORAGE_ENDPOINT", "127.0.0.1:8333"),
                ("BUNDLE_STORAGE_REGION", "eu west"),
                ("BUNDLE_STORAGE_ACCESS_KEY_ID", "AKID"),
                ("BUNDLE_STORAGE_FORCE_PATH_STYLE", "sometimes"),
                ("BUNDLE_STORAGE_KEY_LAYOUT", "../{hex}/bundle.tar.zst"),
                ("BUNDLE_STORAGE_BUKET", "typo"),
            ]),
            &Overrides::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "BUNDLE_STORAGE_URL: `s3://x`: `x` is not a bucket name",
            "BUNDLE_STORAGE_ENDPOINT: `127.0.0.1:8333` must be a base URL",
            "BUNDLE_STORAGE_REGION: `eu west`",
            "BUNDLE_STORAGE_SECRET_ACCESS_KEY: required when BUNDLE_STORAGE_ACCESS_KEY_ID is set",
            "BUNDLE_STORAGE_FORCE_PATH_STYLE: `sometimes` must be true or false",
            "BUNDLE_STORAGE_KEY_LAYOUT: `../{hex}/bundle.tar.zst`: `..` segments are not allowed",
            "BUNDLE_STORAGE_BUKET: unknown setting",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.problems.len(), 7, "{text}");
    }

    #[test]
    fn toml_file_sits_under_the_environment_and_reports_every_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runner.toml");
        std::fs::write(
            &file,
            "runner_max_memory_mb = 64\nRUNNER_MAX_TIMEOUT_MS = 1000\nRUNNER_SERVICE_TOKEN = [\"token-aaaaaaaaaaaaaaaa\", \"token-bbbbbbbbbbbbbbbb\"]\n",
        )
        .unwrap();
        let merged = with_file(&env(&[("RUNNER_MAX_TIMEOUT_MS", "2000")]), Some(&file)).unwrap();
        let config = Config::load(&merged, &Overrides::default()).unwrap();
        assert_eq!(config.max_memory_mb, 64);
        assert_eq!(config.max_timeout_ms, 2000, "the environment wins");
        assert_eq!(config.service_tokens.len(), 2);

        std::fs::write(
            &file,
            "RUNNER_MAX_MEMRY_MB = 1\n[nested]\nx = 1\nSIGNING_REQUIRED = { a = 1 }\n",
        )
        .unwrap();
        let err = with_file(&env(&[]), Some(&file)).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{:?}", err.problems);
        assert!(
            err.problems.iter().all(|p| p.contains("runner.toml")),
            "{:?}",
            err.problems
        );
        std::fs::write(&file, "not toml at all = = =").unwrap();
        assert!(with_file(&env(&[]), Some(&file)).unwrap_err().problems[0].contains("runner.toml"));
    }
}
