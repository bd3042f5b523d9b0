//! Weight-only GEMM on the GPU vs the CPU reference (f64 accumulation on the exactly dequantized weight).
//!
//! Every format (INT 2/3/4/8 symmetric, asymmetric and act-order; BitMoD 3/4-bit; NF4; 2- and 3-bit
//! tables) × {f16, bf16} × M ∈ {1, 3, 13, 17, 67, 333} on odd shapes and real layer shapes, with outputs
//! poisoned (NaN) before each run; forced launch plans (m-tile, split-K, X chunk) against the same
//! reference; the identity test (X = I gives the dequantized weight, bit-exact for INT and BitMoD);
//! a launch on a foreign stream; and every bad input a typed error.
//!
//! Tolerance model (stated, per dtype): relative Frobenius error ≤ 2e-3 (f16) / 1.2e-2 (bf16), and every
//! element within `rtol · (|ref| + rms(ref))` with rtol = 1e-2 (f16) / 4e-2 (bf16). Sources of error:
//! X is exact (the reference uses the same 16-bit values), INT weights are exact integers times an f32
//! scale, table values are rounded once to the output type, accumulation is f32, the output is rounded once.
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they
//! print `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::weight_only::{activations, compare, identity_x, run_gemm};
use common::{POISON, device_or_skip, reference_bits, require_gpu, weights};
use cudarc::driver::{DevicePtr, DevicePtrMut};
use lowbit_core::bipolar::BipolarMatrix;
use lowbit_core::lut::NF4;
use lowbit_core::{Granularity, IntAffineWeight, LowbitError, LutWeight, MixedWeight, QuantizedWeight};
use lowbit_cuda::{CudaError, Device, DeviceTensor, GemmConfig, GemmPath, OutDtype, WeightOnlyGemm, upload};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

fn reference(w: &QuantizedWeight, x: &Array2<f64>) -> Array2<f64> {
    let wd = w.dequantize().mapv(f64::from);
    x.dot(&wd.t())
}

struct Case {
    name: String,
    w: QuantizedWeight,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut add = |name: String, w: QuantizedWeight| out.push(Case { name, w });
    let g = Granularity::Group;
    // (N, K) small odd shapes; K a multiple of every group used with it.
    for (n, k) in [(37usize, 384usize), (131, 640)] {
        for (bits, sym, gran) in [
            (4, true, g(128)),
            (4, false, g(128)),
            (4, true, g(32)),
            (4, false, g(64)),
            (4, true, Granularity::PerChannel),
            (8, true, Granularity::PerChannel),
            (8, false, g(128)),
            (2, false, g(64)),
            (2, true, g(128)),
            (3, false, g(128)),
            (3, true, g(32)),
        ] {
            let q = IntAffineWeight::quantize(weights(n, k, 7 + bits as u64).view(), bits, sym, gran).unwrap();
            add(format!("w{bits}-int-{}-{gran:?} {n}x{k}", if sym { "sym" } else { "asym" }), QuantizedWeight::Int(q));
        }
        let mut perm: Vec<usize> = (0..k).collect();
        perm.shuffle(&mut StdRng::seed_from_u64(n as u64));
        let q = IntAffineWeight::quantize_act_order(weights(n, k, 3).view(), 4, false, g(128), &perm).unwrap();
        add(format!("w4-int-asym-g128-actorder {n}x{k}"), QuantizedWeight::Int(q));
        for (bits, group) in [(4u32, 128usize), (3, 128), (3, 32)] {
            let q = MixedWeight::quantize(weights(n, k, 11 + bits as u64).view(), bits, group).unwrap();
            add(format!("w{bits}-mixed-g{group} {n}x{k}"), QuantizedWeight::Mixed(q));
        }
        let q = LutWeight::quantize(weights(n, k, 13).view(), &NF4, g(64)).unwrap();
        add(format!("w4-nf4-g64 {n}x{k}"), QuantizedWeight::Lut(q));
        let lut3 = [-1.0, -0.6, -0.3, -0.1, 0.1, 0.3, 0.6, 1.0];
        let q = LutWeight::quantize(weights(n, k, 14).view(), &lut3, g(128)).unwrap();
        add(format!("w3-lut-g128 {n}x{k}"), QuantizedWeight::Lut(q));
        let q = LutWeight::quantize(weights(n, k, 15).view(), &[-1.0, -0.25, 0.3, 1.0], g(32)).unwrap();
        add(format!("w2-lut-g32 {n}x{k}"), QuantizedWeight::Lut(q));
    }
    // Per-channel with K not a multiple of 8 (element-wise staging of X) and of the k-step.
    let q = IntAffineWeight::quantize(weights(29, 203, 21).view(), 4, false, Granularity::PerChannel).unwrap();
    add("w4-int-asym-pc 29x203".into(), QuantizedWeight::Int(q));
    out
}

/// Real layer shapes (Llama-2-7B MLP down / up projections), M ∈ {1, 17}.
fn real_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (n, k) in [(4096usize, 11008usize), (11008, 4096)] {
        let q = IntAffineWeight::quantize(weights(n, k, 31).view(), 4, true, Granularity::Group(128)).unwrap();
        out.push(Case { name: format!("w4-int-g128 {n}x{k}"), w: QuantizedWeight::Int(q) });
        let q = MixedWeight::quantize(weights(n, k, 32).view(), 3, 128).unwrap();
        out.push(Case { name: format!("w3-mixed-g128 {n}x{k}"), w: QuantizedWeight::Mixed(q) });
    }
    out
}

/// The paths this GPU runs: always mma.sync; dequantize + cuBLAS where libcublas loads (required under
/// `LOWBIT_REQUIRE_GPU=1`); wgmma on Hopper (compute capability 9.x).
fn paths(dev: &Device) -> Vec<Option<GemmPath>> {
    let mut p = vec![None, Some(GemmPath::Mma)];
    if lowbit_cuda::cublas::ensure_cublas().is_ok() {
        p.push(Some(GemmPath::DequantCublas));
    } else {
        assert!(!require_gpu(), "LOWBIT_REQUIRE_GPU=1 but libcublas.so.13 cannot be loaded");
        println!("no libcublas: dequantize + cuBLAS path not tested");
    }
    if dev.info().compute_capability.0 == 9 {
        p.push(Some(GemmPath::Wgmma));
        p.push(Some(GemmPath::Ws));
    } else {
        println!(
            "no wgmma on {} (sm_{}{}): wgmma path not tested",
            dev.info().name,
            dev.info().compute_capability.0,
            dev.info().compute_capability.1
        );
    }
    p
}

fn sweep(test: &str, cases: Vec<Case>, ms: &[usize]) {
    let Some(dev) = device_or_skip(test) else { return };
    let mut failures = Vec::new();
    let mut count = 0;
    for case in &cases {
        let g = WeightOnlyGemm::new(&dev, &case.w).expect("upload");
        let (_, k) = g.shape();
        for dtype in [OutDtype::F16, OutDtype::Bf16] {
            for &m in ms {
                let (xb, xv) = activations(m, k, dtype, m as u64 * 31 + k as u64);
                let r = reference(&case.w, &xv);
                for path in paths(&dev) {
                    // X rows beyond K % 8 != 0 cannot use the wgmma path's 16-byte staging.
                    if path == Some(GemmPath::Wgmma) && k % 8 != 0 {
                        continue;
                    }
                    // The ws kernel runs INT 4-bit formats only, with TMA staging of X (K % 8 == 0).
                    if path == Some(GemmPath::Ws) && (!case.name.starts_with("w4-int") || k % 8 != 0) {
                        continue;
                    }
                    let cfg = GemmConfig { path, ..GemmConfig::default() };
                    let got = run_gemm(&dev, &g, &xb, m, dtype, cfg);
                    let name = format!("{} m={m} {dtype} {path:?}", case.name);
                    if let Err(e) = compare(&name, &got, &r, dtype) {
                        failures.push(e);
                    }
                    count += 1;
                }
            }
        }
    }
    println!("{test}: {count} GEMMs checked, {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_every_format_odd_shapes() {
    sweep("gpu_weight_only_every_format_odd_shapes", cases(), &[1, 3, 13, 17, 67, 333]);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_real_shapes() {
    sweep("gpu_weight_only_real_shapes", real_cases(), &[1, 16, 17]);
}

/// INT4 shapes where the automatic plan runs S2 (two strips per warp, compact X, in-block split-K; weight-only NOTES.md
/// v19: M <= 4, >= 32 strip pairs, kw = 8): 2048x2048 and 4096x4096 g128 sym / asym, odd N (1037: 65 strips, a half
/// pair and a partly filled block) with g64 and per-channel, 11008x4096 g128 (the 3-blocks-per-SM config at M = 1);
/// M = 1..4 and 8 (8: the library's own grids), every path, poisoned Y, f64 reference. Under `LOWBIT_WO_S2=1` S2 also
/// runs the odd shapes of the other tests at M <= 8; `LOWBIT_WO_S2_WST=1` switches its warp-staged prologue.
fn s2_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (n, k, sym, gran) in [
        (2048usize, 2048usize, true, Granularity::Group(128)),
        (4096, 4096, false, Granularity::Group(128)),
        (1037, 2112, false, Granularity::Group(64)),
        (1037, 1000, true, Granularity::PerChannel),
        (11008, 4096, true, Granularity::Group(128)),
    ] {
        let q = IntAffineWeight::quantize(weights(n, k, 47).view(), 4, sym, gran).unwrap();
        let name = format!("w4-int-{}-{gran:?} {n}x{k}", if sym { "sym" } else { "asym" });
        out.push(Case { name, w: QuantizedWeight::Int(q) });
    }
    out
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_s2_shapes() {
    sweep("gpu_weight_only_s2_shapes", s2_cases(), &[1, 2, 3, 4, 8]);
}

/// Real INT4 g128 shapes (sym and asym) at the M where the automatic plan picks the warp-specialized kernel
/// (64..256) and odd M beyond its tiles: every path, every output compared (poisoned Y).
fn ws_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (n, k) in [(4096usize, 11008usize), (11008, 4096)] {
        for sym in [true, false] {
            let q = IntAffineWeight::quantize(weights(n, k, 41).view(), 4, sym, Granularity::Group(128)).unwrap();
            let name = format!("w4-int-{}-g128 {n}x{k}", if sym { "sym" } else { "asym" });
            out.push(Case { name, w: QuantizedWeight::Int(q) });
        }
    }
    out
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws_real_shapes() {
    sweep("gpu_weight_only_ws_real_shapes", ws_cases(), &[64, 67, 257]);
}

/// INT4 g128 4096x4096 (32 weight tiles of 128 rows: fewer than half of an H100's SMs), sym and asym, at M where the
/// ws plan splits K (M = 64 forced: 4 splits, f32 partials in the zeroed workspace, then the conversion; from M = 128
/// on an H100 ws-C, 2-CTA clusters summed over distributed shared memory: 128 at BX 64, 256 at BX 128, 333 at BX
/// 256; kernels/weight_only/NOTES.md ws-C): every path, every output compared against the f64 reference (poisoned Y).
fn ws_split_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for sym in [true, false] {
        let q = IntAffineWeight::quantize(weights(4096, 4096, 43).view(), 4, sym, Granularity::Group(128)).unwrap();
        let name = format!("w4-int-{}-g128 4096x4096", if sym { "sym" } else { "asym" });
        out.push(Case { name, w: QuantizedWeight::Int(q) });
    }
    out
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws_split_shapes() {
    sweep("gpu_weight_only_ws_split_shapes", ws_split_cases(), &[64, 128, 256, 333]);
}

/// ws-W's stream-K schedule in the automatic plan (`wo_launch.cu` kWs4SkAuto, weight-only NOTES.md ws-SK): INT4 g128
/// 28672x8192 at M = 33 and 64 (112 tiles of 256 x 64 and one K split: fewer tiles than an H100's 132 SMs), f16 and
/// bf16, against the f64 reference, twice on one workspace (equal bit for bit, the owner's fixed order). On a Hopper
/// GPU with more SMs than tiles the plan must show the choice: zeroed workspace bytes (stream-K's flags and slots;
/// the unsplit K-split plan has none).
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws4_stream_k_auto() {
    let Some(dev) = device_or_skip("gpu_weight_only_ws4_stream_k_auto") else { return };
    let (n, k) = (28672usize, 8192usize);
    let w = QuantizedWeight::Int(
        IntAffineWeight::quantize(weights(n, k, 79).view(), 4, false, Granularity::Group(128)).unwrap(),
    );
    let g = WeightOnlyGemm::new(&dev, &w).expect("upload");
    let wd = w.dequantize().mapv(f64::from);
    let sk_expected = dev.info().compute_capability == (9, 0) && dev.info().sm_count > 112;
    let cfg = GemmConfig::default();
    let mut failures = Vec::new();
    let mut count = 0;
    for m in [33usize, 64] {
        for dtype in [OutDtype::F16, OutDtype::Bf16] {
            let plan = g.plan(&dev, m, dtype, cfg).expect("plan");
            if sk_expected && (plan.zeroed_bytes == 0 || plan.dequant_cublas) {
                failures.push(format!("m={m} {dtype}: the automatic plan is not stream-K ({plan:?})"));
            }
            let (xb, xv) = activations(m, k, dtype, m as u64 * 37 + 5);
            let r = xv.dot(&wd.t());
            let got = run_gemm(&dev, &g, &xb, m, dtype, cfg);
            if let Err(e) = compare(&format!("w4-asym-g128 {n}x{k} m={m} {dtype}"), &got, &r, dtype) {
                failures.push(e);
            }
            if run_gemm(&dev, &g, &xb, m, dtype, cfg) != got {
                failures.push(format!("m={m} {dtype}: a second run differs"));
            }
            count += 1;
        }
    }
    println!("gpu_weight_only_ws4_stream_k_auto: {count} GEMMs checked (each twice), {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {count} failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_forced_plans() {
    let Some(dev) = device_or_skip("gpu_weight_only_forced_plans") else { return };
    let (n, k) = (272, 2048);
    let mut failures = Vec::new();
    for (bits, fmt) in [(4u32, "int4"), (3, "int3")] {
        let w = QuantizedWeight::Int(
            IntAffineWeight::quantize(weights(n, k, 41).view(), bits, false, Granularity::Group(128)).unwrap(),
        );
        let g = WeightOnlyGemm::new(&dev, &w).unwrap();
        let kstep = if bits == 4 { 64 } else { 128 };
        for m in [1usize, 20, 64] {
            let dtype = OutDtype::F16;
            let (xb, xv) = activations(m, k, dtype, 5 + m as u64);
            let r = reference(&w, &xv);
            for m_tile in [8u32, 16, 32, 64] {
                for splits in [1u32, 3, 7] {
                    // The largest chunk that fits 228 KB of shared memory at this m-tile, and two small ones.
                    for kc in [kstep, 4 * kstep, 2048 * 8 / m_tile] {
                        let cfg = GemmConfig {
                            m_tile: Some(m_tile),
                            splits: Some(splits),
                            kc: Some(kc),
                            path: Some(GemmPath::Mma),
                            k_warps: Some(1),
                        };
                        let got = run_gemm(&dev, &g, &xb, m, dtype, cfg);
                        if let Err(e) = compare(&format!("{fmt} m={m} {cfg:?}"), &got, &r, dtype) {
                            failures.push(e);
                        }
                    }
                }
            }
            // In-block split-K: the whole K range in one chunk (fits shared memory up to 16-row m-tiles at
            // K = 2048), 2, 4 or 8 warps per strip, each with a share of the 32 or 16 k-steps.
            for m_tile in [8u32, 16] {
                for k_warps in [2u32, 4, 8] {
                    let cfg = GemmConfig {
                        m_tile: Some(m_tile),
                        k_warps: Some(k_warps),
                        path: Some(GemmPath::Mma),
                        ..GemmConfig::default()
                    };
                    let got = run_gemm(&dev, &g, &xb, m, dtype, cfg);
                    if let Err(e) = compare(&format!("{fmt} m={m} {cfg:?}"), &got, &r, dtype) {
                        failures.push(e);
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The split-K workspace is zero on entry and every call leaves it zero (no memset per call: NOTES.md v11), so
/// one workspace serves a sequence of split-K launches of different formats, dtypes, M and split counts: each
/// result matches the reference and the workspace's `zeroed_bytes` are zero again at the end.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_split_workspace_is_reused() {
    let Some(dev) = device_or_skip("gpu_weight_only_split_workspace_is_reused") else { return };
    let (n, k) = (200, 1024);
    let weights_of = [
        QuantizedWeight::Int(
            IntAffineWeight::quantize(weights(n, k, 51).view(), 4, false, Granularity::Group(128)).unwrap(),
        ),
        QuantizedWeight::Mixed(MixedWeight::quantize(weights(n, k, 52).view(), 3, 128).unwrap()),
    ];
    let gemms: Vec<WeightOnlyGemm> = weights_of.iter().map(|w| WeightOnlyGemm::new(&dev, w).unwrap()).collect();
    // One workspace, sized for the largest plan (M = 67 at 7 splits).
    let big = GemmConfig { splits: Some(7), path: Some(GemmPath::Mma), ..GemmConfig::default() };
    let plan = gemms[0].plan(&dev, 67, OutDtype::F16, big).unwrap();
    assert!(plan.zeroed_bytes > 0 && plan.zeroed_bytes <= plan.workspace_bytes, "{plan:?}");
    let one = GemmConfig { splits: Some(1), path: Some(GemmPath::Mma), ..GemmConfig::default() };
    assert_eq!(gemms[0].plan(&dev, 1, OutDtype::F16, one).unwrap().zeroed_bytes, 0);
    let mut ws = gemms[0].workspace(&dev, &plan).unwrap();
    let mut failures = Vec::new();
    for round in 0..2 {
        for (w, g) in weights_of.iter().zip(&gemms) {
            for dtype in [OutDtype::F16, OutDtype::Bf16] {
                for (m, splits) in [(1usize, 3u32), (17, 7), (67, 2), (3, 5)] {
                    let (xb, xv) = activations(m, k, dtype, 90 + m as u64 + round);
                    let cfg = GemmConfig { splits: Some(splits), path: Some(GemmPath::Mma), ..GemmConfig::default() };
                    let mut x = DeviceTensor::zeros(&dev, m, k, dtype).unwrap();
                    let data = upload(&dev, &xb).unwrap();
                    dev.stream().memcpy_dtod(&data, x.data_mut()).unwrap();
                    let mut y = DeviceTensor::filled(&dev, m, n, dtype, POISON).unwrap();
                    g.run(&dev, &x, &mut y, cfg, ws.as_mut()).unwrap();
                    let got = y.to_host_bits().unwrap();
                    let name = format!("round {round} {} {dtype} m={m} splits={splits}", g.shape().0);
                    if let Err(e) = compare(&name, &got, &reference(w, &xv), dtype) {
                        failures.push(e);
                    }
                }
            }
        }
    }
    let left = dev.stream().clone_dtoh(ws.as_ref().unwrap()).unwrap();
    let dirty = left[..plan.zeroed_bytes].iter().filter(|&&b| b != 0).count();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(dirty, 0, "split-K workspace not left zero: {dirty} of {} bytes", plan.zeroed_bytes);
}

/// X = I: Y[m][n] = W[n][m], so the GEMM reproduces the dequantized weight (transposed). Exact for INT and
/// BitMoD (integers times f32 scales); table formats round the table to the output type first (≤ 1 ulp).
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_identity() {
    let Some(dev) = device_or_skip("gpu_weight_only_identity") else { return };
    let k = 256;
    let mut failures = Vec::new();
    let mut ws: Vec<(String, QuantizedWeight, bool)> = Vec::new();
    for bits in [2u32, 3, 4, 8] {
        let q =
            IntAffineWeight::quantize(weights(48, k, bits as u64).view(), bits, false, Granularity::Group(64)).unwrap();
        ws.push((format!("int{bits}"), QuantizedWeight::Int(q), true));
    }
    for bits in [3u32, 4] {
        let q = MixedWeight::quantize(weights(48, k, 9).view(), bits, 128).unwrap();
        ws.push((format!("mixed{bits}"), QuantizedWeight::Mixed(q), true));
    }
    let q = LutWeight::quantize(weights(48, k, 10).view(), &NF4, Granularity::Group(128)).unwrap();
    ws.push(("nf4".into(), QuantizedWeight::Lut(q), false));
    for (name, w, exact) in &ws {
        let g = WeightOnlyGemm::new(&dev, w).unwrap();
        let (n, _) = g.shape();
        for (dtype, path) in [OutDtype::F16, OutDtype::Bf16]
            .into_iter()
            .flat_map(|d| paths(&dev).into_iter().filter(|p| p.is_some()).map(move |p| (d, p)))
        {
            // mma.sync scales the f32 accumulator per group and the dequantize + cuBLAS path scales in f32
            // before one rounding: exact for INT and BitMoD, tables (rounded to the 16-bit type once) within
            // 1 ulp. wgmma scales the 16-bit weight before the MMA, one more rounding: INT and BitMoD within
            // 1 ulp, tables within 2.
            // The ws kernel (INT4 only) scales like wgmma.
            if path == Some(GemmPath::Ws) && name != "int4" {
                continue;
            }
            let wgmma = matches!(path, Some(GemmPath::Wgmma) | Some(GemmPath::Ws));
            let max_ulps = if *exact { wgmma as i32 } else { 1 + wgmma as i32 };
            for m in [64usize, k] {
                let eye = identity_x(m, k, dtype);
                let got = run_gemm(&dev, &g, &eye, m, dtype, GemmConfig { path, ..GemmConfig::default() });
                let want = reference_bits(w, dtype == OutDtype::Bf16);
                for r in 0..m {
                    for c in 0..n {
                        let (a, b) = (got[r * n + c], want[c * k + r]);
                        let ulps = (a as i32 - b as i32).abs();
                        if ulps > max_ulps {
                            failures.push(format!(
                                "{name} {dtype} {path:?} m={m}: Y[{r}][{c}] = {a:#06x}, W[{c}][{r}] = {b:#06x}"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches, first: {:?}", failures.len(), &failures[..failures.len().min(10)]);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_foreign_stream() {
    let Some(dev) = device_or_skip("gpu_weight_only_foreign_stream") else { return };
    let (n, k, m) = (96, 512, 5);
    let w = QuantizedWeight::Int(
        IntAffineWeight::quantize(weights(n, k, 2).view(), 4, true, Granularity::Group(128)).unwrap(),
    );
    let g = WeightOnlyGemm::new(&dev, &w).unwrap();
    let dtype = OutDtype::F16;
    let (xb, xv) = activations(m, k, dtype, 77);
    let side = dev.stream().fork().expect("fork stream");
    let x = upload(&dev, &xb).unwrap();
    let mut y = upload(&dev, &vec![POISON; m * n]).unwrap();
    dev.synchronize().unwrap();
    let plan = g.plan(&dev, m, dtype, GemmConfig::default()).unwrap();
    let mut ws = g.workspace(&dev, &plan).unwrap();
    {
        let (xp, _gx) = x.device_ptr(&side);
        let (yp, _gy) = y.device_ptr_mut(&side);
        let wsp = ws.as_mut().map_or(0, |w| w.device_ptr_mut(&side).0);
        // SAFETY: x, y and the workspace are live allocations of dev's context with the planned sizes;
        // `side` is a stream of that context and is synchronized below before anything is freed.
        unsafe { g.run_raw(&dev, xp, k, yp, &plan, wsp, side.cu_stream().cast()) }.unwrap();
    }
    side.synchronize().unwrap();
    let got = side.clone_dtoh(&y).unwrap();
    compare("foreign stream", &got, &reference(&w, &xv), dtype).unwrap();
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_bad_input_is_typed() {
    let Some(dev) = device_or_skip("gpu_weight_only_bad_input_is_typed") else { return };
    let w = QuantizedWeight::Int(
        IntAffineWeight::quantize(weights(32, 256, 1).view(), 4, true, Granularity::Group(64)).unwrap(),
    );
    let g = WeightOnlyGemm::new(&dev, &w).unwrap();
    let d = GemmConfig::default();
    assert!(matches!(g.plan(&dev, 0, OutDtype::F16, d), Err(CudaError::Shape { .. })));
    let bad_tile = GemmConfig { m_tile: Some(12), ..d };
    assert!(matches!(g.plan(&dev, 4, OutDtype::F16, bad_tile), Err(CudaError::InvalidArgument { .. })));
    let bad_kc = GemmConfig { kc: Some(48), ..d };
    assert!(matches!(g.plan(&dev, 4, OutDtype::F16, bad_kc), Err(CudaError::InvalidArgument { .. })));
    // k_warps: 1, 2, 4 or 8, and never together with a split across blocks.
    let x4 = DeviceTensor::zeros(&dev, 4, 256, OutDtype::F16).unwrap();
    let mut y4 = DeviceTensor::zeros(&dev, 4, 32, OutDtype::F16).unwrap();
    for bad in [GemmConfig { k_warps: Some(3), ..d }, GemmConfig { k_warps: Some(2), splits: Some(2), ..d }] {
        assert!(matches!(g.run(&dev, &x4, &mut y4, bad, None), Err(CudaError::InvalidArgument { .. })), "{bad:?}");
    }
    // A chunk too large for shared memory at this m-tile (2 x 64 rows x 8192 columns): refused at launch with
    // a typed error, not a CUDA error.
    let wide = QuantizedWeight::Int(
        IntAffineWeight::quantize(weights(16, 8192, 2).view(), 4, true, Granularity::Group(128)).unwrap(),
    );
    let gw = WeightOnlyGemm::new(&dev, &wide).unwrap();
    let x = DeviceTensor::zeros(&dev, 64, 8192, OutDtype::F16).unwrap();
    let mut y = DeviceTensor::zeros(&dev, 64, 16, OutDtype::F16).unwrap();
    let huge =
        GemmConfig { m_tile: Some(64), kc: Some(8192), splits: Some(1), path: Some(GemmPath::Mma), k_warps: None };
    assert!(matches!(gw.run(&dev, &x, &mut y, huge, None), Err(CudaError::InvalidArgument { .. })));
    // In-block split-K needs the whole K range in one chunk: 2 x 64 rows x 8192 columns does not fit.
    let huge = GemmConfig { m_tile: Some(64), k_warps: Some(4), path: Some(GemmPath::Mma), ..d };
    assert!(matches!(gw.run(&dev, &x, &mut y, huge, None), Err(CudaError::InvalidArgument { .. })));
    // x with the wrong K, y with the wrong N, mixed dtypes.
    let x = DeviceTensor::zeros(&dev, 4, 255, OutDtype::F16).unwrap();
    let mut y = DeviceTensor::zeros(&dev, 4, 32, OutDtype::F16).unwrap();
    assert!(matches!(g.run(&dev, &x, &mut y, d, None), Err(CudaError::Shape { .. })));
    let x = DeviceTensor::zeros(&dev, 4, 256, OutDtype::Bf16).unwrap();
    assert!(matches!(g.run(&dev, &x, &mut y, d, None), Err(CudaError::Shape { .. })));
    // A split-K plan without its workspace.
    let x = DeviceTensor::zeros(&dev, 4, 256, OutDtype::F16).unwrap();
    let split = GemmConfig { splits: Some(2), ..d };
    assert!(g.plan(&dev, 4, OutDtype::F16, split).unwrap().workspace_bytes > 0);
    assert!(matches!(g.run(&dev, &x, &mut y, split, None), Err(CudaError::BufferSize { .. })));
    // bipolar weights belong to the bipolar GEMM.
    let b = BipolarMatrix::quantize(weights(8, 64, 1).view(), 2, Granularity::Group(32)).unwrap();
    assert!(matches!(
        WeightOnlyGemm::new(&dev, &QuantizedWeight::Bipolar(b)),
        Err(CudaError::Core(LowbitError::Unsupported(_)))
    ));
}
