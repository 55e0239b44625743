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
//!
//! Layout: `compiled/<component sha256>/<engine tag>.cwasm` and its
//! `.sha256` sidecar. Keyed by the component's own content hash (from the
//! bundle's verified file index), so every bundle carrying the same
//! component (a new version that changed only its UI) shares one artifact.
//! Each `<component sha256>` directory is one entry of the disk budget
//! (`RUNNER_CACHE_MAX_BYTES`, shared with the bundles): the
//! [`ArtifactBudget`] is told its size after every write and of every use.
//!
//! At start-up everything else under `compiled/` is removed: another
//! engine's artifacts (never loaded) and the layout before artifacts were
//! keyed by component (`compiled/<bundle hash>/<path hash>.<engine
//! tag>.cwasm`), so neither takes budget.
//!
//! Evicting an artifact is safe at any time: artifacts are read into memory
//! (`fs::read` + `Component::deserialize`), never mapped from the file, so a
//! component loaded from one keeps running after its file is gone, and a
//! write racing the eviction fails or leaves an artifact without a sidecar,
//! which is never loaded (and is removed at start-up).

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use ext_bundle::Digest;
use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

/// Where the artifacts' disk use is accounted (the bundle cache's budget,
/// so bundles and compiled code share `RUNNER_CACHE_MAX_BYTES`).
pub trait ArtifactBudget: Send + Sync {
    /// The artifact directory of `component` now takes `bytes` on disk
    /// (after a write, a removal, or at start-up).
    fn sized(&self, component: &Digest, bytes: u64);
    /// The artifact of `component` served a request now (LRU order).
    fn used(&self, component: &Digest);
    /// Writing an artifact failed (disk full, read-only, file size limit):
    /// the request goes on from memory; counted for the alert metric.
    fn write_failed(&self);
}

/// No accounting: `ext-runner compile`'s throw-away engine.
pub struct Unbudgeted;

impl ArtifactBudget for Unbudgeted {
    fn sized(&self, _: &Digest, _: u64) {}
    fn used(&self, _: &Digest) {}
    fn write_failed(&self) {}
}

/// Owned by the [`super::Runtime`]; cheap to clone into compile tasks.
#[derive(Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    /// Hex prefix of the engine's precompile compatibility hash.
    engine_tag: String,
    /// The disk budget the artifacts count against.
    budget: std::sync::Arc<dyn ArtifactBudget>,
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
    /// Open (creating) the cache directory, remove what a killed process
    /// left behind (temp files, artifacts without their sidecar) and what
    /// this engine never loads (another layout, another engine's
    /// artifacts), and tell `budget` the size of every artifact directory,
    /// oldest first.
    ///
    /// # Errors
    /// If the directory cannot be created or read.
    pub fn open(
        engine: &wasmtime::Engine,
        dir: &Path,
        budget: std::sync::Arc<dyn ArtifactBudget>,
    ) -> std::io::Result<ArtifactCache> {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_tag = hex::encode(&hasher.0.finalize()[..8]);
        fs::create_dir_all(dir)?;
        remove_temp_files(dir)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = Digest::parse(&format!("sha256:{name}")).ok();
            match digest {
                Some(digest) if entry.file_type()?.is_dir() => {
                    // Read before the clean-up below touches the directory.
                    let modified = entry
                        .metadata()?
                        .modified()
                        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                    remove_foreign(&entry.path(), &engine_tag)?;
                    match dir_bytes(&entry.path()) {
                        0 => remove_any(&entry.path()),
                        bytes => found.push((modified, digest, bytes)),
                    }
                }
                // Another layout (an older runner) or junk: not ours to keep.
                _ => remove_any(&entry.path()),
            }
        }
        found.sort_by_key(|(modified, _, _)| *modified);
        for (_, digest, bytes) in found {
            budget.sized(&digest, bytes);
        }
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_tag,
            budget,
        })
    }

    /// This engine's compatibility tag: artifacts made by another Wasmtime
    /// version or configuration carry a different one.
    pub fn engine_tag(&self) -> &str {
        &self.engine_tag
    }

    /// The artifact and sidecar paths of `component` (its SHA-256).
    fn paths(&self, component: &Digest) -> (PathBuf, PathBuf) {
        let dir = self.dir.join(component.hex());
        let stem = &self.engine_tag;
        (dir.join(format!("{stem}.cwasm")), dir.join(format!("{stem}.sha256")))
    }

    /// Whether an artifact of `component` for this engine is on disk (the
    /// request then needs no compile slot; [`Self::load`] still checks it).
    pub fn contains(&self, component: &Digest) -> bool {
        let (artifact, sidecar) = self.paths(component);
        artifact.is_file() && sidecar.is_file()
    }

    /// Remove a bad artifact and tell the budget what is left.
    fn discard(&self, component: &Digest, artifact: &Path, sidecar: &Path) {
        let _ = fs::remove_file(artifact);
        let _ = fs::remove_file(sidecar);
        let dir = artifact.parent().expect("artifact paths have a parent");
        self.budget.sized(component, dir_bytes(dir));
    }

    /// The cached component, if present and intact. Corrupt entries are
    /// removed and reported as absent.
    pub fn load(&self, engine: &wasmtime::Engine, component: &Digest) -> Option<Component> {
        let (artifact, sidecar) = self.paths(component);
        let bytes = fs::read(&artifact).ok()?;
        let recorded = fs::read_to_string(&sidecar).unwrap_or_default();
        let actual = hex::encode(Sha256::digest(&bytes));
        if recorded.trim() != actual {
            tracing::warn!(path = %artifact.display(), "compiled artifact failed its integrity check; recompiling");
            self.discard(component, &artifact, &sidecar);
            return None;
        }
        // SAFETY: the bytes were produced by `Component::serialize` of this
        // runner (rule 1), are unchanged since (rule 2: SHA-256 matches the
        // sidecar written with them) and target this engine (rule 3: the
        // name carries the compatibility hash; Wasmtime checks it again).
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, &bytes) };
        match loaded {
            Ok(loaded) => {
                self.budget.used(component);
                Some(loaded)
            }
            Err(e) => {
                tracing::warn!(path = %artifact.display(), error = %e, "compiled artifact rejected by the engine; recompiling");
                self.discard(component, &artifact, &sidecar);
                None
            }
        }
    }

    /// The artifact of `component` served a request from memory: keep it
    /// recent in the disk budget's LRU order.
    pub fn touch(&self, component: &Digest) {
        self.budget.used(component);
    }

    /// Persist a freshly compiled component with its digest sidecar.
    ///
    /// # Errors
    /// Serialisation or I/O failures (then counted by the budget); nothing
    /// partial is left visible.
    pub fn store(&self, digest: &Digest, compiled: &Component) -> anyhow::Result<()> {
        let bytes = compiled.serialize().map_err(|e| anyhow::anyhow!("serialize: {e}"))?;
        let (artifact, sidecar) = self.paths(digest);
        let dir = artifact.parent().expect("artifact paths have a parent");
        let written = fs::create_dir_all(dir)
            // The artifact first, then the sidecar that vouches for it: a crash
            // in between leaves an artifact without a sidecar, which load
            // rejects and start-up removes.
            .and_then(|()| write_atomically(&artifact, &bytes))
            .and_then(|()| write_atomically(&sidecar, hex::encode(Sha256::digest(&bytes)).as_bytes()));
        if let Err(e) = written {
            self.budget.write_failed();
            let _ = fs::remove_file(&artifact);
            self.budget.sized(digest, dir_bytes(dir));
            return Err(e.into());
        }
        self.budget.sized(digest, dir_bytes(dir));
        Ok(())
    }
}

/// Bytes of the files directly in `dir` (an artifact directory); 0 if gone.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(fs::Metadata::is_file)
        .map(|m| m.len())
        .sum()
}

/// Remove from an artifact directory everything but this engine's artifact
/// and sidecar: another engine's (a Wasmtime upgrade or another
/// configuration; never loaded, and only taking budget) and the files of
/// the layout before components were keyed by their own hash
/// (`compiled/<bundle hash>/<path hash>.<engine tag>.cwasm`).
fn remove_foreign(dir: &Path, engine_tag: &str) -> std::io::Result<()> {
    let keep = [format!("{engine_tag}.cwasm"), format!("{engine_tag}.sha256")];
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(keep.contains(&name) && entry.file_type()?.is_file()) {
            remove_any(&entry.path());
        }
    }
    Ok(())
}

fn remove_any(path: &Path) {
    let _ = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
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

/// Remove temp files, and artifacts whose sidecar never got written (the
/// process died between the two renames).
fn remove_temp_files(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            remove_temp_files(&path)?;
        } else if name.starts_with(".tmp-") || (name.ends_with(".cwasm") && !path.with_extension("sha256").is_file()) {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}
