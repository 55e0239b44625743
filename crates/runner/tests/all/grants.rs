//! Execution grants through `/v1/execute` (catalogue G-02): a runner with
//! `RUNNER_GRANT_KEYS` refuses envelopes without a grant, with a forged,
//! expired or foreign one, and takes capabilities from the grant, never
//! from the envelope. Keys come from `grant keygen`, grants from the same
//! code `grant sign` runs.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;
use ext_runner::grant::{Claims, GrantSigner};

struct Granted {
    runner: TestRunner,
    signer: GrantSigner,
    digest: ext_bundle::Digest,
}

/// A runner trusting one fresh grant key, with the `kv_ops` fixture
/// (declaring `cap:storage.kv`) published.
fn granted() -> Granted {
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("grant.pem");
    let (jwks, _kid) = ext_runner::cli::grant::grant_keygen(&private).unwrap();
    let runner = TestRunner::with_env(&[("RUNNER_GRANT_KEYS", jwks.to_str().unwrap())]);
    let signer = GrantSigner::load(&private).unwrap();
    let wasm = std::fs::read(ext_test_fixtures::component("kv_ops")).unwrap();
    let dir = bundle_dir_with("kv_ops", &wasm, &["cap:storage.kv"]);
    let digest = runner.publish_dir(dir.path());
    Granted { runner, signer, digest }
}

impl Granted {
    /// Claims matching [`Granted::envelope`], granting `capabilities`.
    fn claims(&self, capabilities: &[&str]) -> Claims {
        Claims {
            tenant: "tenant-a".into(),
            extension: "com.test.ext".into(),
            install_id: None,
            version_id: None,
            content_hash: self.digest.to_string(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            egress: Vec::new(),
            request_id: None,
            exp: ext_runner::grant::now_secs() + 60,
        }
    }

    /// A `put` through the guest, claiming `cap:storage.kv` in the envelope.
    fn envelope(&self) -> Value {
        let mut env = envelope(&self.digest, "POST", "/");
        env["providers"] = json!(["cap:storage.kv"]);
        let ops = json!([{"op": "put", "ns": "n", "key": "k", "value": "v"}]);
        env["http"]["body_b64"] = json!(b64(ops.to_string().as_bytes()));
        env
    }

    async fn post(&self, env: &Value, grant: Option<&str>) -> (StatusCode, Value) {
        let auth = format!("Bearer {TOKEN}");
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(grant) = grant {
            headers.push(("x-ext-grant", grant));
        }
        let (status, _, body) = self.runner.post_raw(env.to_string().into_bytes(), &headers).await;
        (status, body)
    }
}

#[tokio::test]
async fn g02_envelopes_without_a_valid_grant_are_refused() {
    let g = granted();
    let env = g.envelope();

    let (status, body) = g.post(&env, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(error_code(&body), "grant_invalid");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("x-ext-grant"),
        "{body}"
    );

    let (status, body) = g.post(&env, Some("not.a.jws")).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "grant_invalid"),
        "{body}"
    );

    // Signed by a key the runner does not trust.
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("other.pem");
    ext_runner::cli::grant::grant_keygen(&other_key).unwrap();
    let forged = GrantSigner::load(&other_key)
        .unwrap()
        .sign(&g.claims(&["cap:storage.kv"]))
        .unwrap();
    let (status, body) = g.post(&env, Some(&forged)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "grant_invalid"),
        "{body}"
    );

    // Expired well past the clock skew.
    let mut claims = g.claims(&["cap:storage.kv"]);
    claims.exp = ext_runner::grant::now_secs() - 120;
    let expired = g.signer.sign(&claims).unwrap();
    let (status, body) = g.post(&env, Some(&expired)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "grant_invalid"),
        "{body}"
    );

    // A valid grant for another tenant, extension or bundle: 403 naming the fields.
    let mut claims = g.claims(&["cap:storage.kv"]);
    claims.tenant = "tenant-b".into();
    claims.extension = "com.other.ext".into();
    let foreign = g.signer.sign(&claims).unwrap();
    let (status, body) = g.post(&env, Some(&foreign)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "grant_mismatch");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tenant_id") && message.contains("extension_id"),
        "{body}"
    );
    assert!(
        !message.contains("content_hash"),
        "only mismatched fields are named: {body}"
    );

    // Bound to a request id: another request cannot replay it.
    let mut claims = g.claims(&["cap:storage.kv"]);
    claims.request_id = Some(uuid());
    let bound = g.signer.sign(&claims).unwrap();
    let (status, body) = g.post(&env, Some(&bound)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "grant_mismatch"),
        "{body}"
    );
}

#[tokio::test]
async fn g02_capabilities_come_from_the_grant_not_the_envelope() {
    let g = granted();
    let claiming = g.envelope();
    let mut silent = claiming.clone();
    silent.as_object_mut().unwrap().remove("providers");
    let none = g.signer.sign(&g.claims(&[])).unwrap();
    let storage = g.signer.sign(&g.claims(&["cap:storage.kv"])).unwrap();

    // The envelope claims storage the grant does not give: refused, named.
    let (status, body) = g.post(&claiming, Some(&none)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "grant_mismatch"),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`providers`"),
        "{body}"
    );

    // The envelope says nothing: the grant decides, both ways.
    let (status, body) = g.post(&silent, Some(&none)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(guest_json(&body)[0]["error"], "denied", "{body}");
    let (status, body) = g.post(&silent, Some(&storage)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(guest_json(&body)[0]["ok"]["revision"].as_u64().is_some(), "{body}");

    // Claiming what the grant gives is the same call.
    let (status, body) = g.post(&claiming, Some(&storage)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(guest_json(&body)[0]["ok"]["revision"].as_u64().is_some(), "{body}");
}

/// `grant keygen` writes a key pair without overwriting; `grant sign`
/// prints a grant the JWKS verifies, and names the flag it refuses.
#[test]
fn grant_cli_signs_what_the_runner_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("grant.pem");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ext-runner"))
            .args(args)
            .output()
            .unwrap()
    };
    let key_arg = key.to_str().unwrap();
    let out = run(&["grant", "keygen", "--out", key_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let jwks_path = dir.path().join("grant.jwks.json");
    let jwks = std::fs::read_to_string(&jwks_path).unwrap();
    assert!(jwks.contains(&kid), "{jwks}");
    assert!(!jwks.contains("\"d\""), "the JWKS holds no private part: {jwks}");
    let again = run(&["grant", "keygen", "--out", key_arg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let hash = format!("sha256:{}", "a".repeat(64));
    let sign = |extra: &[&str]| {
        let mut args = vec![
            "grant",
            "sign",
            "--key",
            key_arg,
            "--tenant",
            "t1",
            "--extension",
            "com.x.y",
        ];
        args.extend_from_slice(&["--content-hash", &hash]);
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = sign(&["--capability", "cap:storage.kv", "--egress", "https://api.example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let keys = ext_runner::grant::GrantKeys::from_jwks(&[(jwks_path.display().to_string(), jwks)]).unwrap();
    let claims = keys.verify(token.trim(), ext_runner::grant::now_secs()).unwrap();
    assert_eq!((claims.tenant.as_str(), claims.extension.as_str()), ("t1", "com.x.y"));
    assert_eq!(claims.capabilities, vec!["cap:storage.kv".to_string()]);
    assert_eq!(claims.egress, vec!["https://api.example.com".to_string()]);

    for (extra, named) in [
        (&["--ttl", "301"][..], "--ttl"),
        (&["--capability", "cap:root.shell"][..], "--capability"),
        (&["--egress", "ftp://x"][..], "--egress"),
    ] {
        let out = sign(extra);
        assert!(!out.status.success(), "{extra:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(named),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
