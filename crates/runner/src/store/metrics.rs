//! The bundle store's series: failed cache writes (F-04), counted when they
//! happen, and the cache's size and traffic, read when scraped.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;

use super::Bundles;
use crate::metrics::{Capped, Gauges, Labels, Metrics, OVERFLOW, Scraped};

/// `cache`: `bundles` or `compiled`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Cache {
    cache: &'static str,
}

impl Labels for Cache {
    fn overflow() -> Self {
        Cache { cache: OVERFLOW }
    }
}

/// `ext_runner_cache_write_failures_total{cache}`, the F-04 alert series.
pub(crate) struct WriteFailures(Capped<Cache, Counter>);

impl WriteFailures {
    pub fn register(m: &Metrics) -> WriteFailures {
        WriteFailures(m.counters(
            "ext_runner_cache_write_failures",
            "Disk cache writes that failed (disk full, read-only, file size limit), by cache; alert on any increase.",
        ))
    }

    pub fn count(&self, cache: &'static str) {
        self.0.get_or_create(&Cache { cache }).inc();
    }
}

const CACHE_BYTES: Scraped = Scraped {
    name: "ext_runner_bundle_cache_bytes",
    help: "Bytes of verified bundles and compiled artifacts on disk (RUNNER_CACHE_MAX_BYTES).",
};
const FETCHES: Scraped = Scraped {
    name: "ext_runner_bundle_fetches",
    help: "Bundles fetched from the store since start-up (cache misses).",
};
const HITS: Scraped = Scraped {
    name: "ext_runner_bundle_cache_hits",
    help: "Bundle lookups answered from memory or disk.",
};
const EVICTIONS: Scraped = Scraped {
    name: "ext_runner_bundle_cache_evictions",
    help: "Bundles evicted from the disk cache.",
};

/// The bundle cache's size and traffic, read when scraped.
pub struct BundleGauges(Arc<Bundles>);

impl std::fmt::Debug for BundleGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleGauges").finish_non_exhaustive()
    }
}

impl Bundles {
    /// The [`Collector`] of the cache's gauges.
    pub fn gauges(self: &Arc<Self>) -> BundleGauges {
        BundleGauges(self.clone())
    }
}

impl Gauges for BundleGauges {
    const FAMILIES: &'static [Scraped] = &[CACHE_BYTES, FETCHES, HITS, EVICTIONS];
}

impl Collector for BundleGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let bundles = &self.0;
        CACHE_BYTES.encode(&mut encoder, bundles.cache().total_bytes())?;
        FETCHES.encode(&mut encoder, bundles.fetches())?;
        HITS.encode(&mut encoder, bundles.hits())?;
        EVICTIONS.encode(&mut encoder, bundles.evictions())
    }
}
