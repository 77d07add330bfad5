//! A panic inside a whisper worker fails only the transcription that hit it: the worker takes a
//! fresh whisper state and goes on. Injected with the `stt::transcribe` fail point; its own test
//! binary, because fail points are process-wide.
//! Needs the default whisper model: `switchboard models fetch whisper-tiny.en`.

use switchboard_audio::telephone::phone_line;
use switchboard_models::{ModelKind, ModelStore};
use switchboard_stt::testset::{CLEAR_VOICES, synthesize};
use switchboard_stt::{SttError, WhisperConfig, WhisperStt};

#[test]
fn a_panicking_transcription_fails_alone_and_the_worker_goes_on() {
    let model = ModelStore::discover()
        .and_then(|store| store.locate_default(ModelKind::Whisper))
        .unwrap_or_else(|e| panic!("{e}"));
    // One worker: if the panic ended it, nothing would be left to answer.
    let stt = WhisperStt::load(WhisperConfig {
        workers: 1,
        ..WhisperConfig::new(model)
    })
    .expect("whisper loads");
    let audio =
        phone_line(&synthesize("What time do you close on Saturday?", CLEAR_VOICES[0]).expect("speech"));
    let before = stt.transcribe_blocking(audio.clone()).expect("transcribes").text;
    assert!(before.to_lowercase().contains("saturday"), "{before:?}");

    fail::cfg("stt::transcribe", "1*panic(injected recognizer fault)").expect("fail point");
    let failed = stt.transcribe_blocking(audio.clone());
    assert!(matches!(failed, Err(SttError::Unavailable)), "{failed:?}");
    fail::remove("stt::transcribe");

    let after = stt
        .transcribe_blocking(audio)
        .expect("transcribes after the fault")
        .text;
    assert_eq!(after, before);
}
