//! OCSF output against the OCSF 1.x API Activity class (`class_uid` 6003):
//! every attribute the schema marks required is present with its type, and
//! the enumerated ids are consistent (`type_uid` = class * 100 + activity).
//!
//! The required list below is written from the OCSF schema (schema.ocsf.io,
//! class API Activity, 1.1): the base event's required attributes, the
//! class's own, and the required attributes of the objects they hold.

use kaudit_event::MicroTime;
use kaudit_sinks::ocsf::record;
use kaudit_sinks::Outgoing;
use serde_json::Value;

/// What a JSON value must be.
#[derive(Clone, Copy, Debug)]
enum Ty {
    /// `integer_t` / `long_t` / `timestamp_t` (milliseconds).
    Int,
    /// `string_t` and its subtypes (`ip_t`, `url_t`...).
    Str,
    /// An object.
    Obj,
}

/// (attribute path, type): required by OCSF 1.1 API Activity.
const REQUIRED: &[(&str, Ty)] = &[
    // Base event, required.
    ("activity_id", Ty::Int),
    ("category_uid", Ty::Int),
    ("class_uid", Ty::Int),
    ("severity_id", Ty::Int),
    ("time", Ty::Int),
    ("type_uid", Ty::Int),
    ("metadata", Ty::Obj),
    // metadata: product and version required; product.vendor_name required.
    ("metadata.product", Ty::Obj),
    ("metadata.product.vendor_name", Ty::Str),
    ("metadata.version", Ty::Str),
    // API Activity, required.
    ("actor", Ty::Obj),
    ("api", Ty::Obj),
    ("api.operation", Ty::Str),
    ("cloud", Ty::Obj),
    ("cloud.provider", Ty::Str),
    ("src_endpoint", Ty::Obj),
];

/// Recommended attributes kaudit always fills when the event has the data.
const RECOMMENDED: &[(&str, Ty)] = &[
    ("status_id", Ty::Int),
    ("category_name", Ty::Str),
    ("class_name", Ty::Str),
    ("activity_name", Ty::Str),
    ("metadata.product.name", Ty::Str),
];

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn check(rec: &Value, what: &str) {
    for (path, ty) in REQUIRED.iter().chain(RECOMMENDED) {
        let v = get(rec, path).unwrap_or_else(|| panic!("{what}: required {path} missing: {rec}"));
        let ok = match ty {
            Ty::Int => v.is_i64() || v.is_u64(),
            Ty::Str => v.as_str().is_some_and(|s| !s.is_empty()),
            Ty::Obj => v.is_object(),
        };
        assert!(ok, "{what}: {path} must be {ty:?}, is {v}");
    }
    assert_eq!(rec["class_uid"], 6003, "{what}");
    assert_eq!(rec["category_uid"], 6, "{what}: Application Activity");
    let activity = rec["activity_id"].as_u64().unwrap();
    assert!(
        matches!(activity, 0..=4 | 99),
        "{what}: activity_id {activity}"
    );
    assert_eq!(
        rec["type_uid"].as_u64().unwrap(),
        600300 + activity,
        "{what}"
    );
    assert!(
        matches!(rec["severity_id"].as_u64().unwrap(), 0..=6 | 99),
        "{what}"
    );
    assert!(
        matches!(rec["status_id"].as_u64().unwrap(), 0..=2 | 99),
        "{what}"
    );
    // actor: at least one of its attributes (OCSF's "at least one" constraint).
    let actor = rec["actor"].as_object().unwrap();
    assert!(
        ["user", "process", "session", "app_name", "invoked_by"]
            .iter()
            .any(|k| actor.contains_key(*k)),
        "{what}: actor needs one of user, process, session, app_name"
    );
    // src_endpoint: network_endpoint needs one of ip, hostname, uid, name...
    let src = rec["src_endpoint"].as_object().unwrap();
    assert!(
        [
            "ip",
            "hostname",
            "uid",
            "name",
            "instance_uid",
            "interface_uid",
            "svc_name"
        ]
        .iter()
        .any(|k| src.contains_key(*k)),
        "{what}: src_endpoint needs an identifying attribute: {src:?}"
    );
    if let Some(ip) = src.get("ip") {
        assert!(
            ip.as_str()
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                .is_some(),
            "{what}: ip_t"
        );
    }
    if let Some(Value::Array(res)) = rec.get("resources") {
        for r in res {
            assert!(r.is_object(), "{what}: resources are objects");
        }
    }
}

#[test]
fn every_record_is_a_valid_api_activity() {
    let mut cfg = kaudit_gen::GenConfig::new(6003);
    cfg.events = Some(2000);
    cfg.incident_every = 40;
    let mut n = 0;
    for (i, g) in kaudit_gen::Generator::new(cfg)
        .expect("generator")
        .enumerate()
    {
        let o = Outgoing {
            seq: i as u64,
            cluster: "prod-eu".into(),
            received: MicroTime(1_767_603_600_000_000),
            event: g.event().expect("generated events parse"),
        };
        check(
            &record(&o).expect("a record"),
            &format!("generated event {i}"),
        );
        n += 1;
    }
    assert_eq!(n, 2000);
}
