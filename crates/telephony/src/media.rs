//! The Media Streams WebSocket codec: JSON text frames to and from the provider.
//!
//! The types mirror the wire exactly (camelCase names, numbers sent as strings) so that a stand-in provider
//! in tests can produce the same bytes with `serde_json::to_string`, while the fields are typed for the
//! runtime: sequence numbers, chunks and timestamps are `u64`, audio is decoded mu-law bytes.
//!
//! [`parse_inbound`] sorts failures into kinds the server treats differently: a frame that is not JSON,
//! an event this codec does not know (ignored and logged by name: the provider adds events over time), a
//! known event with bad fields, and audio that is not base64.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// Tolerates missing padding on input; output always uses standard padded base64.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One message from the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum Inbound {
    /// The socket is open; no call data yet.
    Connected { protocol: String, version: String },
    /// The stream's metadata, once, before any audio.
    Start {
        #[serde(with = "num_string")]
        sequence_number: u64,
        start: StartMeta,
        stream_sid: String,
    },
    /// 20 ms of caller audio.
    Media {
        #[serde(with = "num_string")]
        sequence_number: u64,
        media: InboundMedia,
        stream_sid: String,
    },
    /// The caller pressed a key.
    Dtmf {
        #[serde(with = "num_string")]
        sequence_number: u64,
        dtmf: Dtmf,
        stream_sid: String,
    },
    /// Audio queued before the mark with this name has played (or was cleared).
    Mark {
        #[serde(with = "num_string")]
        sequence_number: u64,
        mark: MarkName,
        stream_sid: String,
    },
    /// The stream ended: the call hung up or the stream was stopped.
    Stop {
        #[serde(with = "num_string")]
        sequence_number: u64,
        stop: StopMeta,
        stream_sid: String,
    },
}

impl Inbound {
    /// The wire name of the event.
    pub fn event(&self) -> &'static str {
        match self {
            Inbound::Connected { .. } => "connected",
            Inbound::Start { .. } => "start",
            Inbound::Media { .. } => "media",
            Inbound::Dtmf { .. } => "dtmf",
            Inbound::Mark { .. } => "mark",
            Inbound::Stop { .. } => "stop",
        }
    }

    /// The message's place in the stream (all but `connected` carry one).
    pub fn sequence_number(&self) -> Option<u64> {
        match self {
            Inbound::Connected { .. } => None,
            Inbound::Start { sequence_number, .. }
            | Inbound::Media { sequence_number, .. }
            | Inbound::Dtmf { sequence_number, .. }
            | Inbound::Mark { sequence_number, .. }
            | Inbound::Stop { sequence_number, .. } => Some(*sequence_number),
        }
    }
}

const INBOUND_EVENTS: [&str; 6] = ["connected", "start", "media", "dtmf", "mark", "stop"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartMeta {
    pub stream_sid: String,
    pub account_sid: String,
    pub call_sid: String,
    /// `inbound`, `outbound`, or both.
    pub tracks: Vec<String>,
    /// The `<Parameter>`s of the `<Stream>` verb.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    /// `audio/x-mulaw` for phone calls.
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMedia {
    /// `inbound` (the caller) or `outbound` (what the provider played).
    pub track: String,
    /// Counts chunks from 1 for each track.
    #[serde(with = "num_string")]
    pub chunk: u64,
    /// Milliseconds since the stream started.
    #[serde(with = "num_string")]
    pub timestamp: u64,
    /// Raw mu-law at 8 kHz, no header.
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dtmf {
    /// `inbound_track`.
    pub track: String,
    /// `0`–`9`, `*`, `#`.
    pub digit: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkName {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopMeta {
    pub account_sid: String,
    pub call_sid: String,
}

/// One message to the provider (bidirectional streams only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase", rename_all_fields = "camelCase")]
pub enum Outbound {
    /// Audio to queue for playback.
    Media {
        stream_sid: String,
        media: OutboundMedia,
    },
    /// Ask to be told (by an inbound `mark`) when the audio queued so far has played.
    Mark { stream_sid: String, mark: MarkName },
    /// Drop all queued audio (barge-in); pending marks come back.
    Clear { stream_sid: String },
}

impl Outbound {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("string keys and plain values always serialize")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMedia {
    /// Raw mu-law at 8 kHz, no header.
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
}

/// Why a text frame from the provider was not understood.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media-stream frame is not a JSON object: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("media-stream message has no \"event\" name")]
    NoEvent,
    #[error("unknown media-stream event {event:?}")]
    UnknownEvent { event: String },
    #[error("media-stream {event} message is malformed: {source}")]
    BadFields {
        event: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("media-stream audio payload is not base64: {0}")]
    Payload(#[source] base64::DecodeError),
}

/// Decodes one text frame from the provider.
pub fn parse_inbound(text: &str) -> Result<Inbound, MediaError> {
    match serde_json::from_str::<Inbound>(text) {
        Ok(message) => Ok(message),
        Err(err) => Err(classify(text, err)),
    }
}

/// Works out, on the error path only, which kind of failure a frame is.
fn classify(text: &str, err: serde_json::Error) -> MediaError {
    #[derive(Deserialize)]
    struct Probe {
        event: Option<String>,
        media: Option<PayloadProbe>,
    }
    #[derive(Deserialize)]
    struct PayloadProbe {
        payload: Option<String>,
    }
    let probe = match serde_json::from_str::<Probe>(text) {
        Ok(probe) => probe,
        // An object whose `event` or `media` has the wrong type is still JSON with a known shape problem.
        Err(probe_err) if probe_err.is_data() => match lenient_event(text) {
            Some(event) => return known_or_unknown(event, err),
            // An object whose `event` is not a string has no usable event name.
            None if serde_json::from_str::<BTreeMap<String, IgnoredAny>>(text).is_ok() => {
                return MediaError::NoEvent;
            }
            None => return MediaError::NotJson(probe_err),
        },
        Err(probe_err) => return MediaError::NotJson(probe_err),
    };
    let Some(event) = probe.event else {
        return MediaError::NoEvent;
    };
    if event == "media"
        && let Some(Err(e)) = probe.media.and_then(|m| m.payload).map(|p| LENIENT.decode(p))
    {
        return MediaError::Payload(e);
    }
    known_or_unknown(event, err)
}

fn known_or_unknown(event: String, err: serde_json::Error) -> MediaError {
    match INBOUND_EVENTS.iter().find(|&&e| e == event) {
        Some(&event) => MediaError::BadFields { event, source: err },
        None => {
            let event = event.chars().take(64).collect();
            MediaError::UnknownEvent { event }
        }
    }
}

/// The event name of an object whose other fields did not fit the probe.
fn lenient_event(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct EventOnly {
        event: String,
    }
    serde_json::from_str::<EventOnly>(text).ok().map(|e| e.event)
}

/// The JSON text of an outbound `media` message for raw 8 kHz mu-law audio.
pub fn outbound_media(stream_sid: &str, mulaw: &[u8]) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Msg<'a> {
        event: &'static str,
        stream_sid: &'a str,
        media: Payload,
    }
    #[derive(Serialize)]
    struct Payload {
        payload: String,
    }
    let msg = Msg {
        event: "media",
        stream_sid,
        media: Payload {
            payload: STANDARD.encode(mulaw),
        },
    };
    serde_json::to_string(&msg).expect("string fields always serialize")
}

/// The JSON text of an outbound `mark` message.
pub fn outbound_mark(stream_sid: &str, name: &str) -> String {
    Outbound::Mark {
        stream_sid: stream_sid.to_owned(),
        mark: MarkName {
            name: name.to_owned(),
        },
    }
    .to_json()
}

/// The JSON text of an outbound `clear` message.
pub fn outbound_clear(stream_sid: &str) -> String {
    Outbound::Clear {
        stream_sid: stream_sid.to_owned(),
    }
    .to_json()
}

/// Decodes a base64 audio payload as the provider sends it.
pub fn decode_payload(payload: &str) -> Result<Vec<u8>, MediaError> {
    LENIENT.decode(payload).map_err(MediaError::Payload)
}

/// Numbers the provider sends as JSON strings. A bare JSON number is accepted too (other providers and
/// hand-written test frames use them); output is always a string.
mod num_string {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(NumVisitor)
    }

    struct NumVisitor;

    impl serde::de::Visitor<'_> for NumVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a non-negative integer in a string")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<u64, E> {
            s.parse()
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(s), &self))
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u64, E> {
            Ok(n)
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
        }
    }
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        super::LENIENT
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TONE_20MS: &str = "/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKQ==";
    /// The tone vector exactly as printed in PROTOCOLS.md: 23 periods (184 bytes, 23 ms), not 20 ms.
    const TONE_AS_PRINTED: &str = "/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKQ==";
    const TONE_PERIOD: [u8; 8] = [0xff, 0xa9, 0xa0, 0xa9, 0xff, 0x29, 0x20, 0x29];

    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ11","start":{"streamSid":"MZ11","accountSid":"AC11","callSid":"CA11","tracks":["inbound"],"customParameters":{"agent":"support"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

    fn media_json(payload: &str) -> String {
        format!(
            r#"{{"event":"media","sequenceNumber":"3","streamSid":"MZ11","media":{{"track":"inbound","chunk":"1","timestamp":"5","payload":"{payload}"}}}}"#
        )
    }

    /// Parses, re-serializes and compares as JSON values, so key order does not matter but every field does.
    fn round_trip(text: &str) -> Result<Inbound, MediaError> {
        let message = parse_inbound(text)?;
        let again = serde_json::to_value(&message).map_err(MediaError::NotJson)?;
        let original: serde_json::Value = serde_json::from_str(text).map_err(MediaError::NotJson)?;
        assert_eq!(again, original, "{text}");
        Ok(message)
    }

    #[test]
    fn connected() -> Result<(), MediaError> {
        let m = round_trip(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)?;
        assert_eq!(
            m,
            Inbound::Connected {
                protocol: "Call".into(),
                version: "1.0.0".into()
            }
        );
        assert_eq!(m.sequence_number(), None);
        Ok(())
    }

    #[test]
    fn start_with_custom_parameters() -> Result<(), MediaError> {
        let m = round_trip(START)?;
        let Inbound::Start {
            sequence_number,
            start,
            stream_sid,
        } = &m
        else {
            panic!("not start: {m:?}")
        };
        assert_eq!(*sequence_number, 1);
        assert_eq!(stream_sid, "MZ11");
        assert_eq!(start.call_sid, "CA11");
        assert_eq!(start.account_sid, "AC11");
        assert_eq!(start.tracks, ["inbound"]);
        assert_eq!(
            start.custom_parameters.get("agent").map(String::as_str),
            Some("support")
        );
        assert_eq!(
            start.media_format,
            MediaFormat {
                encoding: "audio/x-mulaw".into(),
                sample_rate: 8000,
                channels: 1
            }
        );
        Ok(())
    }

    #[test]
    fn start_without_custom_parameters_and_with_extra_fields() -> Result<(), MediaError> {
        let text = START.replace(
            r#""customParameters":{"agent":"support"},"#,
            r#""newField":[1,2],"#,
        );
        let Inbound::Start { start, .. } = parse_inbound(&text)? else {
            panic!("not start")
        };
        assert!(start.custom_parameters.is_empty());
        Ok(())
    }

    #[test]
    fn media_decodes_a_20ms_tone() -> Result<(), MediaError> {
        assert_eq!(TONE_20MS.len(), 216);
        let m = round_trip(&media_json(TONE_20MS))?;
        let Inbound::Media {
            sequence_number,
            media,
            stream_sid,
        } = m
        else {
            panic!("not media")
        };
        assert_eq!((sequence_number, stream_sid.as_str()), (3, "MZ11"));
        assert_eq!(
            (media.track.as_str(), media.chunk, media.timestamp),
            ("inbound", 1, 5)
        );
        assert_eq!(media.payload.len(), 160);
        assert_eq!(media.payload, TONE_PERIOD.repeat(20));
        Ok(())
    }

    #[test]
    fn the_printed_tone_vector_is_184_bytes() -> Result<(), MediaError> {
        let bytes = decode_payload(TONE_AS_PRINTED)?;
        assert_eq!(bytes.len(), 184);
        assert_eq!(bytes, TONE_PERIOD.repeat(23));
        Ok(())
    }

    #[test]
    fn dtmf_mark_stop() -> Result<(), MediaError> {
        let m = round_trip(
            r#"{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ11","dtmf":{"track":"inbound_track","digit":"1"}}"#,
        )?;
        assert_eq!(
            m,
            Inbound::Dtmf {
                sequence_number: 5,
                dtmf: Dtmf {
                    track: "inbound_track".into(),
                    digit: "1".into()
                },
                stream_sid: "MZ11".into()
            }
        );
        let m = round_trip(
            r#"{"event":"mark","sequenceNumber":"6","streamSid":"MZ11","mark":{"name":"utt-17"}}"#,
        )?;
        assert_eq!(
            m,
            Inbound::Mark {
                sequence_number: 6,
                mark: MarkName {
                    name: "utt-17".into()
                },
                stream_sid: "MZ11".into()
            }
        );
        let m = round_trip(
            r#"{"event":"stop","sequenceNumber":"7","streamSid":"MZ11","stop":{"accountSid":"AC11","callSid":"CA11"}}"#,
        )?;
        assert_eq!(m.event(), "stop");
        assert_eq!(m.sequence_number(), Some(7));
        let Inbound::Stop { stop, .. } = m else {
            panic!("not stop")
        };
        assert_eq!(
            stop,
            StopMeta {
                account_sid: "AC11".into(),
                call_sid: "CA11".into()
            }
        );
        Ok(())
    }

    #[test]
    fn outbound_messages_match_the_wire_format() -> Result<(), serde_json::Error> {
        let silence = [0xFFu8; 160];
        let text = outbound_media("MZ11", &silence);
        let v: serde_json::Value = serde_json::from_str(&text)?;
        assert_eq!(v["event"], "media");
        assert_eq!(v["streamSid"], "MZ11");
        let payload = v["media"]["payload"].as_str().expect("payload string");
        assert_eq!(payload.len(), 216);
        assert_eq!(STANDARD.decode(payload).ok(), Some(silence.to_vec()));
        assert_eq!(v.as_object().map(|o| o.len()), Some(3));
        assert_eq!(v["media"].as_object().map(|o| o.len()), Some(1));
        // The borrowed fast path and the enum agree byte for byte.
        let via_enum = Outbound::Media {
            stream_sid: "MZ11".into(),
            media: OutboundMedia {
                payload: silence.to_vec(),
            },
        };
        assert_eq!(via_enum.to_json(), text);
        assert_eq!(serde_json::from_str::<Outbound>(&text)?, via_enum);

        let tone = outbound_media("MZ11", &TONE_PERIOD.repeat(20));
        assert!(tone.contains(&format!(r#""payload":"{TONE_20MS}""#)), "{tone}");

        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&outbound_mark("MZ11", "utt-17"))?,
            serde_json::json!({"event":"mark","streamSid":"MZ11","mark":{"name":"utt-17"}})
        );
        assert_eq!(outbound_clear("MZ11"), r#"{"event":"clear","streamSid":"MZ11"}"#);
        // Names with quotes stay valid JSON.
        let odd = outbound_mark("MZ\"1", "a\\b\"c");
        assert_eq!(
            serde_json::from_str::<Outbound>(&odd)?,
            Outbound::Mark {
                stream_sid: "MZ\"1".into(),
                mark: MarkName {
                    name: "a\\b\"c".into()
                }
            }
        );
        Ok(())
    }

    #[test]
    fn not_json() {
        for text in [
            "",
            "   ",
            "{",
            "media",
            "\u{0}\u{1}\u{ff}",
            "[1,2]",
            "42",
            "null",
            r#""event""#,
        ] {
            let err = parse_inbound(text).expect_err(text);
            assert!(matches!(err, MediaError::NotJson(_)), "{text:?}: {err:?}");
        }
    }

    #[test]
    fn unknown_event_keeps_its_name() {
        let err =
            parse_inbound(r#"{"event":"playedStream","sequenceNumber":"9","foo":{}}"#).expect_err("unknown");
        assert!(
            matches!(&err, MediaError::UnknownEvent { event } if event == "playedStream"),
            "{err:?}"
        );
        // An event name whose case differs is not one we know.
        let err = parse_inbound(r#"{"event":"Media"}"#).expect_err("case");
        assert!(
            matches!(&err, MediaError::UnknownEvent { event } if event == "Media"),
            "{err:?}"
        );
    }

    #[test]
    fn no_event() {
        for text in [
            r#"{}"#,
            r#"{"sequenceNumber":"1"}"#,
            r#"{"event":null}"#,
            r#"{"event":5}"#,
            r#"{"event":{}}"#,
        ] {
            assert!(matches!(parse_inbound(text), Err(MediaError::NoEvent)), "{text}");
        }
    }

    #[test]
    fn known_event_with_bad_fields() {
        let cases = [
            r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ11"}"#.to_string(),
            media_json(TONE_20MS).replace(r#""chunk":"1""#, r#""chunk":"one""#),
            media_json(TONE_20MS).replace(r#""sequenceNumber":"3""#, r#""sequenceNumber":"-3""#),
            media_json(TONE_20MS).replace(
                r#""sequenceNumber":"3""#,
                r#""sequenceNumber":"99999999999999999999999""#,
            ),
            media_json(TONE_20MS).replace(r#""sequenceNumber":"3""#, r#""sequenceNumber":1e400"#),
            media_json(TONE_20MS).replace(r#""streamSid":"MZ11""#, r#""streamSid":7"#),
            START.replace(r#""sampleRate":8000"#, r#""sampleRate":"8000""#),
            START.replace(r#""channels":1"#, r#""channels":70000"#),
            START.replace(r#"["inbound"]"#, r#""inbound""#),
            r#"{"event":"connected"}"#.to_string(),
            r#"{"event":"stop","sequenceNumber":"7","streamSid":"MZ11","stop":null}"#.to_string(),
            r#"{"event":"media","media":42}"#.to_string(),
            r#"{"event":"media","media":{"payload":7}}"#.to_string(),
        ];
        for text in &cases {
            let err = parse_inbound(text).expect_err(text);
            assert!(matches!(err, MediaError::BadFields { .. }), "{text}: {err:?}");
        }
        let err = parse_inbound(&cases[0]).expect_err("missing media");
        assert!(
            err.to_string()
                .contains("media-stream media message is malformed"),
            "{err}"
        );
    }

    #[test]
    fn numbers_may_also_come_as_json_numbers() -> Result<(), MediaError> {
        let text = media_json(TONE_20MS).replace(r#""sequenceNumber":"3""#, r#""sequenceNumber":3"#);
        assert_eq!(parse_inbound(&text)?.sequence_number(), Some(3));
        Ok(())
    }

    #[test]
    fn bad_base64_is_its_own_error() -> Result<(), MediaError> {
        for bad in ["!!!!", "/6mgq f8=", "\u{e9}t\u{e9}", "A"] {
            let err = parse_inbound(&media_json(bad)).expect_err(bad);
            assert!(matches!(err, MediaError::Payload(_)), "{bad}: {err:?}");
        }
        assert!(matches!(decode_payload("@@@"), Err(MediaError::Payload(_))));
        // Missing padding is tolerated; an empty payload is empty audio.
        assert_eq!(decode_payload("/w")?, [0xFF]);
        let Inbound::Media { media, .. } = parse_inbound(&media_json(""))? else {
            panic!("not media")
        };
        assert!(media.payload.is_empty());
        Ok(())
    }

    #[test]
    fn deep_nesting_and_huge_frames_do_not_panic() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(parse_inbound(&deep), Err(MediaError::NotJson(_))));
        let deep_obj = format!(r#"{{"event":"media","media":{}}}"#, "{\"a\":".repeat(10_000));
        assert!(parse_inbound(&deep_obj).is_err());
        let huge = media_json(&"A".repeat(4_000_000));
        assert!(
            matches!(parse_inbound(&huge), Ok(Inbound::Media { media, .. }) if media.payload.len() == 3_000_000)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".*") {
            let _ = parse_inbound(&text);
        }

        #[test]
        fn mutated_frames_never_panic(cut in 0usize..400, insert in ".{0,8}") {
            let base = media_json(TONE_20MS);
            let cut = cut.min(base.len());
            let cut = (0..=cut).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
            let text = format!("{}{}{}", &base[..cut], insert, &base[cut..]);
            let _ = parse_inbound(&text);
            let _ = parse_inbound(&base[..cut]);
        }

        #[test]
        fn outbound_media_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400), sid in ".{0,20}") {
            let text = outbound_media(&sid, &bytes);
            let back: Outbound = serde_json::from_str(&text).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(back, Outbound::Media { stream_sid: sid, media: OutboundMedia { payload: bytes } });
        }
    }
}
