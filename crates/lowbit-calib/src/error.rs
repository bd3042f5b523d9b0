//! The one error type of lowbit-calib.

use lowbit_core::LowbitError;

/// Everything that can go wrong while calibrating: bad data, bad shapes, a Hessian that stays singular, an
/// unsupported scheme or option. Errors of lowbit-core pass through as [`CalibError::Core`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibError {
    /// NaN or infinity in calibration data, a weight or a Hessian.
    #[error("non-finite value {value} in {what} at {index}")]
    NonFinite {
        /// Which tensor (e.g. `activations`, `weight`, `hessian`).
        what: String,
        /// `[row, col]` of the first offending element.
        index: String,
        /// The offending value.
        value: f64,
    },
    /// A statistic was asked of an observer or accumulator that has seen no data.
    #[error("no samples: {what} has seen no data")]
    NoSamples {
        /// Which observer or accumulator.
        what: String,
    },
    /// Shapes that do not agree (K of activations vs the accumulator, weight vs Hessian...).
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which tensor or argument.
        what: String,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// The damped Hessian is still not positive definite at the largest damping allowed.
    #[error(
        "Hessian is not positive definite: Cholesky failed at every damping up to {max_damp_percent} of the mean \
         diagonal ({attempts} attempts)"
    )]
    NotPositiveDefinite {
        /// The largest relative damping tried.
        max_damp_percent: f64,
        /// How many dampings were tried.
        attempts: usize,
    },
    /// A scheme or combination the calibrator does not handle.
    #[error("unsupported scheme {scheme}: {reason}")]
    UnsupportedScheme {
        /// The scheme, as its name.
        scheme: String,
        /// Why.
        reason: String,
    },
    /// An option outside its valid range.
    #[error("invalid option {what}: {reason}")]
    InvalidOption {
        /// Which option.
        what: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An error from lowbit-core (formats, validation).
    #[error(transparent)]
    Core(#[from] LowbitError),
}

/// `Result` with [`CalibError`].
pub type Result<T> = std::result::Result<T, CalibError>;

impl CalibError {
    pub(crate) fn shape(what: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Self::ShapeMismatch { what: what.into(), expected: expected.to_string(), got: got.to_string() }
    }

    pub(crate) fn option(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidOption { what: what.into(), reason: reason.into() }
    }
}

/// Fails on the first NaN or infinity of `x`, naming the tensor and the element.
pub(crate) fn check_finite_f32(what: &str, x: &ndarray::ArrayView2<f32>) -> Result<()> {
    // Fast path: Σ v·0 over a row is NaN exactly when some element is NaN or infinite (no overflow possible).
    for (r, row) in x.rows().into_iter().enumerate() {
        let s: f32 = row.iter().fold(0.0, |a, &v| a + v * 0.0);
        if !s.is_finite()
            && let Some((c, &v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite())
        {
            return Err(CalibError::NonFinite { what: what.into(), index: format!("[{r}, {c}]"), value: v as f64 });
        }
    }
    Ok(())
}
