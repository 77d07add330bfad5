//! Call control over the provider's REST API: place a call, redirect or hang up a live one.
//!
//! The base URL is configuration, so a stand-in provider on loopback can receive the same requests in
//! tests and in local development.
//!
//! # Retries
//! A request is retried, with exponential backoff, only when it certainly did not take effect or the
//! provider asked for it to be retried: the connection could not be opened, or it answered 429 (waiting
//! as long as its `Retry-After` says). A 4xx is the provider's verdict on the request and is returned at
//! once. A request that was sent but timed out, or whose connection broke mid-way, is *not* retried.
//!
//! A 5xx is retried for requests that may safely happen twice (changing a live call, listing calls),
//! but not for creating one: a server error does not say whether the call was queued before the
//! failure, and a second attempt could ring a customer twice. [`RestClient::create_call`] returns
//! [`RestError::Unavailable`] / [`RestError::Timeout`] instead, and the caller settles the doubt with
//! [`RestClient::find_calls`] (the provider's call list for that number since the attempt began).

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use crate::AuthToken;
use crate::webhook::CallStatus;

/// Twilio's API. SignalWire and others are reached by configuring their base URL instead.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// How hard to try before giving up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// The wait before the second attempt; doubled for each further one.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails with
    /// [`RestError::RateLimited`], so a dialer can reschedule instead of blocking.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed_attempts.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// What the client needs to reach the provider.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Scheme, host and optional path prefix; `/2010-04-01/…` is appended.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: AuthToken,
    /// For each attempt, from sending the request to reading the whole answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl RestConfig {
    pub fn new(account_sid: impl Into<String>, auth_token: AuthToken) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            account_sid: account_sid.into(),
            auth_token,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

/// Why a REST request failed. The variants are what a caller acts on: fix the request, try later, or
/// look the call up before trying again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// The provider refused the request (4xx); retrying the same request will not help.
    #[error("the provider rejected the request with HTTP {status}{}: {message}", code.map(|c| format!(", error {c}")).unwrap_or_default())]
    Rejected {
        status: u16,
        code: Option<u32>,
        message: String,
    },
    /// The provider kept asking to slow down, or asked for a longer wait than the policy allows.
    #[error("rate limited by the provider (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// No attempt got an answer that could be acted on: connection failures, 5xx, or a broken connection.
    #[error("the provider is unavailable after {attempts} attempt(s): {last}")]
    Unavailable { attempts: u32, last: String },
    /// An attempt was sent and got no answer in time; it may have taken effect.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The provider answered, but not with what its API promises.
    #[error("unexpected answer from the provider (HTTP {status}): {message}")]
    BadResponse { status: u16, message: String },
    /// The client cannot be built from this configuration.
    #[error("invalid REST client configuration: {0}")]
    Config(String),
    /// A call SID that cannot be a path segment; refused before anything is sent.
    #[error("invalid call SID {sid:?}")]
    InvalidSid { sid: String },
}

/// What the called party hears once they answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallInstructions {
    /// The voice webhook the provider requests for TwiML when the call is answered.
    Url(String),
    /// TwiML inline, up to 4000 characters.
    Twiml(String),
    ApplicationSid(String),
}

/// The call events a status callback is sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCallbackEvent {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

impl StatusCallbackEvent {
    pub const ALL: [Self; 4] = [Self::Initiated, Self::Ringing, Self::Answered, Self::Completed];

    fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::Answered => "answered",
            Self::Completed => "completed",
        }
    }
}

/// When machine detection decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdMode {
    /// As soon as it knows human or machine.
    Enable,
    /// For a machine, after the greeting ends (so a voicemail can be left after the beep).
    DetectMessageEnd,
}

/// Answering-machine detection for an outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDetection {
    pub mode: AmdMode,
    /// With a URL, detection runs asynchronously (`AsyncAmd=true`): the call is connected at once and the
    /// result is posted there. Without one, the provider holds the call until detection ends and sends
    /// `AnsweredBy` with the voice webhook.
    pub async_callback: Option<String>,
}

/// A call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    pub to: String,
    /// Must be one of the account's numbers.
    pub from: String,
    pub instructions: CallInstructions,
    pub status_callback: Option<String>,
    pub status_callback_events: Vec<StatusCallbackEvent>,
    /// Seconds to let it ring (at least 15 is recommended).
    pub timeout: Option<u32>,
    /// Seconds the call may last.
    pub time_limit: Option<u32>,
    pub machine_detection: Option<MachineDetection>,
    pub record: bool,
}

impl CreateCall {
    pub fn new(to: impl Into<String>, from: impl Into<String>, instructions: CallInstructions) -> Self {
        Self {
            to: to.into(),
            from: from.into(),
            instructions,
            status_callback: None,
            status_callback_events: Vec::new(),
            timeout: None,
            time_limit: None,
            machine_detection: None,
            record: false,
        }
    }

    /// The form body, in the order the provider's own client writes it.
    pub fn to_form(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("To", &self.to).append_pair("From", &self.from);
        if let Some(url) = &self.status_callback {
            form.append_pair("StatusCallback", url);
            for event in &self.status_callback_events {
                form.append_pair("StatusCallbackEvent", event.as_str());
            }
            form.append_pair("StatusCallbackMethod", "POST");
        }
        if let Some(t) = self.timeout {
            form.append_pair("Timeout", &t.to_string());
        }
        if let Some(t) = self.time_limit {
            form.append_pair("TimeLimit", &t.to_string());
        }
        if self.record {
            form.append_pair("Record", "true");
        }
        if let Some(amd) = &self.machine_detection {
            let mode = match amd.mode {
                AmdMode::Enable => "Enable",
                AmdMode::DetectMessageEnd => "DetectMessageEnd",
            };
            form.append_pair("MachineDetection", mode);
            if let Some(url) = &amd.async_callback {
                form.append_pair("AsyncAmd", "true")
                    .append_pair("AsyncAmdStatusCallback", url);
            }
        }
        match &self.instructions {
            CallInstructions::Url(url) => form.append_pair("Url", url),
            CallInstructions::Twiml(twiml) => form.append_pair("Twiml", twiml),
            CallInstructions::ApplicationSid(sid) => form.append_pair("ApplicationSid", sid),
        };
        form.finish()
    }
}

/// A change to a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallUpdate {
    /// Replace what the call is doing with this TwiML.
    Twiml(String),
    /// Fetch new TwiML from this URL (POST).
    Redirect(String),
    /// End the call (`Status=completed`).
    Hangup,
}

impl CallUpdate {
    pub fn to_form(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        match self {
            CallUpdate::Twiml(twiml) => form.append_pair("Twiml", twiml),
            CallUpdate::Redirect(url) => form.append_pair("Url", url).append_pair("Method", "POST"),
            CallUpdate::Hangup => form.append_pair("Status", "completed"),
        };
        form.finish()
    }
}

/// The provider's view of a call, as returned by create, update and the call list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    pub sid: String,
    pub status: CallStatus,
    #[serde(default)]
    pub account_sid: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    /// `outbound-api` for calls placed here; kept as text so a new value does not fail the whole answer.
    #[serde(default)]
    pub direction: Option<String>,
    /// When the provider created the call, RFC 2822 (`Tue, 24 Nov 2026 03:56:05 +0000`).
    #[serde(default)]
    pub date_created: Option<String>,
}

impl CallResource {
    /// [`CallResource::date_created`] as seconds since the Unix epoch, when it is there and valid.
    pub fn created_unix_seconds(&self) -> Option<i64> {
        let text = self.date_created.as_deref()?;
        jiff::fmt::rfc2822::parse(text)
            .ok()
            .map(|z| z.timestamp().as_second())
    }
}

/// One page of the provider's call list.
#[derive(Deserialize)]
struct CallList {
    #[serde(default)]
    calls: Vec<CallResource>,
}

/// Whether a request may safely reach the provider twice (see the module docs on retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeatable {
    Yes,
    No,
}

/// The provider's JSON error body.
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// An async client for call control. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    /// `{base}/2010-04-01/Accounts/{AccountSid}/Calls`, without `.json`.
    calls_url: String,
    account_sid: String,
    token: AuthToken,
    retry: RetryPolicy,
}

impl RestClient {
    pub fn new(config: RestConfig) -> Result<Self, RestError> {
        let base = Url::parse(&config.base_url)
            .map_err(|e| RestError::Config(format!("base URL {:?}: {e}", config.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.query().is_some() {
            return Err(RestError::Config(format!(
                "base URL {:?} must be http(s) without a query",
                config.base_url
            )));
        }
        if !is_sid(&config.account_sid) {
            return Err(RestError::Config(format!(
                "account SID {:?} is not a SID",
                config.account_sid
            )));
        }
        if config.retry.max_attempts == 0 {
            return Err(RestError::Config("retry.max_attempts must be at least 1".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // A redirected POST would silently become a GET.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RestError::Config(e.to_string()))?;
        let calls_url = format!(
            "{}/2010-04-01/Accounts/{}/Calls",
            base.as_str().trim_end_matches('/'),
            config.account_sid
        );
        Ok(Self {
            http,
            calls_url,
            account_sid: config.account_sid,
            token: config.auth_token,
            retry: config.retry,
        })
    }

    /// Places a call. The answer is normally `queued`; what follows arrives on the status callback.
    /// A 5xx is not retried (the call may exist): see the module docs.
    pub async fn create_call(&self, call: &CreateCall) -> Result<CallResource, RestError> {
        self.send(
            reqwest::Method::POST,
            format!("{}.json", self.calls_url),
            Some(call.to_form()),
            Repeatable::No,
        )
        .await
    }

    /// Calls to `to` created at or after `since_unix_seconds`, newest first: settles whether a
    /// create that failed with a timeout or a 5xx placed a call after all. The provider filters by
    /// day (`StartTime>=YYYY-MM-DD`); the exact time is checked here from `date_created`, and a call
    /// without one is kept (when in doubt, assume it exists).
    pub async fn find_calls(
        &self,
        to: &str,
        since_unix_seconds: i64,
    ) -> Result<Vec<CallResource>, RestError> {
        let day = jiff::Timestamp::from_second(since_unix_seconds)
            .map_err(|e| RestError::Config(format!("time {since_unix_seconds}: {e}")))?
            .strftime("%Y-%m-%d")
            .to_string();
        let mut url =
            Url::parse(&format!("{}.json", self.calls_url)).map_err(|e| RestError::Config(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("To", to)
            .append_pair("StartTime>", &day)
            .append_pair("PageSize", "50");
        // The provider's filter is spelled `StartTime>=DAY`: a parameter named `StartTime>`.
        let list: CallList = self
            .send(reqwest::Method::GET, url.into(), None, Repeatable::Yes)
            .await?;
        Ok(list
            .calls
            .into_iter()
            .filter(|c| c.created_unix_seconds().is_none_or(|t| t >= since_unix_seconds))
            .collect())
    }

    /// One call as the provider knows it now (its status above all): settles an attempt whose end
    /// was reported to a runtime that was not there to hear it.
    pub async fn fetch_call(&self, call_sid: &str) -> Result<CallResource, RestError> {
        if !is_sid(call_sid) {
            return Err(RestError::InvalidSid {
                sid: call_sid.chars().take(64).collect(),
            });
        }
        self.send(
            reqwest::Method::GET,
            format!("{}/{call_sid}.json", self.calls_url),
            None,
            Repeatable::Yes,
        )
        .await
    }

    /// Changes a live call: new TwiML, a redirect, or hanging up.
    pub async fn update_call(&self, call_sid: &str, update: &CallUpdate) -> Result<CallResource, RestError> {
        if !is_sid(call_sid) {
            return Err(RestError::InvalidSid {
                sid: call_sid.chars().take(64).collect(),
            });
        }
        // Hanging up or redirecting twice has the effect of doing it once.
        self.send(
            reqwest::Method::POST,
            format!("{}/{call_sid}.json", self.calls_url),
            Some(update.to_form()),
            Repeatable::Yes,
        )
        .await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<String>,
        repeatable: Repeatable,
    ) -> Result<T, RestError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = self.attempt(&method, &url, body.as_deref(), repeatable).await;
            let (wait, last) = match outcome {
                Attempt::Done(Ok((status, bytes))) => {
                    return serde_json::from_slice::<T>(&bytes).map_err(|e| RestError::BadResponse {
                        status,
                        message: format!("not the expected resource ({e}): {}", snippet(&bytes)),
                    });
                }
                Attempt::Done(Err(e)) => return Err(e),
                Attempt::Broken(last) => return Err(RestError::Unavailable { attempts, last }),
                Attempt::RetryAfter(wait, last) => (wait, last),
            };
            if attempts >= self.retry.max_attempts {
                return Err(match last {
                    Retryable::RateLimited(retry_after) => RestError::RateLimited { retry_after },
                    Retryable::Failed(last) => RestError::Unavailable { attempts, last },
                });
            }
            let wait = match wait {
                Some(asked) if asked > self.retry.max_retry_after => {
                    return Err(RestError::RateLimited {
                        retry_after: Some(asked),
                    });
                }
                Some(asked) => asked,
                None => self.retry.backoff(attempts),
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        method: &reqwest::Method,
        url: &str,
        body: Option<&str>,
        repeatable: Repeatable,
    ) -> Attempt {
        let mut request = self
            .http
            .request(method.clone(), url)
            .basic_auth(&self.account_sid, Some(self.token.expose()))
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.to_owned());
        }
        let sent = request.send().await;
        let response = match sent {
            Ok(response) => response,
            // Checked first: a connect timeout is also a timeout, but nothing was sent.
            Err(e) if e.is_connect() => {
                return Attempt::RetryAfter(
                    None,
                    Retryable::Failed(format!("cannot connect: {}", source_chain(&e))),
                );
            }
            Err(e) if e.is_timeout() => return Attempt::Done(Err(RestError::Timeout)),
            Err(e) => return Attempt::Broken(source_chain(&e)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) if e.is_timeout() => return Attempt::Done(Err(RestError::Timeout)),
            Err(e) => {
                let message = format!("reading the body: {}", source_chain(&e));
                return Attempt::Done(Err(RestError::BadResponse {
                    status: status.as_u16(),
                    message,
                }));
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::RetryAfter(retry_after, Retryable::RateLimited(retry_after));
        }
        if status.is_server_error() {
            let last = format!("HTTP {status}: {}", error_message(&bytes).1);
            return match repeatable {
                Repeatable::Yes => Attempt::RetryAfter(None, Retryable::Failed(last)),
                Repeatable::No => Attempt::Broken(last),
            };
        }
        if status.is_client_error() {
            let (code, message) = error_message(&bytes);
            return Attempt::Done(Err(RestError::Rejected {
                status: status.as_u16(),
                code,
                message,
            }));
        }
        if !status.is_success() {
            let message = format!("unexpected status: {}", snippet(&bytes));
            return Attempt::Done(Err(RestError::BadResponse {
                status: status.as_u16(),
                message,
            }));
        }
        Attempt::Done(Ok((status.as_u16(), bytes.to_vec())))
    }
}

enum Attempt {
    /// The status and body of a success, or the error that ends the request.
    Done(Result<(u16, Vec<u8>), RestError>),
    /// Sent, and it may have taken effect (the connection broke before an answer, or a server
    /// error on a request that must not happen twice): no retry.
    Broken(String),
    /// Try again after the given wait (or the policy's backoff).
    RetryAfter(Option<Duration>, Retryable),
}

enum Retryable {
    RateLimited(Option<Duration>),
    Failed(String),
}

/// SIDs go into URL paths: letters, digits and `-` (SignalWire uses UUIDs) keep them one segment.
fn is_sid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `Retry-After` in seconds. The HTTP-date form is not honoured: the backoff is used instead.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The provider's error code and message, or the start of whatever body it sent.
fn error_message(body: &[u8]) -> (Option<u32>, String) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            code,
            message: Some(message),
        }) => (code, message),
        Ok(ErrorBody { code, message: None }) => (code, snippet(body)),
        Err(_) => (None, snippet(body)),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text.chars().take(200).collect()
    }
}

/// reqwest's top-level message ("error sending request") hides the cause; logs need the whole chain.
fn source_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::{HeaderName, HeaderValue, Response};
    use base64::Engine as _;

    use super::*;

    const SID: &str = "AC00000000000000000000000000000001";
    const TOKEN: &str = "test_auth_token_0123456789abcdef";
    const CREATED: &str = r#"{"sid":"CA00000000000000000000000000000009","account_sid":"AC00000000000000000000000000000001","to":"+15005550006","from":"+15005550001","status":"queued","direction":"outbound-api","price":null,"uri":"/2010-04-01/Accounts/AC00000000000000000000000000000001/Calls/CA00000000000000000000000000000009.json"}"#;

    /// One scripted answer of the stand-in provider.
    #[derive(Clone)]
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: &'static str,
        delay: Duration,
    }

    fn reply(status: u16, body: &'static str) -> Reply {
        Reply {
            status,
            headers: vec![],
            body,
            delay: Duration::ZERO,
        }
    }

    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        query: Option<String>,
        authorization: Option<String>,
        content_type: Option<String>,
        body: String,
    }

    impl Seen {
        fn form(&self) -> Vec<(String, String)> {
            form_urlencoded::parse(self.body.as_bytes())
                .into_owned()
                .collect()
        }
    }

    #[derive(Clone, Default)]
    struct Provider {
        /// Shared with the test, which inspects what arrived after the client returns.
        seen: Arc<Mutex<Vec<Seen>>>,
        /// Answers in order; 500 once they run out.
        script: Arc<Mutex<VecDeque<Reply>>>,
    }

    async fn handle(State(p): State<Provider>, req: Request) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let seen = Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            authorization: header("authorization"),
            content_type: header("content-type"),
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        p.seen.lock().expect("not poisoned").push(seen);
        let next = p.script.lock().expect("not poisoned").pop_front();
        let r = next.unwrap_or_else(|| reply(500, "{}"));
        tokio::time::sleep(r.delay).await;
        let mut response = Response::new(Body::from(r.body));
        *response.status_mut() = axum::http::StatusCode::from_u16(r.status).expect("valid status");
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        for (k, v) in r.headers {
            response
                .headers_mut()
                .insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        response
    }

    /// Starts the stand-in provider on a loopback port and a client pointed at it.
    async fn start(script: Vec<Reply>) -> (Provider, RestClient) {
        let provider = Provider::default();
        provider.script.lock().expect("not poisoned").extend(script);
        let app = Router::new().fallback(handle).with_state(provider.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (provider, client(&format!("http://{addr}")))
    }

    fn client(base: &str) -> RestClient {
        let mut config = RestConfig::new(SID, AuthToken::new(TOKEN));
        config.base_url = base.to_owned();
        config.timeout = Duration::from_millis(500);
        config.retry = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(5),
        };
        RestClient::new(config).expect("valid config")
    }

    fn reference_call() -> CreateCall {
        CreateCall {
            status_callback: Some("https://voice.example.com/twilio/status".into()),
            status_callback_events: StatusCallbackEvent::ALL.to_vec(),
            timeout: Some(25),
            machine_detection: Some(MachineDetection {
                mode: AmdMode::DetectMessageEnd,
                async_callback: Some("https://voice.example.com/twilio/amd".into()),
            }),
            ..CreateCall::new(
                "+15005550006",
                "+15005550001",
                CallInstructions::Url("https://voice.example.com/twilio/voice".into()),
            )
        }
    }

    fn seen(p: &Provider) -> Vec<Seen> {
        p.seen.lock().expect("not poisoned").clone()
    }

    #[test]
    fn create_call_form_matches_the_reference_body_exactly() {
        assert_eq!(
            reference_call().to_form(),
            "To=%2B15005550006&From=%2B15005550001&StatusCallback=https%3A%2F%2Fvoice.example.com%2Ftwilio%2Fstatus\
             &StatusCallbackEvent=initiated&StatusCallbackEvent=ringing&StatusCallbackEvent=answered\
             &StatusCallbackEvent=completed&StatusCallbackMethod=POST&Timeout=25&MachineDetection=DetectMessageEnd\
             &AsyncAmd=true&AsyncAmdStatusCallback=https%3A%2F%2Fvoice.example.com%2Ftwilio%2Famd\
             &Url=https%3A%2F%2Fvoice.example.com%2Ftwilio%2Fvoice"
        );
    }

    #[test]
    fn minimal_and_inline_twiml_forms() {
        let call = CreateCall::new(
            "+1 555",
            "+2",
            CallInstructions::Twiml("<Response><Hangup/></Response>".into()),
        );
        assert_eq!(
            call.to_form(),
            "To=%2B1+555&From=%2B2&Twiml=%3CResponse%3E%3CHangup%2F%3E%3C%2FResponse%3E"
        );
        let sync_amd = CreateCall {
            machine_detection: Some(MachineDetection {
                mode: AmdMode::Enable,
                async_callback: None,
            }),
            record: true,
            time_limit: Some(600),
            ..CreateCall::new("1", "2", CallInstructions::ApplicationSid("AP1".into()))
        };
        assert_eq!(
            sync_amd.to_form(),
            "To=1&From=2&TimeLimit=600&Record=true&MachineDetection=Enable&ApplicationSid=AP1"
        );
        assert_eq!(CallUpdate::Hangup.to_form(), "Status=completed");
        assert_eq!(
            CallUpdate::Redirect("https://x/y".into()).to_form(),
            "Url=https%3A%2F%2Fx%2Fy&Method=POST"
        );
        assert_eq!(
            CallUpdate::Twiml("<Response/>".into()).to_form(),
            "Twiml=%3CResponse%2F%3E"
        );
    }

    #[tokio::test]
    async fn create_call_sends_the_form_with_basic_auth() -> Result<(), RestError> {
        let (provider, client) = start(vec![reply(201, CREATED)]).await;
        let call = client.create_call(&reference_call()).await?;
        assert_eq!(call.sid, "CA00000000000000000000000000000009");
        assert_eq!(call.status, CallStatus::Queued);
        assert_eq!(call.direction.as_deref(), Some("outbound-api"));
        let seen = seen(&provider);
        assert_eq!(seen.len(), 1);
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
        );
        for s in &seen {
            assert_eq!(s.method, "POST");
            assert_eq!(s.path, format!("/2010-04-01/Accounts/{SID}/Calls.json"));
            assert_eq!(s.authorization.as_deref(), Some(expected_auth.as_str()));
            assert_eq!(
                s.content_type.as_deref(),
                Some("application/x-www-form-urlencoded")
            );
            assert_eq!(s.body, reference_call().to_form());
        }
        let form = seen[0].form();
        let get = |k: &str| {
            form.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("To"), ["+15005550006"]);
        assert_eq!(get("From"), ["+15005550001"]);
        assert_eq!(get("Url"), ["https://voice.example.com/twilio/voice"]);
        assert_eq!(
            get("StatusCallbackEvent"),
            ["initiated", "ringing", "answered", "completed"]
        );
        assert_eq!(get("MachineDetection"), ["DetectMessageEnd"]);
        assert_eq!(get("AsyncAmd"), ["true"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_4xx_is_not_retried_and_its_error_is_parsed() {
        let body = r#"{"code": 21211, "message": "The 'To' number 5551234 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;
        let (provider, client) = start(vec![reply(400, body), reply(201, CREATED)]).await;
        let err = client.create_call(&reference_call()).await.expect_err("400");
        assert_eq!(
            err,
            RestError::Rejected {
                status: 400,
                code: Some(21211),
                message: "The 'To' number 5551234 is not a valid phone number.".into()
            }
        );
        assert!(err.to_string().contains("error 21211"), "{err}");
        assert_eq!(seen(&provider).len(), 1);
    }

    #[tokio::test]
    async fn a_4xx_without_json_keeps_the_body_text() {
        let (_provider, client) = start(vec![reply(401, "Unauthorized")]).await;
        let err = client
            .update_call("CA1", &CallUpdate::Hangup)
            .await
            .expect_err("401");
        assert_eq!(
            err,
            RestError::Rejected {
                status: 401,
                code: None,
                message: "Unauthorized".into()
            }
        );
    }

    #[tokio::test]
    async fn a_5xx_on_create_is_not_retried_the_call_may_exist() {
        let (provider, client) = start(vec![reply(500, r#"{"message":"oops"}"#), reply(201, CREATED)]).await;
        let err = client.create_call(&reference_call()).await.expect_err("500");
        assert!(
            matches!(&err, RestError::Unavailable { attempts: 1, last } if last.contains("500") && last.contains("oops")),
            "{err:?}"
        );
        assert_eq!(seen(&provider).len(), 1, "one request: a second could ring twice");
    }

    #[tokio::test]
    async fn update_call_retries_5xx_then_succeeds() -> Result<(), RestError> {
        let (provider, client) = start(vec![reply(500, "{}"), reply(503, ""), reply(200, CREATED)]).await;
        let call = client
            .update_call("CA00000000000000000000000000000009", &CallUpdate::Hangup)
            .await?;
        assert_eq!(call.sid, "CA00000000000000000000000000000009");
        assert_eq!(seen(&provider).len(), 3, "two 5xx then 200");
        Ok(())
    }

    #[tokio::test]
    async fn persistent_5xx_on_an_update_gives_up_after_max_attempts() {
        let (provider, client) = start(vec![]).await;
        let err = client
            .update_call("CA00000000000000000000000000000009", &CallUpdate::Hangup)
            .await
            .expect_err("always 500");
        assert!(
            matches!(&err, RestError::Unavailable { attempts: 3, last } if last.contains("500")),
            "{err:?}"
        );
        assert_eq!(seen(&provider).len(), 3);
    }

    #[tokio::test]
    async fn find_calls_asks_by_number_and_day_and_keeps_calls_since_the_time() -> Result<(), RestError> {
        // 2026-11-24T03:56:05Z = 1795492565.
        let list = r#"{"calls": [
            {"sid": "CA1", "status": "in-progress", "to": "+15005550006", "date_created": "Tue, 24 Nov 2026 03:57:00 +0000"},
            {"sid": "CA2", "status": "completed", "to": "+15005550006", "date_created": "Tue, 24 Nov 2026 03:50:00 +0000"},
            {"sid": "CA3", "status": "queued", "to": "+15005550006"}
        ], "page": 0, "page_size": 50}"#;
        let (provider, client) = start(vec![reply(500, "{}"), reply(200, list)]).await;
        let found = client.find_calls("+15005550006", 1_795_492_565).await?;
        let sids: Vec<&str> = found.iter().map(|c| c.sid.as_str()).collect();
        assert_eq!(
            sids,
            ["CA1", "CA3"],
            "the older call is not this attempt's; undated ones are kept"
        );
        let seen = seen(&provider);
        assert_eq!(seen.len(), 2, "a list is safe to ask twice");
        assert_eq!(seen[1].method, "GET");
        assert_eq!(seen[1].path, format!("/2010-04-01/Accounts/{SID}/Calls.json"));
        assert_eq!(
            seen[1].query.as_deref(),
            Some("To=%2B15005550006&StartTime%3E=2026-11-24&PageSize=50")
        );
        Ok(())
    }

    #[tokio::test]
    async fn fetch_call_gets_one_call_and_retries_a_5xx() -> Result<(), RestError> {
        let call = r#"{"sid":"CA42","status":"no-answer"}"#;
        let (provider, client) = start(vec![reply(503, "{}"), reply(200, call)]).await;
        let got = client.fetch_call("CA42").await?;
        assert_eq!((got.sid.as_str(), got.status), ("CA42", CallStatus::NoAnswer));
        let seen = seen(&provider);
        assert_eq!(seen.len(), 2, "reading a call is safe to repeat");
        assert_eq!(seen[1].method, "GET");
        assert_eq!(
            seen[1].path,
            format!("/2010-04-01/Accounts/{SID}/Calls/CA42.json")
        );
        assert!(matches!(
            client.fetch_call("../CA42").await,
            Err(RestError::InvalidSid { .. })
        ));
        Ok(())
    }

    #[tokio::test]
    async fn update_call_paths_and_forms() -> Result<(), RestError> {
        let updated = r#"{"sid":"CA42","status":"completed"}"#;
        let (provider, client) = start(vec![
            reply(200, updated),
            reply(200, updated),
            reply(200, updated),
        ])
        .await;
        let call = client.update_call("CA42", &CallUpdate::Hangup).await?;
        assert_eq!((call.sid.as_str(), call.status), ("CA42", CallStatus::Completed));
        client
            .update_call("CA42", &CallUpdate::Redirect("https://v.example/next".into()))
            .await?;
        client
            .update_call(
                "CA42",
                &CallUpdate::Twiml("<Response><Hangup/></Response>".into()),
            )
            .await?;
        let seen = seen(&provider);
        for s in &seen {
            assert_eq!(s.path, format!("/2010-04-01/Accounts/{SID}/Calls/CA42.json"));
            assert_eq!(s.method, "POST");
        }
        assert_eq!(seen[0].form(), [("Status".to_string(), "completed".to_string())]);
        assert_eq!(
            seen[1].form(),
            [
                ("Url".to_string(), "https://v.example/next".to_string()),
                ("Method".into(), "POST".into())
            ]
        );
        assert_eq!(
            seen[2].form(),
            [("Twiml".to_string(), "<Response><Hangup/></Response>".to_string())]
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_sid_that_is_not_one_path_segment_is_refused_before_sending() {
        let (provider, client) = start(vec![]).await;
        for bad in ["", "../../Accounts", "CA1/x", "CA1?x=1", "CA 1"] {
            let err = client.update_call(bad, &CallUpdate::Hangup).await.expect_err(bad);
            assert!(matches!(err, RestError::InvalidSid { .. }), "{bad}");
        }
        assert!(seen(&provider).is_empty());
    }

    #[tokio::test]
    async fn a_429_waits_for_retry_after() -> Result<(), RestError> {
        let limited = Reply {
            headers: vec![("retry-after", "1")],
            ..reply(429, r#"{"code":20429}"#)
        };
        let (provider, client) = start(vec![limited, reply(201, CREATED)]).await;
        let started = Instant::now();
        client.create_call(&reference_call()).await?;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1),
            "retried after {waited:?}, before Retry-After"
        );
        assert_eq!(seen(&provider).len(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_429_asking_too_long_a_wait_fails_at_once() {
        let limited = Reply {
            headers: vec![("retry-after", "3600")],
            ..reply(429, "")
        };
        let (provider, client) = start(vec![limited]).await;
        let started = Instant::now();
        let err = client
            .create_call(&reference_call())
            .await
            .expect_err("rate limited");
        assert_eq!(
            err,
            RestError::RateLimited {
                retry_after: Some(Duration::from_secs(3600))
            }
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(seen(&provider).len(), 1);
    }

    #[tokio::test]
    async fn repeated_429_without_retry_after_ends_rate_limited() {
        let (provider, client) = start(vec![reply(429, ""), reply(429, ""), reply(429, "")]).await;
        let err = client
            .create_call(&reference_call())
            .await
            .expect_err("rate limited");
        assert_eq!(err, RestError::RateLimited { retry_after: None });
        assert_eq!(seen(&provider).len(), 3);
    }

    #[tokio::test]
    async fn connection_refused_is_retried_then_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        drop(listener);
        let client = client(&format!("http://{addr}"));
        let started = Instant::now();
        let err = client
            .create_call(&reference_call())
            .await
            .expect_err("nothing listening");
        assert!(
            matches!(&err, RestError::Unavailable { attempts: 3, last } if last.contains("connect")),
            "{err:?}"
        );
        // Two backoffs: 10 ms then 20 ms.
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_timeout_and_not_retried() {
        let slow = Reply {
            delay: Duration::from_secs(3),
            ..reply(201, CREATED)
        };
        let (provider, client) = start(vec![slow, reply(201, CREATED)]).await;
        let err = client.create_call(&reference_call()).await.expect_err("timeout");
        assert_eq!(err, RestError::Timeout);
        assert_eq!(
            seen(&provider).len(),
            1,
            "a call that may have been placed is not placed again"
        );
    }

    #[tokio::test]
    async fn a_success_that_is_not_a_call_is_a_bad_response() {
        let (_p, client) = start(vec![
            reply(201, "<html>proxy</html>"),
            reply(201, r#"{"sid":"CA1","status":"odd"}"#),
        ])
        .await;
        let err = client.create_call(&reference_call()).await.expect_err("html");
        assert!(
            matches!(&err, RestError::BadResponse { status: 201, message } if message.contains("<html>")),
            "{err:?}"
        );
        let err = client
            .create_call(&reference_call())
            .await
            .expect_err("unknown status");
        assert!(
            matches!(err, RestError::BadResponse { status: 201, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let moved = Reply {
            headers: vec![("location", "/elsewhere")],
            ..reply(302, "")
        };
        let (provider, client) = start(vec![moved]).await;
        let err = client.create_call(&reference_call()).await.expect_err("302");
        assert!(
            matches!(err, RestError::BadResponse { status: 302, .. }),
            "{err:?}"
        );
        assert_eq!(seen(&provider).len(), 1);
    }

    #[tokio::test]
    async fn base_url_may_carry_a_path_prefix() -> Result<(), RestError> {
        let (provider, client) = start(vec![reply(201, CREATED)]).await;
        let base = client
            .calls_url
            .split("/2010-04-01")
            .next()
            .unwrap_or_default()
            .to_owned();
        let prefixed = self::client(&format!("{base}/fake-twilio/"));
        prefixed.create_call(&reference_call()).await?;
        assert_eq!(
            seen(&provider)[0].path,
            format!("/fake-twilio/2010-04-01/Accounts/{SID}/Calls.json")
        );
        Ok(())
    }

    #[test]
    fn bad_configuration_is_refused() {
        let config = |base: &str, sid: &str| {
            let mut c = RestConfig::new(sid, AuthToken::new("t"));
            c.base_url = base.into();
            c
        };
        for (base, sid) in [
            ("not a url", SID),
            ("ftp://x", SID),
            ("https://x/?q=1", SID),
            ("https://x", "AC/1"),
        ] {
            assert!(
                matches!(RestClient::new(config(base, sid)), Err(RestError::Config(_))),
                "{base} {sid}"
            );
        }
        let mut zero = config("https://x", SID);
        zero.retry.max_attempts = 0;
        assert!(matches!(RestClient::new(zero), Err(RestError::Config(_))));
        assert!(RestClient::new(RestConfig::new(SID, AuthToken::new("t"))).is_ok());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() -> Result<(), RestError> {
        let client = RestClient::new(RestConfig::new(SID, AuthToken::new("super-secret-token")))?;
        let config = RestConfig::new(SID, AuthToken::new("super-secret-token"));
        assert!(!format!("{client:?}").contains("super-secret"));
        assert!(!format!("{config:?}").contains("super-secret"));
        assert!(format!("{config:?}").contains("***"));
        Ok(())
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=5).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350, 350]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_millis(350));
    }
}
