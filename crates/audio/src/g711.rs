//! G.711 mu-law, bit-exact with Python's `audioop.lin2ulaw` / `ulaw2lin` (the reference the
//! telephony vectors were computed with). Decoding is a 256-entry table built at compile time, so
//! the hot path of every inbound frame is one indexed load per byte.

/// Encodes one 16-bit linear sample to mu-law.
#[must_use]
pub const fn encode_sample(x: i16) -> u8 {
    let sign: u8 = if x < 0 { 0x80 } else { 0 };
    // audioop works on 14-bit magnitudes: drop the two low bits before biasing.
    let shifted = (x as i32) >> 2;
    let mut m = if shifted < 0 { -shifted } else { shifted };
    m += 33;
    if m > 0x1FFF {
        m = 0x1FFF;
    }
    let bitlen = 32 - (m as u32).leading_zeros() as i32;
    let e = bitlen - 6;
    let q = (m >> (e + 1)) & 0x0F;
    !(sign | ((e as u8) << 4) | q as u8)
}

/// Decodes one mu-law byte to a 16-bit linear sample.
#[must_use]
pub const fn decode_sample(code: u8) -> i16 {
    DECODE_TABLE[code as usize]
}

const fn decode_formula(code: u8) -> i16 {
    let u = !code;
    let e = (u >> 4) & 7;
    let q = (u & 0x0F) as i32;
    let mag = (((q << 3) + 0x84) << e) - 0x84;
    if u & 0x80 != 0 { -mag as i16 } else { mag as i16 }
}

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_formula(i as u8);
        i += 1;
    }
    table
}

/// The full decode table, exposed so callers (and tests) can check it against the reference hash.
pub const DECODE_TABLE: [i16; 256] = build_decode_table();

/// Encodes 16-bit linear samples to mu-law bytes.
#[must_use]
pub fn encode(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| encode_sample(s)).collect()
}

/// Decodes mu-law bytes to 16-bit linear samples.
#[must_use]
pub fn decode(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().map(|&b| decode_sample(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// Minimal standard-alphabet base64 decoder: enough for the protocol vector, without a
    /// dependency.
    fn base64_decode(text: &str) -> Vec<u8> {
        fn value(c: u8) -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                other => panic!("not base64: {other}"),
            }
        }
        let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
        let mut out = Vec::with_capacity(clean.len() * 3 / 4);
        for chunk in clean.chunks(4) {
            let mut acc = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                acc |= value(c) << (18 - 6 * i);
            }
            let bytes = acc.to_be_bytes();
            out.extend_from_slice(&bytes[1..chunk.len()]);
        }
        out
    }

    #[test]
    fn protocol_table_vectors() {
        let vectors: [(i16, u8, i16); 16] = [
            (0, 0xFF, 0),
            (1, 0xFF, 0),
            (-1, 0x7E, -8),
            (8, 0xFE, 8),
            (16, 0xFD, 16),
            (31, 0xFB, 32),
            (100, 0xF2, 104),
            (-100, 0x72, -104),
            (1000, 0xCE, 988),
            (-1000, 0x4E, -988),
            (4000, 0xAF, 4092),
            (8158, 0x9F, 8316),
            (16000, 0x90, 15996),
            (32124, 0x80, 32124),
            (32767, 0x80, 32124),
            (-32768, 0x00, -32124),
        ];
        for (pcm, code, decoded) in vectors {
            assert_eq!(encode_sample(pcm), code, "encode {pcm}");
            assert_eq!(decode_sample(code), decoded, "decode {code:#04x}");
        }
    }

    #[test]
    fn protocol_decode_vectors() {
        assert_eq!(decode_sample(0x01), -31100);
        assert_eq!(decode_sample(0x0F), -16764);
        assert_eq!(decode_sample(0x10), -15996);
        assert_eq!(decode_sample(0x7F), 0);
    }

    #[test]
    fn protocol_tone_bytes() {
        let tone = [0i16, 5657, 8000, 5657, 0, -5657, -8000, -5657];
        assert_eq!(
            encode(&tone),
            vec![0xff, 0xa9, 0xa0, 0xa9, 0xff, 0x29, 0x20, 0x29]
        );
    }

    #[test]
    fn decode_table_sha256_matches_audioop() {
        let bytes: Vec<u8> = DECODE_TABLE.iter().flat_map(|s| s.to_le_bytes()).collect();
        let digest = Sha256::digest(&bytes);
        assert_eq!(
            hex::encode(digest),
            "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827"
        );
        // The table must agree with the formula it was built from, byte by byte.
        let from_formula: Vec<i16> = (0..=255u8).map(decode_formula).collect();
        assert_eq!(decode(&(0..=255u8).collect::<Vec<_>>()), from_formula);
    }

    #[test]
    fn protocol_20ms_1khz_tone_frame() {
        let expected = base64_decode(
            "/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKf+poKn/KSAp/6mgqf8pICn/qaCp/ykgKQ==",
        );
        // PROTOCOLS.md calls this "20 ms" (160 bytes, 216 base64 characters), but the vector as
        // given is 248 characters: 184 bytes, 23 ms. Checked against `audioop.lin2ulaw` on 184
        // rounded samples: it is that, byte for byte. The test pins the vector as it is.
        assert_eq!(expected.len(), 184);
        let tone: Vec<i16> = (0..expected.len() as u32)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0;
                // The reference samples were rounded (5657, not 5656, at 45 degrees).
                (8000.0 * phase.sin()).round() as i16
            })
            .collect();
        assert_eq!(encode(&tone), expected);
        // The tone has an 8-sample period, so the real 20 ms frame is its first 160 bytes.
        assert_eq!(encode(&tone[..160]), expected[..160]);
    }

    #[test]
    fn silence_frame_is_0xff_and_decodes_to_zero() {
        assert_eq!(encode(&[0i16; 160]), vec![0xFF; 160]);
        assert!(decode(&[0xFF; 160]).iter().all(|&s| s == 0));
    }

    #[test]
    fn encode_decode_roundtrip_error_is_within_one_quantization_step() {
        // mu-law keeps relative error bounded: the step at magnitude m is about m/16.
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let y = decode_sample(encode_sample(x));
            let err = (i32::from(x) - i32::from(y)).abs();
            let magnitude = i32::from(x).abs();
            let bound = magnitude / 16 + 16 + (magnitude - 32124).max(0);
            assert!(err <= bound, "{x} -> {y}, error {err} > {bound}");
        }
    }

    #[test]
    fn every_code_re_encodes_to_itself_except_negative_zero() {
        for code in 0..=255u8 {
            let back = encode_sample(decode_sample(code));
            if code == 0x7F {
                // 0x7F is "negative zero": it decodes to 0, which encodes as positive zero 0xFF.
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "code {code:#04x}");
            }
        }
    }
}
