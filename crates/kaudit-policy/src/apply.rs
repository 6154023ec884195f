//! Applying a policy to recorded events: what kube-apiserver would have
//! written had this policy been in force (it can only remove information),
//! plus redaction of secrets.

use crate::eval::{AuditConfig, CompiledPolicy, RequestAttributes};
use crate::model::Policy;
use crate::rawjson::{array_to_raw, parse_array, RawObject};
use crate::redact::{could_need_redaction, redact_body, BodyContext, REDACTED_ANNOTATION};
use kaudit_event::{Event, EventDoc, Level, Stage};
use serde_json::value::RawValue;

/// What applying does besides the policy itself.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Redact Secret data and tokens (on by default).
    pub redact: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { redact: true }
    }
}

/// Why an event was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The deciding rule (or the lack of one) says level None.
    LevelNone {
        /// Index of the rule, `None` when no rule matched.
        rule: Option<usize>,
    },
    /// The event's stage is omitted for its rule.
    OmittedStage {
        /// The omitted stage.
        stage: Stage,
        /// Index of the rule, `None` when no rule matched.
        rule: Option<usize>,
    },
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rule = |r: &Option<usize>| match r {
            Some(i) => format!("rule {i}"),
            None => "no rule matched".to_string(),
        };
        match self {
            DropReason::LevelNone { rule: r } => write!(f, "level None ({})", rule(r)),
            DropReason::OmittedStage { stage, rule: r } => {
                write!(f, "stage {stage} omitted ({})", rule(r))
            }
        }
    }
}

/// The result of applying a policy to one event. The event is moved through
/// unboxed: boxing would cost an allocation per event on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The event, possibly stripped or redacted (same bytes when unchanged).
    Keep(Event),
    /// The event would not have been logged.
    Drop(DropReason),
}

/// What applying would do to an event, decided without consuming it: an
/// ingest pipeline that already owns the event keeps it as is (no copy),
/// stores the replacement, or drops it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Keep the event exactly as it is.
    KeepAsIs,
    /// Keep this stripped or redacted version instead.
    Replace(Event),
    /// Drop the event.
    Drop(DropReason),
}

/// Applies a compiled policy and redaction to a stream of events.
pub struct PolicyApplier {
    policy: CompiledPolicy,
    opts: ApplyOptions,
}

impl PolicyApplier {
    /// Compiles `policy` for applying.
    pub fn new(policy: Policy, opts: ApplyOptions) -> PolicyApplier {
        PolicyApplier {
            policy: CompiledPolicy::new(policy),
            opts,
        }
    }

    /// The applier used at ingest (`import`, `serve`, `tail`): the given
    /// policy file, or with none a keep-everything policy so redaction alone
    /// still runs; `None` when there is neither a policy nor redaction.
    /// Returns the loader's warnings alongside.
    pub fn for_ingest(
        policy: Option<&std::path::Path>,
        redact: bool,
    ) -> Result<Option<(PolicyApplier, Vec<String>)>, crate::PolicyError> {
        let loaded = match policy {
            Some(p) => crate::load_policy_file(p)?,
            None if redact => crate::load_policy(
                b"apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n",
                "built-in keep-everything policy",
            )?,
            None => return Ok(None),
        };
        Ok(Some((
            PolicyApplier::new(loaded.policy, ApplyOptions { redact }),
            loaded.warnings,
        )))
    }

    /// The compiled policy (for evaluating without applying).
    pub fn compiled(&self) -> &CompiledPolicy {
        &self.policy
    }

    /// Evaluates the policy for the event and applies the decision.
    pub fn apply(&self, event: Event) -> Outcome {
        let cfg = self.policy.evaluate(&RequestAttributes::from_event(&event));
        self.apply_config(event, cfg)
    }

    /// Decides what applying the policy does to `event` without consuming it.
    pub fn check(&self, event: &Event) -> Verdict {
        let cfg = self.policy.evaluate(&RequestAttributes::from_event(event));
        self.check_config(event, cfg)
    }

    /// Applies an already-evaluated decision (see [`PolicyApplier::check_config`]).
    pub fn apply_config(&self, event: Event, cfg: AuditConfig) -> Outcome {
        match self.check_config(&event, cfg) {
            Verdict::KeepAsIs => Outcome::Keep(event),
            Verdict::Replace(e) => Outcome::Keep(e),
            Verdict::Drop(r) => Outcome::Drop(r),
        }
    }

    /// Applies an already-evaluated decision: drops the event at level None
    /// or in an omitted stage; otherwise lowers its level to the policy's
    /// when the policy's is lower (so the level always says what the event
    /// holds), strips bodies the level does not cover, strips managedFields
    /// when asked, and redacts. The event is re-encoded only if one of these
    /// changed something; otherwise its exact bytes are kept.
    pub fn check_config(&self, event: &Event, cfg: AuditConfig) -> Verdict {
        if cfg.level == Level::None {
            return Verdict::Drop(DropReason::LevelNone { rule: cfg.rule });
        }
        let stage = event.stage();
        if cfg.omit_stages.contains(stage) {
            return Verdict::Drop(DropReason::OmittedStage {
                stage,
                rule: cfg.rule,
            });
        }
        let doc = event.doc();
        let level = doc.level.min(cfg.level);
        let strip_request = level < Level::Request && doc.request_object.is_some();
        let strip_response = level < Level::RequestResponse && doc.response_object.is_some();
        let ctx = body_context(doc);
        let body_needs_work = |body: &Option<Box<RawValue>>, stripped: bool| {
            !stripped
                && body.as_deref().is_some_and(|b| {
                    (cfg.omit_managed_fields && mentions_managed_fields(b))
                        || (self.opts.redact && could_need_redaction(ctx, b))
                })
        };
        let work_request = body_needs_work(&doc.request_object, strip_request);
        let work_response = body_needs_work(&doc.response_object, strip_response);
        if level == doc.level
            && !strip_request
            && !strip_response
            && !work_request
            && !work_response
        {
            return Verdict::KeepAsIs;
        }
        let mut new = doc.clone();
        let mut changed = level != doc.level || strip_request || strip_response;
        new.level = level;
        if strip_request {
            new.request_object = None;
        }
        if strip_response {
            new.response_object = None;
        }
        let mut paths = Vec::new();
        if work_request {
            changed |= self.rework_body(
                &mut new.request_object,
                cfg,
                ctx,
                "requestObject",
                &mut paths,
            );
        }
        if work_response {
            changed |= self.rework_body(
                &mut new.response_object,
                cfg,
                ctx,
                "responseObject",
                &mut paths,
            );
        }
        if !paths.is_empty() {
            let joined = paths.join(",");
            let value = match new.annotations.get(REDACTED_ANNOTATION) {
                Some(old) if !old.is_empty() => format!("{old},{joined}"),
                _ => joined,
            };
            new.annotations
                .insert(REDACTED_ANNOTATION.to_string(), value);
        }
        if changed {
            Verdict::Replace(Event::from_doc(new))
        } else {
            Verdict::KeepAsIs
        }
    }

    fn rework_body(
        &self,
        body: &mut Option<Box<RawValue>>,
        cfg: AuditConfig,
        ctx: BodyContext<'_>,
        prefix: &str,
        paths: &mut Vec<String>,
    ) -> bool {
        let Some(raw) = body.as_mut() else {
            return false;
        };
        let mut changed = false;
        if cfg.omit_managed_fields && mentions_managed_fields(raw) {
            if let Some(stripped) = strip_managed_fields(raw) {
                *raw = stripped;
                changed = true;
            }
        }
        if self.opts.redact && could_need_redaction(ctx, raw) {
            if let Some(redacted) = redact_body(ctx, raw, prefix, paths) {
                *raw = redacted;
                changed = true;
            }
        }
        changed
    }
}

fn body_context(doc: &EventDoc) -> BodyContext<'_> {
    match &doc.object_ref {
        Some(o) => BodyContext {
            resource: &o.resource,
            subresource: &o.subresource,
        },
        None => BodyContext {
            resource: "",
            subresource: "",
        },
    }
}

fn mentions_managed_fields(raw: &RawValue) -> bool {
    memchr::memmem::find(raw.get().as_bytes(), b"\"managedFields\"").is_some()
}

/// Removes metadata.managedFields from an object, from each item of a list
/// and from each row object of a Table, as kube-apiserver does when a rule
/// sets omitManagedFields. `None` when nothing was removed.
fn strip_managed_fields(raw: &RawValue) -> Option<Box<RawValue>> {
    let mut obj = RawObject::parse(raw)?;
    let mut changed = strip_object_metadata(&mut obj);
    for (list_key, nested) in [("items", None), ("rows", Some("object"))] {
        let Some(mut items) = obj.get(list_key).and_then(parse_array) else {
            continue;
        };
        let mut list_changed = false;
        for item in items.iter_mut() {
            let Some(mut item_obj) = RawObject::parse(item) else {
                continue;
            };
            let item_changed = match nested {
                None => strip_object_metadata(&mut item_obj),
                Some(key) => match item_obj.get(key).and_then(RawObject::parse) {
                    Some(mut inner) => {
                        let stripped = strip_object_metadata(&mut inner);
                        if stripped {
                            item_obj.set(key, inner.to_raw());
                        }
                        stripped
                    }
                    None => false,
                },
            };
            if item_changed {
                *item = item_obj.to_raw();
                list_changed = true;
            }
        }
        if list_changed {
            obj.set(list_key, array_to_raw(&items));
            changed = true;
        }
    }
    changed.then(|| obj.to_raw())
}

fn strip_object_metadata(obj: &mut RawObject) -> bool {
    let Some(mut meta) = obj.get("metadata").and_then(RawObject::parse) else {
        return false;
    };
    if !meta.remove("managedFields") {
        return false;
    }
    obj.set("metadata", meta.to_raw());
    true
}
