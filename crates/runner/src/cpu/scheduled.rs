//! A guest execution's future under the fair share: it is polled only
//! while it holds a slice, every poll's thread CPU time is measured and
//! charged to its tenant, and the slice goes back whenever it returns
//! `Pending` (an epoch-tick yield or a wait on I/O).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::fair::Execution;
use crate::quota::cpu_budget::CpuBudget;

/// What one execution used of the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUsage {
    /// Thread CPU time spent polling the guest: guest code, instantiation
    /// and the host calls it makes inline (not work done on other tasks,
    /// such as the egress client's connections).
    pub cpu: Duration,
    /// Time it was ready to run but waited for a slice.
    pub waited: Duration,
}

/// The calling thread's CPU time so far.
pub fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A waker that notes it was woken before passing the wake on.
struct WokenFlag {
    woken: AtomicBool,
    inner: Waker,
}

impl Wake for WokenFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        self.inner.wake_by_ref();
    }
}

/// `inner` under `execution`'s slices.
pub struct Scheduled<F> {
    inner: Pin<Box<F>>,
    execution: Execution,
    budget: Option<Arc<CpuBudget>>,
    usage: CpuUsage,
    /// When it last started waiting for a slice.
    waiting_since: Option<Instant>,
}

impl<F: Future> Scheduled<F> {
    /// `waited`: time already spent waiting for the first slice.
    pub fn new(inner: F, execution: Execution, budget: Option<Arc<CpuBudget>>, waited: Duration) -> Self {
        Scheduled {
            inner: Box::pin(inner),
            execution,
            budget,
            usage: CpuUsage {
                cpu: Duration::ZERO,
                waited,
            },
            waiting_since: None,
        }
    }
}

impl<F: Future> Future for Scheduled<F> {
    type Output = (F::Output, CpuUsage);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Unpin: the inner future is boxed.
        let this = self.get_mut();
        if this.execution.poll_slice(cx).is_pending() {
            this.waiting_since.get_or_insert_with(Instant::now);
            return Poll::Pending;
        }
        if let Some(since) = this.waiting_since.take() {
            this.usage.waited += since.elapsed();
        }
        // A future that wakes itself while polled (the epoch-tick yield) is
        // runnable at once and stays in line for the next slice; any other
        // `Pending` waits on I/O and leaves the line until it is woken.
        let woken = Arc::new(WokenFlag {
            woken: AtomicBool::new(false),
            inner: cx.waker().clone(),
        });
        let waker = Waker::from(woken.clone());
        let before = thread_cpu_time();
        let outcome = this.inner.as_mut().poll(&mut Context::from_waker(&waker));
        let used = thread_cpu_time().saturating_sub(before);
        this.usage.cpu += used;
        if outcome.is_pending() && woken.woken.load(Ordering::Relaxed) {
            this.execution.yield_slice(used, cx.waker());
        } else {
            this.execution.release(used);
        }
        if let Some(budget) = &this.budget {
            budget.charge(this.execution.tenant(), used);
        }
        outcome.map(|output| (output, this.usage))
    }
}
