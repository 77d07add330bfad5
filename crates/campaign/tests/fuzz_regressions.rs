//! Every input the `contacts_csv` fuzz target crashed on (`fuzz/regressions/contacts_csv/`), replayed
//! through the same code path with the same checks: every contact imported has a valid E.164 number, a
//! known or absent time zone and no NUL anywhere; contacts keep the file's order, and no row is both
//! imported and refused.

use std::path::{Path, PathBuf};

use switchboard_campaign::{PhoneNumber, parse_contacts};

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
fn contact_list_crash_inputs_import_cleanly() {
    for path in regressions("contacts_csv") {
        let name = path.display();
        let bytes = std::fs::read(&path).expect("readable");
        let Ok(parsed) = parse_contacts(bytes.as_slice()) else {
            continue;
        };
        let lines: Vec<u64> = parsed.contacts.iter().map(|(line, _)| *line).collect();
        assert!(
            lines.windows(2).all(|w| w[0] < w[1]),
            "{name}: out of order {lines:?}"
        );
        for r in &parsed.rejected {
            assert!(
                !lines.contains(&r.line),
                "{name}: row {} imported and refused",
                r.line
            );
        }
        for (line, c) in &parsed.contacts {
            assert!(*line >= 2, "{name}: row {line}");
            let phone = PhoneNumber::parse(&c.phone).expect("an imported number is valid");
            assert_eq!(phone.as_str(), c.phone, "{name}");
            if let Some(zone) = &c.time_zone {
                assert!(jiff::tz::TimeZone::get(zone).is_ok(), "{name}: zone {zone}");
            }
            let values = c
                .fields
                .iter()
                .flat_map(|(k, v)| [k.as_str(), v.as_str().unwrap_or_default()]);
            let texts = [c.name.as_str(), c.phone.as_str()]
                .into_iter()
                .chain(c.consent_source.as_deref())
                .chain(c.time_zone.as_deref())
                .chain(values);
            for t in texts {
                assert!(!t.contains('\0'), "{name}: a NUL was imported");
            }
        }
    }
}
