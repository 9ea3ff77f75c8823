//! What a run measured, as plain serde structs: summary.json and states.json. Rendering
//! (text, CSV, figures) reads these and computes nothing new.

use std::path::PathBuf;

use grokflow_engine::{GrokkingTimes, LimitingStats, SolverStats, StopReason, TimeScale};
use serde::{Deserialize, Serialize};

/// Train loss, test metric and norms at one point of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    /// Fast time t.
    pub t: f64,
    /// Slow time τ = λt.
    pub tau: f64,
    /// F(θ).
    pub train_loss: f64,
    /// Test metric (null if the system has none).
    pub test_loss: Option<f64>,
    /// ‖θ‖.
    pub norm: f64,
    /// ‖∇F(θ)‖.
    pub grad_norm: f64,
    /// Accuracy on the training data, for classification systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Accuracy on the test data, for classification systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
}

/// Φ(θ_init) and how it was computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhiSummary {
    /// F(Φ(θ_init)).
    pub train_loss: f64,
    /// Test metric at Φ(θ_init).
    pub test_loss: Option<f64>,
    /// ‖Φ(θ_init)‖.
    pub norm: f64,
    /// ‖∇F(Φ(θ_init))‖.
    pub grad_norm: f64,
    /// The tolerance on ‖∇F‖ that ended the unregularised flow.
    pub tolerance: f64,
    /// Fast time at which the unregularised flow met it.
    pub t: f64,
    /// The Morse–Bott constant μ at Φ(θ_init) (the smallest non-zero curvature of F there),
    /// when it was affordable to measure: the phases separate only for λ ≪ μ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mu: Option<f64>,
    /// Accuracy on the training data at Φ(θ_init), for classification systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_accuracy: Option<f64>,
    /// Accuracy on the test data at Φ(θ_init), for classification systems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Work of the unregularised flow (BDF).
    pub stats: SolverStats,
}

/// Where the instance came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    /// "generated" or "file".
    pub source: String,
    /// The instance file read, if any.
    pub path: Option<PathBuf>,
    /// Dimension d of θ.
    pub dim: usize,
    /// The generation parameters, if known.
    pub params: Option<serde_json::Value>,
}

/// summary.json: everything a run measured, as plain data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Version of grokflow that wrote it.
    pub grokflow_version: String,
    /// The system's name.
    pub system: String,
    /// Weight decay λ.
    pub lambda: f64,
    /// Instance seed, if the instance was generated.
    pub seed: Option<u64>,
    /// Method name (bdf, esdirk34, tr_bdf2, tsit45, gd).
    pub method: String,
    /// Gradient-descent step, for gd.
    pub lr: Option<f64>,
    /// Clock of the integration.
    pub time: TimeScale,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// The BDF's highest order as requested (null: its default, 6, or 5 matrix-free without residuals).
    #[serde(default)]
    pub max_order: Option<usize>,
    /// Requested end, fast time.
    pub t_end: f64,
    /// Requested end, slow time.
    pub tau_end: f64,
    /// The instance.
    pub instance: InstanceSummary,
    /// Work of the λ-flow.
    pub stats: SolverStats,
    /// Φ(θ_init), null if the unregularised flow did not converge.
    pub phi: Option<PhiSummary>,
    /// The state where the run ended.
    #[serde(rename = "final")]
    pub final_state: PointSummary,
    /// Fitting and grokking times.
    pub grokking: GrokkingTimes,
    /// Why the run ended.
    pub stop_reason: StopReason,
    /// True when the run reached its end time.
    pub complete: bool,
    /// Things a reader should know (Φ not converged, …).
    pub warnings: Vec<String>,
    /// The system's own measures (rank, support, kinks…) at Φ(θ_init) and at the end.
    pub report: SystemReports,
    /// The limiting flow, with --limiting-flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limiting_flow: Option<LimitingSummary>,
}

/// The system's report at the two points that define grokking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemReports {
    /// At Φ(θ_init) (null if it was not computed).
    pub phi: serde_json::Value,
    /// At the end of the run.
    #[serde(rename = "final")]
    pub final_state: serde_json::Value,
}

/// states.json: θ at the points that matter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct States {
    /// θ_init.
    pub theta_init: Vec<f64>,
    /// Φ(θ_init), if computed.
    pub phi: Option<Vec<f64>>,
    /// θ at the end of the run.
    pub theta_final: Vec<f64>,
    /// θ_M^∞, the limit of the limiting flow (with --limiting-flow, if reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theta_limit: Option<Vec<f64>>,
}

/// The limiting flow's section of summary.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitingSummary {
    /// ‖θ_M‖ where the flow stopped.
    pub norm: f64,
    /// Test metric where it stopped.
    pub test_loss: Option<f64>,
    /// max ‖∇F(θ_M)‖/‖∇F(θ_init)‖ along the flow.
    pub max_drift: f64,
    /// ‖P(θ_M)θ_M‖/max(‖θ_M‖, 1) where it stopped.
    pub kkt_residual: f64,
    /// Slow time where it stopped (past the run's τ_end when it went on to find θ_M^∞).
    pub tau_stopped: f64,
    /// max over recorded τ ≥ τ₀ of ‖θ_λ(τ/λ) − θ_M(τ)‖.
    pub max_distance: Option<f64>,
    /// The τ₀ of `max_distance`.
    pub tau0: f64,
    /// The same maximum over all recorded τ (it is not small: the fast phase happens at 0).
    pub max_distance_from_zero: Option<f64>,
    /// Slow time at which θ_M^∞ was declared (KKT residual below tolerance), if it was.
    pub tau_limit: Option<f64>,
    /// ‖θ_M^∞‖.
    pub limit_norm: Option<f64>,
    /// Test metric at θ_M^∞.
    pub limit_test_loss: Option<f64>,
    /// ‖θ_λ(t_end) − θ_M^∞‖.
    pub distance_final_to_limit: Option<f64>,
    /// The smallest Morse–Bott constant μ seen.
    pub min_mu: f64,
    /// The smallest spectral gap seen.
    pub min_gap: f64,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Things to know (small gaps…).
    pub warnings: Vec<String>,
    /// Work done.
    pub stats: LimitingStats,
}
