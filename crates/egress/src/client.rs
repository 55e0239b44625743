//! The client: [`Egress::fetch`] takes one guest request through every check, resolves once,
//! connects to a vetted address only, and speaks HTTP/1.1 (over rustls for `https`) on a fresh
//! connection with every phase under a timeout and the invocation deadline.
//!
//! Order of checks, cheapest and least revealing first: request budget (S-10), method, URL
//! (S-02, S-07), body and headers (S-08), an IP literal's address (S-01, S-03), the allowlist
//! intersection, then DNS (once, F-06) and every answer's address (S-04, S-05), the runner's
//! own listeners (S-09), and only then secret substitution. Nothing here reads the process
//! environment: there is no proxy support to misuse (S-09), and redirects are returned, not
//! followed (S-06).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::addr::classify;
use crate::config::{EgressConfig, MAX_RESPONSE_HEADER_BYTES, MAX_RESPONSE_HEADERS};
use crate::error::{EgressError, Phase, RequestPart, UrlProblem, printable};
use crate::headers::{CheckedHeaders, SecretSource};
use crate::policy::{Destination, HostName, Policy, Scheme};
use crate::resolve::{Resolve, ResolveError, SystemResolver};
use crate::stats::{EgressStats, Outcome, RequestBudget};
use crate::tls;

/// A guest's request, as the WIT `http-request` record carries it.
#[derive(Clone, Default)]
pub struct EgressRequest {
    /// `GET`, `POST` ...; the six standard methods are accepted in any case.
    pub method: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
    /// Names and values in order; values may contain `{{secret:NAME}}`.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl fmt::Debug for EgressRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

/// The upstream's response, as the WIT `http-response` record carries it (the runner wraps
/// `body` in `some(..)`: compat §1 says it is always present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressResponse {
    pub status: u16,
    /// Names (lower-case) and values in order; values that are not UTF-8 are converted
    /// lossily.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What the runner knows about the invocation making a request.
#[derive(Clone, Copy)]
pub struct FetchContext<'a> {
    /// The invocation deadline: every phase ends by then at the latest.
    pub deadline: Instant,
    /// The tenant, for [`EgressStats`].
    pub tenant: &'a str,
    /// The destinations this invocation may reach.
    pub policy: &'a Policy,
    /// The invocation's request counter.
    pub budget: &'a RequestBudget,
    /// The secrets `{{secret:NAME}}` may name.
    pub secrets: &'a dyn SecretSource,
}

impl fmt::Debug for FetchContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchContext")
            .field("deadline", &self.deadline)
            .field("tenant", &self.tenant)
            .field("policy", &self.policy)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// Why an [`Egress`] could not be built (configuration time, not guest-facing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// An extra root certificate was refused, or rustls rejected the configuration.
    #[error("invalid TLS configuration")]
    Tls(#[source] rustls::Error),
}

/// The egress engine: one per process, cheap to clone.
#[derive(Clone)]
pub struct Egress {
    inner: Arc<Inner>,
}

struct Inner {
    /// Timeouts, caps, the address table's allowances and the runner's own addresses.
    config: EgressConfig,
    /// Asked once per request; its answer is the only one used.
    resolver: Arc<dyn Resolve>,
    /// rustls with the Mozilla roots (plus [`EgressConfig::extra_roots`]); no client auth.
    tls: tokio_rustls::TlsConnector,
    /// Per-tenant counters, shared with the runner's metrics exporter.
    stats: Arc<EgressStats>,
}

impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Egress")
            .field("config", &self.inner.config)
            .field("resolver", &self.inner.resolver)
            .finish_non_exhaustive()
    }
}

/// Aborts the connection task when a request ends or its future is dropped (A-02: an outer
/// timeout drops `fetch`; the socket must close with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Records one request in [`EgressStats`] when dropped, so a request cut off by the runner's
/// outer timeout is counted too (as failed).
struct Tally<'a> {
    stats: &'a EgressStats,
    tenant: &'a str,
    outcome: Outcome,
    sent: u64,
    received: u64,
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.stats.record(self.tenant, self.outcome, self.sent, self.received);
    }
}

impl Egress {
    /// An engine using the system resolver.
    ///
    /// # Errors
    /// [`SetupError::Tls`] if an extra root certificate is invalid.
    pub fn new(config: EgressConfig) -> Result<Egress, SetupError> {
        Egress::with_resolver(config, Arc::new(SystemResolver))
    }

    /// An engine using `resolver` (tests pass a fake one).
    ///
    /// # Errors
    /// [`SetupError::Tls`] if an extra root certificate is invalid.
    pub fn with_resolver(config: EgressConfig, resolver: Arc<dyn Resolve>) -> Result<Egress, SetupError> {
        let tls = tls::connector(&config.extra_roots).map_err(SetupError::Tls)?;
        Ok(Egress {
            inner: Arc::new(Inner {
                config,
                resolver,
                tls,
                stats: Arc::new(EgressStats::default()),
            }),
        })
    }

    pub fn config(&self) -> &EgressConfig {
        &self.inner.config
    }

    /// The per-tenant counters.
    pub fn stats(&self) -> &Arc<EgressStats> {
        &self.inner.stats
    }

    /// A fresh request counter for one invocation
    /// ([`EgressConfig::max_requests_per_invocation`]).
    pub fn budget(&self) -> RequestBudget {
        RequestBudget::new(self.inner.config.max_requests_per_invocation)
    }

    /// Sends `request` if every check passes and returns the upstream's response as is
    /// (including 3xx: redirects are not followed).
    ///
    /// # Errors
    /// [`EgressError`]; [`EgressError::kind`] gives the WIT `http-error` for the guest.
    pub async fn fetch(&self, request: EgressRequest, ctx: FetchContext<'_>) -> Result<EgressResponse, EgressError> {
        let mut tally = Tally {
            stats: &self.inner.stats,
            tenant: ctx.tenant,
            outcome: Outcome::Failed,
            sent: 0,
            received: 0,
        };
        let result = match ctx.budget.take() {
            Ok(()) => self.fetch_inner(request, &ctx, &mut tally).await,
            Err(e) => Err(e),
        };
        tally.outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) if e.is_denial() => Outcome::Denied,
            Err(_) => Outcome::Failed,
        };
        result
    }

    async fn fetch_inner(
        &self,
        request: EgressRequest,
        ctx: &FetchContext<'_>,
        tally: &mut Tally<'_>,
    ) -> Result<EgressResponse, EgressError> {
        let config = &self.inner.config;
        let total = ctx.deadline.min(Instant::now() + config.total_timeout);

        let method = parse_method(&request.method)?;
        let destination = Destination::parse(&request.url)?;
        let body = request.body.unwrap_or_default();
        if body.len() as u64 > config.max_request_body_bytes {
            return Err(EgressError::RequestTooLarge {
                part: RequestPart::Body,
                size: body.len() as u64,
                limit: config.max_request_body_bytes,
            });
        }
        let headers = CheckedHeaders::check(&request.headers, body.len())?;

        // An IP literal is vetted before the allowlist, so an internal address is always
        // reported as such (S-01); a name is resolved only once the allowlist admits it, so
        // a refused name never reaches DNS.
        if let HostName::Ip(ip) = destination.host() {
            self.vet_literal(*ip)?;
        }
        if !ctx.policy.allows(&destination) {
            return Err(EgressError::NotAllowed {
                destination: destination.to_string(),
            });
        }
        let ips = match destination.host() {
            HostName::Ip(ip) => vec![*ip],
            HostName::Domain(name) => self.resolve(name, total).await?,
        };
        let addrs = self.admit(&ips, destination.port())?;

        if let Some(secret) = headers.first_secret()
            && config.secrets_require_https
            && destination.scheme() == Scheme::Http
        {
            return Err(EgressError::SecretRequiresHttps {
                name: printable(secret),
            });
        }
        let mut header_map = HeaderMap::new();
        let host = HeaderValue::from_str(&destination.host_header()).map_err(internal)?;
        header_map.insert(http::header::HOST, host);
        headers.render(ctx.secrets, &mut header_map)?;
        let uri: http::Uri = destination.origin_form().parse().map_err(|_| EgressError::InvalidUrl {
            problem: UrlProblem::InvalidRequestTarget,
        })?;
        let mut http_request = Request::new(Full::new(Bytes::from(body)));
        *http_request.method_mut() = method;
        *http_request.uri_mut() = uri;
        *http_request.headers_mut() = header_map;

        let tcp = self.connect(&addrs, total).await?;
        match destination.scheme() {
            Scheme::Http => self.exchange(tcp, http_request, total, tally).await,
            Scheme::Https => {
                let server_name = match destination.host() {
                    HostName::Domain(name) => ServerName::try_from(name.clone()).map_err(|e| EgressError::Tls {
                        host: name.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                    })?,
                    HostName::Ip(ip) => ServerName::from(*ip),
                };
                let (end, phase) = self.bound(config.connect_timeout, total, Phase::Connect);
                let stream = timeout_at(end, self.inner.tls.connect(server_name, tcp))
                    .await
                    .map_err(|_| EgressError::Timeout { phase })?
                    .map_err(|source| EgressError::Tls {
                        host: destination.host().to_string(),
                        source,
                    })?;
                self.exchange(stream, http_request, total, tally).await
            }
        }
    }

    /// The end of a phase allowed `limit`, and which timeout that end is: the phase's own or
    /// the request's total (which includes the invocation deadline).
    fn bound(&self, limit: Duration, total: Instant, phase: Phase) -> (Instant, Phase) {
        let own = Instant::now() + limit;
        if own < total {
            (own, phase)
        } else {
            (total, Phase::Total)
        }
    }

    /// An IP-literal host needs an explicit CIDR allowance, and passes the table like any
    /// resolved address.
    fn vet_literal(&self, ip: IpAddr) -> Result<(), EgressError> {
        let addresses = &self.inner.config.addresses;
        addresses
            .check(ip)
            .map_err(|p| EgressError::DestinationIpProhibited { ip, range: p.range })?;
        if addresses.covers(ip) {
            Ok(())
        } else {
            Err(EgressError::IpLiteralNotAllowed { ip })
        }
    }

    /// Resolves `host` once, under the DNS timeout and the request's end (F-06).
    async fn resolve(&self, host: &str, total: Instant) -> Result<Vec<IpAddr>, EgressError> {
        let start = Instant::now();
        let end = total.min(start + self.inner.config.dns_timeout);
        match timeout_at(end, self.inner.resolver.resolve(host)).await {
            Err(_) => Err(EgressError::DnsTimeout {
                host: host.to_owned(),
                after: start.elapsed(),
            }),
            Ok(Err(source)) => Err(EgressError::Dns {
                host: host.to_owned(),
                source,
            }),
            Ok(Ok(ips)) if ips.is_empty() => Err(EgressError::Dns {
                host: host.to_owned(),
                source: ResolveError(std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses")),
            }),
            Ok(Ok(ips)) => Ok(ips),
        }
    }

    /// The answers that may be connected to (S-05: the allowed ones of a mixed answer), or
    /// the first refusal if none may.
    fn admit(&self, ips: &[IpAddr], port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let mut refusal = None;
        let mut admitted = Vec::new();
        for &ip in ips {
            let addr = SocketAddr::new(ip, port);
            if let Err(p) = self.inner.config.addresses.check(ip) {
                refusal.get_or_insert(EgressError::DestinationIpProhibited { ip, range: p.range });
            } else if self.is_self(addr) {
                refusal.get_or_insert(EgressError::SelfConnection { addr });
            } else if !admitted.contains(&addr) {
                admitted.push(addr);
            }
        }
        match refusal {
            Some(refusal) if admitted.is_empty() => Err(refusal),
            _ => Ok(admitted),
        }
    }

    /// Whether `addr` reaches one of the runner's own listeners (S-09), whatever the
    /// allowances say. A listener on an unspecified address (`0.0.0.0:8080`) answers on every
    /// local address of its port; the public ones cannot be known here, so every non-public
    /// address on that port counts as the runner.
    fn is_self(&self, addr: SocketAddr) -> bool {
        let target = addr.ip().to_canonical();
        self.inner.config.self_addrs.iter().any(|listen| {
            let own = listen.ip().to_canonical();
            listen.port() == addr.port()
                && if own.is_unspecified() {
                    classify(target).is_some()
                } else {
                    own == target
                }
        })
    }

    /// Connects to the first vetted address that accepts, within the connect timeout.
    async fn connect(&self, addrs: &[SocketAddr], total: Instant) -> Result<TcpStream, EgressError> {
        let (end, phase) = self.bound(self.inner.config.connect_timeout, total, Phase::Connect);
        let mut last = None;
        for &addr in addrs {
            match timeout_at(end, TcpStream::connect(addr)).await {
                Err(_) => return Err(EgressError::Timeout { phase }),
                Ok(Ok(stream)) => {
                    // Small writes (head, then body) must not wait for Nagle (pitfalls).
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(source)) => last = Some(EgressError::Connect { addr, source }),
            }
        }
        Err(last.unwrap_or_else(|| internal("no address to connect to")))
    }

    /// One HTTP/1.1 exchange on a fresh connection: no pooling, no redirects, no upgrades.
    async fn exchange<IO>(
        &self,
        io: IO,
        request: Request<Full<Bytes>>,
        total: Instant,
        tally: &mut Tally<'_>,
    ) -> Result<EgressResponse, EgressError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = &self.inner.config;
        let http_error = |source| EgressError::Http { source };
        let (mut sender, connection) = http1::Builder::new()
            .max_headers(MAX_RESPONSE_HEADERS)
            .max_header_size(MAX_RESPONSE_HEADER_BYTES)
            .handshake(TokioIo::new(io))
            .await
            .map_err(http_error)?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            // Its errors surface through `send_request` and the body.
            let _ = connection.await;
        }));

        let body_len = hyper::body::Body::size_hint(request.body()).exact().unwrap_or(0);
        let head = request.method() == Method::HEAD;
        let (end, phase) = self.bound(config.first_byte_timeout, total, Phase::FirstByte);
        let response = timeout_at(end, sender.send_request(request))
            .await
            .map_err(|_| EgressError::Timeout { phase })?
            .map_err(http_error)?;
        tally.sent += body_len;

        let (parts, mut body) = response.into_parts();
        let limit = config.max_response_bytes;
        // A HEAD, 204 or 304 response declares a length it does not send.
        let has_body = !head && !matches!(parts.status.as_u16(), 204 | 304);
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if has_body && declared.is_some_and(|len| len > limit) {
            return Err(EgressError::ResponseTooLarge { limit });
        }
        let mut received = Vec::new();
        loop {
            let (end, phase) = self.bound(config.idle_timeout, total, Phase::Idle);
            let frame = match timeout_at(end, body.frame()).await {
                Err(_) => return Err(EgressError::Timeout { phase }),
                Ok(None) => break,
                Ok(Some(frame)) => frame.map_err(http_error)?,
            };
            if let Ok(data) = frame.into_data() {
                tally.received += data.len() as u64;
                if (received.len() + data.len()) as u64 > limit {
                    return Err(EgressError::ResponseTooLarge { limit });
                }
                received.extend_from_slice(&data);
            }
        }
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(EgressResponse {
            status: parts.status.as_u16(),
            headers,
            body: received,
        })
    }
}

/// The six methods WHATWG fetch normalises to upper case; anything else must already be a
/// valid token. `CONNECT` would ask the upstream for a tunnel: refused.
fn parse_method(method: &str) -> Result<Method, EgressError> {
    const NORMALISED: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];
    let invalid = || EgressError::InvalidMethod {
        method: printable(method),
    };
    let upper = method.to_ascii_uppercase();
    if upper == "CONNECT" {
        return Err(invalid());
    }
    let method = if NORMALISED.contains(&upper.as_str()) {
        upper.as_str()
    } else {
        method
    };
    Method::from_bytes(method.as_bytes()).map_err(|_| invalid())
}

fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> EgressError {
    EgressError::Internal { source: source.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runner awaits `fetch` inside Wasmtime host calls, which need `Send` futures.
    #[test]
    fn fetch_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let egress = Egress::new(EgressConfig::default()).unwrap();
        let (policy, budget) = (Policy::deny_all(), egress.budget());
        let ctx = FetchContext {
            deadline: Instant::now(),
            tenant: "t",
            policy: &policy,
            budget: &budget,
            secrets: &crate::NoSecrets,
        };
        let future = egress.fetch(EgressRequest::default(), ctx);
        assert_send(&future);
    }

    #[test]
    fn methods() {
        for (input, expected) in [
            ("get", "GET"),
            ("Post", "POST"),
            ("PATCH", "PATCH"),
            ("PROPFIND", "PROPFIND"),
        ] {
            assert_eq!(parse_method(input).unwrap().as_str(), expected, "{input}");
        }
        for bad in ["", "GET /", "G\r\nET", "CONNECT", "connect", "GÉT"] {
            assert_eq!(parse_method(bad).unwrap_err().code(), "invalid_method", "{bad:?}");
        }
    }
}
