//! Float model weights from `.safetensors` and `.gguf` files, and the choice of which tensors are Linear
//! weights to quantize.
//!
//! - [`load`] reads every float tensor of a model file as f32 ([`FloatModel`]): safetensors `F32`, `F16`, `BF16`
//!   and `F64`, or any GGUF tensor type that [`crate::gguf`] dequantizes (with llama.cpp's Q/K row permutation
//!   undone). Integer and boolean tensors (buffers such as BERT's `position_ids`) are not weights: they are
//!   listed in [`FloatModel::non_float`] and not converted. Float encodings that cannot be converted (FP8, FP4,
//!   complex, GGUF i-quants, ...) are a typed [`LowbitError::UnsupportedDtype`].
//! - [`describe`] lists a model's tensors (name, dtype, shape, bytes) from the header alone.
//! - [`classify`] / [`select_linear`] decide which tensors are Linear weights: 2-D, named `*.weight`, not an
//!   embedding or a norm ([`EXCLUDED_NAME_PATTERNS`]), with `K` (columns) a multiple of [`K_MULTIPLE`].
//!   Every other tensor is reported with a [`SkipReason`].
//!
//! Shapes are row-major, outermost first: a Linear weight is `[N, K]` (`nn.Linear.weight`, output features
//! × input features), the same for both file formats.

use crate::error::{LowbitError, Result};
use crate::gguf::{GgmlType, GgufFile};
use half::{bf16, f16};
use ndarray::ArrayView2;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Linear weights need `K` to be a multiple of this (the smallest group size of every format).
pub const K_MULTIPLE: usize = 32;

/// Case-insensitive name fragments that mark a tensor as an embedding or a norm, never a Linear weight.
/// (`norm` covers `LayerNorm`, `layer_norm`, `attn_norm`; `embd` covers GGUF's `token_embd`.)
pub const EXCLUDED_NAME_PATTERNS: [&str; 5] = ["embed", "embd", "norm", "wte", "wpe"];

/// The container format of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelFormat {
    /// A `.safetensors` file.
    Safetensors,
    /// A llama.cpp GGUF file.
    Gguf,
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Safetensors => "safetensors",
            Self::Gguf => "GGUF",
        })
    }
}

/// One tensor converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTensor {
    /// Name as in the file.
    pub name: String,
    /// Row-major shape, outermost first.
    pub shape: Vec<usize>,
    /// The dtype it was stored in (`F32`, `BF16`, `Q4_1`, ...).
    pub source_dtype: String,
    /// Bytes it occupied in the source file.
    pub source_bytes: usize,
    /// The values, row-major.
    pub data: Vec<f32>,
}

impl FloatTensor {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.data.len()
    }

    /// The tensor as an `[N, K]` matrix; an error unless it is 2-D.
    pub fn matrix(&self) -> Result<ArrayView2<'_, f32>> {
        match self.shape[..] {
            [n, k] => ArrayView2::from_shape((n, k), &self.data)
                .map_err(|e| LowbitError::shape(&self.name, format!("[{n}, {k}]"), e.to_string())),
            _ => Err(LowbitError::shape(&self.name, "a 2-D tensor", format!("shape {:?}", self.shape))),
        }
    }
}

/// All tensors of a model file as f32, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatModel {
    /// The file read.
    pub path: PathBuf,
    /// Its format.
    pub format: ModelFormat,
    /// Every float tensor, in file order (safetensors: by data offset; GGUF: directory order).
    pub tensors: Vec<FloatTensor>,
    /// Integer and boolean tensors, which are not converted.
    pub non_float: Vec<TensorDesc>,
    /// Free-form metadata: the safetensors `__metadata__`, or for GGUF the scalar metadata as text.
    pub metadata: BTreeMap<String, String>,
}

impl FloatModel {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&FloatTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Which tensors are Linear weights (see [`select_linear`]).
    pub fn linear_selection(&self) -> LinearSelection {
        select_linear(self.tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice())))
    }
}

/// Name, stored dtype, shape and byte size of one tensor, read from a header without the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDesc {
    /// Name as in the file.
    pub name: String,
    /// Stored dtype (`F32`, `Q4_1`, ...).
    pub dtype: String,
    /// Row-major shape, outermost first.
    pub shape: Vec<usize>,
    /// Bytes of data in the file (`None` for a GGUF type of unknown size).
    pub bytes: Option<usize>,
    /// Whether [`load`] can convert it to f32.
    pub loadable: bool,
}

/// A model file's table of contents (see [`describe`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDescription {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: ModelFormat,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Tensors in file order.
    pub tensors: Vec<TensorDesc>,
    /// Free-form metadata (as in [`FloatModel::metadata`]).
    pub metadata: BTreeMap<String, String>,
}

impl ModelDescription {
    /// Which tensors are Linear weights (see [`select_linear`]).
    pub fn linear_selection(&self) -> LinearSelection {
        select_linear(self.tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice())))
    }
}

/// Why a tensor is not treated as a Linear weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Not a 2-D tensor.
    NotMatrix {
        /// Its number of dimensions.
        ndim: usize,
    },
    /// The name does not end in `.weight` (a bias, a buffer, ...).
    NotWeight,
    /// The name marks an embedding or a norm.
    EmbeddingOrNorm {
        /// The pattern of [`EXCLUDED_NAME_PATTERNS`] that matched.
        pattern: &'static str,
    },
    /// `K` is not a multiple of [`K_MULTIPLE`].
    KNotMultiple {
        /// Its number of columns.
        k: usize,
    },
    /// A zero-sized dimension.
    Empty,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotMatrix { ndim } => write!(f, "{ndim}-D tensor, not a matrix"),
            Self::NotWeight => write!(f, "name does not end in '.weight'"),
            Self::EmbeddingOrNorm { pattern } => write!(f, "embedding or norm (name contains '{pattern}')"),
            Self::KNotMultiple { k } => write!(f, "K = {k} is not a multiple of {K_MULTIPLE}"),
            Self::Empty => write!(f, "empty tensor"),
        }
    }
}

/// A tensor left out of quantization, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTensor {
    /// Name as in the file.
    pub name: String,
    /// Why it is not a Linear weight.
    pub reason: SkipReason,
}

/// The result of [`select_linear`]: Linear weights to quantize and everything else with its reason, both in
/// input order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinearSelection {
    /// Names of the Linear weights.
    pub linear: Vec<String>,
    /// Every other tensor.
    pub skipped: Vec<SkippedTensor>,
}

/// Decides whether a tensor is a Linear weight to quantize: `Ok(())`, or the reason it is not.
///
/// A Linear weight is 2-D, its name ends in `.weight`, contains none of [`EXCLUDED_NAME_PATTERNS`]
/// (case-insensitive), and its `K` (last dimension) is a positive multiple of [`K_MULTIPLE`].
pub fn classify(name: &str, shape: &[usize]) -> std::result::Result<(), SkipReason> {
    if shape.len() != 2 {
        return Err(SkipReason::NotMatrix { ndim: shape.len() });
    }
    if !name.ends_with(".weight") {
        return Err(SkipReason::NotWeight);
    }
    let lower = name.to_ascii_lowercase();
    if let Some(pattern) = EXCLUDED_NAME_PATTERNS.iter().find(|p| lower.contains(*p)) {
        return Err(SkipReason::EmbeddingOrNorm { pattern });
    }
    if shape[0] == 0 || shape[1] == 0 {
        return Err(SkipReason::Empty);
    }
    if !shape[1].is_multiple_of(K_MULTIPLE) {
        return Err(SkipReason::KNotMultiple { k: shape[1] });
    }
    Ok(())
}

/// Splits `(name, shape)` pairs into Linear weights and skipped tensors (see [`classify`]).
pub fn select_linear<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [usize])>) -> LinearSelection {
    let mut sel = LinearSelection::default();
    for (name, shape) in tensors {
        match classify(name, shape) {
            Ok(()) => sel.linear.push(name.to_string()),
            Err(reason) => sel.skipped.push(SkippedTensor { name: name.to_string(), reason }),
        }
    }
    sel
}

/// Detects the format of a model file from its first bytes (`GGUF` magic, else safetensors).
pub fn detect_format(path: impl AsRef<Path>) -> Result<ModelFormat> {
    let path = path.as_ref();
    let io = |source| LowbitError::Io { path: path.to_path_buf(), source };
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut got = 0;
    while got < 4 {
        match f.read(&mut magic[got..]).map_err(io)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(if got == 4 && magic == crate::gguf::GGUF_MAGIC { ModelFormat::Gguf } else { ModelFormat::Safetensors })
}

/// Reads every tensor of a `.safetensors` or `.gguf` model file as f32 (format detected from the content).
pub fn load(path: impl AsRef<Path>) -> Result<FloatModel> {
    let path = path.as_ref();
    match detect_format(path)? {
        ModelFormat::Safetensors => load_safetensors(path),
        ModelFormat::Gguf => load_gguf(path),
    }
}

/// Reads a `.safetensors` file: `F32`, `F16`, `BF16` and `F64` tensors are converted, integer and boolean
/// ones listed in [`FloatModel::non_float`], anything else is [`LowbitError::UnsupportedDtype`].
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<FloatModel> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| LowbitError::Io { path: path.to_path_buf(), source })?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| invalid(path, format!("not a valid safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| invalid(path, e.to_string()))?;
    let mut tensors = Vec::with_capacity(st.len());
    let mut non_float = Vec::new();
    for name in header.offset_keys() {
        let view = st.tensor(&name).map_err(|e| invalid(path, e.to_string()))?;
        if is_integer(view.dtype()) {
            non_float.push(TensorDesc {
                dtype: format!("{:?}", view.dtype()),
                shape: view.shape().to_vec(),
                bytes: Some(view.data().len()),
                loadable: false,
                name,
            });
            continue;
        }
        let data = to_f32(view.dtype(), view.data()).ok_or_else(|| LowbitError::UnsupportedDtype {
            path: path.to_path_buf(),
            tensor: name.clone(),
            dtype: format!("{:?} (supported: F32, F16, BF16, F64)", view.dtype()),
        })?;
        tensors.push(FloatTensor {
            shape: view.shape().to_vec(),
            source_dtype: format!("{:?}", view.dtype()),
            source_bytes: view.data().len(),
            data,
            name,
        });
    }
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok(FloatModel { path: path.to_path_buf(), format: ModelFormat::Safetensors, tensors, non_float, metadata })
}

/// Reads a GGUF file, dequantizing every tensor to f32 ([`GgufFile::dequantize`]: Q/K rows un-permuted).
pub fn load_gguf(path: impl AsRef<Path>) -> Result<FloatModel> {
    let path = path.as_ref();
    let file = GgufFile::open(path)?;
    let mut tensors = Vec::with_capacity(file.tensors.len());
    let mut non_float = Vec::new();
    for info in &file.tensors {
        if matches!(info.ggml_type, GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64) {
            non_float.push(TensorDesc {
                name: info.name.clone(),
                dtype: info.ggml_type.to_string(),
                shape: info.shape(),
                bytes: info.n_bytes.map(|b| b as usize),
                loadable: false,
            });
            continue;
        }
        tensors.push(FloatTensor {
            name: info.name.clone(),
            shape: info.shape(),
            source_dtype: info.ggml_type.to_string(),
            source_bytes: info.n_bytes.map_or(0, |b| b as usize),
            data: file.dequantize(&info.name)?,
        });
    }
    Ok(FloatModel {
        path: path.to_path_buf(),
        format: ModelFormat::Gguf,
        tensors,
        non_float,
        metadata: gguf_metadata(&file),
    })
}

/// Lists the tensors of a model file without converting any data (safetensors: header only).
pub fn describe(path: impl AsRef<Path>) -> Result<ModelDescription> {
    let path = path.as_ref();
    let file_bytes =
        std::fs::metadata(path).map_err(|source| LowbitError::Io { path: path.to_path_buf(), source })?.len();
    match detect_format(path)? {
        ModelFormat::Gguf => {
            let file = GgufFile::open(path)?;
            let tensors = file
                .tensors
                .iter()
                .map(|t| TensorDesc {
                    name: t.name.clone(),
                    dtype: t.ggml_type.to_string(),
                    shape: t.shape(),
                    bytes: t.n_bytes.map(|b| b as usize),
                    loadable: t.ggml_type.can_dequantize(),
                })
                .collect();
            Ok(ModelDescription {
                path: path.to_path_buf(),
                format: ModelFormat::Gguf,
                file_bytes,
                tensors,
                metadata: gguf_metadata(&file),
            })
        }
        ModelFormat::Safetensors => {
            let header = read_safetensors_header(path)?;
            let tensors = header
                .offset_keys()
                .into_iter()
                .filter_map(|name| {
                    let info = header.info(&name)?;
                    Some(TensorDesc {
                        dtype: format!("{:?}", info.dtype),
                        shape: info.shape.clone(),
                        bytes: Some(info.data_offsets.1 - info.data_offsets.0),
                        loadable: matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64),
                        name,
                    })
                })
                .collect();
            let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
            Ok(ModelDescription {
                path: path.to_path_buf(),
                format: ModelFormat::Safetensors,
                file_bytes,
                tensors,
                metadata,
            })
        }
    }
}

/// Reads and validates only the header of a safetensors file (the 8-byte length, the JSON, and that the data
/// section it describes is exactly the rest of the file).
pub fn read_safetensors_header(path: &Path) -> Result<safetensors::tensor::Metadata> {
    let io = |source| LowbitError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut len_bytes = [0u8; 8];
    if file_len < 8 {
        return Err(invalid(path, format!("{file_len} bytes is too short for a safetensors header")));
    }
    f.read_exact(&mut len_bytes).map_err(io)?;
    let n = u64::from_le_bytes(len_bytes);
    // safetensors caps headers at 100 MB.
    if n > (file_len - 8).min(100_000_000) {
        return Err(invalid(path, format!("header length {n} does not fit a file of {file_len} bytes")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let meta: safetensors::tensor::Metadata = serde_json::from_slice(&header)
        .map_err(|e| invalid(path, format!("header is not valid safetensors JSON: {e}")))?;
    let expected = 8 + n + meta.data_len() as u64;
    if expected != file_len {
        return Err(invalid(path, format!("header describes {expected} bytes but the file has {file_len}")));
    }
    Ok(meta)
}

fn invalid(path: &Path, reason: impl Into<String>) -> LowbitError {
    LowbitError::InvalidModel { path: path.to_path_buf(), reason: reason.into() }
}

fn is_integer(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::I16
            | Dtype::U16
            | Dtype::I32
            | Dtype::U32
            | Dtype::I64
            | Dtype::U64
    )
}

/// Little-endian `F32` / `F16` / `BF16` / `F64` bytes to f32 (F64 rounded to nearest); `None` for other dtypes.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => {
            bytes.chunks_exact(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect()
        }
        Dtype::BF16 => {
            bytes.chunks_exact(2).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect()
        }
        _ => return None,
    })
}

/// GGUF scalar metadata as text (arrays summarised as `[type; len]`), plus the format version.
fn gguf_metadata(file: &GgufFile) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = file
        .metadata
        .iter()
        .map(|(k, v)| {
            let text = match v {
                crate::gguf::GgufValue::String(s) => s.clone(),
                crate::gguf::GgufValue::Array { element_type, values } => {
                    format!("[{element_type:?}; {}]", values.len())
                }
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    m.insert("gguf.version".into(), file.version.to_string());
    m
}
