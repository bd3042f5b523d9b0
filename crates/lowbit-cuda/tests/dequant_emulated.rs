//! CPU-only checks of the dequantization kernels (no GPU needed; these run in CI):
//!
//! - the kernels' per-thread code, run on the host through the `*_host` entry points, is
//!   bit-exact with lowbit-core's `dequantize_f16` / `dequantize_bf16` for every format, bit
//!   width and granularity (the GPU tests in `dequant_gpu.rs` repeat this on the device);
//! - the launchers' argument validation returns the documented `LOWBIT_ERR_*` codes, for the GPU
//!   launchers too, before any CUDA call (so this works without a driver);
//! - inconsistent weights are rejected with typed errors before anything is launched.

mod common;

use common::{Case, Sweep, first_mismatch, reference_bits};
use half::{bf16, f16};
use lowbit_core::{Granularity, IntAffineWeight, LowbitError, QuantizedWeight};
use lowbit_cuda::{CudaError, dequantize_emulated};
use lowbit_kernels_sys as sys;

/// Emulates every case of `generate` in f16 and bf16 and compares with the CPU reference.
fn check_emulated(generate: fn(Sweep, &mut dyn FnMut(Case))) {
    let mut failures = Vec::new();
    let mut count = 0usize;
    generate(Sweep::Quick, &mut |case: Case| {
        count += 1;
        let (_, k) = case.weight.shape();
        let got: Vec<u16> =
            dequantize_emulated::<f16>(&case.weight).unwrap().into_iter().map(|v| v.to_bits()).collect();
        if let Some(m) = first_mismatch(&got, &reference_bits(&case.weight, false), k) {
            failures.push(format!("{} f16: {m}", case.name));
        }
        let got: Vec<u16> =
            dequantize_emulated::<bf16>(&case.weight).unwrap().into_iter().map(|v| v.to_bits()).collect();
        if let Some(m) = first_mismatch(&got, &reference_bits(&case.weight, true), k) {
            failures.push(format!("{} bf16: {m}", case.name));
        }
    });
    assert!(count > 0);
    assert!(
        failures.is_empty(),
        "{} mismatching (case, dtype) pairs among {} cases:\n{}",
        failures.len(),
        count,
        failures.join("\n")
    );
}

#[test]
fn emulated_int_affine_is_bit_exact() {
    check_emulated(common::int_cases);
}

#[test]
fn emulated_int_affine_act_order_is_bit_exact() {
    check_emulated(common::int_act_order_cases);
}

#[test]
fn emulated_bipolar_is_bit_exact() {
    check_emulated(common::bipolar_cases);
}

#[test]
fn emulated_bipolar_with_offsets_is_bit_exact() {
    check_emulated(common::bipolar_offset_cases);
}

#[test]
fn emulated_mixed_is_bit_exact() {
    check_emulated(common::mixed_cases);
}

#[test]
fn emulated_lut_is_bit_exact() {
    check_emulated(common::lut_cases);
}

/// Runs the GPU launcher of the INT format with the given arguments and a host output buffer.
/// Every call here must fail validation, so no CUDA call (and no device access) happens.
#[allow(clippy::too_many_arguments)]
fn int_gpu_status(
    codes: *const u32,
    scales: *const u16,
    n: i64,
    k: i64,
    bits: i32,
    group_len: i64,
    out: *mut u16,
    dtype: i32,
) -> i32 {
    // SAFETY: the arguments are chosen so that host-side validation rejects them before any
    // pointer is dereferenced or any CUDA runtime call is made.
    unsafe {
        sys::lowbit_dequant_int_affine(
            codes,
            scales,
            std::ptr::null(),
            std::ptr::null(),
            n,
            k,
            bits,
            group_len,
            out.cast(),
            dtype,
            std::ptr::null_mut(),
        )
        .code
    }
}

#[test]
fn gpu_launchers_validate_arguments_before_any_cuda_call() {
    let codes = [0u32; 64];
    let scales = [0x3C00u16; 16];
    let mut out = [0u16; 256];
    let (c, s, o) = (codes.as_ptr(), scales.as_ptr(), out.as_mut_ptr());
    let f16 = sys::LOWBIT_DTYPE_F16 as i32;
    let code = |c: sys::lowbit_status_code| c as i32;

    assert_eq!(int_gpu_status(std::ptr::null(), s, 1, 32, 4, 32, o, f16), code(sys::LOWBIT_ERR_INVALID_ARGUMENT));
    assert_eq!(int_gpu_status(c, s, 1, 32, 4, 32, std::ptr::null_mut(), f16), code(sys::LOWBIT_ERR_INVALID_ARGUMENT));
    assert_eq!(int_gpu_status(c, s, 1, 32, 4, 32, o, 7), code(sys::LOWBIT_ERR_INVALID_ARGUMENT));
    assert_eq!(int_gpu_status(c, s, 0, 32, 4, 32, o, f16), code(sys::LOWBIT_ERR_SHAPE));
    assert_eq!(int_gpu_status(c, s, 1, 0, 4, 32, o, f16), code(sys::LOWBIT_ERR_SHAPE));
    assert_eq!(int_gpu_status(c, s, 1, 96, 4, 64, o, f16), code(sys::LOWBIT_ERR_SHAPE), "group must divide k");
    assert_eq!(int_gpu_status(c, s, 1, 32, 4, 0, o, f16), code(sys::LOWBIT_ERR_SHAPE));
    assert_eq!(int_gpu_status(c, s, 1, 1 << 31, 4, 32, o, f16), code(sys::LOWBIT_ERR_SHAPE), "k > 2^31 - 1");
    assert_eq!(int_gpu_status(c, s, 1 << 40, 1 << 20, 4, 32, o, f16), code(sys::LOWBIT_ERR_SHAPE), "too many chunks");
    assert_eq!(int_gpu_status(c, s, 1, 32, 1, 32, o, f16), code(sys::LOWBIT_ERR_NO_KERNEL), "INT has no 1-bit");
    assert_eq!(int_gpu_status(c, s, 1, 32, 9, 32, o, f16), code(sys::LOWBIT_ERR_NO_KERNEL));
    // One byte past an aligned address; never dereferenced: the launcher rejects it.
    let c_odd = c.wrapping_byte_add(1);
    let o_odd = o.wrapping_byte_add(1);
    assert_eq!(int_gpu_status(c_odd, s, 1, 32, 4, 32, o, f16), code(sys::LOWBIT_ERR_ALIGNMENT));
    assert_eq!(int_gpu_status(c, s, 1, 32, 4, 32, o_odd, f16), code(sys::LOWBIT_ERR_ALIGNMENT));

    // The other formats' bit ranges: bipolar 1..=8, BitMoD 3..=4, LUT 1..=8.
    let f = [0f32; 256];
    let u8s = [0u8; 64];
    // SAFETY: invalid bit widths are rejected before any pointer is used or CUDA is called.
    unsafe {
        let st = sys::lowbit_dequant_bipolar(
            c,
            f.as_ptr(),
            std::ptr::null(),
            1,
            32,
            0,
            32,
            o.cast(),
            f16,
            std::ptr::null_mut(),
        );
        assert_eq!(st.code, code(sys::LOWBIT_ERR_NO_KERNEL));
        let st = sys::lowbit_dequant_mixed(
            c,
            u8s.as_ptr(),
            u8s.as_ptr(),
            s,
            1,
            32,
            2,
            32,
            o.cast(),
            f16,
            std::ptr::null_mut(),
        );
        assert_eq!(st.code, code(sys::LOWBIT_ERR_NO_KERNEL));
        let st = sys::lowbit_dequant_mixed(
            c,
            std::ptr::null(),
            u8s.as_ptr(),
            s,
            1,
            32,
            4,
            32,
            o.cast(),
            f16,
            std::ptr::null_mut(),
        );
        assert_eq!(st.code, code(sys::LOWBIT_ERR_INVALID_ARGUMENT));
        let st = sys::lowbit_dequant_lut(c, f.as_ptr(), s, 1, 32, 9, 32, o.cast(), f16, std::ptr::null_mut());
        assert_eq!(st.code, code(sys::LOWBIT_ERR_NO_KERNEL));
        let st = sys::lowbit_dequant_lut(c, std::ptr::null(), s, 1, 32, 4, 32, o.cast(), f16, std::ptr::null_mut());
        assert_eq!(st.code, code(sys::LOWBIT_ERR_INVALID_ARGUMENT));
    }
    assert!(out.iter().all(|&v| v == 0), "a rejected launch must not write the output");
}

#[test]
fn host_emulation_handles_scalar_and_vector_stores_alike() {
    // k = 37 (k % 8 != 0) takes the 2-byte store path; a misaligned output (by one element) forces
    // it even for k = 64. Both must give the same values as the aligned vector path.
    let w = common::weights(5, 64, 9);
    let q = IntAffineWeight::quantize(w.view(), 5, false, Granularity::Group(32)).unwrap();
    let want = reference_bits(&QuantizedWeight::Int(q.clone()), false);
    let mut buf = vec![common::POISON; 5 * 64 + 2];
    // SAFETY: host pointers into live vectors of the documented sizes; `buf[1..]` holds n*k+1.
    let st = unsafe {
        sys::lowbit_dequant_int_affine_host(
            q.codes.as_ptr(),
            q.scales.as_ptr().cast(),
            q.zeros.as_ptr(),
            std::ptr::null(),
            5,
            64,
            5,
            32,
            buf.as_mut_ptr().add(1).cast(),
            sys::LOWBIT_DTYPE_F16 as i32,
        )
    };
    assert_eq!(st.code, sys::LOWBIT_OK as i32);
    assert_eq!(buf[0], common::POISON, "wrote before the output");
    assert_eq!(buf[5 * 64 + 1], common::POISON, "wrote past the output");
    assert_eq!(&buf[1..=5 * 64], &want[..]);
}

#[test]
fn inconsistent_weights_are_typed_errors() {
    let w = common::weights(4, 128, 3);
    let good = IntAffineWeight::quantize(w.view(), 4, true, Granularity::Group(64)).unwrap();

    let mut bad = good.clone();
    bad.codes.truncate(3);
    let e = dequantize_emulated::<f16>(&QuantizedWeight::Int(bad)).unwrap_err();
    assert!(matches!(&e, CudaError::Core(LowbitError::ShapeMismatch { what, .. }) if what == "codes"), "{e}");

    let mut bad = good.clone();
    bad.g_idx = Some(vec![7; 128]); // only 2 groups per row
    let e = dequantize_emulated::<f16>(&QuantizedWeight::Int(bad)).unwrap_err();
    assert!(matches!(&e, CudaError::Core(LowbitError::InvalidValue { what, .. }) if what == "g_idx"), "{e}");

    let mut bad = good;
    bad.granularity = Granularity::Group(48);
    let e = dequantize_emulated::<f16>(&QuantizedWeight::Int(bad)).unwrap_err();
    assert!(matches!(e, CudaError::Core(LowbitError::InvalidGroupSize { group: 48, .. })), "{e}");
}
