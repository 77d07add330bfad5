//! Text-to-speech: a phrase in, audio out.
//!
//! The call pipeline speaks a reply phrase by phrase (it splits the model's streamed text at sentence
//! and clause ends), so the unit here is one phrase, not a whole reply: the first phrase can play while
//! the model is still writing the rest, and a barge-in only wastes the phrase being synthesized.

use std::future::Future;
use std::time::Duration;

/// Synthesized speech: mono 16-bit PCM at the engine's own rate (the pipeline resamples it for the
/// phone line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speech {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl Speech {
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.sample_rate))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// Nothing speakable (empty text, or text longer than the engine accepts).
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("speech synthesis is overloaded: {0} requests already waiting")]
    Overloaded(usize),
    #[error("speech synthesis has stopped")]
    Unavailable,
    #[error("speech synthesis failed: {0}")]
    Failed(String),
}

/// A speech synthesizer shared by every call. Implementations synthesize off the async runtime.
pub trait TextToSpeech: Send + Sync {
    /// The rate of the audio [`TextToSpeech::synthesize`] returns.
    fn sample_rate(&self) -> u32;
    /// Speaks one phrase.
    fn synthesize(&self, text: String) -> impl Future<Output = Result<Speech, TtsError>> + Send;
}
