//! One call: the task that owns it, and the small tasks it delegates slow work to.
//!
//! The call task alone holds the call's state (flow state, turn detector, what is queued for the
//! caller's ear). Recognition, understanding, replies and webhooks run in tasks that report back over
//! one channel, each result tagged with the *epoch* it was asked in: a barge-in starts a new epoch, so
//! whatever was in flight for the interrupted exchange is dropped on arrival instead of being chased
//! and cancelled everywhere. Speech synthesis runs in one speaker task per call, which keeps phrases in
//! the order the flow produced them even when a streamed reply is followed by a scripted line.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_audio::telephone::FRAME_BYTES;
use switchboard_audio::turns::{SpeculativeTurns, TurnAction};
use switchboard_audio::{MulawDecoder16k, MulawEncoder8k, VadConfig, g711};
use switchboard_core::llm::{CancelToken, LanguageModel, LlmError};
use switchboard_core::stt::{SpeechToText, SttError, Transcript};
use switchboard_core::tts::{Speech, TextToSpeech, TtsError};
use switchboard_flow::{Action, CallState, Contact, Input, WebhookRequest};
use switchboard_flow::{Flow, model};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::phrases::{PhraseSplitter, split};
use crate::report::{
    CallLog, CallNote, CallReport, EndReason, EventRecord, LogEntry, Speaker, TurnRecord, TurnTimings,
};

/// What the provider's side of the call sends the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// Caller audio, 8 kHz mu-law, any length.
    Media(Vec<u8>),
    Dtmf(char),
    /// The provider played everything sent before the mark of this name.
    Mark(String),
    /// The call is over on the provider's side.
    Stop,
}

/// What the pipeline asks the provider's side to do.
#[derive(Debug, Clone, PartialEq)]
pub enum CallCommand {
    /// One 20 ms frame of bot audio, 8 kHz mu-law, sent in real time.
    Media(Vec<u8>),
    Mark(String),
    /// Drop the bot audio buffered but not yet played (barge-in).
    Clear,
    Transfer(String),
    Hangup,
}

/// The engines a call uses, shared by every call.
#[derive(Debug)]
pub struct Engines<S, L, T> {
    pub stt: Arc<S>,
    pub llm: Arc<L>,
    pub tts: Arc<T>,
}

impl<S, L, T> Clone for Engines<S, L, T> {
    fn clone(&self) -> Self {
        Self {
            stt: self.stt.clone(),
            llm: self.llm.clone(),
            tts: self.tts.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallSettings {
    pub vad: VadConfig,
    /// A pause this long starts a speculative transcription (see `switchboard_audio::turns`).
    pub speculate_after: Duration,
    /// End the turn before the end-of-turn silence has run out once the caller has paused this
    /// long and the speculative transcript reads as a finished sentence (see [`reads_finished`]);
    /// `None`: always wait out the silence. Saves most of the silence on plain questions, at the
    /// risk of answering a caller who only paused mid-thought (they can barge in).
    pub early_end_of_turn: Option<Duration>,
    /// Caller speech while the bot talks interrupts it. Speech shorter than `vad.min_speech`
    /// ("mm-hm", a cough) never does.
    pub barge_in: bool,
    /// Ask the language model when the flow's matchers cannot decide.
    pub understand_with_model: bool,
    /// Write both sides (caller left, bot right) to this WAV file at the end.
    pub recording: Option<PathBuf>,
    /// Told of every turn and event as it happens (the call log); per call, like `recording`.
    pub log: Option<CallLog>,
    /// After the flow ends the call, how long to wait for the provider to confirm the last words
    /// were played before hanging up anyway.
    pub goodbye_grace: Duration,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            vad: VadConfig::default(),
            speculate_after: Duration::from_millis(200),
            early_end_of_turn: Some(Duration::from_millis(350)),
            barge_in: true,
            understand_with_model: true,
            recording: None,
            log: None,
            goodbye_grace: Duration::from_secs(3),
        }
    }
}

const FRAME: Duration = Duration::from_millis(20);

/// Whether a transcript reads as a finished sentence, so the turn may end before the full
/// end-of-turn silence. whisper ends what it heard with `.`, `?` or `!` when it sounds complete and
/// with `...` or a comma when it trails off; a last word that needs a continuation ("and", "my",
/// "um") or a number (callers pause between groups of digits) means the caller probably goes on.
pub fn reads_finished(text: &str) -> bool {
    const GOES_ON: &[&str] = &[
        "a", "an", "and", "at", "because", "but", "for", "from", "i", "i'm", "in", "is", "it's", "like",
        "my", "of", "on", "or", "so", "that", "the", "then", "to", "uh", "um", "with", "your", "er", "hmm",
    ];
    let text = text.trim();
    if text.ends_with("...") || text.ends_with('…') || !text.ends_with(['.', '?', '!']) {
        return false;
    }
    let last = text
        .trim_end_matches(['.', '?', '!'])
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
        .to_lowercase();
    !last.is_empty() && !last.chars().any(|c| c.is_ascii_digit()) && !GOES_ON.contains(&last.as_str())
}

/// What a caller hears when an engine stops under their call.
pub const ENGINE_FAILURE_APOLOGY: &str = "I'm sorry, we're having a technical problem and can't continue this call. Please call back in a few minutes. Goodbye.";

/// Results of delegated work, tagged with the epoch they were asked in.
enum Internal {
    Transcript {
        id: u64,
        result: Result<Transcript, SttError>,
    },
    Understood {
        epoch: u64,
        result: model::Understood,
    },
    Webhook {
        epoch: u64,
        input: Input,
    },
    FirstToken {
        epoch: u64,
    },
    ReplyDone {
        epoch: u64,
        result: Result<String, LlmError>,
    },
    Spoken {
        epoch: u64,
        phrase: Phrase,
        result: Result<Speech, TtsError>,
    },
    /// The speaker finished (or dropped) one utterance.
    Uttered {
        epoch: u64,
    },
}

/// A phrase the speaker synthesized.
struct Phrase {
    id: u64,
    text: String,
    /// First phrase of a bot line (a scripted `say` or a reply): starts a new transcript line.
    starts_line: bool,
}

/// What the speaker task speaks, in order.
enum Utterance {
    Text(String),
    /// A reply still being written: phrases arrive on the channel until it closes.
    Reply(mpsc::UnboundedReceiver<String>),
}

/// The speaker: synthesizes utterances strictly in order, skipping those of an old epoch.
async fn speaker<T: TextToSpeech + 'static>(
    tts: Arc<T>,
    epoch: Arc<AtomicU64>,
    mut queue: mpsc::UnboundedReceiver<(u64, Utterance)>,
    results: mpsc::UnboundedSender<Internal>,
) {
    let mut next_id = 0u64;
    while let Some((asked_in, utterance)) = queue.recv().await {
        let current = || epoch.load(Ordering::Acquire) == asked_in;
        let mut first = true;
        let mut speak = |text: String, first: &mut bool| {
            next_id += 1;
            let phrase = Phrase {
                id: next_id,
                text,
                starts_line: std::mem::take(first),
            };
            let tts = tts.clone();
            async move {
                let result = tts.synthesize(phrase.text.clone()).await;
                Internal::Spoken {
                    epoch: asked_in,
                    phrase,
                    result,
                }
            }
        };
        match utterance {
            Utterance::Text(text) => {
                for p in split(&text) {
                    if !current() {
                        break;
                    }
                    if results.send(speak(p, &mut first).await).is_err() {
                        return;
                    }
                }
            }
            Utterance::Reply(mut phrases) => {
                while let Some(p) = phrases.recv().await {
                    if !current() {
                        break;
                    }
                    if results.send(speak(p, &mut first).await).is_err() {
                        return;
                    }
                }
            }
        }
        if results.send(Internal::Uttered { epoch: asked_in }).is_err() {
            return;
        }
    }
}

/// Audio queued for the caller, and the marks that tell what was played.
#[derive(Default)]
struct Player {
    frames: VecDeque<(u64, [u8; FRAME_BYTES])>,
    /// Phrases whose last frame was sent, waiting for the provider's mark.
    unconfirmed: VecDeque<u64>,
}

impl Player {
    fn idle(&self) -> bool {
        self.frames.is_empty() && self.unconfirmed.is_empty()
    }

    fn talking(&self) -> bool {
        !self.idle()
    }
}

/// A phrase queued for the caller: which bot line of the report it belongs to, and whether the
/// provider confirmed it was played.
struct QueuedPhrase {
    turn: usize,
    text: String,
    heard: bool,
}

enum Ending {
    Hangup,
    Transfer(String),
}

struct Call<S, L, T> {
    flow: Arc<Flow>,
    state: CallState,
    engines: Engines<S, L, T>,
    settings: CallSettings,
    commands: mpsc::Sender<CallCommand>,
    internal: mpsc::UnboundedSender<Internal>,
    speaker: mpsc::UnboundedSender<(u64, Utterance)>,
    /// Bumped by a barge-in; shared with the speaker so it drops stale phrases itself.
    epoch: Arc<AtomicU64>,
    started: Instant,
    turns: SpeculativeTurns,
    decoder: MulawDecoder16k,
    decoded: Vec<f32>,
    /// Speculations and turns being transcribed: id → result once known.
    transcripts: HashMap<u64, Option<Result<Transcript, SttError>>>,
    /// A turn that ended and waits for its transcript (id, timings so far).
    waiting_turn: Option<(u64, TurnTimings)>,
    /// The live speculation whose transcript reads as finished: the turn ends when the pause
    /// reaches `settings.early_end_of_turn`.
    finished_speculation: Option<u64>,
    next_turn_id: u64,
    /// Timings of the exchange in progress (caller turn → bot answer).
    exchange: Option<(usize, TurnTimings)>,
    player: Player,
    /// Utterances sent to the speaker and not yet finished: the bot is about to talk.
    pending_utterances: usize,
    /// The bot line of the report that new phrases are appended to.
    line: Option<usize>,
    /// Phrases not yet confirmed as played, by id (bookkeeping for barge-in).
    phrases: HashMap<u64, QueuedPhrase>,
    reply_cancel: Option<CancelToken>,
    /// The flow waits for the model or a webhook; caller input waits here meanwhile.
    awaiting_driver: bool,
    deferred: VecDeque<Input>,
    listen_timeout: Option<Duration>,
    silence_deadline: Option<Instant>,
    ending: Option<(Ending, Option<Instant>)>,
    report: CallReport,
    next_turn_seq: u32,
    /// Bot lines (turn indexes) whose first frame went out.
    lines_started: std::collections::HashSet<usize>,
    caller_track: Vec<i16>,
    bot_track: Vec<i16>,
    /// An engine stopped under the call: it is apologizing and hanging up, the flow is over.
    engine_failed: bool,
}

/// Runs one call until the flow ends it or the provider stops the stream, and returns what happened.
///
/// `events` come from the provider (media, DTMF, marks, stop); `commands` go back to it. The first
/// greeting is synthesized at once, and audio goes out one 20 ms frame per 20 ms.
pub async fn run_call<S, L, T>(
    flow: Arc<Flow>,
    contact: Contact,
    engines: Engines<S, L, T>,
    settings: CallSettings,
    mut events: mpsc::Receiver<CallEvent>,
    commands: mpsc::Sender<CallCommand>,
) -> CallReport
where
    S: SpeechToText + 'static,
    L: LanguageModel + 'static,
    T: TextToSpeech + 'static,
{
    let (internal, mut internal_rx) = mpsc::unbounded_channel();
    let (speaker_tx, speaker_rx) = mpsc::unbounded_channel();
    let epoch = Arc::new(AtomicU64::new(0));
    let speaker_task = tokio::spawn(speaker(
        engines.tts.clone(),
        epoch.clone(),
        speaker_rx,
        internal.clone(),
    ));
    let flow = if settings.understand_with_model {
        flow
    } else {
        Arc::new((*flow).clone().with_model_understanding(false))
    };
    let (state, greeting) = flow.start(contact);
    let mut call = Call {
        turns: SpeculativeTurns::new(settings.vad.clone(), settings.speculate_after),
        flow,
        state,
        engines,
        settings,
        commands,
        internal,
        speaker: speaker_tx,
        epoch,
        started: Instant::now(),
        decoder: MulawDecoder16k::new(),
        decoded: Vec::new(),
        transcripts: HashMap::new(),
        waiting_turn: None,
        finished_speculation: None,
        next_turn_id: 1 << 40,
        exchange: None,
        player: Player::default(),
        pending_utterances: 0,
        line: None,
        phrases: HashMap::new(),
        reply_cancel: None,
        awaiting_driver: false,
        deferred: VecDeque::new(),
        listen_timeout: None,
        silence_deadline: None,
        ending: None,
        report: CallReport::new(),
        next_turn_seq: 0,
        lines_started: std::collections::HashSet::new(),
        caller_track: Vec::new(),
        bot_track: Vec::new(),
        engine_failed: false,
    };
    call.apply(greeting);

    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(CallEvent::Stop) => {
                    call.caller_left(EndReason::CallerHungUp);
                    break;
                }
                None => {
                    call.caller_left(EndReason::Disconnected);
                    break;
                }
                Some(event) => call.on_event(event),
            },
            Some(msg) = internal_rx.recv() => call.on_internal(msg),
            _ = tick.tick() => {
                if call.on_tick().await {
                    break;
                }
            }
        }
    }
    speaker_task.abort();
    if let Some(c) = &call.reply_cancel {
        c.cancel();
    }
    call.finish()
}

impl<S, L, T> Call<S, L, T>
where
    S: SpeechToText + 'static,
    L: LanguageModel + 'static,
    T: TextToSpeech + 'static,
{
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn note(&mut self, note: CallNote) {
        let record = EventRecord { at: self.now(), note };
        if let Some(log) = &self.settings.log {
            log.send(LogEntry::Event(record.clone()));
        }
        self.report.events.push(record);
    }

    /// Adds a turn with the next `seq`; returns its index in the report.
    fn push_turn(&mut self, speaker: Speaker, text: String, at: Duration) -> usize {
        self.report.turns.push(TurnRecord {
            seq: self.next_turn_seq,
            speaker,
            text,
            at,
            end: None,
            interrupted: false,
            timings: None,
        });
        self.next_turn_seq += 1;
        self.report.turns.len() - 1
    }

    /// Tells the call log the turn's current state; a bot line with no words is not (yet) a turn.
    fn log_turn(&self, index: usize) {
        let (Some(log), Some(turn)) = (&self.settings.log, self.report.turns.get(index)) else {
            return;
        };
        if turn.speaker == Speaker::Bot && turn.text.is_empty() {
            log.send(LogEntry::TurnDropped { seq: turn.seq });
        } else {
            log.send(LogEntry::Turn(turn.clone()));
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    // ----- the flow -----

    fn step(&mut self, input: Input) {
        if self.state.is_ended() || self.engine_failed {
            return;
        }
        if self.awaiting_driver && !matches!(input, Input::Understood(_) | Input::WebhookResult(_)) {
            self.deferred.push_back(input);
            return;
        }
        let actions = self.flow.step(&mut self.state, input);
        self.apply(actions);
    }

    fn apply(&mut self, actions: Vec<Action>) {
        self.awaiting_driver = false;
        for action in actions {
            match action {
                Action::Say(text) => self.say(Utterance::Text(text)),
                Action::Listen { timeout_ms, .. } => {
                    self.listen_timeout = Some(Duration::from_millis(u64::from(timeout_ms)));
                }
                Action::Understand(request) => {
                    self.awaiting_driver = true;
                    let llm = self.engines.llm.clone();
                    let (tx, epoch) = (self.internal.clone(), self.epoch());
                    tokio::spawn(async move {
                        let result = model::understand(&*llm, &request).await;
                        let _ = tx.send(Internal::Understood { epoch, result });
                    });
                }
                Action::Respond {
                    instructions,
                    utterance,
                } => self.respond(&instructions, &utterance),
                Action::Webhook(request) => {
                    self.awaiting_driver = true;
                    let (tx, epoch) = (self.internal.clone(), self.epoch());
                    tokio::spawn(async move {
                        let input = Input::WebhookResult(call_webhook(&request).await);
                        let _ = tx.send(Internal::Webhook { epoch, input });
                    });
                }
                Action::Transfer { to, reason } => {
                    self.report.transferred_to = Some(to.clone());
                    self.note(CallNote::Transfer {
                        to: to.clone(),
                        reason,
                    });
                    self.ending = Some((Ending::Transfer(to), None));
                }
                Action::RecordOptOut => {
                    self.report.opted_out = true;
                    self.note(CallNote::OptOut);
                }
                Action::Hangup => self.ending = Some((Ending::Hangup, None)),
                Action::NoMatch { step, heard, .. } => self.note(CallNote::NoMatch { step, heard }),
                Action::Outcome { outcome, slots } => {
                    self.report.outcome = Some(outcome);
                    self.report.slots = slots;
                }
            }
        }
        if !self.awaiting_driver {
            while let Some(input) = self.deferred.pop_front() {
                self.step(input);
                if self.awaiting_driver {
                    break;
                }
            }
        }
    }

    /// An engine stopped under this call (it crashed and is being restarted, or the runtime is
    /// shutting down): what the flow was waiting for will never come, so rather than leave the caller
    /// in silence, apologize and hang up. Only `Unavailable` errors come here; an overloaded engine
    /// or one bad request is the flow's to handle.
    fn end_after_engine_failure(&mut self, message: String) {
        self.note(CallNote::Error {
            message: message.clone(),
        });
        if self.engine_failed {
            return;
        }
        self.engine_failed = true;
        tracing::error!("{message}: ending the call");
        // The rest of what the bot was saying would only delay the apology.
        self.cut_speech();
        if !self.state.is_ended() {
            self.report.outcome = Some(switchboard_flow::Outcome::Failed);
        }
        self.awaiting_driver = false;
        self.deferred.clear();
        self.say(Utterance::Text(ENGINE_FAILURE_APOLOGY.into()));
        self.ending = Some((Ending::Hangup, None));
    }

    fn say(&mut self, utterance: Utterance) {
        self.listen_timeout = None;
        self.silence_deadline = None;
        self.pending_utterances += 1;
        let _ = self.speaker.send((self.epoch(), utterance));
    }

    /// The bot is talking or about to.
    fn bot_busy(&self) -> bool {
        self.player.talking() || self.pending_utterances > 0
    }

    fn respond(&mut self, instructions: &str, utterance: &str) {
        let (phrases_tx, phrases_rx) = mpsc::unbounded_channel();
        self.say(Utterance::Reply(phrases_rx));
        let messages = model::respond_messages(self.flow.system_prompt(), instructions, utterance);
        let cancel = CancelToken::new();
        self.reply_cancel = Some(cancel.clone());
        let llm = self.engines.llm.clone();
        let (tx, epoch) = (self.internal.clone(), self.epoch());
        tokio::spawn(async move {
            let mut splitter = PhraseSplitter::new();
            let mut first = true;
            let result = model::respond(&*llm, messages, cancel, |delta| {
                if std::mem::take(&mut first) {
                    let _ = tx.send(Internal::FirstToken { epoch });
                }
                for p in splitter.push(delta) {
                    let _ = phrases_tx.send(p);
                }
            })
            .await;
            if let Some(rest) = splitter.finish() {
                let _ = phrases_tx.send(rest);
            }
            let _ = tx.send(Internal::ReplyDone { epoch, result });
        });
    }

    // ----- the provider's events -----

    fn on_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::Media(mulaw) => self.on_audio(&mulaw),
            CallEvent::Dtmf(digit) => {
                self.note(CallNote::Dtmf { digit });
                if self.bot_busy() {
                    self.barge_in();
                }
                self.silence_deadline = None;
                self.step(Input::Dtmf(digit));
            }
            CallEvent::Mark(name) => self.on_mark(&name),
            CallEvent::Stop => {}
        }
    }

    fn on_audio(&mut self, mulaw: &[u8]) {
        self.caller_track.extend(g711::decode(mulaw));
        self.decoded.clear();
        self.decoder.decode(mulaw, &mut self.decoded);
        let samples = std::mem::take(&mut self.decoded);
        for action in self.turns.push(&samples) {
            self.on_turn_action(action);
        }
        self.decoded = samples;
        self.maybe_end_turn_early();
    }

    /// Ends the turn on a finished-sounding speculation once the pause is long enough.
    fn maybe_end_turn_early(&mut self) {
        let (Some(id), Some(min_pause)) = (self.finished_speculation, self.settings.early_end_of_turn) else {
            return;
        };
        if self.turns.live_speculation() != Some(id) {
            // The caller spoke again (or the turn ended by itself): that transcript is stale.
            self.finished_speculation = None;
            return;
        }
        if self.turns.pause().is_some_and(|p| p >= min_pause) {
            self.finished_speculation = None;
            for action in self.turns.end_turn_early(id) {
                self.on_turn_action(action);
            }
        }
    }

    fn on_turn_action(&mut self, action: TurnAction) {
        match action {
            TurnAction::SpeechStarted { .. } => {
                self.silence_deadline = None;
                if self.settings.barge_in && self.bot_busy() {
                    self.barge_in();
                }
            }
            TurnAction::Speculate { id, samples } => self.transcribe(id, samples),
            TurnAction::Abandon { id } => {
                self.transcripts.remove(&id);
            }
            TurnAction::TurnEnded {
                samples,
                start,
                end,
                speculation,
            } => {
                let now = self.now();
                // The turn ended `position - end` ago in the audio; that much before now in real time.
                let position = self.turns.position();
                let lag = position.saturating_sub(end);
                let timings = TurnTimings {
                    speech_start: now.saturating_sub(position.saturating_sub(start)),
                    speech_end: now.saturating_sub(lag),
                    turn_end: now,
                    ..TurnTimings::default()
                };
                let id = match speculation {
                    Some(id) if self.transcripts.contains_key(&id) => id,
                    _ => {
                        let id = self.next_turn_id;
                        self.next_turn_id += 1;
                        self.transcribe(id, samples);
                        id
                    }
                };
                self.waiting_turn = Some((id, timings));
                self.try_finish_turn();
            }
            TurnAction::Discarded { .. } => {}
        }
    }

    fn transcribe(&mut self, id: u64, samples: Vec<f32>) {
        self.transcripts.insert(id, None);
        let stt = self.engines.stt.clone();
        let tx = self.internal.clone();
        tokio::spawn(async move {
            let result = stt.transcribe(samples).await;
            let _ = tx.send(Internal::Transcript { id, result });
        });
    }

    /// Hands the ended turn's transcript to the flow once it is known.
    fn try_finish_turn(&mut self) {
        let Some((id, _)) = &self.waiting_turn else { return };
        let Some(Some(_)) = self.transcripts.get(id) else {
            return;
        };
        let Some((id, mut timings)) = self.waiting_turn.take() else {
            return;
        };
        let Some(Some(result)) = self.transcripts.remove(&id) else {
            return;
        };
        self.transcripts.clear();
        timings.transcript_ready = Some(self.now());
        match result {
            Ok(t) if !t.text.trim().is_empty() => {
                let text = t.text.trim().to_string();
                let index = self.push_turn(Speaker::Caller, text.clone(), timings.speech_start);
                if let Some(turn) = self.report.turns.get_mut(index) {
                    turn.end = Some(timings.speech_end);
                }
                self.log_turn(index);
                self.exchange = Some((index, timings));
                self.step(Input::Utterance(text));
            }
            Ok(_) => {}
            Err(SttError::Unavailable) => {
                self.end_after_engine_failure(format!("speech-to-text: {}", SttError::Unavailable));
            }
            Err(e) => self.note(CallNote::Error {
                message: format!("speech-to-text: {e}"),
            }),
        }
    }

    fn on_mark(&mut self, name: &str) {
        let Ok(id) = name.parse::<u64>() else { return };
        if !self.player.unconfirmed.contains(&id) {
            return;
        }
        while let Some(first) = self.player.unconfirmed.pop_front() {
            self.phrases.remove(&first);
            if first == id {
                break;
            }
        }
    }

    /// The caller spoke over the bot: stop talking, drop what was queued, keep what was heard.
    fn barge_in(&mut self) {
        let heard = self.cut_speech();
        self.note(CallNote::BargeIn { heard });
        let _ = self.commands.try_send(CallCommand::Clear);
        // A goodbye that was interrupted still ends the call.
        if let Some((_, deadline)) = &mut self.ending {
            *deadline = None;
        }
    }

    /// Stops the bot's speech after the phrase being played: what is queued or still being
    /// written is dropped, and the transcript keeps only what the caller heard (returned).
    fn cut_speech(&mut self) -> String {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = self.reply_cancel.take() {
            c.cancel();
        }
        // The phrase being played was partly heard: count it; what was queued after it was not.
        let playing = self
            .player
            .unconfirmed
            .front()
            .copied()
            .or_else(|| self.player.frames.front().map(|(id, _)| *id));
        if let Some(p) = playing.and_then(|id| self.phrases.get_mut(&id)) {
            p.heard = true;
        }
        self.player.frames.clear();
        self.player.unconfirmed.clear();
        self.pending_utterances = 0;
        self.line = None;
        // Lines with unplayed phrases keep only what was played (a line nobody heard is dropped
        // at the end of the call).
        let mut cut: Vec<usize> = self.phrases.values().map(|p| p.turn).collect();
        cut.sort_unstable();
        cut.dedup();
        let mut heard = Vec::new();
        for turn in cut {
            let mut ids: Vec<u64> = self
                .phrases
                .iter()
                .filter(|(_, p)| p.turn == turn)
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            if let Some(record) = self.report.turns.get_mut(turn) {
                let unplayed: Vec<&str> = ids
                    .iter()
                    .filter_map(|id| self.phrases.get(id))
                    .filter(|p| !p.heard)
                    .map(|p| p.text.as_str())
                    .collect();
                // Played phrases of this line were confirmed earlier and are not in `phrases`.
                let mut text = record.text.clone();
                for u in unplayed {
                    if let Some(at) = text.rfind(u) {
                        text.replace_range(at..at + u.len(), "");
                    }
                }
                record.text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                record.interrupted = true;
                heard.push(record.text.clone());
                self.log_turn(turn);
            }
        }
        self.phrases.clear();
        heard
            .into_iter()
            .filter(|h| !h.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    // ----- delegated work coming back -----

    fn on_internal(&mut self, msg: Internal) {
        let current = self.epoch();
        match msg {
            Internal::Transcript { id, result } => {
                let finished = matches!(&result, Ok(t) if reads_finished(&t.text));
                if let Some(slot) = self.transcripts.get_mut(&id) {
                    *slot = Some(result);
                }
                if finished && self.waiting_turn.is_none() && self.turns.live_speculation() == Some(id) {
                    self.finished_speculation = Some(id);
                    self.maybe_end_turn_early();
                }
                self.try_finish_turn();
            }
            Internal::Understood {
                epoch,
                result: Err(LlmError::Unavailable),
            } if epoch == current => {
                self.end_after_engine_failure(format!("language model: {}", LlmError::Unavailable));
            }
            Internal::Understood { epoch, result } if epoch == current => {
                let understanding = result.unwrap_or_else(|e| {
                    self.note(CallNote::Error {
                        message: format!("language model: {e}"),
                    });
                    switchboard_flow::Understanding::NotUnderstood
                });
                self.step(Input::Understood(understanding));
            }
            Internal::Webhook { epoch, input } if epoch == current => self.step(input),
            Internal::FirstToken { epoch } if epoch == current => {
                let now = self.now();
                if let Some((_, t)) = &mut self.exchange {
                    t.first_token.get_or_insert(now);
                }
            }
            Internal::ReplyDone {
                epoch,
                result: Err(LlmError::Unavailable),
            } if epoch == current => {
                self.end_after_engine_failure(format!("language model: {}", LlmError::Unavailable));
            }
            Internal::ReplyDone { epoch, result } => {
                if let Err(e) = result
                    && epoch == current
                    && !matches!(e, LlmError::Cancelled)
                {
                    self.note(CallNote::Error {
                        message: format!("language model: {e}"),
                    });
                }
            }
            Internal::Spoken {
                epoch,
                phrase,
                result,
            } if epoch == current => match result {
                Ok(speech) => self.queue_speech(phrase, &speech),
                Err(TtsError::Unavailable) => {
                    self.end_after_engine_failure(format!("speech synthesis: {}", TtsError::Unavailable));
                }
                Err(e) => self.note(CallNote::Error {
                    message: format!("speech synthesis: {e}"),
                }),
            },
            Internal::Uttered { epoch } if epoch == current => {
                self.pending_utterances = self.pending_utterances.saturating_sub(1);
            }
            // Anything else belongs to an exchange a barge-in ended.
            _ => {}
        }
    }

    fn queue_speech(&mut self, phrase: Phrase, speech: &Speech) {
        let Ok(mut encoder) = MulawEncoder8k::new(speech.sample_rate) else {
            self.note(CallNote::Error {
                message: format!("speech at {} Hz cannot be resampled", speech.sample_rate),
            });
            return;
        };
        let samples: Vec<f32> = speech.samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let mut frames = encoder.push(&samples);
        frames.extend(encoder.finish());
        let turn = match self.line {
            Some(turn) if !phrase.starts_line => turn,
            _ => self.push_turn(Speaker::Bot, String::new(), self.now()),
        };
        self.line = Some(turn);
        if let Some(record) = self.report.turns.get_mut(turn) {
            if !record.text.is_empty() {
                record.text.push(' ');
            }
            record.text.push_str(&phrase.text);
        }
        self.log_turn(turn);
        self.phrases.insert(
            phrase.id,
            QueuedPhrase {
                turn,
                text: phrase.text.clone(),
                heard: false,
            },
        );
        self.player
            .frames
            .extend(frames.into_iter().map(|f| (phrase.id, f)));
    }

    // ----- the clock -----

    /// Sends the next frame, runs timers; `true` when the call is over.
    async fn on_tick(&mut self) -> bool {
        if let Some((id, frame)) = self.player.frames.pop_front() {
            // A bot line starts when the caller starts hearing it, not when it was queued.
            if let Some(turn) = self.phrases.get(&id).map(|p| p.turn)
                && self.lines_started.insert(turn)
            {
                let now = self.now();
                if let Some(record) = self.report.turns.get_mut(turn) {
                    record.at = now;
                }
                self.log_turn(turn);
            }
            if let Some((_, t)) = &mut self.exchange
                && t.first_audio.is_none()
            {
                t.first_audio = Some(self.started.elapsed());
            }
            self.bot_track
                .resize(self.caller_track.len().max(self.bot_track.len()), 0);
            self.bot_track.extend(g711::decode(&frame));
            if self
                .commands
                .send(CallCommand::Media(frame.to_vec()))
                .await
                .is_err()
            {
                self.caller_left(EndReason::Disconnected);
                return true;
            }
            let turn = self.phrases.get(&id).map(|p| p.turn);
            if let Some(record) = turn.and_then(|t| self.report.turns.get_mut(t)) {
                record.end = Some(self.started.elapsed() + FRAME);
            }
            let last_of_phrase = self.player.frames.front().is_none_or(|(next, _)| *next != id);
            if last_of_phrase {
                // The line has been heard this far: tell the log (once per phrase, not per frame).
                if let Some(turn) = turn {
                    self.log_turn(turn);
                }
                self.player.unconfirmed.push_back(id);
                let _ = self.commands.send(CallCommand::Mark(id.to_string())).await;
            }
        }
        // The bot's answer to the last caller turn is on its way: close the exchange's timings.
        if let Some((turn, t)) = &self.exchange
            && (t.first_audio.is_some() || self.state.is_ended())
        {
            let (turn, t) = (*turn, t.clone());
            if let Some(record) = self.report.turns.get_mut(turn) {
                record.timings = Some(t);
            }
            self.log_turn(turn);
            self.exchange = None;
        }
        if !self.bot_busy() && !self.awaiting_driver && self.waiting_turn.is_none() {
            self.line = None;
            // Silence counts from when the bot stopped talking.
            if let Some(timeout) = self.listen_timeout
                && !self.turns_in_speech()
            {
                let deadline = *self.silence_deadline.get_or_insert(Instant::now() + timeout);
                if Instant::now() >= deadline {
                    self.silence_deadline = None;
                    self.listen_timeout = None;
                    self.note(CallNote::Silence);
                    self.step(Input::Silence);
                }
            }
        }
        self.check_ending().await
    }

    fn turns_in_speech(&self) -> bool {
        self.waiting_turn.is_some() || !self.transcripts.is_empty()
    }

    /// Ends the call once the last words were played (or the grace period ran out).
    async fn check_ending(&mut self) -> bool {
        if self.ending.is_none() || !self.player.frames.is_empty() || self.pending_utterances > 0 {
            return false;
        }
        let Some((_, deadline)) = &mut self.ending else {
            return false;
        };
        let deadline = *deadline.get_or_insert(Instant::now() + self.settings.goodbye_grace);
        if !self.player.unconfirmed.is_empty() && Instant::now() < deadline {
            return false;
        }
        let Some((ending, _)) = self.ending.take() else {
            return false;
        };
        let (command, reason) = match ending {
            Ending::Hangup => (CallCommand::Hangup, EndReason::BotHungUp),
            Ending::Transfer(to) => (CallCommand::Transfer(to), EndReason::Transferred),
        };
        let _ = self.commands.send(command).await;
        self.report.ended_by = Some(reason);
        true
    }

    fn caller_left(&mut self, reason: EndReason) {
        if !self.state.is_ended() {
            let actions = self.flow.step(&mut self.state, Input::Hangup);
            for a in actions {
                if let Action::Outcome { outcome, slots } = a {
                    self.report.outcome = Some(outcome);
                    self.report.slots = slots;
                }
            }
        }
        self.report.ended_by.get_or_insert(reason);
    }

    fn finish(mut self) -> CallReport {
        self.report.duration = self.now();
        // Lines a barge-in cut before a word of them was played were never heard.
        let exchange = self.exchange.as_ref().map(|(i, _)| *i);
        let mut index = 0;
        let mut kept_exchange = exchange;
        self.report.turns.retain(|t| {
            let keep = !(t.speaker == Speaker::Bot && t.text.is_empty());
            if !keep && exchange.is_some_and(|e| index < e) {
                kept_exchange = kept_exchange.map(|e| e - 1);
            }
            index += 1;
            keep
        });
        if let (Some((i, _)), Some(k)) = (&mut self.exchange, kept_exchange) {
            *i = k;
        }
        if let Some((turn, t)) = self.exchange.take()
            && let Some(record) = self.report.turns.get_mut(turn)
        {
            record.timings = Some(t);
        }
        if let Some(path) = self.settings.recording.clone() {
            match switchboard_audio::wav::write_wav_i16(
                &path,
                &switchboard_audio::wav::interleave(&self.caller_track, &self.bot_track),
                8000,
                2,
            ) {
                Ok(()) => self.report.recording = Some(path),
                Err(e) => {
                    // A disk full or failing loses the recording, never the call or its log; a
                    // partial file would be served as if it were the recording, so it goes too.
                    tracing::error!("writing the recording {}: {e}", path.display());
                    self.note(CallNote::Error {
                        message: format!("recording: {e}"),
                    });
                    if let Err(e) = std::fs::remove_file(&path)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!("removing the partial recording {}: {e}", path.display());
                    }
                }
            }
        }
        self.report
    }
}

/// Performs a flow's webhook request; the JSON object it answers fills slots.
async fn call_webhook(
    request: &WebhookRequest,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(u64::from(request.timeout_ms)))
        .build()
        .map_err(|e| e.to_string())?;
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = client.request(method, &request.url);
    for (k, v) in &request.headers {
        builder = builder.header(k, v);
    }
    if let Some(body) = &request.body {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
    }
    let response = builder.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a JSON object: {e}"))
}
