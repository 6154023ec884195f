//! `simulate` figures against a hand-checked fixture.
//!
//! tests/fixtures/simulate_events.jsonl holds 7 events (line sizes with the
//! newline: 445, 506, 421, 540, 457, 460, 337 = 3166 bytes), checked by hand
//! against tests/fixtures/simulate_policy.yaml:
//!
//! | line | who / what                 | rule | outcome                          |
//! |------|----------------------------|------|----------------------------------|
//! | 1    | kube-proxy watch endpoints | 0    | dropped (None)                   |
//! | 2    | alice get secret           | 1    | kept at Metadata: 506 -> 426     |
//! | 3    | alice create pod, RR stage | 2    | dropped (RequestReceived omitted)|
//! | 4    | alice create pod           | 2    | kept at Request: 540 -> 458      |
//! | 5    | bob get pod                | 3    | kept as is: 457                  |
//! | 6    | bob list pods              | -    | dropped (no rule matched)        |
//! | 7    | bob get /healthz           | 3    | kept as is: 337                  |
//!
//! Kept: 4 events, 426+458+457+337 = 1678 bytes (the size of
//! simulate_kept.jsonl, which is also exactly what applying must write).
//! Timestamps span 15:00:00 to 15:00:10, so per day: 1678 * 8640 bytes.

use kaudit_event::reader::{EventReader, ReaderOptions};
use kaudit_policy::simulate::{Counts, Simulator};
use kaudit_policy::{load_policy_file, ApplyOptions, Outcome, PolicyApplier};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn counts(events_in: u64, events_kept: u64, bytes_in: u64, bytes_kept: u64) -> Counts {
    Counts {
        events_in,
        events_kept,
        events_dropped: events_in - events_kept,
        bytes_in,
        bytes_kept,
    }
}

#[test]
fn simulate_matches_hand_computed_figures() {
    let policy = load_policy_file(&fixture("simulate_policy.yaml"))
        .unwrap()
        .policy;
    let mut sim = Simulator::new(policy, ApplyOptions::default());
    for e in EventReader::open(&fixture("simulate_events.jsonl"), ReaderOptions::default()).unwrap()
    {
        sim.add(e.unwrap());
    }
    let r = sim.finish(10);
    assert_eq!(r.total, counts(7, 4, 3166, 1678));
    let per_rule: Vec<(Option<usize>, Counts)> =
        r.rules.iter().map(|x| (x.rule, x.counts)).collect();
    assert_eq!(
        per_rule,
        vec![
            (Some(0), counts(1, 0, 445, 0)),
            (Some(1), counts(1, 1, 506, 426)),
            (Some(2), counts(2, 1, 961, 458)),
            (Some(3), counts(2, 2, 794, 794)),
            (None, counts(1, 0, 460, 0)),
        ]
    );
    assert_eq!(r.span_seconds, 10.0);
    assert_eq!(r.projected_bytes_per_day, Some(1678.0 * 8640.0));
    assert_eq!(r.projected_events_per_day, Some(4.0 * 8640.0));
    let top: Vec<(&str, &str, &str, u64, u64)> = r
        .top
        .iter()
        .map(|t| {
            (
                t.user.as_str(),
                t.verb.as_str(),
                t.resource.as_str(),
                t.counts.events_in,
                t.counts.bytes_kept,
            )
        })
        .collect();
    assert_eq!(
        top,
        vec![
            ("alice", "create", "pods", 2, 458),
            ("bob", "get", "pods", 1, 457),
            ("alice", "get", "secrets", 1, 426),
            ("bob", "get", "/healthz", 1, 337),
            ("bob", "list", "pods", 1, 0),
            ("system:kube-proxy", "watch", "endpoints", 1, 0),
        ]
    );
    let sim2 = Simulator::new(
        load_policy_file(&fixture("simulate_policy.yaml"))
            .unwrap()
            .policy,
        ApplyOptions::default(),
    );
    assert_eq!(sim2.finish(3).top.len(), 0);
}

#[test]
fn applying_writes_exactly_the_hand_written_kept_lines() {
    let policy = load_policy_file(&fixture("simulate_policy.yaml"))
        .unwrap()
        .policy;
    let applier = PolicyApplier::new(policy, ApplyOptions::default());
    let mut out = Vec::new();
    for e in EventReader::open(&fixture("simulate_events.jsonl"), ReaderOptions::default()).unwrap()
    {
        if let Outcome::Keep(k) = applier.apply(e.unwrap()) {
            out.extend_from_slice(k.bytes());
            out.push(b'\n');
        }
    }
    let want = std::fs::read(fixture("simulate_kept.jsonl")).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(want).unwrap()
    );
}
