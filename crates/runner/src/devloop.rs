//! The author's loop: what `serve --dev` and `ext-runner dev` share.
//!
//! - [`trust_dev_key`] and [`dev_secrets_key`]: the dev signing and secrets
//!   keys under the data directory;
//! - [`publish_dir`]: pack, sign and publish an extension directory, then
//!   [`announce`] a `curl` that calls it and its UI URL. With the registry
//!   role in the process ([`Destination::Registry`]) the bundle goes
//!   through the registry's publish, under a dev version ([`dev_version`]),
//!   and is installed for [`DEV_TENANT`]; without it, straight into the
//!   runner's store;
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
use ext_registry::{Install, Precondition};

use crate::config::Config;
use crate::error::Failure;
use crate::execute::Runner;
use crate::registry::Registry;
use crate::registry::installs::InstallRequest;
use crate::registry::publish::Signature;
use crate::registry::tokens::Caller;
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

/// How long the user token `serve --dev` prints lasts: a working day.
pub const DEV_USER_TOKEN_TTL_SECS: u64 = 12 * 3600;

/// The tenant `serve --dev` and `dev` publish for and their `curl` uses.
pub const DEV_TENANT: &str = "dev-tenant";

/// The pre-release identifier of the versions dev builds are published
/// under in the registry ([`dev_version`]).
pub const DEV_PRERELEASE: &str = "dev";

/// Hex digits of the source bundle's SHA-256 in a dev version: 48 bits, so
/// two builds of one extension share a tag with odds of about 1 in 10^14,
/// short enough to read in a listing.
pub const DEV_TAG_HEX_CHARS: usize = 12;

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

/// `serve --dev` with the gateway role and no user-token keys: the HS256
/// secret dev user tokens are signed with, made once under the data
/// directory (`dev-jwt-secret`, mode 0600) and kept across restarts so a
/// printed token stays valid.
///
/// # Errors
/// An unreadable secret file or an unwritable data directory.
pub fn dev_jwt_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("dev-jwt-secret");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(text.trim().to_string());
    }
    let text = crate::cli::secrets::secrets_keygen();
    std::fs::create_dir_all(data_dir)?;
    crate::cli::files::write_new_file(&path, text.trim().as_bytes(), 0o600)?;
    Ok(text.trim().to_string())
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

impl Packed {
    /// `archive` with its manifest and content hash.
    ///
    /// # Errors
    /// The archive's manifest cannot be read.
    fn of(archive: Vec<u8>) -> anyhow::Result<Packed> {
        let (_, manifest) = ext_bundle::list(&archive, &ext_bundle::UnpackLimits::default())?;
        let digest = Digest::of(&archive);
        Ok(Packed {
            archive,
            manifest,
            digest,
        })
    }
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
    Packed::of(archive)
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

/// Where `serve --dev` and `dev` publish the extension.
#[derive(Clone)]
pub enum Destination {
    /// No registry role in this process: the runner's bundle store, as
    /// `ext-runner publish` writes it.
    Store,
    /// The registry role in this process: its publish (the code of `POST
    /// /v1/registry/bundles`) and an install for [`DEV_TENANT`].
    Registry(Arc<Registry>),
}

/// A build as it is served.
pub struct Served {
    /// The manifest as published (with the dev version through the registry).
    pub manifest: Manifest,
    /// The content hash served.
    pub digest: Digest,
    /// The content hash of the bundle packed from the directory (what
    /// `ext-runner pack` prints), which `dev` compares rebuilds with.
    pub source: Digest,
    /// [`DEV_TENANT`]'s install, when published through the registry.
    pub install: Option<Install>,
}

/// The version a dev build is published under in the registry, a
/// pre-release of the manifest's version: `<version>-dev.<n>.h<tag>`
/// (`.dev.<n>.h<tag>` appended when the manifest's version is a pre-release
/// already; build metadata dropped, as the registry refuses it), where `tag`
/// is the first [`DEV_TAG_HEX_CHARS`] hex digits of `source`, the hash of
/// the bundle packed from the directory. A build published before (a
/// version in `published` with its tag) keeps its version, so the same
/// bytes publish as the same version again; a new build gets `n` one above
/// the highest of this manifest version's dev builds, so it sorts after
/// every one of them (an upgrade, not a rollback). The `h` keeps the tag a
/// textual identifier (an all-digit tag with a leading zero is not semver).
pub fn dev_version(manifest_version: &str, source: &Digest, published: &[String]) -> String {
    let base = manifest_version.split('+').next().unwrap_or(manifest_version);
    let separator = if base.contains('-') { '.' } else { '-' };
    let prefix = format!("{base}{separator}{DEV_PRERELEASE}.");
    let tag = format!("h{}", &source.hex()[..DEV_TAG_HEX_CHARS]);
    let mut highest = 0;
    for version in published {
        let Some((n, rest)) = version.strip_prefix(&prefix).and_then(|rest| rest.split_once('.')) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        if rest == tag {
            return version.clone();
        }
        highest = highest.max(n);
    }
    format!("{prefix}{}.{tag}", highest + 1)
}

/// `packed` with its manifest's `version` set to `version`: unpacked,
/// edited and packed again (deterministically, so the same input gives the
/// same bytes).
///
/// # Errors
/// The archive does not unpack or pack again, or the temporary directory
/// cannot be written.
pub fn with_version(packed: &Packed, version: &str) -> anyhow::Result<Packed> {
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = work.path().join("bundle");
    ext_bundle::unpack(&packed.archive, &dir, &ext_bundle::UnpackLimits::default())?;
    let path = dir.join(ext_bundle::manifest::MANIFEST_FILE_NAME);
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    manifest
        .as_object_mut()
        .context("manifest.json is not a JSON object")?
        .insert("version".to_string(), version.into());
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    let archive = ext_bundle::pack_dir(&dir)?;
    Packed::of(archive)
}

/// A registry refusal as an error of the dev start-up.
fn refused(what: &str, failure: Failure) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}: {}", failure.code.as_str(), failure.message)
}

/// Publish `source` through `registry` under its [`dev_version`], signed
/// with the dev key, and install it for [`DEV_TENANT`] (every capability
/// and egress host its manifest declares; config and enabled kept as they
/// are), upgrading an install of an earlier build.
///
/// # Errors
/// The registry refuses the bundle or the install (its code and message),
/// or the bundle cannot be repacked.
pub async fn publish_to_registry(registry: &Registry, key: &SigningKey, source: Packed) -> anyhow::Result<Served> {
    let name = source.manifest.name.clone();
    let source_digest = source.digest;
    let published: Vec<String> = match registry.database().extension(&name).await {
        Ok(found) => found
            .map(|(_, versions)| versions.into_iter().map(|v| v.version).collect())
            .unwrap_or_default(),
        Err(e) => return Err(refused("reading the registry", crate::registry::failure(e))),
    };
    let version = dev_version(&source.manifest.version.to_string(), &source_digest, &published);
    let packed = tokio::task::spawn_blocking(move || with_version(&source, &version))
        .await
        .map_err(|e| anyhow::anyhow!("the repack task failed: {e}"))??;
    let Packed {
        archive,
        manifest,
        digest,
    } = packed;
    let caller = Caller::dev();
    let signature = Signature {
        signature: Some(ext_bundle::signature::encode_signature(&key.sign(&archive))),
        certificates_b64: None,
    };
    let published = registry
        .publish(&caller, archive.into(), signature)
        .await
        .map_err(|f| refused("publishing to the registry", f))?;
    let request = InstallRequest {
        version: published.version().version.clone(),
        capabilities: None,
        config: None,
        egress: None,
        enabled: None,
    };
    let applied = registry
        .put_install(&caller, DEV_TENANT, &name, &request, Precondition::None)
        .await
        .map_err(|f| refused(&format!("installing for {DEV_TENANT}"), f))?;
    let install = applied.install;
    tracing::info!(
        extension = %name,
        version = %install.version,
        content_hash = %digest,
        install_id = %install.install_id,
        action = applied.action.map_or("unchanged", |a| a.as_str()),
        "dev extension published to the registry and installed"
    );
    Ok(Served {
        manifest,
        digest,
        source: source_digest,
        install: Some(install),
    })
}

/// Publish `packed` to `destination`.
///
/// # Errors
/// As [`store`] and [`publish_to_registry`].
pub async fn publish(
    runner: &Runner,
    destination: &Destination,
    key: &SigningKey,
    packed: Packed,
) -> anyhow::Result<Served> {
    match destination {
        Destination::Store => {
            store(runner, key, &packed).await?;
            Ok(Served {
                manifest: packed.manifest,
                digest: packed.digest,
                source: packed.digest,
                install: None,
            })
        }
        Destination::Registry(registry) => publish_to_registry(registry, key, packed).await,
    }
}

/// Pack, sign and publish `dir` to `destination`, then [`announce`] it.
///
/// # Errors
/// As [`pack`] and [`publish`].
pub async fn publish_dir(
    runner: &Runner,
    destination: &Destination,
    key: &SigningKey,
    dir: &Path,
    local: SocketAddr,
) -> anyhow::Result<Served> {
    let packed = pack(dir)?;
    let served = publish(runner, destination, key, packed).await?;
    announce(runner, &served, local, "is ready")?;
    Ok(served)
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

/// Print how to call the published extension: a `curl` of `/v1/execute`
/// (carrying the install's ids when there is one), a `curl` of the
/// registry's view of the install, its UI URL, and for `examples/hello` the
/// capability routes. The whole text goes out in one write (scripts count
/// the printed `curl`s, then take the last `/v1/execute` one).
///
/// # Errors
/// Sealing the demo secret fails (a bad dev secrets key).
pub fn announce(runner: &Runner, served: &Served, local: SocketAddr, state: &str) -> anyhow::Result<()> {
    print!("{}", announcement(runner, served, local, state)?);
    Ok(())
}

/// The text [`announce`] prints.
fn announcement(runner: &Runner, served: &Served, local: SocketAddr, state: &str) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let Served {
        manifest,
        digest,
        install,
        ..
    } = served;
    let config = runner.config();
    let auth = match config.server.service_tokens.first() {
        Some(_) => " -H \"authorization: Bearer $RUNNER_SERVICE_TOKEN\"",
        None => "",
    };
    let (method, path) = example_request(manifest);
    let ids = match install {
        Some(i) => format!(r#","install_id":"{}","version_id":"{}""#, i.install_id, i.version_id),
        None => String::new(),
    };
    let context = format!(
        r#""context":{{"tenant_id":"{DEV_TENANT}","extension_id":"{}"{ids},"content_hash":"{digest}"}}"#,
        manifest.name
    );
    let example = format!(
        r#"curl -s http://{local}/v1/execute{auth} -H 'content-type: application/json' -d '{{{context},"http":{{"method":"{method}","path":"{path}"}}}}'"#
    );
    let base = config
        .server
        .public_base
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let mut text = String::new();
    let installed = match install {
        Some(_) => format!(", installed for {DEV_TENANT}"),
        None => String::new(),
    };
    let _ = write!(
        text,
        "\n{} {} {state}{installed}. Try:\n\n  {example}\n\n",
        manifest.name, manifest.version
    );
    if install.is_some()
        && config.roles.gateway
        && let Some(secret) = &config.gateway.jwt_secret
    {
        let token = crate::gateway::users::sign_hs256(
            secret,
            &crate::gateway::users::UserTokenRequest::dev_user(DEV_TENANT, DEV_USER_TOKEN_TTL_SECS),
        )?;
        let _ = write!(
            text,
            "Through the gateway, as a signed-in user of {DEV_TENANT} (a dev token, valid 12 h; \
             `ext-runner gateway token --tenant {DEV_TENANT}` makes another):\n\n  \
             curl -s -X {method} http://{local}/api/ext/{name}{path} -H 'authorization: Bearer {token}'\n\n\
             The iframe URL of the installed version, as a host page asks for it:\n\n  \
             curl -s 'http://{local}/api/ext-ui/{name}?path=/' -H 'authorization: Bearer {token}'\n\n",
            name = manifest.name,
        );
        if manifest.ui.is_some() {
            let _ = write!(
                text,
                "The host page (the UI embedded as a user of {DEV_TENANT}, every call shown): http://{local}/dev/host\n\n"
            );
        }
    }
    if install.is_some() {
        let registry_auth = match config.registry.tokens.is_empty() {
            true => "",
            false => " -H \"authorization: Bearer $REGISTRY_TOKEN\"",
        };
        let _ = write!(
            text,
            "The registry's view of the install (version, content hash, capabilities):\n\n  \
             curl -s http://{local}/v1/registry/tenants/{DEV_TENANT}/installs/{}{registry_auth}\n\n",
            manifest.name
        );
    }
    if let Some(ui) = &manifest.ui {
        let _ = writeln!(
            text,
            "Its UI: {base}/ext-ui/{}/{}/{}?tenant={DEV_TENANT}",
            manifest.name,
            digest.to_string().replace(':', "%3A"),
            ui.entry
        );
    }
    text.push('\n');
    // The capability routes of the example, when it has them: a KV counter
    // and a fetch whose API key is a secret handle (sealed here with the dev
    // secrets key for a demo value).
    if manifest.endpoints.iter().any(|e| e.path == "/visits")
        && let Some(key) = config.host.secrets.key
    {
        let secrets = std::collections::BTreeMap::from([("api-key".to_string(), "dev-demo-key".to_string())]);
        let sealed = crate::host::secrets::seal(&key, &secrets, DEV_TENANT, &manifest.name, None)?;
        let _ = writeln!(
            text,
            "Its storage (a visit counter):\n\n  curl -s http://{local}/v1/execute{auth} -H 'content-type: application/json' -d '{{{context},\"http\":{{\"method\":\"GET\",\"path\":\"/visits\"}}}}'\n\n\
             Its egress with a secret handle (allow an upstream first, e.g. EXT_EGRESS_ALLOWLIST=http://127.0.0.1:8090 \
             EXT_EGRESS_ALLOW_PRIVATE_CIDRS=127.0.0.1/32 EXT_EGRESS_SECRETS_REQUIRE_HTTPS=false, and run one there):\n\n  \
             curl -s http://{local}/v1/execute{auth} -H 'content-type: application/json' -d '{{{context},\"http\":{{\"method\":\"POST\",\"path\":\"/relay\",\"body_b64\":\"{}\"}},\"secret_envelope\":{{\"algorithm\":\"aes-256-gcm\",\"ciphertext_b64\":\"{sealed}\"}}}}'\n",
            base64::engine::general_purpose::STANDARD.encode(br#"{"url":"http://127.0.0.1:8090/"}"#),
        );
    }
    Ok(text)
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
    /// Where each build is published (and, through the registry, installed).
    pub destination: Destination,
    pub key: SigningKey,
    pub dir: PathBuf,
    pub lang: Lang,
    /// The listener's address, for the printed `curl`.
    pub local: SocketAddr,
    /// The build being served.
    pub current: Served,
}

impl DevLoop {
    /// Poll the sources every [`POLL_INTERVAL`]; after a change, rebuild,
    /// republish (through the registry: a new dev version, the dev tenant's
    /// install upgraded to it) and print the new `curl`. A failed build is
    /// reported in one line after the tool's output and the last good build
    /// stays served. Runs until the task is dropped.
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
                Ok(packed) if packed.digest == self.current.source => {
                    eprintln!("rebuilt: the bundle did not change ({})", self.current.digest);
                    continue;
                }
                Ok(packed) => match publish(&self.runner, &self.destination, &self.key, packed).await {
                    Ok(served) => announce(&self.runner, &served, self.local, "is rebuilt").map(|()| served),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(served) => self.current = served,
                Err(e) => eprintln!(
                    "error: {e:#}\nbuild failed; still serving {}: fix it and save to rebuild",
                    self.current.digest
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
    fn dev_versions_are_the_same_for_the_same_build_and_sort_after_earlier_builds() {
        let a = Digest::of(b"build a");
        let b = Digest::of(b"build b");
        let tag = |d: &Digest| format!("h{}", &d.hex()[..DEV_TAG_HEX_CHARS]);
        let (ta, tb) = (tag(&a), tag(&b));
        let list = |versions: &[&str]| versions.iter().map(ToString::to_string).collect::<Vec<_>>();
        let cases: &[(&str, &Digest, Vec<String>, String)] = &[
            // (manifest version, build, published versions, expected)
            ("1.0.0", &a, list(&[]), format!("1.0.0-dev.1.{ta}")),
            ("1.0.0", &a, list(&["1.0.0", "0.9.0"]), format!("1.0.0-dev.1.{ta}")),
            (
                "1.0.0",
                &a,
                list(&[&format!("1.0.0-dev.1.{ta}")]),
                format!("1.0.0-dev.1.{ta}"),
            ),
            (
                "1.0.0",
                &b,
                list(&[&format!("1.0.0-dev.1.{ta}")]),
                format!("1.0.0-dev.2.{tb}"),
            ),
            // A build published before keeps its version, even when later ones exist.
            (
                "1.0.0",
                &a,
                list(&[&format!("1.0.0-dev.1.{ta}"), &format!("1.0.0-dev.2.{tb}")]),
                format!("1.0.0-dev.1.{ta}"),
            ),
            // Counting is per manifest version, numeric, and ignores other shapes.
            (
                "1.0.0",
                &a,
                list(&["1.0.0-dev.9.hx", "1.0.0-dev.10.hy", "1.0.0-dev.x.hz", "1.1.0-dev.40.hw"]),
                format!("1.0.0-dev.11.{ta}"),
            ),
            ("1.1.0", &a, list(&["1.0.0-dev.3.hx"]), format!("1.1.0-dev.1.{ta}")),
            // A pre-release is extended; build metadata is dropped.
            ("2.0.0-beta.1", &a, list(&[]), format!("2.0.0-beta.1.dev.1.{ta}")),
            ("1.0.0+build.5", &a, list(&[]), format!("1.0.0-dev.1.{ta}")),
        ];
        for (manifest_version, build, published, expected) in cases {
            let got = dev_version(manifest_version, build, published);
            assert_eq!(&got, expected, "{manifest_version} with {published:?}");
            // A pre-release of the manifest's version, which the registry accepts.
            let parsed = ext_registry::names::parse_version(&got).unwrap();
            assert!(manifest_version.starts_with(&format!("{}.{}.{}", parsed.major, parsed.minor, parsed.patch)));
            assert!(parsed.pre.as_str().contains(&format!("{DEV_PRERELEASE}.")), "{got}");
        }
        // Each new build sorts after the one before it.
        let first = ext_registry::names::parse_version(&dev_version("1.0.0", &b, &list(&["1.0.0-dev.9.hx"]))).unwrap();
        let second = ext_registry::names::parse_version(&dev_version("1.0.0", &a, &[first.to_string()])).unwrap();
        assert!(second > first, "{second} > {first}");
    }

    #[test]
    fn a_bundle_with_a_dev_version_is_the_same_bytes_each_time() {
        let packed = pack(&ext_test_fixtures::hello_bundle_dir()).unwrap();
        let once = with_version(&packed, "1.0.0-dev.1.habc").unwrap();
        let again = with_version(&packed, "1.0.0-dev.1.habc").unwrap();
        assert_eq!(once.digest, again.digest);
        assert_eq!(once.manifest.version.to_string(), "1.0.0-dev.1.habc");
        assert_eq!(once.manifest.name, packed.manifest.name);
        assert_eq!(once.manifest.endpoints.len(), packed.manifest.endpoints.len());
        assert_ne!(once.digest, packed.digest);
        assert_ne!(with_version(&packed, "1.0.0-dev.2.habc").unwrap().digest, once.digest);
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
