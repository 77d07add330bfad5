//! `switchboard simulate-provider` as a process: the URL on the first line, calls placed over its REST
//! API, and on SIGTERM the summary table and the `--report` JSON.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use switchboard_simulator::Record;
use switchboard_telephony::webhook::CallStatus;

const SID: &str = "AC00000000000000000000000000000000";

#[test]
fn placed_calls_end_as_the_numbers_file_says_and_the_report_is_written_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let numbers = dir.path().join("numbers.toml");
    std::fs::write(
        &numbers,
        "[default]\nanswer = \"no_answer\"\n[numbers.\"+15555550103\"]\nanswer = \"busy\"\n",
    )
    .expect("numbers file");
    let report = dir.path().join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["simulate-provider", "--port", "0", "--fast", "--numbers"])
        .arg(&numbers)
        .arg("--report")
        .arg(&report)
        .env("RUST_BACKTRACE", "0")
        .env_remove("SWITCHBOARD_AUTH_TOKEN")
        .env_remove("SWITCHBOARD_ACCOUNT_SID")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a first line");
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_owned();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let statuses: Vec<u16> = runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut statuses = Vec::new();
        for (to, token) in [
            ("+15555550103", "switchboard-dev-token"),
            ("+15555550104", "switchboard-dev-token"),
            ("+15555550105", "wrong"),
        ] {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("To", to)
                .append_pair("From", "+15555550100")
                .append_pair("Url", "http://127.0.0.1:9/twilio/voice")
                .finish();
            let response = http
                .post(format!("{url}/2010-04-01/Accounts/{SID}/Calls.json"))
                .basic_auth(SID, Some(token))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("answered");
            statuses.push(response.status().as_u16());
        }
        // Unanswered calls end at once in fast mode; the record says when.
        for _ in 0..100 {
            let text = http
                .get(format!("{url}/sim/calls"))
                .send()
                .await
                .expect("GET /sim/calls")
                .text()
                .await
                .expect("a body");
            let record: Record = serde_json::from_str(&text).expect("a record");
            if record.calls.iter().all(|c| c.ended_by.is_some()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        statuses
    });
    assert_eq!(statuses, [201, 201, 401]);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the rest of stdout");
    assert!(child.wait().expect("exits").success(), "{rest}");
    assert!(
        rest.contains("2 create requests: 2 calls placed, 0 answered with an error"),
        "{rest}"
    );
    assert!(rest.contains("| +15555550103 | 1 | busy | busy |"), "{rest}");

    let record: Record =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the report")).expect("JSON");
    let outcome: Vec<(&str, CallStatus)> = record.calls.iter().map(|c| (c.to.as_str(), c.status)).collect();
    assert_eq!(
        outcome,
        [
            ("+15555550103", CallStatus::Busy),
            ("+15555550104", CallStatus::NoAnswer)
        ]
    );
}
