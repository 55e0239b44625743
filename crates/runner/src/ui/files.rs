//! The bytes of UI files, and what is re-checked when (U-02).
//!
//! Every file of a bundle was hashed while the bundle was unpacked into the
//! verified disk cache (`crate::store`), and its SHA-256 and size are in the
//! bundle's file index, which is what the `ETag` and `Content-Length` come
//! from. From there:
//!
//! - **Small files** (up to [`MEMORY_CACHE_FILE_BYTES`]) are read whole and
//!   checked against their recorded SHA-256 on first use, then served from
//!   memory (within [`MEMORY_CACHE_TOTAL_BYTES`]); a mismatch is
//!   `bundle_integrity` and the bundle is evicted and fetched again (F-02).
//! - **Large files** are streamed from the cache directory in
//!   [`LARGE_FILE_CHUNK_BYTES`] reads, never hashed per request: a `HEAD`
//!   reads nothing, a range reads only its bytes. On open the file's size
//!   must still be the recorded size (a truncated or replaced file is
//!   `bundle_integrity`, as above). What is *not* re-checked per request is
//!   their content: a byte changed in place in the cache directory, by
//!   something that can write the runner's data directory, is served as it
//!   is. The runner is the only writer of that directory, which is where its
//!   integrity rests.
//!
//! At most [`MAX_CONCURRENT_LARGE_FILE_READS`] chunk reads run at once, so
//! any number of large-asset requests share a few blocking threads and
//! hold about one chunk each in memory while their client reads.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ext_bundle::Digest;
use futures_util::Stream;
use tokio::sync::Semaphore;

use crate::error::ErrorCode;
use crate::error::Failure;
use crate::store::LoadedBundle;

/// UI files up to this size are kept in memory after their first verified
/// read, so hot assets are not re-read and re-hashed per request; larger
/// ones are streamed from disk.
pub const MEMORY_CACHE_FILE_BYTES: u64 = 1024 * 1024;

/// Total bytes of UI files kept in memory across all bundles; beyond it
/// small files are read (and verified) from the disk cache per request.
pub const MEMORY_CACHE_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// One read of a large file: big enough that a 15 MiB asset is ~240 reads,
/// small enough that a slow client pins little memory.
pub const LARGE_FILE_CHUNK_BYTES: u64 = 64 * 1024;

/// Large-file chunk reads running at once (on blocking threads): the disk
/// and page cache are shared by two cores, and a chunk read from the page
/// cache takes microseconds, so waiters move quickly.
pub const MAX_CONCURRENT_LARGE_FILE_READS: usize = 4;

/// (bundle, path) of a UI file kept in memory.
type FileKey = (Digest, String);

/// UI file state of the process: small verified files in memory, the
/// large-read slots and a count of bytes read from disk.
pub struct UiFiles {
    /// Verified files by (bundle, path), and their total size.
    memory: Mutex<(HashMap<FileKey, Bytes>, u64)>,
    /// [`MAX_CONCURRENT_LARGE_FILE_READS`] chunk reads at once.
    reads: Arc<Semaphore>,
    /// Bytes read from the disk cache for UI responses since start-up.
    disk_bytes: Arc<AtomicU64>,
}

impl Default for UiFiles {
    fn default() -> Self {
        UiFiles {
            memory: Mutex::default(),
            reads: Arc::new(Semaphore::new(MAX_CONCURRENT_LARGE_FILE_READS)),
            disk_bytes: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// A large file, opened and found to have its recorded size.
pub struct LargeFile {
    file: Arc<File>,
}

impl UiFiles {
    /// Bytes read from the disk cache for UI responses since start-up.
    pub fn disk_bytes_read(&self) -> u64 {
        self.disk_bytes.load(Ordering::Relaxed)
    }

    /// A small file's bytes: from memory, or read and checked against its
    /// recorded SHA-256 (then kept in memory while there is room).
    ///
    /// # Errors
    /// `bundle_integrity` if it changed on disk, `internal` if the read
    /// task failed.
    pub async fn small(&self, bundle: &Arc<LoadedBundle>, key: &str, size: u64) -> Result<Bytes, Failure> {
        let cache_key = (bundle.digest, key.to_string());
        if let Some(bytes) = lock(&self.memory).0.get(&cache_key) {
            return Ok(bytes.clone());
        }
        let reader = bundle.clone();
        let path = key.to_string();
        let bytes = tokio::task::spawn_blocking(move || reader.read_verified(&path))
            .await
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("read task failed: {e}")))??;
        self.disk_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let bytes = Bytes::from(bytes);
        if size <= MEMORY_CACHE_FILE_BYTES {
            let mut memory = lock(&self.memory);
            let (map, total) = &mut *memory;
            if *total + size <= MEMORY_CACHE_TOTAL_BYTES && !map.contains_key(&cache_key) {
                *total += size;
                map.insert(cache_key, bytes.clone());
            }
        }
        Ok(bytes)
    }

    /// Open a large file of `bundle` without reading it: it must exist and
    /// have its recorded `size`.
    ///
    /// # Errors
    /// `bundle_integrity` when it is gone or its size changed.
    pub async fn open_large(&self, bundle: &Arc<LoadedBundle>, key: &str, size: u64) -> Result<LargeFile, Failure> {
        let path = bundle.dir.join(key);
        let digest = bundle.digest;
        let shown = key.to_string();
        tokio::task::spawn_blocking(move || {
            let integrity = || {
                Failure::new(
                    ErrorCode::BundleIntegrity,
                    format!("bundle {digest}: `{shown}` changed on disk since it was verified"),
                )
            };
            let file = File::open(&path).map_err(|_| integrity())?;
            let on_disk = file.metadata().map_err(|_| integrity())?.len();
            if on_disk != size {
                return Err(integrity());
            }
            Ok(LargeFile { file: Arc::new(file) })
        })
        .await
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("open task failed: {e}")))?
    }

    /// The bytes `start..start + len` of `file`, read in chunks as the
    /// client takes them, each read waiting for one of the large-read slots.
    pub fn stream(
        &self,
        file: LargeFile,
        start: u64,
        len: u64,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let reads = self.reads.clone();
        let counter = self.disk_bytes.clone();
        let end = start.saturating_add(len);
        futures_util::stream::try_unfold(start, move |at| {
            let (file, reads, counter) = (file.file.clone(), reads.clone(), counter.clone());
            async move {
                if at >= end {
                    return Ok(None);
                }
                let n = (end - at).min(LARGE_FILE_CHUNK_BYTES) as usize;
                let slot = reads.acquire_owned().await.map_err(std::io::Error::other)?;
                let chunk = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, at).map(|()| buf)
                })
                .await
                .map_err(std::io::Error::other)??;
                counter.fetch_add(n as u64, Ordering::Relaxed);
                Ok(Some((Bytes::from(chunk), at + n as u64)))
            }
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
