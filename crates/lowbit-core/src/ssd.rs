//! CPU references of the Mamba2 SSD (state-space duality) kernels in `kernels/ssm/ssd_*.cu` (Quamba2): the
//! prefill scan over whole sequences and the single decode step, both with int8 inputs.
//!
//! Head `h` of `H` uses group `g = h / (H / G)` of `B` and `C`; per token `t`:
//!
//! ```text
//! delta_t      = clamp(softplus(dt_q[t, h] · dt_scale + dt_bias[h]), lo, hi)
//! h_t[p, n]    = exp(delta_t · A[h]) · h_{t−1}[p, n] + delta_t · x_t[p] · B_t[n]
//! y_t[p]       = Σ_n h_t[p, n] · C_t[n] + D[h] · x_t[p]
//! ```
//!
//! with `x = x_q · x_scale[h·P + p]`, `B = B_q · B_scale[g]`, `C = C_q · C_scale[g]`. The references run this
//! plain recurrence token by token in f64 (not the chunked form the GPU uses), so comparing the kernel with
//! them checks the chunking. Layouts are contiguous row-major: `x` `[batch, len, H, P]`, `dt` `[batch, len, H]`,
//! `B`/`C` `[batch, len, G, N]`, `y` `[batch, len, H, P]`, states `[batch, H, P, N]`; the decode step drops the
//! `len` axis.

use crate::error::{LowbitError, Result};
use crate::util::check_len;

/// Problem sizes of an SSD scan (`len` is ignored by the decode step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsdShape {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub len: usize,
    /// Heads H.
    pub nheads: usize,
    /// Channels per head P.
    pub headdim: usize,
    /// B/C groups G (H % G == 0).
    pub ngroups: usize,
    /// State size N.
    pub dstate: usize,
}

impl SsdShape {
    /// Elements of one state `[batch, H, P, N]`.
    pub fn state_len(&self) -> usize {
        self.batch * self.nheads * self.headdim * self.dstate
    }

    fn validate(&self) -> Result<()> {
        if self.batch == 0 || self.nheads == 0 || self.headdim == 0 || self.ngroups == 0 || self.dstate == 0 {
            return Err(LowbitError::Empty { what: "SSD problem".into(), shape: format!("{self:?}") });
        }
        if !self.nheads.is_multiple_of(self.ngroups) {
            return Err(LowbitError::invalid(
                "SSD ngroups",
                format!("nheads {} is not a multiple of ngroups {}", self.nheads, self.ngroups),
            ));
        }
        Ok(())
    }
}

/// The per-head and per-group parameters of the SSD (shared by the scan and the decode step).
#[derive(Debug, Clone, Copy)]
pub struct SsdParams<'a> {
    /// Scale of every x channel, `[H·P]` (a per-tensor / per-cluster scale expanded per channel).
    pub x_scale: &'a [f32],
    /// Scale of the dt codes.
    pub dt_scale: f32,
    /// dt bias per head, `[H]` (none = 0).
    pub dt_bias: Option<&'a [f32]>,
    /// A per head, `[H]` (negative for a decaying state).
    pub a: &'a [f32],
    /// Scale of B per group, `[G]`.
    pub b_scale: &'a [f32],
    /// Scale of C per group, `[G]`.
    pub c_scale: &'a [f32],
    /// Skip connection per head, `[H]` (none = 0).
    pub d: Option<&'a [f32]>,
    /// `(lo, hi)` clamp of delta after the softplus (Mamba2's `dt_limit`; `(0, ∞)` = none).
    pub dt_limit: (f32, f32),
}

impl SsdParams<'_> {
    fn validate(&self, s: &SsdShape) -> Result<()> {
        check_len("SSD x_scale", self.x_scale.len(), s.nheads * s.headdim)?;
        check_len("SSD A", self.a.len(), s.nheads)?;
        check_len("SSD B_scale", self.b_scale.len(), s.ngroups)?;
        check_len("SSD C_scale", self.c_scale.len(), s.ngroups)?;
        if let Some(b) = self.dt_bias {
            check_len("SSD dt_bias", b.len(), s.nheads)?;
        }
        if let Some(d) = self.d {
            check_len("SSD D", d.len(), s.nheads)?;
        }
        let (lo, hi) = self.dt_limit;
        if lo.is_nan() || hi.is_nan() || lo == f32::INFINITY || lo > hi {
            return Err(LowbitError::invalid("SSD dt_limit", format!("({lo}, {hi}) must satisfy lo <= hi, lo finite")));
        }
        if !self.dt_scale.is_finite() {
            return Err(LowbitError::invalid("SSD dt_scale", format!("{} is not finite", self.dt_scale)));
        }
        Ok(())
    }

    /// delta of head `h` for dt code `q`.
    pub fn delta(&self, q: i8, h: usize) -> f64 {
        let v = f64::from(q) * f64::from(self.dt_scale) + self.dt_bias.map_or(0.0, |b| f64::from(b[h]));
        softplus(v).clamp(f64::from(self.dt_limit.0), f64::from(self.dt_limit.1))
    }
}

/// `ln(1 + e^v)`, and `v` itself above 20: the Mamba-1 reference's softplus (Mamba2 and the SSD kernels use the
/// same threshold), re-exported so that both references apply the one definition.
pub use crate::ssm::softplus;

/// One token of one sequence: updates `state` (`[H, P, N]`, f64) and writes `y` (`[H, P]`).
#[allow(clippy::too_many_arguments)]
fn step(
    s: &SsdShape,
    prm: &SsdParams<'_>,
    state: &mut [f64],
    x: &[i8],
    dt: &[i8],
    bm: &[i8],
    cm: &[i8],
    y: &mut [f64],
) {
    let (hn, pn, nn) = (s.nheads, s.headdim, s.dstate);
    let heads_per_group = hn / s.ngroups;
    for h in 0..hn {
        let g = h / heads_per_group;
        let delta = prm.delta(dt[h], h);
        let decay = (delta * f64::from(prm.a[h])).exp();
        let bs = f64::from(prm.b_scale[g]);
        let cs = f64::from(prm.c_scale[g]);
        let d = prm.d.map_or(0.0, |d| f64::from(d[h]));
        let bq = &bm[g * nn..(g + 1) * nn];
        let cq = &cm[g * nn..(g + 1) * nn];
        for p in 0..pn {
            let xv = f64::from(x[h * pn + p]) * f64::from(prm.x_scale[h * pn + p]);
            let row = &mut state[(h * pn + p) * nn..(h * pn + p + 1) * nn];
            let mut acc = 0.0;
            for n in 0..nn {
                row[n] = decay * row[n] + delta * xv * f64::from(bq[n]) * bs;
                acc += row[n] * f64::from(cq[n]) * cs;
            }
            y[h * pn + p] = acc + d * xv;
        }
    }
}

/// The SSD prefill over whole sequences, token by token in f64. Returns `(y, final_state)`: `y`
/// `[batch, len, H, P]` and the state after the last token `[batch, H, P, N]`. `initial_state` (`[batch, H, P,
/// N]`) is the state before token 0 (none = zeros). A zero `len` returns an empty `y` and the initial state.
#[allow(clippy::too_many_arguments)]
pub fn ssd_scan_reference(
    s: &SsdShape,
    prm: &SsdParams<'_>,
    x: &[i8],
    dt: &[i8],
    bm: &[i8],
    cm: &[i8],
    initial_state: Option<&[f32]>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    s.validate()?;
    prm.validate(s)?;
    let (hp, gn) = (s.nheads * s.headdim, s.ngroups * s.dstate);
    let tokens = s.batch * s.len;
    check_len("SSD x", x.len(), tokens * hp)?;
    check_len("SSD dt", dt.len(), tokens * s.nheads)?;
    check_len("SSD B", bm.len(), tokens * gn)?;
    check_len("SSD C", cm.len(), tokens * gn)?;
    let mut state: Vec<f64> = match initial_state {
        Some(h0) => {
            check_len("SSD initial_state", h0.len(), s.state_len())?;
            h0.iter().map(|&v| f64::from(v)).collect()
        }
        None => vec![0.0; s.state_len()],
    };
    let per_seq = s.nheads * s.headdim * s.dstate;
    let mut y = vec![0.0; tokens * hp];
    for b in 0..s.batch {
        let st = &mut state[b * per_seq..(b + 1) * per_seq];
        for t in 0..s.len {
            let tok = b * s.len + t;
            step(
                s,
                prm,
                st,
                &x[tok * hp..(tok + 1) * hp],
                &dt[tok * s.nheads..(tok + 1) * s.nheads],
                &bm[tok * gn..(tok + 1) * gn],
                &cm[tok * gn..(tok + 1) * gn],
                &mut y[tok * hp..(tok + 1) * hp],
            );
        }
    }
    Ok((y, state))
}

/// One SSD decode step in f64: `state` `[batch, H, P, N]` is updated in place; returns `y` `[batch, H, P]`.
/// Inputs: `x` `[batch, H, P]`, `dt` `[batch, H]`, `B`/`C` `[batch, G, N]` (`s.len` is ignored).
#[allow(clippy::too_many_arguments)]
pub fn ssd_state_update_reference(
    s: &SsdShape,
    prm: &SsdParams<'_>,
    state: &mut [f64],
    x: &[i8],
    dt: &[i8],
    bm: &[i8],
    cm: &[i8],
) -> Result<Vec<f64>> {
    s.validate()?;
    prm.validate(s)?;
    let (hp, gn) = (s.nheads * s.headdim, s.ngroups * s.dstate);
    check_len("SSD state", state.len(), s.state_len())?;
    check_len("SSD x", x.len(), s.batch * hp)?;
    check_len("SSD dt", dt.len(), s.batch * s.nheads)?;
    check_len("SSD B", bm.len(), s.batch * gn)?;
    check_len("SSD C", cm.len(), s.batch * gn)?;
    let per_seq = s.nheads * s.headdim * s.dstate;
    let mut y = vec![0.0; s.batch * hp];
    for b in 0..s.batch {
        step(
            s,
            prm,
            &mut state[b * per_seq..(b + 1) * per_seq],
            &x[b * hp..(b + 1) * hp],
            &dt[b * s.nheads..(b + 1) * s.nheads],
            &bm[b * gn..(b + 1) * gn],
            &cm[b * gn..(b + 1) * gn],
            &mut y[b * hp..(b + 1) * hp],
        );
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    struct Case {
        x_scale: Vec<f32>,
        dt_bias: Vec<f32>,
        a: Vec<f32>,
        b_scale: Vec<f32>,
        c_scale: Vec<f32>,
        d: Vec<f32>,
        x: Vec<i8>,
        dt: Vec<i8>,
        bm: Vec<i8>,
        cm: Vec<i8>,
    }

    fn codes(rng: &mut StdRng, n: usize) -> Vec<i8> {
        (0..n).map(|_| rng.random_range(-127i32..=127) as i8).collect()
    }

    fn case(s: SsdShape, seed: u64) -> Case {
        let mut rng = StdRng::seed_from_u64(seed);
        let hp = s.nheads * s.headdim;
        let gn = s.ngroups * s.dstate;
        let tok = s.batch * s.len;
        Case {
            x_scale: (0..hp).map(|_| rng.random_range(0.002f32..0.02)).collect(),
            dt_bias: (0..s.nheads).map(|_| rng.random_range(-4.0f32..-1.0)).collect(),
            a: (0..s.nheads).map(|_| -rng.random_range(0.5f32..8.0)).collect(),
            b_scale: (0..s.ngroups).map(|_| rng.random_range(0.005f32..0.02)).collect(),
            c_scale: (0..s.ngroups).map(|_| rng.random_range(0.005f32..0.02)).collect(),
            d: (0..s.nheads).map(|_| rng.random_range(0.5f32..1.5)).collect(),
            x: codes(&mut rng, tok * hp),
            dt: codes(&mut rng, tok * s.nheads),
            bm: codes(&mut rng, tok * gn),
            cm: codes(&mut rng, tok * gn),
        }
    }

    impl Case {
        fn params(&self) -> SsdParams<'_> {
            SsdParams {
                x_scale: &self.x_scale,
                dt_scale: 0.02,
                dt_bias: Some(&self.dt_bias),
                a: &self.a,
                b_scale: &self.b_scale,
                c_scale: &self.c_scale,
                d: Some(&self.d),
                dt_limit: (0.0, f32::INFINITY),
            }
        }
    }

    fn shape(batch: usize, len: usize, nheads: usize, headdim: usize, ngroups: usize, dstate: usize) -> SsdShape {
        SsdShape { batch, len, nheads, headdim, ngroups, dstate }
    }

    #[test]
    fn scalar_case_by_hand() {
        // H = P = G = N = 1, two tokens.
        let s = shape(1, 2, 1, 1, 1, 1);
        let prm = SsdParams {
            x_scale: &[0.5],
            dt_scale: 0.1,
            dt_bias: Some(&[0.25]),
            a: &[-2.0],
            b_scale: &[0.25],
            c_scale: &[0.125],
            d: Some(&[3.0]),
            dt_limit: (0.0, f32::INFINITY),
        };
        let (x, dt, bm, cm) = ([2i8, -4], [5i8, -3], [4i8, 8], [8i8, 2]);
        let (y, hf) = ssd_scan_reference(&s, &prm, &x, &dt, &bm, &cm, Some(&[1.5])).unwrap();
        let dts = f64::from(0.1f32); // dt_scale as the f32 the parameters hold
        let d0 = softplus(5.0 * dts + 0.25);
        let d1 = softplus(-3.0 * dts + 0.25);
        let h0 = (-2.0 * d0).exp() * 1.5 + d0 * 1.0 * 1.0;
        let h1 = (-2.0 * d1).exp() * h0 + d1 * -2.0 * 2.0;
        assert!((y[0] - (h0 * 1.0 + 3.0)).abs() < 1e-12, "{y:?}");
        assert!((y[1] - (h1 * 0.25 - 6.0)).abs() < 1e-12, "{y:?}");
        assert!((hf[0] - h1).abs() < 1e-12);
    }

    #[test]
    fn decode_steps_reproduce_the_scan() {
        let s = shape(2, 9, 4, 3, 2, 5);
        let c = case(s, 1);
        let prm = c.params();
        let h0: Vec<f32> = (0..s.state_len()).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
        let (y, hf) = ssd_scan_reference(&s, &prm, &c.x, &c.dt, &c.bm, &c.cm, Some(&h0)).unwrap();
        let mut state: Vec<f64> = h0.iter().map(|&v| f64::from(v)).collect();
        let (hp, gn, hn) = (s.nheads * s.headdim, s.ngroups * s.dstate, s.nheads);
        let one = SsdShape { batch: 1, len: 1, ..s };
        let per_seq = hp * s.dstate;
        for b in 0..s.batch {
            for t in 0..s.len {
                let tok = b * s.len + t;
                let yt = ssd_state_update_reference(
                    &one,
                    &prm,
                    &mut state[b * per_seq..(b + 1) * per_seq],
                    &c.x[tok * hp..(tok + 1) * hp],
                    &c.dt[tok * hn..(tok + 1) * hn],
                    &c.bm[tok * gn..(tok + 1) * gn],
                    &c.cm[tok * gn..(tok + 1) * gn],
                )
                .unwrap();
                assert_eq!(yt.as_slice(), &y[tok * hp..(tok + 1) * hp]);
            }
        }
        assert_eq!(state, hf);
        assert!(y.iter().any(|v| v.abs() > 1e-3), "degenerate test data");
    }

    #[test]
    fn initial_state_chains_two_halves() {
        let s = shape(1, 12, 2, 4, 1, 6);
        let c = case(s, 2);
        let prm = c.params();
        let (y, hf) = ssd_scan_reference(&s, &prm, &c.x, &c.dt, &c.bm, &c.cm, None).unwrap();
        let k = 5;
        let (hp, gn) = (s.nheads * s.headdim, s.ngroups * s.dstate);
        let s1 = SsdShape { len: k, ..s };
        let s2 = SsdShape { len: s.len - k, ..s };
        let (y1, h1) =
            ssd_scan_reference(&s1, &prm, &c.x[..k * hp], &c.dt[..k * 2], &c.bm[..k * gn], &c.cm[..k * gn], None)
                .unwrap();
        let h1f: Vec<f32> = h1.iter().map(|&v| v as f32).collect();
        let (y2, h2) =
            ssd_scan_reference(&s2, &prm, &c.x[k * hp..], &c.dt[k * 2..], &c.bm[k * gn..], &c.cm[k * gn..], Some(&h1f))
                .unwrap();
        assert_eq!(&y[..k * hp], y1.as_slice());
        // The hand-off state went through f32: relative 1e-6.
        for (a, b) in y[k * hp..].iter().zip(&y2) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{a} vs {b}");
        }
        for (a, b) in hf.iter().zip(&h2) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn heads_read_their_own_group() {
        // H = 4, G = 2: heads 0, 1 read group 0; changing group 1's B and C leaves them unchanged.
        let s = shape(1, 7, 4, 2, 2, 3);
        let c = case(s, 3);
        let prm = c.params();
        let (y, _) = ssd_scan_reference(&s, &prm, &c.x, &c.dt, &c.bm, &c.cm, None).unwrap();
        let mut bm = c.bm.clone();
        for t in 0..s.len {
            for n in 0..s.dstate {
                bm[t * 6 + 3 + n] = bm[t * 6 + 3 + n].wrapping_neg();
            }
        }
        let (y2, _) = ssd_scan_reference(&s, &prm, &c.x, &c.dt, &bm, &c.cm, None).unwrap();
        for t in 0..s.len {
            let row = |v: &[f64], h: usize| v[t * 8 + h * 2..t * 8 + h * 2 + 2].to_vec();
            assert_eq!(row(&y, 0), row(&y2, 0));
            assert_eq!(row(&y, 1), row(&y2, 1));
            if t > 0 {
                assert_ne!(row(&y, 2), row(&y2, 2));
            }
        }
    }

    #[test]
    fn dt_limit_clamps_delta() {
        let s = shape(1, 1, 1, 1, 1, 1);
        let mut prm = SsdParams {
            x_scale: &[1.0],
            dt_scale: 1.0,
            dt_bias: None,
            a: &[-1.0],
            b_scale: &[1.0],
            c_scale: &[1.0],
            d: None,
            dt_limit: (0.0, f32::INFINITY),
        };
        assert!((prm.delta(30, 0) - 30.0).abs() < 1e-12);
        prm.dt_limit = (0.01, 0.1);
        assert_eq!(prm.delta(30, 0), f64::from(0.1f32));
        assert_eq!(prm.delta(-100, 0), f64::from(0.01f32));
        let (y, _) = ssd_scan_reference(&s, &prm, &[1], &[-100], &[1], &[1], None).unwrap();
        assert!((y[0] - f64::from(0.01f32)).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let s = shape(1, 2, 3, 2, 2, 4);
        let c = case(shape(1, 2, 4, 2, 2, 4), 4);
        let prm = SsdParams { x_scale: &c.x_scale[..6], a: &c.a[..3], dt_bias: None, d: None, ..c.params() };
        let e = ssd_scan_reference(&s, &prm, &c.x, &c.dt, &c.bm, &c.cm, None).unwrap_err();
        assert!(matches!(e, LowbitError::InvalidValue { .. }), "{e}");
        let prm = c.params();
        let s = shape(1, 2, 4, 2, 2, 4);
        let e = ssd_scan_reference(&s, &prm, &c.x[1..], &c.dt, &c.bm, &c.cm, None).unwrap_err();
        assert!(matches!(e, LowbitError::ShapeMismatch { .. }), "{e}");
        let bad = SsdParams { dt_limit: (1.0, 0.5), ..c.params() };
        let e = ssd_scan_reference(&s, &bad, &c.x, &c.dt, &c.bm, &c.cm, None).unwrap_err();
        assert!(e.to_string().contains("dt_limit"), "{e}");
        let e = ssd_scan_reference(&shape(1, 2, 4, 2, 2, 0), &prm, &[], &c.dt, &[], &[], None).unwrap_err();
        assert!(matches!(e, LowbitError::Empty { .. }), "{e}");
        let mut st = vec![0.0; 3];
        let e =
            ssd_state_update_reference(&s, &prm, &mut st, &c.x[..8], &c.dt[..4], &c.bm[..8], &c.cm[..8]).unwrap_err();
        assert!(matches!(e, LowbitError::ShapeMismatch { .. }), "{e}");
    }
}
