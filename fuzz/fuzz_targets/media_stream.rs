//! A media-stream WebSocket text frame from the provider: `parse_inbound` must never panic, and what it
//! accepts must survive our own encoding unchanged (the stand-in provider relies on that). The same for
//! the outbound messages the runtime sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_telephony::media::{self, Inbound, Outbound};

fuzz_target!(|data: &[u8]| {
    // A WebSocket text frame is UTF-8 by the protocol; tungstenite refuses anything else before us.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = media::parse_inbound(text) {
        let _ = (message.event(), message.sequence_number());
        let json = serde_json::to_string(&message).expect("a parsed message serializes");
        let again: Inbound = media::parse_inbound(&json).expect("our own encoding parses");
        assert_eq!(again, message, "round trip through {json}");
    }
    if let Ok(out) = serde_json::from_str::<Outbound>(text) {
        let again: Outbound = serde_json::from_str(&out.to_json()).expect("our own encoding parses");
        assert_eq!(again, out);
        let built = match &out {
            Outbound::Media { stream_sid, media } => media::outbound_media(stream_sid, &media.payload),
            Outbound::Mark { stream_sid, mark } => media::outbound_mark(stream_sid, &mark.name),
            Outbound::Clear { stream_sid } => media::outbound_clear(stream_sid),
        };
        let rebuilt: Outbound = serde_json::from_str(&built).expect("the builders' JSON parses");
        assert_eq!(rebuilt, out);
    }
    let _ = media::decode_payload(text);
});
