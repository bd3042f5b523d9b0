//! The SSM kernels of `kernels/ssm` (int8 conv1d prefill and decode step, Mamba1 selective scan and its decode
//! step, gated RMSNorm → FWHT → int8) on the GPU against lowbit-core's f64 CPU references (`lowbit_core::ssm`).
//!
//! Tolerance model:
//! - int8 outputs (conv1d, gated norm): the kernel computes in f32, the reference in f64, so a value on a rounding
//!   boundary may land one code apart: every code within ±1 and at most 1% of codes differing. The conv1d state is
//!   moved, not computed: exact.
//! - selective scan y (f16): |got − want| ≤ 2e-3 · |want| + 1e-3 · max|want| (f16 rounding is 4.9e-4 relative;
//!   the rest is the f32 recurrence and `exp2` over up to 300 steps). Final state (f32): |got − want| ≤ 1e-4 ·
//!   (|want| + max|want|).
//!
//! Outputs are poisoned first (int8 −128, which the kernels never write; f16 NaN 0x7FFF; f32 NaN), so an element a
//! kernel skipped cannot match. Shapes are odd (channel counts not multiples of 4 or of the CTA width, lengths
//! not multiples of the time tiles, d_state below and at each padded size), and strided raw launches cover the
//! `ld` arguments the Python layer passes for slices.
//!
//! GPU tests are `#[ignore]`d: `scripts/gpu-run` runs them with `--include-ignored`; without a GPU they print
//! `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

mod common;

use common::device_or_skip;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use half::f16;
use lowbit_core::ssm::{self as cpu, Conv1dParams, GatedNormParams, ScanInputs, ScanOutput, ScanParams, ScanShape};
use lowbit_cuda::ssm::{
    Conv1dWeights, GatedNormConfig, RawConv1dWeights, ScanBuffers, ScanScalars, conv1d_int8, conv1d_int8_raw,
    conv1d_update_int8, gated_rmsnorm_quant, gated_rmsnorm_quant_raw, selective_scan_int8, selective_scan_int8_raw,
    selective_state_update_int8,
};
use lowbit_cuda::{CudaError, Device, upload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const POISON_I8: i8 = i8::MIN;
const POISON_F16: u16 = 0x7FFF;

fn codes(n: usize, seed: u64) -> Vec<i8> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-127i32..=127) as i8).collect()
}

fn floats(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

fn dl<T: cudarc::driver::DeviceRepr>(dev: &Device, s: &CudaSlice<T>) -> Vec<T> {
    dev.stream().clone_dtoh(s).unwrap()
}

/// Every code within ±1 of the reference and at most 1% (at least one) of them different.
fn check_codes(tag: &str, got: &[i8], want: &[i8]) {
    assert_eq!(got.len(), want.len(), "{tag}: length");
    let mut diff = 0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(*g != POISON_I8, "{tag}: element {i} not written");
        assert!((i32::from(*g) - i32::from(*w)).abs() <= 1, "{tag}: element {i}: {g} vs {w}");
        diff += usize::from(g != w);
    }
    assert!(diff * 100 <= got.len().max(100), "{tag}: {diff} of {} codes differ", got.len());
}

fn check_y(tag: &str, got: &[u16], want: &[f32]) {
    let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max > 0.0, "{tag}: reference is all zero (test cannot fail)");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = f16::from_bits(*g).to_f32();
        assert!((g - w).abs() <= 2e-3 * w.abs() + 1e-3 * max, "{tag}: y[{i}] = {g}, want {w} (max {max})");
    }
}

fn check_state(tag: &str, got: &[f32], want: &[f32]) {
    let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * (w.abs() + max), "{tag}: state[{i}] = {g}, want {w}");
    }
}

struct ConvCase {
    xs: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    os: Vec<f32>,
}

impl ConvCase {
    fn new(channels: usize, width: usize, seed: u64) -> Self {
        Self {
            xs: floats(channels, 0.01, 0.03, seed),
            w: floats(channels * width, -1.0, 1.0, seed + 1),
            bias: floats(channels, -0.5, 0.5, seed + 2),
            os: floats(channels, 0.004, 0.012, seed + 3),
        }
    }
    fn cpu(&self, width: usize, bias: bool, silu: bool) -> Conv1dParams<'_> {
        Conv1dParams {
            x_scale: &self.xs,
            weight: &self.w,
            width,
            bias: bias.then_some(&self.bias[..]),
            out_scale: &self.os,
            silu,
        }
    }
}

struct ConvDev {
    xs: CudaSlice<f32>,
    w: CudaSlice<f32>,
    bias: CudaSlice<f32>,
    os: CudaSlice<f32>,
}

impl ConvDev {
    fn new(dev: &Device, c: &ConvCase) -> Self {
        Self {
            xs: upload(dev, &c.xs).unwrap(),
            w: upload(dev, &c.w).unwrap(),
            bias: upload(dev, &c.bias).unwrap(),
            os: upload(dev, &c.os).unwrap(),
        }
    }
    fn weights(&self, width: usize, bias: bool, silu: bool) -> Conv1dWeights<'_> {
        Conv1dWeights {
            x_scale: &self.xs,
            weight: &self.w,
            width,
            bias: bias.then_some(&self.bias),
            out_scale: &self.os,
            silu,
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn conv1d_prefill_matches_the_cpu() {
    let Some(dev) = device_or_skip("conv1d_prefill_matches_the_cpu") else { return };
    // (batch, len, channels, width): char4 path (C % 4 == 0) and scalar path, lengths around the 64-step tile.
    let shapes = [
        (1usize, 1usize, 4usize, 4usize),
        (2, 37, 130, 4),
        (3, 65, 256, 3),
        (1, 200, 5, 2),
        (2, 129, 1000, 1),
        (4, 7, 8, 4),
        (1, 64, 5124, 4),
    ];
    for (i, &(batch, len, ch, width)) in shapes.iter().enumerate() {
        let case = ConvCase::new(ch, width, 100 + i as u64);
        let d = ConvDev::new(&dev, &case);
        let xv = codes(batch * len * ch, 200 + i as u64);
        let x = upload(&dev, &xv).unwrap();
        for (bias, silu) in [(true, true), (false, false)] {
            let want = cpu::conv1d_int8(&xv, batch, len, ch, &case.cpu(width, bias, silu)).unwrap();
            let mut y = upload(&dev, &vec![POISON_I8; xv.len()]).unwrap();
            conv1d_int8(&dev, &x, batch, len, ch, &d.weights(width, bias, silu), &mut y).unwrap();
            let tag = format!("conv1d B={batch} L={len} C={ch} W={width} bias={bias} silu={silu}");
            check_codes(&tag, &dl(&dev, &y), &want);
        }
    }
}

/// Row strides (slices of a wider projection output) through the raw launcher: x with ldx = C + 12, y with
/// ldy = C + 4; the gaps of y must stay untouched.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn conv1d_strided_rows_match_the_cpu() {
    let Some(dev) = device_or_skip("conv1d_strided_rows_match_the_cpu") else { return };
    for (batch, len, ch, width) in [(2usize, 70usize, 96usize, 4usize), (3, 9, 37, 3)] {
        let (ldx, ldy) = (ch + 12, ch + 4);
        let case = ConvCase::new(ch, width, 7);
        let d = ConvDev::new(&dev, &case);
        let wide = codes(batch * len * ldx, 8);
        let dense: Vec<i8> = wide.chunks(ldx).flat_map(|r| r[..ch].to_vec()).collect();
        let want = cpu::conv1d_int8(&dense, batch, len, ch, &case.cpu(width, true, true)).unwrap();
        let x = upload(&dev, &wide).unwrap();
        let mut y = upload(&dev, &vec![POISON_I8; batch * len * ldy]).unwrap();
        let stream = dev.stream();
        let (xp, _gx) = x.device_ptr(stream);
        let raw = RawConv1dWeights {
            x_scale: d.xs.device_ptr(stream).0,
            weight: d.w.device_ptr(stream).0,
            width,
            bias: d.bias.device_ptr(stream).0,
            out_scale: d.os.device_ptr(stream).0,
            silu: true,
        };
        {
            let (yp, _gy) = y.device_ptr_mut(stream);
            // SAFETY: buffers of the stated sizes on dev, launched on its stream.
            unsafe { conv1d_int8_raw(&dev, xp, ldx, batch, len, ch, &raw, yp, ldy, stream.cu_stream().cast()) }
                .unwrap();
        }
        let got = dl(&dev, &y);
        let tag = format!("strided conv1d C={ch} ldx={ldx} ldy={ldy}");
        assert!(got.chunks(ldy).all(|r| r[ch..].iter().all(|&v| v == POISON_I8)), "{tag}: wrote into the row gap");
        let dense_y: Vec<i8> = got.chunks(ldy).flat_map(|r| r[..ch].to_vec()).collect();
        check_codes(&tag, &dense_y, &want);
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn conv1d_decode_steps_match_the_cpu() {
    let Some(dev) = device_or_skip("conv1d_decode_steps_match_the_cpu") else { return };
    for (i, &(batch, ch, width)) in [(1usize, 4usize, 4usize), (3, 131, 4), (2, 260, 2), (5, 37, 1)].iter().enumerate()
    {
        let case = ConvCase::new(ch, width, 300 + i as u64);
        let d = ConvDev::new(&dev, &case);
        let p = case.cpu(width, true, true);
        let mut state_cpu = codes(batch * ch * width, 400 + i as u64);
        let mut state = upload(&dev, &state_cpu).unwrap();
        for step in 0..3u64 {
            let xv = codes(batch * ch, 500 + 10 * i as u64 + step);
            let want = cpu::conv1d_update_int8(&xv, &mut state_cpu, batch, ch, &p).unwrap();
            let x = upload(&dev, &xv).unwrap();
            let mut y = upload(&dev, &vec![POISON_I8; batch * ch]).unwrap();
            conv1d_update_int8(&dev, &x, &mut state, batch, ch, &d.weights(width, true, true), &mut y).unwrap();
            let tag = format!("conv1d step {step} B={batch} C={ch} W={width}");
            assert_eq!(dl(&dev, &state), state_cpu, "{tag}: state");
            check_codes(&tag, &dl(&dev, &y), &want);
        }
    }
}

/// Host data of one scan problem.
struct ScanCase {
    s: ScanShape,
    u: Vec<i8>,
    dt: Vec<i8>,
    b: Vec<i8>,
    c: Vec<i8>,
    z: Vec<i8>,
    u_scale: Vec<f32>,
    dt_bias: Vec<f32>,
    a: Vec<f32>,
    d: Vec<f32>,
}

impl ScanCase {
    fn new(s: ScanShape, seed: u64) -> Self {
        let ScanShape { batch, len, dim, dstate } = s;
        Self {
            s,
            u: codes(batch * len * dim, seed),
            dt: codes(batch * len * dim, seed + 1),
            b: codes(batch * len * dstate, seed + 2),
            c: codes(batch * len * dstate, seed + 3),
            z: codes(batch * len * dim, seed + 4),
            u_scale: floats(dim, 0.005, 0.02, seed + 5),
            dt_bias: floats(dim, -4.0, -1.0, seed + 6),
            a: floats(dim * dstate, -8.0, -0.5, seed + 7),
            d: floats(dim, 0.5, 1.5, seed + 8),
        }
    }
}

/// Which optional parts a scan run uses.
#[derive(Clone, Copy, Debug)]
struct Opts {
    z: bool,
    d: bool,
    bias: bool,
    softplus: bool,
    reverse: bool,
    init: bool,
}

fn scalars(o: Opts) -> ScanScalars {
    ScanScalars {
        dt_scale: 0.02,
        // Without softplus (and without dt_bias), delta = dt · 0.02 + 2.6 stays in (0.05, 5.2): a decaying state.
        dt_add: if o.softplus { 1e-4 } else { 2.6 },
        delta_softplus: o.softplus,
        b_scale: 0.01,
        c_scale: 0.015,
        z_scale: 0.03,
        reverse: o.reverse,
    }
}

fn cpu_params<'a>(c: &'a ScanCase, o: Opts) -> ScanParams<'a> {
    let sc = scalars(o);
    ScanParams {
        u_scale: &c.u_scale,
        dt_scale: sc.dt_scale,
        dt_bias: o.bias.then_some(&c.dt_bias[..]),
        dt_add: sc.dt_add,
        delta_softplus: o.softplus,
        a: &c.a,
        b_scale: sc.b_scale,
        c_scale: sc.c_scale,
        d_skip: o.d.then_some(&c.d[..]),
        z_scale: sc.z_scale,
        reverse: o.reverse,
    }
}

struct ScanDev {
    u: CudaSlice<i8>,
    dt: CudaSlice<i8>,
    b: CudaSlice<i8>,
    c: CudaSlice<i8>,
    z: CudaSlice<i8>,
    u_scale: CudaSlice<f32>,
    dt_bias: CudaSlice<f32>,
    a: CudaSlice<f32>,
    d: CudaSlice<f32>,
}

impl ScanDev {
    fn new(dev: &Device, c: &ScanCase) -> Self {
        Self {
            u: upload(dev, &c.u).unwrap(),
            dt: upload(dev, &c.dt).unwrap(),
            b: upload(dev, &c.b).unwrap(),
            c: upload(dev, &c.c).unwrap(),
            z: upload(dev, &c.z).unwrap(),
            u_scale: upload(dev, &c.u_scale).unwrap(),
            dt_bias: upload(dev, &c.dt_bias).unwrap(),
            a: upload(dev, &c.a).unwrap(),
            d: upload(dev, &c.d).unwrap(),
        }
    }
    fn bufs(&self, o: Opts) -> ScanBuffers<'_> {
        ScanBuffers {
            u: &self.u,
            dt: &self.dt,
            b: &self.b,
            c: &self.c,
            z: o.z.then_some(&self.z),
            u_scale: &self.u_scale,
            dt_bias: o.bias.then_some(&self.dt_bias),
            a: &self.a,
            d_skip: o.d.then_some(&self.d),
        }
    }
}

fn cpu_scan(c: &ScanCase, o: Opts, init: Option<&[f32]>) -> ScanOutput {
    let inp = ScanInputs { u: &c.u, dt: &c.dt, b: &c.b, c: &c.c, z: o.z.then_some(&c.z[..]) };
    cpu::selective_scan_int8(&inp, &cpu_params(c, o), c.s, init).unwrap()
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn selective_scan_matches_the_cpu() {
    let Some(dev) = device_or_skip("selective_scan_matches_the_cpu") else { return };
    let all = Opts { z: true, d: true, bias: true, softplus: true, reverse: false, init: false };
    let cases = [
        (ScanShape { batch: 1, len: 1, dim: 1, dstate: 1 }, all),
        (ScanShape { batch: 2, len: 37, dim: 67, dstate: 16 }, all),
        (ScanShape { batch: 3, len: 100, dim: 130, dstate: 16 }, Opts { reverse: true, ..all }),
        (ScanShape { batch: 1, len: 65, dim: 33, dstate: 7 }, Opts { init: true, z: false, ..all }),
        (ScanShape { batch: 2, len: 33, dim: 64, dstate: 32 }, Opts { d: false, bias: false, ..all }),
        (ScanShape { batch: 1, len: 20, dim: 10, dstate: 64 }, Opts { init: true, reverse: true, ..all }),
        (ScanShape { batch: 2, len: 300, dim: 129, dstate: 17 }, Opts { softplus: false, bias: false, ..all }),
    ];
    for (i, &(s, o)) in cases.iter().enumerate() {
        let case = ScanCase::new(s, 1000 + 10 * i as u64);
        let dbuf = ScanDev::new(&dev, &case);
        let init = o.init.then(|| floats(s.batch * s.dim * s.dstate, -1.0, 1.0, 77 + i as u64));
        let want = cpu_scan(&case, o, init.as_deref());
        let h0 = init.as_ref().map(|h| upload(&dev, h).unwrap());
        let mut h1 = upload(&dev, &vec![f32::NAN; s.batch * s.dim * s.dstate]).unwrap();
        let mut y = upload(&dev, &vec![POISON_F16; s.batch * s.len * s.dim]).unwrap();
        selective_scan_int8(&dev, &dbuf.bufs(o), &scalars(o), s, h0.as_ref(), Some(&mut h1), &mut y).unwrap();
        let tag = format!("scan {s:?} {o:?}");
        check_y(&tag, &dl(&dev, &y), &want.y);
        check_state(&tag, &dl(&dev, &h1), &want.final_state);
    }
}

/// The decode step, three steps in place, and the strided raw scan (u, z slices of one [B, L, 2D] buffer; dt, B,
/// C slices of one [B, L, D + 2N] buffer), as the Mamba1 mixer passes them.
#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn selective_state_update_and_strided_scan_match_the_cpu() {
    let Some(dev) = device_or_skip("selective_state_update_and_strided_scan_match_the_cpu") else { return };
    let o = Opts { z: true, d: true, bias: true, softplus: true, reverse: false, init: true };
    for (i, &(batch, dim, dstate)) in [(1usize, 5usize, 16usize), (4, 131, 16), (3, 70, 40)].iter().enumerate() {
        let mut state_cpu = floats(batch * dim * dstate, -1.0, 1.0, 900 + i as u64);
        let mut state = upload(&dev, &state_cpu).unwrap();
        for step in 0..3u64 {
            let s = ScanShape { batch, len: 1, dim, dstate };
            let case = ScanCase::new(s, 2000 + 100 * i as u64 + 10 * step);
            let dbuf = ScanDev::new(&dev, &case);
            let inp = ScanInputs { u: &case.u, dt: &case.dt, b: &case.b, c: &case.c, z: Some(&case.z) };
            let want = cpu::selective_state_update_int8(&mut state_cpu, &inp, &cpu_params(&case, o), s).unwrap();
            let mut y = upload(&dev, &vec![POISON_F16; batch * dim]).unwrap();
            selective_state_update_int8(&dev, &dbuf.bufs(o), &scalars(o), s, &mut state, &mut y).unwrap();
            let tag = format!("state update step {step} B={batch} D={dim} N={dstate}");
            check_y(&tag, &dl(&dev, &y), &want);
            check_state(&tag, &dl(&dev, &state), &state_cpu);
        }
    }

    // Strided: xz [B, L, 2D] (u = first D, z = last D), dbc [B, L, D + 2N] (dt, B, C).
    let s = ScanShape { batch: 2, len: 45, dim: 96, dstate: 16 };
    let (bl, d, n) = (s.batch * s.len, s.dim, s.dstate);
    let case = ScanCase::new(s, 3000);
    let mut xz = vec![0i8; bl * 2 * d];
    let mut dbc = vec![0i8; bl * (d + 2 * n)];
    for r in 0..bl {
        xz[r * 2 * d..][..d].copy_from_slice(&case.u[r * d..][..d]);
        xz[r * 2 * d + d..][..d].copy_from_slice(&case.z[r * d..][..d]);
        let row = &mut dbc[r * (d + 2 * n)..][..d + 2 * n];
        row[..d].copy_from_slice(&case.dt[r * d..][..d]);
        row[d..d + n].copy_from_slice(&case.b[r * n..][..n]);
        row[d + n..].copy_from_slice(&case.c[r * n..][..n]);
    }
    let o = Opts { init: false, ..o };
    let want = cpu_scan(&case, o, None);
    let dbuf = ScanDev::new(&dev, &case);
    let (xz_d, dbc_d) = (upload(&dev, &xz).unwrap(), upload(&dev, &dbc).unwrap());
    let ldy = d + 3;
    let mut y = upload(&dev, &vec![POISON_F16; bl * ldy]).unwrap();
    let stream = dev.stream();
    let (xzp, _g1) = xz_d.device_ptr(stream);
    let (dbcp, _g2) = dbc_d.device_ptr(stream);
    let sc = scalars(o);
    let p = lowbit_cuda::ssm::RawScanParams {
        u: xzp as *const i8,
        ldu: (2 * d) as i64,
        u_scale: dbuf.u_scale.device_ptr(stream).0 as *const f32,
        dt: dbcp as *const i8,
        lddt: (d + 2 * n) as i64,
        dt_scale: sc.dt_scale,
        dt_bias: dbuf.dt_bias.device_ptr(stream).0 as *const f32,
        dt_add: sc.dt_add,
        delta_softplus: 1,
        a: dbuf.a.device_ptr(stream).0 as *const f32,
        b: (dbcp + d as u64) as *const i8,
        ldb: (d + 2 * n) as i64,
        b_scale: sc.b_scale,
        c: (dbcp + (d + n) as u64) as *const i8,
        ldc: (d + 2 * n) as i64,
        c_scale: sc.c_scale,
        d_skip: dbuf.d.device_ptr(stream).0 as *const f32,
        z: (xzp + d as u64) as *const i8,
        ldz: (2 * d) as i64,
        z_scale: sc.z_scale,
        batch: s.batch as i64,
        len: s.len as i64,
        dim: d as i64,
        dstate: n as i64,
        reverse: 0,
    };
    {
        let (yp, _gy) = y.device_ptr_mut(stream);
        // SAFETY: every pointer addresses a live buffer of dev of the sizes above; launched on dev's stream.
        unsafe { selective_scan_int8_raw(&dev, &p, 0, 0, yp, ldy, stream.cu_stream().cast()) }.unwrap();
    }
    let got = dl(&dev, &y);
    assert!(got.chunks(ldy).all(|r| r[d..].iter().all(|&v| v == POISON_F16)), "strided scan wrote into the gap");
    let dense: Vec<u16> = got.chunks(ldy).flat_map(|r| r[..d].to_vec()).collect();
    check_y("strided scan", &dense, &want.y);
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn gated_rmsnorm_quant_matches_the_cpu() {
    let Some(dev) = device_or_skip("gated_rmsnorm_quant_matches_the_cpu") else { return };
    // (rows, dim, group, norm, hadamard, z, weight): Mamba1 (gate only), Mamba2 (group norm + weight), FWHT sizes.
    let cases = [
        (1usize, 64usize, 64usize, false, 0usize, true, false),
        (3, 5120, 5120, false, 1024, true, false),
        (7, 4096, 512, true, 4096, true, true),
        (2, 1000, 250, true, 0, true, true),
        (5, 16384, 2048, true, 128, false, true),
        (33, 96, 96, true, 32, true, true),
        // The vector path (dim % 8 == 0, <= 8192: 8 columns a thread; above: 16): Mamba2-2.7B decode (T = 1,
        // H = 1024 crosses warps through shared memory), 8 groups, warps with idle threads (325 slices), the
        // largest E = 8 row (H = 8192: 64 KB of shared memory), E = 16 with H = 4096; the shared-memory kernel
        // again for dims that are not a multiple of 8.
        (1, 5120, 5120, true, 1024, true, true),
        (3, 5120, 640, true, 1024, true, true),
        (3, 2600, 520, true, 8, true, true),
        (1, 8192, 8192, true, 8192, true, false),
        (2, 12288, 3072, true, 4096, true, true),
        (3, 1004, 1004, true, 4, true, true),
    ];
    for (i, &(rows, dim, group, norm, had, use_z, use_w)) in cases.iter().enumerate() {
        let yb: Vec<u16> =
            floats(rows * dim, -3.0, 3.0, 600 + i as u64).iter().map(|v| f16::from_f32(*v).to_bits()).collect();
        let yv: Vec<f32> = yb.iter().map(|b| f16::from_bits(*b).to_f32()).collect();
        let zv = codes(rows * dim, 700 + i as u64);
        let wv = floats(dim, 0.5, 1.5, 800 + i as u64);
        let out_scale = if norm { 0.03 } else { 0.02 };
        let p = GatedNormParams {
            z_scale: 0.03,
            weight: use_w.then_some(&wv[..]),
            group_size: group,
            eps: 1e-5,
            norm,
            hadamard: had,
            out_scale,
        };
        let want = cpu::gated_rmsnorm_quant(&yv, use_z.then_some(&zv[..]), rows, dim, &p).unwrap();
        let (y, z, w) = (upload(&dev, &yb).unwrap(), upload(&dev, &zv).unwrap(), upload(&dev, &wv).unwrap());
        let mut q = upload(&dev, &vec![POISON_I8; rows * dim]).unwrap();
        let cfg = GatedNormConfig { z_scale: 0.03, group_size: group, eps: 1e-5, norm, hadamard: had, out_scale };
        gated_rmsnorm_quant(&dev, &y, use_z.then_some(&z), use_w.then_some(&w), rows, dim, &cfg, &mut q).unwrap();
        let tag = format!("gated norm rows={rows} dim={dim} group={group} norm={norm} H={had} z={use_z} w={use_w}");
        let got = dl(&dev, &q);
        check_codes(&tag, &got, &want);
        assert!(want.iter().filter(|v| v.unsigned_abs() > 2).count() > want.len() / 4, "{tag}: degenerate data");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (run with --include-ignored; scripts/gpu-run)"]
fn bad_inputs_are_typed_errors() {
    let Some(dev) = device_or_skip("bad_inputs_are_typed_errors") else { return };
    // conv1d: width 5, short output buffer, short weight
    let case = ConvCase::new(8, 5, 1);
    let d = ConvDev::new(&dev, &case);
    let x = upload(&dev, &codes(2 * 3 * 8, 1)).unwrap();
    let mut y = upload(&dev, &[0i8; 2 * 3 * 8]).unwrap();
    let e = conv1d_int8(&dev, &x, 2, 3, 8, &d.weights(5, true, true), &mut y).unwrap_err();
    assert!(matches!(e, CudaError::Shape { .. }), "{e}");
    let mut short = upload(&dev, &[0i8; 10]).unwrap();
    let e = conv1d_int8(&dev, &x, 2, 3, 8, &d.weights(4, true, true), &mut short).unwrap_err();
    assert!(matches!(e, CudaError::BufferSize { what: "conv1d y", .. }), "{e}");
    let e = conv1d_int8(&dev, &x, 2, 3, 9, &d.weights(4, true, true), &mut y).unwrap_err();
    assert!(matches!(e, CudaError::BufferSize { .. }), "{e}");
    // raw conv1d: NULL weight, ldx < channels (the launcher's own checks)
    let stream = dev.stream();
    let (xp, _gx) = x.device_ptr(stream);
    let raw = RawConv1dWeights {
        x_scale: d.xs.device_ptr(stream).0,
        weight: 0,
        width: 4,
        bias: 0,
        out_scale: d.os.device_ptr(stream).0,
        silu: true,
    };
    let yp = y.device_ptr_mut(stream).0;
    let cs = stream.cu_stream().cast();
    // SAFETY: the launcher rejects these arguments before launching anything.
    let e = unsafe { conv1d_int8_raw(&dev, xp, 8, 2, 3, 8, &raw, yp, 8, cs) }.unwrap_err();
    assert!(matches!(e, CudaError::InvalidArgument { launcher: "lowbit_ssm_conv1d_int8", .. }), "{e}");
    let raw = RawConv1dWeights { weight: d.w.device_ptr(stream).0, ..raw };
    // SAFETY: as above.
    let e = unsafe { conv1d_int8_raw(&dev, xp, 7, 2, 3, 8, &raw, yp, 8, cs) }.unwrap_err();
    assert!(matches!(e, CudaError::Shape { .. }), "{e}");
    let raw_mis = RawConv1dWeights { x_scale: raw.x_scale + 1, ..raw };
    // SAFETY: as above (misaligned f32 scale pointer).
    let e = unsafe { conv1d_int8_raw(&dev, xp, 8, 2, 3, 8, &raw_mis, yp, 8, cs) }.unwrap_err();
    assert!(matches!(e, CudaError::Alignment { .. }), "{e}");

    // scan: d_state 65, decode step with len 2, short final state
    let s = ScanShape { batch: 1, len: 2, dim: 4, dstate: 65 };
    let case = ScanCase::new(s, 5);
    let dbuf = ScanDev::new(&dev, &case);
    let o = Opts { z: true, d: true, bias: true, softplus: true, reverse: false, init: false };
    let mut yh = upload(&dev, &[0u16; 8]).unwrap();
    let e = selective_scan_int8(&dev, &dbuf.bufs(o), &scalars(o), s, None, None, &mut yh).unwrap_err();
    assert!(matches!(e, CudaError::Shape { .. }), "{e}");
    let s = ScanShape { dstate: 16, ..s };
    let mut st = upload(&dev, &vec![0f32; 64]).unwrap();
    let e = selective_state_update_int8(&dev, &dbuf.bufs(o), &scalars(o), s, &mut st, &mut yh).unwrap_err();
    assert!(matches!(e, CudaError::Shape { .. }), "{e}");
    let mut short = upload(&dev, &vec![0f32; 63]).unwrap();
    let e = selective_scan_int8(&dev, &dbuf.bufs(o), &scalars(o), s, None, Some(&mut short), &mut yh).unwrap_err();
    assert!(matches!(e, CudaError::BufferSize { what: "scan final_state", .. }), "{e}");
    let bad = ScanScalars { dt_scale: f32::NAN, ..scalars(o) };
    let e = selective_scan_int8(&dev, &dbuf.bufs(o), &bad, s, None, None, &mut yh).unwrap_err();
    assert!(matches!(e, CudaError::InvalidArgument { .. }), "{e}");

    // gated norm: Hadamard 3, group not dividing dim, out_scale 0, dim too large, misaligned y (raw)
    let yb = upload(&dev, &vec![0u16; 2 * 96]).unwrap();
    let mut q = upload(&dev, &[0i8; 2 * 96]).unwrap();
    let cfg = GatedNormConfig { z_scale: 1.0, group_size: 96, eps: 1e-5, norm: true, hadamard: 3, out_scale: 0.1 };
    let e = gated_rmsnorm_quant(&dev, &yb, None, None, 2, 96, &cfg, &mut q).unwrap_err();
    assert!(matches!(e, CudaError::Shape { launcher: "lowbit_ssm_gated_rmsnorm_quant", .. }), "{e}");
    let cfg = GatedNormConfig { hadamard: 0, group_size: 40, ..cfg };
    let e = gated_rmsnorm_quant(&dev, &yb, None, None, 2, 96, &cfg, &mut q).unwrap_err();
    assert!(matches!(e, CudaError::Shape { .. }), "{e}");
    let cfg = GatedNormConfig { group_size: 96, out_scale: 0.0, ..cfg };
    let e = gated_rmsnorm_quant(&dev, &yb, None, None, 2, 96, &cfg, &mut q).unwrap_err();
    assert!(matches!(e, CudaError::InvalidArgument { .. }), "{e}");
    let cfg = GatedNormConfig { out_scale: 0.1, ..cfg };
    let (ybp, _g) = yb.device_ptr(stream);
    let qp = q.device_ptr_mut(stream).0;
    // SAFETY: the launcher rejects these arguments before launching anything.
    let e = unsafe { gated_rmsnorm_quant_raw(&dev, ybp + 1, 96, 0, 0, 0, 1, 96, &cfg, qp, 96, cs) }.unwrap_err();
    assert!(matches!(e, CudaError::Alignment { .. }), "{e}");
    // SAFETY: as above (dim over the shared-memory limit).
    let e = unsafe { gated_rmsnorm_quant_raw(&dev, ybp, 20000, 0, 0, 0, 1, 20000, &cfg, qp, 20000, cs) }.unwrap_err();
    assert!(matches!(e, CudaError::Shape { .. }), "{e}");
}
