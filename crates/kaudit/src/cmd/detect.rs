//! Detection commands: `kaudit detect` runs Falco or Sigma rules over audit
//! events (files, stdin); `kaudit rules test` checks alert counts for CI;
//! `kaudit rules check` validates rules files and lists what they hold.

use anyhow::Context;
use kaudit_event::reader::{EventReader, ReadError, ReaderOptions};
use kaudit_rules::{Engine, EngineBuilder, EngineOptions, LoadReport, MatchMode};
use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// How alerts are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per alert: `<time>: <Priority> <output>` (Falco's text form).
    Text,
    /// One Falco JSON object per line (falcosidekick-compatible).
    Json,
}

/// Arguments of `kaudit detect`.
#[derive(clap::Args)]
#[command(after_help = "EXAMPLES:\n  \
    kaudit detect audit.log                                   # built-in rules\n  \
    kaudit detect --rules k8s_audit_rules.yaml --rules my_overrides.yaml -o json audit.log.gz\n  \
    kubectl logs ... | kaudit detect --rules sigma/kubernetes_audit_exec_into_container.yml -\n\n\
    Rules files are Falco rules files (source k8s_audit; other sources load and are skipped)\n\
    or Sigma rules (logsource product kubernetes, service audit), loaded in order. Without\n\
    --rules the built-in kaudit ruleset is used. An input line that is not an audit event is\n\
    reported on stderr and skipped. A rules file error exits with status 2.")]
pub struct Args {
    /// Rules file (Falco or Sigma); repeat to load several, in order.
    #[arg(short = 'r', long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Input files (`-` for stdin, the default); JSON lines, .gz, EventList documents.
    inputs: Vec<PathBuf>,
    /// Run over the store in DIR instead of files (retroactive detection).
    #[arg(long, value_name = "DIR", conflicts_with = "inputs")]
    data: Option<PathBuf>,
    /// Run over what the server with this config stores (retroactive
    /// detection): every node's events in ClickHouse when the config sets
    /// `store.clickhouse`, else the store in the config's `data` (or --data).
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "inputs")]
    config: Option<PathBuf>,
    /// With --data or --config: only events received in this last span (e.g. 30d, 12h, 45m).
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// With --data (or --config without ClickHouse): key to read sealed (encrypted) segments.
    #[arg(long, value_name = "FILE")]
    encryption_key: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Raise an alert for every matching rule, not only the first (Falco's default).
    #[arg(long)]
    all_matches: bool,
    /// Cluster name reported in each alert as kaudit.cluster.
    #[arg(long, value_name = "NAME", env = "KAUDIT_CLUSTER")]
    cluster: Option<String>,
    /// Do not reproduce the k8saudit plugin's extraction quirks.
    #[arg(long)]
    no_plugin_compat: bool,
}

/// `kaudit rules ...` subcommands.
#[derive(clap::Subcommand)]
pub enum RulesCommand {
    /// Run rules over an events file and check alert counts (for CI).
    #[command(after_help = "EXAMPLE:\n  \
        kaudit rules test my_rules.yaml testdata/exec.jsonl --expect 'Exec or Attach into Pod=1' --exact\n\n\
        Exit status 0 when every expectation holds, 1 otherwise, 2 when the rules do not load.")]
    Test(TestArgs),
    /// Load rules files, report errors with file:line, and list the rules.
    Check(CheckArgs),
}

/// Arguments of `kaudit rules test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Rules file (Falco or Sigma).
    rules: PathBuf,
    /// Events file (`-` for stdin).
    input: PathBuf,
    /// Expected alert count, `Rule Name=N`; repeatable.
    #[arg(long = "expect", value_name = "RULE=N")]
    expect: Vec<String>,
    /// Also fail when a rule not named by --expect raised alerts.
    #[arg(long)]
    exact: bool,
    /// Count every matching rule, not only the first.
    #[arg(long)]
    all_matches: bool,
    /// More rules files loaded after RULES.
    #[arg(short = 'r', long = "rules", value_name = "FILE")]
    more_rules: Vec<PathBuf>,
}

/// Arguments of `kaudit rules check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// Rules files, loaded in order (none: the built-in ruleset).
    files: Vec<PathBuf>,
}

/// Exit status for a rules file that does not load.
const RULES_ERROR: u8 = 2;

fn build(files: &[PathBuf], options: EngineOptions) -> Result<(Engine, LoadReport), String> {
    let mut b = EngineBuilder::new(options);
    if files.is_empty() {
        b.add_default_rules().map_err(|e| e.to_string())?;
    }
    for f in files {
        b.add_file(f).map_err(|e| e.to_string())?;
    }
    b.build().map_err(|e| e.to_string())
}

fn report_load(report: &LoadReport) {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for (title, why) in &report.unmatchable {
        eprintln!("warning: sigma rule {title:?} can never match a raw audit event: {why}");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "kaudit".into())
}

/// Reads events from inputs, calling `f` for each; non-events are reported and skipped.
fn for_each_event(
    inputs: &[PathBuf],
    mut f: impl FnMut(&kaudit_event::Event) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, u64)> {
    let default_input = [PathBuf::from("-")];
    let inputs = if inputs.is_empty() {
        &default_input[..]
    } else {
        inputs
    };
    let (mut events, mut skipped) = (0u64, 0u64);
    for input in inputs {
        let reader = EventReader::open(input, ReaderOptions::default())
            .with_context(|| format!("opening {}", input.display()))?;
        for item in reader {
            match item {
                Ok(ev) => {
                    events += 1;
                    f(&ev)?;
                }
                Err(ReadError::Event {
                    location, error, ..
                }) => {
                    skipped += 1;
                    eprintln!("{location}: data not recognized as a k8s audit event: {error}");
                }
                Err(e @ ReadError::LineTooLong { .. }) => {
                    skipped += 1;
                    eprintln!("{e}: data not recognized as a k8s audit event");
                }
                Err(e) => return Err(anyhow::anyhow!(e)),
            }
        }
    }
    Ok((events, skipped))
}

/// Parses `30d`, `12h`, `45m`, `90s`, `2w` into microseconds.
fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let d = kaudit_units::parse_duration(s)?;
    Ok(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Runs the rules over events read back from the store (retroactive
/// detection), each with the cluster it was stored under.
fn from_store(
    dir: &std::path::Path,
    since_micros: Option<i64>,
    encryption_key: Option<PathBuf>,
    mut f: impl FnMut(&kaudit_event::Event, &str) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, u64)> {
    let store = kaudit_store::Store::open(
        dir,
        kaudit_store::StoreOptions {
            read_only: true,
            encryption_key,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening the store in {}", dir.display()))?;
    let cutoff = since_micros.map(|d| kaudit_event::MicroTime::now().micros().saturating_sub(d));
    let (mut events, mut skipped) = (0u64, 0u64);
    let mut failure: Option<anyhow::Error> = None;
    store
        .read(0..store.len(), &mut |seq, leaf| {
            if cutoff.is_some_and(|c| leaf.received.micros() < c) {
                return true;
            }
            match kaudit_event::Event::from_json(leaf.event) {
                Ok(ev) => {
                    events += 1;
                    if let Err(e) = f(&ev, leaf.cluster) {
                        failure = Some(e);
                        return false;
                    }
                }
                Err(e) => {
                    skipped += 1;
                    eprintln!(
                        "{}: record {seq}: data not recognized as a k8s audit event: {e}",
                        dir.display()
                    );
                }
            }
            true
        })
        .with_context(|| format!("reading the store in {}", dir.display()))?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((events, skipped))
}

/// Runs the rules over every node's events in ClickHouse (a retro-hunt
/// when `store.clickhouse` is configured), each with its cluster.
fn from_clickhouse(
    cfg: &kaudit_clickhouse::ClickHouseConfig,
    since_micros: Option<i64>,
    mut f: impl FnMut(&kaudit_event::Event, &str) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, u64)> {
    let backend = kaudit_clickhouse::ClickHouseBackend::open(cfg)
        .with_context(|| format!("opening the ClickHouse tables at {}", cfg.url))?;
    let cutoff = since_micros.map(|d| kaudit_event::MicroTime::now().micros().saturating_sub(d));
    let (mut events, mut skipped) = (0u64, 0u64);
    let mut failure: Option<anyhow::Error> = None;
    backend
        .for_each_received(cutoff, &mut |g, cluster, raw| {
            match kaudit_event::Event::from_json(raw) {
                Ok(ev) => {
                    events += 1;
                    if let Err(e) = f(&ev, cluster) {
                        failure = Some(e);
                        return false;
                    }
                }
                Err(e) => {
                    skipped += 1;
                    let (node, seq) = kaudit_clickhouse::split_gseq(g);
                    eprintln!(
                        "clickhouse: node {node} record {seq}: data not recognized as a k8s audit event: {e}"
                    );
                }
            }
            true
        })
        .with_context(|| format!("reading events from ClickHouse at {}", cfg.url))?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((events, skipped))
}

/// Runs `kaudit detect`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = EngineOptions {
        plugin_compat: !args.no_plugin_compat,
        cluster: args.cluster.clone(),
    };
    let (engine, report) = match build(&args.rules, options) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(RULES_ERROR));
        }
    };
    report_load(&report);
    let mode = if args.all_matches {
        MatchMode::All
    } else {
        MatchMode::First
    };
    let host = hostname();
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut alerts = 0u64;
    let mut emit = |list: Vec<kaudit_rules::Alert>| -> anyhow::Result<()> {
        for a in list {
            alerts += 1;
            match args.format {
                Format::Text => writeln!(out, "{}", a.to_text())?,
                Format::Json => writeln!(out, "{}", a.to_falco_json(&host))?,
            }
        }
        Ok(())
    };
    let server = match &args.config {
        Some(p) => Some(kaudit_server::config::ServerConfig::load(
            Some(p.as_path()),
            std::env::vars(),
        )?),
        None => None,
    };
    let since = args.since.as_deref().map(parse_duration).transpose()?;
    if since.is_some() && args.data.is_none() && server.is_none() {
        anyhow::bail!(
            "--since needs --data DIR or --config FILE (a retro-hunt over stored events)"
        );
    }
    let clickhouse = server.as_ref().and_then(|c| c.store.clickhouse.clone());
    let data = args.data.clone().or(server.map(|c| c.data));
    let (events, skipped) = match (clickhouse, &data) {
        (Some(ch), _) => from_clickhouse(&ch, since, |ev, cluster| {
            emit(engine.evaluate_in(ev, Some(cluster), mode))
        })?,
        (None, Some(dir)) => from_store(dir, since, args.encryption_key.clone(), |ev, cluster| {
            emit(engine.evaluate_in(ev, Some(cluster), mode))
        })?,
        (None, None) => for_each_event(&args.inputs, |ev| emit(engine.evaluate(ev, mode)))?,
    };
    out.flush()?;
    eprintln!(
        "kaudit detect: {events} events, {alerts} alerts, {} rules{}",
        engine.rule_count(),
        if skipped > 0 {
            format!(", {skipped} inputs not recognized as audit events (skipped)")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `kaudit rules ...`.
pub fn rules(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCommand::Test(a) => test(a),
        RulesCommand::Check(a) => check(a),
    }
}

fn parse_expect(s: &str) -> anyhow::Result<(String, u64)> {
    let (name, n) = s
        .rsplit_once('=')
        .with_context(|| format!("--expect {s:?}: want 'Rule Name=N'"))?;
    let n = n
        .trim()
        .parse()
        .with_context(|| format!("--expect {s:?}: {n:?} is not a count"))?;
    Ok((name.trim().to_string(), n))
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let expects: Vec<(String, u64)> = a
        .expect
        .iter()
        .map(|s| parse_expect(s))
        .collect::<anyhow::Result<_>>()?;
    let mut files = vec![a.rules.clone()];
    files.extend(a.more_rules.iter().cloned());
    let (engine, report) = match build(&files, EngineOptions::default()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(RULES_ERROR));
        }
    };
    report_load(&report);
    let known: std::collections::HashSet<&str> = engine.rule_names().collect();
    for (name, _) in &expects {
        if !known.contains(name.as_str()) {
            eprintln!("error: --expect names rule {name:?}, which the rules do not define (or is disabled)");
            return Ok(ExitCode::from(RULES_ERROR));
        }
    }
    let mode = if a.all_matches {
        MatchMode::All
    } else {
        MatchMode::First
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let (events, _) = for_each_event(std::slice::from_ref(&a.input), |ev| {
        for al in engine.evaluate(ev, mode) {
            *counts.entry(al.rule).or_insert(0) += 1;
        }
        Ok(())
    })?;
    let mut ok = true;
    for (name, want) in &expects {
        let got = counts.get(name).copied().unwrap_or(0);
        let status = if got == *want { "ok" } else { "FAIL" };
        ok &= got == *want;
        println!("{status:4} {name}: expected {want}, got {got}");
    }
    for (name, got) in &counts {
        if !expects.iter().any(|(n, _)| n == name) {
            let status = if a.exact { "FAIL" } else { "info" };
            ok &= !a.exact;
            println!("{status:4} {name}: {got} alerts (not expected)");
        }
    }
    println!("{} events; {}", events, if ok { "PASS" } else { "FAIL" });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let (engine, report) = match build(&a.files, EngineOptions::default()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(RULES_ERROR));
        }
    };
    report_load(&report);
    for (name, prio, _) in engine.rules_info() {
        println!("{prio:<13} {name}");
    }
    for (title, why) in &report.unmatchable {
        println!("{:<13} {title} (never matches: {why})", "unmatchable");
    }
    eprintln!(
        "{} rules compiled, {} fields per event",
        engine.rule_count(),
        engine.field_count()
    );
    Ok(ExitCode::SUCCESS)
}

/// `kaudit alerts`: the alerts live detection kept (newest first).
#[derive(clap::Args)]
#[command(
    after_help = "EXAMPLES:\n  kaudit alerts --since 1h\n  kaudit alerts --rule 'Attach/Exec Pod' -o json | jq .output_fields"
)]
pub struct AlertsArgs {
    /// Data directory of the server.
    #[arg(long, env = "KAUDIT_DATA", default_value = "./kaudit-data")]
    data: PathBuf,
    /// Only alerts for events at or after this time (2h, 7d, RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only this rule.
    #[arg(long)]
    rule: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Output format; json (one object per line) when stdout is not a terminal.
    #[arg(short = 'o', long, value_enum)]
    output: Option<AlertFormat>,
    /// The store's encryption key file: with encryption at rest on, alerts
    /// are sealed with it and cannot be read without it.
    #[arg(long, env = "KAUDIT_ENCRYPTION_KEY")]
    encryption_key: Option<PathBuf>,
}

/// Output formats of `kaudit alerts`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertFormat {
    /// Aligned columns: time, priority, cluster, rule, auditID.
    Table,
    /// One JSON object per line, as kept.
    #[value(alias = "jsonl")]
    Json,
    /// `<time>: <Priority> <output>`, Falco's text form.
    Text,
}

/// Runs `kaudit alerts`.
pub fn alerts(a: AlertsArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let since = a
        .since
        .as_deref()
        .map(|s| kaudit_query::parse_time_bound(s, kaudit_event::MicroTime::now()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let out = a.output.unwrap_or(if std::io::stdout().is_terminal() {
        AlertFormat::Table
    } else {
        AlertFormat::Json
    });
    let cipher = match &a.encryption_key {
        Some(k) => Some(std::sync::Arc::new(
            kaudit_store::crypt::Cipher::load(k)
                .with_context(|| format!("--encryption-key {}", k.display()))?,
        )),
        None => None,
    };
    let log = kaudit_detect::AlertLog::new(&a.data).sealed(cipher);
    let picked = log.query(&kaudit_detect::AlertQuery {
        since,
        rule: a.rule,
        priority: None,
        limit: a.limit,
    })?;
    match out {
        AlertFormat::Json => {
            for x in picked {
                println!("{}", serde_json::to_string(&x)?);
            }
        }
        AlertFormat::Text => {
            for x in picked {
                println!("{}: {} {}", x.time, x.priority, x.output);
            }
        }
        AlertFormat::Table => {
            println!(
                "{:<28} {:<10} {:<16} {:<40} AUDIT ID",
                "TIME", "PRIORITY", "CLUSTER", "RULE"
            );
            for x in picked {
                println!(
                    "{:<28} {:<10} {:<16} {:<40} {}",
                    x.time, x.priority, x.cluster, x.rule, x.audit_id
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
