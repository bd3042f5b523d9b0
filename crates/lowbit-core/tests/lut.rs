//! NF4 and custom lookup tables (docs/formats.md "LUT formats").

mod common;

use common::*;
use half::f16;
use lowbit_core::lut::NF4;
use lowbit_core::{Granularity, LutWeight, QuantizedWeight, SchemeKind};
use ndarray::Array2;
use rand::Rng;

/// QLoRA's NF4 table (bitsandbytes `NF4` constants, as printed in float64).
const QLORA_NF4: [f64; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

#[test]
fn nf4_table_values() {
    assert_eq!(NF4.len(), 16);
    for (i, (&a, &b)) in NF4.iter().zip(&QLORA_NF4).enumerate() {
        assert_eq!(a, b as f32, "entry {i}");
    }
    assert!(NF4.windows(2).all(|w| w[0] < w[1]), "strictly ascending");
    assert_eq!((NF4[0], NF4[7], NF4[15]), (-1.0, 0.0, 1.0));
    assert_eq!(NF4.iter().filter(|&&v| v == 0.0).count(), 1);
    // 7 negative and 8 positive levels (the asymmetry of NF4).
    assert_eq!(NF4.iter().filter(|&&v| v < 0.0).count(), 7);
}

/// Nearest entry of `lut` to `x` by brute force in f64 (ties to the lower entry).
fn nearest_index(lut: &[f32], x: f32) -> usize {
    let mut best = 0;
    for i in 1..lut.len() {
        if (x as f64 - lut[i] as f64).abs() < (x as f64 - lut[best] as f64).abs() {
            best = i;
        }
    }
    best
}

/// A one-row, one-group (32) weight whose absmax is exactly 1 (so the f16 scale is 1) holding `xs`.
fn unit_scale_row(xs: &[f32]) -> Array2<f32> {
    assert!(xs.len() < 32);
    let mut row = vec![0.0f32; 32];
    row[31] = 1.0;
    row[..xs.len()].copy_from_slice(xs);
    Array2::from_shape_vec((1, 32), row).unwrap()
}

#[test]
fn nf4_nearest_with_ties_to_lower_at_every_midpoint() {
    let mut checked_ties = 0;
    let mut rounded_up = 0; // pairs whose f32 midpoint lies above the true midpoint
    for i in 0..15 {
        let (a, b) = (NF4[i], NF4[i + 1]);
        let mid = (a as f64 + b as f64) / 2.0; // exact in f64
        let m32 = mid as f32;
        let mut xs = vec![m32.next_down(), m32, m32.next_up(), (a + b) * 0.5];
        if m32 as f64 == mid {
            checked_ties += 1;
        }
        if ((a + b) * 0.5) as f64 > mid {
            rounded_up += 1;
        }
        xs.dedup();
        let w = unit_scale_row(&xs);
        let q = LutWeight::quantize_nf4(w.view(), Granularity::Group(32)).unwrap();
        assert_eq!(q.scales, vec![f16::ONE]);
        for (c, &x) in xs.iter().enumerate() {
            let got = q.code(0, c) as usize;
            let want = nearest_index(&NF4, x);
            let (da, db) = ((x as f64 - a as f64).abs(), (x as f64 - b as f64).abs());
            assert_eq!(got, want, "pair {i} ({a}, {b}): x = {x:e} (|x−a| = {da:e}, |x−b| = {db:e})");
            if da == db {
                assert_eq!(got, i, "exact tie must go to the lower entry");
            }
        }
    }
    eprintln!(
        "NF4: {checked_ties} of 15 midpoints are exact in f32 (exact ties tested); \
         {rounded_up} f32 midpoints round above the true midpoint"
    );
    assert!(checked_ties > 0);
}

#[test]
fn nf4_random_values_quantize_to_the_nearest_entry() {
    let mut r = rng(9);
    let xs: Vec<f32> = (0..31).map(|_| r.random_range(-1.0f32..1.0)).collect();
    for chunk in xs.chunks(31) {
        let w = unit_scale_row(chunk);
        let q = LutWeight::quantize_nf4(w.view(), Granularity::Group(32)).unwrap();
        for (c, &x) in chunk.iter().enumerate() {
            assert_eq!(q.code(0, c) as usize, nearest_index(&NF4, x), "x = {x}");
        }
    }
    // General data: x = w / f16(absmax) (the f32 quotient), nearest entry.
    let w = gaussian_matrix(&mut r, 4, 256, 0.3);
    for gran in all_granularities() {
        let q = LutWeight::quantize_nf4(w.view(), gran).unwrap();
        let g = gran.group_len(256);
        for row in 0..4 {
            for c in 0..256 {
                let s = q.scales[row * (256 / g) + c / g].to_f32();
                assert_eq!(q.code(row, c) as usize, nearest_index(&NF4, w[[row, c]] / s), "{gran:?} ({row},{c})");
            }
        }
        assert_bits_eq(&q.dequantize(), &spec_dequant_lut(&q), &format!("{gran:?}"));
        assert!(q.is_nf4());
        assert_eq!(QuantizedWeight::Lut(q).scheme().kind, SchemeKind::Nf4);
    }
}

#[test]
fn scale_is_f16_of_group_absmax() {
    let mut r = rng(10);
    let mut w = gaussian_matrix(&mut r, 3, 128, 0.05);
    for c in 0..32 {
        w[[2, c]] = 0.0; // all-zero group: scale 1
    }
    w[[1, 40]] = -1.000_3; // rounds to f16 1.0 (f16 spacing near 1 is 2^-10)
    w[[1, 41]] = 0.5;
    for gran in all_granularities() {
        let q = LutWeight::quantize_nf4(w.view(), gran).unwrap();
        let g = gran.group_len(128);
        for row in 0..3 {
            for gi in 0..128 / g {
                let absmax = (gi * g..(gi + 1) * g).map(|c| w[[row, c]].abs()).fold(0f32, f32::max);
                let want = if absmax == 0.0 { 1.0 } else { f16r(absmax) };
                assert_eq!(q.scales[row * (128 / g) + gi].to_f32(), want, "{gran:?} row {row} group {gi}");
            }
        }
    }
    let q = LutWeight::quantize_nf4(w.view(), Granularity::Group(32)).unwrap();
    assert_eq!(q.scales[4 + 1], f16::ONE, "f16(1.0003) = 1");
    // The absmax element dequantizes to −1·scale (its x is slightly beyond −1 and saturates).
    assert_eq!(q.code(1, 40), 0);
    assert!(q.dequantize().slice(ndarray::s![2, ..32]).iter().all(|&v| v == 0.0));
}

#[test]
fn custom_three_bit_lut_hand_worked() {
    let lut = [-1.0f32, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0];
    // (x, expected code): midpoints go to the lower entry.
    let cases = [
        (-1.0f32, 0u8),
        (-0.75, 0), // tie −1 / −0.5
        (-0.74, 1),
        (-0.375, 1), // tie −0.5 / −0.25
        (-0.3, 2),
        (-0.125, 2), // tie −0.25 / 0
        (0.0, 3),
        (0.125, 3), // tie 0 / 0.25
        (0.2, 4),
        (0.625, 5), // tie 0.5 / 0.75
        (0.875, 6), // tie 0.75 / 1
        (0.9, 7),
    ];
    let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let w = unit_scale_row(&xs);
    let q = LutWeight::quantize(w.view(), &lut, Granularity::Group(32)).unwrap();
    assert_eq!(q.bits, 3);
    assert!(!q.is_nf4());
    assert_eq!(q.codes.len(), stream_words(32, 3));
    for (c, &(x, want)) in cases.iter().enumerate() {
        assert_eq!(q.code(0, c), want, "x = {x}");
        assert_eq!(q.dequantize()[[0, c]], lut[want as usize]);
    }
    assert_eq!(QuantizedWeight::Lut(q.clone()).scheme().kind, SchemeKind::Lut);
    // Scale 2 (absmax 2): the same fractions of the scale land on the same codes.
    let w2 = w.mapv(|v| v * 2.0);
    let q2 = LutWeight::quantize(w2.view(), &lut, Granularity::Group(32)).unwrap();
    assert_eq!(q2.scales, vec![f16::from_f32(2.0)]);
    assert_eq!(q2.unpacked_codes(), q.unpacked_codes());
    assert_bits_eq(&q2.dequantize(), &spec_dequant_lut(&q2), "scaled LUT");
}

#[test]
fn one_bit_and_eight_bit_luts() {
    // 1 bit: [−1, 1]; x = 0 is a tie and goes to −1.
    let w = unit_scale_row(&[0.0, 0.1, -0.1]);
    let q = LutWeight::quantize(w.view(), &[-1.0, 1.0], Granularity::Group(32)).unwrap();
    assert_eq!(&q.unpacked_codes()[..3], &[0, 1, 0]);
    assert_eq!(q.code(0, 31), 1);
    // 8 bits: 256 uniform levels; every code is the nearest.
    let lut: Vec<f32> = (0..256).map(|i| -1.0 + 2.0 * i as f32 / 255.0).collect();
    let w = gaussian_matrix(&mut rng(4), 2, 64, 0.5);
    let q = LutWeight::quantize(w.view(), &lut, Granularity::PerChannel).unwrap();
    assert_eq!(q.bits, 8);
    for r in 0..2 {
        for c in 0..64 {
            assert_eq!(q.code(r, c) as usize, nearest_index(&lut, w[[r, c]] / q.scales[r].to_f32()));
        }
    }
}

#[test]
fn storage_bytes_hand_computed() {
    // NF4, n = 2, K = 64, g32: codes 2·8 words = 64 B, scales 4·2 = 8 B, table 16·4 = 64 B.
    let w = gaussian_matrix(&mut rng(1), 2, 64, 1.0);
    let q = LutWeight::quantize_nf4(w.view(), Granularity::Group(32)).unwrap();
    assert_eq!(q.storage_bytes(), 64 + 8 + 64);
}
