//! The scheduler on a real store (SQLite and PostgreSQL, each test on both) with a fake provider
//! and a fake clock: who is called, when, how often, and what survives a crash.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use switchboard_campaign::export::write_results_csv;
use switchboard_campaign::{
    Clock, DialError, DialRequest, DialStarted, Dialer, Reconciler, Scheduler, SchedulerConfig, import_csv,
};
use switchboard_store::{
    AttemptResult, AttemptStatus, CampaignSettings, CampaignStatus, ContactState, DaysOfWeek, DecisionKind,
    NewCampaign, RetryDelays, Store,
};

#[path = "../../store/tests/common/mod.rs"]
#[macro_use]
mod common;

use common::TestDb;

on_both_backends!(
    a_mixed_campaign_calls_exactly_the_right_people_at_the_right_times,
    crash_after_marking_dialing_with_the_call_placed_is_reconciled_not_redialed,
    crash_after_marking_dialing_before_the_call_was_placed_fails_the_attempt,
    a_provider_error_after_placing_the_call_is_reconciled,
    crash_after_claiming_gives_the_claim_back_after_the_lease,
    crash_after_the_provider_id_keeps_waiting_for_the_result,
    a_call_whose_end_reached_no_runtime_is_settled_from_the_provider,
    two_schedulers_share_a_campaign_without_double_claims,
    paused_campaigns_dial_nobody_and_calls_per_second_paces,
    a_rate_limit_pauses_dialing_and_costs_no_attempt,
);

// ---- fakes ----

#[derive(Debug, Clone)]
struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    fn at(t: &str) -> FakeClock {
        FakeClock(Arc::new(AtomicI64::new(
            t.parse::<Timestamp>().unwrap().as_millisecond(),
        )))
    }

    fn advance(&self, d: Duration) {
        self.0
            .fetch_add(i64::try_from(d.as_millis()).unwrap(), Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millisecond(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Places the call and answers with its id.
    Answer,
    /// Places the call, then never answers (the runtime dies waiting).
    HangAfterPlacing,
    /// Never answers and places nothing (the request never arrived).
    HangBeforePlacing,
    /// Places the call but answers with a 5xx.
    UnavailableAfterPlacing,
    /// Refuses every request for now (429), asking for a 30 s wait.
    RateLimited,
}

#[derive(Debug, Clone)]
struct Placed {
    provider_call_id: String,
    to: String,
    attempt_id: String,
    number: u32,
    at: Timestamp,
    delivered: bool,
    /// The provider's last word on the call, when it has ended.
    ended: Option<AttemptResult>,
}

#[derive(Debug)]
struct ProviderState {
    mode: Mode,
    /// Numbers the provider refuses (4xx).
    rejects: HashSet<String>,
    requests: Vec<DialRequest>,
    placed: Vec<Placed>,
}

/// The provider's side: places calls (the dialer) and lists them (the reconciler).
#[derive(Debug, Clone)]
struct FakeProvider {
    state: Arc<Mutex<ProviderState>>,
    clock: FakeClock,
}

impl FakeProvider {
    fn new(clock: &FakeClock) -> FakeProvider {
        FakeProvider {
            state: Arc::new(Mutex::new(ProviderState {
                mode: Mode::Answer,
                rejects: HashSet::new(),
                requests: Vec::new(),
                placed: Vec::new(),
            })),
            clock: clock.clone(),
        }
    }

    fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn reject(&self, phone: &str) {
        self.state.lock().unwrap().rejects.insert(phone.into());
    }

    fn placed(&self) -> Vec<Placed> {
        self.state.lock().unwrap().placed.clone()
    }

    fn requests(&self) -> Vec<DialRequest> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Dialer for FakeProvider {
    fn dial(&self, request: DialRequest) -> impl Future<Output = Result<DialStarted, DialError>> + Send {
        let state = self.state.clone();
        let now = self.clock.now();
        async move {
            let (mode, answer) = {
                let mut s = state.lock().unwrap();
                s.requests.push(request.clone());
                if s.rejects.contains(&request.to) {
                    return Err(DialError::Rejected {
                        reason: "400 invalid number".into(),
                    });
                }
                let mode = s.mode;
                if mode == Mode::RateLimited {
                    return Err(DialError::RateLimited {
                        retry_after: Some(Duration::from_secs(30)),
                    });
                }
                let id = format!("CA{:04}", s.placed.len() + 1);
                if mode != Mode::HangBeforePlacing {
                    s.placed.push(Placed {
                        provider_call_id: id.clone(),
                        to: request.to.clone(),
                        attempt_id: request.attempt_id.clone(),
                        number: request.attempt_number,
                        at: now,
                        delivered: false,
                        ended: None,
                    });
                }
                (mode, id)
            };
            match mode {
                Mode::Answer => Ok(DialStarted {
                    provider_call_id: answer,
                }),
                Mode::UnavailableAfterPlacing => Err(DialError::Unavailable { reason: "503".into() }),
                Mode::HangAfterPlacing | Mode::HangBeforePlacing => std::future::pending().await,
                Mode::RateLimited => unreachable!("answered above"),
            }
        }
    }
}

impl Reconciler for FakeProvider {
    fn find_call(
        &self,
        to: &str,
        since: Timestamp,
    ) -> impl Future<Output = Result<Option<String>, DialError>> + Send {
        let found = self
            .state
            .lock()
            .unwrap()
            .placed
            .iter()
            .rev()
            .find(|p| p.to == to && p.at >= since)
            .map(|p| p.provider_call_id.clone());
        async move { Ok(found) }
    }

    fn call_ended(
        &self,
        provider_call_id: &str,
    ) -> impl Future<Output = Result<Option<AttemptResult>, DialError>> + Send {
        let ended = self
            .state
            .lock()
            .unwrap()
            .placed
            .iter()
            .find(|p| p.provider_call_id == provider_call_id)
            .and_then(|p| p.ended);
        async move { Ok(ended) }
    }
}

type TestScheduler = Scheduler<FakeProvider, FakeProvider, FakeClock>;

const LEASE: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(30);

fn scheduler(store: &Store, campaign: &str, provider: &FakeProvider) -> TestScheduler {
    Scheduler::new(
        store.clone(),
        campaign,
        provider.clone(),
        provider.clone(),
        provider.clock.clone(),
        SchedulerConfig {
            tick: Duration::from_millis(10),
            lease: LEASE,
            // Longer than any test: a hanging dial is ended by the test "crashing" the scheduler.
            dial_timeout: Duration::from_secs(3600),
            settle_after: SETTLE,
        },
    )
}

/// What a contact does on each attempt (the last entry repeats).
type Script = Vec<(AttemptResult, Option<&'static str>)>;

/// Reports the result of every call placed and not yet reported, as its contact's script says.
async fn deliver(s: &TestScheduler, provider: &FakeProvider, scripts: &BTreeMap<String, Script>) {
    let pending: Vec<Placed> = provider.placed().into_iter().filter(|p| !p.delivered).collect();
    for p in pending {
        let script = scripts
            .get(&p.to)
            .cloned()
            .unwrap_or_else(|| vec![(AttemptResult::Completed, Some("confirmed"))]);
        let (result, outcome) = script[(p.number as usize - 1).min(script.len() - 1)];
        let mut slots = serde_json::Map::new();
        if outcome == Some("rescheduled") {
            slots.insert("new_time".into(), serde_json::json!("Friday 3pm"));
        }
        let finished = s
            .on_call_result(&p.provider_call_id, result, outcome, &slots)
            .await
            .unwrap();
        assert!(
            finished.is_some(),
            "the result of {} found its attempt",
            p.provider_call_id
        );
        for q in provider.state.lock().unwrap().placed.iter_mut() {
            if q.provider_call_id == p.provider_call_id {
                q.delivered = true;
            }
        }
    }
}

async fn campaign(store: &Store, settings: CampaignSettings) -> String {
    let new = NewCampaign::new("test", "outbound_appointment", "+442071230000", settings).unwrap();
    let c = store.create_campaign(&new).await.unwrap();
    store
        .set_campaign_status(&c.id, CampaignStatus::Running)
        .await
        .unwrap();
    c.id
}

fn settings() -> CampaignSettings {
    CampaignSettings {
        days_of_week: DaysOfWeek::ALL,
        max_attempts: 3,
        max_attempts_per_day: 2,
        retry: RetryDelays {
            busy_minutes: 10,
            no_answer_minutes: 30,
            voicemail_minutes: 60,
            failed_minutes: 5,
        },
        max_concurrent: 10,
        calls_per_second: 10.0,
        ..CampaignSettings::default()
    }
}

async fn import(store: &Store, campaign: &str, csv: &str) {
    let report = import_csv(store, campaign, csv.as_bytes()).await.unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
}

fn london(n: u32) -> String {
    format!("+4420794600{n:02}")
}

/// A call's local time in a zone.
fn local(at: Timestamp, zone: &str) -> jiff::civil::DateTime {
    at.to_zoned_datetime(jiff::tz::TimeZone::get(zone).unwrap())
        .datetime()
}

// ---- scenarios ----

async fn a_mixed_campaign_calls_exactly_the_right_people_at_the_right_times(db: &TestDb) {
    let store = db.open().await;
    let id = campaign(&store, settings()).await;
    let confirmed: Script = vec![(AttemptResult::Completed, Some("confirmed"))];
    use AttemptResult::*;

    // (phone, time_zone column, consent, script, expected attempts, expected final outcome)
    let mut people: Vec<(String, &str, &str, Script, usize, &str)> = Vec::new();
    for n in 1..=8 {
        people.push((london(n), "", "yes", confirmed.clone(), 1, "confirmed"));
    }
    people.push((
        london(9),
        "",
        "yes",
        vec![(Busy, None), (Busy, None), (Completed, Some("confirmed"))],
        3,
        "confirmed",
    ));
    people.push((london(10), "", "yes", vec![(NoAnswer, None)], 3, "unreachable"));
    people.push((
        london(11),
        "",
        "yes",
        vec![(Voicemail, None), (Completed, Some("confirmed"))],
        2,
        "confirmed",
    ));
    people.push((
        london(12),
        "",
        "yes",
        vec![(Completed, Some("opted_out"))],
        1,
        "opted_out",
    ));
    people.push((
        london(14),
        "",
        "no",
        confirmed.clone(),
        0,
        "not_called_no_consent",
    ));
    people.push((
        london(15),
        "",
        "yes",
        confirmed.clone(),
        0,
        "not_called_do_not_call",
    ));
    people.push((
        "+13125550199".into(),
        "",
        "yes",
        confirmed.clone(),
        0,
        "not_called_unknown_time_zone",
    ));
    for n in 0..3 {
        people.push((
            format!("+1212555010{n}"),
            "America/New_York",
            "yes",
            confirmed.clone(),
            1,
            "confirmed",
        ));
    }
    for n in 0..2 {
        people.push((
            format!("+8131234567{n}"),
            "",
            "yes",
            confirmed.clone(),
            1,
            "confirmed",
        ));
    }
    people.push((
        "+6495550100".into(),
        "Pacific/Auckland",
        "yes",
        confirmed.clone(),
        1,
        "confirmed",
    ));
    people.push((
        london(23),
        "",
        "yes",
        vec![(Completed, Some("rescheduled"))],
        1,
        "rescheduled",
    ));
    people.push((
        london(24),
        "",
        "yes",
        vec![(Failed, None), (Completed, Some("confirmed"))],
        2,
        "confirmed",
    ));
    people.push((london(25), "", "yes", confirmed.clone(), 3, "unreachable"));
    for n in 0..6 {
        people.push((
            format!("+3314200000{n}"),
            "",
            "yes",
            confirmed.clone(),
            1,
            "confirmed",
        ));
    }
    assert_eq!(people.len(), 30);

    let mut csv = String::from("name,phone,time_zone,consent,consent_source,appointment\n");
    for (i, (phone, zone, consent, ..)) in people.iter().enumerate() {
        csv.push_str(&format!(
            "Person {i},{phone},{zone},{consent},web form,Tuesday 10:00\n"
        ));
    }
    // The same number twice: reported, not fatal.
    csv.push_str(&format!("Again,{},,yes,,\n", london(1)));
    let report = import_csv(&store, &id, csv.as_bytes()).await.unwrap();
    assert_eq!(report.imported, 30);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].line, 32);
    assert!(report.rejected[0].reason.contains("already in the campaign"));
    assert_eq!(
        report.without_time_zone,
        vec![16],
        "the NANP number without a zone"
    );
    store
        .add_dnc(&london(15), Some("asked"), Some("test"), 0)
        .await
        .unwrap();

    let clock = FakeClock::at("2026-06-10T08:00:00Z"); // Wednesday: 09:00 in London
    let provider = FakeProvider::new(&clock);
    provider.reject(&london(25));
    let scripts: BTreeMap<String, Script> = people.iter().map(|p| (p.0.clone(), p.3.clone())).collect();
    let mut s = scheduler(&store, &id, &provider);
    let step = Duration::from_secs(120);
    let mut completed = false;
    for _ in 0..2000 {
        let report = s.tick().await.unwrap();
        deliver(&s, &provider, &scripts).await;
        if report.completed {
            completed = true;
            break;
        }
        clock.advance(step);
    }
    assert!(completed, "the campaign finished");
    assert_eq!(
        store.get_campaign(&id).await.unwrap().unwrap().status,
        CampaignStatus::Completed
    );

    let results = store.results(&id).await.unwrap();
    let requests = provider.requests();
    // No attempt number of a contact was ever requested twice.
    let mut seen = HashSet::new();
    for r in &requests {
        assert!(
            seen.insert((r.to.clone(), r.attempt_number)),
            "{} attempt {} dialed twice",
            r.to,
            r.attempt_number
        );
        assert!(r.machine_detection);
        assert_eq!(
            r.fields.get("appointment"),
            Some(&serde_json::json!("Tuesday 10:00"))
        );
    }
    for (phone, _, _, _, attempts, outcome) in &people {
        let r = results.iter().find(|r| &r.contact.phone == phone).unwrap();
        let c = &r.contact;
        assert_eq!(c.state, ContactState::Done, "{phone}");
        assert_eq!(c.final_outcome.as_deref(), Some(*outcome), "{phone}");
        assert_eq!(r.attempts.len(), *attempts, "{phone} attempts");
        let requested = requests.iter().filter(|q| &q.to == phone).count();
        assert_eq!(requested, *attempts, "{phone} dial requests");
        // Every dial inside 09:00-20:00 of the contact's own day.
        let zone = c.time_zone.as_deref();
        for a in &r.attempts {
            let at = Timestamp::from_millisecond(a.dialed_at.unwrap()).unwrap();
            let l = local(at, zone.unwrap());
            assert!((9..20).contains(&l.hour()), "{phone} dialed at local {l}");
        }
        // The check that stopped the never-called ones is in the log.
        if *attempts == 0 {
            let log = store.decisions(&id, Some(&c.id)).await.unwrap();
            assert_eq!(log.len(), 1, "{phone}: {log:?}");
            assert_eq!(log[0].decision, DecisionKind::Skip);
        }
    }

    let by_phone = |phone: &str| results.iter().find(|r| r.contact.phone == phone).unwrap();
    let dialed_at = |phone: &str, n: usize| {
        Timestamp::from_millisecond(by_phone(phone).attempts[n].dialed_at.unwrap()).unwrap()
    };
    let gap = |phone: &str, n: usize| dialed_at(phone, n).duration_since(dialed_at(phone, n - 1));
    let minutes = |m: i64| jiff::SignedDuration::from_mins(m);
    // Retries wait their delay, and not much more (one tick).
    for (phone, n, delay) in [
        (london(9), 1, 10),
        (london(11), 1, 60),
        (london(24), 1, 5),
        (london(10), 1, 30),
    ] {
        let g = gap(&phone, n);
        assert!(
            g >= minutes(delay) && g < minutes(delay + 2),
            "{phone} attempt {}: waited {g}",
            n + 1
        );
    }
    // Two attempts in a local day is the cap: a third is at the next day's opening, whatever
    // its retry delay.
    assert_eq!(
        dialed_at(&london(9), 2),
        "2026-06-11T08:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(
        dialed_at(&london(10), 2),
        "2026-06-11T08:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(
        dialed_at(&london(25), 2),
        "2026-06-11T08:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert!(
        by_phone(&london(25))
            .attempts
            .iter()
            .all(|a| a.status == AttemptStatus::Failed && a.outcome.as_deref() == Some("rejected"))
    );
    // New York waits for 09:00 EDT (13:00Z), Auckland for 09:00 NZST (21:00Z); Tokyo at 17:00 JST is
    // called at once.
    assert_eq!(
        dialed_at("+12125550100", 0),
        "2026-06-10T13:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(
        dialed_at("+6495550100", 0),
        "2026-06-10T21:00:00Z".parse::<Timestamp>().unwrap()
    );
    // (ten calls a second per tick: the first tick took the first ten of the list).
    assert!(dialed_at("+81312345670", 0) <= "2026-06-10T08:04:00Z".parse::<Timestamp>().unwrap());
    // The opt-out is on the list; the slots of the rescheduled call are kept.
    assert!(store.is_dnc(&london(12)).await.unwrap());
    let resched = by_phone(&london(23));
    assert_eq!(
        resched.attempts[0].slots.get("new_time"),
        Some(&serde_json::json!("Friday 3pm"))
    );

    let p = store.progress(&id).await.unwrap();
    assert_eq!((p.total, p.done, p.pending, p.in_progress), (30, 30, 0, 0));
    let count = |o: &str| {
        p.outcomes
            .iter()
            .find(|c| c.outcome.as_deref() == Some(o))
            .map_or(0, |c| c.contacts)
    };
    assert_eq!(count("confirmed"), 23);
    assert_eq!(count("unreachable"), 2);

    let mut out = Vec::new();
    write_results_csv(&results, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 31);
    assert!(text.contains("opted_out"));
    assert!(text.contains(r#"{""new_time"":""Friday 3pm""}"#), "{text}");
}

/// One London contact, due now, in a running campaign.
async fn one_contact(store: &Store) -> (String, FakeClock, FakeProvider) {
    let id = campaign(store, settings()).await;
    import(store, &id, &format!("phone,consent\n{}\n", london(1) + ",yes")).await;
    let clock = FakeClock::at("2026-06-10T08:00:00Z");
    let provider = FakeProvider::new(&clock);
    (id, clock, provider)
}

/// Runs a tick until it blocks in the dialer, then drops it: the runtime dies mid-request.
async fn crash_during_dial(s: &mut TestScheduler) {
    let outcome = tokio::time::timeout(Duration::from_millis(300), s.tick()).await;
    assert!(outcome.is_err(), "the tick was still waiting for the provider");
}

async fn attempts_of(store: &Store, campaign: &str) -> Vec<switchboard_store::Attempt> {
    store.results(campaign).await.unwrap().remove(0).attempts
}

async fn crash_after_marking_dialing_with_the_call_placed_is_reconciled_not_redialed(db: &TestDb) {
    let store = db.open().await;
    let (id, clock, provider) = one_contact(&store).await;
    provider.set_mode(Mode::HangAfterPlacing);
    let mut s = scheduler(&store, &id, &provider);
    crash_during_dial(&mut s).await;
    drop(s);
    let a = attempts_of(&store, &id).await;
    assert_eq!(
        (a.len(), a[0].status, a[0].provider_call_id.as_deref()),
        (1, AttemptStatus::Dialing, None)
    );
    assert_eq!(
        provider.placed()[0].attempt_id,
        a[0].id,
        "the provider placed this very attempt"
    );

    // Restart on a fresh connection pool.
    store.close().await;
    let store = db.open().await;
    provider.set_mode(Mode::Answer);
    let mut s = scheduler(&store, &id, &provider);
    let r = s.tick().await.unwrap();
    assert!(r.dialed.is_empty(), "within the lease the attempt is left alone");
    assert_eq!(r.reconciled_found + r.reconciled_failed, 0);
    clock.advance(LEASE + Duration::from_secs(1));
    let r = s.tick().await.unwrap();
    assert_eq!(r.reconciled_found, 1);
    assert!(r.dialed.is_empty(), "found at the provider: not dialed again");
    assert_eq!(provider.requests().len(), 1);
    let a = attempts_of(&store, &id).await;
    assert_eq!(
        (a[0].status, a[0].provider_call_id.as_deref()),
        (AttemptStatus::Dialing, Some("CA0001"))
    );

    // Its result arrives like any other's.
    deliver(&s, &provider, &BTreeMap::new()).await;
    let c = store.results(&id).await.unwrap().remove(0);
    assert_eq!(c.contact.final_outcome.as_deref(), Some("confirmed"));
    assert_eq!(c.attempts.len(), 1);
    assert!(s.tick().await.unwrap().completed);
}

async fn crash_after_marking_dialing_before_the_call_was_placed_fails_the_attempt(db: &TestDb) {
    let store = db.open().await;
    let (id, clock, provider) = one_contact(&store).await;
    provider.set_mode(Mode::HangBeforePlacing);
    let mut s = scheduler(&store, &id, &provider);
    crash_during_dial(&mut s).await;
    drop(s);

    provider.set_mode(Mode::Answer);
    let mut s = scheduler(&store, &id, &provider);
    clock.advance(LEASE + Duration::from_secs(1));
    let r = s.tick().await.unwrap();
    assert_eq!(r.reconciled_failed, 1);
    assert!(
        r.dialed.is_empty(),
        "the failed attempt waits for its retry delay"
    );
    let a = attempts_of(&store, &id).await;
    assert_eq!(
        (a[0].status, a[0].outcome.as_deref()),
        (AttemptStatus::Failed, Some("not_placed"))
    );

    clock.advance(Duration::from_secs(5 * 60));
    let r = s.tick().await.unwrap();
    assert_eq!(r.dialed.len(), 1);
    let numbers: Vec<u32> = provider.requests().iter().map(|r| r.attempt_number).collect();
    assert_eq!(
        numbers,
        vec![1, 2],
        "attempt 1 was asked for once, then attempt 2"
    );
    assert_eq!(provider.placed().len(), 1);
    assert_eq!(provider.placed()[0].number, 2);
}

async fn a_provider_error_after_placing_the_call_is_reconciled(db: &TestDb) {
    let store = db.open().await;
    let (id, clock, provider) = one_contact(&store).await;
    provider.set_mode(Mode::UnavailableAfterPlacing);
    let mut s = scheduler(&store, &id, &provider);
    let r = s.tick().await.unwrap();
    assert_eq!(r.dialed.len(), 1);
    assert_eq!(attempts_of(&store, &id).await[0].status, AttemptStatus::InDoubt);

    provider.set_mode(Mode::Answer);
    let r = s.tick().await.unwrap();
    assert!(
        r.dialed.is_empty() && r.reconciled_found == 0,
        "in doubt, not redialed"
    );
    clock.advance(LEASE + Duration::from_secs(1));
    let r = s.tick().await.unwrap();
    assert_eq!((r.reconciled_found, r.dialed.len()), (1, 0));
    assert_eq!(provider.requests().len(), 1);
    deliver(&s, &provider, &BTreeMap::new()).await;
    assert_eq!(
        store.results(&id).await.unwrap()[0]
            .contact
            .final_outcome
            .as_deref(),
        Some("confirmed")
    );
}

async fn crash_after_claiming_gives_the_claim_back_after_the_lease(db: &TestDb) {
    let store = db.open().await;
    let (id, clock, provider) = one_contact(&store).await;
    // A scheduler claimed and died before deciding.
    let now = clock.now().as_millisecond();
    let claims = store.claim_due(&id, now, 10).await.unwrap();
    assert_eq!(claims.len(), 1);

    let mut s = scheduler(&store, &id, &provider);
    let r = s.tick().await.unwrap();
    assert!(r.dialed.is_empty(), "another runtime's fresh claim is left alone");
    clock.advance(LEASE + Duration::from_secs(1));
    let r = s.tick().await.unwrap();
    assert_eq!(r.released_stale, 1);
    assert_eq!(r.dialed.len(), 1, "given back and claimed again in the same tick");
    let numbers: Vec<u32> = provider.requests().iter().map(|r| r.attempt_number).collect();
    assert_eq!(numbers, vec![1], "the claim that never dialed does not count");
}

async fn crash_after_the_provider_id_keeps_waiting_for_the_result(db: &TestDb) {
    let store = db.open().await;
    let (id, clock, provider) = one_contact(&store).await;
    let mut s = scheduler(&store, &id, &provider);
    assert_eq!(s.tick().await.unwrap().dialed.len(), 1);
    drop(s);

    let mut s = scheduler(&store, &id, &provider);
    for _ in 0..3 {
        clock.advance(LEASE * 2);
        let r = s.tick().await.unwrap();
        assert!(r.dialed.is_empty() && r.reconciled_found + r.reconciled_failed == 0);
    }
    deliver(&s, &provider, &BTreeMap::new()).await;
    assert!(s.tick().await.unwrap().completed);
    assert_eq!(provider.requests().len(), 1);
}

async fn a_call_whose_end_reached_no_runtime_is_settled_from_the_provider(db: &TestDb) {
    let store = db.open().await;
    let (id, clock, provider) = one_contact(&store).await;
    let mut s = scheduler(&store, &id, &provider);
    assert_eq!(s.tick().await.unwrap().dialed.len(), 1);
    drop(s);
    // The person answered, the runtime died mid-call, the provider ended the call and its
    // callbacks went nowhere.
    provider.state.lock().unwrap().placed[0].ended = Some(AttemptResult::Completed);

    let mut s = scheduler(&store, &id, &provider);
    let r = s.tick().await.unwrap();
    assert_eq!(r.settled_lost, 0, "within the lease the call is presumed live");
    clock.advance(LEASE + Duration::from_secs(1));
    let r = s.tick().await.unwrap();
    assert_eq!(
        r.settled_lost, 0,
        "seen ended once: its runtime may be writing the result"
    );
    clock.advance(SETTLE / 2);
    assert_eq!(
        s.tick().await.unwrap().settled_lost,
        0,
        "not asked again before `settle_after`"
    );
    clock.advance(SETTLE / 2);
    let r = s.tick().await.unwrap();
    assert_eq!(r.settled_lost, 1);
    let a = attempts_of(&store, &id).await;
    assert_eq!(
        (a[0].status, a[0].outcome.as_deref()),
        (AttemptStatus::Completed, Some("interrupted"))
    );
    // Interrupted calls are tried again, after the failed-call delay; a late report of the
    // first call changes nothing.
    let c = store.results(&id).await.unwrap().remove(0);
    assert_eq!(c.contact.final_outcome, None);
    let late = s
        .on_call_result(
            "CA0001",
            AttemptResult::Completed,
            Some("confirmed"),
            &serde_json::Map::new(),
        )
        .await
        .unwrap()
        .expect("the attempt exists");
    assert!(late.already_finished);
    clock.advance(Duration::from_secs(6 * 3600));
    assert_eq!(s.tick().await.unwrap().dialed.len(), 1, "attempt 2");
    assert_eq!(provider.requests().len(), 2);
}

async fn two_schedulers_share_a_campaign_without_double_claims(db: &TestDb) {
    let store_a = db.open().await;
    let store_b = db.open().await;
    let id = campaign(
        &store_a,
        // Three calls a second each, six at once in all: both runtimes claim in every round, and
        // the second to claim finds only what the first left.
        CampaignSettings {
            max_concurrent: 6,
            calls_per_second: 3.0,
            ..settings()
        },
    )
    .await;
    let mut csv = String::from("phone,consent\n");
    for n in 0..40 {
        csv.push_str(&format!("+4420794601{n:02},yes\n"));
    }
    import(&store_a, &id, &csv).await;
    let clock = FakeClock::at("2026-06-10T08:00:00Z");
    let provider = FakeProvider::new(&clock);
    let mut a = scheduler(&store_a, &id, &provider);
    let mut b = scheduler(&store_b, &id, &provider);
    let (mut by_a, mut by_b) = (0, 0);
    for round in 0..100 {
        let before = provider.requests().len();
        // Both ticks in flight at once, each taking the lead in turn.
        let (ra, rb) = if round % 2 == 0 {
            tokio::join!(a.tick(), b.tick())
        } else {
            let (rb, ra) = tokio::join!(b.tick(), a.tick());
            (ra, rb)
        };
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        by_a += ra.dialed.len();
        by_b += rb.dialed.len();
        assert!(
            provider.requests().len() - before <= 6,
            "max_concurrent holds across runtimes"
        );
        deliver(&a, &provider, &BTreeMap::new()).await;
        if ra.completed || rb.completed {
            break;
        }
        clock.advance(Duration::from_secs(1));
    }
    let requests = provider.requests();
    assert_eq!(requests.len(), 40, "everyone dialed exactly once");
    let phones: HashSet<_> = requests.iter().map(|r| r.to.clone()).collect();
    assert_eq!(phones.len(), 40);
    assert!(requests.iter().all(|r| r.attempt_number == 1));
    assert_eq!(by_a + by_b, 40);
    assert!(by_a > 0 && by_b > 0, "both runtimes worked: {by_a} + {by_b}");
    assert_eq!(
        store_a.get_campaign(&id).await.unwrap().unwrap().status,
        CampaignStatus::Completed
    );
}

async fn paused_campaigns_dial_nobody_and_calls_per_second_paces(db: &TestDb) {
    let store = db.open().await;
    let id = campaign(
        &store,
        CampaignSettings {
            calls_per_second: 2.0,
            ..settings()
        },
    )
    .await;
    let mut csv = String::from("phone,consent\n");
    for n in 1..=5 {
        csv.push_str(&format!("{},yes\n", london(n)));
    }
    import(&store, &id, &csv).await;
    let clock = FakeClock::at("2026-06-10T08:00:00Z");
    let provider = FakeProvider::new(&clock);
    let mut s = scheduler(&store, &id, &provider);

    store
        .set_campaign_status(&id, CampaignStatus::Paused)
        .await
        .unwrap();
    assert!(s.tick().await.unwrap().dialed.is_empty());
    assert!(
        store.decisions(&id, None).await.unwrap().is_empty(),
        "nothing claimed, nothing decided"
    );

    store
        .set_campaign_status(&id, CampaignStatus::Running)
        .await
        .unwrap();
    assert_eq!(s.tick().await.unwrap().dialed.len(), 2, "two calls a second");
    assert!(s.tick().await.unwrap().dialed.is_empty(), "no time has passed");
    clock.advance(Duration::from_millis(500));
    assert_eq!(s.tick().await.unwrap().dialed.len(), 1);
    clock.advance(Duration::from_secs(10));
    assert_eq!(s.tick().await.unwrap().dialed.len(), 2, "a pause is not a burst");
    let dials = store
        .decisions(&id, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.decision == DecisionKind::Dial)
        .count();
    assert_eq!(dials, 5);

    // `run` stops when the campaign is cancelled.
    store
        .set_campaign_status(&id, CampaignStatus::Cancelled)
        .await
        .unwrap();
    let run = scheduler(&store, &id, &provider).run(std::future::pending());
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run returned");
}

/// A provider that is rate limiting placed nothing: the refused attempt is given back without
/// counting, the rest of the tick's claims are not dialed, and dialing waits as long as asked.
async fn a_rate_limit_pauses_dialing_and_costs_no_attempt(db: &TestDb) {
    let store = db.open().await;
    let id = campaign(&store, settings()).await;
    let csv: String = (1..=3).map(|n| format!("{},yes\n", london(n))).collect();
    import(&store, &id, &format!("phone,consent\n{csv}")).await;
    let clock = FakeClock::at("2026-06-10T08:00:00Z");
    let provider = FakeProvider::new(&clock);
    provider.set_mode(Mode::RateLimited);
    let mut s = scheduler(&store, &id, &provider);

    let r = s.tick().await.unwrap();
    assert!(r.dialed.is_empty());
    assert_eq!(r.rate_limited, 3, "the refused claim and the two after it");
    assert_eq!(provider.requests().len(), 1, "one refusal stops the tick");
    for c in store.results(&id).await.unwrap() {
        assert!(c.attempts.is_empty(), "{:?}", c.attempts);
        assert_eq!((c.contact.state, c.contact.attempts), (ContactState::Pending, 0));
    }
    let skips: Vec<String> = store
        .decisions(&id, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.decision == DecisionKind::Skip)
        .map(|d| d.reason)
        .collect();
    assert_eq!(skips, ["rate_limited"; 3]);

    // Within the wait nobody is dialed, even with the provider willing.
    provider.set_mode(Mode::Answer);
    clock.advance(Duration::from_secs(20));
    let r = s.tick().await.unwrap();
    assert!(r.dialed.is_empty() && r.rate_limited == 0, "{r:?}");
    assert_eq!(provider.requests().len(), 1);

    // After it, everyone is called, each on their first attempt.
    clock.advance(Duration::from_secs(11));
    let r = s.tick().await.unwrap();
    assert_eq!(r.dialed.len(), 3);
    let numbers: Vec<u32> = provider.requests()[1..]
        .iter()
        .map(|r| r.attempt_number)
        .collect();
    assert_eq!(numbers, [1, 1, 1]);
    deliver(&s, &provider, &BTreeMap::new()).await;
    for c in store.results(&id).await.unwrap() {
        assert_eq!(c.contact.final_outcome.as_deref(), Some("confirmed"));
        assert_eq!(c.attempts.len(), 1);
    }
}
