"""The Hermite toy model of non-Gaussian reweighting: the ``rgjax toy`` job (paper Fig. 3).

Kernel ``λ_1ψ_1ψ_1 + λ_>ψ_2ψ_2``, target ``ψ_{target_degree}``: a Monte Carlo of the averaged exact
posterior (:func:`rgjax.toy.monte_carlo`) against the standard theory (0) and the input-dependent
RG predictions (docs/theory.md §5) → ``toy.json`` (atomic) + ``toy.png`` + a printed table.

The Monte Carlo resumes: its running sums are kept in ``DIR/stages/monte_carlo.npz`` every 30 s,
at the end and on Ctrl-C, so a rerun of the same command continues where the last one stopped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rgjax._typing import PathLike
from rgjax._validate import check_int
from rgjax.jobs._io import locked, save_and_plot, versions
from rgjax.jobs._pipeline import Log
from rgjax.jobs._stages import Stages
from rgjax.plotting import save_toy_figures
from rgjax.toy import (
    QUAD_ORDER,
    ToyMonteCarlo,
    ToyProblem,
    gaussian_rg_prediction,
    hermite,
    hermite_moment,
    monte_carlo,
    rg_first_order,
    rg_prediction,
    standard_prediction,
)

__all__ = ["RESULTS_FILE", "ToyConfig", "format_table", "run"]

#: The JSON file the job writes into its folder.
RESULTS_FILE = "toy.json"
#: The stage that keeps the Monte Carlo's running sums (``DIR/stages/monte_carlo.npz``).
_CHECKPOINT = "monte_carlo"
#: The kernel's modes kept below the cutoff: ψ_1 (ψ_2 is integrated out).
_KEPT = (1,)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """Everything that defines a ``rgjax toy`` run (the paper's Fig. 3 by default).

    All ``lambdas_greater`` share the same ``m`` data sets (one pass; each estimate equals a
    separate run with the same seed).
    """

    lambdas_greater: tuple[float, ...] = dataclasses.field(
        default=(0.0, 0.1), metadata={"help": "λ_> = λ_2 values"})
    lambda_1: float = dataclasses.field(default=1.0, metadata={"help": "λ_1"})
    target_degree: int = dataclasses.field(default=5, metadata={"help": "target ψ_j"})
    n: int = dataclasses.field(default=100, metadata={"help": "points per data set"})
    sigma2: float = dataclasses.field(default=400.0, metadata={"help": "ridge σ²"})
    m: int = dataclasses.field(default=5_000_000, metadata={"help": "data sets"})
    seed: int = dataclasses.field(default=0, metadata={"help": "random seed"})
    chunk_size: int | None = dataclasses.field(
        default=None, metadata={"help": "data sets per chunk (default: from a memory budget)"})

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.lambda_1)) or self.lambda_1 <= 0:
            raise ValueError(
                f"`lambda_1` (eigenvalue of ψ_1, the kept mode) must be finite and > 0; got "
                f"{self.lambda_1!r}.")
        lg = np.atleast_1d(np.asarray(self.lambdas_greater, dtype=float))
        if lg.ndim != 1 or lg.size == 0 or not np.all(np.isfinite(lg)) or np.any(lg < 0):
            raise ValueError(f"`lambdas_greater` (eigenvalues of ψ_2) must be finite and >= 0; "
                             f"got {self.lambdas_greater!r}.")
        check_int(self.target_degree, "target_degree", 0, why="a Hermite degree")


def _lambdas(lambda_1: float, lambdas_greater: np.ndarray) -> np.ndarray:
    """``(L, 2)`` kernel eigenvalues ``(λ_1, λ_>)``, one row per ``λ_>``."""
    return np.stack([np.full_like(lambdas_greater, float(lambda_1)), lambdas_greater], axis=1)


def _runs(problem: ToyProblem, mc: ToyMonteCarlo, lam: np.ndarray,
          grid: np.ndarray) -> list[dict[str, Any]]:
    """One entry per ``λ_>``: the ψ_1 coefficient ± SE, the predictions, the predictor on
    ``grid``."""
    psi_grid = hermite(grid, problem.degrees)  # (G, 2)
    std = standard_prediction(problem, lam)
    grg = gaussian_rg_prediction(problem, lam, _KEPT)
    rg = rg_prediction(problem, lam, _KEPT)
    rg1 = rg_first_order(problem, lam, _KEPT)
    pred_mean, pred_se = mc.predictor(grid)
    se = mc.coef_se
    runs = []
    for i in range(lam.shape[0]):
        c, c_se = float(mc.mean[i, 0]), float(se[i, 0])
        runs.append({
            "lambda_greater": float(lam[i, 1]), "lambdas": lam[i].tolist(),
            "coef": mc.mean[i].tolist(), "coef_se": se[i].tolist(),
            "coef_cov": mc.coef_cov[i].tolist(),
            "c": c, "c_se": c_se, "z_zero": c / c_se,
            "c_standard": float(std[i, 0]), "c_gaussian_rg": float(grg[i, 0]),
            "c_rg": float(rg[i, 0]), "c_rg_first_order": float(rg1[i, 0]),
            "z_rg": (c - float(rg[i, 0])) / c_se,
            "z_rg_first_order": (c - float(rg1[i, 0])) / c_se,
            "z_standard": (c - float(std[i, 0])) / c_se,
            "predictor": {"mean": pred_mean[i].tolist(), "se": pred_se[i].tolist(),
                          "standard": (psi_grid @ std[i]).tolist(),
                          "rg": (psi_grid[:, :1] @ rg[i]).tolist()},
        })
    return runs


def _paired(problem: ToyProblem, mc: ToyMonteCarlo, lam: np.ndarray) -> list[dict[str, float]]:
    """Differences against the first ``λ_>`` (same data sets, so a much smaller SE)."""
    rg = rg_prediction(problem, lam, _KEPT)
    return [{"lambda_greater": float(lam[i, 1]), "minus": float(lam[0, 1]),
             "diff": float(mc.mean[i, 0] - mc.mean[0, 0]),
             "se": float(mc.difference_se(i, 0)[0]),
             "rg_diff": float(rg[i, 0] - rg[0, 0])} for i in range(1, lam.shape[0])]


def _theory_curve(problem: ToyProblem, lambda_1: float,
                  lambdas_greater: np.ndarray) -> dict[str, list[float]]:
    """The predictions on a fine ``λ_>`` grid from 0 to 1.25 × the largest run."""
    curve_lg = np.linspace(0.0, max(float(lambdas_greater.max()), 1e-12) * 1.25, 41)
    lam = _lambdas(lambda_1, curve_lg)
    return {"lambda_greater": curve_lg.tolist(),
            "rg": rg_prediction(problem, lam, _KEPT)[:, 0].tolist(),
            "rg_first_order": rg_first_order(problem, lam, _KEPT)[:, 0].tolist(),
            "standard": standard_prediction(problem, lam)[:, 0].tolist()}


def _config_block(cfg: ToyConfig, problem: ToyProblem, mc: ToyMonteCarlo,
                  lambdas_greater: np.ndarray) -> dict[str, Any]:
    """The run's resolved configuration (as stored in ``toy.json``)."""
    return {"lambdas_greater": lambdas_greater.tolist(), "lambda_1": float(cfg.lambda_1),
            "target_degree": int(cfg.target_degree), "n": problem.n, "sigma2": problem.sigma2,
            "m": mc.m, "seed": int(cfg.seed), "chunk_size": mc.chunk_size,
            "n_devices": mc.n_devices,
            "degrees": list(problem.degrees), "kept_degrees": list(_KEPT),
            "target": {str(int(cfg.target_degree)): 1.0}, "quadrature_order": QUAD_ORDER,
            "common_random_numbers": True}


def _summary(results: Mapping[str, Any], folder: Path) -> list[str]:
    """The lines logged after a run: the setting, the table, the paired differences, timings."""
    c, t = results["config"], results["timings"]
    lines = [f"Hermite toy model (paper Fig. 3): n={c['n']}, σ²={c['sigma2']:g}, "
             f"λ_1={c['lambda_1']:g}, target ψ_{c['target_degree']}, m={c['m']:,} data sets, "
             f"seed={c['seed']}", format_table(results)]
    lines += [f"paired c(λ_>={pr['lambda_greater']:g}) − c(λ_>={pr['minus']:g}) = "
              f"{pr['diff']:.3e} ± {pr['se']:.1e} (RG: {pr['rg_diff']:.3e})"
              for pr in results["paired"]]
    rate = t["trials_per_s"]
    lines.append(f"Monte Carlo {t['monte_carlo_s']:.1f} s (+{t['compile_s']:.1f} s compile), "
                 f"{'n/a' if rate is None else f'{rate:.3g}'} data sets/s; wrote "
                 f"{folder / RESULTS_FILE} and {folder / 'toy.png'}")
    return lines


@locked("rgjax toy")
def run(cfg: ToyConfig, out: PathLike, *, progress: bool = True, plots: bool = True,
        log: Log | None = print, devices: Any = None) -> dict[str, Any]:
    """Paper Fig. 3: Monte Carlo of the averaged exact posterior against the standard (0) and the
    input-dependent RG predictions; writes ``out/toy.json`` and (``plots``) ``out/toy.png``.

    Args:
      cfg: the run's configuration.
      out: the results folder (created).
      progress: a progress bar over the Monte Carlo chunks.
      plots: draw ``toy.png`` from the written JSON.
      log: receives the summary lines (None: silent).
      devices: split the Monte Carlo over devices, as in :func:`rgjax.toy.monte_carlo`.

    Returns:
      The results dictionary as written to JSON.
    """
    t_start = time.perf_counter()
    lg = np.atleast_1d(np.asarray(cfg.lambdas_greater, dtype=float))
    problem = ToyProblem(degrees=(1, 2), target={int(cfg.target_degree): 1.0}, n=cfg.n,
                         sigma2=cfg.sigma2)
    lam = _lambdas(cfg.lambda_1, lg)
    folder = Path(out)
    mc = _resumable_monte_carlo(cfg, problem, lam, folder, progress, log, devices)

    t_theory = time.perf_counter()
    grid = np.linspace(-3.0, 3.0, 121)
    runs, paired = _runs(problem, mc, lam, grid), _paired(problem, mc, lam)
    curve = _theory_curve(problem, cfg.lambda_1, lg)
    theory_s = time.perf_counter() - t_theory

    results: dict[str, Any] = {
        "kind": "toy",
        "description": "Hermite toy model, paper Fig. 3 (docs/theory.md §5): ψ_1 coefficient of "
                       "the data-set-averaged GP posterior mean vs standard and input-dependent RG",
        "config": _config_block(cfg, problem, mc, lg),
        "seed": int(cfg.seed),
        "grid": grid.tolist(),
        "runs": runs,
        "paired": paired,
        "theory_curve": curve,
        "moments": {"psi1_psi5_psi2sq": hermite_moment(1, 5, 2, 2), "sqrt30": math.sqrt(30)},
        "timings": {"compile_s": mc.compile_s, "monte_carlo_s": mc.run_s, "theory_s": theory_s,
                    "trials_per_s": mc.m / mc.run_s if mc.run_s > 0 else None},
        "versions": versions(),
    }
    results["timings"]["total_s"] = time.perf_counter() - t_start
    results = save_and_plot(results, folder / RESULTS_FILE, save_toy_figures if plots else None)
    if log is not None:
        for line in _summary(results, folder):
            log(line)
    return results


def _resumable_monte_carlo(cfg: ToyConfig, problem: ToyProblem, lam: np.ndarray, folder: Path,
                           progress: bool, log: Log | None, devices: Any) -> ToyMonteCarlo:
    """:func:`~rgjax.toy.monte_carlo` with its running sums kept in ``folder/stages`` (every 30
    s, at the end and on Ctrl-C): a rerun continues where the last one stopped, and gives the
    uninterrupted run's numbers bit for bit."""
    stages = Stages(folder, log=log or (lambda _: None))
    fingerprint = {**dataclasses.asdict(cfg), "devices": str(devices)}
    resume = stages.load(_CHECKPOINT, fingerprint)
    if resume is not None and log is not None:
        done = min(int(resume.start), cfg.m)
        log(f"toy Monte Carlo: resumed after {done:,} of {cfg.m:,} data sets")
    return monte_carlo(problem, lam, cfg.m, seed=cfg.seed, chunk_size=cfg.chunk_size,
                       devices=devices, progress=progress, resume=resume,
                       checkpoint=lambda c: stages.save(_CHECKPOINT, fingerprint, c))


def _table_rows(results: Mapping[str, Any]) -> list[str]:
    head = (f"{'λ_>':>6} {'c (ψ_1)':>11} {'± SE':>9} {'c/SE':>7} {'RG quad':>11} {'RG 1st':>11} "
            f"{'standard':>9} {'(c−RG)/SE':>10}")
    rows = [head, "-" * len(head)]
    for r in results["runs"]:
        rows.append(f"{r['lambda_greater']:>6g} {r['c']:>11.3e} {r['c_se']:>9.2e} "
                    f"{r['z_zero']:>7.2f} {r['c_rg']:>11.3e} {r['c_rg_first_order']:>11.3e} "
                    f"{r['c_standard']:>9.2g} {r['z_rg']:>10.2f}")
    return rows


def format_table(results: Mapping[str, Any]) -> str:
    """The printed summary of :func:`run`'s results: one row per ``λ_>``."""
    return "\n".join(_table_rows(results))

