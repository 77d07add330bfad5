//! Synthesized speech onto the phone line: 8 kHz mu-law in 20 ms frames.

use switchboard_audio::telephone::{FRAME_BYTES, MulawEncoder8k};
use switchboard_audio::wav::i16_to_f32;
use switchboard_core::tts::Speech;

/// Resamples `speech` to 8 kHz (band-limited below 4 kHz by the audio crate's resampler), encodes it
/// as G.711 mu-law, and cuts it into 160-byte (20 ms) frames; the last frame is padded with mu-law
/// silence (0xFF). Speech with a sample rate of 0 has no duration and gives no frames.
#[must_use]
pub fn to_phone_frames(speech: &Speech) -> Vec<[u8; FRAME_BYTES]> {
    let Ok(mut encoder) = MulawEncoder8k::new(speech.sample_rate) else {
        return Vec::new();
    };
    let mut frames = encoder.push(&i16_to_f32(&speech.samples));
    frames.extend(encoder.finish());
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_audio::g711;

    #[test]
    fn one_second_at_22050_hz_is_fifty_frames_of_a_tone_at_the_same_level() {
        let samples: Vec<i16> = (0..22_050)
            .map(|n| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(n) / 22_050.0).sin()) as i16)
            .collect();
        let frames = to_phone_frames(&Speech {
            samples,
            sample_rate: 22_050,
        });
        assert_eq!(frames.len(), 50);
        let decoded: Vec<f64> = frames
            .iter()
            .flat_map(|f| g711::decode(f))
            .map(f64::from)
            .collect();
        let body = &decoded[800..7200];
        let rms = (body.iter().map(|x| x * x).sum::<f64>() / body.len() as f64).sqrt();
        // A sine of amplitude 8000 has an RMS of 5657; mu-law and the resampler keep it within 3 %.
        assert!((rms - 5657.0).abs() < 170.0, "rms {rms}");
    }

    #[test]
    fn the_last_frame_is_padded_with_mu_law_silence() {
        // 25 ms at 8 kHz = 200 samples: one whole frame and 40 samples of a second.
        let frames = to_phone_frames(&Speech {
            samples: vec![1000; 200],
            sample_rate: 8_000,
        });
        assert_eq!(frames.len(), 2);
        assert!(frames[1][40..].iter().all(|&b| b == 0xFF));
        assert!(frames[1][..40].iter().all(|&b| b == g711::encode_sample(1000)));
    }

    #[test]
    fn no_samples_or_no_rate_give_no_frames() {
        for sample_rate in [0, 22_050] {
            let speech = Speech {
                samples: Vec::new(),
                sample_rate,
            };
            assert!(to_phone_frames(&speech).is_empty());
        }
    }
}
