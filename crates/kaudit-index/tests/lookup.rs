//! The sorted lookups (auditID hash, object name) answer exactly what a
//! full scan of their columns answers: through commits that complete
//! blocks, rows appended after a commit (not yet in any block), a reopen,
//! and a lookup file that was truncated or damaged (scanned meanwhile,
//! rebuilt by the next writer's commit).

use kaudit_event::{Event, MicroTime};
use kaudit_index::index::{value_hash, LookupSource, Needs, DICT_COLUMNS, HASH_FIELDS};
use kaudit_index::lookup::LOOKUP_BLOCK;
use kaudit_index::plan::{bounds, Bits};
use kaudit_index::{Index, IndexMode};
use kaudit_query::{Field, Query};
use std::path::Path;

const NAME_SLOT: usize = 7;
/// Distinct events; rows reuse them, so many rows share an auditID (and
/// so its hash, as colliding auditIDs would) and a name.
const POOL: usize = 3000;

struct Pool {
    rows: Vec<Vec<u8>>,
    ids: Vec<String>,
    names: Vec<String>,
}

fn pool() -> Pool {
    let mut p = Pool {
        rows: Vec::new(),
        ids: Vec::new(),
        names: Vec::new(),
    };
    for i in 0..POOL {
        let id = format!("id-{}", i % 1500);
        let name = format!("obj-{}", i % 700);
        let ns = format!("ns-{}", i % 3);
        let json = format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"get","user":{{"username":"u{}"}},"objectRef":{{"resource":"pods","namespace":"{ns}","name":"{name}","apiVersion":"v1"}},"requestReceivedTimestamp":"2026-01-01T00:00:00Z","stageTimestamp":"2026-01-01T00:00:00.5Z"}}"#,
            i % 7
        );
        let ev = Event::from_json(json.as_bytes()).expect("event");
        let mut row = Vec::new();
        Index::encode_row(&ev, "c", MicroTime(1), &mut row);
        p.rows.push(row);
        p.ids.push(id);
        p.names.push(name);
    }
    p
}

/// Which pool entry row `r` holds (scattered, deterministic).
fn entry(r: usize) -> usize {
    (r.wrapping_mul(2_654_435_761) >> 7) % POOL
}

fn push(ix: &mut Index, p: &Pool, upto: usize) {
    while ix.rows() < upto {
        let r = ix.rows();
        assert!(ix.push_row(r as u64, &p.rows[entry(r)]));
    }
}

fn rows(b: &Bits) -> Vec<usize> {
    let mut v = Vec::new();
    b.for_each(|r| v.push(r));
    v
}

/// Checks the bounds of auditID and name equalities against a scan of
/// what rows hold.
fn check(ix: &Index, p: &Pool) {
    let n = ix.rows();
    for probe in [0usize, 17, 333, 1499] {
        let id = &p.ids[probe];
        let q = Query::parse(&format!("auditid={id}")).expect("query");
        let b = bounds(ix, q.expr()).expect("bounds");
        let want: Vec<usize> = (0..n)
            .filter(|&r| value_hash(&p.ids[entry(r)]) == value_hash(id))
            .collect();
        assert!(!want.is_empty());
        assert_eq!(rows(&b.upper), want, "auditid={id}");
        let name = &p.names[probe];
        let q = Query::parse(&format!("name={name}")).expect("query");
        let b = bounds(ix, q.expr()).expect("bounds");
        let want: Vec<usize> = (0..n).filter(|&r| &p.names[entry(r)] == name).collect();
        assert_eq!(rows(&b.lower), want, "name={name}");
        assert_eq!(rows(&b.upper), want, "name={name}");
        assert!(b.exact);
        // The object: name first (most selective), then the others.
        let ns = format!("ns-{}", probe % 3);
        let q = Query::parse(&format!("resource=pods namespace={ns} name={name}")).expect("q");
        let b = bounds(ix, q.expr()).expect("bounds");
        let want: Vec<usize> = want
            .into_iter()
            .filter(|&r| entry(r) % 3 == probe % 3)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(rows(&b.upper), want, "object {ns}/{name}");
    }
    let q = Query::parse("name=no-such-object").expect("query");
    assert!(bounds(ix, q.expr()).expect("bounds").upper.is_empty());
}

fn covered(ix: &Index, src: LookupSource) -> Option<usize> {
    ix.lookup(src, &[], |_| {})
}

fn reader(dir: &Path) -> Index {
    let mut r = Index::open(dir, IndexMode::Read).expect("reader");
    r.load(&Needs {
        dict: (0..DICT_COLUMNS).collect(),
        hash: (0..HASH_FIELDS.len()).collect(),
        latency: false,
    })
    .expect("load");
    r
}

fn perm(dir: &Path, file: &str) -> std::path::PathBuf {
    dir.join("search").join(file)
}

#[test]
fn lookups_equal_a_scan_through_commits_reopens_and_damage() {
    assert_eq!(kaudit_index::index::DICT_FIELDS[NAME_SLOT], Field::Name);
    let p = pool();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let hash = LookupSource::Hash(0);
    let name = LookupSource::Dict(NAME_SLOT);
    let hash_file = format!("h.{}.perm", Field::AuditId.name());
    let (hash_file, name_file) = (hash_file.as_str(), "name.perm");
    {
        let mut ix = Index::open(dir, IndexMode::Write).expect("writer");
        push(&mut ix, &p, LOOKUP_BLOCK + 1000);
        assert_eq!(covered(&ix, hash), Some(0), "nothing committed yet");
        check(&ix, &p);
        ix.commit().expect("commit");
        assert_eq!(covered(&ix, hash), Some(LOOKUP_BLOCK));
        assert_eq!(covered(&ix, name), Some(LOOKUP_BLOCK));
        // Rows appended after the commit: scanned, with the block looked up.
        push(&mut ix, &p, 2 * LOOKUP_BLOCK + 500);
        check(&ix, &p);
        ix.commit().expect("commit");
        assert_eq!(covered(&ix, name), Some(2 * LOOKUP_BLOCK));
        check(&ix, &p);
    }
    let full = (2 * 2 * LOOKUP_BLOCK) as u64;
    for f in [hash_file, name_file] {
        assert_eq!(std::fs::metadata(perm(dir, f)).expect(f).len(), full, "{f}");
    }
    let r = reader(dir);
    assert_eq!(covered(&r, hash), Some(2 * LOOKUP_BLOCK));
    check(&r, &p);
    assert!(!r.lookups_behind());
    drop(r);

    // Damage: the hash lookup cut inside its second block, two offsets of
    // the name lookup's second block swapped.
    let hp = perm(dir, hash_file);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&hp)
        .expect("open")
        .set_len(full / 2 + 1000)
        .expect("truncate");
    let np = perm(dir, name_file);
    let mut bytes = std::fs::read(&np).expect("read");
    let at = 2 * LOOKUP_BLOCK + 2 * 1234;
    bytes.swap(at, at + 2);
    bytes.swap(at + 1, at + 3);
    std::fs::write(&np, &bytes).expect("write");
    let r = reader(dir);
    assert_eq!(covered(&r, hash), Some(LOOKUP_BLOCK), "whole blocks only");
    check(&r, &p);
    assert!(r.lookups_behind(), "the damaged block was seen");
    drop(r);

    // A writer rebuilds both at its next commit.
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&np).expect("meta").ino();
    {
        let mut w = Index::open(dir, IndexMode::Write).expect("writer");
        assert!(w.lookups_behind(), "the cut hash lookup");
        check(&w, &p);
        w.commit().expect("commit");
        assert!(!w.lookups_behind());
        check(&w, &p);
    }
    for f in [hash_file, name_file] {
        assert_eq!(std::fs::metadata(perm(dir, f)).expect(f).len(), full, "{f}");
    }
    assert_ne!(
        std::fs::metadata(&np).expect("meta").ino(),
        ino,
        "rebuilt into a new file, never rewritten under a reader's mapping"
    );
    let r = reader(dir);
    check(&r, &p);
    assert!(!r.lookups_behind());
}
