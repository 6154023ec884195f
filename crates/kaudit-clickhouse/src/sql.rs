//! kaudit's query language compiled to a ClickHouse `WHERE` clause.
//!
//! Every term becomes SQL over the typed columns ([`crate::schema`]) with the
//! matcher's meaning (a field matches when any of its values passes; `!=`
//! and `!~` are `not`; globs are anchored, any-length wildcards; words and
//! phrases are ASCII case-insensitive substrings of the event bytes). A
//! term whose meaning SQL cannot reproduce on every server version (a user
//! regular expression, a JSON path, an annotation other than decision and
//! reason, an IPv6 network, a number compared with a text field) compiles
//! to a *superset*: `1` or a coarser test. The result says whether it is
//! [`Compiled::exact`]; when it is not, every row is confirmed with
//! [`kaudit_query::Query::matches`] over its stored bytes, so the answer is
//! the same as the embedded backend's. Under `not`, only exact terms narrow.

use crate::schema::{column, Kind};
use kaudit_query::{Expr, Field, Op};
use std::net::IpAddr;

/// A compiled query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compiled {
    /// A boolean SQL expression: true for every match (and, when not
    /// exact, for some non-matches too).
    pub sql: String,
    /// Whether the SQL is exactly the query (no confirmation needed).
    pub exact: bool,
}

impl Compiled {
    fn exact(sql: String) -> Compiled {
        Compiled { sql, exact: true }
    }
    fn any() -> Compiled {
        Compiled {
            sql: "1".into(),
            exact: false,
        }
    }
    fn is_any(&self) -> bool {
        self.sql == "1" && !self.exact
    }
}

/// A ClickHouse string literal holding `s` exactly.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The RE2 pattern of a `*` glob: literal parts, `.*` between, anchored,
/// `.` matching newlines like the matcher's.
fn glob_regex(glob: &str) -> String {
    let mut re = String::from("(?s)^");
    for (i, part) in glob.split('*').enumerate() {
        if i > 0 {
            re.push_str(".*");
        }
        for c in part.chars() {
            if "\\.+*?()|[]{}^$".contains(c) {
                re.push('\\');
            }
            re.push(c);
        }
    }
    re.push('$');
    re
}

/// One test of one value expression `x`.
fn value_test(field: &Field, kind: Kind, op: Op, values: &[String], x: &str) -> Compiled {
    match op {
        Op::Eq | Op::Ne => {
            let mut parts = Vec::new();
            let mut exact = true;
            for v in values {
                if *field == Field::Ip {
                    if let Ok(net) = v.parse::<ipnet::IpNet>() {
                        exact = false;
                        // A text prefix of the whole octets the network
                        // fixes: a superset on every server version
                        // (parsing functions differ between versions).
                        match net {
                            ipnet::IpNet::V4(n) => {
                                let whole = usize::from(n.prefix_len() / 8);
                                let octets = n.network().octets();
                                let fixed: Vec<String> =
                                    octets[..whole].iter().map(u8::to_string).collect();
                                match whole {
                                    0 => return Compiled::any(),
                                    4 => parts.push(format!("{x} = {}", quote(&fixed.join(".")))),
                                    _ => {
                                        let prefix = format!("{}.", fixed.join("."));
                                        parts.push(format!(
                                            "substring({x}, 1, {}) = {}",
                                            prefix.len(),
                                            quote(&prefix)
                                        ))
                                    }
                                }
                            }
                            ipnet::IpNet::V6(_) => return Compiled::any(),
                        }
                        continue;
                    }
                    if let Ok(addr) = v.parse::<IpAddr>() {
                        match addr {
                            // Dotted decimal parses only in its one form.
                            IpAddr::V4(a) => parts.push(format!("{x} = {}", quote(&a.to_string()))),
                            IpAddr::V6(_) => return Compiled::any(),
                        }
                        continue;
                    }
                }
                if v.contains('*') {
                    parts.push(format!("match({x}, {})", quote(&glob_regex(v))));
                } else if v.is_empty() && kind == Kind::Single {
                    // Absent values are "" and never reach the matcher.
                    parts.push("0".into());
                } else {
                    parts.push(format!("{x} = {}", quote(v)));
                }
            }
            let sql = match parts.len() {
                0 => "0".into(),
                1 => parts.remove(0),
                _ => format!("({})", parts.join(" OR ")),
            };
            Compiled { sql, exact }
        }
        Op::Re | Op::NotRe => Compiled::any(),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            let sym = op.as_str();
            let v = values.first().map(String::as_str).unwrap_or_default();
            match v.parse::<i64>() {
                Ok(n) if kind == Kind::Code => Compiled::exact(format!("code {sym} {n}")),
                Ok(_) => Compiled::any(),
                Err(_) => Compiled::exact(format!("{x} {sym} {}", quote(v))),
            }
        }
    }
}

fn compare(field: &Field, op: Op, values: &[String]) -> Compiled {
    let Some(c) = column(field) else {
        return Compiled::any();
    };
    let (x, presence) = match c.kind {
        Kind::Single => (c.name.to_string(), Some(format!("{} != ''", c.name))),
        Kind::Always => (c.name.to_string(), None),
        Kind::Array => ("v".to_string(), None),
        Kind::Code => (
            "toString(code)".to_string(),
            Some("has_code = 1".to_string()),
        ),
    };
    let t = value_test(field, c.kind, op, values, &x);
    if t.is_any() {
        return t;
    }
    let sql = match (c.kind, presence) {
        (Kind::Array, _) => format!("arrayExists(v -> {}, {})", t.sql, c.name),
        (_, Some(p)) => format!("({p} AND {})", t.sql),
        (_, None) => t.sql,
    };
    let positive = Compiled {
        sql,
        exact: t.exact,
    };
    if matches!(op, Op::Ne | Op::NotRe) {
        not(positive)
    } else {
        positive
    }
}

fn not(c: Compiled) -> Compiled {
    if c.exact {
        Compiled::exact(format!("NOT ({})", c.sql))
    } else {
        Compiled::any()
    }
}

/// Compiles `expr`. See the [module docs](self).
pub fn compile(expr: &Expr) -> Compiled {
    match expr {
        Expr::All => Compiled::exact("1".into()),
        Expr::And(v) => {
            let parts: Vec<Compiled> = v.iter().map(compile).collect();
            let exact = parts.iter().all(|p| p.exact);
            let sqls: Vec<String> = parts
                .into_iter()
                .filter(|p| !p.is_any() && p.sql != "1")
                .map(|p| format!("({})", p.sql))
                .collect();
            Compiled {
                sql: if sqls.is_empty() {
                    "1".into()
                } else {
                    sqls.join(" AND ")
                },
                exact,
            }
        }
        Expr::Or(v) => {
            let parts: Vec<Compiled> = v.iter().map(compile).collect();
            if parts.iter().any(Compiled::is_any) {
                return Compiled::any();
            }
            let exact = parts.iter().all(|p| p.exact);
            Compiled {
                sql: if parts.is_empty() {
                    "0".into()
                } else {
                    parts
                        .iter()
                        .map(|p| format!("({})", p.sql))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                },
                exact,
            }
        }
        Expr::Not(a) => not(compile(a)),
        Expr::Compare { field, op, values } => compare(field, *op, values),
        Expr::Text(t) => {
            if t.is_ascii() {
                Compiled::exact(format!("positionCaseInsensitive(raw, {}) > 0", quote(t)))
            } else {
                Compiled::any()
            }
        }
    }
}

/// The time bounds as SQL (`time` in microseconds), "1" without bounds.
pub fn time_range(since: Option<i64>, until: Option<i64>) -> String {
    match (since, until) {
        (Some(s), Some(u)) => format!("time >= {s} AND time < {u}"),
        (Some(s), None) => format!("time >= {s}"),
        (None, Some(u)) => format!("time < {u}"),
        (None, None) => "1".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaudit_query::Query;

    fn c(q: &str) -> Compiled {
        compile(Query::parse(q).unwrap().expr())
    }

    #[test]
    fn fields_globs_lists_and_codes_compile_exactly() {
        let x = c("user=alice verb=get,list");
        assert!(x.exact, "{x:?}");
        assert!(x.sql.contains("user = 'alice'"), "{}", x.sql);
        assert!(x.sql.contains("verb = 'list'"), "{}", x.sql);
        let x = c("group=system:* code>=400");
        assert!(x.exact);
        assert!(
            x.sql
                .contains("arrayExists(v -> match(v, '(?s)^system:.*$'), groups)"),
            "{}",
            x.sql
        );
        assert!(x.sql.contains("code >= 400"), "{}", x.sql);
        let x = c("not namespace=kube-system");
        assert!(x.exact);
        assert!(x.sql.starts_with("NOT ("), "{}", x.sql);
    }

    #[test]
    fn what_sql_cannot_say_is_a_superset_and_not_exact() {
        let x = c("user=~'a.*' verb=get");
        assert!(!x.exact);
        assert_eq!(x.sql, "((verb != '' AND verb = 'get'))");
        // Under `not`, an inexact term must not narrow at all.
        let x = c("not user=~'a.*'");
        assert_eq!(x, Compiled::any());
        let x = c("ip=10.0.0.0/8");
        assert!(!x.exact);
        assert!(x.sql.contains("substring(v, 1, 3) = '10.'"), "{}", x.sql);
        assert!(c("ip=0.0.0.0/0").is_any());
        assert!(c("user=a or user=~'b'").is_any());
    }

    #[test]
    fn literals_cannot_escape_their_quotes() {
        assert_eq!(quote(r"a'b\c"), r"'a\'b\\c'");
        let x = c(r#"user="x' OR 1=1 --""#);
        assert!(x.sql.contains(r"'x\' OR 1=1 --'"), "{}", x.sql);
        assert_eq!(glob_regex("a.b*c"), r"(?s)^a\.b.*c$");
    }
}
