//! Does the int8 tensor-core GEMM's time depend on the operand values? (kernels/bipolar/NOTES.md "operand
//! codes"). One process, one card, M = 4096, N = K = 8192: the library's int8 core (W8 weight, f16 output, the
//! plan the bench uses) and direct cuBLASLt int8, each timed the way the bench's cool-card runs time them (graph of
//! rotated-weight batches, 700 ms idle before each operation, 5 replays), for activation × weight value sets:
//!
//! - `full`: uniform in [-127, 127] (the cuBLASLt baseline's activations);
//! - `gauss`: the bench's W8 baseline weight (per-channel symmetric int8 of N(0, 0.02) floats);
//! - `vB`: the values of `B`-bit bipolar codes, odd numbers in [-(2^B - 1), 2^B - 1] (what the bipolar GEMM's int8
//!   mapping feeds the core for B <= 7); `v8` is `u - 128`, uniform in [-128, 127];
//! - `uB`: the unsigned codes themselves, [0, 2^B - 1].
//!
//! The same clock / power window NVML saw is printed beside each time, and `cycles` = time × median SM clock.
//!
//! ```text
//! cargo run --release -p lowbit-bench --example i8_operands     # on a GPU machine
//! ```

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use lowbit_bench::context::BenchContext;
use lowbit_bench::nvml::Window;
use lowbit_bench::timing::{Measurement, TimingConfig, rotation_copies};
use lowbit_bench::weights::random_normal;
use lowbit_core::int8::{I8Out, W8Weight};
use lowbit_cuda::Int8Gemm;
use lowbit_cuda::cublaslt::CublasLtInt8;
use lowbit_cuda::int8::{I8Config, RawEpilogue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The bench's cool-card bipolar timing (`--cooldown-ms 700 --reps 5`).
fn cool_timing() -> TimingConfig {
    TimingConfig { reps: 5, warmup: 5, max_seconds_per_op: 0.5, cooldown_ms: 700, ..TimingConfig::default() }
}

/// `len` values of the named set (see the module docs).
fn values(set: &str, len: usize, rows: usize, seed: u64) -> Res<Vec<i8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    if set == "full" {
        return Ok((0..len).map(|_| rng.random_range(-127i32..=127) as i8).collect());
    }
    if set == "gauss" {
        let k = len / rows;
        let chunk = random_normal(rows.min(512), k, seed, 0.02, 8);
        let w8 = W8Weight::quantize(chunk.view())?;
        return Ok((0..len).map(|i| w8.codes[i % w8.codes.len()]).collect());
    }
    let (kind, bits) = set.split_at(1);
    let b: u32 = bits.parse()?;
    let max = (1i32 << b) - 1;
    Ok((0..len)
        .map(|_| {
            let u = rng.random_range(0..=max);
            match (kind, b) {
                ("u", _) => u as i8,
                ("v", 8) => (u - 128) as i8,
                ("v", _) => (2 * u - max) as i8,
                _ => panic!("unknown value set {set}"),
            }
        })
        .collect())
}

fn line(what: &str, m: &Measurement, ops: f64, lt_us: Option<f64>) {
    let us = m.stats.median;
    let win: Option<&Window> = m.card.as_ref();
    let mhz = win.and_then(|w| w.sm_mhz);
    let cycles = mhz.map_or(String::from("?"), |c| format!("{:.0}k", us * c / 1000.0));
    let ratio = lt_us.map_or(String::new(), |l| format!(" {:.3}x Lt", l / us));
    println!(
        "  {what:<28} {us:8.1} us {:6.0} TOPS{ratio:<11} cycles {cycles:>7} | {}",
        ops / (us * 1e-6) / 1e12,
        win.map_or("no NVML".into(), |w| w.brief())
    );
}

fn main() -> Res<()> {
    let ctx = BenchContext::open(0, false)?;
    let (dev, stream) = (ctx.device(), ctx.stream());
    println!("{} ({} SMs), NVML {}", ctx.card().name, ctx.card().sm_count, ctx.nvml().is_some());
    let lt = CublasLtInt8::new(stream.clone())?;
    let (m, n, k) = (4096usize, 8192usize, 8192usize);
    let ops = 2.0 * (m * n * k) as f64;
    let l2 = dev.info().l2_cache_bytes;
    let timer = ctx.timer(cool_timing());
    let mut y16 = stream.alloc_zeros::<u16>(m * n)?;
    let mut y32 = stream.alloc_zeros::<i32>(m * n)?;
    let (y16p, y32p) = (y16.device_ptr_mut(stream).0, y32.device_ptr_mut(stream).0);
    let xs = stream.clone_htod(&vec![1e-3f32; m])?;
    let xsp = xs.device_ptr(stream).0;
    let cu = stream.cu_stream().cast();
    lt.prepare(m, n, k)?;

    // (activation set, weight set): the baselines first, then each bipolar pair as values and as unsigned codes.
    let cases: &[(&str, &str)] = &[
        ("full", "full"),
        ("full", "gauss"),
        ("v3", "v1"),
        ("u3", "u1"),
        ("v6", "v1"),
        ("u6", "u1"),
        ("v7", "v1"),
        ("u7", "u1"),
        ("v8", "v1"),
        ("v8", "u1"),
        ("v7", "v2"),
        ("u7", "u2"),
        ("v4", "v2"),
        ("u4", "u2"),
        ("v3", "v3"),
        ("u3", "u3"),
        ("v5", "v5"),
        ("u5", "u5"),
        ("v8", "v8"),
        ("full", "full"),
    ];
    let only = std::env::args().nth(1);
    for (i, &(xset, wset)) in cases.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !format!("{xset}x{wset}").contains(o)) {
            continue;
        }
        println!("\n== activations {xset} x weights {wset} ==");
        let x = stream.clone_htod(&values(xset, m * k, m, 100 + i as u64)?)?;
        let xp = x.device_ptr(stream).0;
        let w = values(wset, n * k, n, 200 + i as u64)?;
        // Rotate through > 3x L2 like the bench (each copy N·K bytes).
        let r = rotation_copies(n * k, l2, 3.0);
        let lt_copies: Vec<CudaSlice<i8>> = (0..r).map(|_| stream.clone_htod(&w)).collect::<Result<_, _>>()?;
        let lt_ptrs: Vec<u64> = lt_copies.iter().map(|c| c.device_ptr(stream).0).collect();
        let lt_m = timer.measure(r, |j| {
            // SAFETY: x [m, k], each copy [n, k] int8, y32 [m, n] int32, all alive until the stream syncs below.
            Ok(unsafe { lt.matmul_raw(m, n, k, xp, lt_ptrs[j], y32p) }?)
        })?;
        stream.synchronize()?;
        drop(lt_copies);
        line("cublaslt-int8", &lt_m, ops, None);

        let scales = vec![1e-3f32; n];
        let copies: Vec<Int8Gemm> =
            (0..r).map(|_| Int8Gemm::new_w8_codes(dev, &w, n, k, &scales)).collect::<Result<_, _>>()?;
        let plan = copies[0].plan(dev, m, I8Config::default())?;
        let mut ws = copies[0].workspace(dev, &plan)?;
        let (wsp, wsb) = match ws.as_mut() {
            Some(b) => (b.device_ptr_mut(stream).0.next_multiple_of(256), plan.workspace_bytes),
            None => (0, 0),
        };
        let epis: Vec<RawEpilogue> = copies
            .iter()
            .map(|g| RawEpilogue {
                rs: xsp,
                rs_val: 0.0,
                cs: g.channel_scales().device_ptr(stream).0,
                ..RawEpilogue::new(I8Out::F16)
            })
            .collect();
        dev.synchronize()?;
        let ours = timer.measure(r, |j| {
            // SAFETY: x [m, k] int8 (16-byte rows), y16 [m, n] f16, scales [m] / [n] f32, the plan's workspace
            // (zeroed, one stream); all alive until the stream is synchronized below.
            Ok(unsafe { copies[j].run_raw(dev, xp, k, &epis[j], y16p, n, &plan, wsp, wsb, cu) }?)
        })?;
        stream.synchronize()?;
        line("lowbit int8 core (W8)", &ours, ops, Some(lt_m.stats.median));
        drop((copies, ws, x));
    }
    Ok(())
}
