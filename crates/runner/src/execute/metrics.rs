//! The execute pipeline's series: the families [`ExecuteMetrics::record`]
//! feeds once per execution, and the values read when scraped (executions
//! in flight, dropped response headers).
//!
//! An execution's tenant and extension are copied once into shared strings
//! ([`TenantExtension`]); every family's labels then borrow or clone those
//! (a reference count), and the other labels are `&'static str`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Semaphore;

use crate::engine::ExecutionReport;
use crate::metrics::{Buckets, Capped, DURATION_BUCKETS, Gauges, Labels, MEMORY_BUCKETS, Metrics, OVERFLOW, Scraped};

/// `tenant`, `extension` (the bundle's ids, or [`crate::metrics::UNRESOLVED`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TenantExtension {
    pub tenant: Arc<str>,
    pub extension: Arc<str>,
}

impl Labels for TenantExtension {
    fn overflow() -> Self {
        TenantExtension {
            tenant: OVERFLOW.into(),
            extension: OVERFLOW.into(),
        }
    }
}

/// [`TenantExtension`] and `outcome` (`ok` or the error code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    pub tenant: Arc<str>,
    pub extension: Arc<str>,
    pub outcome: &'static str,
}

impl Labels for Outcome {
    fn overflow() -> Self {
        Outcome {
            tenant: OVERFLOW.into(),
            extension: OVERFLOW.into(),
            outcome: OVERFLOW,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Tenant {
    pub tenant: Arc<str>,
}

impl Labels for Tenant {
    fn overflow() -> Self {
        Tenant {
            tenant: OVERFLOW.into(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Code {
    pub code: &'static str,
}

impl Labels for Code {
    fn overflow() -> Self {
        Code { code: OVERFLOW }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Interface {
    pub interface: &'static str,
}

impl Labels for Interface {
    fn overflow() -> Self {
        Interface { interface: OVERFLOW }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Limit {
    pub limit: &'static str,
}

impl Labels for Limit {
    fn overflow() -> Self {
        Limit { limit: OVERFLOW }
    }
}

/// The families each execution's outcome and usage go to.
pub(crate) struct ExecuteMetrics {
    pub invocations: Capped<Outcome, Counter>,
    pub duration: Capped<TenantExtension, Histogram, Buckets>,
    pub errors: Capped<Code, Counter>,
    pub peak_memory: Capped<TenantExtension, Histogram, Buckets>,
    pub cpu_seconds: Capped<TenantExtension, Counter<f64, AtomicU64>>,
    pub cpu_wait: Capped<Tenant, Histogram, Buckets>,
    pub fuel: Capped<TenantExtension, Counter>,
    pub egress_bytes: Capped<TenantExtension, Counter>,
    pub host_calls: Capped<Interface, Counter>,
    pub limit_hits: Capped<Limit, Counter>,
}

impl ExecuteMetrics {
    /// Register the families in `m` (one set per registry: call once).
    pub fn register(m: &Metrics) -> ExecuteMetrics {
        ExecuteMetrics {
            invocations: m.counters(
                "ext_runner_invocations",
                "Executions by tenant, extension and outcome (`ok` or the error code).",
            ),
            duration: m.histograms(
                "ext_runner_invocation_duration_seconds",
                "Execute latency in the runner: bundle, compile (when cold), queueing and the guest.",
                DURATION_BUCKETS,
            ),
            errors: m.counters("ext_runner_errors", "Failed executions by error code."),
            peak_memory: m.histograms(
                "ext_runner_guest_peak_memory_bytes",
                "Largest linear memory granted to a guest, per execution.",
                MEMORY_BUCKETS,
            ),
            cpu_seconds: m.counters(
                "ext_runner_cpu_seconds",
                "Thread CPU time spent running guests (cpu/scheduled.rs).",
            ),
            cpu_wait: m.histograms(
                "ext_runner_cpu_wait_seconds",
                "Time a guest was ready to run but waited for a CPU slice, per execution.",
                DURATION_BUCKETS,
            ),
            fuel: m.counters("ext_runner_fuel_consumed", "Wasmtime fuel consumed by guests."),
            egress_bytes: m.counters(
                "ext_runner_guest_egress_bytes",
                "Bytes sent and received through http.fetch.",
            ),
            host_calls: m.counters("ext_runner_host_calls", "Host calls made by guests, by interface."),
            limit_hits: m.counters("ext_runner_limit_hits", "Executions stopped by a limit."),
        }
    }

    /// One execution's outcome and usage: `ids` are the bundle's (or
    /// [`crate::metrics::UNRESOLVED`]), `outcome` is `ok` or the error code,
    /// `report` is there when a guest ran.
    pub fn record(
        &self,
        ids: &TenantExtension,
        outcome: Result<(), &'static str>,
        report: Option<&ExecutionReport>,
        elapsed: Duration,
    ) {
        let invocation = Outcome {
            tenant: ids.tenant.clone(),
            extension: ids.extension.clone(),
            outcome: outcome.err().unwrap_or("ok"),
        };
        self.invocations.get_or_create(&invocation).inc();
        self.duration.get_or_create(ids).observe(elapsed.as_secs_f64());
        if let Err(code) = outcome {
            self.errors.get_or_create(&Code { code }).inc();
        }
        let Some(report) = report else { return };
        self.peak_memory
            .get_or_create(ids)
            .observe(report.peak_memory_bytes as f64);
        self.cpu_seconds.get_or_create(ids).inc_by(report.cpu_ms / 1000.0);
        let tenant = Tenant {
            tenant: ids.tenant.clone(),
        };
        self.cpu_wait
            .get_or_create(&tenant)
            .observe(report.cpu_wait_ms / 1000.0);
        self.fuel.get_or_create(ids).inc_by(report.fuel_used);
        self.egress_bytes.get_or_create(ids).inc_by(report.egress_bytes);
        for (&interface, &calls) in &report.host_calls {
            self.host_calls
                .get_or_create(&Interface { interface })
                .inc_by(u64::from(calls));
        }
        if let Some(limit) = report.limit_hit {
            self.limit_hits.get_or_create(&Limit { limit }).inc();
        }
    }
}

const IN_FLIGHT: Scraped = Scraped {
    name: "ext_runner_executions_in_flight",
    help: "Executions running now.",
};
const HEADERS_DROPPED: Scraped = Scraped {
    name: "ext_runner_response_headers_dropped",
    help: "Guest response headers removed by the allowlist since start-up.",
};

/// The runner's execution slots and dropped-header count, read when
/// scraped.
pub(crate) struct RunnerGauges {
    pub slots: Arc<Semaphore>,
    pub max_concurrency: usize,
    pub headers_dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for RunnerGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerGauges")
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

impl Gauges for RunnerGauges {
    const FAMILIES: &'static [Scraped] = &[IN_FLIGHT, HEADERS_DROPPED];
}

impl Collector for RunnerGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let in_flight = self.max_concurrency.saturating_sub(self.slots.available_permits());
        IN_FLIGHT.encode(&mut encoder, in_flight as u64)?;
        HEADERS_DROPPED.encode(&mut encoder, self.headers_dropped.load(Ordering::Relaxed))
    }
}
