#![allow(dead_code)]
//! Shared helpers: locating the conformance data and running rules over traces.

use kaudit_event::reader::{EventReader, ReaderOptions};
use kaudit_event::Event;
use kaudit_rules::{Engine, EngineBuilder, EngineOptions, MatchMode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `../shared/conformance` relative to the workspace root, or `$KAUDIT_CONFORMANCE`.
pub fn conformance_dir() -> PathBuf {
    let dir = match std::env::var_os("KAUDIT_CONFORMANCE") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    };
    assert!(
        dir.join("falco/expected.json").is_file(),
        "conformance data not found at {} (expected falco/expected.json there): \
         check out the shared conformance data next to the workspace or set KAUDIT_CONFORMANCE",
        dir.display()
    );
    dir
}

/// Builds an engine from rules files, in order.
pub fn engine(files: &[PathBuf]) -> Engine {
    let mut b = EngineBuilder::new(EngineOptions::default());
    for f in files {
        if let Err(e) = b.add_file(f) {
            panic!("loading {}: {e}", f.display());
        }
    }
    match b.build() {
        Ok((e, _)) => e,
        Err(e) => panic!("compiling rules: {e}"),
    }
}

/// Reads every event of a trace; returns the events and how many lines were not events.
pub fn read_trace(path: &Path) -> (Vec<Event>, usize) {
    let reader = EventReader::open(path, ReaderOptions::default())
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut events = Vec::new();
    let mut bad = 0;
    for r in reader {
        match r {
            Ok(e) => events.push(e),
            Err(e) if e.is_recoverable() => bad += 1,
            Err(e) => panic!("reading {}: {e}", path.display()),
        }
    }
    (events, bad)
}

/// Alerts per rule over events.
pub fn count(engine: &Engine, events: &[Event], mode: MatchMode) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in events {
        for a in engine.evaluate(e, mode) {
            *out.entry(a.rule).or_insert(0) += 1;
        }
    }
    out
}
