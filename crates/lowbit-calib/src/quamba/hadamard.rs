//! Offline Hadamard fusion (Quamba2 step 1/4): fold a normalized block-diagonal Hadamard `H` into a weight.
//!
//! `H = diag(H_b, …, H_b)` with `H_b` the `b × b` Sylvester Hadamard scaled by `1/√b` (`b` a power of two
//! dividing the dimension), so `H` is symmetric and orthonormal (`H·H = I`). For a row-major weight
//! `W[rows, cols]` of a linear layer `y = W·x`:
//! - [`HadamardSide::Input`]: `W ← W·H` (every row transformed). Then `(W·H)·(H·x) = W·x`: the layer accepts
//!   rotated inputs (`in_proj` after a rotated residual stream, `out_proj` after the online FWHT of `y`).
//! - [`HadamardSide::Output`]: `W ← H·W` (every column transformed): the layer's output comes out rotated
//!   (`out_proj` writing into the rotated residual stream).
//!
//! The transform is lowbit-core's [`fwht_normalized`] (the same butterflies as the online FWHT kernels).

use crate::error::{CalibError, Result};
use lowbit_core::int8::fwht_normalized;

/// Which side of `W[rows, cols]` the Hadamard is fused on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HadamardSide {
    /// `W ← W·H`: columns (input features) are rotated; needs `block | cols`.
    Input,
    /// `W ← H·W`: rows (output features) are rotated; needs `block | rows`.
    Output,
}

impl std::str::FromStr for HadamardSide {
    type Err = CalibError;

    /// `"input"` or `"output"`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "input" => Ok(Self::Input),
            "output" => Ok(Self::Output),
            other => Err(CalibError::option("hadamard side", format!("'{other}' (expected 'input' or 'output')"))),
        }
    }
}

/// The largest power of two that divides `dim` and is at most `max_block` (1 when `dim` is odd or 0).
pub fn hadamard_block(dim: usize, max_block: usize) -> usize {
    if dim == 0 {
        return 1;
    }
    let pow2 = 1usize << dim.trailing_zeros();
    let cap = if max_block == 0 { 1 } else { 1usize << max_block.ilog2() };
    pow2.min(cap)
}

fn check_block(block: usize, dim: usize, what: &str) -> Result<()> {
    if block == 0 || !block.is_power_of_two() || !dim.is_multiple_of(block) {
        return Err(CalibError::option(
            "hadamard block",
            format!("{block} must be a power of two dividing the {what} dimension {dim}"),
        ));
    }
    Ok(())
}

/// Fuses the normalized block-diagonal Hadamard of size `block` into `w[rows, cols]` (row-major), in place.
/// `block` 1 is the identity. Errors: a length that is not `rows·cols`, a block that is not a power of two
/// dividing the transformed dimension, NaN/Inf in `w`.
pub fn fuse_hadamard_in_place(w: &mut [f32], rows: usize, cols: usize, side: HadamardSide, block: usize) -> Result<()> {
    if w.len() != rows * cols {
        return Err(CalibError::shape("weight", format!("{rows}·{cols} values"), w.len()));
    }
    if let Some((i, &v)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let c = cols.max(1);
        return Err(CalibError::NonFinite {
            what: "weight".into(),
            index: format!("[{}, {}]", i / c, i % c),
            value: v as f64,
        });
    }
    match side {
        HadamardSide::Input => check_block(block, cols, "input (cols)")?,
        HadamardSide::Output => check_block(block, rows, "output (rows)")?,
    }
    if block == 1 || w.is_empty() {
        return Ok(());
    }
    match side {
        // Row r of W·H is H·(row r) since H is symmetric: transform every row.
        HadamardSide::Input => w.chunks_exact_mut(cols).for_each(|row| fwht_normalized(row, block)),
        // Column j of H·W is H·(column j): gather a tile of columns of one row block into contiguous vectors
        // (column-major scratch), transform, scatter back. Tiles keep the gather cache-friendly.
        HadamardSide::Output => {
            const TILE: usize = 32;
            let mut scratch = vec![0f32; block * TILE];
            for rb in (0..rows).step_by(block) {
                for c0 in (0..cols).step_by(TILE) {
                    let tc = TILE.min(cols - c0);
                    for r in 0..block {
                        let src = &w[(rb + r) * cols + c0..][..tc];
                        for (j, &v) in src.iter().enumerate() {
                            scratch[j * block + r] = v;
                        }
                    }
                    fwht_normalized(&mut scratch[..tc * block], block);
                    for r in 0..block {
                        let dst = &mut w[(rb + r) * cols + c0..][..tc];
                        for (j, d) in dst.iter_mut().enumerate() {
                            *d = scratch[j * block + r];
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// [`fuse_hadamard_in_place`] on a copy.
pub fn fuse_hadamard(w: &[f32], rows: usize, cols: usize, side: HadamardSide, block: usize) -> Result<Vec<f32>> {
    let mut out = w.to_vec();
    fuse_hadamard_in_place(&mut out, rows, cols, side, block)?;
    Ok(out)
}
