//! The provider's form webhooks: the voice webhook (a call arrived or was answered), status callbacks,
//! and asynchronous answering-machine-detection results.
//!
//! A body is first decoded into [`FormParams`], the raw name/value pairs in the order sent, because the
//! signature is computed over exactly those; the typed structs are then read out of them. Parsing is
//! lenient where the provider is known to vary (unknown fields are ignored, optional fields may be
//! absent) and strict where the runtime depends on a value (a missing `CallSid` or an unknown
//! `CallStatus` is an error naming the field).

use std::fmt;
use std::str::FromStr;

use serde::de::IntoDeserializer as _;
use serde::{Deserialize, Serialize};

/// Why a webhook body could not be read. The server answers 400 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook field {field} is missing")]
    Missing { field: &'static str },
    #[error("webhook field {field} has an invalid value {value:?}: expected {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// The decoded `application/x-www-form-urlencoded` pairs of a webhook, in the order they were sent.
/// Kept whole (repeated names included) because the signature covers every pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormParams(Vec<(String, String)>);

impl FormParams {
    /// Decodes a form body. Never fails: invalid percent-escapes are kept literally and invalid UTF-8 is
    /// replaced, which can only make a later signature check or field lookup fail, as it should.
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value sent for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every pair, for [`crate::signature::validate`].
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    fn required(&self, field: &'static str) -> Result<&str, WebhookError> {
        self.get(field).ok_or(WebhookError::Missing { field })
    }

    fn text(&self, field: &'static str) -> Option<String> {
        self.get(field).filter(|v| !v.is_empty()).map(str::to_owned)
    }

    fn parsed<T: FromStr>(
        &self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, WebhookError> {
        match self.get(field).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| invalid(field, v, expected)),
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for FormParams {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

fn invalid(field: &'static str, value: &str, expected: &'static str) -> WebhookError {
    // Bound what a hostile body can put in a log line.
    let value: String = value.chars().take(64).collect();
    WebhookError::Invalid {
        field,
        value,
        expected,
    }
}

/// Lets the serde renames be the single spelling of each wire value, for forms and JSON alike.
macro_rules! wire_enum_str {
    ($t:ty, $expected:literal) => {
        impl $t {
            /// What values are accepted, for error messages.
            pub const EXPECTED: &'static str = $expected;
        }

        impl FromStr for $t {
            type Err = serde::de::value::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::deserialize(s.into_deserializer())
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // A unit variant serializes to its wire name; serde_json adds the quotes.
                let quoted = serde_json::to_string(self).map_err(|_| fmt::Error)?;
                f.write_str(quoted.trim_matches('"'))
            }
        }
    };
}

/// Where a call is in its life, as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    Queued,
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}
wire_enum_str!(
    CallStatus,
    "queued, initiated, ringing, in-progress, completed, busy, failed, no-answer or canceled"
);

impl CallStatus {
    /// The call is over; no further status will follow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Busy | Self::Failed | Self::NoAnswer | Self::Canceled
        )
    }
}

/// Who started the call leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Inbound,
    OutboundApi,
    OutboundDial,
    TrunkingOriginating,
    TrunkingTerminating,
}
wire_enum_str!(
    Direction,
    "inbound, outbound-api, outbound-dial, trunking-originating or trunking-terminating"
);

/// The answering-machine-detection verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Human,
    MachineStart,
    MachineEndBeep,
    MachineEndSilence,
    MachineEndOther,
    Fax,
    Unknown,
}
wire_enum_str!(
    AnsweredBy,
    "human, machine_start, machine_end_beep, machine_end_silence, machine_end_other, fax or unknown"
);

impl AnsweredBy {
    pub fn is_machine(self) -> bool {
        matches!(
            self,
            Self::MachineStart | Self::MachineEndBeep | Self::MachineEndSilence | Self::MachineEndOther
        )
    }
}

fn required_enum<T: FromStr>(
    p: &FormParams,
    field: &'static str,
    expected: &'static str,
) -> Result<T, WebhookError> {
    let v = p.required(field)?;
    v.parse().map_err(|_| invalid(field, v, expected))
}

/// The voice webhook: the provider asks what to do with a call (an inbound call ringing, an outbound call
/// answered, or a `<Gather>`/`<Redirect>` action). The answer is TwiML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceWebhook {
    pub call_sid: String,
    pub account_sid: String,
    /// E.164, or `client:…` / `sip:…`; `anonymous` or empty when the caller hides their number.
    pub from: String,
    pub to: String,
    pub call_status: CallStatus,
    pub direction: Direction,
    pub api_version: Option<String>,
    pub caller_name: Option<String>,
    pub forwarded_from: Option<String>,
    pub parent_call_sid: Option<String>,
    /// Present when the machine-detection result came synchronously.
    pub answered_by: Option<AnsweredBy>,
    /// `<Gather>` results.
    pub digits: Option<String>,
    pub speech_result: Option<String>,
    params: FormParams,
}

impl VoiceWebhook {
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        Self::from_params(FormParams::parse(body))
    }

    pub fn from_params(params: FormParams) -> Result<Self, WebhookError> {
        let p = &params;
        Ok(Self {
            call_sid: p.required("CallSid")?.to_owned(),
            account_sid: p.required("AccountSid")?.to_owned(),
            // Present but possibly empty for withheld numbers, so only absence is an error.
            from: p.required("From")?.to_owned(),
            to: p.required("To")?.to_owned(),
            call_status: required_enum(p, "CallStatus", CallStatus::EXPECTED)?,
            direction: required_enum(p, "Direction", Direction::EXPECTED)?,
            api_version: p.text("ApiVersion"),
            caller_name: p.text("CallerName"),
            forwarded_from: p.text("ForwardedFrom"),
            parent_call_sid: p.text("ParentCallSid"),
            answered_by: p.parsed("AnsweredBy", AnsweredBy::EXPECTED)?,
            digits: p.text("Digits"),
            speech_result: p.text("SpeechResult"),
            params,
        })
    }

    /// The raw pairs, for signature validation and for fields not modelled here.
    pub fn params(&self) -> &FormParams {
        &self.params
    }
}

/// A call status callback (`StatusCallback` URL). Callbacks can arrive out of order: order them by
/// [`StatusCallback::sequence_number`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    pub call_sid: String,
    pub account_sid: String,
    pub call_status: CallStatus,
    pub from: Option<String>,
    pub to: Option<String>,
    pub direction: Option<Direction>,
    pub sequence_number: Option<u32>,
    /// Seconds, sent once the call has ended.
    pub call_duration: Option<u32>,
    /// RFC 2822, as sent.
    pub timestamp: Option<String>,
    pub answered_by: Option<AnsweredBy>,
    /// Which event this callback reports (`initiated`, `ringing`, `answered`, `completed`).
    pub callback_source: Option<String>,
    /// The SIP response code when a call failed.
    pub sip_response_code: Option<u16>,
    params: FormParams,
}

impl StatusCallback {
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        Self::from_params(FormParams::parse(body))
    }

    pub fn from_params(params: FormParams) -> Result<Self, WebhookError> {
        let p = &params;
        Ok(Self {
            call_sid: p.required("CallSid")?.to_owned(),
            account_sid: p.required("AccountSid")?.to_owned(),
            call_status: required_enum(p, "CallStatus", CallStatus::EXPECTED)?,
            from: p.get("From").map(str::to_owned),
            to: p.get("To").map(str::to_owned),
            direction: p.parsed("Direction", Direction::EXPECTED)?,
            sequence_number: p.parsed("SequenceNumber", "a non-negative integer")?,
            call_duration: p.parsed("CallDuration", "a whole number of seconds")?,
            timestamp: p.text("Timestamp"),
            answered_by: p.parsed("AnsweredBy", AnsweredBy::EXPECTED)?,
            callback_source: p.text("CallbackSource"),
            sip_response_code: p.parsed("SipResponseCode", "a SIP status code")?,
            params,
        })
    }

    pub fn params(&self) -> &FormParams {
        &self.params
    }
}

/// The asynchronous answering-machine-detection result (`AsyncAmdStatusCallback` URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmdCallback {
    pub call_sid: String,
    pub account_sid: String,
    pub answered_by: AnsweredBy,
    /// How long detection took, in milliseconds.
    pub machine_detection_duration_ms: Option<u32>,
    params: FormParams,
}

impl AmdCallback {
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        Self::from_params(FormParams::parse(body))
    }

    pub fn from_params(params: FormParams) -> Result<Self, WebhookError> {
        let p = &params;
        Ok(Self {
            call_sid: p.required("CallSid")?.to_owned(),
            account_sid: p.required("AccountSid")?.to_owned(),
            answered_by: required_enum(p, "AnsweredBy", AnsweredBy::EXPECTED)?,
            machine_detection_duration_ms: p.parsed("MachineDetectionDuration", "milliseconds")?,
            params,
        })
    }

    pub fn params(&self) -> &FormParams {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthToken;
    use crate::signature;

    const INBOUND: &str = "AccountSid=AC00000000000000000000000000000001&ApiVersion=2010-04-01\
        &CallSid=CA00000000000000000000000000000001&CallStatus=ringing&Called=%2B15005550006\
        &Caller=%2B14155550100&Direction=inbound&From=%2B14155550100&To=%2B15005550006";

    #[test]
    fn parses_an_inbound_call_and_keeps_the_raw_pairs_for_the_signature() -> Result<(), WebhookError> {
        let hook = VoiceWebhook::parse(INBOUND.as_bytes())?;
        assert_eq!(hook.call_sid, "CA00000000000000000000000000000001");
        assert_eq!(hook.account_sid, "AC00000000000000000000000000000001");
        assert_eq!(hook.from, "+14155550100");
        assert_eq!(hook.to, "+15005550006");
        assert_eq!(hook.call_status, CallStatus::Ringing);
        assert_eq!(hook.direction, Direction::Inbound);
        assert_eq!(hook.api_version.as_deref(), Some("2010-04-01"));
        assert_eq!(hook.caller_name, None);
        assert_eq!(hook.params().get("Called"), Some("+15005550006"));
        assert_eq!(hook.params().pairs().len(), 9);
        // Vector B of PROTOCOLS.md, validated from the parsed body.
        let token = AuthToken::new("test_auth_token_0123456789abcdef");
        assert_eq!(
            signature::validate(
                &token,
                "https://voice.example.com/twilio/voice",
                hook.params().pairs(),
                Some("8pPNfufjxypDRJOJWWYplASyt00=")
            ),
            Ok(())
        );
        Ok(())
    }

    #[test]
    fn unknown_fields_are_ignored_and_optional_ones_read() -> Result<(), WebhookError> {
        let body = format!(
            "{INBOUND}&FromCity=SAN+FRANCISCO&StirVerstat=TN-Validation-Passed-A&CallerName=Jane+Doe\
             &Digits=42&SpeechResult=talk+to+a+human&AnsweredBy=human"
        );
        let hook = VoiceWebhook::parse(body.as_bytes())?;
        assert_eq!(hook.caller_name.as_deref(), Some("Jane Doe"));
        assert_eq!(hook.digits.as_deref(), Some("42"));
        assert_eq!(hook.speech_result.as_deref(), Some("talk to a human"));
        assert_eq!(hook.answered_by, Some(AnsweredBy::Human));
        assert_eq!(hook.params().get("FromCity"), Some("SAN FRANCISCO"));
        Ok(())
    }

    #[test]
    fn missing_field_is_named() {
        let body = INBOUND.replace("&CallSid=CA00000000000000000000000000000001", "");
        assert_eq!(
            VoiceWebhook::parse(body.as_bytes()),
            Err(WebhookError::Missing { field: "CallSid" })
        );
        assert_eq!(
            VoiceWebhook::parse(b""),
            Err(WebhookError::Missing { field: "CallSid" })
        );
        let err = VoiceWebhook::parse(b"CallSid=CA1&AccountSid=AC1&From=x").expect_err("no To");
        assert_eq!(err.to_string(), "webhook field To is missing");
    }

    #[test]
    fn bad_enum_value_is_named_with_what_was_expected() {
        let body = INBOUND.replace("CallStatus=ringing", "CallStatus=exploded");
        let err = VoiceWebhook::parse(body.as_bytes()).expect_err("bad status");
        assert_eq!(
            err,
            WebhookError::Invalid {
                field: "CallStatus",
                value: "exploded".into(),
                expected: CallStatus::EXPECTED
            }
        );
        assert!(err.to_string().contains("in-progress"), "{err}");
        let body = INBOUND.replace("Direction=inbound", "Direction=sideways");
        assert!(matches!(
            VoiceWebhook::parse(body.as_bytes()),
            Err(WebhookError::Invalid {
                field: "Direction",
                ..
            })
        ));
    }

    #[test]
    fn hostile_values_are_truncated_in_errors() {
        let body = format!(
            "{}&SequenceNumber={}",
            status_body("completed"),
            "9".repeat(10_000)
        );
        let err = StatusCallback::parse(body.as_bytes()).expect_err("overflow");
        match err {
            WebhookError::Invalid { field, value, .. } => {
                assert_eq!(field, "SequenceNumber");
                assert_eq!(value.len(), 64);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn status_body(status: &str) -> String {
        format!(
            "AccountSid=AC1&CallSid=CA1&CallStatus={status}&From=%2B15005550001&To=%2B15005550006\
             &Direction=outbound-api&ApiVersion=2010-04-01"
        )
    }

    #[test]
    fn status_callback_with_duration_sequence_and_amd() -> Result<(), WebhookError> {
        let body = format!(
            "{}&CallDuration=37&SequenceNumber=3&Timestamp=Tue%2C+10+Jan+2023+19%3A08%3A51+%2B0000\
             &AnsweredBy=machine_end_beep&CallbackSource=call-progress-events&SipResponseCode=200",
            status_body("completed")
        );
        let cb = StatusCallback::parse(body.as_bytes())?;
        assert_eq!(cb.call_status, CallStatus::Completed);
        assert!(cb.call_status.is_final());
        assert_eq!(cb.call_duration, Some(37));
        assert_eq!(cb.sequence_number, Some(3));
        assert_eq!(cb.timestamp.as_deref(), Some("Tue, 10 Jan 2023 19:08:51 +0000"));
        assert_eq!(cb.answered_by, Some(AnsweredBy::MachineEndBeep));
        assert!(cb.answered_by.is_some_and(AnsweredBy::is_machine));
        assert_eq!(cb.direction, Some(Direction::OutboundApi));
        assert_eq!(cb.sip_response_code, Some(200));
        assert_eq!(cb.from.as_deref(), Some("+15005550001"));
        Ok(())
    }

    #[test]
    fn status_callback_optional_fields_may_be_absent_but_not_malformed() -> Result<(), WebhookError> {
        let cb = StatusCallback::parse(b"CallSid=CA1&AccountSid=AC1&CallStatus=ringing")?;
        assert_eq!(cb.sequence_number, None);
        assert_eq!(cb.call_duration, None);
        assert!(!cb.call_status.is_final());
        let err = StatusCallback::parse(b"CallSid=CA1&AccountSid=AC1&CallStatus=ringing&CallDuration=-4")
            .expect_err("negative");
        assert!(matches!(
            err,
            WebhookError::Invalid {
                field: "CallDuration",
                ..
            }
        ));
        Ok(())
    }

    #[test]
    fn every_call_status_round_trips_through_its_wire_name() -> Result<(), serde::de::value::Error> {
        let names = [
            "queued",
            "initiated",
            "ringing",
            "in-progress",
            "completed",
            "busy",
            "failed",
            "no-answer",
            "canceled",
        ];
        for name in names {
            let status: CallStatus = name.parse()?;
            assert_eq!(status.to_string(), name);
            assert_eq!(serde_json::to_string(&status).ok(), Some(format!("\"{name}\"")));
        }
        assert_eq!("in-progress".parse::<CallStatus>()?, CallStatus::InProgress);
        assert!("In-Progress".parse::<CallStatus>().is_err());
        assert_eq!(AnsweredBy::MachineEndSilence.to_string(), "machine_end_silence");
        assert_eq!(Direction::OutboundDial.to_string(), "outbound-dial");
        Ok(())
    }

    #[test]
    fn amd_callback() -> Result<(), WebhookError> {
        let cb =
            AmdCallback::parse(b"CallSid=CA1&AccountSid=AC1&AnsweredBy=fax&MachineDetectionDuration=2410")?;
        assert_eq!(cb.answered_by, AnsweredBy::Fax);
        assert_eq!(cb.machine_detection_duration_ms, Some(2410));
        assert_eq!(
            AmdCallback::parse(b"CallSid=CA1&AccountSid=AC1"),
            Err(WebhookError::Missing { field: "AnsweredBy" })
        );
        Ok(())
    }

    #[test]
    fn form_decoding_is_lenient_and_keeps_repeats() {
        let p = FormParams::parse(b"a=1&a=2&b=%ZZ&c=%E2%98%95&d=%FF&=e&f");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.pairs().iter().filter(|(k, _)| k == "a").count(), 2);
        assert_eq!(p.get("b"), Some("%ZZ"));
        assert_eq!(p.get("c"), Some("☕"));
        assert_eq!(p.get("d"), Some("\u{FFFD}"));
        assert_eq!(p.get(""), Some("e"));
        assert_eq!(p.get("f"), Some(""));
        assert_eq!(p.get("missing"), None);
    }
}
