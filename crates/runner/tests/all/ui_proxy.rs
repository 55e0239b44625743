//! `cap:ui.proxy`: `call-route` reaches `UI_PROXY_BASE_URL` +
//! `/{extension}` + route with the tenant, extension and request id, maps
//! the host's answers to the WIT's typed errors, and never leaves the
//! extension's prefix (P-01).

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn call_route_forwards_and_maps_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/com.test.ext/api/echo",
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
            "/com.test.ext/api/forbidden",
            axum::routing::post(|| async { StatusCode::FORBIDDEN }),
        )
        .route(
            "/com.test.ext/api/bad",
            axum::routing::post(|| async { StatusCode::BAD_REQUEST }),
        );
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

/// P-01: a host API with an admin route beside the extension's prefix and
/// another extension's routes. Every traversal form is `bad-request` and
/// never reaches the host; a plain route lands under
/// `{base path}/{extension}/`.
#[tokio::test]
async fn p01_routes_cannot_leave_the_extensions_prefix() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |uri: http::Uri| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(uri.to_string());
                if uri.path() == "/host/ui-proxy/com.test.ext/api/items" {
                    (StatusCode::OK, format!("items:{}", uri.query().unwrap_or("")))
                } else {
                    (StatusCode::OK, "SHOULD NOT BE REACHED".to_string())
                }
            }
        })
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = TestRunner::with_env(&[("UI_PROXY_BASE_URL", &format!("http://{addr}/host/ui-proxy"))]);
    let wasm = std::fs::read(ext_test_fixtures::component("proxy_probe")).unwrap();
    let digest = t.publish_dir(bundle_dir_with("proxy_probe", &wasm, &["cap:ui.proxy"]).path());
    let call = |route: &'static str| {
        let t = &t;
        async move {
            let mut env = envelope(&digest, "POST", "/");
            env["http"]["body_b64"] = json!(b64(json!({"route": route, "payload": "x"}).to_string().as_bytes()));
            let (status, _, body) = t.post(&env).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            guest_json(&body)
        }
    };

    assert_eq!(call("/api/items?limit=5").await, json!({"body": "items:limit=5"}));
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec!["/host/ui-proxy/com.test.ext/api/items?limit=5".to_string()]
    );
    for route in [
        "/%2e%2e/%2e%2e/admin",
        "/%2E%2E/other.ext/api",
        "/.%2e/admin",
        "/api/../../admin",
        "/api%2f..%2f..%2fadmin",
        "/api%2F..%2Fadmin",
        "/api%5c..%5cadmin",
        "/api\\..\\..\\admin",
        "/%252e%252e/admin",
        "http://127.0.0.1:1/admin",
        "//127.0.0.1:1/admin",
        "/http://127.0.0.1:1/admin",
        "/api//items",
        "/a%00b",
        "api/items",
    ] {
        assert_eq!(call(route).await, json!({"error": "bad-request"}), "{route}");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a refused route reached the host: {:?}",
        seen.lock().unwrap()
    );
}
