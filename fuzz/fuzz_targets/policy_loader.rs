//! Any bytes as an audit Policy file (YAML or JSON): the loader answers with
//! a policy or an error, never a panic; a loaded policy compiles, lints and
//! evaluates a real event.
#![no_main]

use kaudit_event::Event;
use kaudit_policy::{lint, load_policy, CompiledPolicy, RequestAttributes};
use libfuzzer_sys::fuzz_target;

const EVENT: &[u8] = br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a0000000-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.001000Z"}"#;

fuzz_target!(|data: &[u8]| {
    if let Ok(loaded) = load_policy(data, "fuzz.yaml") {
        let _ = lint(&loaded.policy);
        let compiled = CompiledPolicy::new(loaded.policy);
        let event = Event::from_json(EVENT).expect("the sample event parses");
        let _ = compiled.evaluate(&RequestAttributes::from_event(&event));
    }
});
