//! `switchboard config show`: the settings `serve` would run with, after every layer (defaults, the
//! file, the environment, flags), written in the configuration file's own format so it can be copied
//! into one. Secrets are never printed: the auth token only says whether it is set, and passwords in
//! URLs are masked.

use std::fmt::Write as _;

use super::serve::{DEV_AUTH_TOKEN, ServeArgs, Settings};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets masked).
    Show(ServeArgs),
}

pub fn run(cmd: ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Show(args) => {
            print!("{}", render(&Settings::load(&args)?));
            Ok(())
        }
    }
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `url` with any password replaced by `***`. A value that is not a URL with a host (or a SQLite
/// path) is not shown at all, since where a secret would be in it cannot be told: `user:pw@db`
/// parses as a URL of scheme `user`.
pub fn masked_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.has_host() || parsed.scheme() == "sqlite" => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have credentials, and those have no password.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        _ => "(set, not shown: not a URL with a host)".to_string(),
    }
}

fn optional(out: &mut String, key: &str, value: Option<&str>, unset: &str) {
    match value {
        Some(v) => writeln!(out, "{key} = {}", quoted(v)),
        None => writeln!(out, "# {key}: not set ({unset})"),
    }
    .expect("writing to a String");
}

pub fn render(s: &Settings) -> String {
    let mut out = String::new();
    let w = &mut out;
    // Writing to a String cannot fail.
    let _ = (|| -> std::fmt::Result {
        writeln!(
            w,
            "# The configuration `switchboard serve` runs with (defaults, --config file, environment, flags)."
        )?;
        writeln!(w, "# Secrets are not shown.")?;
        writeln!(w, "listen = {}", quoted(&s.listen))?;
        writeln!(w, "port = {}", s.port)?;
        optional(
            w,
            "public_url",
            s.public_url.as_deref(),
            "signatures are checked against http:// + the Host header",
        );
        writeln!(w, "data_dir = {}", quoted(&s.data_dir.display().to_string()))?;
        writeln!(w, "flows_dir = {}", quoted(&s.flows_dir.display().to_string()))?;
        writeln!(w, "default_flow = {}", quoted(&s.default_flow))?;
        writeln!(w, "max_calls = {}", s.max_calls)?;
        writeln!(w, "record_calls = {}", s.record_calls)?;
        match &s.database_url {
            Some(url) => writeln!(w, "database_url = {}", quoted(&masked_url(url)))?,
            None => writeln!(
                w,
                "# database_url: not set (SQLite: {})",
                s.data_dir.join("calls.db").display()
            )?,
        }
        writeln!(w, "retention_days = {}", s.retention_days)?;
        writeln!(w, "log_pii = {}", s.log_pii)?;
        writeln!(w, "runtime = {}", quoted(&s.runtime))?;

        writeln!(w, "\n[numbers]")?;
        for (number, flow) in &s.numbers {
            writeln!(w, "{} = {}", quoted(number), quoted(flow))?;
        }

        writeln!(w, "\n[provider]")?;
        optional(
            w,
            "account_sid",
            s.account_sid.as_deref(),
            "no REST call control, no campaigns",
        );
        if s.auth_token.expose() == DEV_AUTH_TOKEN {
            writeln!(
                w,
                "# auth_token: not set (the development token is used: loopback only)"
            )?;
        } else {
            writeln!(w, "# auth_token: set, not shown")?;
        }
        match &s.rest_base_url {
            Some(url) => writeln!(w, "rest_base_url = {}", quoted(&masked_url(url)))?,
            None => writeln!(w, "# rest_base_url: not set (the provider's own)")?,
        }

        writeln!(w, "\n[models]")?;
        optional(
            w,
            "whisper",
            s.whisper.as_deref(),
            "the default from models/manifest.toml",
        );
        optional(
            w,
            "llm",
            s.llm.as_deref(),
            "the default from models/manifest.toml",
        );
        optional(
            w,
            "voice",
            s.voice.as_deref(),
            "espeak-ng's default English voice",
        );

        writeln!(w, "\n[campaigns]")?;
        writeln!(w, "enabled = {}", s.campaigns_enabled)?;
        writeln!(w, "tick_ms = {}", s.scheduler.tick.as_millis())?;
        writeln!(w, "lease_seconds = {}", s.scheduler.lease.as_secs())?;
        writeln!(w, "dial_timeout_seconds = {}", s.scheduler.dial_timeout.as_secs())?;
        writeln!(w, "settle_after_seconds = {}", s.scheduler.settle_after.as_secs())?;
        Ok(())
    })();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_and_non_urls_hidden() {
        assert_eq!(
            masked_url("postgres://app:s3cret@db.internal:5432/calls"),
            "postgres://app:***@db.internal:5432/calls"
        );
        assert_eq!(masked_url("sqlite://data/calls.db"), "sqlite://data/calls.db");
        assert_eq!(masked_url("https://api.example.com"), "https://api.example.com/");
        assert!(!masked_url("app:s3cret@db").contains("s3cret"));
    }

    #[test]
    fn the_rendering_is_a_valid_configuration_file() {
        let settings = Settings::load(&ServeArgs {
            config: None,
            port: Some(9000),
            data_dir: None,
        })
        .expect("defaults load");
        let text = render(&settings);
        let file =
            super::super::config_file::FileConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(file.port, Some(9000));
        assert_eq!(file.log_pii, Some(false));
    }
}
