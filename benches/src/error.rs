//! [`BenchError`], the harness's error type.

use cudarc::cublas::result::CublasError;
use cudarc::driver::DriverError;
use lowbit_core::LowbitError;
use lowbit_cuda::CudaError;

/// Everything that can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No usable GPU (driver missing, no device, bad ordinal). The CLI exits with code 2.
    #[error("no usable CUDA GPU: {0}")]
    NoGpu(String),
    /// libcublas cannot be loaded. The CLI exits with code 2.
    #[error(
        "libcublas.so.13 could not be loaded: put the directory holding libcublas.so.13 and \
         libcublasLt.so.13 on LD_LIBRARY_PATH or in LOWBIT_CUBLAS_DIR (pip wheels: \
         <site-packages>/nvidia/cu13/lib; PyTorch: <site-packages>/torch/lib); none was found there \
         nor through python3, /usr/local/cuda or ldconfig"
    )]
    NoCublas,
    /// A lowbit-cuda call failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// A CUDA driver call made by the harness failed.
    #[error("CUDA driver: {0}")]
    Driver(#[from] DriverError),
    /// A cuBLAS call failed.
    #[error("cuBLAS: {0:?}")]
    Cublas(CublasError),
    /// Quantization or repacking failed.
    #[error(transparent)]
    Core(#[from] LowbitError),
    /// A bad command-line value or shape file.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// JSON (de)serialization.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<CublasError> for BenchError {
    fn from(e: CublasError) -> Self {
        BenchError::Cublas(e)
    }
}

impl BenchError {
    /// Whether the error means "this machine cannot run benchmarks" (no GPU, no cuBLAS): the CLI
    /// exits with code 2 for these, 1 for everything else.
    pub fn is_environment(&self) -> bool {
        matches!(self, BenchError::NoGpu(_) | BenchError::NoCublas | BenchError::Cuda(CudaError::NoGpu { .. }))
    }

    /// Shorthand for [`BenchError::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        BenchError::Invalid(msg.into())
    }
}

/// Result alias of the harness.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
