//! `switchboard bench llm`: load time, prefill and decode speed, time to first token with and
//! without the cached system prompt, and peak memory, as a markdown table per model.

use std::time::{Duration, Instant};

use anyhow::Context;
use switchboard_core::llm::{CancelToken, ChatMessage, GenerationParams, ReplyEvent, ReplyStats};
use switchboard_llm::{EngineConfig, LlmEngine};

use super::chat::resolve_model;

#[derive(Debug, clap::Args)]
pub struct BenchLlmArgs {
    /// Models to measure (names or GGUF paths); default: every bundled model.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Tokens to generate for the decode measurement.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: usize,
}

const SYSTEM: &str = "You are Sam, the phone receptionist of Bright Smile Dental in Springfield. \
You help callers book, move or cancel appointments, answer questions about opening hours \
(Monday to Friday 8 am to 6 pm, Saturday 9 am to 1 pm) and prices, and transfer them to a human \
when they ask. Keep every answer to one or two short sentences, be warm and polite, never invent \
appointment times that were not offered, and confirm names, days and times back to the caller.";

/// About 20 tokens, as a caller's turn.
const USER_TURN: &str =
    "Hi, this is Maria Lopez, I'd like to book a cleaning next Tuesday afternoon if possible.";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run_once(engine: &LlmEngine, max_tokens: usize) -> anyhow::Result<ReplyStats> {
    let mut stream = engine
        .start_chat(
            vec![ChatMessage::system(SYSTEM), ChatMessage::user(USER_TURN)],
            GenerationParams {
                max_tokens,
                ..GenerationParams::greedy(max_tokens)
            },
            CancelToken::new(),
        )
        .context("queueing")?;
    while let Some(event) = stream.blocking_next() {
        if let ReplyEvent::Finished(stats) = event.context("generating")? {
            return Ok(stats);
        }
    }
    anyhow::bail!("reply ended without stats")
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// One model's numbers; times are medians of the runs.
#[derive(Debug, Clone)]
pub struct LlmNumbers {
    pub name: String,
    pub load: Duration,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub ttft_uncached: Duration,
    pub ttft_cached: Duration,
    /// The whole prompt (system prompt, caller turn, chat template) and the part of it cached.
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub peak_rss_mib: Option<f64>,
}

/// Loads the model at `path` and measures it; the engine is shut down before returning.
pub(super) fn measure(
    path: &std::path::Path,
    runs: usize,
    decode_tokens: usize,
) -> anyhow::Result<LlmNumbers> {
    let runs = runs.max(1);
    let started = Instant::now();
    let engine = LlmEngine::load(path, EngineConfig::default())
        .with_context(|| format!("loading {}", path.display()))?;
    let load = started.elapsed();
    run_once(&engine, 4)?; // warm the allocator and the kernels

    let mut uncached = Vec::new();
    let mut prefill_rate = Vec::new();
    let mut prompt_tokens = 0;
    for _ in 0..runs {
        engine.clear_cache_blocking().context("clearing the cache")?;
        let s = run_once(&engine, 1)?;
        prompt_tokens = s.prompt_tokens;
        prefill_rate.push(s.prompt_tokens as f64 / s.time_to_first_token.as_secs_f64());
        uncached.push(s.time_to_first_token);
    }
    let mut cached = Vec::new();
    let mut cached_tokens = 0;
    for _ in 0..runs {
        engine.clear_cache_blocking().context("clearing the cache")?;
        engine
            .warm_up_blocking(vec![ChatMessage::system(SYSTEM)])
            .context("warming up")?;
        let s = run_once(&engine, 1)?;
        cached_tokens = s.cached_tokens;
        cached.push(s.time_to_first_token);
    }
    let mut decode_rate = Vec::new();
    for _ in 0..runs {
        let s = run_once(&engine, decode_tokens)?;
        let decode_time = s.total.saturating_sub(s.time_to_first_token);
        if s.generated_tokens > 1 && !decode_time.is_zero() {
            decode_rate.push((s.generated_tokens - 1) as f64 / decode_time.as_secs_f64());
        }
    }
    prefill_rate.sort_by(f64::total_cmp);
    decode_rate.sort_by(f64::total_cmp);
    let mid = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let numbers = LlmNumbers {
        name: engine.info().name.clone(),
        load,
        prefill_tok_s: mid(&prefill_rate),
        decode_tok_s: mid(&decode_rate),
        ttft_uncached: median(uncached),
        ttft_cached: median(cached),
        prompt_tokens,
        cached_tokens,
        peak_rss_mib: peak_rss_mib(),
    };
    engine.shutdown();
    Ok(numbers)
}

pub fn run(args: BenchLlmArgs) -> anyhow::Result<()> {
    let models = if args.models.is_empty() {
        vec!["smollm2-135m".to_string(), "qwen2.5-0.5b".to_string()]
    } else {
        args.models.clone()
    };
    println!(
        "| model | load | prefill tok/s | decode tok/s | TTFT uncached | TTFT system prompt cached | prompt / cached tokens | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for name in models {
        let path = match resolve_model(Some(&name)) {
            Ok(p) => p,
            Err(e) => {
                println!("| {name} | missing: {e} | | | | | | |");
                continue;
            }
        };
        let n = measure(&path, args.runs, args.decode_tokens)?;
        println!(
            "| {} | {:.2} s | {:.0} | {:.1} | {} ms | {} ms | {} / {} | {} |",
            n.name,
            n.load.as_secs_f64(),
            n.prefill_tok_s,
            n.decode_tok_s,
            n.ttft_uncached.as_millis(),
            n.ttft_cached.as_millis(),
            n.prompt_tokens,
            n.cached_tokens,
            n.peak_rss_mib
                .map(|m| format!("{m:.0} MiB"))
                .unwrap_or_else(|| "?".into()),
        );
    }
    println!("\nPeak RSS is the process's high-water mark, so it includes every model measured before.");
    Ok(())
}
