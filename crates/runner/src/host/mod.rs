//! Host side of the guest contract: the per-execution state a store carries
//! and the linker that connects guests to it.
//!
//! Lifecycle: *link once* ([`build_linker`] at start-up), *validate per
//! component* ([`check_imports`] when a component is first loaded), *build per
//! execution* ([`Shared::invocation`] for each request's store).
//!
//! One folder per capability (`context`, `user`, `logging`, `secrets`,
//! `http`, `storage`, `ui_proxy`, `metrics`, and the product interfaces
//! `scheduler`, `invoicing`, `clients`, `services`), each with its
//! settings, its shared handle, its per-execution state (`prepare`) and its
//! WIT `Host` impl; `host_api` is the product interfaces' one transport
//! (and their settings), `registry` the table of them all, `grants` which
//! ones an execution has, `bindings` the generated code.

pub mod bindings;
pub mod clients;
pub mod context;
pub mod grants;
pub mod host_api;
pub mod http;
pub mod invoicing;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod scheduler;
pub mod secrets;
pub mod services;
pub mod storage;
pub mod ui_proxy;
pub mod user;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use ext_bundle::World;
pub use user::UserInfo;

use self::bindings::Runner;
use self::bindings::types::ContextData;
use crate::error::Failure;
use crate::limits::{
    MAX_CORE_INSTANCES_PER_COMPONENT, MAX_FIELDS_BYTES, MAX_MEMORIES_PER_COMPONENT, MAX_RESOURCES_PER_STORE,
    MAX_TABLE_ELEMENTS, MAX_TABLES_PER_COMPONENT,
};

/// The capabilities' settings, one field per capability that has any.
#[derive(Clone, Debug)]
pub struct Settings {
    pub storage: storage::Settings,
    /// Egress (`http.fetch`): engine limits and the operator's allowlists
    /// (`EXT_EGRESS_*`, read by ext-egress).
    pub http: Arc<ext_egress::Settings>,
    pub secrets: secrets::SecretsConfig,
    pub ui_proxy: ui_proxy::Settings,
    /// The product interfaces' host API (`RUNNER_HOST_API_*`).
    pub host_api: host_api::Settings,
    pub logging: logging::Settings,
}

impl Settings {
    pub fn from_source(source: &crate::config::source::Source, data_dir: &std::path::Path) -> Settings {
        // ext-egress names its own settings; each is read through the source.
        let lookup = |key: &str| {
            let known = ext_egress::config::ENV_VARS.iter().find(|k| **k == key)?;
            source.text(known).map(String::from)
        };
        let http = ext_egress::Settings::from_lookup(lookup)
            .map_err(|errors| errors.0.iter().for_each(|e| source.problem(e.to_string())))
            .unwrap_or_default();
        Settings {
            storage: storage::Settings::from_source(source, data_dir),
            http: Arc::new(http),
            secrets: secrets::SecretsConfig::from_source(source),
            ui_proxy: ui_proxy::Settings::from_source(source),
            host_api: host_api::Settings::from_source(source),
            logging: logging::Settings::from_source(source),
        }
    }
}

/// The capabilities' shared handles (stores, clients, registries): one per
/// runner, handed to each execution that is granted them.
pub struct Shared {
    pub storage: storage::Shared,
    pub http: http::Shared,
    secrets: Arc<secrets::SecretsConfig>,
    ui_proxy: ui_proxy::Shared,
    /// The product interfaces' client and host API.
    host_api: host_api::Shared,
    /// This process's registry, once the registry role opens it: where
    /// `scheduler` keeps schedules ([`Shared::keep_schedules_in`]).
    schedules: std::sync::OnceLock<ext_registry::Database>,
    metrics: Arc<crate::metrics::Metrics>,
    debug_sink: Option<logging::debug_sink::DebugSink>,
}

/// What one execution's capabilities are prepared from.
pub struct Prepare<'a> {
    pub info: &'a RequestInfo,
    pub manifest: &'a ext_bundle::Manifest,
    /// Manifest ∩ providers ∪ always-granted.
    pub grants: &'a grants::Grants,
    /// The execution's deadline: no capability call outlives it.
    pub deadline: tokio::time::Instant,
    /// The install's egress list (envelope or grant), if one was given.
    pub egress: Option<&'a [String]>,
}

/// Per-execution sizing the host needs from the pipeline.
#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    /// Largest linear memory the guest may grow to.
    pub memory_bytes: usize,
    /// Largest response body the guest may return (the hostcall fuel must carry it).
    pub max_response_bytes: u64,
}

impl Shared {
    /// `self_addrs`: the runner's own listeners, never egress destinations.
    /// The capabilities' families and gauges go to `metrics` (one `Shared`
    /// per registry), where guest series go too.
    ///
    /// # Errors
    /// A client, the egress engine or the debug sink cannot be built.
    pub fn new(
        settings: &Settings,
        metrics: Arc<crate::metrics::Metrics>,
        self_addrs: &[std::net::SocketAddr],
    ) -> anyhow::Result<Shared> {
        let debug_sink = (settings.logging.debug_redis_url.as_deref())
            .map(|url| logging::debug_sink::DebugSink::start(url, &metrics))
            .transpose()?;
        let http = http::Shared::new(&settings.http, self_addrs)?;
        metrics.register_gauges(http.gauges());
        Ok(Shared {
            storage: storage::Shared::new(&settings.storage),
            http,
            secrets: Arc::new(settings.secrets.clone()),
            ui_proxy: ui_proxy::Shared::new(&settings.ui_proxy)?,
            host_api: host_api::Shared::new(&settings.host_api)?,
            schedules: std::sync::OnceLock::new(),
            metrics,
            debug_sink,
        })
    }

    /// Keep the guests' schedules in `registry` (the registry role runs in
    /// this process) instead of the host API. Once: a later call is ignored.
    pub fn keep_schedules_in(&self, registry: ext_registry::Database) {
        let _ = self.schedules.set(registry);
    }

    /// The store state of one execution: its grants, and a slot per
    /// capability filled only when granted.
    ///
    /// # Errors
    /// A granted capability cannot be prepared (the key-value store is down).
    pub async fn invocation(
        &self,
        prepare: Prepare<'_>,
        request: Arc<RequestInfo>,
        user: Option<Arc<UserInfo>>,
        secret_envelope: Option<Arc<secrets::SecretEnvelope>>,
        limits: StoreLimits,
    ) -> Result<Invocation, Failure> {
        let mut outbound = http::proxy::OutboundHooks::new(request.clone());
        outbound.access = self.http.prepare(&prepare).map(Arc::new);
        let caps = Slots {
            user,
            logging: logging::State::new(self.debug_sink.clone()),
            secrets: secrets::State::prepare(&self.secrets, secret_envelope),
            http: outbound,
            storage: self.storage.prepare(&prepare).await?,
            ui_proxy: self.ui_proxy.prepare(&prepare),
            scheduler: scheduler::prepare(&self.host_api, self.schedules.get(), &prepare),
            invoicing: invoicing::prepare(&self.host_api, &prepare),
            clients: clients::prepare(&self.host_api, &prepare),
            services: services::prepare(&self.host_api, &prepare),
            metrics: metrics::prepare(&self.metrics, &prepare),
        };
        Ok(Invocation::new(request, prepare.grants.clone(), caps, limits))
    }
}

/// Who is calling, for the guest's `context` and for log attribution.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub request_id: String,
    pub tenant_id: String,
    pub extension_id: String,
    pub install_id: Option<String>,
    pub version_id: Option<String>,
    /// Inbound W3C `traceparent`, continued on `http.fetch`.
    pub traceparent: Option<String>,
}

impl RequestInfo {
    /// The guest's `context` record.
    pub fn context_data(&self) -> ContextData {
        ContextData {
            request_id: Some(self.request_id.clone()),
            tenant_id: self.tenant_id.clone(),
            extension_id: self.extension_id.clone(),
            install_id: self.install_id.clone(),
            version_id: self.version_id.clone(),
        }
    }
}

/// One slot per capability: filled only when the execution is granted it.
pub(crate) struct Slots {
    pub user: user::State,
    pub logging: logging::State,
    pub secrets: secrets::State,
    /// `http.fetch` and a proxy component's outbound wasi:http share the
    /// grant; `access` is `None` without it.
    pub http: http::proxy::OutboundHooks,
    pub storage: Option<storage::State>,
    pub ui_proxy: Option<ui_proxy::State>,
    pub scheduler: Option<scheduler::State>,
    pub invoicing: Option<invoicing::State>,
    pub clients: Option<clients::State>,
    pub services: Option<services::State>,
    pub metrics: metrics::State,
}

/// What the host counted during one execution (for the report).
#[derive(Debug, Default)]
pub struct HostUsage {
    /// Host calls made, by interface.
    pub host_calls: std::collections::BTreeMap<&'static str, u32>,
    /// Bytes sent and received through `http.fetch` and outbound wasi:http.
    pub egress_bytes: u64,
    /// Guest log lines or output dropped by the caps.
    pub logs_truncated: bool,
}

/// Counters kept while the guest runs.
#[derive(Default)]
pub(crate) struct Counters {
    pub host_calls: std::collections::BTreeMap<&'static str, u32>,
    /// `metrics` calls made (capped per execution).
    pub metric_calls: u32,
}

/// Everything one execution's store owns. Dropped with the store.
pub struct Invocation {
    wasi: WasiCtx,
    table: ResourceTable,
    /// `wasi:http` state (used by `wasi:http/proxy` components only).
    http_ctx: WasiHttpCtx,
    pub(crate) limiter: GuestLimiter,
    pub(crate) request: Arc<RequestInfo>,
    /// What this execution may call beyond the always-granted interfaces.
    pub(crate) grants: grants::Grants,
    pub(crate) caps: Slots,
    pub(crate) usage: Counters,
    /// Bytes one guest→host call may transfer (Wasmtime's hostcall fuel,
    /// A-07), set on the store by `Runtime::execute`: the largest
    /// legitimate transfer this execution may make, plus overhead.
    pub(crate) hostcall_fuel: usize,
}

impl Invocation {
    /// A closed WASI context: no preopens, env, args or network; empty stdin;
    /// stdout/stderr captured. Clocks and randomness are the host's.
    fn new(request: Arc<RequestInfo>, grants: grants::Grants, caps: Slots, limits: StoreLimits) -> Self {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(caps.logging.stdout.clone())
            .stderr(caps.logging.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false);
        // host memory a guest can make the host hold is capped per store.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES_PER_STORE);
        let mut http_ctx = WasiHttpCtx::new();
        http_ctx.set_field_size_limit(MAX_FIELDS_BYTES);
        // The largest single transfer: a response body, or an `http.fetch`
        // request body when egress is granted.
        let fetch_body = caps
            .http
            .access
            .as_ref()
            .map_or(0, |a| a.egress.config().max_request_body_bytes);
        let largest = limits
            .max_response_bytes
            .max(ext_egress::DEFAULT_MAX_REQUEST_BODY_BYTES)
            .max(crate::limits::DEFAULT_MAX_RESPONSE_BYTES)
            .max(fetch_body);
        Invocation {
            wasi: builder.build(),
            table,
            http_ctx,
            limiter: GuestLimiter::new(limits.memory_bytes),
            request,
            grants,
            caps,
            usage: Counters::default(),
            hostcall_fuel: crate::limits::hostcall_fuel(largest),
        }
    }

    /// Count one host call to `interface`.
    pub(crate) fn count(&mut self, interface: &'static str) {
        *self.usage.host_calls.entry(interface).or_default() += 1;
    }

    /// Write captured output to the log and return what the host counted.
    pub fn finish(&self) -> HostUsage {
        let logs_truncated = self.caps.logging.flush(&self.request);
        let mut host_calls = self.usage.host_calls.clone();
        let outbound = &self.caps.http.usage;
        let outbound_requests = outbound.requests.load(std::sync::atomic::Ordering::Relaxed);
        if outbound_requests > 0 {
            host_calls.insert("wasi:http", outbound_requests);
        }
        HostUsage {
            host_calls,
            egress_bytes: outbound.bytes.load(std::sync::atomic::Ordering::Relaxed),
            logs_truncated,
        }
    }
}

impl WasiView for Invocation {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Invocation {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.caps.http,
        }
    }
}

/// Per-execution memory and table limits; remembers whether it refused a
/// growth so a following trap can be reported as `memory_limit_exceeded`.
pub struct GuestLimiter {
    memory_bytes: usize,
    pub(crate) memory_refused: bool,
    /// Largest linear memory size granted, in bytes (for the report).
    pub(crate) peak_memory_bytes: usize,
}

impl GuestLimiter {
    fn new(memory_bytes: usize) -> Self {
        GuestLimiter {
            memory_bytes,
            memory_refused: false,
            peak_memory_bytes: 0,
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES_PER_COMPONENT as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES_PER_COMPONENT as usize
    }
}

/// WASI preview 2 packages guests may import. `wasi:sockets` is deliberately
/// absent, and `wasi:http` is for `wasi:http/proxy` components only
/// ([`PROXY_INTERFACES`]): egress goes through ext-egress where policy
/// applies.
const ALLOWED_WASI_INTERFACES: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// What a `wasi:http/proxy` component may import besides the WASI subset
/// (their outbound requests go through the egress policy, see `proxy`).
const PROXY_INTERFACES: &[&str] = &["wasi:http/types", "wasi:http/outgoing-handler"];

/// Whether an import name (e.g. `wasi:cli/stdout@0.2.3`) is one we provide
/// to components of `world`.
pub fn is_supported_import(name: &str, world: World) -> bool {
    let (unversioned, version) = match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    };
    if unversioned.starts_with(registry::ALGA) {
        return version.is_none() && registry::provides_alga(unversioned);
    }
    let wasi = ALLOWED_WASI_INTERFACES.contains(&unversioned)
        || (world == World::Proxy && PROXY_INTERFACES.contains(&unversioned));
    wasi && version.is_some_and(|v| v.starts_with("0.2."))
}

/// Every import of `component` this runner does not provide, comma-separated.
pub fn check_imports(engine: &Engine, component: &wasmtime::component::Component, world: World) -> Result<(), String> {
    let ty = component.component_type();
    // Type imports (`execute-request`, `execute-response` at world level)
    // carry no functionality; every other import must be one we provide.
    let mut unsupported: Vec<String> = ty
        .imports(engine)
        .filter(|(_, item)| !matches!(item.ty, wasmtime::component::types::ComponentItem::Type(_)))
        .map(|(name, _)| name)
        .filter(|n| !is_supported_import(n, world))
        .map(str::to_string)
        .collect();
    unsupported.sort();
    match unsupported.is_empty() {
        true => Ok(()),
        false => Err(unsupported.join(", ")),
    }
}

/// The one linker every component is pre-instantiated against: the twelve
/// `alga:extension` interfaces, this runner's `metrics`, the closed WASI
/// subset and `wasi:http` (which [`check_imports`] lets only
/// `wasi:http/proxy` components use).
///
/// # Errors
/// Only if two definitions collide (a programming error).
pub fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<Invocation>> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::{cli::WasiCli, clocks::WasiClocks, filesystem::WasiFilesystem, random::WasiRandom};

    let mut linker = Linker::<Invocation>::new(engine);
    Runner::add_to_linker::<Invocation, HasSelf<Invocation>>(&mut linker, |s| s)?;

    let l = &mut linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<Invocation, HasIo>(l, |t| &mut t.table)?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<Invocation, HasIo>(l, |t| &mut t.table)?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<Invocation, HasIo>(l, |t| &mut t.table)?;
    use wasmtime_wasi::cli::WasiCliView as _;
    use wasmtime_wasi::clocks::WasiClocksView as _;
    use wasmtime_wasi::filesystem::WasiFilesystemView as _;
    clocks::wall_clock::add_to_linker::<Invocation, WasiClocks>(l, Invocation::clocks)?;
    clocks::monotonic_clock::add_to_linker::<Invocation, WasiClocks>(l, Invocation::clocks)?;
    filesystem::types::add_to_linker::<Invocation, WasiFilesystem>(l, Invocation::filesystem)?;
    filesystem::preopens::add_to_linker::<Invocation, WasiFilesystem>(l, Invocation::filesystem)?;
    random::random::add_to_linker::<Invocation, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<Invocation, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<Invocation, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::environment::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::stdin::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::stdout::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::stderr::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::terminal_input::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::terminal_output::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::terminal_stdin::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::terminal_stdout::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    cli::terminal_stderr::add_to_linker::<Invocation, WasiCli>(l, Invocation::cli)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(l)?;
    Ok(linker)
}

struct HasIo;

impl wasmtime::component::HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

#[cfg(test)]
mod tests {
    use super::{World, is_supported_import};

    #[test]
    fn import_allowlist_table() {
        let cases = [
            ("alga:extension/context", true),
            ("alga:extension/user-v2", true),
            ("alga:extension/types", true),
            ("alga:extension/metrics", true),
            ("alga:extension/metrics@0.1.0", false),
            ("alga:extension/scheduler", true),
            ("alga:extension/invoicing", true),
            ("alga:extension/clients", true),
            ("alga:extension/services", true),
            ("alga:extension/clients@0.1.0", false),
            ("alga:extension/ledger", false),
            ("alga:extension/context@1.0.0", false),
            ("wasi:cli/stdout@0.2.3", true),
            ("wasi:io/streams@0.2.0", true),
            ("wasi:filesystem/preopens@0.2.6", true),
            ("wasi:cli/stdout", false),
            ("wasi:cli/stdout@0.3.0", false),
            ("wasi:sockets/tcp@0.2.3", false),
            ("wasi:sockets/ip-name-lookup@0.2.3", false),
            ("wasi:http/outgoing-handler@0.2.3", false),
            ("wasi:cli/run@0.2.3", false),
            ("evil:pkg/iface", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_supported_import(name, World::Runner), want, "{name}");
            // A proxy component gets the same, plus wasi:http's client side.
            let proxy_want = want || matches!(name, "wasi:http/outgoing-handler@0.2.3");
            assert_eq!(is_supported_import(name, World::Proxy), proxy_want, "{name} (proxy)");
        }
        for name in ["wasi:http/types@0.2.0", "wasi:http/outgoing-handler@0.2.6"] {
            assert!(!is_supported_import(name, World::Runner), "{name}");
            assert!(is_supported_import(name, World::Proxy), "{name}");
        }
        assert!(!is_supported_import("wasi:http/types@0.3.0", World::Proxy));
        assert!(!is_supported_import("wasi:sockets/tcp@0.2.3", World::Proxy));
    }
}
