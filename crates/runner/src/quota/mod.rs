//! Tenant quotas (catalogue A-09): how much of a shared runner one tenant
//! may use at once and over time.
//!
//! - **Concurrency caps** per tenant (`RUNNER_TENANT_MAX_CONCURRENCY`) and per
//!   (tenant, extension) (`RUNNER_EXTENSION_MAX_CONCURRENCY`). A request over
//!   a cap is refused at once with 429 and `Retry-After`, never queued, so a
//!   tenant flooding the runner holds its own share of the slots and no more.
//!   The global cap (`RUNNER_MAX_CONCURRENCY`, 503 `overloaded`) stays with
//!   the execution slots in `execute.rs`, next to the pool it protects.
//! - **A token bucket per tenant** (`RUNNER_TENANT_RATE_LIMIT`), in memory,
//!   or in Redis (`RUNNER_RATE_LIMIT_REDIS_URL`) so a fleet of runners shares
//!   one budget per tenant. When Redis does not answer, requests are
//!   admitted (fail open): a warning is logged and
//!   [`QuotaStats::rate_limit_fail_open`] counts them.
//!
//! [`Quotas::admit`] hands out a [`QuotaPermit`] that the execution holds
//! until it ends; dropping it (also on cancellation) releases the slots.
//! Memory is bounded: in-flight counters disappear when they reach zero and
//! in-memory buckets that have refilled completely are swept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ErrorCode;
use crate::error::Failure;
use crate::limits::{
    MAX_RATE_LIMIT_BURST, MAX_RATE_LIMIT_PER_SECOND, MIN_RATE_LIMIT_PER_SECOND, RATE_LIMIT_SWEEP_INTERVAL,
};

pub mod cpu_budget;
pub mod metrics;
mod settings;
pub mod shared_redis;

pub use settings::QuotaSettings;

use self::shared_redis::SharedRedis;

/// Prefix of the Redis keys holding the shared buckets: `ext-rl:<tenant id>`.
pub const REDIS_KEY_PREFIX: &str = "ext-rl:";

/// Floating-point slack when comparing token counts, so a bucket refilled
/// for exactly `1 / per_second` seconds always holds a whole token.
const TOKEN_EPSILON: f64 = 1e-9;

/// A token-bucket rate: `per_second` tokens flow in, at most `burst` are kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed back to back after an idle period (bucket size).
    pub burst: u32,
}

impl RateLimit {
    /// Parse `<per second>[:<burst>]` (`10`, `10:50`, `0.5:3`); `off` means
    /// no limit. Without a burst the bucket holds one second's worth (at
    /// least one token).
    ///
    /// # Errors
    /// A message saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<Option<RateLimit>, String> {
        let text = text.trim();
        let Some((per_second, burst)) =
            rate_and_burst(text, "`<per second>[:<burst>]`, e.g. `10`, `10:50` or `0.5:3`")?
        else {
            return Ok(None);
        };
        if !(MIN_RATE_LIMIT_PER_SECOND..=MAX_RATE_LIMIT_PER_SECOND).contains(&per_second) {
            return Err(format!(
                "`{text}`: the rate must be between {MIN_RATE_LIMIT_PER_SECOND} and {MAX_RATE_LIMIT_PER_SECOND} per second"
            ));
        }
        let burst = match burst {
            Some(burst) => match burst.parse::<u32>() {
                Ok(b) if (1..=MAX_RATE_LIMIT_BURST).contains(&b) => b,
                _ => {
                    return Err(format!(
                        "`{text}`: the burst must be an integer in 1..={MAX_RATE_LIMIT_BURST}"
                    ));
                }
            },
            // `per_second` is at most MAX_RATE_LIMIT_PER_SECOND, so this fits.
            None => (per_second.ceil() as u32).clamp(1, MAX_RATE_LIMIT_BURST),
        };
        Ok(Some(RateLimit { per_second, burst }))
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s (burst {})", self.per_second, self.burst)
    }
}

/// The shape both bucket settings share (`RUNNER_TENANT_RATE_LIMIT`,
/// `RUNNER_TENANT_CPU_MS_PER_SEC`): `off` (`None`), or a rate and an
/// optional burst after `:`, the rate already a number; `shape` describes
/// the setting for the error message.
///
/// # Errors
/// The rate is not a number.
pub(crate) fn rate_and_burst<'t>(text: &'t str, shape: &str) -> Result<Option<(f64, Option<&'t str>)>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let (rate, burst) = match text.split_once(':') {
        Some((rate, burst)) => (rate.trim(), Some(burst.trim())),
        None => (text, None),
    };
    let rate = rate.parse().map_err(|_| format!("`{text}` must be `off` or {shape}"))?;
    Ok(Some((rate, burst)))
}

/// Check `RUNNER_RATE_LIMIT_REDIS_URL` without connecting.
///
/// # Errors
/// Why the URL cannot be used.
pub fn check_redis_url(text: &str) -> Result<(), String> {
    if text.starts_with("rediss://") || text.starts_with("valkeys://") {
        return Err(format!("`{text}`: TLS (rediss://) is not built in; use redis://"));
    }
    redis::Client::open(text)
        .map(drop)
        .map_err(|e| format!("`{text}` is not a Redis URL like redis://127.0.0.1:6379 ({e})"))
}

/// What the quotas refused or waived since start-up.
#[derive(Debug, Default)]
pub struct QuotaStats {
    /// 429 `tenant_concurrency_exceeded` answers.
    pub tenant_concurrency_rejections: AtomicU64,
    /// 429 `extension_concurrency_exceeded` answers.
    pub extension_concurrency_rejections: AtomicU64,
    /// 429 `rate_limited` answers.
    pub rate_limited: AtomicU64,
    /// Requests admitted without a rate-limit decision because Redis did not
    /// answer in time (fail open).
    pub rate_limit_fail_open: AtomicU64,
}

/// The runner's quotas. One per process, owned by the `Runner`.
pub struct Quotas {
    tenant_cap: u32,
    extension_cap: u32,
    /// Executions in flight per tenant and extension; touched on admit and
    /// on permit drop, never held across an await.
    in_flight: Mutex<InFlight>,
    /// `None` when `RUNNER_TENANT_RATE_LIMIT` is off.
    rate: Option<RateLimiter>,
    /// Shared with its gauges (`metrics.rs`).
    stats: Arc<QuotaStats>,
}

impl Quotas {
    /// The quotas `settings` ask for. Nothing connects yet: Redis is reached
    /// on first use.
    ///
    /// # Errors
    /// An unusable Redis URL (already refused by `Config::load`).
    pub fn new(settings: &QuotaSettings) -> Result<Quotas, redis::RedisError> {
        let rate = match (settings.tenant_rate_limit, &settings.redis_url) {
            (None, _) => None,
            (Some(limit), None) => Some(RateLimiter::memory(limit)),
            (Some(limit), Some(url)) => Some(RateLimiter::redis(limit, url, REDIS_KEY_PREFIX)?),
        };
        Ok(Quotas {
            tenant_cap: settings.tenant_max_concurrency,
            extension_cap: settings.extension_max_concurrency,
            in_flight: Mutex::new(InFlight::default()),
            rate,
            stats: Arc::default(),
        })
    }

    /// Admit one execution for (`tenant`, `extension`), or refuse it at once.
    /// Concurrency is checked first, so a refused request spends no token.
    ///
    /// # Errors
    /// 429 `tenant_concurrency_exceeded`, `extension_concurrency_exceeded` or
    /// `rate_limited`, each with its `Retry-After`.
    pub async fn admit<'a>(&'a self, tenant: &'a str, extension: &'a str) -> Result<QuotaPermit<'a>, Failure> {
        let entered = self
            .lock()
            .enter(tenant, extension, self.tenant_cap, self.extension_cap);
        if let Err(code) = entered {
            let (counter, message) = match code {
                ErrorCode::TenantConcurrencyExceeded => (
                    &self.stats.tenant_concurrency_rejections,
                    format!(
                        "the tenant already has {} executions in flight, its limit; retry shortly",
                        self.tenant_cap
                    ),
                ),
                _ => (
                    &self.stats.extension_concurrency_rejections,
                    format!(
                        "this extension already has {} executions in flight for the tenant, its limit; retry shortly",
                        self.extension_cap
                    ),
                ),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return Err(Failure::new(code, message));
        }
        // From here on, dropping the permit (error below, or the caller's
        // future cancelled) gives the slots back.
        let permit = QuotaPermit {
            quotas: self,
            tenant,
            extension,
        };
        if let Some(rate) = &self.rate {
            rate.take(tenant, &self.stats).await.map_err(|wait| {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                let retry_after_secs = retry_after_secs(wait);
                Failure::new(
                    ErrorCode::RateLimited { retry_after_secs },
                    format!(
                        "the tenant's rate limit of {} is used up; retry in {retry_after_secs} s",
                        rate.limit
                    ),
                )
            })?;
        }
        Ok(permit)
    }

    /// Executions `tenant` has in flight (all its extensions).
    pub fn in_flight(&self, tenant: &str) -> u32 {
        self.lock().tenants.get(tenant).map_or(0, |t| t.total)
    }

    /// Tenants with at least one execution in flight.
    pub fn tenants_in_flight(&self) -> usize {
        self.lock().tenants.len()
    }

    /// In-memory rate-limit buckets held (0 with Redis or without a limit).
    pub fn buckets_held(&self) -> usize {
        match self.rate.as_ref().map(|r| &r.store) {
            Some(BucketStore::Memory(buckets)) => buckets.lock().unwrap_or_else(|p| p.into_inner()).buckets.len(),
            _ => 0,
        }
    }

    pub fn stats(&self) -> &QuotaStats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight> {
        // The counters stay consistent even if a holder panicked: every
        // critical section is a few integer updates.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One admitted execution's share of its tenant's and extension's caps,
/// given back on drop.
#[must_use = "the quota is released when the permit is dropped"]
pub struct QuotaPermit<'a> {
    quotas: &'a Quotas,
    tenant: &'a str,
    extension: &'a str,
}

impl Drop for QuotaPermit<'_> {
    fn drop(&mut self) {
        self.quotas.lock().leave(self.tenant, self.extension);
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs_f64().ceil();
    if secs >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        (secs as u32).max(1)
    }
}

// ---------------------------------------------------------------------------
// Concurrency counters.

/// Executions in flight. Entries exist only while something is in flight,
/// so idle tenants cost nothing.
#[derive(Debug, Default)]
struct InFlight {
    tenants: HashMap<String, TenantInFlight>,
}

#[derive(Debug, Default)]
struct TenantInFlight {
    total: u32,
    extensions: HashMap<String, u32>,
}

impl InFlight {
    /// Count one more execution, or name the cap it would break.
    fn enter(&mut self, tenant: &str, extension: &str, tenant_cap: u32, extension_cap: u32) -> Result<(), ErrorCode> {
        let (total, current) = self
            .tenants
            .get(tenant)
            .map_or((0, 0), |t| (t.total, t.extensions.get(extension).copied().unwrap_or(0)));
        if total >= tenant_cap {
            return Err(ErrorCode::TenantConcurrencyExceeded);
        }
        if current >= extension_cap {
            return Err(ErrorCode::ExtensionConcurrencyExceeded);
        }
        let entry = match self.tenants.get_mut(tenant) {
            Some(entry) => entry,
            None => self.tenants.entry(tenant.to_string()).or_default(),
        };
        entry.total += 1;
        match entry.extensions.get_mut(extension) {
            Some(count) => *count += 1,
            None => {
                entry.extensions.insert(extension.to_string(), 1);
            }
        }
        Ok(())
    }

    /// Count one execution less; forget counters that reach zero.
    fn leave(&mut self, tenant: &str, extension: &str) {
        let Some(entry) = self.tenants.get_mut(tenant) else {
            debug_assert!(false, "leave without enter");
            return;
        };
        entry.total = entry.total.saturating_sub(1);
        if let Some(count) = entry.extensions.get_mut(extension) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                entry.extensions.remove(extension);
            }
        }
        if entry.total == 0 {
            self.tenants.remove(tenant);
        }
    }
}

// ---------------------------------------------------------------------------
// Token buckets.

/// One tenant's bucket: `tokens` as of `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: &RateLimit, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    /// Tokens the bucket holds at `now` (refilled, capped at the burst).
    fn tokens_at(&self, limit: &RateLimit, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst))
    }

    /// Take one token at `now`, or say how long until one is there.
    fn take(&mut self, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let tokens = self.tokens_at(limit, now);
        self.at = self.at.max(now);
        if tokens + TOKEN_EPSILON >= 1.0 {
            self.tokens = (tokens - 1.0).max(0.0);
            Ok(())
        } else {
            self.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / limit.per_second))
        }
    }

    /// A full bucket is the same as no bucket: it can be forgotten.
    fn is_full_at(&self, limit: &RateLimit, now: Instant) -> bool {
        self.tokens_at(limit, now) + TOKEN_EPSILON >= f64::from(limit.burst)
    }
}

/// The in-memory buckets of one process.
#[derive(Debug)]
struct MemoryBuckets {
    buckets: HashMap<String, Bucket>,
    /// When full buckets were last dropped.
    swept: Instant,
}

impl MemoryBuckets {
    fn new(now: Instant) -> MemoryBuckets {
        MemoryBuckets {
            buckets: HashMap::new(),
            swept: now,
        }
    }

    /// Take a token from `tenant`'s bucket at `now`; at most every
    /// [`RATE_LIMIT_SWEEP_INTERVAL`] drop the buckets that are full again,
    /// so the map holds only tenants seen within about the sweep interval
    /// plus one refill time.
    fn take(&mut self, tenant: &str, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        if now.saturating_duration_since(self.swept) >= RATE_LIMIT_SWEEP_INTERVAL {
            self.swept = now;
            self.buckets.retain(|_, bucket| !bucket.is_full_at(limit, now));
        }
        match self.buckets.get_mut(tenant) {
            Some(bucket) => bucket.take(limit, now),
            None => {
                let mut bucket = Bucket::full(limit, now);
                let taken = bucket.take(limit, now);
                self.buckets.insert(tenant.to_string(), bucket);
                taken
            }
        }
    }
}

/// A per-tenant rate limit and where its buckets live: the runner's
/// (`RUNNER_TENANT_RATE_LIMIT`) and the gateway's (`GATEWAY_TENANT_RATE_LIMIT`).
pub struct RateLimiter {
    pub limit: RateLimit,
    store: BucketStore,
}

enum BucketStore {
    Memory(Mutex<MemoryBuckets>),
    /// Boxed: the client and connection are much larger than the map.
    Redis(Box<RedisBuckets>),
}

impl RateLimiter {
    pub fn memory(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            store: BucketStore::Memory(Mutex::new(MemoryBuckets::new(Instant::now()))),
        }
    }

    /// Buckets in the Redis at `url`, under keys `<key_prefix><tenant>`.
    ///
    /// # Errors
    /// An unusable Redis URL.
    pub fn redis(limit: RateLimit, url: &str, key_prefix: &'static str) -> Result<RateLimiter, redis::RedisError> {
        Ok(RateLimiter {
            limit,
            store: BucketStore::Redis(Box::new(RedisBuckets {
                redis: SharedRedis::open(url, "rate limit")?,
                script: redis::Script::new(TOKEN_BUCKET_LUA),
                key_prefix,
            })),
        })
    }

    /// Take a token for `tenant`, or say how long until one is there; a
    /// Redis that does not answer admits (counted in `stats`).
    pub async fn take(&self, tenant: &str, stats: &QuotaStats) -> Result<(), Duration> {
        match &self.store {
            BucketStore::Memory(buckets) => {
                let mut buckets = buckets.lock().unwrap_or_else(|p| p.into_inner());
                // `now` under the lock, so a bucket's time never goes back.
                buckets.take(tenant, &self.limit, Instant::now())
            }
            BucketStore::Redis(redis) => redis.take(tenant, &self.limit, stats).await,
        }
    }
}

/// The token bucket as a Redis script: one round trip, atomic, on Redis's
/// own clock (`TIME`) so runners with skewed clocks share one timeline.
/// `KEYS[1]` = `ext-rl:<tenant>`, `ARGV` = tokens per second, burst.
/// Returns `{1, 0}` when a token was taken, else `{0, µs until one is}`.
/// The key expires once the bucket would be full again (a full bucket and no
/// bucket are the same), so idle tenants leave nothing behind.
const TOKEN_BUCKET_LUA: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
elseif now > at then
  tokens = tokens + (now - at) * rate / 1000000
end
if tokens > burst then tokens = burst end
if now < (at or now) then now = at end
local allowed = 0
local wait = 0
if tokens + 1e-9 >= 1 then
  tokens = math.max(tokens - 1, 0)
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((burst - tokens) * 1000 / rate) + 1000))
return {allowed, wait}
";

/// Buckets shared by a fleet through Redis.
struct RedisBuckets {
    redis: SharedRedis,
    script: redis::Script,
    key_prefix: &'static str,
}

impl RedisBuckets {
    async fn take(&self, tenant: &str, limit: &RateLimit, stats: &QuotaStats) -> Result<(), Duration> {
        let mut invocation = self.script.key(format!("{}{tenant}", self.key_prefix));
        invocation.arg(limit.per_second).arg(limit.burst);
        match self.redis.invoke::<(u8, u64)>(invocation).await {
            Some((1, _)) => Ok(()),
            Some((_, wait_us)) => Err(Duration::from_micros(wait_us)),
            None => {
                stats.rate_limit_fail_open.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CONCURRENCY_RETRY_AFTER_SECS;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rate_limit_parse_table() {
        let ok = [
            ("off", None),
            ("OFF", None),
            ("10", Some(limit(10.0, 10))),
            ("10:50", Some(limit(10.0, 50))),
            ("0.5:3", Some(limit(0.5, 3))),
            ("0.5", Some(limit(0.5, 1))),
            ("2.5", Some(limit(2.5, 3))),
            (" 4 : 8 ", Some(limit(4.0, 8))),
        ];
        for (text, want) in ok {
            assert_eq!(RateLimit::parse(text), Ok(want), "{text}");
        }
        let bad = [
            ("", "must be `off` or"),
            ("fast", "must be `off` or"),
            ("0", "between 0.001 and"),
            ("-1", "between 0.001 and"),
            ("0.0001", "between 0.001 and"),
            ("NaN", "between 0.001 and"),
            ("inf", "between 0.001 and"),
            ("2000000", "between 0.001 and"),
            ("10:0", "burst must be"),
            ("10:x", "burst must be"),
            ("10:1.5", "burst must be"),
            ("10:2000000", "burst must be"),
        ];
        for (text, needle) in bad {
            let err = RateLimit::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    fn load(pairs: &[(&str, &str)]) -> Result<crate::Config, crate::config::ConfigError> {
        let mut env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.insert("RUNNER_SERVICE_TOKEN".into(), "a-long-enough-token".into());
        crate::Config::load(&env, &crate::config::Overrides::default())
    }

    #[test]
    fn config_defaults_and_values() {
        let config = load(&[]).unwrap();
        assert_eq!(
            config.quota.tenant_max_concurrency,
            crate::limits::DEFAULT_TENANT_MAX_CONCURRENCY
        );
        assert_eq!(
            config.quota.extension_max_concurrency,
            crate::limits::DEFAULT_EXTENSION_MAX_CONCURRENCY
        );
        assert_eq!(config.quota.tenant_rate_limit, None);
        assert_eq!(config.quota.redis_url, None);

        let config = load(&[
            ("RUNNER_TENANT_MAX_CONCURRENCY", "4"),
            ("RUNNER_EXTENSION_MAX_CONCURRENCY", "2"),
            ("RUNNER_TENANT_RATE_LIMIT", "20:40"),
            ("RUNNER_RATE_LIMIT_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0"),
        ])
        .unwrap();
        assert_eq!(config.quota.tenant_max_concurrency, 4);
        assert_eq!(config.quota.extension_max_concurrency, 2);
        assert_eq!(config.quota.tenant_rate_limit, Some(limit(20.0, 40)));
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn config_problems_are_reported_at_once() {
        let err = load(&[
            ("RUNNER_TENANT_MAX_CONCURRENCY", "0"),
            ("RUNNER_EXTENSION_MAX_CONCURRENCY", "many"),
            ("RUNNER_TENANT_RATE_LIMIT", "10:0"),
            ("RUNNER_RATE_LIMIT_REDIS_URL", "rediss://cache:6380"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "RUNNER_TENANT_MAX_CONCURRENCY: `0`",
            "RUNNER_EXTENSION_MAX_CONCURRENCY: `many`",
            "RUNNER_TENANT_RATE_LIMIT: `10:0`: the burst",
            "RUNNER_RATE_LIMIT_REDIS_URL: `rediss://cache:6380`: TLS",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.problems.len(), 4, "{text}");

        // A Redis URL with nothing to share is a mistake; an explicit `off` is not.
        let err = load(&[("RUNNER_RATE_LIMIT_REDIS_URL", "redis://127.0.0.1")]).unwrap_err();
        assert!(err.to_string().contains("nothing to share"), "{err}");
        assert!(
            load(&[
                ("RUNNER_RATE_LIMIT_REDIS_URL", "redis://127.0.0.1"),
                ("RUNNER_TENANT_RATE_LIMIT", "off")
            ])
            .is_ok()
        );
    }

    #[test]
    fn redis_urls() {
        assert!(check_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_redis_url("redis://:secret@10.0.0.1:6379/2").is_ok());
        assert!(check_redis_url("rediss://host:6379").unwrap_err().contains("TLS"));
        assert!(check_redis_url("http://host").unwrap_err().contains("not a Redis URL"));
    }

    #[test]
    fn bucket_burst_then_refill() {
        let l = limit(2.0, 3);
        let t0 = Instant::now();
        let mut b = Bucket::full(&l, t0);
        for _ in 0..3 {
            assert_eq!(b.take(&l, t0), Ok(()));
        }
        // Empty: the next token is 1/rate away.
        assert_eq!(b.take(&l, t0), Err(ms(500)));
        // A refused take spends nothing: the wait shrinks as time passes.
        assert_eq!(b.take(&l, t0 + ms(250)), Err(ms(250)));
        assert_eq!(b.take(&l, t0 + ms(500)), Ok(()));
        assert_eq!(b.take(&l, t0 + ms(500)), Err(ms(500)));
        // Long idle: refilled to the burst, never beyond.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.is_full_at(&l, later));
        for _ in 0..3 {
            assert_eq!(b.take(&l, later), Ok(()));
        }
        assert!(b.take(&l, later).is_err());
    }

    #[test]
    fn bucket_sustained_rate_is_bounded() {
        // Ask 100 times per second for 10 s at 4/s with burst 2: exactly
        // burst + rate * time requests pass.
        let l = limit(4.0, 2);
        let t0 = Instant::now();
        let mut b = Bucket::full(&l, t0);
        let passed = (0..=1000u64).filter(|i| b.take(&l, t0 + ms(i * 10)).is_ok()).count();
        assert_eq!(passed, 2 + 4 * 10);
    }

    #[test]
    fn bucket_time_going_back_is_harmless() {
        let l = limit(1.0, 1);
        let t0 = Instant::now();
        let mut b = Bucket::full(&l, t0 + ms(1000));
        assert_eq!(b.take(&l, t0 + ms(1000)), Ok(()));
        // An earlier `now` neither refills nor moves the bucket's clock back.
        assert_eq!(b.take(&l, t0), Err(ms(1000)));
        assert_eq!(b.take(&l, t0 + ms(2000)), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up() {
        for (wait, secs) in [(ms(0), 1), (ms(1), 1), (ms(1000), 1), (ms(1001), 2), (ms(2500), 3)] {
            assert_eq!(retry_after_secs(wait), secs, "{wait:?}");
        }
        assert_eq!(retry_after_secs(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn memory_buckets_are_per_tenant_and_idle_ones_are_swept() {
        let l = limit(1.0, 2);
        let t0 = Instant::now();
        let mut buckets = MemoryBuckets::new(t0);
        assert!(buckets.take("a", &l, t0).is_ok());
        assert!(buckets.take("a", &l, t0).is_ok());
        assert_eq!(buckets.take("a", &l, t0), Err(ms(1000)));
        // Another tenant has its own budget.
        assert!(buckets.take("b", &l, t0).is_ok());
        for i in 0..1000 {
            assert!(buckets.take(&format!("t{i}"), &l, t0).is_ok());
        }
        assert_eq!(buckets.buckets.len(), 1002);
        // Before the sweep interval nothing is dropped.
        let _ = buckets.take("a", &l, t0 + RATE_LIMIT_SWEEP_INTERVAL - ms(1));
        assert_eq!(buckets.buckets.len(), 1002);
        // After it, every bucket that has refilled is forgotten; `a` was
        // just used and stays.
        let _ = buckets.take("a", &l, t0 + RATE_LIMIT_SWEEP_INTERVAL);
        assert_eq!(buckets.buckets.len(), 1);
        assert!(buckets.buckets.contains_key("a"));
        // A forgotten tenant comes back with a full bucket.
        let now = t0 + RATE_LIMIT_SWEEP_INTERVAL;
        assert!(buckets.take("b", &l, now).is_ok());
        assert!(buckets.take("b", &l, now).is_ok());
        assert!(buckets.take("b", &l, now).is_err());
    }

    #[test]
    fn in_flight_caps_and_release() {
        let mut f = InFlight::default();
        // Tenant cap 3, extension cap 2.
        assert_eq!(f.enter("t", "x", 3, 2), Ok(()));
        assert_eq!(f.enter("t", "x", 3, 2), Ok(()));
        assert_eq!(f.enter("t", "x", 3, 2), Err(ErrorCode::ExtensionConcurrencyExceeded));
        assert_eq!(f.enter("t", "y", 3, 2), Ok(()));
        assert_eq!(f.enter("t", "z", 3, 2), Err(ErrorCode::TenantConcurrencyExceeded));
        // Other tenants are untouched by `t`'s load.
        assert_eq!(f.enter("u", "x", 3, 2), Ok(()));
        assert_eq!(f.tenants["t"].total, 3);
        f.leave("t", "x");
        assert_eq!(f.enter("t", "z", 3, 2), Ok(()));
        for (tenant, extension) in [("t", "x"), ("t", "y"), ("t", "z"), ("u", "x")] {
            f.leave(tenant, extension);
        }
        // Nothing in flight: nothing kept.
        assert!(f.tenants.is_empty(), "{f:?}");
    }

    fn quotas(tenant_cap: u32, extension_cap: u32, rate: Option<&str>) -> Quotas {
        let mut config = crate::Config::for_dir(std::path::Path::new("/tmp/ext-runner-quota-test"));
        config.quota.tenant_max_concurrency = tenant_cap;
        config.quota.extension_max_concurrency = extension_cap;
        config.quota.tenant_rate_limit = rate.map(|r| RateLimit::parse(r).unwrap().unwrap());
        Quotas::new(&config.quota).unwrap()
    }

    #[tokio::test]
    async fn permits_release_on_drop() {
        let q = quotas(2, 2, None);
        let a = q.admit("t", "x").await.unwrap();
        let b = q.admit("t", "y").await.unwrap();
        let err = q.admit("t", "z").await.err().unwrap();
        assert_eq!(err.code, ErrorCode::TenantConcurrencyExceeded);
        assert_eq!(err.code.retry_after(), Some(CONCURRENCY_RETRY_AFTER_SECS));
        assert_eq!(q.in_flight("t"), 2);
        drop(a);
        assert_eq!(q.in_flight("t"), 1);
        drop(b);
        assert_eq!(q.tenants_in_flight(), 0);
        assert_eq!(q.stats().tenant_concurrency_rejections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn rate_limited_request_releases_its_slot() {
        let q = quotas(4, 4, Some("0.001:1"));
        let held = q.admit("t", "x").await.unwrap();
        let err = q.admit("t", "x").await.err().unwrap();
        // 1 token per 1000 s: the wait is about that long.
        match err.code {
            ErrorCode::RateLimited { retry_after_secs } => assert!((999..=1000).contains(&retry_after_secs)),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.in_flight("t"), 1, "the refused request holds nothing");
        drop(held);
        assert_eq!(q.buckets_held(), 1);
        assert_eq!(q.stats().rate_limited.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn unreachable_redis_fails_open_and_pauses() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = crate::Config::for_dir(std::path::Path::new("/tmp/ext-runner-quota-test"));
        config.quota.tenant_rate_limit = Some(limit(0.001, 1));
        config.quota.redis_url = Some(format!("redis://127.0.0.1:{port}"));
        let q = Quotas::new(&config.quota).unwrap();
        // Far more than the limit passes: nobody can say no.
        for _ in 0..5 {
            drop(q.admit("t", "x").await.unwrap());
        }
        assert_eq!(q.stats().rate_limit_fail_open.load(Ordering::Relaxed), 5);
        // Only the first request tried Redis; the rest skipped it.
        let BucketStore::Redis(redis) = &q.rate.as_ref().unwrap().store else {
            panic!("not the Redis store")
        };
        assert!(redis.redis.paused_until.lock().unwrap().is_some());
    }
}
