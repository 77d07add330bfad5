//! Campaign storage against both databases (see `common` for how each test gets its database).
#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchboard_store::{
    AttemptResult, AttemptStatus, CallingWindow, CampaignSettings, CampaignStatus, ContactState, DaysOfWeek,
    DecisionKind, Millis, NewCampaign, NewContact, NewDecision, Release, RetryDelays, StatusChange, Store,
    VoicemailAction,
};

#[macro_use]
mod common;

use common::TestDb;

on_both_backends!(
    campaigns_round_trip_and_change_status_by_the_rules,
    import_reports_duplicates_and_keeps_fields,
    do_not_call_list,
    claims_take_due_pending_contacts_within_concurrency,
    a_released_claim_gives_its_attempt_number_back,
    finishing_attempts_retries_finishes_and_opts_out,
    in_doubt_attempts_and_stale_claims,
    the_same_attempt_number_cannot_be_inserted_twice,
    progress_and_results,
);

const T0: Millis = 1_800_000_000_000;
const MINUTE: Millis = 60_000;

fn settings() -> CampaignSettings {
    CampaignSettings {
        max_attempts: 3,
        max_concurrent: 10,
        retry: RetryDelays {
            busy_minutes: 10,
            no_answer_minutes: 30,
            voicemail_minutes: 60,
            failed_minutes: 5,
        },
        ..CampaignSettings::default()
    }
}

async fn running_campaign(store: &Store, settings: CampaignSettings) -> String {
    let new = NewCampaign::new("spring checkups", "outbound_appointment", "+15550100", settings).unwrap();
    let c = store.create_campaign(&new).await.unwrap();
    assert_eq!(
        store
            .set_campaign_status(&c.id, CampaignStatus::Running)
            .await
            .unwrap(),
        StatusChange::Changed
    );
    c.id
}

fn contact(phone: &str) -> NewContact {
    NewContact {
        name: format!("Contact {phone}"),
        phone: phone.into(),
        time_zone: Some("Europe/London".into()),
        consent: true,
        consent_source: Some("web form".into()),
        fields: serde_json::Map::new(),
    }
}

async fn import(store: &Store, campaign: &str, phones: &[&str]) {
    let contacts: Vec<_> = phones.iter().map(|p| contact(p)).collect();
    let r = store.import_contacts(campaign, &contacts).await.unwrap().unwrap();
    assert_eq!(r.inserted, phones.len());
}

fn dial(at: Millis) -> NewDecision {
    NewDecision {
        at,
        kind: DecisionKind::Dial,
        reason: "all_checks_passed".into(),
        detail: "test".into(),
        retry_at: None,
    }
}

fn skip(at: Millis, reason: &str, retry_at: Option<Millis>) -> NewDecision {
    NewDecision {
        at,
        kind: DecisionKind::Skip,
        reason: reason.into(),
        detail: "test".into(),
        retry_at,
    }
}

/// Claims one contact and marks it dialing with a provider id; returns the attempt id.
async fn dial_one(store: &Store, campaign: &str, now: Millis, provider_id: &str) -> String {
    let claims = store.claim_due(campaign, now, 1).await.unwrap();
    assert_eq!(claims.len(), 1, "one contact due at {now}");
    let id = claims[0].attempt_id.clone();
    assert!(store.mark_dialing(&id, &dial(now)).await.unwrap());
    assert!(store.set_attempt_provider_id(&id, provider_id).await.unwrap());
    id
}

async fn campaigns_round_trip_and_change_status_by_the_rules(db: &TestDb) {
    let store = db.open().await;
    let s = CampaignSettings {
        window: CallingWindow::new(8 * 60 + 30, 19 * 60).unwrap(),
        days_of_week: DaysOfWeek::from_bits(0b0101_0101).unwrap(),
        start_date: Some(jiff::civil::date(2026, 3, 1)),
        end_date: Some(jiff::civil::date(2026, 3, 31)),
        calls_per_second: 2.5,
        voicemail: VoicemailAction::HangUp,
        ..settings()
    };
    let new = NewCampaign::new("march", "outbound_survey", "+442071234567", s.clone()).unwrap();
    let created = store.create_campaign(&new).await.unwrap();
    assert_eq!(created.status, CampaignStatus::Draft);
    let got = store.get_campaign(&created.id).await.unwrap().unwrap();
    assert_eq!(got, created);
    assert_eq!(got.settings, s);
    assert_eq!(store.list_campaigns().await.unwrap(), vec![created.clone()]);
    assert!(store.get_campaign("nope").await.unwrap().is_none());

    use CampaignStatus::*;
    assert_eq!(
        store.set_campaign_status(&created.id, Paused).await.unwrap(),
        StatusChange::NotAllowed { from: Draft }
    );
    for next in [Running, Paused, Running, Cancelled] {
        assert_eq!(
            store.set_campaign_status(&created.id, next).await.unwrap(),
            StatusChange::Changed,
            "{next}"
        );
    }
    assert_eq!(
        store.set_campaign_status(&created.id, Running).await.unwrap(),
        StatusChange::NotAllowed { from: Cancelled }
    );
    assert_eq!(
        store.set_campaign_status("nope", Running).await.unwrap(),
        StatusChange::NotFound
    );
}

async fn import_reports_duplicates_and_keeps_fields(db: &TestDb) {
    let store = db.open().await;
    let campaign = running_campaign(&store, settings()).await;
    let mut a = contact("+442071234567");
    a.fields.insert("appointment".into(), json!("Tuesday 10:00"));
    a.time_zone = None;
    a.consent = false;
    a.consent_source = None;
    let batch = vec![a.clone(), contact("+442071234568"), contact("+442071234567")];
    let r = store.import_contacts(&campaign, &batch).await.unwrap().unwrap();
    assert_eq!(r.inserted, 2);
    assert_eq!(r.duplicates, vec![2]);
    // A second import: the number already there is a duplicate, the new one goes in.
    let r = store
        .import_contacts(&campaign, &[contact("+442071234568"), contact("+442071234569")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.inserted, r.duplicates), (1, vec![0]));
    // Another campaign may have the same number.
    let other = running_campaign(&store, settings()).await;
    let r = store
        .import_contacts(&other, &[contact("+442071234567")])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.inserted, 1);
    assert!(
        store
            .import_contacts("nope", &[contact("+1")])
            .await
            .unwrap()
            .is_none()
    );

    let results = store.results(&campaign).await.unwrap();
    assert_eq!(results.len(), 3);
    let first = &results[0].contact;
    assert_eq!(first.phone, a.phone);
    assert_eq!(first.fields, a.fields);
    assert_eq!(first.time_zone, None);
    assert!(!first.consent);
    assert_eq!(first.state, ContactState::Pending);
    assert_eq!((first.attempts, first.next_attempt_at), (0, None));
    assert_eq!(store.get_contact(&first.id).await.unwrap().as_ref(), Some(first));
}

async fn do_not_call_list(db: &TestDb) {
    let store = db.open().await;
    assert!(!store.is_dnc("+15550111").await.unwrap());
    assert!(
        store
            .add_dnc("+15550111", Some("asked"), Some("api"), T0)
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_dnc("+15550111", Some("again"), None, T0 + 1)
            .await
            .unwrap()
    );
    assert!(store.add_dnc("+15550110", None, None, T0).await.unwrap());
    assert!(store.is_dnc("+15550111").await.unwrap());
    let list = store.list_dnc().await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].phone, "+15550110");
    assert_eq!(
        list[1].reason.as_deref(),
        Some("asked"),
        "the first entry is kept"
    );
    assert!(store.remove_dnc("+15550111").await.unwrap());
    assert!(!store.remove_dnc("+15550111").await.unwrap());
    assert!(!store.is_dnc("+15550111").await.unwrap());
}

async fn claims_take_due_pending_contacts_within_concurrency(db: &TestDb) {
    let store = db.open().await;
    let campaign = running_campaign(
        &store,
        CampaignSettings {
            max_concurrent: 3,
            ..settings()
        },
    )
    .await;
    import(
        &store,
        &campaign,
        &["+441000000001", "+441000000002", "+441000000003", "+441000000004"],
    )
    .await;

    let claims = store.claim_due(&campaign, T0, 2).await.unwrap();
    assert_eq!(claims.len(), 2);
    for c in &claims {
        assert_eq!(c.number, 1);
        assert_eq!(c.contact.attempts, 0, "the contact as it was before the claim");
        assert!(c.previous_attempts.is_empty());
        let now = store.get_contact(&c.contact.id).await.unwrap().unwrap();
        assert_eq!((now.state, now.attempts), (ContactState::InProgress, 1));
        let a = store.get_attempt(&c.attempt_id).await.unwrap().unwrap();
        assert_eq!(
            (a.status, a.number, a.claimed_at),
            (AttemptStatus::Claimed, 1, T0)
        );
    }
    assert_eq!(store.active_attempts(&campaign).await.unwrap(), 2);
    // max_concurrent 3 with 2 active: one more, whatever the limit asked.
    let more = store.claim_due(&campaign, T0, 10).await.unwrap();
    assert_eq!(more.len(), 1);
    assert!(store.claim_due(&campaign, T0, 10).await.unwrap().is_empty());
    let mut ids: Vec<_> = claims.iter().chain(&more).map(|c| c.contact.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "no contact claimed twice");

    // Finish one with a retry: it is not due before its delay.
    let first = &claims[0];
    assert!(store.mark_dialing(&first.attempt_id, &dial(T0)).await.unwrap());
    assert!(
        store
            .set_attempt_provider_id(&first.attempt_id, "CA1")
            .await
            .unwrap()
    );
    let f = store
        .finish_attempt(
            &first.attempt_id,
            AttemptResult::Busy,
            None,
            &serde_json::Map::new(),
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.next_attempt_at, Some(T0 + 10 * MINUTE));
    let fourth = store.claim_due(&campaign, T0 + MINUTE, 10).await.unwrap();
    assert_eq!(fourth.len(), 1);
    assert_ne!(fourth[0].contact.id, first.contact.id);
    assert!(
        store
            .claim_due(&campaign, T0 + 9 * MINUTE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Active: 2 claims + the fourth = 3 = max_concurrent, so even the due one waits.
    assert!(
        store
            .claim_due(&campaign, T0 + 10 * MINUTE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .release_claim(
            &fourth[0].attempt_id,
            &Release::Retry {
                at: Some(T0 + 99 * MINUTE),
            },
            &skip(T0, "window", None),
        )
        .await
        .unwrap();
    let again = store.claim_due(&campaign, T0 + 10 * MINUTE, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].contact.id, first.contact.id);
    assert_eq!(again[0].number, 2);
    assert_eq!(again[0].previous_attempts, vec![T0]);
    assert!(store.claim_due("nope", T0, 10).await.unwrap().is_empty());
}

async fn a_released_claim_gives_its_attempt_number_back(db: &TestDb) {
    let store = db.open().await;
    let campaign = running_campaign(&store, settings()).await;
    import(&store, &campaign, &["+441000000001", "+441000000002"]).await;
    let claims = store.claim_due(&campaign, T0, 2).await.unwrap();
    let (a, b) = (&claims[0], &claims[1]);

    let later = T0 + 60 * MINUTE;
    assert!(
        store
            .release_claim(
                &a.attempt_id,
                &Release::Retry { at: Some(later) },
                &skip(T0, "window", Some(later))
            )
            .await
            .unwrap()
    );
    assert!(
        store.get_attempt(&a.attempt_id).await.unwrap().is_none(),
        "the row is gone"
    );
    let c = store.get_contact(&a.contact.id).await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.attempts, c.next_attempt_at),
        (ContactState::Pending, 0, Some(later))
    );
    // Released twice: the second does nothing.
    assert!(
        !store
            .release_claim(
                &a.attempt_id,
                &Release::Retry { at: None },
                &skip(T0, "window", None)
            )
            .await
            .unwrap()
    );

    assert!(
        store
            .release_claim(
                &b.attempt_id,
                &Release::Final {
                    outcome: "not_called_no_consent".into()
                },
                &skip(T0, "consent", None)
            )
            .await
            .unwrap()
    );
    let c = store.get_contact(&b.contact.id).await.unwrap().unwrap();
    assert_eq!(c.state, ContactState::Done);
    assert_eq!(c.final_outcome.as_deref(), Some("not_called_no_consent"));
    assert_eq!(c.attempts, 0);

    let again = store.claim_due(&campaign, later, 5).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].contact.id.as_str(), again[0].number),
        (a.contact.id.as_str(), 1)
    );
    // A dialed attempt cannot be released.
    assert!(
        store
            .mark_dialing(&again[0].attempt_id, &dial(later))
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_dialing(&again[0].attempt_id, &dial(later))
            .await
            .unwrap(),
        "only a claim is dialed"
    );
    assert!(
        !store
            .release_claim(
                &again[0].attempt_id,
                &Release::Retry { at: None },
                &skip(later, "x", None)
            )
            .await
            .unwrap()
    );

    let log = store.decisions(&campaign, None).await.unwrap();
    let kinds: Vec<_> = log.iter().map(|d| (d.decision, d.reason.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (DecisionKind::Skip, "window"),
            (DecisionKind::Skip, "consent"),
            (DecisionKind::Dial, "all_checks_passed")
        ]
    );
    assert_eq!(log[0].retry_at, Some(later));
    let mine = store.decisions(&campaign, Some(&b.contact.id)).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].contact_id, b.contact.id);
}

async fn finishing_attempts_retries_finishes_and_opts_out(db: &TestDb) {
    let store = db.open().await;
    let campaign = running_campaign(&store, settings()).await;
    import(&store, &campaign, &["+441000000001"]).await;
    let none = serde_json::Map::new();

    // Busy, then no answer, then voicemail: the third is the last (max_attempts 3).
    let mut now = T0;
    for (n, (result, delay)) in [(AttemptResult::Busy, 10), (AttemptResult::NoAnswer, 30)]
        .into_iter()
        .enumerate()
    {
        let id = dial_one(&store, &campaign, now, &format!("CA{n}")).await;
        let f = store
            .finish_attempt(&id, result, None, &none, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f.state, ContactState::Pending);
        assert_eq!(f.next_attempt_at, Some(now + delay * MINUTE));
        assert!(!f.already_finished);
        // A repeated callback changes nothing.
        let again = store
            .finish_attempt(&id, AttemptResult::Completed, Some("confirmed"), &none, now + 1)
            .await
            .unwrap()
            .unwrap();
        assert!(again.already_finished);
        assert_eq!(
            store.get_attempt(&id).await.unwrap().unwrap().status,
            result.status()
        );
        now += delay * MINUTE;
    }
    let id = dial_one(&store, &campaign, now, "CA2").await;
    let f = store
        .finish_attempt(&id, AttemptResult::Voicemail, None, &none, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(f.state, ContactState::Done);
    assert_eq!(f.final_outcome.as_deref(), Some("unreachable"));
    assert!(
        store
            .claim_due(&campaign, now + 1_000 * MINUTE, 5)
            .await
            .unwrap()
            .is_empty()
    );

    // A final outcome on the first attempt, with slots.
    import(&store, &campaign, &["+441000000002", "+441000000003"]).await;
    let id = dial_one(&store, &campaign, now, "CB1").await;
    let mut slots = serde_json::Map::new();
    slots.insert("new_time".into(), json!("Friday 3pm"));
    let f = store
        .finish_attempt(
            &id,
            AttemptResult::Completed,
            Some("rescheduled"),
            &slots,
            now + 5,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (f.state, f.final_outcome.as_deref()),
        (ContactState::Done, Some("rescheduled"))
    );
    let a = store.get_attempt(&id).await.unwrap().unwrap();
    assert_eq!(a.slots, slots);
    assert_eq!(a.ended_at, Some(now + 5));
    assert_eq!(a.outcome.as_deref(), Some("rescheduled"));
    assert_eq!(store.attempt_by_provider_id("CB1").await.unwrap().unwrap().id, id);

    // An opt-out goes to the do-not-call list with the result.
    let id = dial_one(&store, &campaign, now, "CB2").await;
    assert!(
        store
            .set_attempt_progress(&id, AttemptStatus::Answered)
            .await
            .unwrap()
    );
    let f = store
        .finish_attempt(&id, AttemptResult::Completed, Some("opted_out"), &none, now)
        .await
        .unwrap()
        .unwrap();
    assert!(f.added_to_dnc);
    assert_eq!(f.final_outcome.as_deref(), Some("opted_out"));
    assert!(store.is_dnc("+441000000003").await.unwrap());
    assert!(
        !store
            .set_attempt_progress(&id, AttemptStatus::Ringing)
            .await
            .unwrap(),
        "never reopened"
    );
    assert!(
        store
            .finish_attempt("nope", AttemptResult::Busy, None, &none, now)
            .await
            .unwrap()
            .is_none()
    );
}

async fn in_doubt_attempts_and_stale_claims(db: &TestDb) {
    let store = db.open().await;
    let campaign = running_campaign(&store, settings()).await;
    import(
        &store,
        &campaign,
        &["+441000000001", "+441000000002", "+441000000003", "+441000000004"],
    )
    .await;
    let claims = store.claim_due(&campaign, T0, 4).await.unwrap();
    // 0: dialing, no provider id (a crash mid-request). 1: dialing with an id. 2: in doubt after
    // a 5xx. 3: only claimed.
    for c in &claims[..3] {
        assert!(store.mark_dialing(&c.attempt_id, &dial(T0)).await.unwrap());
    }
    assert!(
        store
            .set_attempt_provider_id(&claims[1].attempt_id, "CA1")
            .await
            .unwrap()
    );
    assert!(store.mark_in_doubt(&claims[2].attempt_id).await.unwrap());
    assert!(
        !store.mark_in_doubt(&claims[1].attempt_id).await.unwrap(),
        "it has an id"
    );

    assert!(
        store.in_doubt_attempts(&campaign, T0).await.unwrap().is_empty(),
        "too recent"
    );
    let doubt = store.in_doubt_attempts(&campaign, T0 + 1).await.unwrap();
    let mut got: Vec<_> = doubt.iter().map(|d| d.attempt.id.clone()).collect();
    got.sort();
    let mut want = vec![claims[0].attempt_id.clone(), claims[2].attempt_id.clone()];
    want.sort();
    assert_eq!(got, want);
    let phones: Vec<_> = doubt.iter().map(|d| d.phone.as_str()).collect();
    assert!(phones.contains(&claims[0].contact.phone.as_str()));

    // Reconciled: found at the provider, it gets its id and waits for its status.
    assert!(
        store
            .set_attempt_provider_id(&claims[2].attempt_id, "CA2")
            .await
            .unwrap()
    );
    let a = store.get_attempt(&claims[2].attempt_id).await.unwrap().unwrap();
    assert_eq!(
        (a.status, a.provider_call_id.as_deref()),
        (AttemptStatus::Dialing, Some("CA2"))
    );
    assert_eq!(store.in_doubt_attempts(&campaign, T0 + 1).await.unwrap().len(), 1);

    assert_eq!(
        store.release_stale_claims(&campaign, T0).await.unwrap(),
        0,
        "too recent"
    );
    assert_eq!(store.release_stale_claims(&campaign, T0 + 1).await.unwrap(), 1);
    let c = store.get_contact(&claims[3].contact.id).await.unwrap().unwrap();
    assert_eq!((c.state, c.attempts), (ContactState::Pending, 0));
    assert!(store.get_attempt(&claims[3].attempt_id).await.unwrap().is_none());
    // The stale claim's scheduler, if it was alive after all, may not dial it now.
    assert!(
        !store
            .mark_dialing(&claims[3].attempt_id, &dial(T0))
            .await
            .unwrap()
    );
}

async fn the_same_attempt_number_cannot_be_inserted_twice(db: &TestDb) {
    let store = db.open().await;
    let campaign = running_campaign(&store, settings()).await;
    import(&store, &campaign, &["+441000000001"]).await;
    let claim = store.claim_due(&campaign, T0, 1).await.unwrap().remove(0);
    let raw = db.raw().await;
    let err = sqlx::query(
        "INSERT INTO attempts (id, contact_id, campaign_id, number, status, claimed_at) \
         VALUES ('dup', $1, $2, 1, 'claimed', 0)",
    )
    .bind(claim.contact.id.as_str())
    .bind(campaign.as_str())
    .execute(&raw)
    .await
    .unwrap_err();
    match err {
        sqlx::Error::Database(e) => assert!(e.is_unique_violation(), "{e}"),
        other => panic!("expected a unique violation, got {other}"),
    }
    raw.close().await;
}

async fn progress_and_results(db: &TestDb) {
    let store = db.open().await;
    let campaign = running_campaign(&store, settings()).await;
    import(
        &store,
        &campaign,
        &["+441000000001", "+441000000002", "+441000000003", "+441000000004"],
    )
    .await;
    let none = serde_json::Map::new();
    let a = dial_one(&store, &campaign, T0, "CA1").await;
    store
        .finish_attempt(&a, AttemptResult::Completed, Some("confirmed"), &none, T0 + 1)
        .await
        .unwrap();
    let b = dial_one(&store, &campaign, T0, "CA2").await;
    store
        .finish_attempt(&b, AttemptResult::Busy, None, &none, T0 + 1)
        .await
        .unwrap();
    let _live = dial_one(&store, &campaign, T0, "CA3").await;

    let p = store.progress(&campaign).await.unwrap();
    assert_eq!(
        (p.total, p.pending, p.in_progress, p.done, p.attempts),
        (4, 2, 1, 1, 3)
    );
    assert_eq!(p.outcomes.len(), 1);
    assert_eq!(
        (p.outcomes[0].outcome.as_deref(), p.outcomes[0].contacts),
        (Some("confirmed"), 1)
    );
    assert!(!store.complete_campaign_if_done(&campaign).await.unwrap());

    let results = store.results(&campaign).await.unwrap();
    assert_eq!(results.len(), 4);
    let confirmed = results
        .iter()
        .find(|r| r.contact.final_outcome.is_some())
        .unwrap();
    assert_eq!(confirmed.attempts.len(), 1);
    assert_eq!(confirmed.attempts[0].provider_call_id.as_deref(), Some("CA1"));
    assert_eq!(confirmed.attempts[0].dialed_at, Some(T0));
    let untouched = results.iter().filter(|r| r.attempts.is_empty()).count();
    assert_eq!(untouched, 1);
}
