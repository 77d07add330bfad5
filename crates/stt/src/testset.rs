//! The spoken test set that tests and benchmarks judge the recognizer by: sentences a caller might say,
//! synthesized at run time (Debian's `flite` and `espeak-ng` packages) so no recording is committed.
//!
//! Two kinds of voice, because they tell different things. flite's voices (`slt`, `kal`, `rms`) are
//! diphone/statistical voices that stay intelligible through a telephone line: they stand in for clear
//! speech, and the accuracy target is judged on them. espeak-ng's formant voice is robotic and loses much of
//! what distinguishes its consonants above 4 kHz: through the phone path whisper tiny.en misreads a quarter
//! of its words even with the full 30 s window, so it is kept as a hard case that shows regressions.

use std::path::Path;
use std::process::Command;

/// The sentences of `tests/data/phone_sentences.txt` (comments and blank lines dropped).
pub fn phone_sentences() -> Vec<&'static str> {
    include_str!("../../../tests/data/phone_sentences.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Utterances of about 1, 3 and 7 seconds, for latency measurements by length.
pub const TIMED_UTTERANCES: [&str; 3] = [
    "Sounds good.",
    "I would like to check the status of my order, please.",
    "Hi, I booked an appointment for next Tuesday, but something came up at work, so I need to move it to later in the week.",
];

/// A synthetic speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// A flite voice by name (`slt`, `kal`, `rms`, `awb`).
    Flite(&'static str),
    /// An espeak-ng voice by name (`en-us`).
    Espeak(&'static str),
}

impl std::fmt::Display for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Voice::Flite(v) => write!(f, "flite {v}"),
            Voice::Espeak(v) => write!(f, "espeak-ng {v}"),
        }
    }
}

/// The voices clear-speech accuracy is judged on.
pub const CLEAR_VOICES: [Voice; 3] = [Voice::Flite("slt"), Voice::Flite("kal"), Voice::Flite("rms")];
/// The hard case: espeak-ng's robotic formant voice.
pub const ESPEAK: Voice = Voice::Espeak("en-us");

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("could not run {0} ({1}); install it with `apt-get install flite espeak-ng` (or `make setup`)")]
    Missing(&'static str, std::io::Error),
    #[error("{0} failed: {1}")]
    Failed(&'static str, String),
    #[error(transparent)]
    Audio(#[from] switchboard_audio::AudioError),
    #[error("temporary file: {0}")]
    Io(#[from] std::io::Error),
}

/// Speaks `text` and returns it as 16 kHz mono samples.
pub fn synthesize(text: &str, voice: Voice) -> Result<Vec<f32>, SynthError> {
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("speech.wav");
    synthesize_to(text, voice, &wav)?;
    Ok(switchboard_audio::wav::read_wav_16k(&wav)?)
}

/// Speaks `text` into a WAV file (16-bit mono; the rate is the voice's own).
pub fn synthesize_to(text: &str, voice: Voice, wav: &Path) -> Result<(), SynthError> {
    let (program, mut cmd) = match voice {
        Voice::Flite(v) => {
            let mut c = Command::new("flite");
            c.args(["-voice", v, "-t", text, "-o"]).arg(wav);
            ("flite", c)
        }
        Voice::Espeak(v) => {
            let mut c = Command::new("espeak-ng");
            c.args(["-v", v, "-w"]).arg(wav).arg(text);
            ("espeak-ng", c)
        }
    };
    let out = cmd.output().map_err(|e| SynthError::Missing(program, e))?;
    if !out.status.success() {
        return Err(SynthError::Failed(
            program,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(())
}
