//! Modular addition's residuals written once, generically: the derived twin.

use grokflow_engine::{Loss, ResidualModel, Residuals, Scalar};

use super::ModularAddition;

/// Modular addition's residuals written once, generically: its derived twin.
pub struct ModularTwin(pub ModularAddition);

impl ResidualModel for ModularTwin {
    fn name(&self) -> &str {
        "modular"
    }
    fn dim(&self) -> usize {
        Loss::dim(&self.0)
    }
    fn count(&self) -> usize {
        Residuals::count(&self.0)
    }
    fn scale(&self) -> f64 {
        Residuals::scale(&self.0)
    }
    /// r_{q,k} = Σᵢ W_{k,i} σ(E₁_{a,i} + E₂_{b,i}) − δ_{k,c}.
    fn residuals<T: Scalar>(&self, theta: &[T], r: &mut [T]) {
        let m = &self.0;
        let (p, w) = (m.p, m.w);
        let mut h = vec![T::zero(); w];
        for (q, &(a, b)) in m.train.iter().enumerate() {
            for (i, hi) in h.iter_mut().enumerate() {
                *hi = m.activation.generic(theta[m.e1(a) + i] + theta[m.e2(b) + i]);
            }
            let c = (a + b) % p;
            for k in 0..p {
                let mut o = T::zero();
                for (i, hi) in h.iter().enumerate() {
                    o += theta[m.wk(k) + i] * *hi;
                }
                r[q * p + k] = o - f64::from(u8::from(k == c));
            }
        }
    }
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        Some(self.0.groups())
    }
}
