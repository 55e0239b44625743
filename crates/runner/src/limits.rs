//! Every limit the runner enforces, in one place.
//!
//! Requests are clamped by operator maxima (`RUNNER_MAX_*`): an envelope may
//! ask for less than the maximum, never more. Each constant says why it has
//! the value it has.

use std::time::Duration;

/// Guest linear memory when the envelope does not ask (`limits.memory_mb`).
/// Comfortably above StarlingMonkey's 9 MiB initial heap.
pub const DEFAULT_MEMORY_MB: u64 = 128;
/// Operator ceiling for `limits.memory_mb` (`RUNNER_MAX_MEMORY_MB`); also the
/// size of each pooling-allocator memory slot.
pub const DEFAULT_MAX_MEMORY_MB: u64 = 256;

/// Wall-clock budget when the envelope does not ask (`limits.timeout_ms`).
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Operator ceiling for `limits.timeout_ms` (`RUNNER_MAX_TIMEOUT_MS`).
pub const DEFAULT_MAX_TIMEOUT_MS: u64 = 30_000;

/// Largest guest request body, decoded (`RUNNER_MAX_REQUEST_BYTES`).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 10 * 1024 * 1024;
/// Largest guest response body (`RUNNER_MAX_RESPONSE_BYTES`).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;
/// JSON and base64 overhead allowed on top of the body limit for the whole
/// execute envelope: base64 is 4/3 of the body, plus this for the rest.
pub const ENVELOPE_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// Most headers in the envelope's `http.headers` or a guest response.
pub const MAX_HEADER_COUNT: usize = 100;
/// Largest single header (name + value) in the envelope or a guest response.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Largest sum of all header names and values in the envelope.
pub const MAX_HEADERS_TOTAL_BYTES: usize = 64 * 1024;
/// Most entries in the envelope's `http.query` (repeated keys count once
/// each): real query strings have a few dozen at most, and the cap bounds
/// the pairs a hostile envelope makes the runner build and hand the guest.
pub const MAX_QUERY_ENTRIES: usize = 256;
/// Most entries in the envelope's `user.additional_fields`: a user record
/// carries a handful of extra claims; the cap bounds what every
/// `user-v2.get-user` call copies into the guest.
pub const MAX_USER_ADDITIONAL_FIELDS: usize = 64;
/// Longest tenant or extension id, in bytes (envelope `context.*_id` and
/// the UI's `?tenant=` and path id): ids are short slugs or UUIDs, and the
/// cap bounds every key built from them (cache keys, stream keys, labels).
pub const MAX_ID_BYTES: usize = 256;
/// hyper's inbound header limits (count; read buffer, which bounds the size
/// of the header block). Over them hyper answers 431 itself.
pub const MAX_INBOUND_HEADERS: usize = 100;
pub const MAX_INBOUND_HEADER_BUF_BYTES: usize = 64 * 1024;

/// Slowloris guard: a client must finish sending headers within this time
/// (`RUNNER_HEADER_READ_TIMEOUT_MS`).
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// A client must finish sending the request body within this time, else 408.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// A keep-alive connection (HTTP/1 or HTTP/2) with no request in flight for
/// this long is closed (`RUNNER_IDLE_TIMEOUT_MS`): above the 60 s most load
/// balancers keep idle upstream connections, below nginx's 75 s default.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 65_000;
/// A response write that makes no progress for this long means the client
/// stopped reading (A-18, `RUNNER_WRITE_STALL_TIMEOUT_MS`); the connection
/// is closed. A live client on a bad network drains a socket buffer in far
/// less.
pub const DEFAULT_WRITE_STALL_TIMEOUT_MS: u64 = 30_000;
/// After SIGTERM, how long the listeners keep accepting while `/readyz`
/// answers 503 (`RUNNER_DRAIN_DELAY_MS`), so load balancers see the pod
/// leave before its port closes. Off by default: a pod behind a Kubernetes
/// Service should set it to a few seconds (the Helm chart does).
pub const DEFAULT_DRAIN_DELAY_MS: u64 = 0;
/// Share of the open-file limit each listener's connection cap takes by
/// default (`RUNNER_MAX_CONNECTIONS`): two listeners take at most half the
/// descriptors; the rest are for egress sockets, the caches and databases.
pub const CONNECTION_FD_SHARE: u64 = 4;
/// Bounds of the default connection cap: enough for a small `ulimit -n`,
/// and no more than one process should hold however high the limit is.
pub const MIN_DEFAULT_MAX_CONNECTIONS: u64 = 64;
pub const MAX_DEFAULT_MAX_CONNECTIONS: u64 = 65_536;
/// Open-file limit assumed when the process's cannot be read.
const FALLBACK_FD_LIMIT: u64 = 1024;
/// After an idle connection is asked to close gracefully (HTTP/2 GOAWAY),
/// how long it may take before it is dropped: a client that ignores the
/// GOAWAY but keeps a stream half open does not keep the socket.
pub const GRACEFUL_CLOSE: Duration = Duration::from_secs(5);
/// HTTP/2 PING interval and how long an unanswered PING waits: a peer that
/// vanished without a FIN is found within about half a minute.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may have open: above what a browser or a
/// gateway's connection pool uses, and what bounds one connection's share.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Rapid reset (A-19, CVE-2023-44487): streams reset by the client before
/// the server answered that may be pending; beyond it the connection gets
/// GOAWAY. hyper's default (20) is kept explicit here.
pub const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server may reset because the client broke the protocol
/// before the connection is closed (the "MadeYouReset" class).
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Default per-listener connection cap from the process's open-file limit.
pub fn default_max_connections() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(FALLBACK_FD_LIMIT);
    (limit / CONNECTION_FD_SHARE).clamp(MIN_DEFAULT_MAX_CONNECTIONS, MAX_DEFAULT_MAX_CONNECTIONS)
}

/// Raise the soft open-file limit to the hard one (as Go and systemd
/// services do): `ulimit -n` defaults to 1024 while the hard limit is
/// usually far higher, and connection caps are sized from it.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    /// Linux's default `fs.nr_open`: no process gets more descriptors.
    const MOST: u64 = 1 << 20;
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let target = maximum.unwrap_or(MOST).min(MOST);
    if current.is_some_and(|soft| soft < target) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum,
            },
        );
    }
}

/// Executions in flight at once across all tenants (`RUNNER_MAX_CONCURRENCY`);
/// also sizes the pooling allocator. Beyond it: 503 `overloaded`.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;

/// Compiled components kept in memory (`RUNNER_MAX_LOADED_COMPONENTS`); the
/// least recently used beyond it are dropped and reloaded from the on-disk
/// artifact cache when next needed.
pub const DEFAULT_MAX_LOADED_COMPONENTS: u32 = 256;
/// Executions one tenant may have in flight (`RUNNER_TENANT_MAX_CONCURRENCY`):
/// a quarter of the default pool, so one noisy tenant can never take the
/// pool from the others. Beyond it: 429 `tenant_concurrency_exceeded`,
/// answered at once.
pub const DEFAULT_TENANT_MAX_CONCURRENCY: u32 = 16;
/// Executions one (tenant, extension) may have in flight
/// (`RUNNER_EXTENSION_MAX_CONCURRENCY`): half the tenant's share, so one
/// runaway extension leaves room for the tenant's others. Beyond it: 429
/// `extension_concurrency_exceeded`, answered at once.
pub const DEFAULT_EXTENSION_MAX_CONCURRENCY: u32 = 8;
/// `Retry-After` (seconds) of the concurrency refusals (429s and 503
/// `overloaded`): slots free as executions finish, typically within
/// milliseconds and at most the timeout, so one second is a fair first retry.
pub const CONCURRENCY_RETRY_AFTER_SECS: u32 = 1;
/// Per-tenant token bucket (`RUNNER_TENANT_RATE_LIMIT`, `<per second>[:<burst>]`):
/// off by default, since a fair rate depends on the tenant's plan and the
/// concurrency caps already bound what one tenant can hold.
pub const DEFAULT_TENANT_RATE_LIMIT: &str = "off";
/// Bounds of `RUNNER_TENANT_RATE_LIMIT`: slower than one request per ~17
/// minutes or faster than a million per second is a typo, not a plan.
pub const MIN_RATE_LIMIT_PER_SECOND: f64 = 0.001;
pub const MAX_RATE_LIMIT_PER_SECOND: f64 = 1_000_000.0;
pub const MAX_RATE_LIMIT_BURST: u32 = 1_000_000;
/// Longest a shared rate-limit decision may take in Redis before the request
/// is admitted without it (fail open): Redis answers in well under a
/// millisecond nearby, and this bounds what a sick Redis adds to a request.
pub const RATE_LIMIT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// After Redis fails, requests skip it (fail open) for this long before it
/// is tried again: a dead Redis costs one timeout per second, not one per
/// request, and one warning per second in the log.
pub const RATE_LIMIT_REDIS_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often in-memory rate-limit buckets that have refilled completely (the
/// same as no bucket) are dropped, so idle tenants do not accumulate.
pub const RATE_LIMIT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Disk budget of the verified bundle cache (`RUNNER_CACHE_MAX_BYTES`):
/// least-recently-used bundles nobody is running are evicted beyond it.
/// 10 GiB holds thousands of typical bundles (a few MiB unpacked each).
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 10 << 30;

/// Largest component file the runner compiles (`RUNNER_MAX_COMPONENT_BYTES`),
/// checked before compiling and by `pack`/`publish`. Compile time and
/// memory grow with the input; real TypeScript (StarlingMonkey) guests are
/// about 11.7 MB, so 32 MiB leaves them room while refusing the outliers.
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 32 * 1024 * 1024;
/// A tenant may hold at most `1/COMPILE_TENANT_SHARE_DIVISOR` of the compile
/// slots (at least one), so one tenant's compile storm leaves the other half
/// of the pool to everyone else. The pool itself
/// (`RUNNER_COMPILE_CONCURRENCY`) defaults to the available cores:
/// Cranelift is CPU-bound, more at once only queue for the same cores.
pub const COMPILE_TENANT_SHARE_DIVISOR: usize = 2;
/// Upper bound of `RUNNER_COMPILE_CONCURRENCY`: beyond this many compiles at
/// once the machine is thrashing, not compiling faster.
pub const MAX_COMPILE_CONCURRENCY: u64 = 1024;
/// Most guest threads (`RUNNER_GUEST_THREADS`): one per core of the largest
/// machines a runner is deployed on.
pub const MAX_GUEST_THREADS: u64 = 1024;
/// `Retry-After` (seconds) of 503 `compile_busy`: a compile takes from a
/// fraction of a second to several for a big guest, so a few seconds gives
/// the queue time to drain (and the component may be compiled by then).
pub const COMPILE_BUSY_RETRY_AFTER_SECS: u32 = 5;
/// Components refused at load (`unsupported_import`, `component_invalid`,
/// `unsupported_feature`, `component_too_large`) remembered per (content
/// hash, component), so the same bundle is not compiled again on every
/// request; the least recently refused are forgotten beyond this.
/// Each costs at most [`MAX_REFUSAL_MESSAGE_BYTES`] plus its key, so the
/// whole memory is bounded to a few MiB.
pub const MAX_REMEMBERED_REFUSALS: usize = 4096;
/// Longest refusal message kept (longer ones are cut): enough for a list of
/// unsupported imports, bounded so remembered refusals stay small.
pub const MAX_REFUSAL_MESSAGE_BYTES: usize = 1024;

/// How long a request may wait for an execution slot before 503
/// `overloaded`: a bounded wait that absorbs bursts of sub-millisecond
/// executions without ever queueing for long (tenant caps do not wait).
pub const CONCURRENCY_WAIT: Duration = Duration::from_millis(100);

/// One process-wide epoch ticker drives every deadline, and each tick ends
/// a running guest's CPU slice (it yields and the fair share decides who
/// runs next). 1 ms: a waiting tenant is at most about a slice behind a
/// spinning neighbour, against the budget of +2 ms at p99; a
/// guest loop is interrupted at most one tick after its deadline; a tick
/// costs one atomic increment and, per running guest, one yield (a few
/// microseconds).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Nice value of the compile threads (Cranelift's rayon pool; everything
/// else runs at 0). Under the kernel's fair scheduler nice 10 weighs about
/// a tenth of nice 0, so seconds of compiling for one tenant's cold
/// component take idle cycles rather than other tenants' and HTTP's; an
/// unprivileged process may always raise it. Guest threads stay at 0:
/// measured at nice 10, an HTTP flood of refused requests starved them and
/// cut a flooding tenant's own throughput by three quarters
/// (`bench/neighbours`, 2026-12-03).
pub const COMPILE_THREAD_NICE: i32 = 10;
/// A tenant's executions that may wait for their first CPU slice while
/// other tenants compete (`RUNNER_TENANT_CPU_QUEUE`); beyond it new ones
/// get 429 `tenant_cpu_exceeded` at once. The default equals the default
/// tenant cap, so by default a tenant over its share only waits: at 8, the
/// soak's ordinary mixed load (four tenants at 70 % of capacity) already
/// had good requests refused. Lower it to refuse earlier.
pub const DEFAULT_TENANT_CPU_QUEUE: u64 = 16;
/// Largest tenant CPU weight (`RUNNER_TENANT_CPU_WEIGHTS`): weights are
/// relative, and 1..=100 covers every tiering a platform uses.
pub const MAX_TENANT_CPU_WEIGHT: u32 = 100;
/// Largest `RUNNER_TENANT_CPU_MS_PER_SEC`: 1,024 cores' worth.
pub const MAX_CPU_BUDGET_MS_PER_SECOND: f64 = 1_024_000.0;
/// How often a runner sends a tenant's CPU charges to Redis and takes the
/// fleet's balance back (on that tenant's admissions): one round trip per
/// tenant per interval, and a fleet acts on balances at most this old.
pub const CPU_BUDGET_SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// Guest wasm stack. Kept well below [`ASYNC_STACK_BYTES`] so a stack
/// overflow is a clean trap and host calls still have room.
pub const MAX_WASM_STACK_BYTES: usize = 512 * 1024;
/// Fiber stack each execution runs on (wasm stack + host frames).
pub const ASYNC_STACK_BYTES: usize = 2 * 1024 * 1024;

/// Table elements per table: StarlingMonkey components use ~7,600.
pub const MAX_TABLE_ELEMENTS: usize = 50_000;
/// Core instances, memories and tables one component may create; a Rust
/// wasip2 component uses about four core instances, JS about ten.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
pub const MAX_TABLES_PER_COMPONENT: u32 = 16;

/// Guest stdout/stderr kept per stream per execution; the rest is counted
/// and dropped so a chatty guest cannot flood the log.
pub const MAX_GUEST_OUTPUT_BYTES: usize = 64 * 1024;
/// Log lines a guest may emit per execution through `logging.*`.
pub const MAX_GUEST_LOG_LINES: u32 = 1_000;
/// Longest single guest log message kept (longer ones are truncated).
pub const MAX_GUEST_LOG_MESSAGE_BYTES: usize = 8 * 1024;

/// Resources one store may hold at once: streams, pollables,
/// `wasi:http` header sets, requests, bodies, futures. Every one is host
/// memory outside the guest's limit, and Wasmtime's default (1,000,000)
/// lets a guest loop its way to gigabytes. A guest fanning out the 32
/// outbound requests egress allows uses about ten each; real TypeScript
/// and wstd guests stay under a hundred. Beyond it the call traps.
pub const MAX_RESOURCES_PER_STORE: usize = 1_000;
/// In-memory overhead wasmtime-wasi-http counts per header entry (a name
/// and a value), on top of their bytes.
const FIELD_ENTRY_OVERHEAD_BYTES: usize = size_of::<http::HeaderName>() + size_of::<http::HeaderValue>();
/// Bytes one `wasi:http` header set (`fields`) may hold, as
/// wasmtime-wasi-http accounts them (A-22; its default is 128 KiB): the
/// most headers egress sends (100, 64 KiB of names and values) with their
/// per-entry overhead. Beyond it `append`/`set` fail with a typed error.
pub const MAX_FIELDS_BYTES: usize =
    ext_egress::MAX_REQUEST_HEADER_BYTES + ext_egress::MAX_REQUEST_HEADERS * FIELD_ENTRY_OVERHEAD_BYTES;
/// Header bytes one store can hold in all: every resource a full
/// header set is the most `fields.clone` + `append` in a loop can reach
/// (about 70 MiB), since each copy is a resource and each is capped.
pub const MAX_FIELDS_BYTES_PER_STORE: usize = MAX_RESOURCES_PER_STORE * MAX_FIELDS_BYTES;
// A header set holds what egress may send, and the per-store bound stays
// well below the guest memory default.
const _: () = assert!(MAX_FIELDS_BYTES >= ext_egress::MAX_REQUEST_HEADER_BYTES);
const _: () = assert!(MAX_FIELDS_BYTES_PER_STORE < 100 * 1024 * 1024);
/// Wasmtime's "hostcall fuel" above the largest legitimate transfer:
/// the bytes one guest→host call (or a guest export's result) may make the
/// host allocate. The largest transfers are a response body (up to the
/// response cap) and an `http.fetch` request body (up to egress's cap);
/// this covers their headers and record overhead. Wasmtime's default is
/// 128 MiB per call whatever the caps are; over it the call traps.
pub const HOSTCALL_FUEL_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// Hostcall fuel for a store whose largest legitimate guest→host transfer
/// is `largest_transfer` bytes.
pub fn hostcall_fuel(largest_transfer: u64) -> usize {
    usize::try_from(largest_transfer.saturating_add(HOSTCALL_FUEL_OVERHEAD_BYTES)).unwrap_or(usize::MAX)
}

/// Clamp a requested value into `1..=max`, using `default` when absent.
pub fn clamp(requested: Option<u64>, default: u64, max: u64) -> u64 {
    requested.unwrap_or(default).clamp(1, max.max(1))
}

/// Largest body `ui-proxy.call-route` hands back to a guest.
pub const MAX_UI_PROXY_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// Longest one call to the host product's internal API may take (the
/// product interfaces: `scheduler`, `invoicing`, `clients`, `services`):
/// upstream runners give these calls 30 s. A call is also bounded by the
/// execution's deadline, less [`HOST_API_ANSWER_MARGIN`].
pub const HOST_API_TIMEOUT: Duration = Duration::from_secs(30);
/// Time kept back from the execution's deadline when a host API call is
/// timed: a call allowed all the remaining time would leave the guest none
/// to turn the `internal` it gets into its answer, and the execution would
/// end `execution_timeout` instead. 100 ms is far more than a guest needs
/// to answer, and leaves the host call most of a deadline of a second.
pub const HOST_API_ANSWER_MARGIN: Duration = Duration::from_millis(100);
/// Largest answer of the host API read for a guest, read chunk by chunk
/// and refused (`internal`) past it: the largest legitimate answers are a
/// page of 100 clients or services (tens of KiB) and an install's
/// schedules with their JSON payloads; 4 MiB leaves room for those and
/// bounds what one call makes the runner hold.
pub const MAX_HOST_API_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// `page-size` of `clients.list-clients` and `services.list-services` when
/// the guest gives none, and the largest it may ask (compat: the product
/// API's own paging; outside `1..=100` the call is `invalid-input`).
pub const DEFAULT_PRODUCT_PAGE_SIZE: u32 = 25;
pub const MAX_PRODUCT_PAGE_SIZE: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    /// the hostcall fuel carries the largest transfer plus overhead.
    #[test]
    fn a07_hostcall_fuel() {
        assert_eq!(hostcall_fuel(10), 10 + 1024 * 1024);
        assert_eq!(hostcall_fuel(u64::MAX), usize::MAX);
    }

    #[test]
    fn clamp_table() {
        let cases = [
            (None, 128, 256, 128),
            (Some(64), 128, 256, 64),
            (Some(1024), 128, 256, 256),
            (Some(0), 128, 256, 1),
            (None, 512, 256, 256),
            (Some(5), 128, 0, 1),
        ];
        for (requested, default, max, want) in cases {
            assert_eq!(clamp(requested, default, max), want, "{requested:?} {default} {max}");
        }
    }
}

/// The operator's ceilings on one execution and the global slot count
/// (`RUNNER_MAX_*`), read once at start-up.
#[derive(Clone, Debug)]
pub struct ExecutionLimits {
    /// `RUNNER_MAX_MEMORY_MB`: ceiling of `limits.memory_mb`.
    pub max_memory_mb: u64,
    /// `RUNNER_MAX_TIMEOUT_MS` (default `EXT_GATEWAY_TIMEOUT_MS`, else
    /// [`DEFAULT_MAX_TIMEOUT_MS`]): ceiling of `limits.timeout_ms`.
    pub max_timeout_ms: u64,
    /// `RUNNER_MAX_REQUEST_BYTES`: largest execute request body.
    pub max_request_bytes: u64,
    /// `RUNNER_MAX_RESPONSE_BYTES`: largest guest response body.
    pub max_response_bytes: u64,
    /// `RUNNER_MAX_CONCURRENCY`: executions in flight in this process.
    pub max_concurrency: u32,
}

impl ExecutionLimits {
    pub fn from_source(source: &crate::config::source::Source) -> ExecutionLimits {
        // The seed's EXT_GATEWAY_TIMEOUT_MS (the gateway's own timeout) is
        // the default ceiling when RUNNER_MAX_TIMEOUT_MS is not set.
        let gateway_timeout_ms = source.number("EXT_GATEWAY_TIMEOUT_MS", DEFAULT_MAX_TIMEOUT_MS, 1..=3_600_000);
        ExecutionLimits {
            max_memory_mb: source.number("RUNNER_MAX_MEMORY_MB", DEFAULT_MAX_MEMORY_MB, 1..=4096),
            max_timeout_ms: source.number("RUNNER_MAX_TIMEOUT_MS", gateway_timeout_ms, 1..=3_600_000),
            max_request_bytes: source.number("RUNNER_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, 0..=1 << 30),
            max_response_bytes: source.number("RUNNER_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES, 0..=1 << 30),
            max_concurrency: source.number("RUNNER_MAX_CONCURRENCY", u64::from(DEFAULT_MAX_CONCURRENCY), 1..=10_000)
                as u32,
        }
    }
}
