//! A reader for GGUF model files (versions 2 and 3, little-endian), the format of llama.cpp.
//!
//! File layout (all integers little-endian):
//!
//! ```text
//! magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
//! n_kv × (key: string, value_type: u32, value)            string = u64 length + UTF-8 bytes
//! n_tensors × (name: string, n_dims: u32, ne: u64 × n_dims, ggml_type: u32, offset: u64)
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset (offset a multiple of the alignment)
//! ```
//!
//! Dimensions are listed **innermost first** (`ne[0]` is the contiguous one, `K` of a weight matrix), so a
//! 2-D tensor with `ne = [K, N]` is a row-major `[N, K]` matrix; [`GgufTensorInfo::shape`] gives the
//! outermost-first shape used everywhere else in lowbit.
//!
//! Parsing never trusts the file: every read is bounds-checked, counts are capped by the bytes that could
//! possibly hold them, nesting depth is limited, and every tensor's data range is checked to lie inside the
//! file. A truncated or corrupt file is a [`LowbitError::CorruptGguf`], never a panic or a huge allocation.
//!
//! Dequantization to f32 ([`GgufFile::dequantize`]) supports `F32`, `F16`, `BF16`, `Q8_0`, `Q4_0`, `Q4_1`,
//! `Q5_0`, `Q5_1` and the K-quants `Q2_K`, `Q3_K`, `Q4_K`, `Q5_K`, `Q6_K`, with the arithmetic of llama.cpp's
//! `dequantize_row_*` (and of `gguf-py`): every product of an f16 scale, a sub-scale and a code is exact in f32,
//! and at most one rounding follows (the subtraction of the minimum, or Q6_K's final product), so the results are
//! bit-identical to both. Other GGML types (i-quants, ternary, MXFP4, ...) are listed and sized, so files using
//! them can be inspected, but not dequantized.
//!
//! **Q/K row order.** llama.cpp's converter permutes the rows of `attn_q` / `attn_k` of Llama-architecture
//! models for its RoPE layout. [`GgufFile::dequantize`] undoes that permutation (see [`unpermute_qk`]), so
//! its output matches the original Hugging Face weights row for row; [`GgufFile::dequantize_raw`] keeps the
//! file's order.

use crate::error::{LowbitError, Result};
use half::{bf16, f16};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The four magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest number of dimensions a GGML tensor may have.
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of array values accepted (real files use 1).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Largest `general.alignment` accepted (it must also be a power of two).
pub const MAX_ALIGNMENT: u64 = 1 << 20;

/// The type tag of a metadata value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgufValueType {
    /// `u8` (tag 0).
    U8,
    /// `i8` (tag 1).
    I8,
    /// `u16` (tag 2).
    U16,
    /// `i16` (tag 3).
    I16,
    /// `u32` (tag 4).
    U32,
    /// `i32` (tag 5).
    I32,
    /// `f32` (tag 6).
    F32,
    /// `bool`, one byte 0 or 1 (tag 7).
    Bool,
    /// Length-prefixed UTF-8 string (tag 8).
    String,
    /// Typed array: element type, u64 length, elements (tag 9).
    Array,
    /// `u64` (tag 10).
    U64,
    /// `i64` (tag 11).
    I64,
    /// `f64` (tag 12).
    F64,
}

impl GgufValueType {
    /// The type for a tag, or `None` for an unknown tag.
    pub fn from_tag(tag: u32) -> Option<Self> {
        Some(match tag {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The tag stored in the file.
    pub fn tag(self) -> u32 {
        match self {
            Self::U8 => 0,
            Self::I8 => 1,
            Self::U16 => 2,
            Self::I16 => 3,
            Self::U32 => 4,
            Self::I32 => 5,
            Self::F32 => 6,
            Self::Bool => 7,
            Self::String => 8,
            Self::Array => 9,
            Self::U64 => 10,
            Self::I64 => 11,
            Self::F64 => 12,
        }
    }

    /// Smallest number of bytes one value of this type occupies (used to cap counts read from the file).
    fn min_size(self) -> usize {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// A string (invalid UTF-8 in a value is replaced by U+FFFD rather than rejected).
    String(String),
    /// An array of values, all of `element_type`.
    Array {
        /// The declared element type.
        element_type: GgufValueType,
        /// The elements.
        values: Vec<GgufValue>,
    },
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

impl GgufValue {
    /// The value's type tag.
    pub fn value_type(&self) -> GgufValueType {
        match self {
            Self::U8(_) => GgufValueType::U8,
            Self::I8(_) => GgufValueType::I8,
            Self::U16(_) => GgufValueType::U16,
            Self::I16(_) => GgufValueType::I16,
            Self::U32(_) => GgufValueType::U32,
            Self::I32(_) => GgufValueType::I32,
            Self::F32(_) => GgufValueType::F32,
            Self::Bool(_) => GgufValueType::Bool,
            Self::String(_) => GgufValueType::String,
            Self::Array { .. } => GgufValueType::Array,
            Self::U64(_) => GgufValueType::U64,
            Self::I64(_) => GgufValueType::I64,
            Self::F64(_) => GgufValueType::F64,
        }
    }

    /// An integer value of any integer type as `u64`; `None` for negatives and non-integers.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// A numeric value of any integer or float type as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The string, for a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, for an array value.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array { values, .. } => Some(values),
            _ => None,
        }
    }
}

impl fmt::Display for GgufValue {
    /// Scalars as themselves, strings quoted (cut at 80 characters), arrays as `[type; len]` plus the
    /// first few elements.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::U8(v) => write!(f, "{v}"),
            Self::I8(v) => write!(f, "{v}"),
            Self::U16(v) => write!(f, "{v}"),
            Self::I16(v) => write!(f, "{v}"),
            Self::U32(v) => write!(f, "{v}"),
            Self::I32(v) => write!(f, "{v}"),
            Self::F32(v) => write!(f, "{v}"),
            Self::Bool(v) => write!(f, "{v}"),
            Self::U64(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::F64(v) => write!(f, "{v}"),
            Self::String(s) => {
                let cut: String = s.chars().take(80).collect();
                if cut.len() < s.len() { write!(f, "{cut:?}…") } else { write!(f, "{s:?}") }
            }
            Self::Array { element_type, values } => {
                write!(f, "[{element_type:?}; {}]", values.len())?;
                if !values.is_empty() && *element_type != GgufValueType::Array {
                    let shown: Vec<String> = values.iter().take(4).map(|v| v.to_string()).collect();
                    write!(f, " {}{}", shown.join(", "), if values.len() > 4 { ", …" } else { "" })?;
                }
                Ok(())
            }
        }
    }
}

/// A GGML tensor element type (`enum ggml_type` of llama.cpp).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit codes; `w = (q − 8)·d`.
    Q4_0,
    /// Blocks of 32: f16 `d`, f16 `m`, 16 bytes of 4-bit codes; `w = q·d + m`.
    Q4_1,
    /// Blocks of 32: f16 `d`, 4 bytes of high bits, 16 bytes of low nibbles; `w = (q − 16)·d`.
    Q5_0,
    /// Blocks of 32: f16 `d`, f16 `m`, 4 bytes of high bits, 16 bytes of low nibbles; `w = q·d + m`.
    Q5_1,
    /// Blocks of 32: f16 `d`, 32 × i8; `w = q·d`.
    Q8_0,
    /// Blocks of 32: f16 `d`, f16 `s`, 32 × i8 (an activation format).
    Q8_1,
    /// K-quant, 2 bits.
    Q2_K,
    /// K-quant, 3 bits.
    Q3_K,
    /// K-quant, 4 bits.
    Q4_K,
    /// K-quant, 5 bits.
    Q5_K,
    /// K-quant, 6 bits.
    Q6_K,
    /// K-quant, 8 bits (an activation format).
    Q8_K,
    /// i-quant.
    IQ2_XXS,
    /// i-quant.
    IQ2_XS,
    /// i-quant.
    IQ3_XXS,
    /// i-quant.
    IQ1_S,
    /// i-quant (non-linear 4-bit, blocks of 32).
    IQ4_NL,
    /// i-quant.
    IQ3_S,
    /// i-quant.
    IQ2_S,
    /// i-quant.
    IQ4_XS,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// 64-bit float.
    F64,
    /// i-quant.
    IQ1_M,
    /// bfloat16.
    BF16,
    /// Ternary.
    TQ1_0,
    /// Ternary.
    TQ2_0,
    /// OCP MX FP4 (blocks of 32 with an E8M0 scale).
    MXFP4,
    /// A type id this reader does not know (its size is unknown, so its data cannot be checked or read).
    Unknown(u32),
}

impl GgmlType {
    /// The type for a `ggml_type` id.
    pub fn from_id(id: u32) -> Self {
        match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2_K,
            11 => Self::Q3_K,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            15 => Self::Q8_K,
            16 => Self::IQ2_XXS,
            17 => Self::IQ2_XS,
            18 => Self::IQ3_XXS,
            19 => Self::IQ1_S,
            20 => Self::IQ4_NL,
            21 => Self::IQ3_S,
            22 => Self::IQ2_S,
            23 => Self::IQ4_XS,
            24 => Self::I8,
            25 => Self::I16,
            26 => Self::I32,
            27 => Self::I64,
            28 => Self::F64,
            29 => Self::IQ1_M,
            30 => Self::BF16,
            34 => Self::TQ1_0,
            35 => Self::TQ2_0,
            39 => Self::MXFP4,
            other => Self::Unknown(other),
        }
    }

    /// The `ggml_type` id stored in the file.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2_K => 10,
            Self::Q3_K => 11,
            Self::Q4_K => 12,
            Self::Q5_K => 13,
            Self::Q6_K => 14,
            Self::Q8_K => 15,
            Self::IQ2_XXS => 16,
            Self::IQ2_XS => 17,
            Self::IQ3_XXS => 18,
            Self::IQ1_S => 19,
            Self::IQ4_NL => 20,
            Self::IQ3_S => 21,
            Self::IQ2_S => 22,
            Self::IQ4_XS => 23,
            Self::I8 => 24,
            Self::I16 => 25,
            Self::I32 => 26,
            Self::I64 => 27,
            Self::F64 => 28,
            Self::IQ1_M => 29,
            Self::BF16 => 30,
            Self::TQ1_0 => 34,
            Self::TQ2_0 => 35,
            Self::MXFP4 => 39,
            Self::Unknown(id) => id,
        }
    }

    /// `(elements per block, bytes per block)`, or `None` for an unknown type.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        const QK_K: usize = 256;
        Some(match self {
            Self::F32 | Self::I32 => (1, 4),
            Self::F16 | Self::BF16 | Self::I16 => (1, 2),
            Self::I8 => (1, 1),
            Self::I64 | Self::F64 => (1, 8),
            Self::Q4_0 | Self::IQ4_NL => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q8_1 => (32, 36),
            Self::MXFP4 => (32, 17),
            Self::Q2_K => (QK_K, 84),
            Self::Q3_K => (QK_K, 110),
            Self::Q4_K => (QK_K, 144),
            Self::Q5_K => (QK_K, 176),
            Self::Q6_K => (QK_K, 210),
            Self::Q8_K => (QK_K, 292),
            Self::IQ2_XXS => (QK_K, 66),
            Self::IQ2_XS => (QK_K, 74),
            Self::IQ3_XXS => (QK_K, 98),
            Self::IQ1_S => (QK_K, 50),
            Self::IQ3_S => (QK_K, 110),
            Self::IQ2_S => (QK_K, 82),
            Self::IQ4_XS => (QK_K, 136),
            Self::IQ1_M => (QK_K, 56),
            Self::TQ1_0 => (QK_K, 54),
            Self::TQ2_0 => (QK_K, 66),
            Self::Unknown(_) => return None,
        })
    }

    /// Whether [`dequantize_blocks`] can convert this type to f32.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            Self::F32
                | Self::F16
                | Self::BF16
                | Self::Q8_0
                | Self::Q4_0
                | Self::Q4_1
                | Self::Q5_0
                | Self::Q5_1
                | Self::Q2_K
                | Self::Q3_K
                | Self::Q4_K
                | Self::Q5_K
                | Self::Q6_K
        )
    }

    /// Whether the type is a block-quantized format (as opposed to a plain float or integer type).
    pub fn is_quantized(self) -> bool {
        !matches!(self, Self::F32 | Self::F16 | Self::BF16 | Self::F64 | Self::I8 | Self::I16 | Self::I32 | Self::I64)
    }
}

impl fmt::Display for GgmlType {
    /// The llama.cpp spelling (`Q4_1`, `IQ2_XXS`, `BF16`), or `type#<id>` for unknown ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(id) => write!(f, "type#{id}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Where one tensor lives in a GGUF file and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// GGML dimensions, **innermost first** (`ne[0]` is contiguous).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Byte offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Byte size of the data, `None` for an unknown type.
    pub n_bytes: Option<u64>,
}

impl GgufTensorInfo {
    /// The shape outermost first (row-major), e.g. `[N, K]` for a weight with `ne = [K, N]`.
    pub fn shape(&self) -> Vec<usize> {
        // Each dim was checked at parse time to fit in i64 and their product to fit in usize.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements (the product of the dims; 1 for zero dims).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: header, metadata, tensor directory and the raw bytes (read once into memory).
#[derive(Debug, Clone)]
pub struct GgufFile {
    /// The file it was read from (or a label for in-memory data), used in error messages.
    pub path: PathBuf,
    /// Format version, 2 or 3.
    pub version: u32,
    /// Metadata key-value pairs in file order (keys are unique).
    pub metadata: Vec<(String, GgufValue)>,
    /// The tensor directory in file order (names are unique).
    pub tensors: Vec<GgufTensorInfo>,
    /// Data alignment (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute byte offset of the data section.
    pub data_offset: u64,
    bytes: Vec<u8>,
}

impl GgufFile {
    /// Reads and parses a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LowbitError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(bytes, path)
    }

    /// Parses GGUF data held in memory; `label` names it in error messages.
    pub fn from_bytes(bytes: Vec<u8>, label: impl Into<PathBuf>) -> Result<Self> {
        let path = label.into();
        match parse(&bytes) {
            Ok(header) => Ok(Self {
                path,
                version: header.version,
                metadata: header.metadata,
                tensors: header.tensors,
                alignment: header.alignment,
                data_offset: header.data_offset,
                bytes,
            }),
            Err(ParseError::Corrupt(reason)) => Err(LowbitError::CorruptGguf { path, reason }),
            Err(ParseError::Version(found)) => Err(LowbitError::UnsupportedGgufVersion { path, found }),
        }
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `general.architecture` (e.g. `llama`), if present and a string.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(GgufValue::as_str)
    }

    /// The directory entry of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Total size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The raw bytes of a tensor (its range was bounds-checked when the file was parsed).
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<&[u8]> {
        let size = info.n_bytes.ok_or_else(|| self.unsupported(info))?;
        let start = self.data_offset.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(size));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.bytes.len() as u64 => Ok(&self.bytes[s as usize..e as usize]),
            _ => Err(LowbitError::CorruptGguf {
                path: self.path.clone(),
                reason: format!("tensor '{}' data lies outside the file", info.name),
            }),
        }
    }

    /// Dequantizes tensor `name` to f32, row-major in [`GgufTensorInfo::shape`] order, with the Q/K row
    /// permutation of Llama models undone (see [`GgufFile::qk_unpermute_heads`]).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.find(name)?;
        let data = self.dequantize_info(info)?;
        match self.qk_unpermute_heads(name)? {
            Some(n_head) => {
                let shape = info.shape();
                let (n, k) = (shape[0], shape[1]);
                unpermute_qk(&data, n, k, n_head).map_err(|reason| LowbitError::CorruptGguf {
                    path: self.path.clone(),
                    reason: format!("cannot undo the Q/K permutation of '{name}': {reason}"),
                })
            }
            None => Ok(data),
        }
    }

    /// Dequantizes tensor `name` to f32 in the file's own row order (no Q/K un-permutation).
    pub fn dequantize_raw(&self, name: &str) -> Result<Vec<f32>> {
        self.dequantize_info(self.find(name)?)
    }

    /// For a Llama-architecture file and a tensor named `blk.<i>.attn_q.weight` or `blk.<i>.attn_k.weight`,
    /// the head count whose permutation [`GgufFile::dequantize`] undoes (`llama.attention.head_count`, and
    /// `llama.attention.head_count_kv` for K, defaulting to the former; per-layer arrays are indexed by
    /// `i`). `None` for every other tensor or architecture. A missing or malformed head count for a tensor
    /// that needs one is an error.
    pub fn qk_unpermute_heads(&self, name: &str) -> Result<Option<usize>> {
        if self.architecture() != Some("llama") {
            return Ok(None);
        }
        let Some(rest) = name.strip_prefix("blk.") else { return Ok(None) };
        let Some((layer, tail)) = rest.split_once('.') else { return Ok(None) };
        let is_k = match tail {
            "attn_q.weight" => false,
            "attn_k.weight" => true,
            _ => return Ok(None),
        };
        let layer: usize = match layer.parse() {
            Ok(l) => l,
            Err(_) => return Ok(None),
        };
        let info = self.find(name)?;
        if info.dims.len() != 2 {
            return Ok(None);
        }
        let head_count = |key: &str| -> Option<Result<usize>> {
            let v = self.get(key)?;
            let scalar = match v.as_array() {
                Some(per_layer) => per_layer.get(layer).and_then(GgufValue::as_u64),
                None => v.as_u64(),
            };
            Some(match scalar.and_then(|h| usize::try_from(h).ok()).filter(|&h| h > 0) {
                Some(h) => Ok(h),
                None => Err(LowbitError::CorruptGguf {
                    path: self.path.clone(),
                    reason: format!("metadata '{key}' = {v} is not a positive head count for layer {layer}"),
                }),
            })
        };
        let q_heads = head_count("llama.attention.head_count");
        let heads = if is_k { head_count("llama.attention.head_count_kv").or(q_heads) } else { q_heads };
        match heads {
            Some(h) => h.map(Some),
            None => Err(LowbitError::CorruptGguf {
                path: self.path.clone(),
                reason: format!("'{name}' needs llama.attention.head_count to undo its Q/K row permutation"),
            }),
        }
    }

    fn find(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.tensor_info(name)
            .ok_or_else(|| LowbitError::TensorNotFound { path: self.path.clone(), name: name.to_string() })
    }

    fn unsupported(&self, info: &GgufTensorInfo) -> LowbitError {
        LowbitError::UnsupportedDtype {
            path: self.path.clone(),
            tensor: info.name.clone(),
            dtype: info.ggml_type.to_string(),
        }
    }

    fn dequantize_info(&self, info: &GgufTensorInfo) -> Result<Vec<f32>> {
        if !info.ggml_type.can_dequantize() {
            return Err(self.unsupported(info));
        }
        let bytes = self.tensor_bytes(info)?;
        let n = usize::try_from(info.n_elements()).map_err(|_| LowbitError::CorruptGguf {
            path: self.path.clone(),
            reason: format!("tensor '{}' is too large for this machine", info.name),
        })?;
        dequantize_blocks(info.ggml_type, bytes, n).map_err(|e| match e {
            DequantError::Unsupported => self.unsupported(info),
            DequantError::Size(reason) => LowbitError::CorruptGguf {
                path: self.path.clone(),
                reason: format!("tensor '{}': {reason}", info.name),
            },
        })
    }
}

/// Undoes llama.cpp's Q/K row permutation of a row-major `[n, k]` matrix with `n_head` heads.
///
/// The converter stores the rows of head `h` as `permute(w) = w.reshape(n_head, 2, n/n_head/2, k)
/// .swapaxes(1, 2)`; this inverts it: `w.reshape(n_head, n/n_head/2, 2, k).swapaxes(1, 2).reshape(n, k)`, i.e.
/// stored row `h·hd + 2i + j` becomes row `h·hd + j·hd/2 + i` (`hd = n / n_head`). Fails (with the
/// reason) when the sizes do not fit: `data.len() != n·k` or `n` not a multiple of `2·n_head`.
pub fn unpermute_qk(data: &[f32], n: usize, k: usize, n_head: usize) -> std::result::Result<Vec<f32>, String> {
    if n.checked_mul(k) != Some(data.len()) {
        return Err(format!("{} values do not form a [{n}, {k}] matrix", data.len()));
    }
    if n_head == 0 || !n.is_multiple_of(2 * n_head) {
        return Err(format!("{n} rows cannot be split into {n_head} heads of an even number of rows"));
    }
    let hd = n / n_head;
    let half = hd / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * hd + 2 * i + j;
                let dst = h * hd + j * half + i;
                out[dst * k..(dst + 1) * k].copy_from_slice(&data[src * k..(src + 1) * k]);
            }
        }
    }
    Ok(out)
}

/// Why [`dequantize_blocks`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DequantError {
    /// The type has no dequantizer here.
    Unsupported,
    /// The byte or element count does not fit the type's block layout.
    Size(String),
}

impl fmt::Display for DequantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => write!(f, "unsupported GGML type"),
            Self::Size(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for DequantError {}

fn le_f16(b: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()
}

/// Dequantizes `n_elements` values of GGML type `ty` from `bytes` (exactly the type's size for that many
/// elements) to f32, following llama.cpp's `dequantize_row_*`.
pub fn dequantize_blocks(ty: GgmlType, bytes: &[u8], n_elements: usize) -> std::result::Result<Vec<f32>, DequantError> {
    if !ty.can_dequantize() {
        return Err(DequantError::Unsupported);
    }
    let (block, block_bytes) = ty.block_layout().ok_or(DequantError::Unsupported)?;
    if !n_elements.is_multiple_of(block) {
        return Err(DequantError::Size(format!(
            "{n_elements} elements are not a whole number of {block}-element {ty} blocks"
        )));
    }
    let n_blocks = n_elements / block;
    if n_blocks.checked_mul(block_bytes) != Some(bytes.len()) {
        return Err(DequantError::Size(format!(
            "{} bytes do not hold {n_blocks} {ty} blocks of {block_bytes} bytes",
            bytes.len()
        )));
    }
    let mut out = Vec::with_capacity(n_elements);
    let blocks = bytes.chunks_exact(block_bytes);
    match ty {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(blocks.map(le_f16)),
        GgmlType::BF16 => out.extend(blocks.map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())),
        GgmlType::Q8_0 => {
            for b in blocks {
                let d = le_f16(&b[0..2]);
                out.extend(b[2..34].iter().map(|&q| (q as i8) as f32 * d));
            }
        }
        GgmlType::Q4_0 => {
            for b in blocks {
                let d = le_f16(&b[0..2]);
                let qs = &b[2..18];
                out.extend(qs.iter().map(|&q| ((q & 0x0F) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        GgmlType::Q4_1 => {
            for b in blocks {
                let (d, m) = (le_f16(&b[0..2]), le_f16(&b[2..4]));
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| (q & 0x0F) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let with_min = ty == GgmlType::Q5_1;
            let head = if with_min { 4 } else { 2 };
            for b in blocks {
                let d = le_f16(&b[0..2]);
                let m = if with_min { le_f16(&b[2..4]) } else { 0.0 };
                let qh = u32::from_le_bytes([b[head], b[head + 1], b[head + 2], b[head + 3]]);
                let qs = &b[head + 4..head + 20];
                for half_idx in 0..2 {
                    for (j, &q) in qs.iter().enumerate() {
                        let (lo, hi_bit) = if half_idx == 0 { (q & 0x0F, j) } else { (q >> 4, j + 16) };
                        let code = (lo as u32 | (((qh >> hi_bit) & 1) << 4)) as i32;
                        out.push(if with_min { code as f32 * d + m } else { (code - 16) as f32 * d });
                    }
                }
            }
        }
        GgmlType::Q2_K => blocks.for_each(|b| dequant_q2_k(b, &mut out)),
        GgmlType::Q3_K => blocks.for_each(|b| dequant_q3_k(b, &mut out)),
        GgmlType::Q4_K | GgmlType::Q5_K => blocks.for_each(|b| dequant_q45_k(b, ty == GgmlType::Q5_K, &mut out)),
        GgmlType::Q6_K => blocks.for_each(|b| dequant_q6_k(b, &mut out)),
        _ => return Err(DequantError::Unsupported),
    }
    Ok(out)
}

// K-quants: super-blocks of 256 values (llama.cpp `dequantize_row_q*_K`, gguf-py `Q*_K.dequantize_blocks`).
// In every one the products are exact in f32 (f16 scale × ≤ 8-bit sub-scale × ≤ 6-bit code), so the single
// rounding of the final subtraction (or of the last product for Q6_K) matches both references bit for bit.

/// Q2_K, 84 bytes: `scales[16]` (low nibble scale, high nibble min, per 16 values), `qs[64]` (2-bit codes),
/// f16 `d`, f16 `dmin`. Value `e`: code `(qs[32·(e/128) + e%32] >> 2·((e/32)%4)) & 3`, sub-block `e/16`,
/// `w = d·sc·q − dmin·m`.
fn dequant_q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (le_f16(&b[80..82]), le_f16(&b[82..84]));
    for e in 0..256 {
        let sc = scales[e / 16];
        let q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
        let dl = d * (sc & 0x0F) as f32;
        let ml = dmin * (sc >> 4) as f32;
        out.push(dl * q as f32 - ml);
    }
}

/// Q3_K, 110 bytes: `hmask[32]` (bit `e/32` of byte `e%32` set means no −4 offset), `qs[64]` (low 2 bits, as
/// Q2_K), `scales[12]` (sixteen 6-bit scales, biased by 32), f16 `d`. `w = d·(sc − 32)·(q_low − 4·!hbit)`.
fn dequant_q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, scales) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = le_f16(&b[108..110]);
    let scale = |j: usize| -> f32 {
        let low = (scales[j % 8] >> (4 * (j / 8))) & 0x0F;
        let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 0x03;
        ((low | (high << 4)) as i32 - 32) as f32
    };
    for e in 0..256 {
        let low = ((qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3) as i32;
        let high_set = (hmask[e % 32] >> (e / 32)) & 1 == 1;
        let q = low - if high_set { 0 } else { 4 };
        out.push(d * scale(e / 16) * q as f32);
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of Q4_K / Q5_K (llama.cpp `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K (144 bytes: f16 `d`, f16 `dmin`, `scales[12]`, `qs[128]`) and Q5_K (176 bytes: the same plus `qh[32]`
/// before `qs`). Value `e`: sub-block `e/32`; low nibble `(qs[32·(e/64) + e%32] >> 4·((e/32)%2)) & 15`; Q5_K's
/// fifth bit is bit `e/32` of `qh[e%32]`. `w = d·sc·q − dmin·m`.
fn dequant_q45_k(b: &[u8], five_bits: bool, out: &mut Vec<f32>) {
    let (d, dmin) = (le_f16(&b[0..2]), le_f16(&b[2..4]));
    let scales = &b[4..16];
    let (qh, qs) = if five_bits { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
    for e in 0..256 {
        let (sc, m) = scale_min_k4(e / 32, scales);
        let mut q = (qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 0x0F;
        if five_bits {
            q |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
        }
        out.push(d * sc as f32 * q as f32 - dmin * m as f32);
    }
}

/// Q6_K, 210 bytes: `ql[128]` (low nibbles), `qh[64]` (high 2 bits), `scales[16]` (i8, per 16 values), f16 `d`.
/// Value `e` (`h = e/128`, `r = e%128`): low `(ql[64h + r%64] >> 4·(r/64)) & 15`, high
/// `(qh[32h + r%32] >> 2·(r/32)) & 3`; `w = d·sc·(q − 32)`.
fn dequant_q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = le_f16(&b[208..210]);
    for e in 0..256 {
        let (h, r) = (e / 128, e % 128);
        let low = (ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0F;
        let high = (qh[32 * h + r % 32] >> (2 * (r / 32))) & 0x03;
        let q = (low | (high << 4)) as i32 - 32;
        out.push(d * scales[e / 16] as i8 as f32 * q as f32);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Parsing

enum ParseError {
    Corrupt(String),
    Version(u32),
}

type PResult<T> = std::result::Result<T, ParseError>;

fn corrupt<T>(reason: impl Into<String>) -> PResult<T> {
    Err(ParseError::Corrupt(reason.into()))
}

struct Header {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_offset: u64,
}

/// A bounds-checked little-endian cursor.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> PResult<&'a [u8]> {
        if n > self.remaining() {
            return corrupt(format!(
                "truncated at byte {} while reading {} (need {n} bytes, {} left)",
                self.pos,
                what(),
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> PResult<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> PResult<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> PResult<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count that must fit in what is left of the buffer given `min_size` bytes per item.
    fn count(&mut self, min_size: usize, what: &dyn Fn() -> String) -> PResult<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let cap = (self.remaining() / min_size.max(1)) as u64;
        if n > cap {
            return corrupt(format!(
                "{} = {n} at byte {at} is impossible: only {} bytes remain (at least {min_size} per item)",
                what(),
                self.remaining()
            ));
        }
        Ok(n as usize)
    }

    fn bytes_string(&mut self, what: &dyn Fn() -> String) -> PResult<&'a [u8]> {
        let len = self.count(1, &|| format!("length of {}", what()))?;
        self.take(len, what)
    }

    /// A string that must be valid UTF-8 (keys, tensor names).
    fn strict_string(&mut self, what: &dyn Fn() -> String) -> PResult<String> {
        let at = self.pos;
        let b = self.bytes_string(what)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => corrupt(format!("{} at byte {at} is not valid UTF-8", what())),
        }
    }

    fn value(&mut self, ty: GgufValueType, depth: usize, what: &dyn Fn() -> String) -> PResult<GgufValue> {
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(self.array::<1>(what)?[0]),
            GgufValueType::I8 => GgufValue::I8(self.array::<1>(what)?[0] as i8),
            GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            GgufValueType::U32 => GgufValue::U32(self.u32(what)?),
            GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            GgufValueType::U64 => GgufValue::U64(self.u64(what)?),
            GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            GgufValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(what)?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => return corrupt(format!("{} at byte {at}: bool byte {b} is neither 0 nor 1", what())),
                }
            }
            GgufValueType::String => GgufValue::String(String::from_utf8_lossy(self.bytes_string(what)?).into_owned()),
            GgufValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return corrupt(format!("{} nests arrays deeper than {MAX_ARRAY_DEPTH} levels", what()));
                }
                let at = self.pos;
                let tag = self.u32(&|| format!("element type of {}", what()))?;
                let Some(element_type) = GgufValueType::from_tag(tag) else {
                    return corrupt(format!("{} at byte {at}: unknown array element type {tag}", what()));
                };
                let len = self.count(element_type.min_size(), &|| format!("length of {}", what()))?;
                let mut values = Vec::with_capacity(len);
                for i in 0..len {
                    values.push(self.value(element_type, depth + 1, &|| format!("{}[{i}]", what()))?);
                }
                GgufValue::Array { element_type, values }
            }
        })
    }
}

fn parse(buf: &[u8]) -> PResult<Header> {
    let mut c = Cursor { buf, pos: 0 };
    let magic = c.array::<4>(&|| "the magic bytes".into())?;
    if magic != GGUF_MAGIC {
        return corrupt(format!("not a GGUF file: magic bytes {magic:02x?}, expected \"GGUF\""));
    }
    let version = c.u32(&|| "the version".into())?;
    if !(2..=3).contains(&version) {
        return Err(ParseError::Version(version));
    }
    // Minimal sizes: tensor info = name length 8 + n_dims 4 + type 4 + offset 8; KV = key length 8 + tag 4 + 1.
    let n_tensors = c.u64(&|| "the tensor count".into())?;
    let n_kv = c.count(13, &|| "the metadata count".into())?;
    let n_tensors_cap = (c.remaining() / 24) as u64;
    if n_tensors > n_tensors_cap {
        return corrupt(format!("tensor count {n_tensors} is impossible for a file of {} bytes", buf.len()));
    }

    let mut metadata = Vec::with_capacity(n_kv);
    let mut keys = HashSet::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = c.strict_string(&|| format!("the key of metadata entry {i}"))?;
        let at = c.pos;
        let tag = c.u32(&|| format!("the value type of '{key}'"))?;
        let Some(ty) = GgufValueType::from_tag(tag) else {
            return corrupt(format!("metadata '{key}' at byte {at} has unknown value type {tag}"));
        };
        let value = c.value(ty, 0, &|| format!("metadata '{key}'"))?;
        if !keys.insert(key.clone()) {
            return corrupt(format!("duplicate metadata key '{key}'"));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
            _ => return corrupt(format!("general.alignment = {v} is not a power of two in 1..={MAX_ALIGNMENT}")),
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.strict_string(&|| format!("the name of tensor {i}"))?;
        let what = |field: &str| format!("the {field} of tensor '{name}'");
        let n_dims = c.u32(&|| what("dimension count"))? as usize;
        if n_dims > MAX_DIMS {
            return corrupt(format!("tensor '{name}' has {n_dims} dimensions (at most {MAX_DIMS})"));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for d in 0..n_dims {
            dims.push(c.u64(&|| what(&format!("dimension {d}")))?);
        }
        let type_id = c.u32(&|| what("type"))?;
        let offset = c.u64(&|| what("data offset"))?;
        let ggml_type = GgmlType::from_id(type_id);

        let n_elements = dims.iter().try_fold(1u64, |acc, &d| {
            if d > i64::MAX as u64 { None } else { acc.checked_mul(d).filter(|&p| p <= i64::MAX as u64) }
        });
        let Some(n_elements) = n_elements.filter(|&p| usize::try_from(p).is_ok()) else {
            return corrupt(format!("tensor '{name}' has absurd dimensions {dims:?}"));
        };
        let n_bytes = match ggml_type.block_layout() {
            None => None,
            Some((block, block_bytes)) => {
                let ne0 = dims.first().copied().unwrap_or(1);
                if !ne0.is_multiple_of(block as u64) {
                    return corrupt(format!(
                        "tensor '{name}' of type {ggml_type}: row length {ne0} is not a multiple of the block size {block}"
                    ));
                }
                match (n_elements / block as u64).checked_mul(block_bytes as u64) {
                    Some(b) => Some(b),
                    None => return corrupt(format!("tensor '{name}' byte size overflows")),
                }
            }
        };
        if !offset.is_multiple_of(alignment) {
            return corrupt(format!(
                "tensor '{name}' data offset {offset} is not a multiple of the alignment {alignment}"
            ));
        }
        if !names.insert(name.clone()) {
            return corrupt(format!("duplicate tensor name '{name}'"));
        }
        tensors.push(GgufTensorInfo { name, dims, ggml_type, offset, n_bytes });
    }

    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let file_len = buf.len() as u64;
    for t in &tensors {
        let Some(size) = t.n_bytes else { continue };
        let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(size));
        match end {
            Some(e) if e <= file_len => {}
            _ => {
                return corrupt(format!(
                    "tensor '{}' ({size} bytes at data offset {}) extends past the end of the file ({file_len} bytes, data section at {data_offset}): truncated file?",
                    t.name, t.offset
                ));
            }
        }
    }
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}
