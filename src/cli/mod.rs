//! Subcommands of the `switchboard` binary.

pub mod bench;
pub mod bench_calls;
pub mod bench_llm;
pub mod call;
pub mod chat;
pub mod flows;
pub mod models;
pub mod resolve;
pub mod serve;
pub mod transcribe;

/// Logs go to stderr so that a command's real output (a transcript, JSON) can be piped.
/// `RUST_LOG` overrides the default level (warnings, and switchboard's own info lines).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
