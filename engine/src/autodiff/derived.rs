//! Losses whose derivatives are derived exactly from one generic implementation: residuals
//! r(θ) of a least-squares loss ([`ResidualModel`]) or F(θ) itself ([`ScalarModel`]),
//! written once over [`Scalar`]. Gradients and Jᵀu come from one reverse sweep, J·v from one
//! forward pass with dual numbers, Hessian-vector products and the residual curvature from
//! reverse sweeps over dual numbers; no finite differences anywhere.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use faer::linalg::matmul::matmul;
use faer::{Accum, Par};
use num_dual::Dual64;

use crate::autodiff::tape::{record, sweep, Var};
use crate::autodiff::Scalar;
use crate::error::EngineError;
use crate::la::{DMat, MatMut};
use crate::loss::{Loss, Residuals};

/// A least-squares loss F(θ) = ‖r(θ)‖²/(2c) given by its residuals, written once over
/// [`Scalar`]. Everything else has a default; the `hand_` methods let a hand-written
/// derivative take over from the derived one.
pub trait ResidualModel: Send + Sync {
    /// A short name, for file names and reports.
    fn name(&self) -> &str {
        "model"
    }
    /// The dimension d of θ.
    fn dim(&self) -> usize;
    /// The number m of residuals.
    fn count(&self) -> usize;
    /// r ← r(θ) (m entries).
    fn residuals<T: Scalar>(&self, theta: &[T], r: &mut [T]);
    /// c in F = ‖r‖²/(2c) (default m: the mean squared error over two).
    fn scale(&self) -> f64 {
        self.count() as f64
    }
    /// Parameter groups (a partition of 0..d) on which the residual curvature Σ rᵢ∇²rᵢ is
    /// block diagonal, when they exist (the neurons of a network, say): the structured Newton
    /// solve then works through an m×m matrix.
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        None
    }
    /// True when the residuals are affine in θ (F a convex quadratic).
    fn is_affine(&self) -> bool {
        false
    }
    /// A hand-written ∇F into `grad`; false (the default) to derive it.
    fn hand_gradient(&self, _theta: &[f64], _grad: &mut [f64]) -> bool {
        false
    }
    /// A hand-written residual Jacobian into `jac` (m×d); false (the default) to derive it.
    fn hand_jacobian(&self, _theta: &[f64], _jac: MatMut<'_, f64>) -> bool {
        false
    }
}

/// A loss F(θ) given by its value, written once over [`Scalar`].
pub trait ScalarModel: Send + Sync {
    /// A short name, for file names and reports.
    fn name(&self) -> &str {
        "model"
    }
    /// The dimension d of θ.
    fn dim(&self) -> usize;
    /// F(θ).
    fn value<T: Scalar>(&self, theta: &[T]) -> T;
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The f64 recording this thread's tape holds: whose, and at which θ.
struct Recording {
    id: u64,
    theta: Vec<f64>,
    outputs: Vec<Var<f64>>,
    adj: Vec<f64>,
}

thread_local! {
    static RECORDING: RefCell<Recording> = const {
        RefCell::new(Recording { id: 0, theta: Vec::new(), outputs: Vec::new(), adj: Vec::new() })
    };
    static DUAL_SCRATCH: RefCell<(Vec<Var<Dual64>>, Vec<Dual64>)> = const {
        RefCell::new((Vec::new(), Vec::new()))
    };
}

/// Runs `f` on the outputs of `eval` recorded at θ on this thread's f64 tape, recording
/// only when the tape holds another model's or another θ's.
fn with_f64_recording<R>(
    id: u64,
    theta: &[f64],
    n_outputs: usize,
    eval: impl FnOnce(&[Var<f64>], &mut [Var<f64>]),
    f: impl FnOnce(&[Var<f64>], &mut Vec<f64>) -> R,
) -> R {
    RECORDING.with(|c| {
        let mut c = c.borrow_mut();
        if c.id != id || c.theta != theta {
            let mut outputs = std::mem::take(&mut c.outputs);
            c.id = 0;
            record(theta, &mut outputs, n_outputs, eval);
            c.outputs = outputs;
            c.theta.clear();
            c.theta.extend_from_slice(theta);
            c.id = id;
        }
        let Recording { outputs, adj, .. } = &mut *c;
        f(outputs, adj)
    })
}

/// Records `eval` over dual numbers θ + εv and sweeps back with the weights `w(k, r_k)` on
/// its outputs: out ← the ε parts of the input adjoints (a second-order directional
/// derivative).
fn dual_sweep(
    theta: &[f64],
    v: &[f64],
    n_outputs: usize,
    eval: impl FnOnce(&[Var<Dual64>], &mut [Var<Dual64>]),
    w: impl Fn(usize, Dual64) -> Dual64,
    out: &mut [f64],
) {
    let inputs: Vec<Dual64> = theta
        .iter()
        .zip(v)
        .map(|(&t, &e)| Dual64::new(t, e))
        .collect();
    DUAL_SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (outputs, adj) = &mut *s;
        record(&inputs, outputs, n_outputs, eval);
        let mut grad = vec![Dual64::from_re(0.0); theta.len()];
        sweep(
            outputs.iter().enumerate().map(|(k, o)| (*o, w(k, o.val()))),
            adj,
            &mut grad,
        );
        for (o, g) in out.iter_mut().zip(&grad) {
            *o = g.eps;
        }
    });
}

/// A least-squares loss with derived derivatives: implements [`Loss`] and [`Residuals`]
/// for any [`ResidualModel`].
pub struct Derived<M> {
    model: M,
    id: u64,
    groups: Option<Vec<Vec<usize>>>,
}

impl<M: ResidualModel> Derived<M> {
    /// The loss of `model`; an error when its curvature groups do not partition 0..d.
    pub fn new(model: M) -> Result<Self, EngineError> {
        let d = model.dim();
        let groups = model.curvature_groups();
        if let Some(g) = &groups {
            let mut seen = vec![false; d];
            for &i in g.iter().flatten() {
                if i >= d || seen[i] {
                    return Err(EngineError::InvalidInput(format!(
                        "the curvature groups of {} do not partition its {d} parameters \
                         (index {i} out of range or repeated)",
                        model.name()
                    )));
                }
                seen[i] = true;
            }
            if let Some(i) = seen.iter().position(|s| !s) {
                return Err(EngineError::InvalidInput(format!(
                    "the curvature groups of {} leave parameter {i} out",
                    model.name()
                )));
            }
        }
        Ok(Self {
            model,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            groups,
        })
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    fn m(&self) -> usize {
        self.model.count()
    }

    fn residuals_f64(&self, theta: &[f64]) -> Vec<f64> {
        let mut r = vec![0.0; self.m()];
        self.model.residuals(theta, &mut r);
        r
    }

    /// The columns e_{g,a} of every group g (of more than a parameters), summed: v_a.
    fn group_seed(&self, groups: &[Vec<usize>], a: usize) -> Vec<f64> {
        let mut v = vec![0.0; self.model.dim()];
        for g in groups.iter().filter(|g| g.len() > a) {
            v[g[a]] = 1.0;
        }
        v
    }
}

impl<M: ResidualModel> Loss for Derived<M> {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn value(&self, theta: &[f64]) -> f64 {
        let r = self.residuals_f64(theta);
        r.iter().map(|x| x * x).sum::<f64>() / (2.0 * self.model.scale())
    }

    /// ∇F = Jᵀr/c: one reverse sweep with the weights r/c.
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        if self.model.hand_gradient(theta, grad) {
            return;
        }
        let c = self.model.scale();
        with_f64_recording(
            self.id,
            theta,
            self.m(),
            |x, r| self.model.residuals(x, r),
            |outs, adj| sweep(outs.iter().map(|o| (*o, o.val() / c)), adj, grad),
        );
    }

    /// ∇²F = JᵀJ/c + R: J from reverse sweeps, R from its blocks (with curvature groups) or
    /// from d Hessian-vector products.
    fn hessian_into(&self, theta: &[f64], mut hess: MatMut<'_, f64>) {
        let d = self.model.dim();
        match &self.groups {
            Some(groups) => {
                let mut jac = DMat::zeros(self.m(), d);
                self.jacobian_into(theta, jac.as_mut());
                matmul(
                    hess.as_mut(),
                    Accum::Replace,
                    jac.transpose(),
                    jac.as_ref(),
                    1.0 / self.model.scale(),
                    Par::Seq,
                );
                let size: usize = groups.iter().map(|g| g.len() * g.len()).sum();
                let mut blocks = vec![0.0; size];
                self.curvature_blocks_into(theta, &mut blocks);
                let mut o = 0;
                for g in groups {
                    let k = g.len();
                    for (x, &px) in g.iter().enumerate() {
                        for (y, &py) in g.iter().enumerate() {
                            hess[(px, py)] += blocks[o + x * k + y];
                        }
                    }
                    o += k * k;
                }
            }
            None => {
                let (mut e, mut col) = (vec![0.0; d], vec![0.0; d]);
                for j in 0..d {
                    e[j] = 1.0;
                    self.hvp_into(theta, &e, &mut col);
                    e[j] = 0.0;
                    for i in 0..d {
                        hess[(i, j)] = col[i];
                    }
                }
            }
        }
    }

    /// ∇²F·v: one reverse sweep over dual numbers θ + εv with the weights r(θ + εv)/c.
    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let c = self.model.scale();
        dual_sweep(
            theta,
            v,
            self.m(),
            |x, r| self.model.residuals(x, r),
            |_, r| r / c,
            out,
        );
    }

    fn residuals(&self) -> Option<&dyn Residuals> {
        Some(self)
    }

    fn is_convex_quadratic(&self) -> bool {
        self.model.is_affine()
    }
}

impl<M: ResidualModel> Residuals for Derived<M> {
    fn count(&self) -> usize {
        self.m()
    }

    fn scale(&self) -> f64 {
        self.model.scale()
    }

    fn residuals_into(&self, theta: &[f64], r: &mut [f64]) {
        self.model.residuals(theta, r);
    }

    /// J by m reverse sweeps over one recording (m ≤ d), else by d forward passes.
    fn jacobian_into(&self, theta: &[f64], mut jac: MatMut<'_, f64>) {
        if self.model.hand_jacobian(theta, jac.as_mut()) {
            return;
        }
        let (m, d) = (self.m(), self.model.dim());
        if m <= d {
            let mut row = vec![0.0; d];
            with_f64_recording(
                self.id,
                theta,
                m,
                |x, r| self.model.residuals(x, r),
                |outs, adj| {
                    for (k, o) in outs.iter().enumerate() {
                        sweep(std::iter::once((*o, 1.0)), adj, &mut row);
                        for j in 0..d {
                            jac[(k, j)] = row[j];
                        }
                    }
                },
            );
        } else {
            let mut x: Vec<Dual64> = theta.iter().map(|&t| Dual64::from_re(t)).collect();
            let mut r = vec![Dual64::from_re(0.0); m];
            for j in 0..d {
                x[j].eps = 1.0;
                self.model.residuals(&x, &mut r);
                x[j].eps = 0.0;
                for k in 0..m {
                    jac[(k, j)] = r[k].eps;
                }
            }
        }
    }

    fn has_structured_products(&self) -> bool {
        true
    }

    /// J·v: one forward pass with dual numbers θ + εv.
    fn jvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let x: Vec<Dual64> = theta
            .iter()
            .zip(v)
            .map(|(&t, &e)| Dual64::new(t, e))
            .collect();
        let mut r = vec![Dual64::from_re(0.0); self.m()];
        self.model.residuals(&x, &mut r);
        for (o, rk) in out.iter_mut().zip(&r) {
            *o = rk.eps;
        }
    }

    /// Jᵀ·u: one reverse sweep with the weights u.
    fn vjp_into(&self, theta: &[f64], u: &[f64], out: &mut [f64]) {
        with_f64_recording(
            self.id,
            theta,
            self.m(),
            |x, r| self.model.residuals(x, r),
            |outs, adj| sweep(outs.iter().zip(u).map(|(o, &w)| (*o, w)), adj, out),
        );
    }

    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        self.groups.clone()
    }

    /// R's blocks: R v_a for the sums v_a of every group's a-th parameter (R is block
    /// diagonal, so each entry of R v_a belongs to one group's column a), by reverse sweeps
    /// over dual numbers with the weights r(θ)/c.
    fn curvature_blocks_into(&self, theta: &[f64], out: &mut [f64]) {
        let Some(groups) = &self.groups else {
            out.fill(0.0);
            return;
        };
        let c = self.model.scale();
        let weights: Vec<f64> = self.residuals_f64(theta).iter().map(|r| r / c).collect();
        let k_max = groups.iter().map(Vec::len).max().unwrap_or(0);
        let mut rv = vec![0.0; self.model.dim()];
        for a in 0..k_max {
            let v = self.group_seed(groups, a);
            dual_sweep(
                theta,
                &v,
                self.m(),
                |x, r| self.model.residuals(x, r),
                |k, _| Dual64::from_re(weights[k]),
                &mut rv,
            );
            let mut o = 0;
            for g in groups {
                let k = g.len();
                if k > a {
                    for (b, &p) in g.iter().enumerate() {
                        out[o + b * k + a] = rv[p];
                    }
                }
                o += k * k;
            }
        }
    }
}

/// A loss given by its value with derived derivatives: implements [`Loss`] for any
/// [`ScalarModel`].
pub struct DerivedScalar<M> {
    model: M,
    id: u64,
}

impl<M: ScalarModel> DerivedScalar<M> {
    /// The loss of `model`.
    pub fn new(model: M) -> Self {
        Self {
            model,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }
}

impl<M: ScalarModel> Loss for DerivedScalar<M> {
    fn name(&self) -> &str {
        self.model.name()
    }

    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn value(&self, theta: &[f64]) -> f64 {
        self.model.value(theta)
    }

    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        with_f64_recording(
            self.id,
            theta,
            1,
            |x, f| f[0] = self.model.value(x),
            |outs, adj| sweep(std::iter::once((outs[0], 1.0)), adj, grad),
        );
    }

    /// d Hessian-vector products.
    fn hessian_into(&self, theta: &[f64], mut hess: MatMut<'_, f64>) {
        let d = self.model.dim();
        let (mut e, mut col) = (vec![0.0; d], vec![0.0; d]);
        for j in 0..d {
            e[j] = 1.0;
            self.hvp_into(theta, &e, &mut col);
            e[j] = 0.0;
            for i in 0..d {
                hess[(i, j)] = col[i];
            }
        }
    }

    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        dual_sweep(
            theta,
            v,
            1,
            |x, f| f[0] = self.model.value(x),
            |_, _| Dual64::from_re(1.0),
            out,
        );
    }
}
