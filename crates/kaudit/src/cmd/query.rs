//! Search commands: query, stats, history, rbac, reindex.

use anyhow::{bail, Context};
use kaudit_event::{Event, MicroTime};
use kaudit_index::index::Needs;
use kaudit_index::search::{Cursor, Hit, SearchRequest};
use kaudit_index::stats::{StatsReport, StatsRequest};
use kaudit_index::{search_pages, EmbeddedBackend, Index, SearchBackend};
use kaudit_query::{parse_time_bound, Field, Query};
use kaudit_store::{Store, StoreOptions};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Where the store is.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Data directory of the store.
    #[arg(long, env = "KAUDIT_DATA", default_value = "./kaudit-data")]
    pub data: PathBuf,
    /// Encryption-at-rest key file, when the store is encrypted.
    #[arg(long)]
    pub encryption_key: Option<PathBuf>,
}

impl DataArgs {
    fn open(&self) -> anyhow::Result<Store> {
        if !self.data.join("segments").is_dir() {
            bail!(
                "no store in {} (import events with `kaudit import --data {} FILE`)",
                self.data.display(),
                self.data.display()
            );
        }
        Store::open(
            &self.data,
            StoreOptions {
                read_only: true,
                encryption_key: self.encryption_key.clone(),
                ..StoreOptions::default()
            },
        )
        .with_context(|| format!("opening store {} read-only", self.data.display()))
    }
}

/// Time bounds shared by the search commands.
#[derive(clap::Args, Clone, Debug)]
pub struct TimeArgs {
    /// Only events at or after this time: a duration back from now (2h, 30m, 7d), RFC 3339, or a date.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
}

impl TimeArgs {
    fn bounds(&self) -> anyhow::Result<(Option<i64>, Option<i64>)> {
        let now = MicroTime::now();
        let one = |s: &Option<String>, what: &str| -> anyhow::Result<Option<i64>> {
            s.as_deref()
                .map(|s| parse_time_bound(s, now).map(|t| t.micros()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--{what}: {e}"))
        };
        Ok((one(&self.since, "since")?, one(&self.until, "until")?))
    }
}

fn compile(text: &str) -> anyhow::Result<Query> {
    Query::parse(text).map_err(|e| {
        let col = e.column.saturating_sub(1);
        anyhow::anyhow!("{e}\n  {text}\n  {}^", " ".repeat(col))
    })
}

/// Output formats of `kaudit query`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns: time, user, verb, object, code.
    Table,
    /// Table plus source IP, stage, cluster, user agent and auditID.
    Wide,
    /// The exact stored event bytes, one per line.
    Jsonl,
    /// One JSON array of the events.
    Json,
    /// The wide columns as CSV.
    Csv,
}

/// `kaudit query`.
#[derive(clap::Args)]
pub struct QueryArgs {
    /// The query, e.g. `verb=delete resource=secrets ns=prod` (empty: everything).
    #[arg(default_value = "")]
    pub query: String,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Most events to print (0: all); more than a page is fetched page by page.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Events fetched per page while printing (a test knob).
    #[arg(long, default_value_t = kaudit_index::search::MAX_LIMIT, hide = true)]
    pub page_size: usize,
    /// Oldest first.
    #[arg(long)]
    pub reverse: bool,
    /// Keep printing new matching events as they are stored.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Continue after this cursor (printed on stderr when a page is full).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Output format; jsonl when stdout is not a terminal.
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<Format>,
    /// Answer from ClickHouse (every node's events) instead of the local
    /// store: a `http(s)://` url (default database and prefix) or a serve
    /// config file whose `store.clickhouse` names the tables. With
    /// --follow, new events of every node are printed as they are shipped.
    #[arg(long, value_name = "URL|CONFIG")]
    pub clickhouse: Option<String>,
}

/// The ClickHouse tables `target` names: a `http(s)://` url (defaults for
/// the rest) or a serve config file with `store.clickhouse`.
pub(crate) fn clickhouse_config(
    target: &str,
) -> anyhow::Result<kaudit_clickhouse::ClickHouseConfig> {
    if target.starts_with("http://") || target.starts_with("https://") {
        return Ok(kaudit_clickhouse::ClickHouseConfig::new(target));
    }
    kaudit_server::config::ServerConfig::load(Some(std::path::Path::new(target)), std::env::vars())?
        .store
        .clickhouse
        .ok_or_else(|| anyhow::anyhow!("{target}: no store.clickhouse in this config"))
}

/// Where `kaudit query` reads: the local store (with its index) or the
/// shared ClickHouse tables.
enum Source {
    Local(std::sync::Arc<Store>, Box<EmbeddedBackend>),
    ClickHouse(Box<kaudit_clickhouse::ClickHouseBackend>),
}

impl Source {
    fn backend(&self) -> &dyn SearchBackend {
        match self {
            Source::Local(_, b) => b.as_ref(),
            Source::ClickHouse(b) => b.as_ref(),
        }
    }
}

/// `kaudit query`.
pub fn query(a: QueryArgs) -> anyhow::Result<ExitCode> {
    let q = compile(&a.query)?;
    let (since, until) = a.time.bounds()?;
    let source = match &a.clickhouse {
        Some(target) => {
            let cfg = clickhouse_config(target)?;
            Source::ClickHouse(Box::new(
                kaudit_clickhouse::ClickHouseBackend::open(&cfg)
                    .with_context(|| format!("--clickhouse {target}"))?,
            ))
        }
        None => {
            let t0 = Instant::now();
            let store = std::sync::Arc::new(a.data.open()?);
            let t1 = t0.elapsed();
            let backend =
                EmbeddedBackend::for_query(&a.data.data, store.clone(), &q, &Needs::default())?;
            if std::env::var_os("KAUDIT_TIMING").is_some() {
                eprintln!("open store {t1:?}, index {:?}", t0.elapsed() - t1);
            }
            Source::Local(store, Box::new(backend))
        }
    };
    let backend = source.backend();
    let format = a.output.unwrap_or(if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Jsonl
    });
    let cursor = a.cursor.as_deref().map(Cursor::parse).transpose()?;
    let req = SearchRequest {
        query: q.clone(),
        since,
        until,
        limit: a.page_size,
        cursor,
        reverse: a.reverse,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // Pages are printed as they come, so any --limit streams in bounded memory.
    let mut first = true;
    let mut failed = None;
    if format == Format::Json {
        out.write_all(b"[")?;
    }
    let walked = search_pages(backend, &req, a.limit as u64, a.page_size, &mut |hits| {
        let printed = print_hits(&mut out, format, &hits, first, !first)
            .and_then(|()| out.flush().map_err(anyhow::Error::from));
        first = false;
        match printed {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if format == Format::Json {
        out.write_all(b"]\n")?;
    }
    out.flush()?;
    if let Some(c) = walked.next {
        if !a.follow {
            eprintln!("more results: --cursor {}", c.encode());
        }
    }
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    let mut next = match &source {
        Source::Local(store, _) => kaudit_index::FollowPosition::at(store.len()),
        // Per node: each node's rows ship on their own schedule.
        Source::ClickHouse(b) => b.follow_end()?,
    };
    let ch = match source {
        Source::ClickHouse(b) => Some(b),
        Source::Local(..) => None,
    };
    eprintln!("following new events (Ctrl-C to stop)");
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let mut hits = Vec::new();
        let mut take = |h| {
            hits.push(h);
            true
        };
        next = match &ch {
            Some(b) => b.follow(&q, since, until, &next, &mut take)?,
            None => {
                // A read-only store sees new records when opened again.
                let backend = EmbeddedBackend::unindexed(std::sync::Arc::new(a.data.open()?));
                backend.follow(&q, since, until, &next, &mut take)?
            }
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if format == Format::Json {
            out.write_all(b"[")?;
        }
        print_hits(&mut out, format, &hits, false, false)?;
        if format == Format::Json {
            out.write_all(b"]\n")?;
        }
        out.flush()?;
    }
}

/// Prints hits; for `Json` only the items of the array (the caller writes
/// the brackets), `more` when items were printed before these.
fn print_hits(
    out: &mut dyn Write,
    format: Format,
    hits: &[Hit],
    header: bool,
    more: bool,
) -> anyhow::Result<()> {
    match format {
        Format::Jsonl => {
            for h in hits {
                out.write_all(&h.event)?;
                out.write_all(b"\n")?;
            }
        }
        Format::Json => {
            for (i, h) in hits.iter().enumerate() {
                if i > 0 || more {
                    out.write_all(b",\n")?;
                }
                out.write_all(&h.event)?;
            }
        }
        Format::Table | Format::Wide | Format::Csv => {
            let wide = format != Format::Table;
            let mut rows: Vec<Vec<String>> = Vec::new();
            if header {
                let mut h = vec!["TIME", "USER", "VERB", "OBJECT", "CODE"];
                if wide {
                    h.extend(["IP", "STAGE", "CLUSTER", "USERAGENT", "AUDITID"]);
                }
                rows.push(h.into_iter().map(String::from).collect());
            }
            for h in hits {
                let Ok(ev) = Event::from_json(&h.event) else {
                    continue;
                };
                let d = ev.doc();
                let object = match &d.object_ref {
                    Some(o) => {
                        let mut s = o.resource.clone();
                        if !o.namespace.is_empty() {
                            s = format!("{s}/{}", o.namespace);
                        }
                        if !o.name.is_empty() {
                            s = format!("{s}/{}", o.name);
                        }
                        if !o.subresource.is_empty() {
                            s = format!("{s}:{}", o.subresource);
                        }
                        s
                    }
                    None => d.request_uri.clone(),
                };
                let mut r = vec![
                    MicroTime(h.time).to_string(),
                    d.user.username.clone(),
                    d.verb.clone(),
                    object,
                    ev.response_code()
                        .map(|c| c.to_string())
                        .unwrap_or_default(),
                ];
                if wide {
                    r.extend([
                        d.source_ips.join(","),
                        ev.stage().as_str().to_string(),
                        h.cluster.clone(),
                        d.user_agent.clone(),
                        d.audit_id.clone(),
                    ]);
                }
                rows.push(r);
            }
            if format == Format::Csv {
                for r in rows {
                    let cells: Vec<String> = r.iter().map(|c| csv_cell(c)).collect();
                    writeln!(out, "{}", cells.join(","))?;
                }
            } else {
                print_table(out, &rows)?;
            }
        }
    }
    Ok(())
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_string()
    }
}

fn print_table(out: &mut dyn Write, rows: &[Vec<String>]) -> anyhow::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count().min(60));
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let c: String = c.chars().take(60).collect();
            if i + 1 == r.len() {
                line.push_str(&c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Output formats of `kaudit stats`, `history` and `rbac`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// Human-readable.
    Table,
    /// JSON.
    Json,
}

/// `kaudit stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// Which events (empty: all).
    #[arg(default_value = "")]
    pub query: String,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Group by these fields, comma-separated (e.g. user,verb).
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// Keep the N largest groups (0: all).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Time histogram bucket, e.g. 1m, 5m, 1h.
    #[arg(long)]
    pub every: Option<String>,
    /// Latency percentiles (stageTimestamp - requestReceivedTimestamp) per group.
    #[arg(long)]
    pub latency: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: ReportFormat,
}

/// Parses a duration like `90s`, `5m`, `1h`, `1d` into microseconds.
pub fn parse_every(s: &str) -> anyhow::Result<i64> {
    let t = parse_time_bound(s, MicroTime(0)).map_err(|e| anyhow::anyhow!("--every: {e}"))?;
    let d = -t.micros();
    if d <= 0 {
        bail!("--every {s:?}: want a positive duration such as 1m, 5m or 1h");
    }
    Ok(d)
}

fn parse_fields(names: &[String]) -> anyhow::Result<Vec<Field>> {
    names
        .iter()
        .filter(|n| !n.trim().is_empty())
        .map(|n| {
            Field::parse(n.trim()).ok_or_else(|| {
                let hint = Field::suggest(n.trim())
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                anyhow::anyhow!("unknown field {n:?}{hint}")
            })
        })
        .collect()
}

/// Builds a stats request from CLI-style arguments (shared with the API).
pub fn stats_request(
    query: &str,
    since: Option<i64>,
    until: Option<i64>,
    by: &[String],
    top: usize,
    every: Option<&str>,
    latency: bool,
) -> anyhow::Result<StatsRequest> {
    Ok(StatsRequest {
        query: compile(query)?,
        since,
        until,
        by: parse_fields(by)?,
        top,
        every: every.map(parse_every).transpose()?,
        latency,
    })
}

/// `kaudit stats`.
pub fn stats(a: StatsArgs) -> anyhow::Result<ExitCode> {
    let (since, until) = a.time.bounds()?;
    let req = stats_request(
        &a.query,
        since,
        until,
        &a.by,
        a.top,
        a.every.as_deref(),
        a.latency,
    )?;
    let store = std::sync::Arc::new(a.data.open()?);
    let extra = Needs {
        dict: req.by.iter().filter_map(Index::dict_slot).collect(),
        hash: Vec::new(),
        latency: req.latency,
    };
    let backend = EmbeddedBackend::for_query(&a.data.data, store, &req.query, &extra)?;
    let report = backend.stats(&req)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match a.output {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        ReportFormat::Table => print_stats(&mut out, &report, req.every.is_some())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(us: u32) -> String {
    format!("{:.1}ms", f64::from(us) / 1000.0)
}

fn print_stats(out: &mut dyn Write, r: &StatsReport, histogram: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut head = Vec::new();
    if histogram {
        head.push("TIME".to_string());
    }
    head.extend(r.by.iter().map(|b| b.to_uppercase()));
    head.push("COUNT".into());
    let lat = r.rows.iter().any(|x| x.latency.is_some());
    if lat {
        head.extend(["P50".into(), "P90".into(), "P99".into()]);
    }
    rows.push(head);
    for row in &r.rows {
        let mut line = Vec::new();
        if let Some(b) = row.bucket {
            line.push(MicroTime(b).to_string());
        }
        line.extend(row.key.iter().map(|k| {
            if k.is_empty() {
                "-".to_string()
            } else {
                k.clone()
            }
        }));
        line.push(row.count.to_string());
        if lat {
            match row.latency {
                Some(l) => line.extend([ms(l.p50), ms(l.p90), ms(l.p99)]),
                None => line.extend(["-".into(), "-".into(), "-".into()]),
            }
        }
        rows.push(line);
    }
    print_table(out, &rows)?;
    writeln!(out, "{} matching events", r.total)?;
    Ok(())
}

/// `kaudit reindex`.
#[derive(clap::Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub data: DataArgs,
}

/// `kaudit reindex`: rebuilds the search index from the store.
pub fn reindex(a: ReindexArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open()?;
    let t = Instant::now();
    let built = kaudit_index::backend::rebuild(&a.data.data, &store).with_context(|| {
        "the index is being maintained by another kaudit process (stop `kaudit serve` first)"
    })?;
    let (n, bytes) = (built.records, built.disk_bytes);
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "indexed {n} records in {secs:.2}s ({:.0} records/s); index {} bytes ({:.1} B/record)",
        n as f64 / secs.max(1e-9),
        bytes,
        bytes as f64 / (n.max(1)) as f64
    );
    Ok(ExitCode::SUCCESS)
}

/// `kaudit history`.
#[derive(clap::Args)]
pub struct HistoryArgs {
    /// The object: RESOURCE/NAMESPACE/NAME (deployments/prod/web) or RESOURCE/NAME (clusterrolebindings/admin).
    pub object: Option<String>,
    /// A user's activity grouped into sessions (a pause over 30 minutes starts a new one).
    #[arg(long, conflicts_with = "object")]
    pub user: Option<String>,
    /// Show only the newest N events on the object (still printed oldest
    /// first; their diffs still start from the version before them).
    #[arg(long, value_name = "N", default_value_t = kaudit_index::history::MAX_HISTORY)]
    pub limit: usize,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub time: TimeArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: ReportFormat,
}

fn backend_for(data: &DataArgs, store: Store, query: &Query) -> anyhow::Result<EmbeddedBackend> {
    let store = std::sync::Arc::new(store);
    Ok(EmbeddedBackend::for_query(
        &data.data,
        store,
        query,
        &Needs::default(),
    )?)
}

/// `kaudit history`.
pub fn history(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    use kaudit_index::history::{
        object_history, user_sessions, HistoryRequest, Target, MAX_HISTORY,
    };
    let (since, until) = a.time.bounds()?;
    let store = a.data.open()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let Some(user) = &a.user {
        let q = compile(&format!("user={}", serde_json::to_string(user)?))?;
        let backend = backend_for(&a.data, store, &q)?;
        let sessions = user_sessions(&backend, user, since, until, None)?;
        if a.output == ReportFormat::Json {
            serde_json::to_writer_pretty(&mut out, &sessions)?;
            writeln!(out)?;
            return Ok(ExitCode::SUCCESS);
        }
        for (i, s) in sessions.iter().enumerate() {
            let mins = (s.end - s.start) as f64 / 60e6;
            writeln!(
                out,
                "session {}: {} .. {} ({mins:.0} min), {} requests, {} denied",
                i + 1,
                MicroTime(s.start),
                MicroTime(s.end),
                s.requests,
                s.denied
            )?;
            let top = |m: &std::collections::BTreeMap<String, u64>| {
                let mut v: Vec<_> = m.iter().collect();
                v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                v.iter()
                    .take(8)
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            writeln!(out, "  verbs: {}", top(&s.verbs))?;
            writeln!(out, "  resources: {}", top(&s.resources))?;
            let join = |s: &std::collections::BTreeSet<String>| {
                s.iter().cloned().collect::<Vec<_>>().join(", ")
            };
            writeln!(out, "  namespaces: {}", join(&s.namespaces))?;
            writeln!(
                out,
                "  clusters: {}  ips: {}",
                join(&s.clusters),
                join(&s.ips)
            )?;
        }
        if sessions.is_empty() {
            writeln!(out, "no events for user {user:?}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(object) = &a.object else {
        bail!("give an object (RESOURCE/NAMESPACE/NAME) or --user U");
    };
    let target = Target::parse(object)?;
    let backend = backend_for(&a.data, store, &target.query()?)?;
    if a.limit == 0 || a.limit > MAX_HISTORY {
        bail!("--limit must be between 1 and {MAX_HISTORY}");
    }
    let req = HistoryRequest {
        since,
        until,
        before: None,
        limit: a.limit,
        budget: None,
    };
    let mut entries = object_history(&backend, &target, &req)?.entries;
    entries.reverse();
    if a.output == ReportFormat::Json {
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    for e in &entries {
        let sub = if e.subresource.is_empty() {
            String::new()
        } else {
            format!(" /{}", e.subresource)
        };
        writeln!(
            out,
            "{}  {:<16} {:<8}{sub} {:<4} {}  [{} {}]",
            MicroTime(e.time),
            e.stage,
            e.verb,
            e.code.map(|c| c.to_string()).unwrap_or_default(),
            e.user,
            e.cluster,
            e.audit_id
        )?;
        if let Some(changes) = &e.changes {
            for c in changes {
                match c {
                    kaudit_index::diff::Change::Added { path, value } => {
                        writeln!(out, "    + {path}: {value}")?
                    }
                    kaudit_index::diff::Change::Removed { path, value } => {
                        writeln!(out, "    - {path}: {value}")?
                    }
                    kaudit_index::diff::Change::Changed { path, from, to } => {
                        writeln!(out, "    ~ {path}: {from} -> {to}")?
                    }
                }
            }
        }
    }
    if entries.is_empty() {
        writeln!(out, "no events on {object}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `kaudit rbac`.
#[derive(clap::Args)]
pub struct RbacArgs {
    /// The username (service accounts as system:serviceaccount:NS:NAME).
    #[arg(long)]
    pub user: String,
    /// Extra filter, e.g. `cluster=prod-eu-west-1`.
    #[arg(default_value = "")]
    pub query: String,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub time: TimeArgs,
    /// List the object names seen in each rule (resourceNames).
    #[arg(long)]
    pub resource_names: bool,
}

/// `kaudit rbac`.
pub fn rbac(a: RbacArgs) -> anyhow::Result<ExitCode> {
    use kaudit_index::rbac::{generate, RbacRequest};
    let (since, until) = a.time.bounds()?;
    let store = a.data.open()?;
    let q = compile(&format!("user={}", serde_json::to_string(&a.user)?))?;
    compile(&a.query)?;
    let backend = backend_for(&a.data, store, &q)?;
    let report = generate(
        &backend,
        &RbacRequest {
            user: a.user.clone(),
            filter: a.query.clone(),
            since,
            until,
            resource_names: a.resource_names,
            budget: None,
        },
    )?;
    print!("{}", report.yaml);
    eprintln!(
        "# {} allowed requests replayed, {} denied left out",
        report.requests, report.denied
    );
    if report.requests == 0 {
        eprintln!(
            "# no allowed requests by {:?} in the period: nothing to grant",
            a.user
        );
    }
    Ok(ExitCode::SUCCESS)
}
