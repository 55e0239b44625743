//! The engine's gauges, read when scraped: compile work and the compiled
//! components in memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::{Loaded, Runtime, Stats};
use crate::metrics::{Gauges, Scraped};

const COMPILES: Scraped = Scraped {
    name: "ext_runner_compiles",
    help: "Components compiled since start-up.",
};
const COMPILE_SECONDS: Scraped = Scraped {
    name: "ext_runner_compile_seconds",
    help: "Time spent compiling components since start-up.",
};
const ARTIFACT_LOADS: Scraped = Scraped {
    name: "ext_runner_artifact_loads",
    help: "Components loaded from the verified artifact cache since start-up.",
};
const COMPONENTS_LOADED: Scraped = Scraped {
    name: "ext_runner_components_loaded",
    help: "Compiled components in memory (bounded by RUNNER_MAX_LOADED_COMPONENTS).",
};
const COMPONENT_UNLOADS: Scraped = Scraped {
    name: "ext_runner_component_unloads",
    help: "Compiled components dropped from memory to stay within RUNNER_MAX_LOADED_COMPONENTS.",
};
const PRECOMPILED_LOADS: Scraped = Scraped {
    name: "ext_runner_precompiled_loads",
    help: "Components loaded from a signed bundle's own precompiled artifact.",
};

/// The runtime's compile counters and component cache, shared with it.
pub struct EngineGauges {
    stats: Arc<Stats>,
    components: Arc<Mutex<Loaded>>,
}

impl std::fmt::Debug for EngineGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineGauges")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The [`Collector`] of the engine's gauges.
    pub fn gauges(&self) -> EngineGauges {
        EngineGauges {
            stats: self.stats.clone(),
            components: self.components.clone(),
        }
    }
}

impl Gauges for EngineGauges {
    const FAMILIES: &'static [Scraped] = &[
        COMPILES,
        COMPILE_SECONDS,
        ARTIFACT_LOADS,
        COMPONENTS_LOADED,
        COMPONENT_UNLOADS,
        PRECOMPILED_LOADS,
    ];
}

impl Collector for EngineGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let stats = &self.stats;
        let loaded = self.components.lock().unwrap_or_else(PoisonError::into_inner).loaded();
        COMPILES.encode(&mut encoder, load(&stats.compiles))?;
        COMPILE_SECONDS.encode(&mut encoder, load(&stats.compile_nanos) as f64 / 1e9)?;
        ARTIFACT_LOADS.encode(&mut encoder, load(&stats.artifact_loads))?;
        COMPONENTS_LOADED.encode(&mut encoder, loaded as u64)?;
        COMPONENT_UNLOADS.encode(&mut encoder, load(&stats.unloads))?;
        PRECOMPILED_LOADS.encode(&mut encoder, load(&stats.precompiled_loads))
    }
}
