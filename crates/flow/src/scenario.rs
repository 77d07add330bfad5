//! Scenario files: a scripted caller and what the flow must do, for tests and for trying a flow before
//! going live.
//!
//! ```yaml
//! flow: inbound_support          # the flow's name (the file is prompts/flows/<flow>.yaml)
//! name: asks opening hours
//! needs_model: false             # true: tests the model's understanding (on for this scenario even when the
//!                                # flow turns it off; skipped by model-free runs)
//! contact: { name: Ana }         # contact fields for {{contact.*}}
//! webhooks:                      # canned webhook answers by URL (no network in tests)
//!   "https://example.com/hook": { json: { status: shipped } }     # or { error: timeout }
//!   "https://example.com/flaky": { fail_times: 1, json: { ok: true } }   # fails once, then answers
//! start: { says: ["Bella's Bakery"] }   # expectations on the opening lines
//! turns:
//!   - caller: "what time are you open on saturday"
//!     expect: { says: ["9"], not_says: ["sorry"], slots: { topic: hours } }
//!   - dtmf: "12345#"             # each character is one key
//!   - silence: true
//!   - wav: ../../samples/caller-hours.wav   # relative to this file; needs speech-to-text (the driver's)
//!   - hangup: true
//! expect:                        # at the end
//!   outcome: resolved
//!   slots: { order_number: 12345 }
//!   absent_slots: [comment]
//!   transferred: true            # and/or transfer_to: "+15550100"
//!   opted_out: false
//!   says: ["Goodbye"]            # somewhere in the call
//! ```
//!
//! `says` matches a case-insensitive substring of one bot line of that turn. Slot values compare with
//! the slot's normalized display form (`yes`/`no`, `Tuesday 15:00`, `+15551234567`, a label).
//!
//! The pieces are public so the async driver (real model, speech-to-text for `wav`, real HTTP) reuses
//! them and only replaces how requests are answered: [`Turn::input`], [`pending_request`],
//! [`Scenario::webhook_result`], [`CallRecord::observe`], [`TurnExpect::check`], [`FinalExpect::check`].
//! [`run_text`] is the model-free runner built from them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::{Action, Contact, Input, UnderstandRequest, Understanding, WebhookRequest};
use crate::load::{Positions, yaml_error};
use crate::{Flow, FlowError, FlowErrors, Outcome, Slots};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub flow: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub needs_model: bool,
    #[serde(default)]
    pub contact: Contact,
    #[serde(default)]
    pub webhooks: BTreeMap<String, CannedWebhook>,
    #[serde(default)]
    pub start: Option<TurnExpect>,
    pub turns: Vec<Turn>,
    #[serde(default)]
    pub expect: FinalExpect,
    /// Where the file was read from (for messages and relative `wav` paths).
    #[serde(skip)]
    pub file: String,
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

/// A canned webhook answer: fails `fail_times` times (with `error`, default "timeout"), then answers
/// `json` (or keeps failing when there is no `json`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedWebhook {
    #[serde(default)]
    pub json: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub fail_times: u32,
}

/// One thing the caller does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    #[serde(default)]
    pub caller: Option<String>,
    #[serde(default)]
    pub dtmf: Option<String>,
    #[serde(default)]
    pub silence: bool,
    #[serde(default)]
    pub wav: Option<String>,
    #[serde(default)]
    pub hangup: bool,
    #[serde(default)]
    pub expect: Option<TurnExpect>,
}

/// What a turn feeds the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnInput {
    Inputs(Vec<Input>),
    /// Audio to run through speech-to-text; its transcript is an [`Input::Utterance`].
    Wav(PathBuf),
}

impl Turn {
    pub fn input(&self, base_dir: Option<&Path>) -> TurnInput {
        if let Some(w) = &self.wav {
            return TurnInput::Wav(base_dir.map(|d| d.join(w)).unwrap_or_else(|| PathBuf::from(w)));
        }
        let mut v = Vec::new();
        if let Some(c) = &self.caller {
            v.push(Input::Utterance(c.clone()));
        }
        if let Some(d) = &self.dtmf {
            v.extend(d.chars().filter(|c| !c.is_whitespace()).map(Input::Dtmf));
        }
        if self.silence {
            v.push(Input::Silence);
        }
        if self.hangup {
            v.push(Input::Hangup);
        }
        TurnInput::Inputs(v)
    }

    /// How the turn is shown in a transcript.
    pub fn describe(&self) -> String {
        if let Some(c) = &self.caller {
            format!("caller: {c}")
        } else if let Some(d) = &self.dtmf {
            format!("caller presses: {d}")
        } else if let Some(w) = &self.wav {
            format!("caller (audio): {w}")
        } else if self.hangup {
            "caller hangs up".to_string()
        } else {
            "caller: (silence)".to_string()
        }
    }
}

/// A YAML scalar in an expectation, compared as text (`true`/`false` read as `yes`/`no`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => f.write_str(if *b { "yes" } else { "no" }),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnExpect {
    /// Each must be a case-insensitive substring of one of the bot's lines in this turn.
    #[serde(default)]
    pub says: Vec<String>,
    /// None may appear in any of the bot's lines in this turn.
    #[serde(default)]
    pub not_says: Vec<String>,
    /// Slot values after the turn.
    #[serde(default)]
    pub slots: BTreeMap<String, Scalar>,
}

fn says_failures(said: &[String], says: &[String], not_says: &[String]) -> Vec<String> {
    let lower: Vec<String> = said.iter().map(|s| s.to_lowercase()).collect();
    let mut f = Vec::new();
    for want in says {
        if !lower.iter().any(|l| l.contains(&want.to_lowercase())) {
            f.push(format!("expected the bot to say \"{want}\", it said {said:?}"));
        }
    }
    for bad in not_says {
        if lower.iter().any(|l| l.contains(&bad.to_lowercase())) {
            f.push(format!("expected the bot not to say \"{bad}\", it said {said:?}"));
        }
    }
    f
}

fn slot_failures(slots: &Slots, want: &BTreeMap<String, Scalar>) -> Vec<String> {
    want.iter()
        .filter_map(|(k, v)| match slots.get(k) {
            Some(have) if have.to_string().eq_ignore_ascii_case(&v.to_string()) => None,
            Some(have) => Some(format!("expected slot {k} = \"{v}\", it is \"{have}\"")),
            None => Some(format!("expected slot {k} = \"{v}\", it is not set")),
        })
        .collect()
}

impl TurnExpect {
    /// Failures for one turn, given the bot's lines in that turn and the slots after it.
    pub fn check(&self, said: &[String], slots: &Slots) -> Vec<String> {
        let mut f = says_failures(said, &self.says, &self.not_says);
        f.extend(slot_failures(slots, &self.slots));
        f
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalExpect {
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub slots: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub absent_slots: Vec<String>,
    #[serde(default)]
    pub transferred: Option<bool>,
    #[serde(default)]
    pub transfer_to: Option<String>,
    #[serde(default)]
    pub opted_out: Option<bool>,
    /// Somewhere in the whole call.
    #[serde(default)]
    pub says: Vec<String>,
    #[serde(default)]
    pub not_says: Vec<String>,
}

impl FinalExpect {
    /// Failures for the whole call.
    pub fn check(&self, rec: &CallRecord) -> Vec<String> {
        let mut f = Vec::new();
        if let Some(o) = self.outcome
            && rec.outcome != Some(o)
        {
            let have = rec
                .outcome
                .map_or("none (the call did not end)".to_string(), |o| o.to_string());
            f.push(format!("expected outcome {o}, it is {have}"));
        }
        f.extend(slot_failures(&rec.slots, &self.slots));
        for s in &self.absent_slots {
            if let Some(v) = rec.slots.get(s) {
                f.push(format!("expected slot {s} to be unset, it is \"{v}\""));
            }
        }
        if let Some(t) = self.transferred
            && rec.transferred_to.is_some() != t
        {
            f.push(format!(
                "expected transferred = {t}, it is {}",
                rec.transferred_to.is_some()
            ));
        }
        if let Some(to) = &self.transfer_to
            && rec.transferred_to.as_deref() != Some(to.as_str())
        {
            f.push(format!(
                "expected a transfer to {to}, got {:?}",
                rec.transferred_to
            ));
        }
        if let Some(o) = self.opted_out
            && rec.opted_out != o
        {
            f.push(format!("expected opted_out = {o}, it is {}", rec.opted_out));
        }
        f.extend(says_failures(&rec.bot_lines(), &self.says, &self.not_says));
        f
    }
}

/// One line of a call's transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Bot(String),
    Caller(String),
    /// The model was asked to phrase a reply (`instructions`); a model-free run has no text for it.
    Respond(String),
    /// Anything else the engine did: understand, webhook, transfer, outcome …
    Event(String),
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Bot(s) => write!(f, "bot: {s}"),
            Line::Caller(s) => write!(f, "{s}"),
            Line::Respond(s) => write!(f, "bot (model, within: {s})"),
            Line::Event(s) => write!(f, "  [{s}]"),
        }
    }
}

/// What a call did, accumulated from its actions.
#[derive(Debug, Clone, Default)]
pub struct CallRecord {
    pub lines: Vec<Line>,
    pub outcome: Option<Outcome>,
    pub slots: Slots,
    pub transferred_to: Option<String>,
    pub opted_out: bool,
    pub ended: bool,
}

impl CallRecord {
    /// Records actions; returns the bot's spoken lines among them.
    pub fn observe(&mut self, actions: &[Action]) -> Vec<String> {
        let mut said = Vec::new();
        for a in actions {
            match a {
                Action::Say(s) => {
                    said.push(s.clone());
                    self.lines.push(Line::Bot(s.clone()));
                }
                Action::Respond { instructions, .. } => self.lines.push(Line::Respond(instructions.clone())),
                Action::Listen { .. } => {}
                Action::Understand(r) => self.lines.push(Line::Event(format!("understand {:?}", r.kind))),
                Action::Webhook(w) => self.lines.push(Line::Event(format!(
                    "webhook {} {} (try {})",
                    w.method, w.url, w.attempt
                ))),
                Action::Transfer { to, reason } => {
                    self.transferred_to = Some(to.clone());
                    self.ended = true;
                    self.lines
                        .push(Line::Event(format!("transfer to {to} ({reason})")));
                }
                Action::RecordOptOut => {
                    self.opted_out = true;
                    self.lines.push(Line::Event("do-not-call recorded".to_string()));
                }
                Action::Hangup => {
                    self.ended = true;
                    self.lines.push(Line::Event("hang up".to_string()));
                }
                Action::NoMatch { step, .. } => self.lines.push(Line::Event(format!("no match at {step}"))),
                Action::Outcome { outcome, slots } => {
                    self.outcome = Some(*outcome);
                    self.slots = slots.clone();
                    let shown: Vec<String> = slots.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    self.lines
                        .push(Line::Event(format!("outcome {outcome} {{{}}}", shown.join(", "))));
                }
            }
        }
        said
    }

    /// Every line the bot spoke, in order.
    pub fn bot_lines(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Bot(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn transcript(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The request the driver must answer before the call can go on, if the actions end with one.
pub fn pending_request(actions: &[Action]) -> Option<&Action> {
    actions
        .last()
        .filter(|a| matches!(a, Action::Understand(_) | Action::Webhook(_)))
}

impl Scenario {
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, FlowErrors> {
        let path = path.as_ref();
        let (src, file) = crate::load::read_source(path, "scenario")?;
        Scenario::parse(&src, &file, path.parent())
    }

    /// Parses a scenario and checks that each turn does exactly one thing.
    pub fn parse(src: &str, file: &str, base_dir: Option<&Path>) -> Result<Scenario, FlowErrors> {
        let mut s: Scenario = serde_yaml_ng::from_str(src).map_err(|e| yaml_error(file, &e))?;
        s.file = file.to_string();
        s.base_dir = base_dir.map(Path::to_path_buf);
        let positions = Positions::build(src);
        let mut errors = Vec::new();
        for (i, t) in s.turns.iter().enumerate() {
            let kinds = [
                t.caller.is_some(),
                t.dtmf.is_some(),
                t.silence,
                t.wav.is_some(),
                t.hangup,
            ]
            .iter()
            .filter(|&&k| k)
            .count();
            let bad_key = t.dtmf.as_deref().is_some_and(|d| {
                d.chars()
                    .any(|c| !(c.is_ascii_digit() || c == '*' || c == '#' || c.is_whitespace()))
            });
            let message = if kinds != 1 {
                Some("a turn is exactly one of caller, dtmf, silence, wav, hangup".to_string())
            } else if bad_key {
                Some("dtmf keys are digits, * and #".to_string())
            } else {
                None
            };
            if let Some(message) = message {
                let at = positions.value(&format!("turns.{i}"));
                errors.push(FlowError {
                    file: file.to_string(),
                    line: at.map(|p| p.line),
                    column: at.map(|p| p.column),
                    message,
                });
            }
        }
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(FlowErrors(errors))
        }
    }

    /// The canned answer to a webhook request (attempt 1 is the first try).
    pub fn webhook_result(&self, req: &WebhookRequest) -> Input {
        match self.webhooks.get(&req.url) {
            None => Input::WebhookResult(Err(format!("no canned response for {}", req.url))),
            Some(c) => {
                let error = c.error.clone().unwrap_or_else(|| "timeout".to_string());
                match &c.json {
                    Some(json) if req.attempt > c.fail_times => Input::WebhookResult(Ok(json.clone())),
                    _ => Input::WebhookResult(Err(error)),
                }
            }
        }
    }
}

/// One scenario's result.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub name: String,
    pub record: CallRecord,
    /// Each prefixed with where it happened ("turn 3: …", "start: …", "end: …").
    pub failures: Vec<String>,
}

impl ScenarioReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        writeln!(f, "{verdict} {}", self.name)?;
        writeln!(f, "{}", self.record.transcript())?;
        for x in &self.failures {
            writeln!(f, "  ✗ {x}")?;
        }
        Ok(())
    }
}

/// What a scenario run needs from outside the engine. The model-free run ([`run_text`]) answers with
/// deterministic stand-ins; `switchboard flows test` plugs in the real language model and
/// speech-to-text. Webhooks always get the scenario's canned answers, so scenarios never touch the
/// network.
pub trait ScenarioDriver {
    /// Answers a request the deterministic matchers could not decide.
    fn understand(&mut self, request: &UnderstandRequest) -> Understanding;
    /// Phrases a free reply within `instructions`; `None` when there is no model (the transcript then
    /// shows the instructions). `history` is the call so far.
    fn respond(&mut self, instructions: &str, utterance: &str, history: &[Line]) -> Option<String>;
    /// The transcript of a recorded caller turn.
    fn transcribe(&mut self, wav: &Path) -> Result<String, String>;
}

/// [`ScenarioDriver`] from a closure for understanding; no replies, no speech-to-text.
struct TextOnly<'a>(&'a mut dyn FnMut(&UnderstandRequest) -> Understanding);

impl ScenarioDriver for TextOnly<'_> {
    fn understand(&mut self, request: &UnderstandRequest) -> Understanding {
        (self.0)(request)
    }
    fn respond(&mut self, _: &str, _: &str, _: &[Line]) -> Option<String> {
        None
    }
    fn transcribe(&mut self, wav: &Path) -> Result<String, String> {
        Err(format!(
            "{} needs speech-to-text (not in a text run)",
            wav.display()
        ))
    }
}

/// Runs a scenario against `flow` without speech or network: `understand` answers model requests
/// (`|_| Understanding::NotUnderstood` runs it with deterministic understanding only) and webhooks get
/// the scenario's canned answers. A `wav` turn is a failure here (it needs speech-to-text).
pub fn run_text(
    flow: &Flow,
    scenario: &Scenario,
    understand: &mut dyn FnMut(&UnderstandRequest) -> Understanding,
) -> ScenarioReport {
    run(flow, scenario, &mut TextOnly(understand))
}

/// Runs a scenario against `flow` with `driver` answering what the engine cannot decide itself.
pub fn run(flow: &Flow, scenario: &Scenario, driver: &mut dyn ScenarioDriver) -> ScenarioReport {
    // A scenario that needs the model tests its understanding, whether or not the flow turns that on
    // for its calls.
    let with_model;
    let flow = if scenario.needs_model && !flow.understands_with_model() {
        with_model = flow.clone().with_model_understanding(true);
        &with_model
    } else {
        flow
    };
    let mut rec = CallRecord::default();
    let mut failures = Vec::new();
    let resolve = |st: &mut crate::CallState,
                   mut actions: Vec<Action>,
                   rec: &mut CallRecord,
                   driver: &mut dyn ScenarioDriver| {
        let mut said = rec.observe(&actions);
        // Bounded: a driver that keeps answering must not spin forever on a broken flow.
        for _ in 0..32 {
            for a in &actions {
                if let Action::Respond {
                    instructions,
                    utterance,
                } = a
                    && let Some(reply) = driver.respond(instructions, utterance, &rec.lines)
                {
                    said.push(reply.clone());
                    rec.lines.push(Line::Bot(reply));
                }
            }
            let input = match pending_request(&actions) {
                Some(Action::Understand(r)) => {
                    let u = driver.understand(r);
                    rec.lines.push(Line::Event(format!("understood: {u:?}")));
                    Input::Understood(u)
                }
                Some(Action::Webhook(w)) => {
                    let r = scenario.webhook_result(w);
                    rec.lines.push(Line::Event(format!("webhook answered: {r:?}")));
                    r
                }
                _ => break,
            };
            actions = flow.step(st, input);
            said.extend(rec.observe(&actions));
        }
        said
    };
    let (mut st, actions) = flow.start(scenario.contact.clone());
    let said = resolve(&mut st, actions, &mut rec, driver);
    if let Some(e) = &scenario.start {
        failures.extend(
            e.check(&said, st.slots())
                .into_iter()
                .map(|f| format!("start: {f}")),
        );
    }
    for (i, turn) in scenario.turns.iter().enumerate() {
        let n = i + 1;
        if st.is_ended() {
            failures.push(format!(
                "turn {n}: the call had already ended ({})",
                turn.describe()
            ));
            break;
        }
        let inputs = match turn.input(scenario.base_dir.as_deref()) {
            TurnInput::Inputs(v) => {
                rec.lines.push(Line::Caller(turn.describe()));
                v
            }
            TurnInput::Wav(p) => match driver.transcribe(&p) {
                Ok(text) => {
                    rec.lines
                        .push(Line::Caller(format!("{} → caller: {text}", turn.describe())));
                    vec![Input::Utterance(text)]
                }
                Err(e) => {
                    rec.lines.push(Line::Caller(turn.describe()));
                    failures.push(format!("turn {n}: {e}"));
                    continue;
                }
            },
        };
        let mut said = Vec::new();
        for input in inputs {
            let actions = flow.step(&mut st, input);
            said.extend(resolve(&mut st, actions, &mut rec, driver));
        }
        if let Some(e) = &turn.expect {
            failures.extend(
                e.check(&said, st.slots())
                    .into_iter()
                    .map(|f| format!("turn {n}: {f}")),
            );
        }
    }
    if !rec.ended {
        rec.slots = st.slots().clone();
    }
    failures.extend(
        scenario
            .expect
            .check(&rec)
            .into_iter()
            .map(|f| format!("end: {f}")),
    );
    ScenarioReport {
        name: scenario.name.clone(),
        record: rec,
        failures,
    }
}
