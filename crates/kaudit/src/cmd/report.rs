//! `kaudit report`: compliance evidence an auditor checks offline, and
//! `kaudit report verify`.

use super::store::StoreArgs;
use anyhow::{bail, Context};
use kaudit_event::MicroTime;
use kaudit_index::{EmbeddedBackend, SearchBackend};
use kaudit_report::{bundle, html, Inputs, ReportRequest, Template};
use kaudit_store::note::Verifier25519;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Output forms of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The report JSON (no proofs).
    Json,
    /// A self-contained HTML page that checks its own proofs in the browser.
    Html,
    /// The evidence bundle: one .tar.zst with events, proofs, checkpoints and a signed manifest.
    Bundle,
    /// The HTML printed to PDF with headless Chromium.
    Pdf,
}

/// `kaudit report`.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  kaudit report --period 2026-11 --template pci-dss -o bundle --out evidence.tar.zst\n  kaudit report --since 2026-11-01 --until 2026-11-15 --cluster prod-eu-west-1 -o html --out report.html\n  kaudit report verify evidence.tar.zst --key checkpoint.pub\n\nEvery listed row carries its event's exact bytes and inclusion proof against a signed checkpoint;\ncounts are signed claims (see the report's \"What this report proves\")."
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<ReportCommand>,
    #[command(flatten)]
    store: StoreArgs,
    /// The month to report on (UTC), e.g. 2026-11.
    #[arg(long, conflicts_with_all = ["since", "until"])]
    period: Option<String>,
    /// Start of the period (RFC 3339, a date, or a duration back from now like 30d).
    #[arg(long)]
    since: Option<String>,
    /// End of the period, exclusive (default: now).
    #[arg(long)]
    until: Option<String>,
    /// Only these clusters (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<String>,
    /// Built-in template (pci-dss, soc2, cis) or a template YAML file.
    #[arg(long, default_value = "pci-dss")]
    template: String,
    /// Rows listed per section (the rest are counted as omitted).
    #[arg(long)]
    max_rows: Option<usize>,
    /// Skip the full store verification (which reads every record).
    #[arg(long)]
    no_verify: bool,
    /// Output form.
    #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
    output: Format,
    /// Write here (default: stdout for json and html; report.tar.zst / report.pdf otherwise).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Chromium binary for -o pdf.
    #[arg(long, default_value = "/usr/bin/chromium")]
    chromium: PathBuf,
}

/// `kaudit report verify`.
#[derive(clap::Subcommand)]
enum ReportCommand {
    /// Check an evidence bundle offline: file hashes, signatures, every proof, every row.
    Verify {
        /// The bundle (.tar.zst).
        bundle: PathBuf,
        /// Trusted verifier key (name+id+key text, or a file holding it). Without it the
        /// bundle is checked against its own key, which proves consistency, not origin.
        #[arg(long)]
        key: Option<String>,
    },
}

fn read_key(s: &str) -> anyhow::Result<Verifier25519> {
    let text = if Path::new(s).exists() {
        std::fs::read_to_string(s).with_context(|| format!("reading key {s}"))?
    } else {
        s.to_string()
    };
    Verifier25519::from_text(&text).map_err(|e| anyhow::anyhow!("--key: {e}"))
}

fn time_bound(s: &str, what: &str) -> anyhow::Result<i64> {
    kaudit_query::parse_time_bound(s, MicroTime::now())
        .map(|t| t.micros())
        .map_err(|e| anyhow::anyhow!("{what} {s:?}: {e}"))
}

/// The index columns a report with `template` reads: those of its queries,
/// and the cluster, user and truncated columns its counts group by.
fn template_needs(template: &Template) -> kaudit_index::index::Needs {
    use kaudit_index::index::{Index, Needs};
    use kaudit_query::{Field, Query};
    let mut needs = Needs::default();
    let mut queries: Vec<&str> = template
        .sections
        .iter()
        .filter_map(|s| s.query.as_deref())
        .collect();
    queries.push(kaudit_report::build::TRUNCATED_QUERY);
    for q in queries {
        // A query that does not parse fails the report with its section
        // named; here it just adds no column.
        if let Ok(q) = Query::parse(q) {
            let n = kaudit_index::plan::needs(q.expr());
            needs.dict.extend(n.dict);
            needs.hash.extend(n.hash);
        }
    }
    needs.dict.extend(
        [Field::Cluster, Field::User]
            .iter()
            .filter_map(Index::dict_slot),
    );
    needs.dict.sort_unstable();
    needs.dict.dedup();
    needs.hash.sort_unstable();
    needs.hash.dedup();
    needs
}

/// Runs `kaudit report`.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(ReportCommand::Verify { bundle: path, key }) = a.command {
        return verify(&path, key.as_deref());
    }
    let (since, until) = match (&a.period, &a.since) {
        (Some(p), _) => kaudit_report::parse_month(p)?,
        (None, Some(s)) => {
            let since = time_bound(s, "--since")?;
            let until = match &a.until {
                Some(u) => time_bound(u, "--until")?,
                None => MicroTime::now().micros(),
            };
            (since, until)
        }
        (None, None) => bail!("say which period: --period 2026-11, or --since (and --until)"),
    };
    let template = Template::load(&a.template)?;
    let store = Arc::new(a.store.open_any()?);
    // Sign a checkpoint over everything durable when the store is ours.
    let _ = store.checkpoint();
    // The index is caught up when far behind (a short tail is scanned) and
    // read with only the columns the template's queries and groupings
    // read: opening it for writing would load every column and rebuild
    // every dictionary's lookup table, most of a month report's time.
    let needs = template_needs(&template);
    let backend = match EmbeddedBackend::for_query(
        &a.store.data,
        store.clone(),
        &kaudit_query::Query::parse("").context("the query of every event")?,
        &needs,
    ) {
        Ok(b) => b,
        // The index cannot be read: answer from the store alone.
        Err(_) => EmbeddedBackend::unindexed(store.clone()),
    };
    let alerts = kaudit_detect::AlertLog::new(&a.store.data);
    let have_alerts = alerts.alerts_path().exists();
    let quarantined = kaudit_sources::quarantine::Quarantine::open(&a.store.data)
        .ok()
        .and_then(|q| q.list().ok())
        .map(|l| {
            l.into_iter()
                .filter_map(|e| Some((e.cluster, MicroTime::parse(&e.time).ok()?.micros())))
                .collect()
        })
        .unwrap_or_default();
    let req = ReportRequest {
        template,
        since,
        until,
        clusters: a.cluster.clone(),
        max_rows: a.max_rows,
        verify_store: !a.no_verify,
        now: MicroTime::now(),
        budget: None,
    };
    let inputs = Inputs {
        store: &store,
        backend: &backend as &dyn SearchBackend,
        alerts: have_alerts.then_some(&alerts),
        quarantined,
    };
    let ev = kaudit_report::build(&req, &inputs)?;
    let signer = || -> anyhow::Result<kaudit_store::note::Signer25519> {
        kaudit_store::load_signer(&a.store.data, &a.store.options(true)?, false)?.context(
            "signing a bundle needs the store's signing key (checkpoint.key or --signing-key)",
        )
    };
    let write_out = |bytes: &[u8], default: Option<&str>| -> anyhow::Result<()> {
        match (&a.out, default) {
            (Some(p), _) => {
                std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))
            }
            (None, Some(d)) => {
                std::fs::write(d, bytes).with_context(|| format!("writing {d}"))?;
                eprintln!("wrote {d}");
                Ok(())
            }
            (None, None) => {
                let _ = std::io::stdout().write_all(bytes);
                Ok(())
            }
        }
    };
    match a.output {
        Format::Json => {
            let mut j = serde_json::to_vec_pretty(&ev.report)?;
            j.push(b'\n');
            write_out(&j, None)?;
        }
        Format::Bundle => write_out(&bundle::write(&ev, &signer()?)?, Some("report.tar.zst"))?,
        Format::Html | Format::Pdf => {
            let s = signer()?;
            let mut files = bundle::files(&ev, &s.verifier())?;
            bundle::sign(&mut files, &s);
            let page = html::render(&ev.report, &files);
            if a.output == Format::Html {
                write_out(page.as_bytes(), None)?;
            } else {
                let pdf = kaudit_report::pdf::print(&a.chromium, &page)?;
                write_out(&pdf, Some("report.pdf"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(path: &Path, key: Option<&str>) -> anyhow::Result<ExitCode> {
    let key = key.map(read_key).transpose()?;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > 1 << 30 {
        bail!("{}: larger than 1 GiB", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match bundle::verify(&bytes, key.as_ref()) {
        Ok(v) => {
            println!(
                "OK: {} ({} to {}): {} rows over {} events proven against checkpoint {} (tree size {}); {} signed checkpoints; consistency from tree size {} verified",
                v.report.title, v.report.since, v.report.until, v.rows, v.events,
                v.report.anchor.file, v.report.anchor.size, v.checkpoints, v.report.first.size
            );
            for n in &v.report.proof_notes {
                println!("NOTE: {n}");
            }
            if !v.key_trusted {
                println!("NOTE: checked against the bundle's own key {}; pass --key with the log's key obtained independently to know who signed it", v.key);
            }
            println!("Counts are signed claims of the report's maker, not proofs (see the report's \"proves\").");
            Ok(ExitCode::SUCCESS)
        }
        Err(failures) => {
            for f in &failures {
                eprintln!("FAILED: {f}");
            }
            eprintln!("{}: {} check(s) failed", path.display(), failures.len());
            Ok(ExitCode::from(1))
        }
    }
}
