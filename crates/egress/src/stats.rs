//! Per-tenant egress counters ([`EgressStats`]) for the runner to export, and the
//! per-invocation request and response-byte counter ([`RequestBudget`], S-10, A-22).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::EgressError;

/// How one request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// A policy refused it (the `not-allowed` kind).
    Denied,
    /// Anything else, including a request dropped by the runner's outer timeout.
    Failed,
}

/// Counters of one tenant.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    denied: AtomicU64,
    failed: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

/// A snapshot of one tenant's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantEgress {
    /// `fetch` calls, whatever their outcome.
    pub requests: u64,
    /// Calls a policy refused (the `not-allowed` kind).
    pub denied: u64,
    /// Calls that failed otherwise (invalid request, transport, internal).
    pub failed: u64,
    /// Request body bytes written to upstreams.
    pub bytes_sent: u64,
    /// Response body bytes read from upstreams, including those of responses refused as too
    /// large.
    pub bytes_received: u64,
}

/// Egress counters per tenant, shared by every invocation. Tenants are the operator's, so the
/// map's size is bounded by the deployment, not by guests.
#[derive(Debug, Default)]
pub struct EgressStats {
    tenants: RwLock<HashMap<String, Arc<Counters>>>,
}

impl EgressStats {
    fn counters(&self, tenant: &str) -> Arc<Counters> {
        if let Some(c) = self.tenants.read().unwrap_or_else(PoisonError::into_inner).get(tenant) {
            return c.clone();
        }
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        tenants.entry(tenant.to_owned()).or_default().clone()
    }

    pub(crate) fn record(&self, tenant: &str, outcome: Outcome, sent: u64, received: u64) {
        let c = self.counters(tenant);
        c.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Success => {}
            Outcome::Denied => {
                c.denied.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed => {
                c.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        c.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        c.bytes_received.fetch_add(received, Ordering::Relaxed);
    }

    /// The counters of `tenant` (zero if it never made a request).
    pub fn tenant(&self, tenant: &str) -> TenantEgress {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        tenants.get(tenant).map(|c| snapshot(c)).unwrap_or_default()
    }

    /// Every tenant's counters, sorted by tenant id.
    pub fn snapshot(&self) -> Vec<(String, TenantEgress)> {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(String, TenantEgress)> = tenants.iter().map(|(t, c)| (t.clone(), snapshot(c))).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

fn snapshot(c: &Counters) -> TenantEgress {
    TenantEgress {
        requests: c.requests.load(Ordering::Relaxed),
        denied: c.denied.load(Ordering::Relaxed),
        failed: c.failed.load(Ordering::Relaxed),
        bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
        bytes_received: c.bytes_received.load(Ordering::Relaxed),
    }
}

/// How many requests one invocation may still make (S-10), and how many upstream response
/// body bytes it may still receive (A-22: responses are buffered by the host, outside the
/// guest's memory limit, so their sum per invocation is capped, not only each one). The runner
/// creates one per invocation ([`crate::Egress::budget`]) and passes it in every
/// [`crate::FetchContext`].
#[derive(Debug)]
pub struct RequestBudget {
    limit: u32,
    used: AtomicU32,
    /// Shared with the invocation's streamed response bodies, which outlive the fetch call.
    response: Arc<ResponseAllowance>,
}

/// The response bytes an invocation may still receive.
#[derive(Debug)]
pub(crate) struct ResponseAllowance {
    limit: u64,
    used: AtomicU64,
}

impl ResponseAllowance {
    /// Takes `bytes`, or nothing if they do not fit.
    pub(crate) fn take(&self, bytes: u64) -> Result<(), EgressError> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .map(|_| ())
            .map_err(|_| EgressError::ResponseBudgetExceeded { limit: self.limit })
    }
}

impl RequestBudget {
    /// A budget of `limit` requests and no cap on their response bytes beyond each one's.
    pub fn new(limit: u32) -> RequestBudget {
        RequestBudget::with_response_bytes(limit, u64::MAX)
    }

    /// A budget of `limit` requests receiving at most `response_bytes` body bytes in all.
    pub fn with_response_bytes(limit: u32, response_bytes: u64) -> RequestBudget {
        RequestBudget {
            limit,
            used: AtomicU32::new(0),
            response: Arc::new(ResponseAllowance {
                limit: response_bytes,
                used: AtomicU64::new(0),
            }),
        }
    }

    /// Requests taken so far (refused attempts past the limit are not counted).
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::SeqCst)
    }

    /// Response body bytes received so far.
    pub fn response_bytes(&self) -> u64 {
        self.response.used.load(Ordering::SeqCst)
    }

    pub(crate) fn response_allowance(&self) -> Arc<ResponseAllowance> {
        self.response.clone()
    }

    /// Takes one request.
    ///
    /// # Errors
    /// [`EgressError::RequestLimitExceeded`] once `limit` requests were taken.
    pub fn take(&self) -> Result<(), EgressError> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < self.limit).then_some(used + 1)
            })
            .map(|_| ())
            .map_err(|_| EgressError::RequestLimitExceeded { limit: self.limit })
    }

    /// Takes `bytes` of response body from the invocation's allowance (before they are kept).
    ///
    /// # Errors
    /// [`EgressError::ResponseBudgetExceeded`] when the invocation's responses would exceed it
    /// (nothing is taken then).
    pub fn take_response_bytes(&self, bytes: u64) -> Result<(), EgressError> {
        self.response.take(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_counts_to_its_limit() {
        let budget = RequestBudget::new(2);
        assert!(budget.take().is_ok() && budget.take().is_ok());
        assert_eq!(budget.take().unwrap_err().code(), "request_limit_exceeded");
        assert_eq!(budget.used(), 2);
        assert!(RequestBudget::new(0).take().is_err());
    }

    /// response bytes add up across an invocation's requests; a refused take takes
    /// nothing, so a smaller one may still fit.
    #[test]
    fn a22_response_bytes_add_up_to_their_limit() {
        let budget = RequestBudget::with_response_bytes(4, 100);
        assert!(budget.take_response_bytes(60).is_ok());
        let refused = budget.take_response_bytes(41).unwrap_err();
        assert_eq!(refused.code(), "response_budget_exceeded");
        assert_eq!(budget.response_bytes(), 60);
        assert!(budget.take_response_bytes(40).is_ok());
        assert!(budget.take_response_bytes(1).is_err());
        assert!(RequestBudget::new(1).take_response_bytes(u64::MAX).is_ok());
    }

    #[test]
    fn stats_per_tenant() {
        let stats = EgressStats::default();
        stats.record("a", Outcome::Success, 10, 100);
        stats.record("a", Outcome::Denied, 0, 0);
        stats.record("b", Outcome::Failed, 0, 7);
        assert_eq!(
            stats.tenant("a"),
            TenantEgress {
                requests: 2,
                denied: 1,
                failed: 0,
                bytes_sent: 10,
                bytes_received: 100
            }
        );
        assert_eq!(stats.tenant("b").failed, 1);
        assert_eq!(stats.tenant("none"), TenantEgress::default());
        assert_eq!(
            stats.snapshot().iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
