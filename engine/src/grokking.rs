//! The fitting time and the grokking time of a recorded trajectory.

use serde::{Deserialize, Serialize};

use crate::stepping::Trajectory;

/// When the training loss was fitted and when the test metric dropped.
///
/// - `t_fit`: the first sample at which F ≤ `fit_ratio` × F(θ_init) (default 10⁻³).
/// - `t_grok`: the first sample after `t_fit` at which the test metric has fallen half-way,
///   in log scale, from its value at Φ(θ_init) to its final value:
///   log m(t) ≤ ½(log m(Φ) + log m_final). None when the test metric did not fall.
/// - `tau_grok` = λ·t_grok.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrokkingTimes {
    /// Fitting time.
    pub t_fit: Option<f64>,
    /// Grokking time.
    pub t_grok: Option<f64>,
    /// Grokking time in slow time.
    pub tau_grok: Option<f64>,
}

/// The default fitting threshold, relative to the initial training loss.
pub const FIT_RATIO: f64 = 1e-3;

/// See [`GrokkingTimes`]. `test_at_phi` is the test metric at Φ(θ_init).
pub fn grokking_times(
    traj: &Trajectory,
    test_at_phi: Option<f64>,
    lambda: f64,
    fit_ratio: f64,
) -> GrokkingTimes {
    let samples = &traj.samples;
    let Some(first) = samples.first() else {
        return GrokkingTimes::default();
    };
    let fit_idx = samples
        .iter()
        .position(|s| s.train_loss <= fit_ratio * first.train_loss);
    let t_fit = fit_idx.map(|i| samples[i].t);
    let floor = 1e-300f64;
    let t_grok = match (
        fit_idx,
        test_at_phi,
        samples.last().and_then(|s| s.test_loss),
    ) {
        (Some(i), Some(at_phi), Some(last)) if at_phi > last => {
            let mid = 0.5 * (at_phi.max(floor).ln() + last.max(floor).ln());
            samples[i..]
                .iter()
                .find(|s| s.test_loss.is_some_and(|m| m.max(floor).ln() <= mid))
                .map(|s| s.t)
        }
        _ => None,
    };
    GrokkingTimes {
        t_fit,
        t_grok,
        tau_grok: t_grok.map(|t| lambda * t),
    }
}
