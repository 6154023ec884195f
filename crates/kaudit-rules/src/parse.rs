//! The Falco condition language: `and`/`or`/`not`, parentheses, field
//! comparisons and macro references, parsed into an [`Ast`].
//!
//! Precedence is Falco's: `not` binds tightest, then `and`, then `or`.
//! Values after an operator are a quoted string or a bare word (up to
//! whitespace, `(`, `)` or `,`); list operators take `( item, ... )`.

use std::fmt;

/// Longest condition accepted, and deepest nesting, so no rule file can
/// exhaust memory or the stack.
pub const MAX_CONDITION_LEN: usize = 1 << 20;
/// Deepest parenthesis/`not` nesting accepted.
pub const MAX_DEPTH: usize = 200;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `contains`
    Contains,
    /// `icontains`
    IContains,
    /// `bcontains` (hex bytes)
    BContains,
    /// `startswith`
    StartsWith,
    /// `bstartswith` (hex bytes)
    BStartsWith,
    /// `endswith`
    EndsWith,
    /// `glob`
    Glob,
    /// `iglob`
    IGlob,
    /// `regex`
    Regex,
    /// `in (list)`
    In,
    /// `intersects (list)`
    Intersects,
    /// `pmatch (paths)`
    PMatch,
    /// `exists`
    Exists,
}

impl Op {
    fn from_word(w: &str) -> Option<Op> {
        Some(match w {
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "bcontains" => Op::BContains,
            "startswith" => Op::StartsWith,
            "bstartswith" => Op::BStartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "iglob" => Op::IGlob,
            "regex" => Op::Regex,
            "in" => Op::In,
            "intersects" => Op::Intersects,
            "pmatch" => Op::PMatch,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    /// Whether the operator takes a parenthesised list.
    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }

    /// The operator as written in a condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::Exists => "exists",
        }
    }

    /// Parses an operator as it appears in an exception's `comps`.
    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "=" | "==" => Some(Op::Eq),
            "!=" => Some(Op::Ne),
            "<" => Some(Op::Lt),
            "<=" => Some(Op::Le),
            ">" => Some(Op::Gt),
            ">=" => Some(Op::Ge),
            w => Op::from_word(w),
        }
    }
}

/// One item of a value list; bare items may name a Falco list.
#[derive(Clone, Debug, PartialEq)]
pub struct ListItem {
    /// The item's text (quotes removed).
    pub text: String,
    /// Whether it was quoted (quoted items are never list names).
    pub quoted: bool,
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    /// `exists` has none.
    None,
    /// A single value.
    Single(String),
    /// A parenthesised list.
    List(Vec<ListItem>),
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    /// All must hold.
    And(Vec<Ast>),
    /// One must hold.
    Or(Vec<Ast>),
    /// Negation: the only thing that turns a missing field into true.
    Not(Box<Ast>),
    /// A macro reference, replaced by the macro's tree before compiling.
    Macro(String),
    /// `field[arg] op value`.
    Check {
        /// Field name (`ka.user.name`).
        field: String,
        /// Bracketed argument (`jevt.value[/stage]`).
        arg: Option<String>,
        /// The operator.
        op: Op,
        /// The value(s).
        rhs: Rhs,
    },
}

/// A condition that does not parse, with the byte offset where it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the condition.
    pub offset: usize,
    /// What was expected or found.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at offset {})", self.message, self.offset)
    }
}

impl std::error::Error for ParseError {}

/// Parses one condition.
pub fn parse_condition(src: &str) -> Result<Ast, ParseError> {
    if src.len() > MAX_CONDITION_LEN {
        return Err(ParseError {
            offset: 0,
            message: format!("condition longer than {MAX_CONDITION_LEN} bytes"),
        });
    }
    let mut p = Parser {
        s: src.as_bytes(),
        src,
        pos: 0,
        depth: 0,
    };
    let ast = p.or_expr()?;
    p.ws();
    if p.pos < p.s.len() {
        return Err(p.err(format!("unexpected {:?}", p.rest_snippet())));
    }
    Ok(ast)
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
    depth: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}
fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-'
}

impl Parser<'_> {
    fn err(&self, message: String) -> ParseError {
        ParseError {
            offset: self.pos,
            message,
        }
    }

    fn rest_snippet(&self) -> String {
        self.src[self.pos..].chars().take(30).collect()
    }

    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Consumes `kw` when it stands as a word here (followed by space, `(` or end).
    fn keyword(&mut self, kw: &str) -> bool {
        self.ws();
        let end = self.pos + kw.len();
        if self.s.len() >= end && &self.s[self.pos..end] == kw.as_bytes() {
            let next = self.s.get(end).copied();
            if next.is_none_or(|c| c.is_ascii_whitespace() || c == b'(' || c == b')') {
                self.pos = end;
                return true;
            }
        }
        false
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("condition nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Ast, ParseError> {
        self.enter()?;
        let mut items = vec![self.and_expr()?];
        while self.keyword("or") {
            items.push(self.and_expr()?);
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Ast::And(vec![]))
        } else {
            Ast::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Ast, ParseError> {
        let mut items = vec![self.not_expr()?];
        while self.keyword("and") {
            items.push(self.not_expr()?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Ast::And(vec![]))
        } else {
            Ast::And(items)
        })
    }

    fn not_expr(&mut self) -> Result<Ast, ParseError> {
        if self.keyword("not") {
            self.enter()?;
            let inner = self.not_expr()?;
            self.depth -= 1;
            return Ok(Ast::Not(Box::new(inner)));
        }
        self.check()
    }

    fn check(&mut self) -> Result<Ast, ParseError> {
        self.ws();
        match self.peek() {
            None => Err(self.err("condition ends where an expression was expected".into())),
            Some(b'(') => {
                self.pos += 1;
                let inner = self.or_expr()?;
                self.ws();
                if self.peek() != Some(b')') {
                    return Err(
                        self.err(format!("expected ')' but found {:?}", self.rest_snippet()))
                    );
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(c) if is_ident_start(c) => {
                let start = self.pos;
                while self.peek().is_some_and(is_ident) {
                    self.pos += 1;
                }
                let name = self.src[start..self.pos].to_string();
                let mut arg = None;
                if self.peek() == Some(b'[') {
                    self.pos += 1;
                    let astart = self.pos;
                    while self.peek().is_some_and(|c| c != b']') {
                        self.pos += 1;
                    }
                    if self.peek() != Some(b']') {
                        return Err(self.err(format!("unterminated '[' after {name}")));
                    }
                    let a = self.src[astart..self.pos].trim();
                    let a = a
                        .strip_prefix('"')
                        .and_then(|x| x.strip_suffix('"'))
                        .or_else(|| a.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                        .unwrap_or(a);
                    arg = Some(a.to_string());
                    self.pos += 1;
                }
                match self.operator()? {
                    None => {
                        if arg.is_some() {
                            return Err(self.err(format!(
                                "field {name}[...] must be followed by an operator"
                            )));
                        }
                        Ok(Ast::Macro(name))
                    }
                    Some(op) => {
                        let rhs = if op == Op::Exists {
                            Rhs::None
                        } else if op.takes_list() {
                            self.list()?
                        } else {
                            Rhs::Single(self.value()?)
                        };
                        Ok(Ast::Check {
                            field: name,
                            arg,
                            op,
                            rhs,
                        })
                    }
                }
            }
            Some(_) => Err(self.err(format!(
                "expected a field, macro or '(' but found {:?}",
                self.rest_snippet()
            ))),
        }
    }

    fn operator(&mut self) -> Result<Option<Op>, ParseError> {
        self.ws();
        let two = self.s.get(self.pos..self.pos + 2);
        let sym = match two {
            Some(b"==") => Some((Op::Eq, 2)),
            Some(b"!=") => Some((Op::Ne, 2)),
            Some(b"<=") => Some((Op::Le, 2)),
            Some(b">=") => Some((Op::Ge, 2)),
            _ => match self.peek() {
                Some(b'=') => Some((Op::Eq, 1)),
                Some(b'<') => Some((Op::Lt, 1)),
                Some(b'>') => Some((Op::Gt, 1)),
                _ => None,
            },
        };
        if let Some((op, n)) = sym {
            self.pos += n;
            return Ok(Some(op));
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        let word = &self.src[start..self.pos];
        match Op::from_word(word) {
            Some(op) => {
                let next = self.peek();
                if next.is_none_or(|c| c.is_ascii_whitespace() || c == b'(' || c == b')') {
                    Ok(Some(op))
                } else {
                    self.pos = start;
                    Ok(None)
                }
            }
            None => {
                self.pos = start;
                Ok(None)
            }
        }
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let q = self.s[self.pos];
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                self.pos = start;
                return Err(self.err("unterminated quoted string".into()));
            };
            if c == q {
                self.pos += 1;
                return Ok(out);
            }
            if c == b'\\' {
                if let Some(n) = self.s.get(self.pos + 1).copied() {
                    if n == q || n == b'\\' {
                        out.push(n as char);
                        self.pos += 2;
                        continue;
                    }
                }
            }
            let ch = self.src[self.pos..].chars().next().unwrap_or('\u{fffd}');
            out.push(ch);
            self.pos += ch.len_utf8();
        }
    }

    fn bare(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| !c.is_ascii_whitespace() && c != b'(' && c != b')' && c != b',')
        {
            self.pos += 1;
        }
        self.src[start..self.pos].to_string()
    }

    fn value(&mut self) -> Result<String, ParseError> {
        self.ws();
        match self.peek() {
            Some(b'"') | Some(b'\'') => self.quoted(),
            Some(c) if c != b'(' && c != b')' && c != b',' => Ok(self.bare()),
            _ => Err(self.err(format!(
                "expected a value but found {:?}",
                self.rest_snippet()
            ))),
        }
    }

    fn list(&mut self) -> Result<Rhs, ParseError> {
        self.ws();
        if self.peek() != Some(b'(') {
            // Lenient: `x in list_name` is read as `x in (list_name)`.
            let v = self.value()?;
            return Ok(Rhs::List(vec![ListItem {
                text: v,
                quoted: false,
            }]));
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(Rhs::List(items));
                }
                Some(b',') => {
                    self.pos += 1;
                }
                Some(b'"') | Some(b'\'') => {
                    let text = self.quoted()?;
                    items.push(ListItem { text, quoted: true });
                }
                Some(b'(') => return Err(self.err("nested '(' inside a value list".into())),
                Some(_) => {
                    let text = self.bare();
                    items.push(ListItem {
                        text,
                        quoted: false,
                    });
                }
                None => return Err(self.err("unterminated value list".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(field: &str, op: Op, v: &str) -> Ast {
        Ast::Check {
            field: field.into(),
            arg: None,
            op,
            rhs: Rhs::Single(v.into()),
        }
    }

    #[test]
    fn precedence_is_not_and_or() {
        let ast = parse_condition("a or not b and c").unwrap();
        assert_eq!(
            ast,
            Ast::Or(vec![
                Ast::Macro("a".into()),
                Ast::And(vec![
                    Ast::Not(Box::new(Ast::Macro("b".into()))),
                    Ast::Macro("c".into())
                ])
            ])
        );
    }

    #[test]
    fn comparisons_and_args() {
        let ast = parse_condition("ka.verb=get and jevt.value[/stage] in (a, \"b c\")").unwrap();
        let Ast::And(v) = ast else { panic!() };
        assert_eq!(v[0], check("ka.verb", Op::Eq, "get"));
        assert_eq!(
            v[1],
            Ast::Check {
                field: "jevt.value".into(),
                arg: Some("/stage".into()),
                op: Op::In,
                rhs: Rhs::List(vec![
                    ListItem {
                        text: "a".into(),
                        quoted: false
                    },
                    ListItem {
                        text: "b c".into(),
                        quoted: true
                    }
                ])
            }
        );
    }

    #[test]
    fn bare_values_keep_punctuation() {
        let ast = parse_condition("(ka.uri startswith /healthz?)").unwrap();
        assert_eq!(ast, check("ka.uri", Op::StartsWith, "/healthz?"));
        let ast = parse_condition("ka.user.name=system:anonymous").unwrap();
        assert_eq!(ast, check("ka.user.name", Op::Eq, "system:anonymous"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(s in "\\PC{0,80}") {
            let _ = parse_condition(&s);
        }

        #[test]
        fn never_panics_on_condition_like_input(
            s in "[a-z._\\[\\]/()\"' =!<>,]{0,60}"
        ) {
            let _ = parse_condition(&s);
        }
    }

    #[test]
    fn errors_have_offsets() {
        let e = parse_condition("a and (b").unwrap_err();
        assert!(e.message.contains("')'"), "{e}");
        assert!(parse_condition("ka.verb =").is_err());
        assert!(parse_condition("").is_err());
        let deep = "(".repeat(1000) + "a" + &")".repeat(1000);
        assert!(parse_condition(&deep).is_err());
    }
}
