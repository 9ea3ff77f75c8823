//! The dense Newton solve: the flow's Jacobian assembled, A = I − cJ factorised (Cholesky,
//! LU fallback).

use crate::flow::GradientFlow;
use crate::la::{DMat, Factorisation};
use crate::newton::{direct_tolerates, Factorised, NewtonMatrix, NewtonSolve, Solved};

/// The Jacobian at the linearisation point and the factorisation of I − cJ for one c.
pub(crate) struct Dense {
    jac: DMat,
    factor: Option<(f64, Factorisation)>,
}

impl Dense {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            jac: DMat::zeros(n, n),
            factor: None,
        }
    }
}

impl NewtonSolve for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn linearise(&mut self, flow: &GradientFlow<'_>, at: &[f64]) {
        flow.jacobian_into(at, self.jac.as_mut());
        self.factor = None;
    }

    fn prepared_c(&self) -> Option<f64> {
        self.factor.as_ref().map(|(c, _)| *c)
    }

    fn tolerates(&self, c: f64, c_factorised: f64) -> bool {
        direct_tolerates(c, c_factorised)
    }

    fn factorise(&mut self, flow: &GradientFlow<'_>, c: f64) -> Factorised {
        let recycled = self.factor.take().map(|(_, f)| f);
        let f = NewtonMatrix::new(flow, c).factorise(&self.jac, recycled);
        let cholesky = f.is_cholesky();
        self.factor = Some((c, f));
        Factorised {
            factorised: true,
            cholesky,
            fallback: false,
        }
    }

    fn solve(&mut self, _flow: &GradientFlow<'_>, _c: f64, rhs: &mut [f64]) -> Solved {
        let (_, f) = self
            .factor
            .as_ref()
            .expect("factorised before the corrector");
        f.solve_vec(rhs);
        Solved {
            ok: true,
            krylov_iterations: 0,
        }
    }
}
