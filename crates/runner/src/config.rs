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

/// Fully validated runner configuration.
#[derive(Clone)]
pub struct Config {
    /// Address the HTTP server binds (`RUNNER_LISTEN`, `PORT`, `--listen`).
    pub listen: SocketAddr,
    /// Root for runner-owned state (`RUNNER_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Unpacked bundles and compiled artifacts (`RUNNER_CACHE_DIR`).
    pub cache_dir: PathBuf,
    /// Where bundles are fetched from (`BUNDLE_STORAGE_URL`).
    pub bundle_store: StoreUrl,
    /// Accepted service tokens (`RUNNER_SERVICE_TOKEN`, comma-separated).
    pub service_tokens: Vec<String>,
    /// `serve --dev`: tokens optional on loopback, example extension served.
    pub dev: bool,
    pub max_memory_mb: u64,
    pub max_timeout_ms: u64,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    pub max_concurrency: u32,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// `RUNNER_LOG_FORMAT`: `json` (default) or `pretty` (default in dev).
    pub log_format: LogFormat,
}

/// A bundle store location. Only local directories exist so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// `file:///absolute/path`: key layout `sha256/<hex>/bundle.tar.zst`.
    File(PathBuf),
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

impl StoreUrl {
    /// Parse `file:///abs/path` or a plain absolute or relative path.
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
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(format!(
                "`{value}`: scheme `{scheme}` is not supported yet (supported: file://)"
            ));
        }
        if value.is_empty() {
            return Err("must not be empty".to_string());
        }
        Ok(StoreUrl::File(PathBuf::from(value)))
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
            .field("bundle_store", &self.bundle_store)
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
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("log_format", &self.log_format)
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
    "RUNNER_SERVICE_TOKEN",
    "RUNNER_MAX_MEMORY_MB",
    "RUNNER_MAX_TIMEOUT_MS",
    "RUNNER_MAX_REQUEST_BYTES",
    "RUNNER_MAX_RESPONSE_BYTES",
    "RUNNER_MAX_CONCURRENCY",
    "RUNNER_HEADER_READ_TIMEOUT_MS",
    "RUNNER_BODY_READ_TIMEOUT_MS",
    "RUNNER_LOG_FORMAT",
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
        let bundle_store = match store_text {
            Some(text) => StoreUrl::parse(&text).unwrap_or_else(|why| {
                problems.push(format!("BUNDLE_STORAGE_URL: {why}"));
                StoreUrl::File(data_dir.join("bundles"))
            }),
            None => StoreUrl::File(data_dir.join("bundles")),
        };

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
        let max_timeout_ms = number("RUNNER_MAX_TIMEOUT_MS", limits::DEFAULT_MAX_TIMEOUT_MS, 1, 3_600_000);
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
        let log_format = match get("RUNNER_LOG_FORMAT") {
            None if overrides.dev => LogFormat::Pretty,
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                problems.push(format!("RUNNER_LOG_FORMAT: `{other}` must be `json` or `pretty`"));
                LogFormat::Json
            }
        };

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
            bundle_store,
            service_tokens,
            dev: overrides.dev,
            max_memory_mb,
            max_timeout_ms,
            max_request_bytes,
            max_response_bytes,
            max_concurrency,
            header_read_timeout,
            body_read_timeout,
            log_format,
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
const LATER_ENV_VARS: &[&str] = &["RUNNER_BASE_URL", "RUNNER_PUBLIC_BASE"];

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
            config.bundle_store,
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
}
