//! `switchboard campaign …` as people and scripts use it, on a fresh data directory each: create
//! (the id alone on stdout), import a list, status, start, pause, results as CSV and JSON; the
//! do-not-call list; and the refusals (a bad flow, an illegal status change) with clear messages.

mod common;

use std::path::{Path, PathBuf};

use common::{switchboard, text};

/// Runs `switchboard campaign ARGS --data-dir DIR`; stdout, or a panic with everything said.
fn campaign(dir: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = try_campaign(dir, args);
    assert!(ok, "campaign {args:?} failed:\n{stdout}{stderr}");
    stdout
}

fn try_campaign(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["campaign"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", dir.to_str().expect("utf-8 path")]);
    let out = switchboard(&all);
    let (stdout, stderr) = text(&out);
    (out.status.success(), stdout, stderr)
}

fn data_dir() -> PathBuf {
    tempfile::tempdir().expect("temp dir").keep()
}

#[test]
fn a_campaign_is_created_filled_started_paused_and_its_results_exported() {
    let dir = data_dir();
    let stdout = campaign(
        &dir,
        &[
            "create",
            "--name",
            "Reminders",
            "--flow",
            "outbound_appointment",
            "--caller-id",
            "+1 (555) 010-0199",
            "--window",
            "10:00-18:00",
            "--days",
            "mon-sat",
            "--max-attempts",
            "4",
            "--retry-busy",
            "5",
            "--voicemail",
            "hangup",
        ],
    );
    // The id alone on stdout, so `ID=$(switchboard campaign create …)` works.
    let id = stdout.trim().to_string();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert_eq!(id.len(), 36, "a UUID: {stdout}");

    let list = dir.join("contacts.csv");
    std::fs::write(
        &list,
        "name,phone,consent,time_zone,state,appointment\n\
         Ada,+442079460958,yes,,,Tuesday 10:00\n\
         Bob,12125550100,yes,,,\n\
         Di,+12145550102,yes,,TX,\n",
    )
    .expect("write the list");
    let report = campaign(&dir, &["import", &id, list.to_str().expect("utf-8")]);
    assert!(report.contains("imported 2 contacts"), "{report}");
    assert!(
        report.contains("line 3: a phone number must start with +"),
        "{report}"
    );
    assert!(
        report.contains("never called") && report.contains("lines 4"),
        "{report}"
    );

    let status = campaign(&dir, &["status", &id]);
    for expected in [
        "`Reminders`",
        "status    draft",
        "outbound_appointment, caller id +15550100199",
        "10:00-18:00 mon-sat",
        "4 per contact",
        "busy 5 min",
        "hang up",
        "contacts  2: 2 pending",
    ] {
        assert!(status.contains(expected), "`{expected}` not in:\n{status}");
    }

    assert!(campaign(&dir, &["start", &id]).contains("is running"));
    assert!(campaign(&dir, &["pause", &id]).contains("is paused"));
    let table = campaign(&dir, &["status"]);
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("the campaign's row");
    assert!(row.contains("Reminders") && row.contains(" paused "), "{table}");

    let csv = campaign(&dir, &["results", &id, "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "name,phone,time_zone,consent,state,final_outcome,attempts,first_attempt_at,last_attempt_at,history,slots"
        )
    );
    assert_eq!(
        lines.collect::<Vec<_>>(),
        [
            "Ada,+442079460958,Europe/London,yes,pending,,0,,,,",
            "Di,+12145550102,,yes,pending,,0,,,,"
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&campaign(&dir, &["results", &id, "--format", "json"])).expect("JSON");
    assert_eq!(
        json["contacts"][0]["contact"]["fields"]["appointment"],
        "Tuesday 10:00"
    );
    let table = campaign(&dir, &["results", &id]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("Di ") && l.contains("pending")),
        "{table}"
    );
}

#[test]
fn an_illegal_status_change_names_the_status_and_changes_nothing() {
    let dir = data_dir();
    let id = campaign(
        &dir,
        &[
            "create",
            "--name",
            "Survey",
            "--flow",
            "outbound_survey",
            "--caller-id",
            "+15550100199",
        ],
    )
    .trim()
    .to_string();
    let (ok, _, stderr) = try_campaign(&dir, &["resume", &id]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("cannot resume campaign `{id}`: it is draft")),
        "{stderr}"
    );
    assert!(campaign(&dir, &["cancel", &id]).contains("is cancelled"));
    let (ok, _, stderr) = try_campaign(&dir, &["start", &id]);
    assert!(!ok && stderr.contains("it is cancelled"), "{stderr}");
    let list = dir.join("contacts.csv");
    std::fs::write(&list, "phone,consent\n+442079460958,yes\n").expect("write");
    let (ok, _, stderr) = try_campaign(&dir, &["import", &id, list.to_str().expect("utf-8")]);
    assert!(
        !ok && stderr.contains("cannot import contacts into campaign"),
        "{stderr}"
    );
    assert!(campaign(&dir, &["status", &id]).contains("status    cancelled"));
    let (ok, _, stderr) = try_campaign(&dir, &["pause", "no-such-id"]);
    assert!(
        !ok && stderr.contains("no campaign with id `no-such-id`"),
        "{stderr}"
    );
}

#[test]
fn a_bad_flow_or_setting_is_refused_clearly_and_nothing_is_created() {
    let dir = data_dir();
    let create = |flow: &str, extra: &[&str]| {
        let mut args = vec![
            "create",
            "--name",
            "N",
            "--flow",
            flow,
            "--caller-id",
            "+15550100199",
        ];
        args.extend_from_slice(extra);
        try_campaign(&dir, &args)
    };
    let (ok, _, stderr) = create("no_such_flow", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("flow `no_such_flow` is not loaded")
            && stderr.contains("outbound_appointment")
            && stderr.contains("prompts/flows"),
        "{stderr}"
    );
    let (ok, _, stderr) = create("inbound_support", &[]);
    assert!(
        !ok && stderr.contains("a campaign needs an outbound flow"),
        "{stderr}"
    );
    let (ok, _, stderr) = create("outbound_survey", &["--window", "07:00-20:00"]);
    assert!(!ok && stderr.contains("outside 08:00-21:00"), "{stderr}");
    let (ok, _, stderr) = create("outbound_survey", &["--days", "someday"]);
    assert!(!ok && stderr.contains("`someday` is not a day"), "{stderr}");
    let (ok, _, stderr) = try_campaign(
        &dir,
        &[
            "create",
            "--name",
            "N",
            "--flow",
            "outbound_survey",
            "--caller-id",
            "5550100",
        ],
    );
    assert!(
        !ok && stderr.contains("caller_id: a phone number must start with +"),
        "{stderr}"
    );
    let table = campaign(&dir, &["status"]);
    assert_eq!(table.lines().count(), 1, "only the header:\n{table}");
}

#[test]
fn numbers_go_on_and_off_the_do_not_call_list() {
    let dir = data_dir();
    let added = campaign(&dir, &["dnc", "add", "+1 555 010 0123", "--reason", "asked us"]);
    assert!(
        added.contains("+15550100123 is on the do-not-call list"),
        "{added}"
    );
    let again = campaign(&dir, &["dnc", "add", "+15550100123"]);
    assert!(again.contains("already"), "{again}");
    let list = campaign(&dir, &["dnc", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("+15550100123"))
        .expect("listed");
    assert!(row.contains("cli") && row.contains("asked us"), "{list}");
    assert!(campaign(&dir, &["dnc", "remove", "+15550100123"]).contains("is off"));
    let (ok, _, stderr) = try_campaign(&dir, &["dnc", "remove", "+15550100123"]);
    assert!(!ok && stderr.contains("not on the do-not-call list"), "{stderr}");
    let (ok, _, stderr) = try_campaign(&dir, &["dnc", "add", "555-0100"]);
    assert!(!ok && stderr.contains("must start with +"), "{stderr}");
    assert_eq!(
        campaign(&dir, &["dnc", "list"]).lines().count(),
        1,
        "only the header"
    );
}
