//! The author's loop through the real binary: `new` for Rust and
//! TypeScript, `dev` building, serving and rebuilding a scaffolded project,
//! and the errors for the usual mistakes (a bad name, an existing
//! directory, a missing component or `wasm32-wasip2` target, a manifest
//! field, an undeclared capability).
//!
//! Scaffolded Rust projects build into `<target>/scaffold-build` (shared by
//! every test and run, so only the first build compiles the SDK's
//! dependencies). The TypeScript test needs Node.js and npm and fails,
//! saying so, without them.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// A cold first build compiles wit-bindgen and serde for wasm32-wasip2; a
/// TypeScript component's first request compiles its JavaScript engine.
const FIRST_BUILD: Duration = Duration::from_secs(900);
const REBUILD: Duration = Duration::from_secs(300);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ext-runner"))
}

/// The target directory: `CARGO_TARGET_DIR`, else the one holding the binary
/// under test (`<target>/debug/ext-runner`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_BIN_EXE_ext-runner"))
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_path_buf(),
    }
}

/// Run `ext-runner new` in `parent`; returns the output.
fn new(parent: &Path, args: &[&str]) -> std::process::Output {
    bin().arg("new").args(args).current_dir(parent).output().unwrap()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every file below `dir`, relative, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn new_scaffolds_rust_and_typescript_projects() {
    let parent = tempfile::tempdir().unwrap();
    let output = new(parent.path(), &["hello-rs", "--lang", "rust"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let dir = parent.path().join("hello-rs");
    assert_eq!(
        files_below(&dir),
        [
            ".gitignore",
            "Cargo.lock",
            "Cargo.toml",
            "README.md",
            "manifest.json",
            "src/lib.rs",
            "ui/index.html"
        ]
    );
    let manifest = ext_bundle::Manifest::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.name, "com.example.hello-rs");
    assert_eq!(manifest.version.to_string(), "0.1.0");
    assert_eq!(manifest.entry, "dist/main.wasm");
    assert_eq!(manifest.ui.as_ref().map(|ui| ui.entry.as_str()), Some("index.html"));
    assert!(
        manifest
            .endpoints
            .iter()
            .any(|e| e.method == "GET" && e.path == "/hello")
    );
    assert!(
        manifest
            .endpoints
            .iter()
            .any(|e| e.method == "POST" && e.path == "/echo")
    );
    let cargo_toml: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(cargo_toml["package"]["name"].as_str(), Some("hello-rs"));
    assert!(cargo_toml.contains_key("workspace"), "a standalone project");
    let sdk = cargo_toml["dependencies"]["ext-sdk"]["path"].as_str().unwrap();
    assert!(
        Path::new(sdk).is_absolute() && Path::new(sdk).join("src/lib.rs").is_file(),
        "{sdk}"
    );
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("ext_sdk::handler!(handle);") && lib.contains("#[cfg(test)]"),
        "{lib}"
    );
    assert!(!lib.contains("{{"), "unrendered placeholder: {lib}");

    // Nothing built yet: pack says which command builds the component.
    let output = bin()
        .arg("pack")
        .arg(&dir)
        .arg("--out")
        .arg(parent.path().join("x.tar.zst"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("field `entry`")
            && stderr.contains("cargo build --release --target wasm32-wasip2")
            && stderr.contains("release/hello_rs.wasm"),
        "{stderr}"
    );

    let output = new(parent.path(), &["hello-ts", "--lang", "ts"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let dir = parent.path().join("hello-ts");
    assert_eq!(
        files_below(&dir),
        [
            ".gitignore",
            "README.md",
            "manifest.json",
            "package.json",
            "src/index.ts",
            "test/index.test.ts",
            "tsconfig.json",
            "ui/index.html"
        ]
    );
    let package: Value = serde_json::from_slice(&std::fs::read(dir.join("package.json")).unwrap()).unwrap();
    let sdk = package["dependencies"]["@ext-runner/sdk"].as_str().unwrap();
    let sdk = Path::new(sdk.strip_prefix("file:").unwrap());
    assert!(
        sdk.is_absolute() && sdk.join("package.json").is_file(),
        "{}",
        sdk.display()
    );
    assert!(package["scripts"]["build"].as_str().unwrap().contains("ext-build"));
    let manifest = ext_bundle::Manifest::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest.runtime.as_deref(), Some("wasm-js@1"));
    let test = std::fs::read_to_string(dir.join("test/index.test.ts")).unwrap();
    assert!(test.contains("@ext-runner/sdk/testing") && test.contains("com.example.hello-ts"));

    // A reverse-domain name is the manifest name as it is.
    let output = new(
        parent.path(),
        &["com.acme.tickets", "--lang", "rust", "--dir", "nested"],
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    let manifest = std::fs::read(parent.path().join("nested/com.acme.tickets/manifest.json")).unwrap();
    assert_eq!(
        ext_bundle::Manifest::from_slice(&manifest).unwrap().name,
        "com.acme.tickets"
    );
}

#[test]
fn new_refuses_an_existing_directory_a_bad_name_and_a_missing_sdk() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::create_dir(parent.path().join("taken")).unwrap();
    std::fs::write(parent.path().join("taken/notes.txt"), "mine").unwrap();
    let output = new(parent.path(), &["taken", "--lang", "rust"]);
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("taken already exists and is not empty"), "{stderr}");
    assert_eq!(files_below(&parent.path().join("taken")), ["notes.txt"], "left alone");

    // An empty directory is fine: the project takes its place.
    std::fs::create_dir(parent.path().join("empty")).unwrap();
    let output = new(parent.path(), &["empty", "--lang", "ts"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(parent.path().join("empty/package.json").is_file());

    for (name, problem) in [
        ("Hello", "segment `Hello` may contain only a-z, 0-9, '-' and '_'"),
        ("my app", "segment `my app` may contain only"),
        ("a..b", "has an empty segment"),
    ] {
        let output = new(parent.path(), &[name, "--lang", "rust"]);
        assert!(!output.status.success(), "{name}");
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains(&format!("`{name}` is not a valid extension name")) && stderr.contains(problem),
            "{name}: {stderr}"
        );
    }

    let output = new(
        parent.path(),
        &["fine", "--lang", "rust", "--sdk-path", "/nonexistent/sdk"],
    );
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("--sdk-path /nonexistent/sdk: no Cargo.toml of `ext-sdk`"),
        "{stderr}"
    );

    // Nothing half-made is left behind by any of these.
    let mut left: Vec<String> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["empty", "taken"]);
}

/// The import names `pack` and `dev` read without compiling are the ones
/// Wasmtime sees.
#[test]
fn component_imports_agree_with_wasmtime() {
    let engine = wasmtime::Engine::default();
    let mut paths = vec![hello_dir().join("dist/main.wasm")];
    for fixture in ["kv_ops", "metrics_emit", "proxy_probe", "secrets_probe", "wasi_sockets"] {
        paths.push(ext_test_fixtures::component(fixture));
    }
    for path in paths {
        let wasm = std::fs::read(&path).unwrap();
        let mut ours = ext_runner::cli::component_imports(&wasm).unwrap();
        let component = wasmtime::component::Component::new(&engine, &wasm).unwrap();
        let mut theirs: Vec<String> = component
            .component_type()
            .imports(&engine)
            .filter(|(_, item)| !matches!(item.ty, wasmtime::component::types::ComponentItem::Type(_)))
            .map(|(name, _)| name.to_string())
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{}", path.display());
    }
}

/// The environment of a scaffolded project's build: the toolchain from
/// this environment, nothing meant for the host build, a shared target dir.
fn build_env(command: &mut Command) -> &mut Command {
    command.env_clear();
    for name in [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "TMPDIR",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.env("CARGO_TARGET_DIR", target_dir().join("scaffold-build"))
}

/// A running `ext-runner dev`: the `curl` lines it prints, and its stderr.
struct Dev {
    child: Child,
    port: u16,
    curls: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    fn start(project: &Path, data: &Path) -> Dev {
        let port = closed_port_addr().port();
        let mut command = bin();
        build_env(&mut command)
            .arg("dev")
            .arg(project)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUNNER_DATA_DIR", data)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let curls = curl_lines(child.stdout.take().unwrap());
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Dev {
            child,
            port,
            curls,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next `/v1/execute` `curl` line `dev` prints, and the `curl` of
    /// the registry's view of the install it prints after the gateway's two
    /// (the call and the iframe URL, checked in `cli.rs`).
    fn next_curl(&mut self, within: Duration) -> (String, String) {
        let mut next = || match self.curls.recv_timeout(within) {
            Ok(curl) => curl,
            Err(RecvTimeoutError::Timeout) => panic!(
                "ext-runner dev printed no curl within {within:?}; its stderr:\n{}",
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "ext-runner dev stopped ({:?}); its stderr:\n{}",
                self.child.try_wait(),
                self.stderr()
            ),
        };
        let execute = next();
        for _ in 0..2 {
            let gateway = next();
            assert!(gateway.contains("/api/ext"), "{gateway}");
        }
        let registry = next();
        assert!(execute.contains("/v1/execute"), "{execute}");
        assert!(
            registry.contains("/v1/registry/tenants/dev-tenant/installs/"),
            "{registry}"
        );
        (execute, registry)
    }

    /// Wait until stderr contains `text`.
    fn wait_for_stderr(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "ext-runner dev did not print {text:?} within {within:?}; its stderr:\n{}",
                self.stderr()
            );
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "ext-runner dev stopped; its stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POST the body of a printed `curl` to this runner; the guest's JSON.
    fn call(&self, curl: &str) -> Value {
        let response = post_printed_curl(self.port, curl, FIRST_BUILD);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let json: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        guest_json(&json)
    }
}

/// Run the printed `curl` of the registry's view of the install: the install.
fn registry_view(port: u16, curl: &str) -> Value {
    let url = curl.split_whitespace().find(|w| w.starts_with("http://")).unwrap();
    let path = &url[url.find("/v1/").unwrap()..];
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = rt.block_on(raw_exchange(
        ([127, 0, 0, 1], port).into(),
        request.as_bytes(),
        Duration::from_secs(10),
    ));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// The `context` of a printed `/v1/execute` curl.
fn context(curl: &str) -> Value {
    let body: Value = serde_json::from_str(curl.split("-d '").nth(1).unwrap().trim_end_matches('\'')).unwrap();
    body["context"].clone()
}

fn content_hash(curl: &str) -> String {
    let start = curl.find("sha256:").unwrap();
    curl[start..start + 71].to_string()
}

/// `new` → `dev` → the printed curl answers → a broken edit keeps the last
/// good build serving → a fixed edit is rebuilt and answers with the new text.
#[test]
fn rust_dev_loop_serves_and_rebuilds_on_save() {
    let work = tempfile::tempdir().unwrap();
    let output = new(work.path(), &["loop-rs", "--lang", "rust"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let project = work.path().join("loop-rs");
    let started = Instant::now();
    let mut dev = Dev::start(&project, &work.path().join("data"));

    let (curl, registry) = dev.next_curl(FIRST_BUILD);
    let first = content_hash(&curl);
    assert!(
        curl.contains(r#""path":"/hello""#) && curl.contains("com.example.loop-rs"),
        "{curl}"
    );
    // Published through the registry and installed for the dev tenant at
    // the hash the curl names, with the install's ids in its context.
    let install = registry_view(dev.port, &registry);
    assert_eq!(install["content_hash"], first.as_str());
    assert_eq!(install["install_id"], context(&curl)["install_id"]);
    assert_eq!(install["version_id"], context(&curl)["version_id"]);
    assert!(
        install["version"].as_str().unwrap().starts_with("0.1.0-dev.1.h"),
        "{install}"
    );
    assert_eq!(
        dev.call(&curl),
        serde_json::json!({"message": "Hello, world!", "extension": "com.example.loop-rs"})
    );
    assert!(
        project.join("dist/main.wasm").is_file(),
        "dev copies the component to the manifest's entry"
    );
    eprintln!("first build, publish and call: {:?}", started.elapsed());

    let lib = project.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, format!("{source}\nfn broken( {{\n")).unwrap();
    dev.wait_for_stderr("build failed; still serving", REBUILD);
    assert!(
        dev.stderr().contains("unclosed delimiter"),
        "the compiler's output is shown"
    );
    assert_eq!(
        dev.call(&curl)["message"],
        "Hello, world!",
        "the last good build still answers"
    );

    let edited = Instant::now();
    std::fs::write(&lib, source.replace("Hello, {name}!", "Howdy, {name}!")).unwrap();
    let (curl, registry) = dev.next_curl(REBUILD);
    assert_ne!(content_hash(&curl), first, "a new build, a new content hash");
    assert_eq!(dev.call(&curl)["message"], "Howdy, world!");
    // The same version in the manifest, a new dev version, the install upgraded.
    let upgraded = registry_view(dev.port, &registry);
    assert_eq!(upgraded["content_hash"], content_hash(&curl).as_str());
    assert_eq!(upgraded["install_id"], install["install_id"]);
    assert_eq!(upgraded["version_id"], context(&curl)["version_id"]);
    assert!(
        upgraded["version"].as_str().unwrap().starts_with("0.1.0-dev.2.h"),
        "{upgraded}"
    );
    eprintln!("rebuild, republish and call: {:?}", edited.elapsed());
}

/// A scaffolded TypeScript project: `npm install`, `npm test`, then `dev`.
#[test]
fn ts_dev_loop_serves_the_template() {
    let npm = Command::new("npm").arg("--version").output();
    assert!(
        npm.as_ref().is_ok_and(|o| o.status.success()),
        "npm is needed for the TypeScript authoring test (install Node.js 20 or newer with npm): {npm:?}"
    );
    ensure_ts_sdk_built();
    let work = tempfile::tempdir().unwrap();
    let output = new(work.path(), &["loop-ts", "--lang", "ts"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let project = work.path().join("loop-ts");
    for args in [
        &["install", "--prefer-offline", "--no-audit", "--no-fund"][..],
        &["test"],
    ] {
        let output = Command::new("npm").args(args).current_dir(&project).output().unwrap();
        assert!(
            output.status.success(),
            "npm {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr_of(&output)
        );
    }

    let started = Instant::now();
    let mut dev = Dev::start(&project, &work.path().join("data"));
    let (curl, registry) = dev.next_curl(FIRST_BUILD);
    assert_eq!(
        dev.call(&curl),
        serde_json::json!({"message": "Hello, world!", "extension": "com.example.loop-ts"})
    );
    assert_eq!(
        registry_view(dev.port, &registry)["content_hash"],
        content_hash(&curl).as_str()
    );
    eprintln!("TypeScript build, publish, compile and call: {:?}", started.elapsed());
    // The JavaScript component imports every interface; dev says which
    // capabilities are undeclared, once, without failing.
    let stderr = dev.stderr();
    assert!(
        stderr.contains("imports alga:extension/storage") && stderr.contains("cap:storage.kv"),
        "{stderr}"
    );
}

/// The TypeScript SDK (`sdk/ts`) built with its dependencies installed,
/// as `scripts/build-example-ts` leaves it.
fn ensure_ts_sdk_built() {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sdk = root.join("sdk/ts");
    if *built || (sdk.join("dist/index.js").is_file() && sdk.join("node_modules").is_dir()) {
        return;
    }
    let output = Command::new("bash")
        .arg(root.join("scripts/build-example-ts"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/build-example-ts failed; it builds the TypeScript SDK:\n{}",
        stderr_of(&output)
    );
    *built = true;
}

/// The usual mistakes stop `dev` at start with what to do: a manifest
/// field, and a missing `wasm32-wasip2` target (cargo's own message,
/// reproduced by a stand-in `cargo`).
#[test]
fn dev_start_names_the_manifest_field_and_the_missing_target() {
    let work = tempfile::tempdir().unwrap();
    let output = new(work.path(), &["oops", "--lang", "rust"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let project = work.path().join("oops");
    let manifest_path = project.join("manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(&manifest_path, manifest.replace("\"0.1.0\"", "\"one\"")).unwrap();
    let run = || {
        let mut command = bin();
        build_env(&mut command)
            .arg("dev")
            .arg(&project)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUNNER_DATA_DIR", work.path().join("data"))
            .env("PATH", path_with(&work.path().join("bin")))
            .output()
            .unwrap()
    };
    let output = run();
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("field `version`") && stderr.contains("`one`"),
        "{stderr}"
    );

    std::fs::write(&manifest_path, manifest).unwrap();
    let fake = work.path().join("bin/cargo");
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'error[E0463]: can'\\''t find crate for `core`' >&2\n\
         echo '  = note: the `wasm32-wasip2` target may not be installed' >&2\nexit 101\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let output = run();
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("can't find crate for `core`") && stderr.contains("run `rustup target add wasm32-wasip2`"),
        "{stderr}"
    );
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(paths).unwrap()
}
