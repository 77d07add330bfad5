//! The TOML files the binaries read: `switchboard serve --config` (parsed and its campaign settings
//! checked) and the provider simulator's numbers file (parsed and resolved). Errors are fine, panics
//! are not.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use switchboard_simulator::NumbersFile;
use switchboard_simulator::numbers::{Spec, TurnSpec};

// The serve configuration lives in the binary, which links the models; its file-only part is compiled
// here on its own.
#[allow(dead_code)]
#[path = "../../src/cli/config_file.rs"]
mod config_file;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = config_file::FileConfig::parse(text) {
        let _ = config_file::scheduler_config(&file.campaigns);
    }
    if let Ok(numbers) = toml::from_str::<NumbersFile>(text) {
        resolve(&numbers);
    }
});

fn resolve(numbers: &NumbersFile) {
    // A `wav` turn reads a file (any path the text names); the rest resolves without the disk.
    let specs = numbers.default.iter().chain(numbers.numbers.values());
    if specs.clone().any(reads_files) {
        return;
    }
    let speech: HashMap<String, Vec<u8>> = numbers
        .texts()
        .into_iter()
        .map(|t| (t.to_owned(), vec![0xff; 8]))
        .collect();
    if let Ok(plan) = numbers.resolve(Path::new("/nonexistent"), &speech) {
        for to in numbers.numbers.keys().map(String::as_str).chain(["+15555550100"]) {
            for nth in [0, 1, 7, usize::MAX] {
                let _ = plan.behaviour(to, nth);
            }
        }
    }
}

fn reads_files(spec: &Spec) -> bool {
    spec.turns.iter().any(|t| matches!(t, TurnSpec::Wav(_)))
        || spec.attempts.iter().flatten().any(reads_files)
}
