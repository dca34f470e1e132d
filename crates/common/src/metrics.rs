//! A small Prometheus text-format registry (`DESIGN.md`, "Logging and metrics"), rendered
//! at `/metrics` by every server.
//!
//! Metrics are lock-light: a [`Counter`], [`Gauge`] or [`Histogram`] is an `Arc` of
//! atomics that the caller keeps and updates without locks. Labelled families
//! ([`CounterVec`], …) look a child up under a read lock (a write lock only the first time
//! a label set is seen); hot paths should keep the child `Arc` when the labels are fixed.
//! Keep label values bounded (methods from a fixed list, status codes, device names).
//!
//! Registering a name twice with the same type returns the existing family, so servers
//! and tests sharing [`global`] never clash; a clash of types yields a detached family
//! (never rendered) and a warning instead of a panic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Default latency buckets in seconds (Prometheus' defaults).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide registry that servers render at `/metrics` unless told otherwise.
pub fn global() -> Arc<Registry> {
    static GLOBAL: OnceLock<Arc<Registry>> = OnceLock::new();
    GLOBAL.get_or_init(|| Arc::new(Registry::default())).clone()
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (an `f64` stored as bits).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn add(&self, d: f64) {
        atomic_add_f64(&self.0, d);
    }
    pub fn inc(&self) {
        self.add(1.0);
    }
    pub fn dec(&self) {
        self.add(-1.0);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

fn atomic_add_f64(a: &AtomicU64, d: f64) {
    let mut cur = a.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(cur) + d).to_bits();
        match a.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(v) => cur = v,
        }
    }
}

/// Observations counted into fixed buckets (`le` upper bounds), with their sum and count.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// Per bucket (not cumulative), plus one for `+Inf`.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        let mut b: Vec<f64> = bounds.iter().copied().filter(|x| x.is_finite()).collect();
        b.sort_by(f64::total_cmp);
        b.dedup();
        let counts = (0..=b.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram {
            bounds: b,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        atomic_add_f64(&self.sum, v);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }
}

/// What a family can hold and how it renders.
pub trait Metric: Send + Sync + 'static {
    const TYPE: &'static str;
    fn render(&self, name: &str, labels: &str, out: &mut String);
}

impl Metric for Counter {
    const TYPE: &'static str = "counter";
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let _ = writeln!(out, "{name}{} {}", braces(labels), self.get());
    }
}

impl Metric for Gauge {
    const TYPE: &'static str = "gauge";
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let _ = writeln!(out, "{name}{} {}", braces(labels), fmt_f64(self.get()));
    }
}

impl Metric for Histogram {
    const TYPE: &'static str = "histogram";
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cum += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| fmt_f64(*b));
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), fmt_f64(self.sum()));
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count());
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Escape a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A named metric family: one child per label-value set.
pub struct Family<M> {
    name: String,
    help: String,
    label_names: Vec<String>,
    children: RwLock<BTreeMap<Vec<String>, Arc<M>>>,
    make: Box<dyn Fn() -> M + Send + Sync>,
}

pub type CounterVec = Family<Counter>;
pub type GaugeVec = Family<Gauge>;
pub type HistogramVec = Family<Histogram>;

impl<M: Metric> Family<M> {
    fn new(
        name: &str,
        help: &str,
        label_names: &[&str],
        make: Box<dyn Fn() -> M + Send + Sync>,
    ) -> Self {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            label_names: label_names.iter().map(|s| s.to_string()).collect(),
            children: RwLock::new(BTreeMap::new()),
            make,
        }
    }

    /// The child for these label values (in the order of the family's label names; extra
    /// values are ignored, missing ones are empty).
    pub fn with(&self, values: &[&str]) -> Arc<M> {
        let key: Vec<String> = (0..self.label_names.len())
            .map(|i| values.get(i).copied().unwrap_or_default().to_string())
            .collect();
        if let Ok(map) = self.children.read() {
            if let Some(m) = map.get(&key) {
                return m.clone();
            }
        }
        let mut map = match self.children.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(key)
            .or_insert_with(|| Arc::new((self.make)()))
            .clone()
    }

    fn render_into(&self, out: &mut String) {
        let map = match self.children.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help.replace('\n', " "));
        let _ = writeln!(out, "# TYPE {} {}", self.name, M::TYPE);
        for (values, m) in map.iter() {
            let labels = self
                .label_names
                .iter()
                .zip(values)
                .map(|(n, v)| format!("{n}=\"{}\"", escape_label(v)))
                .collect::<Vec<_>>()
                .join(",");
            m.render(&self.name, &labels, out);
        }
    }
}

trait Render: Send + Sync {
    fn name(&self) -> &str;
    fn render(&self, out: &mut String);
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
}

impl<M: Metric> Render for Family<M> {
    fn name(&self) -> &str {
        &self.name
    }
    fn render(&self, out: &mut String) {
        self.render_into(out)
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// A set of metric families rendered together.
#[derive(Default)]
pub struct Registry {
    families: Mutex<Vec<Arc<dyn Render>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    fn register<M: Metric>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        make: Box<dyn Fn() -> M + Send + Sync>,
    ) -> Arc<Family<M>> {
        let mut fams = match self.families.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = fams.iter().find(|f| f.name() == name) {
            if let Ok(fam) = existing.clone().as_any().downcast::<Family<M>>() {
                return fam;
            }
            tracing::warn!(
                metric = name,
                "metric registered twice with different types; the second is not exported"
            );
            return Arc::new(Family::new(name, help, labels, make));
        }
        let fam = Arc::new(Family::new(name, help, labels, make));
        fams.push(fam.clone());
        fam
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> Arc<CounterVec> {
        self.register(name, help, labels, Box::new(Counter::default))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Arc<GaugeVec> {
        self.register(name, help, labels, Box::new(Gauge::default))
    }

    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Arc<HistogramVec> {
        let b = buckets.to_vec();
        self.register(name, help, labels, Box::new(move || Histogram::new(&b)))
    }

    /// An unlabelled counter.
    pub fn counter(&self, name: &str, help: &str) -> Arc<Counter> {
        self.counter_vec(name, help, &[]).with(&[])
    }

    /// An unlabelled gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Arc<Gauge> {
        self.gauge_vec(name, help, &[]).with(&[])
    }

    /// An unlabelled histogram.
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Arc<Histogram> {
        self.histogram_vec(name, help, &[], buckets).with(&[])
    }

    /// The Prometheus text exposition (version 0.0.4) of every family with a child.
    pub fn render(&self) -> String {
        let fams: Vec<Arc<dyn Render>> = match self.families.lock() {
            Ok(f) => f.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut out = String::new();
        for f in fams {
            f.render(&mut out);
        }
        out
    }
}

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let r = Registry::default();
        let c = r.counter_vec("cairn_requests_total", "Requests.", &["method", "status"]);
        c.with(&["GET", "200"]).inc();
        c.with(&["GET", "200"]).inc_by(2);
        c.with(&["PUT", "201"]).inc();
        // Same name and type: the same family.
        r.counter_vec("cairn_requests_total", "x", &["method", "status"])
            .with(&["PUT", "201"])
            .inc();
        let g = r.gauge("cairn_in_flight", "In flight.");
        g.inc();
        g.inc();
        g.dec();
        r.gauge_vec("cairn_label", "Escaping.", &["v"])
            .with(&["a\"b\\c\nd"])
            .set(1.5);
        let h = r.histogram("cairn_latency_seconds", "Latency.", &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(3.0);
        // A type clash does not panic and is not rendered twice.
        r.gauge("cairn_requests_total", "clash").set(9.0);
        let text = r.render();
        let want = "\
# HELP cairn_requests_total Requests.
# TYPE cairn_requests_total counter
cairn_requests_total{method=\"GET\",status=\"200\"} 3
cairn_requests_total{method=\"PUT\",status=\"201\"} 2
# HELP cairn_in_flight In flight.
# TYPE cairn_in_flight gauge
cairn_in_flight 1
# HELP cairn_label Escaping.
# TYPE cairn_label gauge
cairn_label{v=\"a\\\"b\\\\c\\nd\"} 1.5
# HELP cairn_latency_seconds Latency.
# TYPE cairn_latency_seconds histogram
cairn_latency_seconds_bucket{le=\"0.1\"} 1
cairn_latency_seconds_bucket{le=\"1\"} 2
cairn_latency_seconds_bucket{le=\"+Inf\"} 3
cairn_latency_seconds_sum 3.55
cairn_latency_seconds_count 3
";
        assert_eq!(text, want);
    }

    #[test]
    fn histogram_with_labels_and_edges() {
        let r = Registry::default();
        let h = r.histogram_vec("h", "H.", &["m"], &[1.0, 0.5, 1.0]);
        h.with(&["GET"]).observe(0.5); // le is inclusive
        let text = r.render();
        assert!(
            text.contains("h_bucket{m=\"GET\",le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("h_count{m=\"GET\"} 1\n"), "{text}");
    }
}
