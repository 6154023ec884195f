//! Store commands: import, verify, proof, checkpoint, keygen, prune, hold, stat.

use anyhow::{bail, Context};
use kaudit_sources::managed::{self, ConvertLimits, ImportInput, ManagedFormat};
use kaudit_store::import::{import_observed, ImportError, ImportObserver, ImportOptions};
use kaudit_store::note::{Signer25519, Verifier25519};
use kaudit_store::retention::{self, StoreConfig};
use kaudit_store::verify::{verify as verify_store, VerifyOptions};
use kaudit_store::{LogReader, Store, StoreError, StoreOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// println! that does not panic when stdout is closed early (`| head`).
macro_rules! outln {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
/// print! that does not panic when stdout is closed early.
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// Where the store is and the keys it needs.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Data directory of the store.
    #[arg(long, env = "KAUDIT_DATA", default_value = "./kaudit-data")]
    pub data: PathBuf,
    /// YAML config with `retention`, `encryption: {key_file}`, `checkpoint: {key_file, publish}`.
    #[arg(long, env = "KAUDIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Checkpoint signing key (PRIVATE+KEY+... from `kaudit keygen`); default <data>/checkpoint.key, made on first use.
    #[arg(long)]
    pub signing_key: Option<PathBuf>,
    /// Encryption-at-rest key file (64 hex digits, from `kaudit keygen --encryption`).
    #[arg(long)]
    pub encryption_key: Option<PathBuf>,
    /// Also write every new checkpoint to this file.
    #[arg(long)]
    pub publish_checkpoint: Option<PathBuf>,
}

impl StoreArgs {
    fn config(&self) -> anyhow::Result<StoreConfig> {
        match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                StoreConfig::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            }
            None => Ok(StoreConfig::default()),
        }
    }

    pub(crate) fn options(&self, read_only: bool) -> anyhow::Result<StoreOptions> {
        let cfg = self.config()?;
        Ok(StoreOptions {
            read_only,
            signing_key: self.signing_key.clone().or(cfg.signing_key),
            encryption_key: self.encryption_key.clone().or(cfg.encryption_key),
            publish_checkpoint: self.publish_checkpoint.clone().or(cfg.publish_checkpoint),
            ..StoreOptions::default()
        })
    }

    fn open(&self) -> anyhow::Result<Store> {
        let store = Store::open(&self.data, self.options(false)?)
            .with_context(|| format!("opening store {}", self.data.display()))?;
        for line in store.open_report().describe() {
            eprintln!("{line}");
        }
        Ok(store)
    }

    /// Writable when free (so a fresh checkpoint can be signed), else read-only.
    pub(crate) fn open_any(&self) -> anyhow::Result<Store> {
        match Store::open(&self.data, self.options(false)?) {
            Ok(s) => Ok(s),
            Err(StoreError::Locked(_)) => Store::open(&self.data, self.options(true)?)
                .with_context(|| format!("opening store {} read-only", self.data.display())),
            Err(e) => Err(e).with_context(|| format!("opening store {}", self.data.display())),
        }
    }
}

/// `kaudit import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Cluster name recorded with every event.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Ingest audit policy (audit.k8s.io/v1) applied before storing: events below
    /// their rule's level or in omitted stages are dropped, bodies the level does
    /// not cover are stripped.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Keep Secret data and token values as they are (by default they become sha256:<hex>).
    #[arg(long)]
    no_redact: bool,
    /// Skip invalid lines instead of refusing the whole input.
    #[arg(long)]
    skip_invalid: bool,
    /// Append one line per durably committed input to this file (`<input>\t<first seq>\t<end seq>\t<events>\t<duplicates>`), flushed after the fsync.
    #[arg(long)]
    ack_log: Option<PathBuf>,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Do not build the search index while importing (the first query or
    /// `kaudit reindex` then builds it by reading the store again). By default
    /// the index is built from the events as they are parsed and committed
    /// after each input's log commit, so the store is searchable at once.
    #[arg(long)]
    no_index: bool,
    /// Commit (fsync) every N new events instead of once per input, so a
    /// stream of any length imports in flat memory; a failure keeps the
    /// chunks committed before it (re-running the input drops them as
    /// duplicates). 0: each input is one all-or-nothing transaction.
    /// Default: 1000000 for stdin (`-`), 0 for files.
    #[arg(long, value_name = "N")]
    chunk_events: Option<u64>,
    /// The inputs' format: `eks` (CloudWatch Logs export, subscription payloads,
    /// Firehose deliveries, S3 `.gz` objects), `gke` (Cloud Logging LogEntries:
    /// `gcloud logging read --format=json`, JSON lines, Pub/Sub push bodies), `aks`
    /// (diagnostic-settings / Event Hub `{"records":[...]}`), `admission`
    /// (AdmissionReviews captured by a webhook) or `auto` (by shape: native audit
    /// events are read as always and a recognised provider envelope is
    /// converted, file by file). Without it: as `auto`.
    #[arg(long, value_parser = parse_format)]
    format: Option<ManagedFormat>,
    /// Input files (JSON lines, .gz, EventList documents, provider exports) or `-` for stdin.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

fn parse_format(s: &str) -> Result<ManagedFormat, String> {
    s.parse()
}

/// Events per committed chunk of an import from stdin: a stream has no end
/// to wait for, and one transaction would hold every hash and index row of it.
const STDIN_CHUNK_EVENTS: u64 = 1_000_000;

/// Runs `kaudit import`.
pub fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let applier = match kaudit_policy::PolicyApplier::for_ingest(a.policy.as_deref(), !a.no_redact)?
    {
        Some((applier, warnings)) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            Some(applier)
        }
        None => None,
    };
    let mut dropped_by_policy = 0u64;
    // Runs on the import's parsing threads.
    let transform = |ev: kaudit_event::Event| match applier.as_ref().map(|ap| ap.check(&ev)) {
        None | Some(kaudit_policy::Verdict::KeepAsIs) => Some(ev),
        Some(kaudit_policy::Verdict::Replace(e)) => Some(e),
        Some(kaudit_policy::Verdict::Drop(_)) => None,
    };
    let store = a.store.open()?;
    let opts = ImportOptions {
        cluster: a.cluster.clone(),
        skip_invalid: a.skip_invalid,
        ..ImportOptions::default()
    };
    let mut ack = match &a.ack_log {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening ack log {}", p.display()))?,
        ),
        None => None,
    };
    let mut indexer = if a.no_index {
        None
    } else {
        match kaudit_index::ImportIndexer::open(&a.store.data, &store) {
            Ok(ix) => Some(ix),
            Err(e @ kaudit_index::IndexError::Locked(_)) => {
                eprintln!("note: not indexing while importing: {e}");
                None
            }
            Err(e) => return Err(e).context("opening the search index"),
        }
    };
    let show = !a.no_progress && std::io::stderr().is_terminal();
    let started = Instant::now();
    let (mut events, mut stored, mut dups, mut invalid, mut bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut failed = None;
    for input in &a.inputs {
        let total = if input.as_os_str() == "-" {
            None
        } else {
            std::fs::metadata(input).ok().map(|m| m.len())
        };
        let bar = if show {
            let b = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(input.display().to_string());
            Some(b)
        } else {
            None
        };
        let reader = match managed::open_for_import(input, a.format, &ConvertLimits::default()) {
            Ok(ImportInput::Native(r)) => r,
            Ok(ImportInput::Converted {
                reader,
                format,
                bad,
                skipped,
            }) => {
                let fmt = format.map_or("(empty)", |f| f.as_str());
                for (why, n) in &skipped {
                    eprintln!("{}: skipped {n} record(s): {why}", input.display());
                }
                if let Some(b) = bad.first() {
                    let at = b.path.as_deref().unwrap_or("");
                    if !a.skip_invalid {
                        failed = Some(format!(
                            "{}: {at}: {} ({} item(s) not convertible as {fmt}; nothing from this input was imported; use --skip-invalid to skip them)",
                            input.display(),
                            b.reason,
                            bad.len()
                        ));
                        break;
                    }
                    for b in &bad {
                        eprintln!(
                            "{}: {}: skipped: {}",
                            input.display(),
                            b.path.as_deref().unwrap_or(""),
                            b.reason
                        );
                    }
                    invalid += bad.len() as u64;
                }
                reader
            }
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        };
        let mut seen = 0u64;
        let mut progress = |_n: u64, b: u64| {
            seen += b;
            if let Some(bar) = &bar {
                bar.set_position(seen);
            }
        };
        let stdin = input.as_os_str() == "-";
        let opts = ImportOptions {
            chunk_records: Some(a.chunk_events.unwrap_or(if stdin {
                STDIN_CHUNK_EVENTS
            } else {
                0
            })),
            ..opts.clone()
        };
        let res = import_observed(
            &store,
            reader,
            &opts,
            Some(&transform),
            &mut progress,
            indexer.as_mut().map(|ix| ix as &mut dyn ImportObserver),
        );
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        match res {
            Ok(o) => {
                events += o.events;
                stored += o.seqs.end - o.seqs.start;
                dups += o.duplicates;
                invalid += o.invalid;
                dropped_by_policy += o.filtered;
                bytes += o.bytes;
                if let Some(f) = ack.as_mut() {
                    writeln!(
                        f,
                        "{}\t{}\t{}\t{}\t{}",
                        input.display(),
                        o.seqs.start,
                        o.seqs.end,
                        o.events,
                        o.duplicates
                    )
                    .and_then(|_| f.flush())
                    .context("writing the ack log")?;
                }
                store.maybe_checkpoint().context("writing a checkpoint")?;
            }
            Err(ImportError::Store(e)) => {
                return Err(e).context(format!("importing {}", input.display()))
            }
            Err(e @ ImportError::Partial { .. }) => {
                if let ImportError::Partial { kept, .. } = &e {
                    stored += kept.end - kept.start;
                }
                // The cause names the input and line already.
                failed = Some(e.to_string());
                break;
            }
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    if let Some(e) = indexer.as_ref().and_then(|ix| ix.failure()) {
        eprintln!("warning: search index: {e} (queries scan what it does not cover; `kaudit reindex` rebuilds it)");
    }
    drop(indexer);
    let cp = store.close().context("writing the final checkpoint")?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let size = cp.as_ref().map(|c| c.size);
    eprintln!(
        "imported {stored} new events ({events} read, {dups} duplicates dropped, {invalid} invalid skipped, {dropped_by_policy} dropped by policy) from {} in {secs:.2}s: {:.0} events/s, {}/s{}",
        a.inputs.len(),
        events as f64 / secs,
        kaudit_units::format_bytes(bytes as f64 / secs),
        size.map(|s| format!("; checkpoint at tree size {s}")).unwrap_or_default()
    );
    if let Some(f) = failed {
        eprintln!("error: {f}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `kaudit verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The trusted verifier key (`name+hexkeyid+base64`) or a file holding it.
    #[arg(long)]
    key: Option<String>,
    /// A checkpoint saved elsewhere earlier: prove the log still extends it.
    #[arg(long = "checkpoint")]
    checkpoints: Vec<PathBuf>,
    /// A folder where a witness keeps checkpoints of this log, outside the
    /// data dir (default: the config's store.trusted_checkpoint_dir): prove
    /// the log still extends the newest one.
    #[arg(long)]
    trusted_checkpoint_dir: Option<PathBuf>,
    /// Verify the rows in ClickHouse instead of the local store: each node's
    /// Merkle tree recomputed from its rows against its signed checkpoints.
    /// A `http(s)://` url (default database and prefix) or a serve config
    /// file whose `store.clickhouse` names the tables.
    #[arg(long, value_name = "URL|CONFIG")]
    clickhouse: Option<String>,
    /// With --clickhouse: the trusted verifier key of node ID (`ID=KEY`,
    /// KEY as for --key); nodes without one are checked against the key
    /// they shipped, which proves only that the rows match it.
    #[arg(long = "node-key", value_name = "ID=KEY")]
    node_keys: Vec<String>,
}

/// `kaudit verify --clickhouse`.
fn verify_clickhouse(a: &VerifyArgs, target: &str) -> anyhow::Result<ExitCode> {
    let cfg = super::query::clickhouse_config(target)?;
    let mut trusted = std::collections::HashMap::new();
    for nk in &a.node_keys {
        let (id, key) = nk
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--node-key {nk:?}: expected ID=KEY"))?;
        let id: u16 = id.parse().map_err(|_| {
            anyhow::anyhow!("--node-key {nk:?}: {id:?} is not a node id (0..65535)")
        })?;
        trusted.insert(id, read_key_arg(key)?);
    }
    let client = kaudit_clickhouse::Client::connect(&cfg)?;
    let tables = kaudit_clickhouse::schema::Tables::new(&cfg);
    let reports = kaudit_clickhouse::verify::verify(&client, &tables, &trusted)?;
    let mut ok = !reports.is_empty();
    for r in &reports {
        for p in &r.problems {
            outln!(
                "FAIL: node {} ({}): {}",
                r.node_id,
                r.node,
                serde_json::to_string(p)?
            );
        }
        if r.problem_count > r.problems.len() as u64 {
            outln!(
                "FAIL: node {}: {} more problems not listed",
                r.node_id,
                r.problem_count - r.problems.len() as u64
            );
        }
        outln!(
            "{}: node {} ({}): {} rows, {} checkpoints checked, verified up to {}, {} rows past the newest checkpoint, key {}",
            if r.ok() { "OK" } else { "FAILED" },
            r.node_id,
            r.node,
            r.rows,
            r.checkpoints,
            r.verified_size,
            r.unverified_tail,
            if r.trusted_key { "trusted" } else { "as shipped" }
        );
        ok &= r.ok();
    }
    if reports.is_empty() {
        outln!("FAILED: no node has rows or checkpoints in ClickHouse");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_key_arg(s: &str) -> anyhow::Result<Verifier25519> {
    let text = if Path::new(s).is_file() {
        std::fs::read_to_string(s).with_context(|| format!("reading key file {s}"))?
    } else {
        s.to_string()
    };
    Verifier25519::from_text(text.trim()).map_err(|e| anyhow::anyhow!("--key: {e}"))
}

/// Runs `kaudit verify`.
pub fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(t) = &a.clickhouse {
        return verify_clickhouse(&a, t);
    }
    let opts = a.store.options(true)?;
    let cfg = a.store.config()?;
    let mut vo = VerifyOptions::default();
    if let Some(k) = &a.key {
        vo.key = Some(read_key_arg(k)?);
    } else if let Some(k) = &cfg.trusted_key {
        vo.key = Some(
            read_key_arg(&k.display().to_string())
                .with_context(|| format!("store.trusted_key {}", k.display()))?,
        );
    }
    vo.trusted_checkpoint_dir = a
        .trusted_checkpoint_dir
        .clone()
        .or(cfg.trusted_checkpoint_dir);
    for p in &a.checkpoints {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("reading checkpoint {}", p.display()))?;
        vo.external.push((p.display().to_string(), text));
    }
    if let Some(k) = &opts.encryption_key {
        vo.cipher = Some(kaudit_store::crypt::Cipher::load(k)?);
    }
    if !a.store.data.is_dir() {
        bail!("{}: no such store directory", a.store.data.display());
    }
    let rep = verify_store(&a.store.data, &vo)?;
    for n in &rep.notes {
        eprintln!("note: {n}");
    }
    if let Some(k) = &rep.key {
        let source = if rep.key_trusted {
            "trusted"
        } else {
            "the store's own"
        };
        eprintln!("key: {k} ({source})");
    }
    if let Some(c) = &rep.trusted_checkpoint {
        eprintln!("trusted checkpoint: {c}");
    }
    for p in &rep.problems {
        outln!("FAIL: {p}");
    }
    let root = rep
        .root
        .map(|r| kaudit_store::base64_encode(&r))
        .unwrap_or_else(|| "-".into());
    outln!(
        "{}: {} records ({} pruned before), {} event bytes, {} checkpoints checked, tree size {}, root {root}; {:.2} GB/s, {:.0} events/s in {:.2}s",
        if rep.ok() { "OK" } else { "FAILED" },
        rep.records,
        rep.pruned_before,
        rep.event_bytes,
        rep.checkpoints_checked,
        rep.size,
        rep.bytes_per_sec() / 1e9,
        rep.records_per_sec(),
        rep.elapsed.as_secs_f64()
    );
    Ok(if rep.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `kaudit proof`.
#[derive(clap::Subcommand)]
pub enum ProofCommand {
    /// Inclusion proof of one record against the latest checkpoint.
    Inclusion {
        #[command(flatten)]
        store: StoreArgs,
        /// The record: its auditID, or its sequence number.
        record: String,
    },
    /// Consistency proof between two tree sizes.
    Consistency {
        #[command(flatten)]
        store: StoreArgs,
        /// The older tree size.
        old_size: u64,
        /// The newer tree size (default: the latest checkpoint's).
        new_size: Option<u64>,
    },
}

fn fresh_checkpoint(store: &Store) -> anyhow::Result<kaudit_store::StoredCheckpoint> {
    // A writable store signs one for everything durable; a read-only one uses the latest kept.
    let _ = store.checkpoint();
    store
        .latest_checkpoint()
        .context("the store has no checkpoint yet (import something first)")
}

/// Runs `kaudit proof`.
pub fn proof(c: ProofCommand) -> anyhow::Result<ExitCode> {
    match c {
        ProofCommand::Inclusion { store, record } => {
            let s = store.open_any()?;
            let seq = if !record.is_empty() && record.bytes().all(|b| b.is_ascii_digit()) {
                record.parse::<u64>().context("sequence number")?
            } else {
                s.find_audit_id(&record)?
                    .with_context(|| format!("no record with auditID {record}"))?
            };
            let cp = fresh_checkpoint(&s)?;
            if seq >= cp.size {
                bail!("record {seq} is not covered by the latest checkpoint (tree size {}); retry once a checkpoint covers it", cp.size);
            }
            if seq < s.first_seq() {
                bail!(
                    "record {seq} was pruned (records before {} are gone)",
                    s.first_seq()
                );
            }
            let mut leaf = None;
            s.read(seq..seq + 1, &mut |_, l| {
                leaf = Some(l.data.to_vec());
                false
            })?;
            let leaf = leaf.with_context(|| format!("record {seq} not found"))?;
            let proof = s.inclusion_proof(seq, cp.size)?;
            let out = serde_json::json!({
                "leaf_index": seq,
                "tree_size": cp.size,
                "leaf_data": kaudit_store::base64_encode(&leaf),
                "leaf_hash": kaudit_store::base64_encode(&kaudit_store::merkle::leaf_hash(&leaf)),
                "proof": proof.iter().map(|h| kaudit_store::base64_encode(h)).collect::<Vec<_>>(),
                "checkpoint": cp.note,
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        ProofCommand::Consistency {
            store,
            old_size,
            new_size,
        } => {
            let s = store.open_any()?;
            let cp = fresh_checkpoint(&s)?;
            let new = new_size.unwrap_or(cp.size);
            if old_size > new {
                bail!("old size {old_size} is larger than new size {new}");
            }
            let out = serde_json::json!({
                "old_size": old_size,
                "new_size": new,
                "old_root": kaudit_store::base64_encode(&s.root_at(old_size)?),
                "new_root": kaudit_store::base64_encode(&s.root_at(new)?),
                "proof": s.consistency_proof(old_size, new)?.iter().map(|h| kaudit_store::base64_encode(h)).collect::<Vec<_>>(),
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kaudit checkpoint`.
#[derive(clap::Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print the verifier key (`name+hexkeyid+base64(0x01||pubkey)`) instead.
    #[arg(long)]
    verifier_key: bool,
}

/// Runs `kaudit checkpoint`.
pub fn checkpoint(a: CheckpointArgs) -> anyhow::Result<ExitCode> {
    if a.verifier_key {
        let v = kaudit_store::load_verifier(&a.store.data, &a.store.options(true)?)?;
        outln!("{}", v.text());
        return Ok(ExitCode::SUCCESS);
    }
    let s = a.store.open_any()?;
    let cp = fresh_checkpoint(&s)?;
    out!("{}", cp.note);
    Ok(ExitCode::SUCCESS)
}

/// `kaudit keygen`.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Key name, which is also the checkpoint origin (e.g. `audit.example.com/prod`).
    #[arg(long, default_value = "kaudit.local/log")]
    name: String,
    /// Where to write the private key (mode 0600).
    #[arg(short = 'o', long, default_value = "kaudit-checkpoint.key")]
    output: PathBuf,
    /// Make an encryption-at-rest key (64 hex digits) instead of a signing key.
    #[arg(long)]
    encryption: bool,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

fn write_secret(path: &Path, data: &str, force: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(0o600);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("creating {} (use --force to replace it)", path.display()))?;
    f.write_all(data.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Runs `kaudit keygen`.
pub fn keygen(a: KeygenArgs) -> anyhow::Result<ExitCode> {
    if a.encryption {
        let k = kaudit_store::crypt::Cipher::generate_hex()?;
        write_secret(&a.output, &format!("{k}\n"), a.force)?;
        eprintln!("wrote encryption key {}", a.output.display());
        return Ok(ExitCode::SUCCESS);
    }
    let s = Signer25519::generate(&a.name)?;
    write_secret(&a.output, &format!("{}\n", s.private_text()), a.force)?;
    eprintln!("wrote private key {}; verifier key:", a.output.display());
    outln!("{}", s.verifier().text());
    Ok(ExitCode::SUCCESS)
}

/// `kaudit prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Delete segments whose newest record is older than this (e.g. 400d); overrides the config.
    #[arg(long)]
    max_age: Option<String>,
    /// Delete oldest segments while data exceeds this (e.g. 500GiB); overrides the config.
    #[arg(long)]
    max_size: Option<String>,
    /// Show what would go, delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// When a running `kaudit serve` holds the store, ask it to prune
    /// (`POST /api/v1/prune`) at this base URL.
    #[arg(long, env = "KAUDIT_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Admin token for the server (role admin).
    #[arg(long, env = "KAUDIT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to trust for an https server.
    #[arg(long)]
    server_ca: Option<PathBuf>,
}

/// Prints what a prune removed.
fn print_pruned(
    dry_run: bool,
    removed: impl Iterator<Item = (String, u64, u64, u64)>,
    stopped: Option<&str>,
    before: u64,
) {
    for (p, lo, hi, bytes) in removed {
        outln!(
            "{} {p} (records {lo}..{hi}, {bytes} bytes)",
            if dry_run { "would delete" } else { "deleted" },
        );
    }
    if let Some(why) = stopped {
        outln!("kept from there on: {why}");
    }
    outln!("records before {before} are pruned");
}

/// Runs `kaudit prune`.
pub fn prune(a: PruneArgs) -> anyhow::Result<ExitCode> {
    let mut ret = a.store.config()?.retention;
    if let Some(s) = &a.max_age {
        ret.max_age_secs = Some(retention::parse_duration(s)?);
    }
    if let Some(s) = &a.max_size {
        ret.max_size = Some(retention::parse_size(s)?);
    }
    if ret.max_age_secs.is_none() && ret.max_size.is_none() {
        bail!("no retention policy: set retention.max_age / max_size in the config or pass --max-age / --max-size");
    }
    let store = match Store::open(&a.store.data, a.store.options(false)?) {
        Ok(s) => s,
        Err(StoreError::Locked(_)) => {
            // A running server holds the store: it prunes on our behalf.
            eprintln!(
                "the store is held by a running kaudit serve; asking {} to prune",
                a.server
            );
            let req = kaudit_server::retention::PruneRequest {
                max_age: ret.max_age_secs.map(|s| format!("{s}s")),
                max_size: ret.max_size.map(|n| n.to_string()),
                dry_run: a.dry_run,
            };
            let r = kaudit_server::retention::request_prune(
                &a.server,
                a.token.as_deref(),
                a.server_ca.as_deref(),
                &req,
            )?;
            print_pruned(
                r.dry_run,
                r.removed
                    .into_iter()
                    .map(|s| (s.segment, s.first_seq, s.end_seq, s.bytes)),
                r.stopped.as_deref(),
                r.before,
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("opening store {}", a.store.data.display()))
        }
    };
    for line in store.open_report().describe() {
        eprintln!("{line}");
    }
    let out = store.apply_retention(&ret, a.dry_run)?;
    print_pruned(
        a.dry_run,
        out.removed
            .iter()
            .map(|(p, lo, hi, b)| (p.display().to_string(), *lo, *hi, *b)),
        out.stopped.as_deref(),
        out.before,
    );
    store.close()?;
    Ok(ExitCode::SUCCESS)
}

/// `kaudit hold`.
#[derive(clap::Subcommand)]
pub enum HoldCommand {
    /// Place a legal hold on a receive-time range.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        /// Why (case, request).
        #[arg(long)]
        reason: String,
        /// Start of the range (RFC 3339); open when absent.
        #[arg(long)]
        since: Option<String>,
        /// End of the range (RFC 3339); open when absent.
        #[arg(long)]
        until: Option<String>,
    },
    /// List legal holds.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a legal hold.
    Remove {
        #[command(flatten)]
        store: StoreArgs,
        /// The hold's id.
        id: u64,
    },
}

fn fmt_time(t: Option<i64>) -> String {
    t.map(|m| kaudit_event::MicroTime(m).to_string())
        .unwrap_or_else(|| "-".into())
}

/// Runs `kaudit hold`.
pub fn hold(c: HoldCommand) -> anyhow::Result<ExitCode> {
    match c {
        HoldCommand::Add {
            store,
            reason,
            since,
            until,
        } => {
            let h = retention::add_hold(&store.data, &reason, since.as_deref(), until.as_deref())?;
            outln!(
                "hold #{} placed: {} .. {} ({})",
                h.id,
                fmt_time(h.since),
                fmt_time(h.until),
                h.reason
            );
        }
        HoldCommand::List { store } => {
            for h in retention::list_holds(&store.data)? {
                outln!(
                    "#{}\t{}\t{}\t{}\tplaced {}",
                    h.id,
                    fmt_time(h.since),
                    fmt_time(h.until),
                    h.reason,
                    h.created
                );
            }
        }
        HoldCommand::Remove { store, id } => {
            if !retention::remove_hold(&store.data, id)? {
                bail!("no hold #{id}");
            }
            outln!("hold #{id} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kaudit stat`.
#[derive(clap::Args)]
pub struct StatArgs {
    #[command(flatten)]
    store: StoreArgs,
}

/// Runs `kaudit stat`.
pub fn stat(a: StatArgs) -> anyhow::Result<ExitCode> {
    let s = a.store.open_any()?;
    let st = s.stat()?;
    let total = st.data_bytes + st.dict_bytes + st.tree_bytes + st.checkpoint_bytes;
    outln!(
        "records:      {} (tree size {}, first stored {})",
        st.records,
        st.tree_size,
        st.first_seq
    );
    outln!(
        "segments:     {} ({} bundles){}",
        st.segments,
        st.bundles,
        if st.encrypted { ", encrypted" } else { "" }
    );
    outln!(
        "data:         {} bytes (+ {} bytes of zstd dictionaries)",
        st.data_bytes,
        st.dict_bytes
    );
    outln!("tree:         {} bytes", st.tree_bytes);
    outln!(
        "checkpoints:  {} bytes ({} kept)",
        st.checkpoint_bytes,
        st.checkpoints
    );
    outln!("index:        {} bytes", st.index_bytes);
    if let Ok(c) = kaudit_clickhouse::ship::read_cursor(&a.store.data) {
        if c.next > 0 || kaudit_clickhouse::ship::cursor_path(&a.store.data).exists() {
            outln!(
                "clickhouse:   shipped up to {} ({} records not shipped yet)",
                c.next,
                st.tree_size.saturating_sub(c.next)
            );
        }
    }
    outln!(
        "compression:  {} raw record bytes -> {} data bytes ({:.1}x; data+tree+checkpoints = {:.2}% of raw)",
        st.raw_bytes,
        st.data_bytes,
        st.raw_bytes as f64 / (st.data_bytes.max(1)) as f64,
        100.0 * total as f64 / (st.raw_bytes.max(1)) as f64
    );
    outln!(
        "received:     {} .. {}",
        st.first_time
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into()),
        st.last_time
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into())
    );
    match &st.latest_checkpoint {
        Some(c) => out!("checkpoint:   {} records at {}\n{}", c.size, c.time, c.note),
        None => outln!("checkpoint:   none"),
    }
    Ok(ExitCode::SUCCESS)
}
