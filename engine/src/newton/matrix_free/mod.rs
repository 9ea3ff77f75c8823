//! The matrix-free Newton solve for large d: A = I − cJ applied through Hessian-vector
//! products at the linearisation point, A·x = b solved by preconditioned MINRES (A is
//! symmetric, and indefinite wherever ∇²F is far from M).
//!
//! The preconditioner is A's Gauss–Newton model P = αI + βJ_rᵀJ_r (exact on M, where the
//! residual curvature vanishes), inverted through the m×m matrix S = (α/β)I + J_rJ_rᵀ when
//! m < d (Woodbury: P⁻¹ = (I − J_rᵀS⁻¹J_r)/α) and directly otherwise; both are Cholesky
//! factorised. A loss without residuals gets plain MINRES. S stays in double precision
//! (docs/design.md).

mod minres;

use crate::flow::GradientFlow;
use crate::la::{matvec_into, DMat, Factorisation};
use crate::newton::{scipy_newton_tolerance, Factorised, NewtonMatrix, NewtonSolve, Solved};
use minres::{minres, MinresWork};

/// The relative residual at which MINRES stops for a BDF run at `rtol`: min(0.1, 1e-5/t)
/// with t scipy's Newton tolerance (docs/design.md).
fn krylov_rtol(rtol: f64) -> f64 {
    (1e-5 / scipy_newton_tolerance(rtol)).min(0.1)
}

/// MINRES gives up after this many iterations (the Newton iteration then counts as failed).
const KRYLOV_MAX_ITER: usize = 300;

/// A preconditioner several steps old in c still clusters the spectrum: it is kept while
/// c/c′ stays within this factor.
const C_RATIO: f64 = 3.0;

/// How P = αI + βJᵀJ is inverted.
enum Inverse {
    /// No residual structure: P = I.
    Identity,
    /// m < d: S = (α/β)I + JJᵀ factorised.
    Woodbury { s: Factorisation },
    /// m ≥ d: P itself factorised.
    Direct { p: Factorisation },
}

/// The Gauss–Newton preconditioner at one linearisation point and one c.
struct Preconditioner {
    c: f64,
    alpha: f64,
    inverse: Inverse,
}

/// The linearisation point θ_J and what the preconditioner needs there, kept across steps
/// like a Jacobian: the Gram matrix JJᵀ (or JᵀJ when m ≥ d) and, for residuals without
/// structured products, J itself.
pub(crate) struct MatrixFree {
    theta_j: Vec<f64>,
    /// The storage of the last factorisation, reused by the next.
    spare: Option<Factorisation>,
    /// JJᵀ (m < d) or JᵀJ (m ≥ d) at θ_J; None without residual structure.
    gram: Option<DMat>,
    /// J at θ_J when the residuals have no structured products and m < d.
    jac: Option<DMat>,
    preconditioner: Option<Preconditioner>,
    /// The relative residual at which MINRES stops ([`krylov_rtol`]).
    forcing: f64,
    work: MinresWork,
    /// Scratch: m entries (J·v) and d entries.
    u: Vec<f64>,
    tmp: Vec<f64>,
}

impl MatrixFree {
    /// For d = `n` parameters and a run at tolerance `rtol`.
    pub(crate) fn new(n: usize, rtol: f64) -> Self {
        Self {
            theta_j: vec![0.0; n],
            spare: None,
            gram: None,
            jac: None,
            preconditioner: None,
            forcing: krylov_rtol(rtol),
            work: MinresWork::new(n),
            u: Vec::new(),
            tmp: vec![0.0; n],
        }
    }
}

impl NewtonSolve for MatrixFree {
    fn name(&self) -> &'static str {
        "matrix_free"
    }

    /// Moves the linearisation point to `at` and recomputes the Gram matrix there.
    fn linearise(&mut self, flow: &GradientFlow<'_>, at: &[f64]) {
        self.theta_j.copy_from_slice(at);
        if let Some(p) = self.preconditioner.take() {
            self.spare = match p.inverse {
                Inverse::Woodbury { s: f } | Inverse::Direct { p: f } => Some(f),
                Inverse::Identity => None,
            };
        }
        let Some(res) = flow.loss().residuals() else {
            return;
        };
        let (m, d) = (res.count(), at.len());
        self.u.resize(m, 0.0);
        if m < d {
            let gram = self.gram.get_or_insert_with(|| DMat::zeros(m, m));
            if res.has_structured_products() {
                res.gram_into(at, gram.as_mut());
            } else {
                let jac = self.jac.get_or_insert_with(|| DMat::zeros(m, d));
                res.jacobian_into(at, jac.as_mut());
                gram.copy_from(&*jac * jac.transpose());
            }
        } else {
            let mut jac = DMat::zeros(m, d);
            res.jacobian_into(at, jac.as_mut());
            self.gram = Some(jac.transpose() * &jac);
        }
    }

    fn prepared_c(&self) -> Option<f64> {
        self.preconditioner.as_ref().map(|p| p.c)
    }

    /// The operator applies I − cJ exactly; only the preconditioner lags in c.
    fn tolerates(&self, c: f64, c_factorised: f64) -> bool {
        (c / c_factorised).max(c_factorised / c) <= C_RATIO
    }

    /// Builds the preconditioner for this c (nothing is factorised without residuals).
    fn factorise(&mut self, flow: &GradientFlow<'_>, c: f64) -> Factorised {
        let a = NewtonMatrix::new(flow, c);
        let recycled = match self.preconditioner.take().map(|p| p.inverse) {
            Some(Inverse::Woodbury { s: f }) | Some(Inverse::Direct { p: f }) => Some(f),
            _ => self.spare.take(),
        };
        let (inverse, done) = match (flow.loss().residuals(), &self.gram) {
            (Some(res), Some(gram)) => {
                let beta = a.beta(res.scale());
                // Woodbury: S = (α/β)I + JJᵀ; directly: P = αI + βJᵀJ.
                let woodbury = res.count() < self.theta_j.len();
                let (scale, shift) = if woodbury {
                    (1.0, a.alpha / beta)
                } else {
                    (beta, a.alpha)
                };
                let f = Factorisation::shifted(gram.as_ref(), scale, shift, recycled);
                let done = Factorised {
                    factorised: true,
                    cholesky: f.is_cholesky(),
                    fallback: false,
                };
                let inverse = if woodbury {
                    Inverse::Woodbury { s: f }
                } else {
                    Inverse::Direct { p: f }
                };
                (inverse, done)
            }
            _ => (Inverse::Identity, Factorised::default()),
        };
        self.preconditioner = Some(Preconditioner {
            c,
            alpha: a.alpha,
            inverse,
        });
        done
    }

    /// rhs ← A⁻¹ rhs approximately, A = I − cJ(θ_J), by preconditioned MINRES. The operator
    /// is taken at θ_J, the preconditioner's point, as a chord iteration takes its
    /// Jacobian (docs/design.md).
    fn solve(&mut self, flow: &GradientFlow<'_>, c: f64, rhs: &mut [f64]) -> Solved {
        let Self {
            theta_j,
            jac,
            preconditioner,
            forcing,
            work,
            u,
            tmp,
            ..
        } = self;
        let p = preconditioner
            .as_ref()
            .expect("preconditioned before solving");
        let res = flow.loss().residuals();
        let theta_j: &[f64] = theta_j;
        let a = NewtonMatrix::new(flow, c);
        let mut apply_a = |v: &[f64], out: &mut [f64]| a.apply(flow, theta_j, v, out);
        let mut apply_p_inv = |v: &[f64], out: &mut [f64]| match &p.inverse {
            Inverse::Identity => out.copy_from_slice(v),
            Inverse::Direct { p } => {
                out.copy_from_slice(v);
                p.solve_vec(out);
            }
            Inverse::Woodbury { s } => {
                let res = res.expect("Woodbury needs residuals");
                // out = (v − Jᵀ S⁻¹ J v)/α.
                match jac {
                    Some(j) => matvec_into(j.as_ref(), v, u),
                    None => res.jvp_into(theta_j, v, u),
                }
                s.solve_vec(u);
                match jac {
                    Some(j) => matvec_into(j.transpose(), u, out),
                    None => res.vjp_into(theta_j, u, out),
                }
                for (o, vi) in out.iter_mut().zip(v) {
                    *o = (vi - *o) / p.alpha;
                }
            }
        };
        tmp.copy_from_slice(rhs);
        let out = minres(
            &mut apply_a,
            &mut apply_p_inv,
            tmp,
            rhs,
            *forcing,
            KRYLOV_MAX_ITER,
            work,
        );
        Solved {
            ok: out.converged,
            krylov_iterations: out.iterations,
        }
    }

    fn exact(&self) -> bool {
        false
    }
}
