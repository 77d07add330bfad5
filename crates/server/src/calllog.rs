//! Writes a call into the store while it happens: the call row when the stream starts, each turn and
//! event as the pipeline reports it, and the end (outcome, slots, recording) from the final report.
//!
//! Writes run in their own tasks and are retried with a backoff for as long as [`PATIENCE`] allows,
//! so a busy or restarting database (SQLite's writer lock, a PostgreSQL failover) loses nothing;
//! a call never waits for its log.

use std::future::Future;
use std::time::Duration;

use switchboard_call::{CallNote, CallReport, EndReason, EventRecord, LogEntry, TurnRecord};
use switchboard_store::{CallEnd, CallStatus, Event, NewCall, Speaker, StageTimings, Store, Turn};
use tokio::sync::mpsc;

/// How long a call's log writes are retried while the database is unreachable: long enough to
/// ride out a restart or a failover, bounded so that a database gone for good does not keep tasks
/// (and the call's transcript in memory) forever.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15 * 60);
/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `op` until it succeeds, backing off from 100 ms to [`MAX_BACKOFF`] between tries, for at
/// most [`PATIENCE`]. For the writes of a call's log, which run in their own task: nothing waits
/// for them, and every one of them is idempotent, so a try whose answer was lost can be repeated.
pub(crate) async fn persist<T, E, F, Fut>(what: &str, mut op: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut delay = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!("call log: {what} written after {failures} failed tries");
                }
                return Some(v);
            }
            Err(e) if tokio::time::Instant::now() + delay >= deadline => {
                tracing::error!(
                    "call log: {what} not written: gave up after {} tries over {} s: {e}",
                    failures + 1,
                    PATIENCE.as_secs()
                );
                return None;
            }
            Err(e) => {
                // Once, then now and then: a long outage must not flood the log.
                if failures.is_multiple_of(20) {
                    tracing::warn!("call log: {what} failed (try {}), retrying: {e}", failures + 1);
                }
                failures += 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Writes one call into the log: the call itself, then each entry as the call reports it, in
/// order, until the call drops its sender. Each write waits for the one before: a turn cannot be
/// written before its call, and a later state of a turn must not be overwritten by an older one.
pub(crate) async fn write_call(
    store: Store,
    call_id: String,
    call: NewCall,
    call_sid: String,
    mut entries: mpsc::UnboundedReceiver<LogEntry>,
) {
    if persist("creating the call", || store.create_call_with_id(&call_id, &call))
        .await
        .is_none()
    {
        return; // nothing else can be written without the call row
    }
    link_campaign_attempt(&store, &call_sid, &call_id).await;
    let mut event_seq = 0i64;
    while let Some(entry) = entries.recv().await {
        match entry {
            LogEntry::Turn(t) => {
                let turn = turn_row(&t);
                persist("writing a turn", || store.upsert_turn(&call_id, &turn)).await;
            }
            LogEntry::TurnDropped { seq } => {
                persist("dropping an unheard turn", || {
                    store.delete_turn(&call_id, i64::from(seq))
                })
                .await;
            }
            LogEntry::Event(e) => {
                let event = event_row(event_seq, &e);
                event_seq += 1;
                persist("writing an event", || store.add_event(&call_id, &event)).await;
            }
        }
    }
}

/// When the call is a campaign's, its attempt points at the call log entry (and so at the
/// transcript and recording).
async fn link_campaign_attempt(store: &Store, call_sid: &str, log_id: &str) {
    persist("linking the campaign attempt to its call", || async {
        let Some(attempt) = store.attempt_by_provider_id(call_sid).await? else {
            return Ok::<_, switchboard_store::StoreError>(());
        };
        store.set_attempt_call_id(&attempt.id, log_id).await.map(|_| ())
    })
    .await;
}

/// The final word on a call: every turn as the report has it (the last exchange's timings are only
/// known at the end), then the call's end.
pub(crate) async fn write_report(store: &Store, call_id: &str, report: &CallReport, end: CallEnd) {
    for t in &report.turns {
        let turn = turn_row(t);
        persist("writing a turn", || store.upsert_turn(call_id, &turn)).await;
    }
    persist("finishing the call", || store.finish_call(call_id, &end)).await;
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn turn_row(t: &TurnRecord) -> Turn {
    Turn {
        seq: i64::from(t.seq),
        speaker: match t.speaker {
            switchboard_call::Speaker::Caller => Speaker::Caller,
            switchboard_call::Speaker::Bot => Speaker::Bot,
        },
        text: t.text.clone(),
        at_ms: ms(t.at),
        end_ms: t.end.map(ms),
        interrupted: t.interrupted,
        timings: t.timings.as_ref().map(|x| StageTimings {
            speech_end_ms: ms(x.speech_end),
            turn_end_ms: ms(x.turn_end),
            transcript_ready_ms: x.transcript_ready.map(ms),
            first_token_ms: x.first_token.map(ms),
            first_audio_ms: x.first_audio.map(ms),
            voice_to_voice_ms: x.voice_to_voice().map(ms),
        }),
    }
}

pub(crate) fn event_row(seq: i64, e: &EventRecord) -> Event {
    let (kind, detail) = match &e.note {
        CallNote::Dtmf { digit } => ("dtmf", Some(digit.to_string())),
        CallNote::BargeIn { heard } => ("barge_in", Some(heard.clone())),
        CallNote::Transfer { to, reason } => ("transfer", Some(format!("{to} ({reason})"))),
        CallNote::OptOut => ("opt_out", None),
        CallNote::Silence => ("silence", None),
        CallNote::Error { message } => ("error", Some(message.clone())),
        // `step: words`; the no-match report splits it at the first ": " (a step name has none).
        CallNote::NoMatch { step, heard } => ("no_match", Some(format!("{step}: {heard}"))),
    };
    Event {
        seq,
        at_ms: ms(e.at),
        kind: kind.to_string(),
        detail,
    }
}

/// The call's end as the store keeps it.
pub(crate) fn call_end(report: &CallReport, ended_at: i64, recording: Option<String>) -> CallEnd {
    let slots = slots_json(report);
    CallEnd {
        status: CallStatus::Completed,
        ended_at,
        duration_ms: ms(report.duration),
        outcome: report.outcome.map(|o| o.as_str().to_string()),
        slots,
        hangup_reason: report.ended_by.as_ref().map(|r| {
            match r {
                EndReason::BotHungUp => "bot_hung_up",
                EndReason::Transferred => "transferred",
                EndReason::CallerHungUp => "caller_hung_up",
                EndReason::Disconnected => "disconnected",
            }
            .to_string()
        }),
        transferred_to: report.transferred_to.clone(),
        recording_path: recording,
    }
}

/// The report's slots as a JSON object.
pub(crate) fn slots_json(report: &CallReport) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(&report.slots) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
