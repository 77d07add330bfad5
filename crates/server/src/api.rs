//! The REST API under `/api`: the call log (list and show calls, their recordings, delete,
//! statistics) here, outbound campaigns and the do-not-call list in [`crate::campaigns_api`], and
//! the OpenAPI description generated from both sets of handlers (utoipa).
//!
//! Every route but `/api/openapi.json` needs `Authorization: Bearer <API key>`. The key is checked by
//! a layer that runs before any extractor, so a request without a valid key learns nothing — not even
//! whether its query would have parsed. Bad input gets a JSON [`ErrorBody`], never axum's plain-text
//! rejection, and a store failure is logged and answered as a bare 500.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchboard_store::{
    CallDetail, CallFilter, CallPage, CallStatus, CallSummary, DayCount, Direction, Event, LatencyStats,
    Millis, NoMatch, OutcomeCount, Speaker, StageTimings, Stats, Store, StoreError, Turn,
};
use tower::ServiceExt;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::campaigns_api::CampaignRoutes;

/// What the API handlers need; a plain value so the API does not depend on the engines.
#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    pub store: Store,
    /// Recordings are served only from here, whatever path a row holds.
    pub recordings_dir: Option<PathBuf>,
    /// The loaded flows by name: a campaign must name an outbound one.
    pub flows: Arc<BTreeMap<String, switchboard_flow::Direction>>,
}

pub(crate) fn routes<S: Clone + Send + Sync + 'static>(state: ApiState) -> Router<S> {
    let protected = Router::new()
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{id}", get(get_call).delete(delete_call))
        .route("/api/calls/{id}/recording", get(recording))
        .route("/api/stats", get(stats))
        .route("/api/no-matches", get(no_matches))
        .merge(crate::campaigns_api::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .merge(protected)
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "switchboard",
        description = "The call log (every call the runtime answered or placed: transcript, timings, outcome \
                       and recording), outbound campaigns and the do-not-call list."
    ),
    paths(list_calls, get_call, delete_call, recording, stats, no_matches),
    components(schemas(
        CallPage, CallSummary, CallDetail, Turn, Event, StageTimings, Speaker, Direction, CallStatus,
        Stats, DayCount, OutcomeCount, LatencyStats, NoMatches, NoMatch, ErrorBody
    )),
    modifiers(&CampaignRoutes, &BearerAuth),
    security(("api_key" = []))
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The document, with the flows this runtime can run a campaign with.
async fn openapi(State(api): State<ApiState>) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    crate::campaigns_api::list_outbound_flows(&mut doc, &api.flows);
    Json(doc)
}

/// An error answer: a stable code and a sentence for people.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `bad_request`, `not_found`, `conflict`, `too_large`, `internal`.
    pub error: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("a valid API key is required: Authorization: Bearer <key>")]
    Unauthorized,
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(&'static str),
    /// The request is valid but the resource's state does not allow it now.
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is too large")]
    TooLarge,
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor => ApiError::BadInput("cursor: not one this API gave out".into()),
            StoreError::NotFound { .. } => ApiError::NotFound(NO_CALL),
            other => {
                tracing::error!("store: {other}");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::BadInput(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let body = ErrorBody {
            error: code.into(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

async fn require_key(State(api): State<ApiState>, request: Request, next: Next) -> Response {
    let secret = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let Some(secret) = secret else {
        return ApiError::Unauthorized.into_response();
    };
    match api.store.verify_api_key(secret).await {
        Ok(Some(_)) => next.run(request).await,
        Ok(None) => ApiError::Unauthorized.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

const NO_CALL: &str = "no such call";

/// `Query` whose rejection is our JSON error.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::BadInput(e.body_text()))
    }
}

/// `Path` whose rejection is our JSON error.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e| ApiError::BadInput(e.body_text()))
    }
}

/// `Json` whose rejection is our JSON error.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e: JsonRejection| body_rejection(e.status(), e.body_text()))
    }
}

/// A body that could not be read: too large (413), or not what the route takes (400).
pub(crate) fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge
    } else {
        ApiError::BadInput(text)
    }
}

/// A `limit` query parameter: `default` when absent, else within 1..=`max`.
pub(crate) fn page_limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::BadInput(format!("limit: between 1 and {max}")))
    }
}

/// A time in a query: RFC 3339 (`2026-11-24T09:00:00Z`) or Unix milliseconds.
fn parse_time(name: &str, value: &str) -> Result<Millis, ApiError> {
    switchboard_store::parse_time(value).ok_or_else(|| {
        ApiError::BadInput(format!(
            "{name}: `{value}` is neither an RFC 3339 time nor Unix milliseconds"
        ))
    })
}

fn parse_range(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<Millis>, Option<Millis>), ApiError> {
    Ok((
        since.map(|s| parse_time("since", s)).transpose()?,
        until.map(|u| parse_time("until", u)).transpose()?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CallQuery {
    direction: Option<Direction>,
    status: Option<CallStatus>,
    /// The flow's outcome: resolved, transferred, message_taken, confirmed, rescheduled, cancelled,
    /// opted_out, wrong_person, completed, no_answer, abandoned, failed.
    outcome: Option<String>,
    /// Either party's number, exactly (E.164).
    number: Option<String>,
    flow: Option<String>,
    /// Calls started at or after: RFC 3339 or Unix milliseconds.
    #[param(schema_with = time_param)]
    since: Option<String>,
    /// Calls started before: RFC 3339 or Unix milliseconds.
    #[param(schema_with = time_param)]
    until: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,15}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    cursor: Option<String>,
    /// Calls per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// Calls, newest first, one page at a time.
#[utoipa::path(
    get,
    path = "/api/calls",
    tag = "calls",
    params(CallQuery),
    responses(
        (status = 200, description = "A page of calls", body = CallPage),
        (status = 400, description = "A filter or the cursor is not valid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
    )
)]
async fn list_calls(
    State(api): State<ApiState>,
    ApiQuery(q): ApiQuery<CallQuery>,
) -> Result<Json<CallPage>, ApiError> {
    let limit = page_limit(q.limit, 50, 200)?;
    let (since, until) = parse_range(q.since.as_deref(), q.until.as_deref())?;
    let filter = CallFilter {
        direction: q.direction,
        status: q.status,
        outcome: q.outcome,
        number: q.number,
        flow: q.flow,
        since,
        until,
    };
    Ok(Json(
        api.store.list_calls(&filter, q.cursor.as_deref(), limit).await?,
    ))
}

/// One call with its transcript, timings and events.
#[utoipa::path(
    get,
    path = "/api/calls/{id}",
    tag = "calls",
    params(("id" = String, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The call", body = CallDetail),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such call", body = ErrorBody),
    )
)]
async fn get_call(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CallDetail>, ApiError> {
    api.store
        .get_call(&id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound(NO_CALL))
}

/// Deletes a call, its transcript and its recording.
#[utoipa::path(
    delete,
    path = "/api/calls/{id}",
    tag = "calls",
    params(("id" = String, Path, description = "The call's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such call", body = ErrorBody),
    )
)]
async fn delete_call(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let call = api
        .store
        .delete_call(&id)
        .await?
        .ok_or(ApiError::NotFound(NO_CALL))?;
    remove_recording(api.recordings_dir.as_deref(), &call).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a call's recording file, if it is one of ours.
pub(crate) async fn remove_recording(dir: Option<&std::path::Path>, call: &CallSummary) {
    let Some(path) = recording_file(dir, call) else {
        return;
    };
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("deleting the recording {}: {e}", path.display()),
    }
}

/// The recording's path, only when it is a plain file name inside the recordings directory: a row
/// can never make the server read (or delete) anything else.
fn recording_file(dir: Option<&std::path::Path>, call: &CallSummary) -> Option<PathBuf> {
    let dir = dir?;
    let stored = std::path::Path::new(call.recording_path.as_deref()?);
    let name = stored.file_name()?;
    let path = dir.join(name);
    (stored.parent() == Some(dir) || stored.parent() == Some(std::path::Path::new(""))).then_some(path)
}

/// The call's recording: stereo 8 kHz WAV, caller left, bot right. Supports `Range`.
#[utoipa::path(
    get,
    path = "/api/calls/{id}/recording",
    tag = "calls",
    params(("id" = String, Path, description = "The call's id")),
    responses(
        (status = 200, description = "The recording", content_type = "audio/wav", body = Vec<u8>),
        (status = 206, description = "Part of the recording (Range)", content_type = "audio/wav", body = Vec<u8>),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such call, or it has no recording", body = ErrorBody),
        (status = 416, description = "The range is outside the file"),
    )
)]
async fn recording(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let call = api
        .store
        .get_call(&id)
        .await?
        .ok_or(ApiError::NotFound(NO_CALL))?;
    let path =
        recording_file(api.recordings_dir.as_deref(), &call.call).ok_or(ApiError::NotFound(NO_CALL))?;
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Err(ApiError::NotFound(NO_CALL));
    }
    let response = tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await
        .map_err(|e| {
            tracing::error!("serving {}: {e}", path.display());
            ApiError::Internal
        })?;
    let mut response = response.map(axum::body::Body::new);
    if response.status().is_success() {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// Calls started at or after: RFC 3339 or Unix milliseconds.
    #[param(schema_with = time_param)]
    since: Option<String>,
    /// Calls started before: RFC 3339 or Unix milliseconds.
    #[param(schema_with = time_param)]
    until: Option<String>,
}

/// A time parameter's schema: an RFC 3339 date-time or Unix milliseconds, so generated clients and
/// fuzzers know an empty or free-form string is not one.
fn time_param() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .build();
    utoipa::openapi::schema::Schema::OneOf(one_of)
}

/// Calls per day, outcomes, average handle time, containment rate and latency percentiles.
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "stats",
    params(StatsQuery),
    responses(
        (status = 200, description = "Statistics over the range", body = Stats),
        (status = 400, description = "A time is not valid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
    )
)]
async fn stats(
    State(api): State<ApiState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    let (since, until) = parse_range(q.since.as_deref(), q.until.as_deref())?;
    Ok(Json(api.store.stats(since, until).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct NoMatchQuery {
    /// Only this flow's.
    flow: Option<String>,
    /// Calls started at or after: RFC 3339 or Unix milliseconds.
    #[param(schema_with = time_param)]
    since: Option<String>,
    /// Calls started before: RFC 3339 or Unix milliseconds.
    #[param(schema_with = time_param)]
    until: Option<String>,
    /// Groups to return (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// What callers said that a flow could not place, grouped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NoMatches {
    pub no_matches: Vec<NoMatch>,
}

/// What callers said at a step that no phrase (nor the model, where a flow asks it) understood: the
/// same words at the same step counted together, most frequent first. These are the phrases to add to
/// the flow's options.
#[utoipa::path(
    get,
    path = "/api/no-matches",
    tag = "stats",
    params(NoMatchQuery),
    responses(
        (status = 200, description = "No-matches, most frequent first", body = NoMatches),
        (status = 400, description = "A time or the limit is not valid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
    )
)]
async fn no_matches(
    State(api): State<ApiState>,
    ApiQuery(q): ApiQuery<NoMatchQuery>,
) -> Result<Json<NoMatches>, ApiError> {
    let limit = page_limit(q.limit, 50, 500)?;
    let (since, until) = parse_range(q.since.as_deref(), q.until.as_deref())?;
    let no_matches = api
        .store
        .no_matches(q.flow.as_deref(), since, until, limit as usize)
        .await?;
    Ok(Json(NoMatches { no_matches }))
}
