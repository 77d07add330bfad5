//! The telephone line: 8 kHz mu-law both ways.
//!
//! Inbound, [`MulawDecoder16k`] turns each 160-byte frame from the provider into 320 samples at
//! 16 kHz for the VAD and whisper. Outbound, [`MulawEncoder8k`] takes synthesized speech at its
//! own rate, low-passes and resamples it to 8 kHz, and cuts the mu-law into 160-byte frames ready
//! to be paced out. [`phone_line`] applies both directions to a clip, to hear (and test) what a
//! call does to audio.

use crate::{AudioError, StreamResampler, g711, wav::f32_sample_to_i16};

/// Bytes in one 20 ms mu-law frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;

/// What a phone call does to 16 kHz audio: band-limit and downsample to 8 kHz, mu-law encode,
/// decode, and upsample back to 16 kHz. Same length as the input.
#[must_use]
pub fn phone_line(samples_16k: &[f32]) -> Vec<f32> {
    // 16 kHz <-> 8 kHz are fixed, valid rates: construction cannot fail, so a failure would be a
    // bug in this crate; returning the input untouched keeps the function total.
    let narrow = match crate::resample(samples_16k, 16_000, 8_000) {
        Ok(x) => x,
        Err(_) => return samples_16k.to_vec(),
    };
    let coded: Vec<f32> = narrow
        .iter()
        .map(|&x| f32::from(g711::decode_sample(g711::encode_sample(f32_sample_to_i16(x)))) / 32768.0)
        .collect();
    let mut wide = crate::resample(&coded, 8_000, 16_000).unwrap_or_default();
    wide.resize(samples_16k.len(), 0.0);
    wide
}

/// Decodes a stream of inbound mu-law frames to 16 kHz `f32`, keeping the resampler's state
/// across frames so that frame boundaries leave no clicks.
pub struct MulawDecoder16k {
    resampler: StreamResampler,
    pcm: Vec<f32>,
}

impl std::fmt::Debug for MulawDecoder16k {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MulawDecoder16k")
            .field("resampler", &self.resampler)
            .finish_non_exhaustive()
    }
}

impl MulawDecoder16k {
    #[must_use]
    pub fn new() -> Self {
        Self {
            // 8 kHz -> 16 kHz is always constructible; see `StreamResampler::new`.
            resampler: match StreamResampler::new(8_000, 16_000) {
                Ok(r) => r,
                Err(e) => unreachable!("8 kHz -> 16 kHz resampler: {e}"),
            },
            pcm: Vec::with_capacity(FRAME_BYTES),
        }
    }

    /// Decodes `mulaw` (any length; normally one 160-byte frame) and appends the 16 kHz samples
    /// that are ready to `out`. Output trails input by [`Self::latency`].
    pub fn decode(&mut self, mulaw: &[u8], out: &mut Vec<f32>) {
        self.pcm.clear();
        self.pcm
            .extend(mulaw.iter().map(|&b| f32::from(g711::decode_sample(b)) / 32768.0));
        self.resampler.process(&self.pcm, out);
    }

    /// Decodes one frame into a fresh vector.
    #[must_use]
    pub fn decode_frame(&mut self, mulaw: &[u8]) -> Vec<f32> {
        let mut out = Vec::with_capacity(mulaw.len() * 2 + 320);
        self.decode(mulaw, &mut out);
        out
    }

    /// Emits the samples still held in the resampler at the end of the call.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        self.resampler.flush(out);
    }

    /// Delay between a byte arriving and its samples leaving.
    #[must_use]
    pub fn latency(&self) -> std::time::Duration {
        self.resampler.latency()
    }
}

impl Default for MulawDecoder16k {
    fn default() -> Self {
        Self::new()
    }
}

/// Encodes outbound audio (16 kHz, 22,050 Hz, or any rate) to 8 kHz mu-law in 160-byte frames.
pub struct MulawEncoder8k {
    resampler: StreamResampler,
    narrow: Vec<f32>,
    /// Encoded bytes not yet forming a whole frame.
    pending: Vec<u8>,
}

impl std::fmt::Debug for MulawEncoder8k {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MulawEncoder8k")
            .field("resampler", &self.resampler)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl MulawEncoder8k {
    /// An encoder for audio at `input_hz`.
    pub fn new(input_hz: u32) -> Result<Self, AudioError> {
        Ok(Self {
            resampler: StreamResampler::new(input_hz, 8_000)?,
            narrow: Vec::new(),
            pending: Vec::with_capacity(FRAME_BYTES * 2),
        })
    }

    /// Feeds samples; returns every complete 160-byte frame now available.
    pub fn push(&mut self, samples: &[f32]) -> Vec<[u8; FRAME_BYTES]> {
        self.narrow.clear();
        self.resampler.process(samples, &mut self.narrow);
        self.encode_narrow();
        self.take_frames()
    }

    /// Ends the stream: drains the resampler and pads the last frame with mu-law silence (0xFF)
    /// so the provider always receives whole frames.
    pub fn finish(&mut self) -> Vec<[u8; FRAME_BYTES]> {
        self.narrow.clear();
        self.resampler.flush(&mut self.narrow);
        self.encode_narrow();
        let rem = self.pending.len() % FRAME_BYTES;
        if rem != 0 {
            self.pending.resize(self.pending.len() + FRAME_BYTES - rem, 0xFF);
        }
        self.take_frames()
    }

    fn encode_narrow(&mut self) {
        self.pending.extend(
            self.narrow
                .iter()
                .map(|&x| g711::encode_sample(f32_sample_to_i16(x))),
        );
    }

    fn take_frames(&mut self) -> Vec<[u8; FRAME_BYTES]> {
        let whole = self.pending.len() / FRAME_BYTES * FRAME_BYTES;
        let frames = self.pending[..whole]
            .chunks_exact(FRAME_BYTES)
            .map(|c| {
                let mut frame = [0u8; FRAME_BYTES];
                frame.copy_from_slice(c);
                frame
            })
            .collect();
        self.pending.drain(..whole);
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::test_signals::{rms, sine};

    #[test]
    fn phone_line_keeps_voice_band_and_removes_high_band() {
        let voice = sine(1000.0, 16000, 16000, 0.3);
        let out = phone_line(&voice);
        assert_eq!(out.len(), voice.len());
        let err: Vec<f32> = out.iter().zip(&voice).map(|(a, b)| a - b).collect();
        // mu-law has ~38 dB SNR; allow a little for the filters.
        let snr = 20.0 * (rms(&voice[800..15200]) / rms(&err[800..15200])).log10();
        assert!(snr > 30.0, "1 kHz through the phone line: SNR {snr:.1} dB");
        let hiss = phone_line(&sine(6000.0, 16000, 16000, 0.3));
        assert!(
            rms(&hiss[800..15200]) < 0.003,
            "6 kHz leaks: rms {}",
            rms(&hiss[800..15200])
        );
    }

    #[test]
    fn decoder_turns_160_bytes_into_320_samples_per_frame_after_warm_up() {
        let mut dec = MulawDecoder16k::new();
        let tone = g711::encode(
            &sine(1000.0, 8000, 1600, 8000.0)
                .iter()
                .map(|&x| x.round() as i16)
                .collect::<Vec<_>>(),
        );
        let mut out = Vec::new();
        for frame in tone.chunks(FRAME_BYTES) {
            dec.decode(frame, &mut out);
        }
        dec.flush(&mut out);
        assert_eq!(out.len(), 3200);
        let expected = sine(1000.0, 16000, 3200, 8000.0 / 32768.0);
        let err: Vec<f32> = out.iter().zip(&expected).map(|(a, b)| a - b).collect();
        let snr = 20.0 * (rms(&expected[400..2800]) / rms(&err[400..2800])).log10();
        assert!(snr > 30.0, "decoded tone SNR {snr:.1} dB");
        // Silence frames decode to exact silence.
        let mut dec = MulawDecoder16k::new();
        let silent = dec.decode_frame(&[0xFF; FRAME_BYTES]);
        assert!(silent.iter().all(|&s| s == 0.0));
    }

    #[test]
    fn encoder_makes_whole_frames_from_22050_hz() {
        let mut enc = MulawEncoder8k::new(22050).expect("encoder");
        let speech = sine(500.0, 22050, 22050, 0.25);
        let mut frames = Vec::new();
        for chunk in speech.chunks(1000) {
            frames.extend(enc.push(chunk));
        }
        frames.extend(enc.finish());
        // 1 s at 8 kHz is 8000 bytes = 50 frames exactly.
        assert_eq!(frames.len(), 50);
        let decoded: Vec<f32> = frames
            .iter()
            .flatten()
            .map(|&b| f32::from(g711::decode_sample(b)) / 32768.0)
            .collect();
        let expected = sine(500.0, 8000, 8000, 0.25);
        let err: Vec<f32> = decoded.iter().zip(&expected).map(|(a, b)| a - b).collect();
        let snr = 20.0 * (rms(&expected[400..7600]) / rms(&err[400..7600])).log10();
        assert!(snr > 30.0, "encoded tone SNR {snr:.1} dB");
    }

    #[test]
    fn encoder_pads_last_frame_with_mulaw_silence() {
        let mut enc = MulawEncoder8k::new(16000).expect("encoder");
        let frames = enc.push(&vec![0.0; 100]);
        assert!(frames.is_empty());
        let tail = enc.finish();
        assert_eq!(tail.len(), 1);
        assert!(tail[0].iter().all(|&b| b == 0xFF));
    }
}
