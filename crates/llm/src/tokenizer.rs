//! The tokenizer, built from the GGUF metadata (`tokenizer.ggml.*`), and the byte view of the
//! vocabulary that streaming and constrained decoding need.
//!
//! candle-core 0.11 already builds a `tokenizers::Tokenizer` from GGUF metadata
//! ([`TokenizerFromGguf`]); it knows the `qwen2` pre-tokenizer but treats `smollm` like GPT-2 (which
//! adds a prefix space and does not split digits), so for `smollm` we replace the pre-tokenizer with
//! what SmolLM2's own `tokenizer.json` uses: single digits, then byte-level without prefix space.

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use tokenizers::Tokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use crate::EngineError;

/// A tokenizer plus what the generation loop needs to know about each token.
#[derive(Debug, Clone)]
pub struct TokenVocab {
    /// Parses special tokens such as `<|im_start|>` in text (the reference behaviour of `tokenizer.json`).
    with_specials: Tokenizer,
    /// Treats special-token text as plain text, so text from a caller can never inject `<|im_end|>`.
    plain: Tokenizer,
    /// Raw bytes of each token; `None` for control tokens, which never appear in generated text.
    bytes: Vec<Option<Vec<u8>>>,
    /// Tokens that end an assistant message: `<|im_end|>`, `<|endoftext|>`, the GGUF eos.
    stop: Vec<u32>,
    pub im_start: u32,
    pub im_end: u32,
}

fn metadata_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

/// GPT-2's byte-level alphabet: printable bytes stand for themselves, the others are shifted to
/// code points from 256 up, in byte order.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0u32..256 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            shifted += 1;
            255 + shifted
        };
        if let Some(c) = char::from_u32(c) {
            map.insert(c, b as u8);
        }
    }
    map
}

impl TokenVocab {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, EngineError> {
        let mut with_specials =
            Tokenizer::from_gguf(ct).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let pre = ct
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if pre == "smollm" {
            with_specials.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])));
        }
        let mut plain = with_specials.clone();
        plain.set_encode_special_tokens(true);

        let tokens = ct
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .ok_or_else(|| EngineError::Tokenizer("no tokenizer.ggml.tokens".into()))?;
        let types: Vec<u32> = ct
            .metadata
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.iter().map(|t| t.to_i32().unwrap_or(1) as u32).collect())
            .unwrap_or_default();
        let decoder = byte_decoder();
        let mut bytes = Vec::with_capacity(tokens.len());
        for (id, tok) in tokens.iter().enumerate() {
            let text = tok
                .to_string()
                .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
            let ty = types.get(id).copied().unwrap_or(1);
            bytes.push(match ty {
                // normal
                1 => text
                    .chars()
                    .map(|c| decoder.get(&c).copied())
                    .collect::<Option<Vec<u8>>>(),
                // user-defined tokens are stored as their literal text
                4 => Some(text.as_bytes().to_vec()),
                // unknown, control, unused, byte-fallback tokens: never part of generated text
                _ => None,
            });
        }
        let id_of = |s: &str| with_specials.token_to_id(s);
        let im_start = id_of("<|im_start|>").ok_or_else(|| {
            EngineError::Tokenizer("vocabulary has no <|im_start|> (not a ChatML model)".into())
        })?;
        let im_end = id_of("<|im_end|>")
            .ok_or_else(|| EngineError::Tokenizer("vocabulary has no <|im_end|>".into()))?;
        let mut stop = vec![im_end];
        stop.extend(id_of("<|endoftext|>"));
        stop.extend(metadata_u32(ct, "tokenizer.ggml.eos_token_id"));
        stop.sort_unstable();
        stop.dedup();
        // Control tokens must never be "text", even if their type was not set in the file.
        for &id in stop.iter().chain([&im_start]) {
            if let Some(b) = bytes.get_mut(id as usize) {
                *b = None;
            }
        }
        Ok(Self {
            with_specials,
            plain,
            bytes,
            stop,
            im_start,
            im_end,
        })
    }

    /// The underlying tokenizer, with special tokens recognized in text.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.with_specials
    }

    /// Token ids of `text`, recognizing special tokens like `<|im_start|>` (what `tokenizer.json` does).
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.with_specials
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// Token ids of `text` taken literally: special-token text is encoded as ordinary characters.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.plain
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The raw bytes of a token, `None` for control tokens.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize).and_then(|b| b.as_deref())
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop.contains(&id)
    }

    /// The preferred stop token (`<|im_end|>`).
    pub fn stop_tokens(&self) -> &[u32] {
        &self.stop
    }
}

/// Turns generated tokens into text deltas that end on word boundaries.
///
/// Bytes are collected until they form valid UTF-8 (a character may be split across tokens), and text
/// is released only up to the last whitespace, so a speech synthesizer never gets half a word.
#[derive(Debug, Default)]
pub struct TextStream {
    bytes: Vec<u8>,
    pending: String,
    started: bool,
}

impl TextStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token's bytes; returns the text that is ready, if any.
    pub fn push(&mut self, token_bytes: &[u8]) -> Option<String> {
        self.bytes.extend_from_slice(token_bytes);
        loop {
            match std::str::from_utf8(&self.bytes) {
                Ok(s) => {
                    self.pending.push_str(s);
                    self.bytes.clear();
                    break;
                }
                // An incomplete character at the end: keep it until the next token completes it.
                Err(e) if e.error_len().is_none() => {
                    let valid = e.valid_up_to();
                    let text: Vec<u8> = self.bytes.drain(..valid).collect();
                    self.pending.push_str(&String::from_utf8_lossy(&text));
                    break;
                }
                // An invalid sequence never becomes valid: replace it and go on with the rest.
                Err(e) => {
                    let bad = e.valid_up_to() + e.error_len().unwrap_or(1);
                    let text: Vec<u8> = self.bytes.drain(..bad).collect();
                    self.pending.push_str(&String::from_utf8_lossy(&text));
                }
            }
        }
        self.release()
    }

    fn release(&mut self) -> Option<String> {
        if !self.started {
            let trimmed = self.pending.trim_start();
            if trimmed.is_empty() {
                self.pending.clear();
                return None;
            }
            self.pending = trimmed.to_string();
        }
        let cut = self
            .pending
            .char_indices()
            .rfind(|(_, c)| c.is_whitespace())
            .map(|(i, c)| i + c.len_utf8())?;
        self.started = true;
        let rest = self.pending.split_off(cut);
        Some(std::mem::replace(&mut self.pending, rest))
    }

    /// Whatever is left at the end of the reply (trailing whitespace trimmed).
    pub fn finish(&mut self) -> Option<String> {
        if !self.bytes.is_empty() {
            let text = String::from_utf8_lossy(&self.bytes).into_owned();
            self.bytes.clear();
            self.pending.push_str(&text);
        }
        let rest = std::mem::take(&mut self.pending);
        let rest = if self.started {
            rest.trim_end()
        } else {
            rest.trim()
        };
        (!rest.is_empty()).then(|| rest.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_decoder_covers_all_bytes() {
        let map = byte_decoder();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
    }

    #[test]
    fn text_stream_releases_whole_words_only() {
        let mut s = TextStream::new();
        assert_eq!(s.push(b" Hel"), None);
        assert_eq!(s.push(b"lo"), None);
        assert_eq!(s.push(b", wor").as_deref(), Some("Hello, "));
        assert_eq!(s.push(b"ld!"), None);
        assert_eq!(s.finish().as_deref(), Some("world!"));
    }

    #[test]
    fn text_stream_joins_utf8_split_across_tokens() {
        let mut s = TextStream::new();
        let euro = "€ ".as_bytes(); // 3-byte character then a space
        assert_eq!(s.push(&euro[..1]), None);
        assert_eq!(s.push(&euro[1..2]), None);
        assert_eq!(s.push(&euro[2..]).as_deref(), Some("€ "));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn text_stream_replaces_invalid_bytes() {
        let mut s = TextStream::new();
        assert_eq!(s.push(&[0xff, b' ']).as_deref(), Some("\u{fffd} "));
    }
}
