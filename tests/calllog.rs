//! The call log end to end, with the real server and models: a simulated call appears in the API
//! and the `calls` commands with its transcript, outcome and recording; a server killed mid-call
//! (SIGKILL) keeps the turns so far and, restarted, marks the call interrupted.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, sample, spoken, switchboard, text};
use serde_json::Value;

async fn api(server: &Server, key: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A simulated call from `audio` against `server`. With a key, the simulator waits for the server to
/// finish the call in its log, then prints it.
async fn place_call(server: &Server, key: &str, audio: String) -> std::process::Output {
    let (url, key) = (server.url.clone(), key.to_string());
    tokio::task::spawn_blocking(move || {
        switchboard(&["call", "--server", &url, "--audio", &audio, "--api-key", &key])
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulated_call_is_in_the_api_and_the_cli_with_transcript_outcome_and_recording() {
    let server = Server::start();
    let key = server.api_key();
    let out = place_call(&server, &key, sample()).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let printed_caller = stdout.lines().find(|l| l.contains("caller:")).unwrap_or("");
    assert!(
        printed_caller.to_lowercase().contains("opening hours"),
        "{stdout}"
    );
    assert!(
        stdout.contains("answered in") && stdout.contains("outcome resolved"),
        "{stdout}"
    );

    let (status, list) = api(&server, &key, "/api/calls").await;
    assert_eq!(status, 200, "{list}");
    let calls = list["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1, "{list}");
    let id = calls[0]["id"].as_str().expect("id").to_string();
    assert_eq!(calls[0]["status"], "completed");
    assert_eq!(calls[0]["outcome"], "resolved", "{list}");
    assert_eq!(calls[0]["has_recording"], true);

    let (_, call) = api(&server, &key, &format!("/api/calls/{id}")).await;
    let turns = call["turns"].as_array().expect("turns");
    let caller = turns
        .iter()
        .find(|t| t["speaker"] == "caller")
        .unwrap_or_else(|| panic!("a caller turn: {call}"));
    assert!(
        caller["text"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("opening hours"),
        "{caller}"
    );
    // The stages in their order, and voice-to-voice as their span (how long they take is the
    // benchmark's business, not this test's).
    let t = &caller["timings"];
    let ms = |k: &str| t[k].as_i64().unwrap_or_else(|| panic!("{k} in {caller}"));
    assert!(ms("speech_end_ms") < ms("turn_end_ms"), "{caller}");
    assert!(ms("turn_end_ms") <= ms("transcript_ready_ms"), "{caller}");
    assert!(ms("transcript_ready_ms") <= ms("first_audio_ms"), "{caller}");
    // A turn starts when it is heard: the caller's first word (the question lasts ~4 s), each bot line
    // at its first audio, so turns follow one another in time.
    assert!(
        caller["at_ms"].as_i64().expect("at") + 2000 < ms("speech_end_ms"),
        "{caller}"
    );
    let starts: Vec<i64> = turns.iter().filter_map(|t| t["at_ms"].as_i64()).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    // ... and ends when its last word is heard: every turn of a finished call has an end.
    assert_eq!(caller["end_ms"].as_i64(), Some(ms("speech_end_ms")), "{caller}");
    for t in turns {
        let (at, end) = (t["at_ms"].as_i64(), t["end_ms"].as_i64());
        assert!(matches!((at, end), (Some(a), Some(e)) if a < e), "{t}");
    }
    // (each is rounded to the millisecond on its own)
    let span = ms("first_audio_ms") - ms("speech_end_ms");
    assert!((ms("voice_to_voice_ms") - span).abs() <= 1, "{caller}");
    assert!(
        turns
            .iter()
            .any(|t| t["speaker"] == "bot" && t["text"].as_str().unwrap_or("").contains("Saturday from 8 AM")),
        "{call}"
    );
    let r = reqwest::Client::new()
        .get(format!("{}/api/calls/{id}/recording", server.url))
        .bearer_auth(&key)
        .send()
        .await
        .expect("recording");
    assert_eq!(r.status(), 200);
    let wav = r.bytes().await.expect("wav");
    let reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).expect("a WAV");
    assert_eq!((reader.spec().channels, reader.spec().sample_rate), (2, 8000));
    assert!(
        reader.duration() > 8000 * 5,
        "the whole call: {} frames",
        reader.duration()
    );

    // The same call from the command line, straight from the store.
    let dir = server.data_dir.to_str().expect("utf-8").to_string();
    let out = switchboard(&["calls", "list", "--data-dir", &dir]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&id) && stdout.contains("resolved"), "{stdout}");
    let out = switchboard(&["calls", "show", &id, "--data-dir", &dir]);
    let (stdout, _) = text(&out);
    assert!(stdout.to_lowercase().contains("opening hours"), "{stdout}");
    assert!(stdout.contains("answered in"), "{stdout}");
    let out = switchboard(&["calls", "export", "--format", "csv", "--data-dir", &dir]);
    let (stdout, _) = text(&out);
    let mut rows = csv::Reader::from_reader(stdout.as_bytes());
    let records: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("csv row")).collect();
    assert_eq!(records.len(), 1, "{stdout}");
    assert_eq!(&records[0][0], id.as_str());
    assert!(
        records[0][14].to_lowercase().contains("opening hours"),
        "{stdout}"
    );
    let out = switchboard(&["calls", "export", "--format", "json", "--data-dir", &dir]);
    let exported: Value = serde_json::from_slice(&out.stdout).expect("JSON export");
    assert_eq!(exported[0]["id"], id.as_str());
    assert_eq!(exported[0]["turns"], call["turns"]);
}

/// Words the menu cannot place are in the no-match report, over the API and on the command line, with
/// their step and call: the phrases a business adds to its flow.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_caller_said_that_the_flow_could_not_place_is_reported() {
    let server = Server::start();
    let key = server.api_key();
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = spoken(dir.path(), "elephants.wav", "I like purple elephants.");
    let out = place_call(&server, &key, wav).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("didn't catch"), "the menu re-prompts: {stdout}");

    let (status, body) = api(&server, &key, "/api/no-matches?flow=inbound_support").await;
    assert_eq!(status, 200, "{body}");
    let groups = body["no_matches"].as_array().expect("no_matches");
    assert_eq!(groups.len(), 1, "{body}");
    let g = &groups[0];
    assert_eq!(
        (g["flow"].as_str(), g["step"].as_str(), g["count"].as_i64()),
        (Some("inbound_support"), Some("menu"), Some(1)),
        "{body}"
    );
    assert!(
        g["heard"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("elephants"),
        "{body}"
    );
    let (_, calls) = api(&server, &key, "/api/calls").await;
    assert_eq!(g["call_id"], calls["calls"][0]["id"], "{calls}");
    // Another flow has none; a bad limit is a clear error.
    let (_, other) = api(&server, &key, "/api/no-matches?flow=outbound_survey").await;
    assert_eq!(other["no_matches"], serde_json::json!([]), "{other}");
    let (status, bad) = api(&server, &key, "/api/no-matches?limit=0").await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (400, Some("bad_request")),
        "{bad}"
    );

    let data_dir = server.data_dir.to_str().expect("utf-8").to_string();
    let out = switchboard(&[
        "calls",
        "no-matches",
        "--flow",
        "inbound_support",
        "--data-dir",
        &data_dir,
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.to_lowercase().contains("elephants"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        row.trim_start().starts_with("1 ") && row.contains("menu"),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_call_keeps_the_turns_and_marks_the_call_interrupted_on_restart() {
    let mut server = Server::start();
    let key = server.api_key();
    // The caller asks, then stays on the line (silence) while the bot answers.
    let mut caller = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["call", "--server", &server.url, "--audio", &sample()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the simulator starts");

    // Wait until the caller's question is in the log, then kill the server like a crash would.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        assert!(
            Instant::now() < deadline,
            "the caller's turn never reached the log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, list) = api(&server, &key, "/api/calls").await;
        let Some(id) = list["calls"][0]["id"].as_str().map(str::to_string) else {
            continue;
        };
        let (_, call) = api(&server, &key, &format!("/api/calls/{id}")).await;
        let has_question = call["turns"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["speaker"] == "caller"));
        if has_question {
            assert_eq!(call["status"], "in_progress");
            break id;
        }
    };
    server.kill();
    let _ = caller.kill();
    let _ = caller.wait();

    let server = Server::start_in(server.data_dir.clone());
    let (status, call) = api(&server, &key, &format!("/api/calls/{id}")).await;
    assert_eq!(status, 200, "{call}");
    assert_eq!(call["status"], "interrupted", "{call}");
    assert_eq!(call["hangup_reason"], "interrupted");
    assert!(call["ended_at"].as_i64().is_some() && call["duration_ms"].as_i64().is_some());
    let turns = call["turns"].as_array().expect("turns");
    assert_eq!(turns[0]["speaker"], "bot", "the greeting survived: {call}");
    let question = turns
        .iter()
        .find(|t| t["speaker"] == "caller")
        .unwrap_or_else(|| panic!("the caller's turn survived: {call}"));
    assert!(
        question["text"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("hours"),
        "{question}"
    );
    let (_, list) = api(&server, &key, "/api/calls?status=interrupted").await;
    assert_eq!(list["calls"].as_array().map(Vec::len), Some(1), "{list}");
}
