//! Shared helpers for the lowbit-core integration tests.
//!
//! Everything here is written from `docs/formats.md` alone (bit layouts, dequantization formulas, literal
//! value tables), never by calling the crate's own decoding helpers, so the tests compare the crate against an
//! independent reading of the contract.
#![allow(dead_code)]

use half::f16;
use lowbit_core::{BipolarMatrix, IntAffineWeight, LutWeight, MixedWeight};
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::{Dtype, View};
use std::borrow::Cow;

/// A seeded RNG.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// One N(0, 1) sample (Box–Muller; `rand_distr` is not a dependency).
pub fn gauss(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// An `[n, k]` matrix of N(0, sigma²) f32 samples.
pub fn gaussian_matrix(rng: &mut StdRng, n: usize, k: usize, sigma: f64) -> Array2<f32> {
    Array2::from_shape_fn((n, k), |_| (gauss(rng) * sigma) as f32)
}

/// Words per row of a `bits`-bit row bitstream: `ceil(K·b / 32)`, written out.
pub fn stream_words(k: usize, bits: u32) -> usize {
    (k * bits as usize).div_ceil(32)
}

/// Stream bit `j` of row `row`: bit `j % 32` of word `j / 32` of the row (rows start on fresh words).
pub fn stream_bit(words: &[u32], wpr: usize, row: usize, j: usize) -> u32 {
    (words[row * wpr + j / 32] >> (j % 32)) & 1
}

/// Code `col` of `row` read bit by bit from an LSB-first row bitstream (docs/formats.md).
pub fn stream_code(words: &[u32], k: usize, bits: u32, row: usize, col: usize) -> u32 {
    let wpr = stream_words(k, bits);
    (0..bits as usize).map(|i| stream_bit(words, wpr, row, col * bits as usize + i) << i).sum()
}

/// Packs codes bit by bit, the slow way, following the contract's definition.
pub fn spec_pack_rows(codes: &[u8], k: usize, bits: u32) -> Vec<u32> {
    let rows = codes.len() / k;
    let wpr = stream_words(k, bits);
    let mut out = vec![0u32; rows * wpr];
    for r in 0..rows {
        for c in 0..k {
            for i in 0..bits as usize {
                if (codes[r * k + c] >> i) & 1 == 1 {
                    let j = c * bits as usize + i;
                    out[r * wpr + j / 32] |= 1 << (j % 32);
                }
            }
        }
    }
    out
}

/// Packs bit planes `[bits][rows][ceil(K/32)]` bit by bit.
pub fn spec_pack_planes(codes: &[u8], k: usize, bits: u32) -> Vec<u32> {
    let rows = codes.len() / k;
    let wpr = k.div_ceil(32);
    let mut out = vec![0u32; bits as usize * rows * wpr];
    for p in 0..bits as usize {
        for r in 0..rows {
            for c in 0..k {
                if (codes[r * k + c] >> p) & 1 == 1 {
                    out[(p * rows + r) * wpr + c / 32] |= 1 << (c % 32);
                }
            }
        }
    }
    out
}

/// Code of `(row, col)` from bit planes, bit by bit.
pub fn spec_plane_code(planes: &[u32], rows: usize, k: usize, bits: u32, row: usize, col: usize) -> u32 {
    let wpr = k.div_ceil(32);
    (0..bits as usize).map(|p| ((planes[(p * rows + row) * wpr + col / 32] >> (col % 32)) & 1) << p).sum()
}

/// The bipolar value from the definition `Σ (2·b_i − 1)·2^i`.
pub fn bipolar_def(code: u32, bits: u32) -> i64 {
    (0..bits).map(|i| (2 * ((code >> i) & 1) as i64 - 1) * (1i64 << i)).sum()
}

/// INT affine dequantization from the contract: `w = f32(q − z) · f32(s)`, group from `g_idx` or `k / G`.
pub fn spec_dequant_int(w: &IntAffineWeight) -> Array2<f32> {
    let g = w.granularity.group_len(w.k);
    let ng = w.k / g;
    Array2::from_shape_fn((w.n, w.k), |(r, c)| {
        let grp = match &w.g_idx {
            Some(gi) => gi[c] as usize,
            None => c / g,
        };
        let q = stream_code(&w.codes, w.k, w.bits, r, c) as i32;
        let z = w.zeros[r * ng + grp] as i32;
        (q - z) as f32 * w.scales[r * ng + grp].to_f32()
    })
}

/// bipolar-INT dequantization from the contract: `fma(f32(value), scale, offset)`.
pub fn spec_dequant_bipolar(b: &BipolarMatrix) -> Array2<f32> {
    let g = b.granularity.group_len(b.k);
    let ng = b.k / g;
    Array2::from_shape_fn((b.n, b.k), |(r, c)| {
        let code = spec_plane_code(&b.planes, b.n, b.k, b.bits, r, c);
        let v = bipolar_def(code, b.bits) as f32;
        let gi = r * ng + c / g;
        let o = b.offsets.as_ref().map_or(0.0, |o| o[gi]);
        v.mul_add(b.scales[gi], o)
    })
}

/// FP4 grid values by selector (0 ER+, 1 ER−, 2 EA+, 3 EA−) and 4-bit code, written out from the table in
/// docs/formats.md: `b3` sign, `b2..b0` magnitude 0,1,2,3,4,6,8,12; code `1000` is the special value.
pub const FP4_TABLE: [[i32; 16]; 4] = [
    [0, 1, 2, 3, 4, 6, 8, 12, 10, -1, -2, -3, -4, -6, -8, -12],
    [0, 1, 2, 3, 4, 6, 8, 12, -10, -1, -2, -3, -4, -6, -8, -12],
    [0, 1, 2, 3, 4, 6, 8, 12, 16, -1, -2, -3, -4, -6, -8, -12],
    [0, 1, 2, 3, 4, 6, 8, 12, -16, -1, -2, -3, -4, -6, -8, -12],
];

/// FP3 grid values by selector and 3-bit code: `b2` sign, `b1..b0` magnitude 0,1,2,4; code `100` is the SV.
pub const FP3_TABLE: [[i32; 8]; 4] = [
    [0, 1, 2, 4, 3, -1, -2, -4],
    [0, 1, 2, 4, -3, -1, -2, -4],
    [0, 1, 2, 4, 6, -1, -2, -4],
    [0, 1, 2, 4, -6, -1, -2, -4],
];

/// The literal table for `bits` and `sel`.
pub fn mixed_table(bits: u32, sel: usize) -> Vec<i32> {
    if bits == 4 { FP4_TABLE[sel].to_vec() } else { FP3_TABLE[sel].to_vec() }
}

/// Selector of group `g` of row `r`, read from the byte array per the contract.
pub fn spec_selector(m: &MixedWeight, r: usize, g: usize) -> usize {
    let ng = m.k / m.group;
    let bpr = ng.div_ceil(4);
    ((m.selectors[r * bpr + g / 4] >> (2 * (g % 4))) & 3) as usize
}

/// BitMoD dequantization from the contract: `f32(grid) · (f32(q_g) · f32(Δ_ch))`.
pub fn spec_dequant_mixed(m: &MixedWeight) -> Array2<f32> {
    let ng = m.k / m.group;
    Array2::from_shape_fn((m.n, m.k), |(r, c)| {
        let g = c / m.group;
        let code = stream_code(&m.codes, m.k, m.bits, r, c) as usize;
        let v = mixed_table(m.bits, spec_selector(m, r, g))[code] as f32;
        v * (m.group_scales[r * ng + g] as f32 * m.channel_scales[r].to_f32())
    })
}

/// LUT dequantization from the contract: `lut[code] · f32(scale)`.
pub fn spec_dequant_lut(w: &LutWeight) -> Array2<f32> {
    let g = w.granularity.group_len(w.k);
    let ng = w.k / g;
    Array2::from_shape_fn((w.n, w.k), |(r, c)| {
        let code = stream_code(&w.codes, w.k, w.bits, r, c) as usize;
        w.lut[code] * w.scales[r * ng + c / g].to_f32()
    })
}

/// Naive `X · Wᵀ` in f64, summing along K in order.
pub fn naive_gemm(x: ArrayView2<f64>, w: ArrayView2<f64>) -> Array2<f64> {
    let (m, k) = x.dim();
    let n = w.nrows();
    assert_eq!(w.ncols(), k);
    let mut y = Array2::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f64;
            for t in 0..k {
                acc += x[[i, t]] * w[[j, t]];
            }
            y[[i, j]] = acc;
        }
    }
    y
}

/// Asserts two f32 arrays are bit-identical, naming the first difference.
pub fn assert_bits_eq(a: &Array2<f32>, b: &Array2<f32>, what: &str) {
    assert_eq!(a.dim(), b.dim(), "{what}: shapes differ");
    for ((idx, x), y) in a.indexed_iter().zip(b.iter()) {
        assert_eq!(x.to_bits(), y.to_bits(), "{what}: element {idx:?} differs: {x:e} vs {y:e}");
    }
}

/// `f16(x)` as f32 (round to nearest even), the contract's scale rounding.
pub fn f16r(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// The supported groupings, for loops over "every group size".
pub fn all_granularities() -> [lowbit_core::Granularity; 4] {
    use lowbit_core::Granularity::{Group, PerChannel};
    [Group(32), Group(64), Group(128), PerChannel]
}

/// An owned tensor for `safetensors::serialize` (dtype, shape, little-endian bytes), for the tests that write
/// checkpoints and model files.
pub struct Raw {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Raw {
    pub fn new(dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        Self { dtype, shape, bytes }
    }
}

impl View for Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}
