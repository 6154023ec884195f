//! User activity benchmark on kaudit-gen traffic: a user's sessions and RBAC
//! from usage answered from the index columns (`SearchBackend::scan_fields`),
//! next to the baseline measured in the same run over the same store: reading
//! and parsing every one of the user's events (`for_each_match`, what both
//! did before the columnar scan), for the busiest human and service-account
//! users. Prints p50 of each and the ratio.
//!
//! Run: `BENCH_EVENTS=1000000 cargo bench -p kaudit-index --bench user_activity`
//! (or bench/user_activity.sh). BENCH_DIR keeps the store between runs.

use kaudit_event::{Event, MicroTime};
use kaudit_index::history::user_sessions;
use kaudit_index::rbac::{observe, RbacRequest};
use kaudit_index::{EmbeddedBackend, SearchBackend};
use kaudit_query::{Field, Query};
use kaudit_store::{LogReader, Record, Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn p50_ms(runs: usize, mut f: impl FnMut() -> u64) -> (f64, u64) {
    let mut ms = Vec::new();
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        n = f();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    (ms[(ms.len() - 1) / 2], n)
}

fn import(data: &Path, n: u64) {
    let mut cfg = kaudit_gen::GenConfig::new(7);
    cfg.events = Some(n);
    cfg.spread_incidents();
    let mut g = kaudit_gen::Generator::new(cfg).expect("generator");
    let names = g.cluster_names().to_vec();
    let store = Store::open(data, StoreOptions::default()).expect("store");
    let mut tx = store.transaction().expect("tx");
    let mut line = Vec::new();
    let mut i = 0i64;
    while let Some(c) = g.next_into(&mut line) {
        let ev = Event::from_json(&line).expect("event");
        tx.push(&Record {
            cluster: names[c].clone(),
            received: MicroTime(1_800_000_000_000_000 + i),
            event: ev.bytes().to_vec(),
        })
        .expect("push");
        line.clear();
        i += 1;
        if i % 200_000 == 0 {
            tx.commit().expect("commit");
            tx = store.transaction().expect("tx");
        }
    }
    tx.commit().expect("commit");
}

fn main() {
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let data = root.join(format!("store-{n}"));
    if !data.join("segments").is_dir() {
        std::fs::create_dir_all(&data).expect("bench dir");
        let t = Instant::now();
        import(&data, n);
        println!("store: {n} events in {:.1}s", t.elapsed().as_secs_f64());
    }
    let store = Arc::new(Store::open(&data, StoreOptions::default()).expect("store"));
    let reader: Arc<dyn LogReader + Send + Sync> = store;
    let backend = EmbeddedBackend::open(&data, reader).expect("backend");
    let t = Instant::now();
    let added = backend.catch_up().expect("index");
    if added > 0 {
        println!("index: {added} events in {:.1}s", t.elapsed().as_secs_f64());
    }
    let users = backend.field_values(&Field::User, "", 1000).expect("users");
    let pick = |want: fn(&str) -> bool| users.iter().find(|(u, _)| want(u)).cloned();
    let chosen = [
        pick(|u| u.contains('@')),
        pick(|u| u.starts_with("system:serviceaccount:")),
    ];
    println!("{n} events; p50 of 5 columnar runs vs 2 event-reading runs");
    for (user, events) in chosen.into_iter().flatten() {
        let q = Query::parse(&format!(
            "user={}",
            serde_json::to_string(&user).expect("quote")
        ))
        .expect("query");
        let (base_ms, read) = p50_ms(2, || {
            let mut k = 0u64;
            backend
                .for_each_match(&q, None, None, &mut |_, _, ev, _| {
                    k += u64::from(!ev.doc().verb.is_empty());
                    true
                })
                .expect("baseline");
            k
        });
        let (sess_ms, sessions) = p50_ms(5, || {
            user_sessions(&backend, &user, None, None, None)
                .expect("sessions")
                .len() as u64
        });
        let req = RbacRequest {
            user: user.clone(),
            filter: String::new(),
            since: None,
            until: None,
            resource_names: true,
            budget: None,
        };
        let (rbac_ms, requests) = p50_ms(5, || {
            let u = observe(&backend, &req).expect("rbac");
            u.requests + u.denied
        });
        println!(
            "{user} ({events} events): reading every event {base_ms:.1} ms ({read} read); sessions {sess_ms:.1} ms ({sessions} sessions, {:.0}x faster); rbac {rbac_ms:.1} ms ({requests} requests, {:.0}x faster)",
            base_ms / sess_ms,
            base_ms / rbac_ms
        );
    }
}
