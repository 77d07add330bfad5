//! `{{…}}` templates: parsed once at load (so an unknown name is a load error), rendered deterministically.
//!
//! Placeholders: `{{slot}}`, `{{contact.field}}`, `{{facts.name}}`, each with an optional filter:
//! `{{order_number|spell}}` (digit by digit, for numbers read aloud), `{{new_time|raw}}` (the normalized
//! value instead of its spoken form), `{{contact.name|default:there}}` (text used when the value is
//! missing or empty). A missing value without a default renders as nothing.

use std::collections::BTreeMap;

use crate::SlotValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    Slot(String),
    Contact(String),
    Fact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    Spoken,
    Raw,
    Spell,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var {
        var: Var,
        filter: Filter,
        default: Option<String>,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// What a template reads from when it is rendered.
pub(crate) struct Scope<'a> {
    pub slots: &'a BTreeMap<String, SlotValue>,
    pub contact: &'a BTreeMap<String, String>,
    pub facts: &'a BTreeMap<String, String>,
}

impl Template {
    /// Parses `src`; the error names the offending placeholder.
    pub(crate) fn parse(src: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed placeholder \"{{{{{}\"", after.trim()))?;
            let inner = after[..close].trim();
            pieces.push(parse_placeholder(inner)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template {
            source: src.to_string(),
            pieces,
        })
    }

    pub(crate) fn empty() -> Template {
        Template {
            source: String::new(),
            pieces: Vec::new(),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn vars(&self) -> impl Iterator<Item = &Var> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var { var, .. } => Some(var),
            Piece::Text(_) => None,
        })
    }

    pub(crate) fn render(&self, scope: &Scope<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var { var, filter, default } => {
                    let value = match var {
                        Var::Slot(name) => scope.slots.get(name).map(|v| match filter {
                            Filter::Spoken => v.spoken(),
                            Filter::Raw => v.to_string(),
                            Filter::Spell => spell(&v.to_string()),
                        }),
                        Var::Contact(f) => scope.contact.get(f).map(|s| apply(filter, s)),
                        Var::Fact(f) => scope.facts.get(f).map(|s| apply(filter, s)),
                    };
                    match value {
                        Some(v) if !v.trim().is_empty() => out.push_str(&v),
                        _ => out.push_str(default.as_deref().unwrap_or("")),
                    }
                }
            }
        }
        tidy(&out)
    }
}

fn apply(filter: &Filter, s: &str) -> String {
    match filter {
        Filter::Spell => spell(s),
        Filter::Spoken | Filter::Raw => s.to_string(),
    }
}

/// "12345" → "1 2 3 4 5": speech synthesis reads digits one by one instead of as a large number.
pub(crate) fn spell(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_whitespace()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Collapses the doubled spaces an empty placeholder leaves behind.
fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_space = false;
    for c in s.trim().chars() {
        if c == ' ' {
            if !last_space {
                out.push(c);
            }
            last_space = true;
        } else {
            if last_space && matches!(c, ',' | '.' | '?' | '!') {
                out.pop();
            }
            out.push(c);
            last_space = false;
        }
    }
    out
}

fn parse_placeholder(inner: &str) -> Result<Piece, String> {
    let (name, filter_src) = match inner.split_once('|') {
        Some((n, f)) => (n.trim(), Some(f.trim())),
        None => (inner, None),
    };
    let (filter, default) = match filter_src {
        None => (Filter::Spoken, None),
        Some("raw") => (Filter::Raw, None),
        Some("spell") => (Filter::Spell, None),
        Some(f) => match f.strip_prefix("default:") {
            Some(d) => (Filter::Spoken, Some(d.trim().to_string())),
            None => {
                return Err(format!(
                    "unknown filter \"{f}\" in \"{{{{{inner}}}}}\" (known: raw, spell, default:TEXT)"
                ));
            }
        },
    };
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let var = if let Some(f) = name.strip_prefix("contact.") {
        valid(f).then(|| Var::Contact(f.to_string()))
    } else if let Some(f) = name.strip_prefix("facts.") {
        valid(f).then(|| Var::Fact(f.to_string()))
    } else {
        valid(name).then(|| Var::Slot(name.to_string()))
    };
    let var = var.ok_or_else(|| format!("bad placeholder \"{{{{{inner}}}}}\""))?;
    Ok(Piece::Var { var, filter, default })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_slots_contact_and_facts_with_filters() -> Result<(), String> {
        let t = Template::parse(
            "Hi {{contact.name|default:there}}, order {{n|spell}} at {{facts.hours}}. {{missing}}Bye.",
        )?;
        let mut slots = BTreeMap::new();
        slots.insert("n".to_string(), SlotValue::Number(123));
        let facts = BTreeMap::from([("hours".to_string(), "9 to 5".to_string())]);
        let contact = BTreeMap::new();
        let scope = Scope {
            slots: &slots,
            contact: &contact,
            facts: &facts,
        };
        assert_eq!(t.render(&scope), "Hi there, order 1 2 3 at 9 to 5. Bye.");
        Ok(())
    }

    #[test]
    fn rejects_bad_placeholders() {
        assert!(Template::parse("{{ contact. }}").is_err());
        assert!(Template::parse("{{x|upper}}").is_err());
        assert!(Template::parse("{{x").is_err());
    }
}
