//! Bundles: where they come from, how they are verified, and the verified
//! copies this pod keeps.
//!
//! - `object`: the object-store seam ([`BundleObjects`]): `file://`,
//!   `s3://` and read-only `http(s)://` stores under a key layout.
//! - `cache`: the disk cache of verified, unpacked bundles ([`DiskCache`]):
//!   atomic entries, LRU eviction by bytes, start-up clean-up.
//! - [`Bundles`] (here) ties them together: fetch → SHA-256 against the
//!   content hash → signature against the trust bundle → safe unpack →
//!   commit to the cache, once per content hash however many requests ask.

mod cache;
mod layout;
pub mod metrics;
pub mod object;
mod settings;

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ext_bundle::signature::{TrustBundle, VerifyError};
use ext_bundle::{BundleError, Digest, FileIndex, Manifest, UnpackLimits};
use tokio::sync::OnceCell;

pub use cache::{DiskCache, EntryRecord, Item};
pub use object::{BundleKeys, BundleObjects, ObjectError};
pub use settings::{BundleSettings, S3Settings, StorageSettings, StoreUrl, TrustSettings};

use crate::error::ErrorCode;
use crate::error::Failure;

/// Largest compressed bundle the runner will fetch.
pub const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

/// Largest signature file fetched beside a bundle (a few hundred bytes in
/// practice; the cap stops a wrong object from being downloaded whole).
pub const MAX_SIGNATURE_FILE_BYTES: u64 = 4 * 1024;

/// Largest certificate chain (`bundle.pem`) fetched beside a bundle.
pub const MAX_CERTIFICATES_FILE_BYTES: u64 = 64 * 1024;

/// How bundles are admitted: `SIGNING_REQUIRED` and `SIGNING_TRUST_BUNDLE`.
#[derive(Clone)]
pub struct Verification {
    /// Refuse bundles without a signature that verifies.
    pub required: bool,
    /// Trusted signer keys and roots; `None` when none are configured.
    pub trust: Option<Arc<TrustBundle>>,
    /// Identifies the trust bundle (SHA-256 of its text) so verdicts cached
    /// under another one are not reused.
    pub trust_id: String,
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
    /// Who signed the archive; `None` for an unsigned bundle admitted
    /// because signing was not required.
    pub signer: Option<String>,
}

impl LoadedBundle {
    /// Read a file of the bundle, checking it still has the digest recorded
    /// at unpack time.
    ///
    /// # Errors
    /// `bundle_invalid` if absent, `bundle_integrity` if changed on disk.
    pub fn read_verified(&self, path: &str) -> Result<Vec<u8>, Failure> {
        read_checked(&self.dir, &self.files, &self.digest, path)
    }
}

/// Read `path` under `dir` and check it against its recorded digest.
fn read_checked(dir: &std::path::Path, files: &FileIndex, digest: &Digest, path: &str) -> Result<Vec<u8>, Failure> {
    let meta = files
        .get(path)
        .ok_or_else(|| Failure::new(ErrorCode::BundleInvalid, format!("bundle {digest}: no file `{path}`")))?;
    let integrity = || {
        Failure::new(
            ErrorCode::BundleIntegrity,
            format!("bundle {digest}: `{path}` changed on disk since it was verified"),
        )
    };
    let bytes = fs::read(dir.join(path)).map_err(|_| integrity())?;
    if Digest::of(&bytes) != meta.sha256 {
        return Err(integrity());
    }
    Ok(bytes)
}

/// Which bundle a request wants: its content hash, plus the tenant and
/// extension the key layout may use (`{tenant}`, `{extension}`).
#[derive(Clone, Copy, Debug)]
pub struct BundleRef<'a> {
    pub digest: Digest,
    pub tenant: &'a str,
    pub extension: &'a str,
}

/// Verified bundles of this process, by content hash.
pub struct Bundles {
    /// Content hashes refused before any cache or store is asked.
    revoked: Arc<crate::revocation::Revoked>,
    objects: BundleObjects,
    cache: DiskCache,
    verification: Verification,
    limits: UnpackLimits,
    /// Bundles ready to use; the map's handle plus one per request using
    /// it, so a strong count above one means "in use, do not evict".
    loaded: Mutex<HashMap<Digest, Arc<LoadedBundle>>>,
    /// Single-flight: the one load in progress per content hash. Entries
    /// leave when the load ends, so a failure is retried by the next request
    /// (no negative caching).
    inflight: Mutex<HashMap<Digest, Arc<OnceCell<Arc<LoadedBundle>>>>>,
    /// Archives downloaded from the store since start-up.
    fetches: AtomicU64,
    /// Lookups answered from memory or from a disk entry.
    hits: AtomicU64,
    /// Entries evicted for the byte budget.
    evictions: AtomicU64,
    /// With a tenant- or extension-scoped key layout: the (hash, tenant,
    /// extension) triples whose store location was seen, so a cached bundle
    /// is served only to those it was published for (B-02).
    scoped_seen: Mutex<std::collections::HashSet<(Digest, String, String)>>,
    /// Cache writes that failed (disk full, read-only, file size limit),
    /// bundles and artifacts alike (F-04).
    write_failures: AtomicU64,
    /// Where the failed writes are also counted for alerting
    /// (`ext_runner_cache_write_failures_total`).
    write_failure_series: metrics::WriteFailures,
}

/// Triples remembered in [`Bundles::scoped_seen`]; when full it is cleared,
/// which costs each live triple one `HEAD` on its next request.
const MAX_SCOPED_SEEN: usize = 100_000;

impl Bundles {
    /// Registers the store's families in `metrics` (one `Bundles` per
    /// registry); its scrape-time gauges are [`Bundles::gauges`].
    ///
    /// # Errors
    /// If the cache directory cannot be prepared.
    pub fn new(
        objects: BundleObjects,
        cache_dir: &std::path::Path,
        max_cache_bytes: u64,
        verification: Verification,
        revoked: Arc<crate::revocation::Revoked>,
        metrics: &crate::metrics::Metrics,
    ) -> std::io::Result<Bundles> {
        Ok(Bundles {
            revoked,
            objects,
            cache: DiskCache::open(&cache_dir.join("bundles"), &cache_dir.join("compiled"), max_cache_bytes)?,
            verification,
            limits: UnpackLimits::default(),
            loaded: Mutex::default(),
            inflight: Mutex::default(),
            fetches: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            scoped_seen: Mutex::default(),
            write_failures: AtomicU64::new(0),
            write_failure_series: metrics::WriteFailures::register(metrics),
        })
    }

    /// Cache writes (bundles and artifacts) that failed since start-up.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    fn count_write_failure(&self, cache: &'static str) {
        self.write_failures.fetch_add(1, Ordering::Relaxed);
        self.write_failure_series.count(cache);
    }

    /// [`cache_write_failure`], counted.
    fn write_failure(&self, digest: &Digest, error: &std::io::Error) -> Failure {
        self.count_write_failure("bundles");
        cache_write_failure(digest, error)
    }

    /// The revocation list every lookup is checked against.
    pub fn revoked(&self) -> &Arc<crate::revocation::Revoked> {
        &self.revoked
    }

    pub fn objects(&self) -> &BundleObjects {
        &self.objects
    }

    pub fn cache(&self) -> &DiskCache {
        &self.cache
    }

    /// Archives downloaded from the store since start-up.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Lookups answered from memory or a disk entry since start-up.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Entries evicted for the byte budget since start-up.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Whether the bundle store answers (a missing probe object is fine).
    ///
    /// # Errors
    /// The store's error, as text.
    pub async fn store_reachable(&self) -> Result<(), String> {
        match self.objects.get_small(".ext-runner-readiness-probe", 1024).await {
            Ok(_) | Err(ObjectError::TooLarge { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The verified, unpacked bundle.
    ///
    /// # Errors
    /// `bundle_revoked` (checked first, cached or not), `bundle_not_found`,
    /// `bundle_unavailable`, `bundle_integrity`,
    /// `bundle_signature_invalid`, `bundle_invalid*`, `bundle_too_large`.
    pub async fn get(&self, wanted: BundleRef<'_>) -> Result<Arc<LoadedBundle>, Failure> {
        self.revoked.check(&wanted.digest)?;
        let bundle = self.get_cached_or_fetched(wanted).await?;
        self.check_published_for(wanted).await?;
        Ok(bundle)
    }

    /// B-02 (mix-and-match): with a key layout naming `{tenant}` or
    /// `{extension}`, a bundle is published *for* a (tenant, extension); one
    /// cached for another pair is served only once the store shows it at
    /// this pair's key too (one `HEAD` per pair, remembered). Not found →
    /// `bundle_not_found`; store down → `bundle_unavailable`.
    async fn check_published_for(&self, wanted: BundleRef<'_>) -> Result<(), Failure> {
        if !self.objects.layout().is_scoped() {
            return Ok(());
        }
        let triple = (wanted.digest, wanted.tenant.to_string(), wanted.extension.to_string());
        if lock(&self.scoped_seen).contains(&triple) {
            return Ok(());
        }
        let keys = self.objects.keys(&wanted.digest, wanted.tenant, wanted.extension);
        match self.objects.exists(&keys.bundle).await {
            Ok(true) => {
                self.remember_published(triple);
                Ok(())
            }
            Ok(false) => {
                tracing::warn!(content_hash = %wanted.digest, tenant = wanted.tenant, extension = wanted.extension, "bundle refused: not published for this tenant and extension");
                Err(Failure::new(
                    ErrorCode::BundleNotFound,
                    format!(
                        "bundle {}: not found in the bundle store for this tenant and extension",
                        wanted.digest
                    ),
                ))
            }
            Err(e) => Err(object_failure(&wanted.digest, "bundle", &e)),
        }
    }

    fn remember_published(&self, triple: (Digest, String, String)) {
        let mut seen = lock(&self.scoped_seen);
        if seen.len() >= MAX_SCOPED_SEEN {
            seen.clear();
        }
        seen.insert(triple);
    }

    async fn get_cached_or_fetched(&self, wanted: BundleRef<'_>) -> Result<Arc<LoadedBundle>, Failure> {
        let digest = wanted.digest;
        if let Some(bundle) = lock(&self.loaded).get(&digest).cloned() {
            self.cache.touch(&digest);
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(bundle);
        }
        let cell = lock(&self.inflight).entry(digest).or_default().clone();
        let result = cell.get_or_try_init(|| self.load(wanted)).await.cloned();
        {
            let mut inflight = lock(&self.inflight);
            if inflight.get(&digest).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(&digest);
            }
        }
        let bundle = result?;
        lock(&self.loaded).insert(digest, bundle.clone());
        self.enforce_budget();
        Ok(bundle)
    }

    /// Forget a bundle found corrupt on disk: the next request fetches and
    /// verifies it again.
    pub fn evict(&self, digest: &Digest) {
        lock(&self.loaded).remove(digest);
        self.cache.remove(digest);
    }

    /// Evict least-recently-used entries nobody holds until the cache fits.
    fn enforce_budget(&self) {
        let evicted = {
            let loaded = lock(&self.loaded);
            self.cache
                .evict_to_fit(|digest| loaded.get(digest).is_some_and(|b| Arc::strong_count(b) > 1))
        };
        if !evicted.is_empty() {
            self.evictions.fetch_add(evicted.len() as u64, Ordering::Relaxed);
            let mut loaded = lock(&self.loaded);
            for item in &evicted {
                if let Item::Bundle(digest) = item {
                    loaded.remove(digest);
                }
            }
            tracing::info!(
                evicted = evicted.len(),
                "evicted bundles and compiled artifacts from the disk cache"
            );
        }
    }

    async fn load(&self, wanted: BundleRef<'_>) -> Result<Arc<LoadedBundle>, Failure> {
        let digest = wanted.digest;
        if let Some(record) = self.cache.record(&digest) {
            match self.admit_cached(record) {
                Ok(bundle) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Arc::new(bundle));
                }
                Err(why) => {
                    tracing::warn!(%digest, reason = %why, "cached bundle not reusable; fetching it again");
                    self.cache.remove(&digest);
                }
            }
        }
        let bundle = self.fetch(wanted).await?;
        if self.objects.layout().is_scoped() {
            // Fetched from this pair's own key: it is published for it.
            self.remember_published((digest, wanted.tenant.to_string(), wanted.extension.to_string()));
        }
        Ok(Arc::new(bundle))
    }

    /// A cache entry from disk (an earlier process): usable if its verdict
    /// still holds under the current policy and its manifest is intact.
    fn admit_cached(&self, record: EntryRecord) -> Result<LoadedBundle, String> {
        match &record.signer {
            None if self.verification.required => return Err("unsigned, and signing is now required".into()),
            Some(_) if record.trust_id != self.verification.trust_id => {
                return Err("verified under a different trust bundle".into());
            }
            _ => {}
        }
        let dir = self.cache.entry_dir(&record.digest).join("files");
        let bytes = read_checked(&dir, &record.files, &record.digest, "manifest.json").map_err(|f| f.message)?;
        let manifest = Manifest::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(LoadedBundle {
            digest: record.digest,
            dir,
            manifest,
            files: record.files,
            signer: record.signer,
        })
    }

    /// Fetch, verify, unpack and commit to the cache.
    async fn fetch(&self, wanted: BundleRef<'_>) -> Result<LoadedBundle, Failure> {
        let digest = wanted.digest;
        let keys = self.objects.keys(&digest, wanted.tenant, wanted.extension);
        let staging = self.cache.staging().map_err(|e| self.write_failure(&digest, &e))?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let mut file = fs::File::create(staging.archive_path()).map_err(|e| self.write_failure(&digest, &e))?;
        let (actual, archive_bytes) = self
            .objects
            .download(&keys.bundle, &mut file, MAX_BUNDLE_BYTES)
            .await
            .map_err(|e| match e {
                // The store answered; this disk did not take the bytes.
                ObjectError::Io { source, .. } => self.write_failure(&digest, &source),
                e => object_failure(&digest, "bundle", &e),
            })?;
        drop(file);
        if actual != digest {
            // B-03: tampered or truncated bytes never reach the unpacker;
            // dropping `staging` deletes them.
            return Err(Failure::new(
                ErrorCode::BundleIntegrity,
                format!("bundle bytes do not match their content hash: expected {digest}, got {actual}"),
            ));
        }
        let signature = self
            .objects
            .get_small(&keys.signature, MAX_SIGNATURE_FILE_BYTES)
            .await
            .map_err(|e| object_failure(&digest, "signature", &e))?;
        let certificates = match signature {
            Some(_) => self
                .objects
                .get_small(&keys.certificates, MAX_CERTIFICATES_FILE_BYTES)
                .await
                .map_err(|e| object_failure(&digest, "certificate chain", &e))?,
            None => None,
        };
        let verification = self.verification.clone();
        let limits = self.limits;
        let (record, manifest, staging) = tokio::task::spawn_blocking(move || {
            let archive = fs::read(staging.archive_path()).map_err(|e| cache_write_failure(&digest, &e))?;
            let signer = verify_archive(
                &digest,
                &archive,
                signature.as_deref(),
                certificates.as_deref(),
                &verification,
            )?;
            let files = ext_bundle::unpack(&archive, &staging.files_dir(), &limits).map_err(|e| match &e {
                // The archive is fine; this disk did not take the files.
                BundleError::Io { source, .. } => cache_write_failure(&digest, source),
                e => bundle_failure(&digest, e),
            })?;
            let manifest_bytes = fs::read(staging.files_dir().join("manifest.json"))
                .map_err(|e| Failure::new(ErrorCode::BundleInvalid, format!("bundle {digest}: manifest.json: {e}")))?;
            let manifest = Manifest::from_slice(&manifest_bytes)
                .map_err(|e| Failure::new(ErrorCode::BundleInvalid, format!("bundle {digest}: {e}")))?;
            let record = EntryRecord::new(digest, archive_bytes, signer, verification.trust_id.clone(), files);
            Ok::<_, Failure>((record, manifest, staging))
        })
        .await
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("bundle task failed: {e}")))?
        .inspect_err(|failure| {
            // Only reading or writing the staging directory fails this way.
            if failure.code == ErrorCode::BundleUnavailable {
                self.count_write_failure("bundles");
            }
        })?;
        let dir = self
            .cache
            .commit(staging, &record)
            .map_err(|e| self.write_failure(&digest, &e))?;
        tracing::info!(%digest, signer = record.signer.as_deref().unwrap_or("unsigned"), bytes = archive_bytes, "bundle verified and cached");
        Ok(LoadedBundle {
            digest,
            dir,
            manifest,
            files: record.files,
            signer: record.signer,
        })
    }
}

/// Apply the signing policy to an archive whose hash already matched.
fn verify_archive(
    digest: &Digest,
    archive: &[u8],
    signature: Option<&[u8]>,
    certificates: Option<&[u8]>,
    verification: &Verification,
) -> Result<Option<String>, Failure> {
    let refuse = |reason: String| {
        tracing::warn!(%digest, reason, "bundle signature refused");
        Failure::new(
            ErrorCode::BundleSignatureInvalid,
            format!("bundle {digest}: signature not accepted: {reason}"),
        )
    };
    match (signature, &verification.trust) {
        (Some(signature), Some(trust)) => {
            let text = std::str::from_utf8(signature).map_err(|_| refuse("bundle.sig is not base64 text".into()))?;
            let certs = certificates
                .map(std::str::from_utf8)
                .transpose()
                .map_err(|_| refuse("bundle.pem is not PEM text".into()))?;
            ext_bundle::signature::verify(archive, text, certs, trust, SystemTime::now())
                .map(|signer| Some(signer.to_string()))
                .map_err(|e: VerifyError| refuse(format!("{} ({})", e, e.code())))
        }
        _ if verification.required => Err(refuse(match signature {
            None => "the bundle is unsigned (no bundle.sig beside it) and SIGNING_REQUIRED is true".into(),
            Some(_) => "no SIGNING_TRUST_BUNDLE is configured to verify it against".into(),
        })),
        _ => Ok(None),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn cache_write_failure(digest: &Digest, error: &std::io::Error) -> Failure {
    tracing::error!(%digest, %error, "bundle cache write failed");
    Failure::new(
        ErrorCode::BundleUnavailable,
        format!("bundle {digest}: the runner's bundle cache cannot be written; retry later"),
    )
}

fn object_failure(digest: &Digest, what: &str, error: &ObjectError) -> Failure {
    match error {
        ObjectError::NotFound { .. } => Failure::new(
            ErrorCode::BundleNotFound,
            format!("bundle {digest}: {what} not found in the bundle store"),
        ),
        ObjectError::TooLarge { .. } => Failure::new(
            ErrorCode::BundleTooLarge,
            format!("bundle {digest}: {what} is larger than {MAX_BUNDLE_BYTES} bytes"),
        ),
        other => {
            tracing::warn!(%digest, error = %other, "bundle store unavailable");
            Failure::new(
                ErrorCode::BundleUnavailable,
                format!("bundle {digest}: the bundle store is unavailable; retry later"),
            )
        }
    }
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

/// The compiled artifacts count against the same disk budget as the
/// bundles and leave it in the same LRU order.
impl crate::engine::ArtifactBudget for Bundles {
    fn sized(&self, component: &Digest, bytes: u64) {
        self.cache.account_artifact(component, bytes);
        self.enforce_budget();
    }

    fn used(&self, component: &Digest) {
        self.cache.touch_item(Item::Artifact(*component));
    }

    fn write_failed(&self) {
        self.count_write_failure("compiled");
    }
}
