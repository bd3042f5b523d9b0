//! Hessian accumulation against the naive f64 formula, merging, and errors.

mod common;

use common::*;
use lowbit_calib::{CalibError, GptqOptions, Hessian, HessianAccumulator, gptq_quantize};
use ndarray::{Array2, array, s};

#[test]
fn accumulator_matches_naive_formula_over_batches() {
    let mut r = rng(1);
    let k = 300; // two column blocks, the second partial
    let x = correlated_activations(&mut r, 2600, k, 20); // > one row chunk
    let mut acc = HessianAccumulator::new(k).unwrap();
    let mut other = HessianAccumulator::new(k).unwrap();
    acc.update(x.slice(s![..7, ..])).unwrap();
    acc.update(x.slice(s![7..2400, ..])).unwrap();
    acc.update(x.slice(s![2400..2400, ..])).unwrap();
    other.update(x.slice(s![2400.., ..])).unwrap();
    acc.merge(&other).unwrap();
    assert_eq!(acc.samples(), 2600);
    let h = acc.finish().unwrap();
    let xd = x.mapv(f64::from);
    let want = xd.t().dot(&xd) * (2.0 / 2600.0);
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let err = (&h.matrix() - &want).iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(err < 1e-5 * scale, "max error {err} (scale {scale})");
    let m = h.matrix();
    for i in 0..k {
        for j in 0..k {
            assert_eq!(m[[i, j]], m[[j, i]]);
        }
    }
    assert_eq!(h.samples(), 2600);
    assert_eq!(h.k(), k);
}

#[test]
fn hessian_errors() {
    assert!(matches!(HessianAccumulator::new(0), Err(CalibError::ShapeMismatch { .. })));
    let mut acc = HessianAccumulator::new(4).unwrap();
    assert!(matches!(acc.finish(), Err(CalibError::NoSamples { .. })));
    assert!(matches!(acc.update(Array2::<f32>::ones((2, 5)).view()), Err(CalibError::ShapeMismatch { .. })));
    let mut x = Array2::<f32>::ones((3, 4));
    x[[1, 2]] = f32::NEG_INFINITY;
    match acc.update(x.view()) {
        Err(CalibError::NonFinite { what, index, .. }) => {
            assert_eq!((what.as_str(), index.as_str()), ("activations", "[1, 2]"))
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert_eq!(acc.samples(), 0, "a rejected batch adds nothing");
    assert!(Hessian::from_matrix(array![[1.0, 2.0], [0.0, 1.0]], 1).is_err(), "not symmetric");
    assert!(Hessian::from_matrix(array![[-1.0]], 1).is_err(), "negative diagonal");
    assert!(matches!(Hessian::from_matrix(array![[1.0]], 0), Err(CalibError::NoSamples { .. })));
    assert!(Hessian::from_matrix(array![[f64::NAN]], 1).is_err());
}

#[test]
fn gptq_errors() {
    let mut r = rng(2);
    let w = gaussian(&mut r, 4, 64, 0.1);
    let x = gaussian(&mut r, 100, 64, 1.0);
    let h = hessian_of(&x);
    let sc = "w4-int-g32".parse().unwrap();
    let opts = GptqOptions::default();
    let mut bad = w.clone();
    bad[[3, 60]] = f32::NAN;
    match gptq_quantize(bad.view(), &h, &sc, &opts) {
        Err(CalibError::NonFinite { what, index, .. }) => {
            assert_eq!((what.as_str(), index.as_str()), ("weight", "[3, 60]"))
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let h32 = hessian_of(&gaussian(&mut r, 100, 32, 1.0));
    assert!(matches!(gptq_quantize(w.view(), &h32, &sc, &opts), Err(CalibError::ShapeMismatch { .. })));
    let w48 = gaussian(&mut r, 4, 48, 0.1);
    let h48 = hessian_of(&gaussian(&mut r, 100, 48, 1.0));
    assert!(matches!(gptq_quantize(w48.view(), &h48, &sc, &opts), Err(CalibError::Core(_))), "48 % 32 != 0");
    assert!(gptq_quantize(Array2::<f32>::zeros((0, 64)).view(), &h, &sc, &opts).is_err());
    for o in [
        GptqOptions { damp_percent: 0.0, ..GptqOptions::default() },
        GptqOptions { damp_percent: f64::NAN, ..GptqOptions::default() },
        GptqOptions { max_damp_percent: 0.001, ..GptqOptions::default() },
        GptqOptions { block_size: 0, ..GptqOptions::default() },
    ] {
        assert!(matches!(gptq_quantize(w.view(), &h, &sc, &o), Err(CalibError::InvalidOption { .. })), "{o:?}");
    }
    // Indefinite: eigenvalues 4 and −2; damping up to 100 % of the mean diagonal (1) cannot fix it.
    let w2 = gaussian(&mut r, 2, 32, 0.1);
    let mut m = Array2::<f64>::eye(32);
    m[[0, 1]] = 3.0;
    m[[1, 0]] = 3.0;
    let hi = Hessian::from_matrix(m, 10).unwrap();
    match gptq_quantize(w2.view(), &hi, &"w4-int-g32".parse().unwrap(), &opts) {
        Err(CalibError::NotPositiveDefinite { attempts, .. }) => assert!(attempts > 1),
        other => panic!("expected NotPositiveDefinite, got {other:?}"),
    }
    // A mildly indefinite Hessian is rescued by a larger damping, reported in the stats.
    let mut m = Array2::<f64>::eye(32);
    m[[0, 1]] = 1.02;
    m[[1, 0]] = 1.02;
    let hm = Hessian::from_matrix(m, 10).unwrap();
    let out = gptq_quantize(w2.view(), &hm, &"w4-int-g32".parse().unwrap(), &opts).unwrap();
    assert!(out.stats.attempts > 1 && out.stats.damp_percent > 0.01, "{:?}", out.stats);
}
