//! Reader for CTranslate2's `model.bin` (binary version 6). Only the index (names, shapes, offsets) is
//! kept in memory; tensor data is read on demand, so converting `base` needs one tensor at a time rather
//! than the whole 145 MB file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::ModelError;

const FORMAT: &str = "CTranslate2 model.bin (version 6)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<DType> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Variable {
    /// Outermost first, as in PyTorch.
    pub dims: Vec<usize>,
    pub dtype: DType,
    offset: u64,
    len: u64,
}

impl Variable {
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }
}

#[derive(Debug)]
pub struct Ct2Model {
    path: PathBuf,
    reader: BufReader<File>,
    vars: HashMap<String, Variable>,
    aliases: HashMap<String, String>,
}

impl Ct2Model {
    pub fn open(path: &Path) -> Result<Ct2Model, ModelError> {
        let file = File::open(path).map_err(ModelError::io("open", path))?;
        let file_len = file
            .metadata()
            .map_err(ModelError::io("read metadata of", path))?
            .len();
        let mut r = Cursor {
            reader: BufReader::with_capacity(1 << 16, file),
            path,
        };
        let version = r.u32()?;
        if version != 6 {
            return Err(r.bad(format!("binary version {version}, only 6 is supported")));
        }
        let spec = r.string()?;
        if spec != "WhisperSpec" {
            return Err(r.bad(format!("spec {spec:?}, expected WhisperSpec")));
        }
        let _revision = r.u32()?;
        let count = r.u32()?;
        let mut vars = HashMap::with_capacity(count as usize);
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()?;
            let dims = (0..rank)
                .map(|_| r.u32().map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            let code = r.u8()?;
            let dtype =
                DType::from_code(code).ok_or_else(|| r.bad(format!("{name}: unknown dtype {code}")))?;
            let len = u64::from(r.u32()?);
            let expected = dims.iter().product::<usize>() as u64 * dtype.size() as u64;
            if len != expected {
                return Err(r.bad(format!("{name}: {len} bytes for shape {dims:?} of {dtype:?}")));
            }
            let offset = r.position()?;
            if offset + len > file_len {
                return Err(r.bad(format!("{name}: data runs past the end of the file")));
            }
            r.skip(len)?;
            vars.insert(
                name,
                Variable {
                    dims,
                    dtype,
                    offset,
                    len,
                },
            );
        }
        let mut aliases = HashMap::new();
        if r.position()? < file_len {
            for _ in 0..r.u32()? {
                let alias = r.string()?;
                let target = r.string()?;
                aliases.insert(alias, target);
            }
        }
        Ok(Ct2Model {
            path: path.to_owned(),
            reader: r.reader,
            vars,
            aliases,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.vars.contains_key(name) || self.aliases.contains_key(name)
    }

    pub fn var(&self, name: &str) -> Result<&Variable, ModelError> {
        let resolved = self.aliases.get(name).map_or(name, String::as_str);
        self.vars
            .get(resolved)
            .ok_or_else(|| ModelError::bad_format(&self.path, FORMAT, format!("no variable {name}")))
    }

    /// The variable's raw little-endian bytes.
    pub fn read(&mut self, name: &str) -> Result<(Variable, Vec<u8>), ModelError> {
        let var = self.var(name)?.clone();
        let mut data = vec![0u8; var.len as usize];
        self.reader
            .seek(SeekFrom::Start(var.offset))
            .map_err(ModelError::io("seek in", &self.path))?;
        self.reader
            .read_exact(&mut data)
            .map_err(ModelError::io("read", &self.path))?;
        Ok((var, data))
    }

    /// A scalar integer variable such as `encoder/num_heads`.
    pub fn read_int(&mut self, name: &str) -> Result<i64, ModelError> {
        let (var, data) = self.read(name)?;
        let value = match (var.dtype, data.as_slice()) {
            (DType::I8, [a]) => i64::from(*a as i8),
            (DType::I16, [a, b]) => i64::from(i16::from_le_bytes([*a, *b])),
            (DType::I32, [a, b, c, d]) => i64::from(i32::from_le_bytes([*a, *b, *c, *d])),
            _ => {
                return Err(self.bad(format!(
                    "{name}: expected an integer scalar, got {:?} {:?}",
                    var.dtype, var.dims
                )));
            }
        };
        Ok(value)
    }

    pub fn bad(&self, detail: String) -> ModelError {
        ModelError::bad_format(&self.path, FORMAT, detail)
    }
}

/// Little-endian primitive reads with errors that name the file.
struct Cursor<'a> {
    reader: BufReader<File>,
    path: &'a Path,
}

impl Cursor<'_> {
    fn bad(&self, detail: String) -> ModelError {
        ModelError::bad_format(self.path, FORMAT, detail)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        let mut buf = [0u8; N];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| self.bad(format!("truncated header ({e})")))?;
        Ok(buf)
    }

    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    /// u16 length including a trailing NUL, then the bytes.
    fn string(&mut self) -> Result<String, ModelError> {
        let len = usize::from(u16::from_le_bytes(self.bytes()?));
        let mut buf = vec![0u8; len];
        self.reader
            .read_exact(&mut buf)
            .map_err(|e| self.bad(format!("truncated string ({e})")))?;
        if buf.pop() != Some(0) {
            return Err(self.bad("string without its trailing NUL".into()));
        }
        String::from_utf8(buf).map_err(|_| self.bad("string is not UTF-8".into()))
    }

    fn position(&mut self) -> Result<u64, ModelError> {
        self.reader
            .stream_position()
            .map_err(ModelError::io("seek in", self.path))
    }

    fn skip(&mut self, len: u64) -> Result<(), ModelError> {
        let len = i64::try_from(len).map_err(|_| self.bad("variable too large".into()))?;
        self.reader
            .seek_relative(len)
            .map_err(ModelError::io("seek in", self.path))
    }
}
