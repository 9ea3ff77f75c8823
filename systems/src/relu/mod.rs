//! Two-layer network on 1-D inputs (DESIGN.md §2.5, paper Figure 3; outside the theory for
//! the ReLU): f(x) = Σⱼ aⱼ σ(wⱼx + bⱼ), θ = (a, w, b) ∈ R^{3m},
//! F = Σᵢ (f(xᵢ) − yᵢ)²/(2n). With zᵢⱼ = wⱼxᵢ + bⱼ, eᵢ = f(xᵢ) − yᵢ and Jᵢ = ∇_θ f(xᵢ) =
//! (σ(zᵢⱼ), aⱼσ'(zᵢⱼ)xᵢ, aⱼσ'(zᵢⱼ))ⱼ: ∇F = (1/n) Σᵢ eᵢJᵢ and
//! ∇²F = (1/n) Σᵢ [JᵢJᵢᵀ + eᵢ∇²f(xᵢ)], where ∇²f(xᵢ) is block-diagonal over neurons with
//! ∂²f/∂a∂w = σ'x, ∂²f/∂a∂b = σ', ∂²f/∂w² = aσ''x², ∂²f/∂w∂b = aσ''x, ∂²f/∂b² = aσ''.
//!
//! The ReLU is not C³: its almost-everywhere derivatives (σ'' = 0) are used, and its
//! gradient jumps where a kink crosses a data point. The softplus σ_β(z) = log(1 + e^{βz})/β
//! is smooth, satisfies the theory's assumptions, and tends to the ReLU as β → ∞.

use faer::linalg::matmul::matmul;
use faer::{Accum, Par};
use grokflow_engine::la::{MatMut, MatRef};
use grokflow_engine::{Loss, Observables, Residuals, Switching};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::curve::{grid, Curve};
use crate::data::{check_vec, gaussian_vec, rng};
use crate::error::{invalid_instance, invalid_params, SystemError};
use crate::scratch::{with_buf, with_bufs2};
use crate::derived::WithDerived;
use crate::params::{Kind, Param, Settings};
use crate::spec::{Preset, RunPreset, SmoothFamily, SystemSpec};
use crate::system::{parse_file, System};

mod exact;
mod twin;

pub use twin::ReluTwin;

/// The activation σ.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Activation {
    /// max(z, 0), with σ' = 1 for z > 0 (else 0) and σ'' = 0.
    Relu,
    /// log(1 + e^{βz})/β.
    Softplus {
        /// The sharpness β > 0.
        beta: f64,
    },
}

impl Activation {
    /// (σ(z), σ'(z), σ''(z)).
    pub fn eval(&self, z: f64) -> (f64, f64, f64) {
        match *self {
            Activation::Relu => {
                if z > 0.0 {
                    (z, 1.0, 0.0)
                } else {
                    (0.0, 0.0, 0.0)
                }
            }
            Activation::Softplus { beta } => {
                let t = beta * z;
                // log(1 + eᵗ) = max(t, 0) + log1p(e^{−|t|}) and the logistic σ(t) from the
                // one exponential e^{−|t|} ≤ 1, stable for large |t|.
                let e = (-t.abs()).exp();
                let value = (t.max(0.0) + e.ln_1p()) / beta;
                let s = if t >= 0.0 {
                    1.0 / (1.0 + e)
                } else {
                    e / (1.0 + e)
                };
                // σ(t)(1 − σ(t)) = e/(1 + e)², free of the cancellation in 1 − σ at large t.
                (value, s, beta * e / ((1.0 + e) * (1.0 + e)))
            }
        }
    }
}

/// The teacher function f*.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReluTeacher {
    /// f*(x) = Σₖ cₖ ReLU(dₖx + eₖ), as (cₖ, dₖ, eₖ).
    pub neurons: Vec<(f64, f64, f64)>,
}

impl ReluTeacher {
    /// The paper's teacher: f*(x) = 2σ(1 − x) + 4σ(x + 0.25) − 8σ(x − 1).
    pub fn paper() -> Self {
        Self {
            neurons: vec![(2.0, -1.0, 1.0), (4.0, 1.0, 0.25), (-8.0, 1.0, -1.0)],
        }
    }

    /// f*(x).
    pub fn eval(&self, x: f64) -> f64 {
        self.neurons
            .iter()
            .map(|(c, d, e)| c * (d * x + e).max(0.0))
            .sum()
    }
}

/// Parameters of a generated two-layer-network instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReluParams {
    /// Hidden neurons m.
    pub width: usize,
    /// Training points n, x ~ U[−2, 2].
    pub n: usize,
    /// θ_init ~ N(0, σ²) with σ² = `init_variance`.
    pub init_variance: f64,
    /// σ.
    pub activation: Activation,
    /// Seed.
    pub seed: u64,
}

impl Default for ReluParams {
    /// The paper's Figure 3 (m = 100 neurons, n = 10 points in [−2, 2], initialisation
    /// variance 4, the paper's teacher) with the smooth softplus of sharpness 10.
    fn default() -> Self {
        Self {
            width: 100,
            n: 10,
            init_variance: 4.0,
            activation: Activation::Softplus { beta: 10.0 },
            seed: 0,
        }
    }
}

impl ReluParams {
    /// Checks sizes and scales.
    pub fn validate(&self) -> Result<(), SystemError> {
        if self.width == 0 || self.n == 0 {
            return Err(invalid_params(format!(
                "need at least one neuron and one point (got m = {}, n = {})",
                self.width, self.n
            )));
        }
        if !(self.init_variance.is_finite() && self.init_variance > 0.0) {
            return Err(invalid_params(format!(
                "the init variance must be positive and finite, got {}",
                self.init_variance
            )));
        }
        if let Activation::Softplus { beta } = self.activation {
            check_sharpness(beta).map_err(invalid_params)?;
        }
        Ok(())
    }
}

/// The sharpest softplus accepted: beyond it the softplus is the ReLU to double precision on
/// the data's scale (|z| ≥ 1e-6 gives e^{−βz} below 1e-300) and its curvature β/4 at the kink
/// overflows the stiffness any step size can follow.
pub const MAX_SHARPNESS: f64 = 1e6;

/// Checks a softplus sharpness.
fn check_sharpness(beta: f64) -> Result<(), String> {
    if beta.is_finite() && beta > 0.0 && beta <= MAX_SHARPNESS {
        Ok(())
    } else {
        Err(format!(
            "the softplus sharpness must lie in (0, {MAX_SHARPNESS:e}], got {beta:e} (use \
             --activation relu for the limit)"
        ))
    }
}

/// The input range of the data.
pub const DOMAIN: (f64, f64) = (-2.0, 2.0);
/// Points of the grid on which the test loss is measured.
pub const TEST_GRID: usize = 401;

/// The instance file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReluInstanceFile {
    /// Always "relu".
    pub system: String,
    /// Generation parameters, if generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<ReluParams>,
    /// σ.
    pub activation: Activation,
    /// Training inputs.
    pub x: Vec<f64>,
    /// Training targets.
    pub y: Vec<f64>,
    /// θ_init = (a, w, b), 3m entries.
    pub theta_init: Vec<f64>,
    /// The teacher, if known (the test loss is measured against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<ReluTeacher>,
    /// The test inputs (the teacher's values there are the test targets); 401 evenly spaced
    /// points of [−2, 2] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_x: Option<Vec<f64>>,
}

/// A two-layer-network instance.
#[derive(Clone, Debug)]
pub struct TwoLayerNetwork {
    params: Option<ReluParams>,
    activation: Activation,
    m: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    teacher: Option<ReluTeacher>,
    test_x: Vec<f64>,
    test_y: Vec<f64>,
    theta_init: Vec<f64>,
}

impl TwoLayerNetwork {
    /// A generated instance.
    pub fn generate(p: &ReluParams) -> Result<Self, SystemError> {
        p.validate()?;
        let mut g = rng(p.seed);
        let teacher = ReluTeacher::paper();
        let x: Vec<f64> = (0..p.n)
            .map(|_| g.random_range(DOMAIN.0..DOMAIN.1))
            .collect();
        let y = x.iter().map(|&xi| teacher.eval(xi)).collect();
        let theta_init = gaussian_vec(&mut g, 3 * p.width, p.init_variance.sqrt());
        Self::new(
            Some(p.clone()),
            p.activation,
            x,
            y,
            Some(teacher),
            theta_init,
            None,
        )
    }

    fn new(
        params: Option<ReluParams>,
        activation: Activation,
        x: Vec<f64>,
        y: Vec<f64>,
        teacher: Option<ReluTeacher>,
        theta_init: Vec<f64>,
        test_x: Option<Vec<f64>>,
    ) -> Result<Self, SystemError> {
        if x.is_empty() {
            return Err(invalid_instance("there are no training points"));
        }
        check_vec(&x, x.len(), "x")?;
        check_vec(&y, x.len(), "y")?;
        if theta_init.is_empty() || !theta_init.len().is_multiple_of(3) {
            return Err(invalid_instance(format!(
                "theta_init has {} entries, expected 3m = (a, w, b)",
                theta_init.len()
            )));
        }
        check_vec(&theta_init, theta_init.len(), "theta_init")?;
        if let Activation::Softplus { beta } = activation {
            check_sharpness(beta).map_err(invalid_instance)?;
        }
        let test_x = match test_x {
            Some(t) => {
                if t.is_empty() {
                    return Err(invalid_instance("test_x is empty"));
                }
                check_vec(&t, t.len(), "test_x")?;
                t
            }
            None => grid(DOMAIN.0, DOMAIN.1, TEST_GRID),
        };
        let test_y = match &teacher {
            Some(t) => test_x.iter().map(|&v| t.eval(v)).collect(),
            None => Vec::new(),
        };
        Ok(Self {
            params,
            activation,
            m: theta_init.len() / 3,
            x,
            y,
            teacher,
            test_x,
            test_y,
            theta_init,
        })
    }

    /// Reads an instance file.
    pub fn from_file(f: ReluInstanceFile) -> Result<Self, SystemError> {
        if f.system != "relu" {
            return Err(invalid_instance(format!(
                "this is a \"{}\" instance, not a \"relu\" one",
                f.system
            )));
        }
        Self::new(
            f.params,
            f.activation,
            f.x,
            f.y,
            f.teacher,
            f.theta_init,
            f.test_x,
        )
    }

    /// The instance file contents.
    pub fn to_file(&self) -> ReluInstanceFile {
        ReluInstanceFile {
            system: "relu".into(),
            params: self.params.clone(),
            activation: self.activation,
            x: self.x.clone(),
            y: self.y.clone(),
            theta_init: self.theta_init.clone(),
            teacher: self.teacher.clone(),
            test_x: Some(self.test_x.clone()),
        }
    }

    /// The same instance with another activation (to compare sharpnesses on one instance).
    pub fn with_activation(&self, activation: Activation) -> Self {
        Self {
            activation,
            ..self.clone()
        }
    }

    /// Generation parameters.
    pub fn params(&self) -> Option<&ReluParams> {
        self.params.as_ref()
    }

    /// The activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// θ_init.
    pub fn theta_init(&self) -> &[f64] {
        &self.theta_init
    }

    /// f(x) at θ.
    pub fn predict_at(&self, theta: &[f64], x: f64) -> f64 {
        let m = self.m;
        (0..m)
            .map(|j| theta[j] * self.activation.eval(theta[m + j] * x + theta[2 * m + j]).0)
            .sum()
    }

    /// (σ, σ', σ'') of neuron j at training point i, zᵢⱼ = z: the network's own activation,
    /// or the ReLU frozen in an activation pattern (σ(z) = sz, s the pattern's 0 or 1).
    fn sigma(&self, act: Act<'_>, i: usize, j: usize, z: f64) -> (f64, f64, f64) {
        match act {
            Act::Own => self.activation.eval(z),
            Act::Frozen(side) => {
                if side[i * self.m + j] {
                    (z, 1.0, 0.0)
                } else {
                    (0.0, 0.0, 0.0)
                }
            }
        }
    }

    /// f(xᵢ) at training point i.
    fn predict_train(&self, act: Act<'_>, theta: &[f64], i: usize) -> f64 {
        let (m, x) = (self.m, self.x[i]);
        (0..m)
            .map(|j| theta[j] * self.sigma(act, i, j, theta[m + j] * x + theta[2 * m + j]).0)
            .sum()
    }

    /// ∂²f(x)/∂(aⱼ, wⱼ, bⱼ)², neuron j's 3×3 block (row by row): f couples the parameters of
    /// one neuron only.
    fn neuron_curvature(&self, act: Act<'_>, theta: &[f64], i: usize, j: usize) -> [f64; 9] {
        let (m, a, x) = (self.m, theta[j], self.x[i]);
        let (_, ds, dds) = self.sigma(act, i, j, theta[m + j] * x + theta[2 * m + j]);
        let (aw, ab) = (ds * x, ds);
        let (ww, wb, bb) = (a * dds * x * x, a * dds * x, a * dds);
        [0.0, aw, ab, aw, ww, wb, ab, wb, bb]
    }

    /// ∂f(x)/∂θ into `row` (3m entries: a, w, b), returning f(x): one activation
    /// evaluation per neuron serves both.
    fn jacobian_row(&self, act: Act<'_>, theta: &[f64], i: usize, row: &mut [f64]) -> f64 {
        let (m, x) = (self.m, self.x[i]);
        let mut f = 0.0;
        for j in 0..m {
            let a = theta[j];
            let (s, ds, _) = self.sigma(act, i, j, theta[m + j] * x + theta[2 * m + j]);
            f += a * s;
            row[j] = s;
            row[m + j] = a * ds * x;
            row[2 * m + j] = a * ds;
        }
        f
    }

    /// Kinks of the learned function inside the input range: positions −bⱼ/wⱼ ∈ (−2, 2) of
    /// neurons whose slope change |aⱼwⱼ| exceeds 10⁻² of the largest, merged when closer
    /// than 0.02.
    pub fn kinks(&self, theta: &[f64]) -> Vec<f64> {
        let m = self.m;
        let jumps: Vec<f64> = (0..m).map(|j| (theta[j] * theta[m + j]).abs()).collect();
        let top = jumps.iter().cloned().fold(0.0, f64::max);
        let mut pos: Vec<f64> = (0..m)
            .filter(|&j| jumps[j] > 1e-2 * top && theta[m + j] != 0.0)
            .map(|j| -theta[2 * m + j] / theta[m + j])
            .filter(|p| *p > DOMAIN.0 && *p < DOMAIN.1)
            .collect();
        pos.sort_by(|a, b| a.total_cmp(b));
        let mut merged: Vec<f64> = Vec::new();
        for p in pos {
            if merged.last().is_none_or(|last| p - last > 0.02) {
                merged.push(p);
            }
        }
        merged
    }

    /// The number of kinks and their positions.
    pub fn report(&self, theta: &[f64]) -> ReluReport {
        let kinks = self.kinks(theta);
        ReluReport {
            kink_count: kinks.len(),
            kinks,
            activation: self.activation,
        }
    }
}

/// What a researcher looks at in a learned two-layer network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReluReport {
    /// See [`TwoLayerNetwork::kinks`].
    pub kinks: Vec<f64>,
    /// Their number.
    pub kink_count: usize,
    /// The activation.
    pub activation: Activation,
}

impl Loss for TwoLayerNetwork {
    fn name(&self) -> &str {
        "relu"
    }

    fn dim(&self) -> usize {
        3 * self.m
    }

    fn value(&self, theta: &[f64]) -> f64 {
        self.value_with(Act::Own, theta)
    }

    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        self.gradient_with(Act::Own, theta, grad);
    }

    fn residuals(&self) -> Option<&dyn Residuals> {
        Some(self)
    }

    fn switching(&self) -> Option<&dyn Switching> {
        matches!(self.activation, Activation::Relu).then_some(self as &dyn Switching)
    }

    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        self.hvp_with(Act::Own, theta, v, out);
    }

    fn hessian_into(&self, theta: &[f64], h: MatMut<'_, f64>) {
        self.hessian_with(Act::Own, theta, h);
    }
}

/// The activation of the training points' evaluations: the network's own, or the ReLU
/// frozen in an activation pattern (`side[i·m + j]`: neuron j active at point i), the
/// smooth loss of one region of the exact ReLU's piecewise-smooth flow.
#[derive(Clone, Copy)]
enum Act<'p> {
    Own,
    Frozen(&'p [bool]),
}

impl TwoLayerNetwork {
    fn value_with(&self, act: Act<'_>, theta: &[f64]) -> f64 {
        let n = self.x.len();
        (0..n)
            .map(|i| (self.predict_train(act, theta, i) - self.y[i]).powi(2))
            .sum::<f64>()
            / (2.0 * n as f64)
    }

    /// (1/n) Σᵢ eᵢ Jᵢ.
    fn gradient_with(&self, act: Act<'_>, theta: &[f64], grad: &mut [f64]) {
        let n = self.x.len();
        grad.fill(0.0);
        with_buf(3 * self.m, |row| {
            for i in 0..n {
                let e = (self.jacobian_row(act, theta, i, row) - self.y[i]) / n as f64;
                grokflow_engine::la::axpy(e, row, grad);
            }
        })
    }

    /// (1/n) Σᵢ [Jᵢ(Jᵢ·v) + eᵢ∇²f(xᵢ)v], neuron by neuron: O(nm).
    fn hvp_with(&self, act: Act<'_>, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let (m, n) = (self.m, self.x.len());
        out.fill(0.0);
        let w = 1.0 / n as f64;
        with_buf(3 * m, |row| {
            for i in 0..n {
                let e = self.jacobian_row(act, theta, i, row) - self.y[i];
                // Jᵢ(Jᵢ·v)
                let jdotv: f64 = row.iter().zip(v).map(|(a, b)| a * b).sum();
                grokflow_engine::la::axpy(w * jdotv, row, out);
                // eᵢ ∇²f(xᵢ) v on each neuron's 3×3 block.
                for j in 0..m {
                    let block = self.neuron_curvature(act, theta, i, j);
                    let idx = [j, m + j, 2 * m + j];
                    for (p, &ip) in idx.iter().enumerate() {
                        let bv: f64 = (0..3).map(|q| block[3 * p + q] * v[idx[q]]).sum();
                        out[ip] += w * e * bv;
                    }
                }
            }
        })
    }

    /// (1/n) Σᵢ [JᵢJᵢᵀ + eᵢ∇²f(xᵢ)]: the Gauss–Newton part as one product JᵀJ/n.
    fn hessian_with(&self, act: Act<'_>, theta: &[f64], mut h: MatMut<'_, f64>) {
        let (m, n) = (self.m, self.x.len());
        let d = 3 * m;
        let w = 1.0 / n as f64;
        with_bufs2(n * d, n, |jac, err| {
            for i in 0..n {
                let row = &mut jac[i * d..(i + 1) * d];
                err[i] = (self.jacobian_row(act, theta, i, row) - self.y[i]) * w;
            }
            let j = MatRef::from_row_major_slice(jac, n, d);
            matmul(h.as_mut(), Accum::Replace, j.transpose(), j, w, Par::Seq);
            for (i, &ew) in err.iter().enumerate() {
                for j in 0..m {
                    // e ∇²f(xᵢ): the neuron's 3×3 block.
                    let block = self.neuron_curvature(act, theta, i, j);
                    let idx = [j, m + j, 2 * m + j];
                    for (p, &ip) in idx.iter().enumerate() {
                        for (q, &iq) in idx.iter().enumerate() {
                            h[(ip, iq)] += ew * block[3 * p + q];
                        }
                    }
                }
            }
        })
    }
}

impl Residuals for TwoLayerNetwork {
    fn count(&self) -> usize {
        self.x.len()
    }
    fn scale(&self) -> f64 {
        self.x.len() as f64
    }
    /// rᵢ = f(xᵢ) − yᵢ.
    fn residuals_into(&self, theta: &[f64], r: &mut [f64]) {
        for (i, ri) in r.iter_mut().enumerate() {
            *ri = self.predict_train(Act::Own, theta, i) - self.y[i];
        }
    }
    /// ∇²f(x) couples the parameters of one neuron only: R's blocks are the (aⱼ, wⱼ, bⱼ).
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        let m = self.m;
        Some((0..m).map(|j| vec![j, m + j, 2 * m + j]).collect())
    }
    /// Neuron j's block (1/n) Σᵢ eᵢ ∂²f(xᵢ)/∂(aⱼ, wⱼ, bⱼ)².
    fn curvature_blocks_into(&self, theta: &[f64], out: &mut [f64]) {
        let (m, n) = (self.m, self.x.len());
        out.fill(0.0);
        for i in 0..n {
            let ew = (self.predict_train(Act::Own, theta, i) - self.y[i]) / n as f64;
            for j in 0..m {
                let block = self.neuron_curvature(Act::Own, theta, i, j);
                for (o, v) in out[9 * j..9 * j + 9].iter_mut().zip(block) {
                    *o += ew * v;
                }
            }
        }
    }
    /// Jᵢ = (σ(zᵢⱼ), aⱼσ'(zᵢⱼ)xᵢ, aⱼσ'(zᵢⱼ))ⱼ.
    fn jacobian_into(&self, theta: &[f64], mut jac: MatMut<'_, f64>) {
        let d = 3 * self.m;
        with_buf(d, |row| {
            for i in 0..self.x.len() {
                self.jacobian_row(Act::Own, theta, i, row);
                for c in 0..d {
                    jac[(i, c)] = row[c];
                }
            }
        })
    }
}

impl Observables for TwoLayerNetwork {
    /// Half the mean squared error against the teacher on the test inputs (401 evenly spaced
    /// points of [−2, 2] when generated).
    fn test_loss(&self, theta: &[f64]) -> Option<f64> {
        self.teacher.as_ref()?;
        let k = self.test_x.len();
        Some(
            0.5 * self
                .test_x
                .iter()
                .zip(&self.test_y)
                .map(|(&x, &y)| (self.predict_at(theta, x) - y).powi(2))
                .sum::<f64>()
                / k as f64,
        )
    }

    /// The number of kinks inside the input range.
    fn extra_columns(&self) -> Vec<String> {
        vec!["kinks".into()]
    }

    fn extra_values(&self, theta: &[f64], out: &mut Vec<f64>) {
        out.push(self.kinks(theta).len() as f64);
    }
}

impl Curve for TwoLayerNetwork {
    fn domain(&self) -> (f64, f64) {
        DOMAIN
    }

    fn predict(&self, theta: &[f64], x: f64) -> f64 {
        self.predict_at(theta, x)
    }

    fn teacher_at(&self, x: f64) -> Option<f64> {
        self.teacher.as_ref().map(|t| t.eval(x))
    }

    fn training_points(&self) -> (Vec<f64>, Vec<f64>) {
        (self.x.clone(), self.y.clone())
    }
}

crate::impl_system!(
    TwoLayerNetwork,
    fn curve(&self) -> Option<&dyn Curve> {
        Some(self)
    },
    fn with_model(&self, s: &Settings) -> Result<Box<dyn System>, SystemError> {
        let activation = match (s.is_given("activation"), self.activation) {
            // A sharpness alone sharpens a softplus instance and leaves a ReLU one alone.
            (false, Activation::Relu) => Activation::Relu,
            _ => activation(s)?,
        };
        Ok(Box::new(TwoLayerNetwork::with_activation(self, activation)))
    },
    fn derived(&self) -> Option<Result<Box<dyn System>, SystemError>> {
        let system: Box<dyn System> = Box::new(self.clone());
        Some(WithDerived::new(system, ReluTwin(self.clone())).map(|s| Box::new(s) as Box<dyn System>))
    }
);

/// The activation of `s`: its --activation, with --sharpness for the softplus.
fn activation(s: &Settings) -> Result<Activation, SystemError> {
    Ok(match s.choice("activation")? {
        "relu" => Activation::Relu,
        _ => Activation::Softplus {
            beta: s.real("sharpness")?,
        },
    })
}

/// The small instance of the tests and the quick validation.
fn small(seed: u64) -> Result<Box<dyn System>, SystemError> {
    let p = ReluParams {
        width: 12,
        n: 6,
        activation: Activation::Softplus { beta: 5.0 },
        seed,
        ..ReluParams::default()
    };
    Ok(Box::new(TwoLayerNetwork::generate(&p)?))
}

/// The two-layer network in the registry.
pub static SPEC: SystemSpec = SystemSpec {
    name: "relu",
    about: "Two-layer network Σⱼaⱼσ(wⱼx + bⱼ) on 1-D data (paper Fig. 3), with the ReLU or a \
            smooth softplus: the slow phase leaves a function with few kinks",
    details: "Default instance: m = 100 neurons, n = 10 points x ~ U[−2, 2], θ_init variance 4, \
              softplus β = 10, teacher 2σ(1 − x) + 4σ(x + 0.25) − 8σ(x − 1). Test metric: half \
              the mean squared error against the teacher on the instance's test inputs (401 \
              points of [−2, 2] when generated). --activation \
              and --sharpness apply to a loaded instance too.",
    params: &[
        Param::new("width", "Hidden neurons m (≥ 1)", Kind::Count, "100"),
        Param::new("n", "Training points n (≥ 1)", Kind::Count, "10"),
        Param::new("init-variance", "Variance of θ_init (> 0)", Kind::Real, "4"),
        Param {
            name: "activation",
            help: "Activation σ",
            kind: Kind::Choice(&[
                (
                    "softplus",
                    "log(1 + e^{βz})/β with sharpness --sharpness (smooth: the theory holds)",
                ),
                (
                    "relu",
                    "the exact ReLU (outside the theory): BDF integrates its piecewise-smooth \
                     flow event by event, through kink crossings and sliding modes",
                ),
            ]),
            default: Some("softplus"),
            model: true,
        },
        Param {
            name: "sharpness",
            help: "Sharpness β of the softplus (in (0, 1e6])",
            kind: Kind::Real,
            default: Some("10"),
            model: true,
        },
        Param::new("seed", "Seed of the instance generator", Kind::Count, "0"),
    ],
    presets: &[Preset {
        name: "paper-fig3",
        help: "The paper's Figure 3: m = 100, n = 10, x ~ U[−2, 2], variance 4, λ = 1e-3, the \
               exact ReLU up to τ = 10, by the event-driven BDF (the paper ran gradient \
               descent: --method gd --lr 2e-3)",
        params: &[("activation", "relu")],
        run: RunPreset {
            lambda: Some(1e-3),
            method: None,
            t_end: None,
            tau_end: Some(10.0),
        },
    }],
    default_tau_end: 10.0,
    limiting_mu_collapse: 0.0,
    footprint: |s| {
        let (w, n) = (s.count("width")? as f64, s.count("n")? as f64);
        Ok(crate::spec::Footprint {
            dim: 3.0 * w,
            residuals: n,
            structured_products: false,
            blocks: (w, 3.0),
            data_bytes: 8.0 * (2.0 * n + 3.0 * w + 2.0 * TEST_GRID as f64),
        })
    },
    generate: |s| {
        let p = ReluParams {
            width: s.count("width")?,
            n: s.count("n")?,
            init_variance: s.real("init-variance")?,
            activation: activation(s)?,
            seed: s.seed("seed")?,
        };
        Ok(Box::new(TwoLayerNetwork::generate(&p)?))
    },
    load: |v| Ok(Box::new(TwoLayerNetwork::from_file(parse_file(v)?)?)),
    cheap: small,
    validation: |quick| {
        if quick {
            small(0)
        } else {
            Ok(Box::new(TwoLayerNetwork::generate(&ReluParams::default())?))
        }
    },
    scaled: None,
    smooth_family: Some(SmoothFamily {
        limit: &[("activation", "relu")],
        param: "sharpness",
        values: &["10", "30", "100", "300", "1000"],
        gd_step: 2e-3,
    }),
};
