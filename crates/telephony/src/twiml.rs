//! A small TwiML builder: the call instructions the runtime answers webhooks with.
//!
//! Only the verbs the runtime uses are modelled. Every attribute value and text node goes through one
//! escaping function, and characters XML 1.0 cannot carry at all (most control characters) are dropped,
//! because a language model's text ends up in `<Say>` and must never make the document invalid.
//!
//! ```
//! use switchboard_telephony::twiml::{Response, Stream};
//! let stream = Stream::new("wss://voice.example.com/media")?.parameter("agent", "support");
//! let xml = Response::new().connect_stream(stream).to_xml();
//! assert!(xml.contains(r#"<Parameter name="agent" value="support"/>"#));
//! # Ok::<(), switchboard_telephony::twiml::TwimlError>(())
//! ```

use std::fmt::Write as _;

/// A TwiML value the builder refuses, so that a bad configuration fails when the response is built
/// rather than when the provider rejects the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlError {
    #[error(
        "a <Stream> URL must start with wss:// (or ws:// on loopback) and carry no query string (use parameters): {url:?}"
    )]
    StreamUrl { url: String },
}

/// The `<Response>` document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    verbs: Vec<Verb>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verb {
    Say(Say),
    Play { url: String },
    Pause { seconds: u32 },
    Gather(Gather),
    Connect(Stream),
    Dial(Dial),
    Redirect { url: String },
    Reject(RejectReason),
    Hangup,
}

impl Response {
    pub fn new() -> Self {
        Self::default()
    }

    /// `<Say>` with the provider's default voice.
    pub fn say(self, text: impl Into<String>) -> Self {
        self.say_with(Say::new(text))
    }

    pub fn say_with(mut self, say: Say) -> Self {
        self.verbs.push(Verb::Say(say));
        self
    }

    pub fn play(mut self, url: impl Into<String>) -> Self {
        self.verbs.push(Verb::Play { url: url.into() });
        self
    }

    pub fn pause(mut self, seconds: u32) -> Self {
        self.verbs.push(Verb::Pause { seconds });
        self
    }

    pub fn gather(mut self, gather: Gather) -> Self {
        self.verbs.push(Verb::Gather(gather));
        self
    }

    /// `<Connect><Stream>`: a bidirectional media stream for the rest of the call.
    pub fn connect_stream(mut self, stream: Stream) -> Self {
        self.verbs.push(Verb::Connect(stream));
        self
    }

    pub fn dial(mut self, dial: Dial) -> Self {
        self.verbs.push(Verb::Dial(dial));
        self
    }

    pub fn redirect(mut self, url: impl Into<String>) -> Self {
        self.verbs.push(Verb::Redirect { url: url.into() });
        self
    }

    /// `<Reject>`: refuse an inbound call without answering it (no charge to the caller).
    pub fn reject(mut self, reason: RejectReason) -> Self {
        self.verbs.push(Verb::Reject(reason));
        self
    }

    pub fn hangup(mut self) -> Self {
        self.verbs.push(Verb::Hangup);
        self
    }

    /// The document, with its XML declaration, ready to send as `text/xml`.
    pub fn to_xml(&self) -> String {
        let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#);
        for verb in &self.verbs {
            verb.write(&mut out);
        }
        out.push_str("</Response>");
        out
    }
}

/// `<Say>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    text: String,
    voice: Option<String>,
    language: Option<String>,
}

impl Say {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            voice: None,
            language: None,
        }
    }

    /// e.g. `Polly.Joanna` or `alice`.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    /// e.g. `en-US`.
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    fn write(&self, out: &mut String) {
        open(
            out,
            "Say",
            &[
                ("voice", self.voice.as_deref()),
                ("language", self.language.as_deref()),
            ],
        );
        push_text(out, &self.text);
        out.push_str("</Say>");
    }
}

/// What `<Gather>` listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatherInput {
    Dtmf,
    Speech,
    SpeechAndDtmf,
}

/// `<Gather>`: collect key presses or speech, then request `action` with `Digits` / `SpeechResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gather {
    input: GatherInput,
    action: Option<String>,
    timeout: Option<u32>,
    num_digits: Option<u32>,
    prompt: Option<Say>,
}

impl Gather {
    pub fn new(input: GatherInput) -> Self {
        Self {
            input,
            action: None,
            timeout: None,
            num_digits: None,
            prompt: None,
        }
    }

    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    /// Seconds of silence before giving up.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    pub fn num_digits(mut self, n: u32) -> Self {
        self.num_digits = Some(n);
        self
    }

    /// Said while listening; the caller can interrupt it.
    pub fn prompt(mut self, say: Say) -> Self {
        self.prompt = Some(say);
        self
    }

    fn write(&self, out: &mut String) {
        let input = match self.input {
            GatherInput::Dtmf => "dtmf",
            GatherInput::Speech => "speech",
            GatherInput::SpeechAndDtmf => "speech dtmf",
        };
        let timeout = self.timeout.map(|t| t.to_string());
        let num_digits = self.num_digits.map(|n| n.to_string());
        let attrs = [
            ("input", Some(input)),
            ("action", self.action.as_deref()),
            ("method", self.action.as_ref().map(|_| "POST")),
            ("timeout", timeout.as_deref()),
            ("numDigits", num_digits.as_deref()),
        ];
        match &self.prompt {
            None => empty(out, "Gather", &attrs),
            Some(say) => {
                open(out, "Gather", &attrs);
                say.write(out);
                out.push_str("</Gather>");
            }
        }
    }
}

/// `<Stream>` inside `<Connect>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    url: String,
    status_callback: Option<String>,
    parameters: Vec<(String, String)>,
}

impl Stream {
    /// The provider only connects to `wss://` URLs and drops query strings, so data for the stream goes in
    /// [`Stream::parameter`]s, which arrive in the `start` message's `customParameters`. Plain `ws://` is
    /// accepted too: a server without TLS on loopback answers the local call simulator with it.
    pub fn new(url: impl Into<String>) -> Result<Self, TwimlError> {
        let url = url.into();
        let lower = url.to_ascii_lowercase();
        let ok = ["wss://", "ws://"]
            .iter()
            .any(|scheme| lower.starts_with(scheme) && url.len() > scheme.len());
        if !ok || url.contains('?') {
            return Err(TwimlError::StreamUrl { url });
        }
        Ok(Self {
            url,
            status_callback: None,
            parameters: Vec::new(),
        })
    }

    pub fn status_callback(mut self, url: impl Into<String>) -> Self {
        self.status_callback = Some(url.into());
        self
    }

    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.push((name.into(), value.into()));
        self
    }

    fn write(&self, out: &mut String) {
        out.push_str("<Connect>");
        open(
            out,
            "Stream",
            &[
                ("url", Some(&self.url)),
                ("statusCallback", self.status_callback.as_deref()),
            ],
        );
        for (name, value) in &self.parameters {
            empty(out, "Parameter", &[("name", Some(name)), ("value", Some(value))]);
        }
        out.push_str("</Stream></Connect>");
    }
}

/// Whom `<Dial>` connects the caller to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    /// A phone number, E.164.
    Number(String),
    /// A SIP URI, e.g. `sip:agent@pbx.example.com`.
    Sip(String),
}

/// `<Dial>`: transfer the caller, typically to a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    target: DialTarget,
    caller_id: Option<String>,
    timeout: Option<u32>,
    action: Option<String>,
}

impl Dial {
    pub fn new(target: DialTarget) -> Self {
        Self {
            target,
            caller_id: None,
            timeout: None,
            action: None,
        }
    }

    pub fn number(number: impl Into<String>) -> Self {
        Self::new(DialTarget::Number(number.into()))
    }

    pub fn sip(uri: impl Into<String>) -> Self {
        Self::new(DialTarget::Sip(uri.into()))
    }

    /// The number shown to the called party; must be one of the account's numbers.
    pub fn caller_id(mut self, number: impl Into<String>) -> Self {
        self.caller_id = Some(number.into());
        self
    }

    /// Seconds to ring.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }

    /// Requested when the dialled leg ends, with `DialCallStatus`.
    pub fn action(mut self, url: impl Into<String>) -> Self {
        self.action = Some(url.into());
        self
    }

    fn write(&self, out: &mut String) {
        let timeout = self.timeout.map(|t| t.to_string());
        open(
            out,
            "Dial",
            &[
                ("callerId", self.caller_id.as_deref()),
                ("timeout", timeout.as_deref()),
                ("action", self.action.as_deref()),
            ],
        );
        let (tag, value) = match &self.target {
            DialTarget::Number(n) => ("Number", n),
            DialTarget::Sip(uri) => ("Sip", uri),
        };
        open(out, tag, &[]);
        push_text(out, value);
        let _ = write!(out, "</{tag}></Dial>");
    }
}

/// What the caller hears when a call is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// "The number you have dialed is not in service" (the default).
    Rejected,
    Busy,
}

impl Verb {
    fn write(&self, out: &mut String) {
        match self {
            Verb::Say(say) => say.write(out),
            Verb::Play { url } => {
                open(out, "Play", &[]);
                push_text(out, url);
                out.push_str("</Play>");
            }
            Verb::Pause { seconds } => {
                let length = seconds.to_string();
                empty(out, "Pause", &[("length", Some(&length))]);
            }
            Verb::Gather(gather) => gather.write(out),
            Verb::Connect(stream) => stream.write(out),
            Verb::Dial(dial) => dial.write(out),
            Verb::Redirect { url } => {
                open(out, "Redirect", &[("method", Some("POST"))]);
                push_text(out, url);
                out.push_str("</Redirect>");
            }
            Verb::Reject(reason) => {
                let reason = match reason {
                    RejectReason::Rejected => "rejected",
                    RejectReason::Busy => "busy",
                };
                empty(out, "Reject", &[("reason", Some(reason))]);
            }
            Verb::Hangup => out.push_str("<Hangup/>"),
        }
    }
}

fn push_attrs(out: &mut String, attrs: &[(&str, Option<&str>)]) {
    for (name, value) in attrs {
        if let Some(value) = value {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            push_text(out, value);
            out.push('"');
        }
    }
}

fn open(out: &mut String, tag: &str, attrs: &[(&str, Option<&str>)]) {
    out.push('<');
    out.push_str(tag);
    push_attrs(out, attrs);
    out.push('>');
}

fn empty(out: &mut String, tag: &str, attrs: &[(&str, Option<&str>)]) {
    out.push('<');
    out.push_str(tag);
    push_attrs(out, attrs);
    out.push_str("/>");
}

/// Escapes for both text and double- or single-quoted attributes, dropping what XML 1.0 cannot hold.
///
/// Tab, line feed and carriage return go out as character references: a conforming parser (the
/// provider's) turns them into spaces in an attribute value and a carriage return into a line feed in
/// text, while a reference comes back as the character itself. Found by fuzzing (`twiml`): a stream
/// parameter holding a line break reached the media stream with a space instead.
fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'.. => out.push(c),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::Reader;
    use quick_xml::events::{BytesStart, Event};

    /// A parsed element: name, attributes (sorted, unescaped), children, and its unescaped text.
    #[derive(Debug, PartialEq, Eq)]
    struct El {
        name: String,
        attrs: Vec<(String, String)>,
        children: Vec<El>,
        text: String,
    }

    fn el(start: &BytesStart<'_>) -> El {
        let mut attrs: Vec<(String, String)> = start
            .attributes()
            .map(|a| {
                let a = a.expect("well-formed attribute");
                let value = a.unescape_value().expect("valid escapes").into_owned();
                (String::from_utf8_lossy(a.key.as_ref()).into_owned(), value)
            })
            .collect();
        attrs.sort();
        El {
            name: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
            attrs,
            children: vec![],
            text: String::new(),
        }
    }

    /// Parses the whole document strictly (mismatched tags are errors) into a tree.
    fn parse(xml: &str) -> El {
        let mut reader = Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        let mut stack: Vec<El> = vec![];
        let mut root = None;
        let mut saw_decl = false;
        loop {
            match reader.read_event().expect("valid XML") {
                Event::Decl(_) => saw_decl = true,
                Event::Start(s) => stack.push(el(&s)),
                Event::Empty(s) => {
                    let e = el(&s);
                    stack.last_mut().expect("inside an element").children.push(e);
                }
                Event::Text(t) => {
                    let text = t.decode().expect("utf-8").into_owned();
                    let text = quick_xml::escape::unescape(&text)
                        .expect("valid escapes")
                        .into_owned();
                    stack
                        .last_mut()
                        .expect("text inside an element")
                        .text
                        .push_str(&text);
                }
                Event::GeneralRef(r) => {
                    let text = stack.last_mut().expect("ref inside an element");
                    match r.resolve_char_ref().expect("a valid character reference") {
                        Some(c) => text.text.push(c),
                        None => {
                            let name = r.decode().expect("utf-8").into_owned();
                            let c = quick_xml::escape::resolve_predefined_entity(&name)
                                .expect("predefined entity");
                            text.text.push_str(c);
                        }
                    }
                }
                Event::End(_) => {
                    let done = stack.pop().expect("balanced");
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => root = Some(done),
                    }
                }
                Event::Eof => break,
                other => panic!("unexpected XML event {other:?}"),
            }
        }
        assert!(saw_decl, "missing XML declaration");
        root.expect("a root element")
    }

    fn leaf(name: &str, attrs: &[(&str, &str)], text: &str) -> El {
        let mut attrs: Vec<(String, String)> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        attrs.sort();
        El {
            name: name.into(),
            attrs,
            children: vec![],
            text: text.into(),
        }
    }

    fn node(name: &str, attrs: &[(&str, &str)], children: Vec<El>) -> El {
        El {
            children,
            ..leaf(name, attrs, "")
        }
    }

    #[test]
    fn connect_stream_matches_the_reference_document() -> Result<(), TwimlError> {
        let reference = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://voice.example.com/media" statusCallback="https://voice.example.com/stream-status"><Parameter name="agent" value="support" /></Stream></Connect></Response>"#;
        let ours = Response::new()
            .connect_stream(
                Stream::new("wss://voice.example.com/media")?
                    .status_callback("https://voice.example.com/stream-status")
                    .parameter("agent", "support"),
            )
            .to_xml();
        assert_eq!(parse(&ours), parse(reference));
        assert_eq!(
            parse(&ours),
            node(
                "Response",
                &[],
                vec![node(
                    "Connect",
                    &[],
                    vec![node(
                        "Stream",
                        &[
                            ("url", "wss://voice.example.com/media"),
                            ("statusCallback", "https://voice.example.com/stream-status")
                        ],
                        vec![leaf("Parameter", &[("name", "agent"), ("value", "support")], "")]
                    )]
                )]
            )
        );
        Ok(())
    }

    #[test]
    fn stream_url_must_be_a_websocket_without_query() {
        for bad in [
            "https://voice.example.com/media",
            "ws://",
            "wss://x/m?agent=1",
            "wss://",
            "",
            "WSS",
        ] {
            assert_eq!(
                Stream::new(bad),
                Err(TwimlError::StreamUrl { url: bad.into() }),
                "{bad}"
            );
        }
        assert!(Stream::new("wss://x.example/media").is_ok());
        assert!(Stream::new("ws://127.0.0.1:8080/twilio/media").is_ok());
    }

    #[test]
    fn verbs_in_order() {
        let xml = Response::new()
            .say_with(Say::new("Hello").voice("Polly.Joanna").language("en-US"))
            .pause(2)
            .play("https://x.example/a.wav")
            .redirect("https://x.example/next")
            .hangup()
            .to_xml();
        let doc = parse(&xml);
        let names: Vec<&str> = doc.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Say", "Pause", "Play", "Redirect", "Hangup"]);
        assert_eq!(
            doc.children[0],
            leaf(
                "Say",
                &[("voice", "Polly.Joanna"), ("language", "en-US")],
                "Hello"
            )
        );
        assert_eq!(doc.children[1], leaf("Pause", &[("length", "2")], ""));
        assert_eq!(doc.children[2].text, "https://x.example/a.wav");
        assert_eq!(
            doc.children[3],
            leaf("Redirect", &[("method", "POST")], "https://x.example/next")
        );
        assert!(xml.ends_with("<Hangup/></Response>"), "{xml}");
    }

    #[test]
    fn dial_number_and_sip_and_reject() {
        let doc = parse(
            &Response::new()
                .say("Transferring you now.")
                .dial(
                    Dial::number("+15005550006")
                        .caller_id("+15005550001")
                        .timeout(20)
                        .action("/dial-done"),
                )
                .to_xml(),
        );
        assert_eq!(
            doc.children[1],
            node(
                "Dial",
                &[
                    ("callerId", "+15005550001"),
                    ("timeout", "20"),
                    ("action", "/dial-done")
                ],
                vec![leaf("Number", &[], "+15005550006")]
            )
        );
        let doc = parse(
            &Response::new()
                .dial(Dial::sip("sip:agent@pbx.example.com"))
                .to_xml(),
        );
        assert_eq!(
            doc.children,
            [node(
                "Dial",
                &[],
                vec![leaf("Sip", &[], "sip:agent@pbx.example.com")]
            )]
        );
        let doc = parse(&Response::new().reject(RejectReason::Busy).to_xml());
        assert_eq!(doc.children, [leaf("Reject", &[("reason", "busy")], "")]);
        let doc = parse(&Response::new().reject(RejectReason::Rejected).to_xml());
        assert_eq!(doc.children, [leaf("Reject", &[("reason", "rejected")], "")]);
    }

    #[test]
    fn gather_with_prompt() {
        let doc = parse(
            &Response::new()
                .gather(
                    Gather::new(GatherInput::SpeechAndDtmf)
                        .action("/gathered")
                        .timeout(5)
                        .num_digits(1)
                        .prompt(Say::new("Press 1 or say sales.")),
                )
                .to_xml(),
        );
        assert_eq!(
            doc.children,
            [node(
                "Gather",
                &[
                    ("input", "speech dtmf"),
                    ("action", "/gathered"),
                    ("method", "POST"),
                    ("timeout", "5"),
                    ("numDigits", "1")
                ],
                vec![leaf("Say", &[], "Press 1 or say sales.")]
            )]
        );
        let doc = parse(&Response::new().gather(Gather::new(GatherInput::Dtmf)).to_xml());
        assert_eq!(doc.children, [leaf("Gather", &[("input", "dtmf")], "")]);
    }

    #[test]
    fn special_characters_are_escaped_in_text_and_attributes() -> Result<(), TwimlError> {
        let nasty = r#"Tom & Jerry <b>"quoted"</b> it's"#;
        let xml = Response::new()
            .say(nasty)
            .connect_stream(Stream::new("wss://x.example/m")?.parameter(nasty, nasty))
            .dial(Dial::number(nasty).caller_id(nasty))
            .to_xml();
        assert!(!xml.contains("<b>"), "{xml}");
        assert!(
            xml.contains("Tom &amp; Jerry &lt;b&gt;&quot;quoted&quot;&lt;/b&gt; it&apos;s"),
            "{xml}"
        );
        let doc = parse(&xml);
        assert_eq!(doc.children[0].text, nasty);
        let param = &doc.children[1].children[0].children[0];
        assert_eq!(
            param.attrs,
            [
                ("name".to_string(), nasty.to_string()),
                ("value".into(), nasty.into())
            ]
        );
        assert_eq!(
            doc.children[2].attrs,
            [("callerId".to_string(), nasty.to_string())]
        );
        assert_eq!(doc.children[2].children[0].text, nasty);
        Ok(())
    }

    #[test]
    fn characters_xml_cannot_hold_are_dropped() {
        let xml = Response::new()
            .say("a\u{0}b\u{1b}c\u{FFFE}d\te\u{1F600}")
            .to_xml();
        assert!(!xml.contains('\u{0}') && !xml.contains('\u{1b}'));
        assert_eq!(parse(&xml).children[0].text, "abcd\te\u{1F600}");
    }

    /// Found by fuzzing (`twiml`): a conforming parser normalizes a literal tab or line break in an
    /// attribute to a space, and a carriage return in text to a line feed.
    #[test]
    fn line_breaks_and_tabs_survive_attribute_and_text_normalization() -> Result<(), TwimlError> {
        let value = "a\tb\nc\r\nd\re";
        let xml = Response::new()
            .say(value)
            .connect_stream(Stream::new("wss://x.example/m")?.parameter("note", value))
            .to_xml();
        assert!(!xml.contains(['\t', '\n', '\r']), "{xml}");
        assert!(xml.contains("a&#9;b&#10;c&#13;&#10;d&#13;e"), "{xml}");
        let doc = parse(&xml);
        assert_eq!(doc.children[0].text, value);
        let param = &doc.children[1].children[0].children[0];
        assert_eq!(param.attrs[1], ("value".to_string(), value.to_string()));
        Ok(())
    }

    #[test]
    fn empty_response_is_valid() {
        let xml = Response::new().to_xml();
        assert_eq!(
            xml,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#
        );
        assert_eq!(parse(&xml), node("Response", &[], vec![]));
    }
}
