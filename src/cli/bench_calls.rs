//! `switchboard bench calls`: simulated calls through the real server on loopback, with the real
//! models; prints voice-to-voice latency percentiles and where the time goes.

use std::time::Duration;

use anyhow::Context;
use switchboard_stt::testset::{Voice, synthesize};
use switchboard_telephony::AuthToken;

use switchboard_simulator::{Caller, Simulation, Turn, simulate};

use super::call::wait_for_report;
use super::serve::{DEV_AUTH_TOKEN, ServeArgs, Settings, build_state};

#[derive(Debug, clap::Args)]
pub struct BenchCallsArgs {
    /// Calls to place.
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// Calls in progress at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
}

/// What callers ask; each gets a scripted answer from the inbound flow.
const QUESTIONS: [&str; 4] = [
    "Hi, what time do you open on Saturday?",
    "Where is the bakery located?",
    "Do you deliver cakes?",
    "Is there parking near the shop?",
];

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(args: BenchCallsArgs) -> anyhow::Result<()> {
    let mut encoder_input = Vec::new();
    for q in QUESTIONS {
        let audio = synthesize(q, Voice::Flite("slt")).context("synthesizing a caller")?;
        let mut enc = switchboard_audio::MulawEncoder8k::new(16_000).context("resampler")?;
        let mut frames = enc.push(&audio);
        frames.extend(enc.finish());
        encoder_input.push(frames.concat());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut settings = Settings::load(&ServeArgs {
            config: None,
            port: Some(0),
            data_dir: Some(std::env::temp_dir().join("switchboard-bench")),
        })?;
        settings.max_calls = settings.max_calls.max(args.concurrency);
        settings.record_calls = false;
        let store = settings.open_store().await?;
        let state = tokio::task::block_in_place(|| build_state(&settings, store))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = switchboard_server::app(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut stages: [Vec<f64>; 4] = Default::default(); // v2v, eot, stt after eot, answer
        let mut failed = 0;
        let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..args.calls {
            let permit = semaphore.clone().acquire_owned().await?;
            let sim = Simulation {
                base_url: base_url.clone(),
                token: AuthToken::new(DEV_AUTH_TOKEN),
                flow: None,
                from: format!("+1555555{:04}", i),
                to: "+15555550199".into(),
                caller: Caller {
                    max: Duration::from_secs(60),
                    ..Caller::new(vec![Turn::Speak(
                        encoder_input[i % encoder_input.len()].clone().into(),
                    )])
                },
            };
            let state = state.clone();
            tasks.spawn(async move {
                let _permit = permit;
                let sim = simulate(&sim).await?;
                wait_for_report(&state, &sim.call_sid).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            let report = match done? {
                Ok(r) => r,
                Err(e) => {
                    failed += 1;
                    eprintln!("call failed: {e:#}");
                    continue;
                }
            };
            for t in report.turns.iter().filter_map(|t| t.timings.as_ref()) {
                let (Some(v2v), Some(ready), Some(audio)) =
                    (t.voice_to_voice(), t.transcript_ready, t.first_audio)
                else {
                    continue;
                };
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                stages[0].push(ms(v2v));
                stages[1].push(ms(t.turn_end.saturating_sub(t.speech_end)));
                stages[2].push(ms(ready.saturating_sub(t.turn_end)));
                stages[3].push(ms(audio.saturating_sub(ready)));
            }
        }
        for s in &mut stages {
            s.sort_by(f64::total_cmp);
        }
        println!(
            "{} calls ({} at once), {} answered turns, {failed} failed",
            args.calls,
            args.concurrency,
            stages[0].len()
        );
        println!("| stage | p50 | p95 |");
        println!("|---|---|---|");
        let names = [
            "voice-to-voice (caller speech end → first bot audio)",
            "end-of-turn silence (speech end → turn end)",
            "speech-to-text after turn end",
            "flow + speech synthesis → first frame",
        ];
        for (name, s) in names.iter().zip(&stages) {
            println!(
                "| {name} | {:.0} ms | {:.0} ms |",
                percentile(s, 0.5),
                percentile(s, 0.95)
            );
        }
        anyhow::ensure!(failed == 0, "{failed} calls failed");
        Ok(())
    })
}
