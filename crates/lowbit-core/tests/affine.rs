//! INT affine weights (docs/formats.md "INT affine").

mod common;

use common::*;
use half::f16;
use lowbit_core::{Granularity, IntAffineWeight, QuantizedWeight, WeightScheme, quantize};
use ndarray::Array2;
use rand::Rng;
use rand::seq::SliceRandom;

/// Test matrix: Gaussian, all-positive, all-negative, zero group + exact zeros, small with an outlier, large.
fn test_matrix(seed: u64, k: usize) -> Array2<f32> {
    let mut r = rng(seed);
    let mut w = gaussian_matrix(&mut r, 6, k, 0.02);
    for c in 0..k {
        w[[1, c]] = w[[1, c]].abs() + 0.001;
        w[[2, c]] = -w[[2, c]].abs();
        if c < 32 || c.is_multiple_of(17) {
            w[[3, c]] = 0.0;
        }
        w[[4, c]] *= 0.01;
        w[[5, c]] *= 1000.0;
    }
    w[[4, 7]] = 5.0;
    w
}

/// Expected (scale, zero) of a group straight from the contract.
fn spec_params(vals: &[f32], bits: u32, symmetric: bool) -> (f32, u8) {
    if symmetric {
        let qmax = ((1u32 << (bits - 1)) - 1) as f32;
        let absmax = vals.iter().map(|v| v.abs()).fold(0f32, f32::max);
        (if absmax == 0.0 { 1.0 } else { f16r(absmax / qmax) }, 1u8 << (bits - 1))
    } else {
        let qmax = ((1u32 << bits) - 1) as f32;
        let lo = vals.iter().copied().fold(0f32, f32::min);
        let hi = vals.iter().copied().fold(0f32, f32::max);
        let s = if lo == 0.0 && hi == 0.0 { 1.0 } else { f16r((hi - lo) / qmax) };
        (s, (-lo / s).round_ties_even().clamp(0.0, qmax) as u8)
    }
}

#[test]
fn every_config_codes_scales_zeros_and_error_bound() {
    let k = 256;
    let mut worst_in_range = 0f64; // max err / s over in-range elements
    let mut saturated = 0usize;
    let mut max_rel = 0f64; // largest relative downward f16 rounding of a scale that saturated something
    for bits in 2..=8u32 {
        for symmetric in [true, false] {
            for gran in all_granularities() {
                let w = test_matrix(100 + bits as u64, k);
                let q = IntAffineWeight::quantize(w.view(), bits, symmetric, gran).unwrap();
                let tag = format!("b={bits} sym={symmetric} {gran:?}");
                let g = gran.group_len(k);
                let ng = k / g;
                assert_eq!(q.n_groups(), ng);
                assert_eq!((q.scales.len(), q.zeros.len()), (6 * ng, 6 * ng), "{tag}");
                assert_eq!(q.codes.len(), 6 * stream_words(k, bits), "{tag}");
                assert!(q.g_idx.is_none());
                let deq = q.dequantize();
                assert_bits_eq(&deq, &spec_dequant_int(&q), &tag);
                let top = (1u32 << bits) - 1;
                let lowest = if symmetric { 1 } else { 0 }; // symmetric never uses the most-negative code
                for r in 0..6 {
                    for gi in 0..ng {
                        let cols: Vec<usize> = (gi * g..(gi + 1) * g).collect();
                        let vals: Vec<f32> = cols.iter().map(|&c| w[[r, c]]).collect();
                        let (s_want, z_want) = spec_params(&vals, bits, symmetric);
                        let s = q.scales[r * ng + gi].to_f32();
                        let z = q.zeros[r * ng + gi];
                        assert_eq!(s, s_want, "{tag} scale row {r} group {gi}");
                        assert_eq!(z, z_want, "{tag} zero row {r} group {gi}");
                        if symmetric {
                            assert_eq!(z as u32, 1 << (bits - 1));
                        }
                        let qmax_range = if symmetric { ((1u32 << (bits - 1)) - 1) as f64 } else { top as f64 };
                        // The unrounded scale; the f16 rounding (relative 2^-11 for normal f16, more for
                        // subnormal f16 scales) is the only source of range overshoot.
                        let s_true = if symmetric {
                            vals.iter().map(|v| v.abs() as f64).fold(0.0, f64::max) / qmax_range
                        } else {
                            let lo = vals.iter().map(|&v| v as f64).fold(0.0, f64::min);
                            let hi = vals.iter().map(|&v| v as f64).fold(0.0, f64::max);
                            (hi - lo) / qmax_range
                        };
                        let rel = if s_true == 0.0 { 0.0 } else { (s_true / s as f64 - 1.0).max(0.0) };
                        for &c in &cols {
                            let code = q.code(r, c) as u32;
                            assert!((lowest..=top).contains(&code), "{tag}: code {code} out of range");
                            assert_eq!(code, stream_code(&q.codes, k, bits, r, c));
                            let (wv, sv) = (w[[r, c]] as f64, s as f64);
                            let err = (deq[[r, c]] as f64 - wv).abs();
                            // Brute force: no allowed code is (meaningfully) closer.
                            let best = (lowest..=top)
                                .map(|cand| ((cand as f64 - z as f64) * sv - wv).abs())
                                .fold(f64::INFINITY, f64::min);
                            let tol = sv * 3e-5 + wv.abs() * 1e-6;
                            assert!(err <= best + tol, "{tag} ({r},{c}): err {err} > best {best}");
                            // Error bound inside the representable range [(lowest − z − ½)s, (top − z + ½)s].
                            let x = wv / sv + z as f64;
                            if x >= lowest as f64 - 0.5 && x <= top as f64 + 0.5 {
                                assert!(err <= sv * 0.5 + tol, "{tag} ({r},{c}): err {err} > s/2 = {}", sv / 2.0);
                                worst_in_range = worst_in_range.max(err / sv);
                            } else {
                                saturated += 1;
                                assert!(code == lowest || code == top, "{tag}: out-of-range value not saturated");
                                // Overshoot only from rounding the scale down to f16 (and z to an integer).
                                let bound = sv * (0.5 + qmax_range * rel) + tol;
                                assert!(err <= bound, "{tag}: overshoot {err} > {bound} (s={sv:e} x={x})");
                                max_rel = max_rel.max(rel);
                            }
                            // Zero is exactly representable (asymmetric: code z) and exact zeros stay zero.
                            if wv == 0.0 {
                                assert_eq!(code, z as u32, "{tag}: 0.0 must map to the zero point");
                                assert_eq!(deq[[r, c]].to_bits(), 0, "{tag}: 0.0 must dequantize to +0.0");
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "INT affine: worst in-range |w − ŵ|/s = {worst_in_range:.6}, saturated elements = {saturated}, \
         max scale rounding behind a saturation = {max_rel:.2e}"
    );
    assert!(worst_in_range > 0.45, "the test data should exercise near-half errors");
}

#[test]
fn codes_follow_the_contract_formula() {
    // q = clamp(rne(w/s), ±qmax) + 2^(b−1) (sym) or clamp(rne(w/s) + z, 0, 2^b−1) (asym), with the f16 scale.
    for bits in 2..=8u32 {
        for symmetric in [true, false] {
            let w = test_matrix(200 + bits as u64, 128);
            let q = IntAffineWeight::quantize(w.view(), bits, symmetric, Granularity::Group(32)).unwrap();
            for r in 0..6 {
                for c in 0..128 {
                    let gi = r * 4 + c / 32;
                    let (s, z) = (q.scales[gi].to_f32(), q.zeros[gi] as f32);
                    let t = (w[[r, c]] / s).round_ties_even();
                    let want = if symmetric {
                        let m = ((1u32 << (bits - 1)) - 1) as f32;
                        t.clamp(-m, m) + z
                    } else {
                        (t + z).clamp(0.0, ((1u32 << bits) - 1) as f32)
                    };
                    assert_eq!(q.code(r, c) as f32, want, "b={bits} sym={symmetric} ({r},{c})");
                }
            }
        }
    }
}

#[test]
fn hand_worked_symmetric_4bit() {
    // absmax 7, qmax 7 -> s = 1, z = 8; rne with ties to even.
    let vals = [7.0f32, -7.0, 3.5, 1.75, 2.5, -2.5, 0.5, 1.5, -0.5, 6.5, -6.5, 0.0];
    let want = [15u8, 1, 12, 10, 10, 6, 8, 10, 8, 14, 2, 8];
    let mut row = vec![0.0f32; 32];
    row[..vals.len()].copy_from_slice(&vals);
    let w = Array2::from_shape_vec((1, 32), row).unwrap();
    let q = IntAffineWeight::quantize(w.view(), 4, true, Granularity::Group(32)).unwrap();
    assert_eq!(q.scales, vec![f16::ONE]);
    assert_eq!(q.zeros, vec![8]);
    assert_eq!(&q.unpacked_codes()[..vals.len()], &want);
}

#[test]
fn hand_worked_asymmetric() {
    // 2 bits: lo = −1, hi = 2 -> s = 1, z = 1.
    let vals = [2.0f32, -1.0, 0.5, 1.5, -0.5, 0.0];
    let mut row = vec![0.0f32; 32];
    row[..6].copy_from_slice(&vals);
    let w = Array2::from_shape_vec((1, 32), row).unwrap();
    let q = IntAffineWeight::quantize(w.view(), 2, false, Granularity::Group(32)).unwrap();
    assert_eq!((q.scales[0], q.zeros[0]), (f16::ONE, 1));
    assert_eq!(&q.unpacked_codes()[..6], &[3, 0, 1, 3, 1, 1]);
    assert_eq!(q.dequantize().row(0).iter().take(6).copied().collect::<Vec<_>>(), vec![2.0, -1.0, 0.0, 2.0, 0.0, 0.0]);

    // 3 bits: lo = −0.3, hi = 1.0 -> s = f16(1.3/7) = 0.1856689453125 (1.4853515625·2^-3), z = rne(1.6158) = 2.
    let mut row = vec![0.0f32; 32];
    row[0] = -0.3;
    row[1] = 1.0;
    let w = Array2::from_shape_vec((1, 32), row).unwrap();
    let q = IntAffineWeight::quantize(w.view(), 3, false, Granularity::Group(32)).unwrap();
    assert_eq!(q.scales[0].to_f32(), 1521.0 / 8192.0); // 0.1856689453125
    assert_eq!(q.zeros[0], 2);
    assert_eq!(q.code(0, 0), 0); // rne(−1.6158) = −2, + 2
    assert_eq!(q.code(0, 1), 7); // rne(5.386) = 5, + 2
    assert_eq!(q.code(0, 2), 2); // 0.0
    assert_eq!(q.dequantize()[[0, 0]], -2.0 * 1521.0 / 8192.0);
    assert_eq!(q.dequantize()[[0, 1]], 5.0 * 1521.0 / 8192.0);
}

#[test]
fn all_zero_group_gets_unit_scale_and_exact_zeros() {
    for bits in 2..=8u32 {
        for symmetric in [true, false] {
            let mut w = gaussian_matrix(&mut rng(3), 2, 64, 1.0);
            for c in 32..64 {
                w[[1, c]] = 0.0;
            }
            let q = IntAffineWeight::quantize(w.view(), bits, symmetric, Granularity::Group(32)).unwrap();
            assert_eq!(q.scales[3], f16::ONE);
            let z = q.zeros[3];
            if symmetric {
                assert_eq!(z as u32, 1 << (bits - 1));
            } else {
                assert_eq!(z, 0);
            }
            let d = q.dequantize();
            for c in 32..64 {
                assert_eq!(q.code(1, c), z);
                assert_eq!(d[[1, c]].to_bits(), 0);
            }
        }
    }
}

#[test]
fn act_order_groups_are_formed_from_permuted_columns() {
    let k = 256;
    for bits in [2u32, 3, 4, 8] {
        for symmetric in [true, false] {
            for gran in all_granularities() {
                let mut r = rng(300 + bits as u64);
                let w = gaussian_matrix(&mut r, 4, k, 0.1);
                let mut perm: Vec<usize> = (0..k).collect();
                perm.shuffle(&mut r);
                let q = IntAffineWeight::quantize_act_order(w.view(), bits, symmetric, gran, &perm).unwrap();
                let tag = format!("b={bits} sym={symmetric} {gran:?}");
                let g = gran.group_len(k);
                let ng = k / g;
                // g_idx[perm[i]] = i / G.
                let g_idx = q.g_idx.as_ref().expect("g_idx");
                for (i, &p) in perm.iter().enumerate() {
                    assert_eq!(g_idx[p] as usize, i / g, "{tag}");
                }
                for row in 0..4 {
                    for j in 0..ng {
                        let members: Vec<f32> = perm[j * g..(j + 1) * g].iter().map(|&c| w[[row, c]]).collect();
                        if symmetric {
                            // absmax of the permuted columns / qmax, rounded to f16.
                            let absmax = members.iter().map(|v| v.abs()).fold(0f32, f32::max);
                            let qmax = ((1u32 << (bits - 1)) - 1) as f32;
                            assert_eq!(q.scales[row * ng + j].to_f32(), f16r(absmax / qmax), "{tag} group {j}");
                        } else {
                            assert_eq!(
                                (q.scales[row * ng + j].to_f32(), q.zeros[row * ng + j]),
                                spec_params(&members, bits, false),
                                "{tag} group {j}"
                            );
                        }
                    }
                }
                // Equivalent to plain quantization of the column-permuted matrix, then un-permuting.
                let wp = Array2::from_shape_fn((4, k), |(row, i)| w[[row, perm[i]]]);
                let plain = IntAffineWeight::quantize(wp.view(), bits, symmetric, gran).unwrap();
                assert_eq!(plain.scales, q.scales, "{tag}");
                assert_eq!(plain.zeros, q.zeros, "{tag}");
                let (dq, dp) = (q.dequantize(), plain.dequantize());
                for row in 0..4 {
                    for (i, &p) in perm.iter().enumerate() {
                        assert_eq!(q.code(row, p), plain.code(row, i), "{tag}");
                        assert_eq!(dq[[row, p]].to_bits(), dp[[row, i]].to_bits(), "{tag}");
                    }
                }
                assert_bits_eq(&dq, &spec_dequant_int(&q), &tag);
            }
        }
    }
}

#[test]
fn act_order_identity_permutation_equals_plain() {
    let k = 128;
    for bits in 2..=8u32 {
        for symmetric in [true, false] {
            for gran in all_granularities() {
                let w = test_matrix(400 + bits as u64, k);
                let ident: Vec<usize> = (0..k).collect();
                let a = IntAffineWeight::quantize_act_order(w.view(), bits, symmetric, gran, &ident).unwrap();
                let p = IntAffineWeight::quantize(w.view(), bits, symmetric, gran).unwrap();
                let g = gran.group_len(k);
                assert_eq!(a.g_idx, Some((0..k).map(|c| (c / g) as u32).collect()));
                assert_eq!((&a.codes, &a.scales, &a.zeros), (&p.codes, &p.scales, &p.zeros));
                assert_bits_eq(&a.dequantize(), &p.dequantize(), "identity act-order");
            }
        }
    }
}

/// A matrix already on a 4-bit asymmetric g32 grid (what a GPTQ/AWQ-exported checkpoint such as SmolLM2's
/// holds): every group has codes 0 and 15 present, an f16 scale and a u8 zero.
#[test]
fn grid_matrix_is_reproduced_exactly_by_w4_int_asym_g32() {
    let mut r = rng(500);
    let (n, k, g) = (8, 256, 32);
    let ng = k / g;
    let mut codes = vec![0u8; n * k];
    let mut scales = Vec::new();
    let mut zeros = Vec::new();
    for row in 0..n {
        for j in 0..ng {
            let s = f16::from_bits(r.random_range(0x1000..0x3000)); // ~6e-5 .. 0.125
            let z = r.random_range(0..16u8);
            let base = row * k + j * g;
            for c in 0..g {
                codes[base + c] = r.random_range(0..16);
            }
            let a = r.random_range(0..g);
            let b = (a + 1 + r.random_range(0..g - 1)) % g;
            codes[base + a] = 0;
            codes[base + b] = 15;
            scales.push(s);
            zeros.push(z);
        }
    }
    let w = Array2::from_shape_fn((n, k), |(row, c)| {
        let i = row * ng + c / g;
        (codes[row * k + c] as i32 - zeros[i] as i32) as f32 * scales[i].to_f32()
    });
    let scheme: WeightScheme = "w4-int-asym-g32".parse().unwrap();
    let QuantizedWeight::Int(q) = quantize(w.view(), &scheme).unwrap() else { panic!("not INT") };
    assert_eq!(q.scales, scales);
    assert_eq!(q.zeros, zeros);
    assert_eq!(q.unpacked_codes(), codes);
    assert_bits_eq(&q.dequantize(), &w, "re-quantized grid matrix");
}

#[test]
fn tiny_values_still_give_a_valid_finite_result() {
    // absmax / qmax underflows f16: the scale must stay positive (validate() passes) and finite.
    for bits in 2..=8u32 {
        for symmetric in [true, false] {
            let w = Array2::from_shape_fn((1, 32), |(_, c)| if c == 0 { 1e-9f32 } else { -3e-10 });
            let q = IntAffineWeight::quantize(w.view(), bits, symmetric, Granularity::Group(32)).unwrap();
            q.validate().unwrap();
            assert!(q.scales[0].to_f32() > 0.0);
            for (a, b) in q.dequantize().iter().zip(w.iter()) {
                assert!(a.is_finite() && (a - b).abs() <= 1e-9 + q.scales[0].to_f32() * 0.5);
            }
        }
    }
}

#[test]
fn from_codes_round_trips_and_storage_bytes() {
    let w = test_matrix(600, 128);
    for gran in all_granularities() {
        let q = IntAffineWeight::quantize(w.view(), 3, false, gran).unwrap();
        let back = IntAffineWeight::from_codes(
            q.n,
            q.k,
            q.bits,
            q.symmetric,
            q.granularity,
            &q.unpacked_codes(),
            q.scales.clone(),
            q.zeros.clone(),
            None,
        )
        .unwrap();
        assert_eq!(back, q);
    }
    // n = 4, K = 128, 3 bits, g32 asym: codes 4·12 words = 192 B, scales 16·2 = 32 B, zeros 16 B.
    let q = IntAffineWeight::quantize(w.slice(ndarray::s![..4, ..]), 3, false, Granularity::Group(32)).unwrap();
    assert_eq!(q.storage_bytes(), 240);
    // Symmetric: zeros are implied and not counted.
    let q = IntAffineWeight::quantize(w.slice(ndarray::s![..4, ..]), 3, true, Granularity::Group(32)).unwrap();
    assert_eq!(q.storage_bytes(), 224);
    // act-order adds 4 B per column.
    let perm: Vec<usize> = (0..128).rev().collect();
    let q = IntAffineWeight::quantize_act_order(w.slice(ndarray::s![..4, ..]), 3, true, Granularity::Group(32), &perm)
        .unwrap();
    assert_eq!(q.storage_bytes(), 224 + 512);
}
