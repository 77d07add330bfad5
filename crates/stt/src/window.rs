//! Choosing whisper's encoder window (`audio_ctx`) for an utterance.
//!
//! One encoder frame covers 20 ms of audio (two 10 ms mel frames, halved by the second convolution), so a
//! clip of `s` seconds needs at least `50·s` frames. Small windows are a trap: measured on our spoken test
//! set through the phone path (`switchboard bench stt`), tiny.en fell into repetition loops with a 256-frame
//! window on most short clips (word error rate 160–535 %) and on some with 384 (63 % for one voice), while
//! 512 matched or beat the full 30 s window (2.5–5 % vs 2.5–11 %). So the smallest window is 512 frames
//! (10.24 s), and longer clips round up, with 64 frames (1.28 s) of margin after the speech, to a few fixed
//! buckets so that whisper.cpp sees only a handful of graph shapes.

/// Whisper's full window: 30 s.
pub const FULL_AUDIO_CTX: u32 = 1500;
/// Smallest window we use, whatever the clip: 512 frames = 10.24 s.
pub const MIN_AUDIO_CTX: u32 = 512;
/// Frames of margin kept after the end of the speech.
pub const MARGIN_FRAMES: u32 = 64;
/// The windows we choose from, ascending.
pub const BUCKETS: [u32; 4] = [MIN_AUDIO_CTX, 768, 1024, FULL_AUDIO_CTX];

/// The encoder window for `samples` samples at 16 kHz.
pub fn audio_ctx_for(samples: usize) -> u32 {
    // 320 samples of 16 kHz audio per encoder frame.
    let needed = (samples as u64).div_ceil(320) + u64::from(MARGIN_FRAMES);
    BUCKETS
        .iter()
        .copied()
        .find(|&b| u64::from(b) >= needed)
        .unwrap_or(FULL_AUDIO_CTX)
}

/// How the engine sizes the encoder window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowPolicy {
    /// Sized to each utterance from [`BUCKETS`].
    #[default]
    Adaptive,
    /// Always the full 30 s window (whisper's default): slower, used as the reference in benchmarks.
    Full,
    /// A fixed window, for experiments.
    Fixed(u32),
}

impl WindowPolicy {
    pub fn audio_ctx(self, samples: usize) -> u32 {
        match self {
            WindowPolicy::Adaptive => audio_ctx_for(samples),
            WindowPolicy::Full => FULL_AUDIO_CTX,
            WindowPolicy::Fixed(n) => n.clamp(1, FULL_AUDIO_CTX),
        }
    }
}

/// A cap on decoded tokens for a clip: speech rarely exceeds five tokens a second, so a decoder still
/// going past eight a second (plus slack for short clips) is looping, and stopping it bounds the damage
/// and the time.
pub fn max_tokens_for(samples: usize) -> u32 {
    let seconds = (samples as u64).div_ceil(16_000);
    u32::try_from(16 + 8 * seconds).unwrap_or(u32::MAX)
}

/// Whether a decode went round a loop: it ran into the token cap of [`max_tokens_for`], or its text
/// repeats a phrase of two to eight words three times in a row, or one word five times ("no no no" is
/// speech; "sounds good sounds good sounds good" is whisper stuck).
pub fn looks_looped(text: &str, tokens: usize, max_tokens: u32) -> bool {
    if u32::try_from(tokens).unwrap_or(u32::MAX) >= max_tokens {
        return true;
    }
    let words = crate::wer::normalize(text);
    (1..=8).any(|n| {
        let times = if n == 1 { 5 } else { 3 };
        words.len() >= n * times
            && (0..=words.len() - n * times)
                .any(|i| (1..times).all(|k| words[i..i + n] == words[i + k * n..i + (k + 1) * n]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clips_get_the_minimum_window() {
        assert_eq!(audio_ctx_for(16_000), MIN_AUDIO_CTX); // 1 s
        assert_eq!(audio_ctx_for(0), MIN_AUDIO_CTX);
    }

    #[test]
    fn every_clip_keeps_its_margin() {
        for secs_x10 in 1..=300u32 {
            let samples = secs_x10 as usize * 1_600;
            let ctx = audio_ctx_for(samples);
            let frames = (samples as u32).div_ceil(320);
            assert!(
                ctx >= (frames + MARGIN_FRAMES).min(FULL_AUDIO_CTX),
                "{samples} samples got window {ctx}"
            );
            assert!(BUCKETS.contains(&ctx));
        }
    }

    #[test]
    fn token_cap_leaves_room_for_fast_speech() {
        assert_eq!(max_tokens_for(16_000), 24);
        // 7 s at a fast five tokens a second fits.
        assert!(max_tokens_for(112_000) >= 35);
    }

    #[test]
    fn three_and_seven_second_clips() {
        assert_eq!(audio_ctx_for(48_000), 512); // 150 + 64 = 214
        assert_eq!(audio_ctx_for(112_000), 512); // 350 + 64 = 414
        assert_eq!(audio_ctx_for(160_000), 768); // 500 + 64 = 564
        assert_eq!(audio_ctx_for(16_000 * 40), FULL_AUDIO_CTX);
    }

    #[test]
    fn loops_are_told_from_speech() {
        let cap = max_tokens_for(16_000);
        assert!(looks_looped(
            "sound good sound good Sound Good, sound good sound",
            12,
            cap
        ));
        assert!(looks_looped("no no no no no", 6, cap));
        assert!(
            looks_looped("anything at all", cap as usize, cap),
            "ran into the cap"
        );
        for speech in [
            "No, no, no, I said Friday.",
            "Bye bye.",
            "Thank you, thank you.",
            "I would like to reschedule to Friday at 3 in the afternoon.",
            "",
        ] {
            assert!(!looks_looped(speech, 14, cap), "{speech:?}");
        }
    }
}
