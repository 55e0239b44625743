//! Revocation, the kill switch (spec "What an operator must be able to rely
//! on"): the content hashes the registry revoked (a version, or every
//! version of a revoked signer) are neither executed nor served by this
//! runner, cached or not. The list is kept in memory, checked on every
//! bundle lookup ([`crate::store::Bundles::get`]), kept in sync with the
//! registry ([`sync`]) and written to `revoked.json` under the data dir, so
//! a restart while the registry is unreachable still refuses what it knew.

pub mod metrics;
pub mod sync;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ext_bundle::Digest;
use serde::{Deserialize, Serialize};

use crate::config::source::Source;
use crate::error::{ErrorCode, Failure};

/// The file under the data dir the last known list is kept in.
pub const REVOKED_FILE: &str = "revoked.json";

/// How often the list is fetched (`RUNNER_REVOCATIONS_POLL_MS`): with the
/// in-process registry a revoke applies at once and this only picks up
/// revokes made by other registry replicas; across processes it is the
/// bound the README states (one poll plus one request).
pub const DEFAULT_REVOCATIONS_POLL_MS: u64 = 5_000;

/// Longest a poll may take: the list is small, so a slower answer means the
/// registry is in trouble, and the previous list stays in force meanwhile.
pub const REVOCATIONS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest revocation list accepted (bytes of JSON): ~100,000 hashes, far
/// beyond any real kill list, small enough to hold in memory.
pub const MAX_REVOCATIONS_BYTES: usize = 8 * 1024 * 1024;

/// Where the list comes from and how this runner authenticates to the
/// registry.
#[derive(Clone, Debug, Default)]
pub struct RevocationSettings {
    /// `RUNNER_REVOCATIONS_URL`: the registry's `GET /v1/registry/revocations`
    /// this runner polls; unset, a process running the registry role asks it
    /// in-process and any other keeps its last known list.
    pub url: Option<String>,
    /// `RUNNER_REVOCATIONS_POLL_MS`.
    pub poll: Duration,
    /// `RUNNER_REGISTRY_TOKEN`: the bearer token this runner presents to the
    /// registry (revocation polls and `RUNNER_UI_VALIDATE_URL` checks); a
    /// registry token with the `runner` scope is enough.
    pub registry_token: Option<String>,
}

impl RevocationSettings {
    pub fn from_source(source: &Source) -> RevocationSettings {
        RevocationSettings {
            url: source.http_url("RUNNER_REVOCATIONS_URL"),
            poll: source.millis("RUNNER_REVOCATIONS_POLL_MS", DEFAULT_REVOCATIONS_POLL_MS, 100..=300_000),
            registry_token: source.text("RUNNER_REGISTRY_TOKEN").map(str::trim).map(str::to_string),
        }
    }
}

/// The wire and file shape of the list: `{items: ["sha256:…", …]}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RevocationList {
    pub items: Vec<String>,
}

impl RevocationList {
    /// The hashes, each parsed.
    ///
    /// # Errors
    /// The first entry that is not a content hash, by position.
    pub fn digests(&self) -> Result<BTreeSet<Digest>, String> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, item)| Digest::parse(item).map_err(|e| format!("items[{i}]: {e}")))
            .collect()
    }
}

/// The revoked content hashes this runner knows, and when they were last
/// confirmed by the registry.
#[derive(Debug, Default)]
pub struct Revoked {
    hashes: RwLock<Arc<BTreeSet<Digest>>>,
    /// Where the list is kept across restarts; `None` keeps it in memory.
    file: Option<PathBuf>,
    synced: Mutex<Option<Instant>>,
    sync_failures: AtomicU64,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Revoked {
    /// The list kept at `data_dir`/[`REVOKED_FILE`], empty when there is
    /// none yet.
    ///
    /// # Errors
    /// The file exists but cannot be read or is not a list of content
    /// hashes (starting without it could run revoked code), named.
    pub fn load(data_dir: &Path) -> anyhow::Result<Revoked> {
        let file = data_dir.join(REVOKED_FILE);
        let hashes = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<RevocationList>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|list| list.digests())
                .map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        Ok(Revoked {
            hashes: RwLock::new(Arc::new(hashes)),
            file: Some(file),
            ..Revoked::default()
        })
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        read(&self.hashes).contains(digest)
    }

    /// `bundle_revoked` when `digest` is revoked.
    ///
    /// # Errors
    /// [`ErrorCode::BundleRevoked`].
    pub fn check(&self, digest: &Digest) -> Result<(), Failure> {
        if self.contains(digest) {
            return Err(Failure::new(
                ErrorCode::BundleRevoked,
                format!("bundle {digest} is revoked by the registry"),
            ));
        }
        Ok(())
    }

    /// How many hashes are revoked.
    pub fn len(&self) -> usize {
        read(&self.hashes).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replace the list with the registry's answer and keep it on disk.
    /// The new list is in force even when writing the file fails (logged).
    pub fn replace(&self, hashes: BTreeSet<Digest>) {
        *self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        if **read(&self.hashes) == hashes {
            return;
        }
        let added = hashes.difference(&read(&self.hashes)).count();
        tracing::info!(revoked = hashes.len(), added, "revocation list updated");
        let list = RevocationList {
            items: hashes.iter().map(Digest::to_string).collect(),
        };
        *self.hashes.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(hashes);
        if let Some(file) = &self.file
            && let Err(e) = write_atomically(file, &serde_json::to_vec(&list).unwrap_or_default())
        {
            tracing::error!(file = %file.display(), error = %e, "could not keep the revocation list on disk");
        }
    }

    /// A sync that did not reach the registry: the list in force stays.
    pub fn sync_failed(&self, why: &str) {
        self.sync_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            reason = why,
            "revocation list not refreshed; the last known list stays in force"
        );
    }

    /// Time since the registry last confirmed the list, if it ever did.
    pub fn since_sync(&self) -> Option<Duration> {
        self.synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|at| at.elapsed())
    }

    /// Syncs that failed since start-up.
    pub fn sync_failures(&self) -> u64 {
        self.sync_failures.load(Ordering::Relaxed)
    }
}

/// Write `bytes` to `path` through a temporary file and a rename, so a
/// crash leaves the old list or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> Digest {
        Digest::of(&[byte])
    }

    #[test]
    fn the_list_is_checked_kept_on_disk_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let revoked = Revoked::load(dir.path()).unwrap();
        assert!(revoked.is_empty() && revoked.since_sync().is_none());
        assert!(revoked.check(&digest(1)).is_ok());
        revoked.replace(BTreeSet::from([digest(1), digest(2)]));
        let refused = revoked.check(&digest(1)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BundleRevoked);
        assert!(refused.message.contains(&digest(1).to_string()), "{refused:?}");
        assert!(revoked.check(&digest(3)).is_ok());
        assert!(revoked.since_sync().is_some());

        let again = Revoked::load(dir.path()).unwrap();
        assert_eq!(again.len(), 2);
        assert!(again.contains(&digest(2)));

        revoked.replace(BTreeSet::new());
        assert!(
            Revoked::load(dir.path()).unwrap().is_empty(),
            "an emptied list is kept too"
        );
    }

    #[test]
    fn a_list_that_cannot_be_written_is_still_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let revoked = Revoked::load(&dir.path().join("absent")).unwrap();
        revoked.replace(BTreeSet::from([digest(7)]));
        assert!(revoked.contains(&digest(7)));
        assert!(!dir.path().join("absent").join(REVOKED_FILE).exists());
    }

    #[test]
    fn a_damaged_file_stops_start_up_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(REVOKED_FILE), br#"{"items": ["sha256:nope"]}"#).unwrap();
        let error = Revoked::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(REVOKED_FILE) && error.contains("items[0]"), "{error}");
    }
}
