//! The rows of outbound campaigns: campaigns and their settings, contacts, attempts, the
//! do-not-call list and the scheduler's decisions.
//!
//! Settings are parsed into types that cannot hold a value the rules forbid (a window outside
//! 08:00–21:00, no calling day, zero attempts): [`NewCampaign::new`] is the one place they are
//! checked, so the store never writes a campaign it would refuse to run.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Millis;

/// Minutes since local midnight.
pub type Minute = u16;

/// The earliest a contact may ever be called, local time: 08:00.
pub const EARLIEST_CALL_MINUTE: Minute = 8 * 60;
/// The latest a call may start, local time: 21:00 (exclusive).
pub const LATEST_CALL_MINUTE: Minute = 21 * 60;

/// A calling window in the contact's local time: `start` inclusive, `end` exclusive, always within
/// 08:00–21:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "(Minute, Minute)", into = "(Minute, Minute)")]
pub struct CallingWindow {
    start: Minute,
    end: Minute,
}

impl CallingWindow {
    /// 09:00–20:00.
    pub const DEFAULT: CallingWindow = CallingWindow {
        start: 9 * 60,
        end: 20 * 60,
    };

    pub fn new(start: Minute, end: Minute) -> Result<CallingWindow, SettingsError> {
        if start < EARLIEST_CALL_MINUTE || end > LATEST_CALL_MINUTE {
            return Err(SettingsError::WindowOutOfBounds { start, end });
        }
        if start >= end {
            return Err(SettingsError::EmptyWindow { start, end });
        }
        Ok(CallingWindow { start, end })
    }

    pub fn start(self) -> Minute {
        self.start
    }

    pub fn end(self) -> Minute {
        self.end
    }

    /// Whether a local minute of the day falls inside.
    pub fn contains(self, minute: Minute) -> bool {
        (self.start..self.end).contains(&minute)
    }
}

impl Default for CallingWindow {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<(Minute, Minute)> for CallingWindow {
    type Error = SettingsError;

    fn try_from((start, end): (Minute, Minute)) -> Result<Self, SettingsError> {
        CallingWindow::new(start, end)
    }
}

impl From<CallingWindow> for (Minute, Minute) {
    fn from(w: CallingWindow) -> Self {
        (w.start, w.end)
    }
}

impl fmt::Display for CallingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}–{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// The days of the week calls may be placed on, as a bitmask: bit 0 = Monday … bit 6 = Sunday
/// (ISO order). Never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct DaysOfWeek(u8);

impl DaysOfWeek {
    /// Monday to Friday.
    pub const WEEKDAYS: DaysOfWeek = DaysOfWeek(0b001_1111);
    /// Every day.
    pub const ALL: DaysOfWeek = DaysOfWeek(0b111_1111);

    pub fn from_bits(bits: u8) -> Result<DaysOfWeek, SettingsError> {
        if bits == 0 || bits > Self::ALL.0 {
            return Err(SettingsError::BadDaysOfWeek {
                bits: i64::from(bits),
            });
        }
        Ok(DaysOfWeek(bits))
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether calls may be placed on `day`.
    pub fn allows(self, day: jiff::civil::Weekday) -> bool {
        let bit = day.to_monday_zero_offset();
        self.0 & (1 << bit) != 0
    }
}

impl Default for DaysOfWeek {
    fn default() -> Self {
        Self::WEEKDAYS
    }
}

impl TryFrom<u8> for DaysOfWeek {
    type Error = SettingsError;

    fn try_from(bits: u8) -> Result<Self, SettingsError> {
        DaysOfWeek::from_bits(bits)
    }
}

impl From<DaysOfWeek> for u8 {
    fn from(d: DaysOfWeek) -> u8 {
        d.0
    }
}

/// How long to wait before the next attempt, by the result of the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryDelays {
    pub busy_minutes: u32,
    pub no_answer_minutes: u32,
    pub voicemail_minutes: u32,
    pub failed_minutes: u32,
}

impl RetryDelays {
    /// The delay after a result; a completed call that reached no final outcome (the line dropped)
    /// is retried like a failed one.
    pub fn after(&self, result: AttemptResult) -> u32 {
        match result {
            AttemptResult::Busy => self.busy_minutes,
            AttemptResult::NoAnswer => self.no_answer_minutes,
            AttemptResult::Voicemail => self.voicemail_minutes,
            AttemptResult::Failed | AttemptResult::Completed => self.failed_minutes,
        }
    }
}

impl Default for RetryDelays {
    fn default() -> Self {
        RetryDelays {
            busy_minutes: 15,
            no_answer_minutes: 120,
            voicemail_minutes: 240,
            failed_minutes: 60,
        }
    }
}

/// What a campaign does when a machine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoicemailAction {
    /// Play the flow's voicemail message after the beep.
    LeaveMessage,
    HangUp,
}

/// The rules a campaign calls by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSettings {
    pub window: CallingWindow,
    pub days_of_week: DaysOfWeek,
    /// First and last calling day (inclusive), in the contact's local time.
    #[serde(with = "opt_date")]
    pub start_date: Option<jiff::civil::Date>,
    #[serde(with = "opt_date")]
    pub end_date: Option<jiff::civil::Date>,
    /// Attempts per contact in total.
    pub max_attempts: u32,
    /// Attempts per contact in one of the contact's local days.
    pub max_attempts_per_day: u32,
    pub retry: RetryDelays,
    pub max_concurrent: u32,
    pub calls_per_second: f64,
    pub voicemail: VoicemailAction,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        CampaignSettings {
            window: CallingWindow::DEFAULT,
            days_of_week: DaysOfWeek::WEEKDAYS,
            start_date: None,
            end_date: None,
            max_attempts: 3,
            max_attempts_per_day: 2,
            retry: RetryDelays::default(),
            max_concurrent: 5,
            calls_per_second: 1.0,
            voicemail: VoicemailAction::LeaveMessage,
        }
    }
}

impl CampaignSettings {
    /// The checks the field types cannot make alone.
    pub fn check(&self) -> Result<(), SettingsError> {
        if let (Some(start), Some(end)) = (self.start_date, self.end_date)
            && start > end
        {
            return Err(SettingsError::DatesReversed { start, end });
        }
        if self.max_attempts == 0 {
            return Err(SettingsError::Zero { what: "max_attempts" });
        }
        if self.max_attempts_per_day == 0 {
            return Err(SettingsError::Zero {
                what: "max_attempts_per_day",
            });
        }
        if self.max_concurrent == 0 {
            return Err(SettingsError::Zero {
                what: "max_concurrent",
            });
        }
        if !(self.calls_per_second.is_finite() && self.calls_per_second > 0.0) {
            return Err(SettingsError::BadRate {
                calls_per_second: self.calls_per_second,
            });
        }
        Ok(())
    }
}

/// A campaign's settings that break a rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("calling window {start}..{end} (minutes) is outside 08:00–21:00")]
    WindowOutOfBounds { start: Minute, end: Minute },
    #[error("calling window {start}..{end} (minutes) is empty")]
    EmptyWindow { start: Minute, end: Minute },
    #[error("days of week bitmask {bits} must name at least one day and only bits 0–6")]
    BadDaysOfWeek { bits: i64 },
    #[error("start date {start} is after end date {end}")]
    DatesReversed {
        start: jiff::civil::Date,
        end: jiff::civil::Date,
    },
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("calls per second must be a positive number, not {calls_per_second}")]
    BadRate { calls_per_second: f64 },
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
}

/// A campaign to create: only [`NewCampaign::new`] makes one, so its settings have been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCampaign {
    name: String,
    flow: String,
    caller_id: String,
    settings: CampaignSettings,
}

impl NewCampaign {
    pub fn new(
        name: impl Into<String>,
        flow: impl Into<String>,
        caller_id: impl Into<String>,
        settings: CampaignSettings,
    ) -> Result<NewCampaign, SettingsError> {
        let (name, flow, caller_id) = (name.into(), flow.into(), caller_id.into());
        for (what, value) in [("name", &name), ("flow", &flow), ("caller_id", &caller_id)] {
            if value.trim().is_empty() {
                return Err(SettingsError::Empty { what });
            }
        }
        settings.check()?;
        Ok(NewCampaign {
            name,
            flow,
            caller_id,
            settings,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn flow(&self) -> &str {
        &self.flow
    }

    pub fn caller_id(&self) -> &str {
        &self.caller_id
    }

    pub fn settings(&self) -> &CampaignSettings {
        &self.settings
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Running,
    Paused,
    Cancelled,
    Completed,
}

impl CampaignStatus {
    /// The statuses a campaign may come to `next` from: draft → running → paused ⇄ running;
    /// anything unfinished → cancelled; running → completed. Cancelled and completed are final.
    pub fn predecessors(next: CampaignStatus) -> &'static [CampaignStatus] {
        use CampaignStatus::*;
        match next {
            Draft => &[],
            Running => &[Draft, Paused],
            Paused => &[Running],
            Cancelled => &[Draft, Running, Paused],
            Completed => &[Running],
        }
    }

    pub fn can_become(self, next: CampaignStatus) -> bool {
        Self::predecessors(next).contains(&self)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub flow: String,
    pub caller_id: String,
    pub status: CampaignStatus,
    pub settings: CampaignSettings,
    pub created_at: Millis,
}

/// What [`crate::Store::set_campaign_status`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Changed,
    NotFound,
    /// The campaign is in a status it cannot leave for the one asked (a finished campaign never
    /// starts again).
    NotAllowed {
        from: CampaignStatus,
    },
}

/// A contact to import. The phone number and time zone are expected to be checked already (the
/// campaign crate parses them); the store only keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct NewContact {
    pub name: String,
    /// E.164.
    pub phone: String,
    /// IANA name; `None` when it is unknown (such a contact is never called).
    pub time_zone: Option<String>,
    pub consent: bool,
    pub consent_source: Option<String>,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// What an import did: the indexes (into the slice given) of the contacts not inserted because
/// the campaign already had their phone number (earlier, or earlier in the same batch).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportResult {
    pub inserted: usize,
    pub duplicates: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactState {
    /// Waiting for its next attempt (due at `next_attempt_at`).
    Pending,
    /// Claimed by a scheduler: an attempt is being decided, dialed or is on the line.
    InProgress,
    /// Finished: `final_outcome` says how.
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub id: String,
    pub campaign_id: String,
    pub name: String,
    pub phone: String,
    pub time_zone: Option<String>,
    pub consent: bool,
    pub consent_source: Option<String>,
    /// Custom fields from the contact list, for the flow.
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub state: ContactState,
    pub final_outcome: Option<String>,
    /// Attempts made so far (claims released without a dial are not counted).
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    /// A scheduler took the contact; nothing was sent to the provider yet.
    Claimed,
    /// About to be, or being, sent to the provider (written before the request).
    Dialing,
    Ringing,
    Answered,
    Completed,
    Busy,
    NoAnswer,
    Voicemail,
    Failed,
    /// The provider may or may not have placed the call (it timed out or failed with a 5xx, or
    /// the runtime stopped mid-request): to be reconciled against the provider's call list.
    InDoubt,
}

impl AttemptStatus {
    /// Attempts not finished yet; they count against a campaign's concurrency.
    pub const ACTIVE: [AttemptStatus; 5] = [
        AttemptStatus::Claimed,
        AttemptStatus::Dialing,
        AttemptStatus::Ringing,
        AttemptStatus::Answered,
        AttemptStatus::InDoubt,
    ];

    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }
}

/// How an attempt ended, as the provider (or the call) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// A person answered and the flow ran; its outcome says what came of it.
    Completed,
    Busy,
    NoAnswer,
    /// A machine answered (a message may have been left, as the campaign says).
    Voicemail,
    Failed,
}

impl AttemptResult {
    pub fn status(self) -> AttemptStatus {
        match self {
            AttemptResult::Completed => AttemptStatus::Completed,
            AttemptResult::Busy => AttemptStatus::Busy,
            AttemptResult::NoAnswer => AttemptStatus::NoAnswer,
            AttemptResult::Voicemail => AttemptStatus::Voicemail,
            AttemptResult::Failed => AttemptStatus::Failed,
        }
    }
}

/// The flow outcome that puts the contact on the do-not-call list.
pub const OPTED_OUT: &str = "opted_out";
/// The final outcome of a contact who was tried `max_attempts` times without a final outcome.
pub const UNREACHABLE: &str = "unreachable";

/// Outcomes after which the contact is called again (the flow ran but got nowhere); every other
/// outcome of a completed call is final (`confirmed`, `rescheduled`, `cancelled`, `opted_out`,
/// `wrong_person`, `completed`, `transferred`, …), so a flow that adds one ends the contact.
/// `interrupted`: the call ended while no runtime could hear its result (a crash mid-call).
pub const RETRY_OUTCOMES: &[&str] = &["no_answer", "abandoned", INTERRUPTED];
/// The outcome of a call that ended while its result could not be recorded.
pub const INTERRUPTED: &str = "interrupted";

/// Whether an attempt with this result and flow outcome finishes the contact.
pub fn is_final(result: AttemptResult, outcome: Option<&str>) -> bool {
    match outcome {
        Some(OPTED_OUT) => true,
        Some(outcome) => result == AttemptResult::Completed && !RETRY_OUTCOMES.contains(&outcome),
        None => false,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub id: String,
    pub contact_id: String,
    pub campaign_id: String,
    /// 1-based, per contact.
    pub number: u32,
    pub status: AttemptStatus,
    pub claimed_at: Millis,
    pub dialed_at: Option<Millis>,
    pub provider_call_id: Option<String>,
    pub call_id: Option<String>,
    pub outcome: Option<String>,
    /// What the flow collected on this call.
    #[schema(value_type = Object)]
    pub slots: serde_json::Map<String, serde_json::Value>,
    pub ended_at: Option<Millis>,
}

/// A contact taken by [`crate::Store::claim_due`]: the attempt row exists (status `claimed`), the
/// contact is `in_progress`. `contact` is as it was before the claim, so `contact.attempts` does
/// not count this one.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub attempt_id: String,
    pub number: u32,
    pub claimed_at: Millis,
    pub contact: Contact,
    /// When each earlier attempt was claimed (for the per-day cap).
    pub previous_attempts: Vec<Millis>,
}

/// What to do with a claim the scheduler decided not to dial. The attempt row is deleted either
/// way: nothing was dialed, so nothing counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Back to pending, due at `at` (`None`: leave the due time as it was).
    Retry { at: Option<Millis> },
    /// The contact is done without a call, for this reason (`not_called_no_consent`, …).
    Final { outcome: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Dial,
    Skip,
}

/// A decision to log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDecision {
    pub at: Millis,
    pub kind: DecisionKind,
    /// The check that decided.
    pub reason: String,
    pub detail: String,
    pub retry_at: Option<Millis>,
}

/// A logged decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SchedulerDecision {
    pub id: String,
    pub campaign_id: String,
    pub contact_id: String,
    pub at: Millis,
    pub decision: DecisionKind,
    pub reason: String,
    pub detail: String,
    pub retry_at: Option<Millis>,
}

/// How [`crate::Store::finish_attempt`] left the contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub contact_id: String,
    pub state: ContactState,
    pub final_outcome: Option<String>,
    pub next_attempt_at: Option<Millis>,
    /// The phone was put on the do-not-call list by this result.
    pub added_to_dnc: bool,
    /// The attempt had already finished (a repeated callback): nothing was changed.
    pub already_finished: bool,
}

/// An attempt left without a provider call id, with what is needed to look for it at the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct InDoubt {
    pub attempt: Attempt,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DncEntry {
    pub phone: String,
    pub reason: Option<String>,
    pub source: Option<String>,
    pub added_at: Millis,
}

/// One contact's results: the contact (final outcome, state) and every attempt, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContactResult {
    pub contact: Contact,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContactOutcomeCount {
    /// `None` for contacts not finished.
    pub outcome: Option<String>,
    pub contacts: i64,
}

/// A campaign's progress: contacts by state and by final outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub total: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub done: i64,
    /// Attempts made (dialed or being dialed).
    pub attempts: i64,
    /// Final outcomes of the finished contacts, most frequent first.
    pub outcomes: Vec<ContactOutcomeCount>,
}

/// `YYYY-MM-DD` or null (jiff's own serde support is a feature this workspace does not build).
mod opt_date {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(date: &Option<jiff::civil::Date>, s: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(d) => s.collect_str(d),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<jiff::civil::Date>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

text_enum!(CampaignStatus {
    Draft => "draft",
    Running => "running",
    Paused => "paused",
    Cancelled => "cancelled",
    Completed => "completed",
});
text_enum!(VoicemailAction { LeaveMessage => "leave_message", HangUp => "hang_up" });
text_enum!(ContactState { Pending => "pending", InProgress => "in_progress", Done => "done" });
text_enum!(AttemptStatus {
    Claimed => "claimed",
    Dialing => "dialing",
    Ringing => "ringing",
    Answered => "answered",
    Completed => "completed",
    Busy => "busy",
    NoAnswer => "no_answer",
    Voicemail => "voicemail",
    Failed => "failed",
    InDoubt => "in_doubt",
});
text_enum!(AttemptResult {
    Completed => "completed",
    Busy => "busy",
    NoAnswer => "no_answer",
    Voicemail => "voicemail",
    Failed => "failed",
});
text_enum!(DecisionKind { Dial => "dial", Skip => "skip" });

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_name<T: Serialize>(v: T) -> String {
        match serde_json::to_value(v) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    macro_rules! check_names {
        ($($ty:ident),*) => {$(
            for v in $ty::ALL {
                assert_eq!(v.as_str(), serde_name(v));
                assert_eq!(v.as_str().parse::<$ty>(), Ok(*v));
            }
        )*};
    }

    #[test]
    fn text_names_match_serde() {
        check_names!(
            CampaignStatus,
            VoicemailAction,
            ContactState,
            AttemptStatus,
            AttemptResult,
            DecisionKind
        );
    }

    #[test]
    fn windows_stay_within_eight_to_nine() {
        assert!(CallingWindow::new(8 * 60, 21 * 60).is_ok());
        assert_eq!(
            CallingWindow::new(7 * 60 + 59, 20 * 60),
            Err(SettingsError::WindowOutOfBounds {
                start: 479,
                end: 1200
            })
        );
        assert!(matches!(
            CallingWindow::new(9 * 60, 21 * 60 + 1),
            Err(SettingsError::WindowOutOfBounds { .. })
        ));
        assert!(matches!(
            CallingWindow::new(12 * 60, 12 * 60),
            Err(SettingsError::EmptyWindow { .. })
        ));
        // Deserializing goes through the same check.
        assert!(serde_json::from_str::<CallingWindow>("[420, 1200]").is_err());
        assert_eq!(CallingWindow::DEFAULT.to_string(), "09:00–20:00");
        let w = CallingWindow::DEFAULT;
        assert!(w.contains(9 * 60) && w.contains(20 * 60 - 1) && !w.contains(20 * 60));
    }

    #[test]
    fn days_of_week_are_iso_bits() {
        use jiff::civil::Weekday;
        let d = DaysOfWeek::WEEKDAYS;
        assert!(d.allows(Weekday::Monday) && d.allows(Weekday::Friday));
        assert!(!d.allows(Weekday::Saturday) && !d.allows(Weekday::Sunday));
        assert!(DaysOfWeek::from_bits(0).is_err());
        assert!(DaysOfWeek::from_bits(128).is_err());
        assert!(
            DaysOfWeek::from_bits(0b100_0000)
                .expect("sunday")
                .allows(Weekday::Sunday)
        );
    }

    #[test]
    fn settings_are_checked_once_at_creation() {
        let ok = NewCampaign::new(
            "n",
            "outbound_appointment",
            "+15550100",
            CampaignSettings::default(),
        );
        assert!(ok.is_ok());
        let mut s = CampaignSettings {
            max_attempts: 0,
            ..CampaignSettings::default()
        };
        assert_eq!(
            NewCampaign::new("n", "f", "c", s.clone()),
            Err(SettingsError::Zero { what: "max_attempts" })
        );
        s.max_attempts = 1;
        s.calls_per_second = f64::NAN;
        assert!(matches!(
            NewCampaign::new("n", "f", "c", s.clone()),
            Err(SettingsError::BadRate { .. })
        ));
        s.calls_per_second = 1.0;
        s.start_date = Some(jiff::civil::date(2026, 5, 2));
        s.end_date = Some(jiff::civil::date(2026, 5, 1));
        assert!(matches!(
            NewCampaign::new("n", "f", "c", s),
            Err(SettingsError::DatesReversed { .. })
        ));
        assert_eq!(
            NewCampaign::new(" ", "f", "c", CampaignSettings::default()),
            Err(SettingsError::Empty { what: "name" })
        );
    }

    #[test]
    fn campaign_status_transitions() {
        use CampaignStatus::*;
        assert!(Draft.can_become(Running));
        assert!(Running.can_become(Paused) && Paused.can_become(Running));
        assert!(!Completed.can_become(Running) && !Cancelled.can_become(Running));
        assert!(!Draft.can_become(Paused) && !Draft.can_become(Completed));
    }

    #[test]
    fn final_outcomes() {
        use AttemptResult::*;
        assert!(is_final(Completed, Some("confirmed")));
        assert!(is_final(Completed, Some("wrong_person")));
        assert!(!is_final(Completed, Some("no_answer")));
        assert!(!is_final(Completed, None));
        assert!(!is_final(Busy, None));
        // An opt-out is final whatever the call's result says.
        assert!(is_final(Voicemail, Some(OPTED_OUT)));
        assert!(!is_final(Voicemail, Some("confirmed")));
    }
}
