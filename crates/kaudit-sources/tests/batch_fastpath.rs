//! The webhook's one-pass EventList decoding (`kaudit_event::parse_batch_limited`)
//! against the general two-pass path (`parse_batch_reference`) and against
//! `serde_json::Value`: generated traffic as kube-apiserver sends it, and
//! hand-made items with escapes, unicode, duplicate keys, odd whitespace and
//! bad neighbours. Both paths must give the same events, field for field,
//! and the same errors.

use kaudit_event::{encode_event_list, parse_batch_limited, parse_batch_reference, Event};
use kaudit_gen::{GenConfig, Generator};
use proptest::prelude::*;

const LIST_PREFIX: &str =
    r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#;

fn generated(seed: u64, n: u64) -> Vec<Event> {
    let mut cfg = GenConfig::new(seed);
    cfg.events = Some(n);
    cfg.incident_every = 7;
    let mut g = Generator::new(cfg).expect("a valid generator config");
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while g.next_into(&mut buf).is_some() {
        out.push(Event::from_json(&buf).expect("generated events parse"));
        buf.clear();
    }
    out
}

/// Both paths, compared in full (Debug shows every field of every document,
/// unknown fields in order; `==` compares bytes and encodings).
fn same(body: &[u8], max: usize) -> Result<usize, TestCaseError> {
    let fast = parse_batch_limited(body, max);
    let slow = parse_batch_reference(body, max);
    prop_assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
    prop_assert_eq!(&fast, &slow);
    // And against serde_json's own reading of each good item (the last of
    // duplicate keys wins in both).
    if let Ok(items) = &fast {
        for ev in items.iter().flatten() {
            let v: serde_json::Value = serde_json::from_slice(ev.bytes())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(v["auditID"].as_str(), Some(ev.audit_id()));
            prop_assert_eq!(v["verb"].as_str().unwrap_or(""), ev.verb());
            prop_assert_eq!(v["requestURI"].as_str().unwrap_or(""), ev.request_uri());
            prop_assert_eq!(
                v["user"]["username"].as_str().unwrap_or(""),
                ev.user().username.as_str()
            );
            prop_assert_eq!(v["userAgent"].as_str().unwrap_or(""), ev.user_agent());
            if let Some(o) = ev.object_ref() {
                prop_assert_eq!(
                    v["objectRef"]["name"].as_str().unwrap_or(""),
                    o.name.as_str()
                );
            }
        }
    }
    Ok(fast.map_or(0, |v| v.iter().filter(|r| r.is_ok()).count()))
}

fn weird_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("plain".to_string()),
        Just("qu\"ote \\ back/slash\n\t\r\u{8}\u{c}".to_string()),
        Just("日本語 émoji 😀 \u{2028}\u{0}".to_string()),
        "\\PC{0,12}",
    ]
}

/// One hand-made item: JSON-escaped weird values (serde_json writes some
/// escapes; `\u` escapes are forced for a few), duplicate known and unknown
/// keys, optional whitespace.
fn weird_item() -> impl Strategy<Value = String> {
    (
        weird_string(),
        weird_string(),
        weird_string(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(id, verb, name, dup, unicode_escape, spaced)| {
            let j = |s: &str| serde_json::to_string(s).unwrap_or_default();
            let id = if id.is_empty() { "x".to_string() } else { id };
            let mut s = String::from("{\"level\":\"Metadata\",\"auditID\":");
            s.push_str(&j(&id));
            s.push_str(",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api/v1/pods?x=\\u00e9\",\"verb\":");
            s.push_str(&j(&verb));
            if dup {
                s.push_str(",\"verb\":\"list\",\"zz\":1,\"zz\":[2,{\"a\":null}]");
            }
            s.push_str(",\"user\":{\"username\":");
            s.push_str(&if unicode_escape { "\"\\ud83d\\ude00\\u0041\"".to_string() } else { j(&name) });
            s.push_str("},\"objectRef\":{\"resource\":\"pods\",\"name\":");
            s.push_str(&j(&name));
            s.push_str("},\"annotations\":{\"k\":\"1\",\"k\":");
            s.push_str(&j(&name));
            s.push_str("},\"requestReceivedTimestamp\":\"2026-01-01T00:00:00.000000Z\",\"stageTimestamp\":\"2026-01-01T00:00:00.000001Z\"}");
            if spaced {
                s = s.replace(",\"", " ,\n\t\"").replace(':', " : ");
            }
            s
        })
}

fn bad_item() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{\"nope\":1}".to_string()),
        Just("null".to_string()),
        Just("[1,2]".to_string()),
        Just("{\"level\":\"Metadata\",\"auditID\":\"a\",\"stage\":\"Nope\"}".to_string()),
        Just("{\"kind\":\"EventList\",\"items\":[]}".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn generated_lists_decode_the_same_both_ways(seed in 0u64..1_000_000, n in 0u64..60, ws in "[ \n\t\r]{0,2}") {
        let events = generated(seed, n);
        let body = encode_event_list(events.iter().map(Event::doc));
        let good = same(&body, 10_000)?;
        prop_assert_eq!(good, events.len());
        // Items are the apiserver's lines without kind and apiVersion: the
        // events keep the generator's bytes exactly.
        let items = parse_batch_limited(&body, 10_000).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (got, want) in items.iter().zip(&events) {
            prop_assert_eq!(got.as_ref().map(Event::bytes).ok(), Some(want.bytes()));
        }
        // Whitespace between items, and limits on either side of the count.
        let text = String::from_utf8(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let spaced = text.replace("},{\"level\"", &format!("}}{ws},{ws}{{\"level\""));
        same(spaced.as_bytes(), 10_000)?;
        let n = events.len();
        same(spaced.as_bytes(), n)?;
        same(spaced.as_bytes(), n.saturating_sub(1))?;
    }

    #[test]
    fn weird_items_decode_the_same_both_ways(
        items in proptest::collection::vec(weird_item(), 0..6),
        bad in proptest::option::of((bad_item(), 0usize..6)),
        max in 0usize..8,
    ) {
        let mut items = items;
        if let Some((b, at)) = bad {
            let at = at.min(items.len());
            items.insert(at, b);
        }
        let body = format!("{LIST_PREFIX}{}]}}", items.join(","));
        same(body.as_bytes(), 10_000)?;
        same(body.as_bytes(), max)?;
        // Not the apiserver's exact framing: the general path only.
        same(format!("[{}]", body).as_bytes(), 10_000)?;
        same(format!("{LIST_PREFIX}{}]", items.join(",")).as_bytes(), 10_000)?;
    }
}
