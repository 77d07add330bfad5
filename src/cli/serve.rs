//! `switchboard serve`: the runtime — webhooks and media streams answered by the flows, with the local
//! models loaded once and shared by every call.
//!
//! Configuration is layered: defaults (enough to try it on a laptop), then a TOML file (`--config`),
//! then environment variables, then command-line flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use switchboard_call::{CallSettings, Engines};
use switchboard_campaign::{SchedulerConfig, SystemClock};
use switchboard_flow::Flow;
use switchboard_llm::{EngineConfig, LlmEngine};
use switchboard_server::dialer::{RestDialer, RestReconciler};
use switchboard_server::{AppState, ServerConfig};
use switchboard_store::Store;
use switchboard_stt::{WhisperConfig, WhisperStt};
use switchboard_telephony::AuthToken;
use switchboard_telephony::rest::{RestClient, RestConfig};
use switchboard_tts::{EspeakConfig, EspeakTts};

use super::config_file::{FileConfig, scheduler_config};

/// The auth token used when none is configured: fine on loopback with the simulator, never in front
/// of a real provider (the server warns).
pub const DEV_AUTH_TOKEN: &str = "switchboard-dev-token";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (see README: Configuration).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Port to listen on (0: any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Directory for recordings and the call log (`calls.db`, unless `database_url` is set).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The resolved settings.
#[derive(Debug)]
pub struct Settings {
    pub listen: String,
    pub port: u16,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub flows_dir: PathBuf,
    pub default_flow: String,
    pub numbers: BTreeMap<String, String>,
    pub account_sid: Option<String>,
    pub auth_token: AuthToken,
    pub rest_base_url: Option<String>,
    pub whisper: Option<String>,
    pub llm: Option<String>,
    pub voice: Option<String>,
    pub max_calls: usize,
    pub record_calls: bool,
    pub database_url: Option<String>,
    pub retention_days: u32,
    pub campaigns_enabled: bool,
    pub log_pii: bool,
    pub runtime: String,
    pub scheduler: SchedulerConfig,
}

/// The host's name, the default runtime name: one runtime per host is the common deployment.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| env("HOSTNAME"))
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchboard".to_string())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_bool(v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => anyhow::bail!("{v:?}"),
    }
}

impl Settings {
    /// Defaults ← file ← environment ← flags.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                FileConfig::parse(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let port = match (args.port, env("SWITCHBOARD_PORT"), file.port) {
            (Some(p), _, _) => p,
            (None, Some(p), _) => p.parse().context("SWITCHBOARD_PORT is not a port number")?,
            (None, None, Some(p)) => p,
            (None, None, None) => 8080,
        };
        let auth_token = env("SWITCHBOARD_AUTH_TOKEN")
            .or(file.provider.auth_token)
            .unwrap_or_else(|| DEV_AUTH_TOKEN.to_string());
        Ok(Self {
            listen: env("SWITCHBOARD_LISTEN")
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1".into()),
            port,
            public_url: env("SWITCHBOARD_PUBLIC_URL").or(file.public_url),
            data_dir: args
                .data_dir
                .clone()
                .or_else(|| env("SWITCHBOARD_DATA_DIR").map(PathBuf::from))
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("data")),
            flows_dir: file.flows_dir.unwrap_or_else(|| PathBuf::from("prompts/flows")),
            default_flow: env("SWITCHBOARD_DEFAULT_FLOW")
                .or(file.default_flow)
                .unwrap_or_else(|| "inbound_support".into()),
            numbers: file.numbers,
            account_sid: env("SWITCHBOARD_ACCOUNT_SID").or(file.provider.account_sid),
            auth_token: AuthToken::new(auth_token),
            rest_base_url: env("SWITCHBOARD_REST_URL").or(file.provider.rest_base_url),
            whisper: env("SWITCHBOARD_WHISPER_MODEL").or(file.models.whisper),
            llm: env("SWITCHBOARD_LLM").or(file.models.llm),
            voice: env("SWITCHBOARD_VOICE").or(file.models.voice),
            max_calls: file.max_calls.unwrap_or(4),
            record_calls: file.record_calls.unwrap_or(true),
            database_url: env("DATABASE_URL")
                .or_else(|| env("SWITCHBOARD_DATABASE_URL"))
                .or(file.database_url),
            retention_days: match env("SWITCHBOARD_RETENTION_DAYS") {
                Some(d) => d
                    .parse()
                    .context("SWITCHBOARD_RETENTION_DAYS is not a number of days")?,
                None => file.retention_days.unwrap_or(90),
            },
            campaigns_enabled: file.campaigns.enabled.unwrap_or(true),
            log_pii: match env("SWITCHBOARD_LOG_PII") {
                Some(v) => parse_bool(&v).context("SWITCHBOARD_LOG_PII is not true or false")?,
                None => file.log_pii.unwrap_or(false),
            },
            runtime: env("SWITCHBOARD_RUNTIME")
                .or(file.runtime)
                .unwrap_or_else(host_name),
            scheduler: scheduler_config(&file.campaigns)?,
        })
    }

    /// Opens (creating and migrating when needed) the call log: `database_url`, or SQLite as
    /// `calls.db` in the data directory (opened by path, so any file name works).
    pub async fn open_store(&self) -> anyhow::Result<Store> {
        match &self.database_url {
            Some(url) => Store::open(url).await.with_context(|| {
                // Never print a password that may be in the URL.
                let shown = url.split('@').next_back().unwrap_or(url);
                format!("opening the call log ({shown})")
            }),
            None => {
                let path = self.data_dir.join("calls.db");
                Store::open_sqlite(&path)
                    .await
                    .with_context(|| format!("opening the call log {}", path.display()))
            }
        }
    }
}

/// Every flow file in `dir`, by flow name.
pub fn load_flows(dir: &Path) -> anyhow::Result<BTreeMap<String, Arc<Flow>>> {
    let mut flows = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading the flows in {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            let flow = Flow::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            flows.insert(flow.name().to_string(), Arc::new(flow));
        }
    }
    anyhow::ensure!(!flows.is_empty(), "no flows in {}", dir.display());
    Ok(flows)
}

pub type RealState = AppState<WhisperStt, LlmEngine, EspeakTts>;

/// Loads the models and flows and builds the server's state.
pub fn build_state(settings: &Settings, store: Store) -> anyhow::Result<Arc<RealState>> {
    let flows = load_flows(&settings.flows_dir)?;
    let whisper_path = super::resolve::model_path(
        switchboard_models::ModelKind::Whisper,
        settings.whisper.as_deref(),
    )?;
    let stt = WhisperStt::load(WhisperConfig::new(&whisper_path)).context("loading speech-to-text")?;
    let llm_path = super::chat::resolve_model(settings.llm.as_deref())?;
    let llm = LlmEngine::load(&llm_path, EngineConfig::default())
        .with_context(|| format!("loading {}", llm_path.display()))?;
    let mut tts_config = EspeakConfig::default();
    if let Some(voice) = &settings.voice {
        tts_config.voice = voice.clone();
    }
    let tts = EspeakTts::start(tts_config).context("starting speech synthesis")?;
    let recordings_dir = settings
        .record_calls
        .then(|| settings.data_dir.join("recordings"));
    if let Some(dir) = &recordings_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if settings.auth_token.expose() == DEV_AUTH_TOKEN {
        tracing::warn!("no auth token configured (SWITCHBOARD_AUTH_TOKEN): using the development token");
    }
    let config = ServerConfig {
        public_url: settings.public_url.clone(),
        auth_token: settings.auth_token.clone(),
        account_sid: settings.account_sid.clone(),
        rest_base_url: settings.rest_base_url.clone(),
        flows,
        numbers: settings.numbers.clone(),
        default_flow: settings.default_flow.clone(),
        call: CallSettings::default(),
        recordings_dir,
        max_calls: settings.max_calls,
        start_timeout: Duration::from_secs(10),
        media_idle_timeout: Duration::from_secs(10),
        http_read_timeout: Duration::from_secs(10),
        log_pii: settings.log_pii,
        runtime: settings.runtime.clone(),
    };
    let engines = Engines {
        stt: Arc::new(stt),
        llm: Arc::new(llm),
        tts: Arc::new(tts),
    };
    Ok(Arc::new(
        AppState::new(config, engines, store).map_err(|e| anyhow::anyhow!(e))?,
    ))
}

/// Computes the flows' shared model prompts (see [`switchboard_flow::model::warm_up`]) so that the
/// first caller does not wait for them: measured on the inbound flow's free answer, the first token
/// came 1.2 s after the transcript on a fresh server.
pub async fn warm_up(state: &RealState) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let mut prompts = 0;
    for flow in state.config.flows.values() {
        prompts += switchboard_flow::model::warm_up(&*state.engines.llm, flow)
            .await
            .with_context(|| format!("warming up the language model for flow `{}`", flow.name()))?;
    }
    tracing::info!(
        prompts,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "model prompts cached"
    );
    Ok(())
}

/// The provider's REST API for campaign calls, when an account is configured. The provider calls
/// back at the public URL, or at the address bound when there is none (loopback, the simulator).
fn campaign_provider(
    settings: &Settings,
    bound: std::net::SocketAddr,
) -> anyhow::Result<Option<(RestDialer, RestReconciler)>> {
    let Some(sid) = &settings.account_sid else {
        return Ok(None);
    };
    let mut config = RestConfig::new(sid.clone(), settings.auth_token.clone());
    if let Some(base) = &settings.rest_base_url {
        config.base_url = base.clone();
    }
    // A rate limit is the scheduler's to wait out: it pauses dialing and the refused attempt does
    // not count. A client that waited for a long `Retry-After` inside the dial would outlast the
    // dial timeout and leave a request the provider refused in doubt; its own few short waits
    // (`max_attempts` of them) stay well within it.
    config.retry.max_retry_after = (settings.scheduler.dial_timeout / 8).min(Duration::from_secs(2));
    let rest = RestClient::new(config).context("the provider's REST client")?;
    let public = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    Ok(Some((
        RestDialer::new(rest.clone(), public),
        RestReconciler::new(rest),
    )))
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(&args)?;
    inject_faults()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let store = runtime.block_on(settings.open_store())?;
    // This runtime's calls still "in progress" in the log were cut off by a crash of its previous
    // process (no call survives a restart). Other runtimes sharing the database keep theirs.
    let interrupted = runtime
        .block_on(store.mark_interrupted(&settings.runtime, jiff::Timestamp::now().as_millisecond()))
        .context("closing calls a crash left open")?;
    if interrupted > 0 {
        tracing::warn!(
            calls = interrupted,
            "calls left in progress by a crash were marked interrupted"
        );
    }
    let state = build_state(&settings, store.clone())?;
    runtime.block_on(async move {
        warm_up(&state).await?;
        let listener = tokio::net::TcpListener::bind((settings.listen.as_str(), settings.port))
            .await
            .with_context(|| format!("binding {}:{}", settings.listen, settings.port))?;
        let addr = listener.local_addr()?;
        println!("switchboard listening on http://{addr} (voice webhook: /twilio/voice)");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let keep_alive = tokio::spawn(switchboard_server::keep_calls_alive(
            store.clone(),
            settings.runtime.clone(),
        ));
        if settings.retention_days > 0 {
            let mut stop = stop_rx.clone();
            tokio::spawn(switchboard_server::retention(
                store,
                settings
                    .record_calls
                    .then(|| settings.data_dir.join("recordings")),
                settings.retention_days,
                async move {
                    let _ = stop.changed().await;
                },
            ));
        }
        match campaign_provider(&settings, addr)? {
            Some((dialer, reconciler)) if settings.campaigns_enabled => {
                let mut stop = stop_rx.clone();
                tokio::spawn(switchboard_server::supervise(
                    state.store().clone(),
                    dialer,
                    reconciler,
                    SystemClock,
                    settings.scheduler.clone(),
                    async move {
                        let _ = stop.changed().await;
                    },
                ));
            }
            Some(_) => tracing::info!("campaign schedulers disabled (campaigns.enabled = false)"),
            None => tracing::info!(
                "no provider account (SWITCHBOARD_ACCOUNT_SID): campaigns will not be dialed by this runtime"
            ),
        }
        let shutdown = async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing calls in progress");
            let _ = stop_tx.send(true);
        };
        let served = switchboard_server::serve(listener, state, shutdown)
            .await
            .context("serving");
        // Only after the calls have drained: they are alive until then.
        keep_alive.abort();
        served
    })
}

/// Fault drills (and the crash tests): `FAILPOINTS="tts::synthesize=1*panic;stt::transcribe=off"`
/// makes an engine fail for real at a named point (`llm::job`, `stt::transcribe`,
/// `tts::synthesize`), with the `fail` crate's actions (`panic`, `return`, `sleep(ms)`, counts
/// `N*`, sequences `->`). Unset, nothing is injected.
fn inject_faults() -> anyhow::Result<()> {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return Ok(());
    };
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, actions) = entry
            .split_once('=')
            .with_context(|| format!("FAILPOINTS: `{entry}` is not `name=actions`"))?;
        fail::cfg(name.trim(), actions.trim()).map_err(|e| anyhow::anyhow!("FAILPOINTS: `{entry}`: {e}"))?;
        tracing::warn!(
            point = name.trim(),
            actions = actions.trim(),
            "fault injection armed"
        );
    }
    Ok(())
}
