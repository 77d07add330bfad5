//! The scenario runner itself: canned webhooks, failures that name the turn, and malformed turns.

use switchboard_flow::scenario::{Scenario, run_text};
use switchboard_flow::{Flow, Understanding};

const FLOW: &str = r#"
name: hook
direction: inbound
persona: p
slots:
  n: { type: number }
  status: { type: text }
global: { misunderstanding: { goto: bye } }
start: ask
steps:
  ask: { ask: n, prompt: Order number?, next: hook }
  hook:
    webhook: { url: "https://shop.example/o/{{n}}", retries: 1, into: { status: status } }
    ok: tell
    failed: bye
  tell: { say: "It is {{status}}.", next: bye }
  bye: { end: { outcome: resolved, say: Bye. } }
"#;

fn flow() -> Flow {
    Flow::parse(FLOW, "hook.yaml", None).expect("flow loads")
}

#[test]
fn canned_webhooks_answer_after_failing_the_given_number_of_times() {
    let s = Scenario::parse(
        r#"
flow: hook
name: webhook retried once
webhooks:
  "https://shop.example/o/42": { fail_times: 1, json: { status: shipped } }
turns:
  - caller: "forty two"
    expect: { says: ["It is shipped."] }
expect: { outcome: resolved, slots: { status: shipped } }
"#,
        "s.yaml",
        None,
    )
    .expect("scenario parses");
    let report = run_text(&flow(), &s, &mut |_| Understanding::NotUnderstood);
    assert!(report.passed(), "{report}");
    assert!(report.record.transcript().contains("(try 2)"), "{report}");
}

#[test]
fn failures_name_the_turn_and_what_differed() {
    let s = Scenario::parse(
        r#"
flow: hook
name: wrong expectations
turns:
  - caller: "7"
    expect: { says: ["shipped"] }
  - caller: "too late"
expect: { outcome: transferred, slots: { n: 8 } }
"#,
        "s.yaml",
        None,
    )
    .expect("scenario parses");
    let report = run_text(&flow(), &s, &mut |_| Understanding::NotUnderstood);
    assert_eq!(
        report.failures,
        [
            "turn 1: expected the bot to say \"shipped\", it said [\"Bye.\"]",
            "turn 2: the call had already ended (caller: too late)",
            "end: expected outcome transferred, it is resolved",
            "end: expected slot n = \"8\", it is \"7\"",
        ]
    );
}

#[test]
fn a_turn_does_exactly_one_thing() {
    let e = Scenario::parse(
        "flow: hook\nname: x\nturns:\n  - caller: hi\n    dtmf: \"1\"\n  - dtmf: \"12a\"\n",
        "s.yaml",
        None,
    )
    .expect_err("two bad turns");
    assert_eq!(
        e.to_string(),
        "s.yaml:4:5: a turn is exactly one of caller, dtmf, silence, wav, hangup\n\
         s.yaml:6:5: dtmf keys are digits, * and #"
    );
}
