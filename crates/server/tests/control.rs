//! The server with fake engines: a transfer goes to the provider's REST API, status callbacks are
//! kept in order, and the router refuses unsigned callbacks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use switchboard_call::EndReason;

mod common;

use common::{ACCOUNT, CALL, Setup, fake_state, server, stream_call};

const FLOW: &str = r#"
name: straight_to_staff
direction: inbound
persona: A test line.
start: hello
steps:
  hello: { say: One moment., next: staff }
  staff:
    transfer: { to: "sip:desk@example.com", say: Connecting you. }
"#;

fn setup(rest: Option<String>) -> Setup {
    Setup {
        flow: FLOW,
        rest,
        record: false,
    }
}

type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A provider REST API that records what it is asked.
async fn provider() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn update(
        State(seen): State<Seen>,
        Path((_, call)): Path<(String, String)>,
        body: Bytes,
    ) -> String {
        if let Ok(mut s) = seen.lock() {
            s.push((call.clone(), String::from_utf8_lossy(&body).into_owned()));
        }
        format!(
            r#"{{"sid":"{}","status":"in-progress","account_sid":"{ACCOUNT}","to":"+1","from":"+1"}}"#,
            call.trim_end_matches(".json")
        )
    }
    let router = Router::new()
        .route("/2010-04-01/Accounts/{account}/Calls/{call}", post(update))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_dials_through_the_providers_rest_api() {
    let (rest_url, seen) = provider().await;
    let (url, state) = server(setup(Some(rest_url))).await;
    stream_call(&url, CALL, &[]).await;
    let finished = state.finished_calls();
    let (sid, report) = finished.first().expect("the call was logged");
    assert_eq!(sid, CALL);
    assert_eq!(report.ended_by, Some(EndReason::Transferred));
    assert_eq!(report.transferred_to.as_deref(), Some("sip:desk@example.com"));
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "one call update: {seen:?}");
    assert_eq!(seen[0].0, format!("{CALL}.json"));
    let twiml = form_urlencoded::parse(seen[0].1.as_bytes())
        .find(|(k, _)| k == "Twiml")
        .map(|(_, v)| v.into_owned())
        .expect("Twiml field");
    assert!(
        twiml.contains("<Dial>") && twiml.contains("<Sip>sip:desk@example.com</Sip>"),
        "{twiml}"
    );
}

async fn post_status(url: &str, seq: &str, status: &str) -> u16 {
    post_status_of(url, CALL, seq, status).await
}

async fn post_status_of(url: &str, call_sid: &str, seq: &str, status: &str) -> u16 {
    let form = [
        ("AccountSid", ACCOUNT),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("SequenceNumber", seq),
    ];
    post_signed_status(url, &form).await.status().as_u16()
}

/// A status callback with these form fields, signed with the right token.
async fn post_signed_status(url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    common::post_signed_form(&format!("{url}/twilio/status"), form).await
}

#[tokio::test(flavor = "multi_thread")]
async fn status_callbacks_are_kept_in_sequence_order() {
    let (url, state) = server(setup(None)).await;
    assert_eq!(post_status(&url, "0", "ringing").await, 204);
    assert_eq!(post_status(&url, "2", "completed").await, 204);
    assert_eq!(
        post_status(&url, "1", "in-progress").await,
        204,
        "late, accepted but ignored"
    );
    let info = state.call_status(CALL).expect("known call");
    assert_eq!(
        (info.status.as_str(), info.sequence_number),
        ("completed", Some(2))
    );

    // Unsigned: refused, and the state is unchanged.
    let r = reqwest::Client::new()
        .post(format!("{url}/twilio/status"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "AccountSid={ACCOUNT}&CallSid={CALL}&CallStatus=ringing&SequenceNumber=9"
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert_eq!(state.call_status(CALL).expect("known").status, "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_the_call_in_progress_finish() {
    let (state, _) = fake_state(setup(None)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(switchboard_server::serve(listener, state.clone(), async {
        let _ = stop_rx.await;
    }));
    let call = tokio::spawn({
        let url = url.clone();
        async move { stream_call(&url, CALL, &[]).await }
    });
    // Ask the server to stop while the call is in progress.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state.active_calls(), 1, "the call is running");
    let _ = stop_tx.send(());
    call.await.expect("call");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops after the call")
        .expect("join")
        .expect("serve");
    let finished = state.finished_calls();
    assert_eq!(finished.len(), 1, "the call finished and was logged");
    assert_eq!(finished[0].1.ended_by, Some(EndReason::Transferred));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_webhooks_and_stream_messages_are_refused() {
    let (url, state) = server(setup(None)).await;
    // A signed status callback padded past the body limit: 413, and nothing changes.
    let pad = "x".repeat(switchboard_server::MAX_BODY_BYTES);
    let form = [
        ("AccountSid", ACCOUNT),
        ("CallSid", CALL),
        ("CallStatus", "completed"),
        ("SequenceNumber", "1"),
        ("Padding", pad.as_str()),
    ];
    let r = post_signed_status(&url, &form).await;
    assert_eq!(r.status(), 413);
    assert!(state.call_status(CALL).is_none(), "nothing was recorded");

    // A media stream message past the limit closes that stream; the server goes on.
    use futures_util::{SinkExt, StreamExt};
    let mut ws = common::connect_media(&url).await;
    let huge = "y".repeat(switchboard_server::MAX_WS_MESSAGE_BYTES + 1);
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::Text(huge.into()))
        .await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stream was closed");
    stream_call(&url, CALL, &[]).await;
    assert_eq!(state.finished_calls().len(), 1, "the next call works");
}

/// A running campaign with one contact per number, each claimed and dialed as `sids` (the
/// provider's ids); returns the attempt ids.
async fn dialed_campaign(store: &switchboard_store::Store, sids: &[&str]) -> Vec<String> {
    use switchboard_store::{
        CampaignSettings, CampaignStatus, DecisionKind, NewCampaign, NewContact, NewDecision,
    };
    let campaign = store
        .create_campaign(
            &NewCampaign::new(
                "test",
                "straight_to_staff",
                "+15550100",
                CampaignSettings::default(),
            )
            .expect("settings"),
        )
        .await
        .expect("campaign");
    store
        .set_campaign_status(&campaign.id, CampaignStatus::Running)
        .await
        .expect("running");
    let contacts: Vec<NewContact> = (0..sids.len())
        .map(|i| NewContact {
            name: format!("Contact {i}"),
            phone: format!("+4420718387{i:02}"),
            time_zone: Some("Europe/London".into()),
            consent: true,
            consent_source: Some("test".into()),
            fields: serde_json::Map::new(),
        })
        .collect();
    store
        .import_contacts(&campaign.id, &contacts)
        .await
        .expect("import")
        .expect("campaign exists");
    let now = jiff::Timestamp::now().as_millisecond();
    let claims = store.claim_due(&campaign.id, now, 10).await.expect("claim");
    assert_eq!(claims.len(), sids.len());
    let mut attempts = Vec::new();
    for (claim, sid) in claims.iter().zip(sids) {
        let decision = NewDecision {
            at: now,
            kind: DecisionKind::Dial,
            reason: "test".into(),
            detail: String::new(),
            retry_at: None,
        };
        assert!(
            store
                .mark_dialing(&claim.attempt_id, &decision)
                .await
                .expect("dialing")
        );
        assert!(
            store
                .set_attempt_provider_id(&claim.attempt_id, sid)
                .await
                .expect("provider id")
        );
        attempts.push(claim.attempt_id.clone());
    }
    attempts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_call_ends_its_attempt_with_the_flows_outcome_or_the_providers_status() {
    use switchboard_store::{AttemptStatus, ContactState};
    let (url, state) = server(setup(None)).await;
    let busy_sid = "CA0123456789abcdef0123456789abcd02";
    let attempts = dialed_campaign(state.store(), &[CALL, busy_sid]).await;

    // Answered: the flow runs and its outcome ends the attempt and the contact.
    stream_call(&url, CALL, &[]).await;
    state.log_settled().await;
    let answered = state
        .store()
        .get_attempt(&attempts[0])
        .await
        .expect("store")
        .expect("attempt");
    assert_eq!(answered.status, AttemptStatus::Completed);
    assert_eq!(answered.outcome.as_deref(), Some("transferred"));
    let logged = state
        .store()
        .find_by_provider_id(CALL)
        .await
        .expect("store")
        .expect("logged");
    assert_eq!(
        answered.call_id.as_deref(),
        Some(logged.id.as_str()),
        "linked to the call log"
    );
    let contact = state
        .store()
        .get_contact(&answered.contact_id)
        .await
        .expect("store")
        .expect("contact");
    assert_eq!(contact.state, ContactState::Done);

    // Busy: the status callback ends the attempt, and the contact waits for its retry.
    assert_eq!(post_status_of(&url, busy_sid, "3", "busy").await, 204);
    // Written after the answer, by the call log's writer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let busy = loop {
        let attempt = state
            .store()
            .get_attempt(&attempts[1])
            .await
            .expect("store")
            .expect("attempt");
        if attempt.status == AttemptStatus::Busy || std::time::Instant::now() > deadline {
            break attempt;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(busy.status, AttemptStatus::Busy);
    let contact = state
        .store()
        .get_contact(&busy.contact_id)
        .await
        .expect("store")
        .expect("contact");
    assert_eq!(contact.state, ContactState::Pending, "to be retried");
    assert!(contact.next_attempt_at.is_some());
}
