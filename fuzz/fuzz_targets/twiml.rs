//! TwiML both ways. The builder is fed arbitrary strings: its document must be well-formed XML, and a
//! conforming parser (roxmltree, which normalizes attribute values and line ends as the provider's
//! parser does) must read back every text and attribute exactly as given, less the characters XML
//! cannot hold; the simulator's reader must see the same verbs. The simulator's reader is also fed the
//! raw bytes, which must never make it panic.
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use switchboard_simulator::twiml::{self as sim, Verb};
use switchboard_telephony::twiml::{Dial, Gather, GatherInput, RejectReason, Response, Say, Stream};

#[derive(Debug, Arbitrary)]
enum Op {
    Say {
        text: String,
        voice: Option<String>,
        language: Option<String>,
    },
    Play(String),
    Pause(u32),
    Gather {
        input: u8,
        action: Option<String>,
        timeout: Option<u32>,
        num_digits: Option<u32>,
        prompt: Option<String>,
    },
    Stream {
        url: String,
        status_callback: Option<String>,
        parameters: Vec<(String, String)>,
    },
    Dial {
        sip: bool,
        target: String,
        caller_id: Option<String>,
        timeout: Option<u32>,
        action: Option<String>,
    },
    Redirect(String),
    Reject(bool),
    Hangup,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sim::parse(text);
    }
    let mut u = Unstructured::new(data);
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    let (response, expected) = build(ops);
    let xml = response.to_xml();

    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("not XML ({e}): {xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "Response");
    let got: Vec<Node> = root.children().filter(|n| n.is_element()).map(node).collect();
    let want: Vec<Node> = expected.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(got, want, "{xml}");

    let verbs = sim::parse(&xml).unwrap_or_else(|e| panic!("the simulator refused ({e}): {xml}"));
    let want: Vec<Verb> = expected.into_iter().flat_map(|(_, v)| v).collect();
    assert_eq!(verbs, want, "{xml}");
});

/// An element as a conforming parser reads it: name, attributes in document order, text, children.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

fn node(n: roxmltree::Node<'_, '_>) -> Node {
    Node {
        name: n.tag_name().name().to_owned(),
        attrs: n
            .attributes()
            .map(|a| (a.name().to_owned(), a.value().to_owned()))
            .collect(),
        text: n
            .children()
            .filter(|c| c.is_text())
            .filter_map(|c| c.text())
            .collect(),
        children: n.children().filter(|c| c.is_element()).map(node).collect(),
    }
}

fn el(name: &str, attrs: &[(&str, Option<&str>)], text: &str, children: Vec<Node>) -> Node {
    Node {
        name: name.to_owned(),
        attrs: attrs
            .iter()
            .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), clean(v))))
            .collect(),
        text: clean(text),
        children,
    }
}

/// What XML 1.0 can carry of `s`: the builder drops the rest.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(*c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
        .collect()
}

/// The response, and for each verb the element a parser must find and the verbs the simulator must.
fn build(ops: Vec<Op>) -> (Response, Vec<(Node, Vec<Verb>)>) {
    let mut response = Response::new();
    let mut expected = Vec::new();
    for op in ops {
        match op {
            Op::Say {
                text,
                voice,
                language,
            } => {
                let mut say = Say::new(text.clone());
                if let Some(v) = &voice {
                    say = say.voice(v.clone());
                }
                if let Some(l) = &language {
                    say = say.language(l.clone());
                }
                response = response.say_with(say);
                let n = el(
                    "Say",
                    &[("voice", voice.as_deref()), ("language", language.as_deref())],
                    &text,
                    vec![],
                );
                expected.push((n, vec![Verb::Say(clean(&text).trim().to_owned())]));
            }
            Op::Play(url) => {
                response = response.play(url.clone());
                let verb = Verb::Play(clean(&url).trim().to_owned());
                expected.push((el("Play", &[], &url, vec![]), vec![verb]));
            }
            Op::Pause(seconds) => {
                response = response.pause(seconds);
                let length = seconds.to_string();
                let verb = Verb::Pause(Duration::from_secs(u64::from(seconds)));
                expected.push((el("Pause", &[("length", Some(&length))], "", vec![]), vec![verb]));
            }
            Op::Gather {
                input,
                action,
                timeout,
                num_digits,
                prompt,
            } => {
                let (kind, name) = match input % 3 {
                    0 => (GatherInput::Dtmf, "dtmf"),
                    1 => (GatherInput::Speech, "speech"),
                    _ => (GatherInput::SpeechAndDtmf, "speech dtmf"),
                };
                let mut gather = Gather::new(kind);
                if let Some(a) = &action {
                    gather = gather.action(a.clone());
                }
                if let Some(t) = timeout {
                    gather = gather.timeout(t);
                }
                if let Some(d) = num_digits {
                    gather = gather.num_digits(d);
                }
                let mut children = vec![];
                let mut verbs = vec![];
                if let Some(p) = &prompt {
                    gather = gather.prompt(Say::new(p.clone()));
                    children.push(el("Say", &[], p, vec![]));
                    verbs.push(Verb::Say(clean(p).trim().to_owned()));
                }
                response = response.gather(gather);
                let timeout = timeout.map(|t| t.to_string());
                let num_digits = num_digits.map(|d| d.to_string());
                let attrs = [
                    ("input", Some(name)),
                    ("action", action.as_deref()),
                    ("method", action.as_ref().map(|_| "POST")),
                    ("timeout", timeout.as_deref()),
                    ("numDigits", num_digits.as_deref()),
                ];
                expected.push((el("Gather", &attrs, "", children), verbs));
            }
            Op::Stream {
                url,
                status_callback,
                parameters,
            } => {
                let Ok(mut stream) = Stream::new(url.clone()) else {
                    continue;
                };
                if let Some(cb) = &status_callback {
                    stream = stream.status_callback(cb.clone());
                }
                for (name, value) in &parameters {
                    stream = stream.parameter(name.clone(), value.clone());
                }
                response = response.connect_stream(stream);
                let params: Vec<Node> = parameters
                    .iter()
                    .map(|(k, v)| el("Parameter", &[("name", Some(k)), ("value", Some(v))], "", vec![]))
                    .collect();
                let attrs = [
                    ("url", Some(url.as_str())),
                    ("statusCallback", status_callback.as_deref()),
                ];
                let stream_el = el("Stream", &attrs, "", params);
                let verb = Verb::Stream {
                    url: clean(&url),
                    params: parameters.iter().map(|(k, v)| (clean(k), clean(v))).collect(),
                };
                expected.push((el("Connect", &[], "", vec![stream_el]), vec![verb]));
            }
            Op::Dial {
                sip,
                target,
                caller_id,
                timeout,
                action,
            } => {
                let mut dial = if sip {
                    Dial::sip(target.clone())
                } else {
                    Dial::number(target.clone())
                };
                if let Some(c) = &caller_id {
                    dial = dial.caller_id(c.clone());
                }
                if let Some(t) = timeout {
                    dial = dial.timeout(t);
                }
                if let Some(a) = &action {
                    dial = dial.action(a.clone());
                }
                response = response.dial(dial);
                let timeout = timeout.map(|t| t.to_string());
                let attrs = [
                    ("callerId", caller_id.as_deref()),
                    ("timeout", timeout.as_deref()),
                    ("action", action.as_deref()),
                ];
                let inner = el(if sip { "Sip" } else { "Number" }, &[], &target, vec![]);
                let verb = Verb::Dial(clean(&target).trim().to_owned());
                expected.push((el("Dial", &attrs, "", vec![inner]), vec![verb]));
            }
            Op::Redirect(url) => {
                response = response.redirect(url.clone());
                let verb = Verb::Redirect(clean(&url).trim().to_owned());
                expected.push((
                    el("Redirect", &[("method", Some("POST"))], &url, vec![]),
                    vec![verb],
                ));
            }
            Op::Reject(busy) => {
                let (reason, name) = if busy {
                    (RejectReason::Busy, "busy")
                } else {
                    (RejectReason::Rejected, "rejected")
                };
                response = response.reject(reason);
                expected.push((
                    el("Reject", &[("reason", Some(name))], "", vec![]),
                    vec![Verb::Reject],
                ));
            }
            Op::Hangup => {
                response = response.hangup();
                expected.push((el("Hangup", &[], "", vec![]), vec![Verb::Hangup]));
            }
        }
    }
    (response, expected)
}
