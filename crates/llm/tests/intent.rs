//! Intent classification over fixed labels with the real default model: 20 varied caller utterances,
//! each must get its label. `SWITCHBOARD_TEST_LLM=qwen` runs the same test on the larger model.

mod common;

use switchboard_core::llm::{ChatMessage, Constraint, GenerationParams};
use switchboard_llm::{EngineConfig, LlmEngine};

const LABELS: [&str; 6] = ["book", "cancel", "billing", "hours", "human", "other"];

const SYSTEM: &str = "You sort what a caller says to a dental clinic's phone line into one intent.\n\
Intents:\n\
book: wants a new appointment or to reschedule\n\
cancel: wants to cancel an appointment\n\
billing: questions about a bill, a payment, insurance or prices\n\
hours: asks when the clinic is open or where it is\n\
human: wants to talk to a real person\n\
other: anything else\n\
Answer with the intent only.";

/// Few-shot examples, sent as earlier turns (they are part of the cached prefix, so they cost nothing
/// after the first request). None of them is one of the test utterances.
const EXAMPLES: [(&str, &str); 12] = [
    ("Hi, can I get a checkup sometime next week?", "book"),
    ("I need to cancel my cleaning on Wednesday.", "cancel"),
    ("How much do you charge for a crown?", "billing"),
    ("When do you close today?", "hours"),
    ("Can I talk to someone at the front desk?", "human"),
    ("Is this the pet store?", "other"),
    ("Could we push my visit to the afternoon?", "book"),
    ("Please remove my booking, I'm not coming.", "cancel"),
    ("I got a bill I don't understand.", "billing"),
    ("Where is your office located?", "hours"),
    ("I want to speak with a person, not a machine.", "human"),
    ("Tell me a joke.", "other"),
];

const CASES: [(&str, &str); 20] = [
    ("I'd like to make an appointment for a cleaning.", "book"),
    ("Can I come in next Monday to see the dentist?", "book"),
    ("I need to move my appointment to Friday.", "book"),
    ("Do you have any openings this week?", "book"),
    ("Please cancel my appointment tomorrow.", "cancel"),
    ("I can't make it on Thursday, cancel it please.", "cancel"),
    ("I want to call off my visit.", "cancel"),
    ("Why was I charged twice this month?", "billing"),
    ("Do you accept Delta Dental insurance?", "billing"),
    ("How much does a filling cost?", "billing"),
    ("I'd like to pay my bill over the phone.", "billing"),
    ("What time do you open on Saturday?", "hours"),
    ("Are you open on Sundays?", "hours"),
    ("What's your address?", "hours"),
    ("Let me speak to a real person.", "human"),
    ("Can you transfer me to the receptionist?", "human"),
    ("Operator, please.", "human"),
    ("What's the weather like today?", "other"),
    ("I think I dialed the wrong number.", "other"),
    ("Do you sell pizza?", "other"),
];

fn messages(utterance: &str) -> Vec<ChatMessage> {
    let mut m = vec![ChatMessage::system(SYSTEM)];
    for (q, a) in EXAMPLES {
        m.push(ChatMessage::user(q));
        m.push(ChatMessage::assistant(a));
    }
    m.push(ChatMessage::user(utterance));
    m
}

fn model() -> (&'static str, &'static str) {
    match std::env::var("SWITCHBOARD_TEST_LLM").as_deref() {
        Ok("qwen") => (common::QWEN, "qwen2.5-coder-0.5b"),
        _ => (common::SMOLLM2, "smollm2-135m"),
    }
}

#[ignore = "model limit (issue 3): SmolLM2-135M 4/20 here ('billing' for almost every utterance: its first token 'b' gets p≈0.6 whatever the question, also with f32 weights), 12-13/20 at best with other prompts, whole-label scoring, calibration, noisy-channel scoring or a classifier on its hidden states; Qwen2.5-Coder-0.5B (SWITCHBOARD_TEST_LLM=qwen) 13/20; Qwen2.5-Coder-1.5B 18/20 at ~2 s per utterance; sentence embeddings (nomic-embed v1.5 + logistic regression on the examples) 19/20 and 18/20 on a held-out set"]
#[test]
fn intent_classification_gets_all_twenty_utterances_right() {
    let (file, fetch) = model();
    let engine =
        LlmEngine::load(common::model_path(file, fetch), EngineConfig::default()).expect("load model");
    let labels: Vec<String> = LABELS.iter().map(|s| s.to_string()).collect();
    let mut wrong = Vec::new();
    for (utterance, expected) in CASES {
        let answer = engine
            .answer_blocking(
                messages(utterance),
                Constraint::OneOf(labels.clone()),
                GenerationParams::greedy(8),
            )
            .expect("answer");
        let got = answer.to_text();
        assert!(LABELS.contains(&got.as_str()), "not a label: {got}");
        if got != expected {
            wrong.push(format!("{utterance:?}: expected {expected}, got {got}"));
        }
    }
    eprintln!(
        "{}: {}/{} correct",
        engine.info().name,
        CASES.len() - wrong.len(),
        CASES.len()
    );
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
}
