//! The engine with the real default model (SmolLM2-135M): streaming, stop tokens, prompt caching,
//! cancellation, back-pressure and constrained answers.

mod common;

use switchboard_core::llm::{
    Answer, CancelToken, ChatMessage, Constraint, FinishReason, GenerationParams, LanguageModel, LlmError,
    ReplyEvent, ReplyStats, ReplyStream,
};
use switchboard_llm::{ChatStream, EngineConfig, LlmEngine};

fn engine() -> LlmEngine {
    engine_with(EngineConfig::default())
}

fn engine_with(config: EngineConfig) -> LlmEngine {
    LlmEngine::load(common::model_path(common::SMOLLM2, "smollm2-135m"), config)
        .expect("load the default model")
}

const SYSTEM: &str = "You are a friendly receptionist at a dental clinic. Answer briefly.";

/// Reads a whole reply: the deltas and the final stats.
fn collect(mut stream: ChatStream) -> (Vec<String>, ReplyStats) {
    let mut deltas = Vec::new();
    while let Some(event) = stream.blocking_next() {
        match event.expect("no error") {
            ReplyEvent::Text(t) => deltas.push(t),
            ReplyEvent::Finished(stats) => return (deltas, stats),
        }
    }
    panic!("stream ended without Finished");
}

fn chat(engine: &LlmEngine, messages: Vec<ChatMessage>, max_tokens: usize) -> (String, ReplyStats) {
    let stream = engine
        .start_chat(messages, GenerationParams::greedy(max_tokens), CancelToken::new())
        .expect("queued");
    let (deltas, stats) = collect(stream);
    (deltas.concat(), stats)
}

// SmolLM2-135M's first token here is a near-tie (f32 weights: 'The' 24.14, 'La' 24.05, and 'La' starts a
// French reply). Prompt passes on the quantized kernels compute every token exactly like a decode
// step, whatever the split, and come out on 'The'; candle's Q4_1 matmul (and, before it, our dense
// f32 pass) did not.
#[test]
fn chat_reply_is_non_empty_streams_words_and_stops_at_the_stop_token() {
    let engine = engine();
    let stream = engine
        .start_chat(
            vec![
                ChatMessage::system("You are a helpful assistant."),
                ChatMessage::user("What is the capital of France?"),
            ],
            GenerationParams::greedy(100),
            CancelToken::new(),
        )
        .expect("queued");
    let (deltas, stats) = collect(stream);
    let text = deltas.concat();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(stats.finish, FinishReason::Stop, "{stats:?}");
    assert!(stats.generated_tokens < 100);
    assert!(deltas.len() > 1, "streamed in pieces: {deltas:?}");
    for d in &deltas[..deltas.len() - 1] {
        assert!(
            d.ends_with(char::is_whitespace),
            "delta not on a word boundary: {d:?}"
        );
    }
    assert!(!text.contains("<|im_end|>") && !text.contains("<|im_start|>"));
}

#[test]
fn cached_and_uncached_prefix_give_identical_greedy_output() {
    // Prompts on the quantized weights (the default) and on the dense copy.
    for config in [
        EngineConfig::default(),
        EngineConfig {
            dense_prefill_budget_bytes: usize::MAX,
            ..EngineConfig::default()
        },
    ] {
        cached_and_uncached_prefix_agree(&engine_with(config));
    }
}

fn cached_and_uncached_prefix_agree(engine: &LlmEngine) {
    let questions = [
        "Hi, I'd like to book a cleaning next week.",
        "What are your opening hours?",
        "Can I bring my child to the appointment?",
    ];
    let system = vec![ChatMessage::system(SYSTEM)];
    for q in questions {
        let messages = vec![ChatMessage::system(SYSTEM), ChatMessage::user(q)];
        engine.clear_cache_blocking().expect("clear");
        let (uncached, s1) = chat(engine, messages.clone(), 40);
        assert_eq!(s1.cached_tokens, 0);

        engine.clear_cache_blocking().expect("clear");
        engine.warm_up_blocking(system.clone()).expect("warm up");
        let (warmed, s2) = chat(engine, messages.clone(), 40);
        assert!(s2.cached_tokens > 10, "system prompt reused: {s2:?}");
        assert!(s2.cached_tokens < s2.prompt_tokens);

        let (repeated, s3) = chat(engine, messages.clone(), 40);
        // Prompt passes resume anywhere (dense ones compute at least MIN_DENSE_PASS tokens).
        let expected = if engine.info().dense_prefill {
            s3.prompt_tokens - switchboard_llm::generate::MIN_DENSE_PASS
        } else {
            s3.prompt_tokens - 1
        };
        assert_eq!(s3.cached_tokens, expected, "whole prompt reused");

        assert!(!uncached.is_empty());
        assert_eq!(uncached, warmed, "system prompt cached vs not, for {q:?}");
        assert_eq!(uncached, repeated, "whole prompt cached vs not, for {q:?}");
    }
}

#[test]
fn next_turn_reuses_the_previous_turn() {
    let engine = engine();
    let mut messages = vec![
        ChatMessage::system(SYSTEM),
        ChatMessage::user("Hello, who am I speaking with?"),
    ];
    let (reply, first) = chat(&engine, messages.clone(), 40);
    messages.push(ChatMessage::assistant(reply));
    messages.push(ChatMessage::user("Great. Are you open on Saturday?"));
    let (continued, second) = chat(&engine, messages.clone(), 40);
    assert!(
        second.cached_tokens >= first.prompt_tokens,
        "the first turn's prompt and reply were reused: {first:?} {second:?}"
    );
    // The cached reply is what a fresh computation of the whole conversation gives.
    engine.clear_cache_blocking().expect("clear");
    let (fresh, third) = chat(&engine, messages, 40);
    assert_eq!(third.cached_tokens, 0);
    assert_eq!(
        continued, fresh,
        "second turn with the first cached vs computed afresh"
    );
}

#[test]
fn cancellation_stops_a_long_generation_quickly_and_the_next_request_works() {
    let engine = engine();
    let cancel = CancelToken::new();
    let mut stream = engine
        .start_chat(
            vec![
                ChatMessage::system("You are a storyteller."),
                ChatMessage::user("Tell me a very long story about a dragon and a knight."),
            ],
            GenerationParams {
                max_tokens: 2000,
                ..GenerationParams::default()
            },
            cancel.clone(),
        )
        .expect("queued");
    // Wait for the first words, then barge in.
    match stream.blocking_next() {
        Some(Ok(ReplyEvent::Text(_))) => {}
        other => panic!("expected text first, got {other:?}"),
    }
    cancel.cancel();
    let stats = loop {
        match stream.blocking_next().expect("stream open").expect("no error") {
            ReplyEvent::Text(_) => {}
            ReplyEvent::Finished(stats) => break stats,
        }
    };
    // Counted in tokens, not milliseconds, so a loaded machine cannot make it flaky: the engine checks the
    // token before every step, so only the tokens already in flight when we cancelled may follow.
    assert_eq!(stats.finish, FinishReason::Cancelled);
    assert!(stats.generated_tokens < 64, "{stats:?}");

    let (text, next) = chat(
        &engine,
        vec![ChatMessage::system(SYSTEM), ChatMessage::user("Say hello.")],
        30,
    );
    assert!(!text.is_empty());
    assert_ne!(next.finish, FinishReason::Cancelled);
}

#[test]
fn dropping_the_stream_cancels_the_generation() {
    let engine = engine();
    let mut stream = engine
        .start_chat(
            vec![ChatMessage::user("Count from one to one thousand in words.")],
            GenerationParams::greedy(2000),
            CancelToken::new(),
        )
        .expect("queued");
    assert!(matches!(stream.blocking_next(), Some(Ok(ReplyEvent::Text(_)))));
    drop(stream);
    let (_, stats) = chat(&engine, vec![ChatMessage::user("Say hi.")], 5);
    // The next request waits only for the tokens in flight, not for the 2000 asked for. Measured against
    // this request's own time per token, so the bound holds however loaded the machine is.
    let per_token = stats.total / u32::try_from(stats.generated_tokens.max(1)).expect("small");
    assert!(
        stats.queued < per_token * 64,
        "the abandoned reply kept the thread busy: waited {:?}, {per_token:?} per token",
        stats.queued
    );
}

#[test]
fn a_full_queue_is_refused_as_overloaded() {
    let engine = engine_with(EngineConfig {
        queue_capacity: 1,
        ..EngineConfig::default()
    });
    let long = || {
        engine.start_chat(
            vec![ChatMessage::user("Write a long essay about the sea.")],
            GenerationParams::greedy(500),
            CancelToken::new(),
        )
    };
    let mut running = long().expect("first runs");
    assert!(matches!(running.blocking_next(), Some(Ok(ReplyEvent::Text(_)))));
    let _queued = long().expect("second waits in the queue");
    match long() {
        Err(LlmError::Overloaded(_)) => {}
        other => panic!("expected Overloaded, got {other:?}"),
    }
}

const BOOKING_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "name": {"type": "string"},
    "day": {"type": "string", "enum": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]},
    "time": {"type": "string"}
  },
  "required": ["name", "day", "time"]
}"#;

#[test]
fn extraction_returns_valid_json_with_the_right_fields() {
    let engine = engine();
    let answer = engine
        .answer_blocking(
            vec![
                ChatMessage::system("Extract the caller's name and the day and time they ask for, as JSON."),
                ChatMessage::user("My name is Ada Lovelace and I'd like Tuesday at 3 pm"),
            ],
            Constraint::JsonSchema(BOOKING_SCHEMA.into()),
            GenerationParams::greedy(64),
        )
        .expect("answer");
    let Answer::Json(text) = answer else {
        panic!("expected JSON, got {answer:?}");
    };
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["name"], "Ada Lovelace", "{text}");
    assert_eq!(v["day"], "Tuesday", "{text}");
    let time = v["time"]
        .as_str()
        .expect("time is a string")
        .to_lowercase()
        .replace(' ', "");
    assert!(
        ["3pm", "3:00pm", "15:00", "3p.m."].contains(&time.as_str()),
        "time: {text}"
    );
}

#[ignore = "model limit (issue 3): SmolLM2-135M itself answers 'No, Paris is not the capital of France' (also unconstrained, also with f32 weights), and forced into digits for '4 people' starts with 1 and never stops (1000…)"]
#[test]
fn yes_no_and_integer_answers_have_their_form() {
    let engine = engine();
    let yes = engine
        .answer_blocking(
            vec![ChatMessage::user(
                "Is Paris the capital of France? Answer yes or no.",
            )],
            Constraint::YesNo,
            GenerationParams::greedy(8),
        )
        .expect("answer");
    assert_eq!(yes, Answer::YesNo(true));
    let n = engine
        .answer_blocking(
            vec![ChatMessage::user(
                "I'd like a table for 4 people. How many people? Answer with a number.",
            )],
            Constraint::Integer,
            GenerationParams::greedy(8),
        )
        .expect("answer");
    assert_eq!(n, Answer::Integer(4));
    let bad = engine.answer_blocking(
        vec![ChatMessage::user("hi")],
        Constraint::JsonSchema(r#"{"type":"array"}"#.into()),
        GenerationParams::greedy(8),
    );
    assert!(matches!(bad, Err(LlmError::BadInput(_))), "{bad:?}");
}

#[ignore = "model limit (issue 3): SmolLM2-135M (Q4_1, 8-bit activations) answers 'What is the capital of France?' in French under its default system prompt, and even with f16/f32 weights picks 'no' for 'Is the sky blue on a clear day?'"]
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_trait_streams_to_async_callers() {
    let engine = std::sync::Arc::new(tokio::task::spawn_blocking(engine).await.expect("load"));
    let mut stream = engine
        .stream_chat(
            vec![ChatMessage::user("What is the capital of France?")],
            GenerationParams::greedy(40),
            CancelToken::new(),
        )
        .await
        .expect("queued");
    let mut text = String::new();
    let mut finished = false;
    while let Some(event) = stream.next().await {
        match event.expect("no error") {
            ReplyEvent::Text(t) => text.push_str(&t),
            ReplyEvent::Finished(_) => finished = true,
        }
    }
    assert!(finished && text.contains("Paris"), "{text:?}");
    let label = engine
        .answer(
            vec![ChatMessage::user("Is the sky blue on a clear day?")],
            Constraint::OneOf(vec!["yes".into(), "no".into()]),
            GenerationParams::greedy(4),
        )
        .await
        .expect("answer");
    assert_eq!(label, Answer::Label("yes".into()));
}

#[test]
fn label_probabilities_are_a_distribution_and_repeatable() {
    let engine = engine();
    let labels: Vec<String> = ["cancel", "confirm", "reschedule"].map(String::from).to_vec();
    let messages = vec![
        ChatMessage::system("You sort what a caller said into one category: cancel, confirm or reschedule."),
        ChatMessage::user("The caller said: \"Please cancel my appointment.\" Which category?"),
    ];
    let p = engine
        .label_probabilities_blocking(messages.clone(), labels.clone())
        .expect("scored");
    assert_eq!(p.len(), labels.len());
    assert!(p.iter().all(|x| (0.0..=1.0).contains(x)), "{p:?}");
    assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{p:?}");
    let again = engine
        .label_probabilities_blocking(messages.clone(), labels.clone())
        .expect("scored again");
    assert_eq!(p, again, "a repeated question has the same answer");
    // The labels in another order are scored anew on the cached prompt: each label's probability is
    // the same up to the order of the normalizing sum.
    let reversed: Vec<String> = labels.iter().rev().cloned().collect();
    let mut on_cached = engine
        .label_probabilities_blocking(messages.clone(), reversed)
        .expect("scored in reverse");
    on_cached.reverse();
    for (a, b) in p.iter().zip(&on_cached) {
        assert!((a - b).abs() < 1e-6, "{p:?} vs {on_cached:?}");
    }
    // With every cache cleared the prompt and the labels are computed from scratch, exactly alike.
    engine.clear_cache_blocking().expect("clear");
    let fresh = engine
        .label_probabilities_blocking(messages, labels)
        .expect("scored from scratch");
    assert_eq!(p, fresh, "the cached prompt scores exactly like the fresh one");
    assert!(
        engine
            .label_probabilities_blocking(vec![ChatMessage::user("hi")], vec![])
            .is_err(),
        "no labels is bad input"
    );
}
