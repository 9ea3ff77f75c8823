//! Per-thread scratch buffers, so that the right-hand side and Jacobian evaluations of the
//! systems allocate nothing once warm: the loss methods take `&self` (losses are shared
//! between threads), and a buffer taken here is returned to this thread's pool afterwards.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a zeroed buffer of length `n` from this thread's pool (nested calls get
/// distinct buffers).
pub fn with_buf<R>(n: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    let mut v = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.resize(n, 0.0);
    let out = f(&mut v);
    POOL.with(|p| p.borrow_mut().push(v));
    out
}

/// Two buffers at once.
pub fn with_bufs2<R>(n1: usize, n2: usize, f: impl FnOnce(&mut [f64], &mut [f64]) -> R) -> R {
    with_buf(n1, |a| with_buf(n2, |b| f(a, b)))
}
