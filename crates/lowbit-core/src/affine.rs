//! INT affine weights: `b ∈ 2..=8` bits, symmetric or asymmetric, groups of 32/64/128 or per-channel,
//! optional act-order (`g_idx`).
//!
//! Layout (see `docs/formats.md`):
//! - `codes`: row bitstreams of unsigned `b`-bit codes `q` (`[N][ceil(K·b/32)]` u32 words, LSB-first);
//! - `scales`: `[N, n_groups]` f16; `zeros`: `[N, n_groups]` u8 (symmetric: all `2^(b−1)`);
//! - `g_idx`: optional `[K]` u32, the group of each column (act-order), else group = `k / G`.
//!
//! Dequantization, bit-exact on CPU and GPU: `w = f32(q − z) · f32(scale)`.

use crate::bits::{get_code, pack_rows, unpack_rows, words_per_row};
use crate::error::{LowbitError, Result};
use crate::granularity::Granularity;
use crate::util::{check_len, check_matrix, rne};
use half::f16;
use ndarray::{Array2, ArrayView2};

const FORMAT: &str = "INT affine";

/// A weight matrix `W[N, K]` quantized to `b`-bit unsigned integer codes with per-group f16 scale and u8 zero.
#[derive(Debug, Clone, PartialEq)]
pub struct IntAffineWeight {
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    /// Bits per code, 2..=8.
    pub bits: u32,
    /// Symmetric (`zero = 2^(b−1)` everywhere) or asymmetric.
    pub symmetric: bool,
    /// Group size along K.
    pub granularity: Granularity,
    /// Row bitstreams of codes, `n * words_per_row(k, bits)` words.
    pub codes: Vec<u32>,
    /// Per-group scales, `[n, n_groups]`.
    pub scales: Vec<f16>,
    /// Per-group zero points, `[n, n_groups]`.
    pub zeros: Vec<u8>,
    /// Act-order: the group of every column, `[k]`; `None` means column `c` is in group `c / G`.
    pub g_idx: Option<Vec<u32>>,
}

fn check_bits(bits: u32) -> Result<()> {
    if !(2..=8).contains(&bits) {
        return Err(LowbitError::UnsupportedBits { format: FORMAT, bits, supported: "2..=8" });
    }
    Ok(())
}

/// f16 scale from an f32 one: never zero (a zero scale would turn `w / s` into infinities), finite.
/// A non-positive or underflowing `s` gives the smallest positive f16; an overflowing one is an error.
pub fn f16_scale(s: f32, what: &str) -> Result<f16> {
    let h = f16::from_f32(s);
    if !h.is_finite() {
        return Err(LowbitError::invalid(what, format!("scale {s} overflows f16 (max 65504)")));
    }
    if h.to_f32() <= 0.0 { Ok(f16::from_bits(1)) } else { Ok(h) }
}

/// Scale and zero of one group's values for `bits`, following `docs/formats.md`.
fn group_params(vals: &[f32], bits: u32, symmetric: bool) -> Result<(f16, u8)> {
    if symmetric {
        let qmax = ((1u32 << (bits - 1)) - 1) as f32;
        let absmax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if absmax == 0.0 { f16::ONE } else { f16_scale(absmax / qmax, "INT affine scale")? };
        Ok((s, 1u8 << (bits - 1)))
    } else {
        let qmax = ((1u32 << bits) - 1) as f32;
        let lo = vals.iter().fold(0f32, |m, &v| m.min(v));
        let hi = vals.iter().fold(0f32, |m, &v| m.max(v));
        let s = if hi == lo { f16::ONE } else { f16_scale((hi - lo) / qmax, "INT affine scale")? };
        let z = rne(-lo / s.to_f32()).clamp(0.0, qmax);
        Ok((s, z as u8))
    }
}

/// Code of one value given its group's scale and zero.
#[inline]
fn quantize_value(v: f32, s: f16, z: u8, bits: u32, symmetric: bool) -> u8 {
    let s = s.to_f32();
    if symmetric {
        let qmax = ((1u32 << (bits - 1)) - 1) as f32;
        (rne(v / s).clamp(-qmax, qmax) + z as f32) as u8
    } else {
        let qmax = ((1u32 << bits) - 1) as f32;
        (rne(v / s) + z as f32).clamp(0.0, qmax) as u8
    }
}

/// The INT affine quantizer of one group, exactly as [`IntAffineWeight::quantize`] applies it: group scale and
/// zero point from the group's values, then codes from the stored (f16) scale. Calibrators (GPTQ in
/// lowbit-calib) use it to quantize column by column with the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffineQuantizer {
    bits: u32,
    symmetric: bool,
}

impl AffineQuantizer {
    /// A quantizer for `bits ∈ 2..=8`, symmetric or asymmetric.
    pub fn new(bits: u32, symmetric: bool) -> Result<Self> {
        check_bits(bits)?;
        Ok(Self { bits, symmetric })
    }

    /// Bits per code.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Whether the zero point is fixed at `2^(b−1)`.
    pub fn symmetric(&self) -> bool {
        self.symmetric
    }

    /// The f16 scale and u8 zero point of a group with these values (`docs/formats.md`, INT affine).
    pub fn group_params(&self, vals: &[f32]) -> Result<(f16, u8)> {
        group_params(vals, self.bits, self.symmetric)
    }

    /// The code of `v` under a group's scale and zero point.
    #[inline]
    pub fn code(&self, v: f32, scale: f16, zero: u8) -> u8 {
        quantize_value(v, scale, zero, self.bits, self.symmetric)
    }

    /// The dequantized value of `code`, `f32(q − z) · f32(scale)` (bit-exact with [`IntAffineWeight::dequantize`]).
    #[inline]
    pub fn dequantize(&self, code: u8, scale: f16, zero: u8) -> f32 {
        (code as i32 - zero as i32) as f32 * scale.to_f32()
    }
}

impl IntAffineWeight {
    /// Round-to-nearest quantization of `w[N, K]` with consecutive groups.
    pub fn quantize(w: ArrayView2<f32>, bits: u32, symmetric: bool, granularity: Granularity) -> Result<Self> {
        check_bits(bits)?;
        check_matrix("weight", &w)?;
        let (_, k) = w.dim();
        granularity.check(k, FORMAT)?;
        let g = granularity.group_len(k);
        let assign: Vec<u32> = (0..k).map(|c| (c / g) as u32).collect();
        Self::quantize_assigned(w, bits, symmetric, granularity, &assign, None)
    }

    /// Act-order quantization: group `i / G` is made of the columns `perm[i]` (e.g. columns sorted by
    /// decreasing Hessian diagonal, as GPTQ's `desc_act`). The stored column order is unchanged; the result
    /// carries `g_idx[perm[i]] = i / G`.
    pub fn quantize_act_order(
        w: ArrayView2<f32>,
        bits: u32,
        symmetric: bool,
        granularity: Granularity,
        perm: &[usize],
    ) -> Result<Self> {
        check_bits(bits)?;
        check_matrix("weight", &w)?;
        let (_, k) = w.dim();
        granularity.check(k, FORMAT)?;
        if perm.len() != k {
            return Err(LowbitError::InvalidPermutation { reason: format!("length {} != K = {k}", perm.len()) });
        }
        let mut seen = vec![false; k];
        for &p in perm {
            if p >= k || std::mem::replace(&mut seen[p], true) {
                return Err(LowbitError::InvalidPermutation {
                    reason: format!("{p} is out of range or repeated (K = {k})"),
                });
            }
        }
        let g = granularity.group_len(k);
        let mut assign = vec![0u32; k];
        for (i, &p) in perm.iter().enumerate() {
            assign[p] = (i / g) as u32;
        }
        Self::quantize_assigned(w, bits, symmetric, granularity, &assign, Some(assign.clone()))
    }

    fn quantize_assigned(
        w: ArrayView2<f32>,
        bits: u32,
        symmetric: bool,
        granularity: Granularity,
        assign: &[u32],
        g_idx: Option<Vec<u32>>,
    ) -> Result<Self> {
        let (n, k) = w.dim();
        let ng = granularity.n_groups(k);
        // Columns of each group, in ascending column order.
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); ng];
        for (c, &gi) in assign.iter().enumerate() {
            members[gi as usize].push(c);
        }
        let mut scales = Vec::with_capacity(n * ng);
        let mut zeros = Vec::with_capacity(n * ng);
        let mut codes = vec![0u8; n * k];
        let mut vals = Vec::new();
        for r in 0..n {
            let row = w.row(r);
            for cols in &members {
                vals.clear();
                vals.extend(cols.iter().map(|&c| row[c]));
                let (s, z) = group_params(&vals, bits, symmetric)?;
                for &c in cols {
                    codes[r * k + c] = quantize_value(row[c], s, z, bits, symmetric);
                }
                scales.push(s);
                zeros.push(z);
            }
        }
        let out = Self { n, k, bits, symmetric, granularity, codes: pack_rows(&codes, k, bits), scales, zeros, g_idx };
        out.validate()?;
        Ok(out)
    }

    /// Builds a weight from unpacked codes (one per byte, row-major `[n, k]`) and its metadata, validating all.
    #[allow(clippy::too_many_arguments)]
    pub fn from_codes(
        n: usize,
        k: usize,
        bits: u32,
        symmetric: bool,
        granularity: Granularity,
        codes: &[u8],
        scales: Vec<f16>,
        zeros: Vec<u8>,
        g_idx: Option<Vec<u32>>,
    ) -> Result<Self> {
        check_bits(bits)?;
        check_len("codes", codes.len(), n * k)?;
        if let Some((i, c)) = codes.iter().enumerate().find(|&(_, &c)| (c as u32) >> bits != 0) {
            return Err(LowbitError::invalid("codes", format!("code {c} at {i} does not fit {bits} bits")));
        }
        if k == 0 {
            return Err(LowbitError::Empty { what: "codes".into(), shape: format!("[{n}, {k}]") });
        }
        let w = Self { n, k, bits, symmetric, granularity, codes: pack_rows(codes, k, bits), scales, zeros, g_idx };
        w.validate()?;
        Ok(w)
    }

    /// Checks every field against the shape, bits and granularity (a corrupt or hand-built weight is a typed
    /// error, never a panic or a wrong answer later).
    pub fn validate(&self) -> Result<()> {
        check_bits(self.bits)?;
        if self.n == 0 || self.k == 0 {
            return Err(LowbitError::Empty {
                what: "INT affine weight".into(),
                shape: format!("[{}, {}]", self.n, self.k),
            });
        }
        self.granularity.check(self.k, FORMAT)?;
        let ng = self.granularity.n_groups(self.k);
        check_len("codes", self.codes.len(), self.n * words_per_row(self.k, self.bits))?;
        if let Some(r) = crate::bits::first_dirty_row_tail(&self.codes, self.n, self.k, self.bits) {
            return Err(LowbitError::invalid("codes", format!("padding bits after the last code of row {r} are set")));
        }
        check_len("scales", self.scales.len(), self.n * ng)?;
        check_len("zeros", self.zeros.len(), self.n * ng)?;
        if let Some((i, s)) = self.scales.iter().enumerate().find(|(_, s)| !(s.is_finite() && s.to_f32() > 0.0)) {
            return Err(LowbitError::invalid("scales", format!("scale {s} at {i} is not finite and positive")));
        }
        let mid = 1u32 << (self.bits - 1);
        for (i, &z) in self.zeros.iter().enumerate() {
            if (z as u32) >> self.bits != 0 || (self.symmetric && z as u32 != mid) {
                return Err(LowbitError::invalid(
                    "zeros",
                    format!("zero point {z} at {i} is invalid for {} bits", self.bits),
                ));
            }
        }
        if let Some(g_idx) = &self.g_idx {
            check_len("g_idx", g_idx.len(), self.k)?;
            if let Some((i, g)) = g_idx.iter().enumerate().find(|&(_, &g)| g as usize >= ng) {
                return Err(LowbitError::invalid("g_idx", format!("group {g} of column {i} >= n_groups = {ng}")));
            }
        }
        Ok(())
    }

    /// Number of groups per row.
    pub fn n_groups(&self) -> usize {
        self.granularity.n_groups(self.k)
    }

    /// The group of column `c`.
    #[inline]
    pub fn group_of(&self, c: usize) -> usize {
        match &self.g_idx {
            Some(g) => g[c] as usize,
            None => c / self.granularity.group_len(self.k),
        }
    }

    /// The code of element `(r, c)`.
    pub fn code(&self, r: usize, c: usize) -> u8 {
        get_code(&self.codes, self.k, self.bits, r, c)
    }

    /// All codes, one per byte, row-major `[n, k]`.
    pub fn unpacked_codes(&self) -> Vec<u8> {
        unpack_rows(&self.codes, self.n, self.k, self.bits)
    }

    /// Dequantized weights, `w = f32(q − z) · f32(scale)` (bit-exact with the GPU).
    pub fn dequantize(&self) -> Array2<f32> {
        let ng = self.n_groups();
        Array2::from_shape_fn((self.n, self.k), |(r, c)| {
            let gi = r * ng + self.group_of(c);
            (self.code(r, c) as i32 - self.zeros[gi] as i32) as f32 * self.scales[gi].to_f32()
        })
    }

    /// Bytes of storage: codes, scales, zeros (asymmetric only) and g_idx.
    pub fn storage_bytes(&self) -> usize {
        self.codes.len() * 4
            + self.scales.len() * 2
            + if self.symmetric { 0 } else { self.zeros.len() }
            + self.g_idx.as_ref().map_or(0, |g| g.len() * 4)
    }
}
