//! Symmetric matrix sensing (DESIGN.md §2.3, paper App. C, eq. 26): θ = U ∈ R^{n×r},
//! F = (1/2m) Σₖ (⟨Aₖ, UUᵀ⟩ − bₖ)² with symmetric Aₖ. With rₖ the residuals:
//! ∇F = (2/m) Σₖ rₖ AₖU and H·dU = (2/m) Σₖ [rₖ Aₖ dU + ⟨Aₖ, dU Uᵀ + U dUᵀ⟩ AₖU].
//! θ is vec(U), row by row. Since ‖U‖² = tr(UUᵀ) = ‖UUᵀ‖_*, the slow phase minimises the
//! nuclear norm of the learned PSD matrix over the interpolating set.

use faer::linalg::matmul::matmul;
use faer::{Accum, Par};
use grokflow_engine::la::{dot, DMat, MatMut, MatRef};
use grokflow_engine::{Loss, Observables, Residuals};
use serde::{Deserialize, Serialize};

use crate::data::{check_vec, default_spectrum, gaussian_mat, mat_to_rows, orthonormal_columns, rng, rows_to_mat};
use crate::error::{invalid_instance, invalid_params, SystemError};
use crate::scratch::{with_buf, with_bufs2};
use crate::derived::WithDerived;
use grokflow_engine::{ResidualModel, Scalar};
use crate::params::{Kind, Param, Settings};
use crate::spec::SystemSpec;
use crate::system::{parse_file, System};
use crate::spectral::{singular_values, MatrixReport};

/// Parameters of a generated matrix-sensing instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensingParams {
    /// Size n of the PSD matrix.
    pub n: usize,
    /// Width r of U (r = n is the fully overparameterised case the theory covers).
    pub width: usize,
    /// Rank of the ground truth M* = P diag(s) Pᵀ.
    pub rank: usize,
    /// Its eigenvalues s (length `rank`).
    pub eigenvalues: Vec<f64>,
    /// Number of measurements m (< n(n+1)/2, else the interpolating set is one point).
    pub measurements: usize,
    /// Entries of U at θ_init ~ N(0, σ²).
    pub init_scale: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for SensingParams {
    /// n = 10, r = 10, a rank-2 truth with eigenvalues 4 and 2, m = 40 Gaussian (GOE)
    /// measurements out of the 55 a symmetric 10×10 matrix has, σ_init = 1.
    fn default() -> Self {
        Self {
            n: 10,
            width: 10,
            rank: 2,
            eigenvalues: vec![4.0, 2.0],
            measurements: 40,
            init_scale: 1.0,
            seed: 0,
        }
    }
}

impl SensingParams {
    /// Checks sizes and scales.
    pub fn validate(&self) -> Result<(), SystemError> {
        if self.n == 0 || self.width == 0 {
            return Err(invalid_params(format!(
                "n and the width must be at least 1 (got n = {}, r = {})",
                self.n, self.width
            )));
        }
        if self.width > self.n {
            return Err(invalid_params(format!(
                "the width r = {} exceeds n = {}",
                self.width, self.n
            )));
        }
        if self.rank == 0 || self.rank > self.n {
            return Err(invalid_params(format!(
                "the rank must be between 1 and n = {} (got {})",
                self.n, self.rank
            )));
        }
        if self.eigenvalues.len() != self.rank
            || self
                .eigenvalues
                .iter()
                .any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(invalid_params(format!(
                "give {} positive finite eigenvalues, one per rank",
                self.rank
            )));
        }
        if self.measurements == 0 {
            return Err(invalid_params("at least one measurement is needed"));
        }
        if !(self.init_scale.is_finite() && self.init_scale >= 0.0) {
            return Err(invalid_params(format!(
                "the init scale must be finite and ≥ 0, got {:e}",
                self.init_scale
            )));
        }
        Ok(())
    }
}

/// The instance file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensingInstanceFile {
    /// Always "matrix-sensing".
    pub system: String,
    /// Generation parameters, if generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<SensingParams>,
    /// The symmetric measurement matrices Aₖ (each n rows of n).
    pub a: Vec<Vec<Vec<f64>>>,
    /// The measurements bₖ.
    pub b: Vec<f64>,
    /// U at θ_init (n rows of r).
    pub u_init: Vec<Vec<f64>>,
    /// M*, if known: the test metric is ‖UUᵀ − M*‖²_F/n².
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<Vec<Vec<f64>>>,
}

/// A matrix-sensing instance.
#[derive(Clone, Debug)]
pub struct MatrixSensing {
    params: Option<SensingParams>,
    n: usize,
    r: usize,
    a: Vec<DMat>,
    /// The Aₖ stacked, row-major: row k·n + i is row i of Aₖ. Read as an (m·n)×n matrix,
    /// its product with U is every AₖU at once (the Jacobian and the Hessian).
    a_stack: Vec<f64>,
    /// The upper triangles of the Aₖ, row-major m×n(n+1)/2: row k holds (Aₖ)_ab for
    /// a ≤ b, row by row. Both products of the gradient with the Aₖ run on it, at a little
    /// over half the operations of the full m×n² stack.
    a_packed: Vec<f64>,
    b: Vec<f64>,
    truth: Option<DMat>,
    theta_init: Vec<f64>,
}

impl MatrixSensing {
    /// A generated instance: Aₖ = (Gₖ + Gₖᵀ)/2 with Gₖ standard Gaussian, bₖ = ⟨Aₖ, M*⟩.
    pub fn generate(p: &SensingParams) -> Result<Self, SystemError> {
        p.validate()?;
        let mut g = rng(p.seed);
        let basis = orthonormal_columns(&mut g, p.n, p.rank);
        let truth = DMat::from_fn(p.n, p.n, |i, j| {
            (0..p.rank)
                .map(|k| basis[(i, k)] * p.eigenvalues[k] * basis[(j, k)])
                .sum()
        });
        let a: Vec<DMat> = (0..p.measurements)
            .map(|_| {
                let m = gaussian_mat(&mut g, p.n, p.n, 1.0);
                DMat::from_fn(p.n, p.n, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]))
            })
            .collect();
        let b = a.iter().map(|ak| inner(ak, &truth)).collect();
        let u = gaussian_mat(&mut g, p.n, p.width, p.init_scale);
        let theta_init = (0..p.n)
            .flat_map(|i| (0..p.width).map(move |k| (i, k)))
            .map(|(i, k)| u[(i, k)])
            .collect();
        Self::new(Some(p.clone()), p.n, p.width, a, b, Some(truth), theta_init)
    }

    fn new(
        params: Option<SensingParams>,
        n: usize,
        r: usize,
        a: Vec<DMat>,
        b: Vec<f64>,
        truth: Option<DMat>,
        theta_init: Vec<f64>,
    ) -> Result<Self, SystemError> {
        if a.is_empty() {
            return Err(invalid_instance("there are no measurements"));
        }
        check_vec(&b, a.len(), "b")?;
        for (k, ak) in a.iter().enumerate() {
            if ak.nrows() != n || ak.ncols() != n {
                return Err(invalid_instance(format!(
                    "a[{k}] is {}×{}, expected {n}×{n}",
                    ak.nrows(),
                    ak.ncols()
                )));
            }
            let asym = (ak - ak.transpose()).norm_l2();
            if asym > 1e-12 * ak.norm_l2().max(1.0) {
                return Err(invalid_instance(format!("a[{k}] is not symmetric")));
            }
        }
        check_vec(&theta_init, n * r, "θ_init")?;
        let a_stack = a
            .iter()
            .flat_map(|ak| (0..n).flat_map(move |i| (0..n).map(move |j| ak[(i, j)])))
            .collect();
        let a_packed = a
            .iter()
            .flat_map(|ak| (0..n).flat_map(move |i| (i..n).map(move |j| ak[(i, j)])))
            .collect();
        Ok(Self {
            params,
            n,
            r,
            a,
            a_stack,
            a_packed,
            b,
            truth,
            theta_init,
        })
    }

    /// Reads an instance file.
    pub fn from_file(f: SensingInstanceFile) -> Result<Self, SystemError> {
        if f.system != "matrix-sensing" {
            return Err(invalid_instance(format!(
                "this is a \"{}\" instance, not a \"matrix-sensing\" one",
                f.system
            )));
        }
        let n = f.u_init.len();
        let r = f.u_init.first().map(|row| row.len()).unwrap_or(0);
        if n == 0 || r == 0 {
            return Err(invalid_instance("u_init is empty"));
        }
        let u = rows_to_mat(&f.u_init, r, "u_init")?;
        let a =
            f.a.iter()
                .enumerate()
                .map(|(k, rows)| {
                    let m = rows_to_mat(rows, n, &format!("a[{k}]"))?;
                    if m.nrows() != n {
                        return Err(invalid_instance(format!(
                            "a[{k}] has {} rows, expected {n}",
                            m.nrows()
                        )));
                    }
                    Ok(m)
                })
                .collect::<Result<Vec<_>, _>>()?;
        let truth = match &f.truth {
            Some(rows) => {
                let t = rows_to_mat(rows, n, "truth")?;
                if t.nrows() != n {
                    return Err(invalid_instance(format!(
                        "truth has {} rows, expected {n}",
                        t.nrows()
                    )));
                }
                Some(t)
            }
            None => None,
        };
        let theta_init = (0..n)
            .flat_map(|i| (0..r).map(move |k| (i, k)))
            .map(|(i, k)| u[(i, k)])
            .collect();
        Self::new(f.params, n, r, a, f.b, truth, theta_init)
    }

    /// The instance file contents.
    pub fn to_file(&self) -> SensingInstanceFile {
        SensingInstanceFile {
            system: "matrix-sensing".into(),
            params: self.params.clone(),
            a: self.a.iter().map(mat_to_rows).collect(),
            b: self.b.clone(),
            u_init: mat_to_rows(&self.factor(&self.theta_init)),
            truth: self.truth.as_ref().map(mat_to_rows),
        }
    }

    /// Generation parameters.
    pub fn params(&self) -> Option<&SensingParams> {
        self.params.as_ref()
    }

    /// θ_init.
    pub fn theta_init(&self) -> &[f64] {
        &self.theta_init
    }

    /// U of θ.
    pub fn factor(&self, theta: &[f64]) -> DMat {
        DMat::from_fn(self.n, self.r, |i, k| theta[i * self.r + k])
    }

    /// UUᵀ.
    pub fn product(&self, theta: &[f64]) -> DMat {
        let u = self.factor(theta);
        &u * u.transpose()
    }

    /// Runs f(AU) with AU the m blocks AₖU (each n×r, row by row, block k at k·n·r: the
    /// m×nr matrix whose row k is vec(AₖU)) in a scratch buffer: one (m·n)×n by n×r
    /// product, what J is made of.
    fn with_products<R>(&self, theta: &[f64], f: impl FnOnce(&[f64]) -> R) -> R {
        let (n, r, m) = (self.n, self.r, self.a.len());
        with_buf(m * n * r, |au| {
            matmul(
                MatMut::from_row_major_slice_mut(au, m * n, r),
                Accum::Replace,
                MatRef::from_row_major_slice(&self.a_stack, m * n, n),
                MatRef::from_row_major_slice(theta, n, r),
                1.0,
                Par::Seq,
            );
            f(au)
        })
    }

    /// Runs f(r, AU) with AU as in [`Self::with_products`] and rₖ = ⟨Aₖ, UUᵀ⟩ − bₖ =
    /// ⟨AₖU, U⟩ − bₖ: what the Hessian is made of.
    fn with_residuals<R>(&self, theta: &[f64], f: impl FnOnce(&[f64], &[f64]) -> R) -> R {
        let (nr, m) = (self.n * self.r, self.a.len());
        self.with_products(theta, |au| {
            with_buf(m, |res| {
                for (k, rk) in res.iter_mut().enumerate() {
                    *rk = dot(&au[k * nr..(k + 1) * nr], theta) - self.b[k];
                }
                f(res, au)
            })
        })
    }

    /// Runs f(r) with the residuals alone, through P = UUᵀ: rₖ = ⟨Aₖ, P⟩ − bₖ over the
    /// upper triangles (off-diagonal entries of P counted twice), an m×n(n+1)/2
    /// matrix–vector product (m·n(n+1)/2 + n(n+1)r/2 operations, against m·n²r for every
    /// AₖU).
    fn with_residuals_only<R>(&self, theta: &[f64], f: impl FnOnce(&[f64]) -> R) -> R {
        let (n, r, m) = (self.n, self.r, self.a.len());
        let packed = n * (n + 1) / 2;
        with_bufs2(m, packed, |res, pw| {
            let mut q = 0;
            for a in 0..n {
                let ua = &theta[a * r..(a + 1) * r];
                pw[q] = dot(ua, ua);
                for b in a + 1..n {
                    pw[q + b - a] = 2.0 * dot(ua, &theta[b * r..(b + 1) * r]);
                }
                q += n - a;
            }
            for (rk, bk) in res.iter_mut().zip(&self.b) {
                *rk = -bk;
            }
            matmul(
                MatMut::from_column_major_slice_mut(res, m, 1),
                Accum::Add,
                MatRef::from_row_major_slice(&self.a_packed, m, packed),
                MatRef::from_column_major_slice(pw, packed, 1),
                1.0,
                Par::Seq,
            );
            f(res)
        })
    }

    /// Runs f(S) with S = c Σₖ wₖ Aₖ (n×n, row-major): its upper triangle is
    /// c·(m×n(n+1)/2 packed stack)ᵀ w, mirrored below.
    fn with_weighted_sum<R>(&self, c: f64, w: &[f64], f: impl FnOnce(&[f64]) -> R) -> R {
        let (n, m) = (self.n, self.a.len());
        let packed = n * (n + 1) / 2;
        with_bufs2(n * n, packed, |s, sp| {
            matmul(
                MatMut::from_column_major_slice_mut(sp, packed, 1),
                Accum::Replace,
                MatRef::from_row_major_slice(&self.a_packed, m, packed).transpose(),
                MatRef::from_column_major_slice(w, m, 1),
                c,
                Par::Seq,
            );
            let mut q = 0;
            for a in 0..n {
                for b in a..n {
                    s[a * n + b] = sp[q + b - a];
                    s[b * n + a] = sp[q + b - a];
                }
                q += n - a;
            }
            f(s)
        })
    }

    /// out += S·V for S n×n and V = vec(V) n×r, both row-major.
    fn add_product(&self, s: &[f64], v: &[f64], out: &mut [f64]) {
        let (n, r) = (self.n, self.r);
        matmul(
            MatMut::from_row_major_slice_mut(out, n, r),
            Accum::Add,
            MatRef::from_row_major_slice(s, n, n),
            MatRef::from_row_major_slice(v, n, r),
            1.0,
            Par::Seq,
        );
    }

    /// Rank, relative error and norms of UUᵀ at θ.
    pub fn report(&self, theta: &[f64]) -> MatrixReport {
        MatrixReport::new(
            &self.product(theta),
            self.truth.as_ref(),
            theta.iter().map(|x| x * x).sum(),
            1.0,
        )
    }
}

/// ⟨A, B⟩ = Σ Aᵢⱼ Bᵢⱼ.
fn inner(a: &DMat, b: &DMat) -> f64 {
    let mut s = 0.0;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            s += a[(i, j)] * b[(i, j)];
        }
    }
    s
}

impl Loss for MatrixSensing {
    fn name(&self) -> &str {
        "matrix-sensing"
    }

    fn dim(&self) -> usize {
        self.n * self.r
    }

    /// F = (1/2m) Σₖ rₖ².
    fn value(&self, theta: &[f64]) -> f64 {
        let m = self.a.len() as f64;
        self.with_residuals_only(theta, |res| {
            res.iter().map(|x| x * x).sum::<f64>() / (2.0 * m)
        })
    }

    /// ∇F = (2/m) Σₖ rₖ AₖU = S·U with S = (2/m) Σₖ rₖ Aₖ.
    fn gradient_into(&self, theta: &[f64], grad: &mut [f64]) {
        let c = 2.0 / self.a.len() as f64;
        grad.fill(0.0);
        self.with_residuals_only(theta, |res| {
            self.with_weighted_sum(c, res, |s| self.add_product(s, theta, grad))
        })
    }

    /// H[(a,k),(b,l)] = (2/m) Σ_q [r_q (A_q)_{ab} δ_{kl} + 2 (A_qU)_{ak} (A_qU)_{bl}].
    fn hessian_into(&self, theta: &[f64], mut h: MatMut<'_, f64>) {
        let (n, r) = (self.n, self.r);
        let nr = n * r;
        let c = 2.0 / self.a.len() as f64;
        h.fill(0.0);
        self.with_residuals(theta, |res, au| {
            // The Gauss–Newton part 2c·(AU)ᵀ(AU) as one matrix product: (AU) is the m×nr
            // row-major buffer, one row per measurement.
            let m = res.len();
            let gn = MatRef::from_row_major_slice(au, m, nr);
            matmul(
                h.as_mut(),
                Accum::Add,
                gn.transpose(),
                gn,
                2.0 * c,
                Par::Seq,
            );
            // The residual part S ⊗ I_r with S = c Σₖ rₖ Aₖ.
            self.with_weighted_sum(c, res, |s| {
                for a in 0..n {
                    for b in 0..n {
                        let sab = s[a * n + b];
                        for l in 0..r {
                            h[(a * r + l, b * r + l)] += sab;
                        }
                    }
                }
            })
        })
    }

    fn residuals(&self) -> Option<&dyn Residuals> {
        Some(self)
    }

    /// (2/m) Σₖ [rₖ Aₖ dU + 2⟨AₖU, dU⟩ AₖU] = S·dU + 2c·(AU)ᵀ(AU·dU), S = c Σₖ rₖ Aₖ.
    fn hvp_into(&self, theta: &[f64], v: &[f64], out: &mut [f64]) {
        let nr = self.n * self.r;
        let c = 2.0 / self.a.len() as f64;
        out.fill(0.0);
        self.with_residuals(theta, |res, au| {
            let m = res.len();
            let gn = MatRef::from_row_major_slice(au, m, nr);
            with_buf(m, |s| {
                let sm = MatMut::from_column_major_slice_mut(s, m, 1);
                matmul(
                    sm,
                    Accum::Replace,
                    gn,
                    MatRef::from_column_major_slice(v, nr, 1),
                    1.0,
                    Par::Seq,
                );
                matmul(
                    MatMut::from_column_major_slice_mut(out, nr, 1),
                    Accum::Add,
                    gn.transpose(),
                    MatRef::from_column_major_slice(s, m, 1),
                    2.0 * c,
                    Par::Seq,
                );
            });
            self.with_weighted_sum(c, res, |s| self.add_product(s, v, out));
        })
    }
}

impl Residuals for MatrixSensing {
    fn count(&self) -> usize {
        self.a.len()
    }
    fn scale(&self) -> f64 {
        self.a.len() as f64
    }
    /// rₖ = ⟨Aₖ, UUᵀ⟩ − bₖ.
    fn residuals_into(&self, theta: &[f64], r: &mut [f64]) {
        self.with_residuals_only(theta, |res| r.copy_from_slice(res))
    }
    /// R = S ⊗ I_r with S = (2/m) Σₖ rₖAₖ: block diagonal on the columns of U (θ is U row
    /// by row, so column l is the entries a·r + l).
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        let (n, r) = (self.n, self.r);
        Some(
            (0..r)
                .map(|l| (0..n).map(|a| a * r + l).collect())
                .collect(),
        )
    }
    /// Every block is S.
    fn curvature_blocks_into(&self, theta: &[f64], out: &mut [f64]) {
        let nn = self.n * self.n;
        let c = 2.0 / self.a.len() as f64;
        self.with_residuals_only(theta, |res| {
            self.with_weighted_sum(c, res, |s| {
                for block in out.chunks_exact_mut(nn) {
                    block.copy_from_slice(s);
                }
            })
        })
    }
    /// ∂rₖ/∂U = 2AₖU.
    fn jacobian_into(&self, theta: &[f64], mut jac: MatMut<'_, f64>) {
        self.jacobian_transpose_into(theta, jac.as_mut().transpose_mut());
    }

    /// Column k of Jᵀ is 2·vec(AₖU), row k of the stack AU: one contiguous pass each.
    fn jacobian_transpose_into(&self, theta: &[f64], mut jt: MatMut<'_, f64>) {
        let nr = self.n * self.r;
        self.with_products(theta, |au| {
            for (k, row) in au.chunks_exact(nr).enumerate() {
                let mut col = jt.as_mut().col_mut(k);
                for (c, &v) in row.iter().enumerate() {
                    col[c] = 2.0 * v;
                }
            }
        })
    }
}

impl Observables for MatrixSensing {
    /// ½‖UUᵀ − M*‖²_F / n²: half the mean squared error over every entry.
    fn test_loss(&self, theta: &[f64]) -> Option<f64> {
        let truth = self.truth.as_ref()?;
        Some(0.5 * (&self.product(theta) - truth).squared_norm_l2() / (self.n * self.n) as f64)
    }

    /// The eigenvalues of UUᵀ (sv_1 ≥ …), ‖U‖² and ‖UUᵀ‖_* (equal for a PSD UUᵀ).
    fn extra_columns(&self) -> Vec<String> {
        let mut c: Vec<String> = (1..=self.r).map(|k| format!("sv_{k}")).collect();
        c.push("weight_sq_norm".into());
        c.push("nuclear_norm".into());
        c
    }

    fn extra_values(&self, theta: &[f64], out: &mut Vec<f64>) {
        let sv = singular_values(&self.product(theta));
        out.extend(sv.iter().take(self.r));
        out.push(theta.iter().map(|x| x * x).sum());
        out.push(sv.iter().sum());
    }
}

crate::impl_system!(MatrixSensing,
    fn derived(&self) -> Option<Result<Box<dyn System>, SystemError>> {
        let system: Box<dyn System> = Box::new(self.clone());
        Some(WithDerived::new(system, SensingTwin(self.clone())).map(|s| Box::new(s) as Box<dyn System>))
    }
);

fn sensing_params(s: &Settings) -> Result<SensingParams, SystemError> {
    let (n, rank) = (s.count("n")?, s.count("rank")?);
    Ok(SensingParams {
        n,
        width: s.count_opt("width")?.unwrap_or(n),
        rank,
        eigenvalues: s
            .reals("eigenvalues")?
            .unwrap_or_else(|| default_spectrum(rank, &[4.0, 2.0], 1.0)),
        measurements: s.count("measurements")?,
        init_scale: s.real("init-scale")?,
        seed: s.seed("seed")?,
    })
}

/// The small instance of the tests and the quick validation.
fn small(seed: u64) -> Result<Box<dyn System>, SystemError> {
    let p = SensingParams {
        n: 5,
        width: 5,
        rank: 1,
        eigenvalues: vec![2.0],
        measurements: 10,
        seed,
        ..SensingParams::default()
    };
    Ok(Box::new(MatrixSensing::generate(&p)?))
}

/// Matrix sensing in the registry.
pub static SPEC: SystemSpec = SystemSpec {
    name: "matrix-sensing",
    about: "Symmetric matrix sensing (1/2m)Σₖ(⟨Aₖ, UUᵀ⟩ − bₖ)² (paper App. C): the slow phase \
            lowers ‖U‖² = ‖UUᵀ‖_*",
    details: "Default instance: n = r = 10, rank 2 with eigenvalues 4, 2, m = 40 GOE \
              measurements, U ~ N(0, 1). Test metric: ½‖UUᵀ − M*‖²_F/n², half the mean squared error over \
              every entry.",
    params: &[
        Param::new("n", "Size n of the matrix (≥ 1)", Kind::Count, "10"),
        Param {
            name: "width",
            help: "Width r of U (≥ 1) [default: n]",
            kind: Kind::Count,
            default: None,
            model: false,
        },
        Param::new("rank", "Rank of the ground truth (1 to n)", Kind::Count, "2"),
        Param {
            name: "eigenvalues",
            help: "Its eigenvalues, comma separated [default: 4,2, then 1 for each further rank]",
            kind: Kind::Reals,
            default: None,
            model: false,
        },
        Param::new(
            "measurements",
            "Number of Gaussian measurements m (< n(n+1)/2)",
            Kind::Count,
            "40",
        ),
        Param::new("init-scale", "Entries of U at θ_init ~ N(0, σ²), σ = init-scale", Kind::Real, "1"),
        Param::new("seed", "Seed of the instance generator", Kind::Count, "0"),
    ],
    presets: &[],
    default_tau_end: 10.0,
    limiting_mu_collapse: 0.0,
    footprint: |s| {
        let n = s.count("n")? as f64;
        let r = s.count_opt("width")?.map_or(n, |w| w as f64);
        let m = s.count("measurements")? as f64;
        Ok(crate::spec::Footprint {
            dim: n * r,
            residuals: m,
            structured_products: false,
            blocks: (r, n),
            data_bytes: 8.0 * (m * n * n + 2.0 * n * n + n * r),
        })
    },
    generate: |s| Ok(Box::new(MatrixSensing::generate(&sensing_params(s)?)?)),
    load: |v| Ok(Box::new(MatrixSensing::from_file(parse_file(v)?)?)),
    cheap: small,
    validation: |quick| {
        if quick {
            // Seed 5: μ along θ_M stays above 8e-4, so Prop 2's window λ ≪ μ holds from 1e-5.
            small(5)
        } else {
            Ok(Box::new(MatrixSensing::generate(&SensingParams::default())?))
        }
    },
    scaled: None,
    smooth_family: None,
};

/// Matrix sensing's residuals written once, generically: its derived twin.
pub struct SensingTwin(pub MatrixSensing);

impl ResidualModel for SensingTwin {
    fn name(&self) -> &str {
        "matrix-sensing"
    }
    fn dim(&self) -> usize {
        self.0.n * self.0.r
    }
    fn count(&self) -> usize {
        self.0.a.len()
    }
    /// rₖ = ⟨Aₖ, UUᵀ⟩ − bₖ, from G = UUᵀ's upper triangle.
    fn residuals<T: Scalar>(&self, theta: &[T], res: &mut [T]) {
        let (n, r) = (self.0.n, self.0.r);
        let mut g = vec![T::zero(); n * n];
        for a in 0..n {
            for b in a..n {
                let mut s = T::zero();
                for l in 0..r {
                    s += theta[a * r + l] * theta[b * r + l];
                }
                g[a * n + b] = s;
            }
        }
        for ((rk, ak), bk) in res.iter_mut().zip(&self.0.a).zip(&self.0.b) {
            let mut s = T::zero();
            for a in 0..n {
                s += g[a * n + a] * ak[(a, a)];
                for b in a + 1..n {
                    s += g[a * n + b] * (2.0 * ak[(a, b)]);
                }
            }
            *rk = s - *bk;
        }
    }
    fn curvature_groups(&self) -> Option<Vec<Vec<usize>>> {
        Residuals::curvature_groups(&self.0)
    }
}
