//! Running `kaudit serve`, in the data's order: [`open_store`] (the store,
//! the live feed, the ingest pipeline), [`build_router`] (every HTTP route),
//! [`spawn_followers`] (indexer, detection, alert notifiers, sinks),
//! [`spawn_sources`] (log files and whatever the caller adds), then the
//! listeners until SIGTERM/SIGINT, and a graceful stop: no new connections,
//! in-flight batches finished, followers drained or stopped, a final
//! checkpoint.

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::http::{self, AppState, HttpLimits, ReadyCheck};
use crate::metrics::Watched;
use kaudit_detect::{AlertLog, Detector};
use kaudit_index::{EmbeddedBackend, IndexError, Indexer};
use kaudit_metrics::Metrics;
use kaudit_policy::{Outcome, PolicyApplier};
use kaudit_sinks::{AlertNotifier, Sink, SinkStats};
use kaudit_sources::dedupe::DedupeWindow;
use kaudit_sources::quarantine::{Quarantine, QuarantineError};
use kaudit_sources::{
    EventLog, IngestRecord, Ingestor, Limits, LogError, Source, SourceContext, SourceError,
    Transform,
};
use kaudit_store::crypt::Cipher;
use kaudit_store::{
    run_follower, FedRecord, FollowOptions, Followed, Follower, FollowerStatus, LiveFeed,
    RecordRef, Store, StoreError, StoreOptions,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What can stop the server from starting or shutting down cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is not usable.
    #[error("config: {0}")]
    Config(String),
    /// The store could not be opened or closed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The data directory could not be made.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The quarantine area could not be opened.
    #[error("quarantine: {0}")]
    Quarantine(#[from] QuarantineError),
    /// The search index could not be opened.
    #[error("search index: {0}")]
    Index(#[from] IndexError),
    /// A source could not be built.
    #[error("source: {0}")]
    Source(#[from] SourceError),
    /// A sink could not be opened.
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkOpenError),
    /// Detection could not start (rules, alert log).
    #[error("detect: {0}")]
    Detect(#[from] kaudit_detect::DetectError),
    /// An alert notifier could not be opened.
    #[error("detect.outputs: {0}")]
    Notifier(#[source] kaudit_sinks::SinkError),
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
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Called once the listeners are bound, with their scheme and address.
pub type OnReady = Arc<dyn Fn(&[(String, std::net::SocketAddr)]) + Send + Sync>;

/// Options beyond the config file.
#[derive(Default)]
pub struct RunOptions {
    /// Sources built by the caller, run beside the configured ones (the
    /// CLI's `--demo` traffic).
    pub sources: Vec<Box<dyn Source>>,
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
        // The ingest pipeline hashed each event once for its dedupe key;
        // the store finishes the leaf hashes from those states.
        let prefixes: Vec<Option<&sha2::Sha256>> = records
            .iter()
            .map(|r| r.leaf_prefix.as_ref().map(|p| p.state()))
            .collect();
        let appended = self
            .store
            .append_prehashed(&refs, &prefixes)
            .map_err(|e| LogError::Failed(e.to_string()))?;
        drop(prefixes);
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
    // SAFETY: `statvfs` is plain old data; all-zero bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// The store and everything that writes into it or reads it, opened once.
pub struct Opened {
    /// The store.
    pub store: Arc<Store>,
    /// Recently appended records, parsed, for the followers.
    pub feed: Arc<LiveFeed>,
    /// The metrics registry `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// The shared ingest pipeline every source feeds.
    pub ingestor: Arc<Ingestor>,
    /// The search backend (and, in this process, its indexer).
    pub search: Arc<EmbeddedBackend>,
    /// What queries ask: ClickHouse (all nodes) when `store.clickhouse` is
    /// set and reachable at start, else the embedded index.
    pub queries: Arc<dyn kaudit_index::SearchBackend>,
    /// Credentials.
    pub auth: Arc<Authenticator>,
    /// The store's data key when encryption at rest is on: the alerts and
    /// the quarantine are sealed with it too.
    pub cipher: Option<Arc<Cipher>>,
}

/// Seals quarantine lines with the store's data key.
pub struct QuarantineSealer(pub Arc<Cipher>);

/// Associated data quarantine lines are sealed with.
const QUARANTINE_PURPOSE: &str = "kaudit quarantine";

impl kaudit_sources::quarantine::LineSealer for QuarantineSealer {
    fn seal_line(&self, plain: &[u8]) -> Result<String, String> {
        self.0
            .seal_line(plain, QUARANTINE_PURPOSE)
            .map_err(|e| e.to_string())
    }
    fn open_line(&self, line: &str) -> Result<Vec<u8>, String> {
        self.0
            .open_line(line, QUARANTINE_PURPOSE)
            .map_err(|e| e.to_string())
    }
}

/// The quarantine of `data`, sealed with `cipher` when given.
pub fn open_quarantine(
    data: &Path,
    cipher: Option<&Arc<Cipher>>,
) -> Result<Quarantine, QuarantineError> {
    Quarantine::open_sealed(
        data,
        cipher.map(|c| {
            Arc::new(QuarantineSealer(c.clone())) as Arc<dyn kaudit_sources::quarantine::LineSealer>
        }),
    )
}

/// Opens the store, the quarantine, the ingest pipeline (policy, dedupe,
/// limits), the search index and the credentials.
pub fn open_store(cfg: &ServerConfig) -> Result<Opened, ServeError> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.data)
            .map_err(|source| ServeError::Io {
                path: cfg.data.clone(),
                source,
            })?;
    }
    let store = Arc::new(Store::open(&cfg.data, store_options(cfg))?);
    let cipher = match &cfg.store.encryption {
        Some(e) => Some(Arc::new(
            Cipher::load(&e.key_file).map_err(StoreError::from)?,
        )),
        None => None,
    };
    for line in store.open_report().describe() {
        tracing::info!(target: "kaudit::store", "{line}");
    }
    let metrics = Arc::new(Metrics::default());
    let quarantine = Arc::new(
        open_quarantine(&cfg.data, cipher.as_ref())?.with_max_bytes(cfg.ingest.max_quarantine),
    );
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
            max_batch_items: cfg.ingest.max_batch_items,
            max_quarantine_per_batch: cfg.ingest.max_quarantine_per_batch,
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
    let search = Arc::new(EmbeddedBackend::open(&cfg.data, store.clone())?);
    let queries: Arc<dyn kaudit_index::SearchBackend> = match &cfg.store.clickhouse {
        Some(ch) => match kaudit_clickhouse::ClickHouseBackend::open(ch) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::warn!(error = %e, "clickhouse unreachable at start: this node answers queries from its own index");
                search.clone()
            }
        },
        None => search.clone(),
    };
    Ok(Opened {
        store,
        feed,
        metrics,
        ingestor,
        search,
        queries,
        auth,
        cipher,
    })
}

/// The log's signing key for report bundles, when this server has it (a
/// store whose key is elsewhere can still serve JSON reports).
fn report_signer(cfg: &ServerConfig) -> Option<Arc<kaudit_store::note::Signer25519>> {
    match kaudit_store::load_signer(&cfg.data, &store_options(cfg), false) {
        Ok(s) => s.map(Arc::new),
        Err(e) => {
            tracing::warn!(target: "kaudit::report", "reports cannot be signed: {e}");
            None
        }
    }
}

/// Every HTTP route: the webhook, health and metrics, the query API, the
/// console and its API, alerts and sink status.
pub fn build_router(
    cfg: &ServerConfig,
    o: &Opened,
    sink_stats: Vec<Arc<SinkStats>>,
) -> axum::Router {
    let data_dir = cfg.data.clone();
    let min_free = cfg.ingest.min_free_disk;
    let store = o.store.clone();
    // Ready means the store can take writes: enough free disk, and a writer
    // that is not stuck after a failed write (asking it also recovers it
    // once the disk has room again).
    let ready: ReadyCheck = Arc::new(move || {
        match free_disk(&data_dir) {
            Some(free) if free < min_free => {
                return Err(format!(
                "disk nearly full: {free} bytes free under {}, below the {min_free}-byte minimum",
                data_dir.display()
            ))
            }
            _ => {}
        }
        store.writable()
    });
    let state = AppState::new(
        o.ingestor.clone(),
        o.auth.clone(),
        HttpLimits {
            max_body: cfg.ingest.max_body as usize,
            max_inflight_bytes: cfg.ingest.max_inflight as usize,
            body_timeout: cfg.limits.body_timeout,
            min_body_rate: cfg.limits.min_body_rate,
        },
        ready,
    );
    let api = crate::api::ApiContext {
        store: o.store.clone(),
        backend: o.queries.clone(),
        auth: o.auth.clone(),
        limits: crate::api::QueryLimits::new(cfg.query.timeout, cfg.query.max_concurrent),
    };
    let guard = Arc::new(crate::guard::BrowserGuard {
        check_host: !o.auth.enabled(),
        names: cfg
            .tls
            .iter()
            .flat_map(|t| t.names.iter())
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
    });
    http::router(state)
        .merge(crate::api::routes(api.clone()))
        .merge(crate::console::routes(crate::console::ConsoleContext {
            api: api.clone(),
            encryption_key: cfg.store.encryption.as_ref().map(|e| e.key_file.clone()),
            trusted_key: cfg.store.trusted_key.clone(),
            trusted_checkpoint_dir: cfg.store.trusted_checkpoint_dir.clone(),
        }))
        .merge(crate::reports::routes(crate::reports::ReportsContext {
            api,
            data: cfg.data.clone(),
            signer: report_signer(cfg),
            cipher: o.cipher.clone(),
            chromium: kaudit_report::pdf::find_chromium(
                std::env::var_os("KAUDIT_CHROMIUM")
                    .map(std::path::PathBuf::from)
                    .as_deref(),
            ),
        }))
        .merge(crate::ui::routes())
        .merge(crate::alerts::routes_sealed(
            &cfg.data,
            o.cipher.clone(),
            o.auth.clone(),
        ))
        .merge(crate::sinks::routes(sink_stats, o.auth.clone()))
        .merge(crate::retention::routes(
            o.store.clone(),
            cfg.store.retention.as_ref().map(|r| r.policy()),
            o.metrics.clone(),
            o.auth.clone(),
        ))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::guard::browser_guard,
        ))
}

/// Running followers: their threads and their statuses.
pub struct Followers {
    /// One thread per follower.
    pub threads: Vec<JoinHandle<()>>,
    /// Their statuses, for metrics.
    pub statuses: Vec<Arc<FollowerStatus>>,
}

/// Starts every follower of the store on its own thread: the indexer,
/// live detection and its alert notifiers, and each sink. Each runs the
/// shared follower loop until `stop`.
pub fn spawn_followers(
    cfg: &ServerConfig,
    o: &Opened,
    sinks: Vec<Sink>,
    stop: &Arc<AtomicBool>,
) -> Result<Followers, ServeError> {
    let drain = FollowOptions {
        drain_on_stop: true,
        ..FollowOptions::default()
    };
    // Each planned follower, its options, and whether it reads the store's
    // records (so local pruning must wait for it); alert notifiers read the
    // alert log instead, and the shipper bounds its own pruning.
    let mut planned: Vec<(Box<dyn Follower>, FollowOptions, bool)> = vec![(
        Box::new(Indexer::new(o.search.clone(), Duration::from_secs(1))),
        drain.clone(),
        true,
    )];
    if cfg.detect.enabled {
        let engine = kaudit_detect::build_engine(&cfg.detect)?;
        tracing::info!(rules = engine.rule_count(), "live detection on");
        let detector = Detector::new(
            engine,
            &cfg.detect,
            AlertLog::new(&cfg.data).sealed(o.cipher.clone()),
            o.metrics.clone(),
        )?;
        planned.push((Box::new(detector), drain.clone(), true));
        for n in AlertNotifier::open_all(&cfg.detect, &cfg.data).map_err(ServeError::Notifier)? {
            planned.push((
                Box::new(n.sealed(o.cipher.clone())),
                FollowOptions::default(),
                false,
            ));
        }
    }
    // Filled once every follower has its status: until then the shipper's
    // floor is 0, so it prunes nothing.
    let readers: Arc<std::sync::OnceLock<Vec<Arc<FollowerStatus>>>> = Arc::default();
    if let Some(ch) = &cfg.store.clickhouse {
        let seen = readers.clone();
        let floor: kaudit_clickhouse::ship::PruneFloor = Arc::new(move || {
            seen.get()
                .and_then(|all| all.iter().map(|s| s.snapshot().position).min())
                .unwrap_or(0)
        });
        let shipper = kaudit_clickhouse::Shipper::new(ch.clone(), &cfg.data)
            .map_err(|e| ServeError::Config(e.to_string()))?
            .with_prune_floor(floor);
        planned.push((Box::new(shipper), FollowOptions::default(), false));
    }
    for s in sinks {
        let opts = s.follow_options();
        planned.push((Box::new(s.sealed(o.cipher.clone())), opts, true));
    }
    let mut out = Followers {
        threads: Vec::new(),
        statuses: Vec::new(),
    };
    let statuses: Vec<Arc<FollowerStatus>> = planned
        .iter()
        .map(|(f, _, _)| Arc::new(FollowerStatus::new(f.name())))
        .collect();
    let store_readers = planned
        .iter()
        .zip(&statuses)
        .filter(|((_, _, reads), _)| *reads)
        .map(|(_, s)| s.clone())
        .collect();
    let _ = readers.set(store_readers);
    for ((mut follower, opts, _), status) in planned.into_iter().zip(statuses) {
        out.statuses.push(status.clone());
        let (store, feed, stop) = (o.store.clone(), o.feed.clone(), stop.clone());
        // Named after the follower (Linux keeps 15 bytes), so its CPU time
        // shows per thread in /proc/<pid>/task/*/stat (bench/clickhouse.sh
        // measures the shipper's CPU per event that way).
        let name = follower.name().to_string();
        let thread = std::thread::Builder::new().name(format!("f-{name}"));
        let run = move || {
            let log = Followed {
                store: &store,
                feed: Some(&feed),
                stop: &stop,
            };
            run_follower(follower.as_mut(), &log, &opts, &status);
        };
        let handle = thread.spawn(run).map_err(|e| {
            ServeError::Config(format!("cannot start the {name} follower's thread: {e}"))
        })?;
        out.threads.push(handle);
    }
    Ok(out)
}

/// Builds the configured sources and starts them, with `extra` ones, each on
/// its own thread feeding the ingest pipeline.
pub fn spawn_sources(
    cfg: &ServerConfig,
    o: &Opened,
    extra: Vec<Box<dyn Source>>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>, ServeError> {
    let ctx = SourceContext::new(&cfg.data, o.metrics.clone());
    let mut sources = Vec::new();
    for (i, s) in cfg.sources.iter().enumerate() {
        sources.push(s.build(i, &ctx)?);
    }
    sources.extend(extra);
    Ok(sources
        .into_iter()
        .map(|s| {
            tracing::info!(source = s.name(), "source started");
            let (ingestor, stop) = (o.ingestor.clone(), stop.clone());
            std::thread::spawn(move || s.run(ingestor, stop))
        })
        .collect())
}

/// Signs checkpoints while data arrives and refreshes the gauges, about
/// every second, until `stop`.
fn spawn_housekeeping(
    cfg: &ServerConfig,
    o: &Opened,
    mut watched: Watched,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (store, metrics, stop) = (o.store.clone(), o.metrics.clone(), stop.clone());
    let every = cfg.store.checkpoint_interval.min(Duration::from_secs(1));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = store.maybe_checkpoint() {
                tracing::error!(error = %e, "checkpoint failed");
            }
            watched.report(&metrics);
            std::thread::sleep(every);
        }
    })
}

/// Makes every file and directory the server creates private to its user
/// (0600 / 0700): the data directory holds evidence about people, and one
/// file created with the default umask (an index dictionary, a sink's dead
/// letters, a cursor) would leak names to every local user.
fn private_files() {
    // SAFETY: umask only sets this process's file-creation mask; it reads
    // and writes no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// Turns transparent huge pages off for this process. Ingest grows and
/// frees many short-lived buffers; with huge pages the kernel zeroes a whole
/// 2 MiB page on each first touch, which was a fifth of the server's CPU
/// per event in `perf` (BENCHMARKS.md, "Server alone, pinned"). A failure
/// (an old kernel) only costs that speed, so it is logged, not fatal.
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory
    // map; the call reads and writes no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not turn huge pages off");
    }
}

/// Runs the server until SIGTERM/SIGINT (or `stop` turns true).
pub fn run(cfg: ServerConfig, opts: RunOptions, stop: Arc<AtomicBool>) -> Result<(), ServeError> {
    let problems = cfg.check();
    if !problems.is_empty() {
        return Err(ServeError::Config(problems.join("; ")));
    }
    private_files();
    no_huge_pages();
    let opened = open_store(&cfg)?;
    let sinks = crate::sinks::open(&cfg.sinks, &cfg.data)?;
    let sink_stats: Vec<Arc<SinkStats>> = sinks.iter().map(Sink::stats).collect();
    let app = build_router(&cfg, &opened, sink_stats.clone());
    let followers = spawn_followers(&cfg, &opened, sinks, &stop)?;
    let watched = Watched::new(
        opened.store.clone(),
        opened.feed.clone(),
        followers.statuses.clone(),
        sink_stats,
    );
    let mut threads = followers.threads;
    threads.push(spawn_housekeeping(&cfg, &opened, watched, &stop));
    if let Some(r) = &cfg.store.retention {
        tracing::info!(every = ?r.interval, "retention applied on a schedule");
        threads.push(crate::retention::spawn_retention(
            opened.store.clone(),
            r.policy(),
            r.interval,
            opened.metrics.clone(),
            stop.clone(),
        ));
    }
    threads.extend(spawn_sources(&cfg, &opened, opts.sources, &stop)?);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(ServeError::Runtime)?;
    let result = rt.block_on(listen(&cfg, app, opts.on_ready, stop.clone()));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if let Some(cp) = opened.store.checkpoint()? {
        tracing::info!(tree_size = cp.size, "final checkpoint written");
    }
    result
}

/// Binds the listeners, serves until a signal or `stop`, then stops
/// accepting and waits (bounded) for in-flight requests.
async fn listen(
    cfg: &ServerConfig,
    app: axum::Router,
    on_ready: Option<OnReady>,
    stop: Arc<AtomicBool>,
) -> Result<(), ServeError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut bound = Vec::new();
    let mut tasks = Vec::new();
    let bind = |addr: std::net::SocketAddr| async move {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = l.local_addr().map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        Ok::<_, ServeError>((l, local))
    };
    if let Some(addr) = cfg.listen {
        let (l, local) = bind(addr).await?;
        bound.push(("http".to_string(), local));
        tasks.push(tokio::spawn(http::serve_plain(
            l,
            app.clone(),
            cfg.limits.conn(),
            rx.clone(),
        )));
    }
    if let Some(t) = &cfg.tls {
        let (cert, key) = match (&t.cert, &t.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => crate::tls::ensure_self_signed(&cfg.data.join("tls"), &t.names)?,
        };
        let tls = crate::tls::server_config(&cert, &key, t.client_ca.as_deref())?;
        let (l, local) = bind(t.listen).await?;
        bound.push(("https".to_string(), local));
        tasks.push(tokio::spawn(http::serve_tls(
            l,
            tls,
            app.clone(),
            cfg.limits.conn(),
            rx.clone(),
        )));
    }
    for (scheme, addr) in &bound {
        tracing::info!("listening on {scheme}://{addr}");
    }
    if let Some(cb) = &on_ready {
        cb(&bound);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if stop.load(Ordering::Relaxed) { break; }
            }
        }
    }
    tracing::info!("shutting down: no new connections, finishing in-flight batches");
    let _ = tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(35), t).await;
    }
    Ok(())
}

/// Where sources keep their positions inside a data directory.
pub fn source_state_dir(data: &Path) -> PathBuf {
    kaudit_sources::source::state_dir(data)
}

#[cfg(test)]
mod tests {
    use kaudit_event::MicroTime;
    use kaudit_sources::dedupe;
    use kaudit_store::record::{finish_leaf_and_key, hash_leaf_and_key, write_leaf, LEAF_TRAILER};

    /// The ingest pipeline hashes each event once and the store finishes
    /// the leaf hash from that state: both must give exactly what the store
    /// computes from the whole leaf_data, and the window's key must be the
    /// store's dedupe key, for any cluster and event length (block edges).
    #[test]
    fn one_hash_pass_gives_the_stores_leaf_hash_and_key() {
        let long_event = "y".repeat(10_000);
        let clusters = ["", "c", "prod-eu-1", "ü-cluster", &"z".repeat(253)];
        for (n, cluster) in clusters.iter().enumerate() {
            for len in [1usize, 2, 50, 55, 56, 63, 64, 65, 119, 128, 1000, 10_000] {
                let event = &long_event.as_bytes()[..len];
                let received = MicroTime(1_700_000_000_000_000 + len as i64);
                let seq = (n * 1000 + len) as u64;
                let mut leaf = Vec::new();
                write_leaf(cluster, event, received, seq, &mut leaf);
                let (key, prefix) = dedupe::key_and_prefix(cluster, event);
                let prefix = prefix.expect("clusters of at most 253 bytes get a prefix");
                let got = finish_leaf_and_key(prefix.state(), &leaf[leaf.len() - LEAF_TRAILER..]);
                let want = hash_leaf_and_key(&leaf);
                assert_eq!(got, want, "cluster {cluster:?}, event of {len} bytes");
                assert_eq!(key, want.1, "window key is the store's dedupe key");
            }
        }
    }
}
