//! A generated month with incidents: the report lists exactly the incidents'
//! auditIDs, its bundle verifies offline, and a changed byte anywhere a
//! reader relies on (cited event, proof, count, checkpoint) is caught and
//! named.

use kaudit_event::MicroTime;
use kaudit_gen::IncidentKind;
use kaudit_index::EmbeddedBackend;
use kaudit_report::{build, bundle, tar, Evidence, Inputs, ReportRequest, Template};
use kaudit_store::note::Signer25519;
use kaudit_store::{Record, Store, StoreOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

struct Fx {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    backend: EmbeddedBackend,
    incidents: Vec<kaudit_gen::Incident>,
}

fn fixture(n: u64, opts: StoreOptions) -> Fx {
    fixture_cp(n, opts, false)
}

/// `mid`: also sign a checkpoint after the first half of the events, so a
/// report whose period starts before it has a real consistency proof.
fn fixture_cp(n: u64, opts: StoreOptions, mid: bool) -> Fx {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), opts).expect("open store");
    let mut cfg = kaudit_gen::GenConfig::new(7);
    cfg.events = Some(n);
    cfg.clusters = kaudit_gen::default_cluster_names(2);
    cfg.spread_incidents();
    let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
    let names = g.cluster_names().to_vec();
    let mut line = Vec::new();
    let mut i = 0i64;
    let mut batch = Vec::new();
    while let Some(c) = g.next_into(&mut line) {
        batch.push(Record {
            cluster: names[c].clone(),
            received: MicroTime(1_767_603_600_000_000 + i),
            event: line.clone(),
        });
        line.clear();
        i += 1;
        if batch.len() == 500 {
            store
                .append_batch(std::mem::take(&mut batch))
                .expect("append");
            if mid && i as u64 == n / 2 / 500 * 500 {
                store.checkpoint().expect("mid checkpoint");
            }
        }
    }
    store.append_batch(batch).expect("append");
    store.checkpoint().expect("checkpoint");
    let incidents = g.incidents().to_vec();
    let store = Arc::new(store);
    let backend = EmbeddedBackend::open(dir.path(), store.clone()).expect("backend");
    backend.catch_up().expect("index");
    Fx {
        dir,
        store,
        backend,
        incidents,
    }
}

fn report(fx: &Fx, template: &str) -> Evidence {
    let (since, until) = kaudit_report::parse_month("2026-01").expect("month");
    report_over(fx, template, since, until)
}

fn report_over(fx: &Fx, template: &str, since: i64, until: i64) -> Evidence {
    let req = ReportRequest {
        template: Template::load(template).expect("template"),
        since,
        until,
        clusters: Vec::new(),
        max_rows: Some(5000),
        verify_store: true,
        now: MicroTime::parse("2026-02-01T00:00:00Z").expect("now"),
        budget: None,
    };
    let inputs = Inputs {
        store: &fx.store,
        backend: &fx.backend,
        alerts: None,
        quarantined: Vec::new(),
    };
    build(&req, &inputs).expect("report")
}

fn signer(fx: &Fx) -> Signer25519 {
    kaudit_store::load_signer(fx.dir.path(), &StoreOptions::default(), false)
        .expect("key")
        .expect("store has a signing key")
}

fn section_ids(ev: &Evidence, id: &str) -> BTreeSet<String> {
    let s = ev
        .report
        .sections
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no section {id}"));
    assert_eq!(s.omitted, 0, "section {id} omitted rows");
    assert_eq!(s.unproven, 0, "section {id} has unproven rows");
    s.rows.iter().map(|r| r.audit_id.clone()).collect()
}

fn incident_ids(fx: &Fx, kind: IncidentKind) -> BTreeSet<String> {
    fx.incidents
        .iter()
        .filter(|i| i.kind == kind)
        .flat_map(|i| i.audit_ids.iter().cloned())
        .collect()
}

#[test]
fn sections_list_exactly_the_incidents() {
    let fx = fixture(12_000, StoreOptions::default());
    let kinds: BTreeSet<&str> = fx.incidents.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds.len(), IncidentKind::ALL.len(), "every kind injected");
    let ev = report(&fx, "pci-dss");
    // Sections whose events only incidents cause: exactly their auditIDs.
    for (section, kind) in [
        ("privileged", IncidentKind::PrivilegedPod),
        ("cluster_admin", IncidentKind::ClusterAdminBinding),
        ("anonymous", IncidentKind::AnonymousAllowed),
        ("webhooks", IncidentKind::WebhookConfigChanged),
        ("events_deleted", IncidentKind::EventsDeleted),
    ] {
        let want = incident_ids(&fx, kind);
        assert!(!want.is_empty());
        assert_eq!(
            section_ids(&ev, section),
            want,
            "section {section} vs incidents {kind:?}"
        );
    }
    // Ordinary traffic mounts host paths, reads secrets and changes RBAC
    // too: there the incidents must all be listed among the rest.
    for (section, kind) in [
        ("exec", IncidentKind::ExecIntoPod),
        ("host_mounts", IncidentKind::HostPathRootMount),
        ("secrets", IncidentKind::SecretEnumeration),
        ("rbac_changes", IncidentKind::ClusterAdminBinding),
    ] {
        let got = section_ids(&ev, section);
        for id in incident_ids(&fx, kind) {
            assert!(
                got.contains(&id),
                "section {section} misses {kind:?} auditID {id}"
            );
        }
    }
    let completeness = ev
        .report
        .sections
        .iter()
        .find(|s| s.id == "completeness")
        .expect("completeness");
    assert_eq!(
        completeness.count,
        fx.store.len(),
        "every stored event is counted once"
    );
    assert_eq!(completeness.clusters.len(), 2);
    let verification = ev
        .report
        .sections
        .iter()
        .find(|s| s.id == "verification")
        .expect("verification");
    assert_eq!(
        verification.facts.get("verified"),
        Some(&serde_json::Value::Bool(true))
    );
}

fn repack(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut t = Vec::new();
    for (name, data) in files {
        tar::append(&mut t, name, data).expect("tar");
    }
    tar::finish(&mut t);
    zstd::encode_all(&t[..], 1).expect("zstd")
}

#[test]
fn bundle_verifies_and_every_tampered_kind_is_named() {
    let fx = fixture(4_000, StoreOptions::default());
    let ev = report(&fx, "pci-dss");
    let signer = signer(&fx);
    let bytes = bundle::write(&ev, &signer).expect("bundle");
    let trusted = signer.verifier();
    let ok = bundle::verify(&bytes, Some(&trusted)).expect("the bundle verifies");
    let listed: usize = ev.report.sections.iter().map(|s| s.rows.len()).sum();
    assert!(listed > 0);
    assert_eq!(ok.rows, listed);
    assert!(ok.key_trusted);
    // Without a trusted key it verifies against its own, and says so.
    assert!(
        !bundle::verify(&bytes, None)
            .expect("self-consistent")
            .key_trusted
    );

    let files = bundle::read(&bytes).expect("read");
    let row = ev
        .report
        .sections
        .iter()
        .flat_map(|s| s.rows.iter())
        .next()
        .expect("a row");
    let seq = row.seq;
    // One byte changed in each kind of file; each failure names the file.
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, String, Edit)> = vec![
        (
            "cited event",
            format!("events/{seq}.json"),
            Box::new(|b: &mut Vec<u8>| {
                let i = b.iter().position(|&c| c == b':').expect("colon");
                b[i + 2] ^= 1;
            }),
        ),
        (
            "proof",
            format!("proofs/{seq}.json"),
            Box::new(|b: &mut Vec<u8>| {
                let i = b
                    .windows(8)
                    .position(|w| w == b"\"hashes\"")
                    .expect("hashes")
                    + 14;
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            }),
        ),
        (
            "count",
            "report.json".to_string(),
            Box::new(|b: &mut Vec<u8>| {
                let i = b
                    .windows(8)
                    .position(|w| w == b"\"count\":")
                    .expect("count")
                    + 9;
                b[i] = if b[i] == b'9' { b'1' } else { b[i] + 1 };
            }),
        ),
        (
            "checkpoint",
            ev.report.anchor.file.clone(),
            Box::new(|b: &mut Vec<u8>| {
                let nl = b.iter().position(|&c| c == b'\n').expect("line");
                let i = nl + b[nl + 1..].iter().position(|&c| c == b'\n').expect("line2") + 3;
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            }),
        ),
    ];
    for (kind, name, edit) in &cases {
        let mut bad = files.clone();
        edit(
            bad.get_mut(name)
                .unwrap_or_else(|| panic!("{name} in bundle")),
        );
        let errs = bundle::verify(&repack(&bad), Some(&trusted))
            .err()
            .unwrap_or_else(|| panic!("a changed {kind} ({name}) verified"));
        assert!(
            errs.iter().any(|e| e.to_string().contains(name.as_str())),
            "{kind}: failures do not name {name}: {errs:?}"
        );
        // Even re-signed with the log's own key (the signer lying), a
        // changed event or proof breaks its inclusion proof, named by row.
        let mut resigned = bad.clone();
        bundle::sign(&mut resigned, &signer);
        let res = bundle::verify(&repack(&resigned), Some(&trusted));
        match *kind {
            "cited event" | "proof" => {
                let errs = res.expect_err("re-signed tampered row verified");
                assert!(
                    errs.iter()
                        .any(|e| e.audit_id.as_deref() == Some(row.audit_id.as_str())),
                    "{kind}: no failure names auditID {}: {errs:?}",
                    row.audit_id
                );
            }
            "checkpoint" => assert!(
                res.is_err(),
                "re-signed manifest over a forged checkpoint verified"
            ),
            _ => {}
        }
    }
    // A manifest signed by another key fails against the trusted key.
    let other = Signer25519::generate(signer.name()).expect("key");
    let mut forged = files.clone();
    bundle::sign(&mut forged, &other);
    let errs =
        bundle::verify(&repack(&forged), Some(&trusted)).expect_err("forged manifest verified");
    assert!(errs.iter().any(|e| e.file == "MANIFEST"), "{errs:?}");
}

#[test]
fn html_embeds_the_bundle_and_the_checker() {
    let fx = fixture(2_000, StoreOptions::default());
    let ev = report(&fx, "soc2");
    let signer = signer(&fx);
    let mut files = bundle::files(&ev, &signer.verifier()).expect("files");
    bundle::sign(&mut files, &signer);
    let html = kaudit_report::html::render(&ev.report, &files);
    assert!(
        html.contains("function verifyInclusion"),
        "the console's checker is inlined"
    );
    assert!(!html.contains("export function"));
    assert!(
        html.contains(&format!("checkpoints/{}.note", ev.report.anchor.size)),
        "footer names the checkpoint"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network reference"
    );
}

#[test]
fn a_pruned_period_says_so_and_still_verifies() {
    let opts = || StoreOptions {
        segment_target_bytes: 64 << 10,
        bundle_max_records: 256,
        ..StoreOptions::default()
    };
    let fx = fixture(6_000, opts());
    let out = fx
        .store
        .prune(
            &kaudit_store::retention::Retention {
                max_age_secs: None,
                max_size: Some(1),
            },
            &[],
            MicroTime::parse("2026-12-01T00:00:00Z").expect("now"),
            false,
        )
        .expect("prune");
    let _ = out;
    assert!(
        kaudit_store::LogReader::first_seq(fx.store.as_ref()) > 0,
        "something was pruned"
    );
    fx.backend.catch_up().expect("index");
    let ev = report(&fx, "pci-dss");
    let ret = ev
        .report
        .sections
        .iter()
        .find(|s| s.id == "retention")
        .expect("retention");
    assert_eq!(
        ret.facts.get("period_pruned"),
        Some(&serde_json::Value::Bool(true))
    );
    assert!(
        ret.notes.iter().any(|n| n.contains("pruned")),
        "{:?}",
        ret.notes
    );
    assert!(ev.prune_note.is_some());
    let signer = signer(&fx);
    let bytes = bundle::write(&ev, &signer).expect("bundle");
    bundle::verify(&bytes, Some(&signer.verifier())).expect("a pruned report verifies");
    for s in &ev.report.sections {
        for r in &s.rows {
            assert!(
                r.seq >= kaudit_store::LogReader::first_seq(fx.store.as_ref()),
                "row {} cites a pruned record",
                r.seq
            );
        }
    }
}

/// From 2026-01-01 to a day from now: checkpoints are signed at the wall
/// clock's time, so this period holds both of a `fixture_cp(.., true)`.
fn through_now() -> (i64, i64) {
    let since = MicroTime::parse("2026-01-01T00:00:00Z")
        .expect("since")
        .micros();
    (since, MicroTime::now().micros() + 86_400_000_000)
}

#[test]
fn the_consistency_proof_ties_the_first_checkpoint_and_a_changed_one_fails() {
    let fx = fixture_cp(3_000, StoreOptions::default(), true);
    assert_eq!(
        fx.store.checkpoints().len(),
        2,
        "a mid and a final checkpoint"
    );
    let (since, until) = through_now();
    let ev = report_over(&fx, "pci-dss", since, until);
    assert!(
        ev.report.first.size < ev.report.anchor.size,
        "first {} anchor {}",
        ev.report.first.size,
        ev.report.anchor.size
    );
    assert!(!ev.consistency.is_empty(), "a real consistency proof");
    assert!(
        ev.report.proof_notes.is_empty(),
        "{:?}",
        ev.report.proof_notes
    );
    let signer = signer(&fx);
    let bytes = bundle::write(&ev, &signer).expect("bundle");
    bundle::verify(&bytes, Some(&signer.verifier())).expect("verifies");
    // A forged proof, even re-signed by the log's key, does not verify.
    let mut files = bundle::read(&bytes).expect("read");
    let c = files.get_mut("consistency.json").expect("consistency.json");
    let i = c
        .windows(8)
        .position(|w| w == b"\"hashes\"")
        .expect("hashes")
        + 14;
    c[i] = if c[i] == b'A' { b'B' } else { b'A' };
    bundle::sign(&mut files, &signer);
    let errs = bundle::verify(&repack(&files), Some(&signer.verifier()))
        .expect_err("a changed consistency proof verified");
    assert!(
        errs.iter().any(|e| e.file == "consistency.json"),
        "{errs:?}"
    );
    // The HTML checks it in the browser with the console's own code.
    let html = kaudit_report::html::render(
        &ev.report,
        &bundle::files(&ev, &signer.verifier()).expect("files"),
    );
    assert!(html.contains("function verifyConsistency"));
    assert!(html.contains("verifyConsistency({"));
}

#[test]
fn a_consistency_proof_into_a_pruned_range_is_said_and_printed() {
    let opts = || StoreOptions {
        segment_target_bytes: 64 << 10,
        bundle_max_records: 256,
        ..StoreOptions::default()
    };
    let fx = fixture_cp(6_000, opts(), true);
    let mid = fx.store.checkpoints()[0].size;
    fx.store
        .prune(
            &kaudit_store::retention::Retention {
                max_age_secs: None,
                max_size: Some(1),
            },
            &[],
            MicroTime::parse("2026-12-01T00:00:00Z").expect("now"),
            false,
        )
        .expect("prune");
    assert!(
        fx.store
            .consistency_proof(mid, fx.store.latest_checkpoint().expect("checkpoint").size)
            .is_err(),
        "the prune took the hashes the proof from {mid} needs"
    );
    fx.backend.catch_up().expect("index");
    let (since, until) = through_now();
    let ev = report_over(&fx, "pci-dss", since, until);
    assert_eq!(
        ev.report.first.size, ev.report.anchor.size,
        "anchor against itself"
    );
    assert_eq!(
        ev.report.proof_notes.len(),
        1,
        "{:?}",
        ev.report.proof_notes
    );
    let note = &ev.report.proof_notes[0];
    assert!(
        note.contains("pruned") && note.contains(&format!("tree size {mid}")),
        "{note}"
    );
    let verification = ev
        .report
        .sections
        .iter()
        .find(|s| s.kind == kaudit_report::SectionKind::Verification)
        .expect("verification section");
    assert!(
        verification.notes.contains(note),
        "{:?}",
        verification.notes
    );
    let signer = signer(&fx);
    let bytes = bundle::write(&ev, &signer).expect("bundle");
    let v = bundle::verify(&bytes, Some(&signer.verifier())).expect("still verifies");
    assert_eq!(
        &v.report.proof_notes, &ev.report.proof_notes,
        "verify hands the note on"
    );
    let html = kaudit_report::html::render(
        &ev.report,
        &bundle::files(&ev, &signer.verifier()).expect("files"),
    );
    assert!(html.contains("id=\"proof-note\""), "the HTML shows it");
}

#[test]
fn an_encrypted_store_is_verified_with_its_key() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("data.key");
    std::fs::write(
        &key,
        kaudit_store::crypt::Cipher::generate_hex().expect("key"),
    )
    .expect("write key");
    let fx = fixture(
        1_500,
        StoreOptions {
            encryption_key: Some(key),
            ..StoreOptions::default()
        },
    );
    assert!(fx.store.cipher().is_some(), "the store is encrypted");
    let ev = report(&fx, "soc2");
    let s = ev
        .report
        .sections
        .iter()
        .find(|s| s.kind == kaudit_report::SectionKind::Verification)
        .expect("verification section");
    assert_eq!(
        s.facts.get("verified"),
        Some(&serde_json::Value::Bool(true)),
        "{s:?}"
    );
    assert_eq!(
        s.facts.get("records_checked"),
        Some(&serde_json::json!(1_500))
    );
    let listed: usize = ev.report.sections.iter().map(|s| s.rows.len()).sum();
    assert!(listed > 0, "rows cite decrypted events");
    let signer = signer(&fx);
    bundle::verify(
        &bundle::write(&ev, &signer).expect("bundle"),
        Some(&signer.verifier()),
    )
    .expect("the bundle of an encrypted store verifies");
}

/// The bundle's invariant over random reports: whatever subset of sections
/// and rows a report lists, its bundle verifies; and any single byte changed
/// in any file of it (report, events, proofs, checkpoints, consistency
/// proof, key, manifests) makes verification fail.
#[test]
fn any_subset_verifies_and_any_flipped_byte_fails() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let fx = fixture_cp(2_500, StoreOptions::default(), true);
    let (since, until) = through_now();
    let full = report_over(&fx, "pci-dss", since, until);
    let signer = signer(&fx);
    let trusted = signer.verifier();
    let n_sections = full.report.sections.len();
    let max_rows = full
        .report
        .sections
        .iter()
        .map(|s| s.rows.len())
        .max()
        .unwrap_or(0);
    assert!(max_rows > 0, "the report lists rows");
    let strategy = (
        proptest::collection::vec(any::<bool>(), n_sections),
        proptest::collection::vec(any::<bool>(), max_rows),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        1u8..=255,
    );
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    runner
        .run(
            &strategy,
            |(keep_sections, keep_rows, file_ix, byte_ix, xor)| {
                let mut ev = full.clone();
                let mut i = 0;
                ev.report.sections.retain(|_| {
                    i += 1;
                    keep_sections[i - 1]
                });
                let mut cited = BTreeSet::new();
                for s in &mut ev.report.sections {
                    let before = s.rows.len();
                    let mut j = 0;
                    s.rows.retain(|_| {
                        j += 1;
                        keep_rows[j - 1]
                    });
                    // Rows left out are counted as omitted, never dropped silently.
                    s.omitted += (before - s.rows.len()) as u64;
                    cited.extend(s.rows.iter().map(|r| r.seq));
                }
                ev.cited.retain(|seq, _| cited.contains(seq));
                let bytes = bundle::write(&ev, &signer).expect("bundle");
                let v = bundle::verify(&bytes, Some(&trusted));
                prop_assert!(v.is_ok(), "a subset did not verify: {:?}", v.err());
                let listed: usize = ev.report.sections.iter().map(|s| s.rows.len()).sum();
                let v = v.expect("ok");
                prop_assert_eq!(v.rows, listed);
                prop_assert_eq!(v.events, cited.len());
                let files = bundle::read(&bytes).expect("read");
                let names: Vec<&String> = files.keys().collect();
                let name = names[file_ix.index(names.len())].clone();
                let mut bad = files.clone();
                let data = bad.get_mut(&name).expect("file");
                prop_assume!(!data.is_empty());
                let at = byte_ix.index(data.len());
                data[at] ^= xor;
                let res = bundle::verify(&repack(&bad), Some(&trusted));
                prop_assert!(
                    res.is_err(),
                    "byte {} of {} changed (xor {:#04x}) and the bundle still verified",
                    at,
                    name,
                    xor
                );
                Ok(())
            },
        )
        .expect("property");
}

/// The embedded backend, except that it claims to decide every query
/// exactly: the report then counts with `stats` and lists with a search,
/// the two-pass way, which the one pass must agree with.
struct TwoPass<'a>(&'a EmbeddedBackend);

impl kaudit_index::SearchBackend for TwoPass<'_> {
    fn search(
        &self,
        req: &kaudit_index::SearchRequest,
    ) -> kaudit_index::IndexResult<kaudit_index::Page> {
        self.0.search(req)
    }
    fn stats(
        &self,
        req: &kaudit_index::StatsRequest,
    ) -> kaudit_index::IndexResult<kaudit_index::StatsReport> {
        self.0.stats(req)
    }
    fn field_values(
        &self,
        field: &kaudit_query::Field,
        prefix: &str,
        limit: usize,
    ) -> kaudit_index::IndexResult<Vec<(String, u64)>> {
        self.0.field_values(field, prefix, limit)
    }
    fn time_span(
        &self,
        query: &kaudit_query::Query,
        since: Option<i64>,
        until: Option<i64>,
    ) -> kaudit_index::IndexResult<Option<(i64, i64)>> {
        self.0.time_span(query, since, until)
    }
    fn for_each_match(
        &self,
        query: &kaudit_query::Query,
        since: Option<i64>,
        until: Option<i64>,
        f: &mut dyn FnMut(u64, i64, &kaudit_event::Event, &str) -> bool,
    ) -> kaudit_index::IndexResult<()> {
        self.0.for_each_match(query, since, until, f)
    }
    fn scan_fields(
        &self,
        query: &kaudit_query::Query,
        since: Option<i64>,
        until: Option<i64>,
        fields: &[kaudit_index::ScanField],
        f: &mut kaudit_index::scan::ScanFn<'_>,
    ) -> kaudit_index::IndexResult<()> {
        self.0.scan_fields(query, since, until, fields, f)
    }
    fn follow(
        &self,
        query: &kaudit_query::Query,
        since: Option<i64>,
        until: Option<i64>,
        from: &kaudit_index::FollowPosition,
        f: &mut dyn FnMut(kaudit_index::Hit) -> bool,
    ) -> kaudit_index::IndexResult<kaudit_index::FollowPosition> {
        self.0.follow(query, since, until, from, f)
    }
    fn follow_end(&self) -> kaudit_index::IndexResult<kaudit_index::FollowPosition> {
        self.0.follow_end()
    }
    fn decides_exactly(&self, _query: &kaudit_query::Query) -> kaudit_index::IndexResult<bool> {
        Ok(true)
    }
}

#[test]
fn a_section_the_index_cannot_decide_is_counted_and_listed_in_one_pass_like_two() {
    use kaudit_index::SearchBackend;
    let fx = fixture(12_000, StoreOptions::default());
    // Container images are no index column: the matcher reads each body.
    let undecided = ".requestObject.spec.containers[*].image=*";
    let decided =
        "resource=pods verb=create,update,patch .requestObject.spec.volumes[*].hostPath.path=*";
    let q = |t: &str| kaudit_query::Query::parse(t).expect("query");
    assert!(!fx.backend.decides_exactly(&q(undecided)).expect("plan"));
    assert!(fx.backend.decides_exactly(&q(decided)).expect("plan"));
    let yaml = format!(
        "name: t\ntitle: t\nsections:\n  - {{id: images, title: images, max_rows: 7, query: '{undecided}'}}\n  - {{id: all_images, title: all, max_rows: 10000, query: '{undecided}'}}\n  - {{id: mounts, title: mounts, max_rows: 3, query: '{decided}'}}\n"
    );
    let path = fx.dir.path().join("t.yaml");
    std::fs::write(&path, yaml).expect("write template");
    let (since, until) = kaudit_report::parse_month("2026-01").expect("month");
    let req = ReportRequest {
        template: Template::load(path.to_str().expect("utf-8 path")).expect("template"),
        since,
        until,
        clusters: Vec::new(),
        max_rows: None,
        verify_store: false,
        now: MicroTime::parse("2026-02-01T00:00:00Z").expect("now"),
        budget: None,
    };
    let two = TwoPass(&fx.backend);
    let run = |backend: &dyn kaudit_index::SearchBackend| {
        build(
            &req,
            &Inputs {
                store: &fx.store,
                backend,
                alerts: None,
                quarantined: Vec::new(),
            },
        )
        .expect("report")
    };
    let one_pass = run(&fx.backend);
    let two_pass = run(&two);
    // The matcher over every stored event of the month.
    let query = q(undecided);
    let mut want = 0u64;
    kaudit_store::LogReader::read(&*fx.store, 0..fx.store.len(), &mut |_, leaf| {
        let ev = kaudit_event::Event::from_json(leaf.event).expect("event");
        let t = kaudit_index::event_time(&ev, leaf.received);
        want += u64::from(t >= since && t < until && query.matches(&ev, leaf.cluster));
        true
    })
    .expect("read");
    for id in ["images", "all_images", "mounts"] {
        let find = |ev: &Evidence| {
            ev.report
                .sections
                .iter()
                .find(|s| s.id == id)
                .cloned()
                .expect("section")
        };
        let (a, b) = (find(&one_pass), find(&two_pass));
        assert_eq!(a, b, "section {id}: one pass vs count + search");
        assert_eq!(a.count, a.rows.len() as u64 + a.omitted, "{id}");
    }
    let images = &one_pass.report.sections[0];
    assert_eq!(images.count, want);
    assert!(want > 7, "{want} matches: the row limit is exercised");
    assert_eq!(images.rows.len(), 7);
    // The listed rows are the oldest matches, as the full list shows.
    let all = &one_pass.report.sections[1];
    assert_eq!(all.rows.len() as u64, want);
    assert_eq!(images.rows[..], all.rows[..7]);
    assert_eq!(one_pass.cited, two_pass.cited);
}
