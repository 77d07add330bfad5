//! The campaign dialer against a stand-in provider REST API on loopback: what a dial request
//! looks like on the wire, and which failures leave an attempt in doubt.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use switchboard_campaign::{DialError, DialRequest, Dialer, Reconciler};
use switchboard_server::dialer::{RestDialer, RestReconciler};
use switchboard_store::VoicemailAction;
use switchboard_telephony::AuthToken;
use switchboard_telephony::rest::{RestClient, RestConfig, RetryPolicy};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

#[derive(Clone, Default)]
struct Provider {
    /// Status codes to answer the next creates with (201 once they run out).
    script: Arc<Mutex<Vec<u16>>>,
    creates: Arc<Mutex<Vec<String>>>,
    lists: Arc<Mutex<Vec<String>>>,
}

async fn provider() -> (String, Provider) {
    async fn create(State(p): State<Provider>, body: String) -> (StatusCode, String) {
        p.creates.lock().expect("lock").push(body);
        let status = p.script.lock().expect("lock").pop().unwrap_or(201);
        let body = r#"{"sid":"CA00000000000000000000000000000042","status":"queued"}"#;
        (StatusCode::from_u16(status).expect("status"), body.into())
    }
    async fn list(State(p): State<Provider>, RawQuery(q): RawQuery) -> String {
        p.lists.lock().expect("lock").push(q.unwrap_or_default());
        r#"{"calls":[{"sid":"CA00000000000000000000000000000042","status":"ringing"}]}"#.into()
    }
    let p = Provider::default();
    let router = Router::new()
        .route(
            &format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"),
            post(create).get(list),
        )
        .with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, p)
}

fn client(base: &str) -> RestClient {
    let mut config = RestConfig::new(ACCOUNT, AuthToken::new("token"));
    config.base_url = base.into();
    config.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: std::time::Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    RestClient::new(config).expect("client")
}

fn request() -> DialRequest {
    DialRequest {
        attempt_id: "0190a000-0000-7000-8000-000000000001".into(),
        attempt_number: 1,
        campaign_id: "c1".into(),
        contact_id: "k1".into(),
        to: "+442071838750".into(),
        from: "+15005550001".into(),
        flow: "outbound_appointment".into(),
        contact_name: "Ada".into(),
        fields: serde_json::Map::new(),
        machine_detection: true,
        voicemail: VoicemailAction::LeaveMessage,
    }
}

#[tokio::test]
async fn a_dial_asks_for_machine_detection_and_calls_back_with_the_attempt() {
    let (url, p) = provider().await;
    let dialer = RestDialer::new(client(&url), "https://voice.example.com/");
    let started = dialer.dial(request()).await.expect("dialed");
    assert_eq!(started.provider_call_id, "CA00000000000000000000000000000042");
    let creates = p.creates.lock().expect("lock").clone();
    assert_eq!(creates.len(), 1);
    let form: Vec<(String, String)> = form_urlencoded::parse(creates[0].as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(get("To"), Some("+442071838750"));
    assert_eq!(get("From"), Some("+15005550001"));
    assert_eq!(
        get("Url"),
        Some("https://voice.example.com/twilio/voice?attempt=0190a000-0000-7000-8000-000000000001")
    );
    assert_eq!(
        get("StatusCallback"),
        Some("https://voice.example.com/twilio/status?attempt=0190a000-0000-7000-8000-000000000001"),
        "the attempt in the callback's URL too: a callback may beat the create's answer"
    );
    assert_eq!(get("MachineDetection"), Some("DetectMessageEnd"));
    assert_eq!(get("AsyncAmd"), None, "detection is synchronous");
}

#[tokio::test]
async fn a_server_error_leaves_the_attempt_in_doubt_and_is_not_redialed() {
    let (url, p) = provider().await;
    p.script.lock().expect("lock").push(500);
    let dialer = RestDialer::new(client(&url), "https://voice.example.com");
    let err = dialer.dial(request()).await.expect_err("500");
    assert!(matches!(err, DialError::Unavailable { .. }), "{err:?}");
    assert_eq!(p.creates.lock().expect("lock").len(), 1, "no second create");

    // The reconciler finds the call the provider placed after all.
    let reconciler = RestReconciler::new(client(&url));
    let since = jiff::Timestamp::from_second(1_795_492_565).expect("time");
    let found = reconciler
        .find_call("+442071838750", since)
        .await
        .expect("listed");
    assert_eq!(found.as_deref(), Some("CA00000000000000000000000000000042"));
    let lists = p.lists.lock().expect("lock").clone();
    assert_eq!(lists, ["To=%2B442071838750&StartTime%3E=2026-11-24&PageSize=50"]);
}

#[tokio::test]
async fn a_refusal_means_no_call() {
    let (url, p) = provider().await;
    p.script.lock().expect("lock").push(400);
    let dialer = RestDialer::new(client(&url), "https://voice.example.com");
    let err = dialer.dial(request()).await.expect_err("400");
    assert!(matches!(err, DialError::Rejected { .. }), "{err:?}");
}
