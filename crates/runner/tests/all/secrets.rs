//! `cap:secrets.get` through a real guest: AES-256-GCM envelopes sealed by
//! the CLI's library function, grants, inline policy, expiry, K-03 (no
//! cross-tenant reads: exactly like a missing secret; no secret values in
//! logs or error bodies) and K-04 (envelopes bound to tenant, extension and
//! `expires_at`, for AES and Vault transit alike).

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
    sealed_until(tenant, extension, None)
}

fn sealed_until(tenant: &str, extension: &str, expires_at: Option<&str>) -> Value {
    let env = std::collections::HashMap::from([("RUNNER_SECRETS_KEY".to_string(), KEY_B64.to_string())]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), json!({"api-key": SECRET, "region": "eu"}).to_string()).unwrap();
    let text = ext_runner::cli::secrets_seal_until(&env, tenant, extension, expires_at, Some(file.path())).unwrap();
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

/// K-03: an envelope sealed for another tenant or extension, tampered, or
/// sealed under another runner key does not open, and the guest sees
/// exactly what it sees with no envelope at all (`missing`, no keys); the
/// refusals are logged with their reason, and the value appears in no log
/// line or response of any of these requests.
#[tokio::test]
async fn k03_another_tenants_envelope_answers_like_a_missing_secret() {
    let capture = crate::execute::capture();
    let t = TestRunner::with_env(&[("RUNNER_SECRETS_KEY", KEY_B64)]);
    let digest = probe(&t, &["cap:secrets.get"]);
    let nothing = ask(&t, &digest, "tenant-b", Value::Null, "api-key").await;
    assert_eq!(nothing, json!({"error": "missing", "keys": []}), "{nothing}");
    let foreign = ask(&t, &digest, "tenant-b", sealed("tenant-a", "com.test.ext"), "api-key").await;
    assert_eq!(foreign, nothing, "another tenant's envelope is an oracle");
    let other_extension = ask(&t, &digest, "tenant-a", sealed("tenant-a", "com.test.other"), "api-key").await;
    assert_eq!(other_extension, nothing);

    // Tampered ciphertext, and a wrong runner key.
    let mut tampered = sealed("tenant-a", "com.test.ext");
    let mut bytes = unb64(tampered["ciphertext_b64"].as_str().unwrap());
    bytes[20] ^= 1;
    tampered["ciphertext_b64"] = json!(b64(&bytes));
    assert_eq!(ask(&t, &digest, "tenant-a", tampered, "api-key").await, nothing);
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
    assert_eq!(out, nothing);

    // A successful read too: the host logs nothing of the value.
    let out = ask(&t, &digest, "tenant-a", sealed("tenant-a", "com.test.ext"), "api-key").await;
    assert_eq!(out["value"], SECRET);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("secret envelope not opened"), "the refusals were logged");
    assert!(
        logs.contains("not sealed for this tenant, extension and expires_at"),
        "with their reason"
    );
    assert!(!logs.contains(SECRET), "a secret value reached the log");
}

/// K-04: `expires_at` is bound into the ciphertext (`secrets seal
/// --expires-at`): removed or extended, the envelope is refused like a
/// missing one, not even `expired`; as sealed, it opens until then.
#[tokio::test]
async fn k04_expires_at_cannot_be_removed_or_extended() {
    let t = TestRunner::with_env(&[("RUNNER_SECRETS_KEY", KEY_B64)]);
    let digest = probe(&t, &["cap:secrets.get"]);
    let until = "2999-01-01T00:00:00Z";
    let envelope = sealed_until("tenant-a", "com.test.ext", Some(until));
    assert_eq!(envelope["expires_at"], until);
    let out = ask(&t, &digest, "tenant-a", envelope.clone(), "api-key").await;
    assert_eq!(out["value"], SECRET, "{out}");
    let mut removed = envelope.clone();
    removed.as_object_mut().unwrap().remove("expires_at");
    let mut extended = envelope.clone();
    extended["expires_at"] = json!("3999-01-01T00:00:00Z");
    let mut shortened = envelope;
    shortened["expires_at"] = json!("2020-01-01T00:00:00Z");
    for altered in [removed, extended, shortened] {
        let out = ask(&t, &digest, "tenant-a", altered.clone(), "api-key").await;
        assert_eq!(out, json!({"error": "missing", "keys": []}), "{altered}");
    }
    let past = sealed_until("tenant-a", "com.test.ext", Some("2020-01-01T00:00:00Z"));
    assert_eq!(ask(&t, &digest, "tenant-a", past, "api-key").await["error"], "expired");
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
/// stand-in server speaking that protocol on loopback for a derived key: it
/// decrypts `vault:v1:opaque` only under the context it was encrypted with,
/// tenant-a + com.test.ext + its `expires_at`, else answers 400 as Vault
/// does (K-04).
#[tokio::test]
async fn vault_transit_envelopes_open_through_the_transit_api() {
    use std::sync::{Arc, Mutex};
    let until = "2999-01-01T00:00:00Z";
    let bound = b64(format!("tenant-a\0com.test.ext\0{until}").as_bytes());
    let calls = Arc::new(Mutex::new(Vec::<(String, Value)>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = {
        let calls = calls.clone();
        axum::Router::new().fallback(axum::routing::post(
            move |uri: http::Uri, headers: http::HeaderMap, body: String| {
                let (calls, bound) = (calls.clone(), bound.clone());
                async move {
                    let request: Value = serde_json::from_str(&body).unwrap_or_default();
                    calls.lock().unwrap().push((uri.path().to_string(), request.clone()));
                    let token_ok =
                        headers.get("x-vault-token").and_then(|v| v.to_str().ok()) == Some("vault-test-token");
                    if !token_ok || uri.path() != "/v1/transit/decrypt/ext-secrets" {
                        return (StatusCode::FORBIDDEN, String::new());
                    }
                    if request["ciphertext"] != "vault:v1:opaque" || request["context"] != bound.as_str() {
                        let errors = json!({"errors": ["cipher: message authentication failed"]});
                        return (StatusCode::BAD_REQUEST, errors.to_string());
                    }
                    let plaintext = b64(json!({"api-key": "from-vault"}).to_string().as_bytes());
                    (StatusCode::OK, json!({"data": {"plaintext": plaintext}}).to_string())
                }
            },
        ))
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "vault-test-token\n").unwrap();

    let t = TestRunner::with_env(&[
        ("VAULT_ADDR", &format!("http://{addr}")),
        ("VAULT_TOKEN_FILE", token.path().to_str().unwrap()),
    ]);
    let digest = probe(&t, &["cap:secrets.get"]);
    let envelope = json!({
        "algorithm": "vault-transit", "ciphertext_b64": "vault:v1:opaque",
        "key_path": "ext-secrets", "expires_at": until
    });
    let out = ask(&t, &digest, "tenant-a", envelope.clone(), "api-key").await;
    assert_eq!(out["value"], "from-vault", "{out}");
    let nothing = json!({"error": "missing", "keys": []});

    // K-03/K-04: replayed for another tenant, expiry removed or extended,
    // another key: Vault refuses, the guest sees no envelope.
    let mut extended = envelope.clone();
    extended["expires_at"] = json!("3999-01-01T00:00:00Z");
    let mut removed = envelope.clone();
    removed.as_object_mut().unwrap().remove("expires_at");
    let mut wrong_key = envelope.clone();
    wrong_key["key_path"] = json!("other-key");
    assert_eq!(ask(&t, &digest, "tenant-b", envelope.clone(), "api-key").await, nothing);
    for altered in [extended, removed, wrong_key] {
        assert_eq!(
            ask(&t, &digest, "tenant-a", altered.clone(), "api-key").await,
            nothing,
            "{altered}"
        );
    }
    let sent_for_b = calls.lock().unwrap()[1].1["context"].clone();
    assert_eq!(sent_for_b, b64(format!("tenant-b\0com.test.ext\0{until}").as_bytes()));

    // K-04: a mount or key path with `/` or `..` is refused before Vault.
    let before = calls.lock().unwrap().len();
    for (field, value) in [
        ("mount", "transit/../sys"),
        ("mount", "a/b"),
        ("mount", ".."),
        ("key_path", "../ext-secrets"),
        ("key_path", "keys/ext-secrets"),
        ("key_path", ".."),
    ] {
        let mut bad = envelope.clone();
        bad[field] = json!(value);
        assert_eq!(
            ask(&t, &digest, "tenant-a", bad, "api-key").await,
            nothing,
            "{field}={value}"
        );
    }
    assert_eq!(
        calls.lock().unwrap().len(),
        before,
        "a bad mount or key path reached Vault"
    );
}
