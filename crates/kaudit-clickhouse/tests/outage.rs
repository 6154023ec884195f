//! Integration test (3): ClickHouse stopped for 30 s while events keep
//! arriving. Appends (what ingest acknowledges after) never wait for it, the
//! shipper's lag grows and shows in its follower status (the server turns
//! that into `kaudit_follower_lag_events{follower="clickhouse"}`), and after
//! the restart shipping catches up: every record exactly once.

mod common;

use kaudit_clickhouse::{ClickHouseBackend, Shipper};
use kaudit_store::{Store, StoreOptions};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn clickhouse_down_30s_ingest_continues_and_shipping_catches_up() {
    let mut ch = common::ClickHouse::start();
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("store"));
    let shipper = Shipper::new(ch.config(4), dir.path()).expect("shipper");
    let stats = shipper.stats();
    let mut follower = common::ShipperThread::start(shipper, store.clone(), Duration::from_secs(2));
    let status = follower.status.clone();
    let mut batch = 0u64;
    // Times the append alone (generating the events is the test's work,
    // slow on a loaded machine, and no part of what ingest waits for).
    let mut load = |n: u64| {
        let records = common::generated("alpha", n, 40 + batch, (batch * 1_000) as i64);
        let t = Instant::now();
        common::append_records(&store, &records);
        batch += 1;
        t.elapsed()
    };
    load(500);
    let wait_shipped = |want: u64, within: Duration| {
        let deadline = Instant::now() + within;
        while stats.next.load(Ordering::Relaxed) < want {
            assert!(
                Instant::now() < deadline,
                "shipping stuck at {} of {want}",
                stats.next.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_shipped(500, Duration::from_secs(60));

    // Down for 30 s under load.
    ch.kill();
    let down = Instant::now();
    let mut max_append = Duration::ZERO;
    let mut saw_lag = 0;
    while down.elapsed() < Duration::from_secs(30) {
        max_append = max_append.max(load(200));
        std::thread::sleep(Duration::from_millis(500));
        let st = status.snapshot();
        if !st.up && st.backlog > 0 {
            saw_lag = saw_lag.max(st.backlog);
        }
    }
    // At least 10 of the batches arrived while it was down (each batch is
    // generated in the test, which takes seconds on a loaded machine).
    let stored = store.len();
    assert!(
        stored >= 500 + 200 * 10,
        "too little load while down: {stored}"
    );
    assert!(
        saw_lag > 0,
        "the follower status never showed the lag: {:?}",
        status.snapshot()
    );
    assert!(status.snapshot().failures > 0);
    assert!(
        max_append < Duration::from_secs(5),
        "appends waited for ClickHouse: {max_append:?}"
    );
    assert!(stats.lag() > 0);

    ch.spawn();
    wait_shipped(stored, Duration::from_secs(120));
    let st = status.snapshot();
    assert!(st.up, "{st:?}");
    follower.stop();
    let backend = ClickHouseBackend::open(&ch.config(0)).expect("backend");
    assert_eq!(
        backend.count().expect("count"),
        stored,
        "rows lost or duplicated"
    );
    let total: u64 = backend
        .client()
        .execute("SELECT count() FROM kaudit.kaudit_events FINAL")
        .expect("final count")
        .trim()
        .parse()
        .expect("number");
    assert_eq!(total, stored);
}
