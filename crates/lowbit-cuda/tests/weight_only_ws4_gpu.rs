//! ws-W (the weight-only ws kernel with four consumer warpgroups, `kernels/include/lowbit/wo_ws4.cuh`) on the GPU vs
//! the CPU reference (f64 accumulation on the exactly dequantized weight).
//!
//! Its own test binary: `LOWBIT_WO_WS4=1` (read once per process by the launcher) makes a forced
//! `GemmPath::Ws` run ws-W for M <= 64, so the odd shapes below reach it (the automatic plan picks ws-W
//! only for large weights at 17 <= M <= 64, e.g. 11008x4096 at M = 33..64, covered in `weight_only_gpu`'s
//! `gpu_weight_only_ws_real_shapes` at M = 64 and by the automatic runs here). INT4 sym / asym, groups 32 / 64 /
//! 128 / per-channel, act-order, f16 and bf16, M in {1, 3, 17, 29, 33, 64} (odd activation tiles, strips past N
//! of a 256-row tile, K splits from the ws-W plan: 4096x4096 M = 64 runs 8), outputs poisoned (NaN) before each
//! run; identity (X = I gives the dequantized weight bit for bit). Tolerance model as `weight_only_gpu`.
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they print
//! `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::weight_only::{activations, compare, hopper_or_skip, identity_x, int4_cases, run_gemm};
use common::{reference_bits, weights};
use lowbit_core::{Granularity, IntAffineWeight, QuantizedWeight};
use lowbit_cuda::{GemmConfig, GemmPath, OutDtype, WeightOnlyGemm};

/// Turns ws-W on for forced ws plans before the first launch of this process (the launcher reads it once).
fn ws4_on() {
    // SAFETY: set before any thread of this test binary reads the environment through the launcher; the only
    // test of this binary sets the same value.
    unsafe { std::env::set_var("LOWBIT_WO_WS4", "1") };
}

fn cases() -> Vec<(String, QuantizedWeight)> {
    let g = Granularity::Group;
    let all = [(true, g(128)), (false, g(128)), (false, g(64)), (true, g(32)), (false, Granularity::PerChannel)];
    // Odd N (partial 256-row tiles, strips past N); K with odd k-step counts; 4096x4096 (16 tiles: 8 K splits).
    int4_cases(
        &[((37, 384), &all), ((333, 640), &all), ((1000, 2048), &all), ((4096, 4096), &all[..2])],
        51,
        (333, 640, 53, 5),
    )
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws4_odd_shapes_and_identity() {
    ws4_on();
    let Some(dev) = hopper_or_skip("gpu_weight_only_ws4_odd_shapes_and_identity") else { return };
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, w) in cases() {
        let g = WeightOnlyGemm::new(&dev, &w).expect("upload");
        let (_, k) = g.shape();
        let wd = w.dequantize().mapv(f64::from);
        for dtype in [OutDtype::F16, OutDtype::Bf16] {
            for m in [1usize, 3, 17, 29, 33, 64] {
                let (xb, xv) = activations(m, k, dtype, m as u64 * 131 + k as u64);
                let r = xv.dot(&wd.t());
                for path in [Some(GemmPath::Ws), None] {
                    let cfg = GemmConfig { path, ..GemmConfig::default() };
                    let got = run_gemm(&dev, &g, &xb, m, dtype, cfg);
                    if let Err(e) = compare(&format!("{name} m={m} {dtype} {path:?}"), &got, &r, dtype) {
                        failures.push(e);
                    }
                    count += 1;
                }
            }
        }
    }
    // Identity: X = the first M rows of I_K gives the dequantized weight within 1 ulp (ws-W, like ws v1 and wgmma,
    // scales the 16-bit weight before the MMA: one more rounding than the reference's), through the forced ws
    // plan (ws-W at M <= 64). N = 333: partial 256-row tile.
    let (n, k) = (333usize, 256usize);
    let q = IntAffineWeight::quantize(weights(n, k, 4).view(), 4, false, Granularity::Group(64)).unwrap();
    let w = QuantizedWeight::Int(q);
    let g = WeightOnlyGemm::new(&dev, &w).expect("upload");
    for dtype in [OutDtype::F16, OutDtype::Bf16] {
        let want = reference_bits(&w, dtype == OutDtype::Bf16);
        for m in [29usize, 64] {
            let eye = identity_x(m, k, dtype);
            let cfg = GemmConfig { path: Some(GemmPath::Ws), ..GemmConfig::default() };
            let got = run_gemm(&dev, &g, &eye, m, dtype, cfg);
            count += 1;
            let mut bad = 0;
            for r in 0..m {
                for c in 0..n {
                    let (a, b) = (got[r * n + c], want[c * k + r]);
                    if (a as i32 - b as i32).abs() > 1 {
                        if bad == 0 {
                            failures.push(format!(
                                "identity {dtype} m={m}: Y[{r}][{c}] = {a:#06x}, W[{c}][{r}] = {b:#06x}"
                            ));
                        }
                        bad += 1;
                    }
                }
            }
        }
    }
    println!("gpu_weight_only_ws4_odd_shapes_and_identity: {count} GEMMs checked, {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}
