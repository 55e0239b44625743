//! Egress per tenant, read when scraped from the engine's counters.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::Shared;
use crate::metrics::{Gauges, MAX_SERIES_PER_FAMILY, OVERFLOW, Scraped};

const REQUESTS: Scraped = Scraped {
    name: "ext_runner_egress_requests",
    help: "http.fetch calls by tenant since start-up.",
};
const DENIED: Scraped = Scraped {
    name: "ext_runner_egress_denied",
    help: "http.fetch calls refused by policy, by tenant.",
};
const BYTES: Scraped = Scraped {
    name: "ext_runner_egress_bytes",
    help: "Bytes sent and received through http.fetch, by tenant.",
};

/// The egress engine's per-tenant counters, shared with it.
pub struct EgressGauges(Arc<ext_egress::EgressStats>);

impl std::fmt::Debug for EgressGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressGauges").finish_non_exhaustive()
    }
}

impl Shared {
    /// The [`Collector`] of egress per tenant.
    pub fn gauges(&self) -> EgressGauges {
        EgressGauges(self.stats().clone())
    }
}

impl Gauges for EgressGauges {
    const FAMILIES: &'static [Scraped] = &[REQUESTS, DENIED, BYTES];
}

/// M-01: the first [`MAX_SERIES_PER_FAMILY`] tenants (by id) keep series
/// of their own; the rest are summed into one `tenant="other"`.
fn capped(mut tenants: Vec<(String, ext_egress::TenantEgress)>) -> Vec<(String, ext_egress::TenantEgress)> {
    if tenants.len() > MAX_SERIES_PER_FAMILY {
        let rest = tenants.split_off(MAX_SERIES_PER_FAMILY);
        let mut other = ext_egress::TenantEgress::default();
        for (_, egress) in rest {
            other.requests += egress.requests;
            other.denied += egress.denied;
            other.failed += egress.failed;
            other.bytes_sent += egress.bytes_sent;
            other.bytes_received += egress.bytes_received;
        }
        tenants.push((OVERFLOW.to_string(), other));
    }
    tenants
}

impl Collector for EgressGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let tenants = capped(self.0.snapshot());
        let each = |value: fn(&ext_egress::TenantEgress) -> u64| {
            tenants
                .iter()
                .map(move |(tenant, egress)| ([("tenant", tenant.as_str())], value(egress)))
        };
        REQUESTS.encode_each(&mut encoder, each(|e| e.requests))?;
        DENIED.encode_each(&mut encoder, each(|e| e.denied))?;
        BYTES.encode_each(&mut encoder, each(|e| e.bytes_sent + e.bytes_received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// M-01: tenants past the family cap are summed into one `other`
    /// series, so the scrape does not grow with the tenant population.
    #[test]
    fn m01_egress_tenants_beyond_the_cap_are_summed_into_other() {
        let one = ext_egress::TenantEgress {
            requests: 1,
            bytes_sent: 2,
            ..Default::default()
        };
        let tenants: Vec<_> = (0..MAX_SERIES_PER_FAMILY + 5)
            .map(|n| (format!("t{n:05}"), one))
            .collect();
        let capped = capped(tenants);
        assert_eq!(capped.len(), MAX_SERIES_PER_FAMILY + 1);
        assert_eq!(capped[0].0, "t00000");
        let (name, other) = capped.last().unwrap();
        assert_eq!((name.as_str(), other.requests, other.bytes_sent), ("other", 5, 10));
    }
}
