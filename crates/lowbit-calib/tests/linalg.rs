//! Cholesky, triangular inverse and the upper Cholesky factor of H⁻¹ against known matrices.

mod common;

use common::*;
use lowbit_calib::linalg::{cholesky_lower, invert_lower, upper_cholesky_of_inverse};
use ndarray::{Array2, array};

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn cholesky_of_a_known_matrix_is_exact() {
    // The textbook example: A = L Lᵀ with small integer L.
    let a = array![[4.0, 12.0, -16.0], [12.0, 37.0, -43.0], [-16.0, -43.0, 98.0]];
    let l = cholesky_lower(a.view()).unwrap().unwrap();
    assert_eq!(l, array![[2.0, 0.0, 0.0], [6.0, 1.0, 0.0], [-8.0, 5.0, 3.0]]);
    let li = invert_lower(l.view()).unwrap();
    // L⁻¹ by forward substitution by hand.
    let want = array![[0.5, 0.0, 0.0], [-3.0, 1.0, 0.0], [19.0 / 3.0, -5.0 / 3.0, 1.0 / 3.0]];
    assert!(max_abs(&(&li - &want)) < 1e-15, "{li:?}");
    assert!(max_abs(&(l.dot(&li) - Array2::<f64>::eye(3))) < 1e-15);
}

#[test]
fn upper_cholesky_of_inverse_of_diagonal_and_known_matrices() {
    let d = array![[4.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 0.25]];
    let u = upper_cholesky_of_inverse(d.view()).unwrap().unwrap();
    assert_eq!(u, array![[0.5, 0.0, 0.0], [0.0, 1.0 / 3.0, 0.0], [0.0, 0.0, 2.0]]);
    // 2×2 by hand: H = [[2, 1], [1, 2]], H⁻¹ = [[2, −1], [−1, 2]]/3, U = [[√(1/2), −√(1/6)], [0, √(2/3)]]
    // (row-major upper factor with Uᵀ U = H⁻¹ has U[1,1]² = 2/3 and U[0,0]² + 0 = ... solved from the bottom).
    let h = array![[2.0, 1.0], [1.0, 2.0]];
    let u = upper_cholesky_of_inverse(h.view()).unwrap().unwrap();
    let hinv = array![[2.0, -1.0], [-1.0, 2.0]] / 3.0;
    assert!(max_abs(&(u.t().dot(&u) - &hinv)) < 1e-15);
    assert!((u[[0, 0]] - (2.0f64 / 3.0).sqrt()).abs() < 1e-15, "{u:?}");
    assert!((u[[0, 1]] + (1.0f64 / 6.0).sqrt()).abs() < 1e-15);
    assert!((u[[1, 1]] - 0.5f64.sqrt()).abs() < 1e-15);
    assert_eq!(u[[1, 0]], 0.0);
}

#[test]
fn upper_cholesky_of_inverse_of_random_spd_and_hilbert() {
    let mut r = rng(1);
    for k in [1usize, 2, 7, 64, 129] {
        let a = gaussian(&mut r, k, k + 3, 1.0).mapv(f64::from);
        let h = a.dot(&a.t()) + Array2::<f64>::eye(k) * 0.1;
        let u = upper_cholesky_of_inverse(h.view()).unwrap().unwrap();
        for i in 0..k {
            assert!(u[[i, i]] > 0.0);
            for j in 0..i {
                assert_eq!(u[[i, j]], 0.0, "U must be upper triangular");
            }
        }
        let id = u.t().dot(&u).dot(&h);
        assert!(max_abs(&(id - Array2::<f64>::eye(k))) < 1e-9, "k = {k}");
    }
    // Hilbert 7×7, condition number ~5e8.
    let k = 7;
    let h = Array2::from_shape_fn((k, k), |(i, j)| 1.0 / (i + j + 1) as f64);
    let u = upper_cholesky_of_inverse(h.view()).unwrap().unwrap();
    let id = u.t().dot(&u).dot(&h);
    assert!(max_abs(&(id - Array2::<f64>::eye(k))) < 1e-6);
}

#[test]
fn indefinite_and_bad_inputs() {
    let h = array![[1.0, 2.0], [2.0, 1.0]];
    assert!(upper_cholesky_of_inverse(h.view()).unwrap().is_none());
    // Exactly singular: the last pivot is rounding noise, rejected rather than inverted.
    let h = array![[2.0, 2.0], [2.0, 2.0]];
    assert!(upper_cholesky_of_inverse(h.view()).unwrap().is_none());
    assert!(cholesky_lower(array![[0.0]].view()).unwrap().is_none());
    assert!(cholesky_lower(Array2::<f64>::zeros((2, 3)).view()).is_err());
    assert!(cholesky_lower(Array2::<f64>::zeros((0, 0)).view()).is_err());
    assert!(cholesky_lower(array![[f64::NAN]].view()).is_err());
    assert!(invert_lower(array![[1.0, 0.0], [1.0, 0.0]].view()).is_err());
}
