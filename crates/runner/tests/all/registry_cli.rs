//! `ext-runner registry …`, the real binary against a registry served on a
//! loopback socket (the registry suite's [`System`], SQLite): the lifecycle
//! publish → install → upgrade → rollback → yank → revoke → uninstall,
//! checked on the server's state; `uninstall --purge`; a certificate-signed
//! publish (`--certs`);
//! the progress bar's chunked upload; and the errors a user sees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use ext_runner::cli::registry::client::{Client, Connection};
use ext_runner::cli::registry::publish::{PublishArgs, publish};

use crate::registry::{ADMIN, Backend, HELLO, PUBLISHER, System, TENANT_A, hello_archive, visits};
use crate::signing::{CA_CONFIG, certificate};
use crate::support::*;

/// The registry under test served on a socket, and a directory for the files the
/// commands read.
struct Running {
    system: System,
    _socket: crate::support::Served,
    url: String,
    files: tempfile::TempDir,
}

impl Running {
    async fn start() -> Running {
        Running::start_with(&[]).await
    }

    /// As [`Running::start`], `extra` adding or overriding settings.
    async fn start_with(extra: &[(&str, &str)]) -> Running {
        let system = System::start(Backend::Sqlite, extra).await;
        let socket = serve(&system.test).await;
        Running {
            url: format!("http://{}", socket.addr),
            system,
            _socket: socket,
            files: tempfile::tempdir().unwrap(),
        }
    }

    /// `ext-runner registry ARGS --registry URL --token TOKEN`.
    async fn cli(&self, token: &str, args: &[&str]) -> Output {
        let mut all = vec!["--registry", &self.url, "--token", token];
        all.extend_from_slice(args);
        run(&all, &[]).await
    }

    /// The example at `version`, written with its signature (by the test
    /// key, with a trailing newline the command trims).
    fn bundle(&self, version: &str, visits: bool) -> (PathBuf, PathBuf, Vec<u8>) {
        let archive = hello_archive(version, visits);
        let bundle = self.files.path().join(format!("hello-{version}.tar.zst"));
        let sig = self.files.path().join(format!("hello-{version}.sig"));
        std::fs::write(&bundle, &archive).unwrap();
        std::fs::write(&sig, format!("{}\n", sign(&archive))).unwrap();
        (bundle, sig, archive)
    }

    /// `registry --json publish BUNDLE --sig SIG` by the publisher.
    async fn publish_json(&self, bundle: &Path, sig: &Path) -> Output {
        self.cli(PUBLISHER, &["--json", "publish", path(bundle), "--sig", path(sig)])
            .await
    }

    async fn install(&self) -> (http::StatusCode, Value) {
        let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}");
        self.system.get(ADMIN, &uri).await
    }

    async fn history_actions(&self) -> Vec<String> {
        let uri = format!("/v1/registry/tenants/tenant-a/installs/{HELLO}/history");
        let (_, history) = self.system.get(ADMIN, &uri).await;
        history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["action"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `ext-runner registry ARGS` with `env` (and no `REGISTRY_*` from the test's
/// own environment), off the async runtime so the server keeps answering.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ext-runner"));
    command
        .arg("registry")
        .args(args)
        .env_remove("REGISTRY_URL")
        .env_remove("REGISTRY_TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The command succeeded; its stdout.
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// The command failed; its stderr.
fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "succeeded\nstdout: {}", stdout(output));
    stderr(output)
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

/// A JSON array of strings, sorted.
fn sorted(list: &Value) -> Vec<String> {
    let mut items: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    items.sort();
    items
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn publish_install_upgrade_rollback_yank_uninstall_through_the_binary() {
    let served = Running::start().await;
    let (v1, v1_sig, v1_bytes) = served.bundle("1.0.0", false);
    let (v2, v2_sig, _) = served.bundle("1.1.0", true);

    // Publish: new (201), then the same bytes again (200), same version id.
    let text = ok(&served
        .cli(PUBLISHER, &["publish", path(&v1), "--sig", path(&v1_sig)])
        .await);
    assert!(text.starts_with("published (new): com.example.hello 1.0.0"), "{text}");
    assert!(text.contains(&ext_bundle::Digest::of(&v1_bytes).to_string()), "{text}");
    assert!(text.contains("signer:       key:"), "{text}");
    let text = ok(&served
        .cli(PUBLISHER, &["publish", path(&v1), "--sig", path(&v1_sig)])
        .await);
    assert!(text.starts_with("already published"), "{text}");
    let again = json(&served.publish_json(&v1, &v1_sig).await);
    let second = json(&served.publish_json(&v2, &v2_sig).await);
    assert_eq!(second["version"], "1.1.0");
    let (_, extension) = served
        .system
        .get(ADMIN, &format!("/v1/registry/extensions/{HELLO}"))
        .await;
    let versions = extension["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{extension}");
    assert_eq!(versions[0]["version_id"], again["version_id"], "{extension}");

    // Install 1.0.0 with a config; a second install is refused (412) and
    // changes nothing.
    let installed = json(
        &served
            .cli(
                TENANT_A,
                &[
                    "--json",
                    "install",
                    HELLO,
                    "1.0.0",
                    "--tenant",
                    "tenant-a",
                    "--config",
                    r#"{"colour":"red"}"#,
                    "--capability",
                    "cap:log.emit",
                    "--capability",
                    "cap:context.read",
                ],
            )
            .await,
    );
    let (_, install) = served.install().await;
    assert_eq!(install["version"], "1.0.0");
    assert_eq!(install["config"]["colour"], "red");
    assert_eq!(sorted(&install["capabilities"]), ["cap:context.read", "cap:log.emit"]);
    assert_eq!(install["revision"], installed["revision"]);
    let err = failed(
        &served
            .cli(TENANT_A, &["install", HELLO, "1.1.0", "--tenant", "tenant-a"])
            .await,
    );
    assert!(
        err.contains("already installed") && err.contains("upgrade") && err.contains("412 precondition_failed"),
        "{err}"
    );
    assert_eq!(served.install().await.1["version"], "1.0.0");

    // The tenant's installs, with the token from REGISTRY_TOKEN.
    let listed = run(
        &["--registry", &served.url, "--json", "list", "--tenant", "tenant-a"],
        &[("REGISTRY_TOKEN", TENANT_A)],
    )
    .await;
    let listed = json(&listed);
    assert_eq!(listed["items"][0]["extension"], HELLO, "{listed}");
    assert_eq!(listed["items"][0]["version"], "1.0.0", "{listed}");

    // Upgrade keeps the install, its config and its grants (the server
    // would grant all the new version declares if they were omitted).
    let text = ok(&served
        .cli(TENANT_A, &["upgrade", HELLO, "1.1.0", "--tenant", "tenant-a"])
        .await);
    assert!(
        text.starts_with("upgraded from 1.0.0: com.example.hello 1.1.0"),
        "{text}"
    );
    let (_, upgraded) = served.install().await;
    assert_eq!(upgraded["version"], "1.1.0");
    assert_eq!(upgraded["install_id"], installed["install_id"]);
    assert_eq!(upgraded["config"]["colour"], "red");
    assert_eq!(sorted(&upgraded["capabilities"]), ["cap:context.read", "cap:log.emit"]);

    // An "upgrade" to a lower version is refused before anything is sent.
    let err = failed(
        &served
            .cli(TENANT_A, &["upgrade", HELLO, "1.0.0", "--tenant", "tenant-a"])
            .await,
    );
    assert!(
        err.contains("not newer than the installed 1.1.0") && err.contains("rollback"),
        "{err}"
    );
    assert_eq!(served.install().await.1["revision"], upgraded["revision"]);

    // History: install then upgrade, by the tenant token's name.
    let history = json(
        &served
            .cli(TENANT_A, &["--json", "history", HELLO, "--tenant", "tenant-a"])
            .await,
    );
    let entries = history["items"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["install", "upgrade"], "{history}");
    assert!(entries.iter().all(|e| e["actor"] == "ta"), "{history}");
    let text = ok(&served.cli(TENANT_A, &["history", HELLO, "--tenant", "tenant-a"]).await);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].contains("install") && lines[1].contains("1.0.0") && lines[1].ends_with("ta"),
        "{text}"
    );
    assert!(lines[2].contains("upgrade") && lines[2].contains("1.1.0"), "{text}");

    // A change based on a stale revision (the install's before the
    // upgrade) is 412 and changes nothing.
    let stale = installed["revision"].to_string();
    let err = failed(
        &served
            .cli(
                TENANT_A,
                &["rollback", HELLO, "--tenant", "tenant-a", "--revision", &stale],
            )
            .await,
    );
    assert!(
        err.contains("changed since it was read") && err.contains("412 precondition_failed"),
        "{err}"
    );
    assert_eq!(served.install().await.1["version"], "1.1.0");

    // A bare rollback returns to the version before.
    let text = ok(&served.cli(TENANT_A, &["rollback", HELLO, "--tenant", "tenant-a"]).await);
    assert!(
        text.starts_with("rolled back from 1.1.0: com.example.hello 1.0.0"),
        "{text}"
    );
    let (_, rolled) = served.install().await;
    assert_eq!(rolled["version"], "1.0.0");
    assert_eq!(rolled["config"]["colour"], "red");
    assert_eq!(served.history_actions().await, ["install", "upgrade", "rollback"]);

    // Yank: the version is marked, `show` says so; --undo takes it back.
    ok(&served.cli(PUBLISHER, &["yank", HELLO, "1.1.0"]).await);
    let (_, extension) = served
        .system
        .get(ADMIN, &format!("/v1/registry/extensions/{HELLO}"))
        .await;
    assert_eq!(extension["versions"][1]["yanked"], true, "{extension}");
    assert_eq!(extension["versions"][0]["yanked"], false, "{extension}");
    let text = ok(&served.cli(TENANT_A, &["show", HELLO]).await);
    let line = text.lines().find(|l| l.starts_with("1.1.0")).unwrap();
    assert!(line.ends_with("yanked"), "{text}");
    let answer = json(
        &served
            .cli(PUBLISHER, &["--json", "yank", HELLO, "1.1.0", "--undo"])
            .await,
    );
    assert_eq!(answer["yanked"], false, "{answer}");

    // A tenant token may not yank (403, the registry's message shown).
    let err = failed(&served.cli(TENANT_A, &["yank", HELLO, "1.1.0"]).await);
    assert!(err.contains("registry: 403 forbidden: "), "{err}");

    // Revoke: the kill switch; `show` says so and it can no longer be installed.
    let text = ok(&served.cli(PUBLISHER, &["revoke", HELLO, "1.1.0"]).await);
    assert_eq!(text, "revoked com.example.hello 1.1.0\n");
    let (_, extension) = served
        .system
        .get(ADMIN, &format!("/v1/registry/extensions/{HELLO}"))
        .await;
    assert_eq!(extension["versions"][1]["revoked"], true, "{extension}");
    let text = ok(&served.cli(TENANT_A, &["show", HELLO]).await);
    let line = text.lines().find(|l| l.starts_with("1.1.0")).unwrap();
    assert!(line.ends_with("revoked"), "{text}");

    // Re-seal: an admin's job; nothing here is sealed yet.
    let text = ok(&served.cli(ADMIN, &["reseal"]).await);
    assert_eq!(text, "re-sealed 0, already current 0, failed 0\n");
    let err = failed(&served.cli(TENANT_A, &["reseal"]).await);
    assert!(err.contains("registry: 403 forbidden: "), "{err}");

    // The catalogue lists it.
    let text = ok(&served.cli(TENANT_A, &["list"]).await);
    assert!(text.lines().nth(1).unwrap().starts_with(HELLO), "{text}");

    // Uninstall: gone.
    let text = ok(&served
        .cli(TENANT_A, &["uninstall", HELLO, "--tenant", "tenant-a"])
        .await);
    assert!(text.starts_with("uninstalled"), "{text}");
    assert_eq!(served.install().await.0, http::StatusCode::NOT_FOUND);
    assert_eq!(served.history_actions().await.last().unwrap(), "uninstall");
}

#[tokio::test]
async fn uninstall_purge_through_the_binary_removes_the_installs_kv_data() {
    let served = Running::start().await;
    let (v1, v1_sig, _) = served.bundle("1.0.0", true);
    ok(&served
        .cli(PUBLISHER, &["publish", path(&v1), "--sig", path(&v1_sig)])
        .await);
    let install = ["install", HELLO, "1.0.0", "--tenant", "tenant-a"];
    ok(&served.cli(TENANT_A, &install).await);
    assert_eq!(visits(&served.system, "tenant-a").await, 1);
    assert_eq!(visits(&served.system, "tenant-a").await, 2);

    let purge = ["uninstall", HELLO, "--tenant", "tenant-a", "--purge"];
    let text = ok(&served.cli(TENANT_A, &purge).await);
    assert_eq!(text, format!("uninstalled and purged {HELLO} for tenant tenant-a\n"));
    assert_eq!(served.install().await.0, http::StatusCode::NOT_FOUND);
    assert_eq!(
        served.history_actions().await[1..],
        ["uninstall".to_string(), "purge".to_string()]
    );
    // Nothing installed and nothing pending: the registry's 404.
    let err = failed(&served.cli(TENANT_A, &purge).await);
    assert!(err.contains("registry: 404 install_not_found"), "{err}");

    ok(&served.cli(TENANT_A, &install).await);
    assert_eq!(
        visits(&served.system, "tenant-a").await,
        1,
        "the data went with the purge"
    );
}

#[tokio::test]
async fn registry_cli_errors_name_the_cause_and_exit_nonzero() {
    let served = Running::start().await;
    let (v1, v1_sig, _) = served.bundle("1.0.0", false);

    // The registry's refusal: status, code, message and request id.
    let output = served.cli("wrong-token-0123456789abcdef", &["list"]).await;
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("registry: 401 unauthorized: "), "{err}");
    assert!(
        err.contains("(request ") && !err.contains("(request id unknown)"),
        "{err}"
    );
    let wrong_sig = served.files.path().join("wrong.sig");
    std::fs::write(&wrong_sig, sign(b"other bytes")).unwrap();
    let err = failed(
        &served
            .cli(PUBLISHER, &["publish", path(&v1), "--sig", path(&wrong_sig)])
            .await,
    );
    assert!(err.contains("registry: 422 signature_rejected"), "{err}");
    let (status, _) = served
        .system
        .get(ADMIN, &format!("/v1/registry/extensions/{HELLO}"))
        .await;
    assert_eq!(
        status,
        http::StatusCode::NOT_FOUND,
        "a refused publish recorded nothing"
    );

    // Files are named.
    let absent = served.files.path().join("absent.tar.zst");
    let err = failed(
        &served
            .cli(PUBLISHER, &["publish", path(&absent), "--sig", path(&v1_sig)])
            .await,
    );
    assert!(err.contains(path(&absent)), "{err}");
    let absent_sig = served.files.path().join("absent.sig");
    let err = failed(
        &served
            .cli(PUBLISHER, &["publish", path(&v1), "--sig", path(&absent_sig)])
            .await,
    );
    assert!(err.contains(path(&absent_sig)), "{err}");

    // Bad flag values are named (clap's usage errors), before any call.
    let output = served
        .cli(
            ADMIN,
            &[
                "install",
                HELLO,
                "1.0.0",
                "--tenant",
                "tenant-a",
                "--config",
                "{not json",
            ],
        )
        .await;
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("--config") && err.contains("not a JSON object"), "{err}");
    let config = served.files.path().join("absent-config.json");
    let at_file = format!("@{}", path(&config));
    let err = failed(
        &served
            .cli(
                ADMIN,
                &["install", HELLO, "1.0.0", "--tenant", "tenant-a", "--config", &at_file],
            )
            .await,
    );
    assert!(err.contains("--config") && err.contains(path(&config)), "{err}");
    let output = served
        .cli(ADMIN, &["install", HELLO, "1.0", "--tenant", "tenant-a"])
        .await;
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("<VERSION>") && err.contains("not a semantic version"),
        "{err}"
    );

    // No registry there: the URL is named.
    let closed = format!("http://{}", closed_port_addr());
    let err = failed(&run(&["--registry", &closed, "--token", ADMIN, "list"], &[]).await);
    assert!(
        err.contains(&format!("cannot reach the registry at {closed}/v1/registry/extensions")),
        "{err}"
    );

    // An upgrade of what is not installed is the registry's 404.
    let err = failed(
        &served
            .cli(ADMIN, &["upgrade", HELLO, "1.1.0", "--tenant", "tenant-a"])
            .await,
    );
    assert!(err.contains("registry: 404 install_not_found"), "{err}");
}

/// `--certs`: a bundle signed by a code-signing certificate (openssl CA:
/// root → intermediate → leaf, the registry trusting the root) publishes
/// with the chain `ext-runner sign --cert --chain` wrote, and is refused
/// without it; a missing chain file is named.
#[tokio::test]
async fn publish_with_a_certificate_chain() {
    let ca = tempfile::tempdir().unwrap();
    let d = ca.path();
    std::fs::write(d.join("ca.cnf"), CA_CONFIG).unwrap();
    certificate(d, "root", "/O=Example/CN=Example Root", None, "root");
    certificate(
        d,
        "int",
        "/O=Example/CN=Example Intermediate",
        Some("root"),
        "intermediate",
    );
    certificate(d, "leaf", "/O=Example/CN=Example Release", Some("int"), "leaf");
    let root = std::fs::read_to_string(d.join("root.pem")).unwrap();
    let served = Running::start_with(&[("SIGNING_TRUST_BUNDLE", &root)]).await;

    let (bundle, _, archive) = served.bundle("1.0.0", false);
    let sig = served.files.path().join("signed.sig");
    let sign = Command::new(env!("CARGO_BIN_EXE_ext-runner"))
        .arg("sign")
        .arg(&bundle)
        .args(["--key", path(&d.join("leaf.key")), "--cert", path(&d.join("leaf.pem"))])
        .args(["--chain", path(&d.join("int.pem")), "--out", path(&sig)])
        .output()
        .unwrap();
    ok(&sign);
    let chain = served.files.path().join("bundle.pem");
    assert!(chain.is_file(), "sign writes the chain beside --out");

    let err = failed(
        &served
            .cli(PUBLISHER, &["publish", path(&bundle), "--sig", path(&sig)])
            .await,
    );
    assert!(err.contains("registry: 422 signature_rejected"), "{err}");
    let absent = served.files.path().join("absent.pem");
    let err = failed(
        &served
            .cli(
                PUBLISHER,
                &["publish", path(&bundle), "--sig", path(&sig), "--certs", path(&absent)],
            )
            .await,
    );
    assert!(err.contains(path(&absent)), "{err}");

    let published = json(
        &served
            .cli(
                PUBLISHER,
                &[
                    "--json",
                    "publish",
                    path(&bundle),
                    "--sig",
                    path(&sig),
                    "--certs",
                    path(&chain),
                ],
            )
            .await,
    );
    assert_eq!(
        published["signer"], "certificate:CN=Example Release,O=Example",
        "{published}"
    );
    assert_eq!(published["content_hash"], ext_bundle::Digest::of(&archive).to_string());
}

/// The example with a `ui/padding.bin` of `len` incompressible bytes.
fn padded_hello(version: &str, len: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&hello_dir(), dir.path());
    let manifest_path = dir.path().join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["version"] = Value::from(version);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let padding: Vec<u8> = (0..len)
        .map(|_| {
            // xorshift64: bytes zstd cannot shrink, so the archive stays large.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(dir.path().join("ui").join("padding.bin"), padding).unwrap();
    ext_bundle::pack_dir(dir.path()).unwrap()
}

/// With a progress bar (what a terminal gets), a bundle above
/// `PROGRESS_BAR_MIN_BYTES` goes up in chunks and arrives byte for byte.
#[tokio::test]
async fn a_large_publish_with_the_progress_bar_arrives_whole() {
    let served = Running::start().await;
    let min = ext_runner::cli::bundle::PROGRESS_BAR_MIN_BYTES;
    let archive = padded_hello("2.0.0", min + min / 2);
    assert!(archive.len() >= min, "{} bytes", archive.len());
    let bundle = served.files.path().join("large.tar.zst");
    let sig = served.files.path().join("large.sig");
    std::fs::write(&bundle, &archive).unwrap();
    std::fs::write(&sig, sign(&archive)).unwrap();
    let client = Client::new(&Connection {
        url: served.url.clone(),
        token: Some(PUBLISHER.to_string()),
    })
    .unwrap();
    let args = PublishArgs {
        bundle,
        signature: sig,
        certificates: None,
    };
    let shown = publish(&client, &args, true).await.unwrap();
    assert!(
        shown.text.starts_with("published (new): com.example.hello 2.0.0"),
        "{}",
        shown.text
    );
    let digest = ext_bundle::Digest::of(&archive);
    assert_eq!(shown.json["content_hash"], digest.to_string());
    let stored = std::fs::read(served.system.test.store_dir(&digest).join("bundle.tar.zst")).unwrap();
    assert!(stored == archive, "the stored bundle is the uploaded one");
}

/// `registry secrets` sends a file's JSON object, shows names only, and
/// names the file and entry it refuses.
#[tokio::test]
async fn secrets_come_from_a_file_and_only_their_names_are_shown() {
    let served = Running::start().await;
    let (bundle, sig, _) = served.bundle("1.0.0", false);
    ok(&served.publish_json(&bundle, &sig).await);
    ok(&served
        .cli(TENANT_A, &["install", HELLO, "1.0.0", "--tenant", "tenant-a"])
        .await);

    let file = served.files.path().join("secrets.json");
    std::fs::write(&file, r#"{"api-key": "value-that-must-not-show", "other": "x"}"#).unwrap();
    let text = ok(&served
        .cli(
            TENANT_A,
            &["secrets", HELLO, "--tenant", "tenant-a", "--file", path(&file)],
        )
        .await);
    assert!(text.contains("api-key") && text.contains("other"), "{text}");
    assert!(!text.contains("value-that-must-not-show"), "{text}");
    let (_, install) = served.install().await;
    assert_eq!(install["secret_names"], serde_json::json!(["api-key", "other"]));

    std::fs::write(&file, r#"{"api-key": 1}"#).unwrap();
    let output = served
        .cli(
            TENANT_A,
            &["secrets", HELLO, "--tenant", "tenant-a", "--file", path(&file)],
        )
        .await;
    let error = failed(&output);
    assert!(error.contains("secrets.json") && error.contains("`api-key`"), "{error}");
    let missing = served.files.path().join("absent.json");
    let error = failed(
        &served
            .cli(
                TENANT_A,
                &["secrets", HELLO, "--tenant", "tenant-a", "--file", path(&missing)],
            )
            .await,
    );
    assert!(error.contains("absent.json"), "{error}");
}
