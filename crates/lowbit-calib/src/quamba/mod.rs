//! Quamba / Quamba2 calibration for Mamba1 / Mamba2 (algorithms spec §3.2–3.4; issue 7).
//!
//! How the pieces map to the method (the Python driver `lowbit.mamba` collects activations with forward
//! hooks and calls these through `lowbit._C`):
//!
//! | Method step (spec §3.4) | Here |
//! |---|---|
//! | 1. Hadamard setup, 4. fuse the Hadamards into `in_proj` (`W·H`) / `out_proj` (`H·W·H`) | [`fuse_hadamard`] with [`HadamardSide::Input`] / [`HadamardSide::Output`]; block-diagonal normalized Hadamard with a power-of-two block ([`hadamard_block`]) — the online FWHT before `out_proj` must use the same block |
//! | 2.1 sort-and-cluster statistic `max over samples of mean_t|x|` | [`ChannelMeanAbsMax`] |
//! | 2.2–2.4 sort channels, Ward-cluster heads, K-means channel groups | [`sort_and_cluster`] → [`QuambaClusters`] (`head_perm`, `channel_perm`, `head_group_range`, `dim_group_range`) |
//! | 2.5 apply the permutation to the weights | the caller, with `head_perm` / `channel_perm` |
//! | 3. Quamba2 x scales per (group, head cluster, channel group) | [`GroupAbsMaxObserver::x_clusters`] |
//! | 3. Quamba2 B / C scales per SSD (state) group | [`GroupAbsMaxObserver::per_state_group`] |
//! | 3. Quamba2 SSM-state scales per (group, head cluster, channel group, state index) | [`GroupAbsMaxObserver::ssm_state`] |
//! | 3. every other tap: per-tensor absmax | [`GroupAbsMaxObserver::per_tensor`] |
//! | 3. Quamba (Mamba1, or Mamba2 without reordering): SSM input x and state with a percentile EMA | [`PercentileObserver`] (α default 0.9995, momentum 0.01) |
//!
//! Every static scale is `max(clip / 127, 1e-6)` ([`int8_scale`]); codes are symmetric int8 (−127..127).
//! The group observers and [`QuambaClusters::channel_groups`] accept x / state data in either the original
//! or the reordered channel order ([`ChannelLayout`]), so calibration may run before or after the weights
//! are permuted. Per-cluster scales are expanded into the per-channel scale vectors the kernels take by
//! indexing with [`QuambaClusters::channel_groups`].
//!
//! ```
//! use lowbit_calib::quamba::{ChannelLayout, GroupAbsMaxObserver, sort_and_cluster};
//!
//! // 1 SSD group, 8 heads of 16 channels: a statistic per channel.
//! let stat: Vec<f32> = (0..8 * 16).map(|i| 1.0 + ((i * 7) % 13) as f32).collect();
//! let c = sort_and_cluster(&stat, 1, 8, 16, 4, 4)?;
//! assert_eq!(c.head_group_range[0].last(), Some(&8));
//! let mut obs = GroupAbsMaxObserver::x_clusters(&c, ChannelLayout::Original)?;
//! obs.update(&vec![0.5; 3 * 128], 3)?; // 3 tokens of x
//! assert_eq!(obs.scales()?.len(), 16);
//! # Ok::<(), lowbit_calib::CalibError>(())
//! ```

mod cluster;
mod hadamard;
mod observer;

pub use cluster::{ChannelLayout, QuambaClusters, Segmentation, sort_and_cluster};
pub use hadamard::{HadamardSide, fuse_hadamard, fuse_hadamard_in_place, hadamard_block};
pub use observer::{
    ChannelMeanAbsMax, DEFAULT_PERCENTILE_ALPHA, DEFAULT_PERCENTILE_MOMENTUM, GroupAbsMaxObserver, INT8_QMAX,
    MIN_SCALE, PercentileObserver, abs_quantile, int8_scale,
};

#[cfg(test)]
mod tests;
