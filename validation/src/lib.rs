//! The theory's claims measured as λ → 0 (DESIGN.md §1, "What the theory claims").
//!
//! For each system and a geometric sweep of λ, against references computed once at tight
//! tolerances (the unregularised flow θ₀, Φ(θ_init), the limiting flow θ_M and its limit):
//! - Prop 1: E₁(λ) = sup over t ∈ \[0, T₁\] of ‖θ_λ(t) − θ₀(t)‖;
//! - Prop 2: E₂(λ) = sup over τ ∈ \[τ₀, T₂\] of ‖θ_λ(τ/λ) − θ_M(τ)‖, and the same on \[0, T₂\];
//! - Prop 3: the KKT residual of θ_λ^∞, the stationary point of F + λ‖θ‖²/2;
//! - Prop 4: ‖θ_λ^∞ − θ_M^∞‖;
//! - the grokking gap ‖Φ(θ_init) − θ_M^∞‖ and τ_grok(λ) against the limiting flow's.
//!
//! Every error comes with its solver floor (the change when the λ-flow is integrated at a
//! tolerance 100× tighter, plus the reference's own error); orders are fitted only where the
//! error is clearly above its floor and λ is small against the Morse–Bott constant μ measured
//! along θ_M. Every check passes or fails against a criterion fixed here in advance, and is
//! "not assessed" when its window holds too few points (the validation is then
//! inconclusive) and "not applicable" where its hypothesis fails on the instance (θ_M^∞ not
//! reached, a singular limit).

mod checks;
mod config;
pub mod fit;
pub mod markdown;
mod report;
mod runs;
mod system;
mod watch;

use std::time::Instant;

use grokflow_systems::System;

pub use config::{Defect, ValidationConfig, ValidationError};
pub use fit::{fit_power, PowerFit};
pub use report::{Check, LambdaRow, Outcome, SystemValidation, ValidationReport, Verdict};
pub use system::{validate_system, validate_system_watched};
pub use watch::{Unwatched, Watch};

/// Validates several systems (each in turn; each one's λ's in parallel), telling `watch`
/// how far it got. Stopped by the watch, it returns the report of the systems finished,
/// marked interrupted (and not passed).
pub fn validate(
    systems: &[(String, Box<dyn System>)],
    cfg: &ValidationConfig,
    watch: &dyn Watch,
) -> Result<ValidationReport, ValidationError> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut interrupted = None;
    for (label, system) in systems {
        match validate_system_watched(system.as_ref(), cfg, watch) {
            Ok(mut v) => {
                v.system = label.clone();
                out.push(v)
            }
            Err(ValidationError::Interrupted(s)) => {
                interrupted = Some(s);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let outcome = if interrupted.is_some() {
        Outcome::Inconclusive
    } else {
        Outcome::all(out.iter().map(|s| s.outcome))
    };
    Ok(ValidationReport {
        grokflow_version: env!("CARGO_PKG_VERSION").into(),
        config: cfg.clone(),
        passed: outcome == Outcome::Passed,
        outcome,
        systems: out,
        wall_s: started.elapsed().as_secs_f64(),
        interrupted,
    })
}

/// Systems with the names their reports go under.
pub type NamedSystems = Vec<(String, Box<dyn System>)>;

/// The instances validation runs on: every registered system's validation instance (small
/// ones with `quick`, the tests' sweep).
pub fn instances(quick: bool) -> Result<NamedSystems, grokflow_systems::SystemError> {
    let mut all: NamedSystems = grokflow_systems::registry()
        .into_iter()
        .map(|spec| Ok((spec.name.to_string(), (spec.validation)(quick)?)))
        .collect::<Result<_, _>>()?;
    // Every nonlinear default instance heads for a singular point of M, where Props 3 and 4
    // do not apply; with width equal to the true rank M is a single GL(r) orbit, a regular
    // manifold, and θ_M^∞ (the balanced factorisation) is a regular point.
    use grokflow_systems::matrix_completion::{CompletionParams, MatrixCompletion};
    let (n, sv) = if quick {
        (8, vec![4.0, 2.0])
    } else {
        (10, vec![4.0, 2.0])
    };
    let regular = MatrixCompletion::generate(&CompletionParams {
        n1: n,
        n2: n,
        width: sv.len(),
        rank: sv.len(),
        singular_values: sv,
        observed: 0.7,
        ..CompletionParams::default()
    })?;
    all.push(("matrix-completion-regular".into(), Box::new(regular)));
    Ok(all)
}
