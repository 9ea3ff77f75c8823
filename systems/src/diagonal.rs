//! Diagonal linear network (DESIGN.md §2.4, paper App. C, D.2, Figure 4): β = u ⊙ v on
//! Fourier features φ(x) = (cos kx, sin kx)_{k=1..K} of a 1-D input x ∈ [−π, π],
//! F = ‖A(u⊙v) − y‖²/(2n), A the n×p feature matrix. With r = A(u⊙v) − y, c = Aᵀr/n and
//! G = AᵀA/n: ∇_u F = v⊙c, ∇_v F = u⊙c, H_uu = D_v G D_v, H_vv = D_u G D_u,
//! H_uv = D_v G D_u + D_c. θ = (u, v).
//!
//! Since ‖u‖² + ‖v‖² ≥ 2‖β‖₁, the slow phase is ℓ1 minimisation on the interpolating set: the
//! estimator becomes sparse and recovers the sparse teacher.

use grokflow_engine::la::{DMat, MatMut, MatRef};
use grokflow_engine::{Loss, Observables, Residuals};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::curve::Curve;
use crate::data::{check_vec, gaussian_vec, permutation, rng};
use crate::error::{invalid_instance, invalid_params, SystemError};
use crate::scratch::{with_buf, with_bufs2};
use crate::derived::WithDerived;
use grokflow_engine::{ResidualModel, Scalar};
use crate::params::{Kind, Param};
use crate::spec::{Preset, RunPreset, SystemSpec};
use crate::system::{parse_file, System};

/// A coefficient counts as present when |βⱼ| exceeds this fraction of the largest.
pub const SUPPORT_THRESHOLD: f64 = 1e-3;

/// Parameters of a generated diagonal-network instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiagonalParams {
    /// Frequencies 1..=K, so p = 2K features.
    pub frequencies: usize,
    /// Training points n, x ~ U[−π, π].
    pub n: usize,
    /// Non-zero teacher coefficients.
    pub teacher_sparsity: usize,
    /// Their magnitude (signs random).
    pub teacher_scale: f64,
    /// u, v at θ_init ~ N(0, σ²) with σ² = `init_variance`.
    pub init_variance: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for DiagonalParams {
    /// DESIGN.md's sizes for the paper's Figure 4 (p = 100 features, K = 50; n = 30 points;
    /// a 3-sparse teacher) with coefficients ±2 and initialisation variance 0.5 rather than
    /// the paper's 0.1. With variance 0.1 the unregularised flow needs t ≈ 600 to fit the
    /// data (the small-initialisation regime is slow), which is not well before t = 1/λ at
    /// λ = 1e-3; and at λ = 1e-3 the weight decay keeps F near 2·10⁻⁶ F(θ_init) for
    /// coefficients ±1. The preset paper-fig4 restores the paper's variance with its
    /// λ = 1e-4.
    fn default() -> Self {
        Self {
            frequencies: 50,
            n: 30,
            teacher_sparsity: 3,
            teacher_scale: 2.0,
            init_variance: 0.5,
            seed: 0,
        }
    }
}

impl DiagonalParams {
    /// Checks sizes and scales.
    pub fn validate(&self) -> Result<(), SystemError> {
        if self.frequencies == 0 || self.n == 0 {
            return Err(invalid_params(format!(
                "need at least one frequency and one point (got K = {}, n = {})",
                self.frequencies, self.n
            )));
        }
        if self.n >= 2 * self.frequencies {
            return Err(invalid_params(format!(
                "the network must be overparameterised: n = {} points for p = {} features (n < p)",
                self.n,
                2 * self.frequencies
            )));
        }
        if self.teacher_sparsity == 0 || self.teacher_sparsity > 2 * self.frequencies {
            return Err(invalid_params(format!(
                "the teacher needs between 1 and p = {} non-zeros",
                2 * self.frequencies
            )));
        }
        for (name, v) in [
            ("teacher scale", self.teacher_scale),
            ("init variance", self.init_variance),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid_params(format!(
                    "the {name} must be positive and finite, got {v:e}"
                )));
            }
        }
        Ok(())
    }
}

/// The instance file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagonalInstanceFile {
    /// Always "diagonal".
    pub system: String,
    /// Generation parameters, if generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<DiagonalParams>,
    /// Number of frequencies K (features cos kx, sin kx, k = 1..K).
    pub frequencies: usize,
    /// Training inputs.
    pub x: Vec<f64>,
    /// Training targets.
    pub y: Vec<f64>,
    /// u at θ_init.
    pub u_init: Vec<f64>,
    /// v at θ_init.
    pub v_init: Vec<f64>,
    /// The teacher's coefficients β* (p entries), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<Vec<f64>>,
}

/// A diagonal-network instance.
#[derive(Clone, Debug)]
pub struct DiagonalNetwork {
    params: Option<DiagonalParams>,
    k: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    a: DMat,
    /// Aᵀ: Aβ reads A's rows contiguously through it (faer's row-major kernel, dot products),
    /// 1.6× faster than the column-major kernel on `a` at n = 30, p = 100; the diagonal
    /// network's BDF run at λ = 1e-2, rtol 1e-8 6.9 → 6.0 ms.
    at: DMat,
    gram: DMat,
    teacher: Option<Vec<f64>>,
    theta_init: Vec<f64>,
}

/// The features (cos x, sin x, cos 2x, sin 2x, …) at x.
pub fn features(k: usize, x: f64) -> Vec<f64> {
    (1..=k)
        .flat_map(|j| [(j as f64 * x).cos(), (j as f64 * x).sin()])
        .collect()
}

impl DiagonalNetwork {
    /// A generated instance.
    pub fn generate(p: &DiagonalParams) -> Result<Self, SystemError> {
        p.validate()?;
        let mut g = rng(p.seed);
        let dim = 2 * p.frequencies;
        let mut teacher = vec![0.0; dim];
        let support: Vec<usize> = permutation(&mut g, dim)
            .into_iter()
            .take(p.teacher_sparsity)
            .collect();
        for j in support {
            let sign = if g.random::<bool>() { 1.0 } else { -1.0 };
            teacher[j] = sign * p.teacher_scale;
        }
        let x: Vec<f64> = (0..p.n)
            .map(|_| g.random_range(-std::f64::consts::PI..std::f64::consts::PI))
            .collect();
        let y: Vec<f64> = x
            .iter()
            .map(|&xi| grokflow_engine::la::dot(&features(p.frequencies, xi), &teacher))
            .collect();
        let sigma = p.init_variance.sqrt();
        let mut theta_init = gaussian_vec(&mut g, dim, sigma);
        theta_init.extend(gaussian_vec(&mut g, dim, sigma));
        Self::new(
            Some(p.clone()),
            p.frequencies,
            x,
            y,
            Some(teacher),
            theta_init,
        )
    }

    fn new(
        params: Option<DiagonalParams>,
        k: usize,
        x: Vec<f64>,
        y: Vec<f64>,
        teacher: Option<Vec<f64>>,
        theta_init: Vec<f64>,
    ) -> Result<Self, SystemError> {
        if k == 0 || x.is_empty() {
            return Err(invalid_instance(
                "need at least one frequency and one training point",
            ));
        }
        check_vec(&x, x.len(), "x")?;
        check_vec(&y, x.len(), "y")?;
        let dim = 2 * k;
        check_vec(&theta_init, 2 * dim, "θ_init")?;
        if let Some(t) = &teacher {
            check_vec(t, dim, "teacher")?;
        }
        let n = x.len();
        let rows: Vec<Vec<f64>> = x.iter().map(|&xi| features(k, xi)).collect();
        let a = DMat::from_fn(n, dim, |i, j| rows[i][j]);
        let gram = DMat::from_fn(dim, dim, |i, j| {
            (0..n).map(|q| a[(q, i)] * a[(q, j)]).sum::<f64>() / n as f64
        });
        Ok(Self {
            params,
            k,
            x,
            y,
            at: a.transpose().to_owned(),
            a,
            gram,
            teacher,
            theta_init,
        })
    }

    /// Reads an instance file.
    pub fn from_file(f: DiagonalInstanceFile) -> Result<Self, SystemError> {
        if f.system != "diagonal" {
            return Err(invalid_instance(format!(
                "this is a \"{}\" instance, not a \"diagonal\" one",
                f.system
            )));
        }
        check_vec(&f.u_init, 2 * f.frequencies, "u_init")?;
        check_vec(&f.v_init, 2 * f.frequencies, "v_init")?;
        let mut theta = f.u_init.clone();
        theta.extend(&f.v_init);
        Self::new(f.params, f.frequencies, f.x, f.y, f.teacher, theta)
    }

    /// The instance file contents.
    pub fn to_file(&self) -> DiagonalInstanceFile {
        let p = 2 * self.k;
        DiagonalInstanceFile {
            system: "diagonal".into(),
            params: self.params.clone(),
            frequencies: self.k,
            x: self.x.clone(),
            y: self.y.clone(),
            u_init: self.theta_init[..p].to_vec(),
            v_init: self.theta_init[p..].to_vec(),
            teacher: self.teacher.clone(),
        }
    }

    /// Generation parameters.
    pub fn params(&self) -> Option<&DiagonalParams> {
        self.params.as_ref()
    }

    /// θ_init.
    pub fn theta_init(&self) -> &[f64] {
        &self.theta_init
    }

    fn p(&self) -> usize {
        2 * self.k
    }

    /// β = u ⊙ v.
    pub fn beta(&self, theta: &[f64]) -> Vec<f64> {
        let p = self.p();
        (0..p).map(|j| theta[j] * theta[p + j]).collect()
    }

    /// r ← A(u⊙v) − y at θ = (u, v).
    fn residual_to(&self, theta: &[f64], r: &mut [f64]) {
        let p = self.p();
        with_buf(p, |beta| {
            for j in 0..p {
                beta[j] = theta[j] * theta[p + j];
            }
            grokflow_engine::la::matvec_into(self.at.transpose(), beta, r);
        });
        r.iter_mut().zip(&self.y).for_each(|(ri, yi)| *ri -= yi);
    }

    /// c ← Aᵀr/n.
    fn correlation_to(&self, r: &[f64], c: &mut [f64]) {
        grokflow_engine::la::matvec_into(self.a.transpose(), r, c);
        let inv_n = 1.0 / self.x.len() as f64;
        c.iter_mut().for_each(|cj| *cj *= inv_n);
    }

    /// Runs f(r, c) with r = A(u⊙v) − y and c = Aᵀr/n at θ, in scratch buffers.
    fn with_rc<R>(&self, theta: &[f64], f: impl FnOnce(&[f64], &[f64]) -> R) -> R {
        with_bufs2(self.x.len(), self.p(), |r, c| {
            self.residual_to(theta, r);
            self.correlation_to(r, c);
            f(r, c)
        })
    }

    /// The teacher's coefficients, if known.
    pub fn teacher(&self) -> Option<&[f64]> {
        self.teacher.as_deref()
    }

    /// Indices j with |βⱼ| > `SUPPORT_THRESHOLD` · max|β|.
    pub fn support(beta: &[f64]) -> Vec<usize> {
        let top = beta.iter().fold(0.0f64, |m, b| m.max(b.abs()));
        (0..beta.len())
            .filter(|&j| beta[j].abs() > SUPPORT_THRESHOLD * top)
            .collect()
    }

    /// The learned coefficients, their ℓ1 norm, support and relation to the teacher.
    pub fn report(&self, theta: &[f64]) -> DiagonalReport {
        let beta = self.beta(theta);
        let support = Self::support(&beta);
        let teacher_support = self
            .teacher
            .as_ref()
            .map(|t| (0..t.len()).filter(|&j| t[j] != 0.0).collect::<Vec<_>>());
        DiagonalReport {
            l1_norm: beta.iter().map(|b| b.abs()).sum(),
            weight_sq_norm: theta.iter().map(|x| x * x).sum(),
            support_recovered: teacher_support.as_ref().map(|ts| *ts == support),
            support,
            teacher_support,
            beta,
        }
    }
}

/// What a researcher looks at in a learned diagonal network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiagonalReport {
    /// β = u ⊙ v.
    pub beta: Vec<f64>,
    /// ‖β‖₁.
    pub l1_norm: f64,
    /// ‖u‖² + ‖v‖² (≥ 2‖β‖₁).
    pub weight_sq_norm: f64,
    /// Indices with |βⱼ| > 10⁻³ max|β|.
    pub support: Vec<usize>,
    /// The teacher's non-zeros, if known.
    pub teacher_support: Option<Vec<usize>>,
    /// Whether the two supports are equal.
    pub support_recovered: Option<bool>,
}

impl Loss for DiagonalNetwork {
    fn name(&self) -> &str {
        "diagonal"
    }

    fn dim(&self) -> usize {
        2 * self.p()
    }

    /// F = ‖Aβ − y‖²/(2n).
    fn value(&self, theta: &[f64]) -> f64 {
        with_buf(self.x.len(), |r| {
            self.residual_to(theta, r);
            r.iter().map(|x| x * x).sum::<f64>() / (2.0 * self.x.len() as f64)
        })
    }

    /// (v⊙c, u⊙c).
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        let p = self.p();
        self.with_rc(theta, |_, c| {
            for j in 0..p {
                grad[j] = theta[p + j] * c[j];
                grad[p + j] = theta[j] * c[j];
            }
        })
    }

    fn residuals(&self) -> Option<&dyn Residuals> {
        Some(self)
    }

    /// With w = v⊙du + u⊙dv and Gw = Aᵀ(Aw)/n: H·(du, dv) = (v⊙Gw + c⊙dv, u⊙Gw + c⊙du),
    /// in O(np) instead of the O(p²) of the dense product.
    fn hvp_into(&self, theta: &[f64], dir: &[f64], out: &mut [f64]) {
        let (p, n) = (self.p(), self.x.len());
        let (u, v) = theta.split_at(p);
        let (du, dv) = dir.split_at(p);
        self.with_rc(theta, |_, c| {
            with_bufs2(n, p, |aw, gw| {
                for (i, ai) in aw.iter_mut().enumerate() {
                    *ai = (0..p)
                        .map(|j| self.a[(i, j)] * (v[j] * du[j] + u[j] * dv[j]))
                        .sum();
                }
                self.correlation_to(aw, gw);
                for j in 0..p {
                    out[j] = v[j] * gw[j] + c[j] * dv[j];
                    out[p + j] = u[j] * gw[j] + c[j] * du[j];
                }
            })
        })
    }

    /// H_uu = D_v G D_v, H_vv = D_u G D_u, H_uv = D_v G D_u + D_c.
    fn hessian_into(&self, theta: &[f64], mut h: MatMut<'_, f64>) {
        let p = self.p();
        let (u, v) = theta.split_at(p);
        self.with_rc(theta, |_, c| {
            for j in 0..p {
                for i in 0..p {
                    let g = self.gram[(i, j)];
                    h[(i, j)] = v[i] * g * v[j];
                    h[(p + i, p + j)] = u[i] * g * u[j];
                    let cross = v[i] * g * u[j] + if i == j { c[i] } else { 0.0 };
                    h[(i, p + j)] = cross;
                    h[(p + j, i)] = cross;
                }
            }
        })
    }
}

impl Residuals for DiagonalNetwork {
    fn count(&self) -> usize {
        self.x.len()
    }
    fn scale(&self) -> f64 {
        self.x.len() as f64
    }
    /// r = A(u⊙v) − y.
    fn residuals_into(&self, theta: &[f64], r: &mut [f64]) {
        self.residual_to(theta, r);
    }
    /// ∇²rᵢ couples uⱼ with vⱼ only (∂²rᵢ/∂uⱼ∂vⱼ = Aᵢⱼ): R's blocks are the pairs (uⱼ, vⱼ).
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        let p = self.p();
        Some((0..p).map(|j| vec![j, p + j]).collect())
    }
    /// The block of (uⱼ, vⱼ) is [[0, cⱼ], [cⱼ, 0]] with c = Aᵀr/n.
    fn curvature_blocks_into(&self, theta: &[f64], out: &mut [f64]) {
        self.with_rc(theta, |_, c| {
            for (j, cj) in c.iter().enumerate() {
                out[4 * j..4 * j + 4].copy_from_slice(&[0.0, *cj, *cj, 0.0]);
            }
        })
    }
    /// ∂rᵢ/∂uⱼ = Aᵢⱼvⱼ, ∂rᵢ/∂vⱼ = Aᵢⱼuⱼ.
    fn jacobian_into(&self, theta: &[f64], mut jac: MatMut<'_, f64>) {
        self.jacobian_transpose_into(theta, jac.as_mut().transpose_mut());
    }

    /// r = Aβ − y with β_j = u_j v_j on the group (u_j, v_j): A's columns, one per group.
    fn group_features(&self) -> Option<MatRef<'_, f64>> {
        Some(self.a.as_ref())
    }

    /// ∇β_j = (v_j, u_j), group after group.
    fn coefficient_gradients_into(&self, theta: &[f64], out: &mut [f64]) -> bool {
        let p = self.p();
        for (j, pair) in out.chunks_exact_mut(2).enumerate() {
            pair.copy_from_slice(&[theta[p + j], theta[j]]);
        }
        true
    }

    /// Jᵀ residual by residual: column i is (aᵢ ⊙ v, aᵢ ⊙ u), written contiguously.
    fn jacobian_transpose_into(&self, theta: &[f64], mut jt: MatMut<'_, f64>) {
        let p = self.p();
        for i in 0..self.x.len() {
            let mut col = jt.as_mut().col_mut(i);
            for j in 0..p {
                let a = self.a[(i, j)];
                col[j] = a * theta[p + j];
                col[p + j] = a * theta[j];
            }
        }
    }
}

impl Observables for DiagonalNetwork {
    /// Half the mean squared error over x ~ U[−π, π] against the teacher: by Parseval,
    /// ¼‖β − β*‖² (the features cos kx, sin kx have mean square ½).
    fn test_loss(&self, theta: &[f64]) -> Option<f64> {
        let t = self.teacher.as_ref()?;
        Some(
            0.25 * self
                .beta(theta)
                .iter()
                .zip(t)
                .map(|(b, s)| (b - s) * (b - s))
                .sum::<f64>(),
        )
    }

    /// ‖β‖₁, the number of coefficients above 10⁻³ max|β|, and ‖u‖² + ‖v‖².
    fn extra_columns(&self) -> Vec<String> {
        vec!["beta_l1".into(), "beta_nnz".into(), "weight_sq_norm".into()]
    }

    fn extra_values(&self, theta: &[f64], out: &mut Vec<f64>) {
        let beta = self.beta(theta);
        out.push(beta.iter().map(|b| b.abs()).sum());
        out.push(Self::support(&beta).len() as f64);
        out.push(theta.iter().map(|x| x * x).sum());
    }
}

impl Curve for DiagonalNetwork {
    fn domain(&self) -> (f64, f64) {
        (-std::f64::consts::PI, std::f64::consts::PI)
    }

    fn predict(&self, theta: &[f64], x: f64) -> f64 {
        grokflow_engine::la::dot(&features(self.k, x), &self.beta(theta))
    }

    fn teacher_at(&self, x: f64) -> Option<f64> {
        self.teacher
            .as_ref()
            .map(|t| grokflow_engine::la::dot(&features(self.k, x), t))
    }

    fn training_points(&self) -> (Vec<f64>, Vec<f64>) {
        (self.x.clone(), self.y.clone())
    }
}

crate::impl_system!(
    DiagonalNetwork,
    fn curve(&self) -> Option<&dyn Curve> {
        Some(self)
    },
    fn derived(&self) -> Option<Result<Box<dyn System>, SystemError>> {
        let system: Box<dyn System> = Box::new(self.clone());
        Some(WithDerived::new(system, DiagonalTwin(self.clone())).map(|s| Box::new(s) as Box<dyn System>))
    }
);

/// The small instance of the tests and the quick validation.
fn small(seed: u64) -> Result<Box<dyn System>, SystemError> {
    let p = DiagonalParams {
        frequencies: 10,
        n: 12,
        teacher_sparsity: 2,
        seed,
        ..DiagonalParams::default()
    };
    Ok(Box::new(DiagonalNetwork::generate(&p)?))
}

/// The diagonal network in the registry.
pub static SPEC: SystemSpec = SystemSpec {
    name: "diagonal",
    about: "Diagonal linear network β = u⊙v on Fourier features (paper App. C, Fig. 4): the slow \
            phase lowers ‖u‖² + ‖v‖² ≥ 2‖β‖₁ and recovers the sparse teacher",
    details: "Default instance: p = 100 features (frequencies 1…50), n = 30 points, a 3-sparse \
              teacher ±2, u, v ~ N(0, 0.5). Test metric: half the mean squared error \
              over x ~ U[−π, π] (= ¼‖β − β*‖² by Parseval).",
    params: &[
        Param::new(
            "frequencies",
            "Frequencies K: features cos kx, sin kx for k = 1..K (p = 2K)",
            Kind::Count,
            "50",
        ),
        Param::new("n", "Training points n (≥ 1, < p)", Kind::Count, "30"),
        Param::new("teacher-sparsity", "Non-zero teacher coefficients", Kind::Count, "3"),
        Param::new("teacher-scale", "Their magnitude (> 0)", Kind::Real, "2"),
        Param::new("init-variance", "Variance of u, v at θ_init (> 0)", Kind::Real, "0.5"),
        Param::new("seed", "Seed of the instance generator", Kind::Count, "0"),
    ],
    presets: &[Preset {
        name: "paper-fig4",
        help: "The paper's Figure 4: λ = 1e-4, initialisation variance 0.1, teacher ±1 (the \
               feature count and the teacher are not given: p = 100, n = 30, 3-sparse)",
        params: &[("init-variance", "0.1"), ("teacher-scale", "1")],
        run: RunPreset {
            lambda: Some(1e-4),
            method: None,
            t_end: None,
            tau_end: None,
        },
    }],
    default_tau_end: 10.0,
    limiting_mu_collapse: 0.0,
    footprint: |s| {
        let (k, n) = (s.count("frequencies")? as f64, s.count("n")? as f64);
        Ok(crate::spec::Footprint {
            dim: 4.0 * k,
            residuals: n,
            structured_products: false,
            blocks: (2.0 * k, 2.0),
            // the features row by row, A and Aᵀ (n × 2k each), and the 2k×2k Gram matrix.
            data_bytes: 8.0 * (6.0 * n * k + n + 8.0 * k + 4.0 * k * k),
        })
    },
    generate: |s| {
        let p = DiagonalParams {
            frequencies: s.count("frequencies")?,
            n: s.count("n")?,
            teacher_sparsity: s.count("teacher-sparsity")?,
            teacher_scale: s.real("teacher-scale")?,
            init_variance: s.real("init-variance")?,
            seed: s.seed("seed")?,
        };
        Ok(Box::new(DiagonalNetwork::generate(&p)?))
    },
    load: |v| Ok(Box::new(DiagonalNetwork::from_file(parse_file(v)?)?)),
    cheap: small,
    validation: |quick| {
        if quick {
            small(1)
        } else {
            Ok(Box::new(DiagonalNetwork::generate(&DiagonalParams::default())?))
        }
    },
    scaled: None,
    smooth_family: None,
};

/// The diagonal network's residuals written once, generically: its derived twin.
pub struct DiagonalTwin(pub DiagonalNetwork);

impl ResidualModel for DiagonalTwin {
    fn name(&self) -> &str {
        "diagonal"
    }
    fn dim(&self) -> usize {
        2 * self.0.p()
    }
    fn count(&self) -> usize {
        self.0.x.len()
    }
    /// r = A(u⊙v) − y.
    fn residuals<T: Scalar>(&self, theta: &[T], r: &mut [T]) {
        let p = self.0.p();
        let beta: Vec<T> = (0..p).map(|j| theta[j] * theta[p + j]).collect();
        for (i, ri) in r.iter_mut().enumerate() {
            let mut s = T::zero();
            for (j, &b) in beta.iter().enumerate() {
                s += b * self.0.a[(i, j)];
            }
            *ri = s - self.0.y[i];
        }
    }
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        Residuals::curvature_groups(&self.0)
    }
}
