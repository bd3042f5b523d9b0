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

use common::{device_or_skip, weights};
use half::{bf16, f16};
use lowbit_core::{Granularity, IntAffineWeight, QuantizedWeight};
use lowbit_cuda::{Device, DeviceTensor, GemmConfig, GemmPath, OutDtype, WeightOnlyGemm, upload};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const POISON: u16 = 0x7FFF;

/// Turns ws-W on for forced ws plans before the first launch of this process (the launcher reads it once).
fn ws4_on() {
    // SAFETY: set before any thread of this test binary reads the environment through the launcher; the only
    // test of this binary sets the same value.
    unsafe { std::env::set_var("LOWBIT_WO_WS4", "1") };
}

fn activations(m: usize, k: usize, dtype: OutDtype, seed: u64) -> (Vec<u16>, Array2<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bits = Vec::with_capacity(m * k);
    let vals = Array2::from_shape_fn((m, k), |_| {
        let v: f32 = rng.random_range(-1.0f32..1.0);
        let (b, x) = match dtype {
            OutDtype::F16 => (f16::from_f32(v).to_bits(), f16::from_f32(v).to_f64()),
            OutDtype::Bf16 => (bf16::from_f32(v).to_bits(), bf16::from_f32(v).to_f64()),
        };
        bits.push(b);
        x
    });
    (bits, vals)
}

fn to_f64(bits: &[u16], dtype: OutDtype) -> Vec<f64> {
    bits.iter()
        .map(|&b| match dtype {
            OutDtype::F16 => f16::from_bits(b).to_f64(),
            OutDtype::Bf16 => bf16::from_bits(b).to_f64(),
        })
        .collect()
}

/// `weight_only_gpu`'s tolerance model: relative Frobenius error <= 2e-3 (f16) / 1.2e-2 (bf16), every element
/// within rtol * (|ref| + rms(ref)), rtol = 1e-2 (f16) / 4e-2 (bf16); no poison left.
fn compare(name: &str, got: &[u16], reference: &Array2<f64>, dtype: OutDtype) -> Result<(), String> {
    let (fro_tol, rtol) = match dtype {
        OutDtype::F16 => (2e-3, 1e-2),
        OutDtype::Bf16 => (1.2e-2, 4e-2),
    };
    let g = to_f64(got, dtype);
    let rms = (reference.iter().map(|v| v * v).sum::<f64>() / reference.len() as f64).sqrt();
    let (mut num, mut den) = (0.0, 0.0);
    for (i, (&y, &r)) in g.iter().zip(reference.iter()).enumerate() {
        if !y.is_finite() {
            return Err(format!("{name}: element {i} is {y} (poison left or overflow); reference {r}"));
        }
        if (y - r).abs() > rtol * (r.abs() + rms) {
            return Err(format!("{name}: element {i} = {y}, reference {r} (rms {rms:.3e})"));
        }
        num += (y - r) * (y - r);
        den += r * r;
    }
    let rel = (num / den.max(f64::MIN_POSITIVE)).sqrt();
    if rel > fro_tol {
        return Err(format!("{name}: relative Frobenius error {rel:.3e} > {fro_tol:.1e}"));
    }
    Ok(())
}

fn run_gemm(dev: &Device, g: &WeightOnlyGemm, x: &[u16], m: usize, dtype: OutDtype, cfg: GemmConfig) -> Vec<u16> {
    let (n, k) = g.shape();
    let xt = {
        let mut t = DeviceTensor::filled(dev, m, k, dtype, 0).expect("alloc x");
        let data = upload(dev, x).expect("upload x");
        dev.stream().memcpy_dtod(&data, t.data_mut()).expect("copy x");
        t
    };
    let mut y = DeviceTensor::filled(dev, m, n, dtype, POISON).expect("alloc y");
    let plan = g.plan(dev, m, dtype, cfg).expect("plan");
    let mut ws = g.workspace(dev, &plan).expect("workspace");
    g.run(dev, &xt, &mut y, cfg, ws.as_mut()).expect("run");
    y.to_host_bits().expect("download y")
}

fn cases() -> Vec<(String, QuantizedWeight)> {
    let g = Granularity::Group;
    let mut out = Vec::new();
    // Odd N (partial 256-row tiles, strips past N); K with odd k-step counts; 4096x4096 (16 tiles: 8 K splits).
    for (n, k) in [(37usize, 384usize), (333, 640), (1000, 2048), (4096, 4096)] {
        for (sym, gran) in
            [(true, g(128)), (false, g(128)), (false, g(64)), (true, g(32)), (false, Granularity::PerChannel)]
        {
            if n == 4096 && gran != g(128) {
                continue;
            }
            let q = IntAffineWeight::quantize(weights(n, k, 51 + n as u64).view(), 4, sym, gran).unwrap();
            out.push((format!("w4-{}-{gran:?} {n}x{k}", if sym { "sym" } else { "asym" }), QuantizedWeight::Int(q)));
        }
    }
    let (n, k) = (333usize, 640usize);
    let mut perm: Vec<usize> = (0..k).collect();
    perm.shuffle(&mut StdRng::seed_from_u64(5));
    let q = IntAffineWeight::quantize_act_order(weights(n, k, 53).view(), 4, false, g(128), &perm).unwrap();
    out.push((format!("w4-asym-g128-actorder {n}x{k}"), QuantizedWeight::Int(q)));
    out
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_weight_only_ws4_odd_shapes_and_identity() {
    ws4_on();
    let Some(dev) = device_or_skip("gpu_weight_only_ws4_odd_shapes_and_identity") else { return };
    if dev.info().compute_capability.0 != 9 {
        println!("ws-W needs sm_90a: not tested on {}", dev.info().name);
        return;
    }
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
        let want: Vec<u16> = match dtype {
            OutDtype::F16 => w.dequantize_f16().iter().map(|v| v.to_bits()).collect(),
            OutDtype::Bf16 => w.dequantize_bf16().iter().map(|v| v.to_bits()).collect(),
        };
        for m in [29usize, 64] {
            let one = match dtype {
                OutDtype::F16 => f16::ONE.to_bits(),
                OutDtype::Bf16 => bf16::ONE.to_bits(),
            };
            let eye: Vec<u16> = (0..m * k).map(|i| if i / k == i % k { one } else { 0 }).collect();
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
