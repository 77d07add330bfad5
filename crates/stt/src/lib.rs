//! Speech-to-text for switchboard: whisper.cpp (through whisper-rs) behind
//! [`switchboard_core::stt::SpeechToText`].
//!
//! Design:
//! - **One model, dedicated threads.** The ggml weights are loaded once into a `WhisperContext` shared by
//!   every worker thread; each worker owns one `WhisperState` (whisper.cpp's scratch buffers), created at
//!   start and reused for every request, because creating a state allocates tens of megabytes. Inference
//!   never runs on the async runtime: callers send a job over a bounded channel and await a oneshot reply,
//!   so a burst of calls queues (or is refused with [`SttError::Overloaded`]) instead of starving the
//!   runtime's workers.
//! - **A window sized to the utterance.** Whisper encodes a fixed 30 s window (1500 encoder frames) whatever
//!   the input length, which costs about a second on two cores for a two-second phrase. whisper.cpp can
//!   encode a shorter window (`audio_ctx`); cut too tight it truncates speech or makes the decoder loop, so
//!   [`window::audio_ctx_for`] picks from a few safe buckets with margin, chosen by measuring word error rate
//!   on real speech (see `switchboard bench stt`).
//! - **Phone-call defaults.** English is forced (no language detection pass), each utterance is decoded
//!   without the previous one as context (a caller's turns are independent and a bad turn must not poison
//!   the next), and non-speech tokens such as `[BLANK_AUDIO]` are suppressed.

pub mod testset;
/// Speculative end-of-turn detection lives with the detector it wraps; re-exported for old paths.
pub use switchboard_audio::turns;
pub mod wer;
pub mod window;

mod engine;

pub use engine::{Pending, WhisperConfig, WhisperStt};
pub use switchboard_core::stt::{STT_SAMPLE_RATE, Segment, SpeechToText, SttError, SttTimings, Transcript};

/// Loading failed: the error says which file and why.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "whisper model file {path} could not be loaded ({reason}); fetch it with `switchboard models fetch`"
    )]
    Model { path: String, reason: String },
    #[error("could not start the speech-to-text thread: {0}")]
    Thread(String),
}
