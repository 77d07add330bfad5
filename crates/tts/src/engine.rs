//! The espeak-ng engine: one synthesis thread fed by a bounded queue, answering through oneshots.

use std::ffi::CString;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use switchboard_core::tts::{Speech, TextToSpeech, TtsError};
use tokio::sync::oneshot;

use crate::LoadError;
use crate::espeak::{VoiceSettings, with_library};
use crate::trim::trim_silence;

/// The voice chosen by word error rate through the phone line (see the crate docs and
/// `examples/tts_bench.rs`).
pub const DEFAULT_VOICE: &str = "en-us+m3";

/// How to run espeak-ng.
#[derive(Debug, Clone)]
pub struct EspeakConfig {
    /// An espeak-ng voice name, optionally with a variant: `en-us`, `en-us+m3`, `en` (`espeak-ng --voices`).
    pub voice: String,
    /// Speaking rate in words per minute (espeak-ng accepts 80–450).
    pub rate: u32,
    /// Base pitch, 0–100 (50 is the voice's own).
    pub pitch: u32,
    /// Extra pause between words, in units of 10 ms at the normal rate. A short gap makes word
    /// boundaries audible through the narrow phone band.
    pub word_gap: u32,
    /// Requests that may wait for the synthesis thread before new ones are refused as overloaded.
    pub queue: usize,
    /// Longest text accepted, in characters. The pipeline sends phrases; a longer text is a bug
    /// upstream and would hold the thread (and every other call) for seconds.
    pub max_chars: usize,
    /// Silence kept before the first and after the last sound of a phrase.
    pub keep_silence: Duration,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        EspeakConfig {
            voice: DEFAULT_VOICE.to_owned(),
            rate: 160,
            pitch: 50,
            word_gap: 3,
            queue: 32,
            max_chars: 1_000,
            keep_silence: Duration::from_millis(50),
        }
    }
}

impl EspeakConfig {
    fn settings(&self) -> Result<VoiceSettings, LoadError> {
        let bad = |reason: String| LoadError::Config(reason);
        if !(80..=450).contains(&self.rate) {
            return Err(bad(format!("rate {} wpm is outside 80–450", self.rate)));
        }
        if self.pitch > 100 {
            return Err(bad(format!("pitch {} is outside 0–100", self.pitch)));
        }
        if self.word_gap > 100 {
            return Err(bad(format!("word gap {} (×10 ms) is over 1 s", self.word_gap)));
        }
        if self.max_chars == 0 {
            return Err(bad("max_chars is 0: nothing could be spoken".into()));
        }
        let voice = CString::new(self.voice.as_str())
            .ok()
            .filter(|_| !self.voice.trim().is_empty())
            .ok_or_else(|| bad(format!("voice name {:?} is not valid", self.voice)))?;
        Ok(VoiceSettings {
            voice,
            rate: self.rate,
            pitch: self.pitch,
            word_gap: self.word_gap,
        })
    }
}

struct Job {
    text: CString,
    reply: oneshot::Sender<Result<Speech, TtsError>>,
}

/// espeak-ng speech synthesis behind [`TextToSpeech`]. Share it behind an `Arc`; dropping the last
/// handle (or [`EspeakTts::shutdown`]) stops the thread once the queue drains.
pub struct EspeakTts {
    /// A mutex around an `Option` so that `shutdown(&self)` on a shared handle can drop the only sender,
    /// which is how the thread learns to stop. Held only for a `try_send`.
    jobs: Mutex<Option<mpsc::SyncSender<Job>>>,
    /// Jobs sent but not yet picked up, for the overload error.
    waiting: Arc<AtomicUsize>,
    sample_rate: u32,
    config: EspeakConfig,
}

impl std::fmt::Debug for EspeakTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspeakTts")
            .field("voice", &self.config.voice)
            .field("rate", &self.config.rate)
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

impl EspeakTts {
    /// Initializes espeak-ng with the configured voice (checking that it exists) and starts the
    /// synthesis thread. Blocks for the initialization (a few milliseconds).
    pub fn start(config: EspeakConfig) -> Result<Self, LoadError> {
        let settings = config.settings()?;
        let (jobs, rx) = mpsc::sync_channel::<Job>(config.queue.max(1));
        let waiting = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<u32, LoadError>>();
        {
            let waiting = Arc::clone(&waiting);
            let keep = config.keep_silence;
            std::thread::Builder::new()
                .name("espeak-tts".into())
                .spawn(move || worker(&settings, keep, &rx, &waiting, &ready_tx))
                .map_err(|e| LoadError::Thread(e.to_string()))?;
        }
        let sample_rate = ready_rx
            .recv()
            .map_err(|_| LoadError::Thread("the synthesis thread exited during start-up".into()))??;
        Ok(EspeakTts {
            jobs: Mutex::new(Some(jobs)),
            waiting,
            sample_rate,
            config,
        })
    }

    pub fn config(&self) -> &EspeakConfig {
        &self.config
    }

    /// Stops accepting requests: every later call fails with [`TtsError::Unavailable`]. Requests
    /// already queued are still answered; the thread exits after them.
    pub fn shutdown(&self) {
        let sender = match self.jobs.lock() {
            Ok(mut jobs) => jobs.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(sender);
    }

    fn submit(&self, text: &str) -> Result<oneshot::Receiver<Result<Speech, TtsError>>, TtsError> {
        let text = self.check_text(text)?;
        let (reply, rx) = oneshot::channel();
        let jobs = self.jobs.lock().map_err(|_| TtsError::Unavailable)?;
        let Some(jobs) = jobs.as_ref() else {
            return Err(TtsError::Unavailable);
        };
        self.waiting.fetch_add(1, Ordering::SeqCst);
        match jobs.try_send(Job { text, reply }) {
            Ok(()) => Ok(rx),
            Err(mpsc::TrySendError::Full(_)) => {
                let n = self.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
                Err(TtsError::Overloaded(n))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(TtsError::Unavailable)
            }
        }
    }

    /// Parses the text into what the library may be given: control characters (a NUL would end the C
    /// string early) become spaces, and there must be something left to say, within the length limit.
    fn check_text(&self, text: &str) -> Result<CString, TtsError> {
        let cleaned: String = text
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if cleaned.trim().is_empty() {
            return Err(TtsError::BadInput("no text to speak".into()));
        }
        let chars = cleaned.chars().count();
        if chars > self.config.max_chars {
            return Err(TtsError::BadInput(format!(
                "text of {chars} characters is longer than the limit of {}",
                self.config.max_chars
            )));
        }
        CString::new(cleaned).map_err(|_| TtsError::BadInput("text contains a NUL character".into()))
    }

    /// Queues a phrase and returns at once; the audio is collected from the [`Pending`]. Dropping the
    /// `Pending` before the thread reaches the job cancels it.
    pub fn enqueue(&self, text: &str) -> Result<Pending, TtsError> {
        self.submit(text).map(Pending)
    }

    /// Synthesizes from a thread that is not an async worker (the CLI, benchmarks).
    pub fn synthesize_blocking(&self, text: &str) -> Result<Speech, TtsError> {
        self.enqueue(text)?.wait()
    }
}

/// A synthesis under way (see [`EspeakTts::enqueue`]).
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<Speech, TtsError>>);

impl Pending {
    /// Blocks until the audio is ready. Not for async worker threads.
    pub fn wait(self) -> Result<Speech, TtsError> {
        self.0.blocking_recv().map_err(|_| TtsError::Unavailable)?
    }
}

impl Drop for EspeakTts {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl TextToSpeech for EspeakTts {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn synthesize(&self, text: String) -> impl std::future::Future<Output = Result<Speech, TtsError>> + Send {
        // Queued now, not at the first poll: the caller learns about overload at once, and the phrase is
        // synthesized while the caller is still busy with the previous one.
        let submitted = self.submit(&text);
        async move { submitted?.await.map_err(|_| TtsError::Unavailable)? }
    }
}

fn worker(
    settings: &VoiceSettings,
    keep: Duration,
    rx: &mpsc::Receiver<Job>,
    waiting: &AtomicUsize,
    ready: &mpsc::Sender<Result<u32, LoadError>>,
) {
    // Initialize and select the voice now, so a missing library or an unknown voice fails `start`
    // rather than the first call.
    let started = with_library(|lib| {
        lib.apply(settings)?;
        Ok(lib.sample_rate())
    });
    let sample_rate = match started {
        Ok(rate) => rate,
        Err(e) => {
            let _ = ready.send(Err(LoadError::Engine(e)));
            return;
        }
    };
    let _ = ready.send(Ok(sample_rate));

    // Ends when every sender is gone (shutdown or drop) and the queue is drained.
    while let Ok(job) = rx.recv() {
        waiting.fetch_sub(1, Ordering::SeqCst);
        if job.reply.is_closed() {
            continue; // the caller gave up (barge-in, hang-up): don't spend the CPU
        }
        let started = Instant::now();
        // A panic must not end the only synthesis thread (and every call's voice with it): the job
        // fails as `Unavailable` (its reply channel is dropped) and the thread takes the next one.
        // `with_library` recovers the library's lock from the poisoning.
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            fail::fail_point!("tts::synthesize", |_| Err("injected failure".to_string()));
            with_library(|lib| {
                // Another engine in the process may have changed the voice since.
                lib.apply(settings)?;
                let mut samples = Vec::new();
                lib.synthesize(&job.text, &mut samples)?;
                Ok(samples)
            })
        }));
        let Ok(result) = ran else {
            tracing::error!("speech synthesis thread panicked: going on with the next request");
            continue;
        };
        let result = result.map_err(TtsError::Failed).map(|samples| Speech {
            samples: trim_silence(&samples, sample_rate, keep).to_vec(),
            sample_rate,
        });
        if let Ok(speech) = &result {
            tracing::debug!(
                chars = job.text.as_bytes().len(),
                audio_ms = speech.duration().as_millis(),
                took_ms = started.elapsed().as_millis(),
                "synthesized"
            );
        }
        let _ = job.reply.send(result);
    }
}
