//! Compiled conditions: a tree of comparisons on field slots, evaluated with
//! Falco's missing-field semantics (a comparison on a missing field is false,
//! whatever the operator; only `not` turns it into true).

use crate::error::{CompileError, ValueError};
use crate::fields::{resolve, EventCtx, FieldKind, FieldVal};
use crate::parse::{Ast, Op, Rhs};
use std::collections::{HashMap, HashSet};

/// Field slots shared by every rule of an engine: one slot per distinct
/// (field, argument), so each is extracted at most once per event.
#[derive(Default, Debug, Clone)]
pub(crate) struct Slots {
    pub(crate) kinds: Vec<FieldKind>,
    index: HashMap<FieldKind, usize>,
    /// Distinct comparisons (field, operator, value), so that one repeated in
    /// many rules (`kevt`, `kcreate`, ...) is evaluated once per event.
    cmps: HashMap<String, usize>,
    /// The comparisons themselves, indexed by id.
    pub(crate) defs: Vec<CmpDef>,
}

/// One distinct comparison.
#[derive(Debug, Clone)]
pub(crate) struct CmpDef {
    slot: usize,
    list: bool,
    op: Op,
    value: Value,
}

/// One node of a flattened condition: rules are stored as contiguous node
/// runs (pre-order, each node knowing its subtree length) for cache locality.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    kind: NodeKind,
    /// Nodes in this subtree, itself included.
    len: u32,
    /// Comparison id for `Cmp` nodes.
    id: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    And,
    Or,
    Not,
    Cmp,
}

impl Slots {
    /// Number of distinct comparisons compiled.
    pub(crate) fn cmp_count(&self) -> usize {
        self.cmps.len()
    }

    fn cmp_id(&mut self, key: String, def: CmpDef) -> usize {
        if let Some(&i) = self.cmps.get(&key) {
            return i;
        }
        let n = self.defs.len();
        self.defs.push(def);
        self.cmps.insert(key, n);
        n
    }

    pub(crate) fn slot(&mut self, name: &str, arg: Option<&str>) -> Result<usize, CompileError> {
        let kind = resolve(name, arg)?;
        if let Some(&i) = self.index.get(&kind) {
            return Ok(i);
        }
        let i = self.kinds.len();
        self.kinds.push(kind.clone());
        self.index.insert(kind, i);
        Ok(i)
    }
}

/// A compiled comparison value.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Str(String),
    Bytes(Vec<u8>),
    Lower(String),
    Set(StrSet),
    Paths(Vec<String>),
    Regex(regex::Regex),
    Glob(Vec<GlobTok>),
}

/// A set of strings for `in`/`intersects`: a linear scan when small (faster
/// than hashing), a hash set when large.
#[derive(Debug, Clone)]
pub(crate) enum StrSet {
    Small(Vec<String>),
    Large(HashSet<String>),
}

impl StrSet {
    fn new(items: Vec<String>) -> StrSet {
        if items.len() <= 12 {
            StrSet::Small(items)
        } else {
            StrSet::Large(items.into_iter().collect())
        }
    }

    fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Small(v) => v.iter().any(|x| x == s),
            StrSet::Large(h) => h.contains(s),
        }
    }
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(usize),
}

/// Appends `e` to `out` in pre-order; returns the index of its root.
pub(crate) fn flatten(e: &Expr, out: &mut Vec<Node>) -> usize {
    let at = out.len();
    let (kind, children): (NodeKind, &[Expr]) = match e {
        Expr::And(v) => (NodeKind::And, v),
        Expr::Or(v) => (NodeKind::Or, v),
        Expr::Not(x) => (NodeKind::Not, std::slice::from_ref(&**x)),
        Expr::Cmp(id) => {
            out.push(Node {
                kind: NodeKind::Cmp,
                len: 1,
                id: u32::try_from(*id).unwrap_or(u32::MAX),
            });
            return at;
        }
    };
    out.push(Node {
        kind,
        len: 1,
        id: 0,
    });
    for c in children {
        flatten(c, out);
    }
    let len = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    if let Some(n) = out.get_mut(at) {
        n.len = len;
    }
    at
}

/// Evaluates the flattened condition rooted at `i`.
pub(crate) fn eval_flat(
    nodes: &[Node],
    i: usize,
    ctx: &EventCtx<'_>,
    slots: &Slots,
    compat: bool,
) -> bool {
    let Some(n) = nodes.get(i) else { return false };
    match n.kind {
        NodeKind::Cmp => eval_cmp(n.id as usize, ctx, slots, compat),
        NodeKind::Not => !eval_flat(nodes, i + 1, ctx, slots, compat),
        NodeKind::And | NodeKind::Or => {
            let want = n.kind == NodeKind::Or;
            let end = i + n.len as usize;
            let mut j = i + 1;
            while j < end {
                if eval_flat(nodes, j, ctx, slots, compat) == want {
                    return want;
                }
                j += nodes.get(j).map_or(1, |c| c.len as usize);
            }
            !want
        }
    }
}

fn eval_cmp(id: usize, ctx: &EventCtx<'_>, slots: &Slots, compat: bool) -> bool {
    let cached = ctx.verdicts.get(id);
    match cached.map(std::cell::Cell::get) {
        Some(1) => return false,
        Some(2) => return true,
        _ => {}
    }
    let Some(def) = slots.defs.get(id) else {
        return false;
    };
    let Some(kind) = slots.kinds.get(def.slot) else {
        return false;
    };
    let r = ctx.with(def.slot, kind, compat, |v| match v {
        None => false,
        Some(v) => compare(v, def.list, def.op, &def.value),
    });
    if let Some(c) = cached {
        c.set(if r { 2 } else { 1 });
    }
    r
}

/// Compiles an expanded AST (no macros left; list items already resolved).
pub(crate) fn compile(ast: &Ast, slots: &mut Slots) -> Result<Expr, CompileError> {
    Ok(match ast {
        Ast::And(v) => Expr::And(
            v.iter()
                .map(|a| compile(a, slots))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Or(v) => Expr::Or(
            v.iter()
                .map(|a| compile(a, slots))
                .collect::<Result<_, _>>()?,
        ),
        Ast::Not(a) => Expr::Not(Box::new(compile(a, slots)?)),
        Ast::Macro(m) => return Err(CompileError::UndefinedMacro(m.clone())),
        Ast::Check {
            field,
            arg,
            op,
            rhs,
        } => {
            let slot = slots.slot(field, arg.as_deref())?;
            let list = slots.kinds[slot].is_list();
            let value = compile_value(*op, rhs).map_err(|error| CompileError::Value {
                field: field.clone(),
                op: op.as_str(),
                error,
            })?;
            let id = slots.cmp_id(
                format!("{slot}\u{1}{}\u{1}{rhs:?}", op.as_str()),
                CmpDef {
                    slot,
                    list,
                    op: *op,
                    value,
                },
            );
            Expr::Cmp(id)
        }
    })
}

fn compile_value(op: Op, rhs: &Rhs) -> Result<Value, ValueError> {
    let single = || -> Result<&str, ValueError> {
        match rhs {
            Rhs::Single(s) => Ok(s.as_str()),
            _ => Err(ValueError::ExpectsSingle),
        }
    };
    Ok(match op {
        Op::Exists => Value::None,
        Op::In | Op::Intersects => match rhs {
            Rhs::List(items) => {
                Value::Set(StrSet::new(items.iter().map(|i| i.text.clone()).collect()))
            }
            Rhs::Single(s) => Value::Set(StrSet::new(vec![s.clone()])),
            Rhs::None => return Err(ValueError::ExpectsList),
        },
        Op::PMatch => match rhs {
            Rhs::List(items) => Value::Paths(items.iter().map(|i| i.text.clone()).collect()),
            Rhs::Single(s) => Value::Paths(vec![s.clone()]),
            Rhs::None => return Err(ValueError::ExpectsList),
        },
        Op::IContains => Value::Lower(single()?.to_lowercase()),
        Op::BContains | Op::BStartsWith => Value::Bytes(decode_hex(single()?)?),
        Op::Regex => Value::Regex(
            regex::RegexBuilder::new(single()?)
                .size_limit(1 << 20)
                .build()
                .map_err(ValueError::Regex)?,
        ),
        Op::Glob => Value::Glob(compile_glob(single()?)),
        Op::IGlob => Value::Glob(compile_glob(&single()?.to_lowercase())),
        _ => Value::Str(single()?.to_string()),
    })
}

fn decode_hex(s: &str) -> Result<Vec<u8>, ValueError> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err(ValueError::OddHex(s));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ValueError::NotHex(s.clone()))
        })
        .collect()
}

fn compare(v: &FieldVal<'_>, _list: bool, op: Op, value: &Value) -> bool {
    match (op, v) {
        (Op::Exists, _) => true,
        (Op::In, FieldVal::Many(items)) => match value {
            Value::Set(set) => items.iter().all(|i| set.contains(i.as_ref())),
            _ => false,
        },
        (Op::Intersects, FieldVal::Many(items)) => match value {
            Value::Set(set) => items.iter().any(|i| set.contains(i.as_ref())),
            _ => false,
        },
        (_, FieldVal::One(s)) => compare_one(s, op, value),
        (_, FieldVal::Many(items)) => items.iter().any(|s| compare_one(s, op, value)),
    }
}

fn compare_one(s: &str, op: Op, value: &Value) -> bool {
    match (op, value) {
        (Op::Eq, Value::Str(v)) => s == v,
        (Op::Ne, Value::Str(v)) => s != v,
        (Op::Lt | Op::Le | Op::Gt | Op::Ge, Value::Str(v)) => {
            let ord = match (s.parse::<f64>(), v.parse::<f64>()) {
                (Ok(a), Ok(b)) => a.partial_cmp(&b),
                _ => Some(s.cmp(v.as_str())),
            };
            let Some(ord) = ord else { return false };
            match op {
                Op::Lt => ord.is_lt(),
                Op::Le => ord.is_le(),
                Op::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }
        }
        (Op::Contains, Value::Str(v)) => s.contains(v.as_str()),
        (Op::IContains, Value::Lower(v)) => s.to_lowercase().contains(v.as_str()),
        (Op::StartsWith, Value::Str(v)) => s.starts_with(v.as_str()),
        (Op::EndsWith, Value::Str(v)) => s.ends_with(v.as_str()),
        (Op::BContains, Value::Bytes(b)) => {
            b.is_empty() || memchr::memmem::find(s.as_bytes(), b).is_some()
        }
        (Op::BStartsWith, Value::Bytes(b)) => s.as_bytes().starts_with(b),
        (Op::Regex, Value::Regex(r)) => r.is_match(s),
        (Op::Glob, Value::Glob(g)) => glob_match(g, s.as_bytes()),
        (Op::IGlob, Value::Glob(g)) => glob_match(g, s.to_lowercase().as_bytes()),
        (Op::In | Op::Intersects, Value::Set(set)) => set.contains(s),
        (Op::PMatch, Value::Paths(paths)) => paths.iter().any(|p| path_prefix(p, s)),
        _ => false,
    }
}

/// Whether `prefix` is `path` or one of its parent directories.
pub(crate) fn path_prefix(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        return path.starts_with('/');
    }
    match path.strip_prefix(p) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A piece of a compiled glob pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GlobTok {
    Lit(u8),
    Any,
    Star,
    Class(Vec<(u8, u8)>, bool),
}

pub(crate) fn compile_glob(p: &str) -> Vec<GlobTok> {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' => {
                if out.last() != Some(&GlobTok::Star) {
                    out.push(GlobTok::Star);
                }
            }
            b'?' => out.push(GlobTok::Any),
            b'\\' if i + 1 < b.len() => {
                i += 1;
                out.push(GlobTok::Lit(b[i]));
            }
            b'[' => {
                let mut j = i + 1;
                let negate = matches!(b.get(j), Some(b'!') | Some(b'^'));
                if negate {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                while j < b.len() && (b[j] != b']' || first) {
                    first = false;
                    let lo = b[j];
                    if j + 2 < b.len() && b[j + 1] == b'-' && b[j + 2] != b']' {
                        ranges.push((lo, b[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((lo, lo));
                        j += 1;
                    }
                }
                if j < b.len() {
                    out.push(GlobTok::Class(ranges, negate));
                    i = j;
                } else {
                    out.push(GlobTok::Lit(b'['));
                }
            }
            c => out.push(GlobTok::Lit(c)),
        }
        i += 1;
    }
    out
}

/// Iterative glob matching with single-star backtracking (linear-ish, no recursion).
pub(crate) fn glob_match(p: &[GlobTok], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let ok = match p.get(pi) {
            Some(GlobTok::Lit(c)) => *c == s[si],
            Some(GlobTok::Any) => true,
            Some(GlobTok::Class(r, neg)) => {
                r.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[si])) != *neg
            }
            Some(GlobTok::Star) => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            None => false,
        };
        if ok {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi.min(p.len())..].iter().all(|t| *t == GlobTok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(p: &str, s: &str) -> bool {
        glob_match(&compile_glob(p), s.as_bytes())
    }

    #[test]
    fn globs() {
        assert!(g("*.sock", "/var/run/docker.sock"));
        assert!(g("/etc/*", "/etc/passwd"));
        assert!(!g("/etc/*", "/var/etc"));
        assert!(g("a?c", "abc"));
        assert!(g("[a-c]x", "bx"));
        assert!(!g("[!a-c]x", "bx"));
        assert!(g("*", ""));
        assert!(!g("a", ""));
    }

    #[test]
    fn pmatch_is_component_wise() {
        assert!(path_prefix("/var/run", "/var/run/docker.sock"));
        assert!(path_prefix("/var/run/", "/var/run"));
        assert!(!path_prefix("/var/ru", "/var/run"));
        assert!(path_prefix("/", "/etc"));
    }

    proptest! {
        #[test]
        fn literal_glob_is_equality(a in "[a-z/.]{0,12}", b in "[a-z/.]{0,12}") {
            prop_assert_eq!(g(&a, &b), a == b);
        }

        #[test]
        fn star_suffix_is_prefix(a in "[a-z/.]{0,8}", b in "[a-z/.]{0,12}") {
            prop_assert_eq!(g(&format!("{a}*"), &b), b.starts_with(&a));
        }
    }
}
