//! Small losses with known flows, for testing the engine without any system.

use grokflow_engine::la::MatMut;
use grokflow_engine::{Loss, Observables};

/// F(θ) = ½ Σ aᵢ (θᵢ − bᵢ)² with aᵢ ≥ 0: every flow is explicit coordinate by coordinate.
pub struct Quadratic {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

impl Quadratic {
    /// The exact λ-flow at fast time t: θᵢ(t) = θᵢ∞ + (θᵢ(0) − θᵢ∞) e^{−(aᵢ+λ)t},
    /// θᵢ∞ = aᵢbᵢ/(aᵢ + λ).
    pub fn exact(&self, theta0: &[f64], lambda: f64, t: f64) -> Vec<f64> {
        (0..theta0.len())
            .map(|i| {
                let (a, b) = (self.a[i], self.b[i]);
                let inf = if a + lambda > 0.0 {
                    a * b / (a + lambda)
                } else {
                    theta0[i]
                };
                inf + (theta0[i] - inf) * (-(a + lambda) * t).exp()
            })
            .collect()
    }
}

impl Loss for Quadratic {
    fn name(&self) -> &str {
        "quadratic"
    }
    fn dim(&self) -> usize {
        self.a.len()
    }
    fn value(&self, th: &[f64]) -> f64 {
        (0..th.len())
            .map(|i| 0.5 * self.a[i] * (th[i] - self.b[i]).powi(2))
            .sum()
    }
    fn gradient_into(&self, th: &[f64], g: &mut [f64]) {
        for i in 0..th.len() {
            g[i] = self.a[i] * (th[i] - self.b[i]);
        }
    }
    fn hessian_into(&self, _th: &[f64], mut h: MatMut<'_, f64>) {
        h.fill(0.0);
        for i in 0..self.a.len() {
            h[(i, i)] = self.a[i];
        }
    }
}

impl Observables for Quadratic {
    fn test_loss(&self, th: &[f64]) -> Option<f64> {
        Some(th.iter().map(|x| x * x).sum::<f64>())
    }
}

/// The double well F(θ) = −θ²/2 + θ⁴/4 (one coordinate): its Hessian 3θ² − 1 is negative
/// near 0, so the Newton matrix is indefinite there. The flow dθ/dt = θ − θ³ has
/// θ(t) = θ₀eᵗ / √(1 + θ₀²(e^{2t} − 1)).
pub struct DoubleWell;

impl DoubleWell {
    pub fn exact(theta0: f64, t: f64) -> f64 {
        theta0 * t.exp() / (1.0 + theta0 * theta0 * ((2.0 * t).exp() - 1.0)).sqrt()
    }
}

impl Loss for DoubleWell {
    fn name(&self) -> &str {
        "double-well"
    }
    fn dim(&self) -> usize {
        1
    }
    fn value(&self, th: &[f64]) -> f64 {
        -0.5 * th[0] * th[0] + 0.25 * th[0].powi(4)
    }
    fn gradient_into(&self, th: &[f64], g: &mut [f64]) {
        g[0] = -th[0] + th[0].powi(3);
    }
    fn hessian_into(&self, th: &[f64], mut h: MatMut<'_, f64>) {
        h[(0, 0)] = -1.0 + 3.0 * th[0] * th[0];
    }
}

/// A loss that declares itself a convex quadratic ([`Loss::is_convex_quadratic`]), rightly
/// or not: everything else is the wrapped loss's.
pub struct DeclaredConvexQuadratic<L>(pub L);

impl<L: Loss> Loss for DeclaredConvexQuadratic<L> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn value(&self, th: &[f64]) -> f64 {
        self.0.value(th)
    }
    fn gradient_into(&self, th: &[f64], g: &mut [f64]) {
        self.0.gradient_into(th, g)
    }
    fn hessian_into(&self, th: &[f64], h: MatMut<'_, f64>) {
        self.0.hessian_into(th, h)
    }
    fn is_convex_quadratic(&self) -> bool {
        true
    }
}
