//! Outbound campaigns end to end: `switchboard serve` (real models, real store) dials through its
//! REST client into `switchboard simulate-provider` on loopback, which answers as people (speech
//! synthesized and heard by whisper), answering machines, busy lines and unanswered phones, and
//! calls the runtime's webhooks and media stream back like the provider does.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, first_line};
use serde_json::{Value, json};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const DEV_TOKEN: &str = "switchboard-dev-token";

/// `switchboard simulate-provider` on a free port; killed on drop.
struct Provider {
    child: Child,
    url: String,
}

impl Provider {
    fn start(numbers: &Path, dir: &Path) -> Provider {
        Provider::start_with(numbers, dir, &[])
    }

    fn start_with(numbers: &Path, dir: &Path, extra: &[&str]) -> Provider {
        let log = std::fs::File::create(dir.join("provider.log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "simulate-provider",
                "--port",
                "0",
                "--fast",
                "--account-sid",
                ACCOUNT_SID,
            ])
            .args(["--auth-token", DEV_TOKEN, "--numbers"])
            .arg(numbers)
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("simulate-provider starts");
        let url = first_line(&mut child, "simulate-provider", |line| {
            let at = line.find("http://")?;
            line[at..].split_whitespace().next().map(str::to_string)
        });
        Provider { child, url }
    }

    /// Everything the provider saw so far (`GET /sim/calls`).
    async fn record(&self) -> Value {
        reqwest::get(format!("{}/sim/calls", self.url))
            .await
            .expect("the simulator answers")
            .text()
            .await
            .map(|t| serde_json::from_str(&t).expect("JSON record"))
            .expect("record body")
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The runtime's configuration: campaigns dialed through the simulator, short leases so that
/// recovery after a crash is quick.
fn serve_config(dir: &Path, provider: &Provider) -> PathBuf {
    let path = dir.join("serve.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[provider]
account_sid = "{ACCOUNT_SID}"
rest_base_url = "{}"

[campaigns]
tick_ms = 200
lease_seconds = 8
dial_timeout_seconds = 4
settle_after_seconds = 10
"#,
            provider.url
        ),
    )
    .expect("config written");
    path
}

struct Api {
    url: String,
    key: String,
    client: reqwest::Client,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            url: server.url.clone(),
            key: server.api_key(),
            client: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<(&str, String)>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<(&str, String)>) -> Value {
        let (status, value) = self.send(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {value}");
        value
    }

    async fn get(&self, path: &str) -> Value {
        self.ok(reqwest::Method::GET, path, None).await
    }

    async fn post_json(&self, path: &str, body: Value) -> Value {
        self.ok(
            reqwest::Method::POST,
            path,
            Some(("application/json", body.to_string())),
        )
        .await
    }
}

/// Zones covering every hour offset, to find one where it is daytime (or night) right now.
const ZONES: &[&str] = &[
    "Pacific/Pago_Pago",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Halifax",
    "America/Sao_Paulo",
    "Atlantic/South_Georgia",
    "Atlantic/Azores",
    "Europe/London",
    "Europe/Paris",
    "Europe/Athens",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Brisbane",
    "Pacific/Noumea",
    "Pacific/Auckland",
    "Pacific/Tongatapu",
    "Pacific/Kiritimati",
];

/// A zone whose local hour is in `hours` now (and for the next hour or so, given the margins).
fn zone_at(hours: std::ops::Range<i8>) -> &'static str {
    let now = jiff::Timestamp::now();
    ZONES
        .iter()
        .copied()
        .find(|z| {
            let tz = jiff::tz::TimeZone::get(z).expect("zone in the database");
            hours.contains(&now.to_zoned_datetime(tz).hour())
        })
        .expect("some zone is at every hour")
}

/// What one contact does, and what the campaign must make of it.
struct Person {
    phone: String,
    name: String,
    time_zone: String,
    consent: bool,
    /// The simulator's entry for the number (TOML), if it is ever to be called.
    answers: Option<String>,
    /// Calls the provider must see; `None`: never called.
    calls: usize,
    outcome: Option<&'static str>,
}

fn say_turns(lines: &[&str]) -> String {
    let turns: Vec<String> = lines
        .iter()
        .map(|l| match l.strip_prefix("dtmf:") {
            Some(keys) => format!("{{ dtmf = \"{keys}\" }}"),
            None => format!("{{ say = \"{l}\" }}"),
        })
        .collect();
    format!("turns = [{}]", turns.join(", "))
}

fn human(lines: &[&str]) -> String {
    format!("answer = \"human\"\n{}", say_turns(lines))
}

const CONFIRM: &[&str] = &["Yes, speaking.", "Yes, I will be there."];
// Phrased so whisper still hears them in espeak's voice over an 8 kHz mu-law line.
const RESCHEDULE: &[&str] = &[
    "Yes, speaking.",
    "I can't make it, I need to reschedule.",
    "On Friday at 3 PM.",
    "Yes, that's right.",
];
const CANCEL_BY_KEYS: &[&str] = &["Yes, speaking.", "dtmf:3", "dtmf:1"];
const OPT_OUT: &[&str] = &["Please stop calling me."];

fn people() -> Vec<Person> {
    let day = zone_at(10..18);
    let night = zone_at(1..6);
    let mut people = Vec::new();
    let mut n = 0;
    let mut add = |answers: Option<String>, calls: usize, outcome: Option<&'static str>| {
        n += 1;
        people.push(Person {
            phone: format!("+4420794600{n:02}"),
            name: format!("Person {n}"),
            time_zone: day.to_string(),
            consent: true,
            answers,
            calls,
            outcome,
        });
    };
    for _ in 0..8 {
        add(Some(human(CONFIRM)), 1, Some("confirmed"));
    }
    for _ in 0..3 {
        add(Some(human(RESCHEDULE)), 1, Some("rescheduled"));
    }
    for _ in 0..2 {
        add(Some(human(CANCEL_BY_KEYS)), 1, Some("cancelled"));
    }
    for _ in 0..3 {
        add(Some(human(OPT_OUT)), 1, Some("opted_out"));
    }
    add(Some(human(&["dtmf:9"])), 1, Some("opted_out"));
    // Busy the first time, then confirms: retried as configured.
    for _ in 0..2 {
        let entry = format!(
            "attempts = [{{ answer = \"busy\" }}, {{ answer = \"human\", {} }}]",
            say_turns(CONFIRM)
        );
        add(Some(entry), 2, Some("confirmed"));
    }
    // The create request fails with a 500 after placing the call: followed, never redialed.
    add(
        Some(format!("fault = \"error_after_create\"\n{}", human(CONFIRM))),
        1,
        Some("confirmed"),
    );
    for _ in 0..6 {
        add(
            Some("answer = \"voicemail\"\ngreeting_seconds = 1".into()),
            3,
            Some("unreachable"),
        );
    }
    for _ in 0..6 {
        add(Some("answer = \"busy\"".into()), 3, Some("unreachable"));
    }
    for _ in 0..6 {
        add(Some("answer = \"no_answer\"".into()), 3, Some("unreachable"));
    }
    for _ in 0..2 {
        add(Some("answer = \"failed\"".into()), 3, Some("unreachable"));
    }
    // Refused by the provider (400): no call, each attempt fails.
    add(Some("fault = \"reject\"".into()), 0, Some("unreachable"));
    for _ in 0..3 {
        add(None, 0, Some("not_called_no_consent"));
    }
    for _ in 0..3 {
        add(None, 0, Some("not_called_do_not_call"));
    }
    for _ in 0..3 {
        add(None, 0, None);
    }
    let len = people.len();
    for p in &mut people[len - 9..len - 6] {
        p.consent = false;
    }
    for p in &mut people[len - 3..] {
        p.time_zone = night.to_string();
    }
    // A number in a country with many zones, and no zone given: never called.
    people.push(Person {
        phone: "+12025550143".into(),
        name: "No Zone".into(),
        time_zone: String::new(),
        consent: true,
        answers: None,
        calls: 0,
        outcome: Some("not_called_unknown_time_zone"),
    });
    people
}

fn numbers_file(people: &[Person], dir: &Path) -> PathBuf {
    let mut toml = String::from("[default]\nanswer = \"no_answer\"\n");
    for p in people {
        if let Some(answers) = &p.answers {
            toml.push_str(&format!("\n[numbers.\"{}\"]\n{answers}\n", p.phone));
        }
    }
    let path = dir.join("numbers.toml");
    std::fs::write(&path, toml).expect("numbers file written");
    path
}

fn contacts_csv(people: &[Person]) -> String {
    let mut csv = String::from("name,phone,time_zone,consent,consent_source,appointment_time\n");
    for p in people {
        csv.push_str(&format!(
            "{},{},{},{},web form,Tuesday at 10 AM\n",
            p.name,
            p.phone,
            p.time_zone,
            if p.consent { "yes" } else { "no" }
        ));
    }
    csv
}

/// Creates, fills and starts a campaign; its id.
async fn start_campaign(api: &Api, people: &[Person], max_attempts: u32) -> String {
    let campaign = api
        .post_json(
            "/api/campaigns",
            json!({
                "name": "appointment reminders",
                "flow": "outbound_appointment",
                "caller_id": "+442071230000",
                "settings": {
                    "window": "09:00-20:00",
                    // Every day: the test runs on weekends too, in whatever zone is in daytime.
                    "days_of_week": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "max_attempts": max_attempts,
                    "max_attempts_per_day": max_attempts,
                    "retry_minutes": {"busy": 0, "no_answer": 0, "voicemail": 0, "failed": 0},
                    "max_concurrent": 4,
                    "calls_per_second": 5.0,
                    "voicemail": "leave"
                }
            }),
        )
        .await;
    let id = campaign["id"].as_str().expect("campaign id").to_string();
    let report = api
        .ok(
            reqwest::Method::POST,
            &format!("/api/campaigns/{id}/contacts"),
            Some(("text/csv", contacts_csv(people))),
        )
        .await;
    assert_eq!(report["imported"], json!(people.len()), "{report}");
    api.ok(reqwest::Method::POST, &format!("/api/campaigns/{id}/start"), None)
        .await;
    id
}

/// Per contact phone: (state, final outcome, attempts).
async fn results(api: &Api, id: &str) -> BTreeMap<String, Value> {
    let results = api.get(&format!("/api/campaigns/{id}/results")).await;
    results["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .map(|c| {
            (
                c["contact"]["phone"].as_str().expect("phone").to_string(),
                c.clone(),
            )
        })
        .collect()
}

/// Waits until every contact that can be called now is done.
async fn wait_until_done(api: &Api, id: &str, people: &[Person], limit: Duration) -> BTreeMap<String, Value> {
    let started = Instant::now();
    loop {
        let results = results(api, id).await;
        let open: Vec<&str> = people
            .iter()
            .filter(|p| p.outcome.is_some())
            .filter(|p| results[&p.phone]["contact"]["state"] != "done")
            .map(|p| p.phone.as_str())
            .collect();
        if open.is_empty() {
            return results;
        }
        assert!(
            started.elapsed() < limit,
            "contacts not done after {limit:?}: {open:?}\n{}",
            serde_json::to_string_pretty(&open.iter().map(|p| &results[*p]).collect::<Vec<_>>())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The attempt id in a voice webhook URL (`…/twilio/voice?attempt=ID`).
fn attempt_of(url: &str) -> Option<&str> {
    url.split("attempt=")
        .nth(1)
        .map(|s| s.split('&').next().unwrap_or(s))
}

/// No attempt was ever sent to the provider twice.
fn assert_no_duplicate_dials(record: &Value) {
    let mut seen = BTreeMap::new();
    for request in record["requests"].as_array().expect("requests") {
        let url = request["url"].as_str().expect("every create has a Url");
        let attempt = attempt_of(url).expect("the Url names the attempt").to_string();
        *seen.entry(attempt).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "attempts dialed more than once: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_of_fifty_contacts_calls_the_right_people_and_records_what_each_did() {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let people = people();
    assert!(people.len() >= 50);
    let provider = Provider::start(&numbers_file(&people, &dir), &dir);
    let server = Server::start_with(dir.clone(), Some(&serve_config(&dir, &provider)));
    let api = Api::new(&server);
    // The do-not-call list before the campaign: three contacts are on it.
    let dnc: Vec<&Person> = people
        .iter()
        .filter(|p| p.outcome == Some("not_called_do_not_call"))
        .collect();
    for p in &dnc {
        api.post_json(
            "/api/dnc",
            json!({"phone": p.phone, "reason": "asked in the shop"}),
        )
        .await;
    }

    let id = start_campaign(&api, &people, 3).await;
    let results = wait_until_done(&api, &id, &people, Duration::from_secs(600)).await;
    let record = provider.record().await;
    let calls = record["calls"].as_array().expect("calls");
    let requests = record["requests"].as_array().expect("requests");
    assert_no_duplicate_dials(&record);

    let mut wrong = Vec::new();
    for p in &people {
        let r = &results[&p.phone];
        let outcome = r["contact"]["final_outcome"].as_str();
        let placed = calls.iter().filter(|c| c["to"] == p.phone.as_str()).count();
        let asked = requests.iter().filter(|c| c["to"] == p.phone.as_str()).count();
        let attempts = r["attempts"].as_array().map_or(0, Vec::len);
        if outcome != p.outcome || placed != p.calls {
            wrong.push(format!(
                "{} ({}): outcome {outcome:?} (want {:?}), {placed} calls placed (want {}), {attempts} attempts\n  {r}",
                p.phone, p.name, p.outcome, p.calls
            ));
        }
        // Every attempt is one create request, and nobody is asked for beyond the limit.
        if attempts != asked || attempts > 3 {
            wrong.push(format!(
                "{}: {attempts} attempts but {asked} create requests",
                p.phone
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // What the people said is in the results.
    for p in people.iter().filter(|p| p.outcome == Some("rescheduled")) {
        let attempt = &results[&p.phone]["attempts"][0];
        let new_time = attempt["slots"]["new_time"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        assert!(new_time.contains("friday"), "{}: {attempt}", p.phone);
    }
    // The machines got the flow's message, with the contact's name.
    for c in calls.iter().filter(|c| c["answer"] == "voicemail") {
        let left = c["voicemail"].as_str().unwrap_or_default();
        let person = people
            .iter()
            .find(|p| c["to"] == p.phone.as_str())
            .expect("a contact");
        assert!(
            left.contains(&person.name) && left.contains("Lakeside Dental"),
            "voicemail left for {}: {left:?}",
            person.phone
        );
    }
    // Opt-outs went to the do-not-call list at once, with the numbers added by hand.
    let listed = api.get("/api/dnc").await;
    let listed: Vec<&str> = listed["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["phone"].as_str())
        .collect();
    for p in people
        .iter()
        .filter(|p| matches!(p.outcome, Some("opted_out" | "not_called_do_not_call")))
    {
        assert!(
            listed.contains(&p.phone.as_str()),
            "{} on the list: {listed:?}",
            p.phone
        );
    }
    // The contacts outside their window were not called and wait for it, with the reason logged.
    let decisions = api.get(&format!("/api/campaigns/{id}/decisions?limit=500")).await;
    for p in people.iter().filter(|p| p.outcome.is_none()) {
        assert_eq!(results[&p.phone]["contact"]["state"], "pending", "{}", p.phone);
        let contact_id = results[&p.phone]["contact"]["id"].clone();
        let reasons: Vec<&str> = decisions["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .filter(|d| d["contact_id"] == contact_id)
            .filter_map(|d| d["reason"].as_str())
            .collect();
        assert!(
            !reasons.is_empty() && reasons.iter().all(|r| *r == "calling_window"),
            "{}: {reasons:?}",
            p.phone
        );
    }
    // Every answered call is in the call log, linked from its attempt.
    for p in people.iter().filter(|p| p.outcome == Some("confirmed")) {
        let attempts = results[&p.phone]["attempts"].as_array().expect("attempts");
        let last = attempts.last().expect("an attempt");
        let call_id = last["call_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{} linked: {last}", p.phone));
        let call = api.get(&format!("/api/calls/{call_id}")).await;
        assert_eq!(call["outcome"], "confirmed", "{call}");
        assert_eq!(call["direction"], "outbound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_runtime_again_and_again_never_dials_an_attempt_twice_nor_loses_a_result() {
    const MAX_ATTEMPTS: usize = 5;
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let zone = zone_at(10..18);
    let mut people = Vec::new();
    let kinds: [(&str, String); 5] = [
        ("confirmed", human(CONFIRM)),
        ("busy", "answer = \"busy\"".into()),
        ("voicemail", "answer = \"voicemail\"\ngreeting_seconds = 1".into()),
        ("no_answer", "answer = \"no_answer\"\nring_seconds = 1".into()),
        (
            "in_doubt",
            "fault = \"error_after_create\"\nanswer = \"busy\"".into(),
        ),
    ];
    for (i, (kind, answers)) in kinds.iter().cycle().take(20).enumerate() {
        people.push(Person {
            phone: format!("+4420794601{i:02}"),
            name: format!("{kind} {i}"),
            time_zone: zone.to_string(),
            consent: true,
            answers: Some(answers.clone()),
            calls: 0,
            outcome: Some(if *kind == "confirmed" {
                "confirmed"
            } else {
                "unreachable"
            }),
        });
    }
    let provider = Provider::start(&numbers_file(&people, &dir), &dir);
    let config = serve_config(&dir, &provider);
    let mut server = Server::start_with(dir.clone(), Some(&config));
    let key = server.api_key();
    let api_at = |server: &Server| Api {
        url: server.url.clone(),
        key: key.clone(),
        client: reqwest::Client::new(),
    };
    let id = start_campaign(&api_at(&server), &people, MAX_ATTEMPTS as u32).await;

    // Crash at different moments: mid-dial, mid-call, between ticks.
    for pause_ms in [2_500, 4_000, 1_500, 5_000, 3_000] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        server.kill();
        server = Server::start_with(dir.clone(), Some(&config));
    }
    let api = api_at(&server);
    let results = wait_until_done(&api, &id, &people, Duration::from_secs(600)).await;
    let record = provider.record().await;
    assert_no_duplicate_dials(&record);

    let mut wrong = Vec::new();
    for p in &people {
        let r = &results[&p.phone];
        let attempts = r["attempts"].as_array().expect("attempts");
        let outcome = r["contact"]["final_outcome"].as_str();
        let not_placed = attempts.iter().filter(|a| a["outcome"] == "not_placed").count();
        let asked = record["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .filter(|c| c["to"] == p.phone.as_str())
            .count();
        let mut placed: Vec<&str> = record["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .filter(|c| c["to"] == p.phone.as_str())
            .filter_map(|c| c["sid"].as_str())
            .collect();
        let mut known: Vec<&str> = attempts
            .iter()
            .filter_map(|a| a["provider_call_id"].as_str())
            .collect();
        placed.sort_unstable();
        known.sort_unstable();
        if placed != known {
            wrong.push(format!(
                "{}: calls placed {placed:?}, attempts know {known:?}",
                p.phone
            ));
        }
        // Each attempt was sent once, except those a crash stopped before the request left
        // (found missing at the provider: `not_placed`).
        if asked + not_placed != attempts.len() {
            wrong.push(format!(
                "{}: {} attempts, {asked} create requests, {not_placed} not placed",
                p.phone,
                attempts.len()
            ));
        }
        if attempts.iter().any(|a| {
            !matches!(
                a["status"].as_str(),
                Some("completed" | "busy" | "no_answer" | "voicemail" | "failed")
            )
        }) {
            wrong.push(format!("{}: an attempt never finished: {r}", p.phone));
        }
        let retried_for_the_crash =
            |a: &Value| matches!(a["outcome"].as_str(), Some("not_placed" | "interrupted"));
        match p.outcome {
            Some("confirmed") if outcome == Some("confirmed") => {
                // Every attempt before the successful one was cut by a crash.
                if !attempts[..attempts.len() - 1].iter().all(retried_for_the_crash) {
                    wrong.push(format!(
                        "{}: confirmed after attempts not cut by a crash: {r}",
                        p.phone
                    ));
                }
            }
            // A person whose every call a crash cut short ends unreachable, never otherwise.
            Some("confirmed")
                if outcome == Some("unreachable") && attempts.iter().all(retried_for_the_crash) => {}
            _ if outcome == p.outcome && attempts.len() == MAX_ATTEMPTS => {}
            _ => wrong.push(format!(
                "{}: outcome {outcome:?} after {} attempts: {r}",
                p.phone,
                attempts.len()
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The provider refuses calls beyond two alive at once (429): the runtime gives those dials back and
/// pauses, so every contact is still called exactly once, with no attempt used up by a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_rate_limit_delays_calls_without_using_up_attempts() {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let day = zone_at(10..18);
    let people: Vec<Person> = (1..=6)
        .map(|n| Person {
            phone: format!("+4420794601{n:02}"),
            name: format!("Person {n}"),
            time_zone: day.to_string(),
            consent: true,
            answers: Some(human(CONFIRM)),
            calls: 1,
            outcome: Some("confirmed"),
        })
        .collect();
    let provider = Provider::start_with(&numbers_file(&people, &dir), &dir, &["--max-live-calls", "2"]);
    let server = Server::start_with(dir.clone(), Some(&serve_config(&dir, &provider)));
    let api = Api::new(&server);
    // Four at once on the campaign's side, two on the provider's.
    let id = start_campaign(&api, &people, 3).await;
    let results = wait_until_done(&api, &id, &people, Duration::from_secs(300)).await;

    let record = provider.record().await;
    let calls = record["calls"].as_array().expect("calls");
    let refused = record["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["http_status"] == 429)
        .count();
    assert!(refused > 0, "the provider's limit was reached: {record}");
    for p in &people {
        let r = &results[&p.phone];
        assert_eq!(r["contact"]["final_outcome"], "confirmed", "{r}");
        let attempts = r["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "{}: a refusal is not an attempt: {r}", p.phone);
        let placed = calls.iter().filter(|c| c["to"] == p.phone.as_str()).count();
        assert_eq!(placed, 1, "{}", p.phone);
    }
    let decisions = api.get(&format!("/api/campaigns/{id}/decisions?limit=500")).await;
    let rate_limited = decisions["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["reason"] == "rate_limited")
        .count();
    assert!(rate_limited > 0, "{decisions}");
}
