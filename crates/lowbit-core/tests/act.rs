//! int8 activations (docs/formats.md "int8 activations").

mod common;

use common::*;
use lowbit_core::act::{ActGranularity, Int8Activations};
use ndarray::Array2;

#[test]
fn per_token_scale_is_absmax_over_127_and_codes_are_nearest() {
    let mut r = rng(1);
    let mut x = gaussian_matrix(&mut r, 6, 300, 2.0);
    for c in 0..300 {
        x[[2, c]] = 0.0; // all-zero row: s = 1
        x[[3, c]] = x[[3, c]].abs(); // positive row
        x[[4, c]] *= 1e-3;
    }
    x[[5, 17]] = -40.0; // negative absmax
    let a = Int8Activations::quantize_per_token(x.view()).unwrap();
    a.validate().unwrap();
    assert_eq!(a.granularity, ActGranularity::PerToken);
    assert_eq!((a.m, a.k, a.codes.len(), a.scales.len()), (6, 300, 1800, 6));
    let d = a.dequantize();
    for row in 0..6 {
        let absmax = x.row(row).iter().map(|v| v.abs()).fold(0f32, f32::max);
        let want = if absmax == 0.0 { 1.0 } else { absmax / 127.0 };
        assert_eq!(a.scales[row], want, "row {row}");
        assert_eq!(a.scale(row), want);
        let s = want as f64;
        for c in 0..300 {
            let q = a.codes[row * 300 + c] as i32;
            assert!((-127..=127).contains(&q));
            // Brute force: no code in [−127, 127] is closer.
            let v = x[[row, c]] as f64;
            let best = (-127..=127).map(|cand| (cand as f64 * s - v).abs()).fold(f64::INFINITY, f64::min);
            let err = (q as f64 * s - v).abs();
            assert!(err <= best + s * 2e-6, "row {row} col {c}: err {err} best {best}");
            assert!(err <= s * (0.5 + 2e-6));
            assert_eq!(d[[row, c]], q as f32 * a.scales[row], "dequant = f32(q)·s");
        }
    }
    // The absmax element maps to ±127 exactly, never −128.
    assert_eq!(a.codes[5 * 300 + 17], -127);
    assert!(a.codes.iter().all(|&q| q != i8::MIN));
    assert!(a.codes[2 * 300..3 * 300].iter().all(|&q| q == 0));
}

#[test]
fn rounding_is_half_to_even_on_exact_ties() {
    // Row absmax 127 -> s = 1 exactly; row absmax 63.5 -> s = 0.5 exactly.
    let ties1 = [0.5f32, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 126.5, -126.5, 127.0];
    let want1 = [0i8, 2, 2, 4, 0, -2, -2, -4, 126, -126, 127];
    let ties2 = [0.25f32, 0.75, 1.25, -0.25, -0.75, -1.25, 63.5];
    let want2 = [0i8, 2, 2, 0, -2, -2, 127];
    let mut x = Array2::<f32>::zeros((2, 11));
    for (i, &v) in ties1.iter().enumerate() {
        x[[0, i]] = v;
    }
    for (i, &v) in ties2.iter().enumerate() {
        x[[1, i]] = v;
    }
    let a = Int8Activations::quantize_per_token(x.view()).unwrap();
    assert_eq!(a.scales, vec![1.0, 0.5]);
    assert_eq!(&a.codes[..11], &want1);
    assert_eq!(&a.codes[11..11 + 7], &want2);

    // Per-tensor, scale 2: 1 -> 0.5 -> 0; 3 -> 1.5 -> 2; 5 -> 2.5 -> 2; −7 -> −3.5 -> −4.
    let x = Array2::from_shape_vec((1, 4), vec![1.0f32, 3.0, 5.0, -7.0]).unwrap();
    let a = Int8Activations::quantize_per_tensor(x.view(), 2.0).unwrap();
    assert_eq!(a.codes, vec![0, 2, 2, -4]);
    assert_eq!(a.granularity, ActGranularity::PerTensor);
    assert_eq!(a.scales, vec![2.0]);
}

#[test]
fn per_tensor_saturates_and_never_produces_minus_128() {
    let s = 0.1f32;
    let vals = [100.0f32, -100.0, 12.7, -12.7, 12.75, -12.75, -12.85, f32::MAX, -f32::MAX, 0.04, -0.06];
    let want = [127i8, -127, 127, -127, 127, -127, -127, 127, -127, 0, -1];
    let x = Array2::from_shape_vec((1, vals.len()), vals.to_vec()).unwrap();
    let a = Int8Activations::quantize_per_tensor(x.view(), s).unwrap();
    assert_eq!(a.codes, want.to_vec());
    a.validate().unwrap();
    // Random data far beyond the range: every code in [−127, 127].
    let x = gaussian_matrix(&mut rng(2), 8, 512, 100.0);
    let a = Int8Activations::quantize_per_tensor(x.view(), 0.01).unwrap();
    assert!(a.codes.iter().all(|&q| q >= -127));
    assert!(a.codes.iter().filter(|&&q| q == -127).count() > 100, "saturation exercised");
    for (q, v) in a.codes.iter().zip(x.iter()) {
        let want = (v / 0.01).round_ties_even().clamp(-127.0, 127.0) as i8;
        assert_eq!(*q, want);
    }
    let d = a.dequantize();
    assert_eq!(d[[0, 0]], a.codes[0] as f32 * 0.01);
}

#[test]
fn calibrated_per_tensor_scale() {
    let mut x = gaussian_matrix(&mut rng(3), 4, 64, 1.0);
    x[[2, 5]] = -9.0;
    let s = Int8Activations::calibrate_per_tensor(x.view()).unwrap();
    assert_eq!(s, 9.0 / 127.0);
    let a = Int8Activations::quantize_per_tensor(x.view(), s).unwrap();
    assert_eq!(a.codes[2 * 64 + 5], -127);
    assert_eq!(Int8Activations::calibrate_per_tensor(Array2::<f32>::zeros((2, 3)).view()).unwrap(), 1.0);
}

#[test]
fn codes_array_is_row_major() {
    let x = Array2::from_shape_vec((2, 3), vec![1.0f32, -1.0, 0.5, 0.0, 2.0, -2.0]).unwrap();
    let a = Int8Activations::quantize_per_token(x.view()).unwrap();
    let c = a.codes_array();
    assert_eq!(c.dim(), (2, 3));
    assert_eq!(c.row(0).to_vec(), vec![127, -127, 64]); // 0.5·127 = 63.5 -> 64 (even)
    assert_eq!(c.row(1).to_vec(), vec![0, 127, -127]);
}

#[test]
fn subnormal_rows_give_a_valid_result() {
    // absmax / 127 underflows to 0 in f32 for |x| < ~1.8e-43: the result must still validate (positive scale)
    // and dequantize to finite values within one scale step.
    let tiny = f32::from_bits(7); // ≈ 9.8e-45
    let x = Array2::from_shape_vec((2, 3), vec![tiny, -tiny, 0.0, 1.0, tiny, 0.0]).unwrap();
    let a = Int8Activations::quantize_per_token(x.view()).unwrap();
    a.validate().unwrap();
    for (d, v) in a.dequantize().iter().zip(x.iter()) {
        assert!(d.is_finite() && (d - v).abs() <= tiny, "{d} vs {v}");
    }
}
