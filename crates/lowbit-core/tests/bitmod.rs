//! BitMoD mixed FP3/FP4 datatypes (algorithms.md §2.1–2.2; docs/formats.md "BitMoD mixed datatypes").

mod common;

use common::*;
use half::f16;
use lowbit_core::bitmod::{
    FP3_MAGNITUDES, FP3_SPECIAL, FP4_MAGNITUDES, FP4_SPECIAL, TYPE_NAMES, grid_value, qmax, value_table,
};
use lowbit_core::{Granularity, IntAffineWeight, MixedWeight};
use ndarray::Array2;
use rand::Rng;

#[test]
fn value_tables_all_codes_all_selectors() {
    for sel in 0..4u8 {
        for code in 0..16u8 {
            assert_eq!(
                grid_value(4, sel, code) as i32,
                FP4_TABLE[sel as usize][code as usize],
                "FP4 sel {sel} code {code}"
            );
        }
        for code in 0..8u8 {
            assert_eq!(
                grid_value(3, sel, code) as i32,
                FP3_TABLE[sel as usize][code as usize],
                "FP3 sel {sel} code {code}"
            );
        }
        let t4: Vec<i32> = value_table(4, sel).iter().map(|&v| v as i32).collect();
        assert_eq!(t4, FP4_TABLE[sel as usize].to_vec());
        let t3: Vec<i32> = value_table(3, sel).iter().map(|&v| v as i32).collect();
        assert_eq!(t3, FP3_TABLE[sel as usize].to_vec());
    }
    assert_eq!(FP4_MAGNITUDES, [0, 1, 2, 3, 4, 6, 8, 12]);
    assert_eq!(FP4_SPECIAL, [10, -10, 16, -16]);
    assert_eq!(FP3_MAGNITUDES, [0, 1, 2, 4]);
    assert_eq!(FP3_SPECIAL, [3, -3, 6, -6]);
    assert_eq!(TYPE_NAMES, ["ER+", "ER-", "EA+", "EA-"]);
}

#[test]
fn sorted_value_sets_match_algorithms_md_table() {
    // algorithms.md §2.1, "Code grid in software" column, literally.
    let fp4: [[i32; 16]; 4] = [
        [-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 10, 12],
        [-12, -10, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12],
        [-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12, 16],
        [-16, -12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12],
    ];
    let fp3: [[i32; 8]; 4] = [
        [-4, -2, -1, 0, 1, 2, 3, 4],
        [-4, -3, -2, -1, 0, 1, 2, 4],
        [-4, -2, -1, 0, 1, 2, 4, 6],
        [-6, -4, -2, -1, 0, 1, 2, 4],
    ];
    for sel in 0..4u8 {
        let mut v: Vec<i32> = value_table(4, sel).iter().map(|&x| x as i32).collect();
        v.sort();
        assert_eq!(v, fp4[sel as usize].to_vec(), "FP4 {}", TYPE_NAMES[sel as usize]);
        let mut v: Vec<i32> = value_table(3, sel).iter().map(|&x| x as i32).collect();
        v.sort();
        assert_eq!(v, fp3[sel as usize].to_vec(), "FP3 {}", TYPE_NAMES[sel as usize]);
    }
    // Paper units: FP4 grid / 2 = E2M1 {0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6} plus SV +5, −5, +8, −8.
    let e2m1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
    let sv = [5.0, -5.0, 8.0, -8.0];
    for sel in 0..4u8 {
        for code in 0..16u8 {
            let v = grid_value(4, sel, code) as f64 / 2.0;
            if code == 8 {
                assert_eq!(v, sv[sel as usize]);
            } else {
                let mag = e2m1[(code & 7) as usize];
                assert_eq!(v, if code & 8 != 0 { -mag } else { mag });
            }
        }
    }
    assert_eq!((0..4).map(|s| qmax(4, s)).collect::<Vec<_>>(), vec![12.0, 12.0, 16.0, 16.0]);
    assert_eq!((0..4).map(|s| qmax(3, s)).collect::<Vec<_>>(), vec![4.0, 4.0, 6.0, 6.0]);
}

/// Nearest table entry to `x` by brute force (ties to the lower value): (code, value).
fn nearest(table: &[i32], x: f32) -> (u8, i32) {
    let mut best: Option<(f64, i32, u8)> = None;
    for (code, &v) in table.iter().enumerate() {
        let d = (x as f64 - v as f64).abs();
        let better = match best {
            None => true,
            Some((bd, bv, _)) => d < bd || (d == bd && v < bv),
        };
        if better {
            best = Some((d, v, code as u8));
        }
    }
    let (_, v, c) = best.unwrap();
    (c, v)
}

/// Brute-force evaluation of one type on a group with scale `s`: (codes, Σ (ŵ − w)² in f64).
fn eval_type(vals: &[f32], table: &[i32], s: f32) -> (Vec<u8>, f64) {
    let mut codes = Vec::with_capacity(vals.len());
    let mut err = 0f64;
    for &v in vals {
        let x = if s > 0.0 { v / s } else { 0.0 };
        let (c, g) = nearest(table, x);
        codes.push(c);
        let d = (g as f32 * s) as f64 - v as f64;
        err += d * d;
    }
    (codes, err)
}

/// Expected Δ_ch of a row from the contract's first pass (float scales Δ_T = absmax / qmax_T).
fn expected_channel_scale(row: &[f32], bits: u32, group: usize) -> f32 {
    let mut dmax = 0f32;
    for vals in row.chunks(group) {
        let absmax = vals.iter().map(|v| v.abs()).fold(0f32, f32::max);
        let mut best = (f64::INFINITY, 0f32);
        for sel in 0..4 {
            let d = absmax / qmax(bits, sel as u8);
            let (_, e) = eval_type(vals, &mixed_table(bits, sel), d);
            if e < best.0 {
                best = (e, d);
            }
        }
        dmax = dmax.max(best.1);
    }
    if dmax == 0.0 { 1.0 } else { f16r(dmax / 255.0) }
}

fn selection_matrix(seed: u64, k: usize) -> Array2<f32> {
    let mut r = rng(seed);
    let n = 16;
    let mut w = gaussian_matrix(&mut r, n, k, 0.02);
    for c in 0..k {
        let g = (c / 32) as f32;
        w[[1, c]] += 0.015; // skewed positive
        w[[2, c]] -= 0.015; // skewed negative
        w[[3, c]] = w[[3, c]].powi(3) * 2500.0; // heavy-tailed
        w[[4, c]] *= 1.0 + 3.0 * g; // group magnitudes vary: q_g spans a wide range
        w[[5, c]] = r.random_range(-0.03f32..0.03); // uniform
        if c < 64 {
            w[[6, c]] = 0.0; // all-zero groups
        }
        w[[7, c]] = if c.is_multiple_of(32) { 0.05 } else { w[[7, c]] * 0.1 }; // one outlier per group
        w[[8, c]] = if c.is_multiple_of(32) { -0.05 } else { w[[8, c]] * 0.1 };
    }
    w
}

#[test]
fn selection_is_minimum_error_under_the_stored_scale() {
    let mut hist_all = [0usize; 4];
    let mut near_ties = 0usize;
    for bits in [3u32, 4] {
        for group in [32usize, 64, 128] {
            let k = 512;
            let w = selection_matrix(10 * bits as u64 + group as u64, k);
            let m = MixedWeight::quantize(w.view(), bits, group).unwrap();
            let tag = format!("W{bits} g{group}");
            let ng = k / group;
            assert_eq!(m.group_scales.len(), m.n * ng);
            assert_eq!(m.selectors.len(), m.n * ng.div_ceil(4));
            assert_eq!(m.channel_scales.len(), m.n);
            let mut hist = [0usize; 4];
            for r in 0..m.n {
                let row: Vec<f32> = w.row(r).to_vec();
                let ch = m.channel_scales[r];
                assert_eq!(ch.to_f32(), expected_channel_scale(&row, bits, group), "{tag} Δ_ch row {r}");
                let chf = ch.to_f32();
                for (gi, vals) in row.chunks(group).enumerate() {
                    let absmax = vals.iter().map(|v| v.abs()).fold(0f32, f32::max);
                    let evals: Vec<(u8, Vec<u8>, f64)> = (0..4)
                        .map(|sel| {
                            let q = (absmax / qmax(bits, sel as u8) / chf).round_ties_even().clamp(0.0, 255.0) as u8;
                            let (codes, e) = eval_type(vals, &mixed_table(bits, sel), q as f32 * chf);
                            (q, codes, e)
                        })
                        .collect();
                    let sel = spec_selector(&m, r, gi);
                    assert_eq!(sel as u8, m.selector(r, gi));
                    hist[sel] += 1;
                    let min = evals.iter().map(|e| e.2).fold(f64::INFINITY, f64::min);
                    let e_sel = evals[sel].2;
                    let tol = 1e-6 * min + 1e-30;
                    assert!(e_sel <= min + tol, "{tag} row {r} group {gi}: chose {sel} err {e_sel}, min {min}");
                    for (t, ev) in evals.iter().enumerate().take(sel) {
                        // An earlier type with equal error must have been kept; a clearly better one is a bug.
                        assert!(ev.2 > e_sel - tol, "{tag} row {r} group {gi}: type {t} better than {sel}");
                        if ev.2 == e_sel {
                            panic!("{tag} row {r} group {gi}: exact tie with earlier type {t} not kept");
                        }
                        if ev.2 <= e_sel + tol {
                            near_ties += 1;
                        }
                    }
                    assert_eq!(m.group_scales[r * ng + gi], evals[sel].0, "{tag} q_g row {r} group {gi}");
                    let codes: Vec<u8> =
                        (gi * group..(gi + 1) * group).map(|c| stream_code(&m.codes, k, bits, r, c) as u8).collect();
                    assert_eq!(codes, evals[sel].1, "{tag} codes row {r} group {gi}");
                }
            }
            assert_eq!(m.type_histogram(), hist, "{tag}");
            for t in 0..4 {
                hist_all[t] += hist[t];
            }
            assert_bits_eq(&m.dequantize(), &spec_dequant_mixed(&m), &tag);
        }
    }
    eprintln!("BitMoD selection: type histogram (ER+, ER-, EA+, EA-) = {hist_all:?}, near-ties = {near_ties}");
    assert!(hist_all.iter().all(|&h| h > 0), "every datatype should be exercised: {hist_all:?}");
}

#[test]
fn nearest_search_ties_go_to_the_lower_value() {
    // Unit u = 255·2^-10: with absmax = 12u (FP4) the first pass gives Δ = u, Δ_ch = f16(u/255) = 2^-10 exactly
    // and q_g = 255, so the stored scale is exactly u and w/s is an exact half-integer at every tie point.
    let u = 255.0f32 / 1024.0;
    // (bits, expected selector, [(x, expected grid value)], filler values that pin the type)
    type Case = (u32, usize, Vec<(f32, i32)>, Vec<f32>);
    let cases: Vec<Case> = vec![
        (
            4,
            0, // ER+: +10 available; negative side −8, −12
            vec![
                (0.5, 0),
                (1.5, 1),
                (2.5, 2),
                (3.5, 3),
                (5.0, 4),
                (7.0, 6),
                (9.0, 8),
                (11.0, 10),
                (-0.5, -1),
                (-1.5, -2),
                (-2.5, -3),
                (-3.5, -4),
                (-5.0, -6),
                (-7.0, -8),
                (-10.0, -12),
            ],
            vec![12.0, -12.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0],
        ),
        (
            4,
            1, // ER−: −10 available; positive side 8, 12
            vec![
                (-11.0, -12),
                (-9.0, -10),
                (-7.0, -8),
                (-5.0, -6),
                (10.0, 8),
                (7.0, 6),
                (5.0, 4),
                (0.5, 0),
                (-0.5, -1),
            ],
            vec![12.0, -12.0, -10.0, -10.0, -10.0, -10.0, -10.0, -10.0],
        ),
        (
            3,
            0, // FP3 ER+: [−4, −2, −1, 0, 1, 2, 3, 4]
            vec![(0.5, 0), (1.5, 1), (2.5, 2), (3.5, 3), (-0.5, -1), (-1.5, -2), (-3.0, -4)],
            vec![4.0, -4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0],
        ),
        (
            3,
            1, // FP3 ER−: [−4, −3, −2, −1, 0, 1, 2, 4]
            vec![(-3.5, -4), (-2.5, -3), (3.0, 2), (0.5, 0), (-0.5, -1), (1.5, 1)],
            vec![4.0, -4.0, -3.0, -3.0, -3.0, -3.0, -3.0, -3.0, -3.0, -3.0],
        ),
    ];
    for (bits, want_sel, ties, filler) in cases {
        let mut row = vec![0.0f32; 32];
        for (i, &f) in filler.iter().enumerate() {
            row[i] = f * u;
        }
        for (i, &(x, _)) in ties.iter().enumerate() {
            row[filler.len() + i] = x * u;
        }
        let w = Array2::from_shape_vec((1, 32), row).unwrap();
        let m = MixedWeight::quantize(w.view(), bits, 32).unwrap();
        assert_eq!(m.selector(0, 0) as usize, want_sel, "W{bits}: the filler should pin the type");
        assert_eq!(m.channel_scales[0], f16::from_f32(1.0 / 1024.0));
        assert_eq!(m.group_scales[0], 255);
        let d = m.dequantize();
        for (i, &(x, want)) in ties.iter().enumerate() {
            let c = filler.len() + i;
            let got = grid_value(bits, want_sel as u8, m.code(0, c)) as i32;
            assert_eq!(got, want, "W{bits} sel {want_sel}: x = {x} should round to {want}");
            assert_eq!(d[[0, c]], want as f32 * u);
        }
    }
}

#[test]
fn exact_tie_between_types_keeps_the_earlier_type() {
    // Every value lies on the common part of the ER+ and ER− grids: both have zero error, ER+ (0) must win.
    let u = 255.0f32 / 1024.0;
    let fp4 = [12.0f32, -12.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0];
    let fp3 = [4.0f32, -4.0, 0.0, 1.0, 2.0, -1.0, -2.0];
    for (bits, vals) in [(4u32, &fp4[..]), (3, &fp3[..])] {
        let mut row = vec![0.0f32; 64];
        for (i, v) in vals.iter().enumerate() {
            row[i] = v * u;
            row[32 + i] = -v * u;
        }
        let w = Array2::from_shape_vec((1, 64), row).unwrap();
        let m = MixedWeight::quantize(w.view(), bits, 32).unwrap();
        assert_eq!((m.selector(0, 0), m.selector(0, 1)), (0, 0), "W{bits}");
        assert_eq!(m.dequantize(), w, "exactly representable (the input holds −0.0, so compare values)");
        // Adding one −10u (FP4) / −3u (FP3) breaks the tie in favour of ER− (1).
        let mut w2 = w.clone();
        w2[[0, 31]] = if bits == 4 { -10.0 * u } else { -3.0 * u };
        let m2 = MixedWeight::quantize(w2.view(), bits, 32).unwrap();
        assert_eq!(m2.selector(0, 0), 1, "W{bits}");
        assert_eq!(m2.dequantize(), w2, "exactly representable with ER−");
    }
}

#[test]
fn selector_packing_two_bits_per_group_lsb_first() {
    // Groups designed to select a known type (absmax A = 1): ER+, ER−, EA+, EA−.
    fn group(kind: usize) -> Vec<f32> {
        let mut v = vec![0.0f32; 32];
        let (a, b, fill) = match kind {
            0 => (1.0, -1.0, 10.0 / 12.0), // +10 on the ×12 grid: only ER+
            1 => (1.0, -1.0, -10.0 / 12.0),
            2 => (1.0, -0.75, 0.5), // +16, −12, +8 on the ×16 grid: only EA+
            3 => (-1.0, 0.75, -0.5),
            _ => unreachable!(),
        };
        v[0] = a;
        v[1] = b;
        for x in v.iter_mut().skip(2).take(20) {
            *x = fill;
        }
        v
    }
    let order = [[0, 1, 2, 3, 1], [3, 2, 1, 0, 2]];
    let mut data = Vec::new();
    for row in order {
        for kind in row {
            data.extend(group(kind));
        }
    }
    let w = Array2::from_shape_vec((2, 160), data).unwrap();
    let m = MixedWeight::quantize(w.view(), 4, 32).unwrap();
    // Row 0: 0 | 1<<2 | 2<<4 | 3<<6 = 0xE4, then group 4 (ER−) alone = 0x01.
    // Row 1: 3 | 2<<2 | 1<<4 | 0<<6 = 0x1B, then 0x02. Unused high bits stay zero.
    assert_eq!(m.selectors, vec![0xE4, 0x01, 0x1B, 0x02]);
    assert_eq!(m.type_histogram(), [2, 3, 3, 2]);
    for (r, row) in order.iter().enumerate() {
        for (g, &kind) in row.iter().enumerate() {
            assert_eq!(m.selector(r, g) as usize, kind);
        }
    }
}

#[test]
fn second_level_scale_u8_times_f16() {
    // Groups of very different magnitude in one row: Δ_ch from the largest, small groups get small q_g,
    // and a group far below Δ_ch·0.5 gets q_g = 0 (stored scale 0: dequantizes to zeros).
    let mut r = rng(77);
    let mut w = gaussian_matrix(&mut r, 1, 128, 1.0);
    for c in 0..128 {
        w[[0, c]] *= [1.0, 0.01, 0.0005, 0.3][c / 32];
    }
    let m = MixedWeight::quantize(w.view(), 4, 32).unwrap();
    let row: Vec<f32> = w.row(0).to_vec();
    assert_eq!(m.channel_scales[0].to_f32(), expected_channel_scale(&row, 4, 32));
    let chf = m.channel_scales[0].to_f32();
    for (gi, vals) in row.chunks(32).enumerate() {
        let absmax = vals.iter().map(|v| v.abs()).fold(0f32, f32::max);
        let sel = m.selector(0, gi);
        let want = (absmax / qmax(4, sel) / chf).round_ties_even().clamp(0.0, 255.0) as u8;
        assert_eq!(m.group_scales[gi], want, "group {gi}");
    }
    assert!(m.group_scales[0] >= 191, "the largest group sets Δ_ch, q_g near 255: {:?}", m.group_scales);
    assert!(m.group_scales[1] <= 4 && m.group_scales[1] >= 1, "{:?}", m.group_scales);
    assert_eq!(m.group_scales[2], 0, "{:?}", m.group_scales);
    let d = m.dequantize();
    for c in 64..96 {
        assert_eq!(d[[0, c]], 0.0);
    }
    // Dequantization is exact: grid · q_g · Δ_ch computed in f64 equals the f32 result.
    for c in 0..128 {
        let g = c / 32;
        let v = grid_value(4, m.selector(0, g), m.code(0, c)) as f64;
        assert_eq!(d[[0, c]] as f64, v * m.group_scales[g] as f64 * chf as f64);
    }
}

#[test]
fn all_zero_row_gets_unit_channel_scale() {
    let w = Array2::<f32>::zeros((2, 64));
    let m = MixedWeight::quantize(w.view(), 3, 32).unwrap();
    assert_eq!(m.channel_scales, vec![f16::ONE; 2]);
    assert_eq!(m.group_scales, vec![0; 4]);
    assert!(m.dequantize().iter().all(|&v| v == 0.0));
}

/// Total squared error of one fixed datatype with float per-group scales Δ = absmax / qmax_T (no second level).
fn fixed_type_sse(w: &Array2<f32>, bits: u32, sel: usize, group: usize) -> f64 {
    let mut sse = 0f64;
    for row in w.rows() {
        let row = row.to_vec();
        for vals in row.chunks(group) {
            let absmax = vals.iter().map(|v| v.abs()).fold(0f32, f32::max);
            sse += eval_type(vals, &mixed_table(bits, sel), absmax / qmax(bits, sel as u8)).1;
        }
    }
    sse
}

fn sse(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    a.iter().zip(b.iter()).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
}

#[test]
fn mixed_beats_every_fixed_datatype_on_gaussian_data() {
    let w = gaussian_matrix(&mut rng(2024), 64, 1024, 1.0);
    for bits in [3u32, 4] {
        let m = MixedWeight::quantize(w.view(), bits, 128).unwrap();
        let mixed = sse(&m.dequantize(), &w) / w.len() as f64;
        let fixed: Vec<f64> = (0..4).map(|s| fixed_type_sse(&w, bits, s, 128) / w.len() as f64).collect();
        eprintln!("W{bits} g128 Gaussian MSE: mixed {mixed:.6}, fixed ER+/ER-/EA+/EA- {fixed:.6?}");
        for (s, &f) in fixed.iter().enumerate() {
            assert!(mixed <= f, "W{bits}: mixed {mixed} > fixed {} {f}", TYPE_NAMES[s]);
        }
    }
}

#[test]
fn w3_mixed_beats_w3_int_symmetric_on_gaussian_g128() {
    let w = gaussian_matrix(&mut rng(7), 64, 1024, 1.0);
    let m = MixedWeight::quantize(w.view(), 3, 128).unwrap();
    let int_sym = IntAffineWeight::quantize(w.view(), 3, true, Granularity::Group(128)).unwrap();
    let int_asym = IntAffineWeight::quantize(w.view(), 3, false, Granularity::Group(128)).unwrap();
    let n = w.len() as f64;
    let (e_mixed, e_sym, e_asym) =
        (sse(&m.dequantize(), &w) / n, sse(&int_sym.dequantize(), &w) / n, sse(&int_asym.dequantize(), &w) / n);
    eprintln!("W3 g128 N(0,1) MSE: mixed {e_mixed:.5}, INT3-sym {e_sym:.5}, INT3-asym {e_asym:.5}");
    assert!(e_mixed < e_sym, "mixed {e_mixed} vs INT3 sym {e_sym}");
}

#[test]
fn storage_bytes_hand_computed() {
    // n = 2, K = 160 (5 groups of 32), 4 bits: codes 2·20 words = 160 B, q_g 10 B, selectors 2·2 = 4 B,
    // channel scales 2·2 = 4 B.
    let w = gaussian_matrix(&mut rng(1), 2, 160, 1.0);
    let m = MixedWeight::quantize(w.view(), 4, 32).unwrap();
    assert_eq!(m.storage_bytes(), 160 + 10 + 4 + 4);
    // 3 bits, K = 128, g128: 12 words = 48 B per row, 1 q_g, 1 selector byte, 2 B Δ_ch.
    let w = gaussian_matrix(&mut rng(1), 2, 128, 1.0);
    let m = MixedWeight::quantize(w.view(), 3, 128).unwrap();
    assert_eq!(m.storage_bytes(), 2 * (48 + 1 + 1 + 2));
}
