//! Live debugging: a copy of guest log lines and captured stdout/stderr in
//! Redis streams (`RUNNER_DEBUG_REDIS_URL`), one per (tenant, extension):
//!
//! ```text
//! XADD ext-debug:{tenant}:{extension} MAXLEN ~ 1000 * level info source log message … request_id … [version …]
//! ```
//!
//! In the key, `%` and `:` inside an id are written `%25` and `%3A`
//! ([`stream_key`]), so two different (tenant, extension) pairs never share
//! a stream (`a:b` + `c` is not `a` + `b:c`); ids without either character,
//! as gateways send them, keep the plain key.
//!
//! Read them with `XRANGE`/`XREAD`. The sink is off the request path: a
//! line is queued with a non-blocking send on a bounded channel, and one
//! background task on a thread of its own writes batches to Redis. When
//! the queue is full, or Redis is slow or down, lines are dropped and
//! counted (`ext_runner_debug_sink_dropped_total{reason}`); an execution
//! never waits for Redis and never fails because of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::metrics::SinkMetrics;
use crate::metrics::Metrics;

/// Prefix of the stream keys: `ext-debug:{tenant}:{extension}`.
pub const STREAM_PREFIX: &str = "ext-debug:";

/// The Redis stream of (tenant, extension): `ext-debug:{tenant}:{extension}`
/// with `%` → `%25` and `:` → `%3A` in each id, so the key names exactly one
/// pair.
pub fn stream_key(tenant: &str, extension: &str) -> String {
    fn escaped(id: &str, out: &mut String) {
        for c in id.chars() {
            match c {
                '%' => out.push_str("%25"),
                ':' => out.push_str("%3A"),
                c => out.push(c),
            }
        }
    }
    let mut key = String::with_capacity(STREAM_PREFIX.len() + tenant.len() + extension.len() + 1);
    key.push_str(STREAM_PREFIX);
    escaped(tenant, &mut key);
    key.push(':');
    escaped(extension, &mut key);
    key
}

/// Approximate length each stream is trimmed to (`MAXLEN ~`): recent lines
/// for a person watching, not an archive.
pub const STREAM_MAX_LEN: usize = 1_000;

/// Lines waiting for Redis. With guest lines capped at 8 KiB this bounds
/// the queue to 8 MiB; beyond it lines are dropped.
pub const QUEUE_CAPACITY: usize = 1_024;

/// Lines written in one pipelined round trip.
pub const MAX_BATCH: usize = 128;

/// Longest a connection attempt or a batch may take before the batch is
/// dropped.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// After a failure, lines are dropped without trying Redis for this long,
/// so a dead Redis costs one timeout per interval and the queue keeps
/// draining.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// One guest line and whom it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugLine {
    pub tenant: String,
    pub extension: String,
    pub request_id: String,
    pub version: Option<String>,
    /// `info`, `warn` or `error`.
    pub level: &'static str,
    /// `log` (the `logging` interface), `stdout` or `stderr`.
    pub source: &'static str,
    pub message: String,
}

/// A handle for queueing lines; cheap to clone. The background task ends
/// when the last handle is dropped.
#[derive(Clone)]
pub struct DebugSink {
    queue: mpsc::Sender<DebugLine>,
    metrics: Arc<SinkMetrics>,
}

/// The sink could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// What [`check_url`] says (password redacted).
    #[error("{0}")]
    Url(String),
    #[error("cannot start the debug sink thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Check `RUNNER_DEBUG_REDIS_URL` without connecting.
///
/// # Errors
/// Why the URL is unusable (TLS is not built in); any password redacted.
pub fn check_url(text: &str) -> Result<(), String> {
    let shown = redact(text);
    if text.starts_with("rediss://") || text.starts_with("valkeys://") {
        return Err(format!("`{shown}`: TLS (rediss://) is not built in; use redis://"));
    }
    redis::Client::open(text)
        .map(drop)
        .map_err(|e| format!("`{shown}` is not a Redis URL like redis://127.0.0.1:6379 ({e})"))
}

impl DebugSink {
    /// Start the background writer for `url`, counting into families it
    /// registers in `metrics` (one sink per registry).
    ///
    /// # Errors
    /// [`StartError`] for a bad URL or when the thread cannot start.
    pub fn start(url: &str, metrics: &Metrics) -> Result<DebugSink, StartError> {
        DebugSink::start_with_capacity(url, metrics, QUEUE_CAPACITY)
    }

    /// [`DebugSink::start`] with a queue of `capacity` lines.
    ///
    /// # Errors
    /// As [`DebugSink::start`].
    pub fn start_with_capacity(url: &str, metrics: &Metrics, capacity: usize) -> Result<DebugSink, StartError> {
        check_url(url).map_err(StartError::Url)?;
        let client = redis::Client::open(url).map_err(|e| StartError::Url(format!("`{}`: {e}", redact(url))))?;
        let metrics = SinkMetrics::register(metrics);
        let (queue, lines) = mpsc::channel(capacity.max(1));
        let writer_metrics = metrics.clone();
        // A thread and runtime of its own: the writer outlives no caller's
        // runtime and competes with no request for a worker.
        std::thread::Builder::new()
            .name("ext-debug-sink".to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "debug sink: no runtime; guest lines will be dropped");
                        return;
                    }
                };
                runtime.block_on(write_loop(client, lines, writer_metrics));
            })?;
        Ok(DebugSink { queue, metrics })
    }

    /// Queue `line` without waiting; when the queue is full it is dropped
    /// and counted.
    pub fn send(&self, line: DebugLine) {
        if self.queue.try_send(line).is_err() {
            self.metrics.dropped("queue_full", 1);
        }
    }
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

async fn write_loop(client: redis::Client, mut lines: mpsc::Receiver<DebugLine>, metrics: Arc<SinkMetrics>) {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        // The pause below handles retries; a batch never waits for backoff.
        .set_number_of_retries(0);
    let mut connection = match redis::aio::ConnectionManager::new_lazy_with_config(client, config) {
        Ok(connection) => connection,
        Err(error) => {
            tracing::error!(%error, "debug sink: cannot set up the Redis connection; guest lines will be dropped");
            while lines.recv().await.is_some() {
                metrics.dropped("redis_unavailable", 1);
            }
            return;
        }
    };
    let mut paused_until: Option<Instant> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while lines.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let count = batch.len() as u64;
        if paused_until.is_some_and(|until| Instant::now() < until) {
            metrics.dropped("redis_unavailable", count);
            batch.clear();
            continue;
        }
        let mut pipe = redis::pipe();
        for line in batch.drain(..) {
            let command = pipe
                .cmd("XADD")
                .arg(stream_key(&line.tenant, &line.extension))
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg("level")
                .arg(line.level)
                .arg("source")
                .arg(line.source)
                .arg("message")
                .arg(line.message)
                .arg("request_id")
                .arg(line.request_id);
            if let Some(version) = line.version {
                command.arg("version").arg(version);
            }
            command.ignore();
        }
        let error = match tokio::time::timeout(REDIS_TIMEOUT, pipe.exec_async(&mut connection)).await {
            Ok(Ok(())) => {
                metrics.written(count);
                paused_until = None;
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", REDIS_TIMEOUT.as_millis()),
        };
        metrics.dropped("redis_unavailable", count);
        if paused_until.is_none() {
            tracing::warn!(%error, retry_in_ms = RETRY_INTERVAL.as_millis() as u64, "debug sink: Redis unavailable; dropping guest lines meanwhile");
        }
        paused_until = Some(Instant::now() + RETRY_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposed sample names (the families are registered without `_total`).
    const DROPPED: &str = "ext_runner_debug_sink_dropped_total";
    const WRITTEN: &str = "ext_runner_debug_sink_written_total";

    fn line(n: usize) -> DebugLine {
        DebugLine {
            tenant: "t".into(),
            extension: "x".into(),
            request_id: format!("r{n}"),
            version: None,
            level: "info",
            source: "log",
            message: format!("line {n}"),
        }
    }

    fn dropped(metrics: &Metrics, reason: &str) -> f64 {
        let text = metrics.encode();
        let prefix = format!("{DROPPED}{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0.0, |n| n.parse().unwrap())
    }

    /// Debug stream keys: a `:` (or `%`) inside an id cannot make two
    /// different (tenant, extension) pairs share one stream.
    #[test]
    fn stream_keys_name_exactly_one_pair() {
        assert_eq!(stream_key("tenant-1", "com.acme.x"), "ext-debug:tenant-1:com.acme.x");
        let pairs = [
            ("a:b", "c"),
            ("a", "b:c"),
            ("a%3Ab", "c"),
            ("a", "b%3Ac"),
            ("a%", "3Ab:c"),
            ("a", "b"),
        ];
        let keys: std::collections::HashSet<String> = pairs.iter().map(|(t, e)| stream_key(t, e)).collect();
        assert_eq!(keys.len(), pairs.len(), "{keys:?}");
        assert_eq!(stream_key("a:b", "c"), "ext-debug:a%3Ab:c");
        assert_eq!(stream_key("a%3Ab", "c"), "ext-debug:a%253Ab:c");
        // Exactly one unescaped `:` after the prefix separates the ids.
        for (t, e) in pairs {
            let key = stream_key(t, e);
            assert_eq!(
                key.strip_prefix(STREAM_PREFIX).unwrap().matches(':').count(),
                1,
                "{key}"
            );
        }
    }

    #[test]
    fn urls_are_checked_and_redacted() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://127.0.0.1:6379").unwrap_err().contains("TLS"));
        assert!(check_url("http://127.0.0.1").is_err());
        assert_eq!(redact("redis://:hunter2@h:1/0"), "redis://[redacted]@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    /// A Redis that accepts connections and never answers: sends return at
    /// once, the overflow is counted, and nothing is written.
    #[test]
    fn a_silent_redis_never_blocks_the_sender() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}", silent.local_addr().unwrap());
        let metrics = Metrics::default();
        let sink = DebugSink::start_with_capacity(&url, &metrics, 4).unwrap();
        let started = Instant::now();
        for n in 0..200 {
            sink.send(line(n));
        }
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert!(dropped(&metrics, "queue_full") >= 100.0, "{}", metrics.encode());
        assert!(!metrics.encode().contains(WRITTEN));
    }
}
