"""Benchmark: top-k spectrum (block Krylov, ``from_gram(method="topk")``) against dense ``eigh``.

The RG and spectral-bias theories need only the top ``k`` modes plus the trace, so at large N
rgjax computes just those. This measures, on an NNGP Gram matrix (FC-ReLU depth 3, float64) of
inputs with a power-law covariance, in the same process:

* rgjax: ``rgjax.from_gram(K, y, k, method="topk")`` (top-k eigenpairs, trace, y_k), after one
  warm-up call (compile time reported separately);
* baselines: ``scipy.linalg.eigh(K)`` and ``numpy.linalg.eigh(K)`` (all N pairs, what the dense
  path and most research code do), and ``scipy.linalg.eigh(K, subset_by_index=…)`` (the top k
  only, still an O(N³) tridiagonalisation) for reference;
* accuracy: max relative error of the top-k eigenvalues against scipy; the RG, spectral-bias and
  EK curves of the top-k spectrum against the dense spectrum truncated to the same k (the
  solver's error) and against the full dense spectrum where ``rgjax.rg.truncation_valid`` with
  ``rtol=1e-3`` holds (the truncation's error); the solver's residual report.

Ratios are dense time / rgjax time. Peak memory is the process's max RSS after each stage
(rgjax runs first). Dense eigh at N = 8000 takes minutes on a loaded 2-core machine.

    python benchmarks/bench_spectrum.py                    # N = 2000, 4000, 8000
    python benchmarks/bench_spectrum.py --sizes 1000 2000  # quick

Writes ``benchmarks/results/spectrum_<backend>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import compile_time, machine, peak_rss_mb, save, timed  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

import rgjax  # noqa: E402
from rgjax import rg  # noqa: E402

SIGMA2 = 1e-8
THRESHOLD = 0.5


def pool(n: int, d: int = 200, alpha: float = 0.0, seed: int = 0):
    """Gaussian inputs with covariance ``diag(j^{-(1+α)})``, an FC-ReLU depth-3 NNGP Gram matrix,
    and ±1 targets of a non-linear rule."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-(1 + alpha) / 2)
    x /= np.sqrt(np.mean(np.sum(x**2, axis=1)))
    kern = rgjax.fc(3, "relu", W_std=np.sqrt(2.0), b_std=0.1)
    t0 = time.perf_counter()
    K = rgjax.gram(kern, x)
    gram_s = time.perf_counter() - t0
    y = np.sign(x[:, 0] + 0.5 * x[:, 1] ** 2 - 0.3 + 0.3 * x[:, 2] * x[:, 3])
    return K, y, gram_s


def curves(spec, eta):
    return {
        "rg": np.asarray(rgjax.mse_rg(spec, eta, SIGMA2, THRESHOLD)),
        "rg_dof": np.asarray(rgjax.mse_rg(spec, eta, SIGMA2, THRESHOLD, dof_correction=True)),
        "spectral_bias": np.asarray(rgjax.mse_spectral_bias(spec, eta, SIGMA2)),
        "ek": np.asarray(rgjax.mse_ek(spec, eta, SIGMA2)),
    }


def max_rel(a: np.ndarray, b: np.ndarray, mask=None) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if mask is not None:
        ok &= mask
    if not np.any(ok):
        return float("nan")
    return float(np.max(np.abs(a[ok] - b[ok]) / np.abs(b[ok])))


def bench(n: int, k: int, subset: bool) -> dict:
    K, y, gram_s = pool(n)
    rss_gram = peak_rss_mb()
    Kj = jax.device_put(K)

    def topk():
        return rgjax.from_gram(Kj, y, k, method="topk")

    first_s = compile_time(topk)
    topk_s, spec = timed(topk, repeat=1, warmup=False)
    rss_topk = peak_rss_mb()
    solver = spec.solver

    t0 = time.perf_counter()
    w_sp, v_sp = scipy.linalg.eigh(K)
    scipy_s = time.perf_counter() - t0
    del v_sp
    t0 = time.perf_counter()
    w_np, v_np = np.linalg.eigh(K)
    numpy_s = time.perf_counter() - t0
    rss_dense = peak_rss_mb()
    subset_s = None
    if subset:
        t0 = time.perf_counter()
        scipy.linalg.eigh(K, subset_by_index=[n - k, n - 1])
        subset_s = time.perf_counter() - t0

    # accuracy: eigenvalues, and the curves against the dense spectrum (numpy's eigenvectors)
    w_ref = w_sp[::-1][:k]
    eig_err = float(np.max(np.abs(np.asarray(spec.eigenvalues) * n - w_ref) / w_ref))
    full = rgjax.from_eigenvalues(
        np.clip(w_np[::-1], 0, None) / n, (v_np[:, ::-1].T @ y) / np.sqrt(n)
    )
    del v_np
    dense_k = full.truncate(k)
    # from_eigenvalues has no trace/target power beyond the given modes: full covers all N
    dense_k = rgjax.from_eigenvalues(
        dense_k.eigenvalues, dense_k.target_coefficients,
        trace=full.trace, target_power=full.target_power, n_pool=n,
    )
    e_max = float(rg.eta_max(spec, SIGMA2, THRESHOLD))
    eta = np.geomspace(1.0, n / 2, 40)
    c_top, c_k, c_full = curves(spec, eta), curves(dense_k, eta), curves(full, eta)
    valid = np.asarray(rg.truncation_valid(spec, eta, SIGMA2, THRESHOLD, rtol=1e-3))
    in_range = eta < e_max
    acc = {
        "max_rel_eig_err_topk": eig_err,
        "solver_vs_dense_same_k": {
            name: max_rel(c_top[name], c_k[name], in_range if name.startswith("rg") else None)
            for name in c_top
        },
        "truncation_vs_full_where_valid_rtol_1e-3": {
            name: max_rel(c_top[name], c_full[name], valid) for name in ("rg", "rg_dof")
        },
        "n_eta_valid_rtol_1e-3": int(valid.sum()),
        "n_eta_inside_eta_max": int(in_range.sum()),
        "eta_max_truncated": e_max,
        "eta_max_full": float(rg.eta_max(full, SIGMA2, THRESHOLD)),
    }
    row = {
        "n": n,
        "k": k,
        "gram_s": gram_s,
        "topk_s": topk_s,
        "topk_first_call_s": first_s,
        "scipy_eigh_s": scipy_s,
        "numpy_eigh_s": numpy_s,
        "scipy_eigh_subset_s": subset_s,
        "ratio_scipy": scipy_s / topk_s,
        "ratio_numpy": numpy_s / topk_s,
        "ratio_scipy_subset": None if subset_s is None else subset_s / topk_s,
        "solver": {
            "converged": bool(solver.converged),
            "iterations": int(solver.iterations),
            "n_matvec": int(solver.n_matvec),
            "max_relative_residual": float(np.max(np.asarray(solver.relative_residuals))),
        },
        "accuracy": acc,
        "peak_rss_mb": {"after_gram": rss_gram, "after_topk": rss_topk, "after_dense": rss_dense},
        "gram_mb": K.nbytes / 2**20,
    }
    print(
        f"N={n:6d} k={k}: topk {topk_s:7.2f}s (first call {first_s:.1f}s, {row['solver']['n_matvec']} "
        f"products, {row['solver']['iterations']} cycle(s)) | scipy {scipy_s:7.1f}s "
        f"(×{row['ratio_scipy']:.1f}) numpy {numpy_s:7.1f}s (×{row['ratio_numpy']:.1f})"
        + ("" if subset_s is None else f" scipy top-k {subset_s:.1f}s (×{row['ratio_scipy_subset']:.1f})")
        + f" | eig err {eig_err:.1e}, curves vs dense-k "
        + ", ".join(f"{a} {b:.1e}" for a, b in acc["solver_vs_dense_same_k"].items())
        + f" | RSS gram/topk/dense {rss_gram:.0f}/{rss_topk:.0f}/{rss_dense:.0f} MB",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--no-subset", action="store_true", help="skip scipy's top-k eigh")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    print(machine())
    rows = [bench(n, args.k, not args.no_subset) for n in args.sizes]
    if not args.no_save:
        env = {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS")}
        save("spectrum", {"sigma2": SIGMA2, "threshold": THRESHOLD, "env": env, "rows": rows})


if __name__ == "__main__":
    main()
