//! The calling rules: may this contact be dialed now? A pure function of the campaign, the contact,
//! the counts the store knows and the time, so every branch is tested without a database or a
//! clock.
//!
//! The checks run in a fixed order and the first that fails names the decision, so the log says
//! the most fundamental reason: campaign status and dates → consent → do-not-call → time zone
//! known → local day and window → attempts in total → attempts today → concurrency. Each skip says
//! whether it is final (the contact will never be called: no consent, on the do-not-call list,
//! zone unknown, campaign over, attempts used up) or when to look again.
//!
//! Local time is the contact's: the window, the allowed days, the start and end dates and the
//! per-day cap are all read in the contact's zone, and the next window opening is found by
//! walking local dates and turning "date at window start" into an instant with the zone's rules
//! of that date, so a daylight-saving change between now and then moves the instant, not the
//! local time.

use std::fmt;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use switchboard_store::{
    CallingWindow, Campaign, CampaignStatus, Contact, EARLIEST_CALL_MINUTE, LATEST_CALL_MINUTE, Millis,
    UNREACHABLE,
};

/// What to do with a contact now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Every check passed; `local` is the contact's local time now.
    Dial { local: DateTime },
    /// A check failed. `retry_at`: when the contact may pass it (`None`: leave the contact's due
    /// time as it is, or never, when the reason is final).
    Skip {
        reason: SkipReason,
        retry_at: Option<Timestamp>,
    },
}

impl Decision {
    /// The check that decided, as the decision log names it.
    pub fn check(&self) -> &'static str {
        match self {
            Decision::Dial { .. } => "all_checks_passed",
            Decision::Skip { reason, .. } => reason.check(),
        }
    }
}

/// The check a contact failed, with what it saw.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    CampaignNotRunning {
        status: CampaignStatus,
    },
    BeforeStartDate {
        start: Date,
    },
    AfterEndDate {
        end: Date,
    },
    NoConsent,
    DoNotCall,
    /// No zone, or a name the time zone database does not know.
    UnknownTimeZone {
        given: Option<String>,
    },
    DayNotAllowed {
        local: DateTime,
    },
    OutsideWindow {
        local: DateTime,
        window: CallingWindow,
    },
    MaxAttempts {
        attempts: u32,
        max: u32,
    },
    DailyCap {
        today: u32,
        max: u32,
    },
    Concurrency {
        active: u32,
        max: u32,
    },
}

impl SkipReason {
    /// The check's name in the decision log.
    pub fn check(&self) -> &'static str {
        match self {
            SkipReason::CampaignNotRunning { .. } => "campaign_status",
            SkipReason::BeforeStartDate { .. } | SkipReason::AfterEndDate { .. } => "campaign_dates",
            SkipReason::NoConsent => "consent",
            SkipReason::DoNotCall => "do_not_call",
            SkipReason::UnknownTimeZone { .. } => "time_zone",
            SkipReason::DayNotAllowed { .. } => "day_of_week",
            SkipReason::OutsideWindow { .. } => "calling_window",
            SkipReason::MaxAttempts { .. } => "max_attempts",
            SkipReason::DailyCap { .. } => "daily_cap",
            SkipReason::Concurrency { .. } => "concurrency",
        }
    }

    /// The contact's final outcome when this reason means it will never be called (again).
    pub fn final_outcome(&self) -> Option<&'static str> {
        match self {
            SkipReason::NoConsent => Some("not_called_no_consent"),
            SkipReason::DoNotCall => Some("not_called_do_not_call"),
            SkipReason::UnknownTimeZone { .. } => Some("not_called_unknown_time_zone"),
            SkipReason::AfterEndDate { .. } => Some("not_called_campaign_ended"),
            SkipReason::MaxAttempts { .. } => Some(UNREACHABLE),
            SkipReason::CampaignNotRunning { .. }
            | SkipReason::BeforeStartDate { .. }
            | SkipReason::DayNotAllowed { .. }
            | SkipReason::OutsideWindow { .. }
            | SkipReason::DailyCap { .. }
            | SkipReason::Concurrency { .. } => None,
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::CampaignNotRunning { status } => write!(f, "campaign is {status}"),
            SkipReason::BeforeStartDate { start } => write!(f, "campaign starts on {start} local time"),
            SkipReason::AfterEndDate { end } => write!(f, "campaign ended on {end} local time"),
            SkipReason::NoConsent => f.write_str("no consent to be called"),
            SkipReason::DoNotCall => f.write_str("number is on the do-not-call list"),
            SkipReason::UnknownTimeZone { given: None } => f.write_str("time zone unknown"),
            SkipReason::UnknownTimeZone { given: Some(z) } => write!(f, "time zone `{z}` is not known"),
            SkipReason::DayNotAllowed { local } => {
                write!(f, "local {} is a {:?}, not a calling day", local, local.weekday())
            }
            SkipReason::OutsideWindow { local, window } => {
                write!(f, "local time {local} is outside the window {window}")
            }
            SkipReason::MaxAttempts { attempts, max } => write!(f, "{attempts} attempts made of {max}"),
            SkipReason::DailyCap { today, max } => write!(f, "{today} attempts today, at most {max} a day"),
            SkipReason::Concurrency { active, max } => write!(f, "{active} calls active, at most {max}"),
        }
    }
}

/// Decides whether `contact` may be dialed at `now`. `contact.attempts` counts the attempts made
/// before this one; `attempts_today` those of them in the contact's current local day
/// ([`attempts_on_local_day`]); `dnc`: the number is on the do-not-call list; `active_calls`:
/// the campaign's calls in progress besides this one.
pub fn decide(
    campaign: &Campaign,
    contact: &Contact,
    attempts_today: u32,
    now: Timestamp,
    dnc: bool,
    active_calls: u32,
) -> Decision {
    let settings = &campaign.settings;
    let skip = |reason, retry_at| Decision::Skip { reason, retry_at };

    if campaign.status != CampaignStatus::Running {
        return skip(
            SkipReason::CampaignNotRunning {
                status: campaign.status,
            },
            None,
        );
    }
    // The dates are the contact's local dates; without a zone they cannot be read, and the zone
    // check below refuses the contact anyway.
    let zone = contact.time_zone.as_deref().and_then(|z| TimeZone::get(z).ok());
    if let Some(tz) = &zone {
        let today = now.to_zoned_datetime(tz.clone()).date();
        if let Some(end) = settings.end_date
            && today > end
        {
            return skip(SkipReason::AfterEndDate { end }, None);
        }
        if let Some(start) = settings.start_date
            && today < start
        {
            let from = local_midnight(tz, start).unwrap_or(now).max(now);
            return skip(
                SkipReason::BeforeStartDate { start },
                next_opening(tz, from, campaign),
            );
        }
    }
    if !contact.consent {
        return skip(SkipReason::NoConsent, None);
    }
    if dnc {
        return skip(SkipReason::DoNotCall, None);
    }
    let Some(tz) = zone else {
        return skip(
            SkipReason::UnknownTimeZone {
                given: contact.time_zone.clone(),
            },
            None,
        );
    };
    let local = now.to_zoned_datetime(tz.clone()).datetime();
    if !settings.days_of_week.allows(local.weekday()) {
        return skip(
            SkipReason::DayNotAllowed { local },
            next_opening(&tz, now, campaign),
        );
    }
    if !effective_window(settings.window).contains(&minute_of_day(local)) {
        return skip(
            SkipReason::OutsideWindow {
                local,
                window: settings.window,
            },
            next_opening(&tz, now, campaign),
        );
    }
    if contact.attempts >= settings.max_attempts {
        return skip(
            SkipReason::MaxAttempts {
                attempts: contact.attempts,
                max: settings.max_attempts,
            },
            None,
        );
    }
    if attempts_today >= settings.max_attempts_per_day {
        let tomorrow = local.date().tomorrow().ok().and_then(|d| local_midnight(&tz, d));
        return skip(
            SkipReason::DailyCap {
                today: attempts_today,
                max: settings.max_attempts_per_day,
            },
            tomorrow.and_then(|from| next_opening(&tz, from, campaign)),
        );
    }
    if active_calls >= settings.max_concurrent {
        return skip(
            SkipReason::Concurrency {
                active: active_calls,
                max: settings.max_concurrent,
            },
            None,
        );
    }
    Decision::Dial { local }
}

/// How many of `times` (earlier attempts, Unix ms) fall on the local date of `now` in `zone`;
/// 0 for a zone the database does not know (such a contact is never dialed anyway).
pub fn attempts_on_local_day(zone: Option<&str>, now: Timestamp, times: &[Millis]) -> u32 {
    let Some(tz) = zone.and_then(|z| TimeZone::get(z).ok()) else {
        return 0;
    };
    let today = now.to_zoned_datetime(tz.clone()).date();
    let n = times
        .iter()
        .filter_map(|ms| Timestamp::from_millisecond(*ms).ok())
        .filter(|t| t.to_zoned_datetime(tz.clone()).date() == today)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The campaign window held to 08:00–21:00 once more: the window type already guarantees it, and
/// this is the rule that must never be broken.
fn effective_window(window: CallingWindow) -> std::ops::Range<u16> {
    window.start().max(EARLIEST_CALL_MINUTE)..window.end().min(LATEST_CALL_MINUTE)
}

fn minute_of_day(local: DateTime) -> u16 {
    // hour 0..=23 and minute 0..=59 always fit.
    u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0)
}

fn local_midnight(tz: &TimeZone, date: Date) -> Option<Timestamp> {
    date.to_zoned_datetime(tz.clone()).ok().map(|z| z.timestamp())
}

/// The first instant at or after `from` when the window opens on an allowed day, in the
/// contact's zone. Each candidate is a local date at the window's start turned into an instant
/// with that date's offset (a start that falls in a daylight-saving gap moves forward by the gap,
/// still inside the window). `None` only past the end of jiff's calendar.
pub fn next_opening(tz: &TimeZone, from: Timestamp, campaign: &Campaign) -> Option<Timestamp> {
    let settings = &campaign.settings;
    let window = effective_window(settings.window);
    let start_date = from.to_zoned_datetime(tz.clone()).date();
    // A week and a day covers every allowed weekday (the set is never empty) even when today's
    // opening has passed.
    for offset in 0..=7 {
        let date = start_date
            .checked_add(SignedDuration::from_hours(24 * offset))
            .ok()?;
        if !settings.days_of_week.allows(date.weekday()) {
            continue;
        }
        let opening = date
            .at(
                i8::try_from(window.start / 60).ok()?,
                i8::try_from(window.start % 60).ok()?,
                0,
                0,
            )
            .to_zoned_datetime(tz.clone())
            .ok()?
            .timestamp();
        if opening >= from {
            return Some(opening);
        }
    }
    None
}

/// The weekday names people write, for logs.
pub fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::{CampaignSettings, ContactState, DaysOfWeek};

    fn campaign(settings: CampaignSettings) -> Campaign {
        Campaign {
            id: "c".into(),
            name: "test".into(),
            flow: "outbound_appointment".into(),
            caller_id: "+15550100".into(),
            status: CampaignStatus::Running,
            settings,
            created_at: 0,
        }
    }

    fn every_day() -> CampaignSettings {
        CampaignSettings {
            days_of_week: DaysOfWeek::ALL,
            max_attempts: 3,
            max_attempts_per_day: 2,
            max_concurrent: 2,
            ..CampaignSettings::default()
        }
    }

    fn contact(zone: &str) -> Contact {
        Contact {
            id: "k".into(),
            campaign_id: "c".into(),
            name: "Ada".into(),
            phone: "+442079460958".into(),
            time_zone: Some(zone.into()),
            consent: true,
            consent_source: Some("form".into()),
            fields: serde_json::Map::new(),
            state: ContactState::InProgress,
            final_outcome: None,
            attempts: 0,
            next_attempt_at: None,
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("an RFC 3339 instant")
    }

    /// The decision with every count at zero.
    fn decide_at(c: &Campaign, k: &Contact, now: &str) -> Decision {
        decide(c, k, 0, at(now), false, 0)
    }

    fn skip_of(d: Decision) -> (SkipReason, Option<Timestamp>) {
        match d {
            Decision::Skip { reason, retry_at } => (reason, retry_at),
            Decision::Dial { local } => panic!("expected a skip, got a dial at {local}"),
        }
    }

    fn retry_of(d: Decision) -> Timestamp {
        let (reason, retry) = skip_of(d);
        retry.unwrap_or_else(|| panic!("{reason:?} has no retry time"))
    }

    #[test]
    fn dials_inside_the_window() {
        let c = campaign(every_day());
        // 10:00 in London in summer (UTC+1).
        let d = decide_at(&c, &contact("Europe/London"), "2026-06-10T09:00:00Z");
        assert_eq!(
            d,
            Decision::Dial {
                local: jiff::civil::date(2026, 6, 10).at(10, 0, 0, 0)
            }
        );
        assert_eq!(d.check(), "all_checks_passed");
    }

    #[test]
    fn a_campaign_not_running_dials_nobody() {
        for status in [
            CampaignStatus::Draft,
            CampaignStatus::Paused,
            CampaignStatus::Cancelled,
            CampaignStatus::Completed,
        ] {
            let mut c = campaign(every_day());
            c.status = status;
            let (reason, retry) = skip_of(decide_at(&c, &contact("Europe/London"), "2026-06-10T09:00:00Z"));
            assert_eq!(reason, SkipReason::CampaignNotRunning { status });
            assert_eq!((retry, reason.final_outcome()), (None, None), "resumed later");
        }
    }

    #[test]
    fn campaign_dates_are_local_dates() {
        let c = campaign(CampaignSettings {
            start_date: Some(jiff::civil::date(2026, 6, 10)),
            end_date: Some(jiff::civil::date(2026, 6, 12)),
            ..every_day()
        });
        // 2026-06-09 22:30 UTC is already 10:30 on the 10th in Auckland (UTC+12): started.
        let d = decide_at(&c, &contact("Pacific/Auckland"), "2026-06-09T22:30:00Z");
        assert!(matches!(d, Decision::Dial { .. }), "{d:?}");
        // ...but still 23:30 on the 9th in London: not yet, come back at 09:00 on the 10th.
        let (reason, retry) = skip_of(decide_at(&c, &contact("Europe/London"), "2026-06-09T22:30:00Z"));
        assert_eq!(reason.check(), "campaign_dates");
        assert_eq!(retry, Some(at("2026-06-10T08:00:00Z")));
        // The 13th in London: over for good.
        let (reason, retry) = skip_of(decide_at(&c, &contact("Europe/London"), "2026-06-13T09:00:00Z"));
        assert_eq!(
            reason,
            SkipReason::AfterEndDate {
                end: jiff::civil::date(2026, 6, 12)
            }
        );
        assert_eq!(retry, None);
        assert_eq!(reason.final_outcome(), Some("not_called_campaign_ended"));
    }

    #[test]
    fn no_consent_do_not_call_and_unknown_zone_are_final() {
        let c = campaign(every_day());
        let now = "2026-06-10T09:00:00Z";
        let mut k = contact("Europe/London");
        k.consent = false;
        let (reason, retry) = skip_of(decide(&c, &k, 0, at(now), true, 0));
        assert_eq!(reason, SkipReason::NoConsent, "consent is checked before DNC");
        assert_eq!(
            (retry, reason.final_outcome()),
            (None, Some("not_called_no_consent"))
        );

        let (reason, _) = skip_of(decide(&c, &contact("Europe/London"), 0, at(now), true, 0));
        assert_eq!(reason, SkipReason::DoNotCall);
        assert_eq!(reason.final_outcome(), Some("not_called_do_not_call"));

        let mut k = contact("Europe/London");
        k.time_zone = None;
        let (reason, _) = skip_of(decide_at(&c, &k, now));
        assert_eq!(reason, SkipReason::UnknownTimeZone { given: None });
        assert_eq!(reason.final_outcome(), Some("not_called_unknown_time_zone"));
        let (reason, _) = skip_of(decide_at(&c, &contact("Mars/Olympus_Mons"), now));
        assert_eq!(
            reason,
            SkipReason::UnknownTimeZone {
                given: Some("Mars/Olympus_Mons".into())
            }
        );
    }

    #[test]
    fn window_edges_are_start_inclusive_end_exclusive() {
        let c = campaign(every_day());
        let k = contact("Europe/London");
        // London in winter is UTC+0: window 09:00–20:00.
        assert!(matches!(
            decide_at(&c, &k, "2026-01-14T09:00:00Z"),
            Decision::Dial { .. }
        ));
        assert!(matches!(
            decide_at(&c, &k, "2026-01-14T19:59:59Z"),
            Decision::Dial { .. }
        ));
        let (reason, retry) = skip_of(decide_at(&c, &k, "2026-01-14T08:59:59Z"));
        assert_eq!(reason.check(), "calling_window");
        assert_eq!(retry, Some(at("2026-01-14T09:00:00Z")), "later today");
        // Closed for today: tomorrow's opening.
        let retry = retry_of(decide_at(&c, &k, "2026-01-14T20:00:00Z"));
        assert_eq!(retry, at("2026-01-15T09:00:00Z"));
    }

    #[test]
    fn near_midnight() {
        let c = campaign(every_day());
        let k = contact("Europe/Paris");
        // 23:59 in Paris (UTC+1 in winter) → 09:00 the next local day.
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-01-14T22:59:00Z")),
            at("2026-01-15T08:00:00Z")
        );
        // 00:01 local → 09:00 the same local day, though it is still the 14th in UTC.
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-01-14T23:01:00Z")),
            at("2026-01-15T08:00:00Z")
        );
    }

    #[test]
    fn a_disallowed_weekday_waits_for_the_next_allowed_day() {
        let c = campaign(CampaignSettings {
            days_of_week: DaysOfWeek::WEEKDAYS,
            ..every_day()
        });
        let k = contact("Europe/London");
        // Saturday 2026-01-17 11:00 → Monday 19th 09:00.
        let (reason, retry) = skip_of(decide_at(&c, &k, "2026-01-17T11:00:00Z"));
        assert_eq!(reason.check(), "day_of_week");
        assert_eq!(retry, Some(at("2026-01-19T09:00:00Z")));
        // Friday after the window closed → Monday too, not Saturday.
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-01-16T20:30:00Z")),
            at("2026-01-19T09:00:00Z")
        );
        // Only Sundays: from a Monday, six days on.
        let c = campaign(CampaignSettings {
            days_of_week: DaysOfWeek::from_bits(0b100_0000).expect("sunday"),
            ..every_day()
        });
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-01-19T10:00:00Z")),
            at("2026-01-25T09:00:00Z")
        );
        // Sunday after closing: a week later.
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-01-25T21:00:00Z")),
            at("2026-02-01T09:00:00Z")
        );
    }

    #[test]
    fn new_york_spring_forward() {
        // 2026-03-08 02:00 EST → 03:00 EDT. Saturday 21:30 EST = 02:30Z Sunday.
        let c = campaign(every_day());
        let k = contact("America/New_York");
        let retry = retry_of(decide_at(&c, &k, "2026-03-08T02:30:00Z"));
        // Sunday 09:00 is EDT (UTC-4): 13:00Z, not the 14:00Z yesterday's offset would give.
        assert_eq!(retry, at("2026-03-08T13:00:00Z"));
        // On the day itself, 09:00 EDT is inside and 08:59 EDT outside.
        assert!(matches!(
            decide_at(&c, &k, "2026-03-08T13:00:00Z"),
            Decision::Dial { .. }
        ));
        assert!(matches!(
            decide_at(&c, &k, "2026-03-08T12:59:00Z"),
            Decision::Skip { .. }
        ));
        // 19:59 EDT = 23:59Z is still inside; 20:00 EDT is not.
        assert!(matches!(
            decide_at(&c, &k, "2026-03-08T23:59:00Z"),
            Decision::Dial { .. }
        ));
        assert!(matches!(
            decide_at(&c, &k, "2026-03-09T00:00:00Z"),
            Decision::Skip { .. }
        ));
    }

    #[test]
    fn new_york_fall_back() {
        // 2026-11-01 02:00 EDT → 01:00 EST. Saturday 22:00 EDT = 02:00Z Sunday.
        let c = campaign(every_day());
        let k = contact("America/New_York");
        // Sunday 09:00 EST = 14:00Z.
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-11-01T02:00:00Z")),
            at("2026-11-01T14:00:00Z")
        );
        // 08:30 EST on the day (13:30Z) would be 09:30 by yesterday's offset: still outside.
        assert!(matches!(
            decide_at(&c, &k, "2026-11-01T13:30:00Z"),
            Decision::Skip { .. }
        ));
        // The repeated 01:xx hour is outside too, both times.
        assert!(matches!(
            decide_at(&c, &k, "2026-11-01T05:30:00Z"),
            Decision::Skip { .. }
        ));
        assert!(matches!(
            decide_at(&c, &k, "2026-11-01T06:30:00Z"),
            Decision::Skip { .. }
        ));
    }

    #[test]
    fn a_window_opening_in_a_dst_gap_moves_forward() {
        // America/Santiago springs forward at 00:00 → 01:00 (2026-09-06). An opening is never
        // before 08:00, so the gap at midnight does not touch it; the day is found all the same.
        let c = campaign(every_day());
        let k = contact("America/Santiago");
        // Saturday 2026-09-05 21:00 local (-04) = 2026-09-06T01:00Z → Sunday 09:00 -03 = 12:00Z.
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-09-06T01:00:00Z")),
            at("2026-09-06T12:00:00Z")
        );
    }

    #[test]
    fn auckland_reads_its_own_day_and_daylight_time() {
        let c = campaign(CampaignSettings {
            days_of_week: DaysOfWeek::WEEKDAYS,
            ..every_day()
        });
        let k = contact("Pacific/Auckland");
        // Thursday 2026-01-15 20:00Z is Friday 09:00 NZDT (UTC+13): inside.
        assert_eq!(
            decide_at(&c, &k, "2026-01-15T20:00:00Z"),
            Decision::Dial {
                local: jiff::civil::date(2026, 1, 16).at(9, 0, 0, 0)
            }
        );
        // Friday 2026-01-16 20:00Z is Saturday 09:00 there: next is Monday 09:00 NZDT.
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-01-16T20:00:00Z")),
            at("2026-01-18T20:00:00Z")
        );
        // NZ daylight time ends Sunday 2026-04-05 03:00 → 02:00. Saturday 20:30 NZDT
        // (07:30Z) → Monday 09:00 NZST = Sunday 21:00Z.
        assert_eq!(
            retry_of(decide_at(&c, &k, "2026-04-04T07:30:00Z")),
            at("2026-04-05T21:00:00Z")
        );
    }

    #[test]
    fn attempts_in_total_and_per_local_day() {
        let c = campaign(every_day());
        let now = at("2026-06-10T09:00:00Z");
        let mut k = contact("Europe/London");
        k.attempts = 3;
        let (reason, retry) = skip_of(decide(&c, &k, 0, now, false, 0));
        assert_eq!(reason, SkipReason::MaxAttempts { attempts: 3, max: 3 });
        assert_eq!((retry, reason.final_outcome()), (None, Some("unreachable")));

        k.attempts = 2;
        let (reason, retry) = skip_of(decide(&c, &k, 2, now, false, 0));
        assert_eq!(reason, SkipReason::DailyCap { today: 2, max: 2 });
        assert_eq!(retry, Some(at("2026-06-11T08:00:00Z")), "tomorrow's opening, BST");
        assert!(matches!(decide(&c, &k, 1, now, false, 0), Decision::Dial { .. }));
    }

    #[test]
    fn the_daily_cap_counts_the_contacts_local_day() {
        let ms = |t: &str| at(t).as_millisecond();
        // Two attempts at 08:30 and 10:00 Tokyo time on 2026-06-11 (UTC+9): the first is still the
        // 10th in UTC.
        let times = [ms("2026-06-10T23:30:00Z"), ms("2026-06-11T01:00:00Z")];
        let now = at("2026-06-11T02:00:00Z");
        assert_eq!(attempts_on_local_day(Some("Asia/Tokyo"), now, &times), 2);
        // In UTC they would be on two days.
        assert_eq!(attempts_on_local_day(Some("UTC"), now, &times), 1);
        // The next local morning: a new day.
        let next = at("2026-06-11T23:00:00Z");
        assert_eq!(attempts_on_local_day(Some("Asia/Tokyo"), next, &times), 0);
        assert_eq!(attempts_on_local_day(None, now, &times), 0);
        // Across the fall-back night the day is still the local one.
        let times = [ms("2026-11-01T04:30:00Z")]; // 00:30 EDT, Sunday
        assert_eq!(
            attempts_on_local_day(Some("America/New_York"), at("2026-11-02T04:30:00Z"), &times),
            1,
            "23:30 EST Sunday"
        );
    }

    #[test]
    fn concurrency_is_the_last_check() {
        let c = campaign(every_day());
        let now = at("2026-06-10T09:00:00Z");
        let (reason, retry) = skip_of(decide(&c, &contact("Europe/London"), 0, now, false, 2));
        assert_eq!(reason, SkipReason::Concurrency { active: 2, max: 2 });
        assert_eq!((retry, reason.final_outcome()), (None, None));
        assert!(matches!(
            decide(&c, &contact("Europe/London"), 0, now, false, 1),
            Decision::Dial { .. }
        ));
    }

    #[test]
    fn earlier_checks_win() {
        // Outside the window, no consent, attempts used up: consent is named.
        let c = campaign(every_day());
        let mut k = contact("Europe/London");
        k.consent = false;
        k.attempts = 9;
        let (reason, _) = skip_of(decide(&c, &k, 9, at("2026-06-10T23:00:00Z"), true, 9));
        assert_eq!(reason, SkipReason::NoConsent);
        // Outside the window and attempts used up: the window is named (it comes first).
        k.consent = true;
        let (reason, _) = skip_of(decide(&c, &k, 9, at("2026-06-10T23:00:00Z"), false, 9));
        assert_eq!(reason.check(), "calling_window");
    }

    #[test]
    fn reasons_read_well() {
        let local = jiff::civil::date(2026, 1, 17).at(11, 0, 0, 0);
        assert_eq!(
            SkipReason::OutsideWindow {
                local,
                window: CallingWindow::DEFAULT
            }
            .to_string(),
            "local time 2026-01-17T11:00:00 is outside the window 09:00–20:00"
        );
        assert_eq!(weekday_name(local.weekday()), "Saturday");
    }
}
