//! Faults around a call: the database going away mid-call. The engines are fakes (this is about
//! the plumbing); the database and the media stream are real.

mod common;

use std::time::{Duration, Instant};

use common::{CALL, Setup, fake_state, serve, stream_call};
use sqlx::Connection;

const FLOW: &str = r#"
name: support
direction: inbound
persona: A test line.
facts: { hours: nine to five }
slots:
  topic: { type: one_of, options: { hours: [hours], other: [] } }
start: menu
steps:
  menu:
    ask: topic
    prompt: Welcome. Press 1 for our hours.
    dtmf: { "1": hours }
    routes: { hours: hours, other: bye }
    on_fail: bye
  hours:
    say: We are open {{facts.hours}}.
    next: bye
  bye:
    end: { outcome: resolved, say: Goodbye. }
"#;

/// The call's log entry once it shows the call ended; fails after `patience`.
async fn ended_call(state: &common::FakeState, patience: Duration) -> switchboard_store::CallDetail {
    let deadline = Instant::now() + patience;
    loop {
        let summary = state.store().find_by_provider_id(CALL).await.expect("reads work");
        if let Some(s) = summary.filter(|s| s.ended_at.is_some()) {
            return state
                .store()
                .get_call(&s.id)
                .await
                .expect("reads work")
                .expect("the call");
        }
        assert!(Instant::now() < deadline, "the call's log was never written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_goes_on_while_the_database_is_locked_and_its_log_is_written_afterwards() {
    let (state, dir) = fake_state(Setup {
        flow: FLOW,
        rest: None,
        record: false,
    })
    .await;
    let url = serve(state.clone()).await;

    // Another process takes SQLite's write lock and keeps it: every write of the server fails
    // with "database is locked" (after the store's busy timeout) until it lets go.
    let db = dir.join("calls.db");
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("second connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .expect("lock");

    let started = Instant::now();
    stream_call(&url, CALL, &[(Duration::from_secs(3), '1')]).await;
    let took = started.elapsed();
    // The greeting, the hours and the goodbye take about 5 s; a call that waited for its log would
    // take at least one busy timeout (5 s) per write.
    assert!(took < Duration::from_secs(12), "the call took {took:?}");
    let (_, report) = state.finished_calls().pop().expect("the call finished");
    assert_eq!(report.outcome.map(|o| o.as_str()), Some("resolved"), "{report:?}");
    // Readers are not blocked by the lock: nothing of the call is in the log yet.
    let found = state.store().find_by_provider_id(CALL).await.expect("reads work");
    assert!(found.is_none(), "written despite the lock: {found:?}");

    // The database stays away a little longer, then comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("unlock");
    drop(locker);

    let detail = ended_call(&state, Duration::from_secs(60)).await;
    assert_eq!(detail.call.outcome.as_deref(), Some("resolved"));
    // Nothing lost: every turn and event the call had, in order.
    let texts: Vec<&str> = detail.turns.iter().map(|t| t.text.as_str()).collect();
    let expected: Vec<&str> = report.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, expected);
    assert!(texts.iter().any(|t| t.contains("nine to five")), "{texts:?}");
    assert_eq!(detail.events.len(), report.events.len(), "{:?}", detail.events);
    assert!(detail.events.iter().any(|e| e.kind == "dtmf"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_loses_the_recording_but_not_the_call_or_its_log() {
    let (state, dir) = fake_state(Setup {
        flow: FLOW,
        rest: None,
        record: true,
    })
    .await;
    // The recording's path leads to a device on which every write fails with "no space left".
    std::os::unix::fs::symlink("/dev/full", dir.join("recordings").join(format!("{CALL}.wav")))
        .expect("symlink");
    let url = serve(state.clone()).await;
    stream_call(&url, CALL, &[(Duration::from_secs(3), '1')]).await;

    let (_, report) = state.finished_calls().pop().expect("the call finished");
    assert_eq!(report.outcome.map(|o| o.as_str()), Some("resolved"));
    let detail = ended_call(&state, Duration::from_secs(30)).await;
    assert_eq!(detail.call.outcome.as_deref(), Some("resolved"));
    assert!(
        !detail.call.has_recording,
        "no recording is offered: {:?}",
        detail.call
    );
    assert!(
        detail.turns.iter().any(|t| t.text.contains("nine to five")),
        "{:?}",
        detail.turns
    );
    let error = detail
        .events
        .iter()
        .find(|e| e.kind == "error")
        .unwrap_or_else(|| panic!("the failed recording is in the log: {:?}", detail.events));
    let detail_text = error.detail.as_deref().unwrap_or_default();
    assert!(
        detail_text.contains("recording") && detail_text.to_lowercase().contains("space"),
        "{detail_text}"
    );
}
