//! Evaluating a parsed query against one event: the reference semantics.
//!
//! Index backends answer the same queries faster; this matcher is what they
//! must agree with (and what confirms every hit against the stored event).

use crate::field::{Field, LazyJson};
use crate::parse::{parse, Expr, Op, QueryError};
use ipnet::IpNet;
use kaudit_event::Event;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A query compiled for matching: regexes, globs and CIDRs prepared once.
#[derive(Debug, Clone)]
pub struct Query {
    expr: Expr,
    root: Node,
    needs_json: bool,
    budget: Option<Budget>,
}

/// When a query must be answered by, and the time it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The instant after which work on the query stops.
    pub deadline: Instant,
    /// The time the query was given (for the error message).
    pub allowed: Duration,
}

impl Budget {
    /// A budget of `allowed` from now (at most ten years: longer is the
    /// same as never).
    pub fn from_now(allowed: Duration) -> Budget {
        let now = Instant::now();
        let capped = allowed.min(Duration::from_secs(10 * 365 * 86_400));
        Budget {
            deadline: now.checked_add(capped).unwrap_or(now),
            allowed,
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

#[derive(Debug, Clone)]
enum Node {
    All,
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Cmp { field: Field, test: Test },
    Text(regex::bytes::Regex),
}

#[derive(Debug, Clone)]
enum Test {
    /// Any value equals one of the patterns.
    AnyOf(Vec<Pattern>),
    Regex(regex::Regex),
    Num(Op, i64),
    Str(Op, String),
}

#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Glob(regex::Regex),
    Net(IpNet),
    Addr(IpAddr),
}

impl Pattern {
    fn new(field: &Field, v: &str) -> Pattern {
        if *field == Field::Ip {
            if let Ok(net) = v.parse::<IpNet>() {
                return Pattern::Net(net);
            }
            if let Ok(addr) = v.parse::<IpAddr>() {
                return Pattern::Addr(addr);
            }
        }
        if v.contains('*') {
            let re = format!(
                "^{}$",
                v.split('*')
                    .map(regex::escape)
                    .collect::<Vec<_>>()
                    .join(".*")
            );
            if let Ok(re) = regex::RegexBuilder::new(&re)
                .dot_matches_new_line(true)
                .build()
            {
                return Pattern::Glob(re);
            }
        }
        Pattern::Exact(v.to_string())
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(s) => s == value,
            Pattern::Glob(re) => re.is_match(value),
            Pattern::Net(net) => value.parse::<IpAddr>().is_ok_and(|a| net.contains(&a)),
            Pattern::Addr(addr) => value.parse::<IpAddr>().is_ok_and(|a| a == *addr),
        }
    }
}

impl Query {
    /// Parses and compiles a query string.
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        Query::compile(parse(input)?)
    }

    /// Compiles a parsed expression.
    pub fn compile(expr: Expr) -> Result<Query, QueryError> {
        let mut needs_json = false;
        let root = build(&expr, &mut needs_json)?;
        Ok(Query {
            expr,
            root,
            needs_json,
            budget: None,
        })
    }

    /// This query with a time budget: backends check
    /// [`Query::budget`] in their loops and give up once it is spent.
    pub fn with_budget(mut self, budget: Budget) -> Query {
        self.budget = Some(budget);
        self
    }

    /// The time budget, when one was set.
    pub fn budget(&self) -> Option<Budget> {
        self.budget
    }

    /// The parsed expression, for backends that translate it.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the query reads JSON paths (and so parses whole events).
    pub fn needs_json(&self) -> bool {
        self.needs_json
    }

    /// Whether the event (received from `cluster`) matches.
    pub fn matches(&self, ev: &Event, cluster: &str) -> bool {
        let mut json = LazyJson::default();
        eval(&self.root, ev, cluster, &mut json)
    }
}

fn build(e: &Expr, needs_json: &mut bool) -> Result<Node, QueryError> {
    Ok(match e {
        Expr::All => Node::All,
        Expr::And(v) => Node::And(
            v.iter()
                .map(|e| build(e, needs_json))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(v) => Node::Or(
            v.iter()
                .map(|e| build(e, needs_json))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Not(a) => Node::Not(Box::new(build(a, needs_json)?)),
        Expr::Text(t) => Node::Text(
            regex::bytes::RegexBuilder::new(&regex::escape(t))
                .case_insensitive(true)
                .unicode(false)
                .build()
                .map_err(|err| QueryError {
                    message: format!("cannot search for {t:?}: {err}"),
                    column: 1,
                    hint: None,
                })?,
        ),
        Expr::Compare { field, op, values } => {
            if matches!(field, Field::Path(_)) {
                *needs_json = true;
            }
            let test = match op {
                Op::Eq | Op::Ne => {
                    Test::AnyOf(values.iter().map(|v| Pattern::new(field, v)).collect())
                }
                Op::Re | Op::NotRe => {
                    Test::Regex(regex::Regex::new(&format!("^(?:{})$", values[0])).map_err(
                        |err| QueryError {
                            message: format!("invalid regular expression: {err}"),
                            column: 1,
                            hint: None,
                        },
                    )?)
                }
                Op::Lt | Op::Le | Op::Gt | Op::Ge => match values[0].parse::<i64>() {
                    Ok(n) => Test::Num(*op, n),
                    Err(_) => Test::Str(*op, values[0].clone()),
                },
            };
            let cmp = Node::Cmp {
                field: field.clone(),
                test,
            };
            if matches!(op, Op::Ne | Op::NotRe) {
                Node::Not(Box::new(cmp))
            } else {
                cmp
            }
        }
    })
}

fn eval(n: &Node, ev: &Event, cluster: &str, json: &mut LazyJson) -> bool {
    match n {
        Node::All => true,
        Node::And(v) => v.iter().all(|n| eval(n, ev, cluster, json)),
        Node::Or(v) => v.iter().any(|n| eval(n, ev, cluster, json)),
        Node::Not(a) => !eval(a, ev, cluster, json),
        Node::Text(re) => re.is_match(ev.bytes()),
        Node::Cmp { field, test } => {
            let mut hit = false;
            field.values(ev, cluster, json, &mut |v| {
                if !hit {
                    hit = test_value(test, v);
                }
            });
            hit
        }
    }
}

fn test_value(t: &Test, v: &str) -> bool {
    match t {
        Test::AnyOf(ps) => ps.iter().any(|p| p.matches(v)),
        Test::Regex(re) => re.is_match(v),
        Test::Num(op, n) => v.parse::<i64>().is_ok_and(|x| ord(*op, x.cmp(n))),
        Test::Str(op, s) => ord(*op, v.cmp(s.as_str())),
    }
}

fn ord(op: Op, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Lt => o == Less,
        Op::Le => o != Greater,
        Op::Gt => o == Greater,
        Op::Ge => o != Less,
        _ => false,
    }
}

/// Why a `--since`/`--until` bound was not accepted. The input is kept
/// trimmed, as it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeBoundError {
    /// A number with a unit letter other than s, m, h, d or w.
    #[error("unknown unit {unit:?} in {input:?}: use s, m, h, d or w")]
    UnknownUnit {
        /// The unit letter.
        unit: char,
        /// The whole bound.
        input: String,
    },
    /// A duration reaching before the earliest representable time.
    #[error("duration {0:?} is out of range")]
    OutOfRange(String),
    /// Neither a duration, an RFC 3339 time nor a date. Each form's own
    /// parse error is dropped: which form was meant is unknown.
    #[error(
        "invalid time {0:?}: use a duration (2h, 30m, 7d), an RFC 3339 time or a date (2026-01-02)"
    )]
    Invalid(String),
}

/// Parses a `--since`/`--until` bound: a duration back from `now`
/// (`90s`, `15m`, `2h`, `7d`, `2w`), an RFC 3339 time, or a date (`2026-01-02`, UTC midnight).
pub fn parse_time_bound(
    s: &str,
    now: kaudit_event::MicroTime,
) -> Result<kaudit_event::MicroTime, TimeBoundError> {
    let s = s.trim();
    if let Some(unit) = s.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        let num = &s[..s.len() - 1];
        if let Ok(n) = num.parse::<i64>() {
            let secs = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => {
                    return Err(TimeBoundError::UnknownUnit {
                        unit,
                        input: s.to_string(),
                    })
                }
            };
            return n
                .checked_mul(secs * 1_000_000)
                .and_then(|d| now.micros().checked_sub(d))
                .map(kaudit_event::MicroTime)
                .ok_or_else(|| TimeBoundError::OutOfRange(s.to_string()));
        }
    }
    if let Ok(t) = kaudit_event::MicroTime::parse(s) {
        return Ok(t);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        if let Some(t) = t {
            return Ok(kaudit_event::MicroTime(t.timestamp() * 1_000_000));
        }
    }
    Err(TimeBoundError::Invalid(s.to_string()))
}

/// One `field OP values` comparison compiled on its own, so an index can
/// decide it once per distinct stored value list (a dictionary entry)
/// instead of once per event, with exactly the matcher's semantics.
#[derive(Debug, Clone)]
pub struct CompareTest {
    test: Test,
    negated: bool,
}

impl CompareTest {
    /// Compiles the comparison the way [`Query::compile`] does for a leaf.
    pub fn new(field: &Field, op: Op, values: &[String]) -> Result<CompareTest, QueryError> {
        let expr = Expr::Compare {
            field: field.clone(),
            op,
            values: values.to_vec(),
        };
        let mut needs_json = false;
        match build(&expr, &mut needs_json)? {
            Node::Cmp { test, .. } => Ok(CompareTest {
                test,
                negated: false,
            }),
            Node::Not(inner) => match *inner {
                Node::Cmp { test, .. } => Ok(CompareTest {
                    test,
                    negated: true,
                }),
                _ => Err(QueryError {
                    message: "not a comparison".into(),
                    column: 1,
                    hint: None,
                }),
            },
            _ => Err(QueryError {
                message: "not a comparison".into(),
                column: 1,
                hint: None,
            }),
        }
    }

    /// Whether an event whose field has exactly these values (none for a
    /// missing field) satisfies the comparison, negation included.
    pub fn matches_values<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> bool {
        let hit = values.into_iter().any(|v| test_value(&self.test, v));
        hit != self.negated
    }
}
