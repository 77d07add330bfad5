//! `switchboard bench …`: benchmarks that print a markdown table. Speed is measured here, never asserted
//! in tests; ratios are against a reference measured in the same run, because these machines are noisy.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchboard_audio::VadConfig;
use switchboard_audio::telephone::phone_line;
use switchboard_models::ModelKind;
use switchboard_stt::testset::{CLEAR_VOICES, ESPEAK, TIMED_UTTERANCES, Voice, phone_sentences, synthesize};
use switchboard_stt::turns::{SpeculativeTurns, TurnAction};
use switchboard_stt::wer::word_errors;
use switchboard_stt::window::WindowPolicy;
use switchboard_stt::{WhisperConfig, WhisperStt};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Speech-to-text: load time, time from end of utterance to transcript for 1, 3 and 7 s utterances
    /// (adaptive window vs whisper's full window), and word error rate through the phone path.
    Stt(SttBenchArgs),
    /// Language model: load time, prefill and decode tokens/s, time to first token cached vs not, memory.
    Llm(super::bench_llm::BenchLlmArgs),
    /// Understanding: labelled caller answers at the shipped flows' ask steps, read by the rules alone and
    /// with each model; right, re-prompted and wrong, and time per model answer.
    Understand(super::bench_understand::BenchUnderstandArgs),
    /// Simulated calls through the real server: voice-to-voice latency p50/p95 and per-stage times.
    Calls(super::bench_calls::BenchCallsArgs),
    /// Side by side with whisper.cpp and llama.cpp (built by `bench/install-peers.sh`), plus calls,
    /// capacity and webhook throughput: writes bench/results/report.md and PNG charts.
    Report(super::bench_report::BenchReportArgs),
}

#[derive(Debug, clap::Args)]
pub struct SttBenchArgs {
    /// Models to measure (names from `switchboard models list`).
    #[arg(long, value_delimiter = ',', default_values_t = ["whisper-tiny.en".to_string(), "whisper-base".to_string()])]
    pub models: Vec<String>,
    /// Repetitions per utterance; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Inference threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Turn off whisper's temperature fallback (re-decoding unclear utterances).
    #[arg(long)]
    pub no_fallback: bool,
    /// Real-time streamed turns per utterance for the end-of-turn measurement.
    #[arg(long, default_value_t = 3)]
    pub turn_runs: usize,
    /// The encoder window measured against the full one: `auto` (what the runtime uses), or a fixed number
    /// of 20 ms frames, to try other windows.
    #[arg(long, default_value = "auto", value_parser = |s: &str| super::transcribe::parse_window(s).map_err(|e| e.to_string()))]
    pub window: WindowPolicy,
    /// Print every test sentence that is not transcribed exactly, with what was heard (stderr).
    #[arg(long)]
    pub show_errors: bool,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Stt(args) => stt(args),
        BenchCommand::Llm(args) => super::bench_llm::run(args),
        BenchCommand::Understand(args) => super::bench_understand::run(args),
        BenchCommand::Calls(args) => super::bench_calls::run(args),
        BenchCommand::Report(args) => super::bench_report::run(args),
    }
}

pub(super) struct Utterance {
    pub text: &'static str,
    /// 16 kHz, after the phone path (8 kHz mu-law and back).
    pub audio: Vec<f32>,
}

impl Utterance {
    /// Speaks `text` and passes it through the phone path, as a caller's turn reaches recognition.
    pub(super) fn spoken(text: &'static str, voice: Voice) -> anyhow::Result<Self> {
        let audio = synthesize(text, voice).with_context(|| format!("synthesizing {text:?} with {voice}"))?;
        Ok(Self {
            text,
            audio: phone_line(&audio),
        })
    }
}

/// The ~1, 3 and 7 s utterances whose recognition latency is reported, in the first clear voice.
pub(super) fn timed_utterances() -> anyhow::Result<Vec<Utterance>> {
    TIMED_UTTERANCES
        .into_iter()
        .map(|t| Utterance::spoken(t, CLEAR_VOICES[0]))
        .collect()
}

fn stt(args: SttBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    eprintln!("synthesizing the test set (flite, espeak-ng) and passing it through the phone path…");
    let speak_all = |voices: &[Voice]| -> anyhow::Result<Vec<Utterance>> {
        let mut out = Vec::new();
        for &voice in voices {
            for text in phone_sentences().into_iter().chain(TIMED_UTTERANCES) {
                out.push(Utterance::spoken(text, voice)?);
            }
        }
        Ok(out)
    };
    let timed = timed_utterances()?;
    let clear = speak_all(&CLEAR_VOICES)?;
    let robotic = speak_all(&[ESPEAK])?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));

    let mut latency_rows = Vec::new();
    let mut turn_rows = Vec::new();
    let mut summary_rows = Vec::new();
    for name in &args.models {
        let path = match super::resolve::model_path(ModelKind::Whisper, Some(name)) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipping {name}: {e:#}");
                continue;
            }
        };
        let mut config = WhisperConfig::new(&path);
        config.threads = threads;
        config.temperature_fallback = !args.no_fallback;
        config.warm_up = false;
        config.window = args.window;
        let cold = WhisperStt::load(config.clone()).with_context(|| format!("loading {name}"))?;
        let load = cold.load_time();
        drop(cold);
        config.warm_up = true;
        let stt = WhisperStt::load(config.clone())?;
        let mut full_config = config.clone();
        full_config.window = WindowPolicy::Full;
        let full = WhisperStt::load(full_config)?;

        for u in &timed {
            let (adaptive_ms, ctx, text) = median_latency(&stt, &u.audio, args.runs)?;
            let (full_ms, _, _) = median_latency(&full, &u.audio, args.runs)?;
            let (e, n) = word_errors(u.text, &text);
            latency_rows.push(format!(
                "| {name} | {:.1} s | {adaptive_ms:.0} ms (window {ctx}) | {full_ms:.0} ms | {:.2} | {e}/{n} |",
                u.audio.len() as f64 / 16_000.0,
                adaptive_ms / full_ms,
            ));
            let t = median_turn(&stt, &u.audio, args.turn_runs.max(1))?;
            turn_rows.push(format!(
                "| {name} | {:.1} s | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
                u.audio.len() as f64 / 16_000.0,
                t.turn_end_ms,
                t.available_ms,
                t.after_turn_end_ms,
                t.turn_end_ms + adaptive_ms,
            ));
        }
        let pct = |x: f64| format!("{:.1} %", x * 100.0);
        summary_rows.push(format!(
            "| {name} | {:.0} ms | {} | {} | {} | {} |",
            load.as_secs_f64() * 1000.0,
            pct(set_wer(&stt, &clear, args.show_errors.then_some("stt"))?),
            pct(set_wer(&full, &clear, args.show_errors.then_some("full"))?),
            pct(set_wer(&stt, &robotic, args.show_errors.then_some("stt"))?),
            pct(set_wer(&full, &robotic, args.show_errors.then_some("full"))?),
        ));
    }
    anyhow::ensure!(
        !summary_rows.is_empty(),
        "no model could be measured (fetch one with `switchboard models fetch`)"
    );

    println!(
        "\n### Speech-to-text: end of utterance → final transcript ({threads} threads, median of {} runs, {})\n",
        args.runs, CLEAR_VOICES[0]
    );
    println!("| model | utterance | adaptive window | full window (30 s) | ratio | word errors |");
    println!("|---|---|---|---|---|---|");
    for r in &latency_rows {
        println!("{r}");
    }
    println!(
        "\n### End of turn: speech streamed in real time, speculative transcription on pauses (median of {})\n",
        args.turn_runs.max(1)
    );
    println!(
        "| model | utterance | speech end → turn end | speech end → transcript | turn end → transcript | without speculation |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &turn_rows {
        println!("{r}");
    }
    let voices: Vec<String> = CLEAR_VOICES.iter().map(ToString::to_string).collect();
    println!(
        "\n### Speech-to-text: load time and word error rate through the phone path ({} sentences; clear = {})\n",
        clear.len() / CLEAR_VOICES.len(),
        voices.join(", ")
    );
    println!(
        "| model | load | WER clear, adaptive window | WER clear, full window | WER {ESPEAK}, adaptive | WER {ESPEAK}, full |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &summary_rows {
        println!("{r}");
    }
    Ok(())
}

/// Median time from handing over a complete utterance to having its transcript.
pub(super) fn median_latency(
    stt: &WhisperStt,
    audio: &[f32],
    runs: usize,
) -> anyhow::Result<(f64, u32, String)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = stt.transcribe_blocking(audio.to_vec())?;
        times.push(t.timings.queued + t.timings.inference);
        last = Some(t);
    }
    times.sort();
    let median: Duration = times[times.len() / 2];
    let last = last.context("no run")?;
    Ok((median.as_secs_f64() * 1000.0, last.timings.audio_ctx, last.text))
}

/// Word error rate over `set`; with `show` (a label for the engine), each sentence with errors is printed.
fn set_wer(stt: &WhisperStt, set: &[Utterance], show: Option<&str>) -> anyhow::Result<f64> {
    let (mut errors, mut words) = (0, 0);
    for u in set {
        let t = stt.transcribe_blocking(u.audio.clone())?;
        let (e, n) = word_errors(u.text, &t.text);
        if let Some(label) = show.filter(|_| e > 0) {
            eprintln!(
                "{label} (window {}): {e}/{n} errors\n  said:  {}\n  heard: {}",
                t.timings.audio_ctx, u.text, t.text
            );
        }
        errors += e;
        words += n;
    }
    Ok(errors as f64 / words.max(1) as f64)
}

struct TurnTiming {
    turn_end_ms: f64,
    available_ms: f64,
    after_turn_end_ms: f64,
}

/// Streams `audio` (with silence around it) in 20 ms frames at real-time pace through
/// [`SpeculativeTurns`], transcribing speculations on threads, and measures when the final transcript is
/// available to the conversation: never before the turn has ended, since only then is it final.
fn median_turn(stt: &WhisperStt, audio: &[f32], runs: usize) -> anyhow::Result<TurnTiming> {
    let mut samples = vec![0.0f32; 300 * 16];
    samples.extend_from_slice(audio);
    samples.extend(std::iter::repeat_n(0.0, 1500 * 16));
    let mut turn_end = Vec::new();
    let mut available = Vec::new();
    let mut after = Vec::new();
    for _ in 0..runs {
        let mut turns = SpeculativeTurns::new(VadConfig::default(), Duration::from_millis(200));
        let (done_tx, done_rx) = mpsc::channel::<(u64, Instant)>();
        let started = Instant::now();
        let mut result = None;
        for (k, frame) in samples.chunks(320).enumerate() {
            let due = started + Duration::from_millis(20 * k as u64 + 20);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            for action in turns.push(frame) {
                match action {
                    TurnAction::Speculate { id, samples } => {
                        let pending = stt.start(samples)?;
                        let tx = done_tx.clone();
                        std::thread::spawn(move || {
                            if pending.wait().is_ok() {
                                let _ = tx.send((id, Instant::now()));
                            }
                        });
                    }
                    TurnAction::TurnEnded {
                        samples,
                        end,
                        speculation,
                        ..
                    } => {
                        let ended_at = Instant::now();
                        let ready_at = match speculation {
                            Some(id) => loop {
                                let (done, at) = done_rx.recv().context("speculation lost")?;
                                if done == id {
                                    break at;
                                }
                            },
                            None => {
                                stt.transcribe_blocking(samples)?;
                                Instant::now()
                            }
                        };
                        let speech_end = started + end;
                        let available_at = ready_at.max(ended_at);
                        result = Some((
                            ended_at.saturating_duration_since(speech_end),
                            available_at.saturating_duration_since(speech_end),
                            available_at.saturating_duration_since(ended_at),
                        ));
                    }
                    _ => {}
                }
            }
            if result.is_some() {
                break;
            }
        }
        let (t, a, f) = result.context("no turn was detected in the utterance")?;
        turn_end.push(t);
        available.push(a);
        after.push(f);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    Ok(TurnTiming {
        turn_end_ms: median(turn_end),
        available_ms: median(available),
        after_turn_end_ms: median(after),
    })
}
