//! The call pipeline: one task per call turns caller audio into bot audio.
//!
//! ```text
//! provider ──CallEvent──▶ decode ▶ end of turn (speculative) ▶ speech-to-text ▶ flow engine
//!                                                                              │  ▲
//!                              language model (understand / free replies) ◀────┘  │
//! provider ◀─CallCommand── 20 ms mu-law frames + marks ◀ speech synthesis ◀ phrases
//! ```
//!
//! Why it is cut this way:
//! - **Transport-free.** A call speaks [`CallEvent`] / [`CallCommand`], not a provider's JSON: the
//!   server translates the media stream, and the tests drive a call through channels.
//! - **Generic over the engines** (`SpeechToText`, `LanguageModel`, `TextToSpeech` from core), so unit
//!   tests use small fakes and the binary wires the real models in.
//! - **One owner.** The call task holds all of the call's state; slow work runs in tasks that report
//!   back tagged with an epoch, and a barge-in just starts a new epoch (see `session`).
//! - **Paced output.** Audio goes out one 20 ms frame per 20 ms with a mark after every phrase, so a
//!   `clear` drops little, and the marks tell exactly which phrases the caller heard.

pub mod fakes;
pub mod phrases;
pub mod report;
mod session;

pub use report::{
    CallLog, CallNote, CallReport, EndReason, EventRecord, LogEntry, Speaker, TurnRecord, TurnTimings,
};
pub use session::{
    CallCommand, CallEvent, CallSettings, ENGINE_FAILURE_APOLOGY, Engines, reads_finished, run_call,
};
