//! The call log proper: calls, their turns and events.

use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::cursor::Cursor;
use crate::error::missing_call;
use crate::sql::Conditions;
use crate::{
    CallDetail, CallEnd, CallFilter, CallPage, CallStatus, CallSummary, Event, Millis, NewCall, StageTimings,
    Store, StoreError, Turn, UnknownVariant,
};

/// The columns [`call_summary`] reads, in the order every call query selects them.
pub(crate) const CALL_COLUMNS: &str = "id, provider_call_id, direction, from_number, to_number, \
     flow, status, started_at, answered_at, ended_at, duration_ms, outcome, hangup_reason, \
     transferred_to, recording_path";

const TURN_COLUMNS: &str = "seq, speaker, text, at_ms, end_ms, interrupted, speech_end_ms, turn_end_ms, \
     transcript_ready_ms, first_token_ms, first_audio_ms, voice_to_voice_ms";

/// The most calls one page holds, whatever the client asks for.
pub const MAX_PAGE: u32 = 200;

/// `'queued', 'ringing', 'in_progress'`: our own constants, so formatting them into SQL is safe.
pub(crate) fn open_statuses_sql() -> String {
    CallStatus::OPEN.map(|s| format!("'{}'", s.as_str())).join(", ")
}

impl Store {
    /// Records a call whose media stream just started (so it is answered and in progress), and
    /// returns its id: a UUIDv7, which sorts by creation time.
    pub async fn create_call(&self, call: &NewCall) -> Result<String, StoreError> {
        let id = Self::new_call_id();
        self.create_call_with_id(&id, call).await?;
        Ok(id)
    }

    /// A fresh id for [`Store::create_call_with_id`].
    pub fn new_call_id() -> String {
        Uuid::now_v7().to_string()
    }

    /// Creates the call under an id chosen beforehand, so that a call can start (and be referred
    /// to) while the database is unreachable, and the write be retried later. Idempotent: an insert
    /// that took effect but whose answer was lost is not an error when repeated.
    pub async fn create_call_with_id(&self, id: &str, call: &NewCall) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO calls (id, provider_call_id, direction, from_number, to_number, flow, \
             status, started_at, answered_at, recording_path, runtime, alive_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(call.provider_call_id.as_str())
        .bind(call.direction.as_str())
        .bind(call.from.as_str())
        .bind(call.to.as_str())
        .bind(call.flow.as_str())
        .bind(CallStatus::InProgress.as_str())
        .bind(call.started_at)
        .bind(call.recording_path.as_deref())
        .bind(call.runtime.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies a status the telephony provider reported. A call that has ended is never reopened:
    /// callbacks can arrive late and out of order, and a `ringing` that lands after `completed`
    /// must not make the call look live (start-up would then mark it interrupted).
    pub async fn set_status(&self, id: &str, status: CallStatus) -> Result<(), StoreError> {
        let sql = if status.is_open() {
            format!(
                "UPDATE calls SET status = $2 WHERE id = $1 AND status IN ({})",
                open_statuses_sql()
            )
        } else {
            "UPDATE calls SET status = $2 WHERE id = $1".to_string()
        };
        let done = sqlx::query(&sql)
            .bind(id)
            .bind(status.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 && !self.call_exists(id).await? {
            return Err(StoreError::NotFound { id: id.to_string() });
        }
        Ok(())
    }

    /// Writes a turn, replacing the one with the same `seq`: a bot line is rewritten as it grows
    /// and when a barge-in cuts it.
    pub async fn upsert_turn(&self, call_id: &str, turn: &Turn) -> Result<(), StoreError> {
        let t = turn.timings.as_ref();
        sqlx::query(
            "INSERT INTO turns (call_id, seq, speaker, text, at_ms, interrupted, speech_end_ms, \
             turn_end_ms, transcript_ready_ms, first_token_ms, first_audio_ms, voice_to_voice_ms, \
             end_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (call_id, seq) DO UPDATE SET speaker = excluded.speaker, \
             text = excluded.text, at_ms = excluded.at_ms, end_ms = excluded.end_ms, \
             interrupted = excluded.interrupted, \
             speech_end_ms = excluded.speech_end_ms, turn_end_ms = excluded.turn_end_ms, \
             transcript_ready_ms = excluded.transcript_ready_ms, \
             first_token_ms = excluded.first_token_ms, first_audio_ms = excluded.first_audio_ms, \
             voice_to_voice_ms = excluded.voice_to_voice_ms",
        )
        .bind(call_id)
        .bind(turn.seq)
        .bind(turn.speaker.as_str())
        .bind(turn.text.as_str())
        .bind(turn.at_ms)
        .bind(i64::from(turn.interrupted))
        .bind(t.map(|t| t.speech_end_ms))
        .bind(t.map(|t| t.turn_end_ms))
        .bind(t.and_then(|t| t.transcript_ready_ms))
        .bind(t.and_then(|t| t.first_token_ms))
        .bind(t.and_then(|t| t.first_audio_ms))
        .bind(t.and_then(|t| t.voice_to_voice_ms))
        .bind(turn.end_ms)
        .execute(&self.pool)
        .await
        .map_err(missing_call(call_id))?;
        Ok(())
    }

    /// Removes a turn that turned out never to have been heard; `false` if there was none.
    pub async fn delete_turn(&self, call_id: &str, seq: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM turns WHERE call_id = $1 AND seq = $2")
            .bind(call_id)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records an event; `false` if one with this `seq` was already there (a retried write), which
    /// is left as it was.
    pub async fn add_event(&self, call_id: &str, event: &Event) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO events (call_id, seq, at_ms, kind, detail) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (call_id, seq) DO NOTHING",
        )
        .bind(call_id)
        .bind(event.seq)
        .bind(event.at_ms)
        .bind(event.kind.as_str())
        .bind(event.detail.as_deref())
        .execute(&self.pool)
        .await
        .map_err(missing_call(call_id))?;
        Ok(done.rows_affected() > 0)
    }

    /// Records how a call ended. The recording path is replaced too: it is kept only when the file
    /// was actually written.
    pub async fn finish_call(&self, id: &str, end: &CallEnd) -> Result<(), StoreError> {
        // A JSON object always serializes; going through `Value` avoids a fallible call.
        let slots = serde_json::Value::Object(end.slots.clone()).to_string();
        let done = sqlx::query(
            "UPDATE calls SET status = $2, ended_at = $3, duration_ms = $4, outcome = $5, \
             slots = $6, hangup_reason = $7, transferred_to = $8, recording_path = $9 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(end.status.as_str())
        .bind(end.ended_at)
        .bind(end.duration_ms)
        .bind(end.outcome.as_deref())
        .bind(slots)
        .bind(end.hangup_reason.as_deref())
        .bind(end.transferred_to.as_deref())
        .bind(end.recording_path.as_deref())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { id: id.to_string() });
        }
        Ok(())
    }

    /// Closes as `interrupted` at `now` the calls `runtime` left open (queued, ringing, in
    /// progress), and returns how many. Called when the runtime starts: a call of its own still open
    /// then was cut off by a crash of its previous process. Rows written before calls had a runtime
    /// are closed too. The turns are kept.
    ///
    /// Only the starting runtime's own calls: several runtimes can share one PostgreSQL, and
    /// another's calls are live. Those of a runtime that died for good are closed by
    /// [`Store::close_abandoned_calls`].
    pub async fn mark_interrupted(&self, runtime: &str, now: Millis) -> Result<u64, StoreError> {
        self.interrupt(Interrupt::Runtime(runtime), now).await
    }

    /// Closes as `interrupted` at `now` the open calls whose runtime has not said they are alive
    /// ([`Store::keep_calls_alive`]) since `silent_since`, and returns how many: their runtime died
    /// and did not come back under its name. Every runtime runs this now and then.
    pub async fn close_abandoned_calls(&self, silent_since: Millis, now: Millis) -> Result<u64, StoreError> {
        self.interrupt(Interrupt::SilentSince(silent_since), now).await
    }

    async fn interrupt(&self, which: Interrupt<'_>, now: Millis) -> Result<u64, StoreError> {
        let condition = match which {
            Interrupt::Runtime(_) => "runtime IN ($4, '')",
            Interrupt::SilentSince(_) => "COALESCE(alive_at, started_at) < $4",
        };
        let sql = format!(
            "UPDATE calls SET status = $2, hangup_reason = $3, ended_at = $1, \
             duration_ms = CASE WHEN started_at < $1 THEN $1 - started_at ELSE 0 END \
             WHERE status IN ({}) AND {condition}",
            open_statuses_sql()
        );
        let query = sqlx::query(&sql)
            .bind(now)
            .bind(CallStatus::Interrupted.as_str())
            .bind("interrupted");
        let query = match which {
            Interrupt::Runtime(runtime) => query.bind(runtime),
            Interrupt::SilentSince(at) => query.bind(at),
        };
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    /// Records that `runtime` is alive and still handling its open calls, at `now`; the number of
    /// calls. A runtime calls this well within the silence after which others close its calls.
    pub async fn keep_calls_alive(&self, runtime: &str, now: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE calls SET alive_at = $2 WHERE runtime = $1 AND status IN ({})",
            open_statuses_sql()
        ))
        .bind(runtime)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// One page of calls, newest first (by start time, then id). `cursor` is the `next_cursor` of
    /// the page before; one this store did not make is [`StoreError::BadCursor`]. `limit` is held
    /// to 1..=[`MAX_PAGE`].
    pub async fn list_calls(
        &self,
        filter: &CallFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<CallPage, StoreError> {
        let after = cursor.map(Cursor::decode).transpose()?;
        let limit = limit.clamp(1, MAX_PAGE);

        let mut c = Conditions::default();
        if let Some(direction) = filter.direction {
            c.eq("direction", direction.as_str());
        }
        if let Some(status) = filter.status {
            c.eq("status", status.as_str());
        }
        if let Some(outcome) = &filter.outcome {
            c.eq("outcome", outcome.as_str());
        }
        if let Some(flow) = &filter.flow {
            c.eq("flow", flow.as_str());
        }
        if let Some(number) = &filter.number {
            let p = c.param(number.as_str());
            c.and(format!("from_number = {p} OR to_number = {p}"));
        }
        c.range("started_at", filter.since, filter.until);
        if let Some(after) = after {
            let t = c.param(after.started_at);
            let id = c.param(after.id.as_str());
            c.and(format!("started_at < {t} OR (started_at = {t} AND id < {id})"));
        }
        // One more than the page holds tells whether another page follows.
        let fetch = c.param(i64::from(limit) + 1);
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls {} ORDER BY started_at DESC, id DESC LIMIT {fetch}",
            c.where_clause()
        );
        let rows = c.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        let mut calls = rows.iter().map(call_summary).collect::<Result<Vec<_>, _>>()?;

        let mut next_cursor = None;
        if calls.len() > limit as usize {
            calls.truncate(limit as usize);
            next_cursor = calls.last().map(|last| {
                Cursor {
                    started_at: last.started_at,
                    id: last.id.clone(),
                }
                .encode()
            });
        }
        Ok(CallPage { calls, next_cursor })
    }

    /// A call with its slots, turns and events (both in `seq` order).
    pub async fn get_call(&self, id: &str) -> Result<Option<CallDetail>, StoreError> {
        let Some(row) = sqlx::query(&format!("SELECT {CALL_COLUMNS}, slots FROM calls WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let call = call_summary(&row)?;
        let slots: String = row.try_get("slots")?;
        let slots = serde_json::from_str(&slots)
            .map_err(|e| StoreError::corrupt(format!("slots of call {id}: {e}")))?;

        let turns = sqlx::query(&format!(
            "SELECT {TURN_COLUMNS} FROM turns WHERE call_id = $1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(turn)
        .collect::<Result<Vec<_>, _>>()?;

        let events =
            sqlx::query("SELECT seq, at_ms, kind, detail FROM events WHERE call_id = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(event)
                .collect::<Result<Vec<_>, _>>()?;

        Ok(Some(CallDetail {
            call,
            slots,
            turns,
            events,
        }))
    }

    /// The call the provider knows by this id (the newest, should a provider reuse one).
    pub async fn find_by_provider_id(
        &self,
        provider_call_id: &str,
    ) -> Result<Option<CallSummary>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE provider_call_id = $1 \
             ORDER BY started_at DESC, id DESC LIMIT 1"
        ))
        .bind(provider_call_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(call_summary)
        .transpose()
    }

    /// Deletes a call with its turns and events, and returns it (so the caller can delete its
    /// recording file); `None` if there was no such call.
    pub async fn delete_call(&self, id: &str) -> Result<Option<CallSummary>, StoreError> {
        // The schema cascades, but deleting the children explicitly keeps this correct even on a
        // SQLite connection with foreign keys off, and one transaction keeps it all-or-nothing.
        let mut tx = self.begin_write().await?;
        for table in ["turns", "events"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE call_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(&format!(
            "DELETE FROM calls WHERE id = $1 RETURNING {CALL_COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.as_ref().map(call_summary).transpose()
    }

    /// Retention: deletes the calls that started before `cutoff` and have ended (an open call is
    /// never deleted under a live pipeline), with their turns and events. Returns them, oldest
    /// first, so the caller can delete their recordings.
    pub async fn delete_older_than(&self, cutoff: Millis) -> Result<Vec<CallSummary>, StoreError> {
        let old = format!("started_at < $1 AND status NOT IN ({})", open_statuses_sql());
        let mut tx = self.begin_write().await?;
        for table in ["turns", "events"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE call_id IN (SELECT id FROM calls WHERE {old})"
            ))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        }
        let rows = sqlx::query(&format!("DELETE FROM calls WHERE {old} RETURNING {CALL_COLUMNS}"))
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut calls = rows.iter().map(call_summary).collect::<Result<Vec<_>, _>>()?;
        calls.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(calls)
    }

    async fn call_exists(&self, id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT id FROM calls WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

/// A TEXT column holding one of our enums; anything else means the row is corrupt.
fn text_enum<T: FromStr<Err = UnknownVariant>>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|e: UnknownVariant| StoreError::corrupt(format!("{column}: {e}")))
}

/// A row of [`CALL_COLUMNS`].
pub(crate) fn call_summary(row: &AnyRow) -> Result<CallSummary, StoreError> {
    let recording_path: Option<String> = row.try_get("recording_path")?;
    Ok(CallSummary {
        id: row.try_get("id")?,
        provider_call_id: row.try_get("provider_call_id")?,
        direction: text_enum(row, "direction")?,
        from: row.try_get("from_number")?,
        to: row.try_get("to_number")?,
        flow: row.try_get("flow")?,
        status: text_enum(row, "status")?,
        started_at: row.try_get("started_at")?,
        answered_at: row.try_get("answered_at")?,
        ended_at: row.try_get("ended_at")?,
        duration_ms: row.try_get("duration_ms")?,
        outcome: row.try_get("outcome")?,
        hangup_reason: row.try_get("hangup_reason")?,
        transferred_to: row.try_get("transferred_to")?,
        has_recording: recording_path.is_some(),
        recording_path,
    })
}

/// A row of [`TURN_COLUMNS`]. Timings are all there or all NULL: the two that every measured turn
/// has decide which.
fn turn(row: &AnyRow) -> Result<Turn, StoreError> {
    let speech_end_ms: Option<i64> = row.try_get("speech_end_ms")?;
    let turn_end_ms: Option<i64> = row.try_get("turn_end_ms")?;
    let timings = match (speech_end_ms, turn_end_ms) {
        (Some(speech_end_ms), Some(turn_end_ms)) => Some(StageTimings {
            speech_end_ms,
            turn_end_ms,
            transcript_ready_ms: row.try_get("transcript_ready_ms")?,
            first_token_ms: row.try_get("first_token_ms")?,
            first_audio_ms: row.try_get("first_audio_ms")?,
            voice_to_voice_ms: row.try_get("voice_to_voice_ms")?,
        }),
        (None, None) => None,
        _ => {
            return Err(StoreError::corrupt(
                "turn timings: speech_end_ms and turn_end_ms must be both set or both NULL",
            ));
        }
    };
    let interrupted: i64 = row.try_get("interrupted")?;
    Ok(Turn {
        seq: row.try_get("seq")?,
        speaker: text_enum(row, "speaker")?,
        text: row.try_get("text")?,
        at_ms: row.try_get("at_ms")?,
        end_ms: row.try_get("end_ms")?,
        interrupted: interrupted != 0,
        timings,
    })
}

fn event(row: &AnyRow) -> Result<Event, StoreError> {
    Ok(Event {
        seq: row.try_get("seq")?,
        at_ms: row.try_get("at_ms")?,
        kind: row.try_get("kind")?,
        detail: row.try_get("detail")?,
    })
}

/// Which open calls [`Store::mark_interrupted`] and [`Store::close_abandoned_calls`] close.
#[derive(Clone, Copy)]
enum Interrupt<'a> {
    Runtime(&'a str),
    SilentSince(Millis),
}
