//! The limiting flow as a stepper of the one loop: the Dormand–Prince 5(4) pair with local
//! error control along −P(θ)θ, each accepted step retracted onto M, its dense output a cubic
//! Hermite interpolant retracted too.

use crate::error::EngineError;
use crate::la::{axpy, norm};
use crate::limiting::on_manifold::{Inspection, OnManifold};
use crate::loss::Observables;
use crate::manifold::kkt_residual;
use crate::stepping::{
    Control, DenseOutput, Observer, RunInfo, SolverStats, StepView, Stepper, StopReason,
};

/// Dormand–Prince 5(4): rows 2..7 of A (row 7 is the fifth-order weights, FSAL).
const DP_A: [[f64; 6]; 6] = [
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// Fifth-order minus fourth-order weights: the local error estimate.
const DP_E: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];

/// The weighted RMS norm of the error estimate (absolute tolerance 1e-2 of the relative).
fn scaled_err(err: &[f64], y: &[f64], rtol: f64) -> f64 {
    let atol = 1e-2 * rtol;
    let s: f64 = err
        .iter()
        .zip(y)
        .map(|(e, v)| (e / (atol + rtol * v.abs())).powi(2))
        .sum();
    (s / err.len().max(1) as f64).sqrt()
}

/// The step control of the flow on M.
pub(crate) struct StepControl {
    /// Local error tolerance (relative; absolute 1e-2 of it).
    pub(crate) rtol: f64,
    /// ‖∇F‖ above which a retraction has failed.
    pub(crate) drift_limit: f64,
    /// A gap below this is warned about.
    pub(crate) gap_warn: f64,
    /// A gap below this is a singular point.
    pub(crate) gap_stop: f64,
    /// A μ below this (a fraction of μ at the start) is the approach of a singular point.
    pub(crate) mu_stop: f64,
}

/// Dormand–Prince 5(4) on M.
pub(crate) struct DormandPrince<'f, 'a> {
    on: &'f OnManifold<'a>,
    control: StepControl,
    tau: f64,
    theta: Vec<f64>,
    f: Vec<f64>,
    /// The split at θ.
    here: Inspection,
    h: f64,
    /// The last step's start (τ, θ, f) and length, for the dense output.
    prev: (f64, Vec<f64>, Vec<f64>),
    hh: f64,
    pub(crate) min_mu: f64,
    start_mu: f64,
    pub(crate) min_gap: f64,
    pub(crate) warnings: Vec<String>,
    gap_warned: bool,
    steps: usize,
    rejected: usize,
}

impl<'f, 'a> DormandPrince<'f, 'a> {
    /// From θ on M (retracted), with its field and projector, and the first step size h.
    pub(crate) fn new(
        on: &'f OnManifold<'a>,
        control: StepControl,
        theta: Vec<f64>,
        (f, here): (Vec<f64>, Inspection),
        h: f64,
    ) -> Self {
        Self {
            on,
            control,
            tau: 0.0,
            prev: (0.0, theta.clone(), f.clone()),
            hh: h,
            min_mu: here.mu,
            start_mu: here.mu,
            min_gap: here.gap,
            theta,
            f,
            here,
            h,
            warnings: Vec::new(),
            gap_warned: false,
            steps: 0,
            rejected: 0,
        }
    }

    /// The KKT residual ‖P(θ)θ‖/max(‖θ‖, 1) of the current state.
    pub(crate) fn kkt_residual(&self) -> f64 {
        kkt_residual(&self.theta, &self.f)
    }

    /// (steps, rejected steps).
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.steps, self.rejected)
    }
}

impl DenseOutput for DormandPrince<'_, '_> {
    /// The cubic Hermite interpolant between the two points on M, retracted.
    fn interpolate_into(&self, s: f64, out: &mut [f64]) -> Result<(), EngineError> {
        let (tau, theta, f) = (&self.prev.0, &self.prev.1, &self.prev.2);
        let hh = self.hh;
        let s = (s - tau) / hh;
        let (h00, h10, h01, h11) = (
            2.0 * s.powi(3) - 3.0 * s * s + 1.0,
            s.powi(3) - 2.0 * s * s + s,
            -2.0 * s.powi(3) + 3.0 * s * s,
            s.powi(3) - s * s,
        );
        for (i, o) in out.iter_mut().enumerate() {
            *o = h00 * theta[i] + h10 * hh * f[i] + h01 * self.theta[i] + h11 * hh * self.f[i];
        }
        self.on.retract(out)?;
        Ok(())
    }
}

impl Stepper for DormandPrince<'_, '_> {
    fn method(&self) -> &'static str {
        "dopri5_on_manifold"
    }

    fn clock(&self) -> f64 {
        self.tau
    }

    fn state(&self) -> &[f64] {
        &self.theta
    }

    fn rhs(&self) -> Option<&[f64]> {
        Some(&self.f)
    }

    /// One accepted step, retracted onto M; a singular point of M, a failed retraction or a
    /// collapsed step size ends the flow.
    fn step(&mut self, s_stop: f64) -> Result<(), StopReason> {
        loop {
            let (tau, hh) = (self.tau, self.h.min(s_stop - self.tau));
            let theta = &self.theta;
            let n = theta.len();
            // Seven stages, the last at the fifth-order solution.
            let mut ks: Vec<Vec<f64>> = Vec::with_capacity(7);
            ks.push(self.f.clone());
            let mut y5 = theta.clone();
            for (i, row) in DP_A.iter().enumerate() {
                let mut y = theta.clone();
                for (j, a) in row.iter().enumerate().take(i + 1) {
                    if *a != 0.0 {
                        axpy(hh * a, &ks[j], &mut y);
                    }
                }
                ks.push(self.on.field(&y)?);
                if i == DP_A.len() - 1 {
                    y5 = y;
                }
            }
            let err: Vec<f64> = (0..n)
                .map(|r| hh * (0..7).map(|j| DP_E[j] * ks[j][r]).sum::<f64>())
                .collect();
            let e = scaled_err(&err, &y5, self.control.rtol);
            if e.is_nan() || e > 1.0 {
                self.rejected += 1;
                self.h = hh * (0.9 * e.powf(-0.2)).clamp(0.2, 0.9);
                if self.h < 1e-14 * (1.0 + tau) {
                    return Err(StopReason::SolverFailed {
                        message: format!(
                            "the step size collapsed to {:.2e} at τ = {tau:.4}",
                            self.h
                        ),
                    });
                }
                continue;
            }
            // Accept, retract onto M, and look at the tangent structure there.
            let mut y_new = y5;
            let gn = self.on.retract(&mut y_new)?;
            if gn > self.control.drift_limit {
                return Err(StopReason::RetractionFailed {
                    tau: tau + hh,
                    grad_norm: gn,
                });
            }
            let (f_new, here) = self.on.inspect(&y_new)?;
            if here.gap < self.control.gap_stop {
                // What the spectrum looks like there, split afresh at its largest gap.
                let after = self.on.fresh_kernel_dim(&y_new)?;
                return Err(StopReason::SingularPoint {
                    tau: tau + hh,
                    kernel_dim_before: self.here.kernel_dim,
                    kernel_dim_after: after,
                    gap: here.gap,
                });
            }
            if here.mu < self.control.mu_stop {
                return Err(StopReason::MuCollapsed {
                    tau: tau + hh,
                    mu: here.mu,
                    mu_start: self.start_mu,
                });
            }
            self.steps += 1;
            self.prev = (
                tau,
                std::mem::replace(&mut self.theta, y_new),
                std::mem::replace(&mut self.f, f_new),
            );
            self.hh = hh;
            self.tau = tau + hh;
            self.here = here;
            self.min_mu = self.min_mu.min(here.mu);
            self.min_gap = self.min_gap.min(here.gap);
            if here.gap < self.control.gap_warn && !self.gap_warned {
                self.gap_warned = true;
                self.warnings.push(format!(
                    "the spectral gap of ∇²F fell to {:.2e} at τ = {:.4} (μ = {:.2e}): the flow \
                     approaches a singular point of M, where the Morse–Bott assumption fails",
                    here.gap, self.tau, here.mu
                ));
            }
            self.h = hh * (0.9 * e.max(1e-10).powf(-0.2)).clamp(0.2, 5.0);
            return Ok(());
        }
    }

    fn stats(&self) -> SolverStats {
        SolverStats {
            method: self.method().into(),
            steps: self.steps,
            error_test_failures: self.rejected,
            ..SolverStats::default()
        }
    }
}

/// The recorded columns of the flow on M: the loss's own, then `kkt_residual,
/// spectral_gap, mu, kernel_dim` at the sample.
pub(crate) struct ManifoldColumns<'f, 'a> {
    pub(crate) on: &'f OnManifold<'a>,
    pub(crate) inner: &'f dyn Observables,
}

impl Observables for ManifoldColumns<'_, '_> {
    fn test_loss(&self, theta: &[f64]) -> Option<f64> {
        self.inner.test_loss(theta)
    }

    fn extra_columns(&self) -> Vec<String> {
        let mut columns = self.inner.extra_columns();
        columns.extend(["kkt_residual", "spectral_gap", "mu", "kernel_dim"].map(String::from));
        columns
    }

    fn extra_values(&self, theta: &[f64], out: &mut Vec<f64>) {
        self.inner.extra_values(theta, out);
        match self.on.sample(theta) {
            Ok((f, i)) => out.extend([norm(&f), i.gap, i.mu, i.kernel_dim as f64]),
            Err(_) => out.extend([f64::NAN; 4]),
        }
    }
}

/// Looks for θ_M^∞, the first state whose KKT residual is at most `tol`, and ends the flow
/// once it is found past `tau_end` (or at `tau_max`).
pub(crate) struct LimitSeeker {
    pub(crate) tol: f64,
    pub(crate) tau_end: f64,
    pub(crate) tau_max: f64,
    /// The KKT residual of the start.
    pub(crate) start_kkt: f64,
    pub(crate) limit: Option<(f64, Vec<f64>)>,
}

impl LimitSeeker {
    fn seen(&mut self, tau: f64, theta: &[f64], kkt: f64) -> Control {
        if kkt <= self.tol && self.limit.is_none() {
            self.limit = Some((tau, theta.to_vec()));
        }
        if tau >= self.tau_end && (self.limit.is_some() || tau >= self.tau_max) {
            Control::Stop(StopReason::Finished)
        } else {
            Control::Continue
        }
    }
}

impl Observer for LimitSeeker {
    fn start(&mut self, info: &RunInfo, theta0: &[f64]) -> Control {
        let kkt = self.start_kkt;
        self.seen(info.s0, theta0, kkt)
    }

    fn step(&mut self, view: &StepView<'_>) -> Control {
        let kkt = view
            .rhs
            .map_or(f64::INFINITY, |f| kkt_residual(view.theta, f));
        self.seen(view.s, view.theta, kkt)
    }
}
