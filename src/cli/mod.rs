//! Subcommands of the `switchboard` binary.

pub mod bench;
pub mod bench_calls;
pub mod bench_llm;
pub mod bench_render;
pub mod bench_report;
pub mod bench_understand;
pub mod call;
pub mod calls;
pub mod campaign;
pub mod chat;
pub mod config;
pub mod config_file;
pub mod flows;
pub mod keys;
pub mod models;
pub mod resolve;
pub mod serve;
pub mod simulate_provider;
pub mod transcribe;

/// Logs go to stderr so that a command's real output (a transcript, JSON) can be piped.
/// `RUST_LOG` overrides the default level: warnings, plus the server's info lines (calls starting and
/// ending, with outcome and latencies, never transcripts) when `server` is set.
pub fn init_tracing(server: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if server {
        "warn,switchboard_server=info"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
