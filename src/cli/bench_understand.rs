//! `switchboard bench understand`: how well the shipped flows read what callers say. Each labelled
//! answer (`bench/understanding.toml`) is put to a flow at one ask step, exactly as on a call: the
//! deterministic rules first, then the language model for what they leave undecided. Every answer ends
//! read right, re-prompted (nothing understood: the caller is asked again), or read wrong (the flow acts
//! on something the caller did not mean). Rules alone are measured in the same run as the baseline
//! each model is compared with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use switchboard_flow::scenario::pending_request;
use switchboard_flow::{Action, Flow, Input, SlotValue, UnderstandRequest, Understanding, model};
use switchboard_llm::{EngineConfig, LlmEngine};

#[derive(Debug, clap::Args)]
pub struct BenchUnderstandArgs {
    /// Language models to compare (names or GGUF paths); default: the manifest's default.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// The labelled answers.
    #[arg(long, default_value = "bench/understanding.toml")]
    pub data: PathBuf,
    /// Where the flows named by the data live (`<dir>/<flow>.yaml`).
    #[arg(long, default_value = "prompts/flows")]
    pub flows: PathBuf,
    /// Print every answer that is re-prompted or read wrong, with what it was read as (stderr).
    #[arg(long)]
    pub show_errors: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    set: Vec<AnswerSet>,
}

/// Answers to one ask step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerSet {
    flow: String,
    /// The ask step the answers are given at; the `before` turns must lead there.
    step: String,
    #[serde(default)]
    contact: BTreeMap<String, String>,
    /// Caller turns that reach `step` (read by the rules).
    #[serde(default)]
    before: Vec<String>,
    /// (what the caller says, what it means): a label, "yes" / "no", a number, or `none` for an
    /// answer that should be asked again; the global intents read as `speak_to_a_person` and
    /// `stop_calling`.
    answers: Vec<(String, String)>,
}

/// What one answer was read as.
struct Reading {
    meaning: String,
    model_asked: bool,
}

/// Speaks `input` to the call and answers the engine's model requests with `understand`, until it waits
/// for the caller again; returns every action.
fn feed(
    flow: &Flow,
    st: &mut switchboard_flow::CallState,
    input: Input,
    understand: &mut dyn FnMut(&UnderstandRequest) -> Understanding,
) -> Vec<Action> {
    let mut all = Vec::new();
    let mut actions = flow.step(st, input);
    // Bounded like a scenario run: a flow that keeps asking must not spin forever.
    for _ in 0..32 {
        all.extend(actions.iter().cloned());
        let Some(Action::Understand(request)) = pending_request(&actions) else {
            break;
        };
        let understood = understand(request);
        actions = flow.step(st, Input::Understood(understood));
    }
    all
}

fn read(
    flow: &Flow,
    set: &AnswerSet,
    answer: &str,
    understand: &mut dyn FnMut(&UnderstandRequest) -> Understanding,
) -> anyhow::Result<Reading> {
    let (mut st, mut actions) = flow.start(set.contact.clone().into_iter().collect());
    for turn in &set.before {
        actions = feed(flow, &mut st, Input::Utterance(turn.clone()), &mut |_| {
            Understanding::NotUnderstood
        });
    }
    anyhow::ensure!(
        st.current_step() == set.step && !st.is_ended(),
        "{}: the turns {:?} lead to step `{}`, not `{}`",
        set.flow,
        set.before,
        st.current_step(),
        set.step
    );
    let slot = actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Listen { expect, .. } => Some(expect.slot.clone()),
            _ => None,
        })
        .with_context(|| format!("{}: step `{}` does not listen", set.flow, set.step))?;
    let actions = feed(flow, &mut st, Input::Utterance(answer.to_string()), understand);
    let model_asked = actions.iter().any(|a| matches!(a, Action::Understand(_)));
    let meaning = match st.slot(&slot) {
        Some(SlotValue::Label(l)) => l.clone(),
        Some(v) => v.to_string(),
        None if actions.iter().any(|a| matches!(a, Action::RecordOptOut)) => "stop_calling".into(),
        None if actions.iter().any(|a| matches!(a, Action::Transfer { .. })) => "speak_to_a_person".into(),
        None => "none".into(),
    };
    Ok(Reading { meaning, model_asked })
}

#[derive(Default)]
struct Tally {
    right: usize,
    reprompted: usize,
    wrong: usize,
    model_asked: usize,
    model_time: Duration,
}

impl Tally {
    fn add(&mut self, expected: &str, reading: &Reading) {
        if reading.meaning == expected {
            self.right += 1;
        } else if reading.meaning == "none" {
            self.reprompted += 1;
        } else {
            self.wrong += 1;
        }
        self.model_asked += usize::from(reading.model_asked);
    }

    fn row(&self, reader: &str, set: &str) -> String {
        let total = self.right + self.reprompted + self.wrong;
        let per_answer = if self.model_asked > 0 {
            format!("{} ms", (self.model_time / self.model_asked as u32).as_millis())
        } else {
            "-".into()
        };
        format!(
            "| {reader} | {set} | {}/{total} | {} | {} | {} | {per_answer} |",
            self.right, self.reprompted, self.wrong, self.model_asked
        )
    }
}

fn load_flows(dir: &Path, data: &Data) -> anyhow::Result<BTreeMap<String, Flow>> {
    super::flows::load_named(dir, data.set.iter().map(|set| set.flow.as_str()))
}

pub fn run(args: BenchUnderstandArgs) -> anyhow::Result<()> {
    let src =
        std::fs::read_to_string(&args.data).with_context(|| format!("reading {}", args.data.display()))?;
    let data: Data = toml::from_str(&src).with_context(|| format!("parsing {}", args.data.display()))?;
    let flows = load_flows(&args.flows, &data)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let mut readers: Vec<(String, Option<LlmEngine>)> = vec![("rules only".into(), None)];
    let names = if args.models.is_empty() {
        vec![None]
    } else {
        args.models.iter().map(|m| Some(m.as_str())).collect()
    };
    for name in names {
        let path = super::chat::resolve_model(name)?;
        let engine = LlmEngine::load(&path, EngineConfig::default())
            .with_context(|| format!("loading {}", path.display()))?;
        // As `serve` does before the first call: the prompts every call of these flows asks are cached.
        for flow in flows.values() {
            runtime
                .block_on(model::warm_up(&engine, flow))
                .context("warming up the model")?;
        }
        let label = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        readers.push((label, Some(engine)));
    }

    println!("| reader | step | right | re-prompted | wrong | model asked | per model answer |");
    println!("|---|---|---|---|---|---|---|");
    for (reader, llm) in &readers {
        let mut overall = Tally::default();
        for set in &data.set {
            let flow = flows[&set.flow].clone().with_model_understanding(llm.is_some());
            let mut tally = Tally::default();
            for (answer, expected) in &set.answers {
                let mut model_time = Duration::ZERO;
                let mut understand = |request: &UnderstandRequest| {
                    let Some(llm) = llm else {
                        return Understanding::NotUnderstood;
                    };
                    let started = Instant::now();
                    let understood = runtime.block_on(model::understand(llm, request));
                    model_time += started.elapsed();
                    understood.unwrap_or_else(|e| {
                        eprintln!("language model failed: {e}");
                        Understanding::NotUnderstood
                    })
                };
                let reading = read(&flow, set, answer, &mut understand)?;
                tally.model_time += model_time;
                overall.model_time += model_time;
                tally.add(expected, &reading);
                overall.add(expected, &reading);
                if args.show_errors && reading.meaning != *expected {
                    eprintln!(
                        "{reader} · {}/{}: {answer:?} read as {}, means {expected}",
                        set.flow, set.step, reading.meaning
                    );
                }
            }
            println!("{}", tally.row(reader, &format!("{}/{}", set.flow, set.step)));
        }
        println!("{}", overall.row(reader, "**all**"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appointment() -> (Flow, AnswerSet) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/flows");
        // Understanding on, as the bench turns it on for a model reader (the shipped flow turns it off).
        let flow = Flow::load(dir.join("outbound_appointment.yaml"))
            .expect("shipped flow loads")
            .with_model_understanding(true);
        let set = AnswerSet {
            flow: "outbound_appointment".into(),
            step: "appointment".into(),
            contact: BTreeMap::new(),
            before: vec!["yes".into()],
            answers: Vec::new(),
        };
        (flow, set)
    }

    #[test]
    fn an_answer_is_read_as_the_label_the_rules_or_the_model_give_or_as_a_reprompt() -> anyhow::Result<()> {
        let (flow, set) = appointment();
        let mut rules = |_: &UnderstandRequest| Understanding::NotUnderstood;
        let r = read(&flow, &set, "I'd like to cancel", &mut rules)?;
        assert_eq!((r.meaning.as_str(), r.model_asked), ("cancel", false));
        let r = read(&flow, &set, "Thursday is tricky", &mut rules)?;
        assert_eq!((r.meaning.as_str(), r.model_asked), ("none", true));
        let mut model = |_: &UnderstandRequest| Understanding::Label("reschedule".into());
        let r = read(&flow, &set, "Thursday is tricky", &mut model)?;
        assert_eq!((r.meaning.as_str(), r.model_asked), ("reschedule", true));
        let r = read(&flow, &set, "Take me off your list", &mut rules)?;
        assert_eq!(r.meaning, "stop_calling");
        Ok(())
    }

    #[test]
    fn turns_that_do_not_reach_the_step_are_an_error() {
        let (flow, mut set) = appointment();
        set.before = vec!["wrong number".into()];
        let result = read(&flow, &set, "yes", &mut |_| Understanding::NotUnderstood);
        let err = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not `appointment`"), "{err}");
    }

    #[test]
    fn the_shipped_data_names_real_steps() -> anyhow::Result<()> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(root.join("bench/understanding.toml"))?;
        let data: Data = toml::from_str(&src)?;
        let flows = load_flows(&root.join("prompts/flows"), &data)?;
        for set in &data.set {
            let first = &set.answers[0].0;
            read(&flows[&set.flow], set, first, &mut |_| {
                Understanding::NotUnderstood
            })?;
        }
        Ok(())
    }
}
