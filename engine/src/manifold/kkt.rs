//! The KKT condition of min ½‖θ‖² on M (Prop. 3): P(θ)θ = 0, θ normal to M.

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::la::norm;
use crate::loss::Loss;

/// The KKT residual ‖P(θ)θ‖/max(‖θ‖, 1) from the projected point Pθ (or −Pθ).
pub(crate) fn kkt_residual(theta: &[f64], projected: &[f64]) -> f64 {
    norm(projected) / norm(theta).max(1.0)
}

/// The KKT structure of a point near M: its residual with P the projector onto the kernel of
/// ∇²F (split at the spectrum's largest gap), and the Morse–Bott constant μ and gap there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KktInfo {
    /// ‖P(θ)θ‖/max(‖θ‖, 1).
    pub residual: f64,
    /// The smallest non-zero curvature μ.
    pub mu: f64,
    /// The spectral gap of the split.
    pub gap: f64,
    /// dim ker ∇²F.
    pub kernel_dim: usize,
}

/// See [`KktInfo`] (the projector chosen as the limiting flow's default chooses it).
pub fn kkt_info(loss: &dyn Loss, theta: &[f64]) -> Result<KktInfo, EngineError> {
    Ok(crate::limiting::tangent_projection(loss, theta, crate::Projector::Auto)?.1)
}
