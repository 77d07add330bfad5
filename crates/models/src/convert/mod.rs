//! CTranslate2 (faster-whisper) → whisper.cpp ggml conversion.
//!
//! The registries carry whisper weights only in CTranslate2 form, and whisper.cpp reads only ggml. The
//! two formats hold the same tensors under other names: CTranslate2 fuses the attention projections
//! (q,k,v in self-attention, k,v in cross-attention) and stores a zero bias for k, which whisper.cpp does
//! not have. The output follows whisper.cpp's own `convert-pt-to-ggml.py` byte for byte in layout: matrices
//! f16; 1-D tensors, conv biases (reshaped to `[d, 1]`) and positional embeddings f32; tensors in PyTorch
//! state-dict order. A correct conversion has exactly the size of the official files (tiny.en
//! 77,704,715 bytes), which `fetch` checks together with the manifest's sha256.

mod ct2;
mod ggml;
mod mel;
mod vocab;

use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use indicatif::ProgressBar;
use serde::Deserialize;

pub use ct2::DType as Ct2DType;
pub use ggml::{GgmlInfo, GgmlTensorInfo, GgmlType, WhisperHparams, read_ggml_info};
pub use mel::{hz_to_mel, mel_filters, mel_to_hz};
pub use vocab::{bytes_to_unicode, token_to_bytes, unicode_to_bytes};

use crate::ModelError;
use ct2::Ct2Model;

/// Input names a `ct2-whisper` manifest entry must have.
pub const CT2_WHISPER_INPUTS: [&str; 3] = ["model.bin", "tokenizer.json", "config.json"];

/// Whisper's audio front end: 16 kHz, 25 ms windows (400 samples) → 201 frequency bins.
const SAMPLE_RATE: u32 = 16_000;
const N_FFT: usize = 400;
/// The byte-level BPE part of every whisper vocabulary (ids 0..=50256); special tokens follow it and
/// whisper.cpp derives them from n_vocab itself.
const N_BASE_TOKENS: usize = 50_257;
const LAST_BASE_TOKEN: usize = N_BASE_TOKENS - 1;

#[derive(Debug, Clone)]
pub struct Ct2WhisperInputs {
    pub model_bin: PathBuf,
    pub tokenizer_json: PathBuf,
    pub config_json: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertSummary {
    pub hparams: WhisperHparams,
    pub n_tokens: usize,
    pub n_tensors: usize,
}

/// Converts to ggml with the weight matrices in `matrices` (f16, or q8_0 as whisper.cpp's `quantize`
/// writes it), writing to `out`. `progress` gets its length set to the number of tensors and advances
/// per tensor (pass `ProgressBar::hidden()` for none).
pub fn ct2_whisper_to_ggml(
    inputs: &Ct2WhisperInputs,
    matrices: GgmlType,
    out: &mut dyn Write,
    progress: &ProgressBar,
) -> Result<ConvertSummary, ModelError> {
    let mut model = Ct2Model::open(&inputs.model_bin)?;
    let mut hp = read_hparams(&mut model)?;
    hp.ftype = match matrices {
        GgmlType::F16 => 1,
        // ggml's GGML_FTYPE_MOSTLY_Q8_0 (7) plus its quantization format version (2) × 1000, which
        // whisper.cpp splits off again when it loads the file.
        GgmlType::Q8_0 => 2007,
        GgmlType::F32 => return Err(model.bad("f32 output is not supported".into())),
    };
    let vocab = load_vocab(&inputs.tokenizer_json, &hp)?;
    check_config(&inputs.config_json, &hp)?;
    let plan = plan_tensors(&model, &hp, matrices)?;

    let write_err = ModelError::io("write", "the ggml output");
    ggml::write_header(out, &hp).map_err(write_err)?;
    let n_mels = usize::try_from(hp.n_mels).map_err(|_| model.bad(format!("n_mels {}", hp.n_mels)))?;
    let filters = mel_filters(SAMPLE_RATE, N_FFT, n_mels);
    ggml::write_mel_filters(out, hp.n_mels, (N_FFT / 2 + 1) as i32, &filters)
        .map_err(ModelError::io("write", "the ggml output"))?;
    ggml::write_vocab(out, &vocab).map_err(ModelError::io("write", "the ggml output"))?;

    progress.set_length(plan.len() as u64);
    for job in &plan {
        let data = job.encode(&mut model)?;
        ggml::write_tensor(out, &job.name, &job.shape, job.ty, &data)
            .map_err(ModelError::io("write", "the ggml output"))?;
        progress.inc(1);
    }
    Ok(ConvertSummary {
        hparams: hp,
        n_tokens: vocab.len(),
        n_tensors: plan.len(),
    })
}

fn read_hparams(model: &mut Ct2Model) -> Result<WhisperHparams, ModelError> {
    let int = |model: &Ct2Model, v: usize, what: &str| {
        i32::try_from(v).map_err(|_| model.bad(format!("{what} {v} out of range")))
    };
    let conv1 = model.var("encoder/conv1/weight")?.dims.clone();
    let [n_audio_state, n_mels, _kernel] = conv1[..] else {
        return Err(model.bad(format!("encoder/conv1/weight has shape {conv1:?}, expected 3-D")));
    };
    let audio_pos = model.var("encoder/position_encodings/encodings")?.dims.clone();
    let embeddings = model.var("decoder/embeddings/weight")?.dims.clone();
    let [n_vocab, n_text_state] = embeddings[..] else {
        return Err(model.bad(format!("decoder/embeddings/weight has shape {embeddings:?}")));
    };
    let text_pos = model.var("decoder/position_encodings/encodings")?.dims.clone();
    if audio_pos.get(1) != Some(&n_audio_state) || text_pos.get(1) != Some(&n_text_state) {
        return Err(model.bad("positional encodings do not match the model width".into()));
    }
    let n_audio_head = model.read_int("encoder/num_heads")?;
    let n_text_head = model.read_int("decoder/num_heads")?;
    let n_audio_layer = count_layers(model, "encoder");
    let n_text_layer = count_layers(model, "decoder");
    if n_audio_layer == 0 || n_text_layer == 0 {
        return Err(model.bad("no encoder or decoder layers".into()));
    }
    let head = |h: i64| i32::try_from(h).map_err(|_| model.bad(format!("num_heads {h}")));
    Ok(WhisperHparams {
        n_vocab: int(model, n_vocab, "n_vocab")?,
        n_audio_ctx: int(model, audio_pos[0], "n_audio_ctx")?,
        n_audio_state: int(model, n_audio_state, "n_audio_state")?,
        n_audio_head: head(n_audio_head)?,
        n_audio_layer: int(model, n_audio_layer, "n_audio_layer")?,
        n_text_ctx: int(model, text_pos[0], "n_text_ctx")?,
        n_text_state: int(model, n_text_state, "n_text_state")?,
        n_text_head: head(n_text_head)?,
        n_text_layer: int(model, n_text_layer, "n_text_layer")?,
        n_mels: int(model, n_mels, "n_mels")?,
        ftype: 1,
    })
}

fn count_layers(model: &Ct2Model, side: &str) -> usize {
    (0..)
        .take_while(|n| model.has(&format!("{side}/layer_{n}/ffn/linear_0/weight")))
        .count()
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: BpeModel,
}

#[derive(Deserialize)]
struct BpeModel {
    vocab: HashMap<String, usize>,
}

/// The raw bytes of tokens 0..=50256 from tokenizer.json.
fn load_vocab(path: &Path, hp: &WhisperHparams) -> Result<Vec<Vec<u8>>, ModelError> {
    const FORMAT: &str = "tokenizer.json";
    let text = std::fs::read_to_string(path).map_err(ModelError::io("read", path))?;
    let parsed: TokenizerJson =
        serde_json::from_str(&text).map_err(|e| ModelError::bad_format(path, FORMAT, e.to_string()))?;
    let mut by_id: Vec<Option<&str>> = vec![None; N_BASE_TOKENS];
    for (token, id) in &parsed.model.vocab {
        if let Some(slot) = by_id.get_mut(*id) {
            *slot = Some(token);
        }
    }
    // English-only vocabularies end the BPE range with <|endoftext|>; multilingual ones have an unused,
    // empty token there and <|endoftext|> one later. A mismatch means the tokenizer is another model's.
    let expected_last = if hp.is_multilingual() { "" } else { "<|endoftext|>" };
    if by_id[LAST_BASE_TOKEN] != Some(expected_last) {
        return Err(ModelError::bad_format(
            path,
            FORMAT,
            format!(
                "token {LAST_BASE_TOKEN} is {:?}, but a model with n_vocab {} expects {expected_last:?}: is \
                 the tokenizer from another model?",
                by_id[LAST_BASE_TOKEN], hp.n_vocab
            ),
        ));
    }
    let inverse = unicode_to_bytes();
    by_id
        .iter()
        .enumerate()
        .map(|(id, token)| {
            let token =
                token.ok_or_else(|| ModelError::bad_format(path, FORMAT, format!("no token {id}")))?;
            token_to_bytes(token, &inverse).ok_or_else(|| {
                ModelError::bad_format(
                    path,
                    FORMAT,
                    format!("token {id} {token:?} is not byte-level BPE"),
                )
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct Ct2Config {
    #[serde(default)]
    alignment_heads: Vec<(usize, usize)>,
    #[serde(default)]
    lang_ids: Vec<usize>,
    #[serde(default)]
    suppress_ids: Vec<usize>,
    #[serde(default)]
    suppress_ids_begin: Vec<usize>,
}

/// config.json is faster-whisper's decoding configuration; nothing in it goes into the ggml file, but it
/// must describe this model, so a mismatched set of inputs is caught here instead of producing a file
/// that loads and then decodes garbage.
fn check_config(path: &Path, hp: &WhisperHparams) -> Result<(), ModelError> {
    let text = std::fs::read_to_string(path).map_err(ModelError::io("read", path))?;
    let bad = |detail: String| ModelError::bad_format(path, "CTranslate2 config.json", detail);
    let config: Ct2Config = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let n_vocab = hp.n_vocab as usize;
    let ids = config
        .lang_ids
        .iter()
        .chain(&config.suppress_ids)
        .chain(&config.suppress_ids_begin);
    if let Some(id) = ids.into_iter().find(|id| **id >= n_vocab) {
        return Err(bad(format!(
            "token id {id} is outside the model's vocabulary of {n_vocab}"
        )));
    }
    let (layers, heads) = (hp.n_text_layer as usize, hp.n_text_head as usize);
    if let Some((l, h)) = config
        .alignment_heads
        .iter()
        .find(|(l, h)| *l >= layers || *h >= heads)
    {
        return Err(bad(format!(
            "alignment head ({l}, {h}) does not exist in {layers} layers × {heads} heads"
        )));
    }
    Ok(())
}

/// One ggml tensor: where its data comes from in the CTranslate2 file and how it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TensorJob {
    name: String,
    source: String,
    /// Rows of the source (its outermost dimension) to take: a third of a fused q,k,v projection.
    rows: Option<Range<usize>>,
    /// Outermost first.
    shape: Vec<usize>,
    ty: GgmlType,
}

impl TensorJob {
    fn new(
        name: String,
        source: String,
        rows: Option<Range<usize>>,
        shape: Vec<usize>,
        matrices: GgmlType,
    ) -> TensorJob {
        // whisper.cpp's converter keeps these f32: everything 1-D, the conv biases (2-D only because of
        // the [d, 1] reshape) and the positional embeddings, which are added, not multiplied.
        let keep_f32 = shape.len() < 2
            || name.ends_with("conv1.bias")
            || name.ends_with("conv2.bias")
            || name.ends_with("positional_embedding");
        let ty = if keep_f32 {
            GgmlType::F32
        } else if shape.len() == 2 {
            matrices
        } else {
            // The 3-D convolution kernels: whisper.cpp expects them f16 in every model type.
            GgmlType::F16
        };
        TensorJob {
            name,
            source,
            rows,
            shape,
            ty,
        }
    }

    /// Reads the source, takes the rows, and converts to the target type.
    fn encode(&self, model: &mut Ct2Model) -> Result<Vec<u8>, ModelError> {
        let (var, data) = model.read(&self.source)?;
        let row_elems: usize = var.dims.iter().skip(1).product();
        let size = var.dtype.size();
        let data = match &self.rows {
            Some(r) => &data[r.start * row_elems * size..r.end * row_elems * size],
            None => &data[..],
        };
        let elements: usize = self.shape.iter().product();
        if data.len() != elements * size {
            return Err(model.bad(format!(
                "{} → {}: size does not match shape {:?}",
                self.source, self.name, self.shape
            )));
        }
        convert_values(data, var.dtype, self.ty).ok_or_else(|| {
            model.bad(format!(
                "{} is {:?}: quantized CTranslate2 models are not supported, use a float16 or float32 one",
                self.source, var.dtype
            ))
        })
    }
}

fn convert_values(data: &[u8], from: ct2::DType, to: GgmlType) -> Option<Vec<u8>> {
    use ct2::DType;
    let as_f32: Box<dyn Iterator<Item = f32> + '_> = match from {
        DType::F32 if to == GgmlType::F32 => return Some(data.to_vec()),
        DType::F16 if to == GgmlType::F16 => return Some(data.to_vec()),
        DType::F32 => Box::new(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        DType::F16 => Box::new(
            data.chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        DType::BF16 => Box::new(
            data.chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        DType::I8 | DType::I16 | DType::I32 => return None,
    };
    match to {
        GgmlType::F32 => Some(as_f32.flat_map(f32::to_le_bytes).collect()),
        GgmlType::F16 => Some(as_f32.flat_map(|v| f16::from_f32(v).to_le_bytes()).collect()),
        GgmlType::Q8_0 => Some(quantize_q8_0(&as_f32.collect::<Vec<f32>>())),
    }
}

/// Values per q8_0 block.
const QK8_0: usize = 32;

/// ggml's reference q8_0 quantization (`quantize_row_q8_0_ref`), to the bit: per block of 32 values an
/// f16 scale `d = max|x| / 127` and the 32 values as `round(x / d)` in i8. Rows are a whole number of
/// blocks (checked when the tensors are planned).
fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / QK8_0 * (2 + QK8_0));
    for block in values.chunks(QK8_0) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        // `as i8` saturates; `round` rounds halves away from zero like C's roundf.
        out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// The tensor list in PyTorch state-dict order (the order of whisper.cpp's converter), with the shape
/// of each fused source checked before anything is sliced.
fn plan_tensors(
    model: &Ct2Model,
    hp: &WhisperHparams,
    matrices: GgmlType,
) -> Result<Vec<TensorJob>, ModelError> {
    let mut plan = Planner {
        model,
        matrices,
        jobs: Vec::new(),
    };
    let da = hp.n_audio_state as usize;
    let dt = hp.n_text_state as usize;

    plan.whole(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
    )?;
    for conv in ["conv1", "conv2"] {
        plan.whole(
            &format!("encoder.{conv}.weight"),
            &format!("encoder/{conv}/weight"),
        )?;
        plan.shaped(
            &format!("encoder.{conv}.bias"),
            &format!("encoder/{conv}/bias"),
            vec![da, 1],
        )?;
    }
    for n in 0..hp.n_audio_layer {
        let (g, c) = (format!("encoder.blocks.{n}"), format!("encoder/layer_{n}"));
        plan.self_attention(&g, &c, da)?;
        plan.mlp(&g, &c)?;
    }
    plan.layer_norm("encoder.ln_post", "encoder/layer_norm")?;

    plan.whole(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
    )?;
    plan.whole("decoder.token_embedding.weight", "decoder/embeddings/weight")?;
    for n in 0..hp.n_text_layer {
        let (g, c) = (format!("decoder.blocks.{n}"), format!("decoder/layer_{n}"));
        plan.self_attention(&g, &c, dt)?;
        plan.cross_attention(&g, &c, dt)?;
        plan.mlp(&g, &c)?;
    }
    plan.layer_norm("decoder.ln", "decoder/layer_norm")?;
    if let Some(job) = plan
        .jobs
        .iter()
        .find(|j| j.ty == GgmlType::Q8_0 && j.shape.last().is_some_and(|n| n % QK8_0 != 0))
    {
        return Err(model.bad(format!(
            "{}: rows of {:?} are not a whole number of q8_0 blocks",
            job.name, job.shape
        )));
    }
    Ok(plan.jobs)
}

struct Planner<'a> {
    model: &'a Ct2Model,
    matrices: GgmlType,
    jobs: Vec<TensorJob>,
}

impl Planner<'_> {
    fn push(&mut self, name: &str, source: &str, rows: Option<Range<usize>>, shape: Vec<usize>) {
        let job = TensorJob::new(name.into(), source.into(), rows, shape, self.matrices);
        self.jobs.push(job);
    }

    fn whole(&mut self, name: &str, source: &str) -> Result<(), ModelError> {
        let shape = self.model.var(source)?.dims.clone();
        self.push(name, source, None, shape);
        Ok(())
    }

    fn shaped(&mut self, name: &str, source: &str, shape: Vec<usize>) -> Result<(), ModelError> {
        let elements = self.model.var(source)?.elements();
        if elements != shape.iter().product::<usize>() {
            return Err(self.model.bad(format!(
                "{source} has {elements} values, expected shape {shape:?}"
            )));
        }
        self.push(name, source, None, shape);
        Ok(())
    }

    /// Rows `part·d .. (part+1)·d` of a source fused from `parts` projections of width `d`.
    fn slice(
        &mut self,
        name: &str,
        source: &str,
        d: usize,
        part: usize,
        parts: usize,
    ) -> Result<(), ModelError> {
        let dims = self.model.var(source)?.dims.clone();
        if dims.first() != Some(&(parts * d)) {
            return Err(self
                .model
                .bad(format!("{source} has shape {dims:?}, expected {parts}×{d} rows")));
        }
        let mut shape = dims;
        shape[0] = d;
        self.push(name, source, Some(part * d..(part + 1) * d), shape);
        Ok(())
    }

    fn linear(&mut self, name: &str, source: &str) -> Result<(), ModelError> {
        self.whole(&format!("{name}.weight"), &format!("{source}/weight"))?;
        self.whole(&format!("{name}.bias"), &format!("{source}/bias"))
    }

    fn layer_norm(&mut self, name: &str, source: &str) -> Result<(), ModelError> {
        self.whole(&format!("{name}.weight"), &format!("{source}/gamma"))?;
        self.whole(&format!("{name}.bias"), &format!("{source}/beta"))
    }

    /// q, k, v fused in `linear_0` (k's bias is zero in CTranslate2 and absent in whisper), out in
    /// `linear_1`.
    fn self_attention(&mut self, g: &str, c: &str, d: usize) -> Result<(), ModelError> {
        let (w, b) = (
            format!("{c}/self_attention/linear_0/weight"),
            format!("{c}/self_attention/linear_0/bias"),
        );
        self.slice(&format!("{g}.attn.query.weight"), &w, d, 0, 3)?;
        self.slice(&format!("{g}.attn.query.bias"), &b, d, 0, 3)?;
        self.slice(&format!("{g}.attn.key.weight"), &w, d, 1, 3)?;
        self.slice(&format!("{g}.attn.value.weight"), &w, d, 2, 3)?;
        self.slice(&format!("{g}.attn.value.bias"), &b, d, 2, 3)?;
        self.linear(&format!("{g}.attn.out"), &format!("{c}/self_attention/linear_1"))?;
        self.layer_norm(&format!("{g}.attn_ln"), &format!("{c}/self_attention/layer_norm"))
    }

    /// q in `linear_0`, k and v fused in `linear_1`, out in `linear_2`.
    fn cross_attention(&mut self, g: &str, c: &str, d: usize) -> Result<(), ModelError> {
        self.linear(
            &format!("{g}.cross_attn.query"),
            &format!("{c}/attention/linear_0"),
        )?;
        let (w, b) = (
            format!("{c}/attention/linear_1/weight"),
            format!("{c}/attention/linear_1/bias"),
        );
        self.slice(&format!("{g}.cross_attn.key.weight"), &w, d, 0, 2)?;
        self.slice(&format!("{g}.cross_attn.value.weight"), &w, d, 1, 2)?;
        self.slice(&format!("{g}.cross_attn.value.bias"), &b, d, 1, 2)?;
        self.linear(&format!("{g}.cross_attn.out"), &format!("{c}/attention/linear_2"))?;
        self.layer_norm(
            &format!("{g}.cross_attn_ln"),
            &format!("{c}/attention/layer_norm"),
        )
    }

    fn mlp(&mut self, g: &str, c: &str) -> Result<(), ModelError> {
        self.linear(&format!("{g}.mlp.0"), &format!("{c}/ffn/linear_0"))?;
        self.linear(&format!("{g}.mlp.2"), &format!("{c}/ffn/linear_1"))?;
        self.layer_norm(&format!("{g}.mlp_ln"), &format!("{c}/ffn/layer_norm"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dequantize(block: &[u8]) -> Vec<f32> {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        block[2..].iter().map(|&q| f32::from(q as i8) * d).collect()
    }

    #[test]
    fn q8_0_blocks_hold_an_f16_scale_and_32_rounded_values() {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.037).collect();
        let q = quantize_q8_0(&values);
        assert_eq!(q.len(), 2 * 34);
        for (block, original) in q.chunks(34).zip(values.chunks(32)) {
            let amax = original.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // The largest value maps to ±127 exactly.
            assert!(block[2..].iter().any(|&b| (b as i8).unsigned_abs() == 127));
            // Half a step from rounding, plus up to 127 × the f16 rounding of the scale (2^-11 relative).
            let step = amax / 127.0;
            for (back, v) in dequantize(block).iter().zip(original) {
                assert!((back - v).abs() <= step * (0.5 + 127.0 / 2048.0), "{back} vs {v}");
            }
        }
    }

    #[test]
    fn an_all_zero_block_has_a_zero_scale() {
        let q = quantize_q8_0(&[0.0; 32]);
        assert!(q.iter().all(|&b| b == 0));
    }
}
