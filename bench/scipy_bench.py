#!/usr/bin/env python3
"""Integrates grokflow's slow-time flow with scipy's solve_ivp, and with SUNDIALS' CVODE
through scikit-sundae, on the very instance grokflow ran (read from its instance JSON), with
the analytic gradient and Hessian written here in numpy, and reports cost and error against
grokflow's reference end state.

Used by `cargo run --release --bin bench`; an optional dependency of the benchmark only:
`pip install numpy scipy scikit-sundae`. numpy and scipy are needed; scikit-sundae only for
the "CVODE" runs, which report status "unavailable" without it (the other methods still run).
Reads one JSON job on stdin:

  {"instance": path, "lambda": λ, "tau_end": T, "reference": [θ at T], "runs": [
      {"method": "BDF"|"Radau"|"LSODA"|"CVODE", "rtol": r, "atol": a, "repeats": k,
       "timeout_s": s, "repeat_below_s": b, "repeat_for_s": f, "max_repeats": n}, ...]}

and writes a JSON list on stdout, one result per run: method, rtol, status ("success",
"failed", "timeout", "not run" or "unavailable"), message, nfev (RHS evaluations), njev
(Jacobian evaluations), nlu (LU factorisations; for CVODE its linear-solver setups, each one
LU of I − γJ), nsteps (accepted steps), wall_s [min, median, max over repeats], runs,
max_abs_error and rel_error of the end state; CVODE's results also carry error_test_fails,
nonlin_iters and nonlin_conv_fails. A run is repeated as grokflow's are (src/workprec.rs,
`WpConfig::run_again`): k times unless the first took over b seconds, then until the runs add
up to f seconds or number n; a failed solve is not repeated, and a repeat that runs out of time
after others finished is dropped (a first run that does counts as one, reported as a timeout).
The time budget s is checked at every evaluation of the right-hand side or of the Jacobian,
for every method alike (a step in progress between two evaluations, e.g. an LU, finishes
first).

Methods: "BDF", "Radau" and "LSODA" are scipy.integrate.solve_ivp's, with the analytic
Jacobian. "CVODE" is SUNDIALS' CVODE through scikit-sundae (sksundae.cvode.CVODE): its
variable-order BDF (orders 1–5), Newton iteration with SUNDIALS' dense direct LU solver and
the same analytic Jacobian, scalar rtol and atol, no cap on the number of steps (the time
budget bounds the run), one CVODE call in CV_NORMAL mode with tstop = T, so that it ends at T
exactly. scikit-sundae's result gives nfev and njev only: nsteps, nlu and the other counters
are read from SUNDIALS' CVodeGetNum* through ctypes (`cvode_counters`), and left out where that
read cannot be verified.
The slow-time flow is dθ/dτ = −(∇F(θ) + λθ)/λ with Jacobian −(∇²F(θ) + λI)/λ.
"""

import ctypes
import gc
import glob
import json
import os
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp


def linear(inst):
    x = np.array(inst["x"], dtype=float)
    y = np.array(inst["y"], dtype=float)
    n = x.shape[0]
    h = x.T @ x / n

    def grad(t):
        return x.T @ (x @ t - y) / n

    def hess(_t):
        return h

    return np.array(inst["theta_init"], dtype=float), grad, hess


def matrix_completion(inst):
    n1, n2, r = inst["n1"], inst["n2"], inst["width"]
    obs = np.array(inst["observations"], dtype=float)
    ii, jj, mm = obs[:, 0].astype(int), obs[:, 1].astype(int), obs[:, 2]
    u0 = np.array(inst["u_init"], dtype=float)
    v0 = np.array(inst["v_init"], dtype=float)
    theta0 = np.concatenate([u0.ravel(), v0.ravel()])
    o = n1 * r

    def split(t):
        return t[:o].reshape(n1, r), t[o:].reshape(n2, r)

    def grad(t):
        u, v = split(t)
        res = np.einsum("qk,qk->q", u[ii], v[jj]) - mm
        gu = np.zeros_like(u)
        gv = np.zeros_like(v)
        np.add.at(gu, ii, res[:, None] * v[jj])
        np.add.at(gv, jj, res[:, None] * u[ii])
        return np.concatenate([gu.ravel(), gv.ravel()])

    def hess(t):
        u, v = split(t)
        res = np.einsum("qk,qk->q", u[ii], v[jj]) - mm
        d = t.size
        h = np.zeros((d, d))
        ks = np.arange(r)
        for q in range(len(res)):
            i, j = ii[q], jj[q]
            ui, vj = u[i], v[j]
            ru = i * r + ks
            rv = o + j * r + ks
            h[np.ix_(ru, ru)] += np.outer(vj, vj)
            h[np.ix_(rv, rv)] += np.outer(ui, ui)
            cross = np.outer(vj, ui) + res[q] * np.eye(r)
            # ∂²F/∂U_ik∂V_jl = U_il V_jk + R δ_kl
            h[np.ix_(ru, rv)] += cross
            h[np.ix_(rv, ru)] += cross.T
        return h

    return theta0, grad, hess


def matrix_sensing(inst):
    a = np.array(inst["a"], dtype=float)
    b = np.array(inst["b"], dtype=float)
    u0 = np.array(inst["u_init"], dtype=float)
    m = a.shape[0]
    n, r = u0.shape

    def residuals(u):
        au = np.einsum("kab,bl->kal", a, u)
        res = np.einsum("kal,al->k", au, u) - b
        return res, au

    def grad(t):
        u = t.reshape(n, r)
        res, au = residuals(u)
        return (2.0 / m) * np.einsum("k,kal->al", res, au).ravel()

    def hess(t):
        u = t.reshape(n, r)
        res, au = residuals(u)
        c = 2.0 / m
        flat = au.reshape(m, n * r)
        h = 2.0 * c * flat.T @ flat
        h += c * np.kron(np.einsum("k,kab->ab", res, a), np.eye(r))
        return h

    return u0.ravel(), grad, hess


def diagonal(inst):
    k = inst["frequencies"]
    x = np.array(inst["x"], dtype=float)
    y = np.array(inst["y"], dtype=float)
    freq = np.arange(1, k + 1)
    feats = np.empty((x.size, 2 * k))
    feats[:, 0::2] = np.cos(np.outer(x, freq))
    feats[:, 1::2] = np.sin(np.outer(x, freq))
    n, p = feats.shape
    g_mat = feats.T @ feats / n
    theta0 = np.concatenate([np.array(inst["u_init"], float), np.array(inst["v_init"], float)])

    def corr(t):
        u, v = t[:p], t[p:]
        res = feats @ (u * v) - y
        return u, v, feats.T @ res / n

    def grad(t):
        u, v, c = corr(t)
        return np.concatenate([v * c, u * c])

    def hess(t):
        u, v, c = corr(t)
        h = np.empty((2 * p, 2 * p))
        h[:p, :p] = v[:, None] * g_mat * v[None, :]
        h[p:, p:] = u[:, None] * g_mat * u[None, :]
        cross = v[:, None] * g_mat * u[None, :] + np.diag(c)
        h[:p, p:] = cross
        h[p:, :p] = cross.T
        return h

    return theta0, grad, hess


def relu(inst):
    act = inst["activation"]
    x = np.array(inst["x"], dtype=float)
    y = np.array(inst["y"], dtype=float)
    theta0 = np.array(inst["theta_init"], dtype=float)
    m = theta0.size // 3
    n = x.size

    def sigma(z):
        if act["kind"] == "relu":
            return np.maximum(z, 0.0), (z > 0).astype(float), np.zeros_like(z)
        beta = act["beta"]
        t = beta * z
        val = (np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t)))) / beta
        s = 0.5 * (1.0 + np.tanh(0.5 * t))
        return val, s, beta * s * (1.0 - s)

    def parts(t):
        a, w, b = t[:m], t[m:2 * m], t[2 * m:]
        z = np.outer(x, w) + b[None, :]
        s, ds, dds = sigma(z)
        e = s @ a - y
        return a, s, ds, dds, e

    def grad(t):
        a, s, ds, _, e = parts(t)
        ga = s.T @ e / n
        gw = (ds * x[:, None]).T @ e * a / n
        gb = ds.T @ e * a / n
        return np.concatenate([ga, gw, gb])

    def hess(t):
        a, s, ds, dds, e = parts(t)
        jac = np.concatenate([s, ds * a[None, :] * x[:, None], ds * a[None, :]], axis=1)
        h = jac.T @ jac / n
        idx = np.arange(m)
        ia, iw, ib = idx, m + idx, 2 * m + idx
        we = e / n
        h[ia, iw] += (ds * x[:, None]).T @ we
        h[iw, ia] += (ds * x[:, None]).T @ we
        h[ia, ib] += ds.T @ we
        h[ib, ia] += ds.T @ we
        h[iw, iw] += a * ((dds * (x ** 2)[:, None]).T @ we)
        h[iw, ib] += a * ((dds * x[:, None]).T @ we)
        h[ib, iw] += a * ((dds * x[:, None]).T @ we)
        h[ib, ib] += a * (dds.T @ we)
        return h

    return theta0, grad, hess


SYSTEMS = {
    "linear": linear,
    "matrix-completion": matrix_completion,
    "matrix-sensing": matrix_sensing,
    "diagonal": diagonal,
    "relu": relu,
}


class Timeout(Exception):
    pass


SOLVE_IVP_METHODS = ("BDF", "Radau", "LSODA")

# CVODE's limit on steps per call (SUNDIALS' default is 500): high enough never to bind, as
# solve_ivp has none; the time budget stops a run first.
CVODE_MAX_STEPS = 10 ** 9

_cvode_import = None  # (sksundae.cvode.CVODE or None, why it is unavailable)


def cvode_class():
    """scikit-sundae's CVODE class, imported on first use, or None and the reason."""
    global _cvode_import
    if _cvode_import is None:
        try:
            from sksundae.cvode import CVODE
            _cvode_import = (CVODE, "")
        except Exception as e:  # not installed, or built against another numpy
            _cvode_import = (None, f"scikit-sundae is not importable ({type(e).__name__}: {e}); "
                                   "pip install scikit-sundae")
    return _cvode_import


def solve_ivp_run(f, jac, theta0, tau_end, spec):
    run = solve_ivp(f, (0.0, tau_end), theta0, method=spec["method"], rtol=spec["rtol"],
                    atol=spec["atol"], jac=jac)
    # Without t_eval solve_ivp keeps θ at every accepted step (one per OdeSolver.step, LSODA's
    # included: its step is one ODEPACK step, itask = 5), so t holds 1 + the steps.
    return run.success, str(run.message), run.y[:, -1], {
        "nfev": int(run.nfev), "njev": int(run.njev), "nlu": int(run.nlu),
        "nsteps": int(run.t.size - 1)}


_cvode_lib = None


def cvode_library():
    """The SUNDIALS CVODE library that scikit-sundae's extension loaded (ctypes), or None."""
    global _cvode_lib
    if _cvode_lib is None:
        paths = []
        try:  # the copy in this process (a wheel bundles its own, a conda build links the system's)
            with open("/proc/self/maps") as fh:
                paths = [line.split(None, 5)[-1].strip() for line in fh
                         if "libsundials_cvode" in line and "/" in line]
        except OSError:
            pass
        if not paths:
            import sksundae
            root = os.path.dirname(os.path.dirname(sksundae.__file__))
            paths = glob.glob(os.path.join(root, "scikit_sundae.libs", "libsundials_cvode*"))
        lib = False
        for path in dict.fromkeys(paths):
            try:
                lib = ctypes.CDLL(path)
                lib.CVodeGetNumSteps  # noqa: B018 (the symbol must be there)
                break
            except (OSError, AttributeError):
                lib = False
        _cvode_lib = lib
    return _cvode_lib or None


def cvode_counters(solver, nfev, njev, size):
    """The counters scikit-sundae does not expose (1.2.0's result has nfev and njev only),
    read with SUNDIALS' CVodeGetNum* from the solver's CVODE memory after its run.

    The extension type keeps that pointer in a C field (`cdef void* mem`, after the object
    header and the vtable pointer) with no Python accessor. Before the pointer is used, the
    layout is checked: the object's size, the size of the system in the `NEQ` field, and the
    `aux` and `_options` fields holding the very objects the garbage collector sees it refer to;
    after, CVODE's own counts of RHS and Jacobian evaluations must equal scikit-sundae's.
    Anything amiss gives {} (the counters are then left out of the result)."""
    try:
        lib = cvode_library()
        cy = solver._CVODE__CVODE
        p = ctypes.sizeof(ctypes.c_void_p)
        if lib is None or type(cy).__basicsize__ != 16 * p:
            return {}
        base = id(cy)

        def field(k):
            return ctypes.c_void_p.from_address(base + k * p).value

        refs = gc.get_referents(cy)
        aux = [r for r in refs if type(r).__name__ == "AuxData"]
        opts = [r for r in refs if isinstance(r, dict) and "rhsfn" in r and "jacfn" in r]
        if (len(aux) != 1 or len(opts) != 1 or field(11) != id(aux[0]) or field(14) != id(opts[0])
                or ctypes.c_int.from_address(base + 10 * p).value != size):
            return {}
        mem = ctypes.c_void_p(field(3))
        if not mem.value:
            return {}

        def get(name):
            fn = getattr(lib, name)
            fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_long)]
            fn.restype = ctypes.c_int
            out = ctypes.c_long(-1)
            if fn(mem, ctypes.byref(out)) < 0:
                raise RuntimeError(name)
            return int(out.value)

        if get("CVodeGetNumRhsEvals") != nfev or get("CVodeGetNumJacEvals") != njev:
            return {}
        return {"nlu": get("CVodeGetNumLinSolvSetups"), "nsteps": get("CVodeGetNumSteps"),
                "error_test_fails": get("CVodeGetNumErrTestFails"),
                "nonlin_iters": get("CVodeGetNumNonlinSolvIters"),
                "nonlin_conv_fails": get("CVodeGetNumNonlinSolvConvFails")}
    except Exception:
        return {}


def cvode_run(f, jac, theta0, tau_end, spec):
    cvode, _ = cvode_class()

    def rhsfn(tau, t, dt):
        dt[:] = f(tau, t)

    def jacfn(tau, t, _dt, jj):
        jj[:, :] = jac(tau, t)

    try:
        solver = cvode(rhsfn, method="BDF", linsolver="dense", jacfn=jacfn, rtol=spec["rtol"],
                       atol=spec["atol"], max_num_steps=CVODE_MAX_STEPS)
        solver.init_step(0.0, theta0)
        res = solver.step(tau_end, method="normal", tstop=tau_end)
    except Timeout:
        raise
    except Exception as e:  # an error in scikit-sundae's setup: reported, the next runs go on
        return False, f"CVODE raised {type(e).__name__}: {e}", np.full(theta0.size, np.nan), {}
    stats = {"nfev": int(res.nfev), "njev": int(res.njev)}
    stats.update(cvode_counters(solver, stats["nfev"], stats["njev"], theta0.size))
    message = str(res.message)
    if not res.success:
        message += f" (CVODE flag {res.status} at τ = {float(res.t):.6g})"
    return bool(res.success), message, np.array(res.y, dtype=float), stats


def run_one(theta0, grad, hess, lam, tau_end, reference, spec):
    method = spec["method"]
    if method == "CVODE":
        cvode, why = cvode_class()
        if cvode is None:
            return {"method": method, "rtol": spec["rtol"], "status": "unavailable",
                    "message": why, "wall_s": [0.0] * 3, "runs": 0}
        solve = cvode_run
    elif method in SOLVE_IVP_METHODS:
        solve = solve_ivp_run
    else:
        raise ValueError(f"unknown method {method!r}: one of {', '.join(SOLVE_IVP_METHODS)}, CVODE")

    def f(_tau, t):
        return -(grad(t) + lam * t) / lam

    def jac(_tau, t):
        return -(hess(t) + lam * np.eye(t.size)) / lam

    deadline = spec.get("timeout_s", 300.0)
    times = []
    last = None

    def run_again():
        if not times:
            return True
        if times[0] > spec.get("repeat_below_s", 2.0):
            return False  # long runs are timed once: their spread is small against their length
        return len(times) < max(1, spec.get("repeats", 1)) or (
            len(times) < spec.get("max_repeats", 1) and sum(times) < spec.get("repeat_for_s", 0.0))

    while run_again():
        start = time.perf_counter()

        # The deadline is checked at every evaluation of f or of the Jacobian (a solver step
        # in progress finishes first). Raised in a callback, Timeout ends CVODE's run too:
        # scikit-sundae's wrappers return −1 to SUNDIALS, which stops as after a failed RHS or
        # Jacobian, and raise the exception again once CVODE has returned.
        def check(start=start):
            if time.perf_counter() - start > deadline:
                raise Timeout()

        def f_timed(tau, t):
            check()
            return f(tau, t)

        def jac_timed(tau, t):
            check()
            return jac(tau, t)

        try:
            run = solve(f_timed, jac_timed, theta0, tau_end, spec)
        except Timeout:
            if last is not None:
                break  # keep the repeats that finished
            spent = time.perf_counter() - start
            return {"method": method, "rtol": spec["rtol"], "status": "timeout",
                    "message": f"stopped after {spent:.0f} s (budget {deadline:.0f} s)",
                    "wall_s": [spent] * 3, "runs": 1}
        last = run
        times.append(time.perf_counter() - start)
        if not run[0]:
            break  # a failed solve is reported, not timed again
    times.sort()
    success, message, end, stats = last
    err = end - np.asarray(reference)
    finite = bool(np.all(np.isfinite(err)))  # JSON has no NaN or infinity
    return {
        "method": method,
        "rtol": spec["rtol"],
        "status": "success" if success else "failed",
        "message": message,
        **stats,
        "wall_s": [times[0], times[len(times) // 2], times[-1]],
        "runs": len(times),
        "max_abs_error": float(np.max(np.abs(err))) if finite else None,
        "rel_error": float(np.linalg.norm(err) / max(np.linalg.norm(reference), 1e-300))
        if finite else None,
    }


def main():
    job = json.load(sys.stdin)
    with open(job["instance"]) as fh:
        inst = json.load(fh)
    theta0, grad, hess = SYSTEMS[inst["system"]](inst)
    results = []
    timed_out = set()
    for spec in job["runs"]:
        # Runs come loose to tight per method: a method that timed out is not tried tighter.
        if spec["method"] in timed_out:
            results.append({"method": spec["method"], "rtol": spec["rtol"], "status": "not run",
                            "message": "timed out at a looser tolerance", "wall_s": [0.0] * 3})
            continue
        r = run_one(theta0, grad, hess, job["lambda"], job["tau_end"], job["reference"], spec)
        if r["status"] == "timeout":
            timed_out.add(spec["method"])
        results.append(r)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
