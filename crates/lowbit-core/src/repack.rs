//! Offline repack from the plain formats to the weight-only GEMM kernels' **tiled fragment layout**
//! (`kernels/weight_only/`, `docs/formats.md` § "Tiled GEMM layout"). One layout serves every M: the
//! small-M streaming path and the tensor-core paths read the same bytes.
//!
//! The weight `W[N, K]` is the `A` operand of `mma.m16n8k16` (rows = output features). It is cut into
//! 16-row **strips** and 16-column **tiles**; for each tile, lane `(g, t) = (lane / 4, lane % 4)` of a warp
//! owns the eight A-fragment codes `a0..a7` at rows `{g, g+8}` × columns `{2t, 2t+1, 2t+8, 2t+9}`:
//!
//! | a0 | a1 | a2 | a3 | a4 | a5 | a6 | a7 |
//! |---|---|---|---|---|---|---|---|
//! | (g, 2t) | (g, 2t+1) | (g+8, 2t) | (g+8, 2t+1) | (g, 2t+8) | (g, 2t+9) | (g+8, 2t+8) | (g+8, 2t+9) |
//!
//! A **k-step** is `tiles_per_step` consecutive tiles whose codes a lane loads with one 16-byte load
//! (plus an 8-byte one for the 3-bit high bits): `words[((strip · ksteps + step) · 32 + lane) · 4 + w]`.
//! Within a lane's words the codes sit in the order its decoder wants (see [`TiledFormat`]).
//! Per (strip, group, g) the kernel reads one `[u32; 2]` of metadata: the f16 scale pair
//! (row g low half, row g+8 high half) and an aux word (INT zero points or BitMoD selectors,
//! row g in byte 0 and row g+8 in byte 1).

use crate::affine::IntAffineWeight;
use crate::bitmod::MixedWeight;
use crate::error::{LowbitError, Result};
use crate::granularity::Granularity;
use crate::lut::LutWeight;
use crate::weight::QuantizedWeight;
use half::f16;

/// The code arrangement of one tiled format (what the GPU decoder expects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum TiledFormat {
    /// INT 2-bit: two tiles per word; slot `4p + r` = `a_{2r}`, slot `4p + r + 8` = `a_{2r+1}` of tile `p`.
    Int2 = 0,
    /// INT 3-bit: low two bits as [`TiledFormat::Int2`]; high bits four tiles per word, bit `16h + 4u + r`.
    Int3 = 1,
    /// INT 4-bit: one word per tile, nibble slots `[a0, a2, a4, a6, a1, a3, a5, a7]`.
    Int4 = 2,
    /// INT 8-bit: two words per tile, bytes `[a0..a3]`, `[a4..a7]`.
    Int8 = 3,
    /// 2-bit table codes: two tiles per word, code `i` of tile `p` at bits `16p + 2i`.
    Lut2 = 4,
    /// 3-bit table codes: low two bits as [`TiledFormat::Lut2`]; high bits four tiles per word, bit `8u + i`.
    Lut3 = 5,
    /// 4-bit table codes: one word per tile, nibble `i` = `a_i`.
    Lut4 = 6,
    /// BitMoD FP4 for the arithmetic decoder: one word per tile; code `a_{2r+h}` (register `r`, half `h`) has its
    /// 3 magnitude bits at `16h + [9, 0, 3, 12][r]` and its sign bit at `16h + [15, 6, 7, 8][r]`.
    Mix4 = 7,
    /// BitMoD FP3 for the byte-permute decoder (no shared-memory table): a k-step's six words per lane (the four
    /// main words, then the two high-bit-stream words) `W0..W5`. Tile `j < 6` holds its codes in `Wj`, code `a_i` at
    /// bits `4·n .. 4·n + 2` with nibble `n = [0, 1, 4, 5, 2, 3, 6, 7][i]`; bit `4·n + 3` of every word is spare.
    /// Tiles 6 and 7 live in the spare bits: bit `b` of code `a_i` of tile `6 + u` is bit `4·n + 3` of `W_{3u + b}`.
    Mix3 = 8,
}

impl TiledFormat {
    /// Tiles (of 16 columns) per k-step.
    pub fn tiles_per_step(self) -> usize {
        match self {
            TiledFormat::Int4 | TiledFormat::Lut4 | TiledFormat::Mix4 => 4,
            TiledFormat::Int8 => 2,
            TiledFormat::Int2 | TiledFormat::Int3 | TiledFormat::Lut2 | TiledFormat::Lut3 | TiledFormat::Mix3 => 8,
        }
    }
    /// Bits per code.
    pub fn bits(self) -> u32 {
        match self {
            TiledFormat::Int2 | TiledFormat::Lut2 => 2,
            TiledFormat::Int3 | TiledFormat::Lut3 | TiledFormat::Mix3 => 3,
            TiledFormat::Int4 | TiledFormat::Lut4 | TiledFormat::Mix4 => 4,
            TiledFormat::Int8 => 8,
        }
    }
    /// Whether the 3-bit high-bit stream is present (two words per lane per k-step).
    pub fn has_hi(self) -> bool {
        matches!(self, TiledFormat::Int3 | TiledFormat::Lut3 | TiledFormat::Mix3)
    }
    /// Whether codes index a value table.
    pub fn is_lut(self) -> bool {
        matches!(self, TiledFormat::Lut2 | TiledFormat::Lut3 | TiledFormat::Lut4)
    }
}

/// Words per lane per k-step in the main stream (always 4: one 16-byte load).
pub const WORDS_PER_LANE: usize = 4;
/// Words per lane per k-step in the 3-bit high-bit stream.
pub const HI_WORDS_PER_LANE: usize = 2;

/// A weight repacked for the weight-only GEMM kernels.
#[derive(Debug, Clone, PartialEq)]
pub struct TiledWeight {
    /// Logical rows (output features).
    pub n: usize,
    /// Logical columns (input features).
    pub k: usize,
    /// Rows padded to a multiple of 16.
    pub n_pad: usize,
    /// Columns padded to a multiple of the k-step.
    pub k_pad: usize,
    /// Code arrangement.
    pub format: TiledFormat,
    /// Columns per group (per-channel: `k_pad`).
    pub group_len: usize,
    /// Main code stream.
    pub words: Vec<u32>,
    /// 3-bit high-bit stream (empty otherwise).
    pub hi_words: Vec<u32>,
    /// `[n_pad/16][groups][8][2]` u32: f16 scale pair, aux word.
    pub meta: Vec<u32>,
    /// Per-row scale applied after the K reduction (BitMoD `Δ_ch`; [`TiledFormat::Mix4`]: `2^15 · Δ_ch`); empty = 1.
    pub channel_scales: Vec<f32>,
    /// Value tables `[n_tables][2^bits]` for table formats (NF4, LUTs); empty for INT and the BitMoD formats
    /// ([`TiledFormat::Mix4`], [`TiledFormat::Mix3`]).
    pub lut: Vec<f32>,
    /// Act-order: the kernel's column `j` is the caller's column `perm[j]` (X is gathered first).
    pub perm: Option<Vec<u32>>,
}

/// A source of codes and per-group metadata, independent of the plain format.
struct Source<'a> {
    n: usize,
    k: usize,
    group_len: usize,
    code: Box<dyn Fn(usize, usize) -> u8 + 'a>,
    scale: Box<dyn Fn(usize, usize) -> f16 + 'a>,
    aux: Box<dyn Fn(usize, usize) -> u8 + 'a>,
}

impl TiledWeight {
    /// Repacks any weight the weight-only GEMM supports: INT 2/3/4/8 (act-order included), BitMoD 3/4-bit,
    /// and 2/3/4-bit tables (NF4). bipolar-INT weights belong to the bipolar GEMM and are rejected.
    pub fn from_weight(w: &QuantizedWeight) -> Result<Self> {
        w.validate()?;
        match w {
            QuantizedWeight::Int(w) => Self::from_int(w),
            QuantizedWeight::Mixed(w) => Self::from_mixed(w),
            QuantizedWeight::Lut(w) => Self::from_lut(w),
            QuantizedWeight::Bipolar(_) => Err(LowbitError::Unsupported(
                "bipolar-INT weights run on the bipolar GEMM, not the weight-only GEMM".into(),
            )),
        }
    }

    fn from_int(w: &IntAffineWeight) -> Result<Self> {
        let format = match w.bits {
            2 => TiledFormat::Int2,
            3 => TiledFormat::Int3,
            4 => TiledFormat::Int4,
            8 => TiledFormat::Int8,
            b => {
                return Err(LowbitError::UnsupportedBits {
                    format: "weight-only GEMM (INT)",
                    bits: b,
                    supported: "2, 3, 4, 8",
                });
            }
        };
        let g = w.granularity.group_len(w.k);
        let ng = w.n_groups();
        // Act-order: sort columns by group so every group is contiguous again.
        let perm: Option<Vec<u32>> = w.g_idx.as_ref().map(|gi| {
            let mut cols: Vec<u32> = (0..w.k as u32).collect();
            cols.sort_by_key(|&c| gi[c as usize]);
            cols
        });
        if let (Some(p), Some(gi)) = (&perm, &w.g_idx) {
            for (j, &c) in p.iter().enumerate() {
                if gi[c as usize] as usize != j / g {
                    return Err(LowbitError::Unsupported(
                        "act-order weight whose groups do not all hold exactly group_len columns".into(),
                    ));
                }
            }
        }
        let codes = w.unpacked_codes();
        let col = |j: usize| perm.as_ref().map_or(j, |p| p[j] as usize);
        let src = Source {
            n: w.n,
            k: w.k,
            group_len: g,
            code: Box::new(|r, j| codes[r * w.k + col(j)]),
            scale: Box::new(|r, gi| w.scales[r * ng + gi]),
            aux: Box::new(|r, gi| w.zeros[r * ng + gi]),
        };
        let mut t = Self::build(format, &src, w.granularity == Granularity::PerChannel)?;
        drop(src);
        t.perm = perm;
        Ok(t)
    }

    fn from_mixed(w: &MixedWeight) -> Result<Self> {
        // FP4: the arithmetic decoder, FP3: the byte-permute decoder (neither reads a table).
        let format = if w.bits == 4 { TiledFormat::Mix4 } else { TiledFormat::Mix3 };
        let ng = w.n_groups();
        let codes = w.unpacked_codes();
        let src = Source {
            n: w.n,
            k: w.k,
            group_len: w.group,
            code: Box::new(|r, j| codes[r * w.k + j]),
            scale: Box::new(|r, gi| f16::from_f32(w.group_scales[r * ng + gi] as f32)),
            aux: Box::new(|r, gi| w.selector(r, gi)),
        };
        let mut t = Self::build(format, &src, false)?;
        // Mix4 decodes grid values times 2^-15 (an f16 bit placement, see TiledFormat::Mix4): the channel scale
        // carries the 2^15 (exact in f32). Mix3 decodes the grid values themselves.
        let fold = if format == TiledFormat::Mix4 { 32768.0 } else { 1.0 };
        t.channel_scales =
            (0..t.n_pad).map(|r| if r < w.n { w.channel_scales[r].to_f32() * fold } else { 0.0 }).collect();
        Ok(t)
    }

    fn from_lut(w: &LutWeight) -> Result<Self> {
        let format = match w.bits {
            2 => TiledFormat::Lut2,
            3 => TiledFormat::Lut3,
            4 => TiledFormat::Lut4,
            b => {
                return Err(LowbitError::UnsupportedBits {
                    format: "weight-only GEMM (LUT)",
                    bits: b,
                    supported: "2, 3, 4",
                });
            }
        };
        let ng = w.granularity.n_groups(w.k);
        let codes = w.unpacked_codes();
        let src = Source {
            n: w.n,
            k: w.k,
            group_len: w.granularity.group_len(w.k),
            code: Box::new(|r, j| codes[r * w.k + j]),
            scale: Box::new(|r, gi| w.scales[r * ng + gi]),
            aux: Box::new(|_, _| 0),
        };
        let mut t = Self::build(format, &src, w.granularity == Granularity::PerChannel)?;
        t.lut = w.lut.clone();
        Ok(t)
    }

    fn build(format: TiledFormat, src: &Source<'_>, per_channel: bool) -> Result<Self> {
        let ts = format.tiles_per_step();
        let kstep = ts * 16;
        let n_pad = src.n.div_ceil(16) * 16;
        let k_pad = src.k.div_ceil(kstep) * kstep;
        let group_len = if per_channel { k_pad } else { src.group_len };
        if !k_pad.is_multiple_of(group_len) || !group_len.is_multiple_of(16) {
            return Err(LowbitError::Unsupported(format!(
                "group length {group_len} with padded K {k_pad} (groups must be whole tiles)"
            )));
        }
        let strips = n_pad / 16;
        let ksteps = k_pad / kstep;
        let groups = k_pad / group_len;
        let code = |r: usize, c: usize| -> u32 { if r < src.n && c < src.k { (src.code)(r, c) as u32 } else { 0 } };
        let mut words = vec![0u32; strips * ksteps * 32 * WORDS_PER_LANE];
        let mut hi_words =
            if format.has_hi() { vec![0u32; strips * ksteps * 32 * HI_WORDS_PER_LANE] } else { Vec::new() };
        for s in 0..strips {
            for ks in 0..ksteps {
                for lane in 0..32 {
                    let (g, t) = (lane / 4, lane % 4);
                    let base = ((s * ksteps + ks) * 32 + lane) * WORDS_PER_LANE;
                    let hbase = ((s * ksteps + ks) * 32 + lane) * HI_WORDS_PER_LANE;
                    for j in 0..ts {
                        let r0 = s * 16 + g;
                        let c0 = (ks * ts + j) * 16 + 2 * t;
                        let a = [
                            code(r0, c0),
                            code(r0, c0 + 1),
                            code(r0 + 8, c0),
                            code(r0 + 8, c0 + 1),
                            code(r0, c0 + 8),
                            code(r0, c0 + 9),
                            code(r0 + 8, c0 + 8),
                            code(r0 + 8, c0 + 9),
                        ];
                        pack_tile(format, j, &a, &mut words[base..base + WORDS_PER_LANE], &mut hi_words, hbase);
                    }
                }
            }
        }
        let mut meta = vec![0u32; strips * groups * 8 * 2];
        for s in 0..strips {
            for gi in 0..groups {
                for g in 0..8 {
                    let (ra, rb) = (s * 16 + g, s * 16 + g + 8);
                    let get = |r: usize| -> (u16, u32) {
                        if r < src.n && gi * group_len < src.k {
                            let gsrc = if per_channel { 0 } else { gi };
                            ((src.scale)(r, gsrc).to_bits(), (src.aux)(r, gsrc) as u32)
                        } else {
                            (0, 0)
                        }
                    };
                    let ((sa, xa), (sb, xb)) = (get(ra), get(rb));
                    let i = ((s * groups + gi) * 8 + g) * 2;
                    meta[i] = sa as u32 | (sb as u32) << 16;
                    meta[i + 1] = xa | xb << 8;
                }
            }
        }
        Ok(Self {
            n: src.n,
            k: src.k,
            n_pad,
            k_pad,
            format,
            group_len,
            words,
            hi_words,
            meta,
            channel_scales: Vec::new(),
            lut: Vec::new(),
            perm: None,
        })
    }

    /// The code of element `(r, c)` (kernel column order: after the act-order permutation) read back from
    /// the tiled streams; the inverse of the packing, used by tests and for debugging layouts.
    pub fn code_at(&self, r: usize, c: usize) -> u8 {
        let ts = self.format.tiles_per_step();
        let (s, rr) = (r / 16, r % 16);
        let (tile, cc) = (c / 16, c % 16);
        let (ks, j) = (tile / ts, tile % ts);
        let ksteps = self.k_pad / (ts * 16);
        // Fragment position: lane (g, t), element index i of a0..a7.
        let (g, hi_row) = (rr % 8, rr >= 8);
        let (t, hi_col, odd) = ((cc % 8) / 2, cc >= 8, cc % 2 == 1);
        let i = (hi_col as usize) * 4 + (hi_row as usize) * 2 + odd as usize;
        let lane = g * 4 + t;
        let base = ((s * ksteps + ks) * 32 + lane) * WORDS_PER_LANE;
        let w = &self.words[base..base + WORDS_PER_LANE];
        let hbase = ((s * ksteps + ks) * 32 + lane) * HI_WORDS_PER_LANE;
        let hi = |bit: usize| -> u32 { (self.hi_words[hbase + bit / 32] >> (bit % 32)) & 1 };
        let r2 = i / 2; // register holding element i
        let code = match self.format {
            TiledFormat::Int4 => {
                const SLOT: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];
                (w[j] >> (4 * SLOT[i])) & 15
            }
            TiledFormat::Lut4 => (w[j] >> (4 * i)) & 15,
            TiledFormat::Mix4 => {
                let (mb, sb) = mix4_pos(i);
                ((w[j] >> mb) & 7) | ((w[j] >> sb) & 1) << 3
            }
            TiledFormat::Mix3 => {
                let word = |x: usize| -> u32 { if x < 4 { w[x] } else { self.hi_words[hbase + x - 4] } };
                let n = MIX3_NIBBLE[i];
                if j < 6 {
                    (word(j) >> (4 * n)) & 7
                } else {
                    (0..3).map(|b| ((word(3 * (j - 6) + b) >> (4 * n + 3)) & 1) << b).sum()
                }
            }
            TiledFormat::Int8 => (w[2 * j + i / 4] >> (8 * (i % 4))) & 255,
            TiledFormat::Int2 | TiledFormat::Int3 => {
                let (p, h) = (j % 2, i % 2);
                let lo = (w[j / 2] >> (2 * (4 * p + r2 + 8 * h))) & 3;
                if self.format == TiledFormat::Int3 {
                    lo | hi(32 * (j / 4) + 16 * h + 4 * (j % 4) + r2) << 2
                } else {
                    lo
                }
            }
            TiledFormat::Lut2 | TiledFormat::Lut3 => {
                let lo = (w[j / 2] >> (16 * (j % 2) + 2 * i)) & 3;
                if self.format == TiledFormat::Lut3 { lo | hi(32 * (j / 4) + 8 * (j % 4) + i) << 2 } else { lo }
            }
        };
        code as u8
    }

    /// Number of groups along the padded K.
    pub fn groups(&self) -> usize {
        self.k_pad / self.group_len
    }

    /// Bytes the kernels read for the weight (codes, high bits, metadata, channel scales, tables).
    pub fn device_bytes(&self) -> usize {
        4 * (self.words.len() + self.hi_words.len() + self.meta.len() + self.channel_scales.len() + self.lut.len())
            + self.perm.as_ref().map_or(0, |p| p.len() * 4)
    }
}

/// [`TiledFormat::Mix4`] bit positions of code `a_i`: (magnitude base, sign bit). Register `r = i / 2` of the
/// decoder takes the pair from one or two shifts of the tile word (`kernels/include/lowbit/wo_decode.cuh`, `Mix4`).
fn mix4_pos(i: usize) -> (usize, usize) {
    const MAG: [usize; 4] = [9, 0, 3, 12];
    const SIGN: [usize; 4] = [15, 6, 7, 8];
    (MAG[i / 2] + 16 * (i % 2), SIGN[i / 2] + 16 * (i % 2))
}

/// [`TiledFormat::Mix3`] nibble of code `a_i` within a tile's selector word: row `g`'s codes `(a0, a1, a4, a5)` in
/// nibbles 0..3 (one PRMT looks them up), row `g + 8`'s `(a2, a3, a6, a7)` in nibbles 4..7.
const MIX3_NIBBLE: [usize; 8] = [0, 1, 4, 5, 2, 3, 6, 7];

/// Writes the eight codes `a` of tile `j` (within the k-step) into a lane's words.
fn pack_tile(format: TiledFormat, j: usize, a: &[u32; 8], words: &mut [u32], hi: &mut [u32], hbase: usize) {
    match format {
        TiledFormat::Int4 => {
            // nibble slots [a0, a2, a4, a6, a1, a3, a5, a7]: slot pairs (s, s+4) decode to registers (a_2s, a_2s+1).
            const SLOT: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7]; // a_i -> slot
            for (i, &c) in a.iter().enumerate() {
                words[j] |= c << (4 * SLOT[i]);
            }
        }
        TiledFormat::Lut4 => {
            for (i, &c) in a.iter().enumerate() {
                words[j] |= c << (4 * i);
            }
        }
        TiledFormat::Mix4 => {
            for (i, &c) in a.iter().enumerate() {
                let (mb, sb) = mix4_pos(i);
                words[j] |= (c & 7) << mb | ((c >> 3) & 1) << sb;
            }
        }
        TiledFormat::Mix3 => {
            let mut put = |x: usize, v: u32| if x < 4 { words[x] |= v } else { hi[hbase + x - 4] |= v };
            for (i, &c) in a.iter().enumerate() {
                let n = MIX3_NIBBLE[i];
                if j < 6 {
                    put(j, (c & 7) << (4 * n));
                } else {
                    for b in 0..3 {
                        put(3 * (j - 6) + b, ((c >> b) & 1) << (4 * n + 3));
                    }
                }
            }
        }
        TiledFormat::Int8 => {
            for (i, &c) in a.iter().enumerate() {
                words[2 * j + i / 4] |= c << (8 * (i % 4));
            }
        }
        TiledFormat::Int2 | TiledFormat::Int3 => {
            let (w, p) = (j / 2, j % 2);
            for r in 0..4 {
                words[w] |= (a[2 * r] & 3) << (2 * (4 * p + r));
                words[w] |= (a[2 * r + 1] & 3) << (2 * (4 * p + r + 8));
            }
            if format == TiledFormat::Int3 {
                let (hw, u) = (j / 4, j % 4);
                for r in 0..4 {
                    hi[hbase + hw] |= ((a[2 * r] >> 2) & 1) << (4 * u + r);
                    hi[hbase + hw] |= ((a[2 * r + 1] >> 2) & 1) << (16 + 4 * u + r);
                }
            }
        }
        TiledFormat::Lut2 | TiledFormat::Lut3 => {
            let (w, p) = (j / 2, j % 2);
            for (i, &c) in a.iter().enumerate() {
                words[w] |= (c & 3) << (16 * p + 2 * i);
            }
            if format == TiledFormat::Lut3 {
                let (hw, u) = (j / 4, j % 4);
                for (i, &c) in a.iter().enumerate() {
                    hi[hbase + hw] |= ((c >> 2) & 1) << (8 * u + i);
                }
            }
        }
    }
}
