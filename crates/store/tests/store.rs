//! The call log against both databases: every scenario runs on SQLite and on PostgreSQL (see
//! `common` for how each test gets its database).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Connection, Row};
use switchboard_store::{
    CallDetail, CallEnd, CallFilter, CallStatus, CallSummary, Direction, Event, Millis, NewCall, Speaker,
    StageTimings, Store, StoreError, Turn, parse_time,
};

#[macro_use]
mod common;

use common::{TestDb, with_database};

on_both_backends!(
    reopening_runs_migrations_again_harmlessly,
    call_lifecycle,
    writes_for_unknown_calls_are_not_found,
    provider_status_never_reopens_an_ended_call,
    mark_interrupted_closes_only_open_calls_and_keeps_turns,
    runtimes_sharing_a_database_close_only_their_own_or_abandoned_calls,
    list_filters_each_narrow,
    pagination_walks_every_call_once_newest_first,
    bad_cursor_is_bad_cursor,
    delete_call_removes_turns_and_events,
    retention_deletes_only_old_ended_calls,
    stats_on_a_known_data_set,
    no_matches_are_grouped_by_flow_step_and_words,
    api_keys,
);

fn t(rfc3339: &str) -> Millis {
    parse_time(rfc3339).unwrap()
}

fn new_call(provider_call_id: &str, started_at: Millis) -> NewCall {
    NewCall {
        runtime: "host-a".into(),
        provider_call_id: provider_call_id.into(),
        direction: Direction::Inbound,
        from: "+15550100".into(),
        to: "+15550199".into(),
        flow: "support".into(),
        started_at,
        recording_path: None,
    }
}

fn end(ended_at: Millis, duration_ms: i64, outcome: Option<&str>) -> CallEnd {
    CallEnd {
        status: CallStatus::Completed,
        ended_at,
        duration_ms,
        outcome: outcome.map(Into::into),
        slots: serde_json::Map::new(),
        hangup_reason: Some("bot_hung_up".into()),
        transferred_to: None,
        recording_path: None,
    }
}

fn caller_turn(seq: i64, text: &str, voice_to_voice_ms: Option<i64>) -> Turn {
    Turn {
        seq,
        speaker: Speaker::Caller,
        text: text.into(),
        at_ms: seq * 1000,
        end_ms: Some(seq * 1000 + 800),
        interrupted: false,
        timings: Some(StageTimings {
            speech_end_ms: seq * 1000 + 800,
            turn_end_ms: seq * 1000 + 1000,
            transcript_ready_ms: Some(seq * 1000 + 1100),
            first_token_ms: Some(seq * 1000 + 1200),
            first_audio_ms: voice_to_voice_ms.map(|v| seq * 1000 + 800 + v),
            voice_to_voice_ms,
        }),
    }
}

fn bot_turn(seq: i64, text: &str) -> Turn {
    Turn {
        seq,
        speaker: Speaker::Bot,
        text: text.into(),
        at_ms: seq * 1000,
        end_ms: None,
        interrupted: false,
        timings: None,
    }
}

async fn count(pool: &AnyPool, sql: &str, id: &str) -> i64 {
    sqlx::query(sql).bind(id).fetch_one(pool).await.unwrap().get(0)
}

async fn reopening_runs_migrations_again_harmlessly(db: &TestDb) {
    let store = db.open().await;
    let expected = if db.url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(store.backend(), expected);
    let id = store
        .create_call(&new_call("CA1", t("2026-11-24T09:00:00Z")))
        .await
        .unwrap();
    store.close().await;

    // A restart: the schema is already there and the data survives.
    let store = db.open().await;
    let call = store.get_call(&id).await.unwrap().expect("still there");
    assert_eq!(call.call.provider_call_id, "CA1");
    let again = db.open().await;
    assert_eq!(
        again
            .list_calls(&CallFilter::default(), None, 10)
            .await
            .unwrap()
            .calls
            .len(),
        1
    );
}

async fn call_lifecycle(db: &TestDb) {
    let store = db.open().await;
    let started = t("2026-11-24T09:00:00Z");
    let mut new = new_call("CA-life", started);
    new.direction = Direction::Outbound;
    new.recording_path = Some("recordings/planned.wav".into());
    let id = store.create_call(&new).await.unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let fresh = store.get_call(&id).await.unwrap().unwrap();
    assert_eq!(fresh.call.status, CallStatus::InProgress);
    assert_eq!(fresh.call.answered_at, Some(started));
    assert_eq!(fresh.call.ended_at, None);
    assert!(fresh.call.has_recording);
    assert!(fresh.slots.is_empty() && fresh.turns.is_empty() && fresh.events.is_empty());

    // Written out of order, and the bot's line rewritten as it grows and then is cut.
    store
        .upsert_turn(&id, &bot_turn(1, "Sure, your order"))
        .await
        .unwrap();
    store
        .upsert_turn(&id, &caller_turn(0, "Where is my order?", Some(640)))
        .await
        .unwrap();
    let mut cut = bot_turn(1, "Sure, your order shipped yesterday and");
    cut.interrupted = true;
    store.upsert_turn(&id, &cut).await.unwrap();
    // A turn never heard is dropped again.
    store.upsert_turn(&id, &bot_turn(2, "unheard")).await.unwrap();
    assert!(store.delete_turn(&id, 2).await.unwrap());
    assert!(!store.delete_turn(&id, 2).await.unwrap());
    // A turn with timings but no bot audio has no voice-to-voice time.
    store
        .upsert_turn(&id, &caller_turn(3, "Thanks", None))
        .await
        .unwrap();

    let barge_in = Event {
        seq: 1,
        at_ms: 2500,
        kind: "barge_in".into(),
        detail: Some("Sure, your order shipped yesterday and".into()),
    };
    let dtmf = Event {
        seq: 0,
        at_ms: 500,
        kind: "dtmf".into(),
        detail: Some("1".into()),
    };
    assert!(store.add_event(&id, &barge_in).await.unwrap());
    assert!(store.add_event(&id, &dtmf).await.unwrap());
    // A retried write of the same seq is ignored and changes nothing.
    let retry = Event {
        detail: Some("9".into()),
        ..dtmf.clone()
    };
    assert!(!store.add_event(&id, &retry).await.unwrap());

    let mut slots = serde_json::Map::new();
    slots.insert("order_id".into(), json!("A-1234"));
    slots.insert("items".into(), json!([1, 2]));
    let finished = CallEnd {
        status: CallStatus::Completed,
        ended_at: started + 95_000,
        duration_ms: 95_000,
        outcome: Some("resolved".into()),
        slots: slots.clone(),
        hangup_reason: Some("caller_hung_up".into()),
        transferred_to: None,
        recording_path: Some("recordings/final.wav".into()),
    };
    store.finish_call(&id, &finished).await.unwrap();

    let expected = CallDetail {
        call: CallSummary {
            id: id.clone(),
            provider_call_id: "CA-life".into(),
            direction: Direction::Outbound,
            from: "+15550100".into(),
            to: "+15550199".into(),
            flow: "support".into(),
            status: CallStatus::Completed,
            started_at: started,
            answered_at: Some(started),
            ended_at: Some(started + 95_000),
            duration_ms: Some(95_000),
            outcome: Some("resolved".into()),
            hangup_reason: Some("caller_hung_up".into()),
            transferred_to: None,
            recording_path: Some("recordings/final.wav".into()),
            has_recording: true,
        },
        slots,
        turns: vec![
            caller_turn(0, "Where is my order?", Some(640)),
            cut,
            caller_turn(3, "Thanks", None),
        ],
        events: vec![dtmf, barge_in],
    };
    assert_eq!(store.get_call(&id).await.unwrap(), Some(expected.clone()));

    let found = store.find_by_provider_id("CA-life").await.unwrap();
    assert_eq!(found, Some(expected.call.clone()));
    assert_eq!(store.find_by_provider_id("CA-other").await.unwrap(), None);
    assert_eq!(store.get_call("no-such-id").await.unwrap(), None);

    // Finishing without a recording file clears the planned path.
    let no_file = CallEnd {
        recording_path: None,
        ..finished
    };
    store.finish_call(&id, &no_file).await.unwrap();
    let call = store.get_call(&id).await.unwrap().unwrap().call;
    assert_eq!(call.recording_path, None);
    assert!(!call.has_recording);
}

async fn writes_for_unknown_calls_are_not_found(db: &TestDb) {
    let store = db.open().await;
    let not_found = |r: Result<_, StoreError>| matches!(r, Err(StoreError::NotFound { id }) if id == "ghost");
    assert!(not_found(store.upsert_turn("ghost", &bot_turn(0, "hi")).await));
    let e = Event {
        seq: 0,
        at_ms: 0,
        kind: "dtmf".into(),
        detail: None,
    };
    assert!(not_found(store.add_event("ghost", &e).await.map(|_| ())));
    assert!(not_found(store.finish_call("ghost", &end(1, 1, None)).await));
    assert!(not_found(store.set_status("ghost", CallStatus::Completed).await));
    assert!(!store.delete_turn("ghost", 0).await.unwrap());
}

async fn provider_status_never_reopens_an_ended_call(db: &TestDb) {
    let store = db.open().await;
    let live = store.create_call(&new_call("CA-live", 1_000)).await.unwrap();
    let done = store.create_call(&new_call("CA-done", 2_000)).await.unwrap();
    store
        .finish_call(&done, &end(5_000, 3_000, Some("resolved")))
        .await
        .unwrap();

    store.set_status(&live, CallStatus::Ringing).await.unwrap();
    assert_eq!(status_of(&store, &live).await, CallStatus::Ringing);
    store.set_status(&live, CallStatus::Failed).await.unwrap();
    assert_eq!(status_of(&store, &live).await, CallStatus::Failed);

    // A late "in progress" after the end is ignored (not an error); a final status still applies.
    store.set_status(&done, CallStatus::InProgress).await.unwrap();
    assert_eq!(status_of(&store, &done).await, CallStatus::Completed);
    store.set_status(&done, CallStatus::Busy).await.unwrap();
    assert_eq!(status_of(&store, &done).await, CallStatus::Busy);
}

async fn status_of(store: &Store, id: &str) -> CallStatus {
    store.get_call(id).await.unwrap().unwrap().call.status
}

async fn mark_interrupted_closes_only_open_calls_and_keeps_turns(db: &TestDb) {
    let store = db.open().await;
    let now = t("2026-11-24T10:00:00Z");
    let in_progress = store.create_call(&new_call("CA-a", now - 60_000)).await.unwrap();
    store
        .upsert_turn(&in_progress, &caller_turn(0, "Hello?", Some(700)))
        .await
        .unwrap();
    store
        .upsert_turn(&in_progress, &bot_turn(1, "Hi, how can"))
        .await
        .unwrap();
    let ringing = store.create_call(&new_call("CA-b", now - 5_000)).await.unwrap();
    store.set_status(&ringing, CallStatus::Ringing).await.unwrap();
    let ended = store.create_call(&new_call("CA-c", now - 120_000)).await.unwrap();
    store.upsert_turn(&ended, &bot_turn(0, "Goodbye")).await.unwrap();
    store
        .finish_call(&ended, &end(now - 100_000, 20_000, Some("resolved")))
        .await
        .unwrap();
    let ended_before = store.get_call(&ended).await.unwrap();
    let turns_before = store.get_call(&in_progress).await.unwrap().unwrap().turns;

    assert_eq!(store.mark_interrupted("host-a", now).await.unwrap(), 2);

    let a = store.get_call(&in_progress).await.unwrap().unwrap();
    assert_eq!(a.call.status, CallStatus::Interrupted);
    assert_eq!(a.call.ended_at, Some(now));
    assert_eq!(a.call.duration_ms, Some(60_000));
    assert_eq!(a.call.hangup_reason.as_deref(), Some("interrupted"));
    assert_eq!(
        a.turns, turns_before,
        "the turns written before the crash are kept"
    );
    assert_eq!(a.turns.len(), 2);
    let b = store.get_call(&ringing).await.unwrap().unwrap().call;
    assert_eq!(
        (b.status, b.ended_at, b.duration_ms),
        (CallStatus::Interrupted, Some(now), Some(5_000))
    );
    assert_eq!(
        store.get_call(&ended).await.unwrap(),
        ended_before,
        "an ended call is untouched"
    );

    assert_eq!(
        store.mark_interrupted("host-a", now + 1).await.unwrap(),
        0,
        "nothing left open"
    );
}

async fn runtimes_sharing_a_database_close_only_their_own_or_abandoned_calls(db: &TestDb) {
    let store = db.open().await;
    let now = t("2026-11-24T10:00:00Z");
    let on = |runtime: &str, sid: &str, started_at: Millis| NewCall {
        runtime: runtime.into(),
        ..new_call(sid, started_at)
    };
    let a_call = store
        .create_call(&on("host-a", "CA-a", now - 60_000))
        .await
        .unwrap();
    let b_live = store
        .create_call(&on("host-b", "CA-b1", now - 300_000))
        .await
        .unwrap();
    let c_dead = store
        .create_call(&on("host-c", "CA-c", now - 300_000))
        .await
        .unwrap();
    let status = |id: String| {
        let store = store.clone();
        async move { store.get_call(&id).await.unwrap().unwrap().call.status }
    };

    // host-b keeps its call alive; host-c stopped answering four minutes ago.
    assert_eq!(store.keep_calls_alive("host-b", now - 10_000).await.unwrap(), 1);
    // host-a restarts: its own call was cut off by its crash; the others' are not its to close.
    assert_eq!(store.mark_interrupted("host-a", now).await.unwrap(), 1);
    assert_eq!(status(a_call.clone()).await, CallStatus::Interrupted);
    assert_eq!(status(b_live.clone()).await, CallStatus::InProgress);
    assert_eq!(status(c_dead.clone()).await, CallStatus::InProgress);

    // Silent for 90 s: abandoned. host-b's call was heard from 10 s ago.
    assert_eq!(store.close_abandoned_calls(now - 90_000, now).await.unwrap(), 1);
    assert_eq!(status(b_live.clone()).await, CallStatus::InProgress);
    let c = store.get_call(&c_dead).await.unwrap().unwrap().call;
    assert_eq!(
        (c.status, c.ended_at, c.hangup_reason.as_deref()),
        (CallStatus::Interrupted, Some(now), Some("interrupted"))
    );
    // Keeping alive touches only open calls.
    assert_eq!(store.keep_calls_alive("host-c", now).await.unwrap(), 0);
}

/// Six calls that differ in one field each from a baseline, so each filter has a known answer.
async fn filter_data(store: &Store) -> Vec<(&'static str, String)> {
    let base = t("2026-11-24T09:00:00Z");
    let mut ids = Vec::new();

    let id = store.create_call(&new_call("base", base)).await.unwrap();
    store
        .finish_call(&id, &end(base + 10_000, 10_000, Some("resolved")))
        .await
        .unwrap();
    ids.push(("base", id));

    let mut out = new_call("outbound", base + 1_000);
    out.direction = Direction::Outbound;
    out.from = "+15550199".into();
    out.to = "+15557777".into();
    let id = store.create_call(&out).await.unwrap();
    store
        .finish_call(&id, &end(base + 20_000, 19_000, Some("resolved")))
        .await
        .unwrap();
    ids.push(("outbound", id));

    let id = store.create_call(&new_call("open", base + 2_000)).await.unwrap();
    ids.push(("open", id));

    let id = store
        .create_call(&new_call("transferred", base + 3_000))
        .await
        .unwrap();
    store
        .finish_call(&id, &end(base + 30_000, 27_000, Some("transferred")))
        .await
        .unwrap();
    ids.push(("transferred", id));

    let mut sales = new_call("sales", base + 4_000);
    sales.flow = "sales".into();
    sales.from = "+15558888".into();
    let id = store.create_call(&sales).await.unwrap();
    store
        .finish_call(&id, &end(base + 40_000, 36_000, Some("resolved")))
        .await
        .unwrap();
    ids.push(("sales", id));

    let id = store
        .create_call(&new_call("yesterday", base - 86_400_000))
        .await
        .unwrap();
    store
        .finish_call(&id, &end(base - 86_000_000, 400_000, Some("resolved")))
        .await
        .unwrap();
    ids.push(("yesterday", id));
    ids
}

async fn list_filters_each_narrow(db: &TestDb) {
    let store = db.open().await;
    let ids = filter_data(&store).await;
    let base = t("2026-11-24T09:00:00Z");
    let names = |page: Vec<CallSummary>| -> BTreeSet<&'static str> {
        page.iter()
            .map(|c| ids.iter().find(|(_, id)| *id == c.id).unwrap().0)
            .collect()
    };
    let list = |filter: CallFilter| {
        let store = store.clone();
        async move { store.list_calls(&filter, None, 200).await.unwrap().calls }
    };
    let set = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<_>>();

    assert_eq!(list(CallFilter::default()).await.len(), 6);
    let cases: Vec<(CallFilter, BTreeSet<&'static str>)> = vec![
        (
            CallFilter {
                direction: Some(Direction::Outbound),
                ..Default::default()
            },
            set(&["outbound"]),
        ),
        (
            CallFilter {
                status: Some(CallStatus::InProgress),
                ..Default::default()
            },
            set(&["open"]),
        ),
        (
            CallFilter {
                outcome: Some("transferred".into()),
                ..Default::default()
            },
            set(&["transferred"]),
        ),
        (
            CallFilter {
                flow: Some("sales".into()),
                ..Default::default()
            },
            set(&["sales"]),
        ),
        // As the callee of the baseline calls and as the caller of the outbound one.
        (
            CallFilter {
                number: Some("+15550199".into()),
                ..Default::default()
            },
            set(&["base", "outbound", "open", "transferred", "sales", "yesterday"]),
        ),
        (
            CallFilter {
                number: Some("+15557777".into()),
                ..Default::default()
            },
            set(&["outbound"]),
        ),
        (
            CallFilter {
                number: Some("+15558888".into()),
                ..Default::default()
            },
            set(&["sales"]),
        ),
        (
            CallFilter {
                since: Some(base),
                ..Default::default()
            },
            set(&["base", "outbound", "open", "transferred", "sales"]),
        ),
        // `until` is exclusive.
        (
            CallFilter {
                until: Some(base + 2_000),
                ..Default::default()
            },
            set(&["yesterday", "base", "outbound"]),
        ),
        (
            CallFilter {
                since: Some(base + 1_000),
                until: Some(base + 4_000),
                ..Default::default()
            },
            set(&["outbound", "open", "transferred"]),
        ),
        // Filters combine.
        (
            CallFilter {
                outcome: Some("resolved".into()),
                flow: Some("support".into()),
                since: Some(base),
                ..Default::default()
            },
            set(&["base", "outbound"]),
        ),
        (
            CallFilter {
                direction: Some(Direction::Outbound),
                flow: Some("sales".into()),
                ..Default::default()
            },
            set(&[]),
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(names(list(filter.clone()).await), expected, "{filter:?}");
    }
}

async fn pagination_walks_every_call_once_newest_first(db: &TestDb) {
    let store = db.open().await;
    let base = t("2026-11-24T09:00:00Z");
    // Three calls share a start time, so the id must break ties for the cursor to be exact.
    let starts = [base, base + 5, base + 5, base + 5, base + 10, base - 7, base + 3];
    let mut all = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let id = store
            .create_call(&new_call(&format!("CA{i}"), *start))
            .await
            .unwrap();
        all.push((*start, id));
    }
    all.sort_by(|a, b| b.cmp(a));
    let newest_first: Vec<String> = all.into_iter().map(|(_, id)| id).collect();

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_calls(&CallFilter::default(), cursor.as_deref(), 2)
            .await
            .unwrap();
        sizes.push(page.calls.len());
        seen.extend(page.calls.into_iter().map(|c| c.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(sizes.len() < 10, "pagination does not end");
    }
    assert_eq!(sizes, [2, 2, 2, 1]);
    assert_eq!(seen, newest_first);

    // A filtered walk stays within the filter.
    let filter = CallFilter {
        since: Some(base + 1),
        ..Default::default()
    };
    let first = store.list_calls(&filter, None, 2).await.unwrap();
    let second = store
        .list_calls(&filter, first.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    let ids: Vec<_> = first
        .calls
        .iter()
        .chain(&second.calls)
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(ids, newest_first[..4]);
    assert!(second.next_cursor.is_some());
    let third = store
        .list_calls(&filter, second.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(third.calls.len(), 1);
    assert_eq!(third.next_cursor, None);

    // The limit is held to 1..=200.
    assert_eq!(
        store
            .list_calls(&CallFilter::default(), None, 0)
            .await
            .unwrap()
            .calls
            .len(),
        1
    );
    assert_eq!(
        store
            .list_calls(&CallFilter::default(), None, 5000)
            .await
            .unwrap()
            .calls
            .len(),
        7
    );
}

async fn bad_cursor_is_bad_cursor(db: &TestDb) {
    let store = db.open().await;
    store.create_call(&new_call("CA", 1_000)).await.unwrap();
    for bad in ["", "%%%", "bm9jb2xvbg", "12_x", "123_"] {
        let result = store.list_calls(&CallFilter::default(), Some(bad), 10).await;
        assert!(
            matches!(result, Err(StoreError::BadCursor)),
            "{bad:?}: {result:?}"
        );
    }
}

async fn delete_call_removes_turns_and_events(db: &TestDb) {
    let store = db.open().await;
    let raw = db.raw().await;
    let mut new = new_call("CA-del", 1_000);
    new.recording_path = Some("recordings/CA-del.wav".into());
    let doomed = store.create_call(&new).await.unwrap();
    let kept = store.create_call(&new_call("CA-keep", 2_000)).await.unwrap();
    for id in [&doomed, &kept] {
        store
            .upsert_turn(id, &caller_turn(0, "hi", Some(500)))
            .await
            .unwrap();
        store.upsert_turn(id, &bot_turn(1, "hello")).await.unwrap();
        let e = Event {
            seq: 0,
            at_ms: 10,
            kind: "silence".into(),
            detail: None,
        };
        store.add_event(id, &e).await.unwrap();
    }

    let deleted = store.delete_call(&doomed).await.unwrap().expect("it existed");
    assert_eq!(deleted.id, doomed);
    assert_eq!(deleted.recording_path.as_deref(), Some("recordings/CA-del.wav"));
    assert_eq!(store.get_call(&doomed).await.unwrap(), None);
    assert_eq!(store.delete_call(&doomed).await.unwrap(), None);
    assert_eq!(
        count(&raw, "SELECT COUNT(*) FROM turns WHERE call_id = $1", &doomed).await,
        0
    );
    assert_eq!(
        count(&raw, "SELECT COUNT(*) FROM events WHERE call_id = $1", &doomed).await,
        0
    );

    let other = store.get_call(&kept).await.unwrap().unwrap();
    assert_eq!((other.turns.len(), other.events.len()), (2, 1));
    raw.close().await;
}

async fn retention_deletes_only_old_ended_calls(db: &TestDb) {
    let store = db.open().await;
    let raw = db.raw().await;
    let cutoff = t("2026-11-01T00:00:00Z");
    let day = 86_400_000;

    let old_done = store
        .create_call(&new_call("old-done", cutoff - 10 * day))
        .await
        .unwrap();
    store.upsert_turn(&old_done, &bot_turn(0, "bye")).await.unwrap();
    store
        .finish_call(&old_done, &end(cutoff - 10 * day + 60_000, 60_000, None))
        .await
        .unwrap();
    let old_crashed = store
        .create_call(&new_call("old-crashed", cutoff - 2 * day))
        .await
        .unwrap();
    store
        .mark_interrupted("host-a", cutoff - 2 * day + 1_000)
        .await
        .unwrap();
    let old_open = store
        .create_call(&new_call("old-open", cutoff - day))
        .await
        .unwrap();
    let old_ringing = store
        .create_call(&new_call("old-ringing", cutoff - day))
        .await
        .unwrap();
    store.set_status(&old_ringing, CallStatus::Ringing).await.unwrap();
    let new_done = store.create_call(&new_call("new-done", cutoff)).await.unwrap();
    store
        .finish_call(&new_done, &end(cutoff + 60_000, 60_000, None))
        .await
        .unwrap();

    let deleted = store.delete_older_than(cutoff).await.unwrap();
    let deleted: Vec<_> = deleted.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(deleted, [old_done.as_str(), old_crashed.as_str()], "oldest first");
    assert_eq!(
        count(&raw, "SELECT COUNT(*) FROM turns WHERE call_id = $1", &old_done).await,
        0
    );
    for id in [&old_open, &old_ringing, &new_done] {
        assert!(store.get_call(id).await.unwrap().is_some(), "{id} kept");
    }
    assert!(store.delete_older_than(cutoff).await.unwrap().is_empty());
    raw.close().await;
}

async fn stats_on_a_known_data_set(db: &TestDb) {
    let store = db.open().await;
    let d0 = t("2026-11-22T00:00:00Z");
    let d1 = t("2026-11-23T00:00:00Z");
    let d2 = t("2026-11-24T00:00:00Z");
    let d3 = t("2026-11-25T00:00:00Z");

    // Day 1: one resolved call, one transferred (by outcome and target).
    let c1 = store
        .create_call(&new_call("c1", d1 + 10 * 3_600_000))
        .await
        .unwrap();
    store
        .upsert_turn(&c1, &caller_turn(0, "a", Some(100)))
        .await
        .unwrap();
    store.upsert_turn(&c1, &bot_turn(1, "b")).await.unwrap();
    store
        .upsert_turn(&c1, &caller_turn(2, "c", Some(200)))
        .await
        .unwrap();
    store
        .finish_call(&c1, &end(d1 + 11 * 3_600_000, 60_000, Some("resolved")))
        .await
        .unwrap();
    let c2 = store.create_call(&new_call("c2", d2 - 1)).await.unwrap(); // 23:59:59.999
    store
        .upsert_turn(&c2, &caller_turn(0, "a", Some(300)))
        .await
        .unwrap();
    let mut transferred = end(d2 + 120_000, 120_000, Some("transferred"));
    transferred.transferred_to = Some("+15550123".into());
    store.finish_call(&c2, &transferred).await.unwrap();

    // Day 2: transferred without reaching an outcome, still open, resolved.
    let c3 = store.create_call(&new_call("c3", d2)).await.unwrap();
    for (seq, v) in [(0, 400), (2, 500), (4, 600)] {
        store
            .upsert_turn(&c3, &caller_turn(seq, "x", Some(v)))
            .await
            .unwrap();
    }
    store
        .upsert_turn(&c3, &caller_turn(6, "no audio", None))
        .await
        .unwrap();
    let mut handed_over = end(d2 + 30_000, 30_000, None);
    handed_over.transferred_to = Some("+15550123".into());
    store.finish_call(&c3, &handed_over).await.unwrap();
    let c4 = store
        .create_call(&new_call("c4", d2 + 12 * 3_600_000))
        .await
        .unwrap();
    store
        .upsert_turn(&c4, &caller_turn(0, "x", Some(700)))
        .await
        .unwrap();
    let c5 = store
        .create_call(&new_call("c5", d2 + 13 * 3_600_000))
        .await
        .unwrap();
    store
        .upsert_turn(&c5, &caller_turn(0, "x", Some(800)))
        .await
        .unwrap();
    store
        .finish_call(&c5, &end(d2 + 14 * 3_600_000, 90_000, Some("resolved")))
        .await
        .unwrap();

    // Day 0, outside the range asked for below.
    let c0 = store.create_call(&new_call("c0", d0 + 1)).await.unwrap();
    store
        .upsert_turn(&c0, &caller_turn(0, "x", Some(5_000)))
        .await
        .unwrap();
    store
        .finish_call(&c0, &end(d0 + 1_000_000, 1_000_000, Some("abandoned")))
        .await
        .unwrap();

    let s = store.stats(Some(d1), Some(d3)).await.unwrap();
    assert_eq!(s.total_calls, 5);
    let days: Vec<_> = s
        .calls_per_day
        .iter()
        .map(|d| (d.day.as_str(), d.calls))
        .collect();
    assert_eq!(days, [("2026-11-23", 2), ("2026-11-24", 3)]);
    let outcomes: Vec<_> = s
        .outcomes
        .iter()
        .map(|o| (o.outcome.as_deref(), o.calls))
        .collect();
    assert_eq!(
        outcomes,
        [(Some("resolved"), 2), (None, 2), (Some("transferred"), 1)]
    );
    // Ended: c1 60 s, c2 120 s, c3 30 s, c5 90 s.
    assert_eq!(s.average_handle_time_ms, Some(75_000));
    // Contained: c1 and c5 of the four ended.
    assert_eq!(s.containment_rate, Some(0.5));
    // 100..=800 in steps of 100: nearest rank 4 of 8 is 400, rank 8 is 800.
    assert_eq!(s.latency.turns, 8);
    assert_eq!(
        (s.latency.p50_ms, s.latency.p95_ms, s.latency.p99_ms),
        (Some(400), Some(800), Some(800))
    );

    let everything = store.stats(None, None).await.unwrap();
    assert_eq!(everything.total_calls, 6);
    assert_eq!(everything.calls_per_day[0].day, "2026-11-22");
    assert_eq!(everything.calls_per_day.len(), 3);
    assert_eq!(everything.latency.turns, 9);
    assert_eq!(everything.latency.p99_ms, Some(5_000));
    assert_eq!(everything.containment_rate, Some(3.0 / 5.0));

    // Only the one day: `until` is exclusive.
    let day1 = store.stats(Some(d1), Some(d2)).await.unwrap();
    assert_eq!(day1.total_calls, 2);
    assert_eq!(day1.average_handle_time_ms, Some(90_000));
    assert_eq!(day1.latency.p50_ms, Some(200));

    let nothing = store.stats(Some(d3), None).await.unwrap();
    assert_eq!(nothing.total_calls, 0);
    assert!(nothing.calls_per_day.is_empty() && nothing.outcomes.is_empty());
    assert_eq!(nothing.average_handle_time_ms, None);
    assert_eq!(nothing.containment_rate, None);
    assert_eq!(nothing.latency.turns, 0);
    assert_eq!(nothing.latency.p50_ms, None);
}

async fn api_keys(db: &TestDb) {
    let store = db.open().await;
    let raw = db.raw().await;
    let ci = store.create_api_key("ci").await.unwrap();
    let dash = store.create_api_key("dashboard").await.unwrap();
    assert!(ci.secret.starts_with("sb_"));
    assert_eq!(ci.secret.len(), 3 + 43);
    assert_ne!(ci.secret, dash.secret);
    assert_eq!(ci.key.last_used_at, None);

    let verified = store.verify_api_key(&ci.secret).await.unwrap().expect("valid");
    assert_eq!(
        (verified.id.as_str(), verified.name.as_str()),
        (ci.key.id.as_str(), "ci")
    );
    assert!(verified.last_used_at.unwrap() >= ci.key.created_at);

    // One character off, someone else's format, nothing at all.
    let mut wrong = ci.secret.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [wrong.as_str(), "sb_", "", "Bearer x", &ci.secret[3..]] {
        assert_eq!(store.verify_api_key(bad).await.unwrap(), None, "{bad:?}");
    }

    // Only the hash is stored.
    let row = sqlx::query("SELECT secret_hash FROM api_keys WHERE id = $1")
        .bind(&ci.key.id)
        .fetch_one(&raw)
        .await
        .unwrap();
    let stored: String = row.get("secret_hash");
    assert_eq!(stored, hex::encode(Sha256::digest(ci.secret.as_bytes())));
    let rows = sqlx::query("SELECT id, name, secret_hash FROM api_keys")
        .fetch_all(&raw)
        .await
        .unwrap();
    for row in &rows {
        for column in 0..3 {
            let value: String = row.get(column);
            assert!(!value.contains(&ci.secret[3..]), "a secret is stored in plain");
        }
    }

    let listed = store.list_api_keys().await.unwrap();
    let names: Vec<_> = listed.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["ci", "dashboard"]);
    assert!(listed[0].last_used_at.is_some());

    assert!(store.revoke_api_key(&ci.key.id).await.unwrap());
    assert!(!store.revoke_api_key(&ci.key.id).await.unwrap());
    assert!(!store.revoke_api_key("no-such-key").await.unwrap());
    assert_eq!(store.verify_api_key(&ci.secret).await.unwrap(), None);
    assert!(store.verify_api_key(&dash.secret).await.unwrap().is_some());
    let listed = store.list_api_keys().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, dash.key.id);
    raw.close().await;
}

#[tokio::test]
async fn open_sqlite_takes_any_path() {
    let dir = tempfile::tempdir().unwrap();
    // Characters that mean something in a URL must still name the file.
    let path = dir.path().join("odd dir#1?x=y%20").join("calls.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    store.create_call(&new_call("CA", 1)).await.unwrap();
    store.close().await;
    assert!(path.is_file(), "{} was created", path.display());
    let store = Store::open_sqlite(&path).await.unwrap();
    assert_eq!(
        store
            .list_calls(&CallFilter::default(), None, 10)
            .await
            .unwrap()
            .calls
            .len(),
        1
    );

    // WAL, so the API reads while a call writes; the mode is kept in the file.
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn unknown_url_schemes_are_refused() {
    let err = Store::open("mysql://root:secret@localhost/db").await.unwrap_err();
    assert!(matches!(&err, StoreError::UnsupportedUrl { scheme } if scheme == "mysql"));
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn database_names_are_swapped_in_urls() {
    assert_eq!(
        with_database("postgres://u:p@h:1/switchboard", "x"),
        "postgres://u:p@h:1/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h:1/db?sslmode=disable", "x"),
        "postgres://u:p@h:1/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

async fn no_matches_are_grouped_by_flow_step_and_words(db: &TestDb) {
    let store = db.open().await;
    let said = |seq: i64, at_ms: i64, detail: &str| Event {
        seq,
        at_ms,
        kind: "no_match".into(),
        detail: Some(detail.into()),
    };
    // Two support calls and one survey call; times are the call start plus the event's offset.
    let a = store.create_call(&new_call("CA-1", 1_000)).await.unwrap();
    let b = store.create_call(&new_call("CA-2", 5_000)).await.unwrap();
    let mut survey = new_call("CA-3", 9_000);
    survey.flow = "survey".into();
    let c = store.create_call(&survey).await.unwrap();
    for (id, e) in [
        (&a, said(0, 100, "menu: Thursday's bad.")),
        (&a, said(1, 200, "menu: where do I park")),
        (&b, said(0, 100, "menu: thursday's BAD")),
        // The same words at another step are another group.
        (&b, said(1, 300, "order: thursday's bad")),
        (&c, said(0, 100, "rating: meh")),
    ] {
        store.add_event(id, &e).await.unwrap();
    }
    // Other events are not no-matches.
    let dtmf = Event {
        seq: 2,
        at_ms: 400,
        kind: "dtmf".into(),
        detail: Some("menu: 7".into()),
    };
    store.add_event(&b, &dtmf).await.unwrap();

    let all = store.no_matches(Some("support"), None, None, 10).await.unwrap();
    let got: Vec<(&str, &str, i64, i64, &str)> = all
        .iter()
        .map(|m| {
            (
                m.step.as_str(),
                m.heard.as_str(),
                m.count,
                m.last_at,
                m.call_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // Most frequent first, with the latest spelling, time and call.
            ("menu", "thursday's BAD", 2, 5_100, b.as_str()),
            // Then by recency.
            ("order", "thursday's bad", 1, 5_300, b.as_str()),
            ("menu", "where do I park", 1, 1_200, a.as_str()),
        ]
    );
    assert!(all.iter().all(|m| m.flow == "support"));

    let every_flow = store.no_matches(None, None, None, 10).await.unwrap();
    assert_eq!(every_flow.len(), 4);
    assert_eq!(every_flow.iter().filter(|m| m.flow == "survey").count(), 1);
    // Calls started from 5 s on: only the second support call's words.
    let recent = store
        .no_matches(Some("support"), Some(5_000), None, 10)
        .await
        .unwrap();
    assert_eq!(recent.iter().map(|m| m.count).sum::<i64>(), 2);
    assert_eq!(store.no_matches(None, None, None, 1).await.unwrap().len(), 1);
}
