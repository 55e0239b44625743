//! `cap:metrics.emit`: counters, gauges and histograms on the runner's
//! Prometheus endpoint.
//!
//! This interface is an ext-runner addition to the `alga:extension` world;
//! declare `metrics` (or `cap:metrics.emit`) in the manifest's
//! `capabilities`. A series named `orders` becomes
//! `ext_runner_guest_orders`, labelled by the runner with your tenant and
//! extension, plus the labels you pass.
//!
//! The rules (anything else is [`MetricsError::Invalid`]):
//! - names match `[a-z][a-z0-9_]{0,63}` and do not end in `_bucket`, `_sum`
//!   or `_count`; a name keeps the kind it was first used with;
//! - at most 8 labels, names matching `[a-z][a-z0-9_]{0,31}` (not `tenant`,
//!   `extension` or `le`), values of at most 128 bytes;
//! - gauge and histogram values are finite.
//!
//! Each distinct combination of name and label values is a series. An
//! extension may create 200 series per tenant, and make 1,000 metric calls
//! per request; beyond that calls answer [`MetricsError::LimitExceeded`]. Keep
//! label values to small, fixed sets (a status, a kind), never ids.
//!
//! ```no_run
//! use ext_sdk::metrics;
//!
//! # fn main() -> Result<(), metrics::MetricsError> {
//! metrics::counter_add("orders_total", 1, &[("kind", "refund")])?;
//! metrics::gauge_set("queue_depth", 17.0, &[])?;
//! metrics::histogram_observe("upstream_seconds", 0.042, &[("upstream", "billing")])?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::alga::extension::metrics as raw;
pub use crate::bindings::alga::extension::metrics::MetricsError;

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Adds `value` to the counter `name` with `labels`.
///
/// # Errors
/// [`MetricsError::Denied`] without the capability, [`MetricsError::Invalid`]
/// for a bad name or label (or a name used as another kind),
/// [`MetricsError::LimitExceeded`] past the series or call cap.
pub fn counter_add(name: &str, value: u64, labels: &[(&str, &str)]) -> Result<(), MetricsError> {
    raw::counter_add(name, value, &owned(labels))
}

/// Sets the gauge `name` with `labels` to `value`.
///
/// # Errors
/// As [`counter_add`]; a value that is not finite is [`MetricsError::Invalid`].
pub fn gauge_set(name: &str, value: f64, labels: &[(&str, &str)]) -> Result<(), MetricsError> {
    raw::gauge_set(name, value, &owned(labels))
}

/// Records `value` in the histogram `name` with `labels`.
///
/// The runner's buckets span 0.001 to 10,000 (upper bounds 0.001, 0.005,
/// 0.01, 0.025, … 5,000, 10,000), so durations in seconds or milliseconds
/// and small sizes fit.
///
/// # Errors
/// As [`gauge_set`].
pub fn histogram_observe(name: &str, value: f64, labels: &[(&str, &str)]) -> Result<(), MetricsError> {
    raw::histogram_observe(name, value, &owned(labels))
}
