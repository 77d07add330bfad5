//! A flow file or a flow scenario, from arbitrary YAML text: errors are fine (each must carry a message
//! and a line inside the text), panics are not. No base directory, so a table's `file:` never reaches
//! the disk. A flow that loads is then driven through a few turns, since its templates and conditions
//! came from the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_flow::scenario::Scenario;
use switchboard_flow::{Contact, Flow, Input, Understanding};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // YAML ends lines at \n, \r or \r\n. An error at the end of a text without a final line break
    // points at the line after the last (libyaml ends the stream with a line break of its own).
    let lines = text.matches(['\n', '\r']).count() + 2;
    match Flow::parse(text, "fuzz.yaml", None) {
        Ok(flow) => drive(&flow),
        Err(errors) => {
            assert!(!errors.errors().is_empty(), "an error list with no error");
            for e in errors.errors() {
                assert!(!e.message.is_empty());
                if let Some(line) = e.line {
                    assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
                }
            }
            let _ = errors.to_string();
        }
    }
    if let Err(errors) = Scenario::parse(text, "fuzz.yaml", None) {
        let _ = errors.to_string();
    }
});

fn drive(flow: &Flow) {
    let contact = Contact::new().with("name", "Ada").with("phone", "+442079460958");
    let (mut state, _) = flow.start(contact);
    let inputs = [
        Input::Utterance("yes".into()),
        Input::Dtmf('1'),
        Input::Utterance("42".into()),
        Input::Silence,
        Input::Understood(Understanding::NotUnderstood),
        Input::Understood(Understanding::Number(i64::MAX)),
        Input::WebhookResult(Err("timeout".into())),
        Input::Dtmf('#'),
        Input::Utterance(String::new()),
        Input::Hangup,
    ];
    for input in inputs {
        if state.is_ended() {
            break;
        }
        let _ = flow.step(&mut state, input);
    }
}
