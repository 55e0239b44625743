//! S-01..S-05, S-07 and the S-09 self-connection guard through `Egress::fetch`: every refusal
//! happens before a socket is opened, asserted by the upstream's connection count.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ext_egress::{Egress, EgressError, FetchContext, HttpErrorKind, NoSecrets, Range, Resolve, ResolveError};

use crate::{Harness, TENANT, Upstream, allowing, code, get, policy};

/// S-01: literal internal addresses are refused before connect, even under a `*` allowlist
/// and with the loopback upstream's own address written literally.
#[tokio::test]
async fn s01_literal_internal_ips_denied_before_connect() {
    let up = Upstream::start().await;
    let p = up.port();
    let h = Harness::new(allowing(&[]), &[&format!("http://*:{p}"), "http://*", "https://*"]);
    let cases = [
        (format!("http://127.0.0.1:{p}/"), Range::Loopback),
        (format!("http://127.0.0.53:{p}/"), Range::Loopback),
        ("http://10.0.0.1/".to_owned(), Range::Private),
        ("http://169.254.169.254/latest/meta-data/".to_owned(), Range::Metadata),
        (format!("http://[::1]:{p}/"), Range::Loopback),
        (format!("http://0.0.0.0:{p}/"), Range::Unspecified),
        (format!("http://[::]:{p}/"), Range::Unspecified),
        ("https://192.168.1.1/".to_owned(), Range::Private),
        ("http://100.64.0.1/".to_owned(), Range::CarrierGradeNat),
    ];
    for (url, range) in cases {
        match h.fetch(get(&url)).await {
            Err(EgressError::DestinationIpProhibited { range: got, .. }) => assert_eq!(got, range, "{url}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    assert_eq!(up.connections().await, 0);
    let stats = h.egress.stats().tenant(TENANT);
    assert_eq!((stats.requests, stats.denied), (9, 9));
}

/// S-02: alternative IPv4 spellings are the same address, classified as such; under a name
/// allowlist they are simply not allowed.
#[tokio::test]
async fn s02_alternative_spellings() {
    let up = Upstream::start().await;
    let p = up.port();
    let spellings = [
        format!("http://2130706433:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        format!("http://127.1:{p}/"),
        format!("http://0x7f000001:{p}/"),
        format!("http://0:{p}/"),
    ];
    let wildcard = Harness::new(allowing(&[]), &[&format!("http://*:{p}")]);
    for url in &spellings {
        let result = wildcard.fetch(get(url)).await;
        assert_eq!(code(&result), "destination_ip_prohibited", "{url}");
    }
    // With the loopback allowance, the literal still has to be on the allowlist.
    let named = Harness::new(
        allowing(&["127.0.0.1/32", "0.0.0.0/32"]),
        &[&format!("http://allowed.test:{p}")],
    );
    for url in &spellings {
        let result = named.fetch(get(url)).await;
        assert_eq!(code(&result), "destination_not_allowed", "{url}");
    }
    assert_eq!(up.connections().await, 0);
}

/// S-03: IPv6 forms carrying IPv4, written literally or answered by DNS, are refused, even
/// with `127.0.0.1/32` allowed.
#[tokio::test]
async fn s03_ipv6_forms() {
    let up = Upstream::start().await;
    let p = up.port();
    let h = Harness::new(allowing(&["127.0.0.1/32"]), &[&format!("http://*:{p}")]);
    let forms = [
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
        "2002:a9fe:a9fe::",
        "2002:7f00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "::ffff:0:7f00:1",
        "fd00:ec2::254",
        "fe80::1",
        "fc00::1",
    ];
    for form in forms {
        let url = format!("http://[{form}]:{p}/");
        assert_eq!(code(&h.fetch(get(&url)).await), "destination_ip_prohibited", "{url}");
        h.resolve("v6.test", &[form]);
        let via_dns = h.fetch(get(format!("http://v6.test:{p}/"))).await;
        assert_eq!(code(&via_dns), "destination_ip_prohibited", "{form} via DNS");
    }
    assert_eq!(up.connections().await, 0);
}

/// A resolver whose answer changes after the first call: DNS rebinding (S-04).
#[derive(Debug)]
struct Rebinding {
    first: IpAddr,
    then: IpAddr,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Resolve for Rebinding {
    async fn resolve(&self, _host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(vec![if n == 0 { self.first } else { self.then }])
    }
}

/// S-04: one resolution per request; the connection goes to the vetted address, never to the
/// rebound one (both are loopback listeners on the same port; both are even allowed).
#[tokio::test]
async fn s04_rebinding_connects_to_the_vetted_ip_only() {
    let vetted = Upstream::start().await;
    let rebound_listener = tokio::net::TcpListener::bind(("127.0.0.2", vetted.port()))
        .await
        .unwrap();
    let rebound = Upstream::on(rebound_listener, None);
    let resolver = Arc::new(Rebinding {
        first: "127.0.0.1".parse().unwrap(),
        then: "127.0.0.2".parse().unwrap(),
        calls: AtomicUsize::new(0),
    });
    let egress = Egress::with_resolver(allowing(&["127.0.0.1/32", "127.0.0.2/32"]), resolver.clone()).unwrap();
    let policy = policy(&[&format!("http://rebind.test:{}", vetted.port())]);
    let budget = egress.budget();
    let ctx = FetchContext {
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(10),
        tenant: TENANT,
        policy: &policy,
        budget: &budget,
        secrets: &NoSecrets,
    };
    let response = egress
        .fetch(get(format!("http://rebind.test:{}/", vetted.port())), ctx)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1, "resolved exactly once");
    assert_eq!(vetted.connections().await, 1);
    assert_eq!(rebound.connections().await, 0);
}

/// S-04, the other order: a first answer that is prohibited denies the request, whatever a
/// later answer would say.
#[tokio::test]
async fn s04_rebinding_from_a_prohibited_answer_is_denied() {
    let up = Upstream::start().await;
    let resolver = Arc::new(Rebinding {
        first: "169.254.169.254".parse().unwrap(),
        then: "127.0.0.1".parse().unwrap(),
        calls: AtomicUsize::new(0),
    });
    let egress = Egress::with_resolver(allowing(&["127.0.0.1/32"]), resolver.clone()).unwrap();
    let policy = policy(&[&format!("http://rebind.test:{}", up.port())]);
    let budget = egress.budget();
    let ctx = FetchContext {
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(10),
        tenant: TENANT,
        policy: &policy,
        budget: &budget,
        secrets: &NoSecrets,
    };
    let err = egress
        .fetch(get(format!("http://rebind.test:{}/", up.port())), ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EgressError::DestinationIpProhibited {
                range: Range::Metadata,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(resolver.calls.load(Ordering::SeqCst), 1);
    assert_eq!(up.connections().await, 0);
}

/// S-05: mixed answers connect only to the allowed address; a name with only private answers
/// is `DestinationIpProhibited`.
#[tokio::test]
async fn s05_mixed_answers() {
    let up = Upstream::start().await;
    let p = up.port();
    let h = Harness::new(allowing(&["127.0.0.1/32"]), &[&format!("http://*.test:{p}")]);
    h.resolve("mixed.test", &["10.0.0.1", "169.254.169.254", "127.0.0.1"]);
    let response = h.fetch(get(format!("http://mixed.test:{p}/"))).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(up.connections().await, 1);

    h.resolve("private.test", &["10.0.0.1", "192.168.0.7"]);
    let err = h.fetch(get(format!("http://private.test:{p}/"))).await.unwrap_err();
    assert!(
        matches!(
            err,
            EgressError::DestinationIpProhibited {
                range: Range::Private,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), HttpErrorKind::NotAllowed);
    assert_eq!(up.connections().await, 1);
}

/// S-07: evasion through the URL, end to end; nothing connects and nothing is resolved.
#[tokio::test]
async fn s07_allowlist_evasion_denied() {
    let up = Upstream::start().await;
    let p = up.port();
    let h = Harness::new(
        allowing(&["127.0.0.1/32"]),
        &[&format!("http://allowed.test:{p}"), "https://*.allowed.test"],
    );
    for host in [
        "allowed.test",
        "evil.test",
        "allowed.test.evil.test",
        "evilallowed.test",
    ] {
        h.resolve(host, &["127.0.0.1"]);
    }
    let cases = [
        (
            format!("http://allowed.test:{p}@evil.test:{p}/"),
            "userinfo_not_allowed",
        ),
        (format!("http://user:pass@allowed.test:{p}/"), "userinfo_not_allowed"),
        (format!("http://allowed.test.evil.test:{p}/"), "destination_not_allowed"),
        (format!("http://evilallowed.test:{p}/"), "destination_not_allowed"),
        ("https://evilallowed.test/".to_owned(), "destination_not_allowed"),
        ("https://allowed.test/".to_owned(), "destination_not_allowed"),
        (format!("http://\u{430}llowed.test:{p}/"), "destination_not_allowed"),
        ("http://allowed.test:22/".to_owned(), "destination_not_allowed"),
        (format!("https://allowed.test:{p}/"), "destination_not_allowed"),
        (format!("gopher://allowed.test:{p}/_GET"), "scheme_not_allowed"),
        ("file:///etc/passwd".to_owned(), "scheme_not_allowed"),
        ("//allowed.test/".to_owned(), "invalid_url"),
    ];
    for (url, expected) in &cases {
        assert_eq!(code(&h.fetch(get(url)).await), *expected, "{url}");
    }
    assert_eq!(h.resolver.lookups(), 0, "a refused destination is never resolved");
    assert_eq!(up.connections().await, 0);
    // Normalised forms of the allowed host do reach it.
    for url in [
        format!("http://ALLOWED.TEST.:{p}/"),
        format!("http://%61llowed.test:{p}/"),
    ] {
        assert_eq!(code(&h.fetch(get(&url)).await), "ok", "{url}");
    }
    assert_eq!(up.connections().await, 2);
}

/// S-09: the runner's own listeners are refused even when an allowance covers them, by exact
/// address and through an unspecified listen address on the same port.
#[tokio::test]
async fn s09_self_connection_denied() {
    let up = Upstream::start().await;
    let p = up.port();
    for own in [
        up.addr,
        format!("0.0.0.0:{p}").parse().unwrap(),
        format!("[::]:{p}").parse().unwrap(),
    ] {
        let mut config = allowing(&["127.0.0.1/32"]);
        config.self_addrs = vec![own];
        let h = Harness::new(config, &[&format!("http://*:{p}")]);
        h.resolve("runner.test", &["127.0.0.1"]);
        for url in [format!("http://127.0.0.1:{p}/"), format!("http://runner.test:{p}/")] {
            let err = h.fetch(get(&url)).await.unwrap_err();
            assert!(
                matches!(err, EgressError::SelfConnection { .. }),
                "{own} {url}: {err:?}"
            );
        }
    }
    assert_eq!(up.connections().await, 0);
    // Another port on the same address is not the runner.
    let mut config = allowing(&["127.0.0.1/32"]);
    config.self_addrs = vec![format!("127.0.0.1:{}", p.wrapping_add(1).max(1)).parse().unwrap()];
    let h = Harness::new(config, &[&format!("http://*:{p}")]);
    assert_eq!(code(&h.fetch(get(format!("http://127.0.0.1:{p}/"))).await), "ok");
}
