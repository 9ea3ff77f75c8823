//! report.md: the validation as a document a reader can cite (it reads the results and
//! computes nothing new).

use crate::{Outcome, SystemValidation, ValidationReport, Verdict};

fn e(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2e}")
    } else {
        "—".into()
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(e).unwrap_or_else(|| "—".into())
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed => "**FAILED**",
        Verdict::NotAssessed => "not assessed",
        Verdict::NotApplicable => "not applicable",
    }
}

fn system_section(s: &SystemValidation, figures: &[String]) -> String {
    let mut out = format!(
        "## {} (d = {}) — {}\n\n",
        s.system,
        s.dim,
        match s.outcome {
            Outcome::Failed => "**FAILED**",
            o => o.word(),
        }
    );
    out += &format!(
        "Morse–Bott constant along θ_M on [0, T₂]: μ_min = {}; where θ_M ends: μ_end = {}. \
         Limiting flow: {}{}. Grokking gap ‖Φ(θ_init) − θ_M^∞‖ = {}; ‖θ_init − Φ(θ_init)‖ = {}. \
         τ_grok of θ_M: {}. Floor of θ_M itself: {}. Wall time {:.1} s.\n\n",
        e(s.mu_min),
        e(s.mu_end),
        s.limiting_stop.describe(),
        s.tau_limit
            .map(|t| format!("; θ_M^∞ reached at τ = {t:.2}"))
            .unwrap_or_default(),
        opt(s.grokking_gap),
        e(s.fast_phase_distance),
        opt(s.tau_grok_limit),
        e(s.limiting_floor),
        s.wall_s
    );
    out += "| check | verdict | result | criterion (fixed in advance) |\n|---|---|---|---|\n";
    for c in &s.checks {
        out += &format!(
            "| {} | {} | {} | {} |\n",
            c.name,
            verdict(c.verdict),
            c.detail,
            c.criterion
        );
    }
    out += "\n| λ | E₁ | floor | E₂ on [τ₀, T₂] | floor | E₂ on [0, T₂] | KKT(θ_λ^∞) | ‖θ_λ^∞ − θ_M^∞‖ | τ_grok | steps (fast, slow, ∞) | wall s |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for r in &s.rows {
        out += &format!(
            "| {:.1e} | {} | {} | {} | {} | {} | {} | {} | {} | {}, {}, {} | {:.2} |\n",
            r.lambda,
            e(r.prop1_error),
            e(r.prop1_floor),
            e(r.prop2_error),
            e(r.prop2_floor),
            e(r.prop2_error_from_zero),
            opt(r.kkt_residual),
            opt(r.limit_distance),
            r.tau_grok
                .map(|t| format!("{t:.4}"))
                .unwrap_or_else(|| "—".into()),
            r.steps[0],
            r.steps[1],
            r.steps[2],
            r.wall_s
        );
    }
    out.push('\n');
    for f in figures {
        out += &format!("![{f}]({f})\n");
    }
    out.push('\n');
    out
}

/// The report. `figures(system)` names the figure files of each system, relative to the
/// report.
pub fn report_markdown(r: &ValidationReport, figures: impl Fn(&str) -> Vec<String>) -> String {
    let c = &r.config;
    let mut out = String::from("# grokflow validation report\n\n");
    out += &format!(
        "Overall: **{}** ({} systems, {:.0} s). grokflow {}. A check is *not assessed* when its \
         window holds too few points (the verdict is then inconclusive) and *not applicable* where \
         its hypothesis fails on the instance (θ_M^∞ not reached, a singular limit).\n\n",
        r.outcome.word(),
        r.systems.len(),
        r.wall_s,
        r.grokflow_version
    );
    if let Some(system) = &r.interrupted {
        out += &format!(
            "**Interrupted** (Ctrl-C) while validating {system}: this report holds the {} \
             systems finished before it.\n\n",
            r.systems.len()
        );
    }
    out += "What is measured (Propositions 1–4 of the paper): for each λ, against references computed once at tight tolerance — \
            the unregularised flow θ₀(t), Φ(θ_init), the limiting flow θ_M(τ) on M and its limit θ_M^∞:\n\n";
    out += &format!(
        "- **Prop 1** E₁(λ) = sup over t ∈ [0, T₁ = {}] of ‖θ_λ(t) − θ₀(t)‖ (fast time, log grid of 40 points per decade from t = 10⁻³);\n\
         - **Prop 2** E₂(λ) = sup over τ ∈ [τ₀ = {}, T₂ = {}] of ‖θ_λ(τ/λ) − θ_M(τ)‖ (201 evenly spaced τ), and the same sup on [0, T₂], which cannot vanish: at τ = 0 the two flows are θ_init and Φ(θ_init);\n\
         - **Prop 3** the KKT residual ‖P(θ)θ‖/max(‖θ‖, 1) at θ_λ^∞, the point where the slow-time λ-flow stops moving (‖∇F + λθ‖ ≤ 10⁻⁹ λ max(‖θ‖, 1));\n\
         - **Prop 4** ‖θ_λ^∞ − θ_M^∞‖, where θ_M^∞ exists;\n\
         - the **grokking gap** ‖Φ(θ_init) − θ_M^∞‖, and **τ_grok(λ)** (where the log test metric is half-way from Φ(θ_init) to τ = T₂, interpolated) against θ_M's.\n\n",
        c.t_fast, c.tau0, c.tau_end
    );
    out += &format!(
        "Floors: each λ-flow is run again at rtol/{} (working rtol {:e}, atol {:e}); a quantity's floor is its change, and for E₂ also the change of θ_M at a 100× looser tolerance (θ_M at rtol {:e}). \
         Orders are fitted (least squares in log–log) only on points more than {}× above their floor, and for Props 2–4 and τ_grok only where λ ≤ μ/{}, μ the Morse–Bott constant (smallest non-zero Hessian curvature) measured along θ_M; \
         a check with fewer than {} points in its window is *not assessed*: it neither passes nor fails.\n\n",
        c.tight_factor, c.rtol, c.atol, c.limiting_rtol, c.floor_factor, c.mu_factor, c.min_points
    );
    out += &format!(
        "λ sweep: {}.\n\n",
        c.lambdas
            .iter()
            .map(|l| format!("{l:.1e}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(d) = c.defect {
        out += &format!("**A deliberately wrong λ-flow was injected: {d:?}.**\n\n");
    }
    out += "| system | d | verdict | order of E₁ | order of E₂ (window λ ≪ μ) | order of E₂ on the whole sweep (no verdict) | μ_min on [0, T₂] | checks |\n|---|---|---|---|---|---|---|---|\n";
    for s in &r.systems {
        let counts = |v: Verdict| s.checks.iter().filter(|c| c.verdict == v).count();
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} passed, {} failed, {} not assessed, {} not applicable |\n",
            s.system,
            s.dim,
            match s.outcome {
                Outcome::Failed => "**failed**",
                o => o.word(),
            },
            s.prop1_order
                .map(|p| format!("{p:.3}"))
                .unwrap_or_else(|| "—".into()),
            s.prop2_order
                .map(|p| format!("{p:.3}"))
                .unwrap_or_else(|| "—".into()),
            s.prop2_order_all
                .map(|p| format!("{p:.3}"))
                .unwrap_or_else(|| "—".into()),
            e(s.mu_min),
            counts(Verdict::Passed),
            counts(Verdict::Failed),
            counts(Verdict::NotAssessed),
            counts(Verdict::NotApplicable)
        );
    }
    out.push('\n');
    for s in &r.systems {
        out += &system_section(s, &figures(&s.system));
    }
    out
}
