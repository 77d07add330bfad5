//! The REST routes: create, list, fetch and update calls as the provider's 2010-04-01 API does, with
//! its basic auth, its JSON shapes and its error bodies; and `GET /sim/calls`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;
use serde::Serialize;
use switchboard_telephony::rest::AmdMode;
use switchboard_telephony::webhook::{AnsweredBy, CallStatus, FormParams};
use tokio::sync::mpsc;

use super::life::{self, Placed};
use super::{Control, Entry, Shared};
use crate::http::sid;
use crate::numbers::{Behaviour, Fault, is_number};
use crate::record::{CallRecord, CreateRequest, Record};

pub(super) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Calls.json",
            get(list).post(create),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Calls/{file}",
            get(fetch).post(update),
        )
        .route("/sim/calls", get(record))
        .with_state(shared)
}

/// A refusal, answered with the provider's JSON error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    Unauthorized,
    NotFound {
        path: String,
    },
    BadRequest {
        code: u32,
        message: String,
    },
    TooManyCalls,
    /// The `error_after_create` fault.
    ServerError,
}

impl ApiError {
    fn bad(code: u32, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooManyCalls => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> u32 {
        match self {
            ApiError::Unauthorized => 20003,
            ApiError::NotFound { .. } => 20404,
            ApiError::BadRequest { code, .. } => *code,
            ApiError::TooManyCalls => 20429,
            ApiError::ServerError => 20500,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Unauthorized => "Authenticate".into(),
            ApiError::NotFound { path } => format!("The requested resource {path} was not found"),
            ApiError::BadRequest { message, .. } => message.clone(),
            ApiError::TooManyCalls => "Too many calls in progress for this account".into(),
            ApiError::ServerError => "An internal server error has occurred".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            code: u32,
            message: String,
            more_info: String,
            status: u16,
        }
        let status = self.status();
        let body = Body {
            code: self.code(),
            message: self.message(),
            more_info: format!("https://www.twilio.com/docs/errors/{}", self.code()),
            status: status.as_u16(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"Twilio API\""),
                );
            }
            ApiError::TooManyCalls => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// HTTP basic auth with the account SID and auth token, then the account in the path.
fn authorize(shared: &Shared, headers: &HeaderMap, account: &str, path: &str) -> Result<(), ApiError> {
    let config = &shared.config;
    let expected = format!("{}:{}", config.account_sid, config.auth_token.expose());
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| BASE64.decode(b.trim()).ok());
    if given.as_deref() != Some(expected.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    if account != config.account_sid {
        return Err(ApiError::NotFound { path: path.into() });
    }
    Ok(())
}

/// Twilio's timestamp format (RFC 2822, two-digit day, `+0000`).
pub(crate) fn rfc2822(t: Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

/// A call as the API shows it (the fields the provider's call resource has that mean something here).
#[derive(Debug, Serialize)]
struct CallJson {
    sid: String,
    account_sid: String,
    api_version: &'static str,
    to: String,
    to_formatted: String,
    from: String,
    from_formatted: String,
    status: CallStatus,
    direction: &'static str,
    date_created: String,
    date_updated: String,
    start_time: Option<String>,
    end_time: Option<String>,
    duration: Option<String>,
    answered_by: Option<AnsweredBy>,
    parent_call_sid: Option<String>,
    caller_name: Option<String>,
    forwarded_from: Option<String>,
    price: Option<String>,
    price_unit: &'static str,
    queue_time: &'static str,
    uri: String,
    subresource_uris: BTreeMap<&'static str, String>,
}

fn resource(account_sid: &str, e: &Entry) -> CallJson {
    let r = &e.record;
    let uri = format!("/2010-04-01/Accounts/{account_sid}/Calls/{}.json", r.sid);
    let sub = |name: &str| format!("/2010-04-01/Accounts/{account_sid}/Calls/{}/{name}.json", r.sid);
    CallJson {
        sid: r.sid.clone(),
        account_sid: account_sid.to_owned(),
        api_version: "2010-04-01",
        to: r.to.clone(),
        to_formatted: r.to.clone(),
        from: r.from.clone(),
        from_formatted: r.from.clone(),
        status: r.status,
        direction: "outbound-api",
        date_created: rfc2822(e.created),
        date_updated: rfc2822(e.updated),
        start_time: e.started.map(rfc2822),
        end_time: e.ended.map(rfc2822),
        duration: e.ended.map(|_| r.duration_seconds.to_string()),
        answered_by: r.answered_by,
        parent_call_sid: None,
        caller_name: None,
        forwarded_from: None,
        price: None,
        price_unit: "USD",
        queue_time: "0",
        subresource_uris: BTreeMap::from([
            ("notifications", sub("Notifications")),
            ("recordings", sub("Recordings")),
            ("events", sub("Events")),
        ]),
        uri,
    }
}

/// A create request, checked: what the call task needs.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) to: String,
    pub(crate) from: String,
    pub(crate) source: Source,
    pub(crate) status_callback: Option<String>,
    /// Lower-case event names; `completed` alone when a callback URL came without any.
    pub(crate) events: Vec<String>,
    pub(crate) machine_detection: Option<AmdMode>,
    /// How long to ring before giving up (`Timeout`, default 60 s).
    pub(crate) timeout: Duration,
    pub(crate) time_limit: Option<Duration>,
}

/// Where the call's TwiML comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Url(String),
    Twiml(String),
}

fn is_url(s: &str) -> bool {
    reqwest::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn seconds_param(
    form: &FormParams,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<Duration>, ApiError> {
    match form.get(name) {
        None | Some("") => Ok(None),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(Some(Duration::from_secs(n))),
            _ => Err(ApiError::bad(
                21217,
                format!("{name} must be a whole number of seconds in {range:?}, not {v:?}"),
            )),
        },
    }
}

/// Checks a create request the way the provider does: the first problem found is the answer.
fn validate(form: &FormParams) -> Result<Order, ApiError> {
    let to = match form.get("To").map(str::trim) {
        None | Some("") => return Err(ApiError::bad(21201, "No 'To' number is specified")),
        Some(to) if !is_number(to) => {
            return Err(ApiError::bad(
                21211,
                format!("The 'To' number {to} is not a valid phone number."),
            ));
        }
        Some(to) => to.to_owned(),
    };
    let from = match form.get("From").map(str::trim) {
        None | Some("") => return Err(ApiError::bad(21603, "A 'From' phone number is required.")),
        Some(from) if !is_number(from) => {
            return Err(ApiError::bad(
                21212,
                format!("Invalid From Number (caller ID): {from}"),
            ));
        }
        Some(from) => from.to_owned(),
    };
    let source = match (form.get("Url"), form.get("Twiml"), form.get("ApplicationSid")) {
        (Some(url), _, _) if !url.is_empty() => {
            if !is_url(url) {
                return Err(ApiError::bad(21205, format!("Url is not a valid URL: {url}")));
            }
            Source::Url(url.to_owned())
        }
        (_, Some(twiml), _) if !twiml.is_empty() => Source::Twiml(twiml.to_owned()),
        (_, _, Some(app)) if !app.is_empty() => {
            return Err(ApiError::bad(
                21218,
                "ApplicationSid is not supported by this simulator: give a Url",
            ));
        }
        _ => return Err(ApiError::bad(21205, "Url parameter is required.")),
    };
    let status_callback = match form.get("StatusCallback") {
        None | Some("") => None,
        Some(url) if is_url(url) => Some(url.to_owned()),
        Some(url) => return Err(ApiError::bad(21609, format!("Invalid StatusCallback url: {url}"))),
    };
    if form
        .get("StatusCallbackMethod")
        .is_some_and(|m| !m.eq_ignore_ascii_case("POST"))
    {
        return Err(ApiError::bad(
            21609,
            "this simulator sends status callbacks with POST only",
        ));
    }
    let mut events: Vec<String> = form
        .pairs()
        .iter()
        .filter(|(k, _)| k == "StatusCallbackEvent")
        .flat_map(|(_, v)| v.split_whitespace())
        .map(str::to_ascii_lowercase)
        .collect();
    if events.is_empty() {
        events.push("completed".into());
    }
    let machine_detection = match form.get("MachineDetection") {
        None | Some("") => None,
        Some("Enable") => Some(AmdMode::Enable),
        Some("DetectMessageEnd") => Some(AmdMode::DetectMessageEnd),
        Some(other) => {
            return Err(ApiError::bad(
                21626,
                format!("MachineDetection must be Enable or DetectMessageEnd, not {other:?}"),
            ));
        }
    };
    Ok(Order {
        to,
        from,
        source,
        status_callback,
        events,
        machine_detection,
        timeout: seconds_param(form, "Timeout", 1..=600)?.unwrap_or(Duration::from_secs(60)),
        time_limit: seconds_param(form, "TimeLimit", 1..=14_400)?,
    })
}

fn request_of(form: &FormParams, at: Timestamp) -> CreateRequest {
    let text = |k: &str| form.get(k).map(str::to_owned);
    CreateRequest {
        at: at.to_string(),
        to: text("To"),
        from: text("From"),
        url: text("Url"),
        twiml: text("Twiml"),
        status_callback: text("StatusCallback"),
        status_callback_events: form
            .pairs()
            .iter()
            .filter(|(k, _)| k == "StatusCallbackEvent")
            .map(|(_, v)| v.clone())
            .collect(),
        machine_detection: text("MachineDetection"),
        timeout: text("Timeout"),
        http_status: 201,
        error_code: None,
        call_sid: None,
        fault: None,
    }
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CallJson>), ApiError> {
    let path = format!("/2010-04-01/Accounts/{account}/Calls.json");
    authorize(&shared, &headers, &account, &path)?;
    let form = FormParams::parse(&body);
    let now = Timestamp::now();
    let mut request = request_of(&form, now);
    let refused = |mut request: CreateRequest, e: ApiError| {
        request.http_status = e.status().as_u16();
        request.error_code = Some(e.code());
        shared.log_request(request);
        Err(e)
    };
    let order = match validate(&form) {
        Ok(order) => order,
        Err(e) => return refused(request, e),
    };
    let (behaviour, nth) = shared.next_behaviour(&order.to);
    request.fault = behaviour.fault.map(Fault::kind);
    if behaviour.fault == Some(Fault::Reject) {
        let to = &order.to;
        let e = ApiError::bad(
            21215,
            format!(
                "Account not authorized to call {to}. Perhaps you need to enable some international permissions"
            ),
        );
        return refused(request, e);
    }
    let Ok(permit) = shared.lines.clone().try_acquire_owned() else {
        return refused(request, ApiError::TooManyCalls);
    };
    let fault = behaviour.fault;
    let sid = place(&shared, order, behaviour, nth, now, permit);
    request.call_sid = Some(sid.clone());
    match fault {
        Some(Fault::ErrorAfterCreate) => return refused(request, ApiError::ServerError),
        Some(Fault::SlowCreate(delay)) => {
            shared.log_request(request);
            // The call is already under way; only the answer is late.
            tokio::time::sleep(delay).await;
        }
        _ => shared.log_request(request),
    }
    let account_sid = &shared.config.account_sid;
    let json = shared
        .read_call(&sid, |e| resource(account_sid, e))
        .ok_or(ApiError::ServerError)?;
    Ok((StatusCode::CREATED, Json(json)))
}

/// Books the call and starts its life.
fn place(
    shared: &Arc<Shared>,
    order: Order,
    behaviour: Behaviour,
    nth: usize,
    now: Timestamp,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> String {
    let sid = sid("CA");
    let (control, rx) = mpsc::channel(8);
    let record = CallRecord {
        sid: sid.clone(),
        to: order.to.clone(),
        from: order.from.clone(),
        url: match &order.source {
            Source::Url(u) => Some(u.clone()),
            Source::Twiml(_) => None,
        },
        nth,
        answer: behaviour.answer,
        fault: behaviour.fault.map(Fault::kind),
        machine_detection: order.machine_detection.map(|m| {
            match m {
                AmdMode::Enable => "Enable",
                AmdMode::DetectMessageEnd => "DetectMessageEnd",
            }
            .to_owned()
        }),
        created_at: now.to_string(),
        answered_at: None,
        ended_at: None,
        status: CallStatus::Queued,
        answered_by: None,
        duration_seconds: 0,
        ended_by: None,
        hangup_requested: false,
        said: Vec::new(),
        played: Vec::new(),
        voicemail: None,
        transfers: Vec::new(),
        updates: Vec::new(),
        webhooks: Vec::new(),
        stream: None,
        callbacks: Vec::new(),
        errors: Vec::new(),
    };
    shared.add_call(Entry {
        record,
        created: now,
        updated: now,
        started: None,
        ended: None,
        control,
    });
    let placed = Placed {
        sid: sid.clone(),
        order,
        behaviour,
    };
    shared.tasks.spawn(life::run(shared.clone(), placed, rx, permit));
    sid
}

/// One page of the call list, in the provider's paging format.
#[derive(Debug, Serialize)]
struct CallPage {
    calls: Vec<CallJson>,
    page: usize,
    page_size: usize,
    start: usize,
    end: usize,
    uri: String,
    first_page_uri: String,
    next_page_uri: Option<String>,
    previous_page_uri: Option<String>,
}

fn date_param(q: &FormParams, names: &[&str]) -> Result<Option<jiff::civil::Date>, ApiError> {
    let Some((name, value)) = names.iter().find_map(|n| q.get(n).map(|v| (*n, v))) else {
        return Ok(None);
    };
    // `StartTime>=2026-11-24` may also carry a time; the day is what the filter compares.
    let day = value.get(..10).unwrap_or(value);
    day.parse().map(Some).map_err(|_| {
        ApiError::bad(
            20001,
            format!("{name} must be a date (YYYY-MM-DD), not {value:?}"),
        )
    })
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<CallPage>, ApiError> {
    let path = format!("/2010-04-01/Accounts/{account}/Calls.json");
    authorize(&shared, &headers, &account, &path)?;
    let q = FormParams::parse(query.as_deref().unwrap_or_default().as_bytes());
    let to = q.get("To").filter(|v| !v.is_empty());
    let from = q.get("From").filter(|v| !v.is_empty());
    let status =
        match q.get("Status").filter(|v| !v.is_empty()) {
            None => None,
            Some(s) => Some(s.parse::<CallStatus>().map_err(|_| {
                ApiError::bad(20001, format!("Status must be one of {}", CallStatus::EXPECTED))
            })?),
        };
    let on_or_after = date_param(&q, &["StartTime>", "StartTime>="])?;
    let on_or_before = date_param(&q, &["StartTime<", "StartTime<="])?;
    let on = date_param(&q, &["StartTime"])?;
    let page_size = match q.get("PageSize") {
        None => 50,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad(20001, "PageSize must be 1 to 1000"))?,
    };
    let page = q.get("Page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(0);
    let account_sid = &shared.config.account_sid;
    let matching = shared.newest_first(|e| {
        let day = e.created.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        let r = &e.record;
        let keep = to.is_none_or(|t| r.to == t)
            && from.is_none_or(|f| r.from == f)
            && status.is_none_or(|s| r.status == s)
            && on_or_after.is_none_or(|d| day >= d)
            && on_or_before.is_none_or(|d| day <= d)
            && on.is_none_or(|d| day == d);
        keep.then(|| resource(account_sid, e))
    });
    let total = matching.len();
    let start = page.saturating_mul(page_size);
    let calls: Vec<CallJson> = matching.into_iter().skip(start).take(page_size).collect();
    let page_uri = |p: usize| format!("{path}?PageSize={page_size}&Page={p}");
    Ok(Json(CallPage {
        page,
        page_size,
        start,
        end: (start + calls.len()).saturating_sub(1),
        uri: page_uri(page),
        first_page_uri: page_uri(0),
        next_page_uri: (start + calls.len() < total).then(|| page_uri(page + 1)),
        previous_page_uri: (page > 0).then(|| page_uri(page - 1)),
        calls,
    }))
}

fn call_sid_of(file: &str, path: &str) -> Result<String, ApiError> {
    file.strip_suffix(".json")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::NotFound { path: path.into() })
}

async fn fetch(
    State(shared): State<Arc<Shared>>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<CallJson>, ApiError> {
    let path = format!("/2010-04-01/Accounts/{account}/Calls/{file}");
    authorize(&shared, &headers, &account, &path)?;
    let sid = call_sid_of(&file, &path)?;
    let account_sid = &shared.config.account_sid;
    shared
        .read_call(&sid, |e| Json(resource(account_sid, e)))
        .ok_or(ApiError::NotFound { path })
}

async fn update(
    State(shared): State<Arc<Shared>>,
    Path((account, file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CallJson>, ApiError> {
    let path = format!("/2010-04-01/Accounts/{account}/Calls/{file}");
    authorize(&shared, &headers, &account, &path)?;
    let sid = call_sid_of(&file, &path)?;
    let form = FormParams::parse(&body);
    let (control, note) = if let Some(status) = form.get("Status") {
        if !matches!(status, "completed" | "canceled") {
            return Err(ApiError::bad(
                21218,
                format!("Status must be completed or canceled, not {status:?}"),
            ));
        }
        (Control::Hangup, format!("Status={status}"))
    } else if let Some(twiml) = form.get("Twiml") {
        (Control::Twiml(twiml.to_owned()), format!("Twiml={twiml}"))
    } else if let Some(url) = form.get("Url") {
        if !is_url(url) {
            return Err(ApiError::bad(21205, format!("Url is not a valid URL: {url}")));
        }
        (Control::Redirect(url.to_owned()), format!("Url={url}"))
    } else {
        return Err(ApiError::bad(20001, "one of Status, Url or Twiml is required"));
    };
    let account_sid = &shared.config.account_sid;
    shared
        .with_call(&sid, |e| {
            e.record.updates.push(note);
            let status = e.record.status;
            if control == Control::Hangup {
                e.record.hangup_requested = true;
                if status.is_final() {
                    // Hanging up a call that has ended changes nothing.
                    return Ok(Json(resource(account_sid, e)));
                }
            } else if status != CallStatus::InProgress {
                return Err(ApiError::bad(21220, "Call is not in-progress. Cannot redirect."));
            }
            // Full only if the runtime sends updates faster than the call can act on them: the call
            // is being changed already, so this one is dropped (and stays in `updates`).
            let _ = e.control.try_send(control);
            Ok(Json(resource(account_sid, e)))
        })
        .ok_or(ApiError::NotFound { path })?
}

async fn record(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Json<Record> {
    let mut record = shared.record();
    let q = FormParams::parse(query.as_deref().unwrap_or_default().as_bytes());
    if let Some(to) = q.get("to").filter(|t| !t.is_empty()) {
        record.calls.retain(|c| c.to == to);
        record.requests.retain(|r| r.to.as_deref() == Some(to));
    }
    Json(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Provider, ProviderConfig};
    use switchboard_telephony::AuthToken;
    use tower::ServiceExt as _;

    fn form(body: &str) -> FormParams {
        FormParams::parse(body.as_bytes())
    }

    const VALID: &str =
        "To=%2B15555550101&From=%2B15555550100&Url=https%3A%2F%2Fv.example%2Fvoice%3Fattempt%3D7";

    #[test]
    fn a_valid_request_keeps_the_exact_url_and_defaults_to_the_completed_callback() -> Result<(), ApiError> {
        let order = validate(&form(&format!(
            "{VALID}&StatusCallback=https%3A%2F%2Fv.example%2Fstatus"
        )))?;
        assert_eq!(
            order.source,
            Source::Url("https://v.example/voice?attempt=7".into())
        );
        assert_eq!(order.events, ["completed"]);
        assert_eq!(order.timeout, Duration::from_secs(60));
        assert_eq!(order.machine_detection, None);
        let order = validate(&form(&format!(
            "{VALID}&StatusCallbackEvent=initiated&StatusCallbackEvent=ringing+answered&Timeout=25&MachineDetection=Enable"
        )))?;
        assert_eq!(order.events, ["initiated", "ringing", "answered"]);
        assert_eq!(order.timeout, Duration::from_secs(25));
        assert_eq!(order.machine_detection, Some(AmdMode::Enable));
        Ok(())
    }

    #[test]
    fn each_mistake_gets_the_providers_code() {
        let cases = [
            ("From=%2B15555550100&Url=https%3A%2F%2Fv.example%2F", 21201),
            ("To=%2B15555550101&Url=https%3A%2F%2Fv.example%2F", 21603),
            ("To=%2B15555550101&From=%2B15555550100", 21205),
            ("To=%2B15555550101&From=%2B15555550100&Url=ftp%3A%2F%2Fx", 21205),
            ("To=%2B15555550101&From=%2B15555550100&ApplicationSid=AP1", 21218),
            ("To=12&From=%2B15555550100&Url=https%3A%2F%2Fv.example%2F", 21211),
        ];
        for (body, code) in cases {
            assert_eq!(
                validate(&form(body)).map(|_| ()).map_err(|e| e.code()),
                Err(code),
                "{body}"
            );
        }
        for extra in [
            "&MachineDetection=Sometimes",
            "&Timeout=0",
            "&StatusCallbackMethod=GET",
        ] {
            let body = format!("{VALID}{extra}");
            assert!(validate(&form(&body)).is_err(), "{body}");
        }
    }

    #[tokio::test]
    async fn no_credentials_is_a_401_with_the_providers_body() -> Result<(), Box<dyn std::error::Error>> {
        let provider = Provider::new(ProviderConfig::new(
            "AC1",
            AuthToken::new("t"),
            crate::Plan::default(),
        ))?;
        let request = axum::http::Request::post("/2010-04-01/Accounts/AC1/Calls.json")
            .body(axum::body::Body::from(VALID))?;
        let response = provider.router().oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
        let json: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(json["code"], 20003);
        assert_eq!(json["status"], 401);
        assert!(provider.record().requests.is_empty());
        Ok(())
    }

    #[test]
    fn dates_are_the_providers_rfc_2822() -> Result<(), jiff::Error> {
        let t: Timestamp = "2026-11-04T03:56:05Z".parse()?;
        assert_eq!(rfc2822(t), "Wed, 04 Nov 2026 03:56:05 +0000");
        Ok(())
    }
}
