//! A deliberately naive Falco-condition interpreter over `serde_json::Value`:
//! it walks each rule's expanded condition tree and re-extracts every field
//! from the JSON document at every reference, with no caching, no typed
//! fields and no precompiled sets. It is the baseline the compiled engine is
//! measured against, and a differential oracle in tests.

#![allow(dead_code)]

use kaudit_rules::{Ast, Op, Rhs};
use serde_json::Value;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    let mut v = v;
    for k in path {
        v = match v {
            Value::Object(m) => m.get(*k)?,
            Value::Array(a) => a.get(k.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn scalar(v: &Value, path: &[&str]) -> Option<Vec<String>> {
    let x = at(v, path)?;
    if let Value::String(s) = x {
        if s.is_empty() && path[0] != "verb" && path[0] != "requestURI" {
            return None;
        }
    }
    Some(vec![s(x)])
}

fn list_each(v: &Value, path: &[&str]) -> Option<Vec<String>> {
    Some(at(v, path)?.as_array()?.iter().map(s).collect())
}

fn containers(v: &Value, set: &str, key: &[&str], strict: bool) -> Option<Vec<String>> {
    let arr = at(v, &["requestObject", "spec", set])?.as_array()?;
    let mut out = Vec::new();
    for c in arr {
        match at(c, key) {
            Some(x) if !x.is_null() => out.push(s(x)),
            _ if strict => return None,
            _ => {}
        }
    }
    Some(out)
}

fn uri_param(v: &Value, key: &str) -> Option<Vec<String>> {
    let uri = at(v, &["requestURI"])?.as_str()?;
    let q = uri.split_once('?')?.1;
    for pair in q.split('&') {
        let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return Some(vec![val.replace("%2F", "/")]);
        }
    }
    None
}

/// Extracts a field; `None` when the event lacks it. The bool says "list field".
pub fn field(v: &Value, name: &str, arg: Option<&str>) -> (Option<Vec<String>>, bool) {
    let set_prop = name
        .strip_prefix("ka.req.pod.")
        .and_then(|r| r.split_once('.'))
        .filter(|(set, _)| {
            matches!(
                *set,
                "containers" | "initContainers" | "ephemeralContainers"
            )
        });
    if let Some((set, prop)) = set_prop {
        let vals = match prop {
            "image" => containers(v, set, &["image"], true),
            "image.repository" => containers(v, set, &["image"], true).map(|imgs| {
                imgs.iter()
                    .map(|i| {
                        let a = i.split(':').next().unwrap_or(i);
                        a.split('@').next().unwrap_or(a).to_string()
                    })
                    .collect()
            }),
            "privileged" => containers(v, set, &["securityContext", "privileged"], false),
            _ => None,
        };
        return (vals, true);
    }
    match name {
        "ka.auditid" => (scalar(v, &["auditID"]), false),
        "ka.stage" => (scalar(v, &["stage"]), false),
        "ka.auth.decision" => (
            scalar(v, &["annotations", "authorization.k8s.io/decision"]),
            false,
        ),
        "ka.auth.reason" => (
            scalar(v, &["annotations", "authorization.k8s.io/reason"]),
            false,
        ),
        "ka.user.name" => (scalar(v, &["user", "username"]), false),
        "ka.user.groups" => (list_each(v, &["user", "groups"]), true),
        "ka.impuser.name" => (scalar(v, &["impersonatedUser", "username"]), false),
        "ka.verb" => (scalar(v, &["verb"]), false),
        "ka.uri" => (scalar(v, &["requestURI"]), false),
        "ka.uri.param" => (uri_param(v, arg.unwrap_or_default()), false),
        "ka.target.name" | "ka.req.configmap.name" => (scalar(v, &["objectRef", "name"]), false),
        "ka.target.namespace" => (scalar(v, &["objectRef", "namespace"]), false),
        "ka.target.resource" => (scalar(v, &["objectRef", "resource"]), false),
        "ka.target.subresource" => (scalar(v, &["objectRef", "subresource"]), false),
        "ka.req.binding.subjects" => (list_each(v, &["requestObject", "subjects"]), true),
        "ka.req.binding.role" => (scalar(v, &["requestObject", "roleRef", "name"]), false),
        "ka.req.configmap.obj" => (scalar(v, &["requestObject", "data"]), false),
        "ka.req.pod.host_network" => (scalar(v, &["requestObject", "spec", "hostNetwork"]), false),
        "ka.req.pod.host_pid" => (scalar(v, &["requestObject", "spec", "hostPID"]), false),
        "ka.req.pod.host_ipc" => (scalar(v, &["requestObject", "spec", "hostIPC"]), false),
        "ka.req.role.rules" => (list_each(v, &["requestObject", "rules"]), true),
        "ka.req.role.rules.verbs" | "ka.req.role.rules.resources" => {
            let key = if name.ends_with("verbs") {
                "verbs"
            } else {
                "resources"
            };
            let Some(rules) = at(v, &["requestObject", "rules"]).and_then(Value::as_array) else {
                return (None, true);
            };
            let mut out = Vec::new();
            for r in rules {
                if let Some(Value::Array(items)) = r.get(key) {
                    out.extend(items.iter().filter(|x| !x.is_null()).map(s));
                }
            }
            (Some(out), true)
        }
        "ka.req.service.type" => (scalar(v, &["requestObject", "spec", "type"]), false),
        "ka.req.service.ports" => (list_each(v, &["requestObject", "spec", "ports"]), true),
        "ka.req.pod.volumes.hostpath" => {
            let Some(vols) = at(v, &["requestObject", "spec", "volumes"]).and_then(Value::as_array)
            else {
                return (None, true);
            };
            let mut out = Vec::new();
            for vol in vols {
                match at(vol, &["hostPath", "path"]) {
                    Some(p) => out.push(s(p)),
                    None => return (None, true),
                }
            }
            (Some(out), true)
        }
        "ka.resp.name" => (scalar(v, &["responseObject", "metadata", "name"]), false),
        "ka.response.code" => (scalar(v, &["responseStatus", "code"]), false),
        "ka.response.reason" => (scalar(v, &["responseStatus", "reason"]), false),
        "ka.useragent" => (scalar(v, &["userAgent"]), false),
        "jevt.rawtime" | "json.rawtime" => (Some(vec!["1".into()]), false),
        "jevt.value" | "json.value" => {
            let p = arg.unwrap_or_default();
            let p = p.strip_prefix('/').unwrap_or(p);
            let segs: Vec<String> = p
                .split('/')
                .map(|x| x.replace("~1", "/").replace("~0", "~"))
                .collect();
            let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
            (at(v, &refs).map(|x| vec![s(x)]), false)
        }
        _ => (None, false),
    }
}

fn cmp(val: &str, op: Op, rhs: &Rhs) -> bool {
    let single = match rhs {
        Rhs::Single(s) => s.as_str(),
        _ => "",
    };
    let in_list = |x: &str| match rhs {
        Rhs::List(items) => items.iter().any(|i| i.text == x),
        Rhs::Single(s) => s == x,
        Rhs::None => false,
    };
    match op {
        Op::Eq => val == single,
        Op::Ne => val != single,
        Op::StartsWith => val.starts_with(single),
        Op::EndsWith => val.ends_with(single),
        Op::Contains => val.contains(single),
        Op::IContains => val.to_lowercase().contains(&single.to_lowercase()),
        Op::In | Op::Intersects => in_list(val),
        _ => false,
    }
}

/// Evaluates an expanded condition against a JSON event.
pub fn eval(ast: &Ast, v: &Value) -> bool {
    match ast {
        Ast::And(items) => items.iter().all(|a| eval(a, v)),
        Ast::Or(items) => items.iter().any(|a| eval(a, v)),
        Ast::Not(a) => !eval(a, v),
        Ast::Macro(_) => false,
        Ast::Check {
            field: f,
            arg,
            op,
            rhs,
        } => {
            let (vals, is_list) = field(v, f, arg.as_deref());
            let Some(vals) = vals else { return false };
            match op {
                Op::Exists => true,
                Op::In if is_list => vals.iter().all(|x| cmp(x, *op, rhs)),
                _ => vals.iter().any(|x| cmp(x, *op, rhs)),
            }
        }
    }
}

/// Index of the first rule whose condition holds.
pub fn first_match(rules: &[(&str, &Ast)], v: &Value) -> Option<usize> {
    rules.iter().position(|(_, ast)| eval(ast, v))
}
