//! BitMoD mixed-datatype weights (HPCA 2025): per group of `G` weights, the best of four FP4 (or FP3)
//! variants, each of which replaces the redundant −0 by one special value (SV).
//!
//! Values are **grid units** (integers; FP4 is E2M1 ×2 so every value is an integer):
//!
//! | bits | magnitude code → value | SV (code = sign bit alone) for selector 0 ER+, 1 ER−, 2 EA+, 3 EA− |
//! |---|---|---|
//! | 4 | `b3` sign, `b2..b0`: 0, 1, 2, 3, 4, 6, 8, 12 | +10, −10, +16, −16 |
//! | 3 | `b2` sign, `b1..b0`: 0, 1, 2, 4 | +3, −3, +6, −6 |
//!
//! Layout (see `docs/formats.md`): `codes` row bitstreams; `group_scales` `[N, n_groups]` u8;
//! `selectors` `[N, ceil(n_groups/4)]` bytes, group `j` at bits `2(j%4)..2(j%4)+2` of byte `j/4`;
//! `channel_scales` `[N]` f16. Dequantization (exact in f32, so bit-exact anywhere):
//! `w = f32(grid) · (f32(q_g) · f32(Δ_ch))`.

use crate::affine::f16_scale;
use crate::bits::{get_code, pack_rows, unpack_rows, words_per_row};
use crate::error::{LowbitError, Result};
use crate::granularity::{Granularity, SUPPORTED_GROUPS};
use crate::util::{check_len, check_matrix, rne};
use half::f16;
use ndarray::{Array2, ArrayView2};

const FORMAT: &str = "BitMoD mixed";

/// FP4 (E2M1) magnitudes in grid units (×2), by 3-bit magnitude code.
pub const FP4_MAGNITUDES: [i8; 8] = [0, 1, 2, 3, 4, 6, 8, 12];
/// FP4 special values by selector: ER+, ER−, EA+, EA− (±5 and ±8 in FP4 units).
pub const FP4_SPECIAL: [i8; 4] = [10, -10, 16, -16];
/// FP3 (E2M0) magnitudes by 2-bit magnitude code.
pub const FP3_MAGNITUDES: [i8; 4] = [0, 1, 2, 4];
/// FP3 special values by selector: ER+, ER−, EA+, EA−.
pub const FP3_SPECIAL: [i8; 4] = [3, -3, 6, -6];
/// Names of the four datatypes, by selector.
pub const TYPE_NAMES: [&str; 4] = ["ER+", "ER-", "EA+", "EA-"];

fn check_bits(bits: u32) -> Result<()> {
    if bits != 3 && bits != 4 {
        return Err(LowbitError::UnsupportedBits { format: FORMAT, bits, supported: "3, 4" });
    }
    Ok(())
}

/// Grid value of `code` under datatype `sel` (0..4) for 3- or 4-bit codes.
#[inline]
pub fn grid_value(bits: u32, sel: u8, code: u8) -> i8 {
    let sign = 1u8 << (bits - 1);
    let mag = code & (sign - 1);
    let (mags, special): (&[i8], &[i8; 4]) =
        if bits == 4 { (&FP4_MAGNITUDES, &FP4_SPECIAL) } else { (&FP3_MAGNITUDES, &FP3_SPECIAL) };
    if code == sign {
        special[sel as usize]
    } else if code & sign != 0 {
        -mags[mag as usize]
    } else {
        mags[mag as usize]
    }
}

/// The full 2^bits-entry value table of datatype `sel`, indexed by code.
pub fn value_table(bits: u32, sel: u8) -> Vec<i8> {
    (0..1u8 << bits).map(|c| grid_value(bits, sel, c)).collect()
}

/// Largest magnitude of datatype `sel`: 12 (ER) / 16 (EA) for FP4, 4 / 6 for FP3.
pub fn qmax(bits: u32, sel: u8) -> f32 {
    value_table(bits, sel).iter().map(|v| v.unsigned_abs()).max().unwrap_or(1) as f32
}

/// Nearest-value quantizer for one datatype (grid units): sorted (value, code) pairs and midpoints. Ties go
/// to the lower value and values beyond the ends saturate, as in [`MixedWeight::quantize`].
#[derive(Debug, Clone, PartialEq)]
pub struct DatatypeGrid {
    values: Vec<f32>,
    codes: Vec<u8>,
    mids: Vec<f32>,
}

impl DatatypeGrid {
    /// The grid of datatype `sel` (0 ER+, 1 ER−, 2 EA+, 3 EA−) for 3- or 4-bit codes.
    pub fn new(bits: u32, sel: u8) -> Result<Self> {
        check_bits(bits)?;
        if sel > 3 {
            return Err(LowbitError::invalid("BitMoD selector", format!("{sel} is not in 0..4")));
        }
        Ok(Self::build(bits, sel))
    }

    /// The code and grid value nearest to `x` (in grid units).
    #[inline]
    pub fn quantize(&self, x: f32) -> (u8, f32) {
        let i = self.nearest(x);
        (self.codes[i], self.values[i])
    }

    fn build(bits: u32, sel: u8) -> Self {
        let mut pairs: Vec<(i8, u8)> = value_table(bits, sel).into_iter().zip(0u8..).collect();
        pairs.sort();
        pairs.dedup_by_key(|p| p.0); // +0 appears once (−0 was replaced by the SV)
        let values: Vec<f32> = pairs.iter().map(|p| p.0 as f32).collect();
        let mids = values.windows(2).map(|w| (w[0] + w[1]) * 0.5).collect();
        DatatypeGrid { codes: pairs.iter().map(|p| p.1).collect(), values, mids }
    }

    /// Index of the nearest value; ties go to the lower value, values beyond the ends saturate.
    #[inline]
    fn nearest(&self, x: f32) -> usize {
        self.mids.partition_point(|&m| m < x)
    }
}

/// A weight matrix in BitMoD's mixed datatypes (see the module doc for layout and values).
#[derive(Debug, Clone, PartialEq)]
pub struct MixedWeight {
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    /// 3 or 4.
    pub bits: u32,
    /// Group size along K (32, 64 or 128).
    pub group: usize,
    /// Row bitstreams of codes.
    pub codes: Vec<u32>,
    /// 8-bit group scales `q_g`, `[n, n_groups]`.
    pub group_scales: Vec<u8>,
    /// 2-bit datatype selectors, `[n, ceil(n_groups / 4)]` bytes.
    pub selectors: Vec<u8>,
    /// Per-row f16 second-level scale `Δ_ch`, `[n]`.
    pub channel_scales: Vec<f16>,
}

/// Sum of squared errors and codes of `vals` quantized onto `grid` with scale `s`.
fn group_error(vals: &[f32], grid: &DatatypeGrid, s: f32, codes: &mut [u8]) -> f64 {
    let mut err = 0f64;
    for (v, c) in vals.iter().zip(codes.iter_mut()) {
        let i = if s > 0.0 { grid.nearest(v / s) } else { grid.nearest(0.0) };
        *c = grid.codes[i];
        let d = (grid.values[i] * s - v) as f64;
        err += d * d;
    }
    err
}

impl MixedWeight {
    /// BitMoD quantization: per group, the datatype with the least squared error, with the group scale
    /// stored as `u8 × f16` (the search is redone with the stored scales, see `docs/formats.md`).
    pub fn quantize(w: ArrayView2<f32>, bits: u32, group: usize) -> Result<Self> {
        check_bits(bits)?;
        check_matrix("weight", &w)?;
        if !SUPPORTED_GROUPS.contains(&group) {
            return Err(LowbitError::InvalidGroupSize { format: FORMAT, group, supported: "32, 64, 128" });
        }
        let (n, k) = w.dim();
        Granularity::Group(group).check(k, FORMAT)?;
        let ng = k / group;
        let grids: Vec<DatatypeGrid> = (0..4).map(|s| DatatypeGrid::build(bits, s)).collect();
        let qmaxes: Vec<f32> = (0..4).map(|s| qmax(bits, s)).collect();
        let mut codes = vec![0u8; n * k];
        let mut group_scales = vec![0u8; n * ng];
        let mut selectors = vec![0u8; n * ng.div_ceil(4)];
        let mut channel_scales = Vec::with_capacity(n);
        let mut scratch = vec![0u8; group];
        let mut best_codes = vec![0u8; group];
        for r in 0..n {
            let row = w.row(r);
            let row = row.as_slice().map(|s| s.to_vec()).unwrap_or_else(|| row.to_vec());
            // Pass 1: float scales, pick each group's type and its Δ_g.
            let mut deltas = Vec::with_capacity(ng);
            for vals in row.chunks_exact(group) {
                let absmax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
                let mut best = (f64::INFINITY, 0f32);
                for (grid, &qm) in grids.iter().zip(&qmaxes) {
                    let d = absmax / qm;
                    let e = group_error(vals, grid, d, &mut scratch);
                    if e < best.0 {
                        best = (e, d);
                    }
                }
                deltas.push(best.1);
            }
            let dmax = deltas.iter().fold(0f32, |m, &d| m.max(d));
            let ch = if dmax == 0.0 { f16::ONE } else { f16_scale(dmax / 255.0, "BitMoD channel scale")? };
            channel_scales.push(ch);
            let chf = ch.to_f32();
            // Pass 2: every type again with its *stored* scale q(Δ_T)·Δ_ch.
            for (gi, vals) in row.chunks_exact(group).enumerate() {
                let absmax = vals.iter().fold(0f32, |m, v| m.max(v.abs()));
                let mut best = (f64::INFINITY, 0u8, 0u8);
                for (sel, (grid, &qm)) in grids.iter().zip(&qmaxes).enumerate() {
                    let q = rne(absmax / qm / chf).clamp(0.0, 255.0) as u8;
                    let e = group_error(vals, grid, q as f32 * chf, &mut scratch);
                    if e < best.0 {
                        best = (e, sel as u8, q);
                        best_codes.copy_from_slice(&scratch);
                    }
                }
                codes[r * k + gi * group..r * k + (gi + 1) * group].copy_from_slice(&best_codes);
                group_scales[r * ng + gi] = best.2;
                selectors[r * ng.div_ceil(4) + gi / 4] |= best.1 << (2 * (gi % 4));
            }
        }
        let out =
            Self { n, k, bits, group, codes: pack_rows(&codes, k, bits), group_scales, selectors, channel_scales };
        out.validate()?;
        Ok(out)
    }

    /// Checks every field against shape, bits and group size.
    pub fn validate(&self) -> Result<()> {
        check_bits(self.bits)?;
        if self.n == 0 || self.k == 0 {
            return Err(LowbitError::Empty { what: "mixed weight".into(), shape: format!("[{}, {}]", self.n, self.k) });
        }
        if !SUPPORTED_GROUPS.contains(&self.group) {
            return Err(LowbitError::InvalidGroupSize { format: FORMAT, group: self.group, supported: "32, 64, 128" });
        }
        Granularity::Group(self.group).check(self.k, FORMAT)?;
        let ng = self.n_groups();
        check_len("codes", self.codes.len(), self.n * words_per_row(self.k, self.bits))?;
        if let Some(r) = crate::bits::first_dirty_row_tail(&self.codes, self.n, self.k, self.bits) {
            return Err(LowbitError::invalid("codes", format!("padding bits after the last code of row {r} are set")));
        }
        check_len("group_scales", self.group_scales.len(), self.n * ng)?;
        check_len("selectors", self.selectors.len(), self.n * ng.div_ceil(4))?;
        check_len("channel_scales", self.channel_scales.len(), self.n)?;
        if let Some((i, s)) = self.channel_scales.iter().enumerate().find(|(_, s)| !(s.is_finite() && s.to_f32() > 0.0))
        {
            return Err(LowbitError::invalid(
                "channel_scales",
                format!("scale {s} of row {i} is not finite and positive"),
            ));
        }
        Ok(())
    }

    /// Number of groups per row.
    pub fn n_groups(&self) -> usize {
        self.k / self.group
    }

    /// Datatype selector (0 ER+, 1 ER−, 2 EA+, 3 EA−) of group `g` of row `r`.
    #[inline]
    pub fn selector(&self, r: usize, g: usize) -> u8 {
        (self.selectors[r * self.n_groups().div_ceil(4) + g / 4] >> (2 * (g % 4))) & 3
    }

    /// The code of element `(r, c)`.
    pub fn code(&self, r: usize, c: usize) -> u8 {
        get_code(&self.codes, self.k, self.bits, r, c)
    }

    /// All codes, one per byte, `[n, k]`.
    pub fn unpacked_codes(&self) -> Vec<u8> {
        unpack_rows(&self.codes, self.n, self.k, self.bits)
    }

    /// Dequantized weights, `f32(grid) · (f32(q_g) · f32(Δ_ch))` (exact, so bit-exact with the GPU).
    pub fn dequantize(&self) -> Array2<f32> {
        let ng = self.n_groups();
        Array2::from_shape_fn((self.n, self.k), |(r, c)| {
            let g = c / self.group;
            let gs = self.group_scales[r * ng + g] as f32 * self.channel_scales[r].to_f32();
            grid_value(self.bits, self.selector(r, g), self.code(r, c)) as f32 * gs
        })
    }

    /// How many groups chose each datatype (ER+, ER−, EA+, EA−).
    pub fn type_histogram(&self) -> [usize; 4] {
        let mut h = [0; 4];
        for r in 0..self.n {
            for g in 0..self.n_groups() {
                h[self.selector(r, g) as usize] += 1;
            }
        }
        h
    }

    /// Bytes of storage: codes, group scales, selectors and channel scales.
    pub fn storage_bytes(&self) -> usize {
        self.codes.len() * 4 + self.group_scales.len() + self.selectors.len() + self.channel_scales.len() * 2
    }
}
