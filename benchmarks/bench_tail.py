"""Benchmark: learning curves from a top-k spectrum with its tail measure, against the full
spectrum.

Three problems at N = 4000 (``--n``): the ReLU NNGP (depth 2, W_std² = 2, b_std = 0.1) on the
synthetic power-law task, the same kernel on inputs uniform in [0, 1]^30 (labels: sign of a noisy
linear function), and a depth-4 erf NNGP on Gaussian inputs. For each: the Gram matrix, the full
spectrum by dense ``eigh`` (the reference), the top-k spectrum (``--k``, default 256) with the
tail measure (the defaults: 32 Lanczos steps from the target, 32 probes in one block of 8
steps) and without it (the top-k path as it was: the modes beyond k unlearnable). Every theory
(EK at σ² = 1e-3; the paper's RG, the corrected RG and the spectral bias at σ² = 1e-8) on 16 η
from 2 to N/2: the largest relative error against the full spectrum, where the RG's cutoff lies
inside the top k, and how the error estimate of ``rgjax.truncation_error`` compares with the
true error (the smallest ratio estimate / true error over the η: below 1 means optimistic).
Times: dense ``eigh``, top-k alone, top-k + tail (warm, after one compiling call), and the first
call of each.

Then the same pipeline at N = 16,000 (``--big``) on the uniform problem: no dense reference; the
error estimates and the times. Last, the uniform problem at N = 1500 with k = 200 and η ≤ 100
(default settings, five probe seeds): every theory against the full spectrum.

    python benchmarks/bench_tail.py                 # ~6 min on 2 cores
    python benchmarks/bench_tail.py --n 1500 --big 0   # quick

Writes ``benchmarks/results/tail_<backend>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _common import block, compile_time, save  # noqa: E402  (float64 on import)

import rgjax  # noqa: E402
from rgjax import truncation  # noqa: E402

THEORIES = (("ek", "ek", False, 1e-3), ("rg", "rg", False, 1e-8), ("rg_dof", "rg", True, 1e-8),
            ("spectral_bias", "spectral_bias", False, 1e-8))


def problem(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, rgjax.Kernel]:
    rng = np.random.default_rng(seed)
    relu = rgjax.fc(2, "relu", W_std=2**0.5, b_std=0.1)
    if name == "powerlaw":
        task = rgjax.load_task("synthetic-powerlaw", pool_size=n, seed=seed, verbose=False)
        return np.asarray(task.x), np.asarray(task.y), relu
    if name == "uniform30":
        x = rng.uniform(size=(n, 30))
        return x, np.sign(rng.normal(size=n) + x[:, 0] - 0.5), relu
    x = rng.normal(size=(n, 10))
    return x, np.tanh(x[:, 0] + 0.5 * x[:, 1] * x[:, 2]), rgjax.fc(4, "erf", W_std=1.5, b_std=0.05)


def curves(spec: rgjax.Spectrum, eta: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per theory: (curve, error estimate)."""
    out = {}
    for key, theory, dof, s2 in THEORIES:
        value = {"ek": lambda: rgjax.mse_ek(spec, eta, s2),
                 "rg": lambda: rgjax.mse_rg(spec, eta, s2, dof_correction=dof),
                 "spectral_bias": lambda: rgjax.mse_spectral_bias(spec, eta, s2)}[theory]()
        err = truncation.truncation_error(spec, eta, s2, theory=theory, dof_correction=dof)
        out[key] = (np.asarray(value), np.asarray(err))
    return out


def timed_spectrum(fn) -> tuple[float, float, rgjax.Spectrum]:
    first = compile_time(fn)
    t0 = time.perf_counter()
    spec = block(fn())
    return first, time.perf_counter() - t0, spec


def compare(name: str, n: int, k: int) -> dict:
    x, y, kernel = problem(name, n)
    K = block(jax.device_put(rgjax.gram(kernel, x, progress=False)))
    eta = np.geomspace(2.0, n / 2, 16)
    dense_first, dense_s, full = timed_spectrum(lambda: rgjax.from_gram(K, y))
    topk_first, topk_s, bare = timed_spectrum(
        lambda: rgjax.from_gram(K, y, k, method="topk", tail_steps=0))
    tail_first, tail_s, top = timed_spectrum(lambda: rgjax.from_gram(K, y, k, method="topk"))
    ref, with_tail, without = curves(full, eta), curves(top, eta), curves(bare, eta)
    lam_next = float(full.eigenvalues[k])
    rho = eta * lam_next / np.asarray(rgjax.kappa(full, eta, 1e-8))  # ηλ_{k+1}/κ
    rows = {}
    for key, *_ in THEORIES:
        b = ref[key][0]
        a, err = with_tail[key]
        c = without[key][0]
        ok = np.isfinite(err) & np.isfinite(b)
        true = np.abs(a - b) / np.abs(b)
        est = err / np.abs(b)
        rows[key] = {
            "max_rel_err_tail": float(np.max(true[ok])),
            "max_rel_err_tail_rho_le_1": float(np.max(true[ok & (rho <= 1)])),
            "max_rel_err_no_tail": float(np.max((np.abs(c - b) / np.abs(b))[ok])),
            "max_rel_estimate": float(np.max(est[ok])),
            "min_estimate_over_true": float(np.min(est[ok] / np.maximum(true[ok], 1e-300))),
            "rel_err_by_eta": true.tolist(), "rel_estimate_by_eta": est.tolist(),
            "eta_inside": eta[ok].tolist(),
        }
    return {"problem": name, "n": n, "k": k, "etas": eta.tolist(),
            "eta_lambda_next_over_kappa": rho.tolist(),
            "dense_eigh_s": dense_s, "topk_s": topk_s, "topk_tail_s": tail_s,
            "dense_first_s": dense_first, "topk_first_s": topk_first,
            "topk_tail_first_s": tail_first,
            "cost_tail_over_topk": tail_s / topk_s, "speedup_vs_dense": dense_s / tail_s,
            "theories": rows}


def big(n: int, k: int) -> dict:
    x, y, kernel = problem("uniform30", n)
    K = block(jax.device_put(rgjax.gram(kernel, x, progress=False)))
    eta = np.geomspace(2.0, n / 2, 16)
    topk_first, topk_s, _ = timed_spectrum(
        lambda: rgjax.from_gram(K, y, k, method="topk", tail_steps=0))
    tail_first, tail_s, top = timed_spectrum(lambda: rgjax.from_gram(K, y, k, method="topk"))
    est = {key: (err / np.abs(v)).tolist() for key, (v, err) in curves(top, eta).items()}
    return {"problem": "uniform30", "n": n, "k": k, "etas": eta.tolist(), "topk_s": topk_s,
            "topk_tail_s": tail_s, "topk_first_s": topk_first, "topk_tail_first_s": tail_first,
            "cost_tail_over_topk": tail_s / topk_s, "rel_estimate_by_eta": est}


def small(n: int = 1500, k: int = 200, seeds: int = 5) -> dict:
    """The uniform problem at N = 1500, k = 200, η ≤ 100: worst relative error over probe seeds."""
    x, y, kernel = problem("uniform30", n)
    K = block(jax.device_put(rgjax.gram(kernel, x, progress=False)))
    full = rgjax.from_gram(K, y)
    eta = np.array([10.0, 20.0, 40.0, 70.0, 100.0])
    worst: dict[str, float] = {}
    for seed in range(seeds):
        top = rgjax.from_gram(K, y, k, method="topk", key=seed)
        for key, theory, dof, s2 in THEORIES:
            f = {"ek": lambda s, s2=s2: rgjax.mse_ek(s, eta, s2),
                 "rg": lambda s, s2=s2, dof=dof: rgjax.mse_rg(s, eta, s2, dof_correction=dof),
                 "spectral_bias": lambda s, s2=s2: rgjax.mse_spectral_bias(s, eta, s2)}[theory]
            err = np.abs(np.asarray(f(top)) / np.asarray(f(full)) - 1)
            worst[key] = max(worst.get(key, 0.0), float(np.nanmax(err)))
    return {"problem": "uniform30", "n": n, "k": k, "etas": eta.tolist(), "seeds": seeds,
            "max_rel_err": worst}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--big", type=int, default=16_000, help="N of the large run (0: skip)")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    runs = []
    for name in ("powerlaw", "uniform30", "erf4"):
        r = compare(name, args.n, args.k)
        runs.append(r)
        print(f"{name:10s} N={r['n']} k={r['k']}: dense eigh {r['dense_eigh_s']:.2f} s, top-k "
              f"{r['topk_s']:.2f} s, top-k + tail {r['topk_tail_s']:.2f} s "
              f"(×{r['cost_tail_over_topk']:.2f} of top-k, ×{r['speedup_vs_dense']:.1f} faster "
              "than dense)")
        for key, t in r["theories"].items():
            print(f"   {key:14s} max rel. error {t['max_rel_err_tail']:.1e} (where "
                  f"ηλ_(k+1)/κ ≤ 1: {t['max_rel_err_tail_rho_le_1']:.1e}; no tail "
                  f"{t['max_rel_err_no_tail']:.1e}); estimate/true ≥ "
                  f"{t['min_estimate_over_true']:.2g}")
    large = big(args.big, args.k) if args.big else None
    if large:
        print(f"uniform30  N={large['n']}: top-k {large['topk_s']:.1f} s, top-k + tail "
              f"{large['topk_tail_s']:.1f} s (×{large['cost_tail_over_topk']:.2f}); largest "
              "estimated relative error: " + ", ".join(
                  f"{k} {np.nanmax(v):.1e}" for k, v in large["rel_estimate_by_eta"].items()))
    issue = small()
    print(f"uniform30  N={issue['n']} k={issue['k']} η ≤ 100, {issue['seeds']} probe seeds: "
          "max rel. error " + ", ".join(f"{k} {v:.1e}" for k, v in issue["max_rel_err"].items()))
    if not args.no_save:
        save("tail", {"runs": runs, "large": large, "small": issue})


if __name__ == "__main__":
    main()
