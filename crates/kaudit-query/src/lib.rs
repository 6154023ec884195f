//! The kaudit query language.
//!
//! A kubectl user types it without reading docs:
//! `verb=delete resource=secrets ns=prod`,
//! `user=~"system:serviceaccount:ci:.*" code>=400`,
//! `ip=10.0.0.0/8 not verb=get,list,watch`, `"kubectl exec"`,
//! `(user=alice or user=bob) decision=forbid`,
//! `.requestObject.spec.containers[*].securityContext.privileged=true`.
//!
//! This crate is backend-neutral: it parses ([`parse`]), names fields
//! ([`Field`]) and gives the reference semantics ([`Query::matches`]). A
//! search backend (today kaudit-index's embedded index) translates the same
//! [`Expr`] and confirms hits with the matcher, so any backend answers alike.
//!
//! Semantics: `=` is true when any value of the field equals any listed
//! value (`*` globs, CIDRs for `ip`); `!=` and `!~` are the negation of `=`
//! and `=~`, so they hold for events without the field; `=~` regexes are
//! anchored at both ends; `<`-style operators compare numbers for numeric
//! fields; bare and quoted words search the whole event case-insensitively.

#![warn(missing_docs)]

mod field;
mod matcher;
mod parse;

pub use field::{Field, JsonPath, LazyJson};
pub use matcher::{parse_time_bound, Budget, CompareTest, Query, TimeBoundError};
pub use parse::{parse, Expr, Op, QueryError, MAX_DEPTH, MAX_QUERY_LEN, MAX_TERMS};
