//! The revocation list's gauges, read when scraped.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::Revoked;
use crate::metrics::{Gauges, Scraped};

const REVOKED: Scraped = Scraped {
    name: "ext_runner_revoked_bundles",
    help: "Content hashes this runner refuses to run or serve (the registry's revocations).",
};
const SYNC_AGE: Scraped = Scraped {
    name: "ext_runner_revocations_sync_age_seconds",
    help: "Seconds since the registry last confirmed the revocation list (absent before the first sync).",
};
const SYNC_FAILURES: Scraped = Scraped {
    name: "ext_runner_revocation_sync_failures",
    help: "Revocation list refreshes that failed since start-up (the last known list stayed in force).",
};

impl Gauges for std::sync::Arc<Revoked> {
    const FAMILIES: &'static [Scraped] = &[REVOKED, SYNC_AGE, SYNC_FAILURES];
}

impl Collector for Revoked {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        REVOKED.encode(&mut encoder, self.len() as u64)?;
        if let Some(age) = self.since_sync() {
            SYNC_AGE.encode(&mut encoder, age.as_secs_f64())?;
        }
        SYNC_FAILURES.encode(&mut encoder, self.sync_failures())
    }
}
