"""Hermite toy model figure (paper Fig. 3, docs/theory.md §5), drawn from the parsed ``toy.json``
of the toy job.

* :func:`plot_toy_predictor` — the data-set-averaged predictor against the standard and the
  input-dependent RG theory, and the coefficient of ψ_1 against λ_>;
* :func:`save_toy_figures` — that figure, written to a folder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rgjax.plotting._style import (
    AxesLike,
    PathLike,
    Results,
    as_array,
    as_float,
    finish,
    fmt,
    get_axes,
    mapping,
    nested,
    no_data,
    write_figures,
)

__all__ = ["plot_toy_predictor", "save_toy_figures"]

_RUN_COLORS = ("tab:blue", "tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:cyan")
_STANDARD_COLOR = "tab:green"  # the paper draws the standard-theory prediction in green
_RG_COLOR = "black"


def _scale(values: Sequence[np.ndarray | None]) -> tuple[float, str]:
    """A power of ten that brings the largest finite |value| to order one, and its axis label."""
    vals = np.concatenate([np.abs(v[np.isfinite(v)]) for v in values if v is not None and v.size]
                          or [np.zeros(1)])
    top = float(vals.max()) if vals.size else 0.0
    if top == 0.0:
        return 1.0, ""
    exp = math.floor(math.log10(top))
    return (10.0**exp, f" [×1e{exp}]") if exp <= -2 or exp >= 3 else (1.0, "")


def _lam_label(run: Mapping[str, Any]) -> str:
    return rf"$\lambda_>$ = {fmt(as_float(run.get('lambda_greater')))}"


def _runs(results: Results) -> list[Mapping[str, Any]]:
    """The entries of ``runs`` that are JSON objects (one per λ_>)."""
    return [r for r in results.get("runs") or [] if isinstance(r, Mapping)]


def _predictor_panel(ax: Axes, results: Results) -> None:
    """Averaged predictor vs x per λ_> with ±1 SE bands, the standard theory (0) and the RG."""
    grid = as_array(results.get("grid"))
    runs = _runs(results)
    if grid is None or not runs:
        no_data(ax, "toy predictor")
        return
    # (mean, se, rg) per run; runs whose mean does not match the grid are left out
    curves: list[tuple[int, Mapping[str, Any], np.ndarray, np.ndarray | None, np.ndarray | None]]
    curves = []
    for i, r in enumerate(runs):
        mean = as_array(nested(r, "predictor", "mean"))
        if mean is not None and mean.shape == grid.shape:
            curves.append((i, r, mean, as_array(nested(r, "predictor", "se")),
                           as_array(nested(r, "predictor", "rg"))))
    spread = [np.nan_to_num(se) if se is not None else 0.0 for _, _, _, se, _ in curves]
    scale, unit = _scale([c[2] + s for c, s in zip(curves, spread)]
                         + [c[2] - s for c, s in zip(curves, spread)])
    ax.axhline(0.0, color=_STANDARD_COLOR, lw=2.2, zorder=1,
               label="standard theory (EK / Gaussian RG): 0")
    for i, run, mean, se, rg in curves:
        color = _RUN_COLORS[i % len(_RUN_COLORS)]
        ax.plot(grid, mean / scale, color=color, lw=1.6, zorder=3,
                label=f"experiment, {_lam_label(run)} (± SE)")
        if se is not None and se.shape == grid.shape:
            ax.fill_between(grid, (mean - se) / scale, (mean + se) / scale, color=color, alpha=0.25,
                            lw=0, zorder=2)
        # An RG curve indistinguishable from the zero line (λ_> = 0) would only clutter the legend.
        if rg is not None and rg.shape == grid.shape and np.nanmax(np.abs(rg)) > 1e-3 * scale:
            ax.plot(grid, rg / scale, color=color, ls="--", lw=1.4, zorder=4,
                    label=f"input-dependent RG, {_lam_label(run)}")
    ax.set_xlabel("x")
    ax.set_ylabel(rf"averaged predictor $\bar f(x)${unit}")
    ax.set_xlim(float(np.nanmin(grid)), float(np.nanmax(grid)))
    ax.legend(fontsize=7.5, loc="best")
    ax.grid(alpha=0.3)


def _theory_curves(ax: Axes, lg: np.ndarray | None, rg: np.ndarray | None,
                   rg1: np.ndarray | None, scale: float) -> None:
    """The RG coefficient as a function of λ_>: by quadrature and to first order."""
    if lg is not None and rg is not None and rg.shape == lg.shape:
        ax.plot(lg, rg / scale, color=_RG_COLOR, lw=1.5, zorder=2,
                label="input-dependent RG (quadrature)")
    if lg is not None and rg1 is not None and rg1.shape == lg.shape:
        ax.plot(lg, rg1 / scale, color="0.5", ls=":", lw=1.5, zorder=2,
                label=r"input-dependent RG, first order in $\lambda_>/\sigma^2$")


def _measured_points(ax: Axes, runs: Sequence[Mapping[str, Any]], lams: np.ndarray,
                     cs: np.ndarray, ses: np.ndarray, scale: float) -> None:
    """Each run's coefficient with ± 1 and ± 2 SE bars, annotated with its distances in SE."""
    for i, (lam, c, se, run) in enumerate(zip(lams, cs, ses, runs)):
        if not (math.isfinite(lam) and math.isfinite(c)):
            continue
        color = _RUN_COLORS[i % len(_RUN_COLORS)]
        se = se if math.isfinite(se) else 0.0
        ax.errorbar([lam], [c / scale], yerr=[[2 * se / scale], [2 * se / scale]], color=color,
                    lw=0.8, alpha=0.5, capsize=0, zorder=3)
        ax.errorbar([lam], [c / scale], yerr=[[se / scale], [se / scale]], color=color, marker="o",
                    ms=5, capsize=4, lw=1.6, zorder=4,
                    label=f"experiment, {_lam_label(run)} (± SE, ± 2 SE)")
        z0, zr = as_float(run.get("z_zero")), as_float(run.get("z_rg"))
        note = f"{z0:+.1f} SE from 0" + (f"\n{zr:+.1f} SE from RG" if math.isfinite(zr) else "")
        ax.annotate(note, (lam, c / scale), xytext=(7, 4), textcoords="offset points",
                    fontsize=7.5, va="bottom", color=color)


def _coefficient_panel(ax: Axes, results: Results) -> None:
    """The ψ_1 coefficient c ± SE (and ± 2 SE) per λ_> against the theories as functions of λ_>."""
    runs = _runs(results)
    lams = np.array([as_float(r.get("lambda_greater")) for r in runs])
    cs = np.array([as_float(r.get("c")) for r in runs])
    ses = np.array([as_float(r.get("c_se")) for r in runs])
    curve = mapping(results.get("theory_curve"))
    lg, rg, rg1 = (as_array(curve.get(k)) for k in ("lambda_greater", "rg", "rg_first_order"))
    if not runs and lg is None:
        no_data(ax, "toy coefficients")
        return
    scale, unit = _scale([cs + np.nan_to_num(ses) * 2, cs - np.nan_to_num(ses) * 2]
                         + [v for v in (rg, rg1) if v is not None])
    ax.axhline(0.0, color=_STANDARD_COLOR, lw=2.2, zorder=1, label="standard theory: 0")
    _theory_curves(ax, lg, rg, rg1, scale)
    _measured_points(ax, runs, lams, cs, ses, scale)
    ax.set_xlabel(r"$\lambda_>$ (eigenvalue of the integrated-out $\psi_2$)")
    ax.set_ylabel(rf"coefficient of $\psi_1$ in the averaged predictor{unit}")
    finite = lams[np.isfinite(lams)]
    if finite.size:
        span = max(float(np.ptp(finite)), float(np.max(np.abs(finite))), 1e-12)
        ax.set_xlim(float(finite.min()) - 0.15 * span, float(finite.max()) + 0.45 * span)
    ax.legend(fontsize=7.5, loc="lower left")
    ax.grid(alpha=0.3)


def _toy_title(results: Results) -> str:
    cfg = mapping(results.get("config"))
    parts: list[str] = []
    for key, label in (("n", "n"), ("sigma2", "σ²"), ("lambda_1", r"$\lambda_1$")):
        if cfg.get(key) is not None:
            parts.append(f"{label} = {fmt(as_float(cfg[key]))}")
    if cfg.get("target_degree") is not None:
        parts.append(rf"target $\psi_{{{int(cfg['target_degree'])}}}$")
    if cfg.get("m") is not None:
        parts.append(f"m = {int(cfg['m']):,} data sets")
    head = (r"Hermite toy model (paper Fig. 3): kernel "
            r"$\lambda_1\psi_1\psi_1 + \lambda_>\psi_2\psi_2$")
    return head + ("\n" + ", ".join(parts) if parts else "")


def plot_toy_predictor(results: Results, path: PathLike | None = None, *,
                       ax: AxesLike = None) -> Figure:
    """Paper Fig. 3: the data-set-averaged GP predictor against the standard and the RG theory.

    Left: the averaged predictor f̄(x) for each λ_> with its ±1 SE band, the standard theory's
    zero line and the input-dependent RG prediction ``c_RG ψ_1(x)`` (dashed). Right: the
    coefficient of ψ_1 (± 1 and ± 2 SE) for each λ_> against the RG prediction as a function of λ_>
    (quadrature and first order) and the standard theory's 0 — the clearer view, since the effect
    (~1e-4) is small against the predictor's range.

    Args:
      results: the parsed ``toy.json`` of the toy job.
      path: write a PNG there when given.
      ax: an Axes (predictor panel only) or a pair of Axes to draw into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, axs = get_axes(ax, 2, (12.0, 4.8))
    _predictor_panel(axs[0], results)
    if len(axs) > 1:
        _coefficient_panel(axs[1], results)
    if ax is None:
        fig.suptitle(_toy_title(results), fontsize=10)
    return finish(fig, path)


def save_toy_figures(results: Results, out: PathLike) -> dict[str, Path]:
    """Write ``toy.png`` into the folder ``out`` (created if needed).

    Returns:
      ``{"toy": path}``.
    """
    return write_figures(results, out, [("toy", plot_toy_predictor)])
