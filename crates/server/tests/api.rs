//! The call log through the server with fake engines: a call is written while it happens and served
//! by the API with its transcript, events and recording; keys, bad input, OpenAPI and metrics.

mod common;

use std::time::Duration;

use common::{CALL, Setup, server, stream_call};
use serde_json::Value;

/// Greeting, a key press for the hours, goodbye.
const FLOW: &str = r#"
name: test_line
direction: inbound
persona: A test line.
facts: { hours: nine to five }
slots:
  topic: { type: one_of, options: { hours: [hours, open], other: [] } }
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

fn setup() -> Setup {
    Setup {
        flow: FLOW,
        rest: None,
        record: true,
    }
}

async fn get(url: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("request")
}

async fn json(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_valid_key_the_api_answers_401_and_reveals_nothing() {
    let (url, state) = server(setup()).await;
    stream_call(&url, CALL, &[(Duration::from_millis(300), '1')]).await;
    state.log_settled().await;
    let id = state
        .store()
        .find_by_provider_id(CALL)
        .await
        .expect("store")
        .expect("logged")
        .id;
    let revoked = state.store().create_api_key("old").await.expect("key");
    assert!(
        state
            .store()
            .revoke_api_key(&revoked.key.id)
            .await
            .expect("revoke")
    );

    let targets = [
        format!("{url}/api/calls"),
        format!("{url}/api/calls?limit=0&direction=sideways"),
        format!("{url}/api/calls/{id}"),
        format!("{url}/api/calls/no-such-call"),
        format!("{url}/api/calls/{id}/recording"),
        format!("{url}/api/stats"),
    ];
    for target in &targets {
        for key in [None, Some("sb_wrong"), Some(revoked.secret.as_str())] {
            let r = get(target, key).await;
            assert_eq!(r.status(), 401, "{target} with {key:?}");
            assert_eq!(
                r.headers().get("www-authenticate").map(|h| h.to_str().ok()),
                Some(Some("Bearer"))
            );
            let body = json(r).await;
            assert_eq!(body["error"], "unauthorized", "{body}");
        }
    }
    // Not a bearer token at all.
    let r = reqwest::Client::new()
        .get(format!("{url}/api/calls"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    // Deleting needs a key too, and without one nothing is deleted.
    let r = reqwest::Client::new()
        .delete(format!("{url}/api/calls/{id}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    assert!(state.store().get_call(&id).await.expect("store").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_is_logged_while_it_happens_and_served_with_transcript_events_and_recording() {
    let (url, state) = server(setup()).await;
    let key = state.store().create_api_key("test").await.expect("key").secret;
    let call = tokio::spawn({
        let url = url.clone();
        async move { stream_call(&url, CALL, &[(Duration::from_millis(1500), '1')]).await }
    });
    // While the greeting plays, the call and its first line are already in the log.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let live = json(get(&format!("{url}/api/calls"), Some(&key)).await).await;
    let live_id = live["calls"][0]["id"]
        .as_str()
        .expect("call listed while live")
        .to_string();
    assert_eq!(live["calls"][0]["status"], "in_progress");
    let detail = json(get(&format!("{url}/api/calls/{live_id}"), Some(&key)).await).await;
    assert_eq!(detail["turns"][0]["speaker"], "bot", "{detail}");
    assert!(
        detail["turns"][0]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("Welcome"),
        "{detail}"
    );
    call.await.expect("call");
    state.log_settled().await;

    let list = json(get(&format!("{url}/api/calls"), Some(&key)).await).await;
    let calls = list["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 1, "{list}");
    let c = &calls[0];
    assert_eq!(c["id"], live_id.as_str());
    assert_eq!(c["provider_call_id"], CALL);
    assert_eq!(c["direction"], "inbound");
    assert_eq!(c["from"], "+15555550100");
    assert_eq!(c["to"], "+15555550199");
    assert_eq!(c["flow"], "test_line");
    assert_eq!(c["status"], "completed");
    assert_eq!(c["outcome"], "resolved");
    assert_eq!(c["hangup_reason"], "bot_hung_up");
    assert_eq!(c["has_recording"], true);
    assert!(c.get("recording_path").is_none(), "server paths are not served");
    assert!(c["duration_ms"].as_i64().expect("duration") > 1000);

    let detail = json(get(&format!("{url}/api/calls/{live_id}"), Some(&key)).await).await;
    let bot: Vec<&str> = detail["turns"]
        .as_array()
        .expect("turns")
        .iter()
        .filter(|t| t["speaker"] == "bot")
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert!(bot.iter().any(|t| t.contains("nine to five")), "{bot:?}");
    assert!(bot.iter().any(|t| t.contains("Goodbye")), "{bot:?}");
    let events = detail["events"].as_array().expect("events");
    assert!(
        events.iter().any(|e| e["kind"] == "dtmf" && e["detail"] == "1"),
        "{events:?}"
    );
    assert_eq!(detail["slots"]["topic"], "hours", "{detail}");

    // The recording, whole and in part.
    let r = get(&format!("{url}/api/calls/{live_id}/recording"), Some(&key)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    let wav = r.bytes().await.expect("wav");
    assert_eq!(&wav[..4], b"RIFF");
    assert!(
        wav.len() > 44 + 8000 * 2 * 2,
        "more than a second of stereo: {}",
        wav.len()
    );
    let r = reqwest::Client::new()
        .get(format!("{url}/api/calls/{live_id}/recording"))
        .bearer_auth(&key)
        .header("range", "bytes=0-43")
        .send()
        .await
        .expect("range request");
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().expect("header"),
        format!("bytes 0-43/{}", wav.len())
    );
    assert_eq!(r.bytes().await.expect("part").as_ref(), &wav[..44]);

    let stats = json(get(&format!("{url}/api/stats"), Some(&key)).await).await;
    assert_eq!(stats["total_calls"], 1, "{stats}");
    assert_eq!(stats["containment_rate"], 1.0, "{stats}");
    assert_eq!(stats["outcomes"][0]["outcome"], "resolved", "{stats}");

    // Deleting removes the call and its recording.
    let recording = std::fs::read_dir(state.config.recordings_dir.as_ref().expect("recordings dir"))
        .expect("dir")
        .count();
    assert_eq!(recording, 1);
    let r = reqwest::Client::new()
        .delete(format!("{url}/api/calls/{live_id}"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let r = get(&format!("{url}/api/calls/{live_id}"), Some(&key)).await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"], "not_found");
    let left = std::fs::read_dir(state.config.recordings_dir.as_ref().expect("dir"))
        .expect("dir")
        .count();
    assert_eq!(left, 0, "the recording file was deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_json_400_and_unknown_calls_a_404() {
    let (url, state) = server(setup()).await;
    let key = state.store().create_api_key("test").await.expect("key").secret;
    for query in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "direction=sideways",
        "status=happy",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
        "cursor=not-a-cursor",
    ] {
        let r = get(&format!("{url}/api/calls?{query}"), Some(&key)).await;
        assert_eq!(r.status(), 400, "{query}");
        let body = json(r).await;
        assert_eq!(body["error"], "bad_request", "{query}: {body}");
        assert!(!body["message"].as_str().unwrap_or("").is_empty());
    }
    let r = get(&format!("{url}/api/stats?since=soon"), Some(&key)).await;
    assert_eq!(r.status(), 400);
    for path in ["/api/calls/nope", "/api/calls/nope/recording"] {
        let r = get(&format!("{url}{path}"), Some(&key)).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(json(r).await["error"], "not_found");
    }
    // Filters that match nothing are not errors.
    let r = get(
        &format!("{url}/api/calls?outcome=opted_out&since=2026-01-01T00:00:00Z"),
        Some(&key),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["calls"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_description_covers_every_route_and_its_security() {
    let (url, _) = server(setup()).await;
    let doc = json(get(&format!("{url}/api/openapi.json"), None).await).await;
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for path in [
        "/api/calls",
        "/api/calls/{id}",
        "/api/calls/{id}/recording",
        "/api/stats",
        "/api/no-matches",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/api/calls/{id}"]["delete"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["CallDetail"].is_object());
    // The cursor's pattern is the store's own, so every string it allows is a cursor.
    let params = doc["paths"]["/api/calls"]["get"]["parameters"]
        .as_array()
        .expect("params");
    let cursor = params
        .iter()
        .find(|p| p["name"] == "cursor")
        .expect("cursor param");
    assert_eq!(cursor["schema"]["pattern"], switchboard_store::CURSOR_PATTERN);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_calls_by_outcome_and_time_the_turns() {
    let (url, _) = server(setup()).await;
    stream_call(&url, CALL, &[(Duration::from_millis(300), '1')]).await;
    let text = get(&format!("{url}/metrics"), None)
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        text.contains(r#"switchboard_calls_total{outcome="resolved"} 1"#),
        "{text}"
    );
    assert!(text.contains("switchboard_calls_active 0"), "{text}");
    assert!(
        text.contains("switchboard_turn_voice_to_voice_seconds_bucket"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}
