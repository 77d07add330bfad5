//! Whisper's vocabulary as whisper.cpp wants it: the raw bytes of each token. tokenizer.json stores
//! byte-level BPE tokens as printable strings (GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand
//! for themselves, the other 68 bytes are shifted to U+0100…U+0143), so we invert that mapping.

use std::collections::HashMap;

/// GPT-2's `bytes_to_unicode`: the character that stands for each byte.
pub fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next_shifted = 256u32;
    for b in 0..=255u8 {
        table[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next_shifted).unwrap_or('\0');
            next_shifted += 1;
            c
        };
    }
    table
}

/// The inverse of [`bytes_to_unicode`], applied to a whole token; `None` if a character is not one of
/// the 256 byte stand-ins.
pub fn token_to_bytes(token: &str, inverse: &HashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| inverse.get(&c).copied()).collect()
}

pub fn unicode_to_bytes() -> HashMap<char, u8> {
    bytes_to_unicode()
        .iter()
        .enumerate()
        .map(|(b, c)| (*c, b as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_gpt2() {
        let t = bytes_to_unicode();
        assert_eq!(t[usize::from(b'!')], '!');
        assert_eq!(t[usize::from(b'A')], 'A');
        assert_eq!(t[0x00], '\u{100}'); // Ā
        assert_eq!(t[usize::from(b' ')], 'Ġ'); // U+0120, the famous space marker
        assert_eq!(t[usize::from(b'\n')], 'Ċ'); // U+010A
        assert_eq!(t[0x7F], 'ġ'); // U+0121: first after the 33 control bytes and space
        assert_eq!(t[0xA0], 'ł'); // U+0142
        assert_eq!(t[0xAD], 'Ń'); // U+0143, the soft hyphen, last shifted byte
        assert_eq!(t[0xAE], '®');
    }

    #[test]
    fn inverse_is_a_bijection() {
        let inv = unicode_to_bytes();
        assert_eq!(inv.len(), 256);
        let t = bytes_to_unicode();
        for b in 0..=255u8 {
            assert_eq!(inv[&t[usize::from(b)]], b);
        }
    }

    #[test]
    fn decodes_tokens_to_bytes() {
        let inv = unicode_to_bytes();
        assert_eq!(token_to_bytes("Ġthe", &inv), Some(b" the".to_vec()));
        assert_eq!(token_to_bytes("ĊĊ", &inv), Some(b"\n\n".to_vec()));
        // "é" in UTF-8 is C3 A9, which byte-level BPE writes as "Ã©".
        assert_eq!(token_to_bytes("Ã©", &inv), Some("é".as_bytes().to_vec()));
        assert_eq!(
            token_to_bytes("<|endoftext|>", &inv),
            Some(b"<|endoftext|>".to_vec())
        );
        assert_eq!(token_to_bytes("", &inv), Some(Vec::new()));
        assert_eq!(token_to_bytes("\u{2603}", &inv), None);
    }
}
