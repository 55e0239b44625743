//! The authoring and operations commands: `pack`, `publish`, `inspect`,
//! `exec`. Each returns text for the user or an error whose message names
//! the file or field at fault; `main.rs` prints it and sets the exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use ext_bundle::{Digest, UnpackLimits};

use crate::config::{Config, StoreUrl};
use crate::envelope::Envelope;
use crate::execute::{GuestResponse, Runner};
use crate::store::BundleStore;

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
    let url = StoreUrl::parse(store).map_err(|why| anyhow::anyhow!("--store: {why}"))?;
    let store = BundleStore::open(&url);
    store.publish(&archive).with_context(|| format!("writing to {url}"))
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
    let config = Config::for_dir(work.path());
    let runner = Arc::new(Runner::new(config)?);
    let (digest, _) = runner.bundle_store().publish(&archive)?;
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
