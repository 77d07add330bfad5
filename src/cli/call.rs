//! `switchboard call`: a simulated phone call. It plays the provider's part against a running server
//! (or one started in-process): the signed voice webhook, the signed WebSocket upgrade, `connected` /
//! `start`, the caller's recording as 20 ms mu-law frames in real time, marks acknowledged, keypad
//! digits, and `stop`. Then it prints both sides of the conversation with per-turn latencies.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_call::{CallReport, Speaker};
use switchboard_simulator::caller::wav_to_mulaw;
use switchboard_simulator::{Caller, Simulation, Turn, simulate};
use switchboard_telephony::AuthToken;

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
        .map(|p| {
            let audio = wav_to_mulaw(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Turn::Speak(audio.into()))
        })
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
                super::serve::warm_up(&state).await?;
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
            flow: args.flow.clone(),
            from: args.from.clone(),
            to: args.to.clone(),
            caller: Caller {
                dtmf: args.dtmf.clone(),
                fast: args.fast,
                max: Duration::from_secs_f64(args.max_seconds),
                interrupt_after: args.interrupt_after.map(Duration::from_secs_f64),
                keep_audio: args.record.is_some(),
                ..Caller::new(turns)
            },
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
            // The process ends with this call: its log must be written first (`calls list`).
            let _ = tokio::time::timeout(switchboard_server::LOG_DRAIN, state.log_settled()).await;
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
