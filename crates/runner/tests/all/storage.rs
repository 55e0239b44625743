//! `cap:storage.kv` through real guests: grants (declared ∩ installed),
//! revisions and conflicts, paging, tenant isolation (K-01) and quotas
//! (K-02), on the embedded store and on PostgreSQL.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Publish the `kv_ops` fixture declaring `capabilities`.
fn kv_bundle(t: &TestRunner, capabilities: &[&str]) -> ext_bundle::Digest {
    let wasm = std::fs::read(ext_test_fixtures::component("kv_ops")).unwrap();
    let dir = bundle_dir_with("kv_ops", &wasm, capabilities);
    t.publish_dir(dir.path())
}

/// Run `ops` as `tenant`/`extension`, optionally with install `providers`.
async fn run_ops(
    t: &TestRunner,
    digest: &ext_bundle::Digest,
    tenant: &str,
    extension: &str,
    providers: Option<&[&str]>,
    ops: Value,
) -> Vec<Value> {
    let mut env = envelope(digest, "POST", "/");
    env["context"]["tenant_id"] = json!(tenant);
    env["context"]["extension_id"] = json!(extension);
    env["http"]["body_b64"] = json!(b64(ops.to_string().as_bytes()));
    if let Some(providers) = providers {
        env["providers"] = json!(providers);
    }
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    guest_json(&body).as_array().unwrap().clone()
}

fn put(ns: &str, key: &str, value: &str) -> Value {
    json!({"op": "put", "ns": ns, "key": key, "value": value})
}

fn get(ns: &str, key: &str) -> Value {
    json!({"op": "get", "ns": ns, "key": key})
}

async fn round_trip(t: &TestRunner) {
    let digest = kv_bundle(t, &["cap:storage.kv"]);
    let results = run_ops(
        t,
        &digest,
        "tenant-a",
        "ext-1",
        None,
        json!([
            put("notes", "a", "one"),
            put("notes", "b", "two"),
            get("notes", "a"),
            {"op": "list", "ns": "notes"},
            {"op": "list", "ns": "notes", "cursor": "a"},
            {"op": "put", "ns": "notes", "key": "a", "value": "stale", "revision": 1_000_000},
            {"op": "delete", "ns": "notes", "key": "a"},
            get("notes", "a"),
            {"op": "delete", "ns": "notes", "key": "a"},
        ]),
    )
    .await;
    let first_revision = results[0]["ok"]["revision"].as_u64().unwrap();
    assert_eq!(results[2]["ok"]["value"], "one");
    assert_eq!(results[2]["ok"]["revision"].as_u64(), Some(first_revision));
    let keys = |v: &Value| {
        v["ok"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&results[3]), vec![json!("a"), json!("b")]);
    assert_eq!(keys(&results[4]), vec![json!("b")], "the cursor continues after `a`");
    assert_eq!(results[5]["error"], "conflict");
    assert_eq!(results[6]["ok"], Value::Null);
    assert_eq!(results[7]["ok"], Value::Null, "absent after delete");
    assert_eq!(results[8]["error"], "missing");

    // A later execution sees the same data, with revisions moving forward.
    let results = run_ops(
        t,
        &digest,
        "tenant-a",
        "ext-1",
        None,
        json!([put("notes", "b", "three")]),
    )
    .await;
    assert!(results[0]["ok"]["revision"].as_u64().unwrap() > first_revision);
}

#[tokio::test]
async fn storage_round_trip_on_the_embedded_store() {
    round_trip(&TestRunner::new()).await;
}

#[tokio::test]
async fn storage_round_trip_on_postgres() {
    let url = std::env::var("EXT_TEST_POSTGRES_URL")
        .expect("EXT_TEST_POSTGRES_URL is unset: run scripts/test, which starts PostgreSQL");
    let t = TestRunner::with_env(&[("STORAGE_KV_URL", &url)]);
    round_trip(&t).await;
}

/// Deny by default: a capability the manifest does not declare, or the
/// install does not grant, answers the guest's typed `denied`.
#[tokio::test]
async fn storage_needs_declaration_and_install_grant() {
    let t = TestRunner::new();
    let undeclared = kv_bundle(&t, &["cap:log.emit"]);
    let results = run_ops(&t, &undeclared, "tenant-a", "ext-1", None, json!([put("n", "k", "v")])).await;
    assert_eq!(results[0]["error"], "denied");

    let declared = kv_bundle(&t, &["cap:storage.kv"]);
    let results = run_ops(
        &t,
        &declared,
        "tenant-a",
        "ext-1",
        Some(&["cap:http.fetch"]),
        json!([get("n", "k")]),
    )
    .await;
    assert_eq!(results[0]["error"], "denied", "not in providers");
    let results = run_ops(
        &t,
        &declared,
        "tenant-a",
        "ext-1",
        Some(&["storage.kv"]),
        json!([get("n", "k")]),
    )
    .await;
    assert_eq!(results[0]["ok"], Value::Null, "granted (short form accepted)");

    let mut env = envelope(&declared, "GET", "/");
    env["providers"] = json!(["cap:storage.kv", "cap:root.shell"]);
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "unknown_capability");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("providers[1]"),
        "{body}"
    );
}

/// K-01: keys live under (tenant, extension); path-like or separator-laden
/// keys cannot reach another tenant's or extension's data.
#[tokio::test]
async fn k01_tenants_and_extensions_are_isolated() {
    let t = TestRunner::new();
    let digest = kv_bundle(&t, &["cap:storage.kv"]);
    run_ops(
        &t,
        &digest,
        "tenant-a",
        "ext-1",
        None,
        json!([
            put("n", "secret", "a-data"),
            put("n", "../tenant-b/ext-1/n/secret", "x"),
            put("n", "a:b", "y")
        ]),
    )
    .await;
    for (tenant, extension) in [("tenant-b", "ext-1"), ("tenant-a", "ext-2")] {
        let results = run_ops(
            &t,
            &digest,
            tenant,
            extension,
            None,
            json!([get("n", "secret"), {"op": "list", "ns": "n"}]),
        )
        .await;
        assert_eq!(results[0]["ok"], Value::Null, "{tenant}/{extension}");
        assert_eq!(results[1]["ok"], json!([]), "{tenant}/{extension}");
    }
    let results = run_ops(
        &t,
        &digest,
        "tenant-a",
        "ext-1",
        None,
        json!([get("n", ""), get("n", "a\u{0}b")]),
    )
    .await;
    assert_eq!(results[0]["error"], "denied", "empty key");
    assert_eq!(results[1]["error"], "denied", "control character");
}

/// K-02: a value over the quota is refused and nothing is stored.
#[tokio::test]
async fn k02_oversized_value_is_refused_atomically() {
    let t = TestRunner::new();
    let digest = kv_bundle(&t, &["cap:storage.kv"]);
    let big = "x".repeat(65 * 1024);
    let results = run_ops(
        &t,
        &digest,
        "tenant-a",
        "ext-1",
        None,
        json!([put("n", "k", &big), get("n", "k")]),
    )
    .await;
    assert_eq!(results[0]["error"], "denied");
    assert_eq!(results[1]["ok"], Value::Null);
}
