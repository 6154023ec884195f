//! The fields a Falco rule can read from an audit event (`ka.*` of the
//! k8saudit plugin, `jevt.*`/`json.*` of the json plugin, a few `evt.*`) and
//! their extraction.
//!
//! Extraction follows the plugin's semantics, quirks included: a value that
//! is not a JSON string is rendered as compact JSON (`true`, `200`, `{...}`),
//! and a list field that meets an element without the wanted key is not
//! available at all (except `privileged`, which skips such elements). Each
//! field is extracted at most once per event: results live in a per-event
//! slot cache ([`EventCtx`]), and the request/response bodies are parsed only
//! when a field first needs them.

use crate::error::CompileError;
use kaudit_event::{Event, MicroTime};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};

/// An extracted value: one string or a list of strings (list fields).
#[derive(Clone, Debug, PartialEq)]
pub enum FieldVal<'e> {
    /// A scalar field's value.
    One(Cow<'e, str>),
    /// A list field's values (may be empty).
    Many(Vec<Cow<'e, str>>),
}

impl FieldVal<'_> {
    /// Renders the value as Falco prints it in outputs: lists as `(a,b)`.
    pub fn render(&self) -> String {
        match self {
            FieldVal::One(s) => s.to_string(),
            FieldVal::Many(v) => {
                let mut out = String::from("(");
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(s);
                }
                out.push(')');
                out
            }
        }
    }
}

/// Which container array of a pod spec a `ka.req.pod.<set>.*` field reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ContainerSet {
    Containers,
    Init,
    Ephemeral,
}

impl ContainerSet {
    fn key(self) -> &'static str {
        match self {
            ContainerSet::Containers => "containers",
            ContainerSet::Init => "initContainers",
            ContainerSet::Ephemeral => "ephemeralContainers",
        }
    }
}

/// A per-container property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ContainerProp {
    Name,
    Image,
    ImageRepository,
    Command,
    Args,
    Privileged,
    AllowPrivilegeEscalation,
    ReadOnlyFs,
    RunAsUser,
    EffRunAsUser,
    RunAsGroup,
    EffRunAsGroup,
    ProcMount,
    AddCapabilities,
    HostPort,
}

/// A resolved field: what to extract, decided once at rule compile time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FieldKind {
    AuditId,
    Stage,
    AuthDecision,
    AuthReason,
    UserName,
    UserGroups,
    ImpUserName,
    Verb,
    Uri,
    UriParam(String),
    TargetName,
    TargetNamespace,
    TargetResource,
    TargetSubresource,
    TargetPodName,
    BindingSubjects,
    BindingSubjectNames(&'static str),
    BindingSubjectSaNsNames,
    BindingRole,
    BindingSubjectHasName,
    ConfigmapName,
    ConfigmapObj,
    Pod(ContainerSet, ContainerProp, Option<usize>),
    FirstContainerImage,
    FirstContainerRepository,
    AnyContainerPrivileged,
    PodSpec(&'static [&'static str]),
    RoleRules,
    RoleRulesField(&'static str, Option<usize>),
    ServiceType,
    ServicePorts(Option<usize>),
    VolumeHostpathMatch(String),
    VolumesHostpath(Option<usize>),
    VolumesFlexDriver(Option<usize>),
    VolumesType(Option<usize>),
    RespName,
    ResponseCode,
    ResponseReason,
    UserAgent,
    SourceIps(Option<usize>),
    ClusterName,
    JsonValue(Vec<String>),
    JsonObj,
    RawTime,
    Time,
    EvtSource,
}

impl FieldKind {
    /// Whether Falco treats the field as a list (`in` means subset, etc.).
    pub(crate) fn is_list(&self) -> bool {
        matches!(
            self,
            FieldKind::UserGroups
                | FieldKind::BindingSubjects
                | FieldKind::BindingSubjectNames(_)
                | FieldKind::BindingSubjectSaNsNames
                | FieldKind::RoleRules
                | FieldKind::RoleRulesField(..)
                | FieldKind::ServicePorts(_)
                | FieldKind::VolumesHostpath(_)
                | FieldKind::VolumesFlexDriver(_)
                | FieldKind::VolumesType(_)
                | FieldKind::SourceIps(_)
                | FieldKind::PodSpec(&["securityContext", "supplementalGroups"])
        ) || matches!(self, FieldKind::Pod(..))
    }
}

/// Resolves a field name and its optional `[arg]`, or says why not.
pub(crate) fn resolve(name: &str, arg: Option<&str>) -> Result<FieldKind, CompileError> {
    let index = || -> Result<Option<usize>, CompileError> {
        match arg {
            None => Ok(None),
            Some(a) => a
                .trim()
                .parse::<usize>()
                .map(Some)
                .map_err(|_| CompileError::NumericArg {
                    field: name.to_string(),
                    arg: a.to_string(),
                }),
        }
    };
    let key = |what: &'static str| -> Result<String, CompileError> {
        match arg {
            Some(a) if !a.is_empty() => Ok(a.to_string()),
            _ => Err(CompileError::MissingArg {
                field: name.to_string(),
                what,
            }),
        }
    };
    let no_arg = |k: FieldKind| -> Result<FieldKind, CompileError> {
        match arg {
            None => Ok(k),
            Some(a) => Err(CompileError::UnexpectedArg {
                field: name.to_string(),
                arg: a.to_string(),
            }),
        }
    };
    if let Some(rest) = name.strip_prefix("ka.req.pod.") {
        for (prefix, set) in [
            ("containers.", ContainerSet::Containers),
            ("initContainers.", ContainerSet::Init),
            ("ephemeralContainers.", ContainerSet::Ephemeral),
        ] {
            if let Some(prop) = rest.strip_prefix(prefix) {
                let prop = match prop {
                    "name" => ContainerProp::Name,
                    "image" => ContainerProp::Image,
                    "image.repository" => ContainerProp::ImageRepository,
                    "command" => ContainerProp::Command,
                    "args" => ContainerProp::Args,
                    "privileged" => ContainerProp::Privileged,
                    "allow_privilege_escalation" => ContainerProp::AllowPrivilegeEscalation,
                    "read_only_fs" => ContainerProp::ReadOnlyFs,
                    "run_as_user" => ContainerProp::RunAsUser,
                    "eff_run_as_user" => ContainerProp::EffRunAsUser,
                    "run_as_group" => ContainerProp::RunAsGroup,
                    "eff_run_as_group" => ContainerProp::EffRunAsGroup,
                    "proc_mount" => ContainerProp::ProcMount,
                    "add_capabilities" => ContainerProp::AddCapabilities,
                    "host_port" => ContainerProp::HostPort,
                    _ => return Err(CompileError::UnknownField(name.to_string())),
                };
                return Ok(FieldKind::Pod(set, prop, index()?));
            }
        }
    }
    Ok(match name {
        "ka.auditid" => no_arg(FieldKind::AuditId)?,
        "ka.stage" => no_arg(FieldKind::Stage)?,
        "ka.auth.decision" => no_arg(FieldKind::AuthDecision)?,
        "ka.auth.reason" => no_arg(FieldKind::AuthReason)?,
        "ka.user.name" => no_arg(FieldKind::UserName)?,
        "ka.user.groups" => no_arg(FieldKind::UserGroups)?,
        "ka.impuser.name" => no_arg(FieldKind::ImpUserName)?,
        "ka.verb" => no_arg(FieldKind::Verb)?,
        "ka.uri" => no_arg(FieldKind::Uri)?,
        "ka.uri.param" => FieldKind::UriParam(key("query parameter")?),
        "ka.target.name" => no_arg(FieldKind::TargetName)?,
        "ka.target.namespace" => no_arg(FieldKind::TargetNamespace)?,
        "ka.target.resource" => no_arg(FieldKind::TargetResource)?,
        "ka.target.subresource" => no_arg(FieldKind::TargetSubresource)?,
        "ka.target.pod.name" => no_arg(FieldKind::TargetPodName)?,
        "ka.req.binding.subjects" => no_arg(FieldKind::BindingSubjects)?,
        "ka.req.binding.subjects.user_names" => no_arg(FieldKind::BindingSubjectNames("User"))?,
        "ka.req.binding.subjects.serviceaccount_names" => {
            no_arg(FieldKind::BindingSubjectNames("ServiceAccount"))?
        }
        "ka.req.binding.subjects.group_names" => no_arg(FieldKind::BindingSubjectNames("Group"))?,
        "ka.req.binding.subjects.serviceaccount_ns_names" => {
            no_arg(FieldKind::BindingSubjectSaNsNames)?
        }
        "ka.req.binding.role" => no_arg(FieldKind::BindingRole)?,
        "ka.req.binding.subject.has_name" => {
            key("subject name")?;
            FieldKind::BindingSubjectHasName
        }
        "ka.req.configmap.name" => no_arg(FieldKind::ConfigmapName)?,
        "ka.req.configmap.obj" => no_arg(FieldKind::ConfigmapObj)?,
        "ka.req.container.image" => no_arg(FieldKind::FirstContainerImage)?,
        "ka.req.container.image.repository" => no_arg(FieldKind::FirstContainerRepository)?,
        "ka.req.container.privileged" => no_arg(FieldKind::AnyContainerPrivileged)?,
        "ka.req.pod.host_ipc" => no_arg(FieldKind::PodSpec(&["hostIPC"]))?,
        "ka.req.pod.host_network" | "ka.req.container.host_network" => {
            no_arg(FieldKind::PodSpec(&["hostNetwork"]))?
        }
        "ka.req.pod.host_pid" => no_arg(FieldKind::PodSpec(&["hostPID"]))?,
        "ka.req.pod.run_as_user" => no_arg(FieldKind::PodSpec(&["securityContext", "runAsUser"]))?,
        "ka.req.pod.run_as_group" => {
            no_arg(FieldKind::PodSpec(&["securityContext", "runAsGroup"]))?
        }
        "ka.req.pod.fs_group" => no_arg(FieldKind::PodSpec(&["securityContext", "fsGroup"]))?,
        "ka.req.pod.supplemental_groups" => no_arg(FieldKind::PodSpec(&[
            "securityContext",
            "supplementalGroups",
        ]))?,
        "ka.req.role.rules" => no_arg(FieldKind::RoleRules)?,
        "ka.req.role.rules.apiGroups" => FieldKind::RoleRulesField("apiGroups", index()?),
        "ka.req.role.rules.nonResourceURLs" => {
            FieldKind::RoleRulesField("nonResourceURLs", index()?)
        }
        "ka.req.role.rules.verbs" => FieldKind::RoleRulesField("verbs", index()?),
        "ka.req.role.rules.resources" => FieldKind::RoleRulesField("resources", index()?),
        "ka.req.service.type" => no_arg(FieldKind::ServiceType)?,
        "ka.req.service.ports" => FieldKind::ServicePorts(index()?),
        "ka.req.volume.hostpath" => FieldKind::VolumeHostpathMatch(key("host path")?),
        "ka.req.pod.volumes.hostpath" => FieldKind::VolumesHostpath(index()?),
        "ka.req.pod.volumes.flexvolume_driver" => FieldKind::VolumesFlexDriver(index()?),
        "ka.req.pod.volumes.volume_type" => FieldKind::VolumesType(index()?),
        "ka.resp.name" => no_arg(FieldKind::RespName)?,
        "ka.response.code" => no_arg(FieldKind::ResponseCode)?,
        "ka.response.reason" => no_arg(FieldKind::ResponseReason)?,
        "ka.useragent" => no_arg(FieldKind::UserAgent)?,
        "ka.sourceips" => FieldKind::SourceIps(index()?),
        "ka.cluster.name" | "kaudit.cluster" => no_arg(FieldKind::ClusterName)?,
        "jevt.value" | "json.value" => FieldKind::JsonValue(parse_pointer(&key("JSON pointer")?)),
        "jevt.obj" | "json.obj" => no_arg(FieldKind::JsonObj)?,
        "jevt.rawtime" | "json.rawtime" | "evt.rawtime" => no_arg(FieldKind::RawTime)?,
        "jevt.time" | "jevt.time.iso8601" | "evt.time" | "evt.time.iso8601" => {
            no_arg(FieldKind::Time)?
        }
        "evt.source" => no_arg(FieldKind::EvtSource)?,
        _ => return Err(CompileError::UnknownField(name.to_string())),
    })
}

/// Splits a JSON pointer (RFC 6901) the way the json plugin does: one leading
/// `/` dropped, `~1` then `~0` unescaped in each segment.
fn parse_pointer(p: &str) -> Vec<String> {
    let p = p.strip_prefix('/').unwrap_or(p);
    p.split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Per-event state: the event, its lazily parsed bodies and the field slots.
pub struct EventCtx<'e> {
    pub(crate) event: &'e Event,
    pub(crate) cluster: Option<&'e str>,
    request: OnceCell<Option<Value>>,
    whole: OnceCell<Option<Value>>,
    slots: RefCell<Vec<Slot<'e>>>,
    /// Results of the distinct comparisons: 0 not yet evaluated, 1 false, 2 true.
    pub(crate) verdicts: Box<[Cell<u8>]>,
}

#[derive(Clone)]
enum Slot<'e> {
    Unset,
    Missing,
    Present(FieldVal<'e>),
}

impl<'e> EventCtx<'e> {
    /// Starts evaluating one event with room for `nslots` cached fields and
    /// `ncmp` cached comparison results.
    pub fn new(event: &'e Event, cluster: Option<&'e str>, nslots: usize, ncmp: usize) -> Self {
        EventCtx {
            event,
            cluster,
            request: OnceCell::new(),
            whole: OnceCell::new(),
            slots: RefCell::new(vec![Slot::Unset; nslots]),
            verdicts: (0..ncmp).map(|_| Cell::new(0)).collect(),
        }
    }

    /// The field in `slot`, extracted on first use and cached after.
    pub(crate) fn get(&self, slot: usize, kind: &FieldKind, compat: bool) -> Option<FieldVal<'e>> {
        if let Some(s) = self.slots.borrow().get(slot) {
            match s {
                Slot::Unset => {}
                Slot::Missing => return None,
                Slot::Present(v) => return Some(v.clone()),
            }
        }
        let v = self.extract(kind, compat);
        if let Some(s) = self.slots.borrow_mut().get_mut(slot) {
            *s = match &v {
                None => Slot::Missing,
                Some(v) => Slot::Present(v.clone()),
            };
        }
        v
    }

    /// Calls `f` with the cached value without cloning it.
    pub(crate) fn with<R>(
        &self,
        slot: usize,
        kind: &FieldKind,
        compat: bool,
        f: impl FnOnce(Option<&FieldVal<'e>>) -> R,
    ) -> R {
        {
            let slots = self.slots.borrow();
            match slots.get(slot) {
                Some(Slot::Missing) => return f(None),
                Some(Slot::Present(v)) => return f(Some(v)),
                _ => {}
            }
        }
        let v = self.extract(kind, compat);
        let mut slots = self.slots.borrow_mut();
        match slots.get_mut(slot) {
            Some(s) => {
                *s = match v {
                    None => Slot::Missing,
                    Some(v) => Slot::Present(v),
                };
                match &*s {
                    Slot::Present(v) => f(Some(v)),
                    _ => f(None),
                }
            }
            None => f(v.as_ref()),
        }
    }

    fn request_object(&self) -> Option<&Value> {
        self.request
            .get_or_init(|| {
                let raw = self.event.doc().request_object.as_ref()?;
                serde_json::from_str(raw.get()).ok()
            })
            .as_ref()
    }

    /// The whole event as JSON, parsed once when a generic field needs it.
    pub(crate) fn whole(&self) -> Option<&Value> {
        self.whole
            .get_or_init(|| serde_json::from_slice(self.event.bytes()).ok())
            .as_ref()
    }

    /// The event's time: its stage timestamp, else when the request arrived.
    pub fn event_time(&self) -> MicroTime {
        let d = self.event.doc();
        d.stage_timestamp
            .or(d.request_received_timestamp)
            .unwrap_or(MicroTime(0))
    }

    fn request_raw(&self, path: &[&str]) -> Option<String> {
        let raw = self.event.doc().request_object.as_ref()?;
        raw_path(raw.get(), path).map(raw_string)
    }

    fn pod_spec(&self) -> Option<&Value> {
        self.request_object()?.get("spec")
    }

    fn extract(&self, kind: &FieldKind, compat: bool) -> Option<FieldVal<'e>> {
        let ev = self.event;
        let doc = ev.doc();
        let one = |s: &'e str| Some(FieldVal::One(Cow::Borrowed(s)));
        let nonempty = |s: &'e str| {
            if s.is_empty() {
                None
            } else {
                Some(FieldVal::One(Cow::Borrowed(s)))
            }
        };
        let objref = doc.object_ref.as_ref();
        match kind {
            FieldKind::AuditId => one(&doc.audit_id),
            FieldKind::Stage => one(ev.stage().as_str()),
            FieldKind::AuthDecision => doc
                .annotations
                .get("authorization.k8s.io/decision")
                .map(|s| FieldVal::One(Cow::Borrowed(s.as_str()))),
            FieldKind::AuthReason => doc
                .annotations
                .get("authorization.k8s.io/reason")
                .map(|s| FieldVal::One(Cow::Borrowed(s.as_str()))),
            FieldKind::UserName => nonempty(&doc.user.username),
            FieldKind::UserGroups => {
                if doc.user.groups.is_empty() {
                    None
                } else {
                    Some(FieldVal::Many(
                        doc.user
                            .groups
                            .iter()
                            .map(|g| Cow::Borrowed(g.as_str()))
                            .collect(),
                    ))
                }
            }
            FieldKind::ImpUserName => doc
                .impersonated_user
                .as_ref()
                .and_then(|u| nonempty(&u.username)),
            FieldKind::Verb => one(&doc.verb),
            FieldKind::Uri => one(&doc.request_uri),
            FieldKind::UriParam(k) => {
                uri_param(&doc.request_uri, k).map(|v| FieldVal::One(v.into()))
            }
            FieldKind::TargetName | FieldKind::ConfigmapName => {
                objref.and_then(|o| nonempty(&o.name))
            }
            FieldKind::TargetNamespace => objref.and_then(|o| nonempty(&o.namespace)),
            FieldKind::TargetResource => objref.and_then(|o| nonempty(&o.resource)),
            FieldKind::TargetSubresource => objref.and_then(|o| nonempty(&o.subresource)),
            FieldKind::TargetPodName => objref
                .filter(|o| o.resource == "pods")
                .and_then(|o| nonempty(&o.name)),
            FieldKind::BindingSubjects => {
                let arr = self.request_object()?.get("subjects")?.as_array()?;
                Some(many(arr.iter().map(json_string)))
            }
            FieldKind::BindingSubjectNames(wanted) => {
                let arr = self.request_object()?.get("subjects")?.as_array()?;
                Some(many(arr.iter().filter_map(|s| {
                    (s.get("kind")?.as_str()? == *wanted)
                        .then(|| s.get("name").map(json_string))
                        .flatten()
                })))
            }
            FieldKind::BindingSubjectSaNsNames => {
                let arr = self.request_object()?.get("subjects")?.as_array()?;
                Some(many(arr.iter().filter_map(|s| {
                    if s.get("kind")?.as_str()? != "ServiceAccount" {
                        return None;
                    }
                    let ns = s.get("namespace").map(json_string).unwrap_or_default();
                    let name = s.get("name").map(json_string)?;
                    Some(format!("{ns}:{name}"))
                })))
            }
            FieldKind::BindingRole => Some(FieldVal::One(
                self.request_raw(&["roleRef", "name"])?.into(),
            )),
            FieldKind::BindingSubjectHasName => Some(FieldVal::One("true".into())),
            FieldKind::ConfigmapObj => Some(FieldVal::One(self.request_raw(&["data"])?.into())),
            FieldKind::Pod(set, prop, idx) => self.container_prop(*set, *prop, *idx, compat),
            FieldKind::FirstContainerImage | FieldKind::FirstContainerRepository => {
                let repo = matches!(kind, FieldKind::FirstContainerRepository);
                let prop = if repo {
                    ContainerProp::ImageRepository
                } else {
                    ContainerProp::Image
                };
                match self.container_prop(ContainerSet::Containers, prop, Some(0), compat)? {
                    FieldVal::Many(mut v) if !v.is_empty() => Some(FieldVal::One(v.swap_remove(0))),
                    _ => None,
                }
            }
            FieldKind::AnyContainerPrivileged => {
                let arr = self.pod_spec()?.get("containers")?.as_array()?;
                let any = arr.iter().any(|c| {
                    c.pointer("/securityContext/privileged")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                });
                Some(FieldVal::One(if any { "true" } else { "false" }.into()))
            }
            FieldKind::PodSpec(path) if !kind.is_list() => {
                let mut full = vec!["spec"];
                full.extend_from_slice(path);
                Some(FieldVal::One(self.request_raw(&full)?.into()))
            }
            FieldKind::PodSpec(path) => {
                let mut v = self.pod_spec()?;
                for k in path.iter() {
                    v = v.get(k)?;
                }
                if kind.is_list() {
                    Some(many(v.as_array()?.iter().map(json_string)))
                } else {
                    Some(FieldVal::One(json_string(v).into()))
                }
            }
            FieldKind::RoleRules => {
                let arr = self.request_object()?.get("rules")?.as_array()?;
                Some(many(arr.iter().map(json_string)))
            }
            FieldKind::RoleRulesField(key, idx) => {
                let arr = indexed(self.request_object()?.get("rules")?.as_array()?, *idx)?;
                let mut out = Vec::new();
                for rule in arr {
                    if let Some(Value::Array(items)) = rule.get(*key) {
                        out.extend(items.iter().filter(|v| !v.is_null()).map(json_string));
                    }
                }
                Some(many(out.into_iter()))
            }
            FieldKind::ServiceType => {
                Some(FieldVal::One(self.request_raw(&["spec", "type"])?.into()))
            }
            FieldKind::ServicePorts(idx) => {
                let arr = indexed(self.pod_spec()?.get("ports")?.as_array()?, *idx)?;
                Some(many(arr.iter().map(json_string)))
            }
            FieldKind::VolumeHostpathMatch(arg) => {
                let vols = self.pod_spec()?.get("volumes")?.as_array()?;
                let paths = strict_values(vols, &["hostPath", "path"], compat)?;
                let hit = match arg.strip_suffix('*') {
                    Some(prefix) => paths.iter().any(|p| p.starts_with(prefix) || p == arg),
                    None => paths.iter().any(|p| p == arg),
                };
                Some(FieldVal::One(if hit { "true" } else { "false" }.into()))
            }
            FieldKind::VolumesHostpath(idx) => {
                let vols = indexed(self.pod_spec()?.get("volumes")?.as_array()?, *idx)?;
                Some(many(
                    strict_values(vols, &["hostPath", "path"], compat)?.into_iter(),
                ))
            }
            FieldKind::VolumesFlexDriver(idx) => {
                let vols = indexed(self.pod_spec()?.get("volumes")?.as_array()?, *idx)?;
                Some(many(
                    strict_values(vols, &["flexVolume", "driver"], compat)?.into_iter(),
                ))
            }
            FieldKind::VolumesType(idx) => {
                let vols = indexed(self.pod_spec()?.get("volumes")?.as_array()?, *idx)?;
                let mut out = Vec::new();
                for v in vols {
                    let obj = v.as_object()?;
                    out.extend(obj.keys().filter(|k| *k != "name").cloned());
                }
                Some(many(out.into_iter()))
            }
            FieldKind::RespName => {
                let raw = self.event.doc().response_object.as_ref()?;
                let v = raw_path(raw.get(), &["metadata", "name"])?;
                Some(FieldVal::One(raw_string(v).into()))
            }
            FieldKind::ResponseCode => {
                let code = doc.response_status.as_ref()?.code?;
                Some(FieldVal::One(code.to_string().into()))
            }
            FieldKind::ResponseReason => {
                let st = self.event.doc().response_status.as_ref()?;
                let v = raw_path(st.raw.get(), &["reason"])?;
                Some(FieldVal::One(raw_string(v).into()))
            }
            FieldKind::UserAgent => nonempty(&doc.user_agent),
            FieldKind::SourceIps(idx) => {
                if doc.source_ips.is_empty() {
                    return None;
                }
                let ips = indexed(&doc.source_ips, *idx)?;
                Some(FieldVal::Many(
                    ips.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
                ))
            }
            FieldKind::ClusterName => self.cluster.map(|c| FieldVal::One(Cow::Borrowed(c))),
            FieldKind::JsonValue(path) => self.json_value(path).map(FieldVal::One),
            FieldKind::JsonObj => {
                let v = self.whole()?;
                serde_json::to_string_pretty(v)
                    .ok()
                    .map(|s| FieldVal::One(s.into()))
            }
            FieldKind::RawTime => {
                let ns = i128::from(self.event_time().micros()) * 1000;
                Some(FieldVal::One(ns.to_string().into()))
            }
            FieldKind::Time => {
                let t = self.event_time();
                let mut s = t.to_string();
                if s.ends_with('Z') {
                    s.pop();
                    s.push_str("000Z");
                }
                Some(FieldVal::One(s.into()))
            }
            FieldKind::EvtSource => Some(FieldVal::One(Cow::Borrowed("k8s_audit"))),
        }
    }

    /// `jevt.value[/a/b]` with fast paths for the typed top-level fields.
    fn json_value(&self, path: &[String]) -> Option<Cow<'e, str>> {
        let doc = self.event.doc();
        let first = path.first()?.as_str();
        if path.len() == 1 {
            match first {
                "stage" => return Some(Cow::Borrowed(self.event.stage().as_str())),
                "verb" => return Some(Cow::Borrowed(&doc.verb)),
                "auditID" => return Some(Cow::Borrowed(&doc.audit_id)),
                "requestURI" => return Some(Cow::Borrowed(&doc.request_uri)),
                "level" => return Some(Cow::Borrowed(doc.level.as_str())),
                _ => {}
            }
        }
        // Every other path is looked up in the raw JSON, skipping what is
        // not on the way: no tree of the event (or of its bodies) is built,
        // so a rule reading `/sourceIPs/0` costs a scan, not a parse.
        let (raw, rest) = match first {
            "requestObject" => (doc.request_object.as_ref()?.get(), &path[1..]),
            "responseObject" => (doc.response_object.as_ref()?.get(), &path[1..]),
            "annotations" if path.len() == 2 => {
                return doc
                    .annotations
                    .get(&path[1])
                    .map(|s| Cow::Borrowed(s.as_str()))
            }
            _ => (std::str::from_utf8(self.event.bytes()).ok()?, path),
        };
        let keys: Vec<&str> = rest.iter().map(String::as_str).collect();
        if keys.is_empty() {
            let v: &RawValue = serde_json::from_str(raw).ok()?;
            return Some(Cow::Owned(raw_string(v)));
        }
        raw_path(raw, &keys).map(|v| Cow::Owned(raw_string(v)))
    }

    fn container_prop(
        &self,
        set: ContainerSet,
        prop: ContainerProp,
        idx: Option<usize>,
        compat: bool,
    ) -> Option<FieldVal<'e>> {
        let spec = self.pod_spec()?;
        let arr = indexed(spec.get(set.key())?.as_array()?, idx)?;
        let sc = |k: &'static str| -> [&'static str; 2] { ["securityContext", k] };
        let values: Vec<String> = match prop {
            ContainerProp::Name => strict_values(arr, &["name"], compat)?,
            ContainerProp::Image => strict_values(arr, &["image"], compat)?,
            ContainerProp::ImageRepository => strict_values(arr, &["image"], compat)?
                .into_iter()
                .map(|img| image_repository(&img).to_string())
                .collect(),
            ContainerProp::Command => strict_values(arr, &["command"], compat)?,
            ContainerProp::Args => strict_values(arr, &["args"], compat)?,
            ContainerProp::Privileged => arr
                .iter()
                .filter_map(|c| get_path(c, &sc("privileged")))
                .map(json_string)
                .collect(),
            ContainerProp::AllowPrivilegeEscalation => {
                strict_values(arr, &sc("allowPrivilegeEscalation"), compat)?
            }
            ContainerProp::ReadOnlyFs => strict_values(arr, &sc("readOnlyRootFilesystem"), compat)?,
            ContainerProp::RunAsUser => strict_values(arr, &sc("runAsUser"), compat)?,
            ContainerProp::RunAsGroup => strict_values(arr, &sc("runAsGroup"), compat)?,
            ContainerProp::ProcMount => strict_values(arr, &sc("procMount"), compat)?,
            ContainerProp::EffRunAsUser | ContainerProp::EffRunAsGroup => {
                let key = if prop == ContainerProp::EffRunAsUser {
                    "runAsUser"
                } else {
                    "runAsGroup"
                };
                // The plugin reads spec.<key> and container.<key> (not
                // securityContext); with compat off the securityContext is used.
                let sc_key = ["securityContext", key];
                let at: &[&str] = if compat { &sc_key[1..] } else { &sc_key };
                let default = get_path(spec, at)
                    .map(json_string)
                    .unwrap_or_else(|| "0".into());
                arr.iter()
                    .map(|c| {
                        get_path(c, at)
                            .map(json_string)
                            .unwrap_or_else(|| default.clone())
                    })
                    .collect()
            }
            ContainerProp::AddCapabilities => {
                if compat {
                    strict_values(arr, &["securityContext", "capabilities", "add"], compat)?
                } else {
                    let mut out = Vec::new();
                    for c in arr {
                        if let Some(Value::Array(caps)) =
                            get_path(c, &["securityContext", "capabilities", "add"])
                        {
                            out.extend(caps.iter().map(json_string));
                        }
                    }
                    out
                }
            }
            ContainerProp::HostPort => {
                let mut out = Vec::new();
                for c in arr {
                    let ports = match c.get("ports") {
                        Some(Value::Array(p)) => p,
                        _ if compat => return None,
                        _ => continue,
                    };
                    for p in ports {
                        if let Some(v) = p.get("hostPort").or_else(|| p.get("containerPort")) {
                            out.push(json_string(v));
                        }
                    }
                }
                out
            }
        };
        Some(many(values.into_iter()))
    }
}

fn many<'e>(it: impl Iterator<Item = String>) -> FieldVal<'e> {
    FieldVal::Many(it.map(Cow::Owned).collect())
}

fn indexed<T>(arr: &[T], idx: Option<usize>) -> Option<&[T]> {
    match idx {
        None => Some(arr),
        Some(i) => arr.get(i..i.checked_add(1)?),
    }
}

fn get_path<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    let mut v = v;
    for k in path {
        v = v.get(k)?;
    }
    Some(v)
}

/// One value per element; an element without the key makes the whole field
/// unavailable, as in the plugin (with `compat` off it is skipped instead).
fn strict_values(arr: &[Value], path: &[&str], compat: bool) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(arr.len());
    for el in arr {
        match get_path(el, path) {
            Some(v) if !v.is_null() => out.push(json_string(v)),
            _ if compat => return None,
            _ => {}
        }
    }
    Some(out)
}

/// A JSON value as the plugins print it: strings raw, anything else compact JSON.
pub(crate) fn json_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The repository part of an image reference, as the plugin computes it:
/// everything before the first `:`, then before the first `@`.
pub(crate) fn image_repository(image: &str) -> &str {
    let s = image.split(':').next().unwrap_or(image);
    s.split('@').next().unwrap_or(s)
}

/// The first value of a query parameter, percent-decoded as Go's url.ParseQuery does.
fn uri_param(uri: &str, key: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k)? == key {
            return percent_decode(v);
        }
    }
    None
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Finds `path` inside raw JSON without building a tree: each segment is an
/// object key, or an array index when it is a number and the value there
/// is an array. Other members are skipped unparsed, so a lookup allocates
/// nothing.
pub(crate) fn raw_path<'a>(raw: &'a str, path: &[&str]) -> Option<&'a RawValue> {
    let mut cur: &'a str = raw;
    let mut found: Option<&'a RawValue> = None;
    for key in path {
        let mut de = serde_json::Deserializer::from_str(cur);
        let v = serde::Deserializer::deserialize_any(&mut de, KeyLookup(key)).ok()??;
        cur = v.get();
        found = Some(v);
    }
    found
}

struct KeyLookup<'k>(&'k str);

struct KeyIs<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyLookup<'_> {
    type Value = Option<&'de RawValue>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(hit) = m.next_key_seed(KeyIs(self.0))? {
            if hit && found.is_none() {
                found = Some(m.next_value::<&'de RawValue>()?);
            } else {
                m.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        let want = self.0.parse::<usize>().ok();
        let mut found = None;
        let mut i = 0usize;
        loop {
            if Some(i) == want && found.is_none() {
                match s.next_element::<&'de RawValue>()? {
                    Some(v) => found = Some(v),
                    None => break,
                }
            } else if s.next_element::<serde::de::IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A raw JSON value as the plugins print it: strings unescaped, anything
/// else as compact JSON.
pub(crate) fn raw_string(v: &RawValue) -> String {
    let t = v.get();
    if t.starts_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(t) {
            return s;
        }
    }
    let mut out = Vec::with_capacity(t.len());
    kaudit_event::json::write_compact(&mut out, t.as_bytes());
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_is_cut_at_tag_and_digest() {
        assert_eq!(image_repository("nginx:1.14"), "nginx");
        assert_eq!(
            image_repository("docker.io/x/y@sha256:abc"),
            "docker.io/x/y"
        );
        assert_eq!(image_repository("plain"), "plain");
    }

    #[test]
    fn uri_params_decode() {
        assert_eq!(
            uri_param("/api/v1/x/exec?command=ls&command=-l&stdin=true", "command").as_deref(),
            Some("ls")
        );
        assert_eq!(
            uri_param("/a?c=%2Fbin%2Fsh", "c").as_deref(),
            Some("/bin/sh")
        );
        assert_eq!(uri_param("/a", "c"), None);
    }

    #[test]
    fn pointer_unescapes() {
        assert_eq!(
            parse_pointer("/annotations/authorization.k8s.io~1decision"),
            vec!["annotations", "authorization.k8s.io/decision"]
        );
        assert_eq!(parse_pointer("/a~1~0b"), vec!["a/~b"]);
    }

    #[test]
    fn raw_lookup_skips_without_parsing() {
        let raw = r#"{"a":[1,{"b":2}],"spec":{"x":{"y":"v\u0041"},"type":"NodePort","n":true},"data":{"k":"v"}}"#;
        assert_eq!(
            raw_path(raw, &["spec", "type"]).map(raw_string).as_deref(),
            Some("NodePort")
        );
        assert_eq!(
            raw_path(raw, &["spec", "x", "y"])
                .map(raw_string)
                .as_deref(),
            Some("vA")
        );
        assert_eq!(
            raw_path(raw, &["spec", "n"]).map(raw_string).as_deref(),
            Some("true")
        );
        assert_eq!(
            raw_path(raw, &["data"]).map(raw_string).as_deref(),
            Some(r#"{"k":"v"}"#)
        );
        assert!(raw_path(raw, &["a", "b"]).is_none());
        assert!(raw_path(raw, &["spec", "type", "z"]).is_none());
        assert!(raw_path(raw, &["missing"]).is_none());
        assert!(raw_path("not json", &["a"]).is_none());
        // Numbers index arrays (and stay keys on objects).
        assert_eq!(
            raw_path(raw, &["a", "0"]).map(raw_string).as_deref(),
            Some("1")
        );
        assert_eq!(
            raw_path(raw, &["a", "1", "b"]).map(raw_string).as_deref(),
            Some("2")
        );
        assert!(raw_path(raw, &["a", "2"]).is_none());
        let numeric_key = r#"{"0":"zero","x":[]}"#;
        assert_eq!(
            raw_path(numeric_key, &["0"]).map(raw_string).as_deref(),
            Some("zero")
        );
        assert!(raw_path(numeric_key, &["x", "0"]).is_none());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(resolve("proc.name", None).is_err());
        assert!(resolve("ka.user.name", Some("x")).is_err());
        assert!(resolve("ka.uri.param", None).is_err());
        assert!(resolve("ka.req.pod.containers.image", Some("1")).is_ok());
    }
}
