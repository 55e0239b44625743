//! Families whose names are chosen at run time (guest metrics,
//! `cap:metrics.emit`), encoded on the scrape by [`OwnedFamilies`]' own
//! [`Collector`].
//!
//! Each series belongs to an owner (tenant, extension) whose labels lead
//! it, and a new one is admitted only under a per-owner and a total series
//! cap ([`OwnedCaps`]), so owned names cannot grow the registry without
//! bound. A name is refused when any name it would expose (the family's,
//! and its samples': `_total` of a counter, `_bucket`/`_sum`/`_count` of a
//! histogram) is one the runner's families expose, or one another owned
//! family of another kind exposes: OpenMetrics has one type per name. A
//! counter's family drops a `_total` its name ends in (the encoding adds it
//! back), so `orders` and `orders_total` are one counter.
//!
//! Updating an existing series takes this module's read lock and the
//! family's; admitting a new one takes the write lock, after a check of the
//! caps under the read lock, so an owner at its cap never writes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::Buckets;

/// One update to a family with a run-time name; the variant is the kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    /// Add to a counter.
    Add(u64),
    /// Set a gauge.
    Set(f64),
    /// Record one observation in a histogram with these buckets.
    Observe(&'static [f64], f64),
}

/// Series caps for families with run-time names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedCaps {
    /// Distinct series one owner may create, across all its families.
    pub per_owner: usize,
    /// Distinct series of all owners together.
    pub total: usize,
}

/// Why [`OwnedFamilies::update`] recorded nothing.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn of(update: Update) -> Kind {
        match update {
            Update::Add(_) => Kind::Counter,
            Update::Set(_) => Kind::Gauge,
            Update::Observe(..) => Kind::Histogram,
        }
    }

    fn from_type(metric_type: MetricType) -> Kind {
        match metric_type {
            MetricType::Counter => Kind::Counter,
            MetricType::Histogram => Kind::Histogram,
            _ => Kind::Gauge,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }

    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Histogram => MetricType::Histogram,
        }
    }

    /// The family name of `name`: a counter's without a trailing `_total`.
    fn family(self, name: &str) -> &str {
        match self {
            Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        }
    }

    /// Every name a family of this kind exposes: its own and its samples'.
    fn exposed(self, family: &str) -> impl Iterator<Item = String> + '_ {
        let suffixes: &[&str] = match self {
            Kind::Counter => &["_total"],
            Kind::Gauge => &[],
            Kind::Histogram => &["_bucket", "_sum", "_count"],
        };
        std::iter::once(family.to_string()).chain(suffixes.iter().map(move |s| format!("{family}{s}")))
    }
}

/// Owner labels first, then the caller's.
type OwnedLabels = Vec<(Cow<'static, str>, String)>;

enum Series {
    Counter(Family<OwnedLabels, Counter>),
    Gauge(Family<OwnedLabels, Gauge<f64, AtomicU64>>),
    Histogram(Family<OwnedLabels, Histogram, Buckets>),
}

struct OwnedFamily {
    help: &'static str,
    kind: Kind,
    series: Series,
}

impl OwnedFamily {
    fn new(help: &'static str, update: Update) -> OwnedFamily {
        let series = match update {
            Update::Add(_) => Series::Counter(Family::default()),
            Update::Set(_) => Series::Gauge(Family::default()),
            Update::Observe(buckets, _) => Series::Histogram(Family::new_with_constructor(Buckets(buckets))),
        };
        OwnedFamily {
            help,
            kind: Kind::of(update),
            series,
        }
    }

    /// Apply `update` to the series `key`, creating it when `create`; false
    /// when it does not exist and was not created.
    fn apply(&self, key: &OwnedLabels, update: Update, create: bool) -> bool {
        match (&self.series, update) {
            (Series::Counter(f), Update::Add(n)) => with(f, key, create, |c| {
                c.inc_by(n);
            }),
            (Series::Gauge(f), Update::Set(v)) => with(f, key, create, |g| {
                g.set(v);
            }),
            (Series::Histogram(f), Update::Observe(_, v)) => with(f, key, create, |h| h.observe(v)),
            // Kinds are checked before.
            _ => false,
        }
    }
}

fn with<M, C: MetricConstructor<M>>(
    family: &Family<OwnedLabels, M, C>,
    key: &OwnedLabels,
    create: bool,
    apply: impl FnOnce(&M),
) -> bool {
    if create {
        apply(&family.get_or_create(key));
        return true;
    }
    match family.get(key) {
        Some(series) => {
            apply(&series);
            true
        }
        None => false,
    }
}

#[derive(Default)]
struct State {
    /// By family name (sorted on the scrape).
    families: BTreeMap<String, OwnedFamily>,
    /// Every name an owned family exposes → that family's kind.
    exposed: HashMap<String, Kind>,
    /// Every name the runner's families expose.
    runner: HashSet<String>,
    /// Series per owner (its label values), for [`OwnedCaps::per_owner`].
    per_owner: HashMap<Vec<String>, usize>,
    total: usize,
}

impl State {
    fn runner_clash(&self, family: &str, kind: Kind) -> bool {
        kind.exposed(family).any(|name| self.runner.contains(&name))
    }

    fn check_caps(&self, owner_key: &[String], caps: OwnedCaps) -> Result<(), OwnedRefusal> {
        if self.per_owner.get(owner_key).copied().unwrap_or(0) >= caps.per_owner {
            return Err(OwnedRefusal::OwnerCap { cap: caps.per_owner });
        }
        if self.total >= caps.total {
            return Err(OwnedRefusal::TotalCap { cap: caps.total });
        }
        Ok(())
    }

    /// The existing family of `family`, or why a new one may not be made.
    /// Names are checked against the runner's when a family is made (a
    /// runner family registered later hides it from the scrape).
    fn check_family(&self, name: &str, family: &str, kind: Kind) -> Result<Option<&OwnedFamily>, OwnedRefusal> {
        if let Some(existing) = self.families.get(family) {
            return match existing.kind == kind {
                true => Ok(Some(existing)),
                false => Err(OwnedRefusal::KindClash {
                    name: name.to_string(),
                    existing: existing.kind.name(),
                }),
            };
        }
        if self.runner_clash(family, kind) {
            return Err(OwnedRefusal::RunnerName { name: name.to_string() });
        }
        match kind.exposed(family).find_map(|n| self.exposed.get(&n)) {
            Some(other) => Err(OwnedRefusal::KindClash {
                name: name.to_string(),
                existing: other.name(),
            }),
            None => Ok(None),
        }
    }
}

/// The families with run-time names and their caps; a [`Collector`] that
/// encodes them.
#[derive(Default)]
pub struct OwnedFamilies {
    state: RwLock<State>,
}

impl std::fmt::Debug for OwnedFamilies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("OwnedFamilies")
            .field("families", &state.families.len())
            .field("series", &state.total)
            .finish()
    }
}

impl OwnedFamilies {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keep the names a runner family exposes off owned families.
    pub(super) fn reserve(&self, family: &str, metric_type: MetricType) {
        let kind = Kind::from_type(metric_type);
        let mut state = self.write();
        debug_assert!(!state.runner.contains(family), "`{family}` is registered twice");
        state.runner.extend(kind.exposed(family));
    }

    /// Update a series of a family whose name is chosen at run time.
    ///
    /// `owner` labels lead every series and key the per-owner cap; `labels`
    /// follow in the order given (callers sort and validate them, and keep
    /// `name` within the exposition's name syntax). A new series is admitted
    /// only under `caps`; an existing one is always updated.
    ///
    /// # Errors
    /// [`OwnedRefusal`]: `name` is (or exposes) a runner family's name or a
    /// name another kind already exposes, or a cap is reached. Nothing is
    /// recorded then.
    pub fn update(
        &self,
        name: &str,
        help: &'static str,
        owner: &[(&'static str, &str)],
        labels: &[(String, String)],
        update: Update,
        caps: OwnedCaps,
    ) -> Result<(), OwnedRefusal> {
        let kind = Kind::of(update);
        let family = kind.family(name);
        let key: OwnedLabels = owner
            .iter()
            .map(|(n, v)| (Cow::Borrowed(*n), (*v).to_string()))
            .chain(labels.iter().map(|(n, v)| (Cow::Owned(n.clone()), v.clone())))
            .collect();
        let owner_key = {
            let state = self.read();
            let existing = state.check_family(name, family, kind)?;
            if existing.is_some_and(|f| f.apply(&key, update, false)) {
                return Ok(());
            }
            // An owner at a cap is refused without the write lock.
            let owner_key: Vec<String> = owner.iter().map(|(_, v)| (*v).to_string()).collect();
            state.check_caps(&owner_key, caps)?;
            owner_key
        };
        // A new series, perhaps of a new family: checked again, one at a time.
        let mut state = self.write();
        let exists = state.check_family(name, family, kind)?.is_some();
        if exists && state.families[family].apply(&key, update, false) {
            return Ok(());
        }
        state.check_caps(&owner_key, caps)?;
        if !exists {
            let names: Vec<String> = kind.exposed(family).collect();
            state.exposed.extend(names.into_iter().map(|n| (n, kind)));
            state
                .families
                .insert(family.to_string(), OwnedFamily::new(help, update));
        }
        *state.per_owner.entry(owner_key).or_default() += 1;
        state.total += 1;
        state.families[family].apply(&key, update, true);
        Ok(())
    }
}

impl Collector for OwnedFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.read();
        for (name, family) in &state.families {
            // Refused by `update`; kept out here too should a runner family
            // be registered under the name later.
            if state.runner_clash(name, family.kind) {
                continue;
            }
            let metric = encoder.encode_descriptor(name, family.help, None, family.kind.metric_type())?;
            match &family.series {
                Series::Counter(f) => f.encode(metric)?,
                Series::Gauge(f) => f.encode(metric)?,
                Series::Histogram(f) => f.encode(metric)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::super::{Metrics, NoLabels};
    use super::*;

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
        owned(&m, "ext_runner_guest_a", "t1", "v\"1", Update::Add(2)).unwrap();
        owned(&m, "ext_runner_guest_a", "t1", "v\"1", Update::Add(3)).unwrap();
        owned(&m, "ext_runner_guest_h", "t2", "v", Update::Observe(&[1.0], 0.5)).unwrap();
        let text = m.encode();
        assert!(
            text.contains(
                "# HELP ext_runner_guest_a Guest.\n# TYPE ext_runner_guest_a counter\next_runner_guest_a_total{tenant=\"t1\",extension=\"x\",k=\"v\\\"1\"} 5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("ext_runner_guest_h_bucket{le=\"1.0\",tenant=\"t2\",extension=\"x\",k=\"v\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("ext_runner_guest_h_count{tenant=\"t2\",extension=\"x\",k=\"v\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// A counter named with `_total` and one without are the same family
    /// (OpenMetrics exposes both as `…_total`).
    #[test]
    fn owned_counters_with_and_without_total_are_one_family() {
        let m = Metrics::default();
        owned(&m, "ext_runner_guest_orders_total", "t1", "1", Update::Add(2)).unwrap();
        owned(&m, "ext_runner_guest_orders", "t1", "1", Update::Add(3)).unwrap();
        let text = m.encode();
        assert!(text.contains("# TYPE ext_runner_guest_orders counter\n"), "{text}");
        assert!(
            text.contains("ext_runner_guest_orders_total{tenant=\"t1\",extension=\"x\",k=\"1\"} 5\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE").count(), 1, "{text}");
    }

    #[test]
    fn owned_series_are_capped_per_owner_and_in_total() {
        let m = Metrics::default();
        owned(&m, "ext_runner_guest_a", "t1", "1", Update::Add(1)).unwrap();
        owned(&m, "ext_runner_guest_b", "t1", "1", Update::Set(1.0)).unwrap();
        assert_eq!(
            owned(&m, "ext_runner_guest_a", "t1", "2", Update::Add(1)),
            Err(OwnedRefusal::OwnerCap { cap: 2 })
        );
        // Existing series still update at the cap; other owners have their own.
        owned(&m, "ext_runner_guest_a", "t1", "1", Update::Add(1)).unwrap();
        owned(&m, "ext_runner_guest_a", "t2", "1", Update::Add(1)).unwrap();
        assert_eq!(
            owned(&m, "ext_runner_guest_a", "t3", "1", Update::Add(1)),
            Err(OwnedRefusal::TotalCap { cap: 3 })
        );
        let text = m.encode();
        assert!(!text.contains("k=\"2\""), "{text}");
        assert!(!text.contains("t3"), "{text}");
        assert!(
            text.contains("ext_runner_guest_a_total{tenant=\"t1\",extension=\"x\",k=\"1\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn owned_names_keep_their_kind_and_stay_off_runner_families() {
        let m = Metrics::default();
        owned(&m, "ext_runner_guest_a", "t1", "1", Update::Add(1)).unwrap();
        assert_eq!(
            owned(&m, "ext_runner_guest_a", "t1", "1", Update::Set(1.0)),
            Err(OwnedRefusal::KindClash {
                name: "ext_runner_guest_a".into(),
                existing: "counter"
            })
        );
        // A gauge named like the counter's sample would expose it twice.
        assert_eq!(
            owned(&m, "ext_runner_guest_a_total", "t1", "1", Update::Set(1.0)),
            Err(OwnedRefusal::KindClash {
                name: "ext_runner_guest_a_total".into(),
                existing: "counter"
            })
        );
        let mine = m.register("ext_runner_mine", "Mine.", Family::<NoLabels, Counter>::default());
        mine.get_or_create(&NoLabels).inc();
        for name in ["ext_runner_mine_total", "ext_runner_mine"] {
            assert!(
                matches!(
                    owned(&m, name, "t1", "1", Update::Add(1)),
                    Err(OwnedRefusal::RunnerName { .. })
                ),
                "{name}"
            );
        }
        // Nor may another kind expose the runner counter's sample name.
        assert!(matches!(
            owned(&m, "ext_runner_mine_total", "t1", "1", Update::Set(1.0)),
            Err(OwnedRefusal::RunnerName { .. })
        ));
        let text = m.encode();
        assert!(text.contains("ext_runner_mine_total 1\n"), "{text}");
        assert_eq!(text.matches("ext_runner_mine").count(), 3, "{text}");
    }
}
