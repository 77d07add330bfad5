//! Constrained decoding: a byte-level grammar and the matcher that decides which tokens may come next.
//!
//! A [`Grammar`] is a fixed sequence of items — literal bytes and typed "blanks" (a JSON string, an
//! integer, a number, one of N alternatives). A JSON schema becomes
//! `{"name":"` ⟨string⟩ `,"day":"` ⟨one of the enum values⟩ `}`: keys in schema order, compact, so the
//! model only fills in values ("fill in the blanks"). Literal runs are forced without sampling, and at
//! every free step only the tokens whose bytes the [`Matcher`] accepts are allowed. Every blank is
//! bounded (string length, digit count), so generation always completes and the result always parses.
//!
//! The matcher works on bytes, not tokens, so it does not care how the model splits text: a token like
//! `","` that closes one value and starts the next literal is allowed like any other.

/// One typed blank of a grammar.
#[derive(Debug, Clone, PartialEq)]
pub enum Blank {
    /// The body of a JSON string and its closing quote (the opening quote is in the preceding
    /// literal). No escapes, no control characters, valid UTF-8, at most `max_len` bytes.
    JsonStringBody { max_len: usize },
    /// `-?(0|[1-9][0-9]*)` with at most `max_digits` digits.
    Integer { max_digits: usize },
    /// A JSON number, at most `max_len` bytes.
    Number { max_len: usize },
    /// Exactly one of these byte strings (index into [`Grammar::alternatives`]).
    OneOf(usize),
}

/// A piece of a grammar.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Literal(Vec<u8>),
    Blank(Blank),
}

/// A trie over byte strings, for [`Blank::OneOf`].
#[derive(Debug, Clone, PartialEq)]
pub struct Alternatives {
    /// Children of each node: (byte, node).
    edges: Vec<Vec<(u8, usize)>>,
    /// For each node, the index of the alternative that ends there.
    ends: Vec<Option<usize>>,
}

impl Alternatives {
    pub fn new(options: &[Vec<u8>]) -> Self {
        let mut t = Self {
            edges: vec![Vec::new()],
            ends: vec![None],
        };
        for (i, opt) in options.iter().enumerate() {
            let mut node = 0;
            for &b in opt {
                node = match t.edges[node].iter().find(|(eb, _)| *eb == b) {
                    Some(&(_, n)) => n,
                    None => {
                        t.edges.push(Vec::new());
                        t.ends.push(None);
                        let n = t.edges.len() - 1;
                        t.edges[node].push((b, n));
                        n
                    }
                };
            }
            if t.ends[node].is_none() {
                t.ends[node] = Some(i);
            }
        }
        t
    }

    fn step(&self, node: usize, b: u8) -> Option<usize> {
        self.edges[node].iter().find(|(eb, _)| *eb == b).map(|&(_, n)| n)
    }
}

/// The whole shape of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Grammar {
    pub items: Vec<Item>,
    pub alternatives: Vec<Alternatives>,
}

impl Grammar {
    /// Exactly one of `options`, verbatim.
    pub fn one_of(options: &[String]) -> Self {
        let opts: Vec<Vec<u8>> = options.iter().map(|s| s.as_bytes().to_vec()).collect();
        Self {
            items: vec![Item::Blank(Blank::OneOf(0))],
            alternatives: vec![Alternatives::new(&opts)],
        }
    }

    pub fn integer() -> Self {
        Self {
            items: vec![Item::Blank(Blank::Integer { max_digits: 18 })],
            alternatives: Vec::new(),
        }
    }
}

/// Where the matcher is inside a blank.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BlankState {
    /// JSON string body: bytes so far, UTF-8 continuation bytes still expected, closed by `"`.
    Str { len: usize, cont: u8, closed: bool },
    /// Integer / number: bytes so far and the DFA state.
    Num { len: usize, state: NumState, neg: bool },
    /// Node in the alternatives trie.
    Trie { node: usize },
}

/// JSON number DFA states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumState {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

impl NumState {
    fn accepting(self) -> bool {
        matches!(self, Self::Zero | Self::Int | Self::Frac | Self::Exp)
    }

    fn step(self, b: u8, integer_only: bool) -> Option<Self> {
        use NumState::*;
        let digit = b.is_ascii_digit();
        Some(match (self, b) {
            (Start, b'-') => Minus,
            (Start | Minus, b'0') => Zero,
            (Start | Minus, _) if digit => Int,
            (Int, _) if digit => Int,
            (Zero | Int, b'.') if !integer_only => Dot,
            (Dot | Frac, _) if digit => Frac,
            (Zero | Int | Frac, b'e' | b'E') if !integer_only => E,
            (E, b'+' | b'-') => ESign,
            (E | ESign | Exp, _) if digit => Exp,
            _ => return None,
        })
    }
}

/// A position in a grammar. `Copy`: the decoder copies it once per candidate token, so it holds no
/// allocation (the caller keeps the accepted bytes).
#[derive(Debug, Clone, Copy)]
pub struct Matcher<'g> {
    grammar: &'g Grammar,
    item: usize,
    /// Offset inside a literal.
    offset: usize,
    /// State inside a blank.
    blank: Option<BlankState>,
}

#[allow(clippy::collapsible_match)] // one arm per item kind reads better than guards
impl<'g> Matcher<'g> {
    pub fn new(grammar: &'g Grammar) -> Self {
        let mut m = Self {
            grammar,
            item: 0,
            offset: 0,
            blank: None,
        };
        m.enter_item();
        m
    }

    fn enter_item(&mut self) {
        self.offset = 0;
        self.blank = match self.grammar.items.get(self.item) {
            Some(Item::Blank(Blank::JsonStringBody { .. })) => Some(BlankState::Str {
                len: 0,
                cont: 0,
                closed: false,
            }),
            Some(Item::Blank(Blank::Integer { .. } | Blank::Number { .. })) => Some(BlankState::Num {
                len: 0,
                state: NumState::Start,
                neg: false,
            }),
            Some(Item::Blank(Blank::OneOf(_))) => Some(BlankState::Trie { node: 0 }),
            _ => None,
        };
    }

    /// Whether the current item may end here.
    fn item_can_end(&self) -> bool {
        match (self.grammar.items.get(self.item), self.blank) {
            (None, _) => true,
            (Some(Item::Literal(lit)), _) => self.offset == lit.len(),
            (Some(Item::Blank(_)), Some(BlankState::Str { closed, .. })) => closed,
            (Some(Item::Blank(_)), Some(BlankState::Num { state, .. })) => state.accepting(),
            (Some(Item::Blank(Blank::OneOf(a))), Some(BlankState::Trie { node })) => {
                self.grammar.alternatives[*a].ends[node].is_some()
            }
            _ => false,
        }
    }

    /// Feeds one byte to the current item without moving on; `false` if it does not fit there.
    fn feed_item(&mut self, b: u8) -> bool {
        let grammar = self.grammar;
        let Some(item) = grammar.items.get(self.item) else {
            return false;
        };
        match (item, &mut self.blank) {
            (Item::Literal(lit), _) => {
                if lit.get(self.offset) == Some(&b) {
                    self.offset += 1;
                    true
                } else {
                    false
                }
            }
            (Item::Blank(Blank::JsonStringBody { max_len }), Some(BlankState::Str { len, cont, closed })) => {
                if *closed {
                    return false;
                }
                if *cont > 0 {
                    if b & 0xC0 != 0x80 {
                        return false;
                    }
                    *cont -= 1;
                } else if b == b'"' {
                    *closed = true;
                    return true;
                } else if b < 0x20 || b == b'\\' || b == 0x7f {
                    return false;
                } else if b >= 0x80 {
                    *cont = match b {
                        0xC2..=0xDF => 1,
                        0xE0..=0xEF => 2,
                        0xF0..=0xF4 => 3,
                        _ => return false,
                    };
                }
                if *len >= *max_len {
                    return false;
                }
                *len += 1;
                true
            }
            (
                Item::Blank(blank @ (Blank::Integer { .. } | Blank::Number { .. })),
                Some(BlankState::Num { len, state, neg }),
            ) => {
                let (integer_only, max) = match blank {
                    Blank::Integer { max_digits } => (true, max_digits + usize::from(*neg)),
                    Blank::Number { max_len } => (false, *max_len),
                    _ => (false, 0),
                };
                if *len >= max {
                    return false;
                }
                if *len == 0 && b == b'-' {
                    *neg = true;
                }
                match state.step(b, integer_only) {
                    Some(next) => {
                        *state = next;
                        *len += 1;
                        true
                    }
                    None => false,
                }
            }
            (Item::Blank(Blank::OneOf(a)), Some(BlankState::Trie { node })) => {
                match grammar.alternatives[*a].step(*node, b) {
                    Some(next) => {
                        *node = next;
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }

    /// Feeds one byte; `false` (and the matcher is then unusable) if the grammar does not allow it.
    pub fn feed(&mut self, b: u8) -> bool {
        loop {
            // Try to continue the current item first; only when that fails and the item may end,
            // move on (a number ends when the next literal's first byte arrives).
            let saved = (self.offset, self.blank);
            if self.feed_item(b) {
                return true;
            }
            (self.offset, self.blank) = saved;
            if self.item >= self.grammar.items.len() || !self.item_can_end() {
                return false;
            }
            self.item += 1;
            self.enter_item();
        }
    }

    pub fn feed_all(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.feed(b))
    }

    /// Whether the answer may end here: every remaining item can be empty.
    pub fn can_finish(&self) -> bool {
        let mut m = *self;
        loop {
            if m.item >= m.grammar.items.len() {
                return true;
            }
            if !m.item_can_end() {
                return false;
            }
            m.item += 1;
            m.enter_item();
        }
    }

    /// Whether any further byte is possible.
    pub fn can_continue(&self) -> bool {
        (0u8..=255).any(|b| {
            let mut probe = *self;
            probe.feed(b)
        })
    }

    /// Bytes that must come next whatever the model says: the rest of the current literal, once
    /// the blank before it is complete and cannot continue.
    pub fn forced(&self) -> Vec<u8> {
        let mut m = *self;
        let mut out = Vec::new();
        loop {
            match m.grammar.items.get(m.item) {
                Some(Item::Literal(lit)) if m.offset < lit.len() => {
                    out.extend_from_slice(&lit[m.offset..]);
                    m.offset = lit.len();
                }
                Some(Item::Literal(_)) => {
                    m.item += 1;
                    m.enter_item();
                }
                Some(Item::Blank(_)) if out.is_empty() => {
                    // A finished blank that nothing can extend hands over to the next item.
                    if m.item_can_end()
                        && !(0u8..=255).any(|b| {
                            let mut probe = m;
                            probe.feed_item(b)
                        })
                    {
                        m.item += 1;
                        m.enter_item();
                    } else {
                        return out;
                    }
                }
                _ => return out,
            }
        }
    }

    /// For a [`Blank::OneOf`] grammar: which alternative was matched.
    pub fn matched_alternative(&self) -> Option<usize> {
        self.grammar
            .items
            .iter()
            .enumerate()
            .find_map(|(i, item)| match item {
                Item::Blank(Blank::OneOf(a)) if i == self.item => match self.blank {
                    Some(BlankState::Trie { node }) => self.grammar.alternatives[*a].ends[node],
                    _ => None,
                },
                _ => None,
            })
    }
}

/// Error from turning a JSON schema into a grammar.
#[derive(Debug, thiserror::Error)]
#[error("unsupported JSON schema: {0}")]
pub struct SchemaError(pub String);

/// One property of the supported schema subset.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyKind {
    String { max_len: usize },
    Enum(Vec<String>),
    Integer,
    Number,
    Boolean,
}

/// The supported JSON schema subset: an object whose properties are strings, string enums, integers,
/// numbers or booleans. Keys keep the schema's order (the order the model fills them in).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSchema {
    pub properties: Vec<(String, PropertyKind)>,
}

/// Default cap on a string value; a runaway tiny model is cut off and the string closed.
const DEFAULT_STRING_MAX: usize = 48;

impl ObjectSchema {
    pub fn parse(schema: &str) -> Result<Self, SchemaError> {
        // `serde_json::Value` sorts object keys; the order of properties matters here, so walk the
        // schema with an order-preserving map type.
        let raw: RawSchema =
            serde_json::from_str(schema).map_err(|e| SchemaError(format!("not JSON: {e}")))?;
        if raw.ty.as_deref() != Some("object") {
            return Err(SchemaError("top level must be {\"type\": \"object\"}".into()));
        }
        let props = raw
            .properties
            .ok_or_else(|| SchemaError("object needs `properties`".into()))?;
        if props.0.is_empty() {
            return Err(SchemaError("object needs at least one property".into()));
        }
        let mut properties = Vec::new();
        for (name, p) in props.0 {
            let kind = if let Some(values) = p.enum_values {
                let values: Vec<String> = values
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => Ok(s),
                        other => Err(SchemaError(format!(
                            "`{name}`: only string enums are supported, got {other}"
                        ))),
                    })
                    .collect::<Result<_, _>>()?;
                if values.is_empty() {
                    return Err(SchemaError(format!("`{name}`: empty enum")));
                }
                PropertyKind::Enum(values)
            } else {
                match p.ty.as_deref() {
                    Some("string") => PropertyKind::String {
                        max_len: p.max_length.unwrap_or(DEFAULT_STRING_MAX).clamp(1, 1024),
                    },
                    Some("integer") => PropertyKind::Integer,
                    Some("number") => PropertyKind::Number,
                    Some("boolean") => PropertyKind::Boolean,
                    other => {
                        return Err(SchemaError(format!(
                            "`{name}`: type {other:?} is not supported (string, integer, number, boolean, enum)"
                        )));
                    }
                }
            };
            properties.push((name, kind));
        }
        Ok(Self { properties })
    }

    /// The fill-in-the-blanks grammar: `{"k1":<v1>,"k2":<v2>}`, every property present.
    pub fn grammar(&self) -> Grammar {
        let mut items = Vec::new();
        let mut alternatives = Vec::new();
        let mut lit = b"{".to_vec();
        for (i, (name, kind)) in self.properties.iter().enumerate() {
            if i > 0 {
                lit.push(b',');
            }
            lit.extend_from_slice(serde_json::to_string(name).unwrap_or_default().as_bytes());
            lit.push(b':');
            let blank = match kind {
                PropertyKind::String { max_len } => {
                    lit.push(b'"');
                    Blank::JsonStringBody { max_len: *max_len }
                }
                PropertyKind::Enum(values) => {
                    lit.push(b'"');
                    let opts: Vec<Vec<u8>> = values
                        .iter()
                        .map(|v| {
                            let quoted = serde_json::to_string(v).unwrap_or_default();
                            quoted.as_bytes()[1..].to_vec() // body and closing quote
                        })
                        .collect();
                    alternatives.push(Alternatives::new(&opts));
                    Blank::OneOf(alternatives.len() - 1)
                }
                PropertyKind::Integer => Blank::Integer { max_digits: 15 },
                PropertyKind::Number => Blank::Number { max_len: 24 },
                PropertyKind::Boolean => {
                    alternatives.push(Alternatives::new(&[b"true".to_vec(), b"false".to_vec()]));
                    Blank::OneOf(alternatives.len() - 1)
                }
            };
            items.push(Item::Literal(std::mem::take(&mut lit)));
            items.push(Item::Blank(blank));
        }
        items.push(Item::Literal(b"}".to_vec()));
        Grammar { items, alternatives }
    }
}

#[derive(serde::Deserialize)]
struct RawSchema {
    #[serde(rename = "type")]
    ty: Option<String>,
    properties: Option<OrderedProps>,
}

#[derive(serde::Deserialize)]
struct RawProperty {
    #[serde(rename = "type")]
    ty: Option<String>,
    #[serde(rename = "enum")]
    enum_values: Option<Vec<serde_json::Value>>,
    #[serde(rename = "maxLength")]
    max_length: Option<usize>,
}

/// `properties` in document order.
struct OrderedProps(Vec<(String, RawProperty)>);

impl<'de> serde::Deserialize<'de> for OrderedProps {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedProps;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of property schemas")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OrderedProps, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, RawProperty>()? {
                    out.push((k, v));
                }
                Ok(OrderedProps(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
#[allow(clippy::clone_on_copy, clippy::collapsible_match)]
mod tests {
    use super::*;

    #[test]
    fn one_of_accepts_only_labels() {
        let g = Grammar::one_of(&["billing".into(), "bill".into(), "sales".into()]);
        let mut m = Matcher::new(&g);
        assert!(m.clone().feed_all(b"sales"));
        assert!(!m.clone().feed_all(b"salt"));
        assert!(m.feed_all(b"bill"));
        assert!(m.can_finish(), "bill is complete");
        assert!(m.can_continue(), "billing extends it");
        assert_eq!(m.matched_alternative(), Some(1));
        assert!(m.feed_all(b"ing"));
        assert!(!m.can_continue());
        assert_eq!(m.matched_alternative(), Some(0));
    }

    #[test]
    fn integer_rejects_junk_and_leading_zero() {
        let g = Grammar::integer();
        let m = Matcher::new(&g);
        assert!(m.clone().feed_all(b"-42"));
        assert!(!m.clone().feed_all(b"042"));
        assert!(!m.clone().feed_all(b"4a"));
        let mut n = m.clone();
        assert!(!n.can_finish());
        assert!(n.feed_all(b"7"));
        assert!(n.can_finish());
        let mut long = m.clone();
        assert!(long.feed_all(b"-123456789012345678"));
        assert!(!long.feed(b'9'), "more than 18 digits");
    }

    #[test]
    fn schema_grammar_forces_keys_in_order_and_parses() {
        let schema = ObjectSchema::parse(
            r#"{"type":"object","properties":{"name":{"type":"string"},"day":{"enum":["Monday","Tuesday"]},
               "hour":{"type":"integer"},"ok":{"type":"boolean"},"x":{"type":"number"}}}"#,
        )
        .expect("schema");
        assert_eq!(schema.properties[0].0, "name");
        assert_eq!(schema.properties[1].0, "day");
        let g = schema.grammar();
        let mut m = Matcher::new(&g);
        assert_eq!(m.forced(), br#"{"name":""#.to_vec());
        assert!(m.feed_all(br#"{"name":"Ada Lovelace"#));
        assert!(m.forced().is_empty(), "string may go on");
        assert!(
            m.feed_all(br#"","#),
            "a token may close the value and start the next key"
        );
        assert_eq!(m.forced(), br#""day":""#.to_vec());
        assert!(m.feed_all(br#""day":"Tu"#));
        assert!(!m.clone().feed(b'x'));
        assert!(m.feed_all(br#"esday""#));
        assert_eq!(m.forced(), br#","hour":"#.to_vec());
        assert!(m.feed_all(br#","hour":15,"ok":true,"x":-1.5e3}"#));
        assert!(m.can_finish());
        assert!(!m.can_continue());
        let text = br#"{"name":"Ada Lovelace","day":"Tuesday","hour":15,"ok":true,"x":-1.5e3}"#;
        let v: serde_json::Value = serde_json::from_slice(text).expect("valid JSON");
        assert_eq!(v["name"], "Ada Lovelace");
        assert_eq!(v["hour"], 15);
    }

    #[test]
    fn string_blank_rejects_escapes_controls_and_bad_utf8() {
        let schema =
            ObjectSchema::parse(r#"{"type":"object","properties":{"a":{"type":"string","maxLength":4}}}"#)
                .expect("schema");
        let g = schema.grammar();
        let mut m = Matcher::new(&g);
        assert!(m.feed_all(br#"{"a":""#));
        assert!(!m.clone().feed(b'\\'));
        assert!(!m.clone().feed(b'\n'));
        assert!(!m.clone().feed_all(&[0xE2, b'a']));
        assert!(m.clone().feed_all("é".as_bytes()));
        assert!(m.feed_all(b"abcd"));
        assert!(!m.clone().feed(b'e'), "maxLength");
        assert!(m.feed_all(b"\"}"));
    }

    #[test]
    fn unsupported_schemas_are_refused() {
        assert!(ObjectSchema::parse(r#"{"type":"array"}"#).is_err());
        assert!(ObjectSchema::parse(r#"{"type":"object","properties":{"a":{"type":"object"}}}"#).is_err());
        assert!(ObjectSchema::parse("nope").is_err());
    }
}
