//! The query language as a user meets it: the examples from the docs, the
//! errors, and the semantics on real-shaped events.

use kaudit_event::{Event, EventDoc, Level, MicroTime, ObjectRef, ResponseStatus, Stage, UserInfo};
use kaudit_query::{parse, parse_time_bound, Expr, Field, Query};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[allow(clippy::too_many_arguments)]
fn event(
    user: &str,
    groups: &[&str],
    verb: &str,
    resource: &str,
    ns: &str,
    name: &str,
    code: i32,
    ip: &str,
) -> Event {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "authorization.k8s.io/decision".to_string(),
        if code == 403 { "forbid" } else { "allow" }.to_string(),
    );
    Event::from_doc(EventDoc {
        level: Level::Request,
        audit_id: format!("id-{user}-{verb}-{name}"),
        stage: Some(Stage::ResponseComplete),
        request_uri: format!("/api/v1/namespaces/{ns}/{resource}/{name}"),
        verb: verb.into(),
        user: UserInfo {
            username: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        },
        source_ips: vec![ip.into()],
        user_agent: "kubectl/v1.31.0 (linux/amd64) kubernetes/abc".into(),
        object_ref: Some(ObjectRef {
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
            api_version: "v1".into(),
            ..Default::default()
        }),
        response_status: Some(ResponseStatus::new(code, "", "", "")),
        request_object: serde_json::value::RawValue::from_string(
            r#"{"kind":"Pod","spec":{"containers":[{"name":"a","image":"nginx","securityContext":{"privileged":true}},{"name":"b","image":"busybox"}]}}"#.into(),
        )
        .ok(),
        request_received_timestamp: Some(MicroTime(1_000)),
        stage_timestamp: Some(MicroTime(2_000)),
        annotations,
        ..Default::default()
    })
}

fn hits(q: &str, evs: &[Event]) -> Vec<usize> {
    let q = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    evs.iter()
        .enumerate()
        .filter(|(_, e)| q.matches(e, "prod-eu"))
        .map(|(i, _)| i)
        .collect()
}

fn corpus() -> Vec<Event> {
    vec![
        event(
            "alice",
            &["devs"],
            "delete",
            "secrets",
            "prod",
            "db-pass",
            200,
            "10.1.2.3",
        ),
        event(
            "bob",
            &["devs", "ops"],
            "get",
            "pods",
            "prod",
            "web-1",
            200,
            "192.168.1.5",
        ),
        event(
            "system:serviceaccount:ci:deployer",
            &["system:serviceaccounts"],
            "patch",
            "deployments",
            "staging",
            "web",
            403,
            "10.9.9.9",
        ),
        event(
            "carol",
            &[],
            "list",
            "secrets",
            "kube-system",
            "",
            200,
            "172.16.0.1",
        ),
    ]
}

#[test]
fn the_documented_examples_work() {
    let c = corpus();
    assert_eq!(hits("verb=delete resource=secrets ns=prod", &c), [0]);
    assert_eq!(
        hits(r#"user=~"system:serviceaccount:ci:.*" code>=400"#, &c),
        [2]
    );
    assert_eq!(hits("ip=10.0.0.0/8 not verb=get,list,watch", &c), [0, 2]);
    assert_eq!(hits(r#""kubectl/v1.31""#, &c), [0, 1, 2, 3]);
    assert_eq!(
        hits("(user=alice or user=bob) decision=forbid", &c),
        Vec::<usize>::new()
    );
    assert_eq!(hits("(user=alice or user=bob) decision=allow", &c), [0, 1]);
    assert_eq!(
        hits(
            ".requestObject.spec.containers[*].securityContext.privileged=true",
            &c
        ),
        [0, 1, 2, 3]
    );
    assert_eq!(
        hits(".requestObject.spec.containers[1].image=busybox", &c),
        [0, 1, 2, 3]
    );
    assert_eq!(
        hits(
            ".requestObject.spec.containers[1].securityContext.privileged=true",
            &c
        ),
        Vec::<usize>::new()
    );
}

#[test]
fn operators_lists_globs_and_missing_fields() {
    let c = corpus();
    assert_eq!(hits("user=system:*", &c), [2]);
    assert_eq!(hits("user!=alice,bob", &c), [2, 3]);
    assert_eq!(hits("group=ops", &c), [1]);
    assert_eq!(hits("group!=devs", &c), [2, 3]);
    assert_eq!(hits("code<400", &c), [0, 1, 3]);
    assert_eq!(hits("code>200 or name=web-1", &c), [1, 2]);
    assert_eq!(hits("ip=192.168.1.5", &c), [1]);
    assert_eq!(
        hits("name!=*", &c),
        [3],
        "carol's list has no name: != holds for a missing field"
    );
    assert_eq!(hits("name=*", &c), [0, 1, 2]);
    assert_eq!(hits("cluster=prod-*", &c), [0, 1, 2, 3]);
    assert_eq!(
        hits("annotation.authorization.k8s.io/decision=forbid", &c),
        [2]
    );
    assert_eq!(hits("impersonated!=x", &c), [0, 1, 2, 3]);
    assert_eq!(hits("user!~\"[ab].*\"", &c), [2, 3]);
    assert_eq!(hits("not not user=alice", &c), [0]);
    assert_eq!(hits("DB-PASS", &c), [0], "full text is case-insensitive");
    assert_eq!(hits("", &c), [0, 1, 2, 3]);
    assert_eq!(
        hits("stage=ResponseComplete level=Request apigroup=core", &c),
        [0, 1, 2, 3]
    );
}

#[test]
fn errors_point_at_the_column_and_suggest() {
    let e = parse("usr=alice").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"unknown field "usr" at column 1; did you mean "user"?"#
    );
    let e = parse("verb=get namspace=prod").unwrap_err();
    assert_eq!(e.column, 10);
    assert_eq!(e.hint.as_deref(), Some(r#"did you mean "namespace"?"#));
    let e = parse("(user=a or user=b").unwrap_err();
    assert!(e.to_string().contains("missing \")\""), "{e}");
    assert!(parse("code>=abc")
        .unwrap_err()
        .to_string()
        .contains("takes a number"));
    assert!(parse("user=~\"(\"")
        .unwrap_err()
        .to_string()
        .contains("invalid regular expression"));
    assert_eq!(parse("user=\"unterminated").unwrap_err().column, 6);
    assert!(parse("verb=")
        .unwrap_err()
        .to_string()
        .contains("expected a value"));
    assert!(parse("a)")
        .unwrap_err()
        .to_string()
        .contains("unexpected \")\""));
    assert!(parse(&"(".repeat(200)).is_err());
}

#[test]
fn time_bounds() {
    let now = MicroTime::parse("2026-11-25T12:00:00Z").unwrap();
    assert_eq!(
        parse_time_bound("2h", now).unwrap(),
        MicroTime::parse("2026-11-25T10:00:00Z").unwrap()
    );
    assert_eq!(
        parse_time_bound("7d", now).unwrap(),
        MicroTime::parse("2026-11-18T12:00:00Z").unwrap()
    );
    assert_eq!(
        parse_time_bound("2026-01-02", now).unwrap(),
        MicroTime::parse("2026-01-02T00:00:00Z").unwrap()
    );
    assert_eq!(
        parse_time_bound("2026-01-02T03:04:05.5+01:00", now).unwrap(),
        MicroTime::parse("2026-01-02T02:04:05.5Z").unwrap()
    );
    assert!(parse_time_bound("2x", now).is_err());
    assert!(parse_time_bound("soon", now).is_err());
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        "[a-z \"\\\\=()]{1,8}".prop_map(Expr::Text),
        (
            prop_oneof![
                Just("user"),
                Just("verb"),
                Just("ns"),
                Just("code"),
                Just("annotation.a/b")
            ],
            prop_oneof![Just(kaudit_query::Op::Eq), Just(kaudit_query::Op::Ne)],
            proptest::collection::vec("[a-z0-9\"\\\\ ,]{1,6}", 1..3)
        )
            .prop_map(|(f, op, values)| {
                let field = Field::parse(f).unwrap();
                let values = if field.is_numeric() {
                    values.iter().map(|v| v.len().to_string()).collect()
                } else {
                    values
                };
                Expr::Compare { field, op, values }
            }),
    ];
    leaf.prop_recursive(4, 32, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(vec![a, b])),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Or(vec![a, b])),
            inner.prop_map(|a| Expr::Not(Box::new(a))),
        ]
    })
}

proptest! {
    #[test]
    fn printed_queries_parse_back_to_the_same_tree(e in arb_expr()) {
        let text = e.to_string();
        prop_assert_eq!(parse(&text).unwrap(), e, "{}", text);
    }

    #[test]
    fn any_input_parses_or_errors_without_panic(s in ".{0,80}") {
        if let Err(e) = parse(&s) {
            prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1, "{e} for {s:?}");
        }
    }
}

#[test]
fn source_field_reads_the_source_annotation() {
    let docker = kaudit_event::Event::from_json(
        br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/v1.41/containers/x/exec","verb":"exec","user":{"username":"alice"},"annotations":{"kaudit.io/source":"docker"}}"#,
    )
    .unwrap();
    let k8s = kaudit_event::Event::from_json(
        br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"b","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"exec","user":{"username":"alice"}}"#,
    )
    .unwrap();
    let q = kaudit_query::Query::parse("source=docker user=alice verb=exec").unwrap();
    assert!(q.matches(&docker, "build-01"));
    assert!(!q.matches(&k8s, "c1"));
    let not = kaudit_query::Query::parse("source!=docker").unwrap();
    assert!(!not.matches(&docker, "build-01"));
}
