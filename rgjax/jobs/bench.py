"""Benchmark this machine's devices: the ``rgjax bench`` job.

Times rgjax's stages on the local devices (CPU, GPU or TPU; all of them where a stage can split
its work) at a ladder of sizes chosen for the platform, each against a baseline where one exists,
and checks each result against a reference → ``bench.json`` (atomic, rewritten after every
measurement, so an interrupted run keeps what it measured), ``bench.md`` (a Markdown table) and
``bench.png`` (time against size).

Stages (``--stages``; sizes are pool points N unless said otherwise):

* ``gram`` — ``gram(fc(2, "relu", W_std=√2, b_std=0.1), x)`` on synthetic inputs ``(N, dim)``
  (row-sharded over the local accelerators) against the whole-matrix numpy recursion;
* ``eigh`` — dense ``from_gram(K, y)`` against ``scipy.linalg.eigh`` (or numpy's), only where it
  fits (:func:`rgjax.spectrum.dense_eigh_fits`, free memory); the first size beyond cuSOLVER's
  2³¹-byte limit records ``from_gram``'s fallback to top-k;
* ``topk`` — ``from_gram(K, y, k=k, method="topk", tail_steps=0)`` (the eigenpairs alone, as
  the baseline computes them; ``benchmarks/bench_tail.py`` times the tail measure) against
  ``scipy.sparse.linalg.eigsh``;
* ``theory`` — ``mse_ek``, ``mse_rg``, ``mse_rg(dof_correction=True)`` and ``mse_spectral_bias``
  on ``powerlaw(N)`` (N modes) at 100 η, each against a per-η numpy loop (scipy ``brentq``);
* ``empirical`` — ``learning_curve`` against scikit-learn ``KernelRidge`` on the same training
  sets (``numpy.linalg.solve`` without scikit-learn);
* ``toy`` — the Hermite-toy Monte Carlo (:func:`rgjax.toy.monte_carlo`, size = data sets m)
  against batched numpy;
* ``pipeline`` — the whole ``rgjax curve`` job (:func:`rgjax.jobs.curve.run`) on the
  ``synthetic-powerlaw`` task with N points, plots off (no baseline).

Every measurement records: ``cold_s``, the first call after ``jax.clear_caches()`` (compilation
included; the persistent compilation cache is off unless ``--compile-cache``, so this is a real
compile); ``compile_s``, the tracing, lowering and XLA compilation inside that call (from
``jax.monitoring``); ``warm_s``, the best of up to ``repeats`` further calls; ``peak_rss_mb``, the
process's host high-water mark so far, and ``device_peak_mb`` (``memory_stats``; null on CPU);
the baseline's name, its best time and ``ratio = baseline_s / warm_s``; ``accuracy``, the largest
relative difference from the baseline's result or from an independent check named in
``accuracy_ref``. A stage that fails (e.g. out of memory) is recorded with its error and the
bench goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import math
import os
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._typing import Array, PathLike
from rgjax._validate import check_int
from rgjax.compile_cache import default_folder, disable, enable, folder_from_env, status
from rgjax.empirical import learning_curve, training_sets
from rgjax.jobs import curve
from rgjax.jobs._baselines import (
    dense_eigh,
    kernel_ridge_mse,
    numpy_relu_nngp,
    optional,
    theory_ek,
    theory_rg,
    theory_spectral_bias,
    topk_eigh,
    toy_monte_carlo,
)
from rgjax.jobs._io import locked, save_and_plot, versions, write_json_atomic
from rgjax.jobs._pipeline import Log, default_etas
from rgjax.kernels import fc, gram
from rgjax.plotting import save_bench_figures
from rgjax.spectrum import Spectrum, dense_eigh_fits, from_gram, powerlaw
from rgjax.theory import mse_ek, mse_rg, mse_spectral_bias
from rgjax.toy import ToyProblem, monte_carlo

__all__ = ["BenchConfig", "LADDERS", "RESULTS_FILE", "STAGES", "TABLE_FILE", "format_table",
           "ladder", "run"]

#: The JSON file the job writes into its folder.
RESULTS_FILE = "bench.json"
#: The Markdown table written next to it.
TABLE_FILE = "bench.md"
#: Every stage, in the order they run.
STAGES = ("gram", "eigh", "topk", "theory", "empirical", "toy", "pipeline")
#: Stages whose sizes are pool points N (``--sizes`` replaces their ladders); the toy's are m.
N_STAGES = ("gram", "eigh", "topk", "theory", "empirical", "pipeline")
#: Stages that need the Gram matrix of the synthetic pool.
POOL_STAGES = ("gram", "eigh", "topk", "empirical")

#: Sizes per stage: ``quick`` (a smoke run, well under a minute on two CPU cores), ``cpu`` and
#: ``gpu`` (also used for TPUs). The GPU ladder covers the dense-eigh limit (cuSOLVER fails above
#: 2³¹ bytes: N > 16,384 in float64, so 20,000 records the fallback), top-k at N = 50,000 and the
#: pipeline at N = 10,000.
LADDERS: dict[str, dict[str, tuple[int, ...]]] = {
    "quick": {"gram": (200, 400), "eigh": (200,), "topk": (200,), "theory": (1000,),
              "empirical": (200,), "toy": (20_000,), "pipeline": (200,)},
    "cpu": {"gram": (1000, 2000, 4000), "eigh": (1000, 2000, 4000), "topk": (2000, 4000),
            "theory": (1000, 10_000, 100_000), "empirical": (500, 1000, 2000),
            "toy": (100_000, 1_000_000), "pipeline": (1000, 2000)},
    "gpu": {"gram": (4000, 8000, 16_000, 20_000, 50_000), "eigh": (4000, 8000, 16_000, 20_000),
            "topk": (20_000, 50_000), "theory": (10_000, 100_000), "empirical": (2000, 4000),
            "toy": (1_000_000, 5_000_000), "pipeline": (2000, 10_000)},
}
#: Largest size whose baseline runs, by ladder (numpy's eigh at N = 20,000 takes minutes).
BASELINE_MAX_N = {"quick": 10**9, "cpu": 4000, "gpu": 8000}
#: The toy's numpy baseline runs up to this many data sets (beyond, it takes minutes).
TOY_BASELINE_MAX_M = 1_000_000
#: Warm repeats stop early once they have used this many seconds (at least one always runs).
WARM_BUDGET_S = 10.0

_KERNEL = {"depth": 2, "W_std": math.sqrt(2.0), "b_std": 0.1}
_THEORY_SIGMA2, _THRESHOLD, _THEORY_ETAS = 1e-8, 0.5, 100
#: The empirical curve's ridge: large enough that every training system is well conditioned,
#: so rgjax and the baseline agree to round-off and the comparison is exact.
_EMPIRICAL_SIGMA2 = 1e-3
#: The toy's kernels (λ_1, λ_>): three λ_> sharing the data sets; target ψ_5, n = 100, σ² = 400
#: (paper Fig. 3).
_TOY_LAMBDAS = np.array([[1.0, 0.0], [1.0, 0.05], [1.0, 0.1]])
_TOY_N, _TOY_SIGMA2, _TOY_TARGET = 100, 400.0, 5
#: Pipeline runs above this N keep the top 512 modes (``--eigs 512``), as one would there.
_PIPELINE_DENSE_MAX_N = 8000
_COMPILE_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration",
                             "/jax/core/compile/jaxpr_to_mlir_module_duration",
                             "/jax/core/compile/backend_compile_duration"})


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Everything that defines a ``rgjax bench`` run; unset sizes come from the platform's
    ladder (:data:`LADDERS`)."""

    quick: bool = dataclasses.field(
        default=False, metadata={"help": "tiny sizes: the whole bench in well under a minute"})
    sizes: tuple[int, ...] | None = dataclasses.field(
        default=None, metadata={"help": "pool sizes N for every stage but toy, comma separated "
                                        "(default: the platform's ladder)"})
    stages: tuple[str, ...] | None = dataclasses.field(
        default=None, metadata={"help": "stages to run, comma separated, from "
                                        + ",".join(STAGES) + " (default: all)"})
    k: int | None = dataclasses.field(
        default=None, metadata={"help": "top-k modes (default: min(256, N/16))"})
    repeats: int | None = dataclasses.field(
        default=None, metadata={"help": "warm calls per measurement, best kept "
                                        "(default: 3; 2 with --quick)"})
    baseline_max_n: int | None = dataclasses.field(
        default=None, metadata={"help": "run baselines only up to this N "
                                        "(default: 4000 on CPU, 8000 on GPU)"})
    dim: int = dataclasses.field(default=784, metadata={"help": "input dimension of the pool"})
    seed: int = dataclasses.field(default=0, metadata={"help": "random seed"})
    blas_threads: int | None = dataclasses.field(
        default=None, metadata={"help": "limit the BLAS/LAPACK threads of numpy, scipy and XLA's "
                                        "CPU LAPACK calls (threadpoolctl); 1 avoids stalls on a "
                                        "small or shared CPU (default: the libraries' own)"})
    compile_cache: bool = dataclasses.field(
        default=False, metadata={"help": "keep JAX's persistent compilation cache on (cold "
                                         "times then load programs instead of compiling)"})

    def __post_init__(self) -> None:
        if self.sizes is not None:
            if len(self.sizes) == 0:
                raise ValueError("`sizes` must hold at least one pool size N; got none.")
            for n in self.sizes:
                check_int(n, "sizes", 16, why="pool points; the empirical curve needs η ≥ 5")
        if self.stages is not None:
            unknown = [s for s in self.stages if s not in STAGES]
            if unknown or not self.stages:
                raise ValueError(f"unknown stage {', '.join(map(repr, unknown)) or 'list ()'} in "
                                 f"`stages`; choose from {', '.join(STAGES)}.")
        if self.k is not None:
            check_int(self.k, "k", 1, why="modes of the top-k solver")
        if self.repeats is not None:
            check_int(self.repeats, "repeats", 1, why="warm calls per measurement")
        if self.baseline_max_n is not None:
            check_int(self.baseline_max_n, "baseline_max_n", 0)
        if self.blas_threads is not None:
            check_int(self.blas_threads, "blas_threads", 1)
        check_int(self.dim, "dim", 1, why="input dimension")
        check_int(self.seed, "seed", 0)


def ladder(cfg: BenchConfig, platform: str) -> dict[str, tuple[int, ...]]:
    """The sizes each selected stage runs at on ``platform`` (``"cpu"``, ``"gpu"``, ``"tpu"``)."""
    name = "quick" if cfg.quick else ("cpu" if platform == "cpu" else "gpu")
    sizes = dict(LADDERS[name])
    if cfg.sizes is not None:
        sizes.update({s: tuple(sorted(set(cfg.sizes))) for s in N_STAGES})
    return {s: sizes[s] for s in (cfg.stages or STAGES)}


# ---- measuring -------------------------------------------------------------------------------


class Timing(NamedTuple):
    """One measurement of rgjax: first call, its compile share, best warm call, last output."""

    cold_s: float
    compile_s: float
    warm_s: float
    repeats: int
    out: Any


class _CompileClock:
    """Seconds JAX spends tracing, lowering and compiling while active (``jax.monitoring``)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, event: str, duration_secs: float, **_: str | int) -> None:
        if event in _COMPILE_EVENTS:
            self.seconds += duration_secs

    def __enter__(self) -> _CompileClock:
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *_: object) -> None:
        jax.monitoring.unregister_event_duration_listener(self)


def best_of(fn: Callable[[], Any], repeats: int,
            budget_s: float = WARM_BUDGET_S) -> tuple[float, int, Any]:
    """Best wall time of up to ``repeats`` calls (fewer once ``budget_s`` is spent; at least one),
    the number of calls and the last output; JAX's asynchronous dispatch is waited for."""
    best, spent, calls, out = math.inf, 0.0, 0, None
    while calls < repeats and (calls == 0 or spent < budget_s):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        dt = time.perf_counter() - t0
        best, spent, calls = min(best, dt), spent + dt, calls + 1
    return best, calls, out


def measure(fn: Callable[[], Any], repeats: int) -> Timing:
    """Cold call (after clearing JAX's in-memory caches, so that it compiles) and warm calls."""
    jax.clear_caches()
    with _CompileClock() as clock:
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        cold = time.perf_counter() - t0
    warm, calls, out = best_of(fn, repeats)
    return Timing(cold, clock.seconds, warm, calls, out)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def device_peak_mb() -> float | None:
    """The largest ``peak_bytes_in_use`` over the local devices, in MiB; None where the platform
    reports no memory statistics (CPU)."""
    peaks = []
    for d in jax.local_devices():
        stats = d.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            peaks.append(stats["peak_bytes_in_use"] / 2**20)
    return max(peaks) if peaks else None


def available_bytes(platform: str) -> int | None:
    """Free memory where a matrix would live: the first accelerator's limit minus its use, or
    the host's available memory (psutil, else ``/proc/meminfo``); None when unknown."""
    if platform != "cpu":
        stats = jax.local_devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    psutil = optional("psutil")
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rel_diff(got: Any, want: Any, scale: float | None = None) -> float:
    """Largest ``|got − want|`` over ``scale`` (default ``max |want|``), ignoring entries where both
    are NaN; ``inf`` where only one of them is NaN (the two disagree on where a value exists)."""
    g, w = np.asarray(got, float), np.asarray(want, float)
    if g.shape != w.shape or not np.array_equal(np.isnan(g), np.isnan(w)):
        return math.inf
    ok = ~np.isnan(w)
    if not ok.any():
        return 0.0
    top = float(np.max(np.abs(w[ok]))) if scale is None else scale
    return float(np.max(np.abs(g[ok] - w[ok]))) / (top or 1.0)


def record(stage: str, n: int, timing: Timing | None = None, *, case: str | None = None,
           params: Mapping[str, Any] | None = None, baseline: str | None = None,
           baseline_s: float | None = None, accuracy: float | None = None,
           accuracy_ref: str | None = None, accuracy_kind: str = "relative",
           note: str | None = None, error: str | None = None) -> dict[str, Any]:
    """One row of ``bench.json``'s ``records`` (the schema every stage writes)."""
    warm = timing.warm_s if timing is not None else None
    return {
        "stage": stage, "case": case, "n": int(n), "params": dict(params or {}),
        "cold_s": timing.cold_s if timing else None,
        "compile_s": timing.compile_s if timing else None,
        "warm_s": warm, "repeats": timing.repeats if timing else None,
        "baseline": baseline, "baseline_s": baseline_s,
        "ratio": baseline_s / warm if baseline_s is not None and warm else None,
        "accuracy": accuracy, "accuracy_ref": accuracy_ref,
        "accuracy_kind": accuracy_kind if accuracy is not None else None,
        "peak_rss_mb": peak_rss_mb(), "device_peak_mb": device_peak_mb(),
        "note": note, "error": error,
    }


def error_text(err: BaseException) -> str:
    """``Type: first line`` of an exception (XLA's messages run to pages)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:400] if lines else ''}".rstrip(": ")


def rel_err(got: Any, want: Any) -> float:
    """Largest elementwise ``|got/want − 1|`` (NaN in both ignored; ``inf`` if only in one)."""
    g, w = np.asarray(got, float), np.asarray(want, float)
    if g.shape != w.shape or not np.array_equal(np.isnan(g), np.isnan(w)):
        return math.inf
    ok = ~np.isnan(w) & (w != 0)
    return float(np.max(np.abs(g[ok] / w[ok] - 1.0), initial=0.0))


# ---- a run in progress -----------------------------------------------------------------------


@dataclasses.dataclass
class _Bench:
    """A run in progress: its resolved settings, the results so far and where they go."""

    cfg: BenchConfig
    folder: Path
    sizes: dict[str, tuple[int, ...]]
    repeats: int
    baseline_max_n: int
    results: dict[str, Any]
    log: Log | None

    def add(self, rec: dict[str, Any]) -> None:
        """Keep a record and rewrite ``bench.json``/``bench.md`` (an interrupt loses nothing)."""
        self.results["records"].append(rec)
        _save(self.results, self.folder)
        if self.log is not None:
            self.log(_line(rec))

    def attempt(self, stage: str, n: int, fn: Callable[[], Any], case: str | None = None) -> Any:
        """``fn()``, or ``None`` after recording its failure as the stage's result at ``n``."""
        try:
            return fn()
        except Exception as err:  # a failure (out of memory, solver limit) is a result too
            self.add(record(stage, n, case=case, error=error_text(err)))
            return None

    def baseline_at(self, n: int) -> bool:
        return n <= self.baseline_max_n


def _save(results: Mapping[str, Any], folder: Path) -> None:
    write_json_atomic(results, folder / RESULTS_FILE)
    tmp = folder / (TABLE_FILE + ".tmp")
    tmp.write_text(_markdown(results))
    os.replace(tmp, folder / TABLE_FILE)


def _line(rec: Mapping[str, Any]) -> str:
    """A measurement as one progress line."""
    head = f"{_stage_name(rec):<18} {_size(rec):>10}"
    if rec["error"]:
        return f"{head}  failed: {rec['error']}"
    text = (f"{head}  cold {rec['cold_s']:.3g} s (compile {rec['compile_s']:.3g} s)  "
            f"warm {rec['warm_s']:.3g} s")
    if rec["baseline_s"] is not None:
        text += f" | {rec['baseline']} {rec['baseline_s']:.3g} s → {rec['ratio']:.3g}×"
    if rec["accuracy"] is not None:
        text += f" | accuracy {_accuracy(rec)}"
    return text + (f" ({rec['note']})" if rec["note"] else "")


# ---- the stages ------------------------------------------------------------------------------


def synthetic_pool(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(N, dim)`` Gaussian inputs, coordinate j scaled by ``j^-0.6`` (a slowly decaying,
    realistic NNGP spectrum), and ``(N,)`` targets ``sign(x_1)``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)) * np.arange(1, dim + 1) ** -0.6
    return x, np.where(x[:, 0] >= 0, 1.0, -1.0)


def _kernel_args() -> dict[str, Any]:
    return {"depth": _KERNEL["depth"], "w_std": _KERNEL["W_std"], "b_std": _KERNEL["b_std"]}


def _gram_devices(n: int) -> list[Any] | None:
    """The accelerators the Gram rows are split over (N must divide evenly); None on CPU, where
    the host path (tiles mirrored, half the work) is the fast one."""
    devs = jax.local_devices()
    if devs[0].platform == "cpu":
        return None
    while n % len(devs):
        devs = devs[:-1]
    return devs


def build_gram(x: np.ndarray) -> np.ndarray | Array:
    """``(N, N)`` Gram matrix of the bench's kernel: host numpy on CPU, row-sharded elsewhere."""
    kernel = fc(_KERNEL["depth"], "relu", W_std=_KERNEL["W_std"], b_std=_KERNEL["b_std"])
    return gram(kernel, x, devices=_gram_devices(x.shape[0]))


def _submatrix(K: np.ndarray | Array, idx: np.ndarray) -> np.ndarray:
    if isinstance(K, np.ndarray):
        return K[np.ix_(idx, idx)]
    return np.asarray(K[idx][:, idx])


def _gram_stage(b: _Bench, x: np.ndarray, n: int) -> np.ndarray | Array:
    t = measure(lambda: build_gram(x), b.repeats)
    K = t.out
    devs = _gram_devices(n)
    params = {"dim": x.shape[1], "depth": _KERNEL["depth"], "devices": len(devs) if devs else 1}
    if b.baseline_at(n):
        bs, _, want = best_of(lambda: numpy_relu_nngp(x, **_kernel_args()), b.repeats)
        acc = rel_diff(np.asarray(K), want)
        b.add(record("gram", n, t, params=params, baseline="numpy", baseline_s=bs, accuracy=acc,
                     accuracy_ref="max |ΔK| / max |K| vs numpy"))
        return K
    idx = np.sort(np.random.default_rng(b.cfg.seed).choice(n, size=min(n, 256), replace=False))
    acc = rel_diff(_submatrix(K, idx), numpy_relu_nngp(x[idx], **_kernel_args()))
    b.add(record("gram", n, t, params=params, accuracy=acc,
                 accuracy_ref="max |ΔK| / max |K| vs numpy on 256 random points"))
    return K


def _platform_of(K: np.ndarray | Array) -> str:
    return "cpu" if isinstance(K, np.ndarray) else next(iter(K.devices())).platform


def residual(K: np.ndarray | Array, spec: Spectrum, modes: int = 8) -> float:
    """``max_j ‖K v_j − w_j v_j‖ / w_1`` over the top ``modes`` eigenpairs ``w_j = N λ_j``: an
    independent check of a spectrum where no baseline ran."""
    if spec.eigenvectors is None:
        return math.nan
    m = min(modes, spec.n_modes)
    v = spec.eigenvectors[:, :m]
    w = spec.eigenvalues[:m] * spec.n_pool
    r = jnp.asarray(K) @ v - v * w
    return float(jnp.max(jnp.linalg.norm(r, axis=0)) / w[0])


_RESIDUAL_REF = "max_j ‖K v_j − w_j v_j‖ / w_1 over the top 8 modes"


def _eigh_stage(b: _Bench, K: np.ndarray | Array, y: np.ndarray, n: int) -> np.ndarray | None:
    """Dense ``from_gram``; returns the Gram eigenvalues ``(N,)`` (None after a fallback)."""
    platform, nbytes = _platform_of(K), n * n * 8
    fits = dense_eigh_fits(nbytes, platform)
    free = available_bytes(platform)
    if fits and free is not None and 4 * nbytes > free:  # K, its copy, eigenvectors, workspace
        raise MemoryError(f"dense eigh at N={n} needs about {4 * nbytes / 2**30:.1f} GiB; "
                          f"{free / 2**30:.1f} GiB free")
    Kd = K if platform == "cpu" else jax.device_put(K, jax.local_devices()[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = measure(lambda: from_gram(Kd, y), b.repeats)
    spec: Spectrum = t.out
    note = "; ".join(dict.fromkeys(str(w.message).split(":")[0] for w in caught)) or None
    w = np.asarray(spec.eigenvalues) * n
    params = {"bytes": nbytes, "modes": spec.n_modes}
    if fits and b.baseline_at(n):
        Kh = np.asarray(K)
        bs, _, (name, want) = best_of(lambda: dense_eigh(Kh), b.repeats)
        b.add(record("eigh", n, t, case="dense", params=params, baseline=name, baseline_s=bs,
                     accuracy=rel_diff(w, want, scale=float(want[0])),
                     accuracy_ref=f"max |Δλ| / λ_1 vs {name}", note=note))
    else:
        b.add(record("eigh", n, t, case="dense" if fits else "fallback", params=params,
                     accuracy=residual(Kd, spec), accuracy_ref=_RESIDUAL_REF, note=note))
    return w if fits else None


def top_k(cfg: BenchConfig, n: int) -> int:
    """Modes of the top-k stage at N: ``--k``, else ``min(256, N/16)``; below N."""
    return max(1, min(cfg.k or min(256, max(1, n // 16)), n - 1))


def _topk_stage(b: _Bench, K: np.ndarray | Array, y: np.ndarray, n: int,
                dense_w: np.ndarray | None) -> None:
    k = top_k(b.cfg, n)
    t = measure(lambda: from_gram(K, y, k=k, method="topk", tail_steps=0), b.repeats)
    spec: Spectrum = t.out
    w = np.asarray(spec.eigenvalues) * n
    params = {"k": k, "converged": None if spec.solver is None else bool(spec.solver.converged)}
    if b.baseline_at(n) and optional("scipy.sparse.linalg") is not None:
        Kh = np.asarray(K)
        bs, _, (name, want) = best_of(lambda: topk_eigh(Kh, k), b.repeats)
        b.add(record("topk", n, t, params=params, baseline=name, baseline_s=bs,
                     accuracy=rel_diff(w, want, scale=float(want[0])),
                     accuracy_ref=f"max |Δλ| / λ_1 vs {name}"))
    elif dense_w is not None:
        b.add(record("topk", n, t, params=params,
                     accuracy=rel_diff(w, dense_w[:k], scale=float(dense_w[0])),
                     accuracy_ref="max |Δλ| / λ_1 vs rgjax's dense eigh"))
    else:
        b.add(record("topk", n, t, params=params, accuracy=residual(K, spec),
                     accuracy_ref=_RESIDUAL_REF))


def _empirical_stage(b: _Bench, K: np.ndarray | Array, y: np.ndarray, n: int) -> None:
    """Independent draws (``learning_curve``'s default) and nested ones (``rgjax curve``'s)."""
    for nested in (False, True):
        _empirical_draws(b, K, y, n, nested)


def _empirical_draws(b: _Bench, K: np.ndarray | Array, y: np.ndarray, n: int,
                     nested: bool) -> None:
    case = "nested" if nested else "independent"
    etas = default_etas(n, 6)
    etas = etas[etas < n]
    trials, seed = (2 if b.cfg.quick else 4), b.cfg.seed
    t = measure(lambda: learning_curve(K, y, etas, _EMPIRICAL_SIGMA2, trials=trials, key=seed,
                                       progress=False, nested=nested), b.repeats)
    got = t.out.mse_pool_trials  # (E, T)
    params = {"etas": etas.tolist(), "trials": trials, "sigma2": _EMPIRICAL_SIGMA2,
              "nested": nested}
    if not b.baseline_at(n):
        b.add(record("empirical", n, t, case=case, params=params))
        return
    sets = [training_sets(seed, n, int(eta), trials, nested=nested) for eta in t.out.etas]
    Kh = np.asarray(K)
    bs, _, (base, want) = best_of(
        lambda: kernel_ridge_mse(Kh, y, sets, _EMPIRICAL_SIGMA2), b.repeats)
    b.add(record("empirical", n, t, case=case, params=params, baseline=base, baseline_s=bs,
                 accuracy=rel_err(got, want),
                 accuracy_ref=f"max relative difference of the per-trial pool MSEs vs {base}"))


def _pool_at(b: _Bench, n: int, fallback_seen: bool) -> bool:
    """Every pool stage at N on one Gram matrix; returns whether a dense-eigh fallback has been
    recorded (only the first size beyond the limit records it: the others would repeat it)."""
    x, y = synthetic_pool(n, b.cfg.dim, b.cfg.seed)
    if n in b.sizes.get("gram", ()):
        K = b.attempt("gram", n, lambda: _gram_stage(b, x, n))
    else:
        try:
            K = build_gram(x)
        except Exception as err:
            for s in POOL_STAGES[1:]:
                if n in b.sizes.get(s, ()):
                    b.add(record(s, n, error=f"no Gram matrix: {error_text(err)}"))
            return fallback_seen
    if K is None:
        for s in POOL_STAGES[1:]:
            if n in b.sizes.get(s, ()):
                b.add(record(s, n, error="no Gram matrix (see the gram record)"))
        return fallback_seen
    dense_w = None
    if n in b.sizes.get("eigh", ()):
        fits = dense_eigh_fits(n * n * 8, _platform_of(K))
        if fits or not fallback_seen:
            dense_w = b.attempt("eigh", n, lambda: _eigh_stage(b, K, y, n))
        fallback_seen = fallback_seen or not fits
    if n in b.sizes.get("topk", ()):
        b.attempt("topk", n, lambda: _topk_stage(b, K, y, n, dense_w))
    if n in b.sizes.get("empirical", ()):
        b.attempt("empirical", n, lambda: _empirical_stage(b, K, y, n))
    return fallback_seen


def _theory_case(b: _Bench, n: int, case: str, fn: Callable[[], Any],
                 ref: Callable[[], np.ndarray | None], ref_name: str) -> None:
    t = measure(fn, b.repeats)
    params = {"etas": _THEORY_ETAS, "sigma2": _THEORY_SIGMA2, "threshold": _THRESHOLD}
    want = None
    bs = None
    if b.baseline_at(n):
        bs, _, want = best_of(ref, b.repeats)
    if want is None:
        b.add(record("theory", n, t, case=case, params=params))
        return
    b.add(record("theory", n, t, case=case, params=params, baseline=ref_name, baseline_s=bs,
                 accuracy=rel_err(t.out, want),
                 accuracy_ref=f"max relative difference vs {ref_name}"))


def _theory_stage(b: _Bench, n: int) -> None:
    """The four theories on ``powerlaw(N)`` (N modes) at 100 log-spaced η, one record each."""
    spec = powerlaw(n, alpha=0.5)
    etas = np.geomspace(1.0, max(2.0, n / 2), _THEORY_ETAS)
    e = jnp.asarray(etas)
    lam, yk2 = np.asarray(spec.eigenvalues), np.asarray(spec.target_coefficients) ** 2
    s2, thr = _THEORY_SIGMA2, _THRESHOLD
    loop = "numpy loop over η"
    cases: dict[str, tuple[Callable[[], Any], Callable[[], np.ndarray | None], str]] = {
        "ek": (lambda: mse_ek(spec, e, s2), lambda: theory_ek(lam, yk2, etas, s2), loop),
        "rg": (lambda: mse_rg(spec, e, s2, thr),
               lambda: theory_rg(lam, yk2, etas, s2, thr, dof=False), loop),
        "rg_dof": (lambda: mse_rg(spec, e, s2, thr, dof_correction=True),
                   lambda: theory_rg(lam, yk2, etas, s2, thr, dof=True), loop),
        "spectral_bias": (lambda: mse_spectral_bias(spec, e, s2),
                          lambda: theory_spectral_bias(lam, yk2, etas, s2),
                          "scipy brentq loop over η"),
    }
    for case, (fn, ref, name) in cases.items():
        b.attempt("theory", n, lambda fn=fn, ref=ref, name=name, case=case:
                  _theory_case(b, n, case, fn, ref, name), case=case)


def _toy_stage(b: _Bench, m: int) -> None:
    problem = ToyProblem(degrees=(1, 2), target={_TOY_TARGET: 1.0}, n=_TOY_N, sigma2=_TOY_SIGMA2)
    seed = b.cfg.seed
    t = measure(lambda: monte_carlo(problem, _TOY_LAMBDAS, m, seed=seed, progress=False),
                b.repeats)
    mc = t.out
    params = {"n": _TOY_N, "sigma2": _TOY_SIGMA2, "kernels": _TOY_LAMBDAS.tolist(),
              "chunk_size": mc.chunk_size, "n_devices": mc.n_devices}
    if m > TOY_BASELINE_MAX_M:
        b.add(record("toy", m, t, params=params))
        return
    bs, _, (mean, se) = best_of(
        lambda: toy_monte_carlo(_TOY_LAMBDAS, m, _TOY_N, _TOY_SIGMA2, seed), b.repeats)
    z = np.abs(mc.mean[:, 0] - mean[:, 0]) / np.sqrt(mc.coef_se[:, 0] ** 2 + se[:, 0] ** 2)
    b.add(record("toy", m, t, params=params, baseline="numpy (batched)", baseline_s=bs,
                 accuracy=float(np.max(z)), accuracy_kind="z",
                 accuracy_ref="max |z| of the ψ_1 coefficient vs numpy (independent random "
                              "numbers: a statistical check, |z| ≲ 3 expected)"))


def _pipeline_stage(b: _Bench, n: int) -> None:
    eigs = None if n <= _PIPELINE_DENSE_MAX_N else 512
    trials, n_etas = (2, 4) if b.cfg.quick else (4, 8)
    cfg = curve.CurveConfig(task="synthetic-powerlaw", pool_size=n, trials=trials, n_etas=n_etas,
                            eigs=eigs, seed=b.cfg.seed)

    def once() -> dict[str, Any]:
        # a fresh folder per call: the job resumes from the empirical.jsonl it finds
        with tempfile.TemporaryDirectory(prefix="rgjax-bench-") as tmp:
            return curve.run(cfg, tmp, progress=False, plots=False, log=_silent)

    t = measure(once, 1)  # one warm run: the whole job is long
    params = {"task": cfg.task, "trials": trials, "n_etas": n_etas, "eigs": eigs,
              "stage_timings_s": t.out.get("timings")}
    b.add(record("pipeline", n, t, params=params))


def _silent(_: str) -> None:
    return None


# ---- the run ---------------------------------------------------------------------------------


def _compile_cache(on: bool) -> Callable[[], None]:
    """Turn JAX's persistent compilation cache on (``on``) or off for the run; returns the undo.

    Off by default: a cold time read from the cache would hide the compilation it is meant to
    show."""
    before = status()
    if on and not before.enabled:
        enable(folder_from_env() or default_folder())
        return disable
    if not on and before.enabled:
        disable()

        def restore() -> None:
            enable(before.folder)

        return restore
    return lambda: None


def _blas_limit(threads: int | None) -> contextlib.AbstractContextManager[Any]:
    """Cap the BLAS/LAPACK thread pools for the run (``threadpoolctl``, an optional dependency).

    On a CPU with few cores, or shared with other work, OpenBLAS threads that spin after a
    baseline's call starve XLA's own threads: rgjax calls that use LAPACK can then run 50× slower
    than alone. One thread for both sides gives stable, comparable numbers there."""
    if threads is None:
        return contextlib.nullcontext()
    ctl = optional("threadpoolctl")
    if ctl is None:
        raise ImportError("`blas_threads` needs threadpoolctl: pip install threadpoolctl")
    optional("scipy.linalg")  # load scipy's LAPACK (XLA's CPU LAPACK) so it is limited too
    return ctl.threadpool_limits(limits=threads, user_api="blas")


def _blas_info() -> list[dict[str, Any]] | None:
    """The loaded BLAS libraries and their thread counts (no file paths); None without
    threadpoolctl."""
    ctl = optional("threadpoolctl")
    if ctl is None:
        return None
    keys = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer")
    return [{k: d.get(k) for k in keys} for d in ctl.threadpool_info()]


def _device_info() -> dict[str, Any]:
    """The devices measured: platform, kind and memory of each local device."""
    devices = []
    for d in jax.local_devices():
        stats = d.memory_stats() or {}
        limit = stats.get("bytes_limit")
        devices.append({"id": d.id, "platform": d.platform, "kind": d.device_kind,
                        "memory_gib": None if limit is None else limit / 2**30})
    return {"backend": jax.default_backend(), "devices": devices,
            "device_count": jax.device_count(), "process_count": jax.process_count(),
            "cpu_count": os.cpu_count()}


def _versions() -> dict[str, Any]:
    """:func:`rgjax.jobs._io.versions` plus the baselines' libraries where installed."""
    out = versions()
    for name, dist in (("scipy", "scipy"), ("sklearn", "scikit-learn"), ("psutil", "psutil")):
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _start(cfg: BenchConfig, folder: Path, log: Log | None) -> _Bench:
    platform = jax.default_backend()
    name = "quick" if cfg.quick else ("cpu" if platform == "cpu" else "gpu")
    sizes = ladder(cfg, platform)
    repeats = cfg.repeats or (2 if cfg.quick else 3)
    bmax = BASELINE_MAX_N[name] if cfg.baseline_max_n is None else cfg.baseline_max_n
    results: dict[str, Any] = {
        "kind": "bench",
        "description": "rgjax stage timings on this machine's devices: cold (compile included), "
                       "compile, warm (best of repeats), baseline, accuracy, peak memory",
        "config": dataclasses.asdict(cfg),
        "resolved": {"platform": platform, "ladder": name, "sizes": sizes, "repeats": repeats,
                     "baseline_max_n": bmax, "warm_budget_s": WARM_BUDGET_S,
                     "kernel": {"name": "fc", "activation": "relu", **_KERNEL}},
        "device": _device_info(),
        "compile_cache": {"requested": cfg.compile_cache, "enabled": status().enabled},
        "blas": _blas_info(),
        "versions": _versions(),
        "records": [],
        "complete": False,
        "timings": {},
    }
    return _Bench(cfg, folder, sizes, repeats, bmax, results, log)


@locked("rgjax bench")
def run(cfg: BenchConfig, out: PathLike, *, progress: bool = True, plots: bool = True,
        log: Log | None = print) -> dict[str, Any]:
    """Benchmark the local devices; write ``out/bench.json``, ``out/bench.md`` and (``plots``)
    ``out/bench.png``.

    Args:
      cfg: the run's configuration (sizes default to the platform's ladder, :data:`LADDERS`).
      out: the results folder (created).
      progress: log one line per measurement as it finishes.
      plots: draw ``bench.png`` from the written JSON.
      log: receives the lines and the final table (None: silent).

    Returns:
      The results dictionary as written to JSON: ``config``, ``resolved`` (platform, sizes,
      repeats), ``device``, ``compile_cache``, ``versions`` and ``records``, one per measurement
      (see :func:`record`).
    """
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("rgjax bench measures float64 computations: call "
                         "jax.config.update('jax_enable_x64', True) first.")
    t_start = time.perf_counter()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    undo = _compile_cache(cfg.compile_cache)
    try:
        with _blas_limit(cfg.blas_threads):
            b = _start(cfg, folder, log if progress else None)
            if log is not None:
                log(_header(b.results))
            _stages(b)
    finally:
        undo()
    results = b.results
    results["complete"] = True
    results["timings"]["total_s"] = time.perf_counter() - t_start
    results = save_and_plot(results, folder / RESULTS_FILE, save_bench_figures if plots else None)
    _save(results, folder)
    if log is not None:
        log(format_table(results))
        log(f"total {results['timings']['total_s']:.1f} s; wrote {folder / RESULTS_FILE}, "
            f"{folder / TABLE_FILE}" + (f" and {folder / 'bench.png'}" if plots else ""))
    return results


def _stages(b: _Bench) -> None:
    """Every selected stage at every size: the pool stages per N on one Gram matrix each, then
    the theories, the toy and the pipeline."""
    fallback_seen = False
    for n in sorted({n for s in POOL_STAGES for n in b.sizes.get(s, ())}):
        fallback_seen = _pool_at(b, n, fallback_seen)
    for n in b.sizes.get("theory", ()):
        _theory_stage(b, n)
    for m in b.sizes.get("toy", ()):
        b.attempt("toy", m, lambda m=m: _toy_stage(b, m))
    for n in b.sizes.get("pipeline", ()):
        b.attempt("pipeline", n, lambda n=n: _pipeline_stage(b, n))


# ---- tables ----------------------------------------------------------------------------------


def _stage_name(rec: Mapping[str, Any]) -> str:
    case = rec.get("case")
    return f"{rec['stage']}/{case}" if case else str(rec["stage"])


def _size(rec: Mapping[str, Any]) -> str:
    n = int(rec["n"])
    return f"m={n:,}" if rec["stage"] == "toy" else f"{n:,}"


def _num(v: Any, fmt: str = ".3g") -> str:
    return "—" if v is None else format(float(v), fmt)


def _accuracy(rec: Mapping[str, Any]) -> str:
    v = rec.get("accuracy")
    if v is None:
        return "—"
    return f"z={float(v):.2f}" if rec.get("accuracy_kind") == "z" else f"{float(v):.1e}"


def _memory(rec: Mapping[str, Any]) -> str:
    text = f"RSS {_num(rec.get('peak_rss_mb'), '.0f')} MB"
    dev = rec.get("device_peak_mb")
    return text if dev is None else f"{text}, device {float(dev):.0f} MB"


def _table_rows(results: Mapping[str, Any]) -> list[str]:
    head = ["stage", "size", "cold s", "compile s", "warm s", "baseline", "baseline s", "ratio",
            "accuracy", "memory", "note"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for rec in results.get("records") or []:
        note = rec.get("error") or rec.get("note") or ""
        note = note.replace("|", "\\|")[:120]
        ratio = "—" if rec.get("ratio") is None else f"{float(rec['ratio']):.3g}×"
        cells = [_stage_name(rec), _size(rec), _num(rec.get("cold_s")),
                 _num(rec.get("compile_s")), _num(rec.get("warm_s")), rec.get("baseline") or "—",
                 _num(rec.get("baseline_s")), ratio, _accuracy(rec), _memory(rec),
                 ("failed: " if rec.get("error") else "") + note]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def format_table(results: Mapping[str, Any]) -> str:
    """The results as a Markdown table: one row per measurement (stage, size, cold/compile/warm
    seconds, baseline and its seconds, ratio = baseline / warm, accuracy, peak memory, note)."""
    return "\n".join(_table_rows(results))


def _header(results: Mapping[str, Any]) -> str:
    dev = results.get("device") or {}
    kinds = sorted({d["kind"] for d in dev.get("devices") or []})
    res = results.get("resolved") or {}
    cache = "on" if (results.get("compile_cache") or {}).get("enabled") else "off"
    blas = (results.get("config") or {}).get("blas_threads")
    return (f"rgjax bench on {len(dev.get('devices') or [])} × {', '.join(kinds) or '?'} "
            f"({dev.get('backend', '?')}, {dev.get('cpu_count', '?')} CPU cores), "
            f"{res.get('ladder', '?')} sizes, {res.get('repeats', '?')} warm repeats, "
            f"persistent compilation cache {cache}"
            + (f", BLAS limited to {blas} thread(s)" if blas else ""))


def _markdown(results: Mapping[str, Any]) -> str:
    v = results.get("versions") or {}
    lines = ["# rgjax bench", "", _header(results) + ".", "",
             f"rgjax {v.get('rgjax')}, jax {v.get('jax')}, numpy {v.get('numpy')}, "
             f"scipy {v.get('scipy')}, scikit-learn {v.get('sklearn')}; {v.get('platform')}.",
             "", format_table(results), "",
             "Seconds of wall time. cold: the first call after clearing JAX's in-memory caches "
             "(compilation included); compile: tracing, lowering and XLA compilation within it; "
             "warm: the best later call; ratio: baseline s / warm s (above 1: rgjax is faster); "
             "accuracy: largest relative difference from the reference named in bench.json "
             "(z: a statistical check in standard errors); memory: the process's peak resident "
             "memory so far (and the devices' peak where reported)."]
    if not results.get("complete"):
        lines += ["", "Incomplete: the run was interrupted or is still going."]
    return "\n".join(lines) + "\n"
