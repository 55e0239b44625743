//! On-disk cache of compiled components.
//!
//! Precompiled artifacts are native code: loading one is `unsafe`. This
//! module is the only place the runner does it, under three rules:
//! 1. only artifacts this runner wrote are loaded, except a bundle's own
//!    `precompiled/<target>.cwasm` when the operator opted in
//!    (`RUNNER_TRUST_PRECOMPILED=true`), the bundle's signature verified and
//!    the artifact names this engine's compatibility tag
//!    ([`load_supplied`]);
//! 2. each artifact's SHA-256 is recorded in a sidecar when written and
//!    checked against the bytes before deserialising (a flipped bit means
//!    the entry is deleted and the component recompiled);
//! 3. files are written as temp file + fsync + rename, never rewritten in
//!    place, and the file name carries the engine's compatibility hash so a
//!    different Wasmtime or configuration never reads them.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use ext_bundle::Digest;
use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

/// Owned by the [`super::Runtime`]; cheap to clone into compile tasks.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// Hex prefix of the engine's precompile compatibility hash.
    engine_tag: String,
}

struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only finalize() is used")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl ArtifactCache {
    /// Open (creating) the cache directory and remove temp files a killed
    /// process left behind.
    ///
    /// # Errors
    /// If the directory cannot be created or read.
    pub fn open(engine: &wasmtime::Engine, dir: &Path) -> std::io::Result<ArtifactCache> {
        fs::create_dir_all(dir)?;
        remove_temp_files(dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_tag = hex::encode(&hasher.0.finalize()[..8]);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_tag,
        })
    }

    /// This engine's compatibility tag: artifacts made by another Wasmtime
    /// version or configuration carry a different one.
    pub fn engine_tag(&self) -> &str {
        &self.engine_tag
    }

    fn paths(&self, digest: &Digest, component_path: &str) -> (PathBuf, PathBuf) {
        let name = hex::encode(&Sha256::digest(component_path.as_bytes())[..8]);
        let dir = self.dir.join(digest.hex());
        let stem = format!("{name}.{}", self.engine_tag);
        (dir.join(format!("{stem}.cwasm")), dir.join(format!("{stem}.sha256")))
    }

    /// The cached component, if present and intact. Corrupt entries are
    /// removed and reported as absent.
    pub fn load(&self, engine: &wasmtime::Engine, digest: &Digest, component_path: &str) -> Option<Component> {
        let (artifact, sidecar) = self.paths(digest, component_path);
        let bytes = fs::read(&artifact).ok()?;
        let recorded = fs::read_to_string(&sidecar).unwrap_or_default();
        let actual = hex::encode(Sha256::digest(&bytes));
        if recorded.trim() != actual {
            tracing::warn!(path = %artifact.display(), "compiled artifact failed its integrity check; recompiling");
            let _ = fs::remove_file(&artifact);
            let _ = fs::remove_file(&sidecar);
            return None;
        }
        // SAFETY: the bytes were produced by `Component::serialize` of this
        // runner (rule 1), are unchanged since (rule 2: SHA-256 matches the
        // sidecar written with them) and target this engine (rule 3: the
        // name carries the compatibility hash; Wasmtime checks it again).
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, &bytes) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %artifact.display(), error = %e, "compiled artifact rejected by the engine; recompiling");
                let _ = fs::remove_file(&artifact);
                let _ = fs::remove_file(&sidecar);
                None
            }
        }
    }

    /// Persist a freshly compiled component with its digest sidecar.
    ///
    /// # Errors
    /// Serialisation or I/O failures; nothing partial is left visible.
    pub fn store(&self, digest: &Digest, component_path: &str, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize().map_err(|e| anyhow::anyhow!("serialize: {e}"))?;
        let (artifact, sidecar) = self.paths(digest, component_path);
        let dir = artifact.parent().expect("artifact paths have a parent");
        fs::create_dir_all(dir)?;
        // The artifact first, then the sidecar that vouches for it: a crash
        // in between leaves an artifact without a sidecar, which load rejects.
        write_atomically(&artifact, &bytes)?;
        write_atomically(&sidecar, hex::encode(Sha256::digest(&bytes)).as_bytes())?;
        Ok(())
    }
}

/// Load a bundle-supplied precompiled artifact.
///
/// # Errors
/// If Wasmtime rejects the bytes (another engine, corrupt, not a component).
pub fn load_supplied(engine: &wasmtime::Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: rule 1: the caller only passes bytes of a bundle whose
    // signature verified under the operator's trust bundle, with the
    // operator's explicit opt-in, read through the bundle's per-file digest
    // check, and whose engine tag equals ours; Wasmtime checks the
    // compatibility header again.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize(engine, bytes)
    }
}

/// temp file in the same directory + fsync + rename + directory fsync.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A bare file name (`--out x.tar.zst`) has the parent "": the current directory.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

fn remove_temp_files(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            remove_temp_files(&path)?;
        } else if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}
