//! The author's loop: what `serve --dev` and `ext-runner dev` share.
//!
//! - [`trust_dev_key`] and [`dev_secrets_key`]: the dev signing and secrets
//!   keys under the data directory;
//! - [`publish_dir`]: pack, sign and publish an extension directory into the
//!   runner's store, then [`announce`] a `curl` that calls it and its UI URL;
//! - [`build`]: `cargo build --release --target wasm32-wasip2` plus the copy
//!   to the manifest's `entry`, or `npm run build`;
//! - [`DevLoop::run`]: poll the project's sources and, on a change, rebuild
//!   and republish, keeping the last good build served when a build fails.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use ext_bundle::signature::{KeyAlgorithm, SigningKey};
use ext_bundle::{Digest, Manifest};

use crate::config::Config;
use crate::execute::Runner;
use crate::scaffold::Lang;
use crate::store::TrustSettings;

/// How often `dev` looks at the sources' modification times: quick enough
/// to feel immediate after a save, rare enough to cost nothing.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long a change must be quiet before the rebuild starts, so that an
/// editor or `git checkout` writing several files causes one build.
pub const SETTLE_TIME: Duration = Duration::from_millis(250);

/// The rustup target extensions are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The tenant `serve --dev` and `dev` publish for and their `curl` uses.
pub const DEV_TENANT: &str = "dev-tenant";

/// Files and directories of a project whose changes mean a rebuild.
const WATCHED: &[&str] = &[
    "src",
    "ui",
    "wit",
    "manifest.json",
    "Cargo.toml",
    "package.json",
    "tsconfig.json",
];

/// Build outputs and dependencies, never watched even inside [`WATCHED`].
const IGNORED: &[&str] = &["target", "node_modules", "dist", "build"];

/// `serve --dev` without `RUNNER_SECRETS_KEY`: load (or create once) a dev
/// secrets key under the data directory, so sealed secrets work locally.
///
/// # Errors
/// An unreadable or malformed key file, or an unwritable data directory.
pub fn dev_secrets_key(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join("dev-secrets-key");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return crate::host::secrets::secrets_key(&text).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()));
    }
    let text = crate::cli::secrets::secrets_keygen();
    std::fs::create_dir_all(data_dir)?;
    crate::cli::files::write_new_file(&path, text.as_bytes(), 0o600)?;
    crate::host::secrets::secrets_key(&text).map_err(anyhow::Error::msg)
}

/// `serve --dev`: load (or create once) the dev signing key under the data
/// directory and add its public key to the trust bundle, so the extension
/// is signed and verified like any production bundle.
///
/// # Errors
/// An unreadable or malformed key file, or an unwritable data directory.
pub fn trust_dev_key(config: &mut Config) -> anyhow::Result<SigningKey> {
    let path = config.data_dir.join("dev-signing-key.pem");
    let key = if path.exists() {
        let pem = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        SigningKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256);
        std::fs::create_dir_all(&config.data_dir)?;
        crate::cli::files::write_new_file(&path, key.to_pkcs8_pem().as_bytes(), 0o600)?;
        key
    };
    let mut text = config
        .bundles
        .trust
        .as_ref()
        .map(|t| t.text.clone())
        .unwrap_or_default();
    text.push('\n');
    text.push_str(&key.public_key_pem());
    config.bundles.trust =
        Some(TrustSettings::parse(&text, "SIGNING_TRUST_BUNDLE + dev key").map_err(anyhow::Error::msg)?);
    tracing::info!(key = %path.display(), fingerprint = %key.fingerprint(), "dev signing key trusted");
    Ok(key)
}

/// An extension directory packed and checked, ready to publish.
pub struct Packed {
    pub archive: Vec<u8>,
    pub manifest: Manifest,
    pub digest: Digest,
}

/// Pack `dir` (naming the build command when a component is missing) and
/// print a warning for each capability its components import undeclared.
///
/// # Errors
/// As [`crate::cli::bundle::pack_dir`].
pub fn pack(dir: &Path) -> anyhow::Result<Packed> {
    let archive = crate::cli::bundle::pack_dir(dir)?;
    for warning in crate::imports::capability_warnings(dir) {
        eprintln!("warning: {warning}");
    }
    let (_, manifest) = ext_bundle::list(&archive, &ext_bundle::UnpackLimits::default())?;
    let digest = Digest::of(&archive);
    Ok(Packed {
        archive,
        manifest,
        digest,
    })
}

/// Sign `packed` with the dev key and put bundle and signature into the
/// runner's store for [`DEV_TENANT`].
///
/// # Errors
/// The store refuses the objects.
pub async fn store(runner: &Runner, key: &SigningKey, packed: &Packed) -> anyhow::Result<()> {
    let signature = ext_bundle::signature::encode_signature(&key.sign(&packed.archive));
    let objects = runner.bundle_objects();
    let keys = objects.keys(&packed.digest, DEV_TENANT, &packed.manifest.name);
    // Signature first: a runner that sees the bundle also sees its signature.
    objects
        .put_if_absent(&keys.signature, signature.into_bytes().into())
        .await?;
    objects
        .put_if_absent(&keys.bundle, packed.archive.clone().into())
        .await?;
    tracing::info!(extension = %packed.manifest.name, content_hash = %packed.digest, "dev extension published");
    Ok(())
}

/// Pack, sign and publish `dir`, then [`announce`] it.
///
/// # Errors
/// As [`pack`] and [`store`].
pub async fn publish_dir(runner: &Runner, key: &SigningKey, dir: &Path, local: SocketAddr) -> anyhow::Result<Packed> {
    let packed = pack(dir)?;
    store(runner, key, &packed).await?;
    announce(runner, &packed, local, "is ready")?;
    Ok(packed)
}

/// The request the printed `curl` makes: the first `GET` endpoint without
/// parameters, else the first endpoint (parameters filled with `example`),
/// else `GET /`.
fn example_request(manifest: &Manifest) -> (String, String) {
    let plain = |e: &&ext_bundle::Endpoint| e.method == "GET" && !e.path.contains(':');
    match manifest.endpoints.iter().find(plain).or(manifest.endpoints.first()) {
        Some(e) => {
            let path: Vec<&str> = e
                .path
                .split('/')
                .map(|segment| if segment.starts_with(':') { "example" } else { segment })
                .collect();
            (e.method.clone(), path.join("/"))
        }
        None => ("GET".to_string(), "/".to_string()),
    }
}

/// Print how to call the published extension: a `curl` of `/v1/execute`,
/// its UI URL, and for `examples/hello` the capability routes.
///
/// # Errors
/// Sealing the demo secret fails (a bad dev secrets key).
pub fn announce(runner: &Runner, packed: &Packed, local: SocketAddr, state: &str) -> anyhow::Result<()> {
    let Packed { manifest, digest, .. } = packed;
    let auth = match runner.config().server.service_tokens.first() {
        Some(_) => " -H \"authorization: Bearer $RUNNER_SERVICE_TOKEN\"",
        None => "",
    };
    let (method, path) = example_request(manifest);
    let context = format!(
        r#""context":{{"tenant_id":"{DEV_TENANT}","extension_id":"{}","content_hash":"{digest}"}}"#,
        manifest.name
    );
    let example = format!(
        r#"curl -s http://{local}/v1/execute{auth} -H 'content-type: application/json' -d '{{{context},"http":{{"method":"{method}","path":"{path}"}}}}'"#
    );
    let base = runner
        .config()
        .server
        .public_base
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let ui = match &manifest.ui {
        Some(ui) => format!(
            "Its UI: {base}/ext-ui/{}/{}/{}\n",
            manifest.name,
            digest.to_string().replace(':', "%3A"),
            ui.entry
        ),
        None => String::new(),
    };
    println!(
        "\n{} {} {state}. Try:\n\n  {example}\n\n{ui}",
        manifest.name, manifest.version
    );
    // The capability routes of the example, when it has them: a KV counter
    // and a fetch whose API key is a secret handle (sealed here with the dev
    // secrets key for a demo value).
    if manifest.endpoints.iter().any(|e| e.path == "/visits")
        && let Some(key) = runner.config().host.secrets.key
    {
        let secrets = std::collections::BTreeMap::from([("api-key".to_string(), "dev-demo-key".to_string())]);
        let sealed = crate::host::secrets::seal(&key, &secrets, DEV_TENANT, &manifest.name, None)?;
        println!(
            "Its storage (a visit counter):\n\n  curl -s http://{local}/v1/execute{auth} -H 'content-type: application/json' -d '{{{context},\"http\":{{\"method\":\"GET\",\"path\":\"/visits\"}}}}'\n\n\
             Its egress with a secret handle (allow an upstream first, e.g. EXT_EGRESS_ALLOWLIST=http://127.0.0.1:8090 \
             EXT_EGRESS_ALLOW_PRIVATE_CIDRS=127.0.0.1/32 EXT_EGRESS_SECRETS_REQUIRE_HTTPS=false, and run one there):\n\n  \
             curl -s http://{local}/v1/execute{auth} -H 'content-type: application/json' -d '{{{context},\"http\":{{\"method\":\"POST\",\"path\":\"/relay\",\"body_b64\":\"{}\"}},\"secret_envelope\":{{\"algorithm\":\"aes-256-gcm\",\"ciphertext_b64\":\"{sealed}\"}}}}'\n",
            base64::engine::general_purpose::STANDARD.encode(br#"{"url":"http://127.0.0.1:8090/"}"#),
        );
    }
    Ok(())
}

/// Build the project in `dir` so that the components its manifest names
/// exist: Rust with `cargo build --release --target wasm32-wasip2` and a copy
/// of the component to the manifest's `entry`, TypeScript with
/// `npm run build`. The tools' output goes to stderr as it comes.
///
/// # Errors
/// A one-line summary: the manifest's problems (each naming its field), a
/// missing tool or `wasm32-wasip2` target (with the command that adds it),
/// a failed build (its output is already printed), or a build that did not
/// produce the component.
pub fn build(dir: &Path, lang: Lang) -> anyhow::Result<()> {
    let manifest_path = dir.join(ext_bundle::manifest::MANIFEST_FILE_NAME);
    let bytes = std::fs::read(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = Manifest::check(&bytes).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}: {}", dir.display(), lines.join("\n"))
    })?;
    match lang {
        Lang::Rust => build_rust(dir, &manifest),
        Lang::Ts => build_ts(dir, &manifest),
    }
}

fn build_rust(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    // In the project's directory, so that its `.cargo/config.toml` applies.
    let mut command = Command::new("cargo");
    command
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--manifest-path",
            "Cargo.toml",
        ])
        .current_dir(dir);
    let (status, output) = run_teed(command).map_err(|e| anyhow::anyhow!("running cargo: {e} (is Rust installed?)"))?;
    if !status.success() {
        if missing_wasm_target(&output) {
            bail!("the {WASM_TARGET} Rust target is not installed: run `rustup target add {WASM_TARGET}`");
        }
        bail!("cargo build failed ({status}); the compiler's output is above");
    }
    let built = built_component(dir)?;
    let entry = dir.join(&manifest.entry);
    let wasm = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    if let Some(parent) = entry.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::engine::write_atomically(&entry, &wasm).with_context(|| format!("writing {}", entry.display()))?;
    eprintln!("copied {} to {}", built.display(), entry.display());
    Ok(())
}

/// Where cargo put the project's component: its target directory (which
/// `CARGO_TARGET_DIR` or `.cargo/config.toml` may move) and library name,
/// from `cargo metadata`.
fn built_component(dir: &Path) -> anyhow::Result<PathBuf> {
    let cargo_toml = dir.join("Cargo.toml");
    let output = Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
            "Cargo.toml",
        ])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed ({})", output.status);
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).context("reading cargo metadata")?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("cargo metadata: no target_directory")?;
    let wanted = std::fs::canonicalize(&cargo_toml).unwrap_or(cargo_toml);
    let packages = metadata["packages"].as_array().map(Vec::as_slice).unwrap_or_default();
    let package = packages
        .iter()
        .find(|p| p["manifest_path"].as_str().is_some_and(|m| Path::new(m) == wanted))
        .or(packages.first())
        .context("cargo metadata: no package")?;
    let targets = package["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
    let lib = targets
        .iter()
        .find(|t| t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")))
        .and_then(|t| t["name"].as_str())
        .with_context(|| {
            format!(
                "{}: the package builds no component: add `[lib] crate-type = [\"cdylib\"]`",
                wanted.display()
            )
        })?;
    let path = Path::new(target_dir)
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", lib.replace('-', "_")));
    if !path.is_file() {
        bail!("cargo build succeeded but {} is not there", path.display());
    }
    Ok(path)
}

/// Whether cargo's output says the wasm target's standard library is missing.
pub fn missing_wasm_target(output: &str) -> bool {
    output.contains("can't find crate for `core`")
        || output.contains("can't find crate for `std`")
        || output.contains("target may not be installed")
}

fn build_ts(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    if !dir.join("node_modules").is_dir() {
        bail!(
            "{}: node_modules is missing: run `npm install` there first",
            dir.display()
        );
    }
    let mut command = Command::new("npm");
    command.args(["run", "build"]).current_dir(dir);
    let (status, _) = run_teed(command).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("npm not found: install Node.js 20 or newer with npm"),
        _ => anyhow::anyhow!("running npm: {e}"),
    })?;
    if !status.success() {
        bail!("npm run build failed ({status}); its output is above");
    }
    let entry = dir.join(&manifest.entry);
    if !entry.is_file() {
        bail!(
            "`npm run build` did not write {} (the manifest's `entry`): its build script should end in \
             `ext-build src/index.ts --out {}`",
            entry.display(),
            manifest.entry
        );
    }
    Ok(())
}

/// Run `command`, copying its stdout and stderr to our stderr line by line
/// as they come, and return its status and everything it printed.
fn run_teed(mut command: Command) -> std::io::Result<(ExitStatus, String)> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let captured = Arc::new(Mutex::new(String::new()));
    let copy = |stream: Option<Box<dyn std::io::Read + Send>>| {
        let captured = captured.clone();
        std::thread::spawn(move || {
            let Some(stream) = stream else { return };
            for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if let Ok(mut text) = captured.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        })
    };
    let out = copy(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    );
    let err = copy(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    );
    let status = child.wait()?;
    let _ = out.join();
    let _ = err.join();
    let text = captured.lock().map(|t| t.clone()).unwrap_or_default();
    Ok((status, text))
}

/// Modification time and size of every watched file of a project.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<PathBuf, (Option<SystemTime>, u64)>);

impl Snapshot {
    /// The watched files of the project in `dir` as they are now.
    pub fn take(dir: &Path) -> Snapshot {
        let mut files = BTreeMap::new();
        for name in WATCHED {
            visit(&dir.join(name), &mut files);
        }
        Snapshot(files)
    }
}

fn visit(path: &Path, files: &mut BTreeMap<PathBuf, (Option<SystemTime>, u64)>) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Editors' swap and backup files are not sources.
            if name.starts_with('.') || name.ends_with('~') || IGNORED.contains(&name.as_ref()) {
                continue;
            }
            visit(&entry.path(), files);
        }
    } else {
        files.insert(path.to_path_buf(), (meta.modified().ok(), meta.len()));
    }
}

/// `ext-runner dev` after the first publish: rebuild and republish on change.
pub struct DevLoop {
    pub runner: Arc<Runner>,
    pub key: SigningKey,
    pub dir: PathBuf,
    pub lang: Lang,
    /// The listener's address, for the printed `curl`.
    pub local: SocketAddr,
    /// The content hash being served.
    pub current: Digest,
}

impl DevLoop {
    /// Poll the sources every [`POLL_INTERVAL`]; after a change, rebuild,
    /// republish and print the new `curl`. A failed build is reported in one
    /// line after the tool's output and the last good build stays served.
    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        let mut seen = Snapshot::take(&self.dir);
        eprintln!(
            "watching {} for changes (src/, ui/, manifest.json, …); Ctrl-C stops",
            self.dir.display()
        );
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            if Snapshot::take(&self.dir) == seen {
                continue;
            }
            // Let a burst of writes finish, then build what is there.
            loop {
                tokio::time::sleep(SETTLE_TIME).await;
                let now = Snapshot::take(&self.dir);
                if now == seen {
                    break;
                }
                seen = now;
            }
            eprintln!("\nchange in {}: rebuilding", self.dir.display());
            let (dir, lang) = (self.dir.clone(), self.lang);
            let built = tokio::task::spawn_blocking(move || build(&dir, lang).and_then(|()| pack(&dir)))
                .await
                .map_err(|e| anyhow::anyhow!("the build task failed: {e}"))
                .and_then(|result| result);
            let result = match built {
                Ok(packed) if packed.digest == self.current => {
                    eprintln!("rebuilt: the bundle did not change ({})", packed.digest);
                    continue;
                }
                Ok(packed) => match store(&self.runner, &self.key, &packed).await {
                    Ok(()) => announce(&self.runner, &packed, self.local, "is rebuilt").map(|()| packed.digest),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(digest) => self.current = digest,
                Err(e) => eprintln!(
                    "error: {e:#}\nbuild failed; still serving {}: fix it and save to rebuild",
                    self.current
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_wasm_target_is_recognised() {
        let output = "error[E0463]: can't find crate for `core`\n  |\n  = note: the `wasm32-wasip2` target may not be installed\n";
        assert!(missing_wasm_target(output));
        assert!(!missing_wasm_target("error[E0308]: mismatched types"));
    }

    #[test]
    fn snapshots_see_source_changes_and_ignore_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "a").unwrap();
        std::fs::write(dir.path().join("manifest.json"), "{}").unwrap();
        let before = Snapshot::take(dir.path());
        assert_eq!(before.0.len(), 2);

        for ignored in [
            "target/x",
            "dist/main.wasm",
            "src/.lib.rs.swp",
            "src/lib.rs~",
            "README.md",
        ] {
            let path = dir.path().join(ignored);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        assert_eq!(Snapshot::take(dir.path()), before);

        std::fs::write(dir.path().join("src/lib.rs"), "ab").unwrap();
        assert_ne!(Snapshot::take(dir.path()), before);
        std::fs::create_dir_all(dir.path().join("ui")).unwrap();
        std::fs::write(dir.path().join("ui/index.html"), "").unwrap();
        assert_eq!(Snapshot::take(dir.path()).0.len(), 3);
    }

    #[test]
    fn the_example_request_prefers_a_plain_get() {
        let manifest = |endpoints: &str| {
            Manifest::from_slice(
                format!(r#"{{"name":"com.test.x","version":"1.0.0","api":{{"endpoints":{endpoints}}}}}"#).as_bytes(),
            )
            .unwrap()
        };
        let e = |m: &str, p: &str| format!(r#"{{"method":"{m}","path":"{p}","handler":"dist/main"}}"#);
        let pair = |m: &str, p: &str| (m.to_string(), p.to_string());
        assert_eq!(
            example_request(&manifest(&format!(
                "[{},{},{}]",
                e("POST", "/echo"),
                e("GET", "/hello/:name"),
                e("GET", "/hello")
            ))),
            pair("GET", "/hello")
        );
        assert_eq!(
            example_request(&manifest(&format!("[{}]", e("POST", "/items/:id")))),
            pair("POST", "/items/example")
        );
        assert_eq!(example_request(&manifest("[]")), pair("GET", "/"));
    }
}
