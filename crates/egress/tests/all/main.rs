//! ext-egress's integration tests, one binary, named by catalogue row: [`ssrf`] (S-01..S-05,
//! S-07, S-09 self-connection), [`fetch`] (the loopback upstream, S-06, S-08, secrets),
//! [`limits`] (S-10, F-06), [`tls`] (https through rustls) and [`proxy`] (S-09 proxy env).
//!
//! Every upstream is an in-process hyper server on loopback, reachable only through an explicit
//! CIDR allowance (`127.0.0.1/32`), and counts the connections it accepts, so "denied before
//! connect" is asserted as "0 connections".

mod fetch;
mod limits;
mod proxy;
mod ssrf;
mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ext_egress::{
    AddressPolicy, Allowlist, Egress, EgressConfig, EgressError, EgressRequest, EgressResponse, FetchContext,
    OperatorPolicy, Policy, RequestBudget, StaticResolver, StaticSecrets,
};
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The tenant every harness request runs as.
pub const TENANT: &str = "tenant-a";

/// A request the test upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Aborts a background task when the test ends.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A loopback HTTP/1.1 server (optionally TLS) that logs requests and the peers it accepts.
/// Paths: `/redirect` (307 to the metadata address), `/infinite` (endless body),
/// `/declared-huge` (a 1 GB Content-Length), `/huge-headers` (70 KiB of head), `/stall-head` (never answers), `/stall-body` (a
/// head and one chunk, then silence), `/trickle` (a byte every 20 ms, forever); anything else
/// echoes the request body with 200.
pub struct Upstream {
    pub addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    probes: Mutex<Vec<SocketAddr>>,
    requests: Arc<Mutex<Vec<Seen>>>,
    _task: Task,
}

impl Upstream {
    /// A plain HTTP upstream on `127.0.0.1:0`.
    pub async fn start() -> Upstream {
        Upstream::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), None)
    }

    /// An upstream on `listener`, speaking TLS when `tls` is given.
    pub fn on(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (task_peers, task_requests) = (peers.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                task_peers.lock().unwrap().push(peer);
                let (requests, tls) = (task_requests.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, requests.clone()));
                    let server = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = server.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = server.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            peers,
            probes: Mutex::new(Vec::new()),
            requests,
            _task: Task(task),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far, not counting probes. A probe connection is made and awaited
    /// first: accepts are FIFO, so every earlier connection has been counted by then.
    pub async fn connections(&self) -> usize {
        let probe = TcpStream::connect(self.addr).await.unwrap();
        let local = probe.local_addr().unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !self.peers.lock().unwrap().contains(&local) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("the probe connection was never accepted");
        drop(probe);
        let mut probes = self.probes.lock().unwrap();
        probes.push(local);
        self.peers
            .lock()
            .unwrap()
            .iter()
            .filter(|p| !probes.contains(p))
            .count()
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed_unsync()
}

fn stream<S>(chunks: S) -> Body
where
    S: futures_util::Stream<Item = Bytes> + Send + 'static,
{
    StreamBody::new(chunks.map(|b| Ok::<_, Infallible>(Frame::data(b)))).boxed_unsync()
}

async fn handle(req: Request<Incoming>, log: Arc<Mutex<Vec<Seen>>>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.to_vec(),
    });
    let response = Response::builder();
    let response = match parts.uri.path() {
        "/redirect" => response
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("location", "http://169.254.169.254/latest/meta-data/")
            .body(full("")),
        "/infinite" => response.body(stream(futures_util::stream::repeat(Bytes::from(vec![b'x'; 16 * 1024])))),
        "/declared-huge" => response
            .header("content-length", "1000000000")
            .body(stream(futures_util::stream::repeat(Bytes::from(vec![b'x'; 16 * 1024])))),
        "/huge-headers" => (0..70)
            .fold(response, |r, i| r.header(format!("x-filler-{i}"), "f".repeat(1024)))
            .body(full("")),
        "/stall-head" => {
            futures_util::future::pending::<()>().await;
            unreachable!()
        }
        "/stall-body" => response.body(stream(
            futures_util::stream::once(async { Bytes::from_static(b"partial") }).chain(futures_util::stream::pending()),
        )),
        "/trickle" => response.body(stream(futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Bytes::from_static(b"x"), ()))
        }))),
        _ => response
            .header("x-upstream", "echo")
            .header("x-echo-method", parts.method.as_str())
            .body(full(body)),
    };
    Ok(response.unwrap())
}

/// A config whose address table admits exactly `cidrs`.
pub fn allowing(cidrs: &[&str]) -> EgressConfig {
    EgressConfig {
        addresses: AddressPolicy::new(cidrs.iter().map(|c| c.parse().unwrap()).collect()),
        ..EgressConfig::default()
    }
}

/// A policy where the manifest and the operator both list `patterns` (no install list).
pub fn policy(patterns: &[&str]) -> Policy {
    let list = Allowlist::parse(patterns).unwrap();
    Policy::new(
        Some(list.clone()),
        &OperatorPolicy::new(list, Default::default()),
        TENANT,
        None,
    )
}

pub fn get(url: impl Into<String>) -> EgressRequest {
    EgressRequest {
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: None,
    }
}

/// An engine with a fake resolver, and what one invocation passes to it.
pub struct Harness {
    pub egress: Egress,
    pub resolver: Arc<StaticResolver>,
    pub policy: Policy,
    pub budget: RequestBudget,
    pub secrets: StaticSecrets,
    /// The invocation deadline, from the start of each fetch.
    pub deadline: Duration,
}

impl Harness {
    pub fn new(config: EgressConfig, patterns: &[&str]) -> Harness {
        let resolver = Arc::new(StaticResolver::new());
        let egress = Egress::with_resolver(config, resolver.clone()).unwrap();
        Harness {
            budget: egress.budget(),
            egress,
            resolver,
            policy: policy(patterns),
            secrets: StaticSecrets::default(),
            deadline: Duration::from_secs(10),
        }
    }

    /// Makes `host` resolve to `ips`.
    pub fn resolve(&self, host: &str, ips: &[&str]) -> &Self {
        self.resolver
            .set(host, ips.iter().map(|ip| ip.parse::<IpAddr>().unwrap()));
        self
    }

    pub async fn fetch(&self, request: EgressRequest) -> Result<EgressResponse, EgressError> {
        let ctx = FetchContext {
            deadline: tokio::time::Instant::now() + self.deadline,
            tenant: TENANT,
            policy: &self.policy,
            budget: &self.budget,
            secrets: &self.secrets,
        };
        self.egress.fetch(request, ctx).await
    }
}

/// The error's code, or `"ok"`.
pub fn code(result: &Result<EgressResponse, EgressError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}
