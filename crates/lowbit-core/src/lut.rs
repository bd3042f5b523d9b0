//! Lookup-table formats: NF4 (QLoRA's 4-bit NormalFloat) and any sorted `2^b`-entry f32 table.
//!
//! Layout (see `docs/formats.md`): `codes` row bitstreams of `b`-bit table indices; `scales` `[N, n_groups]`
//! f16 (the group's absmax); `lut` `[2^b]` f32, strictly ascending. Dequantization (one f32 multiply, so
//! bit-exact anywhere): `w = lut[code] · f32(scale)`.

use crate::affine::f16_scale;
use crate::bits::{get_code, pack_rows, unpack_rows, words_per_row};
use crate::error::{LowbitError, Result};
use crate::granularity::Granularity;
use crate::util::{check_finite_slice, check_len, check_matrix};
use half::f16;
use ndarray::{Array2, ArrayView2};

const FORMAT: &str = "LUT";

/// The 16 NF4 values (QLoRA, Dettmers et al. 2023): quantiles of N(0, 1) normalised to [−1, 1], with an
/// exact zero.
pub const NF4: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// A weight matrix of table indices with per-group absmax scales.
#[derive(Debug, Clone, PartialEq)]
pub struct LutWeight {
    /// Output features (rows).
    pub n: usize,
    /// Input features (columns).
    pub k: usize,
    /// Bits per index, 1..=8; the table has `2^bits` entries.
    pub bits: u32,
    /// Group size along K.
    pub granularity: Granularity,
    /// The value table, strictly ascending, `2^bits` finite entries.
    pub lut: Vec<f32>,
    /// Row bitstreams of indices.
    pub codes: Vec<u32>,
    /// Per-group absmax scales, `[n, n_groups]`.
    pub scales: Vec<f16>,
}

fn check_lut(lut: &[f32]) -> Result<u32> {
    let bits = lut.len().trailing_zeros();
    if lut.len() < 2 || !lut.len().is_power_of_two() || bits > 8 {
        return Err(LowbitError::invalid("lut", format!("{} entries; need 2^b entries with b in 1..=8", lut.len())));
    }
    check_finite_slice("lut", lut, false)?;
    if lut.windows(2).any(|w| w[0] >= w[1]) {
        return Err(LowbitError::invalid("lut", "entries must be strictly ascending"));
    }
    Ok(bits)
}

impl LutWeight {
    /// Quantizes to the nearest entry of `lut` (ties to the lower entry) after dividing by the group absmax.
    pub fn quantize(w: ArrayView2<f32>, lut: &[f32], granularity: Granularity) -> Result<Self> {
        let bits = check_lut(lut)?;
        check_matrix("weight", &w)?;
        let (n, k) = w.dim();
        granularity.check(k, FORMAT)?;
        let g = granularity.group_len(k);
        // Midpoints in f64 (exact unless two neighbours differ by more than 2^29 in magnitude): an f32
        // midpoint can round up past the true one, and an `x` equal to it (strictly nearer the upper entry)
        // would then get the lower code.
        let mids: Vec<f64> = lut.windows(2).map(|p| (p[0] as f64 + p[1] as f64) * 0.5).collect();
        let mut codes = vec![0u8; n * k];
        let mut scales = Vec::with_capacity(n * (k / g));
        for r in 0..n {
            let row = w.row(r);
            for gi in 0..k / g {
                let cols = gi * g..(gi + 1) * g;
                let absmax = cols.clone().fold(0f32, |m, c| m.max(row[c].abs()));
                let s = if absmax == 0.0 { f16::ONE } else { f16_scale(absmax, "LUT scale")? };
                let sf = s.to_f32();
                for c in cols {
                    let x = (row[c] / sf) as f64;
                    codes[r * k + c] = mids.partition_point(|&m| m < x) as u8;
                }
                scales.push(s);
            }
        }
        let out = Self { n, k, bits, granularity, lut: lut.to_vec(), codes: pack_rows(&codes, k, bits), scales };
        out.validate()?;
        Ok(out)
    }

    /// NF4 quantization (the [`NF4`] table).
    pub fn quantize_nf4(w: ArrayView2<f32>, granularity: Granularity) -> Result<Self> {
        Self::quantize(w, &NF4, granularity)
    }

    /// Whether the table is exactly NF4.
    pub fn is_nf4(&self) -> bool {
        self.lut == NF4
    }

    /// Checks every field against shape, bits, table and granularity.
    pub fn validate(&self) -> Result<()> {
        let bits = check_lut(&self.lut)?;
        if bits != self.bits {
            return Err(LowbitError::shape(
                "lut",
                format!("2^{} entries", self.bits),
                format!("{} entries", self.lut.len()),
            ));
        }
        if self.n == 0 || self.k == 0 {
            return Err(LowbitError::Empty { what: "LUT weight".into(), shape: format!("[{}, {}]", self.n, self.k) });
        }
        self.granularity.check(self.k, FORMAT)?;
        check_len("codes", self.codes.len(), self.n * words_per_row(self.k, self.bits))?;
        if let Some(r) = crate::bits::first_dirty_row_tail(&self.codes, self.n, self.k, self.bits) {
            return Err(LowbitError::invalid("codes", format!("padding bits after the last code of row {r} are set")));
        }
        check_len("scales", self.scales.len(), self.n * self.granularity.n_groups(self.k))?;
        if let Some((i, s)) = self.scales.iter().enumerate().find(|(_, s)| !(s.is_finite() && s.to_f32() > 0.0)) {
            return Err(LowbitError::invalid("scales", format!("scale {s} at {i} is not finite and positive")));
        }
        Ok(())
    }

    /// The code of element `(r, c)`.
    pub fn code(&self, r: usize, c: usize) -> u8 {
        get_code(&self.codes, self.k, self.bits, r, c)
    }

    /// All codes, one per byte, `[n, k]`.
    pub fn unpacked_codes(&self) -> Vec<u8> {
        unpack_rows(&self.codes, self.n, self.k, self.bits)
    }

    /// Dequantized weights, `lut[code] · f32(scale)` (bit-exact with the GPU).
    pub fn dequantize(&self) -> Array2<f32> {
        let ng = self.granularity.n_groups(self.k);
        let g = self.granularity.group_len(self.k);
        Array2::from_shape_fn((self.n, self.k), |(r, c)| {
            self.lut[self.code(r, c) as usize] * self.scales[r * ng + c / g].to_f32()
        })
    }

    /// Bytes of storage: codes, scales and the table.
    pub fn storage_bytes(&self) -> usize {
        self.codes.len() * 4 + self.scales.len() * 2 + self.lut.len() * 4
    }
}
