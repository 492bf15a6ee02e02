"""The ``rgjax optimize`` job: fit the kernel to the predicted error, then check it empirically.

1. Load the task (default: bundled MNIST 0-1, subsampled to ``pool_size`` = 500 points: one
   optimisation step costs an ``eigh`` and its derivative, ≈ 0.25 s at N = 500 on 2 CPU cores but
   ≈ 2 s at N = 1,000; ``pool_size=None`` uses the whole pool).
2. :func:`rgjax.optimize.fit_kernel` from (W_std, b_std, σ²) (per layer with ``per_layer``) with
   ``optax.adam(learning_rate)`` for ``steps`` steps on the smooth-cutoff objective at ``eta``.
3. At the initial and the final parameters: the theories (the objective, the paper's hard RG,
   rgjax's corrected RG, spectral bias) and the empirical GP learning curve (``trials`` training
   sets per η) on ``curve_etas`` (default: 8 log-spaced η up to N/2, plus ``eta``).
4. Validation: on a (W_std, b_std) ``grid`` shared by all layers at the initial σ², the objective
   and the empirical MSE at ``eta``; the optimum of each is reported next to the gradient-found
   parameters (``grid=False`` skips it).
5. ``out/optimize.json`` (atomic) and, with ``plots``, ``optimize_loss.png``,
   ``optimize_mse.png`` and ``optimize_grid.png``.

Whether the theory's optimum is empirically good is reported in ``summary``, not assumed: every
empirical point uses the same training sets (same key, same η), so differences between parameter
settings are paired and their standard errors small.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from tqdm import tqdm

from rgjax._typing import Array, ArrayLike, PathLike, Scalar
from rgjax._validate import check_int, check_threshold
from rgjax.datasets import Task, load_task
from rgjax.empirical import learning_curve
from rgjax.jobs._io import locked, save_and_plot, versions
from rgjax.jobs._pipeline import default_etas
from rgjax.kernels import Kernel, fc, gram
from rgjax.optimize import (
    FitResult,
    build_kernel,
    fit_kernel,
    init_params,
    natural_params,
    task_arrays,
)
from rgjax.plotting import save_optimize_figures
from rgjax.spectrum import Spectrum, from_gram
from rgjax.theory import check_objective, check_temperature, mse_rg, mse_spectral_bias

__all__ = ["OptimizeConfig", "RESULTS_FILE", "DEFAULT_GRID", "run", "format_table"]

RESULTS_FILE = "optimize.json"
#: Default validation grid: (W_std values, b_std values), shared by all layers.
DEFAULT_GRID = ((0.5, 1.0, math.sqrt(2.0), 2.0, 3.0), (0.01, 0.03, 0.1, 0.3, 1.0, 3.0))

Grid = tuple[tuple[float, ...], tuple[float, ...]]
Log = Callable[[str], None]


def _opt(default: Any, text: str) -> Any:
    """A Config field: its default and its ``--help`` text."""
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    """Every option of ``rgjax optimize``, with its default (the CLI's flags are built from it)."""

    task: str = _opt("mnist-0-1", "task name (default mnist-0-1)")
    source: str = _opt("auto", "data source: auto, tfds, bundled or synthetic (default auto)")
    pool_size: int | None = _opt(
        500, "pool points used (default 500: one step costs ~0.2 s on 2 cores)")
    eta: int = _opt(100, "training-set size η (default 100)")
    objective: str = _opt("rg", "predicted MSE to minimise (default rg, the paper's)")
    steps: int = _opt(150, "optimiser steps (default 150)")
    learning_rate: float = _opt(0.05, "adam's learning rate (default 0.05)")
    trials: int = _opt(20, "GP trials for the empirical check")
    seed: int = _opt(0, "random seed of the pool subsample and the training sets (default 0)")
    grid: Grid | None | bool = _opt(
        None, "(W_std values, b_std values) of the empirical grid search; None: the default "
        "grid, False: skip the grid search")
    threshold: float = _opt(0.5, "learnability threshold T (default 0.5)")
    temperature: float = _opt(0.05, "smooth-cutoff temperature τ of the objective (default 0.05)")
    depth: int = _opt(2, "hidden layers of the fully connected NNGP (default 2)")
    activation: str = _opt("relu", "activation (default relu)")
    W_std: float = _opt(math.sqrt(2.0), "initial weight standard deviation (default √2)")
    b_std: float = _opt(0.1, "initial bias standard deviation (default 0.1)")
    sigma2: float = _opt(1e-8, "initial bare ridge σ² (default 1e-8)")
    per_layer: bool = _opt(
        True, "one W_std and b_std per layer (default; False: one for all layers)")
    curve_etas: tuple[int, ...] | None = _opt(
        None, "training-set sizes of the learning curves (default: 8 log-spaced up to N/2)")


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def _check_grid(grid: Any) -> Grid | None:
    if grid is None:
        return DEFAULT_GRID
    if grid is False or (isinstance(grid, (tuple, list)) and len(grid) == 0):
        return None
    try:
        w, b = (tuple(float(v) for v in axis) for axis in grid)
    except (TypeError, ValueError):
        raise ValueError(
            "`grid` must be a pair (W_std values, b_std values), None for the default grid, or "
            f"False to skip the grid search; got {grid!r}."
        ) from None
    if not w or not b or min(w + b) <= 0 or not all(map(math.isfinite, w + b)):
        raise ValueError(
            f"`grid` values must be finite and > 0, and each axis non-empty; got {grid!r}."
        )
    return w, b


def _check_config(cfg: OptimizeConfig) -> Grid | None:
    """Validate the settings that do not need the task; returns the grid axes (None: no grid)."""
    check_objective(cfg.objective)
    check_int(cfg.steps, "steps", 1)
    grid_axes = _check_grid(cfg.grid)
    check_int(cfg.trials, "trials", 2, why="a standard error needs two training sets")
    if not (math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0):
        raise ValueError(f"`learning_rate` must be finite and > 0; got {cfg.learning_rate!r}.")
    check_threshold(cfg.threshold)
    check_temperature(cfg.temperature)
    if cfg.temperature is None:
        raise ValueError(
            "the optimize job optimises the smooth-cutoff objective: pass temperature > 0."
        )
    return grid_axes


def _curve_etas(cfg: OptimizeConfig, n: int) -> np.ndarray:
    """The learning curves' training-set sizes (always including ``cfg.eta``), checked."""
    check_int(cfg.eta, "eta", 1, n - 1, why=f"a training set inside the pool of N = {n}")
    etas = np.asarray(default_etas(n, 8) if cfg.curve_etas is None else cfg.curve_etas, dtype=int)
    etas = np.unique(np.concatenate([etas, [int(cfg.eta)]]))
    if etas.min() < 1 or etas.max() >= n:
        raise ValueError(f"`curve_etas` must lie in [1, N-1] = [1, {n - 1}].")
    return etas


# ---------------------------------------------------------------------------------------------
# Theories and empirical curves of one kernel
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("objective",))
def _theory_on_spec(
    spec: Spectrum, eta: ArrayLike, sigma2: Scalar, threshold: Scalar, temperature: Scalar, *,
    objective: str,
) -> Array:
    if objective == "spectral_bias":
        return mse_spectral_bias(spec, eta, sigma2)
    return mse_rg(spec, eta, sigma2, threshold, temperature=temperature,
                  dof_correction=objective == "rg_dof")


@partial(jax.jit, static_argnames=("objective",))
def _all_theories(
    spec: Spectrum, eta: Array, sigma2: Scalar, threshold: Scalar, temperature: Scalar, *,
    objective: str,
) -> dict[str, Array]:
    """The objective (smooth cutoff) and the paper's hard RG, rgjax's RG+dof, spectral bias."""
    return {
        "objective": _theory_on_spec(spec, eta, sigma2, threshold, temperature,
                                     objective=objective),
        "rg": mse_rg(spec, eta, sigma2, threshold),
        "rg_dof": mse_rg(spec, eta, sigma2, threshold, dof_correction=True),
        "spectral_bias": mse_spectral_bias(spec, eta, sigma2),
    }


def _evaluate(
    kern: Kernel, x: Array, y: Array, sigma2: float, etas: np.ndarray, cfg: OptimizeConfig,
    progress: bool,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Theory curves and the empirical GP learning curve of one kernel on the pool."""
    K = gram(kern, x)
    spec = from_gram(K, y)
    e = np.asarray(etas, dtype=spec.eigenvalues.dtype)
    theories = _all_theories(spec, e, sigma2, cfg.threshold, cfg.temperature,
                             objective=cfg.objective)
    pred = {k: np.asarray(v) for k, v in theories.items()}
    curve = learning_curve(K, y, etas, sigma2, trials=cfg.trials, key=cfg.seed,
                           progress=progress)
    emp = {"mse_pool": curve.mse_pool, "mse_pool_se": curve.mse_pool_se,
           "mse_heldout": curve.mse_heldout, "mse_heldout_se": curve.mse_heldout_se,
           "mse_pool_trials": curve.mse_pool_trials}
    return pred, emp


def _endpoints(
    cfg: OptimizeConfig, x: Array, y: Array, init: Mapping[str, Array], fit: FitResult,
    etas: np.ndarray, progress: bool,
) -> dict[str, dict[str, Any]]:
    """Theories and empirical curves at the initial and the final parameters."""
    points = {}
    idx = int(np.searchsorted(etas, cfg.eta))
    for name, p in (("initial", init), ("final", fit.params)):
        nat = natural_params(p, cfg.depth)
        kern = build_kernel(p, depth=cfg.depth, activation=cfg.activation)
        pred, emp = _evaluate(kern, x, y, nat["sigma2"], etas, cfg, progress)
        points[name] = nat | {
            "predicted": pred, "empirical": emp,
            "at_eta": {"predicted": float(pred["objective"][idx]),
                       "empirical": float(emp["mse_pool"][idx]),
                       "empirical_se": float(emp["mse_pool_se"][idx]),
                       "empirical_trials": emp["mse_pool_trials"][idx]},
        }
    return points


# ---------------------------------------------------------------------------------------------
# The grid search
# ---------------------------------------------------------------------------------------------


def _grid_best(
    values: np.ndarray, grid: Grid, cells: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """The grid point minimising ``values`` (non-finite values never win), with its numbers."""
    masked = np.where(np.isfinite(values), values, np.inf)
    i, j = np.unravel_index(int(np.argmin(masked)), values.shape)
    return {"W_std": grid[0][i], "b_std": grid[1][j], "index": [int(i), int(j)],
            "predicted": float(cells["predicted"][i, j]),
            "empirical": float(cells["empirical"][i, j]),
            "empirical_se": float(cells["empirical_se"][i, j]),
            "empirical_trials": cells["empirical_trials"][i, j]}


def _grid_search(
    cfg: OptimizeConfig, x: Array, y: Array, grid: Grid, progress: bool
) -> dict[str, Any]:
    """Predicted (the objective) and empirical MSE at ``cfg.eta`` on a (W_std, b_std) grid."""
    w_vals, b_vals = grid
    shape = (len(w_vals), len(b_vals))
    cells: dict[str, np.ndarray] = {k: np.empty(shape)
                                    for k in ("predicted", "empirical", "empirical_se")}
    cells["empirical_trials"] = np.empty(shape + (cfg.trials,))
    points = [(i, j) for i in range(shape[0]) for j in range(shape[1])]
    for i, j in tqdm(points, desc="grid (W_std, b_std)", unit="point", disable=not progress):
        kern = fc(cfg.depth, cfg.activation, W_std=w_vals[i], b_std=b_vals[j])
        K = gram(kern, x)
        spec = from_gram(K, y)
        cells["predicted"][i, j] = float(_theory_on_spec(
            spec, float(cfg.eta), cfg.sigma2, cfg.threshold, cfg.temperature,
            objective=cfg.objective))
        curve = learning_curve(K, y, [cfg.eta], cfg.sigma2, trials=cfg.trials, key=cfg.seed,
                               progress=False)
        cells["empirical"][i, j] = float(curve.mse_pool[0])
        cells["empirical_se"][i, j] = float(curve.mse_pool_se[0])
        cells["empirical_trials"][i, j] = curve.mse_pool_trials[0]
    return {"W_std": list(w_vals), "b_std": list(b_vals), "sigma2": float(cfg.sigma2), **cells,
            "best_predicted": _grid_best(cells["predicted"], grid, cells),
            "best_empirical": _grid_best(cells["empirical"], grid, cells)}


# ---------------------------------------------------------------------------------------------
# Summary and the job
# ---------------------------------------------------------------------------------------------


def _paired(a: ArrayLike, b: ArrayLike) -> dict[str, float]:
    """Mean and standard error of the per-trial difference ``a − b`` (same training sets)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(d.size))}


def _summary(
    points: Mapping[str, Mapping[str, Any]], grid_res: Mapping[str, Any] | None,
    init: Mapping[str, Array], fit: FitResult, depth: int,
) -> dict[str, Any]:
    """Predicted and empirical MSE at ``eta`` of each optimum, and their paired differences."""
    summary: dict[str, Any] = {
        "initial": points["initial"]["at_eta"] | natural_params(init, depth),
        "gradient": points["final"]["at_eta"] | natural_params(fit.params, depth),
    }
    grad_trials = summary["gradient"]["empirical_trials"]
    summary["paired_differences"] = {
        "gradient_minus_initial": _paired(grad_trials, summary["initial"]["empirical_trials"])}
    if grid_res is not None:
        summary["grid_best_predicted"] = grid_res["best_predicted"]
        summary["grid_best_empirical"] = grid_res["best_empirical"]
        for key in ("grid_best_predicted", "grid_best_empirical"):
            summary["paired_differences"][f"gradient_minus_{key}"] = _paired(
                grad_trials, summary[key]["empirical_trials"])
    return summary


def _config_block(cfg: OptimizeConfig, task: Task | None, grid_axes: Grid | None) -> dict:
    """The ``"config"`` entry of ``optimize.json``."""
    return {
        "task": getattr(task, "name", None), "source": getattr(task, "source", None),
        "pool_size": cfg.pool_size, "eta": int(cfg.eta), "objective": cfg.objective,
        "steps": cfg.steps, "learning_rate": cfg.learning_rate, "optimizer": "adam",
        "trials": cfg.trials, "seed": cfg.seed, "threshold": cfg.threshold,
        "temperature": cfg.temperature, "depth": cfg.depth, "activation": cfg.activation,
        "W_std": cfg.W_std, "b_std": cfg.b_std, "sigma2": cfg.sigma2,
        "per_layer": cfg.per_layer, "grid": None if grid_axes is None else list(grid_axes),
        "path": "resolvent",
    }


def _fit(cfg: OptimizeConfig, x: Array, y: Array, progress: bool) -> tuple[dict, FitResult]:
    init = init_params(cfg.depth, cfg.W_std, cfg.b_std, cfg.sigma2, per_layer=cfg.per_layer)
    fit = fit_kernel(x, y=y, eta=float(cfg.eta), objective=cfg.objective, init=init,
                     optimizer=optax.adam(cfg.learning_rate), steps=cfg.steps,
                     threshold=cfg.threshold, temperature=cfg.temperature,
                     activation=cfg.activation, depth=cfg.depth, progress=progress)
    return init, fit


@locked("rgjax optimize")
def run(
    cfg: OptimizeConfig,
    out: PathLike,
    *,
    task: Task | None = None,
    progress: bool = True,
    plots: bool = True,
    log: Log | None = print,
) -> dict:
    """Run the ``rgjax optimize`` job (see the module docstring) and write ``out/optimize.json``.

    Args:
      cfg: the settings.
      out: results folder (created if needed).
      task: a pre-loaded task to use instead of loading ``cfg.task``.
      progress: show progress bars.
      plots: draw the figures into ``out``.
      log: called with each progress line and the final table (None: silent).

    Returns:
      The results dictionary as written to JSON (NaN as None).
    """
    say = log if log is not None else (lambda _msg: None)
    grid_axes = _check_config(cfg)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if task is None:
        task = load_task(cfg.task, pool_size=cfg.pool_size, source=cfg.source, seed=cfg.seed,
                         verbose=progress)
    x, y = task_arrays(task)
    n = int(x.shape[0])
    timings["load_task"] = time.perf_counter() - t0
    etas = _curve_etas(cfg, n)
    say(f"task {task.name}: N = {n}, d = {x.shape[1]}; objective {cfg.objective} at eta = "
        f"{cfg.eta}, T = {cfg.threshold:g}, tau = {cfg.temperature:g}")

    t0 = time.perf_counter()
    init, fit = _fit(cfg, x, y, progress)
    timings["fit"] = time.perf_counter() - t0
    say(f"fit: loss {fit.initial_loss:.4g} -> {fit.final_loss:.4g} in {cfg.steps} steps "
        f"({timings['fit']:.1f} s, {fit.n_traces} compilation)")
    t0 = time.perf_counter()
    points = _endpoints(cfg, x, y, init, fit, etas, progress)
    timings["evaluate"] = time.perf_counter() - t0
    grid_res = None
    if grid_axes is not None:
        t0 = time.perf_counter()
        grid_res = _grid_search(cfg, x, y, grid_axes, progress)
        timings["grid"] = time.perf_counter() - t0

    results = {
        "kind": "rgjax.optimize",
        "config": _config_block(cfg, task, grid_axes),
        "versions": versions(),
        "task": {"name": task.name, "n_pool": n, "dim": int(x.shape[1])},
        "fit": fit.to_dict(),
        "etas": etas,
        "initial": points["initial"],
        "final": points["final"],
        "grid": grid_res,
        "summary": _summary(points, grid_res, init, fit, cfg.depth),
        "timings": timings,
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    results = save_and_plot(results, Path(out) / RESULTS_FILE,
                            save_optimize_figures if plots else None)
    say(format_table(results))
    return results


# ---------------------------------------------------------------------------------------------
# The printed table
# ---------------------------------------------------------------------------------------------


def _fmt_params(entry: Mapping[str, Any]) -> str:
    def vals(v: Any) -> str:
        v = v if isinstance(v, list) else [v]
        return "/".join(f"{float(u):.3g}" for u in v)

    return f"W_std {vals(entry['W_std'])}, b_std {vals(entry['b_std'])}"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def format_table(results: Mapping[str, Any]) -> str:
    """The printed table of ``rgjax optimize``: predicted and empirical MSE at each optimum."""
    s = results["summary"]
    cfg = results["config"]
    lines = [f"objective {cfg['objective']} at eta = {cfg['eta']} ({cfg['trials']} trials per "
             "empirical point)",
             f"{'':24} {'predicted':>10} {'empirical ± SE':>22}  parameters"]
    rows = [("initial", s["initial"]), ("gradient optimum", s["gradient"])]
    rows += [(label, s[key]) for label, key in (("grid best (theory)", "grid_best_predicted"),
                                                ("grid best (empirical)", "grid_best_empirical"))
             if key in s]
    for label, e in rows:
        emp = f"{_num(e['empirical'])} ± {_num(e.get('empirical_se'))}"
        extra = f", sigma2 {e['sigma2']:.3g}" if "sigma2" in e else ""
        lines.append(f"{label:24} {_num(e['predicted']):>10} {emp:>22}  {_fmt_params(e)}{extra}")
    for key, d in (s.get("paired_differences") or {}).items():
        what = key.replace("gradient_minus_", "gradient optimum − ").replace("_", " ")
        lines.append(f"paired (same training sets): {what}: {_num(d['mean'])} ± {_num(d['se'])}")
    return "\n".join(lines)
