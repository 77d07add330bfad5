//! `switchboard bench …`: benchmarks that print a markdown table. Speed is measured here, never asserted
//! in tests; ratios are against a reference measured in the same run, because these machines are noisy.

use std::time::Duration;

use anyhow::Context;
use switchboard_audio::telephone::phone_line;
use switchboard_models::ModelKind;
use switchboard_stt::testset::{CLEAR_VOICES, ESPEAK, TIMED_UTTERANCES, Voice, phone_sentences, synthesize};
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
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Stt(args) => stt(args),
        BenchCommand::Llm(args) => super::bench_llm::run(args),
    }
}

struct Utterance {
    text: &'static str,
    audio: Vec<f32>,
}

fn stt(args: SttBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    eprintln!("synthesizing the test set (flite, espeak-ng) and passing it through the phone path…");
    let speak = |text: &'static str, voice: Voice| -> anyhow::Result<Utterance> {
        let audio = synthesize(text, voice).with_context(|| format!("synthesizing {text:?} with {voice}"))?;
        Ok(Utterance {
            text,
            audio: phone_line(&audio),
        })
    };
    let speak_all = |voices: &[Voice]| -> anyhow::Result<Vec<Utterance>> {
        let mut out = Vec::new();
        for &voice in voices {
            for text in phone_sentences().into_iter().chain(TIMED_UTTERANCES) {
                out.push(speak(text, voice)?);
            }
        }
        Ok(out)
    };
    let timed: Vec<Utterance> = TIMED_UTTERANCES
        .into_iter()
        .map(|t| speak(t, CLEAR_VOICES[0]))
        .collect::<anyhow::Result<_>>()?;
    let clear = speak_all(&CLEAR_VOICES)?;
    let robotic = speak_all(&[ESPEAK])?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));

    let mut latency_rows = Vec::new();
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
        config.warm_up = false;
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
        }
        let pct = |x: f64| format!("{:.1} %", x * 100.0);
        summary_rows.push(format!(
            "| {name} | {:.0} ms | {} | {} | {} | {} |",
            load.as_secs_f64() * 1000.0,
            pct(set_wer(&stt, &clear)?),
            pct(set_wer(&full, &clear)?),
            pct(set_wer(&stt, &robotic)?),
            pct(set_wer(&full, &robotic)?),
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
fn median_latency(stt: &WhisperStt, audio: &[f32], runs: usize) -> anyhow::Result<(f64, u32, String)> {
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

fn set_wer(stt: &WhisperStt, set: &[Utterance]) -> anyhow::Result<f64> {
    let (mut errors, mut words) = (0, 0);
    for u in set {
        let t = stt.transcribe_blocking(u.audio.clone())?;
        let (e, n) = word_errors(u.text, &t.text);
        errors += e;
        words += n;
    }
    Ok(errors as f64 / words.max(1) as f64)
}
