//! The log subscriber the commands install: stderr lines (JSON or pretty,
//! filtered by `RUST_LOG`) and the optional OTLP span export.

use crate::config::LogFormat;

/// Logs to stderr (JSON or pretty, filtered by `RUST_LOG`), plus OTLP trace
/// export of request spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. The
/// returned guard flushes queued spans when dropped.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Option<crate::otlp::OtlpGuard> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn"));
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let (otlp, guard) = match otlp_endpoint.map(crate::otlp::layer) {
        Some(Ok((layer, guard))) => (Some(layer), Some(guard)),
        Some(Err(e)) => {
            eprintln!("warning: OTLP export disabled: {e}");
            (None, None)
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt).with(otlp).init();
    guard
}
