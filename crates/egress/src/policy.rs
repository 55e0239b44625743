//! Destinations: URL parsing for `http.fetch` ([`Destination`]) and the allowlists it must pass
//! ([`Pattern`], [`Allowlist`], [`OperatorPolicy`], [`Policy`], [`UndeclaredManifests`]). Pure
//! and synchronous; tested table-driven below (S-02, S-07).
//!
//! A pattern is `scheme://host[:port]`: the scheme is required (`http` or `https`), the port
//! defaults to the scheme's (80, 443), and the host is a name, an IP literal, `*.suffix`
//! (strict subdomains of `suffix`, on the dot boundary, not `suffix` itself) or `*` (any host;
//! address vetting still applies). Hosts on both sides are normalised the same way before they
//! are compared: WHATWG URL parsing (ASCII lower-case, IDNA to punycode, IPv4 spellings such as
//! `2130706433`, `0x7f.1` and `0177.0.0.1` to dotted decimal), then one trailing dot stripped.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::MAX_URL_BYTES;
use crate::error::{EgressError, UrlProblem};

/// `http` or `https`, the only schemes egress speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(scheme: &str) -> Option<Scheme> {
        match scheme.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A normalised host: a lower-case ASCII (punycode) name without a trailing dot, or an IP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostName {
    Domain(String),
    Ip(IpAddr),
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostName::Domain(name) => f.write_str(name),
            HostName::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            HostName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The longest host name DNS can carry.
const MAX_HOST_BYTES: usize = 253;
/// The longest DNS label.
const MAX_LABEL_BYTES: usize = 63;

/// Normalises a host the URL parser produced. `None` for a name outside the DNS alphabet
/// (letters, digits, `-`, `_`), with empty or over-long labels, or longer than DNS allows.
fn normalize_host(host: url::Host<&str>) -> Option<HostName> {
    match host {
        url::Host::Ipv4(v4) => Some(HostName::Ip(IpAddr::V4(v4))),
        url::Host::Ipv6(v6) => Some(HostName::Ip(IpAddr::V6(v6))),
        url::Host::Domain(name) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            let valid = !name.is_empty()
                && name.len() <= MAX_HOST_BYTES
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= MAX_LABEL_BYTES
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
                });
            valid.then(|| HostName::Domain(name.to_owned()))
        }
    }
}

/// A parsed, normalised `http.fetch` URL: where a request would go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    scheme: Scheme,
    host: HostName,
    port: u16,
    /// The parsed URL, for the path and query (the fragment is never sent).
    url: url::Url,
}

impl Destination {
    /// Parses an absolute `http`/`https` URL without userinfo.
    ///
    /// # Errors
    /// [`EgressError::InvalidUrl`] for a relative, malformed or over-long URL or a host outside
    /// the DNS alphabet; [`EgressError::SchemeNotAllowed`] for other schemes (`gopher:`,
    /// `file:` ...); [`EgressError::UserinfoNotAllowed`] for `http://user@host/` (S-07).
    pub fn parse(input: &str) -> Result<Destination, EgressError> {
        if input.len() > MAX_URL_BYTES {
            return Err(EgressError::InvalidUrl {
                problem: UrlProblem::TooLong {
                    len: input.len(),
                    max: MAX_URL_BYTES,
                },
            });
        }
        let url = url::Url::parse(input).map_err(|e| EgressError::InvalidUrl {
            problem: UrlProblem::Parse(e),
        })?;
        let scheme = Scheme::parse(url.scheme()).ok_or_else(|| EgressError::SchemeNotAllowed {
            scheme: url.scheme().chars().take(32).collect(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::UserinfoNotAllowed);
        }
        let host = url.host().and_then(normalize_host).ok_or(EgressError::InvalidUrl {
            problem: UrlProblem::InvalidHost,
        })?;
        let port = url.port_or_known_default().unwrap_or(scheme.default_port());
        Ok(Destination {
            scheme,
            host,
            port,
            url,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn host(&self) -> &HostName {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request target in origin form: the path plus `?query`, never the fragment.
    pub fn origin_form(&self) -> &str {
        &self.url[url::Position::BeforePath..url::Position::AfterQuery]
    }

    /// The `Host` header: the host, plus `:port` when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Destination {
    /// `scheme://host:port`, for errors and logs (no path: it may carry tokens).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The host part of a [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostPattern {
    /// `*`: any host.
    Any,
    /// Exactly this host.
    Exact(HostName),
    /// `*.suffix`: names ending in `.suffix`, not `suffix` itself.
    Subdomains(String),
}

/// One allowlist entry, `https://api.example.com`, `https://*.example.org:8443`,
/// `http://127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    scheme: Scheme,
    host: HostPattern,
    port: u16,
}

/// Why an allowlist pattern did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid egress pattern `{pattern}`: {problem}")]
pub struct PatternError {
    /// The pattern as written (shortened to 200 characters).
    pub pattern: String,
    pub problem: PatternProblem,
}

/// What is wrong with a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternProblem {
    /// No `scheme://`.
    MissingScheme,
    /// A scheme other than `http` or `https`.
    UnsupportedScheme,
    /// A path, query, fragment or userinfo: a pattern is an origin only.
    NotAnOrigin,
    /// `*` somewhere other than a whole host or a leading `*.` label, or `*.` before an IP.
    Wildcard,
    /// The host or port does not parse.
    Host,
}

impl fmt::Display for PatternProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternProblem::MissingScheme => "missing scheme (write https://host or http://host:port)",
            PatternProblem::UnsupportedScheme => "only http and https are supported",
            PatternProblem::NotAnOrigin => "only scheme://host[:port] is allowed (no path, query or userinfo)",
            PatternProblem::Wildcard => "`*` may only be the whole host or its leftmost label (`*.example.com`)",
            PatternProblem::Host => "invalid host or port",
        })
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(pattern: &str) -> Result<Pattern, PatternError> {
        let fail = |problem| PatternError {
            pattern: pattern.chars().take(200).collect(),
            problem,
        };
        let (scheme_str, rest) = pattern.split_once("://").ok_or(fail(PatternProblem::MissingScheme))?;
        let scheme = Scheme::parse(scheme_str).ok_or(fail(PatternProblem::UnsupportedScheme))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@', '\\']) {
            return Err(fail(PatternProblem::NotAnOrigin));
        }
        // Parse the wildcard away, then let the URL parser normalise what is left exactly as it
        // normalises request URLs.
        let (wildcard, authority) = if let Some(suffix) = rest.strip_prefix("*.") {
            (Some(false), suffix.to_owned())
        } else if let Some(port) = rest.strip_prefix('*').filter(|p| p.is_empty() || p.starts_with(':')) {
            (Some(true), format!("any.invalid{port}"))
        } else {
            (None, rest.to_owned())
        };
        if authority.contains('*') {
            return Err(fail(PatternProblem::Wildcard));
        }
        let url = url::Url::parse(&format!("{scheme}://{authority}/")).map_err(|_| fail(PatternProblem::Host))?;
        if !url.username().is_empty() || url.password().is_some() || url.path() != "/" {
            return Err(fail(PatternProblem::NotAnOrigin));
        }
        let host = url.host().and_then(normalize_host).ok_or(fail(PatternProblem::Host))?;
        let port = url.port_or_known_default().unwrap_or(scheme.default_port());
        let host = match (wildcard, host) {
            (Some(true), _) => HostPattern::Any,
            (Some(false), HostName::Domain(suffix)) => HostPattern::Subdomains(suffix),
            (Some(false), HostName::Ip(_)) => return Err(fail(PatternProblem::Wildcard)),
            (None, host) => HostPattern::Exact(host),
        };
        Ok(Pattern { scheme, host, port })
    }
}

impl Pattern {
    /// Whether `destination` matches: same scheme, same port, and the host equal, a strict
    /// subdomain on the dot boundary (`*.`), or anything (`*`).
    pub fn matches(&self, destination: &Destination) -> bool {
        self.scheme == destination.scheme
            && self.port == destination.port
            && match (&self.host, &destination.host) {
                (HostPattern::Any, _) => true,
                (HostPattern::Exact(host), other) => host == other,
                (HostPattern::Subdomains(suffix), HostName::Domain(name)) => name
                    .strip_suffix(suffix.as_str())
                    .and_then(|head| head.strip_suffix('.'))
                    .is_some_and(|head| !head.is_empty()),
                (HostPattern::Subdomains(_), HostName::Ip(_)) => false,
            }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Exact(host) => write!(f, "{host}")?,
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}")?,
        }
        write!(f, ":{}", self.port)
    }
}

/// A list of patterns; a destination passes if any pattern matches. Empty allows nothing.
/// Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    patterns: Arc<[Pattern]>,
}

impl Allowlist {
    /// An allowlist of `patterns`.
    pub fn new(patterns: Vec<Pattern>) -> Allowlist {
        Allowlist {
            patterns: patterns.into(),
        }
    }

    /// Parses every pattern (a manifest's `network.allowed_hosts`, an install's list).
    ///
    /// # Errors
    /// The first [`PatternError`].
    pub fn parse<I>(patterns: I) -> Result<Allowlist, PatternError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| p.as_ref().parse())
            .collect::<Result<Vec<Pattern>, _>>()?;
        Ok(Allowlist::new(patterns))
    }

    /// Parses a comma-separated list (`EXT_EGRESS_ALLOWLIST`); blanks around items and empty
    /// items are ignored.
    ///
    /// # Errors
    /// The first [`PatternError`].
    pub fn parse_list(list: &str) -> Result<Allowlist, PatternError> {
        Allowlist::parse(list.split(',').map(str::trim).filter(|p| !p.is_empty()))
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern matches `destination`.
    pub fn matches(&self, destination: &Destination) -> bool {
        self.patterns.iter().any(|p| p.matches(destination))
    }
}

/// Why the per-tenant policy file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// Not `{ "tenants": { "<tenant>": ["pattern", ...] } }`.
    #[error("invalid egress policy file: {0}")]
    Json(#[source] serde_json::Error),
    /// A tenant's pattern does not parse.
    #[error("tenant `{tenant}`: {source}")]
    Pattern {
        tenant: String,
        #[source]
        source: PatternError,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    tenants: HashMap<String, Vec<String>>,
}

/// What a manifest that declares no `network.allowed_hosts` (an upstream manifest) may reach
/// when no install list names its hosts either (no registry, no grant):
/// `EXT_EGRESS_UNDECLARED_MANIFESTS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UndeclaredManifests {
    /// Nothing (the default): deny by default holds when nobody listed a host.
    #[default]
    Deny,
    /// The operator's list for the tenant alone, for operators who vet every extension's
    /// egress themselves.
    Operator,
}

impl UndeclaredManifests {
    /// `"deny"` or `"operator"`, as the setting is written.
    pub fn as_str(self) -> &'static str {
        match self {
            UndeclaredManifests::Deny => "deny",
            UndeclaredManifests::Operator => "operator",
        }
    }
}

impl std::str::FromStr for UndeclaredManifests {
    type Err = ();

    fn from_str(value: &str) -> Result<UndeclaredManifests, ()> {
        match value.trim().to_ascii_lowercase().as_str() {
            "deny" => Ok(UndeclaredManifests::Deny),
            "operator" => Ok(UndeclaredManifests::Operator),
            _ => Err(()),
        }
    }
}

/// The operator's side of the intersection: `EXT_EGRESS_ALLOWLIST` for every tenant, plus
/// the tenant's own entries from the policy file (a union: the file adds destinations per
/// tenant, it does not narrow the global list), and what a manifest without a list gets when
/// no install list narrows it ([`UndeclaredManifests`]).
#[derive(Debug, Clone, Default)]
pub struct OperatorPolicy {
    /// Patterns every tenant may reach.
    global: Allowlist,
    /// Extra patterns per tenant id.
    tenants: HashMap<String, Allowlist>,
    /// See [`UndeclaredManifests`]; [`Policy::new`] reads it.
    undeclared: UndeclaredManifests,
}

impl OperatorPolicy {
    /// The lists, with [`UndeclaredManifests::Deny`].
    pub fn new(global: Allowlist, tenants: HashMap<String, Allowlist>) -> OperatorPolicy {
        OperatorPolicy {
            global,
            tenants,
            undeclared: UndeclaredManifests::Deny,
        }
    }

    /// The same lists, with `undeclared` for manifests that declare no list.
    pub fn with_undeclared_manifests(self, undeclared: UndeclaredManifests) -> OperatorPolicy {
        OperatorPolicy { undeclared, ..self }
    }

    /// What a manifest without a list gets when no install list narrows it.
    pub fn undeclared_manifests(&self) -> UndeclaredManifests {
        self.undeclared
    }

    /// Parses the per-tenant policy file, `{ "tenants": { "<tenant>": ["pattern", ...] } }`.
    ///
    /// # Errors
    /// [`PolicyFileError`] for malformed JSON, unknown keys or a bad pattern.
    pub fn parse_tenant_file(json: &str) -> Result<HashMap<String, Allowlist>, PolicyFileError> {
        let file: PolicyFile = serde_json::from_str(json).map_err(PolicyFileError::Json)?;
        file.tenants
            .into_iter()
            .map(|(tenant, patterns)| match Allowlist::parse(&patterns) {
                Ok(list) => Ok((tenant, list)),
                Err(source) => Err(PolicyFileError::Pattern { tenant, source }),
            })
            .collect()
    }

    /// Whether the operator lets `tenant` reach `destination`.
    pub fn allows(&self, tenant: &str, destination: &Destination) -> bool {
        self.global.matches(destination) || self.tenants.get(tenant).is_some_and(|list| list.matches(destination))
    }

    /// The operator's list for `tenant` (global ∪ the tenant's).
    pub fn for_tenant(&self, tenant: &str) -> Allowlist {
        match self.tenants.get(tenant) {
            None => self.global.clone(),
            Some(extra) => Allowlist::new(self.global.patterns().iter().chain(extra.patterns()).cloned().collect()),
        }
    }
}

/// The destinations one invocation may reach: the operator's list for the tenant ∩ the
/// install's list when the envelope (or its grant) carries one ∩ the manifest's
/// `network.allowed_hosts` when the manifest declares one. With neither an install list nor a
/// manifest list (an upstream manifest run without a registry or grant), nothing, unless the
/// operator chose [`UndeclaredManifests::Operator`]. An empty list on any side allows nothing;
/// nothing configured by the operator allows nothing. Built by the runner per invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `None`: the manifest declares no list (it does not narrow).
    manifest: Option<Allowlist>,
    /// Empty when the operator allows nothing, or when nobody listed a host and the operator
    /// did not opt in ([`UndeclaredManifests::Deny`]).
    operator: Allowlist,
    /// `None`: no install list (it does not narrow).
    install: Option<Allowlist>,
}

impl Policy {
    /// The policy for one invocation of `tenant`'s extension: `manifest` is `None` when the
    /// manifest has no `network`, `install` when the envelope carries no `egress`.
    pub fn new(
        manifest: Option<Allowlist>,
        operator: &OperatorPolicy,
        tenant: &str,
        install: Option<Allowlist>,
    ) -> Policy {
        let unlisted = manifest.is_none() && install.is_none();
        let operator = match (unlisted, operator.undeclared) {
            (true, UndeclaredManifests::Deny) => Allowlist::default(),
            _ => operator.for_tenant(tenant),
        };
        Policy {
            manifest,
            operator,
            install,
        }
    }

    /// A policy that allows nothing (the default).
    pub fn deny_all() -> Policy {
        Policy::default()
    }

    /// Whether every side allows `destination`.
    pub fn allows(&self, destination: &Destination) -> bool {
        self.operator.matches(destination)
            && self.manifest.as_ref().is_none_or(|list| list.matches(destination))
            && self.install.as_ref().is_none_or(|list| list.matches(destination))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(url: &str) -> Destination {
        Destination::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn list(patterns: &[&str]) -> Allowlist {
        Allowlist::parse(patterns).unwrap()
    }

    #[test]
    fn patterns_parse_and_normalise() {
        let cases: &[(&str, &str)] = &[
            ("https://api.example.com", "https://api.example.com:443"),
            ("https://API.Example.COM./", "https://api.example.com:443"),
            ("HTTP://host:8080", "http://host:8080"),
            ("http://host:80", "http://host:80"),
            ("https://*.example.org:8443", "https://*.example.org:8443"),
            ("https://*", "https://*:443"),
            ("http://*:8080", "http://*:8080"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("https://bücher.example", "https://xn--bcher-kva.example:443"),
        ];
        for (input, shown) in cases {
            let pattern: Pattern = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(pattern.to_string(), *shown, "{input}");
        }
    }

    #[test]
    fn bad_patterns() {
        let cases: &[(&str, PatternProblem)] = &[
            ("api.example.com", PatternProblem::MissingScheme),
            ("ftp://api.example.com", PatternProblem::UnsupportedScheme),
            ("gopher://api.example.com", PatternProblem::UnsupportedScheme),
            ("https://api.example.com/v1", PatternProblem::NotAnOrigin),
            ("https://api.example.com?x", PatternProblem::NotAnOrigin),
            ("https://user@api.example.com", PatternProblem::NotAnOrigin),
            ("https://a.*.example.com", PatternProblem::Wildcard),
            ("https://*example.com", PatternProblem::Wildcard),
            ("https://**.example.com", PatternProblem::Wildcard),
            ("https://*.127.0.0.1", PatternProblem::Wildcard),
            ("https://api.example.com:99999", PatternProblem::Host),
            ("https://", PatternProblem::Host),
            ("https://exa mple.com", PatternProblem::Host),
            ("https://a!b.com", PatternProblem::Host),
        ];
        for (input, problem) in cases {
            let err = input.parse::<Pattern>().unwrap_err();
            assert_eq!(err.problem, *problem, "{input}");
        }
    }

    /// S-02: every IPv4 spelling becomes one dotted address, so none can match a name pattern.
    #[test]
    fn s02_alternative_ipv4_spellings_normalise() {
        let cases: &[(&str, &str)] = &[
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://0/", "0.0.0.0"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("http://169.254.43518/", "169.254.169.254"),
            ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1"),
        ];
        let allowed = list(&["http://allowed.com", "http://*.allowed.com"]);
        for (url, ip) in cases {
            let d = dest(url);
            assert_eq!(d.host(), &HostName::Ip(ip.parse().unwrap()), "{url}");
            assert!(!allowed.matches(&d), "{url}");
        }
    }

    /// S-07: parsing and normalisation tricks against `allowed.com` and `*.allowed.com`.
    #[test]
    fn s07_allowlist_evasion_table() {
        let exact = list(&["http://allowed.com", "https://allowed.com"]);
        let wildcard = list(&["https://*.allowed.com"]);
        let cases: &[(&str, bool, bool)] = &[
            // (url, matches exact, matches wildcard)
            ("http://allowed.com/", true, false),
            ("http://ALLOWED.COM./", true, false),
            ("https://allowed.com:443/x", true, false),
            ("http://allowed.com:22/", false, false),
            ("http://allowed.com:8080/", false, false),
            ("https://allowed.com:80/", false, false),
            ("http://allowed.com.evil.com/", false, false),
            ("http://evilallowed.com/", false, false),
            ("https://evilallowed.com/", false, false),
            ("https://api.allowed.com/", false, true),
            ("https://a.b.allowed.com./", false, true),
            ("https://API.Allowed.Com/", false, true),
            ("https://api.allowed.com.evil.com/", false, false),
            ("https://.allowed.com/", false, false),
            // Cyrillic "а" (U+0430) is a different name once punycoded.
            ("http://\u{430}llowed.com/", false, false),
            ("https://api.\u{430}llowed.com/", false, false),
            // Fullwidth letters map to ASCII under IDNA: the same name, matched as such.
            ("http://\u{ff41}llowed.com/", true, false),
            // Percent-encoded host bytes decode to the same name.
            ("http://%61llowed.com/", true, false),
            // A backslash ends the authority in special URLs: the host is allowed.com.
            ("http://allowed.com\\@evil.com/", true, false),
        ];
        for (url, in_exact, in_wildcard) in cases {
            match Destination::parse(url) {
                Ok(d) => {
                    assert_eq!(exact.matches(&d), *in_exact, "{url} vs exact");
                    assert_eq!(wildcard.matches(&d), *in_wildcard, "{url} vs wildcard");
                }
                Err(e) => assert!(!in_exact && !in_wildcard, "{url} should parse: {e}"),
            }
        }
    }

    /// S-07: forms refused by URL parsing itself.
    #[test]
    fn s07_refused_urls() {
        let cases: &[(&str, &str)] = &[
            ("http://allowed.com@evil.com/", "userinfo_not_allowed"),
            ("http://user:pw@allowed.com/", "userinfo_not_allowed"),
            ("http://:pw@allowed.com/", "userinfo_not_allowed"),
            ("gopher://allowed.com:70/", "scheme_not_allowed"),
            ("file:///etc/passwd", "scheme_not_allowed"),
            ("ftp://allowed.com/", "scheme_not_allowed"),
            ("data:text/plain,hi", "scheme_not_allowed"),
            ("javascript:alert(1)", "scheme_not_allowed"),
            ("/relative/path", "invalid_url"),
            ("allowed.com/x", "invalid_url"),
            ("http://exa mple.com/", "invalid_url"),
            ("http://a!b.com/", "invalid_url"),
            ("http://*.allowed.com/", "invalid_url"),
            ("http://./", "invalid_url"),
            ("http://allowed..com/", "invalid_url"),
            ("http://1.2.3.4.5/", "invalid_url"),
        ];
        for (url, code) in cases {
            let err = Destination::parse(url).unwrap_err();
            assert_eq!(err.code(), *code, "{url}: {err}");
        }
        let long = format!("http://allowed.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(Destination::parse(&long).unwrap_err().code(), "invalid_url");
    }

    #[test]
    fn destination_request_parts() {
        let d = dest("https://API.example.com:8443/a/b?c=d&c=e#frag");
        assert_eq!(d.origin_form(), "/a/b?c=d&c=e");
        assert_eq!(d.host_header(), "api.example.com:8443");
        assert_eq!(d.to_string(), "https://api.example.com:8443");
        let d = dest("http://example.com");
        assert_eq!(d.origin_form(), "/");
        assert_eq!(d.host_header(), "example.com");
        let d = dest("http://[2606:4700::1]:80/x");
        assert_eq!(d.host_header(), "[2606:4700::1]");
    }

    #[test]
    fn wildcard_any_matches_every_host_on_its_scheme_and_port() {
        let any = list(&["https://*"]);
        assert!(any.matches(&dest("https://anything.example/")));
        assert!(any.matches(&dest("https://8.8.8.8/")));
        assert!(!any.matches(&dest("http://anything.example/")));
        assert!(!any.matches(&dest("https://anything.example:8443/")));
    }

    /// Deny by default, and the three-way intersection.
    #[test]
    fn policy_intersection() {
        let d = dest("https://api.example.com/x");
        let other = dest("https://other.example.com/x");
        let operator = OperatorPolicy::new(list(&["https://*.example.com"]), HashMap::new());

        assert!(!Policy::deny_all().allows(&d));
        assert!(
            !Policy::new(Some(Allowlist::default()), &operator, "t", None).allows(&d),
            "an empty manifest list"
        );
        let manifest = list(&["https://api.example.com", "https://other.example.com"]);
        assert!(
            !Policy::new(Some(manifest.clone()), &OperatorPolicy::default(), "t", None).allows(&d),
            "no operator"
        );
        let policy = Policy::new(Some(manifest.clone()), &operator, "t", None);
        assert!(policy.allows(&d) && policy.allows(&other));
        let install = Some(list(&["https://api.example.com"]));
        let policy = Policy::new(Some(manifest.clone()), &operator, "t", install);
        assert!(policy.allows(&d) && !policy.allows(&other), "install narrows");
        let policy = Policy::new(Some(manifest), &operator, "t", Some(Allowlist::default()));
        assert!(!policy.allows(&d), "an empty install list allows nothing");
    }

    /// The rule for a manifest that declares no list (upstream manifests), row by row as the
    /// README's table states it: (manifest list, install list, opt-in) → api / other allowed.
    #[test]
    fn policy_for_manifests_without_a_list() {
        let api = dest("https://api.example.com/x");
        let other = dest("https://other.example.com/x");
        let outside = dest("https://api.elsewhere.test/x");
        let deny = OperatorPolicy::new(list(&["https://*.example.com"]), HashMap::new());
        let opt_in = deny.clone().with_undeclared_manifests(UndeclaredManifests::Operator);
        let api_only = || Some(list(&["https://api.example.com"]));
        let both = || Some(list(&["https://api.example.com", "https://api.elsewhere.test"]));
        type Row = (Option<Allowlist>, Option<Allowlist>, bool, [bool; 3]);
        let rows: Vec<(&str, Row)> = vec![
            ("nobody lists a host", (None, None, false, [false, false, false])),
            (
                "nobody lists, operator opts in",
                (None, None, true, [true, true, false]),
            ),
            ("the install lists", (None, both(), false, [true, false, false])),
            (
                "the install lists, opt-in changes nothing",
                (None, both(), true, [true, false, false]),
            ),
            (
                "an empty install list",
                (None, Some(Allowlist::default()), true, [false, false, false]),
            ),
            ("the manifest lists", (both(), None, false, [true, false, false])),
            ("manifest ∩ install", (both(), api_only(), false, [true, false, false])),
            (
                "an empty manifest list",
                (Some(Allowlist::default()), both(), true, [false, false, false]),
            ),
        ];
        for (name, (manifest, install, opted_in, [a, o, x])) in rows {
            let operator = if opted_in { &opt_in } else { &deny };
            let policy = Policy::new(manifest, operator, "t", install);
            assert_eq!(
                [policy.allows(&api), policy.allows(&other), policy.allows(&outside)],
                [a, o, x],
                "{name}"
            );
        }
        assert!(
            !Policy::new(
                None,
                &OperatorPolicy::default().with_undeclared_manifests(UndeclaredManifests::Operator),
                "t",
                None
            )
            .allows(&api),
            "the opt-in with no operator list allows nothing"
        );
        assert_eq!("Operator ".parse(), Ok(UndeclaredManifests::Operator));
        assert_eq!("deny".parse(), Ok(UndeclaredManifests::Deny));
        assert_eq!("allow".parse::<UndeclaredManifests>(), Err(()));
    }

    #[test]
    fn operator_tenant_file_adds_per_tenant() {
        let json = r#"{ "tenants": { "acme": ["https://acme.example"], "other": [] } }"#;
        let tenants = OperatorPolicy::parse_tenant_file(json).unwrap();
        let operator = OperatorPolicy::new(Allowlist::parse_list(" https://global.example , ,").unwrap(), tenants);
        let acme = dest("https://acme.example/");
        let global = dest("https://global.example/");
        assert!(operator.allows("acme", &acme) && operator.allows("acme", &global));
        assert!(!operator.allows("other", &acme) && operator.allows("other", &global));
        assert!(!operator.allows("nobody", &acme));
        assert_eq!(operator.for_tenant("acme").patterns().len(), 2);

        assert!(matches!(
            OperatorPolicy::parse_tenant_file(r#"{ "tenant": {} }"#),
            Err(PolicyFileError::Json(_))
        ));
        let err = OperatorPolicy::parse_tenant_file(r#"{ "tenants": { "t": ["nope"] } }"#).unwrap_err();
        assert!(matches!(err, PolicyFileError::Pattern { ref tenant, .. } if tenant == "t"));
    }
}
