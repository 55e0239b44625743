//! `ext-egress`: the engine behind the `http.fetch` host capability (WIT
//! `alga:extension/http`). No Wasmtime here; the runner calls [`Egress::fetch`] from its WIT
//! `fetch` and maps the error with [`EgressError::kind`].
//!
//! - [`policy`]: URL parsing ([`Destination`]) and the allowlists: patterns, the operator ∩
//!   install ∩ manifest intersection ([`Policy`]; a side without a list does not narrow), the
//!   operator's lists ([`OperatorPolicy`]) and its choice for manifests without a list when no
//!   install list is given either ([`UndeclaredManifests`]). Deny by default.
//! - [`addr`]: the address table (smokescreen's, plus the IPv4-carrying IPv6 forms) and the
//!   operator's CIDR allowances ([`AddressPolicy`]).
//! - [`resolve`]: the resolver seam ([`Resolve`]), the system resolver and a fake one.
//! - [`client`]: [`Egress`], [`EgressRequest`], [`EgressResponse`], [`FetchContext`], and
//!   [`StreamedBody`] for a request body produced while the request is under way
//!   ([`Egress::fetch_streamed`], a `wasi:http` guest's outgoing body).
//! - [`headers`]: request header rules and secret handles (`{{secret:NAME}}`, [`SecretSource`]).
//! - [`stats`]: per-tenant counters ([`EgressStats`]) and the per-invocation [`RequestBudget`].
//! - [`config`]: the limit stack (`DEFAULT_*`/`MAX_*`), [`EgressConfig`], and the `EXT_EGRESS_*`
//!   variables ([`Settings::from_lookup`]).
//! - [`error`]: [`EgressError`] and its WIT mapping [`HttpErrorKind`].
//!
//! # Use from the runner
//! One [`Egress`] per process (built from [`Settings::from_lookup`] plus the runner's own
//! listen addresses in [`EgressConfig::self_addrs`]). Per invocation: a [`Policy`] from the
//! manifest's `network.allowed_hosts` (if it declares one), the operator's lists for the tenant
//! and the install's list (if the envelope or grant carries one), a [`RequestBudget`] from [`Egress::budget`], and the invocation's [`SecretSource`].
//! Per call: [`Egress::fetch`] with a [`FetchContext`] whose deadline is the invocation's.
//!
//! # WIT error mapping (`alga:extension/types.http-error`)
//! | WIT variant | [`EgressError`] variants (`code()`) |
//! |---|---|
//! | `invalid-url` | `InvalidUrl` (`invalid_url`), `InvalidMethod` (`invalid_method`), `InvalidHeader` (`invalid_header`: CR/LF/NUL, bad name, malformed secret reference, Content-Length mismatch), `RequestTooLarge` (`request_too_large`) |
//! | `not-allowed` | `SchemeNotAllowed`, `UserinfoNotAllowed`, `NotAllowed` (`destination_not_allowed`), `IpLiteralNotAllowed`, `DestinationIpProhibited`, `SelfConnection`, `ForbiddenHeader`, `UnknownSecret`, `SecretRequiresHttps`, `RequestLimitExceeded` |
//! | `transport` | `Dns` (`dns_error`), `DnsTimeout`, `Connect` (`connect_failed`), `Timeout` (`connect_timeout`, `first_byte_timeout`, `idle_timeout`, `total_timeout`), `Tls` (`tls_failed`), `Http` (`http_protocol_error`), `ResponseTooLarge`, `ResponseBudgetExceeded` (`response_budget_exceeded`), `RequestBody` (`request_body_failed`: a streamed body broke off) |
//! | `internal` | `Internal` |
//!
//! For a `wasi:http` guest the same errors map onto `error-code`: `DestinationIpProhibited`
//! and `SelfConnection` → `destination-IP-prohibited`, the other `not-allowed` ones →
//! `HTTP-request-denied`, `DnsTimeout` → `DNS-timeout`, `Dns` → `DNS-error`.
//!
//! A 3xx response is returned to the guest as is (S-06): nothing here follows redirects, and
//! nothing reads the process environment, so `HTTP_PROXY` and friends have no effect (S-09).

pub mod addr;
pub mod client;
pub mod config;
pub mod error;
pub mod headers;
pub mod policy;
pub mod resolve;
pub mod stats;
mod tls;

pub use addr::{AddressPolicy, Cidr, CidrError, Prohibited, Range};
pub use client::{
    Egress, EgressRequest, EgressResponse, FetchContext, ResponseBody, SetupError, StreamedBody, StreamedResponse,
};
pub use config::{
    ConfigError, ConfigErrors, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DNS_TIMEOUT, DEFAULT_FIRST_BYTE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_REQUEST_BODY_BYTES, DEFAULT_MAX_REQUESTS_PER_INVOCATION,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_RESPONSE_BYTES_PER_INVOCATION, DEFAULT_TOTAL_TIMEOUT, EgressConfig,
    MAX_REQUEST_HEADER_BYTES, MAX_REQUEST_HEADERS, MAX_RESPONSE_HEADER_BYTES, MAX_RESPONSE_HEADERS,
    MAX_SECRET_NAME_BYTES, MAX_URL_BYTES, Settings,
};
pub use error::{EgressError, HeaderProblem, HttpErrorKind, Phase, RequestPart, UrlProblem};
pub use headers::{NoSecrets, SecretSource, StaticSecrets};
pub use policy::{
    Allowlist, Destination, HostName, OperatorPolicy, Pattern, PatternError, Policy, Scheme, UndeclaredManifests,
};
pub use resolve::{Resolve, ResolveError, StaticResolver, SystemResolver};
pub use stats::{EgressStats, RequestBudget, TenantEgress};
