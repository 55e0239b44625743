//! Standard `wasi:http/proxy` components (the `wasi_http_proxy` fixture,
//! written with wstd): a manifest endpoint with `"world": "wasi:http/proxy"`
//! gets the envelope as an incoming request and answers through
//! `/v1/execute` under the same limits and header policy as any extension;
//! its outbound `wasi:http` requests go through the egress policy
//! (S-01: private addresses refused), and the world must match the component.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Publish the proxy fixture with one catch-all-style endpoint per route,
/// all declared `wasi:http/proxy`.
fn proxy_bundle(t: &TestRunner, capabilities: &[&str], allowed_hosts: &[String], world: &str) -> ext_bundle::Digest {
    let wasm = std::fs::read(ext_test_fixtures::component("wasi_http_proxy")).unwrap();
    let dir = bundle_dir_with("wasi_http_proxy", &wasm, capabilities);
    let path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let routes = [
        ("GET", "/hello"),
        ("POST", "/echo"),
        ("GET", "/fetch"),
        ("GET", "/big"),
        ("GET", "/spin"),
    ];
    manifest["api"] = json!({
        "endpoints": routes
            .iter()
            .map(|(method, path)| json!({"method": method, "path": path, "handler": "dist/main.wasm", "world": world}))
            .collect::<Vec<_>>()
    });
    manifest["network"] = json!({"allowed_hosts": allowed_hosts});
    std::fs::write(&path, manifest.to_string()).unwrap();
    t.publish_dir(dir.path())
}

fn body_text(body: &Value) -> String {
    String::from_utf8(unb64(body["body_b64"].as_str().unwrap_or_default())).unwrap()
}

#[tokio::test]
async fn proxy_component_answers_through_execute_with_the_header_policy() {
    let t = TestRunner::new();
    let digest = proxy_bundle(&t, &["cap:log.emit"], &[], "wasi:http/proxy");

    let mut env = envelope(&digest, "GET", "/hello");
    env["http"]["query"] = json!({"name": "ada"});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], 200, "{body}");
    assert_eq!(body_text(&body), "hello from wasi:http: GET /hello?name=ada localhost");
    assert_eq!(body["headers"]["x-ext-world"], "proxy");
    assert_eq!(body["headers"]["content-type"], "text/plain; charset=utf-8");
    // A-15: the same response header allowlist as for alga:extension guests.
    assert!(body["headers"].get("set-cookie").is_none(), "{body}");

    let mut env = envelope(&digest, "POST", "/echo");
    env["http"]["headers"] = json!({"content-type": "application/json"});
    env["http"]["body_b64"] = json!(b64(br#"{"round":"trip"}"#));
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body_text(&body), r#"{"round":"trip"}"#);
    assert_eq!(body["headers"]["content-type"], "application/json");
}

#[tokio::test]
async fn proxy_component_runs_under_the_same_limits() {
    let t = TestRunner::with_env(&[("RUNNER_MAX_RESPONSE_BYTES", "65536")]);
    let digest = proxy_bundle(&t, &["cap:log.emit"], &[], "wasi:http/proxy");

    // A-01: an endless loop is stopped by the deadline.
    let mut env = envelope(&digest, "GET", "/spin");
    env["limits"] = json!({"timeout_ms": 200});
    let (status, _, body) = t.post(&env).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(error_code(&body), "execution_timeout");

    // A-14: a body over the cap is refused, not truncated; at the cap it passes.
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/big?65537")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "response_too_large");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/big?65536")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(unb64(body["body_b64"].as_str().unwrap()).len(), 65536);

    // The runner still works after both.
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/hello")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Outbound wasi:http goes through ext-egress: allowed when declared,
/// granted and on the operator's list (with loopback allowed explicitly);
/// refused otherwise, and S-01 private addresses are refused by default.
#[tokio::test]
async fn s01_outbound_wasi_http_goes_through_the_egress_policy() {
    let addr = crate::egress::upstream().await;
    let origin = format!("http://127.0.0.1:{}", addr.port());
    let url = format!("{origin}/hello");
    let fetch = |digest: &ext_bundle::Digest| envelope(digest, "GET", &format!("/fetch?{url}"));

    let t = TestRunner::with_env(&[
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
    ]);
    let digest = proxy_bundle(
        &t,
        &["cap:http.fetch"],
        std::slice::from_ref(&origin),
        "wasi:http/proxy",
    );
    let (status, _, body) = t.post(&fetch(&digest)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body_text(&body), "upstream 200: hi from upstream");
    assert!(body["report"]["egress_bytes"].as_u64().unwrap_or(0) > 0, "{body}");

    // Without cap:http.fetch: denied before any policy check.
    let no_cap = proxy_bundle(&t, &["cap:log.emit"], std::slice::from_ref(&origin), "wasi:http/proxy");
    let (_, _, body) = t.post(&fetch(&no_cap)).await;
    assert_eq!(body["status"], 502, "{body}");
    assert!(body_text(&body).contains("HttpRequestDenied"), "{}", body_text(&body));

    // Not declared by the manifest.
    let undeclared = proxy_bundle(
        &t,
        &["cap:http.fetch"],
        &["https://api.example.com".to_string()],
        "wasi:http/proxy",
    );
    let (_, _, body) = t.post(&fetch(&undeclared)).await;
    assert!(body_text(&body).contains("HttpRequestDenied"), "{}", body_text(&body));

    // S-01: loopback declared and on the operator's list, but no CIDR allowance.
    let t = TestRunner::with_env(&[("EXT_EGRESS_ALLOWLIST", origin.as_str())]);
    let digest = proxy_bundle(
        &t,
        &["cap:http.fetch"],
        std::slice::from_ref(&origin),
        "wasi:http/proxy",
    );
    let (_, _, body) = t.post(&fetch(&digest)).await;
    assert_eq!(body["status"], 502, "{body}");
    assert!(
        body_text(&body).contains("DestinationIpProhibited"),
        "{}",
        body_text(&body)
    );

    // S-01: the metadata address, declared and allowed by name, is refused.
    let metadata = "http://169.254.169.254".to_string();
    let t = TestRunner::with_env(&[("EXT_EGRESS_ALLOWLIST", metadata.as_str())]);
    let digest = proxy_bundle(
        &t,
        &["cap:http.fetch"],
        std::slice::from_ref(&metadata),
        "wasi:http/proxy",
    );
    let env = envelope(&digest, "GET", "/fetch?http://169.254.169.254/latest/meta-data/");
    let (_, _, body) = t.post(&env).await;
    assert!(
        body_text(&body).contains("DestinationIpProhibited"),
        "{}",
        body_text(&body)
    );
}

/// The manifest's world must be the component's: a proxy component run as
/// `alga:extension/runner` (the default) and a runner component declared as
/// `wasi:http/proxy` are both refused at load with `component_invalid`.
#[tokio::test]
async fn world_mismatch_is_refused_at_load() {
    let t = TestRunner::new();
    let digest = proxy_bundle(&t, &["cap:log.emit"], &[], "alga:extension/runner");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/hello")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "unsupported_import", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("wasi:http/"),
        "{body}"
    );

    let wasm = std::fs::read(ext_test_fixtures::component("echo")).unwrap();
    let dir = bundle_dir_for("echo_as_proxy", &wasm);
    let path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["api"] =
        json!({"endpoints": [{"method": "GET", "path": "/", "handler": "dist/main.wasm", "world": "wasi:http/proxy"}]});
    std::fs::write(&path, manifest.to_string()).unwrap();
    let digest = t.publish_dir(dir.path());
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "component_invalid", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wasi:http/incoming-handler"),
        "{body}"
    );
}

/// `pack` (and so `dev`) catches the same mismatch before anything is
/// published, naming the component, the declared world and its exports.
#[test]
fn pack_names_a_world_the_component_does_not_implement() {
    let proxy = std::fs::read(ext_test_fixtures::component("wasi_http_proxy")).unwrap();
    let dir = bundle_dir_for("wasi_http_proxy", &proxy);
    let set_endpoints = |world: Option<&str>| {
        let path = dir.path().join("manifest.json");
        let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mut endpoint = json!({"method": "GET", "path": "/", "handler": "dist/main"});
        if let Some(world) = world {
            endpoint["world"] = json!(world);
        }
        manifest["api"] = json!({ "endpoints": [endpoint] });
        std::fs::write(&path, manifest.to_string()).unwrap();
    };

    set_endpoints(None);
    let error = format!("{:#}", ext_runner::cli::pack_dir(dir.path()).unwrap_err());
    assert!(
        error.contains("dist/main.wasm: its endpoints declare world `alga:extension/runner`")
            && error.contains("wasi:http/incoming-handler@0.2")
            && error.contains("\"world\": \"wasi:http/proxy\""),
        "{error}"
    );
    set_endpoints(Some("wasi:http/proxy"));
    ext_runner::cli::pack_dir(dir.path()).unwrap();

    let echo = std::fs::read(ext_test_fixtures::component("echo")).unwrap();
    std::fs::write(dir.path().join("dist/main.wasm"), echo).unwrap();
    let error = format!("{:#}", ext_runner::cli::pack_dir(dir.path()).unwrap_err());
    assert!(
        error.contains("declare world `wasi:http/proxy`") && error.contains("exports handler"),
        "{error}"
    );
}
