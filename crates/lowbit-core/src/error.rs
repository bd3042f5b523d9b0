//! The one error type of lowbit-core. Every message names the problem and the offending value.

use std::path::PathBuf;

/// Everything that can go wrong in lowbit-core: bad shapes, bits, group sizes, non-finite data, corrupt files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LowbitError {
    /// A bit width outside what the format supports.
    #[error("unsupported bit width {bits} for {format} (supported: {supported})")]
    UnsupportedBits {
        /// The format that rejected it.
        format: &'static str,
        /// The requested width.
        bits: u32,
        /// Human-readable list of supported widths.
        supported: &'static str,
    },
    /// A group size other than 32, 64, 128 or per-channel.
    #[error("invalid group size {group} for {format} (supported: {supported})")]
    InvalidGroupSize {
        /// The format that rejected it.
        format: &'static str,
        /// The requested group size.
        group: usize,
        /// Human-readable list of supported sizes.
        supported: &'static str,
    },
    /// K is not a multiple of the group size.
    #[error("K = {k} is not divisible by the group size {group}")]
    KNotDivisible {
        /// Number of input features.
        k: usize,
        /// Group size.
        group: usize,
    },
    /// Shapes or buffer lengths that do not agree.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which tensor or field.
        what: String,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// An empty tensor where data is required.
    #[error("empty input: {what} has shape {shape}")]
    Empty {
        /// Which tensor.
        what: String,
        /// Its shape.
        shape: String,
    },
    /// NaN or infinity in data that must be finite.
    #[error("non-finite value {value} in {what} at {index}")]
    NonFinite {
        /// Which tensor.
        what: String,
        /// Flat or 2-D index description.
        index: String,
        /// The offending value.
        value: f32,
    },
    /// A value outside the range a field allows (a code beyond 2^bits, a bad selector, a negative scale...).
    #[error("invalid value in {what}: {reason}")]
    InvalidValue {
        /// Which field.
        what: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A scheme string that does not parse or names an unsupported combination.
    #[error("invalid scheme '{scheme}': {reason}")]
    InvalidScheme {
        /// The string given.
        scheme: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An act-order permutation that is not a permutation of 0..K.
    #[error("invalid permutation: {reason}")]
    InvalidPermutation {
        /// Why it was rejected.
        reason: String,
    },
    /// An operation that this format or combination does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    // ---- model files, GGUF and checkpoints (model.rs, gguf.rs, checkpoint.rs) ----
    /// A model file (safetensors) that cannot be parsed or is inconsistent.
    #[error("invalid model file {path}: {reason}")]
    InvalidModel {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor whose element type cannot be converted to f32 by this reader.
    #[error("tensor '{tensor}' in {path} has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its dtype as the file spells it (`I64`, `Q4_K`, ...).
        dtype: String,
    },
    /// A tensor name that the file does not contain.
    #[error("tensor '{name}' not found in {path}")]
    TensorNotFound {
        /// The file.
        path: PathBuf,
        /// The missing tensor.
        name: String,
    },
    /// A GGUF file that is truncated or malformed.
    #[error("corrupt GGUF file {path}: {reason}")]
    CorruptGguf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A GGUF file of a version other than 2 or 3 (or a big-endian one, whose version reads byte-swapped).
    #[error("unsupported GGUF version {found} in {path} (supported: 2 and 3, little-endian)")]
    UnsupportedGgufVersion {
        /// The file.
        path: PathBuf,
        /// The version field as read.
        found: u32,
    },
    /// A lowbit checkpoint that is truncated, malformed, incomplete or inconsistent.
    #[error("corrupt checkpoint {path}: {reason}")]
    CorruptCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint tensor whose bytes do not match the CRC-32 recorded in the header.
    #[error("checksum mismatch in checkpoint {path}: {what} has CRC-32 {found:#010x}, header records {expected:#010x}")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor (or header section) whose checksum failed.
        what: String,
        /// The recorded CRC-32.
        expected: u32,
        /// The CRC-32 of the bytes in the file.
        found: u32,
    },
    /// A checkpoint written by an incompatible version of the format.
    #[error("unsupported checkpoint format version '{found}' in {path} (supported: {supported})")]
    UnsupportedCheckpointVersion {
        /// The file.
        path: PathBuf,
        /// The `lowbit.format_version` found.
        found: String,
        /// The versions this build reads.
        supported: String,
    },
}

/// `Result` with [`LowbitError`].
pub type Result<T> = std::result::Result<T, LowbitError>;

impl LowbitError {
    /// Shorthand for [`LowbitError::ShapeMismatch`].
    pub fn shape(what: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Self::ShapeMismatch { what: what.into(), expected: expected.to_string(), got: got.to_string() }
    }
    /// Shorthand for [`LowbitError::InvalidValue`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidValue { what: what.into(), reason: reason.into() }
    }
}
