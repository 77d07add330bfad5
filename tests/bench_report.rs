//! `switchboard bench report` with a peer that is not installed: the section still runs on our side,
//! the report says how to install the peer, and what is written is a well-formed markdown report
//! with its chart. Uses the real default language model (`make test` fetches it).

use std::path::Path;
use std::process::Command;

#[test]
fn report_with_a_missing_peer_names_the_install_script_and_writes_well_formed_tables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("results");
    let no_peers = dir.path().join("no-peers");
    let run = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "bench",
            "report",
            "--sections",
            "llm",
            "--runs",
            "1",
            "--decode-tokens",
            "8",
        ])
        .arg("--peers")
        .arg(&no_peers)
        .arg("--out")
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("bench/install-peers.sh"), "{stderr}");

    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
    assert!(md.contains("## Language model"), "{md}");
    assert!(
        md.contains("llama.cpp skipped: llama-bench is not installed"),
        "{md}"
    );
    assert!(md.contains("bench/install-peers.sh"), "{md}");
    assert!(
        !md.contains("## Speech-to-text"),
        "only the asked section runs:\n{md}"
    );

    // Each table: a header, a separator with as many cells, rows with as many cells.
    let mut tables = 0;
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].starts_with('|') {
            i += 1;
            continue;
        }
        tables += 1;
        let cells = lines[i].matches('|').count();
        assert!(
            lines.get(i + 1).is_some_and(|l| l.starts_with("|---")),
            "a table without a separator: {}",
            lines[i]
        );
        while i < lines.len() && lines[i].starts_with('|') {
            assert_eq!(lines[i].matches('|').count(), cells, "{}\n{md}", lines[i]);
            i += 1;
        }
    }
    assert!(tables >= 3, "machine, targets and language model tables:\n{md}");

    // Our numbers are real: a prefill speed in tokens per second, the peer's cell empty.
    let prefill = md
        .lines()
        .find(|l| l.starts_with("| prefill |"))
        .expect("a prefill row");
    let ours: f64 = prefill
        .split('|')
        .nth(2)
        .and_then(|c| c.trim().strip_suffix(" tok/s"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no speed in {prefill}"));
    assert!(ours > 0.0, "{prefill}");
    assert!(prefill.ends_with("| — | — |"), "{prefill}");

    // The chart is a PNG when a font is there to draw its text; otherwise the report says why not.
    if Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").is_file() {
        let png = std::fs::read(out.join("llm.png")).expect("llm.png written");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        assert!(md.contains("![llm.png](llm.png)"), "{md}");
    } else {
        assert!(md.contains("no TrueType font"), "{md}");
    }
}
