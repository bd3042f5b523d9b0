//! ws-W's stream-K schedule (`kernels/include/lowbit/wo_ws4.cuh` SK, weight-only NOTES.md ws-SK) on the GPU vs the
//! CPU reference (f64 accumulation on the exactly dequantized weight).
//!
//! Its own test binary: `LOWBIT_WO_WS4=1` and `LOWBIT_WO_WS4_SK=1` (read once per process by the launcher) make a
//! forced `GemmPath::Ws` at M <= 64, and every automatic ws-W plan, run the stream-K schedule: each CTA takes an equal
//! run of the tiles' k-steps, tiles cut across CTAs are summed by their owner through the zeroed workspace (flags and
//! f32 slots, left zero). Shapes with many cut tiles: N = 1000 x K = 2048 (4 tiles x 32 k-steps on 128 CTAs: one k-step
//! per CTA, every tile summed from 32 CTAs), 4096x4096 (16 x 64 over 132 CTAs: ~8 per tile), 28672x512 (112 tiles of
//! 8 k-steps: runs of 6-7 k-steps, two or three CTAs per tile, as 28672x8192's runs of 108-109 over 128), odd N
//! (strips past N in the last tile), per-channel scales, act-order (the gather behind the stream-K workspace), f16 and
//! bf16, M in {1, 3, 17, 29, 33, 64}, outputs poisoned (NaN). Every GEMM runs twice on one workspace: both results
//! are checked, stream-K runs must be equal bit for bit (the owner adds the partials in a fixed order), and the
//! workspace must be zero afterwards. Plus the real 28672x8192 shape at M = 33 / 64 (the automatic plan's stream-K case), and a small
//! set for compute-sanitizer.
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they print
//! `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::weight_only::{activations, compare, hopper_or_skip, run_twice, stream_k_cases};
use common::weights;
use lowbit_core::{Granularity, IntAffineWeight, QuantizedWeight};
use lowbit_cuda::{Device, GemmConfig, GemmPath, OutDtype, WeightOnlyGemm};

/// Turns ws-W and its stream-K schedule on before the first launch of this process (the launcher reads both once).
fn sk_on() {
    // SAFETY: set before any thread of this test binary reads the environment through the launcher; every test
    // of this binary sets the same values.
    unsafe {
        std::env::set_var("LOWBIT_WO_WS4", "1");
        std::env::set_var("LOWBIT_WO_WS4_SK", "1");
    }
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
    let mut count = 0;
    for &dtype in dtypes {
        for &m in ms {
            let (xb, xv) = activations(m, k, dtype, m as u64 * 131 + k as u64 + 9);
            let r = xv.dot(&wd.t());
            for &path in paths {
                let cfg = GemmConfig { path, ..GemmConfig::default() };
                let label = format!("{name} m={m} {dtype} {path:?}");
                let (a, b, clean) = run_twice(dev, &g, &xb, m, dtype, cfg);
                if let Err(e) = compare(&label, &a, &r, dtype) {
                    failures.push(e);
                } else if let Err(e) = compare(&format!("{label} (second run)"), &b, &r, dtype) {
                    failures.push(e);
                } else if a != b && (path.is_some() || k * g.shape().0 >= 28672 * 8192) {
                    // Stream-K runs (the forced ws path, and the automatic plan on 28672x8192) sum in a fixed order;
                    // the automatic plan of the small shapes is the mma.sync split-K (f32 atomics: not bit-stable).
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
fn gpu_weight_only_ws4_stream_k() {
    sk_on();
    let Some(dev) = hopper_or_skip("gpu_weight_only_ws4_stream_k") else { return };
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, w) in stream_k_cases() {
        count += check_case(
            &dev,
            &name,
            &w,
            &[1, 3, 17, 29, 33, 64],
            &[OutDtype::F16, OutDtype::Bf16],
            &[Some(GemmPath::Ws), None],
            &mut failures,
        );
    }
    println!("gpu_weight_only_ws4_stream_k: {count} GEMMs checked (each twice), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws4_stream_k_real_shape() {
    sk_on();
    let Some(dev) = hopper_or_skip("gpu_weight_only_ws4_stream_k_real_shape") else { return };
    // The real shape whose single round of 112 tiles stream-K balances (the automatic plan's case).
    let mut failures = Vec::new();
    let q = IntAffineWeight::quantize(weights(28672, 8192, 79).view(), 4, false, Granularity::Group(128)).unwrap();
    let count = check_case(
        &dev,
        "w4-asym-g128 28672x8192",
        &QuantizedWeight::Int(q),
        &[33, 64],
        &[OutDtype::F16, OutDtype::Bf16],
        &[None],
        &mut failures,
    );
    println!("gpu_weight_only_ws4_stream_k_real_shape: {count} GEMMs checked (each twice), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}

/// A small stream-K set for compute-sanitizer (memcheck / racecheck): one k-step per CTA (1000x2048: 32 CTAs per
/// tile) and 28672x512 (two or three CTAs per tile), odd M.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws4_stream_k_small() {
    sk_on();
    let Some(dev) = hopper_or_skip("gpu_weight_only_ws4_stream_k_small") else { return };
    let mut failures = Vec::new();
    let mut count = 0;
    for (n, k) in [(1000usize, 2048usize), (28672, 512)] {
        let q = IntAffineWeight::quantize(weights(n, k, 83).view(), 4, false, Granularity::Group(128)).unwrap();
        count += check_case(
            &dev,
            &format!("w4-asym-g128 {n}x{k}"),
            &QuantizedWeight::Int(q),
            &[33],
            &[OutDtype::F16],
            &[Some(GemmPath::Ws)],
            &mut failures,
        );
    }
    println!("gpu_weight_only_ws4_stream_k_small: {count} GEMMs checked (each twice), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}
