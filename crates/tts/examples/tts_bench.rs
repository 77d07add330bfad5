//! Measures the synthesizer; prints, asserts nothing.
//!
//! `cargo run --release -p switchboard-tts --example tts_bench` prints the real-time factor (synthesis
//! time / audio duration) for phrases of about 1, 3 and 7 seconds.
//!
//! `... --example tts_bench -- voices [VOICE[:RATE[:GAP]] ...]` also measures the word error rate of the
//! default whisper model on agent phrases passed through the phone line, per voice setting; this is
//! how the default voice was chosen.

use std::path::PathBuf;
use std::time::Instant;

use switchboard_audio::telephone::MulawDecoder16k;
use switchboard_models::{ModelKind, ModelStore};
use switchboard_stt::wer::word_errors;
use switchboard_stt::{WhisperConfig, WhisperStt};
use switchboard_tts::{EspeakConfig, EspeakTts, to_phone_frames};

const TIMED: [&str; 3] = [
    "Sounds good.",
    "I can book you in for Tuesday at ten in the morning.",
    "Thanks for calling Bella's Bakery. We are open from eight until six on weekdays, and from nine until two on Saturdays.",
];

const AGENT_SENTENCES: [&str; 15] = [
    "Thanks for calling Bella's Bakery. We are open until six.",
    "Your appointment is confirmed for Tuesday at ten thirty in the morning.",
    "I'm sorry, I didn't catch that. Could you say it again?",
    "We deliver anywhere within five miles of the store.",
    "Let me transfer you to someone who can help with your order.",
    "Hello, this is the front desk. How can I help you today?",
    "Your order will be ready for pickup in about twenty minutes.",
    "Could you please spell your last name for me?",
    "We are closed on Sundays and public holidays.",
    "I have booked a table for four people on Friday evening.",
    "Is there anything else I can help you with?",
    "Can I have a phone number to reach you on?",
    "Please hold while I check our calendar.",
    "Your prescription has been sent to the pharmacy on Main Street.",
    "Thank you for your patience. Goodbye.",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tts = EspeakTts::start(EspeakConfig::default())?;
    tts.synthesize_blocking("Warm up.")?;
    println!("real-time factor, default voice ({:?})", tts.config());
    for text in TIMED {
        let runs = 5;
        let started = Instant::now();
        let mut audio = 0.0;
        for _ in 0..runs {
            audio = tts.synthesize_blocking(text)?.duration().as_secs_f64();
        }
        let took = started.elapsed().as_secs_f64() / f64::from(runs);
        println!(
            "  {audio:5.2} s of audio in {:6.1} ms: RTF {:.4} ({:.0}x real time)",
            took * 1e3,
            took / audio,
            audio / took
        );
    }

    if args.first().map(String::as_str) == Some("voices") {
        let mut settings: Vec<String> = args[1..].to_vec();
        if settings.is_empty() {
            settings = [
                "en-us:170:0",
                "en-us+f3:170:0",
                "en:170:0",
                "en-us:160:3",
                "en:160:3",
                "en-us+m3:160:3",
            ]
            .map(String::from)
            .to_vec();
        }
        let stt = WhisperStt::load(WhisperConfig::new(default_model()?))?;
        for setting in settings {
            let mut parts = setting.split(':');
            let voice = parts.next().unwrap_or("en-us").to_owned();
            let rate = parts.next().map_or(Ok(170), str::parse)?;
            let word_gap = parts.next().map_or(Ok(0), str::parse)?;
            let tts = EspeakTts::start(EspeakConfig {
                voice,
                rate,
                word_gap,
                ..EspeakConfig::default()
            })?;
            let (mut errors, mut words) = (0, 0);
            for sentence in AGENT_SENTENCES {
                let heard = through_the_phone(&stt, &tts, sentence)?;
                let (e, n) = word_errors(sentence, &heard);
                if e > 0 {
                    println!("    {e}/{n} {sentence:?} -> {heard:?}");
                }
                errors += e;
                words += n;
            }
            let first5: usize = AGENT_SENTENCES[..5]
                .iter()
                .map(|s| word_errors(s, &through_the_phone(&stt, &tts, s).unwrap_or_default()).0)
                .sum();
            let words5: usize = AGENT_SENTENCES[..5].iter().map(|s| word_errors(s, s).1).sum();
            println!(
                "  {setting:16} WER {:5.1} % over {words} words; first 5 (the test's): {:5.1} %",
                100.0 * errors as f64 / words as f64,
                100.0 * first5 as f64 / words5 as f64
            );
        }
    }
    Ok(())
}

fn through_the_phone(
    stt: &WhisperStt,
    tts: &EspeakTts,
    sentence: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let speech = tts.synthesize_blocking(sentence)?;
    let mut decoder = MulawDecoder16k::new();
    let mut wide = Vec::new();
    for frame in to_phone_frames(&speech) {
        decoder.decode(&frame, &mut wide);
    }
    decoder.flush(&mut wide);
    Ok(stt.transcribe_blocking(wide)?.text)
}

fn default_model() -> Result<PathBuf, Box<dyn std::error::Error>> {
    Ok(ModelStore::discover()?.locate_default(ModelKind::Whisper)?)
}
