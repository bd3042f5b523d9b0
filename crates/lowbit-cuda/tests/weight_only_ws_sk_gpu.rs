//! ws-SKv: ws v1's tiles (128 weight rows x 256 activation rows) on ws-W's stream-K schedule
//! (`kernels/include/lowbit/wo_ws4.cuh` NC = 2, BX = 256; weight-only NOTES.md ws-SKv) on the GPU vs the CPU reference
//! (f64 accumulation on the exactly dequantized weight).
//!
//! Its own test binary: `LOWBIT_WO_WS_SK=1` (read once per process by the launcher) makes every ws plan at BX = 256
//! (M > 128), forced `GemmPath::Ws` or automatic, split or not, run the stream-K schedule: each CTA takes an equal run
//! of the tiles' k-steps, tiles cut across CTAs are summed by their owner through the zeroed workspace (flags and f32
//! slots, left zero). Shapes with many cut tiles: N = 1000 x K = 2048 (8 tiles x 32 k-steps at M <= 256: ~2 k-steps
//! per CTA, every tile summed from ~16 CTAs), 4096x4096 (32 x 64 over 132 CTAs: 4-5 per tile), 28672x512 (224 tiles of
//! 8 k-steps: runs of 13-14, two CTAs per tile, as 28672x8192 at M = 256), odd N (strips past N in the last tile),
//! per-channel scales, act-order (the gather behind the workspace), f16 and bf16, M in {129, 200, 256, 333, 512}
//! (333 / 512: two activation tiles, the second partly past M), outputs poisoned (NaN). Every GEMM runs twice on one
//! workspace: both results are checked, the runs must be equal bit for bit (the owner adds the partials in a fixed
//! order), and the workspace must be zero afterwards. bf16 outputs are checked against the weights as the kernels
//! decode them for bf16 (`bf16_decoded`), f16 against the exact ones. Plus the real shape 11008x4096 at M = 256 (86
//! tiles on an H100, runs of ~42 k-steps: up to three CTAs per tile), and a small set for compute-sanitizer.
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they print
//! `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::weight_only::{activations, compare, hopper_or_skip, run_twice, stream_k_cases};
use common::weights;
use half::bf16;
use lowbit_core::{Granularity, IntAffineWeight, QuantizedWeight};
use lowbit_cuda::{Device, GemmConfig, GemmPath, OutDtype, WeightOnlyGemm};
use ndarray::Array2;

/// Turns ws-SKv on for every BX = 256 ws plan before the first launch of this process (the launcher reads it once),
/// unless the environment already sets LOWBIT_WO_WS_SK (`=0`: the same cases on the ws plans without stream-K, for
/// comparison).
fn sk_on() {
    if std::env::var_os("LOWBIT_WO_WS_SK").is_some() {
        return;
    }
    // SAFETY: set before any thread of this test binary reads the environment through the launcher; every test
    // of this binary sets the same value.
    unsafe {
        std::env::set_var("LOWBIT_WO_WS_SK", "1");
    }
}

/// Whether this process runs ws-SKv (the stream-K runs must then be bit-identical run to run).
fn sk_forced() -> bool {
    std::env::var("LOWBIT_WO_WS_SK").map(|v| v != "0").unwrap_or(true)
}

/// The weights as the kernels decode them for bf16 (`lowbit/wo_ws.cuh`: the group scale rounded to bf16, times
/// (q - z), one rounding to bf16). Against the exact weights, the rows of `weights()` with 10x row scales and 8x
/// outliers (|w| up to ~70) move single outputs by up to ~1.0 at K = 512 (28672x512 at M = 129 / 256 / 512, the same
/// elements and bits with ws-SKv and with the ws plans of main: NOTES.md ws-SKv), above the exact-reference
/// tolerance; against these weights only the f32 accumulation and the output rounding remain.
fn bf16_decoded(w: &QuantizedWeight) -> Array2<f64> {
    let QuantizedWeight::Int(q) = w else { panic!("INT4 cases only") };
    let ng = q.n_groups();
    Array2::from_shape_fn((q.n, q.k), |(r, c)| {
        let gi = r * ng + q.group_of(c);
        let s = bf16::from_f32(q.scales[gi].to_f32()).to_f32();
        bf16::from_f32((q.code(r, c) as i32 - q.zeros[gi] as i32) as f32 * s).to_f64()
    })
}

fn check_case(
    dev: &Device,
    name: &str,
    w: &QuantizedWeight,
    ms: &[usize],
    dtypes: &[OutDtype],
    paths: &[Option<GemmPath>],
    failures: &mut Vec<String>,
) -> usize {
    let g = WeightOnlyGemm::new(dev, w).expect("upload");
    let (_, k) = g.shape();
    let wd = w.dequantize().mapv(f64::from);
    let wb = bf16_decoded(w);
    let mut count = 0;
    for &dtype in dtypes {
        for &m in ms {
            let (xb, xv) = activations(m, k, dtype, m as u64 * 131 + k as u64 + 9);
            let r = xv.dot(&if dtype == OutDtype::Bf16 { &wb } else { &wd }.t());
            for &path in paths {
                let cfg = GemmConfig { path, ..GemmConfig::default() };
                let label = format!("{name} m={m} {dtype} {path:?}");
                let (a, b, clean) = run_twice(dev, &g, &xb, m, dtype, cfg);
                if let Err(e) = compare(&label, &a, &r, dtype) {
                    failures.push(e);
                } else if let Err(e) = compare(&format!("{label} (second run)"), &b, &r, dtype) {
                    failures.push(e);
                } else if a != b && sk_forced() && (path.is_some() || m > 128) {
                    // Stream-K runs (every ws plan at M > 128 in this binary) sum in a fixed order.
                    failures.push(format!("{label}: the two runs differ (stream-K sums in a fixed order)"));
                }
                if !clean {
                    failures.push(format!("{label}: workspace not left zero"));
                }
                count += 1;
            }
        }
    }
    count
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws_sk() {
    sk_on();
    let Some(dev) = hopper_or_skip("gpu_weight_only_ws_sk") else { return };
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, w) in stream_k_cases() {
        count += check_case(
            &dev,
            &name,
            &w,
            &[129, 200, 256, 333, 512],
            &[OutDtype::F16, OutDtype::Bf16],
            &[Some(GemmPath::Ws)],
            &mut failures,
        );
    }
    println!("gpu_weight_only_ws_sk: {count} GEMMs checked (each twice), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws_sk_real_shape() {
    sk_on();
    let Some(dev) = hopper_or_skip("gpu_weight_only_ws_sk_real_shape") else { return };
    // A real shape whose single round of 86 tiles (H100) stream-K balances (forced here: the automatic plan keeps ws
    // v1 at M = 256 on 11008x4096, where ws-SKv measured behind).
    let mut failures = Vec::new();
    let q = IntAffineWeight::quantize(weights(11008, 4096, 79).view(), 4, false, Granularity::Group(128)).unwrap();
    let count = check_case(
        &dev,
        "w4-asym-g128 11008x4096",
        &QuantizedWeight::Int(q),
        &[256],
        &[OutDtype::F16, OutDtype::Bf16],
        &[None],
        &mut failures,
    );
    println!("gpu_weight_only_ws_sk_real_shape: {count} GEMMs checked (each twice), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}

/// A small ws-SKv set for compute-sanitizer (memcheck / racecheck): 1000x2048 (~2 k-steps per CTA, ~16 CTAs per
/// tile) and 28672x512 (two CTAs per tile), odd M.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws_sk_small() {
    sk_on();
    let Some(dev) = hopper_or_skip("gpu_weight_only_ws_sk_small") else { return };
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, k) in [(1000usize, 2048usize), (28672, 512)] {
        let q = IntAffineWeight::quantize(weights(n, k, 83).view(), 4, false, Granularity::Group(128)).unwrap();
        count += check_case(
            &dev,
            &format!("w4-asym-g128 {n}x{k}"),
            &QuantizedWeight::Int(q),
            &[201],
            &[OutDtype::F16],
            &[Some(GemmPath::Ws)],
            &mut failures,
        );
    }
    println!("gpu_weight_only_ws_sk_small: {count} GEMMs checked (each twice), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}
