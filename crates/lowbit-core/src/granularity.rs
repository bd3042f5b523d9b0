//! Quantization granularity along K: groups of 32/64/128 consecutive input features, or one group per row.

use crate::error::{LowbitError, Result};
use serde::{Deserialize, Serialize};

/// Group sizes every group-quantized format accepts.
pub const SUPPORTED_GROUPS: [usize; 3] = [32, 64, 128];

/// How many consecutive input features (along K) share one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Granularity {
    /// Groups of `G` consecutive columns, `G ∈ {32, 64, 128}`.
    Group(usize),
    /// One group spanning the whole row (`G = K`).
    PerChannel,
}

impl Granularity {
    /// Group length for a row of `k` columns.
    pub fn group_len(&self, k: usize) -> usize {
        match *self {
            Granularity::Group(g) => g,
            Granularity::PerChannel => k,
        }
    }

    /// Number of groups per row of `k` columns (`k` must be divisible; see [`Granularity::check`]).
    pub fn n_groups(&self, k: usize) -> usize {
        match *self {
            Granularity::Group(g) => k / g,
            Granularity::PerChannel => 1,
        }
    }

    /// Checks the group size is supported and divides `k`; `format` names the caller in the error.
    pub fn check(&self, k: usize, format: &'static str) -> Result<()> {
        match *self {
            Granularity::Group(g) => {
                if !SUPPORTED_GROUPS.contains(&g) {
                    return Err(LowbitError::InvalidGroupSize {
                        format,
                        group: g,
                        supported: "32, 64, 128 or per-channel",
                    });
                }
                if !k.is_multiple_of(g) {
                    return Err(LowbitError::KNotDivisible { k, group: g });
                }
                Ok(())
            }
            Granularity::PerChannel => Ok(()),
        }
    }

    /// Scheme-string suffix: `g128` or `pc`.
    pub fn suffix(&self) -> String {
        match *self {
            Granularity::Group(g) => format!("g{g}"),
            Granularity::PerChannel => "pc".to_string(),
        }
    }
}
