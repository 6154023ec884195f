//! The compiled engine against a naive reference interpreter over
//! serde_json::Value, with Falco's full k8s_audit_rules.yaml: same first
//! match on every Falco trace event and on generated traffic.

mod common;
#[path = "../benches/naive/mod.rs"]
mod naive;

use common::{conformance_dir, engine, read_trace};
use kaudit_event::Event;
use kaudit_gen::{GenConfig, Generator};
use kaudit_rules::MatchMode;
use serde_json::Value;

fn agree(engine: &kaudit_rules::Engine, events: &[Event]) -> usize {
    let rules = engine.falco_conditions();
    let mut hits = Vec::new();
    let mut matched = 0;
    for e in events {
        let v: Value = serde_json::from_slice(e.bytes()).expect("json");
        hits.clear();
        engine.matching_rules(e, MatchMode::First, &mut hits);
        let want = naive::first_match(&rules, &v);
        assert_eq!(
            hits.first().map(|&i| rules[i].0),
            want.map(|i| rules[i].0),
            "event {}",
            e.audit_id()
        );
        matched += usize::from(want.is_some());
    }
    matched
}

#[test]
fn engine_matches_reference_on_traces_and_generated_traffic() {
    let dir = conformance_dir().join("falco");
    for rules in [
        "k8s_audit_rules.yaml",
        "traces/rules/k8s_audit_rules_k8saudit-0.6.0.yaml",
    ] {
        let engine = engine(&[dir.join(rules)]);
        let mut events = Vec::new();
        for entry in std::fs::read_dir(dir.join("traces")).expect("traces") {
            let p = entry.expect("entry").path();
            if p.extension().is_some_and(|x| x == "json") {
                events.extend(read_trace(&p).0);
            }
        }
        assert!(events.len() > 40);
        let m = agree(&engine, &events);
        assert!(m > 20, "{rules}: only {m} trace events matched");

        let mut config = GenConfig::new(11);
        config.events = Some(20_000);
        config.spread_incidents();
        let mut g = Generator::new(config).expect("generator");
        let mut line = Vec::new();
        let mut gen = Vec::new();
        while g.next_into(&mut line).is_some() {
            gen.push(Event::from_json(&line).expect("event"));
            line.clear();
        }
        let m = agree(&engine, &gen);
        assert!(m > 0, "{rules}: generated traffic matched nothing");
    }
}
