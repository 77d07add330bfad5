//! The `switchboard` command: one binary for running the runtime and for the developer tools around it.
//! Each subcommand lives in its own module under `cli/`; this file only parses and dispatches.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "AI voice agent runtime with local speech and language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch, verify and list the model files.
    #[command(subcommand)]
    Models(cli::models::ModelsCommand),
    /// Transcribe a WAV file with the local speech-to-text model.
    Transcribe(cli::transcribe::TranscribeArgs),
    /// Chat with the local language model in the terminal, or get one structured answer.
    Chat(cli::chat::ChatArgs),
    /// Run the runtime: webhooks and media streams answered by the flows.
    Serve(cli::serve::ServeArgs),
    /// Place a simulated call from a recording against the server (in-process or running).
    Call(cli::call::CallArgs),
    /// Play the telephony provider's REST side on loopback: the runtime's outbound calls are answered
    /// as a numbers file says.
    SimulateProvider(cli::simulate_provider::SimulateProviderArgs),
    /// Browse and export the call log.
    #[command(subcommand)]
    Calls(cli::calls::CallsCommand),
    /// Outbound campaigns: create, import contacts, start, pause, status, results; the do-not-call list.
    #[command(subcommand)]
    Campaign(cli::campaign::CampaignCommand),
    /// Create, list and revoke API keys for the call log API and web page.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Show the configuration `serve` would run with (secrets masked).
    #[command(subcommand)]
    Config(cli::config::ConfigCommand),
    /// Check flow files and run scenarios against them.
    #[command(subcommand)]
    Flows(cli::flows::FlowsCommand),
    /// Measure speed and accuracy and print a table.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    if !serving {
        // Rust ignores SIGPIPE, so printing into a pipe whose reader has gone (`| head`) panics; the
        // tools end quietly like other command-line programs instead. `serve` keeps ignoring it: a
        // runtime with calls in progress must not die because whoever read its output went away.
        sigpipe::reset();
    }
    cli::init_tracing(serving);
    match cli.command {
        Command::Models(cmd) => cli::models::run(cmd),
        Command::Transcribe(args) => cli::transcribe::run(args),
        Command::Chat(args) => cli::chat::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Call(args) => cli::call::run(args),
        Command::SimulateProvider(args) => cli::simulate_provider::run(args),
        Command::Calls(cmd) => cli::calls::run(cmd),
        Command::Campaign(cmd) => cli::campaign::run(cmd),
        Command::Keys(cmd) => cli::keys::run(cmd),
        Command::Config(cmd) => cli::config::run(cmd),
        Command::Flows(cmd) => cli::flows::run(cmd),
        Command::Bench(cmd) => cli::bench::run(cmd),
    }
}
