//! Reading and checking a flow file: YAML → [`FlowSpec`] (serde) → [`Flow`] (validated).
//!
//! serde stops at the first error, which is right for the shape (a misspelt key makes everything after
//! it doubtful); the semantic checks then run to the end and report every problem, each at the line of
//! the node it is about, found through a path → position map built from the YAML parser's events.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;

use saphyr_parser::{Event, Parser, Span};

use crate::condition::{Cond, Operand};
use crate::flow::{Ask, Faq, Flow, Global, Lookup, Slot, Step, Table, Webhook};
use crate::spec::{FlowSpec, StepSpec};
use crate::template::{Template, Var};
use crate::understand::{HUMAN_PHRASES, OPT_OUT_PHRASES};
use crate::{FlowError, FlowErrors, SlotType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Path (`steps.menu.next`, `steps.check.branch.0.goto`) → (position of the key, position of the value).
#[derive(Debug, Default)]
pub(crate) struct Positions {
    map: HashMap<String, (Pos, Pos)>,
}

impl Positions {
    pub(crate) fn build(src: &str) -> Positions {
        let mut w = Walker {
            parser: Parser::new_from_str(src),
            map: HashMap::new(),
        };
        while let Some((ev, span)) = w.next() {
            if matches!(
                ev,
                Event::MappingStart(..) | Event::SequenceStart(..) | Event::Scalar(..)
            ) {
                let p = pos(&span);
                w.node(ev, p, String::new(), p);
                break;
            }
        }
        Positions { map: w.map }
    }

    /// Position of the value at `path`, or of its closest ancestor that has one.
    pub(crate) fn value(&self, path: &str) -> Option<Pos> {
        self.find(path).map(|(_, v)| v)
    }

    /// Position of the key of `path` (where a mapping entry starts).
    pub(crate) fn key(&self, path: &str) -> Option<Pos> {
        self.find(path).map(|(k, _)| k)
    }

    fn find(&self, path: &str) -> Option<(Pos, Pos)> {
        let mut p = path;
        loop {
            if let Some(v) = self.map.get(p) {
                return Some(*v);
            }
            p = &p[..p.rfind('.')?];
        }
    }
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

struct Walker<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    map: HashMap<String, (Pos, Pos)>,
}

impl<'a> Walker<'a> {
    fn next(&mut self) -> Option<(Event<'a>, Span)> {
        self.parser.next_event()?.ok()
    }

    fn node(&mut self, ev: Event<'a>, at: Pos, path: String, key: Pos) {
        self.map.insert(path.clone(), (key, at));
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        match ev {
            Event::MappingStart(..) => loop {
                let Some((k, kspan)) = self.next() else { return };
                let kpos = pos(&kspan);
                let name = match k {
                    Event::MappingEnd => return,
                    Event::Scalar(ref s, ..) => s.to_string(),
                    other => {
                        // A complex key: walk it to stay in step with the event stream, then its value.
                        self.node(other, kpos, format!("{path}.?"), kpos);
                        "?".to_string()
                    }
                };
                let Some((v, vspan)) = self.next() else { return };
                self.node(v, pos(&vspan), join(&name), kpos);
            },
            Event::SequenceStart(..) => {
                let mut i = 0;
                loop {
                    let Some((e, s)) = self.next() else { return };
                    if matches!(e, Event::SequenceEnd) {
                        return;
                    }
                    let p = pos(&s);
                    self.node(e, p, join(&i.to_string()), p);
                    i += 1;
                }
            }
            _ => {}
        }
    }
}

/// Collects errors with positions.
struct Checker<'a> {
    file: &'a str,
    positions: &'a Positions,
    errors: Vec<FlowError>,
}

impl Checker<'_> {
    fn error_at(&mut self, at: Option<Pos>, message: String) {
        self.errors.push(FlowError {
            file: self.file.to_string(),
            line: at.map(|p| p.line),
            column: at.map(|p| p.column),
            message,
        });
    }
    /// An error about the value at `path`.
    fn at(&mut self, path: &str, message: String) {
        let p = self.positions.value(path);
        self.error_at(p, message);
    }
    /// An error about the entry `path` as a whole (points at its key).
    fn at_key(&mut self, path: &str, message: String) {
        let p = self.positions.key(path);
        self.error_at(p, message);
    }
    fn template(&mut self, path: &str, src: &str) -> Template {
        match Template::parse(src) {
            Ok(t) => t,
            Err(e) => {
                self.at(path, e);
                Template::empty()
            }
        }
    }
}

fn dtmf_key(s: &str) -> Option<char> {
    let mut cs = s.chars();
    match (cs.next(), cs.next()) {
        (Some(c), None) if c.is_ascii_digit() || c == '*' || c == '#' => Some(c),
        _ => None,
    }
}

/// serde_yaml_ng's message without its trailing " at line L column C", with a suggestion for a misspelt key.
fn serde_message(e: &serde_yaml_ng::Error) -> String {
    let mut msg = without_positions(&e.to_string());
    if let (Some(start), Some(exp)) = (msg.find("unknown field `"), msg.find(", expected")) {
        let unknown = msg[start + 15..].split('`').next().unwrap_or("").to_string();
        let known: Vec<String> = msg[exp..]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        msg.truncate(exp);
        if let Some(best) = known
            .iter()
            .map(|k| (edit_distance(&unknown, k), k))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
        {
            msg.push_str(&format!(" (did you mean `{}`?)", best.1));
        }
    }
    msg
}

/// Removes every " at line L column C" (the position is reported separately).
fn without_positions(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        let after = &after[digits..];
        match after.strip_prefix(" column ") {
            Some(col) if digits > 0 => {
                let d = col.chars().take_while(char::is_ascii_digit).count();
                rest = &col[d..];
            }
            _ => {
                out.push_str(" at line ");
                rest = &rest[i + " at line ".len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(crate) fn yaml_error(file: &str, e: &serde_yaml_ng::Error) -> FlowError {
    let loc = e.location();
    FlowError {
        file: file.to_string(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message: serde_message(e),
    }
}

/// A file's text and its name for messages; an unreadable file is an error naming it (`what`: "flow").
pub(crate) fn read_source(path: &Path, what: &str) -> Result<(String, String), FlowError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => Ok((src, file)),
        Err(e) => Err(FlowError {
            file,
            line: None,
            column: None,
            message: format!("cannot read the {what} file: {e}"),
        }),
    }
}

impl Flow {
    /// Reads and validates a flow file. Tables with a `file:` are read relative to the flow's directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Flow, FlowErrors> {
        let path = path.as_ref();
        let (src, file) = read_source(path, "flow")?;
        Flow::parse(&src, &file, path.parent())
    }

    /// Parses and validates flow YAML. `file` is only used in error messages; `base_dir` is where table
    /// files are looked up (`None`: a table with `file:` is an error).
    pub fn parse(src: &str, file: &str, base_dir: Option<&Path>) -> Result<Flow, FlowErrors> {
        let spec: FlowSpec = serde_yaml_ng::from_str(src).map_err(|e| yaml_error(file, &e))?;
        let positions = Positions::build(src);
        let mut c = Checker {
            file,
            positions: &positions,
            errors: Vec::new(),
        };
        let flow = build(&mut c, spec, base_dir);
        if c.errors.is_empty() {
            Ok(flow)
        } else {
            let mut errors = c.errors;
            errors.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
            errors.dedup();
            Err(FlowErrors(errors))
        }
    }
}

fn build(c: &mut Checker<'_>, spec: FlowSpec, base_dir: Option<&Path>) -> Flow {
    // Slots
    let mut slots = BTreeMap::new();
    for (name, s) in &spec.slots {
        let path = format!("slots.{name}");
        let slot_type = match s.slot_type {
            Some(t) => t,
            None => {
                c.at_key(
                    &path,
                    format!("slot \"{name}\" has no type (text, number, yes_no, datetime, phone or one_of)"),
                );
                SlotType::Text
            }
        };
        if slot_type == SlotType::OneOf && s.options.is_empty() {
            c.at_key(&path, format!("one_of slot \"{name}\" has no options"));
        }
        for (label, synonyms) in &s.options {
            for syn in synonyms.iter().filter(|w| w.starts_with('$')) {
                if !["$yes", "$no", crate::understand::QUESTION_SYNONYM].contains(&syn.as_str()) {
                    c.at(
                        &format!("{path}.options.{label}"),
                        format!("unknown synonym {syn:?} (the special ones are $yes, $no and $question)"),
                    );
                }
            }
        }
        if !matches!(slot_type, SlotType::OneOf | SlotType::Number) && !s.options.is_empty() {
            c.at(
                &format!("{path}.options"),
                format!("options only apply to one_of and number slots, \"{name}\" is {slot_type}"),
            );
        }
        if slot_type == SlotType::Number {
            // Words for numbers ("excellent" for 5 on a rating): each label is a number the slot takes.
            for (label, synonyms) in &s.options {
                let in_range = |n: i64| s.min.is_none_or(|lo| n >= lo) && s.max.is_none_or(|hi| n <= hi);
                if !label.trim().parse::<i64>().is_ok_and(in_range) {
                    c.at(
                        &format!("{path}.options.{label}"),
                        format!("number slot \"{name}\": option \"{label}\" is not a number within its min and max"),
                    );
                }
                if let Some(syn) = synonyms.iter().find(|w| w.starts_with('$')) {
                    c.at(
                        &format!("{path}.options.{label}"),
                        format!("number slot \"{name}\": {syn:?} only applies to one_of slots"),
                    );
                }
            }
        }
        if slot_type != SlotType::Number && (s.min.is_some() || s.max.is_some()) {
            c.at(
                &format!("{path}.min"),
                format!("min/max only apply to number slots, \"{name}\" is {slot_type}"),
            );
        }
        if let (Some(lo), Some(hi)) = (s.min, s.max)
            && lo > hi
        {
            c.at(
                &format!("{path}.max"),
                format!("slot \"{name}\": max {hi} is below min {lo}"),
            );
        }
        if s.person_name && slot_type != SlotType::Text {
            c.at(
                &format!("{path}.person_name"),
                "person_name only applies to text slots".to_string(),
            );
        }
        slots.insert(
            name.clone(),
            Slot {
                name: name.clone(),
                slot_type,
                description: s.description.clone(),
                options: s.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                min: s.min,
                max: s.max,
                person_name: s.person_name,
            },
        );
    }

    // Tables
    let mut tables = BTreeMap::new();
    for (name, t) in &spec.tables {
        let path = format!("tables.{name}");
        let table = match (&t.file, t.rows.is_empty()) {
            (Some(_), false) => {
                c.at_key(&path, format!("table \"{name}\" has both file and rows; use one"));
                None
            }
            (None, true) => {
                c.at_key(&path, format!("table \"{name}\" has neither file nor rows"));
                None
            }
            (None, false) => {
                let mut columns: Vec<String> = Vec::new();
                for r in &t.rows {
                    for k in r.keys() {
                        if !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                }
                Some(Table {
                    columns,
                    rows: t.rows.clone(),
                })
            }
            (Some(f), true) => match base_dir {
                None => {
                    c.at(
                        &format!("{path}.file"),
                        "table files need the flow's directory (use Flow::load)".into(),
                    );
                    None
                }
                Some(dir) => {
                    let p = dir.join(f);
                    match std::fs::read_to_string(&p) {
                        Ok(text) => match parse_csv(&text) {
                            Ok(t) => Some(t),
                            Err((line, msg)) => {
                                c.errors.push(FlowError {
                                    file: p.display().to_string(),
                                    line: Some(line),
                                    column: None,
                                    message: msg,
                                });
                                None
                            }
                        },
                        Err(e) => {
                            c.at(
                                &format!("{path}.file"),
                                format!("cannot read table file {}: {e}", p.display()),
                            );
                            None
                        }
                    }
                }
            },
        };
        if let Some(t) = table {
            tables.insert(name.clone(), t);
        }
    }

    let step_exists = |s: &str| spec.steps.contains_key(s);
    let mut target = |c: &mut Checker<'_>, path: &str, from: &str, t: &str| {
        if !step_exists(t) {
            let near = spec
                .steps
                .keys()
                .map(|k| (edit_distance(t, k), k))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, k)| format!(" (did you mean \"{k}\"?)"))
                .unwrap_or_default();
            c.at(
                path,
                format!("step \"{from}\" goes to unknown step \"{t}\"{near}"),
            );
        }
    };

    // Global handlers
    let g = &spec.global;
    let key = |c: &mut Checker<'_>, path: &str, k: &Option<String>| -> Option<char> {
        let k = k.as_deref()?;
        let d = dtmf_key(k);
        if d.is_none() {
            c.at(path, format!("DTMF key \"{k}\" must be a single digit, * or #"));
        }
        d
    };
    if let Some(h) = &g.human {
        target(c, "global.human.goto", "global.human", &h.goto);
    }
    if let Some(t) = &g.misunderstanding.goto {
        target(c, "global.misunderstanding.goto", "global.misunderstanding", t);
    }
    let human_dtmf = g
        .human
        .as_ref()
        .and_then(|h| key(c, "global.human.dtmf", &h.dtmf));
    let opt_out_dtmf = key(c, "global.opt_out.dtmf", &g.opt_out.dtmf);
    if let (Some(a), Some(b)) = (human_dtmf, opt_out_dtmf)
        && a == b
    {
        c.at(
            "global.opt_out.dtmf",
            format!("DTMF key \"{a}\" is used both for a person and for opt-out"),
        );
    }
    let mut human_phrases: Vec<String> = HUMAN_PHRASES.iter().map(|s| s.to_string()).collect();
    if let Some(h) = &g.human {
        human_phrases.extend(h.phrases.iter().cloned());
    }
    let mut opt_out_phrases: Vec<String> = OPT_OUT_PHRASES.iter().map(|s| s.to_string()).collect();
    opt_out_phrases.extend(g.opt_out.phrases.iter().cloned());
    let opt = |c: &mut Checker<'_>, path: &str, s: &Option<String>| s.as_ref().map(|s| c.template(path, s));
    let or_default = |c: &mut Checker<'_>, path: &str, s: &Option<String>, d: &str| {
        c.template(path, s.as_deref().unwrap_or(d))
    };
    let global = Global {
        silence_timeout_ms: g.silence.timeout_ms.unwrap_or(6000),
        silence_max: g.silence.max.unwrap_or(2).max(1),
        silence_reprompt: opt(c, "global.silence.reprompt", &g.silence.reprompt),
        silence_goodbye: or_default(
            c,
            "global.silence.goodbye",
            &g.silence.goodbye,
            "I can't hear anything, so I'll end the call now. Goodbye.",
        ),
        human_goto: g.human.as_ref().map(|h| h.goto.clone()),
        human_phrases,
        human_dtmf,
        opt_out_enabled: !g.opt_out.disabled,
        opt_out_phrases,
        opt_out_dtmf,
        opt_out_say: or_default(
            c,
            "global.opt_out.say",
            &g.opt_out.say,
            "Understood. We won't call you again. Goodbye.",
        ),
        misunderstanding_max: g.misunderstanding.max.unwrap_or(3).max(1),
        misunderstanding_goto: g.misunderstanding.goto.clone(),
        misunderstanding_say: opt(c, "global.misunderstanding.say", &g.misunderstanding.say),
        no_match: or_default(c, "global.no_match", &g.no_match, "Sorry, I didn't catch that."),
    };

    // Steps
    if !step_exists(&spec.start) {
        c.at(
            "start",
            format!("the start step \"{}\" does not exist", spec.start),
        );
    }
    let mut steps = BTreeMap::new();
    for (name, s) in &spec.steps {
        // Names are written in `next:` and `routes:` and shown in the call log's no-matches
        // (`step: words`), so they stay plain words.
        if name.is_empty()
            || !name
                .chars()
                .all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '-')
        {
            c.at_key(
                &format!("steps.{name}"),
                format!("step name \"{name}\": use letters, digits, _ and - only"),
            );
        }
        if let Some(step) = build_step(c, &mut target, name, s, &slots, &tables) {
            steps.insert(name.clone(), step);
        }
    }

    if global.misunderstanding_goto.is_none() {
        for (name, st) in &steps {
            if let Step::Ask(a) = st
                && a.on_fail.is_none()
            {
                c.at_key(
                    &format!("steps.{name}"),
                    format!(
                        "ask step \"{name}\" needs `on_fail` (where to go after max_tries), \
                         or set global.misunderstanding.goto"
                    ),
                );
            }
        }
    }

    // Templates refer to known names
    let mut templates: Vec<(String, &Template)> = Vec::new();
    for (name, st) in &steps {
        let p = format!("steps.{name}");
        match st {
            Step::Say { text, .. } => templates.push((format!("{p}.say"), text)),
            Step::Ask(a) => {
                templates.push((format!("{p}.prompt"), &a.prompt));
                templates.extend(a.reprompt.iter().map(|t| (format!("{p}.reprompt"), t)));
                templates.extend(a.no_match.iter().map(|t| (format!("{p}.no_match"), t)));
                templates.extend(a.confirm.iter().map(|t| (format!("{p}.confirm"), t)));
            }
            Step::Respond { instructions, .. } => templates.push((format!("{p}.respond"), instructions)),
            Step::Webhook(w) => {
                templates.push((format!("{p}.webhook.url"), &w.url));
                templates.extend(w.body.iter().map(|(k, t)| (format!("{p}.webhook.body.{k}"), t)));
                templates.extend(
                    w.headers
                        .iter()
                        .map(|(k, t)| (format!("{p}.webhook.headers.{k}"), t)),
                );
            }
            Step::Transfer { to, say, .. } => {
                templates.push((format!("{p}.transfer.to"), to));
                templates.extend(say.iter().map(|t| (format!("{p}.transfer.say"), t)));
            }
            Step::End { say, .. } => templates.extend(say.iter().map(|t| (format!("{p}.end.say"), t))),
            Step::Branch { .. } | Step::Lookup(_) => {}
        }
    }
    templates.extend(
        global
            .silence_reprompt
            .iter()
            .map(|t| ("global.silence.reprompt".to_string(), t)),
    );
    templates.push(("global.silence.goodbye".to_string(), &global.silence_goodbye));
    templates.push(("global.opt_out.say".to_string(), &global.opt_out_say));
    templates.push(("global.no_match".to_string(), &global.no_match));
    templates.extend(
        global
            .misunderstanding_say
            .iter()
            .map(|t| ("global.misunderstanding.say".to_string(), t)),
    );
    let voicemail = spec.voicemail.as_deref().map(|v| c.template("voicemail", v));
    if let Some(v) = &voicemail {
        templates.push(("voicemail".to_string(), v));
    }
    let mut template_errors = Vec::new();
    for (path, t) in &templates {
        for v in t.vars() {
            let problem = match v {
                Var::Slot(s) if path == "voicemail" => Some(format!(
                    "the voicemail is left before any slot is collected: it cannot use slot \"{s}\""
                )),
                Var::Slot(s) if !slots.contains_key(s) => {
                    Some(format!("template refers to unknown slot \"{s}\""))
                }
                Var::Contact(f) if !spec.contact_fields.contains(f) => Some(format!(
                    "template refers to contact field \"{f}\", which is not listed in contact_fields"
                )),
                Var::Fact(f) if !spec.facts.contains_key(f) => {
                    Some(format!("template refers to unknown fact \"{f}\""))
                }
                _ => None,
            };
            if let Some(m) = problem {
                template_errors.push((path.clone(), m));
            }
        }
    }
    for (path, m) in template_errors {
        c.at(&path, m);
    }

    check_graph(c, &spec, &steps, &global);

    let faq: Vec<Faq> = spec
        .faq
        .iter()
        .map(|f| Faq {
            question: f.question.clone(),
            answer: f.answer.clone(),
            keywords: f.keywords.clone(),
        })
        .collect();
    let system_prompt = render_system_prompt(&spec, &faq);
    Flow {
        file: c.file.to_string(),
        name: spec.name.clone(),
        direction: spec.direction,
        description: spec.description.clone(),
        system_prompt,
        facts: spec.facts.clone(),
        faq,
        contact_fields: spec.contact_fields.clone(),
        slots,
        tables,
        understand_with_model: spec.understand_with_model,
        voicemail,
        global,
        start: spec.start.clone(),
        steps,
    }
}

fn render_system_prompt(spec: &FlowSpec, faq: &[Faq]) -> String {
    let mut out = spec.persona.trim().to_string();
    if !spec.system_prompt.trim().is_empty() {
        out.push_str("\n\n");
        out.push_str(spec.system_prompt.trim());
    }
    if !spec.facts.is_empty() {
        out.push_str("\n\nFacts about the business:");
        for (k, v) in &spec.facts {
            out.push_str(&format!("\n- {}: {}", k.replace('_', " "), v.trim()));
        }
    }
    if !faq.is_empty() {
        out.push_str("\n\nFrequently asked questions:");
        for f in faq {
            out.push_str(&format!("\nQ: {}\nA: {}", f.question.trim(), f.answer.trim()));
        }
    }
    out
}

type TargetCheck<'t> = dyn FnMut(&mut Checker<'_>, &str, &str, &str) + 't;

fn build_step(
    c: &mut Checker<'_>,
    target: &mut TargetCheck<'_>,
    name: &str,
    s: &StepSpec,
    slots: &BTreeMap<String, Slot>,
    tables: &BTreeMap<String, Table>,
) -> Option<Step> {
    let p = format!("steps.{name}");
    let kinds: Vec<&str> = [
        ("say", s.say.is_some()),
        ("ask", s.ask.is_some()),
        ("branch", s.branch.is_some()),
        ("respond", s.respond.is_some()),
        ("lookup", s.lookup.is_some()),
        ("webhook", s.webhook.is_some()),
        ("transfer", s.transfer.is_some()),
        ("end", s.end.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    let kind = match kinds.as_slice() {
        [k] => *k,
        [] => {
            c.at_key(
                &p,
                format!(
                    "step \"{name}\" does nothing: give it one of say, ask, branch, respond, lookup, webhook, transfer, end"
                ),
            );
            return None;
        }
        many => {
            c.at_key(
                &p,
                format!(
                    "step \"{name}\" has several kinds ({}); give it exactly one",
                    many.join(", ")
                ),
            );
            return None;
        }
    };
    // Keys that belong to other kinds are mistakes (most often a misplaced indentation).
    let extra: [(&str, bool, &[&str]); 15] = [
        ("prompt", s.prompt.is_some(), &["ask"]),
        ("reprompt", s.reprompt.is_some(), &["ask"]),
        ("no_match", s.no_match.is_some(), &["ask"]),
        ("max_tries", s.max_tries.is_some(), &["ask"]),
        ("confirm", s.confirm.is_some(), &["ask"]),
        ("dtmf", !s.dtmf.is_empty(), &["ask"]),
        ("routes", !s.routes.is_empty(), &["ask"]),
        ("on_fail", s.on_fail.is_some(), &["ask"]),
        ("answers_faq", s.answers_faq, &["ask"]),
        ("timeout_ms", s.timeout_ms.is_some(), &["ask"]),
        ("hangup_outcome", s.hangup_outcome.is_some(), &["ask"]),
        ("next", s.next.is_some(), &["say", "ask", "respond"]),
        ("found", s.found.is_some() || s.not_found.is_some(), &["lookup"]),
        ("ok", s.ok.is_some() || s.failed.is_some(), &["webhook"]),
        ("", false, &[]),
    ];
    for (field, set, allowed) in extra {
        if set && !allowed.contains(&kind) {
            c.at_key(
                &format!("{p}.{field}"),
                format!("`{field}` does not apply to a {kind} step (step \"{name}\")"),
            );
        }
    }
    let required = |c: &mut Checker<'_>, field: &str, v: &Option<String>| -> String {
        match v {
            Some(v) => v.clone(),
            None => {
                c.at_key(&p, format!("{kind} step \"{name}\" needs `{field}`"));
                String::new()
            }
        }
    };
    let mut go = |c: &mut Checker<'_>, field: &str, t: &str| {
        if !t.is_empty() {
            target(c, &format!("{p}.{field}"), name, t);
        }
    };
    let step = match kind {
        "say" => {
            let text = c.template(&format!("{p}.say"), s.say.as_deref().unwrap_or(""));
            let next = required(c, "next", &s.next);
            go(c, "next", &next);
            Step::Say { text, next }
        }
        "respond" => {
            let instructions = c.template(&format!("{p}.respond"), s.respond.as_deref().unwrap_or(""));
            let next = required(c, "next", &s.next);
            go(c, "next", &next);
            Step::Respond { instructions, next }
        }
        "ask" => {
            let slot_name = s.ask.clone().unwrap_or_default();
            let slot = slots.get(&slot_name);
            if slot.is_none() {
                c.at(
                    &format!("{p}.ask"),
                    format!("step \"{name}\" asks for unknown slot \"{slot_name}\""),
                );
            }
            let labels: Vec<String> = match slot.map(|s| s.slot_type) {
                Some(SlotType::OneOf) => slot
                    .map(|s| s.options.iter().map(|o| o.0.clone()).collect())
                    .unwrap_or_default(),
                Some(SlotType::YesNo) => vec!["yes".to_string(), "no".to_string()],
                _ => Vec::new(),
            };
            let prompt_src = required(c, "prompt", &s.prompt);
            let prompt = c.template(&format!("{p}.prompt"), &prompt_src);
            let mut dtmf = BTreeMap::new();
            for (k, v) in &s.dtmf {
                let kp = format!("{p}.dtmf.{k}");
                match dtmf_key(k) {
                    None => c.at_key(&kp, format!("DTMF key \"{k}\" must be a single digit, * or #")),
                    Some(ch) => {
                        if slot.is_some() && labels.is_empty() {
                            c.at_key(
                                &kp,
                                format!(
                                    "a dtmf map only applies to one_of and yes_no slots (\"{slot_name}\")"
                                ),
                            );
                        } else if slot.is_some() && !labels.contains(v) {
                            c.at(
                                &kp,
                                format!(
                                    "DTMF key \"{k}\" maps to \"{v}\", which is not one of: {}",
                                    labels.join(", ")
                                ),
                            );
                        }
                        dtmf.insert(ch, v.clone());
                    }
                }
            }
            for (label, t) in &s.routes {
                let rp = format!("{p}.routes.{label}");
                if slot.is_some() && !labels.contains(label) {
                    c.at_key(
                        &rp,
                        format!(
                            "route \"{label}\" is not a value of slot \"{slot_name}\" ({})",
                            if labels.is_empty() {
                                "routes need a one_of or yes_no slot".to_string()
                            } else {
                                format!("one of: {}", labels.join(", "))
                            }
                        ),
                    );
                }
                go(c, &format!("routes.{label}"), t);
            }
            if s.next.is_none() && (s.routes.is_empty() || labels.iter().any(|l| !s.routes.contains_key(l))) {
                c.at_key(
                    &p,
                    format!(
                        "ask step \"{name}\" needs `next` (or a route for every value of \"{slot_name}\")"
                    ),
                );
            }
            if let Some(n) = &s.next {
                go(c, "next", n);
            }
            if let Some(f) = &s.on_fail {
                go(c, "on_fail", f);
            }
            if s.max_tries == Some(0) {
                c.at(
                    &format!("{p}.max_tries"),
                    "max_tries must be at least 1".to_string(),
                );
            }
            Step::Ask(Box::new(Ask {
                slot: slot_name,
                prompt,
                reprompt: s
                    .reprompt
                    .as_ref()
                    .map(|t| c.template(&format!("{p}.reprompt"), t)),
                no_match: s
                    .no_match
                    .as_ref()
                    .map(|t| c.template(&format!("{p}.no_match"), t)),
                max_tries: s.max_tries.unwrap_or(3).max(1),
                confirm: s.confirm.as_ref().map(|t| c.template(&format!("{p}.confirm"), t)),
                dtmf,
                routes: s.routes.clone(),
                next: s.next.clone(),
                on_fail: s.on_fail.clone(),
                answers_faq: s.answers_faq,
                timeout_ms: s.timeout_ms,
                hangup_outcome: s.hangup_outcome,
            }))
        }
        "branch" => {
            let arms_spec = s.branch.as_deref().unwrap_or(&[]);
            let mut arms = Vec::new();
            let mut otherwise = None;
            for (i, a) in arms_spec.iter().enumerate() {
                let ap = format!("{p}.branch.{i}");
                match (&a.condition, &a.goto, &a.otherwise) {
                    (Some(cond), Some(t), None) => {
                        if otherwise.is_some() {
                            c.at(&ap, "`else` must be the last arm of a branch".to_string());
                        }
                        go(c, &format!("branch.{i}.goto"), t);
                        match Cond::parse(cond) {
                            Ok(cnd) => {
                                check_condition(c, &format!("{ap}.if"), &cnd, slots);
                                arms.push((cnd, t.clone()));
                            }
                            Err(e) => c.at(&format!("{ap}.if"), format!("bad condition \"{cond}\": {e}")),
                        }
                    }
                    (None, None, Some(t)) => {
                        if otherwise.is_some() {
                            c.at(&ap, "a branch has only one `else`".to_string());
                        }
                        go(c, &format!("branch.{i}.else"), t);
                        otherwise = Some(t.clone());
                    }
                    _ => c.at(
                        &ap,
                        "a branch arm is either `if:` with `goto:`, or `else:`".to_string(),
                    ),
                }
            }
            let Some(otherwise) = otherwise else {
                c.at(
                    &format!("{p}.branch"),
                    format!("branch step \"{name}\" needs a last `else:` arm"),
                );
                return None;
            };
            Step::Branch { arms, otherwise }
        }
        "lookup" => {
            let l = s.lookup.as_ref()?;
            let lp = format!("{p}.lookup");
            let table = tables.get(&l.table);
            if table.is_none() {
                c.at(
                    &format!("{lp}.table"),
                    format!("lookup in unknown table \"{}\"", l.table),
                );
            }
            if !slots.contains_key(&l.key) {
                c.at(
                    &format!("{lp}.key"),
                    format!("lookup key \"{}\" is not a slot", l.key),
                );
            }
            if let Some(t) = table
                && !t.columns.contains(&l.column)
            {
                c.at(
                    &format!("{lp}.column"),
                    format!("table \"{}\" has no column \"{}\"", l.table, l.column),
                );
            }
            for (slot, col) in &l.into {
                let ip = format!("{lp}.into.{slot}");
                match slots.get(slot) {
                    None => c.at_key(&ip, format!("lookup fills unknown slot \"{slot}\"")),
                    Some(sl) if sl.slot_type != SlotType::Text => c.at_key(
                        &ip,
                        format!("lookup fills slot \"{slot}\", which must be of type text"),
                    ),
                    _ => {}
                }
                if let Some(t) = table
                    && !t.columns.contains(col)
                {
                    c.at(&ip, format!("table \"{}\" has no column \"{col}\"", l.table));
                }
            }
            let found = required(c, "found", &s.found);
            let not_found = required(c, "not_found", &s.not_found);
            go(c, "found", &found);
            go(c, "not_found", &not_found);
            Step::Lookup(Lookup {
                table: l.table.clone(),
                key: l.key.clone(),
                column: l.column.clone(),
                into: l.into.clone(),
                found,
                not_found,
            })
        }
        "webhook" => {
            let w = s.webhook.as_ref()?;
            let wp = format!("{p}.webhook");
            let method = w.method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                c.at(
                    &format!("{wp}.method"),
                    format!("unknown HTTP method \"{}\"", w.method),
                );
            }
            for slot in w.into.keys() {
                if !slots.contains_key(slot) {
                    c.at_key(
                        &format!("{wp}.into.{slot}"),
                        format!("webhook fills unknown slot \"{slot}\""),
                    );
                }
            }
            let ok = required(c, "ok", &s.ok);
            let failed = required(c, "failed", &s.failed);
            go(c, "ok", &ok);
            go(c, "failed", &failed);
            Step::Webhook(Box::new(Webhook {
                url: c.template(&format!("{wp}.url"), &w.url),
                method,
                headers: w
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), c.template(&format!("{wp}.headers.{k}"), v)))
                    .collect(),
                body: w
                    .body
                    .iter()
                    .map(|(k, v)| (k.clone(), c.template(&format!("{wp}.body.{k}"), v)))
                    .collect(),
                timeout_ms: w.timeout_ms.unwrap_or(5000),
                retries: w.retries.unwrap_or(0),
                into: w.into.clone(),
                ok,
                failed,
            }))
        }
        "transfer" => {
            let t = s.transfer.as_ref()?;
            let tp = format!("{p}.transfer");
            if t.to.trim().is_empty() {
                c.at(
                    &format!("{tp}.to"),
                    "transfer needs a phone number or SIP address".to_string(),
                );
            }
            Step::Transfer {
                to: c.template(&format!("{tp}.to"), &t.to),
                say: t.say.as_ref().map(|x| c.template(&format!("{tp}.say"), x)),
                reason: t.reason.clone().unwrap_or_else(|| name.to_string()),
            }
        }
        _ => {
            let e = s.end.as_ref()?;
            Step::End {
                outcome: e.outcome,
                say: e.say.as_ref().map(|x| c.template(&format!("{p}.end.say"), x)),
            }
        }
    };
    Some(step)
}

fn check_condition(c: &mut Checker<'_>, path: &str, cond: &Cond, slots: &BTreeMap<String, Slot>) {
    let mut ops = Vec::new();
    cond.operands(&mut ops);
    for (op, value) in ops {
        let Operand::Slot(name) = op else { continue };
        let Some(slot) = slots.get(&name) else {
            c.at(path, format!("condition refers to unknown slot \"{name}\""));
            continue;
        };
        let Some(v) = value else { continue };
        let ok = match slot.slot_type {
            SlotType::Number => v.trim().parse::<i64>().is_ok(),
            SlotType::YesNo => matches!(v.to_ascii_lowercase().as_str(), "yes" | "no" | "true" | "false"),
            SlotType::OneOf => slot.options.iter().any(|(l, _)| *l == v),
            _ => true,
        };
        if !ok {
            let want = match slot.slot_type {
                SlotType::Number => "a number".to_string(),
                SlotType::YesNo => "yes or no".to_string(),
                _ => format!(
                    "one of: {}",
                    slot.options
                        .iter()
                        .map(|o| o.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            c.at(
                path,
                format!(
                    "condition compares {} slot \"{name}\" with \"{v}\"; expected {want}",
                    slot.slot_type
                ),
            );
        }
    }
}

/// Reachability, ways out, and loops that never wait.
fn check_graph(c: &mut Checker<'_>, spec: &FlowSpec, steps: &BTreeMap<String, Step>, global: &Global) {
    let edges = |n: &str| -> Vec<String> {
        steps
            .get(n)
            .map(|s| {
                s.targets()
                    .into_iter()
                    .filter(|t| steps.contains_key(*t))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    // Unreachable from the start (or a global handler)
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    for root in [
        Some(&spec.start),
        global.human_goto.as_ref(),
        global.misunderstanding_goto.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if steps.contains_key(root) && seen.insert(root.clone()) {
            queue.push_back(root.clone());
        }
    }
    while let Some(n) = queue.pop_front() {
        for t in edges(&n) {
            if seen.insert(t.clone()) {
                queue.push_back(t);
            }
        }
    }
    if steps.contains_key(&spec.start) {
        for name in steps.keys() {
            if !seen.contains(name) {
                c.at_key(
                    &format!("steps.{name}"),
                    format!(
                        "step \"{name}\" is unreachable from the start step \"{}\"",
                        spec.start
                    ),
                );
            }
        }
    }
    // Every step must be able to reach an end or a transfer.
    let mut exits: BTreeSet<String> = steps
        .iter()
        .filter(|(_, s)| s.is_final())
        .map(|(n, _)| n.clone())
        .collect();
    loop {
        let before = exits.len();
        for (n, s) in steps {
            if !exits.contains(n) && s.targets().iter().any(|t| exits.contains(*t)) {
                exits.insert(n.clone());
            }
        }
        if exits.len() == before {
            break;
        }
    }
    for (name, step) in steps {
        // A step with an unknown target already has its error; "no way out" would only repeat it.
        let dangling = step.targets().iter().any(|t| !steps.contains_key(*t));
        if !exits.contains(name) && seen.contains(name) && !dangling {
            c.at_key(
                &format!("steps.{name}"),
                format!("step \"{name}\" can never reach an end or a transfer (a cycle without a way out)"),
            );
        }
    }
    // Loops through steps that never wait would spin forever within one input.
    let busy: BTreeSet<&String> = steps
        .iter()
        .filter(|(_, s)| !s.waits() && !s.is_final())
        .map(|(n, _)| n)
        .collect();
    let mut reported = BTreeSet::new();
    for start in &busy {
        // DFS restricted to busy steps, looking for a path back to `start`.
        let mut stack = vec![(start.to_string(), vec![start.to_string()])];
        let mut visited = BTreeSet::new();
        while let Some((n, path)) = stack.pop() {
            for t in edges(&n) {
                if &&t == start {
                    let mut cycle = path.clone();
                    cycle.sort();
                    if reported.insert(cycle) {
                        let mut shown = path.clone();
                        shown.push(t.clone());
                        c.at_key(
                            &format!("steps.{start}"),
                            format!(
                                "steps {} loop without ever waiting for the caller",
                                shown.join(" → ")
                            ),
                        );
                    }
                } else if busy.contains(&t) && visited.insert(t.clone()) {
                    let mut p = path.clone();
                    p.push(t.clone());
                    stack.push((t, p));
                }
            }
        }
    }
}

/// A small CSV reader for lookup tables: a header line, commas, double quotes with `""` escapes.
/// Returns (1-based line, message) on error.
pub(crate) fn parse_csv(text: &str) -> Result<Table, (usize, String)> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((hl, header)) = lines.next() else {
        return Err((1, "the table file is empty (expected a header line)".to_string()));
    };
    let columns = split_csv_line(header).map_err(|m| (hl + 1, m))?;
    let mut rows = Vec::new();
    for (i, line) in lines {
        let fields = split_csv_line(line).map_err(|m| (i + 1, m))?;
        if fields.len() != columns.len() {
            return Err((
                i + 1,
                format!(
                    "{} fields, but the header has {} columns",
                    fields.len(),
                    columns.len()
                ),
            ));
        }
        rows.push(columns.iter().cloned().zip(fields).collect());
    }
    Ok(Table { columns, rows })
}

fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (',', false) => out.push(std::mem::take(&mut cur).trim().to_string()),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("unclosed quote".to_string());
    }
    out.push(cur.trim().to_string());
    Ok(out)
}
