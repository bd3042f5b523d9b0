//! Unit tests of the Quamba / Quamba2 calibrator pieces.

use super::cluster::{dp_segmentation_for_tests, segment_positions, ward_labels};
use super::*;
use crate::CalibError;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Sort-based reference of the linear-interpolation quantile of |x| (f64).
fn quantile_ref(data: &[f32], alpha: f64) -> f64 {
    let mut v: Vec<f64> = data.iter().map(|x| x.abs() as f64).collect();
    v.sort_by(f64::total_cmp);
    let pos = alpha * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
}

// ---------------------------------------------------------------- observers

#[test]
fn abs_quantile_matches_sorted_reference() {
    let mut r = rng(1);
    for &n in &[1usize, 2, 7, 100, 1001, 4099] {
        let data: Vec<f32> =
            (0..n).map(|_| r.random_range(-3.0f32..3.0) * r.random_range(0.0f32..1.0).powi(3)).collect();
        for &alpha in &[0.001, 0.25, 0.5, 0.9, 0.9995, 0.99999, 1.0] {
            let got = abs_quantile(&data, alpha).unwrap() as f64;
            let want = quantile_ref(&data, alpha);
            assert!((got - want).abs() <= 1e-6 * want.max(1e-30), "n {n} alpha {alpha}: {got} vs {want}");
        }
    }
    // alpha = 1 is the absmax, and ties are fine.
    assert_eq!(abs_quantile(&[1.0, -4.0, 2.0, -4.0], 1.0).unwrap(), 4.0);
    assert_eq!(abs_quantile(&[2.0; 9], 0.37).unwrap(), 2.0);
    // Interpolation: |x| = 0, 1, 2, 3 and alpha 0.5 → pos 1.5 → 1.5.
    assert_eq!(abs_quantile(&[0.0, -1.0, 2.0, -3.0], 0.5).unwrap(), 1.5);
}

#[test]
fn abs_quantile_errors() {
    assert!(matches!(abs_quantile(&[], 0.5), Err(CalibError::NoSamples { .. })));
    for alpha in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(matches!(abs_quantile(&[1.0], alpha), Err(CalibError::InvalidOption { .. })), "alpha {alpha}");
    }
    match abs_quantile(&[1.0, 2.0, f32::NAN], 0.5) {
        Err(CalibError::NonFinite { index, .. }) => assert_eq!(index, "[0, 2]"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(abs_quantile(&[f32::INFINITY], 0.5), Err(CalibError::NonFinite { .. })));
}

#[test]
fn percentile_observer_ema() {
    let mut obs = PercentileObserver::new(0.5, 0.01).unwrap();
    assert!(matches!(obs.value(), Err(CalibError::NoSamples { .. })));
    // |x| = 0..=10, median 5: the first sample initializes.
    let a: Vec<f32> = (0..=10).map(|i| if i % 2 == 0 { i as f32 } else { -(i as f32) }).collect();
    assert_eq!(obs.update(&a).unwrap(), 5.0);
    assert_eq!(obs.value().unwrap(), 5.0);
    // Second sample median 105: m = 5 + 0.01·(105 − 5) = 6.
    let b: Vec<f32> = a.iter().map(|x| x.abs() + 100.0).collect();
    assert_eq!(obs.update(&b).unwrap(), 105.0);
    assert!((obs.value().unwrap() - 6.0).abs() < 1e-6);
    // Third sample median 5: m = 6 + 0.01·(5 − 6) = 5.99.
    obs.update(&a).unwrap();
    assert!((obs.value().unwrap() - 5.99).abs() < 1e-6);
    assert_eq!(obs.samples(), 3);
    assert!((obs.scale().unwrap() - 5.99 / 127.0).abs() < 1e-7);
    // A bad sample leaves the observer as it was.
    let before = obs.clone();
    assert!(obs.update(&[1.0, f32::NEG_INFINITY]).is_err());
    assert!(obs.update(&[]).is_err());
    assert_eq!(obs, before);
    // Momentum 1 tracks the last sample; scales are clamped at 1e-6.
    let mut last = PercentileObserver::new(DEFAULT_PERCENTILE_ALPHA, 1.0).unwrap();
    last.update(&[3.0; 5]).unwrap();
    last.update(&[0.0; 5]).unwrap();
    assert_eq!(last.value().unwrap(), 0.0);
    assert_eq!(last.scale().unwrap(), MIN_SCALE);
}

#[test]
fn percentile_observer_options() {
    for (a, m) in [(0.0, 0.01), (1.01, 0.01), (0.5, 0.0), (0.5, 1.5), (f64::NAN, 0.01), (0.5, f64::NAN)] {
        assert!(matches!(PercentileObserver::new(a, m), Err(CalibError::InvalidOption { .. })), "{a} {m}");
    }
    let o = PercentileObserver::new(1.0, 1.0).unwrap();
    assert_eq!((o.alpha(), o.momentum(), o.samples()), (1.0, 1.0, 0));
}

#[test]
fn per_state_group_absmax() {
    let (g, n, rows) = (3, 5, 7);
    let mut r = rng(2);
    let mut obs = GroupAbsMaxObserver::per_state_group(g, n).unwrap();
    assert!(matches!(obs.absmax(), Err(CalibError::NoSamples { .. })));
    let mut want = vec![0f32; g];
    for _ in 0..3 {
        let x: Vec<f32> = (0..rows * g * n).map(|_| r.random_range(-2.0f32..2.0)).collect();
        for (i, v) in x.iter().enumerate() {
            let gi = (i % (g * n)) / n;
            want[gi] = want[gi].max(v.abs());
        }
        obs.update(&x, rows).unwrap();
    }
    assert_eq!(obs.absmax().unwrap(), want.as_slice());
    assert_eq!(obs.scales().unwrap(), want.iter().map(|a| a / 127.0).collect::<Vec<_>>());
    assert_eq!((obs.rows(), obs.updates(), obs.shape(), obs.cols()), (3 * rows, 3, &[g][..], g * n));
    // Errors leave it unchanged; zero rows is a no-op.
    let before = obs.clone();
    assert!(matches!(obs.update(&[0.0; 14], 1), Err(CalibError::ShapeMismatch { .. })));
    let mut bad = vec![0.0; 2 * g * n];
    bad[g * n + n + 1] = f32::NAN;
    match obs.update(&bad, 2) {
        Err(CalibError::NonFinite { index, .. }) => assert_eq!(index, format!("[1, {}]", n + 1)),
        other => panic!("{other:?}"),
    }
    obs.update(&[], 0).unwrap();
    assert_eq!(obs, before);
}

#[test]
fn group_absmax_generic_and_clamp() {
    // Column 1 ignored, group 2 never mapped: its scale is clamped at 1e-6.
    let mut obs = GroupAbsMaxObserver::new(vec![3], vec![Some(0), None, Some(1), Some(0)]).unwrap();
    obs.update(&[1.0, 100.0, -2.0, -3.0, 0.5, 50.0, 0.0, 0.25], 2).unwrap();
    assert_eq!(obs.absmax().unwrap(), &[3.0, 2.0, 0.0]);
    assert_eq!(obs.scales().unwrap()[2], MIN_SCALE);
    assert!(GroupAbsMaxObserver::new(vec![2], vec![Some(2)]).is_err());
    assert!(GroupAbsMaxObserver::new(vec![], vec![Some(0)]).is_err());
    assert!(GroupAbsMaxObserver::new(vec![2, 0], vec![Some(0)]).is_err());
    assert!(GroupAbsMaxObserver::new(vec![1], vec![]).is_err());
    assert!(GroupAbsMaxObserver::per_state_group(0, 4).is_err());
    let mut t = GroupAbsMaxObserver::per_tensor(3).unwrap();
    t.update(&[1.0, -7.0, 2.0], 1).unwrap();
    assert_eq!(t.absmax().unwrap(), &[7.0]);
}

/// Naive reference of the Quamba2 SSM-state scales: walk the *reordered* state `[b, H, P, N]` with explicit
/// cluster lookups.
fn state_absmax_ref(c: &QuambaClusters, reordered: &[f32], batch: usize, n: usize) -> Vec<f32> {
    let (hc, dc, p, nh) = (c.head_clusters, c.dim_clusters, c.headdim, c.nheads_per_group);
    let mut out = vec![0f32; c.ngroups * hc * dc * n];
    for b in 0..batch {
        for j in 0..c.nheads() {
            let (g, jl) = (j / nh, j % nh);
            let hci = (0..hc).find(|&i| jl < c.head_group_range[g][i]).unwrap();
            for pos in 0..p {
                let dci = (0..dc).find(|&i| pos < c.dim_group_range[g][hci][i]).unwrap();
                for s in 0..n {
                    let v = reordered[((b * c.nheads() + j) * p + pos) * n + s].abs();
                    let o = &mut out[((g * hc + hci) * dc + dci) * n + s];
                    *o = o.max(v);
                }
            }
        }
    }
    out
}

#[test]
fn ssm_state_and_x_observers_in_both_layouts() {
    let (g, nh, p, n, batch) = (2, 6, 8, 3, 2);
    let mut r = rng(3);
    let stat: Vec<f32> = (0..g * nh * p).map(|_| r.random_range(0.01f32..5.0)).collect();
    let c = sort_and_cluster(&stat, g, nh, p, 4, 4).unwrap();
    let cols = g * nh * p * n;
    let original: Vec<f32> = (0..batch * cols).map(|_| r.random_range(-1.0f32..1.0)).collect();
    // The same state in the reordered channel order.
    let mut reordered = vec![0f32; original.len()];
    for b in 0..batch {
        for (new, &old) in c.channel_perm.iter().enumerate() {
            for s in 0..n {
                reordered[(b * g * nh * p + new) * n + s] = original[(b * g * nh * p + old) * n + s];
            }
        }
    }
    let want = state_absmax_ref(&c, &reordered, batch, n);
    for (layout, data) in [(ChannelLayout::Original, &original), (ChannelLayout::Reordered, &reordered)] {
        let mut obs = GroupAbsMaxObserver::ssm_state(&c, n, layout).unwrap();
        assert_eq!(obs.shape(), &[g, 4, 4, n]);
        obs.update(data, batch).unwrap();
        assert_eq!(obs.absmax().unwrap(), want.as_slice(), "{layout:?}");
    }
    assert!(GroupAbsMaxObserver::ssm_state(&c, 0, ChannelLayout::Original).is_err());

    // x: [tokens, H·P] → [G, 4, 4]; with n = 1 the state reference is the x reference.
    let x: Vec<f32> = (0..batch * g * nh * p).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let mut xr = vec![0f32; x.len()];
    for t in 0..batch {
        for (new, &old) in c.channel_perm.iter().enumerate() {
            xr[t * g * nh * p + new] = x[t * g * nh * p + old];
        }
    }
    let want = state_absmax_ref(&c, &xr, batch, 1);
    let mut obs = GroupAbsMaxObserver::x_clusters(&c, ChannelLayout::Original).unwrap();
    obs.update(&x, batch).unwrap();
    assert_eq!(obs.absmax().unwrap(), want.as_slice());
    // channel_groups: the two layouts agree through channel_perm.
    let (go, gr) = (c.channel_groups(ChannelLayout::Original), c.channel_groups(ChannelLayout::Reordered));
    for (new, &old) in c.channel_perm.iter().enumerate() {
        assert_eq!(go[old], gr[new]);
    }
}

#[test]
fn channel_mean_abs_max() {
    let mut o = ChannelMeanAbsMax::new(2).unwrap();
    assert!(o.stat().is_err());
    o.update(&[1.0, -2.0, 3.0, 0.0], 2).unwrap(); // means 2, 1
    o.update(&[-1.0, 4.0], 1).unwrap(); // means 1, 4
    assert_eq!(o.stat().unwrap(), &[2.0, 4.0]);
    assert_eq!((o.samples(), o.channels()), (2, 2));
    assert!(o.update(&[1.0, 2.0, 3.0], 1).is_err());
    assert!(o.update(&[], 0).is_err());
    assert!(o.update(&[f32::NAN, 0.0], 1).is_err());
    assert_eq!(o.samples(), 2);
    assert!(ChannelMeanAbsMax::new(0).is_err());
}

// ---------------------------------------------------------------- Hadamard

/// The explicit `[dim, dim]` block-diagonal normalized Sylvester Hadamard, built by recursion (not FWHT).
fn hadamard_matrix(dim: usize, block: usize) -> Vec<f64> {
    let mut hb = vec![1.0f64];
    let mut size = 1;
    while size < block {
        let mut next = vec![0.0; 4 * size * size];
        for i in 0..size {
            for j in 0..size {
                let v = hb[i * size + j];
                next[i * 2 * size + j] = v;
                next[i * 2 * size + j + size] = v;
                next[(i + size) * 2 * size + j] = v;
                next[(i + size) * 2 * size + j + size] = -v;
            }
        }
        hb = next;
        size *= 2;
    }
    let s = 1.0 / (block as f64).sqrt();
    let mut h = vec![0.0; dim * dim];
    for b in (0..dim).step_by(block) {
        for i in 0..block {
            for j in 0..block {
                h[(b + i) * dim + b + j] = hb[i * block + j] * s;
            }
        }
    }
    h
}

fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for l in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + l] * b[l * n + j];
            }
        }
    }
    c
}

#[test]
fn hadamard_matches_explicit_matrix_and_is_orthonormal() {
    let mut r = rng(4);
    for &(rows, cols, block) in &[(5usize, 16usize, 16usize), (8, 24, 8), (64, 3, 16), (32, 96, 32), (7, 12, 4)] {
        let w: Vec<f32> = (0..rows * cols).map(|_| r.random_range(-1.0f32..1.0)).collect();
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        if cols.is_multiple_of(block) {
            let got = fuse_hadamard(&w, rows, cols, HadamardSide::Input, block).unwrap();
            let want = matmul(&w64, &hadamard_matrix(cols, block), rows, cols, cols);
            got.iter().zip(&want).for_each(|(g, w)| assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}"));
        }
        if rows.is_multiple_of(block) {
            let got = fuse_hadamard(&w, rows, cols, HadamardSide::Output, block).unwrap();
            let want = matmul(&hadamard_matrix(rows, block), &w64, rows, rows, cols);
            got.iter().zip(&want).for_each(|(g, w)| assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}"));
        }
    }
    // H from the identity: symmetric, and H·H = I (both sides give the same H).
    let dim = 32;
    let eye: Vec<f32> = (0..dim * dim).map(|i| if i / dim == i % dim { 1.0 } else { 0.0 }).collect();
    let h_in = fuse_hadamard(&eye, dim, dim, HadamardSide::Input, 16).unwrap();
    let h_out = fuse_hadamard(&eye, dim, dim, HadamardSide::Output, 16).unwrap();
    assert_eq!(h_in, h_out);
    let hh = fuse_hadamard(&h_in, dim, dim, HadamardSide::Input, 16).unwrap();
    for i in 0..dim {
        for j in 0..dim {
            assert!((h_in[i * dim + j] - h_in[j * dim + i]).abs() < 1e-7);
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((hh[i * dim + j] - want).abs() < 1e-6, "HH[{i},{j}] = {}", hh[i * dim + j]);
        }
    }
}

#[test]
fn hadamard_compute_invariance() {
    // y = W·x == (W·H)·(H·x) and H·y == (H·W)·x, for the out_proj-style H·W·H as well.
    let (rows, cols, block) = (24, 64, 64);
    let mut r = rng(5);
    let w: Vec<f32> = (0..rows * cols).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let x: Vec<f32> = (0..cols).map(|_| r.random_range(-1.0f32..1.0)).collect();
    let mv = |w: &[f32], x: &[f32], rows: usize, cols: usize| -> Vec<f64> {
        (0..rows).map(|i| (0..cols).map(|j| w[i * cols + j] as f64 * x[j] as f64).sum()).collect()
    };
    let y = mv(&w, &x, rows, cols);
    let wh = fuse_hadamard(&w, rows, cols, HadamardSide::Input, block).unwrap();
    let mut hx = x.clone();
    lowbit_core::int8::fwht_normalized(&mut hx, block);
    let y2 = mv(&wh, &hx, rows, cols);
    y.iter().zip(&y2).for_each(|(a, b)| assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{a} vs {b}"));
    // Output side with block 8 on 24 rows: H·W·x == H·(W·x).
    let hw = fuse_hadamard(&w, rows, cols, HadamardSide::Output, 8).unwrap();
    let y3 = mv(&hw, &x, rows, cols);
    let mut hy: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    lowbit_core::int8::fwht_normalized(&mut hy, 8);
    y3.iter().zip(&hy).for_each(|(a, b)| assert!((a - *b as f64).abs() < 1e-4 * (1.0 + a.abs()), "{a} vs {b}"));
    // Block 1 is the identity.
    assert_eq!(fuse_hadamard(&w, rows, cols, HadamardSide::Output, 1).unwrap(), w);
}

#[test]
fn hadamard_errors_and_block_choice() {
    let w = vec![1.0f32; 12];
    for (side, block) in
        [(HadamardSide::Input, 3), (HadamardSide::Input, 8), (HadamardSide::Input, 0), (HadamardSide::Output, 4)]
    {
        assert!(
            matches!(fuse_hadamard(&w, 3, 4, side, block), Err(CalibError::InvalidOption { .. })),
            "{side:?} {block}"
        );
    }
    assert!(matches!(fuse_hadamard(&w, 3, 5, HadamardSide::Input, 1), Err(CalibError::ShapeMismatch { .. })));
    let mut bad = w.clone();
    bad[5] = f32::NAN;
    match fuse_hadamard(&bad, 3, 4, HadamardSide::Input, 4) {
        Err(CalibError::NonFinite { index, .. }) => assert_eq!(index, "[1, 1]"),
        other => panic!("{other:?}"),
    }
    assert_eq!("input".parse::<HadamardSide>().unwrap(), HadamardSide::Input);
    assert_eq!("output".parse::<HadamardSide>().unwrap(), HadamardSide::Output);
    assert!("both".parse::<HadamardSide>().is_err());
    // Mamba2-130m d_inner 1536 = 12·128, 2.7b 5120 = 40·128, 8b 8192.
    assert_eq!(hadamard_block(1536, 1 << 20), 512);
    assert_eq!(hadamard_block(5120, 1 << 20), 1024);
    assert_eq!(hadamard_block(8192, 256), 256);
    assert_eq!(hadamard_block(8192, 300), 256);
    assert_eq!(hadamard_block(768, 64), 64);
    assert_eq!(hadamard_block(63, 64), 1);
    assert_eq!(hadamard_block(0, 64), 1);
}

// ---------------------------------------------------------------- sort-and-cluster

#[test]
fn ward_recovers_separated_points() {
    let pts: Vec<Vec<f64>> = [0.0, 0.1, 5.0, 5.1, 10.0, 20.0, 0.05].iter().map(|&v| vec![v, 0.0]).collect();
    let refs: Vec<&[f64]> = pts.iter().map(|v| v.as_slice()).collect();
    assert_eq!(ward_labels(&refs, 4), vec![0, 0, 1, 1, 2, 3, 0]);
    assert_eq!(ward_labels(&refs, 1), vec![0; 7]);
    assert_eq!(ward_labels(&refs[..3], 4), vec![0, 1, 2]);
    assert_eq!(ward_labels(&refs[..4], 4), vec![0, 1, 2, 3]);
}

/// Textbook Ward: repeatedly merge the two clusters whose union raises the within-cluster sum of squares the
/// least, `|A||B|/(|A|+|B|)·‖c_A − c_B‖²`, until `k` remain. Returns the partition as sorted member lists.
fn naive_ward(points: &[Vec<f64>], k: usize) -> Vec<Vec<usize>> {
    let mut clusters: Vec<Vec<usize>> = (0..points.len()).map(|i| vec![i]).collect();
    let centroid = |c: &[usize]| -> Vec<f64> {
        let mut m = vec![0.0; points[0].len()];
        for &i in c {
            m.iter_mut().zip(&points[i]).for_each(|(a, b)| *a += b);
        }
        m.iter().map(|v| v / c.len() as f64).collect()
    };
    while clusters.len() > k {
        let mut best = (f64::INFINITY, 0, 0);
        for a in 0..clusters.len() {
            for b in a + 1..clusters.len() {
                let (ca, cb) = (centroid(&clusters[a]), centroid(&clusters[b]));
                let (na, nb) = (clusters[a].len() as f64, clusters[b].len() as f64);
                let d = na * nb / (na + nb) * ca.iter().zip(&cb).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
                if d < best.0 {
                    best = (d, a, b);
                }
            }
        }
        let merged = clusters.remove(best.2);
        clusters[best.1].extend(merged);
    }
    let mut out: Vec<Vec<usize>> = clusters
        .into_iter()
        .map(|mut c| {
            c.sort();
            c
        })
        .collect();
    out.sort();
    out
}

#[test]
fn ward_cut_matches_textbook_ward() {
    let mut r = rng(10);
    for &(n, dim, k) in &[(5usize, 3usize, 4usize), (12, 4, 4), (30, 8, 4), (40, 16, 3), (9, 2, 2)] {
        for _ in 0..3 {
            let pts: Vec<Vec<f64>> = (0..n).map(|_| (0..dim).map(|_| r.random_range(0.0..1.0)).collect()).collect();
            let refs: Vec<&[f64]> = pts.iter().map(|v| v.as_slice()).collect();
            let labels = ward_labels(&refs, k);
            let mut got: Vec<Vec<usize>> = vec![vec![]; k];
            for (i, &l) in labels.iter().enumerate() {
                got[l].push(i);
            }
            // Numbered by smallest member: cluster l's first member precedes cluster l+1's.
            assert!(got.windows(2).all(|w| w[0][0] < w[1][0]), "{labels:?}");
            got.sort();
            assert_eq!(got, naive_ward(&pts, k), "n {n} dim {dim} k {k}");
        }
    }
}

/// Checks the structural invariants plus: each new head's channels ascend by `stat`.
fn check_clusters(c: &QuambaClusters, stat: &[f32]) {
    c.validate().unwrap();
    let p = c.headdim;
    for j in 0..c.nheads() {
        let vals: Vec<f32> = c.channel_perm[j * p..(j + 1) * p].iter().map(|&i| stat[i]).collect();
        assert!(vals.windows(2).all(|w| w[0] <= w[1]), "head {j} not ascending: {vals:?}");
    }
    assert_eq!(c.head_group_range.len(), c.ngroups);
    assert!(c.head_group_range.iter().all(|r| r.len() == c.head_clusters));
    assert!(c.dim_group_range.iter().flatten().all(|r| r.len() == c.dim_clusters));
}

#[test]
fn sort_and_cluster_recovers_planted_head_profiles() {
    // 2 SSD groups × 32 heads of 64 channels. Each head follows one of 4 sorted profiles (flat, linear,
    // quadratic, one outlier), at a random overall scale (removed by the L2 normalization), with its channels
    // shuffled (removed by the sort) and 1% noise.
    let (g, nh, p) = (2, 32, 64);
    let mut r = rng(6);
    let profiles: [fn(f64) -> f64; 4] =
        [|t| 1.0 + 0.05 * t, |t| 0.1 + t, |t| 0.01 + t * t * t, |t| if t > 0.98 { 30.0 } else { 0.5 + 0.1 * t }];
    let mut truth = vec![0usize; g * nh];
    let mut stat = vec![0f32; g * nh * p];
    for gi in 0..g {
        let mut kinds: Vec<usize> = (0..nh).map(|i| i % 4).collect();
        kinds.shuffle(&mut r);
        for (hl, &kind) in kinds.iter().enumerate() {
            let h = gi * nh + hl;
            truth[h] = kind;
            let scale = r.random_range(0.2f64..5.0);
            let mut ch: Vec<usize> = (0..p).collect();
            ch.shuffle(&mut r);
            for (q, &c) in ch.iter().enumerate() {
                let v = profiles[kind](q as f64 / (p - 1) as f64) * scale * (1.0 + r.random_range(-0.01..0.01));
                stat[h * p + c] = v as f32;
            }
        }
    }
    let c = sort_and_cluster(&stat, g, nh, p, 4, 4).unwrap();
    check_clusters(&c, &stat);
    for gi in 0..g {
        // Each head cluster holds exactly the 8 heads of one profile.
        assert_eq!(c.head_group_range[gi], vec![8, 16, 24, 32]);
        let mut kinds_seen = vec![];
        for hc in 0..4 {
            let members = &c.head_perm[gi * nh + hc * 8..gi * nh + (hc + 1) * 8];
            let k = truth[members[0]];
            assert!(members.iter().all(|&h| truth[h] == k), "group {gi} cluster {hc}: {members:?}");
            assert!(members.windows(2).all(|w| w[0] < w[1]), "stable order inside a cluster");
            kinds_seen.push(k);
        }
        kinds_seen.sort();
        assert_eq!(kinds_seen, vec![0, 1, 2, 3]);
    }
    // Deterministic.
    assert_eq!(sort_and_cluster(&stat, g, nh, p, 4, 4).unwrap(), c);
}

#[test]
fn sort_and_cluster_recovers_planted_channel_bands() {
    // Every head has 4 magnitude bands of 12, 20, 16, 16 channels (levels 0.1, 1, 4, 20 with noise), so the
    // K-means initialization at 0, 16, 32, 48 lands one centre per band.
    let (nh, p) = (12, 64);
    let sizes = [12usize, 20, 16, 16];
    let levels = [0.1f64, 1.0, 4.0, 20.0];
    let mut r = rng(7);
    let mut stat = vec![0f32; nh * p];
    for h in 0..nh {
        let mut vals = vec![];
        for (s, l) in sizes.iter().zip(levels) {
            vals.extend((0..*s).map(|_| (l * (1.0 + r.random_range(-0.02..0.02))) as f32));
        }
        vals.shuffle(&mut r);
        stat[h * p..(h + 1) * p].copy_from_slice(&vals);
    }
    let c = sort_and_cluster(&stat, 1, nh, p, 4, 4).unwrap();
    check_clusters(&c, &stat);
    for hc in 0..4 {
        let (lo, hi) = (if hc == 0 { 0 } else { c.head_group_range[0][hc - 1] }, c.head_group_range[0][hc]);
        if lo < hi {
            assert_eq!(c.dim_group_range[0][hc], vec![12, 32, 48, 64], "head cluster {hc}");
            assert_eq!(c.segmentation[0][hc], Segmentation::KMeans);
        }
    }
}

#[test]
fn dp_fallback_is_optimal_and_recovers_bands() {
    // Bands of 40, 12, 8, 4: K-means from 0/16/32/48 would split the big band; the DP finds the bands.
    let mut r = rng(8);
    let sizes = [40usize, 12, 8, 4];
    let mut points = vec![];
    for (s, l) in sizes.iter().zip([0.1f64, 1.0, 3.0, 9.0]) {
        for _ in 0..*s {
            points.push(vec![l + r.random_range(-0.01..0.01), 2.0 * l + r.random_range(-0.01..0.01)]);
        }
    }
    points.sort_by(|a, b| a[0].total_cmp(&b[0]));
    assert_eq!(dp_segmentation_for_tests(&points, 4), vec![40, 52, 60, 64]);
    // Brute force over all breakpoints on a small random instance: the DP cost is the minimum.
    let pts: Vec<Vec<f64>> = (0..11).map(|_| vec![r.random_range(0.0..1.0), r.random_range(0.0..1.0)]).collect();
    let sse = |ends: &[usize]| -> f64 {
        let mut start = 0;
        let mut total = 0.0;
        for &e in ends {
            let n = (e - start) as f64;
            for d in 0..2 {
                let mean = pts[start..e].iter().map(|v| v[d]).sum::<f64>() / n;
                total += pts[start..e].iter().map(|v| (v[d] - mean).powi(2)).sum::<f64>();
            }
            start = e;
        }
        total
    };
    let got = sse(&dp_segmentation_for_tests(&pts, 3));
    let mut best = f64::INFINITY;
    for a in 1..10 {
        for b in a + 1..11 {
            best = best.min(sse(&[a, b, 11]));
        }
    }
    assert!((got - best).abs() < 1e-12, "{got} vs {best}");
}

#[test]
fn constant_statistic_falls_back_to_even_split() {
    // All channels tie: K-means puts every position in the first cluster; the DP's tie-break splits evenly.
    let stat = vec![1.5f32; 4 * 64];
    let c = sort_and_cluster(&stat, 1, 4, 64, 2, 4).unwrap();
    check_clusters(&c, &stat);
    assert_eq!(c.dim_group_range[0][0], vec![16, 32, 48, 64]);
    assert_eq!(c.segmentation[0][0], Segmentation::DynamicProgramming);
    // Ties keep the channel order; identical heads end in one cluster (ordered by head index).
    assert_eq!(c.channel_perm, (0..256).collect::<Vec<_>>());
    assert_eq!(c.head_group_range[0], vec![3, 4]);
}

#[test]
fn sort_and_cluster_edge_shapes() {
    let mut r = rng(9);
    // (ngroups, heads per group, headdim, head clusters, dim clusters)
    for &(g, nh, p, hc, dc) in &[
        (3, 5, 7, 4, 4),
        (2, 2, 8, 4, 4),  // fewer heads than clusters
        (1, 4, 3, 4, 4),  // headdim < dim clusters
        (2, 3, 1, 4, 4),  // one channel per head
        (1, 9, 16, 1, 1), // one cluster each
        (1, 1, 5, 4, 2),  // a single head
        (4, 16, 64, 4, 4),
        (1, 40, 32, 3, 5),
    ] {
        let stat: Vec<f32> = (0..g * nh * p).map(|_| r.random_range(0.0f32..3.0).powi(3)).collect();
        let c = sort_and_cluster(&stat, g, nh, p, hc, dc).unwrap();
        check_clusters(&c, &stat);
        for gi in 0..g {
            // Non-empty head clusters first, exactly min(nh, hc) of them.
            let sizes: Vec<usize> =
                c.head_group_range[gi].iter().scan(0, |prev, &e| Some(e - std::mem::replace(prev, e))).collect();
            assert_eq!(sizes.iter().filter(|&&s| s > 0).count(), nh.min(hc), "{g} {nh} {p} {hc} {dc}: {sizes:?}");
            for (i, dims) in c.dim_group_range[gi].iter().enumerate() {
                if sizes[i] > 0 {
                    let widths: Vec<usize> =
                        dims.iter().scan(0, |prev, &e| Some(e - std::mem::replace(prev, e))).collect();
                    assert_eq!(widths.iter().filter(|&&w| w > 0).count(), p.min(dc), "{dims:?}");
                }
            }
        }
        assert_eq!(sort_and_cluster(&stat, g, nh, p, hc, dc).unwrap(), c, "deterministic");
        let rebuilt = QuambaClusters::from_parts(
            g,
            nh,
            p,
            c.head_perm.clone(),
            c.channel_perm.clone(),
            c.head_group_range.clone(),
            c.dim_group_range.clone(),
        )
        .unwrap();
        assert_eq!(rebuilt.channel_groups(ChannelLayout::Original), c.channel_groups(ChannelLayout::Original));
    }
    // headdim < dim clusters: one channel per group, then empty groups.
    let c = sort_and_cluster(&[3.0, 1.0, 2.0], 1, 1, 3, 1, 4).unwrap();
    assert_eq!(c.dim_group_range[0][0], vec![1, 2, 3, 3]);
    assert_eq!(c.channel_perm, vec![1, 2, 0]);
    // An empty head cluster gets the even split.
    let c = sort_and_cluster(&[1.0; 8], 1, 1, 8, 2, 4).unwrap();
    assert_eq!(c.head_group_range[0], vec![1, 1]);
    assert_eq!(c.dim_group_range[0][1], vec![2, 4, 6, 8]);
    assert_eq!(c.segmentation[0][1], Segmentation::Trivial);
    assert_eq!(segment_positions(&[], 2, 4).0, vec![0, 1, 1, 2]);
}

#[test]
fn sort_and_cluster_errors() {
    let stat = vec![1.0f32; 2 * 4 * 8];
    for (g, nh, p, hc, dc) in [(0, 4, 8, 4, 4), (2, 0, 8, 4, 4), (2, 4, 0, 4, 4), (2, 4, 8, 0, 4), (2, 4, 8, 4, 0)] {
        assert!(matches!(sort_and_cluster(&stat, g, nh, p, hc, dc), Err(CalibError::InvalidOption { .. })));
    }
    assert!(matches!(sort_and_cluster(&stat, 2, 4, 7, 4, 4), Err(CalibError::ShapeMismatch { .. })));
    let mut bad = stat.clone();
    bad[9] = f32::INFINITY;
    match sort_and_cluster(&bad, 2, 4, 8, 4, 4) {
        Err(CalibError::NonFinite { index, .. }) => assert_eq!(index, "[1, 1]"),
        other => panic!("{other:?}"),
    }
    assert!("sideways".parse::<ChannelLayout>().is_err());
    assert_eq!("original".parse::<ChannelLayout>().unwrap(), ChannelLayout::Original);
}

#[test]
fn from_parts_rejects_invalid_clusters() {
    let good = sort_and_cluster(&(0..2 * 4 * 4).map(|i| (i % 7) as f32).collect::<Vec<_>>(), 2, 4, 4, 2, 2).unwrap();
    let rebuild = |c: &QuambaClusters| {
        QuambaClusters::from_parts(
            c.ngroups,
            c.nheads_per_group,
            c.headdim,
            c.head_perm.clone(),
            c.channel_perm.clone(),
            c.head_group_range.clone(),
            c.dim_group_range.clone(),
        )
    };
    rebuild(&good).unwrap();
    // A head moved into another SSD group (channels moved along, so only the head check fails).
    let mut c = good.clone();
    let (a, b) = (c.head_perm[0], c.head_perm[4]);
    c.head_perm.swap(0, 4);
    for pos in 0..4 {
        c.channel_perm[pos] = b * 4 + pos;
        c.channel_perm[16 + pos] = a * 4 + pos;
    }
    assert!(rebuild(&c).unwrap_err().to_string().contains("another group"));
    // A channel that leaves its head.
    let mut c = good.clone();
    c.channel_perm.swap(0, 4);
    assert!(rebuild(&c).unwrap_err().to_string().contains("channel_perm"));
    // Not a permutation.
    let mut c = good.clone();
    c.head_perm[1] = c.head_perm[0];
    assert!(rebuild(&c).is_err());
    // Ranges: decreasing, wrong end, wrong length.
    for r in [vec![3, 2], vec![1, 3], vec![4]] {
        let mut c = good.clone();
        c.head_group_range[0] = r;
        assert!(rebuild(&c).is_err());
    }
    let mut c = good.clone();
    c.dim_group_range[1][0] = vec![2, 5];
    assert!(rebuild(&c).is_err());
}
