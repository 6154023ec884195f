//! Any text as Sigma rule documents: each YAML document goes straight to the
//! Sigma loader (never a panic), then the whole text through the engine
//! builder, which must build or refuse with an error.
#![no_main]

use kaudit_event::Event;
use kaudit_rules::{EngineBuilder, EngineOptions, MatchMode, SigmaRule};
use libfuzzer_sys::fuzz_target;

const EVENT: &[u8] = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a0000000-0000-4000-8000-000000000002","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/events","verb":"delete","user":{"username":"mallory","groups":["system:authenticated"]},"sourceIPs":["10.0.0.9"],"objectRef":{"resource":"events","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.001000Z"}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(docs) = serde_saphyr::from_multiple::<serde_json::Value>(text) {
        for d in docs.iter().filter(|d| !d.is_null()) {
            let _ = SigmaRule::load("fuzz.yml", d);
        }
    }
    let mut b = EngineBuilder::new(EngineOptions::default());
    if b.add_source("fuzz.yml", text).is_err() {
        return;
    }
    if let Ok((engine, _report)) = b.build() {
        let event = Event::from_json(EVENT).expect("the sample event parses");
        let _ = engine.evaluate(&event, MatchMode::All);
    }
});
