"""Figures of the kernel-optimisation job (gradients through the theory), drawn from the parsed
``optimize.json``.

* :func:`plot_optimize_loss` — the objective and the parameters along the optimisation;
* :func:`plot_optimize_mse` — predicted and empirical learning curves before and after;
* :func:`plot_optimize_grid` — the objective and the empirical MSE over a (W_std, b_std) grid;
* :func:`save_optimize_figures` — all of them, written to a folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from rgjax.plotting._style import (
    AxesLike,
    FigureFn,
    PathLike,
    Results,
    as_array,
    finish,
    get_axes,
    mapping,
    nested,
    positive,
    write_figures,
)

__all__ = [
    "plot_optimize_grid",
    "plot_optimize_loss",
    "plot_optimize_mse",
    "save_optimize_figures",
]

_OBJECTIVE_NAMES = {
    "rg": "RG (paper), smooth cutoff",
    "rg_dof": "RG + learned-mode corr. (rgjax §3b), smooth cutoff",
    "spectral_bias": "spectral bias",
}
_CURVE_STYLE: dict[str, dict[str, Any]] = {
    "initial": dict(ls="--", marker="o", mfc="none"),
    "final": dict(ls="-", marker="s", mfc=None),
}
_CURVE_COLOR = {"initial": "tab:gray", "final": "tab:blue"}


def _note(a: Axes, text: str) -> None:
    """A grey note in the middle of an empty panel."""
    a.text(0.5, 0.5, text, ha="center", va="center", transform=a.transAxes, color="0.4")


def _opt_title(results: Results, what: str) -> str:
    cfg = mapping(results.get("config"))
    task = nested(results, "task", "name", default=cfg.get("task")) or "task"
    n = nested(results, "task", "n_pool")
    objective = str(cfg.get("objective"))
    obj = _OBJECTIVE_NAMES.get(objective, objective)
    parts = [f"{task}" + (f", N = {n}" if n is not None else ""), f"η = {cfg.get('eta')}"]
    if cfg.get("objective") in ("rg", "rg_dof"):
        parts.append(f"T = {cfg.get('threshold')}, τ = {cfg.get('temperature')}")
    return f"{what}: {obj}\n" + "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# loss and parameter trajectories


def _loss_panel(a1: Axes, fit: Mapping[str, Any]) -> None:
    """The objective against the step (log y), with the skipped (non-finite) steps marked."""
    loss = positive(as_array(fit.get("loss")))
    if loss is None or not np.isfinite(loss).any():
        _note(a1, "no loss trajectory in results")
        return
    a1.plot(np.arange(loss.size), loss, color="tab:blue", gid="loss")
    a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_ylabel("predicted test MSE (objective)")
    a1.grid(True, which="both", alpha=0.3)
    skipped = np.flatnonzero(np.asarray(fit.get("skipped") or [], dtype=bool))
    if skipped.size:
        a1.plot(skipped, loss[skipped], "x", color="tab:red", label="skipped (non-finite)")
        a1.legend(fontsize=8)


def _parameter_panel(a2: Axes, fit: Mapping[str, Any]) -> None:
    """W_std and b_std per layer (one colour per layer) and σ² against the step (log y)."""
    w, b, s2 = (as_array(fit.get(k)) for k in ("W_std", "b_std", "sigma2"))
    cmap = colormaps["viridis"]
    if w is not None and w.ndim == 2:
        n_layers = w.shape[1]
        for i in range(n_layers):
            c = cmap(i / max(1, n_layers - 1))
            a2.plot(w[:, i], color=c, ls="-", label=f"W_std, layer {i + 1}", gid=f"W_std_{i}")
            if b is not None and b.ndim == 2 and b.shape[1] == n_layers:
                a2.plot(b[:, i], color=c, ls="--", label=f"b_std, layer {i + 1}", gid=f"b_std_{i}")
    if s2 is not None:
        a2.plot(s2, color="tab:red", ls=":", label="σ²", gid="sigma2")
    a2.set_yscale("log")
    a2.set_xlabel("step")
    a2.set_ylabel("parameter value")
    a2.grid(True, which="both", alpha=0.3)
    if a2.get_legend_handles_labels()[0]:
        a2.legend(fontsize=7, ncol=2)


def plot_optimize_loss(results: Results, path: PathLike | None = None, *,
                       ax: AxesLike = None) -> Figure:
    """Objective vs step (left) and the parameter trajectories vs step (right, log scale).

    Args:
      results: the parsed ``optimize.json``.
      path: write a PNG there when given.
      ax: a pair of Axes to draw into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, (a1, a2) = get_axes(ax, 2, (11, 4.2))
    fit = mapping(results.get("fit"))
    _loss_panel(a1, fit)
    _parameter_panel(a2, fit)
    title = _opt_title(results, "optimisation")
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        a1.set_title(title, fontsize=9)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# learning curves before / after


def _before_after(a: Axes, results: Results, etas: np.ndarray, name: str) -> bool:
    """Predicted (line) and empirical (points ± SE) MSE at the ``name`` parameters; whether
    anything was drawn."""
    entry = mapping(results.get(name))
    pred = positive(as_array(nested(entry, "predicted", "objective")))
    emp = positive(as_array(nested(entry, "empirical", "mse_pool")))
    se = as_array(nested(entry, "empirical", "mse_pool_se"))
    color, style = _CURVE_COLOR[name], _CURVE_STYLE[name]
    drawn = False
    if pred is not None and pred.shape == etas.shape:
        a.plot(etas, pred, color=color, ls=style["ls"], gid=f"predicted_{name}",
               label=f"predicted, {name} parameters")
        drawn = True
    if emp is not None and emp.shape == etas.shape:
        yerr = None
        if se is not None and se.shape == etas.shape:
            se = np.where(np.isfinite(se), np.abs(se), 0.0)
            yerr = np.vstack([np.minimum(se, 0.9 * np.nan_to_num(emp)), se])
        a.errorbar(etas, emp, yerr=yerr, color=color, marker=style["marker"],
                   mfc=style["mfc"] or color, ls="none", capsize=2.5, gid=f"empirical_{name}",
                   label=f"empirical GP, {name} parameters")
        drawn = True
    return drawn


def plot_optimize_mse(results: Results, path: PathLike | None = None, *,
                      ax: AxesLike = None) -> Figure:
    """Predicted (the objective; lines) and empirical (points ± SE) test MSE against η at the
    initial and the final parameters; the optimisation's η is marked.

    Args:
      results: the parsed ``optimize.json``.
      path: write a PNG there when given.
      ax: an Axes to draw into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, (a,) = get_axes(ax, 1, (6.6, 4.8))
    etas = as_array(results.get("etas"))
    drawn = False
    if etas is not None:
        for name in ("initial", "final"):
            drawn = _before_after(a, results, etas, name) or drawn
    if not drawn:
        _note(a, "no curves in results")
    else:
        a.set_xscale("log")
        a.set_yscale("log")
        eta = nested(results, "config", "eta")
        if eta is not None:
            a.axvline(float(eta), color="0.6", lw=0.8, ls=":", zorder=0)
        a.set_xlabel("training points η")
        a.set_ylabel("test MSE (pool)")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    a.set_title(_opt_title(results, "before / after"), fontsize=9)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# grid search


def _mark(a: Axes, w_vals: np.ndarray, b_vals: np.ndarray, entry: object, marker: str,
          color: str, label: str) -> None:
    """Mark a grid optimum (by its index) on an imshow panel."""
    idx = nested(entry, "index")
    if idx is None:
        return
    i, j = int(idx[0]), int(idx[1])
    if 0 <= i < w_vals.size and 0 <= j < b_vals.size:
        a.plot(j, i, marker, color=color, ms=12, mew=2, mfc="none", label=label)


def _grid_panel(fig: Figure, a: Axes, grid: Mapping[str, Any], key: str, label: str) -> None:
    """Heat map (log colour scale) of ``grid[key]`` over (W_std, b_std) with both optima marked."""
    w_vals, b_vals = as_array(grid.get("W_std")), as_array(grid.get("b_std"))
    z = positive(np.array(grid.get(key), dtype=float)) if grid.get(key) is not None else None
    if (z is None or w_vals is None or b_vals is None or z.shape != (w_vals.size, b_vals.size)
            or not np.isfinite(z).any()):
        _note(a, f"no {key} values")
        return
    finite = z[np.isfinite(z)]
    im = a.imshow(z, origin="lower", aspect="auto", cmap="viridis_r",
                  norm=LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.001)))
    fig.colorbar(im, ax=a, label="test MSE")
    a.set_xticks(range(b_vals.size), [f"{v:.3g}" for v in b_vals], fontsize=8)
    a.set_yticks(range(w_vals.size), [f"{v:.3g}" for v in w_vals], fontsize=8)
    a.set_xlabel("b_std (all layers)")
    a.set_ylabel("W_std (all layers)")
    a.set_title(label, fontsize=9)
    _mark(a, w_vals, b_vals, grid.get("best_predicted"), "s", "tab:red", "theory optimum")
    _mark(a, w_vals, b_vals, grid.get("best_empirical"), "o", "white", "empirical optimum")
    a.legend(fontsize=7, loc="upper left", framealpha=0.6)


def plot_optimize_grid(results: Results, path: PathLike | None = None, *,
                       ax: AxesLike = None) -> Figure:
    """Heat maps of the objective (left) and the empirical MSE (right) at η over the (W_std, b_std)
    grid (shared by all layers, initial σ²); squares: theory optimum, circles: empirical optimum.

    Args:
      results: the parsed ``optimize.json`` (with its ``grid`` block).
      path: write a PNG there when given.
      ax: a pair of Axes to draw into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, axs = get_axes(ax, 2, (11, 4.6))
    grid = results.get("grid")
    if not isinstance(grid, Mapping):
        for a in axs:
            _note(a, "no grid search in results")
        return finish(fig, path)
    panels = (("predicted", "predicted (objective)"), ("empirical", "empirical GP (pool MSE)"))
    for a, (key, label) in zip(axs, panels):
        _grid_panel(fig, a, grid, key, label)
    s2 = grid.get("sigma2")
    title = _opt_title(results, "grid search") + (f"; σ² = {s2:.3g}" if s2 is not None else "")
    if ax is None:
        fig.suptitle(title, fontsize=10)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# the job's figures


def save_optimize_figures(results: Results, out: PathLike) -> dict[str, Path]:
    """Write ``optimize_loss.png``, ``optimize_mse.png`` and (with a grid) ``optimize_grid.png``
    into the folder ``out`` (created if needed).

    Returns:
      ``{name: path}`` of the files written.
    """
    figures: list[tuple[str, FigureFn]] = [
        ("optimize_loss", plot_optimize_loss), ("optimize_mse", plot_optimize_mse)]
    if isinstance(results.get("grid"), Mapping):
        figures.append(("optimize_grid", plot_optimize_grid))
    return write_figures(results, out, figures)
