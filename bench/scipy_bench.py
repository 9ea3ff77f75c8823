#!/usr/bin/env python3
"""Integrates grokflow's slow-time flow with scipy's solve_ivp on the very instance grokflow
ran (read from its instance JSON), with the analytic gradient and Hessian written here in
numpy, and reports cost and error against grokflow's reference end state.

Used by `cargo run --release --bin bench`; an optional dependency of the benchmark only
(numpy and scipy). Reads one JSON job on stdin:

  {"instance": path, "lambda": λ, "tau_end": T, "reference": [θ at T], "runs": [
      {"method": "BDF"|"Radau"|"LSODA", "rtol": r, "atol": a, "repeats": k, "timeout_s": s,
       "repeat_below_s": b, "repeat_for_s": f, "max_repeats": n}, ...]}

and writes one JSON result per run on stdout: method, rtol, status, message, nfev, njev,
nlu, wall_s [min, median, max over repeats], runs, max_abs_error and rel_error of the end
state. A run is repeated as grokflow's are (src/workprec.rs, `WpConfig::run_again`): k times
unless the first took over b seconds, then until the runs add up to f seconds or number n; a
failed solve is not repeated, and a repeat that runs out of time after others finished is
dropped (a first run that does counts as one, reported as a timeout).
The slow-time flow is dθ/dτ = −(∇F(θ) + λθ)/λ with Jacobian −(∇²F(θ) + λI)/λ.
"""

import json
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


def run_one(theta0, grad, hess, lam, tau_end, reference, spec):
    def f(_tau, t):
        return -(grad(t) + lam * t) / lam

    def jac(_tau, t):
        return -(hess(t) + lam * np.eye(t.size)) / lam

    deadline = spec.get("timeout_s", 300.0)
    times = []
    sol = None

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
        # in progress finishes first).
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
            run = solve_ivp(f_timed, (0.0, tau_end), theta0, method=spec["method"], rtol=spec["rtol"],
                            atol=spec["atol"], jac=jac_timed)
        except Timeout:
            if sol is not None:
                break  # keep the repeats that finished
            spent = time.perf_counter() - start
            return {"method": spec["method"], "rtol": spec["rtol"], "status": "timeout",
                    "message": f"stopped after {spent:.0f} s (budget {deadline:.0f} s)",
                    "wall_s": [spent] * 3, "runs": 1}
        sol = run
        times.append(time.perf_counter() - start)
        if not run.success:
            break  # a failed solve is reported, not timed again
    times.sort()
    end = sol.y[:, -1]
    err = end - np.asarray(reference)
    return {
        "method": spec["method"],
        "rtol": spec["rtol"],
        "status": "success" if sol.success else "failed",
        "message": sol.message,
        "nfev": int(sol.nfev),
        "njev": int(sol.njev),
        "nlu": int(sol.nlu),
        "wall_s": [times[0], times[len(times) // 2], times[-1]],
        "runs": len(times),
        "max_abs_error": float(np.max(np.abs(err))),
        "rel_error": float(np.linalg.norm(err) / max(np.linalg.norm(reference), 1e-300)),
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
