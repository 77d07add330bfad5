//! The whisper.cpp ggml file format: writing its pieces, and reading one back for inspection (tests, and
//! anyone who wants to check a converted file without loading whisper).
//!
//! Layout: i32 magic; eleven i32 hyper-parameters; mel filters (i32 n_mels, i32 n_bins, f32 data); vocab
//! (i32 count, then i32 length + raw bytes per token); tensors until end of file (i32 n_dims, i32 name
//! length, i32 type, dims innermost first, name, data). All little-endian.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::ModelError;

pub const GGML_MAGIC: u32 = 0x6767_6d6c;
const FORMAT: &str = "whisper.cpp ggml file";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q8_0,
}

impl GgmlType {
    pub fn code(self) -> i32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q8_0 => 8,
        }
    }

    fn from_code(code: i32) -> Option<GgmlType> {
        Some(match code {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            8 => GgmlType::Q8_0,
            _ => return None,
        })
    }

    /// Bytes taken by `elements` values (q8_0: blocks of 32 values, an f16 scale and 32 i8).
    fn data_len(self, elements: u64) -> u64 {
        match self {
            GgmlType::F32 => elements * 4,
            GgmlType::F16 => elements * 2,
            GgmlType::Q8_0 => elements / 32 * 34,
        }
    }
}

/// Whisper's hyper-parameters, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperHparams {
    pub n_vocab: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: i32,
    pub n_mels: i32,
    /// 1 = f16 matrices.
    pub ftype: i32,
}

impl WhisperHparams {
    fn to_array(self) -> [i32; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }

    fn from_array(a: [i32; 11]) -> Self {
        let [
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            n_audio_head,
            n_audio_layer,
            n_text_ctx,
            n_text_state,
            n_text_head,
            n_text_layer,
            n_mels,
            ftype,
        ] = a;
        WhisperHparams {
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            n_audio_head,
            n_audio_layer,
            n_text_ctx,
            n_text_state,
            n_text_head,
            n_text_layer,
            n_mels,
            ftype,
        }
    }

    /// whisper.cpp's own test: multilingual vocabularies have 51865 or more entries.
    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

pub(crate) fn write_i32(out: &mut dyn Write, v: i32) -> io::Result<()> {
    out.write_all(&v.to_le_bytes())
}

pub(crate) fn write_header(out: &mut dyn Write, hp: &WhisperHparams) -> io::Result<()> {
    out.write_all(&GGML_MAGIC.to_le_bytes())?;
    hp.to_array().iter().try_for_each(|v| write_i32(out, *v))
}

pub(crate) fn write_mel_filters(
    out: &mut dyn Write,
    n_mels: i32,
    n_bins: i32,
    data: &[f32],
) -> io::Result<()> {
    write_i32(out, n_mels)?;
    write_i32(out, n_bins)?;
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    out.write_all(&bytes)
}

pub(crate) fn write_vocab(out: &mut dyn Write, tokens: &[Vec<u8>]) -> io::Result<()> {
    write_i32(out, len_i32(tokens.len())?)?;
    for token in tokens {
        write_i32(out, len_i32(token.len())?)?;
        out.write_all(token)?;
    }
    Ok(())
}

/// `shape` outermost first (PyTorch order); the file wants it innermost first.
pub(crate) fn write_tensor(
    out: &mut dyn Write,
    name: &str,
    shape: &[usize],
    ty: GgmlType,
    data: &[u8],
) -> io::Result<()> {
    write_i32(out, len_i32(shape.len())?)?;
    write_i32(out, len_i32(name.len())?)?;
    write_i32(out, ty.code())?;
    for dim in shape.iter().rev() {
        write_i32(out, len_i32(*dim)?)?;
    }
    out.write_all(name.as_bytes())?;
    out.write_all(data)
}

fn len_i32(n: usize) -> io::Result<i32> {
    i32::try_from(n).map_err(|_| io::Error::other(format!("{n} does not fit the format's i32")))
}

/// What a ggml file contains, without the tensor data.
#[derive(Debug, Clone)]
pub struct GgmlInfo {
    pub hparams: WhisperHparams,
    /// (n_mels, n_bins) and the row-major weights.
    pub mel_shape: (usize, usize),
    pub mel_filters: Vec<f32>,
    pub vocab: Vec<Vec<u8>>,
    pub tensors: Vec<GgmlTensorInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgmlTensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// Innermost first, as stored.
    pub dims: Vec<usize>,
}

impl GgmlInfo {
    pub fn tensor(&self, name: &str) -> Option<&GgmlTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads a ggml whisper file's structure, checking that the tensors exactly fill the file.
pub fn read_ggml_info(path: &Path) -> Result<GgmlInfo, ModelError> {
    let file = File::open(path).map_err(ModelError::io("open", path))?;
    let file_len = file
        .metadata()
        .map_err(ModelError::io("read metadata of", path))?
        .len();
    let mut r = BufReader::new(file);
    let bad = |detail: String| ModelError::bad_format(path, FORMAT, detail);
    let i32_at = |r: &mut BufReader<File>| -> Result<i32, ModelError> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)
            .map_err(|e| ModelError::bad_format(path, FORMAT, format!("truncated: {e}")))?;
        Ok(i32::from_le_bytes(b))
    };
    let count = |v: i32| usize::try_from(v).map_err(|_| bad(format!("negative count {v}")));
    if i32_at(&mut r)? as u32 != GGML_MAGIC {
        return Err(bad("wrong magic".into()));
    }
    let mut hp = [0i32; 11];
    for v in &mut hp {
        *v = i32_at(&mut r)?;
    }
    let n_mels = count(i32_at(&mut r)?)?;
    let n_bins = count(i32_at(&mut r)?)?;
    let mut mel_filters = Vec::with_capacity(n_mels * n_bins);
    for _ in 0..n_mels * n_bins {
        mel_filters.push(f32::from_bits(i32_at(&mut r)? as u32));
    }
    let n_tokens = count(i32_at(&mut r)?)?;
    let mut vocab = Vec::with_capacity(n_tokens);
    for _ in 0..n_tokens {
        let len = count(i32_at(&mut r)?)?;
        let mut token = vec![0u8; len];
        r.read_exact(&mut token)
            .map_err(|e| bad(format!("truncated vocab: {e}")))?;
        vocab.push(token);
    }
    let mut tensors = Vec::new();
    loop {
        let pos = r.stream_position().map_err(ModelError::io("seek in", path))?;
        if pos == file_len {
            break;
        }
        let n_dims = count(i32_at(&mut r)?)?;
        let name_len = count(i32_at(&mut r)?)?;
        let code = i32_at(&mut r)?;
        let ty = GgmlType::from_code(code).ok_or_else(|| bad(format!("unknown tensor type {code}")))?;
        let dims = (0..n_dims)
            .map(|_| i32_at(&mut r).and_then(count))
            .collect::<Result<Vec<_>, _>>()?;
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name)
            .map_err(|e| bad(format!("truncated tensor name: {e}")))?;
        let name = String::from_utf8(name).map_err(|_| bad("tensor name is not UTF-8".into()))?;
        let elements: u64 = dims.iter().map(|d| *d as u64).product();
        let len = ty.data_len(elements);
        let end = r.stream_position().map_err(ModelError::io("seek in", path))? + len;
        if end > file_len {
            return Err(bad(format!("tensor {name} runs past the end of the file")));
        }
        r.seek(SeekFrom::Start(end))
            .map_err(ModelError::io("seek in", path))?;
        tensors.push(GgmlTensorInfo { name, ty, dims });
    }
    Ok(GgmlInfo {
        hparams: WhisperHparams::from_array(hp),
        mel_shape: (n_mels, n_bins),
        mel_filters,
        vocab,
        tensors,
    })
}
