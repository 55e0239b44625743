//! `cap:http.fetch` through a real guest: destinations must be allowed by
//! the operator (`EXT_EGRESS_ALLOWLIST`), the install's list (the
//! envelope's or grant's `egress`) when there is one, and the manifest
//! (`network.allowed_hosts`) when it declares one; a manifest without
//! `network` (upstream manifests) and no install list gets nothing unless
//! `EXT_EGRESS_UNDECLARED_MANIFESTS=operator`. Internal addresses need an
//! explicit CIDR allowance (S-01), and `{{secret:NAME}}` handles reach the
//! upstream without the guest holding the value. The policy engine itself is tested
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

/// `fetch_probe` under an upstream-style manifest: `http.fetch` unprefixed,
/// as upstream manifests write it, and no `network` at all.
fn upstream_fetch_bundle(t: &TestRunner) -> ext_bundle::Digest {
    let dir = bundle_dir_with(
        "fetch_probe",
        &std::fs::read(ext_test_fixtures::component("fetch_probe")).unwrap(),
        &["http.fetch"],
    );
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.get("network").is_none(), "{manifest}");
    t.publish_dir(dir.path())
}

/// `fetch` of `url` with the envelope's `egress` set to `install` (none:
/// no install list, as an upstream gateway sends it).
async fn fetch_as_installed(t: &TestRunner, digest: &ext_bundle::Digest, url: &str, install: Option<&[&str]>) -> Value {
    let mut env = envelope(digest, "POST", "/");
    env["http"]["body_b64"] = json!(b64(json!({"url": url}).to_string().as_bytes()));
    if let Some(list) = install {
        env["egress"] = json!(list);
    }
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    guest_json(&body)
}

/// Two loopback upstreams, the operator allowing only the first.
async fn upstreams() -> (String, String) {
    let allowed = upstream().await;
    let other = upstream().await;
    (
        format!("http://127.0.0.1:{}", allowed.port()),
        format!("http://127.0.0.1:{}", other.port()),
    )
}

/// A manifest without `network` declares no list: its egress is the
/// install's list (the envelope's `egress`) ∩ the operator's, and without
/// an install list it gets nothing, however much the operator allows.
#[tokio::test]
async fn upstream_manifest_without_network_reaches_what_the_install_lists_and_the_operator_allows() {
    let (origin, elsewhere) = upstreams().await;
    let t = TestRunner::with_env(&[
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
    ]);
    let digest = upstream_fetch_bundle(&t);
    let url = format!("{origin}/hello");
    let elsewhere_url = format!("{elsewhere}/hello");

    // Deny by default: the operator's allowlist alone opens nothing.
    let out = fetch_as_installed(&t, &digest, &url, None).await;
    assert_eq!(out["error"], "not-allowed", "{out}");

    // The install lists it and the operator allows it.
    let out = fetch_as_installed(&t, &digest, &url, Some(&[&origin])).await;
    assert_eq!(
        (&out["status"], &out["body"]),
        (&json!(200), &json!("hi from upstream")),
        "{out}"
    );

    // The install lists a host the operator does not allow: refused.
    let both = [origin.as_str(), elsewhere.as_str()];
    let out = fetch_as_installed(&t, &digest, &elsewhere_url, Some(&both)).await;
    assert_eq!(out["error"], "not-allowed", "{out}");
    // An install list without the host, or an empty one: refused.
    for list in [&[elsewhere.as_str()][..], &[]] {
        let out = fetch_as_installed(&t, &digest, &url, Some(list)).await;
        assert_eq!(out["error"], "not-allowed", "{list:?}: {out}");
    }

    // A manifest that declares a list still intersects: an explicit empty
    // list means nothing, another host keeps this one out.
    for declared in [vec![], vec![elsewhere.clone()]] {
        let digest = fetch_bundle(&t, &["cap:http.fetch"], &declared);
        let out = fetch_as_installed(&t, &digest, &url, Some(&[&origin])).await;
        assert_eq!(out["error"], "not-allowed", "declared {declared:?}: {out}");
    }
    let digest = fetch_bundle(&t, &["cap:http.fetch"], &[origin.clone(), elsewhere.clone()]);
    let out = fetch_as_installed(&t, &digest, &url, Some(&[&origin])).await;
    assert_eq!(out["status"], 200, "{out}");
}

/// `EXT_EGRESS_UNDECLARED_MANIFESTS=operator`: a manifest without a list,
/// run without an install list, gets the operator's policy alone; an
/// install list or a declared list still narrows it.
#[tokio::test]
async fn the_operator_may_let_manifests_without_a_list_use_its_policy_alone() {
    let (origin, elsewhere) = upstreams().await;
    let t = TestRunner::with_env(&[
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
        ("EXT_EGRESS_UNDECLARED_MANIFESTS", "operator"),
    ]);
    let digest = upstream_fetch_bundle(&t);
    let url = format!("{origin}/hello");

    let out = fetch_as_installed(&t, &digest, &url, None).await;
    assert_eq!(out["status"], 200, "{out}");
    let out = fetch_as_installed(&t, &digest, &format!("{elsewhere}/hello"), None).await;
    assert_eq!(out["error"], "not-allowed", "not on the operator's list: {out}");
    let out = fetch_as_installed(&t, &digest, &url, Some(&[])).await;
    assert_eq!(out["error"], "not-allowed", "an empty install list: {out}");
    let declared_empty = fetch_bundle(&t, &["cap:http.fetch"], &[]);
    let out = fetch_as_installed(&t, &declared_empty, &url, None).await;
    assert_eq!(out["error"], "not-allowed", "an explicit empty manifest list: {out}");
}

/// G-02 for egress: with `RUNNER_GRANT_KEYS` the grant's `egress` is the
/// install list, for a manifest without `network` too; a grant with none
/// reaches nothing, even where the operator opted in for such manifests.
#[tokio::test]
async fn g02_an_upstream_manifests_egress_comes_from_the_grant() {
    let (origin, _) = upstreams().await;
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("grant.pem");
    let (jwks, _) = ext_runner::cli::grant::grant_keygen(&private).unwrap();
    let t = TestRunner::with_env(&[
        ("RUNNER_GRANT_KEYS", jwks.to_str().unwrap()),
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
        ("EXT_EGRESS_UNDECLARED_MANIFESTS", "operator"),
    ]);
    let signer = ext_runner::grant::GrantSigner::load(&private).unwrap();
    let digest = upstream_fetch_bundle(&t);
    let t = &t;
    let fetch_granted = |egress: Vec<String>| {
        let claims = ext_runner::grant::Claims {
            tenant: "tenant-a".into(),
            extension: "com.test.ext".into(),
            install_id: None,
            version_id: None,
            content_hash: digest.to_string(),
            capabilities: vec!["cap:http.fetch".into()],
            egress,
            request_id: None,
            exp: ext_runner::grant::now_secs() + 60,
        };
        let grant = signer.sign(&claims).unwrap();
        let mut env = envelope(&digest, "POST", "/");
        let url = format!("{origin}/hello");
        env["http"]["body_b64"] = json!(b64(json!({"url": url}).to_string().as_bytes()));
        async move {
            let auth = format!("Bearer {TOKEN}");
            let headers = [("authorization", auth.as_str()), ("x-ext-grant", grant.as_str())];
            let (status, _, body) = t.post_raw(env.to_string().into_bytes(), &headers).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            guest_json(&body)
        }
    };
    let out = fetch_granted(vec![origin.clone()]).await;
    assert_eq!(out["status"], 200, "{out}");
    let out = fetch_granted(Vec::new()).await;
    assert_eq!(out["error"], "not-allowed", "{out}");
}
