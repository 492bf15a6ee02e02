"""Figures of the ``rgjax curve`` job, drawn from its parsed ``results.json`` alone.

* :func:`plot_learning_curves` — paper Fig. 1: test MSE against the number of training points η,
  for the empirical curve and the theories (EK, paper's RG, rgjax's corrected RG, spectral bias);
* :func:`plot_threshold_sweep` — paper Fig. 4: the RG curve for each learnability threshold T;
* :func:`plot_ridge_flow` — the universal flow σ²(κ) and where it stops, (κ*(η), σ²_eff(η));
* :func:`plot_spectrum` — the eigenvalues λ_k with a power-law fit (:func:`fit_power_law`), and
  the cumulative target power;
* :func:`plot_functional_rg` — the input-dependent-ridge RG (docs/theory.md §5) beside the
  Gaussian RG, and the spread of σ²_κ(x) over the pool along the flow;
* :func:`save_curve_figures` — all of them, written to a folder.

Where the paper's RG is not applicable (no mode below the threshold, η > η_max,
docs/theory.md §3) no RG value is drawn; the range is shaded and labelled instead. The
learned-mode correction (docs/theory.md §3b) is rgjax's extension and not part of the paper; its
label says so wherever it appears.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rgjax.plotting._rgblocks import (
    main_threshold,
    na_start,
    rg_curve,
    shade_not_applicable,
    threshold_key,
    threshold_keys,
)
from rgjax.plotting._style import (
    COLORS,
    LABELS,
    STYLES,
    AxesLike,
    FigureFn,
    PathLike,
    Results,
    as_array,
    as_flags,
    as_float,
    errorbar_points,
    eta_limits,
    figure_title,
    finish,
    fit_len,
    fmt,
    get_axes,
    log_limits,
    mapping,
    nested,
    no_data,
    positive,
    write_figures,
)

__all__ = [
    "fit_power_law",
    "plot_functional_rg",
    "plot_learning_curves",
    "plot_ridge_flow",
    "plot_spectrum",
    "plot_threshold_sweep",
    "save_curve_figures",
]

_MSE_LABEL = "test MSE on the pool (labels ±1, dimensionless)"
_ETA_LABEL = "number of training points η"


# ----------------------------------------------------------------------------------------------
# learning curves (paper Fig. 1)


def _empirical_points(ax: Axes, results: Results, etas: np.ndarray,
                      heldout: bool) -> list[np.ndarray | None]:
    """Draw the pool MSE (and the held-out MSE, hollow); return them for the y range."""
    n = etas.size
    emp = mapping(results.get("empirical"))
    drawn: list[np.ndarray | None] = []
    y = fit_len(as_array(emp.get("mse_pool")), n)
    if y is not None:
        se = fit_len(as_array(emp.get("mse_pool_se")), n)
        errorbar_points(ax, etas, y, se, "empirical", marker="o", ms=5)
        drawn.append(positive(y))
    yh = fit_len(as_array(emp.get("mse_heldout")), n)
    if heldout and yh is not None:
        se = fit_len(as_array(emp.get("mse_heldout_se")), n)
        errorbar_points(ax, etas, yh, se, "heldout", marker="o", ms=5, mfc="none",
                        elinewidth=0.8)
        drawn.append(positive(yh))
    return drawn


def _theory_lines(
    ax: Axes, results: Results, etas: np.ndarray, tkey: str | None,
) -> tuple[list[np.ndarray | None], np.ndarray | None, float | None]:
    """Draw the RG variants at threshold ``tkey``, spectral bias and EK.

    Returns the curves that set the y range (all but EK), EK's curve, and where the paper's RG
    stops being applicable (None: applicable everywhere or not drawn).
    """
    n = etas.size
    theory = mapping(results.get("theory"))
    fid = mapping(results.get("fidelity"))

    def lab(key: str, extra: str = "") -> str:
        f = as_float(fid.get(key))
        return LABELS[key].long + extra + (f"  [{f:.2f}]" if math.isfinite(f) else "")

    core: list[np.ndarray | None] = []
    tsuffix = f", T = {tkey}" if tkey is not None else ""
    na_from = None
    for key in ("rg", "rg_dof"):
        block = nested(theory, key, tkey) if tkey is not None else None
        y, ok = rg_curve(block, n)  # (None, …) when the block is missing
        if y is None:
            continue
        ax.plot(etas, y, STYLES[key], color=COLORS[key], lw=2, gid=key,
                label=lab(key, tsuffix), zorder=3)
        core.append(y)
        if key == "rg":  # only the paper's RG has a not-applicable range to shade
            na_from = na_start(etas, ok, as_float(nested(block, "eta_max")))
    y_sb = fit_len(positive(as_array(theory.get("spectral_bias"))), n)
    if y_sb is not None:
        ax.plot(etas, y_sb, STYLES["spectral_bias"], color=COLORS["spectral_bias"], lw=2.2,
                gid="spectral_bias", label=lab("spectral_bias"), zorder=3)
        core.append(y_sb)
    y_ek = fit_len(positive(as_array(theory.get("ek"))), n)
    if y_ek is not None:
        ax.plot(etas, y_ek, STYLES["ek"], color=COLORS["ek"], lw=1.6, gid="ek",
                label=lab("ek"), zorder=2)
    return core, y_ek, na_from


def _learning_ylim(ax: Axes, core: list[np.ndarray | None], y_ek: np.ndarray | None,
                   ek_floor_decades: float | None) -> None:
    """Set the y range to the curves in ``core``, extended down to EK by at most
    ``ek_floor_decades`` decades; note EK's range when it lies below that floor."""
    lims = log_limits(core) or log_limits([y_ek])
    if lims is None:
        return
    lo, hi = lims
    if y_ek is not None and np.isfinite(y_ek).any() and core:
        ek_min, ek_max = float(np.nanmin(y_ek)), float(np.nanmax(y_ek))
        floor = 0.0 if ek_floor_decades is None else lo / 10.0**ek_floor_decades
        if ek_min < floor:
            note = (f"{LABELS['ek'].short} off-scale below: {fmt(ek_min)} … {fmt(ek_max)}"
                    if ek_max < floor else f"EK continues below (min {fmt(ek_min)})")
            ax.text(0.01, 0.015, note, ha="left", va="bottom", fontsize=8, zorder=6,
                    color=COLORS["ek"], transform=ax.transAxes, gid="ek_note")
        if ek_max >= floor:  # partly on scale: extend down to EK, at most to the floor
            lo = max(min(lo, ek_min / 1.6), floor)
            hi = max(hi, ek_max * 1.6)
    ax.set_ylim(lo, hi)


def _learning_legend(fig: Figure, ax: Axes, results: Results, own: bool) -> None:
    """The legend in the paper's order of the curves; below the axes on a figure of our own, so
    that it never hides a curve."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        no_data(ax, "curves")
        return
    fid = mapping(results.get("fidelity"))
    title = "[ ] = mean |log(theory / empirical)|" if any(
        math.isfinite(as_float(v)) for v in fid.values()) else None
    rank = {LABELS[k].long: i for i, k in enumerate(
        ("empirical", "heldout", "rg", "rg_dof", "spectral_bias", "ek"))}

    def order_key(j: int) -> tuple[int, int]:
        return min((r for lb, r in rank.items() if labels[j].startswith(lb)), default=99), j

    order = sorted(range(len(labels)), key=order_key)
    handles, labels = [handles[j] for j in order], [labels[j] for j in order]
    kw: dict[str, Any] = dict(fontsize=8, title=title, title_fontsize=8, framealpha=0.9)
    if own:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, **kw)
    else:
        ax.legend(handles, labels, loc="best", **kw)


def plot_learning_curves(
    results: Results,
    path: PathLike | None = None,
    *,
    ax: Axes | None = None,
    heldout: bool = True,
    threshold: float | str | None = None,
    ek_floor_decades: float | None = 2.0,
) -> Figure:
    """Paper Fig. 1: log-log test MSE against the number of training points η.

    Draws the empirical pool MSE (markers, SE error bars; the held-out MSE as hollow markers when
    ``heldout``) and, at the main threshold (``config.threshold`` unless ``threshold`` is given),
    the theories: EK with the bare ridge (dashed), the paper's RG (solid), rgjax's RG with the
    learned-mode correction (docs/theory.md §3b, dash-dot) and spectral bias (dotted). Each
    theory's fidelity, the mean |log(theory/empirical)| from ``results["fidelity"]``, is shown in
    brackets in the legend. Where the paper's RG is not applicable no RG value is drawn and the η
    range is shaded. EK values far below every other curve (as at σ² = 1e-8, where EK is ~1e-13)
    would squash the plot: the y range reaches at most ``ek_floor_decades`` decades below the
    other curves and a note gives EK's off-scale range (``ek_floor_decades=None``: show EK in full).

    Args:
      results: the parsed ``results.json`` of the curve job.
      path: write a PNG there when given.
      ax: an Axes to draw into (the legend then goes inside it); default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    own = ax is None
    fig, (a,) = get_axes(ax, 1, (8.0, 6.4))
    etas = as_array(results.get("etas"))
    if etas is None or etas.size == 0:
        no_data(a, "η grid")
        a.set_title(figure_title(results, "Learning curves"), fontsize=10)
        return finish(fig, path)
    core = _empirical_points(a, results, etas, heldout)
    theory_core, y_ek, na_from = _theory_lines(a, results, etas, threshold_key(results, threshold))
    core += theory_core

    a.set_xscale("log")
    a.set_yscale("log")
    xlo, xhi = eta_limits(etas)
    a.set_xlim(xlo, xhi)
    _learning_ylim(a, core, y_ek, ek_floor_decades)
    if na_from is not None:
        shade_not_applicable(a, max(na_from, xlo), xhi, etas, [*core, y_ek])
    _hatch_truncation(a, results, etas)

    a.set_xlabel(_ETA_LABEL)
    a.set_ylabel(_MSE_LABEL)
    a.set_title(figure_title(results, "Learning curves"), fontsize=10)
    a.grid(True, which="major", alpha=0.3)
    _learning_legend(fig, a, results, own)
    return finish(fig, path)


def _hatch_truncation(ax: Axes, results: Results, etas: np.ndarray) -> None:
    """Hatch the η where a top-k spectrum's estimated error of some drawn theory exceeds the
    run's ``rtol`` (``results["truncation"]``, docs/theory.md §8); nothing for a full spectrum."""
    block = results.get("truncation")
    if not isinstance(block, Mapping):
        return
    bad = np.zeros(etas.shape, bool)
    for key, valid in (block.get("valid") or {}).items():
        v = as_array(valid)
        if key != "ek" and v is not None and v.shape == etas.shape:
            bad |= ~v.astype(bool)
    if not bad.any():
        return
    start = float(np.min(etas[bad]))
    lo, hi = ax.get_xlim()
    ax.axvspan(max(start, lo), hi, facecolor="none", edgecolor="0.7", hatch="///", lw=0,
               zorder=0.1, gid="truncation_not_valid")
    ax.text(max(start, lo), 0.03, f" k={block.get('k')} modes: error > {block.get('rtol')}",
            rotation=90, ha="left", va="bottom", fontsize=7, color="0.4",
            transform=ax.get_xaxis_transform(), gid="truncation_not_valid_label")


# ----------------------------------------------------------------------------------------------
# threshold sweep (paper Fig. 4)


def _threshold_colors(keys: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """A viridis colour per threshold key, spread over the range of T."""
    cmap = colormaps["viridis"]
    ts = np.array([as_float(k) for k in keys])
    fin = ts[np.isfinite(ts)]
    if fin.size == 0 or fin.max() == fin.min():
        return {k: cmap(0.45 if len(keys) == 1 else i / max(len(keys) - 1, 1) * 0.85)
                for i, k in enumerate(keys)}
    lo, hi = fin.min(), fin.max()
    return {k: cmap(0.05 + 0.8 * ((t - lo) / (hi - lo) if np.isfinite(t) else 0.5))
            for k, t in zip(keys, ts)}


def _sweep_panel(ax: Axes, etas: np.ndarray, blocks: Mapping[str, Any],
                 colors: Mapping[str, tuple[float, float, float, float]], style: str, name: str,
                 gid: str, alpha: float = 1.0, mark_eta_max: bool = True) -> list[np.ndarray]:
    """Draw one RG variant for every threshold; mark each T's η_max (where applicability ends)."""
    n = etas.size
    drawn: list[np.ndarray] = []
    marked = False
    xhi = float(np.nanmax(etas))
    for k in threshold_keys(blocks):
        y, ok = rg_curve(blocks[k], n)
        if y is None:
            continue
        ax.plot(etas, y, style, color=colors[k], lw=1.8, alpha=alpha, gid=f"{gid}:{k}",
                label=f"{name}, T = {k}")
        drawn.append(y)
        if not mark_eta_max:
            continue
        start = na_start(etas, ok, as_float(nested(blocks[k], "eta_max")))
        if start is not None and start < xhi * 1.25:
            ax.axvline(start, color=colors[k], lw=1.1, ls=(0, (1, 1.5)), alpha=alpha,
                       gid=f"{gid}_eta_max:{k}", label=None if marked else
                       "η_max(T): RG n/a beyond")
            ax.plot([start], [0.985], marker="v", color=colors[k], ms=6, alpha=alpha,
                    transform=ax.get_xaxis_transform(), clip_on=False)
            marked = True
    return drawn


def _sweep_axes_finish(a: Axes, etas: np.ndarray, lims: tuple[float, float] | None) -> None:
    """Log axes, limits, label, grid and the legend (RG curves, then η_max, then empirical)."""
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlim(*eta_limits(etas))
    if lims is not None:
        a.set_ylim(*lims)
    a.set_xlabel(_ETA_LABEL)
    a.grid(True, which="major", alpha=0.3)
    handles, labels = a.get_legend_handles_labels()
    if handles:
        rank = [2 if lb.startswith("empirical") else 1 if lb.startswith("η_max") else 0
                for lb in labels]
        order = sorted(range(len(handles)), key=lambda j: (rank[j], j))
        a.legend([handles[j] for j in order], [labels[j] for j in order], loc="best",
                 fontsize=8, framealpha=0.9)
    else:
        no_data(a, "RG curves")


def plot_threshold_sweep(
    results: Results,
    path: PathLike | None = None,
    *,
    ax: AxesLike = None,
) -> Figure:
    """Paper Fig. 4: the RG learning curve for each learnability threshold T.

    Left panel: the empirical curve and the paper's RG for every T in ``theory.rg`` (colour =
    T, viridis), with each T's η_max marked by a dotted vertical line (the paper's RG is not
    applicable beyond it, and is not drawn there). Right panel: the same for rgjax's RG with the
    learned-mode correction (docs/theory.md §3b, not in the paper). With a single ``ax`` both go
    into it, the corrected curves lighter and dash-dot.

    Args:
      results: the parsed ``results.json`` of the curve job.
      path: write a PNG there when given.
      ax: one Axes or a pair of Axes to draw into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    two = ax is None or (isinstance(ax, (Sequence, np.ndarray)) and len(ax) >= 2)
    fig, axs = get_axes(ax, 2 if two else 1, (12.5, 5.0), sharey=True)
    etas = as_array(results.get("etas"))
    theory = mapping(results.get("theory"))
    rg, dof = mapping(theory.get("rg")), mapping(theory.get("rg_dof"))
    emp = mapping(results.get("empirical"))
    title = figure_title(results, "Threshold sweep")
    if etas is None or etas.size == 0:
        for a in axs:
            no_data(a, "η grid")
        (fig.suptitle if ax is None else axs[0].set_title)(title, fontsize=10)
        return finish(fig, path)
    n = etas.size
    colors = _threshold_colors(sorted(set(threshold_keys(rg)) | set(threshold_keys(dof)),
                                      key=lambda k: (as_float(k), k)))
    y_emp = fit_len(as_array(emp.get("mse_pool")), n)
    se_emp = fit_len(as_array(emp.get("mse_pool_se")), n)

    dof_name = "corrected RG (rgjax §3b)"
    curves = _sweep_panel(axs[0], etas, rg, colors, STYLES["rg"], "paper's RG", "rg")
    if two:
        curves += _sweep_panel(axs[1], etas, dof, colors, STYLES["rg_dof"], dof_name, "rg_dof")
    else:
        curves += _sweep_panel(axs[0], etas, dof, colors, STYLES["rg_dof"], dof_name, "rg_dof",
                               0.5, False)
    lims = log_limits([*curves, positive(y_emp)])
    for i, a in enumerate(axs):
        if y_emp is not None:
            errorbar_points(a, etas, y_emp, se_emp, "empirical", marker="o", ms=4.5)
        _sweep_axes_finish(a, etas, lims)
        if two:
            a.set_title("paper's RG (EK + renormalized ridge)" if i == 0 else
                        "RG + learned-mode correction (rgjax §3b, not in paper)", fontsize=10)
    axs[0].set_ylabel(_MSE_LABEL)
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        axs[0].set_title(title, fontsize=10)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# ridge flow


def _flow_from_spectrum(results: Results) -> tuple[np.ndarray | None, np.ndarray | None]:
    """σ²(κ) = σ² + trace − Σ_{k≤κ} λ_k at κ = 1..k, when ``ridge_flow`` is missing."""
    lam = as_array(nested(results, "spectrum", "eigenvalues"))
    s2 = as_float(nested(results, "config", "sigma2"))
    if lam is None or not math.isfinite(s2):
        return None, None
    trace = as_float(nested(results, "spectrum", "trace"))
    if not math.isfinite(trace):
        trace = float(np.nansum(lam))
    kappa = np.arange(1, lam.size + 1, dtype=float)
    return kappa, s2 + np.maximum(trace - np.nancumsum(lam), 0.0)


def _stopping_points(ax: Axes, block: object, etas: np.ndarray, n_points: int,
                     tkey: str | None) -> tuple[np.ndarray | None, str | None]:
    """Mark up to ``n_points`` stopping points (κ*, σ²_eff) of the RG ``block``, annotated with η.

    Returns the σ²_eff values drawn (None: none) and the legend note on where the paper's RG is
    not applicable (None: applicable on the whole grid).
    """
    n = etas.size
    ks = fit_len(as_array(nested(block, "kappa")), n)
    se = fit_len(as_array(nested(block, "sigma2_eff")), n)
    if ks is None or se is None:
        return None, None
    applicable = as_flags(nested(block, "applicable"), n)
    ok = applicable & np.isfinite(ks) & (ks >= 1) & np.isfinite(se) & (se > 0)
    idx = np.flatnonzero(ok)
    drawn = None
    if idx.size and n_points > 0:
        pick = np.unique(idx[np.round(np.linspace(0, idx.size - 1,
                                                  min(n_points, idx.size))).astype(int)])
        cmap = colormaps["plasma"]
        for j, i in enumerate(pick):
            c = cmap(0.1 + 0.75 * j / max(len(pick) - 1, 1))
            ax.plot([ks[i]], [se[i]], "o", ms=8, color=c, mec="black", mew=0.6,
                    zorder=5, gid="stop",
                    label=r"stopping points $(\kappa^*(\eta),\ \sigma^2_{\rm eff}(\eta))$"
                    if j == 0 else None)
            ax.annotate(f"η = {fmt(float(etas[i]))}", (ks[i], se[i]), xytext=(7, 5),
                        textcoords="offset points", fontsize=8, color="0.15")
        drawn = se[pick]
    note = None
    if not applicable.all():
        note = (f"paper's RG n/a for η > {fmt(as_float(nested(block, 'eta_max')))}\n"
                f"(no mode below T = {tkey})")
    return drawn, note


def plot_ridge_flow(
    results: Results,
    path: PathLike | None = None,
    *,
    ax: Axes | None = None,
    n_points: int = 5,
    threshold: float | str | None = None,
) -> Figure:
    """The universal RG flow of the ridge, σ²(κ) = σ² + Σ_{k>κ} λ_k, against the cutoff κ.

    The bare ridge σ² is a horizontal line. Up to ``n_points`` stopping points
    (κ*(η), σ²_eff(η)) of the paper's RG at the main threshold, spread over the η grid where it is
    applicable (and κ* ≥ 1), are marked and annotated with η. The flow comes from
    ``results["ridge_flow"]``, or from the spectrum when that is missing.

    Args:
      results: the parsed ``results.json`` of the curve job.
      path: write a PNG there when given.
      ax: an Axes to draw into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, (a,) = get_axes(ax, 1, (7.0, 5.0))
    kappa = as_array(nested(results, "ridge_flow", "kappa"))
    s2k = as_array(nested(results, "ridge_flow", "sigma2"))
    if kappa is None or s2k is None or kappa.shape != s2k.shape:
        kappa, s2k = _flow_from_spectrum(results)
    s2 = as_float(nested(results, "config", "sigma2"))
    ys: list[np.ndarray | None] = []
    na_note = None
    if kappa is not None and s2k is not None:
        good = np.isfinite(kappa) & (kappa > 0) & np.isfinite(s2k) & (s2k > 0)
        order = np.argsort(kappa[good])
        a.plot(kappa[good][order], s2k[good][order], "-", color="tab:blue", lw=2, gid="flow",
               label=r"universal flow $\sigma^2(\kappa) = \sigma^2 + \Sigma_{k>\kappa} \lambda_k$")
        ys.append(s2k[good])
    if math.isfinite(s2) and s2 > 0:
        a.axhline(s2, color="0.4", ls="--", lw=1.2, gid="bare_ridge",
                  label=f"bare ridge σ² = {fmt(s2)}")
        ys.append(np.array([s2]))

    tkey = threshold_key(results, threshold)
    block = nested(results, "theory", "rg", tkey) if tkey is not None else None
    etas = as_array(results.get("etas"))
    if block is not None and etas is not None:
        stops, na_note = _stopping_points(a, block, etas, n_points, tkey)
        if stops is not None:
            ys.append(stops)

    a.set_xscale("log")
    a.set_yscale("log")
    lims = log_limits(ys, pad=2.0)
    if lims is not None:
        a.set_ylim(*lims)
    a.set_xlabel("cutoff κ (number of kept modes)")
    a.set_ylabel(r"renormalized ridge $\sigma^2(\kappa)$  (kernel units)")
    t = f", T = {tkey}" if tkey is not None else ""
    a.set_title(figure_title(results, f"Ridge flow{t}"), fontsize=10)
    a.grid(True, which="major", alpha=0.3)
    if a.get_legend_handles_labels()[0]:
        a.legend(loc="lower left", fontsize=8, framealpha=0.9, title=na_note, title_fontsize=8,
                 alignment="left")
    else:
        no_data(a, "ridge flow")
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# spectrum


def fit_power_law(
    eigenvalues: Sequence[float | None] | np.ndarray, k_range: tuple[int, int] | None = None
) -> tuple[float, float, tuple[int, int]]:
    """Least-squares fit of ``log λ_k = slope · log k + intercept`` over ``k_range``.

    ``k_range`` is 1-based and inclusive. The default range is the middle of the spectrum,
    ``k ∈ [max(2, n/100), n/4]``, avoiding the top modes and the finite-pool tail. For
    ``λ_k ∝ k^{−(1+α)}`` the slope is ``−(1+α)``.

    Args:
      eigenvalues: λ_1 ≥ λ_2 ≥ …, shape (n,); None/NaN entries are skipped.
      k_range: ``(k_lo, k_hi)``; default the middle of the spectrum.

    Returns:
      ``(slope, intercept, (k_lo, k_hi))``; slope and intercept are NaN when fewer than three
      positive eigenvalues fall in the range.

    Examples:
      >>> import numpy as np
      >>> slope, _, k_range = fit_power_law(np.arange(1, 401) ** -1.5)
      >>> print(f"{slope:.4f}", k_range)
      -1.5000 (4, 100)
    """
    lam = as_array(eigenvalues)
    n = 0 if lam is None else lam.size
    if k_range is None:
        k_lo = max(2, n // 100)
        k_hi = max(k_lo + 2, n // 4)
    else:
        k_lo, k_hi = int(k_range[0]), int(k_range[1])
    k_hi = min(k_hi, n)
    if lam is None or n == 0 or k_hi < k_lo:
        return math.nan, math.nan, (k_lo, k_hi)
    k = np.arange(k_lo, k_hi + 1, dtype=float)
    v = lam[k_lo - 1 : k_hi]
    good = np.isfinite(v) & (v > 0)
    if good.sum() < 3:
        return math.nan, math.nan, (k_lo, k_hi)
    slope, intercept = np.polyfit(np.log(k[good]), np.log(v[good]), 1)
    return float(slope), float(intercept), (k_lo, k_hi)


def _eigenvalue_panel(a: Axes, lam: np.ndarray | None,
                      fit_range: tuple[int, int] | None) -> None:
    """λ_k against k (log-log) with the power-law fit and its range shaded."""
    if lam is not None and lam.size:
        k = np.arange(1, lam.size + 1)
        a.plot(k, positive(lam), "-", color="tab:blue", lw=1.8, gid="eigenvalues",
               label=r"$\lambda_k$ (operator eigenvalue $w_k/N$)")
        slope, icpt, (k_lo, k_hi) = fit_power_law(lam, fit_range)
        if math.isfinite(slope):
            kk = np.geomspace(k_lo, k_hi, 50)
            a.plot(kk, np.exp(icpt) * kk**slope, "--", color="tab:red", lw=1.6, gid="fit",
                   label=f"fit k = {k_lo}–{k_hi}: " + rf"$\lambda_k \propto k^{{{slope:.2f}}}$"
                   + f"  (α = {-slope - 1:.2f})")
            a.axvspan(k_lo, k_hi, color="tab:red", alpha=0.06, lw=0)
        a.legend(loc="lower left", fontsize=8, framealpha=0.9)
        a.set_xscale("log")
        a.set_yscale("log")
    else:
        no_data(a, "eigenvalues")
    a.set_xlabel("mode index k")
    a.set_ylabel(r"eigenvalue $\lambda_k$  (kernel units)")
    a.grid(True, which="major", alpha=0.3)


def _total(value: object, values: np.ndarray) -> float:
    """``value`` when it is a positive number, else the sum of ``values``."""
    v = as_float(value)
    return v if math.isfinite(v) and v > 0 else float(np.nansum(values))


def _cumulative_panel(a: Axes, spec: Mapping[str, Any], lam: np.ndarray | None) -> None:
    """Cumulative target power and cumulative kernel trace against k."""
    y2 = as_array(spec.get("target_coefficients_sq"))
    drawn = False
    if y2 is not None and y2.size:
        tp = _total(spec.get("target_power"), y2)
        a.plot(np.arange(1, y2.size + 1), np.nancumsum(y2) / tp, "-", color="tab:purple", lw=2,
               gid="target_power",
               label=r"target power $\Sigma_{j\leq k}\, y_j^2 \,/\, \langle y^2 \rangle_\mu$")
        drawn = True
    if lam is not None and lam.size:
        tr = _total(spec.get("trace"), lam)
        a.plot(np.arange(1, lam.size + 1), np.nancumsum(np.nan_to_num(lam)) / tr, "--",
               color="tab:blue", lw=1.4, gid="trace_fraction",
               label=r"kernel trace $\Sigma_{j\leq k} \lambda_j \,/\, \mathrm{tr}\,K/N$")
        drawn = True
    if drawn:
        a.axhline(1.0, color="0.5", lw=0.8, ls=":")
        a.set_xscale("log")
        a.set_ylim(0, 1.05)
        a.legend(loc="lower right", fontsize=8, framealpha=0.9)
    else:
        no_data(a, "target coefficients")
    a.set_xlabel("mode index k")
    a.set_ylabel("cumulative fraction")
    a.grid(True, which="major", alpha=0.3)


def plot_spectrum(
    results: Results,
    path: PathLike | None = None,
    *,
    ax: AxesLike = None,
    fit_range: tuple[int, int] | None = None,
) -> Figure:
    """The kernel spectrum on the pool and where the target's power sits.

    Left: λ_k against k (log-log) with a power-law fit over ``fit_range`` (default: the middle
    of the spectrum, see :func:`fit_power_law`); the fitted exponent is in the legend. Right: the
    cumulative target power Σ_{j≤k} y_j² / target_power and, for comparison, the cumulative kernel
    trace Σ_{j≤k} λ_j / trace, against k.

    Args:
      results: the parsed ``results.json`` of the curve job.
      path: write a PNG there when given.
      ax: a pair of Axes (or one, for the eigenvalues only); default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, axs = get_axes(ax, 2, (12.0, 4.6))
    spec = mapping(results.get("spectrum"))
    lam = as_array(spec.get("eigenvalues"))
    _eigenvalue_panel(axs[0], lam, fit_range)
    if len(axs) > 1:
        _cumulative_panel(axs[1], spec, lam)
    title = figure_title(results, "Spectrum")
    clipped = as_float(spec.get("clipped_mass"))
    if math.isfinite(clipped) and clipped > 0:
        title += f"; clipped negative mass {fmt(clipped)}"
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        axs[0].set_title(title, fontsize=10)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# non-Gaussian (functional) RG, docs/theory.md §5: ``theory.rg_reweighted`` and
# ``functional_flow`` of the results


def _functional_curves(a: Axes, results: Results, etas: np.ndarray, t: str | None) -> None:
    """Empirical curve, the paper's Gaussian RG and the input-dependent-ridge RG at ``t``."""
    theory = mapping(results.get("theory"))
    emp = mapping(results.get("empirical"))
    drawn: list[np.ndarray | None] = []
    y = positive(fit_len(as_array(emp.get("mse_pool")), etas.size))
    if y is not None:
        se = fit_len(as_array(emp.get("mse_pool_se")), etas.size)
        errorbar_points(a, etas, y, se, "empirical", marker="o", ms=4.5)
        drawn.append(y)
    curves = (
        ("rg", "RG, paper (Gaussian features, σ²_eff)", "tab:blue", "-"),
        ("rg_reweighted", LABELS["rg_reweighted"].long, "tab:purple", "--"),
    )
    for key, label, color, style in curves:
        block = mapping(theory.get(key)).get(t) if t is not None else None
        if not block:
            continue
        yv = positive(fit_len(as_array(nested(block, "mse")), etas.size))
        if yv is None:
            continue
        a.plot(etas, yv, style, color=color, lw=2, label=label, gid=key)
        drawn.append(yv)
    lim = log_limits(drawn)
    a.set_xscale("log")
    a.set_yscale("log")
    if lim:
        a.set_ylim(*lim)
    a.set_xlabel(_ETA_LABEL)
    a.set_ylabel("test MSE on the pool")
    a.set_title(f"Gaussian vs input-dependent ridge, T = {t}")
    a.grid(alpha=0.3, which="major")
    a.legend(fontsize=8, loc="lower left")


def _functional_flow(a: Axes, flow: Mapping[str, Any]) -> None:
    """Quantile bands of σ²_κ(x_i) over the pool against κ + 1, with their median and mean."""
    kap = as_array(flow.get("kappa"))
    q = as_array(flow.get("quantiles"))
    levels = as_array(flow.get("levels"))
    mean = as_array(flow.get("mean"))
    if kap is None or q is None or q.ndim != 2 or kap.size != q.shape[0]:
        no_data(a, "functional flow")
        return
    x = np.maximum(kap, 0) + 1  # κ = 0 on a log axis: plot against κ + 1
    nq = q.shape[1]
    for lo in range(nq // 2):
        hi = nq - 1 - lo
        lab = None
        if levels is not None and levels.size == nq:
            lab = f"{levels[lo]:.0%}–{levels[hi]:.0%} of pool points"
        a.fill_between(x, q[:, lo], q[:, hi], color="tab:purple", alpha=0.18 + 0.17 * lo,
                       lw=0, label=lab)
    if nq % 2 == 1:
        a.plot(x, q[:, nq // 2], color="tab:purple", lw=1.2, label="median σ²_κ(x)")
    if mean is not None and mean.size == kap.size:
        a.plot(x, mean, "-", color="tab:blue", lw=2, label="pool mean = Gaussian σ² + t_κ",
               gid="flow_mean")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("cutoff κ + 1 (kept modes + 1)")
    a.set_ylabel("input-dependent ridge σ²_κ(x_i)")
    a.set_title("functional RG flow σ²_{κ−1}(x) = σ²_κ(x) + λ_κ φ_κ(x)²")
    a.grid(alpha=0.3, which="major")
    a.legend(fontsize=8, loc="lower left")


def plot_functional_rg(results: Results, path: PathLike | None = None, *,
                       ax: AxesLike = None) -> Figure:
    """The non-Gaussian (functional) RG of docs/theory.md §5, in two panels.

    Left: the learning curve of the input-dependent-ridge RG (``theory.rg_reweighted``) beside
    the paper's Gaussian RG and the empirical curve. Right: the functional flow — quantile bands of
    ``σ²_κ(x_i)`` over the pool against κ, with their mean, the Gaussian flow ``σ² + t_κ``.

    Args:
      results: the parsed ``results.json`` of the curve job (with the non-Gaussian parts).
      path: write a PNG there when given.
      ax: a pair of Axes to draw into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, (a1, a2) = get_axes(ax, 2, (12.0, 4.8))
    etas = as_array(results.get("etas"))
    if etas is not None and etas.size:
        _functional_curves(a1, results, etas, main_threshold(results))
    else:
        no_data(a1, "learning curves")
    _functional_flow(a2, mapping(results.get("functional_flow")))
    fig.suptitle(figure_title(results, "Non-Gaussian features: functional RG"), fontsize=10)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# the job's figures


def save_curve_figures(results: Results, out: PathLike) -> dict[str, Path]:
    """Write the curve job's figures into the folder ``out`` (created if needed).

    ``learning_curves.png``, ``threshold_sweep.png``, ``ridge_flow.png``, ``spectrum.png``, and
    ``functional_rg.png`` when the results have the non-Gaussian RG.

    Returns:
      ``{name: path}`` of the files written.
    """
    figures: list[tuple[str, FigureFn]] = [
        ("learning_curves", plot_learning_curves), ("threshold_sweep", plot_threshold_sweep),
        ("ridge_flow", plot_ridge_flow), ("spectrum", plot_spectrum)]
    if "functional_flow" in results or "rg_reweighted" in mapping(results.get("theory")):
        figures.append(("functional_rg", plot_functional_rg))
    return write_figures(results, out, figures)
