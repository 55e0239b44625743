//! `cap:ui.proxy`: `call-route` reaches `UI_PROXY_BASE_URL` with the
//! tenant, extension and request id, and maps the host's answers to the
//! WIT's typed errors.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn call_route_forwards_and_maps_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/api/echo",
            axum::routing::post(|headers: http::HeaderMap, body: String| async move {
                let tenant = headers
                    .get("x-alga-tenant")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                format!("{tenant}:{body}")
            }),
        )
        .route(
            "/api/forbidden",
            axum::routing::post(|| async { StatusCode::FORBIDDEN }),
        )
        .route("/api/bad", axum::routing::post(|| async { StatusCode::BAD_REQUEST }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = TestRunner::with_env(&[("UI_PROXY_BASE_URL", &format!("http://{addr}"))]);
    let wasm = std::fs::read(ext_test_fixtures::component("proxy_probe")).unwrap();
    let granted = t.publish_dir(bundle_dir_with("proxy_probe", &wasm, &["cap:ui.proxy"]).path());
    let call = |digest: ext_bundle::Digest, route: &'static str| {
        let t = &t;
        async move {
            let mut env = envelope(&digest, "POST", "/");
            env["http"]["body_b64"] = json!(b64(json!({"route": route, "payload": "ping"}).to_string().as_bytes()));
            let (status, _, body) = t.post(&env).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            guest_json(&body)
        }
    };
    assert_eq!(call(granted, "/api/echo").await, json!({"body": "tenant-a:ping"}));
    assert_eq!(call(granted, "/api/missing").await["error"], "route-not-found");
    assert_eq!(call(granted, "/api/forbidden").await["error"], "denied");
    assert_eq!(call(granted, "/api/bad").await["error"], "bad-request");
    assert_eq!(call(granted, "/api/../admin").await["error"], "bad-request");

    let undeclared = t.publish_dir(bundle_dir_with("proxy_probe", &wasm, &["cap:log.emit"]).path());
    let out: Value = call(undeclared, "/api/echo").await;
    assert_eq!(out["error"], "denied");
}
