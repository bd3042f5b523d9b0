//! Shared test data: seeded Gaussian matrices and correlated activations.
#![allow(dead_code)]

use lowbit_calib::{Hessian, HessianAccumulator};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// One standard normal sample (Box–Muller).
pub fn normal(r: &mut StdRng) -> f32 {
    let u1: f64 = r.random::<f64>().max(1e-300);
    let u2: f64 = r.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

pub fn gaussian(r: &mut StdRng, rows: usize, cols: usize, std: f32) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| normal(r) * std)
}

/// Correlated activations `[rows, k]`: a rank-`rank` mixture plus 10 % independent noise, with per-feature
/// scales spread over a factor of ~10 (a few "outlier" features, as in real LLM inputs).
pub fn correlated_activations(r: &mut StdRng, rows: usize, k: usize, rank: usize) -> Array2<f32> {
    let z = gaussian(r, rows, rank, 1.0);
    let a = gaussian(r, rank, k, 1.0 / (rank as f32).sqrt());
    let noise = gaussian(r, rows, k, 0.1);
    let scales: Vec<f32> = (0..k).map(|j| if j % 17 == 3 { 8.0 } else { 0.5 + (j % 5) as f32 * 0.25 }).collect();
    let mut x = z.dot(&a) + noise;
    for mut row in x.rows_mut() {
        for (v, s) in row.iter_mut().zip(&scales) {
            *v *= s;
        }
    }
    x
}

pub fn hessian_of(x: &Array2<f32>) -> Hessian {
    let mut acc = HessianAccumulator::new(x.ncols()).unwrap();
    acc.update(x.view()).unwrap();
    acc.finish().unwrap()
}

/// `‖X Wᵀ − X Ŵᵀ‖²_F` in f64.
pub fn output_error(x: &Array2<f32>, w: &Array2<f32>, w_hat: &Array2<f32>) -> f64 {
    let d = (w - w_hat).mapv(f64::from);
    let y = x.mapv(f64::from).dot(&d.t());
    y.iter().map(|v| v * v).sum()
}
