//! The Prometheus registry behind `GET /metrics` (prometheus-client,
//! OpenMetrics text).
//!
//! Each subsystem owns a `metrics.rs` beside its data: the families it
//! records into (typed handles, registered once at start-up into the
//! process's one [`Metrics`]; recording is then
//! `family.get_or_create(&labels).inc()`, a read lock on that family alone),
//! and a [`Collector`] of the values it reads when scraped ([`Gauges`]:
//! engine, bundle cache, egress per tenant, connections, quotas, the CPU
//! share, tasks, executions in flight). The handler asks nothing itself:
//! [`Metrics::encode`] runs every collector.
//!
//! Names keep the `ext_runner_` prefix. Counters are registered without
//! `_total`, which the encoding appends to their samples (register
//! `ext_runner_invocations` to expose `ext_runner_invocations_total`);
//! running totals read when scraped stay gauges, as they always were.
//!
//! Cardinality is bounded per family by **series** (M-01): a [`Capped`]
//! family admits at most [`MAX_SERIES_PER_FAMILY`] label sets, and updates
//! for new ones beyond it go to one overflow series whose every label is
//! `other`, so a hostile tenant population can grow neither memory nor the
//! scrape. Executions whose bundle never resolved are labelled
//! [`UNRESOLVED`], not by the ids their caller claimed.
//!
//! Families named at run time (guest metrics, `cap:metrics.emit`) live
//! apart from the runner's own ([`Metrics::update_owned`], [`owned`]): each
//! series belongs to an owner (tenant, extension) and is admitted only under
//! a per-owner and a total series cap, and a name whose exposed samples
//! would clash with a runner family is refused.

pub mod owned;

use std::hash::Hash;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

pub use owned::{OwnedCaps, OwnedRefusal, Update};

/// Label combinations one family may hold: 500 tenants × 4 outcomes of
/// their busiest extension, or 2,000 (tenant, extension) pairs; beyond it
/// updates go to the all-`other` series. With a few dozen families this
/// bounds the scrape to a few megabytes.
pub const MAX_SERIES_PER_FAMILY: usize = 2_000;

/// The label value of tenant and extension for executions whose bundle was
/// never resolved (not found, refused, over a quota, malformed).
pub const UNRESOLVED: &str = "unresolved";

/// The value of every label of a family's overflow series.
pub const OVERFLOW: &str = "other";

/// What `/metrics` answers with: OpenMetrics 1.0 text, which Prometheus
/// reads (counters' samples end `_total`, the exposition ends `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// The process's registry: the runner's families and scrape-time
/// collectors, then the guest-owned families. Its lock is taken to register
/// (at start-up) and to encode (a scrape), never to record.
pub struct Metrics {
    /// The runner's families and the subsystems' collectors, registered
    /// at start-up by each subsystem's `metrics.rs`.
    registry: Mutex<Registry>,
    /// Families with run-time names, encoded after the runner's own; also
    /// told every runner name, which it keeps off guests.
    owned: Arc<owned::OwnedFamilies>,
    /// Holds only `owned`'s collector, so guest families come last.
    guests: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let owned = Arc::new(owned::OwnedFamilies::default());
        let mut guests = Registry::default();
        guests.register_collector(Box::new(owned.clone()));
        Metrics {
            registry: Mutex::default(),
            owned,
            guests,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register `metric` (a family, or one counter or gauge) under `name`
    /// and return it for recording. `help` is the sentence shown; counters
    /// are named without `_total` (the encoding adds it).
    pub fn register<M: Metric + Clone>(&self, name: &'static str, help: &'static str, metric: M) -> M {
        self.owned.reserve(name, metric.metric_type());
        // prometheus-client ends every help text with a full stop itself.
        let help = help.strip_suffix('.').unwrap_or(help);
        self.registry().register(name, help, metric.clone());
        metric
    }

    /// Register `family` under `name` with the series cap (M-01).
    pub fn capped<S: Labels, M, C: MetricConstructor<M>>(
        &self,
        name: &'static str,
        help: &'static str,
        family: Family<S, M, C>,
    ) -> Capped<S, M, C>
    where
        Family<S, M, C>: Metric + Clone,
    {
        Capped::new(self.register(name, help, family))
    }

    /// A capped family of counters with default values (`u64`, or `f64`
    /// for `Counter<f64, AtomicU64>`).
    pub fn counters<S: Labels, M: Default>(&self, name: &'static str, help: &'static str) -> Capped<S, M>
    where
        Family<S, M>: Metric + Clone,
    {
        self.capped(name, help, Family::default())
    }

    /// A capped family of histograms with these buckets.
    pub fn histograms<S: Labels>(
        &self,
        name: &'static str,
        help: &'static str,
        buckets: &'static [f64],
    ) -> Capped<S, Histogram, Buckets> {
        self.capped(name, help, Family::new_with_constructor(Buckets(buckets)))
    }

    /// Register a collector of values read when scraped; the names of the
    /// families it reports are kept off guest names.
    pub fn register_gauges<G: Gauges>(&self, gauges: G) {
        for family in G::FAMILIES {
            self.owned.reserve(family.name, MetricType::Gauge);
        }
        self.registry().register_collector(Box::new(gauges));
    }

    /// Update a series of a family whose name is chosen at run time (see
    /// [`owned::OwnedFamilies::update`]).
    ///
    /// # Errors
    /// [`OwnedRefusal`]; nothing is recorded then.
    pub fn update_owned(
        &self,
        name: &str,
        help: &'static str,
        owner: &[(&'static str, &str)],
        labels: &[(String, String)],
        update: Update,
        caps: OwnedCaps,
    ) -> Result<(), OwnedRefusal> {
        self.owned.update(name, help, owner, labels, update, caps)
    }

    /// The OpenMetrics text of every family: the runner's registered
    /// families, its collectors' values read now, the guest-owned families,
    /// then `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String fails only if a collector reports an error;
        // the families before it are kept.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry());
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.guests);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// A label set of a [`Capped`] family, with its all-`other` overflow value.
pub trait Labels: EncodeLabelSet + Clone + Hash + Eq + std::fmt::Debug + Send + Sync + 'static {
    /// Every label `other` ([`OVERFLOW`]).
    fn overflow() -> Self;
}

/// The label set of a family without labels that should appear only once
/// used (a `Family<NoLabels, _>` is empty until then).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct NoLabels;

impl EncodeLabelSet for NoLabels {
    fn encode(&self, _: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

impl Labels for NoLabels {
    fn overflow() -> Self {
        NoLabels
    }
}

/// The constructor of a histogram family's series: these buckets.
#[derive(Clone, Copy, Debug)]
pub struct Buckets(pub &'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// A prometheus-client [`Family`] with the series cap of M-01: a thin
/// wrapper with an atomic count of admitted label sets. Up to
/// [`MAX_SERIES_PER_FAMILY`] label sets get series of their own; updates for
/// new ones beyond it go to the one overflow series, all labels `other`.
///
/// An update of an existing series costs what the family's own
/// `get_or_create` does (its read lock and a hash lookup). Only admitting a
/// new label set takes this family's admission lock, so the count is exact;
/// once the family is full, new label sets go to the overflow series
/// without it.
pub struct Capped<S, M, C = fn() -> M> {
    family: Family<S, M, C>,
    overflow: S,
    admitted: AtomicUsize,
    admitting: Mutex<()>,
}

impl<S: Labels, M, C: MetricConstructor<M>> Capped<S, M, C> {
    fn new(family: Family<S, M, C>) -> Self {
        Capped {
            family,
            overflow: S::overflow(),
            admitted: AtomicUsize::new(0),
            admitting: Mutex::new(()),
        }
    }

    /// The series of `labels`, or the overflow series when `labels` is new
    /// and the family is full.
    pub fn get_or_create(&self, labels: &S) -> impl Deref<Target = M> + '_ {
        if let Some(series) = self.family.get(labels) {
            return series;
        }
        if self.admitted.load(Ordering::Relaxed) >= MAX_SERIES_PER_FAMILY {
            return self.family.get_or_create(&self.overflow);
        }
        let _one_at_a_time = self.admitting.lock().unwrap_or_else(PoisonError::into_inner);
        if self.family.get(labels).is_some() {
            return self.family.get_or_create(labels);
        }
        if self.admitted.load(Ordering::Relaxed) >= MAX_SERIES_PER_FAMILY {
            return self.family.get_or_create(&self.overflow);
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        self.family.get_or_create(labels)
    }
}

/// A [`Collector`] of gauges read when scraped, naming the families its
/// `encode` writes (so [`Metrics::register_gauges`] keeps them off guest
/// names).
pub trait Gauges: Collector {
    /// Every family `encode` may write.
    const FAMILIES: &'static [Scraped];
}

/// A gauge family a [`Gauges`] collector reports when scraped.
#[derive(Clone, Copy, Debug)]
pub struct Scraped {
    pub name: &'static str,
    /// Shown as written (collectors' help texts get no added full stop).
    pub help: &'static str,
}

impl Scraped {
    /// One series without labels.
    ///
    /// # Errors
    /// Only the encoder's.
    pub fn encode<V: EncodeGaugeValue>(&self, encoder: &mut DescriptorEncoder, value: V) -> std::fmt::Result {
        let mut metric = encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        metric.encode_gauge(&value)
    }

    /// One series per item, nothing at all when there is none.
    ///
    /// # Errors
    /// Only the encoder's.
    pub fn encode_each<L: EncodeLabelSet, V: EncodeGaugeValue>(
        &self,
        encoder: &mut DescriptorEncoder,
        series: impl IntoIterator<Item = (L, V)>,
    ) -> std::fmt::Result {
        let mut series = series.into_iter().peekable();
        if series.peek().is_none() {
            return Ok(());
        }
        let mut metric = encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        for (labels, value) in series {
            metric.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Tenant {
        tenant: String,
    }

    impl Labels for Tenant {
        fn overflow() -> Self {
            Tenant {
                tenant: OVERFLOW.to_string(),
            }
        }
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Three {
        tenant: String,
        extension: String,
        outcome: String,
    }

    impl Labels for Three {
        fn overflow() -> Self {
            Three {
                tenant: OVERFLOW.to_string(),
                extension: OVERFLOW.to_string(),
                outcome: OVERFLOW.to_string(),
            }
        }
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct X {
        x: &'static str,
    }

    impl Labels for X {
        fn overflow() -> Self {
            X { x: OVERFLOW }
        }
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::default();
        let things: Capped<Tenant, Counter> = m.counters("ext_runner_things", "Things.");
        let level = m.register(
            "ext_runner_level",
            "Level.",
            Gauge::<f64, std::sync::atomic::AtomicU64>::default(),
        );
        let seconds: Capped<X, Histogram, Buckets> = m.histograms("ext_runner_seconds", "Time.", &[0.1, 1.0]);
        let unused: Capped<X, Counter> = m.counters("ext_runner_unused", "Never recorded.");
        let a_b = Tenant {
            tenant: "a\"b".to_string(),
        };
        things.get_or_create(&a_b).inc();
        things.get_or_create(&a_b).inc_by(2);
        level.set(7.5);
        seconds.get_or_create(&X { x: "y" }).observe(0.5);
        let _ = unused;
        let text = m.encode();
        assert!(
            text.contains(
                "# HELP ext_runner_things Things.\n# TYPE ext_runner_things counter\next_runner_things_total{tenant=\"a\\\"b\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("ext_runner_level 7.5\n"), "{text}");
        assert!(text.contains("# TYPE ext_runner_seconds histogram\n"), "{text}");
        assert!(
            text.contains("ext_runner_seconds_bucket{le=\"0.1\",x=\"y\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("ext_runner_seconds_bucket{le=\"1.0\",x=\"y\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ext_runner_seconds_bucket{le=\"+Inf\",x=\"y\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ext_runner_seconds_count{x=\"y\"} 1\n"), "{text}");
        assert!(text.contains("ext_runner_seconds_sum{x=\"y\"} 0.5\n"), "{text}");
        // A family appears once it has a series.
        assert!(!text.contains("ext_runner_unused"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    const LEVEL: Scraped = Scraped {
        name: "ext_runner_level_now",
        help: "Level now.",
    };
    const BY_X: Scraped = Scraped {
        name: "ext_runner_level_by_x",
        help: "Level by x.",
    };

    /// A collector over a shared value, as the subsystems' are.
    #[derive(Debug)]
    struct Level(std::sync::Arc<std::sync::atomic::AtomicU64>);

    impl Gauges for Level {
        const FAMILIES: &'static [Scraped] = &[LEVEL, BY_X];
    }

    impl Collector for Level {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            let level = self.0.load(Ordering::Relaxed);
            LEVEL.encode(&mut encoder, level)?;
            // Only non-zero levels have a series here.
            let series = (level > 1).then_some(([("x", "y")], level));
            BY_X.encode_each(&mut encoder, series)
        }
    }

    #[test]
    fn gauges_are_read_when_scraped_and_kept_off_owned_names() {
        let m = Metrics::default();
        let level = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
        m.register_gauges(Level(level.clone()));
        let text = m.encode();
        assert!(
            text.contains(
                "# HELP ext_runner_level_now Level now.\n# TYPE ext_runner_level_now gauge\next_runner_level_now 1\n"
            ),
            "{text}"
        );
        // A family with no series is left out, descriptor and all.
        assert!(!text.contains("ext_runner_level_by_x"), "{text}");
        level.store(5, Ordering::Relaxed);
        let text = m.encode();
        assert!(text.contains("ext_runner_level_now 5\n"), "{text}");
        assert!(text.contains("ext_runner_level_by_x{x=\"y\"} 5\n"), "{text}");
        let caps = OwnedCaps { per_owner: 1, total: 1 };
        for name in ["ext_runner_level_now", "ext_runner_level_by_x"] {
            let refused = m.update_owned(name, "Guest.", &[("tenant", "t")], &[], Update::Set(1.0), caps);
            assert!(matches!(refused, Err(OwnedRefusal::RunnerName { .. })), "{name}");
        }
    }

    /// M-01: the cap is on series, not label values: 100 tenants × 100
    /// extensions × 3 outcomes (30,000 combinations, every label value far
    /// under any per-label cap) stays at the family's series cap plus one
    /// overflow series, and the scrape stays small.
    #[test]
    fn m01_series_beyond_the_family_cap_go_to_one_overflow_series() {
        let m = Metrics::default();
        let family: Capped<Three, Counter> = m.counters("ext_runner_t", "T.");
        let labels = |t: usize, e: usize, o: usize| Three {
            tenant: format!("t{t}"),
            extension: format!("e{e}"),
            outcome: format!("o{o}"),
        };
        for t in 0..100 {
            for e in 0..100 {
                for o in 0..3 {
                    family.get_or_create(&labels(t, e, o)).inc();
                }
            }
        }
        let text = m.encode();
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
        family.get_or_create(&labels(0, 0, 0)).inc();
        assert!(
            m.encode()
                .contains("ext_runner_t_total{tenant=\"t0\",extension=\"e0\",outcome=\"o0\"} 2\n")
        );
    }

    /// The cap holds when threads race to add series: exactly the cap is
    /// admitted, and nothing is lost.
    #[test]
    fn m01_the_series_cap_is_exact_under_concurrent_updates() {
        let m = Metrics::default();
        let family: Capped<Tenant, Counter> = m.counters("ext_runner_race", "Race.");
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let family = &family;
                scope.spawn(move || {
                    for i in 0..MAX_SERIES_PER_FAMILY {
                        // Every thread adds the same label sets, a quarter first.
                        let n = (i + thread * MAX_SERIES_PER_FAMILY / 4) % MAX_SERIES_PER_FAMILY;
                        family
                            .get_or_create(&Tenant {
                                tenant: format!("t{n}"),
                            })
                            .inc();
                        family
                            .get_or_create(&Tenant {
                                tenant: format!("new{thread}-{i}"),
                            })
                            .inc();
                    }
                });
            }
        });
        let text = m.encode();
        let values: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("ext_runner_race_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(values.len(), MAX_SERIES_PER_FAMILY + 1);
        assert_eq!(values.iter().sum::<u64>(), 8 * MAX_SERIES_PER_FAMILY as u64);
    }
}
