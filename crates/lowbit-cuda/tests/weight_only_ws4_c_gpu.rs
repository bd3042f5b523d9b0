//! ws4-C (ws-W's K splits as thread-block clusters summed over distributed shared memory,
//! `kernels/include/lowbit/wo_ws4.cuh` cluster_finish4 / `kernels/weight_only/ws4_c.cu`, weight-only NOTES.md ws4-C)
//! on the GPU vs the CPU reference (f64 accumulation on the exactly dequantized weight).
//!
//! Its own test binary: `LOWBIT_WO_WS4=1` and `LOWBIT_WO_WS4_C=1` (read once per process by the launcher) make a
//! forced `GemmPath::Ws` at M <= 64 run ws-W, and every ws-W plan that splits K run its splits as clusters (the
//! cheapest cluster size the device holds at once; `LOWBIT_WO_WS4_CS=<n>` in the environment forces another size,
//! e.g. `for cs in 3 4 6 8`). Shapes: N = 1000 x K = 1152 (4 tiles x 18 k-steps: slices of 3 k-steps at 8 CTAs per
//! cluster start mid-group and the last two slices are empty), 333x2048 (one partial 256-row tile, strips past N),
//! 4096x4096 (16 tiles, the real M = 64 case), groups 32 / 64 / 128 / per-channel, sym and asym, act-order (the gather
//! beside a cluster plan), f16 and bf16, M in {1, 17, 33, 47, 64}, outputs poisoned (NaN). Every GEMM runs twice: both
//! results are checked against the reference, the forced ws runs must be equal bit for bit (the slices are added in a
//! fixed order), and their plans must need no zeroed workspace (no f32 partials: the cluster path ran).
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they print
//! `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::weight_only::{activations, compare, hopper_or_skip, int4_cases, run_twice};
use lowbit_core::Granularity;
use lowbit_cuda::{GemmConfig, GemmPath, OutDtype, WeightOnlyGemm};

/// Turns ws-W and ws4-C on before the first launch of this process (the launcher reads both once).
fn ws4_c_on() {
    // SAFETY: set before any thread of this test binary reads the environment through the launcher; the only test
    // of this binary sets the same values.
    unsafe {
        std::env::set_var("LOWBIT_WO_WS4", "1");
        std::env::set_var("LOWBIT_WO_WS4_C", "1");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws4_cluster_split() {
    ws4_c_on();
    let Some(dev) = hopper_or_skip("gpu_weight_only_ws4_cluster_split") else { return };
    let g = Granularity::Group;
    let all = [(true, g(128)), (false, g(128)), (false, g(64)), (true, g(32)), (false, Granularity::PerChannel)];
    let cases = int4_cases(
        &[((1000, 1152), &all), ((333, 2048), &all[..3]), ((4096, 4096), &all[..2])],
        61,
        (1000, 1152, 67, 7),
    );
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, w) in cases {
        let gm = WeightOnlyGemm::new(&dev, &w).expect("upload");
        let (n, k) = gm.shape();
        let wd = w.dequantize().mapv(f64::from);
        for dtype in [OutDtype::F16, OutDtype::Bf16] {
            for m in [1usize, 17, 33, 47, 64] {
                let (xb, xv) = activations(m, k, dtype, m as u64 * 173 + k as u64 + 5);
                let r = xv.dot(&wd.t());
                for path in [Some(GemmPath::Ws), None] {
                    let cfg = GemmConfig { path, ..GemmConfig::default() };
                    let label = format!("{name} m={m} {dtype} {path:?}");
                    let (a, b, clean) = run_twice(&dev, &gm, &xb, m, dtype, cfg);
                    if let Err(e) = compare(&label, &a, &r, dtype) {
                        failures.push(e);
                    } else if let Err(e) = compare(&label, &b, &r, dtype) {
                        failures.push(e);
                    }
                    if path.is_some() {
                        if a != b {
                            failures
                                .push(format!("{label}: the two runs differ (cluster slices sum in a fixed order)"));
                        }
                        // ws-W splits K on these shapes wherever K has >= 16 k-steps; with ws4-C on, no f32 partials.
                        let plan = gm.plan(&dev, m, dtype, cfg).expect("plan");
                        if n <= 1000 && plan.zeroed_bytes != 0 {
                            failures.push(format!(
                                "{label}: plan has {} zeroed bytes (ws4-C not taken)",
                                plan.zeroed_bytes
                            ));
                        }
                    }
                    if !clean {
                        failures.push(format!("{label}: workspace not left zero"));
                    }
                    count += 1;
                }
            }
        }
    }
    println!("gpu_weight_only_ws4_cluster_split: {count} GEMMs checked (each twice), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}
