//! Our transformer (explicit KV cache) must compute what candle-transformers' own quantized models
//! compute, for both architectures — including when a prompt is continued from a cached prefix.

mod common;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use switchboard_llm::model::{Pass, Transformer};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().expect("flatten").to_vec1().expect("vec");
    let b: Vec<f32> = b.flatten_all().expect("flatten").to_vec1().expect("vec");
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(t: &Tensor) -> usize {
    let v: Vec<f32> = t.flatten_all().expect("flatten").to_vec1().expect("vec");
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("non-empty")
}

fn compare(file: &str, fetch: &str) {
    let path = common::model_path(file, fetch);
    let device = Device::Cpu;
    let mut f = std::fs::File::open(&path).expect("open");
    let ct = gguf_file::Content::read(&mut f).expect("gguf");
    let ours = Transformer::from_gguf(&ct, &mut f, &device, 0).expect("our model");
    let arch = ct.metadata["general.architecture"]
        .to_string()
        .expect("arch")
        .clone();
    let tokens: Vec<u32> = (0..40u32).map(|i| 1000 + i * 37).collect();
    let input = Tensor::new(tokens.as_slice(), &device)
        .expect("tensor")
        .unsqueeze(0)
        .expect("unsqueeze");

    let reference = match arch.as_str() {
        "llama" => {
            let mut m =
                candle_transformers::models::quantized_llama::ModelWeights::from_gguf(ct, &mut f, &device)
                    .expect("candle llama");
            m.forward(&input, 0).expect("forward")
        }
        "qwen2" => {
            let mut m =
                candle_transformers::models::quantized_qwen2::ModelWeights::from_gguf(ct, &mut f, &device)
                    .expect("candle qwen2");
            m.forward(&input, 0).expect("forward")
        }
        other => panic!("unexpected architecture {other}"),
    };

    let mut cache = ours.new_cache();
    let whole = ours.forward(&tokens, &mut cache, Pass::Prompt).expect("ours");
    // Against candle's masked batch attention only close (summation order differs).
    let diff = max_abs_diff(&whole, &reference);
    assert!(diff < 1.0, "{arch}: logits differ from candle's by {diff}");
    assert_eq!(argmax(&whole), argmax(&reference));

    // The same prompt in aligned chunks continues exactly; a snapshot is not changed by continuing
    // its clone, and truncating it to a chunk boundary goes back to that prefix exactly.
    let chunked = |cache: &mut switchboard_llm::model::KvCache, from: usize| {
        let mut last = None;
        for c in tokens[from..].chunks(8) {
            last = Some(ours.forward(c, cache, Pass::Prompt).expect("chunk"));
        }
        last.expect("logits")
    };
    let mut cache = ours.new_cache();
    let reference_chunked = chunked(&mut cache, 0);
    assert!(max_abs_diff(&reference_chunked, &whole) < 1.0);
    assert_eq!(argmax(&reference_chunked), argmax(&whole));
    let mut prefix = cache.clone();
    prefix.truncate(16).expect("truncate");
    let again = chunked(&mut prefix, 16);
    assert_eq!(
        max_abs_diff(&again, &reference_chunked),
        0.0,
        "{arch}: cached prefix differs"
    );
    assert_eq!(cache.len(), tokens.len(), "the snapshot kept its length");

    // Prompt passes on the quantized weights compute every token as a decode step does: any split of
    // a prompt, down to one token per pass, and decoding it token by token give the same logits.
    let long: Vec<u32> = (0..135u32).map(|i| 500 + i * 53).collect();
    let passes = |model: &Transformer, bounds: &[usize]| {
        let mut cache = model.new_cache();
        let mut last = None;
        for w in bounds.windows(2) {
            last = Some(
                model
                    .forward(&long[w[0]..w[1]], &mut cache, Pass::Prompt)
                    .expect("pass"),
            );
        }
        last.expect("logits")
    };
    let quantized_whole = passes(&ours, &[0, 135]);
    for bounds in [&[0, 7, 135][..], &[0, 1, 2, 50, 134, 135], &[0, 33, 70, 106, 135]] {
        assert_eq!(
            max_abs_diff(&passes(&ours, bounds), &quantized_whole),
            0.0,
            "{arch}: quantized prompt in passes {bounds:?} differs"
        );
    }
    let mut cache = ours.new_cache();
    let mut stepped = None;
    for &t in &long {
        stepped = Some(ours.forward(&[t], &mut cache, Pass::Decode).expect("step"));
    }
    assert_eq!(
        max_abs_diff(&stepped.expect("logits"), &quantized_whole),
        0.0,
        "{arch}: prompt pass vs decode steps"
    );

    // Decode steps run their own kernels on plain slices; the same one-token steps through candle's
    // tensor operations (`forward_all` always takes that path) agree up to summation order (which the
    // 8-bit quantization of activations can amplify, as between the chunkings above). Both continue
    // from one snapshot, which neither may change.
    let mut prompt = ours.new_cache();
    ours.forward(&tokens[..16], &mut prompt, Pass::Decode)
        .expect("prompt");
    let before = ours
        .forward_all(&tokens[16..17], &mut prompt.clone(), Pass::Decode)
        .expect("probe");
    let (mut fast, mut slow) = (prompt.clone(), prompt.clone());
    for &t in &tokens[16..28] {
        let a = ours.forward(&[t], &mut fast, Pass::Decode).expect("decode step");
        let b = ours
            .forward_all(&[t], &mut slow, Pass::Decode)
            .expect("tensor step");
        let diff = max_abs_diff(&a, &b);
        assert!(
            diff < 1.0,
            "{arch}: decode step differs from tensor ops by {diff}"
        );
        assert_eq!(argmax(&a), argmax(&b), "{arch}: decode step picks another token");
    }
    assert_eq!((fast.len(), prompt.len()), (28, 16));
    let after = ours
        .forward_all(&tokens[16..17], &mut prompt.clone(), Pass::Decode)
        .expect("probe");
    assert_eq!(
        max_abs_diff(&before, &after),
        0.0,
        "{arch}: decoding changed a snapshot"
    );

    // Dense prompt passes (the f16 copy of the weights): close to the quantized reference, and the
    // result does not depend on where the prompt is split, so the prompt cache may resume anywhere.
    let mut f = std::fs::File::open(&path).expect("open");
    let ct = gguf_file::Content::read(&mut f).expect("gguf");
    let dense = Transformer::from_gguf(&ct, &mut f, &device, usize::MAX).expect("dense model");
    let mut cache = dense.new_cache();
    let dense_whole = dense.forward(&tokens, &mut cache, Pass::Prompt).expect("dense");
    let diff = max_abs_diff(&dense_whole, &reference);
    assert!(diff < 1.0, "{arch}: dense logits differ from candle's by {diff}");
    assert_eq!(argmax(&dense_whole), argmax(&reference));
    // Splits into several passes of different lengths, as the prompt cache produces them.
    let reference_passes = passes(&dense, &[0, 32, 64, 96, 128, 135]);
    for bounds in [
        &[0, 32, 64, 96, 106, 135][..],
        &[0, 135],
        &[0, 7, 135],
        &[0, 50, 134, 135],
        &[0, 33, 70, 135],
    ] {
        assert_eq!(
            max_abs_diff(&passes(&dense, bounds), &reference_passes),
            0.0,
            "{arch}: dense prompt in passes {bounds:?} differs"
        );
    }
    for split in [1, 13, 39] {
        let mut cache = dense.new_cache();
        dense
            .forward(&tokens[..split], &mut cache, Pass::Prompt)
            .expect("head");
        let tail = dense
            .forward(&tokens[split..], &mut cache, Pass::Prompt)
            .expect("tail");
        assert_eq!(
            max_abs_diff(&tail, &dense_whole),
            0.0,
            "{arch}: dense prompt split at {split} differs from the whole"
        );
    }
}

#[test]
fn llama_logits_match_candle_quantized_llama() {
    compare(common::SMOLLM2, "smollm2-135m");
}

#[test]
fn qwen2_logits_match_candle_quantized_qwen2() {
    compare(common::QWEN, "qwen2.5-coder-0.5b");
}
