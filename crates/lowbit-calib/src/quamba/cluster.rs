//! Quamba2 sort-and-cluster (algorithms spec §3.4 step 2): a per-SSD-group reordering of Mamba2 heads and of
//! the channels inside each head, plus the cluster boundaries that the per-cluster x / SSM-state scales use.
//!
//! Input: one statistic per channel of the SSD input x, `stat[ngroups, nheads_per_group, headdim]` (the
//! reference code's `max over samples of mean_t |x_t[c]|`, see [`super::ChannelMeanAbsMax`]).
//!
//! 1. **Sort** every head's channels ascending by `stat` (stable: ties keep channel order).
//! 2. **Cluster heads** of each SSD group: L2-normalize each head's sorted vector (an all-zero head stays
//!    zero) and cut a Ward agglomerative clustering (Euclidean, `kodama`'s nearest-neighbour-chain linkage,
//!    the algorithm behind scikit-learn / SciPy's Ward) into `head_clusters` clusters. Clusters are numbered
//!    by their smallest head index, and heads are ordered by cluster number, stably (ascending head index
//!    inside a cluster); scikit-learn's numbering is arbitrary, so only the partition is comparable.
//! 3. **Cluster channel positions** per head cluster: sorted position `p` is a point whose coordinates are
//!    the sorted normalized values of the cluster's heads at `p`. K-means (Lloyd, nearest centre with ties to
//!    the lower index, to a fixed point of the assignment, at most 300 rounds) with `dim_clusters` centres
//!    initialized at positions `⌊i·headdim/dim_clusters⌋` (0, 16, 32, 48 for headdim 64). The channel
//!    groups must be contiguous runs of positions; the reference asserts it. When K-means leaves a cluster
//!    empty or splits one into several runs, we fall back to the optimal contiguous segmentation into
//!    `dim_clusters` non-empty runs minimizing the same within-cluster sum of squares, by dynamic
//!    programming over the breakpoints (exact ties in the cost are broken toward equal run lengths). Which
//!    path ran is recorded in [`QuambaClusters::segmentation`].
//!
//! Degenerate sizes: fewer heads than `head_clusters` puts each head in its own cluster and leaves the last
//! clusters empty (repeated cumulative counts); `headdim < dim_clusters` makes one channel per group and
//! empty trailing groups; an empty head cluster gets the even split of channel positions. Output is fully
//! deterministic (no random initialization; stable orders everywhere).

use crate::error::{CalibError, Result};

/// Channel order of x / SSM-state data handed to the observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelLayout {
    /// The model's original channel and head order.
    Original,
    /// The reordered order (`channel_perm` applied: new position `i` holds old channel `channel_perm[i]`).
    Reordered,
}

impl std::str::FromStr for ChannelLayout {
    type Err = CalibError;

    /// `"original"` or `"reordered"`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "original" => Ok(Self::Original),
            "reordered" => Ok(Self::Reordered),
            other => {
                Err(CalibError::option("channel layout", format!("'{other}' (expected 'original' or 'reordered')")))
            }
        }
    }
}

/// How one head cluster's channel groups were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segmentation {
    /// K-means gave contiguous, non-empty groups.
    KMeans,
    /// K-means did not; the optimal contiguous segmentation (dynamic programming) was used.
    DynamicProgramming,
    /// Nothing to cluster: one group, one channel per group, or an empty head cluster (even split).
    Trivial,
}

/// The result of [`sort_and_cluster`]: permutations and cumulative cluster ranges, in the layout of Quamba2's
/// `x_head_group_range[ngroups, head_clusters]` and `x_dim_group_range[ngroups, head_clusters, dim_clusters]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuambaClusters {
    /// SSD groups (`G`).
    pub ngroups: usize,
    /// Heads per SSD group.
    pub nheads_per_group: usize,
    /// Channels per head (`P`).
    pub headdim: usize,
    /// Head clusters per SSD group.
    pub head_clusters: usize,
    /// Channel groups per head cluster.
    pub dim_clusters: usize,
    /// New head position → old head index (global); heads never leave their SSD group.
    pub head_perm: Vec<usize>,
    /// New channel position → old channel index within x (`[nheads·headdim]`); channels never leave their
    /// head, and new head `j`'s channels are old head `head_perm[j]`'s, sorted ascending by the statistic.
    pub channel_perm: Vec<usize>,
    /// `[ngroups][head_clusters]` cumulative head counts within the group (last = `nheads_per_group`).
    pub head_group_range: Vec<Vec<usize>>,
    /// `[ngroups][head_clusters][dim_clusters]` cumulative channel counts within a head (last = `headdim`),
    /// shared by all heads of the head cluster.
    pub dim_group_range: Vec<Vec<Vec<usize>>>,
    /// `[ngroups][head_clusters]`: how each head cluster's channel groups were found.
    pub segmentation: Vec<Vec<Segmentation>>,
}

fn index_of_range(ranges: &[usize], i: usize) -> usize {
    ranges.iter().position(|&end| i < end).unwrap_or(ranges.len() - 1)
}

fn check_cumulative(what: &str, r: &[usize], len: usize, total: usize) -> Result<()> {
    if r.len() != len || r.windows(2).any(|w| w[0] > w[1]) || r.last() != Some(&total) {
        return Err(CalibError::option(
            what,
            format!("{r:?} (expected {len} non-decreasing counts ending at {total})"),
        ));
    }
    Ok(())
}

impl QuambaClusters {
    /// Builds and [validates](Self::validate) a result from its parts (e.g. reloaded from a checkpoint);
    /// `segmentation` is set to [`Segmentation::Trivial`] everywhere.
    pub fn from_parts(
        ngroups: usize,
        nheads_per_group: usize,
        headdim: usize,
        head_perm: Vec<usize>,
        channel_perm: Vec<usize>,
        head_group_range: Vec<Vec<usize>>,
        dim_group_range: Vec<Vec<Vec<usize>>>,
    ) -> Result<Self> {
        let head_clusters = head_group_range.first().map_or(0, Vec::len);
        let dim_clusters = dim_group_range.first().and_then(|g| g.first()).map_or(0, Vec::len);
        let c = Self {
            ngroups,
            nheads_per_group,
            headdim,
            head_clusters,
            dim_clusters,
            head_perm,
            channel_perm,
            head_group_range,
            dim_group_range,
            segmentation: vec![vec![Segmentation::Trivial; head_clusters]; ngroups],
        };
        c.validate()?;
        Ok(c)
    }

    /// Total heads.
    pub fn nheads(&self) -> usize {
        self.ngroups * self.nheads_per_group
    }

    /// Total x channels (`nheads·headdim`).
    pub fn channels(&self) -> usize {
        self.nheads() * self.headdim
    }

    /// Checks every invariant: sizes ≥ 1; `head_perm` a bijection keeping heads in their SSD group;
    /// `channel_perm` a bijection whose new head `j` holds exactly old head `head_perm[j]`'s channels; ranges
    /// of the right shape, non-decreasing, ending at `nheads_per_group` / `headdim`.
    pub fn validate(&self) -> Result<()> {
        let (g, nh, p) = (self.ngroups, self.nheads_per_group, self.headdim);
        if g == 0 || nh == 0 || p == 0 || self.head_clusters == 0 || self.dim_clusters == 0 {
            return Err(CalibError::option(
                "clusters",
                format!(
                    "every size must be ≥ 1 (ngroups {g}, nheads_per_group {nh}, headdim {p}, head_clusters {}, \
                     dim_clusters {})",
                    self.head_clusters, self.dim_clusters
                ),
            ));
        }
        check_perm("head_perm", &self.head_perm, g * nh)?;
        check_perm("channel_perm", &self.channel_perm, g * nh * p)?;
        for (j, &h) in self.head_perm.iter().enumerate() {
            if h / nh != j / nh {
                return Err(CalibError::option(
                    "head_perm",
                    format!("head {h} moved to position {j} of another group"),
                ));
            }
            for (pos, &c) in self.channel_perm[j * p..(j + 1) * p].iter().enumerate() {
                if c / p != h {
                    return Err(CalibError::option(
                        "channel_perm",
                        format!(
                            "position {} (head {j}, channel {pos}) holds channel {c}, not of old head {h}",
                            j * p + pos
                        ),
                    ));
                }
            }
        }
        if self.head_group_range.len() != g || self.dim_group_range.len() != g {
            return Err(CalibError::option("group ranges", format!("expected {g} SSD groups")));
        }
        for gi in 0..g {
            check_cumulative("head_group_range", &self.head_group_range[gi], self.head_clusters, nh)?;
            if self.dim_group_range[gi].len() != self.head_clusters {
                return Err(CalibError::option(
                    "dim_group_range",
                    format!("group {gi}: expected {} head clusters", self.head_clusters),
                ));
            }
            for r in &self.dim_group_range[gi] {
                check_cumulative("dim_group_range", r, self.dim_clusters, p)?;
            }
        }
        Ok(())
    }

    /// For every x channel, its flat cluster index `(g·head_clusters + head_cluster)·dim_clusters + dim_group`,
    /// with channels in `layout` order (length [`channels`](Self::channels)). Indexing a
    /// `[ngroups, head_clusters, dim_clusters]` scale tensor with it expands per-cluster scales into the
    /// per-channel scale vector the kernels take.
    pub fn channel_groups(&self, layout: ChannelLayout) -> Vec<usize> {
        let (nh, p) = (self.nheads_per_group, self.headdim);
        let mut out = vec![0; self.channels()];
        for j in 0..self.nheads() {
            let (g, jl) = (j / nh, j % nh);
            let hc = index_of_range(&self.head_group_range[g], jl);
            let dims = &self.dim_group_range[g][hc];
            for pos in 0..p {
                let flat = (g * self.head_clusters + hc) * self.dim_clusters + index_of_range(dims, pos);
                let col = match layout {
                    ChannelLayout::Reordered => j * p + pos,
                    ChannelLayout::Original => self.channel_perm[j * p + pos],
                };
                out[col] = flat;
            }
        }
        out
    }
}

fn check_perm(what: &str, perm: &[usize], n: usize) -> Result<()> {
    if perm.len() != n {
        return Err(CalibError::shape(what, n, perm.len()));
    }
    let mut seen = vec![false; n];
    for &i in perm {
        if i >= n || std::mem::replace(&mut seen[i], true) {
            return Err(CalibError::option(what, format!("not a permutation of 0..{n} (index {i})")));
        }
    }
    Ok(())
}

/// Runs Quamba2's sort-and-cluster on `stat[ngroups, nheads_per_group, headdim]` (see the module doc).
/// Errors: a zero size, a length mismatch, NaN/Inf in `stat`.
pub fn sort_and_cluster(
    stat: &[f32],
    ngroups: usize,
    nheads_per_group: usize,
    headdim: usize,
    head_clusters: usize,
    dim_clusters: usize,
) -> Result<QuambaClusters> {
    let (nh, p) = (nheads_per_group, headdim);
    if ngroups == 0 || nh == 0 || p == 0 || head_clusters == 0 || dim_clusters == 0 {
        return Err(CalibError::option(
            "sort_and_cluster",
            format!(
                "every size must be ≥ 1 (ngroups {ngroups}, nheads_per_group {nh}, headdim {p}, head_clusters \
                 {head_clusters}, dim_clusters {dim_clusters})"
            ),
        ));
    }
    let nheads = ngroups * nh;
    if stat.len() != nheads * p {
        return Err(CalibError::shape("stat", format!("[{ngroups}, {nh}, {p}] = {} values", nheads * p), stat.len()));
    }
    if let Some((i, &v)) = stat.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(CalibError::NonFinite {
            what: "stat".into(),
            index: format!("[{}, {}]", i / p, i % p),
            value: v as f64,
        });
    }

    // 1. Per head: ascending argsort (stable) and the L2-normalized sorted vector.
    let mut order: Vec<Vec<usize>> = Vec::with_capacity(nheads);
    let mut sorted: Vec<Vec<f64>> = Vec::with_capacity(nheads);
    for h in 0..nheads {
        let s = &stat[h * p..(h + 1) * p];
        let mut idx: Vec<usize> = (0..p).collect();
        idx.sort_by(|&a, &b| s[a].total_cmp(&s[b]));
        let v: Vec<f64> = idx.iter().map(|&c| s[c] as f64).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        sorted.push(if norm > 0.0 { v.iter().map(|x| x / norm).collect() } else { v });
        order.push(idx);
    }

    let mut head_perm = Vec::with_capacity(nheads);
    let mut head_group_range = Vec::with_capacity(ngroups);
    let mut dim_group_range = Vec::with_capacity(ngroups);
    let mut segmentation = Vec::with_capacity(ngroups);
    for g in 0..ngroups {
        let heads: Vec<usize> = (g * nh..(g + 1) * nh).collect();
        let points: Vec<&[f64]> = heads.iter().map(|&h| sorted[h].as_slice()).collect();
        // 2. Ward clustering of the heads; stable order by cluster number.
        let labels = ward_labels(&points, head_clusters);
        let mut local: Vec<usize> = (0..nh).collect();
        local.sort_by_key(|&i| labels[i]);
        let mut ranges = Vec::with_capacity(head_clusters);
        let mut dims = Vec::with_capacity(head_clusters);
        let mut segs = Vec::with_capacity(head_clusters);
        let mut end = 0;
        for c in 0..head_clusters {
            let members: Vec<usize> = local.iter().copied().filter(|&i| labels[i] == c).collect();
            end += members.len();
            ranges.push(end);
            // 3. Contiguous channel groups over sorted positions, shared by the cluster's heads.
            let vecs: Vec<&[f64]> = members.iter().map(|&i| points[i]).collect();
            let (r, s) = segment_positions(&vecs, p, dim_clusters);
            dims.push(r);
            segs.push(s);
        }
        head_perm.extend(local.iter().map(|&i| heads[i]));
        head_group_range.push(ranges);
        dim_group_range.push(dims);
        segmentation.push(segs);
    }
    let channel_perm = head_perm.iter().flat_map(|&h| order[h].iter().map(move |&c| h * p + c)).collect();
    let out = QuambaClusters {
        ngroups,
        nheads_per_group: nh,
        headdim: p,
        head_clusters,
        dim_clusters,
        head_perm,
        channel_perm,
        head_group_range,
        dim_group_range,
        segmentation,
    };
    debug_assert!(out.validate().is_ok());
    Ok(out)
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Ward clustering of `points` cut into at most `k` clusters; labels `0..min(k, n)` numbered by the smallest
/// member index. `n ≤ k` gives singletons.
pub(crate) fn ward_labels(points: &[&[f64]], k: usize) -> Vec<usize> {
    let n = points.len();
    if n <= k {
        return (0..n).collect();
    }
    let mut condensed = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            condensed.push(sq_dist(points[i], points[j]).sqrt());
        }
    }
    let dendrogram = kodama::linkage(&mut condensed, n, kodama::Method::Ward);
    // Apply the first n − k merges (steps are ordered by dissimilarity; step s creates cluster n + s).
    let mut parent: Vec<usize> = (0..2 * n - 1).collect();
    for (s, step) in dendrogram.steps().iter().take(n - k).enumerate() {
        parent[step.cluster1] = n + s;
        parent[step.cluster2] = n + s;
    }
    let root = |mut c: usize| {
        while parent[c] != c {
            c = parent[c];
        }
        c
    };
    let mut number = std::collections::HashMap::new();
    (0..n)
        .map(|i| {
            let next = number.len();
            *number.entry(root(i)).or_insert(next)
        })
        .collect()
}

/// Splits `p` sorted positions into `k` contiguous groups for one head cluster whose heads' sorted normalized
/// vectors are `vecs`; returns cumulative ends (length `k`, last = `p`) and how they were found.
pub(crate) fn segment_positions(vecs: &[&[f64]], p: usize, k: usize) -> (Vec<usize>, Segmentation) {
    let keff = k.min(p);
    let pad = |mut r: Vec<usize>| {
        r.resize(k, p);
        r
    };
    if vecs.is_empty() {
        // An empty head cluster: even split (never used by a head, but keeps the ranges well formed).
        return ((1..=k).map(|i| i * p / k).collect(), Segmentation::Trivial);
    }
    if keff == 1 {
        return (pad(vec![p]), Segmentation::Trivial);
    }
    if keff == p {
        return (pad((1..=p).collect()), Segmentation::Trivial);
    }
    // Points: position q → (vecs[h][q])_h.
    let points: Vec<Vec<f64>> = (0..p).map(|q| vecs.iter().map(|v| v[q]).collect()).collect();
    if let Some(r) = kmeans_contiguous(&points, keff) {
        return (pad(r), Segmentation::KMeans);
    }
    (pad(dp_segmentation(&points, keff)), Segmentation::DynamicProgramming)
}

const KMEANS_MAX_ROUNDS: usize = 300;

/// Lloyd's K-means over `points` with centres initialized at positions `⌊i·p/k⌋`; `Some(cumulative ends)`
/// when the final clusters are `k` non-empty contiguous runs, else `None`.
fn kmeans_contiguous(points: &[Vec<f64>], k: usize) -> Option<Vec<usize>> {
    let p = points.len();
    let dim = points[0].len();
    let mut centres: Vec<Vec<f64>> = (0..k).map(|i| points[i * p / k].clone()).collect();
    let mut labels = vec![usize::MAX; p];
    for _ in 0..KMEANS_MAX_ROUNDS {
        let mut changed = false;
        for (q, x) in points.iter().enumerate() {
            let mut best = (f64::INFINITY, 0);
            for (c, centre) in centres.iter().enumerate() {
                let d = sq_dist(x, centre);
                if d < best.0 {
                    best = (d, c);
                }
            }
            if labels[q] != best.1 {
                labels[q] = best.1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let mut sums = vec![vec![0f64; dim]; k];
        let mut counts = vec![0usize; k];
        for (x, &l) in points.iter().zip(&labels) {
            counts[l] += 1;
            sums[l].iter_mut().zip(x).for_each(|(s, v)| *s += v);
        }
        for c in 0..k {
            // An empty cluster keeps its centre; the result is then rejected below.
            if counts[c] > 0 {
                centres[c] = sums[c].iter().map(|s| s / counts[c] as f64).collect();
            }
        }
    }
    // Contiguity: every label forms exactly one run, and all k labels occur.
    let mut ends = Vec::with_capacity(k);
    let mut seen = vec![false; k];
    for q in 0..p {
        if q + 1 == p || labels[q + 1] != labels[q] {
            if std::mem::replace(&mut seen[labels[q]], true) {
                return None;
            }
            ends.push(q + 1);
        }
    }
    (ends.len() == k).then_some(ends)
}

/// Test access to [`dp_segmentation`].
#[cfg(test)]
pub(crate) fn dp_segmentation_for_tests(points: &[Vec<f64>], k: usize) -> Vec<usize> {
    dp_segmentation(points, k)
}

/// The optimal segmentation of `points` (in order) into `k` non-empty contiguous runs minimizing the total
/// within-run sum of squared distances to the run mean; cost ties (relative 1e-12) go to the split with the
/// smaller sum of squared run lengths, then to the earliest breakpoint. O(k·p²) after an O(p²·dim) cost table.
fn dp_segmentation(points: &[Vec<f64>], k: usize) -> Vec<usize> {
    let p = points.len();
    let dim = points[0].len();
    // Prefix sums of the points and of their squared norms.
    let mut s1 = vec![vec![0f64; dim]; p + 1];
    let mut s2 = vec![0f64; p + 1];
    for q in 0..p {
        for d in 0..dim {
            s1[q + 1][d] = s1[q][d] + points[q][d];
        }
        s2[q + 1] = s2[q] + points[q].iter().map(|v| v * v).sum::<f64>();
    }
    let cost = |a: usize, b: usize| -> f64 {
        let n = (b - a) as f64;
        let lin: f64 = (0..dim).map(|d| (s1[b][d] - s1[a][d]).powi(2)).sum();
        (s2[b] - s2[a] - lin / n).max(0.0)
    };
    let cost_table: Vec<Vec<f64>> =
        (0..=p).map(|a| (0..=p).map(|b| if b > a { cost(a, b) } else { 0.0 }).collect()).collect();
    let eps = 1e-12 * s2[p].max(f64::MIN_POSITIVE);
    // best[j][b]: j runs covering positions 0..b, as (cost, Σ len², previous breakpoint).
    let inf = (f64::INFINITY, usize::MAX, 0usize);
    let mut best = vec![vec![inf; p + 1]; k + 1];
    best[0][0] = (0.0, 0, 0);
    for j in 1..=k {
        for b in j..=p - (k - j) {
            let mut cur = inf;
            for a in (j - 1)..b {
                let prev = best[j - 1][a];
                if prev.0.is_infinite() {
                    continue;
                }
                let c = prev.0 + cost_table[a][b];
                let bal = prev.1 + (b - a) * (b - a);
                if c < cur.0 - eps || ((c - cur.0).abs() <= eps && bal < cur.1) {
                    cur = (c, bal, a);
                }
            }
            best[j][b] = cur;
        }
    }
    let mut ends = vec![0; k];
    let mut b = p;
    for j in (1..=k).rev() {
        ends[j - 1] = b;
        b = best[j][b].2;
    }
    ends
}
