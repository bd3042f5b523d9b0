//! bipolar-INT (APT-LLM): every stored bit means ±1, so a `p`-bit code `u` has the value
//! `Σ (2·u_i − 1)·2^i = 2u − (2^p − 1)`: the odd integers in `[−(2^p − 1), 2^p − 1]`, no zero.
//!
//! Layout (see `docs/formats.md`):
//! - `planes`: bit planes `[p][rows][ceil(K/32)]` u32 (plane `i` = bit `i` of each code; column `k` → bit
//!   `k % 32` of word `k / 32`; padding bits 0);
//! - `scales`: `[rows, n_groups]` f32; `offsets`: optional `[rows, n_groups]` f32.
//!
//! Dequantization, bit-exact on CPU and GPU: `w = fma(f32(value), scale, offset)` (offset 0 when absent).
//! The same type serves weights (`rows = N`) and activations (`rows = M`, per-token = [`Granularity::PerChannel`]).

use crate::affine::IntAffineWeight;
use crate::bits::{get_plane_code, pack_planes, plane_popcounts, unpack_planes};
use crate::error::{LowbitError, Result};
use crate::granularity::Granularity;
use crate::util::{check_finite_slice, check_len, check_matrix};
use ndarray::{Array2, ArrayView2};

const FORMAT: &str = "bipolar-INT";

/// A `[rows, K]` matrix of `p`-bit bipolar-INT codes stored as bit planes, with f32 scales and offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct BipolarMatrix {
    /// Rows (output features for weights, tokens for activations).
    pub n: usize,
    /// Columns (the reduction dimension K).
    pub k: usize,
    /// Bits per code, 1..=8.
    pub bits: u32,
    /// Group size along K.
    pub granularity: Granularity,
    /// Bit planes `[bits][n][ceil(k/32)]`.
    pub planes: Vec<u32>,
    /// Per-group scales `[n, n_groups]`.
    pub scales: Vec<f32>,
    /// Per-group offsets `[n, n_groups]`; `None` = symmetric (offset 0).
    pub offsets: Option<Vec<f32>>,
}

fn check_bits(bits: u32) -> Result<()> {
    if !(1..=8).contains(&bits) {
        return Err(LowbitError::UnsupportedBits { format: FORMAT, bits, supported: "1..=8" });
    }
    Ok(())
}

/// The bipolar value of a `bits`-bit code: `2u − (2^bits − 1)`.
#[inline]
pub fn value(code: u8, bits: u32) -> i32 {
    2 * code as i32 - ((1i32 << bits) - 1)
}

/// The value computed bit by bit from the definition `Σ (2·u_i − 1)·2^i` (the slow form, for tests and docs).
pub fn value_from_bits(code: u8, bits: u32) -> i32 {
    (0..bits).map(|i| (2 * ((code >> i) & 1) as i32 - 1) << i).sum()
}

/// The code of a bipolar value (must be odd and within `±(2^bits − 1)`).
pub fn encode(value: i32, bits: u32) -> Result<u8> {
    check_bits(bits)?;
    let max = (1i32 << bits) - 1;
    if value % 2 == 0 || value.abs() > max {
        return Err(LowbitError::invalid("bipolar value", format!("{value} is not an odd integer in [-{max}, {max}]")));
    }
    Ok(((value + max) / 2) as u8)
}

/// Signed two's-complement `bits`-bit integer → bipolar code by flipping only the MSB (`2x̂ + 1` in bipolar).
#[inline]
pub fn code_from_signed(x: i32, bits: u32) -> u8 {
    let mask = (1u32 << bits) - 1;
    (((x as u32) & mask) ^ (1 << (bits - 1))) as u8
}

impl BipolarMatrix {
    /// Native symmetric quantization: `Δ = absmax / (2^p − 1)` per group, each value to the nearest odd
    /// integer of `w / Δ` (`u = clamp(floor(t / 2) + 2^(p−1), 0, 2^p − 1)`). Offsets are absent.
    /// An all-zero group gets `Δ = 0` (its codes dequantize to exact zeros).
    pub fn quantize(w: ArrayView2<f32>, bits: u32, granularity: Granularity) -> Result<Self> {
        check_bits(bits)?;
        check_matrix("bipolar input", &w)?;
        let (n, k) = w.dim();
        granularity.check(k, FORMAT)?;
        let g = granularity.group_len(k);
        let max = ((1u32 << bits) - 1) as f32;
        let half = (1u32 << (bits - 1)) as f32;
        let mut codes = vec![0u8; n * k];
        let mut scales = Vec::with_capacity(n * (k / g));
        for r in 0..n {
            let row = w.row(r);
            for gi in 0..k / g {
                let cols = gi * g..(gi + 1) * g;
                let absmax = cols.clone().fold(0f32, |m, c| m.max(row[c].abs()));
                // Zero is not representable, so an all-zero group (or one whose Δ underflows) gets Δ = 0:
                // every code then dequantizes to exactly 0 (Δ = 1 would turn its zeros into ±1).
                let delta = absmax / max;
                for c in cols {
                    let t = if delta > 0.0 { row[c] / delta } else { 0.0 };
                    codes[r * k + c] = ((t / 2.0).floor() + half).clamp(0.0, max) as u8;
                }
                scales.push(delta);
            }
        }
        Self::from_codes(n, k, bits, granularity, &codes, scales, None)
    }

    /// Builds a matrix from unpacked codes (row-major `[n, k]`, one per byte), scales and optional offsets.
    pub fn from_codes(
        n: usize,
        k: usize,
        bits: u32,
        granularity: Granularity,
        codes: &[u8],
        scales: Vec<f32>,
        offsets: Option<Vec<f32>>,
    ) -> Result<Self> {
        check_bits(bits)?;
        check_len("codes", codes.len(), n * k)?;
        if k == 0 || n == 0 {
            return Err(LowbitError::Empty { what: "bipolar codes".into(), shape: format!("[{n}, {k}]") });
        }
        if let Some((i, c)) = codes.iter().enumerate().find(|&(_, &c)| (c as u32) >> bits != 0) {
            return Err(LowbitError::invalid("codes", format!("code {c} at {i} does not fit {bits} bits")));
        }
        let m = Self { n, k, bits, granularity, planes: pack_planes(codes, k, bits), scales, offsets };
        m.validate()?;
        Ok(m)
    }

    /// Lossless conversion of an unsigned INT affine weight (`w = s·(q − z)`): the codes are kept (`u = q`)
    /// and the dequantizer is rewritten to `w = (s/2)·value + s·((2^b − 1)/2 − z)`. Every term is exact in f32
    /// (an f16 scale times a half-integer), so the dequantized weights are bit-identical.
    pub fn from_int_affine(w: &IntAffineWeight) -> Result<Self> {
        w.validate()?;
        if w.g_idx.is_some() {
            return Err(LowbitError::Unsupported(
                "bipolar conversion of an act-order (g_idx) weight: reorder its columns first".into(),
            ));
        }
        let half_range = ((1u32 << w.bits) - 1) as f32 * 0.5;
        let scales: Vec<f32> = w.scales.iter().map(|s| s.to_f32() * 0.5).collect();
        let offsets = w.scales.iter().zip(&w.zeros).map(|(s, &z)| s.to_f32() * (half_range - z as f32)).collect();
        Self::from_codes(w.n, w.k, w.bits, w.granularity, &w.unpacked_codes(), scales, Some(offsets))
    }

    /// Conversion from signed two's-complement INT codes `x̂ ∈ [−2^(p−1), 2^(p−1) − 1]` with `w = s·x̂ + z`:
    /// each code's MSB is flipped (`u = x̂ + 2^(p−1)`, value `2x̂ + 1`), `scale = s/2`, `offset = z − s/2`.
    pub fn from_signed_int(
        codes: ArrayView2<i8>,
        bits: u32,
        granularity: Granularity,
        scales: &[f32],
        offsets: &[f32],
    ) -> Result<Self> {
        check_bits(bits)?;
        let (n, k) = codes.dim();
        let lo = -(1i32 << (bits - 1));
        let hi = (1i32 << (bits - 1)) - 1;
        let mut u = Vec::with_capacity(n * k);
        for ((r, c), &x) in codes.indexed_iter() {
            if (x as i32) < lo || (x as i32) > hi {
                return Err(LowbitError::invalid(
                    "signed codes",
                    format!("{x} at [{r}, {c}] does not fit {bits}-bit two's complement"),
                ));
            }
            u.push(code_from_signed(x as i32, bits));
        }
        granularity.check(k, FORMAT)?;
        check_len("scales", scales.len(), n * granularity.n_groups(k))?;
        check_len("offsets", offsets.len(), n * granularity.n_groups(k))?;
        let new_scales = scales.iter().map(|s| s * 0.5).collect();
        let new_offsets = scales.iter().zip(offsets).map(|(s, z)| z - s * 0.5).collect();
        Self::from_codes(n, k, bits, granularity, &u, new_scales, Some(new_offsets))
    }

    /// Checks every field against shape, bits and granularity.
    pub fn validate(&self) -> Result<()> {
        check_bits(self.bits)?;
        if self.n == 0 || self.k == 0 {
            return Err(LowbitError::Empty {
                what: "bipolar matrix".into(),
                shape: format!("[{}, {}]", self.n, self.k),
            });
        }
        self.granularity.check(self.k, FORMAT)?;
        let ng = self.granularity.n_groups(self.k);
        check_len("planes", self.planes.len(), self.bits as usize * self.n * self.k.div_ceil(32))?;
        check_len("scales", self.scales.len(), self.n * ng)?;
        check_finite_slice("scales", &self.scales, false)?;
        if let Some(o) = &self.offsets {
            check_len("offsets", o.len(), self.n * ng)?;
            check_finite_slice("offsets", o, false)?;
        }
        // Padding bits beyond K must be zero: kernels count them in popcounts otherwise.
        if !self.k.is_multiple_of(32) {
            let wpr = self.k.div_ceil(32);
            let pad_mask = !0u32 << (self.k % 32);
            for (i, chunk) in self.planes.chunks_exact(wpr).enumerate() {
                if chunk[wpr - 1] & pad_mask != 0 {
                    return Err(LowbitError::invalid("planes", format!("padding bits set in plane row {i}")));
                }
            }
        }
        Ok(())
    }

    /// Number of groups per row.
    pub fn n_groups(&self) -> usize {
        self.granularity.n_groups(self.k)
    }

    /// The code of element `(r, c)`.
    pub fn code(&self, r: usize, c: usize) -> u8 {
        get_plane_code(&self.planes, self.n, self.k, self.bits, r, c)
    }

    /// All codes, row-major `[n, k]`.
    pub fn codes(&self) -> Vec<u8> {
        unpack_planes(&self.planes, self.n, self.k, self.bits)
    }

    /// The integer values (`2u − (2^p − 1)`), `[n, k]`.
    pub fn values(&self) -> Array2<i32> {
        Array2::from_shape_fn((self.n, self.k), |(r, c)| value(self.code(r, c), self.bits))
    }

    /// Per-row popcount of each plane, `[bits][n]` (the `r` terms of the AND-popcount dot product).
    pub fn plane_popcounts(&self) -> Vec<u32> {
        plane_popcounts(&self.planes, self.n, self.k, self.bits)
    }

    /// Dequantized values, `fma(value, scale, offset)` in f32 (bit-exact with the GPU).
    pub fn dequantize(&self) -> Array2<f32> {
        let ng = self.n_groups();
        let g = self.granularity.group_len(self.k);
        Array2::from_shape_fn((self.n, self.k), |(r, c)| {
            let gi = r * ng + c / g;
            let v = value(self.code(r, c), self.bits) as f32;
            let o = self.offsets.as_ref().map_or(0.0, |o| o[gi]);
            v.mul_add(self.scales[gi], o)
        })
    }

    /// Bytes of storage: planes, scales and offsets.
    pub fn storage_bytes(&self) -> usize {
        self.planes.len() * 4 + self.scales.len() * 4 + self.offsets.as_ref().map_or(0, |o| o.len() * 4)
    }
}
