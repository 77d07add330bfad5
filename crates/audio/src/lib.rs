//! Telephone audio for switchboard: G.711 mu-law, resampling, WAV files, voice activity and
//! end-of-turn detection.
//!
//! Everything here is pure, synchronous and allocation-light: the call pipeline runs it inline on
//! each 20 ms frame, and tests run it on whole clips. There is no async, no threads and no I/O
//! except in [`wav`], which sits at the edge.
//!
//! # Design
//!
//! - **G.711** ([`g711`]) is table-driven and bit-exact with Python's `audioop`, which the
//!   provider test vectors come from.
//! - **Resampling** ([`resample`]) uses rubato's synchronous FFT resampler: phone audio is 8 kHz
//!   and the recognizer wants 16 kHz, so the rate pair is fixed and a synchronous resampler is
//!   exact in length and cheaper than an asynchronous one. It is stateful across 20 ms frames
//!   (a zero-order hold or per-frame resampling would put a click at every frame boundary) and
//!   compensates its own delay, so a streamed signal and the same signal resampled in one go are
//!   identical.
//! - **VAD** ([`vad`]) is earshot, a small neural detector in pure Rust: no ONNX runtime, no
//!   native library, no model file to fetch, and it runs in microseconds per 16 ms frame, so a
//!   server can run one per call on a shared core. Energy-only detectors are fooled by line
//!   noise and breath; WebRTC's GMM VAD needs C. Around the raw score sits a small state machine
//!   that turns frame decisions into conversation events:
//!   - *hysteresis* (enter speech above the threshold, leave only below a lower one) because the
//!     per-frame score flickers inside words and on noisy lines, and a flicker must not end a
//!     turn or start one;
//!   - an *energy gate against an adaptive noise floor*, because a neural score alone rises on
//!     telephone line noise: measured without the gate, earshot turned 10 s of quiet white noise
//!     through the phone line into one 9.5 s "turn", and merged two sentences 1 s apart at 15 dB
//!     SNR into one. Requiring the window to stand 6 dB out of the quietest window of the last
//!     second removes both and costs nothing on clean speech;
//!   - *pre-roll*: the detector needs a few frames of evidence before it declares speech, by
//!     which time the first consonant has passed; the audio handed to the recognizer starts a
//!     little before the detected start so the first syllable is not clipped;
//!   - a *minimum speech length*, so a cough, a click or "mm" is reported as discarded rather
//!     than as a turn the agent must answer;
//!   - *pause* events on the first silent frame, so the call pipeline can start a speculative
//!     transcription while it waits to be sure the turn has ended.
//! - **Telephone** ([`telephone`]) glues the three for the wire: mu-law frames in, 16 kHz out,
//!   and the reverse for synthesized speech.

mod error;
pub mod g711;
pub mod resample;
pub mod telephone;
pub mod turns;
pub mod vad;
pub mod wav;

pub use error::AudioError;
pub use resample::{StreamResampler, resample};
pub use telephone::{MulawDecoder16k, MulawEncoder8k, phone_line};
pub use vad::{TurnDetector, TurnEvent, VadConfig};
pub use wav::{
    Audio, decode_wav, f32_to_i16, i16_to_f32, read_wav, read_wav_16k, write_wav_f32_as_i16, write_wav_i16,
};
