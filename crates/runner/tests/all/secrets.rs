//! `cap:secrets.get` through a real guest: AES-256-GCM envelopes sealed by
//! the CLI's library function, grants, inline policy, expiry, and K-03 (no
//! cross-tenant reads, no secret values in logs or error bodies).

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SECRET: &str = "sk_live_do-not-leak-4242";

fn probe(t: &TestRunner, capabilities: &[&str]) -> ext_bundle::Digest {
    let wasm = std::fs::read(ext_test_fixtures::component("secrets_probe")).unwrap();
    let dir = bundle_dir_with("secrets_probe", &wasm, capabilities);
    t.publish_dir(dir.path())
}

fn sealed(tenant: &str, extension: &str) -> Value {
    let env = std::collections::HashMap::from([("RUNNER_SECRETS_KEY".to_string(), KEY_B64.to_string())]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), json!({"api-key": SECRET, "region": "eu"}).to_string()).unwrap();
    let text = ext_runner::cli::secrets_seal(&env, tenant, extension, Some(file.path())).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn ask(t: &TestRunner, digest: &ext_bundle::Digest, tenant: &str, secret_envelope: Value, name: &str) -> Value {
    let mut env = envelope(digest, "GET", "/");
    env["context"]["tenant_id"] = json!(tenant);
    env["http"]["query"] = json!({"name": name});
    env["secret_envelope"] = secret_envelope;
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    guest_json(&body)
}

#[tokio::test]
async fn sealed_secrets_reach_a_granted_guest() {
    let t = TestRunner::with_env(&[("RUNNER_SECRETS_KEY", KEY_B64)]);
    let digest = probe(&t, &["cap:secrets.get"]);
    let out = ask(&t, &digest, "tenant-a", sealed("tenant-a", "com.test.ext"), "api-key").await;
    assert_eq!(out["value"], SECRET, "{out}");
    assert_eq!(out["keys"], json!(["api-key", "region"]));
    let out = ask(&t, &digest, "tenant-a", sealed("tenant-a", "com.test.ext"), "nope").await;
    assert_eq!(out["error"], "missing");
    let out = ask(&t, &digest, "tenant-a", Value::Null, "api-key").await;
    assert_eq!(out["error"], "missing", "no envelope: same answer as an unknown name");

    let undeclared = probe(&t, &["cap:log.emit"]);
    let out = ask(
        &t,
        &undeclared,
        "tenant-a",
        sealed("tenant-a", "com.test.ext"),
        "api-key",
    )
    .await;
    assert_eq!(out["error"], "denied");
    assert_eq!(out["keys"], json!([]));
}

/// K-03: an envelope sealed for another tenant does not open (the guest
/// sees `internal`, never the value), and the value appears in no log line
/// or response of any of these requests.
#[tokio::test]
async fn k03_no_cross_tenant_reads_and_no_secret_in_logs() {
    let capture = crate::execute::capture();
    let t = TestRunner::with_env(&[("RUNNER_SECRETS_KEY", KEY_B64)]);
    let digest = probe(&t, &["cap:secrets.get"]);
    let out = ask(&t, &digest, "tenant-b", sealed("tenant-a", "com.test.ext"), "api-key").await;
    assert_eq!(out["error"], "internal", "{out}");
    assert!(!out.to_string().contains(SECRET));

    // Tampered ciphertext, and a wrong runner key.
    let mut tampered = sealed("tenant-a", "com.test.ext");
    let mut bytes = unb64(tampered["ciphertext_b64"].as_str().unwrap());
    bytes[20] ^= 1;
    tampered["ciphertext_b64"] = json!(b64(&bytes));
    let out = ask(&t, &digest, "tenant-a", tampered, "api-key").await;
    assert_eq!(out["error"], "internal");
    let other = TestRunner::with_env(&[("RUNNER_SECRETS_KEY", &b64(&[9u8; 32]))]);
    let other_digest = probe(&other, &["cap:secrets.get"]);
    let out = ask(
        &other,
        &other_digest,
        "tenant-a",
        sealed("tenant-a", "com.test.ext"),
        "api-key",
    )
    .await;
    assert_eq!(out["error"], "internal");

    // A successful read too: the host logs nothing of the value.
    let out = ask(&t, &digest, "tenant-a", sealed("tenant-a", "com.test.ext"), "api-key").await;
    assert_eq!(out["value"], SECRET);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("secret envelope not opened"), "the refusals were logged");
    assert!(!logs.contains(SECRET), "a secret value reached the log");
}

#[tokio::test]
async fn inline_secrets_need_the_operator_and_expired_envelopes_fail() {
    let inline = json!({"algorithm": "inline/base64", "ciphertext_b64": b64(br#"{"api-key":"inline-value"}"#)});
    let strict = TestRunner::new();
    let digest = probe(&strict, &["cap:secrets.get"]);
    let out = ask(&strict, &digest, "tenant-a", inline.clone(), "api-key").await;
    assert_eq!(out["error"], "internal");

    let lax = TestRunner::with_env(&[("RUNNER_ALLOW_INLINE_SECRETS", "true")]);
    let digest = probe(&lax, &["cap:secrets.get"]);
    let out = ask(&lax, &digest, "tenant-a", inline.clone(), "api-key").await;
    assert_eq!(out["value"], "inline-value");
    let mut expired = inline;
    expired["expires_at"] = json!("2020-01-01T00:00:00Z");
    let out = ask(&lax, &digest, "tenant-a", expired, "api-key").await;
    assert_eq!(out["error"], "expired");
}

/// `vault-transit` envelopes are decrypted through Vault's transit API
/// (`POST /v1/<mount>/decrypt/<key_path>` with `X-Vault-Token`), here a
/// stand-in server speaking that protocol on loopback.
#[tokio::test]
async fn vault_transit_envelopes_open_through_the_transit_api() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/v1/transit/decrypt/{key}",
        axum::routing::post(
            |axum::extract::Path(key): axum::extract::Path<String>, headers: http::HeaderMap, body: String| async move {
                let token_ok = headers.get("x-vault-token").and_then(|v| v.to_str().ok()) == Some("vault-test-token");
                let request: Value = serde_json::from_str(&body).unwrap_or_default();
                if !token_ok || key != "ext-secrets" || request["ciphertext"] != "vault:v1:opaque" {
                    return (StatusCode::FORBIDDEN, String::new());
                }
                let plaintext = b64(json!({"api-key": "from-vault"}).to_string().as_bytes());
                (StatusCode::OK, json!({"data": {"plaintext": plaintext}}).to_string())
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "vault-test-token\n").unwrap();

    let t = TestRunner::with_env(&[
        ("VAULT_ADDR", &format!("http://{addr}")),
        ("VAULT_TOKEN_FILE", token.path().to_str().unwrap()),
    ]);
    let digest = probe(&t, &["cap:secrets.get"]);
    let envelope =
        json!({"algorithm": "vault-transit", "ciphertext_b64": "vault:v1:opaque", "key_path": "ext-secrets"});
    let out = ask(&t, &digest, "tenant-a", envelope.clone(), "api-key").await;
    assert_eq!(out["value"], "from-vault", "{out}");
    let mut wrong_key = envelope;
    wrong_key["key_path"] = json!("other-key");
    let out = ask(&t, &digest, "tenant-a", wrong_key, "api-key").await;
    assert_eq!(out["error"], "internal", "{out}");
}
