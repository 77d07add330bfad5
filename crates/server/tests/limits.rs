//! Input limits on the media stream: a stream that goes quiet, one that floods, and more
//! connections than the runtime has lines for. Fake engines, real WebSockets on loopback.

mod common;

use std::time::{Duration, Instant};

use common::{ACCOUNT, CALL, Setup, connect_media, server, stream_call};
use futures_util::{SinkExt, StreamExt};
use switchboard_call::EndReason;
use switchboard_telephony::{AuthToken, signature};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FLOW: &str = r#"
name: support
direction: inbound
persona: A test line.
slots:
  topic: { type: one_of, options: { hours: [hours], other: [] } }
start: menu
steps:
  menu:
    ask: topic
    prompt: Welcome. Press 1 for our hours.
    dtmf: { "1": hours }
    routes: { hours: bye, other: bye }
    on_fail: bye
  bye:
    end: { outcome: resolved, say: Goodbye. }
"#;

fn setup() -> Setup {
    Setup {
        flow: FLOW,
        rest: None,
        record: false,
    }
}

fn start_message(call_sid: &str) -> Message {
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "accountSid": ACCOUNT, "callSid": call_sid, "tracks": ["inbound"],
                  "customParameters": {},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    Message::Text(start.to_string().into())
}

/// Reads (and ignores) what the server sends until it closes the stream; the time that took.
async fn until_closed(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the server closed the stream");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_that_goes_quiet_ends_its_call_after_the_idle_timeout() {
    let (url, state) = server(setup()).await;
    let mut ws = connect_media(&url).await;
    ws.send(start_message(CALL)).await.expect("start");
    // Nothing more is sent, not even the marks: a dead connection that was never closed.
    let took = until_closed(&mut ws, Duration::from_secs(20)).await;
    // The test server's idle timeout is 3 s.
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(8),
        "closed after {took:?}"
    );
    let (_, report) = state.finished_calls().pop().expect("the call ended");
    assert_eq!(report.ended_by, Some(EndReason::Disconnected), "{report:?}");
    assert_eq!(report.outcome.map(|o| o.as_str()), Some("abandoned"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_flooding_messages_is_closed_and_the_next_call_works() {
    let (url, state) = server(setup()).await;
    let mut ws = connect_media(&url).await;
    ws.send(start_message(CALL)).await.expect("start");
    let frame = serde_json::json!({"event": "media", "streamSid": "MZ1", "sequenceNumber": "2",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": "/////w=="}})
    .to_string();
    // Far more than a call sends (50 a second): the server stops reading and closes.
    let flood = async {
        for _ in 0..20_000 {
            if ws.send(Message::Text(frame.clone().into())).await.is_err() {
                break;
            }
        }
    };
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), flood)
        .await
        .expect("the flood ends");
    let _ = until_closed(&mut ws, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed long after the flood: {:?}",
        started.elapsed()
    );
    let (_, report) = state.finished_calls().pop().expect("the flooding call ended");
    assert_eq!(report.ended_by, Some(EndReason::Disconnected));

    stream_call(
        &url,
        "CA00000000000000000000000000000002",
        &[(Duration::from_secs(3), '1')],
    )
    .await;
    let (sid, report) = state.finished_calls().pop().expect("the next call ended");
    assert_eq!(sid, "CA00000000000000000000000000000002");
    assert_eq!(report.outcome.map(|o| o.as_str()), Some("resolved"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn more_connections_than_lines_are_refused_with_503_until_one_closes() {
    // The test server has 2 lines: 6 streams may be open (calls and handshakes waiting for
    // `start`), the 7th is refused.
    let (url, _state) = server(setup()).await;
    let mut open = Vec::new();
    for _ in 0..6 {
        open.push(connect_media(&url).await);
    }
    let ws_url = format!("{}/twilio/media", url.replace("http://", "ws://"));
    let attempt = || async {
        let mut request = ws_url.as_str().into_client_request().expect("request");
        let sig = signature::sign::<&str, &str>(&AuthToken::new(common::TOKEN), &ws_url, &[]);
        request
            .headers_mut()
            .insert(signature::HEADER, sig.parse().expect("header"));
        tokio_tungstenite::connect_async(request).await
    };
    match attempt().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    // One closes (its slot is given back when the server sees it go): room for another.
    let mut first = open.remove(0);
    first.close(None).await.expect("close");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match attempt().await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no room after a stream closed: {e}"),
        }
    }
}

/// Reads from `stream` until the server closes it; how long that took (`None`: still open after
/// `within`).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        // Whatever the server answers (a 408, say) is read past: only the close counts.
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_http_clients_are_disconnected_and_others_are_served() {
    use tokio::io::AsyncWriteExt;
    // The test server's read timeout is 2 s.
    let (url, _state) = server(setup()).await;
    let addr = url.trim_start_matches("http://").to_string();

    // Connects and sends nothing.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    // Trickles its headers a byte at a time, never finishing (slowloris).
    let mut slow = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        // Writing fails once the server has closed its end (the write after the close is reset).
        for _ in 0..40 {
            if slow.write_all(b"X").await.is_err() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        None
    });
    // Announces a body and sends only part of it.
    let mut short_body = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    short_body
        .write_all(b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nCallSid=")
        .await
        .expect("write");

    // Meanwhile the server answers everyone else.
    let health = reqwest::get(format!("{url}/health")).await.expect("health");
    assert_eq!(health.status(), 200);

    let took = closed_within(&mut idle, Duration::from_secs(8)).await;
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(1500)),
        "idle connection: {took:?}"
    );
    let took = closed_within(&mut short_body, Duration::from_secs(8)).await;
    assert!(took.is_some(), "a body that never arrives holds its connection");
    // Headers still trickling after 2 s are cut off, though bytes kept coming.
    let cut_after = trickle.await.expect("trickle task");
    assert!(
        cut_after.is_some_and(|t| t < Duration::from_secs(6)),
        "the slowloris connection was still open after 10 s of trickling: {cut_after:?}"
    );
}
