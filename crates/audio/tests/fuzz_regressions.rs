//! Every input the `wav` fuzz target crashed on (`fuzz/regressions/wav/`), replayed through the same
//! code path with the same checks: WAV bytes give an error or mono audio in [-1, 1] at a nonzero rate.

use std::path::{Path, PathBuf};

use switchboard_audio::{decode_wav, resample};

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

#[test]
fn wav_crash_inputs_read_or_fail_cleanly() {
    for path in regressions("wav") {
        let bytes = std::fs::read(&path).expect("readable");
        let Ok(audio) = decode_wav(bytes.as_slice(), &path) else {
            continue;
        };
        let name = path.display();
        assert!(audio.sample_rate > 0, "{name}");
        assert!(!audio.samples.is_empty(), "{name}");
        assert!(
            audio.samples.iter().all(|s| (-1.0..=1.0).contains(s)),
            "{name}: a sample out of [-1, 1]"
        );
        if audio.samples.len() <= 4096 {
            let _ = resample(&audio.samples, audio.sample_rate, 16_000);
        }
    }
}
