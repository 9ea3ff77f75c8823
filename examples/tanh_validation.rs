//! Your own loss through a λ sweep and the validation report: the tanh network of
//! tanh_network.rs
//! at λ = 1e-2 … 1e-6 (the grokking time in slow time τ_grok = λ·t_grok against λ), then the
//! theory's claims measured as λ → 0 (fitted orders of E₁ and E₂, report.md and figures).
//!
//! cargo run --release --example tanh_validation -- --out runs/tanh-validation

#[path = "tanh_network.rs"]
mod tanh_network;

use grokflow::{RunConfig, ValidationConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = std::path::PathBuf::from(
        args.iter()
            .position(|a| a == "--out")
            .and_then(|i| args.get(i + 1))
            .map_or("runs/tanh-validation", String::as_str),
    );
    let model = tanh_network::model()?;
    println!(
        "{:>8} {:>7} {:>11} {:>10}",
        "λ", "steps", "test end", "τ_grok"
    );
    for lambda in [1e-2, 1e-3, 1e-4, 1e-5, 1e-6] {
        let dir = out.join(format!("lambda{lambda:e}"));
        let cfg = RunConfig::default().lambda(lambda).out(dir).quiet();
        let record = grokflow::run(&model, &cfg)?;
        record.write(&model, &cfg)?;
        let s = &record.summary;
        let test = s.final_state.test_loss.unwrap_or(f64::NAN);
        let tau_grok = s
            .grokking
            .tau_grok
            .map_or("—".into(), |t| format!("{t:.3}"));
        println!(
            "{lambda:>8.0e} {:>7} {test:>11.3e} {tau_grok:>10}",
            s.stats.steps
        );
    }
    // θ_M heads for one neuron, a singular point of M: μ falls below 1e-6 by τ = 3, so Prop 2
    // is measured on τ ∈ [0.1, 1.2], where μ ≥ 1e-3, and on λ ≤ μ/100.
    let cfg = ValidationConfig {
        lambdas: (2..=16).map(|k| 10f64.powf(-(k as f64) / 2.0)).collect(),
        tau0: 0.1,
        tau_end: 1.2,
        mu_factor: 100.0,
        ..ValidationConfig::default()
    };
    let report = grokflow::validate::validate_model(&model, &cfg, &out.join("report"), true)?;
    let v = &report.systems[0];
    let order = |p: Option<f64>| p.map_or("not assessed".into(), |p| format!("{p:.3}"));
    println!(
        "E₁ order {}, E₂ order {}",
        order(v.prop1_order),
        order(v.prop2_order)
    );
    for c in &v.checks {
        println!("  {:<9} {:?}: {}", c.name, c.verdict, c.detail);
    }
    println!("report: {}", out.join("report/report.md").display());
    Ok(())
}
