//! The guest threads: a Tokio runtime of their own, so guest code does not
//! run on the workers that accept connections, parse HTTP and answer
//! health checks and UI assets (the one exception, a light tenant's first
//! slice, is `GuestCpu::run`'s). Cranelift's rayon pool, where compiles do
//! their work, runs at a lower OS priority ([`COMPILE_THREAD_NICE`]).

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::limits::COMPILE_THREAD_NICE;

/// The guest runtime. Dropping it stops its threads without waiting.
pub struct GuestExecutor {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl GuestExecutor {
    /// A runtime of `threads` workers named `ext-runner-guest`.
    ///
    /// # Errors
    /// The threads cannot be started.
    pub fn start(threads: usize) -> std::io::Result<GuestExecutor> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("ext-runner-guest")
            .enable_all()
            .build()?;
        // Wasmtime's parallel compilation uses rayon's global pool; it is
        // configured once per process (a second runner in the same process,
        // as in tests, finds it already set up).
        let _ = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("ext-runner-compile-{i}"))
            .start_handler(|_| lower_priority())
            .build_global();
        let handle = runtime.handle().clone();
        Ok(GuestExecutor {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Where compiles' blocking work is spawned (their Cranelift work runs
    /// on the rayon pool).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Run `future` on the guest threads; the task is aborted when the
    /// returned guard is dropped (the caller gave up).
    pub fn spawn<F>(&self, future: F) -> AbortOnDrop<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        AbortOnDrop(self.handle.spawn(future))
    }
}

impl Drop for GuestExecutor {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A task handle that aborts the task when dropped.
pub struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Raise the calling thread's nice value (on Linux, `setpriority` with
/// `who = 0` applies to the calling thread only). Lowering one's own
/// priority needs no privilege; if it fails anyway the thread runs at the
/// normal priority.
fn lower_priority() {
    if let Err(error) = rustix::process::setpriority_process(None, COMPILE_THREAD_NICE) {
        tracing::debug!(%error, "could not lower a compile thread's priority");
    }
}
