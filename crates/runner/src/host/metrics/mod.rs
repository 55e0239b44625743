//! `cap:metrics.emit`: counters, gauges and histograms a guest defines,
//! exported on `/metrics` through the runner's registry.
//!
//! A guest names a series `orders` with labels `[("kind", "refund")]`; the
//! runner exports `ext_runner_guest_orders{tenant="…",extension="…",kind="refund"}`.
//! The tenant and extension labels come from the request, never from the
//! guest. Everything a guest can get wrong is a typed error, never a trap:
//! - `denied`: the capability is not granted;
//! - `invalid`: a name or label outside the syntax below, a reserved label
//!   (`tenant`, `extension`, `le`), a duplicate label, a non-finite value,
//!   or a name already used as another kind (by any extension: the
//!   exposition has one type per name) or by the runner itself (any name
//!   the series would expose counts: a counter's samples end `_total`, so
//!   counters `orders` and `orders_total` are one series and a gauge
//!   `orders_total` beside them is refused);
//! - `limit-exceeded`: the (tenant, extension) already has
//!   [`MAX_SERIES_PER_EXTENSION`] series, the process [`MAX_SERIES_TOTAL`],
//!   or the execution made [`MAX_CALLS_PER_INVOCATION`] calls.
//!
//! Series live until the process exits (Prometheus counters must not
//! reset while the process runs); the caps bound what they can cost.

use super::Invocation;
use super::bindings::alga::extension::metrics;
use super::bindings::alga::extension::metrics::MetricsError;
use crate::metrics::{Metrics, OwnedCaps, OwnedRefusal, Update};

/// The capability that grants the interface.
pub const CAPABILITY: &str = "cap:metrics.emit";

/// Prefix of every guest series name.
pub const PREFIX: &str = "ext_runner_guest_";

/// Distinct series (name + label values) one (tenant, extension) may create
/// in this process: enough for a few dozen metrics with small label sets,
/// small enough that a thousand installs stay a cheap scrape.
pub const MAX_SERIES_PER_EXTENSION: usize = 200;

/// Distinct guest series across all tenants and extensions: bounds the
/// registry's memory (a series is at most ~1.5 KiB of names and values)
/// and the scrape when many installs emit.
pub const MAX_SERIES_TOTAL: usize = 20_000;

/// Metric calls one execution may make: a loop emitting per item is a bug
/// to report to the guest, not a reason to hold the registry's lock longer.
pub const MAX_CALLS_PER_INVOCATION: u32 = 1_000;

/// Longest metric name, before the prefix.
pub const MAX_NAME_BYTES: usize = 64;

/// Longest label name.
pub const MAX_LABEL_NAME_BYTES: usize = 32;

/// Longest label value: identifiers and short enums, not payloads.
pub const MAX_LABEL_VALUE_BYTES: usize = 128;

/// Labels per call, besides the tenant and extension the runner adds.
pub const MAX_LABELS: usize = 8;

/// Label names the runner sets itself (`le` is the histogram bucket bound).
pub const RESERVED_LABELS: &[&str] = &["tenant", "extension", "le"];

/// Name endings a histogram's own sample lines use: a counter named
/// `x_count` would collide with histogram `x` in the exposition.
pub const RESERVED_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];

/// Names under [`PREFIX`] the runner's own series use (execute.rs); the
/// registry also refuses any runner family already registered.
pub const RESERVED_NAMES: &[&str] = &["peak_memory_bytes", "egress_bytes_total"];

/// Buckets of every guest histogram: 1 ms … 10 000, covering durations in
/// seconds or milliseconds and small sizes or counts.
pub const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
    2500.0, 5000.0, 10000.0,
];

const HELP: &str = "Guest-defined metric (cap:metrics.emit).";

/// One call from the guest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Emit {
    CounterAdd(u64),
    GaugeSet(f64),
    HistogramObserve(f64),
}

/// Why a call was refused (logged at debug level; the guest sees the
/// [`MetricsError`] of [`Refusal::error`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("cap:metrics.emit is not granted")]
    Denied,
    #[error("metric name must match [a-z][a-z0-9_]{{0,63}} and not end in _bucket, _sum or _count")]
    Name,
    #[error("label names must match [a-z][a-z0-9_]{{0,31}}, be unique and not tenant, extension or le")]
    LabelName,
    #[error("label values are at most {MAX_LABEL_VALUE_BYTES} bytes")]
    LabelValue,
    #[error("at most {MAX_LABELS} labels")]
    TooManyLabels,
    #[error("value is not finite")]
    Value,
    #[error(transparent)]
    Registry(#[from] OwnedRefusal),
    #[error("more than {MAX_CALLS_PER_INVOCATION} metric calls in one execution")]
    Calls,
}

impl Refusal {
    /// The guest's error for this refusal.
    pub fn error(&self) -> MetricsError {
        match self {
            Refusal::Denied => MetricsError::Denied,
            Refusal::Calls | Refusal::Registry(OwnedRefusal::OwnerCap { .. } | OwnedRefusal::TotalCap { .. }) => {
                MetricsError::LimitExceeded
            }
            _ => MetricsError::Invalid,
        }
    }
}

/// `[a-z][a-z0-9_]{0,max-1}`.
fn is_snake(text: &str, max: usize) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// Check a guest metric name (without the prefix).
///
/// # Errors
/// [`Refusal::Name`].
pub fn check_name(name: &str) -> Result<(), Refusal> {
    let reserved = RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s)) || RESERVED_NAMES.contains(&name);
    match is_snake(name, MAX_NAME_BYTES) && !reserved {
        true => Ok(()),
        false => Err(Refusal::Name),
    }
}

/// Check the guest's labels and sort them by name.
///
/// # Errors
/// [`Refusal::TooManyLabels`], [`Refusal::LabelName`] or [`Refusal::LabelValue`].
pub fn check_labels(mut labels: Vec<(String, String)>) -> Result<Vec<(String, String)>, Refusal> {
    if labels.len() > MAX_LABELS {
        return Err(Refusal::TooManyLabels);
    }
    for (name, value) in &labels {
        if !is_snake(name, MAX_LABEL_NAME_BYTES) || RESERVED_LABELS.contains(&name.as_str()) {
            return Err(Refusal::LabelName);
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(Refusal::LabelValue);
        }
    }
    labels.sort();
    if labels.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return Err(Refusal::LabelName);
    }
    Ok(labels)
}

/// Record one guest call in `registry` for (tenant, extension), under the
/// given caps.
///
/// # Errors
/// The [`Refusal`]; nothing is recorded then.
pub fn emit(
    registry: &Metrics,
    tenant: &str,
    extension: &str,
    name: &str,
    emit: Emit,
    labels: Vec<(String, String)>,
    caps: OwnedCaps,
) -> Result<(), Refusal> {
    check_name(name)?;
    let labels = check_labels(labels)?;
    let update = match emit {
        Emit::CounterAdd(n) => Update::Add(n),
        Emit::GaugeSet(v) if v.is_finite() => Update::Set(v),
        Emit::HistogramObserve(v) if v.is_finite() => Update::Observe(BUCKETS, v),
        _ => return Err(Refusal::Value),
    };
    let full_name = format!("{PREFIX}{name}");
    let owner = [("tenant", tenant), ("extension", extension)];
    registry.update_owned(&full_name, HELP, &owner, &labels, update, caps)?;
    Ok(())
}

/// The caps applied to guests.
pub const CAPS: OwnedCaps = OwnedCaps {
    per_owner: MAX_SERIES_PER_EXTENSION,
    total: MAX_SERIES_TOTAL,
};

impl Invocation {
    /// One `metrics` host call: grant, call cap, then [`emit`].
    pub(crate) fn emit_metric(
        &mut self,
        name: String,
        emit_call: Emit,
        labels: Vec<(String, String)>,
    ) -> Result<(), MetricsError> {
        self.count("metrics");
        let result = self.try_emit_metric(&name, emit_call, labels);
        result.map_err(|refusal| {
            let r = &self.request;
            tracing::debug!(target: "ext_runner::guest_metrics", request_id = %r.request_id, tenant = %r.tenant_id, extension = %r.extension_id, metric = %name, error = %refusal, "guest metric refused");
            refusal.error()
        })
    }

    fn try_emit_metric(&mut self, name: &str, emit_call: Emit, labels: Vec<(String, String)>) -> Result<(), Refusal> {
        let Some(registry) = self.caps.metrics.clone().filter(|_| self.grants.allows(CAPABILITY)) else {
            return Err(Refusal::Denied);
        };
        if self.usage.metric_calls >= MAX_CALLS_PER_INVOCATION {
            return Err(Refusal::Calls);
        }
        self.usage.metric_calls += 1;
        let r = &self.request;
        emit(&registry, &r.tenant_id, &r.extension_id, name, emit_call, labels, CAPS)
    }
}

/// The registry guest series go to; `None` when not granted.
pub type State = Option<std::sync::Arc<Metrics>>;

/// Only when granted.
pub fn prepare(registry: &std::sync::Arc<Metrics>, request: &super::Prepare<'_>) -> State {
    request.grants.allows(CAPABILITY).then(|| registry.clone())
}

impl metrics::Host for Invocation {
    fn counter_add(
        &mut self,
        name: String,
        value: u64,
        labels: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), MetricsError>> {
        Ok(self.emit_metric(name, Emit::CounterAdd(value), labels))
    }

    fn gauge_set(
        &mut self,
        name: String,
        value: f64,
        labels: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), MetricsError>> {
        Ok(self.emit_metric(name, Emit::GaugeSet(value), labels))
    }

    fn histogram_observe(
        &mut self,
        name: String,
        value: f64,
        labels: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<(), MetricsError>> {
        Ok(self.emit_metric(name, Emit::HistogramObserve(value), labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn name_table() {
        let long = "a".repeat(MAX_NAME_BYTES);
        let too_long = "a".repeat(MAX_NAME_BYTES + 1);
        for (name, ok) in [
            ("orders", true),
            ("orders_total", true),
            ("a", true),
            ("http_2xx", true),
            (long.as_str(), true),
            (too_long.as_str(), false),
            ("", false),
            ("Orders", false),
            ("1st", false),
            ("_x", false),
            ("orders-total", false),
            ("orders.total", false),
            ("ördеrs", false),
            ("latency_bucket", false),
            ("latency_sum", false),
            ("latency_count", false),
            ("peak_memory_bytes", false),
            ("egress_bytes_total", false),
        ] {
            assert_eq!(check_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn label_table() {
        let value_max = "v".repeat(MAX_LABEL_VALUE_BYTES);
        let value_over = "v".repeat(MAX_LABEL_VALUE_BYTES + 1);
        let name_max = "n".repeat(MAX_LABEL_NAME_BYTES);
        let name_over = "n".repeat(MAX_LABEL_NAME_BYTES + 1);
        let nine: Vec<(String, String)> = (0..=MAX_LABELS).map(|i| (format!("l{i}"), String::new())).collect();
        let eight = nine[..MAX_LABELS].to_vec();
        type Labels = Vec<(String, String)>;
        let cases: Vec<(Labels, Result<(), Refusal>)> = vec![
            (labels(&[]), Ok(())),
            (labels(&[("kind", "refund"), ("region", "")]), Ok(())),
            (labels(&[("kind", "quote\"and\nnewline")]), Ok(())),
            (labels(&[("k", &value_max)]), Ok(())),
            (labels(&[("k", &value_over)]), Err(Refusal::LabelValue)),
            (labels(&[(&name_max, "v")]), Ok(())),
            (labels(&[(&name_over, "v")]), Err(Refusal::LabelName)),
            (labels(&[("tenant", "other-tenant")]), Err(Refusal::LabelName)),
            (labels(&[("extension", "x")]), Err(Refusal::LabelName)),
            (labels(&[("le", "1")]), Err(Refusal::LabelName)),
            (labels(&[("Kind", "x")]), Err(Refusal::LabelName)),
            (labels(&[("k", "1"), ("k", "2")]), Err(Refusal::LabelName)),
            (eight, Ok(())),
            (nine, Err(Refusal::TooManyLabels)),
        ];
        for (list, want) in cases {
            assert_eq!(check_labels(list.clone()).map(|_| ()), want, "{list:?}");
        }
        assert_eq!(
            check_labels(labels(&[("b", "2"), ("a", "1")])).unwrap(),
            labels(&[("a", "1"), ("b", "2")])
        );
    }

    #[test]
    fn refusals_map_to_guest_errors() {
        let small = OwnedCaps {
            per_owner: 1,
            total: 10,
        };
        let m = Metrics::default();
        let call = |name: &str, e: Emit, l: &[(&str, &str)]| emit(&m, "t", "x", name, e, labels(l), small);
        assert_eq!(call("a", Emit::CounterAdd(1), &[]), Ok(()));
        let cases = [
            (call("a", Emit::GaugeSet(1.0), &[]), MetricsError::Invalid),
            (call("Bad", Emit::CounterAdd(1), &[]), MetricsError::Invalid),
            (call("b", Emit::GaugeSet(f64::NAN), &[]), MetricsError::Invalid),
            (
                call("b", Emit::HistogramObserve(f64::INFINITY), &[]),
                MetricsError::Invalid,
            ),
            (
                call("a", Emit::CounterAdd(1), &[("k", "new")]),
                MetricsError::LimitExceeded,
            ),
        ];
        for (result, want) in cases {
            assert_eq!(result.unwrap_err().error(), want);
        }
        assert_eq!(Refusal::Denied.error(), MetricsError::Denied);
        assert_eq!(Refusal::Calls.error(), MetricsError::LimitExceeded);
        let own = prometheus_client::metrics::family::Family::<
            crate::metrics::NoLabels,
            prometheus_client::metrics::counter::Counter,
        >::default();
        m.register("ext_runner_guest_peak", "Runner's own.", own);
        assert_eq!(
            call("peak", Emit::CounterAdd(1), &[]).unwrap_err().error(),
            MetricsError::Invalid
        );
    }
}
