//! The lowbit checkpoint: quantized weights (and optional float tensors) in one safetensors file,
//! conventionally named `*.lowbit.safetensors`.
//!
//! # Layout (format version 1)
//!
//! For each quantized layer `L` (e.g. `encoder.layer.0.attention.self.query.weight`) the fields of its
//! [`QuantizedWeight`] are stored as tensors named `L.<field>` (little-endian, as safetensors requires):
//!
//! | format | tensor | dtype | shape |
//! |---|---|---|---|
//! | INT affine | `L.codes` | U32 | `[N, ceil(K·b/32)]` |
//! | | `L.scales` | F16 | `[N, n_groups]` |
//! | | `L.zeros` | U8 | `[N, n_groups]`, **asymmetric only** (symmetric zeros are all `2^(b−1)`) |
//! | | `L.g_idx` | U32 | `[K]`, act-order only |
//! | bipolar-INT | `L.planes` | U32 | `[b, N, ceil(K/32)]` |
//! | | `L.scales` | F32 | `[N, n_groups]` |
//! | | `L.offsets` | F32 | `[N, n_groups]`, optional |
//! | BitMoD mixed | `L.codes` | U32 | `[N, ceil(K·b/32)]` |
//! | | `L.group_scales` | U8 | `[N, K/G]` |
//! | | `L.selectors` | U8 | `[N, ceil(K/G/4)]` |
//! | | `L.channel_scales` | F16 | `[N]` |
//! | LUT / NF4 | `L.lut` | F32 | `[2^b]` |
//! | | `L.codes` | U32 | `[N, ceil(K·b/32)]` |
//! | | `L.scales` | F16 | `[N, n_groups]` |
//!
//! Float *passthrough* tensors (parameters that are not quantized: norms, embeddings, biases) keep their own
//! names and are stored as F32 or F16, so one checkpoint can hold a whole model.
//!
//! The safetensors header's `__metadata__` holds:
//! - `lowbit.format_version`: `"1"` ([`FORMAT_VERSION`]);
//! - `lowbit.layers`: a JSON array, one object per layer in order: `name`, `format` (`int`, `bipolar`,
//!   `mixed`, `lut`), `scheme` (e.g. `w4-int-g128`), `n`, `k`, `bits`, `granularity` (`g128` or `pc`),
//!   `symmetric`, and `tensors`: field → `{name, dtype, shape, crc32}` with the **CRC-32 of the tensor's bytes**;
//! - `lowbit.passthrough`: a JSON array of `{name, dtype, shape, crc32}`;
//! - `lowbit.source`: a JSON object of free-form strings (source model, tool version, ...);
//! - `lowbit.metadata_crc32`: the CRC-32 of every other `lowbit.*` entry (see [`metadata_crc32`]), so a
//!   damaged header is detected too.
//!
//! [`load`] trusts nothing: version, header checksum, every field present with the dtype and shape implied by
//! `(format, n, k, bits, granularity)`, no stray tensors, every tensor checksum, the scheme string, and
//! finally [`QuantizedWeight::validate`]. Anything wrong is a typed error ([`LowbitError::CorruptCheckpoint`],
//! [`LowbitError::ChecksumMismatch`], [`LowbitError::UnsupportedCheckpointVersion`]), never a panic.
//! [`save`] writes a temporary file next to the target and renames it over the target, so a failed save never
//! damages an existing checkpoint.

use crate::affine::IntAffineWeight;
use crate::bipolar::BipolarMatrix;
use crate::bitmod::MixedWeight;
use crate::bits::words_per_row;
use crate::error::{LowbitError, Result};
use crate::granularity::{Granularity, SUPPORTED_GROUPS};
use crate::lut::LutWeight;
use crate::weight::QuantizedWeight;
use half::f16;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The format version this build writes.
pub const FORMAT_VERSION: &str = "1";
/// The format versions this build reads.
pub const SUPPORTED_VERSIONS: [&str; 1] = ["1"];
/// Metadata key of the format version.
pub const KEY_VERSION: &str = "lowbit.format_version";
/// Metadata key of the layer table (JSON).
pub const KEY_LAYERS: &str = "lowbit.layers";
/// Metadata key of the passthrough table (JSON).
pub const KEY_PASSTHROUGH: &str = "lowbit.passthrough";
/// Metadata key of the free-form source description (JSON object of strings).
pub const KEY_SOURCE: &str = "lowbit.source";
/// Metadata key of the CRC-32 over the other `lowbit.*` entries.
pub const KEY_METADATA_CRC: &str = "lowbit.metadata_crc32";

/// One quantized layer: its name (usually the original tensor name, e.g. `model.layers.0.mlp.up_proj.weight`)
/// and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedLayer {
    /// Layer name; its tensors are stored as `<name>.<field>`.
    pub name: String,
    /// The quantized weight.
    pub weight: QuantizedWeight,
}

/// Values of a passthrough tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum PassthroughData {
    /// Stored as F32.
    F32(Vec<f32>),
    /// Stored as F16.
    F16(Vec<f16>),
}

impl PassthroughData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The safetensors dtype it is stored as.
    pub fn dtype(&self) -> Dtype {
        match self {
            Self::F32(_) => Dtype::F32,
            Self::F16(_) => Dtype::F16,
        }
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Self::F32(v) => v.clone(),
            Self::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Self::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::F16(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        }
    }
}

/// An unquantized float tensor carried along in the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct PassthroughTensor {
    /// Tensor name.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The values (their count must equal the product of `shape`).
    pub data: PassthroughData,
}

impl PassthroughTensor {
    /// An F32 passthrough tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { name: name.into(), shape, data: PassthroughData::F32(data) }
    }

    /// An F16 passthrough tensor, rounding `data` to f16 (round-to-nearest-even).
    pub fn f16_from_f32(name: impl Into<String>, shape: Vec<usize>, data: &[f32]) -> Self {
        Self { name: name.into(), shape, data: PassthroughData::F16(data.iter().map(|&x| f16::from_f32(x)).collect()) }
    }
}

/// A lowbit checkpoint in memory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoint {
    /// Quantized layers, in order.
    pub layers: Vec<QuantizedLayer>,
    /// Float tensors stored as they are, in order.
    pub passthrough: Vec<PassthroughTensor>,
    /// Free-form description of where the checkpoint came from (model path, tool version, ...).
    pub source: BTreeMap<String, String>,
}

impl Checkpoint {
    /// An empty checkpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// The quantized weight of layer `name`.
    pub fn layer(&self, name: &str) -> Option<&QuantizedWeight> {
        self.layers.iter().find(|l| l.name == name).map(|l| &l.weight)
    }

    /// The passthrough tensor `name`.
    pub fn passthrough_tensor(&self, name: &str) -> Option<&PassthroughTensor> {
        self.passthrough.iter().find(|t| t.name == name)
    }

    /// Bytes of quantized storage (codes and metadata) over all layers.
    pub fn quantized_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.weight.storage_bytes()).sum()
    }

    /// Checks the checkpoint can be saved: every weight valid, non-empty unique names, passthrough element
    /// counts equal to their shapes, and no two stored tensors with the same name.
    pub fn validate(&self) -> Result<()> {
        let mut stored = HashSet::new();
        let mut layer_names = HashSet::new();
        for l in &self.layers {
            if l.name.is_empty() || !layer_names.insert(l.name.as_str()) {
                return Err(LowbitError::invalid(
                    "checkpoint layers",
                    format!("empty or duplicate layer name '{}'", l.name),
                ));
            }
            l.weight.validate().map_err(|e| LowbitError::invalid(format!("layer '{}'", l.name), e.to_string()))?;
            for (field, _) in weight_tensors(&l.weight) {
                let t = format!("{}.{field}", l.name);
                if !stored.insert(t.clone()) {
                    return Err(LowbitError::invalid("checkpoint tensors", format!("tensor name '{t}' is used twice")));
                }
            }
        }
        for t in &self.passthrough {
            if t.name.is_empty() || !stored.insert(t.name.clone()) {
                return Err(LowbitError::invalid(
                    "checkpoint passthrough",
                    format!("passthrough tensor name '{}' is empty or collides with another tensor", t.name),
                ));
            }
            let count = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if count != Some(t.data.len()) {
                return Err(LowbitError::shape(
                    format!("passthrough tensor '{}'", t.name),
                    format!("{:?} elements for shape {:?}", count, t.shape),
                    format!("{} elements", t.data.len()),
                ));
            }
        }
        Ok(())
    }

    /// Serializes to the bytes of a checkpoint file (after [`Checkpoint::validate`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut tensors: Vec<(String, RawTensor)> = Vec::new();
        let mut layer_entries = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let mut entry_tensors = BTreeMap::new();
            for (field, raw) in weight_tensors(&l.weight) {
                let name = format!("{}.{field}", l.name);
                entry_tensors.insert(field.to_string(), raw.entry(&name));
                tensors.push((name, raw));
            }
            let (n, k) = l.weight.shape();
            let scheme = l.weight.scheme();
            layer_entries.push(LayerEntry {
                name: l.name.clone(),
                format: format_name(&l.weight).to_string(),
                scheme: scheme.to_string(),
                n,
                k,
                bits: scheme.bits,
                granularity: scheme.granularity.suffix(),
                symmetric: is_symmetric(&l.weight),
                tensors: entry_tensors,
            });
        }
        let mut pass_entries = Vec::with_capacity(self.passthrough.len());
        for t in &self.passthrough {
            let raw = RawTensor { dtype: t.data.dtype(), shape: t.shape.clone(), bytes: t.data.to_le_bytes() };
            pass_entries.push(raw.entry(&t.name));
            tensors.push((t.name.clone(), raw));
        }
        let mut meta = HashMap::new();
        meta.insert(KEY_VERSION.to_string(), FORMAT_VERSION.to_string());
        meta.insert(KEY_LAYERS.to_string(), to_json(&layer_entries)?);
        meta.insert(KEY_PASSTHROUGH.to_string(), to_json(&pass_entries)?);
        meta.insert(KEY_SOURCE.to_string(), to_json(&self.source)?);
        meta.insert(KEY_METADATA_CRC.to_string(), metadata_crc32(&meta).to_string());
        serialize_safetensors(tensors, &meta)
    }

    /// Parses and fully validates checkpoint bytes; `path` names the source in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |reason: String| LowbitError::CorruptCheckpoint { path: path.to_path_buf(), reason };
        let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(format!("not a valid safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
        let infos: HashMap<String, (Dtype, Vec<usize>)> =
            header.tensors().into_iter().map(|(name, info)| (name, (info.dtype, info.shape.clone()))).collect();
        let parsed = parse_header(path, header.metadata().as_ref(), &infos)?;

        // Every tensor's bytes against its recorded CRC-32.
        let data = |name: &str, crc: u32| -> Result<&[u8]> {
            let view = st.tensor(name).map_err(|e| corrupt(format!("tensor '{name}': {e}")))?;
            let found = crc32fast::hash(view.data());
            if found != crc {
                return Err(LowbitError::ChecksumMismatch {
                    path: path.to_path_buf(),
                    what: format!("tensor '{name}'"),
                    expected: crc,
                    found,
                });
            }
            Ok(view.data())
        };

        let mut layers = Vec::with_capacity(parsed.layers.len());
        for entry in &parsed.layers {
            let mut fields: HashMap<&str, &[u8]> = HashMap::new();
            for (field, t) in &entry.tensors {
                fields.insert(field.as_str(), data(&t.name, t.crc32)?);
            }
            let weight =
                build_weight(entry, &fields).map_err(|reason| corrupt(format!("layer '{}': {reason}", entry.name)))?;
            weight.validate().map_err(|e| corrupt(format!("layer '{}' is invalid: {e}", entry.name)))?;
            check_code_padding(&weight).map_err(|reason| corrupt(format!("layer '{}': {reason}", entry.name)))?;
            if weight.scheme().to_string() != entry.scheme {
                return Err(corrupt(format!(
                    "layer '{}' is recorded as scheme '{}' but its tensors describe '{}'",
                    entry.name,
                    entry.scheme,
                    weight.scheme()
                )));
            }
            layers.push(QuantizedLayer { name: entry.name.clone(), weight });
        }
        let mut passthrough = Vec::with_capacity(parsed.passthrough.len());
        for t in &parsed.passthrough {
            let bytes = data(&t.name, t.crc32)?;
            let values = match t.dtype.as_str() {
                "F32" => PassthroughData::F32(
                    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                ),
                _ => PassthroughData::F16(
                    bytes.chunks_exact(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]]))).collect(),
                ),
            };
            passthrough.push(PassthroughTensor { name: t.name.clone(), shape: t.shape.clone(), data: values });
        }
        Ok(Self { layers, passthrough, source: parsed.source })
    }
}

/// Writes `checkpoint` to `path` atomically: the bytes go to a temporary file in the same directory, which is
/// flushed to disk and then renamed over `path`. On any failure the temporary file is removed and an existing
/// file at `path` is left untouched.
pub fn save(path: impl AsRef<Path>, checkpoint: &Checkpoint) -> Result<()> {
    save_impl(path.as_ref(), checkpoint, None)
}

/// Test hook: like [`save`], but the write of the temporary file fails with an I/O error after `fail_after`
/// bytes (to check that a failed save leaves an existing checkpoint intact).
#[doc(hidden)]
pub fn save_with_injected_write_failure(
    path: impl AsRef<Path>,
    checkpoint: &Checkpoint,
    fail_after: usize,
) -> Result<()> {
    save_impl(path.as_ref(), checkpoint, Some(fail_after))
}

fn save_impl(path: &Path, checkpoint: &Checkpoint, fail_after: Option<usize>) -> Result<()> {
    let bytes = checkpoint.to_bytes()?;
    let file_name = path.file_name().ok_or_else(|| LowbitError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{}.tmp-{}-{nanos}", file_name.to_string_lossy(), std::process::id()));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| LowbitError::Io { path: p, source }
    };
    let result = (|| {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(io(&tmp))?;
        let mut w = FailingWriter { inner: file, remaining: fail_after };
        w.write_all(&bytes).map_err(io(&tmp))?;
        w.inner.sync_all().map_err(io(&tmp))?;
        drop(w);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        // Make the rename itself durable where the platform allows opening a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads and fully validates a checkpoint file (see the module docs for what is checked).
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| LowbitError::Io { path: path.to_path_buf(), source })?;
    Checkpoint::from_bytes(&bytes, path)
}

/// Whether `path` looks like a lowbit checkpoint: a safetensors file whose header has
/// `lowbit.format_version` (only the header is read; nothing is validated beyond that).
pub fn is_checkpoint(path: impl AsRef<Path>) -> bool {
    crate::model::read_safetensors_header(path.as_ref())
        .map(|h| h.metadata().as_ref().is_some_and(|m| m.contains_key(KEY_VERSION)))
        .unwrap_or(false)
}

/// Describes a checkpoint from its header alone: version, source, layers and passthrough tensors with dtypes,
/// shapes, sizes and recorded checksums. Validates the header (version, header checksum, fields, dtypes and
/// shapes) but does **not** read tensor data, so tensor checksums are not verified: use [`load`] for that.
pub fn inspect(path: impl AsRef<Path>) -> Result<CheckpointSummary> {
    let path = path.as_ref();
    let header = crate::model::read_safetensors_header(path).map_err(|e| match e {
        LowbitError::InvalidModel { path, reason } => LowbitError::CorruptCheckpoint { path, reason },
        other => other,
    })?;
    let file_bytes =
        std::fs::metadata(path).map_err(|source| LowbitError::Io { path: path.to_path_buf(), source })?.len();
    let infos: HashMap<String, (Dtype, Vec<usize>)> =
        header.tensors().into_iter().map(|(name, info)| (name, (info.dtype, info.shape.clone()))).collect();
    let parsed = parse_header(path, header.metadata().as_ref(), &infos)?;
    let layers = parsed
        .layers
        .into_iter()
        .map(|e| {
            // Fields in the format's own order (codes first, then its metadata), not alphabetically.
            let order: Vec<&str> =
                field_specs(&e).map(|specs| specs.iter().map(|f| f.field).collect()).unwrap_or_default();
            let mut tensors: Vec<TensorSummary> =
                e.tensors.iter().map(|(field, t)| TensorSummary { field: field.clone(), ..t.summary() }).collect();
            tensors.sort_by_key(|t| order.iter().position(|f| *f == t.field).unwrap_or(usize::MAX));
            LayerSummary {
                bytes: tensors.iter().map(|t| t.bytes).sum(),
                name: e.name,
                format: e.format,
                scheme: e.scheme,
                n: e.n,
                k: e.k,
                bits: e.bits,
                granularity: e.granularity,
                symmetric: e.symmetric,
                tensors,
            }
        })
        .collect();
    let passthrough = parsed.passthrough.iter().map(TensorEntry::summary).collect();
    Ok(CheckpointSummary {
        path: path.to_path_buf(),
        version: parsed.version,
        source: parsed.source,
        file_bytes,
        layers,
        passthrough,
    })
}

/// A checkpoint's table of contents (see [`inspect`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointSummary {
    /// The file.
    pub path: PathBuf,
    /// `lowbit.format_version`.
    pub version: String,
    /// `lowbit.source`.
    pub source: BTreeMap<String, String>,
    /// File size in bytes.
    pub file_bytes: u64,
    /// Quantized layers in order.
    pub layers: Vec<LayerSummary>,
    /// Passthrough tensors in order (`field` is empty).
    pub passthrough: Vec<TensorSummary>,
}

impl CheckpointSummary {
    /// Bytes of all quantized layers' tensors.
    pub fn quantized_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.bytes).sum()
    }

    /// Bytes of all passthrough tensors.
    pub fn passthrough_bytes(&self) -> usize {
        self.passthrough.iter().map(|t| t.bytes).sum()
    }

    /// Number of quantized weights (`Σ N·K`).
    pub fn quantized_weights(&self) -> usize {
        self.layers.iter().map(|l| l.n * l.k).sum()
    }
}

/// One layer of a [`CheckpointSummary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSummary {
    /// Layer name.
    pub name: String,
    /// `int`, `bipolar`, `mixed` or `lut`.
    pub format: String,
    /// Scheme string, e.g. `w4-int-g128`.
    pub scheme: String,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Bits per code.
    pub bits: u32,
    /// `g32`, `g64`, `g128` or `pc`.
    pub granularity: String,
    /// Symmetric quantizer (no zero points / offsets).
    pub symmetric: bool,
    /// The stored tensors.
    pub tensors: Vec<TensorSummary>,
    /// Total bytes of the stored tensors.
    pub bytes: usize,
}

/// One stored tensor of a [`CheckpointSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSummary {
    /// The weight field it holds (`codes`, `scales`, ...), empty for passthrough tensors.
    pub field: String,
    /// Tensor name in the file.
    pub name: String,
    /// Safetensors dtype (`U32`, `F16`, ...).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Bytes of data.
    pub bytes: usize,
    /// Recorded CRC-32 of the data.
    pub crc32: u32,
}

/// The CRC-32 that `lowbit.metadata_crc32` records: over every `lowbit.*` metadata entry except itself, in
/// sorted key order, each as `key`, a NUL byte, `value`, a NUL byte.
pub fn metadata_crc32(metadata: &HashMap<String, String>) -> u32 {
    let mut keys: Vec<&String> =
        metadata.keys().filter(|k| k.starts_with("lowbit.") && *k != KEY_METADATA_CRC).collect();
    keys.sort();
    let mut h = crc32fast::Hasher::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(metadata[k].as_bytes());
        h.update(&[0]);
    }
    h.finalize()
}

// ---------------------------------------------------------------------------------------------------------
// Internals

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| LowbitError::invalid("checkpoint metadata", e.to_string()))
}

/// One tensor as it is written.
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl RawTensor {
    fn u32(shape: Vec<usize>, v: &[u32]) -> Self {
        Self { dtype: Dtype::U32, shape, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    }
    fn f32(shape: Vec<usize>, v: &[f32]) -> Self {
        Self { dtype: Dtype::F32, shape, bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect() }
    }
    fn f16(shape: Vec<usize>, v: &[f16]) -> Self {
        Self { dtype: Dtype::F16, shape, bytes: v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect() }
    }
    fn u8(shape: Vec<usize>, v: &[u8]) -> Self {
        Self { dtype: Dtype::U8, shape, bytes: v.to_vec() }
    }
    fn entry(&self, name: &str) -> TensorEntry {
        TensorEntry {
            name: name.to_string(),
            dtype: format!("{:?}", self.dtype),
            shape: self.shape.clone(),
            crc32: crc32fast::hash(&self.bytes),
        }
    }
}

/// Writes a safetensors file deterministically: metadata keys sorted, tensors ordered by decreasing element
/// size then name (so every tensor is aligned to its element size, as `safetensors::serialize` does), header
/// padded with spaces to a multiple of 8 bytes. (`safetensors::serialize` emits `__metadata__` in hash-map order,
/// so the same checkpoint would give different bytes on every save.)
fn serialize_safetensors(mut tensors: Vec<(String, RawTensor)>, meta: &HashMap<String, String>) -> Result<Vec<u8>> {
    tensors.sort_by(|(an, a), (bn, b)| b.dtype.bitsize().cmp(&a.dtype.bitsize()).then_with(|| an.cmp(bn)));
    let mut header = serde_json::Map::new();
    let sorted_meta: BTreeMap<&String, &String> = meta.iter().collect();
    header.insert("__metadata__".into(), serde_json::json!(sorted_meta));
    let mut offset = 0usize;
    for (name, t) in &tensors {
        let end = offset + t.bytes.len();
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": format!("{:?}", t.dtype), "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(header))
        .map_err(|e| LowbitError::invalid("checkpoint header", e.to_string()))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header);
    for (_, t) in &tensors {
        out.extend(&t.bytes);
    }
    Ok(out)
}

/// A writer that fails after a set number of bytes (`None`: never), for [`save_with_injected_write_failure`].
struct FailingWriter {
    inner: std::fs::File,
    remaining: Option<usize>,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.remaining {
            None => self.inner.write(buf),
            Some(0) => Err(std::io::Error::other("injected write failure")),
            Some(r) => {
                let n = self.inner.write(&buf[..buf.len().min(r)])?;
                self.remaining = Some(r - n);
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A layer's record in `lowbit.layers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerEntry {
    name: String,
    format: String,
    scheme: String,
    n: usize,
    k: usize,
    bits: u32,
    granularity: String,
    symmetric: bool,
    tensors: BTreeMap<String, TensorEntry>,
}

/// A tensor's record in `lowbit.layers` / `lowbit.passthrough`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorEntry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
    crc32: u32,
}

impl TensorEntry {
    fn summary(&self) -> TensorSummary {
        let elem = match self.dtype.as_str() {
            "U32" | "F32" => 4,
            "F16" => 2,
            _ => 1,
        };
        TensorSummary {
            field: String::new(),
            name: self.name.clone(),
            dtype: self.dtype.clone(),
            shape: self.shape.clone(),
            bytes: self.shape.iter().product::<usize>() * elem,
            crc32: self.crc32,
        }
    }
}

fn format_name(w: &QuantizedWeight) -> &'static str {
    match w {
        QuantizedWeight::Int(_) => "int",
        QuantizedWeight::Bipolar(_) => "bipolar",
        QuantizedWeight::Mixed(_) => "mixed",
        QuantizedWeight::Lut(_) => "lut",
    }
}

fn is_symmetric(w: &QuantizedWeight) -> bool {
    match w {
        QuantizedWeight::Int(w) => w.symmetric,
        QuantizedWeight::Bipolar(w) => w.offsets.is_none(),
        QuantizedWeight::Mixed(_) | QuantizedWeight::Lut(_) => true,
    }
}

/// The tensors a weight is stored as, `(field, tensor)`, in a fixed order.
fn weight_tensors(w: &QuantizedWeight) -> Vec<(&'static str, RawTensor)> {
    let (n, k) = w.shape();
    match w {
        QuantizedWeight::Int(w) => {
            let ng = w.granularity.n_groups(k);
            let mut v = vec![
                ("codes", RawTensor::u32(vec![n, words_per_row(k, w.bits)], &w.codes)),
                ("scales", RawTensor::f16(vec![n, ng], &w.scales)),
            ];
            if !w.symmetric {
                v.push(("zeros", RawTensor::u8(vec![n, ng], &w.zeros)));
            }
            if let Some(g) = &w.g_idx {
                v.push(("g_idx", RawTensor::u32(vec![k], g)));
            }
            v
        }
        QuantizedWeight::Bipolar(w) => {
            let ng = w.granularity.n_groups(k);
            let mut v = vec![
                ("planes", RawTensor::u32(vec![w.bits as usize, n, k.div_ceil(32)], &w.planes)),
                ("scales", RawTensor::f32(vec![n, ng], &w.scales)),
            ];
            if let Some(o) = &w.offsets {
                v.push(("offsets", RawTensor::f32(vec![n, ng], o)));
            }
            v
        }
        QuantizedWeight::Mixed(w) => {
            let ng = w.n_groups();
            vec![
                ("codes", RawTensor::u32(vec![n, words_per_row(k, w.bits)], &w.codes)),
                ("group_scales", RawTensor::u8(vec![n, ng], &w.group_scales)),
                ("selectors", RawTensor::u8(vec![n, ng.div_ceil(4)], &w.selectors)),
                ("channel_scales", RawTensor::f16(vec![n], &w.channel_scales)),
            ]
        }
        QuantizedWeight::Lut(w) => {
            let ng = w.granularity.n_groups(k);
            vec![
                ("lut", RawTensor::f32(vec![w.lut.len()], &w.lut)),
                ("codes", RawTensor::u32(vec![n, words_per_row(k, w.bits)], &w.codes)),
                ("scales", RawTensor::f16(vec![n, ng], &w.scales)),
            ]
        }
    }
}

/// What one field must look like.
struct FieldSpec {
    field: &'static str,
    dtype: Dtype,
    shape: Vec<usize>,
    required: bool,
}

fn spec(field: &'static str, dtype: Dtype, shape: Vec<usize>, required: bool) -> FieldSpec {
    FieldSpec { field, dtype, shape, required }
}

/// Parses `g32` / `g64` / `g128` / `pc`.
fn parse_granularity(s: &str) -> Option<Granularity> {
    if s == "pc" {
        return Some(Granularity::PerChannel);
    }
    let g: usize = s.strip_prefix('g')?.parse().ok()?;
    SUPPORTED_GROUPS.contains(&g).then_some(Granularity::Group(g))
}

/// The fields a layer record implies, with dtypes and shapes; `Err(reason)` for an impossible record.
fn field_specs(e: &LayerEntry) -> std::result::Result<Vec<FieldSpec>, String> {
    let gran = parse_granularity(&e.granularity)
        .ok_or_else(|| format!("granularity '{}' is not g32, g64, g128 or pc", e.granularity))?;
    if e.n == 0 || e.k == 0 {
        return Err(format!("empty shape [{}, {}]", e.n, e.k));
    }
    if !(1..=8).contains(&e.bits) {
        return Err(format!("{} bits is outside 1..=8", e.bits));
    }
    if let Granularity::Group(g) = gran
        && !e.k.is_multiple_of(g)
    {
        return Err(format!("K = {} is not a multiple of the group size {g}", e.k));
    }
    let (n, k, bits) = (e.n, e.k, e.bits);
    let ng = gran.n_groups(k);
    let wpr = k.checked_mul(bits as usize).ok_or("K is absurdly large")?.div_ceil(32);
    Ok(match e.format.as_str() {
        "int" => vec![
            spec("codes", Dtype::U32, vec![n, wpr], true),
            spec("scales", Dtype::F16, vec![n, ng], true),
            // Symmetric zeros are implied (2^(b-1)); asymmetric ones are required.
            spec("zeros", Dtype::U8, vec![n, ng], !e.symmetric),
            spec("g_idx", Dtype::U32, vec![k], false),
        ],
        "bipolar" => vec![
            spec("planes", Dtype::U32, vec![bits as usize, n, k.div_ceil(32)], true),
            spec("scales", Dtype::F32, vec![n, ng], true),
            spec("offsets", Dtype::F32, vec![n, ng], !e.symmetric),
        ],
        "mixed" => {
            if gran == Granularity::PerChannel {
                return Err("mixed needs a group size".into());
            }
            vec![
                spec("codes", Dtype::U32, vec![n, wpr], true),
                spec("group_scales", Dtype::U8, vec![n, ng], true),
                spec("selectors", Dtype::U8, vec![n, ng.div_ceil(4)], true),
                spec("channel_scales", Dtype::F16, vec![n], true),
            ]
        }
        "lut" => vec![
            spec("lut", Dtype::F32, vec![1usize << bits], true),
            spec("codes", Dtype::U32, vec![n, wpr], true),
            spec("scales", Dtype::F16, vec![n, ng], true),
        ],
        other => return Err(format!("unknown format '{other}' (int, bipolar, mixed, lut)")),
    })
}

/// The validated contents of a checkpoint header.
struct ParsedHeader {
    version: String,
    layers: Vec<LayerEntry>,
    passthrough: Vec<TensorEntry>,
    source: BTreeMap<String, String>,
}

/// Checks the `lowbit.*` metadata against the safetensors tensor directory `infos` (name → dtype, shape).
fn parse_header(
    path: &Path,
    metadata: Option<&HashMap<String, String>>,
    infos: &HashMap<String, (Dtype, Vec<usize>)>,
) -> Result<ParsedHeader> {
    let corrupt = |reason: String| LowbitError::CorruptCheckpoint { path: path.to_path_buf(), reason };
    let not_lowbit = || corrupt(format!("not a lowbit checkpoint: the safetensors header has no '{KEY_VERSION}'"));
    let meta = metadata.ok_or_else(not_lowbit)?;
    let version = meta.get(KEY_VERSION).ok_or_else(not_lowbit)?;
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(LowbitError::UnsupportedCheckpointVersion {
            path: path.to_path_buf(),
            found: version.clone(),
            supported: SUPPORTED_VERSIONS.join(", "),
        });
    }
    let recorded = meta.get(KEY_METADATA_CRC).ok_or_else(|| corrupt(format!("header has no '{KEY_METADATA_CRC}'")))?;
    let recorded: u32 =
        recorded.parse().map_err(|_| corrupt(format!("'{KEY_METADATA_CRC}' = '{recorded}' is not a number")))?;
    let found = metadata_crc32(meta);
    if found != recorded {
        return Err(LowbitError::ChecksumMismatch {
            path: path.to_path_buf(),
            what: "header metadata".into(),
            expected: recorded,
            found,
        });
    }
    if let Some(k) = meta.keys().find(|k| {
        k.starts_with("lowbit.")
            && ![KEY_VERSION, KEY_LAYERS, KEY_PASSTHROUGH, KEY_SOURCE, KEY_METADATA_CRC].contains(&k.as_str())
    }) {
        return Err(corrupt(format!("unknown metadata key '{k}' for format version {version}")));
    }
    let get = |key: &str| meta.get(key).ok_or_else(|| corrupt(format!("header has no '{key}'")));
    let layers: Vec<LayerEntry> =
        serde_json::from_str(get(KEY_LAYERS)?).map_err(|e| corrupt(format!("'{KEY_LAYERS}' is malformed: {e}")))?;
    let passthrough: Vec<TensorEntry> = serde_json::from_str(get(KEY_PASSTHROUGH)?)
        .map_err(|e| corrupt(format!("'{KEY_PASSTHROUGH}' is malformed: {e}")))?;
    let source: BTreeMap<String, String> =
        serde_json::from_str(get(KEY_SOURCE)?).map_err(|e| corrupt(format!("'{KEY_SOURCE}' is malformed: {e}")))?;

    let mut used: HashSet<String> = HashSet::new();
    let mut check_tensor = |t: &TensorEntry, dtype: Dtype, shape: &[usize], what: &str| -> Result<()> {
        let Some((file_dtype, file_shape)) = infos.get(&t.name) else {
            return Err(corrupt(format!("{what}: tensor '{}' is missing from the file", t.name)));
        };
        if !used.insert(t.name.clone()) {
            return Err(corrupt(format!("tensor '{}' is referenced twice", t.name)));
        }
        if *file_dtype != dtype || t.dtype != format!("{dtype:?}") {
            return Err(corrupt(format!(
                "{what}: tensor '{}' has dtype {file_dtype:?} (recorded {}), expected {dtype:?}",
                t.name, t.dtype
            )));
        }
        if file_shape.as_slice() != shape || t.shape != shape {
            let count = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
            return Err(corrupt(format!(
                "{what}: tensor '{}' has shape {file_shape:?} ({} elements, recorded {:?}), expected {shape:?} ({} elements)",
                t.name,
                count(file_shape),
                t.shape,
                count(shape)
            )));
        }
        Ok(())
    };

    let mut names = HashSet::new();
    for e in &layers {
        if !names.insert(e.name.as_str()) {
            return Err(corrupt(format!("layer '{}' appears twice", e.name)));
        }
        let specs = field_specs(e).map_err(|r| corrupt(format!("layer '{}': {r}", e.name)))?;
        for f in &specs {
            match e.tensors.get(f.field) {
                Some(t) => check_tensor(t, f.dtype, &f.shape, &format!("layer '{}' field '{}'", e.name, f.field))?,
                None if f.required => {
                    return Err(corrupt(format!(
                        "layer '{}' ({}) is missing its '{}' tensor",
                        e.name, e.scheme, f.field
                    )));
                }
                None => {}
            }
        }
        if let Some(extra) = e.tensors.keys().find(|k| !specs.iter().any(|f| f.field == k.as_str())) {
            return Err(corrupt(format!(
                "layer '{}' has unexpected field '{extra}' for format '{}'",
                e.name, e.format
            )));
        }
    }
    for t in &passthrough {
        let dtype = match t.dtype.as_str() {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            other => return Err(corrupt(format!("passthrough tensor '{}' has dtype {other} (F32 or F16)", t.name))),
        };
        check_tensor(t, dtype, &t.shape, "passthrough")?;
    }
    if let Some(stray) = infos.keys().find(|name| !used.contains(*name)) {
        return Err(corrupt(format!("tensor '{stray}' is not described by the lowbit metadata")));
    }
    Ok(ParsedHeader { version: version.clone(), layers, passthrough, source })
}

fn le_u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
fn le_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
fn le_f16s(b: &[u8]) -> Vec<f16> {
    b.chunks_exact(2).map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect()
}

/// Rebuilds a weight from a header-validated record and its (checksummed) field bytes.
fn build_weight(e: &LayerEntry, f: &HashMap<&str, &[u8]>) -> std::result::Result<QuantizedWeight, String> {
    let gran = parse_granularity(&e.granularity).ok_or("bad granularity")?;
    let field = |name: &str| f.get(name).copied().ok_or_else(|| format!("missing '{name}'"));
    let (n, k, bits) = (e.n, e.k, e.bits);
    Ok(match e.format.as_str() {
        "int" => {
            let ng = gran.n_groups(k);
            let zeros = match f.get("zeros") {
                Some(z) => z.to_vec(),
                None if e.symmetric => vec![1u8 << (bits - 1); n * ng],
                None => return Err("missing 'zeros'".into()),
            };
            QuantizedWeight::Int(IntAffineWeight {
                n,
                k,
                bits,
                symmetric: e.symmetric,
                granularity: gran,
                codes: le_u32s(field("codes")?),
                scales: le_f16s(field("scales")?),
                zeros,
                g_idx: f.get("g_idx").map(|b| le_u32s(b)),
            })
        }
        "bipolar" => {
            let offsets = f.get("offsets").map(|b| le_f32s(b));
            if offsets.is_none() != e.symmetric {
                return Err(format!(
                    "recorded symmetric = {} but offsets are {}",
                    e.symmetric,
                    if offsets.is_some() { "present" } else { "absent" }
                ));
            }
            QuantizedWeight::Bipolar(BipolarMatrix {
                n,
                k,
                bits,
                granularity: gran,
                planes: le_u32s(field("planes")?),
                scales: le_f32s(field("scales")?),
                offsets,
            })
        }
        "mixed" => {
            if !e.symmetric {
                return Err("mixed weights are symmetric".into());
            }
            QuantizedWeight::Mixed(MixedWeight {
                n,
                k,
                bits,
                group: gran.group_len(k),
                codes: le_u32s(field("codes")?),
                group_scales: field("group_scales")?.to_vec(),
                selectors: field("selectors")?.to_vec(),
                channel_scales: le_f16s(field("channel_scales")?),
            })
        }
        "lut" => {
            if !e.symmetric {
                return Err("LUT weights are symmetric".into());
            }
            QuantizedWeight::Lut(LutWeight {
                n,
                k,
                bits,
                granularity: gran,
                lut: le_f32s(field("lut")?),
                codes: le_u32s(field("codes")?),
                scales: le_f16s(field("scales")?),
            })
        }
        other => return Err(format!("unknown format '{other}'")),
    })
}

/// Rebuilds a weight from its packed fields, by the field names of `docs/formats.md` (`codes`, `scales`, `zeros`,
/// `g_idx`, `planes`, `offsets`, `group_scales`, `selectors`, `channel_scales`, `lut`) as little-endian bytes:
/// what a framework state dict holds for one layer. The same checks as a checkpoint layer on load: the fields
/// the scheme needs (no more), each field's byte length for its dtype and shape, code ranges and padding bits,
/// and the scheme the fields describe. A bipolar weight is symmetric exactly when it has no `offsets`.
pub fn weight_from_fields(
    scheme: &crate::weight::WeightScheme,
    n: usize,
    k: usize,
    fields: &HashMap<&str, &[u8]>,
) -> Result<QuantizedWeight> {
    use crate::weight::SchemeKind;
    let bad = |reason: String| LowbitError::invalid(format!("{scheme} weight fields"), reason);
    let (format, symmetric) = match scheme.kind {
        SchemeKind::Int { symmetric } => ("int", symmetric),
        SchemeKind::Bipolar => ("bipolar", !fields.contains_key("offsets")),
        SchemeKind::Mixed => ("mixed", true),
        SchemeKind::Nf4 | SchemeKind::Lut => ("lut", true),
    };
    let entry = LayerEntry {
        name: String::new(),
        format: format.into(),
        scheme: scheme.to_string(),
        n,
        k,
        bits: scheme.bits,
        granularity: scheme.granularity.suffix(),
        symmetric,
        tensors: BTreeMap::new(),
    };
    let specs = field_specs(&entry).map_err(bad)?;
    for f in &specs {
        let elem = match f.dtype {
            Dtype::U32 | Dtype::F32 => 4,
            Dtype::F16 => 2,
            _ => 1,
        };
        match fields.get(f.field) {
            Some(b) if b.len() != f.shape.iter().product::<usize>() * elem => {
                return Err(bad(format!("'{}' has {} bytes, expected {:?} x {elem} bytes", f.field, b.len(), f.shape)));
            }
            None if f.required => return Err(bad(format!("missing field '{}'", f.field))),
            _ => {}
        }
    }
    if let Some(extra) = fields.keys().find(|k| !specs.iter().any(|f| f.field == **k)) {
        return Err(bad(format!("unexpected field '{extra}' for format '{format}'")));
    }
    let weight = build_weight(&entry, fields).map_err(bad)?;
    weight.validate()?;
    check_code_padding(&weight).map_err(bad)?;
    let found = weight.scheme().to_string();
    if found != entry.scheme {
        return Err(bad(format!("the fields describe '{found}'")));
    }
    Ok(weight)
}

/// The unused tail bits of every row bitstream must be zero (`docs/formats.md`); kernels may read them.
fn check_code_padding(w: &QuantizedWeight) -> std::result::Result<(), String> {
    let (codes, k, bits) = match w {
        QuantizedWeight::Int(w) => (&w.codes, w.k, w.bits),
        QuantizedWeight::Mixed(w) => (&w.codes, w.k, w.bits),
        QuantizedWeight::Lut(w) => (&w.codes, w.k, w.bits),
        QuantizedWeight::Bipolar(_) => return Ok(()), // BipolarMatrix::validate checks its plane padding
    };
    let used = (k * bits as usize) % 32;
    if used == 0 {
        return Ok(());
    }
    let wpr = words_per_row(k, bits);
    let mask = !0u32 << used;
    match codes.chunks_exact(wpr).position(|row| row[wpr - 1] & mask != 0) {
        Some(r) => Err(format!("row {r} has non-zero padding bits after its last code")),
        None => Ok(()),
    }
}
