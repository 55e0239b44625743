//! The registry role's settings: its database, its callers' tokens and
//! how long the execution log is kept.

use std::path::Path;
use std::time::Duration;

use super::tokens::Tokens;
use crate::config::source::Source;

#[derive(Clone, Debug)]
pub struct RegistrySettings {
    /// `REGISTRY_DATABASE_URL`: `postgres://…`, `sqlite://PATH`, or a file
    /// path; default `$RUNNER_DATA_DIR/registry.db`.
    pub database_url: String,
    /// `REGISTRY_TOKENS`: who may call the registry, and for what.
    pub tokens: Tokens,
    /// `REGISTRY_EXECUTION_RETENTION_HOURS`: executions older than this are
    /// pruned from the log.
    pub execution_retention: Duration,
}

/// How long the execution log keeps a call unless told: 30 days, a month
/// of "what did this extension do" at a few hundred bytes a row.
pub const DEFAULT_EXECUTION_RETENTION_HOURS: u64 = 30 * 24;

/// Longest retention accepted: ten years (the log is for operations, not
/// archival; an audit trail is the audit log, which is never pruned).
pub const MAX_EXECUTION_RETENTION_HOURS: u64 = 10 * 365 * 24;

impl RegistrySettings {
    pub fn from_source(source: &Source, data_dir: &Path) -> RegistrySettings {
        let database_url = source
            .text("REGISTRY_DATABASE_URL")
            .map_or_else(|| data_dir.join("registry.db").display().to_string(), str::to_string);
        let tokens = source.text("REGISTRY_TOKENS").map_or_else(Tokens::default, |text| {
            Tokens::parse(text).unwrap_or_else(|why| {
                source.problem(format!("REGISTRY_TOKENS: {why}"));
                Tokens::default()
            })
        });
        let hours = source.number(
            "REGISTRY_EXECUTION_RETENTION_HOURS",
            DEFAULT_EXECUTION_RETENTION_HOURS,
            1..=MAX_EXECUTION_RETENTION_HOURS,
        );
        RegistrySettings {
            database_url,
            tokens,
            execution_retention: Duration::from_secs(hours * 3600),
        }
    }
}
