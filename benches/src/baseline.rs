//! First-class library baselines, run in the same process, on the same card and stream, as the
//! kernel under test (`style.md` lesson 11).
//!
//! So far cuBLAS fp16 and bf16 GEMM (`cublasGemmEx`, f32 compute, 16-bit output) in the
//! `nn.Linear` convention `Y[M, N] = X[M, K] · W[N, K]ᵀ` with every matrix row-major. A W8A8
//! family will add a `cublaslt-int8` variant to [`Baseline`] (cuBLASLt's result layer with
//! `CUBLAS_COMPUTE_32I`, `toolchain.md` §4); the suite code only matches on the enum.
//!
//! The row-major → column-major derivation of the cuBLAS call is in `lowbit_cuda::cublas`, which
//! owns the handle; this module names the baselines.
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use lowbit_cuda::OutDtype;
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};

/// A library baseline a kernel is compared against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Baseline {
    /// cuBLAS GEMM, fp16 X / W / Y, f32 accumulation.
    #[serde(rename = "cublas-f16")]
    CublasF16,
    /// cuBLAS GEMM, bf16 X / W / Y, f32 accumulation.
    #[serde(rename = "cublas-bf16")]
    CublasBf16,
}

impl Baseline {
    /// Every baseline, in report order.
    pub const ALL: [Baseline; 2] = [Baseline::CublasF16, Baseline::CublasBf16];

    /// Report name: `cublas-f16`, `cublas-bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::CublasF16 => "cublas-f16",
            Baseline::CublasBf16 => "cublas-bf16",
        }
    }

    /// The activation / output type: the kernel under test runs with the same type, so each row
    /// compares like with like.
    pub fn dtype(self) -> OutDtype {
        match self {
            Baseline::CublasF16 => OutDtype::F16,
            Baseline::CublasBf16 => OutDtype::Bf16,
        }
    }

    /// Parses a comma-separated list (`cublas-f16,cublas-bf16`; `all`).
    pub fn parse_list(s: &str) -> Result<Vec<Baseline>> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Baseline::ALL.to_vec());
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let b: Baseline = part.parse()?;
            if !out.contains(&b) {
                out.push(b);
            }
        }
        if out.is_empty() {
            return Err(BenchError::invalid("no baseline given"));
        }
        Ok(out)
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Baseline {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cublas-f16" | "cublas-fp16" => Ok(Baseline::CublasF16),
            "cublas-bf16" => Ok(Baseline::CublasBf16),
            other => Err(BenchError::invalid(format!("unknown baseline '{other}' (cublas-f16, cublas-bf16)"))),
        }
    }
}

pub use lowbit_cuda::cublas::{
    CUBLAS_WORKSPACE_BYTES, CUDA_LIB_MAJOR, Cublas, cublas_dir_candidates, cublas_present, loaded_library_path,
};

/// [`lowbit_cuda::cublas::ensure_cublas`], with a missing library as [`BenchError::NoCublas`] (exit code 2).
pub fn ensure_cublas() -> Result<Option<PathBuf>> {
    lowbit_cuda::cublas::ensure_cublas().map_err(no_cublas)
}

/// [`lowbit_cuda::cublas::cublas_version`], with a missing library as [`BenchError::NoCublas`].
pub fn cublas_version() -> Result<(i32, i32, i32)> {
    lowbit_cuda::cublas::cublas_version().map_err(no_cublas)
}

fn no_cublas(e: lowbit_cuda::CudaError) -> BenchError {
    match e {
        lowbit_cuda::CudaError::NoCublas => BenchError::NoCublas,
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_names_parse_and_serialize() {
        for b in Baseline::ALL {
            assert_eq!(b.name().parse::<Baseline>().unwrap(), b);
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{}\"", b.name()));
            let back: Baseline = serde_json::from_str(&format!("\"{b}\"")).unwrap();
            assert_eq!(back, b);
        }
        assert_eq!(Baseline::CublasF16.dtype(), OutDtype::F16);
        assert_eq!(Baseline::CublasBf16.dtype(), OutDtype::Bf16);
        assert_eq!(Baseline::parse_list("all").unwrap(), Baseline::ALL.to_vec());
        assert_eq!(
            Baseline::parse_list("cublas-bf16, cublas-f16,cublas-bf16").unwrap(),
            vec![Baseline::CublasBf16, Baseline::CublasF16]
        );
        assert!(Baseline::parse_list("cublaslt-int8").is_err());
        assert!(Baseline::parse_list(" , ").is_err());
    }

    #[test]
    fn cublas_search_never_panics() {
        // No GPU machine here: either a directory is found (and then loads) or a typed error.
        match ensure_cublas() {
            Ok(_) => assert!(cublas_present()),
            Err(e) => assert!(matches!(e, BenchError::NoCublas) && e.is_environment()),
        }
        let dirs = cublas_dir_candidates();
        assert!(dirs.iter().any(|d| d == std::path::Path::new("/usr/local/cuda/lib64")));
    }

    #[test]
    fn library_path_lookup_does_not_panic() {
        // libc is mapped into every process; a made-up name is not.
        assert!(loaded_library_path("libc.so").is_some() || !cfg!(target_os = "linux"));
        assert!(loaded_library_path("liblowbit-no-such-library").is_none());
    }
}
