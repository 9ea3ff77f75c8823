//! What a validation measured, as plain serde structs.

use grokflow_engine::StopReason;
use serde::{Deserialize, Serialize};

use crate::config::ValidationConfig;
use crate::fit::PowerFit;

/// Everything measured at one λ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaRow {
    /// λ.
    pub lambda: f64,
    /// E₁.
    pub prop1_error: f64,
    /// Its solver floor.
    pub prop1_floor: f64,
    /// E₂ on [τ₀, T₂].
    pub prop2_error: f64,
    /// Its floor.
    pub prop2_floor: f64,
    /// The same sup on [0, T₂] (not small: the fast phase happens at τ ≈ 0).
    pub prop2_error_from_zero: f64,
    /// KKT residual of θ_λ^∞.
    pub kkt_residual: Option<f64>,
    /// ‖θ_λ^∞ − θ_M^∞‖ (if θ_M^∞ was reached).
    pub limit_distance: Option<f64>,
    /// The floor of θ_λ^∞: ‖∇F(θ) + λθ‖/λ where it was declared stationary. Along M the
    /// restoring force is only λθ, so a stationarity residual r moves θ_λ^∞ by about r/λ:
    /// rounding in ∇F makes this floor grow like 1/λ.
    pub infinity_floor: Option<f64>,
    /// τ_grok of the λ-flow (interpolated between samples).
    pub tau_grok: Option<f64>,
    /// Whether θ_λ^∞ was reached (the regularised gradient fell below its tolerance).
    pub stationary: bool,
    /// BDF steps: fast run, slow run, run to θ_λ^∞.
    pub steps: [usize; 3],
    /// Wall time of this λ (seconds, all runs).
    pub wall_s: f64,
    /// Slow-time test metric (τ, value), for the collapse figure.
    pub collapse: Vec<(f64, f64)>,
}

/// Pass, fail, not assessed, or not applicable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The criterion held on its window.
    Passed,
    /// It did not.
    Failed,
    /// The claim applies but its window held too few points: no verdict either way, and the
    /// validation is inconclusive.
    NotAssessed,
    /// The claim's hypothesis does not hold on this instance (θ_M^∞ not reached, or a
    /// singular point of M where the Morse–Bott assumption fails; no grokking to time).
    NotApplicable,
}

/// The verdict of a system or of a whole validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every applicable check passed.
    Passed,
    /// A check failed.
    Failed,
    /// None failed, but one or more applicable checks could not be assessed.
    Inconclusive,
}

impl Outcome {
    /// The outcome of a set of checks.
    pub fn of<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Self {
        let mut out = Outcome::Passed;
        for v in verdicts {
            match v {
                Verdict::Failed => return Outcome::Failed,
                Verdict::NotAssessed => out = Outcome::Inconclusive,
                _ => {}
            }
        }
        out
    }

    /// The outcome of several: failed if any failed, else inconclusive if any was.
    pub fn all(outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        let mut out = Outcome::Passed;
        for o in outcomes {
            match o {
                Outcome::Failed => return Outcome::Failed,
                Outcome::Inconclusive => out = Outcome::Inconclusive,
                Outcome::Passed => {}
            }
        }
        out
    }

    /// "passed", "FAILED", "inconclusive".
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// One check of one claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The claim ("prop1", "prop2", "prop3", "prop4", "gap", "tau_grok").
    pub name: String,
    /// The criterion, fixed in advance.
    pub criterion: String,
    /// The window's λ's.
    pub window: Vec<f64>,
    /// The fit on the window, if one was made.
    pub fit: Option<PowerFit>,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
}

/// One system's validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemValidation {
    /// The system.
    pub system: String,
    /// Dimension d.
    pub dim: usize,
    /// The sweep (decreasing).
    pub lambdas: Vec<f64>,
    /// E₁ per λ.
    pub prop1_errors: Vec<f64>,
    /// E₂ per λ.
    pub prop2_errors: Vec<f64>,
    /// The fitted order of E₁, if assessed.
    pub prop1_order: Option<f64>,
    /// The fitted order of E₂, if assessed.
    pub prop2_order: Option<f64>,
    /// For information only (no verdict): the order of E₂ fitted on every λ above its
    /// floor, window or not. Where μ falls along θ_M it is far below 1: the rate holds
    /// only for λ ≪ μ.
    pub prop2_order_all: Option<f64>,
    /// Every applicable check passed (the outcome is `passed`).
    pub passed: bool,
    /// Passed, failed, or inconclusive.
    pub outcome: Outcome,
    /// Everything per λ.
    pub rows: Vec<LambdaRow>,
    /// The checks.
    pub checks: Vec<Check>,
    /// min μ along θ_M on [0, T₂] (the Morse–Bott constant of Prop 2's window).
    pub mu_min: f64,
    /// min μ along the whole limiting flow, up to θ_M^∞ or the singular point where it ended
    /// (the Morse–Bott constant of Props 3 and 4).
    pub mu_end: f64,
    /// How the limiting flow ended.
    pub limiting_stop: StopReason,
    /// The slow time up to which θ_M exists (T₂, or an earlier singular point).
    pub tau_valid: f64,
    /// Slow time of θ_M^∞, if reached.
    pub tau_limit: Option<f64>,
    /// ‖Φ(θ_init) − θ_M^∞‖: the grokking gap.
    pub grokking_gap: Option<f64>,
    /// ‖θ_init − Φ(θ_init)‖ (what E₂ on [0, T₂] cannot get below).
    pub fast_phase_distance: f64,
    /// τ_grok of the limiting flow.
    pub tau_grok_limit: Option<f64>,
    /// The limiting flow's own floor on E₂ (its change at a 100× tighter tolerance).
    pub limiting_floor: f64,
    /// The limiting flow's test metric (τ, value), for the collapse figure.
    pub limiting_curve: Vec<(f64, f64)>,
    /// The Morse–Bott constant μ along θ_M (τ, μ).
    pub mu_curve: Vec<(f64, f64)>,
    /// Wall time (seconds).
    pub wall_s: f64,
}

/// A whole validation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// grokflow's version.
    pub grokflow_version: String,
    /// The settings.
    pub config: ValidationConfig,
    /// One entry per system.
    pub systems: Vec<SystemValidation>,
    /// Every applicable check of every system passed (the outcome is `passed`).
    pub passed: bool,
    /// Passed, failed, or inconclusive.
    pub outcome: Outcome,
    /// Wall time (seconds).
    pub wall_s: f64,
    /// The system being validated when the run was stopped (Ctrl-C): the report holds the
    /// systems finished before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}
