//! The `serve` configuration file (TOML) and the checks on it that need nothing but the file.
//!
//! Kept apart from `serve.rs`, which wires in the models, so that the fuzz target `config_toml` can
//! compile this file alone (`#[path]`) without building whisper or candle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use switchboard_campaign::SchedulerConfig;

/// The file format; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub public_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub flows_dir: Option<PathBuf>,
    pub default_flow: Option<String>,
    #[serde(default)]
    pub numbers: BTreeMap<String, String>,
    #[serde(default)]
    pub provider: ProviderConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    pub max_calls: Option<usize>,
    pub record_calls: Option<bool>,
    /// `postgres://…` (or `sqlite://…`); default: `calls.db` in the data directory.
    pub database_url: Option<String>,
    /// Calls and recordings older than this many days are deleted (0: keep everything).
    pub retention_days: Option<u32>,
    /// Callers' numbers, transcripts and slots in the log at info level (default: no).
    pub log_pii: Option<bool>,
    /// This runtime's name in the call log, unique among runtimes sharing a database (default:
    /// the host name).
    pub runtime: Option<String>,
    #[serde(default)]
    pub campaigns: CampaignsConfig,
}

impl FileConfig {
    /// Reads the TOML text of a configuration file; unknown keys are errors.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// How the campaign schedulers run (see `switchboard_campaign::SchedulerConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignsConfig {
    /// Run the schedulers of running campaigns in this process (default: yes, when a provider
    /// account is configured).
    pub enabled: Option<bool>,
    pub tick_ms: Option<u64>,
    pub lease_seconds: Option<u64>,
    pub dial_timeout_seconds: Option<u64>,
    pub settle_after_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub rest_base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    pub whisper: Option<String>,
    pub llm: Option<String>,
    pub voice: Option<String>,
}

/// The campaign scheduler's settings from the file, checked against each other.
pub fn scheduler_config(c: &CampaignsConfig) -> anyhow::Result<SchedulerConfig> {
    let default = SchedulerConfig::default();
    let config = SchedulerConfig {
        tick: c.tick_ms.map_or(default.tick, Duration::from_millis),
        lease: c.lease_seconds.map_or(default.lease, Duration::from_secs),
        dial_timeout: c
            .dial_timeout_seconds
            .map_or(default.dial_timeout, Duration::from_secs),
        settle_after: c
            .settle_after_seconds
            .map_or(default.settle_after, Duration::from_secs),
    };
    // A lease shorter than a dial would let a restarted runtime reconcile a dial still in flight.
    anyhow::ensure!(
        config.lease > config.dial_timeout,
        "campaigns.lease_seconds ({}) must be longer than campaigns.dial_timeout_seconds ({})",
        config.lease.as_secs(),
        config.dial_timeout.as_secs()
    );
    anyhow::ensure!(!config.tick.is_zero(), "campaigns.tick_ms must be above 0");
    Ok(config)
}
