//! The transformer itself: GGUF weights and a [`KvCache`] in, logits out.
//!
//! Adapted from candle-transformers 0.11 `quantized_llama.rs` and `quantized_qwen2.rs` (Apache-2.0 /
//! MIT). The two differ only in three details — bias on the q/k/v projections, the RoPE pairing
//! convention, and the metadata prefix — so one implementation serves both, chosen by
//! `general.architecture`. Unlike candle's versions, the attention cache is not hidden inside the
//! layers: [`Transformer::forward`] takes `&self` and an explicit `&mut KvCache`. That is what makes
//! prompt caching possible (a cache is a list of cheap tensor handles: clone it to snapshot, narrow it
//! to go back to a prefix), and it lets one loaded model serve any number of conversations.

use std::sync::Arc;

use candle_core::quantized::{QTensor, gguf_file};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::Embedding;

use crate::pool::Helpers;
use crate::quant::{self, QMatrix};

/// Architectures this module can run, read from `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
}

impl Architecture {
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }
}

/// A projection with its quantized weights and, optionally, a dense f32 copy of them.
///
/// Why a dense copy: when a quantized product unpacked the weights once per token, a dense matmul
/// (gemm), which reuses each weight across all the tokens of a pass, ran prompts 2.2× faster
/// (SmolLM2-135M, 2 cores: 157 vs 72 tokens/s with candle's quantized matmul). Now [`quant`]
/// unpacks each group of weights once for several tokens, and prompts on the quantized weights are
/// the faster ones (~450 vs ~250 tokens/s); the copy remains an option (the engine's
/// `dense_prefill_budget_bytes`), e.g. for CPUs without AVX2, where [`quant`] is scalar.
/// Why f32 and not f16: candle's f16 matmul on these CPUs was no faster than the quantized one (72
/// tokens/s), and its result depended on how the prompt was split into passes; the f32 product does
/// not (see `tests/reference_model.rs`), which lets the prompt cache resume at any position.
///
/// The quantized weights are multiplied by [`quant`] (decode steps, and prompts without the dense
/// copy), whose results do not depend on how many tokens a pass has either.
#[derive(Debug, Clone)]
struct Linear {
    quantized: QMatrix,
    /// `[out, in]`, f32.
    dense: Option<Tensor>,
}

impl Linear {
    fn load<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        name: &str,
        dense: bool,
    ) -> Result<Self> {
        let dense = if dense {
            Some(ct.tensor(reader, name, &Device::Cpu)?.dequantize(&Device::Cpu)?)
        } else {
            None
        };
        Ok(Self {
            quantized: QMatrix::from_gguf(ct, reader, name)?,
            dense,
        })
    }

    fn forward(&self, xs: &Tensor, pass: Pass, helpers: &Helpers) -> Result<Tensor> {
        match (&self.dense, pass) {
            (Some(w), Pass::Prompt) => xs
                .to_dtype(w.dtype())?
                .broadcast_matmul(&w.t()?)?
                .to_dtype(DType::F32),
            _ => self.quantized.forward(helpers, xs),
        }
    }
}

/// Which weights a forward pass uses: prompts always take the dense path (when loaded) and generated
/// tokens the quantized one, whatever the number of tokens, so that how a prompt is split into passes
/// (which depends on what the prompt cache holds) never changes which arithmetic computes it. Without
/// the dense copy, a prompt pass computes each token exactly as a decode step would (see
/// [`Transformer::forward`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Prompt,
    Decode,
}

#[derive(Debug, Clone)]
struct Mlp {
    gate: Linear,
    down: Linear,
    up: Linear,
}

impl Mlp {
    fn forward(&self, xs: &Tensor, pass: Pass, helpers: &Helpers) -> Result<Tensor> {
        let gate = self.gate.forward(xs, pass, helpers)?;
        let up = self.up.forward(xs, pass, helpers)?;
        self.down
            .forward(&(candle_nn::ops::silu(&gate)? * up)?, pass, helpers)
    }
}

/// RMS normalization, with its weights as a tensor for prompt passes and as a slice for decode steps.
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    values: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    fn new(weight: QTensor, eps: f32) -> Result<Self> {
        let weight = weight.dequantize(&weight.device())?;
        Ok(Self {
            values: weight.to_vec1()?,
            weight,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }

    /// One row, in the arithmetic of candle's `rms_norm`.
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        let sum2: f32 = x.iter().map(|v| v * v).sum();
        let m = (sum2 / x.len() as f32 + self.eps).sqrt();
        for ((o, &v), &a) in out.iter_mut().zip(x).zip(&self.values) {
            *o = v / m * a;
        }
    }
}

/// Qwen2's biases on the q/k/v projections, as tensors (prompt passes) and slices (decode steps).
#[derive(Debug, Clone)]
struct QkvBias {
    tensors: (Tensor, Tensor, Tensor),
    values: (Vec<f32>, Vec<f32>, Vec<f32>),
}

#[derive(Debug, Clone)]
struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    /// Qwen2 has biases on the q/k/v projections, llama has none.
    qkv_bias: Option<QkvBias>,
    wo: Linear,
    attention_norm: RmsNorm,
    mlp: Mlp,
    ffn_norm: RmsNorm,
}

/// Model hyper-parameters from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    pub architecture: Architecture,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub embedding_length: usize,
    pub head_dim: usize,
    pub context_length: usize,
    pub vocab_size: usize,
}

/// One layer's keys and values, position-major (`[position][kv head][head dim]`), so that a new
/// position is an append.
#[derive(Debug, Clone, Default)]
struct LayerKv {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// Positions of room added when a layer's buffers grow (a decode step adds one position).
const KV_GROWTH: usize = 64;

/// The attention keys and values of every position processed so far, per layer.
///
/// `clone` is a cheap snapshot: the buffers are shared, and [`KvCache::truncate`] only shortens this
/// handle's view. A cache writes new positions in place only into buffers no other handle shares, and
/// otherwise first copies its own positions into a fresh buffer (copy on write), so a snapshot is
/// never modified by later use of a clone. Generating a reply thus copies the cache once, where
/// concatenating tensors copied it on every token.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Arc<LayerKv>>,
    len: usize,
    /// Floats per position of one layer's keys (kv heads × head dim); 0 until the first write.
    row: usize,
}

impl KvCache {
    pub fn new(n_layer: usize) -> Self {
        Self {
            layers: (0..n_layer).map(|_| Arc::default()).collect(),
            len: 0,
            row: 0,
        }
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the first `len` positions.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        self.len = self.len.min(len);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn set_len_for_tests(&mut self, len: usize) {
        self.len = len;
    }

    /// Bytes held by the cache's own view (shared storage is counted by each holder).
    pub fn approx_bytes(&self) -> usize {
        self.layers.len() * self.len * self.row * 2 * 4
    }

    /// Writes the keys and values of the positions after `len` (`row` floats each) into `layer`, and
    /// returns all of that layer's keys and values up to them. `len` itself moves once every layer
    /// has been written.
    fn append(&mut self, layer: usize, k: &[f32], v: &[f32], row: usize) -> Result<(&[f32], &[f32])> {
        if self.row != row && self.len > 0 {
            candle_core::bail!("kv cache rows of {} floats, not {row}", self.row);
        }
        self.row = row;
        let keep = self.len * row;
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| candle_core::Error::Msg(format!("kv cache has no layer {layer}")))?;
        if slot.k.len() < keep || slot.v.len() < keep {
            candle_core::bail!("kv cache layer {layer} holds fewer than {} positions", self.len);
        }
        let needed = keep + k.len();
        if Arc::get_mut(slot).is_none() {
            let capacity = needed + KV_GROWTH * row;
            let mut own = LayerKv {
                k: Vec::with_capacity(capacity),
                v: Vec::with_capacity(capacity),
            };
            own.k.extend_from_slice(&slot.k[..keep]);
            own.v.extend_from_slice(&slot.v[..keep]);
            *slot = Arc::new(own);
        }
        let own = Arc::get_mut(slot)
            .ok_or_else(|| candle_core::Error::Msg("kv cache buffer still shared".into()))?;
        for (buf, new) in [(&mut own.k, k), (&mut own.v, v)] {
            buf.truncate(keep);
            if buf.capacity() < needed {
                buf.reserve_exact(needed - keep + KV_GROWTH * row);
            }
            buf.extend_from_slice(new);
        }
        Ok((&own.k, &own.v))
    }
}

/// Softmax over the last dimension, summing each row strictly left to right.
///
/// Why not candle's `softmax_last_dim`: its vectorized sum groups elements by position modulo the
/// vector width, so a row's sum changes in the last bit with the row's length, and the length of an
/// attention row is the length of the pass it is computed in (later positions are masked to zero).
/// Summing in order makes the masked zeros at the end exact no-ops, so a position's attention is the
/// same whichever pass computes it, and a cached prefix continues exactly like a fresh computation.
fn softmax_rows(att: &Tensor) -> Result<Tensor> {
    let dims = att.dims().to_vec();
    let n = *dims
        .last()
        .ok_or_else(|| candle_core::Error::Msg("softmax of a scalar".into()))?;
    let mut data = att.flatten_all()?.to_vec1::<f32>()?;
    for row in data.chunks_mut(n.max(1)) {
        softmax_in_place(row);
    }
    Tensor::from_vec(data, dims, att.device())
}

fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
}

/// Attention of one head's query `q` over `keys`/`values` (position-major rows of `row` floats, the
/// head's kv group at offset `at`), for as many positions as `buf` has room for before the `q.len()`
/// floats of the result at its end.
fn attend_head(q: &[f32], keys: &[f32], values: &[f32], row: usize, at: usize, buf: &mut [f32]) {
    let hd = q.len();
    let (scores, out) = buf.split_at_mut(buf.len() - hd);
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    let key = |p: usize| &keys[p * row + at..p * row + at + hd];
    let value = |p: usize| &values[p * row + at..p * row + at + hd];
    match (q.as_chunks::<8>(), hd % 32) {
        ((q8, []), 0) => {
            // Four positions at a time: four independent sums keep the FMA units busy, where one
            // dot product at a time waits on its own additions.
            let mut quads = scores.chunks_exact_mut(4);
            let mut p = 0;
            for quad in &mut quads {
                let sums = dots::<4>(q8, [key(p), key(p + 1), key(p + 2), key(p + 3)]);
                for (s, d) in quad.iter_mut().zip(sums) {
                    *s = d * scale;
                }
                p += 4;
            }
            for s in quads.into_remainder() {
                *s = dots::<1>(q8, [key(p)])[0] * scale;
                p += 1;
            }
            softmax_in_place(scores);
            // Thirty-two outputs at a time stay in registers over all positions.
            for (b, o) in out.as_chunks_mut::<32>().0.iter_mut().enumerate() {
                let mut acc = [0f32; 32];
                for (p, &w) in scores.iter().enumerate() {
                    let v = &value(p)[b * 32..(b + 1) * 32];
                    for (a, &v) in acc.iter_mut().zip(v) {
                        *a = w.mul_add(v, *a);
                    }
                }
                *o = acc;
            }
        }
        _ => {
            for (p, s) in scores.iter_mut().enumerate() {
                *s = q.iter().zip(key(p)).map(|(a, b)| a * b).sum::<f32>() * scale;
            }
            softmax_in_place(scores);
            out.fill(0.0);
            for (p, &w) in scores.iter().enumerate() {
                out.iter_mut().zip(value(p)).for_each(|(o, v)| *o += w * v);
            }
        }
    }
}

/// `N` dot products of `q` (in vectors of eight) with rows of the same length.
#[inline(always)]
fn dots<const N: usize>(q: &[[f32; 8]], rows: [&[f32]; N]) -> [f32; N] {
    let mut acc = [[0f32; 8]; N];
    for (j, qv) in q.iter().enumerate() {
        for (a, r) in acc.iter_mut().zip(&rows) {
            let r = &r[j * 8..j * 8 + 8];
            for l in 0..8 {
                a[l] = qv[l].mul_add(r[l], a[l]);
            }
        }
    }
    acc.map(|a| a.iter().sum())
}

/// The buffers of one pass on slices (one row per token), allocated once per pass rather than once
/// per layer.
struct DecodeScratch {
    x: Vec<f32>,
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attended: Vec<f32>,
    projected: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Per token and head: the attention scores of every position it sees, then the head's output.
    heads: Vec<f32>,
}

/// A decoder-only transformer (llama or qwen2 family) with quantized weights.
#[derive(Debug)]
pub struct Transformer {
    config: Config,
    embeddings: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatrix,
    cos: Tensor,
    sin: Tensor,
    /// `cos` and `sin` as `[position][rope_dim / 2]` slices, for decode steps.
    cos_values: Vec<f32>,
    sin_values: Vec<f32>,
    neg_inf: Tensor,
    rope_interleaved: bool,
    dense_prefill: bool,
    /// The threads that share a decode step's products with the calling thread.
    helpers: Helpers,
}

fn rope_tables(rope_dim: usize, freq_base: f32, max_len: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let theta: Vec<_> = (0..rope_dim)
        .step_by(2)
        .map(|i| 1f32 / freq_base.powf(i as f32 / rope_dim as f32))
        .collect();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let idx_theta = Tensor::arange(0, max_len as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max_len, 1))?
        .matmul(&theta.reshape((1, theta.elem_count()))?)?;
    Ok((idx_theta.cos()?, idx_theta.sin()?))
}

/// Longest context we precompute rotary tables for; phone turns stay far below it.
const MAX_POSITIONS: usize = 4096;

impl Transformer {
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        dense_budget_bytes: usize,
    ) -> Result<Self> {
        let md = |key: &str| {
            ct.metadata
                .get(key)
                .ok_or_else(|| candle_core::Error::Msg(format!("GGUF metadata lacks `{key}`")))
        };
        let arch_name = md("general.architecture")?.to_string()?.clone();
        let architecture = Architecture::from_gguf_name(&arch_name)
            .ok_or_else(|| candle_core::Error::Msg(format!("unsupported architecture `{arch_name}`")))?;
        let p = architecture.as_str();
        let n_head = md(&format!("{p}.attention.head_count"))?.to_u32()? as usize;
        let n_kv_head = md(&format!("{p}.attention.head_count_kv"))?.to_u32()? as usize;
        let n_layer = md(&format!("{p}.block_count"))?.to_u32()? as usize;
        let embedding_length = md(&format!("{p}.embedding_length"))?.to_u32()? as usize;
        let context_length = md(&format!("{p}.context_length"))
            .and_then(|v| v.to_u32())
            .map(|v| v as usize)
            .unwrap_or(MAX_POSITIONS);
        let head_dim = embedding_length / n_head;
        let rope_dim = md(&format!("{p}.rope.dimension_count"))
            .and_then(|v| v.to_u32())
            .map(|v| v as usize)
            .unwrap_or(head_dim);
        let eps = md(&format!("{p}.attention.layer_norm_rms_epsilon"))?.to_f32()?;
        let freq_base = md(&format!("{p}.rope.freq_base"))
            .and_then(|v| v.to_f32())
            .unwrap_or(10_000.0);

        let tensor = |reader: &mut R, name: &str| -> Result<QTensor> { ct.tensor(reader, name, device) };
        let embeddings = tensor(reader, "token_embd.weight")?.dequantize(device)?;
        let vocab_size = embeddings.dim(0)?;
        let embeddings = Embedding::new(embeddings, embedding_length);
        let norm = RmsNorm::new(tensor(reader, "output_norm.weight")?, eps)?;
        // Small models tie the output projection to the embeddings.
        let output = if ct.tensor_infos.contains_key("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let output = QMatrix::from_gguf(ct, reader, output)?;
        // The dense copy of every projection, if it fits the budget (f32: 4 bytes per weight).
        let dense_bytes: usize = ct
            .tensor_infos
            .iter()
            .filter(|(name, _)| {
                name.starts_with("blk.") && name.ends_with(".weight") && !name.contains("norm")
            })
            .map(|(_, info)| info.shape.elem_count() * 4)
            .sum();
        let dense_prefill = dense_bytes <= dense_budget_bytes;
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let pre = format!("blk.{i}");
            let mm = |reader: &mut R, name: &str| -> Result<Linear> {
                Linear::load(ct, reader, &format!("{pre}.{name}"), dense_prefill)
            };
            let qkv_bias = match architecture {
                Architecture::Llama => None,
                Architecture::Qwen2 => {
                    let mut bias = |name: &str| -> Result<Tensor> {
                        tensor(reader, &format!("{pre}.{name}"))?.dequantize(device)
                    };
                    let tensors = (bias("attn_q.bias")?, bias("attn_k.bias")?, bias("attn_v.bias")?);
                    let values = (tensors.0.to_vec1()?, tensors.1.to_vec1()?, tensors.2.to_vec1()?);
                    Some(QkvBias { tensors, values })
                }
            };
            layers.push(Layer {
                wq: mm(reader, "attn_q.weight")?,
                wk: mm(reader, "attn_k.weight")?,
                wv: mm(reader, "attn_v.weight")?,
                qkv_bias,
                wo: mm(reader, "attn_output.weight")?,
                attention_norm: RmsNorm::new(tensor(reader, &format!("{pre}.attn_norm.weight"))?, eps)?,
                mlp: Mlp {
                    gate: mm(reader, "ffn_gate.weight")?,
                    down: mm(reader, "ffn_down.weight")?,
                    up: mm(reader, "ffn_up.weight")?,
                },
                ffn_norm: RmsNorm::new(tensor(reader, &format!("{pre}.ffn_norm.weight"))?, eps)?,
            });
        }
        let max_len = context_length.min(MAX_POSITIONS);
        let (cos, sin) = rope_tables(rope_dim, freq_base, max_len, device)?;
        Ok(Self {
            config: Config {
                architecture,
                n_layer,
                n_head,
                n_kv_head,
                embedding_length,
                head_dim,
                context_length: max_len,
                vocab_size,
            },
            embeddings,
            layers,
            norm,
            output,
            cos_values: cos.flatten_all()?.to_vec1()?,
            sin_values: sin.flatten_all()?.to_vec1()?,
            cos,
            sin,
            neg_inf: Tensor::new(f32::NEG_INFINITY, device)?,
            // llama.cpp's convention: llama pairs (2i, 2i+1), qwen2 pairs (i, i + d/2).
            rope_interleaved: architecture == Architecture::Llama,
            dense_prefill,
            helpers: Helpers::new()
                .map_err(|e| candle_core::Error::Msg(format!("cannot start helper threads: {e}")))?,
        })
    }

    /// Whether prompts run on the dense copy of the weights (see [`Pass`]).
    pub fn dense_prefill(&self) -> bool {
        self.dense_prefill
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.n_layer)
    }

    fn rope(&self, x: &Tensor, pos: usize) -> Result<Tensor> {
        let (_b, _h, seq_len, _d) = x.dims4()?;
        let cos = self.cos.narrow(0, pos, seq_len)?;
        let sin = self.sin.narrow(0, pos, seq_len)?;
        let x = x.contiguous()?;
        if self.rope_interleaved {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        mask: Option<&Tensor>,
        pos: usize,
        cache: &mut KvCache,
        pass: Pass,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, seq_len, n_embd) = x.dims3()?;
        let h = &self.helpers;
        let mut q = layer.wq.forward(x, pass, h)?;
        let mut k = layer.wk.forward(x, pass, h)?;
        let mut v = layer.wv.forward(x, pass, h)?;
        if let Some(QkvBias {
            tensors: (bq, bk, bv),
            ..
        }) = &layer.qkv_bias
        {
            q = q.broadcast_add(bq)?;
            k = k.broadcast_add(bk)?;
            v = v.broadcast_add(bv)?;
        }
        let q = q.reshape((b, seq_len, c.n_head, c.head_dim))?.transpose(1, 2)?;
        let k = k
            .reshape((b, seq_len, c.n_kv_head, c.head_dim))?
            .transpose(1, 2)?;
        let q = self.rope(&q, pos)?;
        let k = self.rope(&k, pos)?;
        // Into the cache position-major (v still is), and back out head-major with every position.
        let k_rows = k.transpose(1, 2)?.flatten_all()?.to_vec1::<f32>()?;
        let v_rows = v.flatten_all()?.to_vec1::<f32>()?;
        let row = c.n_kv_head * c.head_dim;
        let (k_all, v_all) = cache.append(index, &k_rows, &v_rows, row)?;
        let total = pos + seq_len;
        let heads_first = |rows: &[f32]| -> Result<Tensor> {
            Tensor::from_slice(rows, (b, total, c.n_kv_head, c.head_dim), x.device())?
                .transpose(1, 2)?
                .contiguous()
        };
        let k = heads_first(k_all)?;
        let v = heads_first(v_all)?;

        let n_rep = c.n_head / c.n_kv_head;
        let k = candle_transformers::utils::repeat_kv(k, n_rep)?;
        let v = candle_transformers::utils::repeat_kv(v, n_rep)?;
        let att = (q.matmul(&k.t()?)? / (c.head_dim as f64).sqrt())?;
        let att = match mask {
            None => att,
            Some(mask) => {
                let mask = mask.broadcast_as(att.shape())?;
                mask.where_cond(&self.neg_inf.broadcast_as(att.shape().dims())?, &att)?
            }
        };
        let att = softmax_rows(&att)?;
        let y = att.matmul(&v.contiguous()?)?;
        let y = y.transpose(1, 2)?.reshape((b, seq_len, n_embd))?;
        layer.wo.forward(&y, pass, h)
    }

    /// Runs `tokens` (positions `cache.len()..`) through the model, appends their keys and values to
    /// `cache`, and returns the logits (f32, `[vocab]`) for the token after the last one.
    ///
    /// Decode steps, and prompt passes without the dense weights, run on slices
    /// ([`Transformer::on_slices`]); the rest (dense prompts, several tokens as `Pass::Decode`, which
    /// the tests use as a reference) through candle's tensor operations ([`Transformer::hidden`]).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, pass: Pass) -> Result<Tensor> {
        if let (Pass::Decode, &[token]) = (pass, tokens) {
            return self.decode_step(token, cache);
        }
        if pass == Pass::Prompt && !self.dense_prefill {
            let normed = self.on_slices(tokens, cache)?;
            let dim = self.config.embedding_length;
            let last = &normed[normed.len().saturating_sub(dim)..];
            let mut logits = vec![0f32; self.output.rows()];
            quant::matmul(&self.helpers, last, &mut [(&self.output, &mut logits)])?;
            let n = logits.len();
            return Tensor::from_vec(logits, n, self.cos.device());
        }
        let h = self.hidden(tokens, cache, pass)?;
        let last = h.i((.., tokens.len() - 1, ..))?;
        self.output
            .forward(&self.helpers, &last)?
            .squeeze(0)?
            .to_dtype(DType::F32)
    }

    /// Like [`Transformer::forward`], but returns the logits after every one of `tokens`
    /// (`[tokens.len(), vocab]`): what scoring a given continuation needs.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache, pass: Pass) -> Result<Tensor> {
        if pass == Pass::Prompt && !self.dense_prefill {
            let normed = self.on_slices(tokens, cache)?;
            let vocab = self.output.rows();
            let mut logits = vec![0f32; tokens.len() * vocab];
            quant::matmul(&self.helpers, &normed, &mut [(&self.output, &mut logits)])?;
            return Tensor::from_vec(logits, (tokens.len(), vocab), self.cos.device());
        }
        let h = self.hidden(tokens, cache, pass)?;
        self.output
            .forward(&self.helpers, &h.squeeze(0)?)?
            .to_dtype(DType::F32)
    }

    fn check_room(&self, pos: usize, seq_len: usize) -> Result<()> {
        if seq_len == 0 {
            candle_core::bail!("forward needs at least one token");
        }
        if pos + seq_len > self.config.context_length {
            candle_core::bail!(
                "context of {} tokens exceeds the supported {}",
                pos + seq_len,
                self.config.context_length
            );
        }
        Ok(())
    }

    /// The final (normalized) hidden states of `tokens`, `[1, seq, dim]`; appends to `cache`.
    fn hidden(&self, tokens: &[u32], cache: &mut KvCache, pass: Pass) -> Result<Tensor> {
        let seq_len = tokens.len();
        let pos = cache.len;
        self.check_room(pos, seq_len)?;
        let device = self.cos.device();
        let x = Tensor::new(tokens, device)?.unsqueeze(0)?;
        let mask = if seq_len == 1 {
            None
        } else {
            Some(candle_transformers::utils::build_causal_mask(
                seq_len, pos, device,
            )?)
        };
        let mut h = self.embeddings.forward(&x)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let residual = &h;
            let x = layer.attention_norm.forward(&h)?;
            let attn = self.attention(index, layer, &x, mask.as_ref(), pos, cache, pass)?;
            let x = (attn + residual)?;
            let residual = &x;
            let y = layer
                .mlp
                .forward(&layer.ffn_norm.forward(&x)?, pass, &self.helpers)?;
            h = (y + residual)?;
        }
        cache.len = pos + seq_len;
        self.norm.forward(&h)
    }

    /// One generated token: [`Transformer::on_slices`] and the output projection.
    fn decode_step(&self, token: u32, cache: &mut KvCache) -> Result<Tensor> {
        let normed = self.on_slices(&[token], cache)?;
        let mut logits = vec![0f32; self.output.rows()];
        quant::matmul(&self.helpers, &normed, &mut [(&self.output, &mut logits)])?;
        let n = logits.len();
        Tensor::from_vec(logits, n, self.cos.device())
    }

    /// The final (normalized) hidden states of `tokens`, `[tokens.len()][dim]`, computed like
    /// [`Transformer::hidden`] on the quantized weights, but on plain slices, with the projections
    /// through [`quant`]; appends to `cache`. Decode steps (one token) and quantized prompt passes
    /// take this path.
    ///
    /// Why a separate path: a decode step is about 450 small operations (30 layers of SmolLM2), and
    /// as tensor operations each allocated its result, checked layouts, and woke the thread pool
    /// for work of a few microseconds; per token that overhead was larger than the arithmetic. In
    /// prompt passes candle's pool and [`Helpers`] took turns spinning on the two cores while the
    /// other worked (a quarter of the time, perf). The norms, rotary embedding, residuals and SiLU
    /// here repeat candle's arithmetic exactly; attention sums in another order than candle's matmul.
    ///
    /// Every token is computed the same way whatever else is in the pass: its products are per token
    /// (see [`quant::matmul`]) and its attention is one [`attend_head`] per head over the positions
    /// up to its own, exactly as a decode step computes it. So a prompt gives the same keys, values
    /// and logits however it is split into passes, including one token at a time.
    fn on_slices(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let c = &self.config;
        let n = tokens.len();
        let pos = cache.len;
        self.check_room(pos, n)?;
        let hd = c.head_dim;
        let row = c.n_kv_head * hd;
        let half = self.cos.dims2()?.1;
        if 2 * half != hd {
            candle_core::bail!("rotary embedding of {} dims for heads of {hd}", 2 * half);
        }
        let ffn = self.layers.first().map_or(0, |l| l.mlp.up.quantized.rows());
        let dim = c.embedding_length;
        let qdim = c.n_head * hd;
        let mut x = Vec::with_capacity(n * dim);
        for &token in tokens {
            x.extend(
                self.embeddings
                    .embeddings()
                    .get(token as usize)?
                    .to_vec1::<f32>()?,
            );
        }
        // The last query sees the most positions; the heads of earlier ones use less of their span.
        let span = pos + n + hd;
        let mut s = DecodeScratch {
            x,
            normed: vec![0.0; n * dim],
            q: vec![0.0; n * qdim],
            k: vec![0.0; n * row],
            v: vec![0.0; n * row],
            attended: vec![0.0; n * qdim],
            projected: vec![0.0; n * dim],
            gate: vec![0.0; n * ffn],
            up: vec![0.0; n * ffn],
            heads: vec![0.0; n * c.n_head * span],
        };
        let norm_rows = |norm: &RmsNorm, x: &[f32], out: &mut [f32]| {
            for (x, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
                norm.apply(x, out);
            }
        };
        for (index, layer) in self.layers.iter().enumerate() {
            norm_rows(&layer.attention_norm, &s.x, &mut s.normed);
            quant::matmul(
                &self.helpers,
                &s.normed,
                &mut [
                    (&layer.wq.quantized, &mut s.q),
                    (&layer.wk.quantized, &mut s.k),
                    (&layer.wv.quantized, &mut s.v),
                ],
            )?;
            if let Some(QkvBias {
                values: (bq, bk, bv), ..
            }) = &layer.qkv_bias
            {
                for (out, bias) in [(&mut s.q, bq), (&mut s.k, bk), (&mut s.v, bv)] {
                    for out in out.chunks_exact_mut(bias.len().max(1)) {
                        out.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
                    }
                }
            }
            for (t, (q, k)) in
                s.q.chunks_exact_mut(qdim)
                    .zip(s.k.chunks_exact_mut(row))
                    .enumerate()
            {
                let at = (pos + t) * half;
                let (cos, sin) = (&self.cos_values[at..at + half], &self.sin_values[at..at + half]);
                for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                    self.rope_head(head, cos, sin);
                }
            }
            let (keys, values) = cache.append(index, &s.k, &s.v, row)?;
            let (q, n_head, n_rep) = (&s.q, c.n_head, c.n_head / c.n_kv_head);
            // One unit per query and head.
            self.helpers
                .for_each_chunk(&mut [&mut s.heads], span, &|_, u, buf| {
                    let (t, h) = (u / n_head, u % n_head);
                    let seen = pos + t + 1;
                    let query = &q[t * qdim + h * hd..t * qdim + (h + 1) * hd];
                    attend_head(query, keys, values, row, (h / n_rep) * hd, &mut buf[..seen + hd]);
                });
            for (u, (out, head)) in s
                .attended
                .chunks_exact_mut(hd)
                .zip(s.heads.chunks_exact(span))
                .enumerate()
            {
                let seen = pos + u / n_head + 1;
                out.copy_from_slice(&head[seen..seen + hd]);
            }
            quant::matmul(
                &self.helpers,
                &s.attended,
                &mut [(&layer.wo.quantized, &mut s.projected)],
            )?;
            s.x.iter_mut().zip(&s.projected).for_each(|(x, p)| *x += p);

            norm_rows(&layer.ffn_norm, &s.x, &mut s.normed);
            quant::matmul(
                &self.helpers,
                &s.normed,
                &mut [
                    (&layer.mlp.gate.quantized, &mut s.gate),
                    (&layer.mlp.up.quantized, &mut s.up),
                ],
            )?;
            for (g, u) in s.gate.iter_mut().zip(&s.up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            quant::matmul(
                &self.helpers,
                &s.gate,
                &mut [(&layer.mlp.down.quantized, &mut s.projected)],
            )?;
            s.x.iter_mut().zip(&s.projected).for_each(|(x, p)| *x += p);
        }
        cache.len = pos + n;
        norm_rows(&self.norm, &s.x, &mut s.normed);
        Ok(s.normed)
    }

    /// Candle's `rope_i` (llama) or `rope` (qwen2) on one head at one position.
    fn rope_head(&self, x: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = cos.len();
        for i in 0..half {
            let (a, b) = if self.rope_interleaved {
                (2 * i, 2 * i + 1)
            } else {
                (i, i + half)
            };
            let (x0, x1) = (x[a], x[b]);
            x[a] = x0 * cos[i] - x1 * sin[i];
            x[b] = x0 * sin[i] + x1 * cos[i];
        }
    }
}
