//! The server's gauges, read when scraped: connections by listener and
//! the async runtime's tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::Listener;
use super::connections::ConnectionStats;
use crate::metrics::{Gauges, Scraped};

const TOKIO_TASKS: Scraped = Scraped {
    name: "ext_runner_tokio_tasks",
    help: "Tasks alive on the async runtime (connections, executions, background work).",
};
const OPEN: Scraped = Scraped {
    name: "ext_runner_connections_open",
    help: "Connections open now, by listener.",
};
const ACCEPTED: Scraped = Scraped {
    name: "ext_runner_connections_accepted",
    help: "Connections accepted since start-up, by listener.",
};
const CLOSED_EARLY: Scraped = Scraped {
    name: "ext_runner_connections_closed_early",
    help: "Connections closed by a limit since start-up: over_cap (RUNNER_MAX_CONNECTIONS), silent (no request within the header-read timeout), idle (RUNNER_IDLE_TIMEOUT_MS), write_stalled (RUNNER_WRITE_STALL_TIMEOUT_MS).",
};

/// The connection counters of both listeners, shared with them.
#[derive(Debug)]
pub(super) struct ServerGauges {
    pub connections: [Arc<ConnectionStats>; 2],
}

impl Gauges for ServerGauges {
    const FAMILIES: &'static [Scraped] = &[TOKIO_TASKS, OPEN, ACCEPTED, CLOSED_EARLY];
}

impl Collector for ServerGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // The runtime the scrape runs on (absent when encoded outside one).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            TOKIO_TASKS.encode(&mut encoder, runtime.metrics().num_alive_tasks() as u64)?;
        }
        let listeners = [Listener::Service, Listener::Public];
        let each = |value: fn(&ConnectionStats) -> &AtomicU64| {
            listeners.iter().map(move |kind| {
                let stats = &self.connections[*kind as usize];
                ([("listener", kind.as_str())], value(stats).load(Ordering::Relaxed))
            })
        };
        OPEN.encode_each(&mut encoder, each(|s| &s.open))?;
        ACCEPTED.encode_each(&mut encoder, each(|s| &s.accepted))?;
        let closes = listeners.iter().flat_map(|kind| {
            let stats = &self.connections[*kind as usize];
            stats
                .closes()
                .map(|(reason, count)| ([("listener", kind.as_str()), ("reason", reason)], count))
        });
        CLOSED_EARLY.encode_each(&mut encoder, closes)
    }
}
