//! Language models: chat messages in, text out — streamed for speech, or constrained for decisions.
//!
//! A call flow uses a language model in two ways, and the trait has one method for each:
//!
//! - [`LanguageModel::stream_chat`] phrases a reply. The reply arrives as [`ReplyEvent::Text`] deltas that
//!   end on word boundaries, so speech synthesis can start on the first words while the model is still
//!   generating the rest. A [`CancelToken`] stops generation at the next token when the caller barges in.
//! - [`LanguageModel::answer`] makes a decision or extracts data: one short answer whose form is fixed by
//!   a [`Constraint`] (one of N labels, yes/no, an integer, a JSON object). Implementations must only ever
//!   return an [`Answer`] that satisfies the constraint; a flow branches on it without parsing free text.
//!
//! # Why these shapes
//!
//! - **No runtime in core.** The stream is an associated type implementing [`ReplyStream`], whose
//!   `next` returns a `Future`. The engine crate backs it with a bounded tokio channel; fakes in other
//!   crates' tests back it with a `VecDeque`. A `std::sync::mpsc::Receiver` would block an async worker,
//!   and an `Iterator` would force every consumer onto a blocking thread.
//! - **Methods return `impl Future + Send`** (like [`crate::stt::SpeechToText`]): callers are async tasks
//!   (one per call), the model is shared by every call (`&self`, `Send + Sync`), and inference itself runs
//!   on the engine's own thread, never on the async workers.
//! - **Cancellation is explicit and cheap**: a [`CancelToken`] is an atomic flag the caller can flip from
//!   anywhere (the barge-in detector runs in a different task than the consumer of the stream). Dropping
//!   the stream cancels as well.
//! - **Prompt caching is invisible** in this vocabulary: an engine reuses whatever prefix of the prompt it
//!   has already computed. [`LanguageModel::warm_up`] lets a caller pay for a known prefix (the system
//!   prompt of a flow) before the first turn; [`ReplyStats::cached_tokens`] shows whether it worked.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions for the model: persona, flow, rules.
    System,
    /// The caller (the human on the phone), or the text typed in a terminal.
    User,
    /// The agent's earlier replies.
    Assistant,
}

impl Role {
    /// The name chat templates use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// How to pick tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Upper bound on generated tokens (the reply stops earlier at the model's stop token).
    pub max_tokens: usize,
    /// 0 means greedy (always the most likely token): deterministic, and what decisions should use.
    pub temperature: f64,
    /// Nucleus sampling: sample among the most likely tokens whose probabilities add up to `top_p`.
    /// 1.0 disables it. Ignored when greedy.
    pub top_p: f64,
    /// > 1.0 discourages repeating tokens of the last `repeat_last_n` tokens; 1.0 disables it.
    pub repetition_penalty: f32,
    /// How many of the most recent tokens the repetition penalty looks at.
    pub repeat_last_n: usize,
    /// Seed of the sampler, so that sampled replies are reproducible.
    pub seed: u64,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            repetition_penalty: 1.1,
            repeat_last_n: 64,
            seed: 299_792_458,
        }
    }
}

impl GenerationParams {
    /// Greedy decoding without repetition penalty: the same input always gives the same output.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            max_tokens,
            temperature: 0.0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            ..Self::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// What form an [`LanguageModel::answer`] must take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// Free text (still stops at the model's stop token or `max_tokens`).
    None,
    /// Exactly one of these labels, verbatim.
    OneOf(Vec<String>),
    /// Yes or no.
    YesNo,
    /// A decimal integer, optionally negative.
    Integer,
    /// A JSON object matching this JSON schema (as JSON text). Engines support a documented subset:
    /// an object with string / number / integer / boolean / enum properties and `required`.
    JsonSchema(String),
}

/// A constrained answer; the variant follows the [`Constraint`] that was asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Text(String),
    /// One of the labels of [`Constraint::OneOf`], exactly as given.
    Label(String),
    YesNo(bool),
    Integer(i64),
    /// A JSON object (serialized) that parses and matches the schema.
    Json(String),
}

impl Answer {
    /// The answer as it would be printed: the label, `yes`/`no`, the number, or the JSON text.
    pub fn to_text(&self) -> String {
        match self {
            Answer::Text(s) | Answer::Label(s) | Answer::Json(s) => s.clone(),
            Answer::YesNo(b) => if *b { "yes" } else { "no" }.to_string(),
            Answer::Integer(i) => i.to_string(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced its stop token (or a constrained answer was complete).
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The [`CancelToken`] was cancelled or the stream was dropped.
    Cancelled,
}

/// Where the tokens and the time of one request went.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyStats {
    pub finish: FinishReason,
    /// Tokens in the prompt (after the chat template).
    pub prompt_tokens: usize,
    /// Prompt tokens whose state was reused from the prompt cache instead of being computed.
    pub cached_tokens: usize,
    pub generated_tokens: usize,
    /// Time the request waited for the model's thread.
    pub queued: Duration,
    /// Time from the start of processing to the first generated token.
    pub time_to_first_token: Duration,
    /// Total processing time (excluding the wait in the queue).
    pub total: Duration,
}

/// One item of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// More text. Deltas end on a word boundary (after whitespace or punctuation) except the last one,
    /// so each can go to speech synthesis as it is.
    Text(String),
    /// The reply is complete; nothing follows.
    Finished(ReplyStats),
}

/// A stream of [`ReplyEvent`]s. Ends (`None`) after [`ReplyEvent::Finished`] or an error.
pub trait ReplyStream: Send {
    fn next(&mut self) -> impl Future<Output = Option<Result<ReplyEvent, LlmError>>> + Send;
}

/// Stops a running generation at the next token. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The request cannot be served as given (unknown constraint form, prompt too long, …).
    #[error("bad request to the language model: {0}")]
    BadInput(String),
    /// Too many requests are already waiting; try again later or degrade.
    #[error("language model is overloaded: {0} requests already waiting")]
    Overloaded(usize),
    /// The engine has stopped (its thread ended).
    #[error("language model engine has stopped")]
    Unavailable,
    /// The request was cancelled before it produced an answer.
    #[error("language model request was cancelled")]
    Cancelled,
    #[error("language model failed: {0}")]
    Failed(String),
}

/// A chat model shared by every call: replies are streamed for speech, answers are constrained.
pub trait LanguageModel: Send + Sync {
    type Stream: ReplyStream;

    /// Starts generating the assistant's next message after `messages`. Returns once the request is
    /// queued; text arrives on the stream. `cancel` stops it (barge-in); so does dropping the stream.
    fn stream_chat(
        &self,
        messages: Vec<ChatMessage>,
        params: GenerationParams,
        cancel: CancelToken,
    ) -> impl Future<Output = Result<Self::Stream, LlmError>> + Send;

    /// One answer to `messages` (the last one is usually the question) in the form `constraint` fixes.
    /// Decoding is greedy when `params.temperature` is 0.
    fn answer(
        &self,
        messages: Vec<ChatMessage>,
        constraint: Constraint,
        params: GenerationParams,
    ) -> impl Future<Output = Result<Answer, LlmError>> + Send;

    /// How likely each of `labels` is as the whole answer to `messages`, normalized over the labels.
    /// Unlike [`LanguageModel::answer`] with [`Constraint::OneOf`], this says how sure the model is, so a
    /// caller can refuse to act on a guess.
    fn label_probabilities(
        &self,
        messages: Vec<ChatMessage>,
        labels: Vec<String>,
    ) -> impl Future<Output = Result<Vec<f32>, LlmError>> + Send;

    /// Computes and caches the state of a prompt prefix (e.g. a flow's system prompt) so the first turn
    /// that starts with it only pays for its new tokens. Engines without a cache do nothing.
    fn warm_up(&self, prefix: Vec<ChatMessage>) -> impl Future<Output = Result<(), LlmError>> + Send {
        let _ = prefix;
        async { Ok(()) }
    }

    /// Whether requests can succeed now: false while the model cannot be loaded (after a crash with
    /// the file gone, say), when every request fails as [`LlmError::Unavailable`]. Readiness checks
    /// report it. Engines that cannot lose their model keep the default.
    fn is_available(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_token_clones_share_the_flag() {
        let a = CancelToken::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        a.cancel();
        assert!(b.is_cancelled());
    }

    #[test]
    fn answer_text_forms() {
        assert_eq!(Answer::YesNo(true).to_text(), "yes");
        assert_eq!(Answer::Integer(-3).to_text(), "-3");
        assert_eq!(Answer::Label("billing".into()).to_text(), "billing");
    }

    #[test]
    fn zero_temperature_is_greedy() {
        assert!(GenerationParams::greedy(8).is_greedy());
        assert!(
            !GenerationParams {
                temperature: 0.7,
                ..GenerationParams::default()
            }
            .is_greedy()
        );
    }
}
