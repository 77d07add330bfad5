//! `switchboard chat`: talk to the local language model in the terminal, or get one (structured)
//! answer with `--prompt`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use switchboard_core::llm::{Answer, CancelToken, ChatMessage, Constraint, GenerationParams, ReplyEvent};
use switchboard_llm::{EngineConfig, LlmEngine};

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Model name from the manifest (smollm2-135m, qwen2.5-0.5b) or path to a GGUF file; default: the
    /// manifest's default language model.
    #[arg(long)]
    pub model: Option<String>,
    /// System prompt.
    #[arg(long, default_value = "You are a helpful assistant. Answer briefly.")]
    pub system: String,
    /// Ask one question and print the answer instead of chatting.
    #[arg(long)]
    pub prompt: Option<String>,
    /// With --prompt: answer as a JSON object matching this JSON schema file.
    #[arg(long, requires = "prompt", conflicts_with = "labels")]
    pub json_schema: Option<PathBuf>,
    /// With --prompt: answer with exactly one of these comma-separated labels.
    #[arg(long, requires = "prompt", value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
}

/// A model name from the manifest (`smollm2-135m`, `qwen2.5-0.5b`) or a GGUF path; `None` is the
/// manifest's default language model.
pub fn resolve_model(name_or_path: Option<&str>) -> anyhow::Result<PathBuf> {
    super::resolve::model_path(switchboard_models::ModelKind::Llm, name_or_path)
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let path = resolve_model(args.model.as_deref())?;
    let engine = LlmEngine::load(&path, EngineConfig::default())
        .with_context(|| format!("loading {}", path.display()))?;
    let params = GenerationParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        ..GenerationParams::default()
    };
    let system = ChatMessage::system(args.system.clone());
    if let Some(prompt) = &args.prompt {
        let constraint = if let Some(schema) = &args.json_schema {
            Constraint::JsonSchema(
                std::fs::read_to_string(schema).with_context(|| format!("reading {}", schema.display()))?,
            )
        } else if let Some(labels) = &args.labels {
            Constraint::OneOf(labels.iter().map(|l| l.trim().to_string()).collect())
        } else {
            Constraint::None
        };
        let structured = constraint != Constraint::None;
        let answer = engine
            .answer_blocking(
                vec![system, ChatMessage::user(prompt.clone())],
                constraint,
                params,
            )
            .context("answering")?;
        match answer {
            Answer::Json(text) => println!("{text}"),
            Answer::Text(text) if !structured => println!("{text}"),
            other => println!(
                "{}",
                serde_json::to_string(&other.to_text()).context("encoding the answer")?
            ),
        }
        return Ok(());
    }

    engine
        .warm_up_blocking(vec![system.clone()])
        .context("computing the system prompt")?;
    let mut history = vec![system];
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!("{} ready; empty line or Ctrl-D to quit.", engine.info().name);
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("reading stdin")? == 0 || line.trim().is_empty() {
            break;
        }
        history.push(ChatMessage::user(line.trim()));
        let mut stream = engine
            .start_chat(history.clone(), params.clone(), CancelToken::new())
            .context("starting the reply")?;
        let mut reply = String::new();
        while let Some(event) = stream.blocking_next() {
            match event.context("generating")? {
                ReplyEvent::Text(delta) => {
                    reply.push_str(&delta);
                    write!(out, "{delta}")
                        .and_then(|_| out.flush())
                        .context("writing")?;
                }
                ReplyEvent::Finished(stats) => {
                    writeln!(out).context("writing")?;
                    tracing::info!(
                        prompt = stats.prompt_tokens,
                        cached = stats.cached_tokens,
                        generated = stats.generated_tokens,
                        ttft_ms = stats.time_to_first_token.as_millis() as u64,
                        "reply done"
                    );
                }
            }
        }
        history.push(ChatMessage::assistant(reply));
    }
    Ok(())
}
