//! One typed configuration: a struct of each subsystem's settings, read
//! from one [`Source`] (defaults < TOML file < environment < flags) and
//! validated before anything binds a port. Every problem is reported at
//! once.
//!
//! `source` is the bottom of the crate (it imports nothing of it); each
//! subsystem reads its own settings from it (`Settings::from_source`), and
//! this module only puts them together. Configuration is read from a map
//! (never from the live process environment inside the library) so tests
//! can hand in their own.

pub mod source;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use self::source::{ConfigError, Source};
pub use crate::server::settings::LogFormat;

/// Fully validated runner configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Root for runner-owned state (`RUNNER_DATA_DIR`, `--data-dir`).
    pub data_dir: PathBuf,
    /// Unpacked bundles and compiled artifacts (`RUNNER_CACHE_DIR`, `--cache-dir`).
    pub cache_dir: PathBuf,
    /// Which roles this process runs (`RUNNER_ROLES`).
    pub roles: crate::roles::Roles,
    /// Listeners, tokens, connection limits, drain, logging.
    pub server: crate::server::settings::ServerSettings,
    /// The registry role's database and tokens (`REGISTRY_*`).
    pub registry: crate::registry::settings::RegistrySettings,
    /// The gateway role's user keys, links and limits (`GATEWAY_*`).
    pub gateway: crate::gateway::settings::GatewaySettings,
    /// Which keys execution grants must be signed with (`RUNNER_GRANT_KEYS`).
    pub grants: crate::grant::GrantSettings,
    /// Where the revocation list comes from (`RUNNER_REVOCATIONS_*`).
    pub revocations: crate::revocation::RevocationSettings,
    /// The operator's ceilings on one execution (`RUNNER_MAX_*`).
    pub limits: crate::limits::ExecutionLimits,
    /// Compile and component-cache sizing.
    pub engine: crate::engine::EngineSettings,
    /// Where bundles are fetched from and how (`BUNDLE_STORAGE_*`).
    pub storage: crate::store::StorageSettings,
    /// How bundles are verified and cached (`SIGNING_*`, `RUNNER_CACHE_MAX_BYTES`, …).
    pub bundles: crate::store::BundleSettings,
    /// Tenant and extension concurrency, rate limit, CPU budget.
    pub quota: crate::quota::QuotaSettings,
    /// The idempotency-key replay store's bounds (`RUNNER_IDEMPOTENCY_*`).
    pub idempotency: crate::idempotency::IdempotencySettings,
    /// Guest threads and the tenants' fair share of them.
    pub cpu: crate::cpu::CpuSettings,
    /// The host capabilities' settings (kv, egress, secrets, ui-proxy, debug sink).
    pub host: crate::host::Settings,
    /// UI asset serving: CSP, size cap, install check.
    pub ui: crate::ui::settings::UiConfig,
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

impl Config {
    /// Merge defaults, `env` and `overrides`, then validate everything.
    ///
    /// # Errors
    /// [`ConfigError`] listing every bad key at once.
    pub fn load(env: &HashMap<String, String>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::from_source(with_overrides(Source::new(env.clone()), overrides))
    }

    /// [`Config::load`] with a TOML file (`--config`) under the environment.
    ///
    /// # Errors
    /// The file's problems, or [`ConfigError`] listing every bad key.
    pub fn load_with_file(
        env: &HashMap<String, String>,
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let source = match file {
            None => Source::new(env.clone()),
            Some(path) => Source::with_file(env.clone(), path, known_settings())?,
        };
        Config::from_source(with_overrides(source, overrides))
    }

    /// Every subsystem's settings from `source`.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem and unknown key at once.
    pub fn from_source(source: Source) -> Result<Config, ConfigError> {
        let config = Config::read(&source);
        source.finish().map(|()| config)
    }

    /// Read everything, recording problems in `source`. Every reader reads
    /// its keys whatever the others hold, so the keys read from an empty
    /// source are the complete list ([`known_settings`]).
    fn read(source: &Source) -> Config {
        let data_dir = source
            .text("RUNNER_DATA_DIR")
            .map_or_else(|| default_data_dir(source), PathBuf::from);
        let cache_dir = source
            .text("RUNNER_CACHE_DIR")
            .map_or_else(|| data_dir.join("cache"), PathBuf::from);
        let roles = crate::roles::Roles::from_source(source);
        Config {
            roles,
            server: crate::server::settings::ServerSettings::from_source(source),
            registry: crate::registry::settings::RegistrySettings::from_source(source, &data_dir),
            gateway: crate::gateway::settings::GatewaySettings::from_source(source),
            grants: crate::grant::GrantSettings::from_source(source, roles),
            revocations: crate::revocation::RevocationSettings::from_source(source),
            limits: crate::limits::ExecutionLimits::from_source(source),
            engine: crate::engine::EngineSettings::from_source(source),
            storage: crate::store::StorageSettings::from_source(source, data_dir.join("bundles")),
            bundles: crate::store::BundleSettings::from_source(source),
            quota: crate::quota::QuotaSettings::from_source(source),
            idempotency: crate::idempotency::IdempotencySettings::from_source(source),
            cpu: crate::cpu::CpuSettings::from_source(source),
            host: crate::host::Settings::from_source(source, &data_dir),
            ui: crate::ui::settings::UiConfig::from_source(source),
            data_dir,
            cache_dir,
        }
    }

    /// A configuration for tests and `exec`: everything under `dir`, no
    /// network listener in use, default limits.
    pub fn for_dir(dir: &Path) -> Config {
        let env = HashMap::from([
            ("RUNNER_DATA_DIR".to_string(), dir.display().to_string()),
            ("RUNNER_SERVICE_TOKEN".to_string(), "local-only-token-0000".to_string()),
        ]);
        Config::load(&env, &Overrides::default()).expect("built-in configuration is valid")
    }
}

/// Every setting the runner reads, derived from the readers: the names an
/// empty source is asked for.
pub fn known_settings() -> &'static BTreeSet<&'static str> {
    static KNOWN: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let source = Source::new(HashMap::new()).with_dev(true);
        Config::read(&source);
        source.read_keys()
    })
}

/// Flags win over the file and the environment.
fn with_overrides(source: Source, overrides: &Overrides) -> Source {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    source
        .with_flag("RUNNER_LISTEN", overrides.listen.clone())
        .with_flag("RUNNER_DATA_DIR", path(&overrides.data_dir))
        .with_flag("RUNNER_CACHE_DIR", path(&overrides.cache_dir))
        .with_flag("BUNDLE_STORAGE_URL", overrides.bundle_store.clone())
        .with_dev(overrides.dev)
}

fn default_data_dir(source: &Source) -> PathBuf {
    if let Some(xdg) = source.foreign("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("ext-runner");
    }
    if let Some(home) = source.foreign("HOME").filter(|v| *v != "/") {
        return PathBuf::from(home).join(".local/share/ext-runner");
    }
    PathBuf::from("/var/lib/ext-runner")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits;
    use crate::store::{StorageSettings, StoreUrl};

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
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("/home/u/.local/share/ext-runner"));
        assert_eq!(config.cache_dir, PathBuf::from("/home/u/.local/share/ext-runner/cache"));
        assert_eq!(
            config.storage.url,
            StoreUrl::File(PathBuf::from("/home/u/.local/share/ext-runner/bundles"))
        );
        assert_eq!(config.limits.max_memory_mb, limits::DEFAULT_MAX_MEMORY_MB);
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
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.server.service_tokens.len(), 2);
        let mut vars2 = vars.clone();
        vars2.insert("RUNNER_LISTEN".into(), "127.0.0.1:7000".into());
        assert_eq!(
            Config::load(&vars2, &Overrides::default())
                .unwrap()
                .server
                .listen
                .to_string(),
            "127.0.0.1:7000"
        );
        let flags = Overrides {
            listen: Some("127.0.0.1:6000".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::load(&vars2, &flags).unwrap().server.listen.to_string(),
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
        let config = Config::load_with_file(
            &env(&[("RUNNER_MAX_TIMEOUT_MS", "2000")]),
            Some(&file),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.limits.max_memory_mb, 64);
        assert_eq!(config.limits.max_timeout_ms, 2000, "the environment wins");
        assert_eq!(config.server.service_tokens.len(), 2);

        std::fs::write(
            &file,
            "RUNNER_MAX_MEMRY_MB = 1\n[nested]\nx = 1\nSIGNING_REQUIRED = { a = 1 }\n",
        )
        .unwrap();
        let err = Config::load_with_file(&env(&[]), Some(&file), &Overrides::default()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{:?}", err.problems);
        assert!(
            err.problems.iter().all(|p| p.contains("runner.toml")),
            "{:?}",
            err.problems
        );
        std::fs::write(&file, "not toml at all = = =").unwrap();
        let err = Config::load_with_file(&env(&[]), Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.problems[0].contains("runner.toml"), "{err}");
    }

    #[test]
    fn known_settings_are_derived_from_the_readers() {
        let known = known_settings();
        for key in [
            "RUNNER_LISTEN",
            "PORT",
            "BUNDLE_STORAGE_KEY_LAYOUT",
            "VAULT_TOKEN_FILE",
            "RUNNER_BASE_URL",
        ] {
            assert!(known.contains(key), "{key}");
        }
        // ext-egress's own list: every one of its settings is read.
        for key in ext_egress::config::ENV_VARS {
            assert!(known.contains(key), "{key}");
        }
        assert!(!known.contains("HOME"), "read, but not ours");
    }
}
