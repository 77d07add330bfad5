//! `switchboard flows check|test`: validate flow files, and run scenario files against them with the
//! real language model (and speech-to-text for recorded turns), printing a pass/fail table.
//!
//! The conversation logic is the flow crate's; this module only answers what the engine asks of the
//! outside world. Model calls go through the blocking engine API because a scenario is a strictly
//! sequential conversation and the command has nothing else to do meanwhile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchboard_core::llm::{CancelToken, ChatMessage};
use switchboard_flow::scenario::{self, Line, Scenario, ScenarioDriver, ScenarioReport};
use switchboard_flow::{Flow, UnderstandRequest, Understanding, model};
use switchboard_llm::{EngineConfig, LlmEngine};
use switchboard_stt::{WhisperConfig, WhisperStt};

#[derive(Debug, clap::Subcommand)]
pub enum FlowsCommand {
    /// Validate flow files (default: every flow under prompts/flows); errors give file:line:column.
    Check(CheckArgs),
    /// Run scenario files (or directories of them) and print a pass/fail table.
    Test(TestArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Flow files or directories holding them.
    #[arg(default_value = "prompts/flows")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Scenario files or directories (searched recursively for .yaml files).
    #[arg(default_value = "prompts/scenarios")]
    pub paths: Vec<PathBuf>,
    /// Where the flows named by the scenarios live (`<dir>/<flow>.yaml`).
    #[arg(long, default_value = "prompts/flows")]
    pub flows: PathBuf,
    /// Language model (manifest name or GGUF path); default: the manifest's default.
    #[arg(long)]
    pub model: Option<String>,
    /// Run without a language model: deterministic understanding only; scenarios marked
    /// `needs_model` are skipped.
    #[arg(long, conflicts_with = "model")]
    pub no_model: bool,
    /// Speech-to-text model for `wav` turns (manifest name or path); default: the manifest's default.
    #[arg(long)]
    pub stt_model: Option<String>,
    /// Print the transcript of every scenario, not only of failures.
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn run(cmd: FlowsCommand) -> anyhow::Result<()> {
    match cmd {
        FlowsCommand::Check(args) => check(args),
        FlowsCommand::Test(args) => test(args),
    }
}

/// `.yaml`/`.yml` files under `paths` (files are taken as given), sorted.
fn yaml_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            anyhow::bail!("{}: no such file or directory", p.display());
        }
    }
    out.sort();
    Ok(out)
}

/// The flows `names` name, each from `<dir>/<name>.yaml` (once), checked to call itself that name.
pub(super) fn load_named<'a>(
    dir: &Path,
    names: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<BTreeMap<String, Flow>> {
    let mut flows = BTreeMap::new();
    for name in names {
        if !flows.contains_key(name) {
            let path = dir.join(format!("{name}.yaml"));
            let flow = Flow::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                flow.name() == name,
                "{} names its flow `{}`, not `{name}`",
                path.display(),
                flow.name()
            );
            flows.insert(name.to_string(), flow);
        }
    }
    Ok(flows)
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let files = yaml_files(&args.paths)?;
    anyhow::ensure!(!files.is_empty(), "no flow files (.yaml) found");
    let mut bad = 0;
    for file in &files {
        match Flow::load(file) {
            Ok(flow) => println!(
                "ok    {} ({}, {:?}, {} steps, {} slots)",
                file.display(),
                flow.name(),
                flow.direction(),
                flow.step_names().count(),
                flow.slots().count()
            ),
            Err(errors) => {
                bad += 1;
                println!(
                    "error {}: {} problem(s)\n{errors}",
                    file.display(),
                    errors.0.len()
                );
            }
        }
    }
    anyhow::ensure!(bad == 0, "{bad} of {} flow files have errors", files.len());
    Ok(())
}

/// Answers the engine's requests with the real models, the same way the call pipeline does
/// (`switchboard_flow::model`).
struct ModelDriver<'a> {
    llm: Option<&'a LlmEngine>,
    runtime: &'a tokio::runtime::Runtime,
    stt: &'a mut Option<WhisperStt>,
    stt_model: Option<&'a str>,
    system_prompt: String,
    /// Time spent in the language model during the current scenario.
    model_time: Duration,
}

impl ScenarioDriver for ModelDriver<'_> {
    fn understand(&mut self, request: &UnderstandRequest) -> Understanding {
        let Some(llm) = self.llm else {
            return Understanding::NotUnderstood;
        };
        let started = Instant::now();
        let understood = self.runtime.block_on(model::understand(llm, request));
        self.model_time += started.elapsed();
        understood.unwrap_or_else(|e| {
            tracing::warn!("language model failed: {e}");
            Understanding::NotUnderstood
        })
    }

    fn respond(&mut self, instructions: &str, utterance: &str, _history: &[Line]) -> Option<String> {
        let llm = self.llm?;
        let started = Instant::now();
        let messages = model::respond_messages(&self.system_prompt, instructions, utterance);
        let reply = self
            .runtime
            .block_on(model::respond(llm, messages, CancelToken::new(), |_| {}));
        self.model_time += started.elapsed();
        match reply {
            Ok(text) => (!text.is_empty()).then_some(text),
            Err(e) => {
                tracing::warn!("language model failed: {e}");
                None
            }
        }
    }

    fn transcribe(&mut self, wav: &Path) -> Result<String, String> {
        if self.stt.is_none() {
            let path = super::resolve::model_path(switchboard_models::ModelKind::Whisper, self.stt_model)
                .map_err(|e| format!("{e:#}"))?;
            let mut config = WhisperConfig::new(&path);
            config.warm_up = false;
            *self.stt = Some(WhisperStt::load(config).map_err(|e| format!("loading speech-to-text: {e}"))?);
        }
        let stt = self.stt.as_ref().ok_or("speech-to-text not loaded")?;
        // The provider sends 8 kHz mu-law: hear the recording the way a caller's audio arrives.
        let samples =
            switchboard_audio::wav::read_wav_16k(wav).map_err(|e| format!("{}: {e}", wav.display()))?;
        let samples = switchboard_audio::telephone::phone_line(&samples);
        let transcript = stt.transcribe_blocking(samples).map_err(|e| e.to_string())?;
        Ok(transcript.text.trim().to_string())
    }
}

fn test(args: TestArgs) -> anyhow::Result<()> {
    let files = yaml_files(&args.paths)?;
    anyhow::ensure!(!files.is_empty(), "no scenario files (.yaml) found");
    let scenarios = files
        .iter()
        .map(|f| Scenario::load(f).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let flows = load_named(&args.flows, scenarios.iter().map(|s| s.flow.as_str()))?;

    let llm = if args.no_model {
        None
    } else {
        let path = super::chat::resolve_model(args.model.as_deref())?;
        let engine = LlmEngine::load(&path, EngineConfig::default())
            .with_context(|| format!("loading {}", path.display()))?;
        // Every scenario of a flow starts with the same system prompt: compute it once.
        for flow in flows.values() {
            engine
                .warm_up_blocking(vec![ChatMessage::system(flow.system_prompt())])
                .context("warming up the prompt cache")?;
        }
        Some(engine)
    };
    let mut stt = None;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    println!("| scenario | flow | result | outcome | model time |");
    println!("|---|---|---|---|---|");
    let mut failed: Vec<ScenarioReport> = Vec::new();
    let (mut passed, mut skipped) = (0, 0);
    for s in &scenarios {
        let Some(flow) = flows.get(&s.flow) else { continue };
        if s.needs_model && llm.is_none() {
            skipped += 1;
            println!("| {} | {} | skipped (needs the model) | | |", s.name, s.flow);
            continue;
        }
        let flow = if llm.is_none() {
            flow.clone().with_model_understanding(false)
        } else {
            flow.clone()
        };
        let mut driver = ModelDriver {
            llm: llm.as_ref(),
            runtime: &runtime,
            stt: &mut stt,
            stt_model: args.stt_model.as_deref(),
            system_prompt: flow.system_prompt().to_string(),
            model_time: Duration::ZERO,
        };
        let report = scenario::run(&flow, s, &mut driver);
        let outcome = report
            .record
            .outcome
            .map(|o| o.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {} | {} | {} ms |",
            s.name,
            s.flow,
            if report.passed() { "pass" } else { "FAIL" },
            outcome,
            driver.model_time.as_millis()
        );
        if args.verbose {
            eprintln!("{report}");
        }
        if report.passed() {
            passed += 1;
        } else {
            failed.push(report);
        }
    }
    println!(
        "\n{passed} passed, {} failed, {skipped} skipped of {}",
        failed.len(),
        scenarios.len()
    );
    if !args.verbose {
        for report in &failed {
            eprintln!("\n{report}");
        }
    }
    anyhow::ensure!(failed.is_empty(), "{} scenarios failed", failed.len());
    Ok(())
}
