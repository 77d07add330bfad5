//! One media stream: provider JSON in and out, a call pipeline task in the middle.
//!
//! Garbage frames, unknown events and a stream that never sends `start` are logged and survived; a
//! stream that keeps sending garbage is closed. However the stream ends, the call is logged as ended
//! with the reason.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use switchboard_call::{CallCommand, CallEvent, CallLog, CallReport, run_call};
use switchboard_core::llm::LanguageModel;
use switchboard_core::stt::SpeechToText;
use switchboard_core::tts::TextToSpeech;
use switchboard_flow::Contact;
use switchboard_store::{CallEnd, CallStatus, Direction, NewCall, Store};
use switchboard_telephony::media::{self, Inbound, StartMeta};
use switchboard_telephony::rest::CallUpdate;
use switchboard_telephony::twiml::{Dial, Response as Twiml};
use tokio::sync::mpsc;

use crate::calllog::{self, persist};
use crate::{AppState, FINISHED_KEPT};

/// Bad frames tolerated on one stream before it is closed.
const MAX_BAD_FRAMES: usize = 50;

/// How a media stream ended, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOutcome {
    NoStart,
    Busy,
    Ended,
}

pub(crate) async fn session<S, L, T>(socket: WebSocket, state: Arc<AppState<S, L, T>>)
where
    S: SpeechToText + 'static,
    L: LanguageModel + 'static,
    T: TextToSpeech + 'static,
{
    let (mut sink, mut stream) = socket.split();
    let mut bad_frames = 0usize;

    // Wait for `start`: it says which call and flow this is.
    let start = tokio::time::timeout(state.config.start_timeout, async {
        while let Some(msg) = stream.next().await {
            let Ok(msg) = msg else { return None };
            let Message::Text(text) = msg else {
                if matches!(msg, Message::Close(_)) {
                    return None;
                }
                continue;
            };
            match media::parse_inbound(text.as_str()) {
                Ok(Inbound::Start {
                    start,
                    stream_sid,
                    sequence_number,
                }) => return Some((start, stream_sid, sequence_number)),
                Ok(Inbound::Connected { .. }) => {}
                Ok(other) => tracing::warn!("media stream: `{}` before `start`, ignored", other.event()),
                Err(e) => {
                    bad_frames += 1;
                    tracing::warn!("media stream: bad frame before `start`: {e}");
                    if bad_frames > MAX_BAD_FRAMES {
                        return None;
                    }
                }
            }
        }
        None
    })
    .await;
    let Ok(Some((start, stream_sid, mut last_seq))) = start else {
        tracing::warn!("media stream closed: no `start`");
        let _ = sink.close().await;
        return;
    };
    let StartMeta {
        call_sid,
        custom_parameters,
        ..
    } = start;
    let Ok(permit) = state.calls.clone().try_acquire_owned() else {
        tracing::warn!(%call_sid, "all lines busy: closing the stream");
        let _ = sink.close().await;
        return;
    };
    let flow_name = custom_parameters
        .get("flow")
        .cloned()
        .unwrap_or_else(|| state.config.default_flow.clone());
    let flow = match state.config.flows.get(&flow_name) {
        Some(f) => f.clone(),
        None => {
            tracing::warn!(%call_sid, flow = %flow_name, "unknown flow, using the default");
            state.config.flows[&state.config.default_flow].clone()
        }
    };
    let mut contact = Contact::default();
    for (k, v) in &custom_parameters {
        contact = contact.with(k.clone(), v.clone());
    }
    let mut settings = state.config.call.clone();
    if let Some(dir) = &state.config.recordings_dir {
        settings.recording = Some(dir.join(format!("{call_sid}.wav")));
    }
    let param = |name: &str| custom_parameters.get(name).cloned().unwrap_or_default();
    let new_call = NewCall {
        runtime: state.config.runtime.clone(),
        provider_call_id: call_sid.clone(),
        direction: if param("direction") == "outbound" {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        from: param("from"),
        to: param("to"),
        flow: flow_name.clone(),
        started_at: calllog::now_ms(),
        recording_path: None,
    };
    // The call never waits for its log: the id is chosen here and everything is written by one
    // task, in order, retried for as long as the database stays away (see `calllog::persist`).
    let log_id = Store::new_call_id();
    let (log, entries) = CallLog::channel();
    settings.log = Some(log);
    let log_writer = state.log_writes.spawn(calllog::write_call(
        state.store.clone(),
        log_id.clone(),
        new_call,
        call_sid.clone(),
        entries,
    ));
    state.metrics.call_started();
    if state.config.log_pii {
        tracing::info!(%call_sid, flow = %flow_name, from = %param("from"), to = %param("to"), "call started");
    } else {
        tracing::info!(%call_sid, flow = %flow_name, "call started");
    }

    let (ev_tx, ev_rx) = mpsc::channel(512);
    let (cmd_tx, mut cmd_rx) = mpsc::channel(512);
    let call = tokio::spawn(run_call(
        flow,
        contact,
        state.engines.clone(),
        settings,
        ev_rx,
        cmd_tx,
    ));
    let mut ev_tx = Some(ev_tx);
    let mut end_command = None;
    let idle = state.config.media_idle_timeout;
    let mut idle_deadline = tokio::time::Instant::now() + idle;
    let flood = flood_limiter();

    loop {
        tokio::select! {
            msg = stream.next(), if ev_tx.is_some() => {
                let Some(Ok(msg)) = msg else {
                    ev_tx = None; // the pipeline sees a disconnect
                    continue;
                };
                idle_deadline = tokio::time::Instant::now() + idle;
                if flood.check().is_err() {
                    tracing::warn!(%call_sid, "media stream: more messages than a call sends, closing");
                    ev_tx = None;
                    continue;
                }
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => {
                        ev_tx = None;
                        continue;
                    }
                    _ => continue,
                };
                let parsed = media::parse_inbound(text.as_str());
                if let Some(seq) = parsed.as_ref().ok().and_then(Inbound::sequence_number) {
                    state.metrics.sequence(last_seq, seq);
                    last_seq = last_seq.max(seq);
                }
                let event = match parsed {
                    Ok(Inbound::Media { media, .. }) => {
                        state.metrics.media_received();
                        Some(CallEvent::Media(media.payload))
                    }
                    Ok(Inbound::Dtmf { dtmf, .. }) => dtmf.digit.chars().next().map(CallEvent::Dtmf),
                    Ok(Inbound::Mark { mark, .. }) => Some(CallEvent::Mark(mark.name)),
                    Ok(Inbound::Stop { .. }) => Some(CallEvent::Stop),
                    Ok(Inbound::Connected { .. } | Inbound::Start { .. }) => None,
                    Err(e) => {
                        bad_frames += 1;
                        tracing::warn!(%call_sid, "media stream: bad frame: {e}");
                        if bad_frames > MAX_BAD_FRAMES {
                            tracing::warn!(%call_sid, "media stream: too many bad frames, closing");
                            ev_tx = None;
                        }
                        None
                    }
                };
                if let (Some(event), Some(tx)) = (event, &ev_tx) {
                    let stop = event == CallEvent::Stop;
                    if tx.send(event).await.is_err() || stop {
                        ev_tx = None;
                    }
                }
            }
            () = tokio::time::sleep_until(idle_deadline), if ev_tx.is_some() => {
                tracing::warn!(%call_sid, idle_s = idle.as_secs_f64(), "media stream: nothing received, ending the call");
                ev_tx = None;
            }
            cmd = cmd_rx.recv() => {
                let Some(cmd) = cmd else { break };
                let json = match cmd {
                    CallCommand::Media(frame) => {
                        state.metrics.media_sent();
                        media::outbound_media(&stream_sid, &frame)
                    }
                    CallCommand::Mark(name) => media::outbound_mark(&stream_sid, &name),
                    CallCommand::Clear => media::outbound_clear(&stream_sid),
                    CallCommand::Transfer(to) => {
                        end_command = Some(CallUpdate::Twiml(Twiml::new().dial(dial_to(&to)).to_xml()));
                        continue;
                    }
                    CallCommand::Hangup => {
                        end_command = Some(CallUpdate::Hangup);
                        continue;
                    }
                };
                if sink.send(Message::Text(json.into())).await.is_err() {
                    ev_tx = None;
                }
            }
        }
    }

    let report = match call.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%call_sid, "call task failed: {e}");
            state.metrics.call_finished(None);
            let end = CallEnd {
                status: CallStatus::Failed,
                ended_at: calllog::now_ms(),
                duration_ms: 0,
                outcome: None,
                slots: serde_json::Map::new(),
                hangup_reason: Some("internal_error".into()),
                transferred_to: None,
                recording_path: None,
            };
            let store = state.store.clone();
            state.log_writes.spawn(async move {
                let _ = log_writer.await;
                persist("finishing the call", || store.finish_call(&log_id, &end)).await;
            });
            drop(permit);
            let _ = sink.close().await;
            return;
        }
    };
    log_report(&call_sid, &report, state.config.log_pii);
    state.metrics.call_finished(Some(&report));
    let recording = report.recording.as_ref().map(|p| p.display().to_string());
    let end = calllog::call_end(&report, calllog::now_ms(), recording);
    if let Ok(mut finished) = state.finished.lock() {
        if finished.len() == FINISHED_KEPT {
            finished.pop_front();
        }
        finished.push_back((call_sid.clone(), report.clone()));
    }
    // The call's last writes go on in their own task, which nothing waits for: a database that is
    // away for a while must not hold the line (turning later callers away as "busy") or the
    // stream. It is tracked before the stream closes, so `log_settled` sees it.
    let store = state.store.clone();
    let sid = call_sid.clone();
    state.log_writes.spawn(async move {
        // The pipeline dropped its log sender when it ended: the writer drains and stops.
        let _ = log_writer.await;
        calllog::write_report(&store, &log_id, &report, end).await;
        // A campaign's call: its attempt ends with the flow's outcome (nothing for other calls).
        let slots = calllog::slots_json(&report);
        let ended = jiff::Timestamp::now();
        persist("recording the campaign attempt's result", || {
            switchboard_campaign::record_call_result(
                &store,
                &sid,
                switchboard_store::AttemptResult::Completed,
                report.outcome.map(|o| o.as_str()),
                &slots,
                ended,
            )
        })
        .await;
    });
    // The call is over: its line is free before the stream closes, so a provider that reuses the
    // line at once (or the next caller) is not turned away as busy.
    drop(permit);
    if let Some(update) = end_command {
        match &state.rest {
            Some(rest) => {
                if let Err(e) = rest.update_call(&call_sid, &update).await {
                    tracing::warn!(%call_sid, "call control failed: {e}");
                }
            }
            None => tracing::info!(%call_sid, "no provider account configured: ending the stream instead"),
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}

fn dial_to(to: &str) -> Dial {
    if to.starts_with("sip:") {
        Dial::sip(to)
    } else {
        Dial::number(to)
    }
}

fn log_report(call_sid: &str, report: &CallReport, log_pii: bool) {
    let latencies: Vec<u128> = report.latencies().iter().map(|d| d.as_millis()).collect();
    if log_pii {
        let transcript: Vec<String> = report
            .turns
            .iter()
            .map(|t| format!("{:?}: {}", t.speaker, t.text))
            .collect();
        tracing::info!(
            %call_sid,
            outcome = ?report.outcome,
            ended_by = ?report.ended_by,
            transferred_to = ?report.transferred_to,
            slots = ?report.slots,
            ?transcript,
            ?latencies,
            "call ended"
        );
        return;
    }
    tracing::info!(
        %call_sid,
        outcome = ?report.outcome,
        ended_by = ?report.ended_by,
        turns = report.turns.len(),
        ?latencies,
        "call ended"
    );
}

/// Bounds the messages one media stream may send (see [`crate::MEDIA_MESSAGES_PER_SECOND`]); a
/// stream beyond it is not a phone call and is closed.
fn flood_limiter() -> governor::DefaultDirectRateLimiter {
    let per_second =
        std::num::NonZeroU32::new(crate::MEDIA_MESSAGES_PER_SECOND).unwrap_or(std::num::NonZeroU32::MIN);
    let burst = std::num::NonZeroU32::new(crate::MEDIA_MESSAGE_BURST).unwrap_or(per_second);
    governor::RateLimiter::direct(governor::Quota::per_second(per_second).allow_burst(burst))
}
