//! WAV bytes through the runtime's reader (`switchboard transcribe`, `call --audio`, scenarios): any
//! bytes give audio or an error, never a panic or an allocation past `-malloc_limit_mb` (a header
//! that claims gigabytes); what is read is mono in [-1, 1] at a nonzero rate, and resamples to 16 kHz.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use switchboard_audio::{decode_wav, resample};

fuzz_target!(|data: &[u8]| {
    let Ok(audio) = decode_wav(data, Path::new("fuzz.wav")) else {
        return;
    };
    assert!(audio.sample_rate > 0);
    assert!(!audio.samples.is_empty());
    assert!(
        audio.samples.iter().all(|s| (-1.0..=1.0).contains(s)),
        "a sample out of [-1, 1]"
    );
    // Resampling is linear in the length, so only short clips, to keep the fuzzer fast.
    if audio.samples.len() <= 4096 {
        let _ = resample(&audio.samples, audio.sample_rate, 16_000);
    }
});
