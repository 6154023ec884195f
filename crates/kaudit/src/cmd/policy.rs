//! `kaudit policy`: lint, explain, simulate and apply audit.k8s.io/v1 policies,
//! so a policy can be tested on recorded traffic before it is rolled out.

use anyhow::{bail, Context};
use kaudit_event::reader::{EventReader, ReaderOptions};
use kaudit_event::Event;
use kaudit_policy::simulate::{Report, Simulator};
use kaudit_policy::{
    lint, load_policy_file, ApplyOptions, CompiledPolicy, LoadedPolicy, Outcome, PolicyApplier,
    PolicyError, RequestAttributes, Severity, UserAttrs,
};
use serde_json::json;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The policy subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Check a policy: validation errors (exit 1), then warnings with the rule index and why.
    #[command(
        after_help = "EXAMPLES:\n  kaudit policy lint /etc/kubernetes/audit-policy.yaml\n  kaudit policy lint -o json policy.yaml | jq ."
    )]
    Lint(LintArgs),
    /// Show which rule decides each event (or a request given by flags), and what is kept.
    #[command(
        after_help = "EXAMPLES:\n  kaudit policy explain policy.yaml audit.log\n  kaudit policy explain policy.yaml --user alice --verb get --resource secrets --namespace default\n  kaudit policy explain policy.yaml --verb get --path /healthz"
    )]
    Explain(ExplainArgs),
    /// Replay recorded events (ideally logged at RequestResponse) through a policy: kept/dropped per rule, noisiest requests, size per day.
    #[command(
        after_help = "EXAMPLES:\n  kaudit policy simulate policy.yaml audit.log audit-1.log.gz\n  kaudit policy simulate new.yaml --compare current.yaml audit.log"
    )]
    Simulate(SimulateArgs),
    /// Write the events a policy keeps (stripped and redacted) as JSON lines.
    #[command(
        after_help = "EXAMPLES:\n  kaudit policy apply policy.yaml audit.log > filtered.jsonl"
    )]
    Apply(ApplyArgs),
}

/// Output formats; the default is `table` on a terminal and `json` (JSON
/// lines) when piped.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// Human-readable text.
    Table,
    /// JSON lines.
    Json,
    /// YAML.
    Yaml,
}

fn format_or_default(f: Option<Format>) -> Format {
    f.unwrap_or_else(|| {
        if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        }
    })
}

/// Arguments of `kaudit policy lint`.
#[derive(clap::Args)]
pub struct LintArgs {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// Output format [default: table on a terminal, json when piped].
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<Format>,
    /// Exit 2 when there are warnings (for CI).
    #[arg(long)]
    strict: bool,
    /// Also check the CIS Kubernetes Benchmark audit items (3.2.1, 3.2.2): rules exist,
    /// Secrets/ConfigMaps/TokenReviews audited at Metadata (bodies not logged), exec/attach/port-forward audited.
    #[arg(long)]
    cis: bool,
    /// With --cis: kube-apiserver's command line or static-pod manifest, whose audit flags are
    /// checked (--audit-log-maxage>=30, -maxbackup>=10, -maxsize>=100, --audit-policy-file, a log or webhook backend).
    #[arg(long, requires = "cis")]
    apiserver: Option<PathBuf>,
}

/// Arguments of `kaudit policy explain`.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// Event files (`-` for stdin); without them the request is taken from the flags.
    events: Vec<PathBuf>,
    /// Authenticated user name.
    #[arg(long)]
    user: Option<String>,
    /// User group (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Verb (get, list, watch, create, update, patch, delete, ...).
    #[arg(long)]
    verb: Option<String>,
    /// Namespace ("" or absent for cluster-scoped).
    #[arg(long, default_value = "")]
    namespace: String,
    /// Resource (pods); makes it a resource request.
    #[arg(long)]
    resource: Option<String>,
    /// Subresource (log, status, exec).
    #[arg(long, default_value = "")]
    subresource: String,
    /// Object name.
    #[arg(long, default_value = "")]
    name: String,
    /// API group ("" for core).
    #[arg(long, default_value = "")]
    api_group: String,
    /// URL path (for non-resource requests such as /healthz).
    #[arg(long, default_value = "")]
    path: String,
    /// Output format [default: table on a terminal, json when piped].
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<Format>,
    /// Skip invalid events (reported on stderr) instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
}

/// Arguments of `kaudit policy simulate`.
#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// Event files (`-` for stdin), ideally logged at RequestResponse.
    #[arg(required = true)]
    events: Vec<PathBuf>,
    /// Second policy to compare side by side.
    #[arg(long, value_name = "OTHER_POLICY")]
    compare: Option<PathBuf>,
    /// How many (user, verb, resource) triples to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Do not redact secrets (sizes then reflect unredacted bodies).
    #[arg(long)]
    no_redact: bool,
    /// Output format [default: table on a terminal, json when piped].
    #[arg(short = 'o', long = "output", value_enum)]
    output: Option<Format>,
    /// Skip invalid events (reported on stderr) instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
}

/// Arguments of `kaudit policy apply`.
#[derive(clap::Args)]
pub struct ApplyArgs {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// Event files (`-` for stdin).
    #[arg(required = true)]
    events: Vec<PathBuf>,
    /// Write to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Do not redact secrets.
    #[arg(long)]
    no_redact: bool,
    /// Skip invalid events (reported on stderr) instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
}

/// Runs a policy subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Lint(a) => run_lint(a),
        Command::Explain(a) => run_explain(a),
        Command::Simulate(a) => run_simulate(a),
        Command::Apply(a) => run_apply(a),
    }
}

fn load(path: &Path) -> anyhow::Result<LoadedPolicy> {
    let loaded = load_policy_file(path)?;
    for w in &loaded.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(loaded)
}

/// Rule index from a field path such as `rules[3].level`.
fn rule_of_path(path: &str) -> Option<usize> {
    path.strip_prefix("rules[")?.split(']').next()?.parse().ok()
}

fn run_lint(a: LintArgs) -> anyhow::Result<ExitCode> {
    let format = format_or_default(a.output);
    let mut rows: Vec<serde_json::Value> = Vec::new();
    let loaded = match load_policy_file(&a.policy) {
        Ok(l) => l,
        Err(PolicyError::Invalid { errors, .. }) => {
            for e in errors {
                rows.push(json!({"severity": "error", "rule": rule_of_path(&e.path), "check": "validation", "message": e.to_string()}));
            }
            print_findings(&a.policy, &rows, format)?;
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            rows.push(json!({"severity": "error", "rule": null, "check": "load", "message": e.to_string()}));
            print_findings(&a.policy, &rows, format)?;
            return Ok(ExitCode::from(1));
        }
    };
    for w in &loaded.warnings {
        let rule = rule_of_path(w);
        rows.push(
            json!({"severity": "warning", "rule": rule, "check": "unknown-field", "message": w}),
        );
    }
    let mut found = lint(&loaded.policy);
    if a.cis {
        found.extend(kaudit_policy::lint_cis(&loaded.policy));
    }
    if let Some(p) = &a.apiserver {
        let meta = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
        if meta.len() > kaudit_policy::lint::MAX_APISERVER_TEXT as u64 {
            bail!(
                "{}: larger than {} bytes",
                p.display(),
                kaudit_policy::lint::MAX_APISERVER_TEXT
            );
        }
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        found.extend(kaudit_policy::lint_apiserver_flags(&text));
    }
    for f in found {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        rows.push(json!({"severity": sev, "rule": f.rule, "check": f.check, "message": f.message}));
    }
    print_findings(&a.policy, &rows, format)?;
    let warnings = rows.iter().any(|r| r["severity"] == "warning");
    Ok(if a.strict && warnings {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_findings(policy: &Path, rows: &[serde_json::Value], format: Format) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Json => {
            for r in rows {
                writeln!(out, "{r}")?;
            }
        }
        Format::Yaml => write!(out, "{}", kaudit_policy::to_yaml(&rows)?)?,
        Format::Table => {
            if rows.is_empty() {
                writeln!(out, "{}: no findings", policy.display())?;
            }
            for r in rows {
                let rule = match r["rule"].as_u64() {
                    Some(i) => format!("rule {i}: "),
                    None => String::new(),
                };
                writeln!(
                    out,
                    "{}: {}: {rule}[{}] {}",
                    r["severity"].as_str().unwrap_or(""),
                    policy.display(),
                    r["check"].as_str().unwrap_or(""),
                    r["message"].as_str().unwrap_or("")
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Iterates events from files, stopping at the first invalid one unless
/// `skip_invalid` (then each is reported on stderr and counted).
fn for_each_event(
    inputs: &[PathBuf],
    skip_invalid: bool,
    mut f: impl FnMut(Event) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut skipped = 0u64;
    for input in inputs {
        let reader = EventReader::open(input, ReaderOptions::default())?;
        for item in reader {
            match item {
                Ok(e) => f(e)?,
                Err(e) if skip_invalid && e.is_recoverable() => {
                    eprintln!("skipped: {e}");
                    skipped += 1;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context("invalid event (use --skip-invalid to skip such events)"))
                }
            }
        }
    }
    if skipped > 0 {
        eprintln!("skipped {skipped} invalid event(s)");
    }
    Ok(skipped)
}

fn run_explain(a: ExplainArgs) -> anyhow::Result<ExitCode> {
    let format = format_or_default(a.output);
    let loaded = load(&a.policy)?;
    let applier = PolicyApplier::new(loaded.policy, ApplyOptions::default());
    let compiled = applier.compiled();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut rows = Vec::new();
    if a.events.is_empty() {
        let Some(verb) = a.verb.as_deref() else {
            bail!(
                "give event files, or a request with --verb and --resource or --path (see --help)"
            );
        };
        if a.resource.is_none() && a.path.is_empty() {
            bail!("a request needs --resource (resource request) or --path (non-resource request)");
        }
        let attrs = RequestAttributes {
            user: a.user.as_deref().map(|name| UserAttrs {
                name,
                groups: &a.groups,
            }),
            verb,
            resource_request: a.resource.is_some(),
            namespace: &a.namespace,
            api_group: &a.api_group,
            resource: a.resource.as_deref().unwrap_or(""),
            subresource: &a.subresource,
            name: &a.name,
            path: &a.path,
        };
        let cfg = compiled.evaluate(&attrs);
        let what = describe_attrs(&attrs);
        rows.push(explain_row(
            compiled,
            "",
            None,
            cfg,
            cfg.level != kaudit_event::Level::None,
            what,
        ));
    } else {
        for_each_event(&a.events, a.skip_invalid, |e| {
            let cfg = compiled.evaluate(&RequestAttributes::from_event(&e));
            let what = describe_attrs(&RequestAttributes::from_event(&e));
            let audit_id = e.audit_id().to_string();
            let stage = e.stage();
            let keep = matches!(applier.apply_config(e, cfg), Outcome::Keep(_));
            let row = explain_row(compiled, &audit_id, Some(stage), cfg, keep, what);
            if format == Format::Json {
                writeln!(out, "{}", row.0)?;
            } else {
                rows.push(row);
            }
            Ok(())
        })?;
    }
    match format {
        Format::Json => {
            for r in &rows {
                writeln!(out, "{}", r.0)?;
            }
        }
        Format::Yaml => {
            let list: Vec<&serde_json::Value> = rows.iter().map(|r| &r.0).collect();
            write!(out, "{}", kaudit_policy::to_yaml(&list)?)?;
        }
        Format::Table => {
            for (row, what, text) in &rows {
                let rule = match row["rule"].as_u64() {
                    Some(i) => format!("rule {i}: {text}"),
                    None => "no rule matched".to_string(),
                };
                match (row["auditID"].as_str(), row["stage"].as_str()) {
                    (Some(id), Some(stage)) if !id.is_empty() => {
                        writeln!(out, "{id} {stage} {what}")?
                    }
                    _ => writeln!(out, "request: {what}")?,
                }
                writeln!(out, "  {rule}")?;
                writeln!(
                    out,
                    "  level {}, omitStages {}, omitManagedFields {} -> {}",
                    row["level"].as_str().unwrap_or(""),
                    row["omitStages"],
                    row["omitManagedFields"],
                    if row["keep"] == true {
                        "kept"
                    } else {
                        "dropped"
                    }
                )?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One explained request: the JSON row, a one-line description, the rule text.
fn explain_row(
    compiled: &CompiledPolicy,
    audit_id: &str,
    stage: Option<kaudit_event::Stage>,
    cfg: kaudit_policy::AuditConfig,
    keep: bool,
    what: String,
) -> (serde_json::Value, String, String) {
    let text = cfg
        .rule
        .and_then(|i| compiled.policy().rules.get(i))
        .map(|r| r.to_json())
        .unwrap_or_default();
    (
        json!({
            "auditID": audit_id,
            "stage": stage.map(|s| s.as_str()),
            "rule": cfg.rule,
            "level": cfg.level.as_str(),
            "omitStages": cfg.omit_stages.names(),
            "omitManagedFields": cfg.omit_managed_fields,
            "keep": keep,
        }),
        what,
        text,
    )
}

fn describe_attrs(a: &RequestAttributes<'_>) -> String {
    let user = a.user.map_or("<no user>", |u| u.name);
    if !a.resource_request {
        return format!("{user} {} {}", a.verb, a.path);
    }
    let mut target = String::new();
    if !a.api_group.is_empty() {
        target.push_str(a.api_group);
        target.push('/');
    }
    target.push_str(a.resource);
    if !a.subresource.is_empty() {
        target.push('/');
        target.push_str(a.subresource);
    }
    if !a.namespace.is_empty() {
        target = format!("{target} -n {}", a.namespace);
    }
    if !a.name.is_empty() {
        target = format!("{target} {}", a.name);
    }
    format!("{user} {} {target}", a.verb)
}

fn run_simulate(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let format = format_or_default(a.output);
    let opts = ApplyOptions {
        redact: !a.no_redact,
    };
    let main = load(&a.policy)?;
    let mut sim = Simulator::new(main.policy, opts.clone());
    let mut other = match &a.compare {
        Some(p) => Some(Simulator::new(load(p)?.policy, opts)),
        None => None,
    };
    for_each_event(&a.events, a.skip_invalid, |e| {
        if let Some(o) = other.as_mut() {
            o.add(e.clone());
        }
        sim.add(e);
        Ok(())
    })?;
    let report = sim.finish(a.top);
    let other = other.map(|o| o.finish(a.top));
    let mut out = BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Json => {
            let v = json!({"policy": a.policy.display().to_string(), "report": report,
                "compare": other.as_ref().map(|r| json!({"policy": a.compare.as_ref().map(|p| p.display().to_string()), "report": r}))});
            writeln!(out, "{v}")?;
        }
        Format::Yaml => {
            let v = json!({"policy": a.policy.display().to_string(), "report": report,
                "compare": other.as_ref().map(|r| json!({"policy": a.compare.as_ref().map(|p| p.display().to_string()), "report": r}))});
            write!(out, "{}", kaudit_policy::to_yaml(&v)?)?;
        }
        Format::Table => {
            if let (Some(o), Some(op)) = (&other, &a.compare) {
                print_comparison(&mut out, &a.policy, &report, op, o)?;
                writeln!(out)?;
            }
            print_report(&mut out, &a.policy, &report)?;
            if let (Some(o), Some(op)) = (&other, &a.compare) {
                writeln!(out)?;
                print_report(&mut out, op, o)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn per_day(r: &Report) -> String {
    match (r.projected_bytes_per_day, r.projected_events_per_day) {
        (Some(b), Some(e)) => format!("{}/day, {:.0} events/day", kaudit_units::format_bytes(b), e),
        _ => "n/a (events span no time)".to_string(),
    }
}

fn print_report(out: &mut impl Write, policy: &Path, r: &Report) -> anyhow::Result<()> {
    writeln!(out, "policy {}", policy.display())?;
    writeln!(
        out,
        "  events: {} in, {} kept ({}), {} dropped; bytes: {} in, {} kept ({}); span {:.1}s; projected {}",
        r.total.events_in,
        r.total.events_kept,
        percent(r.total.events_kept, r.total.events_in),
        r.total.events_dropped,
        r.total.bytes_in,
        r.total.bytes_kept,
        percent(r.total.bytes_kept, r.total.bytes_in),
        r.span_seconds,
        per_day(r)
    )?;
    writeln!(
        out,
        "  {:<8} {:<16} {:>10} {:>10} {:>10} {:>14} {:>14}",
        "RULE", "LEVEL", "EVENTS", "KEPT", "DROPPED", "BYTES IN", "BYTES KEPT"
    )?;
    for rr in &r.rules {
        let rule = rr.rule.map_or("none".to_string(), |i| i.to_string());
        writeln!(
            out,
            "  {:<8} {:<16} {:>10} {:>10} {:>10} {:>14} {:>14}",
            rule,
            rr.level,
            rr.counts.events_in,
            rr.counts.events_kept,
            rr.counts.events_dropped,
            rr.counts.bytes_in,
            rr.counts.bytes_kept
        )?;
    }
    if !r.top.is_empty() {
        writeln!(out, "  noisiest (user, verb, resource) by bytes kept:")?;
        for t in &r.top {
            writeln!(
                out,
                "  {:>14} {:>8} ev  {} {} {}",
                t.counts.bytes_kept, t.counts.events_in, t.user, t.verb, t.resource
            )?;
        }
    }
    Ok(())
}

fn print_comparison(
    out: &mut impl Write,
    a_path: &Path,
    a: &Report,
    b_path: &Path,
    b: &Report,
) -> anyhow::Result<()> {
    let (an, bn) = (a_path.display().to_string(), b_path.display().to_string());
    writeln!(out, "{:<22} {:>28} {:>28}", "", an, bn)?;
    let rows: [(&str, String, String); 5] = [
        (
            "events kept",
            a.total.events_kept.to_string(),
            b.total.events_kept.to_string(),
        ),
        (
            "events dropped",
            a.total.events_dropped.to_string(),
            b.total.events_dropped.to_string(),
        ),
        (
            "bytes kept",
            a.total.bytes_kept.to_string(),
            b.total.bytes_kept.to_string(),
        ),
        (
            "bytes kept / in",
            percent(a.total.bytes_kept, a.total.bytes_in),
            percent(b.total.bytes_kept, b.total.bytes_in),
        ),
        (
            "projected per day",
            a.projected_bytes_per_day
                .map_or("n/a".into(), kaudit_units::format_bytes),
            b.projected_bytes_per_day
                .map_or("n/a".into(), kaudit_units::format_bytes),
        ),
    ];
    for (name, x, y) in rows {
        writeln!(out, "{name:<22} {x:>28} {y:>28}")?;
    }
    Ok(())
}

fn run_apply(a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&a.policy)?;
    let applier = PolicyApplier::new(
        loaded.policy,
        ApplyOptions {
            redact: !a.no_redact,
        },
    );
    let (mut out, tmp): (Box<dyn Write>, Option<(PathBuf, PathBuf)>) = match &a.output {
        Some(path) => {
            let tmp = path.with_extension("kaudit-tmp");
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            (
                Box::new(BufWriter::with_capacity(1 << 20, f)),
                Some((tmp, path.clone())),
            )
        }
        None => (Box::new(BufWriter::new(std::io::stdout().lock())), None),
    };
    let (mut kept, mut dropped) = (0u64, 0u64);
    let result = for_each_event(&a.events, a.skip_invalid, |e| {
        match applier.apply(e) {
            Outcome::Keep(k) => {
                out.write_all(k.bytes())?;
                out.write_all(b"\n")?;
                kept += 1;
            }
            Outcome::Drop(_) => dropped += 1,
        }
        Ok(())
    });
    if let Err(e) = result {
        if let Some((tmp, _)) = &tmp {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    out.flush()?;
    drop(out);
    if let Some((tmp, path)) = tmp {
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    }
    eprintln!("kept {kept} event(s), dropped {dropped}");
    Ok(ExitCode::SUCCESS)
}
