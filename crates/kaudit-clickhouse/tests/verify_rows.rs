//! Verification from ClickHouse: two nodes' rows verify against their
//! signed checkpoints; a row edited, deleted or inserted in ClickHouse is
//! named by (node, seq).

mod common;

use kaudit_clickhouse::schema::{encode_row, Tables};
use kaudit_clickhouse::verify::{verify, Problem};
use kaudit_clickhouse::{Client, Shipper};
use kaudit_event::MicroTime;
use kaudit_store::LogReader;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn wait_mutations(c: &Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = c
            .execute("SELECT count() FROM system.mutations WHERE is_done = 0")
            .expect("mutations");
        if n.trim() == "0" {
            return;
        }
        assert!(Instant::now() < deadline, "mutations did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rows_verify_and_tampering_is_named() {
    let ch = common::ClickHouse::start();
    let d1 = tempfile::tempdir().expect("tmp");
    let d2 = tempfile::tempdir().expect("tmp");
    let s1 = common::store_of(d1.path(), "alpha", 300, 21);
    s1.checkpoint().expect("checkpoint");
    common::append_generated(&s1, "alpha", 200, 22, 300);
    s1.checkpoint().expect("checkpoint");
    let s2 = common::store_of(d2.path(), "beta", 400, 23);
    s2.checkpoint().expect("checkpoint");
    let mut sh1 = Shipper::new(ch.config(1), d1.path()).expect("shipper");
    let mut sh2 = Shipper::new(ch.config(2), d2.path()).expect("shipper");
    common::ship_all(&mut sh1, &s1);
    common::ship_all(&mut sh2, &s2);
    // A resend: identical copies are no problem.
    std::fs::remove_file(kaudit_clickhouse::ship::cursor_path(d1.path())).expect("rm");
    let mut again = Shipper::new(ch.config(1), d1.path()).expect("shipper");
    common::ship_all(&mut again, &s1);

    let cfg = ch.config(0);
    let client = Client::connect(&cfg).expect("client");
    let tables = Tables::new(&cfg);
    let mut trusted = HashMap::new();
    trusted.insert(1, s1.verifier().clone());
    trusted.insert(2, s2.verifier().clone());
    let reports = verify(&client, &tables, &trusted).expect("verify");
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert!(r.ok(), "{r:?}");
        assert!(r.trusted_key);
    }
    assert_eq!(
        (
            reports[0].rows,
            reports[0].checkpoints,
            reports[0].verified_size
        ),
        (500, 2, 500)
    );
    assert_eq!((reports[1].rows, reports[1].verified_size), (400, 400));

    // A wrong trusted key fails every checkpoint of that node.
    let mut wrong = HashMap::new();
    wrong.insert(1, s2.verifier().clone());
    let r = verify(&client, &tables, &wrong).expect("verify");
    assert!(!r[0].ok());
    assert!(
        matches!(r[0].problems[0], Problem::BadCheckpoint { .. }),
        "{:?}",
        r[0].problems
    );

    // Edit node 1's row 5, delete node 2's row 7, insert a second,
    // different row 9 for node 1.
    let db = &tables.db;
    client
        .execute(&format!(
            "ALTER TABLE {db}.{} UPDATE raw = replaceOne(raw, '\"verb\":\"', '\"verb\":\"x') WHERE node_id = 1 AND seq = 5",
            tables.events
        ))
        .expect("update");
    client
        .execute(&format!(
            "ALTER TABLE {db}.{} DELETE WHERE node_id = 2 AND seq = 7",
            tables.events
        ))
        .expect("delete");
    wait_mutations(&client);
    let mut body = Vec::new();
    let mut leaf = Vec::new();
    LogReader::read(&s1, 9..10, &mut |seq, l| {
        let mut ev = l.event.to_vec();
        ev.extend_from_slice(b" ");
        encode_row(
            &mut body,
            1,
            "node-1",
            seq,
            l.cluster,
            MicroTime(l.received.0 + 1),
            &ev,
            None,
            &mut leaf,
        );
        true
    })
    .expect("read");
    client
        .insert(
            &format!(
                "INSERT INTO {db}.{} ({}) FORMAT RowBinary",
                tables.events,
                Tables::insert_columns()
            ),
            body,
        )
        .expect("insert");
    let r = verify(&client, &tables, &trusted).expect("verify");
    assert!(
        r[0].problems.contains(&Problem::Altered { seq: 5 }),
        "{:?}",
        r[0].problems
    );
    assert!(
        r[0].problems.contains(&Problem::Conflict { seq: 9 }),
        "{:?}",
        r[0].problems
    );
    assert!(!r[0]
        .problems
        .iter()
        .any(|p| matches!(p, Problem::Altered { seq } if *seq != 5)));
    assert_eq!(r[1].problems, vec![Problem::Missing { seq: 7 }]);
    assert!(!r[0].ok() && !r[1].ok());
}

#[test]
fn retention_drops_whole_old_days_except_holds() {
    let ch = common::ClickHouse::start();
    let d = tempfile::tempdir().expect("tmp");
    let s = common::store_of(d.path(), "alpha", 200, 51);
    let mut sh = Shipper::new(ch.config(1), d.path()).expect("shipper");
    common::ship_all(&mut sh, &s);
    let cfg = ch.config(0);
    let client = Client::connect(&cfg).expect("client");
    let tables = Tables::new(&cfg);
    let days: Vec<u16> = client
        .execute("SELECT DISTINCT toUInt16(day) FROM kaudit.kaudit_events ORDER BY 1 FORMAT TabSeparated")
        .expect("days")
        .split_whitespace()
        .map(|d| d.parse().expect("day"))
        .collect();
    assert!(!days.is_empty());
    let (first, last) = (days[0], days[days.len() - 1]);
    // Keep nothing older than the last day, but hold the first.
    let y = chrono_day(first);
    assert_eq!(kaudit_clickhouse::schema::parse_day(&y), Some(first));
    let dropped = kaudit_clickhouse::retention::drop_expired(&client, &tables, 0, &[y], last)
        .expect("retention");
    assert!(!dropped.contains(&first) && !dropped.contains(&last));
    assert_eq!(dropped.len(), days.len().saturating_sub(2));
    let left: Vec<u16> = client
        .execute("SELECT DISTINCT toUInt16(day) FROM kaudit.kaudit_events ORDER BY 1 FORMAT TabSeparated")
        .expect("days")
        .split_whitespace()
        .map(|d| d.parse().expect("day"))
        .collect();
    let want: Vec<u16> = if first == last {
        vec![first]
    } else {
        vec![first, last]
    };
    assert_eq!(left, want);
}

/// `YYYY-MM-DD` of a day number.
fn chrono_day(d: u16) -> String {
    // Civil from days (proleptic Gregorian).
    let z = i64::from(d) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let dd = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{dd:02}")
}
