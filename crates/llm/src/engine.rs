//! [`LlmEngine`]: the model on its own thread, a bounded queue in front of it, and the
//! [`LanguageModel`] implementation the rest of switchboard uses.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Instant;

use switchboard_core::llm::{
    Answer, CancelToken, ChatMessage, Constraint, GenerationParams, LanguageModel, LlmError, ReplyEvent,
    ReplyStream,
};
use tokio::sync::{mpsc as tmpsc, oneshot};

use crate::EngineError;
use crate::generate::{EngineConfig, Generator, ModelInfo};

/// Text deltas buffered between the inference thread and a slow reader before generation waits.
const STREAM_BUFFER: usize = 64;

enum Job {
    Chat {
        messages: Vec<ChatMessage>,
        params: GenerationParams,
        cancel: CancelToken,
        events: tmpsc::Sender<Result<ReplyEvent, LlmError>>,
        queued_at: Instant,
    },
    Answer {
        messages: Vec<ChatMessage>,
        constraint: Constraint,
        params: GenerationParams,
        reply: oneshot::Sender<Result<Answer, LlmError>>,
    },
    Classify {
        messages: Vec<ChatMessage>,
        labels: Vec<String>,
        reply: oneshot::Sender<Result<Vec<f32>, LlmError>>,
    },
    WarmUp {
        prefix: Vec<ChatMessage>,
        reply: oneshot::Sender<Result<(), LlmError>>,
    },
    ClearCache {
        reply: oneshot::Sender<()>,
    },
}

/// A loaded language model serving requests one at a time on a dedicated thread.
///
/// Cheap to share (`Arc<LlmEngine>`); every method only enqueues. Dropping the engine lets the thread
/// finish its current request and exit; [`LlmEngine::shutdown`] also waits for it.
#[derive(Debug)]
pub struct LlmEngine {
    /// Bounded, so a burst of calls is refused as `Overloaded` instead of queueing without limit;
    /// std's channel because the receiving side is a plain thread, not a task.
    jobs: Option<mpsc::SyncSender<Job>>,
    /// Requests queued or running, for the `Overloaded` error message.
    pending: Arc<AtomicUsize>,
    /// Whether the thread holds a loaded model (false after a panic whose reload failed).
    loaded: Arc<AtomicBool>,
    info: ModelInfo,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Chat { .. } => "Job::Chat",
            Job::Answer { .. } => "Job::Answer",
            Job::Classify { .. } => "Job::Classify",
            Job::WarmUp { .. } => "Job::WarmUp",
            Job::ClearCache { .. } => "Job::ClearCache",
        })
    }
}

impl LlmEngine {
    /// Loads the GGUF model at `path` on a new inference thread and waits until it is ready.
    pub fn load(path: impl AsRef<Path>, config: EngineConfig) -> Result<Self, EngineError> {
        let path = path.as_ref().to_path_buf();
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(config.queue_capacity.max(1));
        let (ready_tx, ready_rx) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let worker_pending = Arc::clone(&pending);
        let loaded = Arc::new(AtomicBool::new(true));
        let worker_loaded = Arc::clone(&loaded);
        let worker = std::thread::Builder::new()
            .name("llm-inference".into())
            .spawn(move || {
                let mut generator = match Generator::load(&path, config.clone()) {
                    Ok(g) => {
                        let _ = ready_tx.send(Ok(g.info().clone()));
                        Some(g)
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = jobs_rx.recv() {
                    // A model that could not be reloaded after a panic is tried again for each
                    // request (the file may be back); until then, requests fail as `Unavailable`
                    // (dropping the job drops its reply channel) and the thread stays up.
                    if generator.is_none() {
                        generator = reload(&path, &config);
                        worker_loaded.store(generator.is_some(), Ordering::Release);
                    }
                    let Some(g) = generator.as_mut() else {
                        drop(job);
                        worker_pending.fetch_sub(1, Ordering::AcqRel);
                        continue;
                    };
                    // A panic in the model (a bug, a bad tensor) must not take every call down: the
                    // request that hit it fails (unwinding drops its reply channel, which its caller
                    // reads as `Unavailable`) and the model is loaded afresh, because a forward pass
                    // cut short may have left the caches half-written.
                    let ran = panic::catch_unwind(AssertUnwindSafe(|| run_job(g, job)));
                    worker_pending.fetch_sub(1, Ordering::AcqRel);
                    if ran.is_err() {
                        tracing::error!("language model thread panicked: reloading the model");
                        generator = reload(&path, &config);
                        worker_loaded.store(generator.is_some(), Ordering::Release);
                    }
                }
            })
            .map_err(EngineError::Thread)?;
        let info = ready_rx
            .recv()
            .map_err(|_| EngineError::Gguf("inference thread died while loading".into()))??;
        tracing::info!(model = %info.name, arch = info.architecture.as_str(), load_ms = info.load_time.as_millis() as u64, "language model loaded");
        Ok(Self {
            jobs: Some(jobs_tx),
            pending,
            loaded,
            info,
            worker: Some(worker),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn submit(&self, job: Job) -> Result<(), LlmError> {
        let jobs = self.jobs.as_ref().ok_or(LlmError::Unavailable)?;
        self.pending.fetch_add(1, Ordering::AcqRel);
        jobs.try_send(job).map_err(|e| {
            let waiting = self.pending.fetch_sub(1, Ordering::AcqRel) - 1;
            match e {
                mpsc::TrySendError::Full(_) => LlmError::Overloaded(waiting),
                mpsc::TrySendError::Disconnected(_) => LlmError::Unavailable,
            }
        })
    }

    /// Queues a chat reply; usable from sync code (read it with [`ChatStream::blocking_next`]) and
    /// async code alike.
    pub fn start_chat(
        &self,
        messages: Vec<ChatMessage>,
        params: GenerationParams,
        cancel: CancelToken,
    ) -> Result<ChatStream, LlmError> {
        let (events, rx) = tmpsc::channel(STREAM_BUFFER);
        self.submit(Job::Chat {
            messages,
            params,
            cancel: cancel.clone(),
            events,
            queued_at: Instant::now(),
        })?;
        Ok(ChatStream { rx, cancel })
    }

    fn start_answer(
        &self,
        messages: Vec<ChatMessage>,
        constraint: Constraint,
        params: GenerationParams,
    ) -> Result<oneshot::Receiver<Result<Answer, LlmError>>, LlmError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Answer {
            messages,
            constraint,
            params,
            reply,
        })?;
        Ok(rx)
    }

    /// [`LanguageModel::answer`] for sync callers (the CLI); must not be called on an async worker.
    pub fn answer_blocking(
        &self,
        messages: Vec<ChatMessage>,
        constraint: Constraint,
        params: GenerationParams,
    ) -> Result<Answer, LlmError> {
        self.start_answer(messages, constraint, params)?
            .blocking_recv()
            .map_err(|_| LlmError::Unavailable)?
    }

    /// The probability of each label as the whole answer (see [`Generator::label_probabilities`]);
    /// for sync callers.
    pub fn label_probabilities_blocking(
        &self,
        messages: Vec<ChatMessage>,
        labels: Vec<String>,
    ) -> Result<Vec<f32>, LlmError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Classify {
            messages,
            labels,
            reply,
        })?;
        rx.blocking_recv().map_err(|_| LlmError::Unavailable)?
    }

    /// [`LanguageModel::warm_up`] for sync callers.
    pub fn warm_up_blocking(&self, prefix: Vec<ChatMessage>) -> Result<(), LlmError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::WarmUp { prefix, reply })?;
        rx.blocking_recv().map_err(|_| LlmError::Unavailable)?
    }

    /// Forgets every cached prompt (benchmarks use it to measure uncached latency).
    pub fn clear_cache_blocking(&self) -> Result<(), LlmError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::ClearCache { reply })?;
        rx.blocking_recv().map_err(|_| LlmError::Unavailable)
    }

    /// Stops accepting requests, lets the current one finish, and waits for the thread to end.
    pub fn shutdown(mut self) {
        self.jobs = None;
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!("language model thread panicked");
        }
    }
}

/// Loads the model again after a panic; `None` (logged) when it cannot be.
fn reload(path: &Path, config: &EngineConfig) -> Option<Generator> {
    let loaded = (|| {
        fail::fail_point!("llm::reload", |msg| Err(EngineError::Gguf(
            msg.unwrap_or_else(|| "injected reload fault".into())
        )));
        Generator::load(path, config.clone())
    })();
    loaded
        .map_err(|e| tracing::error!("language model could not be reloaded: {e}"))
        .ok()
}

fn run_job(generator: &mut Generator, job: Job) {
    fail::fail_point!("llm::job");
    match job {
        Job::Chat {
            messages,
            params,
            cancel,
            events,
            queued_at,
        } => {
            let queued = queued_at.elapsed();
            if events.is_closed() || cancel.is_cancelled() {
                return;
            }
            let result = generator.chat(&messages, &params, &cancel, |delta| {
                events.blocking_send(Ok(ReplyEvent::Text(delta))).is_ok()
            });
            let _ = events.blocking_send(result.map(|mut stats| {
                stats.queued = queued;
                ReplyEvent::Finished(stats)
            }));
            generator.settle();
        }
        Job::Answer {
            messages,
            constraint,
            params,
            reply,
        } => {
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(generator.answer(&messages, &constraint, &params, &CancelToken::new()));
        }
        Job::Classify {
            messages,
            labels,
            reply,
        } => {
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(generator.label_probabilities(&messages, &labels, &CancelToken::new()));
        }
        Job::WarmUp { prefix, reply } => {
            let _ = reply.send(generator.warm_up(&prefix));
        }
        Job::ClearCache { reply } => {
            generator.clear_cache();
            let _ = reply.send(());
        }
    }
}

/// A streamed reply. Dropping it cancels the generation at the next token.
#[derive(Debug)]
pub struct ChatStream {
    rx: tmpsc::Receiver<Result<ReplyEvent, LlmError>>,
    cancel: CancelToken,
}

impl ChatStream {
    /// The next event, blocking the current thread (for sync callers; not on an async worker).
    pub fn blocking_next(&mut self) -> Option<Result<ReplyEvent, LlmError>> {
        self.rx.blocking_recv()
    }

    /// The token that cancels this reply.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl ReplyStream for ChatStream {
    async fn next(&mut self) -> Option<Result<ReplyEvent, LlmError>> {
        self.rx.recv().await
    }
}

impl LanguageModel for LlmEngine {
    type Stream = ChatStream;

    fn stream_chat(
        &self,
        messages: Vec<ChatMessage>,
        params: GenerationParams,
        cancel: CancelToken,
    ) -> impl Future<Output = Result<ChatStream, LlmError>> + Send {
        let stream = self.start_chat(messages, params, cancel);
        async move { stream }
    }

    fn answer(
        &self,
        messages: Vec<ChatMessage>,
        constraint: Constraint,
        params: GenerationParams,
    ) -> impl Future<Output = Result<Answer, LlmError>> + Send {
        let rx = self.start_answer(messages, constraint, params);
        async move { rx?.await.map_err(|_| LlmError::Unavailable)? }
    }

    fn label_probabilities(
        &self,
        messages: Vec<ChatMessage>,
        labels: Vec<String>,
    ) -> impl Future<Output = Result<Vec<f32>, LlmError>> + Send {
        let (reply, rx) = oneshot::channel();
        let submitted = self.submit(Job::Classify {
            messages,
            labels,
            reply,
        });
        async move {
            submitted?;
            rx.await.map_err(|_| LlmError::Unavailable)?
        }
    }

    fn warm_up(&self, prefix: Vec<ChatMessage>) -> impl Future<Output = Result<(), LlmError>> + Send {
        let (reply, rx) = oneshot::channel();
        let submitted = self.submit(Job::WarmUp { prefix, reply });
        async move {
            submitted?;
            rx.await.map_err(|_| LlmError::Unavailable)?
        }
    }

    /// False from a panic whose reload failed until a later request's reload works; also false
    /// once the inference thread has gone.
    fn is_available(&self) -> bool {
        self.loaded.load(Ordering::Acquire) && self.worker.as_ref().is_some_and(|w| !w.is_finished())
    }
}
