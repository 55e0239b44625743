//! The execution log, written off the request path: each call queues one
//! row (never its body, headers or secrets) into a bounded queue; a task
//! writes them in batches to the registry (in-process, or `POST
//! /v1/registry/executions` on `GATEWAY_REGISTRY_URL`). A full queue drops
//! the row and counts it: the log never slows or fails a call.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::metrics::GatewayMetrics;
use crate::registry::Registry;

/// Rows written in one transaction or request at most: one write per
/// batch, and a batch small enough to write in milliseconds.
pub const MAX_BATCH_ROWS: usize = 500;
/// How long the writer gathers rows after the first of a batch before it
/// writes them: under load a batch is one transaction (one commit, one
/// request) per this interval instead of one per few rows (bench/gateway
/// measured the in-process log's commits at about a tenth of the server's
/// CPU without it); a row reaches the log this much later at most.
pub const BATCH_LINGER: Duration = Duration::from_millis(100);
/// Longest a batch write to a registry elsewhere may take.
pub const LOG_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One call as the log keeps it: also the wire shape of `POST
/// /v1/registry/executions`' `items`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionRow {
    pub tenant: String,
    pub extension: String,
    pub request_id: String,
    pub version: String,
    pub endpoint: String,
    pub status: u16,
    #[serde(default)]
    pub error_code: Option<String>,
    pub duration_ms: u64,
    #[serde(default)]
    pub limit_hit: Option<String>,
    /// Unix milliseconds.
    pub at: i64,
}

/// Longest text field of a row a gateway elsewhere may append (request
/// ids are ≤ 128, extension names ≤ 255, endpoint patterns short).
pub const MAX_ROW_FIELD_BYTES: usize = 512;

impl ExecutionRow {
    /// The row's fields within bounds (what a gateway elsewhere sends is
    /// checked before it is stored).
    ///
    /// # Errors
    /// The field and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        ext_registry::names::check_tenant(&self.tenant).map_err(|why| ("tenant", why))?;
        let fields = [
            ("extension", &self.extension),
            ("request_id", &self.request_id),
            ("version", &self.version),
            ("endpoint", &self.endpoint),
        ];
        let optional = [("error_code", &self.error_code), ("limit_hit", &self.limit_hit)];
        let texts = fields.into_iter().chain(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.as_ref().map(|v| (name, v))),
        );
        for (name, value) in texts {
            if value.len() > MAX_ROW_FIELD_BYTES || value.chars().any(char::is_control) {
                return Err((
                    name,
                    format!("at most {MAX_ROW_FIELD_BYTES} bytes, no control characters"),
                ));
            }
        }
        if !(100..=599).contains(&self.status) {
            return Err(("status", "must be an HTTP status".into()));
        }
        Ok(())
    }
}

impl From<ExecutionRow> for ext_registry::Execution {
    fn from(row: ExecutionRow) -> ext_registry::Execution {
        ext_registry::Execution {
            request_id: row.request_id,
            tenant: row.tenant,
            extension: row.extension,
            version: row.version,
            endpoint: row.endpoint,
            status: row.status,
            error_code: row.error_code,
            duration_ms: row.duration_ms,
            limit_hit: row.limit_hit,
            at: ext_registry::Timestamp(row.at),
        }
    }
}

/// Where the rows go.
pub enum LogSink {
    Local(Arc<Registry>),
    Remote {
        client: reqwest::Client,
        /// `{GATEWAY_REGISTRY_URL}/v1/registry/executions`.
        url: String,
        token: String,
    },
}

impl LogSink {
    async fn write(&self, rows: Vec<ExecutionRow>) -> Result<(), String> {
        match self {
            LogSink::Local(registry) => {
                let executions: Vec<ext_registry::Execution> = rows.into_iter().map(Into::into).collect();
                registry
                    .database()
                    .record_executions(&executions)
                    .await
                    .map_err(|e| e.to_string())
            }
            LogSink::Remote { client, url, token } => {
                let body = serde_json::to_vec(&serde_json::json!({ "items": rows })).map_err(|e| e.to_string())?;
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .timeout(LOG_WRITE_TIMEOUT)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                match response.status().is_success() {
                    true => Ok(()),
                    false => Err(format!("the registry answered {}", response.status())),
                }
            }
        }
    }
}

/// The sending half: [`ExecutionLog::record`] never waits.
#[derive(Clone)]
pub struct ExecutionLog {
    queue: mpsc::Sender<ExecutionRow>,
    metrics: Arc<GatewayMetrics>,
}

impl ExecutionLog {
    /// A log of `capacity` queued rows and the task that writes them to
    /// `sink` (it ends when every sender is gone, after the last batch).
    pub fn start(sink: LogSink, capacity: usize, metrics: Arc<GatewayMetrics>) -> ExecutionLog {
        let (queue, rows) = mpsc::channel(capacity.max(1));
        tokio::spawn(write_batches(rows, sink, metrics.clone()));
        ExecutionLog { queue, metrics }
    }

    /// Queue `row`, or drop and count it when the queue is full.
    pub fn record(&self, row: ExecutionRow) {
        if self.queue.try_send(row).is_err() {
            self.metrics.log_rows("dropped", 1);
        }
    }
}

async fn write_batches(mut rows: mpsc::Receiver<ExecutionRow>, sink: LogSink, metrics: Arc<GatewayMetrics>) {
    let mut batch = Vec::with_capacity(MAX_BATCH_ROWS);
    while rows.recv_many(&mut batch, MAX_BATCH_ROWS).await > 0 {
        let linger = tokio::time::Instant::now() + BATCH_LINGER;
        while batch.len() < MAX_BATCH_ROWS {
            let room = MAX_BATCH_ROWS - batch.len();
            // `recv_many` is cancel-safe: rows are never lost to the timeout.
            match tokio::time::timeout_at(linger, rows.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let count = batch.len() as u64;
        match sink.write(std::mem::take(&mut batch)).await {
            Ok(()) => metrics.log_rows("written", count),
            Err(why) => {
                tracing::warn!(rows = count, error = %why, "execution log rows could not be written");
                metrics.log_rows("failed", count);
            }
        }
    }
}
