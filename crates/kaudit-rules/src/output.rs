//! Falco output templates: literal text with `%field` / `%field[arg]`
//! references, rendered with `<NA>` for a field the event does not have.

use crate::error::CompileError;
use crate::expr::Slots;
use crate::fields::EventCtx;

/// One piece of a template.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Field { name: String, slot: usize },
}

/// A compiled output template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

fn is_field_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

impl Template {
    /// Compiles a template; an unknown field is an error, as in Falco.
    pub(crate) fn compile(src: &str, slots: &mut Slots) -> Result<Template, CompileError> {
        let src = src.trim_end();
        let b = src.as_bytes();
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && is_field_char(b[end]) {
                    end += 1;
                }
                let mut cand = &src[start..end];
                // Falco takes the longest known field: drop trailing dots.
                while cand.ends_with('.') {
                    cand = &cand[..cand.len() - 1];
                }
                if cand.is_empty() {
                    text.push('%');
                    i += 1;
                    continue;
                }
                let mut after = start + cand.len();
                let mut arg = None;
                if b.get(after) == Some(&b'[') {
                    if let Some(close) = src[after..].find(']') {
                        arg = Some(src[after + 1..after + close].to_string());
                        after += close + 1;
                    }
                }
                let slot = slots
                    .slot(cand, arg.as_deref())
                    .map_err(|e| CompileError::Output(Box::new(e)))?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                let name = match &arg {
                    Some(a) => format!("{cand}[{a}]"),
                    None => cand.to_string(),
                };
                pieces.push(Piece::Field { name, slot });
                i = after;
            } else {
                let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                text.push(ch);
                i += ch.len_utf8();
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// The fields the template shows, with their slots, in order of first use.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&str, usize)> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field { name, slot } => Some((name.as_str(), *slot)),
            Piece::Text(_) => None,
        })
    }

    /// Renders the template for one event.
    pub(crate) fn render(&self, ctx: &EventCtx<'_>, slots: &Slots, compat: bool) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field { slot, .. } => {
                    let v = slots
                        .kinds
                        .get(*slot)
                        .and_then(|k| ctx.get(*slot, k, compat));
                    match v {
                        Some(v) => out.push_str(&v.render()),
                        None => out.push_str("<NA>"),
                    }
                }
            }
        }
        out
    }
}
