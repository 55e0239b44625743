//! The registry's series: operations by kind and outcome (publishes,
//! install changes, refusals).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{Capped, Labels, Metrics};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    /// `publish`, `install`, `upgrade`, `rollback`, `configure`, `enable`,
    /// `disable`, `secrets`, `reseal`, `uninstall`, `purge` (an uninstall with
    /// `?purge=true`, or the retry that finishes one), `yank`, `revoke`,
    /// `revoke_signer`.
    operation: &'static str,
    /// `ok`, `refused` (the caller's mistake or scope, 4xx) or `failed` (5xx).
    outcome: &'static str,
}

impl Labels for Operation {
    /// Never reached: a dozen operations times three outcomes.
    fn overflow() -> Self {
        Operation {
            operation: "other",
            outcome: "other",
        }
    }
}

pub struct RegistryMetrics {
    operations: Capped<Operation, Counter>,
}

impl RegistryMetrics {
    pub fn register(m: &Metrics) -> RegistryMetrics {
        RegistryMetrics {
            operations: m.counters(
                "ext_runner_registry_operations",
                "Registry changes by operation and outcome (ok, refused, failed).",
            ),
        }
    }

    /// One change asked for, and how it ended (`status` of the answer).
    pub fn count(&self, operation: &'static str, status: http::StatusCode) {
        let outcome = if status.is_server_error() {
            "failed"
        } else if status.is_client_error() {
            "refused"
        } else {
            "ok"
        };
        self.operations.get_or_create(&Operation { operation, outcome }).inc();
    }
}
