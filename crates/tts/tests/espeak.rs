//! The real libespeak-ng through the engine: audio shape, trimming, concurrency, queue limits, shutdown.

use std::sync::Arc;
use std::time::Duration;

use switchboard_tts::{EspeakConfig, EspeakTts, LoadError, Speech, TextToSpeech, TtsError};

const BAKERY: &str = "Thanks for calling Bella's Bakery. We are open until six.";

fn rms(samples: &[i16]) -> f64 {
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

fn ms(speech: &Speech, millis: u64) -> usize {
    (u64::from(speech.sample_rate) * millis / 1000) as usize
}

#[test]
fn a_greeting_is_a_few_seconds_of_trimmed_speech_at_22050_hz() {
    let tts = EspeakTts::start(EspeakConfig::default()).expect("espeak-ng starts");
    assert_eq!(tts.sample_rate(), 22_050);
    let speech = tts.synthesize_blocking(BAKERY).expect("synthesizes");
    assert_eq!(speech.sample_rate, 22_050);
    let secs = speech.duration().as_secs_f64();
    assert!((2.0..=6.0).contains(&secs), "duration {secs:.2} s");

    let level = rms(&speech.samples);
    assert!(level > 1000.0, "rms {level:.0}: too quiet to be speech");

    // Trimmed: the 50 ms margins at each end are quiet compared with the speech...
    let edge = ms(&speech, 40);
    let (head, tail) = (
        &speech.samples[..edge],
        &speech.samples[speech.samples.len() - edge..],
    );
    assert!(
        rms(head) < level / 10.0,
        "head rms {:.0} vs {level:.0}",
        rms(head)
    );
    assert!(
        rms(tail) < level / 10.0,
        "tail rms {:.0} vs {level:.0}",
        rms(tail)
    );
    // ...but the sound starts and ends soon after them, not after espeak-ng's clause pause.
    let loud = |s: &i16| i32::from(*s).abs() > 1000;
    let lead = speech.samples.iter().position(loud).expect("some loud sample");
    let trail = speech.samples.len() - 1 - speech.samples.iter().rposition(loud).expect("some loud sample");
    assert!(
        lead <= ms(&speech, 150),
        "leading silence {} ms",
        lead * 1000 / 22_050
    );
    assert!(
        trail <= ms(&speech, 250),
        "trailing silence {} ms",
        trail * 1000 / 22_050
    );
}

#[test]
fn a_faster_rate_gives_shorter_audio() {
    let slow = EspeakTts::start(EspeakConfig {
        rate: 130,
        ..EspeakConfig::default()
    })
    .expect("starts");
    let fast = EspeakTts::start(EspeakConfig {
        rate: 260,
        ..EspeakConfig::default()
    })
    .expect("starts");
    // Two engines in one process share the library: each must still get its own settings.
    let a = slow.synthesize_blocking(BAKERY).expect("slow").duration();
    let b = fast.synthesize_blocking(BAKERY).expect("fast").duration();
    let c = slow.synthesize_blocking(BAKERY).expect("slow again").duration();
    assert!(
        a.abs_diff(c) < Duration::from_millis(20),
        "{a:?} then {c:?} at the same rate"
    );
    assert!(b.as_secs_f64() < a.as_secs_f64() * 0.7, "{b:?} vs {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_requests_each_get_their_own_audio() {
    let tts = Arc::new(EspeakTts::start(EspeakConfig::default()).expect("starts"));
    let words = ["one", "two", "three", "four", "five", "six", "seven", "eight"];
    let texts: Vec<String> = (1..=words.len()).map(|n| words[..n].join(" ")).collect();

    // What each text sounds like alone. espeak-ng carries a little state from one phrase to the next
    // (its lengths vary by a few samples), so "the same audio" means the same length within 20 ms; the
    // texts differ by a whole word (hundreds of milliseconds) each, so any cross-talk would show.
    let mut alone = Vec::new();
    for text in &texts {
        alone.push(tts.synthesize(text.clone()).await.expect("synthesizes alone"));
    }

    let mut tasks = Vec::new();
    for text in texts.iter().rev() {
        let tts = Arc::clone(&tts);
        let text = text.clone();
        tasks.push(tokio::spawn(async move { tts.synthesize(text).await }));
    }
    let mut together: Vec<Speech> = Vec::new();
    for task in tasks {
        together.push(task.await.expect("task runs").expect("synthesizes concurrently"));
    }
    together.reverse();

    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        let diff = a.samples.len().abs_diff(b.samples.len());
        assert!(
            diff <= ms(a, 20),
            "request {i} ({:?}): {:?} alone, {:?} concurrent",
            texts[i],
            a.duration(),
            b.duration()
        );
    }
    for pair in together.windows(2) {
        assert!(
            pair[0].duration() < pair[1].duration(),
            "a longer text must give longer audio"
        );
    }
}

#[test]
fn a_full_queue_is_refused_as_overloaded_and_the_accepted_requests_complete() {
    let tts = EspeakTts::start(EspeakConfig {
        queue: 2,
        ..EspeakConfig::default()
    })
    .expect("starts");
    let long = "We are open from eight in the morning until six in the evening on weekdays. ".repeat(8);
    let mut accepted = Vec::new();
    let mut overloaded = Vec::new();
    // Queued without waiting: far faster than the thread can speak them.
    for _ in 0..40 {
        match tts.enqueue(&long) {
            Ok(pending) => accepted.push(pending),
            Err(TtsError::Overloaded(n)) => overloaded.push(n),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        !overloaded.is_empty(),
        "40 long requests never filled a queue of 2"
    );
    assert!(overloaded.iter().all(|&n| (1..=2).contains(&n)), "{overloaded:?}");
    assert!(accepted.len() >= 2, "only {} accepted", accepted.len());
    for pending in accepted {
        let speech = pending.wait().expect("an accepted request is answered");
        assert!(speech.duration() > Duration::from_secs(20));
    }
}

#[tokio::test]
async fn empty_blank_and_overlong_text_are_bad_input() {
    let tts = EspeakTts::start(EspeakConfig {
        max_chars: 100,
        ..EspeakConfig::default()
    })
    .expect("starts");
    for text in ["", "   ", "\n\t ", "\0"] {
        match tts.synthesize(text.to_owned()).await {
            Err(TtsError::BadInput(_)) => {}
            other => panic!("{text:?}: expected BadInput, got {other:?}"),
        }
    }
    match tts.synthesize("a".repeat(101)).await {
        Err(TtsError::BadInput(msg)) => assert!(msg.contains("101"), "{msg}"),
        other => panic!("expected BadInput, got {other:?}"),
    }
    // A NUL inside real text is not allowed to cut it short or fail: it is spoken as a space.
    let with_nul = tts
        .synthesize("Hello\0there".to_owned())
        .await
        .expect("synthesizes");
    let plain = tts
        .synthesize("Hello there".to_owned())
        .await
        .expect("synthesizes");
    assert!(with_nul.samples.len().abs_diff(plain.samples.len()) <= ms(&plain, 20));
}

#[tokio::test]
async fn after_shutdown_requests_are_unavailable() {
    let tts = EspeakTts::start(EspeakConfig::default()).expect("starts");
    tts.synthesize("Hello.".to_owned())
        .await
        .expect("works before shutdown");
    tts.shutdown();
    match tts.synthesize("Hello.".to_owned()).await {
        Err(TtsError::Unavailable) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    tts.shutdown(); // twice is fine
}

#[test]
fn an_unknown_voice_or_rate_fails_at_start() {
    match EspeakTts::start(EspeakConfig {
        voice: "xx-nonexistent".into(),
        ..EspeakConfig::default()
    }) {
        Err(LoadError::Engine(msg)) => assert!(msg.contains("xx-nonexistent"), "{msg}"),
        other => panic!("expected an engine error, got {other:?}"),
    }
    assert!(matches!(
        EspeakTts::start(EspeakConfig {
            rate: 20,
            ..EspeakConfig::default()
        }),
        Err(LoadError::Config(_))
    ));
}
