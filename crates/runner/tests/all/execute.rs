//! The execute contract end to end: hello, request mapping, context, logs,
//! capabilities, auth, endpoint resolution and malformed envelopes.

use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn hello_example_answers_json() {
    let t = TestRunner::new();
    let digest = t.publish_dir(&hello_dir());
    let mut env = envelope(&digest, "GET", "/hello");
    env["context"]["extension_id"] = "com.example.hello".into();
    let (status, headers, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], 200);
    let rid = env["context"]["request_id"].as_str().unwrap();
    assert_eq!(headers["x-request-id"], rid);
    assert_eq!(headers["x-ext-request-id"], rid);
    assert_eq!(body["headers"]["x-ext-request-id"], rid);
    assert!(
        body["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/json")
    );
    let guest = guest_json(&body);
    assert_eq!(guest["message"], "Hello, world!");
    assert_eq!(guest["tenant"], "tenant-a");
    assert_eq!(guest["extension"], "com.example.hello");

    // `:param` endpoint and the POST echo endpoint of the example.
    let (_, _, body) = t.post(&envelope(&digest, "GET", "/hello/Ada")).await;
    assert_eq!(guest_json(&body)["message"], "Hello, Ada!");
    let mut env = envelope(&digest, "POST", "/echo");
    env["http"]["body_b64"] = b64(br#"{"x":1}"#).into();
    env["http"]["headers"] = json!({"content-type": "application/json"});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(guest_json(&body)["x"], 1);
}

#[tokio::test]
async fn request_is_mapped_for_the_guest() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let mut env = envelope(&digest, "post", "/items/42");
    env["http"]["query"] = json!({"b": "2", "a": ["1", "x y"]});
    env["http"]["headers"] = json!({"X-Custom": "v", "content-type": "text/plain"});
    env["http"]["body_b64"] = b64(b"hello body").into();
    let (status, headers, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let guest = guest_json(&body);
    assert_eq!(guest["method"], "POST");
    assert_eq!(guest["url"], "/items/42?b=2&a=1&a=x+y");
    assert_eq!(
        guest["headers"],
        json!([["x-custom", "v"], ["content-type", "text/plain"]])
    );
    assert_eq!(unb64(guest["body_b64"].as_str().unwrap()), b"hello body");
    assert_eq!(body["headers"]["x-ext-echo"], "1");
    assert_eq!(headers["cache-control"], "no-store");

    // Absent body is `none`, empty body is `some([])`.
    let (_, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(guest_json(&body)["body_b64"], Value::Null);
    let mut env = envelope(&digest, "GET", "/");
    env["http"]["body_b64"] = "".into();
    let (_, _, body) = t.post(&env).await;
    assert_eq!(guest_json(&body)["body_len"], 0);
    assert_eq!(guest_json(&body)["body_b64"], "");
}

#[tokio::test]
async fn content_hash_without_prefix_is_accepted() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let mut env = envelope(&digest, "GET", "/");
    env["context"]["content_hash"] = digest.hex().into();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn context_and_user_reach_the_guest() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("context_info");
    let mut env = envelope(&digest, "GET", "/");
    env["context"]["install_id"] = "inst-1".into();
    env["context"]["version_id"] = "ver-1".into();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let guest = guest_json(&body);
    let ctx = &guest["context"];
    assert_eq!(ctx["tenant_id"], "tenant-a");
    assert_eq!(ctx["extension_id"], "com.test.ext");
    assert_eq!(ctx["request_id"], env["context"]["request_id"]);
    assert_eq!(ctx["install_id"], "inst-1");
    assert_eq!(ctx["version_id"], "ver-1");
    assert_eq!(guest["user"], "not-available");
    assert_eq!(guest["user_v2"], "not-available");

    env["user"] = json!({
        "user_id": "u-1", "user_email": "a@example.com", "user_name": "Ada", "user_type": "internal",
        "company_name": "Acme", "client_id": "c-9", "additional_fields": {"zeta": "z", "alpha": "a"}
    });
    let (_, _, body) = t.post(&env).await;
    let guest = guest_json(&body);
    assert_eq!(guest["user"]["user_id"], "u-1");
    assert_eq!(guest["user"]["client_name"], "Acme");
    assert_eq!(guest["user"]["tenant_id"], "tenant-a");
    assert_eq!(guest["user_v2"]["client_id"], "c-9");
    assert_eq!(
        guest["user_v2"]["additional_fields"],
        json!([["alpha", "a"], ["zeta", "z"]])
    );
}

#[tokio::test]
async fn ungranted_capabilities_answer_typed_errors() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("caps_denied");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let guest = guest_json(&body);
    assert_eq!(guest["secrets_get"], "denied");
    assert_eq!(guest["secrets_list_keys"], 0);
    assert_eq!(guest["http_fetch"], "not-allowed");
    assert_eq!(guest["storage_get"], "denied");
    assert_eq!(guest["storage_put"], "denied");
    assert_eq!(guest["storage_delete"], "denied");
    assert_eq!(guest["storage_list"], "denied");
    assert_eq!(guest["ui_proxy"], "denied");
}

#[tokio::test]
async fn wasi_context_is_closed() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("wasi_env");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let guest = guest_json(&body);
    assert_eq!(guest["env_count"], 0, "{guest}");
    assert_eq!(guest["args_count"], 0, "{guest}");
    assert_eq!(guest["read_dir_root_failed"], true, "{guest}");
    assert_eq!(guest["read_passwd_failed"], true, "{guest}");
    assert_eq!(guest["stdin_bytes"], 0, "{guest}");
    assert_eq!(guest["clock_after_2020"], true, "{guest}");
}

/// Captures this thread's tracing output as JSON lines.
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// The process-wide JSON log capture. A global subscriber (rather than a
/// scoped one) because tracing caches per-callsite interest across threads:
/// a scoped subscriber can miss events first seen by parallel tests.
pub(crate) fn capture() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in tests");
        capture
    })
}

#[tokio::test]
async fn guest_logs_and_stdio_carry_the_request_fields() {
    let capture = capture();
    let t = TestRunner::new();
    let digest = t.publish_fixture("log_emit");
    let env = envelope(&digest, "GET", "/");
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let rid = env["context"]["request_id"].as_str().unwrap();
    // Other tests log into the same capture: keep this request's lines.
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["request_id"] == rid)
        .collect();
    for (message, level) in [
        ("info-from-guest", "INFO"),
        ("warn-from-guest", "WARN"),
        ("error-from-guest", "ERROR"),
        ("stdout-from-guest", "INFO"),
        ("stderr-from-guest", "INFO"),
    ] {
        let line = lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no log line {message:?} in:\n{text}"));
        assert_eq!(line["level"], level, "{line}");
        assert_eq!(line["request_id"], rid, "{line}");
        assert_eq!(line["tenant"], "tenant-a", "{line}");
        assert_eq!(line["extension"], "com.test.ext", "{line}");
    }
    assert!(lines.iter().all(|l| !l.to_string().contains("panicked")), "{text}");
}

#[tokio::test]
async fn service_token_is_required() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let body = envelope(&digest, "GET", "/").to_string().into_bytes();
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong-token-wrong-token")],
        vec![("authorization", "Basic dGVzdA==")],
        vec![("x-runner-service-token", "test-service-token-012345678")],
        vec![("authorization", "Bearer ")],
    ] {
        let (status, _, json) = t.post_raw(body.clone(), &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(error_code(&json), "unauthorized");
        assert_eq!(json["status"], 401);
        assert!(json["error"]["request_id"].as_str().is_some_and(|id| !id.is_empty()));
    }
    let (status, _, _) = t.post_raw(body.clone(), &[("x-runner-service-token", TOKEN)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = t.post_raw(body, &[("authorization", &format!("Bearer {TOKEN}"))]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn several_tokens_rotate() {
    let second = "second-token-abcdefghijkl";
    let t = TestRunner::with_env(&[("RUNNER_SERVICE_TOKEN", &format!("{TOKEN},{second}"))]);
    let digest = t.publish_fixture("echo");
    let body = envelope(&digest, "GET", "/").to_string().into_bytes();
    let (status, _, _) = t
        .post_raw(body, &[("authorization", &format!("Bearer {second}"))])
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_endpoint_is_404() {
    let t = TestRunner::new();
    let digest = t.publish_dir(&hello_dir());
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "endpoint_not_found");
    assert_eq!(body["status"], 404);
    let (status, _, body) = t.post(&envelope(&digest, "DELETE", "/hello")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // An explicit endpoint naming a component the bundle lacks.
    let mut env = envelope(&digest, "GET", "/hello");
    env["endpoint"] = "dist/missing".into();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // ... and one naming the real handler works, with or without `.wasm`.
    env["endpoint"] = "dist/main".into();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn malformed_envelope_is_400_naming_the_field() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let mut env = envelope(&digest, "GET", "/");
    env["context"]["content_hash"] = "sha256:nothex".into();
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_envelope");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context.content_hash"),
        "{body}"
    );

    let mut env = envelope(&digest, "GET", "/");
    env["http"].as_object_mut().unwrap().remove("path");
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("path"), "{body}");

    let (status, _, body) = t
        .post_raw(
            b"{\"context\": ".to_vec(),
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_envelope");
}

#[tokio::test]
async fn unknown_routes_are_json_404() {
    let t = TestRunner::new();
    let response = tower::ServiceExt::oneshot(
        ext_runner::server::router(t.state.clone()),
        http::Request::get("/nope").body(axum::body::Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let response = tower::ServiceExt::oneshot(
        ext_runner::server::router(t.state.clone()),
        http::Request::get("/v1/execute")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}
