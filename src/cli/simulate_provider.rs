//! `switchboard simulate-provider`: the telephony provider's REST side on loopback, for outbound
//! calls. Point `switchboard serve` at it (`provider.rest_base_url`), run a campaign, and every call
//! the runtime places is answered as the numbers file says: a person taking turns, an answering
//! machine, busy, no answer, or an API fault. The record of everything is at `GET /sim/calls`, and is
//! printed as a table (and written with `--report`) on Ctrl-C or SIGTERM.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use switchboard_simulator::numbers::NumbersFile;
use switchboard_simulator::{Plan, Provider, ProviderConfig, Record};
use switchboard_telephony::AuthToken;
use switchboard_tts::{EspeakConfig, EspeakTts, to_phone_frames};

use super::serve::DEV_AUTH_TOKEN;

/// The account SID when none is given: any SID works, as long as the runtime is configured with it.
pub const DEV_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

#[derive(Debug, clap::Args)]
pub struct SimulateProviderArgs {
    /// Port on 127.0.0.1 (0: any free port). The first line printed is `listening on http://…`.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The account the runtime authenticates as (default: $SWITCHBOARD_ACCOUNT_SID, else
    /// AC00000000000000000000000000000000).
    #[arg(long)]
    pub account_sid: Option<String>,
    /// The auth token: checks the runtime's requests and signs the simulator's; it must be the
    /// runtime's (default: $SWITCHBOARD_AUTH_TOKEN, else the server's development token).
    #[arg(long)]
    pub auth_token: Option<String>,
    /// How each number answers (TOML, or JSON for a `.json` file; see the README). Without it every
    /// call is answered by a person who only listens.
    #[arg(long)]
    pub numbers: Option<PathBuf>,
    /// No ringing or greeting delays, and caller audio faster than real time.
    #[arg(long)]
    pub fast: bool,
    /// Write the record (the same JSON as `GET /sim/calls`) to this file on exit.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Calls alive at once for the account; a create request beyond it is refused with 429 (the
    /// provider's concurrency limit), `Retry-After: 1`.
    #[arg(long, default_value_t = 200)]
    pub max_live_calls: usize,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The numbers file, with every `say` turn synthesized by the runtime's own voice engine.
fn load_plan(path: Option<&Path>) -> anyhow::Result<Plan> {
    let Some(path) = path else {
        return Ok(Plan::default());
    };
    let file = NumbersFile::load(path)?;
    let texts = file.texts();
    let mut speech = HashMap::new();
    if !texts.is_empty() {
        let mut config = EspeakConfig::default();
        if let Some(voice) = &file.voice {
            config.voice = voice.clone();
        }
        let tts = EspeakTts::start(config).context("starting speech synthesis for the `say` turns")?;
        for text in texts {
            let spoken = tts
                .synthesize_blocking(text)
                .with_context(|| format!("synthesizing {text:?}"))?;
            speech.insert(text.to_owned(), to_phone_frames(&spoken).concat());
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(file.resolve(base, &speech)?)
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

pub fn run(args: SimulateProviderArgs) -> anyhow::Result<()> {
    // Before the async runtime: synthesis blocks on its own thread's answer.
    let plan = load_plan(args.numbers.as_deref())?;
    let listed = plan.listed();
    let account_sid = args
        .account_sid
        .clone()
        .or_else(|| env("SWITCHBOARD_ACCOUNT_SID"))
        .unwrap_or_else(|| DEV_ACCOUNT_SID.to_owned());
    let token = args
        .auth_token
        .clone()
        .or_else(|| env("SWITCHBOARD_AUTH_TOKEN"))
        .unwrap_or_else(|| DEV_AUTH_TOKEN.to_owned());
    let config = ProviderConfig {
        fast: args.fast,
        max_live_calls: args.max_live_calls,
        ..ProviderConfig::new(account_sid.clone(), AuthToken::new(token), plan)
    };
    let provider = Provider::new(config)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let record = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        std::io::stdout().flush().context("writing to stdout")?;
        eprintln!(
            "account {account_sid}: {listed} numbers configured{}; the record is at http://{addr}/sim/calls; Ctrl-C ends",
            if args.fast { ", fast" } else { "" }
        );
        provider.serve(listener, stopped()).await.context("serving")?;
        anyhow::Ok(provider.record())
    })?;
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&record).context("the record as JSON")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    print_summary(&record);
    Ok(())
}

fn print_summary(record: &Record) {
    let refused = record.requests.iter().filter(|r| r.http_status >= 400).count();
    println!(
        "{} create requests: {} calls placed, {refused} answered with an error",
        record.requests.len(),
        record.calls.len()
    );
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for call in &record.calls {
        *by_status.entry(call.status.to_string()).or_default() += 1;
    }
    if !by_status.is_empty() {
        let counts: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!("{}", counts.join(", "));
    }
    if record.calls.is_empty() {
        return;
    }
    println!("| call | to | # | answer | status | answered by | ended by | seconds | notes |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
    for c in &record.calls {
        let mut notes = Vec::new();
        if let Some(stream) = &c.stream {
            notes.push(format!("turns {}/{}", stream.turns, stream.turns_planned));
        }
        if let Some(left) = &c.voicemail {
            notes.push(format!("voicemail {left:?}"));
        }
        for to in &c.transfers {
            notes.push(format!("transferred to {to}"));
        }
        if c.hangup_requested {
            notes.push("runtime hung up".into());
        }
        if let Some(fault) = c.fault {
            notes.push(format!(
                "fault {}",
                serde_json::to_string(&fault)
                    .unwrap_or_default()
                    .trim_matches('"')
            ));
        }
        for e in &c.errors {
            notes.push(format!("error: {e}"));
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.sid,
            c.to,
            c.nth,
            serde_json::to_string(&c.answer)
                .unwrap_or_default()
                .trim_matches('"'),
            c.status,
            or_dash(c.answered_by.map(|a| a.to_string())),
            or_dash(
                c.ended_by
                    .and_then(|e| serde_json::to_string(&e).ok())
                    .map(|e| e.trim_matches('"').to_owned())
            ),
            c.duration_seconds,
            notes.join("; ")
        );
    }
}
