//! Outbound campaigns and the do-not-call list in the REST API: create a campaign, upload its
//! contacts (CSV), start, pause, resume and cancel it, and read its progress, results and the
//! scheduler's decisions; add, list and remove numbers on the do-not-call list.
//!
//! These handlers only change rows. A campaign set `running` is picked up by the scheduler
//! supervisor, which polls the store, so the API never holds a scheduler and a campaign started
//! through the API, the CLI or another runtime instance behaves the same.
//!
//! Everything the OpenAPI document calls valid is accepted, and everything else gets a 400:
//! numbers are E.164 as `+` and digits only (no spaces to tidy away), windows `HH:MM-HH:MM`
//! within 08:00–21:00, and the flow one of the outbound flows this runtime loaded, which the
//! served document lists ([`list_outbound_flows`]). What JSON Schema cannot say (a window that
//! ends before it starts, reversed dates, a CSV without a `phone` column) is still a 400 with
//! the reason.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use switchboard_campaign::export::write_results_csv;
use switchboard_campaign::settings::{
    Day, OnVoicemail, RetryMinutes, SettingsSpec, check_flow, new_campaign,
};
use switchboard_campaign::{
    Action, CampaignError, ImportReport, PhoneNumber, RejectedRow, change_status, import_parsed, importable,
    parse_contacts,
};
use switchboard_flow::Direction;
use switchboard_store::{
    Attempt, AttemptStatus, Campaign, CampaignStatus, Contact, ContactOutcomeCount, ContactResult,
    ContactState, DecisionKind, DncEntry, Millis, Progress, SchedulerDecision,
};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::api::{ApiError, ApiJson, ApiPath, ApiQuery, ApiState, ErrorBody, body_rejection};

/// Largest contact list accepted in one upload: about 100 000 contacts.
pub const MAX_CONTACTS_BYTES: usize = 16 * 1024 * 1024;

const NO_CAMPAIGN: &str = "no such campaign";
const NOT_LISTED: &str = "that number is not on the do-not-call list";

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/campaigns", get(list_campaigns).post(create_campaign))
        .route("/api/campaigns/{id}", get(get_campaign))
        .route(
            "/api/campaigns/{id}/contacts",
            post(import_contacts).layer(DefaultBodyLimit::max(MAX_CONTACTS_BYTES)),
        )
        .route("/api/campaigns/{id}/start", post(start_campaign))
        .route("/api/campaigns/{id}/pause", post(pause_campaign))
        .route("/api/campaigns/{id}/resume", post(resume_campaign))
        .route("/api/campaigns/{id}/cancel", post(cancel_campaign))
        .route("/api/campaigns/{id}/results", get(campaign_results))
        .route("/api/campaigns/{id}/decisions", get(campaign_decisions))
        .route("/api/dnc", get(list_dnc).post(add_dnc))
        .route("/api/dnc/{phone}", delete(remove_dnc))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        create_campaign,
        list_campaigns,
        get_campaign,
        import_contacts,
        start_campaign,
        pause_campaign,
        resume_campaign,
        cancel_campaign,
        campaign_results,
        campaign_decisions,
        list_dnc,
        add_dnc,
        remove_dnc
    ),
    components(schemas(
        NewCampaignBody,
        CampaignView,
        CampaignList,
        CampaignDetail,
        SettingsSpec,
        RetryMinutes,
        Day,
        OnVoicemail,
        CampaignStatus,
        Progress,
        ContactOutcomeCount,
        ImportReport,
        RejectedRow,
        ResultsBody,
        ResultsFormat,
        ContactResult,
        Contact,
        ContactState,
        Attempt,
        AttemptStatus,
        DecisionList,
        SchedulerDecision,
        DecisionKind,
        DncList,
        DncEntry,
        NewDncEntry
    ))
)]
struct CampaignsDoc;

/// Adds the campaign routes to [`crate::ApiDoc`].
pub(crate) struct CampaignRoutes;

impl Modify for CampaignRoutes {
    fn modify(&self, openapi: &mut Document) {
        openapi.merge(CampaignsDoc::openapi());
    }
}

/// Writes the outbound flows this runtime loaded into the document as the values `flow` may
/// take, so clients (and fuzzers) know which names a campaign accepts.
pub(crate) fn list_outbound_flows(doc: &mut Document, flows: &BTreeMap<String, Direction>) {
    let outbound: Vec<serde_json::Value> = flows
        .iter()
        .filter(|(_, d)| **d == Direction::Outbound)
        .map(|(name, _)| serde_json::Value::String(name.clone()))
        .collect();
    if outbound.is_empty() {
        return;
    }
    let flow = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("NewCampaignBody"))
        .and_then(|s| match s {
            RefOr::T(Schema::Object(o)) => o.properties.get_mut("flow"),
            _ => None,
        });
    if let Some(RefOr::T(Schema::Object(flow))) = flow {
        flow.enum_values = Some(outbound);
    }
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::Store(e) => e.into(),
            CampaignError::UnknownCampaign { .. } => ApiError::NotFound(NO_CAMPAIGN),
            CampaignError::Import(e) => ApiError::BadInput(e.to_string()),
            e @ CampaignError::NotAllowed { .. } => ApiError::Conflict(e.to_string()),
        }
    }
}

/// A campaign to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewCampaignBody {
    /// For people: what the campaign is for (not only spaces; no NUL characters).
    #[schema(pattern = "^[^\\u0000]*\\S[^\\u0000]*$", example = "Appointment reminders")]
    name: String,
    /// One of the runtime's outbound flows.
    #[schema(example = "outbound_appointment")]
    flow: String,
    /// The number the calls come from (E.164).
    #[schema(pattern = "^\\+[1-9][0-9]{7,14}$", example = "+15550100199")]
    caller_id: String,
    /// The calling rules; each one left out takes its default.
    #[serde(default)]
    settings: SettingsSpec,
}

/// A campaign and its rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub flow: String,
    pub caller_id: String,
    pub status: CampaignStatus,
    pub settings: SettingsSpec,
    /// Unix milliseconds.
    pub created_at: Millis,
}

impl From<Campaign> for CampaignView {
    fn from(c: Campaign) -> Self {
        CampaignView {
            settings: SettingsSpec::from(&c.settings),
            id: c.id,
            name: c.name,
            flow: c.flow,
            caller_id: c.caller_id,
            status: c.status,
            created_at: c.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    /// Newest first.
    pub campaigns: Vec<CampaignView>,
}

/// A campaign with its contacts counted by state and outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignDetail {
    pub campaign: CampaignView,
    pub progress: Progress,
}

/// Every contact of a campaign, in import order, with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultsBody {
    pub contacts: Vec<ContactResult>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionList {
    /// Newest first.
    pub decisions: Vec<SchedulerDecision>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DncList {
    /// By number.
    pub entries: Vec<DncEntry>,
}

/// A number to put on the do-not-call list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewDncEntry {
    /// E.164.
    #[schema(pattern = "^\\+[1-9][0-9]{7,14}$", example = "+15550100123")]
    phone: String,
    /// Why, for people reading the list (no NUL characters).
    #[schema(pattern = "^[^\\u0000]*$")]
    reason: Option<String>,
}

/// A campaign id from the path. Ids are UUIDs, so anything else is answered 404 without asking
/// the database (which, on PostgreSQL, would fail on a NUL character instead of finding nothing).
struct CampaignPath(String);

impl<S: Send + Sync> FromRequestParts<S> for CampaignPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath(id) = ApiPath::<String>::from_request_parts(parts, state).await?;
        let uuid_shaped = id.len() == 36
            && id.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
        if uuid_shaped {
            Ok(CampaignPath(id))
        } else {
            Err(ApiError::NotFound(NO_CAMPAIGN))
        }
    }
}

async fn find(api: &ApiState, id: &str) -> Result<Campaign, ApiError> {
    api.store
        .get_campaign(id)
        .await?
        .ok_or(ApiError::NotFound(NO_CAMPAIGN))
}

/// `value` as an E.164 number, written exactly so (the document's pattern): the API does not
/// guess what a number with spaces or a missing `+` meant.
fn e164(field: &str, value: &str) -> Result<PhoneNumber, ApiError> {
    match PhoneNumber::parse(value) {
        Ok(p) if p.as_str() == value => Ok(p),
        Ok(p) => Err(ApiError::BadInput(format!(
            "{field}: write the number as + and digits only: {p}, not `{value}`"
        ))),
        Err(e) => Err(ApiError::BadInput(format!("{field}: {e}"))),
    }
}

/// Creates a campaign in `draft`: add contacts, then start it.
#[utoipa::path(
    post,
    path = "/api/campaigns",
    tag = "campaigns",
    request_body = NewCampaignBody,
    responses(
        (status = 201, description = "Created (draft)", body = CampaignView),
        (status = 400, description = "A field breaks a rule: the message says which", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
async fn create_campaign(
    State(api): State<ApiState>,
    ApiJson(body): ApiJson<NewCampaignBody>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let bad = |e: switchboard_campaign::settings::SpecError| ApiError::BadInput(e.to_string());
    let flows = api
        .flows
        .iter()
        .map(|(name, d)| (name.as_str(), *d == Direction::Outbound));
    check_flow(&body.flow, flows).map_err(bad)?;
    e164("caller_id", &body.caller_id)?;
    let new = new_campaign(&body.name, &body.flow, &body.caller_id, &body.settings).map_err(bad)?;
    let campaign = api.store.create_campaign(&new).await?;
    Ok((StatusCode::CREATED, Json(campaign.into())))
}

/// Every campaign, newest first.
#[utoipa::path(
    get,
    path = "/api/campaigns",
    tag = "campaigns",
    responses(
        (status = 200, description = "The campaigns", body = CampaignList),
        (status = 401, description = "No valid API key", body = ErrorBody),
    )
)]
async fn list_campaigns(State(api): State<ApiState>) -> Result<Json<CampaignList>, ApiError> {
    let campaigns = api.store.list_campaigns().await?;
    Ok(Json(CampaignList {
        campaigns: campaigns.into_iter().map(CampaignView::from).collect(),
    }))
}

/// One campaign with its progress: contacts pending, in progress and done, attempts made, and
/// the final outcomes.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses(
        (status = 200, description = "The campaign", body = CampaignDetail),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
async fn get_campaign(
    State(api): State<ApiState>,
    CampaignPath(id): CampaignPath,
) -> Result<Json<CampaignDetail>, ApiError> {
    let campaign = find(&api, &id).await?;
    let progress = api.store.progress(&id).await?;
    Ok(Json(CampaignDetail {
        campaign: campaign.into(),
        progress,
    }))
}

/// Adds contacts from a CSV list: columns `phone` (E.164) and `consent` (yes/no) are required;
/// `name`, `consent_source`, `time_zone` (IANA), `state` or `area` are read, every other column
/// becomes a field the flow can use. Rows that cannot be used are reported with their line and
/// reason; the rest are imported in one transaction.
#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/contacts",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    request_body(
        content = String,
        content_type = "text/csv",
        description = "The contact list, with a header line (at most 16 MiB)"
    ),
    responses(
        (status = 200, description = "What was imported and what was not", body = ImportReport),
        (status = 400, description = "The list has no header or lacks a required column", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "The campaign is cancelled or completed", body = ErrorBody),
        (status = 413, description = "The list is larger than 16 MiB", body = ErrorBody),
    )
)]
async fn import_contacts(
    State(api): State<ApiState>,
    CampaignPath(id): CampaignPath,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportReport>, ApiError> {
    let body = body.map_err(|e| body_rejection(e.status(), e.body_text()))?;
    importable(&api.store, &id).await?;
    // Up to 16 MiB of CSV with a time zone lookup per row: not work for an async worker.
    let parsed = tokio::task::spawn_blocking(move || parse_contacts(&body[..]))
        .await
        .map_err(|e| {
            tracing::error!("parsing a contact list: {e}");
            ApiError::Internal
        })?
        .map_err(CampaignError::from)?;
    Ok(Json(import_parsed(&api.store, &id, parsed).await?))
}

/// The four status changes differ only in their action and their words.
macro_rules! status_route {
    ($handler:ident, $action:expr, $path:literal, $summary:literal, $conflict:literal) => {
        #[doc = $summary]
        #[utoipa::path(
                    post,
                    path = $path,
                    tag = "campaigns",
                    params(("id" = String, Path, description = "The campaign's id")),
                    responses(
                        (status = 200, description = "The campaign in its new status", body = CampaignView),
                        (status = 401, description = "No valid API key", body = ErrorBody),
                        (status = 404, description = "No such campaign", body = ErrorBody),
                        (status = 409, description = $conflict, body = ErrorBody),
                    )
                )]
        async fn $handler(
            State(api): State<ApiState>,
            CampaignPath(id): CampaignPath,
        ) -> Result<Json<CampaignView>, ApiError> {
            Ok(Json(change_status(&api.store, &id, $action).await?.into()))
        }
    };
}

status_route!(
    start_campaign,
    Action::Start,
    "/api/campaigns/{id}/start",
    "Starts a draft campaign: the scheduler begins calling its contacts within the rules.",
    "The campaign is not a draft (the message names its status)"
);
status_route!(
    pause_campaign,
    Action::Pause,
    "/api/campaigns/{id}/pause",
    "Pauses a running campaign: no new calls; calls on the line finish.",
    "The campaign is not running (the message names its status)"
);
status_route!(
    resume_campaign,
    Action::Resume,
    "/api/campaigns/{id}/resume",
    "Resumes a paused campaign.",
    "The campaign is not paused (the message names its status)"
);
status_route!(
    cancel_campaign,
    Action::Cancel,
    "/api/campaigns/{id}/cancel",
    "Cancels a campaign for good: nobody more is called; calls on the line finish.",
    "The campaign is already cancelled or completed"
);

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ResultsFormat {
    Json,
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ResultsQuery {
    /// `csv` for one row per contact (also chosen by `Accept: text/csv`); default JSON.
    format: Option<ResultsFormat>,
}

/// Each contact's attempts with their times and statuses, the final outcome and the slots the
/// flow collected: JSON, or CSV with `?format=csv` or `Accept: text/csv`.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/results",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id"), ResultsQuery),
    responses(
        (status = 200, description = "The results", content(
            (ResultsBody = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "The format is not json or csv", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
async fn campaign_results(
    State(api): State<ApiState>,
    CampaignPath(id): CampaignPath,
    ApiQuery(q): ApiQuery<ResultsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wants_csv = match q.format {
        Some(format) => matches!(format, ResultsFormat::Csv),
        None => headers
            .get(header::ACCEPT)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv")),
    };
    find(&api, &id).await?;
    let contacts = api.store.results(&id).await?;
    if !wants_csv {
        return Ok(Json(ResultsBody { contacts }).into_response());
    }
    let mut csv = Vec::new();
    write_results_csv(&contacts, &mut csv).map_err(|e| {
        tracing::error!("writing campaign results: {e}");
        ApiError::Internal
    })?;
    let mut response = csv.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DecisionsQuery {
    /// Decisions to return, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The scheduler's decisions, newest first: whom it dialed or skipped, when, and by which rule.
#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/decisions",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id"), DecisionsQuery),
    responses(
        (status = 200, description = "The decisions", body = DecisionList),
        (status = 400, description = "The limit is not between 1 and 1000", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    )
)]
async fn campaign_decisions(
    State(api): State<ApiState>,
    CampaignPath(id): CampaignPath,
    ApiQuery(q): ApiQuery<DecisionsQuery>,
) -> Result<Json<DecisionList>, ApiError> {
    let limit = crate::api::page_limit(q.limit, 100, 1000)?;
    find(&api, &id).await?;
    let mut decisions = api.store.decisions(&id, None).await?;
    decisions.reverse();
    decisions.truncate(limit as usize);
    Ok(Json(DecisionList { decisions }))
}

/// The do-not-call list: numbers no campaign ever calls.
#[utoipa::path(
    get,
    path = "/api/dnc",
    tag = "do-not-call",
    responses(
        (status = 200, description = "The list", body = DncList),
        (status = 401, description = "No valid API key", body = ErrorBody),
    )
)]
async fn list_dnc(State(api): State<ApiState>) -> Result<Json<DncList>, ApiError> {
    Ok(Json(DncList {
        entries: api.store.list_dnc().await?,
    }))
}

/// Puts a number on the do-not-call list. Takes effect for every campaign before its next dial.
#[utoipa::path(
    post,
    path = "/api/dnc",
    tag = "do-not-call",
    request_body = NewDncEntry,
    responses(
        (status = 201, description = "Added", body = DncEntry),
        (status = 200, description = "Already on the list (the first entry is kept)", body = DncEntry),
        (status = 400, description = "Not an E.164 number", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 409, description = "Taken off the list while being added: try again", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
    )
)]
async fn add_dnc(
    State(api): State<ApiState>,
    ApiJson(body): ApiJson<NewDncEntry>,
) -> Result<(StatusCode, Json<DncEntry>), ApiError> {
    let phone = e164("phone", &body.phone)?;
    if body.reason.as_deref().is_some_and(|r| r.contains('\0')) {
        return Err(ApiError::BadInput("reason: no NUL characters".into()));
    }
    let now = jiff::Timestamp::now().as_millisecond();
    const SOURCE: &str = "api";
    let added = api
        .store
        .add_dnc(phone.as_str(), body.reason.as_deref(), Some(SOURCE), now)
        .await?;
    if added {
        let entry = DncEntry {
            phone: phone.as_str().to_string(),
            reason: body.reason,
            source: Some(SOURCE.into()),
            added_at: now,
        };
        return Ok((StatusCode::CREATED, Json(entry)));
    }
    // Already listed (rare): the entry kept is the first one, so read it back.
    let entry = api
        .store
        .list_dnc()
        .await?
        .into_iter()
        .find(|e| e.phone == phone.as_str())
        .ok_or_else(|| ApiError::Conflict(format!("{phone} was taken off the list meanwhile: try again")))?;
    Ok((StatusCode::OK, Json(entry)))
}

/// Takes a number off the do-not-call list (write `+` as `%2B` in the path).
#[utoipa::path(
    delete,
    path = "/api/dnc/{phone}",
    tag = "do-not-call",
    params((
        "phone" = String,
        Path,
        description = "The number (E.164)",
        pattern = "^\\+[1-9][0-9]{7,14}$"
    )),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not an E.164 number", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "The number is not on the list", body = ErrorBody),
    )
)]
async fn remove_dnc(
    State(api): State<ApiState>,
    ApiPath(phone): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let phone = e164("phone", &phone)?;
    if api.store.remove_dnc(phone.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(NOT_LISTED))
    }
}
