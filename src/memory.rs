//! What a run will need in memory, estimated from the sizes of its instance and its method
//! before anything is allocated, against what the machine has available: a run that cannot
//! fit is refused with what it needs and what would lower it, instead of failing in an
//! allocation (or being killed) half-way.

use anyhow::{bail, Result};
use grokflow_engine::{LinearSolver, Method, MATRIX_FREE_MIN_DIM};
use grokflow_systems::{Footprint, System};

use crate::run::RunConfig;

/// Bytes available to new allocations (MemAvailable), where the system says.
pub fn available_bytes() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The footprint of a built instance (one read from a file).
pub fn footprint_of(system: &dyn System) -> Footprint {
    let d = system.dim() as f64;
    let res = system.residuals();
    let blocks = res
        .and_then(|r| r.curvature_groups())
        .map_or((0.0, 0.0), |g| {
            let size = g.iter().map(Vec::len).max().unwrap_or(0);
            (g.len() as f64, size as f64)
        });
    Footprint {
        dim: d,
        residuals: res.map_or(0.0, |r| r.count() as f64),
        structured_products: res.is_some_and(|r| r.has_structured_products()),
        blocks,
        data_bytes: 0.0,
    }
}

/// The linear solver a BDF run on `f` uses (what the engine's `LinearSolver::choose` makes of
/// these sizes).
fn solver(f: &Footprint, choice: LinearSolver) -> LinearSolver {
    let (d, m) = (f.dim, f.residuals);
    let residuals = m > 0.0 && m < d;
    match choice {
        LinearSolver::Auto
            if residuals && f.structured_products && d >= MATRIX_FREE_MIN_DIM as f64 =>
        {
            LinearSolver::MatrixFree
        }
        LinearSolver::Auto => {
            let (count, size) = f.blocks;
            let gram = if count == 1.0 { 4.0 * m } else { m * d };
            let structured =
                m * (gram + m * m / 3.0 + count * size * size) + 2.0 * count * size.powi(3);
            if residuals && count > 0.0 && structured < d * d * d / 3.0 {
                LinearSolver::Structured
            } else {
                LinearSolver::Dense
            }
        }
        other => other,
    }
}

/// The bytes of a linear solver's matrices.
fn solver_bytes(f: &Footprint, solver: LinearSolver) -> f64 {
    let (d, m) = (f.dim, f.residuals);
    let (count, size) = f.blocks;
    8.0 * match solver {
        LinearSolver::MatrixFree if m > 0.0 && m < d => {
            2.0 * m * m + if f.structured_products { 0.0 } else { m * d } + 12.0 * d
        }
        LinearSolver::MatrixFree => 12.0 * d,
        LinearSolver::Structured => 3.0 * m * m + 2.0 * m * d + 2.0 * count * size * size,
        _ => 3.0 * d * d,
    }
}

/// What a run of `cfg` on an instance of footprint `f` needs, bytes, and its largest part.
pub fn run_bytes(f: &Footprint, cfg: &RunConfig) -> (f64, &'static str) {
    let (d, m) = (f.dim, f.residuals);
    let samples = cfg.per_decade as f64 * (cfg.t_end() / cfg.t_min).max(1.0).log10() + 3.0;
    let states = 8.0
        * d
        * if cfg.limiting.is_some() {
            2.0 * samples
        } else {
            4.0
        };
    let (solve, what) = match cfg.method {
        Method::GradientDescent { .. } | Method::Tsit45 => (8.0 * 8.0 * d, "the state vectors"),
        Method::Bdf => {
            let s = solver(f, cfg.linear_solver);
            let what = match s {
                LinearSolver::MatrixFree => "the matrix-free solve's m×m preconditioner",
                LinearSolver::Structured => "the structured solve's m×m and m×d matrices",
                _ => "the dense d×d Hessian and Newton matrix",
            };
            (solver_bytes(f, s), what)
        }
        _ => (8.0 * 4.0 * d * d, "the dense d×d Newton matrix"),
    };
    let limiting = if cfg.limiting.is_some() && m > 0.0 {
        8.0 * (3.0 * m.min(d) * m.min(d) + if f.structured_products { 0.0 } else { m * d })
    } else {
        0.0
    };
    let parts = [
        (solve, what),
        (f.data_bytes, "the instance's data"),
        (states, "the recorded states"),
        (limiting, "the limiting flow's factors"),
    ];
    let largest = parts
        .iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(what, |p| p.1);
    (f.data_bytes + solve + states + limiting, largest)
}

fn gb(bytes: f64) -> String {
    if bytes >= 1e9 {
        format!("{:.1} GB", bytes / 1e9)
    } else {
        format!("{:.0} MB", bytes / 1e6)
    }
}

/// Refuses a run of `cfg` on `f` (`copies` of it at once, in a sweep) that needs more than
/// 90% of the available memory, saying what it needs and what would lower it.
pub fn check(f: &Footprint, cfg: &RunConfig, copies: usize) -> Result<()> {
    let Some(available) = available_bytes() else {
        return Ok(());
    };
    let (one, what) = run_bytes(f, cfg);
    let need = one * copies.max(1) as f64;
    if need <= 0.9 * available {
        return Ok(());
    }
    let mut hint = String::from("a smaller instance");
    if cfg.method == Method::Bdf && f.residuals > 0.0 && f.residuals < f.dim {
        let mf = solver_bytes(f, LinearSolver::MatrixFree) + f.data_bytes;
        if mf < 0.9 * available && solver(f, cfg.linear_solver) != LinearSolver::MatrixFree {
            hint = format!(
                "--linear-solver matrix-free (about {}) or a smaller instance",
                gb(mf)
            );
        }
    }
    if copies > 1 {
        hint += ", or fewer --threads";
    }
    bail!(
        "this run needs about {} ({} × d = {:.0}, m = {:.0}: mostly {what}) but {} of memory are \
         available; use {hint}",
        gb(need),
        copies.max(1),
        f.dim,
        f.residuals,
        gb(available)
    )
}
