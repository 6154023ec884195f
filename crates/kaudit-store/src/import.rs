//! Bulk import of one input as one all-or-nothing transaction.
//!
//! Parsing is the most expensive step, so it runs on worker threads: one
//! thread reads the input and hands its lines over in numbered batches,
//! the workers parse them (and run the transform), and this thread takes
//! the batches back in input order and hashes, compresses and writes. By
//! default the first bad line aborts the input and nothing from it is kept;
//! with `skip_invalid` bad lines are counted and skipped. Order, errors and
//! outcome are those of reading the input on one thread.
//!
//! An [`ImportObserver`] (the search index) has what it needs of each event
//! encoded by the parsing threads, right after the parse, and takes the rows
//! of the stored records on a thread of its own while the writer hashes and
//! compresses: no second pass over the log. It hears of every durability
//! point, so it never makes durable what the log has not.

use crate::{Store, StoreError};
use kaudit_event::reader::{parse_line_vec, EventReader, RawItem, ReadError};
use kaudit_event::{Event, MicroTime};
use std::collections::BTreeMap;
use std::sync::{mpsc, Mutex};

/// An ingest-time transform (the audit-policy hook): returns the event to
/// store, possibly rewritten or redacted, or `None` to drop it. Called from
/// the parsing threads.
///
/// POLICY HOOK: `kaudit import --policy FILE` passes kaudit-policy's
/// evaluator here; the store itself does not depend on kaudit-policy.
pub type Transform<'a> = &'a (dyn Fn(Event) -> Option<Event> + Sync);

/// Encodes, on a parsing thread, what an [`ImportObserver`] needs of one
/// event about to be stored (with its cluster and receive time) into `out`:
/// the costly part of deriving from an event runs in parallel, next to the
/// parse, and the event is freed by the thread that allocated it.
pub type RowEncoder = fn(event: &Event, cluster: &str, received: MicroTime, out: &mut Vec<u8>);

/// Receives, in sequence order and on a thread of its own, what
/// [`ImportObserver::encoder`] made of every record an import stages: lets
/// a structure derived from the log (the search index) be built from the
/// import's own parse instead of a second pass over the log once written.
///
/// The contract: records arrive as [`ImportObserver::staged`] before they
/// are durable; [`ImportObserver::durable`] says the log is durable up to a
/// sequence number (only then may the observer make its output durable up
/// to there); [`ImportObserver::rolled_back`] says everything staged since
/// the last durability point is gone from the log.
pub trait ImportObserver: Send {
    /// The encoder the parsing threads run on each event that is stored.
    fn encoder(&self) -> RowEncoder;
    /// One record staged at `seq` (sequence numbers come in order, without
    /// gaps inside one transaction): the encoder's bytes for its event
    /// exactly as stored.
    fn staged(&mut self, seq: u64, row: &[u8]);
    /// Every record below `end` is durable in the log.
    fn durable(&mut self, end: u64);
    /// The transaction was rolled back: records staged since the last
    /// [`ImportObserver::durable`] are not in the log.
    fn rolled_back(&mut self);
}

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Cluster name bound into each record.
    pub cluster: String,
    /// Skip bad lines instead of aborting the input.
    pub skip_invalid: bool,
    /// Stop after this many invalid lines even with `skip_invalid`.
    pub max_invalid: u64,
    /// Commit (durably) every this many new records instead of once per
    /// input, so that a stream of any length is imported in flat memory
    /// (the transaction's hashes and the observer's rows are per chunk).
    /// A failure then keeps the chunks committed before it (the error says
    /// which records); re-running the input drops them as duplicates.
    /// `None`: the whole input is one all-or-nothing transaction.
    pub chunk_records: Option<u64>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            cluster: "default".into(),
            skip_invalid: false,
            max_invalid: 1_000_000,
            chunk_records: None,
        }
    }
}

/// What one input contributed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputOutcome {
    /// Sequence numbers given to its new records.
    pub seqs: std::ops::Range<u64>,
    /// Events read.
    pub events: u64,
    /// Exact duplicates dropped.
    pub duplicates: u64,
    /// Invalid lines skipped.
    pub invalid: u64,
    /// Events dropped by the transform.
    pub filtered: u64,
    /// Event bytes read.
    pub bytes: u64,
}

/// Why an input was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A bad line; nothing from this input was kept.
    #[error("{0} (nothing from this input was imported; use --skip-invalid to skip bad lines)")]
    Invalid(ReadError),
    /// Reading failed mid-way; nothing from this input was kept.
    #[error("{0} (nothing from this input was imported)")]
    Read(ReadError),
    /// Too many bad lines.
    #[error("more than {0} invalid lines; nothing from this input was imported")]
    TooManyInvalid(u64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Failed after earlier chunks of the input were committed (only with
    /// [`ImportOptions::chunk_records`]): those stay.
    #[error("{cause}; the {} new records of this input committed in earlier chunks (sequence numbers {}..{}) stay: re-running the import drops them as duplicates", kept.end - kept.start, kept.start, kept.end)]
    Partial {
        /// Sequence numbers of the records committed and kept.
        kept: std::ops::Range<u64>,
        /// What went wrong.
        cause: String,
    },
}

impl ImportError {
    /// The error once earlier chunks of `kept` were committed.
    fn after_chunks(self, kept: std::ops::Range<u64>) -> ImportError {
        if kept.is_empty() {
            return self;
        }
        let cause = match &self {
            ImportError::Invalid(e) => format!("{e} (use --skip-invalid to skip bad lines)"),
            ImportError::Read(e) => e.to_string(),
            ImportError::TooManyInvalid(n) => format!("more than {n} invalid lines"),
            ImportError::Store(e) => e.to_string(),
            ImportError::Partial { .. } => return self,
        };
        ImportError::Partial { kept, cause }
    }
}

/// Lines per batch handed to a parsing thread.
const BATCH: usize = 1024;
/// Batches read ahead of the one being written (bounds memory whatever the
/// threads' relative speeds).
const IN_FLIGHT: usize = 8;
/// Most parsing threads.
const MAX_PARSERS: usize = 4;

/// One input item once parsed and transformed.
enum Parsed {
    /// An event: its bytes as read (plus the newline), what to store
    /// (`None`: the transform dropped it), and where the observer's row of
    /// it is in the batch's row buffer (empty without an observer).
    Event {
        read: u64,
        keep: Option<Vec<u8>>,
        row: std::ops::Range<usize>,
    },
    /// A bad line, or the read error that ended the input.
    Error(ReadError),
}

/// A parsed batch: its items and the buffer their observer rows are in.
type ParsedBatch = (Vec<Parsed>, Vec<u8>);

/// What the observer's encoder needs besides the event.
#[derive(Clone, Copy)]
struct Encode<'a> {
    encoder: RowEncoder,
    cluster: &'a str,
    received: MicroTime,
}

/// Parses (and transforms) one batch; returns its items and the buffer
/// their observer rows are in.
fn parse_batch(
    source: &str,
    batch: Vec<RawItem>,
    transform: Option<Transform<'_>>,
    encode: Option<Encode<'_>>,
) -> ParsedBatch {
    let mut out = Vec::with_capacity(batch.len());
    let mut rows = Vec::new();
    let mut take = |r: Result<Event, ReadError>| {
        out.push(match r {
            Ok(ev) => {
                let read = ev.bytes().len() as u64 + 1;
                let kept = match transform {
                    Some(t) => t(ev),
                    None => Some(ev),
                };
                let start = rows.len();
                if let (Some(ev), Some(e)) = (&kept, encode) {
                    (e.encoder)(ev, e.cluster, e.received, &mut rows);
                }
                Parsed::Event {
                    read,
                    keep: kept.map(Event::into_bytes),
                    row: start..rows.len(),
                }
            }
            Err(e) => Parsed::Error(e),
        })
    };
    for item in batch {
        match item {
            RawItem::Ready(r) => take(*r),
            RawItem::Line { line, bytes } => {
                for r in parse_line_vec(source, line, bytes) {
                    take(r);
                }
            }
        }
    }
    (out, rows)
}

/// Imports one input; `progress(events, bytes)` is called as batches land.
pub fn import_input(
    store: &Store,
    reader: EventReader,
    opts: &ImportOptions,
    transform: Option<Transform<'_>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<InputOutcome, ImportError> {
    import_observed(store, reader, opts, transform, progress, None)
}

/// A batch of staged records for the observer's thread (each record's
/// sequence number and row in the buffer), or the outcome of the
/// transaction.
enum Observed {
    Staged(Vec<u8>, Vec<(u64, std::ops::Range<usize>)>),
    Durable(u64),
    RolledBack,
}

/// [`import_input`] that also hands every stored record, parsed, to
/// `observer` on a thread of its own (see [`ImportObserver`]); returns once
/// the observer has heard the outcome.
pub fn import_observed(
    store: &Store,
    mut reader: EventReader,
    opts: &ImportOptions,
    transform: Option<Transform<'_>>,
    progress: &mut dyn FnMut(u64, u64),
    observer: Option<&mut dyn ImportObserver>,
) -> Result<InputOutcome, ImportError> {
    let received = MicroTime::now();
    let encode = observer.as_ref().map(|o| Encode {
        encoder: o.encoder(),
        cluster: opts.cluster.as_str(),
        received,
    });
    let parsers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_PARSERS);
    let source = reader.name().to_string();
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<RawItem>)>(IN_FLIGHT);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, ParsedBatch)>(IN_FLIGHT);
    // One token per batch in flight: the reader takes one before handing a
    // batch over, the writer gives it back once the batch is written.
    let (token_tx, token_rx) = mpsc::sync_channel::<()>(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let _ = token_tx.send(());
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut number = 0u64;
            let mut batch = Vec::with_capacity(BATCH);
            let mut send = |batch: Vec<RawItem>| -> bool {
                if token_rx.recv().is_err() || work_tx.send((number, batch)).is_err() {
                    return false;
                }
                number += 1;
                true
            };
            while let Some(item) = reader.next_raw() {
                let fatal = matches!(&item, RawItem::Ready(r) if r.as_ref().as_ref().is_err_and(|e| !e.is_recoverable()));
                batch.push(item);
                if batch.len() == BATCH || fatal {
                    let sent = send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                    // A fatal error ends the input: nothing follows it.
                    if !sent || fatal {
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                send(batch);
            }
        });
        for _ in 0..parsers {
            let (work_rx, done_tx, source) = (&work_rx, done_tx.clone(), &source);
            scope.spawn(move || loop {
                let next = match work_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((number, batch)) = next else { return };
                if done_tx
                    .send((number, parse_batch(source, batch, transform, encode)))
                    .is_err()
                {
                    return;
                }
            });
        }
        drop(done_tx);
        let observed = observer.map(|obs| {
            let (tx, rx) = mpsc::sync_channel::<Observed>(IN_FLIGHT);
            scope.spawn(move || {
                for msg in rx {
                    match msg {
                        Observed::Staged(rows, items) => {
                            for (seq, at) in items {
                                obs.staged(seq, rows.get(at).unwrap_or(&[]));
                            }
                        }
                        Observed::Durable(end) => obs.durable(end),
                        Observed::RolledBack => obs.rolled_back(),
                    }
                }
            });
            tx
        });
        let result = write(
            store,
            opts,
            received,
            done_rx,
            &token_tx,
            progress,
            observed.as_ref(),
        );
        // Dropping these (the result channel went with `write`) stops the
        // reader and the parsers if the input was abandoned part-way.
        drop(token_tx);
        if let Some(tx) = observed {
            // The observer's thread outlives this only until it has heard
            // the outcome (the scope joins it).
            let _ = tx.send(match &result {
                Ok(o) => Observed::Durable(o.seqs.end),
                Err(_) => Observed::RolledBack,
            });
        }
        result
    })
}

/// Takes the parsed batches back in input order and stages them in one
/// transaction, committed at the end (or in several, one per chunk of
/// [`ImportOptions::chunk_records`]).
fn write(
    store: &Store,
    opts: &ImportOptions,
    received: MicroTime,
    done: mpsc::Receiver<(u64, ParsedBatch)>,
    tokens: &mpsc::SyncSender<()>,
    progress: &mut dyn FnMut(u64, u64),
    observed: Option<&mpsc::SyncSender<Observed>>,
) -> Result<InputOutcome, ImportError> {
    let mut kept: Option<std::ops::Range<u64>> = None;
    let res = write_chunks(
        store, opts, received, done, tokens, progress, observed, &mut kept,
    );
    match (res, kept) {
        (Err(e), Some(k)) => Err(e.after_chunks(k)),
        (res, _) => res,
    }
}

/// [`write`]'s body; `kept` tracks the records of chunks already committed.
#[allow(clippy::too_many_arguments)]
fn write_chunks(
    store: &Store,
    opts: &ImportOptions,
    received: MicroTime,
    done: mpsc::Receiver<(u64, ParsedBatch)>,
    tokens: &mpsc::SyncSender<()>,
    progress: &mut dyn FnMut(u64, u64),
    observed: Option<&mpsc::SyncSender<Observed>>,
    kept: &mut Option<std::ops::Range<u64>>,
) -> Result<InputOutcome, ImportError> {
    let chunk = opts.chunk_records.filter(|&n| n > 0);
    let mut txn = store.transaction()?;
    let mut out = InputOutcome::default();
    let mut early: BTreeMap<u64, ParsedBatch> = BTreeMap::new();
    let mut next = 0u64;
    for (number, batch) in done.iter() {
        early.insert(number, batch);
        while let Some((batch, rows)) = early.remove(&next) {
            next += 1;
            let (mut n, mut b) = (0u64, 0u64);
            let mut staged = Vec::new();
            for item in batch {
                match item {
                    Parsed::Event { read, keep, row } => {
                        out.events += 1;
                        n += 1;
                        b += read;
                        let Some(bytes) = keep else {
                            out.filtered += 1;
                            continue;
                        };
                        let seq = txn.next_seq();
                        if !txn.push_parts(&opts.cluster, &bytes, received)? {
                            out.duplicates += 1;
                        } else if observed.is_some() {
                            staged.push((seq, row));
                        }
                    }
                    Parsed::Error(e) if e.is_recoverable() && opts.skip_invalid => {
                        out.invalid += 1;
                        if out.invalid > opts.max_invalid {
                            return Err(ImportError::TooManyInvalid(opts.max_invalid));
                        }
                    }
                    Parsed::Error(e) if e.is_recoverable() => return Err(ImportError::Invalid(e)),
                    Parsed::Error(e) => return Err(ImportError::Read(e)),
                }
            }
            out.bytes += b;
            if let Some(tx) = observed {
                if !staged.is_empty() && tx.send(Observed::Staged(rows, staged)).is_err() {
                    return Err(ImportError::Store(StoreError::Poisoned(
                        "the import's observer thread stopped".into(),
                    )));
                }
            }
            progress(n, b);
            let _ = tokens.send(());
            if chunk.is_some_and(|c| txn.staged() >= c) {
                // A chunk boundary: durable, then the observer may follow.
                let appended = txn.commit()?;
                // Signed as it goes (at most once per checkpoint interval),
                // so an interrupted import leaves little unsigned.
                store.maybe_checkpoint()?;
                txn = store.transaction()?;
                let r = kept.get_or_insert(appended.seqs.clone());
                r.end = appended.seqs.end;
                if let Some(tx) = observed {
                    let _ = tx.send(Observed::Durable(appended.seqs.end));
                }
            }
        }
    }
    let appended = txn.commit()?;
    out.seqs = match kept.take() {
        Some(k) => k.start..appended.seqs.end,
        None => appended.seqs,
    };
    Ok(out)
}
