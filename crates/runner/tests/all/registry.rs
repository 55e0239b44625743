//! The registry role over the real router: publish (verified, checked,
//! stored, all or nothing), versions, tenant installs with upgrades and
//! rollbacks, sealed secrets, scoped tokens, uninstall with purge, and the
//! runner executing what was installed. The lifecycle, the races and the
//! purge run on SQLite and on PostgreSQL (`EXT_TEST_POSTGRES_URL`, started
//! by `scripts/test`).

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use ext_runner::Runner;
use ext_runner::registry::Registry;
use ext_runner::server::{AppState, router};
use http::{HeaderMap, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::*;

pub(crate) const ADMIN: &str = "admin-token-0123456789abcdef";
pub(crate) const PUBLISHER: &str = "publisher-token-0123456789ab";
const OTHER_PUBLISHER: &str = "other-publisher-token-012345";
pub(crate) const TENANT_A: &str = "tenant-a-token-0123456789abc";
const TENANT_B: &str = "tenant-b-token-0123456789abc";
pub(crate) const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// A `runner`-scoped registry token: UI install checks and revocations only.
pub(crate) const RUNNER: &str = "runner-token-0123456789abcdef";
pub(crate) const HELLO: &str = "com.example.hello";
/// A `gateway`-scoped registry token: install lookups for calls and
/// execution log appends only.
pub(crate) const GATEWAY: &str = "gateway-token-0123456789abcdef";

pub(crate) fn tokens() -> String {
    format!(
        "root={ADMIN},acme@publisher:com.example={PUBLISHER},other@publisher:com.other={OTHER_PUBLISHER},\
         ta@tenant:tenant-a={TENANT_A},tb@tenant:tenant-b={TENANT_B},fleet@runner={RUNNER},\
         edge@gateway={GATEWAY}"
    )
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A process running the runner and registry roles on a temp directory
/// (`registry_cli` serves it on a socket for the real binary).
pub(crate) struct System {
    pub(crate) test: TestRunner,
    pub(crate) registry: Arc<Registry>,
    /// Signs a grant for each [`System::execute`] when the runner requires
    /// them ([`System::with_grants`]).
    grants: Option<ext_runner::grant::GrantSigner>,
}

/// A database URL for `backend`: SQLite under `dir`, or a fresh schema in
/// the test PostgreSQL.
async fn database_url(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => dir.join("registry.db").display().to_string(),
        Backend::Postgres => {
            let base = std::env::var("EXT_TEST_POSTGRES_URL").unwrap_or_else(|_| {
                panic!("EXT_TEST_POSTGRES_URL is not set: run scripts/test, which starts PostgreSQL")
            });
            let schema = format!("runner_registry_{}", uuid().replace('-', ""));
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&base).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let separator = if base.contains('?') { '&' } else { '?' };
            format!("{base}{separator}options=-c%20search_path%3D{schema}")
        }
    }
}

impl System {
    /// Both roles with a secrets key; `extra` adds or overrides settings.
    pub(crate) async fn start(backend: Backend, extra: &[(&str, &str)]) -> System {
        let mut env = vec![("RUNNER_SECRETS_KEY", KEY_B64)];
        env.extend_from_slice(extra);
        System::without_secrets_key(backend, &env).await
    }

    async fn without_secrets_key(backend: Backend, extra: &[(&str, &str)]) -> System {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url(backend, dir.path()).await;
        System::both_roles(dir, &url, extra).await
    }

    /// Both roles on `dir` and the database at `url`, with the test tokens
    /// and `extra`.
    pub(crate) async fn both_roles(dir: tempfile::TempDir, url: &str, extra: &[(&str, &str)]) -> System {
        let tokens = tokens();
        let mut env: Vec<(&str, &str)> = vec![
            ("RUNNER_ROLES", "runner,registry"),
            ("REGISTRY_TOKENS", &tokens),
            ("REGISTRY_DATABASE_URL", url),
        ];
        env.extend_from_slice(extra);
        System::open(dir, &env).await.unwrap()
    }

    /// The roles `env` names on `dir` (the registry always; the gateway
    /// when `RUNNER_ROLES` names it).
    pub(crate) async fn open(dir: tempfile::TempDir, env: &[(&str, &str)]) -> anyhow::Result<System> {
        let config = test_config(dir.path(), env);
        System::open_config(dir, config).await
    }

    /// [`System::start`] on SQLite, its configuration loaded as `serve
    /// --dev` loads it.
    pub(crate) async fn start_dev(extra: &[(&str, &str)]) -> System {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("registry.db").display().to_string();
        let tokens = tokens();
        let mut env: Vec<(&str, &str)> = vec![
            ("RUNNER_SECRETS_KEY", KEY_B64),
            ("RUNNER_ROLES", "runner,registry"),
            ("REGISTRY_TOKENS", &tokens),
            ("REGISTRY_DATABASE_URL", &url),
        ];
        env.extend_from_slice(extra);
        let dev = ext_runner::config::Overrides {
            dev: true,
            ..Default::default()
        };
        let config = test_config_with(dir.path(), &env, &dev);
        System::open_config(dir, config).await.unwrap()
    }

    /// The roles `config` names on `dir`, as [`System::open`].
    async fn open_config(dir: tempfile::TempDir, config: ext_runner::config::Config) -> anyhow::Result<System> {
        let runner = Arc::new(Runner::new(config).unwrap());
        let registry = Arc::new(Registry::open(&runner).await?);
        let gateway = match runner.config().roles.gateway {
            true => Some(Arc::new(
                ext_runner::gateway::Gateway::open(&runner, Some(&registry)).await?,
            )),
            false => None,
        };
        let state = AppState::with_roles(runner.clone(), Some(registry.clone()), gateway);
        Ok(System {
            test: TestRunner { runner, state, dir },
            registry,
            grants: None,
        })
    }

    /// The same system restarted on SQLite: its data directory and database
    /// opened again by a new runner and registry with `env` (e.g. other
    /// secrets keys), the old ones closed first.
    pub(crate) async fn restart_sqlite(self, env: &[(&str, &str)]) -> System {
        let System { test, registry, .. } = self;
        registry.database().close().await;
        let TestRunner { runner, state, dir } = test;
        drop((state, registry, runner));
        let url = dir.path().join("registry.db").display().to_string();
        System::both_roles(dir, &url, env).await
    }

    /// Both roles with a secrets key, the runner requiring execution grants
    /// (`RUNNER_GRANT_KEYS`) that [`System::execute`] signs from the install.
    pub(crate) async fn with_grants(backend: Backend) -> System {
        let keys = tempfile::tempdir().unwrap();
        let private = keys.path().join("grant.pem");
        let (jwks, _) = ext_runner::cli::grant::grant_keygen(&private).unwrap();
        let mut system = System::start(backend, &[("RUNNER_GRANT_KEYS", jwks.to_str().unwrap())]).await;
        system.grants = Some(ext_runner::grant::GrantSigner::load(&private).unwrap());
        system
    }

    pub(crate) async fn call(&self, request: http::request::Builder, body: Vec<u8>) -> (StatusCode, HeaderMap, Value) {
        let response = router(self.test.state.clone())
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, token: &str, uri: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.call(authorized(Request::get(uri), token), Vec::new()).await;
        (status, body)
    }

    pub(crate) async fn send_json(
        &self,
        method: &str,
        token: &str,
        uri: &str,
        body: &Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let request =
            authorized(Request::builder().method(method).uri(uri), token).header("content-type", "application/json");
        self.call(request, body.to_string().into_bytes()).await
    }

    /// `POST /v1/registry/bundles` with the archive's signature by the test key.
    pub(crate) async fn publish(&self, token: &str, archive: &[u8]) -> (StatusCode, Value) {
        let request = authorized(Request::post("/v1/registry/bundles"), token).header("x-ext-signature", sign(archive));
        let (status, _, body) = self.call(request, archive.to_vec()).await;
        (status, body)
    }

    pub(crate) async fn install(&self, token: &str, tenant: &str, body: &Value) -> (StatusCode, Value) {
        let uri = format!("/v1/registry/tenants/{tenant}/installs/{HELLO}");
        let (status, _, body) = self.send_json("PUT", token, &uri, body).await;
        (status, body)
    }

    /// Execute `GET path` of the tenant's install as the runner answers it,
    /// with a grant made from the install when the runner requires one.
    pub(crate) async fn execute(&self, install: &Value, path: &str) -> (StatusCode, Value) {
        let text = |field: &str| install[field].as_str().unwrap().to_string();
        let digest = ext_bundle::Digest::parse(&text("content_hash")).unwrap();
        let mut env = envelope(&digest, "GET", path);
        env["context"]["tenant_id"] = install["tenant"].clone();
        env["context"]["extension_id"] = json!(HELLO);
        let auth = format!("Bearer {TOKEN}");
        let mut headers = vec![("authorization", auth.as_str())];
        let grant;
        if let Some(signer) = &self.grants {
            env["context"]["install_id"] = install["install_id"].clone();
            env["context"]["version_id"] = install["version_id"].clone();
            let list = |field: &str| -> Vec<String> { serde_json::from_value(install[field].clone()).unwrap() };
            let claims = ext_runner::grant::Claims {
                tenant: text("tenant"),
                extension: HELLO.to_string(),
                install_id: Some(text("install_id")),
                version_id: Some(text("version_id")),
                content_hash: text("content_hash"),
                capabilities: list("capabilities"),
                egress: list("egress"),
                request_id: None,
                exp: ext_runner::grant::now_secs() + 60,
            };
            grant = signer.sign(&claims).unwrap();
            headers.push(("x-ext-grant", grant.as_str()));
        }
        let (status, _, body) = self.test.post_raw(env.to_string().into_bytes(), &headers).await;
        (status, body)
    }

    /// `GET` the install's UI entry for `tenant`, as the runner serves it.
    pub(crate) async fn ui(&self, install: &Value, tenant: &str) -> StatusCode {
        let hash = install["content_hash"].as_str().unwrap().replace(':', "%3A");
        get_text(
            &self.test,
            &format!("/ext-ui/{HELLO}/{hash}/index.html?tenant={tenant}"),
        )
        .await
        .0
    }
}

pub(crate) fn authorized(request: http::request::Builder, token: &str) -> http::request::Builder {
    request.header("authorization", format!("Bearer {token}"))
}

/// The example bundle at `version`; without `/visits` unless `visits`.
pub(crate) fn hello_archive(version: &str, visits: bool) -> Vec<u8> {
    edited_hello(|manifest| {
        manifest["version"] = json!(version);
        if !visits {
            manifest["api"]["endpoints"]
                .as_array_mut()
                .unwrap()
                .retain(|e| e["path"] != "/visits");
        }
    })
}

/// The example bundle with its manifest edited.
pub(crate) fn edited_hello(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&hello_dir(), dir.path());
    let path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, manifest.to_string()).unwrap();
    ext_bundle::pack_dir(dir.path()).unwrap()
}

/// Publish → install → execute → upgrade → execute → rollback → execute →
/// uninstall, every execution carrying a grant made from the install, and
/// the UI served only while (and to whom) it is installed.
async fn lifecycle(backend: Backend) {
    let system = System::with_grants(backend).await;
    let v1 = hello_archive("1.0.0", false);
    let v2 = hello_archive("1.1.0", true);
    let (status, published) = system.publish(PUBLISHER, &v1).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    assert_eq!(published["name"], HELLO);
    assert_eq!(published["content_hash"], ext_bundle::Digest::of(&v1).to_string());
    assert!(published["signer"].as_str().unwrap().starts_with("key:"), "{published}");
    let (status, again) = system.publish(PUBLISHER, &v1).await;
    assert_eq!(
        (status, &again["version_id"]),
        (StatusCode::OK, &published["version_id"])
    );
    assert_eq!(system.publish(PUBLISHER, &v2).await.0, StatusCode::CREATED);

    // Install 1.0.0: /hello answers, /visits is not an endpoint of it.
    let (status, installed) = system.install(TENANT_A, "tenant-a", &json!({"version": "1.0.0"})).await;
    assert_eq!(status, StatusCode::CREATED, "{installed}");
    assert_eq!(installed["version"], "1.0.0");
    assert_eq!(installed["capabilities"].as_array().unwrap().len(), 5, "{installed}");
    let install_id = installed["install_id"].clone();
    let (status, body) = system.execute(&installed, "/hello").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(guest_json(&body)["tenant"], "tenant-a");
    assert_eq!(system.ui(&installed, "tenant-a").await, StatusCode::OK);
    assert_eq!(
        system.ui(&installed, "tenant-b").await,
        StatusCode::NOT_FOUND,
        "not installed there"
    );
    let digest = ext_bundle::Digest::parse(installed["content_hash"].as_str().unwrap()).unwrap();
    let (status, _, body) = system.test.post(&envelope(&digest, "GET", "/hello")).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "grant_invalid"),
        "no grant: {body}"
    );
    let (status, body) = system.execute(&installed, "/visits").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "endpoint_not_found")
    );

    // Upgrade to 1.1.0: same install, /visits now counts.
    let (status, upgraded) = system.install(TENANT_A, "tenant-a", &json!({"version": "1.1.0"})).await;
    assert_eq!(status, StatusCode::OK, "{upgraded}");
    assert_eq!(upgraded["install_id"], install_id);
    assert_eq!(upgraded["content_hash"], ext_bundle::Digest::of(&v2).to_string());
    let (status, body) = system.execute(&upgraded, "/visits").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(guest_json(&body), json!({"visits": 1}));

    // Roll back to 1.0.0: /visits is gone again.
    let (status, rolled) = system.install(TENANT_A, "tenant-a", &json!({"version": "1.0.0"})).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert_eq!(rolled["install_id"], install_id);
    let (status, body) = system.execute(&rolled, "/visits").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "endpoint_not_found")
    );
    assert_eq!(system.execute(&rolled, "/hello").await.0, StatusCode::OK);

    let (status, history) = system
        .get(
            TENANT_A,
            &format!("/v1/registry/tenants/tenant-a/installs/{HELLO}/history"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["install", "upgrade", "rollback"]);
    assert!(
        history["items"].as_array().unwrap().iter().all(|h| h["actor"] == "ta"),
        "{history}"
    );

    // Uninstall: gone from the tenant's installs and from UI validation.
    let hash = rolled["content_hash"].as_str().unwrap().to_string();
    let validate = format!("/v1/registry/installs/validate?tenant=tenant-a&extension={HELLO}&content_hash={hash}");
    assert_eq!(system.get(ADMIN, &validate).await.0, StatusCode::OK);
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}");
    let (status, _, _) = system
        .call(authorized(Request::delete(&uri), TENANT_A), Vec::new())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = system.get(TENANT_A, &uri).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "install_not_found")
    );
    assert_eq!(system.get(ADMIN, &validate).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        system.ui(&rolled, "tenant-a").await,
        StatusCode::NOT_FOUND,
        "uninstalled: the next request"
    );
    // Without a tenant (a page's own scripts and styles): the manifest-name rule.
    assert_eq!(system.ui(&rolled, "").await, StatusCode::OK);
    let (status, _, _) = system
        .call(authorized(Request::delete(&uri), TENANT_A), Vec::new())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Two publishes of one version with other bytes at once, and two edits of
/// one install revision at once: exactly one of each wins.
async fn races(backend: Backend) {
    let system = System::start(backend, &[]).await;
    let (a, b) = (hello_archive("2.0.0", false), hello_archive("2.0.0", true));
    let (first, second) = tokio::join!(system.publish(PUBLISHER, &a), system.publish(PUBLISHER, &b));
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{first:?} {second:?}"
    );
    let (_, extension) = system.get(ADMIN, &format!("/v1/registry/extensions/{HELLO}")).await;
    assert_eq!(extension["versions"].as_array().unwrap().len(), 1, "{extension}");

    let (status, installed) = system.install(ADMIN, "tenant-a", &json!({"version": "2.0.0"})).await;
    assert_eq!(status, StatusCode::CREATED, "{installed}");
    let revision = installed["revision"].as_i64().unwrap();
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}");
    let edit = |value: &'static str| {
        let request = authorized(Request::put(&uri), ADMIN)
            .header("content-type", "application/json")
            .header("if-match", format!("\"{revision}\""));
        let body = json!({"version": "2.0.0", "config": {"colour": value}});
        system.call(request, body.to_string().into_bytes())
    };
    let (first, second) = tokio::join!(edit("red"), edit("blue"));
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::PRECONDITION_FAILED],
        "{first:?} {second:?}"
    );
    let winner = if first.0 == StatusCode::OK { first } else { second };
    assert_eq!(winner.1["etag"], format!("\"{}\"", revision + 1));
    let (_, now) = system.get(ADMIN, &uri).await;
    assert_eq!(now["config"], winner.2["config"]);
    assert_eq!(now["revision"], revision + 1);
}

/// `GET /visits` of the tenant's install: the example's counter in KV.
pub(crate) async fn visits(system: &System, tenant: &str) -> u64 {
    let (status, install) = system
        .get(ADMIN, &format!("/v1/registry/tenants/{tenant}/installs/{HELLO}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{install}");
    let (status, body) = system.execute(&install, "/visits").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    guest_json(&body)["visits"].as_u64().unwrap()
}

impl System {
    /// `DELETE` of the tenant's install, with `query` (`""` or `?…`).
    async fn uninstall(&self, tenant: &str, query: &str) -> (StatusCode, Value) {
        let uri = format!("/v1/registry/tenants/{tenant}/installs/{HELLO}{query}");
        let (status, _, body) = self.call(authorized(Request::delete(&uri), ADMIN), Vec::new()).await;
        (status, body)
    }
}

/// Uninstall with purge: what a guest stored in KV is gone on reinstall,
/// while a plain uninstall keeps it and another tenant's stays; a purge
/// whose KV step never ran blocks reinstalls until the next purge finishes
/// it. On PostgreSQL the KV store is PostgreSQL too.
async fn purge(backend: Backend) {
    let kv_dir = tempfile::tempdir().unwrap();
    let kv_url = match backend {
        Backend::Postgres => Some(database_url(Backend::Postgres, kv_dir.path()).await),
        Backend::Sqlite => None,
    };
    let extra: Vec<(&str, &str)> = kv_url.iter().map(|url| ("STORAGE_KV_URL", url.as_str())).collect();
    let system = System::start(backend, &extra).await;
    assert_eq!(
        system.publish(PUBLISHER, &hello_archive("1.0.0", true)).await.0,
        StatusCode::CREATED
    );
    let v1 = json!({"version": "1.0.0"});
    for tenant in ["tenant-a", "tenant-b"] {
        assert_eq!(system.install(ADMIN, tenant, &v1).await.0, StatusCode::CREATED);
    }
    assert_eq!(visits(&system, "tenant-a").await, 1);
    assert_eq!(visits(&system, "tenant-a").await, 2);
    assert_eq!(visits(&system, "tenant-b").await, 1);

    // A plain uninstall keeps the data: a reinstall counts on.
    assert_eq!(system.uninstall("tenant-a", "").await.0, StatusCode::NO_CONTENT);
    assert_eq!(system.install(ADMIN, "tenant-a", &v1).await.0, StatusCode::CREATED);
    assert_eq!(visits(&system, "tenant-a").await, 3);

    // Only true or false; a refused purge changes nothing.
    let (status, body) = system.uninstall("tenant-a", "?purge=yes").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("purge: "),
        "{body}"
    );
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}");
    assert_eq!(system.get(ADMIN, &uri).await.0, StatusCode::OK);

    // Purge: the install and its data go; nothing is left to purge after.
    assert_eq!(
        system.uninstall("tenant-a", "?purge=true").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(system.get(ADMIN, &uri).await.0, StatusCode::NOT_FOUND);
    let (status, body) = system.uninstall("tenant-a", "?purge=true").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "install_not_found")
    );
    assert_eq!(system.install(ADMIN, "tenant-a", &v1).await.0, StatusCode::CREATED);
    assert_eq!(visits(&system, "tenant-a").await, 1, "the count started again");
    assert_eq!(visits(&system, "tenant-b").await, 2, "another tenant's data stays");

    let (_, history) = system.get(ADMIN, &format!("{uri}/history")).await;
    let actions: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["install", "uninstall", "install", "uninstall", "purge", "install"]
    );
    let (_, audit) = system.get(ADMIN, "/v1/registry/audit").await;
    let subject = format!("tenant-a/{HELLO}");
    let entry = |action: &str| {
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action && e["subject"] == subject.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no {action} in {audit}"))
    };
    assert_eq!(entry("purge")["actor"], "root");
    let purged = entry("purged");
    assert_eq!(
        (&purged["actor"], &purged["detail"]["kv_entries"]),
        (&json!("root"), &json!(1))
    );

    // The KV step of a purge did not happen (as if the store failed after the
    // registry removed the install): no reinstall until a purge finishes it.
    system
        .registry
        .database()
        .uninstall_purging("tenant-a", HELLO, ext_registry::Precondition::None, "root")
        .await
        .unwrap()
        .unwrap();
    let (status, body) = system.install(ADMIN, "tenant-a", &v1).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "conflict"),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("?purge=true"),
        "{body}"
    );
    assert_eq!(
        system.uninstall("tenant-a", "?purge=true").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(system.install(ADMIN, "tenant-a", &v1).await.0, StatusCode::CREATED);
    assert_eq!(visits(&system, "tenant-a").await, 1, "the retry purged");

    let (_, text) = get_text(&system.test, "/metrics").await;
    let count = |labels: &str| metric_value(&text, &format!("ext_runner_registry_operations_total{{{labels}}}"));
    assert_eq!(
        (
            count("operation=\"purge\",outcome=\"ok\""),
            count("operation=\"purge\",outcome=\"refused\""),
            count("operation=\"uninstall\",outcome=\"ok\"")
        ),
        (Some(2.0), Some(1.0), Some(1.0)),
        "{text}"
    );
}

mod sqlite {
    use super::Backend;

    #[tokio::test]
    async fn uninstall_with_purge_removes_the_kv_data_and_only_it() {
        super::purge(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn publish_install_execute_upgrade_rollback_uninstall() {
        super::lifecycle(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn concurrent_publishes_and_edits_have_one_winner() {
        super::races(Backend::Sqlite).await;
    }
}

mod postgres {
    use super::Backend;

    #[tokio::test]
    async fn uninstall_with_purge_removes_the_kv_data_and_only_it() {
        super::purge(Backend::Postgres).await;
    }

    #[tokio::test]
    async fn publish_install_execute_upgrade_rollback_uninstall() {
        super::lifecycle(Backend::Postgres).await;
    }

    #[tokio::test]
    async fn concurrent_publishes_and_edits_have_one_winner() {
        super::races(Backend::Postgres).await;
    }
}

#[tokio::test]
async fn g03_unsigned_and_wrongly_signed_bundles_are_refused() {
    let system = System::start(Backend::Sqlite, &[]).await;
    let archive = hello_archive("1.0.0", false);
    let (status, _, body) = system
        .call(
            authorized(Request::post("/v1/registry/bundles"), PUBLISHER),
            archive.clone(),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "signature_rejected")
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("x-ext-signature"),
        "{body}"
    );

    let stranger = ext_bundle::signature::SigningKey::generate(ext_bundle::signature::KeyAlgorithm::EcdsaP256);
    let forged = ext_bundle::signature::encode_signature(&stranger.sign(&archive));
    for signature in [forged.as_str(), "not base64!", &sign(b"other bytes")] {
        let request = authorized(Request::post("/v1/registry/bundles"), PUBLISHER).header("x-ext-signature", signature);
        let (status, _, body) = system.call(request, archive.clone()).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "signature_rejected"),
            "{signature}: {body}"
        );
    }
    // Nothing was recorded or stored.
    let (status, _) = system.get(ADMIN, &format!("/v1/registry/extensions/{HELLO}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!system.test.store_dir(&ext_bundle::Digest::of(&archive)).exists());
}

#[tokio::test]
async fn g03_other_bytes_for_a_published_version_are_refused() {
    let system = System::start(Backend::Sqlite, &[]).await;
    let first = hello_archive("1.0.0", false);
    let other = hello_archive("1.0.0", true);
    assert_eq!(system.publish(PUBLISHER, &first).await.0, StatusCode::CREATED);
    let (status, body) = system.publish(PUBLISHER, &other).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "version_exists"),
        "{body}"
    );
    // The refused bundle left no object behind.
    assert!(!system.test.store_dir(&ext_bundle::Digest::of(&other)).exists());
    assert!(
        system
            .test
            .store_dir(&ext_bundle::Digest::of(&first))
            .join("bundle.tar.zst")
            .exists()
    );
}

#[tokio::test]
async fn g03_capabilities_and_hosts_the_manifest_does_not_declare_are_refused() {
    let system = System::start(Backend::Sqlite, &[]).await;
    system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await;
    let (status, body) = system
        .install(
            ADMIN,
            "tenant-a",
            &json!({"version": "1.0.0", "capabilities": ["cap:log.emit", "cap:ui.proxy", "cap:made.up"]}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "not_declared"),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cap:ui.proxy") && message.contains("cap:made.up"),
        "{message}"
    );
    let (status, body) = system
        .install(
            ADMIN,
            "tenant-a",
            &json!({"version": "1.0.0", "egress": ["https://evil.example"]}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "not_declared"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https://evil.example")
    );
    // A subset is granted as asked.
    let (status, body) = system
        .install(
            ADMIN,
            "tenant-a",
            &json!({"version": "1.0.0", "capabilities": ["cap:log.emit"], "egress": ["https://api.example.com"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["capabilities"], json!(["cap:log.emit"]));
    assert_eq!(body["egress"], json!(["https://api.example.com"]));
}

/// G-03 for a manifest without `network` (as upstream manifests are): it
/// declares no host list, so an install may name any valid egress pattern
/// (its list is then the only one besides the operator's) and omitted
/// `egress` means none; a manifest with `network` still bounds the
/// install's list, an explicit empty one included.
#[tokio::test]
async fn g03_an_upstream_manifest_takes_the_installs_egress_and_a_declared_list_still_bounds_it() {
    let system = System::start(Backend::Sqlite, &[]).await;
    let version = |version: &str, network: Option<Value>| {
        edited_hello(|manifest| {
            manifest["version"] = json!(version);
            match network {
                Some(network) => manifest["network"] = network,
                None => drop(manifest.as_object_mut().unwrap().remove("network")),
            }
        })
    };
    let (status, body) = system.publish(PUBLISHER, &version("1.0.0", None)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let asked = json!([
        "https://partner.example",
        " https://*.other.example:8443",
        "https://partner.example"
    ]);
    let (status, installed) = system
        .install(TENANT_A, "tenant-a", &json!({"version": "1.0.0", "egress": asked}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{installed}");
    let listed = json!(["https://*.other.example:8443", "https://partner.example"]);
    assert_eq!(installed["egress"], listed, "trimmed, sorted, once each");
    let (status, read) = system
        .get(TENANT_A, &format!("/v1/registry/tenants/tenant-a/installs/{HELLO}"))
        .await;
    assert_eq!((status, &read["egress"]), (StatusCode::OK, &listed), "{read}");
    // Still patterns only.
    let (status, body) = system
        .install(
            TENANT_A,
            "tenant-a",
            &json!({"version": "1.0.0", "egress": ["partner.example"]}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("egress[0]"),
        "{body}"
    );
    // Omitted: none (deny by default).
    let (status, body) = system.install(TENANT_A, "tenant-a", &json!({"version": "1.0.0"})).await;
    assert_eq!((status, &body["egress"]), (StatusCode::OK, &json!([])), "{body}");

    // A declared list, even an empty one, bounds the install's.
    for (v, network) in [
        ("1.1.0", json!({"allowed_hosts": []})),
        ("1.2.0", json!({})),
        ("1.3.0", json!({"allowed_hosts": ["https://api.example.com"]})),
    ] {
        let (status, body) = system.publish(PUBLISHER, &version(v, Some(network.clone()))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = system
            .install(
                TENANT_A,
                "tenant-a",
                &json!({"version": v, "egress": ["https://partner.example"]}),
            )
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNPROCESSABLE_ENTITY, "not_declared"),
            "{network}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("https://partner.example"),
            "{body}"
        );
    }
    let (status, body) = system
        .install(
            TENANT_A,
            "tenant-a",
            &json!({"version": "1.3.0", "egress": ["https://api.example.com"]}),
        )
        .await;
    assert_eq!(
        (status, &body["egress"]),
        (StatusCode::OK, &json!(["https://api.example.com"])),
        "{body}"
    );
}

#[tokio::test]
async fn g03_another_tenants_installs_and_secrets_are_invisible_and_secrets_never_returned() {
    let system = System::start(Backend::Sqlite, &[]).await;
    system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await;
    assert_eq!(
        system
            .install(TENANT_A, "tenant-a", &json!({"version": "1.0.0"}))
            .await
            .0,
        StatusCode::CREATED
    );
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}");
    let secret = "s3cr3t-value-never-shown";
    let (status, _, _) = system
        .send_json("PUT", TENANT_A, &format!("{uri}/secrets"), &json!({"api-key": secret}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    for path in [
        "/v1/registry/tenants/tenant-a/installs".to_string(),
        uri.clone(),
        format!("{uri}/history"),
    ] {
        let (status, body) = system.get(TENANT_B, &path).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "install_not_found"),
            "{path}: {body}"
        );
    }
    let (status, _, body) = system
        .send_json("PUT", TENANT_B, &format!("{uri}/secrets"), &json!({"api-key": "x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _, _) = system
        .call(authorized(Request::delete(&uri), TENANT_B), Vec::new())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No route returns the value: the install shows the secret's name only.
    let (_, install) = system.get(TENANT_A, &uri).await;
    assert_eq!(install["secret_names"], json!(["api-key"]));
    for path in [
        uri.clone(),
        format!("{uri}/history"),
        "/v1/registry/tenants/tenant-a/installs".to_string(),
        "/v1/registry/audit".to_string(),
        format!("/v1/registry/extensions/{HELLO}"),
    ] {
        let (status, body) = system.get(ADMIN, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!body.to_string().contains(secret), "{path} shows the secret");
    }
}

/// The sealed secrets are the runner's secret envelope, bound to tenant and
/// extension: the guest's `{{secret:api-key}}` handle is filled from them.
#[tokio::test]
async fn install_secrets_are_sealed_for_the_runner() {
    let upstream = crate::egress::upstream().await;
    let origin = format!("http://127.0.0.1:{}", upstream.port());
    let system = System::start(
        Backend::Sqlite,
        &[
            ("EXT_EGRESS_ALLOWLIST", &origin),
            ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
            ("EXT_EGRESS_SECRETS_REQUIRE_HTTPS", "false"),
        ],
    )
    .await;
    // The example declares http://127.0.0.1:8090; the upstream listens on an
    // ephemeral port.
    let archive = edited_hello(|manifest| manifest["network"]["allowed_hosts"] = json!([origin]));
    let (status, published) = system.publish(PUBLISHER, &archive).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    system.install(ADMIN, "tenant-a", &json!({"version": "1.0.0"})).await;
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}/secrets");
    let (status, _, _) = system
        .send_json("PUT", ADMIN, &uri, &json!({"api-key": "upstream-api-key-777"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let sealed = system
        .registry
        .database()
        .sealed_secrets("tenant-a", HELLO)
        .await
        .unwrap()
        .unwrap();
    assert!(!sealed.contains("upstream-api-key-777"));
    let relay = |tenant: &str| {
        let digest = ext_bundle::Digest::parse(published["content_hash"].as_str().unwrap()).unwrap();
        let mut env = envelope(&digest, "POST", "/relay");
        env["context"]["tenant_id"] = json!(tenant);
        env["context"]["extension_id"] = json!(HELLO);
        env["http"]["body_b64"] = json!(b64(json!({"url": format!("{origin}/check")}).to_string().as_bytes()));
        env["secret_envelope"] = serde_json::from_str(&sealed).unwrap();
        env
    };
    let (status, _, body) = system.test.post(&relay("tenant-a")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        guest_json(&body),
        json!({"upstream_status": 200, "upstream_body": "key ok"})
    );
    // Bound to the tenant: another tenant's envelope cannot carry it.
    // (the handle stays unfilled, so the guest's fetch fails).
    let (_, _, body) = system.test.post(&relay("tenant-b")).await;
    assert_eq!(body["status"], 502, "{body}");
    assert_eq!(guest_json(&body)["error"], "fetch_failed");
}

#[tokio::test]
async fn secrets_without_a_key_are_refused_with_503() {
    let system = System::without_secrets_key(Backend::Sqlite, &[]).await;
    system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await;
    system.install(ADMIN, "tenant-a", &json!({"version": "1.0.0"})).await;
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}/secrets");
    let (status, headers, body) = system.send_json("PUT", ADMIN, &uri, &json!({"k": "v"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "secrets_unavailable")
    );
    assert!(headers.contains_key("x-request-id"));
    let (status, _, body) = system.send_json("POST", ADMIN, RESEAL, &json!({})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "secrets_unavailable"),
        "{body}"
    );
}

const RESEAL: &str = "/v1/registry/secrets/reseal";
/// The secrets key the system rotates to (`KEY_B64` is the first).
const NEXT_KEY_B64: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// A key no install was ever sealed under.
const STRAY_KEY_B64: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

/// A re-seal walks every page: one install more than a page holds, all
/// sealed under the previous key, are all moved, then all current.
#[tokio::test]
async fn a_reseal_reaches_installs_beyond_the_first_page() {
    use ext_runner::registry::installs::RESEAL_BATCH;
    let system = System::start(Backend::Sqlite, &[]).await;
    system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await;
    let count = RESEAL_BATCH as u64 + 1;
    for i in 0..count {
        let tenant = format!("tenant-{i}");
        let (status, body) = system.install(ADMIN, &tenant, &json!({"version": "1.0.0"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let uri = format!("/v1/registry/tenants/{tenant}/installs/{HELLO}/secrets");
        let (status, _, _) = system.send_json("PUT", ADMIN, &uri, &json!({"k": "v"})).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let system = system
        .restart_sqlite(&[
            ("RUNNER_SECRETS_KEY", NEXT_KEY_B64),
            ("RUNNER_SECRETS_PREVIOUS_KEYS", KEY_B64),
        ])
        .await;
    let (status, _, report) = system.send_json("POST", ADMIN, RESEAL, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report,
        json!({"resealed": count, "already_current": 0, "failed": 0, "failures": []})
    );
    let (_, _, again) = system.send_json("POST", ADMIN, RESEAL, &json!({})).await;
    assert_eq!(
        again,
        json!({"resealed": 0, "already_current": count, "failed": 0, "failures": []})
    );
}

/// Rotation without downtime: secrets sealed under key A still open once
/// the system runs with B current and A previous; the re-seal moves them to
/// B (admins only, counted, audited, repeatable), after which B alone
/// opens them and the envelope sealed under A no longer opens; a key that
/// opens nothing makes the re-seal name the install, not a value.
#[tokio::test]
async fn the_secrets_key_rotates_and_installs_are_resealed() {
    let upstream = crate::egress::upstream().await;
    let origin = format!("http://127.0.0.1:{}", upstream.port());
    let egress = [
        ("EXT_EGRESS_ALLOWLIST", origin.as_str()),
        ("EXT_EGRESS_ALLOW_PRIVATE_CIDRS", "127.0.0.1/32"),
        ("EXT_EGRESS_SECRETS_REQUIRE_HTTPS", "false"),
    ];
    let with = |keys: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        egress.iter().copied().chain(keys.iter().copied()).collect()
    };
    let system = System::start(Backend::Sqlite, &egress).await;
    let archive = edited_hello(|manifest| manifest["network"]["allowed_hosts"] = json!([origin]));
    let (status, published) = system.publish(PUBLISHER, &archive).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    let (_, installed) = system.install(ADMIN, "tenant-a", &json!({"version": "1.0.0"})).await;
    let secrets = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}/secrets");
    let (status, _, _) = system
        .send_json("PUT", ADMIN, &secrets, &json!({"api-key": "upstream-api-key-777"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stored = |system: &System| {
        let db = system.registry.database().clone();
        async move { db.sealed_secrets("tenant-a", HELLO).await.unwrap().unwrap() }
    };
    let under_a = stored(&system).await;
    let digest = ext_bundle::Digest::parse(published["content_hash"].as_str().unwrap()).unwrap();
    let relay = |sealed: &str| {
        let mut env = envelope(&digest, "POST", "/relay");
        env["context"]["tenant_id"] = json!("tenant-a");
        env["context"]["extension_id"] = json!(HELLO);
        env["http"]["body_b64"] = json!(b64(json!({"url": format!("{origin}/check")}).to_string().as_bytes()));
        env["secret_envelope"] = serde_json::from_str(sealed).unwrap();
        env
    };
    let key_ok = json!({"upstream_status": 200, "upstream_body": "key ok"});

    // B current, A previous: the envelope sealed under A opens.
    let system = system
        .restart_sqlite(&with(&[
            ("RUNNER_SECRETS_KEY", NEXT_KEY_B64),
            ("RUNNER_SECRETS_PREVIOUS_KEYS", KEY_B64),
        ]))
        .await;
    let (status, _, body) = system.test.post(&relay(&under_a)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(guest_json(&body), key_ok);

    // Admins only.
    for token in [TENANT_A, PUBLISHER, RUNNER] {
        let (status, _, body) = system.send_json("POST", token, RESEAL, &json!({})).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{token}: {body}"
        );
    }
    assert_eq!(stored(&system).await, under_a, "a refused re-seal writes nothing");
    let (status, _, report) = system.send_json("POST", ADMIN, RESEAL, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report,
        json!({"resealed": 1, "already_current": 0, "failed": 0, "failures": []})
    );
    let under_b = stored(&system).await;
    assert_ne!(under_b, under_a);
    assert!(!under_b.contains("upstream-api-key-777"));
    let (_, _, again) = system.send_json("POST", ADMIN, RESEAL, &json!({})).await;
    assert_eq!(
        again,
        json!({"resealed": 0, "already_current": 1, "failed": 0, "failures": []})
    );
    assert_eq!(stored(&system).await, under_b, "a current envelope is left");
    let (_, audit) = system.get(ADMIN, "/v1/registry/audit").await;
    let entries = audit["items"].as_array().unwrap();
    let resealed: Vec<&Value> = entries.iter().filter(|e| e["action"] == "reseal").collect();
    assert_eq!(resealed.len(), 1, "{audit}");
    assert_eq!(resealed[0]["subject"], format!("tenant-a/{HELLO}"));
    assert_eq!(resealed[0]["actor"], "root");
    assert_eq!(resealed[0]["detail"]["install_id"], installed["install_id"]);
    let runs: Vec<&Value> = entries.iter().filter(|e| e["action"] == "reseal_secrets").collect();
    assert_eq!(runs.len(), 2, "{audit}");
    assert!(!audit.to_string().contains("upstream-api-key-777"));

    // B alone: the re-sealed envelope opens, the one under A no longer does.
    let system = system
        .restart_sqlite(&with(&[("RUNNER_SECRETS_KEY", NEXT_KEY_B64)]))
        .await;
    let (status, _, body) = system.test.post(&relay(&under_b)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(guest_json(&body), key_ok);
    let (_, _, body) = system.test.post(&relay(&under_a)).await;
    assert_eq!(body["status"], 502, "{body}");
    assert_eq!(guest_json(&body)["error"], "fetch_failed");

    // A key that opens nothing: the install is named, its envelope left.
    let system = system
        .restart_sqlite(&with(&[("RUNNER_SECRETS_KEY", STRAY_KEY_B64)]))
        .await;
    let (status, _, report) = system.send_json("POST", ADMIN, RESEAL, &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["resealed"].clone(), report["failed"].clone()),
        (json!(0), json!(1))
    );
    let failure = &report["failures"][0];
    assert_eq!(failure["install_id"], installed["install_id"]);
    assert_eq!(
        (failure["tenant"].as_str(), failure["extension"].as_str()),
        (Some("tenant-a"), Some(HELLO))
    );
    assert!(
        failure["reason"].as_str().unwrap().contains("does not open"),
        "{failure}"
    );
    assert_eq!(stored(&system).await, under_b);
}

#[tokio::test]
async fn callers_need_a_token_and_stay_in_their_scope() {
    let system = System::start(Backend::Sqlite, &[]).await;
    let archive = hello_archive("1.0.0", false);
    let (status, _, body) = system.call(Request::get("/v1/registry/extensions"), Vec::new()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    let (status, _) = system
        .get("wrong-token-0123456789abcdef", "/v1/registry/extensions")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Publishers publish their own names only; tenants publish nothing.
    for token in [OTHER_PUBLISHER, TENANT_A] {
        let (status, body) = system.publish(token, &archive).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{body}"
        );
    }
    assert_eq!(system.publish(PUBLISHER, &archive).await.0, StatusCode::CREATED);
    let yank = format!("/v1/registry/extensions/{HELLO}/versions/1.0.0/yank");
    let (status, _, _) = system.send_json("POST", OTHER_PUBLISHER, &yank, &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A publisher manages no tenant; only admins read the audit log or
    // revoke signers.
    assert_eq!(
        system
            .install(PUBLISHER, "tenant-a", &json!({"version": "1.0.0"}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    for token in [PUBLISHER, TENANT_A] {
        assert_eq!(system.get(token, "/v1/registry/audit").await.0, StatusCode::FORBIDDEN);
        let (status, _, _) = system
            .send_json(
                "POST",
                token,
                "/v1/registry/signers/revoke",
                &json!({"signer": "key:x"}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // The catalogue is readable by every caller.
    let (status, list) = system.get(TENANT_B, "/v1/registry/extensions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["name"], HELLO);

    let (status, audit) = system.get(ADMIN, "/v1/registry/audit").await;
    assert_eq!(status, StatusCode::OK);
    let entries = audit["items"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["action"] == "publish" && e["actor"] == "acme"),
        "{audit}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let system = System::start(Backend::Sqlite, &[]).await;
    system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await;
    let cases = [
        (json!({"version": 3}), "version"),
        (json!({"version": "1.0"}), "version"),
        (json!({"version": "1.0.0", "colour": "red"}), "colour"),
        (json!({"version": "1.0.0", "config": {"a": 1}}), "config.a"),
        (json!({"version": "1.0.0", "enabled": "yes"}), "enabled"),
        (
            json!({"version": "1.0.0", "capabilities": ["not a capability"]}),
            "capabilities",
        ),
        (json!([]), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = system.install(ADMIN, "tenant-a", &body).await;
        assert_eq!(
            (status, error_code(&answer)),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }
    let uri = |tenant: &str, name: &str| format!("/v1/registry/tenants/{tenant}/installs/{name}");
    for (path, field) in [
        (uri("tenant%20a", HELLO), "tenant"),
        (uri(&"t".repeat(200), HELLO), "tenant"),
        (uri("tenant-a", "Not.A.Name"), "extension"),
        (format!("/v1/registry/extensions/{HELLO}/versions/one/yank"), "version"),
        ("/v1/registry/tenants/tenant-a/executions?limit=0".to_string(), "limit"),
        ("/v1/registry/installs/validate?tenant=tenant-a".to_string(), "query"),
    ] {
        let method = if path.ends_with("/yank") { "POST" } else { "GET" };
        let (status, _, body) = system.send_json(method, ADMIN, &path, &json!({})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().starts_with(field),
            "{path}: {body}"
        );
    }
    let (status, body) = system.install(ADMIN, "tenant-a", &json!({"version": "9.9.9"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "version_not_found")
    );
    let (status, _, body) = system
        .call(
            authorized(Request::put(uri("tenant-a", HELLO)), ADMIN).header("content-type", "application/json"),
            vec![b' '; 2 * 1024 * 1024],
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        "{body}"
    );
    // A bundle the runner would refuse is refused at publish, with its reason.
    let (status, body) = system.publish(PUBLISHER, b"not a bundle").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bundle_rejected"),
        "{body}"
    );
    let broken = bundle_dir_for("not-a-component", b"\0asm\x01\0\0\0");
    let (status, body) = system
        .publish(ADMIN, &ext_bundle::pack_dir(broken.path()).unwrap())
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bundle_rejected"),
        "{body}"
    );
}

#[tokio::test]
async fn conditional_edits_yank_revoke_and_enable() {
    let system = System::start(Backend::Sqlite, &[]).await;
    system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await;
    system.publish(PUBLISHER, &hello_archive("1.1.0", true)).await;
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}");
    let put = |headers: &[(&str, &str)], body: Value| {
        let mut request = authorized(Request::put(&uri), ADMIN).header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        system.call(request, body.to_string().into_bytes())
    };
    let (status, headers, first) = put(&[("if-none-match", "*")], json!({"version": "1.0.0"})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (status, _, body) = put(&[("if-none-match", "*")], json!({"version": "1.0.0"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PRECONDITION_FAILED, "precondition_failed")
    );
    let (status, _, body) = put(&[("if-match", "\"999\"")], json!({"version": "1.1.0"})).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    // Disable keeps the config; re-enable; omitted fields keep their values.
    let (status, _, disabled) = put(
        &[("if-match", etag.as_str())],
        json!({"version": "1.0.0", "config": {"a": "b"}, "enabled": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(disabled["enabled"], false);
    let hash = disabled["content_hash"].as_str().unwrap();
    let validate = format!("/v1/registry/installs/validate?tenant=tenant-a&extension={HELLO}&content_hash={hash}");
    assert_eq!(system.get(ADMIN, &validate).await.0, StatusCode::NOT_FOUND);
    let (_, _, enabled) = put(&[], json!({"version": "1.0.0", "enabled": true})).await;
    assert_eq!(
        (&enabled["enabled"], &enabled["config"]),
        (&json!(true), &json!({"a": "b"}))
    );
    assert_eq!(system.get(ADMIN, &validate).await.0, StatusCode::OK);
    // Another tenant's validation of the same hash fails.
    assert_eq!(
        system.get(ADMIN, &validate.replace("tenant-a", "tenant-b")).await.0,
        StatusCode::NOT_FOUND
    );

    // A yanked version takes no new installs; the existing one keeps it.
    let yank = format!("/v1/registry/extensions/{HELLO}/versions/1.1.0/yank");
    let (status, _, yanked) = system.send_json("POST", PUBLISHER, &yank, &json!({})).await;
    assert_eq!((status, &yanked["yanked"]), (StatusCode::OK, &json!(true)));
    let (status, body) = system.install(ADMIN, "tenant-b", &json!({"version": "1.1.0"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "version_not_installable"),
        "{body}"
    );
    let (status, _, _) = system
        .send_json("POST", PUBLISHER, &format!("{yank}?undo=true"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        system.install(ADMIN, "tenant-b", &json!({"version": "1.1.0"})).await.0,
        StatusCode::CREATED
    );

    // Revoking stops validation of installs that run it.
    let revoke = format!("/v1/registry/extensions/{HELLO}/versions/1.0.0/revoke");
    let (status, _, revoked) = system.send_json("POST", PUBLISHER, &revoke, &json!({})).await;
    assert_eq!((status, &revoked["revoked"]), (StatusCode::OK, &json!(true)));
    assert_eq!(system.get(ADMIN, &validate).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn registry_metrics_readiness_and_the_registry_only_role() {
    let system = System::start(Backend::Sqlite, &[("RUNNER_ROLES", "registry")]).await;
    assert_eq!(
        system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        system.publish(OTHER_PUBLISHER, &hello_archive("1.0.1", false)).await.0,
        StatusCode::FORBIDDEN
    );
    // The runner role's routes are not served here.
    let (status, _, _) = system
        .call(authorized(Request::post("/v1/execute"), TOKEN), b"{}".to_vec())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, ready) = system.call(Request::get("/readyz"), Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["registry_database"]["ok"], true);
    let (_, text) = get_text(&system.test, "/metrics").await;
    let ok = metric_value(
        &text,
        "ext_runner_registry_operations_total{operation=\"publish\",outcome=\"ok\"}",
    );
    let refused = metric_value(
        &text,
        "ext_runner_registry_operations_total{operation=\"publish\",outcome=\"refused\"}",
    );
    assert_eq!((ok, refused), (Some(1.0), Some(1.0)), "{text}");
}

#[tokio::test]
async fn the_registry_refuses_to_start_without_tokens_or_with_a_tenant_layout() {
    let dir = tempfile::tempdir().unwrap();
    let err = System::open(dir, &[("RUNNER_ROLES", "registry")])
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("REGISTRY_TOKENS"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens();
    let err = System::open(
        dir,
        &[
            ("RUNNER_ROLES", "registry"),
            ("REGISTRY_TOKENS", &tokens),
            ("BUNDLE_STORAGE_KEY_LAYOUT", "{tenant}/{extension}/{hex}/bundle.tar.zst"),
        ],
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("BUNDLE_STORAGE_KEY_LAYOUT"), "{err}");
}

/// A namespace belongs to the signer of its first publish: another trusted
/// signer is refused there, and the objects that refused publish wrote are
/// taken back, so the same bytes publish cleanly once signed right.
#[tokio::test]
async fn a_namespace_is_bound_to_its_first_signer_and_a_refused_publish_leaves_nothing() {
    let second = ext_bundle::signature::SigningKey::generate(ext_bundle::signature::KeyAlgorithm::EcdsaP256);
    let trust = format!("{}\n{}", test_key().public_key_pem(), second.public_key_pem());
    let system = System::start(Backend::Sqlite, &[("SIGNING_TRUST_BUNDLE", &trust)]).await;
    assert_eq!(
        system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await.0,
        StatusCode::CREATED
    );

    let next = hello_archive("1.1.0", false);
    let by_second = ext_bundle::signature::encode_signature(&second.sign(&next));
    let request = authorized(Request::post("/v1/registry/bundles"), PUBLISHER).header("x-ext-signature", by_second);
    let (status, _, body) = system.call(request, next.clone()).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "signature_rejected"),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("com.example"),
        "{body}"
    );
    let objects = system.test.store_dir(&ext_bundle::Digest::of(&next));
    assert!(!objects.join("bundle.tar.zst").exists() && !objects.join("bundle.sig").exists());
    assert_eq!(system.publish(PUBLISHER, &next).await.0, StatusCode::CREATED);
    assert!(objects.join("bundle.tar.zst").exists());

    // Revoking the signer revokes what it signed.
    let (status, _, _) = system
        .send_json(
            "POST",
            ADMIN,
            "/v1/registry/signers/revoke",
            &json!({"signer": format!("key:{}", test_key().fingerprint())}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, extension) = system.get(ADMIN, &format!("/v1/registry/extensions/{HELLO}")).await;
    assert!(
        extension["versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["revoked"] == true),
        "{extension}"
    );
    let (status, body) = system.install(ADMIN, "tenant-a", &json!({"version": "1.1.0"})).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::CONFLICT, "version_not_installable"),
        "{body}"
    );
}

#[tokio::test]
async fn config_and_secrets_over_their_caps_are_refused_naming_the_entry() {
    let system = System::start(Backend::Sqlite, &[]).await;
    system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await;
    let many: serde_json::Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (status, body) = system
        .install(ADMIN, "tenant-a", &json!({"version": "1.0.0", "config": many}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("config: at most 64"),
        "{body}"
    );
    assert_eq!(
        system.install(ADMIN, "tenant-a", &json!({"version": "1.0.0"})).await.0,
        StatusCode::CREATED
    );
    let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}/secrets");
    let (status, _, body) = system
        .send_json("PUT", ADMIN, &uri, &json!({"api-key": "x".repeat(16 * 1024 + 1)}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("secrets.api-key: at most"),
        "{body}"
    );
    let (_, install) = system
        .get(ADMIN, &format!("/v1/registry/tenants/tenant-a/installs/{HELLO}"))
        .await;
    assert_eq!(install["secret_names"], json!([]));
}

/// `Registry::put_install`, the install change `serve --dev` makes in its
/// own process: the route's checks (scope, names, version, the request),
/// and its change visible to the very next call of the route.
#[tokio::test]
async fn an_in_process_install_checks_what_the_route_checks() {
    use ext_registry::{Action, Precondition};
    use ext_runner::error::ErrorCode;
    use ext_runner::registry::installs::InstallRequest;

    let system = System::start(Backend::Sqlite, &[]).await;
    let (status, published) = system.publish(PUBLISHER, &hello_archive("1.0.0", false)).await;
    assert_eq!(status, StatusCode::CREATED, "{published}");
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {TENANT_A}").parse().unwrap());
    let tenant_a = system.registry.caller(&headers).unwrap();
    let request = |version: &str| InstallRequest {
        version: version.to_string(),
        capabilities: None,
        config: None,
        egress: None,
        enabled: None,
    };
    let put = |tenant: &'static str, extension: &'static str, request: InstallRequest| {
        let (registry, caller) = (system.registry.clone(), tenant_a.clone());
        async move {
            registry
                .put_install(&caller, tenant, extension, &request, Precondition::None)
                .await
        }
    };
    let code = |result: Result<ext_registry::Applied, ext_runner::error::Failure>| result.unwrap_err().code;
    assert_eq!(
        code(put("tenant-b", HELLO, request("1.0.0")).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(put("tenant a", HELLO, request("1.0.0")).await),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(put("tenant-a", "hello", request("1.0.0")).await),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(put("tenant-a", HELLO, request("one")).await),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        code(put("tenant-a", HELLO, request("2.0.0")).await),
        ErrorCode::VersionNotFound
    );
    let mut undeclared = request("1.0.0");
    undeclared.capabilities = Some(vec!["cap:ui.proxy".to_string()]);
    assert_eq!(code(put("tenant-a", HELLO, undeclared).await), ErrorCode::NotDeclared);

    let applied = put("tenant-a", HELLO, request("1.0.0")).await.unwrap();
    assert_eq!(applied.action, Some(Action::Install));
    assert_eq!(
        applied.install.content_hash,
        published["content_hash"].as_str().unwrap()
    );
    let (status, install) = system
        .get(TENANT_A, &format!("/v1/registry/tenants/tenant-a/installs/{HELLO}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(install["install_id"], applied.install.install_id.as_str());
    assert_eq!(install["capabilities"], json!(applied.install.capabilities));
    let (_, history) = system
        .get(
            TENANT_A,
            &format!("/v1/registry/tenants/tenant-a/installs/{HELLO}/history"),
        )
        .await;
    assert_eq!(history["items"][0]["actor"], "ta", "the caller is the actor");
    let again = put("tenant-a", HELLO, request("1.0.0")).await.unwrap();
    assert_eq!(again.action, None, "the same state again changes nothing");
    assert_eq!(again.install.revision, applied.install.revision);
}

/// The execution log keeps `REGISTRY_EXECUTION_RETENTION_HOURS` of calls:
/// older ones are pruned, newer ones stay listed.
#[tokio::test]
async fn the_execution_log_is_pruned_to_its_retention() {
    let system = System::start(Backend::Sqlite, &[("REGISTRY_EXECUTION_RETENTION_HOURS", "1")]).await;
    let now = ext_registry::Timestamp::now();
    let call = |request_id: &str, minutes_ago: i64| ext_registry::Execution {
        request_id: request_id.to_string(),
        tenant: "tenant-a".to_string(),
        extension: HELLO.to_string(),
        version: "1.0.0".to_string(),
        endpoint: "GET /hello".to_string(),
        status: 200,
        error_code: None,
        duration_ms: 3,
        limit_hit: None,
        at: ext_registry::Timestamp(now.0 - minutes_ago * 60_000),
    };
    let db = system.registry.database();
    db.record_executions(&[call("old", 61), call("recent", 59)])
        .await
        .unwrap();
    assert_eq!(system.registry.prune_executions(now).await.unwrap(), 1);
    assert_eq!(
        system.registry.prune_executions(now).await.unwrap(),
        0,
        "nothing more to prune"
    );
    let (status, log) = system.get(TENANT_A, "/v1/registry/tenants/tenant-a/executions").await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["recent"]);
}
