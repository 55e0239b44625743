//! The example extension's capability routes through the runner with the
//! embedded defaults (embedded KV, local store): `/visits` counts in
//! `storage.kv`; `/relay` fetches an allowed upstream whose API key is a
//! `{{secret:api-key}}` handle filled in by the host.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

async fn call(t: &TestRunner, digest: &ext_bundle::Digest, method: &str, path: &str, extra: Value) -> Value {
    let mut env = envelope(digest, method, path);
    env["context"]["extension_id"] = json!("com.example.hello");
    if let Some(body) = extra.get("body") {
        env["http"]["body_b64"] = json!(b64(body.to_string().as_bytes()));
    }
    if let Some(sealed) = extra.get("secret_envelope") {
        env["secret_envelope"] = sealed.clone();
    }
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], 200, "{body}");
    guest_json(&body)
}

#[tokio::test]
async fn hello_counts_visits_and_relays_with_a_secret_handle() {
    // The example declares http://127.0.0.1:8090; the test's upstream listens
    // on an ephemeral port, so point the manifest at it.
    let upstream = crate::egress::upstream().await;
    let origin = format!("http://127.0.0.1:{}", upstream.port());
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&hello_dir(), dir.path());
    let manifest_path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["network"]["allowed_hosts"] = json!([origin]);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();

    let t = TestRunner::with_env(&[
        ("EXT_EGRESS_ALLOWLIST", &origin),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
        ("EXT_EGRESS_SECRETS_REQUIRE_HTTPS", "false"),
        ("RUNNER_SECRETS_KEY", KEY_B64),
    ]);
    let digest = t.publish_dir(dir.path());
    assert_eq!(
        call(&t, &digest, "GET", "/visits", json!({})).await,
        json!({"visits": 1})
    );
    assert_eq!(
        call(&t, &digest, "GET", "/visits", json!({})).await,
        json!({"visits": 2})
    );

    let env = std::collections::HashMap::from([("RUNNER_SECRETS_KEY".to_string(), KEY_B64.to_string())]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), json!({"api-key": "upstream-api-key-777"}).to_string()).unwrap();
    let sealed: Value = serde_json::from_str(
        &ext_runner::cli::secrets_seal(&env, "tenant-a", "com.example.hello", Some(file.path())).unwrap(),
    )
    .unwrap();
    let out = call(
        &t,
        &digest,
        "POST",
        "/relay",
        json!({"body": {"url": format!("{origin}/check")}, "secret_envelope": sealed}),
    )
    .await;
    assert_eq!(out, json!({"upstream_status": 200, "upstream_body": "key ok"}));
}
