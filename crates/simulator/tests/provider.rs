//! The provider simulator against a tiny runtime on loopback: the runtime's own REST client places
//! calls (so the simulator speaks the API the runtime uses), and the runtime checks every webhook,
//! callback and stream upgrade signature with the telephony crate, as the real server does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use switchboard_simulator::record::{CallRecord, Record};
use switchboard_simulator::{EndedBy, NumbersFile, Provider, ProviderConfig, StreamEnd};
use switchboard_telephony::media::{self, Inbound, StartMeta};
use switchboard_telephony::rest::{
    AmdMode, CallInstructions, CallUpdate, CreateCall, MachineDetection, RestClient, RestConfig, RestError,
    RetryPolicy, StatusCallbackEvent,
};
use switchboard_telephony::twiml::{Dial, Response as Twiml, Stream};
use switchboard_telephony::webhook::{AnsweredBy, CallStatus, FormParams, StatusCallback, VoiceWebhook};
use switchboard_telephony::{AuthToken, signature};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "simulator-test-token";
const VOICEMAIL: &str = "Hi, this is Acme Dental. Please call us back.";

/// What the test runtime does once the stream's greeting has played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Answers each caller turn, until the caller hangs up.
    Talk,
    /// Ends the call through the REST API.
    HangUp,
    /// Transfers the call through the REST API.
    Transfer,
}

#[derive(Debug, Default)]
struct Seen {
    bad_signatures: usize,
    webhooks: Vec<(String, VoiceWebhook)>,
    callbacks: Vec<(String, StatusCallback)>,
    starts: Vec<StartMeta>,
    caller_speech_frames: usize,
    digits: String,
    marks_back: Vec<String>,
    stops: usize,
}

struct Runtime {
    base: String,
    token: AuthToken,
    mode: Mode,
    rest: RestClient,
    /// The test reads what the handlers saw; each handler holds it for one push.
    seen: Mutex<Seen>,
}

impl Runtime {
    fn seen<R>(&self, f: impl FnOnce(&mut Seen) -> R) -> R {
        f(&mut self.seen.lock().expect("not poisoned"))
    }

    fn checked(&self, url: &str, form: &FormParams, headers: &HeaderMap) -> bool {
        let header = headers.get(signature::HEADER).and_then(|h| h.to_str().ok());
        let ok = signature::validate(&self.token, url, form.pairs(), header).is_ok();
        if !ok {
            self.seen(|s| s.bad_signatures += 1);
        }
        ok
    }
}

async fn voice(
    State(rt): State<Arc<Runtime>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!("{}{uri}", rt.base);
    let form = FormParams::parse(&body);
    if !rt.checked(&url, &form, &headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Ok(call) = VoiceWebhook::from_params(form) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let machine = call.answered_by.is_some_and(AnsweredBy::is_machine);
    rt.seen(|s| s.webhooks.push((url, call)));
    let twiml = if machine {
        Twiml::new().say(VOICEMAIL).hangup().to_xml()
    } else {
        let ws = format!("{}/media", rt.base.replacen("http://", "ws://", 1));
        let stream = Stream::new(ws)
            .expect("a stream URL")
            .parameter("flow", "reminder");
        Twiml::new().connect_stream(stream).to_xml()
    };
    ([("content-type", "text/xml")], twiml).into_response()
}

async fn status(
    State(rt): State<Arc<Runtime>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let url = format!("{}{uri}", rt.base);
    let form = FormParams::parse(&body);
    if !rt.checked(&url, &form, &headers) {
        return StatusCode::FORBIDDEN;
    }
    match StatusCallback::from_params(form) {
        Ok(cb) => {
            rt.seen(|s| s.callbacks.push((url, cb)));
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn media_upgrade(State(rt): State<Arc<Runtime>>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let url = format!("{}/media", rt.base.replacen("http://", "ws://", 1));
    let header = headers.get(signature::HEADER).and_then(|h| h.to_str().ok());
    if signature::validate_websocket(&rt.token, &url, header).is_err() {
        rt.seen(|s| s.bad_signatures += 1);
        return StatusCode::FORBIDDEN.into_response();
    }
    ws.on_upgrade(move |socket| session(socket, rt))
}

/// Bot audio, all at once: the simulated phone plays it instantly and hears quiet after it.
async fn say(socket: &mut WebSocket, stream_sid: &str, frames: usize, mark: &str) {
    for _ in 0..frames {
        let frame = media::outbound_media(stream_sid, &[0x10; 160]);
        let _ = socket.send(Message::Text(frame.into())).await;
    }
    let _ = socket
        .send(Message::Text(media::outbound_mark(stream_sid, mark).into()))
        .await;
}

async fn session(mut socket: WebSocket, rt: Arc<Runtime>) {
    let mut stream_sid = String::new();
    let mut call_sid = String::new();
    let mut answered_speech = false;
    while let Some(Ok(msg)) = socket.recv().await {
        let Message::Text(text) = msg else { continue };
        let Ok(message) = media::parse_inbound(text.as_str()) else {
            continue;
        };
        match message {
            Inbound::Connected { .. } => {}
            Inbound::Start { start, .. } => {
                stream_sid = start.stream_sid.clone();
                call_sid = start.call_sid.clone();
                rt.seen(|s| s.starts.push(start));
                say(&mut socket, &stream_sid, 25, "greeting").await;
            }
            Inbound::Media { media, .. } => {
                if media.payload.iter().any(|&b| b != 0xFF) {
                    let n = rt.seen(|s| {
                        s.caller_speech_frames += 1;
                        s.caller_speech_frames
                    });
                    if n >= 10 && !answered_speech {
                        answered_speech = true;
                        say(&mut socket, &stream_sid, 10, "answer").await;
                    }
                }
            }
            Inbound::Dtmf { dtmf, .. } => {
                rt.seen(|s| s.digits.push_str(&dtmf.digit));
                say(&mut socket, &stream_sid, 10, "digits").await;
            }
            Inbound::Mark { mark, .. } => {
                let first = rt.seen(|s| {
                    s.marks_back.push(mark.name);
                    s.marks_back.len() == 1
                });
                let update = match rt.mode {
                    Mode::Talk => None,
                    Mode::HangUp => Some(CallUpdate::Hangup),
                    Mode::Transfer => Some(CallUpdate::Twiml(
                        Twiml::new().dial(Dial::number("+15555550199")).to_xml(),
                    )),
                };
                if let (true, Some(update)) = (first, update) {
                    let (rest, sid) = (rt.rest.clone(), call_sid.clone());
                    tokio::spawn(async move { rest.update_call(&sid, &update).await });
                }
            }
            Inbound::Stop { .. } => {
                rt.seen(|s| s.stops += 1);
                break;
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// A runtime on a free port, placing calls through a REST client pointed at `provider_url`.
async fn runtime(mode: Mode, provider_url: &str, token: &str) -> Arc<Runtime> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let rt = Arc::new(Runtime {
        base,
        token: AuthToken::new(TOKEN),
        mode,
        rest: client(provider_url, token, Duration::from_secs(5)),
        seen: Mutex::new(Seen::default()),
    });
    let app = axum::Router::new()
        .route("/twilio/voice", post(voice))
        .route("/twilio/status", post(status))
        .route("/media", get(media_upgrade))
        .with_state(rt.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    rt
}

fn client(base: &str, token: &str, timeout: Duration) -> RestClient {
    let config = RestConfig {
        base_url: base.to_owned(),
        timeout,
        retry: RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        },
        ..RestConfig::new(SID, AuthToken::new(token))
    };
    RestClient::new(config).expect("a valid client")
}

/// The simulator on a free port, in fast mode, with `numbers` (TOML); every `say` turn is 0.4 s of
/// tone, which is all the test runtime listens for.
async fn simulator(numbers: &str) -> (Provider, String) {
    let file: NumbersFile = toml::from_str(numbers).expect("a valid numbers file");
    let tone: Vec<u8> = [0xFF, 0xA9, 0xA0, 0xA9, 0xFF, 0x29, 0x20, 0x29].repeat(400);
    let speech: HashMap<String, Vec<u8>> = file
        .texts()
        .into_iter()
        .map(|t| (t.to_owned(), tone.clone()))
        .collect();
    let plan = file.resolve(Path::new("."), &speech).expect("resolves");
    let config = ProviderConfig {
        fast: true,
        ..ProviderConfig::new(SID, AuthToken::new(TOKEN), plan)
    };
    let provider = Provider::new(config).expect("starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let serving = provider.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    (provider, url)
}

/// The runtime's request for a campaign call, as the dialer builds it.
fn order(rt: &Runtime, to: &str, machine_detection: bool) -> CreateCall {
    CreateCall {
        status_callback: Some(format!("{}/twilio/status?attempt=a-{to}", rt.base)),
        status_callback_events: StatusCallbackEvent::ALL.to_vec(),
        timeout: Some(25),
        machine_detection: machine_detection.then_some(MachineDetection {
            mode: AmdMode::DetectMessageEnd,
            async_callback: None,
        }),
        ..CreateCall::new(
            to,
            "+15555550100",
            CallInstructions::Url(format!("{}/twilio/voice?attempt=a-{to}", rt.base)),
        )
    }
}

/// The call's record once it has ended (its final callback sent).
async fn ended(provider: &Provider, sid: &str) -> CallRecord {
    for _ in 0..300 {
        if let Some(call) = provider
            .record()
            .calls
            .into_iter()
            .find(|c| c.sid == sid && c.ended_by.is_some())
        {
            return call;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call {sid} did not end: {:#?}", provider.record());
}

fn callbacks_of(rt: &Runtime, sid: &str) -> Vec<StatusCallback> {
    rt.seen(|s| {
        s.callbacks
            .iter()
            .filter(|(_, cb)| cb.call_sid == sid)
            .map(|(_, cb)| cb.clone())
            .collect()
    })
}

fn statuses(callbacks: &[StatusCallback]) -> Vec<(Option<u32>, CallStatus)> {
    callbacks
        .iter()
        .map(|cb| (cb.sequence_number, cb.call_status))
        .collect()
}

#[tokio::test]
async fn a_person_answers_and_takes_turns_on_the_signed_stream() {
    let (provider, url) = simulator(
        r#"[numbers."+15555550101"]
           turns = [{ say = "Yes, Tuesday works." }, { dtmf = "1" }]"#,
    )
    .await;
    let rt = runtime(Mode::Talk, &url, TOKEN).await;
    let before = jiff::Timestamp::now().as_second();
    let created = rt
        .rest
        .create_call(&order(&rt, "+15555550101", true))
        .await
        .expect("placed");
    assert!(
        created.sid.starts_with("CA") && created.sid.len() == 34,
        "{}",
        created.sid
    );
    assert_eq!(created.status, CallStatus::Queued);
    assert_eq!(created.direction.as_deref(), Some("outbound-api"));
    assert_eq!(created.to.as_deref(), Some("+15555550101"));
    let at = created.created_unix_seconds().expect("an RFC 2822 date_created");
    assert!((before - 1..=before + 5).contains(&at), "{at} vs {before}");

    let call = ended(&provider, &created.sid).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.answered_by, Some(AnsweredBy::Human));
    assert_eq!(call.ended_by, Some(EndedBy::Caller), "{call:#?}");
    assert!(!call.hangup_requested);
    let stream = call.stream.as_ref().expect("a stream");
    assert_eq!((stream.turns, stream.turns_planned), (2, 2), "{stream:?}");
    assert_eq!(stream.digits, "1");
    assert_eq!(stream.end, StreamEnd::CallerHungUp);
    assert_eq!(
        stream.parameters.get("flow").map(String::as_str),
        Some("reminder")
    );
    assert!(stream.bot_frames >= 45, "{stream:?}");

    rt.seen(|s| {
        assert_eq!(s.bad_signatures, 0, "every request is signed");
        let [(url, hook)] = s.webhooks.as_slice() else {
            panic!("one webhook: {:?}", s.webhooks)
        };
        assert_eq!(url, &format!("{}/twilio/voice?attempt=a-+15555550101", rt.base));
        assert_eq!(hook.call_sid, created.sid);
        assert_eq!(hook.account_sid, SID);
        assert_eq!(hook.call_status, CallStatus::InProgress);
        assert_eq!(hook.direction.to_string(), "outbound-api");
        assert_eq!(hook.answered_by, Some(AnsweredBy::Human));
        assert_eq!(
            (hook.from.as_str(), hook.to.as_str()),
            ("+15555550100", "+15555550101")
        );
        let [start] = s.starts.as_slice() else {
            panic!("one stream")
        };
        assert_eq!(
            (start.call_sid.as_str(), start.account_sid.as_str()),
            (created.sid.as_str(), SID)
        );
        assert_eq!(start.media_format.sample_rate, 8000);
        assert!(
            s.caller_speech_frames >= 19,
            "0.4 s of speech, got {}",
            s.caller_speech_frames
        );
        assert_eq!(s.digits, "1");
        assert_eq!(
            s.marks_back,
            ["greeting", "answer", "digits"],
            "marks come back in order"
        );
        assert_eq!(s.stops, 1);
    });
    let callbacks = callbacks_of(&rt, &created.sid);
    assert_eq!(
        statuses(&callbacks),
        [
            (Some(0), CallStatus::Initiated),
            (Some(1), CallStatus::Ringing),
            (Some(2), CallStatus::InProgress),
            (Some(3), CallStatus::Completed)
        ]
    );
    let last = callbacks.last().expect("completed");
    assert!(last.call_duration.is_some_and(|d| d >= 1), "{last:?}");
    assert_eq!(last.answered_by, Some(AnsweredBy::Human));
    assert!(
        last.timestamp
            .as_deref()
            .and_then(|t| jiff::fmt::rfc2822::parse(t).ok())
            .is_some()
    );
    assert_eq!(call.callbacks.len(), 4);
    assert!(
        call.callbacks.iter().all(|c| c.http_status == Some(204)),
        "{:?}",
        call.callbacks
    );

    // The record over HTTP is the same record.
    let text = reqwest::get(format!("{url}/sim/calls"))
        .await
        .expect("GET /sim/calls")
        .text()
        .await
        .expect("a body");
    let json: Record = serde_json::from_str(&text).expect("a record");
    assert_eq!(json.calls.len(), 1);
    assert_eq!(json.calls[0].sid, created.sid);
    assert_eq!(json.requests.len(), 1);
    assert_eq!(json.requests[0].call_sid.as_deref(), Some(created.sid.as_str()));
    assert_eq!(
        json.requests[0].machine_detection.as_deref(),
        Some("DetectMessageEnd")
    );
}

#[tokio::test]
async fn the_runtime_hangs_up_over_rest_and_the_stream_stops() {
    let (provider, url) = simulator("").await;
    let rt = runtime(Mode::HangUp, &url, TOKEN).await;
    let created = rt
        .rest
        .create_call(&order(&rt, "+15555550102", false))
        .await
        .expect("placed");
    let call = ended(&provider, &created.sid).await;
    assert_eq!(call.ended_by, Some(EndedBy::Runtime), "{call:#?}");
    assert!(call.hangup_requested);
    assert_eq!(call.updates, ["Status=completed"]);
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.answered_by, None, "no detection was asked");
    assert_eq!(call.stream.as_ref().map(|s| s.end), Some(StreamEnd::Stopped));
    rt.seen(|s| {
        assert_eq!(s.stops, 1, "the stream got `stop`");
        assert!(s.webhooks.iter().all(|(_, w)| w.answered_by.is_none()));
    });
    let callbacks = callbacks_of(&rt, &created.sid);
    assert_eq!(
        callbacks.last().map(|c| c.call_status),
        Some(CallStatus::Completed)
    );
    assert!(callbacks.iter().all(|c| c.answered_by.is_none()));
    let fetched = rt.rest.fetch_call(&created.sid).await.expect("fetched");
    assert_eq!(fetched.status, CallStatus::Completed);
}

#[tokio::test]
async fn a_transfer_over_rest_is_recorded_and_ends_the_stream() {
    let (provider, url) = simulator("").await;
    let rt = runtime(Mode::Transfer, &url, TOKEN).await;
    let created = rt
        .rest
        .create_call(&order(&rt, "+15555550103", false))
        .await
        .expect("placed");
    let call = ended(&provider, &created.sid).await;
    assert_eq!(call.ended_by, Some(EndedBy::Transfer), "{call:#?}");
    assert_eq!(call.transfers, ["+15555550199"]);
    assert!(call.updates[0].starts_with("Twiml=<?xml"), "{:?}", call.updates);
    assert!(!call.hangup_requested);
    assert_eq!(call.stream.as_ref().map(|s| s.end), Some(StreamEnd::Stopped));
}

#[tokio::test]
async fn busy_and_no_answer_end_with_their_status_and_no_webhook() {
    let (provider, url) = simulator(
        r#"[numbers."+15555550104"]
           answer = "busy"
           [numbers."+15555550105"]
           answer = "no_answer"
           [numbers."+15555550106"]
           answer = "failed""#,
    )
    .await;
    let rt = runtime(Mode::Talk, &url, TOKEN).await;
    let mut sids = Vec::new();
    for to in ["+15555550104", "+15555550105", "+15555550106"] {
        let created = rt.rest.create_call(&order(&rt, to, true)).await.expect("placed");
        sids.push(created.sid);
    }
    let expected = [
        vec![(Some(0), CallStatus::Initiated), (Some(1), CallStatus::Busy)],
        vec![
            (Some(0), CallStatus::Initiated),
            (Some(1), CallStatus::Ringing),
            (Some(2), CallStatus::NoAnswer),
        ],
        vec![(Some(0), CallStatus::Initiated), (Some(1), CallStatus::Failed)],
    ];
    for (sid, expected) in sids.iter().zip(expected) {
        let call = ended(&provider, sid).await;
        assert_eq!(call.ended_by, Some(EndedBy::NotAnswered));
        assert_eq!(call.duration_seconds, 0);
        let callbacks = callbacks_of(&rt, sid);
        assert_eq!(statuses(&callbacks), expected);
        let last = callbacks.last().expect("a final callback");
        assert_eq!(last.call_duration, Some(0));
        assert_eq!(
            rt.rest.fetch_call(sid).await.expect("fetched").status,
            last.call_status
        );
    }
    rt.seen(|s| {
        assert!(s.webhooks.is_empty(), "nobody answered: {:?}", s.webhooks);
        assert_eq!(s.bad_signatures, 0);
    });
    let busy = callbacks_of(&rt, &sids[0]);
    assert_eq!(busy[1].sip_response_code, Some(486));
}

#[tokio::test]
async fn a_machine_gets_the_says_and_they_are_the_voicemail() {
    let (provider, url) = simulator(
        r#"[numbers."+15555550107"]
           answer = "voicemail"
           greeting_seconds = 0.2"#,
    )
    .await;
    let rt = runtime(Mode::Talk, &url, TOKEN).await;
    let created = rt
        .rest
        .create_call(&order(&rt, "+15555550107", true))
        .await
        .expect("placed");
    let call = ended(&provider, &created.sid).await;
    assert_eq!(call.answered_by, Some(AnsweredBy::MachineEndBeep));
    assert_eq!(call.voicemail.as_deref(), Some(VOICEMAIL));
    assert_eq!(call.said, [VOICEMAIL]);
    assert_eq!(call.ended_by, Some(EndedBy::Runtime), "<Hangup/>");
    assert!(call.stream.is_none());
    rt.seen(|s| {
        assert_eq!(s.webhooks.len(), 1);
        assert_eq!(s.webhooks[0].1.answered_by, Some(AnsweredBy::MachineEndBeep));
    });
    let callbacks = callbacks_of(&rt, &created.sid);
    assert_eq!(
        callbacks.last().and_then(|c| c.answered_by),
        Some(AnsweredBy::MachineEndBeep)
    );
}

#[tokio::test]
async fn the_call_list_filters_by_number_and_day_newest_first() {
    let (_provider, url) = simulator("[default]\nanswer = \"busy\"").await;
    let rt = runtime(Mode::Talk, &url, TOKEN).await;
    let since = jiff::Timestamp::now().as_second() - 60;
    let mut to_a = Vec::new();
    for to in ["+15555550108", "+15555550109", "+15555550108"] {
        let created = rt.rest.create_call(&order(&rt, to, false)).await.expect("placed");
        if to == "+15555550108" {
            to_a.push(created.sid);
        }
    }
    let found: Vec<String> = rt
        .rest
        .find_calls("+15555550108", since)
        .await
        .expect("listed")
        .into_iter()
        .map(|c| c.sid)
        .collect();
    to_a.reverse();
    assert_eq!(found, to_a, "that number's calls, newest first");
    assert_eq!(
        rt.rest
            .find_calls("+15555550109", since)
            .await
            .expect("listed")
            .len(),
        1
    );
    assert!(
        rt.rest
            .find_calls("+15555550110", since)
            .await
            .expect("listed")
            .is_empty()
    );
    let later = since + 3 * 86_400;
    assert!(
        rt.rest
            .find_calls("+15555550108", later)
            .await
            .expect("listed")
            .is_empty(),
        "StartTime>= a later day"
    );

    let text = reqwest::Client::new()
        .get(format!("{url}/2010-04-01/Accounts/{SID}/Calls.json?PageSize=2"))
        .basic_auth(SID, Some(TOKEN))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("a body");
    let page: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(page["calls"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["page_size"], 2);
    assert!(page["next_page_uri"].is_string(), "{page}");
}

#[tokio::test]
async fn wrong_credentials_get_401_and_nothing_is_placed() {
    let (provider, url) = simulator("").await;
    let rt = runtime(Mode::Talk, &url, "not-the-token").await;
    let err = rt
        .rest
        .create_call(&order(&rt, "+15555550111", false))
        .await
        .expect_err("refused");
    assert!(
        matches!(
            err,
            RestError::Rejected {
                status: 401,
                code: Some(20003),
                ..
            }
        ),
        "{err:?}"
    );
    let anonymous = reqwest::Client::new()
        .post(format!("{url}/2010-04-01/Accounts/{SID}/Calls.json"))
        .body("To=%2B15555550111")
        .send()
        .await
        .expect("answered");
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    assert_eq!(provider.record(), Record::default());
}

#[tokio::test]
async fn a_create_without_to_or_url_is_a_400_with_the_providers_error() {
    let (provider, url) = simulator("").await;
    let rt = runtime(Mode::Talk, &url, TOKEN).await;
    let err = rt
        .rest
        .create_call(&order(&rt, "", false))
        .await
        .expect_err("no To");
    assert!(
        matches!(&err, RestError::Rejected { status: 400, code: Some(21201), message } if message.contains("'To'")),
        "{err:?}"
    );
    let mut no_url = order(&rt, "+15555550112", false);
    no_url.instructions = CallInstructions::Url(String::new());
    let err = rt.rest.create_call(&no_url).await.expect_err("no Url");
    assert!(
        matches!(
            err,
            RestError::Rejected {
                status: 400,
                code: Some(21205),
                ..
            }
        ),
        "{err:?}"
    );
    let err = rt
        .rest
        .create_call(&order(&rt, "5551234", false))
        .await
        .expect_err("not E.164");
    assert!(
        matches!(
            err,
            RestError::Rejected {
                status: 400,
                code: Some(21211),
                ..
            }
        ),
        "{err:?}"
    );
    let record = provider.record();
    assert!(record.calls.is_empty());
    let codes: Vec<(u16, Option<u32>)> = record
        .requests
        .iter()
        .map(|r| (r.http_status, r.error_code))
        .collect();
    assert_eq!(
        codes,
        [(400, Some(21201)), (400, Some(21205)), (400, Some(21211))]
    );
}

#[tokio::test]
async fn error_after_create_answers_500_but_the_call_goes_on() {
    let (provider, url) = simulator(
        r#"[numbers."+15555550113"]
           answer = "busy"
           fault = "error_after_create""#,
    )
    .await;
    let rt = runtime(Mode::Talk, &url, TOKEN).await;
    let since = jiff::Timestamp::now().as_second() - 1;
    let err = rt
        .rest
        .create_call(&order(&rt, "+15555550113", false))
        .await
        .expect_err("500");
    assert!(
        matches!(&err, RestError::Unavailable { attempts: 1, last } if last.contains("500")),
        "{err:?}"
    );
    let found = rt.rest.find_calls("+15555550113", since).await.expect("listed");
    assert_eq!(found.len(), 1, "the call was placed all the same");
    let call = ended(&provider, &found[0].sid).await;
    assert_eq!(call.status, CallStatus::Busy);
    assert_eq!(
        statuses(&callbacks_of(&rt, &call.sid)).len(),
        2,
        "its callbacks came"
    );
    let request = &provider.record().requests[0];
    assert_eq!(
        (request.http_status, request.call_sid.as_deref()),
        (500, Some(call.sid.as_str()))
    );
}

#[tokio::test]
async fn reject_places_nothing_and_slow_create_times_out_after_placing() {
    let (provider, url) = simulator(
        r#"[numbers."+15555550114"]
           fault = "reject"
           [numbers."+15555550115"]
           answer = "busy"
           fault = "slow_create"
           delay_seconds = 2"#,
    )
    .await;
    let rt = runtime(Mode::Talk, &url, TOKEN).await;
    let since = jiff::Timestamp::now().as_second() - 1;
    let err = rt
        .rest
        .create_call(&order(&rt, "+15555550114", false))
        .await
        .expect_err("rejected");
    assert!(
        matches!(
            err,
            RestError::Rejected {
                status: 400,
                code: Some(21215),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        rt.rest
            .find_calls("+15555550114", since)
            .await
            .expect("listed")
            .is_empty()
    );

    let impatient = client(&url, TOKEN, Duration::from_millis(700));
    let err = impatient
        .create_call(&order(&rt, "+15555550115", false))
        .await
        .expect_err("too slow");
    assert_eq!(err, RestError::Timeout);
    let found = rt.rest.find_calls("+15555550115", since).await.expect("listed");
    assert_eq!(found.len(), 1, "placed before the answer was late");
    assert_eq!(ended(&provider, &found[0].sid).await.status, CallStatus::Busy);
}

#[tokio::test]
async fn attempts_answer_in_turn_and_the_last_repeats() {
    let (provider, url) = simulator(
        r#"[numbers."+15555550116"]
           attempts = [{ answer = "busy" }, { answer = "no_answer" }]"#,
    )
    .await;
    let rt = runtime(Mode::Talk, &url, TOKEN).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let created = rt
            .rest
            .create_call(&order(&rt, "+15555550116", false))
            .await
            .expect("placed");
        let call = ended(&provider, &created.sid).await;
        got.push((call.nth, call.status));
    }
    assert_eq!(
        got,
        [
            (1, CallStatus::Busy),
            (2, CallStatus::NoAnswer),
            (3, CallStatus::NoAnswer)
        ]
    );
}
