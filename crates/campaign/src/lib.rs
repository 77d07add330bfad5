//! Outbound campaigns: contact import, the calling rules, and the scheduler that places the calls.
//!
//! - [`import`] turns a CSV contact list into contacts (E.164 numbers, IANA zones, consent) with a
//!   report of every row refused; [`phone`] holds the number type and the zone tables.
//! - [`rules`] is the pure decision "may this contact be called now?", so every rule is tested
//!   without a database or a clock.
//! - [`scheduler`] claims, decides, dials and reconciles; it is generic over a [`Dialer`], a
//!   [`Reconciler`] and a [`Clock`], so the provider's REST API and real time are wired in only by
//!   the server, and tests run a whole campaign with fakes in a fraction of a second.
//! - [`export`] writes a campaign's results as CSV.
//! - [`settings`] and [`manage`] are what the API and the CLI share: a campaign as people write it
//!   (`09:00-20:00`, `mon-fri`), and the status changes they may ask for.
//!
//! Why it is built this way:
//! - **Claims are rows, not memory.** The next contacts are taken in a database transaction that
//!   inserts the attempt (`claimed`, with its number) and marks the contact in progress
//!   (`switchboard_store::Store::claim_due`; `FOR UPDATE SKIP LOCKED` on PostgreSQL). A runtime
//!   that stops loses nothing and two runtimes cannot take the same contact, because the state
//!   that says "taken" is the same row both would have to change, and `UNIQUE (contact_id,
//!   number)` forbids a second attempt with the same number outright.
//! - **In-doubt attempts are reconciled, never retried blindly.** The attempt is marked `dialing`
//!   before the request to the provider and gets the provider's id after it. If the runtime dies
//!   in between, or the provider answers with a 5xx or not at all, the call may exist: redialing
//!   would ring a customer twice for one attempt. So the provider's call list is asked (by number
//!   and start time): a call found is followed like any other; none found means the attempt
//!   failed, which counts and is retried after the campaign's delay. A claim that never reached
//!   `dialing` was never sent and is simply given back.
//! - **An unknown time zone means no call.** The calling window protects people from calls at
//!   night; a guessed zone could put a call at 6 AM. Zones are taken from the list, or derived
//!   only where the number or state leaves no doubt, and a contact without one is reported at
//!   import and skipped (finally, with the reason logged) by the scheduler.
//! - **Every decision is logged with its reason**, in the same transaction as its effect, so the
//!   question "why was this person (not) called at 8:05?" has an answer in the database.
//! - Opt-outs reach the do-not-call list in the transaction that records the call's outcome.

pub mod export;
pub mod import;
pub mod manage;
pub mod phone;
pub mod rules;
pub mod scheduler;
pub mod settings;

use std::io::Read;

pub use import::{ImportError, ParsedContacts, RejectedRow, parse_contacts};
pub use manage::{Action, change_status, importable};
pub use phone::{PhoneError, PhoneNumber};
pub use rules::{Decision, SkipReason, decide};
pub use scheduler::{
    Clock, DialError, DialRequest, DialStarted, Dialer, Reconciler, Scheduler, SchedulerConfig, SystemClock,
    TickReport, record_call_result,
};
use serde::Serialize;
use switchboard_store::{CampaignStatus, Store, StoreError};

/// Why a campaign operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no campaign with id `{id}`")]
    UnknownCampaign { id: String },
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The campaign's status does not allow what was asked (a finished campaign takes no
    /// contacts and never starts again).
    #[error("cannot {action} campaign `{id}`: it is {status}")]
    NotAllowed {
        id: String,
        action: &'static str,
        status: CampaignStatus,
    },
}

/// What importing a list did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub imported: usize,
    /// Rows not imported: unreadable, invalid, or a number the campaign already has.
    pub rejected: Vec<RejectedRow>,
    /// Lines of contacts imported without a time zone: they will not be called.
    pub without_time_zone: Vec<u64>,
}

/// Reads a CSV contact list ([`import`]) and adds it to a campaign in one transaction; a
/// cancelled or completed campaign takes none ([`importable`]).
pub async fn import_csv(
    store: &Store,
    campaign_id: &str,
    csv: impl Read,
) -> Result<ImportReport, CampaignError> {
    importable(store, campaign_id).await?;
    import_parsed(store, campaign_id, parse_contacts(csv)?).await
}

/// Adds contacts read by [`parse_contacts`] to a campaign in one transaction. Apart from
/// [`import_csv`] so that a server can parse a large list off its async workers.
pub async fn import_parsed(
    store: &Store,
    campaign_id: &str,
    parsed: ParsedContacts,
) -> Result<ImportReport, CampaignError> {
    let without_time_zone = parsed.without_time_zone();
    let contacts: Vec<_> = parsed.contacts.iter().map(|(_, c)| c.clone()).collect();
    let result = store
        .import_contacts(campaign_id, &contacts)
        .await?
        .ok_or_else(|| CampaignError::UnknownCampaign {
            id: campaign_id.to_string(),
        })?;
    let mut rejected = parsed.rejected;
    for index in &result.duplicates {
        if let Some((line, c)) = parsed.contacts.get(*index) {
            rejected.push(RejectedRow {
                line: *line,
                reason: format!("{} is already in the campaign", c.phone),
            });
        }
    }
    rejected.sort_by_key(|r| r.line);
    let rejected_lines: Vec<u64> = rejected.iter().map(|r| r.line).collect();
    Ok(ImportReport {
        imported: result.inserted,
        rejected,
        without_time_zone: without_time_zone
            .into_iter()
            .filter(|l| !rejected_lines.contains(l))
            .collect(),
    })
}
