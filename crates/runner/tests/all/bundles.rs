//! Bundle resolution and the compile cache: integrity, availability,
//! single-flight compilation and the verified artifact cache.

use std::sync::atomic::Ordering;

use http::StatusCode;

use crate::support::*;

#[tokio::test]
async fn missing_bundle_is_502_bundle_not_found() {
    let t = TestRunner::new();
    let digest = ext_bundle::Digest::of(b"never published");
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_not_found");
    assert_eq!(body["status"], 502);
}

/// B-03: the store serves other bytes than the content hash names.
#[tokio::test]
async fn b03_tampered_bundle_is_502_bundle_integrity() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    // Replace the stored archive with different (valid) bundle bytes.
    let other = ext_bundle::pack_dir(&hello_dir()).unwrap();
    std::fs::write(t.store_dir(&digest).join("bundle.tar.zst"), &other).unwrap();
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_integrity");
    // Nothing was unpacked for the bad hash.
    assert!(!t.dir.path().join("cache/bundles").join(digest.hex()).exists());
}

/// Concurrent first requests for one component compile it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_compile_once() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let state = t.state.clone();
        let env = envelope(&digest, "GET", "/");
        tasks.push(tokio::spawn(async move {
            let response = tower::ServiceExt::oneshot(
                ext_runner::server::router(state),
                http::Request::post("/v1/execute")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(axum::body::Body::from(env.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
            response.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(t.runner.engine_stats().compiles.load(Ordering::Relaxed), 1);
}

/// A restarted runner loads the compiled artifact instead of compiling; a
/// corrupted artifact is detected, discarded and recompiled (F-02).
#[tokio::test]
async fn artifact_cache_survives_restart_and_detects_corruption() {
    let t = TestRunner::new();
    let digest = t.publish_fixture("echo");
    let (status, _, _) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t.runner.engine_stats().compiles.load(Ordering::Relaxed), 1);
    let TestRunner { dir, .. } = t;

    let t = TestRunner::in_dir(dir, &[]);
    let (status, _, _) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t.runner.engine_stats().compiles.load(Ordering::Relaxed), 0);
    assert_eq!(t.runner.engine_stats().artifact_loads.load(Ordering::Relaxed), 1);

    // Flip one byte in every cached artifact.
    // Artifacts are keyed by the component's own SHA-256.
    let wasm = std::fs::read(ext_test_fixtures::component("echo")).unwrap();
    let compiled = t
        .dir
        .path()
        .join("cache/compiled")
        .join(ext_bundle::Digest::of(&wasm).hex());
    let mut flipped = 0;
    for entry in std::fs::read_dir(&compiled).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1);
    let TestRunner { dir, .. } = t;
    let t = TestRunner::in_dir(dir, &[]);
    let (status, _, body) = t.post(&envelope(&digest, "GET", "/")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.runner.engine_stats().artifact_loads.load(Ordering::Relaxed), 0);
    assert_eq!(t.runner.engine_stats().compiles.load(Ordering::Relaxed), 1);
}

/// B-02 (tenant mix-and-match): with a key layout scoped by tenant, a bundle
/// published for tenant A and cached by A's request is not served to tenant
/// B naming the same content hash, until it is published for B too.
#[tokio::test]
async fn b02_bundle_cached_for_one_tenant_is_not_served_to_another() {
    let t = TestRunner::with_env(&[("BUNDLE_STORAGE_KEY_LAYOUT", "{tenant}/{extension}/{hex}/bundle.tar.zst")]);
    let wasm = std::fs::read(ext_test_fixtures::component("echo")).unwrap();
    let archive = ext_bundle::pack_dir(bundle_dir_for("echo", &wasm).path()).unwrap();
    let digest = ext_bundle::Digest::of(&archive);
    let publish_for = |tenant: &str| {
        let keys = t.runner.bundle_objects().keys(&digest, tenant, "com.test.ext");
        let objects = t.runner.bundle_objects();
        let (archive, signature) = (archive.clone(), sign(&archive));
        async move {
            objects.put_if_absent(&keys.bundle, archive.into()).await.unwrap();
            objects
                .put_if_absent(&keys.signature, signature.into_bytes().into())
                .await
                .unwrap();
        }
    };
    publish_for("tenant-a").await;
    let for_tenant = |tenant: &str| {
        let mut env = envelope(&digest, "GET", "/");
        env["context"]["tenant_id"] = tenant.into();
        env
    };
    let (status, _, body) = t.post(&for_tenant("tenant-a")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, body) = t.post(&for_tenant("tenant-b")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(error_code(&body), "bundle_not_found");
    assert_eq!(t.runner.bundles().fetches(), 1, "B is refused without a refetch");

    publish_for("tenant-b").await;
    let (status, _, body) = t.post(&for_tenant("tenant-b")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        t.runner.bundles().fetches(),
        1,
        "served from the cache once published for B"
    );
}
