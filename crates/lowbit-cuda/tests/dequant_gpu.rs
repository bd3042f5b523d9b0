//! GPU dequantization vs lowbit-core, bit for bit.
//!
//! For every format × bit width × granularity × awkward shape × {f16, bf16}: quantize seeded
//! random weights with lowbit-core, dequantize on the GPU into an output **poisoned** with
//! `0x7FFF` (NaN), and compare every 16-bit pattern with `dequantize_f16` / `dequantize_bf16`.
//! Each case runs twice: through the safe API into a [`DeviceTensor`], and through
//! [`DeviceWeight::dequantize_raw`] into a buffer with poisoned guard regions on both sides,
//! alternately 16-byte aligned (vector stores) and shifted by one element (2-byte stores), so
//! a write outside the output is caught too.
//!
//! The GPU tests are `#[ignore]`d: run them with `--include-ignored` (`scripts/gpu-run` does). With
//! no usable GPU they print a `SKIP` line and pass, unless `LOWBIT_REQUIRE_GPU=1`, which makes a
//! missing GPU a failure. The first test is not ignored and runs everywhere: without a GPU,
//! opening a device must be a typed `NoGpu` error, never a panic.

mod common;

use common::{Case, POISON, Sweep, device_or_skip, first_mismatch, reference_bits, require_gpu};
use cudarc::driver::DevicePtrMut;
use half::{bf16, f16};
use lowbit_core::{QuantizedWeight, WeightScheme, quantize};
use lowbit_cuda::{
    CudaError, Device, DeviceTensor, DeviceWeight, OutDtype, dequantize, dequantize_to_host, download, gpu_available,
    upload,
};

/// Poisoned elements on each side of the raw-pointer output (128 bytes keeps 16-byte alignment).
const GUARD: usize = 64;

/// `LOWBIT_SWEEP=quick` narrows the sweep (scripts/gpu-run sets it under compute-sanitizer, which
/// is 10-100x slower); the default is the full sweep.
fn sweep() -> Sweep {
    match std::env::var("LOWBIT_SWEEP").as_deref() {
        Ok("quick") => Sweep::Quick,
        _ => Sweep::Full,
    }
}

#[test]
fn device_open_without_gpu_is_a_typed_error() {
    match Device::open(0) {
        Ok(dev) => {
            assert!(gpu_available());
            println!("GPU present: {} ({})", dev.info().name, dev.info().sm_name());
        }
        Err(CudaError::NoGpu { reason }) => {
            assert!(!reason.is_empty());
            assert!(!gpu_available());
            assert!(!require_gpu(), "LOWBIT_REQUIRE_GPU=1 but no usable CUDA GPU: {reason}");
        }
        Err(e) => panic!("Device::open must report a missing GPU as CudaError::NoGpu, got {e:?}"),
    }
    // No machine has this many devices: also NoGpu, never a panic.
    let e = Device::open(100_000).unwrap_err();
    assert!(matches!(e, CudaError::NoGpu { .. }), "{e:?}");
    assert!(e.to_string().starts_with("no usable CUDA GPU: "), "{e}");
}

/// Dequantizes every case on the GPU (both paths, both dtypes) and fails with a list of every
/// mismatching (case, dtype, path).
fn check_gpu(test: &str, generate: fn(Sweep, &mut dyn FnMut(Case))) {
    let Some(dev) = device_or_skip(test) else { return };
    let stream_handle = dev.stream().cu_stream().cast();
    let mut failures = Vec::new();
    let mut count = 0usize;
    generate(sweep(), &mut |case: Case| {
        count += 1;
        let dw = match DeviceWeight::upload(&dev, &case.weight) {
            Ok(dw) => dw,
            Err(e) => return failures.push(format!("{}: upload failed: {e}", case.name)),
        };
        let (n, k) = dw.shape();
        for dtype in [OutDtype::F16, OutDtype::Bf16] {
            let want = reference_bits(&case.weight, dtype == OutDtype::Bf16);

            // Path 1: the safe API into a poisoned DeviceTensor.
            let mut out = DeviceTensor::filled(&dev, n, k, dtype, POISON).expect("alloc output");
            match dw.dequantize_into(&dev, &mut out).and_then(|()| out.to_host_bits()) {
                Ok(got) => {
                    if let Some(m) = first_mismatch(&got, &want, k) {
                        failures.push(format!("{} {dtype} tensor: {m}", case.name));
                    }
                }
                Err(e) => failures.push(format!("{} {dtype} tensor: {e}", case.name)),
            }

            // Path 2: raw pointer into a guarded buffer, aligned or shifted by one element.
            let shift = count % 2;
            let total = GUARD + shift + n * k + GUARD;
            let mut buf = upload(&dev, &vec![POISON; total]).expect("alloc guarded output");
            let base = buf.device_ptr_mut(dev.stream()).0;
            let out_ptr = base + ((GUARD + shift) * 2) as u64;
            // SAFETY: `out_ptr` addresses n*k elements inside `buf` (a live allocation of this
            // device's primary context); the stream is the device's own; `dw` outlives the
            // download below, which waits for the kernel.
            let launched = unsafe { dw.dequantize_raw(&dev, out_ptr, dtype, stream_handle) };
            match launched.and_then(|()| download(&buf)) {
                Ok(got) => {
                    let inner = &got[GUARD + shift..GUARD + shift + n * k];
                    if let Some(m) = first_mismatch(inner, &want, k) {
                        failures.push(format!("{} {dtype} raw(shift={shift}): {m}", case.name));
                    }
                    let head_ok = got[..GUARD + shift].iter().all(|&v| v == POISON);
                    let tail_ok = got[GUARD + shift + n * k..].iter().all(|&v| v == POISON);
                    if !(head_ok && tail_ok) {
                        failures.push(format!("{} {dtype} raw(shift={shift}): wrote outside the output", case.name));
                    }
                }
                Err(e) => failures.push(format!("{} {dtype} raw: {e}", case.name)),
            }
        }
    });
    dev.synchronize().expect("device synchronize");
    println!("{test}: {count} cases x 2 dtypes x 2 paths on {} ({})", dev.info().name, dev.info().sm_name());
    assert!(count > 0);
    let shown: Vec<&str> = failures.iter().take(40).map(String::as_str).collect();
    assert!(
        failures.is_empty(),
        "{} failures in {count} cases; first {}:\n{}",
        failures.len(),
        shown.len(),
        shown.join("\n")
    );
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_int_affine_bit_exact() {
    check_gpu("gpu_int_affine_bit_exact", common::int_cases);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_int_affine_act_order_bit_exact() {
    check_gpu("gpu_int_affine_act_order_bit_exact", common::int_act_order_cases);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_bit_exact() {
    check_gpu("gpu_bipolar_bit_exact", common::bipolar_cases);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_with_offsets_bit_exact() {
    check_gpu("gpu_bipolar_with_offsets_bit_exact", common::bipolar_offset_cases);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_mixed_bit_exact() {
    check_gpu("gpu_mixed_bit_exact", common::mixed_cases);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_lut_and_nf4_bit_exact() {
    check_gpu("gpu_lut_and_nf4_bit_exact", common::lut_cases);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_device_info_is_sane() {
    let Some(dev) = device_or_skip("gpu_device_info_is_sane") else { return };
    let info = dev.info();
    println!("{info:?}");
    assert!(!info.name.is_empty());
    assert!(info.sm_count > 0);
    assert!(info.compute_capability >= (8, 0), "lowbit targets sm_80+, got {}", info.sm_name());
    assert!(info.l2_cache_bytes > 0 && info.total_memory_bytes > 0);
    assert!(info.driver_version >= 13000, "driver {} is older than CUDA 13.0", info.driver_version);
    assert_eq!(info.kernels_cudart_version / 1000, 13);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_convenience_api_matches_cpu() {
    let Some(dev) = device_or_skip("gpu_convenience_api_matches_cpu") else { return };
    for scheme in ["w4-int-g128", "w3-int-asym-g64", "w8-int-pc", "w3-mixed-g128", "w4-nf4-g64", "w2-bipolar-g128"] {
        let w = common::weights(37, 4096 + 128, 77);
        let q = quantize(w.view(), &scheme.parse::<WeightScheme>().unwrap()).unwrap();
        let got: Vec<f16> = dequantize_to_host(&dev, &q).unwrap();
        assert_eq!(got, q.dequantize_f16(), "{scheme} f16");
        let got: Vec<bf16> = dequantize_to_host(&dev, &q).unwrap();
        assert_eq!(got, q.dequantize_bf16(), "{scheme} bf16");
        let t = dequantize(&dev, &q, OutDtype::Bf16).unwrap();
        assert_eq!((t.rows(), t.cols(), t.dtype()), (37, 4096 + 128, OutDtype::Bf16));
        assert!(
            matches!(t.to_host::<f16>(), Err(CudaError::InvalidArgument { .. })),
            "dtype mismatch must be an error"
        );
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_dequantize_on_a_foreign_stream() {
    let Some(dev) = device_or_skip("gpu_dequantize_on_a_foreign_stream") else { return };
    let w = common::weights(129, 11008, 5);
    let q = quantize(w.view(), &"w4-int-asym-g128".parse::<WeightScheme>().unwrap()).unwrap();
    let dw = DeviceWeight::upload(&dev, &q).unwrap();
    // A non-blocking stream stands in for a framework's (e.g. PyTorch's current) stream.
    let side = dev.context().new_stream().unwrap();
    let mut buf = upload(&dev, &vec![POISON; 129 * 11008]).unwrap();
    dev.synchronize().unwrap(); // the poison is in place before the side stream writes
    let ptr = buf.device_ptr_mut(dev.stream()).0;
    // SAFETY: `ptr` addresses 129*11008 elements of `buf` (this device's primary context);
    // `side` is a live stream of that context and is synchronized before `buf` is read.
    unsafe { dw.dequantize_raw(&dev, ptr, OutDtype::F16, side.cu_stream().cast()) }.unwrap();
    side.synchronize().unwrap();
    let got = download(&buf).unwrap();
    let want: Vec<u16> = q.dequantize_f16().into_iter().map(|v| v.to_bits()).collect();
    assert!(first_mismatch(&got, &want, 11008).is_none(), "{:?}", first_mismatch(&got, &want, 11008));
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bad_arguments_are_typed_errors() {
    let Some(dev) = device_or_skip("gpu_bad_arguments_are_typed_errors") else { return };
    let w = common::weights(3, 256, 11);
    let q = quantize(w.view(), &"w4-int-g128".parse::<WeightScheme>().unwrap()).unwrap();
    let dw = DeviceWeight::upload(&dev, &q).unwrap();
    let mut wrong = DeviceTensor::zeros(&dev, 3, 128, OutDtype::F16).unwrap();
    let e = dw.dequantize_into(&dev, &mut wrong).unwrap_err();
    assert!(matches!(e, CudaError::BufferSize { expected: 768, got: 384, .. }), "{e}");
    // SAFETY: a null output is rejected before any launch.
    let e = unsafe { dw.dequantize_raw(&dev, 0, OutDtype::F16, std::ptr::null_mut()) }.unwrap_err();
    assert!(matches!(e, CudaError::InvalidArgument { .. }), "{e}");
    // An inconsistent weight never reaches the device.
    let mut bad = q.clone();
    if let QuantizedWeight::Int(iw) = &mut bad {
        iw.zeros[0] = 3; // symmetric weights must have zero point 2^(b-1)
    }
    let e = DeviceWeight::upload(&dev, &bad).unwrap_err();
    assert!(matches!(e, CudaError::Core(_)), "{e}");
    // The context is healthy afterwards.
    let got: Vec<f16> = dequantize_to_host(&dev, &q).unwrap();
    assert_eq!(got, q.dequantize_f16());
}
