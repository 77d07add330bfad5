//! schemathesis (the OpenAPI fuzzer, installed by `make tools`) against the running API: generated
//! valid and invalid requests to every operation, with every check it has — no 5xx, status codes,
//! content types, headers and bodies as described, invalid input refused, auth not ignored.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{CALL, Setup, server, stream_call};

const FLOW: &str = r#"
name: test_line
direction: inbound
persona: A test line.
start: hello
steps:
  hello:
    end: { outcome: resolved, say: Hello and goodbye. }
"#;

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return path.into();
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/schemathesis/bin/st");
    assert!(
        path.exists(),
        "schemathesis is not installed at {}: run `make tools` (or set SCHEMATHESIS)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong_with_the_api() {
    let st = schemathesis();
    let (url, state) = server(Setup {
        flow: FLOW,
        rest: None,
        record: true,
    })
    .await;
    // Real rows to find: a few finished calls.
    for i in 0..3 {
        stream_call(&url, &format!("{CALL}{i}"), &[]).await;
    }
    let key = state
        .store()
        .create_api_key("schemathesis")
        .await
        .expect("key")
        .secret;
    let report = tempfile::tempdir().expect("temp dir");
    let schema = format!("{url}/api/openapi.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .args([
                "run",
                &schema,
                "--checks",
                "all",
                "--max-examples",
                "60",
                "--seed",
                "1",
            ])
            .args(["--header", &format!("Authorization: Bearer {key}")])
            .args(["--request-timeout", "10", "--workers", "1", "--no-color"])
            .arg("--report-dir")
            .arg(report.path())
            // It keeps a cache in its working directory.
            .current_dir(report.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // It really tested every operation (a run that tested nothing also exits 0).
    let tested = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested:"))
        .map(str::trim);
    assert_eq!(tested, Some("5"), "all five operations tested:\n{stdout}");
    assert!(
        stdout.contains("Fuzzing") && stdout.contains("Stateful"),
        "{stdout}"
    );
}
