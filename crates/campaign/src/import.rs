//! Contact lists: CSV in, checked contacts out, with a report of every row refused and why.
//!
//! Columns (header names are matched without regard to case or surrounding spaces):
//! - `phone` (required): E.164 ([`PhoneNumber`]).
//! - `name`: the contact's name (may be empty).
//! - `consent` (required): `yes`/`no`, `true`/`false`, `1`/`0`, `y`/`n`. A row without a value is
//!   refused rather than read as "no": a list where the column was forgotten should be fixed, not
//!   silently never called.
//! - `consent_source`: where the consent came from.
//! - `time_zone`: an IANA name (checked against the system's time zone database). When absent or
//!   empty the zone is derived where that is unambiguous: from `state` (or `area`) for a US state
//!   or Canadian province in a single zone, else from the number's country code
//!   ([`PhoneNumber::single_time_zone`]). Otherwise the contact is imported without a zone, listed
//!   in the report, and never called.
//! - every other column becomes a custom field the flow can use (`{{contact.appointment}}`).

use std::io::Read;

use switchboard_store::NewContact;

use crate::phone::{PhoneNumber, region_time_zone};

/// Why a whole file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the CSV header: {0}")]
    Header(#[source] csv::Error),
    #[error("the CSV has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("the CSV names the column `{0}` twice")]
    DuplicateColumn(String),
    #[error("a CSV column name holds a NUL character")]
    NulInHeader,
}

/// A row not imported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RejectedRow {
    /// 1-based row, as a spreadsheet numbers it (the header is row 1). It is the line in the file
    /// unless a quoted value spans lines.
    pub line: u64,
    pub reason: String,
}

/// The contacts read from a file, each with its line, and the rows refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedContacts {
    pub contacts: Vec<(u64, NewContact)>,
    pub rejected: Vec<RejectedRow>,
}

impl ParsedContacts {
    /// Lines of the contacts whose time zone is unknown (they will not be called).
    pub fn without_time_zone(&self) -> Vec<u64> {
        self.contacts
            .iter()
            .filter(|(_, c)| c.time_zone.is_none())
            .map(|(line, _)| *line)
            .collect()
    }
}

const KNOWN: [&str; 7] = [
    "name",
    "phone",
    "consent",
    "consent_source",
    "time_zone",
    "state",
    "area",
];

/// Reads a contact list. Row problems are collected in `rejected`; only an unreadable header or a
/// missing required column fails the whole file.
pub fn parse_contacts(input: impl Read) -> Result<ParsedContacts, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(ImportError::Header)?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    // Other columns become the keys of custom fields, and PostgreSQL cannot store a NUL in one.
    if headers.iter().any(|h| h.contains('\0')) {
        return Err(ImportError::NulInHeader);
    }
    for (i, h) in headers.iter().enumerate() {
        if headers[..i].contains(h) {
            return Err(ImportError::DuplicateColumn(h.clone()));
        }
    }
    let column = |name: &str| headers.iter().position(|h| h == name);
    let phone_col = column("phone").ok_or(ImportError::MissingColumn("phone"))?;
    let consent_col = column("consent").ok_or(ImportError::MissingColumn("consent"))?;
    let name_col = column("name");
    let source_col = column("consent_source");
    let zone_col = column("time_zone");
    let region_col = column("state").or_else(|| column("area"));

    let mut parsed = ParsedContacts::default();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, row);
                parsed.rejected.push(RejectedRow {
                    line,
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, row);
        // No list means a NUL character, and PostgreSQL cannot store one.
        if record.iter().any(|field| field.contains('\0')) {
            parsed.rejected.push(RejectedRow {
                line,
                reason: "the row holds a NUL character".into(),
            });
            continue;
        }
        let get = |col: Option<usize>| col.and_then(|c| record.get(c)).filter(|v| !v.is_empty());
        let reject = |reason: String| RejectedRow { line, reason };

        let phone = match PhoneNumber::parse(get(Some(phone_col)).unwrap_or("")) {
            Ok(p) => p,
            Err(e) => {
                parsed.rejected.push(reject(e.to_string()));
                continue;
            }
        };
        let consent = match get(Some(consent_col)).map(parse_consent) {
            Some(Some(c)) => c,
            Some(None) | None => {
                let value = get(Some(consent_col)).unwrap_or("");
                parsed.rejected.push(reject(format!(
                    "consent must be yes/no, true/false or 1/0, got `{value}`"
                )));
                continue;
            }
        };
        let time_zone = match get(zone_col) {
            Some(name) => match jiff::tz::TimeZone::get(name) {
                // The name as given: it is what `TimeZone::get` will be asked again.
                Ok(_) => Some(name.to_string()),
                Err(_) => {
                    parsed.rejected.push(reject(format!(
                        "unknown time zone `{name}` (expected an IANA name)"
                    )));
                    continue;
                }
            },
            None => derive_time_zone(&phone, get(region_col)).map(str::to_string),
        };
        let mut fields = serde_json::Map::new();
        for (i, h) in headers.iter().enumerate() {
            if KNOWN.contains(&h.as_str()) {
                continue;
            }
            if let Some(v) = record.get(i).filter(|v| !v.is_empty()) {
                fields.insert(h.clone(), serde_json::Value::String(v.to_string()));
            }
        }
        parsed.contacts.push((
            line,
            NewContact {
                name: get(name_col).unwrap_or("").to_string(),
                phone: phone.as_str().to_string(),
                time_zone,
                consent,
                consent_source: get(source_col).map(str::to_string),
                fields,
            },
        ));
    }
    Ok(parsed)
}

/// The row of a record, counting the header as 1. Not the reader's line: that counts `\n` only, so
/// in a file with old Mac line ends (`\r`, still written by spreadsheets) every row was "line 1", and
/// an import report could not say which row it meant (found by fuzzing, `contacts_csv`).
fn row(position: &csv::Position) -> u64 {
    position.record() + 1
}

/// The zone a number with this region is in, when only one is possible.
fn derive_time_zone(phone: &PhoneNumber, region: Option<&str>) -> Option<&'static str> {
    if phone.is_nanp() {
        return region.and_then(region_time_zone);
    }
    phone.single_time_zone()
}

fn parse_consent(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(csv: &str) -> ParsedContacts {
        parse_contacts(csv.as_bytes()).expect("readable")
    }

    #[test]
    fn reads_contacts_with_zones_and_custom_fields() {
        let p = parse(
            "Name,Phone,Consent,consent_source,time_zone,state,appointment\n\
             Ada,+44 20 7946 0958,yes,web form,,,Tuesday 10:00\n\
             Bob,+12125550100,TRUE,,America/Chicago,NY,\n\
             Cy,+12125550101,1,,,ny,Friday\n\
             Di,+12125550102,no,,,TX,\n\
             Ed,+61212345678,0,,,,\n",
        );
        assert!(p.rejected.is_empty(), "{:?}", p.rejected);
        let by_name = |n: &str| &p.contacts.iter().find(|(_, c)| c.name == n).expect(n).1;
        let ada = by_name("Ada");
        assert_eq!(ada.phone, "+442079460958");
        assert_eq!(ada.time_zone.as_deref(), Some("Europe/London"));
        assert!(ada.consent);
        assert_eq!(ada.consent_source.as_deref(), Some("web form"));
        assert_eq!(
            ada.fields.get("appointment"),
            Some(&serde_json::json!("Tuesday 10:00"))
        );
        assert_eq!(ada.fields.len(), 1, "known columns are not custom fields");
        // An explicit zone wins over the state.
        assert_eq!(by_name("Bob").time_zone.as_deref(), Some("America/Chicago"));
        assert!(by_name("Bob").fields.is_empty(), "empty values are left out");
        assert_eq!(by_name("Cy").time_zone.as_deref(), Some("America/New_York"));
        assert_eq!(by_name("Di").time_zone, None, "Texas spans two zones");
        assert!(!by_name("Di").consent);
        assert_eq!(by_name("Ed").time_zone, None, "Australia spans several zones");
        assert_eq!(p.without_time_zone(), vec![5, 6]);
        assert_eq!(p.contacts[0].0, 2, "line numbers count the header");
    }

    #[test]
    fn rejects_rows_with_their_line_and_reason() {
        let p = parse(
            "name,phone,consent,time_zone\n\
             ok,+442079460958,yes,\n\
             no plus,02079460958,yes,\n\
             short,+4420,yes,\n\
             maybe,+442079460959,perhaps,\n\
             blank,+442079460960,,\n\
             bad zone,+442079460961,yes,Europe/Atlantis\n\
             too,many,fields,here,really\n\
             ok2,+33142000000,no,Europe/Paris\n\
             nul\0,+33142000001,no,Europe/Paris\n",
        );
        assert_eq!(p.contacts.len(), 2);
        let lines: Vec<u64> = p.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 10]);
        assert!(p.rejected[6].reason.contains("NUL"));
        assert!(
            p.rejected[0].reason.contains("must start with +"),
            "{}",
            p.rejected[0].reason
        );
        assert!(p.rejected[1].reason.contains("8 to 15 digits"));
        assert!(p.rejected[2].reason.contains("`perhaps`"));
        assert!(p.rejected[3].reason.contains("consent"));
        assert!(p.rejected[4].reason.contains("Europe/Atlantis"));
        assert!(p.rejected[5].reason.contains("unreadable row"));
    }

    #[test]
    fn a_file_without_required_columns_is_refused() {
        assert!(matches!(
            parse_contacts("name,consent\nA,yes\n".as_bytes()),
            Err(ImportError::MissingColumn("phone"))
        ));
        assert!(matches!(
            parse_contacts("name,phone\nA,+442079460958\n".as_bytes()),
            Err(ImportError::MissingColumn("consent"))
        ));
        assert!(matches!(
            parse_contacts("phone,consent,Phone\n".as_bytes()),
            Err(ImportError::DuplicateColumn(_))
        ));
    }

    /// Found by fuzzing (`contacts_csv`): rows ended by a lone `\r` all had the same line, so a
    /// refused row and an imported one could share it.
    #[test]
    fn rows_are_numbered_whatever_the_line_ends() {
        for end in ["\n", "\r\n", "\r"] {
            let csv = [
                "phone,consent",
                "+442079460958,yes",
                "+44207946095,perhaps",
                "+33142000000,no",
            ]
            .join(end);
            let p = parse(&csv);
            let lines: Vec<u64> = p.contacts.iter().map(|(l, _)| *l).collect();
            assert_eq!(lines, vec![2, 4], "{end:?}");
            assert_eq!(
                p.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
                vec![3],
                "{end:?}"
            );
        }
        // A quoted value over two lines is still one row.
        let p = parse("name,phone,consent\n\"Ada\nLovelace\",+442079460958,yes\nBob,+33142000000,no\n");
        assert_eq!(p.contacts.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![2, 3]);
    }

    /// Found by fuzzing (`contacts_csv`): the row check looked at values only, so a NUL in a column
    /// name reached a custom field's key, which PostgreSQL refuses.
    #[test]
    fn a_nul_in_a_column_name_refuses_the_file() {
        assert!(matches!(
            parse_contacts("phone,consent,appoint\0ment\n+442079460958,yes,Tuesday\n".as_bytes()),
            Err(ImportError::NulInHeader)
        ));
    }

    #[test]
    fn area_is_read_like_state() {
        let p = parse("phone,consent,area\n+13125550100,yes,IL\n");
        assert_eq!(p.contacts[0].1.time_zone.as_deref(), Some("America/Chicago"));
        assert!(p.contacts[0].1.fields.is_empty());
    }
}
