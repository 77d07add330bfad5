//! Voice activity and end-of-turn detection on 16 kHz mono audio.
//!
//! [`TurnDetector`] takes audio in chunks of any length, scores it in 16 ms frames with earshot,
//! and turns the scores into conversation events ([`TurnEvent`]). See the crate docs for why each
//! stage exists; the numbers it is tuned with are measured in `tests/vad_speech.rs`.

use std::time::Duration;

/// Sample rate the detector works at (earshot's rate, and whisper's).
pub const SAMPLE_RATE: u32 = 16_000;
/// earshot scores 256-sample frames (16 ms at 16 kHz).
const FRAME: usize = 256;
/// A frame must score this much below `speech_threshold` to count as silence once speech is on.
/// 0.2 absorbs the score dips inside words and between syllables measured on espeak and on
/// noisy phone audio, while still letting the detector leave speech within a frame or two of the
/// real end.
const HYSTERESIS: f32 = 0.2;
/// A frame must be at least this far above the running noise floor to count as speech. Low enough
/// that weak consonants at 15 dB SNR pass, high enough that noise fluctuations (about ±1 dB per
/// frame for white noise) never do.
const ENERGY_MARGIN_DB: f32 = 6.0;
/// Frames quieter than this are silence whatever the network says (digital silence, mu-law 0xFF).
const ABSOLUTE_FLOOR_DB: f32 = -65.0;
/// The noise floor is the minimum, over the last second, of the energy of earshot's own 48 ms
/// analysis window ("minimum statistics"). Speech leaves gaps between words well within a second,
/// so the minimum lands on the line noise, and it follows the noise whether or not the network
/// thinks a frame is speech (a floor updated only on "silent" frames never rises if the network
/// mistakes steady noise for speech). The 48 ms window rather than the 16 ms frame, because the
/// energy of a single frame of pink noise scatters by several dB and its minimum let noise through
/// the gate; a low percentile instead of the minimum rose into long stretches of speech and cut
/// sentence ends by 140 ms. Both were measured on the tests in `tests/vad_speech.rs`.
const FLOOR_WINDOW_FRAMES: usize = 63;
/// Frames in earshot's analysis window (768 samples).
const ENERGY_FRAMES: usize = 3;

/// Tuning of the turn detector. The defaults suit telephone conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    /// earshot score (0..1) a frame must reach to count as speech.
    pub speech_threshold: f32,
    /// Continuous speech needed to declare that the caller started speaking.
    pub speech_start: Duration,
    /// Turns shorter than this (a cough, "mm", a click) are reported as discarded.
    pub min_speech: Duration,
    /// Silence after speech that ends the turn.
    pub end_of_turn_silence: Duration,
    /// Audio kept before the detected start (and after the detected end) in the utterance, so
    /// the first and last phonemes reach the recognizer.
    pub pre_roll: Duration,
    /// A turn is forcibly ended after this long, so a caller who never pauses (or a line stuck on
    /// noise that looks like speech) cannot grow a buffer without bound.
    pub max_utterance: Duration,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            speech_threshold: 0.5,
            speech_start: Duration::from_millis(100),
            min_speech: Duration::from_millis(250),
            end_of_turn_silence: Duration::from_millis(600),
            pre_roll: Duration::from_millis(200),
            max_utterance: Duration::from_secs(30),
        }
    }
}

/// What the detector observed. Times are positions in the stream, counted from its first sample.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// Speech has lasted `speech_start`; `at` is where it began.
    SpeechStarted { at: Duration },
    /// The first silent frame after speech: a good moment to start a speculative transcription.
    SpeechPaused { at: Duration },
    /// Speech came back before the turn ended.
    SpeechResumed { at: Duration },
    /// The turn is over. `utterance` is the audio from `start - pre_roll` to `end + pre_roll`;
    /// `end` is where speech stopped, not where the silence that confirmed it did.
    TurnEnded {
        utterance: Vec<f32>,
        start: Duration,
        end: Duration,
    },
    /// A burst shorter than `min_speech` starting at `at`: not a turn.
    Discarded { at: Duration, length: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Speaking,
    Paused,
}

/// Detects speech and turn ends in a 16 kHz stream. One per call leg.
pub struct TurnDetector {
    config: VadConfig,
    detector: Box<earshot::Detector>,
    state: State,
    /// Samples not yet forming a whole earshot frame.
    pending: Vec<f32>,
    /// Frames scored so far; frame `i` covers samples `[i*256, (i+1)*256)`.
    frames: u64,
    /// Hysteresis memory: whether the previous frame counted as speech.
    prev_voiced: bool,
    /// Mean power of the last `ENERGY_FRAMES` frames, a ring indexed by frame number.
    recent_power: [f32; ENERGY_FRAMES],
    /// Window energies (dB) of the last `FLOOR_WINDOW_FRAMES` frames, a ring indexed by frame
    /// number.
    energy_window: Vec<f32>,
    /// Current run of speech frames not yet confirmed (while idle or paused): its first frame and
    /// length.
    run_start: u64,
    run_len: u64,
    /// Sample index where the current turn started and where its speech last ended.
    turn_start: u64,
    last_voiced_end: u64,
    /// Recent audio, for pre-roll and the utterance; `history[0]` is sample `history_start`.
    history: Vec<f32>,
    history_start: u64,
    // Config converted once to sample/frame counts.
    start_frames: u64,
    min_speech_samples: u64,
    eot_samples: u64,
    pre_roll_samples: u64,
    max_samples: u64,
}

impl std::fmt::Debug for TurnDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnDetector")
            .field("config", &self.config)
            .field("state", &self.state)
            .field("position", &self.position())
            .field("noise_floor_db", &self.noise_floor_db())
            .finish_non_exhaustive()
    }
}

fn samples(d: Duration) -> u64 {
    (d.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as u64
}

fn time(samples: u64) -> Duration {
    // 16 kHz: one sample is exactly 62.5 µs, so positions are exact in nanoseconds.
    Duration::from_nanos(samples * 1_000_000_000 / u64::from(SAMPLE_RATE))
}

impl TurnDetector {
    #[must_use]
    pub fn new(config: VadConfig) -> Self {
        let start_frames = samples(config.speech_start).div_ceil(FRAME as u64).max(1);
        let min_speech_samples = samples(config.min_speech);
        let eot_samples = samples(config.end_of_turn_silence).max(FRAME as u64);
        let pre_roll_samples = samples(config.pre_roll);
        let max_samples = samples(config.max_utterance).max(FRAME as u64);
        Self {
            config,
            detector: earshot::Detector::default_boxed(),
            state: State::Idle,
            pending: Vec::with_capacity(FRAME * 2),
            frames: 0,
            prev_voiced: false,
            recent_power: [0.0; ENERGY_FRAMES],
            energy_window: Vec::with_capacity(FLOOR_WINDOW_FRAMES),
            run_start: 0,
            run_len: 0,
            turn_start: 0,
            last_voiced_end: 0,
            history: Vec::new(),
            history_start: 0,
            start_frames,
            min_speech_samples,
            eot_samples,
            pre_roll_samples,
            max_samples,
        }
    }

    #[must_use]
    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    /// True while the caller is speaking (between `SpeechStarted`/`SpeechResumed` and the next
    /// `SpeechPaused` or turn end): the signal for barge-in.
    #[must_use]
    pub fn is_speaking(&self) -> bool {
        self.state == State::Speaking
    }

    /// True from `SpeechStarted` until `TurnEnded` or `Discarded`, pauses included.
    #[must_use]
    pub fn in_turn(&self) -> bool {
        self.state != State::Idle
    }

    /// Stream position of the audio scored so far.
    #[must_use]
    pub fn position(&self) -> Duration {
        time(self.frames * FRAME as u64)
    }

    /// The current noise floor estimate in dBFS (the quietest 48 ms window of the last second).
    #[must_use]
    pub fn noise_floor_db(&self) -> Option<f32> {
        self.energy_window.iter().copied().reduce(f32::min)
    }

    /// Feeds 16 kHz mono samples (any length) and returns the events they complete.
    pub fn push(&mut self, samples: &[f32]) -> Vec<TurnEvent> {
        let mut events = Vec::new();
        self.history.extend_from_slice(samples);
        self.pending.extend_from_slice(samples);
        let mut offset = 0;
        let mut frame = [0.0f32; FRAME];
        while self.pending.len() - offset >= FRAME {
            // earshot expects [-1, 1]; clipping protects it from a hot line.
            for (dst, &src) in frame.iter_mut().zip(&self.pending[offset..offset + FRAME]) {
                *dst = if src.is_finite() {
                    src.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
            }
            offset += FRAME;
            self.step(&frame, &mut events);
        }
        self.pending.drain(..offset);
        self.trim_history();
        events
    }

    /// Ends the stream: a turn in progress ends where its speech ended (or is discarded).
    pub fn finish(&mut self) -> Vec<TurnEvent> {
        let mut events = Vec::new();
        if self.state != State::Idle {
            let end = self.last_voiced_end;
            self.end_turn(end, &mut events);
        }
        events
    }

    /// Ends a paused turn now, before the end-of-turn silence has run out, for a caller that knows
    /// better than the silence (a transcript that reads as finished). Nothing happens unless the
    /// caller is pausing inside a turn.
    pub fn end_paused_turn(&mut self) -> Vec<TurnEvent> {
        let mut events = Vec::new();
        if self.paused_span().is_some() {
            let end = self.last_voiced_end;
            self.end_turn(end, &mut events);
        }
        events
    }

    /// Forgets everything, for a new stream.
    pub fn reset(&mut self) {
        *self = Self::new(self.config.clone());
    }

    /// Frame decision: the neural score with hysteresis, gated by energy above the noise floor.
    fn classify(&mut self, frame: &[f32; FRAME]) -> bool {
        let score = self.detector.predict_f32(frame);
        let power = frame.iter().map(|x| x * x).sum::<f32>() / FRAME as f32;
        if self.frames == 0 {
            // Averaging with the zeros before the stream would fake a quiet window and pull the
            // floor down for a whole second.
            self.recent_power.fill(power);
        }
        self.recent_power[(self.frames % ENERGY_FRAMES as u64) as usize] = power;
        let window_power = self.recent_power.iter().sum::<f32>() / ENERGY_FRAMES as f32;
        let energy_db = 10.0 * (window_power + 1e-12).log10();
        let threshold = if self.prev_voiced {
            (self.config.speech_threshold - HYSTERESIS).max(0.05)
        } else {
            self.config.speech_threshold
        };
        let slot = (self.frames % FLOOR_WINDOW_FRAMES as u64) as usize;
        if slot < self.energy_window.len() {
            self.energy_window[slot] = energy_db;
        } else {
            self.energy_window.push(energy_db);
        }
        let floor = self.noise_floor_db().unwrap_or(energy_db);
        let voiced =
            score >= threshold && energy_db > ABSOLUTE_FLOOR_DB && energy_db > floor + ENERGY_MARGIN_DB;
        self.prev_voiced = voiced;
        voiced
    }

    fn step(&mut self, frame: &[f32; FRAME], events: &mut Vec<TurnEvent>) {
        let voiced = self.classify(frame);
        let index = self.frames;
        self.frames += 1;
        let frame_end = self.frames * FRAME as u64;

        if voiced {
            if self.run_len == 0 {
                self.run_start = index;
            }
            self.run_len += 1;
        } else {
            self.run_len = 0;
        }

        match self.state {
            State::Idle => {
                if self.run_len >= self.start_frames {
                    self.state = State::Speaking;
                    self.turn_start = self.run_start * FRAME as u64;
                    self.last_voiced_end = frame_end;
                    self.run_len = 0;
                    events.push(TurnEvent::SpeechStarted {
                        at: time(self.turn_start),
                    });
                }
            }
            State::Speaking => {
                self.run_len = 0;
                if voiced {
                    self.last_voiced_end = frame_end;
                } else {
                    self.state = State::Paused;
                    events.push(TurnEvent::SpeechPaused {
                        at: time(self.last_voiced_end),
                    });
                }
            }
            State::Paused => {
                if self.run_len >= self.start_frames {
                    self.state = State::Speaking;
                    self.last_voiced_end = frame_end;
                    events.push(TurnEvent::SpeechResumed {
                        at: time(self.run_start * FRAME as u64),
                    });
                    self.run_len = 0;
                } else if frame_end - self.last_voiced_end >= self.eot_samples {
                    // An unconfirmed run in progress survives into Idle as a candidate new turn.
                    let end = self.last_voiced_end;
                    self.end_turn(end, events);
                }
            }
        }

        if self.state != State::Idle && frame_end - self.turn_start >= self.max_samples {
            let end = if self.state == State::Speaking {
                frame_end
            } else {
                self.last_voiced_end
            };
            self.end_turn(end, events);
        }
    }

    fn end_turn(&mut self, end: u64, events: &mut Vec<TurnEvent>) {
        let start = self.turn_start;
        let length = end.saturating_sub(start);
        if length < self.min_speech_samples {
            events.push(TurnEvent::Discarded {
                at: time(start),
                length: time(length),
            });
        } else {
            let utterance = self.utterance(start, end);
            events.push(TurnEvent::TurnEnded {
                utterance,
                start: time(start),
                end: time(end),
            });
        }
        self.state = State::Idle;
    }

    /// The audio of a turn from `start` to `end` (sample indices), with pre-roll before and after as far
    /// as it has been heard.
    fn utterance(&self, start: u64, end: u64) -> Vec<f32> {
        let from = start
            .saturating_sub(self.pre_roll_samples)
            .max(self.history_start);
        let available = self.history_start + self.history.len() as u64;
        let to = (end + self.pre_roll_samples).min(available).max(from);
        self.history[(from - self.history_start) as usize..(to - self.history_start) as usize].to_vec()
    }

    /// While the caller pauses inside a turn: its start and end of speech; `None` when not paused or too
    /// short to be a turn. Cheap (no audio is copied), so it can be asked on every frame.
    pub fn paused_speech(&self) -> Option<(Duration, Duration)> {
        let (start, end) = self.paused_span()?;
        Some((time(start), time(end)))
    }

    /// While the caller pauses inside a turn: the utterance as [`TurnEvent::TurnEnded`] would give it if
    /// the turn ended now, with its start and end of speech (see [`Self::paused_speech`]). Lets a
    /// recognizer start on the utterance before the end of turn is certain; once the pause is longer than
    /// the pre-roll the audio is exactly what `TurnEnded` will carry.
    pub fn paused_utterance(&self) -> Option<(Vec<f32>, Duration, Duration)> {
        let (start, end) = self.paused_span()?;
        Some((self.utterance(start, end), time(start), time(end)))
    }

    fn paused_span(&self) -> Option<(u64, u64)> {
        let (start, end) = (self.turn_start, self.last_voiced_end);
        (self.state == State::Paused && end.saturating_sub(start) >= self.min_speech_samples)
            .then_some((start, end))
    }

    /// Keeps only the audio a future utterance can need: the current turn, or while idle the
    /// pre-roll before the oldest frame that could still become a speech start.
    fn trim_history(&mut self) {
        let keep_from = match self.state {
            State::Idle => {
                let candidate = if self.run_len > 0 {
                    self.run_start * FRAME as u64
                } else {
                    self.frames * FRAME as u64
                };
                // The end of the last turn may still be inside the window (post-roll is taken
                // from it only at turn end, which already happened), so only pre-roll matters.
                candidate.saturating_sub(self.pre_roll_samples)
            }
            State::Speaking | State::Paused => self.turn_start.saturating_sub(self.pre_roll_samples),
        };
        if keep_from > self.history_start {
            // Trim in batches: draining a few samples per 20 ms push would be quadratic-ish churn.
            let drop = (keep_from - self.history_start) as usize;
            if drop >= 4 * FRAME {
                self.history.drain(..drop.min(self.history.len()));
                self.history_start += drop as u64;
            }
        }
    }
}
