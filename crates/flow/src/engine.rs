//! The engine: `step(state, input) -> actions`, pure and synchronous.
//!
//! One [`CallState`] per call, owned by the task that runs the call. Each [`Flow::step`] call ends in
//! one of three ways, visible in its last action:
//! - [`Action::Listen`]: wait for the caller (an utterance, a key, or [`Input::Silence`] after the timeout);
//! - [`Action::Understand`] / [`Action::Webhook`]: the driver must answer with [`Input::Understood`] /
//!   [`Input::WebhookResult`] before anything else happens;
//! - [`Action::Hangup`] / [`Action::Transfer`]: the call is over, right after one [`Action::Outcome`].
//!
//! An input that arrives when the engine is not waiting for it (a webhook result while listening, speech
//! while a webhook is pending) is ignored and gives no actions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flow::{Ask, Flow, Slot, Step};
use crate::spec::Direction;
use crate::template::{Scope, Template};
use crate::understand::{self, GlobalIntent, normalize};
use crate::{Outcome, SlotType, SlotValue, Slots};

/// Fields of the person called (or calling): `{{contact.name}}`, `{{contact.appointment_time}}` …
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Contact(pub BTreeMap<String, String>);

impl Contact {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(field.into(), value.into());
        self
    }
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Contact {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Contact(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

/// What happened on the line, or the answer to a request the engine made.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A final transcript of what the caller said.
    Utterance(String),
    /// One keypad key: `0`–`9`, `*`, `#`.
    Dtmf(char),
    /// The caller said nothing for the [`Action::Listen`] timeout (or paused after keypad digits).
    Silence,
    /// The answer to an [`Action::Understand`].
    Understood(Understanding),
    /// The answer to an [`Action::Webhook`]: the response's JSON object, or why it failed (timeout,
    /// status, not JSON …).
    WebhookResult(Result<serde_json::Map<String, serde_json::Value>, String>),
    /// The caller hung up.
    Hangup,
}

/// The language model's constrained answer to an [`UnderstandRequest`]. It is validated like caller
/// input: a label not in the list or a number out of range counts as not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Understanding {
    Label(String),
    YesNo(bool),
    Number(i64),
    Text(String),
    NotUnderstood,
}

/// What the model must decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnderstandKind {
    /// One of `labels` (`descriptions[i]` explains `labels[i]`), or not understood.
    OneOf {
        labels: Vec<String>,
        descriptions: Vec<String>,
    },
    YesNo,
    Number,
    /// The value of a slot, as text in the slot's simple form (a date like "Tuesday 3 pm", a phone
    /// number's digits); the engine parses and validates it.
    Extract {
        slot: String,
        slot_type: SlotType,
    },
}

/// A request for the language model: what the caller said, and the form the answer must take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderstandRequest {
    pub utterance: String,
    pub kind: UnderstandKind,
    /// What the caller was just asked (the rendered prompt), as context for the model.
    pub question: String,
}

/// An HTTP request to the business's own system. The driver performs it (with `timeout_ms`) and answers
/// with [`Input::WebhookResult`]; the engine retries on failure as the flow says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub step: String,
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// A JSON object of strings, already rendered; `None` for a request without a body.
    pub body: Option<String>,
    pub timeout_ms: u32,
    /// 1 for the first try.
    pub attempt: u32,
}

/// What the engine is listening for, so the driver can tune recognition and keypad collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub step: String,
    pub slot: String,
    pub slot_type: SlotType,
    /// The caller is asked to confirm a value (yes / no; keypad 1 = yes, 2 = no).
    pub confirming: bool,
    /// Keypad digits are gathered until `#` or a pause (number and phone slots).
    pub keypad_digits: bool,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Speak this sentence.
    Say(String),
    /// Wait for the caller; send [`Input::Silence`] after `timeout_ms` without speech or keys.
    Listen { expect: Expect, timeout_ms: u32 },
    /// Ask the language model; answer with [`Input::Understood`].
    Understand(UnderstandRequest),
    /// Let the language model phrase a reply to `utterance` within `instructions` (with the flow's
    /// system prompt) and speak it. The engine does not wait for it: the following actions come after.
    Respond { instructions: String, utterance: String },
    /// Call the business's webhook; answer with [`Input::WebhookResult`].
    Webhook(WebhookRequest),
    /// Hand the call to a person (a phone number or a SIP address). Final.
    Transfer { to: String, reason: String },
    /// Put the contact on the do-not-call list.
    RecordOptOut,
    /// End the call. Final.
    Hangup,
    /// How the call ended and what was collected; always right before the final action.
    Outcome { outcome: Outcome, slots: Slots },
    /// What the caller said fits nothing `step` takes (a no-match, after the model if it was asked).
    /// Nothing to do on the line: the call log keeps it, so the phrases callers really use can be
    /// added to the flow.
    NoMatch {
        step: String,
        slot: String,
        heard: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Asking,
    Confirming,
    /// The model was asked about `utterance`; `confirming` says which phase to go back to.
    Understanding {
        utterance: String,
        confirming: bool,
    },
    Webhook {
        attempt: u32,
    },
    Ended,
}

/// One call's progress through a flow.
#[derive(Debug, Clone)]
pub struct CallState {
    step: String,
    phase: Phase,
    slots: Slots,
    contact: Contact,
    /// Tries at the current ask step (no-input and no-match).
    tries: u32,
    /// Consecutive silences, across steps.
    silences: u32,
    /// Consecutive no-matches, across steps.
    misunderstandings: u32,
    caller_spoke: bool,
    digits: String,
    last_utterance: String,
    /// The words of the input being handled, while it is one ([`Action::NoMatch`] reports them).
    heard: Option<String>,
    outcome: Option<Outcome>,
}

impl CallState {
    pub fn current_step(&self) -> &str {
        &self.step
    }
    pub fn slots(&self) -> &Slots {
        &self.slots
    }
    pub fn slot(&self, name: &str) -> Option<&SlotValue> {
        self.slots.get(name)
    }
    pub fn contact(&self) -> &Contact {
        &self.contact
    }
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }
    /// Whether the engine waits for an [`Input::Understood`] or [`Input::WebhookResult`].
    pub fn awaits_driver(&self) -> bool {
        matches!(self.phase, Phase::Understanding { .. } | Phase::Webhook { .. })
    }
}

/// Guard against a flow that loops through steps that never wait; validation rejects such cycles, so
/// this only protects against a branch cycle whose conditions never change.
const MAX_HOPS: usize = 64;
const PERSON_LABEL: &str = "speak_to_a_person";
const OPT_OUT_LABEL: &str = "stop_calling";

/// Result of matching an answer against a slot.
enum Match {
    Value(SlotValue),
    /// Understood, but not acceptable (out of range, too few digits): no point asking the model.
    Invalid,
    Undecided,
}

impl Flow {
    /// Starts a call: the greeting and the first question.
    pub fn start(&self, contact: Contact) -> (CallState, Vec<Action>) {
        let mut st = CallState {
            step: self.start.clone(),
            phase: Phase::Asking,
            slots: Slots::new(),
            contact,
            tries: 0,
            silences: 0,
            misunderstandings: 0,
            caller_spoke: false,
            digits: String::new(),
            last_utterance: String::new(),
            heard: None,
            outcome: None,
        };
        let mut out = Vec::new();
        self.run(&mut st, self.start.clone(), &mut out);
        (st, out)
    }

    /// Advances the call by one input. Pure: the same state and input always give the same actions.
    pub fn step(&self, st: &mut CallState, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if st.phase == Phase::Ended {
            return out;
        }
        match input {
            Input::Hangup => {
                let outcome = match self.steps.get(&st.step) {
                    Some(Step::Ask(a)) => a.hangup_outcome.unwrap_or(Outcome::Abandoned),
                    _ => Outcome::Abandoned,
                };
                self.finish(st, outcome, Action::Hangup, &mut out)
            }
            Input::Silence => {
                st.heard = None;
                self.on_silence(st, &mut out)
            }
            Input::Dtmf(key) => {
                st.heard = None;
                self.on_dtmf(st, key, &mut out)
            }
            Input::Utterance(text) => {
                st.heard = Some(text.clone());
                self.on_utterance(st, text, &mut out)
            }
            Input::Understood(u) => self.on_understood(st, u, &mut out),
            Input::WebhookResult(r) => self.on_webhook(st, r, &mut out),
        }
        out
    }

    fn scope<'a>(&'a self, st: &'a CallState) -> Scope<'a> {
        Scope {
            slots: &st.slots,
            contact: &st.contact.0,
            facts: &self.facts,
        }
    }

    /// The model requests this flow makes on every call whatever the caller says, with `utterance` in
    /// place of the caller's words: each ask step the model may have to understand, and each free
    /// reply, where their text does not depend on the call (only on the flow's facts). A driver
    /// computes them once before the first call, so the model's shared prompts are cached then and
    /// not on some caller's time.
    pub fn model_requests(&self, utterance: &str) -> Vec<Action> {
        let fixed = |t: &Template| {
            t.vars()
                .all(|v| matches!(v, crate::template::Var::Fact(_)))
                .then(|| {
                    t.render(&Scope {
                        slots: &Slots::new(),
                        contact: &BTreeMap::new(),
                        facts: &self.facts,
                    })
                })
        };
        let mut out = Vec::new();
        for step in self.steps.values() {
            match step {
                Step::Ask(ask) if self.understand_with_model => {
                    let Some(slot) = self.slots.get(&ask.slot) else {
                        continue;
                    };
                    if slot.slot_type == SlotType::Text {
                        continue;
                    }
                    if let Some(question) = fixed(&ask.prompt) {
                        out.push(Action::Understand(UnderstandRequest {
                            utterance: utterance.to_string(),
                            kind: self.understand_kind(slot),
                            question,
                        }));
                    }
                }
                Step::Respond { instructions, .. } => {
                    if let Some(instructions) = fixed(instructions) {
                        out.push(Action::Respond {
                            instructions,
                            utterance: utterance.to_string(),
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn render(&self, st: &CallState, t: &Template) -> String {
        t.render(&self.scope(st))
    }

    fn say(&self, st: &CallState, t: &Template, out: &mut Vec<Action>) {
        let s = self.render(st, t);
        if !s.is_empty() {
            out.push(Action::Say(s));
        }
    }

    fn current_ask(&self, st: &CallState) -> Option<(&Ask, &Slot)> {
        match self.steps.get(&st.step) {
            Some(Step::Ask(a)) => self.slots.get(&a.slot).map(|s| (a.as_ref(), s)),
            _ => None,
        }
    }

    fn listen(&self, st: &CallState, ask: &Ask, slot: &Slot, out: &mut Vec<Action>) {
        let confirming = st.phase == Phase::Confirming;
        out.push(Action::Listen {
            expect: Expect {
                step: st.step.clone(),
                slot: slot.name.clone(),
                slot_type: slot.slot_type,
                confirming,
                keypad_digits: !confirming && slot.multi_digit_keypad(),
            },
            timeout_ms: ask.timeout_ms.unwrap_or(self.global.silence_timeout_ms),
        });
    }

    fn finish(&self, st: &mut CallState, outcome: Outcome, last: Action, out: &mut Vec<Action>) {
        if outcome == Outcome::OptedOut {
            out.push(Action::RecordOptOut);
        }
        st.outcome = Some(outcome);
        st.phase = Phase::Ended;
        out.push(Action::Outcome {
            outcome,
            slots: st.slots.clone(),
        });
        out.push(last);
    }

    /// Runs steps from `name` until one waits or ends the call.
    fn run(&self, st: &mut CallState, mut name: String, out: &mut Vec<Action>) {
        for _ in 0..MAX_HOPS {
            st.step = name.clone();
            let Some(step) = self.steps.get(&name) else {
                break;
            };
            match step {
                Step::Say { text, next } => {
                    self.say(st, text, out);
                    name = next.clone();
                }
                Step::Respond { instructions, next } => {
                    out.push(Action::Respond {
                        instructions: self.render(st, instructions),
                        utterance: st.last_utterance.clone(),
                    });
                    name = next.clone();
                }
                Step::Branch { arms, otherwise } => {
                    name = arms
                        .iter()
                        .find(|(c, _)| c.eval(&st.slots, &st.contact.0))
                        .map(|(_, t)| t.clone())
                        .unwrap_or_else(|| otherwise.clone());
                }
                Step::Lookup(l) => {
                    let key = st.slots.get(&l.key).map(|v| v.to_string()).unwrap_or_default();
                    let row = self.tables.get(&l.table).and_then(|t| {
                        t.rows.iter().find(|r| {
                            r.get(&l.column)
                                .is_some_and(|v| !key.is_empty() && v.trim().eq_ignore_ascii_case(key.trim()))
                        })
                    });
                    match row {
                        Some(row) => {
                            // An empty cell leaves the slot unset (and clears what an earlier lookup put there).
                            for (slot, col) in &l.into {
                                match row.get(col).filter(|v| !v.trim().is_empty()) {
                                    Some(v) => st
                                        .slots
                                        .insert(slot.clone(), SlotValue::Text(v.trim().to_string())),
                                    None => st.slots.remove(slot),
                                };
                            }
                            name = l.found.clone();
                        }
                        None => name = l.not_found.clone(),
                    }
                }
                Step::Webhook(_) => {
                    st.phase = Phase::Webhook { attempt: 1 };
                    self.emit_webhook(st, 1, out);
                    return;
                }
                Step::Ask(a) => {
                    st.tries = 0;
                    st.digits.clear();
                    st.phase = Phase::Asking;
                    self.say(st, &a.prompt, out);
                    if let Some(slot) = self.slots.get(&a.slot) {
                        self.listen(st, a, slot, out);
                    }
                    return;
                }
                Step::Transfer { to, say, reason } => {
                    if let Some(s) = say {
                        self.say(st, s, out);
                    }
                    let to = self.render(st, to);
                    let reason = reason.clone();
                    self.finish(st, Outcome::Transferred, Action::Transfer { to, reason }, out);
                    return;
                }
                Step::End { outcome, say } => {
                    if let Some(s) = say {
                        self.say(st, s, out);
                    }
                    self.finish(st, *outcome, Action::Hangup, out);
                    return;
                }
            }
        }
        self.finish(st, Outcome::Failed, Action::Hangup, out);
    }

    fn emit_webhook(&self, st: &CallState, attempt: u32, out: &mut Vec<Action>) {
        let Some(Step::Webhook(w)) = self.steps.get(&st.step) else {
            return;
        };
        let scope = self.scope(st);
        let body = (!w.body.is_empty()).then(|| {
            let obj: serde_json::Map<String, serde_json::Value> = w
                .body
                .iter()
                .map(|(k, t)| (k.clone(), serde_json::Value::String(t.render(&scope))))
                .collect();
            serde_json::Value::Object(obj).to_string()
        });
        out.push(Action::Webhook(WebhookRequest {
            step: st.step.clone(),
            method: w.method.clone(),
            url: w.url.render(&scope),
            headers: w
                .headers
                .iter()
                .map(|(k, t)| (k.clone(), t.render(&scope)))
                .collect(),
            body,
            timeout_ms: w.timeout_ms,
            attempt,
        }));
    }

    fn on_webhook(
        &self,
        st: &mut CallState,
        result: Result<serde_json::Map<String, serde_json::Value>, String>,
        out: &mut Vec<Action>,
    ) {
        let Phase::Webhook { attempt } = st.phase else {
            return;
        };
        let Some(Step::Webhook(w)) = self.steps.get(&st.step) else {
            return;
        };
        match result {
            Ok(map) => {
                for (slot_name, field) in &w.into {
                    let mut v: Option<&serde_json::Value> = None;
                    for (i, part) in field.split('.').enumerate() {
                        v = if i == 0 {
                            map.get(part)
                        } else {
                            v.and_then(|x| x.get(part))
                        };
                    }
                    if let (Some(v), Some(slot)) = (v, self.slots.get(slot_name))
                        && let Some(value) = json_to_slot(slot, v)
                    {
                        st.slots.insert(slot_name.clone(), value);
                    }
                }
                st.phase = Phase::Asking;
                self.run(st, w.ok.clone(), out);
            }
            Err(_) if attempt <= w.retries => {
                st.phase = Phase::Webhook { attempt: attempt + 1 };
                self.emit_webhook(st, attempt + 1, out);
            }
            Err(_) => {
                st.phase = Phase::Asking;
                self.run(st, w.failed.clone(), out);
            }
        }
    }

    fn global_intent(&self, norm: &str) -> Option<GlobalIntent> {
        let empty: Vec<String> = Vec::new();
        let opt = if self.global.opt_out_enabled {
            &self.global.opt_out_phrases
        } else {
            &empty
        };
        let human = if self.global.human_goto.is_some() {
            &self.global.human_phrases
        } else {
            &empty
        };
        understand::global_intent(norm, opt, human)
    }

    fn on_global(&self, st: &mut CallState, intent: GlobalIntent, out: &mut Vec<Action>) {
        match intent {
            GlobalIntent::OptOut => {
                self.say(st, &self.global.opt_out_say, out);
                self.finish(st, Outcome::OptedOut, Action::Hangup, out);
            }
            GlobalIntent::Human => {
                if let Some(goto) = &self.global.human_goto {
                    st.misunderstandings = 0;
                    st.phase = Phase::Asking;
                    self.run(st, goto.clone(), out);
                }
            }
        }
    }

    fn on_silence(&self, st: &mut CallState, out: &mut Vec<Action>) {
        let Some((ask, slot)) = self.current_ask(st) else {
            return;
        };
        match st.phase {
            Phase::Asking if !st.digits.is_empty() => {
                // A pause after keypad digits ends the entry, like `#`.
                let digits = std::mem::take(&mut st.digits);
                self.keypad_entry(st, ask, slot, &digits, out);
                return;
            }
            Phase::Asking | Phase::Confirming => {}
            _ => return,
        }
        st.silences += 1;
        st.tries += 1;
        if st.silences >= self.global.silence_max {
            self.say(st, &self.global.silence_goodbye, out);
            let outcome = if self.direction == Direction::Outbound && !st.caller_spoke {
                Outcome::NoAnswer
            } else {
                Outcome::Abandoned
            };
            self.finish(st, outcome, Action::Hangup, out);
            return;
        }
        if st.tries >= ask.max_tries && st.phase == Phase::Asking {
            self.give_up(st, ask, out);
            return;
        }
        if st.phase == Phase::Confirming {
            if let Some(c) = &ask.confirm {
                self.say(st, c, out);
            }
        } else {
            let t = ask
                .reprompt
                .as_ref()
                .or(self.global.silence_reprompt.as_ref())
                .unwrap_or(&ask.prompt);
            self.say(st, t, out);
        }
        self.listen(st, ask, slot, out);
    }

    fn on_dtmf(&self, st: &mut CallState, key: char, out: &mut Vec<Action>) {
        let Some((ask, slot)) = self.current_ask(st) else {
            return;
        };
        if !matches!(
            st.phase,
            Phase::Asking | Phase::Confirming | Phase::Understanding { .. }
        ) {
            return;
        }
        if let Phase::Understanding { confirming, .. } = st.phase {
            st.phase = if confirming {
                Phase::Confirming
            } else {
                Phase::Asking
            };
        }
        st.caller_spoke = true;
        st.silences = 0;
        let gathering = st.phase == Phase::Asking && slot.multi_digit_keypad();
        // While digits are gathered every key is part of the entry; elsewhere the global keys win.
        if !gathering {
            if self.global.opt_out_enabled && Some(key) == self.global.opt_out_dtmf {
                self.on_global(st, GlobalIntent::OptOut, out);
                return;
            }
            if self.global.human_goto.is_some() && Some(key) == self.global.human_dtmf {
                self.on_global(st, GlobalIntent::Human, out);
                return;
            }
        }
        if st.phase == Phase::Confirming {
            match key {
                '1' => self.confirmed(st, ask, out),
                '2' => self.rejected(st, ask, slot, out),
                _ => self.no_match(st, ask, slot, out),
            }
            return;
        }
        if gathering {
            if key == '#' {
                let digits = std::mem::take(&mut st.digits);
                self.keypad_entry(st, ask, slot, &digits, out);
            } else if key.is_ascii_digit() {
                st.digits.push(key);
                self.listen(st, ask, slot, out);
            } else {
                st.digits.clear();
                self.no_match(st, ask, slot, out);
            }
            return;
        }
        let value = match (ask.dtmf.get(&key), slot.slot_type) {
            (Some(label), SlotType::YesNo) => Some(SlotValue::YesNo(label == "yes")),
            (Some(label), _) => Some(SlotValue::Label(label.clone())),
            (None, SlotType::Number) => key
                .to_digit(10)
                .map(i64::from)
                .filter(|n| in_range(slot, *n))
                .map(SlotValue::Number),
            (None, _) => None,
        };
        match value {
            Some(v) => self.accept(st, ask, slot, v, out),
            None => self.no_match(st, ask, slot, out),
        }
    }

    fn keypad_entry(&self, st: &mut CallState, ask: &Ask, slot: &Slot, digits: &str, out: &mut Vec<Action>) {
        match match_value(slot, digits, digits) {
            Match::Value(v) => self.accept(st, ask, slot, v, out),
            _ => self.no_match(st, ask, slot, out),
        }
    }

    fn on_utterance(&self, st: &mut CallState, text: String, out: &mut Vec<Action>) {
        let Some((ask, slot)) = self.current_ask(st) else {
            return;
        };
        let confirming = match &st.phase {
            Phase::Asking => false,
            Phase::Confirming => true,
            // The caller spoke again before the model answered: the newer words win.
            Phase::Understanding { confirming, .. } => *confirming,
            Phase::Webhook { .. } | Phase::Ended => return,
        };
        st.phase = if confirming {
            Phase::Confirming
        } else {
            Phase::Asking
        };
        st.caller_spoke = true;
        st.silences = 0;
        st.digits.clear();
        st.last_utterance = text.clone();
        let norm = normalize(&text);
        if norm.is_empty() {
            self.no_match(st, ask, slot, out);
            return;
        }
        if let Some(intent) = self.global_intent(&norm) {
            self.on_global(st, intent, out);
            return;
        }
        if confirming {
            self.interpret_confirmation(st, ask, slot, &text, &norm, out);
            return;
        }
        // "Three, no, four": the caller corrected themselves within the answer; the last words count.
        if slot.slot_type != SlotType::Text
            && let Some(rest) = understand::after_self_correction(&norm)
            && let Match::Value(v) = match_value(slot, &rest, &rest)
        {
            return self.accept(st, ask, slot, v, out);
        }
        match match_value(slot, &text, &norm) {
            Match::Value(v) => return self.accept(st, ask, slot, v, out),
            Match::Invalid => return self.no_match(st, ask, slot, out),
            Match::Undecided => {}
        }
        if ask.answers_faq {
            let keywords: Vec<Vec<String>> = self.faq.iter().map(|f| f.keywords.clone()).collect();
            if let Some(i) = understand::faq(&norm, &keywords) {
                st.misunderstandings = 0;
                out.push(Action::Say(self.faq[i].answer.trim().to_string()));
                self.listen(st, ask, slot, out);
                return;
            }
        }
        if !self.understand_with_model
            && let Some(v) = question_catch_all(slot, &text)
        {
            return self.accept(st, ask, slot, v, out);
        }
        if self.understand_with_model && slot.slot_type != SlotType::Text {
            let kind = self.understand_kind(slot);
            st.phase = Phase::Understanding {
                utterance: text.clone(),
                confirming: false,
            };
            out.push(Action::Understand(UnderstandRequest {
                utterance: text,
                kind,
                question: self.render(st, &ask.prompt),
            }));
            return;
        }
        self.no_match(st, ask, slot, out);
    }

    fn understand_kind(&self, slot: &Slot) -> UnderstandKind {
        match slot.slot_type {
            SlotType::OneOf => {
                let mut labels = Vec::new();
                let mut descriptions = Vec::new();
                for (label, synonyms) in &slot.options {
                    labels.push(label.clone());
                    let words: Vec<&str> = synonyms
                        .iter()
                        .map(String::as_str)
                        .filter(|s| !s.starts_with('$'))
                        .collect();
                    descriptions.push(if words.is_empty() {
                        label.replace('_', " ")
                    } else {
                        format!("{}: {}", label.replace('_', " "), words.join(", "))
                    });
                }
                let has = |l: &str| slot.options.iter().any(|(x, _)| x == l);
                if self.global.human_goto.is_some() && !has(PERSON_LABEL) {
                    labels.push(PERSON_LABEL.to_string());
                    descriptions.push("the caller wants to talk to a person".to_string());
                }
                if self.global.opt_out_enabled && !has(OPT_OUT_LABEL) {
                    labels.push(OPT_OUT_LABEL.to_string());
                    descriptions.push("the caller does not want to be called again".to_string());
                }
                UnderstandKind::OneOf { labels, descriptions }
            }
            SlotType::YesNo => UnderstandKind::YesNo,
            SlotType::Number => UnderstandKind::Number,
            t => UnderstandKind::Extract {
                slot: slot.name.clone(),
                slot_type: t,
            },
        }
    }

    fn interpret_confirmation(
        &self,
        st: &mut CallState,
        ask: &Ask,
        slot: &Slot,
        text: &str,
        norm: &str,
        out: &mut Vec<Action>,
    ) {
        let yes_no = understand::yes_no(norm);
        // "No, I said 4 5 6 7" / "actually, make it Wednesday": a new value replaces the old one.
        if !matches!(slot.slot_type, SlotType::YesNo | SlotType::OneOf) && yes_no != Some(true) {
            let (corrected, rest) = understand::strip_correction(norm);
            let candidate = if slot.slot_type == SlotType::Text {
                corrected.then(|| {
                    let skip = norm.split(' ').count() - rest.split(' ').count();
                    text.split_whitespace().skip(skip).collect::<Vec<_>>().join(" ")
                })
            } else {
                Some(rest.clone())
            };
            if let Some(c) = candidate.filter(|c| !c.trim().is_empty()) {
                let cn = normalize(&c);
                if let Match::Value(v) = match_value(slot, &c, &cn)
                    && st.slots.get(&slot.name) != Some(&v)
                {
                    st.slots.insert(slot.name.clone(), v);
                    st.misunderstandings = 0;
                    if let Some(confirm) = &ask.confirm {
                        self.say(st, confirm, out);
                    }
                    self.listen(st, ask, slot, out);
                    return;
                }
            }
        }
        match yes_no {
            Some(true) => self.confirmed(st, ask, out),
            Some(false) => self.rejected(st, ask, slot, out),
            None if self.understand_with_model => {
                st.phase = Phase::Understanding {
                    utterance: text.to_string(),
                    confirming: true,
                };
                let question = ask
                    .confirm
                    .as_ref()
                    .map(|c| self.render(st, c))
                    .unwrap_or_default();
                out.push(Action::Understand(UnderstandRequest {
                    utterance: text.to_string(),
                    kind: UnderstandKind::YesNo,
                    question,
                }));
            }
            None => self.no_match(st, ask, slot, out),
        }
    }

    fn on_understood(&self, st: &mut CallState, u: Understanding, out: &mut Vec<Action>) {
        let Phase::Understanding {
            confirming,
            ref utterance,
        } = st.phase
        else {
            return;
        };
        let utterance = utterance.clone();
        let Some((ask, slot)) = self.current_ask(st) else {
            return;
        };
        if confirming {
            st.phase = Phase::Confirming;
            match u {
                Understanding::YesNo(true) => self.confirmed(st, ask, out),
                Understanding::YesNo(false) => self.rejected(st, ask, slot, out),
                _ => self.no_match(st, ask, slot, out),
            }
            return;
        }
        st.phase = Phase::Asking;
        if let Understanding::Label(l) = &u {
            let own = slot.options.iter().any(|(x, _)| x == l);
            if !own && l == PERSON_LABEL && self.global.human_goto.is_some() {
                return self.on_global(st, GlobalIntent::Human, out);
            }
            if !own && l == OPT_OUT_LABEL && self.global.opt_out_enabled {
                return self.on_global(st, GlobalIntent::OptOut, out);
            }
        }
        match validate_understanding(slot, u, &utterance).or_else(|| question_catch_all(slot, &utterance)) {
            Some(v) => self.accept(st, ask, slot, v, out),
            None => self.no_match(st, ask, slot, out),
        }
    }

    fn accept(&self, st: &mut CallState, ask: &Ask, slot: &Slot, v: SlotValue, out: &mut Vec<Action>) {
        st.misunderstandings = 0;
        st.slots.insert(slot.name.clone(), v);
        if let Some(confirm) = &ask.confirm {
            st.phase = Phase::Confirming;
            self.say(st, confirm, out);
            self.listen(st, ask, slot, out);
            return;
        }
        self.leave(st, ask, out);
    }

    fn confirmed(&self, st: &mut CallState, ask: &Ask, out: &mut Vec<Action>) {
        st.misunderstandings = 0;
        self.leave(st, ask, out);
    }

    /// "No" to a read-back: forget the value and ask again (a try).
    fn rejected(&self, st: &mut CallState, ask: &Ask, slot: &Slot, out: &mut Vec<Action>) {
        st.slots.remove(&slot.name);
        st.phase = Phase::Asking;
        st.tries += 1;
        if st.tries >= ask.max_tries {
            return self.give_up(st, ask, out);
        }
        out.push(Action::Say("Okay, let's try again.".to_string()));
        self.say(st, &ask.prompt, out);
        self.listen(st, ask, slot, out);
    }

    fn leave(&self, st: &mut CallState, ask: &Ask, out: &mut Vec<Action>) {
        st.phase = Phase::Asking;
        let route = match st.slots.get(&ask.slot) {
            Some(SlotValue::Label(l)) => ask.routes.get(l),
            Some(SlotValue::YesNo(b)) => ask.routes.get(if *b { "yes" } else { "no" }),
            _ => None,
        };
        match route.or(ask.next.as_ref()) {
            Some(t) => self.run(st, t.clone(), out),
            None => self.finish(st, Outcome::Failed, Action::Hangup, out),
        }
    }

    fn no_match(&self, st: &mut CallState, ask: &Ask, slot: &Slot, out: &mut Vec<Action>) {
        if let Some(heard) = st.heard.take() {
            out.push(Action::NoMatch {
                step: st.step.clone(),
                slot: slot.name.clone(),
                heard,
            });
        }
        st.tries += 1;
        st.misunderstandings += 1;
        if st.tries >= ask.max_tries {
            return self.give_up(st, ask, out);
        }
        if st.misunderstandings >= self.global.misunderstanding_max
            && self.global.misunderstanding_goto.is_some()
        {
            return self.misunderstood(st, out);
        }
        if st.phase == Phase::Confirming {
            self.say(st, &self.global.no_match, out);
            if let Some(c) = &ask.confirm {
                self.say(st, c, out);
            }
        } else if let Some(nm) = &ask.no_match {
            self.say(st, nm, out);
        } else {
            self.say(st, &self.global.no_match, out);
            self.say(st, &ask.prompt, out);
        }
        self.listen(st, ask, slot, out);
    }

    /// Out of tries at this step: its `on_fail`, else the global misunderstanding handler.
    fn give_up(&self, st: &mut CallState, ask: &Ask, out: &mut Vec<Action>) {
        st.phase = Phase::Asking;
        match &ask.on_fail {
            Some(f) => {
                st.misunderstandings = 0;
                self.run(st, f.clone(), out);
            }
            None => self.misunderstood(st, out),
        }
    }

    fn misunderstood(&self, st: &mut CallState, out: &mut Vec<Action>) {
        st.misunderstandings = 0;
        st.phase = Phase::Asking;
        if let Some(s) = &self.global.misunderstanding_say {
            self.say(st, s, out);
        }
        match &self.global.misunderstanding_goto {
            Some(g) => self.run(st, g.clone(), out),
            // Unreachable for a validated flow (ask steps need on_fail when there is no handler).
            None => self.finish(st, Outcome::Failed, Action::Hangup, out),
        }
    }
}

fn in_range(slot: &Slot, n: i64) -> bool {
    slot.min.is_none_or(|lo| n >= lo) && slot.max.is_none_or(|hi| n <= hi)
}

/// The deterministic reading of an answer for `slot`.
fn match_value(slot: &Slot, text: &str, norm: &str) -> Match {
    let decided = |v: Option<SlotValue>| v.map_or(Match::Undecided, Match::Value);
    match slot.slot_type {
        SlotType::Text => {
            let v = if slot.person_name {
                understand::person_name(text)
            } else {
                text.trim().to_string()
            };
            if v.is_empty() {
                Match::Undecided
            } else {
                Match::Value(SlotValue::Text(v))
            }
        }
        SlotType::Number => match understand::number(norm) {
            Some(n) if in_range(slot, n) => Match::Value(SlotValue::Number(n)),
            Some(_) => Match::Invalid,
            // A number said wins over words for one: "not bad, a solid 3" is 3.
            None => decided(
                understand::one_of(norm, &slot.options)
                    .and_then(|label| label.trim().parse().ok())
                    .map(SlotValue::Number),
            ),
        },
        SlotType::YesNo => decided(understand::yes_no(norm).map(SlotValue::YesNo)),
        SlotType::Datetime => {
            decided(understand::datetime(norm).map(|d| SlotValue::DateTime(d.normalized())))
        }
        SlotType::Phone => match understand::phone(norm) {
            Some(p) => Match::Value(SlotValue::Phone(p)),
            None if norm.chars().filter(char::is_ascii_digit).count() >= 3 => Match::Invalid,
            None => Match::Undecided,
        },
        SlotType::OneOf => decided(understand::one_of(norm, &slot.options).map(SlotValue::Label)),
    }
}

/// A question that no synonym, FAQ entry or model answer placed goes to the slot's `$question` label (a
/// free answer, say), rather than counting as a misunderstanding: the caller was clear, the menu just
/// did not foresee it.
fn question_catch_all(slot: &Slot, text: &str) -> Option<SlotValue> {
    if slot.slot_type != SlotType::OneOf || !understand::is_question(text) {
        return None;
    }
    slot.options
        .iter()
        .find(|(_, synonyms)| synonyms.iter().any(|s| s == understand::QUESTION_SYNONYM))
        .map(|(label, _)| SlotValue::Label(label.clone()))
}

/// The model's answer, held to the same rules as the caller's words. A number, date or time it read
/// must also be one the caller said ([`understand::grounded`]).
fn validate_understanding(slot: &Slot, u: Understanding, utterance: &str) -> Option<SlotValue> {
    let said = normalize(utterance);
    let u = match u {
        Understanding::Number(n) if !understand::grounded(&n.to_string(), &said) => {
            return None;
        }
        Understanding::Text(t)
            if slot.slot_type != SlotType::Text && !understand::grounded(&normalize(&t), &said) =>
        {
            return None;
        }
        u => u,
    };
    match (slot.slot_type, u) {
        (SlotType::OneOf, Understanding::Label(l)) => slot
            .options
            .iter()
            .any(|(x, _)| *x == l)
            .then_some(SlotValue::Label(l)),
        (SlotType::YesNo, Understanding::YesNo(b)) => Some(SlotValue::YesNo(b)),
        (SlotType::Number, Understanding::Number(n)) => in_range(slot, n).then_some(SlotValue::Number(n)),
        (SlotType::Text, Understanding::Text(t)) if !t.trim().is_empty() => Some(SlotValue::Text(t)),
        (SlotType::Phone, Understanding::Number(n)) => {
            understand::phone(&n.to_string()).map(SlotValue::Phone)
        }
        (_, Understanding::Text(t)) => match match_value(slot, &t, &normalize(&t)) {
            Match::Value(v) => Some(v),
            _ => None,
        },
        _ => None,
    }
}

fn json_to_slot(slot: &Slot, v: &serde_json::Value) -> Option<SlotValue> {
    use serde_json::Value;
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => return (slot.slot_type == SlotType::YesNo).then_some(SlotValue::YesNo(*b)),
        _ => return None,
    };
    match slot.slot_type {
        SlotType::Text => Some(SlotValue::Text(text)),
        _ => match match_value(slot, &text, &normalize(&text)) {
            Match::Value(v) => Some(v),
            _ => None,
        },
    }
}
