//! Reverse-mode differentiation: [`Var`] records every operation on a per-thread tape, and a
//! sweep back along the tape gives the adjoints (Jᵀu for any weights u on the outputs) at
//! about the cost of a few evaluations. Over dual-number values (forward over reverse) the
//! same sweep gives Hessian-vector products.

use std::cell::UnsafeCell;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use num_dual::Dual64;

use crate::autodiff::Scalar;

/// The index of a constant (not on the tape).
const CONST: u32 = u32::MAX;

/// One operation: up to two parents and the partial derivatives with respect to them.
#[derive(Clone, Copy, Debug)]
struct Node<V> {
    a: u32,
    b: u32,
    da: V,
    db: V,
}

/// The operations recorded on one thread, for one value type.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Tape<V> {
    nodes: Vec<Node<V>>,
}

/// A value type the tape can record: f64, or dual numbers for forward over reverse.
pub trait TapeValue: Scalar {
    /// Runs `f` with this thread's tape of this value type.
    #[doc(hidden)]
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R;
    /// Exactly zero (every part).
    #[doc(hidden)]
    fn is_zero(&self) -> bool;
}

thread_local! {
    static TAPE_F64: UnsafeCell<Tape<f64>> = const { UnsafeCell::new(Tape { nodes: Vec::new() }) };
    static TAPE_DUAL: UnsafeCell<Tape<Dual64>> = const { UnsafeCell::new(Tape { nodes: Vec::new() }) };
}

// SAFETY (both impls): the tape is this thread's own; `with_tape` is never re-entered, since
// the closures passed to it (a push, a clear, a sweep) do not call back into user code.
impl TapeValue for f64 {
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R {
        TAPE_F64.with(|t| f(unsafe { &mut *t.get() }))
    }
    fn is_zero(&self) -> bool {
        *self == 0.0
    }
}

impl TapeValue for Dual64 {
    fn with_tape<R>(f: impl FnOnce(&mut Tape<Self>) -> R) -> R {
        TAPE_DUAL.with(|t| f(unsafe { &mut *t.get() }))
    }
    fn is_zero(&self) -> bool {
        self.re == 0.0 && self.eps == 0.0
    }
}

/// A reverse-mode variable: its value and its place on this thread's tape.
#[derive(Clone, Copy, Debug)]
pub struct Var<V> {
    v: V,
    i: u32,
}

impl<V: TapeValue> Var<V> {
    /// The value.
    pub fn val(&self) -> V {
        self.v
    }

    fn unary(self, v: V, da: V) -> Self {
        if self.i == CONST {
            return Self { v, i: CONST };
        }
        Self::push(v, self.i, da, CONST, V::zero())
    }

    fn binary(self, other: Self, v: V, da: V, db: V) -> Self {
        if self.i == CONST && other.i == CONST {
            return Self { v, i: CONST };
        }
        Self::push(v, self.i, da, other.i, db)
    }

    fn push(v: V, a: u32, da: V, b: u32, db: V) -> Self {
        let i = V::with_tape(|t| {
            t.nodes.push(Node { a, b, da, db });
            (t.nodes.len() - 1) as u32
        });
        Self { v, i }
    }
}

/// Clears this thread's tape, puts `inputs` on it as its first nodes, and runs `f` on them
/// to fill `outputs` (initialised to constant zeros). The tape then holds the recording that
/// [`sweep`] reads.
pub(crate) fn record<V: TapeValue>(
    inputs: &[V],
    outputs: &mut Vec<Var<V>>,
    n_outputs: usize,
    f: impl FnOnce(&[Var<V>], &mut [Var<V>]),
) {
    V::with_tape(|t| {
        t.nodes.clear();
        t.nodes.extend(inputs.iter().map(|_| Node {
            a: CONST,
            b: CONST,
            da: V::zero(),
            db: V::zero(),
        }));
    });
    let vars: Vec<Var<V>> = inputs
        .iter()
        .enumerate()
        .map(|(i, &v)| Var { v, i: i as u32 })
        .collect();
    outputs.clear();
    outputs.resize(n_outputs, Var::constant_value(V::zero()));
    f(&vars, outputs);
}

impl<V: TapeValue> Var<V> {
    fn constant_value(v: V) -> Self {
        Self { v, i: CONST }
    }
}

/// The adjoints of the inputs (the first `out.len()` nodes) for weights `seeds` on recorded
/// variables, into `out`: Jᵀu for the recording's Jacobian J and u the seeds. `adj` is
/// scratch, all zeros between sweeps (each node's adjoint is reset once it is used), so a
/// sweep costs the nodes below its highest seed, not the whole tape.
pub(crate) fn sweep<V: TapeValue>(
    seeds: impl Iterator<Item = (Var<V>, V)>,
    adj: &mut Vec<V>,
    out: &mut [V],
) {
    V::with_tape(|t| {
        if adj.len() != t.nodes.len() {
            adj.clear();
            adj.resize(t.nodes.len(), V::zero());
        }
        let n = out.len();
        let mut top = n;
        for (var, w) in seeds {
            if var.i != CONST {
                adj[var.i as usize] += w;
                top = top.max(var.i as usize + 1);
            }
        }
        for k in (n..top).rev() {
            let a = adj[k];
            if a.is_zero() {
                continue;
            }
            adj[k] = V::zero();
            let node = t.nodes[k];
            if node.a != CONST {
                adj[node.a as usize] += a * node.da;
            }
            if node.b != CONST {
                adj[node.b as usize] += a * node.db;
            }
        }
        out.copy_from_slice(&adj[..n]);
        adj[..n].fill(V::zero());
    });
}

impl<V: TapeValue> Add for Var<V> {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        self.binary(o, self.v + o.v, V::one(), V::one())
    }
}

impl<V: TapeValue> Sub for Var<V> {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        self.binary(o, self.v - o.v, V::one(), -V::one())
    }
}

impl<V: TapeValue> Mul for Var<V> {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        self.binary(o, self.v * o.v, o.v, self.v)
    }
}

impl<V: TapeValue> Div for Var<V> {
    type Output = Self;
    fn div(self, o: Self) -> Self {
        let r = o.v.recip();
        let q = self.v * r;
        self.binary(o, q, r, -q * r)
    }
}

impl<V: TapeValue> Neg for Var<V> {
    type Output = Self;
    fn neg(self) -> Self {
        self.unary(-self.v, -V::one())
    }
}

impl<V: TapeValue> Add<f64> for Var<V> {
    type Output = Self;
    fn add(self, c: f64) -> Self {
        self.unary(self.v + c, V::one())
    }
}

impl<V: TapeValue> Sub<f64> for Var<V> {
    type Output = Self;
    fn sub(self, c: f64) -> Self {
        self.unary(self.v - c, V::one())
    }
}

impl<V: TapeValue> Mul<f64> for Var<V> {
    type Output = Self;
    fn mul(self, c: f64) -> Self {
        self.unary(self.v * c, V::constant(c))
    }
}

impl<V: TapeValue> Div<f64> for Var<V> {
    type Output = Self;
    fn div(self, c: f64) -> Self {
        self.unary(self.v / c, V::constant(1.0 / c))
    }
}

macro_rules! assign_ops {
    ($($tr:ident $m:ident $op:tt),*) => {$(
        impl<V: TapeValue> $tr for Var<V> {
            fn $m(&mut self, o: Self) {
                *self = *self $op o;
            }
        }
        impl<V: TapeValue> $tr<f64> for Var<V> {
            fn $m(&mut self, c: f64) {
                *self = *self $op c;
            }
        }
    )*};
}
assign_ops!(AddAssign add_assign +, SubAssign sub_assign -, MulAssign mul_assign *, DivAssign div_assign /);

impl<V: TapeValue> Sum for Var<V> {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::constant_value(V::zero()), |a, b| a + b)
    }
}

impl<V: TapeValue> Scalar for Var<V> {
    fn constant(x: f64) -> Self {
        Self::constant_value(V::constant(x))
    }
    fn value(&self) -> f64 {
        self.v.value()
    }
    fn exp(self) -> Self {
        let e = self.v.exp();
        self.unary(e, e)
    }
    fn ln(self) -> Self {
        self.unary(self.v.ln(), self.v.recip())
    }
    fn ln_1p(self) -> Self {
        self.unary(self.v.ln_1p(), (self.v + 1.0).recip())
    }
    fn exp_m1(self) -> Self {
        self.unary(self.v.exp_m1(), self.v.exp())
    }
    fn sqrt(self) -> Self {
        let s = self.v.sqrt();
        self.unary(s, (s * 2.0).recip())
    }
    fn powi(self, n: i32) -> Self {
        let d = if n == 0 {
            V::zero()
        } else {
            self.v.powi(n - 1) * f64::from(n)
        };
        self.unary(self.v.powi(n), d)
    }
    fn powf(self, p: f64) -> Self {
        self.unary(self.v.powf(p), self.v.powf(p - 1.0) * p)
    }
    fn sin(self) -> Self {
        self.unary(self.v.sin(), self.v.cos())
    }
    fn cos(self) -> Self {
        self.unary(self.v.cos(), -self.v.sin())
    }
    fn tanh(self) -> Self {
        let t = self.v.tanh();
        self.unary(t, -(t * t) + 1.0)
    }
    fn sinh(self) -> Self {
        self.unary(self.v.sinh(), self.v.cosh())
    }
    fn cosh(self) -> Self {
        self.unary(self.v.cosh(), self.v.sinh())
    }
    fn recip(self) -> Self {
        let r = self.v.recip();
        self.unary(r, -(r * r))
    }
}
