//! Observers on known distributions: min/max, streaming histogram (exact re-binning, percentiles), MSE
//! clipping checked against the empirical error of the clip it picks, static int8 scales.

mod common;

use common::*;
use lowbit_calib::observer::DEFAULT_CLIP_STEPS;
use lowbit_calib::{
    CalibError, Histogram, HistogramObserver, MinMaxObserver, ObserverGranularity, ScaleMethod, static_scale,
    static_scales,
};
use lowbit_core::Int8Activations;
use ndarray::{Array2, array};
use rand::Rng;

fn sorted(v: &[f32]) -> Vec<f32> {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    s
}

fn exact_quantile(s: &[f32], q: f64) -> f32 {
    s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)]
}

#[test]
fn min_max_per_tensor_and_per_channel() {
    let mut t = MinMaxObserver::new(ObserverGranularity::PerTensor);
    let mut c = MinMaxObserver::new(ObserverGranularity::PerChannel);
    for x in [array![[1.0f32, -2.0], [0.5, 3.0]], array![[-4.0f32, 0.0]]] {
        t.update(x.view()).unwrap();
        c.update(x.view()).unwrap();
    }
    assert_eq!(t.samples(), 3);
    let r = t.range().unwrap();
    assert_eq!((r.lo, r.hi), (-4.0, 3.0));
    let rs = c.ranges().unwrap();
    assert_eq!((rs[0].lo, rs[0].hi, rs[1].lo, rs[1].hi), (-4.0, 1.0, -2.0, 3.0));
    assert_eq!(r.symmetric_scale(8).unwrap(), 4.0 / 127.0);
    let (s, z) = r.asymmetric_params(8).unwrap();
    assert_eq!(s, 7.0 / 255.0);
    assert_eq!(z, (4.0f32 / s).round_ties_even() as u32);
    assert!(c.range().is_err(), "per-channel observer has no single range");
}

#[test]
fn streaming_histogram_rebins_exactly() {
    // Batches of growing spread on both sides force several range growths; the final histogram must equal
    // a direct binning of all values with the final edges (re-binning moves whole bins only).
    let mut r = rng(1);
    let mut h = Histogram::new(512).unwrap();
    let mut all = Vec::new();
    for (i, spread) in [0.01f32, 0.5, 0.2, 3.0, 40.0, 1.0].iter().enumerate() {
        let shift = if i % 2 == 0 { 0.3 } else { -0.7 };
        let batch: Vec<f32> = (0..5000).map(|_| normal(&mut r) * spread + shift).collect();
        h.add(batch.iter().copied());
        all.extend(batch);
    }
    assert_eq!(h.count(), all.len() as u64);
    let edges = h.edges();
    let width = edges[1] - edges[0];
    let mut direct = vec![0u64; 512];
    for &v in &all {
        let b = ((v as f64 - edges[0]) / width).floor().clamp(0.0, 511.0) as usize;
        direct[b] += 1;
    }
    assert_eq!(h.counts(), &direct[..]);
    assert_eq!(h.min(), sorted(&all)[0]);
    assert_eq!(h.max(), *sorted(&all).last().unwrap());
    assert!(edges[0] <= h.min() as f64 && *edges.last().unwrap() > h.max() as f64);
}

#[test]
fn percentiles_of_uniform_and_gaussian() {
    let mut r = rng(2);
    let u: Vec<f32> = (0..200_000).map(|_| r.random::<f32>() * 2.0 - 1.0).collect();
    let g: Vec<f32> = (0..200_000).map(|_| normal(&mut r)).collect();
    for (vals, name) in [(&u, "uniform"), (&g, "gaussian")] {
        let x = Array2::from_shape_vec((vals.len() / 100, 100), vals.clone()).unwrap();
        let mut obs = HistogramObserver::new(2048, ObserverGranularity::PerTensor).unwrap();
        for chunk in x.axis_chunks_iter(ndarray::Axis(0), 333) {
            obs.update(chunk).unwrap();
        }
        let s = sorted(vals);
        let abs = sorted(&vals.iter().map(|v| v.abs()).collect::<Vec<_>>());
        for p in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9] {
            let got = obs.percentile(p).unwrap()[0];
            let want = exact_quantile(&s, p / 100.0);
            assert!((got - want).abs() < 5e-3, "{name} p{p}: {got} vs {want}");
            let got = obs.abs_percentile(p).unwrap()[0];
            let want = exact_quantile(&abs, p / 100.0);
            assert!((got - want).abs() < 5e-3, "{name} |x| p{p}: {got} vs {want}");
        }
        assert_eq!(obs.percentile(100.0).unwrap()[0], *s.last().unwrap());
        assert_eq!(obs.percentile(0.0).unwrap()[0], s[0]);
    }
    // Known values of N(0, 1): |x| at 95 % is 1.96.
    let mut h = Histogram::new(2048).unwrap();
    h.add(g.iter().copied());
    assert!((h.abs_percentile(95.0).unwrap() - 1.96).abs() < 0.02);
    assert!((h.percentile(50.0).unwrap()).abs() < 0.01);
}

/// Empirical MSE of quantizing `vals` symmetric with `bits` and clip `c`.
fn empirical_sym_mse(vals: &[f32], bits: u32, c: f32) -> f64 {
    let qmax = ((1 << (bits - 1)) - 1) as f32;
    let s = c / qmax;
    vals.iter().map(|&v| ((v / s).round_ties_even().clamp(-qmax, qmax) * s - v) as f64).map(|d| d * d).sum::<f64>()
        / vals.len() as f64
}

#[test]
fn mse_clip_of_a_gaussian_matches_theory_and_the_data() {
    let mut r = rng(3);
    let g: Vec<f32> = (0..100_000).map(|_| normal(&mut r)).collect();
    let mut h = Histogram::new(2048).unwrap();
    h.add(g.iter().copied());
    // 2 bits symmetric is the ternary quantizer {−c, 0, c}: its optimum for N(0,1) is c = 1.224σ.
    let ternary = h.mse_clip(2, true, 400).unwrap().range.hi;
    assert!((ternary - 1.224).abs() < 0.02, "ternary clip {ternary}");
    for (bits, lo, hi) in [(3u32, 1.8f32, 2.1f32), (4, 2.35, 2.65), (8, 3.3, 5.0)] {
        let clip = h.mse_clip(bits, true, DEFAULT_CLIP_STEPS).unwrap();
        let c = clip.range.hi;
        // Optimal clips of N(0,1) for symmetric uniform quantizers: ~1.96σ (3 bits, 7 levels), ~2.5σ
        // (4 bits, 15 levels); 8 bits hardly clips.
        assert!(c > lo && c < hi, "{bits} bits: clip {c}");
        assert!(clip.mse <= clip.mse_minmax);
        // The model's error is the data's error (piecewise-uniform density vs the samples).
        let emp = empirical_sym_mse(&g, bits, c);
        assert!((clip.mse - emp).abs() < 0.03 * emp, "{bits} bits: model {} vs data {emp}", clip.mse);
        let emp_minmax = empirical_sym_mse(&g, bits, h.min().abs().max(h.max()));
        assert!((clip.mse_minmax - emp_minmax).abs() < 0.03 * emp_minmax);
        if bits < 8 {
            assert!(emp < 0.8 * emp_minmax, "{bits} bits: clipping must help a Gaussian");
        }
    }
    // Asymmetric on U(0, 1): no clipping helps, error is Δ²/12.
    let u: Vec<f32> = (0..100_000).map(|_| r.random::<f32>()).collect();
    let mut h = Histogram::new(2048).unwrap();
    h.add(u.iter().copied());
    let clip = h.mse_clip(4, false, DEFAULT_CLIP_STEPS).unwrap();
    assert!(clip.ratio > 0.95, "ratio {}", clip.ratio);
    let step = 1.0 / 15.0;
    assert!((clip.mse / (step * step / 12.0) - 1.0).abs() < 0.1, "mse {}", clip.mse);
}

#[test]
fn static_int8_scales() {
    let mut r = rng(4);
    let mut x = gaussian(&mut r, 4000, 64, 1.0);
    x[[17, 5]] = 300.0; // one outlier
    let mut obs = HistogramObserver::new(2048, ObserverGranularity::PerTensor).unwrap();
    obs.update(x.view()).unwrap();
    let minmax = static_scale(&obs, ScaleMethod::MinMax).unwrap();
    assert_eq!(minmax, 300.0 / 127.0);
    assert_eq!(minmax, Int8Activations::calibrate_per_tensor(x.view()).unwrap(), "same as lowbit-core's min/max");
    let pct = static_scale(&obs, ScaleMethod::Percentile(99.99)).unwrap();
    assert!(pct < minmax / 30.0, "the percentile ignores the outlier: {pct} vs {minmax}");
    // MSE weighs the outlier's clipping error (300 − c)²/n against the rounding error (c/127)²/12 of all
    // values: the optimum is c* = 300·(1/n) / (1/n + 1/(12·127²)) ≈ 129 for n = 256 000.
    let mse = static_scale(&obs, ScaleMethod::Mse).unwrap();
    let n = x.len() as f64;
    let c_star = 300.0 * (1.0 / n) / (1.0 / n + 1.0 / (12.0 * 127.0 * 127.0));
    assert!((mse as f64 * 127.0 - c_star).abs() < 3.0, "MSE clip {} vs {c_star}", mse * 127.0);
    // And on the data it is the best of the three.
    let err = |s: f32| {
        let q = Int8Activations::quantize_per_tensor(x.view(), s).unwrap().dequantize();
        (&q - &x).mapv(|d| (d as f64) * (d as f64)).sum()
    };
    assert!(err(mse) < err(minmax) && err(mse) < err(pct), "{} {} {}", err(mse), err(minmax), err(pct));
    // Per-channel observers give one scale per feature.
    let mut pc = HistogramObserver::new(256, ObserverGranularity::PerChannel).unwrap();
    pc.update(x.view()).unwrap();
    let scales = static_scales(&pc, ScaleMethod::MinMax).unwrap();
    assert_eq!(scales.len(), 64);
    assert_eq!(scales[5], 300.0 / 127.0);
    assert!(static_scale(&pc, ScaleMethod::MinMax).is_err());
    // All-zero data: scale 1 (lowbit's convention), never 0.
    let mut z = HistogramObserver::new(64, ObserverGranularity::PerTensor).unwrap();
    z.update(Array2::<f32>::zeros((3, 4)).view()).unwrap();
    for m in [ScaleMethod::MinMax, ScaleMethod::Percentile(99.0), ScaleMethod::Mse] {
        assert_eq!(static_scale(&z, m).unwrap(), 1.0);
    }
}

#[test]
fn observer_errors() {
    let mut obs = HistogramObserver::new(128, ObserverGranularity::PerTensor).unwrap();
    assert!(matches!(static_scale(&obs, ScaleMethod::MinMax), Err(CalibError::NoSamples { .. })));
    obs.update(Array2::<f32>::zeros((0, 8)).view()).unwrap(); // empty batch: no-op
    assert!(matches!(obs.percentile(50.0), Err(CalibError::NoSamples { .. })));
    let mut x = Array2::<f32>::ones((4, 8));
    x[[2, 3]] = f32::NAN;
    match obs.update(x.view()) {
        Err(CalibError::NonFinite { what, index, .. }) => {
            assert_eq!(what, "activations");
            assert_eq!(index, "[2, 3]");
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    x[[2, 3]] = f32::INFINITY;
    assert!(matches!(obs.update(x.view()), Err(CalibError::NonFinite { .. })));
    obs.update(Array2::<f32>::ones((2, 8)).view()).unwrap();
    assert!(matches!(obs.update(Array2::<f32>::ones((2, 9)).view()), Err(CalibError::ShapeMismatch { .. })));
    assert!(matches!(obs.percentile(101.0), Err(CalibError::InvalidOption { .. })));
    assert!(matches!(obs.mse_clip(1, true, 10), Err(CalibError::InvalidOption { .. })));
    assert!(HistogramObserver::new(1, ObserverGranularity::PerTensor).is_err());
    let mut mm = MinMaxObserver::new(ObserverGranularity::PerTensor);
    assert!(matches!(mm.range(), Err(CalibError::NoSamples { .. })));
    assert!(matches!(mm.update(x.view()), Err(CalibError::NonFinite { .. })));
}
