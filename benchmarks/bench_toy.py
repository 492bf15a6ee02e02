"""Benchmark: rgjax's Hermite-toy Monte Carlo (paper Fig. 3) against batched numpy, same process.

All three compute, for the paper's set-up (kernel λ_1ψ_1ψ_1 + λ_2ψ_2ψ_2 with λ_2 ∈ {0, 0.1}, both
kernels on the same data sets; target ψ_5; n = 100; σ² = 400), the exact GP posterior-mean
coefficients of m data sets in float64 and their mean and covariance:

* rgjax: :func:`rgjax.toy.monte_carlo` — per data set threefry words → Box–Muller inputs, the power
  sums Σx^k (k ≤ 7) from which ΦᵀΦ and Φᵀy follow, an unrolled 2 × 2 Cholesky solve, Chan merges;
  one compiled step per chunk (compile time reported separately, never in the ratio).
* numpy (the baseline of the headline ratio, unchanged from earlier runs of this benchmark): the
  straightforward batched translation of the formulas — per block of 2,048 data sets
  ``standard_normal``, the feature matrix (ψ_1, ψ_2) and target ψ_5, ``einsum`` for ΦᵀΦ and Φᵀy,
  ``np.linalg.solve`` on the batch of 2 × 2 systems, running sums.
* numpy, power sums: what a numpy user who knows the trick would write — the same power-sum
  algebra as rgjax (in-place powers of a (4096, n) block, row sums), closed-form 2 × 2 solves.
  Here the random draws dominate: numpy's PCG64 + ziggurat is a cheaper generator than rgjax's
  counter-based threefry, which buys data sets addressable by index (chunk- and device-count-
  independent results, common random numbers across kernels).

Ratios are baseline wall time / rgjax run time (data sets per second; both kernels per data set).
The streams differ, so means are compared in units of the combined standard error (a sanity check).
Peak RSS is the process's high-water mark after each phase (rgjax runs first).

    python benchmarks/bench_toy.py                 # m = 500,000 and 5,000,000
    python benchmarks/bench_toy.py --m 200000      # quick

Writes ``benchmarks/results/toy_<backend>.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import time

from _common import peak_rss_mb, save, timed  # also enables float64

import numpy as np  # noqa: E402

from rgjax import toy  # noqa: E402

LAMBDAS = np.array([[1.0, 0.0], [1.0, 0.1]])
N, SIGMA2, TARGET = 100, 400.0, 5


def _summary(total: np.ndarray, total_sq: np.ndarray, m: int) -> tuple:
    mean = total / m
    cov = (total_sq - m * np.outer(mean, mean)) / (m - 1)
    se = np.sqrt(np.diag(cov) / m).reshape(LAMBDAS.shape)
    return mean.reshape(LAMBDAS.shape), se, cov


def numpy_monte_carlo(m: int, *, seed: int = 0, block: int = 2048) -> tuple:
    """Mean ``(L, 2)``, SE ``(L, 2)``, covariance ``(2L, 2L)``: features, einsum, batched solve."""
    rng = np.random.default_rng(seed)
    s = np.sqrt(LAMBDAS)  # (L, 2)
    total = np.zeros(LAMBDAS.size)
    total_sq = np.zeros((LAMBDAS.size, LAMBDAS.size))
    done = 0
    while done < m:
        b = min(block, m - done)
        x = rng.standard_normal((b, N))
        phi = np.stack([x, (x * x - 1) / math.sqrt(2)], axis=-1)  # ψ_1, ψ_2: (b, N, 2)
        y = (x**5 - 10 * x**3 + 15 * x) / math.sqrt(120)  # ψ_5
        gram = np.einsum("bia,bic->bac", phi, phi)
        rhs = np.einsum("bia,bi->ba", phi, y)
        a = np.eye(2) + s[:, :, None] * s[:, None, :] * gram[:, None] / SIGMA2  # (b, L, 2, 2)
        c = s * np.linalg.solve(a, (s * rhs[:, None] / SIGMA2)[..., None])[..., 0]
        flat = c.reshape(b, -1)
        total += flat.sum(axis=0)
        total_sq += flat.T @ flat
        done += b
    return _summary(total, total_sq, m)


def numpy_power_sums(m: int, *, seed: int = 0, block: int = 4096) -> tuple:
    """As :func:`numpy_monte_carlo`, from the power sums ``S_k = Σ_i x_i^k`` and closed-form 2 × 2
    solves: ``ΦᵀΦ = [[S2, (S3−S1)/√2], [·, (S4 − 2S2 + n)/2]]``,
    ``Φᵀψ_5 = [(S6 − 10S4 + 15S2)/√120, (S7 − 11S5 + 25S3 − 15S1)/√240]``."""
    rng = np.random.default_rng(seed)
    s = np.sqrt(LAMBDAS)
    total = np.zeros(LAMBDAS.size)
    total_sq = np.zeros((LAMBDAS.size, LAMBDAS.size))
    power = np.empty((block, N))
    sums = np.empty((8, block))
    done = 0
    while done < m:
        b = min(block, m - done)
        x = rng.standard_normal((b, N))
        p = power[:b]
        np.copyto(p, x)
        x.sum(axis=1, out=sums[1, :b])
        for k in range(2, 8):
            p *= x
            p.sum(axis=1, out=sums[k, :b])
        s1, s2, s3, s4, s5, s6, s7 = sums[1:, :b]
        g11, g12, g22 = s2, (s3 - s1) / math.sqrt(2), (s4 - 2 * s2 + N) / 2
        r1 = (s6 - 10 * s4 + 15 * s2) / math.sqrt(120)
        r2 = (s7 - 11 * s5 + 25 * s3 - 15 * s1) / math.sqrt(240)
        c = np.empty((b, LAMBDAS.size))
        for ell, (a1, a2) in enumerate(s):
            m11 = 1 + a1 * a1 * g11 / SIGMA2
            m12 = a1 * a2 * g12 / SIGMA2
            m22 = 1 + a2 * a2 * g22 / SIGMA2
            b1, b2 = a1 * r1 / SIGMA2, a2 * r2 / SIGMA2
            det = m11 * m22 - m12 * m12
            c[:, 2 * ell] = a1 * (m22 * b1 - m12 * b2) / det
            c[:, 2 * ell + 1] = a2 * (m11 * b2 - m12 * b1) / det
        total += c.sum(axis=0)
        total_sq += c.T @ c
        done += b
    return _summary(total, total_sq, m)


def bench(m: int, seed: int = 0) -> dict:
    problem = toy.ToyProblem(degrees=(1, 2), target={TARGET: 1.0}, n=N, sigma2=SIGMA2)
    # warm-up: compiles the chunk step (cache cleared: each row reports a real compile) that the
    # timed run reuses (m ≥ one chunk: the same chunk size)
    toy._compiled_step.cache_clear()
    warm = toy.monte_carlo(problem, LAMBDAS, 4 * 4096, seed=seed + 1, progress=False)
    rg_wall, mc = timed(lambda: toy.monte_carlo(problem, LAMBDAS, m, seed=seed, progress=False),
                        warmup=False)
    rss_rgjax = peak_rss_mb()
    np_s, (np_mean, np_se, _) = timed(lambda: numpy_monte_carlo(m, seed=seed), warmup=False)
    ps_s, (ps_mean, ps_se, _) = timed(lambda: numpy_power_sums(m, seed=seed), warmup=False)
    rss_all = peak_rss_mb()
    z = (mc.mean - np_mean) / np.sqrt(mc.coef_se**2 + np_se**2 + 1e-300)  # ψ_2 at λ_2 = 0: 0/0
    z_ps = (mc.mean - ps_mean) / np.sqrt(mc.coef_se**2 + ps_se**2 + 1e-300)
    rg = toy.rg_prediction(problem, LAMBDAS)[:, 0]
    row = {
        "m": m, "n": N, "sigma2": SIGMA2, "kernels": LAMBDAS.tolist(), "chunk_size": mc.chunk_size,
        "n_devices": mc.n_devices,
        "rgjax_run_s": mc.run_s, "rgjax_wall_s": rg_wall, "rgjax_compile_s": warm.compile_s,
        "rgjax_first_call_s": warm.compile_s + rg_wall,  # a fresh process: compile, then the run
        "numpy_s": np_s, "numpy_power_sums_s": ps_s,
        "rgjax_sets_per_s": m / mc.run_s, "numpy_sets_per_s": m / np_s,
        "numpy_power_sums_sets_per_s": m / ps_s,
        "ratio_vs_numpy": np_s / mc.run_s, "ratio_vs_numpy_power_sums": ps_s / mc.run_s,
        "ns_per_point": {"rgjax": mc.run_s / (m * N) * 1e9, "numpy": np_s / (m * N) * 1e9,
                         "numpy_power_sums": ps_s / (m * N) * 1e9},
        "peak_rss_mb": {"after_rgjax": rss_rgjax, "after_numpy": rss_all},
        "rgjax_c": mc.mean[:, 0].tolist(), "rgjax_c_se": mc.coef_se[:, 0].tolist(),
        "rgjax_paired_diff": float(mc.mean[1, 0] - mc.mean[0, 0]),
        "rgjax_paired_diff_se": float(mc.difference_se(1, 0)[0]),
        "rg_prediction_c": rg.tolist(),
        "numpy_c": np_mean[:, 0].tolist(), "numpy_c_se": np_se[:, 0].tolist(),
        "numpy_power_sums_c": ps_mean[:, 0].tolist(),
        "agreement_z_psi1": z[:, 0].tolist(), "agreement_z_psi1_power_sums": z_ps[:, 0].tolist(),
    }
    print(f"m = {m:>10,}: rgjax {mc.run_s:6.2f} s (+{warm.compile_s:.1f} s compile, "
          f"{row['ns_per_point']['rgjax']:.1f} ns/point) | numpy {np_s:6.2f} s → "
          f"{row['ratio_vs_numpy']:.2f}× | numpy power sums {ps_s:6.2f} s → "
          f"{row['ratio_vs_numpy_power_sums']:.2f}× | agreement z = "
          f"{np.round(z[:, 0], 2).tolist()}, {np.round(z_ps[:, 0], 2).tolist()}")
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, nargs="+", default=[500_000, 5_000_000])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(f"load average {load}")
    t0 = time.perf_counter()
    rows = [bench(m, args.seed) for m in args.m]
    save("toy", {"description": "Hermite-toy Monte Carlo (paper Fig. 3): rgjax vs batched numpy "
                                "(straightforward, and with power sums)",
                 "unit": "seconds for m data sets (two kernels each); ratio = numpy / rgjax",
                 "load_average_at_start": load, "total_s": time.perf_counter() - t0,
                 "results": rows})


if __name__ == "__main__":
    main()
