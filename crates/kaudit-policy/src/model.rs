//! The Policy document, its loader and its validation, as kube-apiserver has them.
//!
//! Loading goes YAML/JSON -> generic JSON value -> [`PolicyDoc`] (strings as
//! written, so validation can quote bad values) -> [`Policy`] (typed,
//! validated). Unknown fields are warnings with their path, like the
//! apiserver's lenient fallback decode; wrong types are errors.

use crate::eval::StageSet;
use kaudit_event::{Level, Stage};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// Largest policy file accepted: real policies are a few KiB, and the bound
/// keeps a hostile file from exhausting memory in the YAML parser.
pub const MAX_POLICY_BYTES: usize = 4 << 20;
/// Most rules accepted in one policy (evaluation cost grows with them).
pub const MAX_RULES: usize = 100_000;

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Reading the file failed.
    #[error("{source_name}: {error}")]
    Io {
        /// File path.
        source_name: String,
        /// The underlying error.
        #[source]
        error: std::io::Error,
    },
    /// The file is larger than [`MAX_POLICY_BYTES`].
    #[error("{source_name}: policy is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// File path.
        source_name: String,
        /// Its size.
        size: usize,
        /// The bound.
        limit: usize,
    },
    /// Not valid UTF-8 text.
    #[error("{source_name}: policy is not UTF-8 text")]
    NotUtf8 {
        /// File path.
        source_name: String,
    },
    /// Nothing but white space and comments.
    #[error("{source_name}: failed decoding policy: the file is empty")]
    Empty {
        /// File path.
        source_name: String,
    },
    /// Neither valid YAML nor valid JSON.
    #[error("{source_name}: failed decoding policy: {error}")]
    Syntax {
        /// File path.
        source_name: String,
        /// The parser's error (its message has the line and column).
        #[source]
        error: SyntaxError,
    },
    /// apiVersion missing or not audit.k8s.io/v1, or kind not Policy.
    #[error("{source_name}: failed decoding policy: {message}")]
    TypeMeta {
        /// File path.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A field has the wrong JSON type.
    #[error("{source_name}: failed decoding policy: {path}: {reason}")]
    Decode {
        /// File path.
        source_name: String,
        /// Field path (`rules[2].users`).
        path: String,
        /// What was expected.
        reason: String,
    },
    /// The policy decodes but fails kube-apiserver's validation.
    #[error("{source_name}: invalid policy:\n  {}", join_errors(.errors))]
    Invalid {
        /// File path.
        source_name: String,
        /// Every validation error, in kube-apiserver's format.
        errors: Vec<FieldError>,
    },
    /// Valid but without any rule, which kube-apiserver refuses.
    #[error("loaded illegal policy with 0 rules from file {source_name}")]
    NoRules {
        /// File path.
        source_name: String,
    },
    /// Rendering output failed (boxed: the YAML error is large, and rare).
    #[error("output: {0}")]
    Output(#[source] Box<serde_saphyr::SerializeError>),
}

/// Why a policy is not parseable text, from the parser that was believed:
/// JSON for a document that starts with `{` and is not YAML either (its
/// messages are the more precise), YAML otherwise.
#[derive(Debug, thiserror::Error)]
pub enum SyntaxError {
    /// The JSON parser's error.
    #[error("JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The YAML parser's error (boxed: it is large, and rare).
    #[error("YAML: {0}")]
    Yaml(#[source] Box<serde_saphyr::Error>),
}

fn join_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// One validation error, printed as kube-apiserver's `field.Error` is:
/// `rules[0].level: Required value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Field path.
    pub path: String,
    /// Everything after `path: `.
    pub message: String,
}

impl FieldError {
    fn required(path: String) -> Self {
        FieldError {
            path,
            message: "Required value".into(),
        }
    }
    fn invalid(path: String, value: String, detail: &str) -> Self {
        FieldError {
            path,
            message: format!("Invalid value: {value}: {detail}"),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A policy exactly as written (levels and stages still strings), so that
/// validation can report the offending values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDoc {
    /// The rules, in order.
    pub rules: Vec<RuleDoc>,
    /// Policy-wide omitStages.
    pub omit_stages: Vec<String>,
    /// Policy-wide omitManagedFields.
    pub omit_managed_fields: bool,
}

/// One rule as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleDoc {
    /// Level string ("" when absent).
    pub level: String,
    /// users.
    pub users: Vec<String>,
    /// userGroups.
    pub user_groups: Vec<String>,
    /// verbs.
    pub verbs: Vec<String>,
    /// resources.
    pub resources: Vec<GroupResourcesDoc>,
    /// namespaces.
    pub namespaces: Vec<String>,
    /// nonResourceURLs.
    pub non_resource_urls: Vec<String>,
    /// omitStages (strings).
    pub omit_stages: Vec<String>,
    /// omitManagedFields; `None` inherits the policy's.
    pub omit_managed_fields: Option<bool>,
}

/// A `resources` entry: an API group and resources in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GroupResourcesDoc {
    /// API group; "" is the core group, "*" any group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Resources (`pods`, `pods/log`, `pods/*`, `*/status`, `*`); empty = all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Object names; empty = all.
    #[serde(rename = "resourceNames", skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// A validated policy, ready to compile or inspect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Rules in evaluation order.
    pub rules: Vec<PolicyRule>,
    /// Policy-wide omitStages (also what an unmatched request gets).
    pub omit_stages: StageSet,
    /// Policy-wide omitManagedFields.
    pub omit_managed_fields: bool,
}

/// A validated rule. `omit_stages` is the rule's own list; evaluation unions
/// it with the policy's as kube-apiserver does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Level for requests the rule matches.
    #[serde(serialize_with = "crate::eval::serialize_level")]
    pub level: Level,
    /// Exact user names; empty = any user.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Group names, any overlap matches; empty = any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_groups: Vec<String>,
    /// Verbs; empty = any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    /// Resources; non-empty makes the rule resource-only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<GroupResourcesDoc>,
    /// Namespaces ("" = cluster-scoped); non-empty makes the rule resource-only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Non-resource URL patterns (`/healthz*`).
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
    /// Stages this rule does not log.
    #[serde(skip_serializing_if = "StageSet::is_empty")]
    pub omit_stages: StageSet,
    /// Overrides the policy's omitManagedFields when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omit_managed_fields: Option<bool>,
}

impl PolicyRule {
    /// The rule as one line of JSON with the policy file's field names, for
    /// `explain` output.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the rule applies only to resource requests (it has
    /// `namespaces` or `resources`; its `nonResourceURLs` are then ignored).
    pub fn is_resource_only(&self) -> bool {
        !self.namespaces.is_empty() || !self.resources.is_empty()
    }
}

/// A loaded policy with what the loader had to say about it.
#[derive(Clone, Debug)]
pub struct LoadedPolicy {
    /// The validated policy.
    pub policy: Policy,
    /// Unknown fields (with paths) and other non-fatal remarks.
    pub warnings: Vec<String>,
}

/// Loads a policy file's bytes (YAML or JSON) with kube-apiserver's rules:
/// apiVersion must be `audit.k8s.io/v1`, kind is optional but must be
/// `Policy` when present, unknown fields are warned, the policy must
/// validate and have at least one rule. `source_name` is used in messages.
pub fn load_policy(bytes: &[u8], source_name: &str) -> Result<LoadedPolicy, PolicyError> {
    let value = parse_value(bytes, source_name)?;
    check_type_meta(&value, source_name)?;
    let mut warnings = Vec::new();
    let doc = decode_doc(&value, source_name, &mut warnings)?;
    let policy = Policy::from_doc(&doc).map_err(|errors| PolicyError::Invalid {
        source_name: source_name.to_string(),
        errors,
    })?;
    if policy.rules.is_empty() {
        return Err(PolicyError::NoRules {
            source_name: source_name.to_string(),
        });
    }
    Ok(LoadedPolicy { policy, warnings })
}

/// Reads and loads a policy file (see [`load_policy`]).
pub fn load_policy_file(path: &std::path::Path) -> Result<LoadedPolicy, PolicyError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|error| PolicyError::Io {
        source_name: name.clone(),
        error,
    })?;
    if meta.len() > MAX_POLICY_BYTES as u64 {
        return Err(PolicyError::TooLarge {
            source_name: name,
            size: usize::try_from(meta.len()).unwrap_or(usize::MAX),
            limit: MAX_POLICY_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(|error| PolicyError::Io {
        source_name: name.clone(),
        error,
    })?;
    load_policy(&bytes, &name)
}

/// Decodes a policy body from an already-parsed JSON value without checking
/// apiVersion/kind or validating: what kube-apiserver's validation tests
/// start from. Unknown fields are appended to `warnings`.
pub fn policy_from_value(
    value: &Value,
    source_name: &str,
    warnings: &mut Vec<String>,
) -> Result<PolicyDoc, PolicyError> {
    decode_doc(value, source_name, warnings)
}

fn parse_value(bytes: &[u8], source_name: &str) -> Result<Value, PolicyError> {
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            source_name: source_name.to_string(),
            size: bytes.len(),
            limit: MAX_POLICY_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| PolicyError::NotUtf8 {
        source_name: source_name.to_string(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let meaningful = text
        .lines()
        .map(str::trim)
        .any(|l| !l.is_empty() && !l.starts_with('#') && l != "---");
    if !meaningful {
        return Err(PolicyError::Empty {
            source_name: source_name.to_string(),
        });
    }
    let syntax = |error: SyntaxError| PolicyError::Syntax {
        source_name: source_name.to_string(),
        error,
    };
    if text.trim_start().starts_with('{') {
        // JSON first (better messages); a YAML flow mapping also starts with '{'.
        match serde_json::from_str(text) {
            Ok(v) => Ok(v),
            Err(json_err) => serde_saphyr::from_str::<Value>(text)
                .map_err(|_| syntax(SyntaxError::Json(json_err))),
        }
    } else {
        serde_saphyr::from_str::<Value>(text).map_err(|e| syntax(SyntaxError::Yaml(Box::new(e))))
    }
}

fn check_type_meta(value: &Value, source_name: &str) -> Result<(), PolicyError> {
    let err = |message: String| PolicyError::TypeMeta {
        source_name: source_name.to_string(),
        message,
    };
    let Some(obj) = value.as_object() else {
        return Err(err(format!(
            "the document is {}, not a Policy object",
            json_type(value)
        )));
    };
    match obj.get("apiVersion") {
        None | Some(Value::Null) => {
            return Err(err(
                "unknown group version field: apiVersion is missing; want audit.k8s.io/v1".into(),
            ))
        }
        Some(Value::String(v)) if v == "audit.k8s.io/v1" => {}
        Some(Value::String(v)) if v.starts_with("audit.k8s.io/") => {
            return Err(err(format!(
            "apiVersion {v:?} is no longer served by kube-apiserver; change it to audit.k8s.io/v1"
        )))
        }
        Some(other) => {
            return Err(err(format!(
                "unknown group version field: apiVersion {other}; want audit.k8s.io/v1"
            )))
        }
    }
    match obj.get("kind") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(k)) if k == "Policy" => Ok(()),
        Some(other) => Err(err(format!("kind is {other}, want Policy"))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

struct Decoder<'a> {
    source_name: &'a str,
    warnings: &'a mut Vec<String>,
}

impl Decoder<'_> {
    fn fail(&self, path: &str, reason: String) -> PolicyError {
        PolicyError::Decode {
            source_name: self.source_name.to_string(),
            path: path.to_string(),
            reason,
        }
    }

    fn object<'v>(
        &self,
        v: &'v Value,
        path: &str,
    ) -> Result<Option<&'v Map<String, Value>>, PolicyError> {
        match v {
            Value::Null => Ok(None),
            Value::Object(m) => Ok(Some(m)),
            other => Err(self.fail(
                path,
                format!("expected an object, got {}", json_type(other)),
            )),
        }
    }

    fn string(&self, v: &Value, path: &str) -> Result<String, PolicyError> {
        match v {
            Value::Null => Ok(String::new()),
            Value::String(s) => Ok(s.clone()),
            other => Err(self.fail(path, format!("expected a string, got {}", json_type(other)))),
        }
    }

    fn boolean(&self, v: &Value, path: &str) -> Result<Option<bool>, PolicyError> {
        match v {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            other => Err(self.fail(
                path,
                format!("expected true or false, got {}", json_type(other)),
            )),
        }
    }

    fn strings(&self, v: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.fail(
                        &format!("{path}[{i}]"),
                        format!("expected a string, got {}", json_type(other)),
                    )),
                })
                .collect(),
            other => Err(self.fail(
                path,
                format!("expected a list of strings, got {}", json_type(other)),
            )),
        }
    }

    fn list<'v>(&self, v: &'v Value, path: &str) -> Result<&'v [Value], PolicyError> {
        match v {
            Value::Null => Ok(&[]),
            Value::Array(items) => Ok(items),
            other => Err(self.fail(path, format!("expected a list, got {}", json_type(other)))),
        }
    }

    fn unknown(&mut self, path: &str, key: &str) {
        let full = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        self.warnings.push(format!(
            "{full}: unknown field (ignored, as kube-apiserver's lenient decoding does)"
        ));
    }
}

fn decode_doc(
    value: &Value,
    source_name: &str,
    warnings: &mut Vec<String>,
) -> Result<PolicyDoc, PolicyError> {
    let mut d = Decoder {
        source_name,
        warnings,
    };
    let mut doc = PolicyDoc::default();
    let Some(obj) = d.object(value, "")? else {
        return Ok(doc);
    };
    for (key, v) in obj {
        match key.as_str() {
            "apiVersion" | "kind" | "metadata" => {}
            "omitStages" => doc.omit_stages = d.strings(v, "omitStages")?,
            "omitManagedFields" => {
                doc.omit_managed_fields = d.boolean(v, "omitManagedFields")?.unwrap_or(false)
            }
            "rules" => {
                let rules = d.list(v, "rules")?;
                if rules.len() > MAX_RULES {
                    return Err(d.fail(
                        "rules",
                        format!("{} rules, more than the limit of {MAX_RULES}", rules.len()),
                    ));
                }
                for (i, r) in rules.iter().enumerate() {
                    doc.rules
                        .push(decode_rule(&mut d, r, &format!("rules[{i}]"))?);
                }
            }
            _ => d.unknown("", key),
        }
    }
    Ok(doc)
}

fn decode_rule(d: &mut Decoder<'_>, v: &Value, path: &str) -> Result<RuleDoc, PolicyError> {
    let mut rule = RuleDoc::default();
    let Some(obj) = d.object(v, path)? else {
        return Ok(rule);
    };
    for (key, v) in obj {
        let p = format!("{path}.{key}");
        match key.as_str() {
            "level" => rule.level = d.string(v, &p)?,
            "users" => rule.users = d.strings(v, &p)?,
            "userGroups" => rule.user_groups = d.strings(v, &p)?,
            "verbs" => rule.verbs = d.strings(v, &p)?,
            "namespaces" => rule.namespaces = d.strings(v, &p)?,
            "nonResourceURLs" => rule.non_resource_urls = d.strings(v, &p)?,
            "omitStages" => rule.omit_stages = d.strings(v, &p)?,
            "omitManagedFields" => rule.omit_managed_fields = d.boolean(v, &p)?,
            "resources" => {
                for (i, gr) in d.list(v, &p)?.iter().enumerate() {
                    let gp = format!("{p}[{i}]");
                    let mut out = GroupResourcesDoc::default();
                    if let Some(gobj) = d.object(gr, &gp)? {
                        for (gk, gv) in gobj {
                            let gkp = format!("{gp}.{gk}");
                            match gk.as_str() {
                                "group" => out.group = d.string(gv, &gkp)?,
                                "resources" => out.resources = d.strings(gv, &gkp)?,
                                "resourceNames" => out.resource_names = d.strings(gv, &gkp)?,
                                _ => d.unknown(&gp, gk),
                            }
                        }
                    }
                    rule.resources.push(out);
                }
            }
            _ => d.unknown(path, key),
        }
    }
    Ok(rule)
}

const STAGE_NAMES: &str = "RequestReceived,ResponseStarted,ResponseComplete,Panic";

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn quote_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

/// Validates a policy exactly as kube-apiserver's `ValidatePolicy` does, plus
/// one kaudit check on resource strings (`pods/`, `a/b/c`, `po*`) that the
/// checker could never match. Errors come in kube-apiserver's order.
pub fn validate_doc(doc: &PolicyDoc) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_omit_stages(&doc.omit_stages, "omitStages", &mut errs);
    for (i, rule) in doc.rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        match rule.level.as_str() {
            "None" | "Metadata" | "Request" | "RequestResponse" => {}
            "" => errs.push(FieldError::required(format!("{path}.level"))),
            other => errs.push(FieldError {
                path: format!("{path}.level"),
                message: format!(
                    "Unsupported value: {}: supported values: \"None\", \"Metadata\", \"Request\", \"RequestResponse\"",
                    quote(other)
                ),
            }),
        }
        for (j, url) in rule.non_resource_urls.iter().enumerate() {
            if url == "*" {
                continue;
            }
            let p = format!("{path}.nonResourceURLs[{j}]");
            if !url.starts_with('/') {
                errs.push(FieldError::invalid(
                    p.clone(),
                    quote(url),
                    "non-resource URL rules must begin with a '/' character",
                ));
            }
            if !url.is_empty() && url[..url.len() - 1].contains('*') {
                errs.push(FieldError::invalid(
                    p,
                    quote(url),
                    "non-resource URL wildcards '*' must be the final character of the rule",
                ));
            }
        }
        for (j, gr) in rule.resources.iter().enumerate() {
            if !gr.group.is_empty() && gr.group != "*" {
                if let Some(msg) = dns_subdomain_error(&gr.group) {
                    errs.push(FieldError::invalid(
                        format!("{path}.resources.group"),
                        quote(&gr.group),
                        &msg,
                    ));
                }
            }
            if !gr.resource_names.is_empty() && gr.resources.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.resources.resourceNames"),
                    quote_list(&gr.resource_names),
                    "using resourceNames requires at least one resource",
                ));
            }
            for (k, res) in gr.resources.iter().enumerate() {
                if let Some(why) = resource_string_error(res) {
                    errs.push(FieldError::invalid(
                        format!("{path}.resources[{j}].resources[{k}]"),
                        quote(res),
                        why,
                    ));
                }
            }
        }
        validate_omit_stages(&rule.omit_stages, &format!("{path}.omitStages"), &mut errs);
        if !rule.non_resource_urls.is_empty()
            && (!rule.resources.is_empty() || !rule.namespaces.is_empty())
        {
            errs.push(FieldError::invalid(
                format!("{path}.nonResourceURLs"),
                quote_list(&rule.non_resource_urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
    }
    errs
}

fn validate_omit_stages(stages: &[String], path: &str, errs: &mut Vec<FieldError>) {
    for (i, s) in stages.iter().enumerate() {
        if s.parse::<Stage>().is_err() {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                quote(s),
                &format!("allowed stages are {STAGE_NAMES}"),
            ));
        }
    }
}

/// kaudit's extra check: a resource string kube-apiserver's checker can never
/// match (it compares `resource` or `resource/subresource` literally).
fn resource_string_error(res: &str) -> Option<&'static str> {
    if res.is_empty() {
        return Some("resource must not be empty (it would never match)");
    }
    if res == "*" {
        return None;
    }
    let parts: Vec<&str> = res.split('/').collect();
    if parts.len() > 2 {
        return Some(
            "must be 'resource', 'resource/subresource', 'resource/*', '*/subresource' or '*'",
        );
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Some("resource and subresource must not be empty (it would never match)");
    }
    if parts.iter().any(|p| p.len() > 1 && p.contains('*')) {
        return Some("'*' must stand alone for a whole resource or subresource; prefixes like 'po*' never match");
    }
    if parts.len() == 2 && parts[0] == "*" && parts[1] == "*" {
        return Some("'*/*' never matches a request without subresource; use '*'");
    }
    None
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn dns_subdomain_error(s: &str) -> Option<String> {
    let mut msgs = Vec::new();
    if s.len() > 253 {
        msgs.push("must be no more than 253 characters".to_string());
    }
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    if !s.split('.').all(label_ok) {
        msgs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    (!msgs.is_empty()).then(|| msgs.join(","))
}

impl Policy {
    /// Validates a document and types it.
    pub fn from_doc(doc: &PolicyDoc) -> Result<Policy, Vec<FieldError>> {
        let errs = validate_doc(doc);
        if !errs.is_empty() {
            return Err(errs);
        }
        let stages = |v: &[String]| -> StageSet {
            v.iter().filter_map(|s| s.parse::<Stage>().ok()).collect()
        };
        let rules = doc
            .rules
            .iter()
            .map(|r| PolicyRule {
                level: r.level.parse().unwrap_or(Level::None),
                users: r.users.clone(),
                user_groups: r.user_groups.clone(),
                verbs: r.verbs.clone(),
                resources: r.resources.clone(),
                namespaces: r.namespaces.clone(),
                non_resource_urls: r.non_resource_urls.clone(),
                omit_stages: stages(&r.omit_stages),
                omit_managed_fields: r.omit_managed_fields,
            })
            .collect();
        Ok(Policy {
            rules,
            omit_stages: stages(&doc.omit_stages),
            omit_managed_fields: doc.omit_managed_fields,
        })
    }
}
