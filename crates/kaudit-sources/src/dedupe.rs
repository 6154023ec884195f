//! Retry deduplication: kube-apiserver resends a whole batch after any error
//! (up to five times), so the same event arrives again, byte for byte.
//! A bounded window of recently stored keys turns those resends into no-ops.
//!
//! The key is the cluster plus a hash of the event's exact bytes, not its
//! (auditID, stage): an aggregated API server logs the same `Audit-ID` as
//! kube-apiserver, clients may set the header themselves, and test data
//! reuses one auditID, so distinct events sharing an auditID and stage must
//! all be kept. Only an identical resend is dropped.
//!
//! The key is computed the way the store computes its own dedupe key and
//! starts its Merkle leaf hash (`kaudit_store::record`, leaf_data layout 1):
//! SHA-256 over `0x00 || 0x01 || cluster length (u16 BE) || cluster || event`.
//! So one SHA-256 pass over an event's bytes serves both: the window takes
//! the first 16 bytes of that prefix's digest, and the hash state after the
//! prefix ([`LeafPrefix`]) travels with the record to the store, which only
//! adds the sequence number and receive time to finish the leaf hash instead
//! of hashing the event again. The store's stored values are unchanged.

use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// 16 bytes of SHA-256 over the key: collisions are not a practical concern
/// and the window stays small in memory.
type KeyHash = [u8; 16];

/// A window of recently stored (cluster, event bytes) keys, bounded both
/// in age and in count, that also knows which keys are being stored right
/// now, so that a resend racing its original waits instead of storing twice.
pub struct DedupeWindow {
    inner: Mutex<Inner>,
    resolved: Condvar,
    max_age: Duration,
    max_keys: usize,
}

#[derive(Default)]
struct Inner {
    committed: HashSet<KeyHash>,
    order: VecDeque<(Instant, KeyHash)>,
    pending: HashSet<KeyHash>,
}

/// How long a claim waits for a racing request to finish before giving up
/// (the caller then answers 503 and the apiserver retries).
const CLAIM_WAIT: Duration = Duration::from_secs(30);

/// RFC 6962's leaf prefix byte, then the store's leaf_data layout version.
const LEAF_START: [u8; 2] = [0x00, 0x01];
/// Longest cluster name the store's leaf_data holds (its `MAX_CLUSTER`).
const MAX_LEAF_CLUSTER: usize = 253;

/// SHA-256 state after `0x00 || leaf_data` up to the end of the event (the
/// store's leaf_data layout 1): what the store needs to finish a record's
/// leaf hash without hashing its event again. Only [`key_and_prefix`] makes
/// one, from the very cluster and bytes the record carries.
#[derive(Clone)]
pub struct LeafPrefix(Sha256);

impl LeafPrefix {
    /// The hash state, for the store to clone and finish.
    pub fn state(&self) -> &Sha256 {
        &self.0
    }
}

impl std::fmt::Debug for LeafPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeafPrefix(..)")
    }
}

/// The key for one event: its cluster and its exact bytes (as stored).
pub fn key(cluster: &str, event_bytes: &[u8]) -> KeyHash {
    key_and_prefix(cluster, event_bytes).0
}

/// The key for one event and, when the store can use it (a cluster name of
/// at most 253 bytes, as the store accepts), the hash state its leaf hash
/// continues from: one SHA-256 pass over the event's bytes for both.
pub fn key_and_prefix(cluster: &str, event_bytes: &[u8]) -> (KeyHash, Option<LeafPrefix>) {
    let c = cluster.as_bytes();
    let mut h = Sha256::new();
    let prefix = if c.len() <= MAX_LEAF_CLUSTER {
        h.update(LEAF_START);
        h.update((c.len() as u16).to_be_bytes());
        h.update(c);
        h.update(event_bytes);
        Some(LeafPrefix(h.clone()))
    } else {
        // The store refuses such a record; still key it unambiguously (a
        // length-prefixed encoding that starts differently from the above).
        for part in [c, event_bytes] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        None
    };
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    (out, prefix)
}

/// A racing request held the same keys for too long.
#[derive(Debug, thiserror::Error)]
#[error("an identical batch has been in flight for more than 30 s")]
pub struct ClaimTimeout;

impl DedupeWindow {
    /// A window remembering keys for `max_age`, at most `max_keys` of them.
    pub fn new(max_age: Duration, max_keys: usize) -> Self {
        DedupeWindow {
            inner: Mutex::new(Inner::default()),
            resolved: Condvar::new(),
            max_age,
            max_keys: max_keys.max(1),
        }
    }

    /// Claims the keys of a batch: for each, `true` when it is new (now held
    /// by the caller, who must [`commit`](Self::commit) or
    /// [`release`](Self::release) it) and `false` when it was already stored
    /// (or repeats an earlier key of the same batch). Waits while another
    /// request holds any of them.
    pub fn claim(&self, keys: &[KeyHash]) -> Result<Vec<bool>, ClaimTimeout> {
        let deadline = Instant::now() + CLAIM_WAIT;
        let mut g = self.lock();
        loop {
            self.expire(&mut g, Instant::now());
            if !keys.iter().any(|k| g.pending.contains(k)) {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClaimTimeout);
            }
            g = self
                .resolved
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let mut fresh = Vec::with_capacity(keys.len());
        for k in keys {
            let new = !g.committed.contains(k) && g.pending.insert(*k);
            fresh.push(new);
        }
        Ok(fresh)
    }

    /// Marks claimed keys as durably stored.
    pub fn commit(&self, keys: impl IntoIterator<Item = KeyHash>) {
        let now = Instant::now();
        let mut g = self.lock();
        for k in keys {
            g.pending.remove(&k);
            if g.committed.insert(k) {
                g.order.push_back((now, k));
            }
        }
        self.expire(&mut g, now);
        drop(g);
        self.resolved.notify_all();
    }

    /// Gives claimed keys up (the append failed): a retry may store them.
    pub fn release(&self, keys: impl IntoIterator<Item = KeyHash>) {
        let mut g = self.lock();
        for k in keys {
            g.pending.remove(&k);
        }
        drop(g);
        self.resolved.notify_all();
    }

    /// Number of stored keys remembered.
    pub fn len(&self) -> usize {
        self.lock().committed.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves consistent sets; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expire(&self, g: &mut Inner, now: Instant) {
        while let Some((t, k)) = g.order.front().copied() {
            if g.order.len() > self.max_keys || now.duration_since(t) > self.max_age {
                g.order.pop_front();
                g.committed.remove(&k);
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn remembers_within_bounds() {
        let w = DedupeWindow::new(Duration::from_secs(60), 3);
        let a = key("c", b"event one");
        let b = key("c", b"event two");
        let c = key("other", b"event one");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(w.claim(&[a, b, a]).unwrap(), [true, true, false]);
        w.commit([a, b]);
        assert_eq!(w.claim(&[a, c]).unwrap(), [false, true]);
        w.release([c]);
        assert_eq!(
            w.claim(&[c]).unwrap(),
            [true],
            "released keys can be stored by a retry"
        );
        w.commit([c]);
        let (d, e) = (key("c", b"2"), key("c", b"3"));
        w.claim(&[d, e]).unwrap();
        w.commit([d, e]);
        assert_eq!(w.len(), 3);
        assert_eq!(
            w.claim(&[a]).unwrap(),
            [true],
            "oldest key evicted by the count bound"
        );
        let short = DedupeWindow::new(Duration::from_millis(1), 100);
        short.claim(&[a]).unwrap();
        short.commit([a]);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.claim(&[a]).unwrap(), [true], "expired by age");
    }

    #[test]
    fn a_racing_resend_waits_for_the_original() {
        let w = Arc::new(DedupeWindow::new(Duration::from_secs(60), 100));
        let a = key("c", b"event");
        assert_eq!(w.claim(&[a]).unwrap(), [true]);
        let w2 = w.clone();
        let racer = std::thread::spawn(move || w2.claim(&[a]).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        w.commit([a]);
        assert_eq!(
            racer.join().unwrap(),
            [false],
            "the resend sees the original stored"
        );
    }

    #[test]
    fn key_parts_cannot_be_confused() {
        assert_ne!(key("ab", b"c"), key("a", b"bc"));
        let long = "x".repeat(300);
        assert_ne!(key(&long, b"e"), key(&long[..299], b"xe"));
        assert!(key_and_prefix(&long, b"e").1.is_none());
    }

    #[test]
    fn key_is_the_leaf_prefix_digest() {
        // The layout the store hashes: 0x00, version 1, u16 cluster length,
        // cluster, event. Written out here by hand, independently.
        let (k, prefix) = key_and_prefix("prod", b"{\"kind\":\"Event\"}");
        let mut manual = vec![0u8, 1, 0, 4];
        manual.extend_from_slice(b"prod{\"kind\":\"Event\"}");
        let want = Sha256::digest(&manual);
        assert_eq!(k[..], want[..16]);
        let prefix = prefix.expect("short cluster names get a prefix");
        assert_eq!(prefix.state().clone().finalize(), want);
    }
}
