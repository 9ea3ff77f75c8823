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
//! normals): the gradient flow of F(Pθ) on a linear subspace, which the region loss gives
//! the BDF as an ordinary smooth loss.

use std::sync::RwLock;

use crate::la::{dot, MatMut};
use crate::loss::Loss;

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

/// The region the flow is in: the side of every surface, and the surfaces it slides on with
/// an orthonormal basis of their normals.
#[derive(Clone, Debug)]
pub(crate) struct Region {
    pub(crate) side: Vec<bool>,
    pub(crate) sliding: Vec<usize>,
    basis: Vec<Vec<f64>>,
}

impl Region {
    /// v ← Pv, P the orthogonal projector onto the sliding surfaces' intersection.
    pub(crate) fn project(&self, v: &mut [f64]) {
        for q in &self.basis {
            let c = dot(q, v);
            v.iter_mut().zip(q).for_each(|(x, qi)| *x -= c * qi);
        }
    }
}

/// The smooth loss of the current region, F_side(Pθ): what the BDF integrates between two
/// events. The region changes only between integrations (at an event the stepper restarts).
pub(crate) struct RegionLoss<'a> {
    sw: &'a dyn Switching,
    name: String,
    dim: usize,
    region: RwLock<Region>,
}

/// A normal, dense.
pub(crate) fn dense_normal(sw: &dyn Switching, k: usize, d: usize) -> Vec<f64> {
    let mut n = vec![0.0; d];
    for (i, v) in sw.normal(k) {
        n[i] += v;
    }
    n
}

impl<'a> RegionLoss<'a> {
    /// The region `side` of `loss`'s surfaces, sliding on none.
    pub(crate) fn new(loss: &'a dyn Loss, sw: &'a dyn Switching, side: Vec<bool>) -> Self {
        Self {
            sw,
            name: loss.name().to_string(),
            dim: loss.dim(),
            region: RwLock::new(Region {
                side,
                sliding: Vec::new(),
                basis: Vec::new(),
            }),
        }
    }

    /// The region now.
    pub(crate) fn region(&self) -> Region {
        self.region.read().expect("region lock").clone()
    }

    /// Moves to the region `side`, sliding on `sliding` (P projects onto the intersection:
    /// a normal in the span of the others adds nothing). Returns false (and changes nothing)
    /// for a non-finite normal.
    pub(crate) fn set(&self, side: Vec<bool>, sliding: Vec<usize>) -> bool {
        let mut basis: Vec<Vec<f64>> = Vec::with_capacity(sliding.len());
        for &k in &sliding {
            let mut n = dense_normal(self.sw, k, self.dim);
            let before = dot(&n, &n).sqrt();
            for q in &basis {
                let c = dot(q, &n);
                n.iter_mut().zip(q).for_each(|(x, qi)| *x -= c * qi);
            }
            let after = dot(&n, &n).sqrt();
            if after.is_nan() {
                return false;
            }
            if after <= 1e-8 * before {
                // Its normal lies in the span of the others': the surface adds no
                // constraint to their intersection (a ReLU neuron with w = b = 0 lies on
                // the surfaces of all its data points).
                continue;
            }
            n.iter_mut().for_each(|x| *x /= after);
            basis.push(n);
        }
        *self.region.write().expect("region lock") = Region {
            side,
            sliding,
            basis,
        };
        true
    }

    fn projected(&self, r: &Region, theta: &[f64]) -> Vec<f64> {
        let mut y = theta.to_vec();
        r.project(&mut y);
        y
    }
}

impl Loss for RegionLoss<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn value(&self, theta: &[f64]) -> f64 {
        let r = self.region.read().expect("region lock");
        self.sw.region_value(&r.side, &self.projected(&r, theta))
    }

    /// P ∇F_side(Pθ).
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        let r = self.region.read().expect("region lock");
        self.sw
            .region_gradient_into(&r.side, &self.projected(&r, theta), grad);
        r.project(grad);
    }

    /// P ∇²F_side(Pθ) P.
    fn hessian_into(&self, theta: &[f64], mut hess: MatMut<'_, f64>) {
        let r = self.region.read().expect("region lock");
        self.sw
            .region_hessian_into(&r.side, &self.projected(&r, theta), hess.as_mut());
        let d = self.dim;
        for q in &r.basis {
            // H ← (I − qqᵀ) H (I − qqᵀ).
            let hq: Vec<f64> = (0..d)
                .map(|i| (0..d).map(|j| hess[(i, j)] * q[j]).sum())
                .collect();
            let qhq = dot(q, &hq);
            for j in 0..d {
                for i in 0..d {
                    hess[(i, j)] += -q[i] * hq[j] - hq[i] * q[j] + q[i] * qhq * q[j];
                }
            }
        }
    }

    /// P ∇²F_side(Pθ) P v.
    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let r = self.region.read().expect("region lock");
        let mut pv = v.to_vec();
        r.project(&mut pv);
        self.sw
            .region_hvp_into(&r.side, &self.projected(&r, theta), &pv, out);
        r.project(out);
    }
}
