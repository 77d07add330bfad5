//! Times as the store keeps them: milliseconds since the Unix epoch, UTC.

use crate::Millis;

/// The day number (days since 1970-01-01, UTC) of a time is `ms / MS_PER_DAY`. SQL computes it with
/// `/`, integer division on both databases (it would round toward zero before 1970, but no call
/// starts before 1970).
pub(crate) const MS_PER_DAY: i64 = 86_400_000;

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> Millis {
    jiff::Timestamp::now().as_millisecond()
}

/// `YYYY-MM-DD` of a day number, or `None` past the years jiff can name (±9999).
pub(crate) fn day_name(day: i64) -> Option<String> {
    let second = day.checked_mul(86_400)?;
    let t = jiff::Timestamp::from_second(second).ok()?;
    Some(t.strftime("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_time;

    #[test]
    fn parses_milliseconds_and_rfc3339() {
        assert_eq!(parse_time("1764000000000"), Some(1_764_000_000_000));
        assert_eq!(parse_time("2026-11-24T09:00:00Z"), Some(1_795_510_800_000));
        assert_eq!(parse_time("2026-11-24T10:00:00+01:00"), Some(1_795_510_800_000));
        assert_eq!(parse_time("2026-11-24T09:00:00.250Z"), Some(1_795_510_800_250));
    }

    #[test]
    fn rejects_other_text() {
        for bad in [
            "",
            "yesterday",
            "2026-11-24T09:00:00",
            "12ms",
            "2026-13-01T00:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_days_in_utc() {
        assert_eq!(day_name(0).as_deref(), Some("1970-01-01"));
        let ms = parse_time("2026-11-24T23:59:59.999Z").expect("time");
        assert_eq!(day_name(ms / MS_PER_DAY).as_deref(), Some("2026-11-24"));
        let ms = parse_time("2026-11-25T00:00:00Z").expect("time");
        assert_eq!(day_name(ms / MS_PER_DAY).as_deref(), Some("2026-11-25"));
        assert_eq!(day_name(i64::MAX), None);
    }
}
