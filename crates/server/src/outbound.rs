//! Campaign calls on the server's side: answering a placed call once the provider knows who picked
//! up, following its status callbacks, and running one scheduler per running campaign.
//!
//! The dialer puts the attempt's id in both URLs it gives the provider (`/twilio/voice?attempt=…`,
//! `/twilio/status?attempt=…`), so every webhook of a campaign call can name its attempt. That
//! matters because the provider may call back before the dialer has stored the call's id (the
//! create request's answer and the first callback race); each webhook therefore attaches its
//! `CallSid` to the attempt first (a no-op when it is already there), and then reports.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use switchboard_campaign::{Clock, Dialer, Reconciler, Scheduler, SchedulerConfig};
use switchboard_flow::{Contact, Flow};
use switchboard_store::{
    AttemptResult, AttemptStatus, CallEnd, CallStatus, CampaignStatus, Direction, NewCall, Store, StoreError,
    VoicemailAction,
};
use switchboard_telephony::twiml::{Response as Twiml, Stream};
use switchboard_telephony::webhook::{AnsweredBy, FormParams, VoiceWebhook};
use tokio::task::JoinSet;

use crate::calllog::{self, persist};

/// What the voice webhook answers for a campaign call.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A person: connect the media stream with these parameters (flow, contact fields, …).
    Person(Vec<(String, String)>),
    /// A machine, or an attempt that no longer wants the call: this TwiML, then the call ends.
    Done(String),
}

/// The attempt named by a webhook URL's query (`?attempt=…`).
pub(crate) fn attempt_param(uri: &axum::http::Uri) -> Option<String> {
    FormParams::parse(uri.query()?.as_bytes())
        .get("attempt")
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Decides what an answered campaign call gets: the flow with the contact's fields for a person;
/// for a machine, the flow's voicemail message after the beep (or nothing), as the campaign says.
pub(crate) async fn answer(
    store: &Store,
    log_writes: &tokio_util::task::TaskTracker,
    flows: &std::collections::BTreeMap<String, std::sync::Arc<Flow>>,
    runtime: &str,
    call: &VoiceWebhook,
    attempt_id: &str,
) -> Result<Answer, StoreError> {
    let hang_up = || Answer::Done(Twiml::new().hangup().to_xml());
    let Some(attempt) = store.get_attempt(attempt_id).await? else {
        tracing::warn!(call_sid = %call.call_sid, attempt = attempt_id, "answered call of an unknown attempt: hanging up");
        return Ok(hang_up());
    };
    // The create request's answer may still be on its way to the scheduler.
    store.set_attempt_provider_id(attempt_id, &call.call_sid).await?;
    if attempt
        .provider_call_id
        .as_deref()
        .is_some_and(|p| p != call.call_sid)
    {
        tracing::warn!(call_sid = %call.call_sid, attempt = attempt_id, "a second call for one attempt: hanging up");
        return Ok(hang_up());
    }
    let (Some(contact), Some(campaign)) = (
        store.get_contact(&attempt.contact_id).await?,
        store.get_campaign(&attempt.campaign_id).await?,
    ) else {
        return Ok(hang_up());
    };
    if !attempt.status.is_active() {
        // Settled already (reconciled as not placed, or a duplicate webhook after the end).
        tracing::warn!(call_sid = %call.call_sid, attempt = attempt_id, "answered call of a finished attempt: hanging up");
        return Ok(hang_up());
    }
    store
        .set_attempt_progress(attempt_id, AttemptStatus::Answered)
        .await?;
    let flow = flows.get(&campaign.flow);
    let mut fields = Contact::default().with("name", contact.name.clone());
    for (k, v) in &contact.fields {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        fields = fields.with(k.clone(), v);
    }
    let machine = call.answered_by.is_some_and(AnsweredBy::is_machine);
    if !machine {
        let mut params = vec![
            ("flow".to_string(), campaign.flow.clone()),
            ("direction".to_string(), "outbound".to_string()),
            ("attempt".to_string(), attempt_id.to_string()),
            // As the call log sees it: from the business, to the contact.
            ("from".to_string(), call.from.clone()),
            ("to".to_string(), call.to.clone()),
        ];
        params.extend(
            fields
                .0
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "flow" | "direction" | "attempt" | "from" | "to")),
        );
        return Ok(Answer::Person(params));
    }

    let message = match campaign.settings.voicemail {
        VoicemailAction::LeaveMessage => flow.and_then(|f| f.voicemail_message(&fields)),
        VoicemailAction::HangUp => None,
    };
    let outcome = if message.is_some() {
        "voicemail_left"
    } else {
        "machine_hung_up"
    };
    let twiml = match &message {
        Some(text) => Twiml::new().say(text.clone()).hangup().to_xml(),
        None => Twiml::new().hangup().to_xml(),
    };
    tracing::info!(call_sid = %call.call_sid, attempt = attempt_id, outcome, "answering machine");
    log_machine_call(
        store,
        log_writes,
        runtime,
        call,
        attempt_id,
        &campaign.flow,
        outcome,
    );
    store
        .finish_attempt(
            attempt_id,
            AttemptResult::Voicemail,
            Some(outcome),
            &serde_json::Map::new(),
            calllog::now_ms(),
        )
        .await?;
    Ok(Answer::Done(twiml))
}

/// A machine's call goes into the call log too (no turns: nobody spoke with it), written in the
/// background and retried while the database is away, like a person's call.
fn log_machine_call(
    store: &Store,
    log_writes: &tokio_util::task::TaskTracker,
    runtime: &str,
    call: &VoiceWebhook,
    attempt_id: &str,
    flow: &str,
    outcome: &str,
) {
    let now = calllog::now_ms();
    let id = Store::new_call_id();
    let new_call = NewCall {
        runtime: runtime.to_string(),
        provider_call_id: call.call_sid.clone(),
        direction: Direction::Outbound,
        from: call.from.clone(),
        to: call.to.clone(),
        flow: flow.to_string(),
        started_at: now,
        recording_path: None,
    };
    let end = CallEnd {
        status: CallStatus::Completed,
        ended_at: now,
        duration_ms: 0,
        outcome: Some(outcome.to_string()),
        slots: serde_json::Map::new(),
        hangup_reason: Some("answering_machine".to_string()),
        transferred_to: None,
        recording_path: None,
    };
    let store = store.clone();
    let attempt_id = attempt_id.to_string();
    log_writes.spawn(async move {
        if persist("logging a machine's call", || {
            store.create_call_with_id(&id, &new_call)
        })
        .await
        .is_none()
        {
            return;
        }
        persist("ending a machine's call", || store.finish_call(&id, &end)).await;
        persist("linking the attempt to its call", || {
            store.set_attempt_call_id(&attempt_id, &id)
        })
        .await;
    });
}

/// The stream for a person who answered.
pub(crate) fn person_stream(url: String, params: Vec<(String, String)>) -> Result<Stream, String> {
    let mut stream = Stream::new(url).map_err(|e| e.to_string())?;
    for (k, v) in params {
        stream = stream.parameter(k, v);
    }
    Ok(stream)
}

/// Attaches a status callback's call to the attempt its URL names (see the module docs) and
/// records ringing/answered progress.
pub(crate) async fn note_progress(
    store: &Store,
    attempt_id: &str,
    call_sid: &str,
    progress: Option<AttemptStatus>,
) -> Result<(), StoreError> {
    store.set_attempt_provider_id(attempt_id, call_sid).await?;
    if let Some(status) = progress {
        store.set_attempt_progress(attempt_id, status).await?;
    }
    Ok(())
}

/// How often the supervisor looks for campaigns that were started (by the API, the CLI, or another
/// runtime sharing the database).
const POLL: Duration = Duration::from_secs(2);

/// Runs a [`Scheduler`] for every running or paused campaign until `shutdown` completes: new ones
/// are picked up within [`POLL`]; a scheduler ends by itself when its campaign completes or is
/// cancelled. Several runtimes may supervise one database: claims are transactions.
pub async fn supervise<D, R, C>(
    store: Store,
    dialer: D,
    reconciler: R,
    clock: C,
    config: SchedulerConfig,
    shutdown: impl Future<Output = ()>,
) where
    D: Dialer + Clone + 'static,
    R: Reconciler + Clone + 'static,
    C: Clock + Clone + 'static,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!("a campaign scheduler failed: {e}");
            }
        }
        // Ended or failed: a campaign still live gets a new scheduler below.
        running.retain(|_, handle| !handle.is_finished());
        match store.list_campaigns().await {
            Ok(campaigns) => {
                for campaign in campaigns {
                    let live = matches!(campaign.status, CampaignStatus::Running | CampaignStatus::Paused);
                    if !live || running.contains_key(&campaign.id) {
                        continue;
                    }
                    tracing::info!(campaign = %campaign.id, name = %campaign.name, "scheduler started");
                    let scheduler = Scheduler::new(
                        store.clone(),
                        campaign.id.clone(),
                        dialer.clone(),
                        reconciler.clone(),
                        clock.clone(),
                        config.clone(),
                    );
                    let mut stop = stop_rx.clone();
                    let handle = tasks.spawn(scheduler.run(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    }));
                    running.insert(campaign.id, handle);
                }
            }
            Err(e) => tracing::warn!("campaigns: cannot list campaigns: {e}"),
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(POLL) => {}
        }
    }
    let _ = stop_tx.send(true);
    // Each scheduler stops between two steps, every one of which is already in the store.
    while tasks.join_next().await.is_some() {}
}
