//! The flow file as written: serde types that mirror the YAML one to one.
//!
//! Nothing here is checked beyond its shape (`deny_unknown_fields` everywhere, so a misspelt key is an
//! error with its line). [`crate::load`] turns a [`FlowSpec`] into a validated [`crate::Flow`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The caller dialled the business.
    Inbound,
    /// The runtime called the contact (a campaign).
    Outbound,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    pub name: String,
    pub direction: Direction,
    #[serde(default)]
    pub description: Option<String>,
    /// Who the assistant is, in one or two sentences ("the automated assistant of Bella's Bakery").
    pub persona: String,
    /// Rules for the language model when it phrases a free reply.
    #[serde(default)]
    pub system_prompt: String,
    /// Named business facts (`hours`, `address`, …), usable in templates as `{{facts.NAME}}`.
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    #[serde(default)]
    pub faq: Vec<FaqSpec>,
    /// Contact fields the flow uses as `{{contact.NAME}}` (outbound calls get them from the campaign).
    #[serde(default)]
    pub contact_fields: Vec<String>,
    #[serde(default)]
    pub slots: BTreeMap<String, SlotSpec>,
    #[serde(default)]
    pub tables: BTreeMap<String, TableSpec>,
    #[serde(default = "default_true")]
    pub understand_with_model: bool,
    /// What an outbound call leaves on an answering machine, after the beep (a template); without
    /// it, a call that reaches a machine hangs up.
    #[serde(default)]
    pub voicemail: Option<String>,
    #[serde(default)]
    pub global: GlobalSpec,
    pub start: String,
    pub steps: BTreeMap<String, StepSpec>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqSpec {
    pub question: String,
    pub answer: String,
    /// Words or phrases that identify the question (word-boundary match). Any one matches.
    #[serde(default)]
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    #[serde(rename = "type")]
    pub slot_type: Option<crate::SlotType>,
    #[serde(default)]
    pub description: Option<String>,
    /// one_of: label → synonyms (word-boundary phrases). An empty list means "only the model picks it".
    /// number: a number → words that mean it ("5": [excellent]); a number said wins over them.
    #[serde(default)]
    pub options: BTreeMap<String, Vec<String>>,
    /// number: inclusive bounds.
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// text: strip "my name is", "this is", "it's" … from the answer.
    #[serde(default)]
    pub person_name: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// A CSV file (first line: column names), relative to the flow file.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub rows: Vec<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalSpec {
    #[serde(default)]
    pub silence: SilenceSpec,
    /// "Talk to a person": where to go. Without it the phrases are not special.
    #[serde(default)]
    pub human: Option<HumanSpec>,
    #[serde(default)]
    pub opt_out: OptOutSpec,
    #[serde(default)]
    pub misunderstanding: MisunderstandingSpec,
    /// Said on a no-match when the step has no `no_match` of its own.
    #[serde(default)]
    pub no_match: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Consecutive silences that end the call.
    #[serde(default)]
    pub max: Option<u32>,
    #[serde(default)]
    pub reprompt: Option<String>,
    #[serde(default)]
    pub goodbye: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumanSpec {
    pub goto: String,
    #[serde(default)]
    pub phrases: Vec<String>,
    #[serde(default)]
    pub dtmf: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptOutSpec {
    /// Extra phrases on top of the built-in ones.
    #[serde(default)]
    pub phrases: Vec<String>,
    #[serde(default)]
    pub dtmf: Option<String>,
    #[serde(default)]
    pub say: Option<String>,
    /// Set to false for a flow where opting out makes no sense (the built-in phrases are then ordinary words).
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MisunderstandingSpec {
    /// Consecutive no-matches (across steps) before `goto`.
    #[serde(default)]
    pub max: Option<u32>,
    #[serde(default)]
    pub goto: Option<String>,
    #[serde(default)]
    pub say: Option<String>,
}

/// One step. Exactly one of the kind keys (`say`, `ask`, `branch`, `respond`, `lookup`, `webhook`,
/// `transfer`, `end`) must be present; the other keys belong to that kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    #[serde(default)]
    pub say: Option<String>,
    #[serde(default)]
    pub ask: Option<String>,
    #[serde(default)]
    pub branch: Option<Vec<BranchArmSpec>>,
    #[serde(default)]
    pub respond: Option<String>,
    #[serde(default)]
    pub lookup: Option<LookupSpec>,
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
    #[serde(default)]
    pub transfer: Option<TransferSpec>,
    #[serde(default)]
    pub end: Option<EndSpec>,

    // ask
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub reprompt: Option<String>,
    #[serde(default)]
    pub no_match: Option<String>,
    #[serde(default)]
    pub max_tries: Option<u32>,
    #[serde(default)]
    pub confirm: Option<String>,
    #[serde(default)]
    pub dtmf: BTreeMap<String, String>,
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    #[serde(default)]
    pub on_fail: Option<String>,
    #[serde(default)]
    pub answers_faq: bool,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// The call's outcome if the caller hangs up while this step waits (default `abandoned`): a caller
    /// who hangs up at "anything else?" after getting an answer was served.
    #[serde(default)]
    pub hangup_outcome: Option<crate::Outcome>,

    // transitions
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub found: Option<String>,
    #[serde(default)]
    pub not_found: Option<String>,
    #[serde(default)]
    pub ok: Option<String>,
    #[serde(default)]
    pub failed: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchArmSpec {
    #[serde(rename = "if", default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub goto: Option<String>,
    #[serde(rename = "else", default)]
    pub otherwise: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    pub table: String,
    /// The slot whose value is looked up.
    pub key: String,
    /// The table column it is compared with.
    pub column: String,
    /// slot → column, filled from the matching row.
    #[serde(default)]
    pub into: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Field → template; sent as a JSON object of strings.
    #[serde(default)]
    pub body: BTreeMap<String, String>,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    #[serde(default)]
    pub retries: Option<u32>,
    /// slot → field of the JSON response (dots go into nested objects: `order.status`).
    #[serde(default)]
    pub into: BTreeMap<String, String>,
}

fn default_method() -> String {
    "POST".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    /// A phone number or a SIP address.
    pub to: String,
    #[serde(default)]
    pub say: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndSpec {
    pub outcome: crate::Outcome,
    #[serde(default)]
    pub say: Option<String>,
}
