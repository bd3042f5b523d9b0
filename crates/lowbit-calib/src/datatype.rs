//! BitMoD per-group datatype search options, and a round-to-nearest BitMoD quantizer that uses them.
//!
//! lowbit-core's [`MixedWeight::quantize`] picks each group's datatype among all four (ER+, ER−, EA+, EA−)
//! by the squared error of the stored weights. This module adds the calibrator's choices:
//! - the **error metric**: plain squared error, or the output-aware error `Σ_k H_kk (ŵ_k − w_k)²` weighted
//!   by the Hessian diagonal (the input energy of each feature), which favours the datatype that is accurate
//!   where the activations are large;
//! - the **candidate set**: any non-empty subset of the four datatypes (e.g. only `ER±`).
//!
//! With the default options ([`DatatypeSearch::default`]: squared error, all four) [`bitmod_quantize`]
//! reproduces [`MixedWeight::quantize`] bit for bit (tested). GPTQ uses the same search at each group start
//! (see [`crate::gptq`]).

use crate::codec::{Codec, MixedCodec};
use crate::error::{CalibError, Result, check_finite_f32};
use crate::hessian::Hessian;
use lowbit_core::{MixedWeight, QuantizedWeight};
use ndarray::ArrayView2;

/// How a group's candidate datatypes are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorMetric {
    /// `Σ (ŵ − w)²` over the group (lowbit-core's and the BitMoD paper's choice).
    #[default]
    Mse,
    /// `Σ H_kk (ŵ_k − w_k)²`: squared error weighted by the Hessian diagonal (needs a Hessian).
    HessianDiag,
}

/// BitMoD datatype search options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatatypeSearch {
    /// The error each candidate is judged by.
    pub metric: ErrorMetric,
    /// Candidate datatypes by selector (0 ER+, 1 ER−, 2 EA+, 3 EA−): non-empty, distinct, each `< 4`. Ties
    /// keep the earlier candidate in this list.
    pub candidates: Vec<u8>,
}

impl Default for DatatypeSearch {
    fn default() -> Self {
        Self { metric: ErrorMetric::Mse, candidates: vec![0, 1, 2, 3] }
    }
}

impl DatatypeSearch {
    /// Checks the candidate list.
    pub fn validate(&self) -> Result<()> {
        if self.candidates.is_empty() {
            return Err(CalibError::option("datatype candidates", "empty (need at least one of 0..4)"));
        }
        for (i, &c) in self.candidates.iter().enumerate() {
            if c > 3 {
                return Err(CalibError::option("datatype candidates", format!("selector {c} is not in 0..4")));
            }
            if self.candidates[..i].contains(&c) {
                return Err(CalibError::option("datatype candidates", format!("selector {c} repeats")));
            }
        }
        Ok(())
    }
}

/// Round-to-nearest BitMoD quantization of `w[N, K]` (`bits` 3 or 4, `group` 32/64/128) with the datatype
/// search options `search`; `hessian` (of size `K`) is required by [`ErrorMetric::HessianDiag`] and ignored
/// otherwise. Same two-pass procedure as lowbit-core (float scales pick `Δ_ch`, then every candidate is
/// judged with its stored `u8 × f16` scale).
pub fn bitmod_quantize(
    w: ArrayView2<f32>,
    bits: u32,
    group: usize,
    search: &DatatypeSearch,
    hessian: Option<&Hessian>,
) -> Result<MixedWeight> {
    check_finite_f32("weight", &w)?;
    let (n, k) = w.dim();
    if n == 0 || k == 0 {
        return Err(CalibError::shape("weight", "a non-empty [N, K] matrix", format!("[{n}, {k}]")));
    }
    let weights = match (search.metric, hessian) {
        (ErrorMetric::Mse, _) => None,
        (ErrorMetric::HessianDiag, Some(h)) if h.k() == k => Some(h.diag()),
        (ErrorMetric::HessianDiag, Some(h)) => {
            return Err(CalibError::shape("Hessian", format!("[{k}, {k}]"), format!("[{0}, {0}]", h.k())));
        }
        (ErrorMetric::HessianDiag, None) => {
            return Err(CalibError::option("datatype search", "the HessianDiag metric needs a Hessian"));
        }
    };
    let mut codec = MixedCodec::new(bits, group, search.clone())?;
    let wt = w.t().mapv(f64::from);
    codec.fit_channel_scales(wt.view(), weights.as_deref())?;
    let codec = Codec::Mixed(codec);
    codec.check_k(k)?;
    match crate::gptq::round_to_nearest(&codec, wt.view(), weights.as_deref())? {
        QuantizedWeight::Mixed(m) => Ok(m),
        other => Err(CalibError::UnsupportedScheme {
            scheme: other.scheme().to_string(),
            reason: "internal: the BitMoD quantizer built another format".into(),
        }),
    }
}
