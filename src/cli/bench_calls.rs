//! `switchboard bench calls`: simulated calls through the real server on loopback, with the real
//! models; prints voice-to-voice latency percentiles and where the time goes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_stt::testset::{Voice, synthesize};
use switchboard_telephony::AuthToken;

use switchboard_simulator::{Caller, Simulation, Turn, simulate};

use super::call::wait_for_report;
use super::serve::{RealState, ServeArgs, Settings, build_state};

#[derive(Debug, clap::Args)]
pub struct BenchCallsArgs {
    /// Calls to place.
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// Calls in progress at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// What the callers ask.
    #[arg(long, value_enum, default_value_t = Questions::Scripted)]
    pub questions: Questions,
}

/// Which questions the simulated callers ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Questions {
    /// Questions the inbound flow answers from its facts and FAQ (keywords): no language model on
    /// the turn's path.
    Scripted,
    /// Questions no keyword of the flow catches, so the language model classifies them (scoring the
    /// menu's labels) and, for an `other` answer, phrases a free reply from the facts.
    Model,
}

/// What callers ask; each gets a scripted answer from the inbound flow.
const QUESTIONS: [&str; 4] = [
    "Hi, what time do you open on Saturday?",
    "Where is the bakery located?",
    "Do you deliver cakes?",
    "Is there parking near the shop?",
];

/// What callers ask that only the language model can sort out (checked with `switchboard flows
/// test`: none of them matches a keyword of the inbound flow's menu or FAQ). Twelve, so that the
/// report's 12 calls never repeat one: the engine remembers recent label scorings, and a repeated
/// question would measure that memory instead of the model.
const MODEL_QUESTIONS: [&str; 12] = [
    "Can I bring my dog inside?",
    "Do you sell coffee too?",
    "Are your pastries made fresh every morning?",
    "Is the bakery a good place for a kid's party?",
    "Do you have vegan cookies?",
    "Is there a restroom I can use?",
    "What kind of bread do you bake?",
    "Can I bring my own container?",
    "Are you hiring right now?",
    "Do you sell gift certificates?",
    "Is your chocolate cake very sweet?",
    "Do you use nuts in your muffins?",
];

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The server with the default models, started in this process on a loopback port, and the callers'
/// questions, synthesized once.
pub struct BenchServer {
    pub state: Arc<RealState>,
    pub base_url: String,
    pub token: AuthToken,
    questions: Vec<Arc<[u8]>>,
    model_questions: Vec<Arc<[u8]>>,
}

impl std::fmt::Debug for BenchServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Per-stage times of every answered turn, in ms, sorted.
#[derive(Debug, Default)]
pub struct CallStages {
    pub voice_to_voice: Vec<f64>,
    pub end_of_turn: Vec<f64>,
    pub stt_after_turn_end: Vec<f64>,
    pub answer: Vec<f64>,
    pub failed: usize,
}

impl CallStages {
    pub const NAMES: [&str; 4] = [
        "voice-to-voice (caller speech end → first bot audio)",
        "end-of-turn silence (speech end → turn end)",
        "speech-to-text after turn end",
        "flow + speech synthesis → first frame",
    ];

    pub fn stages(&self) -> [&[f64]; 4] {
        [
            &self.voice_to_voice,
            &self.end_of_turn,
            &self.stt_after_turn_end,
            &self.answer,
        ]
    }
}

impl BenchServer {
    /// Must be called on a multi-threaded runtime: the models load on this thread.
    pub async fn start(max_calls: usize) -> anyhow::Result<Self> {
        let speak = |q: &str| -> anyhow::Result<Arc<[u8]>> {
            let audio = synthesize(q, Voice::Flite("slt")).context("synthesizing a caller")?;
            let mut enc = switchboard_audio::MulawEncoder8k::new(16_000).context("resampler")?;
            let mut frames = enc.push(&audio);
            frames.extend(enc.finish());
            Ok(frames.concat().into())
        };
        let questions = QUESTIONS
            .iter()
            .map(|q| speak(q))
            .collect::<anyhow::Result<_>>()?;
        let model_questions = MODEL_QUESTIONS
            .iter()
            .map(|q| speak(q))
            .collect::<anyhow::Result<_>>()?;
        let mut settings = Settings::load(&ServeArgs {
            config: None,
            port: Some(0),
            data_dir: Some(std::env::temp_dir().join("switchboard-bench")),
        })?;
        settings.max_calls = settings.max_calls.max(max_calls);
        settings.record_calls = false;
        let store = settings.open_store().await?;
        let state = tokio::task::block_in_place(|| build_state(&settings, store))?;
        super::serve::warm_up(&state).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = switchboard_server::app(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            state,
            base_url,
            token: settings.auth_token.clone(),
            questions,
            model_questions,
        })
    }

    /// Places `calls` simulated calls, `concurrency` at a time, each asking one question.
    pub async fn run_calls(
        &self,
        calls: usize,
        concurrency: usize,
        questions: Questions,
    ) -> anyhow::Result<CallStages> {
        let questions = match questions {
            Questions::Scripted => &self.questions,
            Questions::Model => &self.model_questions,
        };
        let mut out = CallStages::default();
        let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..calls {
            let permit = semaphore.clone().acquire_owned().await?;
            let sim = Simulation {
                base_url: self.base_url.clone(),
                token: self.token.clone(),
                flow: None,
                from: format!("+1555555{:04}", i),
                to: "+15555550199".into(),
                caller: Caller {
                    max: Duration::from_secs(60),
                    ..Caller::new(vec![Turn::Speak(questions[i % questions.len()].clone())])
                },
            };
            let state = self.state.clone();
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
                    out.failed += 1;
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
                out.voice_to_voice.push(ms(v2v));
                out.end_of_turn.push(ms(t.turn_end.saturating_sub(t.speech_end)));
                out.stt_after_turn_end.push(ms(ready.saturating_sub(t.turn_end)));
                out.answer.push(ms(audio.saturating_sub(ready)));
            }
        }
        for s in [
            &mut out.voice_to_voice,
            &mut out.end_of_turn,
            &mut out.stt_after_turn_end,
            &mut out.answer,
        ] {
            s.sort_by(f64::total_cmp);
        }
        Ok(out)
    }
}

pub fn run(args: BenchCallsArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = BenchServer::start(args.concurrency).await?;
        let stages = server
            .run_calls(args.calls, args.concurrency, args.questions)
            .await?;
        println!(
            "{} calls ({} at once), {} answered turns, {} failed",
            args.calls,
            args.concurrency,
            stages.voice_to_voice.len(),
            stages.failed
        );
        println!("| stage | p50 | p95 |");
        println!("|---|---|---|");
        for (name, s) in CallStages::NAMES.iter().zip(stages.stages()) {
            println!(
                "| {name} | {:.0} ms | {:.0} ms |",
                percentile(s, 0.5),
                percentile(s, 0.95)
            );
        }
        anyhow::ensure!(stages.failed == 0, "{} calls failed", stages.failed);
        Ok(())
    })
}
