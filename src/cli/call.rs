//! `switchboard call`: a simulated phone call. It plays the provider's part against a running server
//! (or one started in-process): the signed voice webhook, the signed WebSocket upgrade, `connected` /
//! `start`, the caller's recording as 20 ms mu-law frames in real time, marks acknowledged, keypad
//! digits, and `stop`. Then it prints both sides of the conversation with per-turn latencies.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use switchboard_call::{CallReport, Speaker};
use switchboard_telephony::AuthToken;
use switchboard_telephony::signature;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::serve::{DEV_AUTH_TOKEN, ServeArgs, Settings, build_state};

#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The caller's audio: one WAV, or one WAV per turn (each played when the bot has finished
    /// speaking). Any WAV format is converted to 8 kHz mu-law. Without it the caller only listens
    /// (and presses `--dtmf` keys).
    #[arg(long, num_args = 1..)]
    pub audio: Vec<PathBuf>,
    /// Flow to run (default: the one the server picks for the called number).
    #[arg(long)]
    pub flow: Option<String>,
    /// A running server (`http://host:port`); without it, one is started in-process on a free port.
    #[arg(long)]
    pub server: Option<String>,
    /// Send the caller's audio as fast as possible instead of in real time.
    #[arg(long)]
    pub fast: bool,
    /// Keypad digits at a time from the start of the stream, e.g. `--dtmf 3@4.5s`.
    #[arg(long, value_parser = parse_dtmf)]
    pub dtmf: Vec<(Duration, char)>,
    /// The provider auth token that signs requests (default: $SWITCHBOARD_AUTH_TOKEN, else the
    /// server's development token).
    #[arg(long)]
    pub token: Option<String>,
    /// Write the call as a stereo WAV (caller left, bot right).
    #[arg(long)]
    pub record: Option<PathBuf>,
    #[arg(long, default_value = "+15555550100")]
    pub from: String,
    #[arg(long, default_value = "+15555550199")]
    pub to: String,
    /// Start each recording this many seconds after the bot starts talking, over its voice (to test
    /// barge-in), instead of waiting for it to finish.
    #[arg(long)]
    pub interrupt_after: Option<f64>,
    /// With `--server`: an API key (default: $SWITCHBOARD_API_KEY) to read the call back from the
    /// server's call log and print it (transcript, timings, outcome).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Hang up after this many seconds whatever happens.
    #[arg(long, default_value_t = 90.0)]
    pub max_seconds: f64,
}

fn parse_dtmf(s: &str) -> Result<(Duration, char), String> {
    let (digit, at) = s.split_once('@').ok_or("expected DIGIT@SECONDS, e.g. 3@4.5s")?;
    let mut chars = digit.chars();
    let (Some(d), None) = (chars.next(), chars.next()) else {
        return Err(format!("`{digit}` is not one key"));
    };
    if !(d.is_ascii_digit() || d == '*' || d == '#') {
        return Err(format!("`{d}` is not a keypad key"));
    }
    let secs: f64 = at
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{at}` is not a time in seconds"))?;
    if !(0.0..86_400.0).contains(&secs) {
        return Err(format!("`{at}` is out of range"));
    }
    Ok((Duration::from_secs_f64(secs), d))
}

/// What the simulated call did, seen from the provider's side.
#[derive(Debug, Default)]
pub struct Simulated {
    pub call_sid: String,
    /// Bot audio frames received.
    pub frames: usize,
    pub marks: usize,
    /// When `clear` messages arrived, from the start of the stream.
    pub clears: Vec<Duration>,
    /// When each caller recording started and ended playing, from the start of the stream.
    pub played: Vec<(Duration, Duration)>,
    pub duration: Duration,
    pub caller_track: Vec<i16>,
    pub bot_track: Vec<i16>,
}

/// Everything the provider's side needs to place one simulated call.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub base_url: String,
    pub token: AuthToken,
    /// Caller audio per turn, 8 kHz mu-law.
    pub turns: Vec<Vec<u8>>,
    pub flow: Option<String>,
    pub fast: bool,
    pub dtmf: Vec<(Duration, char)>,
    pub from: String,
    pub to: String,
    pub max: Duration,
    /// Bot silence that means it has finished speaking.
    pub quiet: Duration,
    /// Play each recording this long after the bot started talking, over it.
    pub interrupt_after: Option<Duration>,
}

fn sid(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}{:032x}", nanos ^ (u128::from(std::process::id()) << 64))
}

/// The `<Stream url>` and its `<Parameter>`s from the voice webhook's TwiML.
fn stream_of(twiml: &str) -> anyhow::Result<(String, Vec<(String, String)>)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(twiml);
    let mut url = None;
    let mut params = Vec::new();
    loop {
        match reader.read_event().context("reading the TwiML")? {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &[u8]| -> anyhow::Result<Option<String>> {
                    for a in e.attributes() {
                        let a = a.context("TwiML attribute")?;
                        if a.key.as_ref() == name {
                            return Ok(Some(a.unescape_value().context("TwiML attribute")?.into_owned()));
                        }
                    }
                    Ok(None)
                };
                match e.name().as_ref() {
                    b"Stream" => url = attr(b"url")?,
                    b"Parameter" => {
                        if let (Some(n), Some(v)) = (attr(b"name")?, attr(b"value")?) {
                            params.push((n, v));
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let url = url.with_context(|| format!("the server did not connect a media stream:\n{twiml}"))?;
    Ok((url, params))
}

/// Places one call against `sim.base_url` and plays it out.
pub async fn simulate(sim: &Simulation) -> anyhow::Result<Simulated> {
    let call_sid = sid("CA");
    let account_sid = sid("AC");
    let voice_url = format!("{}/twilio/voice", sim.base_url.trim_end_matches('/'));
    let form = vec![
        ("AccountSid".to_string(), account_sid.clone()),
        ("ApiVersion".to_string(), "2010-04-01".to_string()),
        ("CallSid".to_string(), call_sid.clone()),
        ("CallStatus".to_string(), "ringing".to_string()),
        ("Direction".to_string(), "inbound".to_string()),
        ("From".to_string(), sim.from.clone()),
        ("To".to_string(), sim.to.clone()),
    ];
    let signed = signature::sign(&sim.token, &voice_url, &form);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let response = reqwest::Client::new()
        .post(&voice_url)
        .header(signature::HEADER, signed)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {voice_url}"))?;
    let status = response.status();
    let twiml = response
        .text()
        .await
        .context("reading the voice webhook's answer")?;
    anyhow::ensure!(status.is_success(), "voice webhook answered {status}: {twiml}");
    let (stream_url, mut params) = stream_of(&twiml)?;
    if let Some(flow) = &sim.flow {
        params.retain(|(k, _)| k != "flow");
        params.push(("flow".into(), flow.clone()));
    }

    let mut request = stream_url
        .as_str()
        .into_client_request()
        .context("media stream URL")?;
    let ws_signature = signature::sign::<&str, &str>(&sim.token, &stream_url, &[]);
    request.headers_mut().insert(
        signature::HEADER,
        ws_signature.parse().context("signature header")?,
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("connecting {stream_url}"))?;
    let (mut sink, mut stream) = ws.split();
    let stream_sid = sid("MZ");
    let json = |v: serde_json::Value| Message::Text(v.to_string().into());
    sink.send(json(
        serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    ))
    .await?;
    let custom: serde_json::Map<String, serde_json::Value> = params
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    sink.send(json(serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {
            "streamSid": stream_sid, "accountSid": account_sid, "callSid": call_sid,
            "tracks": ["inbound"], "customParameters": custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    })))
    .await?;

    let mut out = Simulated {
        call_sid: call_sid.clone(),
        ..Simulated::default()
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seq = 2u64;
    let mut chunk = 0u64;
    let mut turn = 0usize;
    let mut playing: Option<(usize, Duration)> = None; // (offset in the turn's audio, start)
    let mut last_bot_frame: Option<Instant> = None;
    let mut bot_spoke_since_turn = false;
    let mut bot_started: Option<Instant> = None;
    let mut dtmf: Vec<(Duration, char)> = sim.dtmf.clone();
    dtmf.sort_by_key(|(at, _)| *at);
    let mut dtmf = std::collections::VecDeque::from(dtmf);
    let mut stopped = false;
    let mut quiet_since_done: Option<Instant> = None;

    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else {
                    if matches!(msg, Message::Close(_)) { break }
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else { continue };
                match v.get("event").and_then(|e| e.as_str()) {
                    Some("media") => {
                        let payload = v["media"]["payload"].as_str().unwrap_or_default();
                        let bytes = switchboard_telephony::media::decode_payload(payload).unwrap_or_default();
                        out.frames += 1;
                        out.bot_track.resize(out.caller_track.len().max(out.bot_track.len()), 0);
                        out.bot_track.extend(switchboard_audio::g711::decode(&bytes));
                        last_bot_frame = Some(Instant::now());
                        bot_started.get_or_insert_with(Instant::now);
                        bot_spoke_since_turn = true;
                    }
                    Some("mark") => {
                        out.marks += 1;
                        // Played at once: the simulator's "phone" has no buffer of its own.
                        let name = v["mark"]["name"].as_str().unwrap_or_default();
                        let echo = serde_json::json!({
                            "event": "mark", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
                            "mark": {"name": name}
                        });
                        seq += 1;
                        sink.send(json(echo)).await?;
                    }
                    Some("clear") => out.clears.push(started.elapsed()),
                    _ => {}
                }
            }
            _ = tick.tick(), if !stopped => {
                let now = started.elapsed();
                if now >= sim.max {
                    stopped = true;
                }
                while let Some((at, digit)) = dtmf.front().copied() {
                    if at > now { break }
                    dtmf.pop_front();
                    sink.send(json(serde_json::json!({
                        "event": "dtmf", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
                        "dtmf": {"track": "inbound_track", "digit": digit.to_string()}
                    }))).await?;
                    seq += 1;
                }
                let bot_quiet = last_bot_frame.is_none_or(|t| t.elapsed() >= sim.quiet);
                // Start the next recording once the bot has said something and gone quiet (or, to
                // interrupt it, once it has talked for a while).
                let cue = match sim.interrupt_after {
                    Some(after) => bot_started.is_some_and(|t| t.elapsed() >= after),
                    None => bot_spoke_since_turn && bot_quiet,
                };
                if playing.is_none() && turn < sim.turns.len() && cue {
                    playing = Some((0, now));
                    bot_started = None;
                }
                let frames_now = if sim.fast && playing.is_some() { 50 } else { 1 };
                for _ in 0..frames_now {
                    let mut frame = [0xFFu8; 160];
                    if let Some((offset, since)) = &mut playing {
                        let audio = &sim.turns[turn];
                        let end = (*offset + 160).min(audio.len());
                        frame[..end - *offset].copy_from_slice(&audio[*offset..end]);
                        *offset = end;
                        if end >= audio.len() {
                            out.played.push((*since, started.elapsed()));
                            playing = None;
                            turn += 1;
                            bot_spoke_since_turn = false;
                        }
                    }
                    out.caller_track.extend(switchboard_audio::g711::decode(&frame));
                    sink.send(json(serde_json::json!({
                        "event": "media", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
                        "media": {
                            "track": "inbound", "chunk": chunk.to_string(),
                            "timestamp": (chunk * 20).to_string(),
                            "payload": BASE64.encode(frame),
                        }
                    }))).await?;
                    seq += 1;
                    chunk += 1;
                    if playing.is_none() { break }
                }
                // Every recording played and the bot answered the last one: the caller hangs up.
                if turn >= sim.turns.len() && playing.is_none() && bot_spoke_since_turn && bot_quiet {
                    let since = *quiet_since_done.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_secs(1) {
                        stopped = true;
                    }
                } else {
                    quiet_since_done = None;
                }
                if stopped {
                    sink.send(json(serde_json::json!({
                        "event": "stop", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
                        "stop": {"accountSid": account_sid, "callSid": call_sid}
                    }))).await?;
                }
            }
        }
    }
    out.duration = started.elapsed();
    Ok(out)
}

/// Caller audio from a WAV file as 8 kHz mu-law, the way the provider would send it.
pub fn wav_to_mulaw(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let samples =
        switchboard_audio::wav::read_wav_16k(path).with_context(|| format!("reading {}", path.display()))?;
    let mut encoder = switchboard_audio::MulawEncoder8k::new(16_000).context("resampler")?;
    let mut frames = encoder.push(&samples);
    frames.extend(encoder.finish());
    Ok(frames.concat())
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Prints the server's record of the call: both sides, with the latency of every answer.
pub fn print_report(report: &CallReport) {
    for t in &report.turns {
        let who = match t.speaker {
            Speaker::Caller => "caller",
            Speaker::Bot => "bot   ",
        };
        let cut = if t.interrupted { " [interrupted]" } else { "" };
        println!("{:>7.2}s {who}: {}{cut}", t.at.as_secs_f64(), t.text);
        if let Some(tm) = &t.timings {
            let part = |x: Option<Duration>| {
                x.map(|x| format!("{} ms", ms(x.saturating_sub(tm.speech_end))))
                    .unwrap_or("-".into())
            };
            println!(
                "           speech end → turn end {} ms, transcript {}, first token {}, first audio {} (voice-to-voice)",
                ms(tm.turn_end.saturating_sub(tm.speech_end)),
                part(tm.transcript_ready),
                part(tm.first_token),
                part(tm.first_audio),
            );
        }
    }
    for e in &report.events {
        println!("{:>7.2}s event: {:?}", e.at.as_secs_f64(), e.note);
    }
    println!(
        "outcome: {}, ended by: {:?}, slots: {}",
        report.outcome.map(|o| o.to_string()).unwrap_or("-".into()),
        report.ended_by,
        serde_json::to_string(&report.slots).unwrap_or_default()
    );
}

pub fn run(args: CallArgs) -> anyhow::Result<()> {
    let turns = args
        .audio
        .iter()
        .map(|p| wav_to_mulaw(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("SWITCHBOARD_AUTH_TOKEN").ok())
        .unwrap_or_else(|| DEV_AUTH_TOKEN.to_string());
    let token = AuthToken::new(token);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let (base_url, state) = match &args.server {
            Some(url) => (url.clone(), None),
            None => {
                let settings = Settings::load(&ServeArgs {
                    config: None,
                    port: Some(0),
                    data_dir: None,
                })?;
                let store = settings.open_store().await?;
                let state = tokio::task::block_in_place(|| build_state(&settings, store))?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let app = switchboard_server::app(state.clone());
                tokio::spawn(async move { axum::serve(listener, app).await });
                (format!("http://{addr}"), Some(state))
            }
        };
        let sim = Simulation {
            base_url,
            token,
            turns,
            flow: args.flow.clone(),
            fast: args.fast,
            dtmf: args.dtmf.clone(),
            from: args.from.clone(),
            to: args.to.clone(),
            max: Duration::from_secs_f64(args.max_seconds),
            quiet: Duration::from_millis(800),
            interrupt_after: args.interrupt_after.map(Duration::from_secs_f64),
        };
        let result = simulate(&sim).await?;
        println!(
            "call {}: {:.1} s, {} bot frames, {} marks, {} clears",
            result.call_sid,
            result.duration.as_secs_f64(),
            result.frames,
            result.marks,
            result.clears.len()
        );
        for (i, (from, to)) in result.played.iter().enumerate() {
            println!(
                "caller audio {} played {:.2}–{:.2} s",
                i + 1,
                from.as_secs_f64(),
                to.as_secs_f64()
            );
        }
        for at in &result.clears {
            println!("clear at {:.2} s", at.as_secs_f64());
        }
        if let Some(path) = &args.record {
            let stereo = switchboard_audio::wav::interleave(&result.caller_track, &result.bot_track);
            switchboard_audio::wav::write_wav_i16(path, &stereo, 8000, 2)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("recording: {}", path.display());
        }
        let api_key = args
            .api_key
            .clone()
            .or_else(|| std::env::var("SWITCHBOARD_API_KEY").ok());
        if let Some(state) = state {
            let report = wait_for_report(&state, &result.call_sid).await?;
            print_report(&report);
        } else if let Some(key) = api_key {
            let call = logged_call(&sim.base_url, &key, &result.call_sid).await?;
            super::calls::print_call(&call);
        } else {
            println!("the server's call log has the call (`--api-key` prints it from there)");
        }
        Ok(())
    })
}

/// The server's call log entry for `call_sid` once the call has ended there, through the API.
async fn logged_call(
    base_url: &str,
    key: &str,
    call_sid: &str,
) -> anyhow::Result<switchboard_store::CallDetail> {
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("{}{path}", base_url.trim_end_matches('/')))
                .bearer_auth(key)
                .send()
                .await
                .context("asking the call log API")?;
            anyhow::ensure!(
                r.status().is_success(),
                "the call log API answered {} for {path}",
                r.status()
            );
            let body = r.bytes().await.context("reading the call log API's answer")?;
            Ok::<_, anyhow::Error>(body)
        }
    };
    // The server finishes writing the call just after the stream closes.
    for _ in 0..100 {
        let page: switchboard_store::CallPage =
            serde_json::from_slice(&get("/api/calls?limit=50".into()).await?).context("the call list")?;
        if let Some(summary) = page.calls.iter().find(|c| c.provider_call_id == call_sid)
            && summary.status != switchboard_store::CallStatus::InProgress
        {
            let detail = get(format!("/api/calls/{}", summary.id)).await?;
            return serde_json::from_slice(&detail).context("the call");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("call {call_sid} did not show up as ended in the server's call log")
}

/// The in-process server's report of `call_sid`, once the call task has finished.
pub async fn wait_for_report<S, L, T>(
    state: &Arc<switchboard_server::AppState<S, L, T>>,
    call_sid: &str,
) -> anyhow::Result<CallReport> {
    for _ in 0..200 {
        if let Some((_, r)) = state
            .finished_calls()
            .into_iter()
            .find(|(sid, _)| sid == call_sid)
        {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the server did not report call {call_sid}")
}
