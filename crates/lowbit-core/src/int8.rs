//! Weights and CPU references of the int8 tensor-core GEMMs (W8A8, W4A8; `kernels/int8/`).
//!
//! - [`W8Weight`]: int8 weights with per-channel f32 scales, `w ≈ s[n] · q`, `q ∈ [−127, 127]`.
//! - [`W4A8Weight`]: 4-bit weights in QQQ-style two-level form, `w ≈ s[n] · g[n][j] · q`, `q ∈ [−8, 7]`, an
//!   integer group scale `g ∈ [1, 16]` per group of `group` columns (per-channel: no group scales, `g = 1`), so
//!   that the kernel's int8 operand `q · g` (|q · g| ≤ 128) is exact and the GEMM accumulates exactly in int32.
//! - [`gemm_i32`]: the exact int32 reference `acc = X · Wqᵀ`, [`Epilogue`]: the fused epilogue, written step by
//!   step as the kernel computes it (each operation rounded once in f32), so that outputs match bit for bit.
//! - [`act_quant_reference`]: residual add + RMSNorm + normalized Hadamard rotation + int8 quantization.
//!
//! The packed 4-bit layout ([`W4A8Weight::packed`]) is `[n][k / 8]` u32 words of 8 codes `u = q + 8`, nibble `i`
//! of a word holding column `8w + [0, 1, 4, 5, 2, 3, 6, 7][i]` (the order the kernel's expansion wants).

use half::{bf16, f16};
use ndarray::ArrayView2;

use crate::error::{LowbitError, Result};
use crate::util::{check_len, check_matrix, rne};

/// Fragment position (0..8: columns `4t..4t+3`, then `16+4t..16+4t+3`) held by nibble `i` of a word.
pub const W4_NIBBLE_COLUMN: [usize; 8] = [0, 1, 4, 5, 2, 3, 6, 7];

/// int8 weight codes `[n, k]` with per-channel scales.
#[derive(Debug, Clone, PartialEq)]
pub struct W8Weight {
    /// Rows (output features).
    pub n: usize,
    /// Columns (input features).
    pub k: usize,
    /// Codes in `[−127, 127]`, row-major.
    pub codes: Vec<i8>,
    /// `n` channel scales.
    pub scales: Vec<f32>,
}

fn scale_or_one(s: f32) -> f32 {
    if s == 0.0 || !s.is_finite() { 1.0 } else { s }
}

impl W8Weight {
    /// Symmetric per-channel quantization: `s = absmax / 127`, `q = rne(w / s)`.
    pub fn quantize(w: ArrayView2<f32>) -> Result<Self> {
        check_matrix("int8 weight", &w)?;
        let (n, k) = w.dim();
        let mut codes = Vec::with_capacity(n * k);
        let mut scales = Vec::with_capacity(n);
        for row in w.rows() {
            let s = scale_or_one(row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0);
            codes.extend(row.iter().map(|&v| rne(v / s).clamp(-127.0, 127.0) as i8));
            scales.push(s);
        }
        Ok(Self { n, k, codes, scales })
    }

    /// Checks lengths and code ranges.
    pub fn validate(&self) -> Result<()> {
        check_len("int8 weight codes", self.codes.len(), self.n * self.k)?;
        check_len("int8 weight scales", self.scales.len(), self.n)?;
        if let Some(i) = self.codes.iter().position(|&c| c == i8::MIN) {
            return Err(LowbitError::invalid("int8 weight codes", format!("-128 at {i} (range is ±127)")));
        }
        Ok(())
    }

    /// `f32(q) · s`, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.codes.iter().enumerate().map(|(i, &q)| q as f32 * self.scales[i / self.k]).collect()
    }
}

/// 4-bit weight for the W4A8 GEMM (QQQ-style two-level symmetric quantization).
#[derive(Debug, Clone, PartialEq)]
pub struct W4A8Weight {
    /// Rows (output features).
    pub n: usize,
    /// Columns (input features), a multiple of 32.
    pub k: usize,
    /// Columns per group scale (a multiple of 32 dividing `k`), or `None` for per-channel.
    pub group: Option<usize>,
    /// `[n][k / 8]` words of codes `u = q + 8` (see [`pack_w4`] for the order).
    pub packed: Vec<u32>,
    /// `[n][k / group]` integer group scales in `1..=16` (empty when per-channel).
    pub group_scales: Vec<u8>,
    /// `n` channel scales (f32).
    pub scales: Vec<f32>,
}

impl W4A8Weight {
    /// Quantizes `w` `[n, k]`. Per-channel: `s = absmax / 7`, `q = clamp(rne(w / s), −8, 7)`. Grouped (QQQ):
    /// `s = absmax / 112` gives int8 values `w8 = rne(w / s) ∈ [−112, 112]`; per group
    /// `g = clamp(⌈absmax(w8) / 7⌉, 1, 16)` and `q = clamp(rne(w8 / g), −8, 7)`.
    pub fn quantize(w: ArrayView2<f32>, group: Option<usize>) -> Result<Self> {
        check_matrix("W4A8 weight", &w)?;
        let (n, k) = w.dim();
        if !k.is_multiple_of(32) {
            return Err(LowbitError::KNotDivisible { k, group: 32 });
        }
        if let Some(g) = group
            && (g == 0 || !g.is_multiple_of(32) || !k.is_multiple_of(g))
        {
            return Err(LowbitError::InvalidGroupSize {
                group: g,
                format: "W4A8",
                supported: "multiples of 32 dividing K",
            });
        }
        let mut codes: Vec<i8> = Vec::with_capacity(n * k);
        let mut gsc = Vec::new();
        let mut scales = Vec::with_capacity(n);
        for row in w.rows() {
            let absmax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            match group {
                None => {
                    let s = scale_or_one(absmax / 7.0);
                    codes.extend(row.iter().map(|&v| rne(v / s).clamp(-8.0, 7.0) as i8));
                    scales.push(s);
                }
                Some(g) => {
                    let s = scale_or_one(absmax / 112.0);
                    let w8: Vec<f32> = row.iter().map(|&v| rne(v / s).clamp(-112.0, 112.0)).collect();
                    for chunk in w8.chunks(g) {
                        let am = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
                        let gs = ((am / 7.0).ceil() as i32).clamp(1, 16);
                        gsc.push(gs as u8);
                        codes.extend(chunk.iter().map(|&v| rne(v / gs as f32).clamp(-8.0, 7.0) as i8));
                    }
                    scales.push(s);
                }
            }
        }
        Ok(Self { n, k, group, packed: pack_w4(&codes, n, k)?, group_scales: gsc, scales })
    }

    /// Number of group scales per row (1 when per-channel).
    pub fn groups_per_row(&self) -> usize {
        self.group.map_or(1, |g| self.k / g)
    }

    /// Checks lengths and ranges.
    pub fn validate(&self) -> Result<()> {
        if !self.k.is_multiple_of(32) {
            return Err(LowbitError::KNotDivisible { k: self.k, group: 32 });
        }
        check_len("W4A8 packed codes", self.packed.len(), self.n * self.k / 8)?;
        check_len("W4A8 channel scales", self.scales.len(), self.n)?;
        match self.group {
            None => check_len("W4A8 group scales", self.group_scales.len(), 0)?,
            Some(g) => {
                if g == 0 || !g.is_multiple_of(32) || !self.k.is_multiple_of(g) {
                    return Err(LowbitError::KNotDivisible { k: self.k, group: g });
                }
                check_len("W4A8 group scales", self.group_scales.len(), self.n * (self.k / g))?;
                if let Some(i) = self.group_scales.iter().position(|&s| s == 0 || s > 16) {
                    return Err(LowbitError::invalid(
                        "W4A8 group scales",
                        format!("{} at {i} (range 1..=16)", self.group_scales[i]),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The 4-bit codes `q ∈ [−8, 7]`, `[n, k]` row-major.
    pub fn codes(&self) -> Vec<i8> {
        unpack_w4(&self.packed, self.n, self.k)
    }

    /// The int8 operand the kernel feeds the tensor cores: `q · g`, `[n, k]` row-major.
    pub fn expanded_i8(&self) -> Vec<i8> {
        let q = self.codes();
        match self.group {
            None => q,
            Some(g) => {
                let gpr = self.k / g;
                q.iter()
                    .enumerate()
                    .map(|(i, &c)| {
                        let (r, col) = (i / self.k, i % self.k);
                        (c as i32 * self.group_scales[r * gpr + col / g] as i32) as i8
                    })
                    .collect()
            }
        }
    }

    /// `s[n] · f32(q · g)`, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.expanded_i8().iter().enumerate().map(|(i, &v)| v as f32 * self.scales[i / self.k]).collect()
    }

    /// Bytes of the packed weight as stored (codes, group scales, channel scales).
    pub fn storage_bytes(&self) -> usize {
        self.packed.len() * 4 + self.group_scales.len() + self.scales.len() * 4
    }
}

/// Column (within its 32-column block) of nibble `nib` of word `t` of the block: the word holds the
/// `mma.m16n8k32` A-fragment columns of lane `t` (`4t..4t+3` and `16+4t..16+4t+3`), nibble `i` holding the
/// fragment position [`W4_NIBBLE_COLUMN`]`[i]`.
pub fn w4_column(t: usize, nib: usize) -> usize {
    let j = W4_NIBBLE_COLUMN[nib];
    if j < 4 { 4 * t + j } else { 16 + 4 * t + (j - 4) }
}

/// Packs codes `q ∈ [−8, 7]` (`[n, k]`, `k % 32 == 0`) into the kernel's `[n][k / 8]` word layout: per row and
/// 32-column block four words, word `t`, nibble `i` = column `32 b + w4_column(t, i)`.
pub fn pack_w4(codes: &[i8], n: usize, k: usize) -> Result<Vec<u32>> {
    check_len("W4 codes", codes.len(), n * k)?;
    if !k.is_multiple_of(32) {
        return Err(LowbitError::KNotDivisible { k, group: 32 });
    }
    if let Some(i) = codes.iter().position(|&q| !(-8..=7).contains(&q)) {
        return Err(LowbitError::invalid("W4 codes", format!("{} at {i} (range -8..=7)", codes[i])));
    }
    let mut out = Vec::with_capacity(n * k / 8);
    for block in codes.chunks(32) {
        for t in 0..4 {
            out.push((0..8).fold(0u32, |w, nib| w | (((block[w4_column(t, nib)] as i32 + 8) as u32) << (4 * nib))));
        }
    }
    Ok(out)
}

/// Inverse of [`pack_w4`].
pub fn unpack_w4(words: &[u32], n: usize, k: usize) -> Vec<i8> {
    let mut out = vec![0i8; n * k];
    for (wi, &w) in words.iter().enumerate() {
        let (block, t) = (wi / 4, wi % 4);
        for nib in 0..8 {
            out[block * 32 + w4_column(t, nib)] = (((w >> (4 * nib)) & 0xF) as i32 - 8) as i8;
        }
    }
    out
}

/// Rows and columns of one tile block of the int8 GEMM's weight layout.
pub const TILE_ROWS: usize = 128;
/// Columns (K) of one tile block.
pub const TILE_COLS: usize = 128;

/// Bytes of the tiled weight of an `[n, k]` W8 (`w4 = false`) or W4 weight.
pub fn tiled_bytes(n: usize, k: usize, w4: bool) -> usize {
    n.div_ceil(TILE_ROWS) * k.div_ceil(TILE_COLS) * TILE_ROWS * if w4 { TILE_COLS / 2 } else { TILE_COLS }
}

/// The int8 GEMM's tiled weight layout (`kernels/int8`): `rows` holds `n` rows of `k` int8 codes (W8) or of
/// `k / 2` packed bytes (W4, [`pack_w4`]'s words little-endian). Output: `[⌈n/128⌉][⌈k/128⌉]` blocks of 128 rows ×
/// 128 columns (16384 bytes W8, 8192 bytes W4), zero-padded; inside a block, 16-byte chunk `c` of row `r` sits at
/// byte `c · 2048 + (r / 8) · 128 + (r % 8) · 16` (the kernel's shared-memory core-matrix order), so one stage of
/// the kernel is one contiguous copy.
pub fn tile_weight(rows: &[u8], n: usize, k: usize, w4: bool) -> Result<Vec<u8>> {
    let row_bytes = if w4 { k / 2 } else { k };
    check_len("int8 GEMM weight bytes", rows.len(), n * row_bytes)?;
    if !k.is_multiple_of(if w4 { 32 } else { 16 }) {
        return Err(LowbitError::KNotDivisible { k, group: if w4 { 32 } else { 16 } });
    }
    let stage = if w4 { TILE_COLS / 2 } else { TILE_COLS };
    let block = TILE_ROWS * stage;
    let (nt, kt) = (n.div_ceil(TILE_ROWS), k.div_ceil(TILE_COLS));
    let mut out = vec![0u8; nt * kt * block];
    for b_n in 0..nt {
        for b_k in 0..kt {
            let base = (b_n * kt + b_k) * block;
            for r in 0..TILE_ROWS {
                let row = b_n * TILE_ROWS + r;
                if row >= n {
                    break;
                }
                for c in 0..stage / 16 {
                    let off = b_k * stage + c * 16;
                    if off >= row_bytes {
                        break;
                    }
                    let dst = base + c * 2048 + (r / 8) * 128 + (r % 8) * 16;
                    out[dst..dst + 16].copy_from_slice(&rows[row * row_bytes + off..row * row_bytes + off + 16]);
                }
            }
        }
    }
    Ok(out)
}

/// Columns of one block of the 2-bit bipolar streaming layout ([`tile_bip2`]).
pub const BIP2_TILE_COLS: usize = 256;

/// Column (within its 256-column unit) of 2-bit code `i` (bits `8b + 2i`, `b = byte`) of word `c` of lane `t` in
/// [`tile_bip2`]'s layout: `64c + 16t + 8(i / 2) + 4(i % 2) + b`. So `(word >> 2i) & 0x03030303` is the
/// `mma.m16n8k32` B fragment `b0` (`i` even) or `b1` of k32 step `i / 2` of the 64-column window `c`.
pub fn bip2_column(t: usize, c: usize, b: usize, i: usize) -> usize {
    64 * c + 16 * t + 8 * (i / 2) + 4 * (i % 2) + b
}

/// Bytes of the 2-bit bipolar streaming layout of an `[n, k]` weight.
pub fn tiled_bip2_bytes(n: usize, k: usize) -> usize {
    n.div_ceil(TILE_ROWS) * k.div_ceil(BIP2_TILE_COLS) * TILE_ROWS * 64
}

/// The int8 GEMM's 2-bit bipolar weight layout (`LOWBIT_I8_BIP2`, `kernels/int8/stream.cu`): codes `u ∈ 0..=3`
/// (`[n, k]` row-major, `k % 32 == 0`; value `2u − 3` to the kernel) in `[⌈n/128⌉][⌈k/256⌉]` blocks of 128 rows ×
/// 256 columns (8192 bytes), zero-padded; inside a block, 16-byte chunk `t ∈ 0..4` of row `r` sits at
/// `t · 2048 + (r / 8) · 128 + (r % 8) · 16` (the W4 chunk order) and holds 4 little-endian words, word `c` the
/// codes of [`bip2_column`]`(t, c, ·, ·)`.
pub fn tile_bip2(codes: &[u8], n: usize, k: usize) -> Result<Vec<u8>> {
    check_len("2-bit bipolar codes", codes.len(), n * k)?;
    if !k.is_multiple_of(32) {
        return Err(LowbitError::KNotDivisible { k, group: 32 });
    }
    if let Some(i) = codes.iter().position(|&u| u > 3) {
        return Err(LowbitError::invalid("2-bit bipolar codes", format!("{} at {i} (range 0..=3)", codes[i])));
    }
    let (nt, kt) = (n.div_ceil(TILE_ROWS), k.div_ceil(BIP2_TILE_COLS));
    let block = TILE_ROWS * 64;
    let mut out = vec![0u8; nt * kt * block];
    for row in 0..n {
        let (b_n, r) = (row / TILE_ROWS, row % TILE_ROWS);
        for b_k in 0..kt {
            let base = (b_n * kt + b_k) * block + (r / 8) * 128 + (r % 8) * 16;
            for t in 0..4 {
                for c in 0..4 {
                    let mut w = 0u32;
                    for b in 0..4 {
                        for i in 0..4 {
                            let col = b_k * BIP2_TILE_COLS + bip2_column(t, c, b, i);
                            if col < k {
                                w |= (codes[row * k + col] as u32) << (8 * b + 2 * i);
                            }
                        }
                    }
                    let dst = base + t * 2048 + 4 * c;
                    out[dst..dst + 4].copy_from_slice(&w.to_le_bytes());
                }
            }
        }
    }
    Ok(out)
}

/// Inverse of [`tile_bip2`] (tests).
pub fn untile_bip2(tiled: &[u8], n: usize, k: usize) -> Vec<u8> {
    let kt = k.div_ceil(BIP2_TILE_COLS);
    let mut out = vec![0u8; n * k];
    for row in 0..n {
        let (b_n, r) = (row / TILE_ROWS, row % TILE_ROWS);
        for b_k in 0..kt {
            let base = (b_n * kt + b_k) * TILE_ROWS * 64 + (r / 8) * 128 + (r % 8) * 16;
            for t in 0..4 {
                for c in 0..4 {
                    let at = base + t * 2048 + 4 * c;
                    let w = u32::from_le_bytes([tiled[at], tiled[at + 1], tiled[at + 2], tiled[at + 3]]);
                    for b in 0..4 {
                        for i in 0..4 {
                            let col = b_k * BIP2_TILE_COLS + bip2_column(t, c, b, i);
                            if col < k {
                                out[row * k + col] = ((w >> (8 * b + 2 * i)) & 3) as u8;
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Exact `acc[m, n] = Σ_k x[m, k] · w[n, k]` in int32 (`x` `[m, k]`, `w` `[n, k]`, row-major). Panics only on
/// buffer lengths that do not match the sizes (a caller bug).
pub fn gemm_i32(x: &[i8], m: usize, k: usize, w: &[i8], n: usize) -> Vec<i32> {
    assert_eq!(x.len(), m * k, "x length");
    assert_eq!(w.len(), n * k, "w length");
    let mut out = vec![0i32; m * n];
    for r in 0..m {
        let xr = &x[r * k..(r + 1) * k];
        for c in 0..n {
            let wr = &w[c * k..(c + 1) * k];
            out[r * n + c] = xr.iter().zip(wr).map(|(&a, &b)| a as i32 * b as i32).sum();
        }
    }
    out
}

/// Output type of the int8 GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8Out {
    /// f16, round to nearest even.
    F16,
    /// bf16, round to nearest even.
    Bf16,
    /// int8: `sat(rne(y / out_scale))`.
    I8,
    /// The raw int32 accumulator.
    I32,
}

/// The fused epilogue of the int8 GEMM on the CPU (host vectors; `None` = absent).
#[derive(Debug, Clone, Default)]
pub struct Epilogue {
    /// `[m]` row scales (per-token activation scales); `None` = `row_scale_value` for every row.
    pub row_scale: Option<Vec<f32>>,
    /// Per-tensor row scale.
    pub row_scale_value: f32,
    /// `[n]` column scales (weight channel scales).
    pub col_scale: Option<Vec<f32>>,
    /// `[m]` × `[n]` rank-1 correction.
    pub correction: Option<(Vec<f32>, Vec<f32>)>,
    /// `[m]` × `[n]` second rank-1 correction, applied after the first (the bipolar GEMM's int8 mapping of
    /// 8-bit activations with 8-bit weights or weight offsets needs two).
    pub correction2: Option<(Vec<f32>, Vec<f32>)>,
    /// `[n]` bias.
    pub bias: Option<Vec<f32>>,
    /// int8 output scale (when `out_scales` is `None`).
    pub out_scale: f32,
    /// `[n]` per-column int8 output scales (`sat(rne(y / out_scales[n]))`), e.g. one scale per output segment.
    pub out_scales: Option<Vec<f32>>,
}

impl Epilogue {
    /// `v = (((f32(acc) · rs[m]) · cs[n] + rc[m] · cc[n]) + rc2[m] · cc2[n]) + bias[n]`, each operation rounded
    /// once (each correction as one fused multiply-add), exactly as the kernel computes it.
    pub fn value(&self, acc: i32, m: usize, n: usize) -> f32 {
        let rs = self.row_scale.as_ref().map_or(self.row_scale_value, |v| v[m]);
        let mut v = acc as f32 * rs;
        if let Some(cs) = &self.col_scale {
            v *= cs[n];
        }
        if let Some((rc, cc)) = &self.correction {
            v = rc[m].mul_add(cc[n], v);
        }
        if let Some((rc, cc)) = &self.correction2 {
            v = rc[m].mul_add(cc[n], v);
        }
        if let Some(b) = &self.bias {
            v += b[n];
        }
        v
    }

    /// The int8 output code of `v` with the per-tensor `out_scale`.
    pub fn to_i8(&self, v: f32) -> i8 {
        rne(v / self.out_scale).clamp(-128.0, 127.0) as i8
    }

    /// The int8 output code of `v` in output column `n` (`out_scales[n]`, else `out_scale`).
    pub fn to_i8_at(&self, v: f32, n: usize) -> i8 {
        let s = self.out_scales.as_ref().map_or(self.out_scale, |o| o[n]);
        rne(v / s).clamp(-128.0, 127.0) as i8
    }

    /// Applies the epilogue to an `[m, n]` accumulator: the output as raw little-endian element bits
    /// (u16 for f16 / bf16, i8 as u8, i32 as its bits), one `u32` per element.
    pub fn apply(&self, acc: &[i32], m: usize, n: usize, out: I8Out) -> Vec<u32> {
        assert_eq!(acc.len(), m * n, "accumulator length");
        acc.iter()
            .enumerate()
            .map(|(i, &a)| {
                let (r, c) = (i / n, i % n);
                match out {
                    I8Out::I32 => a as u32,
                    I8Out::F16 => f16::from_f32(self.value(a, r, c)).to_bits() as u32,
                    I8Out::Bf16 => bf16::from_f32(self.value(a, r, c)).to_bits() as u32,
                    I8Out::I8 => self.to_i8_at(self.value(a, r, c), c) as u8 as u32,
                }
            })
            .collect()
    }
}

/// What [`act_quant_reference`] does besides quantizing.
#[derive(Debug, Clone, Default)]
pub struct ActQuantOptions {
    /// `[m, k]` residual added first (the sum, rounded to the activation type, replaces it).
    pub residual: Option<Vec<f32>>,
    /// RMSNorm weight `[k]` and epsilon.
    pub rms_norm: Option<(Vec<f32>, f32)>,
    /// Hadamard block size (power of two dividing k), or 0 / 1 for none.
    pub hadamard: usize,
    /// Per-tensor static scale; `None` = dynamic per-token scales.
    pub static_scale: Option<f32>,
    /// Round the residual sum to bf16 (true) or f16 (false).
    pub bf16: bool,
}

/// Output of [`act_quant_reference`].
#[derive(Debug, Clone, PartialEq)]
pub struct ActQuantResult {
    /// int8 codes `[m, k]`.
    pub codes: Vec<i8>,
    /// Per-token scales (`[m]`) or the one static scale.
    pub scales: Vec<f32>,
    /// The updated residual (`x + residual` rounded to the activation type), when a residual was given.
    pub residual: Option<Vec<f32>>,
    /// The values that were quantized (after norm and rotation), `[m, k]`.
    pub values: Vec<f32>,
}

/// In-place normalized fast Walsh–Hadamard transform on each block of `h` values (`h` a power of two).
pub fn fwht_normalized(v: &mut [f32], h: usize) {
    assert!(h.is_power_of_two() && v.len().is_multiple_of(h), "block size");
    fwht_blocks(v, h, 1.0 / (h as f32).sqrt());
}

/// The butterflies behind [`fwht_normalized`] and `ssm::fwht_normalized_f64`, in one place so that the f32
/// reference and the f64 one stay the same transform (the order of the additions matches the FWHT kernels):
/// each block of `h` values (`h` a power of two) is transformed in place, then multiplied by `scale`
/// (`1 / sqrt(h)`, computed by the caller in the element type).
pub(crate) fn fwht_blocks<T>(v: &mut [T], h: usize, scale: T)
where
    T: Copy + std::ops::Add<Output = T> + std::ops::Sub<Output = T> + std::ops::MulAssign,
{
    for block in v.chunks_mut(h) {
        let mut len = 1;
        while len < h {
            for start in (0..h).step_by(2 * len) {
                for i in start..start + len {
                    let (a, b) = (block[i], block[i + len]);
                    block[i] = a + b;
                    block[i + len] = a - b;
                }
            }
            len *= 2;
        }
        block.iter_mut().for_each(|x| *x *= scale);
    }
}

/// CPU reference of the activation quantization kernel (`lowbit_act_quant`) on `x` `[m, k]` (values already
/// in the activation type). Sums are in f64 here, f32 in the kernel: RMSNorm / Hadamard outputs agree to a few
/// f32 ulps, so codes may differ by one where a value falls on a rounding boundary.
pub fn act_quant_reference(x: &[f32], m: usize, k: usize, opt: &ActQuantOptions) -> Result<ActQuantResult> {
    check_len("activations", x.len(), m * k)?;
    if opt.hadamard > 1 && (!opt.hadamard.is_power_of_two() || !k.is_multiple_of(opt.hadamard)) {
        return Err(LowbitError::invalid("hadamard size", format!("{} (power of two dividing k = {k})", opt.hadamard)));
    }
    let round = |v: f32| if opt.bf16 { bf16::from_f32(v).to_f32() } else { f16::from_f32(v).to_f32() };
    let mut vals = x.to_vec();
    let mut res_out = None;
    if let Some(r) = &opt.residual {
        check_len("residual", r.len(), m * k)?;
        vals.iter_mut().zip(r).for_each(|(v, &r)| *v = round(*v + r));
        res_out = Some(vals.clone());
    }
    let mut codes = Vec::with_capacity(m * k);
    let mut scales = Vec::new();
    for row in vals.chunks_mut(k) {
        if let Some((g, eps)) = &opt.rms_norm {
            check_len("RMSNorm weight", g.len(), k)?;
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / k as f64;
            let inv = 1.0 / (ms + *eps as f64).sqrt();
            row.iter_mut().zip(g).for_each(|(v, &g)| *v = (*v as f64 * inv * g as f64) as f32);
        }
        if opt.hadamard > 1 {
            fwht_normalized(row, opt.hadamard);
        }
        let s = match opt.static_scale {
            Some(s) => s,
            None => {
                let s = row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                let s = if s == 0.0 { 1.0 } else { s };
                scales.push(s);
                s
            }
        };
        codes.extend(row.iter().map(|&v| rne(v / s).clamp(-127.0, 127.0) as i8));
    }
    if let Some(s) = opt.static_scale {
        scales.push(s);
    }
    Ok(ActQuantResult { codes, scales, residual: res_out, values: vals })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn pack_round_trip_and_nibble_order() {
        let codes: Vec<i8> = (0..64).map(|i| ((i * 7) % 16) as i8 - 8).collect();
        let p = pack_w4(&codes, 2, 32).unwrap();
        assert_eq!(unpack_w4(&p, 2, 32), codes);
        // word 1 (lane t = 1): nibble 0 = column 4, nibble 2 = fragment position 4 = column 20, nibble 4 = column 6
        let w = p[1];
        assert_eq!((w & 0xF) as i32 - 8, codes[4] as i32);
        assert_eq!(((w >> 8) & 0xF) as i32 - 8, codes[20] as i32);
        assert_eq!(((w >> 16) & 0xF) as i32 - 8, codes[6] as i32);
        let cols: std::collections::BTreeSet<usize> =
            (0..4).flat_map(|t| (0..8).map(move |i| w4_column(t, i))).collect();
        assert_eq!(cols.len(), 32);
        assert!(pack_w4(&[9i8; 32], 1, 32).is_err());
        assert!(pack_w4(&[0i8; 16], 1, 16).is_err());
    }

    #[test]
    fn bip2_layout_round_trips_and_matches_fragments() {
        let (n, k) = (131, 288); // odd rows, a partial 256-column block
        let codes: Vec<u8> = (0..n * k).map(|i| ((i * 7 + i / 5) % 4) as u8).collect();
        let t = tile_bip2(&codes, n, k).unwrap();
        assert_eq!(t.len(), tiled_bip2_bytes(n, k));
        assert_eq!(untile_bip2(&t, n, k), codes);
        // Every column of a unit appears once per (t, c, b, i).
        let cols: std::collections::BTreeSet<usize> = (0..4)
            .flat_map(|t| (0..4).flat_map(move |c| (0..16).map(move |bi| bip2_column(t, c, bi / 4, bi % 4))))
            .collect();
        assert_eq!(cols.len(), 256);
        // Row 9, lane t = 2, word c = 1: (w >> 2) & 3 in byte 3 is b1 of step 0 = column 64 + 32 + 4 + 3.
        let at = 2 * 2048 + 128 + 16 + 4;
        let w = u32::from_le_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
        assert_eq!(((w >> (24 + 2)) & 3) as u8, codes[9 * k + 64 + 32 + 4 + 3]);
        // Bad inputs: a code > 3, K not a multiple of 32, a short buffer.
        assert!(tile_bip2(&[4u8; 32], 1, 32).is_err());
        assert!(tile_bip2(&[0u8; 48], 1, 48).is_err());
        assert!(tile_bip2(&[0u8; 31], 1, 32).is_err());
    }

    /// The kernel's IMAD expansion: lane = u * s + (4096 − 8 s) per 16-bit lane, low byte = q * s.
    #[test]
    fn imad_expansion_is_exact() {
        for s in 1u32..=16 {
            let c = (4096 - 8 * s) * 0x0001_0001;
            for u0 in 0u32..16 {
                for u1 in 0u32..16 {
                    let r = (u0 | (u1 << 16)).wrapping_mul(s).wrapping_add(c);
                    let b0 = (r & 0xFF) as u8 as i8;
                    let b2 = ((r >> 16) & 0xFF) as u8 as i8;
                    assert_eq!(b0 as i32, (u0 as i32 - 8) * s as i32, "s={s} u={u0}");
                    assert_eq!(b2 as i32, (u1 as i32 - 8) * s as i32, "s={s} u={u1}");
                }
            }
        }
    }

    #[test]
    fn w4_quantization_error_is_small_and_bounded() {
        let mut seed = 7;
        let w = Array2::from_shape_fn((5, 256), |_| lcg(&mut seed));
        for group in [None, Some(128), Some(32)] {
            let q = W4A8Weight::quantize(w.view(), group).unwrap();
            q.validate().unwrap();
            assert!(q.expanded_i8().iter().all(|&v| (-128..=112).contains(&(v as i32))));
            let d = q.dequantize();
            let err: f32 = d.iter().zip(w.iter()).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
            let nrm: f32 = w.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(err / nrm < 0.16, "{group:?}: {}", err / nrm);
        }
        assert!(W4A8Weight::quantize(w.view(), Some(48)).is_err());
        let w = Array2::<f32>::ones((2, 40));
        assert!(W4A8Weight::quantize(w.view(), None).is_err());
    }

    #[test]
    fn w8_quantization_and_exact_gemm() {
        let mut seed = 3;
        let w = Array2::from_shape_fn((3, 48), |_| lcg(&mut seed));
        let q = W8Weight::quantize(w.view()).unwrap();
        q.validate().unwrap();
        let x: Vec<i8> = (0..2 * 48).map(|i| ((i * 37) % 255) as i8).collect();
        let acc = gemm_i32(&x, 2, 48, &q.codes, 3);
        for r in 0..2 {
            for c in 0..3 {
                let want: i64 = (0..48).map(|j| x[r * 48 + j] as i64 * q.codes[c * 48 + j] as i64).sum();
                assert_eq!(acc[r * 3 + c] as i64, want);
            }
        }
    }

    #[test]
    fn epilogue_order_and_int8_saturation() {
        let e = Epilogue {
            row_scale: Some(vec![0.5, 2.0]),
            col_scale: Some(vec![3.0]),
            correction: Some((vec![1.0, -1.0], vec![0.25])),
            bias: Some(vec![1.0]),
            out_scale: 0.5,
            ..Default::default()
        };
        assert_eq!(e.value(4, 0, 0), 4.0 * 0.5 * 3.0 + 0.25 + 1.0);
        assert_eq!(e.value(4, 1, 0), 4.0 * 2.0 * 3.0 - 0.25 + 1.0);
        // the second rank-1 term comes after the first, before the bias
        let e2 = Epilogue { correction2: Some((vec![2.0, 0.5], vec![-4.0])), ..e.clone() };
        assert_eq!(e2.value(4, 0, 0), 4.0 * 0.5 * 3.0 + 0.25 - 8.0 + 1.0);
        assert_eq!(e2.value(4, 1, 0), 4.0 * 2.0 * 3.0 - 0.25 - 2.0 + 1.0);
        assert_eq!(e.to_i8(1000.0), 127);
        assert_eq!(e.to_i8(-1000.0), -128);
        assert_eq!(e.to_i8(0.75), 2); // 1.5 rounds to even
        let out = e.apply(&[4, 4], 2, 1, I8Out::I32);
        assert_eq!(out, vec![4, 4]);
        // per-column output scales override out_scale column by column
        let e =
            Epilogue { row_scale_value: 1.0, out_scale: 1.0, out_scales: Some(vec![2.0, 0.5]), ..Default::default() };
        let out = e.apply(&[5, 5, -300, 7], 2, 2, I8Out::I8);
        assert_eq!(out, vec![2, 10, (-128i8) as u8 as u32, 14]); // 2.5 -> 2 (even), 10, saturated, 14
    }

    #[test]
    fn act_quant_plain_matches_per_token_quantizer() {
        let mut seed = 11;
        let x: Vec<f32> = (0..3 * 64).map(|_| lcg(&mut seed)).collect();
        let r = act_quant_reference(&x, 3, 64, &ActQuantOptions::default()).unwrap();
        let a =
            crate::Int8Activations::quantize_per_token(ndarray::ArrayView2::from_shape((3, 64), &x).unwrap()).unwrap();
        assert_eq!(r.codes, a.codes);
        assert_eq!(r.scales, a.scales);
    }

    #[test]
    fn tiling_places_chunks_in_core_matrix_order() {
        let (n, k) = (130, 160);
        let rows: Vec<u8> = (0..n * k).map(|i| (i % 251) as u8 + 1).collect();
        let t = tile_weight(&rows, n, k, false).unwrap();
        assert_eq!(t.len(), tiled_bytes(n, k, false));
        assert_eq!(t.len(), 2 * 2 * 16384);
        // row 9, columns 16..32 (chunk 1) of block (0, 0)
        let at = 2048 + 128 + 16;
        assert_eq!(&t[at..at + 16], &rows[9 * k + 16..9 * k + 32]);
        // row 129 (block row 1, r = 1), columns 144..160 (block column 1, chunk 1)
        let at = 3 * 16384 + 2048 + 16;
        assert_eq!(&t[at..at + 16], &rows[129 * k + 144..129 * k + 160]);
        // padding: columns 160.. of block column 1 and rows 130.. are zero
        assert!(t[3 * 16384 + 2 * 2048..3 * 16384 + 3 * 2048].iter().all(|&b| b == 0));
        assert_eq!(t.iter().filter(|&&b| b != 0).count(), n * k);
        let t4 = tile_weight(&rows[..n * k / 2], n, k, true).unwrap();
        assert_eq!(t4.len(), tiled_bytes(n, k, true));
        assert!(tile_weight(&rows[..10], 1, 10, false).is_err());
    }

    #[test]
    fn fwht_is_orthonormal() {
        let mut v = vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0];
        fwht_normalized(&mut v, 4);
        assert_eq!(&v[..4], &[0.5, 0.5, 0.5, 0.5]);
        let n2: f32 = v[4..].iter().map(|x| x * x).sum();
        assert!((n2 - 4.0).abs() < 1e-6);
        fwht_normalized(&mut v, 4);
        assert!((v[0] - 1.0).abs() < 1e-6 && (v[5] - 2.0).abs() < 1e-6);
    }
}
