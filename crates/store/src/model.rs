//! The rows of the call log, as the API serves them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// Where a call is in its life. `Interrupted`: the runtime stopped (crashed) while the call was in
/// progress; the turns written until then are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
    Interrupted,
}

impl CallStatus {
    /// The statuses of a call that has not ended: the ones a crash leaves behind
    /// ([`crate::Store::mark_interrupted`]) and retention never deletes.
    pub const OPEN: [CallStatus; 3] = [CallStatus::Queued, CallStatus::Ringing, CallStatus::InProgress];

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}

/// A call as created when its media stream starts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCall {
    /// The runtime that handles the call (its configured instance name); see
    /// [`crate::Store::mark_interrupted`].
    pub runtime: String,
    pub provider_call_id: String,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub flow: String,
    pub started_at: Millis,
    pub recording_path: Option<String>,
}

/// What is known when a call ends.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEnd {
    pub status: CallStatus,
    pub ended_at: Millis,
    pub duration_ms: i64,
    /// The flow's outcome (`resolved`, `transferred`, …), when it reached one.
    pub outcome: Option<String>,
    /// Slot values, as a JSON object.
    pub slots: serde_json::Map<String, serde_json::Value>,
    /// Why it ended: `bot_hung_up`, `caller_hung_up`, `transferred`, `disconnected`, `interrupted`, …
    pub hangup_reason: Option<String>,
    pub transferred_to: Option<String>,
    /// Kept only when the file was written.
    pub recording_path: Option<String>,
}

/// One row of the call list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallSummary {
    pub id: String,
    pub provider_call_id: String,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub flow: String,
    pub status: CallStatus,
    pub started_at: Millis,
    pub answered_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub duration_ms: Option<i64>,
    pub outcome: Option<String>,
    pub hangup_reason: Option<String>,
    pub transferred_to: Option<String>,
    /// A path on the server: never served (the API serves the file itself), only whether it exists.
    #[serde(skip)]
    pub recording_path: Option<String>,
    pub has_recording: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Caller,
    Bot,
}

/// Stage timings of the bot's reaction to a caller turn, in ms from the start of the call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StageTimings {
    pub speech_end_ms: i64,
    pub turn_end_ms: i64,
    pub transcript_ready_ms: Option<i64>,
    pub first_token_ms: Option<i64>,
    pub first_audio_ms: Option<i64>,
    /// Caller speech end → first bot audio: what the caller experiences as the bot's reaction time.
    pub voice_to_voice_ms: Option<i64>,
}

/// One thing said. `seq` numbers a call's turns in order and is stable while a turn is rewritten
/// (a bot line grows phrase by phrase, then a barge-in may cut it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Turn {
    pub seq: i64,
    pub speaker: Speaker,
    pub text: String,
    /// When it started, from the start of the call: the caller's first word, the first audio of
    /// a bot line.
    pub at_ms: i64,
    /// When it ended: the caller's last word, the last audio of a bot line that was played
    /// (`null` while a bot line is still being spoken).
    pub end_ms: Option<i64>,
    pub interrupted: bool,
    pub timings: Option<StageTimings>,
}

/// Something that happened in a call: `dtmf`, `barge_in`, `transfer`, `opt_out`, `silence`, `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub seq: i64,
    pub at_ms: i64,
    pub kind: String,
    /// The digit, what the caller heard before interrupting, the transfer target, the error message.
    pub detail: Option<String>,
}

/// A call with everything said and done in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallDetail {
    #[serde(flatten)]
    pub call: CallSummary,
    #[schema(value_type = Object)]
    pub slots: serde_json::Map<String, serde_json::Value>,
    pub turns: Vec<Turn>,
    pub events: Vec<Event>,
}

/// Filters for [`crate::Store::list_calls`]; every field narrows, `None` does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFilter {
    pub direction: Option<Direction>,
    pub status: Option<CallStatus>,
    pub outcome: Option<String>,
    /// Matches either party (from or to), exactly.
    pub number: Option<String>,
    pub flow: Option<String>,
    /// Started at or after.
    pub since: Option<Millis>,
    /// Started before.
    pub until: Option<Millis>,
}

/// One page of calls, newest first; `next_cursor` continues after the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CallPage {
    pub calls: Vec<CallSummary>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DayCount {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub calls: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeCount {
    /// `null` for calls that reached no outcome.
    pub outcome: Option<String>,
    pub calls: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LatencyStats {
    /// Caller turns with a measured voice-to-voice latency.
    pub turns: i64,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stats {
    pub total_calls: i64,
    pub calls_per_day: Vec<DayCount>,
    pub outcomes: Vec<OutcomeCount>,
    /// Mean duration of ended calls.
    pub average_handle_time_ms: Option<i64>,
    /// Ended calls not transferred to a person / ended calls; `None` when no call ended.
    pub containment_rate: Option<f64>,
    pub latency: LatencyStats,
}

/// Words callers said at one step of a flow that it could not place (the call events `no_match`), the
/// same words (ignoring case and punctuation) counted together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NoMatch {
    pub flow: String,
    pub step: String,
    /// As last transcribed.
    pub heard: String,
    pub count: i64,
    /// When it was last said (Unix milliseconds).
    pub last_at: Millis,
    /// The call it was last said in.
    pub call_id: String,
}

/// An API key as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
}

/// A key just created: the secret is shown this once and only its hash is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub key: ApiKey,
    /// `sb_` + 43 base64url characters (256 random bits).
    pub secret: String,
}

/// A time as people and scripts write it: RFC 3339 (`2026-11-24T09:00:00Z`) or Unix milliseconds.
pub fn parse_time(value: &str) -> Option<Millis> {
    if let Ok(ms) = value.parse::<i64>() {
        return Some(ms);
    }
    value.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// `2026-11-24 09:00:00Z`-style UTC text for a time, for printouts and exports.
pub fn format_time(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

text_enum!(Direction { Inbound => "inbound", Outbound => "outbound" });
text_enum!(CallStatus {
    Queued => "queued",
    Ringing => "ringing",
    InProgress => "in_progress",
    Completed => "completed",
    Busy => "busy",
    NoAnswer => "no_answer",
    Failed => "failed",
    Canceled => "canceled",
    Interrupted => "interrupted",
});
text_enum!(Speaker { Caller => "caller", Bot => "bot" });

/// A stored or given name that is none of an enum's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {what}")]
pub struct UnknownVariant {
    pub what: &'static str,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_name<T: Serialize>(v: T) -> String {
        match serde_json::to_value(v) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn text_names_match_serde() {
        for d in Direction::ALL {
            assert_eq!(d.as_str(), serde_name(d));
            assert_eq!(d.as_str().parse::<Direction>(), Ok(*d));
        }
        for s in CallStatus::ALL {
            assert_eq!(s.as_str(), serde_name(s));
            assert_eq!(s.as_str().parse::<CallStatus>(), Ok(*s));
        }
        for s in Speaker::ALL {
            assert_eq!(s.as_str(), serde_name(s));
            assert_eq!(s.as_str().parse::<Speaker>(), Ok(*s));
        }
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = "in-progress"
            .parse::<CallStatus>()
            .expect_err("hyphen is not ours");
        assert_eq!(err.to_string(), "`in-progress` is not a CallStatus");
        assert!("".parse::<Speaker>().is_err());
    }

    #[test]
    fn open_statuses() {
        let open: Vec<_> = CallStatus::ALL.iter().filter(|s| s.is_open()).collect();
        assert_eq!(
            open,
            [&CallStatus::Queued, &CallStatus::Ringing, &CallStatus::InProgress]
        );
    }
}
