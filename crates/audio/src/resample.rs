//! Band-limited, stateful resampling on top of rubato's synchronous FFT resampler.
//!
//! The FFT resampler was chosen over rubato's asynchronous sinc resampler because every rate pair
//! we meet is fixed for the life of a stream (8 kHz phone audio, 16 kHz for the VAD and whisper,
//! 22,050 Hz from TTS): a synchronous resampler is both cheaper and exact in length. Its
//! anti-aliasing filter sits below the lower Nyquist frequency, so downsampling to 8 kHz
//! low-passes below 4 kHz as G.711 requires.
//!
//! [`StreamResampler`] hides rubato's fixed chunk size (callers push 20 ms frames or any other
//! length) and its start-up delay: the first `delay_frames()` output frames, which are the
//! filter's warm-up, are dropped, and [`StreamResampler::flush`] pumps silence until the output
//! holds exactly `ceil(input × ratio)` frames. The stream is therefore time-aligned with its
//! input, and streaming a signal in any chunking gives the same samples as [`resample`] on the
//! whole buffer, which is how the tests check it.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use crate::AudioError;

/// The resampler processes this much input at a time. 20 ms matches the telephone frame, keeps
/// the FFT block small (delay = half a block of output: 10 ms) while its anti-aliasing cutoff
/// still sits at about 91 % of the lower Nyquist frequency.
const CHUNK_MS: u32 = 20;

/// A resampler for one mono stream, keeping its filter state across calls.
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when both rates are equal: the stream is passed through untouched.
    inner: Option<Inner>,
}

struct Inner {
    fft: Fft<f32>,
    chunk_in: usize,
    /// Input not yet forming a whole chunk.
    pending: Vec<f32>,
    /// Reused output block, so steady-state processing does not allocate.
    scratch: Vec<f32>,
    /// Warm-up output frames still to drop.
    to_skip: usize,
    /// Input frames accepted since the start (or the last flush).
    consumed: u64,
    /// Output frames handed out since the start (or the last flush).
    produced: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("delay_frames", &self.delay_frames())
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// Builds a resampler from `from_hz` to `to_hz` for mono audio.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, AudioError> {
        if from_hz == 0 || to_hz == 0 {
            return Err(AudioError::UnsupportedRate {
                from_hz,
                to_hz,
                reason: "sample rates must be positive".into(),
            });
        }
        if from_hz == to_hz {
            return Ok(Self {
                from_hz,
                to_hz,
                inner: None,
            });
        }
        let chunk = chunk_frames_for(from_hz, to_hz);
        let fft =
            Fft::<f32>::new(from_hz as usize, to_hz as usize, chunk, 1, FixedSync::Both).map_err(|e| {
                AudioError::UnsupportedRate {
                    from_hz,
                    to_hz,
                    reason: e.to_string(),
                }
            })?;
        let chunk_in = fft.input_frames_next();
        let scratch = vec![0.0; fft.output_frames_max()];
        let to_skip = fft.output_delay();
        Ok(Self {
            from_hz,
            to_hz,
            inner: Some(Inner {
                fft,
                chunk_in,
                pending: Vec::with_capacity(chunk_in * 2),
                scratch,
                to_skip,
                consumed: 0,
                produced: 0,
            }),
        })
    }

    /// Input rate in Hz.
    #[must_use]
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate in Hz.
    #[must_use]
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// How many output frames the resampler holds back before it can emit a sample aligned with
    /// the input: the real-time latency it adds is `delay_frames() / to_hz` seconds plus up to one
    /// input chunk (`chunk_frames()`) of buffering.
    #[must_use]
    pub fn delay_frames(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.fft.output_delay())
    }

    /// Input frames rubato processes at a time (0 for a pass-through).
    #[must_use]
    pub fn chunk_frames(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.chunk_in)
    }

    /// Total latency from an input sample to its output, as a duration.
    #[must_use]
    pub fn latency(&self) -> std::time::Duration {
        let delay = self.delay_frames() as f64 / f64::from(self.to_hz);
        let buffering = self.chunk_frames() as f64 / f64::from(self.from_hz);
        std::time::Duration::from_secs_f64(delay + buffering)
    }

    /// Resamples `input` (any length) and appends whatever output is ready to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        inner.consumed += input.len() as u64;
        inner.pending.extend_from_slice(input);
        let mut offset = 0;
        while inner.pending.len() - offset >= inner.chunk_in {
            inner.run_chunk(offset, None, out);
            offset += inner.chunk_in;
        }
        inner.pending.drain(..offset);
    }

    /// Drains the tail at the end of a stream: after this the total output is exactly
    /// `ceil(total input × to_hz / from_hz)` frames. The resampler is then reset and can start a
    /// new stream.
    pub fn flush(&mut self, out: &mut Vec<f32>) {
        let (from, to) = (u64::from(self.from_hz), u64::from(self.to_hz));
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        let expected = (inner.consumed * to).div_ceil(from);
        let start = out.len();
        if !inner.pending.is_empty() {
            let partial = inner.pending.len();
            inner.run_chunk(0, Some(partial), out);
            inner.pending.clear();
        }
        // Each silent chunk pushes the filter forward by a block; the delay is under one block,
        // so this loop runs at most a couple of times.
        while inner.produced < expected {
            inner.run_chunk(0, Some(0), out);
        }
        let excess = (inner.produced - expected) as usize;
        out.truncate(out.len() - excess.min(out.len() - start));
        inner.reset();
    }

    /// Forgets all state, as if newly built.
    pub fn reset(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.reset();
        }
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Input frames per rubato chunk: about `CHUNK_MS`, a whole number of the smallest block the
/// rate pair allows, and even. Rubato centres its filter at `block / 2` (integer division) but
/// reports a delay of exactly half a block, so an odd block (441 frames for 22,050 Hz) would
/// leave the output a fraction of a sample late; an even one is exactly aligned.
fn chunk_frames_for(from_hz: u32, to_hz: u32) -> usize {
    let min_block = u64::from(from_hz / gcd(from_hz, to_hz));
    let target = (u64::from(from_hz) * u64::from(CHUNK_MS) / 1000).max(1);
    let mut blocks = target.div_ceil(min_block);
    if !(blocks * min_block).is_multiple_of(2) {
        blocks += 1;
    }
    (blocks * min_block) as usize
}

impl Inner {
    /// Runs one rubato chunk from `pending[offset..]` (or `partial` valid frames of it, the rest
    /// treated as silence).
    fn run_chunk(&mut self, offset: usize, partial: Option<usize>, out: &mut Vec<f32>) {
        // Rubato reads exactly `chunk_in` frames, so a partial chunk is zero-padded in place.
        if self.pending.len() < offset + self.chunk_in {
            self.pending.resize(offset + self.chunk_in, 0.0);
        }
        let input = &self.pending[offset..offset + self.chunk_in];
        let chunk_out = self.scratch.len();
        // Sizes are built from the resampler's own numbers: these cannot fail, and if rubato ever
        // disagreed it would be a bug here, not bad input, so it is reported by emitting silence
        // for the chunk rather than by panicking on a live call.
        let produced = match (
            InterleavedSlice::new(input, 1, self.chunk_in),
            InterleavedSlice::new_mut(&mut self.scratch, 1, chunk_out),
        ) {
            (Ok(adapter_in), Ok(mut adapter_out)) => {
                let indexing = partial.map(|n| Indexing::new().partial_len(n));
                match self
                    .fft
                    .process_into_buffer(&adapter_in, &mut adapter_out, indexing.as_ref())
                {
                    Ok((_, n)) => n,
                    Err(_) => {
                        self.scratch.fill(0.0);
                        self.fft.output_frames_next().min(chunk_out)
                    }
                }
            }
            _ => {
                self.scratch.fill(0.0);
                self.fft.output_frames_next().min(chunk_out)
            }
        };
        let skip = self.to_skip.min(produced);
        self.to_skip -= skip;
        out.extend_from_slice(&self.scratch[skip..produced]);
        self.produced += (produced - skip) as u64;
    }

    fn reset(&mut self) {
        self.fft.reset();
        self.pending.clear();
        self.to_skip = self.fft.output_delay();
        self.consumed = 0;
        self.produced = 0;
    }
}

/// Resamples a whole buffer. The output is time-aligned with the input (the resampler delay is
/// removed) and `ceil(len × to_hz / from_hz)` frames long.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, AudioError> {
    let mut resampler = StreamResampler::new(from_hz, to_hz)?;
    let expected = (samples.len() as u64 * u64::from(to_hz)).div_ceil(u64::from(from_hz));
    let mut out = Vec::with_capacity(expected as usize + resampler.chunk_frames() * 4);
    resampler.process(samples, &mut out);
    resampler.flush(&mut out);
    Ok(out)
}

/// Test signals shared by this crate's unit tests.
#[cfg(test)]
pub(crate) mod test_signals {
    use std::f32::consts::PI;

    pub fn sine(freq: f32, rate: u32, len: usize, amplitude: f32) -> Vec<f32> {
        (0..len)
            .map(|n| amplitude * (2.0 * PI * freq * n as f32 / rate as f32).sin())
            .collect()
    }

    pub fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::test_signals::{rms, sine};
    use super::*;

    /// Amplitude of `freq` in `x` by correlation with a quadrature pair.
    fn tone_amplitude(x: &[f32], freq: f32, rate: u32) -> f32 {
        let (mut c, mut s) = (0.0f64, 0.0f64);
        for (n, &v) in x.iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * f64::from(freq) * n as f64 / f64::from(rate);
            c += f64::from(v) * phase.cos();
            s += f64::from(v) * phase.sin();
        }
        (2.0 * (c * c + s * s).sqrt() / x.len() as f64) as f32
    }

    /// Resamples `input` in `chunk`-sized pieces and checks it equals resampling it whole; returns the
    /// whole-buffer result.
    fn assert_streaming_equals_whole(input: &[f32], from: u32, to: u32, chunk: usize) -> Vec<f32> {
        let whole = resample(input, from, to).expect("resample");
        let mut rs = StreamResampler::new(from, to).expect("new");
        let mut streamed = Vec::new();
        for frame in input.chunks(chunk) {
            rs.process(frame, &mut streamed);
        }
        rs.flush(&mut streamed);
        assert_eq!(streamed.len(), whole.len());
        let max_diff = streamed
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_diff < 1e-6, "max diff {max_diff}");
        whole
    }

    #[test]
    fn streaming_in_20ms_frames_equals_whole_buffer() {
        let whole = assert_streaming_equals_whole(&sine(1000.0, 8000, 8000, 0.5), 8000, 16000, 160);
        assert_eq!(whole.len(), 16000);
    }

    #[test]
    fn odd_chunking_equals_whole_buffer() {
        assert_streaming_equals_whole(&sine(440.0, 22050, 22050, 0.3), 22050, 16000, 97);
    }

    #[test]
    fn upsampled_1khz_keeps_frequency_amplitude_and_alignment() {
        let input = sine(1000.0, 8000, 8000, 0.5);
        let out = resample(&input, 8000, 16000).expect("resample");
        // Skip the edges, where the zero-padding before and after the clip smears the tone.
        let body = &out[800..15200];
        let reference = sine(1000.0, 16000, 16000, 0.5);
        let ref_body = &reference[800..15200];
        // Time-aligned: sample by sample equal to the ideal 16 kHz sine, not just same spectrum.
        let max_err = body
            .iter()
            .zip(ref_body)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max_err < 0.01, "max error vs ideal sine {max_err}");
        let amp = tone_amplitude(body, 1000.0, 16000);
        assert!((amp - 0.5).abs() < 0.005, "amplitude {amp}");
        // Nothing else: the residual after removing the ideal sine is tiny.
        let residual: Vec<f32> = body.iter().zip(ref_body).map(|(a, b)| a - b).collect();
        assert!(rms(&residual) < 0.002, "residual rms {}", rms(&residual));
    }

    #[test]
    fn downsampling_to_8k_removes_6khz() {
        let tone = sine(6000.0, 16000, 16000, 0.5);
        let out = resample(&tone, 16000, 8000).expect("resample");
        assert_eq!(out.len(), 8000);
        let attenuation_db = 20.0 * (rms(&out[400..7600]) / rms(&tone)).log10();
        assert!(
            attenuation_db < -60.0,
            "6 kHz only attenuated by {attenuation_db:.1} dB"
        );
        // While a 1 kHz tone passes untouched.
        let pass = resample(&sine(1000.0, 16000, 16000, 0.5), 16000, 8000).expect("resample");
        let gain_db = 20.0 * (rms(&pass[400..7600]) / (0.5 / 2f32.sqrt())).log10();
        assert!(gain_db.abs() < 0.1, "1 kHz gain {gain_db:.2} dB");
    }

    #[test]
    fn any_rate_to_16k_has_the_right_length() {
        for (rate, len) in [
            (22050u32, 22050usize),
            (44100, 44100),
            (48000, 48000),
            (22050, 12345),
            (8000, 1),
            (11025, 500),
        ] {
            let input = sine(300.0, rate, len, 0.2);
            let out = resample(&input, rate, 16000).expect("resample");
            let expected = (len as u64 * 16000).div_ceil(u64::from(rate)) as usize;
            assert_eq!(out.len(), expected, "{rate} Hz, {len} samples");
        }
    }

    #[test]
    fn same_rate_is_pass_through_and_zero_rate_is_an_error() {
        let input = sine(300.0, 16000, 1000, 0.2);
        assert_eq!(resample(&input, 16000, 16000).expect("resample"), input);
        assert!(matches!(
            StreamResampler::new(0, 16000),
            Err(AudioError::UnsupportedRate { .. })
        ));
    }

    #[test]
    fn flush_resets_for_a_second_stream() {
        let input = sine(1000.0, 8000, 1600, 0.5);
        let mut rs = StreamResampler::new(8000, 16000).expect("new");
        let mut first = Vec::new();
        rs.process(&input, &mut first);
        rs.flush(&mut first);
        let mut second = Vec::new();
        rs.process(&input, &mut second);
        rs.flush(&mut second);
        assert_eq!(first, second);
        assert_eq!(rs.delay_frames(), 160);
    }
}
