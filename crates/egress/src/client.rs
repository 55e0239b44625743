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
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::addr::classify;
use crate::config::{EgressConfig, MAX_RESPONSE_HEADER_BYTES, MAX_RESPONSE_HEADERS};
use crate::error::{EgressError, Phase, RequestPart, UrlProblem, printable};
use crate::headers::{BodyLength, CheckedHeaders, SecretSource};
use crate::policy::{Destination, HostName, Policy, Scheme};
use crate::resolve::{Resolve, ResolveError, SystemResolver};
use crate::stats::{EgressStats, Outcome, RequestBudget, ResponseAllowance};
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body produced while the request is under way (a `wasi:http` guest's outgoing
/// body): sent as it comes, chunked unless the request declares a `Content-Length` (which
/// hyper then enforces), under [`EgressConfig::max_request_body_bytes`] and the idle timeout
/// between its pieces. See [`Egress::fetch_streamed`].
pub struct StreamedBody {
    body: UnsyncBoxBody<Bytes, BoxError>,
    sent: Arc<AtomicU64>,
}

impl StreamedBody {
    pub fn new<B>(body: B) -> StreamedBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        StreamedBody {
            body: body.map_err(Into::into).boxed_unsync(),
            sent: Arc::default(),
        }
    }

    /// Body bytes handed to the connection so far (a shared counter, still readable after
    /// the body was given to [`Egress::fetch_streamed`]).
    pub fn sent(&self) -> Arc<AtomicU64> {
        self.sent.clone()
    }
}

impl fmt::Debug for StreamedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamedBody")
            .field("sent", &self.sent.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why a streamed body stopped; carried through hyper's error as its source.
#[derive(Debug, thiserror::Error)]
enum BodyStop {
    #[error("request body over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("request body idle")]
    Idle,
    #[error("request body failed")]
    Source(#[source] BoxError),
}

/// The body hyper sends: buffered (`http.fetch`) or streamed and metered (`wasi:http`).
enum OutBody {
    Full(Full<Bytes>),
    Streamed {
        body: UnsyncBoxBody<Bytes, BoxError>,
        sent: Arc<AtomicU64>,
        limit: u64,
        idle: Duration,
        /// Fires when the producer has been silent for `idle`: started when it first has
        /// nothing to give, cleared by every frame.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    },
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = BodyStop;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyStop>>> {
        match self.get_mut() {
            OutBody::Full(full) => Pin::new(full).poll_frame(cx).map_err(|never| match never {}),
            OutBody::Streamed {
                body,
                sent,
                limit,
                idle,
                timer,
            } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        let size = sent.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
                        if size > *limit {
                            return Poll::Ready(Some(Err(BodyStop::TooLarge { size, limit: *limit })));
                        }
                    }
                    *timer = None;
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyStop::Source(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*idle)));
                    match timer.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Some(Err(BodyStop::Idle))),
                        Poll::Pending => Poll::Pending,
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutBody::Full(full) => full.is_end_stream(),
            OutBody::Streamed { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Full(full) => full.size_hint(),
            OutBody::Streamed { body, .. } => body.size_hint(),
        }
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
/// Owned, so a streamed response's body can carry it until it ends.
struct Tally {
    stats: Arc<EgressStats>,
    tenant: String,
    outcome: Outcome,
    sent: u64,
    received: u64,
    /// A streamed request body's counter, read when the tally is recorded.
    streamed_sent: Option<Arc<AtomicU64>>,
}

impl Drop for Tally {
    fn drop(&mut self) {
        let sent = self.sent + self.streamed_sent.as_ref().map_or(0, |s| s.load(Ordering::Relaxed));
        self.stats.record(&self.tenant, self.outcome, sent, self.received);
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

    /// A fresh request and response-byte counter for one invocation
    /// ([`EgressConfig::max_requests_per_invocation`],
    /// [`EgressConfig::max_response_bytes_per_invocation`]).
    pub fn budget(&self) -> RequestBudget {
        let config = &self.inner.config;
        RequestBudget::with_response_bytes(
            config.max_requests_per_invocation,
            config.max_response_bytes_per_invocation,
        )
    }

    /// Sends `request` if every check passes and returns the upstream's response as is
    /// (including 3xx: redirects are not followed).
    ///
    /// # Errors
    /// [`EgressError`]; [`EgressError::kind`] gives the WIT `http-error` for the guest.
    pub async fn fetch(&self, request: EgressRequest, ctx: FetchContext<'_>) -> Result<EgressResponse, EgressError> {
        let mut tally = self.tally(&ctx, None);
        let result = match self.start(request, None, &ctx, &mut tally).await {
            Ok(head) => self.read_whole(head, &mut tally).await,
            Err(e) => Err(e),
        };
        tally.outcome = outcome(&result);
        result
    }

    /// [`Egress::fetch`] for a `wasi:http` guest: the request body is sent while it is
    /// produced (`request.body` must be `None`), and the response is handed over as soon as its
    /// head arrives, its body read as the caller reads it. So an upstream may answer before the
    /// request body ends, and the body's producer may wait for that answer (a guest piping its
    /// upstream's echo back, Wasmtime's "double-echo"); nothing is buffered whole. The same
    /// checks, caps, timeouts (each body phase inside the request's total and the invocation
    /// deadline) and counters apply.
    ///
    /// # Errors
    /// As [`Egress::fetch`], up to the response head. A request body over
    /// [`EgressConfig::max_request_body_bytes`] (or a declared `Content-Length` over it) is
    /// [`EgressError::RequestTooLarge`], a producer silent for the idle timeout is
    /// [`EgressError::Timeout`], one that broke off is [`EgressError::RequestBody`]; errors
    /// after the head come out of the response body.
    pub async fn fetch_streamed(
        &self,
        request: EgressRequest,
        body: StreamedBody,
        ctx: FetchContext<'_>,
    ) -> Result<StreamedResponse, EgressError> {
        let mut tally = self.tally(&ctx, Some(body.sent()));
        if request.body.is_some() {
            return Err(internal("a streamed request also carried a buffered body"));
        }
        let head = self.start(request, Some(body), &ctx, &mut tally).await;
        tally.outcome = outcome(&head);
        let head = head?;
        let headers = response_headers(&head.parts);
        let config = &self.inner.config;
        Ok(StreamedResponse {
            status: head.parts.status.as_u16(),
            headers,
            body: ResponseBody {
                body: head.has_body.then_some(head.body),
                _connection: head.connection,
                limit: config.max_response_bytes,
                received: 0,
                idle: config.idle_timeout,
                total: head.total,
                timer: None,
                budget: ctx.budget.response_allowance(),
                tally,
            },
        })
    }

    fn tally(&self, ctx: &FetchContext<'_>, streamed_sent: Option<Arc<AtomicU64>>) -> Tally {
        Tally {
            stats: self.inner.stats.clone(),
            tenant: ctx.tenant.to_owned(),
            outcome: Outcome::Failed,
            sent: 0,
            received: 0,
            streamed_sent,
        }
    }

    /// Takes a request from the budget and runs it up to the response head.
    async fn start(
        &self,
        request: EgressRequest,
        streamed: Option<StreamedBody>,
        ctx: &FetchContext<'_>,
        tally: &mut Tally,
    ) -> Result<Head, EgressError> {
        ctx.budget.take()?;
        self.fetch_inner(request, streamed, ctx, tally).await
    }

    /// Reads a response body whole, under the response cap, the idle timeout and the
    /// invocation's response budget.
    async fn read_whole(&self, head: Head, tally: &mut Tally) -> Result<EgressResponse, EgressError> {
        let config = &self.inner.config;
        let Head {
            parts,
            mut body,
            has_body,
            total,
            budget,
            connection: _connection,
        } = head;
        let limit = config.max_response_bytes;
        let mut received = Vec::new();
        // A HEAD, 204 or 304 response has no body to read.
        if has_body {
            loop {
                let (end, phase) = self.bound(config.idle_timeout, total, Phase::Idle);
                let frame = match timeout_at(end, body.frame()).await {
                    Err(_) => return Err(EgressError::Timeout { phase }),
                    Ok(None) => break,
                    Ok(Some(frame)) => frame.map_err(|source| EgressError::Http { source })?,
                };
                if let Ok(data) = frame.into_data() {
                    tally.received += data.len() as u64;
                    if (received.len() + data.len()) as u64 > limit {
                        return Err(EgressError::ResponseTooLarge { limit });
                    }
                    // the invocation's responses together stay under its budget.
                    budget.take(data.len() as u64)?;
                    received.extend_from_slice(&data);
                }
            }
        }
        Ok(EgressResponse {
            status: parts.status.as_u16(),
            headers: response_headers(&parts),
            body: received,
        })
    }

    async fn fetch_inner(
        &self,
        request: EgressRequest,
        streamed: Option<StreamedBody>,
        ctx: &FetchContext<'_>,
        tally: &mut Tally,
    ) -> Result<Head, EgressError> {
        let config = &self.inner.config;
        let total = ctx.deadline.min(Instant::now() + config.total_timeout);
        let too_large = |size: u64| EgressError::RequestTooLarge {
            part: RequestPart::Body,
            size,
            limit: config.max_request_body_bytes,
        };

        let method = parse_method(&request.method)?;
        let destination = Destination::parse(&request.url)?;
        let (body, headers) = match streamed {
            None => {
                let body = request.body.unwrap_or_default();
                if body.len() as u64 > config.max_request_body_bytes {
                    return Err(too_large(body.len() as u64));
                }
                let headers = CheckedHeaders::check(&request.headers, body.len())?;
                (OutBody::Full(Full::new(Bytes::from(body))), headers)
            }
            Some(StreamedBody { body, sent }) => {
                let headers = CheckedHeaders::check_for(&request.headers, BodyLength::Streamed)?;
                if let Some(declared) = headers.declared_length()
                    && declared > config.max_request_body_bytes
                {
                    return Err(too_large(declared));
                }
                let body = OutBody::Streamed {
                    body,
                    sent,
                    limit: config.max_request_body_bytes,
                    idle: config.idle_timeout,
                    timer: None,
                };
                (body, headers)
            }
        };

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
        let mut http_request = Request::new(body);
        *http_request.method_mut() = method;
        *http_request.uri_mut() = uri;
        *http_request.headers_mut() = header_map;

        let tcp = self.connect(&addrs, total).await?;
        let exchange = Exchange {
            total,
            budget: ctx.budget.response_allowance(),
        };
        match destination.scheme() {
            Scheme::Http => self.exchange(tcp, http_request, exchange, tally).await,
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
                self.exchange(stream, http_request, exchange, tally).await
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

    /// One HTTP/1.1 exchange on a fresh connection, up to the response head: no pooling, no
    /// redirects, no upgrades. A streamed request body goes on being sent while the response
    /// is read (the connection task runs until the [`Head`] is dropped).
    async fn exchange<IO>(
        &self,
        io: IO,
        request: Request<OutBody>,
        exchange: Exchange,
        tally: &mut Tally,
    ) -> Result<Head, EgressError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = &self.inner.config;
        let Exchange { total, budget } = exchange;
        let http_error = |source: hyper::Error| body_stop(&source).unwrap_or(EgressError::Http { source });
        let (mut sender, connection) = http1::Builder::new()
            .max_headers(MAX_RESPONSE_HEADERS)
            .max_header_size(MAX_RESPONSE_HEADER_BYTES)
            .handshake(TokioIo::new(io))
            .await
            .map_err(http_error)?;
        let connection = AbortOnDrop(tokio::spawn(async move {
            // Its errors surface through `send_request` and the body.
            let _ = connection.await;
        }));

        // A buffered body's length is known; a streamed one's is counted as it goes.
        if let OutBody::Full(full) = request.body() {
            tally.sent += full.size_hint().exact().unwrap_or(0);
        }
        let head = request.method() == Method::HEAD;
        let (end, phase) = self.bound(config.first_byte_timeout, total, Phase::FirstByte);
        let response = timeout_at(end, sender.send_request(request))
            .await
            .map_err(|_| EgressError::Timeout { phase })?
            .map_err(http_error)?;

        let (parts, body) = response.into_parts();
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
        Ok(Head {
            parts,
            body,
            has_body,
            total,
            budget,
            connection,
        })
    }
}

/// A response up to its head, with the connection that carries its body.
struct Head {
    parts: http::response::Parts,
    body: hyper::body::Incoming,
    has_body: bool,
    /// The request's end, which bounds reading the body too.
    total: Instant,
    budget: Arc<ResponseAllowance>,
    connection: AbortOnDrop,
}

fn response_headers(parts: &http::response::Parts) -> Vec<(String, String)> {
    parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn outcome<T>(result: &Result<T, EgressError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(e) if e.is_denial() => Outcome::Denied,
        Err(_) => Outcome::Failed,
    }
}

/// [`Egress::fetch_streamed`]'s answer: the head, and a body read as the caller reads it.
#[derive(Debug)]
pub struct StreamedResponse {
    pub status: u16,
    /// As in [`EgressResponse::headers`].
    pub headers: Vec<(String, String)>,
    pub body: ResponseBody,
}

/// A streamed upstream response body: at most [`EgressConfig::max_response_bytes`], each
/// piece within the idle timeout and all of it within the request's total timeout (and the
/// invocation deadline), charged to the invocation's response budget. Dropping it closes the
/// connection; its bytes are counted in [`EgressStats`] when it ends or is dropped.
pub struct ResponseBody {
    body: Option<hyper::body::Incoming>,
    _connection: AbortOnDrop,
    limit: u64,
    received: u64,
    idle: Duration,
    total: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    budget: Arc<ResponseAllowance>,
    tally: Tally,
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("received", &self.received)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    fn fail(&mut self, error: EgressError) -> Poll<Option<Result<Frame<Bytes>, EgressError>>> {
        self.body = None;
        self.tally.outcome = Outcome::Failed;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = EgressError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, EgressError>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(None) => {
                this.body = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(source))) => this.fail(EgressError::Http { source }),
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                let Some(data) = frame.data_ref() else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                let len = data.len() as u64;
                this.tally.received += len;
                this.received += len;
                if this.received > this.limit {
                    return this.fail(EgressError::ResponseTooLarge { limit: this.limit });
                }
                if let Err(e) = this.budget.take(len) {
                    return this.fail(e);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let (idle, total) = (this.idle, this.total);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(total.min(Instant::now() + idle))));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let phase = if Instant::now() >= total {
                    Phase::Total
                } else {
                    Phase::Idle
                };
                this.fail(EgressError::Timeout { phase })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }
}

/// What one exchange needs besides the connection and the request.
struct Exchange {
    /// The request's end (its total timeout or the invocation deadline).
    total: Instant,
    /// The invocation's response budget.
    budget: Arc<ResponseAllowance>,
}

/// The egress error behind a hyper error caused by a streamed body, if that is its cause.
fn body_stop(error: &hyper::Error) -> Option<EgressError> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(stop) = cause.downcast_ref::<BodyStop>() {
            return Some(match stop {
                BodyStop::TooLarge { size, limit } => EgressError::RequestTooLarge {
                    part: RequestPart::Body,
                    size: *size,
                    limit: *limit,
                },
                BodyStop::Idle => EgressError::Timeout { phase: Phase::Idle },
                BodyStop::Source(e) => EgressError::RequestBody {
                    source: e.to_string().into(),
                },
            });
        }
        source = cause.source();
    }
    None
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
