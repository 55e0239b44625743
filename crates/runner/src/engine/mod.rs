//! The shared Wasmtime engine, its compiled-component cache and per-request
//! execution under limits.
//!
//! One [`Engine`](wasmtime::Engine) and one [`Linker`] per process. A
//! component is compiled (or loaded from the verified artifact cache) once
//! per (content hash, component path) and kept pre-instantiated for its world
//! ([`RunnerPre`] for `alga:extension/runner`, [`ProxyPre`] for
//! `wasi:http/proxy`); each execution then costs a fresh store plus an
//! instance from the pooling allocator, nothing more.
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

use bytes::Bytes;
use ext_bundle::{Digest, World};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::OnceCell;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::error::ErrorCode;
use crate::host::bindings::RunnerPre;
use crate::host::bindings::types::{ExecuteRequest, ExecuteResponse, HttpHeader};
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
pub type Prepared = Arc<PreparedComponent>;

/// A pre-instantiated component, by the world it implements.
pub enum PreparedComponent {
    Runner(RunnerPre<Invocation>),
    Proxy(ProxyPre<Invocation>),
}

impl PreparedComponent {
    pub fn world(&self) -> World {
        match self {
            PreparedComponent::Runner(_) => World::Runner,
            PreparedComponent::Proxy(_) => World::Proxy,
        }
    }
}

/// What one execution hands the guest, by world.
pub enum GuestInput {
    /// `handler(execute-request)`.
    Runner(ExecuteRequest),
    /// `wasi:http/incoming-handler.handle`: the request, and the largest
    /// response body collected before the execution fails with
    /// `response_too_large`.
    Proxy {
        request: http::Request<Full<Bytes>>,
        max_response_bytes: u64,
    },
}

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
    /// Compiled components kept in memory (least recently used dropped).
    pub max_loaded_components: usize,
}

/// The process's engine, linker and compiled-component cache.
pub struct Runtime {
    engine: wasmtime::Engine,
    /// Linked once at start-up; every component is pre-instantiated with it.
    linker: Linker<Invocation>,
    /// Single-flight compile cache: concurrent first requests for the same
    /// component wait on one cell and compile once. Failures are not cached.
    /// Bounded: see [`Loaded`].
    components: Mutex<Loaded>,
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
    /// Compiled components dropped from memory to stay within the bound.
    pub unloads: AtomicU64,
}

/// The in-memory components, each with the tick of its last use. Past
/// `max` entries the least recently used loaded one is dropped: executions
/// holding it keep their `Arc`, and the next request reloads it from the
/// on-disk artifact cache (milliseconds, not a compile). Cells still
/// compiling are never dropped, so single-flight holds.
struct Loaded {
    cells: HashMap<ComponentKey, (Arc<OnceCell<Prepared>>, u64)>,
    tick: u64,
    max: usize,
}

impl Loaded {
    fn new(max: usize) -> Self {
        Loaded {
            cells: HashMap::new(),
            tick: 0,
            max: max.max(1),
        }
    }

    /// The cell for `key` (created if absent), marked as used now; and how
    /// many components were dropped to make room.
    fn cell(&mut self, key: &ComponentKey) -> (Arc<OnceCell<Prepared>>, u64) {
        self.tick += 1;
        let tick = self.tick;
        let cell = match self.cells.get_mut(key) {
            Some((cell, used)) => {
                *used = tick;
                return (cell.clone(), 0);
            }
            None => {
                let cell = Arc::new(OnceCell::new());
                self.cells.insert(key.clone(), (cell.clone(), tick));
                cell
            }
        };
        let mut dropped = 0;
        while self.cells.len() > self.max {
            let oldest = self
                .cells
                .iter()
                // Loaded, or failed and waited on by nobody (failures are
                // not cached); never one that is compiling.
                .filter(|(_, (cell, _))| cell.initialized() || Arc::strong_count(cell) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            let Some(oldest) = oldest else { break };
            self.cells.remove(&oldest);
            dropped += 1;
        }
        (cell, dropped)
    }

    fn loaded(&self) -> usize {
        self.cells.values().filter(|(cell, _)| cell.initialized()).count()
    }
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
            components: Mutex::new(Loaded::new(limits.max_loaded_components)),
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
    pub fn precompile(&self, path: &str, wasm: &[u8], world: World) -> Result<Vec<u8>, Failure> {
        let component = Component::new(&self.engine, wasm).map_err(|e| compile_failure(path, &e))?;
        host::check_imports(&self.engine, &component, world).map_err(|names| unsupported(path, &names))?;
        component
            .serialize()
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("{path}: serialize: {e}")))
    }

    /// The pre-instantiated component for `key`, compiling it from `wasm`
    /// (read lazily) on first use, linked for `world` (a bundle's manifest
    /// gives each component one world, so the key decides it).
    ///
    /// # Errors
    /// `unsupported_import`, `unsupported_feature` or `component_invalid`.
    pub async fn component(
        &self,
        key: &ComponentKey,
        source: ComponentSource,
        world: World,
    ) -> Result<Prepared, Failure> {
        let cell = {
            let mut loaded = self.components.lock().unwrap_or_else(|e| e.into_inner());
            let (cell, dropped) = loaded.cell(key);
            if dropped > 0 {
                self.stats.unloads.fetch_add(dropped, Ordering::Relaxed);
                tracing::debug!(dropped, "compiled components unloaded (RUNNER_MAX_LOADED_COMPONENTS)");
            }
            cell
        };
        cell.get_or_try_init(|| async {
            let engine = self.engine.clone();
            let linker = self.linker.clone();
            let artifacts = self.artifacts.clone();
            let key = key.clone();
            let stats = self.stats.clone();
            // Compiling is CPU-bound (seconds for big guests): keep it off
            // the async workers.
            tokio::task::spawn_blocking(move || prepare(&engine, &linker, &artifacts, &stats, &key, source, world))
                .await
                .map_err(|e| Failure::new(ErrorCode::Internal, format!("compile task failed: {e}")))?
                .map(Arc::new)
        })
        .await
        .cloned()
    }

    /// Compiled components in memory now (counted when asked: metrics, tests).
    pub fn loaded_components(&self) -> usize {
        self.components.lock().unwrap_or_else(|e| e.into_inner()).loaded()
    }

    /// Run the handler once in a fresh store under `limits`.
    ///
    /// The epoch callback interrupts guest code at the first tick past the
    /// deadline; the outer timeout also covers time spent inside host calls
    /// and, for a `wasi:http/proxy` component, reading its response body.
    ///
    /// # Errors
    /// A [`Failure`] with the matching code: timeouts, fuel, traps, memory,
    /// a missing or oversized response.
    pub async fn execute(
        &self,
        pre: &PreparedComponent,
        invocation: Invocation,
        input: GuestInput,
        limits: ExecLimits,
    ) -> (Result<ExecuteResponse, Failure>, ExecutionReport) {
        let started = Instant::now();
        let hostcall_fuel = invocation.hostcall_fuel;
        let mut store = Store::new(&self.engine, invocation);
        store.limiter(|s| &mut s.limiter);
        // what one guest→host call may make the host allocate.
        store.set_hostcall_fuel(hostcall_fuel);
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

        // A proxy component's response arrives through its outparam and its
        // body is read on a task of its own while the guest writes it.
        let mut collector: Option<tokio::task::JoinHandle<Result<ExecuteResponse, Failure>>> = None;
        let run = async {
            match (pre, input) {
                (PreparedComponent::Runner(pre), GuestInput::Runner(request)) => {
                    let runner = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(InstantiateOrCall::Instantiate)?;
                    runner
                        .call_handler(&mut store, &request)
                        .await
                        .map(Some)
                        .map_err(InstantiateOrCall::Call)
                }
                (
                    PreparedComponent::Proxy(pre),
                    GuestInput::Proxy {
                        request,
                        max_response_bytes,
                    },
                ) => {
                    let (sender, receiver) = tokio::sync::oneshot::channel();
                    let mut http = store.data_mut().http();
                    let resources = http
                        .new_incoming_request(wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http, request)
                        .and_then(|request| Ok((request, http.new_response_outparam(sender)?)));
                    let (request, outparam) = resources.map_err(InstantiateOrCall::Instantiate)?;
                    collector = Some(tokio::spawn(collect_proxy_response(receiver, max_response_bytes)));
                    let proxy = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(InstantiateOrCall::Instantiate)?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, request, outparam)
                        .await
                        .map(|()| None)
                        .map_err(InstantiateOrCall::Call)
                }
                _ => Err(InstantiateOrCall::Instantiate(wasmtime::Error::msg(
                    "the component's world and the request's do not match",
                ))),
            }
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
        let mut host_calls = data.host_calls.clone();
        let outbound = data.outbound.usage.clone();
        let outbound_requests = outbound.requests.load(std::sync::atomic::Ordering::Relaxed);
        if outbound_requests > 0 {
            host_calls.insert("wasi:http", outbound_requests);
        }
        let egress_bytes = outbound.bytes.load(std::sync::atomic::Ordering::Relaxed);
        let peak_memory_bytes = data.limiter.peak_memory_bytes as u64;
        let fuel_used = fuel_budget.saturating_sub(store.get_fuel().unwrap_or(0));
        // Dropping the store closes whatever the guest left open (an
        // unfinished body ends), so the collector cannot wait on it.
        drop(store);
        let result = match (result, collector) {
            (Ok(Some(response)), _) => Ok(response),
            (Ok(None), Some(collector)) => match tokio::time::timeout_at(deadline.into(), collector).await {
                Ok(Ok(collected)) => collected,
                Ok(Err(e)) => Err(Failure::new(ErrorCode::Internal, format!("response task failed: {e}"))),
                Err(_elapsed) => Err(Failure::new(
                    ErrorCode::ExecutionTimeout,
                    "execution exceeded its time limit while writing its response",
                )),
            },
            (Ok(None), None) => Err(Failure::new(ErrorCode::Internal, "no response collector")),
            // A guest that failed because its body stopped being read over
            // the cap is answered as the cap, not as its trap.
            (Err(failure), Some(collector)) if collector.is_finished() => match collector.await {
                Ok(Err(cap)) if cap.code == ErrorCode::ResponseTooLarge => Err(cap),
                _ => Err(failure),
            },
            (Err(failure), collector) => {
                if let Some(collector) = collector {
                    collector.abort();
                }
                Err(failure)
            }
        };
        let report = ExecutionReport {
            wall_ms: started.elapsed().as_secs_f64() * 1000.0,
            fuel_used,
            peak_memory_bytes,
            host_calls,
            egress_bytes,
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

/// A `wasi:http/proxy` guest's response: what it passed to
/// `response-outparam.set`, with its body read up to `max_bytes`.
async fn collect_proxy_response(
    receiver: tokio::sync::oneshot::Receiver<
        Result<http::Response<HyperOutgoingBody>, wasmtime_wasi_http::p2::bindings::http::types::ErrorCode>,
    >,
    max_bytes: u64,
) -> Result<ExecuteResponse, Failure> {
    let response = match receiver.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            return Err(Failure::new(
                ErrorCode::ExtensionNoResponse,
                format!("the wasi:http handler answered with an error instead of a response: {code:?}"),
            ));
        }
        Err(_) => {
            return Err(Failure::new(
                ErrorCode::ExtensionNoResponse,
                "the wasi:http handler returned without setting a response",
            ));
        }
    };
    let (parts, body) = response.into_parts();
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Failure::new(
                ErrorCode::ResponseTooLarge,
                format!("response body exceeds the limit of {max_bytes} bytes"),
            ));
        }
        Err(e) => {
            return Err(Failure::new(
                ErrorCode::ExtensionNoResponse,
                format!("the wasi:http handler did not finish its response body: {e}"),
            ));
        }
    };
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| HttpHeader {
            name: name.as_str().to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect();
    Ok(ExecuteResponse {
        status: parts.status.as_u16(),
        headers,
        body: Some(body.to_vec()),
    })
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
    world: World,
) -> Result<PreparedComponent, Failure> {
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
                host::check_imports(engine, &component, world).map_err(|names| unsupported(path, &names))?;
                if let Err(e) = artifacts.store(digest, path, &component) {
                    // The cache only saves time; a failed write must not fail the request.
                    tracing::warn!(content_hash = %digest, component = %path, error = %e, "could not persist compiled artifact");
                }
                component
            }
        },
    };
    host::check_imports(engine, &component, world).map_err(|names| unsupported(path, &names))?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| Failure::new(ErrorCode::UnsupportedImport, format!("{path}: cannot link: {e}")))?;
    match world {
        World::Runner => RunnerPre::new(instance_pre).map(PreparedComponent::Runner).map_err(|e| {
            Failure::new(
                ErrorCode::ComponentInvalid,
                format!("{path}: does not export `handler: func(execute-request) -> execute-response` of world alga:extension/runner: {e}"),
            )
        }),
        World::Proxy => ProxyPre::new(instance_pre).map(PreparedComponent::Proxy).map_err(|e| {
            Failure::new(
                ErrorCode::ComponentInvalid,
                format!("{path}: does not export `wasi:http/incoming-handler` of world wasi:http/proxy (the manifest's endpoint says `\"world\": \"wasi:http/proxy\"`): {e}"),
            )
        }),
    }
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
