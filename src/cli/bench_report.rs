//! `switchboard bench report`: our runtime side by side with its peers — whisper.cpp's `whisper-cli` for
//! speech-to-text and llama.cpp's `llama-bench` for the language model, on the same model files, audio,
//! prompt sizes and thread count — plus simulated calls, capacity and webhook throughput, in one run.
//! Writes `report.md` and PNG charts (see [`super::bench_render`]).
//!
//! The peers are separate programs built by `bench/install-peers.sh`; one that is missing is skipped
//! with a message naming that script, and the rest of the report still runs. Each peer runs with the
//! settings that make it do the same work as ours (greedy decoding, no timestamps, same threads), and
//! its model load is excluded, because ours loads once per process and then serves every call.
//!
//! The server sections run first, in a fresh process, so that the resident memory they report is the
//! server's with the default models and not what the speech and language sections loaded next to it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use switchboard_audio::wav::write_wav_f32_as_i16;
use switchboard_models::ModelKind;
use switchboard_stt::window::WindowPolicy;
use switchboard_stt::{WhisperConfig, WhisperStt};
use switchboard_telephony::signature;

use super::bench::{median_latency, timed_utterances};
use super::bench_calls::{BenchServer, CallStages, Questions, percentile};
use super::bench_llm::LlmNumbers;

pub const INSTALL_PEERS: &str = "bench/install-peers.sh";
pub const WHISPER_MODEL: &str = "whisper-tiny.en";
pub const LLM_MODEL: &str = "smollm2-135m";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Speech-to-text, ours vs whisper.cpp.
    Stt,
    /// Language model, ours vs llama.cpp.
    Llm,
    /// Voice-to-voice latency of simulated calls, one at a time.
    Calls,
    /// Simulated calls at rising concurrency: the most within the latency target, CPU and memory.
    Capacity,
    /// Requests per second on the signed voice webhook.
    Webhook,
}

#[derive(Debug, clap::Args)]
pub struct BenchReportArgs {
    /// Sections to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "stt,llm,calls,capacity,webhook"
    )]
    pub sections: Vec<Section>,
    /// Where `bench/install-peers.sh` put the peers' binaries.
    #[arg(long, default_value = "bench/peers/bin")]
    pub peers: PathBuf,
    /// Where report.md and the charts are written.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Repetitions of each speech-to-text and language model measurement, ours and the peer's; the
    /// median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Threads for both sides of the speech-to-text and language model comparisons.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Tokens generated for the decode speed.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: usize,
    /// Calls placed one at a time for the voice-to-voice section.
    #[arg(long, default_value_t = 12)]
    pub calls: usize,
    /// Concurrency levels tried for capacity, in order; the sweep stops at the first level over the
    /// latency limit.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,6,8,10,12")]
    pub levels: Vec<usize>,
    /// Voice-to-voice p95 a level must stay within, in ms.
    #[arg(long, default_value_t = 1500.0)]
    pub p95_limit_ms: f64,
    /// Skip the capacity sweep (the longest section).
    #[arg(long)]
    pub skip_capacity: bool,
    /// How long the webhook load runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub webhook_seconds: u64,
    /// Open connections for the webhook load.
    #[arg(long, default_value_t = 32)]
    pub webhook_connections: usize,
    /// Fewer repetitions and calls: a few minutes instead of about fifteen.
    #[arg(long)]
    pub quick: bool,
}

impl BenchReportArgs {
    fn wants(&self, s: Section) -> bool {
        self.sections.contains(&s) && !(s == Section::Capacity && self.skip_capacity)
    }
}

/// A peer measurement, or why there is none.
#[derive(Debug, Clone)]
pub enum Peer<T> {
    Measured(T),
    /// Not installed: the message names the script that installs it.
    Missing(String),
    Failed(String),
}

impl<T> Peer<T> {
    pub fn measured(&self) -> Option<&T> {
        match self {
            Peer::Measured(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub commit: String,
    pub command: String,
    /// 1-minute load average when the run started and ended: other work on the machine skews
    /// everything, the peers' spinning thread pools most.
    pub load: (Option<f64>, Option<f64>),
}

pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[derive(Debug, Clone)]
pub struct WhisperCliRun {
    /// whisper.cpp's own stage timings summed: mel + sample + encode + decode + batchd + prompt.
    pub compute_ms: f64,
    pub load_ms: f64,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct SttRow {
    pub seconds: f64,
    pub ours_ms: f64,
    pub ours_window: u32,
    pub ours_full_ms: f64,
    pub ours_text: String,
    /// Median compute time, and the text of the last run.
    pub peer: Peer<WhisperCliRun>,
}

#[derive(Debug, Clone)]
pub struct SttSection {
    pub model: String,
    pub threads: usize,
    pub runs: usize,
    pub rows: Vec<SttRow>,
}

#[derive(Debug, Clone)]
pub struct LlamaNumbers {
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub ttft_uncached: Duration,
    pub ttft_cached: Duration,
    pub build: String,
}

#[derive(Debug, Clone)]
pub struct LlmSection {
    /// The GGUF file both sides load.
    pub model: String,
    pub threads: usize,
    pub runs: usize,
    pub decode_tokens: usize,
    pub ours: LlmNumbers,
    pub peer: Peer<LlamaNumbers>,
}

/// CPU and memory of this process over a stretch of calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_mib: f64,
}

#[derive(Debug)]
pub struct Level {
    pub concurrency: usize,
    pub calls: usize,
    pub stages: CallStages,
    pub usage: Usage,
    /// Resident memory with the models loaded and no call in progress, just before this level.
    pub idle_rss_mib: f64,
}

impl Level {
    pub fn p50(&self) -> f64 {
        percentile(&self.stages.voice_to_voice, 0.5)
    }
    pub fn p95(&self) -> f64 {
        percentile(&self.stages.voice_to_voice, 0.95)
    }
    pub fn cpu_s_per_call(&self) -> f64 {
        self.usage.cpu.as_secs_f64() / self.calls.max(1) as f64
    }
    /// Memory above idle at the level's peak, shared out over the calls in progress then.
    pub fn rss_mib_per_call(&self) -> f64 {
        (self.usage.peak_rss_mib - self.idle_rss_mib).max(0.0) / self.concurrency.max(1) as f64
    }
    pub fn within(&self, p95_limit_ms: f64) -> bool {
        self.stages.failed == 0 && !self.stages.voice_to_voice.is_empty() && self.p95() <= p95_limit_ms
    }
}

#[derive(Debug)]
pub struct CapacitySection {
    pub p95_limit_ms: f64,
    pub levels: Vec<Level>,
    /// Resident memory after the server started with the default models, before any call.
    pub idle_rss_mib: f64,
}

impl CapacitySection {
    pub fn max_within(&self) -> Option<usize> {
        self.levels
            .iter()
            .take_while(|l| l.within(self.p95_limit_ms))
            .map(|l| l.concurrency)
            .last()
    }
}

#[derive(Debug, Clone)]
pub struct WebhookSection {
    pub tool: String,
    pub connections: usize,
    pub seconds: u64,
    pub requests_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub machine: Option<Machine>,
    pub stt: Option<SttSection>,
    pub llm: Option<LlmSection>,
    pub calls: Option<Level>,
    /// The same, with questions only the language model sorts out.
    pub model_calls: Option<Level>,
    pub capacity: Option<CapacitySection>,
    pub webhook: Option<WebhookSection>,
    /// What `bench/install-peers.sh` built (its versions.txt), one line per peer.
    pub peers: Vec<String>,
    /// Sections that could not run, with why.
    pub skipped: Vec<String>,
}

pub fn run(mut args: BenchReportArgs) -> anyhow::Result<()> {
    if args.quick {
        args.runs = args.runs.min(3);
        args.calls = args.calls.min(6);
        args.webhook_seconds = args.webhook_seconds.min(5);
        args.decode_tokens = args.decode_tokens.min(32);
    }
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    let mut report = Report {
        machine: Some(machine()),
        peers: std::fs::read_to_string(args.peers.join("versions.txt"))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default(),
        ..Report::default()
    };

    if args.wants(Section::Calls) || args.wants(Section::Capacity) || args.wants(Section::Webhook) {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(server_sections(&args, &mut report))?;
        // Dropping the runtime stops the server and frees its models before the next sections load theirs.
        drop(runtime);
    }
    if args.wants(Section::Stt) {
        report.stt = Some(stt_section(&args)?);
    }
    if args.wants(Section::Llm) {
        report.llm = Some(llm_section(&args)?);
    }

    if let Some(m) = &mut report.machine {
        m.load.1 = load_average();
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let charts = super::bench_render::charts(&report, &args.out);
    let markdown = super::bench_render::markdown(&report, &charts);
    let path = args.out.join("report.md");
    std::fs::write(&path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    println!("{markdown}");
    eprintln!("wrote {}", path.display());
    for c in &charts {
        match c {
            Ok(p) => eprintln!("wrote {}", p.display()),
            Err(e) => eprintln!("no chart: {e:#}"),
        }
    }
    Ok(())
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let mut commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    if git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty()) {
        commit.push_str(" (with uncommitted changes)");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    Machine {
        date: jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC").to_string(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        commit,
        command: format!("switchboard {}", args.join(" ")),
        load: (load_average(), None),
    }
}

/// A peer's binary, or the message that says how to get it.
fn peer_binary(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{name} is not installed ({} not found): run `{INSTALL_PEERS}` to build it",
            path.display()
        ))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// Speech-to-text

fn stt_section(args: &BenchReportArgs) -> anyhow::Result<SttSection> {
    let model = super::resolve::model_path(ModelKind::Whisper, Some(WHISPER_MODEL))?;
    eprintln!("speech-to-text: synthesizing the utterances (flite) through the phone path…");
    let utterances = timed_utterances()?;
    let mut config = WhisperConfig::new(&model);
    config.threads = args.threads;
    let ours = WhisperStt::load(config.clone()).context("loading speech-to-text")?;
    config.window = WindowPolicy::Full;
    let full = WhisperStt::load(config).context("loading speech-to-text")?;
    let cli = peer_binary(&args.peers, "whisper-cli");
    if let Err(e) = &cli {
        eprintln!("speech-to-text: skipping whisper.cpp: {e}");
    }
    let scratch = std::env::temp_dir().join(format!("switchboard-bench-report-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;

    let mut rows = Vec::new();
    for (i, u) in utterances.iter().enumerate() {
        let seconds = u.audio.len() as f64 / 16_000.0;
        eprintln!("speech-to-text: {seconds:.1} s utterance, ours…");
        let (ours_ms, ours_window, ours_text) = median_latency(&ours, &u.audio, args.runs)?;
        let (ours_full_ms, _, _) = median_latency(&full, &u.audio, args.runs)?;
        let peer = match &cli {
            Err(e) => Peer::Missing(e.clone()),
            Ok(cli) => {
                eprintln!("speech-to-text: {seconds:.1} s utterance, whisper.cpp…");
                let wav = scratch.join(format!("utterance-{i}.wav"));
                write_wav_f32_as_i16(&wav, &u.audio, 16_000, 1).context("writing the utterance")?;
                match whisper_cli_median(cli, &model, &wav, args.threads, args.runs) {
                    Ok(r) => Peer::Measured(r),
                    Err(e) => Peer::Failed(format!("{e:#}")),
                }
            }
        };
        rows.push(SttRow {
            seconds,
            ours_ms,
            ours_window,
            ours_full_ms,
            ours_text,
            peer,
        });
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(SttSection {
        model: WHISPER_MODEL.into(),
        threads: args.threads,
        runs: args.runs,
        rows,
    })
}

/// Runs whisper-cli `runs` times on `wav`, each in a fresh process, with the decoding settings ours
/// uses (greedy, one candidate, no timestamps, non-speech tokens suppressed, fallback on).
fn whisper_cli_median(
    cli: &Path,
    model: &Path,
    wav: &Path,
    threads: usize,
    runs: usize,
) -> anyhow::Result<WhisperCliRun> {
    let mut compute = Vec::new();
    let mut load = Vec::new();
    let mut text = String::new();
    for _ in 0..runs {
        let out = Command::new(cli)
            .arg("-m")
            .arg(model)
            .arg("-f")
            .arg(wav)
            .args([
                "-t",
                &threads.to_string(),
                "-l",
                "en",
                "-nt",
                "-bs",
                "1",
                "-bo",
                "1",
                "-sns",
            ])
            .output()
            .with_context(|| format!("running {}", cli.display()))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(
            out.status.success(),
            "{} failed ({}): {}",
            cli.display(),
            out.status,
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" / ")
        );
        let timings = parse_whisper_timings(&stderr)
            .with_context(|| format!("no whisper_print_timings in the output of {}", cli.display()))?;
        compute.push(timings.compute_ms);
        load.push(timings.load_ms);
        text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Ok(WhisperCliRun {
        compute_ms: median(compute),
        load_ms: median(load),
        text,
    })
}

/// Reads `whisper_print_timings` lines: `load time = 377.04 ms`, `encode time = 512.3 ms / 1 runs …`.
pub fn parse_whisper_timings(stderr: &str) -> Option<WhisperCliRun> {
    let mut load = None;
    let mut compute = 0.0;
    let mut stages = 0;
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("whisper_print_timings:") else {
            continue;
        };
        let Some((name, value)) = rest.split_once('=') else {
            continue;
        };
        let Some(ms) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        match name.trim() {
            "load time" => load = Some(ms),
            "mel time" | "sample time" | "encode time" | "decode time" | "batchd time" | "prompt time" => {
                compute += ms;
                stages += 1;
            }
            _ => {}
        }
    }
    // The encoder is what any transcription runs; without its line the output is not what we parse.
    (stages >= 3).then_some(WhisperCliRun {
        compute_ms: compute,
        load_ms: load?,
        text: String::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// Language model

fn llm_section(args: &BenchReportArgs) -> anyhow::Result<LlmSection> {
    let model = super::chat::resolve_model(Some(LLM_MODEL))?;
    eprintln!("language model: ours…");
    let ours = super::bench_llm::measure(&model, args.runs, args.decode_tokens)?;
    let peer = match peer_binary(&args.peers, "llama-bench") {
        Err(e) => {
            eprintln!("language model: skipping llama.cpp: {e}");
            Peer::Missing(e)
        }
        Ok(bin) => {
            eprintln!("language model: llama.cpp…");
            match llama_peer(&bin, &model, args, &ours) {
                Ok(n) => Peer::Measured(n),
                Err(e) => Peer::Failed(format!("{e:#}")),
            }
        }
    };
    Ok(LlmSection {
        model: model.file_name().map_or_else(
            || model.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        ),
        threads: args.threads,
        runs: args.runs,
        decode_tokens: args.decode_tokens,
        ours,
        peer,
    })
}

/// One test of `llama-bench -o json`.
#[derive(Debug, Deserialize)]
pub struct LlamaTest {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_depth: usize,
    pub samples_ns: Vec<u64>,
    #[serde(default)]
    pub build_commit: String,
    #[serde(default)]
    pub build_number: i64,
}

impl LlamaTest {
    fn median_s(&self) -> f64 {
        median(self.samples_ns.iter().map(|&n| n as f64 / 1e9).collect())
    }
}

pub fn parse_llama_bench(json: &str) -> anyhow::Result<Vec<LlamaTest>> {
    serde_json::from_str(json).context("reading llama-bench's JSON")
}

/// The same three measurements as ours, with our prompt's token counts: the whole prompt from an
/// empty cache (prefill speed and uncached time to first token), the caller's part on top of the
/// cached system prompt (`-d`: the depth is filled before the clock starts), and decoding after the
/// prompt.
fn llama_peer(
    bin: &Path,
    model: &Path,
    args: &BenchReportArgs,
    ours: &LlmNumbers,
) -> anyhow::Result<LlamaNumbers> {
    let prompt = ours.prompt_tokens;
    let cached = ours.cached_tokens.min(prompt.saturating_sub(1));
    let bench = |p: usize, n: usize, d: usize| -> anyhow::Result<LlamaTest> {
        let out = Command::new(bin)
            .arg("-m")
            .arg(model)
            .args([
                "-t",
                &args.threads.to_string(),
                "-r",
                &args.runs.to_string(),
                "-o",
                "json",
            ])
            .args(["-p", &p.to_string(), "-n", &n.to_string(), "-d", &d.to_string()])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "{} failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        );
        parse_llama_bench(&String::from_utf8_lossy(&out.stdout))?
            .into_iter()
            .find(|t| t.n_prompt == p && t.n_gen == n && t.n_depth == d)
            .context("llama-bench did not report the test it was asked for")
    };
    let uncached = bench(prompt, 0, 0)?;
    let on_cache = bench(prompt - cached, 0, cached)?;
    let decode = bench(0, args.decode_tokens, prompt)?;
    Ok(LlamaNumbers {
        prefill_tok_s: prompt as f64 / uncached.median_s(),
        decode_tok_s: args.decode_tokens as f64 / decode.median_s(),
        ttft_uncached: Duration::from_secs_f64(uncached.median_s()),
        ttft_cached: Duration::from_secs_f64(on_cache.median_s()),
        // Built from an sdist, not a git checkout, llama.cpp knows no build number; versions.txt says
        // which package it came from.
        build: if uncached.build_number > 0 {
            format!("build {} ({})", uncached.build_number, uncached.build_commit)
        } else {
            String::new()
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Calls, capacity, webhook

/// Resident memory of this process now (VmRSS), in MiB.
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User + system CPU time of this process, all threads.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are fixed.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ, in which /proc reports times, is 100 on every Linux architecture we build for.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Samples this process's memory on its own thread while calls run, so the peak is seen.
struct Probe {
    started: Instant,
    cpu: Duration,
    peak_kib: Arc<AtomicU64>,
    /// Tells the sampler to stop; an atomic because the sampler only polls it.
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<()>,
}

impl Probe {
    fn start() -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak_kib, stop) = (peak_kib.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(mib) = rss_mib() {
                        peak_kib.fetch_max((mib * 1024.0) as u64, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Probe {
            started: Instant::now(),
            cpu: cpu_time().unwrap_or_default(),
            peak_kib,
            stop,
            sampler,
        }
    }

    fn finish(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sampler.join();
        Usage {
            wall: self.started.elapsed(),
            cpu: cpu_time().unwrap_or_default().saturating_sub(self.cpu),
            peak_rss_mib: self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0,
        }
    }
}

async fn measure_level(
    server: &BenchServer,
    calls: usize,
    concurrency: usize,
    questions: Questions,
) -> anyhow::Result<Level> {
    let idle_rss_mib = rss_mib().unwrap_or(f64::NAN);
    let probe = Probe::start();
    let stages = server.run_calls(calls, concurrency, questions).await?;
    let usage = probe.finish();
    Ok(Level {
        concurrency,
        calls,
        stages,
        usage,
        idle_rss_mib,
    })
}

async fn server_sections(args: &BenchReportArgs, report: &mut Report) -> anyhow::Result<()> {
    let levels: Vec<usize> = if args.wants(Section::Capacity) {
        args.levels.iter().copied().filter(|&l| l > 0).collect()
    } else {
        Vec::new()
    };
    eprintln!("calls: starting the server with the default models…");
    let server = BenchServer::start(levels.iter().copied().max().unwrap_or(1)).await?;
    let idle_rss_mib = rss_mib().unwrap_or(f64::NAN);

    if args.wants(Section::Calls) {
        eprintln!("calls: {} simulated calls, one at a time…", args.calls);
        report.calls = Some(measure_level(&server, args.calls, 1, Questions::Scripted).await?);
        eprintln!(
            "calls: {} simulated calls with questions for the language model, one at a time…",
            args.calls
        );
        report.model_calls = Some(measure_level(&server, args.calls, 1, Questions::Model).await?);
    }
    if !levels.is_empty() {
        let mut section = CapacitySection {
            p95_limit_ms: args.p95_limit_ms,
            levels: Vec::new(),
            idle_rss_mib,
        };
        for &concurrency in &levels {
            // Two waves at each level, so that calls overlap throughout and not only at their start.
            let calls = (2 * concurrency).max(4);
            eprintln!("capacity: {calls} calls, {concurrency} at once…");
            let level = measure_level(&server, calls, concurrency, Questions::Scripted).await?;
            let within = level.within(args.p95_limit_ms);
            eprintln!(
                "capacity: {concurrency} at once: p95 {:.0} ms, {} failed",
                level.p95(),
                level.stages.failed
            );
            section.levels.push(level);
            if !within {
                break;
            }
        }
        report.capacity = Some(section);
    }
    if args.wants(Section::Webhook) {
        eprintln!("webhook: {} s of signed voice webhooks…", args.webhook_seconds);
        match webhook_section(&server, args).await {
            Ok(w) => report.webhook = Some(w),
            Err(e) => report.skipped.push(format!("webhook throughput: {e:#}")),
        }
    }
    Ok(())
}

/// The voice webhook as the provider sends it for a ringing number, signed once: the signature
/// covers only the URL and the form, so the same request stays valid however often it is sent.
fn signed_webhook(server: &BenchServer) -> (String, String, String) {
    let url = format!("{}/twilio/voice", server.base_url);
    let form: Vec<(String, String)> = [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+15555550100"),
        ("To", "+15555550199"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let signed = signature::sign(&server.token, &url, &form);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    (url, body, signed)
}

async fn webhook_section(server: &BenchServer, args: &BenchReportArgs) -> anyhow::Result<WebhookSection> {
    let (url, body, signed) = signed_webhook(server);
    // The load only means something if the signature is checked and this one passes.
    let http = reqwest::Client::new();
    let post = |sig: Option<&str>| {
        let mut req = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.clone());
        if let Some(sig) = sig {
            req = req.header(signature::HEADER, sig);
        }
        req.send()
    };
    let ok = post(Some(signed.as_str()))
        .await
        .context("posting the voice webhook")?;
    let status = ok.status();
    let twiml = ok.text().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success() && twiml.contains("<Stream"),
        "the signed webhook was answered {status}: {twiml}"
    );
    let unsigned = post(None).await.context("posting the voice webhook")?.status();
    anyhow::ensure!(
        unsigned == reqwest::StatusCode::FORBIDDEN,
        "an unsigned webhook was answered {unsigned}, not 403: signatures are not checked"
    );

    match find_on_path("wrk") {
        Some(wrk) => {
            let (connections, seconds) = (args.webhook_connections, args.webhook_seconds);
            tokio::task::spawn_blocking(move || run_wrk(&wrk, &url, &body, &signed, connections, seconds))
                .await
                .context("wrk")?
        }
        None => {
            eprintln!(
                "webhook: wrk is not installed (`{INSTALL_PEERS}` installs it); using the built-in load generator"
            );
            builtin_load(
                &url,
                &body,
                &signed,
                args.webhook_connections,
                args.webhook_seconds,
            )
            .await
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run_wrk(
    wrk: &Path,
    url: &str,
    body: &str,
    signed: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<WebhookSection> {
    let script = std::env::temp_dir().join(format!("switchboard-wrk-{}.lua", std::process::id()));
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = {body:?}\nwrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\nwrk.headers[{header:?}] = {signed:?}\n",
        header = signature::HEADER,
    );
    std::fs::write(&script, lua).context("writing the wrk script")?;
    let out = Command::new(wrk)
        .args([
            "-t",
            "2",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .context("running wrk");
    let _ = std::fs::remove_file(&script);
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed ({}): {stdout}", out.status);
    let mut parsed = parse_wrk(&stdout).with_context(|| format!("reading wrk's output:\n{stdout}"))?;
    parsed.connections = connections;
    parsed.seconds = seconds;
    Ok(parsed)
}

/// Reads `Requests/sec:`, the `--latency` distribution and `Non-2xx or 3xx responses:` from wrk.
pub fn parse_wrk(stdout: &str) -> Option<WebhookSection> {
    let ms = |v: &str| -> Option<f64> {
        let (num, factor) = if let Some(n) = v.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = v.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = v.strip_suffix('s') {
            (n, 1000.0)
        } else if let Some(n) = v.strip_suffix('m') {
            (n, 60_000.0)
        } else {
            return None;
        };
        num.parse::<f64>().ok().map(|x| x * factor)
    };
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut errors = 0;
    for line in stdout.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = ms(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = ms(v.trim());
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(WebhookSection {
        tool: "wrk".into(),
        connections: 0,
        seconds: 0,
        requests_per_s: rps?,
        p50_ms: p50,
        p99_ms: p99,
        errors,
    })
}

/// Closed-loop load without wrk: `connections` tasks each posting the signed webhook back to back.
async fn builtin_load(
    url: &str,
    body: &str,
    signed: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<WebhookSection> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .context("building the HTTP client")?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (http, url, body, signed) = (http.clone(), url.to_owned(), body.to_owned(), signed.to_owned());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let ok = http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(signature::HEADER, &signed)
                    .body(body.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        });
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done.context("a load task")?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(WebhookSection {
        tool: "built-in (reqwest)".into(),
        connections,
        seconds,
        requests_per_s: latencies.len() as f64 / elapsed,
        p50_ms: Some(percentile(&latencies, 0.5)),
        p99_ms: Some(percentile(&latencies, 0.99)),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_timings_sum_the_compute_stages_and_leave_out_the_load() {
        let stderr = "\
whisper_print_timings:     load time =   377.04 ms
whisper_print_timings:     fallbacks =   0 p /   0 h
whisper_print_timings:      mel time =    17.90 ms
whisper_print_timings:   sample time =    14.90 ms /     1 runs (    14.90 ms per run)
whisper_print_timings:   encode time =   726.99 ms /     1 runs (   726.99 ms per run)
whisper_print_timings:   decode time =    37.28 ms /    15 runs (     2.48 ms per run)
whisper_print_timings:   batchd time =    15.02 ms /     2 runs (     7.51 ms per run)
whisper_print_timings:   prompt time =     0.00 ms /     1 runs (     0.00 ms per run)
whisper_print_timings:    total time =  1290.35 ms
";
        let t = parse_whisper_timings(stderr).expect("parsed");
        assert!((t.load_ms - 377.04).abs() < 1e-9);
        assert!((t.compute_ms - (17.90 + 14.90 + 726.99 + 37.28 + 15.02)).abs() < 1e-6);
        assert!(parse_whisper_timings("main: processing 'x.wav'\n").is_none());
    }

    #[test]
    fn wrk_output_gives_rate_latency_and_errors() {
        let stdout = "\
Running 10s test @ http://127.0.0.1:4000/twilio/voice
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms  500.00us  12.00ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    2.00ms
     90%    3.00ms
     99%    1.20s
  123456 requests in 10.00s, 50.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  12345.67
Transfer/sec:      5.00MB
";
        let w = parse_wrk(stdout).expect("parsed");
        assert!((w.requests_per_s - 12345.67).abs() < 1e-9);
        assert_eq!(w.p50_ms, Some(0.85));
        assert_eq!(w.p99_ms, Some(1200.0));
        assert_eq!(w.errors, 7);
        assert!(parse_wrk("Running 10s test\n").is_none());
    }

    #[test]
    fn llama_bench_json_is_read_with_its_samples() {
        let json = r#"[
  {
    "build_commit": "unknown",
    "build_number": 0,
    "n_prompt": 29,
    "n_gen": 0,
    "n_depth": 106,
    "avg_ns": 20000000,
    "samples_ns": [ 30000000, 10000000, 20000000 ],
    "samples_ts": [ 966.6, 2900.0, 1450.0 ]
  }
]"#;
        let tests = parse_llama_bench(json).expect("parsed");
        assert_eq!(tests.len(), 1);
        assert_eq!(
            (tests[0].n_prompt, tests[0].n_gen, tests[0].n_depth),
            (29, 0, 106)
        );
        assert!((tests[0].median_s() - 0.02).abs() < 1e-12);
    }

    #[test]
    fn capacity_is_the_last_level_before_the_first_over_the_limit() {
        let level = |concurrency, v2v: Vec<f64>| Level {
            concurrency,
            calls: 4,
            stages: CallStages {
                voice_to_voice: v2v,
                ..CallStages::default()
            },
            usage: Usage::default(),
            idle_rss_mib: 0.0,
        };
        let section = CapacitySection {
            p95_limit_ms: 1500.0,
            levels: vec![
                level(1, vec![600.0, 620.0]),
                level(2, vec![640.0, 700.0]),
                level(4, vec![900.0, 2000.0]),
                // A later level under the limit again does not count: the sweep stopped before it.
                level(6, vec![600.0, 700.0]),
            ],
            idle_rss_mib: 0.0,
        };
        assert_eq!(section.max_within(), Some(2));
        let none = CapacitySection {
            levels: vec![level(1, vec![1600.0])],
            ..section
        };
        assert_eq!(none.max_within(), None);
    }

    #[test]
    fn a_missing_peer_names_the_install_script() {
        let e = peer_binary(Path::new("/nonexistent/peers"), "whisper-cli").expect_err("missing");
        assert!(e.contains(INSTALL_PEERS), "{e}");
    }
}
