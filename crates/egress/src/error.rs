//! [`EgressError`], the one error of [`crate::Egress::fetch`], and [`HttpErrorKind`], the WIT
//! `alga:extension/types.http-error` variant each error becomes. Guest-supplied text kept in
//! an error (a header name, a method) is escaped and shortened, so a log line cannot be forged
//! through it; secret values are never kept at all.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::addr::Range;
use crate::resolve::ResolveError;

/// The WIT `http-error` enum (`invalid-url`, `not-allowed`, `transport`, `internal`), which
/// is all an `alga:extension` guest sees of an [`EgressError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpErrorKind {
    /// `invalid-url`: the request itself is malformed (URL, method, header syntax) or over a
    /// request size limit.
    InvalidUrl,
    /// `not-allowed`: a policy refused the request (allowlists, address table, self
    /// connection, forbidden header, unknown secret, request count).
    NotAllowed,
    /// `transport`: the network or the upstream failed (DNS, connect, TLS, timeouts, protocol,
    /// response too large).
    Transport,
    /// `internal`: a bug or host failure unrelated to the request.
    Internal,
}

/// Why a request failed. Each variant maps to exactly one [`HttpErrorKind`]
/// ([`EgressError::kind`]) and one stable [`code`](EgressError::code) for logs and metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    // ---- invalid-url ----
    /// Not an absolute URL, a host outside the DNS alphabet, or too long.
    #[error("invalid URL: {problem}")]
    InvalidUrl { problem: UrlProblem },
    /// Not an HTTP method token, or `CONNECT`.
    #[error("invalid HTTP method {method:?}")]
    InvalidMethod { method: String },
    /// A header name or value that HTTP cannot carry (CR, LF, NUL, ...), or a malformed
    /// `{{secret:...}}` reference (S-08).
    #[error("invalid request header {name:?}: {problem}")]
    InvalidHeader { name: String, problem: HeaderProblem },
    /// The request body or headers pass a limit.
    #[error("request {part} over the limit: {size} > {limit}")]
    RequestTooLarge { part: RequestPart, size: u64, limit: u64 },

    // ---- not-allowed ----
    /// A scheme other than `http`/`https` (S-07: `gopher:`).
    #[error("scheme {scheme:?} is not allowed")]
    SchemeNotAllowed { scheme: String },
    /// `http://user@host/`: userinfo could hide the real host from a reader (S-07).
    #[error("URLs with userinfo are not allowed")]
    UserinfoNotAllowed,
    /// No allowlist pattern matches (the manifest ∩ operator ∩ install intersection).
    #[error("destination {destination} is not allowed")]
    NotAllowed { destination: String },
    /// An IP-literal host that no explicit CIDR allowance covers.
    #[error("IP literal {ip} is not allowed (no CIDR allowance covers it)")]
    IpLiteralNotAllowed { ip: IpAddr },
    /// The address (literal or resolved) is in a prohibited range (S-01..S-05).
    #[error("destination address {ip} is prohibited ({range})")]
    DestinationIpProhibited { ip: IpAddr, range: Range },
    /// The address is one of the runner's own listeners (S-09).
    #[error("destination {addr} is the runner itself")]
    SelfConnection { addr: SocketAddr },
    /// `Host`, hop-by-hop, `proxy-*` and `expect` request headers are the host's (S-08).
    #[error("request header {name:?} is forbidden")]
    ForbiddenHeader { name: String },
    /// `{{secret:NAME}}` names no secret available to this invocation.
    #[error("unknown secret {name:?}")]
    UnknownSecret { name: String },
    /// `{{secret:NAME}}` in a plain `http` request while secrets require `https`.
    #[error("secret {name:?} may only be sent over https")]
    SecretRequiresHttps { name: String },
    /// The invocation already made its allowed number of requests (S-10).
    #[error("more than {limit} outbound requests in one invocation")]
    RequestLimitExceeded { limit: u32 },

    // ---- transport ----
    /// Resolution failed or found no address (F-06).
    #[error("cannot resolve {host}")]
    Dns {
        host: String,
        #[source]
        source: ResolveError,
    },
    /// Resolution took longer than the DNS timeout or the deadline allowed (F-06).
    #[error("resolving {host} timed out after {}ms", after.as_millis())]
    DnsTimeout { host: String, after: Duration },
    /// No vetted address accepted a connection.
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A phase of the request passed its timeout or the invocation deadline (S-10).
    #[error("{phase} timed out")]
    Timeout { phase: Phase },
    /// The TLS handshake failed (untrusted certificate, wrong name, protocol).
    #[error("TLS handshake with {host} failed")]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The upstream broke HTTP/1.1 (malformed or oversized head, early close ...).
    #[error("HTTP exchange failed")]
    Http {
        #[source]
        source: hyper::Error,
    },
    /// The response body passed the response byte cap (S-10).
    #[error("response body over the limit of {limit} bytes")]
    ResponseTooLarge { limit: u64 },
    /// The invocation's responses together passed its response byte budget (A-22: the host
    /// buffers them outside the guest's memory limit).
    #[error("responses of this invocation over their budget of {limit} bytes")]
    ResponseBudgetExceeded { limit: u64 },
    /// A streamed request body failed while it was being sent (its producer broke off).
    #[error("request body stream failed")]
    RequestBody {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    // ---- internal ----
    /// The host failed in a way unrelated to the request (TLS setup, request assembly).
    #[error("internal egress failure")]
    Internal {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl EgressError {
    /// The WIT `http-error` variant the guest receives.
    pub fn kind(&self) -> HttpErrorKind {
        use EgressError::*;
        match self {
            InvalidUrl { .. } | InvalidMethod { .. } | InvalidHeader { .. } | RequestTooLarge { .. } => {
                HttpErrorKind::InvalidUrl
            }
            SchemeNotAllowed { .. }
            | UserinfoNotAllowed
            | NotAllowed { .. }
            | IpLiteralNotAllowed { .. }
            | DestinationIpProhibited { .. }
            | SelfConnection { .. }
            | ForbiddenHeader { .. }
            | UnknownSecret { .. }
            | SecretRequiresHttps { .. }
            | RequestLimitExceeded { .. } => HttpErrorKind::NotAllowed,
            Dns { .. }
            | DnsTimeout { .. }
            | Connect { .. }
            | Timeout { .. }
            | Tls { .. }
            | Http { .. }
            | ResponseTooLarge { .. }
            | ResponseBudgetExceeded { .. }
            | RequestBody { .. } => HttpErrorKind::Transport,
            Internal { .. } => HttpErrorKind::Internal,
        }
    }

    /// A stable snake_case code for logs and metrics labels.
    pub fn code(&self) -> &'static str {
        use EgressError::*;
        match self {
            InvalidUrl { .. } => "invalid_url",
            InvalidMethod { .. } => "invalid_method",
            InvalidHeader { .. } => "invalid_header",
            RequestTooLarge { .. } => "request_too_large",
            SchemeNotAllowed { .. } => "scheme_not_allowed",
            UserinfoNotAllowed => "userinfo_not_allowed",
            NotAllowed { .. } => "destination_not_allowed",
            IpLiteralNotAllowed { .. } => "ip_literal_not_allowed",
            DestinationIpProhibited { .. } => "destination_ip_prohibited",
            SelfConnection { .. } => "self_connection",
            ForbiddenHeader { .. } => "forbidden_header",
            UnknownSecret { .. } => "unknown_secret",
            SecretRequiresHttps { .. } => "secret_requires_https",
            RequestLimitExceeded { .. } => "request_limit_exceeded",
            Dns { .. } => "dns_error",
            DnsTimeout { .. } => "dns_timeout",
            Connect { .. } => "connect_failed",
            Timeout { phase } => match phase {
                Phase::Connect => "connect_timeout",
                Phase::FirstByte => "first_byte_timeout",
                Phase::Idle => "idle_timeout",
                Phase::Total => "total_timeout",
            },
            Tls { .. } => "tls_failed",
            Http { .. } => "http_protocol_error",
            ResponseTooLarge { .. } => "response_too_large",
            ResponseBudgetExceeded { .. } => "response_budget_exceeded",
            RequestBody { .. } => "request_body_failed",
            Internal { .. } => "internal",
        }
    }

    /// Whether a policy refused the request (the `not-allowed` kind): counted as denied.
    pub fn is_denial(&self) -> bool {
        self.kind() == HttpErrorKind::NotAllowed
    }
}

/// Guest text kept in an error: escaped (no raw CR/LF/NUL reaches a log) and shortened.
pub(crate) fn printable(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut out: String = text.chars().take(MAX_CHARS).flat_map(char::escape_default).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// What is wrong with a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlProblem {
    /// The WHATWG parser refused it (relative, bad port, bad IPv4/IPv6 ...).
    Parse(url::ParseError),
    /// A host outside the DNS alphabet (letters, digits, `-`, `_`), with empty labels, or
    /// too long.
    InvalidHost,
    /// Longer than [`crate::config::MAX_URL_BYTES`].
    TooLong { len: usize, max: usize },
    /// The path and query do not form an HTTP request target.
    InvalidRequestTarget,
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlProblem::Parse(e) => write!(f, "{e}"),
            UrlProblem::InvalidHost => f.write_str("invalid host"),
            UrlProblem::TooLong { len, max } => write!(f, "{len} bytes, over the limit of {max}"),
            UrlProblem::InvalidRequestTarget => f.write_str("invalid path or query"),
        }
    }
}

/// What is wrong with a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// Not an HTTP token (empty, spaces, separators, CR/LF/NUL ...).
    InvalidName,
    /// The value holds CR, LF, NUL or another control character (S-08).
    InvalidValue,
    /// `{{secret:` without a closing `}}`, or an empty or over-long name.
    MalformedSecretReference,
    /// The value became invalid once a secret was substituted (the secret is not shown).
    InvalidSecretValue,
    /// A `Content-Length` that is not the body's length.
    ContentLengthMismatch,
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderProblem::InvalidName => "invalid header name",
            HeaderProblem::InvalidValue => "invalid header value (control characters are not allowed)",
            HeaderProblem::MalformedSecretReference => "malformed {{secret:NAME}} reference",
            HeaderProblem::InvalidSecretValue => "the substituted secret is not a valid header value",
            HeaderProblem::ContentLengthMismatch => "content-length does not match the body",
        })
    }
}

/// Which part of a request passed a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPart {
    Body,
    /// The number of headers.
    HeaderCount,
    /// The bytes of header names and values.
    HeaderBytes,
}

impl fmt::Display for RequestPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestPart::Body => "body bytes",
            RequestPart::HeaderCount => "header count",
            RequestPart::HeaderBytes => "header bytes",
        })
    }
}

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect or the TLS handshake.
    Connect,
    /// Waiting for the response head.
    FirstByte,
    /// Silence between two pieces of the response body, or of a streamed request body.
    Idle,
    /// The whole request, or the invocation deadline, whichever came first.
    Total,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::FirstByte => "waiting for the response",
            Phase::Idle => "reading the response body",
            Phase::Total => "the request",
        })
    }
}
