//! The call list's page cursor: the sort key of the last call on a page, `<started_at>_<id>`.
//!
//! It is keyset pagination rather than an offset, so calls added while a client pages neither
//! repeat nor go missing. The cursor is a plain position — every well-formed one is a valid place to
//! continue from, whether or not a call is still there — which lets the API describe it exactly
//! (`CURSOR_PATTERN`): a generated client or a fuzzer knows which strings are cursors, and anything
//! else is refused as malformed.

use crate::{Millis, StoreError};

/// The regular expression a cursor matches (a start time in ms, `_`, a lowercase hyphenated UUID).
pub const CURSOR_PATTERN: &str = "^[0-9]{1,15}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub started_at: Millis,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.started_at, self.id)
    }

    /// Anything not matching [`CURSOR_PATTERN`] is [`StoreError::BadCursor`].
    pub fn decode(s: &str) -> Result<Self, StoreError> {
        let (time, id) = s.split_once('_').ok_or(StoreError::BadCursor)?;
        let digits_ok = (1..=15).contains(&time.len()) && time.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok || !is_lower_hyphenated_uuid(id) {
            return Err(StoreError::BadCursor);
        }
        Ok(Cursor {
            started_at: time.parse().map_err(|_| StoreError::BadCursor)?,
            id: id.to_string(),
        })
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex: how call ids are written.
fn is_lower_hyphenated_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = Cursor {
            started_at: 1_764_000_000_123,
            id: "019ab0c1-7d2e-7000-8000-000000000000".into(),
        };
        let s = c.encode();
        assert_eq!(s, "1764000000123_019ab0c1-7d2e-7000-8000-000000000000");
        assert_eq!(Cursor::decode(&s).expect("decodes"), c);
    }

    #[test]
    fn malformed_cursors_are_bad_cursor() {
        let cases = [
            "",
            "0",
            "12_",
            "_019ab0c1-7d2e-7000-8000-000000000000",
            "-5_019ab0c1-7d2e-7000-8000-000000000000",
            "1234567890123456_019ab0c1-7d2e-7000-8000-000000000000", // 16 digits
            "12_019AB0C1-7D2E-7000-8000-000000000000",               // uppercase
            "12_019ab0c1-7d2e-7000-8000-00000000000",                // short
            "12_019ab0c17d2e-7000-8000-0000000000000",               // hyphen moved
            "12_019ab0c1-7d2e-7000-8000-000000000000_",
        ];
        for case in cases {
            assert!(
                matches!(Cursor::decode(case), Err(StoreError::BadCursor)),
                "{case:?}"
            );
        }
    }
}
