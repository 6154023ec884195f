//! Prometheus metrics, rendered in the text exposition format at `/metrics`.
//!
//! A small registry of labelled counters, gauges and fixed-bucket histograms:
//! enough for what operators alert on (received/stored/rejected by reason and
//! cluster, batch sizes, commit latency, dedupe hits, store size, checkpoint
//! age, per-source lag) without another dependency.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), f64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
    bounds: BTreeMap<&'static str, &'static [f64]>,
}

/// The registry shared by every part of the server.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Commit latency buckets, seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Batch size buckets, events.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 200.0, 400.0, 1000.0, 5000.0];

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Declares a metric's help text and type (`counter`, `gauge`, `histogram`).
    pub fn describe(&self, name: &'static str, kind: &'static str, help: &'static str) {
        self.lock().help.insert(name, (kind, help));
    }

    /// Adds to a counter.
    pub fn inc(&self, name: &'static str, l: &[(&'static str, &str)], by: f64) {
        *self.lock().counters.entry((name, labels(l))).or_default() += by;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, l: &[(&'static str, &str)], v: f64) {
        self.lock().gauges.insert((name, labels(l)), v);
    }

    /// Records an observation in a histogram with the given bucket bounds.
    pub fn observe(
        &self,
        name: &'static str,
        bounds: &'static [f64],
        l: &[(&'static str, &str)],
        v: f64,
    ) {
        let mut g = self.lock();
        g.bounds.insert(name, bounds);
        let h = g.histograms.entry((name, labels(l))).or_default();
        if h.buckets.len() != bounds.len() {
            h.buckets = vec![0; bounds.len()];
        }
        for (i, b) in bounds.iter().enumerate() {
            if v <= *b {
                h.buckets[i] += 1;
            }
        }
        h.sum += v;
        h.count += 1;
    }

    /// A counter's current value (for tests and status output).
    pub fn counter(&self, name: &'static str, l: &[(&'static str, &str)]) -> f64 {
        self.lock()
            .counters
            .get(&(name, labels(l)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        let mut described = std::collections::HashSet::new();
        let mut head = |out: &mut String, name: &'static str, default_kind: &str| {
            if described.insert(name) {
                let (kind, help) = g.help.get(name).copied().unwrap_or((default_kind, ""));
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
            }
        };
        for ((name, l), v) in &g.counters {
            head(&mut out, name, "counter");
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
        }
        for ((name, l), v) in &g.gauges {
            head(&mut out, name, "gauge");
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
        }
        for ((name, l), h) in &g.histograms {
            head(&mut out, name, "histogram");
            let bounds = g.bounds.get(name).copied().unwrap_or(&[]);
            for (b, c) in bounds.iter().zip(&h.buckets) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {c}",
                    fmt_labels(l, Some(&b.to_string()))
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                fmt_labels(l, Some("+Inf")),
                h.count
            );
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

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.describe(
            "kaudit_events_stored_total",
            "counter",
            "Events stored durably.",
        );
        m.inc("kaudit_events_stored_total", &[("cluster", "prod")], 3.0);
        m.inc("kaudit_events_stored_total", &[("cluster", "prod")], 2.0);
        m.observe("kaudit_commit_seconds", LATENCY_BUCKETS, &[], 0.003);
        m.set("kaudit_store_bytes", &[], 1024.0);
        let t = m.render();
        assert!(
            t.contains("# TYPE kaudit_events_stored_total counter"),
            "{t}"
        );
        assert!(
            t.contains("kaudit_events_stored_total{cluster=\"prod\"} 5"),
            "{t}"
        );
        assert!(
            t.contains("kaudit_commit_seconds_bucket{le=\"0.0025\"} 0"),
            "{t}"
        );
        assert!(
            t.contains("kaudit_commit_seconds_bucket{le=\"0.005\"} 1"),
            "{t}"
        );
        assert!(t.contains("kaudit_commit_seconds_count 1"), "{t}");
        assert!(t.contains("kaudit_store_bytes 1024"), "{t}");
        assert_eq!(
            m.counter("kaudit_events_stored_total", &[("cluster", "prod")]),
            5.0
        );
    }
}
