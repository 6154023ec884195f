//! Pruning by retention: the signed prune record, the edge hashes kept for
//! the group straddling the boundary, and deleting old segments.

use super::files::{io_err, read_small, undecodable, write_atomic};
use super::proofs::DataGroups;
use super::{lock_poison, paths, Store};
use crate::merkle::{self, Hash};
use crate::note::Verifier25519;
use crate::retention::{Hold, PruneOutcome, Retention};
use crate::tree::GROUP;
use crate::{StoreError, StoreResult};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The signed prune record: everything below `before` was deleted on purpose.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PruneRecord {
    /// First record still stored.
    pub before: u64,
    /// When.
    pub time: String,
    /// Signed note over `kaudit prune\n<origin>\n<before>\n<base64 edge hash>\n`.
    pub note: String,
}

/// Reads and checks the prune record.
pub fn read_pruned(dir: &Path, verifier: &Verifier25519) -> StoreResult<Option<PruneRecord>> {
    let p = paths::pruned(dir);
    if !p.exists() {
        return Ok(None);
    }
    let data = read_small(&p, 1 << 16)?;
    let rec: PruneRecord =
        serde_json::from_slice(&data).map_err(|e| undecodable(p.display(), e))?;
    let text = verifier.verify_note(&rec.note).map_err(|e| {
        undecodable(
            format_args!("{}: prune record is not authentic", p.display()),
            e,
        )
    })?;
    let want_prefix = format!("kaudit prune\n{}\n{}\n", verifier.name(), rec.before);
    if !text.starts_with(&want_prefix) {
        return Err(StoreError::Corrupt(format!(
            "{}: prune record's signed text does not match its fields",
            p.display()
        )));
    }
    Ok(Some(rec))
}

/// Reads the edge hashes kept at prune time and checks them against the signed prune record.
pub fn read_edge(dir: &Path, rec: &PruneRecord) -> StoreResult<(u64, Vec<Hash>)> {
    let first = rec.before / GROUP * GROUP;
    let n = (rec.before - first) as usize;
    if n == 0 {
        return Ok((first, Vec::new()));
    }
    let p = paths::pruned_edge(dir);
    let data = read_small(&p, 256 * 32)?;
    if data.len() != n * 32 {
        return Err(StoreError::Corrupt(format!(
            "{}: want {n} hashes, found {} bytes",
            p.display(),
            data.len()
        )));
    }
    let hashes: Vec<Hash> = data
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    use base64::Engine;
    let digest = base64::engine::general_purpose::STANDARD.encode(sha2_digest(&data));
    if !rec.note.contains(&format!("\n{digest}\n")) {
        return Err(StoreError::Corrupt(format!(
            "{}: kept edge hashes do not match the signed prune record",
            p.display()
        )));
    }
    Ok((first, hashes))
}

/// Keys copied per read and write when pruning the positional keys file.
const COPY_KEYS: u64 = 1 << 16;

/// Writes the `n` keys from key `from` of the positional keys file `src`
/// durably to a new file `dst` (through a temporary name) at key `at`, in a
/// file of `len` keys (what is before `at` is a hole: the runs hold those
/// keys), a chunk at a time, and opens it for the writer: prune's memory is
/// one chunk whatever the store's size.
fn copy_keys(
    src: &File,
    (from, n): (u64, u64),
    at: u64,
    len: u64,
    dst: &Path,
) -> StoreResult<File> {
    let (tmp, out) = super::dedupe::create_tmp(dst)?;
    out.set_len(len * 16).map_err(io_err(tmp.display()))?;
    let mut buf = vec![0u8; (COPY_KEYS * 16) as usize];
    let mut done = 0u64;
    while done < n {
        let k = (n - done).min(COPY_KEYS);
        let chunk = &mut buf[..(k * 16) as usize];
        src.read_exact_at(chunk, (from + done) * 16)
            .map_err(io_err("dedupe index"))?;
        out.write_all_at(chunk, (at + done) * 16)
            .map_err(io_err(tmp.display()))?;
        done += k;
    }
    out.sync_all().map_err(io_err(tmp.display()))?;
    std::fs::rename(&tmp, dst).map_err(io_err(dst.display()))?;
    if let Some(d) = dst.parent() {
        File::open(d)
            .and_then(|d| d.sync_all())
            .map_err(io_err(d.display()))?;
    }
    Ok(out)
}

fn sha2_digest(data: &[u8]) -> Hash {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

impl Store {
    /// Applies `retention` now, respecting the legal holds kept in the data
    /// directory: what `kaudit prune` and the server's schedule both run.
    pub fn apply_retention(
        &self,
        retention: &Retention,
        dry_run: bool,
    ) -> StoreResult<PruneOutcome> {
        let holds = crate::retention::list_holds(&self.dir)?;
        self.prune(retention, &holds, kaudit_event::MicroTime::now(), dry_run)
    }

    /// Applies retention: deletes whole old segments (never the active one,
    /// never one overlapping a legal hold), keeping the tree verifiable.
    pub fn prune(
        &self,
        retention: &Retention,
        holds: &[Hold],
        now: kaudit_event::MicroTime,
        dry_run: bool,
    ) -> StoreResult<PruneOutcome> {
        self.prune_below(retention, holds, now, dry_run, None)
    }

    /// Applies `retention` as [`Store::apply_retention`] does (with the legal
    /// holds kept in the data directory, through the same signed prune
    /// record), but never deletes a segment holding record `keep_from` or a
    /// later one. A follower that copies records elsewhere (the ClickHouse
    /// shipper's local pruning) passes its durable position, so only records
    /// already copied can go; `why` says in [`PruneOutcome::stopped`] why the
    /// rest stayed.
    pub fn prune_kept_from(
        &self,
        retention: &Retention,
        keep_from: u64,
        why: &str,
        now: kaudit_event::MicroTime,
        dry_run: bool,
    ) -> StoreResult<PruneOutcome> {
        let holds = crate::retention::list_holds(&self.dir)?;
        self.prune_below(retention, &holds, now, dry_run, Some((keep_from, why)))
    }

    fn prune_below(
        &self,
        retention: &Retention,
        holds: &[Hold],
        now: kaudit_event::MicroTime,
        dry_run: bool,
        keep_from: Option<(u64, &str)>,
    ) -> StoreResult<PruneOutcome> {
        use base64::Engine;
        let mut out = PruneOutcome::default();
        let Some(signer) = &self.signer else {
            return Err(StoreError::Key(
                "prune needs the store's signing key".into(),
            ));
        };
        if self.opts.read_only {
            return Err(StoreError::Input("store opened read-only".into()));
        }
        // A checkpoint must cover what is pruned.
        self.checkpoint()?;
        let mut w = self.writer.lock().map_err(lock_poison)?;
        let (k, before, old_first) = {
            let shared = self.shared()?;
            out.before = shared.first_seq;
            let n = shared.segments.len();
            let mut stats = Vec::new();
            for i in 0..n.saturating_sub(1) {
                let end = shared.segments[i + 1].first_seq;
                let bytes = shared.segments[i]
                    .file
                    .metadata()
                    .map(|m| m.len())
                    .unwrap_or(0);
                let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                for b in shared.bundles.iter().filter(|b| b.segment == i) {
                    lo = lo.min(b.min_time);
                    hi = hi.max(b.max_time);
                }
                stats.push((end, bytes, lo, hi));
            }
            let mut total: u64 = shared
                .segments
                .iter()
                .map(|s| s.file.metadata().map(|m| m.len()).unwrap_or(0))
                .sum();
            let mut k = 0;
            for (i, (end, bytes, lo, hi)) in stats.iter().enumerate() {
                let name = shared.segments[i].path.display().to_string();
                if let Some((keep, why)) = keep_from.filter(|(keep, _)| *end > *keep) {
                    out.stopped = Some(format!(
                        "{name} holds record {keep} or later, which stays: {why}"
                    ));
                    break;
                }
                let too_old = retention.max_age_secs.is_some_and(|a| {
                    *hi < now
                        .micros()
                        .saturating_sub((a as i64).saturating_mul(1_000_000))
                });
                let too_big = retention.max_size.is_some_and(|m| total > m);
                if !too_old && !too_big {
                    out.stopped = Some(format!("{name} is within retention"));
                    break;
                }
                if let Some(h) = holds.iter().find(|h| h.overlaps(*lo, *hi)) {
                    out.stopped = Some(format!(
                        "{name} is under legal hold #{} ({})",
                        h.id, h.reason
                    ));
                    break;
                }
                out.removed.push((
                    shared.segments[i].path.clone(),
                    shared.segments[i].first_seq,
                    *end,
                    *bytes,
                ));
                total -= bytes;
                k = i + 1;
            }
            let before = out.removed.last().map_or(shared.first_seq, |r| r.2);
            (k, before, shared.first_seq)
        };
        if k == 0 || dry_run {
            out.before = before;
            return Ok(out);
        }
        // Keep the leaf hashes of the group straddling the boundary.
        let efirst = before / GROUP * GROUP;
        let mut edge_bytes = Vec::new();
        {
            let shared = self.shared()?;
            let src = DataGroups {
                store: self,
                shared: &shared,
            };
            let view = shared.tree.view(&src);
            for i in efirst..before {
                let h = merkle::NodeSource::node(&view, 0, i)?;
                edge_bytes.extend_from_slice(&h);
            }
        }
        write_atomic(&paths::pruned_edge(&self.dir), &edge_bytes, 0o644)?;
        let text = format!(
            "kaudit prune\n{}\n{before}\n{}\n",
            signer.name(),
            base64::engine::general_purpose::STANDARD.encode(sha2_digest(&edge_bytes))
        );
        let rec = PruneRecord {
            before,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            note: signer.sign_note(&text),
        };
        let data = serde_json::to_vec_pretty(&rec).map_err(StoreError::Encode)?;
        write_atomic(&paths::pruned(&self.dir), &data, 0o644)?;
        // Dedupe keys of pruned records go: the runs drop them (streamed),
        // the positional file keeps only the part past the runs (copied a
        // chunk at a time; the part the runs hold is a hole), and the filter
        // is loaded again for the new first record.
        let new_path = paths::dedupe(&self.dir, before);
        if let Some(f) = w.dedupe_file.take() {
            let runs_end = w.dedupe.drop_below(before)?;
            let end = old_first + w.dedupe_len;
            let kept = end.saturating_sub(before);
            let from = runs_end.clamp(before, end.max(before));
            let nf = copy_keys(
                &f,
                (from - old_first, end - from),
                from - before,
                kept,
                &new_path,
            )?;
            w.dedupe_len = kept;
            w.dedupe = super::dedupe::Dedupe::load(
                &self.dir,
                &nf,
                before,
                w.dedupe_len,
                self.opts.dedupe_recent_keys,
            )?;
            w.dedupe_file = Some(nf);
            let _ = std::fs::remove_file(paths::dedupe(&self.dir, old_first));
        }
        {
            let mut shared = self.shared.write().map_err(lock_poison)?;
            shared.segments.drain(..k);
            shared.bundles.retain(|b| b.segment >= k);
            for b in &mut shared.bundles {
                b.segment -= k;
            }
            shared.first_seq = before;
            shared.tree.set_edge(
                efirst,
                edge_bytes
                    .chunks_exact(32)
                    .map(|c| {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(c);
                        h
                    })
                    .collect(),
            );
        }
        if let Some(a) = w.active.as_mut() {
            a.segment -= k;
        }
        if let Ok(mut c) = self.group_cache.lock() {
            *c = None;
        }
        for (p, ..) in &out.removed {
            std::fs::remove_file(p).map_err(io_err(p.display()))?;
        }
        if let Ok(d) = File::open(paths::segments(&self.dir)) {
            let _ = d.sync_all();
        }
        out.before = before;
        Ok(out)
    }
}
