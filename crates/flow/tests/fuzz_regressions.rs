//! Every input the `flow_yaml` fuzz target stopped on (`fuzz/regressions/flow_yaml/`), replayed through
//! the same code path with the same checks: a flow or scenario loads or fails with errors that carry a
//! message and a line inside the text (or the one just past its end).

use std::path::{Path, PathBuf};

use switchboard_flow::Flow;
use switchboard_flow::scenario::Scenario;

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

#[test]
fn flow_crash_inputs_load_or_fail_with_located_errors() {
    for path in regressions("flow_yaml") {
        let name = path.display();
        let bytes = std::fs::read(&path).expect("readable");
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        // libyaml ends the stream with a line break of its own, so an error at the end of a text
        // without a final line break is on the line after the last.
        let lines = text.matches(['\n', '\r']).count() + 2;
        if let Err(errors) = Flow::parse(text, "fuzz.yaml", None) {
            assert!(!errors.errors().is_empty(), "{name}");
            for e in errors.errors() {
                assert!(!e.message.is_empty(), "{name}");
                if let Some(line) = e.line {
                    assert!((1..=lines).contains(&line), "{name}: line {line} of {lines}: {e}");
                }
            }
        }
        let _ = Scenario::parse(text, "fuzz.yaml", None);
    }
}
