//! `x-idempotency-key`: a repeat answers the stored answer and the guest
//! runs once; concurrent calls with one key run it once; keys are scoped to
//! tenant, install and user; another request under a used key is refused;
//! refusals before the guest ran are not stored; TTL and caps; bad keys;
//! the gateway forwards the user's key in-process and over HTTP.

use std::collections::HashMap;
use std::time::Duration;

use http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::registry::{ADMIN, Backend, HELLO, PUBLISHER, System, hello_archive};
use crate::support::*;

type Answer = (StatusCode, HashMap<String, String>, Value);

/// POST /v1/execute with `key` as `x-idempotency-key`.
async fn keyed(t: &TestRunner, envelope: &Value, key: &str) -> Answer {
    t.post_raw(
        envelope.to_string().into_bytes(),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("x-idempotency-key", key),
        ],
    )
    .await
}

fn replayed(answer: &Answer) -> bool {
    answer.1.get("x-idempotent-replay").map(String::as_str) == Some("true")
}

/// Executions the runner counted for `tenant` (any outcome): guest runs.
async fn runs(t: &TestRunner, tenant: &str) -> f64 {
    let (_, text) = get_text(t, "/metrics").await;
    let tenant = format!("tenant=\"{tenant}\"");
    text.lines()
        .filter(|l| l.starts_with("ext_runner_invocations_total{") && l.contains(&tenant))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metric(t: &TestRunner, series: &str) -> f64 {
    let (_, text) = get_text(t, "/metrics").await;
    metric_value(&text, series).unwrap_or(0.0)
}

fn kv_bundle(t: &TestRunner) -> ext_bundle::Digest {
    let wasm = std::fs::read(ext_test_fixtures::component("kv_ops")).unwrap();
    let dir = bundle_dir_with("kv_ops", &wasm, &["cap:storage.kv"]);
    t.publish_dir(dir.path())
}

/// An envelope for `kv_ops` that reads `runs/k` and then writes it: a
/// second run would read what the first wrote.
fn read_then_write(digest: &ext_bundle::Digest, tenant: &str) -> Value {
    let mut env = envelope(digest, "POST", "/");
    env["context"]["tenant_id"] = json!(tenant);
    let ops = json!([
        {"op": "get", "ns": "runs", "key": "k"},
        {"op": "put", "ns": "runs", "key": "k", "value": "ran"},
    ]);
    env["http"]["body_b64"] = json!(b64(ops.to_string().as_bytes()));
    env
}

#[tokio::test]
async fn a_repeat_answers_the_stored_answer_and_the_guest_runs_once() {
    let t = TestRunner::new();
    let digest = kv_bundle(&t);
    let env = read_then_write(&digest, "tenant-a");
    let first = keyed(&t, &env, "order-1").await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    assert!(!replayed(&first));
    assert_eq!(guest_json(&first.2)[0], json!({"ok": null}), "nothing there before");

    // The retry: a new request id, the same request and key.
    let mut retry = env.clone();
    retry["context"]["request_id"] = json!(uuid());
    let second = keyed(&t, &retry, "order-1").await;
    assert_eq!(second.0, StatusCode::OK, "{}", second.2);
    assert!(replayed(&second), "{:?}", second.1);
    assert_eq!(second.2["body_b64"], first.2["body_b64"]);
    assert_eq!(second.2["status"], 200);
    assert_eq!(second.2["headers"]["x-idempotent-replay"], "true");
    assert_eq!(runs(&t, "tenant-a").await, 1.0, "the guest ran once");
    assert_eq!(metric(&t, "ext_runner_idempotency_replays_total").await, 1.0);
    assert_eq!(metric(&t, "ext_runner_idempotency_stores_total").await, 1.0);

    // Without a key the call runs, and sees what the one run wrote.
    let third = t.post(&env).await;
    assert!(!replayed(&third));
    assert_eq!(guest_json(&third.2)[0]["ok"]["value"], "ran");
    assert_eq!(runs(&t, "tenant-a").await, 2.0);
}

#[tokio::test]
async fn concurrent_calls_with_one_key_run_the_guest_once() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("limits_sleep");
    let env = envelope(&digest, "POST", "/");
    let mut env = env;
    env["http"]["query"] = json!({"ms": "400"});
    let (a, b) = tokio::join!(keyed(&t, &env, "job-7"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        keyed(&t, &env, "job-7").await
    });
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "{} {}", a.2, b.2);
    assert_eq!(unb64(a.2["body_b64"].as_str().unwrap()), b"slept");
    assert_eq!(a.2["body_b64"], b.2["body_b64"]);
    assert_eq!((replayed(&a), replayed(&b)), (false, true));
    assert_eq!(
        runs(&t, "tenant-a").await,
        1.0,
        "the second call waited, it did not run"
    );
    assert_eq!(metric(&t, "ext_runner_idempotency_waits_total").await, 1.0);

    // A waiter whose own deadline comes first is told to retry.
    let mut slow = env.clone();
    slow["http"]["query"] = json!({"ms": "1500"});
    let mut impatient = slow.clone();
    impatient["limits"] = json!({"timeout_ms": 200});
    let (a, b) = tokio::join!(keyed(&t, &slow, "job-8"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        keyed(&t, &impatient, "job-8").await
    });
    assert_eq!(a.0, StatusCode::OK, "{}", a.2);
    assert_eq!(
        (b.0, error_code(&b.2)),
        (StatusCode::CONFLICT, "idempotency_key_in_progress")
    );
    assert_eq!(b.1.get("retry-after").map(String::as_str), Some("1"));
    assert_eq!(runs(&t, "tenant-a").await, 2.0);
}

#[tokio::test]
async fn a_key_answers_only_its_own_tenant_install_and_user() {
    let t = TestRunner::new();
    let digest = kv_bundle(&t);
    let a = keyed(&t, &read_then_write(&digest, "tenant-a"), "shared-key").await;
    // Tenant probing: the same key and request as another tenant runs its
    // own guest and never sees the other's answer.
    let b = keyed(&t, &read_then_write(&digest, "tenant-b"), "shared-key").await;
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    assert!(!replayed(&a) && !replayed(&b));
    assert_eq!((runs(&t, "tenant-a").await, runs(&t, "tenant-b").await), (1.0, 1.0));

    // Another install, or another user, of the same tenant: its own too.
    let mut install = read_then_write(&digest, "tenant-a");
    install["context"]["install_id"] = json!("install-2");
    let mut user = read_then_write(&digest, "tenant-a");
    user["user"] = json!({"user_id": "u-2", "user_email": "b@example.com", "user_name": "B", "user_type": "internal", "client_name": "C"});
    for env in [&install, &user] {
        let answer = keyed(&t, env, "shared-key").await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
        assert!(!replayed(&answer));
        // It ran: it reads what tenant-a's first run wrote.
        assert_eq!(guest_json(&answer.2)[0]["ok"]["value"], "ran");
    }
    assert_eq!(runs(&t, "tenant-a").await, 3.0);
    assert!(replayed(
        &keyed(&t, &read_then_write(&digest, "tenant-a"), "shared-key").await
    ));
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let mut env = envelope(&digest, "POST", "/orders");
    env["http"]["body_b64"] = json!(b64(b"{\"qty\":1}"));
    assert_eq!(keyed(&t, &env, "k-1").await.0, StatusCode::OK);

    let mut other_body = env.clone();
    other_body["http"]["body_b64"] = json!(b64(b"{\"qty\":2}"));
    let mut other_path = env.clone();
    other_path["http"]["path"] = json!("/refunds");
    let mut other_method = env.clone();
    other_method["http"]["method"] = json!("PUT");
    let mut other_query = env.clone();
    other_query["http"]["query"] = json!({"dry": "1"});
    for other in [&other_body, &other_path, &other_method, &other_query] {
        let (status, headers, body) = keyed(&t, other, "k-1").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            "{other}"
        );
        assert!(!headers.contains_key("x-idempotent-replay"));
    }
    assert_eq!(runs(&t, "tenant-a").await, 1.0);
    // The first request itself is still answered.
    let again = keyed(&t, &env, "k-1").await;
    assert!(replayed(&again));
    assert_eq!(guest_json(&again.2)["body_len"], 9);
}

#[tokio::test]
async fn a_refusal_before_the_guest_ran_is_not_stored_a_failure_after_is() {
    let t = TestRunner::new();
    // A bundle not published yet: 502 `bundle_not_found`, nothing stored.
    let wasm = std::fs::read(ext_test_fixtures::component("echo")).unwrap();
    let dir = bundle_dir_for("echo", &wasm);
    let archive = ext_bundle::pack_dir(dir.path()).unwrap();
    let digest = ext_bundle::Digest::of(&archive);
    let env = envelope(&digest, "POST", "/");
    let (status, headers, body) = keyed(&t, &env, "early").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_GATEWAY, "bundle_not_found")
    );
    assert!(!headers.contains_key("x-idempotent-replay"));
    t.publish_archive(&archive, Some(&sign(&archive)));
    let retry = keyed(&t, &env, "early").await;
    assert_eq!(retry.0, StatusCode::OK, "{}", retry.2);
    assert!(!replayed(&retry), "the retry ran");
    assert_eq!(metric(&t, "ext_runner_idempotency_stores_total").await, 1.0);

    // A guest that started and trapped: the trap is the stored answer.
    let trap = t.publish_fixture("trap");
    let env = envelope(&trap, "POST", "/");
    let first = keyed(&t, &env, "late").await;
    assert_eq!(
        (first.0, error_code(&first.2)),
        (StatusCode::BAD_GATEWAY, "extension_trap")
    );
    let before = runs(&t, "tenant-a").await;
    let second = keyed(&t, &env, "late").await;
    assert_eq!(
        (second.0, error_code(&second.2)),
        (StatusCode::BAD_GATEWAY, "extension_trap")
    );
    assert!(replayed(&second));
    assert_eq!(second.2["error"]["message"], first.2["error"]["message"]);
    assert_eq!(runs(&t, "tenant-a").await, before, "not run again");
}

#[tokio::test]
async fn an_answer_past_its_ttl_runs_again() {
    let t = TestRunner::with_env(&[("RUNNER_IDEMPOTENCY_TTL_SECS", "1")]);
    let digest = t.publish_fixture("echo");
    let env = envelope(&digest, "POST", "/");
    assert!(!replayed(&keyed(&t, &env, "ttl").await));
    assert!(replayed(&keyed(&t, &env, "ttl").await));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = keyed(&t, &env, "ttl").await;
    assert_eq!(late.0, StatusCode::OK);
    assert!(!replayed(&late));
    assert_eq!(runs(&t, "tenant-a").await, 2.0);
    assert_eq!(
        metric(&t, "ext_runner_idempotency_evictions_total{reason=\"expired\"}").await,
        1.0
    );
}

#[tokio::test]
async fn the_caps_evict_the_oldest_and_large_answers_are_not_kept() {
    let t = TestRunner::with_env(&[("RUNNER_IDEMPOTENCY_MAX_ENTRIES", "2")]);
    let digest = t.publish_fixture("echo");
    let env = envelope(&digest, "POST", "/");
    for key in ["k1", "k2", "k3"] {
        assert!(!replayed(&keyed(&t, &env, key).await));
    }
    assert_eq!(t.runner.idempotency().usage().0, 2);
    assert!(replayed(&keyed(&t, &env, "k3").await));
    assert!(!replayed(&keyed(&t, &env, "k1").await), "the oldest was evicted");
    assert_eq!(runs(&t, "tenant-a").await, 4.0);
    assert_eq!(
        metric(&t, "ext_runner_idempotency_evictions_total{reason=\"entries\"}").await,
        2.0,
        "k1 for k3, then k2 for k1"
    );

    let t = TestRunner::with_env(&[("RUNNER_IDEMPOTENCY_MAX_RESPONSE_BYTES", "1KiB")]);
    let digest = t.publish_fixture("echo");
    let mut env = envelope(&digest, "POST", "/");
    env["http"]["body_b64"] = json!(b64(&[b'x'; 4096]));
    assert!(!replayed(&keyed(&t, &env, "big").await));
    assert!(
        !replayed(&keyed(&t, &env, "big").await),
        "too large to keep: runs again"
    );
    assert_eq!(runs(&t, "tenant-a").await, 2.0);
    assert_eq!(metric(&t, "ext_runner_idempotency_not_stored_total").await, 2.0);
    assert_eq!(t.runner.idempotency().usage(), (0, 0));
}

#[tokio::test]
async fn a_bad_key_is_400_before_anything_runs() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let env = envelope(&digest, "POST", "/");
    let long = "k".repeat(257);
    for key in ["", "two words", "tab\there", long.as_str()] {
        let (status, _, body) = keyed(&t, &env, key).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "idempotency_key_invalid"),
            "{key:?}: {body}"
        );
    }
    assert!(keyed(&t, &env, &"k".repeat(256)).await.0.is_success());
    assert_eq!(runs(&t, "tenant-a").await, 1.0);
}

fn user_token(tenant: &str) -> String {
    crate::gateway::user(tenant)
}

async fn gateway_post(system: &System, key: Option<(&str, &str)>, body: &[u8]) -> (StatusCode, http::HeaderMap, Value) {
    let mut request = Request::post(format!("/api/ext/{HELLO}/echo"))
        .header("authorization", format!("Bearer {}", user_token("tenant-a")));
    if let Some((name, value)) = key {
        request = request.header(name, value);
    }
    system.call(request, body.to_vec()).await
}

async fn publish_and_install(system: &System) {
    let (status, body) = system.publish(PUBLISHER, &hello_archive("1.0.0", true)).await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = system.install(ADMIN, "tenant-a", &json!({"version": "1.0.0"})).await;
    assert!(status.is_success(), "{status} {body}");
}

fn header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn the_gateway_forwards_the_users_key_to_the_runner_in_process() {
    let system = System::start(
        Backend::Sqlite,
        &[("RUNNER_ROLES", "all"), ("GATEWAY_JWT_SECRET", crate::gateway::SECRET)],
    )
    .await;
    publish_and_install(&system).await;
    let first = gateway_post(&system, Some(("x-idempotency-key", "gw-1")), br#"{"n":1}"#).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    assert_eq!(header(&first.1, "x-idempotent-replay"), None);
    // The same key in the standard spelling is the same key.
    let second = gateway_post(&system, Some(("idempotency-key", "gw-1")), br#"{"n":1}"#).await;
    assert_eq!((second.0, &second.2), (StatusCode::OK, &json!({"n": 1})));
    assert_eq!(header(&second.1, "x-idempotent-replay"), Some("true"));
    assert_eq!(runs(&system.test, "tenant-a").await, 1.0);

    let reused = gateway_post(&system, Some(("x-idempotency-key", "gw-1")), br#"{"n":2}"#).await;
    assert_eq!(
        (reused.0, error_code(&reused.2)),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    let bad = gateway_post(&system, Some(("x-idempotency-key", "a b")), br#"{"n":1}"#).await;
    assert_eq!(
        (bad.0, error_code(&bad.2)),
        (StatusCode::BAD_REQUEST, "idempotency_key_invalid")
    );
    assert_eq!(runs(&system.test, "tenant-a").await, 1.0);
}

#[tokio::test]
async fn the_gateway_forwards_the_users_key_to_a_runner_over_http() {
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("grant.pem");
    let (jwks, _) = ext_runner::cli::grant::grant_keygen(&private).unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = format!("file://{}", data.path().join("bundles").display());
    let runner = TestRunner::in_dir(
        tempfile::tempdir().unwrap(),
        &[
            ("RUNNER_GRANT_KEYS", jwks.to_str().unwrap()),
            ("BUNDLE_STORAGE_URL", &store),
        ],
    );
    let served = serve(&runner).await;
    let base = format!("http://{}", served.addr);
    let system = System::start(
        Backend::Sqlite,
        &[
            ("RUNNER_ROLES", "registry,gateway"),
            ("GATEWAY_JWT_SECRET", crate::gateway::SECRET),
            ("RUNNER_BASE_URL", &base),
            ("GATEWAY_RUNNER_TOKEN", TOKEN),
            ("GATEWAY_GRANT_KEY", private.to_str().unwrap()),
            ("BUNDLE_STORAGE_URL", &store),
        ],
    )
    .await;
    publish_and_install(&system).await;
    let first = gateway_post(&system, Some(("x-idempotency-key", "remote-1")), br#"{"n":1}"#).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.2);
    assert_eq!(header(&first.1, "x-idempotent-replay"), None);
    let second = gateway_post(&system, Some(("x-idempotency-key", "remote-1")), br#"{"n":1}"#).await;
    assert_eq!((second.0, &second.2), (StatusCode::OK, &json!({"n": 1})));
    assert_eq!(header(&second.1, "x-idempotent-replay"), Some("true"));
    assert_eq!(runs(&runner, "tenant-a").await, 1.0, "the runner elsewhere ran it once");
    // Without a key, each call runs.
    gateway_post(&system, None, br#"{"n":1}"#).await;
    assert_eq!(runs(&runner, "tenant-a").await, 2.0);
}
