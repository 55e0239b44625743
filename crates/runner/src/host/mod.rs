//! Host side of the guest contract: the per-execution state a store carries
//! and the linker that connects guests to it.
//!
//! Lifecycle: *link once* ([`build_linker`] at start-up), *validate per
//! component* ([`check_imports`] when a component is first loaded), *build per
//! execution* ([`Invocation::new`] for each request's store).
//!
//! Modules: `bindings` (generated), `capabilities` (the WIT `Host` impls),
//! `grants` (which capabilities an execution has), `output` (captured
//! stdout/stderr), `guest_metrics` (`cap:metrics.emit`), `debug_sink` (guest
//! lines copied to Redis streams), `proxy` (`wasi:http/proxy` components'
//! outbound requests), `ui_proxy` (where `ui-proxy.call-route` may go).

pub mod bindings;
mod capabilities;
pub mod debug_sink;
pub mod grants;
pub mod guest_metrics;
pub mod output;
pub mod proxy;
pub mod secrets;
pub mod ui_proxy;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use ext_bundle::World;

use self::bindings::Runner;
use self::output::CapturedOutput;
use crate::limits::{
    DEFAULT_MAX_RESPONSE_BYTES, MAX_CORE_INSTANCES_PER_COMPONENT, MAX_FIELDS_BYTES, MAX_MEMORIES_PER_COMPONENT,
    MAX_RESOURCES_PER_STORE, MAX_TABLE_ELEMENTS, MAX_TABLES_PER_COMPONENT,
};

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

/// The end user on whose behalf the gateway calls, when it says.
#[derive(Clone, Debug, Default)]
pub struct UserInfo {
    pub user_id: String,
    pub user_email: String,
    pub user_name: String,
    pub user_type: String,
    pub client_name: String,
    pub client_id: Option<String>,
    /// Sorted by key (compat §1).
    pub additional_fields: Vec<(String, String)>,
}

/// Everything one execution's store owns. Dropped with the store.
pub struct Invocation {
    wasi: WasiCtx,
    table: ResourceTable,
    /// `wasi:http` state (used by `wasi:http/proxy` components only).
    http_ctx: WasiHttpCtx,
    /// Egress for `http.fetch` and a proxy component's outbound `wasi:http`
    /// (its `access` is `None` when `cap:http.fetch` is not granted).
    pub(crate) outbound: proxy::OutboundHooks,
    pub(crate) limiter: GuestLimiter,
    pub(crate) request: Arc<RequestInfo>,
    pub(crate) user: Option<Arc<UserInfo>>,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    pub(crate) log_lines: u32,
    pub(crate) log_dropped: u32,
    /// What this execution may call beyond the always-granted interfaces.
    pub(crate) grants: grants::Grants,
    /// The tenant's key-value store, scoped to (tenant, extension); `None`
    /// when `cap:storage.kv` is not granted.
    pub(crate) kv: Option<(ext_kv::Kv, ext_kv::Scope)>,
    /// The request's sealed secrets, opened on the guest's first call.
    pub(crate) secrets: SecretsState,
    /// `ui-proxy.call-route` target; `None` when not granted or not configured.
    pub(crate) ui_proxy: Option<Arc<UiProxyAccess>>,
    /// Host calls made, by interface (for the execution report).
    pub(crate) host_calls: std::collections::BTreeMap<&'static str, u32>,
    /// The registry guest metrics go to; `None` when `cap:metrics.emit` is
    /// not granted.
    pub(crate) guest_metrics: Option<Arc<crate::metrics::Metrics>>,
    /// `metrics` calls made (capped per execution).
    pub(crate) metric_calls: u32,
    /// Where guest log and output lines are copied for live debugging
    /// (`RUNNER_DEBUG_REDIS_URL`); `None` when not configured.
    pub(crate) debug_sink: Option<debug_sink::DebugSink>,
    /// Bytes one guest→host call may transfer (Wasmtime's hostcall fuel,
    /// A-07), set on the store by `Runtime::execute`: the largest
    /// legitimate transfer this execution may make, plus overhead.
    pub(crate) hostcall_fuel: usize,
}

/// Where `ui-proxy.call-route` goes (`UI_PROXY_BASE_URL`), for one execution.
pub struct UiProxyAccess {
    pub client: reqwest::Client,
    /// Base URL without a trailing slash.
    pub base_url: String,
    pub deadline: tokio::time::Instant,
}

/// What one execution may reach through `http.fetch`.
pub struct HttpAccess {
    pub egress: ext_egress::Egress,
    /// Manifest ∩ operator (∩ install) destinations.
    pub policy: ext_egress::Policy,
    /// Requests left for this execution.
    pub budget: ext_egress::RequestBudget,
    /// No egress phase may outlive the execution.
    pub deadline: tokio::time::Instant,
}

/// A request's `secret_envelope` and, once opened, its values.
#[derive(Default)]
pub struct SecretsState {
    pub envelope: Option<Arc<secrets::SecretEnvelope>>,
    pub config: Arc<secrets::SecretsConfig>,
    pub opened: Option<Result<std::collections::BTreeMap<String, secrets::SecretValue>, secrets::OpenError>>,
}

impl Invocation {
    /// A closed WASI context: no preopens, env, args or network; empty stdin;
    /// stdout/stderr captured. Clocks and randomness are the host's.
    pub fn new(request: Arc<RequestInfo>, user: Option<Arc<UserInfo>>, memory_bytes: usize) -> Self {
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false);
        // host memory a guest can make the host hold is capped per store.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES_PER_STORE);
        let mut http_ctx = WasiHttpCtx::new();
        http_ctx.set_field_size_limit(MAX_FIELDS_BYTES);
        Invocation {
            wasi: builder.build(),
            table,
            http_ctx,
            outbound: proxy::OutboundHooks::new(request.clone()),
            limiter: GuestLimiter::new(memory_bytes),
            request,
            user,
            stdout,
            stderr,
            log_lines: 0,
            log_dropped: 0,
            grants: grants::Grants::default(),
            kv: None,
            secrets: SecretsState::default(),
            ui_proxy: None,
            host_calls: std::collections::BTreeMap::new(),
            guest_metrics: None,
            metric_calls: 0,
            debug_sink: None,
            hostcall_fuel: crate::limits::hostcall_fuel(
                DEFAULT_MAX_RESPONSE_BYTES.max(ext_egress::DEFAULT_MAX_REQUEST_BODY_BYTES),
            ),
        }
    }

    /// The largest response body this execution may return
    /// (`RUNNER_MAX_RESPONSE_BYTES`): raises the hostcall fuel to carry it.
    #[must_use]
    pub fn with_max_response_bytes(mut self, bytes: u64) -> Self {
        self.hostcall_fuel = self.hostcall_fuel.max(crate::limits::hostcall_fuel(bytes));
        self
    }

    /// Give the execution `cap:metrics.emit` (only when granted).
    #[must_use]
    pub fn with_metrics(mut self, registry: Arc<crate::metrics::Metrics>) -> Self {
        self.guest_metrics = Some(registry);
        self
    }

    /// Copy the execution's log and output lines to the debug sink.
    #[must_use]
    pub fn with_debug_sink(mut self, sink: debug_sink::DebugSink) -> Self {
        self.debug_sink = Some(sink);
        self
    }

    /// Queue one guest line for the debug sink, if there is one.
    pub(crate) fn debug_line(&self, level: &'static str, source: &'static str, message: &str) {
        if let Some(sink) = &self.debug_sink {
            let r = &self.request;
            sink.send(debug_sink::DebugLine {
                tenant: r.tenant_id.clone(),
                extension: r.extension_id.clone(),
                request_id: r.request_id.clone(),
                version: r.version_id.clone(),
                level,
                source,
                message: message.to_string(),
            });
        }
    }

    /// Give the execution egress (only when `cap:http.fetch` is granted).
    #[must_use]
    pub fn with_http(mut self, access: HttpAccess) -> Self {
        // An `http.fetch` request body is one transfer: the fuel must carry it.
        let body = access.egress.config().max_request_body_bytes;
        self.hostcall_fuel = self.hostcall_fuel.max(crate::limits::hostcall_fuel(body));
        // One grant for `http.fetch` and a proxy component's outbound wasi:http.
        self.outbound.access = Some(Arc::new(access));
        self
    }

    /// Give the execution `ui-proxy.call-route` (only when granted).
    #[must_use]
    pub fn with_ui_proxy(mut self, access: UiProxyAccess) -> Self {
        self.ui_proxy = Some(Arc::new(access));
        self
    }

    /// Count one host call to `interface`.
    pub(crate) fn count(&mut self, interface: &'static str) {
        *self.host_calls.entry(interface).or_default() += 1;
    }

    /// Give the execution the request's sealed secrets.
    #[must_use]
    pub fn with_secrets(
        mut self,
        envelope: Option<Arc<secrets::SecretEnvelope>>,
        config: Arc<secrets::SecretsConfig>,
    ) -> Self {
        self.secrets = SecretsState {
            envelope,
            config,
            opened: None,
        };
        self
    }

    /// Set the execution's capabilities (default: none beyond the
    /// always-granted ones' host functions, which do not check grants).
    #[must_use]
    pub fn with_grants(mut self, grants: grants::Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Give the execution its key-value store (only when granted).
    #[must_use]
    pub fn with_kv(mut self, kv: ext_kv::Kv, scope: ext_kv::Scope) -> Self {
        self.kv = Some((kv, scope));
        self
    }

    /// Write captured guest output into the log, attributed to the request.
    /// Returns whether any output or log line was dropped by the caps.
    pub fn flush_output(&self) -> bool {
        let mut truncated = self.log_dropped > 0;
        let r = &self.request;
        for (stream, captured) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (lines, dropped) = captured.take_lines();
            for line in lines {
                tracing::info!(target: "ext_runner::guest", stream, request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, "{line}");
                self.debug_line("info", stream, &line);
            }
            truncated |= dropped > 0;
            if dropped > 0 {
                tracing::warn!(target: "ext_runner::guest", stream, request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, dropped_bytes = dropped, "guest output over the cap was dropped");
            }
        }
        if self.log_dropped > 0 {
            tracing::warn!(target: "ext_runner::guest", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, dropped_lines = self.log_dropped, "guest log lines over the cap were dropped");
        }
        truncated
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
            hooks: &mut self.outbound,
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

/// Interfaces of the `alga:extension` package this runner provides.
const ALGA_INTERFACES: &[&str] = &[
    "types", "context", "secrets", "http", "storage", "logging", "ui-proxy", "user", "user-v2", "metrics",
];

/// Whether an import name (e.g. `wasi:cli/stdout@0.2.3`) is one we provide
/// to components of `world`.
pub fn is_supported_import(name: &str, world: World) -> bool {
    let (unversioned, version) = match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    };
    if let Some(interface) = unversioned.strip_prefix("alga:extension/") {
        return version.is_none() && ALGA_INTERFACES.contains(&interface);
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

/// The one linker every component is pre-instantiated against: the eight
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
            ("alga:extension/scheduler", false),
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
