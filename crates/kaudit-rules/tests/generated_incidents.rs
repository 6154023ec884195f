//! The default ruleset against `kaudit gen` traffic: every injected incident
//! is caught, and the generator's normal traffic raises nothing.

use kaudit_event::Event;
use kaudit_gen::{GenConfig, Generator};
use kaudit_rules::{Engine, EngineOptions, MatchMode};
use std::collections::{BTreeMap, HashSet};

/// `n` events of `clusters` clusters at `rate` events per simulated
/// second, with their incidents: a low rate stretches the stream over simulated days, which brings in what follows
/// the clock rather than the event count (namespace deletions).
fn generate_at(
    seed: u64,
    n: u64,
    clusters: usize,
    rate: f64,
) -> (Vec<(usize, Event)>, Vec<kaudit_gen::Incident>, Vec<String>) {
    let mut config = GenConfig::new(seed);
    config.events = Some(n);
    config.rate = rate;
    config.clusters = kaudit_gen::default_cluster_names(clusters);
    config.spread_incidents();
    let mut g = Generator::new(config).expect("generator");
    let mut line = Vec::new();
    let mut events = Vec::new();
    while let Some(c) = g.next_into(&mut line) {
        events.push((
            c,
            Event::from_json(&line).expect("generator writes valid events"),
        ));
        line.clear();
    }
    (events, g.incidents().to_vec(), g.cluster_names().to_vec())
}

#[test]
fn every_incident_is_caught_and_normal_traffic_is_quiet() {
    // The last stream spans a simulated day of a quiet cluster, so that
    // namespace deletions and the namespace controller's sweeps are in it.
    for (seed, n, clusters, rate) in [
        (1u64, 40_000u64, 1usize, kaudit_gen::DEFAULT_RATE),
        (42, 60_000, 3, kaudit_gen::DEFAULT_RATE),
        (7, 40_000, 1, 0.4),
    ] {
        let (events, incidents, _) = generate_at(seed, n, clusters, rate);
        if rate < 1.0 {
            let sweeps = events
                .iter()
                .filter(|(_, e)| e.verb() == "deletecollection")
                .count();
            assert!(sweeps > 0, "seed {seed}: no namespace deletion in a day");
        }
        assert!(
            incidents.len() >= 8,
            "seed {seed}: only {} incidents",
            incidents.len()
        );
        let (engine, _) =
            Engine::with_default_rules(EngineOptions::default()).expect("default rules");
        let incident_ids: HashSet<&str> = incidents
            .iter()
            .flat_map(|i| i.audit_ids.iter().map(String::as_str))
            .collect();
        let mut alerted: HashSet<String> = HashSet::new();
        let mut noise: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, e) in &events {
            for a in engine.evaluate(e, MatchMode::All) {
                if incident_ids.contains(a.audit_id.as_str()) {
                    alerted.insert(a.audit_id.clone());
                } else {
                    noise
                        .entry(a.rule.clone())
                        .or_default()
                        .push(a.output.clone());
                }
            }
        }
        let missed: Vec<String> = incidents
            .iter()
            .filter(|i| !i.audit_ids.iter().any(|id| alerted.contains(id)))
            .map(|i| format!("{:?} by {} ({})", i.kind, i.user, i.description))
            .collect();
        assert!(
            missed.is_empty(),
            "seed {seed}: incidents not caught: {missed:#?}"
        );
        let noise_summary: Vec<String> = noise
            .iter()
            .map(|(r, v)| format!("{r}: {} e.g. {}", v.len(), v[0]))
            .collect();
        assert!(
            noise.is_empty(),
            "seed {seed}: alerts on normal traffic: {noise_summary:#?}"
        );
    }
}
