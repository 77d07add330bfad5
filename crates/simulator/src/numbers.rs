//! The numbers file: how each called number answers, in TOML (or JSON, by the `.json` extension).
//!
//! ```toml
//! voice = "en-us+m3"              # espeak-ng voice for `say` turns (default: the runtime's own)
//!
//! [default]                       # every number not listed (default: a person who only listens)
//! answer = "human"
//!
//! [numbers."+15555550101"]
//! answer = "human"
//! turns = [{ say = "Yes, Tuesday works." }, { wav = "audio/thanks.wav" }, { dtmf = "1" }]
//!
//! [numbers."+15555550102"]
//! answer = "voicemail"
//! greeting_seconds = 3
//!
//! [numbers."+15555550103"]        # busy the first time, a person the second (and after)
//! attempts = [{ answer = "busy" }, { answer = "human", turns = [{ say = "Hello?" }] }]
//!
//! [numbers."+15555550104"]
//! fault = "slow_create"
//! delay_seconds = 12
//! ```
//!
//! Parsing ([`NumbersFile`]) and resolving ([`NumbersFile::resolve`] → [`Plan`]) are separate steps
//! so that this crate never synthesizes speech itself: the caller of `resolve` brings the audio for
//! every text in [`NumbersFile::texts`], made with whatever voice it has.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::caller::{Turn, wav_to_mulaw};

/// How a called party answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// A person: picks up and takes their turns on the media stream.
    #[default]
    Human,
    /// An answering machine: a greeting, a beep, then it records what it hears.
    Voicemail,
    Busy,
    NoAnswer,
    /// The call cannot be completed (a bad or unreachable number).
    Failed,
}

/// A failure of the provider's API itself, for testing how the runtime handles doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The create request is refused with a 400; no call is placed.
    Reject,
    /// The call is placed, but the create request answers 500.
    ErrorAfterCreate,
    /// The call is placed at once, but the create request answers only after `delay_seconds`.
    SlowCreate,
}

/// One turn as written in the file; exactly one key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TurnSpec {
    /// Words, synthesized.
    Say(String),
    /// A recording (any WAV format), relative to the numbers file.
    Wav(PathBuf),
    /// Keys pressed.
    Dtmf(String),
}

/// One number's entry as written; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub answer: Option<Answer>,
    #[serde(default)]
    pub turns: Vec<TurnSpec>,
    /// Ringing before a person or machine picks up (default 2).
    pub ring_seconds: Option<f64>,
    /// A machine's greeting before the beep (default 4).
    pub greeting_seconds: Option<f64>,
    pub fault: Option<FaultKind>,
    /// How long `slow_create` holds the create request (default 20, past the runtime's 15 s timeout).
    pub delay_seconds: Option<f64>,
    /// The longest the answered call may last (default 120).
    pub max_seconds: Option<f64>,
    /// One entry per successive create request to the number; the last one repeats.
    pub attempts: Option<Vec<Spec>>,
}

/// The numbers file as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumbersFile {
    /// The espeak-ng voice for `say` turns.
    pub voice: Option<String>,
    pub default: Option<Spec>,
    #[serde(default)]
    pub numbers: BTreeMap<String, Spec>,
}

/// Why the numbers file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
    #[error("{at}: reading {path}: {source}")]
    Audio {
        at: String,
        path: PathBuf,
        #[source]
        source: switchboard_audio::AudioError,
    },
}

/// An API fault, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Reject,
    ErrorAfterCreate,
    SlowCreate(Duration),
}

impl Fault {
    pub fn kind(self) -> FaultKind {
        match self {
            Fault::Reject => FaultKind::Reject,
            Fault::ErrorAfterCreate => FaultKind::ErrorAfterCreate,
            Fault::SlowCreate(_) => FaultKind::SlowCreate,
        }
    }
}

/// How one call to a number goes, ready to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    pub answer: Answer,
    pub turns: Vec<Turn>,
    pub ring: Duration,
    pub greeting: Duration,
    pub fault: Option<Fault>,
    pub max: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            answer: Answer::Human,
            turns: Vec::new(),
            ring: Duration::from_secs(2),
            greeting: Duration::from_secs(4),
            fault: None,
            max: Duration::from_secs(120),
        }
    }
}

/// Every number's behaviours, resolved: audio loaded, times checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    default: Vec<Behaviour>,
    numbers: HashMap<String, Vec<Behaviour>>,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            default: vec![Behaviour::default()],
            numbers: HashMap::new(),
        }
    }
}

impl Plan {
    /// How the `nth` create request (from 0) to `to` goes.
    pub fn behaviour(&self, to: &str, nth: usize) -> &Behaviour {
        let list = self.numbers.get(to).unwrap_or(&self.default);
        // Never empty: resolve refuses an empty `attempts`.
        &list[nth.min(list.len() - 1)]
    }

    /// Numbers with an entry of their own.
    pub fn listed(&self) -> usize {
        self.numbers.len()
    }
}

impl NumbersFile {
    /// Reads a TOML file, or JSON when the name ends in `.json`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    fn specs(&self) -> impl Iterator<Item = &Spec> {
        let top = self.default.iter().chain(self.numbers.values());
        top.flat_map(|s| std::iter::once(s).chain(s.attempts.iter().flatten()))
    }

    /// Every text a `say` turn speaks, for the caller of [`NumbersFile::resolve`] to synthesize.
    pub fn texts(&self) -> BTreeSet<&str> {
        self.specs()
            .flat_map(|s| &s.turns)
            .filter_map(|t| match t {
                TurnSpec::Say(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Checks every entry and loads its audio: WAV paths relative to `base_dir`, and the speech for
    /// each text of [`NumbersFile::texts`] (8 kHz mu-law) from `speech`.
    pub fn resolve(&self, base_dir: &Path, speech: &HashMap<String, Vec<u8>>) -> Result<Plan, ConfigError> {
        let mut audio = Audio {
            base_dir,
            speech,
            loaded: HashMap::new(),
        };
        let default = match &self.default {
            Some(spec) => entry(spec, "default", &mut audio)?,
            None => vec![Behaviour::default()],
        };
        let mut numbers = HashMap::new();
        for (number, spec) in &self.numbers {
            let at = format!("numbers.\"{number}\"");
            if !is_number(number) {
                return Err(invalid(
                    &at,
                    "not a number the runtime dials: E.164 (+ and up to 15 digits), sip: or client:",
                ));
            }
            numbers.insert(number.clone(), entry(spec, &at, &mut audio)?);
        }
        Ok(Plan { default, numbers })
    }
}

/// Audio shared between the turns that use it.
struct Audio<'a> {
    base_dir: &'a Path,
    speech: &'a HashMap<String, Vec<u8>>,
    loaded: HashMap<PathBuf, Arc<[u8]>>,
}

fn invalid(at: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        at: at.to_owned(),
        message: message.into(),
    }
}

/// A number the runtime dials: E.164, or a SIP or client address.
pub(crate) fn is_number(s: &str) -> bool {
    let e164 = s.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    });
    e164 || s.starts_with("sip:") || s.starts_with("client:")
}

/// A number's list of behaviours: its `attempts`, or itself.
fn entry(spec: &Spec, at: &str, audio: &mut Audio<'_>) -> Result<Vec<Behaviour>, ConfigError> {
    let Some(attempts) = &spec.attempts else {
        return Ok(vec![behaviour(spec, at, audio)?]);
    };
    let rest = Spec {
        attempts: None,
        ..spec.clone()
    };
    if rest != Spec::default() {
        return Err(invalid(at, "give either `attempts` or one behaviour, not both"));
    }
    if attempts.is_empty() {
        return Err(invalid(at, "`attempts` is empty"));
    }
    attempts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = format!("{at}.attempts[{i}]");
            if s.attempts.is_some() {
                return Err(invalid(&at, "`attempts` cannot be nested"));
            }
            behaviour(s, &at, audio)
        })
        .collect()
}

fn seconds(value: Option<f64>, default: Duration, at: &str, field: &str) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && (0.0..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(invalid(
            at,
            format!("{field} = {s} is not between 0 and 86400 seconds"),
        )),
    }
}

fn behaviour(spec: &Spec, at: &str, audio: &mut Audio<'_>) -> Result<Behaviour, ConfigError> {
    let base = Behaviour::default();
    let answer = spec.answer.unwrap_or_default();
    if !spec.turns.is_empty() && answer != Answer::Human {
        return Err(invalid(at, "only a human takes turns"));
    }
    if spec.greeting_seconds.is_some() && answer != Answer::Voicemail {
        return Err(invalid(at, "greeting_seconds is for answer = \"voicemail\""));
    }
    let fault = match spec.fault {
        None => None,
        Some(FaultKind::Reject) => Some(Fault::Reject),
        Some(FaultKind::ErrorAfterCreate) => Some(Fault::ErrorAfterCreate),
        Some(FaultKind::SlowCreate) => Some(Fault::SlowCreate(seconds(
            spec.delay_seconds,
            Duration::from_secs(20),
            at,
            "delay_seconds",
        )?)),
    };
    if spec.delay_seconds.is_some() && spec.fault != Some(FaultKind::SlowCreate) {
        return Err(invalid(at, "delay_seconds is for fault = \"slow_create\""));
    }
    let mut turns = Vec::with_capacity(spec.turns.len());
    for (i, turn) in spec.turns.iter().enumerate() {
        let at = format!("{at}.turns[{i}]");
        turns.push(match turn {
            TurnSpec::Say(text) => {
                let speech = audio
                    .speech
                    .get(text)
                    .ok_or_else(|| invalid(&at, format!("no speech was made for {text:?}")))?;
                Turn::Speak(speech.as_slice().into())
            }
            TurnSpec::Wav(path) => {
                let path = audio.base_dir.join(path);
                let loaded = match audio.loaded.get(&path) {
                    Some(a) => a.clone(),
                    None => {
                        let a: Arc<[u8]> = wav_to_mulaw(&path)
                            .map_err(|source| ConfigError::Audio {
                                at: at.clone(),
                                path: path.clone(),
                                source,
                            })?
                            .into();
                        audio.loaded.insert(path, a.clone());
                        a
                    }
                };
                Turn::Speak(loaded)
            }
            TurnSpec::Dtmf(keys) => {
                if keys.is_empty() || !keys.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#') {
                    return Err(invalid(&at, format!("{keys:?} is not keypad keys (0-9, *, #)")));
                }
                Turn::Keys(keys.clone())
            }
        });
    }
    Ok(Behaviour {
        answer,
        turns,
        ring: seconds(spec.ring_seconds, base.ring, at, "ring_seconds")?,
        greeting: seconds(spec.greeting_seconds, base.greeting, at, "greeting_seconds")?,
        fault,
        max: seconds(spec.max_seconds, base.max, at, "max_seconds")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        voice = "en-us+f3"
        [default]
        answer = "no_answer"

        [numbers."+15555550101"]
        turns = [{ say = "Yes, Tuesday works." }, { dtmf = "1#" }, { say = "Yes, Tuesday works." }]

        [numbers."+15555550102"]
        answer = "voicemail"
        greeting_seconds = 0.5

        [numbers."+15555550103"]
        attempts = [{ answer = "busy" }, { fault = "slow_create", delay_seconds = 3 }]
    "#;

    fn speech() -> HashMap<String, Vec<u8>> {
        HashMap::from([("Yes, Tuesday works.".to_string(), vec![1, 2, 3])])
    }

    fn parse(text: &str) -> Result<NumbersFile, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "numbers.toml".into(),
            message: e.to_string(),
        })
    }

    #[test]
    fn the_example_resolves_with_defaults_and_attempts() -> Result<(), ConfigError> {
        let file = parse(EXAMPLE)?;
        assert_eq!(file.voice.as_deref(), Some("en-us+f3"));
        assert_eq!(file.texts(), BTreeSet::from(["Yes, Tuesday works."]));
        let plan = file.resolve(Path::new("."), &speech())?;
        assert_eq!(plan.listed(), 3);
        let human = plan.behaviour("+15555550101", 0);
        assert_eq!(human.answer, Answer::Human);
        assert_eq!(
            human.turns,
            [
                Turn::Speak(vec![1, 2, 3].into()),
                Turn::Keys("1#".into()),
                Turn::Speak(vec![1, 2, 3].into())
            ]
        );
        assert_eq!(human.ring, Duration::from_secs(2));
        let machine = plan.behaviour("+15555550102", 0);
        assert_eq!(
            (machine.answer, machine.greeting),
            (Answer::Voicemail, Duration::from_millis(500))
        );
        assert_eq!(plan.behaviour("+15555550103", 0).answer, Answer::Busy);
        for nth in [1, 2, 9] {
            assert_eq!(
                plan.behaviour("+15555550103", nth).fault,
                Some(Fault::SlowCreate(Duration::from_secs(3))),
                "the last attempt repeats"
            );
        }
        assert_eq!(plan.behaviour("+19999999999", 0).answer, Answer::NoAnswer);
        Ok(())
    }

    #[test]
    fn json_is_the_same_format() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("numbers.json");
        std::fs::write(
            &path,
            r#"{"numbers": {"+15555550104": {"answer": "failed"}, "+15555550105": {"fault": "error_after_create"}}}"#,
        )?;
        let plan = NumbersFile::load(&path)?.resolve(dir.path(), &HashMap::new())?;
        assert_eq!(plan.behaviour("+15555550104", 0).answer, Answer::Failed);
        assert_eq!(
            plan.behaviour("+15555550105", 0).fault,
            Some(Fault::ErrorAfterCreate)
        );
        assert_eq!(plan.behaviour("+1", 0), &Behaviour::default());
        Ok(())
    }

    #[test]
    fn mistakes_are_refused_with_where_they_are() {
        let cases = [
            ("[numbers.\"5551234\"]\nanswer = \"busy\"", "numbers.\"5551234\""),
            (
                "[numbers.\"+15555550101\"]\nanswer = \"busy\"\nturns = [{ dtmf = \"1\" }]",
                "only a human",
            ),
            (
                "[numbers.\"+15555550101\"]\nturns = [{ dtmf = \"12x\" }]",
                "turns[0]",
            ),
            (
                "[numbers.\"+15555550101\"]\nturns = [{ say = \"never synthesized\" }]",
                "no speech",
            ),
            ("[numbers.\"+15555550101\"]\nring_seconds = -1", "ring_seconds"),
            ("[numbers.\"+15555550101\"]\ndelay_seconds = 3", "slow_create"),
            (
                "[numbers.\"+15555550101\"]\nanswer = \"busy\"\nattempts = [{}]",
                "either `attempts`",
            ),
            ("[numbers.\"+15555550101\"]\nattempts = []", "empty"),
            (
                "[numbers.\"+15555550101\"]\nattempts = [{ attempts = [{}] }]",
                "nested",
            ),
        ];
        for (text, expected) in cases {
            let err = match parse(text).and_then(|f| f.resolve(Path::new("."), &HashMap::new())) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(expected), "{text}: {err}");
        }
        for bad in [
            "[numbers.\"+15555550101\"]\nanswr = \"busy\"",
            "[numbers.\"+15555550101\"]\nanswer = \"maybe\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_wav_names_the_file() {
        let file = NumbersFile {
            default: Some(Spec {
                turns: vec![TurnSpec::Wav("nope.wav".into())],
                ..Spec::default()
            }),
            ..NumbersFile::default()
        };
        let err = file
            .resolve(Path::new("/nonexistent"), &HashMap::new())
            .expect_err("no such file");
        assert!(err.to_string().contains("nope.wav"), "{err}");
    }
}
