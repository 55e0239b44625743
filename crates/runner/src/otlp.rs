//! OTLP trace export (`OTEL_EXPORTER_OTLP_ENDPOINT`) with the OpenTelemetry
//! SDK: `tracing-opentelemetry` turns every `execute` request span into an
//! OTel span, the SDK's batch span processor (a Tokio runtime on a thread of
//! its own) sends them to `<endpoint>/v1/traces` as OTLP/HTTP protobuf.
//!
//! A caller's W3C `traceparent` becomes the span's remote parent
//! ([`continue_trace`]); other spans start a trace. Export never slows a
//! request: ended spans go through a bounded queue and are dropped when it is
//! full or the collector is down.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider, SpanData, SpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;
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
/// Span fields that are the inbound trace context (in the logs), not attributes.
const CONTEXT_FIELDS: &[&str] = &["trace_id", "parent_span_id"];

/// Flushes queued spans when dropped (at shutdown).
pub struct OtlpGuard(SdkTracerProvider);

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("otlp export: flush at shutdown failed: {e}");
        }
    }
}

/// The `tracing` layer and its guard, exporting to `endpoint`
/// (`http(s)://host:port`; `/v1/traces` is appended unless the URL already
/// ends with it).
///
/// # Errors
/// If the HTTP client or the exporter cannot be built (a bad URL).
pub fn layer<S>(endpoint: &str) -> anyhow::Result<(impl tracing_subscriber::Layer<S>, OtlpGuard)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).no_proxy().build()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(client)
        .build()?;
    let batch = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::TokioCurrentThread)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUED_SPANS)
                .with_max_export_batch_size(MAX_BATCH_SPANS)
                .with_scheduled_delay(BATCH_DELAY)
                .build(),
        )
        .build();
    let resource = Resource::builder()
        .with_service_name("ext-runner")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(RequestSpans(batch))
        // Every request span is exported, whatever the caller's sampled flag.
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("ext-runner"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(
            tracing_subscriber::filter::filter_fn(|meta| meta.is_span() && EXPORTED.contains(&meta.name()))
                .with_max_level_hint(tracing::Level::INFO),
        );
    Ok((layer, OtlpGuard(provider)))
}

/// Makes the caller's span (its validated W3C `traceparent`) the parent of
/// `span`, through the W3C trace-context propagator. Call it before the span
/// is first entered; without export it does nothing.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    struct Header<'a>(&'a str);
    impl Extractor for Header<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            key.eq_ignore_ascii_case("traceparent").then_some(self.0)
        }

        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    if let Some(traceparent) = traceparent {
        // Err only when no exporter layer is installed (export off).
        let _ = span.set_parent(TraceContextPropagator::new().extract(&Header(traceparent)));
    }
}

/// Gives ended request spans their exported shape: a server span whose
/// attributes are its non-empty fields, less the inbound trace context
/// (already its parent).
#[derive(Debug)]
struct RequestSpans<P>(P);

impl<P: SpanProcessor> SpanProcessor for RequestSpans<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        span.span_kind = SpanKind::Server;
        span.attributes
            .retain(|kv| !CONTEXT_FIELDS.contains(&kv.key.as_str()) && !kv.value.as_str().is_empty());
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// A W3C span id: 8 random bytes, never all zero, as 16 hex digits.
pub fn new_span_id() -> String {
    let mut bytes = crate::random_bytes::<8>();
    if bytes.iter().all(|b| *b == 0) {
        bytes[0] = 1;
    }
    hex::encode(bytes)
}

/// The `traceparent` for an outbound request made on behalf of `parent`
/// (a validated inbound header): same trace and flags, a new span id.
pub fn child_traceparent(parent: &str) -> String {
    format!("00-{}-{}-{}", &parent[3..35], new_span_id(), &parent[53..55])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_traceparent_keeps_trace_and_flags() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = child_traceparent(parent);
        assert!(crate::envelope::is_traceparent(&child), "{child}");
        assert_eq!(&child[..36], &parent[..36]);
        assert_ne!(&child[36..52], &parent[36..52]);
        assert_eq!(&child[53..], "01");
    }
}
