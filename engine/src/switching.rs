//! Piecewise-smooth losses (the exact ReLU): smooth inside the regions cut out by switching
//! surfaces, their gradient jumping across them (DESIGN.md §3).
//!
//! A loss declares its surfaces through [`Switching`]: hyperplanes through the origin,
//! gₖ(θ) = nₖ·θ = 0 (for a ReLU network, wⱼxᵢ + bⱼ = 0: neuron j's kink at data point i),
//! and the smooth loss of every region, extended past its surfaces (the ReLU frozen in its
//! activation pattern is linear on each side). Across a surface the one-sided gradients
//! must differ along its normal only, as they do for a ReLU network: a kink passing a data
//! point changes that point's output by σ(gₖ) = 0, so only the term carrying σ'(gₖ) jumps.
//! Then the Filippov field of a sliding mode on a set of surfaces is either side's field
//! projected onto their intersection, P f with P = I − QQᵀ (Q an orthonormal basis of the
//! normals): the gradient flow of F(Pθ) on a linear subspace, which the event-driven
//! stepper (steppers/switched.rs) gives the BDF as an ordinary smooth loss.

use crate::la::MatMut;

/// The switching surfaces of a piecewise-smooth loss and its smooth pieces.
///
/// `side[k]` says on which side of surface k a region lies (true: gₖ > 0).
pub trait Switching: Sync {
    /// The number of surfaces.
    fn surface_count(&self) -> usize;

    /// g ← (gₖ(θ))ₖ.
    fn surfaces_into(&self, theta: &[f64], g: &mut [f64]);

    /// The normal nₖ = ∇gₖ as (index, value) pairs.
    fn normal(&self, k: usize) -> Vec<(usize, f64)>;

    /// What surface k is, for messages ("neuron 3's kink at x₇").
    fn describe_surface(&self, k: usize) -> String;

    /// F of the region `side` at θ (its smooth extension beyond the region).
    fn region_value(&self, side: &[bool], theta: &[f64]) -> f64;

    /// grad ← ∇F of the region `side` at θ.
    fn region_gradient_into(&self, side: &[bool], theta: &[f64], grad: &mut [f64]);

    /// hess ← ∇²F of the region `side` at θ (dense, every entry written).
    fn region_hessian_into(&self, side: &[bool], theta: &[f64], hess: MatMut<'_, f64>);

    /// out ← ∇²F of the region `side` at θ, times v.
    fn region_hvp_into(&self, side: &[bool], theta: &[f64], v: &[f64], out: &mut [f64]);
}
