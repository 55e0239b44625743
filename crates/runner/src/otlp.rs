//! OTLP trace export (`OTEL_EXPORTER_OTLP_ENDPOINT`): every `execute`
//! request span is sent to `<endpoint>/v1/traces` as OTLP/HTTP JSON,
//! in batches, from one background thread.
//!
//! A `tracing` layer records each span's start, end and fields; a span that
//! carries a W3C `trace_id` (from the request's `traceparent`) joins that
//! trace, others start one. Export never slows a request: spans go through
//! a bounded queue and are dropped (and counted) when it is full or the
//! collector is down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Spans waiting for export; beyond it new spans are dropped.
pub const MAX_QUEUED_SPANS: usize = 4096;
/// Spans per export request.
pub const MAX_BATCH_SPANS: usize = 512;
/// How long a span may wait before its batch is sent.
pub const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Time limit of one export request.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Span names exported (the request spans).
const EXPORTED: &[&str] = &["execute"];

/// One finished span, ready to encode.
struct Finished {
    name: &'static str,
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(String, String)>,
}

/// Per-span state kept in the span's extensions.
struct Open {
    start: SystemTime,
    attributes: Vec<(String, String)>,
}

#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_string(), format!("{value:?}")));
    }
}

/// The `tracing` layer feeding the exporter.
pub struct OtlpLayer {
    queue: SyncSender<Finished>,
    dropped: Arc<AtomicU64>,
}

/// Flushes queued spans when dropped (at shutdown).
pub struct OtlpGuard {
    flush: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop: SyncSender<Finished>,
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        // A span with an empty name is the stop signal; the thread then
        // sends what it holds and exits.
        let _ = self.stop.try_send(Finished {
            name: "",
            trace_id: String::new(),
            span_id: String::new(),
            parent_span_id: None,
            start: SystemTime::UNIX_EPOCH,
            end: SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
        });
        if let Some(handle) = self.flush.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

/// The layer and its guard, exporting to `endpoint` (`http(s)://host:port`,
/// `/v1/traces` is appended unless the URL already ends with it).
///
/// # Errors
/// If the export thread cannot start or the HTTP client cannot be built.
pub fn layer(endpoint: &str) -> std::io::Result<(OtlpLayer, OtlpGuard)> {
    let url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(MAX_QUEUED_SPANS);
    let dropped = Arc::new(AtomicU64::new(0));
    let handle = std::thread::Builder::new()
        .name("otlp-export".into())
        .spawn(move || export_loop(&url, &rx))?;
    Ok((
        OtlpLayer {
            queue: tx.clone(),
            dropped,
        },
        OtlpGuard {
            flush: Mutex::new(Some(handle)),
            stop: tx,
        },
    ))
}

impl<S> tracing_subscriber::Layer<S> for OtlpLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !EXPORTED.contains(&attrs.metadata().name()) {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Open {
                start: SystemTime::now(),
                attributes: fields.0,
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            let mut fields = Fields::default();
            values.record(&mut fields);
            open.attributes.extend(fields.0);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let (mut trace_id, mut parent_span_id) = (None, None);
        let mut attributes = Vec::with_capacity(open.attributes.len());
        for (key, value) in open.attributes {
            match key.as_str() {
                "trace_id" if value.len() == 32 => trace_id = Some(value),
                "parent_span_id" if value.len() == 16 => parent_span_id = Some(value),
                _ if value.is_empty() => {}
                _ => attributes.push((key, value)),
            }
        }
        let finished = Finished {
            name: span.metadata().name(),
            trace_id: trace_id.unwrap_or_else(new_trace_id),
            span_id: new_span_id(),
            parent_span_id,
            start: open.start,
            end: SystemTime::now(),
            attributes,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(finished) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A W3C/OTLP span id: 8 random bytes, never all zero, as 16 hex digits.
pub fn new_span_id() -> String {
    non_zero_hex(crate::random_bytes::<8>())
}

/// The `traceparent` for an outbound request made on behalf of `parent`
/// (a validated inbound header): same trace and flags, a new span id.
pub fn child_traceparent(parent: &str) -> String {
    format!("00-{}-{}-{}", &parent[3..35], new_span_id(), &parent[53..55])
}

/// A W3C/OTLP trace id: 16 random bytes, never all zero, as 32 hex digits.
pub fn new_trace_id() -> String {
    non_zero_hex(crate::random_bytes::<16>())
}

fn non_zero_hex<const N: usize>(mut bytes: [u8; N]) -> String {
    if bytes.iter().all(|b| *b == 0) {
        bytes[0] = 1;
    }
    hex::encode(bytes)
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

/// The OTLP/HTTP JSON request body for `spans`.
fn encode(spans: &[Finished]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.trace_id,
                "spanId": s.span_id,
                "name": s.name,
                "kind": 2,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": s.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>(),
            });
            if let Some(parent) = &s.parent_span_id {
                span["parentSpanId"] = json!(parent);
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "ext-runner"}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}}
            ]},
            "scopeSpans": [{"scope": {"name": "ext-runner"}, "spans": spans}]
        }]
    })
}

fn export_loop(url: &str, rx: &Receiver<Finished>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return;
    };
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .no_proxy()
        .build()
        .unwrap_or_default();
    let mut batch: Vec<Finished> = Vec::new();
    loop {
        let stop = match rx.recv_timeout(BATCH_DELAY) {
            Ok(span) if span.name.is_empty() => true,
            Ok(span) => {
                batch.push(span);
                false
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => true,
        };
        // Take whatever else is already queued, up to a batch.
        while batch.len() < MAX_BATCH_SPANS {
            match rx.try_recv() {
                Ok(span) if span.name.is_empty() => break,
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let body = encode(&batch).to_string();
            batch.clear();
            // The request (and its timeout) must be created inside the runtime.
            let sent = runtime.block_on(async {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
            });
            if let Err(e) = sent {
                eprintln!("otlp export to {url} failed: {}", e.without_url());
            }
        }
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_otlp_json() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
        let body = encode(&[Finished {
            name: "execute",
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: Some("1111111111111111".into()),
            start,
            end: start + Duration::from_millis(2),
            attributes: vec![("tenant".into(), "t1".into())],
        }]);
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["name"], "execute");
        assert_eq!(span["startTimeUnixNano"], "1000000000");
        assert_eq!(span["endTimeUnixNano"], "1002000000");
        assert_eq!(span["parentSpanId"], "1111111111111111");
        assert_eq!(span["attributes"][0]["value"]["stringValue"], "t1");
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "ext-runner"
        );
    }
}
