//! `switchboard campaign …`: outbound campaigns and the do-not-call list, read and written straight
//! in the store (the database `serve` uses), like `switchboard calls`.
//!
//! These commands only change rows: a campaign set running is dialed by the scheduler of the
//! `serve` that shares the database, which polls for running campaigns. The rules (settings as
//! written, which status changes are allowed, the import) are `switchboard_campaign`'s, the same
//! code the REST API runs, so the CLI and the API refuse the same things with the same words.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use switchboard_campaign::export::write_results_csv;
use switchboard_campaign::settings::{
    OnVoicemail, SettingsSpec, check_flow, format_days, new_campaign, parse_days,
};
use switchboard_campaign::{Action, PhoneNumber, change_status, import_csv};
use switchboard_flow::Direction;
use switchboard_store::{Campaign, Progress, Store, format_time};

use super::calls::StoreArgs;
use super::serve::load_flows;

#[derive(Debug, clap::Subcommand)]
pub enum CampaignCommand {
    /// Create a campaign (a draft) and print its id.
    Create(CreateArgs),
    /// Add contacts from a CSV list: `phone` (E.164) and `consent` (yes/no) columns, optionally
    /// `name`, `consent_source`, `time_zone` (IANA), `state`/`area`; other columns become fields
    /// the flow can use.
    Import {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Start a draft campaign: `serve` calls its contacts within the rules.
    Start(Target),
    /// Pause a running campaign (calls on the line finish).
    Pause(Target),
    /// Resume a paused campaign.
    Resume(Target),
    /// Cancel a campaign for good.
    Cancel(Target),
    /// One campaign with its progress, or every campaign as a table.
    Status {
        id: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Each contact's attempts and outcome.
    Results {
        id: String,
        #[arg(long, value_enum, default_value = "table")]
        format: ResultsFormat,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The do-not-call list: numbers no campaign ever calls.
    #[command(subcommand)]
    Dnc(DncCommand),
}

/// The campaign a status change is for.
#[derive(Debug, clap::Args)]
pub struct Target {
    id: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    /// An outbound flow in the flows directory (prompts/flows).
    #[arg(long)]
    flow: String,
    /// The number the calls come from (E.164).
    #[arg(long)]
    caller_id: String,
    /// When calls may start, the contact's local time, within 08:00-21:00 [default: 09:00-20:00].
    #[arg(long, value_name = "HH:MM-HH:MM")]
    window: Option<String>,
    /// Calling days, e.g. mon-fri, sat,sun, mon,wed-fri [default: mon-fri].
    #[arg(long)]
    days: Option<String>,
    /// The first calling day (YYYY-MM-DD, the contact's local date).
    #[arg(long)]
    start_date: Option<String>,
    /// The last calling day (YYYY-MM-DD).
    #[arg(long)]
    end_date: Option<String>,
    /// Attempts per contact in total [default: 3].
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Attempts per contact in one local day [default: 2].
    #[arg(long)]
    max_attempts_per_day: Option<u32>,
    /// Minutes before calling again after a busy line [default: 15].
    #[arg(long, value_name = "MINUTES")]
    retry_busy: Option<u32>,
    /// … after no answer [default: 120].
    #[arg(long, value_name = "MINUTES")]
    retry_no_answer: Option<u32>,
    /// … after an answering machine [default: 240].
    #[arg(long, value_name = "MINUTES")]
    retry_voicemail: Option<u32>,
    /// … after a failed call [default: 60].
    #[arg(long, value_name = "MINUTES")]
    retry_failed: Option<u32>,
    /// Calls on the line at once [default: 5].
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// Dials per second at most [default: 1].
    #[arg(long)]
    calls_per_second: Option<f64>,
    /// On an answering machine: `leave` the flow's message, or `hangup` [default: leave].
    #[arg(long)]
    voicemail: Option<OnVoicemail>,
    #[command(flatten)]
    store: StoreArgs,
}

impl CreateArgs {
    /// The settings as given, the defaults for the rest.
    fn spec(&self) -> anyhow::Result<SettingsSpec> {
        let mut spec = SettingsSpec::default();
        if let Some(window) = &self.window {
            spec.window = window.clone();
        }
        if let Some(days) = &self.days {
            spec.days_of_week = parse_days(days)?;
        }
        spec.start_date = self.start_date.clone();
        spec.end_date = self.end_date.clone();
        let set = |field: &mut u32, value: Option<u32>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut spec.max_attempts, self.max_attempts);
        set(&mut spec.max_attempts_per_day, self.max_attempts_per_day);
        set(&mut spec.retry_minutes.busy, self.retry_busy);
        set(&mut spec.retry_minutes.no_answer, self.retry_no_answer);
        set(&mut spec.retry_minutes.voicemail, self.retry_voicemail);
        set(&mut spec.retry_minutes.failed, self.retry_failed);
        set(&mut spec.max_concurrent, self.max_concurrent);
        if let Some(rate) = self.calls_per_second {
            spec.calls_per_second = rate;
        }
        if let Some(voicemail) = self.voicemail {
            spec.voicemail = voicemail;
        }
        Ok(spec)
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ResultsFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum DncCommand {
    /// Put a number on the list.
    Add {
        /// E.164 (spaces, dashes and parentheses are dropped).
        phone: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Take a number off the list.
    Remove {
        phone: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Every number on the list.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub fn run(cmd: CampaignCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cmd {
            CampaignCommand::Create(args) => create(args).await,
            CampaignCommand::Import { id, file, store } => {
                let store = store.open().await?;
                let csv =
                    std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
                let report = import_csv(&store, &id, std::io::BufReader::new(csv)).await?;
                println!("imported {} contacts", report.imported);
                for row in &report.rejected {
                    println!("line {}: {}", row.line, row.reason);
                }
                if !report.without_time_zone.is_empty() {
                    let lines: Vec<String> = report.without_time_zone.iter().map(u64::to_string).collect();
                    println!(
                        "no time zone, so never called (add a time_zone or state column): lines {}",
                        lines.join(", ")
                    );
                }
                Ok(())
            }
            CampaignCommand::Start(t) => transition(t, Action::Start).await,
            CampaignCommand::Pause(t) => transition(t, Action::Pause).await,
            CampaignCommand::Resume(t) => transition(t, Action::Resume).await,
            CampaignCommand::Cancel(t) => transition(t, Action::Cancel).await,
            CampaignCommand::Status { id, store } => {
                let store = store.open().await?;
                match id {
                    Some(id) => print_campaign(&store, &id).await,
                    None => print_campaigns(&store).await,
                }
            }
            CampaignCommand::Results { id, format, store } => {
                let store = store.open().await?;
                results(&store, &id, format).await
            }
            CampaignCommand::Dnc(cmd) => dnc(cmd).await,
        }
    })
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let settings = args.store.settings()?;
    let flows = load_flows(&settings.flows_dir)?;
    let outbound = flows
        .iter()
        .map(|(name, f)| (name.as_str(), f.direction() == Direction::Outbound));
    check_flow(&args.flow, outbound)
        .map_err(|e| anyhow::anyhow!("{e} (flows are read from {})", settings.flows_dir.display()))?;
    let new = new_campaign(&args.name, &args.flow, &args.caller_id, &args.spec()?)?;
    let store = settings.open_store().await?;
    let campaign = store
        .create_campaign(&new)
        .await
        .context("creating the campaign")?;
    eprintln!(
        "campaign `{}` created (draft). Add contacts with `switchboard campaign import {} FILE.csv`, then start it.",
        campaign.name, campaign.id
    );
    // The id alone on stdout, for scripts.
    println!("{}", campaign.id);
    Ok(())
}

async fn transition(target: Target, action: Action) -> anyhow::Result<()> {
    let store = target.store.open().await?;
    let campaign = change_status(&store, &target.id, action).await?;
    println!("campaign {} is {}", campaign.id, campaign.status);
    Ok(())
}

async fn find(store: &Store, id: &str) -> anyhow::Result<Campaign> {
    store
        .get_campaign(id)
        .await
        .context("reading the campaign")?
        .with_context(|| format!("no campaign with id `{id}` (see `switchboard campaign status`)"))
}

async fn print_campaign(store: &Store, id: &str) -> anyhow::Result<()> {
    let c = find(store, id).await?;
    let p = store.progress(id).await.context("counting the contacts")?;
    let s = SettingsSpec::from(&c.settings);
    let r = &s.retry_minutes;
    println!("campaign {} `{}`", c.id, c.name);
    println!("  status    {}", c.status);
    println!("  flow      {}, caller id {}", c.flow, c.caller_id);
    println!(
        "  calling   {} {}, from {} to {}",
        s.window,
        format_days(&s.days_of_week),
        s.start_date.as_deref().unwrap_or("now"),
        s.end_date.as_deref().unwrap_or("the end")
    );
    println!(
        "  attempts  {} per contact, {} a day; retry after busy {} min, no answer {} min, voicemail {} min, failed {} min",
        s.max_attempts, s.max_attempts_per_day, r.busy, r.no_answer, r.voicemail, r.failed
    );
    println!(
        "  pace      {} at once, at most {} per second; on voicemail: {}",
        s.max_concurrent,
        s.calls_per_second,
        match s.voicemail {
            OnVoicemail::Leave => "leave the message",
            OnVoicemail::Hangup => "hang up",
        }
    );
    println!("  created   {}", format_time(c.created_at));
    println!(
        "  contacts  {}: {} pending, {} in progress, {} done; {} attempts",
        p.total, p.pending, p.in_progress, p.done, p.attempts
    );
    if !p.outcomes.is_empty() {
        println!("  outcomes  {}", outcomes(&p));
    }
    Ok(())
}

fn outcomes(p: &Progress) -> String {
    p.outcomes
        .iter()
        .map(|o| format!("{} {}", o.outcome.as_deref().unwrap_or("-"), o.contacts))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn print_campaigns(store: &Store) -> anyhow::Result<()> {
    let campaigns = store.list_campaigns().await.context("listing campaigns")?;
    println!(
        "{:<36} {:<24} {:<10} {:<22} {:>8} {:>6} {:>8}",
        "id", "name", "status", "flow", "contacts", "done", "attempts"
    );
    for c in campaigns {
        let p = store.progress(&c.id).await.context("counting the contacts")?;
        println!(
            "{:<36} {:<24} {:<10} {:<22} {:>8} {:>6} {:>8}",
            c.id,
            c.name,
            c.status.as_str(),
            c.flow,
            p.total,
            p.done,
            p.attempts
        );
    }
    Ok(())
}

async fn results(store: &Store, id: &str, format: ResultsFormat) -> anyhow::Result<()> {
    find(store, id).await?;
    let contacts = store.results(id).await.context("reading the results")?;
    let mut out = std::io::stdout().lock();
    match format {
        ResultsFormat::Csv => write_results_csv(&contacts, &mut out).context("writing CSV")?,
        ResultsFormat::Json => {
            // The API's shape, so a script can read either.
            let body = serde_json::json!({ "contacts": contacts });
            serde_json::to_writer_pretty(&mut out, &body)?;
            writeln!(out)?;
        }
        ResultsFormat::Table => {
            writeln!(
                out,
                "{:<24} {:<16} {:<12} {:<16} {:>8}  last attempt",
                "name", "phone", "state", "outcome", "attempts"
            )?;
            for r in &contacts {
                let c = &r.contact;
                let last = r
                    .attempts
                    .last()
                    .map(|a| {
                        format!(
                            "{} {}",
                            format_time(a.dialed_at.unwrap_or(a.claimed_at)),
                            a.status
                        )
                    })
                    .unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:<24} {:<16} {:<12} {:<16} {:>8}  {last}",
                    c.name,
                    c.phone,
                    c.state.as_str(),
                    c.final_outcome.as_deref().unwrap_or("-"),
                    r.attempts.len()
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

async fn dnc(cmd: DncCommand) -> anyhow::Result<()> {
    match cmd {
        DncCommand::Add { phone, reason, store } => {
            let phone = PhoneNumber::parse(&phone)?;
            let store = store.open().await?;
            let now = jiff::Timestamp::now().as_millisecond();
            let added = store
                .add_dnc(phone.as_str(), reason.as_deref(), Some("cli"), now)
                .await
                .context("adding the number")?;
            if added {
                println!("{phone} is on the do-not-call list");
            } else {
                println!("{phone} was already on the do-not-call list");
            }
        }
        DncCommand::Remove { phone, store } => {
            let phone = PhoneNumber::parse(&phone)?;
            let store = store.open().await?;
            let removed = store
                .remove_dnc(phone.as_str())
                .await
                .context("removing the number")?;
            anyhow::ensure!(removed, "{phone} is not on the do-not-call list");
            println!("{phone} is off the do-not-call list");
        }
        DncCommand::List { store } => {
            let store = store.open().await?;
            let entries = store.list_dnc().await.context("reading the list")?;
            println!("{:<16} {:<21} {:<8} reason", "phone", "added", "source");
            for e in entries {
                println!(
                    "{:<16} {:<21} {:<8} {}",
                    e.phone,
                    format_time(e.added_at),
                    e.source.as_deref().unwrap_or("-"),
                    e.reason.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
