//! Simulated phone calls through the real server over loopback HTTP and WebSocket, with the real
//! models: what a caller hears, barge-in, the keypad, and what the server refuses.

mod common;

use std::path::Path;

use common::{Server, sample, spoken, switchboard, text};

use futures_util::{SinkExt, StreamExt};
use switchboard_telephony::{AuthToken, signature};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DEV_TOKEN: &str = "switchboard-dev-token";

#[test]
fn an_inbound_call_asking_for_the_hours_gets_them_from_the_flow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recording = dir.path().join("call.wav");
    let out = switchboard(&[
        "call",
        "--audio",
        &sample(),
        "--record",
        recording.to_str().expect("utf-8"),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let caller = stdout
        .lines()
        .find(|l| l.contains("caller:"))
        .unwrap_or_else(|| panic!("no caller line:\n{stdout}"));
    assert!(caller.to_lowercase().contains("opening hours"), "{caller}");
    assert!(
        stdout.contains("Saturday from 8 AM to 4 PM"),
        "the flow's hours: {stdout}"
    );
    assert!(stdout.contains("(voice-to-voice)"), "{stdout}");
    assert!(stdout.contains(r#""topic":"hours""#), "{stdout}");

    // Both sides recorded: caller left, bot right, each with sound in it.
    let reader = hound::WavReader::open(&recording).expect("the recording is a WAV");
    assert_eq!((reader.spec().channels, reader.spec().sample_rate), (2, 8000));
    let samples: Vec<i16> = reader.into_samples().map(|s| s.expect("sample")).collect();
    let energy = |channel: usize| {
        samples
            .iter()
            .skip(channel)
            .step_by(2)
            .map(|&s| i64::from(s).abs())
            .sum::<i64>()
    };
    assert!(energy(0) > 0 && energy(1) > 0, "caller and bot both audible");
}

/// Seconds from `line`'s pattern `prefix … s`.
fn seconds_after(stdout: &str, prefix: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line:\n{stdout}"));
    line[prefix.len()..]
        .trim()
        .trim_end_matches(" s")
        .split('–')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"))
}

/// Where speech starts in the sample: the first 20 ms with an RMS above 0.02.
fn speech_onset(path: &str) -> f64 {
    let samples = switchboard_audio::wav::read_wav_16k(Path::new(path)).expect("sample reads");
    let frame = 320;
    let first = samples
        .chunks(frame)
        .position(|c| (c.iter().map(|x| x * x).sum::<f32>() / c.len() as f32).sqrt() > 0.02)
        .expect("the sample has speech");
    (first * frame) as f64 / 16_000.0
}

#[test]
fn caller_speech_over_the_bot_clears_its_audio_within_300_ms() {
    let out = switchboard(&["call", "--audio", &sample(), "--interrupt-after", "2"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let played = seconds_after(&stdout, "caller audio 1 played");
    let clear = seconds_after(&stdout, "clear at");
    let speech = played + speech_onset(&sample());
    let delay = clear - speech;
    assert!(
        (0.0..=0.3).contains(&delay),
        "clear {delay:.3} s after the caller started speaking:\n{stdout}"
    );
    assert!(
        stdout.contains("[interrupted]"),
        "the greeting is marked interrupted: {stdout}"
    );
    assert!(
        stdout.contains("Saturday from 8 AM"),
        "the question is still answered: {stdout}"
    );
}

#[test]
fn a_keypad_press_during_the_greeting_picks_the_menu_option() {
    let out = switchboard(&["call", "--dtmf", "1@1.5s"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Dtmf { digit: '1' }"), "{stdout}");
    assert!(stdout.contains("Saturday from 8 AM"), "1 is the hours: {stdout}");
}

fn voice_form() -> Vec<(String, String)> {
    [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+15555550100"),
        ("To", "+15555550199"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_and_streams_without_a_valid_signature_are_refused() {
    let server = Server::start();
    let client = reqwest::Client::new();
    let url = format!("{}/twilio/voice", server.url);
    let form = voice_form();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let post = |sig: Option<String>| {
        let mut r = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        if let Some(s) = sig {
            r = r.header(signature::HEADER, s);
        }
        r.send()
    };
    assert_eq!(post(None).await.expect("request").status(), 403, "unsigned");
    let wrong = signature::sign(&AuthToken::new("not-the-token"), &url, &form);
    assert_eq!(
        post(Some(wrong)).await.expect("request").status(),
        403,
        "wrong token"
    );
    let good = signature::sign(&AuthToken::new(DEV_TOKEN), &url, &form);
    let ok = post(Some(good)).await.expect("request");
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.expect("twiml").contains("<Stream url=\"ws://"));

    // A tampered parameter breaks the signature too.
    let mut tampered = form.clone();
    tampered[5].1 = "+15555550000".into();
    let sig = signature::sign(&AuthToken::new(DEV_TOKEN), &url, &form);
    let body2 = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&tampered)
        .finish();
    let r = client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(signature::HEADER, sig)
        .body(body2)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403, "tampered");

    let ws = format!("{}/twilio/media", server.url.replace("http://", "ws://"));
    let unsigned = tokio_tungstenite::connect_async(ws.as_str()).await;
    assert!(unsigned.is_err(), "unsigned upgrade accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_frames_and_an_abrupt_disconnect_do_not_break_the_server() {
    let server = Server::start();
    let ws_url = format!("{}/twilio/media", server.url.replace("http://", "ws://"));
    let connect = || async {
        let mut request = ws_url.as_str().into_client_request().expect("request");
        let sig = signature::sign::<&str, &str>(&AuthToken::new(DEV_TOKEN), &ws_url, &[]);
        request
            .headers_mut()
            .insert(signature::HEADER, sig.parse().expect("header"));
        tokio_tungstenite::connect_async(request)
            .await
            .expect("signed upgrade")
            .0
    };
    let mut ws = connect().await;
    for garbage in [
        "not json",
        "{}",
        r#"{"event":"warp"}"#,
        r#"{"event":"media","media":{"payload":"%%%"}}"#,
        r#"{"event":"start","start":42}"#,
    ] {
        ws.send(Message::Text(garbage.into())).await.expect("send");
    }
    ws.send(Message::Binary(vec![0, 159, 146, 150].into()))
        .await
        .expect("send");
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
                  "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    ws.send(Message::Text(start.to_string().into()))
        .await
        .expect("send");
    ws.send(Message::Text(
        r#"{"event":"media","sequenceNumber":"2","media":{"payload":"@@"}}"#.into(),
    ))
    .await
    .expect("send");
    // The call started anyway: the greeting arrives.
    let mut got_media = false;
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg
            && t.contains(r#""event":"media""#)
        {
            got_media = true;
            break;
        }
    }
    assert!(got_media, "the call runs despite the garbage");
    drop(ws); // an abrupt disconnect

    // The server still serves calls.
    let out = tokio::task::spawn_blocking({
        let url = server.url.clone();
        move || switchboard(&["call", "--server", &url, "--audio", &sample()])
    })
    .await
    .expect("join");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("bot frames"), "{stdout}");
    let health = reqwest::get(format!("{}/health", server.url))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
}

#[test]
fn an_engine_crash_ends_that_call_with_an_apology_and_the_next_call_is_served() {
    // The first phrase synthesized in the process (the first call's greeting) panics the speech
    // synthesis thread, for real; the server must survive it.
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let server = Server::start_with_env(
        dir.clone(),
        None,
        &[("FAILPOINTS", "tts::synthesize=1*panic(injected synthesis fault)")],
    );
    // With an API key, `call` prints the call as the server's log has it.
    let key = server.api_key();
    let call = || {
        let out = switchboard(&[
            "call",
            "--server",
            &server.url,
            "--api-key",
            &key,
            "--audio",
            &sample(),
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        stdout
    };
    let first = call();
    assert!(
        first.contains(switchboard_call::ENGINE_FAILURE_APOLOGY),
        "the caller hears why the call ends: {first}"
    );
    assert!(first.contains("outcome failed"), "the outcome says so: {first}");
    // The apology follows the phrase that was playing, not the rest of the greeting.
    assert!(
        !first.contains("You can ask about our hours"),
        "the rest of the greeting was dropped: {first}"
    );
    assert!(!first.contains("Saturday from 8 AM"), "{first}");

    let second = call();
    assert!(
        second.contains("Saturday from 8 AM to 4 PM"),
        "the next call is answered as usual: {second}"
    );
    let log = std::fs::read_to_string(dir.join("serve.log")).expect("serve.log");
    assert!(log.contains("speech synthesis thread panicked"), "{log}");
}

#[test]
fn the_log_holds_no_number_or_word_of_a_call_unless_log_pii_is_set() {
    // What the caller said, what the bot answered, and the caller's number.
    let private = ["opening hours", "saturday from 8 am", "5555550123"];
    for log_pii in [false, true] {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let setting = if log_pii { "true" } else { "false" };
        let server = Server::start_with_env(dir.clone(), None, &[("SWITCHBOARD_LOG_PII", setting)]);
        // With an API key, `call` prints the call from the server's call log: the call worked.
        let key = server.api_key();
        let out = switchboard(&[
            "call",
            "--server",
            &server.url,
            "--api-key",
            &key,
            "--audio",
            &sample(),
            "--from",
            "+15555550123",
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("Saturday from 8 AM"), "{stdout}");
        // The server logs the end of a call after the caller has gone: wait for it.
        let log_path = dir.join("serve.log");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let log = loop {
            let log = std::fs::read_to_string(&log_path)
                .expect("serve.log")
                .to_lowercase();
            if log.contains("call ended") || std::time::Instant::now() > deadline {
                break log;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(
            log.contains("call started") && log.contains("call ended"),
            "{log}"
        );
        for words in private {
            assert_eq!(
                log.contains(words),
                log_pii,
                "`{words}` in the log with log_pii = {log_pii}:\n{log}"
            );
        }
    }
}

/// A question the menu and the FAQ do not cover goes to the free answer, which the language model
/// streams into the call: a real model reply, spoken, then the flow goes on.
#[test]
fn a_question_outside_the_menu_is_answered_by_the_model_in_the_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let question = spoken(dir.path(), "dog.wav", "Can I bring my dog inside?");
    let out = switchboard(&["call", "--audio", &question]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let asked = lines
        .iter()
        .position(|l| l.contains("caller:") && l.to_lowercase().contains("dog"))
        .unwrap_or_else(|| panic!("no caller line about the dog:\n{stdout}"));
    // The turn's timings name the model's first token, which only a model reply has.
    let timings = lines.get(asked + 1).copied().unwrap_or_default();
    let first_token = timings
        .split("first token ")
        .nth(1)
        .unwrap_or_else(|| panic!("no first-token timing: {timings}"));
    assert!(
        first_token.starts_with(|c: char| c.is_ascii_digit()),
        "the model answered: {timings}"
    );
    let reply = lines[asked + 1..]
        .iter()
        .find(|l| l.contains("bot   :"))
        .unwrap_or_else(|| panic!("no bot reply after the question:\n{stdout}"));
    let words = reply.split("bot   :").nth(1).unwrap_or_default().trim();
    assert!(words.split_whitespace().count() >= 3, "a spoken answer: {reply}");
    assert!(!words.contains("didn't catch"), "not a re-prompt: {reply}");
    // At most two sentences: a small model that starts repeating itself is cut off, not spoken on.
    let sentences = words
        .split_inclusive(['.', '!', '?'])
        .filter(|s| s.trim().ends_with(['.', '!', '?']))
        .count();
    assert!(sentences <= 2, "{sentences} sentences: {reply}");
    assert!(
        stdout.contains("anything else"),
        "the flow goes on after the answer: {stdout}"
    );
    assert!(stdout.contains(r#""topic":"other""#), "{stdout}");
}
