//! The closed forms of a system whose flows are explicit (systems ship with their truth):
//! the benchmark measures every method against them and the tests check the engine by them.

/// The exact flows of one instance.
pub trait Truth {
    /// θ_λ(t) from θ₀ exactly (λ = 0: the unregularised flow).
    fn exact_flow(&self, theta0: &[f64], lambda: f64, t: f64) -> Vec<f64>;
    /// Φ(θ), the limit of the unregularised flow from θ.
    fn phi(&self, theta: &[f64]) -> Vec<f64>;
    /// θ_M(τ), the limiting flow on M from Φ(θ_init).
    fn limiting_flow(&self, theta_init: &[f64], tau: f64) -> Vec<f64>;
    /// The largest Hessian eigenvalue L (gradient descent is stable for η < 2/(L + λ)).
    fn top_curvature(&self) -> f64;
}
