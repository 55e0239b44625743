//! `/ext-ui/{extensionId}/{content_hash}/{*path}`: exact headers, 304, 206,
//! HEAD, SPA fallback, 404s (missing, traversal B-06, wrong type, another
//! extension's hash), 400 for a wrong hash form, 413, CSP, precompressed
//! siblings, the install-check hook and the public listener split.

use std::collections::HashMap;

use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt as _;

use crate::support::*;

const APP_JS: &str = "console.log('hello from the extension');\n";

/// A bundle named `com.test.ui` with a small UI.
fn ui_bundle(t: &TestRunner) -> ext_bundle::Digest {
    let dir = bundle_dir_with("ui", &std::fs::read(ext_test_fixtures::component("echo")).unwrap(), &[]);
    let ui = dir.path().join("ui");
    std::fs::create_dir_all(ui.join("assets")).unwrap();
    std::fs::write(
        ui.join("index.html"),
        "<!doctype html><title>x</title><script src=\"assets/app.js\"></script>",
    )
    .unwrap();
    std::fs::write(ui.join("assets/app.js"), APP_JS).unwrap();
    std::fs::write(ui.join("assets/app.js.gz"), b"\x1f\x8bprecompressed").unwrap();
    std::fs::write(ui.join("assets/data.json"), "{\"a\":1}").unwrap();
    std::fs::write(ui.join("assets/big.txt"), "x".repeat(64 * 1024)).unwrap();
    std::fs::write(ui.join("assets/tool.sh"), "#!/bin/sh").unwrap();
    t.publish_dir(dir.path())
}

async fn get(
    app: axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HashMap<String, String>, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn base(digest: &ext_bundle::Digest) -> String {
    format!("/ext-ui/com.test.ui/{}", digest.to_string().replace(':', "%3A"))
}

#[tokio::test]
async fn assets_are_served_immutable_with_exact_headers() {
    let t = TestRunner::new();
    let digest = ui_bundle(&t);
    let app = || ext_runner::server::router(t.state.clone());
    let (status, headers, body) = get(app(), "GET", &format!("{}/assets/app.js", base(&digest)), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, APP_JS.as_bytes());
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(headers["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["accept-ranges"], "bytes");
    let etag = headers["etag"].clone();
    assert_eq!(etag, format!("\"{}\"", ext_bundle::Digest::of(APP_JS.as_bytes()).hex()));
    assert!(!headers.contains_key("content-security-policy"));

    // 304 on a matching If-None-Match.
    let (status, headers, body) = get(
        app(),
        "GET",
        &format!("{}/assets/app.js", base(&digest)),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag);

    // 206 for a byte range, 416 past the end.
    let (status, headers, body) = get(
        app(),
        "GET",
        &format!("{}/assets/app.js", base(&digest)),
        &[("range", "bytes=0-6")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, b"console");
    assert_eq!(headers["content-range"], format!("bytes 0-6/{}", APP_JS.len()));
    let (status, _, _) = get(
        app(),
        "GET",
        &format!("{}/assets/app.js", base(&digest)),
        &[("range", "bytes=9999-")],
    )
    .await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);

    // HEAD: headers, no body.
    let (status, headers, body) = get(app(), "HEAD", &format!("{}/assets/app.js", base(&digest)), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(headers["content-length"], APP_JS.len().to_string());

    // Precompressed sibling when accepted.
    let (status, headers, body) = get(
        app(),
        "GET",
        &format!("{}/assets/app.js", base(&digest)),
        &[("accept-encoding", "br, gzip")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(body, b"\x1f\x8bprecompressed");
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
}

#[tokio::test]
async fn html_gets_a_csp_and_client_routes_fall_back_to_index() {
    let t = TestRunner::with_env(&[("EXT_UI_FRAME_ANCESTORS", "https://host.example")]);
    let digest = ui_bundle(&t);
    let app = || ext_runner::server::router(t.state.clone());
    for path in [
        "/",
        "/index.html",
        "/settings/profile",
        "/index.html?path=/x&extensionId=com.test.ui",
    ] {
        let (status, headers, body) = get(app(), "GET", &format!("{}{path}", base(&digest)), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(String::from_utf8_lossy(&body).starts_with("<!doctype html>"), "{path}");
        let csp = &headers["content-security-policy"];
        assert!(
            csp.contains("default-src 'self'") && csp.ends_with("frame-ancestors https://host.example"),
            "{csp}"
        );
    }
    // A missing asset with an extension is a 404, never index.html.
    let (status, headers, body) = get(app(), "GET", &format!("{}/assets/missing.js", base(&digest)), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["cache-control"], "no-store");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "not_found");
}

/// B-06: traversal in any encoding, disallowed types and other extensions'
/// hashes are 404 without touching the filesystem; a malformed hash is 400.
#[tokio::test]
async fn b06_traversal_types_and_foreign_hashes_are_refused() {
    let t = TestRunner::new();
    let digest = ui_bundle(&t);
    let app = || ext_runner::server::router(t.state.clone());
    for path in [
        "/../manifest.json",
        "/assets/../../manifest.json",
        "/%2e%2e/manifest.json",
        "/%252e%252e/manifest.json",
        "/..%5cmanifest.json",
        "/assets%2f..%2f..%2fmanifest.json",
        "/%00index.html",
        "//etc/passwd.txt",
        "/assets/tool.sh",
        "/../dist/main.wasm",
    ] {
        let (status, _, _) = get(app(), "GET", &format!("{}{path}", base(&digest)), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // Wrong hash forms.
    for hash in [digest.hex(), "sha256:xyz".to_string(), "md5:0123".to_string()] {
        let (status, _, _) = get(app(), "GET", &format!("/ext-ui/com.test.ui/{hash}/index.html"), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{hash}");
    }
    // The hash of a bundle that belongs to another extension.
    let (status, _, _) = get(
        app(),
        "GET",
        &format!(
            "/ext-ui/com.test.other/{}/index.html",
            digest.to_string().replace(':', "%3A")
        ),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oversized_asset_is_413() {
    let t = TestRunner::with_env(&[("EXT_STATIC_MAX_FILE_BYTES", "32768")]);
    let digest = ui_bundle(&t);
    let app = ext_runner::server::router(t.state.clone());
    let (status, headers, _) = get(app, "GET", &format!("{}/assets/big.txt", base(&digest)), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["cache-control"], "no-store");
}

/// RUNNER_PUBLIC_LISTEN's router serves UI assets and never `/v1/execute`.
#[tokio::test]
async fn public_listener_does_not_route_execute() {
    let t = TestRunner::new();
    let digest = ui_bundle(&t);
    let public = || ext_runner::server::public_router(t.state.clone());
    let (status, _, _) = get(public(), "GET", &format!("{}/index.html", base(&digest)), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let response = public()
        .oneshot(
            Request::post("/v1/execute")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::from(envelope(&digest, "GET", "/").to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// RUNNER_UI_VALIDATE_URL: installed → served; not installed → 404;
/// checker down → 503, not cached as a denial.
#[tokio::test]
async fn install_check_hook_decides_and_is_not_poisoned_by_outages() {
    use std::sync::atomic::{AtomicU16, Ordering};
    let answer = std::sync::Arc::new(AtomicU16::new(200));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = {
        let (answer, seen) = (answer.clone(), seen.clone());
        axum::Router::new().route(
            "/installed",
            axum::routing::get(move |uri: http::Uri| {
                let (answer, seen) = (answer.clone(), seen.clone());
                async move {
                    seen.lock().unwrap().push(uri.query().unwrap_or("").to_string());
                    StatusCode::from_u16(answer.load(Ordering::SeqCst)).unwrap()
                }
            }),
        )
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}/installed");

    let t = TestRunner::with_env(&[("RUNNER_UI_VALIDATE_URL", &url)]);
    let digest = ui_bundle(&t);
    let router = || ext_runner::server::router(t.state.clone());
    let path = |tenant: &str| format!("{}/index.html?tenant={tenant}", base(&digest));

    answer.store(503, Ordering::SeqCst);
    let (status, _, _) = get(router(), "GET", &path("t1"), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    answer.store(200, Ordering::SeqCst);
    let (status, _, _) = get(router(), "GET", &path("t1"), &[]).await;
    assert_eq!(status, StatusCode::OK, "the outage was not cached");
    answer.store(404, Ordering::SeqCst);
    let (status, _, _) = get(router(), "GET", &path("t2"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(router(), "GET", &path("t1"), &[]).await;
    assert_eq!(status, StatusCode::OK, "t1's positive answer is cached briefly");
    let queries = seen.lock().unwrap().clone();
    assert!(
        queries
            .iter()
            .any(|q| q.contains("tenant=t2") && q.contains("extension=com.test.ui")),
        "{queries:?}"
    );
}
