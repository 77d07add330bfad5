//! Speech synthesis for switchboard: espeak-ng (libespeak-ng, in process) behind
//! [`switchboard_core::tts::TextToSpeech`], and the step that puts its audio on the phone line.
//!
//! Design:
//! - **espeak-ng, in process.** It is the one local synthesizer Debian ships with a C library, a small
//!   footprint (no model file to fetch) and output that whisper transcribes through a phone line (see
//!   *Voice* below). Running the `espeak-ng` program per phrase would cost a process start and a
//!   voice load (tens of milliseconds) each time; the library loads the voice once.
//! - **Raw bindings, confined.** The safe wrapper on crates.io (`espeakng` 0.2, 2023) depends on an
//!   older `espeakng-sys`, documents that its synthesis output is broken, and hides the library behind
//!   its own global singleton. So this crate uses `espeakng-sys` (bindgen over the system headers) and
//!   keeps every `unsafe` block in one module, `espeak`, with the workspace's `unsafe_code = "deny"`
//!   lifted only there and each block justified. The module exposes three safe operations:
//!   initialize, select a voice, synthesize text into a `Vec<i16>`.
//! - **One synthesis thread.** libespeak-ng keeps its voice, parameters and output callback in C
//!   globals and is not thread-safe, so exactly one thread talks to it at a time (a process-wide lock
//!   in `espeak` also covers a second engine in the same process). Synthesis is CPU work that must not
//!   run on the async workers; as with speech-to-text, callers send a job over a bounded channel and
//!   await a oneshot reply, so a burst of calls is refused with [`TtsError::Overloaded`] instead of
//!   growing a queue without limit, and a caller that gave up (barge-in, hang-up) costs nothing once
//!   the thread reaches its job. espeak-ng speaks 30–100× faster than real time, so one thread serves
//!   many calls.
//! - **Phrases, not replies.** The unit of work is one phrase (the call pipeline splits the model's
//!   streamed text at sentence and clause ends): the first phrase plays while the model is still
//!   writing, a barge-in wastes at most one phrase, and no single job holds the thread for long. The
//!   silence espeak-ng leaves around a clause is trimmed to [`EspeakConfig::keep_silence`] (50 ms), so
//!   phrases played back to back sound like one sentence rather than a list.
//! - **22,050 Hz until the edge.** The engine returns audio at espeak-ng's native rate; only
//!   [`to_phone_frames`] turns it into 8 kHz mu-law, with the audio crate's band-limited resampler and
//!   G.711 codec. Resampling once at the edge keeps one anti-aliasing filter in the path (every extra
//!   conversion adds filtering and delay), and the same [`Speech`] can feed other sinks (a WAV file,
//!   a 16 kHz WebRTC leg) without first being degraded to telephone quality.
//! - **Voice.** The default, `en-us+m3` at 160 wpm with a 30 ms word gap, was chosen by the word error
//!   rate of the default whisper model (tiny.en) on 15 agent phrases passed through the phone path
//!   (`cargo run --release -p switchboard-tts --example tts_bench -- voices`): 16–19 % for it against
//!   25 % for plain `en-us` and 26–30 % for `en` and `en-us+f3` at 170 wpm without a gap. espeak-ng's
//!   formant voices lose much of what tells consonants apart above 4 kHz ("deliver" is heard as
//!   "believe"), so a slightly slower rate and audible word boundaries matter over the phone; slower
//!   still (140–150 wpm) or a longer gap did not help further, and boosting the treble made it worse.

mod engine;
mod espeak;
mod phone;
mod trim;

pub use engine::{DEFAULT_VOICE, EspeakConfig, EspeakTts, Pending};
pub use phone::to_phone_frames;
pub use switchboard_audio::telephone::FRAME_BYTES;
pub use switchboard_core::tts::{Speech, TextToSpeech, TtsError};
pub use trim::trim_silence;

/// Starting the engine failed: the error says why.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid speech synthesis settings: {0}")]
    Config(String),
    #[error("espeak-ng could not start ({0}); install it with `apt-get install espeak-ng libespeak-ng-dev`")]
    Engine(String),
    #[error("could not start the speech synthesis thread: {0}")]
    Thread(String),
}
