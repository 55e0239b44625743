//! The pod-local disk cache of verified, unpacked bundles.
//!
//! Layout under `<RUNNER_CACHE_DIR>/bundles/`:
//! - `<hex>/entry.json`: the [`EntryRecord`]: sizes, the signature verdict
//!   and the SHA-256 of every unpacked file;
//! - `<hex>/files/…`: the unpacked bundle;
//! - `.tmp-*`: staging directories of fetches in progress.
//!
//! An entry becomes visible only by renaming a complete, fsynced staging
//! directory into place, so a process killed at any point leaves either
//! nothing or a whole entry; staging left-overs are removed at start-up.
//! The cache is bounded by bytes (`RUNNER_CACHE_MAX_BYTES`) and evicts the
//! least recently used entries that nobody is using. The compiled artifacts
//! under `<RUNNER_CACHE_DIR>/compiled/<component sha256>/` (written by the
//! engine's artifact cache) are entries of the same budget and the same LRU
//! order ([`Item::Artifact`]): an artifact is never "in use" on disk, since
//! loaded code lives in memory (see `engine::artifacts`).
//!
//! An artifact is one entry however many bundles carry its component, and
//! has its own place in the LRU order (every use, from any of those
//! bundles, makes it recent): evicting a bundle never removes an artifact,
//! and an artifact least recently used goes even while bundles carrying its
//! component stay (they compile it again, once, when next loaded).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use ext_bundle::{Digest, FileIndex};
use serde::{Deserialize, Serialize};

/// Format version of `entry.json`; other versions are discarded.
const RECORD_VERSION: u32 = 1;

/// What the cache knows about one verified bundle (`entry.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryRecord {
    pub version: u32,
    pub digest: Digest,
    /// Compressed archive size as fetched.
    pub archive_bytes: u64,
    /// Sum of the unpacked files' sizes (what the entry costs on disk).
    pub unpacked_bytes: u64,
    /// Who signed the archive (`None`: unsigned, admitted because signing
    /// was not required when it was fetched).
    pub signer: Option<String>,
    /// Identity of the trust bundle the verdict was reached under; a
    /// different trust bundle means the entry is verified again.
    pub trust_id: String,
    /// Seconds since the Unix epoch when the archive was verified.
    pub verified_at: u64,
    /// Every unpacked file with its size and SHA-256.
    pub files: FileIndex,
}

impl EntryRecord {
    pub fn new(digest: Digest, archive_bytes: u64, signer: Option<String>, trust_id: String, files: FileIndex) -> Self {
        let unpacked_bytes = files.values().map(|f| f.size).sum();
        let verified_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        EntryRecord {
            version: RECORD_VERSION,
            digest,
            archive_bytes,
            unpacked_bytes,
            signer,
            trust_id,
            verified_at,
            files,
        }
    }
}

/// A staging directory for one fetch; removed on drop unless committed.
pub struct Staging {
    dir: tempfile::TempDir,
}

impl Staging {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the archive is downloaded to.
    pub fn archive_path(&self) -> PathBuf {
        self.dir.path().join("bundle.tar.zst")
    }

    /// Where the bundle is unpacked to.
    pub fn files_dir(&self) -> PathBuf {
        self.dir.path().join("files")
    }
}

/// One entry of the disk budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    /// A verified bundle: `bundles/<content hash>/`.
    Bundle(Digest),
    /// A component's compiled code: `compiled/<component sha256>/`; it may
    /// serve every bundle that carries that component.
    Artifact(Digest),
}

/// Least-recently-used bookkeeping for the entries on disk.
#[derive(Default)]
struct Lru {
    /// Entry size in bytes and the tick of its last use.
    entries: HashMap<Item, (u64, u64)>,
    total: u64,
    tick: u64,
}

/// The bundle cache directory (and the accounting of the compiled
/// artifacts beside it). Shared by all requests of the process.
pub struct DiskCache {
    root: PathBuf,
    /// `<RUNNER_CACHE_DIR>/compiled`: evicted artifacts are removed here.
    compiled: PathBuf,
    max_bytes: u64,
    lru: Mutex<Lru>,
}

impl DiskCache {
    /// Open the cache at `root`: remove staging left-overs and entries
    /// without a readable record, and account for the entries found, oldest
    /// first by modification time. Artifacts under `compiled` are accounted
    /// when the engine opens them ([`Self::account_artifact`]).
    ///
    /// # Errors
    /// If the directory cannot be created or listed.
    pub fn open(root: &Path, compiled: &Path, max_bytes: u64) -> io::Result<DiskCache> {
        fs::create_dir_all(root)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".tmp-") {
                remove_any(&path);
                continue;
            }
            let record = Digest::parse(&format!("sha256:{name}"))
                .ok()
                .and_then(|digest| read_record(&path).filter(|r| r.digest == digest));
            match record {
                Some(record) => {
                    let modified = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((modified, record.digest, record.unpacked_bytes));
                }
                None => remove_any(&path),
            }
        }
        found.sort_by_key(|(modified, _, _)| *modified);
        let mut lru = Lru::default();
        for (_, digest, bytes) in found {
            lru.tick += 1;
            lru.total += bytes;
            lru.entries.insert(Item::Bundle(digest), (bytes, lru.tick));
        }
        Ok(DiskCache {
            root: root.to_path_buf(),
            compiled: compiled.to_path_buf(),
            max_bytes,
            lru: Mutex::new(lru),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the entry for `digest` (whether or not it exists).
    pub fn entry_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.hex())
    }

    /// Bytes the cached entries (bundles and artifacts) take, as accounted.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// Bytes the compiled artifacts take, as accounted.
    pub fn artifact_bytes(&self) -> u64 {
        let lru = self.lock();
        lru.entries
            .iter()
            .filter(|(item, _)| matches!(item, Item::Artifact(_)))
            .map(|(_, (bytes, _))| bytes)
            .sum()
    }

    /// The artifact directory of `component` now takes `bytes` (0: gone);
    /// it counts as used now.
    pub fn account_artifact(&self, component: &Digest, bytes: u64) {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let item = Item::Artifact(*component);
        let old = if bytes == 0 {
            lru.entries.remove(&item)
        } else {
            lru.entries.insert(item, (bytes, tick))
        };
        if let Some((old, _)) = old {
            lru.total -= old;
        }
        lru.total += bytes;
    }

    /// The record of a cached entry, if one is on disk and readable.
    pub fn record(&self, digest: &Digest) -> Option<EntryRecord> {
        read_record(&self.entry_dir(digest)).filter(|r| r.digest == *digest)
    }

    /// A fresh staging directory inside the cache (same file system, so
    /// the final rename is atomic).
    ///
    /// # Errors
    /// I/O failures (disk full, read-only directory).
    pub fn staging(&self) -> io::Result<Staging> {
        let dir = tempfile::Builder::new().prefix(".tmp-").tempdir_in(&self.root)?;
        Ok(Staging { dir })
    }

    /// Make a staged, unpacked bundle a cache entry: drop the archive,
    /// write the record, fsync everything, rename into place and fsync the
    /// cache directory. Returns the entry's files directory.
    ///
    /// # Errors
    /// I/O failures; the staging directory is then removed and nothing is
    /// visible.
    pub fn commit(&self, staging: Staging, record: &EntryRecord) -> io::Result<PathBuf> {
        let archive = staging.archive_path();
        if archive.exists() {
            fs::remove_file(&archive)?;
        }
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        let record_path = staging.path().join("entry.json");
        fs::write(&record_path, json)?;
        sync_tree(staging.path())?;
        let target = self.entry_dir(&record.digest);
        if target.exists() {
            // A stale or rejected entry of the same hash: replace it.
            fs::remove_dir_all(&target)?;
        }
        let staged = staging.dir.keep();
        if let Err(e) = fs::rename(&staged, &target) {
            remove_any(&staged);
            return Err(e);
        }
        fs::File::open(&self.root)?.sync_all()?;
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((old, _)) = lru
            .entries
            .insert(Item::Bundle(record.digest), (record.unpacked_bytes, tick))
        {
            lru.total -= old;
        }
        lru.total += record.unpacked_bytes;
        Ok(target.join("files"))
    }

    /// Whether a file can be created in the cache directory now (readiness).
    ///
    /// # Errors
    /// The I/O error, as text.
    pub fn writable(&self) -> Result<(), String> {
        tempfile::Builder::new()
            .prefix(".tmp-ready-")
            .tempfile_in(&self.root)
            .map(drop)
            .map_err(|e| format!("{}: {e}", self.root.display()))
    }

    /// Record a use of `digest` (for LRU order).
    pub fn touch(&self, digest: &Digest) {
        self.touch_item(Item::Bundle(*digest));
    }

    /// Record a use of a bundle or an artifact (for LRU order).
    pub fn touch_item(&self, item: Item) {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        if let Some(entry) = lru.entries.get_mut(&item) {
            entry.1 = tick;
        }
    }

    /// Delete the entry for `digest` from disk and from the accounting.
    pub fn remove(&self, digest: &Digest) {
        self.remove_item(Item::Bundle(*digest));
    }

    fn remove_item(&self, item: Item) {
        let mut lru = self.lock();
        if let Some((bytes, _)) = lru.entries.remove(&item) {
            lru.total -= bytes;
        }
        drop(lru);
        match item {
            Item::Bundle(digest) => remove_any(&self.entry_dir(&digest)),
            Item::Artifact(component) => remove_any(&self.compiled.join(component.hex())),
        }
    }

    /// Evict least-recently-used entries until the cache fits its byte
    /// budget, skipping bundles for which `in_use` is true (their files are
    /// read while they run; artifacts never are, see the module doc).
    /// Returns the evicted entries (the caller drops its in-memory handles
    /// for evicted bundles).
    pub fn evict_to_fit(&self, in_use: impl Fn(&Digest) -> bool) -> Vec<Item> {
        let mut evicted = Vec::new();
        loop {
            let victim = {
                let lru = self.lock();
                if lru.total <= self.max_bytes {
                    break;
                }
                lru.entries
                    .iter()
                    .filter(|(item, _)| match item {
                        Item::Bundle(digest) => !in_use(digest),
                        Item::Artifact(_) => true,
                    })
                    .min_by_key(|(_, (_, tick))| *tick)
                    .map(|(item, _)| *item)
            };
            let Some(victim) = victim else { break };
            self.remove_item(victim);
            evicted.push(victim);
        }
        evicted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn read_record(dir: &Path) -> Option<EntryRecord> {
    let bytes = fs::read(dir.join("entry.json")).ok()?;
    let record: EntryRecord = serde_json::from_slice(&bytes).ok()?;
    (record.version == RECORD_VERSION).then_some(record)
}

fn remove_any(path: &Path) {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    if let Err(e) = result
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a cache entry");
    }
}

/// fsync every file and directory under `dir` (files first, then their
/// directory), so a rename of `dir` publishes durable contents.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seed: &[u8], bytes: u64) -> EntryRecord {
        let mut files = FileIndex::new();
        files.insert(
            "a".into(),
            ext_bundle::FileMeta {
                size: bytes,
                sha256: Digest::of(seed),
            },
        );
        EntryRecord::new(Digest::of(seed), bytes, None, "t".into(), files)
    }

    fn stage(cache: &DiskCache, record: &EntryRecord) {
        let staging = cache.staging().unwrap();
        fs::create_dir_all(staging.files_dir()).unwrap();
        fs::write(staging.files_dir().join("a"), vec![0u8; record.unpacked_bytes as usize]).unwrap();
        cache.commit(staging, record).unwrap();
    }

    #[test]
    fn evicts_least_recently_used_first_and_skips_entries_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), &dir.path().join("compiled"), 250).unwrap();
        let (a, b, c) = (record(b"a", 100), record(b"b", 100), record(b"c", 100));
        stage(&cache, &a);
        stage(&cache, &b);
        cache.touch(&a.digest);
        stage(&cache, &c);
        assert_eq!(cache.total_bytes(), 300);
        // b is least recently used.
        assert_eq!(cache.evict_to_fit(|_| false), vec![Item::Bundle(b.digest)]);
        assert!(!cache.entry_dir(&b.digest).exists());
        assert_eq!(cache.total_bytes(), 200);

        let d = record(b"d", 100);
        stage(&cache, &d);
        // a is now oldest but in use: c goes instead.
        assert_eq!(
            cache.evict_to_fit(|digest| *digest == a.digest),
            vec![Item::Bundle(c.digest)]
        );
        // Nothing evictable: over budget stays over budget.
        let e = record(b"e", 100);
        stage(&cache, &e);
        assert!(cache.evict_to_fit(|_| true).is_empty());
        assert_eq!(cache.total_bytes(), 300);
    }

    /// An artifact is one entry however many bundles carry its component:
    /// sized again, it replaces its own count; evicting the bundles that
    /// use it leaves it on disk; it goes only when it is itself the least
    /// recently used (its own LRU entry: every use from any bundle touches
    /// it).
    #[test]
    fn a_shared_artifact_counts_once_and_outlives_the_bundles_evicted_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let compiled = dir.path().join("compiled");
        let cache = DiskCache::open(&dir.path().join("bundles"), &compiled, 260).unwrap();
        let component = Digest::of(b"component");
        let artifact_dir = compiled.join(component.hex());
        fs::create_dir_all(&artifact_dir).unwrap();
        fs::write(artifact_dir.join("tag.cwasm"), [0u8; 50]).unwrap();
        let (a, b, c) = (record(b"a", 100), record(b"b", 100), record(b"c", 100));
        stage(&cache, &a);
        // Compiled for a's request, reused (sized, touched) for b's.
        cache.account_artifact(&component, 50);
        stage(&cache, &b);
        cache.account_artifact(&component, 50);
        cache.touch_item(Item::Artifact(component));
        assert_eq!((cache.total_bytes(), cache.artifact_bytes()), (250, 50));

        stage(&cache, &c);
        assert_eq!(cache.evict_to_fit(|_| false), vec![Item::Bundle(a.digest)]);
        assert!(artifact_dir.exists(), "the artifact b still uses stays");
        assert_eq!(cache.artifact_bytes(), 50);

        // Now the oldest: it goes although b and c carry its component (they
        // then compile it again, once, on their next load).
        cache.touch(&b.digest);
        stage(&cache, &record(b"d", 100));
        assert_eq!(
            cache.evict_to_fit(|_| false),
            vec![Item::Artifact(component), Item::Bundle(c.digest)]
        );
        assert!(!artifact_dir.exists());
        assert_eq!(cache.artifact_bytes(), 0);
    }

    #[test]
    fn reopening_keeps_complete_entries_and_drops_staging_and_junk() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), &dir.path().join("compiled"), u64::MAX).unwrap();
        let a = record(b"a", 10);
        stage(&cache, &a);
        // A fetch that was killed mid-way, and an entry without a record.
        let abandoned = cache.staging().unwrap().dir.keep();
        fs::write(abandoned.join("bundle.tar.zst"), b"partial").unwrap();
        let junk = cache.entry_dir(&Digest::of(b"junk"));
        fs::create_dir_all(junk.join("files")).unwrap();
        drop(cache);

        let cache = DiskCache::open(dir.path(), &dir.path().join("compiled"), u64::MAX).unwrap();
        assert!(!abandoned.exists());
        assert!(!junk.exists());
        assert_eq!(cache.total_bytes(), 10);
        assert_eq!(cache.record(&a.digest).unwrap().files.len(), 1);
    }

    #[test]
    fn an_uncommitted_staging_directory_vanishes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), &dir.path().join("compiled"), u64::MAX).unwrap();
        let staging = cache.staging().unwrap();
        let path = staging.path().to_path_buf();
        fs::write(staging.archive_path(), b"x").unwrap();
        drop(staging);
        assert!(!path.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
