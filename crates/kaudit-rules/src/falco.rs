//! Falco rules files: loading (lists, macros, rules, `append`, `override`,
//! `enabled`, exceptions, version requirements) and compilation into
//! [`crate::Engine`] rules.
//!
//! Loading collects definitions file after file, as Falco does; compilation
//! happens once at the end, so a macro or list redefined by a later file
//! (the usual way to customise a ruleset) applies to every rule.

use crate::expr::{compile, flatten, Node, Slots};
use crate::output::Template;
use crate::parse::{parse_condition, Ast, ListItem, Op, Rhs};
use crate::{CompileError, LoadError, Priority};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The Falco engine version kaudit's rule language corresponds to; files
/// requiring a newer one are refused.
pub const ENGINE_VERSION: (u64, u64, u64) = (0, 43, 0);
/// Plugin versions whose fields kaudit provides.
pub const PLUGIN_VERSIONS: &[(&str, (u64, u64, u64))] = &[
    ("k8saudit", (0, 18, 0)),
    ("k8saudit-eks", (0, 12, 0)),
    ("k8saudit-aks", (0, 6, 0)),
    ("k8saudit-gke", (0, 9, 0)),
    ("k8saudit-ovh", (0, 6, 0)),
    ("json", (0, 7, 3)),
];
/// The event source kaudit evaluates; rules of other sources load and are skipped.
pub const SOURCE: &str = "k8s_audit";
/// Largest rules file accepted.
pub const MAX_FILE_BYTES: usize = 16 << 20;
/// Deepest macro/list nesting followed before reporting a cycle.
const MAX_EXPANSION_DEPTH: usize = 64;

/// Where a definition came from.
#[derive(Clone, Debug)]
pub(crate) struct Loc {
    pub(crate) file: Arc<str>,
    pub(crate) line: Option<u64>,
}

impl Loc {
    pub(crate) fn err(&self, item: Option<&str>, reason: impl Into<String>) -> LoadError {
        LoadError::new(&*self.file, self.line, item.map(str::to_string), reason)
    }

    /// A load error whose reason is `source`'s text, keeping `source`.
    pub(crate) fn caused(
        &self,
        item: Option<&str>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> LoadError {
        self.err(item, source.to_string()).with_source(source)
    }
}

#[derive(Clone, Debug)]
struct ListDef {
    items: Vec<String>,
}

#[derive(Clone, Debug)]
struct MacroDef {
    condition: String,
    loc: Loc,
}

#[derive(Clone, Debug)]
struct Exception {
    name: String,
    fields: Vec<String>,
    single_field: bool,
    comps: Vec<String>,
    values: Vec<Value>,
}

#[derive(Clone, Debug)]
struct RuleDef {
    name: String,
    condition: String,
    output: String,
    desc: String,
    priority: Priority,
    tags: Vec<String>,
    source: String,
    enabled: bool,
    exceptions: Vec<Exception>,
    loc: Loc,
}

/// Definitions gathered from all files, before compilation.
#[derive(Default, Debug)]
pub(crate) struct Defs {
    lists: HashMap<String, ListDef>,
    macros: HashMap<String, MacroDef>,
    rules: Vec<RuleDef>,
    rule_index: HashMap<String, usize>,
    pub(crate) warnings: Vec<String>,
}

/// A compiled Falco rule.
#[derive(Debug, Clone)]
pub(crate) struct CompiledFalco {
    pub(crate) name: String,
    pub(crate) desc: String,
    pub(crate) priority: Priority,
    pub(crate) tags: Vec<String>,
    /// Index of the condition's root in the engine's node array.
    pub(crate) start: usize,
    pub(crate) ast: Ast,
    pub(crate) output: Template,
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Line numbers of the top-level sequence items (`- ` at column 0).
fn item_lines(text: &str) -> Vec<u64> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            l.starts_with('-') && (l.len() == 1 || l.as_bytes()[1].is_ascii_whitespace())
        })
        .filter(|(_, l)| !l.starts_with("---"))
        .map(|(i, _)| i as u64 + 1)
        .collect()
}

fn parse_version(v: &Value) -> Option<(u64, u64, u64)> {
    match v {
        // A bare number is the old integer engine version N = 0.N.0.
        Value::Number(n) => n.as_u64().map(|n| (0, n, 0)),
        Value::String(s) => {
            let mut it = s.trim().trim_start_matches('v').split('.');
            let a = it.next()?.parse().ok()?;
            let b = it.next().map_or(Some(0), |x| x.parse().ok())?;
            let c = it
                .next()
                .map_or(Some(0), |x| x.split(['-', '+']).next()?.parse().ok())?;
            if s.trim().split('.').count() == 1 {
                return Some((0, a, 0));
            }
            Some((a, b, c))
        }
        _ => None,
    }
}

fn fmt_version(v: (u64, u64, u64)) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

fn get_str(map: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(scalar_string)
}

fn get_bool(
    map: &serde_json::Map<String, Value>,
    key: &str,
    loc: &Loc,
    item: &str,
) -> Result<Option<bool>, LoadError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(other) => Err(loc.err(
            Some(item),
            format!("'{key}' must be true or false, got {other}"),
        )),
    }
}

fn string_list(v: &Value, loc: &Loc, item: &str, key: &str) -> Result<Vec<String>, LoadError> {
    match v {
        Value::Null => Ok(vec![]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                scalar_string(x).ok_or_else(|| {
                    loc.err(
                        Some(item),
                        format!("'{key}' items must be strings, got {x}"),
                    )
                })
            })
            .collect(),
        other => Err(loc.err(Some(item), format!("'{key}' must be a list, got {other}"))),
    }
}

/// What an `override:` mapping asks for one key.
fn override_mode(
    map: &serde_json::Map<String, Value>,
    key: &str,
    loc: &Loc,
    item: &str,
) -> Result<Option<bool>, LoadError> {
    let Some(Value::Object(ov)) = map.get("override") else {
        return Ok(None);
    };
    match ov.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some("append") => Ok(Some(true)),
        Some("replace") => Ok(Some(false)),
        Some(other) => Err(loc.err(
            Some(item),
            format!("override of '{key}' must be 'append' or 'replace', got {other:?}"),
        )),
    }
}

impl Defs {
    /// Loads one rules file on top of what is already loaded.
    pub(crate) fn load(&mut self, file: &str, text: &str) -> Result<(), LoadError> {
        let file: Arc<str> = Arc::from(file);
        let whole = Loc {
            file: file.clone(),
            line: None,
        };
        if text.len() > MAX_FILE_BYTES {
            return Err(whole.err(
                None,
                format!("rules file larger than {MAX_FILE_BYTES} bytes"),
            ));
        }
        let doc: Value = serde_saphyr::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            LoadError::new(&*file, line, None, format!("invalid YAML: {e}")).with_source(e)
        })?;
        let items = match doc {
            Value::Null => return Ok(()),
            Value::Array(a) => a,
            other => {
                return Err(whole.err(
                    None,
                    format!(
                        "a rules file must be a YAML list of items, got {}",
                        type_name(&other)
                    ),
                ))
            }
        };
        let lines = item_lines(text);
        let lines_ok = lines.len() == items.len();
        for (i, item) in items.into_iter().enumerate() {
            let loc = Loc {
                file: file.clone(),
                line: if lines_ok {
                    lines.get(i).copied()
                } else {
                    None
                },
            };
            self.load_item(item, &loc)?;
        }
        Ok(())
    }

    fn load_item(&mut self, item: Value, loc: &Loc) -> Result<(), LoadError> {
        let map = match item {
            Value::Null => return Ok(()),
            Value::Object(m) => m,
            other => {
                return Err(loc.err(
                    None,
                    format!(
                        "rules file item must be a mapping, got {}",
                        type_name(&other)
                    ),
                ))
            }
        };
        if let Some(v) = map.get("required_engine_version") {
            let want = parse_version(v).ok_or_else(|| {
                loc.err(
                    None,
                    format!("required_engine_version {v} is not a version"),
                )
            })?;
            if want > ENGINE_VERSION {
                return Err(loc.err(
                    None,
                    format!(
                        "rules require engine version {}, kaudit implements {}",
                        fmt_version(want),
                        fmt_version(ENGINE_VERSION)
                    ),
                ));
            }
            return Ok(());
        }
        if let Some(v) = map.get("required_plugin_versions") {
            return self.check_plugins(v, loc);
        }
        if let Some(name) = map.get("list") {
            let name =
                scalar_string(name).ok_or_else(|| loc.err(None, "list name must be a string"))?;
            return self.load_list(name, &map, loc);
        }
        if let Some(name) = map.get("macro") {
            let name =
                scalar_string(name).ok_or_else(|| loc.err(None, "macro name must be a string"))?;
            return self.load_macro(name, &map, loc);
        }
        if let Some(name) = map.get("rule") {
            let name =
                scalar_string(name).ok_or_else(|| loc.err(None, "rule name must be a string"))?;
            return self.load_rule(name.trim().to_string(), &map, loc);
        }
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        Err(loc.err(
            None,
            format!(
                "unknown item with keys {keys:?}: expected list, macro, rule, required_engine_version or required_plugin_versions"
            ),
        ))
    }

    fn check_plugins(&mut self, v: &Value, loc: &Loc) -> Result<(), LoadError> {
        let Value::Array(reqs) = v else {
            return Err(loc.err(None, "required_plugin_versions must be a list"));
        };
        for r in reqs {
            let mut options = vec![r];
            if let Some(Value::Array(alts)) = r.get("alternatives") {
                options.extend(alts.iter());
            }
            let mut known = false;
            let mut satisfied = false;
            let mut wanted = Vec::new();
            for o in options {
                let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
                let version = o
                    .get("version")
                    .and_then(parse_version)
                    .unwrap_or((0, 0, 0));
                wanted.push(format!("{name} {}", fmt_version(version)));
                if let Some((_, have)) = PLUGIN_VERSIONS.iter().find(|(n, _)| *n == name) {
                    known = true;
                    if version <= *have {
                        satisfied = true;
                    }
                }
            }
            if known && !satisfied {
                return Err(loc.err(
                    None,
                    format!(
                        "rules require plugin {}, newer than the fields kaudit implements",
                        wanted.join(" or ")
                    ),
                ));
            }
            if !known {
                self.warnings.push(format!(
                    "{}:{}: rules require plugin {}, which kaudit does not provide; rules using its source are skipped",
                    loc.file,
                    loc.line.unwrap_or(0),
                    wanted.join(" or ")
                ));
            }
        }
        Ok(())
    }

    fn load_list(
        &mut self,
        name: String,
        map: &serde_json::Map<String, Value>,
        loc: &Loc,
    ) -> Result<(), LoadError> {
        let item = format!("list {name}");
        let items = string_list(
            map.get("items").unwrap_or(&Value::Null),
            loc,
            &item,
            "items",
        )?;
        let append = match override_mode(map, "items", loc, &item)? {
            Some(a) => a,
            None => get_bool(map, "append", loc, &item)?.unwrap_or(false),
        };
        let has_override = map.contains_key("override");
        if append || has_override {
            let Some(existing) = self.lists.get_mut(&name) else {
                return Err(loc.err(
                    Some(&item),
                    format!("list {name} has 'append'/'override' but no list of that name was defined before"),
                ));
            };
            if append {
                existing.items.extend(items);
            } else {
                existing.items = items;
            }
        } else {
            self.lists.insert(name, ListDef { items });
        }
        Ok(())
    }

    fn load_macro(
        &mut self,
        name: String,
        map: &serde_json::Map<String, Value>,
        loc: &Loc,
    ) -> Result<(), LoadError> {
        let item = format!("macro {name}");
        let cond = get_str(map, "condition")
            .ok_or_else(|| loc.err(Some(&item), "macro has no 'condition'"))?;
        let append = match override_mode(map, "condition", loc, &item)? {
            Some(a) => a,
            None => get_bool(map, "append", loc, &item)?.unwrap_or(false),
        };
        if append || map.contains_key("override") {
            let Some(existing) = self.macros.get_mut(&name) else {
                return Err(loc.err(
                    Some(&item),
                    format!("macro {name} has 'append'/'override' but no macro of that name was defined before"),
                ));
            };
            if append {
                existing.condition = format!("{} {}", existing.condition, cond);
            } else {
                existing.condition = cond;
            }
            existing.loc = loc.clone();
        } else {
            self.macros.insert(
                name,
                MacroDef {
                    condition: cond,
                    loc: loc.clone(),
                },
            );
        }
        Ok(())
    }

    fn load_rule(
        &mut self,
        name: String,
        map: &serde_json::Map<String, Value>,
        loc: &Loc,
    ) -> Result<(), LoadError> {
        let item = format!("rule {name}");
        let append = get_bool(map, "append", loc, &item)?.unwrap_or(false);
        let has_override = map.contains_key("override");
        let only_enabled =
            map.keys().all(|k| k == "rule" || k == "enabled") && map.contains_key("enabled");
        if append || has_override || only_enabled {
            let Some(&idx) = self.rule_index.get(&name) else {
                if only_enabled {
                    self.warnings.push(format!(
                        "{}:{}: 'enabled' set on rule {name:?}, which is not defined; ignored",
                        loc.file,
                        loc.line.unwrap_or(0)
                    ));
                    return Ok(());
                }
                return Err(loc.err(
                    Some(&item),
                    format!("rule {name:?} has 'append'/'override' but no rule of that name was defined before"),
                ));
            };
            let exceptions = parse_exceptions(map, loc, &item)?;
            let rule = &mut self.rules[idx];
            if let Some(e) = get_bool(map, "enabled", loc, &item)? {
                rule.enabled = e;
            }
            let mode = |key: &str| -> Result<Option<bool>, LoadError> {
                if has_override {
                    override_mode(map, key, loc, &item)
                } else if append && map.contains_key(key) {
                    Ok(Some(true))
                } else {
                    Ok(None)
                }
            };
            for key in ["condition", "output", "desc"] {
                let Some(m) = mode(key)? else { continue };
                let v = get_str(map, key).ok_or_else(|| {
                    loc.err(Some(&item), format!("override of '{key}' without a value"))
                })?;
                let target = match key {
                    "condition" => &mut rule.condition,
                    "output" => &mut rule.output,
                    _ => &mut rule.desc,
                };
                if m {
                    *target = format!("{} {}", target, v);
                } else {
                    *target = v;
                }
            }
            if let Some(m) = mode("tags")? {
                let t = string_list(map.get("tags").unwrap_or(&Value::Null), loc, &item, "tags")?;
                if m {
                    rule.tags.extend(t);
                } else {
                    rule.tags = t;
                }
            }
            if let Some(m) = mode("exceptions")? {
                if m {
                    for ex in exceptions {
                        match rule.exceptions.iter_mut().find(|e| e.name == ex.name) {
                            Some(e) => e.values.extend(ex.values),
                            None => rule.exceptions.push(ex),
                        }
                    }
                } else {
                    rule.exceptions = exceptions;
                }
            }
            if let Some(false) = mode("priority")? {
                let p = get_str(map, "priority").unwrap_or_default();
                rule.priority = p.parse().map_err(|e| loc.caused(Some(&item), e))?;
            }
            if has_override {
                if let Some(false) = override_mode(map, "enabled", loc, &item)? {
                    rule.enabled = get_bool(map, "enabled", loc, &item)?.unwrap_or(true);
                }
            }
            return Ok(());
        }
        let need = |k: &str| {
            get_str(map, k).ok_or_else(|| loc.err(Some(&item), format!("rule has no '{k}'")))
        };
        let condition = need("condition")?;
        let output = need("output")?;
        let desc = get_str(map, "desc").unwrap_or_default();
        let priority: Priority = need("priority")?
            .parse()
            .map_err(|e| loc.caused(Some(&item), e))?;
        let def = RuleDef {
            name: name.clone(),
            condition,
            output,
            desc,
            priority,
            tags: string_list(map.get("tags").unwrap_or(&Value::Null), loc, &item, "tags")?,
            source: get_str(map, "source").unwrap_or_else(|| "syscall".into()),
            enabled: get_bool(map, "enabled", loc, &item)?.unwrap_or(true),
            exceptions: parse_exceptions(map, loc, &item)?,
            loc: loc.clone(),
        };
        match self.rule_index.get(&name) {
            Some(&i) => self.rules[i] = def,
            None => {
                self.rule_index.insert(name, self.rules.len());
                self.rules.push(def);
            }
        }
        Ok(())
    }

    /// A list's items with nested list names expanded.
    fn expand_list(
        &self,
        name: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) -> Result<(), CompileError> {
        if depth > MAX_EXPANSION_DEPTH {
            return Err(CompileError::ListTooDeep(name.to_string()));
        }
        if let Some(l) = self.lists.get(name) {
            for it in &l.items {
                if self.lists.contains_key(it) {
                    self.expand_list(it, depth + 1, out)?;
                } else {
                    out.push(it.clone());
                }
            }
        }
        Ok(())
    }

    fn expand(
        &self,
        ast: &Ast,
        depth: usize,
        parsed: &mut HashMap<String, Ast>,
        stack: &mut Vec<String>,
    ) -> Result<Ast, (Option<Loc>, CompileError)> {
        if depth > MAX_EXPANSION_DEPTH * 4 {
            return Err((None, CompileError::TooDeep));
        }
        Ok(match ast {
            Ast::And(v) => Ast::And(
                v.iter()
                    .map(|a| self.expand(a, depth + 1, parsed, stack))
                    .collect::<Result<_, _>>()?,
            ),
            Ast::Or(v) => Ast::Or(
                v.iter()
                    .map(|a| self.expand(a, depth + 1, parsed, stack))
                    .collect::<Result<_, _>>()?,
            ),
            Ast::Not(a) => Ast::Not(Box::new(self.expand(a, depth + 1, parsed, stack)?)),
            Ast::Macro(name) => {
                let Some(m) = self.macros.get(name) else {
                    return Err((None, CompileError::UnknownMacro(name.clone())));
                };
                if stack.contains(name) {
                    return Err((Some(m.loc.clone()), CompileError::MacroCycle(name.clone())));
                }
                if !parsed.contains_key(name) {
                    let ast = parse_condition(&m.condition).map_err(|e| {
                        (
                            Some(m.loc.clone()),
                            CompileError::MacroParse {
                                name: name.clone(),
                                error: e,
                            },
                        )
                    })?;
                    parsed.insert(name.clone(), ast);
                }
                let body = parsed.get(name).cloned().unwrap_or(Ast::And(vec![]));
                stack.push(name.clone());
                let r = self
                    .expand(&body, depth + 1, parsed, stack)
                    .map_err(|(l, e)| (l.or_else(|| Some(m.loc.clone())), e));
                stack.pop();
                r?
            }
            Ast::Check {
                field,
                arg,
                op,
                rhs,
            } => {
                let rhs = match rhs {
                    Rhs::List(items) if op.takes_list() => {
                        let mut out = Vec::new();
                        for it in items {
                            if !it.quoted && self.lists.contains_key(&it.text) {
                                let mut expanded = Vec::new();
                                self.expand_list(&it.text, 0, &mut expanded)
                                    .map_err(|e| (None, e))?;
                                out.extend(
                                    expanded
                                        .into_iter()
                                        .map(|text| ListItem { text, quoted: true }),
                                );
                            } else {
                                out.push(it.clone());
                            }
                        }
                        Rhs::List(out)
                    }
                    other => other.clone(),
                };
                Ast::Check {
                    field: field.clone(),
                    arg: arg.clone(),
                    op: *op,
                    rhs,
                }
            }
        })
    }

    /// Compiles every enabled `k8s_audit` rule, in load order.
    pub(crate) fn compile(
        &mut self,
        slots: &mut Slots,
        nodes: &mut Vec<Node>,
    ) -> Result<Vec<CompiledFalco>, LoadError> {
        let mut parsed = HashMap::new();
        let mut out = Vec::new();
        let mut skipped_sources: HashSet<String> = HashSet::new();
        for rule in &self.rules {
            if rule.source != SOURCE {
                skipped_sources.insert(rule.source.clone());
                continue;
            }
            if !rule.enabled {
                continue;
            }
            let item = format!("rule {}", rule.name);
            let mut ast = parse_condition(&rule.condition).map_err(|e| {
                rule.loc
                    .caused(Some(&item), CompileError::ConditionParse(e))
            })?;
            if let Some(ex) =
                exceptions_ast(&rule.exceptions).map_err(|e| rule.loc.caused(Some(&item), e))?
            {
                ast = Ast::And(vec![ast, Ast::Not(Box::new(ex))]);
            }
            let mut stack = Vec::new();
            let ast = self
                .expand(&ast, 0, &mut parsed, &mut stack)
                .map_err(|(l, e)| {
                    let mut err = rule.loc.caused(Some(&item), e);
                    if let Some(l) = l {
                        err.reason = format!(
                            "{} (macro defined at {}:{})",
                            err.reason,
                            l.file,
                            l.line.unwrap_or(0)
                        );
                    }
                    err
                })?;
            let expr = compile(&ast, slots).map_err(|e| rule.loc.caused(Some(&item), e))?;
            let output = Template::compile(&rule.output, slots)
                .map_err(|e| rule.loc.caused(Some(&item), e))?;
            out.push(CompiledFalco {
                name: rule.name.clone(),
                desc: rule.desc.clone(),
                priority: rule.priority,
                tags: rule.tags.clone(),
                start: flatten(&expr, nodes),
                ast,
                output,
            });
        }
        if !skipped_sources.is_empty() {
            let mut s: Vec<_> = skipped_sources.into_iter().collect();
            s.sort();
            self.warnings.push(format!(
                "rules of source(s) {} were loaded and skipped: kaudit evaluates source {SOURCE}",
                s.join(", ")
            ));
        }
        Ok(out)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn parse_exceptions(
    map: &serde_json::Map<String, Value>,
    loc: &Loc,
    item: &str,
) -> Result<Vec<Exception>, LoadError> {
    let Some(v) = map.get("exceptions") else {
        return Ok(vec![]);
    };
    let Value::Array(list) = v else {
        return Err(loc.err(Some(item), "'exceptions' must be a list"));
    };
    let mut out = Vec::new();
    for e in list {
        let Value::Object(m) = e else {
            return Err(loc.err(Some(item), "each exception must be a mapping"));
        };
        let name =
            get_str(m, "name").ok_or_else(|| loc.err(Some(item), "exception has no 'name'"))?;
        let (fields, single_field) = match m.get("fields") {
            Some(Value::String(s)) => (vec![s.clone()], true),
            Some(Value::Array(a)) => (
                a.iter().filter_map(scalar_string).collect::<Vec<_>>(),
                false,
            ),
            None | Some(Value::Null) => (vec![], false),
            Some(other) => {
                return Err(loc.err(
                    Some(item),
                    format!("exception {name}: 'fields' must be a string or list, got {other}"),
                ))
            }
        };
        let comps = match m.get("comps") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(scalar_string).collect(),
            _ => vec![],
        };
        let values = match m.get("values") {
            Some(Value::Array(a)) => a.clone(),
            None | Some(Value::Null) => vec![],
            Some(other) => {
                return Err(loc.err(
                    Some(item),
                    format!("exception {name}: 'values' must be a list, got {other}"),
                ))
            }
        };
        if !single_field && !comps.is_empty() && comps.len() != fields.len() {
            return Err(loc.err(
                Some(item),
                format!(
                    "exception {name}: {} fields but {} comps",
                    fields.len(),
                    comps.len()
                ),
            ));
        }
        out.push(Exception {
            name,
            fields,
            single_field,
            comps,
            values,
        });
    }
    Ok(out)
}

/// Builds `(ex1 or ex2 ...)` from a rule's exceptions, to be negated and
/// added to its condition; `None` when no exception has values.
fn exceptions_ast(exs: &[Exception]) -> Result<Option<Ast>, CompileError> {
    let mut alts = Vec::new();
    for ex in exs {
        if ex.values.is_empty() {
            continue;
        }
        if ex.single_field {
            let field = &ex.fields[0];
            let op_s = ex.comps.first().map(String::as_str).unwrap_or("in");
            let op = Op::parse(op_s).ok_or_else(|| CompileError::UnknownComp {
                exception: ex.name.clone(),
                comp: op_s.to_string(),
            })?;
            let items: Vec<ListItem> = ex
                .values
                .iter()
                .filter_map(scalar_string)
                .map(|t| ListItem {
                    text: t,
                    quoted: false,
                })
                .collect();
            alts.push(check(field, op, items));
            continue;
        }
        for value in &ex.values {
            let Value::Array(vals) = value else {
                return Err(CompileError::ExceptionValueNotList(ex.name.clone()));
            };
            if vals.len() != ex.fields.len() {
                return Err(CompileError::ExceptionArity {
                    exception: ex.name.clone(),
                    values: vals.len(),
                    fields: ex.fields.len(),
                });
            }
            let mut parts = Vec::new();
            for (i, (f, v)) in ex.fields.iter().zip(vals).enumerate() {
                let op_s = ex.comps.get(i).map(String::as_str).unwrap_or("=");
                let op = Op::parse(op_s).ok_or_else(|| CompileError::UnknownComp {
                    exception: ex.name.clone(),
                    comp: op_s.to_string(),
                })?;
                let items: Vec<ListItem> = match v {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(scalar_string)
                        .map(|t| ListItem {
                            text: t,
                            quoted: true,
                        })
                        .collect(),
                    other => scalar_string(other)
                        .map(|t| {
                            vec![ListItem {
                                text: t,
                                quoted: false,
                            }]
                        })
                        .unwrap_or_default(),
                };
                parts.push(check(f, op, items));
            }
            alts.push(Ast::And(parts));
        }
    }
    Ok(match alts.len() {
        0 => None,
        1 => alts.pop(),
        _ => Some(Ast::Or(alts)),
    })
}

fn check(field: &str, op: Op, items: Vec<ListItem>) -> Ast {
    let (field, arg) = match field.split_once('[') {
        Some((f, rest)) => (f.to_string(), Some(rest.trim_end_matches(']').to_string())),
        None => (field.to_string(), None),
    };
    let rhs = if op.takes_list() {
        Rhs::List(items)
    } else if op == Op::Exists {
        Rhs::None
    } else {
        Rhs::Single(items.into_iter().next().map(|i| i.text).unwrap_or_default())
    };
    Ast::Check {
        field,
        arg,
        op,
        rhs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version(&Value::from(15)), Some((0, 15, 0)));
        assert_eq!(parse_version(&Value::from("0.31.0")), Some((0, 31, 0)));
        assert_eq!(parse_version(&Value::from("2")), Some((0, 2, 0)));
        assert_eq!(parse_version(&Value::from("x")), None);
    }

    #[test]
    fn item_lines_skip_nested_and_doc_markers() {
        let t = "# c\n- list: a\n  items: [x]\n-\n- rule: b\n  condition: >\n    - not an item\n";
        assert_eq!(item_lines(t), vec![2, 4, 5]);
    }
}
