//! The replay store's series: answers replayed, calls that waited for a
//! running one, answers stored and not stored, and evictions by reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{Capped, Labels, Metrics};

/// Why an answer left the store before anyone asked for it again.
#[derive(Clone, Copy, Debug)]
pub enum Eviction {
    /// Its TTL passed (`RUNNER_IDEMPOTENCY_TTL_SECS`).
    Expired,
    /// The entry cap (`RUNNER_IDEMPOTENCY_MAX_ENTRIES`).
    Entries,
    /// The byte cap (`RUNNER_IDEMPOTENCY_MAX_BYTES`).
    Bytes,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    /// `expired`, `entries` or `bytes`.
    reason: &'static str,
}

impl Labels for Reason {
    /// Never reached: three reasons.
    fn overflow() -> Self {
        Reason { reason: "other" }
    }
}

pub struct IdempotencyMetrics {
    pub replays: Counter,
    pub waits: Counter,
    pub stores: Counter,
    pub not_stored: Counter,
    evictions: Capped<Reason, Counter>,
}

impl IdempotencyMetrics {
    pub fn register(m: &Metrics) -> IdempotencyMetrics {
        IdempotencyMetrics {
            replays: m.register(
                "ext_runner_idempotency_replays",
                "Calls answered with the stored answer of an earlier call with the same idempotency key.",
                Counter::default(),
            ),
            waits: m.register(
                "ext_runner_idempotency_waits",
                "Calls that waited for a running call with the same idempotency key.",
                Counter::default(),
            ),
            stores: m.register(
                "ext_runner_idempotency_stores",
                "Answers stored for replay under their idempotency key.",
                Counter::default(),
            ),
            not_stored: m.register(
                "ext_runner_idempotency_not_stored",
                "Answers over RUNNER_IDEMPOTENCY_MAX_RESPONSE_BYTES (or the whole store), not kept: a retry runs again.",
                Counter::default(),
            ),
            evictions: m.counters(
                "ext_runner_idempotency_evictions",
                "Stored answers dropped before their key was used again, by reason (expired, entries, bytes).",
            ),
        }
    }

    pub fn evicted(&self, why: Eviction) {
        let reason = match why {
            Eviction::Expired => "expired",
            Eviction::Entries => "entries",
            Eviction::Bytes => "bytes",
        };
        self.evictions.get_or_create(&Reason { reason }).inc();
    }
}
