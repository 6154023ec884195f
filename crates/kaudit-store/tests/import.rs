//! Bulk import parses on several threads: what it stores, counts and
//! reports must be what reading the input in order on one thread gives.

mod common;

use kaudit_event::reader::{EventReader, ReadError, ReaderOptions};
use kaudit_event::Event;
use kaudit_store::import::{import_input, ImportError, ImportOptions};
use kaudit_store::{Store, StoreOptions};
use std::io::Cursor;

/// One input line and what reading it in order makes of it.
enum Line {
    Event(Vec<u8>),
    /// An EventList of these events on one line.
    List(Vec<Vec<u8>>),
    Bad,
}

/// Several thousand lines (many batches), with bad lines, an EventList
/// line and a repeated event spread through them.
fn input() -> Vec<Line> {
    let mut lines = Vec::new();
    for i in 0..5000u64 {
        lines.push(if i % 997 == 500 {
            Line::Bad
        } else if i == 2500 {
            Line::List((0..3).map(|k| common::event(100_000 + k)).collect())
        } else if i == 4000 {
            Line::Event(common::event(10))
        } else {
            Line::Event(common::event(i))
        });
    }
    lines
}

fn bytes(lines: &[Line]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        match l {
            Line::Event(e) => out.extend_from_slice(e),
            Line::List(items) => {
                out.extend_from_slice(
                    br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#,
                );
                for (k, e) in items.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(e);
                }
                out.extend_from_slice(b"]}");
            }
            Line::Bad => out.extend_from_slice(b"{\"kind\":\"Event\", not json"),
        }
        out.push(b'\n');
    }
    out
}

fn reader(lines: &[Line]) -> EventReader {
    EventReader::new(
        Cursor::new(bytes(lines)),
        "input.jsonl",
        ReaderOptions::default(),
    )
    .expect("reader")
}

fn stored(store: &Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    store
        .read(0..u64::MAX, &mut |_, leaf| {
            out.push(leaf.event.to_vec());
            true
        })
        .expect("read");
    out
}

#[test]
fn parsed_on_several_threads_imports_as_read_in_order() {
    let lines = input();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    // The transform drops watches and is called on the parsing threads. It
    // is slow for the first events, so the first batch is parsed last.
    let drop_watches = |ev: Event| {
        if ev.doc().audit_id.ends_with("-00000000000a") {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        (ev.doc().verb != "watch").then_some(ev)
    };
    let opts = ImportOptions {
        cluster: "c".into(),
        skip_invalid: true,
        ..ImportOptions::default()
    };
    let mut batches = 0;
    let out = import_input(
        &store,
        reader(&lines),
        &opts,
        Some(&drop_watches),
        &mut |_, _| batches += 1,
    )
    .expect("import");

    let mut want: Vec<Vec<u8>> = Vec::new();
    let (mut events, mut bad, mut watches, mut dups) = (0u64, 0u64, 0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    for l in &lines {
        let evs: Vec<&Vec<u8>> = match l {
            Line::Event(e) => vec![e],
            Line::List(items) => items.iter().collect(),
            Line::Bad => {
                bad += 1;
                continue;
            }
        };
        for e in evs {
            events += 1;
            let ev = Event::from_json(e).expect("event");
            if ev.doc().verb == "watch" {
                watches += 1;
            } else if seen.insert(e.clone()) {
                want.push(ev.bytes().to_vec());
            } else {
                dups += 1;
            }
        }
    }
    assert!(bad >= 5 && watches > 0 && dups == 1);
    assert_eq!(stored(&store), want, "records in input order");
    assert_eq!(
        (out.events, out.invalid, out.filtered, out.duplicates),
        (events, bad, watches, dups)
    );
    assert_eq!(out.seqs, 0..want.len() as u64);
    assert!(batches >= 4, "several batches: {batches}");
}

#[test]
fn the_first_bad_line_is_reported_and_nothing_is_kept() {
    let lines = input();
    let first_bad = lines
        .iter()
        .position(|l| matches!(l, Line::Bad))
        .expect("a bad line") as u64
        + 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("store");
    let err = import_input(
        &store,
        reader(&lines),
        &ImportOptions::default(),
        None,
        &mut |_, _| {},
    )
    .expect_err("a bad line");
    match err {
        ImportError::Invalid(ReadError::Event { location, .. }) => {
            assert_eq!(location.line, first_bad, "{location}");
            assert_eq!(location.source, "input.jsonl");
        }
        other => panic!("want the bad line, got {other}"),
    }
    assert!(stored(&store).is_empty());
    // Skipping, but at most one bad line: the second one stops the input.
    let opts = ImportOptions {
        skip_invalid: true,
        max_invalid: 1,
        ..ImportOptions::default()
    };
    let err = import_input(&store, reader(&lines), &opts, None, &mut |_, _| {})
        .expect_err("too many bad lines");
    assert!(matches!(err, ImportError::TooManyInvalid(1)), "{err}");
    assert!(stored(&store).is_empty());
}
