//! Retention while serving: `serve` applies `store.retention` by itself on
//! its schedule, and an admin may prune now with `POST /api/v1/prune` (a
//! reader may not).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kaudit_event::MicroTime;
use kaudit_server::auth::{Authenticator, Role, TokenConfig};
use kaudit_server::config::{RetentionConfig, ServerConfig};
use kaudit_server::retention::PruneReply;
use kaudit_store::{list_segments, Record, Store, StoreOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::Server;
use tower::ServiceExt;

fn record(i: u64) -> Record {
    let ev = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/pods/p{i}","verb":"get","user":{{"username":"alice"}},"objectRef":{{"resource":"pods","namespace":"ns","name":"p{i}"}}}}"#
    );
    Record {
        cluster: "c".into(),
        received: MicroTime(1_700_000_000_000_000 + i as i64 * 1000),
        event: ev.into_bytes(),
    }
}

/// Fills a store in `dir` with several small segments and a checkpoint.
fn fill(dir: &Path) -> usize {
    let store = Store::open(
        dir,
        StoreOptions {
            bundle_max_records: 50,
            segment_target_bytes: 8 << 10,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    for b in 0..20u64 {
        store
            .append_batch((b * 100..b * 100 + 100).map(record).collect())
            .unwrap();
    }
    store.close().unwrap();
    let n = list_segments(dir).unwrap().len();
    assert!(n > 3, "want several segments, got {n}");
    n
}

fn token(name: &str, t: &str, role: Role) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        token: Some(t.into()),
        token_file: None,
        cluster: None,
        clusters: Vec::new(),
        role,
        strict: false,
    }
}

async fn post(app: &axum::Router, body: &str, tok: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::post("/api/v1/prune")
        .header("authorization", format!("Bearer {tok}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

#[tokio::test]
async fn admin_route_prunes_and_answers_with_what_it_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let before = fill(dir.path());
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
    let auth = Arc::new(
        Authenticator::new(
            &[
                token("root", "admin-token-0123456789", Role::Admin),
                token("viewer", "reader-token-0123456789", Role::Reader),
            ],
            &[],
            "default",
        )
        .unwrap(),
    );
    let metrics = Arc::new(kaudit_metrics::Metrics::default());
    let app = kaudit_server::retention::routes(store.clone(), None, metrics, auth);

    // A reader may not prune.
    let (status, body) = post(&app, r#"{"max_size":"1"}"#, "reader-token-0123456789").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(list_segments(dir.path()).unwrap().len(), before);

    // No policy configured and none given: 400 naming what to set.
    let (status, body) = post(&app, "", "admin-token-0123456789").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("max_size"));

    // A dry run reports and keeps everything.
    let (status, body) = post(
        &app,
        r#"{"max_size":"1","dry_run":true}"#,
        "admin-token-0123456789",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let dry: PruneReply = serde_json::from_slice(&body).unwrap();
    assert!(dry.dry_run && !dry.removed.is_empty());
    assert_eq!(list_segments(dir.path()).unwrap().len(), before);

    // The admin prunes: every segment but the active one goes.
    let (status, body) = post(&app, r#"{"max_size":"1"}"#, "admin-token-0123456789").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let r: PruneReply = serde_json::from_slice(&body).unwrap();
    assert_eq!(r.removed.len(), before - 1);
    assert_eq!(r.removed, dry.removed);
    assert!(r.before > 0);
    assert_eq!(r.before, r.removed.last().unwrap().end_seq);
    for s in &r.removed {
        assert!(!Path::new(&s.segment).exists(), "{} still there", s.segment);
    }
    assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    // The signed prune record says it was on purpose; the store still verifies.
    assert!(kaudit_store::read_pruned(dir.path(), store.verifier())
        .unwrap()
        .is_some_and(|p| p.before == r.before));
    let rep = kaudit_store::verify::verify(dir.path(), &Default::default()).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
}

#[test]
fn serve_applies_retention_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let before = fill(&data);
    let mut cfg = ServerConfig {
        data: data.clone(),
        ..Default::default()
    };
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.ingest.min_free_disk = 0;
    cfg.store.retention = Some(RetentionConfig {
        max_age: None,
        max_size: Some(1),
        interval: Duration::from_millis(300),
    });
    let mut server = Server::start(cfg);
    let deadline = Instant::now() + Duration::from_secs(20);
    while list_segments(&data).unwrap().len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    assert_eq!(
        list_segments(&data).unwrap().len(),
        1,
        "serve did not prune {before} segments down to the active one"
    );
    let rep = kaudit_store::verify::verify(&data, &Default::default()).unwrap();
    assert!(rep.ok(), "{:?}", rep.problems);
    assert!(rep.pruned_before > 0);
}
