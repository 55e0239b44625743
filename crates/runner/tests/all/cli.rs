//! The real binary: pack/inspect/publish/exec and `serve --dev` with the
//! README's curl.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ext-runner"))
}

#[test]
fn pack_is_deterministic_and_inspect_describes() {
    let out = tempfile::tempdir().unwrap();
    let a = out.path().join("a.tar.zst");
    let b = out.path().join("b.tar.zst");
    let run = |path: &std::path::Path| {
        let output = bin()
            .args(["pack"])
            .arg(hello_dir())
            .arg("--out")
            .arg(path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let hash_a = run(&a);
    let hash_b = run(&b);
    assert!(hash_a.starts_with("sha256:") && hash_a.len() == 71, "{hash_a}");
    assert_eq!(hash_a, hash_b);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(ext_bundle::Digest::of(&std::fs::read(&a).unwrap()).to_string(), hash_a);

    let output = bin().arg("inspect").arg(&a).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(&hash_a), "{text}");
    assert!(text.contains("com.example.hello"), "{text}");
    assert!(text.contains("/hello/:name"), "{text}");
    assert!(text.contains("dist/main.wasm"), "{text}");
    assert!(text.contains("ui/index.html"), "{text}");

    let store = out.path().join("store");
    for expected in ["published", "already present"] {
        let output = bin()
            .arg("publish")
            .arg(&a)
            .arg("--store")
            .arg(format!("file://{}", store.display()))
            .arg("--allow-unsigned")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains(expected), "{text}");
    }
    let hex = hash_a.trim_start_matches("sha256:");
    assert!(store.join(format!("sha256/{hex}/bundle.tar.zst")).is_file());
}

#[test]
fn cli_errors_name_the_file_and_exit_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let output = bin()
        .arg("pack")
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("x.tar.zst"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("manifest.json"), "{stderr}");

    let output = bin()
        .arg("inspect")
        .arg(dir.path().join("absent.tar.zst"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("absent.tar.zst"));

    let output = bin()
        .arg("serve")
        .env_clear()
        .env("RUNNER_MAX_MEMORY_MB", "lots")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RUNNER_MAX_MEMORY_MB") && stderr.contains("RUNNER_SERVICE_TOKEN"),
        "{stderr}"
    );
}

#[test]
fn exec_runs_one_handler() {
    let output = bin()
        .arg("exec")
        .arg(hello_dir())
        .args(["--path", "/hello/Grace"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("status: 200"), "{text}");
    assert!(text.contains("Hello, Grace!"), "{text}");

    let output = bin()
        .arg("exec")
        .arg(hello_dir())
        .args(["--path", "/missing"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("endpoint_not_found"));
}

/// A `serve --dev` of the real binary on a data directory: the `curl`
/// lines of its announcement, up to the last one (the example's `/relay`),
/// and the host page's URL when it printed one.
struct ServeDev {
    child: std::process::Child,
    port: u16,
    curls: Vec<String>,
    host_page: Option<String>,
}

impl Drop for ServeDev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeDev {
    /// `serve --dev --extension extension` with `RUNNER_DATA_DIR=data` and,
    /// when given, `RUNNER_ROLES=roles`; its stderr goes to `data/../<port>.log`.
    fn start(extension: &std::path::Path, data: &std::path::Path, roles: Option<&str>) -> ServeDev {
        let port = closed_port_addr().port();
        let log = data.with_file_name(format!("serve-{port}.log"));
        let mut command = bin();
        command
            .args([
                "serve",
                "--dev",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--extension",
            ])
            .arg(extension)
            .env_clear()
            .env("RUNNER_DATA_DIR", data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(roles) = roles {
            command.env("RUNNER_ROLES", roles);
        }
        let mut child = command.spawn().unwrap();
        let rx = announced_lines(child.stdout.take().unwrap(), |line| {
            line.starts_with("curl ") || line.starts_with("The host page ")
        });
        let (mut curls, mut host_page) = (Vec::new(), None);
        while !curls.last().is_some_and(|c: &String| c.contains(r#""path":"/relay""#)) {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with("The host page ") => {
                    host_page = line.rsplit(' ').next().map(str::to_string);
                }
                Ok(curl) => curls.push(curl),
                Err(e) => panic!(
                    "serve --dev printed {curls:?} and then nothing ({e}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        ServeDev {
            child,
            port,
            curls,
            host_page,
        }
    }

    /// The first printed `curl` containing `what`.
    fn curl(&self, what: &str) -> &str {
        self.curls
            .iter()
            .find(|c| c.contains(what))
            .unwrap_or_else(|| panic!("no printed curl has {what}: {:?}", self.curls))
    }

    /// Run the printed `/v1/execute` curl: the guest's JSON.
    fn hello(&self) -> serde_json::Value {
        let response = post_printed_curl(self.port, self.curl("/v1/execute"), Duration::from_secs(30));
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let json: serde_json::Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        guest_json(&json)
    }

    /// The `context` of the printed `/v1/execute` curl.
    fn context(&self) -> serde_json::Value {
        let curl = self.curl("/v1/execute");
        let body: serde_json::Value =
            serde_json::from_str(curl.split("-d '").nth(1).unwrap().trim_end_matches('\'')).unwrap();
        body["context"].clone()
    }

    /// `GET path` on this server: status and JSON body.
    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.get_with(path, "")
    }

    /// `GET path` with `headers` (each `name: value\r\n`).
    fn get_with(&self, path: &str, headers: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.request("GET", path, headers);
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    /// `method path` with `headers` and no body: status and body text.
    fn request(&self, method: &str, path: &str, headers: &str) -> (u16, String) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost:{}\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n",
            self.port
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = ([127, 0, 0, 1], self.port).into();
        let response = rt.block_on(raw_exchange(addr, request.as_bytes(), Duration::from_secs(10)));
        let status = response[9..12].parse().unwrap();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, body.to_string())
    }

    /// Run the printed gateway curl whose URL has `what`, with the dev user
    /// token it carries: status and JSON body.
    fn gateway(&self, what: &str) -> (u16, serde_json::Value) {
        let curl = self.curl(what);
        let url = curl
            .split_whitespace()
            .map(|w| w.trim_matches('\''))
            .find(|w| w.starts_with("http://"))
            .unwrap();
        let path = &url[url.find("/api/").unwrap()..];
        let token = curl.split("Bearer ").nth(1).unwrap().trim_end_matches('\'');
        self.get_with(path, &format!("authorization: Bearer {token}\r\n"))
    }

    /// Run the printed curl of the registry's view of the install.
    fn registry_view(&self) -> serde_json::Value {
        let curl = self.curl("/v1/registry/");
        let url = curl.split_whitespace().find(|w| w.starts_with("http://")).unwrap();
        let path = &url[url.find("/v1/").unwrap()..];
        assert_eq!(path, "/v1/registry/tenants/dev-tenant/installs/com.example.hello");
        let (status, install) = self.get(path);
        assert_eq!(status, 200, "{install}");
        install
    }
}

/// The README's first command ends in `serve --dev`: the example is
/// published through the registry and installed for the dev tenant at the
/// content hash the printed curl names; the printed curls (the call, the
/// call and the iframe URL through the gateway, the registry's view) work; a restart on the same data directory keeps the
/// version and the install, one with other bytes under the same manifest
/// version upgrades it to a new dev version; without the registry role the
/// example goes straight into the store, as before.
#[test]
fn serve_dev_prints_a_working_curl() {
    let work = tempfile::tempdir().unwrap();
    let extension = work.path().join("hello");
    std::fs::create_dir_all(&extension).unwrap();
    copy_dir(&hello_dir(), &extension);
    let data = work.path().join("data");

    let first = ServeDev::start(&extension, &data, None);
    assert_eq!(first.hello()["message"], "Hello, world!");
    let context = first.context();
    let install = first.registry_view();
    assert_eq!(install["tenant"], "dev-tenant");
    assert_eq!(install["extension"], "com.example.hello");
    assert_eq!(
        install["content_hash"], context["content_hash"],
        "installed at the served hash"
    );
    assert_eq!(install["install_id"], context["install_id"]);
    assert_eq!(install["version_id"], context["version_id"]);
    assert_eq!(install["enabled"], true);
    let version = install["version"].as_str().unwrap().to_string();
    assert!(version.starts_with("1.0.0-dev.1.h"), "{version}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(extension.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        install["capabilities"], manifest["capabilities"],
        "the manifest's capabilities"
    );
    // The registry's other views agree: the tenant's installs, the
    // extension's versions, the UI validation route.
    let (_, installs) = first.get("/v1/registry/tenants/dev-tenant/installs");
    assert_eq!(installs["items"].as_array().unwrap().len(), 1, "{installs}");
    assert_eq!(installs["items"][0]["content_hash"], context["content_hash"]);
    let (_, extension_view) = first.get("/v1/registry/extensions/com.example.hello");
    assert_eq!(extension_view["versions"][0]["version"], version.as_str());
    assert_eq!(extension_view["versions"][0]["content_hash"], context["content_hash"]);
    let hash = context["content_hash"].as_str().unwrap();
    let (status, _) = first.get(&format!(
        "/v1/registry/installs/validate?tenant=dev-tenant&extension=com.example.hello&content_hash={}",
        hash.replace(':', "%3A")
    ));
    assert_eq!(status, 200);
    // The gateway's curls, as a signed-in user of the dev tenant: the call,
    // and the iframe URL of the installed version.
    let (status, greeting) = first.gateway("/api/ext/");
    assert_eq!(status, 200, "{greeting}");
    assert_eq!(
        (&greeting["message"], &greeting["tenant"]),
        (&serde_json::json!("Hello, world!"), &serde_json::json!("dev-tenant"))
    );
    let (status, ui) = first.gateway("/api/ext-ui/");
    assert_eq!(status, 200, "{ui}");
    let src = ui["src"].as_str().unwrap();
    assert!(
        src.contains(&hash.replace(':', "%3A")) && src.ends_with("tenant=dev-tenant"),
        "{src}"
    );
    // The host page it printed, and a dev user token from it that the
    // gateway takes.
    let host_page = first
        .host_page
        .as_deref()
        .expect("serve --dev printed the host page's URL");
    assert_eq!(host_page, format!("http://127.0.0.1:{}/dev/host", first.port));
    let (status, html) = first.request("GET", "/dev/host", "");
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#""extension":"com.example.hello""#), "{html}");
    let (status, body) = first.request("POST", "/dev/token?tenant=dev-tenant", "");
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (status, ui) = first.get_with(
        "/api/ext-ui/com.example.hello?path=/",
        &format!("authorization: Bearer {}\r\n", token["token"].as_str().unwrap()),
    );
    assert_eq!((status, &ui["src"]), (200, &serde_json::json!(src)));
    // The capability routes' curls carry the same context.
    assert!(first.curl("/visits").contains(install["install_id"].as_str().unwrap()));
    drop(first);

    // The same bytes again: the same version, hash and install, unchanged.
    let again = ServeDev::start(&extension, &data, None);
    assert_eq!(again.context(), context);
    assert_eq!(again.hello()["message"], "Hello, world!");
    let unchanged = again.registry_view();
    assert_eq!(unchanged["version"], version.as_str());
    assert_eq!(unchanged["revision"], install["revision"], "nothing changed");
    drop(again);

    // Other bytes under the same manifest version (an edit without a
    // version bump): a new dev version, the same install upgraded to it.
    let index = extension.join("ui/index.html");
    let mut html = std::fs::read_to_string(&index).unwrap();
    html.push_str("<!-- edited -->\n");
    std::fs::write(&index, html).unwrap();
    let edited = ServeDev::start(&extension, &data, None);
    assert_eq!(edited.hello()["message"], "Hello, world!");
    let upgraded = edited.registry_view();
    let new_context = edited.context();
    assert_ne!(new_context["content_hash"], context["content_hash"]);
    assert_eq!(upgraded["content_hash"], new_context["content_hash"]);
    assert_eq!(upgraded["install_id"], install["install_id"], "the same install");
    assert_eq!(upgraded["version_id"], new_context["version_id"]);
    assert_ne!(upgraded["version_id"], install["version_id"]);
    assert!(
        upgraded["version"].as_str().unwrap().starts_with("1.0.0-dev.2.h"),
        "{upgraded}"
    );
    let (_, history) = edited.get("/v1/registry/tenants/dev-tenant/installs/com.example.hello/history");
    let actions: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["install", "upgrade"]);
    drop(edited);

    // Without the registry role: straight into the store, no install ids,
    // no registry view.
    let runner_only = ServeDev::start(&extension, &data, Some("runner"));
    assert_eq!(runner_only.hello()["message"], "Hello, world!");
    let plain = runner_only.context();
    assert_eq!(plain.get("install_id"), None, "{plain}");
    assert_ne!(
        plain["content_hash"], new_context["content_hash"],
        "the bytes as packed"
    );
    assert!(
        runner_only.curls.iter().all(|c| !c.contains("/v1/registry/")),
        "{:?}",
        runner_only.curls
    );
    assert_eq!(runner_only.host_page, None, "no gateway, no host page");
    assert_eq!(runner_only.request("GET", "/dev/host", "").0, 404);
}
