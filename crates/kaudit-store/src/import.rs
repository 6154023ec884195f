//! Bulk import of one input as one all-or-nothing transaction.
//!
//! Parsing runs on its own thread (it is the most expensive step) and hands
//! events over in batches; this thread hashes, compresses and writes. By
//! default the first bad line aborts the input and nothing from it is kept;
//! with `skip_invalid` bad lines are counted and skipped.

use crate::{Store, StoreError};
use kaudit_event::reader::{EventReader, ReadError};
use kaudit_event::{Event, MicroTime};
use std::sync::mpsc;

/// An ingest-time transform (the audit-policy hook): returns the event to
/// store, possibly rewritten or redacted, or `None` to drop it.
///
/// POLICY HOOK: `kaudit import --policy FILE` will pass kaudit-policy's
/// evaluator here; the store itself does not depend on kaudit-policy.
pub type Transform<'a> = &'a mut dyn FnMut(Event) -> Option<Event>;

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

const BATCH: usize = 1024;

/// Imports one input; `progress(events, bytes)` is called as batches land.
pub fn import_input(
    store: &Store,
    reader: EventReader,
    opts: &ImportOptions,
    mut transform: Option<Transform<'_>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<InputOutcome, ImportError> {
    let (tx, rx) = mpsc::sync_channel::<Vec<Result<Event, ReadError>>>(8);
    let parser = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(BATCH);
        for item in reader {
            let fatal = matches!(&item, Err(e) if !e.is_recoverable());
            batch.push(item);
            if batch.len() == BATCH || fatal {
                if tx
                    .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .is_err()
                {
                    return;
                }
                if fatal {
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
    });
    let result = (|| {
        let mut txn = store.transaction()?;
        let mut out = InputOutcome::default();
        let received = MicroTime::now();
        for batch in rx.iter() {
            let (mut n, mut b) = (0u64, 0u64);
            for item in batch {
                match item {
                    Ok(ev) => {
                        out.events += 1;
                        n += 1;
                        b += ev.bytes().len() as u64 + 1;
                        let ev = match transform.as_mut() {
                            Some(t) => match t(ev) {
                                Some(e) => e,
                                None => {
                                    out.filtered += 1;
                                    continue;
                                }
                            },
                            None => ev,
                        };
                        if !txn.push_parts(&opts.cluster, ev.bytes(), received)? {
                            out.duplicates += 1;
                        }
                    }
                    Err(e) if e.is_recoverable() && opts.skip_invalid => {
                        out.invalid += 1;
                        if out.invalid > opts.max_invalid {
                            return Err(ImportError::TooManyInvalid(opts.max_invalid));
                        }
                    }
                    Err(e) if e.is_recoverable() => return Err(ImportError::Invalid(e)),
                    Err(e) => return Err(ImportError::Read(e)),
                }
            }
            out.bytes += b;
            progress(n, b);
        }
        let appended = txn.commit()?;
        out.seqs = appended.seqs;
        Ok(out)
    })();
    drop(rx);
    let _ = parser.join();
    result
}
