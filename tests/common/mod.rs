//! Shared by the black-box tests: running the binary, and `switchboard serve` on a free port.

#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Runs `switchboard ARGS` from the checkout, with a data directory of its own for in-process calls.
pub fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0")
        .env(
            "SWITCHBOARD_DATA_DIR",
            std::env::temp_dir().join("switchboard-test-data"),
        )
        .output()
        .expect("the binary runs")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The bundled caller recording: "could you tell me your opening hours on Saturday?"
pub fn sample() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/caller-hours.wav")
        .display()
        .to_string()
}

/// `text` spoken by flite's slt voice into `dir/name`; returns the WAV's path. A sentence in a voice
/// the speech-to-text has not been tuned on, for a caller turn no bundled recording has.
pub fn spoken(dir: &Path, name: &str, text: &str) -> String {
    let wav = dir.join(name);
    let status = Command::new("flite")
        .args(["-voice", "slt", "-t", text, "-o"])
        .arg(&wav)
        .status()
        .expect("flite runs (make setup installs it)");
    assert!(status.success(), "flite failed on {text:?}");
    wav.display().to_string()
}

/// Reads `child`'s stdout until a line yields something to `find`, then keeps draining it in the
/// background so the child never blocks (or fails) writing to a full or closed pipe.
pub fn first_line<T>(child: &mut Child, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut seen = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = lines.read_line(&mut line).expect("stdout reads");
        assert!(n > 0, "{what} exited without saying what it should:\n{seen}");
        if let Some(found) = find(line.trim()) {
            std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
            return found;
        }
        seen.push_str(&line);
    }
}

/// `switchboard serve` on a free port with its own data directory; killed (SIGKILL) on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn start() -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir").keep())
    }

    /// Starts on `data_dir` (a restart keeps the call log there).
    pub fn start_in(data_dir: PathBuf) -> Self {
        Self::start_with(data_dir, None)
    }

    /// Starts on `data_dir` with a configuration file. The server's log is appended to
    /// `serve.log` there, for when a test fails.
    pub fn start_with(data_dir: PathBuf, config: Option<&Path>) -> Self {
        Self::start_with_env(data_dir, config, &[])
    }

    /// [`Server::start_with`] with extra environment variables for the server process.
    pub fn start_with_env(data_dir: PathBuf, config: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("serve.log"))
            .expect("the server's log file opens");
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(&data_dir);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .envs(env.iter().copied())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("serve starts");
        let url = first_line(&mut child, "serve", |line| {
            let rest = line.strip_prefix("switchboard listening on ")?;
            rest.split_whitespace().next().map(str::to_string)
        });
        Server { child, url, data_dir }
    }

    /// Creates an API key with `switchboard keys create` on this server's data directory.
    pub fn api_key(&self) -> String {
        let out = switchboard(&[
            "keys",
            "create",
            "--name",
            "test",
            "--data-dir",
            self.data_dir.to_str().expect("utf-8 path"),
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        let key = stdout
            .lines()
            .last()
            .expect("the key is printed")
            .trim()
            .to_string();
        assert!(key.starts_with("sb_"), "{stdout}");
        key
    }

    /// Like a crash: SIGKILL, no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
