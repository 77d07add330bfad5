//! Speech-to-text: what a recognizer takes and what it gives back.

use std::future::Future;
use std::time::Duration;

/// The sample rate every recognizer takes. Telephone audio (8 kHz) and WAV files at any rate are
/// resampled to it at the edge, so engines never see another rate.
pub const STT_SAMPLE_RATE: u32 = 16_000;

/// A piece of the transcript with its position in the utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: Duration,
    pub end: Duration,
    pub text: String,
}

/// Where the time of one transcription went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SttTimings {
    /// Time the request waited for a free inference thread.
    pub queued: Duration,
    /// Time spent inside the model.
    pub inference: Duration,
    /// The encoder window used, in mel frames of 20 ms (whisper's `audio_ctx`); 0 when not applicable.
    pub audio_ctx: u32,
}

/// The result of transcribing one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The whole text, segments joined and trimmed.
    pub text: String,
    pub segments: Vec<Segment>,
    /// Length of the audio that was transcribed.
    pub audio: Duration,
    pub timings: SttTimings,
}

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error("bad audio: {0}")]
    BadInput(String),
    #[error("speech-to-text is overloaded: {0} requests already waiting")]
    Overloaded(usize),
    #[error("speech-to-text engine has stopped")]
    Unavailable,
    #[error("transcription failed: {0}")]
    Failed(String),
}

/// A speech recognizer. Implementations run inference off the async runtime (on their own threads) and
/// are shared by every call, so `transcribe` takes `&self`.
pub trait SpeechToText: Send + Sync {
    /// Transcribes one utterance of mono audio at [`STT_SAMPLE_RATE`], samples in [-1, 1].
    fn transcribe(&self, samples: Vec<f32>) -> impl Future<Output = Result<Transcript, SttError>> + Send;

    /// Whether transcriptions can succeed now (readiness checks report it). Engines that cannot lose
    /// their model keep the default.
    fn is_available(&self) -> bool {
        true
    }
}
