//! Operations: the execute `report`, `/metrics` names and labels, and
//! `/readyz` (draining, store reachability).

use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt as _;

use crate::support::*;

#[tokio::test]
async fn execute_response_carries_a_report() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("log_emit");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["report"];
    assert!(report["wall_ms"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["fuel_used"].as_u64().unwrap() > 0, "{report}");
    assert!(report["peak_memory_bytes"].as_u64().unwrap() >= 65_536, "{report}");
    assert!(report["host_calls"]["logging"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(report["logs_truncated"], false);
    assert!(report.get("limit_hit").is_none(), "{report}");
}

/// A failed execution's error carries its report, so `limit_hit` is seen:
/// the deadline (504) and the memory limit (500).
#[tokio::test]
async fn failed_execution_carries_its_report_with_the_limit_hit() {
    let t = TestRunner::with_env(&[("RUNNER_MAX_TIMEOUT_MS", "300")]);
    let looping = t.publish_fixture("limits_infinite_loop");
    let (status, _, body) = t.post(&envelope(&looping, "GET", "/")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "execution_timeout", "{body}");
    assert_eq!(body["report"]["limit_hit"], "timeout", "{body}");
    assert!(body["report"]["wall_ms"].as_f64().unwrap() >= 250.0, "{body}");

    let hog = t.publish_fixture("limits_memory_hog");
    let mut env = envelope(&hog, "GET", "/");
    env["limits"] = serde_json::json!({"memory_mb": 16});
    let (_, _, body) = t.post(&env).await;
    assert_eq!(body["error"]["code"], "memory_limit_exceeded", "{body}");
    assert_eq!(body["report"]["limit_hit"], "memory", "{body}");

    // A request refused before any guest ran has no report.
    let absent = ext_bundle::Digest::of(b"absent bundle");
    let (_, _, body) = t.post(&envelope(&absent, "GET", "/")).await;
    assert_eq!(body["error"]["code"], "bundle_not_found", "{body}");
    assert!(body.get("report").is_none(), "{body}");
}

/// M-01: requests for bundles that never resolve are not labelled by the
/// ids their caller claimed: a thousand random tenants add no series.
#[tokio::test]
async fn m01_unresolved_requests_are_not_labelled_by_claimed_ids() {
    let t = TestRunner::new();
    let absent = ext_bundle::Digest::of(b"absent bundle");
    for i in 0..1_000 {
        let mut env = envelope(&absent, "GET", "/");
        env["context"]["tenant_id"] = format!("claimed-tenant-{i}").into();
        let (status, _, _) = t.post(&env).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    let (_, text) = get_text(&t, "/metrics").await;
    assert!(!text.contains("claimed-tenant-"), "claimed ids became labels");
    assert!(
        text.contains(
            "ext_runner_invocations_total{tenant=\"unresolved\",extension=\"unresolved\",outcome=\"bundle_not_found\"} 1000"
        ),
        "{text}"
    );
}

/// M-01: with `RUNNER_METRICS_TOKEN` set, `/metrics` answers 401 without it
/// (and with the service token) and 200 with it.
#[tokio::test]
async fn m01_metrics_token_guards_the_scrape() {
    let metrics_token = "metrics-scrape-token-0123";
    let t = TestRunner::with_env(&[("RUNNER_METRICS_TOKEN", metrics_token)]);
    let scrape = |auth: Option<String>| {
        let mut request = Request::get("/metrics");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        ext_runner::server::router(t.state.clone()).oneshot(request.body(Body::empty()).unwrap())
    };
    let status = |r: http::Response<Body>| r.status();
    assert_eq!(status(scrape(None).await.unwrap()), StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(scrape(Some(format!("Bearer {TOKEN}"))).await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(scrape(Some(format!("Bearer {metrics_token}"))).await.unwrap()),
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_expose_the_listed_series_with_labels() {
    let t = TestRunner::new();
    let ok = t.publish_fixture("echo");
    let trap = t.publish_fixture("trap");
    for digest in [&ok, &ok, &trap] {
        t.post(&envelope(digest, "GET", "/")).await;
    }
    let ui = ext_bundle::Digest::of(b"absent");
    get_text(&t, &format!("/ext-ui/com.test.echo/{ui}/index.html")).await;
    let (status, text) = get_text(&t, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "ext_runner_invocations_total{tenant=\"tenant-a\",extension=\"com.test.ext\",outcome=\"ok\"} 2",
        "ext_runner_invocations_total{tenant=\"tenant-a\",extension=\"com.test.ext\",outcome=\"extension_trap\"} 1",
        "ext_runner_errors_total{code=\"extension_trap\"} 1",
        "ext_runner_invocation_duration_seconds_count{tenant=\"tenant-a\",extension=\"com.test.ext\"} 3",
        "ext_runner_guest_peak_memory_bytes_bucket{le=\"+Inf\",tenant=\"tenant-a\",extension=\"com.test.ext\"} 3",
        "ext_runner_compiles 2",
        // Two bundles, and one attempt for the absent UI hash.
        "ext_runner_bundle_fetches 3",
        "ext_runner_bundle_cache_hits 1",
        "ext_runner_executions_in_flight 0",
        "ext_runner_ui_requests_total{status=\"404\"} 1",
        // OpenMetrics: a counter's family is named without `_total`.
        "# TYPE ext_runner_fuel_consumed counter",
        "# TYPE ext_runner_invocation_duration_seconds histogram",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    let response = ext_runner::server::router(t.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
}

#[tokio::test]
async fn readyz_reports_store_and_draining() {
    let t = TestRunner::new();
    let (status, body) = get_text(&t, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["cache"]["ok"], true);
    assert_eq!(json["bundle_store"]["ok"], true);
    t.runner.start_draining();
    let (status, body) = get_text(&t, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("\"draining\":true"), "{body}");

    // A store outage degrades but does not fail readiness (cached bundles
    // keep serving, F-01).
    let down = TestRunner::with_env(&[("BUNDLE_STORAGE_URL", "http://127.0.0.1:9/bundles")]);
    let (status, body) = get_text(&down, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"degraded\":true"), "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["bundle_store"]["ok"], false, "{body}");
    // The reason is logged, never shown to whoever reaches the probe.
    assert!(json["bundle_store"].get("error").is_none(), "{body}");
    assert!(!body.contains("127.0.0.1:9"), "{body}");
    let (status, _) = get_text(&down, "/healthz").await;
    assert_eq!(status, StatusCode::OK, "alive even when not ready");
}

/// F-05: SIGTERM to the real binary with an execution in flight, each step
/// asserted: readiness turns 503 at once while the listener keeps accepting
/// (and serving) new connections for `RUNNER_DRAIN_DELAY_MS`; then it stops
/// accepting while the in-flight execution still runs; that execution
/// completes with 200 and the process exits 0.
#[test]
fn f05_sigterm_drains_in_flight_executions() {
    use std::io::{Read as _, Write as _};
    use std::process::Command;
    use std::time::{Duration, Instant};

    let data = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(ext_test_fixtures::component("limits_sleep")).unwrap();
    let bundle = bundle_dir_for("limits_sleep", &wasm);
    let digest = store_signed(data.path(), &ext_bundle::pack_dir(bundle.path()).unwrap());
    let (mut child, port) = spawn_serve(
        data.path(),
        &["--shutdown-grace-ms", "10000"],
        &[("RUNNER_DRAIN_DELAY_MS", "1000")],
    );
    let exchange = move |raw: Vec<u8>| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.write_all(&raw)?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok::<_, std::io::Error>(response)
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes();
    // Warm the bundle and component so the drained request is pure execution.
    let mut env = envelope(&digest, "GET", "/");
    env["http"]["query"] = serde_json::json!({"ms": "10"});
    assert!(
        exchange(http_request(&env.to_string()))
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert!(exchange(get("/readyz")).unwrap().starts_with("HTTP/1.1 200"));

    env["http"]["query"] = serde_json::json!({"ms": "3000"});
    let slow = {
        let raw = http_request(&env.to_string());
        std::thread::spawn(move || exchange(raw))
    };
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let signalled = Instant::now();
    // Readiness flips at once (well inside the drain delay) ...
    let readiness = loop {
        let answer = exchange(get("/readyz")).unwrap();
        if !answer.starts_with("HTTP/1.1 200") || signalled.elapsed() > Duration::from_millis(500) {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        readiness.starts_with("HTTP/1.1 503"),
        "readiness after SIGTERM: {readiness}"
    );
    assert!(readiness.contains("\"draining\":true"), "{readiness}");
    // ... new connections are still accepted and served during the delay ...
    assert!(signalled.elapsed() < Duration::from_millis(800));
    let during = exchange(get("/healthz")).unwrap();
    assert!(
        during.starts_with("HTTP/1.1 200"),
        "served during the drain delay: {during}"
    );
    // ... then accepting stops while the in-flight execution still runs.
    std::thread::sleep(Duration::from_millis(1000).saturating_sub(signalled.elapsed()) + Duration::from_millis(400));
    assert!(!slow.is_finished(), "the slow execution should still be running");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "new connections must be refused after the drain delay"
    );
    let response = slow.join().unwrap().unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "in-flight execution was not drained: {response}"
    );
    assert!(
        response.contains("c2xlcHQ="),
        "the guest's body (base64 of `slept`): {response}"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

/// OTLP: with OTEL_EXPORTER_OTLP_ENDPOINT set, the real binary sends each
/// execute span to `<endpoint>/v1/traces` as OTLP/HTTP protobuf, joining the
/// caller's trace from `traceparent`; the last spans are flushed at SIGTERM.
#[test]
fn otlp_receiver_gets_the_execute_span() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use prost::Message as _;
    use std::io::{Read as _, Write as _};
    use std::sync::{Arc, Mutex};

    // A minimal OTLP/HTTP receiver: records the path, content type and body of each POST.
    type Post = (String, String, Vec<u8>);
    let received: Arc<Mutex<Vec<Post>>> = Arc::default();
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", receiver.local_addr().unwrap());
    {
        let received = received.clone();
        std::thread::spawn(move || {
            for stream in receiver.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                // Read headers, then exactly content-length bytes of body.
                let (head_end, length) = loop {
                    let n = stream.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break (None, 0);
                    }
                    data.extend_from_slice(&buf[..n]);
                    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..i]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0);
                        break (Some(i + 4), length);
                    }
                };
                let Some(start) = head_end else { continue };
                while data.len() < start + length {
                    let n = stream.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&data[..start]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let content_type = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-type")
                            .then(|| value.trim().to_string())
                    })
                    .unwrap_or_default();
                received
                    .lock()
                    .unwrap()
                    .push((path, content_type, data[start..].to_vec()));
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
    }

    let data = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(ext_test_fixtures::component("echo")).unwrap();
    let digest = store_signed(
        data.path(),
        &ext_bundle::pack_dir(bundle_dir_for("echo", &wasm).path()).unwrap(),
    );
    let (mut child, port) = spawn_serve(data.path(), &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let envelope = envelope(&digest, "GET", "/");
    let body = envelope.to_string();
    let request = format!(
        "POST /v1/execute HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());

    let received = received.lock().unwrap().clone();
    let exports: Vec<(&str, &str, ExportTraceServiceRequest)> = received
        .iter()
        .map(|(path, content_type, body)| {
            let export = ExportTraceServiceRequest::decode(body.as_slice())
                .unwrap_or_else(|e| panic!("not an OTLP protobuf body ({e}): {body:?}"));
            (path.as_str(), content_type.as_str(), export)
        })
        .collect();
    let (path, content_type, resource, span) = exports
        .iter()
        .flat_map(|(path, content_type, export)| {
            export.resource_spans.iter().flat_map(move |rs| {
                rs.scope_spans
                    .iter()
                    .flat_map(|ss| ss.spans.iter())
                    .map(move |span| (*path, *content_type, rs.resource.as_ref(), span))
            })
        })
        .find(|(_, _, _, span)| span.name == "execute")
        .unwrap_or_else(|| panic!("no execute span exported: {exports:?}"));
    assert_eq!(path, "/v1/traces");
    assert_eq!(content_type, "application/x-protobuf");
    assert_eq!(hex::encode(&span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(hex::encode(&span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(span.kind, SpanKind::Server as i32);
    let text = |attributes: &[KeyValue], key: &str| {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|value| match value {
                AnyValue::StringValue(s) => s.clone(),
                other => panic!("{key} is not a string: {other:?}"),
            })
    };
    let context = &envelope["context"];
    for (key, want) in [
        ("request_id", &context["request_id"]),
        ("tenant", &context["tenant_id"]),
        ("extension", &context["extension_id"]),
        ("content_hash", &context["content_hash"]),
    ] {
        assert_eq!(text(&span.attributes, key).as_deref(), want.as_str(), "{key}: {span:?}");
    }
    assert_eq!(text(&span.attributes, "tenant").as_deref(), Some("tenant-a"));
    // The inbound trace context is the parent, not an attribute; no version was sent.
    for key in ["trace_id", "parent_span_id", "version"] {
        assert_eq!(text(&span.attributes, key), None, "{key}: {span:?}");
    }
    let resource = &resource.expect("a resource").attributes;
    assert_eq!(text(resource, "service.name").as_deref(), Some("ext-runner"));
}

/// Answers about this moment are never cached: health, readiness, metrics
/// and execute answers carry `cache-control: no-store` (one layer sets it).
#[tokio::test]
async fn api_answers_are_never_cached() {
    let t = TestRunner::new();
    for uri in ["/healthz", "/readyz", "/metrics"] {
        let response = ext_runner::server::router(t.state.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store", "{uri}");
    }
    let digest = t.publish_fixture("echo");
    let (status, headers, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
}
