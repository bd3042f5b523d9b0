//! Shared test data for the dequantization tests: seeded random weights and the sweep of
//! quantized weights (every format, bit width, granularity and awkward shape).
#![allow(dead_code)] // each test binary uses a different subset

pub mod weight_only;

use lowbit_core::bipolar::BipolarMatrix;
use lowbit_core::lut::NF4;
use lowbit_core::{Granularity, IntAffineWeight, LutWeight, MixedWeight, QuantizedWeight};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Poison written into outputs before a kernel runs: NaN in both f16 and bf16, never produced by
/// dequantizing a valid weight, so an element the kernel skipped cannot match the reference.
pub const POISON: u16 = 0x7FFF;

/// One quantized weight and a name that identifies it in failure messages.
pub struct Case {
    pub name: String,
    pub weight: QuantizedWeight,
}

/// How many shapes and seeds to cover.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sweep {
    /// Every N in {1, 3, 37, 129} × every K of the granularity, three seeds on small shapes.
    Full,
    /// A few shapes per combination (still every format × bits × granularity): for CPU CI.
    Quick,
}

/// Random non-zero f32 weights `[n, k]`: uniform in ±1 (never within 1e-4 of zero), each row
/// scaled by 10^U(-3, 1) so f16 scales span normal and subnormal values, and ~1% outliers ×8.
pub fn weights(n: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let row_scale: Vec<f32> = (0..n).map(|_| 10f32.powf(rng.random_range(-3.0f32..1.0))).collect();
    Array2::from_shape_fn((n, k), |(r, _)| {
        loop {
            let x: f32 = rng.random_range(-1.0f32..1.0);
            if x.abs() > 1e-4 {
                let x = if rng.random_bool(0.01) { x * 8.0 } else { x };
                break x * row_scale[r];
            }
        }
    })
}

/// Column counts exercised for a granularity: one group, three groups, a large K that is not a
/// power of two (4096 + G), and Llama's MLP width 11008 (= 86 × 128). Per-channel uses K values
/// that are not multiples of 8 (scalar-store path) as well as 200 and 11008.
pub fn ks(granularity: Granularity) -> Vec<usize> {
    match granularity {
        Granularity::Group(g) => vec![g, 3 * g, 4096 + g, 11008],
        Granularity::PerChannel => vec![37, 200, 4100, 11008],
    }
}

/// Row counts: single row (decode GEMV-like), tiny, odd prime, and one past a power of two.
pub const NS: [usize; 4] = [1, 3, 37, 129];

/// The (N, K, seed) triples of a sweep for one granularity. `salt` varies the seeds between
/// formats and bit widths so no two combinations see the same data.
pub fn shapes(granularity: Granularity, sweep: Sweep, salt: u64) -> Vec<(usize, usize, u64)> {
    let ks = ks(granularity);
    let mut out = Vec::new();
    match sweep {
        Sweep::Full => {
            for &n in &NS {
                for &k in &ks {
                    let seeds: &[u64] = if n * k <= 16 * 1024 { &[1, 2, 3] } else { &[1] };
                    for &s in seeds {
                        out.push((n, k, salt * 1000 + s));
                    }
                }
            }
        }
        Sweep::Quick => {
            // Every K once, and every N once: (37, G), (129, 3G), (3, 4096 + G), (1, 11008).
            for (i, &k) in ks.iter().enumerate() {
                let n = [37, 129, 3, 1][i % 4];
                out.push((n, k, salt * 1000 + i as u64));
            }
        }
    }
    out
}

pub const GRANULARITIES: [Granularity; 4] =
    [Granularity::Group(32), Granularity::Group(64), Granularity::Group(128), Granularity::PerChannel];

fn gname(g: Granularity) -> String {
    match g {
        Granularity::Group(g) => format!("g{g}"),
        Granularity::PerChannel => "pc".into(),
    }
}

/// INT affine, bits 2..=8, symmetric and asymmetric, every granularity.
pub fn int_cases(sweep: Sweep, sink: &mut dyn FnMut(Case)) {
    for bits in 2..=8u32 {
        for symmetric in [true, false] {
            for g in GRANULARITIES {
                for (n, k, seed) in shapes(g, sweep, 10 + bits as u64 * 2 + symmetric as u64) {
                    let w = weights(n, k, seed);
                    let q = IntAffineWeight::quantize(w.view(), bits, symmetric, g).expect("quantize INT");
                    let sym = if symmetric { "sym" } else { "asym" };
                    sink(Case {
                        name: format!("w{bits}-int-{sym}-{} n={n} k={k} seed={seed}", gname(g)),
                        weight: QuantizedWeight::Int(q),
                    });
                }
            }
        }
    }
}

/// INT affine with act-order `g_idx` (a random column permutation), bits 2..=8, groups 32/64/128.
pub fn int_act_order_cases(sweep: Sweep, sink: &mut dyn FnMut(Case)) {
    for bits in 2..=8u32 {
        for symmetric in [true, false] {
            for g in [32usize, 64, 128] {
                let shapes: Vec<(usize, usize)> = match sweep {
                    Sweep::Full => vec![(1, g), (3, 3 * g), (37, 4096 + g), (129, 11008)],
                    Sweep::Quick => vec![(3, 3 * g), (1, 4096 + g)],
                };
                for (n, k) in shapes {
                    let seed = 500 + bits as u64 * 7 + g as u64 + symmetric as u64;
                    let w = weights(n, k, seed);
                    let mut perm: Vec<usize> = (0..k).collect();
                    perm.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xA5));
                    let q =
                        IntAffineWeight::quantize_act_order(w.view(), bits, symmetric, Granularity::Group(g), &perm)
                            .expect("quantize act-order");
                    assert!(q.g_idx.is_some());
                    let sym = if symmetric { "sym" } else { "asym" };
                    sink(Case {
                        name: format!("w{bits}-int-{sym}-g{g}-actorder n={n} k={k} seed={seed}"),
                        weight: QuantizedWeight::Int(q),
                    });
                }
            }
        }
    }
}

/// bipolar-INT without offsets (the native symmetric quantizer), bits 1..=8, every granularity.
pub fn bipolar_cases(sweep: Sweep, sink: &mut dyn FnMut(Case)) {
    for bits in 1..=8u32 {
        for g in GRANULARITIES {
            for (n, k, seed) in shapes(g, sweep, 40 + bits as u64) {
                let w = weights(n, k, seed);
                let q = BipolarMatrix::quantize(w.view(), bits, g).expect("quantize bipolar");
                sink(Case {
                    name: format!("w{bits}-bipolar-{} n={n} k={k} seed={seed}", gname(g)),
                    weight: QuantizedWeight::Bipolar(q),
                });
            }
        }
    }
}

/// bipolar-INT with offsets: converted from asymmetric INT affine (bits 2..=8, offsets
/// `s·((2^b−1)/2 − z)`), and random codes with random scales and offsets (bits 1..=8), so the
/// fused multiply-add sees non-trivial addends of both signs.
pub fn bipolar_offset_cases(sweep: Sweep, sink: &mut dyn FnMut(Case)) {
    for bits in 1..=8u32 {
        for g in GRANULARITIES {
            let shapes = shapes(g, sweep, 60 + bits as u64);
            for &(n, k, seed) in &shapes {
                if bits >= 2 {
                    let w = weights(n, k, seed);
                    let q = IntAffineWeight::quantize(w.view(), bits, false, g).expect("quantize INT");
                    let b = BipolarMatrix::from_int_affine(&q).expect("bipolar from INT");
                    assert!(b.offsets.is_some());
                    sink(Case {
                        name: format!("w{bits}-bipolar-{}-from-int-asym n={n} k={k} seed={seed}", gname(g)),
                        weight: QuantizedWeight::Bipolar(b),
                    });
                }
                let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
                let ng = g.n_groups(k);
                let codes: Vec<u8> = (0..n * k).map(|_| rng.random_range(0..(1u32 << bits)) as u8).collect();
                let scales: Vec<f32> = (0..n * ng).map(|_| rng.random_range(1e-4f32..0.1)).collect();
                let offsets: Vec<f32> = (0..n * ng).map(|_| rng.random_range(-0.05f32..0.05)).collect();
                let b = BipolarMatrix::from_codes(n, k, bits, g, &codes, scales, Some(offsets)).expect("from_codes");
                sink(Case {
                    name: format!("w{bits}-bipolar-{}-random-offsets n={n} k={k} seed={seed}", gname(g)),
                    weight: QuantizedWeight::Bipolar(b),
                });
            }
        }
    }
}

/// BitMoD mixed FP3/FP4, groups 32/64/128 (the format has no per-channel variant).
pub fn mixed_cases(sweep: Sweep, sink: &mut dyn FnMut(Case)) {
    for bits in [3u32, 4] {
        for g in [32usize, 64, 128] {
            for (n, k, seed) in shapes(Granularity::Group(g), sweep, 80 + bits as u64) {
                let w = weights(n, k, seed);
                let q = MixedWeight::quantize(w.view(), bits, g).expect("quantize mixed");
                sink(Case {
                    name: format!("w{bits}-mixed-g{g} n={n} k={k} seed={seed}"),
                    weight: QuantizedWeight::Mixed(q),
                });
            }
        }
    }
}

/// A strictly ascending random table of `2^bits` entries spanning [-1, 1].
pub fn random_lut(bits: u32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = 1usize << bits;
    let steps: Vec<f32> = (0..len).map(|_| rng.random_range(0.2f32..1.0)).collect();
    let mut acc = Vec::with_capacity(len);
    let mut s = 0f32;
    for st in &steps {
        acc.push(s);
        s += st;
    }
    let total = acc[len - 1];
    acc.iter().map(|&a| 2.0 * a / total - 1.0).collect()
}

/// LUT formats: NF4, and random `2^b`-entry tables for bits 1..=8, every granularity.
pub fn lut_cases(sweep: Sweep, sink: &mut dyn FnMut(Case)) {
    for g in GRANULARITIES {
        for (n, k, seed) in shapes(g, sweep, 100) {
            let w = weights(n, k, seed);
            let q = LutWeight::quantize(w.view(), &NF4, g).expect("quantize NF4");
            sink(Case {
                name: format!("w4-nf4-{} n={n} k={k} seed={seed}", gname(g)),
                weight: QuantizedWeight::Lut(q),
            });
        }
    }
    for bits in 1..=8u32 {
        for g in GRANULARITIES {
            for (n, k, seed) in shapes(g, sweep, 110 + bits as u64) {
                let w = weights(n, k, seed);
                let table = random_lut(bits, seed ^ 0x7AB1E);
                let q = LutWeight::quantize(w.view(), &table, g).expect("quantize LUT");
                sink(Case {
                    name: format!("w{bits}-lut-{} n={n} k={k} seed={seed}", gname(g)),
                    weight: QuantizedWeight::Lut(q),
                });
            }
        }
    }
}

/// Index, row and column of the first differing element, with both bit patterns, or `None`.
pub fn first_mismatch(got: &[u16], want: &[u16], k: usize) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("length {} != {}", got.len(), want.len()));
    }
    let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
    let &i = bad.first()?;
    Some(format!(
        "{} of {} elements differ; first at [{}, {}]: got {:#06x}, want {:#06x}",
        bad.len(),
        got.len(),
        i / k,
        i % k,
        got[i],
        want[i]
    ))
}

/// The CPU reference as 16-bit patterns.
pub fn reference_bits(w: &QuantizedWeight, bf16: bool) -> Vec<u16> {
    if bf16 {
        w.dequantize_bf16().into_iter().map(|v| v.to_bits()).collect()
    } else {
        w.dequantize_f16().into_iter().map(|v| v.to_bits()).collect()
    }
}

/// `LOWBIT_REQUIRE_GPU=1`: a missing GPU (or cuBLAS) fails the test instead of skipping it.
pub fn require_gpu() -> bool {
    std::env::var("LOWBIT_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// Device 0, or `None` after printing a skip line (a failure under `LOWBIT_REQUIRE_GPU=1`).
pub fn device_or_skip(test: &str) -> Option<lowbit_cuda::Device> {
    match lowbit_cuda::Device::open(0) {
        Ok(dev) => Some(dev),
        Err(e) if require_gpu() => panic!("{test}: LOWBIT_REQUIRE_GPU=1 but {e}"),
        Err(e) => {
            println!("SKIP {test}: {e}");
            None
        }
    }
}
