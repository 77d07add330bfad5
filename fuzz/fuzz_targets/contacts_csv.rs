//! A contact list (CSV) as `campaign import` and the API's upload read it: never a panic; every contact
//! imported has a valid E.164 number that parses to itself, a known or absent time zone, and no NUL
//! (PostgreSQL cannot store one); contacts keep the file's order, and no line is both imported and refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_campaign::{PhoneNumber, parse_contacts};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p) = PhoneNumber::parse(text)
    {
        let again = PhoneNumber::parse(p.as_str()).expect("a parsed number parses again");
        assert_eq!(again, p);
    }
    let Ok(parsed) = parse_contacts(data) else {
        return;
    };
    let lines: Vec<u64> = parsed.contacts.iter().map(|(line, _)| *line).collect();
    assert!(
        lines.windows(2).all(|w| w[0] < w[1]),
        "contacts out of order: {lines:?}"
    );
    for r in &parsed.rejected {
        assert!(
            !lines.contains(&r.line),
            "line {} both imported and refused",
            r.line
        );
    }
    for (line, contact) in &parsed.contacts {
        assert!(*line >= 2, "line {line}: the header is line 1");
        let phone = PhoneNumber::parse(&contact.phone).expect("an imported number is valid");
        assert_eq!(phone.as_str(), contact.phone);
        if let Some(zone) = &contact.time_zone {
            assert!(jiff_zone_exists(zone), "unknown zone {zone}");
        }
        let texts = [&contact.name, &contact.phone]
            .into_iter()
            .chain(contact.consent_source.as_ref())
            .chain(contact.time_zone.as_ref());
        for t in texts {
            assert!(!t.contains('\0'), "a NUL was imported");
        }
        for (k, v) in &contact.fields {
            assert!(!k.contains('\0'));
            assert!(!v.as_str().unwrap_or_default().contains('\0'));
        }
    }
});

fn jiff_zone_exists(name: &str) -> bool {
    jiff::tz::TimeZone::get(name).is_ok()
}
