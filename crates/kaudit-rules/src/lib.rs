//! Falco- and Sigma-compatible detection rules over Kubernetes audit events.
//!
//! Users already have Falco `k8s_audit` rules (and Sigma rules for
//! Kubernetes audit logs); this crate runs them unchanged over
//! [`kaudit_event::Event`]s, offline or on ingest.
//!
//! * [`EngineBuilder`] loads Falco rules files (lists, macros, rules,
//!   `append`, `override`, `enabled`, exceptions, `required_engine_version`,
//!   `required_plugin_versions`) and Sigma rules, in order, and compiles them
//!   once into an [`Engine`].
//! * [`Engine::evaluate`] runs the rules over one event with Falco's default
//!   first-match semantics ([`MatchMode::First`]) or every match
//!   ([`MatchMode::All`]) and returns [`Alert`]s rendered like Falco's
//!   (`<NA>` for a missing field), ready for [`Alert::to_falco_json`].
//! * [`DEFAULT_RULES`] is kaudit's own ruleset, used when no rules are given.
//!
//! # Semantics
//!
//! Falco's: `not` > `and` > `or`; a comparison on a missing field is false
//! (even `!=`), only `not` flips it; list names in value lists are replaced by
//! their items before compiling; macros expand as sub-trees using their final
//! definition across all files; `append: true` concatenates; exceptions
//! become `and not (...)`. For list fields `in` means "every value is in the
//! set" (true for an empty list) and `intersects` "some value is". Fields
//! extract as the k8saudit and json plugins do, quirks included (see
//! [`EngineOptions::plugin_compat`]). Rules of other sources (`syscall`)
//! load and are skipped.
//!
//! # Deliberate divergences from Falco
//!
//! * Scalar operators (`=`, `contains`, ...) on a list field are accepted and
//!   true when any element matches; Falco refuses such rules at load time.
//! * `<`, `<=`, `>`, `>=` compare numerically when both sides are numbers,
//!   else lexicographically (Falco's plugin fields are strings and always
//!   compare lexicographically).
//! * `regex` is a search (match anywhere), like Sigma's `|re`.
//! * `x in name` without parentheses is read as `x in (name)`.
//! * `ka.uri.param[k]` decodes the query as Go's url.ParseQuery does. Older
//!   k8saudit versions never returned it (a reversed error check, so
//!   `command=<NA>` in their exec alerts); current versions do, and kaudit
//!   follows them.
//! * `in`/`intersects` values and `exists` are matched against the same
//!   string forms the plugin produces (`true`, `200`, compact JSON); objects
//!   found through `jevt.value` keep the escapes of the event's own bytes.
//! * In `-o json` output a field the event lacks is `null` in
//!   `output_fields` (and `<NA>` in the `output` text).
//! * Sigma rules run in the same engine after the Falco rules; their alert is
//!   the rule `title`, `level` maps to a priority (critical → Critical, high →
//!   Error, medium → Warning, low → Notice, else Informational) and the output
//!   lists user, verb, resource, namespace, name, URI and response code.
//!   Aggregations (`| count()`), `base64`/`wide`/`windash`/`expand` modifiers
//!   and multi-condition lists are refused at load time with the reason.
//! * `jevt.obj` is the event re-indented by serde_json (two spaces), not by
//!   Go's json.Indent; `jevt.time` is ISO 8601 with nanoseconds.
//! * `ka.cluster.name` / `kaudit.cluster` are the cluster name given to the
//!   engine ([`EngineOptions::cluster`]).
//! * With [`EngineOptions::plugin_compat`] off, list fields skip elements
//!   without the wanted key (instead of making the whole field missing),
//!   `add_capabilities` is flattened into capability names, and
//!   `eff_run_as_user`/`eff_run_as_group` read the `securityContext`.

#![warn(missing_docs)]

pub mod error;
pub mod expr;
pub mod falco;
pub mod fields;
pub mod output;
pub mod parse;
pub mod sigma;

use fields::EventCtx;
use kaudit_event::{Event, MicroTime};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

pub use error::{CompileError, SigmaError, UnknownPriority, ValueError};
pub use parse::{parse_condition, Ast, Op, Rhs};
pub use sigma::SigmaRule;

/// kaudit's default ruleset (Falco format, our own rules), used whenever no
/// rules file is given.
pub const DEFAULT_RULES: &str = include_str!("default_rules.yaml");
/// The name the default ruleset is reported under.
pub const DEFAULT_RULES_NAME: &str = "<kaudit default rules>";

/// Falco's rule priorities, most severe first.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// System is unusable.
    Emergency,
    /// Action must be taken immediately.
    Alert,
    /// Critical conditions.
    Critical,
    /// Error conditions.
    Error,
    /// Warning conditions.
    Warning,
    /// Normal but significant.
    Notice,
    /// Informational.
    Informational,
    /// Debug-level.
    Debug,
}

impl Priority {
    /// The name Falco prints in alerts (`Warning`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

impl FromStr for Priority {
    type Err = UnknownPriority;
    fn from_str(s: &str) -> Result<Self, UnknownPriority> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" | "info" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return Err(UnknownPriority(s.to_string())),
        })
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rules file that cannot be loaded: which file, which line, which item, why.
///
/// Equality compares what is shown (file, line, item, reason), not the
/// source, whose text is already part of the reason.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// The file (or source name) the error is in.
    pub file: String,
    /// 1-based line of the offending item, when known.
    pub line: Option<u64>,
    /// The item (`rule Foo`, `macro bar`), when known.
    pub item: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// The typed error behind `reason` ([`CompileError`], [`SigmaError`],
    /// the YAML parser's), when there is one; shared so the error stays
    /// cheap to clone.
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl LoadError {
    /// A load error whose reason is a plain message.
    pub(crate) fn new(
        file: impl Into<String>,
        line: Option<u64>,
        item: Option<String>,
        reason: impl Into<String>,
    ) -> LoadError {
        LoadError {
            file: file.into(),
            line,
            item,
            reason: reason.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause; `reason` must already show its text.
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> LoadError {
        self.source = Some(Arc::new(source));
        self
    }
}

impl PartialEq for LoadError {
    fn eq(&self, other: &Self) -> bool {
        (&self.file, self.line, &self.item, &self.reason)
            == (&other.file, other.line, &other.item, &other.reason)
    }
}

impl Eq for LoadError {}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(i) = &self.item {
            write!(f, ": {i}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Falco's default: an event raises at most one alert (the first matching
/// rule in load order); `All` raises one per matching rule.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum MatchMode {
    /// First matching rule only.
    #[default]
    First,
    /// Every matching rule.
    All,
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Reproduce the k8saudit plugin's extraction quirks (default: true), so
    /// rules behave exactly as under Falco.
    pub plugin_compat: bool,
    /// Cluster name reported as `kaudit.cluster` / `ka.cluster.name`.
    pub cluster: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            plugin_compat: true,
            cluster: None,
        }
    }
}

enum Matcher {
    Falco(falco::CompiledFalco),
    Sigma(Box<SigmaRule>),
}

/// A compiled rule of either kind.
struct Rule {
    matcher: Matcher,
    output: output::Template,
}

impl Rule {
    fn name(&self) -> &str {
        match &self.matcher {
            Matcher::Falco(f) => &f.name,
            Matcher::Sigma(s) => &s.title,
        }
    }
    fn priority(&self) -> Priority {
        match &self.matcher {
            Matcher::Falco(f) => f.priority,
            Matcher::Sigma(s) => s.priority,
        }
    }
    fn tags(&self) -> &[String] {
        match &self.matcher {
            Matcher::Falco(f) => &f.tags,
            Matcher::Sigma(s) => &s.tags,
        }
    }
}

/// Gathers rules files and builds an [`Engine`].
#[derive(Default)]
pub struct EngineBuilder {
    defs: falco::Defs,
    sigma: Vec<SigmaRule>,
    options: EngineOptions,
    any_falco: bool,
}

/// Summary of what a build loaded, for reports and `rules list`.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Non-fatal findings (skipped sources, unknown plugins, ...).
    pub warnings: Vec<String>,
    /// Sigma rules that can never match a raw audit event, with the reason.
    pub unmatchable: Vec<(String, String)>,
}

impl EngineBuilder {
    /// A builder with the given options.
    pub fn new(options: EngineOptions) -> Self {
        EngineBuilder {
            options,
            ..Default::default()
        }
    }

    /// Loads a rules file from disk; Falco or Sigma is decided by content.
    pub fn add_file(&mut self, path: &Path) -> Result<&mut Self, LoadError> {
        let name = path.display().to_string();
        let unreadable = |e: std::io::Error| {
            LoadError::new(&name, None, None, format!("cannot read: {e}")).with_source(e)
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        if meta.len() > falco::MAX_FILE_BYTES as u64 {
            return Err(LoadError::new(
                name,
                None,
                None,
                format!("rules file larger than {} bytes", falco::MAX_FILE_BYTES),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        self.add_source(&name, &text)
    }

    /// Loads rules from text: a Falco rules file (a YAML list) or one or
    /// more Sigma rule documents (`---`-separated mappings).
    pub fn add_source(&mut self, name: &str, text: &str) -> Result<&mut Self, LoadError> {
        if looks_like_sigma(text) {
            let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).map_err(|e| {
                let line = e.location().map(|l| l.line());
                LoadError::new(name, line, None, format!("invalid YAML: {e}")).with_source(e)
            })?;
            for d in docs.iter().filter(|d| !d.is_null()) {
                if !sigma::is_sigma(d) {
                    return Err(LoadError::new(
                        name,
                        None,
                        None,
                        "document is neither a Falco rules list nor a Sigma rule (no 'detection'/'logsource')",
                    ));
                }
                self.sigma.push(SigmaRule::load(name, d)?);
            }
            return Ok(self);
        }
        self.any_falco = true;
        self.defs.load(name, text)?;
        Ok(self)
    }

    /// Loads kaudit's default ruleset.
    pub fn add_default_rules(&mut self) -> Result<&mut Self, LoadError> {
        self.add_source(DEFAULT_RULES_NAME, DEFAULT_RULES)
    }

    /// Compiles everything loaded into an engine.
    pub fn build(mut self) -> Result<(Engine, LoadReport), LoadError> {
        let mut slots = expr::Slots::default();
        let mut nodes = Vec::new();
        let compiled = self.defs.compile(&mut slots, &mut nodes)?;
        let mut rules = Vec::new();
        for f in compiled {
            let output = f.output.clone();
            rules.push(Rule {
                matcher: Matcher::Falco(f),
                output,
            });
        }
        let mut report = LoadReport {
            warnings: std::mem::take(&mut self.defs.warnings),
            unmatchable: vec![],
        };
        for s in self.sigma {
            if let Some(r) = &s.unmatchable {
                report.unmatchable.push((s.title.clone(), r.clone()));
            }
            let text = format!(
                "{} (user=%ka.user.name verb=%ka.verb resource=%ka.target.resource ns=%ka.target.namespace name=%ka.target.name uri=%ka.uri resp=%ka.response.code)",
                s.title.replace('%', "")
            );
            let output = output::Template::compile(&text, &mut slots).map_err(|e| {
                LoadError::new("<sigma>", None, Some(s.title.clone()), e.to_string()).with_source(e)
            })?;
            rules.push(Rule {
                matcher: Matcher::Sigma(Box::new(s)),
                output,
            });
        }
        let auditid = slots.slot("ka.auditid", None).map_err(internal)?;
        let cluster = slots.slot("kaudit.cluster", None).map_err(internal)?;
        Ok((
            Engine {
                rules,
                slots,
                nodes,
                options: self.options,
                auditid_slot: auditid,
                cluster_slot: cluster,
            },
            report,
        ))
    }
}

fn internal(e: CompileError) -> LoadError {
    LoadError::new("<kaudit>", None, None, e.to_string()).with_source(e)
}

fn looks_like_sigma(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("detection:"))
        && text.lines().any(|l| l.starts_with("logsource:"))
}

/// A compiled ruleset, ready to evaluate events; cheap to share across threads.
pub struct Engine {
    rules: Vec<Rule>,
    slots: expr::Slots,
    nodes: Vec<expr::Node>,
    options: EngineOptions,
    auditid_slot: usize,
    cluster_slot: usize,
}

/// One alert: a rule that matched an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Event time (stage timestamp).
    pub time: MicroTime,
    /// Rule name (Sigma: title).
    pub rule: String,
    /// Rule priority.
    pub priority: Priority,
    /// The rendered output line.
    pub output: String,
    /// Fields shown in the output plus `ka.auditid` and `kaudit.cluster`;
    /// `None` for a field the event lacks.
    pub output_fields: Vec<(String, Option<String>)>,
    /// Rule tags.
    pub tags: Vec<String>,
    /// Event source, always `k8s_audit`.
    pub source: &'static str,
    /// The event's auditID.
    pub audit_id: String,
}

impl Alert {
    /// Falco's text form: `<time>: <Priority> <output>`.
    pub fn to_text(&self) -> String {
        let t = self.time.to_string();
        let t = t
            .strip_suffix('Z')
            .map_or(t.clone(), |s| format!("{s}000+0000"));
        format!("{t}: {} {}", self.priority, self.output)
    }

    /// Falco's JSON output shape (`time`, `rule`, `priority`, `output`,
    /// `output_fields`, `source`, `tags`, `hostname`), one line.
    pub fn to_falco_json(&self, hostname: &str) -> String {
        let mut fields = serde_json::Map::new();
        for (k, v) in &self.output_fields {
            fields.insert(
                k.clone(),
                v.as_ref().map_or(serde_json::Value::Null, |s| {
                    serde_json::Value::String(s.clone())
                }),
            );
        }
        let t = self.time.to_string();
        let time = t
            .strip_suffix('Z')
            .map_or(t.clone(), |s| format!("{s}000Z"));
        let obj = serde_json::json!({
            "hostname": hostname,
            "output": format!("{}: {} {}", time, self.priority, self.output),
            "output_fields": fields,
            "priority": self.priority.as_str(),
            "rule": self.rule,
            "source": self.source,
            "tags": self.tags,
            "time": time,
        });
        obj.to_string()
    }
}

impl Engine {
    /// An engine with only kaudit's default ruleset.
    pub fn with_default_rules(options: EngineOptions) -> Result<(Engine, LoadReport), LoadError> {
        let mut b = EngineBuilder::new(options);
        b.add_default_rules()?;
        b.build()
    }

    /// Number of compiled (enabled, `k8s_audit`) rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Each compiled rule's name, priority and description, in evaluation order.
    pub fn rules_info(&self) -> Vec<(&str, Priority, &str)> {
        self.rules
            .iter()
            .map(|r| match &r.matcher {
                Matcher::Falco(f) => (f.name.as_str(), f.priority, f.desc.as_str()),
                Matcher::Sigma(s) => (s.title.as_str(), s.priority, s.description.as_str()),
            })
            .collect()
    }

    /// Names of the compiled rules in evaluation order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(Rule::name)
    }

    /// Number of distinct fields the rules read (the per-event cache size).
    pub fn field_count(&self) -> usize {
        self.slots.kinds.len()
    }

    /// The expanded conditions of the Falco rules (macros and lists
    /// resolved), for tools such as a reference interpreter.
    pub fn falco_conditions(&self) -> Vec<(&str, &Ast)> {
        self.rules
            .iter()
            .filter_map(|r| match &r.matcher {
                Matcher::Falco(f) => Some((f.name.as_str(), &f.ast)),
                Matcher::Sigma(_) => None,
            })
            .collect()
    }

    /// Indices of the rules that match, without rendering anything.
    pub fn matching_rules(&self, event: &Event, mode: MatchMode, out: &mut Vec<usize>) {
        let ctx = EventCtx::new(
            event,
            self.options.cluster.as_deref(),
            self.slots.kinds.len(),
            self.slots.cmp_count(),
        );
        self.match_ctx(&ctx, mode, out);
    }

    fn match_ctx(&self, ctx: &EventCtx<'_>, mode: MatchMode, out: &mut Vec<usize>) {
        let compat = self.options.plugin_compat;
        for (i, r) in self.rules.iter().enumerate() {
            let hit = match &r.matcher {
                Matcher::Falco(f) => {
                    expr::eval_flat(&self.nodes, f.start, ctx, &self.slots, compat)
                }
                Matcher::Sigma(s) => s.matches(ctx),
            };
            if hit {
                out.push(i);
                if mode == MatchMode::First {
                    return;
                }
            }
        }
    }

    /// Evaluates the rules on one event and renders an alert per match.
    pub fn evaluate(&self, event: &Event, mode: MatchMode) -> Vec<Alert> {
        self.evaluate_in(event, self.options.cluster.as_deref(), mode)
    }

    /// Like [`Engine::evaluate`] for an event whose cluster is known (events
    /// read back from the store carry it), overriding [`EngineOptions::cluster`].
    pub fn evaluate_in<'a>(
        &self,
        event: &'a Event,
        cluster: Option<&'a str>,
        mode: MatchMode,
    ) -> Vec<Alert> {
        let ctx = EventCtx::new(
            event,
            cluster,
            self.slots.kinds.len(),
            self.slots.cmp_count(),
        );
        let mut hits = Vec::new();
        self.match_ctx(&ctx, mode, &mut hits);
        let compat = self.options.plugin_compat;
        hits.into_iter()
            .filter_map(|i| self.rules.get(i))
            .map(|r| {
                let mut output_fields = Vec::new();
                let mut seen = std::collections::HashSet::new();
                let extra = [
                    ("ka.auditid", self.auditid_slot),
                    ("kaudit.cluster", self.cluster_slot),
                ];
                for (name, slot) in r.output.fields().chain(extra) {
                    if !seen.insert(name.to_string()) {
                        continue;
                    }
                    let v = self
                        .slots
                        .kinds
                        .get(slot)
                        .and_then(|k| ctx.get(slot, k, compat))
                        .map(|v| v.render());
                    output_fields.push((name.to_string(), v));
                }
                Alert {
                    time: ctx.event_time(),
                    rule: r.name().to_string(),
                    priority: r.priority(),
                    output: r.output.render(&ctx, &self.slots, compat),
                    output_fields,
                    tags: r.tags().to_vec(),
                    source: falco::SOURCE,
                    audit_id: event.audit_id().to_string(),
                }
            })
            .collect()
    }
}
