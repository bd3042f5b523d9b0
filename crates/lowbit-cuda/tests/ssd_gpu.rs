//! The Mamba2 SSD kernels (chunked prefill scan, decode step) on the GPU against lowbit-core's f64 plain
//! recurrence (`lowbit_core::ssd`), so the chunking itself is under test.
//!
//! Inputs: random int8 codes (−127..127) with realistic scales: per-channel x scales, dt codes through a
//! softplus with per-head bias (delta from ~1e-3 to ~2), A from −0.02 (long memory, state carried across many
//! chunks) to −8 (fast decay), per-group B/C scales, D skip. Lengths 1, 63, 64, 65, 255, 257, 600, 1100 cover
//! one partial chunk, exact chunk multiples and many chunks (the kernel's chunk is 64, or 32 for N > 128);
//! head dims 16, 33, 37, 64 (channel blocks of 32 with a partial block), N 24 / 64 / 128 / 200 (every padded
//! state width and the scalar int8 load path), G in {1, 2, 3, H}.
//!
//! Tolerances (error model): the prefill rounds three operands to f16 (the masked S = C·Bᵀ·decay, the state
//! for C·h_prev, x·delta·decay for the state update; each relative 2^-11) and accumulates in fp32; y is f16.
//! So |y − ref| <= 4e-3·|ref| + 4e-3·rms(ref of that head), the final state the same against its rms. The
//! decode step is all fp32: state within 1e-5 relative (+1e-6·rms), y within f16 rounding (1e-3·|ref| +
//! 1e-4·rms). Outputs are poisoned first (f16 0x7FFF NaN, f32 NaN): an element the kernel skips fails.
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they print
//! `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::device_or_skip;
use cudarc::driver::CudaSlice;
use half::f16;
use lowbit_core::ssd::{SsdParams, SsdShape, ssd_scan_reference, ssd_state_update_reference};
use lowbit_cuda::ssd::{
    SsdDeviceParams, SsdInputs, SsdVariant, ssd_chunk_scan, ssd_chunk_scan_variant, ssd_state_update,
};
use lowbit_cuda::{CudaError, Device, download, upload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const POISON16: u16 = 0x7FFF;

struct Case {
    s: SsdShape,
    x_scale: Vec<f32>,
    dt_scale: f32,
    dt_bias: Option<Vec<f32>>,
    a: Vec<f32>,
    b_scale: Vec<f32>,
    c_scale: Vec<f32>,
    d: Option<Vec<f32>>,
    dt_limit: (f32, f32),
    x: Vec<i8>,
    dt: Vec<i8>,
    bm: Vec<i8>,
    cm: Vec<i8>,
    h0: Option<Vec<f32>>,
}

fn codes(rng: &mut StdRng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.random_range(-127i32..=127) as i8).collect()
}

/// `tokens` = batch·len for the prefill, batch for the decode step.
fn case(s: SsdShape, tokens: usize, seed: u64, with_state: bool) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let (hp, gn) = (s.nheads * s.headdim, s.ngroups * s.dstate);
    Case {
        x_scale: (0..hp).map(|_| rng.random_range(0.002f32..0.03)).collect(),
        dt_scale: 0.02,
        dt_bias: Some((0..s.nheads).map(|_| rng.random_range(-4.5f32..0.0)).collect()),
        // log-uniform |A| in [0.02, 8]
        a: (0..s.nheads).map(|_| -(0.02f32 * 400f32.powf(rng.random_range(0.0f32..1.0)))).collect(),
        b_scale: (0..s.ngroups).map(|_| rng.random_range(0.004f32..0.02)).collect(),
        c_scale: (0..s.ngroups).map(|_| rng.random_range(0.004f32..0.02)).collect(),
        d: Some((0..s.nheads).map(|_| rng.random_range(0.5f32..1.5)).collect()),
        dt_limit: (0.0, f32::INFINITY),
        x: codes(&mut rng, tokens * hp),
        dt: codes(&mut rng, tokens * s.nheads),
        bm: codes(&mut rng, tokens * gn),
        cm: codes(&mut rng, tokens * gn),
        h0: with_state.then(|| (0..s.state_len()).map(|_| rng.random_range(-2.0f32..2.0)).collect()),
        s,
    }
}

impl Case {
    fn params(&self) -> SsdParams<'_> {
        SsdParams {
            x_scale: &self.x_scale,
            dt_scale: self.dt_scale,
            dt_bias: self.dt_bias.as_deref(),
            a: &self.a,
            b_scale: &self.b_scale,
            c_scale: &self.c_scale,
            d: self.d.as_deref(),
            dt_limit: self.dt_limit,
        }
    }
}

/// The case's parameters and activations on the device.
struct OnDevice {
    x_scale: CudaSlice<f32>,
    dt_bias: Option<CudaSlice<f32>>,
    a: CudaSlice<f32>,
    b_scale: CudaSlice<f32>,
    c_scale: CudaSlice<f32>,
    d: Option<CudaSlice<f32>>,
    x: CudaSlice<i8>,
    dt: CudaSlice<i8>,
    bm: CudaSlice<i8>,
    cm: CudaSlice<i8>,
}

impl OnDevice {
    fn new(dev: &Device, c: &Case) -> Self {
        let up = |v: &Vec<f32>| upload(dev, v).unwrap();
        OnDevice {
            x_scale: up(&c.x_scale),
            dt_bias: c.dt_bias.as_ref().map(up),
            a: up(&c.a),
            b_scale: up(&c.b_scale),
            c_scale: up(&c.c_scale),
            d: c.d.as_ref().map(up),
            x: upload(dev, &c.x).unwrap(),
            dt: upload(dev, &c.dt).unwrap(),
            bm: upload(dev, &c.bm).unwrap(),
            cm: upload(dev, &c.cm).unwrap(),
        }
    }

    fn params<'a>(&'a self, c: &Case) -> SsdDeviceParams<'a> {
        SsdDeviceParams {
            x_scale: &self.x_scale,
            dt_scale: c.dt_scale,
            dt_bias: self.dt_bias.as_ref(),
            a: &self.a,
            b_scale: &self.b_scale,
            c_scale: &self.c_scale,
            d: self.d.as_ref(),
            dt_limit: c.dt_limit,
        }
    }

    fn inputs(&self) -> SsdInputs<'_> {
        SsdInputs { x: &self.x, dt: &self.dt, b: &self.bm, c: &self.cm }
    }
}

/// Checks |got − want| <= rtol·|want| + stol·rms(want over the same head) element by element (`head_of(i)` maps
/// a flat index to its head) and prints how close to the tolerance the worst element came.
fn compare(
    what: &str,
    got: &[f64],
    want: &[f64],
    nheads: usize,
    head_of: impl Fn(usize) -> usize,
    rtol: f64,
    stol: f64,
) {
    assert_eq!(got.len(), want.len());
    let mut ss = vec![0.0f64; nheads];
    let mut cnt = vec![0usize; nheads];
    for (i, w) in want.iter().enumerate() {
        ss[head_of(i)] += w * w;
        cnt[head_of(i)] += 1;
    }
    let rms: Vec<f64> = ss.iter().zip(&cnt).map(|(s, &c)| (s / c.max(1) as f64).sqrt()).collect();
    let mut worst = (0.0f64, 0usize);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rtol * w.abs() + stol * rms[head_of(i)] + 1e-30;
        let err = (g - w).abs();
        assert!(err <= tol, "{what}[{i}] (head {}): got {g}, want {w}, |err| {err:.3e} > tol {tol:.3e}", head_of(i));
        if err / tol > worst.0 {
            worst = (err / tol, i);
        }
    }
    let total: f64 = rms.iter().sum();
    assert!(total > 0.0, "{what}: all-zero reference (degenerate test data)");
    println!("  {what}: worst error at {:.2} of the tolerance (index {})", worst.0, worst.1);
}

/// Runs the prefill through each of `variants` (fresh poisoned outputs each time) against one reference.
fn run_scan(dev: &Device, c: &Case, variants: &[SsdVariant]) {
    let s = c.s;
    let (want_y, want_h) = ssd_scan_reference(&s, &c.params(), &c.x, &c.dt, &c.bm, &c.cm, c.h0.as_deref()).unwrap();
    let on = OnDevice::new(dev, c);
    let h0 = c.h0.as_ref().map(|h| upload(dev, h).unwrap());
    let ny = s.batch * s.len * s.nheads * s.headdim;
    for &variant in variants {
        println!(
            "scan {s:?} {variant:?} h0={} D={} dt_bias={} dt_limit={:?}",
            c.h0.is_some(),
            c.d.is_some(),
            c.dt_bias.is_some(),
            c.dt_limit
        );
        let mut y = upload(dev, &vec![POISON16; ny]).unwrap();
        let mut hf = upload(dev, &vec![f32::NAN; s.state_len()]).unwrap();
        let (p, i) = (on.params(c), on.inputs());
        ssd_chunk_scan_variant(dev, &s, &p, &i, h0.as_ref(), &mut y, Some(&mut hf), variant).unwrap();
        let y: Vec<f64> = download(&y).unwrap().into_iter().map(|b| f64::from(f16::from_bits(b))).collect();
        let hf: Vec<f64> = download(&hf).unwrap().into_iter().map(f64::from).collect();
        let (h, p, n) = (s.nheads, s.headdim, s.dstate);
        compare("y", &y, &want_y, h, |i| (i / p) % h, 4e-3, 4e-3);
        compare("final_state", &hf, &want_h, h, |i| (i / (p * n)) % h, 4e-3, 4e-3);
    }
}

fn shape(batch: usize, len: usize, nheads: usize, headdim: usize, ngroups: usize, dstate: usize) -> SsdShape {
    SsdShape { batch, len, nheads, headdim, ngroups, dstate }
}

#[test]
#[ignore = "needs a GPU; scripts/gpu-run runs it"]
fn ssd_chunk_scan_matches_the_recurrence() {
    let Some(dev) = device_or_skip("ssd_chunk_scan_matches_the_recurrence") else { return };
    // (shape, initial state)
    let cases = [
        (shape(1, 1, 2, 64, 1, 128), false),
        (shape(1, 64, 2, 64, 1, 128), true),
        (shape(2, 255, 3, 37, 1, 128), true),
        (shape(1, 257, 4, 64, 2, 64), false),
        (shape(1, 600, 6, 16, 3, 24), true),
        (shape(1, 130, 2, 33, 2, 200), true),
        (shape(3, 65, 8, 64, 8, 128), true),
        (shape(1, 1100, 4, 64, 1, 128), false),
        (shape(2, 63, 5, 33, 5, 64), false),
    ];
    for (i, (s, with_state)) in cases.into_iter().enumerate() {
        let c = case(s, s.batch * s.len, 100 + i as u64, with_state);
        // Auto takes the cp.async variant where N and P are multiples of 16; Direct runs on every layout.
        if s.dstate % 16 == 0 && s.headdim % 16 == 0 {
            run_scan(&dev, &c, &[SsdVariant::Auto, SsdVariant::Direct, SsdVariant::Async]);
        } else {
            run_scan(&dev, &c, &[SsdVariant::Auto, SsdVariant::Direct]);
        }
    }
}

#[test]
#[ignore = "needs a GPU; scripts/gpu-run runs it"]
fn ssd_chunk_scan_optional_parameters_and_dt_limit() {
    let Some(dev) = device_or_skip("ssd_chunk_scan_optional_parameters_and_dt_limit") else { return };
    let s = shape(2, 200, 4, 32, 2, 128);
    let mut c = case(s, s.batch * s.len, 7, true);
    c.d = None;
    c.dt_bias = None;
    run_scan(&dev, &c, &[SsdVariant::Auto]);
    let mut c = case(s, s.batch * s.len, 8, false);
    c.dt_limit = (0.01, 0.2);
    run_scan(&dev, &c, &[SsdVariant::Auto]);
    // Without final_state the kernel must not need it, and y is unchanged.
    let on = OnDevice::new(&dev, &c);
    let mut y = upload(&dev, &vec![POISON16; s.batch * s.len * s.nheads * s.headdim]).unwrap();
    ssd_chunk_scan(&dev, &s, &on.params(&c), &on.inputs(), None, &mut y, None).unwrap();
    let mut y2 = upload(&dev, &vec![POISON16; s.batch * s.len * s.nheads * s.headdim]).unwrap();
    let mut hf = upload(&dev, &vec![0f32; s.state_len()]).unwrap();
    ssd_chunk_scan(&dev, &s, &on.params(&c), &on.inputs(), None, &mut y2, Some(&mut hf)).unwrap();
    assert_eq!(download(&y).unwrap(), download(&y2).unwrap());
}

#[test]
#[ignore = "needs a GPU; scripts/gpu-run runs it"]
fn ssd_chunk_scan_rejects_bad_buffers() {
    let Some(dev) = device_or_skip("ssd_chunk_scan_rejects_bad_buffers") else { return };
    let s = shape(1, 10, 2, 8, 1, 16);
    let c = case(s, 10, 9, false);
    let on = OnDevice::new(&dev, &c);
    let mut y = upload(&dev, &vec![0u16; 10 * 16 - 1]).unwrap();
    let e = ssd_chunk_scan(&dev, &s, &on.params(&c), &on.inputs(), None, &mut y, None).unwrap_err();
    assert!(matches!(e, CudaError::BufferSize { what: "SSD y", .. }), "{e}");
    let mut y = upload(&dev, &vec![0u16; 10 * 16]).unwrap();
    let e = ssd_chunk_scan_variant(&dev, &s, &on.params(&c), &on.inputs(), None, &mut y, None, SsdVariant::Async)
        .unwrap_err();
    assert!(matches!(e, CudaError::NoKernel { .. }), "{e}");
    let bad = shape(1, 10, 3, 8, 2, 16);
    let e = ssd_chunk_scan(&dev, &bad, &on.params(&c), &on.inputs(), None, &mut y, None).unwrap_err();
    assert!(matches!(e, CudaError::Shape { .. }), "{e}");
}

#[test]
#[ignore = "needs a GPU; scripts/gpu-run runs it"]
fn ssd_state_update_matches_the_recurrence() {
    let Some(dev) = device_or_skip("ssd_state_update_matches_the_recurrence") else { return };
    let cases = [
        shape(1, 1, 80, 64, 1, 128), // Mamba2-2.7B decode
        shape(3, 1, 8, 64, 8, 128),
        shape(2, 1, 6, 37, 3, 16),
        shape(1, 1, 4, 33, 2, 130), // N % 4 != 0: scalar path
        shape(2, 1, 3, 5, 1, 200),  // N > 128: two passes per lane
    ];
    for (i, s) in cases.into_iter().enumerate() {
        println!("update {s:?}");
        let steps = 3;
        let cs: Vec<Case> = (0..steps).map(|k| case(s, s.batch, 200 + 10 * i as u64 + k, k == 0)).collect();
        let mut want_state: Vec<f64> = cs[0].h0.as_ref().unwrap().iter().map(|&v| f64::from(v)).collect();
        let mut state = upload(&dev, cs[0].h0.as_ref().unwrap()).unwrap();
        // The parameters of step 0 are used throughout (only the activations change per token).
        let p0 = &cs[0];
        for (k, ck) in cs.iter().enumerate() {
            let c = Case {
                s,
                x_scale: p0.x_scale.clone(),
                dt_scale: p0.dt_scale,
                dt_bias: p0.dt_bias.clone(),
                a: p0.a.clone(),
                b_scale: p0.b_scale.clone(),
                c_scale: p0.c_scale.clone(),
                d: p0.d.clone(),
                dt_limit: p0.dt_limit,
                x: ck.x.clone(),
                dt: ck.dt.clone(),
                bm: ck.bm.clone(),
                cm: ck.cm.clone(),
                h0: None,
            };
            let want_y =
                ssd_state_update_reference(&s, &c.params(), &mut want_state, &c.x, &c.dt, &c.bm, &c.cm).unwrap();
            let on = OnDevice::new(&dev, &c);
            let mut y = upload(&dev, &vec![POISON16; s.batch * s.nheads * s.headdim]).unwrap();
            ssd_state_update(&dev, &s, &on.params(&c), &on.inputs(), &mut state, &mut y).unwrap();
            let y: Vec<f64> = download(&y).unwrap().into_iter().map(|b| f64::from(f16::from_bits(b))).collect();
            let got_state: Vec<f64> = download(&state).unwrap().into_iter().map(f64::from).collect();
            let (h, p, n) = (s.nheads, s.headdim, s.dstate);
            compare(&format!("step {k} y"), &y, &want_y, h, |i| (i / p) % h, 1e-3, 1e-4);
            compare(&format!("step {k} state"), &got_state, &want_state, h, |i| (i / (p * n)) % h, 1e-5, 1e-6);
        }
    }
}

/// Times the prefill at Mamba2-2.7B's shape (H=80, P=64, N=128, G=1) and the decode step; prints only.
#[test]
#[ignore = "needs a GPU; scripts/gpu-run runs it"]
fn ssd_timing_mamba2_2_7b() {
    let Some(dev) = device_or_skip("ssd_timing_mamba2_2_7b") else { return };
    for (batch, len) in [(1usize, 2048usize), (1, 4096), (8, 1024)] {
        let s = shape(batch, len, 80, 64, 1, 128);
        let c = case(s, batch * len, 1, false);
        let on = OnDevice::new(&dev, &c);
        let mut y = upload(&dev, &vec![0u16; batch * len * 80 * 64]).unwrap();
        let mut hf = upload(&dev, &vec![0f32; s.state_len()]).unwrap();
        for variant in [SsdVariant::Direct, SsdVariant::Async] {
            let mut run = || {
                let (p, i) = (on.params(&c), on.inputs());
                ssd_chunk_scan_variant(&dev, &s, &p, &i, None, &mut y, Some(&mut hf), variant).unwrap()
            };
            run();
            dev.synchronize().unwrap();
            let iters = 20;
            let t = std::time::Instant::now();
            for _ in 0..iters {
                run();
            }
            dev.synchronize().unwrap();
            let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
            let bytes = (batch * len * 80 * 64) as f64 * 3.0; // int8 x in, f16 y out (B, C, dt are small)
            println!(
                "ssd_chunk_scan {variant:?} B={batch} L={len} H=80 P=64 N=128: {us:.1} us ({:.0} GB/s of x+y)",
                bytes / us / 1e3
            );
        }
    }
    let s = shape(1, 1, 80, 64, 1, 128);
    let c = case(s, 1, 2, true);
    let on = OnDevice::new(&dev, &c);
    let mut state = upload(&dev, c.h0.as_ref().unwrap()).unwrap();
    let mut y = upload(&dev, &vec![0u16; 80 * 64]).unwrap();
    let iters = 200;
    ssd_state_update(&dev, &s, &on.params(&c), &on.inputs(), &mut state, &mut y).unwrap();
    dev.synchronize().unwrap();
    let t = std::time::Instant::now();
    for _ in 0..iters {
        ssd_state_update(&dev, &s, &on.params(&c), &on.inputs(), &mut state, &mut y).unwrap();
    }
    dev.synchronize().unwrap();
    let us = t.elapsed().as_secs_f64() * 1e6 / iters as f64;
    let bytes = (s.state_len() * 8) as f64;
    println!(
        "ssd_state_update B=1 H=80 P=64 N=128: {us:.2} us ({:.0} GB/s of state read+write; includes launch overhead)",
        bytes / us / 1e3
    );
}
