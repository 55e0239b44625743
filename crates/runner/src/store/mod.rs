//! Bundles: where they come from and the verified, unpacked copies kept by
//! this process.
//!
//! [`BundleStore`] is the object-store seam (a local directory for now, key
//! layout `sha256/<hex>/bundle.tar.zst`). [`Bundles`] fetches a bundle by
//! content hash, checks the archive's SHA-256 against the hash *before*
//! anything else, unpacks it safely into a temp directory and renames it into
//! the cache. Concurrent first requests for one hash fetch and unpack once.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ext_bundle::{BundleError, Digest, FileIndex, Manifest, UnpackLimits};
use tokio::sync::OnceCell;

use crate::config::StoreUrl;
use crate::engine::Failure;
use crate::error::ErrorCode;

/// Largest compressed bundle the runner will fetch.
pub const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

/// A content-addressed bundle store.
#[derive(Clone, Debug)]
pub struct BundleStore {
    root: PathBuf,
}

/// Key of a bundle inside a store.
pub fn bundle_key(digest: &Digest) -> String {
    format!("sha256/{}/{}", digest.hex(), ext_bundle::BUNDLE_FILE_NAME)
}

impl BundleStore {
    pub fn open(url: &StoreUrl) -> BundleStore {
        match url {
            StoreUrl::File(root) => BundleStore { root: root.clone() },
        }
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join(bundle_key(digest))
    }

    /// The archive bytes for `digest`, unverified.
    ///
    /// # Errors
    /// `bundle_unavailable` when absent, unreadable or over [`MAX_BUNDLE_BYTES`].
    pub fn fetch(&self, digest: &Digest) -> Result<Vec<u8>, Failure> {
        let path = self.path(digest);
        let unavailable = |why: String| Failure::new(ErrorCode::BundleUnavailable, format!("bundle {digest}: {why}"));
        let file = fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => unavailable("not found in the bundle store".into()),
            _ => unavailable(format!("bundle store read failed: {e}")),
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_BUNDLE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unavailable(format!("bundle store read failed: {e}")))?;
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(Failure::new(
                ErrorCode::BundleTooLarge,
                format!("bundle {digest}: larger than {MAX_BUNDLE_BYTES} bytes"),
            ));
        }
        Ok(bytes)
    }

    /// Store an archive under its content hash. Idempotent: publishing the
    /// same bytes again changes nothing. Returns the digest and whether it
    /// was newly written.
    ///
    /// # Errors
    /// I/O failures; a partial file is never visible (temp + rename).
    pub fn publish(&self, archive: &[u8]) -> std::io::Result<(Digest, bool)> {
        let digest = Digest::of(archive);
        let path = self.path(&digest);
        if let Ok(existing) = fs::read(&path)
            && Digest::of(&existing) == digest
        {
            return Ok((digest, false));
        }
        fs::create_dir_all(path.parent().expect("key has a parent"))?;
        crate::engine::write_atomically(&path, archive)?;
        Ok((digest, true))
    }
}

/// A verified bundle unpacked on local disk.
#[derive(Debug)]
pub struct LoadedBundle {
    pub digest: Digest,
    /// Root of the unpacked files (runner-owned).
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Every file with its size and SHA-256, computed while unpacking.
    pub files: FileIndex,
}

impl LoadedBundle {
    /// Read a file of the bundle, checking it still has the digest recorded
    /// at unpack time.
    ///
    /// # Errors
    /// `bundle_invalid` if absent, `bundle_integrity` if changed on disk.
    pub fn read_verified(&self, path: &str) -> Result<Vec<u8>, Failure> {
        let meta = self.files.get(path).ok_or_else(|| {
            Failure::new(
                ErrorCode::BundleInvalid,
                format!("bundle {}: no file `{path}`", self.digest),
            )
        })?;
        let bytes = fs::read(self.dir.join(path))
            .map_err(|e| Failure::new(ErrorCode::BundleUnavailable, format!("reading `{path}`: {e}")))?;
        if Digest::of(&bytes) != meta.sha256 {
            return Err(Failure::new(
                ErrorCode::BundleIntegrity,
                format!("bundle {}: `{path}` changed on disk since it was verified", self.digest),
            ));
        }
        Ok(bytes)
    }
}

/// Verified bundles of this process, by content hash.
pub struct Bundles {
    store: BundleStore,
    /// `<cache_dir>/bundles/<hex>/...`, owned by this process.
    dir: PathBuf,
    limits: UnpackLimits,
    /// Single-flight: one fetch + verify + unpack per hash. Entries are kept
    /// for the life of the process (bundles are immutable).
    loaded: Mutex<HashMap<Digest, Arc<OnceCell<Arc<LoadedBundle>>>>>,
}

impl Bundles {
    /// # Errors
    /// If the cache directory cannot be prepared.
    pub fn new(store: BundleStore, cache_dir: &Path) -> std::io::Result<Bundles> {
        let dir = cache_dir.join("bundles");
        fs::create_dir_all(&dir)?;
        // A killed process may leave half-unpacked temp directories behind.
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(Bundles {
            store,
            dir,
            limits: UnpackLimits::default(),
            loaded: Mutex::default(),
        })
    }

    pub fn store(&self) -> &BundleStore {
        &self.store
    }

    /// The verified, unpacked bundle for `digest`.
    ///
    /// # Errors
    /// `bundle_unavailable`, `bundle_integrity`, `bundle_invalid*`,
    /// `bundle_too_large`.
    pub async fn get(&self, digest: Digest) -> Result<Arc<LoadedBundle>, Failure> {
        let cell = {
            let mut map = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(digest).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let store = self.store.clone();
            let dir = self.dir.clone();
            let limits = self.limits;
            tokio::task::spawn_blocking(move || load(&store, &dir, &limits, digest))
                .await
                .map_err(|e| Failure::new(ErrorCode::Internal, format!("bundle task failed: {e}")))?
                .map(Arc::new)
        })
        .await
        .cloned()
    }
}

fn load(store: &BundleStore, cache: &Path, limits: &UnpackLimits, digest: Digest) -> Result<LoadedBundle, Failure> {
    let archive = store.fetch(&digest)?;
    let actual = Digest::of(&archive);
    if actual != digest {
        return Err(Failure::new(
            ErrorCode::BundleIntegrity,
            format!("bundle bytes do not match their content hash: expected {digest}, got {actual}"),
        ));
    }
    let io = |e: std::io::Error| Failure::new(ErrorCode::Internal, format!("bundle cache: {e}"));
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempdir_in(cache).map_err(io)?;
    let files = ext_bundle::unpack(&archive, tmp.path(), limits).map_err(|e| bundle_failure(&digest, &e))?;
    let manifest_bytes = fs::read(tmp.path().join("manifest.json")).map_err(io)?;
    let manifest = Manifest::from_slice(&manifest_bytes)
        .map_err(|e| Failure::new(ErrorCode::BundleInvalid, format!("bundle {digest}: {e}")))?;
    let final_dir = cache.join(digest.hex());
    if final_dir.exists() {
        // Left by an earlier process: content-addressed, but unverified by us.
        fs::remove_dir_all(&final_dir).map_err(io)?;
    }
    let tmp_path = tmp.keep();
    fs::rename(&tmp_path, &final_dir).map_err(|e| {
        let _ = fs::remove_dir_all(&tmp_path);
        io(e)
    })?;
    Ok(LoadedBundle {
        digest,
        dir: final_dir,
        manifest,
        files,
    })
}

fn bundle_failure(digest: &Digest, error: &BundleError) -> Failure {
    let code = match error {
        BundleError::InvalidEntry { .. } => ErrorCode::BundleInvalidEntry,
        BundleError::TooLarge { .. } | BundleError::TooManyFiles { .. } | BundleError::FileTooLarge { .. } => {
            ErrorCode::BundleTooLarge
        }
        _ => ErrorCode::BundleInvalid,
    };
    Failure::new(code, format!("bundle {digest}: {error}"))
}
