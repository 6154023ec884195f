//! Report templates: YAML data files whose sections are answered by kaudit
//! queries, so an auditor or operator can write their own (`custom.yaml`).
//!
//! ```yaml
//! name: my-report
//! title: "Quarterly access review"
//! max_rows: 100            # rows listed per section (the rest are counted as omitted)
//! sections:
//!   - id: secrets          # [a-z0-9_-], unique
//!     title: "Secrets read or changed"
//!     query: "resource=secrets ns=payments"   # kind `events` (the default)
//!   - id: denied
//!     kind: denied         # rows plus counts grouped by user
//!     query: "decision=forbid"
//!   - {id: completeness, kind: completeness, title: "Collection", max_quiet_hours: 2}
//!   - {id: alerts, kind: alerts, title: "Alerts"}
//!   - {id: retention, kind: retention, title: "Retention"}
//!   - {id: verification, kind: verification, title: "Integrity"}
//! ```

use crate::ReportError;
use serde::{Deserialize, Serialize};

/// Longest template file accepted, so a hostile file cannot exhaust memory.
pub const MAX_TEMPLATE_BYTES: usize = 256 << 10;
/// Most sections a template may have.
pub const MAX_SECTIONS: usize = 64;
/// Most rows a section may list (what `max_rows` is clamped to).
pub const MAX_ROWS_LIMIT: usize = 10_000;
/// Rows listed per section when neither the template nor the caller says.
pub const DEFAULT_MAX_ROWS: usize = 200;

/// The built-in templates: (name, YAML text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("pci-dss", include_str!("../templates/pci-dss.yaml")),
    ("soc2", include_str!("../templates/soc2.yaml")),
    ("cis", include_str!("../templates/cis.yaml")),
];

/// What answers a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SectionKind {
    /// The events matching `query`, each with its proof.
    #[default]
    Events,
    /// The events matching `query`, plus their counts grouped by user.
    Denied,
    /// Events per cluster and hour, gaps flagged, truncated counts.
    Completeness,
    /// Alerts live detection raised, by rule, each citing its event.
    Alerts,
    /// Retention: pruned range (signed prune record) and legal holds.
    Retention,
    /// The store's verification result and the checkpoints of the period.
    Verification,
}

/// One section of a template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionSpec {
    /// Stable identifier (`[a-z0-9_-]`), what errors and the verifier name.
    pub id: String,
    /// Heading shown in the report.
    pub title: String,
    /// What answers it.
    #[serde(default)]
    pub kind: SectionKind,
    /// The kaudit query (kinds `events` and `denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Rows listed for this section (overrides the template's `max_rows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// Completeness: a run of empty hours at least this long is a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_quiet_hours: Option<u32>,
}

/// A parsed, checked template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Short name (`pci-dss`).
    pub name: String,
    /// Report title.
    pub title: String,
    /// What the report is evidence for.
    #[serde(default)]
    pub description: String,
    /// Rows listed per section unless a section says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// The sections, in report order.
    pub sections: Vec<SectionSpec>,
}

impl Template {
    /// Parses and checks a template; errors name the section and field.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Template, ReportError> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(ReportError::Template(format!(
                "{origin}: template is larger than {MAX_TEMPLATE_BYTES} bytes"
            )));
        }
        let t: Template = serde_saphyr::from_str(text)
            .map_err(|e| ReportError::Template(format!("{origin}: {e}")))?;
        t.check(origin)?;
        Ok(t)
    }

    /// A built-in template by name only, never a file: what a server takes
    /// from a caller, who must not name paths on the server's disk.
    pub fn builtin(name: &str) -> Result<Template, ReportError> {
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => Template::from_yaml(text, name),
            None => {
                let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                Err(ReportError::Template(format!(
                    "no built-in template {name:?} (built-in: {})",
                    names.join(", ")
                )))
            }
        }
    }

    /// A built-in template by name, or a template file when `name_or_path`
    /// names none (ends in `.yaml`/`.yml` or contains a `/`).
    pub fn load(name_or_path: &str) -> Result<Template, ReportError> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Template::from_yaml(text, name_or_path);
        }
        let looks_like_file = name_or_path.ends_with(".yaml")
            || name_or_path.ends_with(".yml")
            || name_or_path.contains('/');
        if !looks_like_file {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            return Err(ReportError::Template(format!(
                "no built-in template {name_or_path:?} (built-in: {}; or give a .yaml file)",
                names.join(", ")
            )));
        }
        let meta = std::fs::metadata(name_or_path)
            .map_err(|e| ReportError::Template(format!("{name_or_path}: {e}")))?;
        if meta.len() > MAX_TEMPLATE_BYTES as u64 {
            return Err(ReportError::Template(format!(
                "{name_or_path}: template is larger than {MAX_TEMPLATE_BYTES} bytes"
            )));
        }
        let text = std::fs::read_to_string(name_or_path)
            .map_err(|e| ReportError::Template(format!("{name_or_path}: {e}")))?;
        Template::from_yaml(&text, name_or_path)
    }

    fn check(&self, origin: &str) -> Result<(), ReportError> {
        let bad = |what: String| Err(ReportError::Template(format!("{origin}: {what}")));
        if self.name.is_empty() || self.name.len() > 64 {
            return bad("name must be 1 to 64 characters".into());
        }
        if self.sections.is_empty() || self.sections.len() > MAX_SECTIONS {
            return bad(format!("sections: want 1 to {MAX_SECTIONS}"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in self.sections.iter().enumerate() {
            let at = format!("sections[{i}] ({})", s.id);
            if s.id.is_empty()
                || s.id.len() > 64
                || !s
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return bad(format!("{at}.id: want 1 to 64 of [a-z0-9_-]"));
            }
            if !seen.insert(s.id.as_str()) {
                return bad(format!("{at}.id: used twice"));
            }
            match (s.kind, &s.query) {
                (SectionKind::Events | SectionKind::Denied, None) => {
                    return bad(format!("{at}.query: kind {:?} needs a query", s.kind));
                }
                (SectionKind::Events | SectionKind::Denied, Some(q)) => {
                    if let Err(e) = kaudit_query::Query::parse(q) {
                        return bad(format!("{at}.query: {e}"));
                    }
                }
                (_, Some(_)) => {
                    return bad(format!("{at}.query: kind {:?} takes no query", s.kind));
                }
                _ => {}
            }
            if s.max_rows.is_some_and(|m| m > MAX_ROWS_LIMIT) {
                return bad(format!("{at}.max_rows: at most {MAX_ROWS_LIMIT}"));
            }
            if s.max_quiet_hours == Some(0) {
                return bad(format!("{at}.max_quiet_hours: must be at least 1"));
            }
        }
        if self.max_rows.is_some_and(|m| m > MAX_ROWS_LIMIT) {
            return bad(format!("max_rows: at most {MAX_ROWS_LIMIT}"));
        }
        Ok(())
    }
}
