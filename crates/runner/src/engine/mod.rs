//! The shared Wasmtime engine, its compiled-component cache and per-request
//! execution under limits.
//!
//! One [`Engine`](wasmtime::Engine) and one [`Linker`] per process. A
//! component is compiled (or loaded from the verified artifact cache) once
//! per (content hash, component path) and kept as a pre-instantiated
//! [`RunnerPre`]; each execution then costs a fresh store plus an instance
//! from the pooling allocator, nothing more.
//!
//! Modules: `artifacts` (integrity-checked on-disk cache of compiled code),
//! `ticker` (the single epoch thread).

mod artifacts;
mod ticker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ext_bundle::Digest;
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};

use crate::error::ErrorCode;
use crate::host::bindings::RunnerPre;
use crate::host::bindings::types::{ExecuteRequest, ExecuteResponse};
use crate::host::{self, Invocation};
use crate::limits::{
    ASYNC_STACK_BYTES, MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, MAX_TABLE_ELEMENTS,
    MAX_TABLES_PER_COMPONENT, MAX_WASM_STACK_BYTES,
};

pub use artifacts::ArtifactCache;
pub(crate) use artifacts::write_atomically;

/// A failure with the code a client will see and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// Identifies a compiled component: the bundle and the file inside it.
pub type ComponentKey = (Digest, String);

/// A component ready to instantiate: compiled, checked and linked.
pub type Prepared = Arc<RunnerPre<Invocation>>;

/// Time and fuel for one execution, already clamped by the operator's
/// maxima. (Memory is enforced by the store's limiter in [`Invocation`].)
#[derive(Clone, Copy, Debug)]
pub struct ExecLimits {
    /// Wall time from the start of instantiation to the handler's return.
    pub timeout: std::time::Duration,
    pub fuel: Option<u64>,
}

/// What one execution used: returned with every outcome, for the execute
/// response's `report`, the metrics and the request's log line.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ExecutionReport {
    /// Wall time from store creation to the handler's return.
    pub wall_ms: f64,
    /// Fuel consumed (Wasmtime units; every execution is metered).
    pub fuel_used: u64,
    /// Largest linear memory the guest was granted.
    pub peak_memory_bytes: u64,
    /// Host calls by interface.
    pub host_calls: std::collections::BTreeMap<&'static str, u32>,
    /// Bytes sent and received through `http.fetch`.
    pub egress_bytes: u64,
    /// Guest log lines or output dropped by the caps.
    pub logs_truncated: bool,
    /// The limit that stopped the guest, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_hit: Option<&'static str>,
}

/// Engine-wide sizing, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct EngineLimits {
    /// Executions in flight at once; sizes the pooling allocator.
    pub max_concurrency: u32,
    /// Largest linear memory any guest may have.
    pub max_memory_bytes: usize,
}

/// The process's engine, linker and compiled-component cache.
pub struct Runtime {
    engine: wasmtime::Engine,
    /// Linked once at start-up; every component is pre-instantiated with it.
    linker: Linker<Invocation>,
    /// Single-flight compile cache: concurrent first requests for the same
    /// component wait on one cell and compile once. Failures are not cached.
    components: Mutex<HashMap<ComponentKey, Arc<OnceCell<Prepared>>>>,
    /// Compiled code on disk, keyed by content hash + engine compatibility.
    artifacts: ArtifactCache,
    /// Compile and artifact-cache counters (for metrics and tests).
    stats: Arc<Stats>,
    /// Increments the engine epoch every [`crate::limits::EPOCH_TICK`].
    _ticker: ticker::EpochTicker,
}

/// How components were obtained since start-up.
#[derive(Debug, Default)]
pub struct Stats {
    /// Components compiled by Cranelift.
    pub compiles: AtomicU64,
    /// Components loaded from the verified artifact cache instead.
    pub artifact_loads: AtomicU64,
    /// Components loaded from a signed bundle's own precompiled artifact.
    pub precompiled_loads: AtomicU64,
    /// Time spent in Cranelift, in nanoseconds.
    pub compile_nanos: AtomicU64,
}

/// Where a component's code comes from: its wasm (read lazily, only when it
/// must be compiled) and, when the operator trusts it for this bundle, the
/// bundle's own precompiled artifact.
pub struct ComponentSource {
    pub wasm: ReadBytes,
    pub precompiled: Option<ReadBytes>,
}

/// Reads one file of a verified bundle, on the compile thread.
pub type ReadBytes = Box<dyn FnOnce() -> Result<Vec<u8>, Failure> + Send>;

/// Name of the precompiled artifact for this host inside a bundle
/// (`precompiled/<arch>-<os>.cwasm`) and of its engine-tag file.
pub fn precompiled_paths() -> (String, String) {
    let target = format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS);
    (
        format!("precompiled/{target}.cwasm"),
        format!("precompiled/{target}.engine"),
    )
}

impl Runtime {
    /// Build the engine (pooling allocator, epochs, fuel, closed-off
    /// proposals), the linker and the artifact cache under `cache_dir`.
    ///
    /// # Errors
    /// If Wasmtime rejects the configuration (e.g. not enough address space
    /// for the pool) or the cache directory cannot be created.
    pub fn new(limits: EngineLimits, cache_dir: &Path) -> anyhow::Result<Runtime> {
        let engine = wasmtime::Engine::new(&engine_config(limits)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let linker = host::build_linker(&engine).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let artifacts = ArtifactCache::open(&engine, &cache_dir.join("compiled"))?;
        let ticker = ticker::EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            components: Mutex::default(),
            artifacts,
            stats: Arc::default(),
            _ticker: ticker,
        })
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// This engine's compatibility tag (see [`ArtifactCache::engine_tag`]).
    pub fn engine_tag(&self) -> &str {
        self.artifacts.engine_tag()
    }

    /// Compile a component for this engine and return the artifact bytes
    /// (`ext-runner compile`), after the same import check as at load.
    ///
    /// # Errors
    /// `component_invalid`, `unsupported_feature` or `unsupported_import`.
    pub fn precompile(&self, path: &str, wasm: &[u8]) -> Result<Vec<u8>, Failure> {
        let component = Component::new(&self.engine, wasm).map_err(|e| compile_failure(path, &e))?;
        host::check_imports(&self.engine, &component).map_err(|names| unsupported(path, &names))?;
        component
            .serialize()
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("{path}: serialize: {e}")))
    }

    /// The pre-instantiated component for `key`, compiling it from `wasm`
    /// (read lazily) on first use.
    ///
    /// # Errors
    /// `unsupported_import`, `unsupported_feature` or `component_invalid`.
    pub async fn component(&self, key: &ComponentKey, source: ComponentSource) -> Result<Prepared, Failure> {
        let cell = {
            let mut map = self.components.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let engine = self.engine.clone();
            let linker = self.linker.clone();
            let artifacts = self.artifacts.clone();
            let key = key.clone();
            let stats = self.stats.clone();
            // Compiling is CPU-bound (seconds for big guests): keep it off
            // the async workers.
            tokio::task::spawn_blocking(move || prepare(&engine, &linker, &artifacts, &stats, &key, source))
                .await
                .map_err(|e| Failure::new(ErrorCode::Internal, format!("compile task failed: {e}")))?
                .map(Arc::new)
        })
        .await
        .cloned()
    }

    /// Run the handler once in a fresh store under `limits`.
    ///
    /// The epoch callback interrupts guest code at the first tick past the
    /// deadline; the outer timeout also covers time spent inside host calls.
    ///
    /// # Errors
    /// A [`Failure`] with the matching code: timeouts, fuel, traps, memory.
    pub async fn execute(
        &self,
        pre: &RunnerPre<Invocation>,
        invocation: Invocation,
        request: ExecuteRequest,
        limits: ExecLimits,
    ) -> (Result<ExecuteResponse, Failure>, ExecutionReport) {
        let started = Instant::now();
        let mut store = Store::new(&self.engine, invocation);
        store.limiter(|s| &mut s.limiter);
        let fuel_budget = limits.fuel.unwrap_or(u64::MAX);
        if let Err(e) = store.set_fuel(fuel_budget) {
            return (
                Err(Failure::new(ErrorCode::Internal, format!("fuel: {e}"))),
                ExecutionReport::default(),
            );
        }
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            // Yielding every tick lets the async timeout and other requests
            // run even while this guest spins.
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        let run = async {
            let runner = match pre.instantiate_async(&mut store).await {
                Ok(runner) => runner,
                Err(e) => return Err(InstantiateOrCall::Instantiate(e)),
            };
            runner
                .call_handler(&mut store, &request)
                .await
                .map_err(InstantiateOrCall::Call)
        };
        let outcome = tokio::time::timeout_at(deadline.into(), run).await;
        let result = match outcome {
            Err(_elapsed) => Err(Failure::new(
                ErrorCode::ExecutionTimeout,
                "execution exceeded its time limit",
            )),
            Ok(Ok(response)) => Ok(response),
            // Start-up code (component initialisers) runs under the same
            // fuel and deadline: running out there is the same limit.
            Ok(Err(InstantiateOrCall::Instantiate(error)))
                if matches!(error.downcast_ref::<Trap>(), Some(Trap::OutOfFuel | Trap::Interrupt)) =>
            {
                Err(classify_trap(&error, false))
            }
            Ok(Err(InstantiateOrCall::Instantiate(error))) => Err(Failure::new(
                ErrorCode::InstantiationFailed,
                format!("instantiation failed: {}", error.root_cause()),
            )),
            Ok(Err(InstantiateOrCall::Call(error))) => Err(classify_trap(&error, store.data().limiter.memory_refused)),
        };
        let truncated = store.data().flush_output();
        let data = store.data();
        let report = ExecutionReport {
            wall_ms: started.elapsed().as_secs_f64() * 1000.0,
            fuel_used: fuel_budget.saturating_sub(store.get_fuel().unwrap_or(0)),
            peak_memory_bytes: data.limiter.peak_memory_bytes as u64,
            host_calls: data.host_calls.clone(),
            egress_bytes: data.egress_bytes,
            logs_truncated: truncated,
            limit_hit: match &result {
                Err(f) => match f.code {
                    ErrorCode::ExecutionTimeout => Some("timeout"),
                    ErrorCode::FuelExhausted => Some("fuel"),
                    ErrorCode::MemoryLimitExceeded => Some("memory"),
                    _ => None,
                },
                Ok(_) => None,
            },
        };
        (result, report)
    }
}

/// Which half of an execution failed: instantiation (limits on initial
/// memory or tables, pool exhaustion) or the handler call itself.
enum InstantiateOrCall {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

fn classify_trap(error: &wasmtime::Error, memory_refused: bool) -> Failure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::new(ErrorCode::ExecutionTimeout, "execution exceeded its time limit"),
        Some(Trap::OutOfFuel) => Failure::new(ErrorCode::FuelExhausted, "execution exhausted its fuel limit"),
        _ if memory_refused => Failure::new(
            ErrorCode::MemoryLimitExceeded,
            "the extension tried to grow its memory beyond the limit and trapped",
        ),
        Some(Trap::StackOverflow) => Failure::new(ErrorCode::ExtensionTrap, "extension trapped: stack overflow"),
        Some(trap) => Failure::new(ErrorCode::ExtensionTrap, format!("extension trapped: {trap}")),
        None => Failure::new(
            ErrorCode::ExtensionTrap,
            format!("extension failed: {}", error.root_cause()),
        ),
    }
}

/// Compile (or load) one component and pre-instantiate it.
fn prepare(
    engine: &wasmtime::Engine,
    linker: &Linker<Invocation>,
    artifacts: &ArtifactCache,
    stats: &Stats,
    key: &ComponentKey,
    source: ComponentSource,
) -> Result<RunnerPre<Invocation>, Failure> {
    let (digest, path) = key;
    let supplied = source.precompiled.and_then(|read| match read() {
        Ok(bytes) => match artifacts::load_supplied(engine, &bytes) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(content_hash = %digest, component = %path, error = %e, "bundle's precompiled artifact rejected; compiling instead");
                None
            }
        },
        Err(f) => {
            tracing::warn!(content_hash = %digest, component = %path, error = %f.message, "bundle's precompiled artifact unreadable; compiling instead");
            None
        }
    });
    let component = match supplied {
        Some(component) => {
            stats.precompiled_loads.fetch_add(1, Ordering::Relaxed);
            component
        }
        None => match artifacts.load(engine, digest, path) {
            Some(component) => {
                stats.artifact_loads.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                let bytes = (source.wasm)()?;
                stats.compiles.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let component = Component::new(engine, &bytes).map_err(|e| compile_failure(path, &e))?;
                stats
                    .compile_nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                tracing::info!(content_hash = %digest, component = %path, elapsed_ms = started.elapsed().as_millis() as u64, "compiled component");
                host::check_imports(engine, &component).map_err(|names| unsupported(path, &names))?;
                if let Err(e) = artifacts.store(digest, path, &component) {
                    // The cache only saves time; a failed write must not fail the request.
                    tracing::warn!(content_hash = %digest, component = %path, error = %e, "could not persist compiled artifact");
                }
                component
            }
        },
    };
    host::check_imports(engine, &component).map_err(|names| unsupported(path, &names))?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| Failure::new(ErrorCode::UnsupportedImport, format!("{path}: cannot link: {e}")))?;
    RunnerPre::new(instance_pre).map_err(|e| {
        Failure::new(
            ErrorCode::ComponentInvalid,
            format!("{path}: does not export `handler: func(execute-request) -> execute-response` of world alga:extension/runner: {e}"),
        )
    })
}

fn unsupported(path: &str, names: &str) -> Failure {
    Failure::new(
        ErrorCode::UnsupportedImport,
        format!("{path}: imports interfaces this runner does not provide: {names}"),
    )
}

fn compile_failure(path: &str, error: &wasmtime::Error) -> Failure {
    let detail = format!("{error:#}");
    let code = if detail.contains("not enabled") || detail.contains("feature") {
        ErrorCode::UnsupportedFeature
    } else {
        ErrorCode::ComponentInvalid
    };
    Failure::new(code, format!("{path}: not a loadable component: {detail}"))
}

fn engine_config(limits: EngineLimits) -> Config {
    let n = limits.max_concurrency;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
        .total_memories(n.saturating_mul(MAX_MEMORIES_PER_COMPONENT))
        .total_tables(n.saturating_mul(MAX_TABLES_PER_COMPONENT))
        .total_stacks(n)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_tables_per_module(4)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(limits.max_memory_bytes);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(true)
        .max_wasm_stack(MAX_WASM_STACK_BYTES)
        .async_stack_size(ASYNC_STACK_BYTES)
        // a recycled fiber stack never shows one tenant's data to the next.
        .async_stack_zeroing(true)
        // proposals no extension needs stay off, so components using
        // them are refused at load instead of widening the attack surface.
        .wasm_gc(false)
        .wasm_stack_switching(false)
        .wasm_memory64(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}
