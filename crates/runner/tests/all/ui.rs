//! `/ext-ui/{extensionId}/{content_hash}/{*path}`: exact headers, 304, 206,
//! HEAD, SPA fallback, 404s (missing, traversal B-06, wrong type, another
//! extension's hash), 400 for a wrong hash form, 413, CSP, precompressed
//! siblings, the install-check hook and the public listener split; U-01
//! (install-check flooding), U-02 (large assets) and U-03 (CSP sandbox).

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
    std::fs::write(
        ui.join("assets/logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
    )
    .unwrap();
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

/// U-03: UI documents (HTML, and SVG, which can script too) carry a CSP
/// `sandbox` with scripts but without `allow-same-origin`, so opened
/// top-level on the runner's origin they still get an opaque origin; other
/// assets carry no CSP.
#[tokio::test]
async fn u03_ui_documents_are_served_with_a_csp_sandbox() {
    let t = TestRunner::with_env(&[("EXT_UI_FRAME_ANCESTORS", "https://host.example")]);
    let digest = ui_bundle(&t);
    let app = || ext_runner::server::router(t.state.clone());
    for path in ["/index.html", "/settings", "/assets/logo.svg"] {
        let (status, headers, _) = get(app(), "GET", &format!("{}{path}", base(&digest)), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let csp = &headers["content-security-policy"];
        let sandbox: Vec<&str> = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("sandbox"))
            .unwrap_or_else(|| panic!("{path}: no sandbox directive in {csp}"))
            .split_ascii_whitespace()
            .collect();
        assert_eq!(sandbox[0], "sandbox");
        assert!(sandbox.contains(&"allow-scripts"), "{csp}");
        assert!(
            !sandbox
                .iter()
                .any(|t| *t == "allow-same-origin" || t.starts_with("allow-top-navigation")),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors https://host.example"), "{csp}");
    }
    let (_, headers, _) = get(app(), "GET", &format!("{}/assets/app.js", base(&digest)), &[]).await;
    assert!(!headers.contains_key("content-security-policy"));

    // An operator's own CSP gets the sandbox too, and one that grants
    // allow-same-origin is refused at start-up.
    let own = TestRunner::with_env(&[("EXT_UI_CONTENT_SECURITY_POLICY", "default-src 'self'")]);
    let digest = ui_bundle(&own);
    let (_, headers, _) = get(
        ext_runner::server::router(own.state.clone()),
        "GET",
        &format!("{}/index.html", base(&digest)),
        &[],
    )
    .await;
    assert_eq!(
        headers["content-security-policy"],
        format!("default-src 'self'; {}", ext_runner::ui::UI_CSP_SANDBOX)
    );
    let dir = tempfile::tempdir().unwrap();
    let env: HashMap<String, String> = [
        ("RUNNER_DATA_DIR", dir.path().to_str().unwrap()),
        ("RUNNER_SERVICE_TOKEN", TOKEN),
        (
            "EXT_UI_CONTENT_SECURITY_POLICY",
            "default-src 'self'; sandbox allow-scripts allow-same-origin",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let err = ext_runner::config::Config::load(&env, &Default::default()).unwrap_err();
    assert!(
        err.to_string().contains("EXT_UI_CONTENT_SECURITY_POLICY") && err.to_string().contains("allow-same-origin"),
        "{err}"
    );
}

/// A loopback install-check service: answers 404 (not installed) to every
/// tenant, except `slow-*` tenants, answered 200 after 200 ms. Counts calls.
async fn install_checker() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let calls = std::sync::Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = {
        let calls = calls.clone();
        axum::Router::new().route(
            "/installed",
            axum::routing::get(
                move |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        if q.get("tenant").is_some_and(|t| t.starts_with("slow-")) {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            return StatusCode::OK;
                        }
                        StatusCode::NOT_FOUND
                    }
                },
            ),
        )
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/installed"), calls)
}

/// A random id of `len` URL-safe characters.
fn random_id(len: usize) -> String {
    let mut id = String::new();
    while id.len() < len {
        id.push_str(&uuid().replace('-', ""));
    }
    id.truncate(len);
    id
}

/// U-01: thousands of random, long (but allowed) tenants: every one is
/// checked and denied, yet the answer cache never holds more than its entry
/// and byte bounds; ids over the length cap are a JSON 400 without any
/// check; concurrent requests for one key make one check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u01_install_check_flood_keeps_the_cache_bounded() {
    use ext_runner::ui::{MAX_VALIDATION_CACHE_BYTES, MAX_VALIDATION_CACHE_ENTRIES};
    let (url, calls) = install_checker().await;
    let t = TestRunner::with_env(&[
        ("RUNNER_UI_VALIDATE_URL", &url),
        ("RUNNER_UI_VALIDATE_MAX_PER_SECOND", "1000000"),
    ]);
    let digest = ui_bundle(&t);
    let ui = &t.state.ui;
    const FLOOD: usize = 6_000;
    let mut max_entries = 0;
    for batch in 0..FLOOD / 100 {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let uri = format!("{}/index.html?tenant={}", base(&digest), random_id(250));
            let app = ext_runner::server::router(t.state.clone());
            requests.spawn(async move { get(app, "GET", &uri, &[]).await.0 });
        }
        while let Some(status) = requests.join_next().await {
            assert_eq!(status.unwrap(), StatusCode::NOT_FOUND, "batch {batch}");
        }
        assert!(ui.install_checks_cached() <= MAX_VALIDATION_CACHE_ENTRIES);
        assert!(ui.install_checks_cached_bytes() <= MAX_VALIDATION_CACHE_BYTES);
        max_entries = max_entries.max(ui.install_checks_cached());
    }
    assert_eq!(ui.install_checks_sent(), FLOOD as u64, "one check per new tenant");
    // ~380 bytes an entry: the byte bound is what holds, well below FLOOD.
    assert!(
        (MAX_VALIDATION_CACHE_BYTES / 400..FLOOD / 2).contains(&max_entries),
        "{max_entries}"
    );

    // Ids over the cap: 400 JSON, no check sent, nothing cached.
    let before = (
        ui.install_checks_sent(),
        calls.load(std::sync::atomic::Ordering::SeqCst),
    );
    for uri in [
        format!("{}/index.html?tenant={}", base(&digest), "t".repeat(257)),
        format!(
            "/ext-ui/{}/{}/index.html?tenant=t1",
            "e".repeat(300),
            digest.to_string().replace(':', "%3A")
        ),
    ] {
        let (status, headers, body) = get(ext_runner::server::router(t.state.clone()), "GET", &uri, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers["content-type"], "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            json["error"]["message"].as_str().unwrap().contains("at most 256 bytes"),
            "{json}"
        );
    }
    assert_eq!(
        (
            ui.install_checks_sent(),
            calls.load(std::sync::atomic::Ordering::SeqCst)
        ),
        before
    );

    // Single-flight: 40 concurrent requests for one new key, one check.
    let before = ui.install_checks_sent();
    let tenant = format!("slow-{}", random_id(20));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let uri = format!("{}/index.html?tenant={tenant}", base(&digest));
        let app = ext_runner::server::router(t.state.clone());
        requests.spawn(async move { get(app, "GET", &uri, &[]).await.0 });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    assert_eq!(ui.install_checks_sent() - before, 1);
}

/// U-01: outbound install checks are rate limited: past the bucket a new
/// tenant is a 503 `overloaded` with `Retry-After` (not a cached denial),
/// and the service sees no more than the bucket allows.
#[tokio::test]
async fn u01_install_checks_are_rate_limited() {
    let (url, calls) = install_checker().await;
    let t = TestRunner::with_env(&[
        ("RUNNER_UI_VALIDATE_URL", &url),
        ("RUNNER_UI_VALIDATE_MAX_PER_SECOND", "5"),
    ]);
    let digest = ui_bundle(&t);
    let started = std::time::Instant::now();
    let (mut denied, mut refused) = (0, 0);
    for _ in 0..200 {
        let uri = format!("{}/index.html?tenant={}", base(&digest), random_id(12));
        let (status, headers, body) = get(ext_runner::server::router(t.state.clone()), "GET", &uri, &[]).await;
        match status {
            StatusCode::NOT_FOUND => denied += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(json["error"]["code"], "overloaded");
                assert_eq!(headers["retry-after"], "1");
                refused += 1;
            }
            other => panic!("{other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(sent, denied);
    assert!(
        (sent as f64) <= 5.0 + elapsed * 5.0 + 1.0,
        "{sent} checks in {elapsed:.1} s"
    );
    assert!(refused > 0 && denied >= 5, "denied {denied}, refused {refused}");
    assert_eq!(t.state.ui.install_checks_cached() as u64, sent);
}

/// VmRSS of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// The status, a header and the SHA-256 and length of a response body,
/// read frame by frame (never held whole).
async fn stream_digest(
    app: axum::Router,
    method: &str,
    uri: &str,
    range: Option<&str>,
) -> (StatusCode, String, String, u64) {
    use http_body_util::BodyExt as _;
    use sha2::Digest as _;
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let length = response
        .headers()
        .get("content-length")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let mut body = response.into_body();
    let mut hasher = sha2::Sha256::new();
    let mut read = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            read += data.len() as u64;
            hasher.update(&data);
        }
    }
    (status, length, hex::encode(hasher.finalize()), read)
}

/// U-02: a 15 MiB asset under HEAD, `Range: bytes=0-0` and full GETs at
/// high concurrency: HEAD reads nothing from disk, a range reads only its
/// bytes, GETs stream the right bytes, and RSS stays far below what whole
/// reads would take (32 × 15 MiB, twice over with the hashing copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u02_large_assets_stream_from_the_verified_cache() {
    let dir = bundle_dir_with("ui", &std::fs::read(ext_test_fixtures::component("echo")).unwrap(), &[]);
    std::fs::create_dir_all(dir.path().join("ui")).unwrap();
    std::fs::write(dir.path().join("ui/index.html"), "<!doctype html>").unwrap();
    const SIZE: usize = 15 * 1024 * 1024;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(dir.path().join("ui/big.wasm"), &big).unwrap();
    let t = TestRunner::new();
    let digest = t.publish_dir(dir.path());
    let want = ext_bundle::Digest::of(&big).hex();
    let slice = ext_bundle::Digest::of(&big[1_000_000..1_065_536 + 10]).hex();
    drop(big);
    let uri = format!("{}/big.wasm", base(&digest));
    let app = || ext_runner::server::router(t.state.clone());
    let ui = &t.state.ui;

    // Warm up (the bundle is fetched and unpacked once).
    let (status, length, sha, read) = stream_digest(app(), "GET", &uri, None).await;
    assert_eq!(
        (status, length, sha, read),
        (StatusCode::OK, SIZE.to_string(), want.clone(), SIZE as u64)
    );
    let (status, length, sha, _) = stream_digest(app(), "GET", &uri, Some("bytes=1000000-1065545")).await;
    assert_eq!(
        (status, length, sha),
        (StatusCode::PARTIAL_CONTENT, "65546".to_string(), slice)
    );

    // 200 HEADs and 200 one-byte ranges, 32 at a time: 200 bytes read in all.
    let disk_before = ui.disk_bytes_read();
    for round in 0..400 / 32 + 1 {
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..32 {
            let n = round * 32 + i;
            if n >= 400 {
                break;
            }
            let (app, uri) = (app(), uri.clone());
            requests.spawn(async move {
                if n % 2 == 0 {
                    let (status, length, _, read) = stream_digest(app, "HEAD", &uri, None).await;
                    assert_eq!((status, length, read), (StatusCode::OK, SIZE.to_string(), 0));
                } else {
                    let (status, length, _, read) = stream_digest(app, "GET", &uri, Some("bytes=0-0")).await;
                    assert_eq!(
                        (status, length, read),
                        (StatusCode::PARTIAL_CONTENT, "1".to_string(), 1)
                    );
                }
            });
        }
        while let Some(done) = requests.join_next().await {
            done.unwrap();
        }
    }
    assert_eq!(
        ui.disk_bytes_read() - disk_before,
        200,
        "HEAD reads nothing; a range only its byte"
    );

    // 32 concurrent full GETs while RSS is sampled.
    let baseline = rss_bytes();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                peak.fetch_max(rss_bytes(), std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (app, uri, want) = (app(), uri.clone(), want.clone());
        requests.spawn(async move {
            let (status, _, sha, read) = stream_digest(app, "GET", &uri, None).await;
            assert_eq!((status, sha, read), (StatusCode::OK, want, SIZE as u64));
        });
    }
    while let Some(done) = requests.join_next().await {
        done.unwrap();
    }
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    sampler.await.unwrap();
    let growth = peak.load(std::sync::atomic::Ordering::SeqCst).saturating_sub(baseline);
    // Whole reads would need ~480 MiB at once; streaming holds a few chunks
    // (the bound leaves room for tests running beside this one).
    assert!(growth < 256 << 20, "RSS grew {} MiB", growth >> 20);
}
