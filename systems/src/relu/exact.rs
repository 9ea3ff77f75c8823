//! The exact ReLU as a piecewise-smooth loss: its switching surfaces and the smooth loss of
//! each activation pattern, for the event-driven flow (DESIGN.md §3).

use grokflow_engine::la::MatMut;
use grokflow_engine::Switching;

use super::{Act, TwoLayerNetwork};

/// The exact ReLU's switching surfaces: gᵢⱼ(θ) = wⱼxᵢ + bⱼ (k = i·m + j), neuron j's kink
/// at data point i. Across one only the σ'(gᵢⱼ) terms of ∇F jump, by (eᵢaⱼ/n)(xᵢ, 1) on
/// (wⱼ, bⱼ): along the surface's normal, as the event-driven flow requires.
impl Switching for TwoLayerNetwork {
    fn surface_count(&self) -> usize {
        self.x.len() * self.m
    }

    fn surfaces_into(&self, theta: &[f64], g: &mut [f64]) {
        let m = self.m;
        for (i, &x) in self.x.iter().enumerate() {
            for j in 0..m {
                g[i * m + j] = theta[m + j] * x + theta[2 * m + j];
            }
        }
    }

    fn normal(&self, k: usize) -> Vec<(usize, f64)> {
        let (i, j) = (k / self.m, k % self.m);
        vec![(self.m + j, self.x[i]), (2 * self.m + j, 1.0)]
    }

    fn describe_surface(&self, k: usize) -> String {
        let (i, j) = (k / self.m, k % self.m);
        format!("neuron {j}'s kink at data point {i} (x = {:.4})", self.x[i])
    }

    fn region_value(&self, side: &[bool], theta: &[f64]) -> f64 {
        self.value_with(Act::Frozen(side), theta)
    }

    fn region_gradient_into(&self, side: &[bool], theta: &[f64], grad: &mut [f64]) {
        self.gradient_with(Act::Frozen(side), theta, grad);
    }

    fn region_hessian_into(&self, side: &[bool], theta: &[f64], hess: MatMut<'_, f64>) {
        self.hessian_with(Act::Frozen(side), theta, hess);
    }

    fn region_hvp_into(&self, side: &[bool], theta: &[f64], v: &[f64], out: &mut [f64]) {
        self.hvp_with(Act::Frozen(side), theta, v, out);
    }
}
