//! The quota settings: concurrency caps, the tenant rate limit, the CPU
//! budget and the Redis both buckets may share.

use super::RateLimit;
use super::cpu_budget::CpuLimit;
use crate::config::source::Source;
use crate::limits;

/// What `Quotas` and the CPU budget enforce.
#[derive(Clone)]
pub struct QuotaSettings {
    /// `RUNNER_TENANT_MAX_CONCURRENCY`: executions one tenant may have in flight.
    pub tenant_max_concurrency: u32,
    /// `RUNNER_EXTENSION_MAX_CONCURRENCY`: executions one (tenant, extension)
    /// may have in flight.
    pub extension_max_concurrency: u32,
    /// `RUNNER_TENANT_RATE_LIMIT`: token bucket per tenant; `None` is off.
    pub tenant_rate_limit: Option<RateLimit>,
    /// `RUNNER_TENANT_CPU_MS_PER_SEC`: CPU budget per tenant; `None` is off.
    pub tenant_cpu_budget: Option<CpuLimit>,
    /// `RUNNER_RATE_LIMIT_REDIS_URL`: keep the rate-limit buckets and CPU
    /// budgets in Redis, shared by every runner pointing there (may hold a
    /// password: redacted in `Debug`).
    pub redis_url: Option<String>,
}

impl QuotaSettings {
    pub fn from_source(source: &Source) -> QuotaSettings {
        let concurrency = |key, default: u32| source.number(key, u64::from(default), 1..=10_000) as u32;
        let tenant_rate_limit = source.parsed(
            "RUNNER_TENANT_RATE_LIMIT",
            limits::DEFAULT_TENANT_RATE_LIMIT,
            RateLimit::parse,
            None,
        );
        let tenant_cpu_budget = source.parsed("RUNNER_TENANT_CPU_MS_PER_SEC", "off", CpuLimit::parse, None);
        let rate_set = source.text("RUNNER_TENANT_RATE_LIMIT").is_some();
        let budget_set = source.text("RUNNER_TENANT_CPU_MS_PER_SEC").is_some();
        let redis_url = source.text("RUNNER_RATE_LIMIT_REDIS_URL").map(|url| {
            if let Err(why) = super::check_redis_url(url) {
                source.problem(format!("RUNNER_RATE_LIMIT_REDIS_URL: {why}"));
            } else if tenant_rate_limit.is_none() && !rate_set && !budget_set {
                source.problem(
                    "RUNNER_RATE_LIMIT_REDIS_URL: set, but neither RUNNER_TENANT_RATE_LIMIT nor RUNNER_TENANT_CPU_MS_PER_SEC is (nothing to share)",
                );
            }
            url.to_string()
        });
        QuotaSettings {
            tenant_max_concurrency: concurrency(
                "RUNNER_TENANT_MAX_CONCURRENCY",
                limits::DEFAULT_TENANT_MAX_CONCURRENCY,
            ),
            extension_max_concurrency: concurrency(
                "RUNNER_EXTENSION_MAX_CONCURRENCY",
                limits::DEFAULT_EXTENSION_MAX_CONCURRENCY,
            ),
            tenant_rate_limit,
            tenant_cpu_budget,
            redis_url,
        }
    }
}

impl std::fmt::Debug for QuotaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaSettings")
            .field("tenant_max_concurrency", &self.tenant_max_concurrency)
            .field("extension_max_concurrency", &self.extension_max_concurrency)
            .field("tenant_rate_limit", &self.tenant_rate_limit)
            .field("tenant_cpu_budget", &self.tenant_cpu_budget)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}
