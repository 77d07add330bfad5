//! Soak test of the transport: N simultaneous media streams on loopback for a while, through the
//! real server (router, signature checks, WebSockets, call tasks, SQLite call log), with the
//! engines swapped for the instant fakes, since this measures the plumbing and not the models.
//!
//! Each simulated caller sends a 20 ms frame every 20 ms, numbered like the provider numbers them,
//! confirms the bot's marks, and starts a new call when the server ends one. At the end it reports
//! lost and reordered frames in both directions, the server's memory over time, and every warning
//! or error the server logged. It fails on a lost or reordered frame or a logged error; warnings
//! are listed but not held against it (sqlx warns of slow statements when the machine is busy),
//! and neither are late frames, which say the machine was short of CPU, not that a frame was lost.
//!
//! `cargo run --release -p switchboard-server --example soak -- [STREAMS] [SECONDS]`
//! (`scripts/soak.sh` runs it with the issue's 50 streams for 10 minutes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use switchboard_call::fakes::{FakeLlm, FakeStt, FakeTts};
use switchboard_call::{CallSettings, Engines};
use switchboard_flow::Flow;
use switchboard_server::{AppState, ServerConfig, app};
use switchboard_store::Store;
use switchboard_telephony::{AuthToken, signature};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "soak-token";

/// What the callers saw, summed over all of them.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    frames_sent: AtomicU64,
    bot_frames: AtomicU64,
    marks: AtomicU64,
    /// Marks that came back in a different order than the phrases were queued.
    marks_out_of_order: AtomicU64,
    /// Bot frames more than 100 ms after the previous one of the same phrase.
    late_frames: AtomicU64,
    client_errors: AtomicU64,
}

/// Counts the server's log lines at WARN and above, by message, so the report can show them.
#[derive(Default)]
struct Complaints(std::sync::Mutex<BTreeMap<String, u64>>);

struct CountLayer(Arc<Complaints>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        if let Ok(mut counts) = self.0.0.lock() {
            *counts
                .entry(format!("{} {}", event.metadata().level(), m.0))
                .or_default() += 1;
        }
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One metric's value from the Prometheus text at `/metrics`.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// One simulated caller: calls again and again until `until`.
async fn caller(url: String, id: usize, until: Instant, tally: Arc<Tally>) {
    let ws_url = format!("{}/twilio/media", url.replace("http://", "ws://"));
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let call_sid = format!("CA{id:08}{n:024}");
        if let Err(e) = one_call(&ws_url, &call_sid, until, &tally).await {
            eprintln!("caller {id}: {e}");
            tally.client_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn one_call(ws_url: &str, call_sid: &str, until: Instant, tally: &Tally) -> Result<(), String> {
    let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
    let sig = signature::sign::<&str, &str>(&AuthToken::new(TOKEN), ws_url, &[]);
    request
        .headers_mut()
        .insert(signature::HEADER, sig.parse().map_err(|_| "header")?);
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let mut seq = 1u64;
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": seq.to_string(), "streamSid": "MZsoak",
        "start": {"streamSid": "MZsoak", "accountSid": "ACsoak", "callSid": call_sid, "tracks": ["inbound"],
                  "customParameters": {"from": "+15555550100", "to": "+15555550199"},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    sink.send(Message::Text(start.to_string().into()))
        .await
        .map_err(|e| format!("start: {e}"))?;
    tally.calls.fetch_add(1, Ordering::Relaxed);
    // Quiet line noise, the same every frame: the caller never speaks, so the flow re-prompts and
    // then says goodbye, and the next call starts.
    let payload = base64_silence();
    let mut frames = tokio::time::interval(Duration::from_millis(20));
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut last_mark = 0u64;
    let mut last_bot_frame: Option<Instant> = None;
    let mut chunk = 0u64;
    loop {
        tokio::select! {
            _ = frames.tick() => {
                if Instant::now() >= until {
                    seq += 1;
                    let stop = serde_json::json!({"event": "stop", "sequenceNumber": seq.to_string(),
                        "streamSid": "MZsoak", "stop": {"accountSid": "ACsoak", "callSid": call_sid}});
                    let _ = sink.send(Message::Text(stop.to_string().into())).await;
                    // Read until the server closes, so its last frames are counted.
                    while let Some(Ok(m)) = stream.next().await {
                        if let Message::Text(t) = m && t.contains("\"event\":\"media\"") {
                            tally.bot_frames.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    return Ok(());
                }
                seq += 1;
                chunk += 1;
                let media = format!(
                    r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"MZsoak","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{}","payload":"{payload}"}}}}"#,
                    chunk * 20
                );
                if sink.send(Message::Text(media.into())).await.is_err() {
                    return Ok(()); // the server ended the call
                }
                tally.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { return Ok(()) };
                let Message::Text(text) = msg else {
                    if msg.is_close() { return Ok(()) }
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(text.as_str()).map_err(|e| format!("bad json from the server: {e}"))?;
                match v["event"].as_str() {
                    Some("media") => {
                        tally.bot_frames.fetch_add(1, Ordering::Relaxed);
                        let now = Instant::now();
                        if last_bot_frame.is_some_and(|t| now - t > Duration::from_millis(100)) {
                            tally.late_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        last_bot_frame = Some(now);
                    }
                    Some("mark") => {
                        tally.marks.fetch_add(1, Ordering::Relaxed);
                        // Phrase ids only grow: a smaller one means the phrases were reordered.
                        let name = v["mark"]["name"].as_str().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                        if name <= last_mark {
                            tally.marks_out_of_order.fetch_add(1, Ordering::Relaxed);
                        }
                        last_mark = name;
                        // A phrase boundary: the next frame may come after a pause.
                        last_bot_frame = None;
                        seq += 1;
                        let echo = serde_json::json!({"event": "mark", "sequenceNumber": seq.to_string(),
                            "streamSid": "MZsoak", "mark": v["mark"]});
                        if sink.send(Message::Text(echo.to_string().into())).await.is_err() {
                            return Ok(());
                        }
                    }
                    Some("clear") => last_bot_frame = None,
                    _ => {}
                }
            }
        }
    }
}

fn base64_silence() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([0xFFu8; 160])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use tracing_subscriber::layer::SubscriberExt;
    let mut args = std::env::args().skip(1);
    let streams: usize = args.next().map_or(Ok(50), |s| s.parse())?;
    let seconds: u64 = args.next().map_or(Ok(600), |s| s.parse())?;

    let complaints = Arc::new(Complaints::default());
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(CountLayer(complaints.clone())),
    )?;

    let dir = tempfile::tempdir()?;
    let store = Store::open_sqlite(&dir.path().join("calls.db")).await?;
    let flows_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts/flows");
    let flow = Flow::load(format!("{flows_dir}/inbound_support.yaml")).map_err(|e| e.to_string())?;
    let name = flow.name().to_string();
    let config = ServerConfig {
        public_url: None,
        auth_token: AuthToken::new(TOKEN),
        account_sid: None,
        rest_base_url: None,
        flows: BTreeMap::from([(name.clone(), Arc::new(flow))]),
        numbers: BTreeMap::new(),
        default_flow: name,
        call: CallSettings::default(),
        recordings_dir: Some(dir.path().join("recordings")),
        max_calls: streams,
        start_timeout: Duration::from_secs(10),
        media_idle_timeout: Duration::from_secs(10),
        http_read_timeout: Duration::from_secs(10),
        log_pii: false,
        runtime: "test".to_string(),
    };
    std::fs::create_dir_all(dir.path().join("recordings"))?;
    let engines = Engines {
        stt: Arc::new(FakeStt::new("")),
        llm: Arc::new(FakeLlm),
        tts: Arc::new(FakeTts),
    };
    let state = Arc::new(AppState::new(config, engines, store)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(axum::serve(listener, app(state.clone())).into_future());

    println!("soak: {streams} media streams for {seconds} s against {url}");
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tally = Arc::new(Tally::default());
    let mut callers = tokio::task::JoinSet::new();
    for id in 0..streams {
        callers.spawn(caller(url.clone(), id, until, tally.clone()));
        // Spread the starts over a second, like calls arriving.
        tokio::time::sleep(Duration::from_millis(1000 / streams.max(1) as u64)).await;
    }
    let mut memory = vec![(0u64, rss_mib())];
    let mut sample = tokio::time::interval(Duration::from_secs(10));
    sample.tick().await;
    loop {
        tokio::select! {
            _ = sample.tick() => {
                let at = started.elapsed().as_secs();
                memory.push((at, rss_mib()));
                if at % 60 < 10 {
                    println!("  {at:>4} s: {} calls, {} frames sent, RSS {:.1} MiB",
                        tally.calls.load(Ordering::Relaxed), tally.frames_sent.load(Ordering::Relaxed), rss_mib());
                }
            }
            done = callers.join_next() => if done.is_none() { break },
        }
    }
    // Calls end and their logs are written.
    let deadline = Instant::now() + Duration::from_secs(30);
    while state.active_calls() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    memory.push((started.elapsed().as_secs(), rss_mib()));

    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let received = metric(&metrics, "switchboard_media_frames_received_total");
    let sent = metric(&metrics, "switchboard_media_frames_sent_total");
    let gaps = metric(&metrics, "switchboard_media_sequence_gaps_total");
    let out_of_order = metric(&metrics, "switchboard_media_out_of_order_total");
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let frames_sent = t(&tally.frames_sent);
    let bot_frames = t(&tally.bot_frames);
    // Memory: after the first minute (buffers, pools and the first calls' allocations settle) to
    // the end.
    let warm = memory
        .iter()
        .find(|(at, _)| *at >= 60)
        .or(memory.last())
        .map_or(0.0, |m| m.1);
    let end = memory.last().map_or(0.0, |m| m.1);
    let peak = memory.iter().map(|m| m.1).fold(0.0, f64::max);
    let complaints = complaints.0.lock().map(|c| c.clone()).unwrap_or_default();
    let count = |level: &str| -> u64 {
        complaints
            .iter()
            .filter(|(k, _)| k.starts_with(level))
            .map(|(_, n)| n)
            .sum()
    };
    let (warnings, errors) = (count("WARN"), count("ERROR"));

    println!();
    println!("| soak: {streams} streams, {seconds} s | value |");
    println!("|---|---|");
    println!("| calls placed | {} |", t(&tally.calls));
    println!("| caller frames sent / received by the server | {frames_sent} / {received} |");
    println!("| caller frames lost (sequence gaps seen by the server) | {gaps} |");
    println!("| caller frames out of order | {out_of_order} |");
    println!(
        "| unread when the server ended a call (in flight at hang-up) | {} |",
        frames_sent.saturating_sub(received)
    );
    println!("| bot frames sent by the server / received | {sent} / {bot_frames} |");
    println!("| bot frames lost | {} |", sent.saturating_sub(bot_frames));
    println!(
        "| bot phrases (marks) out of order | {} of {} |",
        t(&tally.marks_out_of_order),
        t(&tally.marks)
    );
    println!(
        "| bot frames > 100 ms after the previous one within a phrase | {} |",
        t(&tally.late_frames)
    );
    println!("| RSS after 1 min / end / peak | {warm:.1} / {end:.1} / {peak:.1} MiB |");
    println!("| RSS growth after the first minute | {:+.1} MiB |", end - warm);
    println!("| server errors / warnings | {errors} / {warnings} |");
    println!("| client errors | {} |", t(&tally.client_errors));
    for (message, count) in &complaints {
        println!("  {count} × {message}");
    }
    let memory_line: Vec<String> = memory.iter().map(|(at, m)| format!("{at}s:{m:.0}")).collect();
    println!("memory (MiB) over time: {}", memory_line.join(" "));

    let clean = gaps == 0
        && out_of_order == 0
        && sent == bot_frames
        && t(&tally.marks_out_of_order) == 0
        && errors == 0
        && t(&tally.client_errors) == 0;
    if !clean {
        return Err("the soak found lost or reordered frames or errors (see above)".into());
    }
    Ok(())
}
