//! The guest CPU settings: guest threads, the fair share's weights and the
//! start queue.

use std::collections::HashMap;

use crate::config::source::Source;
use crate::limits;

#[derive(Clone, Debug)]
pub struct CpuSettings {
    /// `RUNNER_GUEST_THREADS`: threads that run guest code (default: the
    /// available cores); also the CPU slices the fair share hands out.
    pub guest_threads: u32,
    /// `RUNNER_TENANT_CPU_QUEUE`: a tenant's executions that may wait for
    /// their first slice while other tenants compete.
    pub tenant_cpu_queue: u32,
    /// `RUNNER_TENANT_CPU_WEIGHTS`: `tenant=weight,…`; others weigh 1.
    pub tenant_cpu_weights: HashMap<String, u32>,
}

impl CpuSettings {
    pub fn from_source(source: &Source) -> CpuSettings {
        CpuSettings {
            guest_threads: source.number("RUNNER_GUEST_THREADS", available_cores(), 1..=limits::MAX_GUEST_THREADS)
                as u32,
            tenant_cpu_queue: source.number("RUNNER_TENANT_CPU_QUEUE", limits::DEFAULT_TENANT_CPU_QUEUE, 1..=10_000)
                as u32,
            tenant_cpu_weights: source.parsed("RUNNER_TENANT_CPU_WEIGHTS", "", parse_weights, HashMap::new()),
        }
    }
}

/// The default of `RUNNER_COMPILE_CONCURRENCY` (Cranelift is CPU-bound; see
/// `limits::COMPILE_TENANT_SHARE_DIVISOR`) and `RUNNER_GUEST_THREADS`: the
/// cores this process may use.
pub fn available_cores() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// `RUNNER_TENANT_CPU_WEIGHTS`: `tenant=weight` pairs separated by commas
/// (`acme=4,globex=2`), weights in 1..=[`limits::MAX_TENANT_CPU_WEIGHT`].
fn parse_weights(text: &str) -> Result<HashMap<String, u32>, String> {
    let mut weights = HashMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let shape = || format!("`{pair}` must be `<tenant id>=<weight>`, e.g. `acme=4`");
        let (tenant, weight) = pair.rsplit_once('=').ok_or_else(shape)?;
        let tenant = tenant.trim();
        if tenant.is_empty() || tenant.len() > limits::MAX_ID_BYTES {
            return Err(shape());
        }
        let weight = match weight.trim().parse::<u32>() {
            Ok(w) if (1..=limits::MAX_TENANT_CPU_WEIGHT).contains(&w) => w,
            _ => {
                return Err(format!(
                    "`{pair}`: the weight must be an integer in 1..={}",
                    limits::MAX_TENANT_CPU_WEIGHT
                ));
            }
        };
        if weights.insert(tenant.to_string(), weight).is_some() {
            return Err(format!("`{tenant}` is named twice"));
        }
    }
    Ok(weights)
}
