//! Black-box tests of the `switchboard` binary: what a developer types, what they see.
//! They use the real default models (`make test` fetches them first).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use switchboard_stt::wer::word_error_rate;

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/caller-hours.wav")
}

const SAMPLE_TEXT: &str = "Hi there. Could you tell me your opening hours on Saturday, please?";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn transcribe_prints_the_bundled_sample_through_the_phone_path() {
    let out = switchboard(&[
        "transcribe",
        sample().to_str().expect("utf-8 path"),
        "--telephone",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let wer = word_error_rate(SAMPLE_TEXT, &text);
    assert!(wer <= 0.15, "WER {wer:.2}: {text:?}");
}

#[test]
fn transcribe_json_gives_segments_with_timestamps_and_timings() {
    let out = switchboard(&["transcribe", sample().to_str().expect("utf-8 path"), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("valid JSON on stdout");
    let audio = v["audio_seconds"].as_f64().expect("audio_seconds");
    assert!((audio - 4.39).abs() < 0.05, "audio_seconds {audio}");
    let segments = v["segments"].as_array().expect("segments");
    assert!(!segments.is_empty());
    let mut last_end = 0.0;
    for s in segments {
        let (start, end) = (
            s["start"].as_f64().expect("start"),
            s["end"].as_f64().expect("end"),
        );
        assert!(
            start <= end && end <= audio + 0.5 && start >= last_end - 0.01,
            "{s}"
        );
        last_end = end;
    }
    assert!(
        word_error_rate(SAMPLE_TEXT, v["text"].as_str().expect("text")) <= 0.15,
        "{v}"
    );
    assert!(v["timings_ms"]["inference"].as_f64().expect("inference") > 0.0);
    assert_eq!(
        v["timings_ms"]["audio_ctx"].as_u64(),
        Some(512),
        "4.4 s of audio gets the smallest window"
    );
}

#[test]
fn a_file_that_is_not_a_wav_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("notes.wav");
    std::fs::write(&bad, "these are not audio samples").expect("write");
    let out = switchboard(&["transcribe", bad.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("notes.wav"), "{err}");
    assert!(err.to_lowercase().contains("wav"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_mu_law_wav_is_refused_with_what_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ulaw = dir.path().join("ulaw.wav");
    let status = Command::new("sox")
        .arg(sample())
        .args(["-r", "8000", "-e", "mu-law"])
        .arg(&ulaw)
        .status()
        .expect("sox runs (make setup installs it)");
    assert!(status.success());
    let out = switchboard(&["transcribe", ulaw.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("ulaw.wav"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_model_names_the_command_that_fetches_it() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["transcribe", sample().to_str().expect("utf-8 path")])
        .env("SWITCHBOARD_MODELS_DIR", empty.path())
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("switchboard models fetch whisper-tiny.en"), "{err}");
}

#[test]
fn an_unknown_model_name_is_refused() {
    let out = switchboard(&[
        "transcribe",
        sample().to_str().expect("utf-8 path"),
        "--model",
        "whisper-huge",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("switchboard models list"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_show_prints_the_effective_settings_without_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        "max_calls = 7\nlog_pii = true\n[provider]\naccount_sid = \"AC123\"\nauth_token = \"file-token-77a1\"\n\
         rest_base_url = \"https://user:rest-pass-55@provider.example\"\n[numbers]\n\"+15555550142\" = \"outbound_survey\"\n",
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["config", "show", "--port", "9100", "--config"])
        .arg(&config)
        .env("DATABASE_URL", "postgres://app:db-pass-31@db.internal/calls")
        .env("SWITCHBOARD_RETENTION_DAYS", "30")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for secret in ["file-token-77a1", "rest-pass-55", "db-pass-31"] {
        assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
    }
    // Every layer is there: the flag, the file, the environment, and the defaults.
    for line in [
        "port = 9100",
        "max_calls = 7",
        "log_pii = true",
        "retention_days = 30",
        "record_calls = true",
        "account_sid = \"AC123\"",
        "\"+15555550142\" = \"outbound_survey\"",
        "database_url = \"postgres://app:***@db.internal/calls\"",
        "# auth_token: set, not shown",
    ] {
        assert!(shown.lines().any(|l| l == line), "no `{line}` in:\n{shown}");
    }
    // And it is itself a configuration file `serve` accepts.
    std::fs::write(&config, &shown).expect("write");
    let again = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["config", "show", "--config"])
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("max_calls = 7"));
}

#[test]
fn output_into_a_closed_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["models", "list"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // The reader goes away before the command prints anything, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        out.status.signal(),
        Some(13),
        "ended by SIGPIPE like other tools: {:?} {err}",
        out.status
    );
}
