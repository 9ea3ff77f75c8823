//! Your own loss, written once as generic residuals: a two-layer tanh network
//! f(x) = Σⱼ aⱼ tanh(wⱼx + bⱼ) fitted to tanh(2x) at six points. grokflow derives every
//! derivative, runs both phases at λ = 1e-4 with the limiting flow on M, and writes a full
//! run directory (summary.json, trajectory.csv, states.json, limiting_flow.csv, figures).
//!
//! cargo run --release --example tanh_network -- --out runs/tanh-network

use grokflow::{Model, ModelError, ResidualModel, RunConfig, Scalar};

pub struct TanhNet {
    x: Vec<f64>,
    width: usize,
}

impl TanhNet {
    pub fn predict<T: Scalar>(&self, theta: &[T], x: f64) -> T {
        let m = self.width;
        (0..m)
            .map(|j| theta[j] * (theta[m + j] * x + theta[2 * m + j]).tanh())
            .sum()
    }
}

#[rustfmt::skip]
impl ResidualModel for TanhNet {
    fn name(&self) -> &str { "tanh-network" }
    fn dim(&self) -> usize { 3 * self.width }
    fn count(&self) -> usize { self.x.len() }
    fn residuals<T: Scalar>(&self, theta: &[T], r: &mut [T]) {
        for (ri, &x) in r.iter_mut().zip(&self.x) {
            *ri = self.predict(theta, x) - (2.0 * x).tanh();
        }
    }
}

/// 20 neurons, θ_init ~ N(0, 1.3²) from seed 7; the test loss is the mean squared error
/// against tanh(2x) on 301 points of [−1.5, 1.5]; the learned function is drawn.
pub fn model() -> Result<Model, ModelError> {
    let net = || TanhNet {
        x: vec![-1.2, -0.7, -0.2, 0.3, 0.8, 1.3],
        width: 20,
    };
    let (test, draw, points) = (
        net(),
        net(),
        (net().x, net().x.iter().map(|x| (2.0 * x).tanh()).collect()),
    );
    let mse = move |theta: &[f64]| {
        let sq = (0..301)
            .map(|k| -1.5 + 0.01 * k as f64)
            .map(|x| (test.predict(theta, x) - (2.0 * x).tanh()).powi(2));
        sq.sum::<f64>() / 301.0
    };
    Model::least_squares(net(), grokflow::gaussian(7, 60, 1.3))?
        .test_loss(mse)
        .function(
            (-1.5, 1.5),
            move |theta, x| draw.predict(theta, x),
            points,
            Some(|x| (2.0 * x).tanh()),
        )
        .checked()
}

#[allow(dead_code)] // tanh_validation.rs borrows model() from this file
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1));
    let out = out.map_or("runs/tanh-network", String::as_str);
    let cfg = RunConfig::default().lambda(1e-4).limiting_flow().out(out);
    let model = model()?;
    let record = grokflow::run(&model, &cfg)?;
    let files = record.write(&model, &cfg)?;
    print!("{}", record.text(&files, &cfg.out));
    Ok(())
}
