//! Reference GEMMs (`reference.rs`) and error metrics (`metrics.rs`).

mod common;

use common::*;
use half::{bf16, f16};
use lowbit_core::metrics::{max_abs_error, rel_fro_error, report, sqnr_db};
use lowbit_core::reference::{self, Activations, gemm_f64, int8_gemm_exact};
use lowbit_core::{
    BipolarMatrix, Granularity, Int8Activations, IntAffineWeight, LutWeight, MixedWeight, QuantizedWeight,
};
use ndarray::{Array2, array};
use rand::Rng;
use rand::seq::SliceRandom;

#[test]
fn gemm_f64_hand_example() {
    // X[2,3] · W[2,3]ᵀ: row 0 = [1−3, 2+2] = [−2, 4]; row 1 = [4−6, 8+5] = [−2, 13].
    let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    let w = array![[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]];
    assert_eq!(gemm_f64(x.view(), w.view()).unwrap(), array![[-2.0, 4.0], [-2.0, 13.0]]);
    // M = 1, N = 3, K = 1.
    let y = gemm_f64(array![[2.0]].view(), array![[3.0], [-1.0], [0.5]].view()).unwrap();
    assert_eq!(y, array![[6.0, -2.0, 1.0]]);
}

fn weights(k: usize) -> Vec<(&'static str, QuantizedWeight)> {
    let mut r = rng(99);
    let w = gaussian_matrix(&mut r, 5, k, 0.05);
    let mut perm: Vec<usize> = (0..k).collect();
    perm.shuffle(&mut r);
    let int4 = IntAffineWeight::quantize(w.view(), 4, false, Granularity::Group(32)).unwrap();
    let lut3 = [-1.0f32, -0.6, -0.3, -0.1, 0.1, 0.3, 0.6, 1.0];
    vec![
        (
            "int3-sym-g32",
            QuantizedWeight::Int(IntAffineWeight::quantize(w.view(), 3, true, Granularity::Group(32)).unwrap()),
        ),
        ("int4-asym-g32", QuantizedWeight::Int(int4.clone())),
        (
            "int4-asym-g64-actorder",
            QuantizedWeight::Int(
                IntAffineWeight::quantize_act_order(w.view(), 4, false, Granularity::Group(64), &perm).unwrap(),
            ),
        ),
        (
            "int8-sym-pc",
            QuantizedWeight::Int(IntAffineWeight::quantize(w.view(), 8, true, Granularity::PerChannel).unwrap()),
        ),
        (
            "bipolar3-g32",
            QuantizedWeight::Bipolar(BipolarMatrix::quantize(w.view(), 3, Granularity::Group(32)).unwrap()),
        ),
        ("bipolar-from-int4", QuantizedWeight::Bipolar(BipolarMatrix::from_int_affine(&int4).unwrap())),
        ("mixed3-g32", QuantizedWeight::Mixed(MixedWeight::quantize(w.view(), 3, 32).unwrap())),
        ("mixed4-g128", QuantizedWeight::Mixed(MixedWeight::quantize(w.view(), 4, 128).unwrap())),
        ("nf4-g64", QuantizedWeight::Lut(LutWeight::quantize_nf4(w.view(), Granularity::Group(64)).unwrap())),
        ("lut3-pc", QuantizedWeight::Lut(LutWeight::quantize(w.view(), &lut3, Granularity::PerChannel).unwrap())),
    ]
}

fn spec_dequant_weight(q: &QuantizedWeight) -> Array2<f64> {
    match q {
        QuantizedWeight::Int(w) => spec_dequant_int(w),
        QuantizedWeight::Bipolar(w) => spec_dequant_bipolar(w),
        QuantizedWeight::Mixed(w) => spec_dequant_mixed(w),
        QuantizedWeight::Lut(w) => spec_dequant_lut(w),
    }
    .mapv(f64::from)
}

fn activations(k: usize) -> Vec<(&'static str, Activations, Array2<f64>)> {
    let mut r = rng(7);
    let x = gaussian_matrix(&mut r, 3, k, 1.5);
    let x16 = x.mapv(f16::from_f32);
    let xb = x.mapv(bf16::from_f32);
    let tok = Int8Activations::quantize_per_token(x.view()).unwrap();
    let ten = Int8Activations::quantize_per_tensor(x.view(), 0.02).unwrap();
    let bip = BipolarMatrix::quantize(x.view(), 4, Granularity::PerChannel).unwrap();
    let xs = Array2::from_shape_fn((3, k), |_| r.random_range(-4i8..4));
    let bip_off =
        BipolarMatrix::from_signed_int(xs.view(), 3, Granularity::PerChannel, &[0.5, 0.25, 0.125], &[0.1, -0.2, 0.0])
            .unwrap();
    // Independent dequantizations: f16/bf16 widen exactly; int8 = f32(q)·s; bipolar = fma(value, s, o).
    let int8_deq = |a: &Int8Activations, per_token: bool| {
        Array2::from_shape_fn((a.m, a.k), |(i, t)| {
            let s = if per_token { a.scales[i] } else { a.scales[0] };
            (a.codes[i * a.k + t] as f32 * s) as f64
        })
    };
    vec![
        ("f32", Activations::F32(x.clone()), x.mapv(f64::from)),
        ("f16", Activations::F16(x16.clone()), x16.mapv(|v| v.to_f64())),
        ("bf16", Activations::Bf16(xb.clone()), xb.mapv(|v| v.to_f64())),
        ("int8-token", Activations::Int8(tok.clone()), int8_deq(&tok, true)),
        ("int8-tensor", Activations::Int8(ten.clone()), int8_deq(&ten, false)),
        ("bipolar4", Activations::Bipolar(bip.clone()), spec_dequant_bipolar(&bip).mapv(f64::from)),
        ("bipolar3-offsets", Activations::Bipolar(bip_off.clone()), spec_dequant_bipolar(&bip_off).mapv(f64::from)),
    ]
}

#[test]
fn gemm_every_weight_format_times_every_activation_format() {
    let k = 128;
    let ws = weights(k);
    let xs = activations(k);
    for (wn, w) in &ws {
        let wd = spec_dequant_weight(w);
        assert_eq!(w.dequantize().mapv(f64::from), wd, "{wn}: dequantize vs contract");
        for (xn, x, xd) in &xs {
            assert_eq!(x.shape(), (3, k));
            assert_eq!(&x.dequantize(), xd, "{xn}: activation dequantize vs contract");
            let y = reference::gemm(x, w).unwrap();
            let want = naive_gemm(xd.view(), wd.view());
            assert_eq!(y.dim(), (3, 5));
            assert_eq!(y, want, "{wn} × {xn}");
        }
    }
}

#[test]
fn int8_exact_gemm_matches_brute_force_and_scaled_reference() {
    let (m, n, k) = (4, 6, 200);
    let mut r = rng(3);
    let x = gaussian_matrix(&mut r, m, k, 3.0);
    let acts = Int8Activations::quantize_per_tensor(x.view(), 1.0 / 64.0).unwrap();
    // INT8 symmetric per-channel weight with power-of-two f16 scales: every product and sum is exact in f64.
    let codes: Vec<u8> = (0..n * k).map(|_| r.random_range(1..=255u32) as u8).collect();
    let scales: Vec<f16> = (0..n).map(|i| f16::from_f32(2f32.powi(-(i as i32) - 3))).collect();
    let w =
        IntAffineWeight::from_codes(n, k, 8, true, Granularity::PerChannel, &codes, scales.clone(), vec![128; n], None)
            .unwrap();
    let w_int = Array2::from_shape_fn((n, k), |(j, t)| codes[j * k + t] as i32 - 128);
    let exact = int8_gemm_exact(&acts, w_int.view()).unwrap();
    for i in 0..m {
        for j in 0..n {
            let brute: i64 = (0..k).map(|t| acts.codes[i * k + t] as i64 * w_int[[j, t]] as i64).sum();
            assert_eq!(exact[[i, j]], brute);
        }
    }
    let y = reference::gemm(&Activations::Int8(acts.clone()), &QuantizedWeight::Int(w)).unwrap();
    for i in 0..m {
        for j in 0..n {
            assert_eq!(y[[i, j]], exact[[i, j]] as f64 / 64.0 * scales[j].to_f64(), "({i},{j})");
        }
    }
    // Per-token: Y = s_m · s_n · Y_int up to f32 rounding of the dequantized operands.
    let tok = Int8Activations::quantize_per_token(x.view()).unwrap();
    let exact = int8_gemm_exact(&tok, w_int.view()).unwrap();
    let w =
        IntAffineWeight::from_codes(n, k, 8, true, Granularity::PerChannel, &codes, scales.clone(), vec![128; n], None)
            .unwrap();
    let y = reference::gemm(&Activations::Int8(tok.clone()), &QuantizedWeight::Int(w)).unwrap();
    for i in 0..m {
        for j in 0..n {
            let want = exact[[i, j]] as f64 * tok.scales[i] as f64 * scales[j].to_f64();
            let bound = k as f64 * 127.0 * 127.0 * tok.scales[i] as f64 * scales[j].to_f64() * 1e-7;
            assert!((y[[i, j]] - want).abs() <= bound, "({i},{j}): {} vs {want}", y[[i, j]]);
        }
    }
}

#[test]
fn metrics_hand_examples() {
    let a = array![[1.0f32, 2.0], [3.0, 4.0]]; // Σ a² = 30
    let b = array![[1.0f64, 2.0], [3.0, 5.0]]; // noise Σ = 1
    assert_eq!(sqnr_db(a.view(), b.view()).unwrap(), 10.0 * 30f64.log10());
    approx::assert_abs_diff_eq!(sqnr_db(a.view(), b.view()).unwrap(), 14.771_212_547_196_624, epsilon = 1e-12);
    approx::assert_abs_diff_eq!(rel_fro_error(a.view(), b.view()).unwrap(), (1.0f64 / 30.0).sqrt(), epsilon = 1e-15);
    assert_eq!(max_abs_error(a.view(), b.view()).unwrap(), 1.0);
    // Identical: +inf dB, 0, 0.
    assert_eq!(sqnr_db(a.view(), a.view()).unwrap(), f64::INFINITY);
    assert_eq!(rel_fro_error(a.view(), a.view()).unwrap(), 0.0);
    assert_eq!(max_abs_error(a.view(), a.view()).unwrap(), 0.0);
    // Test all zeros against [[3, 4]]: noise = signal = 25 -> 0 dB, rel 1, max 4.
    let r = report(array![[3.0f32, 4.0]].view(), array![[0.0f32, 0.0]].view()).unwrap();
    assert_eq!((r.sqnr_db, r.rel_error, r.max_abs), (0.0, 1.0, 4.0));
    // A negative error counts by magnitude: [[1, −2]] vs [[1, 1]]: max 3, noise 9, signal 5.
    let r = report(array![[1.0f64, -2.0]].view(), array![[1.0f64, 1.0]].view()).unwrap();
    assert_eq!(r.max_abs, 3.0);
    approx::assert_abs_diff_eq!(r.rel_error, (9.0f64 / 5.0).sqrt(), epsilon = 1e-15);
    approx::assert_abs_diff_eq!(r.sqnr_db, 10.0 * (5.0f64 / 9.0).log10(), epsilon = 1e-12);
    // Zero reference: identical -> inf / 0; different -> −inf dB and infinite relative error.
    let z = Array2::<f32>::zeros((2, 2));
    assert_eq!(sqnr_db(z.view(), z.view()).unwrap(), f64::INFINITY);
    assert_eq!(rel_fro_error(z.view(), z.view()).unwrap(), 0.0);
    assert_eq!(sqnr_db(z.view(), a.view()).unwrap(), f64::NEG_INFINITY);
    assert_eq!(rel_fro_error(z.view(), a.view()).unwrap(), f64::INFINITY);
}

#[test]
fn quantization_metrics_are_sane_on_gaussian_data() {
    // Uniform-quantizer rule of thumb: INT8 per-channel SQNR on Gaussian data is far above INT4's; both finite.
    let w = gaussian_matrix(&mut rng(5), 16, 512, 1.0);
    let q8 = IntAffineWeight::quantize(w.view(), 8, true, Granularity::PerChannel).unwrap().dequantize();
    let q4 = IntAffineWeight::quantize(w.view(), 4, true, Granularity::PerChannel).unwrap().dequantize();
    let (s8, s4) = (sqnr_db(w.view(), q8.view()).unwrap(), sqnr_db(w.view(), q4.view()).unwrap());
    eprintln!("N(0,1) 16x512 per-channel SQNR: INT8 {s8:.2} dB, INT4 {s4:.2} dB");
    assert!(s8 > s4 + 20.0 && s4 > 10.0, "INT8 {s8} dB, INT4 {s4} dB");
}
