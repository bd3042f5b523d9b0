//! GPTQ: beats round-to-nearest in output error on correlated activations, equals lowbit-core's RTN when the
//! Hessian is diagonal (no error feedback), act-order `g_idx` is consistent, every scheme validates.

mod common;

use common::*;
use lowbit_calib::{
    CalibError, DatatypeSearch, ErrorMetric, GptqOptions, Hessian, gptq_quantize, gptq_quantize_lut, rtn_quantize,
};
use lowbit_core::{QuantizedWeight, WeightScheme, quantize};
use ndarray::Array2;

const SCHEMES: [&str; 16] = [
    "w2-int-g32",
    "w3-int-g64",
    "w4-int-g128",
    "w4-int-asym-g32",
    "w8-int-pc",
    "w4-int-pc",
    "w3-int-asym-g128",
    "w8-int-asym-g64",
    "w4-nf4-g64",
    "w4-nf4-pc",
    "w3-mixed-g32",
    "w4-mixed-g128",
    "w4-mixed-g64",
    "w2-bipolar-g32",
    "w1-bipolar-g128",
    "w4-bipolar-pc",
];

fn scheme(s: &str) -> WeightScheme {
    s.parse().unwrap()
}

#[test]
fn gptq_beats_rtn_in_output_error_for_every_scheme() {
    let mut r = rng(7);
    let (n, k, rows) = (48, 256, 1024);
    let x = correlated_activations(&mut r, rows, k, 24);
    let w = gaussian(&mut r, n, k, 0.05);
    let h = hessian_of(&x);
    for s in SCHEMES {
        let sc = scheme(s);
        let rtn = quantize(w.view(), &sc).unwrap().dequantize();
        for act_order in [false, true] {
            let opts = GptqOptions { act_order, ..GptqOptions::default() };
            let out = gptq_quantize(w.view(), &h, &sc, &opts).unwrap();
            out.weight.validate().unwrap();
            assert_eq!(out.weight.scheme(), sc, "{s}");
            let e_rtn = output_error(&x, &w, &rtn);
            let e_gptq = output_error(&x, &w, &out.weight.dequantize());
            // GPTQ must cut the output error clearly (typically 2-10x here), not just tie.
            assert!(e_gptq < 0.8 * e_rtn, "{s} act_order={act_order}: GPTQ {e_gptq:.4e} vs RTN {e_rtn:.4e}");
            // The Hessian form of the output error agrees with the direct one.
            let via_h = h.output_error(w.view(), out.weight.dequantize().view()).unwrap();
            let direct = 2.0 / rows as f64 * e_gptq;
            // f32 products inside the accumulator: agreement to ~1e-6 relative.
            assert!((via_h - direct).abs() <= 1e-4 * direct.max(1e-30), "{s}: {via_h} vs {direct}");
            eprintln!("{s} act_order={act_order}: GPTQ/RTN output error {:.3}", e_gptq / e_rtn);
        }
    }
}

#[test]
fn diagonal_hessian_reproduces_lowbit_core_rtn_bit_for_bit() {
    // With a diagonal H, U = chol(H⁻¹) is diagonal: no error reaches other columns, so GPTQ is RTN.
    let mut r = rng(11);
    let (n, k) = (16, 256);
    let w = gaussian(&mut r, n, k, 0.1);
    let d: Vec<f64> = (0..k).map(|i| 0.5 + (i % 7) as f64).collect();
    let h = Hessian::from_matrix(Array2::from_diag(&ndarray::Array1::from(d)), 100).unwrap();
    for s in SCHEMES {
        let sc = scheme(s);
        let core = quantize(w.view(), &sc).unwrap();
        let out = gptq_quantize(w.view(), &h, &sc, &GptqOptions::default()).unwrap();
        assert_eq!(out.weight, core, "{s}: GPTQ with a diagonal Hessian differs from lowbit-core RTN");
        let rtn = rtn_quantize(w.view(), &sc, &DatatypeSearch::default(), None).unwrap();
        assert_eq!(rtn, core, "{s}: calibrator RTN differs from lowbit-core RTN");
    }
}

#[test]
fn act_order_g_idx_matches_hessian_order_and_dequantizes() {
    let mut r = rng(3);
    let (n, k) = (8, 128);
    let x = correlated_activations(&mut r, 512, k, 8);
    let w = gaussian(&mut r, n, k, 0.1);
    let h = hessian_of(&x);
    let sc = scheme("w4-int-g32");
    let opts = GptqOptions { act_order: true, ..GptqOptions::default() };
    let out = gptq_quantize(w.view(), &h, &sc, &opts).unwrap();
    let QuantizedWeight::Int(q) = &out.weight else { panic!("INT scheme gives an INT weight") };
    let g_idx = q.g_idx.as_ref().expect("act-order INT weight carries g_idx");
    // Group i/G holds the i-th columns by decreasing Hessian diagonal.
    let diag = h.diag();
    let mut perm: Vec<usize> = (0..k).collect();
    perm.sort_by(|&a, &b| diag[b].total_cmp(&diag[a]).then(a.cmp(&b)));
    for (i, &c) in perm.iter().enumerate() {
        assert_eq!(g_idx[c] as usize, i / 32, "column {c}");
    }
    // Each column dequantizes with its g_idx group's scale and zero.
    let deq = q.dequantize();
    let codes = q.unpacked_codes();
    for rr in 0..n {
        for c in 0..k {
            let gi = rr * q.n_groups() + g_idx[c] as usize;
            let want = (codes[rr * k + c] as i32 - q.zeros[gi] as i32) as f32 * q.scales[gi].to_f32();
            assert_eq!(deq[[rr, c]], want);
        }
    }
    assert!(out.stats.act_order && !out.stats.static_groups);
    // Formats without g_idx fall back to static groups under act-order.
    let mixed = gptq_quantize(w.view(), &h, &scheme("w4-mixed-g32"), &opts).unwrap();
    assert!(mixed.stats.static_groups);
    let static_int = GptqOptions { act_order: true, static_groups: true, ..GptqOptions::default() };
    let out = gptq_quantize(w.view(), &h, &sc, &static_int).unwrap();
    let QuantizedWeight::Int(q) = &out.weight else { panic!() };
    assert!(q.g_idx.is_none(), "static groups keep consecutive groups");
}

#[test]
fn bitmod_hessian_weighted_search_and_candidates() {
    let mut r = rng(5);
    let (n, k) = (24, 128);
    let x = correlated_activations(&mut r, 512, k, 16);
    let w = gaussian(&mut r, n, k, 0.05);
    let h = hessian_of(&x);
    let sc = scheme("w3-mixed-g32");
    let only_er = DatatypeSearch { metric: ErrorMetric::Mse, candidates: vec![0, 1] };
    let q = rtn_quantize(w.view(), &sc, &only_er, None).unwrap();
    let QuantizedWeight::Mixed(m) = &q else { panic!() };
    let hist = m.type_histogram();
    assert_eq!(hist[2] + hist[3], 0, "only ER types may be chosen: {hist:?}");
    // The output-aware metric never does worse on the diagonal-weighted error it optimises.
    let hd = DatatypeSearch { metric: ErrorMetric::HessianDiag, candidates: vec![0, 1, 2, 3] };
    let a = rtn_quantize(w.view(), &sc, &DatatypeSearch::default(), None).unwrap().dequantize();
    let b = rtn_quantize(w.view(), &sc, &hd, Some(&h)).unwrap().dequantize();
    let diag = h.diag();
    let weighted = |wq: &Array2<f32>| -> f64 {
        let mut e = 0.0;
        for ((i, j), v) in wq.indexed_iter() {
            let d = (*v - w[[i, j]]) as f64;
            e += diag[j] * d * d;
        }
        e
    };
    assert!(weighted(&b) <= weighted(&a) * 1.0001, "{} vs {}", weighted(&b), weighted(&a));
    assert!(matches!(rtn_quantize(w.view(), &sc, &hd, None), Err(CalibError::InvalidOption { .. })));
    let opts = GptqOptions { datatype_search: hd, ..GptqOptions::default() };
    let out = gptq_quantize(w.view(), &h, &sc, &opts).unwrap();
    out.weight.validate().unwrap();
}

#[test]
fn custom_lut_and_dead_columns() {
    let mut r = rng(9);
    let (n, k) = (8, 64);
    let mut x = correlated_activations(&mut r, 256, k, 8);
    x.column_mut(5).fill(0.0);
    x.column_mut(40).fill(0.0);
    let w = gaussian(&mut r, n, k, 0.1);
    let h = hessian_of(&x);
    let table = [-1.0f32, -0.4, -0.1, 0.0, 0.1, 0.3, 0.6, 1.0];
    let out =
        gptq_quantize_lut(w.view(), &h, &table, lowbit_core::Granularity::Group(32), &GptqOptions::default()).unwrap();
    assert_eq!(out.stats.dead_columns, 2);
    let deq = out.weight.dequantize();
    for rr in 0..n {
        assert_eq!(deq[[rr, 5]], 0.0);
        assert_eq!(deq[[rr, 40]], 0.0);
    }
    assert!(matches!(
        gptq_quantize(w.view(), &h, &scheme("w3-lut-g32"), &GptqOptions::default()),
        Err(CalibError::UnsupportedScheme { .. })
    ));
}

#[test]
fn clip_search_never_worsens_the_weighted_group_error_and_keeps_gptq_ahead() {
    let mut r = rng(13);
    let (n, k) = (16, 128);
    // Heavy-tailed weights (a few large values per row), where shrinking the range pays off.
    let mut w = gaussian(&mut r, n, k, 0.05);
    for i in 0..n {
        w[[i, (i * 37) % k]] = 0.6;
    }
    let d: Vec<f64> = (0..k).map(|i| 1.0 + (i % 3) as f64).collect();
    let hd = Hessian::from_matrix(Array2::from_diag(&ndarray::Array1::from(d.clone())), 10).unwrap();
    let clip = GptqOptions { clip_search: Some(lowbit_calib::ClipSearch::default()), ..GptqOptions::default() };
    let weighted = |wq: &Array2<f32>| -> f64 {
        wq.indexed_iter().map(|((i, j), v)| d[j] * ((*v - w[[i, j]]) as f64).powi(2)).sum()
    };
    for s in ["w3-int-g32", "w2-int-asym-g64", "w4-nf4-g32", "w2-bipolar-g32", "w3-mixed-g32"] {
        let base = gptq_quantize(w.view(), &hd, &scheme(s), &GptqOptions::default()).unwrap().weight.dequantize();
        let clipped = gptq_quantize(w.view(), &hd, &scheme(s), &clip).unwrap().weight.dequantize();
        // Diagonal H: no error feedback, each group's parameters are the weighted-error minimisers.
        assert!(weighted(&clipped) <= weighted(&base) * (1.0 + 1e-12), "{s}");
        if s == "w3-int-g32" {
            assert!(weighted(&clipped) < 0.9 * weighted(&base), "clipping must help heavy tails at 3 bits");
        }
    }
    let x = correlated_activations(&mut r, 512, k, 12);
    let h = hessian_of(&x);
    let sc = scheme("w3-int-g32");
    let rtn = quantize(w.view(), &sc).unwrap().dequantize();
    let out = gptq_quantize(w.view(), &h, &sc, &clip).unwrap();
    assert!(output_error(&x, &w, &out.weight.dequantize()) < 0.8 * output_error(&x, &w, &rtn));
    let bad = GptqOptions { clip_search: Some(lowbit_calib::ClipSearch { grid: 0, max_shrink: 0.5 }), ..clip };
    assert!(matches!(gptq_quantize(w.view(), &h, &sc, &bad), Err(CalibError::InvalidOption { .. })));
}
