//! The scheduler: one loop per running campaign that claims due contacts, decides, dials, and
//! reconciles what a crash left in doubt. Every step is written to the store before the next, so
//! the loop can stop between any two of them.
//!
//! One tick:
//! 1. **Recover**: claims older than the lease that never reached `dialing` are given back (no
//!    request was sent); attempts `dialing`/`in_doubt` without a provider id and older than the
//!    lease are looked up at the provider through the [`Reconciler`]: found → the provider id is
//!    attached and the attempt waits for its status like any other; not found → `failed`, which
//!    counts as an attempt and is retried after the campaign's `failed` delay. The lease keeps a
//!    runtime from reconciling a dial another live runtime is making right now; it must be longer
//!    than the dial timeout.
//!    Calls placed before the lease that still have no result are asked about at the provider
//!    (every `settle_after`): one it reports ended twice, `settle_after` apart, had its end
//!    reported while no runtime listened; it is recorded from the provider's status (a connected
//!    call as `interrupted`, which is retried).
//! 2. **Claim** up to the free concurrency (the store enforces it) and the calls-per-second
//!    budget (a token bucket on the clock).
//! 3. For each claim, **decide** ([`crate::rules::decide`]). A skip releases the claim in the
//!    store, with the decision, and sets when the contact is due again; a dial marks the attempt
//!    `dialing` (with the decision) *before* the provider is asked, then stores the provider id.
//!    A rejection (4xx) fails the attempt; no answer or a 5xx leaves it `in_doubt`. A rate limit
//!    (429) placed nothing: the attempt is given back without counting, and no claim is dialed
//!    until the provider's wait has passed (this tick's other claims are given back too).
//! 4. The campaign is marked completed when every contact is done.
//!
//! Results arrive through [`record_call_result`] (status callbacks and the finished call, from the
//! server), independently of the loop.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use switchboard_store::{
    AttemptResult, Campaign, CampaignStatus, Claim, DecisionKind, Finished, INTERRUPTED, NewDecision,
    Release, Store, VoicemailAction,
};

use crate::CampaignError;
use crate::rules::{Decision, attempts_on_local_day, decide, weekday_name};

/// The time, from the system or from a test.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Everything the provider needs to place one call, and the flow to run on it.
#[derive(Debug, Clone, PartialEq)]
pub struct DialRequest {
    pub attempt_id: String,
    pub attempt_number: u32,
    pub campaign_id: String,
    pub contact_id: String,
    /// E.164.
    pub to: String,
    /// The campaign's caller id.
    pub from: String,
    pub flow: String,
    pub contact_name: String,
    /// The contact's custom fields, for the flow.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Always asked for: the answer decides between the flow and the voicemail action.
    pub machine_detection: bool,
    pub voicemail: VoicemailAction,
}

/// The provider accepted the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialStarted {
    pub provider_call_id: String,
}

/// Why a dial did not start, by what it means for the attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The provider refused the request (a 4xx: bad number, no funds, …): no call was placed;
    /// retrying the same request would fail the same way.
    #[error("the provider refused the call: {reason}")]
    Rejected { reason: String },
    /// No clear answer (a 5xx, a timeout, a lost connection): the provider may or may not have
    /// placed the call.
    #[error("the provider did not answer clearly: {reason}")]
    Unavailable { reason: String },
    /// The provider refused the request for now (429, too many requests, after the client's own
    /// retries): no call was placed, and the same request later will likely go through.
    #[error("the provider is rate limiting calls (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
}

/// How long dialing pauses after a rate limit that named no wait.
pub const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(60);

/// Places calls (the provider's REST API in production, a fake in tests).
pub trait Dialer: Send + Sync {
    fn dial(&self, request: DialRequest) -> impl Future<Output = Result<DialStarted, DialError>> + Send;
}

/// Looks up calls the provider placed (its call list, filtered by To and start time), to settle
/// attempts whose dial may or may not have gone through.
pub trait Reconciler: Send + Sync {
    /// The provider's id of a call to `to` started at or after `since`, if there is one.
    fn find_call(
        &self,
        to: &str,
        since: Timestamp,
    ) -> impl Future<Output = Result<Option<String>, DialError>> + Send;

    /// How the call ended, as the provider says now; `None` while it is still going (queued,
    /// ringing, in progress). `Completed` means a person (or machine) was connected.
    fn call_ended(
        &self,
        provider_call_id: &str,
    ) -> impl Future<Output = Result<Option<AttemptResult>, DialError>> + Send;
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often the loop runs.
    pub tick: Duration,
    /// How old a claim or an unanswered dial must be before another runtime (or this one,
    /// restarted) treats it as abandoned. Longer than `dial_timeout`.
    pub lease: Duration,
    /// How long a dial request may take before the attempt is in doubt.
    pub dial_timeout: Duration,
    /// A call the provider reports ended, with no result recorded, is settled when it is still so
    /// this long later: the runtime that ran it may be writing its result right now. Also how
    /// often such calls are asked about.
    pub settle_after: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tick: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            dial_timeout: Duration::from_secs(15),
            settle_after: Duration::from_secs(30),
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Attempts sent to the provider (whatever it answered).
    pub dialed: Vec<String>,
    pub skipped: usize,
    pub released_stale: u64,
    /// In-doubt attempts found at the provider / not found (failed).
    pub reconciled_found: usize,
    pub reconciled_failed: usize,
    /// Calls that ended without a recorded result (their end reported to nobody), settled.
    pub settled_lost: usize,
    /// The campaign finished with this tick (every contact done).
    pub completed: bool,
    /// Claims given back because the provider is rate limiting: the one it refused and the rest
    /// of the tick's. None of them counts as an attempt.
    pub rate_limited: usize,
}

/// The scheduler of one campaign.
#[derive(Debug)]
pub struct Scheduler<D, R, C> {
    store: Store,
    campaign_id: String,
    dialer: D,
    reconciler: R,
    clock: C,
    config: SchedulerConfig,
    bucket: TokenBucket,
    /// Live attempts asked about at the provider: when last asked, and since when it has said the
    /// call ended. In memory on purpose: after a restart the wait starts over, which only delays.
    asked: HashMap<String, (Timestamp, Option<Timestamp>)>,
    /// No dialing before this: the provider said it is rate limiting. In memory: after a restart the
    /// first dial asks again, and a refusal costs nothing.
    paused_until: Option<Timestamp>,
}

impl<D: Dialer, R: Reconciler, C: Clock> Scheduler<D, R, C> {
    pub fn new(
        store: Store,
        campaign_id: impl Into<String>,
        dialer: D,
        reconciler: R,
        clock: C,
        config: SchedulerConfig,
    ) -> Self {
        Scheduler {
            store,
            campaign_id: campaign_id.into(),
            dialer,
            reconciler,
            clock,
            config,
            bucket: TokenBucket::default(),
            asked: HashMap::new(),
            paused_until: None,
        }
    }

    pub fn campaign_id(&self) -> &str {
        &self.campaign_id
    }

    /// Ticks until `shutdown` resolves or the campaign is over (completed or cancelled). A failed
    /// tick (the database away for a moment) is logged and the next one tries again: nothing of
    /// it was lost, the store has every step.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.tick().await {
                Ok(report) if report.completed => {
                    tracing::info!(campaign = %self.campaign_id, "campaign completed");
                    return;
                }
                Ok(_) => {}
                Err(CampaignError::UnknownCampaign { .. }) => {
                    tracing::warn!(campaign = %self.campaign_id, "campaign deleted; scheduler stops");
                    return;
                }
                Err(e) => tracing::warn!(campaign = %self.campaign_id, "scheduler tick failed: {e}"),
            }
            if let Ok(Some(c)) = self.store.get_campaign(&self.campaign_id).await
                && matches!(c.status, CampaignStatus::Cancelled | CampaignStatus::Completed)
            {
                return;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.config.tick) => {}
            }
        }
    }

    /// One pass: recover, claim, decide, dial (see the module docs).
    pub async fn tick(&mut self) -> Result<TickReport, CampaignError> {
        let mut report = TickReport::default();
        let Some(campaign) = self.store.get_campaign(&self.campaign_id).await? else {
            return Err(CampaignError::UnknownCampaign {
                id: self.campaign_id.clone(),
            });
        };
        if campaign.status == CampaignStatus::Draft {
            return Ok(report);
        }
        self.recover(&mut report).await?;
        self.settle_lost_results(&mut report).await?;
        if campaign.status != CampaignStatus::Running {
            return Ok(report);
        }

        let now = self.clock.now();
        if self.paused_until.is_some_and(|until| now < until) {
            report.completed = self.store.complete_campaign_if_done(&self.campaign_id).await?;
            return Ok(report);
        }
        self.bucket.refill(now, campaign.settings.calls_per_second);
        let active = self.store.active_attempts(&self.campaign_id).await?;
        let claims = self
            .store
            .claim_due(&self.campaign_id, now.as_millisecond(), self.bucket.whole())
            .await?;
        for (i, claim) in claims.into_iter().enumerate() {
            if let Some(until) = self.paused_until.filter(|&until| now < until) {
                self.give_back_rate_limited(
                    &claim.attempt_id,
                    until,
                    "not dialed: the provider is rate limiting",
                    false,
                )
                .await?;
                report.rate_limited += 1;
                continue;
            }
            let active = active + u32::try_from(i).unwrap_or(u32::MAX);
            if let Some(attempt) = self.handle_claim(&campaign, claim, active, &mut report).await? {
                report.dialed.push(attempt);
            }
        }
        report.completed = self.store.complete_campaign_if_done(&self.campaign_id).await?;
        Ok(report)
    }

    /// Records a call's result (see [`record_call_result`]) at the scheduler's clock.
    pub async fn on_call_result(
        &self,
        provider_call_id: &str,
        result: AttemptResult,
        outcome: Option<&str>,
        slots: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<Finished>, CampaignError> {
        record_call_result(
            &self.store,
            provider_call_id,
            result,
            outcome,
            slots,
            self.clock.now(),
        )
        .await
    }

    async fn recover(&self, report: &mut TickReport) -> Result<(), CampaignError> {
        let now = self.clock.now();
        let lease = i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.as_millisecond().saturating_sub(lease);
        report.released_stale = self.store.release_stale_claims(&self.campaign_id, cutoff).await?;
        for doubt in self.store.in_doubt_attempts(&self.campaign_id, cutoff).await? {
            let attempt = &doubt.attempt;
            // The provider's clock and ours differ a little; a minute of slack cannot match an
            // earlier attempt, which ended at least a retry delay before.
            let since = attempt
                .dialed_at
                .unwrap_or(attempt.claimed_at)
                .saturating_sub(60_000);
            let since = Timestamp::from_millisecond(since).unwrap_or(now);
            match self.reconciler.find_call(&doubt.phone, since).await {
                Ok(Some(provider_call_id)) => {
                    tracing::info!(attempt = %attempt.id, %provider_call_id, "in-doubt attempt found at the provider");
                    self.store
                        .set_attempt_provider_id(&attempt.id, &provider_call_id)
                        .await?;
                    report.reconciled_found += 1;
                }
                Ok(None) => {
                    tracing::info!(attempt = %attempt.id, "in-doubt attempt not placed; failed");
                    self.store
                        .finish_attempt(
                            &attempt.id,
                            AttemptResult::Failed,
                            Some("not_placed"),
                            &serde_json::Map::new(),
                            now.as_millisecond(),
                        )
                        .await?;
                    report.reconciled_failed += 1;
                }
                // Left in doubt: the next tick asks again. Never redialed blindly.
                Err(e) => tracing::warn!(attempt = %attempt.id, "cannot reconcile yet: {e}"),
            }
        }
        Ok(())
    }

    /// Calls placed longer than the lease ago and still without a result: the provider is asked
    /// (every `settle_after`) how they stand. One it reports ended twice, `settle_after` apart, lost
    /// its end (the runtime was down when the status callback or the media stream's end came):
    /// it is recorded from the provider's status — a connected call as `interrupted`, retried.
    async fn settle_lost_results(&mut self, report: &mut TickReport) -> Result<(), CampaignError> {
        let now = self.clock.now();
        let lease = i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX);
        let settle =
            jiff::SignedDuration::try_from(self.config.settle_after).unwrap_or(jiff::SignedDuration::MAX);
        let live = self
            .store
            .live_attempts(&self.campaign_id, now.as_millisecond().saturating_sub(lease))
            .await?;
        self.asked.retain(|id, _| live.iter().any(|a| &a.id == id));
        for attempt in live {
            let Some(call) = attempt.provider_call_id.as_deref() else {
                continue;
            };
            let (asked_at, ended_since) = self.asked.get(&attempt.id).copied().unzip();
            if asked_at.is_some_and(|t| now.duration_since(t) < settle) {
                continue;
            }
            let ended = match self.reconciler.call_ended(call).await {
                Ok(ended) => ended,
                Err(e) => {
                    tracing::warn!(attempt = %attempt.id, "cannot ask the provider about the call yet: {e}");
                    continue;
                }
            };
            let Some(result) = ended else {
                self.asked.insert(attempt.id.clone(), (now, None));
                continue;
            };
            match ended_since.flatten() {
                Some(since) if now.duration_since(since) >= settle => {
                    let outcome = (result == AttemptResult::Completed).then_some(INTERRUPTED);
                    tracing::warn!(attempt = %attempt.id, ?result, "the call ended without its result reaching a runtime; settled from the provider's status");
                    self.store
                        .finish_attempt(
                            &attempt.id,
                            result,
                            outcome,
                            &serde_json::Map::new(),
                            now.as_millisecond(),
                        )
                        .await?;
                    self.asked.remove(&attempt.id);
                    report.settled_lost += 1;
                }
                since => {
                    self.asked
                        .insert(attempt.id.clone(), (now, Some(since.unwrap_or(now))));
                }
            }
        }
        Ok(())
    }

    /// Gives a claim (`dialed`: an attempt the provider refused) back without it counting, due again
    /// when the rate limit has passed.
    async fn give_back_rate_limited(
        &self,
        attempt_id: &str,
        until: Timestamp,
        detail: &str,
        dialed: bool,
    ) -> Result<(), CampaignError> {
        let at = until.as_millisecond();
        let record = NewDecision {
            at: self.clock.now().as_millisecond(),
            kind: DecisionKind::Skip,
            reason: "rate_limited".to_string(),
            detail: format!("{detail}; no call was placed and the attempt does not count"),
            retry_at: Some(at),
        };
        let given_back = if dialed {
            self.store.release_unplaced(attempt_id, at, &record).await?
        } else {
            self.store
                .release_claim(attempt_id, &Release::Retry { at: Some(at) }, &record)
                .await?
        };
        if !given_back {
            tracing::warn!(attempt = %attempt_id, "rate-limited attempt was settled elsewhere meanwhile");
        }
        Ok(())
    }

    /// Decides on one claim and dials it or releases it; the attempt id if it was sent.
    async fn handle_claim(
        &mut self,
        campaign: &Campaign,
        claim: Claim,
        active: u32,
        report: &mut TickReport,
    ) -> Result<Option<String>, CampaignError> {
        let now = self.clock.now();
        let contact = &claim.contact;
        let dnc = self.store.is_dnc(&contact.phone).await?;
        let zone = contact.time_zone.as_deref();
        let today = attempts_on_local_day(zone, now, &claim.previous_attempts);
        let decision = decide(campaign, contact, today, now, dnc, active);
        match &decision {
            Decision::Skip { reason, retry_at } => {
                let retry_at = retry_at.map(Timestamp::as_millisecond);
                let release = match reason.final_outcome() {
                    Some(outcome) => Release::Final {
                        outcome: outcome.to_string(),
                    },
                    None => Release::Retry { at: retry_at },
                };
                let record = NewDecision {
                    at: now.as_millisecond(),
                    kind: DecisionKind::Skip,
                    reason: reason.check().to_string(),
                    detail: reason.to_string(),
                    retry_at,
                };
                tracing::debug!(contact = %contact.id, check = reason.check(), "skip: {reason}");
                self.store
                    .release_claim(&claim.attempt_id, &release, &record)
                    .await?;
                report.skipped += 1;
                Ok(None)
            }
            Decision::Dial { local } => {
                let settings = &campaign.settings;
                let record = NewDecision {
                    at: now.as_millisecond(),
                    kind: DecisionKind::Dial,
                    reason: decision.check().to_string(),
                    detail: format!(
                        "consent ({}), not on the do-not-call list, local {} {} {} inside {}, attempt {} of {}, \
                         {} of {} today, {} of {} calls active",
                        contact.consent_source.as_deref().unwrap_or("no source given"),
                        weekday_name(local.weekday()),
                        local,
                        zone.unwrap_or(""),
                        settings.window,
                        claim.number,
                        settings.max_attempts,
                        today + 1,
                        settings.max_attempts_per_day,
                        active + 1,
                        settings.max_concurrent,
                    ),
                    retry_at: None,
                };
                // Written before the request: from here on a crash leaves the attempt in doubt,
                // never forgotten.
                if !self.store.mark_dialing(&claim.attempt_id, &record).await? {
                    tracing::warn!(attempt = %claim.attempt_id, "claim taken back before dialing; not dialed");
                    return Ok(None);
                }
                self.bucket.take();
                let request = DialRequest {
                    attempt_id: claim.attempt_id.clone(),
                    attempt_number: claim.number,
                    campaign_id: campaign.id.clone(),
                    contact_id: contact.id.clone(),
                    to: contact.phone.clone(),
                    from: campaign.caller_id.clone(),
                    flow: campaign.flow.clone(),
                    contact_name: contact.name.clone(),
                    fields: contact.fields.clone(),
                    machine_detection: true,
                    voicemail: settings.voicemail,
                };
                let answer = tokio::time::timeout(self.config.dial_timeout, self.dialer.dial(request)).await;
                match answer {
                    Ok(Ok(started)) => {
                        let attached = self
                            .store
                            .set_attempt_provider_id(&claim.attempt_id, &started.provider_call_id)
                            .await?;
                        // The call's first webhook may have attached it already (it names the
                        // attempt); anything else means the attempt was settled meanwhile.
                        if !attached {
                            let attempt = self.store.get_attempt(&claim.attempt_id).await?;
                            let ours = attempt.as_ref().and_then(|a| a.provider_call_id.as_deref())
                                == Some(started.provider_call_id.as_str());
                            if !ours {
                                tracing::warn!(attempt = %claim.attempt_id, provider_call_id = %started.provider_call_id, "dial answered after the attempt was settled elsewhere");
                            }
                        }
                    }
                    Ok(Err(DialError::Rejected { reason })) => {
                        tracing::warn!(attempt = %claim.attempt_id, "dial rejected: {reason}");
                        self.store
                            .finish_attempt(
                                &claim.attempt_id,
                                AttemptResult::Failed,
                                Some("rejected"),
                                &serde_json::Map::new(),
                                self.clock.now().as_millisecond(),
                            )
                            .await?;
                    }
                    Ok(Err(DialError::Unavailable { reason })) => {
                        tracing::warn!(attempt = %claim.attempt_id, "dial in doubt: {reason}");
                        self.store.mark_in_doubt(&claim.attempt_id).await?;
                    }
                    Ok(Err(e @ DialError::RateLimited { retry_after })) => {
                        let until = self.clock.now() + retry_after.unwrap_or(RATE_LIMIT_PAUSE);
                        tracing::warn!(attempt = %claim.attempt_id, "{e}; dialing paused until {until}");
                        self.paused_until = Some(until);
                        self.give_back_rate_limited(&claim.attempt_id, until, &e.to_string(), true)
                            .await?;
                        report.rate_limited += 1;
                        return Ok(None);
                    }
                    Err(_elapsed) => {
                        tracing::warn!(attempt = %claim.attempt_id, "dial timed out; in doubt");
                        self.store.mark_in_doubt(&claim.attempt_id).await?;
                    }
                }
                Ok(Some(claim.attempt_id))
            }
        }
    }
}

/// Records how the call `provider_call_id` ended and moves its contact on (retry, done, the
/// do-not-call list on an opt-out; see [`Store::finish_attempt`]). `None` if no attempt has this
/// provider id (a call that is not a campaign's). Repeated reports are harmless.
pub async fn record_call_result(
    store: &Store,
    provider_call_id: &str,
    result: AttemptResult,
    outcome: Option<&str>,
    slots: &serde_json::Map<String, serde_json::Value>,
    now: Timestamp,
) -> Result<Option<Finished>, CampaignError> {
    let Some(attempt) = store.attempt_by_provider_id(provider_call_id).await? else {
        return Ok(None);
    };
    Ok(store
        .finish_attempt(&attempt.id, result, outcome, slots, now.as_millisecond())
        .await?)
}

/// Calls per second as a token bucket on the scheduler's clock: it holds at most one second's
/// worth (at least one call), so a pause does not turn into a burst.
#[derive(Debug, Default)]
struct TokenBucket {
    tokens: f64,
    last: Option<Timestamp>,
}

impl TokenBucket {
    fn refill(&mut self, now: Timestamp, per_second: f64) {
        let capacity = per_second.max(1.0);
        self.tokens = match self.last {
            None => capacity,
            Some(last) => {
                let elapsed = now.duration_since(last).as_secs_f64().max(0.0);
                (self.tokens + elapsed * per_second).min(capacity)
            }
        };
        self.last = Some(now);
    }

    /// Whole calls available now.
    fn whole(&self) -> u32 {
        // Between 0 and the capacity; `as` saturates.
        self.tokens.floor() as u32
    }

    fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_paces_calls_per_second() {
        let t0: Timestamp = "2026-06-10T09:00:00Z".parse().expect("time");
        let mut b = TokenBucket::default();
        b.refill(t0, 2.0);
        assert_eq!(b.whole(), 2);
        b.take();
        b.take();
        assert_eq!(b.whole(), 0);
        b.refill(t0 + jiff::SignedDuration::from_millis(500), 2.0);
        assert_eq!(b.whole(), 1);
        // A long pause refills only to the capacity.
        b.refill(t0 + jiff::SignedDuration::from_secs(3600), 2.0);
        assert_eq!(b.whole(), 2);
        // Below one call a second, a call every few seconds.
        let mut b = TokenBucket::default();
        b.refill(t0, 0.25);
        assert_eq!(b.whole(), 1);
        b.take();
        b.refill(t0 + jiff::SignedDuration::from_secs(3), 0.25);
        assert_eq!(b.whole(), 0);
        b.refill(t0 + jiff::SignedDuration::from_secs(4), 0.25);
        assert_eq!(b.whole(), 1);
    }
}
