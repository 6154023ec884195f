//! Prometheus metrics for every kaudit stage, rendered in the text
//! exposition format at `/metrics`.
//!
//! A metric is declared once, as a typed constant next to the code that
//! updates it ([`Counter`], [`Gauge`], [`Histogram`]): its name, help text,
//! label names and (for histograms) buckets. The number of label values is
//! part of the type (`Counter<2>` takes exactly two), so a metric cannot be
//! misspelled, described twice with different words, or emitted with a
//! different label set. Each metric keeps at most [`MAX_SERIES`] label sets;
//! past that, new ones are counted under the value [`OVERFLOW_LABEL`], so a
//! sender inventing cluster names cannot grow the registry without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
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

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Clone, Copy)]
struct Meta {
    kind: &'static str,
    help: &'static str,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), f64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Buckets>,
    meta: BTreeMap<&'static str, Meta>,
    bounds: BTreeMap<&'static str, &'static [f64]>,
    series: BTreeMap<&'static str, usize>,
}

/// The registry every part of a running kaudit updates and `/metrics` renders.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Inner {
    /// The key of a series, folding new label sets into [`OVERFLOW_LABEL`]
    /// once the metric holds [`MAX_SERIES`].
    fn key(
        &mut self,
        name: &'static str,
        meta: Meta,
        names: &[&'static str],
        values: &[&str],
        exists: impl Fn(&Self, &(&'static str, Labels)) -> bool,
    ) -> (&'static str, Labels) {
        self.meta.entry(name).or_insert(meta);
        let labels: Labels = names
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        let key = (name, labels);
        if exists(self, &key) {
            return key;
        }
        let n = self.series.entry(name).or_default();
        if *n >= MAX_SERIES {
            let folded = names.iter().map(|k| (*k, OVERFLOW_LABEL.to_string()));
            return (name, folded.collect());
        }
        *n += 1;
        key
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `by` to a counter.
    pub fn inc<const N: usize>(&self, c: &'static Counter<N>, values: [&str; N], by: f64) {
        let mut g = self.lock();
        let meta = Meta {
            kind: "counter",
            help: c.help,
        };
        let key = g.key(c.name, meta, &c.labels, &values, |i, k| {
            i.counters.contains_key(k)
        });
        *g.counters.entry(key).or_default() += by;
    }

    /// Sets a counter to `total`, for counts kept elsewhere as monotonic
    /// atomics (the live feed's, a follower's) and published from there.
    pub fn set_total<const N: usize>(&self, c: &'static Counter<N>, values: [&str; N], total: f64) {
        let mut g = self.lock();
        let meta = Meta {
            kind: "counter",
            help: c.help,
        };
        let key = g.key(c.name, meta, &c.labels, &values, |i, k| {
            i.counters.contains_key(k)
        });
        g.counters.insert(key, total);
    }

    /// Sets a gauge.
    pub fn set<const N: usize>(&self, m: &'static Gauge<N>, values: [&str; N], v: f64) {
        let mut g = self.lock();
        let meta = Meta {
            kind: "gauge",
            help: m.help,
        };
        let key = g.key(m.name, meta, &m.labels, &values, |i, k| {
            i.gauges.contains_key(k)
        });
        g.gauges.insert(key, v);
    }

    /// Records one observation in a histogram.
    pub fn observe<const N: usize>(&self, h: &'static Histogram<N>, values: [&str; N], v: f64) {
        let mut g = self.lock();
        let meta = Meta {
            kind: "histogram",
            help: h.help,
        };
        let key = g.key(h.name, meta, &h.labels, &values, |i, k| {
            i.histograms.contains_key(k)
        });
        g.bounds.insert(h.name, h.buckets);
        let b = g.histograms.entry(key).or_default();
        if b.counts.len() != h.buckets.len() {
            b.counts = vec![0; h.buckets.len()];
        }
        for (i, bound) in h.buckets.iter().enumerate() {
            if v <= *bound {
                b.counts[i] += 1;
            }
        }
        b.sum += v;
        b.count += 1;
    }

    /// A counter's current value (tests and status output).
    pub fn counter<const N: usize>(&self, c: &'static Counter<N>, values: [&str; N]) -> f64 {
        let labels: Labels = c
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        self.lock()
            .counters
            .get(&(c.name, labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// A gauge's current value, if it was ever set.
    pub fn gauge<const N: usize>(&self, m: &'static Gauge<N>, values: [&str; N]) -> Option<f64> {
        let labels: Labels = m
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        self.lock().gauges.get(&(m.name, labels)).copied()
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        let mut described = std::collections::HashSet::new();
        let mut head = |out: &mut String, name: &'static str| {
            if described.insert(name) {
                if let Some(m) = g.meta.get(name) {
                    let _ = writeln!(out, "# HELP {name} {}", m.help);
                    let _ = writeln!(out, "# TYPE {name} {}", m.kind);
                }
            }
        };
        for ((name, l), v) in &g.counters {
            head(&mut out, name);
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
        }
        for ((name, l), v) in &g.gauges {
            head(&mut out, name);
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
        }
        for ((name, l), h) in &g.histograms {
            head(&mut out, name);
            let bounds = g.bounds.get(name).copied().unwrap_or(&[]);
            for (b, c) in bounds.iter().zip(&h.counts) {
                let le = b.to_string();
                let _ = writeln!(out, "{name}_bucket{} {c}", fmt_labels(l, Some(&le)));
            }
            let inf = fmt_labels(l, Some("+Inf"));
            let _ = writeln!(out, "{name}_bucket{inf} {}", h.count);
            let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), h.sum);
            let _ = writeln!(out, "{name}_count{} {}", fmt_labels(l, None), h.count);
        }
        out
    }
}

fn fmt_labels(l: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
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

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        m.inc(&STORED, ["prod"], 3.0);
        m.inc(&STORED, ["prod"], 2.0);
        m.observe(&COMMIT, [], 0.003);
        m.set(&BYTES, [], 1024.0);
        let t = m.render();
        assert!(t.contains("# HELP kaudit_events_stored_total Events stored durably.\n# TYPE kaudit_events_stored_total counter"), "{t}");
        assert!(
            t.contains("kaudit_events_stored_total{cluster=\"prod\"} 5"),
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
        assert_eq!(m.counter(&STORED, ["prod"]), 5.0);
        assert_eq!(m.gauge(&BYTES, []), Some(1024.0));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.inc(&STORED, ["a\"b\\c\nd"], 1.0);
        assert!(m
            .render()
            .contains(r#"kaudit_events_stored_total{cluster="a\"b\\c\nd"} 1"#));
    }

    #[test]
    fn series_per_metric_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 10 {
            m.inc(&STORED, [&format!("c{i}")], 1.0);
        }
        // Known series keep counting; new ones fold into one.
        m.inc(&STORED, ["c0"], 1.0);
        assert_eq!(m.counter(&STORED, ["c0"]), 2.0);
        assert_eq!(m.counter(&STORED, [OVERFLOW_LABEL]), 10.0);
        let lines = m
            .render()
            .lines()
            .filter(|l| l.starts_with("kaudit_events_stored_total{"))
            .count();
        assert_eq!(lines, MAX_SERIES + 1);
    }
}
