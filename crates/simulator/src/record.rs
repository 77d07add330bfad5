//! What the provider simulator saw, for tests and demos: `GET /sim/calls` answers a [`Record`] as
//! JSON, and `switchboard simulate-provider --report FILE` writes the same at exit.
//!
//! The field names are an interface (black-box tests read them): add fields, never rename one. Times
//! are RFC 3339 in UTC; statuses use the provider's own spellings (`no-answer`, `machine_end_beep`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchboard_telephony::webhook::{AnsweredBy, CallStatus};

use crate::caller::StreamEnd;
use crate::numbers::{Answer, FaultKind};

/// Every create request and every call placed, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub requests: Vec<CreateRequest>,
    pub calls: Vec<CallRecord>,
}

impl Record {
    /// The calls placed to `to`, oldest first.
    pub fn calls_to<'a>(&'a self, to: &'a str) -> impl Iterator<Item = &'a CallRecord> + 'a {
        self.calls.iter().filter(move |c| c.to == to)
    }
}

/// One `POST …/Calls.json`, valid or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub at: String,
    pub to: Option<String>,
    pub from: Option<String>,
    pub url: Option<String>,
    /// Inline TwiML instead of a URL.
    pub twiml: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_events: Vec<String>,
    /// `Enable` or `DetectMessageEnd`, as sent.
    pub machine_detection: Option<String>,
    /// Ring seconds, as sent.
    pub timeout: Option<String>,
    /// What the simulator answered: 201, or the error's status.
    pub http_status: u16,
    /// The provider error code of a refusal (`21201`: no `To`, …).
    pub error_code: Option<u32>,
    /// The call placed, if one was (also with `error_after_create` and `slow_create`).
    pub call_sid: Option<String>,
    pub fault: Option<FaultKind>,
}

/// Who or what ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The simulated person or machine hung up (every turn taken and answered).
    Caller,
    /// The runtime: `Status=completed` over REST, `<Hangup/>`, its TwiML running out, or a closed
    /// stream with nothing after it.
    Runtime,
    /// The runtime's TwiML dialed someone else (see [`CallRecord::transfers`]).
    Transfer,
    /// Busy, no answer, failed, or canceled before anyone picked up.
    NotAnswered,
    /// The call reached its longest length (`max_seconds` or the request's `TimeLimit`).
    TimeLimit,
    /// The runtime's webhook or stream failed (see [`CallRecord::errors`]).
    Error,
    /// The simulator stopped.
    Shutdown,
}

/// One call placed, from `queued` to its final status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub sid: String,
    pub to: String,
    pub from: String,
    /// The voice webhook, as sent in `Url` (absent with inline TwiML).
    pub url: Option<String>,
    /// 1 for the first create request to this number, 2 for the second, …
    pub nth: usize,
    /// How the number was configured to answer this call.
    pub answer: Answer,
    pub fault: Option<FaultKind>,
    pub machine_detection: Option<String>,
    pub created_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    /// Now, or final once `ended_at` is set: `completed`, `busy`, `no-answer`, `failed`, `canceled`.
    pub status: CallStatus,
    /// Sent with the voice webhook and callbacks when machine detection was asked.
    pub answered_by: Option<AnsweredBy>,
    /// From answer to hang-up, whole seconds rounded up (the callbacks' `CallDuration`).
    pub duration_seconds: u64,
    pub ended_by: Option<EndedBy>,
    /// The runtime asked to end the call (`Status=completed` or `canceled` over REST).
    pub hangup_requested: bool,
    /// Every `<Say>` text heard, in order.
    pub said: Vec<String>,
    /// Every `<Play>` URL played.
    pub played: Vec<String>,
    /// What the runtime's `<Say>` left on an answering machine (answer = voicemail).
    pub voicemail: Option<String>,
    /// Where `<Dial>` sent the call.
    pub transfers: Vec<String>,
    /// The runtime's REST changes to the live call, as sent (`Status=completed`, `Twiml=…`, `Url=…`).
    pub updates: Vec<String>,
    /// The voice webhook and `<Redirect>` requests made for the call.
    pub webhooks: Vec<Delivery>,
    /// The media stream, when the TwiML connected one.
    pub stream: Option<StreamRecord>,
    /// Status callbacks sent, in order.
    pub callbacks: Vec<Callback>,
    pub errors: Vec<String>,
}

/// One request the simulator made to the runtime, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub url: String,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// One status callback sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    /// `initiated`, `ringing`, `answered` or `completed` (the event the runtime asked for).
    pub event: String,
    /// The `CallStatus` sent.
    pub status: CallStatus,
    pub sequence_number: u32,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// The media stream of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    pub url: String,
    /// The `<Parameter>`s, as sent in `start.customParameters`.
    pub parameters: BTreeMap<String, String>,
    /// Turns the caller took in full, of `turns_planned`.
    pub turns: usize,
    pub turns_planned: usize,
    pub digits: String,
    /// Bot audio received: frames of 20 ms, and seconds.
    pub bot_frames: usize,
    pub bot_seconds: f64,
    pub marks: usize,
    pub clears: usize,
    pub seconds: f64,
    pub end: StreamEnd,
}
