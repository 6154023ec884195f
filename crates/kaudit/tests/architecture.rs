//! The crate graph reads sources → policy → store → followers → server →
//! CLI: no crate depends on one that stands later on the data's way, and
//! docs/ARCHITECTURE.md states that same order and names every crate.

use std::collections::BTreeMap;
use std::path::Path;

/// The data's way, earliest first: foundations, then the stages.
const ORDER: &[&str] = &[
    "kaudit-units",
    "kaudit-metrics",
    "kaudit-event",
    "kaudit-query",
    "kaudit-rules",
    "kaudit-gen",
    "kaudit-sources",
    "kaudit-policy",
    "kaudit-store",
    "kaudit-index",
    "kaudit-clickhouse",
    "kaudit-detect",
    "kaudit-report",
    "kaudit-sinks",
    "kaudit-server",
    "kaudit",
];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

/// Each crate's name and the kaudit crates it lists under `[dependencies]`.
fn crates() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{}: no package name", manifest.display()))
            .to_string();
        let mut deps = Vec::new();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_string();
            } else if section == "[dependencies]" && line.starts_with("kaudit") {
                let dep = line.split(['.', ' ', '=']).next().unwrap_or("").to_string();
                deps.push(dep);
            }
        }
        out.insert(name, deps);
    }
    out
}

#[test]
fn no_crate_depends_on_a_later_one() {
    let crates = crates();
    for name in crates.keys() {
        assert!(
            ORDER.contains(&name.as_str()),
            "crate {name} has no place in the order: add it to ORDER here and to docs/ARCHITECTURE.md"
        );
    }
    let rank = |n: &str| ORDER.iter().position(|o| *o == n);
    let mut wrong = Vec::new();
    for (name, deps) in &crates {
        let me = rank(name).unwrap();
        for d in deps {
            match rank(d) {
                Some(r) if r < me => {}
                _ => wrong.push(format!("{name} -> {d}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the data's way: {wrong:?}"
    );
    // The stages the architecture names really are wired in that order.
    for (later, earlier) in [
        ("kaudit-server", "kaudit-sources"),
        ("kaudit-detect", "kaudit-store"),
        ("kaudit-sinks", "kaudit-store"),
        ("kaudit-index", "kaudit-store"),
    ] {
        assert!(
            crates[later].iter().any(|d| d == earlier),
            "{later} should build on {earlier}"
        );
    }
    assert!(
        !crates["kaudit-server"].iter().any(|d| d == "kaudit-gen"),
        "the server does not depend on the traffic generator"
    );
}

#[test]
fn architecture_doc_states_the_same_order() {
    let doc = std::fs::read_to_string(workspace().join("docs/ARCHITECTURE.md")).unwrap();
    let mut last = 0;
    let listed = doc
        .split("The order, earliest first")
        .nth(1)
        .expect("ARCHITECTURE.md lists the crate order");
    for name in ORDER {
        let needle = format!("`{name}`");
        let at = listed
            .find(&needle)
            .unwrap_or_else(|| panic!("ARCHITECTURE.md's order does not name {name}"));
        assert!(at >= last, "ARCHITECTURE.md lists {name} out of order");
        last = at;
    }
    let contributing = std::fs::read_to_string(workspace().join("CONTRIBUTING.md")).unwrap();
    for seam in ["Source", "Follower", "Destination", "SearchBackend"] {
        assert!(
            contributing.contains(seam),
            "CONTRIBUTING.md does not say how to add a {seam}"
        );
    }
}
