"""Benchmark: the core pipeline (kernel → spectrum → theories) against baselines in the same run.

* kernel: ``rgjax.gram`` of a depth-3 ReLU NNGP on N × 784 inputs against a plain vectorised numpy
  implementation of the same arc-cosine recursion (whole matrix at once); the two must agree to
  1e-10.
* spectrum: dense float64 ``eigh`` through ``rgjax.from_gram`` against ``numpy.linalg.eigh``.
* theory: EK + RG + spectral bias on 200 η for a 10,000-mode spectrum against a scipy ``brentq``
  root solve of κ per η (how reference research codes do it), same numbers to 1e-9.

Peak memory (max RSS) is reported beside time. Ratios are baseline time / rgjax time, both
measured here, after one warm-up call of each (compile time is reported separately).

    python benchmarks/bench_core.py              # N = 2000 and 4000
    python benchmarks/bench_core.py --sizes 1000 # quick

Writes ``benchmarks/results/core_cpu.json`` (``core_<platform>.json`` on other backends).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from scipy.optimize import brentq  # noqa: E402

import rgjax  # noqa: E402
from rgjax.experiment import _versions, write_json_atomic  # noqa: E402

W2, B2 = 2.0, 0.01


def numpy_relu_nngp(x: np.ndarray, depth: int) -> np.ndarray:
    """Reference NNGP of [Dense, ReLU] × depth + Dense, neural-tangents conventions, in numpy."""
    k = W2 * (x @ x.T) / x.shape[1] + B2
    for _ in range(depth):
        d = np.sqrt(np.diag(k))
        norm = np.outer(d, d)
        rho = np.clip(k / norm, -1.0, 1.0)
        theta = np.arccos(rho)
        e = norm * (np.sin(theta) + (np.pi - theta) * rho) / (2 * np.pi)
        k = W2 * e + B2
    return k


def timed(fn, repeat: int = 1):
    fn()  # warm-up (compilation for jax)
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    jax.block_until_ready(out) if isinstance(out, jax.Array) else None
    return (time.perf_counter() - t0) / repeat, out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_kernel(n: int, depth: int = 3) -> dict:
    x = np.random.default_rng(0).uniform(size=(n, 784))
    kern = rgjax.fc(depth, "relu", W_std=np.sqrt(W2), b_std=np.sqrt(B2))
    t0 = time.perf_counter()
    rgjax.gram(kern, x[:64])
    compile_s = time.perf_counter() - t0
    t_rg, K = timed(lambda: rgjax.gram(kern, x))
    t_np, K_np = timed(lambda: numpy_relu_nngp(x, depth))
    err = float(np.max(np.abs(K - K_np)))
    assert err < 1e-10, err
    return {"n": n, "depth": depth, "rgjax_s": t_rg, "numpy_s": t_np, "ratio": t_np / t_rg,
            "compile_s": compile_s, "max_abs_diff": err, "output_mb": K.nbytes / 2**20}


def bench_spectrum(n: int) -> dict:
    x = np.random.default_rng(1).uniform(size=(n, 784))
    K = rgjax.gram(rgjax.fc(2, "relu", W_std=np.sqrt(W2), b_std=np.sqrt(B2)), x)
    y = np.sign(x[:, 0] - 0.5)
    t_rg, spec = timed(lambda: rgjax.from_gram(K, y).eigenvalues)
    t_np, w = timed(lambda: np.linalg.eigh(K)[0])
    err = float(np.max(np.abs(np.sort(np.asarray(spec))[::-1] * n - np.clip(w[::-1], 0, None))))
    return {"n": n, "rgjax_s": t_rg, "numpy_s": t_np, "ratio": t_np / t_rg, "max_abs_diff": err}


def scipy_spectral_bias(lam, yk2, etas, sigma2):
    out = []
    for eta in etas:
        f = lambda k: k - sigma2 - k * np.sum(lam / (eta * lam + k))  # noqa: E731
        kap = brentq(f, sigma2, sigma2 + lam.sum(), xtol=1e-300, rtol=1e-14)
        d = eta * lam + kap
        gamma = np.sum(eta * lam**2 / d**2)
        out.append(np.sum(kap**2 * yk2 / d**2) / (1 - gamma))
    return np.array(out)


def bench_theory(n_modes: int = 10_000, n_eta: int = 200) -> dict:
    spec = rgjax.powerlaw(n_modes, alpha=0.5)
    etas = np.geomspace(1, 5000, n_eta)
    lam, yk2 = np.asarray(spec.eigenvalues), np.asarray(spec.target_coefficients) ** 2

    @jax.jit
    def all_theories(s, e):
        return (rgjax.mse_ek(s, e, 1e-8), rgjax.mse_rg(s, e, 1e-8),
                rgjax.mse_rg(s, e, 1e-8, dof_correction=True), rgjax.mse_spectral_bias(s, e, 1e-8))

    t0 = time.perf_counter()
    jax.block_until_ready(all_theories(spec, etas))
    compile_s = time.perf_counter() - t0
    t_rg, out = timed(lambda: jax.block_until_ready(all_theories(spec, etas))[3], repeat=3)
    t_sp, ref = timed(lambda: scipy_spectral_bias(lam, yk2, etas, 1e-8))
    err = float(np.max(np.abs(np.asarray(out) / ref - 1)))
    assert err < 1e-9, err
    return {"n_modes": n_modes, "n_eta": n_eta, "rgjax_all_four_s": t_rg,
            "scipy_spectral_bias_only_s": t_sp, "ratio": t_sp / t_rg, "compile_s": compile_s,
            "max_rel_diff": err}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[2000, 4000])
    args = p.parse_args()
    results = {"versions": _versions(), "kernel": [], "spectrum": [], "theory": None}
    for n in args.sizes:
        r = bench_kernel(n)
        results["kernel"].append(r)
        print(f"kernel   N={n:>5}: rgjax {r['rgjax_s']:.2f} s, numpy {r['numpy_s']:.2f} s, "
              f"ratio {r['ratio']:.2f}x (compile {r['compile_s']:.2f} s)")
        r = bench_spectrum(n)
        results["spectrum"].append(r)
        print(f"spectrum N={n:>5}: rgjax {r['rgjax_s']:.2f} s, numpy {r['numpy_s']:.2f} s, "
              f"ratio {r['ratio']:.2f}x")
    r = bench_theory()
    results["theory"] = r
    print(f"theory   {r['n_modes']} modes x {r['n_eta']} eta: rgjax (EK+RG+RGdof+SB) "
          f"{r['rgjax_all_four_s'] * 1e3:.1f} ms, scipy brentq (SB only) "
          f"{r['scipy_spectral_bias_only_s'] * 1e3:.1f} ms, ratio {r['ratio']:.1f}x")
    results["peak_rss_mb"] = peak_rss_mb()
    print(f"peak RSS {results['peak_rss_mb']:.0f} MB")
    backend = jax.default_backend()
    path = Path(__file__).parent / "results" / f"core_{backend}.json"
    write_json_atomic(results, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
