//! A panic inside the model thread fails only the request that hit it: the engine reloads the model
//! and serves the next request. The panic is injected with a fail point (`llm::job`), for real: the
//! thread unwinds through the same code a bug in the model would.
//! Its own test binary, because fail points are process-wide.

mod common;

use switchboard_core::llm::{
    CancelToken, ChatMessage, GenerationParams, LanguageModel, LlmError, ReplyEvent,
};
use switchboard_llm::{EngineConfig, LlmEngine};

/// Fail points are process-wide and tests run in parallel: one test at a time configures them.
static FAIL_POINTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn default_engine() -> LlmEngine {
    LlmEngine::load(
        common::model_path(common::SMOLLM2, "smollm2-135m"),
        EngineConfig::default(),
    )
    .expect("load the default model")
}

fn reply(engine: &LlmEngine) -> Result<String, LlmError> {
    let mut stream = engine.start_chat(
        vec![
            ChatMessage::system("You are a receptionist. Answer briefly."),
            ChatMessage::user("Hello, are you open today?"),
        ],
        GenerationParams::greedy(12),
        CancelToken::new(),
    )?;
    let mut text = String::new();
    while let Some(event) = stream.blocking_next() {
        match event? {
            ReplyEvent::Text(t) => text.push_str(&t),
            ReplyEvent::Finished(_) => return Ok(text),
        }
    }
    Err(LlmError::Unavailable)
}

#[test]
fn a_panicking_request_fails_alone_and_the_model_is_reloaded_for_the_next() {
    let _serial = FAIL_POINTS.lock().unwrap_or_else(|e| e.into_inner());
    let engine = default_engine();
    let before = reply(&engine).expect("a reply before the fault");
    assert!(!before.trim().is_empty());

    fail::cfg("llm::job", "1*panic(injected model fault)").expect("fail point");
    // A constrained answer and a stream both see the stopped request as `Unavailable`.
    let answer = engine.label_probabilities_blocking(
        vec![ChatMessage::user("I want to book a table")],
        vec!["booking".into(), "hours".into()],
    );
    assert!(matches!(answer, Err(LlmError::Unavailable)), "{answer:?}");
    fail::remove("llm::job");

    // The same thread, a fresh model: the same greedy reply as before the fault.
    let after = reply(&engine).expect("a reply after the fault");
    assert_eq!(after, before);

    fail::cfg("llm::job", "1*panic(injected model fault)").expect("fail point");
    assert!(matches!(reply(&engine), Err(LlmError::Unavailable)));
    fail::remove("llm::job");
    assert_eq!(reply(&engine).expect("a reply after the second fault"), before);
}

#[test]
fn a_model_that_cannot_be_reloaded_fails_requests_until_it_can_and_the_thread_stays_up() {
    let _serial = FAIL_POINTS.lock().unwrap_or_else(|e| e.into_inner());
    let engine = default_engine();
    let before = reply(&engine).expect("a reply before the fault");
    assert!(engine.is_available());

    // A panic, and the reload after it fails (the file unreadable, say), twice.
    fail::cfg("llm::reload", "2*return(model file unreadable)").expect("fail point");
    fail::cfg("llm::job", "1*panic(injected model fault)").expect("fail point");
    assert!(matches!(reply(&engine), Err(LlmError::Unavailable)));
    // The next request tries the reload again, which fails too: this request fails, quickly, and
    // readiness checks see the engine as unavailable.
    assert!(matches!(reply(&engine), Err(LlmError::Unavailable)));
    assert!(!engine.is_available(), "no model loaded");
    fail::remove("llm::job");
    // The third reload works: served as before.
    assert_eq!(reply(&engine).expect("a reply once the model loads"), before);
    assert!(engine.is_available(), "the model is back");
    fail::remove("llm::reload");
}
