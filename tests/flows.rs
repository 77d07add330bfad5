//! Black-box tests of `switchboard flows check|test`: the shipped flows validate, a broken flow gives
//! a precise error, and the shipped scenarios run end to end through the binary.

use std::process::{Command, Output};

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_every_shipped_flow() {
    let out = switchboard(&["flows", "check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for name in ["inbound_support", "outbound_appointment", "outbound_survey"] {
        assert!(
            stdout.contains(&format!("ok    prompts/flows/{name}.yaml")),
            "{stdout}"
        );
    }
}

#[test]
fn check_points_at_the_broken_line() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("broken.yaml");
    std::fs::write(
        &file,
        "name: broken\ndirection: inbound\npersona: p\nstart: hello\nsteps:\n  hello:\n    say: Hi.\n    next: byebye\n  bye:\n    end: { outcome: resolved }\n",
    )?;
    let out = switchboard(&["flows", "check", file.to_str().expect("utf-8 path")]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "a broken flow must fail: {stdout}");
    assert!(
        stdout.contains("broken.yaml:8:11:") && stdout.contains("unknown step \"byebye\""),
        "{stdout}{stderr}"
    );
    Ok(())
}

#[test]
fn shipped_scenarios_pass_without_the_model() {
    let out = switchboard(&["flows", "test", "--no-model"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("42 passed, 0 failed, 1 skipped of 43"),
        "{stdout}"
    );
}

#[test]
fn a_scenario_can_speak_through_speech_to_text() -> std::io::Result<()> {
    // The bundled recording asks for Saturday opening hours; the flow must answer with the hours.
    let dir = tempfile::tempdir()?;
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/caller-hours.wav");
    let scenario = dir.path().join("hours_by_voice.yaml");
    std::fs::write(
        &scenario,
        format!(
            "flow: inbound_support\nname: hours asked out loud\nturns:\n  - wav: {}\n    expect: {{ says: [\"Saturday from 8 AM\"], slots: {{ topic: hours }} }}\n  - caller: that's all\nexpect: {{ outcome: resolved }}\n",
            sample.display()
        ),
    )?;
    let out = switchboard(&[
        "flows",
        "test",
        "--no-model",
        scenario.to_str().expect("utf-8 path"),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    Ok(())
}

#[test]
#[ignore = "model limit (issue 4): with SmolLM2-135M 42 of 43 pass. The one that needs the model \
            ('Thursday is a bit tricky with work this week', meaning reschedule) comes out at 45 % \
            reschedule, 28 % confirm after calibration and is re-prompted; `switchboard bench understand` \
            shows the model adding no right reading over the rules on 111 labelled answers"]
fn shipped_scenarios_pass_with_the_default_model() {
    let out = switchboard(&["flows", "test"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("43 passed, 0 failed, 0 skipped of 43"),
        "{stdout}"
    );
}
