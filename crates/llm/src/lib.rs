//! Local language models for switchboard: quantized GGUF models on candle, behind
//! [`switchboard_core::llm::LanguageModel`].
//!
//! # What is in here, and why it is cut this way
//!
//! - [`model`]: the transformer (llama and qwen2 families), pure candle code: GGUF weights and an
//!   explicit [`model::KvCache`] in, logits out. Adapted from candle-transformers' quantized llama/qwen2
//!   because those keep the attention cache private inside the layers; with the cache as a value, a
//!   cached prompt is a clone and returning to a prefix shortens a view, and the model itself is `&self`.
//!   The architecture is read from `general.architecture`, never guessed from a file name.
//! - `quant`: the products of the quantized weights with one vector (a decode step) or with the rows
//!   of a prompt pass, on the weights in place: SIMD kernels for the block formats candle runs with
//!   scalar code (Q4_1, Q5_0) and for Q8_0, giving candle's reference results, with the products that
//!   share an input run as one job. [`model`] calls them on plain slices for decode steps and prompt
//!   passes alike, so a prompt token is computed exactly as a decode step would compute it.
//! - `pool`: the threads that share those products with the calling thread. The caller never waits
//!   for a helper that has not started, so a core taken by another process (speech, a build) slows
//!   decoding down instead of stalling it.
//! - [`tokenizer`]: the `tokenizers::Tokenizer` built from the GGUF metadata (candle's
//!   `TokenizerFromGguf`, with SmolLM2's pre-tokenizer fixed), the byte value of every token, and
//!   [`tokenizer::TextStream`], which turns tokens into text deltas on word boundaries (a character split
//!   over two tokens is held back until complete) so speech synthesis can start early.
//! - [`cache`]: the prompt cache. Every prompt's state is kept (within a token budget) and a new prompt
//!   resumes from the longest common token prefix with any of them, so the system prompt of a flow is
//!   computed once for all calls, and each turn of a call only pays for what the caller just said. It is
//!   automatic — matching on token ids needs no hint and cannot be wrong.
//! - [`constrain`]: constrained decoding over a byte-level grammar: labels (a trie), yes/no, integers,
//!   and JSON objects from a JSON-schema subset filled in key by key. Only tokens whose bytes keep the
//!   output inside the grammar are allowed, literal parts are forced without sampling, and every blank is
//!   bounded, so even a 135M-parameter model always returns something that parses.
//! - [`generate`]: the synchronous generation loop that owns all of the above; [`engine`] puts it on a
//!   dedicated, named thread behind a bounded queue (inference never runs on async workers), streams
//!   replies through a bounded channel, and implements the core trait.
//!
//! Cancellation (barge-in): [`switchboard_core::llm::CancelToken`] is checked before every token and
//! between prefill chunks, and dropping a [`ChatStream`] cancels too; the thread then takes the next
//! request at once.

pub mod cache;
pub mod constrain;
pub mod engine;
pub mod generate;
pub mod model;
mod pool;
mod quant;
pub mod tokenizer;

use std::path::PathBuf;

pub use engine::{ChatStream, LlmEngine};
pub use generate::{EngineConfig, Generator, ModelInfo};
pub use model::Architecture;

/// Errors from loading a model (requests report [`switchboard_core::llm::LlmError`]).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("bad GGUF model: {0}")]
    Gguf(String),
    #[error("unsupported model architecture `{0}` (supported: llama, qwen2)")]
    UnsupportedArchitecture(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("cannot start the inference thread: {0}")]
    Thread(std::io::Error),
}
