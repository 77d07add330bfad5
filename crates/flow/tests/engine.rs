//! The engine driven directly: re-prompts, tries, silence, the global handlers, corrections, the model
//! round trip and webhooks.

use switchboard_flow::{
    Action, CallState, Contact, Flow, Input, Outcome, SlotValue, UnderstandKind, Understanding,
};

const FLOW: &str = r#"
name: test
direction: outbound
persona: a test assistant
contact_fields: [name]
slots:
  n: { type: number, min: 1, max: 5, options: { "5": [excellent], "1": [terrible, the worst] } }
  order: { type: number }
  when: { type: datetime }
  choice: { type: one_of, options: { tea: [tea], coffee: [coffee], other: [] } }
  status: { type: text }
global:
  silence: { max: 2, goodbye: Bye for now. }
  human: { goto: person, dtmf: "0" }
  opt_out: { dtmf: "9", say: Removed. }
  misunderstanding: { max: 2, goto: message, say: Let me take a message. }
start: hello
steps:
  hello: { say: "Hi {{contact.name|default:there}}.", next: rate }
  rate:
    ask: n
    prompt: Rate 1 to 5.
    reprompt: Still there? Rate 1 to 5.
    no_match: One to five, please.
    max_tries: 3
    next: pick
    on_fail: gave_up
  pick:
    ask: choice
    prompt: Tea or coffee?
    routes: { tea: order_no, coffee: order_no, other: order_no }
    on_fail: gave_up
  order_no:
    ask: order
    prompt: Order number?
    confirm: "That's {{order|spell}}?"
    next: slot_time
    on_fail: gave_up
  slot_time:
    ask: when
    prompt: When?
    confirm: "{{when}}, right?"
    next: hook
    on_fail: gave_up
  hook:
    webhook: { url: "https://shop.example/orders/{{order}}", method: GET, retries: 1, into: { status: order.status } }
    ok: done
    failed: gave_up
  done: { end: { outcome: completed, say: "Status {{status}}." } }
  gave_up: { end: { outcome: abandoned, say: Sorry. }}
  message: { end: { outcome: message_taken } }
  person: { transfer: { to: "sip:desk@example.com", say: Connecting. } }
"#;

fn flow() -> Flow {
    Flow::parse(FLOW, "test.yaml", None)
        .expect("test flow loads")
        .with_model_understanding(false)
}

fn said(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Say(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn say(f: &Flow, st: &mut CallState, text: &str) -> Vec<Action> {
    f.step(st, Input::Utterance(text.to_string()))
}

/// Every call ends with exactly one Outcome, directly before the final action.
fn assert_ends(actions: &[Action], outcome: Outcome) {
    let n = actions.len();
    assert!(n >= 2, "{actions:?}");
    match (&actions[n - 2], &actions[n - 1]) {
        (Action::Outcome { outcome: o, .. }, Action::Hangup | Action::Transfer { .. }) => {
            assert_eq!(*o, outcome, "{actions:?}")
        }
        _ => panic!("no Outcome before the final action: {actions:?}"),
    }
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Outcome { .. }))
            .count(),
        1
    );
}

fn to_step(f: &Flow, step: &str) -> CallState {
    let (mut st, _) = f.start(Contact::new().with("name", "Ana"));
    let inputs: &[&str] = match step {
        "rate" => &[],
        "pick" => &["4"],
        "order_no" => &["4", "tea"],
        "slot_time" => &["4", "tea", "123", "yes"],
        _ => panic!("unknown step {step}"),
    };
    for i in inputs {
        say(f, &mut st, i);
    }
    assert_eq!(st.current_step(), step);
    st
}

#[test]
fn start_greets_with_contact_fields_and_listens() {
    let f = flow();
    let (st, actions) = f.start(Contact::new().with("name", "Ana"));
    assert_eq!(said(&actions), ["Hi Ana.", "Rate 1 to 5."]);
    assert!(matches!(actions.last(), Some(Action::Listen { .. })));
    assert_eq!(st.current_step(), "rate");
    let (_, actions) = f.start(Contact::new());
    assert_eq!(said(&actions)[0], "Hi there.");
}

#[test]
fn a_number_slot_takes_words_for_its_numbers_and_a_number_said_wins() {
    let f = flow();
    for (answer, want) in [
        ("It was excellent", Some(5)),
        ("Terrible, the worst", Some(1)),
        ("excellent, well, let's say a 4", Some(4)),
        ("somewhere between excellent and terrible", None),
        ("it was fine", None),
    ] {
        let mut st = to_step(&f, "rate");
        say(&f, &mut st, answer);
        assert_eq!(st.slot("n").cloned(), want.map(SlotValue::Number), "{answer}");
    }
}

fn no_matches(actions: &[Action]) -> Vec<(String, String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::NoMatch { step, slot, heard } => Some((step.clone(), slot.clone(), heard.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn words_nothing_placed_are_reported_for_the_call_log_and_keys_or_silence_are_not() {
    let f = flow();
    let mut st = to_step(&f, "rate");
    let a = say(&f, &mut st, "purple");
    let want = ("rate".to_string(), "n".to_string(), "purple".to_string());
    assert_eq!(no_matches(&a), [want]);
    let mut st = to_step(&f, "rate");
    assert!(no_matches(&f.step(&mut st, Input::Dtmf('7'))).is_empty());
    assert!(no_matches(&f.step(&mut st, Input::Silence)).is_empty());
    assert!(no_matches(&say(&f, &mut st, "4")).is_empty());
    // With the model: reported once the model has not understood either, with the caller's words.
    let f = flow().with_model_understanding(true);
    let mut st = to_step(&f, "pick");
    let a = say(&f, &mut st, "a hot drink");
    assert!(no_matches(&a).is_empty(), "{a:?}");
    let a = f.step(&mut st, Input::Understood(Understanding::NotUnderstood));
    let want = (
        "pick".to_string(),
        "choice".to_string(),
        "a hot drink".to_string(),
    );
    assert_eq!(no_matches(&a), [want]);
}

#[test]
fn no_match_reprompts_then_max_tries_goes_to_on_fail() {
    let f = flow();
    let mut st = to_step(&f, "rate");
    let a = say(&f, &mut st, "seven");
    assert_eq!(said(&a), ["One to five, please."]);
    // The misunderstanding handler (max 2) would fire here, but the step's own tries come first only
    // when exhausted; with 2 consecutive no-matches the global handler takes over.
    let a = say(&f, &mut st, "purple");
    assert_eq!(said(&a), ["Let me take a message."]);
    assert_ends(&a, Outcome::MessageTaken);
}

#[test]
fn silence_reprompts_then_ends_as_no_answer_when_nobody_spoke() {
    let f = flow();
    let mut st = to_step(&f, "rate");
    let a = f.step(&mut st, Input::Silence);
    assert_eq!(said(&a), ["Still there? Rate 1 to 5."]);
    let a = f.step(&mut st, Input::Silence);
    assert_eq!(said(&a), ["Bye for now."]);
    assert_ends(&a, Outcome::NoAnswer);
    assert!(
        f.step(&mut st, Input::Silence).is_empty(),
        "an ended call ignores input"
    );
}

#[test]
fn silence_after_speaking_is_abandoned_and_a_valid_answer_resets_the_count() {
    let f = flow();
    let mut st = to_step(&f, "pick");
    f.step(&mut st, Input::Silence);
    say(&f, &mut st, "tea");
    f.step(&mut st, Input::Silence);
    let a = f.step(&mut st, Input::Silence);
    assert_ends(&a, Outcome::Abandoned);
    assert_eq!(st.slot("n"), Some(&SlotValue::Number(4)));
}

#[test]
fn max_tries_without_the_global_handler_goes_to_on_fail() {
    let f = flow();
    let mut st = to_step(&f, "rate");
    // Silence and no-match both count as tries; silences are not consecutive here.
    f.step(&mut st, Input::Silence);
    say(&f, &mut st, "six");
    let a = f.step(&mut st, Input::Silence);
    assert_eq!(said(&a), ["Sorry."]);
    assert_ends(&a, Outcome::Abandoned);
}

#[test]
fn opt_out_works_from_any_step_by_phrase_and_key() {
    let f = flow();
    for step in ["rate", "pick", "order_no", "slot_time"] {
        let mut st = to_step(&f, step);
        let a = say(&f, &mut st, "please stop calling me");
        assert_eq!(said(&a), ["Removed."], "{step}");
        assert!(a.contains(&Action::RecordOptOut));
        assert_ends(&a, Outcome::OptedOut);
    }
    // A single-digit rating is not a digit entry, so 9 is the opt-out key there…
    let mut st = to_step(&f, "rate");
    assert_ends(&f.step(&mut st, Input::Dtmf('9')), Outcome::OptedOut);
    // …but inside an order number it is just a digit.
    let mut st = to_step(&f, "order_no");
    for k in "91#".chars() {
        f.step(&mut st, Input::Dtmf(k));
    }
    assert_eq!(st.slot("order"), Some(&SlotValue::Number(91)));
    assert!(!st.is_ended());
}

#[test]
fn talk_to_a_person_transfers_from_any_step() {
    let f = flow();
    let mut st = to_step(&f, "order_no");
    let a = say(&f, &mut st, "can I talk to a human");
    assert_eq!(said(&a), ["Connecting."]);
    assert_ends(&a, Outcome::Transferred);
    assert!(a.contains(&Action::Transfer {
        to: "sip:desk@example.com".to_string(),
        reason: "person".to_string()
    }));
    let mut st = to_step(&f, "pick");
    assert_ends(&f.step(&mut st, Input::Dtmf('0')), Outcome::Transferred);
}

#[test]
fn keypad_digits_end_with_pound_or_a_pause() {
    let f = flow();
    let mut st = to_step(&f, "order_no");
    for k in "4567".chars() {
        let a = f.step(&mut st, Input::Dtmf(k));
        assert!(said(&a).is_empty() && matches!(a.last(), Some(Action::Listen { .. })));
    }
    let a = f.step(&mut st, Input::Silence);
    assert_eq!(said(&a), ["That's 4 5 6 7?"]);
    let a = f.step(&mut st, Input::Dtmf('1'));
    assert_eq!(said(&a), ["When?"]);
}

#[test]
fn corrections_at_the_read_back_replace_the_value() {
    let f = flow();
    let mut st = to_step(&f, "order_no");
    assert_eq!(said(&say(&f, &mut st, "1 2 3 4")), ["That's 1 2 3 4?"]);
    assert_eq!(said(&say(&f, &mut st, "no, I said 4 5 6 7")), ["That's 4 5 6 7?"]);
    assert_eq!(st.slot("order"), Some(&SlotValue::Number(4567)));
    // A bare "no" forgets the value and asks again.
    let a = say(&f, &mut st, "no");
    assert_eq!(said(&a), ["Okay, let's try again.", "Order number?"]);
    assert_eq!(st.slot("order"), None);
    say(&f, &mut st, "forty two");
    say(&f, &mut st, "yes");
    assert_eq!(st.current_step(), "slot_time");
    assert_eq!(
        said(&say(&f, &mut st, "Tuesday at 3 pm")),
        ["Tuesday at 3 PM, right?"]
    );
    assert_eq!(
        said(&say(&f, &mut st, "actually, make it Wednesday")),
        ["Wednesday, right?"]
    );
    assert_eq!(
        st.slot("when"),
        Some(&SlotValue::DateTime("Wednesday".to_string()))
    );
}

#[test]
fn model_is_asked_only_when_the_matchers_cannot_decide_and_its_answer_is_validated() {
    let f = flow().with_model_understanding(true);
    let mut st = to_step(&f, "pick");
    // Decided deterministically: no model request.
    let mut st2 = st.clone();
    assert!(
        !say(&f, &mut st2, "coffee please")
            .iter()
            .any(|a| matches!(a, Action::Understand(_)))
    );
    // Undecided: one request, with the labels and the global intents.
    let a = say(&f, &mut st, "something hot and bitter");
    let Some(Action::Understand(req)) = a.last() else {
        panic!("{a:?}")
    };
    assert_eq!(req.question, "Tea or coffee?");
    let UnderstandKind::OneOf { labels, .. } = &req.kind else {
        panic!("{req:?}")
    };
    assert_eq!(
        labels,
        &["coffee", "other", "tea", "speak_to_a_person", "stop_calling"]
    );
    assert!(st.awaits_driver());
    // A label that is not in the list is a no-match, not a path through the flow.
    let a = f.step(
        &mut st,
        Input::Understood(Understanding::Label("whisky".to_string())),
    );
    assert!(matches!(a.last(), Some(Action::Listen { .. })), "{a:?}");
    assert_eq!(st.slot("choice"), None);
    say(&f, &mut st, "hmm, the dark one");
    let a = f.step(
        &mut st,
        Input::Understood(Understanding::Label("coffee".to_string())),
    );
    assert_eq!(said(&a), ["Order number?"]);
    assert_eq!(st.slot("choice"), Some(&SlotValue::Label("coffee".to_string())));
    // A number out of range from the model is rejected too.
    let mut st = to_step(&f, "rate");
    say(&f, &mut st, "I'd say pretty good");
    let a = f.step(&mut st, Input::Understood(Understanding::Number(9)));
    assert_eq!(said(&a), ["One to five, please."]);
    // The model may recognize a global intent.
    say(&f, &mut st, "ugh whatever");
    let mut st_pick = to_step(&f, "pick");
    say(&f, &mut st_pick, "get me somebody real");
    let a = f.step(
        &mut st_pick,
        Input::Understood(Understanding::Label("speak_to_a_person".to_string())),
    );
    assert_ends(&a, Outcome::Transferred);
}

/// The model reads values out of the caller's words; one the caller never said is a no-match.
#[test]
fn a_value_the_caller_never_said_is_not_taken_from_the_model() {
    let f = flow().with_model_understanding(true);
    let mut st = to_step(&f, "slot_time");
    let a = say(&f, &mut st, "whenever suits the doctor");
    assert!(matches!(a.last(), Some(Action::Understand(_))), "{a:?}");
    // SmolLM2's real answer to a plain "yes" here: the prompt's own example.
    let a = f.step(
        &mut st,
        Input::Understood(Understanding::Text("Tuesday at 3 pm".to_string())),
    );
    assert_eq!(st.slot("when"), None, "{a:?}");
    assert!(matches!(a.last(), Some(Action::Listen { .. })), "{a:?}");
    // A reading of what was said is taken.
    let a = say(&f, &mut st, "I could do eleven");
    assert!(matches!(a.last(), Some(Action::Understand(_))), "{a:?}");
    let a = f.step(
        &mut st,
        Input::Understood(Understanding::Text("11 am".to_string())),
    );
    assert_eq!(
        st.slot("when"),
        Some(&SlotValue::DateTime("11:00".to_string())),
        "{a:?}"
    );
    // The same for numbers.
    let mut st = to_step(&f, "rate");
    let a = say(&f, &mut st, "hmm, good I guess");
    assert!(matches!(a.last(), Some(Action::Understand(_))), "{a:?}");
    f.step(&mut st, Input::Understood(Understanding::Number(4)));
    assert_eq!(st.slot("n"), None);
}

#[test]
fn webhook_is_requested_retried_and_fills_slots() {
    let f = flow();
    let mut st = to_step(&f, "slot_time");
    say(&f, &mut st, "Friday at 10 am");
    let a = say(&f, &mut st, "yes");
    let Some(Action::Webhook(req)) = a.last() else {
        panic!("{a:?}")
    };
    assert_eq!(
        (req.method.as_str(), req.url.as_str(), req.attempt),
        ("GET", "https://shop.example/orders/123", 1)
    );
    // Input that is not the webhook's answer is ignored while it is pending.
    assert!(say(&f, &mut st, "hello?").is_empty());
    let a = f.step(&mut st, Input::WebhookResult(Err("timeout".to_string())));
    let Some(Action::Webhook(req)) = a.last() else {
        panic!("{a:?}")
    };
    assert_eq!(req.attempt, 2);
    let json = serde_json::json!({ "order": { "status": "shipped" } });
    let serde_json::Value::Object(map) = json else {
        panic!()
    };
    let a = f.step(&mut st, Input::WebhookResult(Ok(map)));
    assert_eq!(said(&a), ["Status shipped."]);
    assert_ends(&a, Outcome::Completed);
    let Some(Action::Outcome { slots, .. }) = a.iter().find(|a| matches!(a, Action::Outcome { .. })) else {
        panic!()
    };
    assert_eq!(slots["status"], SlotValue::Text("shipped".to_string()));
    assert_eq!(slots["when"].to_string(), "Friday 10:00");
}

#[test]
fn webhook_failure_after_retries_takes_the_failed_path() {
    let f = flow();
    let mut st = to_step(&f, "slot_time");
    say(&f, &mut st, "tomorrow at noon");
    say(&f, &mut st, "yes");
    f.step(&mut st, Input::WebhookResult(Err("500".to_string())));
    let a = f.step(&mut st, Input::WebhookResult(Err("500".to_string())));
    assert_ends(&a, Outcome::Abandoned);
}

#[test]
fn caller_hanging_up_is_abandoned_with_the_slots_so_far() {
    let f = flow();
    let mut st = to_step(&f, "order_no");
    let a = f.step(&mut st, Input::Hangup);
    assert_ends(&a, Outcome::Abandoned);
    assert_eq!(st.outcome(), Some(Outcome::Abandoned));
}

#[test]
fn the_same_inputs_give_the_same_actions() {
    let f = flow();
    let run = || {
        let (mut st, mut all) = f.start(Contact::new());
        for i in [
            "five",
            "tea",
            "12",
            "yes",
            "Monday at 9",
            "no",
            "Monday at 10",
            "yes",
        ] {
            all.extend(say(&f, &mut st, i));
        }
        all
    };
    assert_eq!(run(), run());
}

/// What a driver computes before the first call: every model request whose prompt does not depend on
/// the call, with the stand-in utterance, and none that does.
#[test]
fn model_requests_are_the_prompts_fixed_by_the_flow() {
    const RESPONDS: &str = r#"
name: replies
direction: inbound
persona: a test assistant
facts: { shop: Bella's }
slots:
  choice: { type: one_of, options: { tea: [tea], coffee: [coffee] } }
  n: { type: number }
start: pick
steps:
  pick: { ask: choice, prompt: "Tea or coffee at {{facts.shop}}?", next: count, on_fail: bye }
  count: { ask: n, prompt: "How many {{choice}}?", next: fixed, on_fail: bye }
  fixed: { respond: "Answer from the facts of {{facts.shop}}.", next: personal }
  personal: { respond: "Mention the {{choice}}.", next: bye }
  bye: { end: { outcome: completed } }
"#;
    let f = Flow::parse(RESPONDS, "replies.yaml", None).expect("flow loads");
    let requests = f.model_requests("N/A");
    assert_eq!(requests.len(), 2, "{requests:?}");
    let understand = requests.iter().find_map(|a| match a {
        Action::Understand(r) => Some(r),
        _ => None,
    });
    let r = understand.expect("the fixed question is understood");
    assert_eq!(r.question, "Tea or coffee at Bella's?");
    assert_eq!(r.utterance, "N/A");
    assert!(
        matches!(&r.kind, UnderstandKind::OneOf { labels, .. } if labels.iter().any(|l| l == "tea")),
        "{:?}",
        r.kind
    );
    assert!(requests.iter().any(|a| matches!(
        a,
        Action::Respond { instructions, utterance }
            if instructions == "Answer from the facts of Bella's." && utterance == "N/A"
    )));
    // Without model understanding only the free replies are asked for.
    let f = f.with_model_understanding(false);
    let requests = f.model_requests("N/A");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(matches!(requests[0], Action::Respond { .. }));
}
