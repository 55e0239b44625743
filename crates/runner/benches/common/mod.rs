//! What the benches that drive the real `ext-runner serve` binary share
//! (`soak`, `neighbours`): starting it on a free loopback port with extra
//! environment, publishing signed fixture bundles into its file store, a
//! blocking keep-alive HTTP/1.1 client, the execute request bytes and
//! latency percentiles.
//!
//! Each bench is its own crate and includes this with `mod common;`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ext_bundle::signature::SigningKey;
use serde_json::{Value, json};

/// The service token every bench server accepts.
pub const TOKEN: &str = "soak-service-token-0123456789";
/// How long `ext-runner serve` may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for one answer: above any deadline a bench asks for.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `ext-runner serve`; stopped (SIGTERM, then reaped) by
/// [`Server::stop`] or on drop.
pub struct Server {
    child: Child,
    port: u16,
    stopped: bool,
}

impl Server {
    /// `ext-runner serve` on a free loopback port with a clean environment:
    /// `RUST_LOG=error`, then `env` (which may override it), then the data
    /// dir, the service token and `key` as the trust bundle; its stderr goes
    /// to `serve.stderr` in the data dir. Returns once it accepts
    /// connections.
    ///
    /// # Panics
    /// If it exits first (a bad configuration: the panic shows its stderr)
    /// or does not listen within a minute.
    pub fn start(data: &Path, key: &SigningKey, env: impl IntoIterator<Item = (String, String)>) -> Server {
        let stderr_path = data.join("serve.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("serve.stderr");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // `BENCH_RUNNER_BIN` runs another build (e.g. an older commit's) under the same load.
        let binary = std::env::var("BENCH_RUNNER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ext-runner").to_string());
        let mut child = Command::new(binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_clear()
            .env("RUST_LOG", "error")
            .envs(env)
            .env("RUNNER_DATA_DIR", data)
            .env("RUNNER_SERVICE_TOKEN", TOKEN)
            .env("SIGNING_TRUST_BUNDLE", key.public_key_pem())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start ext-runner serve");
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().expect("wait for ext-runner serve") {
                let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("ext-runner serve exited ({status}):\n{stderr}");
            }
            assert!(Instant::now() < deadline, "ext-runner serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            port,
            stopped: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) {
        // Once reaped, the pid may belong to another process: signal it only once.
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Packs, signs and stores one-component bundles of guest fixtures in a
/// data dir's file store, as `publish` would.
pub struct Publisher<'a> {
    pub data: &'a Path,
    pub key: &'a SigningKey,
    /// The manifests are named `com.<namespace>.<fixture>`, published by `<namespace>`.
    pub namespace: &'a str,
}

impl Publisher<'_> {
    /// Publish the fixture component `fixture` with these capabilities and
    /// allowed hosts; its digest.
    pub fn fixture(&self, fixture: &str, capabilities: &[&str], hosts: &[String]) -> ext_bundle::Digest {
        let wasm = std::fs::read(ext_test_fixtures::component(fixture)).expect("fixture");
        let dir = tempfile::tempdir().expect("bundle dir");
        let manifest = json!({
            "name": format!("com.{}.{}", self.namespace, fixture.replace('_', "-")),
            "publisher": self.namespace,
            "version": "1.0.0",
            "runtime": "wasm-rust@1",
            "capabilities": capabilities,
            "network": {"allowed_hosts": hosts},
            "entry": "dist/main.wasm"
        });
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).expect("manifest");
        std::fs::create_dir_all(dir.path().join("dist")).expect("dist");
        std::fs::write(dir.path().join("dist/main.wasm"), wasm).expect("wasm");
        let archive = ext_bundle::pack_dir(dir.path()).expect("pack");
        let digest = ext_bundle::Digest::of(&archive);
        let store = self.data.join("bundles/sha256").join(digest.hex());
        std::fs::create_dir_all(&store).expect("store");
        std::fs::write(store.join("bundle.tar.zst"), &archive).expect("bundle");
        std::fs::write(
            store.join("bundle.sig"),
            ext_bundle::signature::encode_signature(&self.key.sign(&archive)),
        )
        .expect("signature");
        digest
    }
}

/// The bytes of a `POST /v1/execute` of bundle `digest` for `tenant` and
/// `extension`, with the envelope's `http` and `limits`.
pub fn execute_request(
    tenant: &str,
    extension: &str,
    digest: &ext_bundle::Digest,
    http: &Value,
    limits: &Value,
) -> Vec<u8> {
    let envelope = json!({
        "context": {
            "tenant_id": tenant,
            "extension_id": extension,
            "content_hash": digest.to_string()
        },
        "http": http,
        "limits": limits,
    })
    .to_string();
    format!(
        "POST /v1/execute HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{envelope}",
        envelope.len()
    )
    .into_bytes()
}

/// p50 and p99 in milliseconds (0 when there are none).
pub fn percentiles(mut latencies: Vec<Duration>) -> (f64, f64) {
    if latencies.is_empty() {
        return (0.0, 0.0);
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

/// The runner's answer to an execute request.
pub struct Answer {
    pub status: u16,
    /// The response body as JSON (`Null` if it was not JSON).
    pub json: Value,
}

impl Answer {
    /// The guest's response body (200 answers), decoded from `body_b64`.
    pub fn guest_body(&self) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(self.json["body_b64"].as_str().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The guest's status (200 answers) or the runner's error code. The
    /// egress probe reports a failed fetch as `{"error"}`: `200:<error>`.
    pub fn detail(&self) -> String {
        if self.status != 200 {
            return self.json["error"]["code"].as_str().unwrap_or("?").to_string();
        }
        let guest: Value = serde_json::from_slice(&self.guest_body()).unwrap_or_default();
        match guest["error"].as_str() {
            Some(error) => format!("{}:{error}", self.json["status"]),
            None => self.json["status"].to_string(),
        }
    }
}

/// A blocking HTTP/1.1 keep-alive client: enough for the runner's answers
/// (always with `content-length`).
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the runner");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Send an execute `request` (see [`execute_request`]) and read the answer.
    ///
    /// # Errors
    /// The connection failed or closed; reconnect.
    pub fn execute(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        let (status, body) = self.send(request)?;
        Ok(Answer {
            status,
            json: serde_json::from_slice(&body).unwrap_or_default(),
        })
    }

    /// Send `request`; the runner's status, [`Answer::detail`], and whether
    /// to reconnect (status 0 and `io: <kind>` when the connection failed).
    pub fn exchange(&mut self, request: &[u8]) -> (u16, String, bool) {
        match self.execute(request) {
            Ok(answer) => (answer.status, answer.detail(), false),
            Err(e) => (0, format!("io: {}", e.kind()), true),
        }
    }

    /// `GET path`: the status and the body.
    ///
    /// # Errors
    /// The connection failed or closed; reconnect.
    pub fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        self.send(format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").as_bytes())
    }

    fn send(&mut self, request: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        self.reader.get_mut().write_all(request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}
