//! What a call did, for the call log and for the simulator's printout.

use std::time::Duration;

use serde::Serialize;
use switchboard_flow::{Outcome, Slots};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Caller,
    Bot,
}

/// When the stages of one exchange happened, as offsets from the start of the call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TurnTimings {
    /// The caller started speaking.
    pub speech_start: Duration,
    /// The caller stopped speaking (in the audio, not when the silence confirmed it).
    pub speech_end: Duration,
    /// The end of the turn was detected (after the end-of-turn silence).
    pub turn_end: Duration,
    pub transcript_ready: Option<Duration>,
    /// The language model's first token, when the answer used a free reply.
    pub first_token: Option<Duration>,
    /// The first audio frame of the bot's answer was sent.
    pub first_audio: Option<Duration>,
}

impl TurnTimings {
    /// Caller speech end → first bot audio frame: what the caller experiences as the bot's reaction time.
    pub fn voice_to_voice(&self) -> Option<Duration> {
        self.first_audio.map(|a| a.saturating_sub(self.speech_end))
    }
}

/// One thing said in the call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnRecord {
    /// Numbers the call's turns in order; stays the same while the turn is rewritten (a bot line
    /// grows phrase by phrase, a barge-in cuts it), so a log can update it in place.
    pub seq: u32,
    pub speaker: Speaker,
    /// For the bot, only what the caller heard when they interrupted.
    pub text: String,
    /// When it started, from the start of the call: the caller's first word, or the first audio of
    /// the bot's line.
    pub at: Duration,
    /// When it ended: the caller's last word, or the end of the last audio frame of the bot's line
    /// that was sent (`None` while nothing of a bot line has been played).
    pub end: Option<Duration>,
    /// The bot was interrupted (barge-in) before finishing this line.
    pub interrupted: bool,
    /// For caller turns: the stage timings of the bot's reaction.
    pub timings: Option<TurnTimings>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallNote {
    Dtmf {
        digit: char,
    },
    BargeIn {
        heard: String,
    },
    Transfer {
        to: String,
        reason: String,
    },
    OptOut,
    Silence,
    Error {
        message: String,
    },
    /// The caller's words fit nothing the step takes.
    NoMatch {
        step: String,
        heard: String,
    },
}

/// A note with its time from the start of the call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    pub at: Duration,
    #[serde(flatten)]
    pub note: CallNote,
}

/// What the call log is told while the call goes on, so a crash loses at most the turn in flight.
/// The final [`CallReport`] still says everything; these are the same records, earlier.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    /// A turn was said or rewritten (same `seq`: replace it).
    Turn(TurnRecord),
    /// A bot line turned out never to be heard (a barge-in cut it before its first word).
    TurnDropped {
        seq: u32,
    },
    Event(EventRecord),
}

/// Where a call sends its [`LogEntry`]s.
///
/// Unbounded on purpose: the call task must never wait for the database, and what one call logs is
/// bounded by what is said in it (a few entries per turn).
#[derive(Debug, Clone)]
pub struct CallLog(pub tokio::sync::mpsc::UnboundedSender<LogEntry>);

impl CallLog {
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<LogEntry>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    pub(crate) fn send(&self, entry: LogEntry) {
        // The log reader went away (server shutting down): the final report still has it all.
        let _ = self.0.send(entry);
    }
}

/// Why the call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The flow ended the call.
    BotHungUp,
    Transferred,
    /// The provider said the stream stopped (the caller hung up, usually).
    CallerHungUp,
    /// The media connection went away without a `stop`.
    Disconnected,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    pub outcome: Option<Outcome>,
    pub slots: Slots,
    pub turns: Vec<TurnRecord>,
    pub events: Vec<EventRecord>,
    pub ended_by: Option<EndReason>,
    pub transferred_to: Option<String>,
    pub opted_out: bool,
    pub duration: Duration,
    /// Where the call's recording was written; `None` when it was not asked for or could not be
    /// written (a full disk), in which case nothing is left at the path.
    pub recording: Option<std::path::PathBuf>,
}

impl CallReport {
    pub(crate) fn new() -> Self {
        Self {
            outcome: None,
            slots: Slots::new(),
            turns: Vec::new(),
            events: Vec::new(),
            ended_by: None,
            transferred_to: None,
            opted_out: false,
            duration: Duration::ZERO,
            recording: None,
        }
    }

    /// Every bot line, in order.
    pub fn bot_lines(&self) -> Vec<&str> {
        self.turns
            .iter()
            .filter(|t| t.speaker == Speaker::Bot)
            .map(|t| t.text.as_str())
            .collect()
    }

    /// Voice-to-voice latency of every caller turn the bot answered.
    pub fn latencies(&self) -> Vec<Duration> {
        self.turns
            .iter()
            .filter_map(|t| t.timings.as_ref()?.voice_to_voice())
            .collect()
    }
}
