//! One broken flow per validation rule, each with the exact `file:line:column: message` it must give.

use switchboard_flow::Flow;

/// The errors of `src` as displayed, or a panic if it loads.
fn errors(src: &str) -> Vec<String> {
    match Flow::parse(src, "bad.yaml", None) {
        Ok(_) => panic!("the flow loaded but should not have:\n{src}"),
        Err(e) => e.errors().iter().map(|e| e.to_string()).collect(),
    }
}

const HEAD: &str = "name: t\ndirection: inbound\npersona: p\n";

#[test]
fn a_valid_minimal_flow_loads() {
    let src = format!("{HEAD}start: a\nsteps:\n  a: {{ end: {{ outcome: resolved, say: Bye }} }}\n");
    let flow = Flow::parse(&src, "ok.yaml", None).expect("loads");
    assert_eq!(flow.start_step(), "a");
}

#[test]
fn yaml_syntax_error_has_its_position() {
    let src = format!("{HEAD}start: a\nsteps:\n  a:\n    say: hi\n   next: b\n");
    assert_eq!(
        errors(&src),
        ["bad.yaml:8:4: did not find expected key, while parsing a block mapping"]
    );
}

#[test]
fn unknown_field_is_rejected_with_a_suggestion() {
    let src = format!(
        "{HEAD}start: a\nsteps:\n  a:\n    say: hi\n    nxt: b\n  b:\n    end: {{ outcome: resolved }}\n"
    );
    assert_eq!(
        errors(&src),
        ["bad.yaml:8:5: steps.a: unknown field `nxt` (did you mean `next`?)"]
    );
}

#[test]
fn unknown_outcome_is_rejected() {
    let src = format!("{HEAD}start: a\nsteps:\n  a:\n    end: {{ outcome: happy }}\n");
    let e = errors(&src);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("bad.yaml:7:21: steps.a.end.outcome: unknown variant `happy`"),
        "{e:?}"
    );
}

#[test]
fn unknown_step_target() {
    let src = format!(
        "{HEAD}start: menu\nsteps:\n  menu: {{ say: hi, next: hourz }}\n  hours: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:6:26: step \"menu\" goes to unknown step \"hourz\" (did you mean \"hours\"?)",
            "bad.yaml:7:3: step \"hours\" is unreachable from the start step \"menu\"",
        ]
    );
}

#[test]
fn missing_start_step() {
    let src = format!("{HEAD}start: begin\nsteps:\n  a: {{ end: {{ outcome: resolved }} }}\n");
    assert_eq!(
        errors(&src),
        ["bad.yaml:4:8: the start step \"begin\" does not exist"]
    );
}

#[test]
fn slot_without_type_and_one_of_without_options() {
    let src = format!(
        "{HEAD}slots:\n  n: {{ description: a number }}\n  topic: {{ type: one_of }}\nstart: a\nsteps:\n  a: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:5:3: slot \"n\" has no type (text, number, yes_no, datetime, phone or one_of)",
            "bad.yaml:6:3: one_of slot \"topic\" has no options",
        ]
    );
}

#[test]
fn ask_for_unknown_slot() {
    let src = format!(
        "{HEAD}start: a\nsteps:\n  a:\n    ask: colour\n    prompt: Which colour?\n    next: b\n    on_fail: b\n  b: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        ["bad.yaml:7:10: step \"a\" asks for unknown slot \"colour\""]
    );
}

#[test]
fn unreachable_step() {
    let src = format!(
        "{HEAD}start: a\nsteps:\n  a: {{ end: {{ outcome: resolved }} }}\n  orphan: {{ say: hi, next: a }}\n"
    );
    assert_eq!(
        errors(&src),
        ["bad.yaml:7:3: step \"orphan\" is unreachable from the start step \"a\""]
    );
}

#[test]
fn cycle_without_a_way_out() {
    let src = format!(
        "{HEAD}slots:\n  ok: {{ type: yes_no }}\nstart: a\nsteps:\n  a: {{ ask: ok, prompt: Ready?, next: b, on_fail: b }}\n  b: {{ ask: ok, prompt: Sure?, next: a, on_fail: a }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:8:3: step \"a\" can never reach an end or a transfer (a cycle without a way out)",
            "bad.yaml:9:3: step \"b\" can never reach an end or a transfer (a cycle without a way out)",
        ]
    );
}

#[test]
fn loop_that_never_waits() {
    let src = format!(
        "{HEAD}slots:\n  n: {{ type: number }}\nstart: a\nsteps:\n  a: {{ say: one, next: b }}\n  b:\n    branch:\n      - {{ if: n > 3, goto: c }}\n      - {{ else: a }}\n  c: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        ["bad.yaml:8:3: steps a → b → a loop without ever waiting for the caller"]
    );
}

#[test]
fn template_placeholders_must_be_known() {
    let src = format!(
        "{HEAD}facts: {{ hours: 9 to 5 }}\nstart: a\nsteps:\n  a:\n    end:\n      outcome: resolved\n      say: \"Bye {{{{contact.name}}}}, we open {{{{facts.hour}}}} {{{{nme}}}}\"\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:10:12: template refers to contact field \"name\", which is not listed in contact_fields",
            "bad.yaml:10:12: template refers to unknown fact \"hour\"",
            "bad.yaml:10:12: template refers to unknown slot \"nme\"",
        ]
    );
}

#[test]
fn template_filters_must_be_known() {
    let src = format!(
        "{HEAD}start: a\nsteps:\n  a: {{ say: \"{{{{x|loud}}}}\", next: b }}\n  b: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        ["bad.yaml:6:13: unknown filter \"loud\" in \"{{x|loud}}\" (known: raw, spell, default:TEXT)"]
    );
}

#[test]
fn dtmf_keys_are_single_keys_and_map_to_values() {
    let src = format!(
        "{HEAD}slots:\n  ok: {{ type: yes_no }}\nglobal:\n  opt_out: {{ dtmf: \"99\" }}\nstart: a\nsteps:\n  a:\n    ask: ok\n    prompt: Press 1 for yes\n    dtmf: {{ \"1\": \"yes\", \"x\": \"no\", \"2\": maybe }}\n    next: b\n    on_fail: b\n  b: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:7:20: DTMF key \"99\" must be a single digit, * or #",
            "bad.yaml:13:25: DTMF key \"x\" must be a single digit, * or #",
            "bad.yaml:13:41: DTMF key \"2\" maps to \"maybe\", which is not one of: yes, no",
        ]
    );
}

#[test]
fn conditions_must_parse_and_fit_the_slot() {
    let src = format!(
        "{HEAD}slots:\n  rating: {{ type: number }}\n  topic: {{ type: one_of, options: {{ hours: [hours] }} }}\nstart: a\nsteps:\n  a:\n    branch:\n      - {{ if: \"rating =< 2\", goto: b }}\n      - {{ if: topic == prices, goto: b }}\n      - {{ if: colour is set, goto: b }}\n      - {{ else: b }}\n  b: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:11:15: bad condition \"rating =< 2\": unknown operator \"=<\" (use ==, !=, <, <=, >, >=)",
            "bad.yaml:12:15: condition compares one_of slot \"topic\" with \"prices\"; expected one of: hours",
            "bad.yaml:13:15: condition refers to unknown slot \"colour\"",
        ]
    );
}

#[test]
fn ask_needs_a_way_on_and_a_way_out() {
    let src = format!(
        "{HEAD}slots:\n  topic: {{ type: one_of, options: {{ hours: [hours], address: [address] }} }}\nstart: a\nsteps:\n  a:\n    ask: topic\n    prompt: What?\n    routes: {{ hours: b }}\n  b: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:8:3: ask step \"a\" needs `next` (or a route for every value of \"topic\")",
            "bad.yaml:8:3: ask step \"a\" needs `on_fail` (where to go after max_tries), or set global.misunderstanding.goto",
        ]
    );
}

#[test]
fn a_step_has_exactly_one_kind_and_only_its_own_keys() {
    let src = format!(
        "{HEAD}start: a\nsteps:\n  a:\n    say: hi\n    prompt: hello?\n    next: b\n  b:\n    say: one\n    end: {{ outcome: resolved }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:8:5: `prompt` does not apply to a say step (step \"a\")",
            "bad.yaml:10:3: step \"b\" has several kinds (say, end); give it exactly one",
        ]
    );
}

#[test]
fn lookup_checks_its_table_and_columns() {
    let src = format!(
        "{HEAD}slots:\n  n: {{ type: number }}\n  status: {{ type: text }}\ntables:\n  orders:\n    rows: [{{ id: \"1\", status: baked }}]\nstart: a\nsteps:\n  a:\n    lookup: {{ table: orders, key: n, column: order_id, into: {{ status: state }} }}\n    found: b\n    not_found: b\n  b: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:13:46: table \"orders\" has no column \"order_id\"",
            "bad.yaml:13:72: table \"orders\" has no column \"state\"",
        ]
    );
}

#[test]
fn all_errors_are_reported_at_once_in_line_order() {
    let src = format!(
        "{HEAD}slots:\n  x: {{}}\nstart: a\nsteps:\n  a: {{ say: \"{{{{y}}}}\", next: nowhere }}\n  lost: {{ end: {{ outcome: resolved }} }}\n"
    );
    let e = errors(&src);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(e[0].starts_with("bad.yaml:5:3: slot \"x\" has no type"));
    assert!(e[1].starts_with("bad.yaml:8:13: template refers to unknown slot \"y\""));
    assert!(e[2].starts_with("bad.yaml:8:28: step \"a\" goes to unknown step \"nowhere\""));
    assert!(e[3].starts_with("bad.yaml:9:3: step \"lost\" is unreachable"));
}

#[test]
fn table_files_are_read_relative_to_the_flow() {
    let dir = std::env::temp_dir().join(format!("switchboard-flow-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("t.csv"),
        "id,status\n1,baked\n2,\"sold, out\"\n3,x,extra\n",
    )
    .expect("write csv");
    let src = format!(
        "{HEAD}tables:\n  t: {{ file: t.csv }}\nstart: a\nsteps:\n  a: {{ end: {{ outcome: resolved }} }}\n"
    );
    let e = Flow::parse(&src, "bad.yaml", Some(&dir)).expect_err("row 4 has too many fields");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:4: 3 fields, but the header has 2 columns",
            dir.join("t.csv").display()
        )
    );
    std::fs::write(dir.join("t.csv"), "id,status\n1,baked\n2,\"sold, out\"\n").expect("write csv");
    let flow = Flow::parse(&src, "ok.yaml", Some(&dir)).expect("loads");
    assert_eq!(flow.tables()["t"].rows[1]["status"], "sold, out");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_voicemail_renders_contact_fields_and_facts_and_may_not_use_slots() {
    let ok = "name: t\ndirection: outbound\npersona: p\nfacts: { business: Lakeside }\n\
              contact_fields: [name]\nvoicemail: Hi {{contact.name|default:there}}, {{facts.business}} here.\n\
              start: a\nsteps:\n  a: { end: { outcome: resolved, say: Bye } }\n";
    let flow = Flow::parse(ok, "ok.yaml", None).expect("loads");
    let ada = switchboard_flow::Contact::default().with("name", "Ada");
    assert_eq!(
        flow.voicemail_message(&ada).as_deref(),
        Some("Hi Ada, Lakeside here.")
    );
    assert_eq!(
        flow.voicemail_message(&switchboard_flow::Contact::default())
            .as_deref(),
        Some("Hi there, Lakeside here.")
    );
    let bad = "name: t\ndirection: outbound\npersona: p\nslots: { x: { type: text } }\n\
               voicemail: About {{x}}.\nstart: a\nsteps:\n  a: { end: { outcome: resolved } }\n";
    assert_eq!(
        errors(bad),
        ["bad.yaml:5:12: the voicemail is left before any slot is collected: it cannot use slot \"x\""]
    );
}

#[test]
fn an_unknown_special_synonym_is_named() {
    let src = format!(
        "{HEAD}slots:\n  topic:\n    type: one_of\n    options:\n      hours: [open, $yes]\n      other: [$questions]\nstart: a\nsteps:\n  a:\n    ask: topic\n    prompt: Yes?\n    next: b\n    on_fail: b\n  b: {{ end: {{ outcome: resolved }} }}\n"
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("bad.yaml:")
            && errs[0]
                .contains("unknown synonym \"$questions\" (the special ones are $yes, $no and $question)"),
        "{errs:?}"
    );
}

#[test]
fn words_for_numbers_must_name_a_number_the_slot_takes() {
    let src = format!(
        "{HEAD}slots:\n  r:\n    type: number\n    min: 1\n    max: 5\n    options: {{ \"9\": [great], five: [excellent], \"1\": [$no] }}\n  t:\n    type: text\n    options: {{ a: [b] }}\nstart: a\nsteps:\n  a: {{ ask: r, prompt: Rate?, next: b, on_fail: b }}\n  b: {{ ask: t, prompt: Why?, next: c, on_fail: c }}\n  c: {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        [
            "bad.yaml:9:21: number slot \"r\": option \"9\" is not a number within its min and max",
            "bad.yaml:9:36: number slot \"r\": option \"five\" is not a number within its min and max",
            "bad.yaml:9:54: number slot \"r\": \"$no\" only applies to one_of slots",
            "bad.yaml:12:14: options only apply to one_of and number slots, \"t\" is text",
        ]
    );
}

#[test]
fn a_step_name_is_a_plain_word() {
    let src = format!(
        "{HEAD}start: a\nsteps:\n  a: {{ say: hi, next: \"b: c\" }}\n  \"b: c\": {{ end: {{ outcome: resolved }} }}\n"
    );
    assert_eq!(
        errors(&src),
        ["bad.yaml:7:3: step name \"b: c\": use letters, digits, _ and - only"]
    );
}
