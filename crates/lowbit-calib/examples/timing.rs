//! Times the calibrator at real layer sizes: Hessian accumulation of 32k rows, GPTQ of a K×K layer, and a
//! histogram observer update.
//!
//! `cargo run --release -p lowbit-calib --example timing -- [K] [ROWS] [N]` (defaults 1536 32768 1536).

use lowbit_calib::{GptqOptions, HessianAccumulator, HistogramObserver, ObserverGranularity, gptq_quantize};
use lowbit_core::WeightScheme;
use ndarray::Array2;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let k = args.first().copied().unwrap_or(1536);
    let rows = args.get(1).copied().unwrap_or(32768);
    let n = args.get(2).copied().unwrap_or(1536);
    // Deterministic pseudo-random data (an LCG): the values do not matter for timing.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let x = Array2::from_shape_fn((rows, k), |_| next());
    let w = Array2::from_shape_fn((n, k), |_| next() * 0.1);

    let t = Instant::now();
    let mut acc = HessianAccumulator::new(k)?;
    for chunk in x.axis_chunks_iter(ndarray::Axis(0), 4096) {
        acc.update(chunk)?;
    }
    let h = acc.finish()?;
    println!("Hessian {rows} x {k}: {:.2} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut obs = HistogramObserver::new(2048, ObserverGranularity::PerTensor)?;
    obs.update(x.view())?;
    println!("histogram observer {rows} x {k}: {:.2} s", t.elapsed().as_secs_f64());

    for (scheme, act_order) in [("w4-int-g128", false), ("w4-int-g128", true), ("w3-mixed-g128", false)] {
        let t = Instant::now();
        let opts = GptqOptions { act_order, ..GptqOptions::default() };
        let out = gptq_quantize(w.view(), &h, &scheme.parse::<WeightScheme>()?, &opts)?;
        println!(
            "GPTQ {scheme} act_order={act_order} [{n}, {k}]: {:.2} s (loss {:.3e})",
            t.elapsed().as_secs_f64(),
            out.stats.loss
        );
    }
    Ok(())
}
