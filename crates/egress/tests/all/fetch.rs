//! Requests that go through: the loopback upstream reachable only through the explicit
//! `127.0.0.1/32` allowance, S-06 (redirects returned, not followed), S-08 (forbidden headers)
//! and secret handles.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ext_egress::{
    Egress, EgressError, EgressRequest, FetchContext, HttpErrorKind, Range, SecretSource, StaticSecrets, SystemResolver,
};

use crate::{Harness, TENANT, Upstream, allowing, code, get, policy};

fn post(url: String, headers: &[(&str, &str)], body: &[u8]) -> EgressRequest {
    EgressRequest {
        method: "post".into(),
        url,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: Some(body.to_vec()),
    }
}

/// The loopback upstream answers through the allowance, and the request arrives as sent: the
/// host's `Host`, the guest's headers in order, the body, the path and query.
#[tokio::test]
async fn loopback_upstream_through_explicit_allowance() {
    let up = Upstream::start().await;
    let p = up.port();
    let h = Harness::new(allowing(&["127.0.0.1/32"]), &[&format!("http://upstream.test:{p}")]);
    h.resolve("upstream.test", &["127.0.0.1"]);
    let request = post(
        format!("http://upstream.test:{p}/echo/path?q=1&q=2#fragment"),
        &[
            ("X-One", "1"),
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("Content-Length", "5"),
        ],
        b"hello",
    );
    let response = h.fetch(request).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello");
    assert!(
        response
            .headers
            .contains(&("x-echo-method".to_owned(), "POST".to_owned()))
    );

    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("POST", "/echo/path?q=1&q=2")
    );
    assert_eq!(seen.headers["host"], format!("upstream.test:{p}"));
    assert_eq!(seen.headers["x-one"], "1");
    let multi: Vec<_> = seen.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!(seen.headers["content-length"], "5");
    assert_eq!(seen.body, b"hello");
    assert!(!seen.headers.contains_key("proxy-authorization"));

    let stats = h.egress.stats().tenant(TENANT);
    assert_eq!((stats.requests, stats.denied, stats.failed), (1, 0, 0));
    assert_eq!((stats.bytes_sent, stats.bytes_received), (5, 5));
}

/// Without the allowance the same upstream is refused, before connect.
#[tokio::test]
async fn loopback_upstream_refused_without_allowance() {
    let up = Upstream::start().await;
    let p = up.port();
    let h = Harness::new(allowing(&[]), &[&format!("http://upstream.test:{p}")]);
    h.resolve("upstream.test", &["127.0.0.1"]);
    let err = h.fetch(get(format!("http://upstream.test:{p}/"))).await.unwrap_err();
    assert!(
        matches!(
            err,
            EgressError::DestinationIpProhibited {
                range: Range::Loopback,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(up.connections().await, 0);
}

/// The system resolver, end to end: `localhost` resolves to loopback; only the allowed family
/// is used.
#[tokio::test]
async fn system_resolver_localhost() {
    let up = Upstream::start().await;
    let p = up.port();
    let egress = Egress::with_resolver(allowing(&["127.0.0.1/32"]), Arc::new(SystemResolver)).unwrap();
    let policy = policy(&[&format!("http://localhost:{p}")]);
    let budget = egress.budget();
    let ctx = FetchContext {
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(10),
        tenant: TENANT,
        policy: &policy,
        budget: &budget,
        secrets: &ext_egress::NoSecrets,
    };
    let response = egress.fetch(get(format!("http://localhost:{p}/")), ctx).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(up.connections().await, 1);
}

/// Deny by default: nothing configured on the operator's side, or on the manifest's, allows
/// nothing, whatever the other side says.
#[tokio::test]
async fn deny_by_default() {
    let up = Upstream::start().await;
    let p = up.port();
    let url = format!("http://upstream.test:{p}/");
    for patterns in [&[][..], &["https://upstream.test"][..]] {
        let h = Harness::new(allowing(&["127.0.0.1/32"]), patterns);
        h.resolve("upstream.test", &["127.0.0.1"]);
        assert_eq!(code(&h.fetch(get(&url)).await), "destination_not_allowed");
    }
    let list = ext_egress::Allowlist::parse([format!("http://upstream.test:{p}")]).unwrap();
    let no_operator = ext_egress::Policy::new(Some(list), &ext_egress::OperatorPolicy::default(), TENANT, None);
    let mut h = Harness::new(allowing(&["127.0.0.1/32"]), &[]);
    h.policy = no_operator;
    h.resolve("upstream.test", &["127.0.0.1"]);
    assert_eq!(code(&h.fetch(get(&url)).await), "destination_not_allowed");
    assert_eq!(up.connections().await, 0);
}

/// S-06: a 307 to the metadata address comes back to the guest as is; nothing follows it.
#[tokio::test]
async fn s06_redirect_not_followed() {
    let up = Upstream::start().await;
    let p = up.port();
    let h = Harness::new(
        allowing(&["127.0.0.1/32", "169.254.169.254/32"]),
        &[&format!("http://*:{p}"), "http://*"],
    );
    h.resolve("upstream.test", &["127.0.0.1"]);
    let response = h
        .fetch(get(format!("http://upstream.test:{p}/redirect")))
        .await
        .unwrap();
    assert_eq!(response.status, 307);
    assert!(response.headers.contains(&(
        "location".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned()
    )));
    assert_eq!(up.requests().len(), 1);
    assert_eq!(up.connections().await, 1);
}

/// S-08: `Host`, `Proxy-Authorization`, hop-by-hop headers and CR/LF injection are typed
/// header errors, raised before connect.
#[tokio::test]
async fn s08_forbidden_headers_and_crlf() {
    let up = Upstream::start().await;
    let p = up.port();
    let h = Harness::new(allowing(&["127.0.0.1/32"]), &[&format!("http://upstream.test:{p}")]);
    h.resolve("upstream.test", &["127.0.0.1"]);
    let url = format!("http://upstream.test:{p}/");
    let cases: &[(&str, &str, &str, HttpErrorKind)] = &[
        ("Host", "169.254.169.254", "forbidden_header", HttpErrorKind::NotAllowed),
        (
            "Proxy-Authorization",
            "Basic Zm9vOmJhcg==",
            "forbidden_header",
            HttpErrorKind::NotAllowed,
        ),
        ("Connection", "upgrade", "forbidden_header", HttpErrorKind::NotAllowed),
        (
            "Transfer-Encoding",
            "chunked",
            "forbidden_header",
            HttpErrorKind::NotAllowed,
        ),
        ("Upgrade", "h2c", "forbidden_header", HttpErrorKind::NotAllowed),
        (
            "X-Injected",
            "a\r\nHost: evil.test",
            "invalid_header",
            HttpErrorKind::InvalidUrl,
        ),
        (
            "X-Injected\r\nHost",
            "evil.test",
            "invalid_header",
            HttpErrorKind::InvalidUrl,
        ),
        ("X-Nul", "a\0b", "invalid_header", HttpErrorKind::InvalidUrl),
    ];
    for (name, value, expected, kind) in cases {
        let err = h.fetch(post(url.clone(), &[(name, value)], b"")).await.unwrap_err();
        assert_eq!((err.code(), err.kind()), (*expected, *kind), "{name:?}: {value:?}");
    }
    assert_eq!(up.connections().await, 0);
}

/// A secret source that counts lookups: substitution happens only for allowed destinations.
#[derive(Default)]
struct Spy {
    inner: StaticSecrets,
    lookups: AtomicUsize,
}

impl SecretSource for Spy {
    fn secret(&self, name: &str) -> Option<String> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.secret(name)
    }
}

const SECRET: &str = "sk_live_0123456789abcdef";

/// Secret handles: the value reaches the upstream; a refused destination never looks the
/// secret up; an unknown secret is a typed error; the value appears in no error.
#[tokio::test]
async fn secret_substitution() {
    let up = Upstream::start().await;
    let p = up.port();
    let mut config = allowing(&["127.0.0.1/32"]);
    config.secrets_require_https = false;
    let h = Harness::new(config, &[&format!("http://upstream.test:{p}")]);
    h.resolve("upstream.test", &["127.0.0.1"]);
    let spy = Spy {
        inner: StaticSecrets(HashMap::from([
            ("API_KEY".to_owned(), SECRET.to_owned()),
            ("BROKEN".to_owned(), format!("{SECRET}\r\nX-Leak: 1")),
        ])),
        lookups: AtomicUsize::new(0),
    };
    let fetch = |url: String, value: &str| {
        let request = post(url, &[("Authorization", value)], b"");
        let ctx = FetchContext {
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(10),
            tenant: TENANT,
            policy: &h.policy,
            budget: &h.budget,
            secrets: &spy,
        };
        h.egress.fetch(request, ctx)
    };

    let response = fetch(format!("http://upstream.test:{p}/"), "Bearer {{secret:API_KEY}}")
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(up.requests()[0].headers["authorization"], format!("Bearer {SECRET}"));
    assert_eq!(spy.lookups.swap(0, Ordering::SeqCst), 1);

    let mut errors = Vec::new();
    for (url, value, expected) in [
        (
            "http://elsewhere.test/".to_owned(),
            "Bearer {{secret:API_KEY}}",
            "destination_not_allowed",
        ),
        (
            "http://8.8.8.8/".to_owned(),
            "Bearer {{secret:API_KEY}}",
            "ip_literal_not_allowed",
        ),
        (
            format!("http://upstream.test:{p}/"),
            "Bearer {{secret:NOPE}}",
            "unknown_secret",
        ),
        (
            format!("http://upstream.test:{p}/"),
            "Bearer {{secret:API_KEY",
            "invalid_header",
        ),
        (
            format!("http://upstream.test:{p}/"),
            "{{secret:BROKEN}}",
            "invalid_header",
        ),
    ] {
        let err = fetch(url.clone(), value).await.unwrap_err();
        assert_eq!(err.code(), expected, "{url} {value}");
        errors.push(err);
    }
    assert_eq!(
        spy.lookups.load(Ordering::SeqCst),
        2,
        "only the allowed destinations looked a secret up"
    );
    for err in &errors {
        let shown = format!("{err} {err:?} {:?}", std::error::Error::source(err));
        assert!(!shown.contains(SECRET), "{shown}");
    }
    assert_eq!(up.requests().len(), 1);
}

/// Secrets travel over https only unless the operator relaxes it.
#[tokio::test]
async fn secrets_require_https_by_default() {
    let up = Upstream::start().await;
    let p = up.port();
    let mut h = Harness::new(allowing(&["127.0.0.1/32"]), &[&format!("http://upstream.test:{p}")]);
    h.secrets = StaticSecrets(HashMap::from([("API_KEY".to_owned(), SECRET.to_owned())]));
    h.resolve("upstream.test", &["127.0.0.1"]);
    let request = post(
        format!("http://upstream.test:{p}/"),
        &[("x-api-key", "{{secret:API_KEY}}")],
        b"",
    );
    let err = h.fetch(request).await.unwrap_err();
    assert_eq!(err.code(), "secret_requires_https");
    assert!(!format!("{err:?}").contains(SECRET));
    assert_eq!(up.connections().await, 0);
}
