//! Outbound campaigns: campaigns, contacts, attempts, the do-not-call list and the scheduler's
//! decision log.
//!
//! The scheduler's state lives here and nowhere else, so a runtime can stop at any point and
//! another (or the same, restarted) can carry on:
//! - **A claim is a row.** [`Store::claim_due`] inserts the attempt (`claimed`, number =
//!   attempts so far + 1) and marks the contact `in_progress` in one transaction, so two
//!   schedulers cannot take the same contact: on PostgreSQL the due contacts are selected
//!   `FOR UPDATE SKIP LOCKED` under a lock on the campaign row (which also makes the concurrency
//!   count exact across runtimes); on SQLite the transaction starts with `BEGIN IMMEDIATE`, taking
//!   the database's one write lock before it reads. `UNIQUE (contact_id, number)` makes a second
//!   claim of the same attempt fail even if that logic were wrong.
//! - **Dialing is written before the dial.** [`Store::mark_dialing`] comes before the request
//!   to the provider and [`Store::set_attempt_provider_id`] after it; an attempt found `dialing`
//!   without a provider id is one the runtime cannot know was placed ([`Store::in_doubt_attempts`]).
//!   A `claimed` attempt left by a crash was never sent anywhere and is simply given back
//!   ([`Store::release_stale_claims`]).
//! - **Decisions are written with their effect.** Each scheduler decision is inserted in the same
//!   transaction as the claim's release or its move to `dialing`, so the log and the state agree.
//! - **An opt-out reaches the do-not-call list in the transaction that records it.**

use sqlx::any::{Any, AnyRow};
use sqlx::{Row, Transaction};
use uuid::Uuid;

use crate::time::now_ms;
use crate::{
    Attempt, AttemptResult, AttemptStatus, CallingWindow, Campaign, CampaignSettings, CampaignStatus, Claim,
    Contact, ContactOutcomeCount, ContactResult, ContactState, DaysOfWeek, DncEntry, Finished, ImportResult,
    InDoubt, Millis, NewCampaign, NewContact, NewDecision, OPTED_OUT, Progress, Release, RetryDelays,
    SchedulerDecision, StatusChange, Store, StoreError, UNREACHABLE, UnknownVariant, VoicemailAction,
    is_final,
};

const CAMPAIGN_COLUMNS: &str = "id, name, flow, caller_id, status, window_start, window_end, \
     days_of_week, start_date, end_date, max_attempts, max_attempts_per_day, retry_busy_minutes, \
     retry_no_answer_minutes, retry_voicemail_minutes, retry_failed_minutes, max_concurrent, \
     calls_per_second, voicemail_action, created_at";

const CONTACT_COLUMNS: &str = "id, campaign_id, name, phone, time_zone, consent, consent_source, \
     fields, state, final_outcome, attempts, next_attempt_at";

const ATTEMPT_COLUMNS: &str = "id, contact_id, campaign_id, number, status, claimed_at, dialed_at, \
     provider_call_id, call_id, outcome, slots, ended_at";

const MS_PER_MINUTE: i64 = 60_000;

/// `'claimed', 'dialing', …`: our own constants, so formatting them into SQL is safe.
fn active_statuses_sql() -> String {
    AttemptStatus::ACTIVE
        .map(|s| format!("'{}'", s.as_str()))
        .join(", ")
}

impl Store {
    /// Creates a campaign in `draft` and returns it.
    pub async fn create_campaign(&self, new: &NewCampaign) -> Result<Campaign, StoreError> {
        let campaign = Campaign {
            id: Uuid::now_v7().to_string(),
            name: new.name().to_string(),
            flow: new.flow().to_string(),
            caller_id: new.caller_id().to_string(),
            status: CampaignStatus::Draft,
            settings: new.settings().clone(),
            created_at: now_ms(),
        };
        let s = &campaign.settings;
        sqlx::query(&format!(
            "INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        ))
        .bind(campaign.id.as_str())
        .bind(campaign.name.as_str())
        .bind(campaign.flow.as_str())
        .bind(campaign.caller_id.as_str())
        .bind(campaign.status.as_str())
        .bind(i64::from(s.window.start()))
        .bind(i64::from(s.window.end()))
        .bind(i64::from(s.days_of_week.bits()))
        .bind(s.start_date.map(|d| d.to_string()))
        .bind(s.end_date.map(|d| d.to_string()))
        .bind(i64::from(s.max_attempts))
        .bind(i64::from(s.max_attempts_per_day))
        .bind(i64::from(s.retry.busy_minutes))
        .bind(i64::from(s.retry.no_answer_minutes))
        .bind(i64::from(s.retry.voicemail_minutes))
        .bind(i64::from(s.retry.failed_minutes))
        .bind(i64::from(s.max_concurrent))
        .bind(s.calls_per_second)
        .bind(s.voicemail.as_str())
        .bind(campaign.created_at)
        .execute(&self.pool)
        .await?;
        Ok(campaign)
    }

    pub async fn get_campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        sqlx::query(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(campaign)
            .transpose()
    }

    /// Every campaign, newest first.
    pub async fn list_campaigns(&self) -> Result<Vec<Campaign>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(campaign)
        .collect()
    }

    /// Moves a campaign to `next` if [`CampaignStatus::can_become`] allows it from where it is; the
    /// check and the change are one statement, so two racing requests cannot both pass.
    pub async fn set_campaign_status(
        &self,
        id: &str,
        next: CampaignStatus,
    ) -> Result<StatusChange, StoreError> {
        let from = CampaignStatus::predecessors(next);
        if !from.is_empty() {
            let allowed = from
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let done = sqlx::query(&format!(
                "UPDATE campaigns SET status = $2 WHERE id = $1 AND status IN ({allowed})"
            ))
            .bind(id)
            .bind(next.as_str())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() > 0 {
                return Ok(StatusChange::Changed);
            }
        }
        Ok(match self.get_campaign(id).await? {
            None => StatusChange::NotFound,
            Some(c) => StatusChange::NotAllowed { from: c.status },
        })
    }

    /// Marks a running campaign `completed` once every contact is done; `true` if it did.
    pub async fn complete_campaign_if_done(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE campaigns SET status = $2 WHERE id = $1 AND status = $3 \
             AND NOT EXISTS (SELECT 1 FROM contacts WHERE campaign_id = $1 AND state <> $4)",
        )
        .bind(id)
        .bind(CampaignStatus::Completed.as_str())
        .bind(CampaignStatus::Running.as_str())
        .bind(ContactState::Done.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds contacts to a campaign in one transaction (all or none). A phone number the campaign
    /// already has (from before, or earlier in `contacts`) is not inserted and is reported by its
    /// index. `None` if there is no such campaign.
    pub async fn import_contacts(
        &self,
        campaign_id: &str,
        contacts: &[NewContact],
    ) -> Result<Option<ImportResult>, StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT id FROM campaigns WHERE id = $1")
            .bind(campaign_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let now = now_ms();
        let mut result = ImportResult::default();
        for (index, c) in contacts.iter().enumerate() {
            let fields = serde_json::Value::Object(c.fields.clone()).to_string();
            let done = sqlx::query(
                "INSERT INTO contacts (id, campaign_id, name, phone, time_zone, consent, consent_source, \
                 fields, state, attempts, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10) \
                 ON CONFLICT (campaign_id, phone) DO NOTHING",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(campaign_id)
            .bind(c.name.as_str())
            .bind(c.phone.as_str())
            .bind(c.time_zone.as_deref())
            .bind(i64::from(c.consent))
            .bind(c.consent_source.as_deref())
            .bind(fields)
            .bind(ContactState::Pending.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                result.duplicates.push(index);
            } else {
                result.inserted += 1;
            }
        }
        tx.commit().await?;
        Ok(Some(result))
    }

    pub async fn get_contact(&self, id: &str) -> Result<Option<Contact>, StoreError> {
        sqlx::query(&format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(contact)
            .transpose()
    }

    /// Puts a number on the do-not-call list; `false` if it was already there (the first entry is
    /// kept).
    pub async fn add_dnc(
        &self,
        phone: &str,
        reason: Option<&str>,
        source: Option<&str>,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO dnc (phone, reason, source, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (phone) DO NOTHING",
        )
        .bind(phone)
        .bind(reason)
        .bind(source)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Takes a number off the list; `false` if it was not on it.
    pub async fn remove_dnc(&self, phone: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM dnc WHERE phone = $1")
            .bind(phone)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The whole list, by number.
    pub async fn list_dnc(&self) -> Result<Vec<DncEntry>, StoreError> {
        sqlx::query("SELECT phone, reason, source, added_at FROM dnc ORDER BY phone")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(DncEntry {
                    phone: row.try_get("phone")?,
                    reason: row.try_get("reason")?,
                    source: row.try_get("source")?,
                    added_at: row.try_get("added_at")?,
                })
            })
            .collect()
    }

    pub async fn is_dnc(&self, phone: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT phone FROM dnc WHERE phone = $1")
            .bind(phone)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Attempts of a campaign not finished yet (claimed, dialing, ringing, answered, in doubt).
    pub async fn active_attempts(&self, campaign_id: &str) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM attempts WHERE campaign_id = $1 AND status IN ({})",
            active_statuses_sql()
        ))
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Claims up to `limit` pending contacts due at `now` (earliest due first), and never more
    /// than the campaign's `max_concurrent` minus its active attempts: for each, in one
    /// transaction, an attempt row `claimed` with the next number, and the contact
    /// `in_progress`. See the module docs for why this is safe with several runtimes.
    pub async fn claim_due(
        &self,
        campaign_id: &str,
        now: Millis,
        limit: u32,
    ) -> Result<Vec<Claim>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let postgres = self.backend() == "postgres";
        let mut tx = self.begin_write().await?;
        let lock = if postgres { " FOR UPDATE" } else { "" };
        let Some(row) = sqlx::query(&format!(
            "SELECT max_concurrent FROM campaigns WHERE id = $1{lock}"
        ))
        .bind(campaign_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Vec::new());
        };
        let max_concurrent: i64 = row.try_get(0)?;
        let active: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM attempts WHERE campaign_id = $1 AND status IN ({})",
            active_statuses_sql()
        ))
        .bind(campaign_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let room = (max_concurrent - active).clamp(0, i64::from(limit));
        if room == 0 {
            return Ok(Vec::new());
        }

        let skip_locked = if postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let rows = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE campaign_id = $1 AND state = $2 \
             AND (next_attempt_at IS NULL OR next_attempt_at <= $3) \
             ORDER BY COALESCE(next_attempt_at, 0), id LIMIT $4{skip_locked}"
        ))
        .bind(campaign_id)
        .bind(ContactState::Pending.as_str())
        .bind(now)
        .bind(room)
        .fetch_all(&mut *tx)
        .await?;

        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let contact = contact(row)?;
            let number = contact.attempts + 1;
            let attempt_id = Uuid::now_v7().to_string();
            sqlx::query(
                "INSERT INTO attempts (id, contact_id, campaign_id, number, status, claimed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(attempt_id.as_str())
            .bind(contact.id.as_str())
            .bind(campaign_id)
            .bind(i64::from(number))
            .bind(AttemptStatus::Claimed.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE contacts SET state = $2, attempts = $3 WHERE id = $1")
                .bind(contact.id.as_str())
                .bind(ContactState::InProgress.as_str())
                .bind(i64::from(number))
                .execute(&mut *tx)
                .await?;
            let previous_attempts = sqlx::query(
                "SELECT claimed_at FROM attempts WHERE contact_id = $1 AND number < $2 ORDER BY number",
            )
            .bind(contact.id.as_str())
            .bind(i64::from(number))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<Vec<Millis>, _>>()?;
            claims.push(Claim {
                attempt_id,
                number,
                claimed_at: now,
                contact,
                previous_attempts,
            });
        }
        tx.commit().await?;
        Ok(claims)
    }

    /// Gives a claim back without dialing: the attempt row is deleted (nothing was dialed, so it
    /// does not count) and the contact goes back to pending or is finished, as `release` says;
    /// the decision is logged in the same transaction. `false` if the attempt was no longer a
    /// claim (another runtime released it as stale).
    pub async fn release_claim(
        &self,
        attempt_id: &str,
        release: &Release,
        decision: &NewDecision,
    ) -> Result<bool, StoreError> {
        self.give_back(attempt_id, AttemptStatus::Claimed, release, decision)
            .await
    }

    /// Gives back an attempt marked `dialing` that the provider certainly did not place (it refused
    /// the request for now: rate limited), like [`Store::release_claim`]: the attempt does not count,
    /// and the contact is due again at `at`. `false` if the attempt is not such an attempt (it has a
    /// provider call id, or was settled meanwhile).
    pub async fn release_unplaced(
        &self,
        attempt_id: &str,
        at: Millis,
        decision: &NewDecision,
    ) -> Result<bool, StoreError> {
        self.give_back(
            attempt_id,
            AttemptStatus::Dialing,
            &Release::Retry { at: Some(at) },
            decision,
        )
        .await
    }

    async fn give_back(
        &self,
        attempt_id: &str,
        status: AttemptStatus,
        release: &Release,
        decision: &NewDecision,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "DELETE FROM attempts WHERE id = $1 AND status = $2 AND provider_call_id IS NULL \
             RETURNING contact_id, campaign_id",
        )
        .bind(attempt_id)
        .bind(status.as_str())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let contact_id: String = row.try_get("contact_id")?;
        let campaign_id: String = row.try_get("campaign_id")?;
        match release {
            Release::Retry { at } => {
                sqlx::query(
                    "UPDATE contacts SET state = $2, attempts = attempts - 1, \
                     next_attempt_at = COALESCE($3, next_attempt_at) WHERE id = $1",
                )
                .bind(contact_id.as_str())
                .bind(ContactState::Pending.as_str())
                .bind(*at)
                .execute(&mut *tx)
                .await?;
            }
            Release::Final { outcome } => {
                sqlx::query(
                    "UPDATE contacts SET state = $2, attempts = attempts - 1, final_outcome = $3, \
                     next_attempt_at = NULL WHERE id = $1",
                )
                .bind(contact_id.as_str())
                .bind(ContactState::Done.as_str())
                .bind(outcome.as_str())
                .execute(&mut *tx)
                .await?;
            }
        }
        insert_decision(&mut tx, &campaign_id, &contact_id, decision).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a claimed attempt `dialing`, with the decision to dial, just before the provider is
    /// asked to place the call. `false` if it was no longer a claim: the caller must not dial.
    pub async fn mark_dialing(&self, attempt_id: &str, decision: &NewDecision) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "UPDATE attempts SET status = $2, dialed_at = $3 WHERE id = $1 AND status = $4 \
             RETURNING contact_id, campaign_id",
        )
        .bind(attempt_id)
        .bind(AttemptStatus::Dialing.as_str())
        .bind(decision.at)
        .bind(AttemptStatus::Claimed.as_str())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(false);
        };
        let contact_id: String = row.try_get("contact_id")?;
        let campaign_id: String = row.try_get("campaign_id")?;
        insert_decision(&mut tx, &campaign_id, &contact_id, decision).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records the provider's id of a dialed (or reconciled) attempt; it is `dialing` until the
    /// provider reports more. `false` if the attempt is not waiting for one (it has finished, or a
    /// reconciliation already decided it).
    pub async fn set_attempt_provider_id(
        &self,
        attempt_id: &str,
        provider_call_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE attempts SET provider_call_id = $2, status = $3 \
             WHERE id = $1 AND status IN ($3, $4) AND provider_call_id IS NULL",
        )
        .bind(attempt_id)
        .bind(provider_call_id)
        .bind(AttemptStatus::Dialing.as_str())
        .bind(AttemptStatus::InDoubt.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The provider could not say whether it placed the call (a 5xx, a timeout): the attempt is
    /// `in_doubt` until reconciled. `false` if it was not dialing.
    pub async fn mark_in_doubt(&self, attempt_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE attempts SET status = $2 WHERE id = $1 AND status = $3 AND provider_call_id IS NULL",
        )
        .bind(attempt_id)
        .bind(AttemptStatus::InDoubt.as_str())
        .bind(AttemptStatus::Dialing.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Progress the provider reported while the call is live (`ringing`, `answered`); it never
    /// moves a finished attempt back. `false` if nothing changed.
    pub async fn set_attempt_progress(
        &self,
        attempt_id: &str,
        status: AttemptStatus,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE attempts SET status = $2 WHERE id = $1 AND status IN ($3, $4, $5, $6)")
                .bind(attempt_id)
                .bind(status.as_str())
                .bind(AttemptStatus::Dialing.as_str())
                .bind(AttemptStatus::Ringing.as_str())
                .bind(AttemptStatus::Answered.as_str())
                .bind(AttemptStatus::InDoubt.as_str())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Links an attempt to the call log's record of its call.
    pub async fn set_attempt_call_id(&self, attempt_id: &str, call_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE attempts SET call_id = $2 WHERE id = $1")
            .bind(attempt_id)
            .bind(call_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn get_attempt(&self, id: &str) -> Result<Option<Attempt>, StoreError> {
        sqlx::query(&format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(attempt)
            .transpose()
    }

    /// The attempt the provider knows by this id.
    pub async fn attempt_by_provider_id(
        &self,
        provider_call_id: &str,
    ) -> Result<Option<Attempt>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE provider_call_id = $1 ORDER BY id DESC LIMIT 1"
        ))
        .bind(provider_call_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(attempt)
        .transpose()
    }

    /// Records how an attempt ended and moves its contact on, in one transaction: `done` when the
    /// outcome is final ([`is_final`]) or the contact has had `max_attempts` (then `unreachable`
    /// unless an outcome says more), otherwise `pending` again after the retry delay for the
    /// result. An `opted_out` outcome puts the number on the do-not-call list in the same
    /// transaction. A repeated report for an attempt already finished changes nothing.
    /// `None` if there is no such attempt.
    pub async fn finish_attempt(
        &self,
        attempt_id: &str,
        result: AttemptResult,
        outcome: Option<&str>,
        slots: &serde_json::Map<String, serde_json::Value>,
        now: Millis,
    ) -> Result<Option<Finished>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(&format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = $1"))
            .bind(attempt_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let current = attempt(&row)?;
        let Some(row) = sqlx::query(&format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = $1"))
            .bind(current.contact_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let contact = contact(&row)?;
        if current.status == AttemptStatus::Claimed {
            // Never dialed: there is no call whose end could be reported.
            return Ok(None);
        }
        if !current.status.is_active() {
            return Ok(Some(Finished {
                contact_id: contact.id,
                state: contact.state,
                final_outcome: contact.final_outcome,
                next_attempt_at: contact.next_attempt_at,
                added_to_dnc: false,
                already_finished: true,
            }));
        }
        // Only an active attempt is finished, so two racing reports cannot both apply.
        let done = sqlx::query(&format!(
            "UPDATE attempts SET status = $2, outcome = $3, slots = $4, ended_at = $5 \
             WHERE id = $1 AND status IN ({})",
            active_statuses_sql()
        ))
        .bind(attempt_id)
        .bind(result.status().as_str())
        .bind(outcome)
        .bind(serde_json::Value::Object(slots.clone()).to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }

        let row = sqlx::query("SELECT max_attempts, retry_busy_minutes, retry_no_answer_minutes, retry_voicemail_minutes, retry_failed_minutes FROM campaigns WHERE id = $1")
            .bind(current.campaign_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let max_attempts: i64 = row.try_get("max_attempts")?;
        let retry = RetryDelays {
            busy_minutes: u32_column(&row, "retry_busy_minutes")?,
            no_answer_minutes: u32_column(&row, "retry_no_answer_minutes")?,
            voicemail_minutes: u32_column(&row, "retry_voicemail_minutes")?,
            failed_minutes: u32_column(&row, "retry_failed_minutes")?,
        };

        let mut added_to_dnc = false;
        if outcome == Some(OPTED_OUT) {
            let added = sqlx::query(
                "INSERT INTO dnc (phone, reason, source, added_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (phone) DO NOTHING",
            )
            .bind(contact.phone.as_str())
            .bind(OPTED_OUT)
            .bind(format!("campaign {} attempt {attempt_id}", current.campaign_id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            added_to_dnc = added.rows_affected() > 0;
        }

        let (state, final_outcome, next_attempt_at) = if is_final(result, outcome) {
            (ContactState::Done, outcome.map(str::to_string), None)
        } else if i64::from(current.number) >= max_attempts {
            (ContactState::Done, Some(UNREACHABLE.to_string()), None)
        } else {
            let delay = i64::from(retry.after(result)) * MS_PER_MINUTE;
            (ContactState::Pending, None, Some(now + delay))
        };
        sqlx::query("UPDATE contacts SET state = $2, final_outcome = $3, next_attempt_at = $4 WHERE id = $1")
            .bind(contact.id.as_str())
            .bind(state.as_str())
            .bind(final_outcome.as_deref())
            .bind(next_attempt_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Finished {
            contact_id: contact.id,
            state,
            final_outcome,
            next_attempt_at,
            added_to_dnc,
            already_finished: false,
        }))
    }

    /// Attempts whose call may or may not have been placed, dialed before `dialed_before`: those
    /// marked `in_doubt`, and those left `dialing` without a provider id by a runtime that
    /// stopped. The cut-off leaves alone the dials another live runtime is making right now.
    pub async fn in_doubt_attempts(
        &self,
        campaign_id: &str,
        dialed_before: Millis,
    ) -> Result<Vec<InDoubt>, StoreError> {
        let columns = ATTEMPT_COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query(&format!(
            "SELECT {columns}, c.phone FROM attempts a JOIN contacts c ON c.id = a.contact_id \
             WHERE a.campaign_id = $1 AND a.status IN ($2, $3) AND a.provider_call_id IS NULL \
             AND a.dialed_at < $4 ORDER BY a.dialed_at, a.id"
        ))
        .bind(campaign_id)
        .bind(AttemptStatus::Dialing.as_str())
        .bind(AttemptStatus::InDoubt.as_str())
        .bind(dialed_before)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(InDoubt {
                attempt: attempt(row)?,
                phone: row.try_get("phone")?,
            })
        })
        .collect()
    }

    /// Attempts dialed before `dialed_before` that have a provider call and no result yet
    /// (`dialing`, `ringing`, `answered`): normally calls in progress, but also calls whose end
    /// was reported while no runtime was there to hear it. The scheduler asks the provider.
    pub async fn live_attempts(
        &self,
        campaign_id: &str,
        dialed_before: Millis,
    ) -> Result<Vec<Attempt>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = $1 \
             AND status IN ($2, $3, $4) AND provider_call_id IS NOT NULL AND dialed_at < $5 \
             ORDER BY dialed_at, id"
        ))
        .bind(campaign_id)
        .bind(AttemptStatus::Dialing.as_str())
        .bind(AttemptStatus::Ringing.as_str())
        .bind(AttemptStatus::Answered.as_str())
        .bind(dialed_before)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(attempt)
        .collect()
    }

    /// Gives back the claims made before `claimed_before` that never got to `dialing` (their
    /// runtime stopped between claiming and deciding): nothing was sent to the provider, so the
    /// attempt rows are deleted and the contacts are pending again. Returns how many.
    pub async fn release_stale_claims(
        &self,
        campaign_id: &str,
        claimed_before: Millis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "DELETE FROM attempts WHERE campaign_id = $1 AND status = $2 AND claimed_at < $3 \
             RETURNING contact_id",
        )
        .bind(campaign_id)
        .bind(AttemptStatus::Claimed.as_str())
        .bind(claimed_before)
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let contact_id: String = row.try_get(0)?;
            sqlx::query("UPDATE contacts SET state = $2, attempts = attempts - 1 WHERE id = $1")
                .bind(contact_id)
                .bind(ContactState::Pending.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Every contact of a campaign (in import order) with its attempts, oldest first.
    pub async fn results(&self, campaign_id: &str) -> Result<Vec<ContactResult>, StoreError> {
        let contacts = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE campaign_id = $1 ORDER BY created_at, id"
        ))
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?;
        let attempts = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE campaign_id = $1 ORDER BY contact_id, number"
        ))
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?;
        let mut by_contact: std::collections::HashMap<String, Vec<Attempt>> =
            std::collections::HashMap::new();
        for row in &attempts {
            let a = attempt(row)?;
            by_contact.entry(a.contact_id.clone()).or_default().push(a);
        }
        contacts
            .iter()
            .map(|row| {
                let contact = contact(row)?;
                let attempts = by_contact.remove(&contact.id).unwrap_or_default();
                Ok(ContactResult { contact, attempts })
            })
            .collect()
    }

    /// Contacts by state and final outcome.
    pub async fn progress(&self, campaign_id: &str) -> Result<Progress, StoreError> {
        let rows = sqlx::query(
            "SELECT state, final_outcome, COUNT(*) AS contacts FROM contacts WHERE campaign_id = $1 \
             GROUP BY state, final_outcome",
        )
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?;
        let mut p = Progress::default();
        for row in &rows {
            let state: ContactState = text_enum(row, "state")?;
            let n: i64 = row.try_get("contacts")?;
            p.total += n;
            match state {
                ContactState::Pending => p.pending += n,
                ContactState::InProgress => p.in_progress += n,
                ContactState::Done => {
                    p.done += n;
                    let outcome: Option<String> = row.try_get("final_outcome")?;
                    match p.outcomes.iter_mut().find(|o| o.outcome == outcome) {
                        Some(o) => o.contacts += n,
                        None => p.outcomes.push(ContactOutcomeCount { outcome, contacts: n }),
                    }
                }
            }
        }
        p.outcomes.sort_by(|a, b| {
            b.contacts
                .cmp(&a.contacts)
                .then_with(|| a.outcome.is_none().cmp(&b.outcome.is_none()))
                .then_with(|| a.outcome.cmp(&b.outcome))
        });
        p.attempts = sqlx::query("SELECT COUNT(*) FROM attempts WHERE campaign_id = $1")
            .bind(campaign_id)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(p)
    }

    /// The scheduler's decisions for a campaign (or one of its contacts), oldest first.
    pub async fn decisions(
        &self,
        campaign_id: &str,
        contact_id: Option<&str>,
    ) -> Result<Vec<SchedulerDecision>, StoreError> {
        let columns = "id, campaign_id, contact_id, at, decision, reason, detail, retry_at";
        let rows =
            match contact_id {
                Some(contact_id) => sqlx::query(&format!(
                    "SELECT {columns} FROM scheduler_decisions WHERE campaign_id = $1 AND contact_id = $2 \
                     ORDER BY at, id"
                ))
                .bind(campaign_id)
                .bind(contact_id)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query(&format!(
                        "SELECT {columns} FROM scheduler_decisions WHERE campaign_id = $1 ORDER BY at, id"
                    ))
                    .bind(campaign_id)
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        rows.iter()
            .map(|row| {
                Ok(SchedulerDecision {
                    id: row.try_get("id")?,
                    campaign_id: row.try_get("campaign_id")?,
                    contact_id: row.try_get("contact_id")?,
                    at: row.try_get("at")?,
                    decision: text_enum(row, "decision")?,
                    reason: row.try_get("reason")?,
                    detail: row.try_get("detail")?,
                    retry_at: row.try_get("retry_at")?,
                })
            })
            .collect()
    }
}

async fn insert_decision(
    tx: &mut Transaction<'static, Any>,
    campaign_id: &str,
    contact_id: &str,
    d: &NewDecision,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO scheduler_decisions (id, campaign_id, contact_id, at, decision, reason, detail, retry_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(campaign_id)
    .bind(contact_id)
    .bind(d.at)
    .bind(d.kind.as_str())
    .bind(d.reason.as_str())
    .bind(d.detail.as_str())
    .bind(d.retry_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn text_enum<T: std::str::FromStr<Err = UnknownVariant>>(
    row: &AnyRow,
    column: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|e: UnknownVariant| StoreError::corrupt(format!("{column}: {e}")))
}

fn u32_column(row: &AnyRow, column: &str) -> Result<u32, StoreError> {
    let n: i64 = row.try_get(column)?;
    u32::try_from(n).map_err(|_| StoreError::corrupt(format!("{column}: {n} out of range")))
}

fn json_object(row: &AnyRow, column: &str) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::corrupt(format!("{column}: {e}")))
}

fn date_column(row: &AnyRow, column: &str) -> Result<Option<jiff::civil::Date>, StoreError> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| {
        t.parse()
            .map_err(|e| StoreError::corrupt(format!("{column} `{t}`: {e}")))
    })
    .transpose()
}

fn campaign(row: &AnyRow) -> Result<Campaign, StoreError> {
    let minute = |column: &str| -> Result<u16, StoreError> {
        let n: i64 = row.try_get(column)?;
        u16::try_from(n).map_err(|_| StoreError::corrupt(format!("{column}: {n}")))
    };
    let window = CallingWindow::new(minute("window_start")?, minute("window_end")?)
        .map_err(|e| StoreError::corrupt(e.to_string()))?;
    let days: i64 = row.try_get("days_of_week")?;
    let days_of_week = u8::try_from(days)
        .map_err(|_| StoreError::corrupt(format!("days_of_week: {days}")))
        .and_then(|d| DaysOfWeek::from_bits(d).map_err(|e| StoreError::corrupt(e.to_string())))?;
    let voicemail: VoicemailAction = text_enum(row, "voicemail_action")?;
    Ok(Campaign {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        flow: row.try_get("flow")?,
        caller_id: row.try_get("caller_id")?,
        status: text_enum(row, "status")?,
        settings: CampaignSettings {
            window,
            days_of_week,
            start_date: date_column(row, "start_date")?,
            end_date: date_column(row, "end_date")?,
            max_attempts: u32_column(row, "max_attempts")?,
            max_attempts_per_day: u32_column(row, "max_attempts_per_day")?,
            retry: RetryDelays {
                busy_minutes: u32_column(row, "retry_busy_minutes")?,
                no_answer_minutes: u32_column(row, "retry_no_answer_minutes")?,
                voicemail_minutes: u32_column(row, "retry_voicemail_minutes")?,
                failed_minutes: u32_column(row, "retry_failed_minutes")?,
            },
            max_concurrent: u32_column(row, "max_concurrent")?,
            calls_per_second: row.try_get("calls_per_second")?,
            voicemail,
        },
        created_at: row.try_get("created_at")?,
    })
}

fn contact(row: &AnyRow) -> Result<Contact, StoreError> {
    let consent: i64 = row.try_get("consent")?;
    Ok(Contact {
        id: row.try_get("id")?,
        campaign_id: row.try_get("campaign_id")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        time_zone: row.try_get("time_zone")?,
        consent: consent != 0,
        consent_source: row.try_get("consent_source")?,
        fields: json_object(row, "fields")?,
        state: text_enum(row, "state")?,
        final_outcome: row.try_get("final_outcome")?,
        attempts: u32_column(row, "attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
    })
}

fn attempt(row: &AnyRow) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        id: row.try_get("id")?,
        contact_id: row.try_get("contact_id")?,
        campaign_id: row.try_get("campaign_id")?,
        number: u32_column(row, "number")?,
        status: text_enum(row, "status")?,
        claimed_at: row.try_get("claimed_at")?,
        dialed_at: row.try_get("dialed_at")?,
        provider_call_id: row.try_get("provider_call_id")?,
        call_id: row.try_get("call_id")?,
        outcome: row.try_get("outcome")?,
        slots: json_object(row, "slots")?,
        ended_at: row.try_get("ended_at")?,
    })
}
