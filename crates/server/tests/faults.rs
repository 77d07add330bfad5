//! Faults around a call: the database going away mid-call, an engine that is gone. The engines are
//! fakes (this is about the plumbing); the database and the media stream are real.

mod common;

use std::time::{Duration, Instant};

use common::{CALL, Setup, fake_state, serve, stream_call};

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
    let locker = common::lock_database(&dir.join("calls.db")).await;

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
    common::unlock_database(locker).await;

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

#[tokio::test(flavor = "multi_thread")]
async fn a_status_callback_during_a_database_outage_is_answered_and_written_afterwards() {
    use switchboard_store::{
        AttemptStatus, CampaignSettings, CampaignStatus, DecisionKind, NewCampaign, NewContact, NewDecision,
    };

    let (state, dir) = fake_state(Setup {
        flow: FLOW,
        rest: None,
        record: false,
    })
    .await;
    let url = serve(state.clone()).await;
    // One contact of a running campaign, dialed: the provider will report it busy.
    let store = state.store();
    let new =
        NewCampaign::new("outage", "support", "+15555550100", CampaignSettings::default()).expect("campaign");
    let campaign = store.create_campaign(&new).await.expect("create").id;
    store
        .set_campaign_status(&campaign, CampaignStatus::Running)
        .await
        .expect("start");
    let contact = NewContact {
        name: "Ada".into(),
        phone: "+15555550142".into(),
        time_zone: Some("America/New_York".into()),
        consent: true,
        consent_source: Some("test".into()),
        fields: serde_json::Map::new(),
    };
    store
        .import_contacts(&campaign, &[contact])
        .await
        .expect("import")
        .expect("valid");
    let now = jiff::Timestamp::now().as_millisecond();
    let attempt = store.claim_due(&campaign, now, 1).await.expect("claim")[0]
        .attempt_id
        .clone();
    let decision = NewDecision {
        at: now,
        kind: DecisionKind::Dial,
        reason: "all_checks_passed".into(),
        detail: "test".into(),
        retry_at: None,
    };
    assert!(store.mark_dialing(&attempt, &decision).await.expect("dialing"));

    // The database is locked (see above) when the callback comes.
    let locker = common::lock_database(&dir.join("calls.db")).await;
    let target = format!("{url}/twilio/status?attempt={attempt}");
    let form = [
        ("AccountSid", common::ACCOUNT),
        ("CallSid", CALL),
        ("CallStatus", "busy"),
        ("SequenceNumber", "1"),
    ];
    let started = Instant::now();
    let response = common::post_signed_form(&target, &form).await;
    // The provider is answered at once, not after the database's busy timeout.
    assert_eq!(response.status(), 204);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Longer than the old in-request retries (1.5 s) lasted.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let unchanged = store
        .get_attempt(&attempt)
        .await
        .expect("reads work")
        .expect("attempt");
    assert_eq!(unchanged.status, AttemptStatus::Dialing);
    common::unlock_database(locker).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = store
            .get_attempt(&attempt)
            .await
            .expect("reads work")
            .expect("attempt");
        if a.status == AttemptStatus::Busy {
            assert_eq!(a.provider_call_id.as_deref(), Some(CALL));
            break;
        }
        assert!(Instant::now() < deadline, "the busy result was lost: {a:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_says_whether_a_call_would_be_served() {
    let get_ready = |url: String| async move {
        let r = reqwest::get(format!("{url}/ready")).await.expect("GET /ready");
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.expect("JSON"))
    };
    let setup = || Setup {
        flow: FLOW,
        rest: None,
        record: false,
    };

    let (state, _) = fake_state(setup()).await;
    let (status, body) = get_ready(serve(state).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["speech_to_text"], "ok");
    assert_eq!(body["language_model"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(
        (body["calls_in_progress"].as_u64(), body["max_calls"].as_u64()),
        (Some(0), Some(2))
    );

    // A speech recognizer that has stopped: every call would fail, so the runtime is not ready,
    // and says which part is missing. `/health` (the process is alive) still answers.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let store = switchboard_store::Store::open_sqlite(&dir.join("calls.db"))
        .await
        .expect("store");
    let engines = switchboard_call::Engines {
        stt: std::sync::Arc::new(switchboard_call::fakes::FakeStt::stopped()),
        llm: std::sync::Arc::new(switchboard_call::fakes::FakeLlm),
        tts: std::sync::Arc::new(switchboard_call::fakes::FakeTts),
    };
    let url = serve(common::state_with_engines(setup(), &[], store, &dir, engines)).await;
    let (status, body) = get_ready(url.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["speech_to_text"], "unavailable");
    assert_eq!(body["database"], "ok");
    let health = reqwest::get(format!("{url}/health")).await.expect("GET /health");
    assert_eq!(health.status().as_u16(), 200);
}
