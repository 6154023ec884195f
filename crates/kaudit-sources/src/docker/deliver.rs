//! Delivering the proxy's and the plugin's records into the ingest pipeline
//! in-process: a channel the connection threads send to, and one thread
//! that takes what has queued up as a batch and ingests it, retrying with
//! backoff while the store is unavailable (nothing is dropped; a full
//! channel makes the callers wait).

use super::proxy::{ChannelRecorder, Recorded};
use crate::pipeline::{IngestError, Ingestor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Records queued before callers wait.
pub const QUEUE: usize = 16_384;
/// Most records ingested as one batch.
pub const MAX_BATCH: usize = 1000;

/// A recorder and the thread that ingests what it is given, as `cluster`
/// with source label `source`. The thread ends once `stop` is set and the
/// queue is drained, or every sender is gone.
pub fn ingesting(
    ingest: Arc<Ingestor>,
    cluster: String,
    source: String,
    stop: Arc<AtomicBool>,
) -> (Arc<ChannelRecorder>, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let h = std::thread::spawn(move || drain(rx, &ingest, &cluster, &source, &stop));
    (Arc::new(ChannelRecorder(tx)), h)
}

fn drain(
    rx: Receiver<Recorded>,
    ingest: &Ingestor,
    cluster: &str,
    source: &str,
    stop: &AtomicBool,
) {
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => r.event(),
            Err(RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r.event()),
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match ingest.ingest_events(batch.clone(), Vec::new(), cluster, source) {
                Ok(_) => break,
                Err(IngestError::Unavailable(e)) | Err(IngestError::QuarantineFull(e)) => {
                    tracing::warn!(source, error = %e, "docker records: store unavailable; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(source, error = %e, "docker records refused");
                    break;
                }
            }
        }
    }
}
