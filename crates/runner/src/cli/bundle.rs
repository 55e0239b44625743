//! `pack`, `publish`, `compile` and `inspect`: making, uploading and
//! describing bundles.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use ext_bundle::{Digest, UnpackLimits};

use crate::config::Config;
use crate::imports::{build_hint, check_components};
use crate::store::StorageSettings;
use crate::store::object::{BundleObjects, PutOutcome};

/// Pack a bundle directory into a deterministic `bundle.tar.zst`.
///
/// # Errors
/// Invalid manifest or missing files, named; unwritable output.
pub fn pack(dir: &Path, out: &Path) -> anyhow::Result<Digest> {
    let archive = pack_dir(dir)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::engine::write_atomically(out, &archive).with_context(|| format!("writing {}", out.display()))?;
    Ok(Digest::of(&archive))
}

/// [`ext_bundle::pack_dir`], with the build command to run when a component
/// the manifest names is missing.
///
/// # Errors
/// As `pack_dir`, the directory named.
pub fn pack_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let archive = ext_bundle::pack_dir(dir)
        .map_err(|e| match (&e, build_hint(dir)) {
            (ext_bundle::PackError::MissingFile { .. }, Some(hint)) => anyhow::anyhow!("{e}; {hint}"),
            _ => anyhow::Error::new(e),
        })
        .with_context(|| format!("packing {}", dir.display()))?;
    check_components(dir).with_context(|| format!("packing {}", dir.display()))?;
    Ok(archive)
}

/// Arguments of `publish`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PublishArgs {
    /// The `bundle.tar.zst` to publish.
    pub bundle: PathBuf,
    /// Store URL: file:///srv/bundles or s3://bucket/prefix (`http(s)://` stores are read-only)
    /// [env: BUNDLE_STORAGE_URL].
    #[arg(long, env = "BUNDLE_STORAGE_URL")]
    pub store: String,
    /// Detached signature (base64, from `ext-runner sign` or openssl); uploaded as bundle.sig.
    #[arg(long = "sig")]
    pub signature: Option<PathBuf>,
    /// Certificate chain (leaf first) of a certificate signature; uploaded as bundle.pem.
    #[arg(long = "certs", requires = "signature")]
    pub certificates: Option<PathBuf>,
    /// Trust bundle to verify --sig against: a PEM file or inline PEM.
    #[arg(long, env = "SIGNING_TRUST_BUNDLE", hide_env_values = true)]
    pub trust: Option<String>,
    /// Value of {tenant} in BUNDLE_STORAGE_KEY_LAYOUT.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Value of {extension} in BUNDLE_STORAGE_KEY_LAYOUT [default: the manifest's name].
    #[arg(long)]
    pub extension: Option<String>,
    /// Publish without a verified signature (no --sig, or no trust bundle to check it).
    #[arg(long)]
    pub allow_unsigned: bool,
}

impl PublishArgs {
    /// `ext-runner publish`: upload, then say what was written.
    ///
    /// # Errors
    /// As [`publish`].
    pub fn run(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let published = runtime.block_on(publish(&self, &super::environment(), progress))?;
        let state = if published.bundle_created() {
            "published"
        } else {
            "already present"
        };
        println!("{} {state}", published.digest);
        match &published.signer {
            Some(signer) => println!("  signed by {signer}"),
            None if self.signature.is_some() => {
                println!("  signature NOT verified (--allow-unsigned without a trust bundle)")
            }
            None => println!("  unsigned (--allow-unsigned)"),
        }
        for (key, outcome) in &published.objects {
            let what = match outcome {
                PutOutcome::Created => "created",
                PutOutcome::AlreadyPresent => "already present",
            };
            println!("  {what:<15} {key}");
        }
        Ok(())
    }
}

/// What `publish` did.
#[derive(Debug)]
pub struct Published {
    pub digest: Digest,
    /// Who signed it, when the signature was verified.
    pub signer: Option<ext_bundle::Signer>,
    /// Every object written or found, in upload order (the bundle last).
    pub objects: Vec<(String, PutOutcome)>,
}

impl Published {
    /// Whether the bundle itself was newly written.
    pub fn bundle_created(&self) -> bool {
        self.objects
            .last()
            .is_some_and(|(_, outcome)| *outcome == PutOutcome::Created)
    }
}

/// Validate a bundle, check its signature, and upload it with its
/// signature, certificate chain and `manifest.json` under the store's key
/// layout. Never overwrites: an object at the same key with other bytes is
/// an error, the same bytes count as already published.
///
/// The files beside the bundle go up first and the bundle last, so a runner
/// that sees the bundle also sees its signature. S3 settings come from the
/// `BUNDLE_STORAGE_*` variables in `env`, as for `serve`. With `progress`, a
/// progress bar on stderr follows large uploads.
///
/// # Errors
/// Invalid bundle; unsigned or badly signed without `--allow-unsigned`; a
/// read-only or unreachable store; a conflicting object (named).
pub async fn publish(args: &PublishArgs, env: &HashMap<String, String>, progress: bool) -> anyhow::Result<Published> {
    let bundle = &args.bundle;
    let archive = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    // Unpacking validates exactly as the runner will, and yields the
    // manifest's own bytes to publish beside the archive.
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    ext_bundle::unpack(&archive, work.path(), &UnpackLimits::default())
        .with_context(|| format!("{} is not a valid bundle", bundle.display()))?;
    let manifest_bytes = std::fs::read(work.path().join("manifest.json")).context("reading manifest.json")?;
    let manifest = ext_bundle::Manifest::from_slice(&manifest_bytes)
        .with_context(|| format!("{}: manifest.json", bundle.display()))?;
    // what the runner would refuse at load is not published.
    check_components(work.path()).with_context(|| format!("{} is not published", bundle.display()))?;
    drop(work);

    let read_text = |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
    let signature = args.signature.as_deref().map(read_text).transpose()?;
    let certificates = args.certificates.as_deref().map(read_text).transpose()?;
    if certificates.is_some() && signature.is_none() {
        bail!("--certs needs --sig: a certificate chain only travels with the signature it vouches for");
    }
    let digest = Digest::of(&archive);
    let signer = verified_signer(args, &archive, signature.as_deref(), certificates.as_deref())?;

    let settings = StorageSettings::load(&args.store, env).map_err(|e| anyhow::anyhow!("{e}"))?;
    let layout = settings.layout.template();
    let tenant = match (&args.tenant, layout.contains("{tenant}")) {
        (Some(tenant), _) => tenant.clone(),
        (None, true) => bail!("the key layout `{layout}` contains {{tenant}}: pass --tenant"),
        (None, false) => String::new(),
    };
    let extension = args.extension.clone().unwrap_or_else(|| manifest.name.clone());
    let objects = BundleObjects::open(&settings).map_err(|why| anyhow::anyhow!("--store: {why}"))?;
    if objects.is_read_only() {
        bail!(
            "--store {}: http(s) stores are read-only; publish to the s3:// or file:// store behind it",
            args.store
        );
    }
    let keys = objects.keys(&digest, &tenant, &extension);

    let mut uploads: Vec<(String, Bytes)> = vec![(keys.manifest.clone(), Bytes::from(manifest_bytes))];
    if let Some(pem) = certificates {
        uploads.push((keys.certificates.clone(), Bytes::from(pem)));
    }
    if let Some(signature) = signature {
        uploads.push((keys.signature.clone(), Bytes::from(signature)));
    }
    uploads.push((keys.bundle.clone(), Bytes::from(archive)));

    let done = upload(&objects, uploads, progress).await?;
    Ok(Published {
        digest,
        signer,
        objects: done,
    })
}

/// Who signed `archive`, checked against the trust bundle; `None` only with
/// `--allow-unsigned`.
///
/// # Errors
/// A signature that does not verify, or none to check without `--allow-unsigned`.
fn verified_signer(
    args: &PublishArgs,
    archive: &[u8],
    signature: Option<&str>,
    certificates: Option<&str>,
) -> anyhow::Result<Option<ext_bundle::Signer>> {
    let bundle = &args.bundle;
    match (signature, &args.trust) {
        (Some(signature), Some(trust)) => {
            let trust = ext_bundle::TrustBundle::load(trust).context("--trust/SIGNING_TRUST_BUNDLE")?;
            let signer = ext_bundle::verify(archive, signature, certificates, &trust, std::time::SystemTime::now())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "{} is not published: its signature does not verify: {e} [{}]",
                        bundle.display(),
                        e.code()
                    )
                })?;
            Ok(Some(signer))
        }
        (Some(_), None) if !args.allow_unsigned => bail!(
            "{} is not published: no trust bundle to verify its signature against (pass --trust or set SIGNING_TRUST_BUNDLE; --allow-unsigned uploads it unchecked)",
            bundle.display()
        ),
        (None, _) if !args.allow_unsigned => bail!(
            "{} is not published: it is unsigned (sign it with `ext-runner sign` and pass --sig, or pass --allow-unsigned)",
            bundle.display()
        ),
        _ => Ok(None),
    }
}

/// Put each object unless present, in order, with a progress bar for large
/// ones when `progress`.
///
/// # Errors
/// An unreachable store, or an object at a key with other bytes.
async fn upload(
    objects: &BundleObjects,
    uploads: Vec<(String, Bytes)>,
    progress: bool,
) -> anyhow::Result<Vec<(String, PutOutcome)>> {
    let mut done = Vec::new();
    for (key, bytes) in uploads {
        let bar = (progress && bytes.len() >= PROGRESS_BAR_MIN_BYTES).then(|| upload_bar(&key, bytes.len()));
        let report = |sent: u64| {
            if let Some(bar) = &bar {
                bar.set_position(sent);
            }
        };
        let outcome = objects
            .put_if_absent_with_progress(&key, bytes, &report)
            .await
            .with_context(|| format!("publishing to {}", objects))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        done.push((key, outcome));
    }
    Ok(done)
}

/// Uploads smaller than this finish too fast for a progress bar to help.
pub const PROGRESS_BAR_MIN_BYTES: usize = 4 * 1024 * 1024;

/// A progress bar on stderr for an upload of `len` bytes, labelled with the
/// last segment of `key`.
pub(crate) fn upload_bar(key: &str, len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    let style =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(key.rsplit('/').next().unwrap_or(key).to_string());
    bar
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
        crate::engine::EngineLimits::new(&config.engine, &config.limits)?,
        &config.cache_dir,
        Arc::new(crate::engine::Unbudgeted),
        None,
    )?;
    let artifact = runtime
        .precompile(&manifest.entry, &wasm, manifest.component_world(&manifest.entry))
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

/// `ext-runner pack`.
#[derive(clap::Args)]
pub struct PackCommand {
    dir: PathBuf,
    /// Output archive path.
    #[arg(long)]
    out: PathBuf,
}

impl PackCommand {
    /// Pack, warn about undeclared capabilities, print the content hash.
    ///
    /// # Errors
    /// As [`pack`].
    pub fn run(self) -> anyhow::Result<()> {
        let digest = pack(&self.dir, &self.out)?;
        for warning in super::capability_warnings(&self.dir) {
            eprintln!("warning: {warning}");
        }
        println!("{digest}");
        Ok(())
    }
}

/// `ext-runner inspect`.
#[derive(clap::Args)]
pub struct InspectCommand {
    bundle: PathBuf,
}

impl InspectCommand {
    /// # Errors
    /// As [`inspect`].
    pub fn run(self) -> anyhow::Result<()> {
        print!("{}", inspect(&self.bundle)?);
        Ok(())
    }
}

/// `ext-runner compile`.
#[derive(clap::Args)]
pub struct CompileCommand {
    bundle: PathBuf,
    /// Output archive path (default: replace the input).
    #[arg(long)]
    out: Option<PathBuf>,
}

impl CompileCommand {
    /// # Errors
    /// As [`compile`].
    pub fn run(self) -> anyhow::Result<()> {
        let out = self.out.unwrap_or_else(|| self.bundle.clone());
        let (digest, artifact) = compile(&self.bundle, &out)?;
        println!("{digest}");
        eprintln!(
            "added {artifact} to {}; the content hash changed, so sign the new archive",
            out.display()
        );
        Ok(())
    }
}
