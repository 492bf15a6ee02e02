"""Theory vs experiment: the ``rgjax curve`` job (paper Figs. 1 and 4, docs/theory.md §§2–4, 7).

task → NNGP kernel → Gram matrix → spectrum (:func:`rgjax.jobs._pipeline.build_pool`) → EK / RG
(paper's and rgjax's corrected, per threshold) / spectral-bias predictions, and the empirical GP
learning curve on the same η grid → ``results.json`` (atomic) + figures + a printed table.

Every stage is resumable: the Gram matrix, the spectrum and the theories are kept in
``DIR/stages/`` (:mod:`rgjax.jobs._stages`, fingerprinted and checksummed) and each finished η is
appended to ``DIR/empirical.jsonl``, so rerunning the same command after an interruption
recomputes only what is missing, and rerunning a finished one recomputes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rgjax._typing import Array, ArrayLike, PathLike
from rgjax._validate import check_int
from rgjax.empirical import LearningCurve, learning_curve
from rgjax.jobs._io import locked, save_and_plot, versions
from rgjax.jobs._pipeline import (
    Log,
    Pool,
    PoolConfig,
    build_pool,
    default_etas,
    pool_fingerprint,
    task_summary,
)
from rgjax.jobs._stages import Stages
from rgjax.metrics import fidelity, loglog_slope
from rgjax.nongaussian import functional_flow, mse_reweighted
from rgjax.plotting import LABELS, save_curve_figures
from rgjax.rg import check_inputs, cutoff, effective_ridge, eta_max, ridge_flow
from rgjax.spectrum import Spectrum, from_eigenvalues
from rgjax.store import check_options
from rgjax.theory import kappa, mse_ek, mse_rg, mse_spectral_bias
from rgjax.truncation import (
    DEFAULT_RTOL,
    truncation_error,
    truncation_message,
    truncation_valid,
)

__all__ = ["CurveConfig", "RESULTS_FILE", "THEORIES", "default_etas", "format_table", "run",
           "theory_curves"]

#: The JSON file the job writes into its folder.
RESULTS_FILE = "results.json"
#: The Gaussian theories, by results key (each also gets a fidelity and a log-log slope).
THEORIES = ("ek", "rg", "rg_dof", "spectral_bias")
#: Every theory compared with the empirical curve: the Gaussian ones and the reweighted RG.
_COMPARED = (*THEORIES, "rg_reweighted")


@dataclasses.dataclass(frozen=True)
class CurveConfig(PoolConfig):
    """Everything that defines a ``rgjax curve`` run (stored verbatim in ``results.json``).

    Defaults follow docs/theory.md §7: the :class:`~rgjax.jobs._pipeline.PoolConfig` task and
    kernel (bundled MNIST 0-1, ReLU NNGP with 2 hidden layers, ``W_std² = 2``, ``b_std² = 0.01``),
    ridge ``σ² = 1e-8``, thresholds 0.3/0.5/0.7 with 0.5 the main one, and a log-spaced η grid up
    to about N/2. The main ``threshold`` is added to ``thresholds`` when missing.
    """

    sigma2: float = dataclasses.field(default=1e-8, metadata={"help": "bare ridge σ²"})
    thresholds: tuple[float, ...] = dataclasses.field(
        default=(0.3, 0.5, 0.7), metadata={"help": "learnability thresholds T for the sweep"})
    threshold: float = dataclasses.field(default=0.5, metadata={"help": "main threshold T"})
    etas: tuple[int, ...] | None = dataclasses.field(
        default=None, metadata={"help": "training-set sizes, comma separated "
                                        "(default: N_ETAS log-spaced up to N/2)"})
    n_etas: int = dataclasses.field(
        default=12, metadata={"help": "number of default training-set sizes"})
    trials: int = dataclasses.field(default=20, metadata={"help": "training sets per η"})
    nested: bool = dataclasses.field(
        default=True,
        metadata={"help": "nested training sets: the first η points of one random permutation "
                          "per trial serve every η (each η's sets are uniform draws, as with "
                          "independent ones; docs/theory.md §2)"})
    eigs: int | None = dataclasses.field(
        default=None,
        metadata={"help": "keep the top EIGS modes with the iterative top-k solver (the trace "
                          "carries the tail); default: dense eigh, all N modes. Use for N ≳ 8000"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threshold not in self.thresholds:
            merged = tuple(sorted({*self.thresholds, self.threshold}))
            object.__setattr__(self, "thresholds", merged)
        for t in self.thresholds:
            if not 0 < t < 1:
                raise ValueError(f"every threshold must lie strictly inside (0, 1); got {t}.")
        if self.sigma2 <= 0 or not math.isfinite(self.sigma2):
            raise ValueError(f"`sigma2` must be finite and > 0; got {self.sigma2}.")
        check_int(self.trials, "trials", 2, why="the standard error needs two")
        if self.etas is not None:
            # Every curve of the run is on this grid, in this order: sort it once, here, so the
            # empirical curve (always sorted) and the theories pair the same η.
            etas = [check_int(e, "etas", 1, why="training-set sizes") for e in self.etas]
            if not etas:
                raise ValueError("`etas` is empty: give at least one training-set size, or None "
                                 "for the default grid.")
            object.__setattr__(self, "etas", tuple(sorted(set(etas))))
        check_int(self.n_etas, "n_etas", 1)
        if self.eigs is not None:
            check_int(self.eigs, "eigs", 1, why="a number of modes, or None for dense")


def theory_curves(spec: Spectrum, etas: ArrayLike, sigma2: float,
                  thresholds: Sequence[float]) -> dict[str, Any]:
    """EK, spectral bias and, per threshold, the paper's RG and the corrected RG on ``etas``.

    Returns:
      ``{"ek": (E,), "spectral_bias": (E,), "kappa_spectral_bias": (E,), "rg": {T: block},
      "rg_dof": {T: block}}`` with ``T`` formatted ``f"{t:g}"`` and each block holding ``mse``,
      ``kappa``, ``sigma2_eff``, ``applicable`` (all ``(E,)``) and the scalar ``eta_max``.
    """
    e = np.asarray(etas, spec.eigenvalues.dtype)
    for t in (None, *thresholds):  # on concrete values: the compiled program skips the checks
        check_inputs(spec, e, sigma2, t)
    blocks = _theory_arrays(spec, e, sigma2, tuple(float(t) for t in thresholds))
    out: dict[str, Any] = {k: np.asarray(blocks[k]) for k in _GAUSSIAN_KEYS}
    for name in ("rg", "rg_dof"):
        out[name] = {t: {k: np.asarray(v) if k != "eta_max" else float(v) for k, v in b.items()}
                     for t, b in blocks[name].items()}
    return out


_GAUSSIAN_KEYS = ("ek", "spectral_bias", "kappa_spectral_bias")


@functools.partial(jax.jit, static_argnames=("thresholds",))
def _theory_arrays(spec: Spectrum, e: Array, sigma2: ArrayLike,
                   thresholds: tuple[float, ...]) -> dict[str, Any]:
    """Every curve of :func:`theory_curves` in one compiled program (the thresholds static)."""
    out: dict[str, Any] = {
        "ek": mse_ek(spec, e, sigma2),
        "spectral_bias": mse_spectral_bias(spec, e, sigma2),
        "kappa_spectral_bias": kappa(spec, e, sigma2),
        "rg": {},
        "rg_dof": {},
    }
    for t in thresholds:
        for name, dof in (("rg", False), ("rg_dof", True)):
            cut = cutoff(spec, e, sigma2, t, dof_correction=dof)
            out[name][f"{t:g}"] = {
                "mse": mse_rg(spec, e, sigma2, t, dof_correction=dof),
                "kappa": cut.kappa,
                "sigma2_eff": effective_ridge(spec, e, sigma2, t, dof_correction=dof),
                "applicable": cut.applicable,
                "eta_max": eta_max(spec, sigma2, t, dof_correction=dof),
            }
    return out


def _etas(cfg: CurveConfig, n_pool: int) -> np.ndarray:
    """``(E,)`` the run's training-set sizes, each in ``[1, N - 1]``."""
    if not cfg.etas:
        if n_pool < 12:  # the default grid starts at η = 5 and stops near N/2
            raise ValueError(f"the pool has N = {n_pool} points, too few for the default η grid "
                             "(5 up to N/2, which needs N >= 12): pass a larger --pool-size, or "
                             "your own --etas below N.")
        return default_etas(n_pool, cfg.n_etas)
    etas = np.asarray(cfg.etas, int)
    if etas.min() < 1 or etas.max() >= n_pool:
        raise ValueError(f"`etas` must lie in [1, N-1] = [1, {n_pool - 1}] for a pool of N = "
                         f"{n_pool} points; got {etas.min()}..{etas.max()}.")
    return etas


def _flow_points(n_modes: int, max_points: int = 2000) -> np.ndarray:
    """κ values for the stored ridge flow: all of them for small spectra, else log-spaced."""
    if n_modes + 1 <= max_points:
        return np.arange(n_modes + 1)
    return np.unique(np.concatenate([[0], np.geomspace(1, n_modes, max_points).astype(int)]))


def _main(theories: Mapping[str, Any], key: str, threshold: float) -> np.ndarray:
    """The curve of theory ``key`` at the main threshold (or its only curve)."""
    entry = theories[key]
    return entry[f"{threshold:g}"]["mse"] if isinstance(entry, dict) else entry


def _theory_fingerprint(cfg: CurveConfig, pool: Pool, etas: np.ndarray) -> dict[str, Any]:
    """What defines the theory stage: the pool's spectrum and the theories' own options."""
    return {**pool_fingerprint(cfg, pool.task), "eigs": cfg.eigs, "sigma2": cfg.sigma2,
            "thresholds": cfg.thresholds, "threshold": cfg.threshold, "etas": etas}


def _predict(pool: Pool, etas: np.ndarray, cfg: CurveConfig,
             timings: dict[str, float]) -> dict[str, Any]:
    """The theories on ``etas``, the functional flow of the input-dependent ridge and, for a
    truncated spectrum, the truncation errors; for a synthetic task, the theories of its exact
    population spectrum (one stage of the job)."""
    spec = pool.spec
    trunc = _truncation(spec, etas, cfg) if spec.is_truncated else None
    t0 = time.perf_counter()
    theories = theory_curves(spec, etas, cfg.sigma2, cfg.thresholds)
    timings["theory"] = time.perf_counter() - t0

    # Non-Gaussian features (docs/theory.md §5): the input-dependent ridge reweights the lesser
    # theory.
    t0 = time.perf_counter()
    theories["rg_reweighted"] = {
        f"{cfg.threshold:g}": {"mse": mse_reweighted(spec, pool.task.y, etas, cfg.sigma2,
                                                     cfg.threshold)}
    }
    flow = functional_flow(spec, cfg.sigma2).to_dict()
    timings["functional_rg"] = time.perf_counter() - t0
    population = None
    lam, ybar = pool.task.population_eigenvalues, pool.task.population_target_coefficients
    if lam is not None and ybar is not None:  # a synthetic task's exact population spectrum
        pop = from_eigenvalues(lam, ybar)
        population = theory_curves(pop, etas, cfg.sigma2, (cfg.threshold,))
    return {"theories": theories, "flow": flow, "truncation": trunc, "population": population}


def _measure(pool: Pool, etas: np.ndarray, cfg: CurveConfig, out: Path, progress: bool,
             timings: dict[str, float], overwrite: bool = False) -> LearningCurve:
    """The empirical GP learning curve, resumed from ``out/empirical.jsonl``."""
    t0 = time.perf_counter()
    curve = learning_curve(pool.K, pool.task.y, etas, cfg.sigma2, trials=cfg.trials,
                           key=jax.random.key(cfg.seed), progress=progress, nested=cfg.nested,
                           results_path=out / "empirical.jsonl", overwrite=overwrite)
    timings["empirical"] = time.perf_counter() - t0
    return curve


def _scores(theories: Mapping[str, Any], etas: np.ndarray, emp: np.ndarray,
            threshold: float) -> tuple[dict[str, float], dict[str, float]]:
    """Each theory's fidelity to ``emp`` and the log-log slopes of every curve."""
    fid = {k: fidelity(_main(theories, k, threshold), emp) for k in _COMPARED}
    slopes = {"empirical": loglog_slope(etas, emp)}
    slopes.update({k: loglog_slope(etas, _main(theories, k, threshold)) for k in _COMPARED})
    return fid, slopes


def _spectrum_block(spec: Spectrum) -> dict[str, Any]:
    return {
        "eigenvalues": np.asarray(spec.eigenvalues),
        "target_coefficients_sq": np.asarray(spec.target_coefficients) ** 2,
        "trace": float(spec.trace), "target_power": float(spec.target_power),
        "n_modes": spec.n_modes, "n_pool": spec.n_pool,
        "clipped_mass": float(spec.clipped_mass),
    }


def _results(cfg: CurveConfig, pool: Pool, etas: np.ndarray, predicted: dict[str, Any],
             curve: LearningCurve, timings: dict[str, float]) -> dict[str, Any]:
    """The ``results.json`` dictionary (before JSON conversion)."""
    theories, flow = predicted["theories"], predicted["flow"]
    population = predicted["population"]
    spec, task = pool.spec, pool.task
    emp = np.asarray(curve.mse_pool)
    fid, slopes = _scores(theories, etas, emp, cfg.threshold)
    kap = _flow_points(spec.n_modes)
    results: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "versions": versions(),
        "seed": cfg.seed,
        "task": task_summary(task),
        "spectrum": _spectrum_block(spec),
        "etas": etas,
        "empirical": curve.to_dict() | {"mse_pool": emp, "trials": cfg.trials},
        "theory": theories,
        "ridge_flow": {"kappa": kap, "sigma2": np.asarray(ridge_flow(spec, cfg.sigma2))[kap]},
        "functional_flow": flow,
        "fidelity": fid,
        "slopes": slopes,
        "timings": timings,
    }
    if population is not None:
        results["population_theory"] = population
    return results


#: The curves whose truncation error a top-k run reports: (results key, theory, dof correction).
_TRUNCATED = (("rg", "rg", False), ("rg_dof", "rg", True),
              ("spectral_bias", "spectral_bias", False), ("ek", "ek", False))


def _truncation(spec: Spectrum, etas: np.ndarray, cfg: CurveConfig) -> dict[str, Any]:
    """Per theory, the estimated error of the top-k spectrum's curve and where it is within
    ``DEFAULT_RTOL`` (docs/theory.md §8); a warning for each theory with an invalid η."""
    e = np.asarray(etas, float)
    out: dict[str, Any] = {"rtol": DEFAULT_RTOL, "k": spec.n_modes,
                           "tail_measure": spec.tail is not None, "error": {}, "valid": {},
                           "warnings": {}}
    for key, theory, dof in _TRUNCATED:
        out["error"][key] = np.asarray(truncation_error(spec, e, cfg.sigma2, cfg.threshold,
                                                        theory=theory, dof_correction=dof))
        out["valid"][key] = np.asarray(truncation_valid(spec, e, cfg.sigma2, cfg.threshold,
                                                        theory=theory, dof_correction=dof))
        msg = truncation_message(spec, e, cfg.sigma2, cfg.threshold, theory=theory,
                                 dof_correction=dof)
        if msg:
            out["warnings"][key] = f"warning ({LABELS[key].short}): {msg}"
    return out


@locked("rgjax curve")
def run(cfg: CurveConfig, out: PathLike, *, progress: bool = True, plots: bool = True,
        log: Log = print, overwrite: bool = False) -> dict[str, Any]:
    """Run the theory-vs-experiment job and write ``out/results.json`` and the figures.

    Args:
      cfg: the run's configuration (stored in the JSON's ``"config"``).
      out: the results folder (created; ``empirical.jsonl`` there is resumed).
      progress: progress bars for the Gram matrix and the empirical curve.
      plots: draw ``learning_curves.png``, ``threshold_sweep.png``, ``ridge_flow.png``,
        ``spectrum.png`` and ``functional_rg.png`` from the written JSON.
      log: receives the progress lines and the final table.
      overwrite: discard the finished trials in ``out/empirical.jsonl`` (those of other options
        included) instead of resuming from them.

    Returns:
      The results dictionary as written to JSON (NaN as None).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if not overwrite:  # before any expensive stage: a folder of other options is an error now
        check_options(folder / "empirical.jsonl", cfg.sigma2, cfg.trials, cfg.nested)
    stages = Stages(folder, log=log)  # keyed by fingerprint: right whatever `overwrite` says
    pool = build_pool(cfg, eigs=cfg.eigs, check=lambda task: _etas(cfg, task.n_pool),
                      progress=progress, log=log, stages=stages)
    timings = dict(pool.timings)
    etas = _etas(cfg, pool.task.n_pool)
    predicted = stages.run("theory", _theory_fingerprint(cfg, pool, etas),
                           lambda: _predict(pool, etas, cfg, timings))
    trunc = predicted["truncation"]
    for line in (trunc or {}).get("warnings", {}).values():
        log(line)
    curve = _measure(pool, etas, cfg, folder, progress, timings, overwrite)
    results = _results(cfg, pool, etas, predicted, curve, timings)
    if trunc is not None:
        results["truncation"] = trunc
    results = save_and_plot(results, folder / RESULTS_FILE,
                            save_curve_figures if plots else None)
    log(format_table(results))
    return results


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3e}"


def _fmt_short(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def format_table(results: Mapping[str, Any]) -> str:
    """The printed summary: η, empirical MSE ± SE, the theories, and each theory's fidelity."""
    cfg = results["config"]
    t = f"{cfg['threshold']:g}"
    th = results["theory"]
    emp = results["empirical"]
    cols = {
        "rg": th["rg"][t]["mse"],
        "rg_dof": th["rg_dof"][t]["mse"],
        "spectral_bias": th["spectral_bias"],
        "ek": th["ek"],
    }
    if "rg_reweighted" in th:
        cols["rg_reweighted"] = th["rg_reweighted"][t]["mse"]
    head = f"{'eta':>6} {'empirical ± SE':>22} " + " ".join(
        f"{LABELS[k].short:>19}" for k in cols)
    lines = [f"T = {t}, sigma2 = {cfg['sigma2']:g}, {emp['trials']} trials per eta", head,
             "-" * len(head)]
    for i, eta in enumerate(results["etas"]):
        e = f"{_fmt(emp['mse_pool'][i])} ± {_fmt(emp['mse_pool_se'][i])}"
        lines.append(f"{eta:>6} {e:>22} " + " ".join(f"{_fmt(cols[k][i]):>19}" for k in cols))
    lines.append("mean |log(theory/empirical)|: " + ", ".join(
        f"{LABELS[k].short} {_fmt_short(results['fidelity'][k])}" for k in cols))
    lines.append("log-log slope: " + ", ".join(
        f"{k} {_fmt_short(v)}" for k, v in results["slopes"].items()))
    return "\n".join(lines)
