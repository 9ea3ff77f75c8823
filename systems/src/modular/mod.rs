//! Modular addition (DESIGN.md §2.6), the task on which grokking was first seen: every pair
//! (a, b) ∈ Z_p², label c = (a + b) mod p, a seeded fraction of the p² pairs for training and
//! the rest for testing. A two-layer network on one-hot inputs, z = E₁e_a + E₂e_b ∈ R^w,
//! h = σ(z), o = Wh ∈ R^p, θ = (E₁, E₂, W), d = 3pw, with the mean squared error to one-hot
//! targets, F = Σ_train ‖o(a, b) − e_c‖²/(2N): m = Np residuals r_{q,k} = o_k − δ_{k,c_q}.
//!
//! Layout of θ: E₁'s column a (the embedding of a) at a·w..(a+1)·w, E₂'s column b after
//! p·w, W's row k (the read-out of class k) after 2p·w. With sᵢ = σ'(zᵢ):
//! ∂r_{q,k}/∂W_{k,i} = hᵢ, ∂r_{q,k}/∂E₁_{a,i} = ∂r_{q,k}/∂E₂_{b,i} = W_{k,i}sᵢ. The second
//! derivatives couple only the parameters of one hidden unit i (E₁_{·,i}, E₂_{·,i},
//! W_{·,i}): ∂²r_{q,k}/∂W_{k,i}∂E_{·,i} = sᵢ and ∂²r_{q,k}/∂E_{·,i}∂E_{·,i} = W_{k,i}σ''(zᵢ)
//! for the pair's two embedding entries, so the residual curvature is block diagonal over
//! the w hidden units (3p parameters each): the structured Newton solve applies.

use grokflow_engine::la::{axpy, MatMut};
use grokflow_engine::{Loss, Observables, Residuals, Scalar};
use serde::{Deserialize, Serialize};

use crate::data::{check_vec, gaussian_vec, permutation, rng};
use crate::derived::WithDerived;
use crate::error::{invalid_instance, invalid_params, SystemError};
use crate::params::{Kind, Param, Settings};
use crate::scratch::{with_buf, with_bufs2};
use crate::spec::SystemSpec;
use crate::system::{parse_file, System};

mod residuals;
mod twin;

pub use twin::ModularTwin;

/// The activation σ of the hidden layer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModularActivation {
    /// σ(z) = z²: its minimum-norm interpolators use Fourier features of Z_p.
    Quadratic,
    /// σ(z) = log(1 + e^{βz})/β.
    Softplus {
        /// The sharpness β > 0.
        beta: f64,
    },
}

impl ModularActivation {
    /// (σ(z), σ'(z), σ''(z)).
    pub fn eval(&self, z: f64) -> (f64, f64, f64) {
        match *self {
            ModularActivation::Quadratic => (z * z, 2.0 * z, 2.0),
            ModularActivation::Softplus { beta } => {
                let t = beta * z;
                let e = (-t.abs()).exp();
                let value = (t.max(0.0) + e.ln_1p()) / beta;
                let s = if t >= 0.0 {
                    1.0 / (1.0 + e)
                } else {
                    e / (1.0 + e)
                };
                (value, s, beta * e / ((1.0 + e) * (1.0 + e)))
            }
        }
    }

    fn generic<T: Scalar>(&self, z: T) -> T {
        match *self {
            ModularActivation::Quadratic => z * z,
            ModularActivation::Softplus { beta } => {
                let t = z * beta;
                let soft = if t.value() >= 0.0 {
                    t + (-t).exp().ln_1p()
                } else {
                    t.exp().ln_1p()
                };
                soft / beta
            }
        }
    }
}

/// Parameters of a generated instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModularParams {
    /// The modulus p.
    pub p: usize,
    /// Hidden units w.
    pub width: usize,
    /// Fraction of the p² pairs used for training.
    pub train_fraction: f64,
    /// σ.
    pub activation: ModularActivation,
    /// s: E₁, E₂ ~ N(0, s²/(2p)), W ~ N(0, s²/w).
    pub init_scale: f64,
    /// Seed of the split and of θ_init.
    pub seed: u64,
}

impl Default for ModularParams {
    /// DESIGN.md §2.6's measured setting: p = 13, w = 64, 60% of the pairs, σ(z) = z², s = 2.
    fn default() -> Self {
        Self {
            p: 13,
            width: 64,
            train_fraction: 0.6,
            activation: ModularActivation::Quadratic,
            init_scale: 2.0,
            seed: 0,
        }
    }
}

/// The largest modulus accepted (p² pairs, d = 3pw parameters).
pub const MAX_P: usize = 1000;

impl ModularParams {
    /// Checks sizes and scales.
    pub fn validate(&self) -> Result<(), SystemError> {
        if !(2..=MAX_P).contains(&self.p) {
            return Err(invalid_params(format!(
                "the modulus p must be between 2 and {MAX_P}, got {}",
                self.p
            )));
        }
        if self.width == 0 {
            return Err(invalid_params("the width must be at least 1"));
        }
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return Err(invalid_params(format!(
                "the training fraction must lie in (0, 1), got {:e}",
                self.train_fraction
            )));
        }
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return Err(invalid_params(format!(
                "the init scale must be positive and finite, got {:e}",
                self.init_scale
            )));
        }
        if let ModularActivation::Softplus { beta } = self.activation {
            if !(beta.is_finite() && beta > 0.0 && beta <= 1e6) {
                return Err(invalid_params(format!(
                    "the softplus sharpness must lie in (0, 1e6], got {beta}"
                )));
            }
        }
        Ok(())
    }

    /// The number of training pairs: round(f·p²), at least 1 and at most p² − 1.
    pub fn train_count(&self) -> usize {
        let total = self.p * self.p;
        ((self.train_fraction * total as f64).round() as usize).clamp(1, total - 1)
    }
}

/// The instance file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModularInstanceFile {
    /// Always "modular".
    pub system: String,
    /// Generation parameters, if generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<ModularParams>,
    /// The modulus p.
    pub p: usize,
    /// σ.
    pub activation: ModularActivation,
    /// Training pairs (a, b); the label is (a + b) mod p.
    pub train: Vec<(usize, usize)>,
    /// Test pairs (a, b).
    pub test: Vec<(usize, usize)>,
    /// θ_init = (E₁, E₂, W), 3pw entries in the layout of the module's documentation.
    pub theta_init: Vec<f64>,
}

/// A modular-addition instance.
#[derive(Clone, Debug)]
pub struct ModularAddition {
    params: Option<ModularParams>,
    activation: ModularActivation,
    p: usize,
    w: usize,
    train: Vec<(usize, usize)>,
    test: Vec<(usize, usize)>,
    theta_init: Vec<f64>,
}

/// What a researcher looks at in a learned modular network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModularReport {
    /// Accuracy (argmax of o) on the training pairs.
    pub train_accuracy: f64,
    /// Accuracy on the test pairs.
    pub test_accuracy: f64,
    /// The power of the embeddings E₁, E₂ at each frequency k = 0..⌊p/2⌋ of Z_p (the squared
    /// moduli of their discrete Fourier transforms along a, summed over hidden units and
    /// over k and p − k), as fractions of the total.
    pub fourier_power: Vec<f64>,
    /// The fewest frequencies holding 90% of that power, strongest first.
    pub dominant_frequencies: Vec<usize>,
}

impl ModularAddition {
    /// A generated instance.
    pub fn generate(params: &ModularParams) -> Result<Self, SystemError> {
        params.validate()?;
        let (p, w) = (params.p, params.width);
        let mut g = rng(params.seed);
        let order = permutation(&mut g, p * p);
        let pair = |q: usize| (q / p, q % p);
        let n = params.train_count();
        let mut train: Vec<(usize, usize)> = order[..n].iter().map(|&q| pair(q)).collect();
        let mut test: Vec<(usize, usize)> = order[n..].iter().map(|&q| pair(q)).collect();
        train.sort_unstable();
        test.sort_unstable();
        let s = params.init_scale;
        let mut theta = gaussian_vec(&mut g, 2 * p * w, s / (2.0 * p as f64).sqrt());
        theta.extend(gaussian_vec(&mut g, p * w, s / (w as f64).sqrt()));
        Self::new(
            Some(params.clone()),
            params.activation,
            p,
            train,
            test,
            theta,
        )
    }

    fn new(
        params: Option<ModularParams>,
        activation: ModularActivation,
        p: usize,
        train: Vec<(usize, usize)>,
        test: Vec<(usize, usize)>,
        theta_init: Vec<f64>,
    ) -> Result<Self, SystemError> {
        if !(2..=MAX_P).contains(&p) {
            return Err(invalid_instance(format!(
                "the modulus p must be between 2 and {MAX_P}, got {p}"
            )));
        }
        if train.is_empty() {
            return Err(invalid_instance("there are no training pairs"));
        }
        for (what, pairs) in [("train", &train), ("test", &test)] {
            if let Some(&(a, b)) = pairs.iter().find(|(a, b)| *a >= p || *b >= p) {
                return Err(invalid_instance(format!(
                    "{what} pair ({a}, {b}) is outside Z_{p}"
                )));
            }
        }
        if theta_init.is_empty() || !theta_init.len().is_multiple_of(3 * p) {
            return Err(invalid_instance(format!(
                "theta_init has {} entries, expected 3pw = (E₁, E₂, W) for p = {p}",
                theta_init.len()
            )));
        }
        check_vec(&theta_init, theta_init.len(), "theta_init")?;
        if let ModularActivation::Softplus { beta } = activation {
            if !(beta.is_finite() && beta > 0.0 && beta <= 1e6) {
                return Err(invalid_instance(format!(
                    "the softplus sharpness must lie in (0, 1e6], got {beta}"
                )));
            }
        }
        Ok(Self {
            params,
            activation,
            p,
            w: theta_init.len() / (3 * p),
            train,
            test,
            theta_init,
        })
    }

    /// Reads an instance file.
    pub fn from_file(f: ModularInstanceFile) -> Result<Self, SystemError> {
        if f.system != "modular" {
            return Err(invalid_instance(format!(
                "this is a \"{}\" instance, not a \"modular\" one",
                f.system
            )));
        }
        Self::new(f.params, f.activation, f.p, f.train, f.test, f.theta_init)
    }

    /// The instance file contents.
    pub fn to_file(&self) -> ModularInstanceFile {
        ModularInstanceFile {
            system: "modular".into(),
            params: self.params.clone(),
            p: self.p,
            activation: self.activation,
            train: self.train.clone(),
            test: self.test.clone(),
            theta_init: self.theta_init.clone(),
        }
    }

    /// Generation parameters.
    pub fn params(&self) -> Option<&ModularParams> {
        self.params.as_ref()
    }

    /// θ_init.
    pub fn theta_init(&self) -> &[f64] {
        &self.theta_init
    }

    /// The modulus p.
    pub fn modulus(&self) -> usize {
        self.p
    }

    /// The training pairs.
    pub fn train_pairs(&self) -> &[(usize, usize)] {
        &self.train
    }

    /// The same instance with another activation.
    pub fn with_activation(&self, activation: ModularActivation) -> Self {
        Self {
            activation,
            ..self.clone()
        }
    }

    fn e1(&self, a: usize) -> usize {
        a * self.w
    }

    fn e2(&self, b: usize) -> usize {
        (self.p + b) * self.w
    }

    fn wk(&self, k: usize) -> usize {
        (2 * self.p + k) * self.w
    }

    /// z, h = σ(z) and s = σ'(z) of pair (a, b) into the three w-buffers; returns nothing.
    fn hidden(&self, theta: &[f64], a: usize, b: usize, z: &mut [f64], h: &mut [f64], s: &mut [f64]) {
        let (e1, e2) = (self.e1(a), self.e2(b));
        for i in 0..self.w {
            z[i] = theta[e1 + i] + theta[e2 + i];
            let (v, d, _) = self.activation.eval(z[i]);
            h[i] = v;
            s[i] = d;
        }
    }

    /// o = Wh into `o` (p entries).
    fn output(&self, theta: &[f64], h: &[f64], o: &mut [f64]) {
        let w = self.w;
        for (k, ok) in o.iter_mut().enumerate() {
            let row = &theta[self.wk(k)..self.wk(k) + w];
            *ok = row.iter().zip(h).map(|(x, y)| x * y).sum();
        }
    }

    /// The network's outputs for (a, b).
    pub fn logits(&self, theta: &[f64], a: usize, b: usize) -> Vec<f64> {
        let w = self.w;
        let (mut z, mut h, mut s) = (vec![0.0; w], vec![0.0; w], vec![0.0; w]);
        self.hidden(theta, a, b, &mut z, &mut h, &mut s);
        let mut o = vec![0.0; self.p];
        self.output(theta, &h, &mut o);
        o
    }

    /// (Σ ‖o − e_c‖²/2, the number of pairs whose argmax is c) over `pairs`.
    fn score(&self, theta: &[f64], pairs: &[(usize, usize)]) -> (f64, usize) {
        let (p, w) = (self.p, self.w);
        with_bufs2(3 * w, p, |zhs, o| {
        let (z, hs) = zhs.split_at_mut(w);
        let (h, s) = hs.split_at_mut(w);
        let (mut loss, mut right) = (0.0, 0);
        for &(a, b) in pairs {
            self.hidden(theta, a, b, z, h, s);
            self.output(theta, h, o);
            let c = (a + b) % p;
            loss += o
                .iter()
                .enumerate()
                .map(|(k, v)| (v - f64::from(u8::from(k == c))).powi(2))
                .sum::<f64>()
                / 2.0;
            let best = (0..p)
                .max_by(|&x, &y| o[x].total_cmp(&o[y]))
                .unwrap_or(0);
            right += usize::from(best == c);
        }
        (loss, right)
        })
    }

    /// Accuracy on the training and on the test pairs.
    pub fn accuracies(&self, theta: &[f64]) -> (f64, f64) {
        let frac = |pairs: &[(usize, usize)]| {
            if pairs.is_empty() {
                f64::NAN
            } else {
                self.score(theta, pairs).1 as f64 / pairs.len() as f64
            }
        };
        (frac(&self.train), frac(&self.test))
    }

    /// The Fourier power of the embeddings by frequency (see [`ModularReport`]).
    pub fn fourier_power(&self, theta: &[f64]) -> Vec<f64> {
        let (p, w) = (self.p, self.w);
        let mut power = vec![0.0; p / 2 + 1];
        for base in [0, p * w] {
            for i in 0..w {
                for (k, pk) in power.iter_mut().enumerate() {
                    let (mut re, mut im) = (0.0, 0.0);
                    for a in 0..p {
                        let x = theta[base + a * w + i];
                        let phase = 2.0 * std::f64::consts::PI * (k * a) as f64 / p as f64;
                        re += x * phase.cos();
                        im -= x * phase.sin();
                    }
                    // Frequencies k and p − k carry the same power for real data.
                    let both = if k == 0 || 2 * k == p { 1.0 } else { 2.0 };
                    *pk += both * (re * re + im * im);
                }
            }
        }
        let total: f64 = power.iter().sum();
        if total > 0.0 {
            power.iter_mut().for_each(|x| *x /= total);
        }
        power
    }

    /// Accuracies and the Fourier spectrum of the embeddings.
    pub fn report(&self, theta: &[f64]) -> ModularReport {
        let (train_accuracy, test_accuracy) = self.accuracies(theta);
        let power = self.fourier_power(theta);
        let mut order: Vec<usize> = (0..power.len()).collect();
        order.sort_by(|&x, &y| power[y].total_cmp(&power[x]));
        let mut dominant = Vec::new();
        let mut held = 0.0;
        for k in order {
            if held >= 0.9 {
                break;
            }
            held += power[k];
            dominant.push(k);
        }
        ModularReport {
            train_accuracy,
            test_accuracy,
            fourier_power: power,
            dominant_frequencies: dominant,
        }
    }

    /// Walks the training pairs with their hidden layer: `f(q, a, b, c, z, h, s, o)`.
    #[allow(clippy::type_complexity)]
    fn for_pairs(
        &self,
        theta: &[f64],
        mut f: impl FnMut(usize, usize, usize, usize, &[f64], &[f64], &[f64], &[f64]),
    ) {
        let (p, w) = (self.p, self.w);
        with_bufs2(3 * w, p, |zhs, o| {
            let (z, hs) = zhs.split_at_mut(w);
            let (h, s) = hs.split_at_mut(w);
            for (q, &(a, b)) in self.train.iter().enumerate() {
                self.hidden(theta, a, b, z, h, s);
                self.output(theta, h, o);
                f(q, a, b, (a + b) % p, z, h, s, o);
            }
        })
    }

    /// out += Jᵀu for the training pairs (u: m = Np entries, pair by pair).
    fn add_jt(&self, theta: &[f64], u: &[f64], out: &mut [f64]) {
        let (p, w) = (self.p, self.w);
        with_buf(w, |g| self.for_pairs(theta, |q, a, b, _c, _z, h, s, _o| {
            let uq = &u[q * p..(q + 1) * p];
            g.fill(0.0);
            for (k, &uk) in uq.iter().enumerate() {
                let row = self.wk(k);
                axpy(uk, h, &mut out[row..row + w]);
                axpy(uk, &theta[row..row + w], g);
            }
            for i in 0..w {
                let v = g[i] * s[i];
                out[self.e1(a) + i] += v;
                out[self.e2(b) + i] += v;
            }
        }));
    }
}

impl Loss for ModularAddition {
    fn name(&self) -> &str {
        "modular"
    }

    fn dim(&self) -> usize {
        3 * self.p * self.w
    }

    fn value(&self, theta: &[f64]) -> f64 {
        self.score(theta, &self.train).0 / self.train.len() as f64
    }

    /// (1/N) Σ_q Jᵀr_q.
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        let (p, w) = (self.p, self.w);
        let scale = 1.0 / self.train.len() as f64;
        grad.fill(0.0);
        with_buf(w, |g| self.for_pairs(theta, |_q, a, b, c, _z, h, s, o| {
            g.fill(0.0);
            for k in 0..p {
                let r = (o[k] - f64::from(u8::from(k == c))) * scale;
                let row = self.wk(k);
                axpy(r, h, &mut grad[row..row + w]);
                axpy(r, &theta[row..row + w], g);
            }
            for i in 0..w {
                let v = g[i] * s[i];
                grad[self.e1(a) + i] += v;
                grad[self.e2(b) + i] += v;
            }
        }));
    }

    fn residuals(&self) -> Option<&dyn Residuals> {
        Some(self)
    }

    /// (1/N) Σ_q [Jᵀ(J v) + Σ_k r_{q,k} ∇²r_{q,k} v]: O(Npw). With δz = v_{E₁,a} + v_{E₂,b}
    /// and (Jv)_k = ⟨v_{W_k}, h⟩ + ⟨W_k, s ∘ δz⟩: W_k gets (Jv)_k h + r_k s ∘ δz; the two
    /// embeddings get s ∘ Σ_k [(Jv)_k W_k + r_k v_{W_k}] + σ''(z) ∘ (Σ_k r_k W_k) ∘ δz.
    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let (p, w) = (self.p, self.w);
        let scale = 1.0 / self.train.len() as f64;
        out.fill(0.0);
        with_bufs2(2 * w, w, |dz_emb, uw| {
        let (dz, emb) = dz_emb.split_at_mut(w);
        self.for_pairs(theta, |_q, a, b, c, z, h, s, o| {
            let (e1, e2) = (self.e1(a), self.e2(b));
            for i in 0..w {
                dz[i] = v[e1 + i] + v[e2 + i];
            }
            emb.fill(0.0);
            uw.fill(0.0);
            for k in 0..p {
                let row = self.wk(k);
                let wrow = &theta[row..row + w];
                let jv: f64 = (0..w)
                    .map(|i| v[row + i] * h[i] + wrow[i] * s[i] * dz[i])
                    .sum();
                let r = o[k] - f64::from(u8::from(k == c));
                for i in 0..w {
                    out[row + i] += scale * (jv * h[i] + r * s[i] * dz[i]);
                    emb[i] += jv * wrow[i] + r * v[row + i];
                    uw[i] += r * wrow[i];
                }
            }
            for i in 0..w {
                let (_, _, dd) = self.activation.eval(z[i]);
                let val = scale * (s[i] * emb[i] + dd * uw[i] * dz[i]);
                out[e1 + i] += val;
                out[e2 + i] += val;
            }
        });
        });
    }

    /// JᵀJ/N plus the residual curvature, assembled densely (small d).
    fn hessian_into(&self, theta: &[f64], mut h: MatMut<'_, f64>) {
        let d = self.dim();
        let m = Residuals::count(self);
        let k = 3 * self.p;
        with_bufs2(d * m, self.w * k * k, |jt, blocks| {
            self.jacobian_transpose_into(theta, MatMut::from_column_major_slice_mut(jt, d, m));
            let jt = faer::MatRef::from_column_major_slice(jt, d, m);
            let scale = 1.0 / self.train.len() as f64;
            faer::linalg::matmul::matmul(
                h.as_mut(),
                faer::Accum::Replace,
                jt,
                jt.transpose(),
                scale,
                faer::Par::Seq,
            );
            self.curvature_blocks_into(theta, blocks);
            for g in 0..self.w {
                let block = &blocks[g * k * k..(g + 1) * k * k];
                for x in 0..k {
                    for y in 0..k {
                        h[(self.unit_index(g, x), self.unit_index(g, y))] += block[x * k + y];
                    }
                }
            }
        });
    }
}

impl Observables for ModularAddition {
    /// Σ_test ‖o − e_c‖²/(2N_test): the training loss's form on the held-out pairs.
    fn test_loss(&self, theta: &[f64]) -> Option<f64> {
        if self.test.is_empty() {
            return None;
        }
        Some(self.score(theta, &self.test).0 / self.test.len() as f64)
    }

    fn extra_columns(&self) -> Vec<String> {
        vec!["train_accuracy".into(), "test_accuracy".into()]
    }

    fn extra_values(&self, theta: &[f64], out: &mut Vec<f64>) {
        let (train, test) = self.accuracies(theta);
        out.extend([train, test]);
    }
}

crate::impl_system!(
    ModularAddition,
    fn with_model(&self, s: &Settings) -> Result<Box<dyn System>, SystemError> {
        Ok(Box::new(self.with_activation(activation(s)?)))
    },
    fn derived(&self) -> Option<Result<Box<dyn System>, SystemError>> {
        let system: Box<dyn System> = Box::new(self.clone());
        Some(
            WithDerived::new(system, ModularTwin(self.clone()))
                .map(|s| Box::new(s) as Box<dyn System>),
        )
    }
);

fn activation(s: &Settings) -> Result<ModularActivation, SystemError> {
    Ok(match s.choice("activation")? {
        "softplus" => ModularActivation::Softplus {
            beta: s.real("sharpness")?,
        },
        _ => ModularActivation::Quadratic,
    })
}

/// The small instance of the tests and the quick validation: p = 5, w = 8.
fn small(seed: u64) -> Result<Box<dyn System>, SystemError> {
    Ok(Box::new(ModularAddition::generate(&ModularParams {
        p: 5,
        width: 8,
        train_fraction: 0.6,
        seed,
        ..ModularParams::default()
    })?))
}

/// Modular addition in the registry.
pub static SPEC: SystemSpec = SystemSpec {
    name: "modular",
    about: "Modular addition (a + b) mod p by a two-layer network on one-hot inputs with the \
            mean squared error: it memorises the training pairs first and generalises only \
            in the slow phase (grokking as first observed)",
    details: "Default instance: p = 13, w = 64 hidden units, 60% of the 169 pairs for \
              training, σ(z) = z², E₁, E₂ ~ N(0, s²/2p), W ~ N(0, s²/w) with s = 2 (d = 2496, \
              m = 1313 residuals); the default run ends at τ = 30. Test metric: \
              Σ‖o − e_c‖²/2 averaged over the held-out pairs (the training loss's form); \
              trajectory.csv and summary.json also carry train and test accuracy, and the \
              report the Fourier spectrum of the embeddings.",
    params: &[
        Param::new("p", "Modulus p (2 to 1000)", Kind::Count, "13"),
        Param::new("width", "Hidden units w (≥ 1)", Kind::Count, "64"),
        Param::new(
            "train-fraction",
            "Fraction of the p² pairs for training, in (0, 1)",
            Kind::Real,
            "0.6",
        ),
        Param {
            name: "activation",
            help: "Activation σ",
            kind: Kind::Choice(&[
                ("quadratic", "σ(z) = z²"),
                ("softplus", "log(1 + e^{βz})/β with sharpness --sharpness"),
            ]),
            default: Some("quadratic"),
            model: true,
        },
        Param {
            name: "sharpness",
            help: "Sharpness β of the softplus (in (0, 1e6])",
            kind: Kind::Real,
            default: Some("4"),
            model: true,
        },
        Param::new(
            "init-scale",
            "s: E₁, E₂ ~ N(0, s²/2p), W ~ N(0, s²/w) (> 0)",
            Kind::Real,
            "2",
        ),
        Param::new("seed", "Seed of the split and of θ_init", Kind::Count, "0"),
    ],
    presets: &[],
    default_tau_end: 30.0,
    limiting_mu_collapse: 1e-6,
    footprint: |s| {
        let (p, w) = (s.count("p")? as f64, s.count("width")? as f64);
        let pairs = (s.real("train-fraction")?.clamp(0.0, 1.0) * p * p).round();
        Ok(crate::spec::Footprint {
            dim: 3.0 * p * w,
            residuals: pairs * p,
            structured_products: true,
            blocks: (w, 3.0 * p),
            data_bytes: 16.0 * p * p + 24.0 * p * w,
        })
    },
    generate: |s| {
        let p = ModularParams {
            p: s.count("p")?,
            width: s.count("width")?,
            train_fraction: s.real("train-fraction")?,
            activation: activation(s)?,
            init_scale: s.real("init-scale")?,
            seed: s.seed("seed")?,
        };
        Ok(Box::new(ModularAddition::generate(&p)?))
    },
    load: |v| Ok(Box::new(ModularAddition::from_file(parse_file(v)?)?)),
    cheap: small,
    validation: |quick| {
        if quick {
            small(0)
        } else {
            // d = 336, m = 203: the size of the other systems' validation instances (the
            // default d = 2496 makes the 15-λ sweep at tight tolerance last over 20 minutes).
            Ok(Box::new(ModularAddition::generate(&ModularParams {
                p: 7,
                width: 16,
                ..ModularParams::default()
            })?))
        }
    },
    scaled: None,
    smooth_family: None,
};
