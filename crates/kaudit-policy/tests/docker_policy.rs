//! Docker records under an ordinary audit Policy: the same engine decides
//! their level and stages (objectRef.apiGroup `docker.com`, Docker's verbs),
//! strips the bodies the level does not cover, and drops what it says to.

use kaudit_event::{Level, MicroTime, Stage, UserInfo};
use kaudit_policy::{load_policy, ApplyOptions, Outcome, PolicyApplier};
use kaudit_sources::docker::map::CallRecord;

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: docker.com, resources: [system]}]
- level: Metadata
  verbs: [list, get]
- level: Request
  resources: [{group: docker.com, resources: [containers]}]
- level: RequestResponse
"#;

fn record(method: &str, uri: &str, stage: Stage) -> kaudit_event::Event {
    CallRecord {
        audit_id: "0b7c3f3e-0000-4000-8000-000000000001".into(),
        host: "build-01".into(),
        mode: "proxy".into(),
        user: UserInfo {
            username: "alice".into(),
            ..UserInfo::default()
        },
        method: method.into(),
        uri: uri.into(),
        received: Some(MicroTime(1_000_000)),
        at: Some(MicroTime(1_002_000)),
        stage: Some(stage),
        status: Some(201),
        request_body: Some(serde_json::json!({"Image": "busybox"})),
        response_body: Some(serde_json::json!({"Id": "abc"})),
        ..CallRecord::default()
    }
    .to_event(Level::RequestResponse)
}

#[test]
fn policy_levels_docker_records() {
    let p = load_policy(POLICY.as_bytes(), "docker.yaml").unwrap();
    let a = PolicyApplier::new(p.policy, ApplyOptions { redact: true });
    // Omitted stage.
    assert!(matches!(
        a.apply(record(
            "POST",
            "/v1.41/containers/create?name=web",
            Stage::RequestReceived
        )),
        Outcome::Drop(_)
    ));
    // Containers at Request: request body kept, response body stripped.
    let Outcome::Keep(ev) = a.apply(record(
        "POST",
        "/v1.41/containers/create?name=web",
        Stage::ResponseComplete,
    )) else {
        panic!("create dropped")
    };
    assert_eq!(ev.level(), Level::Request);
    assert!(ev.doc().request_object.is_some());
    assert!(ev.doc().response_object.is_none());
    // The system group is not audited at all.
    assert!(matches!(
        a.apply(record("GET", "/_ping", Stage::ResponseComplete)),
        Outcome::Drop(_)
    ));
    // Reads at Metadata: no bodies.
    let Outcome::Keep(ev) = a.apply(record(
        "GET",
        "/v1.41/containers/json",
        Stage::ResponseComplete,
    )) else {
        panic!("list dropped")
    };
    assert_eq!(ev.level(), Level::Metadata);
    assert!(ev.doc().request_object.is_none());
    // Everything else keeps both bodies.
    let Outcome::Keep(ev) = a.apply(record(
        "POST",
        "/v1.41/images/create?fromImage=busybox&tag=1",
        Stage::ResponseComplete,
    )) else {
        panic!("pull dropped")
    };
    assert_eq!(ev.level(), Level::RequestResponse);
    assert_eq!(ev.verb(), "pull");
    assert!(ev.doc().response_object.is_some());
}
