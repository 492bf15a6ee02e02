"""Benchmark: rgjax's Hermite-toy Monte Carlo (paper Fig. 3) against plain batched numpy.

Both compute, for the paper's set-up (kernel λ_1ψ_1ψ_1 + λ_2ψ_2ψ_2 with λ_2 ∈ {0, 0.1}, target ψ_5,
n = 100, σ² = 400), the exact GP posterior-mean coefficients of m data sets and their mean and
covariance. The numpy baseline is the straightforward version: per block of data sets draw the
inputs, build the features, ``einsum`` for ΦᵀΦ and Φᵀy, ``np.linalg.solve`` on the batch of 2 × 2
systems, and accumulate sums. Throughput is data sets per second (both kernels per data set);
rgjax's compile time is reported separately. The two use different random streams, so their
means are compared in units of the combined standard error (a sanity check, not a timing).

    python benchmarks/bench_toy.py                 # m = 500,000 and 5,000,000
    python benchmarks/bench_toy.py --m 200000      # quick

Writes ``benchmarks/results/toy_cpu.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from rgjax import toy  # noqa: E402
from rgjax.experiment import _versions, write_json_atomic  # noqa: E402

LAMBDAS = np.array([[1.0, 0.0], [1.0, 0.1]])
N, SIGMA2, TARGET = 100, 400.0, 5


def numpy_monte_carlo(m: int, *, seed: int = 0, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(L, 2)`` and SE ``(L, 2)`` of the posterior coefficients by batched numpy."""
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
    mean = total / m
    cov = (total_sq - m * np.outer(mean, mean)) / (m - 1)
    return mean.reshape(LAMBDAS.shape), np.sqrt(np.diag(cov) / m).reshape(LAMBDAS.shape)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    return {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "jax_backend": jax.default_backend(), **_versions()}


def bench(m: int, seed: int = 0) -> dict:
    problem = toy.ToyProblem(degrees=(1, 2), target={TARGET: 1.0}, n=N, sigma2=SIGMA2)
    t0 = time.perf_counter()
    mc = toy.monte_carlo(problem, LAMBDAS, m, seed=seed, progress=False)
    rg_total = time.perf_counter() - t0
    t0 = time.perf_counter()
    np_mean, np_se = numpy_monte_carlo(m, seed=seed)
    np_s = time.perf_counter() - t0
    z = (mc.mean - np_mean) / np.sqrt(mc.coef_se**2 + np_se**2 + 1e-300)
    row = {
        "m": m, "n": N, "kernels": LAMBDAS.tolist(), "chunk_size": mc.chunk_size,
        "rgjax_run_s": mc.run_s, "rgjax_compile_s": mc.compile_s, "rgjax_total_s": rg_total,
        "numpy_s": np_s,
        "rgjax_sets_per_s": m / mc.run_s, "numpy_sets_per_s": m / np_s,
        "speedup_run": np_s / mc.run_s, "speedup_incl_compile": np_s / rg_total,
        "rgjax_c": mc.mean[:, 0].tolist(), "rgjax_c_se": mc.coef_se[:, 0].tolist(),
        "numpy_c": np_mean[:, 0].tolist(), "numpy_c_se": np_se[:, 0].tolist(),
        "agreement_z_psi1": z[:, 0].tolist(),
    }
    print(f"m = {m:>10,}: rgjax {row['rgjax_sets_per_s']:>10,.0f} sets/s "
          f"({mc.run_s:.1f} s + {mc.compile_s:.1f} s compile), numpy "
          f"{row['numpy_sets_per_s']:>10,.0f} sets/s ({np_s:.1f} s) → ratio "
          f"{row['speedup_run']:.2f}× ({row['speedup_incl_compile']:.2f}× incl. compile); "
          f"c agreement z = {np.round(z[:, 0], 2).tolist()}")
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, nargs="+", default=[500_000, 5_000_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "toy_cpu.json"))
    args = ap.parse_args(argv)
    info = machine_info()
    print(f"{info['cpu']} × {info['cpu_count']}, load {info['load_average_at_start']}, "
          f"jax {info['jax']} ({info['jax_backend']})")
    rows = [bench(m, args.seed) for m in args.m]
    write_json_atomic({"benchmark": "toy Monte Carlo (paper Fig. 3): rgjax vs batched numpy",
                       "unit": "data sets per second (two kernels per data set)",
                       "machine": info, "results": rows}, Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
