//! The replay store in this process's memory: one map from scope to entry,
//! an index of stored entries by age for TTL and cap eviction, and a watch
//! channel per running call for the calls that wait for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::watch;

use super::metrics::{Eviction, IdempotencyMetrics};
use super::{Claim, Fingerprint, IdempotencySettings, Replayable, Scope};
use crate::error::{ErrorCode, Failure};

/// What waiters see of a running call: `None` until it ends with an answer.
type Outcome<V> = Option<Arc<V>>;

enum State<V> {
    /// A call runs with this key; `id` tells its lead from a later one.
    Running { id: u64, done: watch::Receiver<Outcome<V>> },
    /// Its answer, kept until `expires`.
    Stored {
        answer: Arc<V>,
        expires: Instant,
        bytes: u64,
    },
}

struct Entry<V> {
    fingerprint: Fingerprint,
    state: State<V>,
}

struct Inner<V> {
    entries: HashMap<Scope, Entry<V>>,
    /// Stored entries, oldest first (TTLs are all the same, so also the
    /// order they expire in).
    by_age: BTreeMap<u64, Scope>,
    bytes: u64,
    next: u64,
}

pub struct MemoryStore<V: Replayable> {
    settings: IdempotencySettings,
    inner: Mutex<Inner<V>>,
    metrics: IdempotencyMetrics,
}

/// The one call that runs for a key. Dropped without [`Lead::finish`]: if
/// the guest had started, the key keeps [`Replayable::abandoned`] (its side
/// effects may have happened); if not, the key is free again and the calls
/// waiting claim it anew.
pub struct Lead<V: Replayable> {
    store: Arc<MemoryStore<V>>,
    scope: Scope,
    id: u64,
    done: Option<watch::Sender<Outcome<V>>>,
    started: AtomicBool,
}

enum Step<V: Replayable> {
    Claimed(Claim<V>),
    Wait(watch::Receiver<Outcome<V>>),
}

impl<V: Replayable> MemoryStore<V> {
    pub fn new(settings: IdempotencySettings, metrics: IdempotencyMetrics) -> MemoryStore<V> {
        MemoryStore {
            settings,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                by_age: BTreeMap::new(),
                bytes: 0,
                next: 0,
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.by_age.len(), inner.bytes)
    }

    pub async fn claim(
        self: &Arc<Self>,
        scope: Scope,
        fingerprint: Fingerprint,
        deadline: tokio::time::Instant,
    ) -> Result<Claim<V>, Failure> {
        let mut waited = false;
        loop {
            let mut done = match self.step(&scope, fingerprint)? {
                Step::Claimed(claim) => {
                    if matches!(claim, Claim::Replay(_)) {
                        self.metrics.replays.inc();
                    }
                    return Ok(claim);
                }
                Step::Wait(done) => done,
            };
            if !waited {
                waited = true;
                self.metrics.waits.inc();
            }
            // The lead answers (Some), or goes away before its guest
            // started (the channel closes: claim again).
            let waited_for = tokio::time::timeout_at(deadline, done.wait_for(Option::is_some))
                .await
                .map(|seen| seen.map(|answer| answer.clone()));
            let answer = match waited_for {
                Ok(Ok(answer)) => answer,
                Ok(Err(_closed)) => done.borrow().clone(),
                Err(_elapsed) => {
                    return Err(Failure::new(
                        ErrorCode::IdempotencyKeyInProgress,
                        "a call with this idempotency key is still running; retry later for its answer",
                    ));
                }
            };
            if let Some(answer) = answer {
                self.metrics.replays.inc();
                return Ok(Claim::Replay(answer));
            }
        }
    }

    fn step(self: &Arc<Self>, scope: &Scope, fingerprint: Fingerprint) -> Result<Step<V>, Failure> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        if let Some(entry) = inner.entries.get(scope) {
            if entry.fingerprint != fingerprint {
                return Err(Failure::new(
                    ErrorCode::IdempotencyKeyReused,
                    "this idempotency key was used with another request (method, path, query or body); use a new key for a new request",
                ));
            }
            return Ok(match &entry.state {
                State::Stored { answer, .. } => Step::Claimed(Claim::Replay(answer.clone())),
                State::Running { done, .. } => Step::Wait(done.clone()),
            });
        }
        let id = inner.next;
        inner.next += 1;
        let (sender, receiver) = watch::channel(None);
        inner.entries.insert(
            scope.clone(),
            Entry {
                fingerprint,
                state: State::Running { id, done: receiver },
            },
        );
        Ok(Step::Claimed(Claim::Lead(Lead {
            store: self.clone(),
            scope: scope.clone(),
            id,
            done: Some(sender),
            started: AtomicBool::new(false),
        })))
    }

    /// Drop the stored entries whose TTL has passed (the oldest first).
    fn expire(&self, inner: &mut Inner<V>, now: Instant) {
        while let Some((&seq, _)) = inner.by_age.first_key_value() {
            let expired = inner
                .by_age
                .get(&seq)
                .and_then(|scope| inner.entries.get(scope))
                .is_some_and(|entry| matches!(entry.state, State::Stored { expires, .. } if expires <= now));
            if !expired {
                break;
            }
            self.evict_oldest(inner, Eviction::Expired);
        }
    }

    fn evict_oldest(&self, inner: &mut Inner<V>, why: Eviction) {
        let Some((_, scope)) = inner.by_age.pop_first() else {
            return;
        };
        if let Some(Entry {
            state: State::Stored { bytes, .. },
            ..
        }) = inner.entries.remove(&scope)
        {
            inner.bytes -= bytes;
        }
        self.metrics.evicted(why);
    }

    /// The lead's end: hand `answer` to the waiters and keep it if it fits.
    fn settle(&self, scope: &Scope, id: u64, answer: Option<Arc<V>>) {
        let mut inner = self.lock();
        let ours = inner
            .entries
            .get(scope)
            .is_some_and(|entry| matches!(entry.state, State::Running { id: running, .. } if running == id));
        if !ours {
            return;
        }
        let Some(answer) = answer else {
            inner.entries.remove(scope);
            return;
        };
        let size = answer.bytes();
        let bytes = size + scope.bytes() + super::ENTRY_OVERHEAD_BYTES;
        if size > self.settings.max_response_bytes || bytes > self.settings.max_bytes {
            inner.entries.remove(scope);
            self.metrics.not_stored.inc();
            return;
        }
        let now = Instant::now();
        self.expire(&mut inner, now);
        while !inner.by_age.is_empty() && inner.by_age.len() as u64 >= self.settings.max_entries {
            self.evict_oldest(&mut inner, Eviction::Entries);
        }
        while !inner.by_age.is_empty() && inner.bytes + bytes > self.settings.max_bytes {
            self.evict_oldest(&mut inner, Eviction::Bytes);
        }
        let seq = inner.next;
        inner.next += 1;
        inner.by_age.insert(seq, scope.clone());
        inner.bytes += bytes;
        if let Some(entry) = inner.entries.get_mut(scope) {
            entry.state = State::Stored {
                answer,
                expires: now + self.settings.ttl,
                bytes,
            };
        }
        self.metrics.stores.inc();
    }
}

impl<V: Replayable> Lead<V> {
    /// The guest is about to run: from here on the call's outcome is kept,
    /// whatever it is.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Relaxed);
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// The call ended: with an answer to keep (`Some`, after the guest
    /// started), or before its guest started (`None`: the key is free).
    pub fn finish(mut self, answer: Option<V>) {
        self.end(answer.map(Arc::new));
    }

    fn end(&mut self, answer: Option<Arc<V>>) {
        let Some(done) = self.done.take() else {
            return;
        };
        self.store.settle(&self.scope, self.id, answer.clone());
        // Waiters get the answer even when it was too large to keep.
        if answer.is_some() {
            done.send_replace(answer);
        }
    }
}

impl<V: Replayable> Drop for Lead<V> {
    fn drop(&mut self) {
        let answer = self.started().then(|| Arc::new(V::abandoned()));
        self.end(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Clone, Debug, PartialEq)]
    struct Answer(String);

    impl Replayable for Answer {
        fn bytes(&self) -> u64 {
            self.0.len() as u64
        }
        fn abandoned() -> Self {
            Answer("abandoned".into())
        }
    }

    fn store(settings: IdempotencySettings) -> Arc<MemoryStore<Answer>> {
        let metrics = crate::metrics::Metrics::default();
        Arc::new(MemoryStore::new(settings, IdempotencyMetrics::register(&metrics)))
    }

    fn scope(key: &str) -> Scope {
        Scope {
            tenant: "t".into(),
            extension: "e".into(),
            install: None,
            user: None,
            key: key.into(),
        }
    }

    const PRINT: Fingerprint = Fingerprint([1; 32]);

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(5)
    }

    async fn lead(store: &Arc<MemoryStore<Answer>>, key: &str) -> Lead<Answer> {
        match store.claim(scope(key), PRINT, soon()).await.unwrap() {
            Claim::Lead(lead) => lead,
            Claim::Replay(answer) => panic!("replayed {answer:?}"),
        }
    }

    async fn replayed(store: &Arc<MemoryStore<Answer>>, key: &str) -> Option<String> {
        match store.claim(scope(key), PRINT, soon()).await.unwrap() {
            Claim::Lead(_) => None,
            Claim::Replay(answer) => Some(answer.0.clone()),
        }
    }

    fn run(store: &Arc<MemoryStore<Answer>>, lead: Lead<Answer>, answer: &str) {
        let _ = store;
        lead.mark_started();
        lead.finish(Some(Answer(answer.into())));
    }

    /// Entry bytes for key `k?` and an answer of `n` bytes.
    fn cost(n: u64) -> u64 {
        n + scope("k0").bytes() + crate::idempotency::ENTRY_OVERHEAD_BYTES
    }

    #[tokio::test]
    async fn oldest_answers_go_first_when_a_cap_is_reached() {
        let by_count = store(IdempotencySettings {
            max_entries: 2,
            ..IdempotencySettings::default()
        });
        for key in ["k0", "k1", "k2"] {
            let lead = lead(&by_count, key).await;
            run(&by_count, lead, key);
        }
        assert_eq!(by_count.usage().0, 2);
        assert_eq!(replayed(&by_count, "k0").await, None, "the oldest was evicted");
        assert_eq!(replayed(&by_count, "k2").await.as_deref(), Some("k2"));

        let by_bytes = store(IdempotencySettings {
            max_bytes: 2 * cost(10),
            ..IdempotencySettings::default()
        });
        for key in ["k0", "k1", "k2"] {
            let lead = lead(&by_bytes, key).await;
            run(&by_bytes, lead, &"x".repeat(10));
        }
        assert_eq!(by_bytes.usage(), (2, 2 * cost(10)));
        assert_eq!(replayed(&by_bytes, "k1").await.as_deref(), Some("xxxxxxxxxx"));
        assert_eq!(replayed(&by_bytes, "k0").await, None);
    }

    #[tokio::test]
    async fn large_answers_reach_waiters_but_are_not_kept() {
        let store = store(IdempotencySettings {
            max_response_bytes: 4,
            ..IdempotencySettings::default()
        });
        let first = lead(&store, "k").await;
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { replayed(&store, "k").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        run(&store, first, "too large");
        assert_eq!(waiter.await.unwrap().as_deref(), Some("too large"));
        assert_eq!(store.usage(), (0, 0));
        assert_eq!(replayed(&store, "k").await, None, "a later retry runs");
    }

    #[tokio::test]
    async fn a_lead_gone_before_its_guest_frees_the_key_and_after_keeps_it() {
        let store = store(IdempotencySettings::default());
        drop(lead(&store, "before").await);
        assert_eq!(replayed(&store, "before").await, None);
        let after = lead(&store, "after").await;
        after.mark_started();
        drop(after);
        assert_eq!(replayed(&store, "after").await.as_deref(), Some("abandoned"));
    }

    #[tokio::test]
    async fn a_waiter_past_its_deadline_is_told_the_key_is_in_progress() {
        let store = store(IdempotencySettings::default());
        let _first = lead(&store, "k").await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        let refused = store.claim(scope("k"), PRINT, deadline).await.err().unwrap();
        assert_eq!(refused.code, ErrorCode::IdempotencyKeyInProgress);
        let reused = store
            .claim(scope("k"), Fingerprint([2; 32]), soon())
            .await
            .err()
            .unwrap();
        assert_eq!(reused.code, ErrorCode::IdempotencyKeyReused);
    }
}
