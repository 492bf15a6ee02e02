"""Theory vs experiment: the pipeline behind ``rgjax curve`` (paper Figs. 1 and 4, THEORY §§2–4, 7).

task → NNGP kernel → Gram matrix → spectrum → EK / RG (paper's and rgjax's corrected, per
threshold) / spectral-bias predictions, and the empirical GP learning curve on the same η grid →
``results.json`` (atomic) + figures + a printed table.

The empirical part is resumable: each finished η is appended to ``DIR/empirical.jsonl``, so rerunning
the same command after an interruption recomputes only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CurveConfig", "default_etas", "run_curve", "fidelity", "loglog_slope", "format_table"]

THEORIES = ("ek", "rg", "rg_dof", "spectral_bias")
LABELS = {
    "ek": "EK (bare ridge)",
    "rg": "RG (paper)",
    "rg_dof": "RG+dof (rgjax §3b)",
    "spectral_bias": "spectral bias",
    "rg_reweighted": "RG, input-dep. ridge",
}


@dataclasses.dataclass(frozen=True)
class CurveConfig:
    """Everything that defines a ``rgjax curve`` run (stored verbatim in ``results.json``).

    Defaults follow THEORY §7: a fully connected ReLU NNGP with 2 hidden layers, ``W_std² = 2``,
    ``b_std² = 0.01``, ridge ``σ² = 1e-8``, thresholds 0.3/0.5/0.7 with 0.5 the main one, and a
    log-spaced η grid up to about N/2. The default task is the bundled MNIST 0-1 pool.
    """

    task: str = "mnist-0-1"
    source: str = "auto"
    pool_size: int | None = None
    split: str = "train"
    download: bool = False
    data_dir: str | None = None
    activation: str = "relu"
    depth: int = 2
    W_std: float = math.sqrt(2.0)
    b_std: float = 0.1
    sigma2: float = 1e-8
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    threshold: float = 0.5
    etas: tuple[int, ...] | None = None
    n_etas: int = 12
    trials: int = 20
    seed: int = 0
    block_size: int = 512
    # top-k spectrum: keep the largest `eigs` modes (iterative solver, trace carries the tail);
    # None diagonalises densely (all N modes)
    eigs: int | None = None
    # synthetic-powerlaw only
    n_modes: int = 4000
    alpha: float = 0.5
    beta: float = 0.5

    def __post_init__(self):
        if self.threshold not in self.thresholds:
            object.__setattr__(self, "thresholds", tuple(sorted({*self.thresholds, self.threshold})))
        for t in self.thresholds:
            if not 0 < t < 1:
                raise ValueError(f"every threshold must lie strictly inside (0, 1); got {t}.")
        if self.sigma2 <= 0 or not math.isfinite(self.sigma2):
            raise ValueError(f"`sigma2` must be finite and > 0; got {self.sigma2}.")
        if self.trials < 2:
            raise ValueError(f"`trials` must be >= 2 (the standard error needs two); got {self.trials}.")
        if self.depth < 0:
            raise ValueError(f"`depth` must be >= 0; got {self.depth}.")
        if self.eigs is not None and self.eigs < 1:
            raise ValueError(f"`eigs` must be a positive number of modes or None (dense); got {self.eigs}.")


def default_etas(n_pool: int, n: int = 12, lo: int = 5) -> np.ndarray:
    """Log-spaced integer training-set sizes from ``lo`` to ``n_pool // 2`` (unique, sorted)."""
    hi = max(lo + 1, n_pool // 2)
    return np.unique(np.round(np.geomspace(lo, hi, n)).astype(int))


def fidelity(theory: np.ndarray, empirical: np.ndarray) -> float:
    """Mean ``|log(theory / empirical)|`` over the η where both are finite and positive."""
    t, e = np.asarray(theory, float), np.asarray(empirical, float)
    ok = np.isfinite(t) & np.isfinite(e) & (t > 0) & (e > 0)
    return float(np.mean(np.abs(np.log(t[ok] / e[ok])))) if ok.any() else float("nan")


def loglog_slope(etas: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``log values`` against ``log η`` over the finite, positive points."""
    v = np.asarray(values, float)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(etas, float)[ok]), np.log(v[ok]), 1)[0])


def _kernel_for(task, cfg: CurveConfig):
    from rgjax import kernels

    if task.kernel == "linear":
        # K(x, x') = x·x': the population spectrum of the synthetic task is then exact.
        return kernels.Dense(W_std=math.sqrt(task.dim), b_std=0.0)
    return kernels.fc(cfg.depth, cfg.activation, W_std=cfg.W_std, b_std=cfg.b_std)


def _versions() -> dict[str, str]:
    import matplotlib
    import optax

    import rgjax

    return {
        "rgjax": rgjax.__version__,
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", jax.__version__),
        "numpy": np.__version__,
        "optax": optax.__version__,
        "matplotlib": matplotlib.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
    }


def _jsonable(x: Any) -> Any:
    """numpy/JAX values → JSON types, NaN/Inf → null (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (jax.Array, np.ndarray)):
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON to a temporary file in the same folder and rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(obj), f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_and_plot(results: dict, path: Path, plot: Any = None) -> dict:
    """Write ``results`` to ``path`` (atomic JSON), reload it so figures are drawn from exactly what
    a later ``rgjax plot`` would read, draw them with ``plot(results, folder)`` and record the time.

    Returns the reloaded (pure-JSON) results.
    """
    write_json_atomic(results, path)
    results = json.loads(path.read_text())
    if plot is not None:
        t0 = time.perf_counter()
        plot(results, path.parent)
        results.setdefault("timings", {})["plots"] = time.perf_counter() - t0
        write_json_atomic(results, path)
    return results


def _flow_points(n_modes: int, max_points: int = 2000) -> np.ndarray:
    """κ values for the stored ridge flow: all of them for small spectra, else log-spaced."""
    if n_modes + 1 <= max_points:
        return np.arange(n_modes + 1)
    return np.unique(np.concatenate([[0], np.geomspace(1, n_modes, max_points).astype(int)]))


def theory_curves(spec, etas: np.ndarray, sigma2: float, thresholds: Sequence[float]) -> dict:
    """EK, spectral bias and, per threshold, the paper's RG and the corrected RG on ``etas``."""
    from rgjax import rg, theory

    e = jnp.asarray(etas, dtype=spec.eigenvalues.dtype)
    out: dict[str, Any] = {
        "ek": np.asarray(theory.mse_ek(spec, e, sigma2)),
        "spectral_bias": np.asarray(theory.mse_spectral_bias(spec, e, sigma2)),
        "kappa_spectral_bias": np.asarray(theory.kappa(spec, e, sigma2)),
        "rg": {},
        "rg_dof": {},
    }
    for t in thresholds:
        for name, dof in (("rg", False), ("rg_dof", True)):
            cut = rg.cutoff(spec, e, sigma2, t, dof_correction=dof)
            out[name][f"{t:g}"] = {
                "mse": np.asarray(theory.mse_rg(spec, e, sigma2, t, dof_correction=dof)),
                "kappa": np.asarray(cut.kappa),
                "sigma2_eff": np.asarray(rg.effective_ridge(spec, e, sigma2, t, dof_correction=dof)),
                "applicable": np.asarray(cut.applicable),
                "eta_max": float(rg.eta_max(spec, sigma2, t, dof_correction=dof)),
            }
    return out


def _report_truncation(spec, etas: np.ndarray, cfg: CurveConfig, log) -> None:
    """Say which η a truncated spectrum cannot serve (the RG cutoff must lie inside its modes)."""
    from rgjax import rg

    msg = rg.truncation_message(spec, np.asarray(etas, float), cfg.sigma2, cfg.threshold)
    if msg:
        log(f"warning: {msg}")


def _main(theories: dict, key: str, threshold: float) -> np.ndarray:
    entry = theories[key]
    return entry[f"{threshold:g}"]["mse"] if isinstance(entry, dict) else entry


def run_curve(cfg: CurveConfig, out: str | os.PathLike, *, progress: bool = True,
              plots: bool = True, log=print) -> dict:
    """Run the theory-vs-experiment job and write ``out/results.json`` and the figures.

    Returns:
      The results dictionary (as written to JSON, NaN as None).
    """
    from rgjax import datasets, empirical, kernels, spectrum

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    synthetic = {}
    if cfg.task == "synthetic-powerlaw":
        synthetic = dict(n_modes=cfg.n_modes, alpha=cfg.alpha, beta=cfg.beta)
    task = datasets.load_task(cfg.task, pool_size=cfg.pool_size, source=cfg.source, seed=cfg.seed,
                              split=cfg.split, download=cfg.download, data_dir=cfg.data_dir,
                              **synthetic)
    timings["load_task"] = time.perf_counter() - t0
    n = task.n_pool
    log(f"task {task.name}: N = {n} points, d = {task.dim}, source = {task.source}")

    etas = np.asarray(cfg.etas, int) if cfg.etas else default_etas(n, cfg.n_etas)
    if etas.min() < 1 or etas.max() >= n:
        raise ValueError(f"`etas` must lie in [1, N-1] = [1, {n - 1}]; got {etas.min()}..{etas.max()}.")

    t0 = time.perf_counter()
    kern = _kernel_for(task, cfg)
    K = kernels.gram(kern, task.x, block_size=cfg.block_size, progress=progress)
    timings["gram"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if cfg.eigs is None or cfg.eigs >= n:
        spec = spectrum.from_gram(K, task.y)
    else:
        spec = spectrum.from_gram(K, task.y, k=cfg.eigs, method="topk")
    jax.block_until_ready(spec.eigenvalues)
    timings["eigh"] = time.perf_counter() - t0
    how = "dense" if not spec.is_truncated else f"top-{spec.n_modes}"
    log(f"kernel + spectrum ({how}): {timings['gram']:.1f} s + {timings['eigh']:.1f} s "
        f"(trace {float(spec.trace):.4g}, clipped mass {float(spec.clipped_mass):.2g})")
    if spec.is_truncated:
        _report_truncation(spec, etas, cfg, log)

    t0 = time.perf_counter()
    theories = theory_curves(spec, etas, cfg.sigma2, cfg.thresholds)
    timings["theory"] = time.perf_counter() - t0

    # Non-Gaussian features (THEORY §5): the input-dependent ridge reweights the lesser theory.
    from rgjax import nongaussian

    t0 = time.perf_counter()
    theories["rg_reweighted"] = {
        f"{cfg.threshold:g}": {"mse": nongaussian.mse_reweighted(spec, task.y, etas, cfg.sigma2,
                                                                 cfg.threshold)}
    }
    flow_fn = nongaussian.functional_flow(spec, cfg.sigma2)
    timings["functional_rg"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    curve = empirical.learning_curve(K, task.y, etas, cfg.sigma2, trials=cfg.trials,
                                     key=jax.random.key(cfg.seed), progress=progress,
                                     results_path=out / "empirical.jsonl")
    timings["empirical"] = time.perf_counter() - t0

    emp = np.asarray(curve.mse_pool)
    fid = {k: fidelity(_main(theories, k, cfg.threshold), emp) for k in THEORIES + ("rg_reweighted",)}
    slopes = {"empirical": loglog_slope(etas, emp)}
    slopes.update({k: loglog_slope(etas, _main(theories, k, cfg.threshold))
                   for k in THEORIES + ("rg_reweighted",)})

    kap = _flow_points(spec.n_modes)
    from rgjax import rg

    flow = np.asarray(rg.ridge_flow(spec, cfg.sigma2))[kap]
    results = {
        "config": dataclasses.asdict(cfg),
        "versions": _versions(),
        "seed": cfg.seed,
        "task": {"name": task.name, "source": task.source, "n_pool": n, "dim": task.dim,
                 "class_counts": task.class_counts, "classes": list(task.classes),
                 "split": task.split, "kernel": task.kernel or "nngp"},
        "spectrum": {
            "eigenvalues": np.asarray(spec.eigenvalues),
            "target_coefficients_sq": np.asarray(spec.target_coefficients) ** 2,
            "trace": float(spec.trace), "target_power": float(spec.target_power),
            "n_modes": spec.n_modes, "n_pool": spec.n_pool,
            "clipped_mass": float(spec.clipped_mass),
        },
        "etas": etas,
        "empirical": curve.to_dict() | {"mse_pool": emp, "trials": cfg.trials},
        "theory": theories,
        "ridge_flow": {"kappa": kap, "sigma2": flow},
        "functional_flow": flow_fn.to_dict(),
        "fidelity": fid,
        "slopes": slopes,
        "timings": timings,
    }
    if task.population_eigenvalues is not None:
        pop = spectrum.from_eigenvalues(task.population_eigenvalues,
                                        task.population_target_coefficients)
        results["population_theory"] = theory_curves(pop, etas, cfg.sigma2, (cfg.threshold,))
    from rgjax import plotting

    results = save_and_plot(results, out / "results.json", plotting.plot_all if plots else None)
    log(format_table(results))
    return results


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3e}"


def format_table(results: dict) -> str:
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
    head = f"{'eta':>6} {'empirical ± SE':>22} " + " ".join(f"{LABELS[k]:>19}" for k in cols)
    lines = [f"T = {t}, sigma2 = {cfg['sigma2']:g}, {emp['trials']} trials per eta", head,
             "-" * len(head)]
    for i, eta in enumerate(results["etas"]):
        e = f"{_fmt(emp['mse_pool'][i])} ± {_fmt(emp['mse_pool_se'][i])}"
        lines.append(f"{eta:>6} {e:>22} " + " ".join(f"{_fmt(cols[k][i]):>19}" for k in cols))
    lines.append("mean |log(theory/empirical)|: " + ", ".join(
        f"{LABELS[k]} {_fmt_short(results['fidelity'][k])}" for k in cols))
    lines.append("log-log slope: " + ", ".join(
        f"{k} {_fmt_short(v)}" for k, v in results["slopes"].items()))
    return "\n".join(lines)


def _fmt_short(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3g}"
