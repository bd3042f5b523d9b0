//! The cuBLAS baselines against a CPU f64 reference on small odd shapes, so the row-major → column-major
//! derivation of `baseline.rs` is tested, not assumed (like cudarc's `test_hgemm`), and the timing core
//! on a real stream (graph and stream methods give a positive time; capture really replays the launches).
//!
//! Tolerance: the inputs are exact 16-bit values, cuBLAS accumulates in f32 and rounds the output once,
//! so each element is within `rtol · (|ref| + rms(ref))` with rtol = 4e-3 (f16) / 1.6e-2 (bf16).
//!
//! GPU tests are `#[ignore]`d: run them with `--include-ignored` (scripts/gpu-run); without a GPU or
//! libcublas they print `SKIP`, unless `LOWBIT_REQUIRE_GPU=1`.

use lowbit_bench::BenchError;
use lowbit_bench::baseline::{Baseline, Cublas};
use lowbit_bench::context::BenchContext;
use lowbit_bench::timing::{TimingConfig, TimingMethod};
use lowbit_bench::weights::{from_bits, to_bits};
use lowbit_cuda::OutDtype;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn require_gpu() -> bool {
    std::env::var("LOWBIT_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

fn context_or_skip(test: &str) -> Option<BenchContext> {
    match BenchContext::open(0, true) {
        Ok(ctx) => Some(ctx),
        Err(e) if require_gpu() => panic!("{test}: LOWBIT_REQUIRE_GPU=1 but {e}"),
        Err(e @ (BenchError::NoGpu(_) | BenchError::NoCublas)) => {
            println!("SKIP {test}: {e}");
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

/// `rows × cols` random values in ±1 rounded to `dtype`: bit patterns and exact values.
fn matrix(rows: usize, cols: usize, dtype: OutDtype, seed: u64) -> (Vec<u16>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let bits: Vec<u16> = (0..rows * cols).map(|_| to_bits(rng.random_range(-1.0f32..1.0), dtype)).collect();
    let vals = bits.iter().map(|&b| from_bits(b, dtype)).collect();
    (bits, vals)
}

#[test]
#[ignore = "needs an NVIDIA GPU and libcublas (run with --include-ignored; scripts/gpu-run)"]
fn gpu_cublas_baselines_match_the_f64_reference() {
    let Some(ctx) = context_or_skip("gpu_cublas_baselines_match_the_f64_reference") else { return };
    let stream = ctx.stream().clone();
    let cublas: &Cublas = ctx.cublas().unwrap();
    let mut checked = 0;
    for b in Baseline::ALL {
        let dtype = b.dtype();
        let rtol = if dtype == OutDtype::F16 { 4e-3 } else { 1.6e-2 };
        // (M, N, K): odd everything, M = 1 (GEMV-like), N != K, K not a multiple of 8.
        for (m, n, k) in [(1usize, 37usize, 64usize), (3, 5, 7), (17, 33, 129), (67, 100, 72), (128, 96, 200)] {
            let (xb, xv) = matrix(m, k, dtype, (m * 1000 + k) as u64);
            let (wb, wv) = matrix(n, k, dtype, (n * 1000 + k) as u64);
            let x = stream.clone_htod(&xb).unwrap();
            let w = stream.clone_htod(&wb).unwrap();
            let mut y = stream.clone_htod(&vec![0x7FFFu16; m * n]).unwrap();
            cublas.gemm(dtype, m, n, k, &x, &w, &mut y).unwrap();
            let got = stream.clone_dtoh(&y).unwrap();
            // Y[i][j] = sum_c X[i][c] * W[j][c]
            let reference: Vec<f64> = (0..m * n)
                .map(|idx| {
                    let (i, j) = (idx / n, idx % n);
                    (0..k).map(|c| xv[i * k + c] * wv[j * k + c]).sum()
                })
                .collect();
            let rms = (reference.iter().map(|v| v * v).sum::<f64>() / reference.len() as f64).sqrt();
            for (idx, (&g, &r)) in got.iter().zip(&reference).enumerate() {
                let g = from_bits(g, dtype);
                assert!(
                    g.is_finite() && (g - r).abs() <= rtol * (r.abs() + rms),
                    "{b} m={m} n={n} k={k}: Y[{}][{}] = {g}, reference {r}",
                    idx / n,
                    idx % n
                );
            }
            checked += 1;
        }
    }
    // Too-short buffers are refused before cuBLAS sees them.
    let x = stream.alloc_zeros::<u16>(10).unwrap();
    let w = stream.alloc_zeros::<u16>(10).unwrap();
    let mut y = stream.alloc_zeros::<u16>(10).unwrap();
    assert!(cublas.gemm(OutDtype::F16, 4, 4, 4, &x, &w, &mut y).is_err());
    println!("cuBLAS {:?}: {checked} GEMMs match the reference", cublas.version());
}

#[test]
#[ignore = "needs an NVIDIA GPU and libcublas (run with --include-ignored; scripts/gpu-run)"]
fn gpu_timer_graph_and_stream_methods() {
    use cudarc::driver::{DevicePtr, DevicePtrMut};
    let Some(ctx) = context_or_skip("gpu_timer_graph_and_stream_methods") else { return };
    let stream = ctx.stream().clone();
    let cublas = ctx.cublas().unwrap();
    let (m, n, k) = (16usize, 1024usize, 1024usize);
    let one = 0x3C00u16; // f16 1.0
    let x = stream.clone_htod(&vec![one; m * k]).unwrap();
    let copies: Vec<_> = (0..3).map(|_| stream.clone_htod(&vec![one; n * k]).unwrap()).collect();
    let mut y = stream.alloc_zeros::<u16>(m * n).unwrap();
    let (xp, yp) = (x.device_ptr(&stream).0, y.device_ptr_mut(&stream).0);
    let wps: Vec<u64> = copies.iter().map(|w| w.device_ptr(&stream).0).collect();
    let mut times = Vec::new();
    for method in [TimingMethod::Graph, TimingMethod::Stream] {
        // Poison Y (0xFFFF is a NaN): only launches that really ran can turn it into K = 1024.
        // SAFETY: y holds m * n u16 on this context.
        unsafe { cudarc::driver::result::memset_d8_async(yp, 0xFF, m * n * 2, stream.cu_stream()) }.unwrap();
        let cfg = TimingConfig { method, reps: 7, warmup: 2, min_batch_us: 200.0, ..TimingConfig::default() };
        let meas = ctx
            .timer(cfg)
            .measure(wps.len(), |i| {
                // SAFETY: x, the weight copies and y have the GEMM's sizes on this context and outlive
                // the measurement (the stream is synchronized below).
                Ok(unsafe { cublas.gemm_raw(OutDtype::F16, m, n, k, xp, wps[i], yp) }?)
            })
            .unwrap();
        stream.synchronize().unwrap();
        assert_eq!(meas.method, method, "{:?}", meas.fallback);
        assert!(meas.stats.median > 0.0 && meas.stats.median.is_finite());
        assert_eq!(meas.calls_per_rep % 3, 0, "batches are whole rotations");
        assert_eq!((meas.reps, meas.copies), (7, 3));
        let got = stream.clone_dtoh(&y).unwrap();
        assert!(got.iter().all(|&v| from_bits(v, OutDtype::F16) == k as f64), "{method}: Y != K");
        times.push(meas.stats.median);
    }
    // Capture executes nothing; a replay executes every captured launch.
    let timer = ctx.timer(TimingConfig::default());
    // SAFETY: as above.
    unsafe { cudarc::driver::result::memset_d8_async(yp, 0xFF, m * n * 2, stream.cu_stream()) }.unwrap();
    stream.synchronize().unwrap();
    let mut launch = |i: usize| {
        // SAFETY: as above.
        Ok(unsafe { cublas.gemm_raw(OutDtype::F16, m, n, k, xp, wps[i], yp) }?)
    };
    let graph = timer.capture(6, wps.len(), &mut launch).unwrap();
    assert!(stream.clone_dtoh(&y).unwrap().iter().all(|&v| v == 0xFFFF), "capture must not execute");
    graph.launch().unwrap();
    stream.synchronize().unwrap();
    assert!(stream.clone_dtoh(&y).unwrap().iter().all(|&v| from_bits(v, OutDtype::F16) == k as f64));
    println!("16x1024x1024 f16 GEMM: graph {:.2} us, stream {:.2} us per call", times[0], times[1]);
}

/// The read-bandwidth probe reads every 16-byte word of a buffer whose length is not a multiple of the grid's
/// stride (its XOR equals the CPU's), a second call folds the same value in again (back to zero), and a length
/// that is not a multiple of 16 is a typed alignment error.
#[test]
#[ignore = "needs an NVIDIA GPU and libcublas (run with --include-ignored; scripts/gpu-run)"]
fn gpu_read_probe_reads_every_word() {
    let Some(ctx) = context_or_skip("gpu_read_probe_reads_every_word") else { return };
    let (dev, stream) = (ctx.device(), ctx.stream());
    let mut rng = StdRng::seed_from_u64(7);
    let words: Vec<u32> = (0..4 * 300_017).map(|_| rng.random::<u32>() | 1).collect();
    let expect = words.iter().fold(0u32, |a, &w| a ^ w);
    assert_ne!(expect, 0);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let src = stream.clone_htod(&bytes).unwrap();
    let mut sink = stream.clone_htod(&[0u32]).unwrap();
    lowbit_cuda::probe::read_probe(dev, stream, &src, &mut sink).unwrap();
    assert_eq!(stream.clone_dtoh(&sink).unwrap()[0], expect, "XOR of every word");
    lowbit_cuda::probe::read_probe(dev, stream, &src, &mut sink).unwrap();
    assert_eq!(stream.clone_dtoh(&sink).unwrap()[0], 0, "a second pass folds the same value in");
    let odd = stream.clone_htod(&bytes[..24]).unwrap();
    let e = lowbit_cuda::probe::read_probe(dev, stream, &odd, &mut sink).unwrap_err();
    assert!(matches!(e, lowbit_cuda::CudaError::Alignment { .. }), "{e:?}");
}
