//! Trimming the silence a synthesizer leaves around a phrase.
//!
//! espeak-ng ends every clause with a pause (a few hundred milliseconds after a full stop). Phrases are
//! played back to back, so that pause would add up with the pipeline's own pacing into audible gaps;
//! cutting to the bare sound would instead clip soft onsets and decays. A short margin is kept on each
//! side so consecutive phrases join like words in one breath group.

use std::time::Duration;

/// Length of the analysis window. 10 ms is shorter than any phoneme, so the speech boundary is found to
/// within one window.
const WINDOW: Duration = Duration::from_millis(10);

/// A window is sound when its RMS is within this factor (-40 dB) of the loudest window of the phrase.
const RELATIVE_FLOOR: f64 = 0.01;

/// ... and above this absolute RMS (about -60 dBFS), so a near-silent phrase is not all "sound".
const ABSOLUTE_FLOOR: f64 = 32.0;

/// The part of `samples` from `keep` before the first sound to `keep` after the last one. Empty when
/// nothing stands out as sound (silence, or an empty input).
pub fn trim_silence(samples: &[i16], sample_rate: u32, keep: Duration) -> &[i16] {
    let window = ((f64::from(sample_rate) * WINDOW.as_secs_f64()) as usize).max(1);
    let rms: Vec<f64> = samples
        .chunks(window)
        .map(|w| (w.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / w.len() as f64).sqrt())
        .collect();
    let loudest = rms.iter().copied().fold(0.0, f64::max);
    let floor = (loudest * RELATIVE_FLOOR).max(ABSOLUTE_FLOOR);
    let (Some(first), Some(last)) = (
        rms.iter().position(|&r| r > floor),
        rms.iter().rposition(|&r| r > floor),
    ) else {
        return &[];
    };
    let margin = (f64::from(sample_rate) * keep.as_secs_f64()).round() as usize;
    let start = (first * window).saturating_sub(margin);
    let end = ((last + 1) * window + margin).min(samples.len());
    &samples[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 22_050;

    fn tone(len: usize, amplitude: f64) -> Vec<i16> {
        (0..len)
            .map(|n| {
                (amplitude * (2.0 * std::f64::consts::PI * 300.0 * n as f64 / f64::from(RATE)).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn keeps_fifty_ms_around_the_sound() {
        let mut x = vec![0i16; RATE as usize]; // 1 s of silence
        x.extend(tone(RATE as usize / 2, 8000.0));
        x.extend(vec![0i16; RATE as usize]);
        let trimmed = trim_silence(&x, RATE, Duration::from_millis(50));
        let expected = RATE as usize / 2 + 2 * (RATE as usize / 20);
        // Within one 10 ms window of the ideal on each side.
        let window = RATE as usize / 100;
        assert!(
            trimmed.len().abs_diff(expected) <= 2 * window,
            "{} vs {expected}",
            trimmed.len()
        );
        let lead = trimmed.iter().position(|&s| s != 0).expect("sound");
        assert!(lead.abs_diff(RATE as usize / 20) <= window, "lead {lead}");
    }

    #[test]
    fn a_quiet_tail_below_minus_40_db_is_cut_but_a_soft_word_is_kept() {
        let mut x = tone(RATE as usize / 2, 10_000.0);
        x.extend(tone(RATE as usize / 4, 300.0)); // -30 dB: a soft ending, kept
        x.extend(tone(RATE as usize / 2, 20.0)); // hiss, cut
        let trimmed = trim_silence(&x, RATE, Duration::ZERO);
        let window = RATE as usize / 100;
        assert!(
            trimmed.len().abs_diff(RATE as usize * 3 / 4) <= window,
            "{}",
            trimmed.len()
        );
    }

    #[test]
    fn silence_and_empty_input_trim_to_nothing() {
        assert!(trim_silence(&[], RATE, Duration::from_millis(50)).is_empty());
        assert!(trim_silence(&vec![0; 5000], RATE, Duration::from_millis(50)).is_empty());
        assert!(trim_silence(&tone(5000, 10.0), RATE, Duration::from_millis(50)).is_empty());
    }

    #[test]
    fn margins_are_clamped_to_the_clip() {
        let x = tone(RATE as usize / 10, 8000.0);
        assert_eq!(trim_silence(&x, RATE, Duration::from_millis(50)).len(), x.len());
    }
}
