//! `switchboard calls list|show|export`: the call log, read straight from the store (the same
//! database the server writes), for people at a terminal and for scripts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use switchboard_store::{
    CallDetail, CallFilter, CallStatus, CallSummary, Direction, NoMatch, Speaker, Store, format_time,
    parse_time,
};

use super::serve::{ServeArgs, Settings};

/// Where the call log is: the same resolution as `switchboard serve` (flags, environment, config).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// TOML configuration file (as for `serve`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory holding `calls.db` (as for `serve`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` or `sqlite://…`; overrides the configuration.
    #[arg(long)]
    pub database_url: Option<String>,
}

impl StoreArgs {
    /// The settings `serve` would run with, `--database-url` included.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = Settings::load(&ServeArgs {
            config: self.config.clone(),
            port: None,
            data_dir: self.data_dir.clone(),
        })?;
        if let Some(url) = &self.database_url {
            settings.database_url = Some(url.clone());
        }
        Ok(settings)
    }

    pub async fn open(&self) -> anyhow::Result<Store> {
        self.settings()?.open_store().await
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    #[arg(long, value_parser = parse_direction)]
    pub direction: Option<Direction>,
    #[arg(long, value_parser = parse_status)]
    pub status: Option<CallStatus>,
    #[arg(long)]
    pub outcome: Option<String>,
    /// Either party's number (E.164).
    #[arg(long)]
    pub number: Option<String>,
    #[arg(long)]
    pub flow: Option<String>,
    /// Started at or after (RFC 3339 or Unix ms).
    #[arg(long, value_parser = parse_time_arg)]
    pub since: Option<i64>,
    /// Started before (RFC 3339 or Unix ms).
    #[arg(long, value_parser = parse_time_arg)]
    pub until: Option<i64>,
}

impl FilterArgs {
    fn filter(&self) -> CallFilter {
        CallFilter {
            direction: self.direction,
            status: self.status,
            outcome: self.outcome.clone(),
            number: self.number.clone(),
            flow: self.flow.clone(),
            since: self.since,
            until: self.until,
        }
    }
}

/// The serde spelling (`in_progress`, `outbound`) is the CLI's too.
fn parse_enum<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("`{s}` is not a {what}"))
}

fn parse_direction(s: &str) -> Result<Direction, String> {
    parse_enum("direction (inbound, outbound)", s)
}

fn parse_status(s: &str) -> Result<CallStatus, String> {
    parse_enum(
        "status (queued, ringing, in_progress, completed, busy, no_answer, failed, canceled, interrupted)",
        s,
    )
}

fn parse_time_arg(s: &str) -> Result<i64, String> {
    parse_time(s).ok_or_else(|| format!("`{s}` is neither an RFC 3339 time nor Unix milliseconds"))
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum CallsCommand {
    /// The newest calls, one line each.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// One call: its facts, transcript with timings, and events.
    Show {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// What callers said that a flow could not place, grouped and most frequent first: the phrases to
    /// add to its options.
    NoMatches {
        /// Only this flow's.
        #[arg(long)]
        flow: Option<String>,
        /// Calls started at or after (RFC 3339 or Unix ms).
        #[arg(long, value_parser = parse_time_arg)]
        since: Option<i64>,
        /// Calls started before (RFC 3339 or Unix ms).
        #[arg(long, value_parser = parse_time_arg)]
        until: Option<i64>,
        #[arg(long, default_value_t = 30)]
        limit: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Every matching call: CSV (one row per call) or JSON (calls with their turns and events).
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        #[command(flatten)]
        filter: FilterArgs,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(cmd: CallsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            CallsCommand::List { filter, limit, store } => {
                let store = store.open().await?;
                let page = store
                    .list_calls(&filter.filter(), None, limit.clamp(1, 200))
                    .await
                    .context("listing calls")?;
                print_list(&page.calls);
            }
            CallsCommand::Show { id, store } => {
                let store = store.open().await?;
                let call = store
                    .get_call(&id)
                    .await
                    .context("reading the call")?
                    .with_context(|| format!("no call with id {id} (see `switchboard calls list`)"))?;
                print_call(&call);
            }
            CallsCommand::NoMatches {
                flow,
                since,
                until,
                limit,
                store,
            } => {
                let store = store.open().await?;
                let groups = store
                    .no_matches(flow.as_deref(), since, until, limit.max(1))
                    .await
                    .context("reading no-matches")?;
                print_no_matches(&groups);
            }
            CallsCommand::Export {
                format,
                filter,
                output,
                store,
            } => {
                let store = store.open().await?;
                let mut out: Box<dyn Write> = match &output {
                    Some(path) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    )),
                    None => Box::new(std::io::stdout().lock()),
                };
                let n = export(&store, &filter.filter(), format, &mut out).await?;
                out.flush()?;
                eprintln!("{n} calls exported");
            }
        }
        Ok(())
    })
}

fn duration(ms: Option<i64>) -> String {
    ms.map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn print_list(calls: &[CallSummary]) {
    println!(
        "{:<21} {:<36} {:<8} {:<14} {:<14} {:<20} {:>8} {:<12} outcome",
        "started", "id", "dir", "from", "to", "flow", "duration", "status"
    );
    for c in calls {
        println!(
            "{:<21} {:<36} {:<8} {:<14} {:<14} {:<20} {:>8} {:<12} {}",
            format_time(c.started_at),
            c.id,
            snake(&c.direction),
            c.from,
            c.to,
            c.flow,
            duration(c.duration_ms),
            snake(&c.status),
            c.outcome.as_deref().unwrap_or("-")
        );
    }
}

fn print_no_matches(groups: &[NoMatch]) {
    if groups.is_empty() {
        println!("no no-matches");
        return;
    }
    println!(
        "{:>5}  {:<20} {:<16} {:<21} heard",
        "times", "flow", "step", "last"
    );
    for g in groups {
        println!(
            "{:>5}  {:<20} {:<16} {:<21} {}",
            g.count,
            g.flow,
            g.step,
            format_time(g.last_at),
            g.heard
        );
    }
}

pub fn print_call(d: &CallDetail) {
    let c = &d.call;
    println!("call {} ({})", c.id, c.provider_call_id);
    println!(
        "  {} {} → {}, flow {}, started {}, {}",
        snake(&c.direction),
        c.from,
        c.to,
        c.flow,
        format_time(c.started_at),
        duration(c.duration_ms)
    );
    println!(
        "  status {}, outcome {}, ended by {}{}",
        snake(&c.status),
        c.outcome.as_deref().unwrap_or("-"),
        c.hangup_reason.as_deref().unwrap_or("-"),
        c.transferred_to
            .as_deref()
            .map(|t| format!(", transferred to {t}"))
            .unwrap_or_default()
    );
    if !d.slots.is_empty() {
        let slots: Vec<String> = d.slots.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  slots: {}", slots.join(", "));
    }
    // Turns and events in time order.
    let mut lines: Vec<(i64, String)> = Vec::new();
    for t in &d.turns {
        let who = match t.speaker {
            Speaker::Caller => "caller",
            Speaker::Bot => "bot   ",
        };
        let mut line = format!("{who}: {}", t.text);
        if t.interrupted {
            line.push_str(" [interrupted]");
        }
        if let Some(v) = t.timings.as_ref().and_then(|x| x.voice_to_voice_ms) {
            line.push_str(&format!("  (answered in {v} ms)"));
        }
        lines.push((t.at_ms, line));
    }
    for e in &d.events {
        let detail = e.detail.as_deref().map(|d| format!(" {d}")).unwrap_or_default();
        lines.push((e.at_ms, format!("  · {}{detail}", e.kind)));
    }
    lines.sort_by_key(|(at, _)| *at);
    for (at, line) in lines {
        println!("{:>7.2} s  {line}", at as f64 / 1000.0);
    }
}

async fn export(
    store: &Store,
    filter: &CallFilter,
    format: ExportFormat,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let mut cursor: Option<String> = None;
    let mut count = 0;
    let csv = matches!(format, ExportFormat::Csv);
    if csv {
        write_csv_row(
            out,
            [
                "id",
                "provider_call_id",
                "direction",
                "from",
                "to",
                "flow",
                "status",
                "started_at",
                "ended_at",
                "duration_ms",
                "outcome",
                "hangup_reason",
                "transferred_to",
                "slots",
                "transcript",
            ],
        )?;
    }
    if matches!(format, ExportFormat::Json) {
        out.write_all(b"[")?;
    }
    loop {
        let page = store
            .list_calls(filter, cursor.as_deref(), 200)
            .await
            .context("listing calls")?;
        for summary in &page.calls {
            let Some(d) = store.get_call(&summary.id).await.context("reading a call")? else {
                continue; // deleted meanwhile
            };
            if csv {
                let transcript: Vec<String> = d
                    .turns
                    .iter()
                    .map(|t| format!("{}: {}", snake(&t.speaker), t.text))
                    .collect();
                let c = &d.call;
                write_csv_row(
                    out,
                    [
                        c.id.clone(),
                        c.provider_call_id.clone(),
                        snake(&c.direction),
                        c.from.clone(),
                        c.to.clone(),
                        c.flow.clone(),
                        snake(&c.status),
                        format_time(c.started_at),
                        c.ended_at.map(format_time).unwrap_or_default(),
                        c.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
                        c.outcome.clone().unwrap_or_default(),
                        c.hangup_reason.clone().unwrap_or_default(),
                        c.transferred_to.clone().unwrap_or_default(),
                        serde_json::to_string(&d.slots)?,
                        transcript.join("\n"),
                    ],
                )?;
            } else {
                if count > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer(&mut *out, &d)?;
            }
            count += 1;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if !csv {
        out.write_all(b"]\n")?;
    }
    Ok(count)
}

/// One CSV row (quoted as needed), written at once: an export is never all in memory.
fn write_csv_row<I, F>(out: &mut dyn Write, fields: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = F>,
    F: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(fields)?;
    out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    Ok(())
}
