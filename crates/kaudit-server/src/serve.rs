//! Running `kaudit serve`: opens the store, builds the ingest pipeline,
//! starts the listeners, file sources, checkpointing and (with `--demo`)
//! generated traffic, and shuts down gracefully: stop accepting, finish
//! in-flight batches, write a final checkpoint.

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::dedupe::DedupeWindow;
use crate::http::{self, AppState, HttpLimits, ReadyCheck};
use crate::ingest::{BadItem, EventLog, IngestRecord, Ingestor, Limits, LogError, Transform};
use crate::metrics::Metrics;
use crate::quarantine::Quarantine;
use crate::tail::{FileTailer, TailConfig};
use kaudit_policy::{Outcome, PolicyApplier};
use kaudit_store::{FedRecord, LiveFeed, RecordRef, Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What can stop the server from starting or shutting down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is not usable.
    #[error("config: {0}")]
    Config(String),
    /// The store could not be opened or closed.
    #[error("store: {0}")]
    Store(String),
    /// A listener could not be bound.
    #[error("listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// Called once the listeners are bound, with their scheme and address.
pub type OnReady = Arc<dyn Fn(&[(String, std::net::SocketAddr)]) + Send + Sync>;

/// Options beyond the config file.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Generate live demo traffic into the store.
    pub demo: bool,
    /// Demo events per second.
    pub demo_rate: u32,
    /// Called once the listeners are bound, with their addresses (tests use it
    /// to learn ephemeral ports).
    pub on_ready: Option<OnReady>,
}

/// The store as the ingest pipeline sees it. Appended events are also
/// offered, parsed, to the followers through the live feed.
struct StoreLog {
    store: Arc<Store>,
    feed: Arc<LiveFeed>,
}

impl EventLog for StoreLog {
    fn append(&self, records: Vec<IngestRecord>) -> Result<(), LogError> {
        let refs: Vec<RecordRef<'_>> = records
            .iter()
            .map(|r| RecordRef {
                cluster: &r.cluster,
                received: r.received,
                event: r.event.bytes(),
            })
            .collect();
        let appended = self
            .store
            .append_refs(&refs)
            .map_err(|e| LogError::Failed(e.to_string()))?;
        drop(refs);
        // With duplicates dropped, which record got which number is the
        // store's business: followers read that batch from the store.
        if appended.duplicates == 0
            && appended.seqs.end - appended.seqs.start == records.len() as u64
        {
            let fed = records
                .into_iter()
                .map(|r| FedRecord {
                    cluster: r.cluster,
                    received: r.received,
                    event: r.event,
                })
                .collect();
            self.feed.publish(appended.seqs.start, fed);
        }
        Ok(())
    }
}

/// Builds the ingest-time transform: the policy (if any) and redaction.
pub fn build_transform(
    policy: Option<&Path>,
    redact: bool,
) -> Result<Option<Transform>, ServeError> {
    let Some((applier, warnings)) =
        PolicyApplier::for_ingest(policy, redact).map_err(|e| ServeError::Config(e.to_string()))?
    else {
        return Ok(None);
    };
    for w in &warnings {
        tracing::warn!(policy = ?policy, "{w}");
    }
    Ok(Some(Arc::new(move |ev| match applier.apply(ev) {
        Outcome::Keep(ev) => Some(ev),
        Outcome::Drop(_) => None,
    })))
}

fn store_options(cfg: &ServerConfig) -> StoreOptions {
    StoreOptions {
        signing_key: cfg.store.signing_key.clone(),
        publish_checkpoint: cfg.store.publish_checkpoint.clone(),
        encryption_key: cfg.store.encryption.as_ref().map(|e| e.key_file.clone()),
        checkpoint_interval: cfg.store.checkpoint_interval,
        ..StoreOptions::default()
    }
}

/// Free bytes on the file system holding `dir`.
pub fn free_disk(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Runs the server until SIGTERM/SIGINT (or `stop` turns true).
pub fn run(cfg: ServerConfig, opts: RunOptions, stop: Arc<AtomicBool>) -> Result<(), ServeError> {
    let problems = cfg.check();
    if !problems.is_empty() {
        return Err(ServeError::Config(problems.join("; ")));
    }
    std::fs::create_dir_all(&cfg.data)
        .map_err(|e| ServeError::Store(format!("{}: {e}", cfg.data.display())))?;
    let store = Arc::new(
        Store::open(&cfg.data, store_options(&cfg))
            .map_err(|e| ServeError::Store(e.to_string()))?,
    );
    for line in store.open_report().describe() {
        tracing::info!(target: "kaudit::store", "{line}");
    }
    let metrics = Arc::new(Metrics::default());
    metrics.describe(
        "kaudit_store_tree_size",
        "gauge",
        "Records in the store (Merkle tree size).",
    );
    metrics.describe(
        "kaudit_checkpoint_age_seconds",
        "gauge",
        "Age of the latest signed checkpoint.",
    );
    metrics.describe(
        "kaudit_feed_records_total",
        "counter",
        "Records followers (indexer, detection, sinks) took from the in-memory live feed (from=memory) or read back from the store (from=store).",
    );
    metrics.describe(
        "kaudit_source_lag_bytes",
        "gauge",
        "Bytes of a followed file not yet read.",
    );
    let quarantine =
        Arc::new(Quarantine::open(&cfg.data).map_err(|e| ServeError::Store(e.to_string()))?);
    let transform = build_transform(cfg.ingest.policy.as_deref(), cfg.ingest.redact)?;
    let feed = Arc::new(LiveFeed::new(cfg.store.feed_memory as usize));
    let ingestor = Arc::new(Ingestor::new(
        Arc::new(StoreLog {
            store: store.clone(),
            feed: feed.clone(),
        }),
        quarantine,
        DedupeWindow::new(cfg.ingest.dedupe_window, cfg.ingest.dedupe_max_keys),
        metrics.clone(),
        Limits {
            max_event: cfg.ingest.max_event as usize,
        },
        transform,
    ));
    let auth = Arc::new(
        Authenticator::new(
            &cfg.auth.tokens,
            &cfg.auth.client_certs,
            &cfg.ingest.default_cluster,
        )
        .map_err(|e| ServeError::Config(e.to_string()))?,
    );
    let data_dir = cfg.data.clone();
    let min_free = cfg.ingest.min_free_disk;
    let ready: ReadyCheck = Arc::new(move || match free_disk(&data_dir) {
        Some(free) if free < min_free => Err(format!(
            "disk nearly full: {free} bytes free under {}, below the {min_free}-byte minimum",
            data_dir.display()
        )),
        _ => Ok(()),
    });
    let state = AppState::new(
        ingestor.clone(),
        auth,
        HttpLimits {
            max_body: cfg.ingest.max_body as usize,
            max_inflight_bytes: cfg.ingest.max_inflight as usize,
        },
        ready,
    );
    let api_auth = state.auth.clone();
    let sinks = crate::sinks::open(&cfg.sinks, &cfg.data).map_err(ServeError::Config)?;
    let sink_stats = sinks.iter().map(kaudit_sinks::Sink::stats).collect();
    let search = Arc::new(
        kaudit_index::EmbeddedBackend::open(&cfg.data, store.clone())
            .map_err(|e| ServeError::Store(format!("search index: {e}")))?
            .with_feed(feed.clone()),
    );
    let app = http::router(state)
        .merge(crate::api::routes(crate::api::ApiContext {
            store: store.clone(),
            backend: search.clone(),
            auth: api_auth.clone(),
        }))
        .merge(crate::console::routes(crate::console::ConsoleContext {
            api: crate::api::ApiContext {
                store: store.clone(),
                backend: search.clone(),
                auth: api_auth.clone(),
            },
            encryption_key: cfg.store.encryption.as_ref().map(|e| e.key_file.clone()),
        }))
        .merge(crate::ui::routes())
        .merge(crate::detect::routes(cfg.data.clone(), api_auth.clone()))
        .merge(crate::sinks::routes(sink_stats, api_auth));

    // Background work: checkpoints and metrics gauges, file sources, demo.
    let mut threads = Vec::new();
    {
        let store = store.clone();
        let metrics = metrics.clone();
        let stop = stop.clone();
        let every = cfg.store.checkpoint_interval.min(Duration::from_secs(1));
        let feed = feed.clone();
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = store.maybe_checkpoint() {
                    tracing::error!(error = %e, "checkpoint failed");
                }
                metrics.set("kaudit_store_tree_size", &[], store.len() as f64);
                let (memory, read_back) = feed.served();
                metrics.set(
                    "kaudit_feed_records_total",
                    &[("from", "memory")],
                    memory as f64,
                );
                metrics.set(
                    "kaudit_feed_records_total",
                    &[("from", "store")],
                    read_back as f64,
                );
                if let Some(t) = store
                    .latest_checkpoint()
                    .and_then(|cp| kaudit_event::MicroTime::parse(&cp.time).ok())
                {
                    let age = kaudit_event::MicroTime::now().micros() - t.micros();
                    metrics.set("kaudit_checkpoint_age_seconds", &[], age as f64 / 1e6);
                }
                std::thread::sleep(every);
            }
        }));
    }
    {
        // Search indexer: catches up with the store about every second.
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            search.run_indexer(
                Duration::from_secs(1),
                &stop,
                &mut |e| tracing::error!(error = %e, "search index update failed"),
            )
        }));
    }
    if cfg.detect.enabled {
        let engine = crate::detect::build_engine(&cfg.detect)
            .map_err(|e| ServeError::Config(e.to_string()))?;
        tracing::info!(rules = engine.rule_count(), "live detection on");
        let (store, feed, dcfg, data, metrics, stop) = (
            store.clone(),
            feed.clone(),
            cfg.detect.clone(),
            cfg.data.clone(),
            metrics.clone(),
            stop.clone(),
        );
        threads.push(std::thread::spawn(move || {
            crate::detect::run_detector(store, feed, engine, dcfg, data, metrics, stop)
        }));
    }
    crate::sinks::spawn(
        sinks
            .into_iter()
            .map(|s| s.with_feed(feed.clone()))
            .collect(),
        store.clone(),
        metrics.clone(),
        stop.clone(),
        &mut threads,
    );
    if !cfg.sources.is_empty() {
        let dir = source_state_dir(&cfg.data);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServeError::Store(format!("{}: {e}", dir.display())))?;
    }
    for (i, src) in cfg.sources.iter().enumerate() {
        let state_path = cfg
            .data
            .join("sources")
            .join(format!("{i}-{}.state", sanitize(&src.file.path)));
        let tcfg = TailConfig::new(src.file.path.clone(), src.file.cluster.clone(), state_path);
        let ingestor = ingestor.clone();
        let stop = stop.clone();
        let metrics = metrics.clone();
        threads.push(std::thread::spawn(move || {
            tail_source(tcfg, ingestor, metrics, stop)
        }));
    }
    if opts.demo {
        let ingestor = ingestor.clone();
        let stop = stop.clone();
        let rate = opts.demo_rate.max(1);
        threads.push(std::thread::spawn(move || {
            demo_traffic(ingestor, rate, stop)
        }));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(|e| ServeError::Other(format!("starting the runtime: {e}")))?;
    let result = rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut bound = Vec::new();
        let mut tasks = Vec::new();
        if let Some(addr) = cfg.listen {
            let l = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
            let local = l.local_addr().map_err(|e| ServeError::Other(e.to_string()))?;
            bound.push(("http".to_string(), local));
            let mut rx = rx.clone();
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                http::serve_plain(l, app, async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
            }));
        }
        if let Some(t) = &cfg.tls {
            let (cert, key) = match (&t.cert, &t.key) {
                (Some(c), Some(k)) => (c.clone(), k.clone()),
                _ => crate::tls::ensure_self_signed(&cfg.data.join("tls"), &t.names)?,
            };
            let tls = crate::tls::server_config(&cert, &key, t.client_ca.as_deref())?;
            let l = tokio::net::TcpListener::bind(t.listen).await.map_err(|source| ServeError::Bind {
                addr: t.listen.to_string(),
                source,
            })?;
            let local = l.local_addr().map_err(|e| ServeError::Other(e.to_string()))?;
            bound.push(("https".to_string(), local));
            tasks.push(tokio::spawn(http::serve_tls(l, tls, app.clone(), rx.clone())));
        }
        for (scheme, addr) in &bound {
            tracing::info!("listening on {scheme}://{addr}");
        }
        if let Some(cb) = &opts.on_ready {
            cb(&bound);
        }
        let stop2 = stop.clone();
        let signals = async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if stop2.load(Ordering::Relaxed) { break; }
                    }
                }
            }
        };
        signals.await;
        tracing::info!("shutting down: no new connections, finishing in-flight batches");
        let _ = tx.send(true);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(35), t).await;
        }
        Ok::<(), ServeError>(())
    });
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let final_cp = store
        .checkpoint()
        .map_err(|e| ServeError::Store(e.to_string()))?;
    if let Some(cp) = final_cp {
        tracing::info!(tree_size = cp.size, "final checkpoint written");
    }
    result
}

fn sanitize(p: &Path) -> String {
    p.to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Follows one file source: poll, ingest durably, then commit the position.
/// Errors back off and retry the same lines; nothing is skipped.
fn tail_source(
    cfg: TailConfig,
    ingestor: Arc<Ingestor>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) {
    let path = cfg.path.display().to_string();
    let cluster = cfg.cluster.clone();
    let interval = cfg.poll_interval;
    let mut backoff = Duration::from_millis(200);
    let mut tailer: Option<FileTailer> = None;
    while !stop.load(Ordering::Relaxed) {
        let t = match &mut tailer {
            Some(t) => t,
            None => match FileTailer::open(cfg.clone()) {
                Ok(t) => tailer.insert(t),
                Err(e) => {
                    tracing::warn!(source = %path, error = %e, "cannot open file source; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        match t.poll() {
            Ok(Some(batch)) => {
                let bad: Vec<BadItem> = batch
                    .bad_lines
                    .iter()
                    .enumerate()
                    .map(|(i, b)| BadItem {
                        index: i,
                        path: Some(b.location.to_string()),
                        reason: b.error.to_string(),
                        raw: b.raw.clone(),
                    })
                    .collect();
                let source = format!("file:{path}");
                match ingestor.ingest_events(batch.events, bad, &cluster, &source) {
                    Ok(_) => {
                        if let Err(e) = t.commit(&batch.position) {
                            tracing::error!(source = %path, error = %e, "cannot persist file position");
                        }
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) => {
                        // Not committed: the next poll after reopening reads these lines again.
                        tracing::warn!(source = %path, error = %e, "ingest failed; retrying");
                        tailer = None;
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                }
                metrics.set(
                    "kaudit_source_lag_bytes",
                    &[("source", &path)],
                    t.lag_bytes() as f64,
                );
            }
            Ok(None) => {
                metrics.set(
                    "kaudit_source_lag_bytes",
                    &[("source", &path)],
                    t.lag_bytes() as f64,
                );
                std::thread::sleep(interval);
            }
            Err(e) => {
                tracing::warn!(source = %path, error = %e, "tail error; retrying");
                tailer = None;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Generated traffic for `--demo`: realistic events, timestamped now.
fn demo_traffic(ingestor: Arc<Ingestor>, rate: u32, stop: Arc<AtomicBool>) {
    let mut cfg = kaudit_gen::GenConfig::new(u64::from(rate) ^ 0x6b61_7564_6974);
    cfg.clusters = kaudit_gen::default_cluster_names(2);
    cfg.start = kaudit_event::MicroTime::now();
    cfg.rate = f64::from(rate);
    cfg.incident_every = u64::from(rate) * 30;
    let names: Vec<String> = cfg.clusters.clone();
    let mut gen = match kaudit_gen::Generator::new(cfg) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "demo generator failed to start");
            return;
        }
    };
    let tick = Duration::from_millis(250);
    let per_tick = (rate as usize / 4).max(1);
    let started = Instant::now();
    let mut sent = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mut by_cluster: Vec<Vec<kaudit_event::Event>> = vec![Vec::new(); names.len()];
        for _ in 0..per_tick {
            let Some(g) = gen.next() else { return };
            if let Ok(ev) = g.event() {
                by_cluster[g.cluster].push(ev);
            }
        }
        for (i, evs) in by_cluster.into_iter().enumerate() {
            if evs.is_empty() {
                continue;
            }
            sent += evs.len();
            if let Err(e) = ingestor.ingest_events(evs, Vec::new(), &names[i], "demo") {
                tracing::warn!(error = %e, "demo ingest failed");
            }
        }
        // Pace to the wall clock so the generated timestamps stay near now.
        let due = started + Duration::from_secs_f64(sent as f64 / f64::from(rate));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(tick * 4));
        }
    }
}

/// Paths in the data directory the server writes besides the store.
pub fn source_state_dir(data: &Path) -> PathBuf {
    data.join("sources")
}
