//! The GPTQ Hessian `H = (2/n) Σ xᵀx` of a linear layer's inputs, accumulated batch by batch.
//!
//! GPTQ keeps a running mean (`H ← H·n/(n+m) + (2/(n+m))·XᵀX`). Here the raw sum `Σ XᵀX` is kept in f64 and
//! scaled once in [`HessianAccumulator::finish`]: the same matrix, one rounding instead of one per batch.
//! `n` counts rows (tokens). The reference counts sequences instead, which multiplies `H` by the sequence
//! length: GPTQ's result does not change with a constant factor on `H` (the damping is relative to its mean
//! diagonal and the updates use ratios of `U`'s entries), only the reported loss does.
//! Each batch is multiplied in f32 row chunks (`matrixmultiply` through ndarray's `dot`), only the upper
//! block triangle, split over the available cores, and each chunk's product is added into the f64 sum.

use crate::error::{CalibError, Result, check_finite_f32};
use ndarray::{Array2, ArrayView2, s};

/// Rows per f32 product before it is added into the f64 sum (bounds the f32 accumulation length).
const ROW_CHUNK: usize = 2048;
/// Column block of the block-triangular product.
const COL_BLOCK: usize = 256;

/// Accumulates `Σ xᵀx` over calibration rows of width `k` (the layer's input features).
#[derive(Debug, Clone)]
pub struct HessianAccumulator {
    k: usize,
    rows: usize,
    /// One f64 tile per upper block pair `(bi, bj)`, `bi ≤ bj`.
    tiles: Vec<Tile>,
}

#[derive(Debug, Clone)]
struct Tile {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    sum: Array2<f64>,
}

impl Tile {
    fn add_product(&mut self, x: &ArrayView2<f32>) {
        let a = x.slice(s![.., self.rows.clone()]);
        let b = x.slice(s![.., self.cols.clone()]);
        let p = a.t().dot(&b);
        self.sum.zip_mut_with(&p, |s, &v| *s += v as f64);
    }
}

impl HessianAccumulator {
    /// An empty accumulator for inputs of `k` features. Errors: `k == 0`.
    pub fn new(k: usize) -> Result<Self> {
        if k == 0 {
            return Err(CalibError::shape("Hessian width", "k > 0", 0));
        }
        let starts: Vec<usize> = (0..k).step_by(COL_BLOCK).collect();
        let mut tiles = Vec::new();
        for (i, &a) in starts.iter().enumerate() {
            for &b in &starts[i..] {
                let (ra, rb) = (a..(a + COL_BLOCK).min(k), b..(b + COL_BLOCK).min(k));
                tiles.push(Tile { sum: Array2::zeros((ra.len(), rb.len())), rows: ra, cols: rb });
            }
        }
        Ok(Self { k, rows: 0, tiles })
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Calibration rows (tokens) seen so far.
    pub fn samples(&self) -> usize {
        self.rows
    }

    /// Adds a batch of activations `x[rows, k]` (e.g. every token of a batch, flattened). An empty batch
    /// (`rows == 0`) is a no-op. Errors: wrong width, NaN or infinity (naming the element).
    pub fn update(&mut self, x: ArrayView2<f32>) -> Result<()> {
        if x.ncols() != self.k {
            return Err(CalibError::shape("activations", format!("[rows, {}]", self.k), format!("{:?}", x.dim())));
        }
        if x.nrows() == 0 {
            return Ok(());
        }
        check_finite_f32("activations", &x)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(self.tiles.len());
        for start in (0..x.nrows()).step_by(ROW_CHUNK) {
            let chunk = x.slice(s![start..(start + ROW_CHUNK).min(x.nrows()), ..]);
            if threads <= 1 {
                self.tiles.iter_mut().for_each(|t| t.add_product(&chunk));
                continue;
            }
            // Deal tiles round-robin (diagonal tiles are about half the work of the others, and they are
            // spread through the list), each thread owning its tiles mutably.
            let mut shares: Vec<Vec<&mut Tile>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, t) in self.tiles.iter_mut().enumerate() {
                shares[i % threads].push(t);
            }
            std::thread::scope(|scope| {
                for share in shares {
                    scope.spawn(move || share.into_iter().for_each(|t| t.add_product(&chunk)));
                }
            });
        }
        self.rows += x.nrows();
        Ok(())
    }

    /// Adds another accumulator's data (e.g. one filled on another thread). Errors: different `k`.
    pub fn merge(&mut self, other: &HessianAccumulator) -> Result<()> {
        if other.k != self.k {
            return Err(CalibError::shape("merged accumulator", format!("k = {}", self.k), format!("k = {}", other.k)));
        }
        for (a, b) in self.tiles.iter_mut().zip(&other.tiles) {
            a.sum += &b.sum;
        }
        self.rows += other.rows;
        Ok(())
    }

    /// `H = (2/n)·Σ xᵀx`, symmetric. Errors: no rows seen.
    pub fn finish(&self) -> Result<Hessian> {
        if self.rows == 0 {
            return Err(CalibError::NoSamples { what: "Hessian accumulator".into() });
        }
        let f = 2.0 / self.rows as f64;
        let mut h = Array2::<f64>::zeros((self.k, self.k));
        for t in &self.tiles {
            for (i, r) in t.rows.clone().enumerate() {
                for (j, c) in t.cols.clone().enumerate() {
                    let v = t.sum[[i, j]] * f;
                    h[[r, c]] = v;
                    h[[c, r]] = v;
                }
            }
        }
        Ok(Hessian { h, samples: self.rows })
    }
}

/// A layer's Hessian `H[k, k]` (symmetric positive semi-definite) and the number of rows behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hessian {
    h: Array2<f64>,
    samples: usize,
}

impl Hessian {
    /// Wraps a given matrix (e.g. one saved earlier or computed elsewhere). Errors: not square, empty,
    /// non-finite, not symmetric (relative tolerance 1e-6), a negative diagonal element, or `samples == 0`.
    pub fn from_matrix(h: Array2<f64>, samples: usize) -> Result<Self> {
        let (r, c) = h.dim();
        if r != c || r == 0 {
            return Err(CalibError::shape("Hessian", "a non-empty square matrix", format!("[{r}, {c}]")));
        }
        if samples == 0 {
            return Err(CalibError::NoSamples { what: "Hessian".into() });
        }
        if let Some(((i, j), v)) = h.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(CalibError::NonFinite { what: "Hessian".into(), index: format!("[{i}, {j}]"), value: *v });
        }
        let scale = h.diag().iter().fold(0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
        for i in 0..r {
            if h[[i, i]] < 0.0 {
                return Err(CalibError::option("Hessian", format!("negative diagonal element {} at {i}", h[[i, i]])));
            }
            for j in 0..i {
                if (h[[i, j]] - h[[j, i]]).abs() > 1e-6 * scale {
                    return Err(CalibError::option("Hessian", format!("not symmetric at [{i}, {j}]")));
                }
            }
        }
        Ok(Self { h, samples })
    }

    /// Input features `k`.
    pub fn k(&self) -> usize {
        self.h.nrows()
    }

    /// Calibration rows behind this Hessian.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The matrix.
    pub fn matrix(&self) -> ArrayView2<'_, f64> {
        self.h.view()
    }

    /// The diagonal (`2/n · Σ x_k²`, the per-feature input energy).
    pub fn diag(&self) -> Vec<f64> {
        self.h.diag().to_vec()
    }

    /// The output error of replacing `w` by `w_hat` (both `[N, k]`) measured by this Hessian:
    /// `Σ_rows (w − ŵ) H (w − ŵ)ᵀ = (2/n)·‖X wᵀ − X ŵᵀ‖²_F`, the quantity GPTQ minimises.
    pub fn output_error(&self, w: ArrayView2<f32>, w_hat: ArrayView2<f32>) -> Result<f64> {
        if w.dim() != w_hat.dim() || w.ncols() != self.k() {
            return Err(CalibError::shape(
                "weights",
                format!("two [N, {}] matrices", self.k()),
                format!("{:?} and {:?}", w.dim(), w_hat.dim()),
            ));
        }
        let d = Array2::from_shape_fn(w.dim(), |(i, j)| w[[i, j]] as f64 - w_hat[[i, j]] as f64);
        let dh = d.dot(&self.h);
        Ok((&dh * &d).sum())
    }
}
