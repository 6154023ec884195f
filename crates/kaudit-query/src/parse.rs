//! Lexing and parsing the query language into an [`Expr`] tree.
//!
//! Grammar (whitespace separates; `and` may be left out):
//!
//! ```text
//! query := or
//! or    := and ("or" and)*
//! and   := unary (["and"] unary)*
//! unary := "not" unary | "(" or ")" | term
//! term  := FIELD OP value ("," value)* | WORD | "quoted phrase"
//! OP    := = | != | =~ | !~ | < | <= | > | >=
//! ```

use crate::field::Field;
use std::fmt;

/// A comparison operator.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`: equal to any listed value (`*` globs allowed; CIDR for `ip`).
    Eq,
    /// `!=`: equal to none of the listed values.
    Ne,
    /// `=~`: matches the regular expression (anchored at both ends).
    Re,
    /// `!~`: does not match the regular expression.
    NotRe,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Matches every event (the empty query).
    All,
    /// Every operand matches (a chain `a and b and c` is one flat list, so
    /// long chains cost no recursion; an empty list matches everything).
    And(Vec<Expr>),
    /// Some operand matches (one flat list per chain; an empty list
    /// matches nothing).
    Or(Vec<Expr>),
    /// The inner expression does not match.
    Not(Box<Expr>),
    /// `field OP value[,value...]`.
    Compare {
        /// The field compared.
        field: Field,
        /// The operator.
        op: Op,
        /// The listed values, unquoted.
        values: Vec<String>,
    },
    /// A word or quoted phrase searched in the whole event, case-insensitively.
    Text(String),
}

/// A query that cannot be parsed, with the 1-based column it points at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}{}", hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct QueryError {
    /// What is wrong.
    pub message: String,
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// A suggestion, e.g. `did you mean "user"?`.
    pub hint: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Op(Op),
    Comma,
    LParen,
    RParen,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: usize,
}

/// The longest query accepted, so a hostile query cannot cost unbounded work.
pub const MAX_QUERY_LEN: usize = 16 << 10;
/// The deepest nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 64;
/// The most conditions (comparisons, words and phrases) one query holds, so
/// a long chain of `and`/`or` cannot cost unbounded planning and matching.
pub const MAX_TERMS: usize = 1024;

fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '=' if chars.get(i + 1) == Some(&'~') => (Tok::Op(Op::Re), 2),
            '=' => (Tok::Op(Op::Eq), 1),
            '!' if chars.get(i + 1) == Some(&'=') => (Tok::Op(Op::Ne), 2),
            '!' if chars.get(i + 1) == Some(&'~') => (Tok::Op(Op::NotRe), 2),
            '<' if chars.get(i + 1) == Some(&'=') => (Tok::Op(Op::Le), 2),
            '<' => (Tok::Op(Op::Lt), 1),
            '>' if chars.get(i + 1) == Some(&'=') => (Tok::Op(Op::Ge), 2),
            '>' => (Tok::Op(Op::Gt), 1),
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(QueryError {
                                message: "unterminated quoted string".into(),
                                column: col,
                                hint: Some(format!("close it with {quote}")),
                            })
                        }
                        Some('\\') if chars.get(j + 1).is_some() => {
                            s.push(chars[j + 1]);
                            j += 2;
                        }
                        Some(&q) if q == quote => break,
                        Some(&other) => {
                            s.push(other);
                            j += 1;
                        }
                    }
                }
                (Tok::Quoted(s), j + 1 - i)
            }
            _ => {
                let mut j = i;
                while j < chars.len() {
                    let d = chars[j];
                    if d.is_whitespace() || matches!(d, '(' | ')' | ',' | '=' | '<' | '>' | '"') {
                        break;
                    }
                    if d == '!' && matches!(chars.get(j + 1), Some('=') | Some('~')) {
                        break;
                    }
                    // `[*]` inside JSON paths is part of the word.
                    j += 1;
                }
                (Tok::Word(chars[i..j].iter().collect()), j - i)
            }
        };
        out.push(Token { tok, col });
        i += len;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    end_col: usize,
    terms: usize,
}

/// Parses a query; the empty query matches everything.
pub fn parse(input: &str) -> Result<Expr, QueryError> {
    if input.len() > MAX_QUERY_LEN {
        return Err(QueryError {
            message: format!("query is longer than {MAX_QUERY_LEN} bytes"),
            column: 1,
            hint: None,
        });
    }
    let toks = lex(input)?;
    if toks.is_empty() {
        return Ok(Expr::All);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end_col: input.chars().count() + 1,
        terms: 0,
    };
    let e = p.or(0)?;
    if let Some(t) = p.toks.get(p.pos) {
        return Err(QueryError {
            message: format!("unexpected {}", describe(&t.tok)),
            column: t.col,
            hint: matches!(t.tok, Tok::RParen).then(|| "no matching \"(\"".to_string()),
        });
    }
    Ok(e)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("{w:?}"),
        Tok::Quoted(w) => format!("\"{w}\""),
        Tok::Op(o) => format!("operator {:?}", o.as_str()),
        Tok::Comma => "\",\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
    }
}

fn is_kw(t: &Tok, kw: &str) -> bool {
    matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn err_here(&self, message: String, hint: Option<String>) -> QueryError {
        QueryError {
            message,
            column: self.toks.get(self.pos).map_or(self.end_col, |t| t.col),
            hint,
        }
    }

    /// `a or b or c` as one flat [`Expr::Or`] (a single operand stands alone).
    fn or(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut terms = vec![self.and(depth)?];
        while self.peek().is_some_and(|t| is_kw(t, "or")) {
            self.pos += 1;
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap_or(Expr::All)
        } else {
            Expr::Or(terms)
        })
    }

    /// `a [and] b [and] c` as one flat [`Expr::And`].
    fn and(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut terms = vec![self.unary(depth)?];
        loop {
            match self.peek() {
                Some(t) if is_kw(t, "and") => {
                    self.pos += 1;
                }
                Some(t) if is_kw(t, "or") => break,
                Some(Tok::RParen) | None => break,
                Some(_) => {}
            }
            terms.push(self.unary(depth)?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap_or(Expr::All)
        } else {
            Expr::And(terms)
        })
    }

    /// Counts one more condition, failing past [`MAX_TERMS`].
    fn count_term(&mut self) -> Result<(), QueryError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.err_here(
                format!("more than {MAX_TERMS} conditions in one query"),
                Some("split the query or use a value list (verb=get,list)".into()),
            ));
        }
        Ok(())
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, QueryError> {
        if depth > MAX_DEPTH {
            return Err(self.err_here(format!("nesting deeper than {MAX_DEPTH}"), None));
        }
        match self.peek() {
            Some(t) if is_kw(t, "not") => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Tok::LParen) => {
                let open = self.toks[self.pos].col;
                self.pos += 1;
                let e = self.or(depth + 1)?;
                match self.peek() {
                    Some(Tok::RParen) => {
                        self.pos += 1;
                        Ok(e)
                    }
                    _ => Err(QueryError {
                        message: "missing \")\"".into(),
                        column: self.toks.get(self.pos).map_or(self.end_col, |t| t.col),
                        hint: Some(format!("the \"(\" at column {open} is not closed")),
                    }),
                }
            }
            Some(_) => self.term(),
            None => Err(self.err_here(
                "expected a condition".into(),
                Some("e.g. verb=delete, user=alice or a word".into()),
            )),
        }
    }

    fn term(&mut self) -> Result<Expr, QueryError> {
        self.count_term()?;
        let t = self.toks[self.pos].clone();
        let next_is_op = matches!(
            self.toks.get(self.pos + 1).map(|t| &t.tok),
            Some(Tok::Op(_))
        );
        match t.tok {
            Tok::Quoted(s) => {
                self.pos += 1;
                Ok(Expr::Text(s))
            }
            Tok::Word(w) if next_is_op => {
                let field = Field::parse(&w).ok_or_else(|| {
                    let hint = if w.starts_with('.') {
                        Some("JSON paths look like .requestObject.spec.containers[*].image".into())
                    } else {
                        Field::suggest(&w).map(|s| format!("did you mean {s:?}?"))
                    };
                    QueryError {
                        message: format!("unknown field {w:?}"),
                        column: t.col,
                        hint,
                    }
                })?;
                self.pos += 1;
                let Tok::Op(op) = self.toks[self.pos].tok else {
                    unreachable!("checked by next_is_op")
                };
                self.pos += 1;
                let mut values = vec![self.value(&field, op)?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    values.push(self.value(&field, op)?);
                }
                if values.len() > 1 && !matches!(op, Op::Eq | Op::Ne) {
                    return Err(QueryError {
                        message: format!("a list of values needs = or !=, not {}", op.as_str()),
                        column: t.col,
                        hint: None,
                    });
                }
                Ok(Expr::Compare { field, op, values })
            }
            Tok::Word(w) => {
                self.pos += 1;
                Ok(Expr::Text(w))
            }
            other => Err(self.err_here(
                format!("unexpected {}", describe(&other)),
                Some("expected a field comparison or a word".into()),
            )),
        }
    }

    fn value(&mut self, field: &Field, op: Op) -> Result<String, QueryError> {
        let Some(t) = self.toks.get(self.pos).cloned() else {
            return Err(self.err_here(
                format!("expected a value after {}{}", field.name(), op.as_str()),
                None,
            ));
        };
        let v = match t.tok {
            Tok::Word(w) => w,
            Tok::Quoted(q) => q,
            other => {
                return Err(QueryError {
                    message: format!("expected a value, found {}", describe(&other)),
                    column: t.col,
                    hint: None,
                })
            }
        };
        self.pos += 1;
        if field.is_numeric()
            && !matches!(op, Op::Re | Op::NotRe)
            && v.parse::<i64>().is_err()
            && !v.contains('*')
        {
            return Err(QueryError {
                message: format!("{} takes a number, not {v:?}", field.name()),
                column: t.col,
                hint: None,
            });
        }
        if matches!(op, Op::Re | Op::NotRe) {
            regex::Regex::new(&v).map_err(|e| QueryError {
                message: format!("invalid regular expression: {e}"),
                column: t.col,
                hint: None,
            })?;
        }
        Ok(v)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => f.write_str("*"),
            Expr::And(v) => write_list(f, v, "and", "*"),
            Expr::Or(v) => write_list(f, v, "or", "not *"),
            Expr::Not(a) => write!(f, "not {a}"),
            Expr::Compare { field, op, values } => {
                let vals: Vec<String> = values.iter().map(|v| quote(v)).collect();
                write!(f, "{}{}{}", field.name(), op.as_str(), vals.join(","))
            }
            Expr::Text(t) => f.write_str(&quote(t)),
        }
    }
}

/// Writes a flat chain in parentheses, `empty` when it has no operand.
fn write_list(f: &mut fmt::Formatter<'_>, v: &[Expr], kw: &str, empty: &str) -> fmt::Result {
    if v.is_empty() {
        return f.write_str(empty);
    }
    f.write_str("(")?;
    for (i, e) in v.iter().enumerate() {
        if i > 0 {
            write!(f, " {kw} ")?;
        }
        write!(f, "{e}")?;
    }
    f.write_str(")")
}

/// Quotes a value so that the lexer reads it back unchanged.
fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
