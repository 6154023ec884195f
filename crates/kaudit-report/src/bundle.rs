//! The evidence bundle (`.tar.zst`) and its offline verifier.
//!
//! | file | holds |
//! |---|---|
//! | `report.json` | the [`Report`] |
//! | `events/<seq>.json` | the cited event's exact stored bytes |
//! | `proofs/<seq>.json` | `{seq, cluster, received_us, tree_size, hashes}`: what binds the event into leaf `seq` and its audit path to the anchor |
//! | `checkpoints/<size>.note` | signed checkpoints (anchor, first, and the period's) |
//! | `consistency.json` | `{old_size, new_size, hashes}`: first checkpoint → anchor |
//! | `prune.note` | the signed prune record, when the store was pruned |
//! | `checkpoint.pub` | the log's verifier key |
//! | `manifest.txt` | `<sha256 hex> <file>` for every other file |
//! | `MANIFEST` | a signed note: `kaudit evidence bundle v1`, then the SHA-256 of `manifest.txt` |
//!
//! [`verify`] needs nothing but these bytes (and, to trust the signer, the
//! verifier key obtained some other way): SHA-256, Ed25519 and the RFC 6962
//! proof checks of `kaudit-store`.

use crate::build::Evidence;
use crate::model::{Report, Row};
use crate::template::SectionKind;
use crate::{tar, ReportError};
use kaudit_event::{Event, MicroTime};
use kaudit_store::merkle::{self, Hash};
use kaudit_store::note::{Checkpoint, Signer25519, Verifier25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// First line of the manifest.
pub const MANIFEST_HEADER: &str = "kaudit evidence bundle v1";
/// Most proof hashes accepted per proof (a tree of 2^64 leaves needs 64).
const MAX_PROOF_HASHES: usize = 128;

/// `proofs/<seq>.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    /// Leaf index.
    pub seq: u64,
    /// Cluster bound in the leaf.
    pub cluster: String,
    /// Receive time bound in the leaf (µs since the epoch).
    pub received_us: i64,
    /// Tree size of the checkpoint the path leads to.
    pub tree_size: u64,
    /// The audit path, base64.
    pub hashes: Vec<String>,
}

/// `consistency.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyFile {
    /// The first checkpoint's size.
    pub old_size: u64,
    /// The anchor's size.
    pub new_size: u64,
    /// The proof, base64.
    pub hashes: Vec<String>,
}

fn b64(h: &Hash) -> String {
    kaudit_store::base64_encode(h)
}

/// Every file of the bundle but the manifest, in name order.
pub fn files(
    ev: &Evidence,
    verifier: &Verifier25519,
) -> Result<BTreeMap<String, Vec<u8>>, ReportError> {
    let mut out = BTreeMap::new();
    out.insert(
        "report.json".to_string(),
        serde_json::to_vec_pretty(&ev.report)?,
    );
    for (seq, c) in &ev.cited {
        out.insert(format!("events/{seq}.json"), c.event.clone());
        let p = ProofFile {
            seq: *seq,
            cluster: c.cluster.clone(),
            received_us: c.received.micros(),
            tree_size: ev.report.anchor.size,
            hashes: c.proof.iter().map(b64).collect(),
        };
        out.insert(format!("proofs/{seq}.json"), serde_json::to_vec_pretty(&p)?);
    }
    for (size, note) in &ev.checkpoints {
        out.insert(format!("checkpoints/{size}.note"), note.as_bytes().to_vec());
    }
    let c = ConsistencyFile {
        old_size: ev.report.first.size,
        new_size: ev.report.anchor.size,
        hashes: ev.consistency.iter().map(b64).collect(),
    };
    out.insert("consistency.json".into(), serde_json::to_vec_pretty(&c)?);
    if let Some(n) = &ev.prune_note {
        out.insert("prune.note".into(), n.as_bytes().to_vec());
    }
    out.insert(
        "checkpoint.pub".into(),
        format!("{}\n", verifier.text()).into_bytes(),
    );
    Ok(out)
}

/// `manifest.txt` over `files`: `<sha256 hex> <name>` per file.
pub fn manifest_list(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut text = String::new();
    for (name, data) in files {
        if name == "MANIFEST" || name == "manifest.txt" {
            continue;
        }
        text.push_str(&hex::encode(Sha256::digest(data)));
        text.push(' ');
        text.push_str(name);
        text.push('\n');
    }
    text
}

/// Adds `manifest.txt` (every other file's SHA-256) and `MANIFEST`, the
/// signed note `kaudit evidence bundle v1\n<sha256 of manifest.txt>\n`
/// (short, so it stays within a signed note's size limit however many
/// files there are), replacing any earlier ones.
pub fn sign(files: &mut BTreeMap<String, Vec<u8>>, signer: &Signer25519) {
    let list = manifest_list(files);
    let text = format!(
        "{MANIFEST_HEADER}\n{}\n",
        hex::encode(Sha256::digest(list.as_bytes()))
    );
    files.insert("manifest.txt".into(), list.into_bytes());
    files.insert("MANIFEST".into(), signer.sign_note(&text).into_bytes());
}

/// The bundle's bytes: a zstd-compressed tar of [`files`] and the manifest.
pub fn write(ev: &Evidence, signer: &Signer25519) -> Result<Vec<u8>, ReportError> {
    let mut files = files(ev, &signer.verifier())?;
    sign(&mut files, signer);
    let mut t = Vec::new();
    for (name, data) in &files {
        tar::append(&mut t, name, data)?;
    }
    tar::finish(&mut t);
    zstd::encode_all(&t[..], 9).map_err(|source| ReportError::Io {
        context: "compressing the bundle".into(),
        source,
    })
}

/// One thing that did not verify, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The bundle file concerned.
    pub file: String,
    /// The report section, when a row is concerned.
    pub section: Option<String>,
    /// The row's auditID, when a row is concerned.
    pub audit_id: Option<String>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(s) = &self.section {
            write!(f, " (section {s}")?;
            if let Some(a) = &self.audit_id {
                write!(f, ", auditID {a}")?;
            }
            f.write_str(")")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// What a successful verification established.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The report, now known to be the signed one.
    pub report: Report,
    /// Rows whose event and proof checked.
    pub rows: usize,
    /// Distinct events checked.
    pub events: usize,
    /// Checkpoints whose signature checked.
    pub checkpoints: usize,
    /// The key the signatures were checked with.
    pub key: String,
    /// Whether that key was given by the caller (trusted) rather than taken
    /// from the bundle itself (which only proves the bundle is consistent
    /// with itself, not who made it).
    pub key_trusted: bool,
}

/// Reads a bundle's entries (bounded decompression).
pub fn read(bundle: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, ReportError> {
    use std::io::Read;
    let dec = zstd::stream::Decoder::new(bundle)
        .map_err(|e| ReportError::Bundle(format!("not zstd: {e}")))?;
    let mut raw = Vec::new();
    dec.take(tar::MAX_TOTAL + 1)
        .read_to_end(&mut raw)
        .map_err(|e| ReportError::Bundle(format!("not a zstd stream: {e}")))?;
    if raw.len() as u64 > tar::MAX_TOTAL {
        return Err(ReportError::Bundle(format!(
            "larger than {} bytes uncompressed",
            tar::MAX_TOTAL
        )));
    }
    Ok(tar::read(&raw)?.into_iter().collect())
}

/// Checks a bundle offline: every file's hash against the signed manifest,
/// the manifest's and every checkpoint's signature, the consistency proof,
/// every cited row's inclusion proof and fields. Returns every failure found,
/// each naming its file (and section and auditID for rows).
pub fn verify(bundle: &[u8], trusted: Option<&Verifier25519>) -> Result<Verified, Vec<Failure>> {
    let files = read(bundle).map_err(|e| vec![fail("bundle", e.to_string())])?;
    verify_files(&files, trusted)
}

fn fail(file: &str, what: impl Into<String>) -> Failure {
    Failure {
        file: file.to_string(),
        section: None,
        audit_id: None,
        what: what.into(),
    }
}

fn decode_hashes(list: &[String], file: &str) -> Result<Vec<Hash>, Failure> {
    use base64::Engine;
    if list.len() > MAX_PROOF_HASHES {
        return Err(fail(file, "too many proof hashes"));
    }
    list.iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h)
                .ok()
                .and_then(|v| <Hash>::try_from(v.as_slice()).ok())
                .ok_or_else(|| fail(file, format!("proof hash {h:?} is not 32 bytes of base64")))
        })
        .collect()
}

/// [`verify`] over already-read entries (the HTML's embedded files too).
pub fn verify_files(
    files: &BTreeMap<String, Vec<u8>>,
    trusted: Option<&Verifier25519>,
) -> Result<Verified, Vec<Failure>> {
    let mut bad = Vec::new();
    let text = |name: &str| -> Result<&str, Failure> {
        let b = files
            .get(name)
            .ok_or_else(|| fail(name, "missing from the bundle"))?;
        std::str::from_utf8(b).map_err(|_| fail(name, "not UTF-8"))
    };
    // The key: the caller's, else the bundle's own.
    let own = text("checkpoint.pub").and_then(|t| {
        Verifier25519::from_text(t).map_err(|e| fail("checkpoint.pub", e.to_string()))
    });
    let key = match (trusted, own) {
        (Some(k), Ok(o)) => {
            if o.text() != k.text() {
                bad.push(fail(
                    "checkpoint.pub",
                    format!(
                        "the bundle names key {} but the trusted key is {}",
                        o.text(),
                        k.text()
                    ),
                ));
            }
            k.clone()
        }
        (Some(k), Err(e)) => {
            bad.push(e);
            k.clone()
        }
        (None, Ok(o)) => o,
        (None, Err(e)) => return Err(vec![e]),
    };
    // The manifest.
    let manifest = match text("MANIFEST") {
        Ok(m) => m,
        Err(e) => return Err(vec![e]),
    };
    let body = match key.verify_note(manifest) {
        Ok(b) => b,
        Err(e) => {
            bad.push(fail("MANIFEST", format!("signature: {e}")));
            manifest.split("\n\n").next().unwrap_or("")
        }
    };
    let mut lines = body.lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        bad.push(fail(
            "MANIFEST",
            format!("does not start with {MANIFEST_HEADER:?}"),
        ));
    }
    let list = files
        .get("manifest.txt")
        .map(Vec::as_slice)
        .unwrap_or_default();
    if lines.next() != Some(hex::encode(Sha256::digest(list)).as_str()) {
        bad.push(fail(
            "manifest.txt",
            "SHA-256 differs from the one the signed MANIFEST names",
        ));
    }
    let mut listed = BTreeMap::new();
    for l in String::from_utf8_lossy(list).lines() {
        match l.split_once(' ') {
            Some((h, name)) => {
                listed.insert(name.to_string(), h.to_string());
            }
            None => bad.push(fail("MANIFEST", format!("malformed line {l:?}"))),
        }
    }
    for (name, data) in files {
        if name == "MANIFEST" || name == "manifest.txt" {
            continue;
        }
        match listed.get(name) {
            None => bad.push(fail(name, "not listed in the signed manifest")),
            Some(h) if *h != hex::encode(Sha256::digest(data)) => bad.push(fail(
                name,
                "SHA-256 differs from the signed manifest: the file was changed",
            )),
            Some(_) => {}
        }
    }
    for name in listed.keys() {
        if !files.contains_key(name) {
            bad.push(fail(
                name,
                "listed in the manifest but missing from the bundle",
            ));
        }
    }
    // The report.
    let report: Report = match files.get("report.json").map(|b| serde_json::from_slice(b)) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            bad.push(fail("report.json", format!("not a report: {e}")));
            return Err(bad);
        }
        None => {
            bad.push(fail("report.json", "missing from the bundle"));
            return Err(bad);
        }
    };
    // Checkpoints.
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut checked = 0;
    for (name, data) in files.range("checkpoints/".to_string().."checkpoints0".to_string()) {
        let Ok(note) = std::str::from_utf8(data) else {
            bad.push(fail(name, "not UTF-8"));
            continue;
        };
        match key
            .verify_note(note)
            .map_err(|e| e.to_string())
            .and_then(|t| Checkpoint::parse(t).map_err(|e| e.to_string()))
        {
            Ok(cp) => {
                if *name != format!("checkpoints/{}.note", cp.size) {
                    bad.push(fail(
                        name,
                        format!("holds the checkpoint of tree size {}", cp.size),
                    ));
                }
                roots.insert(cp.size, cp.root);
                checked += 1;
            }
            Err(e) => bad.push(fail(name, format!("checkpoint: {e}"))),
        }
    }
    if let Some(p) = files.get("prune.note") {
        match std::str::from_utf8(p)
            .map_err(|e| e.to_string())
            .and_then(|n| key.verify_note(n).map_err(|e| e.to_string()))
        {
            Ok(_) => {}
            Err(e) => bad.push(fail("prune.note", format!("prune record: {e}"))),
        }
    }
    let anchor_root = roots.get(&report.anchor.size).copied();
    if anchor_root.is_none() {
        bad.push(fail(
            &report.anchor.file,
            "the anchor checkpoint is missing or does not verify",
        ));
    }
    // Consistency first → anchor.
    match files
        .get("consistency.json")
        .map(|b| serde_json::from_slice::<ConsistencyFile>(b))
    {
        Some(Ok(c)) => {
            if c.old_size != report.first.size || c.new_size != report.anchor.size {
                bad.push(fail(
                    "consistency.json",
                    "its sizes are not the report's first and anchor checkpoints",
                ));
            }
            match (
                decode_hashes(&c.hashes, "consistency.json"),
                roots.get(&c.old_size),
                roots.get(&c.new_size),
            ) {
                (Ok(h), Some(o), Some(n)) => {
                    if !merkle::verify_consistency(c.old_size, c.new_size, o, n, &h) {
                        bad.push(fail("consistency.json", format!(
                            "the consistency proof from tree size {} to {} does not verify: the log was rewritten between the checkpoints",
                            c.old_size, c.new_size
                        )));
                    }
                }
                (Err(e), _, _) => bad.push(e),
                _ => bad.push(fail(
                    "consistency.json",
                    "a checkpoint it ties is missing or does not verify",
                )),
            }
        }
        Some(Err(e)) => bad.push(fail("consistency.json", format!("malformed: {e}"))),
        None => bad.push(fail("consistency.json", "missing from the bundle")),
    }
    // Rows.
    let mut rows = 0;
    let mut events = std::collections::BTreeSet::new();
    for s in &report.sections {
        let listed = s.rows.len() as u64;
        if listed + s.omitted + s.unproven != s.count
            && matches!(
                s.kind,
                SectionKind::Events | SectionKind::Denied | SectionKind::Alerts
            )
        {
            bad.push(Failure {
                file: "report.json".into(),
                section: Some(s.id.clone()),
                audit_id: None,
                what: format!(
                    "count {} is not rows listed {} + omitted {} + unproven {}",
                    s.count, listed, s.omitted, s.unproven
                ),
            });
        }
        let query = match &s.query {
            Some(q) => match kaudit_query::Query::parse(q) {
                Ok(q) => Some(q),
                Err(e) => {
                    bad.push(Failure {
                        file: "report.json".into(),
                        section: Some(s.id.clone()),
                        audit_id: None,
                        what: format!("query does not parse: {e}"),
                    });
                    None
                }
            },
            None => None,
        };
        for row in &s.rows {
            let r = check_row(files, &report, anchor_root.as_ref(), row, query.as_ref());
            if let Err((file, what)) = r {
                bad.push(Failure {
                    file,
                    section: Some(s.id.clone()),
                    audit_id: Some(row.audit_id.clone()),
                    what,
                });
            } else {
                rows += 1;
                events.insert(row.seq);
            }
        }
    }
    if bad.is_empty() {
        Ok(Verified {
            report,
            rows,
            events: events.len(),
            checkpoints: checked,
            key: key.text(),
            key_trusted: trusted.is_some(),
        })
    } else {
        Err(bad)
    }
}

fn check_row(
    files: &BTreeMap<String, Vec<u8>>,
    report: &Report,
    anchor_root: Option<&Hash>,
    row: &Row,
    query: Option<&kaudit_query::Query>,
) -> Result<(), (String, String)> {
    let ev_name = format!("events/{}.json", row.seq);
    let pr_name = format!("proofs/{}.json", row.seq);
    let event = files
        .get(&ev_name)
        .ok_or((ev_name.clone(), "missing from the bundle".to_string()))?;
    let proof: ProofFile = files
        .get(&pr_name)
        .ok_or((pr_name.clone(), "missing from the bundle".to_string()))
        .and_then(|b| {
            serde_json::from_slice(b).map_err(|e| (pr_name.clone(), format!("malformed: {e}")))
        })?;
    if proof.seq != row.seq || proof.tree_size != report.anchor.size {
        return Err((
            pr_name,
            format!(
                "proves leaf {} in tree size {}, not leaf {} in the anchor",
                proof.seq, proof.tree_size, row.seq
            ),
        ));
    }
    let hashes = decode_hashes(&proof.hashes, &pr_name).map_err(|f| (f.file, f.what))?;
    let mut leaf = Vec::new();
    kaudit_store::record::write_leaf(
        &proof.cluster,
        event,
        MicroTime(proof.received_us),
        proof.seq,
        &mut leaf,
    );
    let root = anchor_root.ok_or((
        report.anchor.file.clone(),
        "no verified anchor checkpoint to prove against".to_string(),
    ))?;
    if !merkle::verify_inclusion(
        &merkle::leaf_hash(&leaf),
        proof.seq,
        proof.tree_size,
        &hashes,
        root,
    ) {
        return Err((
            format!("{ev_name}, {pr_name}"),
            format!("inclusion proof of record {} does not lead to the anchor checkpoint's root: the event or its proof was changed", row.seq),
        ));
    }
    let ev = Event::from_json(event)
        .map_err(|e| (ev_name.clone(), format!("not an audit event: {e}")))?;
    let mut want = Row::of_event(row.seq, &proof.cluster, MicroTime(proof.received_us), &ev);
    want.rule.clone_from(&row.rule);
    want.priority.clone_from(&row.priority);
    if want != *row {
        return Err((
            "report.json".into(),
            format!("the row's fields differ from event {ev_name}"),
        ));
    }
    if let Some(q) = query {
        if !q.matches(&ev, &proof.cluster) {
            return Err((
                ev_name,
                "the event does not match the section's query".into(),
            ));
        }
    }
    Ok(())
}
