//! Thin helpers over cudarc's [`CudaSlice`]: upload and download of plain data, and
//! [`DeviceTensor`], a row-major matrix of 16-bit floats (f16 or bf16) on the GPU.
//!
//! Kernels write f16 / bf16 as raw 16-bit patterns, so a [`DeviceTensor`] stores `u16` and
//! records its [`OutDtype`]; downloads turn the bits into `half::f16` / `half::bf16`.

use std::fmt;

use cudarc::driver::{CudaSlice, DeviceRepr};
use half::{bf16, f16};

use crate::device::Device;
use crate::error::{CudaError, Result};

/// 16-bit floating-point output types of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutDtype {
    /// IEEE binary16 (`half::f16`, `torch.float16`).
    F16,
    /// bfloat16 (`half::bf16`, `torch.bfloat16`).
    Bf16,
}

impl OutDtype {
    /// The C ABI value (`LOWBIT_DTYPE_F16` / `LOWBIT_DTYPE_BF16`).
    pub fn to_ffi(self) -> i32 {
        match self {
            OutDtype::F16 => lowbit_kernels_sys::LOWBIT_DTYPE_F16 as i32,
            OutDtype::Bf16 => lowbit_kernels_sys::LOWBIT_DTYPE_BF16 as i32,
        }
    }
}

impl fmt::Display for OutDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutDtype::F16 => "f16",
            OutDtype::Bf16 => "bf16",
        })
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A 16-bit output element type: `half::f16` or `half::bf16`.
pub trait OutElement: sealed::Sealed + Copy + DeviceRepr + fmt::Debug + 'static {
    /// The matching [`OutDtype`].
    const DTYPE: OutDtype;
    /// The value with this 16-bit pattern.
    fn from_bits(bits: u16) -> Self;
    /// This value's 16-bit pattern.
    fn to_bits(self) -> u16;
}

impl OutElement for f16 {
    const DTYPE: OutDtype = OutDtype::F16;
    fn from_bits(bits: u16) -> Self {
        f16::from_bits(bits)
    }
    fn to_bits(self) -> u16 {
        f16::to_bits(self)
    }
}

impl OutElement for bf16 {
    const DTYPE: OutDtype = OutDtype::Bf16;
    fn from_bits(bits: u16) -> Self {
        bf16::from_bits(bits)
    }
    fn to_bits(self) -> u16 {
        bf16::to_bits(self)
    }
}

/// Copies `data` to a new device buffer on `dev`'s stream (`u32`, `u16`, `u8`, `f32`, `f16`, ...).
///
/// Host memory is pageable, so the copy is staged by the driver before this returns and `data`
/// may be dropped right away; the device buffer is ready for work queued later on the stream.
pub fn upload<T: DeviceRepr>(dev: &Device, data: &[T]) -> Result<CudaSlice<T>> {
    dev.bind_to_thread()?;
    Ok(dev.stream().clone_htod(data)?)
}

/// Copies a device buffer back to the host, waiting for the work queued before it on its stream.
pub fn download<T: DeviceRepr>(buf: &CudaSlice<T>) -> Result<Vec<T>> {
    buf.stream().context().bind_to_thread()?;
    Ok(buf.stream().clone_dtoh(buf)?)
}

/// A row-major `[rows, cols]` matrix of f16 or bf16 values on the GPU, stored as 16-bit patterns.
#[derive(Debug)]
pub struct DeviceTensor {
    data: CudaSlice<u16>,
    rows: usize,
    cols: usize,
    dtype: OutDtype,
}

impl DeviceTensor {
    /// A zero-filled tensor.
    pub fn zeros(dev: &Device, rows: usize, cols: usize, dtype: OutDtype) -> Result<Self> {
        let len = checked_len(rows, cols)?;
        dev.bind_to_thread()?;
        let data = dev.stream().alloc_zeros::<u16>(len)?;
        Ok(Self { data, rows, cols, dtype })
    }

    /// A tensor with every element set to the 16-bit pattern `bits` (tests poison outputs with
    /// `0x7FFF`, a NaN in both f16 and bf16, so an element a kernel forgot stands out).
    pub fn filled(dev: &Device, rows: usize, cols: usize, dtype: OutDtype, bits: u16) -> Result<Self> {
        let len = checked_len(rows, cols)?;
        let data = upload(dev, &vec![bits; len])?;
        Ok(Self { data, rows, cols, dtype })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (contiguous).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element type of the stored bits.
    pub fn dtype(&self) -> OutDtype {
        self.dtype
    }

    /// Number of elements, `rows * cols`.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements (never, for tensors built by this crate).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The underlying buffer of 16-bit patterns.
    pub fn data(&self) -> &CudaSlice<u16> {
        &self.data
    }

    /// The underlying buffer, mutably (e.g. to pass it to another kernel).
    pub fn data_mut(&mut self) -> &mut CudaSlice<u16> {
        &mut self.data
    }

    /// Consumes the tensor, returning the buffer.
    pub fn into_data(self) -> CudaSlice<u16> {
        self.data
    }

    /// Downloads the raw 16-bit patterns, row-major.
    pub fn to_host_bits(&self) -> Result<Vec<u16>> {
        download(&self.data)
    }

    /// Downloads the values as `T` (`half::f16` or `half::bf16`); `T` must match [`Self::dtype`].
    pub fn to_host<T: OutElement>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(CudaError::InvalidArgument {
                launcher: "DeviceTensor::to_host",
                detail: format!("tensor holds {}, requested {}", self.dtype, T::DTYPE),
            });
        }
        Ok(self.to_host_bits()?.into_iter().map(T::from_bits).collect())
    }
}

fn checked_len(rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols).filter(|&l| l > 0).ok_or_else(|| CudaError::InvalidArgument {
        launcher: "DeviceTensor",
        detail: format!("shape [{rows}, {cols}] is empty or overflows"),
    })
}
