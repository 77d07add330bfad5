//! Branch conditions: a tiny, deterministic expression language over slots and contact fields.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | compare
//! compare := name "is set" | name "is not set" | name OP value
//! OP      := == | != | < | <= | > | >=
//! value   := number | "quoted text" | 'quoted text' | bare_word   (yes/no/true/false for yes/no slots)
//! name    := slot | contact.field
//! ```
//! A comparison on a slot that has no value is false (`!=` included); use `is set` to test for it.

use std::collections::BTreeMap;

use crate::SlotValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operand {
    Slot(String),
    Contact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    Or(Vec<Cond>),
    And(Vec<Cond>),
    Not(Box<Cond>),
    IsSet(Operand),
    Compare(Operand, Op, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Op(Op),
    Open,
    Close,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::Open);
            i += 1;
        } else if c == ')' {
            out.push(Tok::Close);
            i += 1;
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or_else(|| "unclosed quote".to_string())?;
            out.push(Tok::Quoted(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let (op, len) = match two.as_str() {
                "==" => (Op::Eq, 2),
                "!=" => (Op::Ne, 2),
                "<=" => (Op::Le, 2),
                ">=" => (Op::Ge, 2),
                _ if c == '<' => (Op::Lt, 1),
                _ if c == '>' => (Op::Gt, 1),
                _ => return Err(format!("unknown operator \"{two}\" (use ==, !=, <, <=, >, >=)")),
            };
            out.push(Tok::Op(op));
            i += len;
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '(' | ')' | '=' | '!' | '<' | '>' | '"' | '\'')
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }
    fn expr(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.and()?];
        while self.peek_word("or") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::Or(parts)
        })
    }
    fn and(&mut self) -> Result<Cond, String> {
        let mut parts = vec![self.unary()?];
        while self.peek_word("and") {
            self.pos += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::And(parts)
        })
    }
    fn unary(&mut self) -> Result<Cond, String> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        if self.toks.get(self.pos) == Some(&Tok::Open) {
            self.pos += 1;
            let e = self.expr()?;
            if self.toks.get(self.pos) != Some(&Tok::Close) {
                return Err("missing \")\"".to_string());
            }
            self.pos += 1;
            return Ok(e);
        }
        let name = match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => w.clone(),
            other => return Err(format!("expected a slot name, found {}", describe(other))),
        };
        self.pos += 1;
        let operand = match name.strip_prefix("contact.") {
            Some(f) => Operand::Contact(f.to_string()),
            None => Operand::Slot(name),
        };
        if self.peek_word("is") {
            self.pos += 1;
            let negate = self.peek_word("not");
            if negate {
                self.pos += 1;
            }
            if !self.peek_word("set") {
                return Err("expected \"is set\" or \"is not set\"".to_string());
            }
            self.pos += 1;
            let c = Cond::IsSet(operand);
            return Ok(if negate { Cond::Not(Box::new(c)) } else { c });
        }
        let op = match self.toks.get(self.pos) {
            Some(Tok::Op(op)) => *op,
            other => {
                return Err(format!(
                    "expected an operator after \"{}\", found {}",
                    show(&operand),
                    describe(other)
                ));
            }
        };
        self.pos += 1;
        let value = match self.toks.get(self.pos) {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => w.clone(),
            other => return Err(format!("expected a value, found {}", describe(other))),
        };
        self.pos += 1;
        Ok(Cond::Compare(operand, op, value))
    }
}

fn show(o: &Operand) -> String {
    match o {
        Operand::Slot(s) => s.clone(),
        Operand::Contact(f) => format!("contact.{f}"),
    }
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end".to_string(),
        Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => format!("\"{w}\""),
        Some(Tok::Op(_)) => "an operator".to_string(),
        Some(Tok::Open) => "\"(\"".to_string(),
        Some(Tok::Close) => "\")\"".to_string(),
    }
}

impl Cond {
    pub(crate) fn parse(src: &str) -> Result<Cond, String> {
        let toks = lex(src)?;
        if toks.is_empty() {
            return Err("empty condition".to_string());
        }
        let mut p = Parser { toks, pos: 0 };
        let c = p.expr()?;
        if p.pos != p.toks.len() {
            return Err(format!(
                "unexpected {} after the condition",
                describe(p.toks.get(p.pos))
            ));
        }
        Ok(c)
    }

    /// Every (operand, compared value) pair, for validation.
    pub(crate) fn operands(&self, out: &mut Vec<(Operand, Option<String>)>) {
        match self {
            Cond::Or(v) | Cond::And(v) => v.iter().for_each(|c| c.operands(out)),
            Cond::Not(c) => c.operands(out),
            Cond::IsSet(o) => out.push((o.clone(), None)),
            Cond::Compare(o, _, v) => out.push((o.clone(), Some(v.clone()))),
        }
    }

    pub(crate) fn eval(
        &self,
        slots: &BTreeMap<String, SlotValue>,
        contact: &BTreeMap<String, String>,
    ) -> bool {
        match self {
            Cond::Or(v) => v.iter().any(|c| c.eval(slots, contact)),
            Cond::And(v) => v.iter().all(|c| c.eval(slots, contact)),
            Cond::Not(c) => !c.eval(slots, contact),
            Cond::IsSet(o) => lookup(o, slots, contact).is_some(),
            Cond::Compare(o, op, want) => match lookup(o, slots, contact) {
                None => false,
                Some(have) => compare(&have, *op, want),
            },
        }
    }
}

fn lookup(
    o: &Operand,
    slots: &BTreeMap<String, SlotValue>,
    contact: &BTreeMap<String, String>,
) -> Option<SlotValue> {
    match o {
        Operand::Slot(s) => slots.get(s).cloned(),
        Operand::Contact(f) => contact
            .get(f)
            .filter(|v| !v.trim().is_empty())
            .map(|v| SlotValue::Text(v.clone())),
    }
}

fn compare(have: &SlotValue, op: Op, want: &str) -> bool {
    let ord = match have {
        SlotValue::Number(n) => match want.trim().parse::<i64>() {
            Ok(w) => n.cmp(&w),
            Err(_) => return op == Op::Ne,
        },
        SlotValue::YesNo(b) => {
            let w = matches!(want.trim().to_ascii_lowercase().as_str(), "yes" | "true");
            if *b == w {
                std::cmp::Ordering::Equal
            } else {
                std::cmp::Ordering::Less
            }
        }
        other => other.to_string().to_lowercase().cmp(&want.trim().to_lowercase()),
    };
    match op {
        Op::Eq => ord.is_eq(),
        Op::Ne => ord.is_ne(),
        Op::Lt => ord.is_lt(),
        Op::Le => ord.is_le(),
        Op::Gt => ord.is_gt(),
        Op::Ge => ord.is_ge(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates() -> Result<(), String> {
        let slots = BTreeMap::from([
            ("rating".to_string(), SlotValue::Number(2)),
            ("ok".to_string(), SlotValue::YesNo(true)),
            ("why".to_string(), SlotValue::Label("cancel".to_string())),
        ]);
        let contact = BTreeMap::new();
        let t = |s: &str| Cond::parse(s).map(|c| c.eval(&slots, &contact));
        assert!(t("rating <= 2")?);
        assert!(!t("rating > 2")?);
        assert!(t("ok == yes and why == \"cancel\"")?);
        assert!(t("not (why == reschedule) or rating == 5")?);
        assert!(t("comment is not set")?);
        assert!(!t("comment != x")?);
        assert!(!t("contact.name is set")?);
        Ok(())
    }

    #[test]
    fn reports_syntax_errors() {
        assert!(Cond::parse("rating =< 2").is_err());
        assert!(Cond::parse("rating").is_err());
        assert!(Cond::parse("(a == 1").is_err());
        assert!(Cond::parse("a == 1 b").is_err());
    }
}
