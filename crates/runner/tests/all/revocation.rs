//! Revocation, the kill switch: a revoked content hash is neither executed
//! nor served, cached or not — at once in the process that runs the
//! registry, within a poll (`RUNNER_REVOCATIONS_URL`) elsewhere, and still
//! after a restart without the registry. And the `runner` token scope that
//! polls and checks installs, and nothing else.

use std::time::Duration;

use http::{Request, StatusCode};
use serde_json::json;

use crate::registry::{ADMIN, Backend, HELLO, PUBLISHER, RUNNER, System, TENANT_A, authorized, hello_archive};
use crate::support::*;

/// Publish 1.0.0 and install it for tenant-a; the install's JSON.
async fn installed(system: &System) -> serde_json::Value {
    assert_eq!(
        system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await.0,
        StatusCode::CREATED
    );
    let (status, install) = system.install(TENANT_A, "tenant-a", &json!({"version": "1.0.0"})).await;
    assert_eq!(status, StatusCode::CREATED, "{install}");
    install
}

async fn revoke(system: &System) {
    let uri = format!("/v1/registry/extensions/{HELLO}/versions/1.0.0/revoke");
    let (status, _, body) = system.send_json("POST", PUBLISHER, &uri, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_revoke_stops_execution_and_ui_at_once_and_survives_a_restart() {
    let system = System::start(Backend::Sqlite, &[]).await;
    let install = installed(&system).await;
    // Loaded and cached before the revoke.
    assert_eq!(system.execute(&install, "/hello").await.0, StatusCode::OK);
    assert_eq!(system.ui(&install, "tenant-a").await, StatusCode::OK);

    revoke(&system).await;
    let (status, body) = system.execute(&install, "/hello").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "bundle_revoked"),
        "{body}"
    );
    // No longer an install the UI is served for (the registry's answer).
    assert_eq!(system.ui(&install, "tenant-a").await, StatusCode::NOT_FOUND);
    let (_, metrics) = get_text(&system.test, "/metrics").await;
    assert_eq!(
        metric_value(&metrics, "ext_runner_revoked_bundles "),
        Some(1.0),
        "{metrics}"
    );

    let (status, list) = system.get(ADMIN, "/v1/registry/revocations").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"], json!([install["content_hash"]]));

    // A runner restarted on the same data dir, with no registry to ask.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        system.test.dir.path().join("revoked.json"),
        dir.path().join("revoked.json"),
    )
    .unwrap();
    let restarted = TestRunner::in_dir(dir, &[]);
    restarted.publish_archive(&hello_archive("1.0.0", false), None);
    let digest = ext_bundle::Digest::parse(install["content_hash"].as_str().unwrap()).unwrap();
    let mut env = envelope(&digest, "GET", "/hello");
    env["context"]["extension_id"] = json!(HELLO);
    let (status, _, body) = restarted.post(&env).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "bundle_revoked"),
        "{body}"
    );
}

#[tokio::test]
async fn runners_elsewhere_poll_the_list_and_check_installs_with_a_runner_token() {
    let system = System::start(Backend::Sqlite, &[]).await;
    let install = installed(&system).await;
    let socket = serve(&system.test).await;
    let base = format!("http://{}", socket.addr);
    // Another runner process: its own data dir, the same bundle store
    // contents, asking the registry over HTTP.
    let revocations = format!("{base}/v1/registry/revocations");
    let validate = format!("{base}/v1/registry/installs/validate");
    let remote = TestRunner::with_env(&[
        ("RUNNER_REVOCATIONS_URL", &revocations),
        ("RUNNER_REVOCATIONS_POLL_MS", "100"),
        ("RUNNER_UI_VALIDATE_URL", &validate),
        ("RUNNER_REGISTRY_TOKEN", RUNNER),
    ]);
    let archive = hello_archive("1.0.0", false);
    let digest = remote.publish_archive(&archive, Some(&sign(&archive)));
    let hash = digest.to_string().replace(':', "%3A");
    let ui = |tenant: &str| format!("/ext-ui/{HELLO}/{hash}/index.html?tenant={tenant}");
    assert_eq!(
        get_text(&remote, &ui("tenant-a")).await.0,
        StatusCode::OK,
        "installed, checked with the runner token"
    );
    assert_eq!(get_text(&remote, &ui("tenant-b")).await.0, StatusCode::NOT_FOUND);
    let mut env = envelope(&digest, "GET", "/hello");
    env["context"]["extension_id"] = json!(HELLO);
    assert_eq!(remote.post(&env).await.0, StatusCode::OK);

    let source = ext_runner::revocation::sync::ListSource::choose(&remote.runner.config().revocations, None).unwrap();
    let polling = tokio::spawn(ext_runner::revocation::sync::run(
        remote.runner.bundles().revoked().clone(),
        source,
        remote.runner.config().revocations.clone(),
    ));
    revoke(&system).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !remote.runner.bundles().revoked().contains(&digest) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poll never brought the revoke"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    polling.abort();
    let (status, _, body) = remote.post(&env).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "bundle_revoked"),
        "{body}"
    );
    // Refused although its install check is still cached as installed.
    assert_eq!(get_text(&remote, &ui("tenant-a")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(install["content_hash"], digest.to_string());
}

#[tokio::test]
async fn an_unreachable_registry_keeps_the_list_in_force_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let revoked_hash = ext_bundle::Digest::of(b"revoked").to_string();
    std::fs::write(
        dir.path().join("revoked.json"),
        json!({"items": [revoked_hash]}).to_string(),
    )
    .unwrap();
    let closed = format!("http://{}/v1/registry/revocations", closed_port_addr());
    let runner = TestRunner::in_dir(dir, &[("RUNNER_REVOCATIONS_URL", &closed)]);
    let revoked = runner.runner.bundles().revoked();
    let source = ext_runner::revocation::sync::ListSource::choose(&runner.runner.config().revocations, None).unwrap();
    ext_runner::revocation::sync::sync_once(revoked, &source).await;
    assert_eq!(revoked.sync_failures(), 1);
    assert!(
        revoked.contains(&ext_bundle::Digest::parse(&revoked_hash).unwrap()),
        "still refused"
    );
    let (_, metrics) = get_text(&runner, "/metrics").await;
    assert_eq!(
        metric_value(&metrics, "ext_runner_revocation_sync_failures "),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_runner_token_reaches_its_two_routes_only() {
    let system = System::start(Backend::Sqlite, &[]).await;
    let install = installed(&system).await;
    let hash = install["content_hash"].as_str().unwrap();
    let validate = format!("/v1/registry/installs/validate?tenant=tenant-a&extension={HELLO}&content_hash={hash}");
    assert_eq!(system.get(RUNNER, &validate).await.0, StatusCode::OK);
    assert_eq!(system.get(RUNNER, "/v1/registry/revocations").await.0, StatusCode::OK);
    for uri in [
        "/v1/registry/extensions".to_string(),
        format!("/v1/registry/extensions/{HELLO}"),
        "/v1/registry/tenants/tenant-a/installs".to_string(),
        "/v1/registry/audit".to_string(),
    ] {
        let (status, body) = system.get(RUNNER, &uri).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{uri}: {body}"
        );
    }
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}");
    let (status, _, _) = system.call(authorized(Request::delete(&uri), RUNNER), Vec::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The list is for runners and admins, not tenants.
    assert_eq!(
        system.get(TENANT_A, "/v1/registry/revocations").await.0,
        StatusCode::FORBIDDEN
    );
}

/// A revoke another registry replica took (here: straight in the shared
/// database) reaches this process's runner at its next in-process sync.
#[tokio::test]
async fn a_revoke_by_another_replica_arrives_with_the_next_sync() {
    let system = System::start(Backend::Sqlite, &[]).await;
    let install = installed(&system).await;
    assert_eq!(system.execute(&install, "/hello").await.0, StatusCode::OK);
    system
        .registry
        .database()
        .revoke_version(HELLO, "1.0.0", "other-replica")
        .await
        .unwrap();
    assert_eq!(
        system.execute(&install, "/hello").await.0,
        StatusCode::OK,
        "not synced yet"
    );

    let runner = &system.test.runner;
    let source = ext_runner::revocation::sync::ListSource::choose(&runner.config().revocations, Some(&system.registry));
    assert!(matches!(
        source,
        Some(ext_runner::revocation::sync::ListSource::InProcess(_))
    ));
    ext_runner::revocation::sync::sync_once(runner.bundles().revoked(), &source.unwrap()).await;
    let (status, body) = system.execute(&install, "/hello").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "bundle_revoked"),
        "{body}"
    );
}
