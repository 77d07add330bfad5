//! Locating the real model files for the integration tests.
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;

/// The default language model's file name.
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The larger model's file name.
pub const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// `$SWITCHBOARD_MODELS_DIR` or `<repo>/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

/// The path of a model file; panics with the command that fetches it when it is missing (these tests
/// are about the real model, so a silent skip would hide that nothing was tested).
pub fn model_path(file: &str, fetch_name: &str) -> PathBuf {
    let path = models_dir().join(file);
    assert!(
        path.is_file(),
        "model file {} is missing: run `switchboard models fetch {fetch_name}` \
         (or set SWITCHBOARD_MODELS_DIR to a directory holding {file})",
        path.display()
    );
    path
}
