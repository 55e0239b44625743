//! Shared helpers: runners on temp dirs, fixture bundles, envelopes, and a
//! tiny HTTP/1.1 client for the tests that need a real socket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ext_bundle::Digest;
use ext_bundle::signature::{KeyAlgorithm, SigningKey};
use ext_runner::Runner;
use ext_runner::config::{Config, Overrides};
use ext_runner::server::{AppState, router};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

pub const TOKEN: &str = "test-service-token-0123456789";

/// A runner on its own temp directory with a test token.
pub struct TestRunner {
    pub runner: Arc<Runner>,
    pub state: Arc<AppState>,
    pub dir: tempfile::TempDir,
}

impl TestRunner {
    pub fn new() -> TestRunner {
        TestRunner::with_env(&[])
    }

    /// Extra settings as environment pairs, e.g. `("RUNNER_MAX_TIMEOUT_MS", "500")`.
    pub fn with_env(extra: &[(&str, &str)]) -> TestRunner {
        let dir = tempfile::tempdir().unwrap();
        TestRunner::in_dir(dir, extra)
    }

    pub fn in_dir(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestRunner {
        let config = test_config(dir.path(), extra);
        let runner = Arc::new(Runner::new(config).unwrap());
        let state = AppState::new(runner.clone());
        TestRunner { runner, state, dir }
    }

    /// Pack `bundle_dir` and publish it, signed by the test key, into
    /// this runner's (file) store.
    pub fn publish_dir(&self, bundle_dir: &Path) -> Digest {
        let archive = ext_bundle::pack_dir(bundle_dir).unwrap();
        self.publish_archive(&archive, Some(&sign(&archive)))
    }

    /// Put an archive (and optionally its signature text) into the store
    /// directory under the default key layout, as `publish` would.
    pub fn publish_archive(&self, archive: &[u8], signature: Option<&str>) -> Digest {
        let digest = Digest::of(archive);
        let dir = self.store_dir(&digest);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bundle.tar.zst"), archive).unwrap();
        if let Some(signature) = signature {
            std::fs::write(dir.join("bundle.sig"), signature).unwrap();
        }
        digest
    }

    /// The store directory holding `digest`'s objects.
    pub fn store_dir(&self, digest: &Digest) -> PathBuf {
        self.dir.path().join("bundles/sha256").join(digest.hex())
    }

    /// Publish a bundle whose entry component is the named fixture.
    pub fn publish_fixture(&self, fixture: &str) -> Digest {
        let wasm = std::fs::read(ext_test_fixtures::component(fixture)).unwrap();
        self.publish_component(fixture, &wasm)
    }

    /// Publish a bundle around arbitrary component bytes.
    pub fn publish_component(&self, name: &str, wasm: &[u8]) -> Digest {
        let dir = bundle_dir_for(name, wasm);
        self.publish_dir(dir.path())
    }

    /// POST /v1/execute through the router (no socket).
    pub async fn post(&self, envelope: &Value) -> (StatusCode, HashMap<String, String>, Value) {
        self.post_raw(
            envelope.to_string().into_bytes(),
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await
    }

    pub async fn post_raw(
        &self,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HashMap<String, String>, Value) {
        let mut request = Request::post("/v1/execute").header("content-type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = router(self.state.clone())
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, json)
    }
}

pub fn test_config(dir: &Path, extra: &[(&str, &str)]) -> Config {
    test_config_with(dir, extra, &Overrides::default())
}

/// [`test_config`] with command-line `overrides` (`--dev`, …).
pub fn test_config_with(dir: &Path, extra: &[(&str, &str)], overrides: &Overrides) -> Config {
    let mut env: HashMap<String, String> = HashMap::from([
        ("RUNNER_DATA_DIR".to_string(), dir.display().to_string()),
        ("RUNNER_SERVICE_TOKEN".to_string(), TOKEN.to_string()),
        // Small pools keep many parallel test runners cheap.
        ("RUNNER_MAX_CONCURRENCY".to_string(), "8".to_string()),
        ("SIGNING_TRUST_BUNDLE".to_string(), test_key().public_key_pem()),
    ]);
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Config::load(&env, overrides).unwrap()
}

/// The process-wide test signing key (P-256), trusted by [`test_config`].
pub fn test_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(KeyAlgorithm::EcdsaP256))
}

/// Signature-file text for `archive` by the test key.
pub fn sign(archive: &[u8]) -> String {
    ext_bundle::signature::encode_signature(&test_key().sign(archive))
}

/// A bundle directory: manifest without endpoints (everything goes to the
/// entry) and `dist/main.wasm`.
pub fn bundle_dir_for(name: &str, wasm: &[u8]) -> tempfile::TempDir {
    bundle_dir_with(name, wasm, &["cap:context.read", "cap:log.emit"])
}

/// [`bundle_dir_for`] declaring `capabilities`.
pub fn bundle_dir_with(name: &str, wasm: &[u8], capabilities: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = json!({
        "name": format!("com.test.{}", name.replace('_', "-")),
        "publisher": "tests",
        "version": "1.0.0",
        "runtime": "wasm-rust@1",
        "capabilities": capabilities,
        "entry": "dist/main.wasm"
    });
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("dist")).unwrap();
    std::fs::write(dir.path().join("dist/main.wasm"), wasm).unwrap();
    dir
}

/// An execute envelope for `digest`.
pub fn envelope(digest: &Digest, method: &str, path: &str) -> Value {
    json!({
        "context": {
            "request_id": uuid(),
            "tenant_id": "tenant-a",
            "extension_id": "com.test.ext",
            "content_hash": digest.to_string()
        },
        "http": {"method": method, "path": path}
    })
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    BASE64.decode(text).unwrap()
}

/// The decoded guest body of a successful execute response.
pub fn guest_json(body: &Value) -> Value {
    serde_json::from_slice(&unb64(body["body_b64"].as_str().unwrap())).unwrap()
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

pub fn hello_dir() -> PathBuf {
    ext_test_fixtures::hello_bundle_dir()
}

/// The Redis server `scripts/test` starts on loopback.
pub fn redis_url() -> String {
    std::env::var("EXT_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "EXT_TEST_REDIS_URL is not set: this test needs a real Redis; run scripts/test, which starts Redis \
             (or `eval \"$(scripts/services/redis start target/services/redis)\"` before cargo test)"
        )
    })
}

/// `PTTL key` in the Redis at `url`: milliseconds until it expires.
pub async fn redis_ttl_ms(url: &str, key: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PTTL").arg(key).query_async(&mut connection).await.unwrap()
}

/// The value of the series `line_start` (name and labels, as rendered) in
/// Prometheus text, if it is there.
pub fn metric_value(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
}

/// `GET uri` through the router: status and body text.
pub async fn get_text(t: &TestRunner, uri: &str) -> (StatusCode, String) {
    let response = router(t.state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).to_string())
}

/// Serve a test runner on a real loopback socket; returns the address and
/// a handle that stops the server when dropped.
pub struct Served {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn serve(test: &TestRunner) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = test.state.clone();
    tokio::spawn(async move {
        ext_runner::server::serve(
            listener,
            state,
            async {
                let _ = rx.await;
            },
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    });
    Served { addr, stop: Some(tx) }
}

/// Send raw bytes and read until the server closes or `timeout` passes.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8], timeout: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// A well-formed HTTP/1.1 execute request with `Connection: close`.
pub fn http_request(body: &str) -> Vec<u8> {
    format!(
        "POST /v1/execute HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The S3 server `scripts/test` starts on loopback (SeaweedFS, SigV4
/// checked), described by its `EXT_TEST_S3_*` variables.
pub struct TestS3 {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl TestS3 {
    /// # Panics
    /// When the variables are missing: the test needs the real server.
    pub fn from_env() -> TestS3 {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: this test needs a real S3 server; run scripts/test, which starts SeaweedFS \
                     (or `eval \"$(scripts/services/seaweedfs start target/services/seaweedfs)\"` before cargo test)"
                )
            })
        };
        TestS3 {
            endpoint: var("EXT_TEST_S3_ENDPOINT"),
            bucket: var("EXT_TEST_S3_BUCKET"),
            region: std::env::var("EXT_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".to_string()),
            access_key_id: var("EXT_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: var("EXT_TEST_S3_SECRET_ACCESS_KEY"),
        }
    }

    /// `s3://bucket/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// `BUNDLE_STORAGE_*` settings for the store at `s3://bucket/<prefix>`.
    pub fn storage_env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            ("BUNDLE_STORAGE_URL".to_string(), self.url(prefix)),
            ("BUNDLE_STORAGE_ENDPOINT".to_string(), self.endpoint.clone()),
            ("BUNDLE_STORAGE_REGION".to_string(), self.region.clone()),
            ("BUNDLE_STORAGE_ACCESS_KEY_ID".to_string(), self.access_key_id.clone()),
            (
                "BUNDLE_STORAGE_SECRET_ACCESS_KEY".to_string(),
                self.secret_access_key.clone(),
            ),
            ("BUNDLE_STORAGE_FORCE_PATH_STYLE".to_string(), "true".to_string()),
        ]
    }

    /// The store client for `s3://bucket/<prefix>` with `extra` settings
    /// overriding the defaults (e.g. a key layout or a wrong secret).
    pub fn objects(&self, prefix: &str, extra: &[(&str, &str)]) -> ext_runner::store::object::BundleObjects {
        let mut env: HashMap<String, String> = self.storage_env(prefix).into_iter().collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let settings = ext_runner::store::StorageSettings::load(&env["BUNDLE_STORAGE_URL"], &env).unwrap();
        ext_runner::store::object::BundleObjects::open(&settings).unwrap()
    }
}

/// A key prefix no other test (or earlier run) uses, so tests can share the
/// one bucket.
pub fn unique_prefix(test: &str) -> String {
    format!("tests/{test}-{}", uuid::Uuid::new_v4().simple())
}

/// An address on loopback where nothing listens (bound, then released).
pub fn closed_port_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Put a signed archive into `data`'s file store under the default layout,
/// as a runner with `RUNNER_DATA_DIR=data` expects it.
pub fn store_signed(data: &Path, archive: &[u8]) -> Digest {
    let digest = Digest::of(archive);
    let store = data.join("bundles/sha256").join(digest.hex());
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("bundle.tar.zst"), archive).unwrap();
    std::fs::write(store.join("bundle.sig"), sign(archive)).unwrap();
    digest
}

/// Start the real `ext-runner serve` on a free loopback port, with the test
/// token and trust, data under `data`; returns once it accepts connections.
pub fn spawn_serve(data: &Path, extra_args: &[&str], extra_env: &[(&str, &str)]) -> (std::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ext-runner"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra_args)
        .env_clear()
        .env("RUNNER_DATA_DIR", data)
        .env("RUNNER_SERVICE_TOKEN", TOKEN)
        .env("RUNNER_MAX_CONCURRENCY", "8")
        .env("SIGNING_TRUST_BUNDLE", test_key().public_key_pem())
        .env("RUST_LOG", "warn")
        .envs(extra_env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, port)
}

/// The `curl …` lines a `serve --dev` or `dev` process prints on `stdout`,
/// trimmed, as they come (read on a thread of their own).
pub fn curl_lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    announced_lines(stdout, |line| line.starts_with("curl "))
}

/// The lines of `stdout` that `keep` accepts, trimmed, as they come (read
/// on a thread of their own).
pub fn announced_lines(stdout: std::process::ChildStdout, keep: fn(&str) -> bool) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if keep(line.trim()) {
                let _ = tx.send(line.trim().to_string());
            }
        }
    });
    rx
}

/// Send the JSON body of a printed `curl … -d '…'` line to the runner on
/// `port` (from a plain thread: its own small runtime); the raw response.
pub fn post_printed_curl(port: u16, curl: &str, timeout: std::time::Duration) -> String {
    let body = curl.split("-d '").nth(1).unwrap().trim_end_matches('\'');
    let request = format!(
        "POST /v1/execute HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(raw_exchange(([127, 0, 0, 1], port).into(), request.as_bytes(), timeout))
}

/// Copy a directory tree (a bundle directory to edit in a test).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
