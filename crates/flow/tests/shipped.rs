//! The flows and scenarios shipped in `prompts/`: every flow loads, and every scenario passes on
//! deterministic understanding alone (the model answers "not understood"), except the few marked
//! `needs_model`, which are counted.

use std::path::{Path, PathBuf};

use switchboard_flow::scenario::{Scenario, run_text};
use switchboard_flow::{Direction, Flow, Understanding};

fn prompts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts")
}

fn load(name: &str) -> Flow {
    let path = prompts().join("flows").join(format!("{name}.yaml"));
    Flow::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn scenarios(flow: &str) -> Vec<Scenario> {
    let dir = prompts().join("scenarios").join(flow);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| Scenario::load(f).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Runs every scenario of `flow` without a model; returns how many were skipped as `needs_model`.
fn run_all(flow_name: &str) -> usize {
    let flow = load(flow_name);
    let all = scenarios(flow_name);
    assert!(all.len() >= 10, "{flow_name}: only {} scenarios", all.len());
    let mut skipped = 0;
    let mut failed = Vec::new();
    for s in &all {
        assert_eq!(s.flow, flow_name, "{}: scenario for another flow", s.file);
        if s.needs_model {
            skipped += 1;
            continue;
        }
        let report = run_text(&flow, s, &mut |_| Understanding::NotUnderstood);
        if !report.passed() {
            failed.push(format!("{}\n{report}", s.file));
        }
    }
    assert!(
        failed.is_empty(),
        "{} scenario(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    skipped
}

#[test]
fn shipped_flows_load() {
    let support = load("inbound_support");
    assert_eq!(support.name(), "inbound_support");
    assert_eq!(support.direction(), Direction::Inbound);
    assert!(support.system_prompt().contains("214 Main Street"));
    assert!(support.system_prompt().contains("Do you deliver?"));
    assert_eq!(support.tables()["orders"].rows.len(), 6);
    let appointment = load("outbound_appointment");
    assert_eq!(appointment.direction(), Direction::Outbound);
    assert!(
        appointment
            .contact_fields()
            .contains(&"appointment_time".to_string())
    );
    let survey = load("outbound_survey");
    assert_eq!(survey.direction(), Direction::Outbound);
    assert_eq!(survey.slot("rating").and_then(|s| s.max), Some(5));
}

#[test]
fn inbound_support_scenarios_pass_without_a_model() {
    assert_eq!(run_all("inbound_support"), 0, "needs_model scenarios");
}

#[test]
fn outbound_appointment_scenarios_pass_without_a_model() {
    assert_eq!(run_all("outbound_appointment"), 1, "needs_model scenarios");
}

#[test]
fn outbound_survey_scenarios_pass_without_a_model() {
    assert_eq!(run_all("outbound_survey"), 0, "needs_model scenarios");
}

/// The needs_model scenarios pass when a (fake) model gives the answer a real one should.
#[test]
fn needs_model_scenarios_pass_with_the_expected_model_answers() {
    for (flow_name, answer) in [(
        "outbound_appointment",
        Understanding::Label("reschedule".to_string()),
    )] {
        let flow = load(flow_name);
        for s in scenarios(flow_name).iter().filter(|s| s.needs_model) {
            let mut asked = 0;
            let report = run_text(&flow, s, &mut |_| {
                asked += 1;
                if asked == 1 {
                    answer.clone()
                } else {
                    Understanding::NotUnderstood
                }
            });
            assert!(report.passed(), "{}\n{report}", s.file);
        }
    }
}
