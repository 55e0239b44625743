//! Per-tenant CPU budgets over time (`RUNNER_TENANT_CPU_MS_PER_SEC`).
//!
//! A bucket of CPU milliseconds per tenant refills at the budget's rate up
//! to its burst. Every slice a guest runs is charged to its tenant's bucket
//! as it happens; an execution is admitted only while the bucket holds CPU
//! time, otherwise it is refused with 429 `tenant_cpu_exceeded` and a
//! `Retry-After` that says when the bucket is positive again. Executions
//! already running finish under their own deadline (the fair share still
//! slows them when others compete); the debt they leave is capped at one
//! burst, so an overrun keeps a tenant out for at most about two bursts'
//! time.
//!
//! With `RUNNER_RATE_LIMIT_REDIS_URL` the buckets live in Redis and a fleet
//! of runners shares one budget per tenant: each runner charges locally and
//! sends what it charged, at most every [`CPU_BUDGET_SYNC_INTERVAL`] per
//! tenant (on admission), getting the fleet's balance back. A runner thus
//! acts on a balance at most one interval old plus its own charges since.
//! When Redis does not answer, the local balance decides (fail open).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::shared_redis::SharedRedis;
use crate::limits::{CPU_BUDGET_SYNC_INTERVAL, MAX_CPU_BUDGET_MS_PER_SECOND, RATE_LIMIT_SWEEP_INTERVAL};

/// Prefix of the Redis keys holding the shared budgets: `ext-cpu:<tenant id>`.
pub const REDIS_KEY_PREFIX: &str = "ext-cpu:";

/// A CPU budget: `ms_per_second` of CPU flow in, at most `burst_ms` are kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuLimit {
    pub ms_per_second: f64,
    pub burst_ms: f64,
}

impl CpuLimit {
    /// Parse `<ms per second>[:<burst ms>]` (`500`, `250:2000`); `off` means
    /// no budget. Without a burst the bucket holds one second's worth.
    ///
    /// # Errors
    /// A message saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<Option<CpuLimit>, String> {
        let text = text.trim();
        let Some((ms_per_second, burst)) =
            super::rate_and_burst(text, "`<CPU ms per second>[:<burst ms>]`, e.g. `500` or `250:2000`")?
        else {
            return Ok(None);
        };
        if !(1.0..=MAX_CPU_BUDGET_MS_PER_SECOND).contains(&ms_per_second) {
            return Err(format!(
                "`{text}`: the budget must be between 1 and {MAX_CPU_BUDGET_MS_PER_SECOND} CPU ms per second"
            ));
        }
        let burst_ms = match burst {
            None => ms_per_second,
            Some(burst) => match burst.parse::<f64>() {
                Ok(b) if (1.0..=3_600_000.0).contains(&b) => b,
                _ => return Err(format!("`{text}`: the burst must be between 1 and 3600000 ms")),
            },
        };
        Ok(Some(CpuLimit {
            ms_per_second,
            burst_ms,
        }))
    }
}

impl std::fmt::Display for CpuLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} CPU ms/s (burst {} ms)", self.ms_per_second, self.burst_ms)
    }
}

/// One tenant's bucket as this runner sees it.
#[derive(Clone, Copy, Debug)]
struct Balance {
    /// CPU ms left as of `at` (negative: in debt).
    ms: f64,
    at: Instant,
    /// Charged here and not yet sent to Redis.
    unsynced_ms: f64,
    /// When Redis last answered for this tenant.
    synced: Option<Instant>,
}

impl Balance {
    fn full(limit: &CpuLimit, now: Instant) -> Balance {
        Balance {
            ms: limit.burst_ms,
            at: now,
            unsynced_ms: 0.0,
            synced: None,
        }
    }

    fn ms_at(&self, limit: &CpuLimit, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.ms + elapsed * limit.ms_per_second).min(limit.burst_ms)
    }
}

/// The tenants' CPU budgets. One per runner, shared with the guest threads.
pub struct CpuBudget {
    limit: CpuLimit,
    balances: Mutex<Balances>,
    /// `Some` with `RUNNER_RATE_LIMIT_REDIS_URL`.
    redis: Option<SharedRedis>,
    script: redis::Script,
    refused: AtomicU64,
    /// Admissions decided on the local balance because Redis did not answer.
    pub fail_open: AtomicU64,
}

struct Balances {
    tenants: HashMap<String, Balance>,
    /// When full, synced buckets were last dropped.
    swept: Instant,
}

impl CpuBudget {
    /// # Errors
    /// An unusable Redis URL (already refused by `Config::load`).
    pub fn new(limit: CpuLimit, redis_url: Option<&str>) -> Result<CpuBudget, redis::RedisError> {
        Ok(CpuBudget {
            limit,
            balances: Mutex::new(Balances {
                tenants: HashMap::new(),
                swept: Instant::now(),
            }),
            redis: redis_url.map(|url| SharedRedis::open(url, "CPU budget")).transpose()?,
            script: redis::Script::new(CPU_BUDGET_LUA),
            refused: AtomicU64::new(0),
            fail_open: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> CpuLimit {
        self.limit
    }

    /// Executions refused since start-up.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// May `tenant` start an execution? If not, how long until it may.
    ///
    /// # Errors
    /// The wait until the tenant's bucket holds CPU time again.
    pub async fn check(&self, tenant: &str) -> Result<(), Duration> {
        if let Some(redis) = &self.redis {
            self.sync(redis, tenant).await;
        }
        let now = Instant::now();
        let ms = {
            let mut balances = self.lock();
            balances.sweep(&self.limit, now);
            balances
                .tenants
                .get(tenant)
                .map_or(self.limit.burst_ms, |b| b.ms_at(&self.limit, now))
        };
        if ms > 0.0 {
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        // Rounded up by a millisecond so the bucket is positive by then.
        Err(Duration::from_secs_f64((1.0 - ms) / self.limit.ms_per_second))
    }

    /// Charge `used` CPU time to `tenant` (called after every slice).
    pub fn charge(&self, tenant: &str, used: Duration) {
        let used_ms = used.as_secs_f64() * 1000.0;
        let now = Instant::now();
        let mut balances = self.lock();
        let balance = match balances.tenants.get_mut(tenant) {
            Some(balance) => balance,
            None => balances
                .tenants
                .entry(tenant.to_string())
                .or_insert_with(|| Balance::full(&self.limit, now)),
        };
        balance.ms = (balance.ms_at(&self.limit, now) - used_ms).max(-self.limit.burst_ms);
        balance.at = now;
        if self.redis.is_some() {
            balance.unsynced_ms += used_ms;
        }
    }

    /// Send this runner's charges for `tenant` and take the fleet's balance,
    /// at most every [`CPU_BUDGET_SYNC_INTERVAL`].
    async fn sync(&self, redis: &SharedRedis, tenant: &str) {
        let now = Instant::now();
        let unsynced = {
            let mut balances = self.lock();
            let balance = balances
                .tenants
                .entry(tenant.to_string())
                .or_insert_with(|| Balance::full(&self.limit, now));
            if balance
                .synced
                .is_some_and(|at| now.saturating_duration_since(at) < CPU_BUDGET_SYNC_INTERVAL)
            {
                return;
            }
            // Marked now, so concurrent admissions do not all go to Redis.
            balance.synced = Some(now);
            std::mem::take(&mut balance.unsynced_ms)
        };
        let mut invocation = self.script.key(format!("{REDIS_KEY_PREFIX}{tenant}"));
        invocation
            .arg(self.limit.ms_per_second)
            .arg(self.limit.burst_ms)
            .arg(unsynced);
        let answer: Option<f64> = redis.invoke(invocation).await;
        let mut balances = self.lock();
        let Some(balance) = balances.tenants.get_mut(tenant) else {
            return;
        };
        match answer {
            // Charges made while the call was out are still unsynced and
            // already in the local balance: keep them on top of the fleet's.
            Some(fleet_ms) => {
                balance.ms = (fleet_ms - balance.unsynced_ms).max(-self.limit.burst_ms);
                balance.at = Instant::now();
            }
            None => {
                balance.unsynced_ms += unsynced;
                self.fail_open.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Balances> {
        self.balances.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Balances {
    /// At most every [`RATE_LIMIT_SWEEP_INTERVAL`], drop the buckets that are
    /// full again with nothing left to send: the same as no bucket.
    fn sweep(&mut self, limit: &CpuLimit, now: Instant) {
        if now.saturating_duration_since(self.swept) < RATE_LIMIT_SWEEP_INTERVAL {
            return;
        }
        self.swept = now;
        self.tenants
            .retain(|_, b| b.unsynced_ms > 0.0 || b.ms_at(limit, now) < limit.burst_ms);
    }
}

/// The CPU bucket as a Redis script, on Redis's own clock: refill, charge
/// `ARGV[3]` ms, cap the debt at one burst, return the balance in ms.
/// `KEYS[1]` = `ext-cpu:<tenant>`, `ARGV` = ms per second, burst ms, used ms.
/// The key expires once the bucket would be full again.
const CPU_BUDGET_LUA: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local used = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local state = redis.call('HMGET', KEYS[1], 'ms', 'at')
local ms = tonumber(state[1])
local at = tonumber(state[2])
if ms == nil or at == nil then
  ms = burst
elseif now > at then
  ms = ms + (now - at) * rate / 1000000
end
if ms > burst then ms = burst end
if now < (at or now) then now = at end
ms = ms - used
if ms < -burst then ms = -burst end
redis.call('HSET', KEYS[1], 'ms', string.format('%.17g', ms), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((burst - ms) * 1000 / rate) + 1000))
return string.format('%.17g', ms)
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok = [
            ("off", None),
            ("500", Some((500.0, 500.0))),
            ("250:2000", Some((250.0, 2000.0))),
        ];
        for (text, want) in ok {
            let got = CpuLimit::parse(text).unwrap().map(|l| (l.ms_per_second, l.burst_ms));
            assert_eq!(got, want, "{text}");
        }
        for (text, needle) in [
            ("fast", "must be `off` or"),
            ("0", "between 1 and"),
            ("NaN", "between 1 and"),
            ("100:0", "burst must be"),
            ("100:x", "burst must be"),
        ] {
            let err = CpuLimit::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[tokio::test]
    async fn a_tenant_over_its_budget_is_refused_until_it_refills_and_others_are_not() {
        let budget = CpuBudget::new(CpuLimit::parse("100:50").unwrap().unwrap(), None).unwrap();
        assert!(budget.check("a").await.is_ok());
        budget.charge("a", Duration::from_millis(30));
        assert!(budget.check("a").await.is_ok(), "20 ms left");
        budget.charge("a", Duration::from_millis(500));
        // The debt is capped at one burst (-50 ms): back in about 0.5 s.
        let wait = budget.check("a").await.unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(520),
            "{wait:?}"
        );
        assert!(budget.check("b").await.is_ok(), "budgets are per tenant");
        assert_eq!(budget.refused(), 1);
    }
}
