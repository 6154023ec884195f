//! Prometheus metrics for every kaudit stage, kept in a `prometheus-client`
//! registry and rendered at `/metrics` in the OpenMetrics or the Prometheus
//! text exposition format.
//!
//! A metric is declared once, as a typed constant next to the code that
//! updates it ([`Counter`], [`Gauge`], [`Histogram`]): its name, help text,
//! label names and (for histograms) buckets. The number of label values is
//! part of the type (`Counter<2>` takes exactly two), so a metric cannot be
//! misspelled, described twice with different words, or emitted with a
//! different label set. Each metric keeps at most [`MAX_SERIES`] label sets;
//! past that, new ones are counted under the value [`OVERFLOW_LABEL`], so a
//! sender inventing cluster names cannot grow the registry without bound.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter as PCounter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge as PGauge;
use prometheus_client::metrics::histogram::Histogram as PHistogram;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// Most label sets one metric keeps before folding new ones together.
pub const MAX_SERIES: usize = 2_000;
/// The label value new label sets are counted under once a metric holds
/// [`MAX_SERIES`].
pub const OVERFLOW_LABEL: &str = "_other";

/// A monotonically increasing count, with `N` labels.
#[derive(Debug)]
pub struct Counter<const N: usize> {
    /// Metric name (`kaudit_..._total`).
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order values are given.
    pub labels: [&'static str; N],
}

/// A value that goes up and down, with `N` labels.
#[derive(Debug)]
pub struct Gauge<const N: usize> {
    /// Metric name.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order values are given.
    pub labels: [&'static str; N],
}

/// A distribution over fixed buckets, with `N` labels.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    /// Metric name.
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order values are given.
    pub labels: [&'static str; N],
    /// Upper bounds of the buckets, ascending (`+Inf` is implied).
    pub buckets: &'static [f64],
}

/// Latency buckets in seconds, from half a millisecond to five seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Batch size buckets, in events (kube-apiserver sends up to 400 by default).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 200.0, 400.0, 1000.0, 5000.0];

/// A label value as exposed: escaped for the text formats (prometheus-client
/// writes values as given, and a cluster or rule name is attacker-chosen
/// text that must not be able to forge lines).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Value(String);

impl EncodeLabelValue for Value {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

type Labels = Vec<(&'static str, Value)>;
type CounterFamily = Family<Labels, PCounter<u64, AtomicU64>>;
type GaugeFamily = Family<Labels, PGauge<f64, AtomicU64>>;
type HistogramFamily = Family<Labels, PHistogram, Buckets>;

/// Makes each new histogram of a family with the metric's buckets.
#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<PHistogram> for Buckets {
    fn new_metric(&self) -> PHistogram {
        PHistogram::new(self.0.iter().copied())
    }
}

#[derive(Default)]
struct Inner {
    registry: Registry,
    counters: HashMap<&'static str, CounterFamily>,
    gauges: HashMap<&'static str, GaugeFamily>,
    histograms: HashMap<&'static str, HistogramFamily>,
    /// Which label sets each metric holds, for the [`MAX_SERIES`] bound, and
    /// whether each metric is a counter (for the Prometheus text form).
    series: HashMap<&'static str, HashSet<Labels>>,
    counter_names: HashSet<&'static str>,
}

/// The registry every part of a running kaudit updates and `/metrics`
/// renders, on the `prometheus-client` crate.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// The `# HELP` text without a final period (the encoder adds one).
fn help(h: &str) -> &str {
    h.strip_suffix('.').unwrap_or(h)
}

impl Inner {
    /// The label set of a series, folded into [`OVERFLOW_LABEL`] once the
    /// metric holds [`MAX_SERIES`] others.
    fn labels(&mut self, name: &'static str, names: &[&'static str], values: &[&str]) -> Labels {
        let labels: Labels = names
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, Value((*v).to_string())))
            .collect();
        let seen = self.series.entry(name).or_default();
        if seen.contains(&labels) {
            return labels;
        }
        if seen.len() >= MAX_SERIES {
            let folded: Labels = names
                .iter()
                .map(|k| (*k, Value(OVERFLOW_LABEL.to_string())))
                .collect();
            seen.insert(folded.clone());
            return folded;
        }
        seen.insert(labels.clone());
        labels
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counter_family<const N: usize>(g: &mut Inner, c: &'static Counter<N>) -> CounterFamily {
        if let Some(f) = g.counters.get(c.name) {
            return f.clone();
        }
        let f = CounterFamily::default();
        // prometheus-client adds the `_total` suffix itself.
        let base = c.name.strip_suffix("_total").unwrap_or(c.name);
        g.registry.register(base, help(c.help), f.clone());
        g.counter_names.insert(base);
        g.counters.insert(c.name, f.clone());
        f
    }

    fn gauge_family<const N: usize>(g: &mut Inner, m: &'static Gauge<N>) -> GaugeFamily {
        if let Some(f) = g.gauges.get(m.name) {
            return f.clone();
        }
        let f = GaugeFamily::default();
        g.registry.register(m.name, help(m.help), f.clone());
        g.gauges.insert(m.name, f.clone());
        f
    }

    /// Adds `by` to a counter.
    pub fn inc<const N: usize>(&self, c: &'static Counter<N>, values: [&str; N], by: u64) {
        let mut g = self.lock();
        let labels = g.labels(c.name, &c.labels, &values);
        let f = Self::counter_family(&mut g, c);
        drop(g);
        f.get_or_create(&labels).inc_by(by);
    }

    /// Brings a counter up to `total`, for counts kept elsewhere as
    /// monotonic atomics (the live feed's, a follower's) and published from
    /// there. A smaller total (never expected) leaves it as it is.
    pub fn set_total<const N: usize>(&self, c: &'static Counter<N>, values: [&str; N], total: u64) {
        let mut g = self.lock();
        let labels = g.labels(c.name, &c.labels, &values);
        let f = Self::counter_family(&mut g, c);
        drop(g);
        let series = f.get_or_create(&labels);
        let now = series.get();
        if total > now {
            series.inc_by(total - now);
        }
    }

    /// Sets a gauge.
    pub fn set<const N: usize>(&self, m: &'static Gauge<N>, values: [&str; N], v: f64) {
        let mut g = self.lock();
        let labels = g.labels(m.name, &m.labels, &values);
        let f = Self::gauge_family(&mut g, m);
        drop(g);
        f.get_or_create(&labels).set(v);
    }

    /// Records one observation in a histogram.
    pub fn observe<const N: usize>(&self, h: &'static Histogram<N>, values: [&str; N], v: f64) {
        let mut g = self.lock();
        let labels = g.labels(h.name, &h.labels, &values);
        let f = match g.histograms.get(h.name) {
            Some(f) => f.clone(),
            None => {
                let f = HistogramFamily::new_with_constructor(Buckets(h.buckets));
                g.registry.register(h.name, help(h.help), f.clone());
                g.histograms.insert(h.name, f.clone());
                f
            }
        };
        drop(g);
        f.get_or_create(&labels).observe(v);
    }

    /// A counter's current value (tests and status output).
    pub fn counter<const N: usize>(&self, c: &'static Counter<N>, values: [&str; N]) -> u64 {
        let labels: Labels = c
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, Value(v.to_string())))
            .collect();
        let f = self.lock().counters.get(c.name).cloned();
        f.map_or(0, |f| f.get_or_create(&labels).get())
    }

    /// A gauge's current value, if it was ever set.
    pub fn gauge<const N: usize>(&self, m: &'static Gauge<N>, values: [&str; N]) -> Option<f64> {
        let labels: Labels = m
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, Value(v.to_string())))
            .collect();
        let g = self.lock();
        if !g.series.get(m.name).is_some_and(|s| s.contains(&labels)) {
            return None;
        }
        let f = g.gauges.get(m.name).cloned();
        drop(g);
        f.map(|f| f.get_or_create(&labels).get())
    }

    /// The OpenMetrics text exposition (`application/openmetrics-text;
    /// version=1.0.0`), ending in `# EOF`.
    pub fn render_openmetrics(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &g.registry);
        out
    }

    /// The Prometheus text exposition (`text/plain; version=0.0.4`): the
    /// same samples, with counters described under their `_total` names and
    /// without OpenMetrics' `# EOF`, `# UNIT` and `_created` lines.
    pub fn render(&self) -> String {
        let open = self.render_openmetrics();
        let counters = self.lock().counter_names.clone();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let described = line
                .strip_prefix("# HELP ")
                .map(|r| ("# HELP ", r))
                .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
            if let Some((head, rest)) = described {
                let name = rest.split(' ').next().unwrap_or("");
                if counters.contains(name) {
                    out.push_str(head);
                    out.push_str(name);
                    out.push_str("_total");
                    out.push_str(&rest[name.len()..]);
                    out.push('\n');
                    continue;
                }
            }
            let sample = line.split(['{', ' ']).next().unwrap_or("");
            if sample
                .strip_suffix("_created")
                .is_some_and(|b| counters.contains(b))
            {
                continue;
            }
            // A sample without labels: `name value`, not `name{} value`.
            match line.split_once("{} ") {
                Some((name, value)) if !name.contains([' ', '{']) => {
                    out.push_str(name);
                    out.push(' ');
                    out.push_str(value);
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static STORED: Counter<1> = Counter {
        name: "kaudit_events_stored_total",
        help: "Events stored durably.",
        labels: ["cluster"],
    };
    static COMMIT: Histogram<0> = Histogram {
        name: "kaudit_commit_seconds",
        help: "Time to make a batch durable.",
        labels: [],
        buckets: LATENCY_BUCKETS,
    };
    static BYTES: Gauge<0> = Gauge {
        name: "kaudit_store_bytes",
        help: "Bytes.",
        labels: [],
    };

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.inc(&STORED, ["prod"], 3);
        m.inc(&STORED, ["prod"], 2);
        m.observe(&COMMIT, [], 0.003);
        m.set(&BYTES, [], 1024.0);
        let t = m.render();
        assert!(t.contains("# HELP kaudit_events_stored_total Events stored durably.\n# TYPE kaudit_events_stored_total counter\n"), "{t}");
        assert!(
            t.contains("\nkaudit_events_stored_total{cluster=\"prod\"} 5\n"),
            "{t}"
        );
        assert!(t.contains("# TYPE kaudit_commit_seconds histogram"), "{t}");
        assert!(
            t.contains("kaudit_commit_seconds_bucket{le=\"0.0025\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("kaudit_commit_seconds_bucket{le=\"0.005\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("kaudit_commit_seconds_bucket{le=\"+Inf\"} 1"),
            "{t}"
        );
        assert!(t.contains("kaudit_commit_seconds_count 1"), "{t}");
        assert!(
            t.contains("# TYPE kaudit_store_bytes gauge\nkaudit_store_bytes 1024"),
            "{t}"
        );
        assert!(!t.contains("# EOF") && !t.contains("_created"), "{t}");
        assert_eq!(m.counter(&STORED, ["prod"]), 5);
        assert_eq!(m.gauge(&BYTES, []), Some(1024.0));
        assert_eq!(m.gauge(&BYTES, []).map(|_| ()), Some(()));
        let open = m.render_openmetrics();
        assert!(
            open.contains("# TYPE kaudit_events_stored counter\n"),
            "{open}"
        );
        assert!(
            open.contains("kaudit_events_stored_total{cluster=\"prod\"} 5\n"),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn totals_published_from_elsewhere_only_go_up() {
        let m = Metrics::default();
        m.set_total(&STORED, ["a"], 10);
        m.set_total(&STORED, ["a"], 25);
        m.set_total(&STORED, ["a"], 7);
        assert_eq!(m.counter(&STORED, ["a"]), 25);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.inc(&STORED, ["a\"} 1\nforged_total 9\n\\"], 1);
        let t = m.render();
        assert!(
            t.contains(r#"kaudit_events_stored_total{cluster="a\"} 1\nforged_total 9\n\\"} 1"#),
            "{t}"
        );
        assert!(!t.lines().any(|l| l.starts_with("forged_total")), "{t}");
    }

    #[test]
    fn series_per_metric_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 10 {
            m.inc(&STORED, [&format!("c{i}")], 1);
        }
        // Known series keep counting; new ones fold into one.
        m.inc(&STORED, ["c0"], 1);
        assert_eq!(m.counter(&STORED, ["c0"]), 2);
        assert_eq!(m.counter(&STORED, [OVERFLOW_LABEL]), 10);
        let lines = m
            .render()
            .lines()
            .filter(|l| l.starts_with("kaudit_events_stored_total{"))
            .count();
        assert_eq!(lines, MAX_SERIES + 1);
    }
}
