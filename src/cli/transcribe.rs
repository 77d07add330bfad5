//! `switchboard transcribe FILE.wav`: the speech-to-text engine on a file, as a call would use it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use switchboard_stt::window::WindowPolicy;
use switchboard_stt::{WhisperConfig, WhisperStt};

#[derive(Debug, clap::Args)]
pub struct TranscribeArgs {
    /// WAV file: any sample rate, mono or stereo, 8/16/24/32-bit integer or 32-bit float.
    pub file: PathBuf,
    /// Model name from `switchboard models list`, or a path to a whisper.cpp ggml file.
    #[arg(long)]
    pub model: Option<String>,
    /// Pass the audio through a phone line first (8 kHz mu-law and back), as a caller would sound.
    #[arg(long)]
    pub telephone: bool,
    /// Print JSON: the text, segments with timestamps, and timings.
    #[arg(long)]
    pub json: bool,
    /// Encoder window: `auto` (sized to the audio), `full` (whisper's 30 s), or a number of 20 ms frames.
    #[arg(long, default_value = "auto")]
    pub window: String,
    /// Inference threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Serialize)]
struct JsonOutput {
    file: String,
    model: String,
    text: String,
    segments: Vec<JsonSegment>,
    audio_seconds: f64,
    telephone: bool,
    timings_ms: JsonTimings,
}

#[derive(Debug, Serialize)]
struct JsonSegment {
    start: f64,
    end: f64,
    text: String,
}

#[derive(Debug, Serialize)]
struct JsonTimings {
    load: f64,
    read_audio: f64,
    inference: f64,
    audio_ctx: u32,
}

pub fn parse_window(s: &str) -> anyhow::Result<WindowPolicy> {
    match s {
        "auto" => Ok(WindowPolicy::Adaptive),
        "full" => Ok(WindowPolicy::Full),
        n => {
            let frames: u32 = n
                .parse()
                .with_context(|| format!("--window {n:?}: expected auto, full or a number"))?;
            anyhow::ensure!(
                (1..=1500).contains(&frames),
                "--window {frames}: must be between 1 and 1500"
            );
            Ok(WindowPolicy::Fixed(frames))
        }
    }
}

pub fn run(args: TranscribeArgs) -> anyhow::Result<()> {
    let window = parse_window(&args.window)?;
    let model_path =
        super::resolve::model_path(switchboard_models::ModelKind::Whisper, args.model.as_deref())?;

    let read_started = Instant::now();
    let mut samples = switchboard_audio::wav::read_wav_16k(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    if args.telephone {
        samples = switchboard_audio::telephone::phone_line(&samples);
    }
    let read_audio = read_started.elapsed();
    anyhow::ensure!(!samples.is_empty(), "{} contains no audio", args.file.display());

    let mut config = WhisperConfig::new(&model_path);
    config.window = window;
    config.timestamps = args.json;
    // One file: no first caller to protect from the cold start, so skip the warm-up.
    config.warm_up = false;
    if let Some(t) = args.threads {
        config.threads = t;
    }
    let stt = WhisperStt::load(config).context("loading the speech-to-text model")?;
    let transcript = stt.transcribe_blocking(samples).context("transcribing")?;

    if args.json {
        let out = JsonOutput {
            file: args.file.display().to_string(),
            model: model_path.display().to_string(),
            text: transcript.text.clone(),
            segments: transcript
                .segments
                .iter()
                .map(|s| JsonSegment {
                    start: s.start.as_secs_f64(),
                    end: s.end.as_secs_f64(),
                    text: s.text.clone(),
                })
                .collect(),
            audio_seconds: transcript.audio.as_secs_f64(),
            telephone: args.telephone,
            timings_ms: JsonTimings {
                load: ms(stt.load_time()),
                read_audio: ms(read_audio),
                inference: ms(transcript.timings.inference),
                audio_ctx: transcript.timings.audio_ctx,
            },
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", transcript.text);
    }
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
