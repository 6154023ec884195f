//! Local pruning of shipped records (`store.clickhouse.prune_local_after`):
//! the local store drops whole sealed segments only when every record in
//! them is both shipped and old, through the store's signed prune path; the
//! rows stay in ClickHouse and verify there, the local store still verifies
//! (the range reported as pruned), and unshipped or held records stay.

mod common;

use kaudit_clickhouse::ship::{prune_shipped, read_cursor};
use kaudit_clickhouse::verify::verify;
use kaudit_clickhouse::{ClickHouseConfig, Client, Shipper};
use kaudit_event::MicroTime;
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const DAY_US: i64 = 86_400_000_000;
const WEEK_SECS: u64 = 7 * 86_400;

/// Small bundles and segments, so a few thousand events fill several
/// sealed segments.
fn small() -> StoreOptions {
    StoreOptions {
        bundle_max_records: 50,
        segment_target_bytes: 48 << 10,
        checkpoint_interval: Duration::ZERO,
        ..StoreOptions::default()
    }
}

/// Appends `n` generated events received `age_days` ago, in commits of 250.
fn append(store: &Store, n: u64, seed: u64, age_days: i64) {
    let mut cfg = kaudit_gen::GenConfig::new(seed);
    cfg.events = Some(n);
    cfg.clusters = vec!["alpha".into()];
    let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
    let base = MicroTime::now().micros() - age_days * DAY_US;
    let mut line = Vec::new();
    let mut i = 0u64;
    while i < n {
        let mut tx = store.transaction().expect("tx");
        for _ in 0..250.min(n - i) {
            line.clear();
            g.next_into(&mut line).expect("generated event");
            tx.push(&Record {
                cluster: "alpha".into(),
                received: MicroTime(base + i as i64),
                event: line.clone(),
            })
            .expect("push");
            i += 1;
        }
        tx.commit().expect("commit");
    }
}

/// Segment files on disk, as (first seq, path).
fn segments(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    kaudit_store::list_segments(dir).expect("segments")
}

/// Distinct rows of node `node_id` in ClickHouse.
fn rows_in_clickhouse(cfg: &ClickHouseConfig, node_id: u16) -> u64 {
    let c = Client::connect(cfg).expect("client");
    c.execute(&format!(
        "SELECT uniqExact(gseq) FROM kaudit.kaudit_events WHERE node_id = {node_id} FORMAT TabSeparated"
    ))
    .expect("count")
    .trim()
    .parse()
    .expect("a number")
}

#[test]
fn shipped_old_segments_go_unshipped_ones_stay_and_both_stores_verify() {
    let ch = common::ClickHouse::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path(), small()).expect("open");
    // 1500 events ten days old, shipped (with a checkpoint covering them).
    append(&store, 1500, 31, 10);
    store.checkpoint().expect("checkpoint");
    let cfg = ch.config(3);
    assert_eq!(
        cfg.prune_local_after, None,
        "local pruning is off by default"
    );
    let mut shipper = Shipper::new(cfg.clone(), dir.path()).expect("shipper");
    assert_eq!(common::ship_all(&mut shipper, &store), 1500);
    let shipped = read_cursor(dir.path()).expect("cursor").next;
    assert_eq!(shipped, 1500);
    let before_prune = segments(dir.path());
    assert!(before_prune.len() > 4, "several segments: {before_prune:?}");
    assert_eq!(
        store.first_seq(),
        0,
        "without prune_local_after nothing goes"
    );
    // 1000 more old events, not shipped, then 300 new ones, so the old
    // unshipped ones sit in sealed segments.
    append(&store, 1000, 32, 10);
    append(&store, 300, 33, 0);

    let out = prune_shipped(&store, dir.path(), WEEK_SECS, MicroTime::now()).expect("prune");
    assert!(!out.removed.is_empty(), "shipped old segments go: {out:?}");
    assert!(out.before > 0 && out.before <= shipped, "{out:?}");
    for (path, first, end, _) in &out.removed {
        assert!(
            *end <= shipped,
            "{path:?} [{first}, {end}) holds unshipped records"
        );
        assert!(!path.exists(), "{} still on disk", path.display());
    }
    let stopped = out.stopped.clone().unwrap_or_default();
    assert!(stopped.contains("not shipped"), "stopped: {stopped}");
    assert_eq!(store.first_seq(), out.before);
    // Every record from the prune point on, the unshipped old ones included,
    // is still read locally.
    let mut seen = 0u64;
    store
        .read(out.before..2800, &mut |_, _| {
            seen += 1;
            true
        })
        .expect("read after prune");
    assert_eq!(seen, 2800 - out.before);
    let left: Vec<u64> = segments(dir.path()).iter().map(|(f, _)| *f).collect();
    assert_eq!(left.first(), Some(&out.before), "{left:?}");
    assert!(
        before_prune.len() - out.removed.len() <= left.len(),
        "only the removed segments went"
    );

    // The rows are all in ClickHouse and verify against the node's signed
    // checkpoints there, the pruned range included.
    assert_eq!(rows_in_clickhouse(&cfg, 3), 1500);
    let client = Client::connect(&cfg).expect("client");
    let mut trusted = HashMap::new();
    trusted.insert(3u16, store.verifier().clone());
    let reports = verify(
        &client,
        &kaudit_clickhouse::schema::Tables::new(&cfg),
        &trusted,
    )
    .expect("verify from clickhouse");
    let node = reports.iter().find(|r| r.node_id == 3).expect("node 3");
    assert!(node.ok(), "{node:?}");
    assert!(node.verified_size >= 1500, "{node:?}");

    // The local store verifies, reporting the pruned range as pruned.
    store.close().expect("close");
    let rep = kaudit_store::verify::verify(dir.path(), &Default::default()).expect("verify");
    assert!(rep.ok(), "{:?}", rep.problems);
    assert_eq!(rep.pruned_before, out.before);
    assert!(
        rep.notes.iter().any(|n| n.contains("pruned")),
        "{:?}",
        rep.notes
    );

    // Once shipped, the old records go too (the new ones stay by age).
    let store = Store::open(dir.path(), small()).expect("reopen");
    let mut shipper = Shipper::new(cfg.clone(), dir.path()).expect("shipper");
    assert_eq!(common::ship_all(&mut shipper, &store), 1300);
    let out2 = prune_shipped(&store, dir.path(), WEEK_SECS, MicroTime::now()).expect("prune");
    assert!(out2.before > out.before, "{out2:?}");
    assert!(out2.before <= 2500, "new records stay: {out2:?}");
    assert!(
        out2.stopped
            .unwrap_or_default()
            .contains("within retention"),
        "stopped by age now"
    );
    assert_eq!(rows_in_clickhouse(&cfg, 3), 2800);
}

#[test]
fn legal_holds_keep_shipped_segments() {
    let ch = common::ClickHouse::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path(), small()).expect("open");
    append(&store, 1500, 41, 10);
    let mut shipper = Shipper::new(ch.config(4), dir.path()).expect("shipper");
    common::ship_all(&mut shipper, &store);
    let hold = kaudit_store::retention::add_hold(dir.path(), "case 17", None, None).expect("hold");
    let n = segments(dir.path()).len();
    let out = prune_shipped(&store, dir.path(), WEEK_SECS, MicroTime::now()).expect("prune");
    assert!(out.removed.is_empty(), "{out:?}");
    let stopped = out.stopped.unwrap_or_default();
    assert!(stopped.contains("legal hold #1"), "stopped: {stopped}");
    assert_eq!(segments(dir.path()).len(), n);
    assert_eq!(store.first_seq(), 0);
    assert!(kaudit_store::retention::remove_hold(dir.path(), hold.id).expect("unhold"));
    let out = prune_shipped(&store, dir.path(), WEEK_SECS, MicroTime::now()).expect("prune");
    assert!(!out.removed.is_empty(), "without the hold they go: {out:?}");
}

#[test]
fn the_shipper_prunes_on_its_own_when_configured() {
    let ch = common::ClickHouse::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path(), small()).expect("open");
    append(&store, 1500, 51, 10);
    let mut cfg = ch.config(5);
    cfg.prune_local_after = Some("7d".into());
    let mut shipper = Shipper::new(cfg.clone(), dir.path()).expect("shipper");
    assert_eq!(common::ship_all(&mut shipper, &store), 1500);
    // The caught-up step pruned: the old shipped segments are gone, the
    // active one stays.
    assert!(store.first_seq() > 0, "nothing pruned");
    assert!(store.first_seq() < 1500);
    assert_eq!(segments(dir.path())[0].0, store.first_seq());
    assert_eq!(rows_in_clickhouse(&cfg, 5), 1500);
}

#[test]
fn the_shipper_never_prunes_what_another_follower_has_yet_to_read() {
    let ch = common::ClickHouse::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path(), small()).expect("open");
    append(&store, 1500, 61, 10);
    let mut cfg = ch.config(6);
    cfg.prune_local_after = Some("7d".into());
    // A lagging sink that has read nothing yet: all shipped, nothing pruned.
    let lagging = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = lagging.clone();
    let floor: kaudit_clickhouse::ship::PruneFloor =
        std::sync::Arc::new(move || seen.load(std::sync::atomic::Ordering::Relaxed));
    let mut shipper = Shipper::new(cfg.clone(), dir.path())
        .expect("shipper")
        .with_prune_floor(floor);
    assert_eq!(common::ship_all(&mut shipper, &store), 1500);
    assert_eq!(store.first_seq(), 0, "pruned records a sink had not read");
    assert_eq!(rows_in_clickhouse(&cfg, 6), 1500);
    // The sink reaches 700: a new shipper (its prune clock starts afresh)
    // prunes whole segments below 700 only.
    lagging.store(700, std::sync::atomic::Ordering::Relaxed);
    let seen = lagging.clone();
    let floor: kaudit_clickhouse::ship::PruneFloor =
        std::sync::Arc::new(move || seen.load(std::sync::atomic::Ordering::Relaxed));
    let mut shipper = Shipper::new(cfg, dir.path())
        .expect("shipper")
        .with_prune_floor(floor);
    common::ship_all(&mut shipper, &store);
    let first = store.first_seq();
    assert!(first > 0, "nothing pruned below the sink's position");
    assert!(first <= 700, "pruned past the sink's position: {first}");
    assert_eq!(segments(dir.path())[0].0, first);
}

#[test]
fn a_bad_prune_local_after_is_refused_by_name() {
    for bad in ["soon", "0s", "-1d"] {
        let mut cfg = ClickHouseConfig::new("http://127.0.0.1:1");
        cfg.prune_local_after = Some(bad.into());
        let e = cfg.validate().expect_err(bad).to_string();
        assert!(e.contains("store.clickhouse.prune_local_after"), "{e}");
        assert!(e.contains(bad), "{e}");
    }
    let mut cfg = ClickHouseConfig::new("http://127.0.0.1:1");
    cfg.prune_local_after = Some("12h".into());
    assert_eq!(cfg.prune_local_after_secs().expect("12h"), Some(43_200));
}
