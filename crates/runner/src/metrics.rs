//! Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! A small registry of counter, gauge and histogram families with label
//! values, every name prefixed `ext_runner_`. Tenant and extension labels
//! are bounded: each family admits at most [`MAX_LABEL_VALUES`] distinct
//! values per label, later ones are counted under `other`, so a noisy or
//! hostile tenant population cannot blow up memory or the scrape.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

/// Distinct values one label (tenant, extension) may take per family; the
/// rest become `other`.
pub const MAX_LABEL_VALUES: usize = 500;

/// Histogram buckets for durations in seconds (1 ms … 60 s).
pub const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Histogram buckets for guest memory in bytes (1 MiB … 4 GiB).
pub const MEMORY_BUCKETS: &[f64] = &[
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    134_217_728.0,
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
    4_294_967_296.0,
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

struct Family {
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    /// Label values → value (counter/gauge) or histogram state.
    series: BTreeMap<Vec<String>, Series>,
    /// Distinct values seen per label position (for the cardinality cap).
    seen: Vec<BTreeSet<String>>,
}

enum Series {
    Value(f64),
    Histogram { counts: Vec<u64>, sum: f64, count: u64 },
}

/// The process's metrics. Cheap to call from request paths (one mutex per
/// update; no allocation once a series exists).
#[derive(Default)]
pub struct Metrics {
    families: Mutex<HashMap<&'static str, Family>>,
}

impl Metrics {
    /// Add `delta` to a counter.
    pub fn inc(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], delta: f64) {
        self.update(name, help, Kind::Counter, labels, |series| {
            if let Series::Value(v) = series {
                *v += delta;
            }
        });
    }

    /// Set a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.update(name, help, Kind::Gauge, labels, |series| {
            if let Series::Value(v) = series {
                *v = value;
            }
        });
    }

    /// Record one observation in a histogram.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        buckets: &'static [f64],
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.update(name, help, Kind::Histogram(buckets), labels, |series| {
            if let Series::Histogram { counts, sum, count } = series {
                for (i, bound) in buckets.iter().enumerate() {
                    if value <= *bound {
                        counts[i] += 1;
                    }
                }
                *sum += value;
                *count += 1;
            }
        });
    }

    fn update(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&'static str, &str)],
        apply: impl FnOnce(&mut Series),
    ) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            labels: leak_names(labels),
            series: BTreeMap::new(),
            seen: vec![BTreeSet::new(); labels.len()],
        });
        let mut values = Vec::with_capacity(labels.len());
        for (i, (_, value)) in labels.iter().enumerate() {
            let seen = &mut family.seen[i];
            if seen.contains(*value) || seen.len() < MAX_LABEL_VALUES {
                seen.insert((*value).to_string());
                values.push((*value).to_string());
            } else {
                values.push("other".to_string());
            }
        }
        let series = family.series.entry(values).or_insert_with(|| match kind {
            Kind::Histogram(buckets) => Series::Histogram {
                counts: vec![0; buckets.len()],
                sum: 0.0,
                count: 0,
            },
            _ => Series::Value(0.0),
        });
        apply(series);
    }

    /// The Prometheus text exposition of every family, sorted by name.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&&'static str> = families.keys().collect();
        names.sort();
        let mut out = String::new();
        for name in names {
            let family = &families[*name];
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (values, series) in &family.series {
                let labels = label_text(family.labels, values, None);
                match series {
                    Series::Value(v) => {
                        let _ = writeln!(out, "{name}{labels} {}", number(*v));
                    }
                    Series::Histogram { counts, sum, count } => {
                        let Kind::Histogram(buckets) = family.kind else {
                            continue;
                        };
                        for (bound, c) in buckets.iter().zip(counts) {
                            let labels = label_text(family.labels, values, Some(&number(*bound)));
                            let _ = writeln!(out, "{name}_bucket{labels} {c}");
                        }
                        let labels_inf = label_text(family.labels, values, Some("+Inf"));
                        let _ = writeln!(out, "{name}_bucket{labels_inf} {count}");
                        let _ = writeln!(out, "{name}_sum{labels} {}", number(*sum));
                        let _ = writeln!(out, "{name}_count{labels} {count}");
                    }
                }
            }
        }
        out
    }
}

/// Label names are static in practice; keep them without a lifetime.
fn leak_names(labels: &[(&'static str, &str)]) -> &'static [&'static str] {
    let names: Vec<&'static str> = labels.iter().map(|(n, _)| *n).collect();
    Box::leak(names.into_boxed_slice())
}

fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        m.inc("ext_runner_things_total", "Things.", &[("tenant", "a\"b")], 1.0);
        m.inc("ext_runner_things_total", "Things.", &[("tenant", "a\"b")], 2.0);
        m.set("ext_runner_level", "Level.", &[], 7.5);
        m.observe("ext_runner_seconds", "Time.", &[0.1, 1.0], &[("x", "y")], 0.5);
        let text = m.render();
        assert!(
            text.contains("# TYPE ext_runner_things_total counter\next_runner_things_total{tenant=\"a\\\"b\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("ext_runner_level 7.5\n"), "{text}");
        assert!(
            text.contains("ext_runner_seconds_bucket{x=\"y\",le=\"0.1\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("ext_runner_seconds_bucket{x=\"y\",le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ext_runner_seconds_bucket{x=\"y\",le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ext_runner_seconds_count{x=\"y\"} 1\n"), "{text}");
    }

    #[test]
    fn label_values_beyond_the_cap_become_other() {
        let m = Metrics::default();
        for i in 0..MAX_LABEL_VALUES + 10 {
            m.inc("ext_runner_t_total", "T.", &[("tenant", &format!("t{i}"))], 1.0);
        }
        let text = m.render();
        assert!(text.contains("ext_runner_t_total{tenant=\"other\"} 10\n"), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with("ext_runner_t_total{")).count(),
            MAX_LABEL_VALUES + 1
        );
        // A value admitted before the cap keeps its own series.
        m.inc("ext_runner_t_total", "T.", &[("tenant", "t0")], 1.0);
        assert!(m.render().contains("ext_runner_t_total{tenant=\"t0\"} 2\n"));
    }
}
