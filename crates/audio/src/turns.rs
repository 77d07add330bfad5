//! Speculative transcription: start recognizing an utterance while the caller pauses, before the end of
//! the turn is certain.
//!
//! A turn ends after [`VadConfig::end_of_turn_silence`] of silence (600 ms by default), because people
//! pause inside sentences; waiting for that and only then transcribing puts the whole recognition time on
//! top of the silence. Most pauses that last longer than a fraction of that silence do end the turn, so
//! [`SpeculativeTurns`] asks for a transcription as soon as a pause has lasted `speculate_after`: if the
//! caller resumes, the speculation is abandoned (its result is thrown away); if the turn ends, the audio
//! of the speculation is exactly the turn's (the pause is already longer than the post-roll the turn
//! carries), so its transcript is the final one and is usually ready by the time the turn ends.
//!
//! This is a pure state machine over [`TurnDetector`]: it says what to transcribe and which result to
//! use, and the caller runs the recognizer however it likes (threads, async tasks), so it can be tested
//! without a model and reused by the call pipeline.

use std::time::Duration;

use crate::{TurnDetector, TurnEvent, VadConfig};

/// What the caller should do after feeding audio.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnAction {
    /// The caller started speaking (barge-in, if the agent is talking).
    SpeechStarted { at: Duration },
    /// Start transcribing `samples` now; the turn may still go on.
    Speculate { id: u64, samples: Vec<f32> },
    /// The caller spoke again: speculation `id` is void, cancel it or ignore its result.
    Abandon { id: u64 },
    /// The turn is over. If `speculation` is `Some(id)`, that speculation's audio was exactly `samples`
    /// and its transcript is the final one; otherwise transcribe `samples` now.
    TurnEnded {
        samples: Vec<f32>,
        start: Duration,
        end: Duration,
        speculation: Option<u64>,
    },
    /// A burst too short to be a turn (a cough, "mm").
    Discarded { at: Duration, length: Duration },
}

/// End-of-turn detection with speculative transcription on pauses. One per call leg.
#[derive(Debug)]
pub struct SpeculativeTurns {
    detector: TurnDetector,
    speculate_after: Duration,
    /// The live speculation: its id and the end of speech it covers.
    current: Option<(u64, Duration)>,
    next_id: u64,
}

impl SpeculativeTurns {
    /// `speculate_after` is the pause that triggers a speculation; it is raised to the detector's
    /// pre-roll, so that the speculative audio includes the same trailing audio the turn will.
    pub fn new(config: VadConfig, speculate_after: Duration) -> Self {
        let speculate_after = speculate_after.max(config.pre_roll);
        SpeculativeTurns {
            detector: TurnDetector::new(config),
            speculate_after,
            current: None,
            next_id: 1,
        }
    }

    /// The detector's position in the stream.
    pub fn position(&self) -> Duration {
        self.detector.position()
    }

    /// How long the caller has been pausing inside a turn; `None` when not pausing.
    pub fn pause(&self) -> Option<Duration> {
        let (_, end) = self.detector.paused_speech()?;
        Some(self.detector.position().saturating_sub(end))
    }

    /// The speculation under way for the current pause, if any.
    pub fn live_speculation(&self) -> Option<u64> {
        self.current.map(|(id, _)| id)
    }

    /// Ends the turn now if speculation `id` still covers the current pause: the `TurnEnded` the
    /// silence would have given later (with `speculation: Some(id)`). For when the speculation's
    /// transcript reads as a finished sentence, so waiting out the rest of the silence only adds
    /// latency. Nothing happens if the caller spoke again since.
    pub fn end_turn_early(&mut self, id: u64) -> Vec<TurnAction> {
        match (self.current, self.detector.paused_speech()) {
            (Some((live, covered)), Some((_, end))) if live == id && covered == end => {
                let events = self.detector.end_paused_turn();
                self.handle(events)
            }
            _ => Vec::new(),
        }
    }

    /// Feeds 16 kHz audio (any chunk size).
    pub fn push(&mut self, samples: &[f32]) -> Vec<TurnAction> {
        let events = self.detector.push(samples);
        self.handle(events)
    }

    /// The stream is over: ends a turn in progress.
    pub fn finish(&mut self) -> Vec<TurnAction> {
        let events = self.detector.finish();
        self.handle(events)
    }

    fn handle(&mut self, events: Vec<TurnEvent>) -> Vec<TurnAction> {
        let mut actions = Vec::new();
        for event in events {
            match event {
                TurnEvent::SpeechStarted { at } => actions.push(TurnAction::SpeechStarted { at }),
                TurnEvent::SpeechPaused { .. } => {}
                TurnEvent::SpeechResumed { .. } => self.abandon(&mut actions),
                TurnEvent::TurnEnded {
                    utterance,
                    start,
                    end,
                } => {
                    let speculation = match self.current.take() {
                        Some((id, covered)) if covered == end => Some(id),
                        Some((id, _)) => {
                            actions.push(TurnAction::Abandon { id });
                            None
                        }
                        None => None,
                    };
                    actions.push(TurnAction::TurnEnded {
                        samples: utterance,
                        start,
                        end,
                        speculation,
                    });
                }
                TurnEvent::Discarded { at, length } => {
                    self.abandon(&mut actions);
                    actions.push(TurnAction::Discarded { at, length });
                }
            }
        }
        // Asked on every frame, so the audio is copied only when a speculation actually starts.
        if let Some((_, end)) = self.detector.paused_speech() {
            let already = self.current.is_some_and(|(_, covered)| covered == end);
            if !already
                && self.detector.position() >= end + self.speculate_after
                && let Some((samples, _, _)) = self.detector.paused_utterance()
            {
                self.abandon(&mut actions);
                let id = self.next_id;
                self.next_id += 1;
                self.current = Some((id, end));
                actions.push(TurnAction::Speculate { id, samples });
            }
        }
        actions
    }

    fn abandon(&mut self, actions: &mut Vec<TurnAction>) {
        if let Some((id, _)) = self.current.take() {
            actions.push(TurnAction::Abandon { id });
        }
    }
}
