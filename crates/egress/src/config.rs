//! The limit stack of egress in one place (`DEFAULT_*` / `MAX_*`), [`EgressConfig`], and
//! [`Settings::from_lookup`], which reads the `EXT_EGRESS_*` variables through a lookup
//! function (the runner hands it the environment; tests hand it a map) and reports every bad
//! key at once.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::addr::{AddressPolicy, Cidr, CidrError};
use crate::policy::{Allowlist, OperatorPolicy, PatternError, PolicyFileError, UndeclaredManifests};

/// How long one DNS resolution may take before the guest gets a DNS timeout (F-06): the
/// smokescreen default. Also bounded by the invocation deadline.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long establishing a connection may take (TCP, and again for the TLS handshake): long
/// enough for a far region, short enough that a black-holed address fails well inside a
/// typical invocation budget.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From writing the request to the response head (S-10: a silent upstream must not hold an
/// invocation until its deadline when the deadline is long).
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest silence between two pieces of the response body (S-10: a trickling upstream).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// One whole request, DNS to the last body byte. The invocation deadline usually ends a
/// request earlier; this bounds it when the runner gives a long deadline.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Response body bytes buffered for the guest (S-10): the body is handed over in one piece
/// (`list<u8>`), so this is host memory per in-flight request.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;
/// Response body bytes one invocation may receive in all (A-22): each response is buffered by
/// the host, outside the guest's memory limit, until the guest has read it, so without a sum
/// `max_requests_per_invocation` responses of the per-response cap (32 × 10 MiB) could be held
/// at once. Three full-size responses, or many ordinary API answers.
pub const DEFAULT_MAX_RESPONSE_BYTES_PER_INVOCATION: u64 = 32 * 1024 * 1024;
/// Request body bytes forwarded per request. The guest already holds them in memory; the cap
/// keeps one invocation from turning the runner into a bulk uploader.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Outbound requests per invocation (S-10): enough for a handler that fans out to a few APIs,
/// few enough that one request cannot become a flood.
pub const DEFAULT_MAX_REQUESTS_PER_INVOCATION: u32 = 32;
/// Bytes of a request URL: browsers and servers commonly stop at 8 KiB.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Request headers per request: hyper's server default, so upstreams accept what we send.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// Bytes of request header names and values per request, before secret substitution.
pub const MAX_REQUEST_HEADER_BYTES: usize = 64 * 1024;
/// Response headers per response; more fails the request (a header flood from an upstream).
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// Bytes of the response head (status line and headers).
pub const MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;
/// Bytes of a secret name inside `{{secret:NAME}}`.
pub const MAX_SECRET_NAME_BYTES: usize = 256;

/// How the egress engine behaves; the same for every tenant. Tenant- and invocation-specific
/// parts live in [`crate::Policy`] and [`crate::FetchContext`].
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// See [`DEFAULT_DNS_TIMEOUT`].
    pub dns_timeout: Duration,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_FIRST_BYTE_TIMEOUT`].
    pub first_byte_timeout: Duration,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_TOTAL_TIMEOUT`].
    pub total_timeout: Duration,
    /// See [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: u64,
    /// See [`DEFAULT_MAX_RESPONSE_BYTES_PER_INVOCATION`]; used by [`crate::Egress::budget`].
    pub max_response_bytes_per_invocation: u64,
    /// See [`DEFAULT_MAX_REQUEST_BODY_BYTES`]; enforced while a streamed body is sent too.
    pub max_request_body_bytes: u64,
    /// See [`DEFAULT_MAX_REQUESTS_PER_INVOCATION`]; used by [`crate::Egress::budget`].
    pub max_requests_per_invocation: u32,
    /// The address table and the operator's explicit CIDR allowances
    /// (`EXT_EGRESS_ALLOW_PRIVATE_CIDRS`).
    pub addresses: AddressPolicy,
    /// The runner's own listen addresses (API, admin, metrics): never a destination, even when
    /// an allowance covers them (S-09). An unspecified IP (`0.0.0.0:8080`) refuses that port on
    /// every non-public address; the runner's public addresses cannot be known here, so list
    /// them explicitly if the runner has any.
    pub self_addrs: Vec<SocketAddr>,
    /// Substitute `{{secret:NAME}}` only into `https` requests (default), so a secret never
    /// crosses the network in clear text.
    pub secrets_require_https: bool,
    /// Trust anchors added to the Mozilla roots compiled in (a private CA; tests).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_response_bytes_per_invocation: DEFAULT_MAX_RESPONSE_BYTES_PER_INVOCATION,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            max_requests_per_invocation: DEFAULT_MAX_REQUESTS_PER_INVOCATION,
            addresses: AddressPolicy::default(),
            self_addrs: Vec::new(),
            secrets_require_https: true,
            extra_roots: Vec::new(),
        }
    }
}

/// Comma-separated allowlist patterns every tenant may reach.
pub const ENV_ALLOWLIST: &str = "EXT_EGRESS_ALLOWLIST";
/// Path of the per-tenant policy file, `{ "tenants": { "<tenant>": ["pattern", ...] } }`.
pub const ENV_POLICY_FILE: &str = "EXT_EGRESS_POLICY_FILE";
/// `deny` (default) or `operator`: what a manifest without `network.allowed_hosts` may reach
/// when the envelope carries no install list ([`UndeclaredManifests`]).
pub const ENV_UNDECLARED_MANIFESTS: &str = "EXT_EGRESS_UNDECLARED_MANIFESTS";
/// Comma-separated CIDR blocks exempt from the address table (`127.0.0.1/32` in tests).
pub const ENV_ALLOW_PRIVATE_CIDRS: &str = "EXT_EGRESS_ALLOW_PRIVATE_CIDRS";
/// [`EgressConfig::dns_timeout`] in milliseconds.
pub const ENV_DNS_TIMEOUT_MS: &str = "EXT_EGRESS_DNS_TIMEOUT_MS";
/// [`EgressConfig::connect_timeout`] in milliseconds.
pub const ENV_CONNECT_TIMEOUT_MS: &str = "EXT_EGRESS_CONNECT_TIMEOUT_MS";
/// [`EgressConfig::first_byte_timeout`] in milliseconds.
pub const ENV_FIRST_BYTE_TIMEOUT_MS: &str = "EXT_EGRESS_FIRST_BYTE_TIMEOUT_MS";
/// [`EgressConfig::idle_timeout`] in milliseconds.
pub const ENV_IDLE_TIMEOUT_MS: &str = "EXT_EGRESS_IDLE_TIMEOUT_MS";
/// [`EgressConfig::total_timeout`] in milliseconds.
pub const ENV_TOTAL_TIMEOUT_MS: &str = "EXT_EGRESS_TOTAL_TIMEOUT_MS";
/// [`EgressConfig::max_response_bytes`].
pub const ENV_MAX_RESPONSE_BYTES: &str = "EXT_EGRESS_MAX_RESPONSE_BYTES";
/// [`EgressConfig::max_request_body_bytes`].
pub const ENV_MAX_REQUEST_BODY_BYTES: &str = "EXT_EGRESS_MAX_REQUEST_BODY_BYTES";
/// [`EgressConfig::max_response_bytes_per_invocation`].
pub const ENV_MAX_RESPONSE_BYTES_PER_INVOCATION: &str = "EXT_EGRESS_MAX_RESPONSE_BYTES_PER_INVOCATION";
/// [`EgressConfig::max_requests_per_invocation`].
pub const ENV_MAX_REQUESTS: &str = "EXT_EGRESS_MAX_REQUESTS_PER_INVOCATION";
/// [`EgressConfig::secrets_require_https`], `true` or `false`.
pub const ENV_SECRETS_REQUIRE_HTTPS: &str = "EXT_EGRESS_SECRETS_REQUIRE_HTTPS";

/// Every variable [`Settings::from_lookup`] reads, for the README's configuration table.
pub const ENV_VARS: &[&str] = &[
    ENV_ALLOWLIST,
    ENV_POLICY_FILE,
    ENV_UNDECLARED_MANIFESTS,
    ENV_ALLOW_PRIVATE_CIDRS,
    ENV_DNS_TIMEOUT_MS,
    ENV_CONNECT_TIMEOUT_MS,
    ENV_FIRST_BYTE_TIMEOUT_MS,
    ENV_IDLE_TIMEOUT_MS,
    ENV_TOTAL_TIMEOUT_MS,
    ENV_MAX_RESPONSE_BYTES,
    ENV_MAX_REQUEST_BODY_BYTES,
    ENV_MAX_RESPONSE_BYTES_PER_INVOCATION,
    ENV_MAX_REQUESTS,
    ENV_SECRETS_REQUIRE_HTTPS,
];

/// One bad configuration key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{key}: {source}")]
    Pattern {
        key: &'static str,
        #[source]
        source: PatternError,
    },
    #[error("{key}: {source}")]
    Cidr {
        key: &'static str,
        #[source]
        source: CidrError,
    },
    /// Not a positive integer (or, for a boolean key, not `true`/`false`).
    #[error("{key}: `{value}` is not {expected}")]
    Value {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{key}: cannot read {}", path.display())]
    PolicyFileRead {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {}: {source}", path.display())]
    PolicyFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: PolicyFileError,
    },
}

/// Every bad key found by [`Settings::from_lookup`].
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// What the operator configures: the engine's config and the operator's allowlists.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub config: EgressConfig,
    pub operator: OperatorPolicy,
}

impl Settings {
    /// Reads every `EXT_EGRESS_*` variable ([`ENV_VARS`]) through `lookup` over the defaults,
    /// reading the policy file if one is named. Unset variables keep their defaults; an unset
    /// allowlist allows nothing.
    ///
    /// # Errors
    /// [`ConfigErrors`] listing every bad key, not just the first.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigErrors> {
        let mut errors = Vec::new();
        let mut config = EgressConfig::default();

        let global = match lookup(ENV_ALLOWLIST) {
            None => Allowlist::default(),
            Some(list) => Allowlist::parse_list(&list).unwrap_or_else(|source| {
                errors.push(ConfigError::Pattern {
                    key: ENV_ALLOWLIST,
                    source,
                });
                Allowlist::default()
            }),
        };
        let tenants = match lookup(ENV_POLICY_FILE).filter(|p| !p.trim().is_empty()) {
            None => HashMap::new(),
            Some(path) => {
                let path = PathBuf::from(path.trim());
                match std::fs::read_to_string(&path) {
                    Err(source) => {
                        errors.push(ConfigError::PolicyFileRead {
                            key: ENV_POLICY_FILE,
                            path,
                            source,
                        });
                        HashMap::new()
                    }
                    Ok(json) => OperatorPolicy::parse_tenant_file(&json).unwrap_or_else(|source| {
                        errors.push(ConfigError::PolicyFile {
                            key: ENV_POLICY_FILE,
                            path,
                            source,
                        });
                        HashMap::new()
                    }),
                }
            }
        };
        let undeclared = match lookup(ENV_UNDECLARED_MANIFESTS) {
            None => UndeclaredManifests::default(),
            Some(value) => value.parse().unwrap_or_else(|()| {
                errors.push(ConfigError::Value {
                    key: ENV_UNDECLARED_MANIFESTS,
                    value,
                    expected: "deny or operator",
                });
                UndeclaredManifests::default()
            }),
        };
        if let Some(list) = lookup(ENV_ALLOW_PRIVATE_CIDRS) {
            let mut cidrs = Vec::new();
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match item.parse::<Cidr>() {
                    Ok(cidr) => cidrs.push(cidr),
                    Err(source) => errors.push(ConfigError::Cidr {
                        key: ENV_ALLOW_PRIVATE_CIDRS,
                        source,
                    }),
                }
            }
            config.addresses = AddressPolicy::new(cidrs);
        }

        let mut positive = |key: &'static str| -> Option<u64> {
            let value = lookup(key)?;
            match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    errors.push(ConfigError::Value {
                        key,
                        value,
                        expected: "a positive integer",
                    });
                    None
                }
            }
        };
        let ms = Duration::from_millis;
        if let Some(v) = positive(ENV_DNS_TIMEOUT_MS) {
            config.dns_timeout = ms(v);
        }
        if let Some(v) = positive(ENV_CONNECT_TIMEOUT_MS) {
            config.connect_timeout = ms(v);
        }
        if let Some(v) = positive(ENV_FIRST_BYTE_TIMEOUT_MS) {
            config.first_byte_timeout = ms(v);
        }
        if let Some(v) = positive(ENV_IDLE_TIMEOUT_MS) {
            config.idle_timeout = ms(v);
        }
        if let Some(v) = positive(ENV_TOTAL_TIMEOUT_MS) {
            config.total_timeout = ms(v);
        }
        if let Some(v) = positive(ENV_MAX_RESPONSE_BYTES) {
            config.max_response_bytes = v;
        }
        if let Some(v) = positive(ENV_MAX_REQUEST_BODY_BYTES) {
            config.max_request_body_bytes = v;
        }
        if let Some(v) = positive(ENV_MAX_RESPONSE_BYTES_PER_INVOCATION) {
            config.max_response_bytes_per_invocation = v;
        }
        if let Some(v) = positive(ENV_MAX_REQUESTS) {
            config.max_requests_per_invocation = u32::try_from(v).unwrap_or(u32::MAX);
        }
        if let Some(value) = lookup(ENV_SECRETS_REQUIRE_HTTPS) {
            match value.trim() {
                "true" | "1" => config.secrets_require_https = true,
                "false" | "0" => config.secrets_require_https = false,
                _ => errors.push(ConfigError::Value {
                    key: ENV_SECRETS_REQUIRE_HTTPS,
                    value,
                    expected: "true or false",
                }),
            }
        }

        if errors.is_empty() {
            Ok(Settings {
                config,
                operator: OperatorPolicy::new(global, tenants).with_undeclared_manifests(undeclared),
            })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Destination;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |key| map.get(key).cloned()
    }

    #[test]
    fn defaults_allow_nothing() {
        let settings = Settings::from_lookup(lookup(&[])).unwrap();
        let d = Destination::parse("https://example.com/").unwrap();
        assert!(!settings.operator.allows("t", &d));
        assert!(settings.config.addresses.allowances().is_empty());
        assert_eq!(settings.config.dns_timeout, DEFAULT_DNS_TIMEOUT);
        assert_eq!(
            settings.config.max_requests_per_invocation,
            DEFAULT_MAX_REQUESTS_PER_INVOCATION
        );
        assert!(settings.config.secrets_require_https);
        assert_eq!(settings.operator.undeclared_manifests(), UndeclaredManifests::Deny);
    }

    #[test]
    fn reads_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(&file, r#"{"tenants": {"acme": ["https://acme.example"]}}"#).unwrap();
        let settings = Settings::from_lookup(lookup(&[
            (ENV_ALLOWLIST, "https://a.example, https://*.b.example:8443"),
            (ENV_POLICY_FILE, file.to_str().unwrap()),
            (ENV_UNDECLARED_MANIFESTS, "operator"),
            (ENV_ALLOW_PRIVATE_CIDRS, "127.0.0.1/32, 10.0.0.0/8"),
            (ENV_DNS_TIMEOUT_MS, "250"),
            (ENV_CONNECT_TIMEOUT_MS, "1000"),
            (ENV_FIRST_BYTE_TIMEOUT_MS, "2000"),
            (ENV_IDLE_TIMEOUT_MS, "3000"),
            (ENV_TOTAL_TIMEOUT_MS, "4000"),
            (ENV_MAX_RESPONSE_BYTES, "1024"),
            (ENV_MAX_REQUEST_BODY_BYTES, "2048"),
            (ENV_MAX_RESPONSE_BYTES_PER_INVOCATION, "4096"),
            (ENV_MAX_REQUESTS, "3"),
            (ENV_SECRETS_REQUIRE_HTTPS, "false"),
        ]))
        .unwrap();
        let c = &settings.config;
        assert_eq!(c.dns_timeout, Duration::from_millis(250));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.first_byte_timeout, Duration::from_secs(2));
        assert_eq!(c.idle_timeout, Duration::from_secs(3));
        assert_eq!(c.total_timeout, Duration::from_secs(4));
        assert_eq!((c.max_response_bytes, c.max_request_body_bytes), (1024, 2048));
        assert_eq!(c.max_response_bytes_per_invocation, 4096);
        assert_eq!(c.max_requests_per_invocation, 3);
        assert!(!c.secrets_require_https);
        assert_eq!(settings.operator.undeclared_manifests(), UndeclaredManifests::Operator);
        assert_eq!(c.addresses.allowances().len(), 2);
        let acme = Destination::parse("https://acme.example/").unwrap();
        assert!(settings.operator.allows("acme", &acme) && !settings.operator.allows("other", &acme));
        let b = Destination::parse("https://x.b.example:8443/").unwrap();
        assert!(settings.operator.allows("other", &b));
    }

    /// Habit 8: every bad key is reported at once.
    #[test]
    fn reports_every_bad_key() {
        let err = Settings::from_lookup(lookup(&[
            (ENV_ALLOWLIST, "example.com"),
            (ENV_POLICY_FILE, "/nonexistent/ext-egress-policy.json"),
            (ENV_UNDECLARED_MANIFESTS, "allow"),
            (ENV_ALLOW_PRIVATE_CIDRS, "127.0.0.1/32,10.0.0.1/8,nope"),
            (ENV_DNS_TIMEOUT_MS, "0"),
            (ENV_MAX_REQUESTS, "-1"),
            (ENV_SECRETS_REQUIRE_HTTPS, "maybe"),
        ]))
        .unwrap_err();
        let keys: Vec<&str> = err
            .0
            .iter()
            .map(|e| match e {
                ConfigError::Pattern { key, .. }
                | ConfigError::Cidr { key, .. }
                | ConfigError::Value { key, .. }
                | ConfigError::PolicyFileRead { key, .. }
                | ConfigError::PolicyFile { key, .. } => *key,
            })
            .collect();
        assert_eq!(
            keys,
            [
                ENV_ALLOWLIST,
                ENV_POLICY_FILE,
                ENV_UNDECLARED_MANIFESTS,
                ENV_ALLOW_PRIVATE_CIDRS,
                ENV_ALLOW_PRIVATE_CIDRS,
                ENV_DNS_TIMEOUT_MS,
                ENV_MAX_REQUESTS,
                ENV_SECRETS_REQUIRE_HTTPS
            ]
        );
        assert!(err.to_string().contains(ENV_SECRETS_REQUIRE_HTTPS));
    }
}
