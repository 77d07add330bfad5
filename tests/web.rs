//! The call log web page in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! against `switchboard serve`, after one simulated call through the real models. Signing in, the
//! list, the call with its transcript and stats, what the flow did not understand, the recording playing,
//! and deleting the call.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`make setup` installs them).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, first_line, sample, spoken, switchboard, text};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The simulator's default caller number (`switchboard call --from`).
const CALLER: &str = "+15555550100";
/// From the inbound_support flow's `facts.hours`, which its hours step says.
const HOURS_ANSWER: &str = "Saturday from 8 AM to 4 PM";
/// How long the page may take to show what a step expects.
const TIMEOUT: Duration = Duration::from_secs(15);

/// chromedriver on a port it picks itself; killed on drop.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    fn start() -> Self {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "{CHROMEDRIVER} and {CHROMIUM} are needed: `make setup` installs them"
        );
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // "ChromeDriver was started successfully on port 41234."
        let port = first_line(&mut child, "chromedriver", |line| {
            let rest = line.split("started successfully on port ").nth(1)?;
            rest.trim_end_matches('.').parse::<u16>().ok()
        });
        Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn session(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--autoplay-policy=no-user-gesture-required",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1000",
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The call log as the API sees it (the test's own check, beside the page).
async fn api_get(url: &str, key: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("API request");
    let status = response.status().as_u16();
    let body = response.text().await.expect("API body");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn js(browser: &Client, script: &str) -> Value {
    browser
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Runs `script` until it returns something other than null or false, and returns that.
async fn until(browser: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let value = js(browser, script).await;
        if !(value.is_null() || value == Value::Bool(false)) {
            return value;
        }
        if Instant::now() > deadline {
            let page = js(
                browser,
                "return location.href + '\\n' + document.body.innerText.slice(0, 3000)",
            )
            .await;
            panic!(
                "no {what} within {TIMEOUT:?}; the page shows:\n{}",
                page.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of a visible element, or null.
fn visible_text(selector: &str) -> String {
    format!(
        "const e = document.querySelector({selector:?}); \
         return e && e.checkVisibility() ? e.textContent.trim() : null"
    )
}

async fn click(browser: &Client, selector: &str) {
    browser
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no {selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {selector}: {e}"));
}

async fn sign_in(browser: &Client, key: &str) {
    let input = browser
        .find(Locator::Css("#api-key"))
        .await
        .expect("the key field");
    input.clear().await.expect("clear the key field");
    input.send_keys(key).await.expect("type the key");
    click(browser, "#login-form button[type=submit]").await;
}

#[test]
fn the_call_log_page_shows_plays_and_deletes_a_call() {
    let started = Instant::now();
    let server = Server::start();
    let key = server.api_key();
    // First words the menu cannot place (a no-match), then the question about the hours.
    let dir = tempfile::tempdir().expect("temp dir");
    let unplaced = spoken(dir.path(), "elephants.wav", "I like purple elephants.");
    let out = switchboard(&["call", "--server", &server.url, "--audio", &unplaced, &sample()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "the call failed:\n{stdout}{stderr}");
    eprintln!("server, key and call ready after {:.1?}", started.elapsed());

    let chromedriver = Chromedriver::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let browser = chromedriver.session().await;
        // The scenario runs as its own task so that the browser is closed even when it panics.
        let outcome = tokio::spawn(scenario(browser.clone(), server.url.clone(), key)).await;
        let _ = browser.close().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    });
    eprintln!("browser test done after {:.1?}", started.elapsed());
}

async fn scenario(browser: Client, url: String, key: String) {
    // The server writes the end of a call after the provider's side hangs up: wait for it.
    let deadline = Instant::now() + TIMEOUT;
    let call = loop {
        let (status, page) = api_get(&format!("{url}/api/calls"), &key).await;
        assert_eq!(status, 200, "{page}");
        let calls = page["calls"].as_array().expect("calls").clone();
        assert!(calls.len() <= 1, "one call was placed: {page}");
        if let Some(call) = calls.first().filter(|c| !c["ended_at"].is_null()) {
            break call.clone();
        }
        assert!(Instant::now() < deadline, "the call never ended: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = call["id"].as_str().expect("call id").to_string();
    let outcome = call["outcome"]
        .as_str()
        .expect("the call has an outcome")
        .to_string();
    assert!(call["has_recording"].as_bool().expect("has_recording"), "{call}");

    // Signing in: the form first, a wrong key is refused, the right one shows the list.
    browser.goto(&format!("{url}/")).await.expect("open the page");
    until(&browser, "sign-in form", &visible_text("#login")).await;
    sign_in(&browser, "sb_not-a-key").await;
    let refused = until(&browser, "refusal", &visible_text("#login-error")).await;
    assert_eq!(refused, "That key was not accepted.");
    sign_in(&browser, &key).await;
    until(
        &browser,
        "list of calls",
        "return document.querySelector('#calls tbody tr[data-call-id]') \
         && !document.querySelector('#calls').hasAttribute('aria-busy')",
    )
    .await;
    assert_eq!(
        js(&browser, "return document.querySelector('#login').hidden").await,
        true,
        "the sign-in form is gone"
    );
    let rows = js(
        &browser,
        "return [...document.querySelectorAll('#calls tbody tr')] \
         .map(r => ({ id: r.dataset.callId, text: r.innerText }))",
    )
    .await;
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "exactly the one call: {rows:?}");
    assert_eq!(rows[0]["id"], id.as_str());
    let row = rows[0]["text"].as_str().expect("row text");
    assert!(row.contains(CALLER), "the caller's number in {row:?}");
    assert!(row.contains("inbound_support"), "the flow in {row:?}");

    // The stats above the list: one call, one bar for it.
    let total = until(&browser, "total calls", &visible_text("#stat-total")).await;
    assert_eq!(total, "1");
    let bars = until(
        &browser,
        "a bar in the calls-per-day chart",
        "const bars = document.querySelectorAll('#chart-days svg rect.bar'); \
         return bars.length && [...bars].map(b => b.getAttribute('height'))",
    )
    .await;
    let bars = bars.as_array().expect("bar heights");
    assert_eq!(bars.len(), 1, "one day with calls: {bars:?}");
    let height: f64 = bars[0].as_str().and_then(|h| h.parse().ok()).expect("a height");
    assert!(height > 10.0, "the bar has a height: {height}");

    // What the menu did not understand, with the step, linking to the call.
    let missed = until(
        &browser,
        "a not-understood row",
        "const r = document.querySelector('#no-matches tbody tr'); \
         return r && { text: r.innerText, href: r.querySelector('a').getAttribute('href') }",
    )
    .await;
    let text = missed["text"].as_str().expect("row text");
    assert!(
        text.contains("menu") && text.to_lowercase().contains("elephants"),
        "{missed}"
    );
    assert!(text.trim_start().starts_with('1'), "said once: {missed}");
    assert_eq!(missed["href"], format!("#/calls/{id}").as_str());
    assert_eq!(
        js(
            &browser,
            "return document.querySelector('#no-matches-empty').hidden"
        )
        .await,
        true
    );

    // The call: its facts, the conversation, and the way back.
    click(&browser, "#calls tbody tr[data-call-id] a").await;
    until(&browser, "call view", &visible_text("#call-title")).await;
    assert_eq!(
        js(&browser, "return location.hash").await,
        format!("#/calls/{id}").as_str()
    );
    let shown = until(
        &browser,
        "outcome",
        &visible_text("#call-facts [data-fact=outcome]"),
    )
    .await;
    assert_eq!(shown, outcome.replace('_', " ").as_str());
    let facts = js(&browser, "return document.querySelector('#call-facts').innerText").await;
    assert!(facts.as_str().is_some_and(|f| f.contains(CALLER)), "{facts}");
    let turns = js(
        &browser,
        "return [...document.querySelectorAll('#transcript .turn[data-speaker]')] \
         .map(t => ({ speaker: t.dataset.speaker, text: t.querySelector('.text').textContent, \
                      meta: t.querySelector('.meta').textContent }))",
    )
    .await;
    let turns = turns.as_array().expect("turns");
    let caller = turns
        .iter()
        .find(|t| {
            t["speaker"] == "caller"
                && t["text"]
                    .as_str()
                    .is_some_and(|s| s.to_lowercase().contains("hours"))
        })
        .unwrap_or_else(|| panic!("no caller turn asking for the hours: {turns:?}"));
    assert!(
        caller["meta"]
            .as_str()
            .is_some_and(|m| m.contains("voice-to-voice")),
        "the caller turn's timings: {caller}"
    );
    assert!(
        turns
            .iter()
            .any(|t| t["speaker"] == "bot" && t["text"].as_str().is_some_and(|s| s.contains(HOURS_ANSWER))),
        "no bot turn with the hours: {turns:?}"
    );

    browser.back().await.expect("back");
    until(&browser, "list after going back", &visible_text("#list-title")).await;
    until(
        &browser,
        "the call's row again",
        "return document.querySelectorAll('#calls tbody tr').length === 1",
    )
    .await;
    browser.forward().await.expect("forward");
    until(
        &browser,
        "call view after going forward",
        &visible_text("#call-title"),
    )
    .await;

    // The recording: fetched with the key, played from a blob URL.
    let src = until(
        &browser,
        "recording",
        "const a = document.querySelector('#recording'); return a && a.src.startsWith('blob:') && a.src",
    )
    .await;
    assert!(src.as_str().is_some_and(|s| s.starts_with("blob:")), "{src}");
    let played = js(
        &browser,
        "return document.querySelector('#recording').play().then(() => true, e => String(e))",
    )
    .await;
    assert_eq!(played, true, "play() was refused");
    let position = until(
        &browser,
        "playback past 0.5 s",
        "const a = document.querySelector('#recording'); return a.currentTime > 0.5 && a.currentTime",
    )
    .await;
    let duration = js(&browser, "return document.querySelector('#recording').duration").await;
    let duration = duration.as_f64().unwrap_or(0.0);
    assert!(
        duration > 1.0,
        "the recording lasts {duration} s (played to {position})"
    );

    // Deleting: confirm in the dialog, back to an empty list, and the API agrees.
    click(&browser, "#delete-call").await;
    until(
        &browser,
        "confirmation dialog",
        "return document.querySelector('#delete-dialog').open",
    )
    .await;
    click(&browser, "#confirm-delete").await;
    until(
        &browser,
        "empty list",
        "return location.hash === '#/' && !document.querySelector('#calls').hasAttribute('aria-busy') \
         && document.querySelector('#calls-empty').checkVisibility()",
    )
    .await;
    assert_eq!(
        js(
            &browser,
            "return document.querySelectorAll('#calls tbody tr').length"
        )
        .await,
        0
    );
    let (status, body) = api_get(&format!("{url}/api/calls/{id}"), &key).await;
    assert_eq!(status, 404, "the call is gone: {body}");
}
