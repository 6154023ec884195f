//! Readers over every shape users have, and the bounds that keep bad input harmless.

use flate2::write::GzEncoder;
use kaudit_event::reader::{is_rotated_backup, EventReader, ReadError, ReaderOptions};
use kaudit_event::{
    encode_event_list, parse_batch, parse_batch_limited, Event, EventDoc, EventError, Level,
    MicroTime, ObjectRef, ResponseStatus, Stage, UserInfo,
};
use proptest::prelude::*;
use std::io::{Cursor, Write};

fn doc(id: &str) -> EventDoc {
    EventDoc {
        level: Level::Metadata,
        audit_id: id.to_string(),
        stage: Some(Stage::ResponseComplete),
        request_uri: "/api/v1/namespaces/default/pods?limit=500".into(),
        verb: "list".into(),
        user: UserInfo {
            username: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        },
        source_ips: vec!["10.0.0.1".into()],
        user_agent: "kubectl/v1.31.0".into(),
        object_ref: Some(ObjectRef {
            resource: "pods".into(),
            namespace: "default".into(),
            api_version: "v1".into(),
            ..Default::default()
        }),
        response_status: Some(ResponseStatus::new(200, "", "", "")),
        request_received_timestamp: Some(MicroTime(1_767_000_000_000_000)),
        stage_timestamp: Some(MicroTime(1_767_000_000_001_234)),
        ..Default::default()
    }
}

fn read_all(bytes: Vec<u8>) -> Vec<Result<Event, ReadError>> {
    EventReader::new(Cursor::new(bytes), "in.log", ReaderOptions::default())
        .unwrap()
        .collect()
}

#[test]
fn json_lines_with_a_bad_line_name_file_and_line() {
    let mut input = Vec::new();
    input.extend_from_slice(&doc("a").encode());
    input.extend_from_slice(b"\n\n{\"kind\":\"Event\",\"stage\":7}\n");
    input.extend_from_slice(&doc("b").encode());
    input.extend_from_slice(b"\nnot json\n");
    let out = read_all(input);
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].as_ref().unwrap().audit_id(), "a");
    let e1 = out[1].as_ref().unwrap_err().to_string();
    assert!(
        e1.starts_with("in.log:3: invalid JSON: .stage: invalid type: integer"),
        "{e1}"
    );
    assert_eq!(out[2].as_ref().unwrap().audit_id(), "b");
    let e3 = out[3].as_ref().unwrap_err();
    assert!(e3.is_recoverable());
    assert!(e3.to_string().starts_with("in.log:5: "), "{e3}");
}

#[test]
fn event_list_documents_single_line_pretty_and_arrays() {
    let docs = [doc("x1"), doc("x2")];
    let list = encode_event_list(docs.iter());
    // The webhook form: items carry no kind/apiVersion.
    assert!(String::from_utf8_lossy(&list).contains("\"items\":[{\"level\":\"Metadata\""));
    let out = read_all([list.clone(), b"\n".to_vec(), doc("x3").encode()].concat());
    let ids: Vec<_> = out
        .iter()
        .map(|r| r.as_ref().unwrap().audit_id().to_string())
        .collect();
    assert_eq!(ids, ["x1", "x2", "x3"]);
    // Items get kind/apiVersion back when stored as lines.
    assert_eq!(out[0].as_ref().unwrap().bytes(), &doc("x1").encode()[..]);

    let value: serde_json::Value = serde_json::from_slice(&list).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    let out = read_all(pretty);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].as_ref().unwrap().bytes(), &doc("x2").encode()[..]);

    let array = format!(
        "[\n{},\n{}\n]",
        String::from_utf8(doc("y1").encode()).unwrap(),
        String::from_utf8(list).unwrap()
    );
    let out = read_all(array.into_bytes());
    let ids: Vec<_> = out
        .iter()
        .map(|r| r.as_ref().unwrap().audit_id().to_string())
        .collect();
    assert_eq!(ids, ["y1", "x1", "x2"]);
}

#[test]
fn bad_item_in_a_batch_costs_nothing_else() {
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{{"auditID":"z"}},{}]}}"#,
        String::from_utf8(doc("g1").encode()).unwrap(),
        String::from_utf8(doc("g2").encode()).unwrap()
    );
    let items = parse_batch(body.as_bytes()).unwrap();
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[2].is_ok());
    let bad = items[1].as_ref().unwrap_err();
    assert_eq!(bad.index, 1);
    assert_eq!(bad.path, ".items[1]");
    assert_eq!(bad.raw, br#"{"auditID":"z"}"#);
    assert_eq!(bad.error, EventError::NotAnEvent("no stage".into()));
    // Containers that are not audit documents are refused as a whole.
    assert!(parse_batch(b"{\"kind\":\"Pod\"}").is_err());
    assert!(parse_batch(b"42").is_err());
    assert!(parse_batch(b"{").is_err());
}

#[test]
fn an_item_with_invalid_utf8_is_an_item_error_and_its_neighbours_are_kept() {
    let g1 = doc("g1").encode();
    let g2 = doc("g2").encode();
    let bad: &[u8] = b"{\"auditID\":\"b\xff\xfe\",\"note\":\"]}\\\"[\"}";
    // An EventList as kube-apiserver sends it, with one item holding a stray byte.
    let mut body =
        b"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[".to_vec();
    body.extend_from_slice(&g1);
    body.extend_from_slice(b",");
    body.extend_from_slice(bad);
    body.extend_from_slice(b" , ");
    body.extend_from_slice(&g2);
    body.extend_from_slice(b"],\"metadata\":{}}");
    let items = parse_batch(&body).expect("the batch is usable");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap().bytes(), &g1[..]);
    assert_eq!(items[2].as_ref().unwrap().bytes(), &g2[..]);
    let e = items[1].as_ref().unwrap_err();
    assert_eq!((e.index, e.path.as_str()), (1, ".items[1]"));
    assert_eq!(e.raw, bad, "the item is kept byte for byte");
    assert!(e.error.to_string().contains("UTF-8"), "{}", e.error);
    // The same in a JSON array of events and of lists.
    let mut arr = b"[".to_vec();
    arr.extend_from_slice(&g1);
    arr.extend_from_slice(b",");
    arr.extend_from_slice(bad);
    arr.extend_from_slice(b",");
    arr.extend_from_slice(&body);
    arr.extend_from_slice(b"]");
    let items = parse_batch(&arr).expect("the batch is usable");
    let paths: Vec<_> = items
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.path.clone()))
        .collect();
    assert_eq!(
        paths,
        [
            None,
            Some("[1]".into()),
            None,
            Some("[2].items[1]".into()),
            None
        ]
    );
    // Invalid UTF-8 outside the items still makes the body unusable, as does
    // a body whose structure cannot be followed.
    let mut head = body.clone();
    head[10] = 0xff;
    assert!(parse_batch(&head).is_err());
    assert!(parse_batch(b"{\"kind\":\"EventList\",\"items\":[{\"a\":\"\xff\"}").is_err());
}

#[test]
fn a_batch_over_the_item_limit_is_refused_while_it_is_read() {
    let list = |n: usize| {
        let docs: Vec<EventDoc> = (0..n).map(|i| doc(&format!("l{i}"))).collect();
        encode_event_list(docs.iter())
    };
    assert_eq!(parse_batch_limited(&list(5), 5).unwrap().len(), 5);
    assert_eq!(
        parse_batch_limited(&list(6), 5).unwrap_err(),
        EventError::TooManyItems { limit: 5 }
    );
    // Empty objects count as items too (they are quarantined, one by one).
    let mut empties = b"{\"kind\":\"EventList\",\"items\":[".to_vec();
    empties.extend(std::iter::repeat_n(&b"{},"[..], 200_000).flatten());
    empties.extend_from_slice(b"{}]}");
    let t = std::time::Instant::now();
    assert_eq!(
        parse_batch_limited(&empties, 10).unwrap_err(),
        EventError::TooManyItems { limit: 10 }
    );
    assert!(
        t.elapsed() < std::time::Duration::from_millis(200),
        "stops early"
    );
    // A top-level array counts the items of every list in it, and a body that
    // is not UTF-8 is counted the same way.
    let arr = format!(
        "[{},{}]",
        String::from_utf8(list(3)).unwrap(),
        String::from_utf8(list(3)).unwrap()
    );
    assert_eq!(parse_batch_limited(arr.as_bytes(), 6).unwrap().len(), 6);
    assert!(parse_batch_limited(arr.as_bytes(), 5).is_err());
    let mut bad = list(6);
    let at = bad.len() - 10;
    bad[at] = 0xff;
    assert_eq!(
        parse_batch_limited(&bad, 5).unwrap_err(),
        EventError::TooManyItems { limit: 5 }
    );
    assert_eq!(parse_batch_limited(&bad, 6).unwrap().len(), 6);
}

#[test]
fn gzip_rotated_backups_are_read() {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..100 {
        gz.write_all(&doc(&format!("id-{i}")).encode()).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    let out = read_all(gz.finish().unwrap());
    assert_eq!(out.len(), 100);
    assert_eq!(out[99].as_ref().unwrap().audit_id(), "id-99");
    assert!(is_rotated_backup("audit-2026-01-02T15-04-05.000.log.gz"));
    assert!(is_rotated_backup(
        "/var/log/audit-2026-01-02T15-04-05.000.log"
    ));
    assert!(!is_rotated_backup("audit.log"));
    assert!(!is_rotated_backup("audit-2026-01-02.log.gz"));
}

#[test]
fn overlong_lines_are_refused_and_reading_goes_on() {
    let mut input = b"{\"x\":\"".to_vec();
    input.extend(std::iter::repeat_n(b'a', 5000));
    input.extend_from_slice(b"\"}\n");
    input.extend_from_slice(&doc("after").encode());
    let opts = ReaderOptions {
        max_line: 4096,
        ..Default::default()
    };
    let out: Vec<_> = EventReader::new(Cursor::new(input), "big.log", opts)
        .unwrap()
        .collect();
    assert_eq!(out.len(), 2);
    match &out[0] {
        Err(ReadError::LineTooLong { location, limit }) => {
            assert_eq!((location.line, *limit), (1, 4096));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out[1].as_ref().unwrap().audit_id(), "after");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let mut line = b"{\"kind\":\"Event\",\"requestObject\":".to_vec();
    line.extend(std::iter::repeat_n(b'[', 100_000));
    let out = read_all(line);
    assert!(out[0].is_err());
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9:./-]{0,24}",
        any::<String>(),
        Just("<script>&\u{2028}\u{2029}\"\\\n\t\u{1}".to_string()),
    ]
}

proptest! {
    #[test]
    fn encode_parse_encode_is_identity(
        id in "[a-f0-9-]{1,36}",
        user in arb_text(),
        groups in proptest::collection::vec(arb_text(), 0..3),
        uri in arb_text(),
        ua in arb_text(),
        ann in proptest::collection::btree_map(arb_text(), arb_text(), 0..4),
        code in 0i32..600,
        t in 0i64..4_000_000_000_000_000,
        stage in 0usize..4,
        level in 1usize..4,
    ) {
        let d = EventDoc {
            level: Level::ALL[level],
            audit_id: id,
            stage: Some(Stage::ALL[stage]),
            request_uri: uri,
            verb: "get".into(),
            user: UserInfo { username: user, groups, ..Default::default() },
            user_agent: ua,
            response_status: Some(ResponseStatus::new(code, "", "", "")),
            request_received_timestamp: Some(MicroTime(t)),
            stage_timestamp: Some(MicroTime(t + 5)),
            annotations: ann,
            ..Default::default()
        };
        let bytes = d.encode();
        let ev = Event::from_json(&bytes).unwrap();
        prop_assert_eq!(ev.bytes(), &bytes[..]);
        prop_assert_eq!(ev.doc().encode(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_all(bytes.clone());
        let _ = parse_batch(&bytes);
        let _ = Event::from_json(&bytes);
    }
}

#[test]
fn event_list_items_become_lines_byte_for_byte() {
    let item = String::from_utf8(doc("k1").encode()).unwrap().replacen(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","#,
        "{",
        1,
    );
    // An unknown field (a newer apiserver's) survives: the item is not re-encoded.
    let item = item.replacen('}', r#","futureField":{"b":1,"a":2}}"#, 1);
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{item}]}}"#
    );
    let ev = parse_batch(body.as_bytes()).unwrap().remove(0).unwrap();
    let want = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1",{}"#,
        &item[1..]
    );
    assert_eq!(String::from_utf8(ev.bytes().to_vec()).unwrap(), want);
    // A v1beta1 list's items are converted instead.
    let old = body.replace("audit.k8s.io/v1\"", "audit.k8s.io/v1beta1\"");
    let ev = parse_batch(old.as_bytes()).unwrap().remove(0).unwrap();
    assert!(ev
        .bytes()
        .starts_with(br#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level""#));
}
