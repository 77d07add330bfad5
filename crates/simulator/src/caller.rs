//! The party on the line, over a media stream: connects the signed WebSocket a runtime's
//! `<Connect><Stream>` names, then plays the provider's side of the protocol — `connected`, `start`,
//! 20 ms mu-law frames every 20 ms (silence between turns), marks echoed as soon as they arrive (the
//! simulated phone has no playback buffer of its own), keypad digits, and `stop`.
//!
//! The caller takes turns like a person: each recording starts once the bot has said something and
//! gone quiet (or, to test barge-in, a while after it starts talking), and the caller hangs up once
//! the bot has answered the last turn and stayed quiet. Both `switchboard call` (inbound) and the
//! provider simulator's answered outbound calls are played by [`play`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use switchboard_telephony::media::{Dtmf, Inbound, InboundMedia, MediaFormat, Outbound, StartMeta, StopMeta};
use switchboard_telephony::{AuthToken, signature};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

use crate::SimError;
use crate::http::sid;

/// 20 ms of 8 kHz mu-law.
const FRAME: usize = 160;
/// How long to wait for the runtime to close the socket after `stop` before closing it ourselves.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One thing the caller does when it is their turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Speech, as 8 kHz mu-law.
    Speak(Arc<[u8]>),
    /// Keys pressed on the keypad (`0`–`9`, `*`, `#`), one `dtmf` message each.
    Keys(String),
}

/// How the party on the line behaves.
#[derive(Debug, Clone)]
pub struct Caller {
    pub turns: Vec<Turn>,
    /// Keys pressed at fixed times from the start of the stream, whatever the bot is doing.
    pub dtmf: Vec<(Duration, char)>,
    /// Send each recording as fast as possible (50 frames per tick) instead of in real time.
    pub fast: bool,
    /// Hang up after this long whatever happens.
    pub max: Duration,
    /// Bot silence that means it has finished speaking.
    pub quiet: Duration,
    /// Start each turn this long after the bot started talking, over it (barge-in).
    pub interrupt_after: Option<Duration>,
    /// Once every turn is answered, how long the bot must stay quiet before the caller hangs up.
    pub hang_up_after: Duration,
    /// Take the first turn after this long if the bot has said nothing at all (a person who answers
    /// says "hello?" into silence); `None` waits for the bot.
    pub patience: Option<Duration>,
    /// Keep both sides' audio in [`Played`] (for a recording); off for long runs of many calls.
    pub keep_audio: bool,
}

impl Caller {
    /// A caller who waits for the bot before each turn, in real time.
    pub fn new(turns: Vec<Turn>) -> Self {
        Self {
            turns,
            dtmf: Vec::new(),
            fast: false,
            max: Duration::from_secs(90),
            quiet: Duration::from_millis(800),
            interrupt_after: None,
            hang_up_after: Duration::from_secs(1),
            patience: None,
            keep_audio: false,
        }
    }
}

/// The stream to connect, as the TwiML and the call give it.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    /// `wss://…` (or `ws://…` on loopback), exactly as in `<Stream url>`: the upgrade is signed over it.
    pub url: String,
    /// `<Parameter>`s, sent back in `start.customParameters`; a later name overrides an earlier one.
    pub params: Vec<(String, String)>,
    pub account_sid: String,
    pub call_sid: String,
    pub token: AuthToken,
}

/// Why the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// The caller was done (every turn answered, the bot quiet) and sent `stop`.
    CallerHungUp,
    /// [`Caller::max`] passed.
    TimeLimit,
    /// The runtime closed the socket.
    #[default]
    Closed,
    /// The stream was told to stop (the call was hung up or redirected from outside).
    Stopped,
}

/// What happened on the stream, seen from the provider's side.
#[derive(Debug, Default)]
pub struct Played {
    pub call_sid: String,
    pub stream_sid: String,
    /// Bot audio frames received.
    pub frames: usize,
    pub marks: usize,
    /// When `clear` messages arrived, from the start of the stream.
    pub clears: Vec<Duration>,
    /// When each recording started and ended playing, from the start of the stream.
    pub played: Vec<(Duration, Duration)>,
    /// Turns taken in full (recordings played to the end, keys pressed).
    pub turns: usize,
    /// Keys pressed, in order.
    pub digits: String,
    pub duration: Duration,
    pub end: StreamEnd,
    /// 8 kHz samples, when [`Caller::keep_audio`] is set.
    pub caller_track: Vec<i16>,
    pub bot_track: Vec<i16>,
}

/// Connects the signed media-stream WebSocket and plays `caller` until the caller hangs up, the
/// runtime closes the socket, or `stop` is cancelled (then `stop` is sent and the socket closed).
pub async fn play(
    target: &StreamTarget,
    caller: &Caller,
    stop: CancellationToken,
) -> Result<Played, SimError> {
    let failed = |reason: String| SimError::Stream {
        url: target.url.clone(),
        reason,
    };
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| failed(e.to_string()))?;
    let signed = signature::sign::<&str, &str>(&target.token, &target.url, &[]);
    request.headers_mut().insert(
        signature::HEADER,
        signed.parse().map_err(|_| failed("signature header".into()))?,
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (sink, stream) = ws.split();
    converse(sink, stream, target, caller, stop).await
}

/// Sends the provider's messages, numbered in order.
struct Outgoing<S> {
    sink: S,
    seq: u64,
    stream_sid: String,
}

impl<S: Sink<Message> + Unpin> Outgoing<S> {
    /// `false` once the socket is gone.
    async fn send(&mut self, make: impl FnOnce(u64, String) -> Inbound) -> bool {
        let message = make(self.seq, self.stream_sid.clone());
        self.seq += 1;
        let Ok(text) = serde_json::to_string(&message) else {
            return false;
        };
        self.sink.send(Message::Text(text.into())).await.is_ok()
    }
}

/// Where the caller is in the conversation.
#[derive(Debug, Default)]
struct Progress {
    turn: usize,
    /// (offset into the turn's audio, when it started)
    playing: Option<(usize, Duration)>,
    last_bot_frame: Option<Instant>,
    bot_spoke_since_turn: bool,
    bot_started: Option<Instant>,
    done_since: Option<Instant>,
    chunk: u64,
}

/// The protocol over any WebSocket halves, so it runs the same against a server or a test channel.
async fn converse<Si, St, E>(
    sink: Si,
    mut stream: St,
    target: &StreamTarget,
    caller: &Caller,
    stop: CancellationToken,
) -> Result<Played, SimError>
where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut out = Outgoing {
        sink,
        seq: 1,
        stream_sid: sid("MZ"),
    };
    let connected = Inbound::Connected {
        protocol: "Call".into(),
        version: "1.0.0".into(),
    };
    let custom: BTreeMap<String, String> = target.params.iter().cloned().collect();
    let start = |sequence_number, stream_sid: String| Inbound::Start {
        sequence_number,
        start: StartMeta {
            stream_sid: stream_sid.clone(),
            account_sid: target.account_sid.clone(),
            call_sid: target.call_sid.clone(),
            tracks: vec!["inbound".into()],
            custom_parameters: custom,
            media_format: MediaFormat {
                encoding: "audio/x-mulaw".into(),
                sample_rate: 8000,
                channels: 1,
            },
        },
        stream_sid,
    };
    let text = serde_json::to_string(&connected).map_err(|e| SimError::Stream {
        url: target.url.clone(),
        reason: e.to_string(),
    })?;
    let opened = out.sink.send(Message::Text(text.into())).await.is_ok() && out.send(start).await;
    let mut played = Played {
        call_sid: target.call_sid.clone(),
        stream_sid: out.stream_sid.clone(),
        ..Played::default()
    };
    if !opened {
        return Ok(played);
    }

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut p = Progress::default();
    let mut dtmf = caller.dtmf.clone();
    dtmf.sort_by_key(|(at, _)| *at);
    let mut dtmf = VecDeque::from(dtmf);
    // Set once `stop` is sent: why, and when to give up waiting for the runtime to close.
    let mut ending: Option<(StreamEnd, Instant)> = None;

    loop {
        let give_up = ending.map_or(started + Duration::from_secs(86_400), |(_, at)| at);
        tokio::select! {
            msg = stream.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                // The runtime may send what this codec does not know; a provider ignores it.
                let Ok(message) = serde_json::from_str::<Outbound>(text.as_str()) else { continue };
                match message {
                    Outbound::Media { media, .. } => {
                        played.frames += 1;
                        if caller.keep_audio {
                            let len = played.caller_track.len().max(played.bot_track.len());
                            played.bot_track.resize(len, 0);
                            played.bot_track.extend(switchboard_audio::g711::decode(&media.payload));
                        }
                        p.last_bot_frame = Some(Instant::now());
                        p.bot_started.get_or_insert_with(Instant::now);
                        p.bot_spoke_since_turn = true;
                    }
                    Outbound::Mark { mark, .. } => {
                        played.marks += 1;
                        if !out.send(|sequence_number, stream_sid| Inbound::Mark { sequence_number, mark, stream_sid }).await {
                            break;
                        }
                    }
                    Outbound::Clear { .. } => played.clears.push(started.elapsed()),
                }
            }
            _ = tick.tick(), if ending.is_none() => {
                match step(&mut out, &mut p, &mut played, &mut dtmf, caller, started).await {
                    Step::Go => {}
                    Step::Gone => break,
                    Step::End(why) => {
                        if !send_stop(&mut out, target).await {
                            played.end = why;
                            break;
                        }
                        ending = Some((why, Instant::now() + CLOSE_GRACE));
                    }
                }
            }
            () = stop.cancelled(), if ending.is_none() => {
                if !send_stop(&mut out, target).await {
                    played.end = StreamEnd::Stopped;
                    break;
                }
                ending = Some((StreamEnd::Stopped, Instant::now() + CLOSE_GRACE));
            }
            () = tokio::time::sleep_until(give_up), if ending.is_some() => break,
        }
    }
    if let Some((why, _)) = ending {
        played.end = why;
        let _ = out.sink.close().await;
    }
    played.turns = p.turn;
    played.duration = started.elapsed();
    Ok(played)
}

async fn send_stop<S: Sink<Message> + Unpin>(out: &mut Outgoing<S>, target: &StreamTarget) -> bool {
    let stop = StopMeta {
        account_sid: target.account_sid.clone(),
        call_sid: target.call_sid.clone(),
    };
    out.send(|sequence_number, stream_sid| Inbound::Stop {
        sequence_number,
        stop,
        stream_sid,
    })
    .await
}

enum Step {
    Go,
    /// The socket is gone.
    Gone,
    End(StreamEnd),
}

/// One 20 ms tick: timed keys, the next turn when it is due, this tick's audio, and whether the
/// caller is done.
async fn step<S: Sink<Message> + Unpin>(
    out: &mut Outgoing<S>,
    p: &mut Progress,
    played: &mut Played,
    dtmf: &mut VecDeque<(Duration, char)>,
    caller: &Caller,
    started: Instant,
) -> Step {
    let now = started.elapsed();
    let mut end = (now >= caller.max).then_some(StreamEnd::TimeLimit);
    while let Some((at, digit)) = dtmf.front().copied() {
        if at > now {
            break;
        }
        dtmf.pop_front();
        if !press(out, played, digit).await {
            return Step::Gone;
        }
    }
    let bot_quiet = p.last_bot_frame.is_none_or(|t| t.elapsed() >= caller.quiet);
    let cue = match caller.interrupt_after {
        Some(after) => p.bot_started.is_some_and(|t| t.elapsed() >= after),
        None => p.bot_spoke_since_turn && bot_quiet,
    };
    let impatient = p.turn == 0 && p.last_bot_frame.is_none() && caller.patience.is_some_and(|w| now >= w);
    if p.playing.is_none() && p.turn < caller.turns.len() && (cue || impatient) {
        match &caller.turns[p.turn] {
            Turn::Speak(_) => p.playing = Some((0, now)),
            Turn::Keys(keys) => {
                for digit in keys.chars() {
                    if !press(out, played, digit).await {
                        return Step::Gone;
                    }
                }
                p.turn += 1;
                p.bot_spoke_since_turn = false;
            }
        }
        p.bot_started = None;
    }
    let frames_now = if caller.fast && p.playing.is_some() { 50 } else { 1 };
    for _ in 0..frames_now {
        let mut frame = [0xFFu8; FRAME];
        if let (Some((offset, since)), Some(Turn::Speak(audio))) = (&mut p.playing, caller.turns.get(p.turn))
        {
            let end = (*offset + FRAME).min(audio.len());
            frame[..end - *offset].copy_from_slice(&audio[*offset..end]);
            *offset = end;
            if end >= audio.len() {
                played.played.push((*since, started.elapsed()));
                p.playing = None;
                p.turn += 1;
                p.bot_spoke_since_turn = false;
            }
        }
        if caller.keep_audio {
            played
                .caller_track
                .extend(switchboard_audio::g711::decode(&frame));
        }
        p.chunk += 1;
        let chunk = p.chunk;
        let media = InboundMedia {
            track: "inbound".into(),
            chunk,
            timestamp: (chunk - 1) * 20,
            payload: frame.to_vec(),
        };
        if !out
            .send(|sequence_number, stream_sid| Inbound::Media {
                sequence_number,
                media,
                stream_sid,
            })
            .await
        {
            return Step::Gone;
        }
        if p.playing.is_none() {
            break;
        }
    }
    // Every turn taken and the bot answered the last one: the caller hangs up.
    if p.turn >= caller.turns.len() && p.playing.is_none() && p.bot_spoke_since_turn && bot_quiet {
        let since = *p.done_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= caller.hang_up_after {
            end = end.or(Some(StreamEnd::CallerHungUp));
        }
    } else {
        p.done_since = None;
    }
    match end {
        Some(why) => Step::End(why),
        None => Step::Go,
    }
}

async fn press<S: Sink<Message> + Unpin>(out: &mut Outgoing<S>, played: &mut Played, digit: char) -> bool {
    played.digits.push(digit);
    let dtmf = Dtmf {
        track: "inbound_track".into(),
        digit: digit.to_string(),
    };
    out.send(|sequence_number, stream_sid| Inbound::Dtmf {
        sequence_number,
        dtmf,
        stream_sid,
    })
    .await
}

/// Caller audio from a WAV file (any format) as 8 kHz mu-law, the way the provider would send it.
pub fn wav_to_mulaw(path: &std::path::Path) -> Result<Vec<u8>, switchboard_audio::AudioError> {
    let samples = switchboard_audio::wav::read_wav_16k(path)?;
    let mut encoder = switchboard_audio::MulawEncoder8k::new(16_000)?;
    let mut frames = encoder.push(&samples);
    frames.extend(encoder.finish());
    Ok(frames.concat())
}
