//! A campaign as people write it — the JSON of `POST /api/campaigns` and the flags of
//! `switchboard campaign create` — and the checks that turn it into the store's [`NewCampaign`].
//!
//! One type, [`SettingsSpec`], serves both, so a window is `09:00-20:00` and a day is `mon`
//! wherever a person types one, and the API answers with the same shape it accepts. The store
//! keeps minutes and a bitmask; those never reach a person. Parsing is strict (two-digit times,
//! `YYYY-MM-DD` dates, E.164 caller ids as `+` and digits) because the API's OpenAPI document
//! promises exactly these forms, and a lenient parser would accept what the document calls
//! invalid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use switchboard_store::{
    CallingWindow, CampaignSettings, DaysOfWeek, Minute, NewCampaign, RetryDelays, SettingsError,
    VoicemailAction,
};
use utoipa::ToSchema;

use crate::phone::{PhoneError, PhoneNumber};

/// A calling day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    /// ISO order, Monday first: the store's bit order.
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Day::Mon => "mon",
            Day::Tue => "tue",
            Day::Wed => "wed",
            Day::Thu => "thu",
            Day::Fri => "fri",
            Day::Sat => "sat",
            Day::Sun => "sun",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Day {
    type Err = SpecError;

    /// `mon` or `monday`, any case.
    fn from_str(s: &str) -> Result<Day, SpecError> {
        let lower = s.trim().to_ascii_lowercase();
        Day::ALL
            .into_iter()
            .find(|d| {
                lower == d.as_str()
                    || (lower.len() > 3
                        && lower.starts_with(d.as_str())
                        && full_name(*d).starts_with(lower.as_str()))
            })
            .ok_or_else(|| SpecError::Days(format!("`{s}` is not a day (mon, tue, … sun)")))
    }
}

fn full_name(day: Day) -> &'static str {
    match day {
        Day::Mon => "monday",
        Day::Tue => "tuesday",
        Day::Wed => "wednesday",
        Day::Thu => "thursday",
        Day::Fri => "friday",
        Day::Sat => "saturday",
        Day::Sun => "sunday",
    }
}

/// Days as people list them on a command line: `mon-fri`, `sat,sun`, `mon,wed-fri`, `fri-mon`
/// (a range may wrap past Sunday). Returned in week order, each once.
pub fn parse_days(text: &str) -> Result<Vec<Day>, SpecError> {
    let mut on = [false; 7];
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (first.parse::<Day>()?.index(), last.parse::<Day>()?.index());
                let len = (last + 7 - first) % 7 + 1;
                for i in 0..len {
                    on[(first + i) % 7] = true;
                }
            }
            None => on[item.parse::<Day>()?.index()] = true,
        }
    }
    let days: Vec<Day> = Day::ALL.into_iter().filter(|d| on[d.index()]).collect();
    if days.is_empty() {
        return Err(SpecError::Days("name at least one day".into()));
    }
    Ok(days)
}

/// The shortest way to write `days`: runs of three or more as a range (`mon-fri,sun`).
pub fn format_days(days: &[Day]) -> String {
    let mut on = [false; 7];
    for d in days {
        on[d.index()] = true;
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !on[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < 7 && on[i + 1] {
            i += 1;
        }
        match i - start {
            0 => parts.push(Day::ALL[start].to_string()),
            1 => parts.push(format!("{},{}", Day::ALL[start], Day::ALL[i])),
            _ => parts.push(format!("{}-{}", Day::ALL[start], Day::ALL[i])),
        }
        i += 1;
    }
    parts.join(",")
}

/// What a campaign does when a machine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnVoicemail {
    /// Leave the flow's voicemail message after the beep.
    Leave,
    /// End the call.
    Hangup,
}

impl FromStr for OnVoicemail {
    type Err = String;

    fn from_str(s: &str) -> Result<OnVoicemail, String> {
        match s {
            "leave" => Ok(OnVoicemail::Leave),
            "hangup" => Ok(OnVoicemail::Hangup),
            _ => Err(format!(
                "`{s}`: on voicemail, either `leave` (the message) or `hangup`"
            )),
        }
    }
}

/// Minutes to wait before calling a contact again, by how the last attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetryMinutes {
    #[serde(deserialize_with = "whole_number")]
    #[schema(maximum = 4294967295_u64)]
    pub busy: u32,
    #[serde(deserialize_with = "whole_number")]
    #[schema(maximum = 4294967295_u64)]
    pub no_answer: u32,
    #[serde(deserialize_with = "whole_number")]
    #[schema(maximum = 4294967295_u64)]
    pub voicemail: u32,
    /// Also a call that connected but reached no outcome (the line dropped).
    #[serde(deserialize_with = "whole_number")]
    #[schema(maximum = 4294967295_u64)]
    pub failed: u32,
}

impl Default for RetryMinutes {
    fn default() -> Self {
        RetryDelays::default().into()
    }
}

impl From<RetryDelays> for RetryMinutes {
    fn from(r: RetryDelays) -> Self {
        RetryMinutes {
            busy: r.busy_minutes,
            no_answer: r.no_answer_minutes,
            voicemail: r.voicemail_minutes,
            failed: r.failed_minutes,
        }
    }
}

impl From<RetryMinutes> for RetryDelays {
    fn from(r: RetryMinutes) -> Self {
        RetryDelays {
            busy_minutes: r.busy,
            no_answer_minutes: r.no_answer,
            voicemail_minutes: r.voicemail,
            failed_minutes: r.failed,
        }
    }
}

/// A campaign's calling rules as people write them. Every field may be left out: the default is
/// the store's ([`CampaignSettings::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SettingsSpec {
    /// When calls may start, in the contact's local time: `HH:MM-HH:MM`, start inclusive, end
    /// exclusive, within 08:00-21:00.
    #[schema(
        pattern = "^((0[89]|1[0-9]|20):[0-5][0-9]|21:00)-((0[89]|1[0-9]|20):[0-5][0-9]|21:00)$",
        example = "09:00-20:00"
    )]
    pub window: String,
    /// The days calls may be placed on (the contact's local days).
    #[schema(min_items = 1)]
    pub days_of_week: Vec<Day>,
    /// The first calling day (`YYYY-MM-DD`, inclusive, the contact's local date); null: no limit.
    #[schema(format = Date)]
    pub start_date: Option<String>,
    /// The last calling day (`YYYY-MM-DD`, inclusive); null: no limit.
    #[schema(format = Date)]
    pub end_date: Option<String>,
    /// Attempts per contact in total.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_attempts: u32,
    /// Attempts per contact in one of the contact's local days.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_attempts_per_day: u32,
    pub retry_minutes: RetryMinutes,
    /// Calls of this campaign on the line at once.
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_concurrent: u32,
    /// Dials per second at most.
    #[schema(exclusive_minimum = 0)]
    pub calls_per_second: f64,
    pub voicemail: OnVoicemail,
}

impl Default for SettingsSpec {
    fn default() -> Self {
        SettingsSpec::from(&CampaignSettings::default())
    }
}

impl From<&CampaignSettings> for SettingsSpec {
    fn from(s: &CampaignSettings) -> Self {
        SettingsSpec {
            window: format_window(s.window),
            days_of_week: Day::ALL
                .into_iter()
                .filter(|d| s.days_of_week.bits() & (1 << d.index()) != 0)
                .collect(),
            start_date: s.start_date.map(|d| d.to_string()),
            end_date: s.end_date.map(|d| d.to_string()),
            max_attempts: s.max_attempts,
            max_attempts_per_day: s.max_attempts_per_day,
            retry_minutes: s.retry.into(),
            max_concurrent: s.max_concurrent,
            calls_per_second: s.calls_per_second,
            voicemail: match s.voicemail {
                VoicemailAction::LeaveMessage => OnVoicemail::Leave,
                VoicemailAction::HangUp => OnVoicemail::Hangup,
            },
        }
    }
}

impl SettingsSpec {
    /// The settings, if every rule holds.
    pub fn to_settings(&self) -> Result<CampaignSettings, SpecError> {
        let bits = self
            .days_of_week
            .iter()
            .fold(0u8, |bits, d| bits | 1 << d.index());
        let settings = CampaignSettings {
            window: parse_window(&self.window)?,
            days_of_week: DaysOfWeek::from_bits(bits)
                .map_err(|_| SpecError::Days("name at least one day".into()))?,
            start_date: parse_date("start_date", self.start_date.as_deref())?,
            end_date: parse_date("end_date", self.end_date.as_deref())?,
            max_attempts: self.max_attempts,
            max_attempts_per_day: self.max_attempts_per_day,
            retry: self.retry_minutes.into(),
            max_concurrent: self.max_concurrent,
            calls_per_second: self.calls_per_second,
            voicemail: match self.voicemail {
                OnVoicemail::Leave => VoicemailAction::LeaveMessage,
                OnVoicemail::Hangup => VoicemailAction::HangUp,
            },
        };
        settings.check()?;
        Ok(settings)
    }
}

/// A count or a number of minutes: any JSON number without a fraction that fits a `u32`. JSON
/// Schema (and so the API's document) calls `3.0` an integer; serde alone would refuse it.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = f64::deserialize(d)?;
    if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
        Ok(n as u32)
    } else {
        Err(serde::de::Error::custom(format!(
            "{n} is not a whole number from 0 to {}",
            u32::MAX
        )))
    }
}

/// Why a campaign as written cannot be created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("window: `{0}` is not written HH:MM-HH:MM (e.g. 09:00-20:00)")]
    WindowFormat(String),
    #[error("window: {0} is outside 08:00-21:00, the hours contacts may ever be called")]
    WindowBounds(String),
    #[error("window: {0} is empty (it must end after it starts)")]
    WindowEmpty(String),
    #[error("days_of_week: {0}")]
    Days(String),
    #[error("{what}: `{value}` is not a date written YYYY-MM-DD")]
    Date { what: &'static str, value: String },
    #[error("caller_id: {0}")]
    CallerId(PhoneError),
    #[error("flow `{name}` is not loaded; the outbound flows are: {outbound}")]
    UnknownFlow { name: String, outbound: String },
    #[error("flow `{name}` answers calls (inbound); a campaign needs an outbound flow ({outbound})")]
    InboundFlow { name: String, outbound: String },
    #[error("{what} must not contain NUL characters")]
    Nul { what: &'static str },
    #[error("{0}")]
    Settings(#[from] SettingsError),
}

/// `HH:MM-HH:MM`, exactly (two-digit hours and minutes, an ASCII hyphen).
pub fn parse_window(text: &str) -> Result<CallingWindow, SpecError> {
    let format = || SpecError::WindowFormat(text.to_string());
    let (start, end) = text.split_once('-').ok_or_else(format)?;
    let (start, end) = (
        parse_clock(start).ok_or_else(format)?,
        parse_clock(end).ok_or_else(format)?,
    );
    CallingWindow::new(start, end).map_err(|e| match e {
        SettingsError::EmptyWindow { .. } => SpecError::WindowEmpty(text.to_string()),
        _ => SpecError::WindowBounds(text.to_string()),
    })
}

/// `HH:MM` → minutes since midnight; 00:00 to 23:59.
fn parse_clock(text: &str) -> Option<Minute> {
    let b = text.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return None;
    }
    let digit = |i: usize| Minute::from(b[i] - b'0');
    let (hour, minute) = (digit(0) * 10 + digit(1), digit(3) * 10 + digit(4));
    (hour < 24 && minute < 60).then_some(hour * 60 + minute)
}

pub fn format_window(w: CallingWindow) -> String {
    let clock = |m: Minute| format!("{:02}:{:02}", m / 60, m % 60);
    format!("{}-{}", clock(w.start()), clock(w.end()))
}

/// `YYYY-MM-DD` only (jiff alone would take other ISO 8601 forms too).
fn parse_date(what: &'static str, text: Option<&str>) -> Result<Option<jiff::civil::Date>, SpecError> {
    let Some(text) = text else { return Ok(None) };
    let bad = || SpecError::Date {
        what,
        value: text.to_string(),
    };
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(bad());
    }
    text.parse().map(Some).map_err(|_| bad())
}

/// Whether `name` is a flow a campaign can run: `flows` lists every loaded flow with whether it
/// is outbound.
pub fn check_flow<'a>(name: &str, flows: impl IntoIterator<Item = (&'a str, bool)>) -> Result<(), SpecError> {
    let mut found = None;
    let mut outbound = Vec::new();
    for (flow, is_outbound) in flows {
        if flow == name {
            found = Some(is_outbound);
        }
        if is_outbound {
            outbound.push(flow);
        }
    }
    let outbound = if outbound.is_empty() {
        "none".to_string()
    } else {
        outbound.join(", ")
    };
    match found {
        Some(true) => Ok(()),
        Some(false) => Err(SpecError::InboundFlow {
            name: name.to_string(),
            outbound,
        }),
        None => Err(SpecError::UnknownFlow {
            name: name.to_string(),
            outbound,
        }),
    }
}

/// The campaign to create, with its caller id in E.164 (spaces, dashes and parentheses dropped)
/// and every setting checked. Whether the flow exists is [`check_flow`]'s business.
pub fn new_campaign(
    name: &str,
    flow: &str,
    caller_id: &str,
    spec: &SettingsSpec,
) -> Result<NewCampaign, SpecError> {
    let caller_id = PhoneNumber::parse(caller_id).map_err(SpecError::CallerId)?;
    // Text the databases may not store (PostgreSQL refuses NUL in TEXT).
    if name.contains('\0') {
        return Err(SpecError::Nul { what: "name" });
    }
    Ok(NewCampaign::new(
        name,
        flow,
        caller_id.as_str(),
        spec.to_settings()?,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_the_default_settings() {
        let spec = SettingsSpec::default();
        assert_eq!(spec.window, "09:00-20:00");
        assert_eq!(format_days(&spec.days_of_week), "mon-fri");
        assert_eq!(spec.voicemail, OnVoicemail::Leave);
        assert_eq!(spec.to_settings(), Ok(CampaignSettings::default()));
        // Every field may be left out of the JSON.
        let parsed: SettingsSpec = serde_json::from_str(r#"{"window": "10:00-12:30"}"#).expect("json");
        assert_eq!(parsed.max_attempts, CampaignSettings::default().max_attempts);
        let partial: SettingsSpec = serde_json::from_str(r#"{"retry_minutes": {"busy": 5}}"#).expect("json");
        assert_eq!(partial.retry_minutes.busy, 5);
        assert_eq!(partial.retry_minutes.no_answer, RetryMinutes::default().no_answer);
        assert!(serde_json::from_str::<SettingsSpec>(r#"{"windw": "10:00-12:00"}"#).is_err());
        // Whole numbers however JSON writes them; nothing a u32 cannot hold.
        let whole: SettingsSpec =
            serde_json::from_str(r#"{"max_attempts": 4.0, "max_concurrent": 4294967295}"#).expect("json");
        assert_eq!((whole.max_attempts, whole.max_concurrent), (4, u32::MAX));
        for bad in ["1.5", "-1", "4294967296", "\"3\""] {
            let json = format!(r#"{{"max_attempts": {bad}}}"#);
            assert!(serde_json::from_str::<SettingsSpec>(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_spec_round_trips_through_the_settings() {
        let spec = SettingsSpec {
            window: "08:00-21:00".into(),
            days_of_week: vec![Day::Sat, Day::Sun],
            start_date: Some("2026-05-01".into()),
            end_date: Some("2026-05-31".into()),
            max_attempts: 4,
            max_attempts_per_day: 1,
            retry_minutes: RetryMinutes {
                busy: 1,
                no_answer: 2,
                voicemail: 3,
                failed: 4,
            },
            max_concurrent: 2,
            calls_per_second: 0.5,
            voicemail: OnVoicemail::Hangup,
        };
        let settings = spec.to_settings().expect("valid");
        assert_eq!(settings.window, CallingWindow::new(480, 1260).expect("window"));
        assert_eq!(settings.days_of_week.bits(), 0b110_0000);
        assert_eq!(settings.voicemail, VoicemailAction::HangUp);
        assert_eq!(settings.retry.voicemail_minutes, 3);
        assert_eq!(SettingsSpec::from(&settings), spec);
    }

    #[test]
    fn windows_are_written_strictly_and_kept_within_the_legal_hours() {
        assert_eq!(
            parse_window("09:30-17:45").map(format_window),
            Ok("09:30-17:45".into())
        );
        for bad in [
            "9:00-20:00",
            "09:00–20:00",
            "09:00 - 20:00",
            "0900-2000",
            "24:00-25:00",
            "",
        ] {
            assert_eq!(
                parse_window(bad),
                Err(SpecError::WindowFormat(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_window("07:59-20:00"),
            Err(SpecError::WindowBounds(_))
        ));
        assert!(matches!(
            parse_window("09:00-21:01"),
            Err(SpecError::WindowBounds(_))
        ));
        assert!(matches!(
            parse_window("12:00-12:00"),
            Err(SpecError::WindowEmpty(_))
        ));
        let message = parse_window("06:00-20:00").expect_err("too early").to_string();
        assert!(
            message.contains("06:00-20:00") && message.contains("08:00-21:00"),
            "{message}"
        );
    }

    #[test]
    fn days_are_read_as_lists_and_ranges() {
        use Day::*;
        assert_eq!(parse_days("mon-fri"), Ok(vec![Mon, Tue, Wed, Thu, Fri]));
        assert_eq!(parse_days("Sunday, sat"), Ok(vec![Sat, Sun]));
        assert_eq!(parse_days("mon,wed-fri"), Ok(vec![Mon, Wed, Thu, Fri]));
        assert_eq!(parse_days("fri-mon"), Ok(vec![Mon, Fri, Sat, Sun]));
        assert_eq!(parse_days("tues"), Ok(vec![Tue]));
        assert!(parse_days("").is_err());
        assert!(parse_days("mon-funday").is_err());
        assert!(parse_days("mo").is_err());
        assert_eq!(format_days(&[Mon, Tue, Wed, Thu, Fri, Sun]), "mon-fri,sun");
        assert_eq!(format_days(&[Sat, Sun]), "sat,sun");
        assert_eq!(format_days(&Day::ALL), "mon-sun");
    }

    #[test]
    fn dates_and_the_rules_across_fields_are_checked() {
        let spec = |f: fn(&mut SettingsSpec)| {
            let mut s = SettingsSpec::default();
            f(&mut s);
            s.to_settings()
        };
        assert!(matches!(
            spec(|s| s.start_date = Some("2026-5-1".into())),
            Err(SpecError::Date {
                what: "start_date",
                ..
            })
        ));
        assert!(matches!(
            spec(|s| s.end_date = Some("2026-02-30".into())),
            Err(SpecError::Date { what: "end_date", .. })
        ));
        assert!(matches!(
            spec(|s| {
                s.start_date = Some("2026-06-01".into());
                s.end_date = Some("2026-05-01".into());
            }),
            Err(SpecError::Settings(SettingsError::DatesReversed { .. }))
        ));
        assert!(matches!(
            spec(|s| s.days_of_week.clear()),
            Err(SpecError::Days(_))
        ));
        assert!(matches!(
            spec(|s| s.max_concurrent = 0),
            Err(SpecError::Settings(SettingsError::Zero {
                what: "max_concurrent"
            }))
        ));
    }

    #[test]
    fn a_new_campaign_has_an_e164_caller_id_and_an_outbound_flow() {
        let spec = SettingsSpec::default();
        let c = new_campaign("Reminders", "outbound_appointment", "+1 (555) 010-0199", &spec).expect("valid");
        assert_eq!(c.caller_id(), "+15550100199");
        assert!(matches!(
            new_campaign("R", "f", "5550100199", &spec),
            Err(SpecError::CallerId(PhoneError::NoPlus(_)))
        ));
        assert_eq!(
            new_campaign("a\0b", "f", "+15550100199", &spec),
            Err(SpecError::Nul { what: "name" })
        );
        assert!(matches!(
            new_campaign(" ", "f", "+15550100199", &spec),
            Err(SpecError::Settings(SettingsError::Empty { what: "name" }))
        ));
        let flows = [
            ("inbound_support", false),
            ("outbound_survey", true),
            ("outbound_appointment", true),
        ];
        assert_eq!(check_flow("outbound_survey", flows), Ok(()));
        let inbound = check_flow("inbound_support", flows)
            .expect_err("inbound")
            .to_string();
        assert!(
            inbound.contains("inbound") && inbound.contains("outbound_survey, outbound_appointment"),
            "{inbound}"
        );
        let unknown = check_flow("nope", flows).expect_err("unknown").to_string();
        assert!(unknown.contains("`nope` is not loaded"), "{unknown}");
        assert!(
            check_flow("x", [])
                .expect_err("none")
                .to_string()
                .ends_with("none")
        );
    }
}
