//! The UI's series: asset requests by response status, counted as answered.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{Capped, Labels, Metrics};

/// `status`: the response's status code.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: u16,
}

impl Labels for Status {
    /// Never reached (a few dozen codes exist); a code no response has.
    fn overflow() -> Self {
        Status { status: 0 }
    }
}

/// The families the UI handlers record in.
pub(super) struct UiMetrics {
    requests: Capped<Status, Counter>,
}

impl UiMetrics {
    /// Register the families in `m` (one set per registry: call once).
    pub fn register(m: &Metrics) -> UiMetrics {
        UiMetrics {
            requests: m.counters("ext_runner_ui_requests", "UI asset requests by response status."),
        }
    }

    /// One answered asset request.
    pub fn answered(&self, status: http::StatusCode) {
        let status = Status {
            status: status.as_u16(),
        };
        self.requests.get_or_create(&status).inc();
    }
}
