//! CPU references of the state-space-model kernels in `kernels/ssm` (Quamba / Quamba2, Mamba1 side and the
//! pieces Mamba1 and Mamba2 share): the int8 causal depthwise conv1d (prefill and one decode step), the Mamba1
//! selective scan with int8 inputs (forward or reverse, optional initial state) and its one-step state update,
//! and gated RMSNorm → Hadamard → int8.
//!
//! Every function accumulates in f64 from the int8 codes and f32 parameters, so it is the oracle the f32 GPU
//! kernels are compared with: int8 outputs may differ by one code where a value lies on a rounding boundary,
//! f16 outputs by f16 rounding plus the f32 error of the recurrence.
//!
//! Quantization is symmetric (`value = code · scale`, codes −127..127); [`quantize_code`] is
//! `clamp(rne(v / s), −127, 127)`. Layouts are contiguous row-major: activations `[batch, len, channels]`,
//! conv weights `[channels, width]`, conv state `[batch, channels, width]`, `A` `[dim, dstate]`, SSM state
//! `[batch, dim, dstate]`.

use crate::error::{LowbitError, Result};
use crate::util::check_len;

/// `clamp(round_half_even(v / s), −127, 127)` as an int8 code.
pub fn quantize_code(v: f64, s: f64) -> i8 {
    (v / s).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// `v · sigmoid(v)`.
pub fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// `ln(1 + e^v)`, and `v` itself above 20 (PyTorch's and Mamba's threshold).
pub fn softplus(v: f64) -> f64 {
    if v <= 20.0 { v.exp().ln_1p() } else { v }
}

/// Parameters of the int8 conv1d (shared by the prefill and the decode step).
#[derive(Debug, Clone, Copy)]
pub struct Conv1dParams<'a> {
    /// Input scale per channel, `[channels]`.
    pub x_scale: &'a [f32],
    /// Filter taps, `[channels, width]`; tap `j` multiplies `x[t − width + 1 + j]`.
    pub weight: &'a [f32],
    /// Filter width W (Mamba: 4).
    pub width: usize,
    /// Bias per channel, `[channels]`.
    pub bias: Option<&'a [f32]>,
    /// Output scale per channel, `[channels]` (> 0).
    pub out_scale: &'a [f32],
    /// Apply SiLU before quantizing.
    pub silu: bool,
}

impl Conv1dParams<'_> {
    fn validate(&self, channels: usize) -> Result<()> {
        if self.width == 0 {
            return Err(LowbitError::invalid("conv1d width", "must be at least 1"));
        }
        check_len("conv1d x_scale", self.x_scale.len(), channels)?;
        check_len("conv1d weight", self.weight.len(), channels * self.width)?;
        check_len("conv1d out_scale", self.out_scale.len(), channels)?;
        if let Some(b) = self.bias {
            check_len("conv1d bias", b.len(), channels)?;
        }
        if let Some(s) = self.out_scale.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
            return Err(LowbitError::invalid("conv1d out_scale", format!("{s} (must be positive and finite)")));
        }
        Ok(())
    }

    /// The output code of channel `c` whose window (oldest first, `width` codes) is `window`.
    fn output(&self, c: usize, window: impl Iterator<Item = i8>) -> i8 {
        let w = &self.weight[c * self.width..(c + 1) * self.width];
        let acc: f64 = w.iter().zip(window).map(|(&w, x)| f64::from(w) * f64::from(x)).sum();
        let mut y = acc * f64::from(self.x_scale[c]) + self.bias.map_or(0.0, |b| f64::from(b[c]));
        if self.silu {
            y = silu(y);
        }
        quantize_code(y, f64::from(self.out_scale[c]))
    }
}

/// Int8 causal depthwise conv1d over whole sequences: `x` `[batch, len, channels]` →
/// `y[b, t, c] = quant(act(Σ_j w[c, j] · x[b, t − W + 1 + j, c] · xs[c] + bias[c]) / out_scale[c])`, with `x = 0`
/// before `t = 0`.
pub fn conv1d_int8(x: &[i8], batch: usize, len: usize, channels: usize, p: &Conv1dParams<'_>) -> Result<Vec<i8>> {
    p.validate(channels)?;
    check_len("conv1d x", x.len(), batch * len * channels)?;
    let w = p.width;
    let mut y = vec![0i8; x.len()];
    for b in 0..batch {
        for t in 0..len {
            for c in 0..channels {
                let window = (0..w).map(|j| {
                    let src = t as isize - (w as isize - 1) + j as isize;
                    if src < 0 { 0 } else { x[(b * len + src as usize) * channels + c] }
                });
                y[(b * len + t) * channels + c] = p.output(c, window);
            }
        }
    }
    Ok(y)
}

/// The conv state `[batch, channels, width]` a decode step continues from after a prefill of `x`
/// `[batch, len, channels]`: the last `width` input codes of each channel, oldest first, zero-padded in front
/// when `len < width`.
pub fn conv1d_state_after(x: &[i8], batch: usize, len: usize, channels: usize, width: usize) -> Result<Vec<i8>> {
    check_len("conv1d x", x.len(), batch * len * channels)?;
    let mut st = vec![0i8; batch * channels * width];
    for b in 0..batch {
        for c in 0..channels {
            for j in 0..width {
                let src = len as isize - width as isize + j as isize;
                if src >= 0 {
                    st[(b * channels + c) * width + j] = x[(b * len + src as usize) * channels + c];
                }
            }
        }
    }
    Ok(st)
}

/// One decode step of [`conv1d_int8`]: `state` `[batch, channels, width]` is shifted left and `x[b, c]` appended
/// (in place), then the output `[batch, channels]` is computed from the new window.
pub fn conv1d_update_int8(
    x: &[i8],
    state: &mut [i8],
    batch: usize,
    channels: usize,
    p: &Conv1dParams<'_>,
) -> Result<Vec<i8>> {
    p.validate(channels)?;
    check_len("conv1d x", x.len(), batch * channels)?;
    check_len("conv1d state", state.len(), batch * channels * p.width)?;
    let mut y = vec![0i8; batch * channels];
    for b in 0..batch {
        for c in 0..channels {
            let row = &mut state[(b * channels + c) * p.width..(b * channels + c + 1) * p.width];
            row.rotate_left(1);
            row[p.width - 1] = x[b * channels + c];
            y[b * channels + c] = p.output(c, row.iter().copied());
        }
    }
    Ok(y)
}

/// Int8 inputs of the Mamba1 selective scan, contiguous `[batch, len, ·]` (`len = 1` for a decode step).
#[derive(Debug, Clone, Copy)]
pub struct ScanInputs<'a> {
    /// u (the conv output), `[batch, len, dim]`.
    pub u: &'a [i8],
    /// dt (after dt_proj), `[batch, len, dim]`.
    pub dt: &'a [i8],
    /// B, `[batch, len, dstate]`.
    pub b: &'a [i8],
    /// C, `[batch, len, dstate]`.
    pub c: &'a [i8],
    /// The gate z, `[batch, len, dim]`.
    pub z: Option<&'a [i8]>,
}

/// Scales and float parameters of the Mamba1 selective scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanParams<'a> {
    /// Scale of u per channel, `[dim]`.
    pub u_scale: &'a [f32],
    /// Per-tensor scale of dt.
    pub dt_scale: f32,
    /// dt bias, `[dim]`.
    pub dt_bias: Option<&'a [f32]>,
    /// Added after the softplus (`1e-4` for typeseg, else 0).
    pub dt_add: f32,
    /// Apply softplus to `dt · dt_scale + dt_bias`.
    pub delta_softplus: bool,
    /// A `[dim, dstate]` (negative: `−exp(A_log)`).
    pub a: &'a [f32],
    /// Per-tensor scale of B.
    pub b_scale: f32,
    /// Per-tensor scale of C.
    pub c_scale: f32,
    /// D skip, `[dim]`.
    pub d_skip: Option<&'a [f32]>,
    /// Per-tensor scale of z.
    pub z_scale: f32,
    /// Scan `t = len − 1` down to 0.
    pub reverse: bool,
}

/// Sizes of a selective scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanShape {
    /// Sequences.
    pub batch: usize,
    /// Timesteps per sequence.
    pub len: usize,
    /// Channels (Mamba1 `d_inner`).
    pub dim: usize,
    /// States per channel (Mamba1 `d_state`).
    pub dstate: usize,
}

fn validate_scan(inp: &ScanInputs<'_>, p: &ScanParams<'_>, s: ScanShape) -> Result<()> {
    let ScanShape { batch, len, dim, dstate } = s;
    if batch == 0 || len == 0 || dim == 0 || dstate == 0 {
        return Err(LowbitError::shape("selective scan", "non-zero batch, len, dim, dstate", format!("{s:?}")));
    }
    check_len("selective scan u", inp.u.len(), batch * len * dim)?;
    check_len("selective scan dt", inp.dt.len(), batch * len * dim)?;
    check_len("selective scan B", inp.b.len(), batch * len * dstate)?;
    check_len("selective scan C", inp.c.len(), batch * len * dstate)?;
    if let Some(z) = inp.z {
        check_len("selective scan z", z.len(), batch * len * dim)?;
    }
    check_len("selective scan u_scale", p.u_scale.len(), dim)?;
    check_len("selective scan A", p.a.len(), dim * dstate)?;
    if let Some(v) = p.dt_bias {
        check_len("selective scan dt_bias", v.len(), dim)?;
    }
    if let Some(v) = p.d_skip {
        check_len("selective scan D", v.len(), dim)?;
    }
    Ok(())
}

/// One step for channel `d` at token row `row` (index into `[batch·len]`): updates `h` (`dstate` values) and
/// returns y.
fn scan_step(inp: &ScanInputs<'_>, p: &ScanParams<'_>, s: ScanShape, row: usize, d: usize, h: &mut [f64]) -> f64 {
    let (dim, n) = (s.dim, s.dstate);
    let u = f64::from(inp.u[row * dim + d]) * f64::from(p.u_scale[d]);
    let mut delta =
        f64::from(inp.dt[row * dim + d]) * f64::from(p.dt_scale) + p.dt_bias.map_or(0.0, |v| f64::from(v[d]));
    if p.delta_softplus {
        delta = softplus(delta);
    }
    delta += f64::from(p.dt_add);
    let mut y = 0.0;
    for (k, hk) in h.iter_mut().enumerate() {
        let a = f64::from(p.a[d * n + k]);
        let b = f64::from(inp.b[row * n + k]) * f64::from(p.b_scale);
        let c = f64::from(inp.c[row * n + k]) * f64::from(p.c_scale);
        *hk = (delta * a).exp() * *hk + delta * b * u;
        y += c * *hk;
    }
    y += p.d_skip.map_or(0.0, |v| f64::from(v[d])) * u;
    if let Some(z) = inp.z {
        y *= silu(f64::from(z[row * dim + d]) * f64::from(p.z_scale));
    }
    y
}

/// Output of [`selective_scan_int8`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScanOutput {
    /// y `[batch, len, dim]` (the kernel rounds it to f16).
    pub y: Vec<f32>,
    /// The state after the last step, `[batch, dim, dstate]`.
    pub final_state: Vec<f32>,
}

/// Mamba1 selective scan (see `lowbit_ssm_selective_scan_int8` in `kernels/include/lowbit_kernels.h`), f64
/// throughout; `initial_state` `[batch, dim, dstate]` or zeros.
pub fn selective_scan_int8(
    inp: &ScanInputs<'_>,
    p: &ScanParams<'_>,
    s: ScanShape,
    initial_state: Option<&[f32]>,
) -> Result<ScanOutput> {
    validate_scan(inp, p, s)?;
    let ScanShape { batch, len, dim, dstate } = s;
    if let Some(h0) = initial_state {
        check_len("selective scan initial_state", h0.len(), batch * dim * dstate)?;
    }
    let mut y = vec![0f32; batch * len * dim];
    let mut fin = vec![0f32; batch * dim * dstate];
    let mut h = vec![0f64; dstate];
    for b in 0..batch {
        for d in 0..dim {
            let off = (b * dim + d) * dstate;
            for (k, hk) in h.iter_mut().enumerate() {
                *hk = initial_state.map_or(0.0, |h0| f64::from(h0[off + k]));
            }
            for i in 0..len {
                let t = if p.reverse { len - 1 - i } else { i };
                let row = b * len + t;
                y[row * dim + d] = scan_step(inp, p, s, row, d, &mut h) as f32;
            }
            for (k, hk) in h.iter().enumerate() {
                fin[off + k] = *hk as f32;
            }
        }
    }
    Ok(ScanOutput { y, final_state: fin })
}

/// One decode step of the selective scan: inputs with `len = 1` (`s.len` must be 1), `state` `[batch, dim,
/// dstate]` updated in place; returns y `[batch, dim]`.
pub fn selective_state_update_int8(
    state: &mut [f32],
    inp: &ScanInputs<'_>,
    p: &ScanParams<'_>,
    s: ScanShape,
) -> Result<Vec<f32>> {
    if s.len != 1 {
        return Err(LowbitError::shape("selective state update len", 1, s.len));
    }
    let out = selective_scan_int8(inp, p, s, Some(state))?;
    state.copy_from_slice(&out.final_state);
    Ok(out.y)
}

/// Parameters of [`gated_rmsnorm_quant`].
#[derive(Debug, Clone, Copy)]
pub struct GatedNormParams<'a> {
    /// Per-tensor scale of z.
    pub z_scale: f32,
    /// Per-channel weight `[dim]`, applied after the (optional) norm.
    pub weight: Option<&'a [f32]>,
    /// Channels per RMSNorm group (dividing dim); ignored without `norm`.
    pub group_size: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Apply the group RMSNorm (Mamba2); Mamba1 gates only.
    pub norm: bool,
    /// Normalized FWHT block size (power of two dividing dim; 0 or 1 = none).
    pub hadamard: usize,
    /// Static per-tensor output scale (> 0).
    pub out_scale: f32,
}

/// In-place normalized FWHT on each block of `h` values (`h` a power of two), in f64.
pub fn fwht_normalized_f64(v: &mut [f64], h: usize) {
    crate::int8::fwht_blocks(v, h, 1.0 / (h as f64).sqrt());
}

/// Gated RMSNorm → Hadamard → int8 (see `lowbit_ssm_gated_rmsnorm_quant`): `y` `[rows, dim]` (f16 values as f32),
/// `z` `[rows, dim]` codes → int8 `[rows, dim]`.
pub fn gated_rmsnorm_quant(
    y: &[f32],
    z: Option<&[i8]>,
    rows: usize,
    dim: usize,
    p: &GatedNormParams<'_>,
) -> Result<Vec<i8>> {
    check_len("gated norm y", y.len(), rows * dim)?;
    if let Some(z) = z {
        check_len("gated norm z", z.len(), rows * dim)?;
    }
    if let Some(w) = p.weight {
        check_len("gated norm weight", w.len(), dim)?;
    }
    if p.norm && (p.group_size == 0 || !dim.is_multiple_of(p.group_size)) {
        return Err(LowbitError::invalid(
            "gated norm group_size",
            format!("{} (must divide dim = {dim})", p.group_size),
        ));
    }
    if p.hadamard > 1 && (!p.hadamard.is_power_of_two() || !dim.is_multiple_of(p.hadamard)) {
        return Err(LowbitError::invalid(
            "hadamard size",
            format!("{} (power of two dividing dim = {dim})", p.hadamard),
        ));
    }
    if !(p.out_scale > 0.0 && p.out_scale.is_finite()) {
        return Err(LowbitError::invalid("gated norm out_scale", format!("{} (must be positive)", p.out_scale)));
    }
    let mut out = vec![0i8; rows * dim];
    let mut g = vec![0f64; dim];
    for r in 0..rows {
        for (i, gi) in g.iter_mut().enumerate() {
            let mut v = f64::from(y[r * dim + i]);
            if let Some(z) = z {
                v *= silu(f64::from(z[r * dim + i]) * f64::from(p.z_scale));
            }
            *gi = v;
        }
        if p.norm {
            for grp in g.chunks_mut(p.group_size) {
                let ms = grp.iter().map(|v| v * v).sum::<f64>() / grp.len() as f64;
                let inv = 1.0 / (ms + f64::from(p.eps)).sqrt();
                grp.iter_mut().for_each(|v| *v *= inv);
            }
        }
        if let Some(w) = p.weight {
            g.iter_mut().zip(w).for_each(|(v, &w)| *v *= f64::from(w));
        }
        if p.hadamard > 1 {
            fwht_normalized_f64(&mut g, p.hadamard);
        }
        for (o, v) in out[r * dim..(r + 1) * dim].iter_mut().zip(&g) {
            *o = quantize_code(*v, f64::from(p.out_scale));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn codes(n: usize, rng: &mut StdRng) -> Vec<i8> {
        (0..n).map(|_| rng.random_range(-127i32..=127) as i8).collect()
    }

    fn floats(n: usize, lo: f32, hi: f32, rng: &mut StdRng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    }

    /// The f64 FWHT is the normalized Sylvester-Hadamard matrix (entry (i, j) = (-1)^popcount(i & j) / sqrt(h))
    /// applied per block, and the f32 one (`int8::fwht_normalized`, the same butterflies) agrees with it.
    #[test]
    fn fwht_f64_is_the_hadamard_matrix_and_matches_f32() {
        let mut r = StdRng::seed_from_u64(7);
        for h in [1usize, 2, 4, 16, 64] {
            let x: Vec<f64> = (0..3 * h).map(|_| r.random_range(-2.0..2.0)).collect();
            let mut got = x.clone();
            fwht_normalized_f64(&mut got, h);
            let mut got32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            crate::int8::fwht_normalized(&mut got32, h);
            for (b, block) in x.chunks(h).enumerate() {
                for i in 0..h {
                    let dot: f64 =
                        (0..h).map(|j| if (i & j).count_ones().is_multiple_of(2) { block[j] } else { -block[j] }).sum();
                    let want = dot / (h as f64).sqrt();
                    let (g64, g32) = (got[b * h + i], f64::from(got32[b * h + i]));
                    assert!((g64 - want).abs() < 1e-12, "h {h} block {b} row {i}: f64 {g64} vs {want}");
                    assert!((g32 - want).abs() < 1e-4, "h {h} block {b} row {i}: f32 {g32} vs {want}");
                }
            }
        }
    }

    struct Scan {
        u: Vec<i8>,
        dt: Vec<i8>,
        b: Vec<i8>,
        c: Vec<i8>,
        z: Vec<i8>,
        u_scale: Vec<f32>,
        dt_bias: Vec<f32>,
        a: Vec<f32>,
        d: Vec<f32>,
        s: ScanShape,
    }

    impl Scan {
        fn new(s: ScanShape, seed: u64) -> Self {
            let mut r = StdRng::seed_from_u64(seed);
            let ScanShape { batch, len, dim, dstate } = s;
            Self {
                u: codes(batch * len * dim, &mut r),
                dt: codes(batch * len * dim, &mut r),
                b: codes(batch * len * dstate, &mut r),
                c: codes(batch * len * dstate, &mut r),
                z: codes(batch * len * dim, &mut r),
                u_scale: floats(dim, 0.005, 0.02, &mut r),
                dt_bias: floats(dim, -4.0, -1.0, &mut r),
                a: floats(dim * dstate, -8.0, -0.5, &mut r),
                d: floats(dim, 0.5, 1.5, &mut r),
                s,
            }
        }
        fn inputs(&self) -> ScanInputs<'_> {
            ScanInputs { u: &self.u, dt: &self.dt, b: &self.b, c: &self.c, z: Some(&self.z) }
        }
        fn params(&self, reverse: bool) -> ScanParams<'_> {
            ScanParams {
                u_scale: &self.u_scale,
                dt_scale: 0.02,
                dt_bias: Some(&self.dt_bias),
                dt_add: 1e-4,
                delta_softplus: true,
                a: &self.a,
                b_scale: 0.01,
                c_scale: 0.015,
                d_skip: Some(&self.d),
                z_scale: 0.03,
                reverse,
            }
        }
        /// Timestep t of every sequence as a len-1 input set.
        fn step(&self, t: usize) -> [Vec<i8>; 5] {
            let ScanShape { batch, len, dim, dstate } = self.s;
            let pick = |v: &[i8], w: usize| -> Vec<i8> {
                (0..batch).flat_map(|b| v[(b * len + t) * w..(b * len + t + 1) * w].to_vec()).collect()
            };
            [pick(&self.u, dim), pick(&self.dt, dim), pick(&self.b, dstate), pick(&self.c, dstate), pick(&self.z, dim)]
        }
    }

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn scan_over_len_steps_equals_len_single_step_updates() {
        let s = ScanShape { batch: 2, len: 9, dim: 5, dstate: 7 };
        let sc = Scan::new(s, 1);
        let mut r = StdRng::seed_from_u64(2);
        let h0 = floats(2 * 5 * 7, -1.0, 1.0, &mut r);
        let full = selective_scan_int8(&sc.inputs(), &sc.params(false), s, Some(&h0)).unwrap();
        let mut state = h0.clone();
        for t in 0..s.len {
            let [u, dt, b, c, z] = sc.step(t);
            let inp = ScanInputs { u: &u, dt: &dt, b: &b, c: &c, z: Some(&z) };
            let y =
                selective_state_update_int8(&mut state, &inp, &sc.params(false), ScanShape { len: 1, ..s }).unwrap();
            for bb in 0..s.batch {
                for d in 0..s.dim {
                    let want = full.y[(bb * s.len + t) * s.dim + d];
                    assert!(
                        close(y[bb * s.dim + d], want, 1e-5),
                        "t={t} b={bb} d={d}: {} vs {want}",
                        y[bb * s.dim + d]
                    );
                }
            }
        }
        for (a, b) in state.iter().zip(&full.final_state) {
            assert!(close(*a, *b, 1e-5), "{a} vs {b}");
        }
        // The state actually moved away from the initial one and y is not trivially zero.
        assert!(state.iter().zip(&h0).any(|(a, b)| (a - b).abs() > 1e-3));
        assert!(full.y.iter().filter(|v| v.abs() > 1e-4).count() > full.y.len() / 2);
    }

    #[test]
    fn reverse_equals_the_forward_scan_of_the_reversed_sequence() {
        let s = ScanShape { batch: 3, len: 11, dim: 4, dstate: 16 };
        let sc = Scan::new(s, 3);
        let rev = selective_scan_int8(&sc.inputs(), &sc.params(true), s, None).unwrap();
        let flip = |v: &[i8], w: usize| -> Vec<i8> {
            let mut out = Vec::with_capacity(v.len());
            for b in 0..s.batch {
                for t in (0..s.len).rev() {
                    out.extend_from_slice(&v[(b * s.len + t) * w..(b * s.len + t + 1) * w]);
                }
            }
            out
        };
        let (u, dt, b, c, z) =
            (flip(&sc.u, s.dim), flip(&sc.dt, s.dim), flip(&sc.b, s.dstate), flip(&sc.c, s.dstate), flip(&sc.z, s.dim));
        let inp = ScanInputs { u: &u, dt: &dt, b: &b, c: &c, z: Some(&z) };
        let fwd = selective_scan_int8(&inp, &sc.params(false), s, None).unwrap();
        assert_eq!(rev.final_state, fwd.final_state);
        for bb in 0..s.batch {
            for t in 0..s.len {
                let a = &rev.y[(bb * s.len + t) * s.dim..][..s.dim];
                let f = &fwd.y[(bb * s.len + s.len - 1 - t) * s.dim..][..s.dim];
                assert_eq!(a, f, "b={bb} t={t}");
            }
        }
        // Reverse really differs from forward.
        let plain = selective_scan_int8(&sc.inputs(), &sc.params(false), s, None).unwrap();
        assert_ne!(plain.y, rev.y);
    }

    #[test]
    fn scan_matches_a_hand_computed_single_state() {
        // One channel, one state, two steps, no softplus: h1 = e^{δA}·0 + δ·B·u, y1 = C·h1 + D·u.
        let (u, dt, b, c) = ([10i8, -20], [50i8, 25], [3i8, -4], [7i8, 2]);
        let p = ScanParams {
            u_scale: &[0.1],
            dt_scale: 0.01,
            dt_bias: Some(&[0.25]),
            dt_add: 0.0,
            delta_softplus: false,
            a: &[-2.0],
            b_scale: 0.5,
            c_scale: 0.25,
            d_skip: Some(&[0.5]),
            z_scale: 1.0,
            reverse: false,
        };
        let s = ScanShape { batch: 1, len: 2, dim: 1, dstate: 1 };
        let out = selective_scan_int8(&ScanInputs { u: &u, dt: &dt, b: &b, c: &c, z: None }, &p, s, None).unwrap();
        let (d1, d2) = (0.75f64, 0.5f64);
        let h1 = d1 * 1.5 * 1.0;
        let y1 = 1.75 * h1 + 0.5;
        let h2 = (d2 * -2.0f64).exp() * h1 + d2 * -2.0 * -2.0;
        let y2 = 0.5 * h2 - 1.0;
        assert!(close(out.y[0], y1 as f32, 1e-6) && close(out.y[1], y2 as f32, 1e-6), "{:?}", out.y);
        assert!(close(out.final_state[0], h2 as f32, 1e-6));
    }

    fn conv_case(channels: usize, width: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut r = StdRng::seed_from_u64(seed);
        (
            floats(channels, 0.01, 0.03, &mut r),
            floats(channels * width, -1.0, 1.0, &mut r),
            floats(channels, -0.5, 0.5, &mut r),
            floats(channels, 0.005, 0.02, &mut r),
        )
    }

    #[test]
    fn conv_prefill_equals_decode_steps_from_an_empty_state() {
        let (batch, len, ch) = (2, 7, 5);
        for width in 1..=4 {
            let (xs, w, bias, os) = conv_case(ch, width, width as u64);
            let p = Conv1dParams {
                x_scale: &xs,
                weight: &w,
                width,
                bias: Some(&bias),
                out_scale: &os,
                silu: width % 2 == 0,
            };
            let mut r = StdRng::seed_from_u64(10 + width as u64);
            let x = codes(batch * len * ch, &mut r);
            let y = conv1d_int8(&x, batch, len, ch, &p).unwrap();
            let mut state = vec![0i8; batch * ch * width];
            for t in 0..len {
                let xt: Vec<i8> =
                    (0..batch).flat_map(|b| x[(b * len + t) * ch..(b * len + t + 1) * ch].to_vec()).collect();
                let yt = conv1d_update_int8(&xt, &mut state, batch, ch, &p).unwrap();
                let want: Vec<i8> =
                    (0..batch).flat_map(|b| y[(b * len + t) * ch..(b * len + t + 1) * ch].to_vec()).collect();
                assert_eq!(yt, want, "W={width} t={t}");
            }
            assert_eq!(state, conv1d_state_after(&x, batch, len, ch, width).unwrap(), "W={width}");
            assert!(y.iter().filter(|v| **v != 0).count() > y.len() / 2, "W={width}: outputs mostly zero");
        }
    }

    #[test]
    fn conv_hand_computed_taps_are_causal_and_right_aligned() {
        // W = 3, one channel, unit scales: y[t] = 1·x[t-2] + 2·x[t-1] + 3·x[t].
        let p = Conv1dParams {
            x_scale: &[1.0],
            weight: &[1.0, 2.0, 3.0],
            width: 3,
            bias: Some(&[0.5]),
            out_scale: &[1.0],
            silu: false,
        };
        let y = conv1d_int8(&[1, 2, 3, 4], 1, 4, 1, &p).unwrap();
        // 3 + .5 -> 4 (ties to even: 3.5 -> 4), 2+6+.5 = 8.5 -> 8, 1+4+9+.5 = 14.5 -> 14, 2+6+12+.5 = 20.5 -> 20
        assert_eq!(y, vec![4, 8, 14, 20]);
        let big = conv1d_int8(&[127, 127, 127], 1, 3, 1, &p).unwrap();
        assert_eq!(big[2], 127, "saturates");
    }

    #[test]
    fn gated_norm_with_hadamard_preserves_the_norm_and_matches_manual_math() {
        let (rows, dim) = (3, 64);
        let mut r = StdRng::seed_from_u64(5);
        let y = floats(rows * dim, -2.0, 2.0, &mut r);
        let z = codes(rows * dim, &mut r);
        let w = floats(dim, 0.5, 1.5, &mut r);
        let p = GatedNormParams {
            z_scale: 0.03,
            weight: Some(&w),
            group_size: 16,
            eps: 1e-5,
            norm: true,
            hadamard: 0,
            out_scale: 0.03,
        };
        let plain = gated_rmsnorm_quant(&y, Some(&z), rows, dim, &p).unwrap();
        // Manual first element of the second group.
        let g: Vec<f64> = (16..32).map(|i| f64::from(y[i]) * silu(f64::from(z[i]) * 0.03)).collect();
        let inv = 1.0 / (g.iter().map(|v| v * v).sum::<f64>() / 16.0 + 1e-5f64).sqrt();
        assert_eq!(plain[16], quantize_code(g[0] * inv * f64::from(w[16]), 0.03));
        // The Hadamard rotation is orthonormal: dequantized norms agree to the quantization error.
        let rot = gated_rmsnorm_quant(&y, Some(&z), rows, dim, &GatedNormParams { hadamard: 32, ..p }).unwrap();
        let n = |v: &[i8]| v.iter().map(|c| f64::from(*c).powi(2)).sum::<f64>().sqrt();
        for row in 0..rows {
            let (a, b) = (n(&plain[row * dim..][..dim]), n(&rot[row * dim..][..dim]));
            assert!((a - b).abs() < 0.05 * a, "row {row}: {a} vs {b}");
        }
        assert_ne!(plain, rot);
        let e = gated_rmsnorm_quant(&y, None, rows, dim, &GatedNormParams { group_size: 48, ..p }).unwrap_err();
        assert!(e.to_string().contains("group_size"), "{e}");
    }
}
