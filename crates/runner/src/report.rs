//! What one execution used, for the execute response's `report`, the
//! metrics and the log line. Filled by the engine (fuel, memory, time), the
//! host (calls, egress, logs) and the CPU scheduler (CPU time, waits).

/// What one execution used: returned with every outcome, for the execute
/// response's `report`, the metrics and the request's log line.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ExecutionReport {
    /// Wall time from store creation to the handler's return.
    pub wall_ms: f64,
    /// Fuel consumed (Wasmtime units; every execution is metered).
    pub fuel_used: u64,
    /// Thread CPU time spent running the guest (its code, instantiation
    /// and the host calls it makes inline), charged to the tenant's share
    /// and budget.
    pub cpu_ms: f64,
    /// Time the guest was ready to run but waited for a CPU slice.
    pub cpu_wait_ms: f64,
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
