//! `kaudit gen`: deterministic, realistic kube-apiserver audit traffic for
//! demos, load tests and benchmarks, with the ground truth of injected
//! incidents.

use anyhow::{bail, Context};
use kaudit_event::MicroTime;
use kaudit_gen::{GenConfig, Generator, DEFAULT_RATE, DEFAULT_START};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Bytes buffered per output before a write.
const FLUSH_AT: usize = 1 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// Number of events to write (0: endless, until interrupted).
    #[arg(long, short = 'n', default_value_t = 10_000)]
    events: u64,
    /// Seed: the same seed and flags always give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of simulated clusters, interleaved in one stream.
    #[arg(long, default_value_t = 1)]
    clusters: usize,
    /// Cluster names, comma-separated (overrides --clusters).
    #[arg(long, value_delimiter = ',')]
    cluster_names: Vec<String>,
    /// Simulated time of the first request (RFC 3339).
    #[arg(long, default_value = DEFAULT_START)]
    start: String,
    /// Events per second of simulated time (timestamps advance by it).
    #[arg(long, default_value_t = DEFAULT_RATE)]
    rate: f64,
    /// Also pace output to the wall clock at --rate (for live demos).
    #[arg(long)]
    realtime: bool,
    /// Output file (`-` for stdout); a `.gz` name is gzip-compressed.
    #[arg(short = 'o', long, default_value = "-")]
    output: PathBuf,
    /// Write the injected incidents (kind, cluster, auditIDs, facts) as JSON here.
    #[arg(long)]
    incidents: Option<PathBuf>,
    /// Inject an incident every N events (0: none; default: a tenth of --events).
    #[arg(long)]
    incident_every: Option<u64>,
    /// Also write one `<cluster>.jsonl` per cluster into this directory
    /// (a raw audit event has no cluster field). Without -o, only these are written.
    #[arg(long)]
    split_clusters: Option<PathBuf>,
}

/// A file or stdout, optionally gzip-compressed.
enum Sink {
    Plain(BufWriter<Box<dyn Write>>),
    Gzip(flate2::write::GzEncoder<BufWriter<Box<dyn Write>>>),
}

impl Sink {
    fn open(path: &Path) -> anyhow::Result<Sink> {
        let raw: Box<dyn Write> = if path == Path::new("-") {
            Box::new(io::stdout().lock())
        } else {
            Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)
        };
        let w = BufWriter::with_capacity(FLUSH_AT, raw);
        let gz = path.extension().is_some_and(|e| e == "gz");
        Ok(if gz {
            Sink::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::fast(),
            ))
        } else {
            Sink::Plain(w)
        })
    }

    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(b),
            Sink::Gzip(w) => w.write_all(b),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gzip(w) => w.finish()?.flush(),
        }
    }
}

struct Out {
    sink: Sink,
    buf: Vec<u8>,
    name: String,
}

impl Out {
    fn new(path: &Path) -> anyhow::Result<Out> {
        Ok(Out {
            sink: Sink::open(path)?,
            buf: Vec::with_capacity(FLUSH_AT + 128 * 1024),
            name: if path == Path::new("-") {
                "stdout".into()
            } else {
                path.display().to_string()
            },
        })
    }
    fn flush_buf(&mut self) -> io::Result<()> {
        self.sink.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Runs `kaudit gen`.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match generate(a) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `kaudit gen | head` is normal use, not an error.
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

fn generate(a: Args) -> anyhow::Result<()> {
    let start = MicroTime::parse(&a.start).with_context(|| format!("--start {:?}", a.start))?;
    let mut config = GenConfig::new(a.seed);
    config.events = (a.events > 0).then_some(a.events);
    config.clusters = if a.cluster_names.is_empty() {
        if a.clusters == 0 || a.clusters > kaudit_gen::MAX_CLUSTERS {
            bail!(
                "--clusters {}: want 1 to {}",
                a.clusters,
                kaudit_gen::MAX_CLUSTERS
            );
        }
        kaudit_gen::default_cluster_names(a.clusters)
    } else {
        a.cluster_names.clone()
    };
    config.start = start;
    config.rate = a.rate;
    config.spread_incidents();
    if let Some(n) = a.incident_every {
        config.incident_every = n;
    }
    let mut generator = Generator::new(config).context("invalid generator settings")?;

    let write_main = a.split_clusters.is_none() || a.output != Path::new("-");
    let mut main = if write_main {
        Some(Out::new(&a.output)?)
    } else {
        None
    };
    let mut per_cluster: Vec<Out> = Vec::new();
    if let Some(dir) = &a.split_clusters {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for name in generator.cluster_names() {
            per_cluster.push(Out::new(&dir.join(format!("{name}.jsonl")))?);
        }
    }

    let pace = a.realtime.then(|| (Instant::now(), a.rate));
    if let (Some(o), true, None) = (main.as_mut(), per_cluster.is_empty(), pace) {
        // The common case (one output, no pacing): write straight into its buffer.
        while generator.next_into(&mut o.buf).is_some() {
            o.buf.push(b'\n');
            if o.buf.len() >= FLUSH_AT {
                o.flush_buf()
                    .with_context(|| format!("writing {}", o.name))?;
            }
        }
    }
    let mut line = Vec::with_capacity(64 * 1024);
    let mut n: u64 = 0;
    while let Some(cluster) = {
        line.clear();
        generator.next_into(&mut line)
    } {
        line.push(b'\n');
        n += 1;
        if let Some((t0, rate)) = pace {
            // Simulated time advances by 1/rate per event: follow it on the wall clock.
            let due = Duration::from_secs_f64(n as f64 / rate);
            let elapsed = t0.elapsed();
            if due > elapsed {
                for o in main.iter_mut().chain(per_cluster.iter_mut()) {
                    o.flush_buf()
                        .with_context(|| format!("writing {}", o.name))?;
                    match &mut o.sink {
                        Sink::Plain(w) => w.flush()?,
                        Sink::Gzip(w) => w.flush()?,
                    }
                }
                std::thread::sleep(due - elapsed);
            }
        }
        if let Some(o) = main.as_mut() {
            o.buf.extend_from_slice(&line);
            if o.buf.len() >= FLUSH_AT {
                o.flush_buf()
                    .with_context(|| format!("writing {}", o.name))?;
            }
        }
        if let Some(o) = per_cluster.get_mut(cluster) {
            o.buf.extend_from_slice(&line);
            if o.buf.len() >= FLUSH_AT {
                o.flush_buf()
                    .with_context(|| format!("writing {}", o.name))?;
            }
        }
    }
    for o in main.into_iter().chain(per_cluster) {
        let name = o.name.clone();
        let mut o = o;
        o.flush_buf().with_context(|| format!("writing {name}"))?;
        o.sink.finish().with_context(|| format!("writing {name}"))?;
    }
    if let Some(path) = &a.incidents {
        let mut json =
            serde_json::to_vec_pretty(generator.incidents()).context("encoding incidents")?;
        json.push(b'\n');
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn args(dir: &Path) -> Args {
        Args {
            events: 3000,
            seed: 5,
            clusters: 2,
            cluster_names: Vec::new(),
            start: DEFAULT_START.into(),
            rate: DEFAULT_RATE,
            realtime: false,
            output: dir.join("all.jsonl.gz"),
            incidents: Some(dir.join("incidents.json")),
            incident_every: None,
            split_clusters: Some(dir.join("split")),
        }
    }

    #[test]
    fn writes_gzip_split_files_and_incidents_that_agree() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run(args(dir.path())).unwrap(), ExitCode::SUCCESS);
        let mut all = String::new();
        flate2::read::GzDecoder::new(File::open(dir.path().join("all.jsonl.gz")).unwrap())
            .read_to_string(&mut all)
            .unwrap();
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 3000);
        let a = std::fs::read_to_string(dir.path().join("split/prod-eu-west-1.jsonl")).unwrap();
        let b = std::fs::read_to_string(dir.path().join("split/prod-us-east-1.jsonl")).unwrap();
        assert_eq!(a.lines().count() + b.lines().count(), 3000);
        assert!(a.lines().count() > 1000 && b.lines().count() > 1000);
        // Same bytes as the library writes for the same settings.
        let mut config = GenConfig::new(5);
        config.events = Some(3000);
        config.clusters = kaudit_gen::default_cluster_names(2);
        config.spread_incidents();
        let lib: Vec<Vec<u8>> = Generator::new(config).unwrap().map(|e| e.bytes).collect();
        assert!(lines.iter().zip(&lib).all(|(l, e)| l.as_bytes() == &e[..]));
        let incidents: Vec<kaudit_gen::Incident> =
            serde_json::from_slice(&std::fs::read(dir.path().join("incidents.json")).unwrap())
                .unwrap();
        assert!(incidents.len() >= 8);
        for inc in &incidents {
            let file = if inc.cluster == "prod-eu-west-1" {
                &a
            } else {
                &b
            };
            for id in &inc.audit_ids {
                assert!(
                    file.contains(&format!("\"auditID\":\"{id}\"")),
                    "{id} not in {}",
                    inc.cluster
                );
            }
        }
    }

    #[test]
    fn bad_flags_fail_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(dir.path());
        a.start = "yesterday".into();
        let err = run(a).unwrap_err().to_string();
        assert!(err.contains("--start"), "{err}");
        let mut a = args(dir.path());
        a.rate = 0.0;
        let err = format!("{:#}", run(a).unwrap_err());
        assert!(err.contains("rate"), "{err}");
        let mut a = args(dir.path());
        a.cluster_names = vec!["ok".into(), "../escape".into()];
        let err = format!("{:#}", run(a).unwrap_err());
        assert!(err.contains("cluster name"), "{err}");
        let mut a = args(dir.path());
        a.output = dir.path().join("no/such/dir/out.jsonl");
        let err = format!("{:#}", run(a).unwrap_err());
        assert!(err.contains("out.jsonl"), "{err}");
    }
}
