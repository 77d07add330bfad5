//! schemathesis (the OpenAPI fuzzer, installed by `make tools`) against the running API: generated
//! valid and invalid requests to every operation, with every check it has — no 5xx, status codes,
//! content types, headers and bodies as described, invalid input refused, auth not ignored.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{CALL, INBOUND_FLOW, OUTBOUND_FLOW, Setup, serve, state_with, stream_call};
use switchboard_store::Store;

/// What JSON Schema cannot say, and so schemathesis cannot know: a calling window must end after
/// it starts, a campaign's start date must not come after its end date, and a contact list needs
/// `phone` and `consent` columns. Requests that break only these rules match the document, and
/// are still answered 400 with the reason; everywhere else a valid request must be accepted.
const CONFIG: &str = r#"
[[operations]]
include-name = "POST /api/campaigns"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401"]

[[operations]]
include-name = "POST /api/campaigns/{id}/contacts"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409"]
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
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let store = Store::open_sqlite(&dir.join("calls.db")).await.expect("store");
    let setup = Setup {
        flow: INBOUND_FLOW,
        rest: None,
        record: true,
    };
    let state = state_with(setup, &[OUTBOUND_FLOW], store, &dir);
    let url = serve(state.clone()).await;
    // Real rows to find: a few finished calls, a campaign with contacts, a do-not-call entry.
    for i in 0..3 {
        stream_call(&url, &format!("{CALL}{i}"), &[]).await;
        state.log_settled().await;
    }
    let spec = switchboard_campaign::settings::SettingsSpec::default();
    let new = switchboard_campaign::settings::new_campaign("seed", "reminder", "+15550100199", &spec)
        .expect("campaign");
    let campaign = state.store().create_campaign(&new).await.expect("create");
    let contacts = "name,phone,consent,time_zone\nAda,+442079460958,yes,Europe/London\n";
    switchboard_campaign::import_csv(state.store(), &campaign.id, contacts.as_bytes())
        .await
        .expect("import");
    state
        .store()
        .add_dnc("+15550100123", Some("asked"), Some("test"), 0)
        .await
        .expect("dnc");
    let key = state
        .store()
        .create_api_key("schemathesis")
        .await
        .expect("key")
        .secret;
    let report = tempfile::tempdir().expect("temp dir");
    let config = report.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let schema = format!("{url}/api/openapi.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .arg("--config-file")
            .arg(&config)
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
    assert_eq!(tested, Some("19"), "all 19 operations tested:\n{stdout}");
    assert!(
        stdout.contains("Fuzzing") && stdout.contains("Stateful"),
        "{stdout}"
    );
}
