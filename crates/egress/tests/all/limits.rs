//! S-10 (request count, response cap, first-byte / between-bytes / total timeouts, the
//! invocation deadline) and F-06 (a slow or failing resolver).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ext_egress::{
    Egress, EgressConfig, EgressError, FetchContext, HttpErrorKind, NoSecrets, Phase, Resolve, ResolveError,
};

use crate::{Harness, TENANT, Upstream, allowing, code, get, policy};

/// A loopback upstream named `upstream.test` and a harness built from `config`.
async fn setup(config: EgressConfig) -> (Upstream, Harness) {
    let up = Upstream::start().await;
    let h = Harness::new(config, &[&format!("http://upstream.test:{}", up.port())]);
    h.resolve("upstream.test", &["127.0.0.1"]);
    (up, h)
}

fn url(up: &Upstream, path: &str) -> String {
    format!("http://upstream.test:{}{path}", up.port())
}

fn quick(config: impl FnOnce(&mut EgressConfig)) -> EgressConfig {
    let mut c = allowing(&["127.0.0.1/32"]);
    config(&mut c);
    c
}

/// S-10: request N+1 of an invocation is refused without touching the network; a new
/// invocation gets a new budget.
#[tokio::test]
async fn s10_request_count_cap() {
    let (up, mut h) = setup(quick(|c| c.max_requests_per_invocation = 3)).await;
    for _ in 0..3 {
        assert_eq!(code(&h.fetch(get(url(&up, "/"))).await), "ok");
    }
    let err = h.fetch(get(url(&up, "/"))).await.unwrap_err();
    assert!(matches!(err, EgressError::RequestLimitExceeded { limit: 3 }), "{err:?}");
    assert_eq!(err.kind(), HttpErrorKind::NotAllowed);
    // Refused requests count too: a flood of invalid ones is still a flood.
    assert_eq!(code(&h.fetch(get("gopher://x/")).await), "request_limit_exceeded");
    assert_eq!(up.requests().len(), 3);
    h.budget = h.egress.budget();
    assert_eq!(code(&h.fetch(get(url(&up, "/"))).await), "ok");
}

/// S-10: an endless body stops at the cap, with a typed error; a declared oversize length is
/// refused before reading.
#[tokio::test]
async fn s10_response_cap() {
    let (up, h) = setup(quick(|c| c.max_response_bytes = 64 * 1024)).await;
    let err = h.fetch(get(url(&up, "/infinite"))).await.unwrap_err();
    assert!(matches!(err, EgressError::ResponseTooLarge { limit: 65536 }), "{err:?}");
    assert_eq!(err.kind(), HttpErrorKind::Transport);
    let received = h.egress.stats().tenant(TENANT).bytes_received;
    assert!((64 * 1024..=64 * 1024 + 64 * 1024).contains(&received), "{received}");

    let err = h.fetch(get(url(&up, "/declared-huge"))).await.unwrap_err();
    assert_eq!(err.code(), "response_too_large");
    let echo = h.fetch(get(url(&up, "/"))).await.unwrap();
    assert_eq!(echo.status, 200, "a small response still passes");

    // HEAD declares the length of a body it does not send.
    let mut head = get(url(&up, "/declared-huge"));
    head.method = "HEAD".into();
    let response = h.fetch(head).await.unwrap();
    assert_eq!((response.status, response.body.len()), (200, 0));
}

/// A response head over the header limits fails as a transport error.
#[tokio::test]
async fn oversized_response_head() {
    let (up, h) = setup(allowing(&["127.0.0.1/32"])).await;
    let err = h.fetch(get(url(&up, "/huge-headers"))).await.unwrap_err();
    assert_eq!(
        (err.code(), err.kind()),
        ("http_protocol_error", HttpErrorKind::Transport)
    );
}

/// A fetch dropped by the runner's outer timeout is still counted, as failed.
#[tokio::test]
async fn dropped_fetch_is_counted() {
    let (up, h) = setup(allowing(&["127.0.0.1/32"])).await;
    let cut = tokio::time::timeout(Duration::from_millis(100), h.fetch(get(url(&up, "/stall-head")))).await;
    assert!(cut.is_err());
    let stats = h.egress.stats().tenant(TENANT);
    assert_eq!((stats.requests, stats.failed), (1, 1));
}

/// A request body over the cap is refused before connect.
#[tokio::test]
async fn request_body_cap() {
    let (up, h) = setup(quick(|c| c.max_request_body_bytes = 10)).await;
    let mut request = get(url(&up, "/"));
    request.method = "PUT".into();
    request.body = Some(vec![0; 11]);
    let err = h.fetch(request).await.unwrap_err();
    assert_eq!(
        (err.code(), err.kind()),
        ("request_too_large", HttpErrorKind::InvalidUrl)
    );
    assert_eq!(up.connections().await, 0);
}

/// Runs `path` and checks it fails with `phase` in well under the 10 s deadline.
async fn times_out(h: &Harness, up: &Upstream, path: &str, phase: Phase, within: Duration) {
    let start = Instant::now();
    let err = h.fetch(get(url(up, path))).await.unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, EgressError::Timeout { phase: p } if p == phase),
        "{path}: {err:?}"
    );
    assert_eq!(err.kind(), HttpErrorKind::Transport);
    assert!(took < within, "{path} took {took:?}");
}

/// S-10: a silent upstream hits the first-byte timeout, a stalled body the between-bytes
/// timeout, a trickling body the total timeout.
#[tokio::test]
async fn s10_upstream_timeouts() {
    let config = quick(|c| {
        c.first_byte_timeout = Duration::from_millis(200);
        c.idle_timeout = Duration::from_millis(200);
        c.total_timeout = Duration::from_millis(600);
    });
    let (up, h) = setup(config).await;
    times_out(&h, &up, "/stall-head", Phase::FirstByte, Duration::from_secs(2)).await;
    times_out(&h, &up, "/stall-body", Phase::Idle, Duration::from_secs(2)).await;
    times_out(&h, &up, "/trickle", Phase::Total, Duration::from_secs(2)).await;
}

/// Every phase ends at the invocation deadline, whatever the configured timeouts.
#[tokio::test]
async fn invocation_deadline_bounds_every_phase() {
    let (up, mut h) = setup(allowing(&["127.0.0.1/32"])).await;
    h.deadline = Duration::from_millis(300);
    times_out(&h, &up, "/stall-head", Phase::Total, Duration::from_secs(2)).await;
    times_out(&h, &up, "/stall-body", Phase::Total, Duration::from_secs(2)).await;
}

/// A connect that never completes (a black-holed address) hits the connect timeout.
#[tokio::test]
async fn connect_timeout() {
    // 192.0.2.0/24 is TEST-NET-1: never routed, so a SYN goes unanswered (or fails at once
    // with no route, which is the other acceptable outcome).
    let mut config = allowing(&["192.0.2.1/32"]);
    config.connect_timeout = Duration::from_millis(200);
    let h = Harness::new(config, &["http://blackhole.test"]);
    h.resolve("blackhole.test", &["192.0.2.1"]);
    let start = Instant::now();
    let err = h.fetch(get("http://blackhole.test/")).await.unwrap_err();
    assert!(
        matches!(
            err,
            EgressError::Timeout { phase: Phase::Connect } | EgressError::Connect { .. }
        ),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// A resolver that never answers, or fails.
#[derive(Debug)]
enum BrokenDns {
    Hangs,
    Fails,
}

#[async_trait::async_trait]
impl Resolve for BrokenDns {
    async fn resolve(&self, _host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        match self {
            BrokenDns::Hangs => futures_util::future::pending().await,
            BrokenDns::Fails => Err(ResolveError(std::io::Error::other("SERVFAIL"))),
        }
    }
}

async fn fetch_with(
    resolver: BrokenDns,
    dns_timeout: Duration,
) -> (Result<ext_egress::EgressResponse, EgressError>, Duration) {
    let mut config = allowing(&[]);
    config.dns_timeout = dns_timeout;
    let egress = Egress::with_resolver(config, Arc::new(resolver)).unwrap();
    let policy = policy(&["https://api.example.com"]);
    let budget = egress.budget();
    let ctx = FetchContext {
        deadline: tokio::time::Instant::now() + Duration::from_secs(30),
        tenant: TENANT,
        policy: &policy,
        budget: &budget,
        secrets: &NoSecrets,
    };
    let start = Instant::now();
    let result = egress.fetch(get("https://api.example.com/"), ctx).await;
    (result, start.elapsed())
}

/// F-06: a resolver that hangs gives `DnsTimeout` within the DNS timeout; one that fails gives
/// a DNS error at once. Both are `transport` for the guest.
#[tokio::test]
async fn f06_resolver_timeout_and_failure() {
    let (result, took) = fetch_with(BrokenDns::Hangs, Duration::from_millis(200)).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, EgressError::DnsTimeout { ref host, .. } if host == "api.example.com"),
        "{err:?}"
    );
    assert_eq!(err.kind(), HttpErrorKind::Transport);
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );

    let (result, took) = fetch_with(BrokenDns::Fails, Duration::from_secs(5)).await;
    let err = result.unwrap_err();
    assert_eq!((err.code(), err.kind()), ("dns_error", HttpErrorKind::Transport));
    assert!(took < Duration::from_secs(1));
}

/// F-06 with the default: the DNS timeout is 5 s (smokescreen's).
#[test]
fn f06_default_dns_timeout_is_five_seconds() {
    assert_eq!(EgressConfig::default().dns_timeout, Duration::from_secs(5));
    assert_eq!(ext_egress::DEFAULT_DNS_TIMEOUT, Duration::from_secs(5));
}
