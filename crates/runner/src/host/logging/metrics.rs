//! The debug sink's counters: guest lines copied to Redis, and those
//! dropped by reason.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{Capped, Labels, Metrics, NoLabels, OVERFLOW};

/// `reason`: `queue_full` or `redis_unavailable`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

impl Labels for Reason {
    fn overflow() -> Self {
        Reason { reason: OVERFLOW }
    }
}

/// The sink's families, shared by its handles and the writer thread.
pub(super) struct SinkMetrics {
    dropped: Capped<Reason, Counter>,
    /// Without labels, and on the scrape only once a line was written.
    written: Family<NoLabels, Counter>,
}

impl SinkMetrics {
    /// Register the families in `m` (one sink per registry: call once).
    pub fn register(m: &Metrics) -> Arc<SinkMetrics> {
        Arc::new(SinkMetrics {
            dropped: m.counters(
                "ext_runner_debug_sink_dropped",
                "Guest lines not copied to the Redis debug sink, by reason.",
            ),
            written: m.register(
                "ext_runner_debug_sink_written",
                "Guest lines copied to the Redis debug sink.",
                Family::default(),
            ),
        })
    }

    /// `lines` not copied, for `reason`.
    pub fn dropped(&self, reason: &'static str, lines: u64) {
        self.dropped.get_or_create(&Reason { reason }).inc_by(lines);
    }

    /// `lines` copied to Redis.
    pub fn written(&self, lines: u64) {
        self.written.get_or_create(&NoLabels).inc_by(lines);
    }
}
