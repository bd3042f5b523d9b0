//! Shared helpers of the weight-only GEMM GPU tests (`weight_only_gpu`, `weight_only_ws4_gpu`,
//! `weight_only_ws4_sk_gpu`, `weight_only_ws_sk_gpu`): INT4 test weights, activations, the stated tolerance model, one poisoned GEMM run, the
//! identity activations.

use half::{bf16, f16};
use lowbit_core::{Granularity, IntAffineWeight, QuantizedWeight};
use lowbit_cuda::{Device, DeviceTensor, GemmConfig, OutDtype, WeightOnlyGemm, upload};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{POISON, weights};

/// One shape of `int4_cases`: `(n, k)` and the `(symmetric, granularity)` choices it is quantized with.
pub type Int4Shape<'a> = ((usize, usize), &'a [(bool, Granularity)]);

/// INT4 weights for the ws kernels' tests, named for failure messages: every `(n, k)` of `shapes` quantized with
/// each of its `(symmetric, granularity)` choices from `weights(n, k, seed + n)`, then one act-order weight
/// (`act_order = (n, k, weight seed, permutation seed)`, asymmetric, group 128, a random column permutation).
pub fn int4_cases(
    shapes: &[Int4Shape],
    seed: u64,
    act_order: (usize, usize, u64, u64),
) -> Vec<(String, QuantizedWeight)> {
    let mut out = Vec::new();
    for &((n, k), grans) in shapes {
        for &(sym, gran) in grans {
            let q = IntAffineWeight::quantize(weights(n, k, seed + n as u64).view(), 4, sym, gran).unwrap();
            out.push((format!("w4-{}-{gran:?} {n}x{k}", if sym { "sym" } else { "asym" }), QuantizedWeight::Int(q)));
        }
    }
    let (n, k, wseed, pseed) = act_order;
    let mut perm: Vec<usize> = (0..k).collect();
    perm.shuffle(&mut StdRng::seed_from_u64(pseed));
    let g128 = Granularity::Group(128);
    let q = IntAffineWeight::quantize_act_order(weights(n, k, wseed).view(), 4, false, g128, &perm).unwrap();
    out.push((format!("w4-asym-g128-actorder {n}x{k}"), QuantizedWeight::Int(q)));
    out
}

/// Random activations in ±1 rounded to `dtype`: the 16-bit patterns and their exact f64 values.
pub fn activations(m: usize, k: usize, dtype: OutDtype, seed: u64) -> (Vec<u16>, Array2<f64>) {
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

/// Checks `got` (16-bit patterns, [m, n]) against `reference` with the tolerance model of `weight_only_gpu`:
/// relative Frobenius error <= 2e-3 (f16) / 1.2e-2 (bf16), every element within rtol * (|ref| + rms(ref)),
/// rtol = 1e-2 (f16) / 4e-2 (bf16); no poison left.
pub fn compare(name: &str, got: &[u16], reference: &Array2<f64>, dtype: OutDtype) -> Result<(), String> {
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

/// One GEMM on the GPU into a poisoned output; returns the output bits.
pub fn run_gemm(dev: &Device, g: &WeightOnlyGemm, x: &[u16], m: usize, dtype: OutDtype, cfg: GemmConfig) -> Vec<u16> {
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

/// X = the first m rows of I_k as 16-bit patterns of `dtype` (then Y[r][c] = W[c][r]).
pub fn identity_x(m: usize, k: usize, dtype: OutDtype) -> Vec<u16> {
    let one = match dtype {
        OutDtype::F16 => f16::ONE.to_bits(),
        OutDtype::Bf16 => bf16::ONE.to_bits(),
    };
    (0..m * k).map(|i| if i / k == i % k { one } else { 0 }).collect()
}

/// The device for a test of the sm_90a-only ws kernels (`device_or_skip`), or `None` after saying why on a card that
/// is not compute capability 9.x: those kernels are compiled for sm_90a only and the plan never picks them elsewhere.
pub fn hopper_or_skip(test: &str) -> Option<Device> {
    let dev = super::device_or_skip(test)?;
    if dev.info().compute_capability.0 != 9 {
        println!("SKIP {test}: the ws kernels need sm_90a, not tested on {}", dev.info().name);
        return None;
    }
    Some(dev)
}

/// Runs the GEMM twice on one workspace (Y poisoned before each run): both outputs, the workspace's zeroed part
/// afterwards (must be zero) and whether the plan had one.
pub fn run_twice(
    dev: &Device,
    g: &WeightOnlyGemm,
    x: &[u16],
    m: usize,
    dtype: OutDtype,
    cfg: GemmConfig,
) -> (Vec<u16>, Vec<u16>, bool) {
    let (n, k) = g.shape();
    let xt = {
        let mut t = DeviceTensor::filled(dev, m, k, dtype, 0).expect("alloc x");
        let data = upload(dev, x).expect("upload x");
        dev.stream().memcpy_dtod(&data, t.data_mut()).expect("copy x");
        t
    };
    let plan = g.plan(dev, m, dtype, cfg).expect("plan");
    let mut ws = g.workspace(dev, &plan).expect("workspace");
    let mut outs = Vec::new();
    for _ in 0..2 {
        let mut y = DeviceTensor::filled(dev, m, n, dtype, POISON).expect("alloc y");
        g.run(dev, &xt, &mut y, cfg, ws.as_mut()).expect("run");
        outs.push(y.to_host_bits().expect("download y"));
    }
    let clean = match &ws {
        Some(w) if plan.zeroed_bytes > 0 => {
            let host: Vec<u8> = dev.stream().clone_dtoh(w).expect("download workspace");
            host[..plan.zeroed_bytes].iter().all(|&b| b == 0)
        }
        _ => true,
    };
    let second = outs.pop().unwrap();
    (outs.pop().unwrap(), second, clean)
}

/// The stream-K test weights (ws-W stream-K and ws-SKv): shapes whose tiles are cut across many CTAs (1000x2048: ~16 CTAs
/// per tile at small K-step runs; 4096x4096; 28672x512: two CTAs per tile), an odd small one, each in group-128 /
/// act-order / per-channel INT4.
pub fn stream_k_cases() -> Vec<(String, QuantizedWeight)> {
    let g = Granularity::Group;
    let all = [(false, g(128)), (true, g(128)), (false, Granularity::PerChannel)];
    int4_cases(
        &[((1000, 2048), &all), ((4096, 4096), &all[..1]), ((28672, 512), &all[..1]), ((333, 640), &all)],
        71,
        (1000, 1024, 73, 7),
    )
}
