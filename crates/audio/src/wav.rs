//! WAV files at the edge of the system: test fixtures, `switchboard transcribe`, recordings.
//!
//! Everything is turned into mono `f32` in [-1, 1] on the way in, because that is what the
//! resampler, the VAD and whisper consume; the way out is always 16-bit PCM, the format every
//! player and every telephony provider's "play a file" accepts.

use std::path::{Path, PathBuf};

use crate::{AudioError, resample};

/// Decoded audio: mono samples in [-1, 1] at `sample_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Audio {
    /// Length in seconds.
    #[must_use]
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.sample_rate.max(1)))
    }
}

const ACCEPTED: &str = "accepted: RIFF/WAVE with PCM integer samples of 8, 16, 24 or 32 bits, or 32-bit float, \
                        any number of channels (averaged to mono)";

fn unsupported(path: &Path, what: impl std::fmt::Display) -> AudioError {
    AudioError::UnsupportedFormat {
        path: path.to_path_buf(),
        reason: format!("{what}; {ACCEPTED}"),
    }
}

fn read_error(path: &Path, err: hound::Error) -> AudioError {
    match err {
        hound::Error::IoError(source) => AudioError::Io {
            path: path.to_path_buf(),
            source,
        },
        hound::Error::FormatError(reason) => unsupported(path, format!("not a readable WAV file ({reason})")),
        hound::Error::Unsupported => unsupported(
            path,
            "its WAV encoding is not supported (compressed formats such as A-law, mu-law or ADPCM are not read; \
             convert with `sox in.wav -e signed-integer -b 16 out.wav`)",
        ),
        hound::Error::TooWide => unsupported(path, "its samples are wider than 32 bits"),
        other => unsupported(path, other),
    }
}

/// Reads a WAV file and mixes it down to mono.
pub fn read_wav(path: impl AsRef<Path>) -> Result<Audio, AudioError> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_wav(std::io::BufReader::new(file), path)
}

/// Decodes WAV bytes from any reader (a file, an upload, a fuzzer's input) and mixes them down to
/// mono. `path` only names the source in error messages.
pub fn decode_wav(input: impl std::io::Read, path: &Path) -> Result<Audio, AudioError> {
    let mut reader = hound::WavReader::new(input).map_err(|e| read_error(path, e))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(AudioError::BadInput(format!(
            "{}: the WAV header declares zero channels",
            path.display()
        )));
    }
    if spec.sample_rate == 0 {
        return Err(AudioError::BadInput(format!(
            "{}: the WAV header declares a sample rate of 0 Hz",
            path.display()
        )));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .map(|s| s.map(clip))
            .collect::<Result<_, _>>()
            .map_err(|e| read_error(path, e))?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / f64::from(1u32 << (bits - 1));
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(|e| read_error(path, e))?
        }
        (format, bits) => return Err(unsupported(path, format!("{bits}-bit {format:?} samples"))),
    };
    if interleaved.is_empty() {
        return Err(AudioError::BadInput(format!(
            "{}: the WAV file holds no samples",
            path.display()
        )));
    }
    let samples = if channels == 1 {
        interleaved
    } else {
        let scale = 1.0 / channels as f32;
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale)
            .collect()
    };
    Ok(Audio {
        samples,
        sample_rate: spec.sample_rate,
    })
}

/// A float WAV can hold any value, NaN and infinities included, but the resampler, the VAD and whisper
/// all assume [-1, 1]: out-of-range samples clip as a player would, and NaN is silence.
fn clip(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) }
}

/// Reads a WAV file as mono 16 kHz, the rate of the VAD and of whisper.
pub fn read_wav_16k(path: impl AsRef<Path>) -> Result<Vec<f32>, AudioError> {
    let audio = read_wav(path)?;
    resample(&audio.samples, audio.sample_rate, 16_000)
}

/// Writes 16-bit PCM. `samples` are interleaved when `channels > 1`.
/// Two tracks as one interleaved stereo buffer; the shorter is padded with silence. (A call
/// recording keeps the caller on the left and the bot on the right.)
pub fn interleave(left: &[i16], right: &[i16]) -> Vec<i16> {
    let n = left.len().max(right.len());
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        out.push(left.get(i).copied().unwrap_or(0));
        out.push(right.get(i).copied().unwrap_or(0));
    }
    out
}

pub fn write_wav_i16(
    path: impl AsRef<Path>,
    samples: &[i16],
    sample_rate: u32,
    channels: u16,
) -> Result<(), AudioError> {
    let path = path.as_ref();
    if channels == 0 || sample_rate == 0 {
        return Err(AudioError::BadInput(format!(
            "{}: cannot write {channels} channel(s) at {sample_rate} Hz",
            path.display()
        )));
    }
    if !samples.len().is_multiple_of(usize::from(channels)) {
        return Err(AudioError::BadInput(format!(
            "{}: {} samples do not divide into {channels} channels",
            path.display(),
            samples.len()
        )));
    }
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let write_err = |e: hound::Error| match e {
        hound::Error::IoError(source) => AudioError::Io {
            path: PathBuf::from(path),
            source,
        },
        other => AudioError::BadInput(format!("{}: {other}", path.display())),
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(write_err)?;
    {
        let mut fast = writer.get_i16_writer(samples.len() as u32);
        for &s in samples {
            fast.write_sample(s);
        }
        fast.flush().map_err(write_err)?;
    }
    writer.finalize().map_err(write_err)
}

/// Writes `f32` samples in [-1, 1] as 16-bit PCM (clamped).
pub fn write_wav_f32_as_i16(
    path: impl AsRef<Path>,
    samples: &[f32],
    sample_rate: u32,
    channels: u16,
) -> Result<(), AudioError> {
    write_wav_i16(path, &f32_to_i16(samples), sample_rate, channels)
}

/// Converts one sample to 16-bit, clamping out-of-range values instead of wrapping them (a wrap
/// turns a clipped peak into a full-scale click).
#[must_use]
pub fn f32_sample_to_i16(x: f32) -> i16 {
    // NaN maps to 0 through the `as` conversion, which is the safest thing to play.
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Converts `f32` samples in [-1, 1] to 16-bit, clamping.
#[must_use]
pub fn f32_to_i16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|&x| f32_sample_to_i16(x)).collect()
}

/// Converts 16-bit samples to `f32` in [-1, 1).
#[must_use]
pub fn i16_to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn i16_roundtrip_and_clamping() {
        let xs = [0i16, 1, -1, 1000, -32768, 32767];
        assert_eq!(f32_to_i16(&i16_to_f32(&xs)), xs);
        assert_eq!(
            f32_to_i16(&[1.5, -1.5, 1.0, f32::NAN]),
            vec![32767, -32768, 32767, 0]
        );
    }

    #[test]
    fn write_then_read_mono_16bit() {
        let dir = tmp();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..800).map(|n| ((n * 37) % 2000 - 1000) as i16).collect();
        write_wav_i16(&path, &samples, 8000, 1).expect("write");
        let audio = read_wav(&path).expect("read");
        assert_eq!(audio.sample_rate, 8000);
        assert_eq!(f32_to_i16(&audio.samples), samples);
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        let dir = tmp();
        let path = dir.path().join("s.wav");
        write_wav_i16(&path, &[1000, 3000, -2000, 0], 16000, 2).expect("write");
        let audio = read_wav(&path).expect("read");
        assert_eq!(f32_to_i16(&audio.samples), vec![2000, -1000]);
    }

    #[test]
    fn reads_8_24_32_bit_int_and_float() {
        let dir = tmp();
        for (bits, format) in [
            (8u16, hound::SampleFormat::Int),
            (24, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Float),
        ] {
            let path = dir.path().join(format!("{bits}-{format:?}.wav"));
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 22050,
                bits_per_sample: bits,
                sample_format: format,
            };
            let mut w = hound::WavWriter::create(&path, spec).expect("create");
            for v in [0.5f64, -0.25, 0.0] {
                match format {
                    hound::SampleFormat::Float => w.write_sample(v as f32).expect("write"),
                    hound::SampleFormat::Int => w
                        .write_sample((v * f64::from(1u32 << (bits - 1))) as i32)
                        .expect("write"),
                }
            }
            w.finalize().expect("finalize");
            let audio = read_wav(&path).expect("read");
            assert_eq!(audio.sample_rate, 22050);
            assert_eq!(audio.samples, vec![0.5, -0.25, 0.0], "{bits}-bit {format:?}");
        }
    }

    /// Found by fuzzing (`wav`): float samples were passed through as stored, so a file could hand
    /// values far outside [-1, 1], or NaN, to the resampler, the VAD and whisper.
    #[test]
    fn float_samples_are_clipped_and_nan_is_silence() {
        let mut data = Vec::new();
        for x in [15.7f32, -2.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5] {
            data.extend_from_slice(&x.to_le_bytes());
        }
        let audio = decode_wav(float_wav(&data).as_slice(), Path::new("f.wav")).expect("read");
        assert_eq!(audio.samples, vec![1.0, -1.0, 0.0, 1.0, -1.0, 0.5]);
    }

    /// A mono 48 kHz 32-bit float WAV around `data`.
    fn float_wav(data: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"RIFF");
        bytes.extend_from_slice(&(4u32 + 8 + 16 + 8 + data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&16u32.to_le_bytes());
        bytes.extend_from_slice(&3u16.to_le_bytes()); // format tag: IEEE float
        bytes.extend_from_slice(&1u16.to_le_bytes()); // channels
        bytes.extend_from_slice(&48_000u32.to_le_bytes());
        bytes.extend_from_slice(&(4 * 48_000u32).to_le_bytes()); // byte rate
        bytes.extend_from_slice(&4u16.to_le_bytes()); // block align
        bytes.extend_from_slice(&32u16.to_le_bytes()); // bits
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn read_wav_16k_resamples() {
        let dir = tmp();
        let path = dir.path().join("r.wav");
        write_wav_f32_as_i16(&path, &vec![0.1; 22050], 22050, 1).expect("write");
        assert_eq!(read_wav_16k(&path).expect("read").len(), 16000);
    }

    #[test]
    fn not_riff_is_unsupported_and_names_the_file() {
        let dir = tmp();
        let path = dir.path().join("notes.wav");
        std::fs::write(&path, b"this is not audio at all, just text").expect("write");
        let err = read_wav(&path).expect_err("must fail");
        assert!(matches!(err, AudioError::UnsupportedFormat { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("notes.wav") && msg.contains("accepted"), "{msg}");
    }

    #[test]
    fn mulaw_wav_is_unsupported_with_a_hint() {
        let dir = tmp();
        let path = dir.path().join("mulaw.wav");
        // A minimal WAVE_FORMAT_MULAW (7) file: RIFF header, fmt chunk, 4 data bytes.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"RIFF");
        bytes.extend_from_slice(&(4u32 + 8 + 18 + 8 + 4).to_le_bytes());
        bytes.extend_from_slice(b"WAVEfmt ");
        bytes.extend_from_slice(&18u32.to_le_bytes());
        bytes.extend_from_slice(&7u16.to_le_bytes()); // format tag: mu-law
        bytes.extend_from_slice(&1u16.to_le_bytes()); // channels
        bytes.extend_from_slice(&8000u32.to_le_bytes());
        bytes.extend_from_slice(&8000u32.to_le_bytes()); // byte rate
        bytes.extend_from_slice(&1u16.to_le_bytes()); // block align
        bytes.extend_from_slice(&8u16.to_le_bytes()); // bits
        bytes.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        bytes.extend_from_slice(b"data");
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&[0xFF, 0xFF, 0x80, 0x00]);
        std::fs::write(&path, &bytes).expect("write");
        let err = read_wav(&path).expect_err("must fail");
        assert!(matches!(err, AudioError::UnsupportedFormat { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("mulaw.wav") && msg.contains("mu-law"), "{msg}");
    }

    #[test]
    fn empty_wav_and_missing_file_are_errors() {
        let dir = tmp();
        let path = dir.path().join("empty.wav");
        write_wav_i16(&path, &[], 16000, 1).expect("write");
        let err = read_wav(&path).expect_err("must fail");
        assert!(
            matches!(err, AudioError::BadInput(ref m) if m.contains("empty.wav")),
            "{err:?}"
        );
        let missing = read_wav(dir.path().join("missing.wav")).expect_err("must fail");
        assert!(matches!(missing, AudioError::Io { .. }), "{missing:?}");
        assert!(write_wav_i16(dir.path().join("z.wav"), &[1, 2, 3], 8000, 2).is_err());
        assert!(write_wav_i16(dir.path().join("z.wav"), &[1], 8000, 0).is_err());
    }
}
