//! Hostile query sizes: long `and`/`or` chains are flat lists (no
//! recursion in their length), the number of conditions is capped with an
//! error naming the limit, and time bounds never overflow.

use kaudit_event::{Event, EventDoc, MicroTime, UserInfo};
use kaudit_query::{parse, parse_time_bound, Expr, Query, MAX_TERMS};

fn event(user: &str) -> Event {
    Event::from_doc(EventDoc {
        audit_id: format!("id-{user}"),
        verb: "get".into(),
        request_uri: "/api/v1/pods".into(),
        user: UserInfo {
            username: user.into(),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Runs `f` on a thread with a small stack, as a tokio worker's is small
/// next to a long query: a recursion in the chain length overflows it.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(128 << 10)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow")
}

#[test]
fn long_chains_parse_flat_and_match_on_a_small_stack() {
    on_small_stack(|| {
        // MAX_TERMS bare words: one flat `and`.
        let words = vec!["get"; MAX_TERMS].join(" ");
        let e = parse(&words).expect("parses");
        match &e {
            Expr::And(v) => assert_eq!(v.len(), MAX_TERMS),
            other => panic!("expected a flat and, got {other:?}"),
        }
        let q = Query::compile(e).expect("compiles");
        assert!(q.matches(&event("alice"), "c"));

        // MAX_TERMS `or` terms, the matching one last.
        let mut terms: Vec<String> = (0..MAX_TERMS - 1).map(|i| format!("user=u{i}")).collect();
        terms.push("user=alice".into());
        let text = terms.join(" or ");
        let e = parse(&text).expect("parses");
        match &e {
            Expr::Or(v) => assert_eq!(v.len(), MAX_TERMS),
            other => panic!("expected a flat or, got {other:?}"),
        }
        let q = Query::compile(e.clone()).expect("compiles");
        assert!(q.matches(&event("alice"), "c"));
        assert!(q.matches(&event("u7"), "c"));
        assert!(!q.matches(&event("mallory"), "c"));
        // Printing and reading back keeps the tree (and drops it without recursion).
        assert_eq!(parse(&e.to_string()).expect("reparses"), e);
    });
}

#[test]
fn chains_keep_the_binary_semantics() {
    // `a b or c d` is `(a and b) or (c and d)`; a parenthesized chain stays
    // one operand.
    let e = parse("verb=get user=alice or verb=list user=bob").expect("parses");
    let (alice, bob) = (event("alice"), event("bob"));
    let q = Query::compile(e.clone()).expect("compiles");
    assert!(q.matches(&alice, "c"));
    assert!(!q.matches(&bob, "c"), "bob's event is a get, not a list");
    match e {
        Expr::Or(v) => {
            assert_eq!(v.len(), 2);
            assert!(v.iter().all(|x| matches!(x, Expr::And(a) if a.len() == 2)));
        }
        other => panic!("expected or of ands, got {other:?}"),
    }
    let e = parse("(user=alice or user=bob) verb=get").expect("parses");
    let q = Query::compile(e).expect("compiles");
    assert!(q.matches(&alice, "c") && q.matches(&bob, "c"));
    assert!(!q.matches(&event("carol"), "c"));
}

#[test]
fn more_conditions_than_the_cap_are_refused_naming_the_limit() {
    for sep in [" ", " or ", " and "] {
        // 2,000 conditions, well under the length limit.
        let text = vec!["a"; 2000].join(sep);
        let err = on_small_stack(move || parse(&text)).expect_err("too many terms");
        assert!(
            err.message.contains(&MAX_TERMS.to_string()),
            "names the limit: {err}"
        );
        // The column points at the first condition past the cap.
        assert_eq!(err.column, MAX_TERMS * (1 + sep.len()) + 1, "{err}");
    }
    // Comparisons count too, and exactly MAX_TERMS pass.
    let ok: Vec<String> = (0..MAX_TERMS).map(|i| format!("user=u{i}")).collect();
    assert!(parse(&ok.join(" or ")).is_ok());
    let over: Vec<String> = (0..=MAX_TERMS).map(|i| format!("user=u{i}")).collect();
    assert!(parse(&over.join(" or ")).is_err());
}

#[test]
fn time_bounds_never_overflow() {
    let now = MicroTime::now();
    for s in [
        "9223372036854775807s",
        "-9223372036854775807s",
        "9223372036000s",
        "-9223372036000w",
        "153722867280912930w",
        "262143-12-31",
        "-262143-01-01",
        "+262143-12-31",
        "9999-12-31T23:59:59.999999999Z",
    ] {
        // Either a time or an error; never a panic.
        let _ = parse_time_bound(s, now);
        let _ = parse_time_bound(s, MicroTime(i64::MIN));
        let _ = parse_time_bound(s, MicroTime(i64::MAX));
    }
    assert!(parse_time_bound("9223372036854775807s", now).is_err());
    assert!(parse_time_bound("-9223372036854775807s", MicroTime(i64::MAX)).is_err());
}
