//! The quotas' gauges, read when scraped: refusals by reason and rate-limit
//! decisions taken without Redis.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::{QuotaStats, Quotas};
use crate::metrics::{Gauges, Scraped};

const REJECTIONS: Scraped = Scraped {
    name: "ext_runner_quota_rejections",
    help: "Requests refused by a tenant quota since start-up, by reason.",
};
const RATE_LIMIT_FAIL_OPEN: Scraped = Scraped {
    name: "ext_runner_rate_limit_fail_open",
    help: "Requests admitted without a rate-limit decision because Redis did not answer.",
};

impl Quotas {
    /// The [`Collector`] of the quotas' gauges: their counters, shared.
    pub fn gauges(&self) -> Arc<QuotaStats> {
        self.stats.clone()
    }
}

impl Gauges for Arc<QuotaStats> {
    const FAMILIES: &'static [Scraped] = &[REJECTIONS, RATE_LIMIT_FAIL_OPEN];
}

impl Collector for QuotaStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let rejections = [
            ("tenant_concurrency", &self.tenant_concurrency_rejections),
            ("extension_concurrency", &self.extension_concurrency_rejections),
            ("rate_limited", &self.rate_limited),
        ];
        let series = rejections.map(|(reason, n)| ([("reason", reason)], n.load(Ordering::Relaxed)));
        REJECTIONS.encode_each(&mut encoder, series)?;
        RATE_LIMIT_FAIL_OPEN.encode(&mut encoder, self.rate_limit_fail_open.load(Ordering::Relaxed))
    }
}
