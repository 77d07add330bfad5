//! Asking the language model what the engine cannot decide itself, and phrasing free replies.
//!
//! The engine is pure: when its deterministic matchers cannot decide, it emits an
//! [`UnderstandRequest`]. Every driver (the call pipeline, `switchboard flows test`) answers those
//! requests the same way, with the functions here, so a scenario run behaves like a call.
//!
//! Labels are not generated but scored: the model gives each label (plus "none") a probability as the
//! whole answer, and those are divided by the probabilities it gives a content-free answer ("N/A") to
//! the same question. Small models prefer some labels whatever the caller said; the division removes
//! that preference ("contextual calibration"). A winner under [`MIN_CONFIDENCE`] is not understood:
//! on the phone a re-prompt is cheaper than acting on a guess.

use switchboard_core::llm::{
    Answer, CancelToken, ChatMessage, Constraint, GenerationParams, LanguageModel, LlmError,
};

use crate::engine::{Action, UnderstandKind, UnderstandRequest, Understanding};
use crate::{Flow, SlotType};

/// The label offered for "fits none of these".
pub const NONE_LABEL: &str = "none";

/// Calibrated probability below which the best label counts as not understood.
pub const MIN_CONFIDENCE: f32 = 0.5;

/// The content-free answer whose label probabilities are the calibration prior.
const CONTENT_FREE: &str = "N/A";

/// What the model said, or why it said nothing.
pub type Understood = Result<Understanding, LlmError>;

fn one_of_messages(
    question: &str,
    utterance: &str,
    labels: &[String],
    descriptions: &[String],
) -> Vec<ChatMessage> {
    let mut system =
        String::from("You sort what a caller said on the phone into exactly one category. Categories:\n");
    for (label, description) in labels.iter().zip(descriptions) {
        system.push_str(&format!("- {label}: {description}\n"));
    }
    system.push_str(&format!(
        "Examples of answers that fit no category ({NONE_LABEL}): \"uh\", \"what?\", \"the cat is \
         orange\", \"lorem ipsum\", \"I like trains\".\nAnswer with the category name only."
    ));
    let user =
        format!("The assistant asked: \"{question}\"\nThe caller answered: \"{utterance}\"\nWhich category?");
    vec![ChatMessage::system(system), ChatMessage::user(user)]
}

/// The smallest prior a probability is divided by. Calibration removes a preference; a label the model
/// gives well under 1 % for the content-free answer is not preferred, and dividing by its exact tiny value
/// only magnifies noise: SmolLM2 gave "speak_to_a_person" 0.026 % for "Thursday is a bit tricky with work
/// this week" and 0.013 % for "N/A", and that doubling made it the calibrated winner over "reschedule"
/// (88 % said, 61 % prior).
const PRIOR_FLOOR: f32 = 0.01;

/// Divides `p` by `prior` (at least [`PRIOR_FLOOR`]) elementwise and normalizes.
fn calibrate(p: &[f32], prior: &[f32]) -> Vec<f32> {
    let ratio: Vec<f32> = p.iter().zip(prior).map(|(p, q)| p / q.max(PRIOR_FLOOR)).collect();
    let sum: f32 = ratio.iter().sum();
    if sum > 0.0 {
        ratio.into_iter().map(|r| r / sum).collect()
    } else {
        ratio
    }
}

/// The calibrated winner among `labels`, if it is a real label and sure enough.
pub fn pick_label(labels: &[String], calibrated: &[f32]) -> Option<String> {
    let (i, p) = calibrated.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let label = labels.get(i)?;
    (label != NONE_LABEL && *p >= MIN_CONFIDENCE).then(|| label.clone())
}

/// Answers one request of the engine with the model.
pub async fn understand<L: LanguageModel>(llm: &L, request: &UnderstandRequest) -> Understood {
    let exchange = format!(
        "The assistant asked: \"{}\"\nThe caller answered: \"{}\"",
        request.question, request.utterance
    );
    let ask = |system: &str, user: String, constraint: Constraint, max_tokens: usize| {
        llm.answer(
            vec![ChatMessage::system(system), ChatMessage::user(user)],
            constraint,
            GenerationParams::greedy(max_tokens),
        )
    };
    let answer = match &request.kind {
        UnderstandKind::OneOf { labels, descriptions } => {
            let mut labels = labels.clone();
            let mut descriptions = descriptions.clone();
            labels.push(NONE_LABEL.to_string());
            descriptions.push("the answer fits none of the other categories, or is unclear".to_string());
            let said = llm
                .label_probabilities(
                    one_of_messages(&request.question, &request.utterance, &labels, &descriptions),
                    labels.clone(),
                )
                .await?;
            let prior = llm
                .label_probabilities(
                    one_of_messages(&request.question, CONTENT_FREE, &labels, &descriptions),
                    labels.clone(),
                )
                .await?;
            return Ok(pick_label(&labels, &calibrate(&said, &prior))
                .map_or(Understanding::NotUnderstood, Understanding::Label));
        }
        UnderstandKind::YesNo => {
            ask(
                "You decide whether a caller's answer on the phone means yes or no.",
                format!("{exchange}\nDoes the caller mean yes?"),
                Constraint::YesNo,
                4,
            )
            .await?
        }
        UnderstandKind::Number => {
            ask(
                "You read the number a caller said on the phone.",
                format!("{exchange}\nWhat number did the caller give? Digits only."),
                Constraint::Integer,
                12,
            )
            .await?
        }
        UnderstandKind::Extract { slot, slot_type } => {
            let form = match slot_type {
                SlotType::Datetime => "the day and time, like \"Tuesday at 3 pm\"",
                SlotType::Phone => "the phone number, digits only",
                SlotType::Number => "the number, digits only",
                _ => "the value, in a few words",
            };
            ask(
                &format!("You extract the {slot} from what a caller said on the phone."),
                format!("{exchange}\nWrite only {form}."),
                Constraint::None,
                16,
            )
            .await?
        }
    };
    Ok(match answer {
        Answer::Label(l) => Understanding::Label(l),
        Answer::YesNo(b) => Understanding::YesNo(b),
        Answer::Integer(n) => Understanding::Number(n),
        Answer::Text(t) | Answer::Json(t) => Understanding::Text(t.trim().to_string()),
    })
}

/// What a driver computes before the first call of `flow`: its system prompt, and every model request
/// the flow makes whatever the caller says ([`Flow::model_requests`]). A label question is answered
/// once for a content-free utterance, which is exactly the calibration prior every later call asks
/// for, and leaves the question's prompt cached; a free reply's system message is cached. Returns the
/// number of prompts computed.
pub async fn warm_up<L: LanguageModel>(llm: &L, flow: &Flow) -> Result<usize, LlmError> {
    llm.warm_up(vec![ChatMessage::system(flow.system_prompt())])
        .await?;
    let mut prompts = 1;
    for action in flow.model_requests(CONTENT_FREE) {
        match action {
            Action::Understand(request) => {
                understand(llm, &request).await?;
            }
            Action::Respond {
                instructions,
                utterance,
            } => {
                let mut messages = respond_messages(flow.system_prompt(), &instructions, &utterance);
                messages.truncate(1);
                llm.warm_up(messages).await?;
            }
            _ => continue,
        }
        prompts += 1;
    }
    Ok(prompts)
}

/// The conversation for a free reply within a step's `instructions`.
pub fn respond_messages(system_prompt: &str, instructions: &str, utterance: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::system(format!("{system_prompt}\n\n{instructions}")),
        ChatMessage::user(utterance),
    ]
}

/// Sentences a spoken reply may have. Flows ask for one or two short sentences, and a small model
/// sometimes goes on repeating itself ("I'm a bakery, and I'm not a dog-friendly place. I'm a bakery,
/// and …") until the token limit: on the phone that is ten seconds of noise the caller must sit through.
pub const MAX_REPLY_SENTENCES: usize = 2;

/// Sentences finished in `text`: a `.`, `!` or `?` at the end or before whitespace.
fn finished_sentences(text: &str) -> usize {
    let chars: Vec<char> = text.chars().collect();
    chars
        .iter()
        .enumerate()
        .filter(|&(i, c)| matches!(c, '.' | '!' | '?') && chars.get(i + 1).is_none_or(|n| n.is_whitespace()))
        .count()
}

/// Generation settings for spoken replies: greedy (the same call goes the same way) and short.
pub fn reply_params() -> GenerationParams {
    GenerationParams::greedy(60)
}

/// Streams a free reply, calling `on_text` with each word-boundary delta; returns the whole text. The
/// reply ends after [`MAX_REPLY_SENTENCES`] sentences (generation is cancelled there).
pub async fn respond<L: LanguageModel>(
    llm: &L,
    messages: Vec<ChatMessage>,
    cancel: CancelToken,
    mut on_text: impl FnMut(&str),
) -> Result<String, LlmError> {
    use switchboard_core::llm::{ReplyEvent, ReplyStream};
    let mut stream = llm.stream_chat(messages, reply_params(), cancel.clone()).await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            ReplyEvent::Text(t) => {
                on_text(&t);
                text.push_str(&t);
                if finished_sentences(&text) >= MAX_REPLY_SENTENCES {
                    cancel.cancel();
                    return Ok(text.trim().to_string());
                }
            }
            ReplyEvent::Finished(_) => return Ok(text.trim().to_string()),
        }
    }
    // The stream closed without finishing: the request was dropped unanswered, either because it
    // was cancelled before it ran or because the engine stopped (or crashed) under it.
    Err(if cancel.is_cancelled() {
        LlmError::Cancelled
    } else {
        LlmError::Unavailable
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sentences_end_at_a_stop_before_a_space_or_the_end() {
        assert_eq!(finished_sentences("We open at 7."), 1);
        assert_eq!(finished_sentences("No. I'm a bakery! Is that"), 2);
        assert_eq!(finished_sentences("It costs 3.50 dollars"), 0);
        assert_eq!(finished_sentences("Sure?"), 1);
        assert_eq!(finished_sentences(""), 0);
    }

    #[test]
    fn calibration_removes_a_preference_for_one_label() {
        let l = labels(&["hours", "order", NONE_LABEL]);
        // The model says "hours" for everything, a bit more for this answer.
        let said = [0.90, 0.05, 0.05];
        let prior = [0.85, 0.10, 0.05];
        let c = calibrate(&said, &prior);
        assert!((c.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(c[0] < 0.5, "a preference is not confidence: {c:?}");
        assert_eq!(pick_label(&l, &c), None);
        // A clear shift towards "order" wins.
        let c = calibrate(&[0.30, 0.65, 0.05], &prior);
        assert_eq!(pick_label(&l, &c), Some("order".to_string()));
    }

    #[test]
    fn a_label_the_model_all_but_excludes_is_not_promoted_by_calibration() {
        // The model's answer to "Thursday is a bit tricky with work this week" and to "N/A" (SmolLM2).
        let l = labels(&[
            "cancel",
            "confirm",
            "reschedule",
            "speak_to_a_person",
            "stop_calling",
            NONE_LABEL,
        ]);
        let said = [0.0147, 0.0458, 0.8804, 0.00026, 0.0010, 0.0579];
        let prior = [0.0258, 0.0502, 0.6079, 0.000126, 0.0009, 0.3151];
        let c = calibrate(&said, &prior);
        let best = c
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| l[i].as_str());
        assert_eq!(best, Some("reschedule"), "{c:?}");
        assert!(c[3] < 0.01, "{c:?}");
    }

    #[test]
    fn none_never_wins_a_label() {
        let l = labels(&["hours", NONE_LABEL]);
        assert_eq!(pick_label(&l, &[0.1, 0.9]), None);
    }
}
