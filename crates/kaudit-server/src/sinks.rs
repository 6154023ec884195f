//! Forwarding sinks inside `kaudit serve`: one thread per configured sink
//! (from `kaudit-sinks`), their counters as Prometheus metrics, and
//! `GET /api/v1/sinks`.

use crate::metrics::Metrics;
use kaudit_sinks::{Sink, SinkConfig, SinkStats, SinkStatus};
use kaudit_store::Store;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Opens every configured sink (destinations built, cursors read) without
/// starting them, so a bad sink stops the server before it listens.
pub fn open(cfgs: &[SinkConfig], data: &Path) -> Result<Vec<Sink>, String> {
    cfgs.iter()
        .map(|c| Sink::new(c.clone(), data).map_err(|e| format!("sink {:?}: {e}", c.name)))
        .collect()
}

/// Starts a thread per sink and one that turns their counters into metrics
/// every second; all end when `stop` turns true (each sink first finishes
/// its batch in flight).
pub fn spawn(
    sinks: Vec<Sink>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    threads: &mut Vec<JoinHandle<()>>,
) {
    if sinks.is_empty() {
        return;
    }
    for (name, kind, help) in [
        (
            "kaudit_sink_lag_events",
            "gauge",
            "Stored events a sink has not sent yet.",
        ),
        (
            "kaudit_sink_lag_seconds",
            "gauge",
            "Age of the oldest event a sink has not sent yet.",
        ),
        (
            "kaudit_sink_sent_total",
            "counter",
            "Events a sink's destination acknowledged.",
        ),
        (
            "kaudit_sink_failed_total",
            "counter",
            "Events a sink's destination refused for good (dead-lettered).",
        ),
        (
            "kaudit_sink_retries_total",
            "counter",
            "Failed delivery attempts a sink retried.",
        ),
        (
            "kaudit_sink_up",
            "gauge",
            "1 when a sink's last delivery attempt succeeded.",
        ),
    ] {
        metrics.describe(name, kind, help);
    }
    let stats: Vec<Arc<SinkStats>> = sinks.iter().map(Sink::stats).collect();
    for mut sink in sinks {
        let (store, stop) = (store.clone(), stop.clone());
        threads.push(std::thread::spawn(move || sink.run(&store, &stop)));
    }
    threads.push(std::thread::spawn(move || {
        let mut last: Vec<(u64, u64, u64)> = vec![(0, 0, 0); stats.len()];
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            for (s, prev) in stats.iter().zip(last.iter_mut()) {
                let st = s.snapshot();
                let l = [("sink", st.name.as_str())];
                metrics.set("kaudit_sink_lag_events", &l, st.lag_events as f64);
                metrics.set("kaudit_sink_lag_seconds", &l, st.lag_seconds);
                metrics.set("kaudit_sink_up", &l, if st.up { 1.0 } else { 0.0 });
                metrics.inc(
                    "kaudit_sink_sent_total",
                    &l,
                    st.sent.saturating_sub(prev.0) as f64,
                );
                metrics.inc(
                    "kaudit_sink_failed_total",
                    &l,
                    st.failed.saturating_sub(prev.1) as f64,
                );
                metrics.inc(
                    "kaudit_sink_retries_total",
                    &l,
                    st.retries.saturating_sub(prev.2) as f64,
                );
                *prev = (st.sent, st.failed, st.retries);
            }
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }));
}

/// `GET /api/v1/sinks` (role reader): every sink's status, as
/// `{"sinks":[{"name","type","cursor","lag_events","lag_seconds","sent","failed","retries","up","last_error"}]}`.
pub fn routes(stats: Vec<Arc<SinkStats>>, auth: Arc<crate::auth::Authenticator>) -> axum::Router {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    let stats = Arc::new(stats);
    axum::Router::new().route(
        "/api/v1/sinks",
        axum::routing::get(move |peer: crate::http::Peer, headers: HeaderMap| {
            let (stats, auth) = (stats.clone(), auth.clone());
            async move {
                let role = crate::auth::Role::Reader;
                if let Err(r) = crate::http::authorize_peer(&auth, &headers, &peer, role) {
                    return r;
                }
                let sinks: Vec<SinkStatus> = stats.iter().map(|s| s.snapshot()).collect();
                axum::Json(serde_json::json!({ "sinks": sinks })).into_response()
            }
        }),
    )
}
