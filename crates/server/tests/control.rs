//! The server with fake engines: a transfer goes to the provider's REST API, status callbacks are
//! kept in order, and the router refuses unsigned callbacks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use futures_util::{SinkExt, StreamExt};
use switchboard_call::fakes::{FakeLlm, FakeStt, FakeTts};
use switchboard_call::{CallSettings, EndReason, Engines};
use switchboard_flow::Flow;
use switchboard_server::{AppState, ServerConfig, app};
use switchboard_telephony::{AuthToken, signature};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "test-token";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const CALL: &str = "CA0123456789abcdef0123456789abcdef";

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

type FakeState = AppState<FakeStt, FakeLlm, FakeTts>;

/// The server's state with the one-step transfer flow and fake engines.
fn fake_state(rest: Option<String>) -> Arc<FakeState> {
    let flow = Flow::parse(FLOW, "straight_to_staff.yaml", None).expect("flow");
    let mut flows = BTreeMap::new();
    flows.insert("straight_to_staff".to_string(), Arc::new(flow));
    let config = ServerConfig {
        public_url: None,
        auth_token: AuthToken::new(TOKEN),
        account_sid: rest.as_ref().map(|_| ACCOUNT.to_string()),
        rest_base_url: rest,
        flows,
        numbers: BTreeMap::new(),
        default_flow: "straight_to_staff".into(),
        call: CallSettings::default(),
        recordings_dir: None,
        max_calls: 2,
        start_timeout: Duration::from_secs(2),
    };
    let engines = Engines {
        stt: Arc::new(FakeStt::new("")),
        llm: Arc::new(FakeLlm),
        tts: Arc::new(FakeTts),
    };
    Arc::new(AppState::new(config, engines).expect("state"))
}

async fn server(rest: Option<String>) -> (String, Arc<FakeState>) {
    let state = fake_state(rest);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = app(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, state)
}

/// Plays a call's stream until the server closes it, acknowledging marks.
async fn stream_call(url: &str) {
    let ws_url = format!("{}/twilio/media", url.replace("http://", "ws://"));
    let mut request = ws_url.as_str().into_client_request().expect("request");
    let sig = signature::sign::<&str, &str>(&AuthToken::new(TOKEN), &ws_url, &[]);
    request
        .headers_mut()
        .insert(signature::HEADER, sig.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "accountSid": ACCOUNT, "callSid": CALL, "tracks": ["inbound"],
                  "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    ws.send(Message::Text(start.to_string().into()))
        .await
        .expect("start");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let Message::Text(t) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json from the server");
        if v["event"] == "mark" {
            let echo = serde_json::json!({"event": "mark", "streamSid": "MZ1", "mark": v["mark"]});
            ws.send(Message::Text(echo.to_string().into()))
                .await
                .expect("mark");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_dials_through_the_providers_rest_api() {
    let (rest_url, seen) = provider().await;
    let (url, state) = server(Some(rest_url)).await;
    stream_call(&url).await;
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
    let target = format!("{url}/twilio/status");
    let form: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT),
        ("CallSid", CALL),
        ("CallStatus", status),
        ("SequenceNumber", seq),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sig = signature::sign(&AuthToken::new(TOKEN), &target, &form);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    reqwest::Client::new()
        .post(&target)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(signature::HEADER, sig)
        .body(body)
        .send()
        .await
        .expect("status callback")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_callbacks_are_kept_in_sequence_order() {
    let (url, state) = server(None).await;
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
    let state = fake_state(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(switchboard_server::serve(listener, state.clone(), async {
        let _ = stop_rx.await;
    }));
    let call = tokio::spawn({
        let url = url.clone();
        async move { stream_call(&url).await }
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
