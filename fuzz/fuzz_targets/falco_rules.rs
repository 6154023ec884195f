//! Any text as a Falco rules file (lists, macros, rules, overrides, exceptions):
//! the loader and compiler answer with an engine or an error naming where,
//! never a panic; a built engine evaluates a real event.
#![no_main]

use kaudit_event::Event;
use kaudit_rules::{EngineBuilder, EngineOptions, MatchMode};
use libfuzzer_sys::fuzz_target;

const EVENT: &[u8] = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a0000000-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/pods/web/exec?command=sh","verb":"create","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"pods","subresource":"exec","namespace":"kube-system","name":"web","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":101},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.001000Z"}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut b = EngineBuilder::new(EngineOptions::default());
    if b.add_source("fuzz_rules.yaml", text).is_err() {
        return;
    }
    if let Ok((engine, _report)) = b.build() {
        let event = Event::from_json(EVENT).expect("the sample event parses");
        for a in engine.evaluate(&event, MatchMode::All) {
            let _ = a.to_text();
            let _ = a.to_falco_json("fuzz");
        }
    }
});
