//! The gateway role over the real router: user tokens (G-01), install and
//! endpoint resolution, what the guest sees and what the user gets back,
//! limits, the runner in-process and over HTTP with signed grants, the
//! execution log, the iframe URL and CORS; `serve --dev`'s host page and
//! its dev user tokens.

use std::time::Duration;

use http::{HeaderMap, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::registry::{
    ADMIN, Backend, GATEWAY, HELLO, PUBLISHER, RUNNER, System, TENANT_A, edited_hello, hello_archive,
};
use crate::support::*;

/// The HS256 secret user tokens are signed with in these tests.
pub(crate) const SECRET: &str = "gateway-test-secret-0123456789abcdef";
const TENANT: &str = "tenant-a";

/// The runner role, the registry role and the gateway in one process, with
/// `extra` settings; the example published and installed for [`TENANT`].
async fn gateway_system(extra: &[(&str, &str)]) -> (System, Value) {
    let mut env = vec![("RUNNER_ROLES", "all"), ("GATEWAY_JWT_SECRET", SECRET)];
    env.extend_from_slice(extra);
    let system = System::start(Backend::Sqlite, &env).await;
    let install = publish_and_install(&system, TENANT).await;
    (system, install)
}

async fn publish_and_install(system: &System, tenant: &str) -> Value {
    let (status, body) = system.publish(PUBLISHER, &hello_archive("1.0.0", true)).await;
    assert!(status.is_success(), "{status} {body}");
    let (status, install) = system.install(ADMIN, tenant, &json!({"version": "1.0.0"})).await;
    assert!(status.is_success(), "{status} {install}");
    install
}

fn now() -> u64 {
    ext_runner::grant::now_secs()
}

/// A user token for `tenant` signed with `secret`, valid for a minute.
fn token_with(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

pub(crate) fn user(tenant: &str) -> String {
    token_with(
        SECRET,
        &json!({"tenant": tenant, "sub": "u-1", "email": "ada@example.com", "name": "Ada", "exp": now() + 60}),
    )
}

/// `method uri` through the gateway with `token` (if any) and `body`.
async fn call(
    system: &System,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &[u8],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    system.call(request, body.to_vec()).await
}

async fn get(system: &System, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let (status, _, body) = call(system, "GET", uri, token, b"").await;
    (status, body)
}

/// Executions the runner has counted (any outcome).
async fn runner_invocations(system: &System) -> f64 {
    let (_, text) = get_text(&system.test, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("ext_runner_invocations_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn g01_user_token_install_and_endpoint_refusals_never_reach_the_runner() {
    let (system, _) = gateway_system(&[]).await;
    let hello = format!("/api/ext/{HELLO}/hello/ada");
    let before = runner_invocations(&system).await;

    // No token, a bad signature, `alg: none`, an expired or missing `exp`.
    assert_eq!(get(&system, &hello, None).await.0, StatusCode::UNAUTHORIZED);
    let forged = token_with(
        "another-secret-0123456789abcdef-xyz",
        &json!({"tenant": TENANT, "exp": now() + 60}),
    );
    let unsigned = {
        use base64::Engine as _;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&json!({"tenant": TENANT, "exp": now() + 60}))
        )
    };
    let expired = token_with(SECRET, &json!({"tenant": TENANT, "exp": now() - 3600}));
    let no_exp = token_with(SECRET, &json!({"tenant": TENANT}));
    let no_tenant = token_with(SECRET, &json!({"sub": "u", "exp": now() + 60}));
    for token in [
        &forged,
        &unsigned,
        &expired,
        &no_exp,
        &no_tenant,
        &"not-a-jwt".to_string(),
    ] {
        let (status, body) = get(&system, &hello, Some(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(error_code(&body), "unauthorized");
        assert_eq!(body["status"], 401);
    }

    // Another tenant's install is invisible; so is an extension not installed.
    let (status, body) = get(&system, &hello, Some(&user("tenant-b"))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "extension_not_installed")
    );
    let (status, body) = get(&system, "/api/ext/com.example.other/hello", Some(&user(TENANT))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "extension_not_installed")
    );

    // A path or method outside the manifest's endpoints.
    for (method, uri) in [
        ("GET", format!("/api/ext/{HELLO}/admin")),
        ("DELETE", format!("/api/ext/{HELLO}/hello")),
        ("GET", format!("/api/ext/{HELLO}/hello/a/b")),
        ("GET", format!("/api/ext/{HELLO}")),
    ] {
        let (status, _, body) = call(&system, method, &uri, Some(&user(TENANT)), b"").await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "endpoint_not_found"),
            "{method} {uri}"
        );
    }

    // `..` and encoded slashes never match an endpoint they should not.
    for uri in [
        format!("/api/ext/{HELLO}/hello/%2e%2e"),
        format!("/api/ext/{HELLO}/admin/%2E%2E/hello"),
        format!("/api/ext/{HELLO}/hello/a%2Fb"),
        format!("/api/ext/{HELLO}/hello/a%5Cb"),
        format!("/api/ext/{HELLO}/hello/.."),
    ] {
        let (status, body) = get(&system, &uri, Some(&user(TENANT))).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "endpoint_not_found"),
            "{uri}"
        );
    }

    // A disabled install is 403, an uninstalled one 404.
    let (status, _) = system
        .install(ADMIN, TENANT, &json!({"version": "1.0.0", "enabled": false}))
        .await;
    assert!(status.is_success());
    let (status, body) = get(&system, &hello, Some(&user(TENANT))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "install_disabled"));
    let (status, _, _) = system
        .call(
            crate::registry::authorized(
                Request::delete(format!("/v1/registry/tenants/{TENANT}/installs/{HELLO}")),
                ADMIN,
            ),
            Vec::new(),
        )
        .await;
    assert!(status.is_success());
    let (status, body) = get(&system, &hello, Some(&user(TENANT))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "extension_not_installed")
    );

    assert_eq!(
        runner_invocations(&system).await,
        before,
        "a refused call reached the runner"
    );
}

#[tokio::test]
async fn a_signed_in_call_reaches_the_guest_and_returns_its_answer() {
    let (system, install) = gateway_system(&[]).await;
    let before = runner_invocations(&system).await;
    let uri = format!("/api/ext/{HELLO}/hello/ada?x=1");
    let mut request = Request::get(&uri)
        .header("authorization", format!("Bearer {}", user(TENANT)))
        .header("x-request-id", "gw-test-request-1")
        .header("x-alga-tenant", "tenant-b");
    request = request.header("cookie", "session=secret");
    let (status, headers, body) = system.call(request, Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "Hello, ada!");
    // The guest sees the signed-in user's tenant, not what the caller claimed.
    assert_eq!(body["tenant"], TENANT);
    assert_eq!(body["extension"], HELLO);
    assert_eq!(body["request_id"], "gw-test-request-1");
    assert_eq!(headers["x-request-id"], "gw-test-request-1");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get("x-ext-grant").is_none());
    assert_eq!(runner_invocations(&system).await, before + 1.0);

    // A body reaches the guest; the guest's own status comes back.
    let (status, _, body) = call(
        &system,
        "POST",
        &format!("/api/ext/{HELLO}/echo"),
        Some(&user(TENANT)),
        br#"{"a":[1,2]}"#,
    )
    .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"a": [1, 2]})));
    let (status, _, body) = call(
        &system,
        "POST",
        &format!("/api/ext/{HELLO}/echo"),
        Some(&user(TENANT)),
        b"not json",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The same through the iframe's proxy route.
    let (status, body) = get(
        &system,
        &format!("/api/ext-proxy/{HELLO}/hello/bob"),
        Some(&user(TENANT)),
    )
    .await;
    assert_eq!((status, &body["message"]), (StatusCode::OK, &json!("Hello, bob!")));

    // The execution log has the calls (off the request path: poll), with
    // the endpoint's pattern, never a body.
    let uri = format!("/v1/registry/tenants/{TENANT}/executions?extension={HELLO}");
    let mut items = Vec::new();
    for _ in 0..100 {
        items = system.get(ADMIN, &uri).await.1["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if items.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let endpoints: Vec<&str> = items.iter().filter_map(|i| i["endpoint"].as_str()).collect();
    assert!(endpoints.contains(&"GET /hello/:name"), "{items:?}");
    assert!(endpoints.contains(&"POST /echo"), "{items:?}");
    assert!(endpoints.contains(&"ui-proxy:GET /hello/:name"), "{items:?}");
    let logged = serde_json::to_string(&items).unwrap();
    assert!(!logged.contains("\"a\":[1,2]") && !logged.contains("not json") && !logged.contains("secret"));
    let row = items
        .iter()
        .find(|i| i["request_id"] == "gw-test-request-1")
        .expect("the first call is logged");
    assert_eq!(row["status"], 200);
    assert_eq!(row["version"], install["version"]);
}

#[tokio::test]
async fn sizes_are_capped_before_the_runner_is_called() {
    let (system, _) = gateway_system(&[("GATEWAY_MAX_REQUEST_BYTES", "1024")]).await;
    let before = runner_invocations(&system).await;
    let big = vec![b' '; 2048];
    let (status, _, body) = call(
        &system,
        "POST",
        &format!("/api/ext/{HELLO}/echo"),
        Some(&user(TENANT)),
        &big,
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert_eq!(runner_invocations(&system).await, before);

    // The guest's answer is held to GATEWAY_MAX_RESPONSE_BYTES too.
    let (system, _) = gateway_system(&[("GATEWAY_MAX_RESPONSE_BYTES", "16")]).await;
    let (status, body) = get(&system, &format!("/api/ext/{HELLO}/hello"), Some(&user(TENANT))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "response_too_large")
    );
}

#[tokio::test]
async fn the_tenants_rate_limit_and_the_runners_quota_answer_429_with_retry_after() {
    let (system, _) = gateway_system(&[("GATEWAY_TENANT_RATE_LIMIT", "0.01:2")]).await;
    publish_and_install(&system, "tenant-b").await;
    let uri = format!("/api/ext/{HELLO}/hello");
    for _ in 0..2 {
        assert_eq!(get(&system, &uri, Some(&user(TENANT))).await.0, StatusCode::OK);
    }
    let (status, headers, body) = call(&system, "GET", &uri, Some(&user(TENANT)), b"").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(headers["retry-after"].to_str().unwrap().parse::<u32>().unwrap() >= 1);
    // Another tenant has its own budget.
    assert_eq!(get(&system, &uri, Some(&user("tenant-b"))).await.0, StatusCode::OK);

    // The runner's own quota passes through, Retry-After and all.
    let (system, _) = system_with_runner_limit().await;
    assert_eq!(get(&system, &uri, Some(&user(TENANT))).await.0, StatusCode::OK);
    let (status, headers, body) = call(&system, "GET", &uri, Some(&user(TENANT)), b"").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
}

async fn system_with_runner_limit() -> (System, Value) {
    gateway_system(&[("RUNNER_TENANT_RATE_LIMIT", "0.01:1")]).await
}

#[tokio::test]
async fn in_one_process_execute_requires_the_gateways_grant_unless_turned_off() {
    let (system, install) = gateway_system(&[]).await;
    let (status, body) = system.execute(&install, "/hello").await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "grant_invalid"));

    let (system, install) = gateway_system(&[("RUNNER_GRANT_KEYS", "off")]).await;
    let (status, body) = system.execute(&install, "/hello").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        get(&system, &format!("/api/ext/{HELLO}/hello"), Some(&user(TENANT)))
            .await
            .0,
        StatusCode::OK
    );
}

/// An upstream manifest (no `network`) through the whole system: the
/// install's `egress` is what the gateway puts in the envelope and the
/// grant, so its fetch reaches the host the install lists and the operator
/// allows; with the install's list emptied it reaches nothing.
#[tokio::test]
async fn an_upstream_manifests_egress_is_the_installs_through_the_gateway() {
    let upstream = crate::egress::upstream().await;
    let origin = format!("http://127.0.0.1:{}", upstream.port());
    let env = [
        ("RUNNER_ROLES", "all"),
        ("GATEWAY_JWT_SECRET", SECRET),
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
        ("EXT_EGRESS_SECRETS_REQUIRE_HTTPS", "false"),
    ];
    let system = &System::start(Backend::Sqlite, &env).await;
    let archive = edited_hello(|manifest| drop(manifest.as_object_mut().unwrap().remove("network")));
    let (status, body) = system.publish(PUBLISHER, &archive).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = system
        .install(ADMIN, TENANT, &json!({"version": "1.0.0", "egress": [origin]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secrets = format!("/v1/registry/tenants/{TENANT}/installs/{HELLO}/secrets");
    let (status, _, _) = system
        .send_json("PUT", ADMIN, &secrets, &json!({"api-key": "upstream-api-key-777"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let relay = || {
        let body = json!({"url": format!("{origin}/check")}).to_string();
        let uri = format!("/api/ext/{HELLO}/relay");
        async move { call(system, "POST", &uri, Some(&user(TENANT)), body.as_bytes()).await }
    };
    let (status, _, body) = relay().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"upstream_status": 200, "upstream_body": "key ok"}));

    // The same install without egress: none, though the operator allows it.
    let (status, body) = system.install(ADMIN, TENANT, &json!({"version": "1.0.0"})).await;
    assert_eq!((status, &body["egress"]), (StatusCode::OK, &json!([])), "{body}");
    let (status, _, body) = relay().await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_GATEWAY, &json!("fetch_failed")),
        "{body}"
    );
}

#[tokio::test]
async fn the_iframe_src_names_the_installed_version_and_the_tenant() {
    let (system, install) = gateway_system(&[("RUNNER_PUBLIC_BASE", "https://ui.example.com")]).await;
    let uri = format!("/api/ext-ui/{HELLO}?path=/settings&parentOrigin=https://app.example.com");
    let (status, body) = get(&system, &uri, Some(&user(TENANT))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hash = install["content_hash"].as_str().unwrap().replace(':', "%3A");
    assert_eq!(
        body["src"],
        format!(
            "https://ui.example.com/ext-ui/{HELLO}/{hash}/index.html?path=%2Fsettings&extensionId={HELLO}&tenant={TENANT}&parentOrigin=https%3A%2F%2Fapp.example.com"
        )
    );
    let (status, body) = get(&system, &uri, Some(&user("tenant-b"))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "extension_not_installed")
    );
    assert_eq!(get(&system, &uri, None).await.0, StatusCode::UNAUTHORIZED);
}

/// Two replicas on one database and one bundle store: an install change
/// applies to the very next call on the replica that made it, and on the
/// other once its kept answer is older than `LOCAL_INSTALL_TTL`.
#[tokio::test]
async fn another_replicas_install_change_applies_within_the_install_ttl() {
    use ext_runner::gateway::installs::LOCAL_INSTALL_TTL;

    let shared = tempfile::tempdir().unwrap();
    let url = shared.path().join("registry.db").display().to_string();
    let store = format!("file://{}", shared.path().join("bundles").display());
    let env = [
        ("RUNNER_ROLES", "all"),
        ("GATEWAY_JWT_SECRET", SECRET),
        ("RUNNER_SECRETS_KEY", crate::registry::KEY_B64),
        ("BUNDLE_STORAGE_URL", store.as_str()),
    ];
    let one = System::both_roles(tempfile::tempdir().unwrap(), &url, &env).await;
    let two = System::both_roles(tempfile::tempdir().unwrap(), &url, &env).await;
    publish_and_install(&one, TENANT).await;
    let hello = format!("/api/ext/{HELLO}/hello/ada");
    for replica in [&one, &two] {
        let (status, body) = get(replica, &hello, Some(&user(TENANT))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let (status, _) = one
        .install(ADMIN, TENANT, &json!({"version": "1.0.0", "enabled": false}))
        .await;
    assert!(status.is_success());
    let (status, body) = get(&one, &hello, Some(&user(TENANT))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "install_disabled"));
    tokio::time::sleep(LOCAL_INSTALL_TTL + Duration::from_millis(100)).await;
    let (status, body) = get(&two, &hello, Some(&user(TENANT))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "install_disabled"));
}

/// `method uri` with `headers` through the router: status, headers and the
/// body as text (the dev host page's files are not JSON).
async fn call_text(
    system: &System,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    use tower::ServiceExt as _;
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = ext_runner::server::router(system.test.state.clone())
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// `POST /dev/token?tenant=…` as a browser on this machine sends it.
async fn dev_token(system: &System, query: &str) -> (StatusCode, Value) {
    let request = Request::post(format!("/dev/token{query}")).header("host", "127.0.0.1:8080");
    let (status, _, body) = system.call(request, Vec::new()).await;
    (status, body)
}

/// The gateway as `serve --dev` runs it, UI assets on another origin.
async fn dev_gateway_system(extra: &[(&str, &str)]) -> System {
    let mut env = vec![
        ("RUNNER_ROLES", "all"),
        ("GATEWAY_JWT_SECRET", SECRET),
        ("RUNNER_PUBLIC_BASE", "http://127.0.0.1:8081"),
    ];
    env.extend_from_slice(extra);
    System::start_dev(&env).await
}

/// `serve --dev`'s host page and its files, and a dev user token for the
/// tenant asked that the gateway takes: the tenant's install answers (the
/// iframe URL on the UI origin, an apiproxy call), another tenant's is 404.
#[tokio::test]
async fn the_dev_host_page_signs_in_as_a_user_of_the_tenant_asked() {
    let system = dev_gateway_system(&[]).await;
    publish_and_install(&system, TENANT).await;
    let gateway = system.test.state.gateway.as_ref().unwrap();
    gateway.dev_host().unwrap().published(TENANT, HELLO);

    let (status, headers, html) = call_text(&system, "GET", "/dev/host", &[]).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-src http://127.0.0.1:8081;",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    let config = html
        .split(r#"<script id="config" type="application/json">"#)
        .nth(1)
        .and_then(|rest| rest.split("</script>").next())
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(config).unwrap(),
        json!({"tenant": TENANT, "extension": HELLO, "uiOrigin": "http://127.0.0.1:8081"})
    );
    for (file, content_type, has) in [
        ("host.js", "text/javascript; charset=utf-8", "/api/ext-proxy/"),
        ("host.css", "text/css; charset=utf-8", "iframe#ext"),
        ("bridge-host.js", "text/javascript; charset=utf-8", "bootstrapIframe"),
    ] {
        let (status, headers, text) = call_text(&system, "GET", &format!("/dev/host/{file}"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{file}");
        assert_eq!(headers["content-type"], content_type, "{file}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{file}");
        assert!(text.contains(has), "{file}");
    }
    assert_eq!(
        call_text(&system, "GET", "/dev/host/other.js", &[]).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, body) = dev_token(&system, &format!("?tenant={TENANT}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((&body["tenant"], &body["user"]), (&json!(TENANT), &json!("dev-user")));
    let exp = body["exp"].as_u64().unwrap();
    let ttl = ext_runner::gateway::dev_host::DEV_HOST_TOKEN_TTL_SECS;
    assert!((now() + ttl - 5..=now() + ttl).contains(&exp), "{exp}");
    let token = body["token"].as_str().unwrap();
    let (status, ui) = get(&system, &format!("/api/ext-ui/{HELLO}?path=/"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{ui}");
    assert!(
        ui["src"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://127.0.0.1:8081/ext-ui/{HELLO}/")),
        "{ui}"
    );
    let (status, answer) = get(&system, &format!("/api/ext-proxy/{HELLO}/hello/Ada"), Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        (&answer["message"], &answer["tenant"]),
        (&json!("Hello, Ada!"), &json!(TENANT))
    );

    // A user of another tenant signs in, and sees no install.
    let (status, body) = dev_token(&system, "?tenant=tenant-b").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, ui) = get(&system, &format!("/api/ext-ui/{HELLO}?path=/"), body["token"].as_str()).await;
    assert_eq!(
        (status, error_code(&ui)),
        (StatusCode::NOT_FOUND, "extension_not_installed")
    );
}

/// `/dev/token` makes tokens only for a valid tenant id, only for a
/// loopback `Host` (a rebound DNS name is refused) and only when the
/// service listens on loopback; it takes `POST` only.
#[tokio::test]
async fn the_dev_token_route_refuses_bad_tenants_other_hosts_and_other_listeners() {
    let system = dev_gateway_system(&[]).await;
    let long = "t".repeat(ext_registry::names::MAX_TENANT_BYTES + 1);
    for query in [
        "?tenant=../x".to_string(),
        "?tenant=a%20b".to_string(),
        "?tenant=a/b".to_string(),
        "?tenant=".to_string(),
        format!("?tenant={long}"),
        String::new(),
    ] {
        let (status, body) = dev_token(&system, &query).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{query}: {body}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().starts_with("tenant: "),
            "{body}"
        );
    }
    for host in [Some("rebound.example:8080"), Some("10.0.0.5:8080"), None] {
        let mut request = Request::post(format!("/dev/token?tenant={TENANT}"));
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let (status, _, body) = system.call(request, Vec::new()).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{host:?}: {body}"
        );
    }
    let request = Request::get(format!("/dev/token?tenant={TENANT}")).header("host", "127.0.0.1:8080");
    assert_eq!(system.call(request, Vec::new()).await.0, StatusCode::METHOD_NOT_ALLOWED);

    let everywhere = dev_gateway_system(&[("RUNNER_LISTEN", "0.0.0.0:8080")]).await;
    let (status, body) = dev_token(&everywhere, &format!("?tenant={TENANT}")).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("loopback"),
        "{body}"
    );
}

/// Outside `serve --dev`, and under it without the gateway role, there is
/// no `/dev/…` at all.
#[tokio::test]
async fn dev_routes_are_absent_outside_dev() {
    let (production, _) = gateway_system(&[]).await;
    let no_gateway = System::start_dev(&[]).await;
    for system in [&production, &no_gateway] {
        for (method, uri) in [
            ("GET", "/dev/host"),
            ("GET", "/dev/host/host.js"),
            ("GET", "/dev/host/bridge-host.js"),
            ("POST", "/dev/token?tenant=tenant-a"),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header("host", "127.0.0.1:8080");
            let (status, _, body) = system.call(request, Vec::new()).await;
            assert_eq!(
                (status, error_code(&body)),
                (StatusCode::NOT_FOUND, "not_found"),
                "{method} {uri}"
            );
        }
    }
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let (system, _) = gateway_system(&[("GATEWAY_CORS_ORIGINS", "https://app.example.com")]).await;
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri(format!("/api/ext/{HELLO}/hello"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
    };
    let (_, headers, _) = system.call(preflight("https://app.example.com"), Vec::new()).await;
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    let (_, headers, _) = system.call(preflight("https://evil.example.com"), Vec::new()).await;
    assert!(headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn user_tokens_from_a_jwks_file_are_pinned_to_their_keys_algorithm() {
    let keys = tempfile::tempdir().unwrap();
    let pem = ext_bundle::SigningKey::generate(ext_bundle::KeyAlgorithm::EcdsaP256).to_pkcs8_pem();
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("issuer-1".into());
    let jwks = keys.path().join("users.jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    let (system, _) = {
        let mut env = vec![("RUNNER_ROLES", "all"), ("GATEWAY_JWKS_FILE", jwks.to_str().unwrap())];
        env.push(("RUNNER_GRANT_KEYS", "off"));
        let system = System::start(Backend::Sqlite, &env).await;
        let install = publish_and_install(&system, TENANT).await;
        (system, install)
    };
    let claims = json!({"tenant": TENANT, "exp": now() + 60});
    let es256 = |kid: &str| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let uri = format!("/api/ext/{HELLO}/hello");
    assert_eq!(get(&system, &uri, Some(&es256("issuer-1"))).await.0, StatusCode::OK);
    // An unknown kid, HS256 (not configured), and the EC key's bytes as an HMAC secret.
    assert_eq!(
        get(&system, &uri, Some(&es256("issuer-2"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&system, &uri, Some(&user(TENANT))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("issuer-1".into());
    let confused = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(pem.as_bytes()).unwrap()).unwrap();
    assert_eq!(get(&system, &uri, Some(&confused)).await.0, StatusCode::UNAUTHORIZED);
}

/// The registry and gateway in one process, the runner in another reached
/// at `RUNNER_BASE_URL` with a service token and a signed grant.
#[tokio::test]
async fn a_runner_elsewhere_gets_a_signed_grant_and_a_dead_one_is_502_at_once() {
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("grant.pem");
    let (jwks, _) = ext_runner::cli::grant::grant_keygen(&private).unwrap();
    let data = tempfile::tempdir().unwrap();
    let runner = TestRunner::in_dir(
        tempfile::tempdir().unwrap(),
        &[
            ("RUNNER_GRANT_KEYS", jwks.to_str().unwrap()),
            (
                "BUNDLE_STORAGE_URL",
                &format!("file://{}", data.path().join("bundles").display()),
            ),
        ],
    );
    let served = serve(&runner).await;
    let base = format!("http://{}", served.addr);
    let private = private.to_str().unwrap();
    let store = format!("file://{}", data.path().join("bundles").display());
    let gateway_env = |base: &str| -> Vec<(String, String)> {
        vec![
            ("RUNNER_ROLES".into(), "registry,gateway".into()),
            ("GATEWAY_JWT_SECRET".into(), SECRET.into()),
            ("RUNNER_BASE_URL".into(), base.into()),
            ("GATEWAY_RUNNER_TOKEN".into(), TOKEN.into()),
            ("GATEWAY_GRANT_KEY".into(), private.into()),
            ("BUNDLE_STORAGE_URL".into(), store.clone()),
        ]
    };
    let env = gateway_env(&base);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let system = System::start(Backend::Sqlite, &env).await;
    publish_and_install(&system, TENANT).await;
    let (status, body) = get(&system, &format!("/api/ext/{HELLO}/hello/remote"), Some(&user(TENANT))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["message"], &body["tenant"]),
        (&json!("Hello, remote!"), &json!(TENANT))
    );

    // Nothing listens at the runner's address: 502, long before the timeout.
    let dead = format!("http://{}", closed_port_addr());
    let env = gateway_env(&dead);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("EXT_GATEWAY_TIMEOUT_MS", "600000"));
    let system = System::start(Backend::Sqlite, &env).await;
    publish_and_install(&system, TENANT).await;
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        get(&system, &format!("/api/ext/{HELLO}/hello"), Some(&user(TENANT))),
    )
    .await
    .expect("a dead runner is answered, not waited for");
    assert_eq!(
        (answer.0, error_code(&answer.1)),
        (StatusCode::BAD_GATEWAY, "runner_unavailable")
    );
}

/// A process running the gateway role alone, reaching the registry and the
/// runner of `system` over HTTP at `addr`.
async fn lone_gateway(addr: std::net::SocketAddr, grant_key: &std::path::Path) -> TestRunner {
    let base = format!("http://{addr}");
    let key = grant_key.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(
        dir.path(),
        &[
            ("RUNNER_ROLES", "gateway"),
            ("GATEWAY_JWT_SECRET", SECRET),
            ("GATEWAY_REGISTRY_URL", &base),
            ("GATEWAY_REGISTRY_TOKEN", GATEWAY),
            ("RUNNER_BASE_URL", &base),
            ("GATEWAY_RUNNER_TOKEN", TOKEN),
            ("GATEWAY_GRANT_KEY", key),
        ],
    );
    let runner = std::sync::Arc::new(ext_runner::Runner::new(config).unwrap());
    let gateway = ext_runner::gateway::Gateway::open(&runner, None).await.unwrap();
    let state = ext_runner::server::AppState::with_roles(runner.clone(), None, Some(std::sync::Arc::new(gateway)));
    TestRunner { runner, state, dir }
}

async fn gateway_get(gateway: &TestRunner, uri: &str, token: &str) -> (StatusCode, Value) {
    use tower::ServiceExt as _;
    let request = Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = ext_runner::server::router(gateway.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_gateway_alone_resolves_installs_and_logs_through_the_registry_elsewhere() {
    let keys = tempfile::tempdir().unwrap();
    let private = keys.path().join("grant.pem");
    let (jwks, _) = ext_runner::cli::grant::grant_keygen(&private).unwrap();
    let system = System::start(Backend::Sqlite, &[("RUNNER_GRANT_KEYS", jwks.to_str().unwrap())]).await;
    publish_and_install(&system, TENANT).await;
    let served = serve(&system.test).await;
    let gateway = lone_gateway(served.addr, &private).await;

    let (status, body) = gateway_get(&gateway, &format!("/api/ext/{HELLO}/hello/far"), &user(TENANT)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["message"], &body["tenant"]),
        (&json!("Hello, far!"), &json!(TENANT))
    );
    let (status, body) = gateway_get(&gateway, &format!("/api/ext/{HELLO}/hello"), &user("tenant-b")).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "extension_not_installed")
    );
    let (status, body) = gateway_get(&gateway, &format!("/api/ext/{HELLO}/nothing"), &user(TENANT)).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "endpoint_not_found")
    );

    // The rows reach the registry's log over HTTP.
    let uri = format!("/v1/registry/tenants/{TENANT}/executions?extension={HELLO}");
    let mut endpoints = Vec::new();
    for _ in 0..100 {
        let items = system.get(ADMIN, &uri).await.1["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        endpoints = items
            .iter()
            .filter_map(|i| i["endpoint"].as_str().map(str::to_string))
            .collect();
        if endpoints.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(endpoints.contains(&"GET /hello/:name".to_string()), "{endpoints:?}");
    // The guest ran in the runner's process: only its engine ticks.
    assert!(system.test.runner.runtime().epoch_ticking());
    assert!(!gateway.runner.runtime().epoch_ticking());

    // The gateway's routes are the gateway token's only ones, and its routes
    // are closed to the other scopes.
    let call_uri = format!("/v1/registry/tenants/{TENANT}/installs/{HELLO}/call");
    let (status, answer) = system.get(GATEWAY, &call_uri).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["manifest"].as_str().unwrap().contains(HELLO));
    assert_eq!(
        system
            .get(GATEWAY, &format!("/v1/registry/tenants/{TENANT}/installs"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(system.get(RUNNER, &call_uri).await.0, StatusCode::FORBIDDEN);
    assert_eq!(system.get(TENANT_A, &call_uri).await.0, StatusCode::FORBIDDEN);
    let row = json!({"tenant": TENANT, "extension": HELLO, "request_id": "r", "version": "1.0.0",
                     "endpoint": "GET /x", "status": 200, "duration_ms": 1, "at": 0});
    let (status, _, _) = system
        .send_json("POST", TENANT_A, "/v1/registry/executions", &json!({"items": [row]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut bad = row.clone();
    bad["status"] = json!(42);
    let (status, _, body) = system
        .send_json(
            "POST",
            GATEWAY,
            "/v1/registry/executions",
            &json!({"items": [row, bad]}),
        )
        .await;
    assert_eq!(
        (
            status,
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("items[1].status")
        ),
        (StatusCode::BAD_REQUEST, true),
        "{body}"
    );
}

/// Two gateways on one Redis share each tenant's budget
/// (`GATEWAY_RATE_LIMIT_REDIS_URL`), under keys apart from the runner's.
#[tokio::test]
async fn gateways_on_one_redis_share_the_tenants_rate_limit() {
    let url = redis_url();
    // A tenant of its own, so reruns and parallel tests never share a bucket.
    let tenant = format!("t-{}", &uuid()[..8]);
    let env = [
        ("GATEWAY_TENANT_RATE_LIMIT", "0.01:3"),
        ("GATEWAY_RATE_LIMIT_REDIS_URL", url.as_str()),
    ];
    let (first, _) = gateway_system(&env).await;
    publish_and_install(&first, &tenant).await;
    let (second, _) = gateway_system(&env).await;
    publish_and_install(&second, &tenant).await;
    let uri = format!("/api/ext/{HELLO}/hello");
    let mut statuses = Vec::new();
    for system in [&first, &second, &first, &second] {
        statuses.push(get(system, &uri, Some(&user(&tenant))).await.0.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let ttl = redis_ttl_ms(&url, &format!("{}{tenant}", ext_runner::gateway::REDIS_KEY_PREFIX)).await;
    assert!(ttl > 0, "the bucket lives under the gateway's prefix ({ttl})");
}
