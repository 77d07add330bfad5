//! Campaigns and the do-not-call list through the REST API, over real HTTP on loopback, with the
//! store on SQLite and on PostgreSQL (each scenario runs on both): create with defaults and with
//! settings, every kind of refusal, a contact list with rejected rows, the status changes and the
//! illegal ones, results as JSON and CSV, the do-not-call list, and the OpenAPI document.

#[path = "../../store/tests/common/mod.rs"]
#[macro_use]
mod common;
#[path = "common/mod.rs"]
mod fake;

use common::TestDb;
use fake::{INBOUND_FLOW, OUTBOUND_FLOW, Setup, serve, state_with};
use serde_json::{Value, json};
use switchboard_store::{AttemptResult, DecisionKind, NewDecision, Store};

on_both_backends!(
    a_campaign_is_created_with_defaults_or_with_its_settings,
    bad_campaigns_are_refused_with_the_reason_and_nothing_is_created,
    contacts_are_imported_with_rejected_rows_reported,
    status_changes_follow_the_rules_and_an_illegal_one_names_the_status,
    results_come_as_json_or_csv_and_decisions_newest_first,
    numbers_go_on_and_off_the_do_not_call_list,
);

/// Three good rows (one without a time zone: Texas spans two), a bad number, a number already
/// in the list, and a NUL character (which PostgreSQL could not store).
const CONTACTS: &str = "name,phone,consent,time_zone,state,appointment\n\
    Ada,+442079460958,yes,,,Tuesday 10:00\n\
    Bob,+12125550100,no,America/New_York,,\n\
    Cy,02079460958,yes,,,\n\
    Di,+12145550102,yes,,TX,\n\
    Ada again,+442079460958,yes,,,\n\
    Nul\0,+12125550199,yes,,NY,\n";

/// A client of one test server, with a valid key.
struct Api {
    url: String,
    key: String,
    store: Store,
    http: reqwest::Client,
}

impl Api {
    async fn start(db: &TestDb) -> Api {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let setup = Setup {
            flow: INBOUND_FLOW,
            rest: None,
            record: false,
        };
        let state = state_with(setup, &[OUTBOUND_FLOW], db.open().await, &dir);
        let url = serve(state.clone()).await;
        let store = state.store().clone();
        let key = store.create_api_key("test").await.expect("key").secret;
        Api {
            url,
            key,
            store,
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth(&self.key).send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {}", String::from_utf8_lossy(&body)))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.url))).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.send(request).await
    }

    async fn post_csv(&self, path: &str, csv: impl Into<String>) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "text/csv")
            .body(csv.into());
        self.send(request).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.url))).await
    }

    /// A draft campaign with the default settings; its id.
    async fn create(&self, name: &str) -> String {
        let (status, body) = self
            .post(
                "/api/campaigns",
                json!({"name": name, "flow": "reminder", "caller_id": "+15550100199"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("id").to_string()
    }
}

/// A 400 whose message says `what`.
fn assert_refused(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad_request", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains(what), "`{what}` not in: {message}");
}

async fn a_campaign_is_created_with_defaults_or_with_its_settings(db: &TestDb) {
    let api = Api::start(db).await;
    let (status, plain) = api
        .post(
            "/api/campaigns",
            json!({"name": "Reminders", "flow": "reminder", "caller_id": "+15550100199"}),
        )
        .await;
    assert_eq!(status, 201, "{plain}");
    assert_eq!(plain["status"], "draft");
    assert_eq!(plain["flow"], "reminder");
    assert_eq!(plain["caller_id"], "+15550100199");
    assert_eq!(
        plain["settings"],
        json!({
            "window": "09:00-20:00",
            "days_of_week": ["mon", "tue", "wed", "thu", "fri"],
            "start_date": null,
            "end_date": null,
            "max_attempts": 3,
            "max_attempts_per_day": 2,
            "retry_minutes": {"busy": 15, "no_answer": 120, "voicemail": 240, "failed": 60},
            "max_concurrent": 5,
            "calls_per_second": 1.0,
            "voicemail": "leave"
        })
    );

    let settings = json!({
        "window": "10:00-18:30",
        "days_of_week": ["sat", "sun"],
        "start_date": "2026-06-01",
        "end_date": "2026-06-30",
        "max_attempts": 5,
        "max_attempts_per_day": 1,
        "retry_minutes": {"busy": 5},
        "max_concurrent": 2,
        "calls_per_second": 0.5,
        "voicemail": "hangup"
    });
    let (status, custom) = api
        .post(
            "/api/campaigns",
            json!({"name": "Weekend survey", "flow": "reminder", "caller_id": "+442079460000",
                   "settings": settings}),
        )
        .await;
    assert_eq!(status, 201, "{custom}");
    let s = &custom["settings"];
    assert_eq!(s["window"], "10:00-18:30");
    assert_eq!(s["days_of_week"], json!(["sat", "sun"]));
    assert_eq!(
        (&s["start_date"], &s["end_date"]),
        (&json!("2026-06-01"), &json!("2026-06-30"))
    );
    assert_eq!(
        s["retry_minutes"],
        json!({"busy": 5, "no_answer": 120, "voicemail": 240, "failed": 60})
    );
    assert_eq!(s["voicemail"], "hangup");
    assert_eq!(s["calls_per_second"], 0.5);
    // What the API answered is what the store keeps.
    let id = custom["id"].as_str().expect("id");
    let stored = api.store.get_campaign(id).await.expect("store").expect("created");
    assert_eq!(stored.settings.max_attempts, 5);
    assert_eq!(stored.settings.retry.busy_minutes, 5);
    assert_eq!(stored.settings.window.start(), 600);

    let (status, list) = api.get("/api/campaigns").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["campaigns"]
        .as_array()
        .expect("campaigns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Weekend survey", "Reminders"], "newest first");

    let (status, detail) = api.get(&format!("/api/campaigns/{id}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["campaign"]["name"], "Weekend survey");
    assert_eq!(detail["progress"]["total"], 0);
    let (status, missing) = api.get("/api/campaigns/no-such-campaign").await;
    assert_eq!(
        (status, &missing["error"]),
        (404, &json!("not_found")),
        "{missing}"
    );
}

async fn bad_campaigns_are_refused_with_the_reason_and_nothing_is_created(db: &TestDb) {
    let api = Api::start(db).await;
    let with = |patch: Value| {
        let mut body = json!({"name": "N", "flow": "reminder", "caller_id": "+15550100199"});
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (with(json!({"flow": "support"})), "inbound"),
        (
            with(json!({"flow": "nope"})),
            "`nope` is not loaded; the outbound flows are: reminder",
        ),
        (with(json!({"caller_id": "5550100199"})), "caller_id"),
        (with(json!({"caller_id": "+1 555 010 0199"})), "+15550100199"),
        (with(json!({"name": "  "})), "name must not be empty"),
        (
            with(json!({"settings": {"window": "07:00-20:00"}})),
            "outside 08:00-21:00",
        ),
        (with(json!({"settings": {"window": "18:00-09:00"}})), "empty"),
        (with(json!({"settings": {"window": "9-5"}})), "HH:MM-HH:MM"),
        (
            with(json!({"settings": {"days_of_week": []}})),
            "at least one day",
        ),
        (
            with(json!({"settings": {"days_of_week": ["someday"]}})),
            "someday",
        ),
        (
            with(json!({"settings": {"start_date": "2026-06-02", "end_date": "2026-06-01"}})),
            "after end date",
        ),
        (
            with(json!({"settings": {"start_date": "June 1st"}})),
            "start_date",
        ),
        (
            with(json!({"settings": {"max_attempts": 0}})),
            "max_attempts must be at least 1",
        ),
        (
            with(json!({"settings": {"calls_per_second": 0}})),
            "calls per second",
        ),
        (with(json!({"settings": {"voicemail": "sing"}})), "sing"),
        (with(json!({"colour": "blue"})), "colour"),
        // PostgreSQL cannot store it, so neither database is asked to.
        (with(json!({"name": "a\u{0}b"})), "NUL"),
    ];
    for (body, what) in cases {
        let (status, answer) = api.post("/api/campaigns", body.clone()).await;
        assert_refused(status, &answer, what);
    }
    // Not JSON at all.
    let request = api
        .http
        .post(format!("{}/api/campaigns", api.url))
        .header("content-type", "application/json")
        .body("{");
    let (status, answer) = api.send(request).await;
    assert_eq!((status, &answer["error"]), (400, &json!("bad_request")));
    // JSON bodies keep the server's small limit.
    let huge = with(json!({"name": "x".repeat(100_000)}));
    let (status, answer) = api.post("/api/campaigns", huge).await;
    assert_eq!((status, &answer["error"]), (413, &json!("too_large")), "{answer}");

    let (_, list) = api.get("/api/campaigns").await;
    assert_eq!(list["campaigns"], json!([]));

    // And nothing at all without a key.
    let id = api.create("keyed").await;
    let anonymous = reqwest::Client::new();
    let requests = [
        anonymous.get(format!("{}/api/campaigns", api.url)),
        anonymous.get(format!("{}/api/campaigns/{id}", api.url)),
        anonymous.post(format!("{}/api/campaigns/{id}/start", api.url)),
        anonymous
            .post(format!("{}/api/campaigns/{id}/contacts", api.url))
            .body(CONTACTS),
        anonymous.get(format!("{}/api/campaigns/{id}/results?format=csv", api.url)),
        anonymous.get(format!("{}/api/dnc", api.url)),
        anonymous.delete(format!("{}/api/dnc/%2B15550100199", api.url)),
        anonymous
            .post(format!("{}/api/campaigns", api.url))
            .header("content-type", "application/json")
            .body(with(json!({})).to_string()),
    ];
    for request in requests {
        let response = request.send().await.expect("request");
        let url = response.url().to_string();
        assert_eq!(response.status(), 401, "{url}");
        let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
        assert_eq!(body["error"], "unauthorized", "{url}");
    }
    let stored = api.store.get_campaign(&id).await.expect("store").expect("there");
    assert_eq!(
        stored.status.as_str(),
        "draft",
        "the anonymous start changed nothing"
    );
    assert_eq!(api.store.progress(&id).await.expect("progress").total, 0);
}

async fn contacts_are_imported_with_rejected_rows_reported(db: &TestDb) {
    let api = Api::start(db).await;
    let id = api.create("Reminders").await;
    let (status, report) = api
        .post_csv(&format!("/api/campaigns/{id}/contacts"), CONTACTS)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["imported"], 3, "{report}");
    let rejected = report["rejected"].as_array().expect("rejected");
    let lines: Vec<&Value> = rejected.iter().map(|r| &r["line"]).collect();
    assert_eq!(lines, [&json!(4), &json!(6), &json!(7)], "{report}");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("must start with +"),
        "{report}"
    );
    assert!(
        rejected[1]["reason"]
            .as_str()
            .expect("reason")
            .contains("already in the campaign"),
        "{report}"
    );
    assert_eq!(report["without_time_zone"], json!([5]), "Texas spans two zones");

    let (_, detail) = api.get(&format!("/api/campaigns/{id}")).await;
    assert_eq!(detail["progress"]["total"], 3);
    assert_eq!(detail["progress"]["pending"], 3);

    // More than the server's 64 KiB body limit: a contact list has a limit of its own.
    let mut big = String::from("phone,consent,time_zone\n");
    for i in 0..4000 {
        big.push_str(&format!("+4420794{i:05},yes,Europe/London\n"));
    }
    assert!(big.len() > 100_000);
    let (status, report) = api.post_csv(&format!("/api/campaigns/{id}/contacts"), big).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["imported"], 4000);

    // A file that is not a contact list, an unknown campaign, a finished one.
    let (status, answer) = api
        .post_csv(
            &format!("/api/campaigns/{id}/contacts"),
            "name,email\nA,a@example.com\n",
        )
        .await;
    assert_refused(status, &answer, "`phone`");
    let (status, _) = api.post_csv("/api/campaigns/nope/contacts", CONTACTS).await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post(&format!("/api/campaigns/{id}/cancel"), json!(null))
        .await;
    assert_eq!(status, 200);
    let (status, answer) = api
        .post_csv(&format!("/api/campaigns/{id}/contacts"), CONTACTS)
        .await;
    assert_eq!((status, &answer["error"]), (409, &json!("conflict")), "{answer}");
    assert!(
        answer["message"].as_str().expect("message").contains("cancelled"),
        "{answer}"
    );
    assert_eq!(api.store.progress(&id).await.expect("progress").total, 4003);
}

async fn status_changes_follow_the_rules_and_an_illegal_one_names_the_status(db: &TestDb) {
    let api = Api::start(db).await;
    let id = api.create("Reminders").await;
    let step = |action: &'static str| {
        let api = &api;
        let id = id.clone();
        async move {
            api.post(&format!("/api/campaigns/{id}/{action}"), json!(null))
                .await
        }
    };
    let expect = |(status, body): (u16, Value), want: u16, text: &str| {
        assert_eq!(status, want, "{body}");
        if want == 200 {
            assert_eq!(body["status"], text, "{body}");
        } else {
            assert_eq!(body["error"], "conflict", "{body}");
            let message = body["message"].as_str().expect("message");
            assert!(message.contains(text), "`{text}` not in {message}");
        }
    };
    expect(step("pause").await, 409, "cannot pause campaign");
    expect(step("resume").await, 409, "it is draft");
    expect(step("start").await, 200, "running");
    expect(step("start").await, 409, "it is running");
    expect(step("pause").await, 200, "paused");
    expect(step("pause").await, 409, "it is paused");
    expect(step("start").await, 409, "it is paused");
    expect(step("resume").await, 200, "running");
    expect(step("cancel").await, 200, "cancelled");
    expect(step("resume").await, 409, "it is cancelled");
    expect(step("cancel").await, 409, "it is cancelled");
    let stored = api.store.get_campaign(&id).await.expect("store").expect("there");
    assert_eq!(stored.status.as_str(), "cancelled");
    let (status, body) = api.post("/api/campaigns/nope/start", json!(null)).await;
    assert_eq!((status, &body["message"]), (404, &json!("no such campaign")));
}

async fn results_come_as_json_or_csv_and_decisions_newest_first(db: &TestDb) {
    let api = Api::start(db).await;
    let id = api.create("Reminders").await;
    let (status, _) = api
        .post_csv(&format!("/api/campaigns/{id}/contacts"), CONTACTS)
        .await;
    assert_eq!(status, 200);
    // One attempt, as the scheduler and the call would write it: Ada confirms.
    let now = jiff::Timestamp::now().as_millisecond();
    let claims = api.store.claim_due(&id, now, 1).await.expect("claim");
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    let decision = NewDecision {
        at: now,
        kind: DecisionKind::Dial,
        reason: "dial".into(),
        detail: "inside the window".into(),
        retry_at: None,
    };
    assert!(
        api.store
            .mark_dialing(&claim.attempt_id, &decision)
            .await
            .expect("dialing")
    );
    let mut slots = serde_json::Map::new();
    slots.insert("confirmed".into(), json!(true));
    api.store
        .finish_attempt(
            &claim.attempt_id,
            AttemptResult::Completed,
            Some("confirmed"),
            &slots,
            now + 1000,
        )
        .await
        .expect("finish")
        .expect("attempt");

    let (status, results) = api.get(&format!("/api/campaigns/{id}/results")).await;
    assert_eq!(status, 200, "{results}");
    let contacts = results["contacts"].as_array().expect("contacts");
    assert_eq!(contacts.len(), 3);
    let called = contacts
        .iter()
        .find(|c| c["contact"]["phone"] == claim.contact.phone)
        .expect("the called contact");
    assert_eq!(called["contact"]["state"], "done");
    assert_eq!(called["contact"]["final_outcome"], "confirmed");
    assert_eq!(called["attempts"][0]["status"], "completed");
    assert_eq!(called["attempts"][0]["slots"], json!({"confirmed": true}));
    let ada = contacts
        .iter()
        .find(|c| c["contact"]["name"] == "Ada")
        .expect("Ada");
    assert_eq!(ada["contact"]["fields"], json!({"appointment": "Tuesday 10:00"}));

    for request in [
        api.http
            .get(format!("{}/api/campaigns/{id}/results?format=csv", api.url)),
        api.http
            .get(format!("{}/api/campaigns/{id}/results", api.url))
            .header("accept", "text/csv"),
    ] {
        let response = request.bearer_auth(&api.key).send().await.expect("request");
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(kind.starts_with("text/csv"), "{kind}");
        let csv = response.text().await.expect("text");
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .expect("header")
                .starts_with("name,phone,time_zone,consent,state,final_outcome")
        );
        assert_eq!(lines.count(), 3, "{csv}");
        let row = csv
            .lines()
            .find(|l| l.contains(&claim.contact.phone))
            .expect("row");
        assert!(row.contains(",done,confirmed,1,"), "{row}");
    }
    let (status, answer) = api.get(&format!("/api/campaigns/{id}/results?format=xml")).await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = api.get("/api/campaigns/nope/results?format=csv").await;
    assert_eq!(status, 404);

    let (status, decisions) = api.get(&format!("/api/campaigns/{id}/decisions?limit=5")).await;
    assert_eq!(status, 200, "{decisions}");
    let decisions = decisions["decisions"].as_array().expect("decisions");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["decision"], "dial");
    assert_eq!(decisions[0]["contact_id"], claim.contact.id);
    let (status, _) = api.get(&format!("/api/campaigns/{id}/decisions?limit=0")).await;
    assert_eq!(status, 400);
}

async fn numbers_go_on_and_off_the_do_not_call_list(db: &TestDb) {
    let api = Api::start(db).await;
    let (status, entry) = api
        .post(
            "/api/dnc",
            json!({"phone": "+15550100123", "reason": "asked on the phone"}),
        )
        .await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(entry["phone"], "+15550100123");
    assert_eq!(entry["reason"], "asked on the phone");
    assert_eq!(entry["source"], "api");
    let (status, again) = api.post("/api/dnc", json!({"phone": "+15550100123"})).await;
    assert_eq!(status, 200, "already listed: {again}");
    assert_eq!(again["reason"], "asked on the phone", "the first entry is kept");
    let (status, _) = api.post("/api/dnc", json!({"phone": "+442079460958"})).await;
    assert_eq!(status, 201);
    assert!(api.store.is_dnc("+442079460958").await.expect("store"));

    let (status, list) = api.get("/api/dnc").await;
    assert_eq!(status, 200);
    let phones: Vec<&Value> = list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["phone"])
        .collect();
    assert_eq!(phones, [&json!("+15550100123"), &json!("+442079460958")]);

    for bad in ["5550100123", "+1 555 010 0123", "+0123456789", "+1555"] {
        let (status, answer) = api.post("/api/dnc", json!({"phone": bad})).await;
        assert_refused(status, &answer, "phone");
    }
    let (status, answer) = api.post("/api/dnc", json!({})).await;
    assert_refused(status, &answer, "phone");
    let (status, answer) = api
        .post("/api/dnc", json!({"phone": "+15550100999", "reason": "a\u{0}"}))
        .await;
    assert_refused(status, &answer, "NUL");

    let (status, _) = api.delete("/api/dnc/%2B15550100123").await;
    assert_eq!(status, 204);
    let (status, answer) = api.delete("/api/dnc/%2B15550100123").await;
    assert_eq!((status, &answer["error"]), (404, &json!("not_found")), "{answer}");
    let (status, answer) = api.delete("/api/dnc/not-a-number").await;
    assert_refused(status, &answer, "phone");
    assert!(!api.store.is_dnc("+15550100123").await.expect("store"));
    let (_, list) = api.get("/api/dnc").await;
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn the_openapi_document_describes_the_campaign_routes_and_names_the_outbound_flows() {
    let db = TestDb::sqlite();
    let api = Api::start(&db).await;
    let response = reqwest::get(format!("{}/api/openapi.json", api.url))
        .await
        .expect("request");
    let doc: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    let paths = &doc["paths"];
    for (path, method) in [
        ("/api/campaigns", "get"),
        ("/api/campaigns", "post"),
        ("/api/campaigns/{id}", "get"),
        ("/api/campaigns/{id}/contacts", "post"),
        ("/api/campaigns/{id}/start", "post"),
        ("/api/campaigns/{id}/pause", "post"),
        ("/api/campaigns/{id}/resume", "post"),
        ("/api/campaigns/{id}/cancel", "post"),
        ("/api/campaigns/{id}/results", "get"),
        ("/api/campaigns/{id}/decisions", "get"),
        ("/api/dnc", "get"),
        ("/api/dnc", "post"),
        ("/api/dnc/{phone}", "delete"),
        ("/api/calls", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    let schemas = &doc["components"]["schemas"];
    // Only the outbound flow may be named.
    assert_eq!(
        schemas["NewCampaignBody"]["properties"]["flow"]["enum"],
        json!(["reminder"])
    );
    assert!(schemas["SettingsSpec"]["properties"]["window"]["pattern"].is_string());
    assert!(schemas["ContactResult"].is_object() && schemas["ImportReport"].is_object());
    let upload = &paths["/api/campaigns/{id}/contacts"]["post"]["requestBody"]["content"];
    assert!(upload["text/csv"].is_object(), "{upload}");
    let results = &paths["/api/campaigns/{id}/results"]["get"]["responses"]["200"]["content"];
    assert!(results["text/csv"].is_object() && results["application/json"].is_object());
    // Every route is behind the API key.
    assert_eq!(doc["security"], json!([{"api_key": []}]));
    db.drop_database().await;
}
