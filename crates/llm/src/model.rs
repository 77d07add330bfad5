//! The transformer itself: GGUF weights and a [`KvCache`] in, logits out.
//!
//! Adapted from candle-transformers 0.11 `quantized_llama.rs` and `quantized_qwen2.rs` (Apache-2.0 /
//! MIT). The two differ only in three details — bias on the q/k/v projections, the RoPE pairing
//! convention, and the metadata prefix — so one implementation serves both, chosen by
//! `general.architecture`. Unlike candle's versions, the attention cache is not hidden inside the
//! layers: [`Transformer::forward`] takes `&self` and an explicit `&mut KvCache`. That is what makes
//! prompt caching possible (a cache is a list of cheap tensor handles: clone it to snapshot, narrow it
//! to go back to a prefix), and it lets one loaded model serve any number of conversations.

use candle_core::quantized::{QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::Embedding;
use candle_transformers::quantized_nn::RmsNorm;

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
/// Why two copies: candle's quantized matmul computes one dot product per (token, output) pair, so a
/// prompt of n tokens costs about n decode steps. A dense matmul (gemm) reuses each weight across all
/// the tokens of a pass and ran prompts 2.2× faster here (SmolLM2-135M, 2 cores: 157 vs 72 tokens/s),
/// while one-token decode is bound by memory bandwidth and is faster on the 4-bit weights.
/// Why f32 and not f16: candle's f16 matmul on these CPUs was no faster than the quantized one (72
/// tokens/s), and its result depended on how the prompt was split into passes; the f32 product does
/// not (see `tests/reference_model.rs`), which lets the prompt cache resume at any position.
#[derive(Debug, Clone)]
struct Linear {
    quantized: QMatMul,
    /// `[out, in]`, f32.
    dense: Option<Tensor>,
}

impl Linear {
    fn new(qt: QTensor, dense: bool) -> Result<Self> {
        let dense = if dense {
            Some(qt.dequantize(&Device::Cpu)?)
        } else {
            None
        };
        Ok(Self {
            quantized: QMatMul::from_qtensor(qt)?,
            dense,
        })
    }

    fn forward(&self, xs: &Tensor, pass: Pass) -> Result<Tensor> {
        match (&self.dense, pass) {
            (Some(w), Pass::Prompt) => xs
                .to_dtype(w.dtype())?
                .broadcast_matmul(&w.t()?)?
                .to_dtype(DType::F32),
            _ => self.quantized.forward(xs),
        }
    }
}

/// Which weights a forward pass uses: prompts always take the dense path (when loaded) and generated
/// tokens the quantized one, whatever the number of tokens, so that how a prompt is split into passes
/// (which depends on what the prompt cache holds) never changes which arithmetic computes it.
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
    fn forward(&self, xs: &Tensor, pass: Pass) -> Result<Tensor> {
        let gate = self.gate.forward(xs, pass)?;
        let up = self.up.forward(xs, pass)?;
        self.down.forward(&(candle_nn::ops::silu(&gate)? * up)?, pass)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    /// Qwen2 has biases on the q/k/v projections, llama has none.
    qkv_bias: Option<(Tensor, Tensor, Tensor)>,
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

/// The attention keys and values of every position processed so far, per layer.
///
/// Tensors are reference-counted, so `clone` is a cheap snapshot; [`KvCache::truncate`] narrows the views
/// without copying. New positions are appended by concatenation into new tensors, so a snapshot is
/// never modified by later use of a clone.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    pub fn new(n_layer: usize) -> Self {
        Self {
            layers: vec![None; n_layer],
            len: 0,
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
        if len >= self.len {
            return Ok(());
        }
        if len == 0 {
            self.layers.iter_mut().for_each(|l| *l = None);
        } else {
            for (k, v) in self.layers.iter_mut().flatten() {
                *k = k.narrow(2, 0, len)?;
                *v = v.narrow(2, 0, len)?;
            }
        }
        self.len = len;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn set_len_for_tests(&mut self, len: usize) {
        self.len = len;
    }

    /// Bytes held by the cache's own view (shared storage is counted by each holder).
    pub fn approx_bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * 4)
            .sum()
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
    Tensor::from_vec(data, dims, att.device())
}

/// A decoder-only transformer (llama or qwen2 family) with quantized weights.
#[derive(Debug)]
pub struct Transformer {
    config: Config,
    embeddings: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    neg_inf: Tensor,
    rope_interleaved: bool,
    dense_prefill: bool,
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
        let eps = md(&format!("{p}.attention.layer_norm_rms_epsilon"))?.to_f32()? as f64;
        let freq_base = md(&format!("{p}.rope.freq_base"))
            .and_then(|v| v.to_f32())
            .unwrap_or(10_000.0);

        let tensor = |reader: &mut R, name: &str| -> Result<QTensor> { ct.tensor(reader, name, device) };
        let embeddings_q = tensor(reader, "token_embd.weight")?;
        let vocab_size = embeddings_q.shape().dims()[0];
        let embeddings = Embedding::new(embeddings_q.dequantize(device)?, embedding_length);
        let norm = RmsNorm::from_qtensor(tensor(reader, "output_norm.weight")?, eps)?;
        // Small models tie the output projection to the embeddings.
        let output = match tensor(reader, "output.weight") {
            Ok(t) => QMatMul::from_qtensor(t)?,
            Err(_) => QMatMul::from_qtensor(embeddings_q)?,
        };
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
                Linear::new(tensor(reader, &format!("{pre}.{name}"))?, dense_prefill)
            };
            let qkv_bias = match architecture {
                Architecture::Llama => None,
                Architecture::Qwen2 => {
                    let mut bias = |name: &str| -> Result<Tensor> {
                        tensor(reader, &format!("{pre}.{name}"))?.dequantize(device)
                    };
                    Some((bias("attn_q.bias")?, bias("attn_k.bias")?, bias("attn_v.bias")?))
                }
            };
            layers.push(Layer {
                wq: mm(reader, "attn_q.weight")?,
                wk: mm(reader, "attn_k.weight")?,
                wv: mm(reader, "attn_v.weight")?,
                qkv_bias,
                wo: mm(reader, "attn_output.weight")?,
                attention_norm: RmsNorm::from_qtensor(
                    tensor(reader, &format!("{pre}.attn_norm.weight"))?,
                    eps,
                )?,
                mlp: Mlp {
                    gate: mm(reader, "ffn_gate.weight")?,
                    down: mm(reader, "ffn_down.weight")?,
                    up: mm(reader, "ffn_up.weight")?,
                },
                ffn_norm: RmsNorm::from_qtensor(tensor(reader, &format!("{pre}.ffn_norm.weight"))?, eps)?,
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
            cos,
            sin,
            neg_inf: Tensor::new(f32::NEG_INFINITY, device)?,
            // llama.cpp's convention: llama pairs (2i, 2i+1), qwen2 pairs (i, i + d/2).
            rope_interleaved: architecture == Architecture::Llama,
            dense_prefill,
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

    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        mask: Option<&Tensor>,
        pos: usize,
        cache: &mut Option<(Tensor, Tensor)>,
        pass: Pass,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, seq_len, n_embd) = x.dims3()?;
        let mut q = layer.wq.forward(x, pass)?;
        let mut k = layer.wk.forward(x, pass)?;
        let mut v = layer.wv.forward(x, pass)?;
        if let Some((bq, bk, bv)) = &layer.qkv_bias {
            q = q.broadcast_add(bq)?;
            k = k.broadcast_add(bk)?;
            v = v.broadcast_add(bv)?;
        }
        let q = q.reshape((b, seq_len, c.n_head, c.head_dim))?.transpose(1, 2)?;
        let k = k
            .reshape((b, seq_len, c.n_kv_head, c.head_dim))?
            .transpose(1, 2)?;
        let v = v
            .reshape((b, seq_len, c.n_kv_head, c.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.rope(&q, pos)?;
        let k = self.rope(&k, pos)?;
        let (k, v) = match cache.take() {
            None => (k, v),
            Some((kc, vc)) => (Tensor::cat(&[&kc, &k], 2)?, Tensor::cat(&[&vc, &v], 2)?),
        };
        *cache = Some((k.clone(), v.clone()));

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
        layer.wo.forward(&y, pass)
    }

    /// Runs `tokens` (positions `cache.len()..`) through the model, appends their keys and values to
    /// `cache`, and returns the logits (f32, `[vocab]`) for the token after the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, pass: Pass) -> Result<Tensor> {
        let h = self.hidden(tokens, cache, pass)?;
        let last = h.i((.., tokens.len() - 1, ..))?;
        self.output.forward(&last)?.squeeze(0)?.to_dtype(DType::F32)
    }

    /// Like [`Transformer::forward`], but returns the logits after every one of `tokens`
    /// (`[tokens.len(), vocab]`): what scoring a given continuation needs.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache, pass: Pass) -> Result<Tensor> {
        let h = self.hidden(tokens, cache, pass)?;
        self.output.forward(&h.squeeze(0)?)?.to_dtype(DType::F32)
    }

    /// The final (normalized) hidden states of `tokens`, `[1, seq, dim]`; appends to `cache`.
    fn hidden(&self, tokens: &[u32], cache: &mut KvCache, pass: Pass) -> Result<Tensor> {
        let seq_len = tokens.len();
        if seq_len == 0 {
            candle_core::bail!("forward needs at least one token");
        }
        let pos = cache.len;
        if pos + seq_len > self.config.context_length {
            candle_core::bail!(
                "context of {} tokens exceeds the supported {}",
                pos + seq_len,
                self.config.context_length
            );
        }
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
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let residual = &h;
            let x = layer.attention_norm.forward(&h)?;
            let attn = self.attention(layer, &x, mask.as_ref(), pos, layer_cache, pass)?;
            let x = (attn + residual)?;
            let residual = &x;
            let y = layer.mlp.forward(&layer.ffn_norm.forward(&x)?, pass)?;
            h = (y + residual)?;
        }
        cache.len = pos + seq_len;
        self.norm.forward(&h)
    }
}
