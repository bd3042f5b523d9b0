//! bipolar-INT GEMM (`kernels/bipolar`) on the GPU against lowbit-core's CPU references.
//!
//! Tolerance model: the exact integer product `Y_int = Σ v_x·v_w` is compared **exactly** with
//! `reference::bipolar_gemm_exact` for every `(p, q)` and both mappings on odd shapes (plane mapping: its int32
//! output is `Y_int`; int8 mapping: its accumulator, turned into `Y_int` by `exact_from_int8`), with forced tiles
//! and split-K; outputs are poisoned first. The plane mapping's f16 epilogue is compared **bit for bit** with
//! `lowbit_core::int8::Epilogue::value` (same f32 operations, same order); the int8 mapping's f16 output (other
//! rounding order) within 1e-2 relative of the f64 product of the dequantized operands. The activation kernel is
//! bit-exact with `BipolarMatrix::quantize` per token.
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they print
//! `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::device_or_skip;
use cudarc::driver::CudaSlice;
use half::f16;
use lowbit_core::bipolar::BipolarMatrix;
use lowbit_core::granularity::Granularity;
use lowbit_core::int8::{Epilogue, I8Out};
use lowbit_core::reference::{bipolar_gemm_exact, bipolar_gemm_popcount};
use lowbit_cuda::bipolar::plane_ld;
use lowbit_cuda::{BipConfig, BipMapping, BipPlanePath, BipolarGemm, CudaError, Device, OutDtype, upload};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const POISON32: i32 = 0x7FFF_7FFF;

fn rand_bipolar(rows: usize, k: usize, bits: u32, offsets: bool, seed: u64) -> BipolarMatrix {
    let mut rng = StdRng::seed_from_u64(seed);
    let codes: Vec<u8> = (0..rows * k).map(|_| rng.random_range(0..(1u32 << bits)) as u8).collect();
    let scales: Vec<f32> = (0..rows).map(|_| rng.random_range(0.001f32..0.02)).collect();
    let off = offsets.then(|| (0..rows).map(|_| rng.random_range(-0.05f32..0.05)).collect());
    BipolarMatrix::from_codes(rows, k, bits, Granularity::PerChannel, &codes, scales, off).unwrap()
}

fn run_i32(dev: &Device, g: &BipolarGemm, x: &BipolarMatrix, cfg: BipConfig) -> Result<Vec<i32>, CudaError> {
    let (n, _) = g.shape();
    let m = x.n;
    let acts = g.upload_activations(dev, x)?;
    let mut y = upload(dev, &vec![POISON32; m * n])?;
    let plan = g.plan(dev, m, cfg)?;
    let mut ws = g.workspace(dev, &plan)?;
    // Twice: a split-K workspace must be left clean for the next call.
    for _ in 0..2 {
        g.run(dev, &acts, I8Out::I32, &mut y, &plan, ws.as_mut())?;
    }
    let out = dev.stream().clone_dtoh(&y)?;
    if let Some(ws) = ws {
        let w: Vec<u8> = dev.stream().clone_dtoh(&ws)?;
        assert!(w.iter().all(|&b| b == 0), "split-K workspace not left zero");
    }
    let acc = if plan.mapping == BipMapping::Int8 {
        let sums: Vec<i32> = x.values().rows().into_iter().map(|r| r.sum()).collect();
        g.exact_from_int8(&out, m, &sums).into_iter().map(|v| v as i32).collect()
    } else {
        out
    };
    Ok(acc)
}

fn check_exact(name: &str, got: &[i32], want: &Array2<i64>) {
    let n = want.ncols();
    let w: Vec<i64> = want.iter().copied().collect();
    if let Some(i) = got.iter().zip(&w).position(|(&a, &b)| a as i64 != b) {
        let bad = got.iter().zip(&w).filter(|(a, b)| **a as i64 != **b).count();
        panic!("{name}: {bad} of {} differ; first at m={} n={}: got {} want {}", w.len(), i / n, i % n, got[i], w[i]);
    }
}

/// One run with the f16 epilogue into a poisoned output: its 16-bit patterns ([m, n]).
fn run_f16(dev: &Device, g: &BipolarGemm, x: &BipolarMatrix, cfg: BipConfig) -> Result<Vec<u16>, CudaError> {
    let (n, _) = g.shape();
    let m = x.n;
    let acts = g.upload_activations(dev, x)?;
    let plan = g.plan(dev, m, cfg)?;
    let mut ws = g.workspace(dev, &plan)?;
    let mut y: CudaSlice<u16> = upload(dev, &vec![0x7FFFu16; m * n])?;
    g.run(dev, &acts, I8Out::F16, &mut y, &plan, ws.as_mut())?;
    Ok(dev.stream().clone_dtoh(&y)?)
}

/// f16 outputs ([m, n] patterns) bit for bit; panics at the first difference.
fn check_bits(name: &str, got: &[u16], want: &[u16], n: usize) {
    assert_eq!(got.len(), want.len(), "{name}: output length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{name}: f16 not bit-exact; first difference at m={} n={}: got {} ({:#06x}) want {} ({:#06x})",
            i / n,
            i % n,
            f16::from_bits(got[i]),
            got[i],
            f16::from_bits(want[i]),
            want[i]
        );
    }
}

/// The int8 mapping's f16 output (its own rounding order) within 1e-2 relative of the f64 product of the dequantized
/// operands (floor 1e-5 K).
fn check_close(name: &str, got: &[u16], x: &BipolarMatrix, w: &BipolarMatrix) {
    let (n, k) = (w.n, w.k);
    let (wd, xd) = (w.dequantize(), x.dequantize());
    for (i, &bits) in got.iter().enumerate() {
        let (r, c) = (i / n, i % n);
        let want: f64 = (0..k).map(|t| xd[[r, t]] as f64 * wd[[c, t]] as f64).sum();
        let gv = f16::from_bits(bits).to_f64();
        let tol = 1e-2 * want.abs().max(1e-2 * k as f64 * 1e-3);
        assert!((gv - want).abs() <= tol, "{name} ({r},{c}): got {gv} want {want}");
    }
}

/// Odd shapes (m, n, k): decode rows, one past tiles, K not a multiple of 32 / 128 / 256 (int8 mapping: K % 16).
const SHAPES: [(usize, usize, usize); 4] = [(1, 129, 272), (37, 133, 300), (70, 255, 1040), (261, 131, 2320)];

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_planes_exact_every_pq() {
    let Some(dev) = device_or_skip("gpu_bipolar_planes_exact_every_pq") else { return };
    let mut ran = 0;
    for p in 1..=8u32 {
        for q in 1..=8u32 {
            for (si, &(m, n, k)) in SHAPES.iter().enumerate() {
                let seed = (p * 100 + q * 10) as u64 + si as u64;
                let w = rand_bipolar(n, k, q, false, seed);
                let x = rand_bipolar(m, k, p, false, seed + 1000);
                let g = BipolarGemm::new(&dev, &w, p).unwrap();
                if !g.planes_available(&dev, 0).unwrap() {
                    continue;
                }
                let want = bipolar_gemm_exact(&x, &w).unwrap();
                let cfgs = [
                    BipConfig { mapping: Some(BipMapping::Planes), ..Default::default() },
                    BipConfig { mapping: Some(BipMapping::Planes), bx: Some(8), splits: Some(3), ..Default::default() },
                ];
                for cfg in cfgs {
                    match run_i32(&dev, &g, &x, cfg) {
                        Ok(got) => {
                            check_exact(&format!("planes W{q}A{p} m={m} n={n} k={k} {cfg:?}"), &got, &want);
                            ran += 1;
                        }
                        Err(CudaError::NoKernel { .. }) if cfg.bx.is_some() => {}
                        Err(e) => panic!("W{q}A{p} m={m} n={n} k={k} {cfg:?}: {e}"),
                    }
                }
            }
        }
    }
    assert!(ran > 100, "only {ran} plane runs");
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_int8_exact_every_pq() {
    let Some(dev) = device_or_skip("gpu_bipolar_int8_exact_every_pq") else { return };
    let mut ran = 0;
    for p in 1..=8u32 {
        for q in 1..=8u32 {
            for (si, &(m, n, k)) in SHAPES.iter().enumerate() {
                let k = k.next_multiple_of(16);
                let seed = (p * 1000 + q * 10) as u64 + si as u64;
                let w = rand_bipolar(n, k, q, false, seed);
                let x = rand_bipolar(m, k, p, false, seed + 7);
                let g = BipolarGemm::new(&dev, &w, p).unwrap();
                let cfg = BipConfig { mapping: Some(BipMapping::Int8), ..Default::default() };
                g.int8_mapping().unwrap();
                let got = run_i32(&dev, &g, &x, cfg).unwrap();
                check_exact(&format!("int8 W{q}A{p} m={m} n={n} k={k}"), &got, &bipolar_gemm_exact(&x, &w).unwrap());
                ran += 1;
            }
        }
    }
    // Every pair, W8A8 included (its int8 mapping: the int8 core's second rank-1 epilogue term).
    assert_eq!(ran, 64 * SHAPES.len());
}

/// The int8 mapping's two rank-1 epilogue terms (`a_x[m]·(a_w·d_x·(S_w − K·d_w))[n] + (a_x S_x)[m]·(d_w·a_w +
/// b_w)[n]`, `v = 2·op + d` on each side: the unsigned operand for 1-7 bits, `u − 128` for 8) on W8A8, 8-bit
/// activations with weight offsets and 1-7-bit pairs with and without offsets, packed 2- / 4-bit weights at small M
/// included: at M = 1, 5 (int8 streaming kernel), 17, 67 (tile kernel), 333 (warp-specialized kernel on sm_90a) on
/// odd N and K % 128 != 0, poisoned outputs: the exact `Y_int`
/// (int32 accumulator + `exact_from_int8`) against the CPU integer reference, and the f16 output bit for bit
/// against lowbit-core's epilogue on the exact accumulator with the mapping's vectors (`int8_epilogue_vectors`),
/// plus within 1e-2 of the f64 product of the dequantized operands (the int8 mapping forced). For W8A8 the
/// automatic choice is the int8 mapping and the plane mapping has no instance for p·q = 64 (a typed `NoKernel` when
/// forced). (The int8 core's paths themselves,
/// ping-pong included, are checked with both terms in int8_gpu.rs.)
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_int8_mapping_exact_and_epilogue() {
    use lowbit_cuda::bipolar::{Int8RowVector, int8_epilogue_vectors, int8_operand};
    let Some(dev) = device_or_skip("gpu_bipolar_int8_mapping_exact_and_epilogue") else { return };
    let mut ran = 0;
    let pairs =
        [(8u32, 8u32, false), (8, 8, true), (3, 8, true), (1, 8, true), (1, 3, false), (2, 7, true), (4, 4, false)];
    for (q, p, offsets) in pairs {
        for (si, &(m, n, k)) in
            [(1usize, 131usize, 272usize), (5, 77, 416), (17, 129, 272), (67, 131, 1040), (333, 75, 304)]
                .iter()
                .enumerate()
        {
            let seed = 9000 + 1000 * p as u64 + 100 * q as u64 + 10 * offsets as u64 + si as u64;
            let w = rand_bipolar(n, k, q, offsets, seed);
            let x = rand_bipolar(m, k, p, false, seed + 1);
            let g = BipolarGemm::new(&dev, &w, p).unwrap();
            let name = format!("W{q}A{p} offsets {offsets} m={m} n={n} k={k}");
            g.int8_mapping().unwrap_or_else(|e| panic!("{name}: no int8 mapping: {e}"));
            if q == 8 {
                // W8A8: the automatic choice is the int8 mapping; the planes have no instance.
                assert_eq!(g.choose(&dev, m).unwrap(), Some(BipMapping::Int8), "{name}: auto choice");
                let planes = BipConfig { mapping: Some(BipMapping::Planes), ..Default::default() };
                assert!(matches!(g.plan(&dev, m, planes), Err(CudaError::NoKernel { .. })), "{name}: W8A8 planes");
            }
            // Exact before scaling (the int8 mapping, forced: W3A8 / W1A8 at small M prefer the planes).
            let int8 = BipConfig { mapping: Some(BipMapping::Int8), ..Default::default() };
            let yint = bipolar_gemm_exact(&x, &w).unwrap();
            check_exact(&name, &run_i32(&dev, &g, &x, int8).unwrap(), &yint);
            // f16 epilogue: bit for bit with the CPU epilogue on the exact accumulator.
            let sx: Vec<i32> = x.values().rows().into_iter().map(|r| r.sum()).collect();
            let sw: Vec<i32> = w.values().rows().into_iter().map(|r| r.sum()).collect();
            let v = int8_epilogue_vectors(p, q, k, &w.scales, w.offsets.as_deref(), &sw);
            assert!(v.corr.is_some() && v.corr2.is_some(), "{name}: both terms");
            let axsx: Vec<f32> = x.scales.iter().zip(&sx).map(|(s, &v)| s * v as f32).collect();
            let row = |r: Int8RowVector| if r == Int8RowVector::Scales { x.scales.clone() } else { axsx.clone() };
            let e = Epilogue {
                row_scale: Some(x.scales.clone()),
                col_scale: Some(v.col_scale.clone()),
                correction: v.corr.as_ref().map(|(r, c)| (row(*r), c.clone())),
                correction2: v.corr2.as_ref().map(|c| (axsx.clone(), c.clone())),
                ..Default::default()
            };
            let acc = lowbit_core::int8::gemm_i32(&int8_operand(&x.codes(), p), m, k, &int8_operand(&w.codes(), q), n);
            let want_bits: Vec<u16> = e.apply(&acc, m, n, I8Out::F16).iter().map(|&b| b as u16).collect();
            let got = run_f16(&dev, &g, &x, int8).unwrap();
            check_bits(&name, &got, &want_bits, n);
            check_close(&name, &got, &x, &w);
            ran += 1;
        }
    }
    assert_eq!(ran, 5 * pairs.len());
}

/// The CPU epilogue of the plane mapping: `((f32(Y)·a_x)·a_w + (a_x·S_x)·b_w)`.
fn epilogue_ref(x: &BipolarMatrix, w: &BipolarMatrix, y: &Array2<i64>) -> Vec<u16> {
    let sx: Vec<i32> = x.values().rows().into_iter().map(|r| r.sum()).collect();
    let e = Epilogue {
        row_scale: Some(x.scales.clone()),
        row_scale_value: 1.0,
        col_scale: Some(w.scales.clone()),
        correction: w
            .offsets
            .as_ref()
            .map(|o| (x.scales.iter().zip(&sx).map(|(s, &v)| s * v as f32).collect(), o.clone())),
        correction2: None,
        bias: None,
        out_scale: 1.0,
        out_scales: None,
    };
    let n = w.n;
    (0..x.n * n).map(|i| f16::from_f32(e.value(y[[i / n, i % n]] as i32, i / n, i % n)).to_bits()).collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_f16_epilogue_both_mappings() {
    let Some(dev) = device_or_skip("gpu_bipolar_f16_epilogue_both_mappings") else { return };
    let (m, n, k) = (45, 200, 1024);
    for (p, q) in [(1, 1), (2, 2), (4, 2), (8, 2), (2, 8), (4, 4)] {
        for offsets in [false, true] {
            let w = rand_bipolar(n, k, q, offsets, (p * 10 + q) as u64);
            let x = rand_bipolar(m, k, p, false, (p * 10 + q) as u64 + 99);
            let g = BipolarGemm::new(&dev, &w, p).unwrap();
            let yint = bipolar_gemm_exact(&x, &w).unwrap();
            let want_bits = epilogue_ref(&x, &w, &yint);
            for mapping in [BipMapping::Planes, BipMapping::Int8] {
                let cfg = BipConfig { mapping: Some(mapping), ..Default::default() };
                let got = match run_f16(&dev, &g, &x, cfg) {
                    Ok(got) => got,
                    Err(CudaError::NoKernel { .. }) => continue,
                    Err(e) => panic!("{e}"),
                };
                let name = format!("{mapping:?} W{q}A{p} offsets {offsets}");
                if mapping == BipMapping::Planes {
                    check_bits(&name, &got, &want_bits, n);
                } else {
                    check_close(&name, &got, &x, &w);
                }
            }
        }
    }
}

/// The warp-specialized plane kernel (sm_90a, `p·q ≤ 8`, `q ≤ 4`): exact `Y_int` on odd shapes (less than one
/// tile; one activation row past a tile; K not a multiple of the 1024-bit stage or of 32), int32 output poisoned
/// first; the f16 epilogue with weight offsets bit for bit with the CPU epilogue, through the direct stores (odd
/// N = row pitch) and through the staged TMA stores (N a multiple of 8, edge tiles clipped), and without offsets
/// through the TMA stores (the epilogue variant without the rank-1 correction); forced on a pair
/// without an instance it is a typed `NoKernel`, with split-K an `InvalidArgument`. Elsewhere (no sm_90a) it
/// checks that the forced path is `NoKernel`.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_ws_planes_exact() {
    let Some(dev) = device_or_skip("gpu_bipolar_ws_planes_exact") else { return };
    let ws = BipConfig { mapping: Some(BipMapping::Planes), plane_path: Some(BipPlanePath::Ws), ..Default::default() };
    let mut ran = 0;
    for p in 1..=8u32 {
        for q in 1..=8u32 {
            let probe = BipolarGemm::new(&dev, &rand_bipolar(8, 64, q, false, 1), p).unwrap();
            let bx = probe.ws_tile(&dev).unwrap() as usize;
            if bx == 0 {
                let r = run_i32(&dev, &probe, &rand_bipolar(3, 64, p, false, 2), ws);
                assert!(matches!(r, Err(CudaError::NoKernel { .. })), "W{q}A{p}: forced ws without instance: {r:?}");
                continue;
            }
            let shapes = [
                (37, 133, 300),
                (bx + 1, 203, 1100),
                (2 * bx + 3, 131, 2049),
                (2 * bx + 5, 264, 1500),
                (3 * bx + 1, 136, 777),
            ];
            for (si, &(m, n, k)) in shapes.iter().enumerate() {
                let seed = (p * 7919 + q * 31) as u64 + si as u64;
                let f16_check = si == 1 || si >= 3;
                // the last shape without weight offsets: the TMA-store epilogue's variant without the correction
                let w = rand_bipolar(n, k, q, f16_check && si != 4, seed);
                let x = rand_bipolar(m, k, p, false, seed + 5);
                let g = BipolarGemm::new(&dev, &w, p).unwrap();
                let want = bipolar_gemm_exact(&x, &w).unwrap();
                let got = run_i32(&dev, &g, &x, ws).unwrap();
                check_exact(&format!("ws W{q}A{p} m={m} n={n} k={k}"), &got, &want);
                if f16_check {
                    // f16 epilogue with weight offsets (rank-1 correction; none for the last shape), poisoned
                    // output, bit for bit.
                    let got = run_f16(&dev, &g, &x, ws).unwrap();
                    check_bits(&format!("ws W{q}A{p} m={m} n={n} k={k}"), &got, &epilogue_ref(&x, &w, &want), n);
                }
                ran += 1;
            }
            let split = BipConfig { splits: Some(3), ..ws };
            assert!(matches!(probe.plan(&dev, 300, split), Err(CudaError::InvalidArgument { .. })));
        }
    }
    if dev.info().sm_name() == "sm_90" {
        assert!(ran >= 8 * 3, "only {ran} ws runs on an sm_90 device");
    }
}

/// The ws kernel's ping-pong consumers (W1A1's default on sm_90a, kernels/bipolar/NOTES.md ws v5) on a shape with
/// more than two 128 × 128 tiles per SM (17 × 17 tiles on a 132-SM H100), so every CTA runs tiles on both consumer
/// warpgroups: the ordered hand-over between them and the ring positions each one skips. `Y_int` exact (int32 output,
/// poisoned) against the popcount reference (`bipolar_gemm_exact` is too slow in a debug build at this size;
/// lowbit-core's tests check the two agree), then the f16 epilogue with weight offsets (rank-1 correction) through the
/// TMA stores (N a multiple of 8) bit for bit. K = 333: three 1024-bit stages, the last partial, so the 4-slot ring
/// wraps inside tiles. `LOWBIT_BIP_WS_PINGPONG=0` runs the same checks on the ws v3 kernel.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_ws_pingpong_both_warpgroups() {
    let Some(dev) = device_or_skip("gpu_bipolar_ws_pingpong_both_warpgroups") else { return };
    let ws = BipConfig { mapping: Some(BipMapping::Planes), plane_path: Some(BipPlanePath::Ws), ..Default::default() };
    let (m, n, k) = (2049usize, 2056usize, 333usize);
    let w = rand_bipolar(n, k, 1, true, 91);
    let x = rand_bipolar(m, k, 1, false, 92);
    let g = BipolarGemm::new(&dev, &w, 1).unwrap();
    if g.ws_tile(&dev).unwrap() == 0 {
        eprintln!("SKIP gpu_bipolar_ws_pingpong_both_warpgroups: no ws instance on this device");
        return;
    }
    let want = bipolar_gemm_popcount(&x, &w).unwrap();
    let got = run_i32(&dev, &g, &x, ws).unwrap();
    check_exact("ws ping-pong W1A1", &got, &want);
    check_bits("ws ping-pong W1A1", &run_f16(&dev, &g, &x, ws).unwrap(), &epilogue_ref(&x, &w, &want), n);
}

/// ws v7: the ping-pong consumers of the multi-plane instances that take them by default (W2A4, W2A2, W2A1, W1A2;
/// kernels/bipolar/ws_planes.cu `pingpong_default`), on a shape with more ping-pong tiles than SMs (M = 2049,
/// N = 1032: 289–1105 tiles of 64 × 32 … 128 × 64), so both consumer warpgroups of every CTA run and take turns;
/// K = 1333: 11 stages, the ring wraps inside tiles, the last stage partial. int32 exact against the popcount
/// reference, then the f16 epilogue with weight offsets through the TMA stores (N a multiple of 8) bit for bit.
/// `LOWBIT_BIP_WS_PINGPONG=0` runs the same checks on the cooperative kernel.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_ws_pingpong_multi_plane() {
    let Some(dev) = device_or_skip("gpu_bipolar_ws_pingpong_multi_plane") else { return };
    let ws = BipConfig { mapping: Some(BipMapping::Planes), plane_path: Some(BipPlanePath::Ws), ..Default::default() };
    let (m, n, k) = (2049usize, 1032usize, 1333usize);
    // (activation bits p, weight bits q)
    for (p, q) in [(4u32, 2u32), (2, 2), (1, 2), (2, 1)] {
        let w = rand_bipolar(n, k, q, true, 93 + u64::from(p * 10 + q));
        let x = rand_bipolar(m, k, p, false, 94 + u64::from(p * 10 + q));
        let g = BipolarGemm::new(&dev, &w, p).unwrap();
        if g.ws_tile(&dev).unwrap() == 0 {
            eprintln!("SKIP gpu_bipolar_ws_pingpong_multi_plane W{q}A{p}: no ws instance on this device");
            continue;
        }
        let want = bipolar_gemm_popcount(&x, &w).unwrap();
        let got = run_i32(&dev, &g, &x, ws).unwrap();
        let name = format!("ws ping-pong W{q}A{p}");
        check_exact(&name, &got, &want);
        check_bits(&name, &run_f16(&dev, &g, &x, ws).unwrap(), &epilogue_ref(&x, &w, &want), n);
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_act_quant_matches_cpu() {
    let Some(dev) = device_or_skip("gpu_bipolar_act_quant_matches_cpu") else { return };
    let mut rng = StdRng::seed_from_u64(5);
    for p in 1..=8u32 {
        for &(m, k) in &[(3usize, 300usize), (17, 4129)] {
            let xf: Vec<f16> = (0..m * k).map(|_| f16::from_f32(rng.random_range(-3.0f32..3.0))).collect();
            let mut xh = xf.clone();
            xh[..k].iter_mut().for_each(|v| *v = f16::ZERO); // an all-zero row
            let x32 = Array2::from_shape_fn((m, k), |(r, c)| xh[r * k + c].to_f32());
            let want = BipolarMatrix::quantize(x32.view(), p, Granularity::PerChannel).unwrap();
            let w = rand_bipolar(8, k, 1, false, 3);
            let g = BipolarGemm::new(&dev, &w, p).unwrap();
            let mut acts = g.activations(&dev, m).unwrap();
            let xd = upload(&dev, &xh.iter().map(|v| v.to_bits()).collect::<Vec<u16>>()).unwrap();
            g.quantize_activations(&dev, &xd, OutDtype::F16, &mut acts).unwrap();
            let scales: Vec<f32> = dev.stream().clone_dtoh(acts.scales()).unwrap();
            assert_eq!(scales, want.scales, "p={p} m={m} k={k} scales");
            let planes: Vec<u32> = dev.stream().clone_dtoh(acts.planes()).unwrap();
            let (wpr, ld) = (k.div_ceil(32), plane_ld(k));
            for (i, row) in want.planes.chunks_exact(wpr).enumerate() {
                assert_eq!(&planes[i * ld..i * ld + wpr], row, "p={p} m={m} k={k} plane row {i}");
                assert!(planes[i * ld + wpr..(i + 1) * ld].iter().all(|&v| v == 0), "padding words");
            }
            let sums: Vec<i32> = dev.stream().clone_dtoh(acts.row_sums()).unwrap();
            let want_sums: Vec<i32> = want.values().rows().into_iter().map(|r| r.sum()).collect();
            assert_eq!(sums, want_sums, "p={p} row sums");
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_bad_inputs_are_typed_errors() {
    let Some(dev) = device_or_skip("gpu_bipolar_bad_inputs_are_typed_errors") else { return };
    let w = rand_bipolar(64, 256, 2, false, 1);
    // activation bits out of range
    assert!(matches!(BipolarGemm::new(&dev, &w, 0), Err(CudaError::InvalidArgument { .. })));
    assert!(matches!(BipolarGemm::new(&dev, &w, 9), Err(CudaError::InvalidArgument { .. })));
    // per-group weight scales
    let codes = vec![1u8; 64 * 256];
    let wg = BipolarMatrix::from_codes(64, 256, 2, Granularity::Group(128), &codes, vec![1.0; 128], None).unwrap();
    assert!(matches!(BipolarGemm::new(&dev, &wg, 2), Err(CudaError::NoKernel { .. })));
    // exact int32 bound: K (2^8 - 1)^2 >= 2^31
    let big = rand_bipolar(1, 33280, 8, false, 2);
    assert!(matches!(BipolarGemm::new(&dev, &big, 8), Err(CudaError::Shape { .. })));
    let g = BipolarGemm::new(&dev, &w, 2).unwrap();
    // m = 0, zero config fields
    assert!(matches!(g.plan(&dev, 0, BipConfig::default()), Err(CudaError::Shape { .. })));
    assert!(matches!(
        g.plan(&dev, 4, BipConfig { splits: Some(0), ..Default::default() }),
        Err(CudaError::InvalidArgument { .. })
    ));
    // a tile with no instance
    assert!(matches!(
        g.plan(&dev, 4, BipConfig { mapping: Some(BipMapping::Planes), bx: Some(24), ..Default::default() }),
        Err(CudaError::NoKernel { .. })
    ));
    // activations of the wrong width / bits
    let x_bad = rand_bipolar(4, 128, 2, false, 3);
    assert!(matches!(g.upload_activations(&dev, &x_bad), Err(CudaError::InvalidArgument { .. })));
    let x = rand_bipolar(4, 256, 2, false, 4);
    let acts = g.upload_activations(&dev, &x).unwrap();
    let plan = g.plan(&dev, 4, BipConfig::default()).unwrap();
    let mut ws = g.workspace(&dev, &plan).unwrap();
    // y too short, wrong element size, plan for other m
    let mut short: CudaSlice<u16> = upload(&dev, &[0u16; 10]).unwrap();
    assert!(matches!(
        g.run(&dev, &acts, I8Out::F16, &mut short, &plan, ws.as_mut()),
        Err(CudaError::BufferSize { .. })
    ));
    let mut y32: CudaSlice<i32> = upload(&dev, &vec![0i32; 4 * 64]).unwrap();
    assert!(matches!(
        g.run(&dev, &acts, I8Out::F16, &mut y32, &plan, ws.as_mut()),
        Err(CudaError::InvalidArgument { .. })
    ));
    let plan5 = g.plan(&dev, 5, BipConfig::default()).unwrap();
    assert!(matches!(g.run(&dev, &acts, I8Out::I32, &mut y32, &plan5, None), Err(CudaError::InvalidArgument { .. })));
    // W8A8: the int8 mapping exists (two rank-1 epilogue terms), the plane mapping has no instance for p·q = 64
    let w8 = rand_bipolar(16, 256, 8, false, 5);
    let g8 = BipolarGemm::new(&dev, &w8, 8).unwrap();
    g8.int8_mapping().unwrap();
    g8.plan(&dev, 4, BipConfig { mapping: Some(BipMapping::Int8), ..Default::default() }).unwrap();
    assert!(matches!(
        g8.plan(&dev, 4, BipConfig { mapping: Some(BipMapping::Planes), ..Default::default() }),
        Err(CudaError::NoKernel { .. })
    ));
    // K not a multiple of 16: no int8 mapping, and W8A8 has no other
    let w8k = rand_bipolar(16, 264, 8, false, 6);
    let g8k = BipolarGemm::new(&dev, &w8k, 8).unwrap();
    assert!(g8k.int8_mapping().is_err());
    assert!(matches!(g8k.plan(&dev, 4, BipConfig::default()), Err(CudaError::NoKernel { .. })));
}

/// `run` on the device's stream vs `run_raw` of `g2` on `other` into a second poisoned buffer; returns both outputs.
#[allow(clippy::too_many_arguments)]
fn run_both<Y: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Copy>(
    dev: &Device,
    other: &std::sync::Arc<cudarc::driver::CudaStream>,
    g: &BipolarGemm,
    g2: &BipolarGemm,
    acts: &lowbit_cuda::BipolarActivations,
    out: I8Out,
    plan: &lowbit_cuda::BipPlan,
    poison: Y,
) -> (Vec<Y>, Vec<Y>) {
    use cudarc::driver::DevicePtrMut;
    let (n, _) = g.shape();
    let m = plan.m;
    let mut want: CudaSlice<Y> = upload(dev, &vec![poison; m * n]).unwrap();
    let mut ws = g.workspace(dev, plan).unwrap();
    g.run(dev, acts, out, &mut want, plan, ws.as_mut()).unwrap();
    let want: Vec<Y> = dev.stream().clone_dtoh(&want).unwrap();
    let mut got: CudaSlice<Y> = upload(dev, &vec![poison; m * n]).unwrap();
    let mut ws2 = g.workspace(dev, plan).unwrap();
    dev.synchronize().unwrap();
    let gp = got.device_ptr_mut(other).0;
    let (wsp, wsb) = match ws2.as_mut() {
        Some(b) => (b.device_ptr_mut(other).0.next_multiple_of(256), plan.workspace_bytes),
        None => (0, 0),
    };
    // SAFETY: got holds m·N elements of out's size, the workspace plan.workspace_bytes after alignment (256 bytes of
    // slack), all on dev's context; `other` is synchronized before they are read or freed.
    unsafe { g2.run_raw(dev, other, acts, out, gp, plan, wsp, wsb) }.unwrap();
    other.synchronize().unwrap();
    // SAFETY: a null output is rejected before any launch.
    let e = unsafe { g2.run_raw(dev, other, acts, out, 0, plan, wsp, wsb) };
    assert!(matches!(e, Err(CudaError::InvalidArgument { .. })), "null y: {e:?}");
    let got: Vec<Y> = other.clone_dtoh(&got).unwrap();
    (got, want)
}

/// `run_raw` on another stream (the bench harness's path) and a device `clone` of the weight give `run`'s output
/// bit for bit: both mappings, f16 and int32 outputs, weight offsets, 8-bit sides (the int8 mapping's correction
/// vectors), split-K with a workspace, poisoned outputs; a null output is a typed error.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_run_raw_matches_run() {
    let Some(dev) = device_or_skip("gpu_bipolar_run_raw_matches_run") else { return };
    let (m, n, k) = (37, 133, 1040);
    let other = dev.context().new_stream().unwrap();
    for (p, q, offsets) in [(1, 1, false), (2, 2, true), (8, 2, false), (2, 8, true), (4, 4, false), (8, 8, true)] {
        let w = rand_bipolar(n, k, q, offsets, (p * 10 + q) as u64 + 7);
        let x = rand_bipolar(m, k, p, false, (p * 10 + q) as u64 + 70);
        let g = BipolarGemm::new(&dev, &w, p).unwrap();
        let g2 = g.clone();
        dev.synchronize().unwrap();
        let acts = g.upload_activations(&dev, &x).unwrap();
        let mut ran = 0;
        for (mapping, splits) in [(BipMapping::Planes, None), (BipMapping::Planes, Some(2)), (BipMapping::Int8, None)] {
            let cfg = BipConfig { mapping: Some(mapping), splits, ..Default::default() };
            let plan = match g.plan(&dev, m, cfg) {
                Ok(p) => p,
                Err(CudaError::NoKernel { .. }) => continue,
                Err(e) => panic!("{e}"),
            };
            let what = format!("run_raw W{q}A{p} offsets {offsets} {mapping:?} splits {splits:?}");
            let (got, want) = run_both(&dev, &other, &g, &g2, &acts, I8Out::F16, &plan, 0x7FFFu16);
            assert!(want.iter().all(|&v| v != 0x7FFF), "{what}: run left poison");
            assert_eq!(got, want, "{what} f16");
            let (got, want) = run_both(&dev, &other, &g, &g2, &acts, I8Out::I32, &plan, POISON32);
            assert_eq!(got, want, "{what} i32");
            ran += 1;
        }
        assert!(ran > 0, "W{q}A{p}: no mapping ran");
    }
}

/// The int8 mapping at decode runs packed 2- / 4-bit weight codes on the int8 core's streaming kernel (q ≤ 4,
/// K % 32 == 0, M ≤ 16; int8 NOTES v10): exact `Y_int` for every p with q ∈ 1..=4 at M = 1, 5 and 16 on odd N
/// (with 8-bit activations the `S_w` column correction too), and the same accumulator as the 8-bit weight
/// operand at M = 17 (which runs the int8 values).
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gpu_bipolar_int8_packed_decode_exact() {
    let Some(dev) = device_or_skip("gpu_bipolar_int8_packed_decode_exact") else { return };
    let cfg = BipConfig { mapping: Some(BipMapping::Int8), ..Default::default() };
    for p in [1u32, 2, 3, 4, 7, 8] {
        for q in 1..=4u32 {
            for (si, &(m, n, k)) in
                [(1usize, 259usize, 2080usize), (5, 131, 544), (16, 300, 1056), (17, 129, 288)].iter().enumerate()
            {
                let seed = (p * 100 + q * 10) as u64 + si as u64;
                let w = rand_bipolar(n, k, q, false, seed);
                let x = rand_bipolar(m, k, p, false, seed + 3);
                let g = BipolarGemm::new(&dev, &w, p).unwrap();
                let got = run_i32(&dev, &g, &x, cfg).unwrap();
                check_exact(&format!("packed W{q}A{p} m={m} n={n} k={k}"), &got, &bipolar_gemm_exact(&x, &w).unwrap());
            }
        }
    }
}
