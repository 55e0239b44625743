//! `cap:metrics.emit` through real guests (`metrics_emit`): series on
//! `/metrics` labelled by tenant and extension, the grant, name and label
//! rules, the per-extension cardinality cap and the per-execution call cap.
//! Then the Redis debug sink (`RUNNER_DEBUG_REDIS_URL`, guest `log_emit`):
//! lines land in `ext-debug:{tenant}:{extension}`, and a Redis that is down
//! or silent never fails an execution.

use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::*;

/// Publish the `metrics_emit` fixture declaring `capabilities`.
fn metrics_bundle(t: &TestRunner, capabilities: &[&str]) -> ext_bundle::Digest {
    let wasm = std::fs::read(ext_test_fixtures::component("metrics_emit")).unwrap();
    let dir = bundle_dir_with("metrics_emit", &wasm, capabilities);
    t.publish_dir(dir.path())
}

/// Run `ops` as `tenant`/`extension`; one result per op.
async fn emit(
    t: &TestRunner,
    digest: &ext_bundle::Digest,
    (tenant, extension): (&str, &str),
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

fn op(kind: &str, name: &str, value: Value, labels: &[(&str, &str)]) -> Value {
    let labels: Vec<[&str; 2]> = labels.iter().map(|(n, v)| [*n, *v]).collect();
    json!({"kind": kind, "name": name, "value": value, "labels": labels})
}

async fn scrape(t: &TestRunner) -> String {
    let response = ext_runner::server::router(t.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

const A: (&str, &str) = ("tenant-a", "com.test.ext");

#[tokio::test]
async fn guest_metrics_appear_on_metrics_labelled_by_tenant_and_extension() {
    let t = TestRunner::new();
    // The manifest's short form `metrics` is `cap:metrics.emit`.
    let digest = metrics_bundle(&t, &["metrics"]);
    let results = emit(
        &t,
        &digest,
        A,
        None,
        json!([
            op("counter", "orders_total", json!(2), &[("kind", "refund")]),
            op("counter", "orders_total", json!(3), &[("kind", "refund")]),
            op("gauge", "queue_depth", json!(7.5), &[]),
            op(
                "histogram",
                "upstream_seconds",
                json!(0.042),
                &[("upstream", "billing")]
            ),
        ]),
    )
    .await;
    assert!(results.iter().all(|r| r["ok"] == true), "{results:?}");
    let results = emit(
        &t,
        &digest,
        ("tenant-b", "com.test.ext"),
        None,
        json!([op("counter", "orders_total", json!(1), &[("kind", "refund")])]),
    )
    .await;
    assert_eq!(results[0]["ok"], true);

    let text = scrape(&t).await;
    for expected in [
        // OpenMetrics: the family is named without `_total`, its samples with it.
        "# TYPE ext_runner_guest_orders counter\n",
        "ext_runner_guest_orders_total{tenant=\"tenant-a\",extension=\"com.test.ext\",kind=\"refund\"} 5\n",
        "ext_runner_guest_orders_total{tenant=\"tenant-b\",extension=\"com.test.ext\",kind=\"refund\"} 1\n",
        "# TYPE ext_runner_guest_queue_depth gauge\n",
        "ext_runner_guest_queue_depth{tenant=\"tenant-a\",extension=\"com.test.ext\"} 7.5\n",
        "# TYPE ext_runner_guest_upstream_seconds histogram\n",
        "ext_runner_guest_upstream_seconds_bucket{le=\"0.025\",tenant=\"tenant-a\",extension=\"com.test.ext\",upstream=\"billing\"} 0\n",
        "ext_runner_guest_upstream_seconds_bucket{le=\"0.05\",tenant=\"tenant-a\",extension=\"com.test.ext\",upstream=\"billing\"} 1\n",
        "ext_runner_guest_upstream_seconds_count{tenant=\"tenant-a\",extension=\"com.test.ext\",upstream=\"billing\"} 1\n",
        "ext_runner_host_calls_total{interface=\"metrics\"} 5\n",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

/// Deny by default: not declared, or declared but not in the install's
/// `providers`, answers `denied` and records nothing.
#[tokio::test]
async fn guest_metrics_need_declaration_and_install_grant() {
    let t = TestRunner::new();
    let call = json!([op("counter", "denied_total", json!(1), &[])]);
    let undeclared = metrics_bundle(&t, &["cap:log.emit"]);
    let results = emit(&t, &undeclared, A, None, call.clone()).await;
    assert_eq!(results[0]["error"], "denied");

    let declared = metrics_bundle(&t, &["cap:metrics.emit"]);
    let results = emit(&t, &declared, A, Some(&["cap:storage.kv"]), call.clone()).await;
    assert_eq!(results[0]["error"], "denied", "not in providers");
    assert!(!scrape(&t).await.contains("denied_total"));

    let results = emit(&t, &declared, A, Some(&["metrics"]), call).await;
    assert_eq!(results[0]["ok"], true, "granted (short form accepted)");
    assert!(scrape(&t).await.contains("ext_runner_guest_denied_total{"));
}

/// Names and labels outside the rules, reserved labels (a guest cannot
/// claim another tenant's label), non-finite values and kind clashes are
/// `invalid`, and nothing reaches `/metrics`.
#[tokio::test]
async fn guest_metrics_refuse_invalid_names_labels_and_kinds() {
    let t = TestRunner::new();
    let digest = metrics_bundle(&t, &["cap:metrics.emit"]);
    let long_name = "n".repeat(65);
    let long_value = "v".repeat(129);
    let nine: Vec<(String, String)> = (0..9).map(|i| (format!("l{i}"), "v".to_string())).collect();
    let nine: Vec<(&str, &str)> = nine.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let invalid = [
        op("counter", "Orders", json!(1), &[]),
        op("counter", "orders-total", json!(1), &[]),
        op("counter", "", json!(1), &[]),
        op("counter", &long_name, json!(1), &[]),
        op("counter", "latency_bucket", json!(1), &[]),
        op("counter", "peak_memory_bytes", json!(1), &[]),
        op("counter", "spoof_total", json!(1), &[("tenant", "tenant-b")]),
        op("counter", "spoof_total", json!(1), &[("extension", "other")]),
        op("histogram", "spoof_seconds", json!(1), &[("le", "0.1")]),
        op("counter", "labels_total", json!(1), &[("Kind", "x")]),
        op("counter", "labels_total", json!(1), &[("k", "1"), ("k", "2")]),
        op("counter", "labels_total", json!(1), &[("k", &long_value)]),
        op("counter", "labels_total", json!(1), &nine),
        op("gauge", "not_finite", json!("NaN"), &[]),
        op("histogram", "not_finite", json!("inf"), &[]),
    ];
    let results = emit(&t, &digest, A, None, Value::Array(invalid.to_vec())).await;
    for (op, result) in invalid.iter().zip(&results) {
        assert_eq!(result["error"], "invalid", "{op} → {result}");
    }

    // A name keeps the kind it was first used with.
    let results = emit(
        &t,
        &digest,
        A,
        None,
        json!([
            op("counter", "mixed", json!(1), &[]),
            op("gauge", "mixed", json!(1.0), &[]),
            op("histogram", "mixed", json!(1.0), &[]),
        ]),
    )
    .await;
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[1]["error"], "invalid");
    assert_eq!(results[2]["error"], "invalid");

    let text = scrape(&t).await;
    let guest_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ext_runner_guest_"))
        // The runner's own series under the prefix.
        .filter(|l| {
            !l.starts_with("ext_runner_guest_peak_memory_bytes") && !l.starts_with("ext_runner_guest_egress_bytes")
        })
        .collect();
    // OpenMetrics: a counter's sample ends `_total`.
    assert_eq!(
        guest_lines,
        ["ext_runner_guest_mixed_total{tenant=\"tenant-a\",extension=\"com.test.ext\"} 1"],
        "{text}"
    );
    assert!(text.contains("# TYPE ext_runner_guest_mixed counter\n"), "{text}");
}

/// The cardinality cap: one (tenant, extension) gets at most 200 series;
/// its existing series keep updating, and other extensions are unaffected.
#[tokio::test]
async fn guest_metrics_cardinality_cap_per_extension() {
    let t = TestRunner::new();
    let digest = metrics_bundle(&t, &["cap:metrics.emit"]);
    let cap = ext_runner::host::metrics::MAX_SERIES_PER_EXTENSION;
    let mut spread = op("counter", "items_total", json!(1), &[]);
    spread["spread"] = json!(cap + 50);
    let results = emit(&t, &digest, A, None, json!([spread])).await;
    assert_eq!(results[0]["ok"], cap, "{results:?}");
    assert_eq!(results[0]["error"], "limit-exceeded");

    let results = emit(
        &t,
        &digest,
        A,
        None,
        json!([
            op("counter", "items_total", json!(1), &[("i", "0")]),
            op("gauge", "another", json!(1.0), &[]),
        ]),
    )
    .await;
    assert_eq!(results[0]["ok"], true, "an existing series still updates");
    assert_eq!(results[1]["error"], "limit-exceeded", "a new series does not");

    let other = ("tenant-a", "com.test.other");
    let results = emit(
        &t,
        &digest,
        other,
        None,
        json!([op("gauge", "another", json!(1.0), &[])]),
    )
    .await;
    assert_eq!(results[0]["ok"], true, "another extension has its own budget");

    let text = scrape(&t).await;
    let series = text
        .lines()
        .filter(|l| l.starts_with("ext_runner_guest_items_total{tenant=\"tenant-a\",extension=\"com.test.ext\","))
        .count();
    assert_eq!(series, cap, "{text}");
    assert!(text.contains("ext_runner_guest_items_total{tenant=\"tenant-a\",extension=\"com.test.ext\",i=\"0\"} 2\n"));
}

/// The call cap: an execution's metric calls beyond the cap are
/// `limit-exceeded`; the next execution starts afresh.
#[tokio::test]
async fn guest_metrics_call_cap_per_execution() {
    let t = TestRunner::new();
    let digest = metrics_bundle(&t, &["cap:metrics.emit"]);
    let cap = ext_runner::host::metrics::MAX_CALLS_PER_INVOCATION as usize;
    let calls = vec![op("counter", "calls_total", json!(1), &[]); cap + 1];
    let results = emit(&t, &digest, A, None, Value::Array(calls)).await;
    assert!(results[..cap].iter().all(|r| r["ok"] == true));
    assert_eq!(results[cap]["error"], "limit-exceeded");
    let results = emit(
        &t,
        &digest,
        A,
        None,
        json!([op("counter", "calls_total", json!(1), &[])]),
    )
    .await;
    assert_eq!(results[0]["ok"], true);
    assert!(scrape(&t).await.contains(&format!(
        "ext_runner_guest_calls_total{{tenant=\"tenant-a\",extension=\"com.test.ext\"}} {}\n",
        cap + 1
    )));
}

/// The Redis server `scripts/test` starts on loopback.
fn redis_url() -> String {
    std::env::var("EXT_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "EXT_TEST_REDIS_URL is not set: this test needs a real Redis; run scripts/test, which starts Redis \
             (or `eval \"$(scripts/services/redis start target/services/redis)\"` before cargo test)"
        )
    })
}

/// Run `log_emit` (three log lines, one stdout, one stderr line) as
/// `extension`; the execution must succeed.
async fn run_log_emit(t: &TestRunner, extension: &str) -> String {
    let digest = t.publish_fixture("log_emit");
    let mut env = envelope(&digest, "GET", "/");
    env["context"]["extension_id"] = json!(extension);
    env["context"]["version_id"] = json!("v-7");
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    env["context"]["request_id"].as_str().unwrap().to_string()
}

/// Poll `/metrics` until `line_prefix` shows a value ≥ `at_least`.
async fn wait_for_counter(t: &TestRunner, line_prefix: &str, at_least: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(t).await;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if value.is_some_and(|v| v >= at_least) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "`{line_prefix}` never reached {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn debug_sink_xadds_guest_lines_to_the_extension_stream() {
    let url = redis_url();
    let t = TestRunner::with_env(&[("RUNNER_DEBUG_REDIS_URL", &url)]);
    let extension = format!("com.test.debug-{}", uuid());
    let request_id = run_log_emit(&t, &extension).await;
    wait_for_counter(&t, "ext_runner_debug_sink_written_total ", 5.0).await;

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("ext-debug:tenant-a:{extension}");
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    let got: Vec<Vec<String>> = entries.into_iter().map(|(_, fields)| fields).collect();
    let want = |level: &str, source: &str, message: &str| -> Vec<String> {
        [
            "level",
            level,
            "source",
            source,
            "message",
            message,
            "request_id",
            &request_id,
            "version",
            "v-7",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    assert_eq!(
        got,
        vec![
            want("info", "log", "info-from-guest"),
            want("warn", "log", "warn-from-guest"),
            want("error", "log", "error-from-guest"),
            want("info", "stdout", "stdout-from-guest"),
            want("info", "stderr", "stderr-from-guest"),
        ],
        "XRANGE {key}"
    );
}

/// Redis refusing connections, or accepting and never answering: the
/// execution succeeds anyway and the lines are counted as dropped.
#[tokio::test]
async fn debug_sink_with_redis_down_or_silent_never_fails_an_execution() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    for url in [
        format!("redis://{}", closed_port_addr()),
        format!("redis://{}", silent.local_addr().unwrap()),
    ] {
        let t = TestRunner::with_env(&[("RUNNER_DEBUG_REDIS_URL", &url)]);
        let started = Instant::now();
        run_log_emit(&t, "com.test.debug-down").await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: took {:?}",
            started.elapsed()
        );
        let text = wait_for_counter(
            &t,
            "ext_runner_debug_sink_dropped_total{reason=\"redis_unavailable\"} ",
            5.0,
        )
        .await;
        assert!(!text.contains("ext_runner_debug_sink_written_total"), "{url}:\n{text}");
    }
}

#[test]
fn debug_redis_url_is_validated_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let env = std::collections::HashMap::from([
        ("RUNNER_DATA_DIR".to_string(), dir.path().display().to_string()),
        ("RUNNER_SERVICE_TOKEN".to_string(), TOKEN.to_string()),
        (
            "RUNNER_DEBUG_REDIS_URL".to_string(),
            "rediss://:hunter2@redis.internal:6380".to_string(),
        ),
    ]);
    let err = ext_runner::Config::load(&env, &Default::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("RUNNER_DEBUG_REDIS_URL") && text.contains("TLS"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "the password is redacted: {text}");
}
