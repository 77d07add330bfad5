//! One error type for the whole crate: every failure here is either bad input (a file or a rate we
//! cannot handle, named in the message so the user can fix it) or I/O.

use std::path::PathBuf;

/// Errors from decoding, resampling and file handling.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file exists but its format is not one we read. `reason` says what was found and what is
    /// accepted, so the message alone is enough to fix the input.
    #[error("unsupported audio file {}: {reason}", path.display())]
    UnsupportedFormat { path: PathBuf, reason: String },

    /// Input that is well-formed but cannot be used (no channels, no samples, a zero sample rate…).
    #[error("bad audio input: {0}")]
    BadInput(String),

    /// The resampler cannot be built for this pair of rates.
    #[error("cannot resample {from_hz} Hz to {to_hz} Hz: {reason}")]
    UnsupportedRate {
        from_hz: u32,
        to_hz: u32,
        reason: String,
    },

    /// Reading or writing a file failed at the operating-system level.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
