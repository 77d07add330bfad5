//! A panic on the synthesis thread fails only the phrase that hit it; the thread goes on with the
//! next. Injected with the `tts::synthesize` fail point; its own test binary, because fail points
//! are process-wide.

use switchboard_tts::{EspeakConfig, EspeakTts, TtsError};

#[test]
fn a_panicking_synthesis_fails_alone_and_the_thread_goes_on() {
    let tts = EspeakTts::start(EspeakConfig::default()).expect("espeak-ng starts");
    let before = tts
        .synthesize_blocking("We are open until six.")
        .expect("synthesizes");

    fail::cfg("tts::synthesize", "1*panic(injected synthesis fault)").expect("fail point");
    let failed = tts.synthesize_blocking("We are open until six.");
    assert!(matches!(failed, Err(TtsError::Unavailable)), "{failed:?}");
    fail::remove("tts::synthesize");

    let after = tts
        .synthesize_blocking("We are open until six.")
        .expect("synthesizes after the fault");
    // espeak-ng's output is not bit-identical from one call to the next; the same sentence is
    // about as long and as loud.
    let (a, b) = (after.duration().as_secs_f64(), before.duration().as_secs_f64());
    assert!((a - b).abs() < 0.1 * b, "{a:.2} s after, {b:.2} s before");
    let rms =
        |s: &[i16]| (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt();
    assert!(rms(&after.samples) > 1000.0, "speech, not silence");
}
