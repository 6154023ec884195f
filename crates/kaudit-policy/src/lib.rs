//! audit.k8s.io/v1 Policy: loading, kube-apiserver-exact evaluation, lint, apply, redaction.
//!
//! kube-apiserver gives users no way to try an audit policy before rolling it
//! out; this crate reproduces its semantics exactly so kaudit can:
//!
//! * load and validate a policy like the apiserver does ([`load_policy`]),
//! * evaluate it on request attributes or recorded events ([`CompiledPolicy`]),
//!   precompiled so a whole stream can be evaluated cheaply,
//! * apply it to an event stream, stripping bodies and redacting secrets
//!   ([`PolicyApplier`]),
//! * lint it ([`lint()`]) and simulate it over recorded traffic ([`simulate`]).

#![warn(missing_docs)]

mod apply;
mod eval;
pub mod lint;
mod model;
mod naive;
mod rawjson;
mod redact;
pub mod simulate;

pub use apply::{ApplyOptions, DropReason, Outcome, PolicyApplier, Verdict};
pub use eval::{AuditConfig, CompiledPolicy, RequestAttributes, StageSet, UserAttrs};
pub use lint::{lint, lint_apiserver_flags, lint_cis, Finding, Severity};
pub use model::{
    load_policy, load_policy_file, policy_from_value, validate_doc, FieldError, GroupResourcesDoc,
    LoadedPolicy, Policy, PolicyDoc, PolicyError, PolicyRule, RuleDoc, SyntaxError,
    MAX_POLICY_BYTES, MAX_RULES,
};
pub use naive::evaluate_naive;
pub use redact::{redact_value_hash, REDACTED_ANNOTATION};

/// Renders any serializable report as YAML, for `-o yaml` in the CLI (which
/// does not depend on a YAML library itself).
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, PolicyError> {
    serde_saphyr::to_string(value).map_err(|e| PolicyError::Output(Box::new(e)))
}
