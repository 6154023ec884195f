//! Azure AKS: diagnostic settings send the `kube-audit` and
//! `kube-audit-admin` categories to an Event Hub or a storage account as
//! `{"records":[{"category","time","resourceId","properties":{"log",...}}]}`.
//!
//! `properties.log` is the audit Event as a JSON string (ending in a
//! newline, sometimes after a UTF-8 BOM) or, in newer exports, as an
//! object. Records of other categories routed to the same hub
//! (kube-apiserver, cluster-autoscaler, ...) are skipped and counted by
//! category; an audit-category record whose `log` is not an Event is a bad
//! item. A bare record (one per line) is read too.
//!
//! The envelope kept in `kaudit.io/envelope`: the record without
//! `properties.log` (`category`, `time`, `resourceId`, `operationName`,
//! `properties.pod`, `properties.containerID`, `properties.stream`, ...);
//! the record's text in `kaudit.io/original`.

use super::{at, embedded_event, ConvertError, Ctx, ManagedFormat, Unit};
use serde_json::Value;

/// The diagnostic categories that hold audit events.
pub const AUDIT_CATEGORIES: [&str; 2] = ["kube-audit", "kube-audit-admin"];

pub(crate) fn unit(ctx: &mut Ctx<'_>, u: Unit<'_>) -> Result<(), ConvertError> {
    let Some(v) = u.value else {
        ctx.bad(&u.loc, "not JSON", u.raw.as_bytes());
        return Ok(());
    };
    if let Some(Value::Array(records)) = v.get("records") {
        for (i, r) in records.iter().enumerate() {
            // The record's text as Azure's Event Hub input hands it on:
            // the record alone, serialised in its own key order.
            let text = r.to_string();
            record(ctx, &at(&u.loc, &format!("records[{i}]")), r, &text);
            ctx.check()?;
        }
        return Ok(());
    }
    if v.get("category").is_some() {
        record(ctx, &u.loc, &v, u.raw);
        return Ok(());
    }
    ctx.bad(
        &u.loc,
        "not an AKS diagnostic log: expected {\"records\":[...]} or a record with `category` and `properties`",
        u.raw.as_bytes(),
    );
    Ok(())
}

fn record(ctx: &mut Ctx<'_>, path: &str, r: &Value, original: &str) {
    let category = r.get("category").and_then(Value::as_str).unwrap_or("");
    if !AUDIT_CATEGORIES.contains(&category) {
        ctx.skip(format!("aks: category {category:?}"));
        return;
    }
    let log = r.get("properties").and_then(|p| p.get("log"));
    let text = match log {
        Some(Value::String(s)) => s.clone(),
        Some(o @ Value::Object(_)) => o.to_string(),
        _ => {
            ctx.bad(
                &format!("{path}.properties.log"),
                format!("a {category} record without `properties.log`"),
                r.to_string().as_bytes(),
            );
            return;
        }
    };
    let mut env = r.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(p)) = env.get_mut("properties") {
        p.shift_remove("log");
    }
    match embedded_event(&text, ManagedFormat::Aks, env, Some(original)) {
        Ok(ev) => ctx.out.events.push(ev),
        Err(e) => ctx.bad(&format!("{path}.properties.log"), e, text.as_bytes()),
    }
}
