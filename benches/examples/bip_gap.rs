//! Why `lowbit-bench bipolar` measures the ws plane kernel slower than the micro harness (`benches/micro/bipolar.cu`)
//! does for the same kernel (kernels/bipolar/NOTES.md "bench vs harness"): one process, one card, the same operands,
//! the same library call (`BipolarGemm::run_raw`, f16 output, the plan the bench uses), timed several ways, each with
//! the SM clock / power / clock-event reasons NVML saw while it ran, and the same for cuBLASLt int8:
//!
//! - `bench`: the bench's method (CUDA graph of rotated-weight batches ≥ 1 ms, 5 warm-up + 20 timed replays);
//! - `burst`: the harness's (after 1 s idle: 3 warm-up calls, then 7 trials of 3 host launches with a synchronize
//!   between trials, over at most 8 weight copies, median);
//! - `stream`: the bench's batches as host launches instead of a graph;
//! - `warm-l2`: the bench's method on one weight copy (the weights may stay in L2 between calls);
//! - `long`: the bench's method for ~2 s (sustained power);
//! - tile orders (`LOWBIT_BIP_WS_GROUP`: 4 = the order before the L2-fit rule, unset = the launcher's rule) and, for
//!   W4A1, the transposed split-X tile (`LOWBIT_BIP_WS_SPLIT=2`).
//!
//! `cycles` = time × the window's median SM clock: equal cycles at different times mean the clock explains the gap.
//!
//! ```text
//! cargo run --release -p lowbit-bench --example bip_gap            # on a GPU machine
//! ```

use std::time::{Duration, Instant};

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use lowbit_bench::context::BenchContext;
use lowbit_bench::nvml::Window;
use lowbit_bench::timing::{Measurement, TimingConfig, TimingMethod, rotation_copies};
use lowbit_bench::weights::random_activations;
use lowbit_core::bipolar::BipolarMatrix;
use lowbit_core::granularity::Granularity;
use lowbit_core::int8::I8Out;
use lowbit_cuda::bipolar::{BipConfig, BipMapping};
use lowbit_cuda::cublaslt::CublasLtInt8;
use lowbit_cuda::{BipolarGemm, OutDtype};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The bench's bipolar timing defaults (benches/src/main.rs BIPOLAR_TIMING).
fn bench_timing() -> TimingConfig {
    TimingConfig { reps: 20, warmup: 5, max_seconds_per_op: 0.5, ..TimingConfig::default() }
}

fn set_env(key: &str, val: Option<&str>) {
    // SAFETY: the only other thread (the NVML sampler) never reads the environment; the launcher reads these
    // variables on this thread at each call.
    unsafe {
        match val {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
}

/// Prints a variant's error and goes on (one failing variant must not lose the others' numbers).
fn soft<T>(what: &str, r: Res<T>) -> Option<T> {
    r.map_err(|e| println!("  {what:<34} ERROR {e}")).ok()
}

fn line(what: &str, us: f64, win: Option<&Window>, ops: f64, lt_us: Option<f64>) {
    let mhz = win.and_then(|w| w.sm_mhz);
    let cycles = mhz.map_or(String::from("?"), |m| format!("{:.0}k", us * m / 1000.0));
    let ratio = lt_us.map_or(String::new(), |l| format!(" {:.2}x Lt", l / us));
    println!(
        "  {what:<34} {us:8.1} us {:6.0} TOPS{ratio:<10} cycles {cycles:>7} | {}",
        ops / (us * 1e-6) / 1e12,
        win.map_or("no NVML".into(), |w| w.brief())
    );
}

/// The harness's method (benches/micro/baselines.cuh `time_ms`): 3 warm-up calls, 7 trials of 3 calls, median.
fn burst(ctx: &BenchContext, copies: usize, launch: &mut dyn FnMut(usize) -> Res<()>) -> Res<(f64, Option<Window>)> {
    let stream = ctx.stream();
    stream.synchronize()?;
    std::thread::sleep(Duration::from_millis(1000));
    let mut it = 0usize;
    let t0 = Instant::now();
    for _ in 0..3 {
        launch(it % copies)?;
        it += 1;
    }
    let mut ts = Vec::new();
    for _ in 0..7 {
        // Timing events (cudarc's default flags disable timing).
        let ev = || stream.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT));
        let (a, b) = (ev()?, ev()?);
        a.record(stream)?;
        for _ in 0..3 {
            launch(it % copies)?;
            it += 1;
        }
        b.record(stream)?;
        b.synchronize()?;
        ts.push(f64::from(a.elapsed_ms(&b)?) * 1000.0 / 3.0);
    }
    let win = ctx.nvml().map(|n| n.window(t0, Instant::now()));
    ts.sort_by(f64::total_cmp);
    Ok((ts[ts.len() / 2], win))
}

fn timed(
    ctx: &BenchContext,
    cfg: TimingConfig,
    copies: usize,
    launch: &mut dyn FnMut(usize) -> Res<()>,
) -> Res<Measurement> {
    let m =
        ctx.timer(cfg).measure(copies, |i| launch(i).map_err(|e| lowbit_bench::BenchError::invalid(e.to_string())))?;
    ctx.stream().synchronize()?;
    Ok(m)
}

/// A `q`-bit weight `[n, k]` of random codes (512 distinct rows, repeated), per-channel scales.
fn weight(n: usize, k: usize, q: u32, seed: u64) -> Res<BipolarMatrix> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rows = n.min(512);
    let chunk: Vec<u8> = (0..rows * k).map(|_| rng.random_range(0..(1u32 << q)) as u8).collect();
    let mut codes = Vec::with_capacity(n * k);
    for r in 0..n {
        codes.extend_from_slice(&chunk[(r % rows) * k..(r % rows + 1) * k]);
    }
    let scales: Vec<f32> = (0..n).map(|i| 1e-3 * (1.0 + (i % 7) as f32 / 7.0)).collect();
    Ok(BipolarMatrix::from_codes(n, k, q, Granularity::PerChannel, &codes, scales, None)?)
}

fn case(ctx: &BenchContext, lt: &CublasLtInt8, q: u32, p: u32, m: usize, n: usize, k: usize) -> Res<()> {
    let (dev, stream) = (ctx.device(), ctx.stream());
    let ops = 2.0 * (m * n * k) as f64;
    let l2 = dev.info().l2_cache_bytes;
    println!("\n== W{q}A{p} M={m} N={n} K={k} ==");
    // cuBLASLt int8, as the bench times it (int8 weight copies over 3x L2).
    let w8: Vec<i8> = {
        let mut rng = StdRng::seed_from_u64(7);
        (0..n * k).map(|_| rng.random_range(-127i32..=127) as i8).collect()
    };
    let lt_copies: Vec<CudaSlice<i8>> =
        (0..rotation_copies(n * k, l2, 3.0)).map(|_| stream.clone_htod(&w8)).collect::<Result<_, _>>()?;
    let x8 = stream.clone_htod(&vec![3i8; m * k])?;
    let mut y32 = stream.alloc_zeros::<i32>(m * n)?;
    let (x8p, y32p) = (x8.device_ptr(stream).0, y32.device_ptr_mut(stream).0);
    let lt_ptrs: Vec<u64> = lt_copies.iter().map(|w| w.device_ptr(stream).0).collect();
    lt.prepare(m, n, k)?;
    let mut lt_launch = |i: usize| -> Res<()> {
        // SAFETY: x8 [m, k], each copy [n, k] int8, y32 [m, n] int32, all alive until the stream is synchronized.
        unsafe { lt.matmul_raw(m, n, k, x8p, lt_ptrs[i], y32p) }?;
        Ok(())
    };
    if let Some((b, bw)) = soft("lt burst", burst(ctx, lt_ptrs.len().min(8), &mut lt_launch)) {
        line("cublaslt-int8 burst", b, bw.as_ref(), ops, None);
    }
    let lt_m = timed(ctx, bench_timing(), lt_ptrs.len(), &mut lt_launch)?;
    let lt_us = lt_m.stats.median;
    line("cublaslt-int8 bench", lt_us, lt_m.card.as_ref(), ops, None);

    // The bipolar GEMM through the library, as the bench calls it.
    let w = weight(n, k, q, 11)?;
    let g = BipolarGemm::new(dev, &w, p)?;
    drop(w);
    let r = rotation_copies(q as usize * n * lowbit_cuda::bipolar::plane_ld(k) * 4, l2, 3.0);
    let mut copies = vec![g.clone(); r - 1];
    copies.push(g);
    let g0 = &copies[0];
    let x16 = stream.clone_htod(&random_activations(m, k, OutDtype::F16, 5, 8))?;
    let mut acts = g0.activations(dev, m)?;
    g0.quantize_activations(dev, &x16, OutDtype::F16, &mut acts)?;
    let plan = g0.plan(dev, m, BipConfig { mapping: Some(BipMapping::Planes), ..BipConfig::default() })?;
    println!("  plan: {plan:?}, auto mapping {:?}, {r} weight copies", g0.choose(dev, m)?);
    let mut y16 = stream.alloc_zeros::<u16>(m * n)?;
    let y16p = y16.device_ptr_mut(stream).0;
    dev.synchronize()?;
    let mut launch = |i: usize| -> Res<()> {
        // SAFETY: y16 holds m·n f16, no workspace (the ws plan needs none); copies and acts outlive the stream work.
        unsafe { copies[i].run_raw(dev, stream, &acts, I8Out::F16, y16p, &plan, 0, 0) }?;
        Ok(())
    };
    let harness_copies = ((200usize << 20) / (q as usize * n * k / 8) + 1).min(8).min(r);
    let orders: [(&str, Option<&str>); 2] = [("group 4 (before)", Some("4")), ("group rule (new)", None)];
    let long = TimingConfig { reps: 200, max_seconds_per_op: 2.0, ..bench_timing() };
    let stream_cfg = TimingConfig { method: TimingMethod::Stream, ..bench_timing() };
    for (name, grp) in orders {
        set_env("LOWBIT_BIP_WS_GROUP", grp);
        if let Some((b, bw)) = soft("burst", burst(ctx, harness_copies, &mut launch)) {
            line(&format!("burst  {name}"), b, bw.as_ref(), ops, Some(lt_us));
        }
        if let Some(mb) = soft("bench", timed(ctx, bench_timing(), r, &mut launch)) {
            line(&format!("bench  {name}"), mb.stats.median, mb.card.as_ref(), ops, Some(lt_us));
        }
        if let Some(ms) = soft("stream", timed(ctx, stream_cfg.clone(), r, &mut launch)) {
            line(&format!("stream {name}"), ms.stats.median, ms.card.as_ref(), ops, Some(lt_us));
        }
    }
    set_env("LOWBIT_BIP_WS_GROUP", Some("4"));
    if let Some(mw) = soft("warm-l2", timed(ctx, bench_timing(), 1, &mut launch)) {
        line("warm-l2 (1 copy) group 4", mw.stats.median, mw.card.as_ref(), ops, Some(lt_us));
    }
    if let Some(ml) = soft("long", timed(ctx, long.clone(), r, &mut launch)) {
        line("long 2 s group 4", ml.stats.median, ml.card.as_ref(), ops, Some(lt_us));
    }
    set_env("LOWBIT_BIP_WS_GROUP", None);
    if let Some(ml) = soft("long", timed(ctx, long, r, &mut launch)) {
        line("long 2 s group rule", ml.stats.median, ml.card.as_ref(), ops, Some(lt_us));
    }
    if q == 4 && p == 1 {
        for (name, grp) in orders {
            set_env("LOWBIT_BIP_WS_GROUP", grp);
            set_env("LOWBIT_BIP_WS_SPLIT", Some("2"));
            if let Some(mt) = soft("SX=2", timed(ctx, bench_timing(), r, &mut launch)) {
                line(&format!("bench SX=2 {name}"), mt.stats.median, mt.card.as_ref(), ops, Some(lt_us));
            }
            set_env("LOWBIT_BIP_WS_SPLIT", None);
        }
    }
    set_env("LOWBIT_BIP_WS_GROUP", None);
    if let Some(m2) = soft("lt again", timed(ctx, bench_timing(), lt_ptrs.len(), &mut lt_launch)) {
        line("cublaslt-int8 bench (again)", m2.stats.median, m2.card.as_ref(), ops, None);
    }
    if let Some((b, bw)) = soft("lt burst again", burst(ctx, lt_ptrs.len().min(8), &mut lt_launch)) {
        line("cublaslt-int8 burst (again)", b, bw.as_ref(), ops, None);
    }
    stream.synchronize()?;
    Ok(())
}

fn main() -> Res<()> {
    let ctx = BenchContext::open(0, false)?;
    println!("{} ({} SMs), NVML {}", ctx.card().name, ctx.card().sm_count, ctx.nvml().is_some());
    let lt = CublasLtInt8::new(ctx.stream().clone())?;
    let only = std::env::args().nth(1).unwrap_or_default();
    if only.is_empty() || only == "w1a1" {
        case(&ctx, &lt, 1, 1, 8192, 8192, 8192)?;
    }
    if only.is_empty() || only == "w4a1" {
        case(&ctx, &lt, 4, 1, 4096, 8192, 8192)?;
    }
    if only.is_empty() || only == "w2a2" {
        case(&ctx, &lt, 2, 2, 4096, 8192, 8192)?;
    }
    Ok(())
}
