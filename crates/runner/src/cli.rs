//! The authoring and operations commands: `pack`, `publish`, `inspect`,
//! `exec`. Each returns text for the user or an error whose message names
//! the file or field at fault; `main.rs` prints it and sets the exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use ext_bundle::{Digest, UnpackLimits};

use crate::config::Config;
use crate::envelope::Envelope;
use crate::execute::{GuestResponse, Runner};

/// Pack a bundle directory into a deterministic `bundle.tar.zst`.
///
/// # Errors
/// Invalid manifest or missing files, named; unwritable output.
pub fn pack(dir: &Path, out: &Path) -> anyhow::Result<Digest> {
    let archive = ext_bundle::pack_dir(dir).with_context(|| format!("packing {}", dir.display()))?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::engine::write_atomically(out, &archive).with_context(|| format!("writing {}", out.display()))?;
    Ok(Digest::of(&archive))
}

/// Publish an archive into a store under the key layout. Idempotent.
///
/// # Errors
/// Unreadable or invalid bundle (it is validated before it is stored).
pub fn publish(bundle: &Path, store: &str) -> anyhow::Result<(Digest, bool)> {
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    ext_bundle::list(&archive, &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", bundle.display()))?;
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let settings = crate::config::StorageSettings::load(store, &env).map_err(|e| anyhow::anyhow!("--store: {e}"))?;
    let objects = crate::store::BundleObjects::open(&settings).map_err(|why| anyhow::anyhow!("--store: {why}"))?;
    let digest = Digest::of(&archive);
    let keys = objects.keys(&digest, "", "");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = runtime
        .block_on(objects.put_if_absent(&keys.bundle, archive.into()))
        .with_context(|| format!("writing to {store}"))?;
    Ok((digest, matches!(outcome, crate::store::object::PutOutcome::Created)))
}

/// Add this engine's precompiled artifact of the bundle's entry component
/// (`precompiled/<arch>-<os>.cwasm` plus its engine tag) and write the new
/// archive. The engine is configured from the environment exactly as
/// `serve` would be (same limits → same compatibility tag).
///
/// # Errors
/// Invalid bundle, a component that does not compile, unwritable output.
pub fn compile(bundle: &Path, out: &Path) -> anyhow::Result<(Digest, String)> {
    compile_with_env(bundle, out, std::env::vars().collect())
}

/// [`compile`] with the engine configured from `env` instead of the
/// process environment.
///
/// # Errors
/// As [`compile`].
pub fn compile_with_env(
    bundle: &Path,
    out: &Path,
    mut env: std::collections::HashMap<String, String>,
) -> anyhow::Result<(Digest, String)> {
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let files = work.path().join("files");
    ext_bundle::unpack(&archive, &files, &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", bundle.display()))?;
    let manifest_bytes = std::fs::read(files.join("manifest.json")).context("reading manifest.json")?;
    let manifest = ext_bundle::Manifest::from_slice(&manifest_bytes)
        .with_context(|| format!("{}: manifest.json", bundle.display()))?;
    let wasm = std::fs::read(files.join(&manifest.entry))
        .with_context(|| format!("{}: entry `{}`", bundle.display(), manifest.entry))?;

    env.insert("RUNNER_DATA_DIR".into(), work.path().join("data").display().to_string());
    env.remove("RUNNER_CACHE_DIR");
    env.entry("RUNNER_SERVICE_TOKEN".into())
        .or_insert_with(|| "compile-only-token-0000".into());
    let config = Config::load(&env, &crate::config::Overrides::default())?;
    let runtime = crate::engine::Runtime::new(
        crate::engine::EngineLimits {
            max_concurrency: config.max_concurrency,
            max_memory_bytes: usize::try_from(config.max_memory_mb * 1024 * 1024)?,
        },
        &config.cache_dir,
    )?;
    let artifact = runtime
        .precompile(&manifest.entry, &wasm)
        .map_err(|f| anyhow::anyhow!("{}: {}", f.code.as_str(), f.message))?;
    let (artifact_path, tag_path) = crate::engine::precompiled_paths();
    std::fs::create_dir_all(files.join("precompiled"))?;
    std::fs::write(files.join(&artifact_path), artifact)?;
    std::fs::write(files.join(&tag_path), runtime.engine_tag())?;
    let packed = ext_bundle::pack_dir(&files).context("packing the compiled bundle")?;
    crate::engine::write_atomically(out, &packed).with_context(|| format!("writing {}", out.display()))?;
    Ok((Digest::of(&packed), artifact_path))
}

/// Describe a bundle: hash, manifest, endpoints, capabilities and files.
///
/// # Errors
/// Unreadable or invalid bundle.
pub fn inspect(bundle: &Path) -> anyhow::Result<String> {
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let (files, manifest) = ext_bundle::list(&archive, &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", bundle.display()))?;
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(out, "content_hash: {}", Digest::of(&archive));
    let _ = writeln!(out, "size:         {} bytes (compressed)", archive.len());
    let _ = writeln!(out, "name:         {}", manifest.name);
    let _ = writeln!(out, "version:      {}", manifest.version);
    let _ = writeln!(out, "entry:        {}", manifest.entry);
    let _ = writeln!(
        out,
        "capabilities: {}",
        if manifest.capabilities.is_empty() {
            "(none)".to_string()
        } else {
            manifest.capabilities.join(", ")
        }
    );
    let _ = writeln!(out, "endpoints:");
    if manifest.endpoints.is_empty() {
        let _ = writeln!(out, "  (none: every request goes to {})", manifest.entry);
    }
    for e in &manifest.endpoints {
        let _ = writeln!(
            out,
            "  {:<7} {:<30} -> {}",
            e.method,
            e.path,
            manifest.handler_component(e)
        );
    }
    let _ = writeln!(out, "files:");
    for (path, meta) in &files {
        let _ = writeln!(out, "  {:>10}  {}  {path}", meta.size, meta.sha256);
    }
    Ok(out)
}

/// Arguments of `exec`.
pub struct ExecArgs {
    pub target: PathBuf,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub tenant: String,
    pub timeout_ms: Option<u64>,
}

/// Run one handler locally, no server: pack the directory (or take the
/// archive), publish it to a throwaway store and execute once.
///
/// # Errors
/// Any packing, loading or execution failure, with its code.
pub async fn exec(args: ExecArgs) -> anyhow::Result<GuestResponse> {
    let archive = if args.target.is_dir() {
        ext_bundle::pack_dir(&args.target).with_context(|| format!("packing {}", args.target.display()))?
    } else {
        std::fs::read(&args.target).with_context(|| format!("reading {}", args.target.display()))?
    };
    let (_, manifest) = ext_bundle::list(&archive, &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", args.target.display()))?;
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let mut config = Config::for_dir(work.path());
    // A local run of the author's own files: there is no signature to check.
    config.signing_required = false;
    let runner = Arc::new(Runner::new(config)?);
    let digest = Digest::of(&archive);
    let keys = runner.bundle_objects().keys(&digest, &args.tenant, &manifest.name);
    runner
        .bundle_objects()
        .put_if_absent(&keys.bundle, archive.into())
        .await
        .context("storing the bundle in the temporary store")?;
    let envelope_json = serde_json::json!({
        "context": {"tenant_id": args.tenant, "extension_id": manifest.name, "content_hash": digest.to_string()},
        "http": {
            "method": args.method,
            "path": args.path,
            "headers": args.headers.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>(),
            "body_b64": args.body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        },
        "limits": {"timeout_ms": args.timeout_ms},
    });
    let envelope = Envelope::parse(envelope_json.to_string().as_bytes(), runner.config().max_request_bytes)
        .map_err(|f| anyhow::anyhow!("{}: {}", f.code.as_str(), f.message))?;
    let request_id = uuid::Uuid::new_v4().to_string();
    match runner.execute(&envelope, &request_id).await {
        Ok(response) => Ok(response),
        Err(f) => bail!("{} ({}): {}", f.code.as_str(), f.code.status().as_u16(), f.message),
    }
}

/// Where `keygen` puts the public key: `key.pem` → `key.pub.pem`, any other
/// name gets `.pub.pem` appended.
pub fn public_key_path(private: &Path) -> PathBuf {
    let name = private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    private.with_file_name(format!("{stem}.pub.pem"))
}

/// Generate a signing key: the private key at `out` (PKCS#8 PEM, mode
/// 0600, never overwriting a file) and the public key beside it (see
/// [`public_key_path`]). Returns the public key's path and fingerprint.
///
/// # Errors
/// Either file already exists, or cannot be written; both named.
pub fn keygen(out: &Path, algorithm: ext_bundle::KeyAlgorithm) -> anyhow::Result<(PathBuf, Digest)> {
    let public = public_key_path(out);
    for path in [out, public.as_path()] {
        if path.symlink_metadata().is_ok() {
            bail!("{} already exists; keygen never overwrites a key", path.display());
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = ext_bundle::SigningKey::generate(algorithm);
    write_new_file(out, key.to_pkcs8_pem().as_bytes(), 0o600)?;
    write_new_file(&public, key.public_key_pem().as_bytes(), 0o644)?;
    Ok((public, key.fingerprint()))
}

/// Create `path` (failing if it exists) with `mode` on Unix and write it.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// What `sign` wrote.
#[derive(Debug)]
pub struct Signed {
    /// The signature file (base64, as `openssl dgst -sign | base64 -w0`).
    pub signature: PathBuf,
    /// `bundle.pem` beside it, when signed with a certificate.
    pub certificates: Option<PathBuf>,
    /// Who signed: the key fingerprint or the certificate subject.
    pub signer: ext_bundle::Signer,
}

/// Sign the archive bytes of `bundle` with the key in `key`, writing the
/// base64 signature to `out`. With `cert` (and optionally `chain`), also
/// writes `bundle.pem` (leaf, then intermediates) beside `out`, after
/// checking that the leaf certifies this key.
///
/// # Errors
/// Unreadable bundle or key, a certificate that does not match the key, or
/// unwritable output; each named.
pub fn sign(
    bundle: &Path,
    key: &Path,
    cert: Option<&Path>,
    chain: Option<&Path>,
    out: &Path,
) -> anyhow::Result<Signed> {
    if chain.is_some() && cert.is_none() {
        bail!("--chain needs --cert (the leaf certificate of the signing key)");
    }
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let key = ext_bundle::SigningKey::load(key)?;
    let read_pem = |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let certificates = match cert {
        None => None,
        Some(cert) => {
            let leaf = read_pem(cert)?;
            let chain_text = chain.map(read_pem).transpose()?;
            let files = match chain {
                Some(chain) => format!("--cert {} --chain {}", cert.display(), chain.display()),
                None => format!("--cert {}", cert.display()),
            };
            let built = ext_bundle::signature::certificate_bundle(&leaf, chain_text.as_deref(), &key.public_key())
                .with_context(|| files)?;
            Some(built)
        }
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // `write_atomically` syncs the parent directory, which a bare file name
    // (`--out bundle.sig`) does not spell out.
    let out = &if out.parent().is_some_and(|p| p.as_os_str().is_empty()) {
        Path::new(".").join(out)
    } else {
        out.to_path_buf()
    };
    let signature = ext_bundle::signature::encode_signature(&key.sign(&archive));
    crate::engine::write_atomically(out, signature.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    let (certificates, signer) = match certificates {
        None => (
            None,
            ext_bundle::Signer::Key {
                fingerprint: key.fingerprint(),
            },
        ),
        Some(built) => {
            let path = out.with_file_name("bundle.pem");
            crate::engine::write_atomically(&path, built.pem.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            (
                Some(path),
                ext_bundle::Signer::Certificate {
                    subject: built.subject,
                    fingerprint: built.fingerprint,
                },
            )
        }
    };
    Ok(Signed {
        signature: out.to_path_buf(),
        certificates,
        signer,
    })
}

/// Verify `sig` (and the certificates in `certs`, if given) over the
/// archive bytes of `bundle` against `trust` (a PEM file, or inline PEM),
/// at the current time.
///
/// # Errors
/// Unreadable files or trust bundle, named; otherwise the precise reason
/// the signature is refused, with its code.
pub fn verify(bundle: &Path, sig: &Path, trust: &str, certs: Option<&Path>) -> anyhow::Result<ext_bundle::Signer> {
    let trust = ext_bundle::TrustBundle::load(trust).context("--trust")?;
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let signature = std::fs::read_to_string(sig).with_context(|| format!("reading {}", sig.display()))?;
    let certs_text = certs
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())))
        .transpose()?;
    ext_bundle::verify(
        &archive,
        &signature,
        certs_text.as_deref(),
        &trust,
        std::time::SystemTime::now(),
    )
    .map_err(|e| anyhow::anyhow!("{} with {}: {e} [{}]", bundle.display(), sig.display(), e.code()))
}
