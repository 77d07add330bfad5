//! The validated flow: what the engine runs. Built only by [`crate::load`], immutable afterwards.

use std::collections::BTreeMap;

use crate::condition::Cond;
use crate::spec::Direction;
use crate::template::Template;
use crate::{Outcome, SlotType};

/// A validated flow. Cheap enough to clone per call; shared read-only by every call that runs it.
#[derive(Debug, Clone)]
pub struct Flow {
    pub(crate) file: String,
    pub(crate) name: String,
    pub(crate) direction: Direction,
    pub(crate) description: Option<String>,
    pub(crate) system_prompt: String,
    pub(crate) facts: BTreeMap<String, String>,
    pub(crate) faq: Vec<Faq>,
    pub(crate) contact_fields: Vec<String>,
    pub(crate) slots: BTreeMap<String, Slot>,
    pub(crate) tables: BTreeMap<String, Table>,
    pub(crate) understand_with_model: bool,
    pub(crate) voicemail: Option<Template>,
    pub(crate) global: Global,
    pub(crate) start: String,
    pub(crate) steps: BTreeMap<String, Step>,
}

/// A question the business answers the same way every time.
#[derive(Debug, Clone)]
pub struct Faq {
    pub question: String,
    pub answer: String,
    pub keywords: Vec<String>,
}

/// A value the flow collects.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub slot_type: SlotType,
    pub description: Option<String>,
    /// one_of: (label, synonyms), in file order of the labels (sorted); number: (number, words for it).
    pub options: Vec<(String, Vec<String>)>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub person_name: bool,
}

impl Slot {
    /// Whether keypad digits are gathered until `#` (or a pause) rather than decided one key at a time.
    pub(crate) fn multi_digit_keypad(&self) -> bool {
        match self.slot_type {
            SlotType::Phone => true,
            SlotType::Number => !matches!((self.min, self.max), (Some(lo), Some(hi)) if lo >= 0 && hi <= 9),
            _ => false,
        }
    }
}

/// A small table shipped with the flow (rows of named columns).
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<BTreeMap<String, String>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Global {
    pub silence_timeout_ms: u32,
    pub silence_max: u32,
    pub silence_reprompt: Option<Template>,
    pub silence_goodbye: Template,
    pub human_goto: Option<String>,
    pub human_phrases: Vec<String>,
    pub human_dtmf: Option<char>,
    pub opt_out_enabled: bool,
    pub opt_out_phrases: Vec<String>,
    pub opt_out_dtmf: Option<char>,
    pub opt_out_say: Template,
    pub misunderstanding_max: u32,
    pub misunderstanding_goto: Option<String>,
    pub misunderstanding_say: Option<Template>,
    pub no_match: Template,
}

#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub slot: String,
    pub prompt: Template,
    pub reprompt: Option<Template>,
    pub no_match: Option<Template>,
    pub max_tries: u32,
    pub confirm: Option<Template>,
    pub dtmf: BTreeMap<char, String>,
    pub routes: BTreeMap<String, String>,
    pub next: Option<String>,
    pub on_fail: Option<String>,
    pub answers_faq: bool,
    pub timeout_ms: Option<u32>,
    pub hangup_outcome: Option<crate::Outcome>,
}

#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    pub table: String,
    pub key: String,
    pub column: String,
    pub into: BTreeMap<String, String>,
    pub found: String,
    pub not_found: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub url: Template,
    pub method: String,
    pub headers: BTreeMap<String, Template>,
    pub body: BTreeMap<String, Template>,
    pub timeout_ms: u32,
    pub retries: u32,
    pub into: BTreeMap<String, String>,
    pub ok: String,
    pub failed: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    Say {
        text: Template,
        next: String,
    },
    Ask(Box<Ask>),
    Branch {
        arms: Vec<(Cond, String)>,
        otherwise: String,
    },
    Respond {
        instructions: Template,
        next: String,
    },
    Lookup(Lookup),
    Webhook(Box<Webhook>),
    Transfer {
        to: Template,
        say: Option<Template>,
        reason: String,
    },
    End {
        outcome: Outcome,
        say: Option<Template>,
    },
}

impl Step {
    /// Every step this one can go to by its own transitions.
    pub(crate) fn targets(&self) -> Vec<&str> {
        match self {
            Step::Say { next, .. } | Step::Respond { next, .. } => vec![next],
            Step::Ask(a) => {
                let mut v: Vec<&str> = a.routes.values().map(String::as_str).collect();
                v.extend(a.next.as_deref());
                v.extend(a.on_fail.as_deref());
                v
            }
            Step::Branch { arms, otherwise } => {
                let mut v: Vec<&str> = arms.iter().map(|(_, t)| t.as_str()).collect();
                v.push(otherwise);
                v
            }
            Step::Lookup(l) => vec![&l.found, &l.not_found],
            Step::Webhook(w) => vec![&w.ok, &w.failed],
            Step::Transfer { .. } | Step::End { .. } => vec![],
        }
    }

    /// Whether running this step stops for the caller or the driver (so a cycle through it is not a
    /// busy loop).
    pub(crate) fn waits(&self) -> bool {
        matches!(self, Step::Ask(_) | Step::Webhook(_))
    }

    pub(crate) fn is_final(&self) -> bool {
        matches!(self, Step::Transfer { .. } | Step::End { .. })
    }
}

impl Flow {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn direction(&self) -> Direction {
        self.direction
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The file the flow was loaded from (as given to [`Flow::load`] / [`Flow::parse`]).
    pub fn file(&self) -> &str {
        &self.file
    }
    /// The message for an answering machine, for this contact; `None` when the flow has none.
    pub fn voicemail_message(&self, contact: &crate::Contact) -> Option<String> {
        let scope = crate::template::Scope {
            slots: &BTreeMap::new(),
            contact: &contact.0,
            facts: &self.facts,
        };
        self.voicemail.as_ref().map(|t| t.render(&scope))
    }
    /// Persona, rules and business facts (with the FAQ) as one system message for the language model.
    pub fn system_prompt(&self) -> &str {
        &self.system_prompt
    }
    pub fn facts(&self) -> &BTreeMap<String, String> {
        &self.facts
    }
    pub fn faq(&self) -> &[Faq] {
        &self.faq
    }
    pub fn contact_fields(&self) -> &[String] {
        &self.contact_fields
    }
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.get(name)
    }
    pub fn tables(&self) -> &BTreeMap<String, Table> {
        &self.tables
    }
    pub fn understands_with_model(&self) -> bool {
        self.understand_with_model
    }
    pub fn start_step(&self) -> &str {
        &self.start
    }
    /// Step names, sorted.
    pub fn step_names(&self) -> impl Iterator<Item = &str> {
        self.steps.keys().map(String::as_str)
    }

    /// The same flow with model understanding switched on or off (tests, or a deployment without a model).
    pub fn with_model_understanding(mut self, on: bool) -> Flow {
        self.understand_with_model = on;
        self
    }
}
