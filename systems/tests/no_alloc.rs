//! The right-hand side and Jacobian evaluations of every system allocate nothing once warm
//! (their scratch comes from per-thread pools): counted by a global allocator.

use std::alloc::{GlobalAlloc, Layout, System as SysAlloc};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use grokflow_engine::la::DMat;
use grokflow_systems::registry;

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the measuring thread counts: the test harness allocates on its own threads.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if COUNTING.with(|c| c.get()) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { SysAlloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { SysAlloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { SysAlloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn derivative_evaluations_do_not_allocate() {
    for entry in registry() {
        let system = entry.default_instance().unwrap();
        let d = system.dim();
        let theta = system.theta_init().to_vec();
        let v: Vec<f64> = (0..d).map(|i| (i as f64).sin()).collect();
        let mut g = vec![0.0; d];
        let mut hv = vec![0.0; d];
        let mut h = DMat::zeros(d, d);
        let res = system.residuals().expect("least squares");
        let mut r = vec![0.0; res.count()];
        let mut jac = DMat::zeros(res.count(), d);
        let mut jt = DMat::zeros(d, res.count());
        let mut all = || {
            let _ = system.value(&theta);
            system.gradient_into(&theta, &mut g);
            system.hessian_into(&theta, h.as_mut());
            system.hvp_into(&theta, &v, &mut hv);
            res.residuals_into(&theta, &mut r);
            res.jacobian_into(&theta, jac.as_mut());
            res.jacobian_transpose_into(&theta, jt.as_mut());
        };
        // Warm the scratch pools (twice: nested buffers settle in the pool's order).
        all();
        all();
        let n = count(&mut all);
        if n > 0 {
            eprintln!(
                "{}: value {}",
                entry.name,
                count(|| {
                    let _ = system.value(&theta);
                })
            );
            eprintln!(
                "{}: gradient {}",
                entry.name,
                count(|| system.gradient_into(&theta, &mut g))
            );
            eprintln!(
                "{}: hessian {}",
                entry.name,
                count(|| system.hessian_into(&theta, h.as_mut()))
            );
            eprintln!(
                "{}: hvp {}",
                entry.name,
                count(|| system.hvp_into(&theta, &v, &mut hv))
            );
            eprintln!(
                "{}: residuals {}",
                entry.name,
                count(|| res.residuals_into(&theta, &mut r))
            );
            eprintln!(
                "{}: jacobian {}",
                entry.name,
                count(|| res.jacobian_into(&theta, jac.as_mut()))
            );
            eprintln!(
                "{}: transposed jacobian {}",
                entry.name,
                count(|| res.jacobian_transpose_into(&theta, jt.as_mut()))
            );
        }
        assert_eq!(
            n, 0,
            "{}: {n} allocations in value/gradient/Hessian/H·v/residuals/Jacobian/Jᵀ",
            entry.name
        );
    }
}
