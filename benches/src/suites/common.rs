//! Pieces every suite shares: which errors skip one point, the stream guard, row repetition.

use std::sync::Arc;

use cudarc::driver::CudaStream;
use lowbit_cuda::CudaError;

use crate::BenchError;

/// Whether an error belongs to one point (unsupported shape, no kernel, bad argument, alignment, a cuBLASLt
/// refusal): the point is recorded as skipped and the run goes on. Anything else (a CUDA fault, out of memory)
/// stops the run.
pub fn is_soft(e: &BenchError) -> bool {
    matches!(
        e,
        BenchError::Core(_)
            | BenchError::Cuda(
                CudaError::Shape { .. }
                    | CudaError::NoKernel { .. }
                    | CudaError::InvalidArgument { .. }
                    | CudaError::Alignment { .. }
                    | CudaError::Core(_)
                    | CudaError::CublasLt(_)
            )
    )
}

/// Synchronizes the stream when dropped, so device buffers of a failed point are not freed under running work.
pub struct SyncOnExit<'a>(pub &'a Arc<CudaStream>);

impl Drop for SyncOnExit<'_> {
    fn drop(&mut self) {
        let _ = self.0.synchronize();
    }
}

/// Repeats `chunk` (`rows × row_len` elements) to `n` rows.
pub fn repeat_rows<T: Clone>(chunk: &[T], row_len: usize, n: usize) -> Vec<T> {
    let rows = chunk.len() / row_len;
    let mut v = Vec::with_capacity(n * row_len);
    for r in 0..n {
        let s = (r % rows) * row_len;
        v.extend_from_slice(&chunk[s..s + row_len]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_rows_cycles_the_chunk() {
        assert_eq!(repeat_rows(&[1, 2, 3, 4], 2, 3), vec![1, 2, 3, 4, 1, 2]);
        assert_eq!(repeat_rows(&[7u8], 1, 4), vec![7; 4]);
    }
}
