//! Guest CPU: where guest code runs and how tenants share it.
//!
//! - `executor`: the guest threads, a runtime apart from the HTTP workers,
//!   so connections, health checks and UI assets do not wait behind guests
//!   (but for a light tenant's first slice, see [`GuestCpu::run`]).
//! - `fair`: the slices of those threads, shared between tenants by
//!   start-time fair queueing (weighted, work-conserving, preempting the
//!   holders for a tenant behind none of them), with a cap on a tenant's
//!   executions waiting to start while others compete.
//! - `scheduled`: the future wrapper that takes a slice before each poll,
//!   measures the poll's thread CPU time, charges it to the tenant's share
//!   and budget, and keeps a yielding execution in line.
//!
//! The tenant CPU budget over time (`RUNNER_TENANT_CPU_MS_PER_SEC`) is a
//! quota and lives with the others in `quota::cpu_budget`.

pub mod executor;
pub mod fair;
pub mod metrics;
pub mod scheduled;
mod settings;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

pub use scheduled::CpuUsage;
pub use settings::{CpuSettings, available_cores};

use crate::error::ErrorCode;
use crate::error::Failure;
use crate::quota::cpu_budget::CpuBudget;

/// The guest threads, their fair share and the tenant CPU budget. One per
/// runner.
pub struct GuestCpu {
    executor: executor::GuestExecutor,
    share: Arc<fair::FairShare>,
    /// `None` when `RUNNER_TENANT_CPU_MS_PER_SEC` is off.
    budget: Option<Arc<CpuBudget>>,
}

impl GuestCpu {
    /// # Errors
    /// The guest threads cannot be started, or the budget's Redis URL is unusable.
    pub fn new(settings: &CpuSettings, quota: &crate::quota::QuotaSettings) -> anyhow::Result<GuestCpu> {
        let threads = settings.guest_threads as usize;
        let budget = match quota.tenant_cpu_budget {
            None => None,
            Some(limit) => Some(Arc::new(CpuBudget::new(limit, quota.redis_url.as_deref())?)),
        };
        Ok(GuestCpu {
            executor: executor::GuestExecutor::start(threads)?,
            share: fair::FairShare::new(
                threads,
                settings.tenant_cpu_weights.clone(),
                settings.tenant_cpu_queue as usize,
            ),
            budget,
        })
    }

    /// Admit one execution of `tenant` to the CPU: its budget has CPU time
    /// left and its start queue has room.
    ///
    /// # Errors
    /// 429 `tenant_cpu_exceeded` with `Retry-After`.
    pub async fn admit(&self, tenant: &str) -> Result<fair::Execution, Failure> {
        if let Some(budget) = &self.budget
            && let Err(wait) = budget.check(tenant).await
        {
            let retry_after_secs = crate::quota::retry_after_secs(wait);
            return Err(Failure::new(
                ErrorCode::TenantCpuExceeded { retry_after_secs },
                format!(
                    "the tenant's CPU budget of {} is used up; retry in {retry_after_secs} s",
                    budget.limit()
                ),
            ));
        }
        self.share.register(tenant).map_err(|full| {
            Failure::new(
                ErrorCode::TenantCpuExceeded { retry_after_secs: 1 },
                format!(
                    "the tenant is over its share of the CPU and already has {} executions waiting to start; retry shortly",
                    full.waiting
                ),
            )
        })
    }

    /// Run `future` under `execution`'s slices. The first slice is waited
    /// for here, so the execution is in line before it moves. A tenant's
    /// only execution (a tenant using little) then runs its first slice
    /// here, on the HTTP worker: most calls finish within it, with no hop
    /// to the guest threads and back; a tenant with several at once, and
    /// anything that outlasts its first slice or waits on I/O, runs on the
    /// guest threads. Dropping this future aborts the guest task.
    pub async fn run<F>(&self, mut execution: fair::Execution, future: F) -> (F::Output, CpuUsage)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let waiting = Instant::now();
        std::future::poll_fn(|cx| execution.poll_slice(cx)).await;
        let inline = execution.is_alone();
        let mut task = scheduled::Scheduled::new(future, execution, self.budget.clone(), waiting.elapsed());
        if inline {
            let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut task).poll(cx))).await;
            if let Poll::Ready(done) = first {
                return done;
            }
        }
        match self.executor.spawn(task).await {
            Ok(done) => done,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => unreachable!("the guest task is aborted only when this future is dropped: {error}"),
        }
    }

    /// End running slices early through `engine`'s epoch, for an execution
    /// that is next in line (`fair`).
    pub fn preempt_with(&self, engine: wasmtime::Engine) {
        self.share.set_preemption(move || engine.increment_epoch());
    }

    /// Where compiles' blocking work runs (the guest threads' priority).
    pub fn compile_handle(&self) -> tokio::runtime::Handle {
        self.executor.handle().clone()
    }

    /// Executions refused because their tenant's budget was used up.
    pub fn budget_refusals(&self) -> u64 {
        self.budget.as_ref().map_or(0, |b| b.refused())
    }

    /// Admissions decided without Redis because it did not answer.
    pub fn budget_fail_open(&self) -> u64 {
        self.budget
            .as_ref()
            .map_or(0, |b| b.fail_open.load(std::sync::atomic::Ordering::Relaxed))
    }
}
