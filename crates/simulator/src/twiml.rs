//! Reading the TwiML a runtime answers with, the way the provider executes it: a flat list of verbs in
//! order. Only what a simulated call acts on is kept; nested prompts (`<Gather><Say>`) are read as
//! the verbs they are, because the party on the line hears them either way.

use std::time::Duration;

use quick_xml::events::{BytesStart, Event};

/// One instruction, in the order the provider carries them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Text spoken with the provider's voice.
    Say(String),
    /// An audio file played from a URL.
    Play(String),
    Pause(Duration),
    /// `<Connect><Stream>`: a bidirectional media stream and its `<Parameter>`s.
    Stream {
        url: String,
        params: Vec<(String, String)>,
    },
    /// A transfer: the number, SIP URI or client the call is bridged to.
    Dial(String),
    /// Fetch new TwiML from this URL.
    Redirect(String),
    Hangup,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the TwiML is not valid XML: {0}")]
pub struct TwimlError(String);

/// Where the text of an element goes while it is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    None,
    Say,
    Play,
    Dial,
    Redirect,
}

/// The verbs of a TwiML document, in order. Unknown verbs are skipped, as a provider would refuse them
/// but a simulation only needs to know what the caller hears and where the call goes.
pub fn parse(twiml: &str) -> Result<Vec<Verb>, TwimlError> {
    let mut reader = quick_xml::Reader::from_str(twiml);
    let mut verbs = Vec::new();
    let mut capture = Capture::None;
    let mut text = String::new();
    let mut stream: Option<(String, Vec<(String, String)>)> = None;
    loop {
        let event = reader.read_event().map_err(|e| TwimlError(e.to_string()))?;
        match event {
            Event::Start(e) => open(&e, &mut capture, &mut text, &mut stream, &mut verbs)?,
            Event::Empty(e) => {
                open(&e, &mut capture, &mut text, &mut stream, &mut verbs)?;
                close(
                    e.name().as_ref(),
                    &mut capture,
                    &mut text,
                    &mut stream,
                    &mut verbs,
                );
            }
            Event::End(e) => close(
                e.name().as_ref(),
                &mut capture,
                &mut text,
                &mut stream,
                &mut verbs,
            ),
            Event::Text(t) if capture != Capture::None => {
                let raw = t.decode().map_err(|e| TwimlError(e.to_string()))?;
                let unescaped = quick_xml::escape::unescape(&raw).map_err(|e| TwimlError(e.to_string()))?;
                text.push_str(&unescaped);
            }
            Event::CData(t) if capture != Capture::None => {
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::GeneralRef(r) if capture != Capture::None => {
                // `&#10;`: the runtime writes line breaks and tabs as character references.
                if let Some(c) = r.resolve_char_ref().map_err(|e| TwimlError(e.to_string()))? {
                    text.push(c);
                    continue;
                }
                let name = r.decode().map_err(|e| TwimlError(e.to_string()))?;
                match quick_xml::escape::resolve_predefined_entity(&name) {
                    Some(c) => text.push_str(c),
                    None => return Err(TwimlError(format!("unknown entity &{name};"))),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(verbs)
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, TwimlError> {
    for a in e.attributes() {
        let a = a.map_err(|err| TwimlError(err.to_string()))?;
        if a.key.as_ref() == name.as_bytes() {
            let value = a.unescape_value().map_err(|err| TwimlError(err.to_string()))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

fn open(
    e: &BytesStart<'_>,
    capture: &mut Capture,
    text: &mut String,
    stream: &mut Option<(String, Vec<(String, String)>)>,
    verbs: &mut Vec<Verb>,
) -> Result<(), TwimlError> {
    let start_capture = |capture: &mut Capture, text: &mut String, kind| {
        *capture = kind;
        text.clear();
    };
    match e.name().as_ref() {
        b"Say" => start_capture(capture, text, Capture::Say),
        b"Play" => start_capture(capture, text, Capture::Play),
        b"Redirect" => start_capture(capture, text, Capture::Redirect),
        // `<Dial>+1555…</Dial>` or `<Dial><Number>+1555…</Number></Dial>`: either way the text is the
        // target.
        b"Dial" => start_capture(capture, text, Capture::Dial),
        b"Stream" => *stream = Some((attr(e, "url")?.unwrap_or_default(), Vec::new())),
        b"Parameter" => {
            if let (Some(s), Some(name), Some(value)) = (stream.as_mut(), attr(e, "name")?, attr(e, "value")?)
            {
                s.1.push((name, value));
            }
        }
        b"Pause" => {
            let seconds = attr(e, "length")?
                .and_then(|l| l.trim().parse::<u64>().ok())
                .unwrap_or(1);
            verbs.push(Verb::Pause(Duration::from_secs(seconds)));
        }
        b"Hangup" => verbs.push(Verb::Hangup),
        b"Reject" => verbs.push(Verb::Reject),
        _ => {}
    }
    Ok(())
}

fn close(
    name: &[u8],
    capture: &mut Capture,
    text: &mut String,
    stream: &mut Option<(String, Vec<(String, String)>)>,
    verbs: &mut Vec<Verb>,
) {
    let done = match (name, *capture) {
        (b"Say", Capture::Say) => Some(Verb::Say(text.trim().to_owned())),
        (b"Play", Capture::Play) => Some(Verb::Play(text.trim().to_owned())),
        (b"Redirect", Capture::Redirect) => Some(Verb::Redirect(text.trim().to_owned())),
        (b"Dial", Capture::Dial) => Some(Verb::Dial(text.trim().to_owned())),
        (b"Stream", _) => stream.take().map(|(url, params)| Verb::Stream { url, params }),
        _ => None,
    };
    if let Some(verb) = done {
        if !matches!(verb, Verb::Stream { .. }) {
            *capture = Capture::None;
            text.clear();
        }
        verbs.push(verb);
    }
}

/// The media stream a TwiML document connects, with its parameters.
pub fn stream_of(verbs: &[Verb]) -> Option<(&str, &[(String, String)])> {
    verbs.iter().find_map(|v| match v {
        Verb::Stream { url, params } => Some((url.as_str(), params.as_slice())),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_telephony::twiml::{Dial, Response, Stream};

    #[test]
    fn a_stream_and_its_parameters_from_the_runtimes_own_builder() -> Result<(), Box<dyn std::error::Error>> {
        let xml = Response::new()
            .connect_stream(
                Stream::new("wss://voice.example.com/twilio/media")?
                    .parameter("flow", "reminder")
                    .parameter("to", "+15555550100"),
            )
            .to_xml();
        let verbs = parse(&xml)?;
        assert_eq!(
            verbs,
            [Verb::Stream {
                url: "wss://voice.example.com/twilio/media".into(),
                params: vec![
                    ("flow".into(), "reminder".into()),
                    ("to".into(), "+15555550100".into())
                ],
            }]
        );
        assert_eq!(
            stream_of(&verbs).map(|(url, _)| url),
            Some("wss://voice.example.com/twilio/media")
        );
        Ok(())
    }

    #[test]
    fn say_with_escapes_then_hangup() -> Result<(), TwimlError> {
        let xml = Response::new()
            .say("Hi Ann & Bob, it's <Acme>. Call us back.")
            .pause(2)
            .play("https://x.example/beep.wav")
            .hangup()
            .to_xml();
        assert_eq!(
            parse(&xml)?,
            [
                Verb::Say("Hi Ann & Bob, it's <Acme>. Call us back.".into()),
                Verb::Pause(Duration::from_secs(2)),
                Verb::Play("https://x.example/beep.wav".into()),
                Verb::Hangup,
            ]
        );
        Ok(())
    }

    #[test]
    fn dial_in_either_form_is_a_transfer() -> Result<(), TwimlError> {
        let built = Response::new().dial(Dial::number("+15555550111")).to_xml();
        assert_eq!(parse(&built)?, [Verb::Dial("+15555550111".into())]);
        let bare = "<Response><Dial callerId=\"+1555\">+15555550112</Dial><Redirect>https://r.example/next</Redirect></Response>";
        assert_eq!(
            parse(bare)?,
            [
                Verb::Dial("+15555550112".into()),
                Verb::Redirect("https://r.example/next".into())
            ]
        );
        Ok(())
    }

    #[test]
    fn prompts_inside_gather_are_heard_and_unknown_verbs_skipped() -> Result<(), TwimlError> {
        let xml =
            "<Response><Gather input=\"dtmf\"><Say>Press 1.</Say></Gather><Sms>x</Sms><Hangup/></Response>";
        assert_eq!(parse(xml)?, [Verb::Say("Press 1.".into()), Verb::Hangup]);
        assert!(stream_of(&parse(xml)?).is_none());
        Ok(())
    }

    /// Found by fuzzing (`twiml`): the runtime now writes line breaks as `&#10;`, which this reader
    /// refused as an unknown entity.
    #[test]
    fn character_references_are_read() -> Result<(), TwimlError> {
        let xml = Response::new().say("Line one.\r\nLine\ttwo.").to_xml();
        assert_eq!(parse(&xml)?, [Verb::Say("Line one.\r\nLine\ttwo.".into())]);
        assert_eq!(
            parse("<Response><Say>&#65;&#x42;</Say></Response>")?,
            [Verb::Say("AB".into())]
        );
        Ok(())
    }

    #[test]
    fn broken_xml_is_an_error() {
        assert!(parse("<Response><Say>unclosed &bogus; text</Say></Response>").is_err());
    }
}
