//! The gateway's series: calls by tenant, extension and outcome, their
//! latency per tenant (user token to answer, the runner included), the
//! execution log's rows by what became of them, and rate-limit decisions
//! taken without Redis.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use crate::execute::metrics::{Outcome, Tenant};
use crate::metrics::{Buckets, Capped, DURATION_BUCKETS, Gauges, Labels, Metrics, OVERFLOW, Scraped};
use crate::quota::QuotaStats;

const RATE_LIMIT_FAIL_OPEN: Scraped = Scraped {
    name: "ext_runner_gateway_rate_limit_fail_open",
    help: "Gateway calls admitted without a rate-limit decision because Redis did not answer.",
};

/// The gateway rate limiter's counts, read when scraped.
#[derive(Debug)]
pub struct RateLimitGauges(pub Arc<QuotaStats>);

impl Gauges for RateLimitGauges {
    const FAMILIES: &'static [Scraped] = &[RATE_LIMIT_FAIL_OPEN];
}

impl Collector for RateLimitGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        RATE_LIMIT_FAIL_OPEN.encode(&mut encoder, self.0.rate_limit_fail_open.load(Ordering::Relaxed))
    }
}

/// What became of one execution log row.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Row {
    /// `written`, `dropped` (the queue was full) or `failed` (the write failed).
    result: &'static str,
}

impl Labels for Row {
    fn overflow() -> Self {
        Row { result: OVERFLOW }
    }
}

pub struct GatewayMetrics {
    requests: Capped<Outcome, Counter>,
    duration: Capped<Tenant, Histogram, Buckets>,
    log_rows: Capped<Row, Counter>,
}

impl GatewayMetrics {
    pub fn register(m: &Metrics) -> GatewayMetrics {
        GatewayMetrics {
            requests: m.counters(
                "ext_runner_gateway_requests",
                "Gateway calls by tenant, extension and outcome (`ok` or the error code); `unresolved` before the user is known.",
            ),
            duration: m.histograms(
                "ext_runner_gateway_request_duration_seconds",
                "Gateway call latency per tenant: user token, install lookup, the runner and the answer.",
                DURATION_BUCKETS,
            ),
            log_rows: m.counters(
                "ext_runner_gateway_execution_log_rows",
                "Execution log rows the gateway queued, by result (written, dropped, failed).",
            ),
        }
    }

    /// One call's outcome (`ok` or the error code) and latency.
    pub fn call(&self, tenant: &str, extension: &str, outcome: &'static str, elapsed: Duration) {
        let tenant: Arc<str> = tenant.into();
        self.requests
            .get_or_create(&Outcome {
                tenant: tenant.clone(),
                extension: extension.into(),
                outcome,
            })
            .inc();
        self.duration
            .get_or_create(&Tenant { tenant })
            .observe(elapsed.as_secs_f64());
    }

    pub fn log_rows(&self, result: &'static str, rows: u64) {
        self.log_rows.get_or_create(&Row { result }).inc_by(rows);
    }
}
