//! bipolar-INT (APT-LLM, algorithms.md §1.1–1.2; docs/formats.md "bipolar-INT").

mod common;

use common::*;
use half::f16;
use lowbit_core::bipolar::{code_from_signed, encode, value, value_from_bits};
use lowbit_core::reference::{self, Activations, bipolar_gemm_exact, bipolar_gemm_popcount};
use lowbit_core::{BipolarMatrix, Granularity, IntAffineWeight, LowbitError, QuantizedWeight};
use ndarray::{Array2, ArrayView2};
use rand::Rng;

#[test]
fn all_codes_value_matches_definition_for_every_width() {
    for p in 1..=8u32 {
        let mut seen = std::collections::BTreeSet::new();
        for code in 0..(1u32 << p) {
            let def = bipolar_def(code, p);
            assert_eq!(value(code as u8, p) as i64, def, "value p={p} code={code}");
            assert_eq!(value_from_bits(code as u8, p) as i64, def, "value_from_bits p={p} code={code}");
            assert_eq!(def.rem_euclid(2), 1, "odd");
            assert!(def.abs() < (1 << p));
            assert_eq!(encode(def as i32, p).unwrap() as u32, code, "encode inverse p={p} code={code}");
            seen.insert(def);
        }
        // Every odd integer in [-(2^p - 1), 2^p - 1], each exactly once, no zero.
        let want: Vec<i64> = (-((1i64 << p) - 1)..=(1i64 << p) - 1).filter(|v| v % 2 != 0).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), want, "p={p}");
    }
}

#[test]
fn value_tables_from_algorithms_md() {
    // algorithms.md §1.1 table, literally.
    assert_eq!((0..2).map(|c| value(c, 1)).collect::<Vec<_>>(), vec![-1, 1]);
    assert_eq!((0..4).map(|c| value(c, 2)).collect::<Vec<_>>(), vec![-3, -1, 1, 3]);
    assert_eq!((0..8).map(|c| value(c, 3)).collect::<Vec<_>>(), vec![-7, -5, -3, -1, 1, 3, 5, 7]);
    assert_eq!(
        (0..16).map(|c| value(c, 4)).collect::<Vec<_>>(),
        vec![-15, -13, -11, -9, -7, -5, -3, -1, 1, 3, 5, 7, 9, 11, 13, 15]
    );
}

#[test]
fn encode_rejects_even_and_out_of_range_values() {
    for p in 1..=8u32 {
        let max = (1i32 << p) - 1;
        for v in [0, 2, -2, max + 2, -max - 2, max + 1] {
            assert!(matches!(encode(v, p), Err(LowbitError::InvalidValue { .. })), "p={p} v={v}");
        }
    }
}

#[test]
fn code_from_signed_is_offset_binary_and_msb_flip() {
    for p in 1..=8u32 {
        let half = 1i32 << (p - 1);
        for x in -half..half {
            let c = code_from_signed(x, p) as i32;
            assert_eq!(c, x + half, "x̂ + 2^(p-1), p={p} x={x}");
            // Two's-complement bit pattern of x in p bits, computed arithmetically, with bit p-1 toggled.
            let twos = x.rem_euclid(1 << p);
            let flipped = if twos >= half { twos - half } else { twos + half };
            assert_eq!(c, flipped, "MSB flip p={p} x={x}");
            // The bipolar value of the flipped code is 2x̂ + 1 (the paper's lossless conversion).
            assert_eq!(bipolar_def(c as u32, p), 2 * x as i64 + 1);
        }
    }
}

/// The nearest odd integer(s) to `t` within `[-max, max]` by brute force over every odd value.
fn nearest_odd_brute(t: f64, max: i64) -> (f64, Vec<i64>) {
    let odds: Vec<i64> = (-max..=max).filter(|v| v % 2 != 0).collect();
    let best = odds.iter().map(|&o| (t - o as f64).abs()).fold(f64::INFINITY, f64::min);
    (best, odds.into_iter().filter(|&o| (t - o as f64).abs() == best).collect())
}

#[test]
fn symmetric_quantizer_picks_nearest_odd_integer() {
    let mut r = rng(11);
    for p in 1..=8u32 {
        for gran in all_granularities() {
            let (n, k) = (4, 256);
            let mut w = gaussian_matrix(&mut r, n, k, 0.7);
            // An all-zero group in row 3 (first group), exact even-integer ties elsewhere are tested below.
            let g = gran.group_len(k);
            for c in 0..g {
                w[[3, c]] = 0.0;
            }
            let b = BipolarMatrix::quantize(w.view(), p, gran).unwrap();
            assert!(b.offsets.is_none());
            assert_eq!(b.scales.len(), n * (k / g));
            let max = (1i64 << p) - 1;
            let deq = b.dequantize();
            for row in 0..n {
                for gi in 0..k / g {
                    let cols = gi * g..(gi + 1) * g;
                    let absmax = cols.clone().map(|c| w[[row, c]].abs()).fold(0f32, f32::max);
                    let delta = b.scales[row * (k / g) + gi];
                    assert_eq!(delta, absmax / max as f32, "Δ p={p} {gran:?} row {row} group {gi}");
                    if absmax == 0.0 {
                        // All-zero group: Δ = 0, every element dequantizes to exactly +0.0.
                        assert!(cols.clone().all(|c| deq[[row, c]].to_bits() == 0), "p={p} zero group");
                        continue;
                    }
                    for c in cols {
                        let t = (w[[row, c]] / delta) as f64; // the f32 quotient the quantizer sees
                        let v = bipolar_def(b.code(row, c) as u32, p);
                        let (best, cands) = nearest_odd_brute(t, max);
                        assert!(cands.contains(&v), "p={p} t={t}: got {v}, nearest {cands:?}");
                        if cands.len() == 2 {
                            // An exact tie (t an even integer): the formula floor(t/2) rounds up.
                            assert_eq!(v, cands[1], "tie p={p} t={t}");
                        }
                        // Dequantization error is at most one grid unit (odd integers are 2 apart).
                        let err = (deq[[row, c]] as f64 - w[[row, c]] as f64).abs();
                        assert!(err <= delta as f64 * (1.0 + 1e-5), "p={p} err {err} > Δ {delta}");
                        assert!(best <= 1.0 + 1e-6);
                    }
                }
            }
        }
    }
}

#[test]
fn symmetric_quantizer_hand_example_and_ties() {
    // p = 2, K = 4 per-channel: Δ = 1/3 (f32), t = [-3, -1.5, 0.6, 3] -> nearest odd [-3, -1, 1, 3] -> codes 0..4.
    let w = Array2::from_shape_vec((1, 4), vec![-1.0f32, -0.5, 0.2, 1.0]).unwrap();
    let b = BipolarMatrix::quantize(w.view(), 2, Granularity::PerChannel).unwrap();
    assert_eq!(b.codes(), vec![0, 1, 2, 3]);
    assert_eq!(b.scales, vec![1.0f32 / 3.0]);
    // p = 3, Δ = 1 (absmax 7): exact ties at even t go to the upper odd value: 0 -> +1, 2 -> 3, -2 -> -1,
    // -6 -> -5, 6 -> 7; 7 and -7 exact.
    let w = Array2::from_shape_vec((1, 7), vec![0.0f32, 2.0, -2.0, -6.0, 6.0, 7.0, -7.0]).unwrap();
    let b = BipolarMatrix::quantize(w.view(), 3, Granularity::PerChannel).unwrap();
    let vals: Vec<i32> = b.values().iter().copied().collect();
    assert_eq!(vals, vec![1, 3, -1, -5, 7, 7, -7]);
    assert_eq!(b.scales, vec![1.0]);
}

#[test]
fn all_zero_group_dequantizes_to_exact_zeros() {
    // Zero is not representable in bipolar-INT; a zero group must not come back as ±Δ with Δ = 1.
    for p in 1..=8u32 {
        let mut w = gaussian_matrix(&mut rng(12), 2, 64, 0.01);
        for c in 0..32 {
            w[[0, c]] = 0.0;
        }
        for c in 0..64 {
            w[[1, c]] = 0.0; // whole row, per-channel too
        }
        for gran in [Granularity::Group(32), Granularity::PerChannel] {
            let b = BipolarMatrix::quantize(w.view(), p, gran).unwrap();
            b.validate().unwrap();
            let d = b.dequantize();
            if gran == Granularity::Group(32) {
                for c in 0..32 {
                    assert_eq!(d[[0, c]], 0.0, "p={p} {gran:?} col {c}");
                }
            }
            assert!(d.row(1).iter().all(|&v| v == 0.0), "p={p} {gran:?}: zero row");
            // The non-zero group is unaffected: error within one grid unit.
            if gran == Granularity::Group(32) {
                let delta = b.scales[1] as f64;
                assert!(delta > 0.0);
                for c in 32..64 {
                    assert!((d[[0, c]] as f64 - w[[0, c]] as f64).abs() <= delta * (1.0 + 1e-5));
                }
            }
        }
    }
    // A group whose Δ = absmax / (2^p − 1) underflows (subnormal absmax) behaves the same: exact zeros,
    // an error no larger than the tiny absmax, never a NaN or ±Δ·(2^p − 1) garbage.
    let tiny = f32::from_bits(3);
    let w = Array2::from_shape_vec((1, 3), vec![tiny, -tiny, 0.0]).unwrap();
    let b = BipolarMatrix::quantize(w.view(), 8, Granularity::PerChannel).unwrap();
    for (d, v) in b.dequantize().iter().zip(w.iter()) {
        assert!(d.is_finite() && (d - v).abs() <= tiny);
    }
}

#[test]
fn symmetric_quantizer_uses_all_codes() {
    for p in 1..=8u32 {
        // A per-channel row spanning [-1, 1] densely: every odd level is the nearest for some sample.
        let k = 4 << p;
        let w = Array2::from_shape_fn((1, k), |(_, c)| -1.0 + 2.0 * c as f32 / (k - 1) as f32);
        let b = BipolarMatrix::quantize(w.view(), p, Granularity::PerChannel).unwrap();
        let mut used = vec![false; 1 << p];
        for c in b.codes() {
            used[c as usize] = true;
        }
        assert!(
            used.iter().all(|&u| u),
            "p={p}: unused codes {:?}",
            (0..1 << p).filter(|&c| !used[c]).collect::<Vec<_>>()
        );
    }
}

#[test]
fn plane_layout_and_popcounts() {
    let mut r = rng(5);
    for p in 1..=8u32 {
        let (n, k) = (3, 77);
        let codes: Vec<u8> = (0..n * k).map(|_| r.random_range(0..(1u32 << p)) as u8).collect();
        let b = BipolarMatrix::from_codes(n, k, p, Granularity::PerChannel, &codes, vec![1.0; n], None).unwrap();
        assert_eq!(b.planes, spec_pack_planes(&codes, k, p));
        assert_eq!(b.codes(), codes);
        let pc = b.plane_popcounts();
        for i in 0..p as usize {
            for row in 0..n {
                let brute = (0..k).filter(|&c| (codes[row * k + c] >> i) & 1 == 1).count();
                assert_eq!(pc[i * n + row] as usize, brute);
            }
        }
        let vals = b.values();
        for row in 0..n {
            for c in 0..k {
                assert_eq!(vals[[row, c]] as i64, bipolar_def(codes[row * k + c] as u32, p));
            }
        }
    }
}

#[test]
fn from_int_affine_is_bit_identical_for_every_config() {
    let mut r = rng(21);
    for bits in 2..=8u32 {
        for symmetric in [true, false] {
            for gran in all_granularities() {
                let mut w = gaussian_matrix(&mut r, 5, 256, 0.05);
                // A shifted row (asymmetric range) and an all-zero group.
                for c in 0..256 {
                    w[[1, c]] += 0.08;
                    w[[4, c]] = if c < 32 { 0.0 } else { w[[4, c]] };
                }
                let iw = IntAffineWeight::quantize(w.view(), bits, symmetric, gran).unwrap();
                let b = BipolarMatrix::from_int_affine(&iw).unwrap();
                assert_eq!(b.bits, bits);
                assert_eq!(b.codes(), iw.unpacked_codes(), "codes kept (u = q)");
                // scale = s/2, offset = s·((2^b − 1)/2 − z), both exact (checked in f64).
                let offs = b.offsets.as_ref().expect("offsets present");
                for (i, (s, &z)) in iw.scales.iter().zip(&iw.zeros).enumerate() {
                    let s = s.to_f64();
                    assert_eq!(b.scales[i] as f64, s / 2.0);
                    assert_eq!(offs[i] as f64, s * (((1u32 << bits) - 1) as f64 / 2.0 - z as f64));
                }
                assert_bits_eq(&b.dequantize(), &iw.dequantize(), &format!("b={bits} sym={symmetric} {gran:?}"));
                assert_bits_eq(&b.dequantize(), &spec_dequant_int(&iw), "vs spec INT dequant");
            }
        }
    }
}

#[test]
fn from_int_affine_bit_identical_with_extreme_f16_scales() {
    // Hand-built weights whose scales cover the whole f16 range (subnormals to 65504) and every zero point.
    let mut r = rng(22);
    for bits in 2..=8u32 {
        let (n, k) = (16, 64);
        let gran = Granularity::Group(32);
        let ng = n * 2;
        let codes: Vec<u8> = (0..n * k).map(|_| r.random_range(0..(1u32 << bits)) as u8).collect();
        let scales: Vec<f16> = (0..ng)
            .map(|i| match i % 4 {
                0 => f16::from_bits(r.random_range(1..0x0400)), // subnormal
                1 => f16::MAX,
                _ => f16::from_bits(r.random_range(0x0400..0x7C00)), // any normal
            })
            .collect();
        let zeros: Vec<u8> = (0..ng).map(|_| r.random_range(0..(1u32 << bits)) as u8).collect();
        let iw = IntAffineWeight::from_codes(n, k, bits, false, gran, &codes, scales, zeros, None).unwrap();
        let b = BipolarMatrix::from_int_affine(&iw).unwrap();
        assert_bits_eq(&b.dequantize(), &iw.dequantize(), &format!("bits={bits}"));
    }
}

#[test]
fn from_int_affine_rejects_act_order() {
    let w = gaussian_matrix(&mut rng(1), 2, 64, 1.0);
    let perm: Vec<usize> = (0..64).rev().collect();
    let iw = IntAffineWeight::quantize_act_order(w.view(), 4, true, Granularity::Group(32), &perm).unwrap();
    assert!(matches!(BipolarMatrix::from_int_affine(&iw), Err(LowbitError::Unsupported(_))));
}

#[test]
fn from_signed_int_codes_and_dequant() {
    let mut r = rng(31);
    for p in 1..=8u32 {
        for gran in [Granularity::Group(32), Granularity::PerChannel] {
            let (n, k) = (3, 64);
            let ng = gran.n_groups(k);
            let half = 1i32 << (p - 1);
            let xs = Array2::from_shape_fn((n, k), |_| r.random_range(-half..half) as i8);
            let s: Vec<f32> = (0..n * ng).map(|_| r.random_range(0.001f32..2.0)).collect();
            let z: Vec<f32> = (0..n * ng).map(|_| r.random_range(-1.0f32..1.0)).collect();
            let b = BipolarMatrix::from_signed_int(xs.view(), p, gran, &s, &z).unwrap();
            let d = b.dequantize();
            let g = gran.group_len(k);
            for row in 0..n {
                for c in 0..k {
                    let x = xs[[row, c]] as i32;
                    assert_eq!(b.code(row, c) as i32, x + half, "u = x̂ + 2^(p-1)");
                    let gi = row * ng + c / g;
                    let want = s[gi] as f64 * x as f64 + z[gi] as f64;
                    let tol =
                        4.0 * f32::EPSILON as f64 * (s[gi].abs() as f64 * (half as f64 + 1.0) + z[gi].abs() as f64);
                    assert!((d[[row, c]] as f64 - want).abs() <= tol, "p={p}: {} vs {want}", d[[row, c]]);
                }
            }
            // scale = s/2 and offset = z − s/2 exactly as specified.
            for i in 0..n * ng {
                assert_eq!(b.scales[i], s[i] * 0.5);
                assert_eq!(b.offsets.as_ref().unwrap()[i], z[i] - s[i] * 0.5);
            }
        }
    }
}

#[test]
fn from_signed_int_exact_for_dyadic_parameters() {
    // s, z multiples of 2^-6 with few significant bits: s·x̂ + z is exact in f32.
    let xs = Array2::from_shape_vec((1, 4), vec![-4i8, -1, 0, 3]).unwrap();
    let b = BipolarMatrix::from_signed_int(xs.view(), 3, Granularity::PerChannel, &[0.75], &[-0.125]).unwrap();
    let d: Vec<f32> = b.dequantize().iter().copied().collect();
    assert_eq!(d, vec![-3.125, -0.875, -0.125, 2.125]);
    assert_eq!(b.codes(), vec![0, 3, 4, 7]);
}

fn random_bipolar(seed: u64, n: usize, k: usize, p: u32, offsets: bool) -> BipolarMatrix {
    let mut r = rng(seed);
    let codes: Vec<u8> = (0..n * k).map(|_| r.random_range(0..(1u32 << p)) as u8).collect();
    // Dyadic scales/offsets with few significant bits keep every product exact in f32 and f64.
    let scales: Vec<f32> = (0..n).map(|_| r.random_range(1..64) as f32 / 64.0).collect();
    let offs = offsets.then(|| (0..n).map(|_| r.random_range(-32..32) as f32 / 64.0).collect());
    BipolarMatrix::from_codes(n, k, p, Granularity::PerChannel, &codes, scales, offs).unwrap()
}

fn brute_values(b: &BipolarMatrix) -> Array2<i64> {
    Array2::from_shape_fn((b.n, b.k), |(r, c)| bipolar_def(spec_plane_code(&b.planes, b.n, b.k, b.bits, r, c), b.bits))
}

fn brute_int_gemm(x: ArrayView2<i64>, w: ArrayView2<i64>) -> Array2<i64> {
    Array2::from_shape_fn((x.nrows(), w.nrows()), |(i, j)| (0..x.ncols()).map(|t| x[[i, t]] * w[[j, t]]).sum())
}

#[test]
fn popcount_gemm_equals_exact_gemm_for_random_widths() {
    let mut r = rng(41);
    let ks = [1usize, 5, 31, 33, 100, 257];
    for p in 1..=8u32 {
        for q in 1..=8u32 {
            let k = ks[r.random_range(0..ks.len())];
            let x = random_bipolar(r.random(), 3, k, p, false);
            let w = random_bipolar(r.random(), 5, k, q, false);
            let exact = bipolar_gemm_exact(&x, &w).unwrap();
            let pop = bipolar_gemm_popcount(&x, &w).unwrap();
            let brute = brute_int_gemm(brute_values(&x).view(), brute_values(&w).view());
            assert_eq!(exact, brute, "exact vs brute p={p} q={q} K={k}");
            assert_eq!(pop, exact, "popcount vs exact p={p} q={q} K={k}");
        }
    }
}

#[test]
fn popcount_gemm_extremes_all_ones_and_all_zeros() {
    // All codes max (value 2^p − 1) against all codes 0 (value −(2^q − 1)): Y = −K·(2^p−1)(2^q−1).
    for (p, q, k) in [(8u32, 8u32, 1000usize), (1, 8, 33), (8, 1, 31), (3, 5, 97)] {
        let x = BipolarMatrix::from_codes(
            1,
            k,
            p,
            Granularity::PerChannel,
            &vec![((1u32 << p) - 1) as u8; k],
            vec![1.0],
            None,
        )
        .unwrap();
        let w =
            BipolarMatrix::from_codes(2, k, q, Granularity::PerChannel, &vec![0u8; 2 * k], vec![1.0; 2], None).unwrap();
        let want = -(k as i64) * ((1i64 << p) - 1) * ((1i64 << q) - 1);
        assert_eq!(bipolar_gemm_popcount(&x, &w).unwrap(), Array2::from_elem((1, 2), want));
        assert_eq!(bipolar_gemm_exact(&x, &w).unwrap(), Array2::from_elem((1, 2), want));
    }
}

#[test]
fn dequantized_reference_gemm_matches_integer_product_with_scales_and_offsets() {
    // algorithms.md §1.2 step 6: Y = a_x·a_w·Y_int + a_x·b_w·S_x[m] + b_x·a_w·S_w[n] + K·b_x·b_w.
    for (seed, p, q, k) in [(1u64, 2u32, 3u32, 45usize), (2, 8, 1, 70), (3, 4, 4, 129), (4, 1, 1, 33)] {
        for offsets in [false, true] {
            let x = random_bipolar(seed, 4, k, p, offsets);
            let w = random_bipolar(seed + 100, 3, k, q, offsets);
            let y = reference::gemm(&Activations::Bipolar(x.clone()), &QuantizedWeight::Bipolar(w.clone())).unwrap();
            let yi = bipolar_gemm_exact(&x, &w).unwrap();
            let (vx, vw) = (brute_values(&x), brute_values(&w));
            let bx = x.offsets.clone().unwrap_or(vec![0.0; x.n]);
            let bw = w.offsets.clone().unwrap_or(vec![0.0; w.n]);
            for m in 0..x.n {
                let sx: i64 = vx.row(m).sum();
                for n in 0..w.n {
                    let sw: i64 = vw.row(n).sum();
                    let (ax, aw) = (x.scales[m] as f64, w.scales[n] as f64);
                    let want = ax * aw * yi[[m, n]] as f64
                        + ax * bw[n] as f64 * sx as f64
                        + bx[m] as f64 * aw * sw as f64
                        + k as f64 * bx[m] as f64 * bw[n] as f64;
                    // Every term is a small dyadic rational: exact in f64.
                    assert_eq!(y[[m, n]], want, "p={p} q={q} K={k} offsets={offsets} ({m},{n})");
                }
            }
        }
    }
}

#[test]
fn dequantize_matches_spec_fma() {
    let mut r = rng(51);
    for p in 1..=8u32 {
        let (n, k) = (3, 96);
        let codes: Vec<u8> = (0..n * k).map(|_| r.random_range(0..(1u32 << p)) as u8).collect();
        let scales: Vec<f32> = (0..n * 3).map(|_| r.random_range(-3.0f32..3.0)).collect();
        let offs: Vec<f32> = (0..n * 3).map(|_| r.random_range(-3.0f32..3.0)).collect();
        let b = BipolarMatrix::from_codes(n, k, p, Granularity::Group(32), &codes, scales, Some(offs)).unwrap();
        assert_bits_eq(&b.dequantize(), &spec_dequant_bipolar(&b), &format!("p={p}"));
    }
}

#[test]
fn storage_bytes_hand_computed() {
    // p = 3, n = 2, K = 40: planes 3·2·2 words = 48 B; per-channel f32 scales 8 B; no offsets.
    let b = BipolarMatrix::from_codes(2, 40, 3, Granularity::PerChannel, &[0u8; 80], vec![1.0; 2], None).unwrap();
    assert_eq!(b.storage_bytes(), 56);
    let b = BipolarMatrix::from_codes(2, 64, 2, Granularity::Group(32), &[0u8; 128], vec![1.0; 4], Some(vec![0.0; 4]))
        .unwrap();
    // planes 2·2·2 = 8 words = 32 B, scales 16 B, offsets 16 B.
    assert_eq!(b.storage_bytes(), 64);
}
