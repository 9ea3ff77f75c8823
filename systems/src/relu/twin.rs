//! The two-layer network's residuals written once, generically: the derived twin.

use grokflow_engine::{ResidualModel, Residuals, Scalar};

use super::{Activation, TwoLayerNetwork};

/// The two-layer network's residuals written once, generically: its derived twin.
pub struct ReluTwin(pub TwoLayerNetwork);

impl ReluTwin {
    /// σ(z), as [`Activation::eval`] computes it.
    fn sigma<T: Scalar>(&self, z: T) -> T {
        match self.0.activation {
            Activation::Relu => {
                if z.value() > 0.0 {
                    z
                } else {
                    T::zero()
                }
            }
            Activation::Softplus { beta } => {
                let t = z * beta;
                let soft = if t.value() >= 0.0 {
                    t + (-t).exp().ln_1p()
                } else {
                    t.exp().ln_1p()
                };
                soft / beta
            }
        }
    }
}

impl ResidualModel for ReluTwin {
    fn name(&self) -> &str {
        "relu"
    }
    fn dim(&self) -> usize {
        3 * self.0.m
    }
    fn count(&self) -> usize {
        self.0.x.len()
    }
    /// rᵢ = Σⱼ aⱼσ(wⱼxᵢ + bⱼ) − yᵢ.
    fn residuals<T: Scalar>(&self, theta: &[T], r: &mut [T]) {
        let m = self.0.m;
        for (i, ri) in r.iter_mut().enumerate() {
            let xi = self.0.x[i];
            let mut f = T::zero();
            for j in 0..m {
                f += theta[j] * self.sigma(theta[m + j] * xi + theta[2 * m + j]);
            }
            *ri = f - self.0.y[i];
        }
    }
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        Residuals::curvature_groups(&self.0)
    }
}
