//! Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! A small registry of counter, gauge and histogram families with label
//! values, every name prefixed `ext_runner_`. Cardinality is bounded per
//! family by **series** (M-01): a family holds at most
//! [`MAX_SERIES_PER_FAMILY`] label combinations, and updates for new ones
//! beyond it go to one overflow series whose every label is `other`, so a
//! hostile tenant population can grow neither memory nor the scrape.
//! Executions whose bundle never resolved are labelled [`UNRESOLVED`], not
//! by the ids their caller claimed.
//!
//! Families named at run time (guest metrics, `cap:metrics.emit`) live
//! apart from the runner's own ([`Metrics::update_owned`]): each series
//! belongs to an owner (tenant, extension) and is admitted only under a
//! per-owner and a total series cap, so owned names cannot grow the
//! registry without bound or write into the runner's series.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

/// Label combinations one family may hold: 500 tenants × 4 outcomes of
/// their busiest extension, or 2,000 (tenant, extension) pairs; beyond it
/// updates go to the all-`other` series. With a few dozen families this
/// bounds the scrape to a few megabytes.
pub const MAX_SERIES_PER_FAMILY: usize = 2_000;

/// The label value of tenant and extension for executions whose bundle was
/// never resolved (not found, refused, over a quota, malformed).
pub const UNRESOLVED: &str = "unresolved";

/// The value of every label of a family's overflow series.
const OVERFLOW: &str = "other";

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
}

enum Series {
    Value(f64),
    Histogram { counts: Vec<u64>, sum: f64, count: u64 },
}

/// The process's metrics. Cheap enough for request paths: one mutex and a
/// map lookup per update (label values are copied for the lookup).
#[derive(Default)]
pub struct Metrics {
    families: Mutex<HashMap<&'static str, Family>>,
    /// Families with run-time names (guest metrics), written only through
    /// [`Metrics::update_owned`] and rendered after the runner's own.
    owned: Mutex<OwnedFamilies>,
}

/// One update to a family with a run-time name; the variant is the kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// Add to a counter (callers pass a non-negative amount).
    Add(f64),
    /// Set a gauge.
    Set(f64),
    /// Record one observation in a histogram with these buckets.
    Observe(&'static [f64], f64),
}

impl Update {
    fn kind(self) -> Kind {
        match self {
            Update::Add(_) => Kind::Counter,
            Update::Set(_) => Kind::Gauge,
            Update::Observe(buckets, _) => Kind::Histogram(buckets),
        }
    }
}

/// Series caps for families with run-time names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedCaps {
    /// Distinct series one owner may create, across all its families.
    pub per_owner: usize,
    /// Distinct series of all owners together.
    pub total: usize,
}

/// Why [`Metrics::update_owned`] recorded nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OwnedRefusal {
    #[error("`{name}` is already a {existing}")]
    KindClash { name: String, existing: &'static str },
    #[error("`{name}` is one of the runner's own series")]
    RunnerName { name: String },
    #[error("the owner already has {cap} series")]
    OwnerCap { cap: usize },
    #[error("{cap} series with run-time names exist already")]
    TotalCap { cap: usize },
}

#[derive(Default)]
struct OwnedFamilies {
    families: BTreeMap<String, OwnedFamily>,
    /// Series per owner (its label values), for [`OwnedCaps::per_owner`].
    per_owner: HashMap<Vec<String>, usize>,
    total: usize,
}

struct OwnedFamily {
    help: &'static str,
    kind: Kind,
    /// Label pairs, the owner's first → value or histogram state.
    series: BTreeMap<Vec<(String, String)>, Series>,
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
                observe_into(buckets, value, counts, sum, count);
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
        });
        let mut values: Vec<String> = labels.iter().map(|(_, value)| (*value).to_string()).collect();
        if !family.series.contains_key(&values) && family.series.len() >= MAX_SERIES_PER_FAMILY {
            values.fill_with(|| OVERFLOW.to_string());
        }
        let series = family.series.entry(values).or_insert_with(|| new_series(kind));
        apply(series);
    }

    /// Update a series of a family whose name is chosen at run time.
    ///
    /// `owner` labels lead every series and key the per-owner cap; `labels`
    /// follow in the order given (callers sort and validate them, and keep
    /// `name` within the exposition's name syntax). A new series is admitted
    /// only under `caps`; an existing one is always updated.
    ///
    /// # Errors
    /// [`OwnedRefusal`]: `name` is a runner family or already another kind,
    /// or a cap is reached. Nothing is recorded then.
    pub fn update_owned(
        &self,
        name: &str,
        help: &'static str,
        owner: &[(&'static str, &str)],
        labels: &[(String, String)],
        update: Update,
        caps: OwnedCaps,
    ) -> Result<(), OwnedRefusal> {
        if self
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
        {
            return Err(OwnedRefusal::RunnerName { name: name.to_string() });
        }
        let kind = update.kind();
        let mut owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(family) = owned.families.get(name)
            && family.kind != kind
        {
            return Err(OwnedRefusal::KindClash {
                name: name.to_string(),
                existing: kind_name(family.kind),
            });
        }
        let key: Vec<(String, String)> = owner
            .iter()
            .map(|(n, v)| ((*n).to_string(), (*v).to_string()))
            .chain(labels.iter().cloned())
            .collect();
        let exists = owned.families.get(name).is_some_and(|f| f.series.contains_key(&key));
        if !exists {
            let owner_key: Vec<String> = owner.iter().map(|(_, v)| (*v).to_string()).collect();
            if owned.per_owner.get(&owner_key).copied().unwrap_or(0) >= caps.per_owner {
                return Err(OwnedRefusal::OwnerCap { cap: caps.per_owner });
            }
            if owned.total >= caps.total {
                return Err(OwnedRefusal::TotalCap { cap: caps.total });
            }
            *owned.per_owner.entry(owner_key).or_default() += 1;
            owned.total += 1;
        }
        let family = owned.families.entry(name.to_string()).or_insert_with(|| OwnedFamily {
            help,
            kind,
            series: BTreeMap::new(),
        });
        let series = family.series.entry(key).or_insert_with(|| new_series(kind));
        match (update, series) {
            (Update::Add(delta), Series::Value(v)) => *v += delta,
            (Update::Set(value), Series::Value(v)) => *v = value,
            (Update::Observe(buckets, value), Series::Histogram { counts, sum, count }) => {
                observe_into(buckets, value, counts, sum, count);
            }
            _ => {}
        }
        Ok(())
    }

    /// The Prometheus text exposition of every family, sorted by name (the
    /// runner's own, then those with run-time names).
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&&'static str> = families.keys().collect();
        names.sort();
        let mut out = String::new();
        for name in names {
            let family = &families[*name];
            write_header(&mut out, name, family.help, family.kind);
            for (values, series) in &family.series {
                write_series(&mut out, name, family.kind, series, |le| {
                    label_text(family.labels, values, le)
                });
            }
        }
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        for (name, family) in &owned.families {
            // Refused by `update_owned`; kept out here too should a runner
            // family be registered under the name later.
            if families.contains_key(name.as_str()) {
                continue;
            }
            write_header(&mut out, name, family.help, family.kind);
            for (pairs, series) in &family.series {
                write_series(&mut out, name, family.kind, series, |le| pair_text(pairs, le));
            }
        }
        out
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram(_) => "histogram",
    }
}

fn new_series(kind: Kind) -> Series {
    match kind {
        Kind::Histogram(buckets) => Series::Histogram {
            counts: vec![0; buckets.len()],
            sum: 0.0,
            count: 0,
        },
        _ => Series::Value(0.0),
    }
}

fn observe_into(buckets: &[f64], value: f64, counts: &mut [u64], sum: &mut f64, count: &mut u64) {
    for (i, bound) in buckets.iter().enumerate() {
        if value <= *bound {
            counts[i] += 1;
        }
    }
    *sum += value;
    *count += 1;
}

fn write_header(out: &mut String, name: &str, help: &str, kind: Kind) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind_name(kind));
}

/// One series' sample lines; `labels(le)` renders its label set, with the
/// histogram bucket bound when given.
fn write_series(out: &mut String, name: &str, kind: Kind, series: &Series, labels: impl Fn(Option<&str>) -> String) {
    match series {
        Series::Value(v) => {
            let _ = writeln!(out, "{name}{} {}", labels(None), number(*v));
        }
        Series::Histogram { counts, sum, count } => {
            let Kind::Histogram(buckets) = kind else {
                return;
            };
            for (bound, c) in buckets.iter().zip(counts) {
                let _ = writeln!(out, "{name}_bucket{} {c}", labels(Some(&number(*bound))));
            }
            let _ = writeln!(out, "{name}_bucket{} {count}", labels(Some("+Inf")));
            let plain = labels(None);
            let _ = writeln!(out, "{name}_sum{plain} {}", number(*sum));
            let _ = writeln!(out, "{name}_count{plain} {count}");
        }
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

fn pair_text(pairs: &[(String, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}=\"{}\"", escape(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
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

    /// M-01: the cap is on series, not label values: 100 tenants × 100
    /// extensions × 3 outcomes (30,000 combinations, every label value far
    /// under any per-label cap) stays at the family's series cap plus one
    /// overflow series, and the scrape stays small.
    #[test]
    fn m01_series_beyond_the_family_cap_go_to_one_overflow_series() {
        let m = Metrics::default();
        let labels = |t: usize, e: usize, o: usize| {
            [
                ("tenant", format!("t{t}")),
                ("extension", format!("e{e}")),
                ("outcome", format!("o{o}")),
            ]
        };
        for t in 0..100 {
            for e in 0..100 {
                for o in 0..3 {
                    let l = labels(t, e, o);
                    let pairs: Vec<(&'static str, &str)> = l.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    m.inc("ext_runner_t_total", "T.", &pairs, 1.0);
                }
            }
        }
        let text = m.render();
        let series = text.lines().filter(|l| l.starts_with("ext_runner_t_total{")).count();
        assert_eq!(series, MAX_SERIES_PER_FAMILY + 1);
        let overflow = 30_000 - MAX_SERIES_PER_FAMILY;
        assert!(
            text.contains(&format!(
                "ext_runner_t_total{{tenant=\"other\",extension=\"other\",outcome=\"other\"}} {overflow}\n"
            )),
            "{}",
            &text[text.len().saturating_sub(500)..]
        );
        assert!(text.len() < 200 * 1024, "scrape of {} bytes", text.len());
        // A series admitted before the cap keeps its own value.
        m.inc(
            "ext_runner_t_total",
            "T.",
            &[("tenant", "t0"), ("extension", "e0"), ("outcome", "o0")],
            1.0,
        );
        assert!(
            m.render()
                .contains("ext_runner_t_total{tenant=\"t0\",extension=\"e0\",outcome=\"o0\"} 2\n")
        );
    }

    const CAPS: OwnedCaps = OwnedCaps { per_owner: 2, total: 3 };

    fn owned(m: &Metrics, name: &str, owner: &str, label: &str, update: Update) -> Result<(), OwnedRefusal> {
        let labels = [("k".to_string(), label.to_string())];
        m.update_owned(
            name,
            "Guest.",
            &[("tenant", owner), ("extension", "x")],
            &labels,
            update,
            CAPS,
        )
    }

    #[test]
    fn owned_families_render_with_owner_labels_first() {
        let m = Metrics::default();
        owned(&m, "ext_runner_guest_a", "t1", "v\"1", Update::Add(2.0)).unwrap();
        owned(&m, "ext_runner_guest_a", "t1", "v\"1", Update::Add(3.0)).unwrap();
        owned(&m, "ext_runner_guest_h", "t2", "v", Update::Observe(&[1.0], 0.5)).unwrap();
        let text = m.render();
        assert!(
            text.contains(
                "# TYPE ext_runner_guest_a counter\next_runner_guest_a{tenant=\"t1\",extension=\"x\",k=\"v\\\"1\"} 5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("ext_runner_guest_h_bucket{tenant=\"t2\",extension=\"x\",k=\"v\",le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ext_runner_guest_h_count{tenant=\"t2\",extension=\"x\",k=\"v\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn owned_series_are_capped_per_owner_and_in_total() {
        let m = Metrics::default();
        owned(&m, "ext_runner_guest_a", "t1", "1", Update::Add(1.0)).unwrap();
        owned(&m, "ext_runner_guest_b", "t1", "1", Update::Set(1.0)).unwrap();
        assert_eq!(
            owned(&m, "ext_runner_guest_a", "t1", "2", Update::Add(1.0)),
            Err(OwnedRefusal::OwnerCap { cap: 2 })
        );
        // Existing series still update at the cap; other owners have their own.
        owned(&m, "ext_runner_guest_a", "t1", "1", Update::Add(1.0)).unwrap();
        owned(&m, "ext_runner_guest_a", "t2", "1", Update::Add(1.0)).unwrap();
        assert_eq!(
            owned(&m, "ext_runner_guest_a", "t3", "1", Update::Add(1.0)),
            Err(OwnedRefusal::TotalCap { cap: 3 })
        );
        let text = m.render();
        assert!(!text.contains("k=\"2\""), "{text}");
        assert!(!text.contains("t3"), "{text}");
        assert!(
            text.contains("ext_runner_guest_a{tenant=\"t1\",extension=\"x\",k=\"1\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn owned_names_keep_their_kind_and_stay_off_runner_families() {
        let m = Metrics::default();
        owned(&m, "ext_runner_guest_a", "t1", "1", Update::Add(1.0)).unwrap();
        assert_eq!(
            owned(&m, "ext_runner_guest_a", "t1", "1", Update::Set(1.0)),
            Err(OwnedRefusal::KindClash {
                name: "ext_runner_guest_a".into(),
                existing: "counter"
            })
        );
        m.inc("ext_runner_mine_total", "Mine.", &[], 1.0);
        assert!(matches!(
            owned(&m, "ext_runner_mine_total", "t1", "1", Update::Add(1.0)),
            Err(OwnedRefusal::RunnerName { .. })
        ));
        assert!(m.render().contains("ext_runner_mine_total 1\n"));
    }
}
