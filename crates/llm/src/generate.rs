//! Generation on one thread: the chat template, prefill through the prompt cache, sampling, streaming
//! and constrained decoding. Everything here is synchronous and owns the model; [`crate::LlmEngine`]
//! puts it on a dedicated thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use switchboard_core::llm::{
    Answer, CancelToken, ChatMessage, Constraint, FinishReason, GenerationParams, LlmError, ReplyStats, Role,
};

use crate::EngineError;
use crate::cache::PromptCache;
use crate::constrain::{Grammar, Matcher, ObjectSchema};
use crate::model::{Architecture, KvCache, Pass, Transformer};
use crate::tokenizer::{TextStream, TokenVocab};

/// What was loaded, for logs and benchmarks.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// `general.name` from the GGUF metadata (or the file stem).
    pub name: String,
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub context_length: usize,
    pub load_time: Duration,
    /// Prompts run on a dense copy of the weights (see [`EngineConfig::dense_prefill_budget_bytes`]).
    pub dense_prefill: bool,
}

/// Dense passes shorter than this are avoided: the matrix-product library multiplies 2–6 rows with
/// special kernels whose rounding differs from the general one (measured: a prompt whose last pass had
/// 2, 3, 4 or 6 tokens gave logits 0.003 off, and a different reply), so a short pass would make the
/// result depend on how much of the prompt was cached.
pub const MIN_DENSE_PASS: usize = 8;

/// How a prompt of `total` tokens whose first `cached` are in the cache is computed.
#[derive(Debug, PartialEq, Eq)]
struct PromptPasses {
    /// Where computing starts (at most `cached`).
    start: usize,
    ranges: Vec<std::ops::Range<usize>>,
}

fn prompt_passes(cached: usize, total: usize, chunk: usize, dense: bool) -> PromptPasses {
    let start = if dense && total - cached < MIN_DENSE_PASS {
        total.saturating_sub(MIN_DENSE_PASS)
    } else {
        cached
    };
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    let mut at = start;
    while at < total {
        let end = (at + chunk).min(total);
        match ranges.last_mut() {
            Some(last) if dense && end - at < MIN_DENSE_PASS => last.end = end,
            _ => ranges.push(at..end),
        }
        at = end;
    }
    PromptPasses { start, ranges }
}

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests that may wait for the inference thread before new ones are refused as overloaded.
    pub queue_capacity: usize,
    /// Token positions the prompt cache may hold over all its entries.
    pub prompt_cache_tokens: usize,
    /// Prompt tokens computed per forward pass; cancellation is checked between passes. A cached
    /// prefix is reused to the token: prompt passes compute every token the same way however the
    /// prompt is split (quantized passes exactly like decode steps, dense ones for passes of at least
    /// [`MIN_DENSE_PASS`] tokens), so a cached prompt gives the logits of an uncached one bit for bit.
    pub prefill_chunk: usize,
    /// Memory the engine may spend on a dense f32 copy of the projection weights for prompt passes
    /// (see `model::Linear`); models whose copy is larger run prompts on the quantized weights. None
    /// by default: since prompt passes run the quantized kernels on many tokens at once, they are the
    /// faster ones (SmolLM2-135M, 2 cores: 135 tokens at ~450 tokens/s vs ~250 dense, and a 29-token
    /// turn after a cached system prompt in 71 vs 188 ms), and the copy would cost ~430 MB.
    pub dense_prefill_budget_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 16,
            prompt_cache_tokens: 8192,
            prefill_chunk: 32,
            dense_prefill_budget_bytes: 0,
        }
    }
}

fn failed(e: impl std::fmt::Display) -> LlmError {
    LlmError::Failed(e.to_string())
}

/// The default system message of a ChatML chat template: the first quoted literal of the form
/// `<|im_start|>system\n…<|im_end|>` with no template expressions inside (SmolLM2 and Qwen2.5 both
/// write it that way). `None` when the template has none.
fn default_system_prompt(template: &str) -> Option<String> {
    const OPEN: &str = "<|im_start|>system";
    let mut rest = template;
    while let Some(at) = rest.find(OPEN) {
        let before = &rest[..at];
        let after = &rest[at + OPEN.len()..];
        rest = after;
        let Some(quote) = before.chars().last().filter(|c| *c == '\'' || *c == '"') else {
            continue;
        };
        let Some(literal) = after.split(quote).next() else {
            continue;
        };
        let literal = literal.replace("\\n", "\n");
        let Some(body) = literal.strip_prefix('\n') else {
            continue;
        };
        let Some((text, _)) = body.split_once("<|im_end|>") else {
            continue;
        };
        if !text.is_empty() && !text.contains("{{") && !text.contains("{%") {
            return Some(text.to_string());
        }
    }
    None
}

/// Picks the next token: repetition penalty, an optional mask of allowed tokens, then greedy or seeded
/// sampling (temperature, top-p) through candle's `LogitsProcessor`.
struct Sampler {
    processor: Option<LogitsProcessor>,
    penalty: f32,
    last_n: usize,
}

impl Sampler {
    fn new(params: &GenerationParams) -> Self {
        let processor = (!params.is_greedy()).then(|| {
            let top_p = (params.top_p > 0.0 && params.top_p < 1.0).then_some(params.top_p);
            LogitsProcessor::new(params.seed, Some(params.temperature), top_p)
        });
        Self {
            processor,
            penalty: params.repetition_penalty,
            last_n: params.repeat_last_n,
        }
    }

    /// `generated` holds only the tokens of this reply, never the prompt: penalizing the prompt would
    /// punish the template's own tokens and every word of the question, so a small model asked "What
    /// is the capital of France?" is pushed away from "The capital of France is Paris" into
    /// near-synonyms and other languages.
    fn pick(
        &mut self,
        logits: &Tensor,
        generated: &[u32],
        allowed: Option<&[bool]>,
    ) -> Result<u32, LlmError> {
        let mut v: Vec<f32> = logits.to_vec1().map_err(failed)?;
        if self.penalty != 1.0 && self.last_n > 0 {
            let start = generated.len().saturating_sub(self.last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &generated[start..] {
                if seen.insert(t)
                    && let Some(l) = v.get_mut(t as usize)
                {
                    *l = if *l >= 0.0 {
                        *l / self.penalty
                    } else {
                        *l * self.penalty
                    };
                }
            }
        }
        if let Some(allowed) = allowed {
            for (l, ok) in v.iter_mut().zip(allowed.iter().chain(std::iter::repeat(&false))) {
                if !ok {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        match &mut self.processor {
            None => v
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u32)
                .ok_or_else(|| failed("empty logits")),
            Some(p) => {
                let len = v.len();
                let t = Tensor::from_vec(v, len, &Device::Cpu).map_err(failed)?;
                p.sample(&t).map_err(failed)
            }
        }
    }
}

/// The result of processing a prompt.
struct Prefilled {
    kv: KvCache,
    logits: Tensor,
    cached: usize,
}

/// A loaded model with its tokenizer and prompt cache. Not shared: one thread owns it.
#[derive(Debug)]
pub struct Generator {
    model: Transformer,
    vocab: TokenVocab,
    cache: PromptCache,
    info: ModelInfo,
    config: EngineConfig,
    /// `"\n"` after `<|im_end|>`, encoded once.
    newline: Vec<u32>,
    /// The system message the model's own chat template inserts when a conversation has none
    /// (SmolLM2: "You are a helpful AI assistant named SmolLM, …"); the model was tuned with it.
    default_system: Option<String>,
    /// A finished reply whose tokens still have to be recomputed as prompt (see [`Generator::settle`]).
    unsettled: Option<Unsettled>,
    /// Recent [`Generator::label_probabilities`] results.
    label_scores: LabelScores,
}

/// The last few label scorings, by prompt and labels. The model is deterministic, so a repeated
/// question has the same answer; flows ask one every turn that needs the model: the calibration
/// prior, the same content-free answer to the same step's question on every call.
#[derive(Debug, Default)]
struct LabelScores {
    entries: std::collections::VecDeque<(Vec<u32>, Vec<String>, Vec<f32>)>,
}

impl LabelScores {
    const CAPACITY: usize = 64;

    fn get(&mut self, prompt: &[u32], labels: &[String]) -> Option<Vec<f32>> {
        let at = self
            .entries
            .iter()
            .position(|(p, l, _)| p == prompt && l == labels)?;
        let entry = self.entries.remove(at)?;
        let found = entry.2.clone();
        self.entries.push_front(entry);
        Some(found)
    }

    fn insert(&mut self, prompt: Vec<u32>, labels: &[String], probabilities: Vec<f32>) {
        self.entries.truncate(Self::CAPACITY - 1);
        self.entries.push_front((prompt, labels.to_vec(), probabilities));
    }
}

/// The state after a prompt and the reply generated from it, waiting to be cached.
#[derive(Debug)]
struct Unsettled {
    prompt: Vec<u32>,
    prompt_kv: KvCache,
    reply: Vec<u32>,
}

impl Generator {
    /// Loads a GGUF file; the architecture comes from `general.architecture`.
    pub fn load(path: &Path, config: EngineConfig) -> Result<Self, EngineError> {
        let start = Instant::now();
        let mut file = std::fs::File::open(path).map_err(|e| EngineError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let content = candle_core::quantized::gguf_file::Content::read(&mut file)
            .map_err(|e| EngineError::Gguf(format!("{}: {e}", path.display())))?;
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if Architecture::from_gguf_name(&arch).is_none() {
            return Err(EngineError::UnsupportedArchitecture(arch));
        }
        let vocab = TokenVocab::from_gguf(&content)?;
        let model = Transformer::from_gguf(
            &content,
            &mut file,
            &Device::Cpu,
            config.dense_prefill_budget_bytes,
        )
        .map_err(|e| EngineError::Gguf(format!("{}: {e}", path.display())))?;
        let name = content
            .metadata
            .get("general.name")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let newline = vocab.encode("\n")?;
        let default_system = content
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .and_then(|t| default_system_prompt(t));
        let c = model.config();
        let info = ModelInfo {
            path: path.to_path_buf(),
            name,
            architecture: c.architecture,
            vocab_size: c.vocab_size,
            context_length: c.context_length,
            load_time: start.elapsed(),
            dense_prefill: model.dense_prefill(),
        };
        Ok(Self {
            cache: PromptCache::new(config.prompt_cache_tokens),
            model,
            vocab,
            info,
            config,
            newline,
            default_system,
            unsettled: None,
            label_scores: LabelScores::default(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn vocab(&self) -> &TokenVocab {
        &self.vocab
    }

    /// ChatML: `<|im_start|>role\ncontent<|im_end|>\n` per message, then `<|im_start|>assistant\n` when
    /// `generation_prompt`. Like the model's own template, a conversation without a system message gets
    /// the template's default one. Message text is encoded literally (it cannot inject control tokens),
    /// and each message is encoded on its own, so a conversation's tokens always start with the tokens
    /// of its first messages — what makes the prompt cache hit.
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        generation_prompt: bool,
    ) -> Result<Vec<u32>, EngineError> {
        let mut ids = Vec::new();
        let mut encode = |role: Role, content: &str| -> Result<(), EngineError> {
            ids.push(self.vocab.im_start);
            ids.extend(self.vocab.encode(&format!("{role}\n{content}"))?);
            ids.push(self.vocab.im_end);
            ids.extend(&self.newline);
            Ok(())
        };
        if let Some(system) = &self.default_system
            && messages.first().is_none_or(|m| m.role != Role::System)
        {
            encode(Role::System, system)?;
        }
        for m in messages {
            encode(m.role, &m.content)?;
        }
        if generation_prompt {
            ids.push(self.vocab.im_start);
            ids.extend(self.vocab.encode("assistant\n")?);
        }
        Ok(ids)
    }

    /// Caches the last reply as if its tokens had been part of a prompt. The engine calls this once the
    /// reply has been delivered, while the caller listens to it; a request that comes first does it
    /// itself, so the cache never depends on timing.
    pub fn settle(&mut self) {
        let Some(Unsettled {
            mut prompt,
            mut prompt_kv,
            reply,
        }) = self.unsettled.take()
        else {
            return;
        };
        let cached = prompt.len();
        prompt.extend_from_slice(&reply);
        let passes = prompt_passes(cached, prompt.len(), self.config.prefill_chunk.max(1), true);
        let computed = prompt_kv.truncate(passes.start).and_then(|()| {
            passes.ranges.into_iter().try_for_each(|r| {
                self.model
                    .forward(&prompt[r], &mut prompt_kv, Pass::Prompt)
                    .map(drop)
            })
        });
        if let Err(e) = computed {
            tracing::warn!("caching the last reply failed: {e}");
            return;
        }
        self.cache.insert(prompt, prompt_kv);
    }

    fn prefill(&mut self, tokens: &[u32], cancel: &CancelToken) -> Result<Prefilled, LlmError> {
        self.settle();
        if tokens.is_empty() {
            return Err(LlmError::BadInput("empty prompt".into()));
        }
        if tokens.len() >= self.info.context_length {
            return Err(LlmError::BadInput(format!(
                "prompt of {} tokens does not fit the context of {}",
                tokens.len(),
                self.info.context_length
            )));
        }
        let chunk = self.config.prefill_chunk.max(1);
        let dense = self.model.dense_prefill();
        // Prompt passes give the same result however the prompt is split (see `prefill_chunk`), so
        // a cached prefix is reused to the token.
        let (mut kv, cached) = match self.cache.lookup(tokens).map_err(failed)? {
            Some(hit) => hit,
            None => (self.model.new_cache(), 0),
        };
        let passes = prompt_passes(cached, tokens.len(), chunk, dense);
        if passes.start < cached {
            kv.truncate(passes.start).map_err(failed)?;
        }
        let mut logits = None;
        for range in passes.ranges {
            if cancel.is_cancelled() {
                return Err(LlmError::Cancelled);
            }
            logits = Some(
                self.model
                    .forward(&tokens[range], &mut kv, Pass::Prompt)
                    .map_err(failed)?,
            );
        }
        let logits = logits.ok_or_else(|| failed("nothing to compute"))?;
        Ok(Prefilled {
            kv,
            logits,
            cached: passes.start,
        })
    }

    /// Computes and caches `prefix` (messages without a generation prompt).
    pub fn warm_up(&mut self, prefix: &[ChatMessage]) -> Result<(), LlmError> {
        let tokens = self.encode_chat(prefix, false).map_err(failed)?;
        let p = self.prefill(&tokens, &CancelToken::new())?;
        self.cache.insert(tokens, p.kv);
        Ok(())
    }

    pub fn clear_cache(&mut self) {
        self.unsettled = None;
        self.cache.clear();
        self.label_scores = LabelScores::default();
    }

    /// Generates the assistant's reply, calling `emit` with each word-boundary text delta. `emit`
    /// returns `false` when nobody listens any more, which cancels like the token does.
    pub fn chat(
        &mut self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        cancel: &CancelToken,
        mut emit: impl FnMut(String) -> bool,
    ) -> Result<ReplyStats, LlmError> {
        let start = Instant::now();
        let prompt = self.encode_chat(messages, true).map_err(failed)?;
        let Prefilled {
            mut kv,
            mut logits,
            cached,
        } = self.prefill(&prompt, cancel)?;
        let prompt_kv = kv.clone();
        self.cache.insert(prompt.clone(), kv.clone());

        let mut sampler = Sampler::new(params);
        let mut text = TextStream::new();
        let mut history = prompt.clone();
        let mut ttft = None;
        let max_tokens = params
            .max_tokens
            .min(self.info.context_length.saturating_sub(prompt.len() + 1));
        let finish = loop {
            if cancel.is_cancelled() {
                break FinishReason::Cancelled;
            }
            if history.len() - prompt.len() >= max_tokens {
                break FinishReason::Length;
            }
            let token = sampler.pick(&logits, &history[prompt.len()..], None)?;
            ttft.get_or_insert_with(|| start.elapsed());
            if self.vocab.is_stop(token) {
                break FinishReason::Stop;
            }
            history.push(token);
            if let Some(delta) = self.vocab.token_bytes(token).and_then(|b| text.push(b))
                && !emit(delta)
            {
                break FinishReason::Cancelled;
            }
            logits = self
                .model
                .forward(&[token], &mut kv, Pass::Decode)
                .map_err(failed)?;
        };
        // Remember the whole exchange, so the next turn of this conversation only computes what is
        // new. With dense prompt passes the reply's tokens are computed again as prompt first (in
        // `settle`, after the reply has been delivered): decode passes use the quantized weights, and
        // a cache holding their state would make the next turn differ from a fresh computation.
        if self.model.dense_prefill() {
            if finish != FinishReason::Cancelled {
                self.unsettled = Some(Unsettled {
                    prompt: prompt.clone(),
                    prompt_kv,
                    reply: history[prompt.len()..].to_vec(),
                });
            }
        } else if kv.len() == history.len() {
            self.cache.insert(history.clone(), kv);
        }
        if finish != FinishReason::Cancelled
            && let Some(rest) = text.finish()
        {
            emit(rest);
        }
        Ok(ReplyStats {
            finish,
            prompt_tokens: prompt.len(),
            cached_tokens: cached,
            generated_tokens: history.len() - prompt.len(),
            queued: Duration::ZERO,
            time_to_first_token: ttft.unwrap_or_else(|| start.elapsed()),
            total: start.elapsed(),
        })
    }

    /// How likely each label is as the whole answer to `messages`: the probability of its tokens
    /// followed by the stop token, normalized over the labels.
    ///
    /// Why score instead of generating: constrained generation always ends in some label, and a small
    /// model's first token decides it; the whole-label probability also tells how sure the model is,
    /// so a caller can treat a weak winner as "not understood" instead of acting on a guess.
    pub fn label_probabilities(
        &mut self,
        messages: &[ChatMessage],
        labels: &[String],
        cancel: &CancelToken,
    ) -> Result<Vec<f32>, LlmError> {
        if labels.is_empty() {
            return Err(LlmError::BadInput("no labels to score".into()));
        }
        let prompt = self.encode_chat(messages, true).map_err(failed)?;
        if let Some(known) = self.label_scores.get(&prompt, labels) {
            return Ok(known);
        }
        let Prefilled { kv, logits, .. } = self.prefill(&prompt, cancel)?;
        self.cache.insert(prompt.clone(), kv.clone());
        let stop = *self
            .vocab
            .stop_tokens()
            .first()
            .ok_or_else(|| failed("the model has no stop token"))?;
        let first = candle_nn::ops::log_softmax(&logits, 0)
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(failed)?;
        // Each label's tokens go through one-token decode steps on the quantized weights, on one
        // working copy of the cache cut back to the prompt before each label (copied once, not per
        // label). A label is a few tokens; a prompt pass over them on the dense f32 copy, when one
        // is configured, would read the whole copy (about 400 MB for SmolLM2) per label: with ten
        // labels that was most of a second per understanding, and the flows ask twice per turn.
        let base = kv.len();
        let mut work = kv;
        let mut scores = Vec::with_capacity(labels.len());
        for label in labels {
            let tokens = self.vocab.encode(label).map_err(failed)?;
            let Some(&t0) = tokens.first() else {
                scores.push(f32::NEG_INFINITY);
                continue;
            };
            let mut score = first.get(t0 as usize).copied().unwrap_or(f32::NEG_INFINITY);
            work.truncate(base).map_err(failed)?;
            let next = tokens.iter().skip(1).copied().chain([stop]);
            for (&token, want) in tokens.iter().zip(next) {
                if cancel.is_cancelled() {
                    return Err(LlmError::Cancelled);
                }
                let row = self
                    .model
                    .forward(&[token], &mut work, Pass::Decode)
                    .and_then(|l| candle_nn::ops::log_softmax(&l, 0))
                    .and_then(|l| l.to_vec1::<f32>())
                    .map_err(failed)?;
                score += row.get(want as usize).copied().unwrap_or(f32::NEG_INFINITY);
            }
            scores.push(score);
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let probabilities: Vec<f32> = exp.into_iter().map(|e| e / sum).collect();
        self.label_scores.insert(prompt, labels, probabilities.clone());
        Ok(probabilities)
    }

    /// One answer in the form `constraint` fixes.
    pub fn answer(
        &mut self,
        messages: &[ChatMessage],
        constraint: &Constraint,
        params: &GenerationParams,
        cancel: &CancelToken,
    ) -> Result<Answer, LlmError> {
        match constraint {
            Constraint::None => {
                let mut out = String::new();
                let stats = self.chat(messages, params, cancel, |d| {
                    out.push_str(&d);
                    true
                })?;
                if stats.finish == FinishReason::Cancelled {
                    return Err(LlmError::Cancelled);
                }
                Ok(Answer::Text(out))
            }
            Constraint::OneOf(labels) => {
                if labels.is_empty() || labels.iter().any(|l| l.is_empty()) {
                    return Err(LlmError::BadInput("labels must be non-empty".into()));
                }
                let grammar = Grammar::one_of(labels);
                let (_, m) = self.constrained(messages, &grammar, params, cancel)?;
                let i = m
                    .matched_alternative()
                    .ok_or_else(|| failed("constrained decoding ended without a label"))?;
                Ok(Answer::Label(labels[i].clone()))
            }
            Constraint::YesNo => {
                let options: Vec<String> = ["yes", "no", "Yes", "No", "YES", "NO"]
                    .into_iter()
                    .map(String::from)
                    .collect();
                let grammar = Grammar::one_of(&options);
                let (_, m) = self.constrained(messages, &grammar, params, cancel)?;
                let i = m
                    .matched_alternative()
                    .ok_or_else(|| failed("constrained decoding ended without yes or no"))?;
                Ok(Answer::YesNo(i % 2 == 0))
            }
            Constraint::Integer => {
                let grammar = Grammar::integer();
                let (text, _) = self.constrained(messages, &grammar, params, cancel)?;
                text.parse()
                    .map(Answer::Integer)
                    .map_err(|e| failed(format!("integer `{text}`: {e}")))
            }
            Constraint::JsonSchema(schema) => {
                let schema = ObjectSchema::parse(schema).map_err(|e| LlmError::BadInput(e.to_string()))?;
                let grammar = schema.grammar();
                let (text, _) = self.constrained(messages, &grammar, params, cancel)?;
                // The grammar guarantees this; checking costs microseconds and turns a bug into an
                // error instead of bad data in a flow.
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| failed(format!("constrained output is not JSON ({e}): {text}")))?;
                Ok(Answer::Json(text))
            }
        }
    }

    /// Decodes under `grammar` until it is complete; returns the text and the final matcher.
    fn constrained<'g>(
        &mut self,
        messages: &[ChatMessage],
        grammar: &'g Grammar,
        params: &GenerationParams,
        cancel: &CancelToken,
    ) -> Result<(String, Matcher<'g>), LlmError> {
        let prompt = self.encode_chat(messages, true).map_err(failed)?;
        let Prefilled {
            mut kv, mut logits, ..
        } = self.prefill(&prompt, cancel)?;
        self.cache.insert(prompt.clone(), kv.clone());
        let mut sampler = Sampler::new(params);
        let prompt_len = prompt.len();
        let mut history = prompt;
        let mut m = Matcher::new(grammar);
        let mut out = Vec::new();
        let mut allowed = vec![false; self.info.vocab_size];
        // Every blank is bounded, so the grammar completes; this only guards against a bug.
        for _ in 0..4096 {
            if cancel.is_cancelled() {
                return Err(LlmError::Cancelled);
            }
            let forced = m.forced();
            if !forced.is_empty() {
                if !m.feed_all(&forced) {
                    return Err(failed("grammar rejected its own literal"));
                }
                out.extend_from_slice(&forced);
                if m.can_finish() && !m.can_continue() {
                    break;
                }
                let text = String::from_utf8_lossy(&forced);
                let tokens = self.vocab.encode(&text).map_err(failed)?;
                logits = self
                    .model
                    .forward(&tokens, &mut kv, Pass::Prompt)
                    .map_err(failed)?;
                history.extend(tokens);
                continue;
            }
            let can_finish = m.can_finish();
            if can_finish && !m.can_continue() {
                break;
            }
            let mut any = false;
            for (id, ok) in allowed.iter_mut().enumerate() {
                *ok = match self.vocab.token_bytes(id as u32) {
                    Some(b) if !b.is_empty() => {
                        let mut probe = m;
                        probe.feed_all(b)
                    }
                    _ => false,
                };
                any |= *ok;
            }
            if can_finish {
                for &s in self.vocab.stop_tokens() {
                    if let Some(ok) = allowed.get_mut(s as usize) {
                        *ok = true;
                        any = true;
                    }
                }
            }
            if !any {
                return Err(failed("no token can continue the constrained answer"));
            }
            let token = sampler.pick(&logits, &history[prompt_len..], Some(&allowed))?;
            if self.vocab.is_stop(token) {
                break;
            }
            let bytes = self.vocab.token_bytes(token).unwrap_or_default();
            if !m.feed_all(bytes) {
                return Err(failed("sampled a token outside the grammar"));
            }
            out.extend_from_slice(bytes);
            history.push(token);
            if m.can_finish() && !m.can_continue() {
                break;
            }
            logits = self
                .model
                .forward(&[token], &mut kv, Pass::Decode)
                .map_err(failed)?;
        }
        if !m.can_finish() {
            return Err(failed("constrained answer did not complete"));
        }
        let text = String::from_utf8(out).map_err(failed)?;
        Ok((text, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // lists of passes that happen to hold one
    fn dense_passes_are_never_short() {
        let p = prompt_passes(30, 34, 32, true);
        assert_eq!(
            p,
            PromptPasses {
                start: 26,
                ranges: vec![(26..34)]
            },
            "backs off into the cache"
        );
        let p = prompt_passes(0, 66, 32, true);
        assert_eq!(
            p.ranges,
            vec![0..32, 32..66],
            "a short tail joins the pass before it"
        );
        let p = prompt_passes(0, 5, 32, true);
        assert_eq!(
            p,
            PromptPasses {
                start: 0,
                ranges: vec![(0..5)]
            },
            "a tiny prompt is one pass"
        );
        let p = prompt_passes(19, 34, 32, true);
        assert_eq!(p.ranges, vec![(19..34)]);
        let p = prompt_passes(32, 34, 32, false);
        assert_eq!(
            p,
            PromptPasses {
                start: 32,
                ranges: vec![(32..34)]
            },
            "quantized: from the cached position, any pass length"
        );
    }

    #[test]
    fn default_system_prompt_comes_from_the_chat_template() {
        let smollm = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}\
{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}\
{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
        assert_eq!(
            default_system_prompt(smollm).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        // Qwen2.5: the tools branch opens a system message around an expression first; the escaped
        // `\n` form is accepted too.
        let qwen = r#"{%- if tools %}{{- '<|im_start|>system\n' }}{{- messages[0]['content'] }}{%- else %}
{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}"#;
        assert_eq!(
            default_system_prompt(qwen).as_deref(),
            Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        );
        assert_eq!(default_system_prompt("{{ '<|im_start|>' + m['role'] }}"), None);
    }

    #[test]
    fn repetition_penalty_looks_only_at_generated_tokens() -> Result<(), LlmError> {
        let mut sampler = Sampler::new(&GenerationParams {
            repetition_penalty: 2.0,
            ..GenerationParams::greedy(8)
        });
        let logits = Tensor::new(&[1.0f32, 3.0, 2.0], &Device::Cpu).map_err(failed)?;
        assert_eq!(sampler.pick(&logits, &[], None)?, 1);
        assert_eq!(sampler.pick(&logits, &[1], None)?, 2, "3.0 / 2 < 2.0");
        assert_eq!(sampler.pick(&logits, &[1], Some(&[true, true, false]))?, 1);
        Ok(())
    }
}
