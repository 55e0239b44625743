//! The bounded compile pool.
//!
//! Cranelift is the most expensive thing a request can trigger (seconds of
//! CPU for a large guest), so at most `slots` compiles run at once
//! (`RUNNER_COMPILE_CONCURRENCY`), and one tenant holds at most
//! [`tenant_share`] of them, so its cold or pathological components cannot
//! take every slot from the others. A request waits for a slot only until
//! its own deadline; past it the runner answers 503 `compile_busy`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::limits::COMPILE_TENANT_SHARE_DIVISOR;

/// Compile slots: a global count and a per-tenant count, one lock for both.
pub struct CompilePool {
    slots: usize,
    per_tenant: usize,
    state: Mutex<PoolState>,
    /// Woken whenever a slot is given back.
    released: Notify,
}

#[derive(Default)]
struct PoolState {
    in_use: usize,
    /// Slots held per tenant; a tenant leaves the map when it holds none,
    /// so the map never grows beyond the number of running compiles.
    by_tenant: HashMap<String, usize>,
}

/// How many of `slots` compile slots one tenant may hold: a half (at least one).
pub fn tenant_share(slots: usize) -> usize {
    (slots / COMPILE_TENANT_SHARE_DIVISOR).max(1)
}

/// One compile slot; given back on drop (also when the compile panics).
pub struct CompilePermit {
    pool: Arc<CompilePool>,
    tenant: String,
}

impl Drop for CompilePermit {
    fn drop(&mut self) {
        {
            let mut state = self.pool.lock();
            state.in_use -= 1;
            if let Some(held) = state.by_tenant.get_mut(&self.tenant) {
                *held -= 1;
                if *held == 0 {
                    state.by_tenant.remove(&self.tenant);
                }
            }
        }
        self.pool.released.notify_waiters();
    }
}

impl CompilePool {
    pub fn new(slots: usize) -> Arc<CompilePool> {
        let slots = slots.max(1);
        Arc::new(CompilePool {
            slots,
            per_tenant: tenant_share(slots),
            state: Mutex::default(),
            released: Notify::new(),
        })
    }

    /// A slot for `tenant` if one is free now and the tenant is under its share.
    pub fn try_acquire(self: &Arc<Self>, tenant: &str) -> Option<CompilePermit> {
        let mut state = self.lock();
        let held = state.by_tenant.get(tenant).copied().unwrap_or(0);
        if state.in_use >= self.slots || held >= self.per_tenant {
            return None;
        }
        state.in_use += 1;
        *state.by_tenant.entry(tenant.to_string()).or_default() += 1;
        Some(CompilePermit {
            pool: self.clone(),
            tenant: tenant.to_string(),
        })
    }

    /// Wait for a slot for `tenant` until `deadline`; `None` past it.
    pub async fn acquire(self: &Arc<Self>, tenant: &str, deadline: Instant) -> Option<CompilePermit> {
        loop {
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(permit) = self.try_acquire(tenant) {
                return Some(permit);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return None;
            }
        }
    }

    /// Compiles running now.
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// the share is half the slots, never zero.
    #[test]
    fn a21_tenant_share_table() {
        for (slots, share) in [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (9, 4)] {
            assert_eq!(tenant_share(slots), share, "{slots} slots");
        }
    }

    /// neither the global bound nor a tenant's share is exceeded, and
    /// a returned slot is reusable.
    #[test]
    fn a21_global_and_tenant_bounds_hold() {
        let pool = CompilePool::new(4);
        let a1 = pool.try_acquire("a").unwrap();
        let _a2 = pool.try_acquire("a").unwrap();
        assert!(pool.try_acquire("a").is_none(), "tenant a is at its share of 2");
        let _b1 = pool.try_acquire("b").unwrap();
        let _b2 = pool.try_acquire("b").unwrap();
        assert!(pool.try_acquire("c").is_none(), "all 4 slots are taken");
        assert_eq!(pool.in_use(), 4);
        drop(a1);
        assert!(pool.try_acquire("b").is_none(), "b is still at its share");
        let _c = pool.try_acquire("c").unwrap();
        assert_eq!(pool.lock().by_tenant.len(), 3);
    }

    /// a waiter gets the slot when it is given back, and gives up at
    /// its deadline otherwise.
    #[tokio::test]
    async fn a21_waiting_is_bounded_by_the_deadline() {
        let pool = CompilePool::new(1);
        let held = pool.try_acquire("a").unwrap();
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(pool.acquire("b", soon).await.is_none());
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.acquire("b", Instant::now() + Duration::from_secs(5))
                    .await
                    .is_some()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap(), "the released slot went to the waiter");
        assert_eq!(pool.in_use(), 0);
        assert!(pool.lock().by_tenant.is_empty(), "idle tenants leave the map");
    }
}
