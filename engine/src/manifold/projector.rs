//! The tangent projector P(θ) onto T_θM = ker ∇²F(θ), from an orthonormal basis of the normal
//! space read off a spectral decomposition: the SVD of the residual Jacobian J for a
//! least-squares loss (∇²F = JᵀJ/c on M, and J's singular values resolve twice as many
//! digits towards a singular point), the symmetric eigendecomposition of ∇²F otherwise.

use crate::error::EngineError;
use crate::la::{symmetric_eigen, DMat};
use crate::loss::{Loss, Residuals};
use crate::manifold::morse_bott::{morse_bott_constant, split};

/// The normal space at a point near M, the curvature of F along it, and what the
/// retraction needs.
pub(crate) struct TangentProjector {
    /// Orthonormal basis of the normal space N_θM (columns), d×ρ.
    pub(crate) normal: DMat,
    /// The curvature of F along each normal direction (Hessian eigenvalues, or s²/c).
    pub(crate) curvature: Vec<f64>,
    /// dim ker: d − ρ.
    pub(crate) kernel_dim: usize,
    /// The separation of the normal space from the kernel, both floored at the noise of the
    /// decomposition.
    pub(crate) gap: f64,
    /// With residuals: the ρ leading left singular vectors (m×ρ) and singular values, for
    /// the Gauss–Newton retraction.
    pub(crate) left: Option<(DMat, Vec<f64>)>,
}

impl TangentProjector {
    /// The projector at θ. With `rho` the normal space keeps that dimension (a flow follows
    /// one branch of M and the gap is measured there); without, it is split at the largest
    /// relative jump of the spectrum.
    pub(crate) fn at(
        loss: &dyn Loss,
        theta: &[f64],
        rho: Option<usize>,
    ) -> Result<Self, EngineError> {
        match loss.residuals() {
            Some(res) => Self::from_residuals(res, theta, rho),
            None => Self::from_hessian(loss, theta, rho),
        }
    }

    fn from_hessian(
        loss: &dyn Loss,
        theta: &[f64],
        rho: Option<usize>,
    ) -> Result<Self, EngineError> {
        let h = loss.hessian(theta);
        let (values, vectors) = symmetric_eigen(h.as_ref()).map_err(EngineError::LinearAlgebra)?;
        let d = values.len();
        let top = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // Eigenvalues below the noise of a dense eigensolver count as zero.
        let noise = (top * f64::EPSILON * d as f64).max(f64::MIN_POSITIVE);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].abs().total_cmp(&values[a].abs()));
        let mag: Vec<f64> = order.iter().map(|&i| values[i].abs().max(noise)).collect();
        let (rho, gap) = split(&mag, rho, noise);
        let normal = DMat::from_fn(d, rho, |r, c| vectors[(r, order[c])]);
        let curvature = order[..rho].iter().map(|&i| values[i]).collect();
        Ok(Self {
            normal,
            curvature,
            kernel_dim: d - rho,
            gap,
            left: None,
        })
    }

    fn from_residuals(
        res: &dyn Residuals,
        theta: &[f64],
        rho: Option<usize>,
    ) -> Result<Self, EngineError> {
        let (m, d) = (res.count(), theta.len());
        let mut jac = DMat::zeros(m, d);
        res.jacobian_into(theta, jac.as_mut());
        let svd = jac.thin_svd().map_err(|e| {
            EngineError::LinearAlgebra(format!("SVD of the residual Jacobian: {e:?}"))
        })?;
        let q = m.min(d);
        let sv: Vec<f64> = (0..q).map(|i| svd.S().column_vector()[i]).collect();
        let mut order: Vec<usize> = (0..q).collect();
        order.sort_by(|&a, &b| sv[b].total_cmp(&sv[a]));
        let top = sv.iter().cloned().fold(0.0, f64::max);
        let noise = (top * f64::EPSILON * m.max(d) as f64).max(f64::MIN_POSITIVE);
        let mag: Vec<f64> = order.iter().map(|&i| sv[i].max(noise)).collect();
        let (rho, gap) = split(&mag, rho, noise);
        let (u, v) = (svd.U(), svd.V());
        let normal = DMat::from_fn(d, rho, |r, c| v[(r, order[c])]);
        let left = DMat::from_fn(m, rho, |r, c| u[(r, order[c])]);
        let singular: Vec<f64> = order[..rho].iter().map(|&i| sv[i]).collect();
        let c = res.scale();
        let curvature = singular.iter().map(|s| s * s / c).collect();
        Ok(Self {
            normal,
            curvature,
            kernel_dim: d - rho,
            gap,
            left: Some((left, singular)),
        })
    }

    /// out ← P θ = θ − N Nᵀ θ.
    pub(crate) fn project(&self, theta: &[f64], out: &mut [f64]) {
        out.copy_from_slice(theta);
        for c in 0..self.normal.ncols() {
            let u = self.normal.col(c);
            let w: f64 = (0..theta.len()).map(|r| u[r] * theta[r]).sum();
            for (r, o) in out.iter_mut().enumerate() {
                *o -= w * u[r];
            }
        }
    }

    /// The Morse–Bott constant μ here.
    pub(crate) fn mu(&self) -> f64 {
        morse_bott_constant(&self.curvature)
    }
}
