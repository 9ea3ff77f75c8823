//! Linear regression (DESIGN.md §2.1, paper §5 and App. C):
//! F(θ) = ‖Xθ − y‖²/(2n), X ∈ R^{n×d}, n < d, full row rank.
//! g = Xᵀ(Xθ − y)/n, H = XᵀX/n. Everything about its flows is explicit: see [`LinearTruth`].

use grokflow_engine::la::{dot, DMat, MatMut};
use grokflow_engine::{Loss, Observables, Residuals};
use serde::{Deserialize, Serialize};

use crate::data::{check_vec, gaussian_mat, gaussian_vec, mat_to_rows, rng, rows_to_mat};
use crate::error::{invalid_instance, invalid_params, SystemError};
use crate::scratch::with_buf;
use crate::derived::WithDerived;
use crate::system::System;
use grokflow_engine::{ResidualModel, Scalar};
use crate::params::{Kind, Param};
use crate::spec::SystemSpec;
use crate::system::parse_file;
use crate::truth::Truth;

/// How the ground truth θ_true is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinearTeacher {
    /// θ_true ~ N(0, I/d), so ‖θ_true‖ ≈ 1.
    Gaussian,
    /// k entries ±1/√k at random positions, the rest 0 (‖θ_true‖ = 1).
    Sparse {
        /// Non-zero entries.
        k: usize,
    },
}

/// Parameters of a generated linear-regression instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    /// Samples n.
    pub n: usize,
    /// Dimension d (> n: overparameterised).
    pub d: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// θ_init ~ N(0, σ² I) with σ = `init_scale`.
    pub init_scale: f64,
    /// The ground truth.
    pub teacher: LinearTeacher,
    /// y = Xθ_true + `noise`·ε, ε ~ N(0, I).
    pub noise: f64,
}

impl Default for LinearParams {
    /// n = 20, d = 200, σ_init = 1, a Gaussian teacher of norm ≈ 1, no noise: the test
    /// metric at Φ(θ_init) is about ½‖P_ker θ_init‖² ≈ 90, at the min-norm solution about
    /// ½(1 − n/d)‖θ_true‖² ≈ 0.45, so grokking is plain (a factor ≈ 200).
    fn default() -> Self {
        Self {
            n: 20,
            d: 200,
            seed: 0,
            init_scale: 1.0,
            teacher: LinearTeacher::Gaussian,
            noise: 0.0,
        }
    }
}

impl LinearParams {
    /// Checks sizes and scales.
    pub fn validate(&self) -> Result<(), SystemError> {
        if self.n == 0 || self.d == 0 {
            return Err(invalid_params(format!(
                "n and d must be at least 1 (got n = {}, d = {})",
                self.n, self.d
            )));
        }
        if self.n >= self.d {
            return Err(invalid_params(format!(
                "linear regression needs n < d to be overparameterised (got n = {}, d = {}); \
                 raise --d or lower --n",
                self.n, self.d
            )));
        }
        if !(self.init_scale.is_finite() && self.init_scale >= 0.0) {
            return Err(invalid_params(format!(
                "the init scale must be finite and ≥ 0, got {:e}",
                self.init_scale
            )));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(invalid_params(format!(
                "the noise level must be finite and ≥ 0, got {:e}",
                self.noise
            )));
        }
        if let LinearTeacher::Sparse { k } = self.teacher {
            if k == 0 || k > self.d {
                return Err(invalid_params(format!(
                    "a sparse teacher needs 1 ≤ k ≤ d (got k = {k}, d = {})",
                    self.d
                )));
            }
        }
        Ok(())
    }
}

/// The instance file: data, initial point and ground truth, as plain JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearInstanceFile {
    /// Always "linear".
    pub system: String,
    /// The parameters it was generated from, if it was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<LinearParams>,
    /// X as n rows of d entries.
    pub x: Vec<Vec<f64>>,
    /// y (n entries).
    pub y: Vec<f64>,
    /// θ_init (d entries).
    pub theta_init: Vec<f64>,
    /// θ_true (d entries), if known: the test metric is ½‖θ − θ_true‖².
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theta_true: Option<Vec<f64>>,
}

/// A linear-regression instance, ready to run.
#[derive(Clone, Debug)]
pub struct LinearRegression {
    params: Option<LinearParams>,
    x: DMat,
    /// Xᵀ: Xθ reads X's rows contiguously through it (faer's row-major kernel, dot products),
    /// 2× faster than the column-major kernel on `x` at n = 20, d = 200 and n = 100,
    /// d = 1000.
    xt: DMat,
    y: Vec<f64>,
    gram: DMat,
    theta_init: Vec<f64>,
    theta_true: Option<Vec<f64>>,
}

impl LinearRegression {
    /// A generated instance (see [`LinearParams`]).
    pub fn generate(params: &LinearParams) -> Result<Self, SystemError> {
        params.validate()?;
        let (n, d) = (params.n, params.d);
        let mut r = rng(params.seed);
        let x = gaussian_mat(&mut r, n, d, 1.0);
        let theta_true = match params.teacher {
            LinearTeacher::Gaussian => gaussian_vec(&mut r, d, 1.0 / (d as f64).sqrt()),
            LinearTeacher::Sparse { k } => {
                let mut t = vec![0.0; d];
                let order = crate::data::permutation(&mut r, d);
                let signs = gaussian_vec(&mut r, k, 1.0);
                for (i, s) in order.iter().take(k).zip(signs) {
                    t[*i] = s.signum() / (k as f64).sqrt();
                }
                t
            }
        };
        let eps = gaussian_vec(&mut r, n, 1.0);
        let theta_init = gaussian_vec(&mut r, d, params.init_scale);
        let mut y = vec![0.0; n];
        for (i, yi) in y.iter_mut().enumerate() {
            *yi = (0..d).map(|j| x[(i, j)] * theta_true[j]).sum::<f64>() + params.noise * eps[i];
        }
        Self::new(Some(params.clone()), x, y, theta_init, Some(theta_true))
    }

    /// An instance from its parts, checked for consistency.
    pub fn new(
        params: Option<LinearParams>,
        x: DMat,
        y: Vec<f64>,
        theta_init: Vec<f64>,
        theta_true: Option<Vec<f64>>,
    ) -> Result<Self, SystemError> {
        let (n, d) = (x.nrows(), x.ncols());
        if n == 0 || d == 0 {
            return Err(invalid_instance("X is empty"));
        }
        if n >= d {
            return Err(invalid_instance(format!(
                "X is {n}×{d}: linear regression needs n < d"
            )));
        }
        check_vec(&y, n, "y")?;
        check_vec(&theta_init, d, "theta_init")?;
        if let Some(t) = &theta_true {
            check_vec(t, d, "theta_true")?;
        }
        let mut gram = DMat::zeros(d, d);
        faer::linalg::matmul::matmul(
            gram.as_mut(),
            faer::Accum::Replace,
            x.transpose(),
            x.as_ref(),
            1.0 / n as f64,
            faer::Par::Seq,
        );
        Ok(Self {
            params,
            xt: x.transpose().to_owned(),
            x,
            y,
            gram,
            theta_init,
            theta_true,
        })
    }

    /// Reads an instance from its JSON file contents.
    pub fn from_file(file: LinearInstanceFile) -> Result<Self, SystemError> {
        if file.system != "linear" {
            return Err(invalid_instance(format!(
                "this is a \"{}\" instance, not a \"linear\" one",
                file.system
            )));
        }
        let d = file.theta_init.len();
        let x = rows_to_mat(&file.x, d, "x")?;
        Self::new(file.params, x, file.y, file.theta_init, file.theta_true)
    }

    /// The instance as its JSON file contents.
    pub fn to_file(&self) -> LinearInstanceFile {
        LinearInstanceFile {
            system: "linear".into(),
            params: self.params.clone(),
            x: mat_to_rows(&self.x),
            y: self.y.clone(),
            theta_init: self.theta_init.clone(),
            theta_true: self.theta_true.clone(),
        }
    }

    /// The generating parameters, if any.
    pub fn params(&self) -> Option<&LinearParams> {
        self.params.as_ref()
    }

    /// n.
    pub fn n(&self) -> usize {
        self.x.nrows()
    }

    /// X.
    pub fn x(&self) -> &DMat {
        &self.x
    }

    /// y.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// θ_init.
    pub fn theta_init(&self) -> &[f64] {
        &self.theta_init
    }

    /// θ_true, if known.
    pub fn theta_true(&self) -> Option<&[f64]> {
        self.theta_true.as_deref()
    }

    /// r ← Xθ − y.
    fn residual_into(&self, theta: &[f64], r: &mut [f64]) {
        grokflow_engine::la::matvec_into(self.xt.transpose(), theta, r);
        r.iter_mut().zip(&self.y).for_each(|(ri, yi)| *ri -= yi);
    }

    /// out ← Xᵀ r / n.
    fn xt_into(&self, r: &[f64], out: &mut [f64]) {
        grokflow_engine::la::matvec_into(self.x.transpose(), r, out);
        let inv_n = 1.0 / self.n() as f64;
        out.iter_mut().for_each(|o| *o *= inv_n);
    }

    /// Distance to the min-norm solution and the residual norm at θ.
    pub fn report(&self, theta: &[f64]) -> LinearReport {
        let mut r = vec![0.0; self.n()];
        self.residual_into(theta, &mut r);
        LinearReport {
            residual_norm: dot(&r, &r).sqrt(),
            distance_to_min_norm: self
                .truth()
                .ok()
                .map(|t| grokflow_engine::la::distance(theta, t.min_norm_solution())),
        }
    }

    /// The closed forms of this instance (a thin SVD of X).
    pub fn truth(&self) -> Result<LinearTruth, SystemError> {
        LinearTruth::new(self)
    }
}

impl Loss for LinearRegression {
    fn name(&self) -> &str {
        "linear"
    }

    fn dim(&self) -> usize {
        self.x.ncols()
    }

    /// F(θ) = ‖Xθ − y‖²/(2n).
    fn value(&self, theta: &[f64]) -> f64 {
        with_buf(self.n(), |r| {
            self.residual_into(theta, r);
            dot(r, r) / (2.0 * self.n() as f64)
        })
    }

    /// ∇F(θ) = Xᵀ(Xθ − y)/n.
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        with_buf(self.n(), |r| {
            self.residual_into(theta, r);
            self.xt_into(r, grad);
        })
    }

    /// ∇²F = XᵀX/n (constant).
    fn hessian_into(&self, _theta: &[f64], mut hess: MatMut<'_, f64>) {
        hess.copy_from(&self.gram);
    }

    fn residuals(&self) -> Option<&dyn Residuals> {
        Some(self)
    }

    /// ∇²F = XᵀX/n at every θ: positive semidefinite.
    fn is_convex_quadratic(&self) -> bool {
        true
    }

    /// ∇²F·v = Xᵀ(Xv)/n.
    fn hvp_into(&self, _theta: &[f64], v: &[f64], out: &mut [f64]) {
        with_buf(self.n(), |xv| {
            grokflow_engine::la::matvec_into(self.xt.transpose(), v, xv);
            self.xt_into(xv, out);
        })
    }
}

impl Residuals for LinearRegression {
    fn count(&self) -> usize {
        self.n()
    }
    fn scale(&self) -> f64 {
        self.n() as f64
    }
    /// r = Xθ − y.
    fn residuals_into(&self, theta: &[f64], r: &mut [f64]) {
        self.residual_into(theta, r);
    }
    /// Linear residuals have no curvature: R = 0 on one-parameter groups.
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        Some((0..self.dim()).map(|i| vec![i]).collect())
    }
    /// J = X.
    fn jacobian_into(&self, _theta: &[f64], mut jac: MatMut<'_, f64>) {
        jac.copy_from(&self.x);
    }
}

impl Observables for LinearRegression {
    /// ½‖θ − θ_true‖² = ½ E(xᵀθ − xᵀθ_true)² for x ~ N(0, I): half the expected squared error
    /// (the training loss's form, ½ × mean squared error, on the input distribution).
    fn test_loss(&self, theta: &[f64]) -> Option<f64> {
        self.theta_true.as_ref().map(|t| {
            0.5 * theta
                .iter()
                .zip(t)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
        })
    }
}

/// What a researcher looks at in a linear-regression solution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearReport {
    /// ‖Xθ − y‖.
    pub residual_norm: f64,
    /// ‖θ − X⁺y‖ (null if X is rank deficient).
    pub distance_to_min_norm: Option<f64>,
}

/// The closed forms of linear regression, from the thin SVD X = U S Vᵀ
/// (U: n×n, S: n singular values, V: d×n). With H = XᵀX/n = V diag(a) Vᵀ, a = s²/n:
/// - the min-norm solution θ* = X⁺y = V S⁻¹ Uᵀ y;
/// - Φ(θ) = θ − X⁺(Xθ − y), the projection onto {Xθ = y};
/// - M = θ* + ker X and θ_M(τ) = θ* + e^{−τ}(Φ(θ_init) − θ*);
/// - the exact λ-flow: in the eigenbasis, z(t) = z_∞ + (z(0) − z_∞)e^{−(a+λ)t} with
///   z_∞ = a z*/(a + λ), and the kernel part decays like e^{−λt}.
#[derive(Clone, Debug)]
pub struct LinearTruth {
    v: DMat,
    a: Vec<f64>,
    z_star: Vec<f64>,
    theta_star: Vec<f64>,
    pinv_u_s: DMat,
}

impl LinearTruth {
    fn new(lr: &LinearRegression) -> Result<Self, SystemError> {
        let n = lr.n();
        let svd =
            lr.x.thin_svd()
                .map_err(|e| invalid_instance(format!("the SVD of X failed: {e:?}")))?;
        let s: Vec<f64> = (0..n).map(|i| svd.S().column_vector()[i]).collect();
        let smax = s.iter().cloned().fold(0.0, f64::max);
        let smin = s.iter().cloned().fold(f64::INFINITY, f64::min);
        if smin.is_nan() || smin <= 1e-10 * smax {
            return Err(invalid_instance(format!(
                "X must have full row rank (smallest singular value {smin:.3e}, largest {smax:.3e})"
            )));
        }
        let u = svd.U().to_owned();
        let v = svd.V().to_owned();
        // z* = S⁻¹ Uᵀ y; pinv_u_s = U S⁻¹ so that X⁺ r = V (pinv_u_sᵀ r).
        let pinv_u_s = DMat::from_fn(n, n, |i, k| u[(i, k)] / s[k]);
        let z_star: Vec<f64> = (0..n)
            .map(|k| (0..n).map(|i| pinv_u_s[(i, k)] * lr.y[i]).sum())
            .collect();
        let a: Vec<f64> = s.iter().map(|si| si * si / n as f64).collect();
        let d = v.nrows();
        let theta_star = (0..d)
            .map(|j| (0..n).map(|k| v[(j, k)] * z_star[k]).sum())
            .collect();
        Ok(Self {
            v,
            a,
            z_star,
            theta_star,
            pinv_u_s,
        })
    }

    /// The non-zero Hessian eigenvalues a = s²/n (in the SVD's order).
    pub fn eigenvalues(&self) -> &[f64] {
        &self.a
    }

    /// θ* = X⁺y, the minimum-norm interpolator.
    pub fn min_norm_solution(&self) -> &[f64] {
        &self.theta_star
    }

    fn v_t(&self, theta: &[f64]) -> Vec<f64> {
        (0..self.a.len())
            .map(|k| {
                dot(
                    self.v
                        .col(k)
                        .try_as_col_major()
                        .expect("contiguous")
                        .as_slice(),
                    theta,
                )
            })
            .collect()
    }

    fn v_mul(&self, z: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = (0..z.len()).map(|k| self.v[(j, k)] * z[k]).sum();
        }
    }

    /// Φ(θ) = θ − X⁺(Xθ − y): in the eigenbasis, the range coordinates become z*.
    pub fn phi(&self, theta: &[f64]) -> Vec<f64> {
        let z = self.v_t(theta);
        let dz: Vec<f64> = z.iter().zip(&self.z_star).map(|(a, b)| b - a).collect();
        let mut out = vec![0.0; theta.len()];
        self.v_mul(&dz, &mut out);
        out.iter_mut().zip(theta).for_each(|(o, t)| *o += t);
        out
    }

    /// θ_λ(t) from θ₀ exactly (λ = 0 gives the unregularised flow).
    pub fn exact_flow(&self, theta0: &[f64], lambda: f64, t: f64) -> Vec<f64> {
        let z0 = self.v_t(theta0);
        let mut range = vec![0.0; theta0.len()];
        self.v_mul(&z0, &mut range);
        let decay = (-lambda * t).exp();
        // Kernel part w₀ = θ₀ − V z₀ decays like e^{−λt}.
        let mut out: Vec<f64> = theta0
            .iter()
            .zip(&range)
            .map(|(th, r)| (th - r) * decay)
            .collect();
        let z: Vec<f64> = (0..self.a.len())
            .map(|k| {
                let a = self.a[k];
                let z_inf = a * self.z_star[k] / (a + lambda);
                z_inf + (z0[k] - z_inf) * (-(a + lambda) * t).exp()
            })
            .collect();
        self.v_mul(&z, &mut range);
        out.iter_mut().zip(&range).for_each(|(o, r)| *o += r);
        out
    }

    /// θ_M(τ) = θ* + e^{−τ}(Φ(θ_init) − θ*), the limiting slow flow on M.
    pub fn limiting_flow(&self, theta_init: &[f64], tau: f64) -> Vec<f64> {
        let phi = self.phi(theta_init);
        let e = (-tau).exp();
        phi.iter()
            .zip(&self.theta_star)
            .map(|(p, s)| s + e * (p - s))
            .collect()
    }

    /// X⁺ r for r ∈ Rⁿ.
    pub fn pinv_apply(&self, r: &[f64]) -> Vec<f64> {
        let n = self.a.len();
        let z: Vec<f64> = (0..n)
            .map(|k| (0..n).map(|i| self.pinv_u_s[(i, k)] * r[i]).sum())
            .collect();
        let mut out = vec![0.0; self.v.nrows()];
        self.v_mul(&z, &mut out);
        out
    }
}

crate::impl_system!(
    LinearRegression,
    fn truth(&self) -> Option<Box<dyn Truth>> {
        LinearRegression::truth(self)
            .ok()
            .map(|t| Box::new(t) as Box<dyn Truth>)
    },
    fn derived(&self) -> Option<Result<Box<dyn System>, SystemError>> {
        let system: Box<dyn System> = Box::new(self.clone());
        Some(WithDerived::new(system, LinearTwin(self.clone())).map(|s| Box::new(s) as Box<dyn System>))
    }
);

impl Truth for LinearTruth {
    fn exact_flow(&self, theta0: &[f64], lambda: f64, t: f64) -> Vec<f64> {
        LinearTruth::exact_flow(self, theta0, lambda, t)
    }
    fn phi(&self, theta: &[f64]) -> Vec<f64> {
        LinearTruth::phi(self, theta)
    }
    fn limiting_flow(&self, theta_init: &[f64], tau: f64) -> Vec<f64> {
        LinearTruth::limiting_flow(self, theta_init, tau)
    }
    fn top_curvature(&self) -> f64 {
        self.eigenvalues().iter().cloned().fold(0.0, f64::max)
    }
}

/// Linear regression in the registry.
pub static SPEC: SystemSpec = SystemSpec {
    name: "linear",
    about: "Linear regression ‖Xθ − y‖²/(2n), n < d (paper §5): the slow phase drifts from \
            the projection of θ_init onto {Xθ = y} to the minimum-norm solution X⁺y",
    details: "Default instance: n = 20, d = 200, X ~ N(0, 1), θ_true ~ N(0, I/d), \
              θ_init ~ N(0, I). Test metric (as for every system: half the mean squared \
              error on test data, the training loss's form): ½‖θ − θ_true‖² = ½ E(xᵀ(θ − θ_true))² \
              over x ~ N(0, I).",
    params: &[
        Param::new("n", "Samples n (≥ 1, < d)", Kind::Count, "20"),
        Param::new("d", "Dimension d (> n)", Kind::Count, "200"),
        Param::new("seed", "Seed of the instance generator", Kind::Count, "0"),
        Param::new("init-scale", "θ_init ~ N(0, σ²I) with σ = init-scale (≥ 0)", Kind::Real, "1"),
        Param::new(
            "teacher",
            "Ground truth θ_true",
            Kind::Choice(&[
                ("gaussian", "θ_true ~ N(0, I/d)"),
                ("sparse", "--teacher-k entries ±1/√k"),
            ]),
            "gaussian",
        ),
        Param::new("teacher-k", "Non-zeros of a sparse teacher (1 ≤ k ≤ d)", Kind::Count, "3"),
        Param::new("noise", "Label noise: y = Xθ_true + noise·ε (≥ 0)", Kind::Real, "0"),
    ],
    presets: &[],
    default_tau_end: 10.0,
    limiting_mu_collapse: 0.0,
    footprint: |s| {
        let (n, d) = (s.count("n")? as f64, s.count("d")? as f64);
        Ok(crate::spec::Footprint {
            dim: d,
            residuals: n,
            structured_products: false,
            blocks: (d, 1.0),
            // X, y, and the d×d Gram matrix XᵀX kept for the Hessian.
            data_bytes: 8.0 * (n * d + n + 3.0 * d + d * d),
        })
    },
    generate: |s| {
        let teacher = match s.choice("teacher")? {
            "sparse" => LinearTeacher::Sparse {
                k: s.count("teacher-k")?,
            },
            _ => LinearTeacher::Gaussian,
        };
        let p = LinearParams {
            n: s.count("n")?,
            d: s.count("d")?,
            seed: s.seed("seed")?,
            init_scale: s.real("init-scale")?,
            teacher,
            noise: s.real("noise")?,
        };
        Ok(Box::new(LinearRegression::generate(&p)?))
    },
    load: |v| Ok(Box::new(LinearRegression::from_file(parse_file(v)?)?)),
    cheap: |seed| {
        Ok(Box::new(LinearRegression::generate(&LinearParams {
            n: 8,
            d: 30,
            seed,
            ..LinearParams::default()
        })?))
    },
    validation: |quick| {
        let p = if quick {
            LinearParams {
                n: 10,
                d: 60,
                ..LinearParams::default()
            }
        } else {
            LinearParams::default()
        };
        Ok(Box::new(LinearRegression::generate(&p)?))
    },
    scaled: None,
    smooth_family: None,
};

/// Linear regression's residuals written once, generically: its derived twin.
pub struct LinearTwin(pub LinearRegression);

impl ResidualModel for LinearTwin {
    fn name(&self) -> &str {
        "linear"
    }
    fn dim(&self) -> usize {
        self.0.x.ncols()
    }
    fn count(&self) -> usize {
        self.0.n()
    }
    /// rᵢ = Σⱼ Xᵢⱼθⱼ − yᵢ.
    fn residuals<T: Scalar>(&self, theta: &[T], r: &mut [T]) {
        for (i, ri) in r.iter_mut().enumerate() {
            let mut s = T::zero();
            for (j, &t) in theta.iter().enumerate() {
                s += t * self.0.x[(i, j)];
            }
            *ri = s - self.0.y[i];
        }
    }
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        Residuals::curvature_groups(&self.0)
    }
    fn is_affine(&self) -> bool {
        true
    }
}
