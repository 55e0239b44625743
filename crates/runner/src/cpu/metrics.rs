//! The fair share's and the CPU budget's gauges, read when scraped.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::GuestCpu;
use super::fair::FairShare;
use crate::metrics::{Gauges, Scraped};
use crate::quota::cpu_budget::CpuBudget;

const REFUSALS: Scraped = Scraped {
    name: "ext_runner_cpu_refusals",
    help: "Executions refused with tenant_cpu_exceeded since start-up: budget (RUNNER_TENANT_CPU_MS_PER_SEC) or start_queue (RUNNER_TENANT_CPU_QUEUE).",
};
const PREEMPTIONS: Scraped = Scraped {
    name: "ext_runner_cpu_preemptions",
    help: "Times running slices were ended early for a tenant next in line.",
};
const BUDGET_FAIL_OPEN: Scraped = Scraped {
    name: "ext_runner_cpu_budget_fail_open",
    help: "Admissions decided on the local CPU budget because Redis did not answer.",
};
const TENANTS_ACTIVE: Scraped = Scraped {
    name: "ext_runner_cpu_tenants_active",
    help: "Tenants with executions in the fair share now.",
};
const SLICES_FREE: Scraped = Scraped {
    name: "ext_runner_cpu_slices_free",
    help: "CPU slices (RUNNER_GUEST_THREADS) nobody holds now.",
};

/// The fair share and the budget, shared with [`GuestCpu`].
pub struct CpuGauges {
    share: Arc<FairShare>,
    budget: Option<Arc<CpuBudget>>,
}

impl std::fmt::Debug for CpuGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuGauges").finish_non_exhaustive()
    }
}

impl GuestCpu {
    /// The [`Collector`] of the fair share's and the budget's gauges.
    pub fn gauges(&self) -> CpuGauges {
        CpuGauges {
            share: self.share.clone(),
            budget: self.budget.clone(),
        }
    }
}

impl Gauges for CpuGauges {
    const FAMILIES: &'static [Scraped] = &[REFUSALS, PREEMPTIONS, BUDGET_FAIL_OPEN, TENANTS_ACTIVE, SLICES_FREE];
}

impl Collector for CpuGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let budget = self.budget.as_deref();
        let refused = [
            ("budget", budget.map_or(0, CpuBudget::refused)),
            ("start_queue", self.share.refused.load(Ordering::Relaxed)),
        ];
        REFUSALS.encode_each(&mut encoder, refused.map(|(reason, n)| ([("reason", reason)], n)))?;
        PREEMPTIONS.encode(&mut encoder, self.share.preemptions.load(Ordering::Relaxed))?;
        let fail_open = budget.map_or(0, |b| b.fail_open.load(Ordering::Relaxed));
        BUDGET_FAIL_OPEN.encode(&mut encoder, fail_open)?;
        let (tenants, free) = self.share.snapshot();
        TENANTS_ACTIVE.encode(&mut encoder, tenants as u64)?;
        SLICES_FREE.encode(&mut encoder, free as u64)
    }
}
