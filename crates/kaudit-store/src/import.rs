//! Bulk import of one input as one all-or-nothing transaction.
//!
//! Parsing is the most expensive step, so it runs on worker threads: one
//! thread reads the input and hands its lines over in numbered batches,
//! the workers parse them (and run the transform), and this thread takes
//! the batches back in input order and hashes, compresses and writes. By
//! default the first bad line aborts the input and nothing from it is kept;
//! with `skip_invalid` bad lines are counted and skipped. Order, errors and
//! outcome are those of reading the input on one thread.

use crate::{Store, StoreError};
use kaudit_event::reader::{parse_line, EventReader, RawItem, ReadError};
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

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Cluster name bound into each record.
    pub cluster: String,
    /// Skip bad lines instead of aborting the input.
    pub skip_invalid: bool,
    /// Stop after this many invalid lines even with `skip_invalid`.
    pub max_invalid: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            cluster: "default".into(),
            skip_invalid: false,
            max_invalid: 1_000_000,
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
    /// An event: its bytes as read (plus the newline), and what to store
    /// (`None`: the transform dropped it).
    Event { read: u64, keep: Option<Vec<u8>> },
    /// A bad line, or the read error that ended the input.
    Error(ReadError),
}

fn parse_batch(source: &str, batch: Vec<RawItem>, transform: Option<Transform<'_>>) -> Vec<Parsed> {
    let mut out = Vec::with_capacity(batch.len());
    let mut take = |r: Result<Event, ReadError>| {
        out.push(match r {
            Ok(ev) => {
                let read = ev.bytes().len() as u64 + 1;
                let keep = match transform {
                    Some(t) => t(ev).map(Event::into_bytes),
                    None => Some(ev.into_bytes()),
                };
                Parsed::Event { read, keep }
            }
            Err(e) => Parsed::Error(e),
        })
    };
    for item in batch {
        match item {
            RawItem::Ready(r) => take(*r),
            RawItem::Line { line, bytes } => {
                for r in parse_line(source, line, &bytes) {
                    take(r);
                }
            }
        }
    }
    out
}

/// Imports one input; `progress(events, bytes)` is called as batches land.
pub fn import_input(
    store: &Store,
    mut reader: EventReader,
    opts: &ImportOptions,
    transform: Option<Transform<'_>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<InputOutcome, ImportError> {
    let parsers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_PARSERS);
    let source = reader.name().to_string();
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<RawItem>)>(IN_FLIGHT);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, Vec<Parsed>)>(IN_FLIGHT);
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
                    .send((number, parse_batch(source, batch, transform)))
                    .is_err()
                {
                    return;
                }
            });
        }
        drop(done_tx);
        let result = write(store, opts, done_rx, &token_tx, progress);
        // Dropping these (the result channel went with `write`) stops the
        // reader and the parsers if the input was abandoned part-way.
        drop(token_tx);
        result
    })
}

/// Takes the parsed batches back in input order and stages them in one
/// transaction, committed at the end.
fn write(
    store: &Store,
    opts: &ImportOptions,
    done: mpsc::Receiver<(u64, Vec<Parsed>)>,
    tokens: &mpsc::SyncSender<()>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<InputOutcome, ImportError> {
    let mut txn = store.transaction()?;
    let mut out = InputOutcome::default();
    let received = MicroTime::now();
    let mut early: BTreeMap<u64, Vec<Parsed>> = BTreeMap::new();
    let mut next = 0u64;
    for (number, batch) in done.iter() {
        early.insert(number, batch);
        while let Some(batch) = early.remove(&next) {
            next += 1;
            let (mut n, mut b) = (0u64, 0u64);
            for item in batch {
                match item {
                    Parsed::Event { read, keep } => {
                        out.events += 1;
                        n += 1;
                        b += read;
                        let Some(bytes) = keep else {
                            out.filtered += 1;
                            continue;
                        };
                        if !txn.push_parts(&opts.cluster, &bytes, received)? {
                            out.duplicates += 1;
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
            progress(n, b);
            let _ = tokens.send(());
        }
    }
    let appended = txn.commit()?;
    out.seqs = appended.seqs;
    Ok(out)
}
