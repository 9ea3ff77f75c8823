//! The one trait a training loss implements, and the observables a run records.

use crate::la::{matvec_into, DMat, MatMut, MatRef};

/// A C² (ideally C³) training loss F: Rᵈ → R with analytic derivatives.
///
/// Writes go into caller buffers (`_into`); the allocating wrappers sit on top. The engine
/// knows nothing else about a loss, so any type implementing this trait runs through every
/// flow, solver and check of grokflow.
pub trait Loss: Send + Sync {
    /// A short name, used in file names and reports.
    fn name(&self) -> &str;

    /// The dimension d of θ.
    fn dim(&self) -> usize;

    /// F(θ).
    fn value(&self, theta: &[f64]) -> f64;

    /// grad ← ∇F(θ).
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]);

    /// hess ← ∇²F(θ), a dense symmetric d×d matrix (every entry written).
    fn hessian_into(&self, theta: &[f64], hess: MatMut<'_, f64>);

    /// out ← ∇²F(θ)·v. The default assembles the dense Hessian; override it where a
    /// matrix-free product is cheaper.
    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let h = self.hessian(theta);
        matvec_into(h.as_ref(), v, out);
    }

    /// The residual structure of a least-squares loss F(θ) = ‖r(θ)‖²/(2c), if it has one
    /// (the default: none). See [`Residuals`].
    fn residuals(&self) -> Option<&dyn Residuals> {
        None
    }

    /// The switching surfaces of a piecewise-smooth loss (the exact ReLU), if it is one (the
    /// default: none). grokflow's BDF then integrates it region by region, event-driven
    /// ([`crate::switching`]).
    fn switching(&self) -> Option<&dyn crate::switching::Switching> {
        None
    }

    /// True when F is a convex quadratic: ∇²F the same positive semidefinite matrix at every
    /// θ (linear least squares). A Newton iteration with the matrix I − c′J for the step's
    /// I − cJ then contracts by at most |1 − c/c′|, and the BDF accepts its corrector on that
    /// bound. The default is false; say true only when it holds exactly. The BDF probes the
    /// declaration before relying on it and refuses a loss that fails the probe; the full
    /// check is [`crate::check_derivatives`].
    fn is_convex_quadratic(&self) -> bool {
        false
    }

    /// ∇F(θ), allocated.
    fn gradient(&self, theta: &[f64]) -> Vec<f64> {
        let mut g = vec![0.0; self.dim()];
        self.gradient_into(theta, &mut g);
        g
    }

    /// ∇²F(θ), allocated.
    fn hessian(&self, theta: &[f64]) -> DMat {
        let d = self.dim();
        let mut h = DMat::zeros(d, d);
        self.hessian_into(theta, h.as_mut());
        h
    }
}

/// A least-squares loss F(θ) = ‖r(θ)‖²/(2c) exposes its residuals r: R^d → R^m. On an
/// interpolating manifold (r = 0) the Hessian is JᵀJ/c with J = ∂r/∂θ, so ker ∇²F = ker J:
/// the limiting flow works with J, whose singular values are the square roots of the
/// Hessian's eigenvalues and stay resolvable twice as far (in digits) towards a singular
/// point of M; its retraction is Gauss–Newton on r.
pub trait Residuals {
    /// m.
    fn count(&self) -> usize;
    /// c.
    fn scale(&self) -> f64;
    /// r ← r(θ).
    fn residuals_into(&self, theta: &[f64], r: &mut [f64]);
    /// jac ← ∂r/∂θ (m×d, every entry written).
    fn jacobian_into(&self, theta: &[f64], jac: MatMut<'_, f64>);

    /// jt ← (∂r/∂θ)ᵀ (d×m, every entry written), the layout of the structured solve. The
    /// default writes [`Residuals::jacobian_into`] through a transposed view; a loss that
    /// produces J a residual (a column of Jᵀ) at a time overrides it to write contiguously.
    fn jacobian_transpose_into(&self, theta: &[f64], mut jt: MatMut<'_, f64>) {
        self.jacobian_into(theta, jt.as_mut().transpose_mut());
    }

    /// True when [`Residuals::jvp_into`], [`Residuals::vjp_into`] and
    /// [`Residuals::gram_into`] exploit structure and cost less than a dense m×d Jacobian.
    /// The matrix-free Newton solve then calls them as they are; otherwise it assembles J
    /// once per linearisation point and multiplies by it.
    fn has_structured_products(&self) -> bool {
        false
    }

    /// out ← J(θ)·v (m entries). The default assembles J.
    fn jvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let mut jac = DMat::zeros(self.count(), theta.len());
        self.jacobian_into(theta, jac.as_mut());
        matvec_into(jac.as_ref(), v, out);
    }

    /// out ← J(θ)ᵀ·u (d entries). The default assembles J.
    fn vjp_into(&self, theta: &[f64], u: &[f64], out: &mut [f64]) {
        let mut jac = DMat::zeros(self.count(), theta.len());
        self.jacobian_into(theta, jac.as_mut());
        matvec_into(jac.transpose(), u, out);
    }

    /// gram ← J(θ)J(θ)ᵀ (m×m, every entry written). The default assembles J.
    fn gram_into(&self, theta: &[f64], mut gram: MatMut<'_, f64>) {
        let mut jac = DMat::zeros(self.count(), theta.len());
        self.jacobian_into(theta, jac.as_mut());
        gram.copy_from(&jac * jac.transpose());
    }

    /// The parameter groups on which the residual curvature R = Σᵢ rᵢ∇²rᵢ/c (so that
    /// ∇²F = JᵀJ/c + R) is block diagonal: groups that partition 0..d, the same at every θ.
    /// None (the default) when R has no such structure. With them grokflow's BDF solves its
    /// Newton systems through an m×m matrix (Woodbury), at O(dm²) instead of O(d³) per
    /// factorisation ([`crate::LinearSolver::Structured`]).
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        None
    }

    /// out ← R(θ)'s blocks, one per group of [`Residuals::curvature_groups`] in its order,
    /// each k×k row by row (k the group's size), concatenated. Called only when the groups
    /// are given; the default writes zeros (R = 0, as for linear residuals).
    fn curvature_blocks_into(&self, _theta: &[f64], out: &mut [f64]) {
        out.fill(0.0);
    }

    /// For residuals r(θ) = Aβ(θ) − b with a constant m×G matrix A whose column g multiplies
    /// a coefficient β_g that depends only on the parameters of curvature group g (for
    /// instance β_j = u_j v_j on the group (u_j, v_j)): A, one column per group in the order
    /// of [`Residuals::curvature_groups`]. J's columns on group g are then a_g∇β_gᵀ, rank
    /// one, and the structured solve works with A and the ∇β_g
    /// ([`Residuals::coefficient_gradients_into`]) instead of the m×d J: for pairs, half the
    /// products. None (the default) when the residuals are not of this form.
    fn group_features(&self) -> Option<MatRef<'_, f64>> {
        None
    }

    /// out ← ∇β_g(θ) for every group g, concatenated in the order of
    /// [`Residuals::curvature_groups`], each in its group's parameter order (d entries), and
    /// true; false (the default) when not provided. The structured solve uses the two only
    /// after checking A∇β against [`Residuals::jacobian_into`] at the initial point and at a
    /// point nearby.
    fn coefficient_gradients_into(&self, _theta: &[f64], _out: &mut [f64]) -> bool {
        false
    }

    /// True when every curvature group has the same size k and R's blocks are all equal (R =
    /// I ⊗ R₀ once the groups are made contiguous), and [`Residuals::shared_block_gram_into`]
    /// exploits structure. The structured solve then inverts one k×k block and never stores
    /// the m×d Jacobian: it applies J through [`Residuals::jvp_into`] and
    /// [`Residuals::vjp_into`], so it is used only with
    /// [`Residuals::has_structured_products`] too.
    fn has_shared_block_gram(&self) -> bool {
        false
    }

    /// out ← J(θ)(I ⊗ C)J(θ)ᵀ = Σ_g J_g C J_gᵀ (m×m, every entry written), with C the k×k
    /// row-major `c` and J_g the m×k columns of J of curvature group g, in its order. Called
    /// only with curvature groups of one size. The default assembles J.
    fn shared_block_gram_into(&self, theta: &[f64], c: &[f64], mut out: MatMut<'_, f64>) {
        let groups = self
            .curvature_groups()
            .expect("the shared-block Gram matrix needs curvature groups");
        let (m, k) = (self.count(), groups[0].len());
        let mut jac = DMat::zeros(m, theta.len());
        self.jacobian_into(theta, jac.as_mut());
        let c = MatRef::from_row_major_slice(c, k, k);
        out.fill(0.0);
        for group in &groups {
            let jg = DMat::from_fn(m, k, |q, a| jac[(q, group[a])]);
            out += &jg * c * jg.transpose();
        }
    }
}

/// What a run records beside the training loss: the test metric and any system-specific
/// columns (singular values, sparsity, …). Computing them never changes the trajectory.
pub trait Observables: Sync {
    /// The test metric at θ, if the system has one.
    fn test_loss(&self, theta: &[f64]) -> Option<f64>;

    /// Names of extra per-sample columns.
    fn extra_columns(&self) -> Vec<String> {
        Vec::new()
    }

    /// Appends one value per [`Observables::extra_columns`] entry, in order.
    fn extra_values(&self, _theta: &[f64], _out: &mut Vec<f64>) {}
}

/// Observables for a loss that has no test metric.
pub struct NoObservables;

impl Observables for NoObservables {
    fn test_loss(&self, _theta: &[f64]) -> Option<f64> {
        None
    }
}
