//! Your own loss as a grokflow model: its derivatives (derived from one generic
//! implementation, or hand-written), θ_init, and what a run records beside the training
//! loss. A [`Model`] runs through the same calls as the built-in systems: a run directory
//! ([`crate::run()`]), the limiting flow, and the validation report ([`crate::validate`]).

use grokflow_engine::la::MatMut;
use grokflow_engine::{
    check_derivatives, DerivativeReport, Derived, DerivedScalar, Loss, Observables, ResidualModel,
    Residuals, ScalarModel,
};
use grokflow_systems::{Curve, System, SystemError};
use thiserror::Error;

/// Why a model cannot run.
#[derive(Debug, Error)]
pub enum ModelError {
    /// θ_init does not fit the loss.
    #[error("θ_init has {got} entries but the loss has dimension {dim}")]
    Dimension {
        /// The loss's d.
        dim: usize,
        /// θ_init's length.
        got: usize,
    },
    /// A value that must be finite is not.
    #[error("{0} is not finite at θ_init: check the loss (or θ_init) there")]
    NotFinite(&'static str),
    /// The loss's declared structure is inconsistent.
    #[error("{0}")]
    Structure(String),
    /// The derivative check failed.
    #[error("the derivatives fail their check at θ_init: {}", .0.join("; "))]
    Derivatives(Vec<String>),
}

type Metric = Box<dyn Fn(&[f64]) -> f64 + Send + Sync>;

/// A loss with θ_init and its observables, ready to run.
///
/// ```
/// use grokflow::{Model, RunConfig};
/// use grokflow_engine::{ResidualModel, Scalar};
///
/// /// Fit y = a·b to 1 by least squares: M = {ab = 1}, and the slow phase drifts to
/// /// the balanced point a = b = 1.
/// struct Product;
/// impl ResidualModel for Product {
///     fn dim(&self) -> usize { 2 }
///     fn count(&self) -> usize { 1 }
///     fn residuals<T: Scalar>(&self, theta: &[T], r: &mut [T]) {
///         r[0] = theta[0] * theta[1] - 1.0;
///     }
/// }
///
/// let model = Model::least_squares(Product, vec![2.0, 0.6])?;
/// let cfg = RunConfig::default().lambda(1e-4).tau_end(10.0).quiet();
/// let record = grokflow::run::run(&model, &cfg)?;
/// let theta = &record.states.theta_final;
/// assert!((theta[0] - 1.0).abs() < 1e-3 && (theta[1] - 1.0).abs() < 1e-3);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct Model {
    name: String,
    loss: Box<dyn Loss>,
    theta_init: Vec<f64>,
    test: Option<Metric>,
    columns: Vec<(String, Metric)>,
    curve: Option<Box<dyn Curve + Send + Sync>>,
}

impl Model {
    /// A least-squares loss F = ‖r‖²/(2c) from its residuals written once over
    /// [`grokflow_engine::Scalar`]: every derivative is derived exactly.
    pub fn least_squares<M: ResidualModel + 'static>(
        residuals: M,
        theta_init: Vec<f64>,
    ) -> Result<Self, ModelError> {
        let name = residuals.name().to_string();
        let loss = Derived::new(residuals).map_err(|e| ModelError::Structure(e.to_string()))?;
        Self::from_loss(name, Box::new(loss), theta_init)
    }

    /// A loss F from its value written once over [`grokflow_engine::Scalar`].
    pub fn scalar<M: ScalarModel + 'static>(
        value: M,
        theta_init: Vec<f64>,
    ) -> Result<Self, ModelError> {
        let name = value.name().to_string();
        Self::from_loss(name, Box::new(DerivedScalar::new(value)), theta_init)
    }

    /// A loss with hand-written derivatives (any [`Loss`]).
    pub fn from_loss(
        name: impl Into<String>,
        loss: Box<dyn Loss>,
        theta_init: Vec<f64>,
    ) -> Result<Self, ModelError> {
        if theta_init.len() != loss.dim() {
            return Err(ModelError::Dimension {
                dim: loss.dim(),
                got: theta_init.len(),
            });
        }
        if !theta_init.iter().all(|x| x.is_finite()) {
            return Err(ModelError::NotFinite("θ_init"));
        }
        if !loss.value(&theta_init).is_finite() {
            return Err(ModelError::NotFinite("the loss"));
        }
        if !loss.gradient(&theta_init).iter().all(|x| x.is_finite()) {
            return Err(ModelError::NotFinite("the gradient"));
        }
        Ok(Self {
            name: name.into(),
            loss,
            theta_init,
            test: None,
            columns: Vec::new(),
            curve: None,
        })
    }

    /// The test metric recorded beside the training loss (trajectory.csv's `test_loss`,
    /// the figure, the grokking time).
    pub fn test_loss(mut self, f: impl Fn(&[f64]) -> f64 + Send + Sync + 'static) -> Self {
        self.test = Some(Box::new(f));
        self
    }

    /// One more scalar recorded at every sample (a column of trajectory.csv).
    pub fn column(
        mut self,
        name: impl Into<String>,
        f: impl Fn(&[f64]) -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.columns.push((name.into(), Box::new(f)));
        self
    }

    /// For a model of one real input: the learned function, drawn in function.png.
    pub fn curve(mut self, curve: impl Curve + Send + Sync + 'static) -> Self {
        self.curve = Some(Box::new(curve));
        self
    }

    /// For a model of one real input x ∈ `domain`: the learned function f(θ, x), drawn in
    /// function.png with the training points and, if given, the teacher.
    pub fn function(
        self,
        domain: (f64, f64),
        f: impl Fn(&[f64], f64) -> f64 + Send + Sync + 'static,
        points: (Vec<f64>, Vec<f64>),
        teacher: Option<fn(f64) -> f64>,
    ) -> Self {
        self.curve(FnCurve {
            domain,
            f: Box::new(f),
            points,
            teacher,
        })
    }

    /// The derivative check at θ_init (against finite differences, with its verdict).
    pub fn check(&self) -> DerivativeReport {
        check_derivatives(self.loss.as_ref(), &self.theta_init, 1e-6)
    }

    /// The model if its derivative check passes at θ_init, else an error listing what
    /// failed.
    pub fn checked(self) -> Result<Self, ModelError> {
        let report = self.check();
        if report.passed {
            Ok(self)
        } else {
            Err(ModelError::Derivatives(report.failures()))
        }
    }
}

impl Loss for Model {
    fn name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.loss.dim()
    }
    fn value(&self, theta: &[f64]) -> f64 {
        self.loss.value(theta)
    }
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        self.loss.gradient_into(theta, grad);
    }
    fn hessian_into(&self, theta: &[f64], hess: MatMut<'_, f64>) {
        self.loss.hessian_into(theta, hess);
    }
    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        self.loss.hvp_into(theta, v, out);
    }
    fn residuals(&self) -> Option<&dyn Residuals> {
        self.loss.residuals()
    }
    fn is_convex_quadratic(&self) -> bool {
        self.loss.is_convex_quadratic()
    }
}

impl Observables for Model {
    fn test_loss(&self, theta: &[f64]) -> Option<f64> {
        self.test.as_ref().map(|f| f(theta))
    }
    fn extra_columns(&self) -> Vec<String> {
        self.columns.iter().map(|(n, _)| n.clone()).collect()
    }
    fn extra_values(&self, theta: &[f64], out: &mut Vec<f64>) {
        out.extend(self.columns.iter().map(|(_, f)| f(theta)));
    }
}

impl System for Model {
    fn theta_init(&self) -> &[f64] {
        &self.theta_init
    }
    /// A model's data are its own: its "instance" is θ_init.
    fn instance_json(&self) -> String {
        serde_json::to_string_pretty(&serde_json::json!({
            "system": self.name,
            "theta_init": self.theta_init,
        }))
        .expect("plain data serialises")
    }
    fn seed(&self) -> Option<u64> {
        None
    }
    fn params_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn report(&self, _theta: &[f64]) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn curve(&self) -> Option<&dyn Curve> {
        self.curve.as_deref().map(|c| c as &dyn Curve)
    }
    fn with_model(
        &self,
        _settings: &grokflow_systems::Settings,
    ) -> Result<Box<dyn System>, SystemError> {
        Err(SystemError::InvalidParams(format!(
            "{} has no model parameters",
            self.name
        )))
    }
}

/// The model's output f(θ, x).
type Predictor = Box<dyn Fn(&[f64], f64) -> f64 + Send + Sync>;

/// A [`Curve`] from a closure (see [`Model::function`]).
struct FnCurve {
    domain: (f64, f64),
    f: Predictor,
    points: (Vec<f64>, Vec<f64>),
    teacher: Option<fn(f64) -> f64>,
}

impl Curve for FnCurve {
    fn domain(&self) -> (f64, f64) {
        self.domain
    }
    fn predict(&self, theta: &[f64], x: f64) -> f64 {
        (self.f)(theta, x)
    }
    fn teacher_at(&self, x: f64) -> Option<f64> {
        self.teacher.map(|t| t(x))
    }
    fn training_points(&self) -> (Vec<f64>, Vec<f64>) {
        self.points.clone()
    }
}

/// `len` independent N(0, σ²) draws from the generator seeded with `seed` (the one every
/// built-in instance draws from): a reproducible θ_init.
pub fn gaussian(seed: u64, len: usize, sigma: f64) -> Vec<f64> {
    grokflow_systems::data::gaussian_vec(&mut grokflow_systems::data::rng(seed), len, sigma)
}
