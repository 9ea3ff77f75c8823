//! Spectral summaries of a learned matrix: singular values, effective rank, nuclear norm.

use grokflow_engine::la::DMat;
use serde::{Deserialize, Serialize};

/// Singular values relative to the largest below which a direction counts as absent.
pub const RANK_THRESHOLD: f64 = 1e-3;

/// The singular values of `m`, largest first.
pub fn singular_values(m: &DMat) -> Vec<f64> {
    let mut s = m
        .singular_values()
        .unwrap_or_else(|_| vec![f64::NAN; m.nrows().min(m.ncols())]);
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// What a researcher looks at in a learned matrix X.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixReport {
    /// Singular values of X, largest first.
    pub singular_values: Vec<f64>,
    /// How many singular values exceed `RANK_THRESHOLD` × the largest.
    pub effective_rank: usize,
    /// ‖X − M*‖_F / ‖M*‖_F, if M* is known.
    pub relative_error: Option<f64>,
    /// ‖X‖_*.
    pub nuclear_norm: f64,
    /// ‖θ‖² (‖U‖² + ‖V‖², or ‖U‖² for a symmetric factorisation).
    pub weight_sq_norm: f64,
    /// The factor c in the bound ‖θ‖² ≥ c‖X‖_* (2 for UVᵀ, 1 for UUᵀ).
    pub bound_factor: f64,
}

impl MatrixReport {
    /// The report of X (with truth M* if known) at a point of squared norm `weight_sq_norm`.
    pub fn new(x: &DMat, truth: Option<&DMat>, weight_sq_norm: f64, bound_factor: f64) -> Self {
        let sv = singular_values(x);
        let top = sv.first().copied().unwrap_or(0.0);
        Self {
            effective_rank: sv.iter().filter(|s| **s > RANK_THRESHOLD * top).count(),
            nuclear_norm: sv.iter().sum(),
            relative_error: truth.map(|t| (x - t).norm_l2() / t.norm_l2()),
            singular_values: sv,
            weight_sq_norm,
            bound_factor,
        }
    }
}
