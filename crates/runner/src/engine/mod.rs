//! The shared Wasmtime engine, its compiled-component cache and per-request
//! execution under limits.
//!
//! One [`Engine`](wasmtime::Engine) and one [`Linker`] per process. A
//! component is compiled (or loaded from the verified artifact cache) once
//! per [`ComponentKey`]: the SHA-256 of its own bytes, the world it is
//! linked for and where its native code comes from, never the bundle that
//! carries it, so every bundle with the same component shares one compile.
//! It is kept pre-instantiated for its world ([`RunnerPre`] for
//! `alga:extension/runner`, [`ProxyPre`] for `wasi:http/proxy`); each
//! execution then costs a fresh store plus an instance from the pooling
//! allocator, nothing more.
//!
//! Compiling is bounded: a compile runs on a task of its own that
//! fills the cache whatever happens to the requests waiting for it, takes a
//! slot of the compile pool (`pool`), and a component refused at load is
//! remembered, not compiled again.
//!
//! Modules: `artifacts` (integrity-checked on-disk cache of compiled code),
//! `pool` (compile slots, per-tenant share), `ticker` (the single epoch
//! thread).

mod artifacts;
pub mod metrics;
mod pool;
mod ticker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use ext_bundle::{Digest, World};
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::watch;
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
    ASYNC_STACK_BYTES, MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, MAX_REFUSAL_MESSAGE_BYTES,
    MAX_REMEMBERED_REFUSALS, MAX_TABLE_ELEMENTS, MAX_TABLES_PER_COMPONENT, MAX_WASM_STACK_BYTES,
};

pub use crate::error::Failure;
pub use crate::report::ExecutionReport;
pub(crate) use artifacts::write_atomically;
pub use artifacts::{ArtifactBudget, ArtifactCache, Unbudgeted};
pub use pool::tenant_share;

/// Identifies a compiled, linked component in memory: everything that
/// decides its code and how it is linked, and nothing about the bundle
/// carrying it, so two bundles with the same component bytes (another
/// manifest, another UI) share one compile and one entry. The engine's
/// configuration is not in it (one engine per process); the on-disk
/// artifacts carry its compatibility tag instead (`artifacts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ComponentKey {
    /// SHA-256 of the component file (from the bundle's verified index).
    pub component: Digest,
    /// The world it is checked against and pre-instantiated for (the
    /// manifest's, per endpoint): the same bytes linked for another world
    /// are another entry (or another refusal).
    pub world: World,
    /// Where its native code comes from.
    pub code: Code,
}

/// Where a component's native code comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// Compiled by this runner from the component's bytes (or loaded from
    /// its own artifact of them).
    Compiled,
    /// A signed bundle's own precompiled artifact, by that artifact's
    /// SHA-256: a bundle carrying the same component without it (or with
    /// another one) never runs its code.
    Supplied(Digest),
}

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

/// Engine-wide sizing, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct EngineLimits {
    /// Executions in flight at once; sizes the pooling allocator.
    pub max_concurrency: u32,
    /// Largest linear memory any guest may have.
    pub max_memory_bytes: usize,
    /// Compiled components kept in memory (least recently used dropped).
    pub max_loaded_components: usize,
    /// Compiles at once (`RUNNER_COMPILE_CONCURRENCY`).
    pub compile_concurrency: usize,
    /// Largest component file compiled (`RUNNER_MAX_COMPONENT_BYTES`).
    pub max_component_bytes: u64,
}

/// The engine's own settings (the rest of [`EngineLimits`] comes from the
/// execution limits).
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// `RUNNER_MAX_LOADED_COMPONENTS`: compiled components kept in memory.
    pub max_loaded_components: u32,
    /// `RUNNER_COMPILE_CONCURRENCY`: compiles at once (default: the
    /// available cores); a tenant holds at most half of them.
    pub compile_concurrency: u32,
    /// `RUNNER_MAX_COMPONENT_BYTES`: largest component file compiled.
    pub max_component_bytes: u64,
}

impl EngineSettings {
    pub fn from_source(source: &crate::config::source::Source) -> EngineSettings {
        let cores = crate::cpu::available_cores();
        EngineSettings {
            max_loaded_components: source.number(
                "RUNNER_MAX_LOADED_COMPONENTS",
                u64::from(crate::limits::DEFAULT_MAX_LOADED_COMPONENTS),
                1..=100_000,
            ) as u32,
            compile_concurrency: source.number(
                "RUNNER_COMPILE_CONCURRENCY",
                cores,
                1..=crate::limits::MAX_COMPILE_CONCURRENCY,
            ) as u32,
            max_component_bytes: source.bytes(
                "RUNNER_MAX_COMPONENT_BYTES",
                crate::limits::DEFAULT_MAX_COMPONENT_BYTES,
                1,
            ),
        }
    }
}

impl EngineLimits {
    /// The sizing the engine settings and execution limits ask for.
    ///
    /// # Errors
    /// If `RUNNER_MAX_MEMORY_MB` does not fit this platform's address size.
    pub fn new(engine: &EngineSettings, limits: &crate::limits::ExecutionLimits) -> anyhow::Result<EngineLimits> {
        Ok(EngineLimits {
            max_concurrency: limits.max_concurrency,
            max_loaded_components: engine.max_loaded_components as usize,
            max_memory_bytes: usize::try_from(limits.max_memory_mb * 1024 * 1024)?,
            compile_concurrency: engine.compile_concurrency as usize,
            max_component_bytes: engine.max_component_bytes,
        })
    }
}

/// Who is asking for a compile, and until when they may wait for a slot.
#[derive(Clone, Copy, Debug)]
pub struct Admission<'a> {
    /// The tenant whose share of the compile pool a compile takes.
    pub tenant: &'a str,
    /// The request's deadline: waiting for a compile slot counts against it.
    pub deadline: tokio::time::Instant,
}

/// The process's engine, linker and compiled-component cache.
pub struct Runtime {
    engine: wasmtime::Engine,
    /// Linked once at start-up; every component is pre-instantiated with it.
    linker: Linker<Invocation>,
    /// Single-flight compile cache by [`ComponentKey`]: concurrent first
    /// requests for the same component, from any bundles, wait for one
    /// compile task, which fills the cache even if all of them give up.
    /// Refusals are remembered; transient failures are not. Bounded: see
    /// [`Loaded`]. Shared with the compile tasks.
    components: Arc<Mutex<Loaded>>,
    /// Compiled code on disk, keyed by component hash + engine compatibility.
    artifacts: ArtifactCache,
    /// Compile slots (`RUNNER_COMPILE_CONCURRENCY`, per-tenant share).
    pool: Arc<pool::CompilePool>,
    /// `RUNNER_MAX_COMPONENT_BYTES`: larger components are refused unread.
    max_component_bytes: u64,
    /// Compile and artifact-cache counters (for metrics and tests).
    stats: Arc<Stats>,
    /// Where compiles' blocking work runs: the guest threads' runtime
    /// (their lower priority), or the caller's when `None`.
    compile_on: Option<tokio::runtime::Handle>,
    /// Increments the engine epoch every [`crate::limits::EPOCH_TICK`]:
    /// started by the first execution, so a process that never runs a
    /// guest (a gateway or registry without the runner role) wakes no
    /// thread a thousand times a second.
    ticker: OnceLock<ticker::EpochTicker>,
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
    /// Requests answered with a remembered refusal instead of a compile.
    pub refusals_remembered: AtomicU64,
    /// Requests that got no compile slot before their deadline (`compile_busy`).
    pub compile_busy: AtomicU64,
}

/// A compile's outcome, as its waiters see it.
type Outcome = Option<Result<Prepared, Failure>>;

/// One component in memory: being compiled (waiters watch the channel the
/// compile task answers on), or ready.
enum Cell {
    Compiling(watch::Receiver<Outcome>),
    Ready(Prepared),
}

/// What [`Runtime::known`] found without a new compile.
enum Known {
    Answer(Result<Prepared, Failure>),
    Compiling(watch::Receiver<Outcome>),
}

/// One try at a component: its answer, and whether it came from a compile
/// another request started (whose transient failure is not this one's).
struct Attempt {
    result: Result<Prepared, Failure>,
    joined: bool,
}

/// What the cache knows about a component now.
enum Lookup {
    Ready(Prepared),
    Refused(Failure),
    Compiling(watch::Receiver<Outcome>),
    Absent,
}

/// The in-memory components, each with the tick of its last use. Past
/// `max` entries the least recently used ready one is dropped: executions
/// holding it keep their `Arc`, and the next request reloads it from the
/// on-disk artifact cache (milliseconds, not a compile). Cells still
/// compiling are never dropped, so single-flight holds. Refusals are kept
/// apart, at most [`MAX_REMEMBERED_REFUSALS`] of them.
struct Loaded {
    cells: HashMap<ComponentKey, (Cell, u64)>,
    refused: HashMap<ComponentKey, (Failure, u64)>,
    tick: u64,
    max: usize,
}

impl Loaded {
    fn new(max: usize) -> Self {
        Loaded {
            cells: HashMap::new(),
            refused: HashMap::new(),
            tick: 0,
            max: max.max(1),
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// What is known about `key`, marking it used now.
    fn lookup(&mut self, key: &ComponentKey) -> Lookup {
        let tick = self.next_tick();
        if let Some((failure, used)) = self.refused.get_mut(key) {
            *used = tick;
            return Lookup::Refused(failure.clone());
        }
        match self.cells.get_mut(key) {
            Some((Cell::Ready(prepared), used)) => {
                *used = tick;
                Lookup::Ready(prepared.clone())
            }
            Some((Cell::Compiling(receiver), _)) => Lookup::Compiling(receiver.clone()),
            None => Lookup::Absent,
        }
    }

    fn start(&mut self, key: &ComponentKey, receiver: watch::Receiver<Outcome>) {
        let tick = self.next_tick();
        self.cells.insert(*key, (Cell::Compiling(receiver), tick));
    }

    /// Record a compile's outcome; returns how many ready components were
    /// dropped to make room.
    fn finish(&mut self, key: &ComponentKey, outcome: &Result<Prepared, Failure>) -> u64 {
        let tick = self.next_tick();
        match outcome {
            Ok(prepared) => {
                self.cells.insert(*key, (Cell::Ready(prepared.clone()), tick));
            }
            Err(failure) => {
                self.cells.remove(key);
                if is_refusal(failure.code) {
                    self.refuse(key, failure, tick);
                }
            }
        }
        let mut dropped = 0;
        while self.cells.len() > self.max {
            let oldest = self
                .cells
                .iter()
                .filter(|(_, (cell, _))| matches!(cell, Cell::Ready(_)))
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| *key);
            let Some(oldest) = oldest else { break };
            self.cells.remove(&oldest);
            dropped += 1;
        }
        dropped
    }

    /// A compile task ended without an outcome (cancelled at shutdown).
    fn abandon(&mut self, key: &ComponentKey) {
        if matches!(self.cells.get(key), Some((Cell::Compiling(_), _))) {
            self.cells.remove(key);
        }
    }

    fn refuse(&mut self, key: &ComponentKey, failure: &Failure, tick: u64) {
        if self.refused.len() >= MAX_REMEMBERED_REFUSALS
            && let Some(oldest) = self
                .refused
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| *key)
        {
            self.refused.remove(&oldest);
        }
        let mut message = failure.message.clone();
        if message.len() > MAX_REFUSAL_MESSAGE_BYTES {
            let mut cut = MAX_REFUSAL_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.refused.insert(*key, (Failure::new(failure.code, message), tick));
    }

    fn loaded(&self) -> usize {
        self.cells
            .values()
            .filter(|(cell, _)| matches!(cell, Cell::Ready(_)))
            .count()
    }
}

/// Failures that are properties of the component's bytes (and world), so
/// the same [`ComponentKey`] fails the same way every time: remembered.
/// Anything else (a read error, a changed file, a failed task) may pass on
/// the next try and is not.
fn is_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::UnsupportedImport
            | ErrorCode::UnsupportedFeature
            | ErrorCode::ComponentInvalid
            | ErrorCode::ComponentTooLarge
    )
}

/// Removes a compile's cell if its task is dropped before it reports (the
/// runtime shutting down), so no waiter waits on a dead cell.
struct Abandon {
    components: Arc<Mutex<Loaded>>,
    key: Option<ComponentKey>,
}

impl Abandon {
    /// The task reports its own outcome: nothing to clean up.
    fn disarm(mut self) -> Self {
        self.key = None;
        self
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.components).abandon(&key);
        }
    }
}

fn lock(components: &Mutex<Loaded>) -> std::sync::MutexGuard<'_, Loaded> {
    components.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a component's code comes from: its wasm (read lazily, only when it
/// must be compiled) and, when the operator trusts it for this bundle, the
/// bundle's own precompiled artifact.
pub struct ComponentSource {
    /// The bundle asking, for logs only (not in the key).
    pub bundle: Digest,
    /// The component's path in that bundle, for messages and logs only
    /// (not in the key): failures are remembered without it and each
    /// request's answer names its own path.
    pub path: String,
    pub wasm: ReadBytes,
    pub precompiled: Option<SuppliedArtifact>,
    /// The component file's SHA-256 (from the bundle's verified index):
    /// the key of its compiled code, in memory and on disk.
    pub sha256: Digest,
    /// The component file's size in bytes (from the same index), checked
    /// against `RUNNER_MAX_COMPONENT_BYTES` before anything is read.
    pub bytes: u64,
}

/// A bundle's own precompiled artifact the operator trusts.
pub struct SuppliedArtifact {
    /// The artifact file's SHA-256 (from the bundle's verified index).
    pub sha256: Digest,
    pub read: ReadBytes,
}

impl ComponentSource {
    /// The cache key of this component linked for `world`.
    pub fn key(&self, world: World) -> ComponentKey {
        ComponentKey {
            component: self.sha256,
            world,
            code: self
                .precompiled
                .as_ref()
                .map_or(Code::Compiled, |supplied| Code::Supplied(supplied.sha256)),
        }
    }
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
    /// proposals), the linker, the compile pool and the artifact cache
    /// under `cache_dir`, whose disk use `budget` accounts. Compiles run on
    /// `compile_on`'s blocking threads (or the caller's runtime).
    ///
    /// # Errors
    /// If Wasmtime rejects the configuration (e.g. not enough address space
    /// for the pool) or the cache directory cannot be created.
    pub fn new(
        limits: EngineLimits,
        cache_dir: &Path,
        budget: Arc<dyn ArtifactBudget>,
        compile_on: Option<tokio::runtime::Handle>,
    ) -> anyhow::Result<Runtime> {
        let engine = wasmtime::Engine::new(&engine_config(limits)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let linker = host::build_linker(&engine).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let artifacts = ArtifactCache::open(&engine, &cache_dir.join("compiled"), budget)?;
        Ok(Runtime {
            engine,
            linker,
            components: Arc::new(Mutex::new(Loaded::new(limits.max_loaded_components))),
            artifacts,
            pool: pool::CompilePool::new(limits.compile_concurrency),
            max_component_bytes: limits.max_component_bytes,
            stats: Arc::default(),
            compile_on,
            ticker: OnceLock::new(),
        })
    }

    /// Whether the epoch thread runs: from the first execution on.
    pub fn epoch_ticking(&self) -> bool {
        self.ticker.get().is_some()
    }

    /// Compiles running now (bounded by `RUNNER_COMPILE_CONCURRENCY`).
    pub fn compiles_in_progress(&self) -> usize {
        self.pool.in_use()
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
        let component = Component::new(&self.engine, wasm).map_err(|e| at(path, compile_failure(wasm, &e)))?;
        host::check_imports(&self.engine, &component, world).map_err(|names| at(path, unsupported(&names)))?;
        component
            .serialize()
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("{path}: serialize: {e}")))
    }

    /// The pre-instantiated component of `source` linked for `world`,
    /// compiling it from its wasm (read lazily) on first use.
    ///
    /// Cached by [`ComponentSource::key`] (the component's own SHA-256, the
    /// world, where its code comes from), so the first request of any
    /// bundle carrying the same component compiles it and every other one
    /// reuses it. The compile runs on a task of its own holding a slot of
    /// the compile pool: it completes and fills the cache even if every
    /// caller gives up, and later callers wait for it instead of compiling
    /// again. A caller waits for a free slot (within its tenant's share)
    /// until its deadline. A refusal is remembered for the key; its message
    /// names the component's path in the asking bundle.
    ///
    /// # Errors
    /// `unsupported_import`, `unsupported_feature`, `component_invalid`,
    /// `component_too_large`, or `compile_busy` when no slot freed in time.
    pub async fn component(
        &self,
        source: ComponentSource,
        world: World,
        admission: Admission<'_>,
    ) -> Result<Prepared, Failure> {
        let key = source.key(world);
        let path = source.path.clone();
        let mut source = Some(source);
        let mut attempt = self.component_at(key, &mut source, admission).await;
        // A compile this request joined failed for a reason that is not the
        // component's (the starting request's bundle files unreadable or
        // changed on disk, a failed task): that bundle's trouble, not this
        // one's. Try once more with this bundle's own files.
        if attempt.joined && attempt.result.as_ref().is_err_and(|f| !is_refusal(f.code)) && source.is_some() {
            attempt = self.component_at(key, &mut source, admission).await;
            if attempt.joined && attempt.result.as_ref().is_err_and(|f| !is_refusal(f.code)) {
                // Joined someone else's failing compile twice: say so, and
                // nothing of theirs (a bundle's hash, its files).
                attempt.result = Err(Failure::new(
                    ErrorCode::CompileBusy,
                    "compiling this component failed for another request; retry shortly",
                ));
            }
        }
        attempt.result.map_err(|failure| {
            // Cached and shared failures carry no path: each bundle's answer
            // names its own file.
            if is_refusal(failure.code) {
                at(&path, failure)
            } else {
                failure
            }
        })
    }

    /// [`Self::component`] once, its failures without the path. `source`
    /// is taken only if this request starts the compile.
    async fn component_at(
        &self,
        key: ComponentKey,
        source: &mut Option<ComponentSource>,
        admission: Admission<'_>,
    ) -> Attempt {
        let mine = |result| Attempt { result, joined: false };
        let receiver = match self.known(&key) {
            Some(Known::Answer(result)) => return mine(result),
            Some(Known::Compiling(receiver)) => receiver,
            None => {
                // Copied out: the source (not `Sync`) is not borrowed across
                // the wait for a slot.
                let Some((bytes, bundle, path)) = source.as_ref().map(|s| (s.bytes, s.bundle, s.path.clone())) else {
                    // Only a second try reaches here, and only with its source.
                    return mine(Err(Failure::new(ErrorCode::Internal, "component source already used")));
                };
                if bytes > self.max_component_bytes {
                    let failure = Failure::new(
                        ErrorCode::ComponentTooLarge,
                        format!(
                            "the component is {bytes} bytes, over this runner's limit of {} bytes (RUNNER_MAX_COMPONENT_BYTES)",
                            self.max_component_bytes
                        ),
                    );
                    let mut loaded = lock(&self.components);
                    let tick = loaded.next_tick();
                    loaded.refuse(&key, &failure, tick);
                    return mine(Err(failure));
                }
                // Only a compile takes a slot: loading a verified artifact
                // from disk costs milliseconds.
                let permit = if self.artifacts.contains(&key.component) {
                    None
                } else {
                    match self.pool.acquire(admission.tenant, admission.deadline).await {
                        Some(permit) => Some(permit),
                        None => {
                            self.stats.compile_busy.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(content_hash = %bundle, component = %path, component_sha256 = %key.component, tenant = admission.tenant, "no compile slot before the request's deadline");
                            return mine(Err(Failure::new(
                                ErrorCode::CompileBusy,
                                "every compile slot this tenant may use stayed busy until the request's deadline; retry shortly",
                            )));
                        }
                    }
                };
                let started = {
                    let mut loaded = lock(&self.components);
                    match loaded.lookup(&key) {
                        // Another request started (or finished) it while
                        // this one waited for a slot; the slot goes back
                        // unused.
                        Lookup::Ready(prepared) => return mine(Ok(prepared)),
                        Lookup::Refused(failure) => return mine(Err(failure)),
                        Lookup::Compiling(receiver) => Err(receiver),
                        Lookup::Absent => {
                            let source = source.take().expect("checked above");
                            let (sender, receiver) = watch::channel(None);
                            loaded.start(&key, receiver.clone());
                            self.spawn_compile(key, source, permit, sender);
                            Ok(receiver)
                        }
                    }
                };
                match started {
                    Ok(receiver) => return mine(wait(receiver).await),
                    Err(receiver) => receiver,
                }
            }
        };
        Attempt {
            result: wait(receiver).await,
            joined: true,
        }
    }

    /// The answer for `key` if it needs no new compile: ready, refused, or
    /// a compile in progress to wait for.
    fn known(&self, key: &ComponentKey) -> Option<Known> {
        let lookup = lock(&self.components).lookup(key);
        match lookup {
            Lookup::Ready(prepared) => {
                // Keep its artifact recent in the disk budget's LRU order.
                self.artifacts.touch(&key.component);
                Some(Known::Answer(Ok(prepared)))
            }
            Lookup::Refused(failure) => {
                self.stats.refusals_remembered.fetch_add(1, Ordering::Relaxed);
                Some(Known::Answer(Err(failure)))
            }
            Lookup::Compiling(receiver) => Some(Known::Compiling(receiver)),
            Lookup::Absent => None,
        }
    }

    /// Compile (or load) on a detached task; its outcome fills the cache
    /// and is sent to every waiter.
    fn spawn_compile(
        &self,
        key: ComponentKey,
        source: ComponentSource,
        permit: Option<pool::CompilePermit>,
        sender: watch::Sender<Outcome>,
    ) {
        let engine = self.engine.clone();
        let linker = self.linker.clone();
        let artifacts = self.artifacts.clone();
        let stats = self.stats.clone();
        let task_stats = stats.clone();
        let components = self.components.clone();
        let compile_on = self.compile_on.clone().unwrap_or_else(tokio::runtime::Handle::current);
        let abandon = Abandon {
            components: components.clone(),
            key: Some(key),
        };
        tokio::spawn(async move {
            // Compiling is CPU-bound (seconds for big guests): keep it off
            // the async workers. The slot is held until Cranelift is done.
            let outcome = compile_on
                .spawn_blocking(move || {
                    let _permit = permit;
                    prepare(&engine, &linker, &artifacts, &task_stats, key, source)
                })
                .await
                .map_err(|e| Failure::new(ErrorCode::Internal, format!("compile task failed: {e}")))
                .and_then(|prepared| prepared.map(Arc::new));
            drop(abandon.disarm());
            let dropped = lock(&components).finish(&key, &outcome);
            if dropped > 0 {
                stats.unloads.fetch_add(dropped, Ordering::Relaxed);
                tracing::debug!(dropped, "compiled components unloaded (RUNNER_MAX_LOADED_COMPONENTS)");
            }
            let _ = sender.send(Some(outcome));
        });
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
    pub fn execute(
        &self,
        pre: Prepared,
        invocation: Invocation,
        input: GuestInput,
        limits: ExecLimits,
    ) -> impl std::future::Future<Output = (Result<ExecuteResponse, Failure>, ExecutionReport)> + Send + 'static {
        self.ticker
            .get_or_init(|| ticker::EpochTicker::start(self.engine.clone()));
        run_guest(self.engine.clone(), pre, invocation, input, limits)
    }
}

/// A proxy component's response body, read on a task of its own while the
/// guest writes it.
type Collector = tokio::task::JoinHandle<Result<ExecuteResponse, Failure>>;

/// [`Runtime::execute`]'s future: owns everything it touches, so it can run
/// on the guest threads.
async fn run_guest(
    engine: wasmtime::Engine,
    pre: Prepared,
    invocation: Invocation,
    input: GuestInput,
    limits: ExecLimits,
) -> (Result<ExecuteResponse, Failure>, ExecutionReport) {
    let started = Instant::now();
    let fuel_budget = limits.fuel.unwrap_or(u64::MAX);
    let deadline = Instant::now() + limits.timeout;
    let mut store = match new_store(&engine, invocation, fuel_budget, deadline) {
        Ok(store) => store,
        Err(failure) => return (Err(failure), ExecutionReport::default()),
    };
    let mut collector = None;
    let outcome = tokio::time::timeout_at(deadline.into(), call(&pre, input, &mut store, &mut collector)).await;
    let result = classify(outcome, store.data().limiter.memory_refused);
    // The host reports what it counted; the engine adds fuel and memory.
    let usage = store.data().finish();
    let peak_memory_bytes = store.data().limiter.peak_memory_bytes as u64;
    let fuel_used = fuel_budget.saturating_sub(store.get_fuel().unwrap_or(0));
    // Dropping the store closes whatever the guest left open (an
    // unfinished body ends), so the collector cannot wait on it.
    drop(store);
    let result = with_collected(result, collector, deadline).await;
    let report = ExecutionReport {
        wall_ms: started.elapsed().as_secs_f64() * 1000.0,
        fuel_used,
        // Filled in by the caller, which measures the CPU around this future.
        cpu_ms: 0.0,
        cpu_wait_ms: 0.0,
        peak_memory_bytes,
        host_calls: usage.host_calls,
        egress_bytes: usage.egress_bytes,
        logs_truncated: usage.logs_truncated,
        limit_hit: result.as_ref().err().and_then(|f| match f.code {
            ErrorCode::ExecutionTimeout => Some("timeout"),
            ErrorCode::FuelExhausted => Some("fuel"),
            ErrorCode::MemoryLimitExceeded => Some("memory"),
            _ => None,
        }),
    };
    (result, report)
}

/// A fresh store: the memory limiter, hostcall fuel, fuel, and the
/// epoch deadline that ends each CPU slice and, past `deadline`, the guest.
fn new_store(
    engine: &wasmtime::Engine,
    invocation: Invocation,
    fuel_budget: u64,
    deadline: Instant,
) -> Result<Store<Invocation>, Failure> {
    let hostcall_fuel = invocation.hostcall_fuel;
    let mut store = Store::new(engine, invocation);
    store.limiter(|s| &mut s.limiter);
    // what one guest→host call may make the host allocate.
    store.set_hostcall_fuel(hostcall_fuel);
    store
        .set_fuel(fuel_budget)
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("fuel: {e}")))?;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        // Every tick ends the guest's CPU slice: it yields (waking itself),
        // gives its slice back in line for the next (cpu::scheduled) and
        // the fair share picks who runs next. The fair share, not Tokio's
        // run queue, decides the order, so the plain self-waking yield is
        // the right one (Tokio's deferred `yield_now` would let the slice
        // go to someone else before this execution is back in line).
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    Ok(store)
}

/// Instantiate and call: the handler's answer (`alga:extension` world), or
/// `None` with the answer arriving through `collector` (`wasi:http/proxy`).
async fn call(
    pre: &PreparedComponent,
    input: GuestInput,
    store: &mut Store<Invocation>,
    collector: &mut Option<Collector>,
) -> Result<Option<ExecuteResponse>, InstantiateOrCall> {
    match (pre, input) {
        (PreparedComponent::Runner(pre), GuestInput::Runner(request)) => {
            let runner = pre
                .instantiate_async(&mut *store)
                .await
                .map_err(InstantiateOrCall::Instantiate)?;
            runner
                .call_handler(&mut *store, &request)
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
            *collector = Some(tokio::spawn(collect_proxy_response(receiver, max_response_bytes)));
            let proxy = pre
                .instantiate_async(&mut *store)
                .await
                .map_err(InstantiateOrCall::Instantiate)?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, request, outparam)
                .await
                .map(|()| None)
                .map_err(InstantiateOrCall::Call)
        }
        _ => Err(InstantiateOrCall::Instantiate(wasmtime::Error::msg(
            "the component's world and the request's do not match",
        ))),
    }
}

/// The call's outcome as the client sees it: timeouts, fuel, traps, memory.
fn classify(
    outcome: Result<Result<Option<ExecuteResponse>, InstantiateOrCall>, tokio::time::error::Elapsed>,
    memory_refused: bool,
) -> Result<Option<ExecuteResponse>, Failure> {
    match outcome {
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
        Ok(Err(InstantiateOrCall::Call(error))) => Err(classify_trap(&error, memory_refused)),
    }
}

/// The answer, waiting for a proxy component's collected response (within
/// the deadline) when the call returned through its outparam.
async fn with_collected(
    result: Result<Option<ExecuteResponse>, Failure>,
    collector: Option<Collector>,
    deadline: Instant,
) -> Result<ExecuteResponse, Failure> {
    match (result, collector) {
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
    }
}

/// Wait for a compile task's outcome.
async fn wait(mut receiver: watch::Receiver<Outcome>) -> Result<Prepared, Failure> {
    match receiver.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().expect("waited for Some"),
        Err(_) => Err(Failure::new(
            ErrorCode::Internal,
            "the compile task ended without an answer (shutting down?)",
        )),
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

/// Compile (or load) one component and pre-instantiate it for `key`'s
/// world. Failure messages leave out the component's path (the caller adds
/// the asking bundle's); logs name the bundle whose request started it.
fn prepare(
    engine: &wasmtime::Engine,
    linker: &Linker<Invocation>,
    artifacts: &ArtifactCache,
    stats: &Stats,
    key: ComponentKey,
    source: ComponentSource,
) -> Result<PreparedComponent, Failure> {
    let ComponentKey {
        component: sha256,
        world,
        ..
    } = key;
    let (digest, path) = (&source.bundle, &source.path);
    let supplied = source.precompiled.and_then(|supplied| match (supplied.read)() {
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
        None => match artifacts.load(engine, &sha256) {
            Some(component) => {
                stats.artifact_loads.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                let bytes = (source.wasm)()?;
                stats.compiles.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let component = Component::new(engine, &bytes).map_err(|e| compile_failure(&bytes, &e))?;
                stats
                    .compile_nanos
                    .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                tracing::info!(content_hash = %digest, component = %path, component_sha256 = %sha256, elapsed_ms = started.elapsed().as_millis() as u64, "compiled component");
                host::check_imports(engine, &component, world).map_err(|names| unsupported(&names))?;
                if let Err(e) = artifacts.store(&sha256, &component) {
                    // The cache only saves time; a failed write must not fail the request.
                    tracing::warn!(content_hash = %digest, component = %path, error = %e, "could not persist compiled artifact");
                }
                component
            }
        },
    };
    host::check_imports(engine, &component, world).map_err(|names| unsupported(&names))?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| Failure::new(ErrorCode::UnsupportedImport, format!("cannot link: {e}")))?;
    match world {
        World::Runner => RunnerPre::new(instance_pre).map(PreparedComponent::Runner).map_err(|e| {
            Failure::new(
                ErrorCode::ComponentInvalid,
                format!("does not export `handler: func(execute-request) -> execute-response` of world alga:extension/runner: {e}"),
            )
        }),
        World::Proxy => ProxyPre::new(instance_pre).map(PreparedComponent::Proxy).map_err(|e| {
            Failure::new(
                ErrorCode::ComponentInvalid,
                format!("does not export `wasi:http/incoming-handler` of world wasi:http/proxy (the manifest's endpoint says `\"world\": \"wasi:http/proxy\"`): {e}"),
            )
        }),
    }
}

/// `failure` as the bundle with the component at `path` sees it.
fn at(path: &str, failure: Failure) -> Failure {
    Failure::new(failure.code, format!("{path}: {}", failure.message))
}

fn unsupported(names: &str) -> Failure {
    Failure::new(
        ErrorCode::UnsupportedImport,
        format!("imports interfaces this runner does not provide: {names}"),
    )
}

/// A component Wasmtime would not compile: `unsupported_feature` when it is
/// valid WebAssembly once every proposal is allowed (so it uses one this
/// engine keeps off, A-03), else `component_invalid`.
fn compile_failure(wasm: &[u8], error: &wasmtime::Error) -> Failure {
    let detail = format!("{error:#}");
    let valid_with_every_proposal = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(wasm)
        .is_ok();
    let code = if valid_with_every_proposal {
        ErrorCode::UnsupportedFeature
    } else {
        ErrorCode::ComponentInvalid
    };
    Failure::new(code, format!("not a loadable component: {detail}"))
}

/// proposals switched off by flag, because this build of Wasmtime has
/// no typed setter for them (its `threads` and `gc` features are off, which
/// leaves exceptions and shared memories rejected but typed function
/// references on by default): named here so the refusal does not depend on
/// a Cargo feature someone might turn on.
const DISABLED_PROPOSALS: wasmtime::WasmFeatures = wasmtime::WasmFeatures::THREADS
    .union(wasmtime::WasmFeatures::EXCEPTIONS)
    .union(wasmtime::WasmFeatures::LEGACY_EXCEPTIONS)
    .union(wasmtime::WasmFeatures::FUNCTION_REFERENCES);

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
        // them are refused at load (`unsupported_feature`) instead of
        // widening the attack surface: threads (shared memories, atomics
        // waits), exception handling, typed function references (`call_ref`,
        // the RUSTSEC-2026-0315/0223 class) and tail calls. Rust wasip2 and
        // componentize-js (StarlingMonkey) guests use none of them; SIMD,
        // bulk memory, reference types and multi-value stay on (Wasmtime's
        // defaults, which those guests use).
        .wasm_features(DISABLED_PROPOSALS, false)
        .wasm_shared_everything_threads(false)
        .wasm_tail_call(false)
        .wasm_gc(false)
        .wasm_stack_switching(false)
        .wasm_memory64(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(bundle: &[u8], path: &str, wasm: &[u8], supplied: Option<&[u8]>) -> ComponentSource {
        let unread = || -> ReadBytes { Box::new(|| unreachable!("a key is made without reading")) };
        ComponentSource {
            bundle: Digest::of(bundle),
            path: path.into(),
            wasm: unread(),
            precompiled: supplied.map(|artifact| SuppliedArtifact {
                sha256: Digest::of(artifact),
                read: unread(),
            }),
            sha256: Digest::of(wasm),
            bytes: wasm.len() as u64,
        }
    }

    /// The key is the component's bytes, its world and its code's origin;
    /// the bundle carrying it and its path there are not in it.
    #[test]
    fn the_compile_cache_key_is_the_component_not_the_bundle() {
        let base = source(b"bundle a", "dist/main.wasm", b"wasm", None).key(World::Runner);
        let cases = [
            (
                source(b"bundle b", "dist/other.wasm", b"wasm", None),
                World::Runner,
                true,
            ),
            (
                source(b"bundle a", "dist/main.wasm", b"other wasm", None),
                World::Runner,
                false,
            ),
            (
                source(b"bundle a", "dist/main.wasm", b"wasm", None),
                World::Proxy,
                false,
            ),
            (
                source(b"bundle a", "dist/main.wasm", b"wasm", Some(b"cwasm")),
                World::Runner,
                false,
            ),
        ];
        for (i, (source, world, same)) in cases.into_iter().enumerate() {
            assert_eq!(source.key(world) == base, same, "case {i}");
        }
        let supplied = |bundle: &[u8], artifact: &[u8]| source(bundle, "p", b"wasm", Some(artifact)).key(World::Runner);
        assert_eq!(supplied(b"a", b"cwasm"), supplied(b"b", b"cwasm"));
        assert_ne!(supplied(b"a", b"cwasm"), supplied(b"a", b"another cwasm"));
    }
}
