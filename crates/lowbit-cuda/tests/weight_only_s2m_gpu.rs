//! S2M (the weight-only small-M kernel with two 16-row strips per warp at M = 9..16, `kernels/include/lowbit/wo_s2m.cuh`,
//! weight-only NOTES.md v20) on the GPU vs the CPU reference (f64 accumulation on the exactly dequantized weight).
//!
//! Its own test binary: `LOWBIT_WO_S2M` (read once per process by the launcher) selects S2M in the automatic plan at
//! M = 9..16 for INT4 with groups of whole k-steps; this test sets it to `1` (256-row blocks, 2 per SM) unless the
//! environment already sets it (`LOWBIT_WO_S2M=2`: 512-row blocks, 1 per SM). INT4 sym / asym, groups 64 / 128 /
//! per-channel (S2M) and 32 (not whole k-steps: the v14 kernel runs), act-order (gathered X), odd N (half strip pairs,
//! partly filled blocks) and K, real shapes with K splits (f32 partials in the zeroed workspace, converted after) and
//! without; f16 and bf16, M in {9, 13, 16}; every GEMM twice on one workspace (Y poisoned before each run): both
//! outputs against the reference, the workspace's zeroed part zero afterwards. Tolerance model as `weight_only_gpu`.
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they print
//! `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::device_or_skip;
use common::weight_only::{activations, compare, int4_cases, run_twice};
use lowbit_core::Granularity;
use lowbit_cuda::{GemmConfig, OutDtype, WeightOnlyGemm};

/// Turns S2M on before the first launch of this process (the launcher reads it once), unless the environment chose.
fn s2m_on() {
    if std::env::var_os("LOWBIT_WO_S2M").is_none() {
        // SAFETY: set before any thread of this test binary reads the environment through the launcher; the only
        // test of this binary sets the same value.
        unsafe { std::env::set_var("LOWBIT_WO_S2M", "1") };
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_s2m_shapes() {
    s2m_on();
    let Some(dev) = device_or_skip("gpu_weight_only_s2m_shapes") else { return };
    let g = Granularity::Group;
    let odd = [(false, g(64)), (true, g(128)), (false, Granularity::PerChannel), (true, g(32))];
    let real = [(true, g(128)), (false, g(128))];
    let cases = int4_cases(
        &[
            ((37, 384), &odd),
            ((1037, 2112), &odd),
            ((333, 1003), &odd[..2]),
            ((4096, 4096), &real),
            ((11008, 4096), &real[..1]),
        ],
        61,
        (1037, 2112, 63, 7),
    );
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, w) in cases {
        let gemm = WeightOnlyGemm::new(&dev, &w).expect("upload");
        let (_, k) = gemm.shape();
        let wd = w.dequantize().mapv(f64::from);
        for dtype in [OutDtype::F16, OutDtype::Bf16] {
            for m in [9usize, 13, 16] {
                let (xb, xv) = activations(m, k, dtype, m as u64 * 977 + k as u64);
                let r = xv.dot(&wd.t());
                let (y1, y2, clean) = run_twice(&dev, &gemm, &xb, m, dtype, GemmConfig::default());
                for (i, y) in [y1, y2].iter().enumerate() {
                    if let Err(e) = compare(&format!("{name} m={m} {dtype} run {i}"), y, &r, dtype) {
                        failures.push(e);
                    }
                }
                if !clean {
                    failures.push(format!("{name} m={m} {dtype}: split-K workspace not zero after the call"));
                }
                count += 1;
            }
        }
    }
    println!("gpu_weight_only_s2m_shapes: {count} GEMMs checked (twice each), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}
