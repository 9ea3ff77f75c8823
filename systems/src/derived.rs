//! A system whose loss is derived from a generic twin of its residuals ([`ResidualModel`]):
//! the same instance, observables and report, with every derivative computed by
//! grokflow's automatic differentiation instead of by hand. It checks the hand-written
//! derivatives and measures what deriving them costs.

use grokflow_engine::la::MatMut;
use grokflow_engine::{Derived, Loss, Observables, ResidualModel, Residuals};

use crate::curve::Curve;
use crate::error::SystemError;
use crate::params::Settings;
use crate::system::System;
use crate::truth::Truth;

/// `system` with the loss of its generic twin.
pub struct WithDerived {
    system: Box<dyn System>,
    loss: Box<dyn Loss>,
}

impl WithDerived {
    /// `system` with the loss derived from `twin`.
    pub fn new<M: ResidualModel + 'static>(
        system: Box<dyn System>,
        twin: M,
    ) -> Result<Self, SystemError> {
        let loss = Derived::new(twin).map_err(|e| SystemError::InvalidParams(e.to_string()))?;
        Ok(Self {
            system,
            loss: Box::new(loss),
        })
    }
}

impl Loss for WithDerived {
    fn name(&self) -> &str {
        self.system.name()
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

impl Observables for WithDerived {
    fn test_loss(&self, theta: &[f64]) -> Option<f64> {
        self.system.test_loss(theta)
    }
    fn extra_columns(&self) -> Vec<String> {
        self.system.extra_columns()
    }
    fn extra_values(&self, theta: &[f64], out: &mut Vec<f64>) {
        self.system.extra_values(theta, out);
    }
}

impl System for WithDerived {
    fn theta_init(&self) -> &[f64] {
        self.system.theta_init()
    }
    fn instance_json(&self) -> String {
        self.system.instance_json()
    }
    fn seed(&self) -> Option<u64> {
        self.system.seed()
    }
    fn params_json(&self) -> serde_json::Value {
        self.system.params_json()
    }
    fn report(&self, theta: &[f64]) -> serde_json::Value {
        self.system.report(theta)
    }
    fn curve(&self) -> Option<&dyn Curve> {
        self.system.curve()
    }
    fn truth(&self) -> Option<Box<dyn Truth>> {
        self.system.truth()
    }
    fn with_model(&self, settings: &Settings) -> Result<Box<dyn System>, SystemError> {
        self.system
            .with_model(settings)?
            .derived()
            .unwrap_or_else(|| Err(SystemError::InvalidParams("no generic twin".into())))
    }
    fn derivatives(&self) -> &'static str {
        "derived"
    }
}
