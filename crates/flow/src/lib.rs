//! Scripted conversations: the YAML flows a business writes for its phone line, their validation, and a
//! pure engine that runs them.
//!
//! # What is here
//!
//! - [`Flow::load`] / [`Flow::parse`] read a flow file (format below) and check it completely before any
//!   call uses it. Every problem is reported at once as `file:line:column: what is wrong` ([`FlowErrors`]).
//! - [`Flow::start`] and [`Flow::step`] are the engine: `step(state, input) -> actions`. An [`Input`] is
//!   what happened on the line (the caller said something, pressed a key, stayed silent, hung up) or the
//!   answer to a request the engine made (a model's [`Understanding`], a webhook's result). An [`Action`]
//!   is what the call pipeline must do next: say a sentence, listen, ask the model, call a webhook,
//!   transfer, hang up, record the [`Outcome`].
//! - [`understand`] holds the deterministic matchers (numbers, yes/no, phone numbers, dates, labels by
//!   synonyms, "talk to a person", "stop calling me").
//! - [`scenario`] reads scenario files (scripted callers with expectations) and runs them without a model.
//!
//! # Why it is cut this way
//!
//! - **The engine is pure and synchronous**: no clock, no randomness, no I/O, no async runtime. The
//!   same flow, contact and inputs always give the same actions, so a scenario is a unit test and a call
//!   log can be replayed. Everything slow or fallible (speech, the model, HTTP, timers) is the driver's job
//!   in the `call` crate; the engine only *asks* for it through an [`Action`] and continues when the
//!   driver feeds the answer back as an [`Input`]. This is also why a webhook is an action and not a call.
//!   Table lookups are pure data shipped with the flow, so the engine does those itself.
//! - **Deterministic first, model second.** Every utterance goes through the matchers in [`understand`]
//!   before the engine considers the language model, and only when the step's slot allows it
//!   (`understand_with_model`). Whatever the model answers is validated like any caller input (a label
//!   that is not in the list, a number out of range, is a no-match): the model can fill a slot, never
//!   invent a path through the flow. Steps that are deterministic (say, branch, lookup, transfer, end)
//!   never depend on it. Most calls on a small local model are thereby decided in microseconds, and the
//!   shipped scenarios pass with no model at all.
//! - **Checked before use.** A flow is edited by a small business, not a developer; a typo must fail
//!   at load with its line, not in the middle of a customer's call. Parsing is two passes: serde
//!   ([`serde_yaml_ng`], which reports syntax errors and unknown keys with their position) for the shape,
//!   and an event pass ([`saphyr_parser`]) that maps every node path (`steps.menu.next`) to its line and
//!   column, so semantic errors (unknown step, unreachable step, a cycle that never ends the call …) point
//!   at the right place too.
//! - **One outcome per call.** Every path that ends a call emits exactly one [`Action::Outcome`] (with
//!   the collected slots) right before the final [`Action::Hangup`] or [`Action::Transfer`], including
//!   the global exits (silence, opt-out, the caller hanging up).
//!
//! # The flow file
//!
//! One flow per YAML file under `prompts/flows/`:
//!
//! ```yaml
//! name: inbound_support
//! direction: inbound                # or outbound
//! persona: You are the automated phone assistant of Bella's Bakery.
//! system_prompt: Keep replies to one or two short sentences.
//! facts: { business: Bella's Bakery, hours: "…", address: "…" }   # {{facts.hours}}
//! faq:                              # answered word for word when a keyword matches (ask steps with answers_faq)
//!   - { question: Do you deliver?, answer: "…", keywords: [deliver, delivery] }
//! contact_fields: [name, appointment_time]                         # {{contact.name}}
//! understand_with_model: true       # the default; false: what the matchers cannot decide is a no-match
//! slots:
//!   order_number: { type: number, min: 1, max: 99999999 }
//!   rating: { type: number, min: 1, max: 5, options: { "5": [excellent], "1": [terrible] } }   # words for numbers
//!   callback_number: { type: phone }
//!   caller_name: { type: text, person_name: true }
//!   new_time: { type: datetime }
//!   ok: { type: yes_no }
//!   topic: { type: one_of, options: { hours: [hours, open, close], other: [] } }   # [] = model only
//!   # `$yes` / `$no` in a synonym list stand for the yes and no phrases; `$question` makes the label the
//!   # catch-all for a question that no synonym, FAQ entry or model answer placed
//! tables:
//!   orders: { file: orders.csv }    # or rows: [{order_id: "1001", status: baked}]
//! global:
//!   silence: { timeout_ms: 6000, max: 2, reprompt: "Are you still there?", goodbye: "Goodbye." }
//!   human: { goto: transfer, dtmf: "0", phrases: [a manager] }   # "talk to a person" from any step
//!   opt_out: { dtmf: "9", say: "…", phrases: [] }                 # "stop calling me" from any step
//!   misunderstanding: { max: 3, goto: take_message, say: "…" }    # consecutive no-matches across steps
//!   no_match: "Sorry, I didn't catch that."
//! start: greet
//! steps:
//!   greet:  { say: "Thanks for calling {{facts.business}}.", next: menu }
//!   menu:
//!     ask: topic                    # collect a slot
//!     prompt: How can I help?
//!     reprompt: Are you there? How can I help?      # after silence
//!     no_match: Sorry, you can ask about our hours or an order.
//!     max_tries: 3                  # then on_fail (or the misunderstanding handler)
//!     confirm: "That's {{order_number|spell}}, right?"   # read back and ask yes/no; "no" asks again
//!     dtmf: { "1": hours, "2": order }                     # keys → labels (or yes/no)
//!     answers_faq: true
//!     routes: { hours: say_hours, other: free }            # one_of label → step; else `next`
//!     next: anything_else
//!     on_fail: take_message
//!   check:  { branch: [ { if: "rating <= 2 and comment is not set", goto: sorry }, { else: thanks } ] }
//!   free:   { respond: "Answer the caller's question from the business facts.", next: anything_else }
//!   find:   { lookup: { table: orders, key: order_number, column: order_id, into: { order_status: status } },
//!             found: tell_status, not_found: unknown_order }
//!   notify: { webhook: { url: "https://example.com/hook", method: POST, body: { order: "{{order_number}}" },
//!                        timeout_ms: 3000, retries: 1, into: { order_status: order.status } },
//!             ok: tell_status, failed: take_message }
//!   human:  { transfer: { to: "+15550100", say: "Connecting you now.", reason: caller asked } }
//!   bye:    { end: { outcome: resolved, say: Goodbye! } }
//! ```
//!
//! Templates: `{{slot}}`, `{{contact.field}}`, `{{facts.name}}`, filters `|spell`, `|raw`,
//! `|default:TEXT`. Conditions: `==`, `!=`, `<`, `<=`, `>`, `>=`, `is set`, `is not set`, `and`, `or`,
//! `not`, parentheses. Outcomes: see [`Outcome`]. An `end` with `outcome: opted_out` also records the
//! do-not-call request. Keypad: a number or phone slot gathers digits until `#` or a pause (global keys
//! are ordinary digits there); other slots take one key through the step's `dtmf` map.

mod condition;
mod engine;
mod flow;
mod load;
pub mod model;
pub mod scenario;
pub mod spec;
mod template;
pub mod understand;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use engine::{
    Action, CallState, Contact, Expect, Input, UnderstandKind, UnderstandRequest, Understanding,
    WebhookRequest,
};
pub use flow::{Faq, Flow, Slot, Table};
pub use spec::Direction;
pub use template::Template;

/// How a call ended, for the call log and the campaign's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The caller got what they called for.
    Resolved,
    /// Handed to a person.
    Transferred,
    MessageTaken,
    /// The contact confirmed (an appointment).
    Confirmed,
    Rescheduled,
    Cancelled,
    /// The contact asked not to be called again.
    OptedOut,
    WrongPerson,
    /// A survey was answered to the end.
    Completed,
    /// Nobody ever spoke on an outbound call.
    NoAnswer,
    /// The caller hung up or went silent before the flow ended.
    Abandoned,
    /// The flow could not go on (a runaway loop); should never happen with a validated flow.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Resolved => "resolved",
            Outcome::Transferred => "transferred",
            Outcome::MessageTaken => "message_taken",
            Outcome::Confirmed => "confirmed",
            Outcome::Rescheduled => "rescheduled",
            Outcome::Cancelled => "cancelled",
            Outcome::OptedOut => "opted_out",
            Outcome::WrongPerson => "wrong_person",
            Outcome::Completed => "completed",
            Outcome::NoAnswer => "no_answer",
            Outcome::Abandoned => "abandoned",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotType {
    Text,
    Number,
    YesNo,
    Datetime,
    Phone,
    OneOf,
}

impl fmt::Display for SlotType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlotType::Text => "text",
            SlotType::Number => "number",
            SlotType::YesNo => "yes_no",
            SlotType::Datetime => "datetime",
            SlotType::Phone => "phone",
            SlotType::OneOf => "one_of",
        })
    }
}

/// A collected value. Serializes as plain JSON (string, number or boolean); `Display` is the normalized
/// form the call log and scenario expectations compare against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SlotValue {
    Number(i64),
    YesNo(bool),
    Text(String),
    /// A one_of label.
    Label(String),
    /// Normalized without a clock: "Tuesday 15:00", "next Monday 10:00", "March 3 14:30", "tomorrow".
    DateTime(String),
    /// Digits, with a leading `+` when one was said: "+15551234567".
    Phone(String),
}

impl SlotValue {
    /// How a template reads the value aloud: dates as "Tuesday at 3 PM", phone numbers digit by digit.
    pub fn spoken(&self) -> String {
        match self {
            SlotValue::DateTime(s) => understand::spoken_datetime(s),
            SlotValue::Phone(p) => template::spell(p.trim_start_matches('+')),
            SlotValue::Label(l) => l.replace('_', " "),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for SlotValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotValue::Number(n) => write!(f, "{n}"),
            SlotValue::YesNo(b) => f.write_str(if *b { "yes" } else { "no" }),
            SlotValue::Text(s) | SlotValue::Label(s) | SlotValue::DateTime(s) | SlotValue::Phone(s) => {
                f.write_str(s)
            }
        }
    }
}

/// Collected slots by name.
pub type Slots = BTreeMap<String, SlotValue>;

/// One problem in a flow (or scenario) file, with its position when known (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FlowError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in a file, sorted by position. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FlowErrors(pub Vec<FlowError>);

impl fmt::Display for FlowErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl FlowErrors {
    pub fn errors(&self) -> &[FlowError] {
        &self.0
    }
}

impl From<FlowError> for FlowErrors {
    fn from(e: FlowError) -> Self {
        FlowErrors(vec![e])
    }
}
