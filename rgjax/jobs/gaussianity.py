"""Are the kernel's feature modes Gaussian? The ``rgjax gaussianity`` job (paper Figs. 2 and 5).

The pool, kernel and spectrum are built exactly as ``rgjax curve`` builds them
(:func:`rgjax.jobs._pipeline.build_pool`, same defaults); then Gaussian and Cauchy fits of the
feature modes (docs/theory.md §6) → ``gaussianity.json`` (atomic) + figures + a printed table.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rgjax._typing import ArrayLike, PathLike
from rgjax._validate import check_int
from rgjax.datasets import Task
from rgjax.gaussianity import (
    MIN_POINTS,
    GaussianityReport,
    check_modes,
    crossover,
    default_high_modes,
    mode_diagnostics,
    mode_features,
    refine_sweep,
    subset,
    sweep_modes,
)
from rgjax.jobs._io import locked, save_and_plot, versions
from rgjax.jobs._pipeline import Log, PoolConfig, build_pool, task_summary
from rgjax.jobs._stages import Stages
from rgjax.plotting import save_gaussianity_figures
from rgjax.spectrum import Spectrum

__all__ = ["GaussianityConfig", "RESULTS_FILE", "format_table", "run"]

#: The JSON file the job writes into its folder.
RESULTS_FILE = "gaussianity.json"

_CONVENTIONS = {
    "modes": "1-based mode numbers k (k = 1 is the largest eigenvalue)",
    "features": "phi_k(x_i) = sqrt(N) v_k[i], mean square 1 over the pool",
    "loglik": "mean log-likelihood per point of the maximum-likelihood fit",
    "crossover_sweep": "smallest swept k with loglik_cauchy > loglik_gauss for every "
                       "swept j >= k",
    "crossover": "the same rule on `refined` = sweep + every mode between crossover_sweep "
                 "and the swept mode below it (exact to one mode)",
}


@dataclasses.dataclass(frozen=True)
class GaussianityConfig(PoolConfig):
    """Everything that defines a ``rgjax gaussianity`` run (stored in ``gaussianity.json``).

    The task and kernel fields are :class:`~rgjax.jobs._pipeline.PoolConfig`'s (the defaults of
    ``rgjax curve``). Mode numbers are 1-based. ``modes_pair`` defaults to (2, 3): mode 1 of a
    kernel with positive entries (ReLU NNGP) is the near-constant Perron mode, whose histogram is
    a narrow bump away from 0.
    """

    modes_pair: tuple[int, int] = dataclasses.field(
        default=(2, 3), metadata={"help": "two low modes (1-based) for the joint scatter"})
    high_modes: tuple[int, ...] | None = dataclasses.field(
        default=None, metadata={"help": "high modes for the tail histograms "
                                        "(default N/2, 0.9N, N)"})
    n_points: int = dataclasses.field(
        default=40, metadata={"help": "modes in the log-spaced sweep"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(tuple(self.modes_pair)) != 2:
            raise ValueError(f"`modes_pair` must be two mode numbers; got {self.modes_pair!r}.")
        # before the pool, the kernel and the spectrum (sweep_modes says the same, but late)
        check_int(self.n_points, "n_points", 2, why="a sweep needs both ends")


def _modes_block(spec: Spectrum, report: GaussianityReport,
                 modes: np.ndarray) -> dict[str, Any]:
    """``report``'s entries for ``modes`` ``(m,)`` plus their raw feature values (for figures)."""
    x = mode_features(spec, modes)
    return subset(report, modes.tolist()).to_dict() | {"features": np.asarray(x).T.tolist()}


def _with_targets(block: dict[str, Any], y: ArrayLike) -> dict[str, Any]:
    # The pair figure colours points by target (class); only N more numbers in the JSON.
    return block | {"targets": np.asarray(y, float).tolist()}


def _check(cfg: GaussianityConfig, task: Task) -> tuple[np.ndarray, np.ndarray]:
    """``(pair, high)`` mode numbers, validated against N before the expensive part."""
    n = task.n_pool
    if n < MIN_POINTS:
        raise ValueError(
            f"too few points: the pool has N={n}; the diagnostics need >= {MIN_POINTS}."
        )
    pair = check_modes(cfg.modes_pair, n, "modes_pair")
    high = check_modes(default_high_modes(n) if cfg.high_modes is None else cfg.high_modes, n,
                       "high_modes")
    return pair, high


def _diagnostics(spec: Spectrum, y: ArrayLike, cfg: GaussianityConfig, pair: np.ndarray,
                 high: np.ndarray) -> dict[str, Any]:
    """The sweep, its refinement and crossovers, and the pair and tail blocks."""
    swept = sweep_modes(spec.n_modes, cfg.n_points)
    # One call for every mode needed: the jitted core compiles once per run.
    everything = mode_diagnostics(spec, np.unique(np.concatenate([swept, pair, high])))
    sweep = subset(everything, swept.tolist())
    refined = refine_sweep(spec, sweep)
    first_c = next((int(k) for k, b in zip(sweep.modes, sweep.better) if b == "cauchy"), None)
    return {
        "sweep": sweep.to_dict(),
        "refined": refined.to_dict(),
        "crossover": crossover(refined),
        "crossover_sweep": crossover(sweep),
        "first_cauchy_better": first_c,
        "pair": _with_targets(_modes_block(spec, everything, pair), y),
        "tails": _modes_block(spec, everything, high),
    }


@locked("rgjax gaussianity")
def run(cfg: GaussianityConfig, out: PathLike, *, progress: bool = True, plots: bool = True,
        log: Log = print) -> dict[str, Any]:
    """Feature-mode diagnostics of a task's NNGP kernel; writes ``out/gaussianity.json``.

    Computes :func:`~rgjax.gaussianity.gaussianity_sweep` (``n_points`` log-spaced modes), its
    :func:`~rgjax.gaussianity.crossover` (``crossover_sweep``), the mode-exact ``crossover`` after
    :func:`~rgjax.gaussianity.refine_sweep` (``refined``), and the reports of ``modes_pair``
    (Fig. 2) and ``high_modes`` (Fig. 5, default
    :func:`~rgjax.gaussianity.default_high_modes`), storing the raw feature values of those few
    modes (and the targets, for colouring the pair scatter). Writes the JSON atomically, then
    (``plots``) ``gaussianity_pair.png``, ``gaussianity_tails.png`` and
    ``gaussianity_sweep.png``, and logs a short table.

    Returns:
      The results dict as written to JSON (NaN as None).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    pool = build_pool(cfg, check=lambda task: _check(cfg, task), progress=progress, log=log,
                      stages=Stages(folder, log=log))
    task, spec, timings = pool.task, pool.spec, dict(pool.timings)
    del pool  # the Gram matrix is no longer needed: free it before the diagnostics
    pair, high = _check(cfg, task)

    t0 = time.perf_counter()
    blocks = _diagnostics(spec, task.y, cfg, pair, high)
    timings["diagnostics"] = time.perf_counter() - t0

    results = {
        "config": dataclasses.asdict(cfg),
        "versions": versions(),
        "seed": cfg.seed,
        "task": task_summary(task),
        "spectrum": {"n_modes": spec.n_modes, "n_pool": spec.n_pool, "trace": float(spec.trace),
                     "clipped_mass": float(spec.clipped_mass)},
        "conventions": _CONVENTIONS,
        **blocks,
        "timings": timings,
    }
    results = save_and_plot(results, folder / RESULTS_FILE,
                            save_gaussianity_figures if plots else None)
    log(format_table(results))
    return results


def _num(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _row(block: Mapping[str, Any], i: int) -> str:
    return (f"{block['modes'][i]:>6} {_num(block['eigenvalues'][i], '10.3e')} "
            f"{_num(block['loglik_gauss'][i], '9.3f')} {_num(block['loglik_cauchy'][i], '9.3f')} "
            f"{_num(block['loglik_difference'][i], '+8.3f')} {_num(block['ks_gauss'][i], '6.3f')} "
            f"{_num(block['ks_cauchy'][i], '6.3f')} {_num(block['excess_kurtosis'][i], '9.2f')}  "
            f"{block['better'][i]}")


def _sweep_rows(results: Mapping[str, Any], max_rows: int) -> np.ndarray:
    """Indices of the sweep rows to print: evenly spaced, plus the crossover and the mode before."""
    sw = results["sweep"]
    m = len(sw["modes"])
    rows = np.round(np.linspace(0, m - 1, min(m, max_rows))).astype(int)
    cs = results.get("crossover_sweep")
    if cs in sw["modes"]:
        i = sw["modes"].index(cs)
        rows = np.concatenate([rows, [max(i - 1, 0), i]])
    return np.unique(rows)


def format_table(results: Mapping[str, Any], max_rows: int = 16) -> str:
    """A short printed summary: a subsample of the sweep, the pair and tail modes, the crossover."""
    sw = results["sweep"]
    rows = _sweep_rows(results, max_rows)
    head = (f"{'k':>6} {'lambda_k':>10} {'ll Gauss':>9} {'ll Cauchy':>9} {'C-G':>8} "
            f"{'KS G':>6} {'KS C':>6} {'ex.kurt':>9}  better")
    task = results.get("task", {})
    lines = [f"feature-mode Gaussianity — {task.get('name')} (N = {task.get('n_pool')}); "
             f"sweep of {len(sw['modes'])} modes (showing {rows.size})", head, "-" * len(head)]
    lines += [_row(sw, int(i)) for i in rows]
    for name in ("pair", "tails"):
        blk = results[name]
        lines.append(f"{name} modes:")
        lines += [_row(blk, i) for i in range(len(blk["modes"]))]
    cross = results.get("crossover")
    lines.append("crossover (Cauchy better from here on): "
                 + ("none in the sweep" if cross is None else
                    f"k = {cross} (sweep resolution: k = {results.get('crossover_sweep')})")
                 + f"; first Cauchy-better swept mode: {results.get('first_cauchy_better')}")
    return "\n".join(lines)
