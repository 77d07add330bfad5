//! The HTTP side of switchboard: Twilio-compatible voice webhooks, status callbacks and the
//! bidirectional media stream, wired to one call pipeline task per call.
//!
//! - [`app`] builds the router from an [`AppState`], so tests drive it with `oneshot` or bind it to
//!   port 0; [`serve`] runs it until a shutdown future completes, then lets calls in progress end.
//! - Every webhook and the WebSocket upgrade must carry a valid `X-Twilio-Signature`: without one the
//!   answer is 403 and nothing changes. The URL that was signed is rebuilt from the configured public
//!   URL (or, without one, the `Host` header).
//! - This is the only crate that turns errors into HTTP statuses.
//! - The state is generic over the engines so router tests run with fakes; the binary plugs in the
//!   real models.

mod api;
mod calllog;
mod campaigns_api;
pub mod dialer;
mod media;
mod metrics;
mod outbound;
mod web;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use switchboard_call::{CallReport, CallSettings, Engines};
use switchboard_campaign::record_call_result;
use switchboard_core::llm::LanguageModel;
use switchboard_core::stt::SpeechToText;
use switchboard_core::tts::TextToSpeech;
use switchboard_flow::Flow;
use switchboard_store::{AttemptResult, AttemptStatus, Store};
use switchboard_telephony::AuthToken;
use switchboard_telephony::rest::{RestClient, RestConfig};
use switchboard_telephony::signature;
use switchboard_telephony::twiml::{Response as Twiml, Stream};
use switchboard_telephony::webhook::CallStatus as WireStatus;
use switchboard_telephony::webhook::{FormParams, StatusCallback, VoiceWebhook};
use tokio::sync::Semaphore;

/// Everything the server is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The URL the provider reaches this server at (`https://voice.example.com`). Signatures are
    /// computed over it; without it, `http://` + the request's `Host` header is used.
    pub public_url: Option<String>,
    /// The provider account's auth token: signs webhooks and authenticates REST calls.
    pub auth_token: AuthToken,
    /// The provider account, for REST call control (transfer, hang-up). Without it, the stream is
    /// closed instead, which ends the call on the provider's side.
    pub account_sid: Option<String>,
    pub rest_base_url: Option<String>,
    /// Flows by name.
    pub flows: BTreeMap<String, Arc<Flow>>,
    /// Which flow answers which called number (E.164); others get `default_flow`.
    pub numbers: BTreeMap<String, String>,
    pub default_flow: String,
    pub call: CallSettings,
    /// Where each call's stereo recording is written (`<CallSid>.wav`); `None`: not recorded.
    pub recordings_dir: Option<PathBuf>,
    /// Calls handled at once; more get a polite "all lines are busy".
    pub max_calls: usize,
    /// A media stream that sends no `start` within this time is closed.
    pub start_timeout: Duration,
    /// A call whose media stream sends nothing for this long is over: the provider sends a frame
    /// every 20 ms, silence included, so a quiet stream is a dead connection.
    pub media_idle_timeout: Duration,
    /// A connection must send a request's headers within this time of opening, or of finishing its
    /// previous request; a client that trickles them (slowloris) or idles is disconnected. Bodies
    /// get as long again.
    pub http_read_timeout: Duration,
    /// Write callers' numbers, what they said and the slots collected into the log at info level.
    /// Off by default: logs are shipped and kept in places the call log's access control does not
    /// reach. The call log (API, web page) always has them.
    pub log_pii: bool,
    /// This runtime's name in the call log, unique among the runtimes sharing a database: at
    /// start-up it closes the calls its previous process left open, and only those.
    pub runtime: String,
}

/// How often a runtime tells the call log its calls are alive ([`keep_calls_alive`]).
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(20);
/// Silence after which any runtime closes another's open calls as interrupted: the runtime died and
/// did not come back under its name. Several keep-alives long, so a slow database is not a death.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(120);

/// Tells the call log every [`KEEP_ALIVE_EVERY`] that this runtime's calls are alive, and closes the
/// calls of runtimes silent for [`ABANDONED_AFTER`]; runs until the task is dropped. A failed round
/// (the database away) is logged and the next one tries again.
pub async fn keep_calls_alive(store: Store, runtime: String) {
    let mut every = tokio::time::interval(KEEP_ALIVE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = jiff::Timestamp::now().as_millisecond();
        if let Err(e) = store.keep_calls_alive(&runtime, now).await {
            tracing::warn!("call log: keeping this runtime's calls alive failed: {e}");
            continue;
        }
        let silent_since = now - i64::try_from(ABANDONED_AFTER.as_millis()).unwrap_or(i64::MAX);
        match store.close_abandoned_calls(silent_since, now).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                calls = n,
                "closed calls as interrupted whose runtime stopped answering for them"
            ),
            Err(e) => tracing::warn!("call log: closing abandoned calls failed: {e}"),
        }
    }
}

/// Media streams open at once, calls and handshakes still waiting for `start` together: room for
/// every call plus as many stragglers again, beyond which an upgrade gets 503.
fn max_streams(max_calls: usize) -> usize {
    max_calls * 2 + 2
}

/// Media stream messages a second, sustained: the provider sends 50 (one per 20 ms frame) plus a
/// few marks and keys.
pub const MEDIA_MESSAGES_PER_SECOND: u32 = 150;
/// Messages that may arrive at once after a network hiccup (10 s of audio).
pub const MEDIA_MESSAGE_BURST: u32 = 500;

/// What the server knows about a call from the provider's status callbacks.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStatusInfo {
    pub status: String,
    pub sequence_number: Option<u32>,
}

/// Shared by all handlers.
#[derive(Debug)]
pub struct AppState<S, L, T> {
    pub config: ServerConfig,
    pub engines: Engines<S, L, T>,
    /// Bounds the calls in progress; a permit moves into each call's task.
    calls: Arc<Semaphore>,
    /// Bounds the media stream connections (see [`max_streams`]).
    streams: Arc<Semaphore>,
    rest: Option<RestClient>,
    /// Status by CallSid, from status callbacks (reordered by sequence number).
    statuses: Mutex<HashMap<String, CallStatusInfo>>,
    /// The last few finished calls' full reports, newest last, for the in-process simulator (which
    /// wants the exact durations); everything else reads the call log.
    finished: Mutex<VecDeque<(String, CallReport)>>,
    store: Store,
    /// Calls' log writes, which outlive their calls while the database is away; shutdown waits
    /// for them (up to [`LOG_DRAIN`]).
    log_writes: tokio_util::task::TaskTracker,
    metrics: metrics::Metrics,
}

/// How long shutdown waits for calls' log writes still being retried.
pub const LOG_DRAIN: Duration = Duration::from_secs(30);

/// Reports kept in memory; the call log has them all.
const FINISHED_KEPT: usize = 64;

impl<S, L, T> AppState<S, L, T> {
    pub fn new(config: ServerConfig, engines: Engines<S, L, T>, store: Store) -> Result<Self, String> {
        let rest = match &config.account_sid {
            Some(sid) => {
                let mut rc = RestConfig::new(sid.clone(), config.auth_token.clone());
                if let Some(base) = &config.rest_base_url {
                    rc.base_url = base.clone();
                }
                Some(RestClient::new(rc).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        if !config.flows.contains_key(&config.default_flow) {
            return Err(format!(
                "the default flow `{}` is not loaded",
                config.default_flow
            ));
        }
        Ok(Self {
            calls: Arc::new(Semaphore::new(config.max_calls)),
            streams: Arc::new(Semaphore::new(max_streams(config.max_calls))),
            config,
            engines,
            rest,
            statuses: Mutex::new(HashMap::new()),
            finished: Mutex::new(VecDeque::new()),
            store,
            log_writes: tokio_util::task::TaskTracker::new(),
            metrics: metrics::Metrics::new(),
        })
    }

    /// Reports of the calls finished so far, oldest first.
    pub fn finished_calls(&self) -> Vec<(String, CallReport)> {
        self.finished
            .lock()
            .map(|f| f.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn call_status(&self, call_sid: &str) -> Option<CallStatusInfo> {
        self.statuses.lock().ok()?.get(call_sid).cloned()
    }

    /// Waits until every finished call's log is written (or given up on): for tests and tools
    /// that read the log right after a call.
    pub async fn log_settled(&self) {
        while !self.log_writes.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.config.max_calls - self.calls.available_permits()
    }
}

/// The router. Generic over the engines so that tests can run it with fakes.
pub fn app<S, L, T>(state: Arc<AppState<S, L, T>>) -> Router
where
    S: SpeechToText + 'static,
    L: LanguageModel + 'static,
    T: TextToSpeech + 'static,
{
    let api = api::ApiState {
        store: state.store.clone(),
        recordings_dir: state.config.recordings_dir.clone(),
        flows: Arc::new(
            state
                .config
                .flows
                .iter()
                .map(|(name, flow)| (name.clone(), flow.direction()))
                .collect(),
        ),
    };
    Router::new()
        .route("/twilio/voice", post(voice::<S, L, T>))
        .route("/twilio/status", post(status::<S, L, T>))
        .route("/twilio/media", get(media_upgrade::<S, L, T>))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready::<S, L, T>))
        .route("/metrics", get(metrics_text::<S, L, T>))
        .merge(api::routes(api))
        .merge(web::routes())
        // Webhook forms are a few hundred bytes and API bodies small JSON: anything big is abuse.
        // The one large upload, a campaign's contact list, sets its own limit on its route.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Largest request body accepted (413 beyond it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest media stream message accepted: a 20 ms media frame is about 300 bytes of JSON, a `start`
/// with custom parameters a few kilobytes.
pub const MAX_WS_MESSAGE_BYTES: usize = 64 * 1024;

/// Prometheus text format. Unauthenticated like most scrape targets: it holds counts and timings,
/// never a number or a word of a call.
async fn metrics_text<S, L, T>(State(state): State<Arc<AppState<S, L, T>>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// How long readiness waits for the database's answer.
const READY_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness for a load balancer or orchestrator, unauthenticated like `/health` and holding no
/// number or word of a call. 503 when a call would fail: an engine is unavailable (a model that
/// could not be reloaded), or no line is free. The database is reported but does not make the
/// runtime unready: calls go on while it is away and their log writes wait and retry
/// (`log_writes_pending`), so sending calls elsewhere would not help them.
async fn ready<S, L, T>(State(state): State<Arc<AppState<S, L, T>>>) -> Response
where
    S: SpeechToText + 'static,
    L: LanguageModel + 'static,
    T: TextToSpeech + 'static,
{
    let up = |ok: bool| if ok { "ok" } else { "unavailable" };
    let stt = state.engines.stt.is_available();
    let llm = state.engines.llm.is_available();
    let database = match tokio::time::timeout(READY_DB_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!("readiness: the database does not answer: {e}");
            "unavailable"
        }
        Err(_) => "timeout",
    };
    let lines_free = state.calls.available_permits();
    let is_ready = stt && llm && lines_free > 0;
    let body = serde_json::json!({
        "status": if is_ready { "ready" } else { "unavailable" },
        "speech_to_text": up(stt),
        "language_model": up(llm),
        "database": database,
        "log_writes_pending": state.log_writes.len(),
        "calls_in_progress": state.config.max_calls - lines_free,
        "max_calls": state.config.max_calls,
    });
    let status = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Runs the server on `listener` until `shutdown` completes, then waits for calls in progress.
pub async fn serve<S, L, T>(
    listener: tokio::net::TcpListener,
    state: Arc<AppState<S, L, T>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: SpeechToText + 'static,
    L: LanguageModel + 'static,
    T: TextToSpeech + 'static,
{
    serve_http(
        listener,
        app(state.clone()),
        state.config.http_read_timeout,
        shutdown,
    )
    .await;
    // Calls keep their permits until they end; wait for all of them.
    let _all = state.calls.acquire_many(state.config.max_calls as u32).await;
    state.log_writes.close();
    if tokio::time::timeout(LOG_DRAIN, state.log_writes.wait())
        .await
        .is_err()
    {
        tracing::error!(
            pending = state.log_writes.len(),
            "shutting down with call log writes still failing: those calls' logs are incomplete"
        );
    }
    Ok(())
}

/// Accepts connections until `shutdown`, then waits for requests in flight.
///
/// Why not `axum::serve`: it gives hyper no timer, and without one hyper cannot time out a client
/// that never finishes its headers, so slow or idle clients would hold connections (and file
/// descriptors) forever. HTTP/1.1 only: it is what the providers and browsers here speak, and
/// WebSocket upgrades need it.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(read_timeout));
    // hyper's own HTTP/1 builder rather than hyper-util's `auto` one: `auto` first waits for the
    // bytes that tell HTTP/1 from HTTP/2, with no timeout, so a client that sends nothing was
    // never timed out.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(read_timeout);
    let connections = tokio_util::task::TaskTracker::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, mostly: wait for some to be freed rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = http
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()))
            .with_upgrades();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.changed() => {
                    // Finish the request in flight, then close instead of keeping the connection.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                // Timeouts, resets and malformed requests: the client's doing, not news.
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    connections.close();
    connections.wait().await;
}

/// An error answered to the provider; never reveals more than the status and a short reason.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("invalid or missing X-Twilio-Signature")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
    #[error("too many media streams open; try again later")]
    Busy,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.to_string()).into_response()
    }
}

/// The URL the provider signed: the public URL (or `http://Host`) + the path and query.
fn signed_url(config: &ServerConfig, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match &config.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}{path}")
        }
    }
}

fn signature_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(signature::HEADER).and_then(|h| h.to_str().ok())
}

fn check_form_signature(
    config: &ServerConfig,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    params: &FormParams,
) -> Result<(), ApiError> {
    let url = signed_url(config, headers, uri);
    signature::validate(
        &config.auth_token,
        &url,
        params.pairs(),
        signature_header(headers),
    )
    .map_err(|e| {
        tracing::warn!(%url, "webhook refused: {e}");
        ApiError::Forbidden
    })
}

fn twiml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// The media stream URL for TwiML: the public (or Host-derived) URL with a WebSocket scheme.
fn media_url(config: &ServerConfig, headers: &HeaderMap) -> String {
    websocket_scheme(signed_url(
        config,
        headers,
        &axum::http::Uri::from_static("/twilio/media"),
    ))
}

/// `https://…` → `wss://…`, `http://…` → `ws://…`: the provider signs the upgrade with the URL it
/// connected to.
fn websocket_scheme(base: String) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base
    }
}

async fn voice<S, L, T>(
    State(state): State<Arc<AppState<S, L, T>>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = FormParams::parse(&body);
    check_form_signature(&state.config, &headers, &uri, &params)?;
    let call = VoiceWebhook::from_params(params).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if state.calls.available_permits() == 0 {
        tracing::warn!(call_sid = %call.call_sid, "all lines busy");
        let body = Twiml::new()
            .say("Sorry, all our lines are busy right now. Please call again in a few minutes.")
            .hangup()
            .to_xml();
        return Ok(twiml(body));
    }
    if let Some(attempt) = outbound::attempt_param(&uri) {
        return match outbound::answer(
            &state.store,
            &state.log_writes,
            &state.config.flows,
            &state.config.runtime,
            &call,
            &attempt,
        )
        .await
        {
            Ok(outbound::Answer::Done(body)) => Ok(twiml(body)),
            Ok(outbound::Answer::Person(params)) => {
                tracing::info!(call_sid = %call.call_sid, %attempt, "campaign call answered");
                let stream = outbound::person_stream(media_url(&state.config, &headers), params)
                    .map_err(ApiError::BadRequest)?;
                Ok(twiml(Twiml::new().connect_stream(stream).to_xml()))
            }
            Err(e) => {
                // Without the attempt there is no flow or contact to speak for; the scheduler's
                // reconciliation settles the attempt once the provider reports the call ended.
                tracing::error!(call_sid = %call.call_sid, %attempt, "campaign call answered but not looked up: {e}");
                Ok(twiml(Twiml::new().hangup().to_xml()))
            }
        };
    }
    let flow = state
        .config
        .numbers
        .get(&call.to)
        .cloned()
        .unwrap_or_else(|| state.config.default_flow.clone());
    let stream = Stream::new(media_url(&state.config, &headers))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .parameter("flow", &flow)
        .parameter("from", &call.from)
        .parameter("to", &call.to);
    tracing::info!(call_sid = %call.call_sid, %flow, "answering");
    Ok(twiml(Twiml::new().connect_stream(stream).to_xml()))
}

async fn status<S, L, T>(
    State(state): State<Arc<AppState<S, L, T>>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let params = FormParams::parse(&body);
    check_form_signature(&state.config, &headers, &uri, &params)?;
    let cb = StatusCallback::from_params(params).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Ok(mut statuses) = state.statuses.lock() {
        let newer = statuses.get(&cb.call_sid).is_none_or(|known| {
            match (known.sequence_number, cb.sequence_number) {
                (Some(k), Some(n)) => n > k,
                _ => true,
            }
        });
        // Callbacks can arrive out of order; an older one never overwrites a newer state.
        if newer {
            statuses.insert(
                cb.call_sid.clone(),
                CallStatusInfo {
                    status: cb.call_status.to_string(),
                    sequence_number: cb.sequence_number,
                },
            );
        }
    }
    let attempt = outbound::attempt_param(&uri);
    // A campaign call that never connected ends here; one that did ends with its media stream.
    // (Repeated or late reports change nothing: the attempt is finished once.)
    let unanswered = dialer::ended(cb.call_status).filter(|r| *r != AttemptResult::Completed);
    if attempt.is_some() || unanswered.is_some() {
        let store = state.store.clone();
        let call_sid = cb.call_sid;
        let progress = match cb.call_status {
            WireStatus::Ringing => Some(AttemptStatus::Ringing),
            WireStatus::InProgress => Some(AttemptStatus::Answered),
            _ => None,
        };
        let now = jiff::Timestamp::now();
        // A status callback is not sent twice, so what it says is kept until written, through a
        // database outage, like a call's log; the provider is answered at once meanwhile.
        state.log_writes.spawn(async move {
            if let Some(attempt) = attempt {
                calllog::persist("recording a campaign call's progress", || {
                    outbound::note_progress(&store, &attempt, &call_sid, progress)
                })
                .await;
            }
            if let Some(result) = unanswered {
                let no_slots = serde_json::Map::new();
                calllog::persist("recording a campaign call's result", || {
                    record_call_result(&store, &call_sid, result, None, &no_slots, now)
                })
                .await;
            }
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn media_upgrade<S, L, T>(
    State(state): State<Arc<AppState<S, L, T>>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError>
where
    S: SpeechToText + 'static,
    L: LanguageModel + 'static,
    T: TextToSpeech + 'static,
{
    let url = websocket_scheme(signed_url(&state.config, &headers, &uri));
    signature::validate_websocket(&state.config.auth_token, &url, signature_header(&headers)).map_err(
        |e| {
            tracing::warn!(%url, "media stream refused: {e}");
            ApiError::Forbidden
        },
    )?;
    // Connections that never become calls (no `start`, a flood of handshakes) must not pile up:
    // each holds a slot until it closes.
    let Ok(slot) = state.streams.clone().try_acquire_owned() else {
        tracing::warn!("media stream refused: too many open");
        return Err(ApiError::Busy);
    };
    Ok(ws
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            media::session(socket, state).await;
            drop(slot);
        }))
}

pub use api::ApiDoc;
pub use media::MediaOutcome;
pub use outbound::supervise;

/// Deletes calls (and their recordings) that started more than `days` ago, now and then every hour,
/// until `shutdown` completes. Runs on the server's runtime: it is a few queries an hour.
pub async fn retention(
    store: Store,
    recordings_dir: Option<PathBuf>,
    days: u32,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let run = async {
        loop {
            let cutoff = calllog::now_ms() - i64::from(days) * 86_400_000;
            match store.delete_older_than(cutoff).await {
                Ok(deleted) => {
                    for call in &deleted {
                        api::remove_recording(recordings_dir.as_deref(), call).await;
                    }
                    if !deleted.is_empty() {
                        tracing::info!(calls = deleted.len(), days, "retention: old calls deleted");
                    }
                }
                Err(e) => tracing::warn!("retention: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    };
    tokio::select! {
        () = run => {}
        () = shutdown => {}
    }
}
