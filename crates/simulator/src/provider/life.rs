//! One placed call's life, in its own task: initiated, ringing, then busy / no-answer / failed, or
//! answered (after machine detection, when asked) and run by its TwiML until someone hangs up.
//!
//! The task is the only one deciding what the call does next. It waits only in [`Life::wait`] and
//! while a stream plays, and both also listen for the REST API's changes and for shutdown, so a
//! hang-up or new TwiML from the runtime takes effect wherever the call is.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use switchboard_telephony::rest::AmdMode;
use switchboard_telephony::webhook::{AnsweredBy, CallStatus};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{Order, Source, rfc2822};
use super::{Control, Entry, Shared};
use crate::caller::{self, Caller, StreamEnd, StreamTarget};
use crate::http::post_signed;
use crate::numbers::{Answer, Behaviour};
use crate::record::{Callback, Delivery, EndedBy, StreamRecord};
use crate::twiml::{self, Verb};

/// The beep after a machine's greeting, before detection reports the message end.
const BEEP: Duration = Duration::from_secs(1);
/// How long detection takes to call a person a person.
const HUMAN_DETECTION: Duration = Duration::from_millis(1500);
/// `Enable` reports a machine as soon as it hears one, early in the greeting.
const MACHINE_DETECTION: Duration = Duration::from_secs(2);
/// A person who hears nothing this long after picking up speaks first.
const PATIENCE: Duration = Duration::from_secs(5);
/// An answering machine stops recording after this much silence.
const MACHINE_SILENCE: Duration = Duration::from_secs(3);
/// TwiML documents one call may fetch (the first, redirects, REST updates): a loop ends here.
const MAX_DOCUMENTS: usize = 20;
/// How fast the provider's voice reads `<Say>` (about 150 words a minute).
const PER_WORD: Duration = Duration::from_millis(400);

/// A call just placed: what was asked, and how the number answers.
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) sid: String,
    pub(crate) order: Order,
    pub(crate) behaviour: Behaviour,
}

/// Why a wait ended early.
#[derive(Debug)]
enum Interrupt {
    Control(Control),
    Shutdown,
    TimeLimit,
}

/// What the call does after a verb.
#[derive(Debug)]
enum Next {
    Go,
    Load(Source),
    End(EndedBy),
}

/// Plays the call to its end; the permit (a line of the account) is held until then.
pub(crate) async fn run(
    shared: Arc<Shared>,
    call: Placed,
    control: mpsc::Receiver<Control>,
    _line: OwnedSemaphorePermit,
) {
    let stop = shared.stop.clone();
    let mut life = Life {
        shared,
        call,
        control,
        stop,
        sequence: 0,
        answered: None,
        answered_by: None,
        deadline: None,
        document: None,
    };
    let (status, ended_by) = life.live().await;
    life.finish(status, ended_by).await;
}

struct Life {
    shared: Arc<Shared>,
    call: Placed,
    control: mpsc::Receiver<Control>,
    stop: CancellationToken,
    /// The next status callback's `SequenceNumber`.
    sequence: u32,
    answered: Option<Instant>,
    answered_by: Option<AnsweredBy>,
    /// When an answered call must end (`max_seconds`, `TimeLimit`).
    deadline: Option<Instant>,
    /// The URL of the TwiML being run, for relative `<Redirect>`s.
    document: Option<String>,
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Life {
    fn pace(&self, d: Duration) -> Duration {
        if self.shared.config.fast {
            Duration::ZERO
        } else {
            d
        }
    }

    fn update(&self, f: impl FnOnce(&mut Entry)) {
        self.shared.with_call(&self.call.sid, f);
    }

    fn error(&self, message: String) {
        tracing::warn!(call_sid = %self.call.sid, "{message}");
        self.update(|e| e.record.errors.push(message));
    }

    /// Waits `d`, unless the call is changed, the simulator stops or the call's time is up first.
    async fn wait(&mut self, d: Duration) -> Option<Interrupt> {
        let deadline = self.deadline;
        tokio::select! {
            biased;
            () = self.stop.cancelled() => Some(Interrupt::Shutdown),
            c = self.control.recv() => Some(c.map_or(Interrupt::Shutdown, Interrupt::Control)),
            () = until(deadline) => Some(Interrupt::TimeLimit),
            () = tokio::time::sleep(d) => None,
        }
    }

    fn interrupted(&self, i: Interrupt) -> Next {
        match i {
            Interrupt::Control(Control::Hangup) => Next::End(EndedBy::Runtime),
            Interrupt::Control(Control::Twiml(t)) => Next::Load(Source::Twiml(t)),
            Interrupt::Control(Control::Redirect(u)) => Next::Load(Source::Url(u)),
            Interrupt::Shutdown => Next::End(EndedBy::Shutdown),
            Interrupt::TimeLimit => Next::End(EndedBy::TimeLimit),
        }
    }

    /// From dialing to the end of the conversation: the final status and who ended it.
    async fn live(&mut self) -> (CallStatus, EndedBy) {
        let answer = self.call.behaviour.answer;
        self.update(|e| e.started = Some(Timestamp::now()));
        self.callback("initiated", CallStatus::Initiated, None).await;
        let unanswered = |i: Interrupt| match i {
            Interrupt::Shutdown => (CallStatus::Canceled, EndedBy::Shutdown),
            _ => (CallStatus::Canceled, EndedBy::NotAnswered),
        };
        if let Some(status) = match answer {
            Answer::Busy => Some(CallStatus::Busy),
            Answer::Failed => Some(CallStatus::Failed),
            _ => None,
        } {
            return match self.wait(self.pace(Duration::from_millis(500))).await {
                Some(i) => unanswered(i),
                None => (status, EndedBy::NotAnswered),
            };
        }
        self.update(|e| e.record.status = CallStatus::Ringing);
        self.callback("ringing", CallStatus::Ringing, None).await;
        let ring = match answer {
            Answer::NoAnswer => self.call.order.timeout,
            _ => self.call.behaviour.ring,
        };
        if let Some(i) = self.wait(self.pace(ring)).await {
            return unanswered(i);
        }
        if answer == Answer::NoAnswer {
            return (CallStatus::NoAnswer, EndedBy::NotAnswered);
        }

        let now = Instant::now();
        self.answered = Some(now);
        let max = self.call.behaviour.max;
        self.deadline = Some(now + self.call.order.time_limit.map_or(max, |t| t.min(max)));
        self.update(|e| {
            e.record.status = CallStatus::InProgress;
            e.record.answered_at = Some(Timestamp::now().to_string());
        });
        let mut source = self.call.order.source.clone();
        if let Some(mode) = self.call.order.machine_detection {
            let (took, by) = match (answer, mode) {
                (Answer::Voicemail, AmdMode::DetectMessageEnd) => {
                    (self.call.behaviour.greeting + BEEP, AnsweredBy::MachineEndBeep)
                }
                (Answer::Voicemail, AmdMode::Enable) => (MACHINE_DETECTION, AnsweredBy::MachineStart),
                _ => (HUMAN_DETECTION, AnsweredBy::Human),
            };
            if let Some(i) = self.wait(self.pace(took)).await {
                match self.interrupted(i) {
                    Next::End(by) => return (CallStatus::Completed, by),
                    Next::Load(s) => source = s,
                    Next::Go => {}
                }
            }
            self.answered_by = Some(by);
            self.update(|e| e.record.answered_by = Some(by));
        }
        self.callback("answered", CallStatus::InProgress, None).await;
        (CallStatus::Completed, self.follow(source).await)
    }

    /// Runs TwiML until the call ends.
    async fn follow(&mut self, first: Source) -> EndedBy {
        let mut documents = 1;
        let mut verbs = match self.load(first).await {
            Ok(v) => v,
            Err(e) => {
                self.error(e);
                return EndedBy::Error;
            }
        };
        loop {
            let Some(verb) = verbs.pop_front() else {
                // The TwiML ran out: the provider hangs up.
                return EndedBy::Runtime;
            };
            match self.perform(verb).await {
                Next::Go => {}
                Next::End(by) => return by,
                Next::Load(source) => {
                    documents += 1;
                    if documents > MAX_DOCUMENTS {
                        self.error(format!(
                            "more than {MAX_DOCUMENTS} TwiML documents: a redirect loop?"
                        ));
                        return EndedBy::Error;
                    }
                    verbs = match self.load(source).await {
                        Ok(v) => v,
                        Err(e) => {
                            self.error(e);
                            return EndedBy::Error;
                        }
                    };
                }
            }
        }
    }

    async fn perform(&mut self, verb: Verb) -> Next {
        let interrupted = match verb {
            Verb::Say(text) => {
                let time =
                    PER_WORD * u32::try_from(text.split_whitespace().count().max(1)).unwrap_or(u32::MAX);
                let machine = self.call.behaviour.answer == Answer::Voicemail;
                self.update(|e| {
                    if machine {
                        let left = e.record.voicemail.get_or_insert_with(String::new);
                        if !left.is_empty() {
                            left.push(' ');
                        }
                        left.push_str(&text);
                    }
                    e.record.said.push(text);
                });
                self.wait(self.pace(time)).await
            }
            Verb::Play(url) => {
                self.update(|e| e.record.played.push(url));
                self.wait(self.pace(Duration::from_secs(2))).await
            }
            Verb::Pause(d) => self.wait(self.pace(d)).await,
            Verb::Hangup | Verb::Reject => return Next::End(EndedBy::Runtime),
            Verb::Dial(to) => {
                self.update(|e| e.record.transfers.push(to));
                return Next::End(EndedBy::Transfer);
            }
            Verb::Redirect(url) => return Next::Load(Source::Url(url)),
            Verb::Stream { url, params } => return self.stream(url, params).await,
        };
        interrupted.map_or(Next::Go, |i| self.interrupted(i))
    }

    /// The form every request about the call carries.
    fn form(&self, status: CallStatus) -> Vec<(String, String)> {
        let account = &self.shared.config.account_sid;
        let order = &self.call.order;
        let mut form: Vec<(String, String)> = [
            ("AccountSid", account.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", self.call.sid.as_str()),
            ("Direction", "outbound-api"),
            ("From", order.from.as_str()),
            ("To", order.to.as_str()),
            ("Caller", order.from.as_str()),
            ("Called", order.to.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        form.push(("CallStatus".into(), status.to_string()));
        if let Some(by) = self.answered_by {
            form.push(("AnsweredBy".into(), by.to_string()));
        }
        form
    }

    /// The TwiML of `source`: inline, or from the runtime's webhook (signed, as the provider asks).
    async fn load(&mut self, source: Source) -> Result<VecDeque<Verb>, String> {
        let twiml = match source {
            Source::Twiml(t) => t,
            Source::Url(url) => {
                let url = match &self.document {
                    Some(base) if !url.starts_with("http://") && !url.starts_with("https://") => {
                        reqwest::Url::parse(base)
                            .and_then(|b| b.join(&url))
                            .map(String::from)
                            .unwrap_or(url)
                    }
                    _ => url,
                };
                let form = self.form(CallStatus::InProgress);
                let token = &self.shared.config.auth_token;
                let sent = post_signed(&self.shared.http, token, &url, &form).await;
                let delivery = Delivery {
                    url: url.clone(),
                    http_status: sent.as_ref().ok().map(|a| a.status),
                    error: sent.as_ref().err().map(ToString::to_string),
                };
                self.update(|e| e.record.webhooks.push(delivery));
                let answer = sent.map_err(|e| e.to_string())?;
                if !answer.is_success() {
                    let body: String = answer.body.chars().take(200).collect();
                    return Err(format!(
                        "the voice webhook {url} answered HTTP {}: {body}",
                        answer.status
                    ));
                }
                self.document = Some(url);
                answer.body
            }
        };
        twiml::parse(&twiml)
            .map(VecDeque::from)
            .map_err(|e| e.to_string())
    }

    /// `<Connect><Stream>`: the number's person (or machine) on the media stream, until one side
    /// ends it or the REST API changes the call.
    async fn stream(&mut self, url: String, params: Vec<(String, String)>) -> Next {
        let behaviour = &self.call.behaviour;
        let machine = behaviour.answer == Answer::Voicemail;
        let caller = Caller {
            fast: self.shared.config.fast,
            max: self
                .deadline
                .map_or(behaviour.max, |d| d.saturating_duration_since(Instant::now())),
            hang_up_after: if machine {
                MACHINE_SILENCE
            } else {
                Duration::from_secs(1)
            },
            patience: (!machine).then_some(PATIENCE),
            ..Caller::new(if machine {
                Vec::new()
            } else {
                behaviour.turns.clone()
            })
        };
        let target = StreamTarget {
            url: url.clone(),
            params: params.clone(),
            account_sid: self.shared.config.account_sid.clone(),
            call_sid: self.call.sid.clone(),
            token: self.shared.config.auth_token.clone(),
        };
        let stop = self.stop.child_token();
        let mut pending = None;
        let played = {
            let play = caller::play(&target, &caller, stop.clone());
            tokio::pin!(play);
            loop {
                tokio::select! {
                    played = &mut play => break played,
                    c = self.control.recv(), if pending.is_none() => {
                        pending = Some(c.map_or(Interrupt::Shutdown, Interrupt::Control));
                        stop.cancel();
                    }
                }
            }
        };
        let played = match played {
            Ok(p) => p,
            Err(e) => {
                self.error(e.to_string());
                return Next::End(EndedBy::Error);
            }
        };
        let record = StreamRecord {
            url,
            parameters: params.into_iter().collect(),
            turns: played.turns,
            turns_planned: caller.turns.len(),
            digits: played.digits.clone(),
            bot_frames: played.frames,
            bot_seconds: played.frames as f64 * 0.02,
            marks: played.marks,
            clears: played.clears.len(),
            seconds: played.duration.as_secs_f64(),
            end: played.end,
        };
        self.update(|e| e.record.stream = Some(record));
        match played.end {
            StreamEnd::CallerHungUp => Next::End(EndedBy::Caller),
            StreamEnd::TimeLimit => Next::End(EndedBy::TimeLimit),
            // The runtime closed the stream: the TwiML after `<Connect>` goes on.
            StreamEnd::Closed => pending.map_or(Next::Go, |i| self.interrupted(i)),
            StreamEnd::Stopped => self.interrupted(pending.unwrap_or(Interrupt::Shutdown)),
        }
    }

    /// A status callback for `event`, if the runtime asked for it (signed, numbered in order).
    async fn callback(&mut self, event: &str, status: CallStatus, duration: Option<u64>) {
        let order = &self.call.order;
        let Some(url) = order.status_callback.clone() else {
            return;
        };
        if !order.events.iter().any(|e| e == event) {
            return;
        }
        let sequence_number = self.sequence;
        self.sequence += 1;
        let mut form = self.form(status);
        form.push(("SequenceNumber".into(), sequence_number.to_string()));
        form.push(("Timestamp".into(), rfc2822(Timestamp::now())));
        form.push(("CallbackSource".into(), "call-progress-events".into()));
        if let Some(seconds) = duration {
            form.push(("CallDuration".into(), seconds.to_string()));
            form.push(("Duration".into(), seconds.div_ceil(60).to_string()));
            let sip = match status {
                CallStatus::Busy => "486",
                CallStatus::NoAnswer | CallStatus::Canceled => "487",
                CallStatus::Failed => "503",
                _ => "200",
            };
            form.push(("SipResponseCode".into(), sip.into()));
        }
        let sent = post_signed(&self.shared.http, &self.shared.config.auth_token, &url, &form).await;
        let callback = Callback {
            event: event.to_owned(),
            status,
            sequence_number,
            http_status: sent.as_ref().ok().map(|a| a.status),
            error: sent.as_ref().err().map(ToString::to_string),
        };
        self.update(|e| e.record.callbacks.push(callback));
    }

    /// The final status, then the `completed` callback, then who ended the call — last, so that a
    /// record with `ended_by` set is complete.
    async fn finish(&mut self, status: CallStatus, ended_by: EndedBy) {
        let now = Timestamp::now();
        let duration = self
            .answered
            .map_or(0, |t| t.elapsed().as_secs_f64().ceil() as u64);
        self.update(|e| {
            e.record.status = status;
            e.record.ended_at = Some(now.to_string());
            e.record.duration_seconds = duration;
            e.ended = Some(now);
        });
        self.callback("completed", status, Some(duration)).await;
        tracing::info!(call_sid = %self.call.sid, %status, ?ended_by, "call ended");
        self.update(|e| e.record.ended_by = Some(ended_by));
    }
}
