//! Phone numbers (E.164) and what can be told of a number's time zone from the number alone.

use std::fmt;

/// A phone number in E.164: `+`, then 8 to 15 digits, the first not 0. Spaces, dashes, dots and
/// parentheses people write in lists are dropped while parsing; nothing else is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("a phone number must start with + and the country code (E.164), got `{0}`")]
    NoPlus(String),
    #[error("`{0}` holds something other than digits after the +")]
    NotDigits(String),
    #[error("`{0}` must have 8 to 15 digits after the +")]
    Length(String),
    #[error("`{0}`: a country code never starts with 0")]
    LeadingZero(String),
}

impl PhoneNumber {
    pub fn parse(text: &str) -> Result<PhoneNumber, PhoneError> {
        let cleaned: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let Some(digits) = cleaned.strip_prefix('+') else {
            return Err(PhoneError::NoPlus(text.to_string()));
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneError::NotDigits(text.to_string()));
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(PhoneError::Length(text.to_string()));
        }
        if digits.starts_with('0') {
            return Err(PhoneError::LeadingZero(text.to_string()));
        }
        Ok(PhoneNumber(cleaned))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits after the `+`.
    fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The IANA time zone of every number with this number's prefix, when there is exactly one.
    /// `None` when the country spans several zones (NANP `+1`, Russia, Australia, Brazil, …) or is
    /// not in the table: a guess could call someone at night, so there is no guess.
    pub fn single_time_zone(&self) -> Option<&'static str> {
        let digits = self.digits();
        // Longest prefix first, so +351 wins over +35 and +34 922 over +34.
        SINGLE_ZONE_PREFIXES
            .iter()
            .filter(|(prefix, _)| digits.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len())
            .and_then(|(_, zone)| *zone)
    }

    /// Whether the number is in the North American Numbering Plan (`+1`), where a state can tell
    /// the zone.
    pub fn is_nanp(&self) -> bool {
        self.digits().starts_with('1')
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Country codes (digits after `+`) whose numbers all lie in one time zone. A `None` entry marks a
/// longer prefix that is *not* the country's main zone, or one that is ambiguous (a mobile range
/// used on islands in another zone), so it overrides the shorter one.
const SINGLE_ZONE_PREFIXES: &[(&str, Option<&str>)] = &[
    ("44", Some("Europe/London")),
    ("353", Some("Europe/Dublin")),
    ("33", Some("Europe/Paris")),
    ("49", Some("Europe/Berlin")),
    ("31", Some("Europe/Amsterdam")),
    ("32", Some("Europe/Brussels")),
    ("352", Some("Europe/Luxembourg")),
    // Spain: landlines on the mainland and the Balearics; the Canaries (922, 928) are an hour
    // behind, and mobiles (6, 7) move between them.
    ("34", Some("Europe/Madrid")),
    ("34922", Some("Atlantic/Canary")),
    ("34928", Some("Atlantic/Canary")),
    ("346", None),
    ("347", None),
    // Portugal: the Azores (292, 295, 296) are an hour behind; mobiles (9) move between them.
    ("351", Some("Europe/Lisbon")),
    ("351292", Some("Atlantic/Azores")),
    ("351295", Some("Atlantic/Azores")),
    ("351296", Some("Atlantic/Azores")),
    ("3519", None),
    ("39", Some("Europe/Rome")),
    ("41", Some("Europe/Zurich")),
    ("43", Some("Europe/Vienna")),
    ("45", Some("Europe/Copenhagen")),
    ("46", Some("Europe/Stockholm")),
    ("47", Some("Europe/Oslo")),
    ("48", Some("Europe/Warsaw")),
    ("358", Some("Europe/Helsinki")),
    ("30", Some("Europe/Athens")),
    ("36", Some("Europe/Budapest")),
    ("420", Some("Europe/Prague")),
    ("421", Some("Europe/Bratislava")),
    ("386", Some("Europe/Ljubljana")),
    ("385", Some("Europe/Zagreb")),
    ("40", Some("Europe/Bucharest")),
    ("359", Some("Europe/Sofia")),
    ("370", Some("Europe/Vilnius")),
    ("371", Some("Europe/Riga")),
    ("372", Some("Europe/Tallinn")),
    ("354", Some("Atlantic/Reykjavik")),
    ("972", Some("Asia/Jerusalem")),
    ("27", Some("Africa/Johannesburg")),
    ("81", Some("Asia/Tokyo")),
    ("82", Some("Asia/Seoul")),
    ("65", Some("Asia/Singapore")),
    ("852", Some("Asia/Hong_Kong")),
    ("853", Some("Asia/Macau")),
    ("886", Some("Asia/Taipei")),
    ("91", Some("Asia/Kolkata")),
    ("86", Some("Asia/Shanghai")),
];

/// US states and Canadian provinces that lie entirely in one time zone (two-letter postal codes).
/// States split between zones (TX, FL, TN, KY, IN, MI, KS, NE, SD, ND, ID, OR, NV, AK, AZ with the
/// Navajo Nation's daylight time, ON, QC, BC, NL, SK, NU) are missing on purpose.
const SINGLE_ZONE_REGIONS: &[(&str, &str)] = &[
    ("CT", "America/New_York"),
    ("DC", "America/New_York"),
    ("DE", "America/New_York"),
    ("GA", "America/New_York"),
    ("MA", "America/New_York"),
    ("MD", "America/New_York"),
    ("ME", "America/New_York"),
    ("NC", "America/New_York"),
    ("NH", "America/New_York"),
    ("NJ", "America/New_York"),
    ("NY", "America/New_York"),
    ("OH", "America/New_York"),
    ("PA", "America/New_York"),
    ("RI", "America/New_York"),
    ("SC", "America/New_York"),
    ("VA", "America/New_York"),
    ("VT", "America/New_York"),
    ("WV", "America/New_York"),
    ("AL", "America/Chicago"),
    ("AR", "America/Chicago"),
    ("IA", "America/Chicago"),
    ("IL", "America/Chicago"),
    ("LA", "America/Chicago"),
    ("MN", "America/Chicago"),
    ("MO", "America/Chicago"),
    ("MS", "America/Chicago"),
    ("OK", "America/Chicago"),
    ("WI", "America/Chicago"),
    ("CO", "America/Denver"),
    ("MT", "America/Denver"),
    ("NM", "America/Denver"),
    ("UT", "America/Denver"),
    ("WY", "America/Denver"),
    ("CA", "America/Los_Angeles"),
    ("WA", "America/Los_Angeles"),
    ("HI", "Pacific/Honolulu"),
    ("PR", "America/Puerto_Rico"),
    ("AB", "America/Edmonton"),
    ("MB", "America/Winnipeg"),
    ("NB", "America/Moncton"),
    ("NS", "America/Halifax"),
    ("PE", "America/Halifax"),
];

/// The zone of a US state or Canadian province given by its postal code, when it has one.
pub fn region_time_zone(region: &str) -> Option<&'static str> {
    let region = region.trim();
    SINGLE_ZONE_REGIONS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(region))
        .map(|(_, zone)| *zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_e164_and_drops_separators() {
        assert_eq!(
            PhoneNumber::parse("+44 20 7946-0958").map(|p| p.0),
            Ok("+442079460958".into())
        );
        assert_eq!(
            PhoneNumber::parse(" +1 (212) 555.0100 ").map(|p| p.0),
            Ok("+12125550100".into())
        );
        assert!(matches!(
            PhoneNumber::parse("02079460958"),
            Err(PhoneError::NoPlus(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("+44 20 CALL ME"),
            Err(PhoneError::NotDigits(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("+1234567"),
            Err(PhoneError::Length(_))
        ));
        assert!(matches!(
            PhoneNumber::parse("+1234567890123456"),
            Err(PhoneError::Length(_))
        ));
        assert!(PhoneNumber::parse("+12345678").is_ok());
        assert!(PhoneNumber::parse("+123456789012345").is_ok());
        assert!(matches!(
            PhoneNumber::parse("+0441234567"),
            Err(PhoneError::LeadingZero(_))
        ));
        assert!(matches!(PhoneNumber::parse(""), Err(PhoneError::NoPlus(_))));
        assert!(matches!(PhoneNumber::parse("+"), Err(PhoneError::Length(_))));
    }

    fn zone(n: &str) -> Option<&'static str> {
        PhoneNumber::parse(n).expect("valid").single_time_zone()
    }

    #[test]
    fn single_zone_countries_give_their_zone() {
        assert_eq!(zone("+442079460958"), Some("Europe/London"));
        assert_eq!(zone("+33142000000"), Some("Europe/Paris"));
        assert_eq!(zone("+353123456789"), Some("Europe/Dublin"));
        assert_eq!(zone("+819012345678"), Some("Asia/Tokyo"));
        assert_eq!(zone("+85291234567"), Some("Asia/Hong_Kong"));
        assert_eq!(zone("+34912345678"), Some("Europe/Madrid"));
        assert_eq!(zone("+34928123456"), Some("Atlantic/Canary"));
        assert_eq!(zone("+351213456789"), Some("Europe/Lisbon"));
        assert_eq!(zone("+351296123456"), Some("Atlantic/Azores"));
    }

    #[test]
    fn ambiguous_numbers_give_none() {
        // NANP spans six zones; Spanish and Portuguese mobiles may be on the islands; Russia and
        // Australia span several; +35 alone is no country.
        for n in [
            "+12125550100",
            "+34612345678",
            "+351912345678",
            "+74951234567",
            "+61212345678",
            "+35012345",
        ] {
            assert_eq!(zone(n), None, "{n}");
        }
        assert!(PhoneNumber::parse("+12125550100").expect("valid").is_nanp());
        assert!(!PhoneNumber::parse("+442079460958").expect("valid").is_nanp());
    }

    #[test]
    fn every_zone_in_the_tables_exists() {
        for zone in SINGLE_ZONE_PREFIXES.iter().filter_map(|(_, z)| *z) {
            assert!(jiff::tz::TimeZone::get(zone).is_ok(), "{zone}");
        }
        for (_, zone) in SINGLE_ZONE_REGIONS {
            assert!(jiff::tz::TimeZone::get(zone).is_ok(), "{zone}");
        }
    }

    #[test]
    fn regions() {
        assert_eq!(region_time_zone("ny"), Some("America/New_York"));
        assert_eq!(region_time_zone(" CA "), Some("America/Los_Angeles"));
        assert_eq!(region_time_zone("TX"), None, "El Paso is on mountain time");
        assert_eq!(region_time_zone("FL"), None);
        assert_eq!(region_time_zone(""), None);
    }
}
