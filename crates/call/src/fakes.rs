//! Small stand-ins for the engines, for tests of code that drives calls (this crate's and the
//! server's): they answer instantly and predictably, so those tests check the plumbing, not models.
// The fakes mirror the traits' `impl Future + Send` signatures on purpose.
#![allow(clippy::manual_async_fn)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_core::llm::{
    Answer, CancelToken, ChatMessage, Constraint, GenerationParams, LanguageModel, LlmError, ReplyEvent,
    ReplyStream,
};
use switchboard_core::stt::{SpeechToText, SttError, SttTimings, Transcript};
use switchboard_core::tts::{Speech, TextToSpeech, TtsError};

/// Always hears the same sentence (or, made with [`FakeStt::stopped`], fails as an engine that
/// stopped).
#[derive(Debug)]
pub struct FakeStt {
    text: &'static str,
    stopped: bool,
    /// Transcriptions asked for.
    pub calls: AtomicUsize,
}

impl FakeStt {
    pub fn new(text: &'static str) -> Self {
        Self {
            text,
            stopped: false,
            calls: AtomicUsize::new(0),
        }
    }

    /// Every transcription fails with [`SttError::Unavailable`], as when the engine crashed.
    pub fn stopped() -> Self {
        Self {
            stopped: true,
            ..Self::new("")
        }
    }
}

impl SpeechToText for FakeStt {
    fn transcribe(&self, samples: Vec<f32>) -> impl Future<Output = Result<Transcript, SttError>> + Send {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = self.text.to_string();
        let stopped = self.stopped;
        async move {
            if stopped {
                return Err(SttError::Unavailable);
            }
            Ok(Transcript {
                text,
                segments: Vec::new(),
                audio: Duration::from_secs_f64(samples.len() as f64 / 16_000.0),
                timings: SttTimings::default(),
            })
        }
    }

    fn is_available(&self) -> bool {
        !self.stopped
    }
}

/// Understands nothing (the flow's own matchers do the work) and never replies. Both fail as a bad
/// request would (`Failed`), not as a stopped engine, which would end the call.
#[derive(Debug)]
pub struct FakeLlm;

#[derive(Debug)]
pub struct NoStream;
impl ReplyStream for NoStream {
    fn next(&mut self) -> impl Future<Output = Option<Result<ReplyEvent, LlmError>>> + Send {
        async { None }
    }
}

impl LanguageModel for FakeLlm {
    type Stream = NoStream;
    fn stream_chat(
        &self,
        _: Vec<ChatMessage>,
        _: GenerationParams,
        _: CancelToken,
    ) -> impl Future<Output = Result<NoStream, LlmError>> + Send {
        async { Err(LlmError::Failed("the fake model does not reply".into())) }
    }
    fn answer(
        &self,
        _: Vec<ChatMessage>,
        _: Constraint,
        _: GenerationParams,
    ) -> impl Future<Output = Result<Answer, LlmError>> + Send {
        async { Err(LlmError::Failed("the fake model understands nothing".into())) }
    }
    fn label_probabilities(
        &self,
        _: Vec<ChatMessage>,
        labels: Vec<String>,
    ) -> impl Future<Output = Result<Vec<f32>, LlmError>> + Send {
        let n = labels.len() as f32;
        async move { Ok(vec![1.0 / n; labels.len()]) }
    }
}

/// 60 ms of a 440 Hz tone per character, at 16 kHz.
#[derive(Debug)]
pub struct FakeTts;
impl TextToSpeech for FakeTts {
    fn sample_rate(&self) -> u32 {
        16_000
    }
    fn synthesize(&self, text: String) -> impl Future<Output = Result<Speech, TtsError>> + Send {
        async move {
            let n = text.len() * 960;
            let samples = (0..n)
                .map(|i| ((i as f32 * 440.0 * 2.0 * std::f32::consts::PI / 16_000.0).sin() * 8000.0) as i16)
                .collect();
            Ok(Speech {
                samples,
                sample_rate: 16_000,
            })
        }
    }
}
