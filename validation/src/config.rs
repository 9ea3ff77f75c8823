//! The settings of a validation run, the defects it can inject, and what stops it.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What can stop a validation before it produces a report.
#[derive(Debug, Error)]
pub enum ValidationError {
    /// A reference computation failed.
    #[error("{system}: {what}")]
    Reference {
        /// The system.
        system: String,
        /// What failed.
        what: String,
    },
    /// A configuration value is out of range.
    #[error("{0}")]
    Config(String),
    /// Stopped on request (Ctrl-C) while validating this system.
    #[error("interrupted while validating {0}")]
    Interrupted(String),
}

/// A deliberately wrong λ-flow, to check that validation can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Defect {
    /// dθ/dt = −∇F(θ): the weight decay dropped.
    DropDecay,
    /// dθ/dt = −∇F(θ) + λθ: its sign flipped.
    FlipDecay,
    /// dθ/dt = −∇F(θ) − 2λθ: twice the weight decay (the slow phase runs twice as fast).
    DoubleDecay,
    /// dθ/dt = −∇F(θ) − λθ − b with a constant b of 10⁻³ max(‖∇F(θ_init)‖, 1): a drift that
    /// does not vanish with λ.
    Drift,
}

/// Settings of a validation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationConfig {
    /// The λ sweep (decreasing or not; it is sorted).
    pub lambdas: Vec<f64>,
    /// T₁ of Prop 1, in fast time.
    pub t_fast: f64,
    /// T₂ of Prop 2, in slow time. The default, 3, is where the Morse–Bott constant μ along
    /// θ_M is still above 10⁻⁵ on the paper's systems: their limiting flows head for singular
    /// points of M (low rank, sparse, few kinks), and μ falls about tenfold per unit of τ,
    /// so that on a longer interval no λ ≥ 10⁻⁸ satisfies λ ≪ μ_min.
    pub tau_end: f64,
    /// τ₀ of Prop 2.
    pub tau0: f64,
    /// Working tolerances of the λ-flows (BDF).
    pub rtol: f64,
    /// Working tolerances of the λ-flows (BDF).
    pub atol: f64,
    /// The tighter run that measures the solver floor uses rtol/`tight_factor`.
    pub tight_factor: f64,
    /// Local tolerance of the limiting flow.
    pub limiting_rtol: f64,
    /// A point counts as above its floor when error > `floor_factor` × floor.
    pub floor_factor: f64,
    /// Prop 2–4 and τ_grok are assessed on λ ≤ μ/`mu_factor`.
    pub mu_factor: f64,
    /// Fewest points a fit needs.
    pub min_points: usize,
    /// Inject a wrong flow (tests only).
    pub defect: Option<Defect>,
    /// How the limiting flow reaches the normal space of M.
    #[serde(default)]
    pub projector: grokflow_engine::Projector,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            lambdas: (2..=16).map(|k| 10f64.powf(-(k as f64) / 2.0)).collect(),
            t_fast: 10.0,
            tau_end: 3.0,
            tau0: 1.0,
            rtol: 1e-8,
            atol: 1e-10,
            tight_factor: 100.0,
            limiting_rtol: 1e-9,
            floor_factor: 10.0,
            mu_factor: 10.0,
            min_points: 3,
            defect: None,
            projector: grokflow_engine::Projector::Auto,
        }
    }
}

impl ValidationConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.lambdas.is_empty() || self.lambdas.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(ValidationError::Config(
                "the λ sweep needs positive finite values".into(),
            ));
        }
        for (name, v) in [
            ("t_fast", self.t_fast),
            ("tau_end", self.tau_end),
            ("tau0", self.tau0),
            ("rtol", self.rtol),
            ("atol", self.atol),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ValidationError::Config(format!(
                    "{name} must be positive and finite, got {v}"
                )));
            }
        }
        if self.tau0 >= self.tau_end {
            return Err(ValidationError::Config(format!(
                "tau0 = {} must be below tau_end = {}",
                self.tau0, self.tau_end
            )));
        }
        Ok(())
    }
}
