//! Fair sharing of the guest threads between tenants.
//!
//! There are as many CPU *slices* as guest threads. An execution holds a
//! slice only while its future is being polled (guest code and the host
//! calls it makes inline) and gives it back every time the future returns
//! `Pending`: at each epoch tick, and whenever it waits on I/O. A slice that
//! comes back goes to the waiting tenant that has used the least CPU,
//! divided by its weight, since it became active (start-time fair queueing);
//! within a tenant, waiters are served in arrival order. A tenant that
//! starts working again enters at the current virtual time, so idle time is
//! not banked into a later burst. The scheme is work-conserving: a tenant
//! alone gets every slice.
//!
//! The state is one mutex over a map of the tenants with live executions
//! (entries go when their last execution ends), touched a few times per
//! slice; nothing is held across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Weight of tenants not named in `RUNNER_TENANT_CPU_WEIGHTS`.
const DEFAULT_WEIGHT: u32 = 1;

/// Slices, tenant weights and the start queue cap.
pub struct FairShare {
    weights: HashMap<String, u32>,
    /// A tenant's executions that may wait for their first slice while other
    /// tenants compete (`RUNNER_TENANT_CPU_QUEUE`).
    queue_cap: usize,
    state: Mutex<State>,
    /// Executions refused because their tenant's start queue was full.
    pub refused: AtomicU64,
    /// Ends every running slice now (the engine's epoch increment), called
    /// when an execution that should run before every current holder has
    /// to wait: it then waits for a guest's next epoch check, microseconds,
    /// rather than for the next tick.
    preempt: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Times `preempt` was called.
    pub preemptions: AtomicU64,
}

struct State {
    /// Slices nobody holds. Non-zero only while nobody waits.
    free: usize,
    /// Virtual time of the last grant: where a tenant that becomes active
    /// starts.
    now: f64,
    tenants: HashMap<Arc<str>, Tenant>,
    next_id: u64,
}

struct Tenant {
    /// CPU seconds used divided by the weight (the tenant's virtual time).
    vtime: f64,
    weight: f64,
    /// Registered executions (live [`Execution`] handles).
    live: usize,
    /// Executions holding a slice now.
    running: usize,
    /// Waiting for a slice, oldest first.
    waiting: VecDeque<Waiter>,
    /// Of `waiting`, the executions that have not run yet.
    waiting_to_start: usize,
}

struct Waiter {
    id: u64,
    waker: Waker,
    started: bool,
    granted: Arc<AtomicBool>,
}

/// Why an execution was not registered.
#[derive(Debug, PartialEq, Eq)]
pub struct StartQueueFull {
    pub waiting: usize,
}

impl FairShare {
    /// `slices` slices (the guest threads), weights per tenant id.
    pub fn new(slices: usize, weights: HashMap<String, u32>, queue_cap: usize) -> Arc<FairShare> {
        Arc::new(FairShare {
            weights,
            queue_cap,
            state: Mutex::new(State {
                free: slices.max(1),
                now: 0.0,
                tenants: HashMap::new(),
                next_id: 0,
            }),
            refused: AtomicU64::new(0),
            preempt: std::sync::OnceLock::new(),
            preemptions: AtomicU64::new(0),
        })
    }

    /// Set how running slices are ended early (once; later calls are ignored).
    pub fn set_preemption(&self, preempt: impl Fn() + Send + Sync + 'static) {
        let _ = self.preempt.set(Box::new(preempt));
    }

    /// Register one execution of `tenant`. Refused when other tenants are
    /// competing for the CPU and `tenant` already has the start queue's
    /// worth of executions waiting for their first slice.
    ///
    /// # Errors
    /// [`StartQueueFull`] with the number waiting.
    pub fn register(self: &Arc<Self>, tenant: &str) -> Result<Execution, StartQueueFull> {
        let mut state = self.lock();
        let contended = state.free == 0;
        if let Some(entry) = state.tenants.get(tenant)
            && contended
            && entry.waiting_to_start >= self.queue_cap
        {
            let others = state
                .tenants
                .iter()
                .any(|(id, t)| &**id != tenant && (t.running > 0 || !t.waiting.is_empty()));
            if others {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(StartQueueFull {
                    waiting: entry.waiting_to_start,
                });
            }
        }
        let now = state.now;
        let weight = f64::from(self.weights.get(tenant).copied().unwrap_or(DEFAULT_WEIGHT).max(1));
        let id = state.next_id;
        state.next_id += 1;
        let key: Arc<str> = match state.tenants.get_key_value(tenant) {
            Some((key, _)) => key.clone(),
            None => Arc::from(tenant),
        };
        let entry = state.tenants.entry(key.clone()).or_insert_with(|| Tenant {
            vtime: now,
            weight,
            live: 0,
            running: 0,
            waiting: VecDeque::new(),
            waiting_to_start: 0,
        });
        entry.live += 1;
        Ok(Execution {
            share: self.clone(),
            tenant: key,
            id,
            holds: false,
            queued: false,
            started: false,
            granted: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Tenants with live executions and slices free now (for metrics and tests).
    pub fn snapshot(&self) -> (usize, usize) {
        let state = self.lock();
        (state.tenants.len(), state.free)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is a few field updates; a panic inside one
        // leaves the counts usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// A slice came back: give it to the first waiter of the waiting tenant
    /// with the least virtual time, or keep it free.
    fn hand_over(&mut self) {
        let next = self
            .tenants
            .iter()
            .filter(|(_, t)| !t.waiting.is_empty())
            .min_by(|a, b| a.1.vtime.total_cmp(&b.1.vtime))
            .map(|(id, _)| id.clone());
        let Some(id) = next else {
            self.free += 1;
            return;
        };
        let tenant = self.tenants.get_mut(&id).expect("picked from the map");
        let waiter = tenant.waiting.pop_front().expect("non-empty");
        if !waiter.started {
            tenant.waiting_to_start -= 1;
        }
        tenant.running += 1;
        self.now = self.now.max(tenant.vtime);
        waiter.granted.store(true, Ordering::Release);
        waiter.waker.wake();
    }
}

/// One execution's place in the fair share. Polled for a slice before its
/// future runs, told how much CPU it used when it gives the slice back;
/// dropping it (also on cancellation) frees whatever it holds or waits for.
pub struct Execution {
    share: Arc<FairShare>,
    tenant: Arc<str>,
    id: u64,
    /// Holds a slice now.
    holds: bool,
    /// In its tenant's wait queue.
    queued: bool,
    /// Has held a slice before.
    started: bool,
    /// Set by [`State::hand_over`] when a slice was passed to this waiter.
    granted: Arc<AtomicBool>,
}

impl Execution {
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// This is its tenant's only live execution: a tenant using little,
    /// whose first slice may run where it is (`GuestCpu::run`).
    pub fn is_alone(&self) -> bool {
        let state = self.share.lock();
        state.tenants.get(&self.tenant).is_some_and(|t| t.live == 1)
    }

    /// Ready once this execution holds a slice.
    pub fn poll_slice(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.holds {
            return Poll::Ready(());
        }
        let mut state = self.share.lock();
        if self.queued {
            if self.granted.swap(false, Ordering::Acquire) {
                self.queued = false;
                self.holds = true;
                self.started = true;
                return Poll::Ready(());
            }
            let tenant = state.tenants.get_mut(&self.tenant).expect("registered tenant");
            if let Some(waiter) = tenant.waiting.iter_mut().find(|w| w.id == self.id)
                && !waiter.waker.will_wake(cx.waker())
            {
                waiter.waker = cx.waker().clone();
            }
            return Poll::Pending;
        }
        if state.free > 0 {
            state.free -= 1;
            state.tenants.get_mut(&self.tenant).expect("registered tenant").running += 1;
            self.holds = true;
            self.started = true;
            return Poll::Ready(());
        }
        let now = state.now;
        let tenant = state.tenants.get_mut(&self.tenant).expect("registered tenant");
        // Becoming backlogged again: start no earlier than everyone else.
        if tenant.running == 0 && tenant.waiting.is_empty() {
            tenant.vtime = tenant.vtime.max(now);
        }
        tenant.waiting.push_back(Waiter {
            id: self.id,
            waker: cx.waker().clone(),
            started: self.started,
            granted: self.granted.clone(),
        });
        if !self.started {
            tenant.waiting_to_start += 1;
        }
        let vtime = tenant.vtime;
        self.queued = true;
        // Every slice is held by other tenants that have used at least as
        // much (the holders are mid-slice, so in fact more): this one is
        // next, so end their slices now instead of at the next tick.
        let holders_ahead = state
            .tenants
            .iter()
            .filter(|(_, t)| t.running > 0)
            .all(|(id, t)| *id != self.tenant && t.vtime >= vtime);
        if holders_ahead && let Some(preempt) = self.share.preempt.get() {
            self.share.preemptions.fetch_add(1, Ordering::Relaxed);
            preempt();
        }
        Poll::Pending
    }

    /// Give the slice back, charging `used` CPU time to the tenant.
    pub fn release(&mut self, used: Duration) {
        self.give_back(used, None);
    }

    /// Give the slice back as [`Execution::release`] does, but stay in line
    /// for the next one (the execution is runnable at once: it only
    /// yielded at an epoch tick). It competes for the slice it gave back
    /// with its new virtual time, so it keeps running if it is still the
    /// tenant that has used the least; `waker` is woken when it is granted.
    pub fn yield_slice(&mut self, used: Duration, waker: &Waker) {
        self.give_back(used, Some(waker));
    }

    /// Charge `used`, queue again when `requeue` says how to be woken, and
    /// hand the slice on.
    fn give_back(&mut self, used: Duration, requeue: Option<&Waker>) {
        if !self.holds {
            return;
        }
        self.holds = false;
        let mut state = self.share.lock();
        let tenant = state.tenants.get_mut(&self.tenant).expect("registered tenant");
        tenant.running -= 1;
        tenant.vtime += used.as_secs_f64() / tenant.weight;
        if let Some(waker) = requeue {
            tenant.waiting.push_back(Waiter {
                id: self.id,
                waker: waker.clone(),
                started: true,
                granted: self.granted.clone(),
            });
            self.queued = true;
        }
        state.hand_over();
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        let mut state = self.share.lock();
        let tenant = state.tenants.get_mut(&self.tenant).expect("registered tenant");
        let mut give_back = self.holds;
        if self.queued {
            if self.granted.load(Ordering::Acquire) {
                // Handed a slice it will never use: pass it on.
                give_back = true;
            } else if let Some(at) = tenant.waiting.iter().position(|w| w.id == self.id) {
                tenant.waiting.remove(at);
                if !self.started {
                    tenant.waiting_to_start -= 1;
                }
            }
        }
        if give_back {
            tenant.running -= 1;
        }
        tenant.live -= 1;
        if tenant.live == 0 {
            state.tenants.remove(&self.tenant);
        }
        if give_back {
            state.hand_over();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(execution: &mut Execution) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        execution.poll_slice(&mut cx).is_ready()
    }

    const SLICE: Duration = Duration::from_millis(1);

    #[test]
    fn a_light_tenant_gets_the_next_slice_before_a_busy_ones_backlog() {
        let share = FairShare::new(1, HashMap::new(), 100);
        let mut running = share.register("a").unwrap();
        assert!(poll(&mut running));
        let mut backlog: Vec<_> = (0..5).map(|_| share.register("a").unwrap()).collect();
        for execution in &mut backlog {
            assert!(!poll(execution));
        }
        running.release(SLICE);
        assert!(poll(&mut backlog[0]), "alone, the tenant's own waiter gets the slice");
        assert!(!poll(&mut running), "back into the queue behind its own backlog");
        let mut light = share.register("b").unwrap();
        assert!(light.is_alone() && !backlog[1].is_alone());
        assert!(!poll(&mut light));
        backlog[0].release(SLICE);
        assert!(poll(&mut light), "b has used nothing: it goes before a's five waiters");
        assert!(backlog[1..].iter_mut().all(|e| !poll(e)));
    }

    #[test]
    fn a_yielding_execution_keeps_its_place_in_line() {
        let share = FairShare::new(1, HashMap::new(), 100);
        let mut light = share.register("b").unwrap();
        assert!(poll(&mut light));
        let mut busy = share.register("a").unwrap();
        assert!(!poll(&mut busy));
        // b yields having used little; a has used nothing yet, so a goes next.
        light.yield_slice(Duration::from_micros(10), Waker::noop());
        assert!(poll(&mut busy) && !poll(&mut light));
        // a yields after a whole slice: b, already in line, is granted at once.
        busy.yield_slice(SLICE, Waker::noop());
        assert!(poll(&mut light), "b was in line and has used less");
        assert!(!poll(&mut busy));
    }

    #[test]
    fn a_tenant_behind_every_holder_preempts_them_and_one_among_them_does_not() {
        let share = FairShare::new(1, HashMap::new(), 100);
        let calls = Arc::new(AtomicU64::new(0));
        let counter = calls.clone();
        share.set_preemption(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let mut busy = share.register("a").unwrap();
        assert!(poll(&mut busy));
        busy.yield_slice(SLICE, Waker::noop());
        assert!(poll(&mut busy), "alone, it keeps the slice");
        // Another of a's executions is not ahead of a: no preemption.
        let mut more = share.register("a").unwrap();
        assert!(!poll(&mut more));
        assert_eq!(calls.load(Ordering::Relaxed), 0);
        // b has used nothing since it became active: it preempts a.
        let mut light = share.register("b").unwrap();
        assert!(!poll(&mut light));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        busy.yield_slice(SLICE, Waker::noop());
        assert!(poll(&mut light));
    }

    #[test]
    fn weights_divide_the_cpu() {
        let weights = HashMap::from([("heavy".to_string(), 2)]);
        let share = FairShare::new(1, weights, 100);
        let mut all: Vec<(&str, Execution)> = Vec::new();
        for tenant in ["heavy", "light"] {
            for _ in 0..3 {
                all.push((tenant, share.register(tenant).unwrap()));
            }
        }
        let mut grants: HashMap<&str, u32> = HashMap::new();
        for _ in 0..3000 {
            // Exactly one execution holds the slice after each round.
            for (_, execution) in &mut all {
                poll(execution);
            }
            let (tenant, holder) = all.iter_mut().find(|(_, e)| e.holds).expect("a holder");
            *grants.entry(tenant).or_default() += 1;
            holder.release(SLICE);
        }
        let ratio = f64::from(grants["heavy"]) / f64::from(grants["light"]);
        assert!((1.9..=2.1).contains(&ratio), "grants {grants:?}");
    }

    #[test]
    fn the_start_queue_is_capped_only_when_others_compete() {
        let share = FairShare::new(1, HashMap::new(), 2);
        let mut first = share.register("a").unwrap();
        assert!(poll(&mut first));
        // Alone, a tenant may queue as many as it likes.
        let mut queued: Vec<_> = (0..4).map(|_| share.register("a").unwrap()).collect();
        for e in &mut queued {
            assert!(!poll(e));
        }
        let mut other = share.register("b").unwrap();
        assert!(!poll(&mut other));
        assert_eq!(share.register("a").err(), Some(StartQueueFull { waiting: 4 }));
        assert_eq!(share.refused.load(Ordering::Relaxed), 1);
        assert!(share.register("b").is_ok(), "b is under its cap");
    }

    #[test]
    fn dropping_waiters_and_holders_frees_everything() {
        let share = FairShare::new(2, HashMap::new(), 100);
        let mut a = share.register("a").unwrap();
        let mut b = share.register("b").unwrap();
        assert!(poll(&mut a) && poll(&mut b));
        let mut c = share.register("c").unwrap();
        let mut d = share.register("c").unwrap();
        assert!(!poll(&mut c) && !poll(&mut d));
        drop(c); // a waiter that gives up leaves the queue
        a.release(SLICE); // granted to d, which is dropped before it runs
        drop(d);
        drop(a);
        assert_eq!(share.snapshot(), (1, 1), "the slice d was handed came back");
        drop(b);
        assert_eq!(share.snapshot(), (0, 2));
    }
}
