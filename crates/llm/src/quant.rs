//! Products of GGUF-quantized weights with one vector (a decode step) or with the rows of a prompt
//! pass: where the model spends its time.
//!
//! Why not candle's `QMatMul` for decoding: candle 0.11 has no SIMD dot product for Q4_1 (every
//! projection of SmolLM2-135M Q4_1) or Q5_0 (most of Qwen2.5-0.5B Q4_K_M), so their scalar loop was
//! a quarter of decode time, and another third went to the pool's workers waiting at barriers
//! between the many small tensor ops around it (perf, SmolLM2 on 2 cores). Here a product is a
//! plain function on slices: the weights are read in place from the `QTensor`'s storage (no copy),
//! eight rows at a time, shared out among the threads of [`crate::pool::Helpers`], and matrices that
//! share one input (q/k/v, gate/up) go out as one job. With several inputs (a prompt pass), each
//! group of eight rows is unpacked once per block for four inputs at a time ([`TILE`]): with one
//! input, unpacking was most of a kernel's work.
//!
//! The results are the ones candle's scalar reference (`vec_dot_unopt`) gives, bit for bit: the
//! integer part of each 32-weight block is exact in any order, and the float part is accumulated
//! block by block in the reference order, one row per SIMD lane. For Q4_1 and Q5_0 that reference
//! is what candle runs, so decoding computes exactly what it did through `QMatMul`; for Q8_0 candle
//! runs an AVX kernel that sums in another order, so those products (the output projection of both
//! models) differ from it in the last bits.
//!
//! The K-quants (Q4_K, Q5_K, Q6_K) take candle's own dot product row by row, on our threads; other
//! formats go through candle's `QMatMul`.
//!
//! Unsafe code: the AVX2 intrinsics, and viewing candle's K-quant storage as its block type.
#![allow(unsafe_code)]

use std::sync::Arc;

use std::borrow::Cow;

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, GgmlType, QK_K};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{Device, Module, Result, Tensor};
use half::f16;

use crate::pool::Helpers;

/// Weights per block, in every format handled here.
const QK: usize = 32;
/// Rows computed together: one per lane of an AVX register.
const ROWS: usize = 8;

/// Block formats with a kernel here, with their byte layout (ggml's `block_q4_1` etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `d: f16, m: f16, qs: [u8; 16]`: weight = d·q + m, q in 0..16 (low nibbles are weights 0..16).
    Q4_1,
    /// `d: f16, qh: u32, qs: [u8; 16]`: weight = d·(q − 16), q in 0..32 (fifth bits in `qh`).
    Q5_0,
    /// `d: f16, qs: [i8; 32]`: weight = d·q.
    Q8_0,
}

impl Format {
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
        }
    }
}

/// Rearranges ggml's row-major blocks into groups of [`ROWS`] rows, block by block: for each group
/// and block column, the eight rows' scales side by side, then their weights. The bytes are the
/// same (a last partial group is padded with zero blocks); what changes is that a kernel loads the
/// eight scales with one instruction instead of gathering them from eight rows, which made the
/// products about 1.5× faster (they are compute-bound on these CPUs, not memory-bound).
///
/// Per group and block, by format:
/// - Q4_1 (160 bytes): `d[8]: f16`, `m[8]: f16`, `qs[8][16]`.
/// - Q5_0 (176 bytes): `d[8]: f16`, then per pair of rows (a, b) two u32 of fifth bits as the
///   kernel consumes them, `lo = a.qh[0..16] | b.qh[0..16] << 16` and `hi = a.qh[16..32] |
///   b.qh[16..32] << 16`, then `qs[8][16]`.
/// - Q8_0 (272 bytes): `d[8]: f16`, `qs[8][32]`.
fn pack(format: Format, data: &[u8], rows: usize, blocks: usize) -> Vec<u8> {
    let row_bytes = blocks * format.block_bytes();
    let mut packed = vec![0u8; rows.div_ceil(ROWS) * ROWS * row_bytes];
    for (group, out) in data
        .chunks(ROWS * row_bytes)
        .zip(packed.chunks_exact_mut(ROWS * row_bytes))
    {
        pack_group(format, group, blocks, out);
    }
    packed
}

/// Packs up to [`ROWS`] rows of ggml blocks (`rows`, row-major) into one group (`out`).
fn pack_group(format: Format, rows: &[u8], blocks: usize, out: &mut [u8]) {
    let bb = format.block_bytes();
    let group_bytes = ROWS * bb;
    let zero = vec![0u8; bb];
    for (b, out) in out.chunks_exact_mut(group_bytes).enumerate() {
        let block = |r: usize| -> &[u8] {
            let at = (r * blocks + b) * bb;
            rows.get(at..at + bb).unwrap_or(&zero)
        };
        for r in 0..ROWS {
            let x = block(r);
            out[2 * r..2 * r + 2].copy_from_slice(&x[..2]);
            match format {
                Format::Q4_1 => {
                    out[16 + 2 * r..18 + 2 * r].copy_from_slice(&x[2..4]);
                    out[32 + 16 * r..48 + 16 * r].copy_from_slice(&x[4..20]);
                }
                Format::Q5_0 => out[48 + 16 * r..64 + 16 * r].copy_from_slice(&x[6..22]),
                Format::Q8_0 => out[16 + 32 * r..48 + 32 * r].copy_from_slice(&x[2..34]),
            }
        }
        if format == Format::Q5_0 {
            let qh = |r: usize| {
                let x = block(r);
                u32::from_le_bytes([x[2], x[3], x[4], x[5]])
            };
            for pair in 0..ROWS / 2 {
                let (a, b) = (qh(2 * pair), qh(2 * pair + 1));
                let lo = (a & 0xFFFF) | (b << 16);
                let hi = (a >> 16) | (b & 0xFFFF_0000);
                out[16 + 8 * pair..20 + 8 * pair].copy_from_slice(&lo.to_le_bytes());
                out[20 + 8 * pair..24 + 8 * pair].copy_from_slice(&hi.to_le_bytes());
            }
        }
    }
}

/// Whether candle's `QMatMul` is told by its environment (`CANDLE_DEQUANTIZE_ALL`,
/// `CANDLE_DEQUANTIZE_ALL_F16`) to multiply with dequantized weights — a way to check whether a
/// model's answer is a quantization artifact, which [`QMatrix::from_gguf`] keeps working.
fn candle_dequantizes() -> bool {
    ["CANDLE_DEQUANTIZE_ALL", "CANDLE_DEQUANTIZE_ALL_F16"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0"))
}

#[derive(Clone)]
enum Kind {
    /// Rearranged by [`pack`].
    Packed {
        format: Format,
        data: Arc<Vec<u8>>,
    },
    /// Super-block formats, through candle's dot product (see [`k_rows`]).
    KQuant {
        tensor: Arc<QTensor>,
        dtype: GgmlDType,
    },
    Candle(QMatMul),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Packed { format, data } => write!(f, "Packed({format:?}, {} bytes)", data.len()),
            Self::KQuant { dtype, .. } => write!(f, "KQuant({dtype:?})"),
            Self::Candle(m) => write!(f, "Candle({m:?})"),
        }
    }
}

/// A weight matrix `[rows, cols]` as the kernels here multiply it.
#[derive(Debug, Clone)]
pub struct QMatrix {
    rows: usize,
    cols: usize,
    kind: Kind,
}

impl QMatrix {
    /// Takes over the weights of `m`: rearranged for the formats with a kernel here (the original
    /// storage is freed unless shared), as they are otherwise.
    pub fn new(m: QMatMul) -> Result<Self> {
        let (rows, cols) = match &m {
            QMatMul::QTensor(t) => t.shape().dims2()?,
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims2()?,
        };
        let ours = match &m {
            QMatMul::QTensor(t) if matches!(t.device(), Device::Cpu) => match t.dtype() {
                GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q8_0 if cols % QK == 0 => {
                    let format = match t.dtype() {
                        GgmlDType::Q4_1 => Format::Q4_1,
                        GgmlDType::Q5_0 => Format::Q5_0,
                        _ => Format::Q8_0,
                    };
                    let data = t.data()?;
                    let blocks = cols / QK;
                    if data.len() != rows * blocks * format.block_bytes() {
                        candle_core::bail!("quantized weights of unexpected size");
                    }
                    Some(Kind::Packed {
                        format,
                        data: Arc::new(pack(format, &data, rows, blocks)),
                    })
                }
                dtype @ (GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K) if cols % QK_K == 0 => {
                    Some(Kind::KQuant {
                        tensor: t.clone(),
                        dtype,
                    })
                }
                _ => None,
            },
            _ => None,
        };
        Ok(Self {
            rows,
            cols,
            kind: ours.unwrap_or(Kind::Candle(m)),
        })
    }

    /// Reads tensor `name`. The formats with a kernel here are packed while they are read, a group
    /// of rows at a time, so that loading never holds two copies of a large matrix (the output
    /// projection of Qwen2.5-0.5B is 145 MB).
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        name: &str,
    ) -> Result<Self> {
        let info = ct
            .tensor_infos
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("GGUF file lacks tensor `{name}`")))?;
        let format = match info.ggml_dtype {
            GgmlDType::Q4_1 => Some(Format::Q4_1),
            GgmlDType::Q5_0 => Some(Format::Q5_0),
            GgmlDType::Q8_0 => Some(Format::Q8_0),
            _ => None,
        };
        match (format, info.shape.dims2()) {
            (Some(format), Ok((rows, cols))) if cols % QK == 0 && !candle_dequantizes() => {
                let blocks = cols / QK;
                let row_bytes = blocks * format.block_bytes();
                let mut data = vec![0u8; rows.div_ceil(ROWS) * ROWS * row_bytes];
                let mut group = vec![0u8; ROWS * row_bytes];
                reader.seek(std::io::SeekFrom::Start(ct.tensor_data_offset + info.offset))?;
                for (g, out) in data.chunks_exact_mut(ROWS * row_bytes).enumerate() {
                    let n = ROWS.min(rows - g * ROWS);
                    reader.read_exact(&mut group[..n * row_bytes])?;
                    pack_group(format, &group[..n * row_bytes], blocks, out);
                }
                Ok(Self {
                    rows,
                    cols,
                    kind: Kind::Packed {
                        format,
                        data: Arc::new(data),
                    },
                })
            }
            _ => Self::new(QMatMul::from_qtensor(ct.tensor(reader, name, &Device::Cpu)?)?),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `xs·Wᵀ` for a tensor of any shape whose last dimension is `cols`.
    pub fn forward(&self, helpers: &Helpers, xs: &Tensor) -> Result<Tensor> {
        if let Kind::Candle(module) = &self.kind {
            return module.forward(xs);
        }
        let mut shape = xs.dims().to_vec();
        let x = xs
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut out = vec![0f32; x.len() / self.cols.max(1) * self.rows];
        matmul(helpers, &x, &mut [(self, &mut out)])?;
        if let Some(last) = shape.last_mut() {
            *last = self.rows;
        }
        Tensor::from_vec(out, shape, xs.device())
    }
}

/// A vector quantized to 8 bits per block of 32 the way candle quantizes a matmul's input (its
/// `BlockQ8_0`/`BlockQ8_1::from_float`, which round the same `qs` and `d`), once for all the
/// products that share it, with what each format's dot product needs.
#[derive(Debug, Default)]
struct QuantizedInput {
    qs: Vec<i8>,
    /// The block's scale, rounded to f16.
    d: Vec<f32>,
    /// Σ qs, exact.
    sum: Vec<i32>,
    /// Q8_1's `s`: d·Σqs in f16 arithmetic.
    s: Vec<f32>,
}

impl QuantizedInput {
    fn new(x: &[f32]) -> Self {
        let blocks = x.len() / QK;
        let mut q = Self {
            qs: vec![0; blocks * QK],
            d: Vec::with_capacity(blocks),
            sum: Vec::with_capacity(blocks),
            s: Vec::with_capacity(blocks),
        };
        for (xs, qs) in x.as_chunks::<QK>().0.iter().zip(q.qs.as_chunks_mut::<QK>().0) {
            let (d, sum) = quantize_block(xs, qs);
            let d16 = f16::from_f32(d);
            q.d.push(d16.to_f32());
            q.sum.push(sum);
            q.s.push((f16::from_f32(sum as f32) * d16).to_f32());
        }
        q
    }
}

/// Rounds one block to 8 bits (`qs`) as candle does, and returns its scale (f32) and Σ qs.
fn quantize_block(xs: &[f32; QK], qs: &mut [i8; QK]) -> (f32, i32) {
    let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    // SAFETY: the CPU has the features (compile-time cfg).
    unsafe {
        (d, avx2::quantize(xs, id, qs))
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    )))]
    {
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        (d, sum)
    }
}

/// `out = x·Wᵀ` for every `(W, out)` of `jobs`, which all take the same input: `x` holds `m` rows
/// of `W.cols` values, and each `out` gets `m` rows of `W.rows` results. The matrices with a kernel
/// here run together as one job on the helpers (q/k/v or gate/up cost one round of waking them), and
/// each group of eight weight rows is multiplied with all `m` inputs while it is in cache.
pub fn matmul(helpers: &Helpers, x: &[f32], jobs: &mut [(&QMatrix, &mut [f32])]) -> Result<()> {
    enum Rows<'a> {
        Packed { format: Format, data: &'a [u8] },
        KQuant { dtype: GgmlDType, data: Cow<'a, [u8]> },
    }
    let Some(cols) = jobs.first().map(|(w, _)| w.cols) else {
        return Ok(());
    };
    let m = x.len().checked_div(cols).unwrap_or(0);
    let mut inputs: Vec<QuantizedInput> = Vec::new();
    let mut q8k: Vec<Vec<BlockQ8K>> = Vec::new();
    let mut kernels = Vec::with_capacity(jobs.len());
    let mut outputs: Vec<&mut [f32]> = Vec::with_capacity(jobs.len());
    for (w, out) in jobs.iter_mut() {
        if x.len() != m * w.cols || out.len() != m * w.rows || m == 0 {
            candle_core::bail!(
                "product of a [{}, {}] matrix with {} inputs into {} outputs",
                w.rows,
                w.cols,
                x.len(),
                out.len()
            );
        }
        let rows = match &w.kind {
            Kind::Candle(module) => {
                let y = module.forward(&Tensor::from_slice(x, (m, cols), &Device::Cpu)?)?;
                out.copy_from_slice(&y.flatten_all()?.to_vec1::<f32>()?);
                continue;
            }
            Kind::Packed { format, data } => {
                if inputs.is_empty() {
                    inputs = x.chunks_exact(cols).map(QuantizedInput::new).collect();
                }
                Rows::Packed {
                    format: *format,
                    data,
                }
            }
            Kind::KQuant { tensor, dtype } => {
                if q8k.is_empty() {
                    q8k = x
                        .chunks_exact(cols)
                        .map(|x| {
                            let mut blocks = vec![BlockQ8K::zeros(); cols / QK_K];
                            BlockQ8K::from_float(x, &mut blocks);
                            blocks
                        })
                        .collect();
                }
                Rows::KQuant {
                    dtype: *dtype,
                    data: tensor.data()?,
                }
            }
        };
        kernels.push(rows);
        outputs.push(&mut **out);
    }
    // One input: the results go straight into `out`. Several: a unit's eight rows times all inputs
    // are one chunk of a scratch, `[m][8]` within the chunk, so that putting them in place at the end
    // copies rows of eight (copying one value at a time to its strided place was 6% of a prompt).
    let mut scratch: Vec<Vec<f32>> = if m > 1 {
        outputs.iter().map(|o| vec![0f32; o.len()]).collect()
    } else {
        Vec::new()
    };
    let mut targets: Vec<&mut [f32]> = if m > 1 {
        scratch.iter_mut().map(|s| s.as_mut_slice()).collect()
    } else {
        outputs.iter_mut().map(|o| &mut **o).collect()
    };
    let failed = std::sync::atomic::AtomicBool::new(false);
    helpers.for_each_chunk(&mut targets, ROWS * m, &|o, c, chunk| {
        let row0 = c * ROWS;
        let n = chunk.len() / m;
        match &kernels[o] {
            Rows::Packed { format, data } => {
                let group_bytes = cols / QK * ROWS * format.block_bytes();
                let group = &data[c * group_bytes..(c + 1) * group_bytes];
                group_dots(*format, group, &inputs, |t, eight| {
                    chunk[t * n..(t + 1) * n].copy_from_slice(&eight[..n]);
                });
            }
            Rows::KQuant { dtype, data } => {
                let ok = match dtype {
                    GgmlDType::Q4K => k_rows::<BlockQ4K>(data, cols, row0, &q8k, chunk),
                    GgmlDType::Q5K => k_rows::<BlockQ5K>(data, cols, row0, &q8k, chunk),
                    GgmlDType::Q6K => k_rows::<BlockQ6K>(data, cols, row0, &q8k, chunk),
                    _ => false,
                };
                if !ok {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    if failed.into_inner() {
        candle_core::bail!("K-quant weights of unexpected size or alignment");
    }
    if m > 1 {
        for (out, s) in outputs.iter_mut().zip(&scratch) {
            let rows = out.len() / m;
            for (c, unit) in s.chunks(ROWS * m).enumerate() {
                let n = unit.len() / m;
                for (out, results) in out.chunks_exact_mut(rows).zip(unit.chunks_exact(n)) {
                    out[c * ROWS..c * ROWS + n].copy_from_slice(results);
                }
            }
        }
    }
    Ok(())
}

/// Rows `row0..` of a K-quant matrix times every input (`out` is `[input][row]`), through candle's
/// own dot product for the format (AVX2 where candle has it). `false` if `data` is not a whole number
/// of aligned blocks.
fn k_rows<T: GgmlType<VecDotType = BlockQ8K>>(
    data: &[u8],
    cols: usize,
    row0: usize,
    inputs: &[Vec<BlockQ8K>],
    out: &mut [f32],
) -> bool {
    let size = std::mem::size_of::<T>();
    if !data.len().is_multiple_of(size) || data.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
        return false;
    }
    // SAFETY: size and alignment checked above; the bytes are the storage candle quantized as `T`
    // (a `Vec<T>`), and blocks are plain integers and f16s, valid for any bits.
    let blocks: &[T] = unsafe { std::slice::from_raw_parts(data.as_ptr() as *const T, data.len() / size) };
    let per_row = cols / QK_K;
    let n = out.len() / inputs.len().max(1);
    for r in 0..n {
        let at = (row0 + r) * per_row;
        let Some(row) = blocks.get(at..at + per_row) else {
            return false;
        };
        for (t, input) in inputs.iter().enumerate() {
            out[t * n + r] = T::vec_dot(cols, row, input);
        }
    }
    true
}

/// Inputs one kernel call multiplies with a group of rows: the group's weights are unpacked once
/// for all of them, which was most of a kernel's work with one input (prompt passes have many).
const TILE: usize = 4;

/// The eight rows of one packed group (see [`pack`]) times each of `inputs` (which all have the
/// group's number of blocks): `out(t, results)` for input `t`. Each result is computed the same way
/// whatever the other inputs, so a token's products do not depend on how a prompt is split.
fn group_dots(
    format: Format,
    group: &[u8],
    inputs: &[QuantizedInput],
    mut out: impl FnMut(usize, &[f32; ROWS]),
) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        /// # Safety
        /// As for the kernels: the inputs have the same number of blocks, which `group` holds.
        unsafe fn kernel<const T: usize>(
            format: Format,
            group: &[u8],
            inputs: [&QuantizedInput; T],
            out: &mut [[f32; ROWS]; T],
        ) {
            // SAFETY: the CPU has the features (compile-time cfg); the rest is the caller's.
            unsafe {
                match format {
                    Format::Q4_1 => avx2::q4_1(group, inputs, out),
                    Format::Q5_0 => avx2::q5_0(group, inputs, out),
                    Format::Q8_0 => avx2::q8_0(group, inputs, out),
                }
            }
        }
        let mut tiles = inputs.chunks_exact(TILE);
        for (i, tile) in (&mut tiles).enumerate() {
            let mut results = [[0f32; ROWS]; TILE];
            // SAFETY: `matmul` quantizes every input from a row of the same length and slices
            // `group` to that many blocks.
            unsafe { kernel(format, group, std::array::from_fn(|k| &tile[k]), &mut results) };
            for (k, r) in results.iter().enumerate() {
                out(i * TILE + k, r);
            }
        }
        let first = inputs.len() - tiles.remainder().len();
        for (k, input) in tiles.remainder().iter().enumerate() {
            let mut results = [[0f32; ROWS]; 1];
            // SAFETY: as above.
            unsafe { kernel(format, group, [input], &mut results) };
            out(first + k, &results[0]);
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    )))]
    for (t, input) in inputs.iter().enumerate() {
        let results: [f32; ROWS] = std::array::from_fn(|r| {
            reference::row_dot(format, &reference::unpack_row(format, group, r), input)
        });
        out(t, &results);
    }
}

#[cfg(any(
    test,
    not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))
))]
mod reference {
    //! Candle's reference arithmetic on ggml's own block layout: the fallback without AVX2, and what
    //! the tests hold the kernels to.

    use half::f16;

    use super::{Format, QK, QuantizedInput, ROWS};

    /// Row `r` of a packed group as ggml blocks again (what [`super::pack`] took apart).
    pub(super) fn unpack_row(format: Format, group: &[u8], r: usize) -> Vec<u8> {
        let bb = format.block_bytes();
        let mut row = Vec::with_capacity(group.len() / ROWS);
        for g in group.chunks_exact(ROWS * bb) {
            row.extend_from_slice(&g[2 * r..2 * r + 2]);
            match format {
                Format::Q4_1 => {
                    row.extend_from_slice(&g[16 + 2 * r..18 + 2 * r]);
                    row.extend_from_slice(&g[32 + 16 * r..48 + 16 * r]);
                }
                Format::Q5_0 => {
                    let word = |at: usize| u32::from_le_bytes([g[at], g[at + 1], g[at + 2], g[at + 3]]);
                    let (lo, hi) = (word(16 + 8 * (r / 2)), word(20 + 8 * (r / 2)));
                    let qh = if r.is_multiple_of(2) {
                        (lo & 0xFFFF) | (hi << 16)
                    } else {
                        (lo >> 16) | (hi & 0xFFFF_0000)
                    };
                    row.extend_from_slice(&qh.to_le_bytes());
                    row.extend_from_slice(&g[48 + 16 * r..64 + 16 * r]);
                }
                Format::Q8_0 => row.extend_from_slice(&g[16 + 32 * r..48 + 32 * r]),
            }
        }
        row
    }

    fn f16_at(b: &[u8], at: usize) -> f32 {
        f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
    }

    /// One row, in candle's reference order (`vec_dot_unopt` of the format).
    pub(super) fn row_dot(format: Format, row: &[u8], input: &QuantizedInput) -> f32 {
        let mut sumf = 0f32;
        for (b, x) in row.chunks_exact(format.block_bytes()).enumerate() {
            let ys = &input.qs[b * QK..(b + 1) * QK];
            let yd = input.d[b];
            match format {
                Format::Q4_1 => {
                    let qs = &x[4..20];
                    let mut sumi = 0i32;
                    for j in 0..QK / 2 {
                        sumi += (qs[j] & 0x0F) as i32 * ys[j] as i32
                            + (qs[j] >> 4) as i32 * ys[j + QK / 2] as i32;
                    }
                    sumf += sumi as f32 * f16_at(x, 0) * yd + f16_at(x, 2) * input.s[b];
                }
                Format::Q5_0 => {
                    let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
                    let qs = &x[6..22];
                    let mut sumi = 0i32;
                    for j in 0..QK / 2 {
                        let h0 = ((qh >> j) & 1) << 4;
                        let h1 = ((qh >> (j + 16)) & 1) << 4;
                        let x0 = ((qs[j] & 0x0F) as u32 | h0) as i32 - 16;
                        let x1 = ((qs[j] >> 4) as u32 | h1) as i32 - 16;
                        sumi += x0 * ys[j] as i32 + x1 * ys[j + QK / 2] as i32;
                    }
                    sumf += sumi as f32 * f16_at(x, 0) * yd;
                }
                Format::Q8_0 => {
                    let sumi: i32 = x[2..34]
                        .iter()
                        .zip(ys)
                        .map(|(&q, &y)| q as i8 as i32 * y as i32)
                        .sum();
                    sumf += sumi as f32 * f16_at(x, 0) * yd;
                }
            }
        }
        sumf
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
mod avx2 {
    //! Eight rows (one packed group) at a time, one per lane: per block, the eight rows' exact
    //! integer sums are reduced into one register, and the float part is the reference's, lane by
    //! lane.

    use std::arch::x86_64::*;

    use super::{QK, QuantizedInput, ROWS};

    /// Eight f16 at `p`, as f32.
    #[inline(always)]
    unsafe fn f16x8(p: *const u8) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// The input's 32 values of block `b` as `[0..16 | 0..16]` and `[16..32 | 16..32]`, for pairs of
    /// rows whose low and high nibbles are weights 0..16 and 16..32.
    #[inline(always)]
    unsafe fn input_halves(input: &QuantizedInput, b: usize) -> (__m256i, __m256i) {
        unsafe {
            let y = input.qs.as_ptr().add(b * QK);
            (
                _mm256_broadcastsi128_si256(_mm_loadu_si128(y as *const __m128i)),
                _mm256_broadcastsi128_si256(_mm_loadu_si128(y.add(16) as *const __m128i)),
            )
        }
    }

    /// Four `[row r: 4 lanes | row r+1: 4 lanes]` partial sums to `[r0, …, r7]`.
    #[inline(always)]
    unsafe fn reduce_pairs(s01: __m256i, s23: __m256i, s45: __m256i, s67: __m256i) -> __m256i {
        unsafe {
            let c = _mm256_hadd_epi32(_mm256_hadd_epi32(s01, s23), _mm256_hadd_epi32(s45, s67));
            // c = [r0, r2, r4, r6 | r1, r3, r5, r7]
            _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
        }
    }

    /// The integer dot products of eight rows' unpacked 4-bit (or 5-bit) weights of block `b` with
    /// one input: `lo`/`hi` hold rows (2i, 2i+1)'s low and high sixteen weights side by side.
    #[inline(always)]
    unsafe fn unpacked_dot(
        lo: &[__m256i; ROWS / 2],
        hi: &[__m256i; ROWS / 2],
        input: &QuantizedInput,
        b: usize,
    ) -> __m256i {
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let (y_lo, y_hi) = input_halves(input, b);
            let pair = |i: usize| {
                let p = _mm256_add_epi16(
                    _mm256_maddubs_epi16(lo[i], y_lo),
                    _mm256_maddubs_epi16(hi[i], y_hi),
                );
                _mm256_madd_epi16(p, ones)
            };
            reduce_pairs(pair(0), pair(1), pair(2), pair(3))
        }
    }

    /// Byte i is 0xFF where bit i of `x` is set.
    #[inline(always)]
    unsafe fn bytes_from_bits(x: u32) -> __m256i {
        unsafe {
            let shuffle = _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0x0000000000000000,
            );
            let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuffle);
            // Every bit but bit i set in byte i of each group of eight.
            let others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
            _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1))
        }
    }

    /// `(x·id).round() as i8` for the 32 values of a block, and their sum. Why not the scalar loop:
    /// `round` is a library call per value, and quantizing the inputs took 4% of a prompt pass.
    ///
    /// # Safety
    /// Only that the CPU has AVX2.
    pub(super) unsafe fn quantize(xs: &[f32; QK], id: f32, qs: &mut [i8; QK]) -> i32 {
        unsafe {
            let id = _mm256_set1_ps(id);
            let sign = _mm256_set1_ps(-0.0);
            let half = _mm256_set1_ps(0.5);
            let one = _mm256_set1_ps(1.0);
            let eight = |i: usize| {
                let y = _mm256_mul_ps(_mm256_loadu_ps(xs.as_ptr().add(8 * i)), id);
                // Round half away from zero, as `f32::round`: truncate, then step away from zero
                // where the (exact) remainder is at least one half.
                let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
                let rest = _mm256_andnot_ps(sign, _mm256_sub_ps(y, t));
                let away = _mm256_cmp_ps::<_CMP_GE_OQ>(rest, half);
                let step = _mm256_or_ps(_mm256_and_ps(y, sign), one);
                _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(away, step)))
            };
            let (a, b, c, d) = (eight(0), eight(1), eight(2), eight(3));
            // Saturating packs, like `as i8`; they interleave 32-bit lanes, which the permute undoes.
            let bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
            let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, bytes);
            let s = _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d));
            let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            _mm_cvtsi128_si32(s)
        }
    }

    /// # Safety
    /// Every input has the same number of blocks, and `group` holds that many packed Q4_1 blocks.
    pub(super) unsafe fn q4_1<const T: usize>(
        group: &[u8],
        inputs: [&QuantizedInput; T],
        out: &mut [[f32; ROWS]; T],
    ) {
        unsafe {
            let low = _mm256_set1_epi8(0x0F);
            let mut acc = [_mm256_setzero_ps(); T];
            let blocks = inputs.first().map_or(0, |i| i.d.len());
            for b in 0..blocks {
                let p = group.as_ptr().add(b * 160);
                // Rows 2i and 2i+1: their 16 bytes each, side by side, as weights 0..16 and 16..32.
                // Unpacked once for all T inputs: with several inputs, that is what sharing saves.
                let mut lo = [_mm256_setzero_si256(); ROWS / 2];
                let mut hi = [_mm256_setzero_si256(); ROWS / 2];
                for i in 0..ROWS / 2 {
                    let v = _mm256_loadu_si256(p.add(32 + 32 * i) as *const __m256i);
                    lo[i] = _mm256_and_si256(v, low);
                    hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                }
                let (d, m) = (f16x8(p), f16x8(p.add(16)));
                for (acc, input) in acc.iter_mut().zip(inputs) {
                    let sumi = unpacked_dot(&lo, &hi, input, b);
                    let t = _mm256_mul_ps(
                        _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), d),
                        _mm256_set1_ps(input.d[b]),
                    );
                    let t = _mm256_add_ps(t, _mm256_mul_ps(m, _mm256_set1_ps(input.s[b])));
                    *acc = _mm256_add_ps(*acc, t);
                }
            }
            for (o, acc) in out.iter_mut().zip(acc) {
                _mm256_storeu_ps(o.as_mut_ptr(), acc);
            }
        }
    }

    /// # Safety
    /// Every input has the same number of blocks, and `group` holds that many packed Q5_0 blocks.
    pub(super) unsafe fn q5_0<const T: usize>(
        group: &[u8],
        inputs: [&QuantizedInput; T],
        out: &mut [[f32; ROWS]; T],
    ) {
        unsafe {
            let low = _mm256_set1_epi8(0x0F);
            let fifth = _mm256_set1_epi8(0x10);
            let mut acc = [_mm256_setzero_ps(); T];
            let blocks = inputs.first().map_or(0, |i| i.d.len());
            for b in 0..blocks {
                let p = group.as_ptr().add(b * 176);
                let bits = |at: usize| (p.add(at) as *const u32).read_unaligned();
                // The weights as unsigned 0..32, unpacked once for all T inputs; Σ (q − 16)·y =
                // Σ q·y − 16·Σ y.
                let mut lo = [_mm256_setzero_si256(); ROWS / 2];
                let mut hi = [_mm256_setzero_si256(); ROWS / 2];
                for i in 0..ROWS / 2 {
                    let v = _mm256_loadu_si256(p.add(48 + 32 * i) as *const __m256i);
                    let lo_bits = bytes_from_bits(bits(16 + 8 * i));
                    let hi_bits = bytes_from_bits(bits(20 + 8 * i));
                    lo[i] = _mm256_or_si256(_mm256_and_si256(v, low), _mm256_and_si256(lo_bits, fifth));
                    hi[i] = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
                        _mm256_and_si256(hi_bits, fifth),
                    );
                }
                let d = f16x8(p);
                for (acc, input) in acc.iter_mut().zip(inputs) {
                    let sumu = unpacked_dot(&lo, &hi, input, b);
                    let sumi = _mm256_sub_epi32(sumu, _mm256_set1_epi32(16 * input.sum[b]));
                    let t = _mm256_mul_ps(
                        _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), d),
                        _mm256_set1_ps(input.d[b]),
                    );
                    *acc = _mm256_add_ps(*acc, t);
                }
            }
            for (o, acc) in out.iter_mut().zip(acc) {
                _mm256_storeu_ps(o.as_mut_ptr(), acc);
            }
        }
    }

    /// # Safety
    /// Every input has the same number of blocks, and `group` holds that many packed Q8_0 blocks.
    pub(super) unsafe fn q8_0<const T: usize>(
        group: &[u8],
        inputs: [&QuantizedInput; T],
        out: &mut [[f32; ROWS]; T],
    ) {
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let mut acc = [_mm256_setzero_ps(); T];
            let blocks = inputs.first().map_or(0, |i| i.d.len());
            for b in 0..blocks {
                let p = group.as_ptr().add(b * 272);
                let d = f16x8(p);
                // Eight rows of 32 signed weights do not fit the registers next to the work of
                // several inputs, so each input reloads them (from L1).
                for (acc, input) in acc.iter_mut().zip(inputs) {
                    let y = _mm256_loadu_si256(input.qs.as_ptr().add(b * QK) as *const __m256i);
                    let row = |r: usize| {
                        let x = _mm256_loadu_si256(p.add(16 + 32 * r) as *const __m256i);
                        // |x|·(y with x's sign): maddubs takes one unsigned operand.
                        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(y, x));
                        _mm256_madd_epi16(p, ones)
                    };
                    // [r0 r0 r1 r1 | r0 r0 r1 r1] → [r0 r1 r2 r3 | r0 r1 r2 r3] (low and high halves).
                    let a = _mm256_hadd_epi32(
                        _mm256_hadd_epi32(row(0), row(1)),
                        _mm256_hadd_epi32(row(2), row(3)),
                    );
                    let c = _mm256_hadd_epi32(
                        _mm256_hadd_epi32(row(4), row(5)),
                        _mm256_hadd_epi32(row(6), row(7)),
                    );
                    let sumi = _mm256_add_epi32(
                        _mm256_permute2x128_si256(a, c, 0x20),
                        _mm256_permute2x128_si256(a, c, 0x31),
                    );
                    let t = _mm256_mul_ps(
                        _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), d),
                        _mm256_set1_ps(input.d[b]),
                    );
                    *acc = _mm256_add_ps(*acc, t);
                }
            }
            for (o, acc) in out.iter_mut().zip(acc) {
                _mm256_storeu_ps(o.as_mut_ptr(), acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{row_dot, unpack_row};
    use super::*;

    /// Deterministic values in about -1..1 with some outliers, like activations.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = (s % 20001) as f32 / 10000.0 - 1.0;
                if i % 97 == 0 { v * 8.0 } else { v }
            })
            .collect()
    }

    fn check(dtype: GgmlDType, exact: bool) -> Result<()> {
        let mut singles = Vec::new();
        // 37 rows: four groups of eight and a tail of five.
        let (rows, cols) = (37, 96);
        let w = Tensor::from_vec(values(rows * cols, 1), (rows, cols), &Device::Cpu)?;
        let qmm = QMatMul::from_qtensor(QTensor::quantize(&w, dtype)?)?;
        let m = QMatrix::new(qmm.clone())?;
        assert!(matches!(m.kind, Kind::Packed { .. }), "{dtype:?} has a kernel");
        let helpers = Helpers::with_threads(1)?;
        for seed in 0..4 {
            let x = values(cols, 100 + seed);
            let input = QuantizedInput::new(&x);
            let mut ours = vec![0f32; rows];
            matmul(&helpers, &x, &mut [(&m, &mut ours)])?;
            let candle: Vec<f32> = qmm
                .forward(&Tensor::from_slice(&x, (1, cols), &Device::Cpu)?)?
                .flatten_all()?
                .to_vec1()?;
            let (QMatMul::QTensor(tensor), Kind::Packed { format, data: packed }) = (&qmm, &m.kind) else {
                unreachable!()
            };
            let data = tensor.data()?;
            let row_bytes = data.len() / rows;
            let group_bytes = row_bytes * ROWS;
            for r in 0..rows {
                let row = &data[r * row_bytes..(r + 1) * row_bytes];
                let group = &packed[r / ROWS * group_bytes..(r / ROWS + 1) * group_bytes];
                assert_eq!(
                    unpack_row(*format, group, r % ROWS),
                    row,
                    "{dtype:?} row {r} repacked"
                );
                let reference = row_dot(*format, row, &input);
                assert_eq!(
                    ours[r].to_bits(),
                    reference.to_bits(),
                    "{dtype:?} row {r}: SIMD vs scalar"
                );
                if exact {
                    assert_eq!(
                        ours[r].to_bits(),
                        candle[r].to_bits(),
                        "{dtype:?} row {r}: vs candle"
                    );
                } else {
                    assert!((ours[r] - candle[r]).abs() <= 1e-4 * candle[r].abs().max(1.0));
                }
            }
            singles.extend(ours);
        }
        // All four inputs in one product: the same results, in the same order.
        let x: Vec<f32> = (0..4).flat_map(|seed| values(cols, 100 + seed)).collect();
        let mut batch = vec![0f32; 4 * rows];
        matmul(&helpers, &x, &mut [(&m, &mut batch)])?;
        assert_eq!(batch, singles, "{dtype:?}: four inputs at once");
        // Batches of any size (whole tiles of inputs and a rest) against candle's product of the
        // whole batch, and each input against the same input alone: a token's results do not depend
        // on the pass it is in. Two helpers, so that groups run on several threads.
        let helpers = Helpers::with_threads(2)?;
        for n in [2, 3, 5, 8, 11] {
            let x = values(n * cols, 200 + n as u32);
            let mut batch = vec![0f32; n * rows];
            matmul(&helpers, &x, &mut [(&m, &mut batch)])?;
            let candle: Vec<f32> = qmm
                .forward(&Tensor::from_slice(&x, (n, cols), &Device::Cpu)?)?
                .flatten_all()?
                .to_vec1()?;
            for (t, (x, ours)) in x.chunks_exact(cols).zip(batch.chunks_exact(rows)).enumerate() {
                let mut alone = vec![0f32; rows];
                matmul(&helpers, x, &mut [(&m, &mut alone)])?;
                assert_eq!(ours, alone, "{dtype:?}: input {t} of {n} vs alone");
                for (r, (a, b)) in ours.iter().zip(&candle[t * rows..(t + 1) * rows]).enumerate() {
                    if exact {
                        assert_eq!(a.to_bits(), b.to_bits(), "{dtype:?}: input {t} of {n}, row {r}");
                    } else {
                        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{dtype:?}: {a} vs {b}");
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn inputs_round_like_candle() {
        // With 127 in the block the scale is 1, and the halves are ties (away from zero).
        let mut ties = [0f32; QK];
        for (i, x) in ties.iter_mut().enumerate() {
            *x = if i == 0 { 127.0 } else { i as f32 - 16.5 };
        }
        let mut blocks = vec![ties, [0.0; QK]];
        blocks.extend(values(8 * QK, 9).as_chunks::<QK>().0);
        for xs in &blocks {
            let mut qs = [0i8; QK];
            let (d, sum) = quantize_block(xs, &mut qs);
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let expected: Vec<i8> = xs.iter().map(|v| (v * id).round() as i8).collect();
            assert_eq!(d, amax / 127.0);
            assert_eq!(qs.to_vec(), expected, "{xs:?}");
            assert_eq!(sum, expected.iter().map(|&q| q as i32).sum::<i32>());
        }
    }

    #[test]
    fn q4_1_matches_candle_bit_for_bit() -> Result<()> {
        check(GgmlDType::Q4_1, true)
    }

    #[test]
    fn q5_0_matches_candle_bit_for_bit() -> Result<()> {
        check(GgmlDType::Q5_0, true)
    }

    #[test]
    fn q8_0_matches_candle_up_to_summation_order() -> Result<()> {
        check(GgmlDType::Q8_0, false)
    }

    #[test]
    fn k_quants_and_other_formats_agree_with_candle() -> Result<()> {
        let helpers = Helpers::with_threads(1)?;
        let (rows, cols) = (13, 512);
        let w = Tensor::from_vec(values(rows * cols, 3), (rows, cols), &Device::Cpu)?;
        for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K, GgmlDType::Q4_0] {
            let qmm = QMatMul::from_qtensor(QTensor::quantize(&w, dtype)?)?;
            let m = QMatrix::new(qmm.clone())?;
            let expected_kind = match dtype {
                GgmlDType::Q4_0 => matches!(m.kind, Kind::Candle(_)),
                _ => matches!(m.kind, Kind::KQuant { .. }),
            };
            assert!(expected_kind, "{dtype:?}");
            // Three inputs at once: the rows of a group are laid out per input.
            let x = values(3 * cols, 4);
            let mut ours = vec![0f32; 3 * rows];
            matmul(&helpers, &x, &mut [(&m, &mut ours)])?;
            let candle: Vec<f32> = qmm
                .forward(&Tensor::from_slice(&x, (3, cols), &Device::Cpu)?)?
                .flatten_all()?
                .to_vec1()?;
            for (a, b) in ours.iter().zip(&candle) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{dtype:?}: {a} vs {b}");
            }
        }
        Ok(())
    }
}
