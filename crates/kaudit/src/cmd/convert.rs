//! `kaudit convert`: read audit events in any form users have (JSON lines,
//! `.gz` backups, EventList documents, arrays, v1beta1/v1alpha1) and write
//! them as `audit.k8s.io/v1` JSON lines, exactly as kube-apiserver would.

use anyhow::Context;
use kaudit_event::reader::{EventReader, ReaderOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kaudit convert`.
#[derive(clap::Args)]
#[command(after_help = "EXAMPLES:\n  \
    kaudit convert /var/log/kubernetes/audit/audit-2026-01-02T15-04-05.000.log.gz > audit.jsonl\n  \
    kaudit convert --skip-invalid -o v1.jsonl old-v1beta1.log webhook-payload.json\n\n\
    By default the first invalid event stops the command with FILE:LINE and the reason, and\n\
    nothing from that input is written to -o FILE (it is written to a temporary file and\n\
    renamed only on success). --skip-invalid reports each bad event on stderr, skips it and\n\
    prints a count at the end.")]
pub struct Args {
    /// Input files (`-` for stdin); gzip is detected automatically.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Write to FILE instead of stdout (atomically: all or nothing).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Skip events that are not valid audit events instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
    /// Longest accepted line, in bytes.
    #[arg(long, default_value_t = kaudit_event::reader::DEFAULT_MAX_LINE, value_name = "BYTES")]
    max_line: usize,
}

/// Runs `kaudit convert`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = ReaderOptions {
        max_line: args.max_line,
        ..Default::default()
    };
    let (mut out, tmp): (Box<dyn Write>, Option<(PathBuf, PathBuf)>) = match &args.output {
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
    let (mut written, mut skipped) = (0u64, 0u64);
    for input in &args.inputs {
        let reader = EventReader::open(input, opts)?;
        for item in reader {
            match item {
                Ok(ev) => {
                    out.write_all(ev.bytes())?;
                    out.write_all(b"\n")?;
                    written += 1;
                }
                Err(e) if args.skip_invalid && e.is_recoverable() => {
                    eprintln!("skipped: {e}");
                    skipped += 1;
                }
                Err(e) => {
                    drop(out);
                    if let Some((tmp, _)) = &tmp {
                        let _ = std::fs::remove_file(tmp);
                    }
                    let hint = if e.is_recoverable() {
                        " (use --skip-invalid to skip such events)"
                    } else {
                        ""
                    };
                    anyhow::bail!("{e}{hint}");
                }
            }
        }
    }
    out.flush()?;
    drop(out);
    if let Some((tmp, path)) = tmp {
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    }
    eprintln!("converted {written} events, skipped {skipped} invalid");
    Ok(ExitCode::SUCCESS)
}
