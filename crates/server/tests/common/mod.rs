//! Shared by the server's tests: the state with fake engines and a store in a temporary directory,
//! and the provider's side of a media stream.

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_call::fakes::{FakeLlm, FakeStt, FakeTts};
use switchboard_call::{CallSettings, Engines};
use switchboard_flow::Flow;
use switchboard_server::{AppState, ServerConfig};
use switchboard_store::Store;
use switchboard_telephony::{AuthToken, signature};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const TOKEN: &str = "test-token";
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const CALL: &str = "CA0123456789abcdef0123456789abcdef";

/// An inbound flow for the runtime's default (which no campaign may use).
pub const INBOUND_FLOW: &str = r#"
name: support
direction: inbound
persona: A test line.
start: hello
steps:
  hello:
    end: { outcome: resolved, say: Hello and goodbye. }
"#;

/// An outbound flow for campaigns (the only kind they may name).
pub const OUTBOUND_FLOW: &str = r#"
name: reminder
direction: outbound
persona: A test caller.
start: hello
steps:
  hello:
    end: { outcome: confirmed, say: See you then. Goodbye. }
"#;

pub type FakeState = AppState<FakeStt, FakeLlm, FakeTts>;

/// How a test server is set up.
pub struct Setup {
    pub flow: &'static str,
    pub rest: Option<String>,
    pub record: bool,
}

/// The state with one flow, fake engines, and a SQLite call log in a fresh directory (kept for the
/// test process's life: the server writes into it after the test's last look).
pub async fn fake_state(setup: Setup) -> (Arc<FakeState>, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let store = Store::open_sqlite(&dir.join("calls.db")).await.expect("store");
    (state_with(setup, &[], store, &dir), dir)
}

/// The state with `setup.flow` (the default flow) and `more_flows`, on `store`; recordings, when
/// asked for, go under `dir`.
pub fn state_with(setup: Setup, more_flows: &[&str], store: Store, dir: &Path) -> Arc<FakeState> {
    let engines = Engines {
        stt: Arc::new(FakeStt::new("")),
        llm: Arc::new(FakeLlm),
        tts: Arc::new(FakeTts),
    };
    state_with_engines(setup, more_flows, store, dir, engines)
}

/// [`state_with`] with the given engines.
pub fn state_with_engines(
    setup: Setup,
    more_flows: &[&str],
    store: Store,
    dir: &Path,
    engines: Engines<FakeStt, FakeLlm, FakeTts>,
) -> Arc<FakeState> {
    let flow = Flow::parse(setup.flow, "test.yaml", None).expect("flow");
    let name = flow.name().to_string();
    let mut flows = BTreeMap::new();
    flows.insert(name.clone(), Arc::new(flow));
    for (i, yaml) in more_flows.iter().enumerate() {
        let flow = Flow::parse(yaml, &format!("more{i}.yaml"), None).expect("flow");
        flows.insert(flow.name().to_string(), Arc::new(flow));
    }
    let recordings_dir = setup.record.then(|| dir.join("recordings"));
    if let Some(r) = &recordings_dir {
        std::fs::create_dir_all(r).expect("recordings dir");
    }
    let config = ServerConfig {
        public_url: None,
        auth_token: AuthToken::new(TOKEN),
        account_sid: setup.rest.as_ref().map(|_| ACCOUNT.to_string()),
        rest_base_url: setup.rest,
        flows,
        numbers: BTreeMap::new(),
        default_flow: name,
        call: CallSettings::default(),
        recordings_dir,
        max_calls: 2,
        start_timeout: Duration::from_secs(2),
        media_idle_timeout: Duration::from_secs(3),
        http_read_timeout: Duration::from_secs(2),
        log_pii: false,
        runtime: "test".to_string(),
    };
    Arc::new(AppState::new(config, engines, store).expect("state"))
}

/// The server on a loopback port.
pub async fn server(setup: Setup) -> (String, Arc<FakeState>) {
    let (state, _) = fake_state(setup).await;
    (serve(state.clone()).await, state)
}

/// `state`'s router on a loopback port; its URL.
pub async fn serve(state: Arc<FakeState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    // The server's own accept loop (timeouts included), never shut down.
    tokio::spawn(switchboard_server::serve(listener, state, std::future::pending()));
    url
}

/// The media stream WebSocket, upgraded with a valid signature.
pub async fn connect_media(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let ws_url = format!("{}/twilio/media", url.replace("http://", "ws://"));
    let mut request = ws_url.as_str().into_client_request().expect("request");
    let sig = signature::sign::<&str, &str>(&AuthToken::new(TOKEN), &ws_url, &[]);
    request
        .headers_mut()
        .insert(signature::HEADER, sig.parse().expect("header"));
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    ws
}

/// Plays a call's stream until the server closes it, acknowledging marks; `keys` are pressed at
/// the given times after `start`.
pub async fn stream_call(url: &str, call_sid: &str, keys: &[(Duration, char)]) {
    let mut ws = connect_media(url).await;
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "accountSid": ACCOUNT, "callSid": call_sid, "tracks": ["inbound"],
                  "customParameters": {"from": "+15555550100", "to": "+15555550199"},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    ws.send(Message::Text(start.to_string().into()))
        .await
        .expect("start");
    let started = tokio::time::Instant::now();
    let mut seq = 1u64;
    let mut next_seq = move || {
        seq += 1;
        seq.to_string()
    };
    let mut keys = keys.iter().peekable();
    let deadline = started + Duration::from_secs(30);
    loop {
        let next_key = keys.peek().map(|(at, _)| started + *at).unwrap_or(deadline);
        let msg = match tokio::time::timeout_at(next_key.min(deadline), ws.next()).await {
            Ok(Some(Ok(msg))) => msg,
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() >= deadline => break,
            Err(_) => {
                if let Some((_, digit)) = keys.next() {
                    let dtmf = serde_json::json!({"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": next_seq(),
                        "dtmf": {"track": "inbound_track", "digit": digit.to_string()}});
                    ws.send(Message::Text(dtmf.to_string().into()))
                        .await
                        .expect("dtmf");
                }
                continue;
            }
        };
        let Message::Text(t) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json from the server");
        if v["event"] == "mark" {
            let echo = serde_json::json!({"event": "mark", "streamSid": "MZ1", "sequenceNumber": next_seq(),
                "mark": v["mark"]});
            ws.send(Message::Text(echo.to_string().into()))
                .await
                .expect("mark");
        }
    }
}

/// POSTs `form` to `target` (a full URL) signed with the right token, as the provider would.
pub async fn post_signed_form(target: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let sig = signature::sign(&AuthToken::new(TOKEN), target, form);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    reqwest::Client::new()
        .post(target)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(signature::HEADER, sig)
        .body(body)
        .send()
        .await
        .expect("signed form")
}

/// Takes SQLite's write lock on `db` from a second connection and keeps it until the connection
/// rolls back: every write of the server fails with "database is locked" meanwhile.
pub async fn lock_database(db: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("second connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .expect("lock");
    locker
}

/// Lets go of [`lock_database`]'s lock.
pub async fn unlock_database(mut locker: sqlx::SqliteConnection) {
    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("unlock");
}
