//! Realistic quantized weights for big shapes, quickly.
//!
//! A Llama-2-70B MLP weight has 235 M elements; quantizing and repacking it on the CPU for every
//! scheme would spend the GPU machine's time on host work. What the timing needs is the *bytes* a
//! real weight has (codes and metadata of the right sizes, in the kernel's layout, with realistic
//! code and scale distributions), not 235 M unique values: caches and DRAM work on addresses, not
//! contents. So [`prepare`]:
//!
//! 1. draws a chunk of `chunk_rows` rows (default [`CHUNK_ROWS`]) of random-normal floats
//!    (σ = 0.02, LLM-like; one seeded RNG per row, so the data do not depend on the thread count);
//! 2. quantizes it with `lowbit_core::quantize` (the real quantizer: random codes would not be
//!    realistic for BitMoD's per-group datatype choice or NF4) and repacks it into the kernels' tiled
//!    layout ([`TiledWeight::from_weight`]), both in parallel over blocks of 16-row strips
//!    ([`quantize_rows_parallel`]; every plain format stores rows independently and the tiled layout
//!    is strip-major, so blocks are concatenated exactly: [`concat_rows`], [`concat_tiled`]);
//! 3. tiles the chunk's tiled arrays to all `N` rows ([`tile_tiled`]: row `r` of the result is
//!    row `r mod chunk_rows` of the chunk).
//!
//! The result is byte-for-byte the tiled form of the plain weight whose rows repeat the chunk's
//! ([`tile_rows`]); a test checks exactly that. `chunk_rows = 0` (or `≥ N`) quantizes every row.

use std::thread;

use half::{bf16, f16};
use lowbit_core::repack::TiledWeight;
use lowbit_core::{LowbitError, QuantizedWeight, WeightScheme};
use lowbit_cuda::OutDtype;
use ndarray::{Array2, ArrayView2, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{BenchError, Result};

/// Rows quantized per (shape, scheme) by default; the rest of the rows repeat them.
pub const CHUNK_ROWS: usize = 1024;

/// Standard deviation of the random weights (typical of LLM linear layers).
pub const WEIGHT_STD: f32 = 0.02;

/// Worker threads for host-side preparation: the machine's available parallelism.
pub fn default_threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Splits `0..rows` into at most `parts` ranges whose lengths are multiples of `align` (the last
/// one takes the remainder).
fn blocks(rows: usize, parts: usize, align: usize) -> Vec<(usize, usize)> {
    let per = rows.div_ceil(parts.max(1)).div_ceil(align).max(1) * align;
    (0..rows).step_by(per).map(|s| (s, (s + per).min(rows))).collect()
}

/// Seed of row `r` of a matrix drawn with `seed` (SplitMix64 of both, so rows are independent).
fn row_seed(seed: u64, r: usize) -> u64 {
    let mut z = seed ^ (r as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with N(0, σ²) samples (Box–Muller) from `rng`.
fn fill_normal(rng: &mut StdRng, out: &mut [f32], std: f32) {
    let mut i = 0;
    while i < out.len() {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        out[i] = (r * c) as f32 * std;
        if i + 1 < out.len() {
            out[i + 1] = (r * s) as f32 * std;
        }
        i += 2;
    }
}

/// A `[rows, k]` matrix of N(0, σ²) floats; row `r` depends only on `(seed, r)`.
pub fn random_normal(rows: usize, k: usize, seed: u64, std: f32, threads: usize) -> Array2<f32> {
    let mut w = Array2::<f32>::zeros((rows, k));
    let Some(data) = w.as_slice_mut() else { unreachable!("a fresh Array2 is contiguous") };
    if k == 0 {
        return w;
    }
    let per = rows.div_ceil(threads.max(1)).max(1);
    thread::scope(|s| {
        for (bi, block) in data.chunks_mut(per * k).enumerate() {
            s.spawn(move || {
                for (j, row) in block.chunks_mut(k).enumerate() {
                    let mut rng = StdRng::seed_from_u64(row_seed(seed, bi * per + j));
                    fill_normal(&mut rng, row, std);
                }
            });
        }
    });
    w
}

/// Random activations: `rows × k` 16-bit patterns of `dtype` uniform in ±1 (row `r` depends only
/// on `(seed, r)`).
pub fn random_activations(rows: usize, k: usize, dtype: OutDtype, seed: u64, threads: usize) -> Vec<u16> {
    let mut out = vec![0u16; rows * k];
    if k == 0 {
        return out;
    }
    let per = rows.div_ceil(threads.max(1)).max(1);
    thread::scope(|s| {
        for (bi, block) in out.chunks_mut(per * k).enumerate() {
            s.spawn(move || {
                for (j, row) in block.chunks_mut(k).enumerate() {
                    let mut rng = StdRng::seed_from_u64(row_seed(seed ^ 0xA5A5, bi * per + j));
                    for v in row {
                        *v = to_bits(rng.random_range(-1.0f32..1.0), dtype);
                    }
                }
            });
        }
    });
    out
}

/// The 16-bit pattern of `v` rounded (RNE) to `dtype`.
pub fn to_bits(v: f32, dtype: OutDtype) -> u16 {
    match dtype {
        OutDtype::F16 => f16::from_f32(v).to_bits(),
        OutDtype::Bf16 => bf16::from_f32(v).to_bits(),
    }
}

/// The value of a 16-bit pattern of `dtype`.
pub fn from_bits(b: u16, dtype: OutDtype) -> f64 {
    match dtype {
        OutDtype::F16 => f16::from_bits(b).to_f64(),
        OutDtype::Bf16 => bf16::from_bits(b).to_f64(),
    }
}

/// `w` rounded to `dtype`, as row-major 16-bit patterns.
pub fn float_bits(w: ArrayView2<f32>, dtype: OutDtype) -> Vec<u16> {
    w.iter().map(|&v| to_bits(v, dtype)).collect()
}

/// `v` (`rows` equal rows) repeated row-wise to `n` rows.
fn tile_vec<T: Copy>(v: &[T], rows: usize, n: usize) -> Vec<T> {
    if rows == 0 || v.is_empty() {
        return Vec::new();
    }
    let per = v.len() / rows;
    let mut out = Vec::with_capacity(per * n);
    while out.len() + v.len() <= per * n {
        out.extend_from_slice(v);
    }
    let rest = per * n - out.len();
    out.extend_from_slice(&v[..rest]);
    out
}

fn mismatch(what: &str) -> BenchError {
    BenchError::Core(LowbitError::Unsupported(format!("cannot stitch weights: {what} differ between parts")))
}

/// Stacks weights of equal format, K and shared fields (tables, act-order) along N.
pub fn concat_rows(parts: &[QuantizedWeight]) -> Result<QuantizedWeight> {
    let first = parts.first().ok_or_else(|| BenchError::invalid("concat_rows of no parts"))?;
    if parts.len() == 1 {
        return Ok(first.clone());
    }
    let out = match first {
        QuantizedWeight::Int(a) => {
            let mut w = a.clone();
            for p in &parts[1..] {
                let QuantizedWeight::Int(b) = p else { return Err(mismatch("formats")) };
                if (b.k, b.bits, b.symmetric, b.granularity) != (a.k, a.bits, a.symmetric, a.granularity)
                    || b.g_idx != a.g_idx
                {
                    return Err(mismatch("INT parameters"));
                }
                w.n += b.n;
                w.codes.extend_from_slice(&b.codes);
                w.scales.extend_from_slice(&b.scales);
                w.zeros.extend_from_slice(&b.zeros);
            }
            QuantizedWeight::Int(w)
        }
        QuantizedWeight::Mixed(a) => {
            let mut w = a.clone();
            for p in &parts[1..] {
                let QuantizedWeight::Mixed(b) = p else { return Err(mismatch("formats")) };
                if (b.k, b.bits, b.group) != (a.k, a.bits, a.group) {
                    return Err(mismatch("BitMoD parameters"));
                }
                w.n += b.n;
                w.codes.extend_from_slice(&b.codes);
                w.group_scales.extend_from_slice(&b.group_scales);
                w.selectors.extend_from_slice(&b.selectors);
                w.channel_scales.extend_from_slice(&b.channel_scales);
            }
            QuantizedWeight::Mixed(w)
        }
        QuantizedWeight::Lut(a) => {
            let mut w = a.clone();
            for p in &parts[1..] {
                let QuantizedWeight::Lut(b) = p else { return Err(mismatch("formats")) };
                if (b.k, b.bits, b.granularity) != (a.k, a.bits, a.granularity) || b.lut != a.lut {
                    return Err(mismatch("table parameters"));
                }
                w.n += b.n;
                w.codes.extend_from_slice(&b.codes);
                w.scales.extend_from_slice(&b.scales);
            }
            QuantizedWeight::Lut(w)
        }
        QuantizedWeight::Bipolar(_) => {
            return Err(BenchError::Core(LowbitError::Unsupported(
                "bipolar-INT weights are not weight-only GEMM weights".into(),
            )));
        }
    };
    out.validate()?;
    Ok(out)
}

/// The weight whose row `r` is row `r mod N_q` of `q`, for `n` rows.
pub fn tile_rows(q: &QuantizedWeight, n: usize) -> Result<QuantizedWeight> {
    let out = match q {
        QuantizedWeight::Int(a) => {
            let mut w = a.clone();
            w.codes = tile_vec(&a.codes, a.n, n);
            w.scales = tile_vec(&a.scales, a.n, n);
            w.zeros = tile_vec(&a.zeros, a.n, n);
            w.n = n;
            QuantizedWeight::Int(w)
        }
        QuantizedWeight::Mixed(a) => {
            let mut w = a.clone();
            w.codes = tile_vec(&a.codes, a.n, n);
            w.group_scales = tile_vec(&a.group_scales, a.n, n);
            w.selectors = tile_vec(&a.selectors, a.n, n);
            w.channel_scales = tile_vec(&a.channel_scales, a.n, n);
            w.n = n;
            QuantizedWeight::Mixed(w)
        }
        QuantizedWeight::Lut(a) => {
            let mut w = a.clone();
            w.codes = tile_vec(&a.codes, a.n, n);
            w.scales = tile_vec(&a.scales, a.n, n);
            w.n = n;
            QuantizedWeight::Lut(w)
        }
        QuantizedWeight::Bipolar(_) => {
            return Err(BenchError::Core(LowbitError::Unsupported("bipolar-INT weights are not tiled".into())));
        }
    };
    out.validate()?;
    Ok(out)
}

/// `storage_bytes()` of [`tile_rows`]`(q, n)` without building it: per-row bytes scale with the
/// rows, tables and act-order indices are shared.
pub fn storage_bytes_for_rows(q: &QuantizedWeight, n: usize) -> usize {
    let (rows, _) = q.shape();
    let shared = match q {
        QuantizedWeight::Int(w) => w.g_idx.as_ref().map_or(0, |g| g.len() * 4),
        QuantizedWeight::Lut(w) => w.lut.len() * 4,
        QuantizedWeight::Mixed(_) | QuantizedWeight::Bipolar(_) => 0,
    };
    if rows == 0 {
        return shared;
    }
    shared + (q.storage_bytes() - shared) / rows * n
}

fn check_same_tiling(a: &TiledWeight, b: &TiledWeight) -> Result<()> {
    if (a.k, a.k_pad, a.format, a.group_len) != (b.k, b.k_pad, b.format, b.group_len)
        || a.lut != b.lut
        || a.perm != b.perm
        || a.channel_scales.is_empty() != b.channel_scales.is_empty()
        || a.hi_words.is_empty() != b.hi_words.is_empty()
    {
        return Err(mismatch("tiled layouts"));
    }
    Ok(())
}

/// Stacks tiled weights along N. Every part but the last must have `n` a multiple of 16 (no
/// padding rows inside the result).
pub fn concat_tiled(parts: &[TiledWeight]) -> Result<TiledWeight> {
    let first = parts.first().ok_or_else(|| BenchError::invalid("concat_tiled of no parts"))?;
    let mut out = first.clone();
    for (i, p) in parts.iter().enumerate().skip(1) {
        check_same_tiling(first, p)?;
        if parts[i - 1].n != parts[i - 1].n_pad {
            return Err(BenchError::invalid("concat_tiled: only the last part may have padded rows"));
        }
        out.n += p.n;
        out.n_pad += p.n_pad;
        out.words.extend_from_slice(&p.words);
        out.hi_words.extend_from_slice(&p.hi_words);
        out.meta.extend_from_slice(&p.meta);
        out.channel_scales.extend_from_slice(&p.channel_scales);
    }
    Ok(out)
}

/// The tiled weight whose row `r` is row `r mod t.n` of `t`, for `n` rows. `t.n` and `n` must be
/// multiples of 16 (the layout is strip-major: whole 16-row strips are repeated).
pub fn tile_tiled(t: &TiledWeight, n: usize) -> Result<TiledWeight> {
    if t.n != t.n_pad || !n.is_multiple_of(16) || t.n == 0 {
        return Err(BenchError::invalid(format!(
            "tile_tiled needs row counts that are multiples of 16 (chunk {}, target {n})",
            t.n
        )));
    }
    let (strips, target) = (t.n / 16, n / 16);
    let mut out = t.clone();
    out.words = tile_vec(&t.words, strips, target);
    out.hi_words = tile_vec(&t.hi_words, strips, target);
    out.meta = tile_vec(&t.meta, strips, target);
    out.channel_scales = tile_vec(&t.channel_scales, t.n, n);
    out.n = n;
    out.n_pad = n;
    Ok(out)
}

/// Quantizes `w` with `scheme` and repacks it, in parallel over blocks of 16-row strips.
pub fn quantize_rows_parallel(
    w: ArrayView2<f32>,
    scheme: &WeightScheme,
    threads: usize,
) -> Result<(QuantizedWeight, TiledWeight)> {
    let ranges = blocks(w.nrows(), threads, 16);
    let results: Vec<Result<(QuantizedWeight, TiledWeight)>> = thread::scope(|s| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(a, b)| {
                let block = w.slice_axis(Axis(0), (a..b).into());
                s.spawn(move || -> Result<(QuantizedWeight, TiledWeight)> {
                    let q = lowbit_core::quantize(block, scheme)?;
                    let t = TiledWeight::from_weight(&q)?;
                    Ok((q, t))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let (qs, ts): (Vec<_>, Vec<_>) = results.into_iter().collect::<Result<Vec<_>>>()?.into_iter().unzip();
    Ok((concat_rows(&qs)?, concat_tiled(&ts)?))
}

/// One scheme's weight for an `N × K` shape, ready to upload.
#[derive(Debug, Clone)]
pub struct PreparedWeight {
    /// The scheme.
    pub scheme: WeightScheme,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// The quantized chunk (its rows repeat through all N rows).
    pub chunk: QuantizedWeight,
    /// The full `N`-row weight in the kernels' tiled layout.
    pub tiled: TiledWeight,
    /// `storage_bytes()` of the full plain weight (codes and metadata as a user stores them).
    pub storage_bytes: usize,
    /// Host seconds spent quantizing, repacking and tiling.
    pub seconds: f64,
}

/// Quantizes `chunk` (the first rows of the weight) with `scheme` and tiles it to `n` rows (see the
/// module documentation). Needs `chunk.nrows() == n`, or both a multiple of 16.
pub fn prepare(chunk: ArrayView2<f32>, n: usize, scheme: &WeightScheme, threads: usize) -> Result<PreparedWeight> {
    let t0 = std::time::Instant::now();
    let (q, t) = quantize_rows_parallel(chunk, scheme, threads)?;
    let tiled = if chunk.nrows() == n { t } else { tile_tiled(&t, n)? };
    Ok(PreparedWeight {
        scheme: *scheme,
        n,
        k: chunk.ncols(),
        storage_bytes: storage_bytes_for_rows(&q, n),
        chunk: q,
        tiled,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Rows to quantize for an `n`-row weight: `chunk_rows` when it is a positive multiple of 16
/// below `n` and `n` is a multiple of 16, else all `n`.
pub fn chunk_rows_for(n: usize, chunk_rows: usize) -> usize {
    if chunk_rows == 0 || chunk_rows >= n || !chunk_rows.is_multiple_of(16) || !n.is_multiple_of(16) {
        n
    } else {
        chunk_rows
    }
}

/// The chunk dequantized exactly and rounded to `dtype` (row-major 16-bit patterns).
pub fn dequantized_bits(q: &QuantizedWeight, dtype: OutDtype) -> Vec<u16> {
    float_bits(q.dequantize().view(), dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lowbit_core::Granularity;

    const SCHEMES: [&str; 9] = [
        "w4-int-g128",
        "w4-int-asym-g128",
        "w3-int-g128",
        "w2-int-g128",
        "w8-int-pc",
        "w3-mixed-g128",
        "w4-mixed-g64",
        "w4-nf4-g128",
        "w4-int-g32",
    ];

    #[test]
    fn tile_vec_repeats_rows() {
        assert_eq!(tile_vec(&[1, 2, 3, 4], 2, 5), vec![1, 2, 3, 4, 1, 2, 3, 4, 1, 2]);
        assert_eq!(tile_vec(&[1, 2, 3, 4], 2, 1), vec![1, 2]);
        assert_eq!(tile_vec::<u8>(&[], 2, 5), Vec::<u8>::new());
        assert_eq!(tile_vec(&[7], 1, 0), Vec::<i32>::new());
    }

    #[test]
    fn blocks_cover_rows_in_aligned_pieces() {
        assert_eq!(blocks(100, 3, 16), vec![(0, 48), (48, 96), (96, 100)]);
        assert_eq!(blocks(16, 8, 16), vec![(0, 16)]);
        assert_eq!(blocks(0, 4, 16), vec![]);
        for (rows, parts) in [(1024, 16), (1000, 7), (5, 2)] {
            let b = blocks(rows, parts, 16);
            assert!(b.len() <= parts.max(1));
            assert_eq!(b.first().unwrap().0, 0);
            assert_eq!(b.last().unwrap().1, rows);
            assert!(b.windows(2).all(|w| w[0].1 == w[1].0 && (w[0].1 - w[0].0) % 16 == 0));
        }
    }

    #[test]
    fn random_data_is_deterministic_and_normal_like() {
        let a = random_normal(37, 128, 5, 1.0, 1);
        let b = random_normal(37, 128, 5, 1.0, 4);
        assert_eq!(a, b, "rows must not depend on the thread count");
        assert_ne!(a, random_normal(37, 128, 6, 1.0, 1));
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.08, "mean {mean} var {var}");
        let x = random_activations(9, 64, OutDtype::Bf16, 3, 3);
        assert_eq!(x, random_activations(9, 64, OutDtype::Bf16, 3, 1));
        assert!(x.iter().all(|&b| from_bits(b, OutDtype::Bf16).abs() <= 1.0));
    }

    #[test]
    fn parallel_quantization_equals_the_serial_one() {
        let w = random_normal(80, 256, 1, WEIGHT_STD, 2);
        for s in SCHEMES {
            let scheme: WeightScheme = s.parse().unwrap();
            let serial = lowbit_core::quantize(w.view(), &scheme).unwrap();
            let (q, t) = quantize_rows_parallel(w.view(), &scheme, 3).unwrap();
            assert_eq!(q, serial, "{s}: plain weight");
            assert_eq!(t, TiledWeight::from_weight(&serial).unwrap(), "{s}: tiled weight");
        }
    }

    #[test]
    fn tiling_the_chunk_equals_repacking_the_tiled_rows() {
        let w = random_normal(48, 256, 2, WEIGHT_STD, 2);
        for s in SCHEMES {
            let scheme: WeightScheme = s.parse().unwrap();
            for n in [48usize, 96, 112, 160] {
                let p = prepare(w.view(), n, &scheme, 2).unwrap();
                let full = tile_rows(&p.chunk, n).unwrap();
                assert_eq!(full.shape(), (n, 256));
                assert_eq!(p.tiled, TiledWeight::from_weight(&full).unwrap(), "{s} n={n}");
                assert_eq!(p.storage_bytes, full.storage_bytes(), "{s} n={n}");
                // Row r of the full weight is row r mod 48 of the chunk.
                let (dc, df) = (p.chunk.dequantize(), full.dequantize());
                for r in [0, 47, n - 1] {
                    assert_eq!(df.row(r), dc.row(r % 48), "{s} n={n} row {r}");
                }
            }
        }
    }

    #[test]
    fn tiling_preconditions_and_odd_shapes() {
        let w = random_normal(40, 128, 3, WEIGHT_STD, 1);
        let scheme: WeightScheme = "w4-int-g128".parse().unwrap();
        // 40 rows: not a multiple of 16, so every row is quantized.
        assert_eq!(chunk_rows_for(40, 16), 40);
        assert_eq!(chunk_rows_for(4096, 1024), 1024);
        assert_eq!(chunk_rows_for(4096, 0), 4096);
        assert_eq!(chunk_rows_for(1000, 1024), 1000);
        let p = prepare(w.view(), 40, &scheme, 2).unwrap();
        assert_eq!((p.tiled.n, p.tiled.n_pad), (40, 48));
        assert!(tile_tiled(&p.tiled, 96).is_err());
        assert!(prepare(w.view(), 80, &scheme, 2).is_err());
        // Act-order and bipolar weights.
        let q = QuantizedWeight::Int(
            lowbit_core::IntAffineWeight::quantize(w.view(), 4, true, Granularity::Group(32)).unwrap(),
        );
        assert_eq!(storage_bytes_for_rows(&q, 80), tile_rows(&q, 80).unwrap().storage_bytes());
        let b = lowbit_core::BipolarMatrix::quantize(w.view(), 2, Granularity::Group(32)).unwrap();
        assert!(concat_rows(&[QuantizedWeight::Bipolar(b.clone()), QuantizedWeight::Bipolar(b)]).is_err());
    }

    #[test]
    fn bit_conversions() {
        assert_eq!(to_bits(1.0, OutDtype::F16), 0x3C00);
        assert_eq!(to_bits(1.0, OutDtype::Bf16), 0x3F80);
        assert_eq!(from_bits(0xC000, OutDtype::F16), -2.0);
        assert_eq!(from_bits(0xC000, OutDtype::Bf16), -2.0);
        let w = Array2::from_shape_vec((1, 2), vec![0.5f32, -0.25]).unwrap();
        assert_eq!(float_bits(w.view(), OutDtype::F16), vec![0x3800, 0xB400]);
    }
}
