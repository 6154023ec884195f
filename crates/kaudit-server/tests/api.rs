//! The query API held to openapi.yaml: every documented route answers with
//! the documented shape; pagination is stable under appends; reads need
//! role reader.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kaudit_event::MicroTime;
use kaudit_server::api::{routes, ApiContext, QueryLimits, OPENAPI_YAML};
use kaudit_server::auth::{Authenticator, Role, TokenConfig};
use kaudit_store::{Record, Store, StoreOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

struct Env {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    backend: Arc<kaudit_index::EmbeddedBackend>,
    gen: kaudit_gen::Generator,
    names: Vec<String>,
    n: i64,
}

fn append(env: &mut Env, count: usize) {
    let mut tx = env.store.transaction().expect("tx");
    let mut line = Vec::new();
    for _ in 0..count {
        let Some(c) = env.gen.next_into(&mut line) else {
            break;
        };
        tx.push(&Record {
            cluster: env.names[c].clone(),
            received: MicroTime(1_800_000_000_000_000 + env.n),
            event: line.clone(),
        })
        .expect("push");
        env.n += 1;
        line.clear();
    }
    tx.commit().expect("commit");
}

fn env(events: usize) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("store"));
    let mut cfg = kaudit_gen::GenConfig::new(5);
    cfg.events = Some(1_000_000);
    cfg.incident_every = 500;
    let gen = kaudit_gen::Generator::new(cfg).expect("gen");
    let names = gen.cluster_names().to_vec();
    let backend =
        Arc::new(kaudit_index::EmbeddedBackend::open(dir.path(), store.clone()).expect("backend"));
    let mut e = Env {
        dir,
        store,
        backend,
        gen,
        names,
        n: 0,
    };
    append(&mut e, events);
    e.backend.catch_up().expect("catch up");
    e.store.checkpoint().expect("checkpoint");
    e
}

fn app(e: &Env, auth: Authenticator) -> axum::Router {
    app_with(e, auth, QueryLimits::default(), None, None)
}

/// [`app`] with `store.trusted_key` and `store.trusted_checkpoint_dir`.
fn app_trusting(
    e: &Env,
    auth: Authenticator,
    trusted_key: Option<PathBuf>,
    trusted_checkpoint_dir: Option<PathBuf>,
) -> axum::Router {
    app_with(
        e,
        auth,
        QueryLimits::default(),
        trusted_key,
        trusted_checkpoint_dir,
    )
}

/// [`app`] with other query limits.
fn app_limited(e: &Env, auth: Authenticator, limits: QueryLimits) -> axum::Router {
    app_with(e, auth, limits, None, None)
}

fn app_with(
    e: &Env,
    auth: Authenticator,
    limits: QueryLimits,
    trusted_key: Option<PathBuf>,
    trusted_checkpoint_dir: Option<PathBuf>,
) -> axum::Router {
    let auth = Arc::new(auth);
    let ctx = ApiContext {
        store: e.store.clone(),
        backend: e.backend.clone(),
        auth: auth.clone(),
        limits,
    };
    let ctx_reports = ctx.clone();
    routes(ctx.clone())
        .merge(kaudit_server::console::routes(
            kaudit_server::console::ConsoleContext {
                api: ctx,
                encryption_key: None,
                trusted_key,
                trusted_checkpoint_dir,
            },
        ))
        .merge(reports_app(e, &ctx_reports, true))
        .merge(kaudit_server::alerts::routes(e.dir.path(), auth.clone()))
        .merge(kaudit_server::sinks::routes(Vec::new(), auth))
}

/// The report routes over `e`, with the log's signing key when `signing`.
fn reports_app(e: &Env, api: &ApiContext, signing: bool) -> axum::Router {
    let signer = signing.then(|| {
        Arc::new(
            kaudit_store::load_signer(e.dir.path(), &StoreOptions::default(), false)
                .expect("key")
                .expect("the store has its signing key"),
        )
    });
    kaudit_server::reports::routes(kaudit_server::reports::ReportsContext {
        api: api.clone(),
        data: e.dir.path().to_path_buf(),
        signer,
        cipher: None,
        chromium: None,
    })
}

fn open_auth() -> Authenticator {
    Authenticator::new(&[], &[], "default").expect("auth")
}

async fn get(app: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, String, Vec<u8>) {
    call(app, Request::get(uri), token).await
}

/// POSTs `body` as JSON; answers (status, content type, content disposition, body).
async fn post_json(
    app: &axum::Router,
    uri: &str,
    body: &Value,
    token: Option<&str>,
) -> (StatusCode, String, String, Vec<u8>) {
    let mut req = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let header = |h: &str| {
        resp.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (ct, cd) = (header("content-type"), header("content-disposition"));
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, ct, cd, body)
}

async fn call(
    app: &axum::Router,
    mut req: axum::http::request::Builder,
    token: Option<&str>,
) -> (StatusCode, String, Vec<u8>) {
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, ct, body)
}

fn resolve<'a>(doc: &'a Value, mut s: &'a Value) -> &'a Value {
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let mut cur = doc;
        for part in r.trim_start_matches("#/").split('/') {
            cur = &cur[part];
        }
        s = cur;
    }
    s
}

fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, schema);
    if v.is_null() {
        return if s.get("nullable") == Some(&Value::Bool(true)) {
            Ok(())
        } else {
            Err(format!("{at}: null where the schema does not allow it"))
        };
    }
    let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: expected {ty}, got {v}"));
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            return Err(format!("{at}: {v} is not one of {allowed:?}"));
        }
    }
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for r in req {
            let k = r.as_str().unwrap_or("");
            if v.get(k).is_none() {
                return Err(format!("{at}: required property {k:?} missing"));
            }
        }
    }
    if let (Some(props), Some(obj)) = (
        s.get("properties").and_then(Value::as_object),
        v.as_object(),
    ) {
        for (k, ps) in props {
            if let Some(x) = obj.get(k) {
                validate(doc, ps, x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn doc() -> Value {
    serde_saphyr::from_str(OPENAPI_YAML).expect("openapi.yaml parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_with_the_documented_shape() {
    let e = env(4000);
    let app = app(&e, open_auth());
    let doc = doc();
    // Real values for the path placeholders.
    let (_, _, body) = get(
        &app,
        "/api/v1/events?q=resource%3Ddeployments%20verb%3Dpatch%20stage%3DResponseComplete&limit=1",
        None,
    )
    .await;
    let page: Value = serde_json::from_slice(&body).expect("json");
    let ev = &page["events"][0]["event"];
    let audit_id = ev["auditID"].as_str().expect("auditID").to_string();
    let user = ev["user"]["username"].as_str().expect("user").to_string();
    let o = &ev["objectRef"];
    let object = format!(
        "{}/{}/{}",
        o["resource"].as_str().expect("resource"),
        o["namespace"].as_str().expect("namespace"),
        o["name"].as_str().expect("name")
    );
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 7, "every route is documented");
    let mut gets = 0;
    for (path, item) in paths {
        // POST-only routes (ingest, push, prune) are checked, routed in the
        // real server, by `every_documented_method_and_path_is_routed`.
        let Some(op) = item.get("get") else {
            assert!(
                item.get("post").is_some(),
                "{path}: documents neither GET nor POST"
            );
            continue;
        };
        gets += 1;
        let mut uri = path.clone();
        let mut query = Vec::new();
        for p in op["parameters"].as_array().cloned().unwrap_or_default() {
            let p = resolve(&doc, &p).clone();
            let name = p["name"].as_str().expect("name");
            let Some(ex) = p.get("example") else { continue };
            let ex = match ex {
                Value::String(s) => s
                    .replace("AUDIT_ID", &audit_id)
                    .replace("USER", &user)
                    .replace("OBJECT", &object),
                other => other.to_string(),
            };
            if p["in"] == "path" {
                uri = uri.replace(&format!("{{{name}}}"), &ex);
            } else {
                query.push(format!(
                    "{name}={}",
                    ex.replace(' ', "%20")
                        .replace('=', "%3D")
                        .replace(',', "%2C")
                ));
            }
        }
        if !query.is_empty() {
            uri = format!("{uri}?{}", query.join("&"));
        }
        let (status, ct, body) = get(&app, &uri, None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
        let resp = &op["responses"]["200"]["content"];
        let (media, spec) = resp
            .as_object()
            .and_then(|m| m.iter().next())
            .expect("200 content");
        assert!(
            ct.starts_with(media.as_str()),
            "{uri}: content-type {ct} vs documented {media}"
        );
        if media == "application/json" {
            let v: Value = serde_json::from_slice(&body).expect("json body");
            if let Err(msg) = validate(&doc, &spec["schema"], &v, &uri) {
                panic!("{msg}");
            }
            // Non-empty answers, so the shape check covered the items too.
            let nonempty = ["events", "stages", "rows", "sessions", "entries", "values"]
                .iter()
                .filter_map(|k| v.get(*k))
                .all(|a| a.as_array().is_some_and(|a| !a.is_empty()));
            assert!(nonempty, "{uri}: empty answer {v}");
        } else if path.ends_with("public-key") {
            let key = String::from_utf8(body).expect("utf-8 key");
            assert_eq!(key.trim(), e.store.verifier().text());
        } else {
            assert_eq!(body, OPENAPI_YAML.as_bytes());
        }
        // Documented error answers use the Error shape.
        if let Some(err) = op["responses"]["400"].get("content") {
            if path == "/api/v1/events" || path == "/api/v1/stats" {
                let (status, _, body) = get(&app, &format!("{path}?q=usr%3Dx"), None).await;
                assert_eq!(status, StatusCode::BAD_REQUEST);
                let v: Value = serde_json::from_slice(&body).expect("json");
                validate(&doc, &err["application/json"]["schema"], &v, path).expect("error shape");
                assert!(
                    v["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("did you mean \"user\""),
                    "{v}"
                );
            }
        }
    }
    assert!(gets >= 16, "documented GET routes: {gets}");
    // Undocumented routes do not exist.
    let (status, _, _) = get(&app, "/api/v1/eventz", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Every method of every path in openapi.yaml is routed by the server
/// `kaudit serve` runs (the whole router: ingest, push, query, console,
/// alerts, sinks, prune): answered by that method with neither 404 nor
/// 405. And the routes the server has are documented: a method a path
/// does not document is refused with 405 (or 404).
#[test]
fn every_documented_method_and_path_is_routed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = kaudit_server::config::ServerConfig {
        data: dir.path().join("data"),
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..Default::default()
    };
    let mut cfg = cfg;
    cfg.ingest.min_free_disk = 0;
    let mut server = support::Server::start(cfg);
    let doc = doc();
    let client = reqwest::blocking::Client::new();
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let uri = path
            .replace("{auditID}", "a1")
            .replace("{object}", "pods/default/p")
            .replace("{field}", "verb")
            .replace("{user}", "alice");
        let url = server.url(&uri);
        let methods = item.as_object().expect("path item");
        for method in ["get", "post", "put", "delete", "patch"] {
            let req = match method {
                "get" => client.get(&url),
                "post" => client.post(&url),
                "put" => client.put(&url),
                "delete" => client.delete(&url),
                _ => client.patch(&url),
            };
            let resp = req
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
            let status = resp.status().as_u16();
            // A handler's 404 ("no record with that auditID") is a JSON
            // error; the router's own 404 (no such route) is not.
            let body: Value =
                serde_json::from_slice(&resp.bytes().unwrap_or_default()).unwrap_or(Value::Null);
            let handler_404 = status == 404 && body.get("error").is_some();
            if methods.contains_key(method) {
                assert!(
                    (status != 404 || handler_404) && status != 405,
                    "{} {path} is documented but answers {status} {body}",
                    method.to_uppercase()
                );
                checked.push(format!("{} {path}", method.to_uppercase()));
            } else {
                assert!(
                    status == 405 || (status == 404 && !handler_404),
                    "{} {path} answers {status} but is not documented",
                    method.to_uppercase()
                );
            }
        }
    }
    for want in [
        "POST /api/v1/ingest/k8s",
        "POST /api/v1/ingest/gke-pubsub",
        "POST /api/v1/ingest/firehose",
        "POST /api/v1/admission",
        "POST /api/v1/prune",
        "POST /api/v1/verify",
        "GET /api/v1/events",
        "GET /api/v1/reports/templates",
        "POST /api/v1/reports",
    ] {
        assert!(checked.iter().any(|c| c == want), "{want} not documented");
    }
    assert_eq!(
        checked.len(),
        24,
        "documented method/path pairs: {checked:?}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_and_automatic_histograms() {
    let e = env(3000);
    let app = app(&e, open_auth());
    let json = |body: Vec<u8>| -> Value { serde_json::from_slice(&body).expect("json") };
    // The most written object: pages of 7 (newest first) chain to the whole history.
    let (_, _, body) = get(
        &app,
        "/api/v1/stats?q=verb%3Dpatch%2Cupdate&by=resource%2Cnamespace%2Cname&top=1",
        None,
    )
    .await;
    let key = json(body)["rows"][0]["key"].clone();
    let object = format!(
        "{}/{}/{}",
        key[0].as_str().expect("resource"),
        key[1].as_str().expect("namespace"),
        key[2].as_str().expect("name")
    );
    let (status, _, body) = get(
        &app,
        &format!("/api/v1/history/{object}?limit=100000"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let whole = json(body);
    assert!(whole["next_cursor"].is_null());
    let whole = whole["entries"].as_array().expect("entries").clone();
    assert!(whole.len() > 7, "{object} has several pages");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, _, body) = get(
            &app,
            &format!("/api/v1/history/{object}?limit=7&cursor={cursor}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let page = json(body);
        let entries = page["entries"].as_array().expect("entries");
        assert!(entries.len() <= 7);
        paged.extend(entries.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(paged, whole, "pages of 7 equal the whole history");
    let times: Vec<&str> = whole
        .iter()
        .map(|e| e["time"].as_str().expect("time"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    for bad in ["limit=0", "limit=100001", "cursor=nope"] {
        let (status, _, _) = get(&app, &format!("/api/v1/history/{object}?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // buckets=N: round buckets over the matches' own span, counting every match.
    let (_, _, body) = get(&app, "/api/v1/stats?q=verb%3Dget&buckets=40", None).await;
    let st = json(body);
    let (_, _, body) = get(&app, "/api/v1/stats?q=verb%3Dget", None).await;
    let plain = json(body);
    assert_eq!(st["total"], plain["total"]);
    let hg = &st["histogram"];
    let every = hg["every_us"].as_i64().expect("every_us");
    let (from, to) = (
        hg["since_us"].as_i64().expect("since_us"),
        hg["until_us"].as_i64().expect("until_us"),
    );
    assert!((to - from) / every <= 40, "at most 40 buckets: {hg}");
    assert_eq!(from % every, 0, "round bucket edges");
    let rows = st["rows"].as_array().expect("rows");
    let counted: u64 = rows
        .iter()
        .map(|r| r["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(Some(counted), plain["total"].as_u64());
    assert!(rows.iter().all(|r| {
        let b = r["bucket"].as_i64().expect("bucket");
        b >= from && b < to && b % every == 0
    }));
    let (status, _, _) = get(&app, "/api/v1/stats?buckets=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, _, body) = get(
        &app,
        "/api/v1/stats?q=verb%3Dnothing-like-this&buckets=10",
        None,
    )
    .await;
    let none = json(body);
    assert_eq!(none["total"], 0);
    assert!(none.get("histogram").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_verify_against_the_root() {
    let e = env(1500);
    let app = app(&e, open_auth());
    // A request with at least two stored stages.
    let (_, _, body) = get(&app, "/api/v1/events?reverse=true&limit=10000", None).await;
    let page: Value = serde_json::from_slice(&body).expect("json");
    let mut stages_of: std::collections::HashMap<String, usize> = Default::default();
    for x in page["events"].as_array().expect("events") {
        *stages_of
            .entry(x["event"]["auditID"].as_str().expect("id").to_string())
            .or_default() += 1;
    }
    let id = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|x| x["event"]["auditID"].as_str().expect("id").to_string())
        .find(|id| stages_of[id] >= 2)
        .expect("a request with two stages");
    let (status, _, body) = get(&app, &format!("/api/v1/events/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).expect("json");
    let stages = v["stages"].as_array().expect("stages");
    assert!(stages.len() >= 2, "RequestReceived and later stages: {v}");
    use base64::Engine;
    let b64 = |s: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(s.as_str().expect("b64"))
            .expect("b64")
    };
    for s in stages {
        assert_eq!(s["event"]["auditID"], id.as_str());
        let p = &s["proof"];
        let leaf_data = b64(&p["leaf_data"]);
        let leaf_hash: [u8; 32] = b64(&p["leaf_hash"]).try_into().expect("32 bytes");
        assert_eq!(kaudit_store::merkle::leaf_hash(&leaf_data), leaf_hash);
        let hashes: Vec<[u8; 32]> = p["hashes"]
            .as_array()
            .expect("hashes")
            .iter()
            .map(|h| b64(h).try_into().expect("32"))
            .collect();
        let root: [u8; 32] = b64(&p["root"]).try_into().expect("32");
        let idx = p["leaf_index"].as_u64().expect("idx");
        let size = p["tree_size"].as_u64().expect("size");
        assert!(
            p["checkpoint"]
                .as_str()
                .is_some_and(|n| n.contains(&size.to_string())),
            "checkpoint note names the size"
        );
        // RFC 6962 inclusion verification.
        let (mut fnode, mut snode) = (idx, size - 1);
        let mut r = leaf_hash;
        for h in &hashes {
            assert!(snode > 0, "proof too long");
            let node = |l: &[u8; 32], rr: &[u8; 32]| {
                use sha2::Digest;
                let mut d = sha2::Sha256::new();
                d.update([1u8]);
                d.update(l);
                d.update(rr);
                let out: [u8; 32] = d.finalize().into();
                out
            };
            if fnode % 2 == 1 || fnode == snode {
                r = node(h, &r);
                while fnode % 2 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            } else {
                r = node(&r, h);
            }
            fnode >>= 1;
            snode >>= 1;
        }
        assert_eq!(snode, 0);
        assert_eq!(
            r, root,
            "proof of leaf {idx} in tree {size} reaches the root"
        );
    }
    let (status, _, _) = get(&app, "/api/v1/events/no-such-id", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_are_stable_under_appends() {
    let mut e = env(2000);
    let app = app(&e, open_auth());
    let all_first = {
        let (_, _, body) = get(&app, "/api/v1/events?q=verb%3Dget&limit=10000", None).await;
        let v: Value = serde_json::from_slice(&body).expect("json");
        v["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|x| x["seq"].as_u64().expect("seq"))
            .collect::<Vec<_>>()
    };
    assert!(all_first.len() > 100);
    let (_, _, body) = get(&app, "/api/v1/events?q=verb%3Dget&limit=60", None).await;
    let p1: Value = serde_json::from_slice(&body).expect("json");
    let cursor = p1["next_cursor"].as_str().expect("cursor").to_string();
    // Newer records arrive, some indexed, some still in the tail.
    append(&mut e, 700);
    e.backend.catch_up().expect("catch up");
    append(&mut e, 300);
    let (_, _, body) = get(
        &app,
        &format!("/api/v1/events?q=verb%3Dget&limit=60&cursor={cursor}"),
        None,
    )
    .await;
    let p2: Value = serde_json::from_slice(&body).expect("json");
    let seqs: Vec<u64> = p2["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|x| x["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, all_first[60..120].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_role_reader() {
    let e = env(300);
    let tok = |name: &str, token: &str, role: Role| TokenConfig {
        name: name.into(),
        token: Some(token.into()),
        token_file: None,
        cluster: None,
        clusters: Vec::new(),
        role,
        strict: false,
    };
    let auth = Authenticator::new(
        &[
            tok("kube", "ingest-token-0123456789", Role::Ingest),
            tok("ui", "reader-token-0123456789", Role::Reader),
        ],
        &[],
        "default",
    )
    .expect("auth");
    let app = app(&e, auth);
    assert_eq!(
        get(&app, "/api/v1/events", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, "/api/v1/events", Some("ingest-token-0123456789"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&app, "/api/v1/events", Some("reader-token-0123456789"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        get(
            &app,
            "/api/v1/stats?by=verb",
            Some("wrong-token-0123456789")
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_routes_respect_roles_and_verification_reports_ok() {
    let e = env(1500);
    let tokens = [
        ("reader-token-0123456789", Role::Reader),
        ("admin-token-0123456789a", Role::Admin),
    ];
    let cfgs: Vec<TokenConfig> = tokens
        .iter()
        .map(|(t, role)| TokenConfig {
            name: format!("{role:?}").to_lowercase(),
            token: Some(t.to_string()),
            token_file: None,
            cluster: Some("c".into()),
            clusters: vec![],
            role: *role,
            strict: false,
        })
        .collect();
    let app = app(&e, Authenticator::new(&cfgs, &[], "default").expect("auth"));
    let (reader, admin) = (Some(tokens[0].0), Some(tokens[1].0));
    let (status, _, _) = get(&app, "/api/v1/whoami", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (tok, role) in [(reader, "reader"), (admin, "admin")] {
        let (status, _, body) = get(&app, "/api/v1/whoami", tok).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["role"], role);
        assert_eq!(v["auth"], true);
    }
    // Nothing verified yet; a reader may look but not run it.
    let (_, _, body) = get(&app, "/api/v1/verify", reader).await;
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(v["last"].is_null(), "{v}");
    let (status, _, _) = call(&app, Request::post("/api/v1/verify"), reader).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = call(&app, Request::post("/api/v1/verify"), admin).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    let last = &v["last"];
    assert_eq!(last["ok"], true, "{v}");
    assert_eq!(last["records"], 1500);
    assert_eq!(last["tree_size"], 1500);
    assert_eq!(last["by"], "admin");
    // The checkpoint's root is the one verification recomputed.
    let (_, _, body) = get(&app, "/api/v1/checkpoint", reader).await;
    let cp: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(cp["size"], 1500);
    assert_eq!(cp["root"], last["root"]);
    // The result is kept on disk: a fresh router (a restart) still shows it.
    let again = app_with_open_auth(&e);
    let (_, _, body) = get(&again, "/api/v1/verify", None).await;
    let kept: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(kept["last"], *last);
    // A damaged segment is reported as a failure, naming where.
    let seg = std::fs::read_dir(e.store.dir().join("segments"))
        .expect("segments")
        .filter_map(|d| d.ok().map(|d| d.path()))
        .find(|p| p.is_file())
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seg, bytes).expect("write");
    let (status, _, body) = call(&app, Request::post("/api/v1/verify"), admin).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["last"]["ok"], false, "{v}");
    assert!(v["last"]["problem_count"].as_u64().unwrap_or(0) >= 1, "{v}");
}

fn app_with_open_auth(e: &Env) -> axum::Router {
    app(e, open_auth())
}

/// Appends one event nested `depth` levels deep in requestObject, with
/// `audit_id`, and returns its exact bytes.
fn append_deep(e: &mut Env, audit_id: &str, depth: usize) -> Vec<u8> {
    let nested = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let event = format!(
        concat!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","#,
            r#""auditID":"{}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/d/configmaps","#,
            r#""verb":"create","user":{{"username":"deep"}},"sourceIPs":["10.0.0.1"],"#,
            r#""objectRef":{{"resource":"configmaps","namespace":"d","name":"deep","apiVersion":"v1"}},"#,
            r#""responseStatus":{{"code":201}},"requestObject":{},"#,
            r#""requestReceivedTimestamp":"2027-01-15T08:00:00.000000Z","#,
            r#""stageTimestamp":"2027-01-15T08:00:00.001000Z"}}"#
        ),
        audit_id, nested
    );
    let mut tx = e.store.transaction().expect("tx");
    tx.push(&Record {
        cluster: "deep".into(),
        received: MicroTime(1_800_000_000_000_000 + e.n),
        event: event.clone().into_bytes(),
    })
    .expect("push");
    tx.commit().expect("commit");
    e.n += 1;
    event.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_event_is_served_with_its_proof() {
    let mut e = env(200);
    let id = "deep-0000-4000-8000-000000000300";
    let stored = append_deep(&mut e, id, 300);
    e.backend.catch_up().expect("catch up");
    e.store.checkpoint().expect("checkpoint");
    let app = app(&e, open_auth());
    let (status, ct, body) = get(&app, &format!("/api/v1/events/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(ct.starts_with("application/json"), "{ct}");
    // The exact stored bytes are in the answer, as JSON (not a string).
    let text = String::from_utf8(body).expect("utf-8");
    let stored = String::from_utf8(stored).expect("utf-8");
    assert!(
        text.contains(&format!("\"event\":{stored}")),
        "the event is spliced in verbatim"
    );
    assert!(text.starts_with(&format!("{{\"auditID\":\"{id}\",\"stages\":[")));
    // The proof is there and its leaf holds the event bytes.
    let at = text.find("\"leaf_data\":\"").expect("leaf_data") + 13;
    let b64 = &text[at..at + text[at..].find('"').expect("end")];
    use base64::Engine;
    let leaf = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert!(
        leaf.windows(stored.len()).any(|w| w == stored.as_bytes()),
        "leaf_data holds the event"
    );
    assert!(
        text.contains("\"checkpoint\":\""),
        "checkpoint note present"
    );
    // The events listing serves it too.
    let (status, _, body) = get(&app, "/api/v1/events?q=user%3Ddeep", None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_bounds_that_would_overflow_are_refused() {
    let e = env(300);
    let app = app(&e, open_auth());
    for uri in [
        "/api/v1/stats?since=9223372036000s&until=9999-12-31&every=1s",
        "/api/v1/stats?since=9223372036000s&until=9999-12-31&every=1w",
        "/api/v1/stats?since=9223372036000s&until=9999-12-31&every=15250284452w",
        "/api/v1/stats?since=9223372036000s&until=9999-12-31&buckets=10",
        "/api/v1/stats?since=9223372036854s&until=9999-12-31&buckets=1000",
        "/api/v1/stats?since=-9223372036000s&buckets=10",
        "/api/v1/stats?since=9223372036854775807s",
        "/api/v1/stats?every=9223372036854775807s",
    ] {
        let (status, _, body) = get(&app, uri, None).await;
        let v = json(body);
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::OK,
            "{uri}: {status} {v}"
        );
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(v["status"], 400, "{uri}: {v}");
            assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        }
    }
    // The reported request names what is wrong.
    let (status, _, body) = get(
        &app,
        "/api/v1/stats?since=9223372036000s&until=9999-12-31&every=1s",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v = json(body);
    assert!(v["error"].as_str().unwrap_or("").contains("buckets"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_queries_are_answered_or_refused_naming_the_limit() {
    let e = env(300);
    let app = app(&e, open_auth());
    // 2,000 bare words, and 2,000 `or` terms: 400 naming the cap.
    for sep in ["%20", "%20or%20"] {
        let q = vec!["a"; 2000].join(sep);
        let (status, _, body) = get(&app, &format!("/api/v1/events?q={q}"), None).await;
        let v = json(body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains("1024"), "{v}");
        assert!(v["column"].as_u64().is_some(), "{v}");
    }
    // 1,024 `or` terms are answered like the short query.
    let mut terms: Vec<String> = (0..1023).map(|i| format!("user%3Du{i}")).collect();
    terms.push("verb%3Dget".into());
    let long = terms.join("%20or%20");
    let (status, _, body) = get(&app, &format!("/api/v1/events?q={long}&limit=10000"), None).await;
    assert_eq!(status, StatusCode::OK);
    let long_count = json(body)["count"].clone();
    let (_, _, body) = get(&app, "/api/v1/events?q=verb%3Dget&limit=10000", None).await;
    assert_eq!(long_count, json(body)["count"]);
    let (status, _, _) = get(&app, &format!("/api/v1/stats?q={long}&by=verb"), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_have_a_time_budget_and_a_concurrency_bound() {
    let e = env(300);
    // A budget spent before the work starts: the index's loops give up.
    let app = app_limited(
        &e,
        open_auth(),
        QueryLimits::new(std::time::Duration::ZERO, 4),
    );
    for uri in [
        "/api/v1/events?q=verb%3Dget",
        "/api/v1/stats?by=verb",
        "/api/v1/stats?q=a&every=1h",
        "/api/v1/history/pods/default/web-0",
        "/api/v1/history?user=alice",
    ] {
        let (status, _, body) = get(&app, uri, None).await;
        let v = json(body);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains("time budget"),
            "{uri}: {v}"
        );
    }
    // Every slot taken: 503 with Retry-After, then answered once one frees.
    let limits = QueryLimits::new(std::time::Duration::from_secs(10), 1);
    let app = app_limited(&e, open_auth(), limits.clone());
    let held = limits.try_reserve().expect("a free slot");
    let resp = app
        .clone()
        .oneshot(
            Request::get("/api/v1/events?q=verb%3Dget")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("retry-after").is_some());
    drop(held);
    let (status, _, _) = get(&app, "/api/v1/events?q=verb%3Dget", None).await;
    assert_eq!(status, StatusCode::OK);
}

fn json(body: Vec<u8>) -> Value {
    serde_json::from_slice(&body).expect("json")
}

#[tokio::test]
async fn console_verify_says_which_key_and_checkpoint_it_trusted() {
    let e = env(1500);
    // Nothing trusted configured: ok, with the caveat and the key it used.
    let app = app_with_open_auth(&e);
    let (status, _, body) = call(&app, Request::post("/api/v1/verify"), None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    let last = &v["last"];
    assert_eq!(last["ok"], true, "{v}");
    assert_eq!(last["key_source"], "store", "{v}");
    assert_eq!(last["key"], e.store.verifier().text(), "{v}");
    assert!(last["trusted_checkpoint"].is_null(), "{v}");
    assert!(
        last["caveat"]
            .as_str()
            .is_some_and(|c| c.contains("store's own key")),
        "{v}"
    );

    // A trusted key and a witness's checkpoint, both outside the data dir.
    let outside = tempfile::tempdir().expect("tempdir");
    let key_file = outside.path().join("published.pub");
    std::fs::write(&key_file, e.store.verifier().text()).expect("write key");
    let witness = outside.path().join("witness");
    std::fs::create_dir_all(&witness).expect("mkdir");
    let cp = e.store.latest_checkpoint().expect("a checkpoint");
    std::fs::write(witness.join("checkpoint.txt"), &cp.note).expect("write cp");
    let app = app_trusting(
        &e,
        open_auth(),
        Some(key_file.clone()),
        Some(witness.clone()),
    );
    let (status, _, body) = call(&app, Request::post("/api/v1/verify"), None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    let last = &v["last"];
    assert_eq!(last["ok"], true, "{v}");
    assert_eq!(last["key_source"], "trusted", "{v}");
    assert!(last["caveat"].is_null(), "{v}");
    assert!(
        last["trusted_checkpoint"]
            .as_str()
            .is_some_and(|c| c.contains("checkpoint.txt") && c.contains("tree size 1500")),
        "{v}"
    );

    // The witness saw another history at size 1000 (signed with the same
    // key): the store no longer extends it, and the console says so.
    let signer = kaudit_store::note::Signer25519::from_private_text(
        std::fs::read_to_string(e.store.dir().join("checkpoint.key"))
            .expect("key")
            .trim(),
    )
    .expect("signer");
    std::fs::write(
        witness.join("checkpoint-2.txt"),
        signer.sign_checkpoint(1000, &[7u8; 32]),
    )
    .expect("write");
    std::fs::remove_file(witness.join("checkpoint.txt")).expect("rm");
    let (status, _, body) = call(&app, Request::post("/api/v1/verify"), None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["last"]["ok"], false, "{v}");
    assert!(
        v["last"]["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains("trusted checkpoint"))),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_built_as_documented() {
    let e = env(3000);
    let app = app(&e, open_auth());
    let doc = doc();
    let op = &doc["paths"]["/api/v1/reports"]["post"];
    let example = op["requestBody"]["content"]["application/json"]["example"].clone();
    assert_eq!(example["template"], "pci-dss", "documented example");
    // The month the generated events fall in.
    let req = serde_json::json!({"template": "pci-dss", "period": "2026-01", "format": "json"});
    let (status, ct, _, body) = post_json(&app, "/api/v1/reports", &req, None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_slice(&body).expect("json");
    let schema = &op["responses"]["200"]["content"]["application/json"]["schema"];
    validate(&doc, schema, &v, "/api/v1/reports").unwrap_or_else(|m| panic!("{m}"));
    // The same rows the library lists for the same request.
    let (since, until) = kaudit_report::parse_month("2026-01").expect("month");
    let mut lib_req = kaudit_report::ReportRequest::new(
        kaudit_report::Template::builtin("pci-dss").expect("template"),
        since,
        until,
        MicroTime::now(),
    );
    lib_req.verify_store = false;
    let ev = kaudit_report::build(
        &lib_req,
        &kaudit_report::Inputs {
            store: &e.store,
            backend: e.backend.as_ref(),
            alerts: None,
            quarantined: Vec::new(),
        },
    )
    .expect("library report");
    let ids = |secs: &Value| -> Vec<(String, Vec<String>)> {
        secs.as_array()
            .expect("sections")
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or("").to_string(),
                    s["rows"]
                        .as_array()
                        .expect("rows")
                        .iter()
                        .map(|r| r["auditID"].as_str().unwrap_or("").to_string())
                        .collect(),
                )
            })
            .collect()
    };
    let lib = serde_json::to_value(&ev.report).expect("json");
    assert_eq!(ids(&v["sections"]), ids(&lib["sections"]));
    let listed: usize = ids(&v["sections"]).iter().map(|(_, r)| r.len()).sum();
    assert!(listed > 0, "the generated incidents are listed");

    // The bundle is an attachment that verifies offline with the log's key.
    let req = serde_json::json!({"template": "pci-dss", "period": "2026-01", "format": "bundle"});
    let (status, ct, cd, body) = post_json(&app, "/api/v1/reports", &req, None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/zstd");
    assert!(
        cd.starts_with("attachment;") && cd.contains(".tar.zst"),
        "{cd}"
    );
    let ok =
        kaudit_report::bundle::verify(&body, Some(e.store.verifier())).expect("bundle verifies");
    assert_eq!(ok.rows, listed);
    // The HTML embeds the bundle and its checker.
    let req = serde_json::json!({"template": "soc2", "since": "2026-01-01", "until": "2026-02-01", "format": "html"});
    let (status, ct, cd, body) = post_json(&app, "/api/v1/reports", &req, None).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(
        ct.starts_with("text/html") && cd.contains(".html"),
        "{ct} {cd}"
    );
    let html = String::from_utf8(body).expect("utf-8");
    assert!(html.contains("id=\"kaudit-bundle\"") && html.contains("function verifyConsistency"));

    // Bad input is named; a caller never names a file on the server.
    for (bad, what) in [
        (
            serde_json::json!({"template": "/etc/passwd", "period": "2026-01"}),
            "built-in",
        ),
        (
            serde_json::json!({"template": "x.yaml", "period": "2026-01"}),
            "built-in",
        ),
        (
            serde_json::json!({"template": "pci-dss", "period": "2026-13"}),
            "--period",
        ),
        (serde_json::json!({"template": "pci-dss"}), "period"),
        (
            serde_json::json!({"template": "pci-dss", "period": "2026-01", "cluster": ["a b"]}),
            "cluster",
        ),
        (
            serde_json::json!({"template": "pci-dss", "period": "2026-01", "format": "docx"}),
            "docx",
        ),
        (
            serde_json::json!({"template": "pci-dss", "period": "2026-01", "extra": 1}),
            "extra",
        ),
    ] {
        let (status, _, _, body) = post_json(&app, "/api/v1/reports", &bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let v: Value = serde_json::from_slice(&body).expect("json error");
        validate(
            &doc,
            &op["responses"]["400"]["content"]["application/json"]["schema"],
            &v,
            "400",
        )
        .expect("error shape");
        assert!(
            v["error"].as_str().unwrap_or("").contains(what),
            "{bad}: {v}"
        );
    }
    // No Chromium here: PDF is refused, saying why; the templates say so too.
    let req = serde_json::json!({"template": "cis", "period": "2026-01", "format": "pdf"});
    let (status, _, _, body) = post_json(&app, "/api/v1/reports", &req, None).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(String::from_utf8_lossy(&body).contains("Chromium"));
    let (_, _, body) = get(&app, "/api/v1/reports/templates", None).await;
    let t: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(t["pdf"], false);
    assert_eq!(t["formats"], serde_json::json!(["json", "html", "bundle"]));
    let names: Vec<&str> = t["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["pci-dss", "soc2", "cis"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_need_a_reader_keep_the_budget_and_need_the_key_to_sign() {
    let e = env(1500);
    let tok = |name: &str, token: &str, role: Role| TokenConfig {
        name: name.into(),
        token: Some(token.into()),
        token_file: None,
        cluster: None,
        clusters: Vec::new(),
        role,
        strict: false,
    };
    let auth = Arc::new(
        Authenticator::new(
            &[
                tok("kube", "ingest-token-0123456789", Role::Ingest),
                tok("auditor", "reader-token-0123456789", Role::Reader),
            ],
            &[],
            "default",
        )
        .expect("auth"),
    );
    let api = |limits| ApiContext {
        store: e.store.clone(),
        backend: e.backend.clone(),
        auth: auth.clone(),
        limits,
    };
    let app = reports_app(&e, &api(QueryLimits::default()), true);
    let req = serde_json::json!({"template": "soc2", "period": "2026-01"});
    let uri = "/api/v1/reports";
    assert_eq!(
        post_json(&app, uri, &req, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_json(&app, uri, &req, Some("ingest-token-0123456789"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_json(&app, uri, &req, Some("reader-token-0123456789"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/api/v1/reports/templates", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A spent budget answers 503 naming query.timeout.
    let tight = reports_app(
        &e,
        &api(QueryLimits::new(std::time::Duration::from_nanos(1), 1)),
        true,
    );
    let (status, _, _, body) = post_json(&tight, uri, &req, Some("reader-token-0123456789")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("query.timeout"));
    // Without the log's signing key: the JSON preview only.
    let unsigned = reports_app(&e, &api(QueryLimits::default()), false);
    let tokn = Some("reader-token-0123456789");
    assert_eq!(
        post_json(&unsigned, uri, &req, tokn).await.0,
        StatusCode::OK
    );
    let html = serde_json::json!({"template": "soc2", "period": "2026-01", "format": "html"});
    let (status, _, _, body) = post_json(&unsigned, uri, &html, tokn).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(String::from_utf8_lossy(&body).contains("signing key"));
    let (_, _, body) = get(&unsigned, "/api/v1/reports/templates", tokn).await;
    let t: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(t["formats"], serde_json::json!(["json"]));
}
