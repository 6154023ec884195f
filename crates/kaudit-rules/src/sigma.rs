//! Sigma rules for `logsource: {product: kubernetes, service: audit}`.
//!
//! Field names are dotted paths into the audit event (`objectRef.resource`,
//! `user.username`, `requestObject.spec.hostNetwork`). Values match Sigma's
//! way: strings case-insensitively with `*`/`?` wildcards, lists of values
//! as OR (AND with `|all`), a mapping's keys as AND, a list of mappings as
//! OR. Modifiers: contains, startswith, endswith, all, re (with i/m/s),
//! cidr, exists, lt/lte/gt/gte, cased. Conditions: and/or/not,
//! parentheses, `1 of x*`, `all of x*`, `them`.
//!
//! A rule that can never match a raw audit event (it names a top-level
//! field no `audit.k8s.io/v1` Event has, or compares an integer field to a
//! non-number) loads, is reported with the reason, and is not evaluated.

use crate::fields::EventCtx;
use crate::{LoadError, Priority, SigmaError};
use serde_json::Value;
use std::net::IpAddr;

/// Top-level keys of an `audit.k8s.io/v1` Event.
pub const EVENT_KEYS: &[&str] = &[
    "kind",
    "apiVersion",
    "level",
    "auditID",
    "stage",
    "requestURI",
    "verb",
    "user",
    "impersonatedUser",
    "sourceIPs",
    "userAgent",
    "objectRef",
    "responseStatus",
    "requestObject",
    "responseObject",
    "requestReceivedTimestamp",
    "stageTimestamp",
    "annotations",
    "authenticationMetadata",
];

/// Fields whose value is always an integer in an audit event.
const INTEGER_FIELDS: &[&str] = &["responseStatus.code"];

#[derive(Debug, Clone)]
enum Matcher {
    Null,
    Exists(bool),
    Wild { tokens: Vec<WTok>, cased: bool },
    Regex(regex::Regex),
    Cidr(ipnet::IpNet),
    Num(NumOp, f64),
}

#[derive(Debug, Clone, PartialEq)]
enum WTok {
    Lit(String),
    Star,
    One,
}

#[derive(Debug, Clone, Copy)]
enum NumOp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
struct FieldCond {
    path: Vec<String>,
    all: bool,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Clone)]
enum Search {
    /// All field conditions hold.
    Map(Vec<FieldCond>),
    /// Any of the mappings holds.
    AnyOf(Vec<Vec<FieldCond>>),
    /// Keyword search over the raw event.
    Keywords(Vec<Matcher>),
}

#[derive(Debug, Clone)]
enum Cond {
    Id(usize),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

/// A loaded Sigma rule.
#[derive(Debug, Clone)]
pub struct SigmaRule {
    /// `title`.
    pub title: String,
    /// `id`, if any.
    pub id: Option<String>,
    /// `description`.
    pub description: String,
    /// `level` mapped to a Falco priority.
    pub priority: Priority,
    /// `tags`.
    pub tags: Vec<String>,
    /// Why the rule can never match a raw audit event, if so.
    pub unmatchable: Option<String>,
    searches: Vec<(String, Search)>,
    cond: Cond,
}

/// Whether a YAML document looks like a Sigma rule.
pub fn is_sigma(doc: &Value) -> bool {
    doc.get("detection").is_some() && doc.get("logsource").is_some()
}

fn level_priority(level: &str) -> Priority {
    match level {
        "critical" => Priority::Critical,
        "high" => Priority::Error,
        "medium" => Priority::Warning,
        "low" => Priority::Notice,
        _ => Priority::Informational,
    }
}

impl SigmaRule {
    /// Loads one Sigma rule document.
    pub fn load(file: &str, doc: &Value) -> Result<SigmaRule, LoadError> {
        let err = |reason: String| {
            let item = doc
                .get("title")
                .and_then(Value::as_str)
                .map(|t| format!("sigma rule {t}"));
            LoadError::new(file, None, item, reason)
        };
        let title = doc
            .get("title")
            .and_then(Value::as_str)
            .ok_or_else(|| err("sigma rule has no 'title'".into()))?
            .to_string();
        let ls = doc.get("logsource").cloned().unwrap_or(Value::Null);
        let product = ls
            .get("product")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let service = ls
            .get("service")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if product != "kubernetes" || service != "audit" {
            return Err(err(format!(
                "logsource is product {product:?} service {service:?}; kaudit runs product kubernetes, service audit"
            )));
        }
        let Some(Value::Object(det)) = doc.get("detection") else {
            return Err(err("'detection' must be a mapping".into()));
        };
        let cond_src = match det.get("condition") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) if a.len() == 1 => a[0].as_str().unwrap_or_default().to_string(),
            Some(Value::Array(_)) => {
                return Err(err(
                    "several conditions in one rule are not supported".into()
                ))
            }
            _ => return Err(err("detection has no 'condition'".into())),
        };
        let mut searches = Vec::new();
        for (name, v) in det {
            if name == "condition" || name == "timeframe" {
                continue;
            }
            searches.push((
                name.clone(),
                parse_search(v).map_err(|e| err(format!("{name}: {e}")).with_source(e))?,
            ));
        }
        let names: Vec<&str> = searches.iter().map(|(n, _)| n.as_str()).collect();
        let cond = parse_cond(&cond_src, &names)
            .map_err(|e| err(format!("condition {cond_src:?}: {e}")).with_source(e))?;
        let mut rule = SigmaRule {
            title,
            id: doc.get("id").and_then(Value::as_str).map(str::to_string),
            description: doc
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string(),
            priority: level_priority(doc.get("level").and_then(Value::as_str).unwrap_or("")),
            tags: match doc.get("tags") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            },
            unmatchable: None,
            searches,
            cond,
        };
        let mut reasons = Vec::new();
        if !rule.possible(&rule.cond, &mut reasons) {
            reasons.dedup();
            rule.unmatchable = Some(reasons.join("; "));
        }
        Ok(rule)
    }

    fn search_impossible(s: &Search, reasons: &mut Vec<String>) -> bool {
        let map_impossible = |m: &Vec<FieldCond>, reasons: &mut Vec<String>| {
            let mut imp = false;
            for fc in m {
                let key = fc.path.join(".");
                let first = fc.path.first().map(String::as_str).unwrap_or_default();
                let expects_absent = fc
                    .matchers
                    .iter()
                    .all(|m| matches!(m, Matcher::Null | Matcher::Exists(false)));
                if !EVENT_KEYS.contains(&first) && !expects_absent {
                    reasons.push(format!(
                        "field {key:?} is not part of an audit.k8s.io/v1 Event (top-level keys: {})",
                        EVENT_KEYS.join(", ")
                    ));
                    imp = true;
                }
                if INTEGER_FIELDS.contains(&key.as_str()) {
                    let all_bad = fc.matchers.iter().all(|m| match m {
                        Matcher::Wild { tokens, .. } => match tokens.as_slice() {
                            [WTok::Lit(s)] => s.parse::<f64>().is_err(),
                            _ => false,
                        },
                        _ => false,
                    });
                    if all_bad && !fc.matchers.is_empty() {
                        reasons.push(format!(
                            "field {key:?} is an integer HTTP status code and can never equal {:?}",
                            fc.matchers
                                .iter()
                                .filter_map(|m| match m {
                                    Matcher::Wild { tokens, .. } => match tokens.as_slice() {
                                        [WTok::Lit(s)] => Some(s.clone()),
                                        _ => None,
                                    },
                                    _ => None,
                                })
                                .collect::<Vec<_>>()
                        ));
                        imp = true;
                    }
                }
            }
            imp
        };
        match s {
            Search::Map(m) => map_impossible(m, reasons),
            Search::AnyOf(ms) => {
                let mut tmp = Vec::new();
                let all = ms.iter().all(|m| map_impossible(m, &mut tmp));
                if all {
                    reasons.extend(tmp);
                }
                all
            }
            Search::Keywords(_) => false,
        }
    }

    fn possible(&self, c: &Cond, reasons: &mut Vec<String>) -> bool {
        match c {
            Cond::Id(i) => !Self::search_impossible(&self.searches[*i].1, reasons),
            Cond::And(v) => {
                let mut ok = true;
                for x in v {
                    ok &= self.possible(x, reasons);
                }
                ok
            }
            Cond::Or(v) => {
                let mut tmp = Vec::new();
                let any = v.iter().any(|x| self.possible(x, &mut tmp));
                if !any {
                    reasons.extend(tmp);
                }
                any
            }
            Cond::Not(_) => true,
        }
    }

    /// Whether the event matches (always false for an unmatchable rule).
    pub(crate) fn matches(&self, ctx: &EventCtx<'_>) -> bool {
        self.unmatchable.is_none() && self.eval(&self.cond, ctx)
    }

    fn eval(&self, c: &Cond, ctx: &EventCtx<'_>) -> bool {
        match c {
            Cond::Id(i) => self
                .searches
                .get(*i)
                .is_some_and(|(_, s)| eval_search(s, ctx)),
            Cond::And(v) => v.iter().all(|x| self.eval(x, ctx)),
            Cond::Or(v) => v.iter().any(|x| self.eval(x, ctx)),
            Cond::Not(x) => !self.eval(x, ctx),
        }
    }
}

fn eval_search(s: &Search, ctx: &EventCtx<'_>) -> bool {
    match s {
        Search::Map(m) => m.iter().all(|fc| eval_field(fc, ctx)),
        Search::AnyOf(ms) => ms.iter().any(|m| m.iter().all(|fc| eval_field(fc, ctx))),
        Search::Keywords(ks) => {
            let raw = String::from_utf8_lossy(ctx.event.bytes());
            ks.iter().any(|k| match k {
                Matcher::Wild { tokens, cased } => {
                    let mut t = vec![WTok::Star];
                    t.extend(tokens.iter().cloned());
                    t.push(WTok::Star);
                    wild_match(&t, &raw, *cased)
                }
                Matcher::Regex(r) => r.is_match(&raw),
                _ => false,
            })
        }
    }
}

/// Scalar values found at a dotted path; lists are flattened one level.
fn values_at<'v>(root: &'v Value, path: &[String]) -> Vec<&'v Value> {
    let mut cur = vec![root];
    for seg in path {
        let mut next = Vec::new();
        for v in cur {
            match v {
                Value::Object(m) => {
                    if let Some(x) = m.get(seg.as_str()) {
                        next.push(x);
                    }
                }
                Value::Array(a) => {
                    for el in a {
                        if let Some(x) = el.get(seg.as_str()) {
                            next.push(x);
                        }
                    }
                }
                _ => {}
            }
        }
        cur = next;
    }
    let mut out = Vec::new();
    for v in cur {
        match v {
            Value::Array(a) => out.extend(a.iter()),
            other => out.push(other),
        }
    }
    out
}

fn typed_values(path: &[String], ctx: &EventCtx<'_>) -> Option<Vec<String>> {
    let d = ctx.event.doc();
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let opt = |s: &str| {
        if s.is_empty() {
            vec![]
        } else {
            vec![s.to_string()]
        }
    };
    Some(match p.as_slice() {
        ["verb"] => vec![d.verb.clone()],
        ["requestURI"] => vec![d.request_uri.clone()],
        ["auditID"] => vec![d.audit_id.clone()],
        ["stage"] => vec![ctx.event.stage().as_str().to_string()],
        ["level"] => vec![d.level.as_str().to_string()],
        ["userAgent"] => opt(&d.user_agent),
        ["sourceIPs"] => d.source_ips.clone(),
        ["user", "username"] => opt(&d.user.username),
        ["user", "groups"] => d.user.groups.clone(),
        ["objectRef", k] => {
            let Some(o) = &d.object_ref else {
                return Some(vec![]);
            };
            match *k {
                "resource" => opt(&o.resource),
                "namespace" => opt(&o.namespace),
                "name" => opt(&o.name),
                "apiGroup" => opt(&o.api_group),
                "apiVersion" => opt(&o.api_version),
                "subresource" => opt(&o.subresource),
                "uid" => opt(&o.uid),
                "resourceVersion" => opt(&o.resource_version),
                _ => vec![],
            }
        }
        ["responseStatus", "code"] => d
            .response_status
            .as_ref()
            .and_then(|s| s.code)
            .map(|c| vec![c.to_string()])
            .unwrap_or_default(),
        ["annotations", k] => d
            .annotations
            .get(*k)
            .map(|v| vec![v.clone()])
            .unwrap_or_default(),
        _ => return None,
    })
}

fn eval_field(fc: &FieldCond, ctx: &EventCtx<'_>) -> bool {
    let owned;
    let strings: Vec<String> = match typed_values(&fc.path, ctx) {
        Some(v) => v,
        None => {
            owned = ctx
                .whole()
                .map(|w| values_at(w, &fc.path))
                .unwrap_or_default();
            owned
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| crate::fields::json_string(v))
                .collect()
        }
    };
    let one = |m: &Matcher| -> bool {
        match m {
            Matcher::Null => strings.is_empty(),
            Matcher::Exists(want) => strings.is_empty() != *want,
            _ => strings.iter().any(|s| match_value(m, s)),
        }
    };
    if fc.all {
        fc.matchers.iter().all(one)
    } else {
        fc.matchers.iter().any(one)
    }
}

fn match_value(m: &Matcher, s: &str) -> bool {
    match m {
        Matcher::Wild { tokens, cased } => wild_match(tokens, s, *cased),
        Matcher::Regex(r) => r.is_match(s),
        Matcher::Cidr(net) => s.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
        Matcher::Num(op, n) => s.parse::<f64>().is_ok_and(|v| match op {
            NumOp::Lt => v < *n,
            NumOp::Le => v <= *n,
            NumOp::Gt => v > *n,
            NumOp::Ge => v >= *n,
        }),
        Matcher::Null | Matcher::Exists(_) => false,
    }
}

fn wild_match(tokens: &[WTok], s: &str, cased: bool) -> bool {
    let s: Vec<char> = if cased {
        s.chars().collect()
    } else {
        s.to_lowercase().chars().collect()
    };
    // Convert to per-char tokens and run an iterative star-backtracking match.
    let mut pat: Vec<Option<Option<char>>> = Vec::new(); // None = star, Some(None) = any char
    for t in tokens {
        match t {
            WTok::Star => pat.push(None),
            WTok::One => pat.push(Some(None)),
            WTok::Lit(l) => {
                let l = if cased { l.clone() } else { l.to_lowercase() };
                pat.extend(l.chars().map(|c| Some(Some(c))));
            }
        }
    }
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match pat.get(pi) {
            Some(None) => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(Some(c)) if c.is_none_or(|c| c == s[si]) => {
                pi += 1;
                si += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    pat[pi.min(pat.len())..].iter().all(Option::is_none)
}

fn wildcard_tokens(s: &str) -> Vec<WTok> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some('*') | Some('?') | Some('\\') => {
                    lit.push(chars.next().unwrap_or('\\'));
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(WTok::Lit(std::mem::take(&mut lit)));
                }
                out.push(if c == '*' { WTok::Star } else { WTok::One });
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(WTok::Lit(lit));
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_field(key: &str, v: &Value) -> Result<FieldCond, SigmaError> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mods: Vec<&str> = parts.collect();
    let mut all = false;
    let mut cased = false;
    let mut kind = "eq";
    let mut re_flags = String::new();
    for m in &mods {
        match *m {
            "all" => all = true,
            "cased" => cased = true,
            "contains" | "startswith" | "endswith" | "re" | "cidr" | "exists" | "lt" | "lte"
            | "gt" | "gte" => kind = m,
            "i" | "ignorecase" => re_flags.push('i'),
            "m" | "multiline" => re_flags.push('m'),
            "s" | "dotall" => re_flags.push('s'),
            other => return Err(SigmaError::Modifier(other.to_string())),
        }
    }
    let values: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let mut matchers = Vec::new();
    for val in &values {
        if val.is_null() {
            matchers.push(Matcher::Null);
            continue;
        }
        let s = scalar(val).ok_or_else(|| SigmaError::NotScalar(key.to_string()))?;
        let m = match kind {
            "exists" => Matcher::Exists(matches!(val, Value::Bool(true)) || s == "true"),
            "re" => {
                let pat = if re_flags.is_empty() {
                    s
                } else {
                    format!("(?{re_flags}){s}")
                };
                Matcher::Regex(
                    regex::RegexBuilder::new(&pat)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|error| SigmaError::Regex {
                            key: key.to_string(),
                            error,
                        })?,
                )
            }
            "cidr" => Matcher::Cidr(s.parse().map_err(|error| SigmaError::Cidr {
                key: key.to_string(),
                value: s.clone(),
                error,
            })?),
            "lt" | "lte" | "gt" | "gte" => {
                let n: f64 = s.parse().map_err(|_| SigmaError::NotNumber {
                    key: key.to_string(),
                    value: s.clone(),
                })?;
                let op = match kind {
                    "lt" => NumOp::Lt,
                    "lte" => NumOp::Le,
                    "gt" => NumOp::Gt,
                    _ => NumOp::Ge,
                };
                Matcher::Num(op, n)
            }
            _ => {
                let mut tokens = wildcard_tokens(&s);
                if kind == "contains" || kind == "endswith" {
                    tokens.insert(0, WTok::Star);
                }
                if kind == "contains" || kind == "startswith" {
                    tokens.push(WTok::Star);
                }
                Matcher::Wild { tokens, cased }
            }
        };
        matchers.push(m);
    }
    Ok(FieldCond {
        path: field.split('.').map(str::to_string).collect(),
        all,
        matchers,
    })
}

fn parse_map(m: &serde_json::Map<String, Value>) -> Result<Vec<FieldCond>, SigmaError> {
    m.iter().map(|(k, v)| parse_field(k, v)).collect()
}

fn parse_search(v: &Value) -> Result<Search, SigmaError> {
    match v {
        Value::Object(m) => Ok(Search::Map(parse_map(m)?)),
        Value::Array(a) if a.iter().all(Value::is_object) => Ok(Search::AnyOf(
            a.iter()
                .filter_map(Value::as_object)
                .map(parse_map)
                .collect::<Result<_, _>>()?,
        )),
        Value::Array(a) => Ok(Search::Keywords(
            a.iter()
                .filter_map(scalar)
                .map(|s| Matcher::Wild {
                    tokens: wildcard_tokens(&s),
                    cased: false,
                })
                .collect(),
        )),
        other => Err(SigmaError::Search(other.clone())),
    }
}

fn ident_matches(pattern: &str, name: &str) -> bool {
    let toks = wildcard_tokens(pattern);
    wild_match(&toks, name, true)
}

fn parse_cond(src: &str, names: &[&str]) -> Result<Cond, SigmaError> {
    if src.contains('|') {
        return Err(SigmaError::Aggregation);
    }
    let toks: Vec<String> = src
        .replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut pos = 0;
    let c = cond_or(&toks, &mut pos, names, 0)?;
    if pos != toks.len() {
        return Err(SigmaError::Unexpected(toks[pos].clone()));
    }
    Ok(c)
}

fn cond_or(
    t: &[String],
    pos: &mut usize,
    names: &[&str],
    depth: usize,
) -> Result<Cond, SigmaError> {
    if depth > 100 {
        return Err(SigmaError::TooDeep);
    }
    let mut v = vec![cond_and(t, pos, names, depth)?];
    while t.get(*pos).is_some_and(|x| x == "or") {
        *pos += 1;
        v.push(cond_and(t, pos, names, depth)?);
    }
    Ok(if v.len() == 1 {
        v.remove(0)
    } else {
        Cond::Or(v)
    })
}

fn cond_and(
    t: &[String],
    pos: &mut usize,
    names: &[&str],
    depth: usize,
) -> Result<Cond, SigmaError> {
    let mut v = vec![cond_not(t, pos, names, depth)?];
    while t.get(*pos).is_some_and(|x| x == "and") {
        *pos += 1;
        v.push(cond_not(t, pos, names, depth)?);
    }
    Ok(if v.len() == 1 {
        v.remove(0)
    } else {
        Cond::And(v)
    })
}

fn cond_not(
    t: &[String],
    pos: &mut usize,
    names: &[&str],
    depth: usize,
) -> Result<Cond, SigmaError> {
    let Some(tok) = t.get(*pos) else {
        return Err(SigmaError::EndsEarly);
    };
    match tok.as_str() {
        "not" => {
            *pos += 1;
            Ok(Cond::Not(Box::new(cond_not(t, pos, names, depth + 1)?)))
        }
        "(" => {
            *pos += 1;
            let c = cond_or(t, pos, names, depth + 1)?;
            if t.get(*pos).map(String::as_str) != Some(")") {
                return Err(SigmaError::MissingParen);
            }
            *pos += 1;
            Ok(c)
        }
        "1" | "all" | "any" => {
            let quant_all = tok == "all";
            let target = t.get(*pos + 2).cloned().unwrap_or_default();
            if t.get(*pos + 1).map(String::as_str) != Some("of") {
                return Err(SigmaError::ExpectedOf(tok.clone()));
            }
            *pos += 3;
            let ids: Vec<Cond> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| {
                    if target == "them" {
                        !n.starts_with('_')
                    } else {
                        ident_matches(&target, n)
                    }
                })
                .map(|(i, _)| Cond::Id(i))
                .collect();
            if ids.is_empty() {
                return Err(SigmaError::NoMatch(target));
            }
            Ok(if quant_all {
                Cond::And(ids)
            } else {
                Cond::Or(ids)
            })
        }
        name => {
            *pos += 1;
            names
                .iter()
                .position(|n| *n == name)
                .map(Cond::Id)
                .ok_or_else(|| SigmaError::UnknownIdent(name.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_case_insensitive() {
        assert!(wild_match(
            &wildcard_tokens("*bash*"),
            "/bin/BASH -c",
            false
        ));
        assert!(!wild_match(&wildcard_tokens("bash"), "/bin/bash", false));
        assert!(wild_match(&wildcard_tokens("a?c"), "abc", false));
        assert!(wild_match(&wildcard_tokens("a\\*c"), "a*c", false));
        assert!(!wild_match(&wildcard_tokens("a\\*c"), "abc", false));
    }

    #[test]
    fn conditions() {
        let names = ["sel_a", "sel_b", "filter"];
        let c = parse_cond("1 of sel_* and not filter", &names).unwrap();
        assert!(matches!(c, Cond::And(_)));
        assert!(parse_cond("nope", &names).is_err());
        assert!(parse_cond("sel_a | count() > 5", &names).is_err());
    }
}
