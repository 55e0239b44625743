//! The execution log's bounded retention: calls older than
//! `REGISTRY_EXECUTION_RETENTION_HOURS` are deleted at start-up and then
//! every [`PRUNE_INTERVAL`] by the process running the registry role.

use std::sync::Arc;
use std::time::Duration;

use ext_registry::Timestamp;

use super::Registry;
use crate::error::Failure;

/// How often old executions are deleted: hourly keeps the table within an
/// hour of its retention at a cost of one indexed `DELETE` an hour.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

impl Registry {
    /// Delete the executions older than the retention, as of `now`; how
    /// many went.
    ///
    /// # Errors
    /// `registry_unavailable`.
    pub async fn prune_executions(&self, now: Timestamp) -> Result<u64, Failure> {
        let retention = i64::try_from(self.execution_retention.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .db
            .prune_executions(Timestamp(now.0.saturating_sub(retention)))
            .await?)
    }
}

/// Prune now and then every [`PRUNE_INTERVAL`], until the task is dropped.
pub async fn run(registry: Arc<Registry>) {
    let mut every = tokio::time::interval(PRUNE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match registry.prune_executions(Timestamp::now()).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "execution log pruned to its retention"),
            Err(failure) => tracing::warn!(reason = %failure.message, "execution log not pruned; retrying later"),
        }
    }
}
