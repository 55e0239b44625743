//! The optional install check of UI assets (`RUNNER_UI_VALIDATE_URL`), and
//! what keeps a flood of made-up `?tenant=` values from costing memory or
//! hammering the checking service (U-01):
//!
//! - answers are kept in an LRU bounded in entries
//!   ([`MAX_VALIDATION_CACHE_ENTRIES`]) and bytes
//!   ([`MAX_VALIDATION_CACHE_BYTES`]); each entry carries the time it
//!   expires, set when it is inserted ([`VALIDATION_TTL`]), and an expired
//!   entry is never answered from and is dropped when seen;
//! - ids are length-checked before anything is stored (the caller answers
//!   400 past [`crate::limits::MAX_ID_BYTES`]);
//! - outbound checks are single-flight per (tenant, extension, bundle), at
//!   most [`MAX_CONCURRENT_VALIDATIONS`] at once, and at most
//!   `RUNNER_UI_VALIDATE_MAX_PER_SECOND` started per second (a token
//!   bucket); a check refused for either is a 503 `overloaded`, never a
//!   cached denial.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use ext_bundle::Digest;
use tokio::sync::{OnceCell, Semaphore};

/// How long an install check's answer is reused: short, so an uninstall
/// takes effect within half a minute, long enough that a page load's dozens
/// of asset requests cost one check.
pub const VALIDATION_TTL: Duration = Duration::from_secs(30);

/// Time limit of one install-check call.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(3);

/// Install-check answers kept at most. Answers live [`VALIDATION_TTL`], so
/// this is the distinct (tenant, extension, bundle) triples one runner sees
/// in 30 s with room to spare; beyond it the least recently used go.
pub const MAX_VALIDATION_CACHE_ENTRIES: usize = 4_096;

/// Bytes the install-check answers may take, counted as the ids' lengths
/// plus `VALIDATION_ENTRY_OVERHEAD_BYTES` each: 1 MiB is ~10,000 entries
/// with typical ids and ~1,700 with ids at the length cap.
pub const MAX_VALIDATION_CACHE_BYTES: usize = 1024 * 1024;

/// Bytes charged per cached answer besides its ids: the digest, the
/// expiry, the answer and the LRU's own node and hash-table slot.
pub const VALIDATION_ENTRY_OVERHEAD_BYTES: usize = 128;

/// Install checks in flight at once: enough for a busy page load across
/// many tenants, few enough that a flood cannot open hundreds of
/// connections to the checking service.
pub const MAX_CONCURRENT_VALIDATIONS: usize = 16;

/// Longest a request waits for one of the [`MAX_CONCURRENT_VALIDATIONS`]
/// slots before it is answered 503: a check takes milliseconds when the
/// service is healthy, so a longer wait means it is not.
pub const VALIDATION_SLOT_WAIT: Duration = Duration::from_secs(1);

/// Install checks started per second (`RUNNER_UI_VALIDATE_MAX_PER_SECOND`),
/// also the burst: a page load is one check per (tenant, extension, bundle)
/// thanks to the cache, so 50 a second is many users arriving at once,
/// while a flood of made-up tenants reaches the service at this rate only.
pub const DEFAULT_VALIDATIONS_PER_SECOND: u32 = 50;

/// (tenant, extension, bundle) of an install check.
type InstallKey = (String, String, Digest);

/// Why no answer could be had.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckError {
    /// Refused here by the rate or concurrency bound; retry shortly.
    Busy(&'static str),
    /// The service did not answer yes or no (down, slow, or a 5xx).
    Unavailable(String),
}

/// One cached answer.
struct Answer {
    installed: bool,
    expires: Instant,
    bytes: usize,
}

/// The LRU of answers, with the byte count the bound is enforced on.
struct AnswerCache {
    entries: lru::LruCache<InstallKey, Answer>,
    bytes: usize,
    max_bytes: usize,
}

impl AnswerCache {
    fn new(max_entries: usize, max_bytes: usize) -> AnswerCache {
        AnswerCache {
            entries: lru::LruCache::new(NonZeroUsize::new(max_entries.max(1)).expect("at least one")),
            bytes: 0,
            max_bytes,
        }
    }

    fn get(&mut self, key: &InstallKey, now: Instant) -> Option<bool> {
        let answer = self.entries.get(key)?;
        if answer.expires > now {
            return Some(answer.installed);
        }
        let (_, gone) = self.entries.pop_entry(key)?;
        self.bytes -= gone.bytes;
        None
    }

    fn insert(&mut self, key: InstallKey, installed: bool, now: Instant) {
        let bytes = key.0.len() + key.1.len() + VALIDATION_ENTRY_OVERHEAD_BYTES;
        if bytes > self.max_bytes {
            return;
        }
        if let Some(old) = self.entries.pop(&key) {
            self.bytes -= old.bytes;
        }
        // Expired entries at the cold end go first, then the least recently
        // used until the newcomer fits both bounds.
        while let Some((_, oldest)) = self.entries.peek_lru() {
            let over = self.entries.len() >= self.entries.cap().get() || self.bytes + bytes > self.max_bytes;
            if oldest.expires > now && !over {
                break;
            }
            if let Some((_, gone)) = self.entries.pop_lru() {
                self.bytes -= gone.bytes;
            }
        }
        self.bytes += bytes;
        let answer = Answer {
            installed,
            expires: now + VALIDATION_TTL,
            bytes,
        };
        // There is room after the loop above, so nothing is pushed out here.
        if let Some((_, gone)) = self.entries.push(key, answer) {
            self.bytes -= gone.bytes;
        }
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` saved up.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Install-check state of the process: answers, single-flight cells, the
/// concurrency slots and the rate bucket. Touched by every UI request when
/// `RUNNER_UI_VALIDATE_URL` is set.
pub struct InstallChecks {
    /// Answers by (tenant, extension, bundle), bounded (see the module doc).
    answers: Mutex<AnswerCache>,
    /// The one check in progress per key; removed when it ends, so an
    /// error is retried by the next request rather than remembered.
    inflight: Mutex<HashMap<InstallKey, Arc<OnceCell<bool>>>>,
    /// [`MAX_CONCURRENT_VALIDATIONS`] outbound calls at once.
    slots: Semaphore,
    /// Outbound calls started per second.
    bucket: Mutex<Bucket>,
    /// Outbound calls sent since start-up (tests and the log).
    sent: std::sync::atomic::AtomicU64,
    client: OnceLock<reqwest::Client>,
}

impl Default for InstallChecks {
    fn default() -> Self {
        InstallChecks {
            answers: Mutex::new(AnswerCache::new(
                MAX_VALIDATION_CACHE_ENTRIES,
                MAX_VALIDATION_CACHE_BYTES,
            )),
            inflight: Mutex::default(),
            slots: Semaphore::new(MAX_CONCURRENT_VALIDATIONS),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(DEFAULT_VALIDATIONS_PER_SECOND),
                last: Instant::now(),
            }),
            sent: std::sync::atomic::AtomicU64::new(0),
            client: OnceLock::new(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl InstallChecks {
    /// Answers cached now.
    pub fn cached_entries(&self) -> usize {
        lock(&self.answers).entries.len()
    }

    /// Bytes the cached answers are charged (see [`MAX_VALIDATION_CACHE_BYTES`]).
    pub fn cached_bytes(&self) -> usize {
        lock(&self.answers).bytes
    }

    /// Install checks sent to the service since start-up.
    pub fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ask `url` (with `token` as the bearer, when set) whether the bundle
    /// is installed for (tenant, extension):
    /// 2xx yes, 403/404 no (both cached for [`VALIDATION_TTL`]); anything
    /// else is an error and not cached, so a flapping service does not lock
    /// users out.
    ///
    /// # Errors
    /// [`CheckError::Busy`] past the rate or concurrency bound,
    /// [`CheckError::Unavailable`] when the service gave no yes or no.
    pub async fn check(
        &self,
        url: &str,
        token: Option<&str>,
        per_second: u32,
        tenant: &str,
        extension: &str,
        digest: &Digest,
    ) -> Result<bool, CheckError> {
        let key = (tenant.to_string(), extension.to_string(), *digest);
        if let Some(installed) = lock(&self.answers).get(&key, Instant::now()) {
            return Ok(installed);
        }
        let cell = lock(&self.inflight).entry(key.clone()).or_default().clone();
        let result = cell
            .get_or_try_init(|| self.ask(url, token, per_second, &key))
            .await
            .copied();
        {
            let mut inflight = lock(&self.inflight);
            if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(&key);
            }
        }
        result
    }

    fn take_token(&self, per_second: u32) -> bool {
        let rate = f64::from(per_second.max(1));
        let mut bucket = lock(&self.bucket);
        let now = Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn ask(&self, url: &str, token: Option<&str>, per_second: u32, key: &InstallKey) -> Result<bool, CheckError> {
        if !self.take_token(per_second) {
            return Err(CheckError::Busy("install checks are rate limited"));
        }
        let _slot = tokio::time::timeout(VALIDATION_SLOT_WAIT, self.slots.acquire())
            .await
            .map_err(|_| CheckError::Busy("too many install checks in flight"))?
            .map_err(|_| CheckError::Busy("install checks are closed"))?;
        let client = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(VALIDATION_TIMEOUT)
                .no_proxy()
                .build()
                .unwrap_or_default()
        });
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tenant, extension, digest) = key;
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .query(&[
                ("tenant", tenant.as_str()),
                ("extension", extension.as_str()),
                ("content_hash", &digest.to_string()),
            ])
            .send()
            .await
            .map_err(|e| CheckError::Unavailable(e.without_url().to_string()))?;
        let installed = match response.status() {
            s if s.is_success() => true,
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => false,
            other => return Err(CheckError::Unavailable(format!("install check answered {other}"))),
        };
        lock(&self.answers).insert(key.clone(), installed, Instant::now());
        Ok(installed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str) -> InstallKey {
        (tenant.to_string(), "ext".to_string(), Digest::of(b"bundle"))
    }

    /// U-01: the answer cache stays within its entry and byte bounds,
    /// evicting the least recently used, and never answers past the TTL.
    #[test]
    fn u01_answer_cache_is_bounded_in_entries_bytes_and_time() {
        let now = Instant::now();
        let mut cache = AnswerCache::new(3, 10_000);
        for tenant in ["a", "b", "c"] {
            cache.insert(key(tenant), true, now);
        }
        assert_eq!(cache.get(&key("a"), now), Some(true)); // a is now the most recent
        cache.insert(key("d"), false, now);
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(cache.get(&key("b"), now), None, "the least recently used went");
        assert_eq!(cache.get(&key("a"), now), Some(true));
        assert_eq!(cache.get(&key("d"), now), Some(false));

        // Bytes: entries of ~1,128 bytes in a 4,000-byte budget: three fit.
        let mut cache = AnswerCache::new(100, 4_000);
        for i in 0..50 {
            cache.insert(key(&format!("{i:01000}")), true, now);
            assert!(cache.bytes <= 4_000, "{}", cache.bytes);
        }
        assert_eq!(cache.entries.len(), 3);
        assert_eq!(cache.bytes, cache.entries.iter().map(|(_, a)| a.bytes).sum::<usize>());

        // TTL: set at insert; an expired entry is a miss and is dropped.
        let mut cache = AnswerCache::new(10, 10_000);
        cache.insert(key("a"), true, now);
        assert_eq!(
            cache.get(&key("a"), now + VALIDATION_TTL - Duration::from_millis(1)),
            Some(true)
        );
        assert_eq!(cache.get(&key("a"), now + VALIDATION_TTL), None);
        assert_eq!((cache.entries.len(), cache.bytes), (0, 0));
        // Expired entries at the cold end are dropped by the next insert.
        cache.insert(key("b"), true, now);
        cache.insert(key("c"), true, now + VALIDATION_TTL * 2);
        assert_eq!(cache.entries.len(), 1);
    }

    /// U-01: the token bucket starts full and refuses once it is empty.
    #[test]
    fn u01_outbound_checks_are_rate_limited() {
        let checks = InstallChecks::default();
        let granted = (0..1_000).filter(|_| checks.take_token(10)).count();
        // The bucket starts with DEFAULT tokens, capped at the rate (10),
        // plus what refills during the loop (well under one token).
        assert!((10..=11).contains(&granted), "{granted}");
    }
}
