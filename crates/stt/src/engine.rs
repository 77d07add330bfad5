//! The whisper engine: a shared context, worker threads that own a state each, and a bounded job queue.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use switchboard_core::stt::{STT_SAMPLE_RATE, Segment, SpeechToText, SttError, SttTimings, Transcript};
use tokio::sync::oneshot;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState};

use crate::LoadError;
use crate::window::{FULL_AUDIO_CTX, WindowPolicy, looks_looped, max_tokens_for};

/// How to run whisper.
#[derive(Debug, Clone)]
pub struct WhisperConfig {
    pub model_path: PathBuf,
    /// Threads each transcription uses. On a small machine one worker with every core is fastest for a
    /// single utterance; more workers with fewer threads each serve more simultaneous calls.
    pub threads: usize,
    /// Worker threads, each with its own whisper state (memory: ~one model activation set each).
    pub workers: usize,
    /// Jobs that may wait for a worker before new ones are refused as overloaded.
    pub queue: usize,
    /// Forced language: no detection pass.
    pub language: String,
    pub window: WindowPolicy,
    /// Produce segment timestamps (a few more decoder tokens per segment).
    pub timestamps: bool,
    /// Decode again at rising temperatures when the first greedy decode looks unreliable (whisper's
    /// default). It rescues some hard utterances but can multiply the decoding time of short, unclear
    /// ones; `switchboard bench stt --no-fallback` measures both.
    pub temperature_fallback: bool,
    /// Run one short transcription at load so the first caller does not pay for whisper.cpp's lazy
    /// allocations.
    pub warm_up: bool,
}

impl WhisperConfig {
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        WhisperConfig {
            model_path: model_path.into(),
            threads: cores,
            workers: 1,
            queue: 32,
            language: "en".to_owned(),
            window: WindowPolicy::Adaptive,
            timestamps: false,
            temperature_fallback: true,
            warm_up: true,
        }
    }
}

struct Job {
    samples: Vec<f32>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Transcript, SttError>>,
}

/// Whisper speech-to-text. Cheap to share behind an `Arc`; dropping the last handle stops the workers
/// once the queue drains.
pub struct WhisperStt {
    jobs: mpsc::SyncSender<Job>,
    /// Jobs sent but not yet picked up, for the overload error and for metrics.
    waiting: Arc<AtomicUsize>,
    config: WhisperConfig,
    load_time: Duration,
}

impl std::fmt::Debug for WhisperStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperStt")
            .field("model", &self.config.model_path)
            .field("workers", &self.config.workers)
            .field("threads", &self.config.threads)
            .finish()
    }
}

impl WhisperStt {
    /// Loads the model and starts the workers. Blocks for the load (and warm-up).
    pub fn load(config: WhisperConfig) -> Result<Self, LoadError> {
        let started = Instant::now();
        whisper_rs::install_logging_hooks();
        let ctx = load_context(&config.model_path)?;
        let ctx = Arc::new(ctx);

        let (jobs, rx) = mpsc::sync_channel::<Job>(config.queue.max(1));
        // std's receiver has a single consumer; the workers take turns holding it while they wait.
        let rx = Arc::new(Mutex::new(rx));
        let waiting = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LoadError>>();

        for i in 0..config.workers.max(1) {
            let ctx = Arc::clone(&ctx);
            let rx = Arc::clone(&rx);
            let waiting = Arc::clone(&waiting);
            let config = config.clone();
            let ready = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("whisper-{i}"))
                .spawn(move || worker(&ctx, &rx, &waiting, &config, &ready))
                .map_err(|e| LoadError::Thread(e.to_string()))?;
        }
        drop(ready_tx);
        for _ in 0..config.workers.max(1) {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(LoadError::Thread("a worker exited during start-up".into())),
            }
        }
        Ok(WhisperStt {
            jobs,
            waiting,
            config,
            load_time: started.elapsed(),
        })
    }

    /// Time `load` took, warm-up included.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    pub fn config(&self) -> &WhisperConfig {
        &self.config
    }

    /// Queues a transcription and returns at once; the result is collected from the [`Pending`]. Dropping
    /// the `Pending` before a worker picks the job up cancels it (a speculation the caller overtook).
    pub fn start(&self, samples: Vec<f32>) -> Result<Pending, SttError> {
        self.submit(samples).map(Pending)
    }

    fn submit(&self, samples: Vec<f32>) -> Result<oneshot::Receiver<Result<Transcript, SttError>>, SttError> {
        if samples.is_empty() {
            return Err(SttError::BadInput("no audio".into()));
        }
        if samples.iter().any(|s| !s.is_finite()) {
            return Err(SttError::BadInput(
                "audio contains NaN or infinite samples".into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        match self.jobs.try_send(Job {
            samples,
            enqueued: Instant::now(),
            reply,
        }) {
            Ok(()) => Ok(rx),
            Err(mpsc::TrySendError::Full(_)) => {
                let n = self.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
                Err(SttError::Overloaded(n))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(SttError::Unavailable)
            }
        }
    }

    /// Transcribes from a thread that is not an async worker (the CLI, benchmarks).
    pub fn transcribe_blocking(&self, samples: Vec<f32>) -> Result<Transcript, SttError> {
        self.submit(samples)?
            .blocking_recv()
            .map_err(|_| SttError::Unavailable)?
    }
}

/// A transcription under way (see [`WhisperStt::start`]).
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<Transcript, SttError>>);

impl Pending {
    /// Blocks until the transcript is ready. Not for async worker threads.
    pub fn wait(self) -> Result<Transcript, SttError> {
        self.0.blocking_recv().map_err(|_| SttError::Unavailable)?
    }
}

impl SpeechToText for WhisperStt {
    fn transcribe(
        &self,
        samples: Vec<f32>,
    ) -> impl std::future::Future<Output = Result<Transcript, SttError>> + Send {
        let submitted = self.submit(samples);
        async move { submitted?.await.map_err(|_| SttError::Unavailable)? }
    }
}

fn load_context(path: &Path) -> Result<WhisperContext, LoadError> {
    let fail = |reason: String| LoadError::Model {
        path: path.display().to_string(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let path_str = path
        .to_str()
        .ok_or_else(|| fail("path is not valid UTF-8".into()))?;
    let mut params = WhisperContextParameters::default();
    // Flash attention made whisper.cpp's encoder ~50 % slower on these CPUs (shared/MODELS.md).
    params.flash_attn(false).use_gpu(false);
    WhisperContext::new_with_params(path_str, params).map_err(|e| fail(e.to_string()))
}

fn worker(
    ctx: &WhisperContext,
    rx: &Mutex<mpsc::Receiver<Job>>,
    waiting: &AtomicUsize,
    config: &WhisperConfig,
    ready: &mpsc::Sender<Result<(), LoadError>>,
) {
    let mut state = match ctx.create_state() {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(LoadError::Model {
                path: config.model_path.display().to_string(),
                reason: format!("could not create a whisper state: {e}"),
            }));
            return;
        }
    };
    if config.warm_up {
        // Half a second of quiet noise: exercises the encoder and decoder graphs once.
        let warm: Vec<f32> = (0..8_000)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) * 1e-4)
            .collect();
        if let Err(e) = run(&mut state, config, &warm) {
            tracing::warn!(error = %e, "whisper warm-up failed");
        }
    }
    let _ = ready.send(Ok(()));

    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // every handle dropped
            }
        };
        waiting.fetch_sub(1, Ordering::SeqCst);
        if job.reply.is_closed() {
            continue; // the caller gave up (hung up, barged in): don't spend the CPU
        }
        let queued = job.enqueued.elapsed();
        // A panic here must not end the worker (and with the last one, every call's recognition):
        // the job fails as `Unavailable` (its reply channel is dropped) and the worker goes on with
        // a fresh whisper state, since the old one may hold a half-finished decode.
        let ran = panic::catch_unwind(AssertUnwindSafe(|| run(&mut state, config, &job.samples)));
        let result = match ran {
            Ok(result) => result,
            Err(_) => {
                drop(job.reply);
                tracing::error!("whisper worker panicked: starting over with a new state");
                match ctx.create_state() {
                    Ok(s) => state = s,
                    Err(e) => {
                        tracing::error!("whisper worker could not create a new state: {e}");
                        return;
                    }
                }
                continue;
            }
        };
        let _ = job.reply.send(result.map(|mut t| {
            t.timings.queued = queued;
            t
        }));
    }
}

fn run(state: &mut WhisperState, config: &WhisperConfig, samples: &[f32]) -> Result<Transcript, SttError> {
    fail::fail_point!("stt::transcribe");
    let started = Instant::now();
    let audio_ctx = config.window.audio_ctx(samples.len());
    let (mut segments, mut text, mut looped) = decode(state, config, samples, audio_ctx)?;
    let mut used_ctx = audio_ctx;
    if looped && audio_ctx < FULL_AUDIO_CTX {
        // A shortened window occasionally sends the decoder round a loop ("sounds good sounds good …"),
        // mostly on very short clips, and the temperature fallback only sometimes gets it out. Whisper
        // was trained on the full 30 s window, which does not loop on those clips: pay for it only then.
        tracing::debug!(
            audio_ctx,
            "whisper decode looped: decoding again with the full window"
        );
        (segments, text, looped) = decode(state, config, samples, FULL_AUDIO_CTX)?;
        used_ctx = FULL_AUDIO_CTX;
    }
    if looped {
        tracing::debug!("whisper decode looped with the full window too");
    }
    Ok(Transcript {
        text,
        segments,
        audio: audio_duration(samples),
        timings: SttTimings {
            queued: Duration::ZERO,
            inference: started.elapsed(),
            audio_ctx: used_ctx,
        },
    })
}

fn audio_duration(samples: &[f32]) -> Duration {
    Duration::from_secs_f64(samples.len() as f64 / f64::from(STT_SAMPLE_RATE))
}

/// One whisper pass with encoder window `audio_ctx`: the segments, their text joined, and whether the
/// decoder looped.
fn decode(
    state: &mut WhisperState,
    config: &WhisperConfig,
    samples: &[f32],
    audio_ctx: u32,
) -> Result<(Vec<Segment>, String, bool), SttError> {
    let max_tokens = max_tokens_for(samples.len());
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(i32::try_from(config.threads.max(1)).unwrap_or(1));
    params.set_language(Some(&config.language));
    params.set_detect_language(false);
    params.set_translate(false);
    params.set_no_context(true);
    params.set_no_timestamps(!config.timestamps);
    params.set_single_segment(!config.timestamps);
    params.set_suppress_nst(true);
    if !config.temperature_fallback {
        params.set_temperature_inc(0.0);
    }
    params.set_audio_ctx(i32::try_from(audio_ctx).unwrap_or(0));
    params.set_max_tokens(i32::try_from(max_tokens).unwrap_or(0));
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);

    state
        .full(params, samples)
        .map_err(|e| SttError::Failed(e.to_string()))?;

    let audio = audio_duration(samples);
    let mut segments = Vec::new();
    let mut tokens = 0usize;
    for seg in state.as_iter() {
        tokens += usize::try_from(seg.n_tokens()).unwrap_or(0);
        let text = seg.to_str_lossy().map_err(|e| SttError::Failed(e.to_string()))?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        // whisper reports times in units of 10 ms, and can place the end of the last segment past the end of
        // the audio (inside the zero padding of its window).
        let ts = |t: i64| Duration::from_millis(u64::try_from(t.max(0)).unwrap_or(0) * 10).min(audio);
        segments.push(Segment {
            start: ts(seg.start_timestamp()),
            end: ts(seg.end_timestamp()),
            text: text.to_owned(),
        });
    }
    let text = segments
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let looped = looks_looped(&text, tokens, max_tokens);
    Ok((segments, text, looped))
}
