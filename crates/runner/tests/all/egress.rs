//! `cap:http.fetch` through a real guest: destinations must be declared by
//! the manifest (`network.allowed_hosts`) and allowed by the operator
//! (`EXT_EGRESS_ALLOWLIST`), internal addresses need an explicit CIDR
//! allowance (S-01), and `{{secret:NAME}}` handles reach the upstream
//! without the guest holding the value. The policy engine itself is tested
//! row by row (S-01…S-10, F-06) in crates/egress.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "upstream-api-key-777";

/// A loopback upstream answering `GET /hello` with "hi" and `GET /check`
/// with whether `x-api-key` carried the secret.
pub(crate) async fn upstream() -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hi from upstream" }))
        .route(
            "/trace",
            axum::routing::get(|headers: http::HeaderMap| async move {
                headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string()
            }),
        )
        .route(
            "/check",
            axum::routing::get(|headers: http::HeaderMap| async move {
                let ok = headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(SECRET);
                if ok { "key ok" } else { "key missing" }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn fetch_bundle(t: &TestRunner, capabilities: &[&str], allowed_hosts: &[String]) -> ext_bundle::Digest {
    let dir = bundle_dir_with(
        "fetch_probe",
        &std::fs::read(ext_test_fixtures::component("fetch_probe")).unwrap(),
        capabilities,
    );
    let path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["network"] = json!({"allowed_hosts": allowed_hosts});
    std::fs::write(&path, manifest.to_string()).unwrap();
    t.publish_dir(dir.path())
}

async fn fetch(t: &TestRunner, digest: &ext_bundle::Digest, spec: Value, secret_envelope: Option<Value>) -> Value {
    let mut env = envelope(digest, "POST", "/");
    env["http"]["body_b64"] = json!(b64(spec.to_string().as_bytes()));
    if let Some(sealed) = secret_envelope {
        env["secret_envelope"] = sealed;
    }
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    guest_json(&body)
}

#[tokio::test]
async fn fetch_reaches_a_declared_and_allowed_upstream_only() {
    let addr = upstream().await;
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let url = format!("{origin}/hello");
    let env = [
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
    ];

    let t = TestRunner::with_env(&env);
    let digest = fetch_bundle(&t, &["cap:http.fetch"], std::slice::from_ref(&origin));
    let out = fetch(&t, &digest, json!({"url": url}), None).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"], "hi from upstream");

    // Not declared by the manifest.
    let undeclared = fetch_bundle(&t, &["cap:http.fetch"], &["https://api.example.com".to_string()]);
    assert_eq!(
        fetch(&t, &undeclared, json!({"url": url}), None).await["error"],
        "not-allowed"
    );
    // Capability not declared at all.
    let no_cap = fetch_bundle(&t, &["cap:log.emit"], std::slice::from_ref(&origin));
    assert_eq!(
        fetch(&t, &no_cap, json!({"url": url}), None).await["error"],
        "not-allowed"
    );

    // Deny by default: no operator allowlist.
    let t = TestRunner::with_env(&[("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32")]);
    let digest = fetch_bundle(&t, &["cap:http.fetch"], std::slice::from_ref(&origin));
    assert_eq!(
        fetch(&t, &digest, json!({"url": url}), None).await["error"],
        "not-allowed"
    );

    // S-01: loopback without an explicit CIDR allowance.
    let t = TestRunner::with_env(&[("EXT_EGRESS_ALLOWLIST", origin.as_str())]);
    let digest = fetch_bundle(&t, &["cap:http.fetch"], std::slice::from_ref(&origin));
    assert_eq!(
        fetch(&t, &digest, json!({"url": url}), None).await["error"],
        "not-allowed"
    );
}

/// S-01 through the guest: the metadata address, even when declared and
/// on the operator's list, is refused before any connection.
#[tokio::test]
async fn s01_metadata_address_is_refused() {
    let origin = "http://169.254.169.254".to_string();
    let t = TestRunner::with_env(&[("EXT_EGRESS_ALLOWLIST", "http://169.254.169.254")]);
    let digest = fetch_bundle(&t, &["cap:http.fetch"], std::slice::from_ref(&origin));
    let out = fetch(
        &t,
        &digest,
        json!({"url": "http://169.254.169.254/latest/meta-data/"}),
        None,
    )
    .await;
    assert_eq!(out["error"], "not-allowed", "{out}");
}

/// Secret handles: the host substitutes `{{secret:api-key}}` for the
/// allowed destination; the guest only ever sees the upstream's answer.
#[tokio::test]
async fn secret_handles_reach_the_upstream_not_the_guest() {
    let addr = upstream().await;
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let t = TestRunner::with_env(&[
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
        ("EXT_EGRESS_SECRETS_REQUIRE_HTTPS", "false"),
        ("RUNNER_SECRETS_KEY", KEY_B64),
    ]);
    let digest = fetch_bundle(
        &t,
        &["cap:http.fetch", "cap:secrets.get"],
        std::slice::from_ref(&origin),
    );
    let sealed = {
        let env = std::collections::HashMap::from([("RUNNER_SECRETS_KEY".to_string(), KEY_B64.to_string())]);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), json!({"api-key": SECRET}).to_string()).unwrap();
        let text = ext_runner::cli::secrets_seal(&env, "tenant-a", "com.test.ext", Some(file.path())).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let spec = json!({"url": format!("{origin}/check"), "headers": [["x-api-key", "{{secret:api-key}}"]]});
    let out = fetch(&t, &digest, spec.clone(), Some(sealed)).await;
    assert_eq!(out["body"], "key ok", "{out}");
    assert!(!out.to_string().contains(SECRET));
    // Without the envelope the handle names an unknown secret: refused.
    let out = fetch(&t, &digest, spec, None).await;
    assert_eq!(out["error"], "not-allowed", "{out}");
}

/// W3C trace context: the inbound `traceparent` continues on `http.fetch`
/// with the same trace id and a new span id.
#[tokio::test]
async fn traceparent_is_propagated_to_egress() {
    let addr = upstream().await;
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let t = TestRunner::with_env(&[
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
    ]);
    let digest = fetch_bundle(&t, &["cap:http.fetch"], std::slice::from_ref(&origin));
    let mut env = envelope(&digest, "POST", "/");
    env["http"]["body_b64"] = json!(b64(json!({"url": format!("{origin}/trace")}).to_string().as_bytes()));
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, _, body) = t
        .post_raw(
            env.to_string().into_bytes(),
            &[("authorization", &format!("Bearer {TOKEN}")), ("traceparent", parent)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = guest_json(&body)["body"].as_str().unwrap().to_string();
    assert!(seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{seen}");
    assert!(seen.ends_with("-01") && !seen.contains("00f067aa0ba902b7"), "{seen}");
}
