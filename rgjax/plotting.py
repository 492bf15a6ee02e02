"""Figures for the results of the ``rgjax curve`` job, drawn from its results dictionary alone.

Every function takes the parsed ``results.json`` (a plain dict of lists and numbers; JSON ``null``
is read as NaN) and returns a :class:`matplotlib.figure.Figure`; with ``path`` it also writes a
PNG (150 dpi). Figures are built as bare :class:`~matplotlib.figure.Figure` objects, never through
``pyplot``, so nothing here touches pyplot's global state or the backend: the module works headless
(PNG output goes through Agg) and in notebooks (a returned Figure displays inline). Pass ``ax=`` to
draw into an existing Axes (or a pair of Axes for the two-panel figures) instead.

Figures:

* :func:`learning_curves` — paper Fig. 1: test MSE against the number of training points η, for
  the empirical curve and the theories (EK, paper's RG, rgjax's corrected RG, spectral bias);
* :func:`threshold_sweep` — paper Fig. 4: the RG curve for each learnability threshold T;
* :func:`ridge_flow` — the universal flow σ²(κ) and where it stops, (κ*(η), σ²_eff(η));
* :func:`spectrum` — the eigenvalues λ_k with a power-law fit, and the cumulative target power;
* :func:`functional_rg` — the input-dependent-ridge RG (THEORY §5) beside the Gaussian RG, and the
  spread of σ²_κ(x) over the pool along the flow;
* :func:`plot_all` — all of them, written to a folder;
* :func:`toy_predictor` — the Hermite toy model (paper Fig. 3), from ``toy.json``;
* feature-mode Gaussianity (paper Figs. 2, 5), from ``gaussianity.json``: :func:`plot_gaussianity`.

Where the paper's RG is not applicable (no mode below the threshold, η > η_max, THEORY §3) no RG
value is drawn; the range is shaded and labelled instead. The learned-mode correction (THEORY §3b)
is rgjax's extension and not part of the paper; its label says so wherever it appears.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

__all__ = [
    "LABELS",
    "fit_power_law",
    "learning_curves",
    "threshold_sweep",
    "ridge_flow",
    "spectrum",
    "plot_all",
    "functional_rg",
    "toy_predictor",
    "plot_toy",
    "optimize_loss",
    "optimize_mse",
    "optimize_grid",
    "plot_optimize",
    # feature-mode Gaussianity (rgjax.gaussianity)
    "gaussianity_pair",
    "gaussianity_tails",
    "gaussianity_sweep_plot",
    "plot_gaussianity",
]

#: Legend labels of the curves, by results key. The corrected RG is rgjax's own extension.
LABELS: dict[str, str] = {
    "empirical": "empirical (pool MSE ± SE)",
    "heldout": "empirical (held-out points ± SE)",
    "ek": "EK, bare ridge σ²",
    "rg": "RG, paper (EK + renormalized ridge)",
    "rg_dof": "RG + learned-mode correction (rgjax §3b, not in paper)",
    "spectral_bias": "spectral bias (Canatar et al.)",
}

_COLORS = {
    "empirical": "black",
    "heldout": "0.45",
    "ek": "tab:red",
    "rg": "tab:blue",
    "rg_dof": "tab:green",
    "spectral_bias": "tab:orange",
}
_STYLES = {"ek": "--", "rg": "-", "rg_dof": "-.", "spectral_bias": ":"}
_NA_TEXT = "RG n/a\n(no mode below T)"
_ACT_NAMES = {"relu": "ReLU", "gelu": "GELU", "erf": "erf", "tanh": "tanh", "linear": "linear"}
_DPI = 150

# ----------------------------------------------------------------------------------------------
# small helpers: JSON data → arrays


def _num(x: Any) -> float:
    """A scalar as float; None (JSON null) and unparsable values become NaN."""
    if x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _arr(x: Any) -> np.ndarray | None:
    """A list (possibly holding None) as a float array with NaN for None; None stays None."""
    if x is None:
        return None
    return np.atleast_1d(np.array(x, dtype=float))


def _bools(x: Any, n: int) -> np.ndarray:
    """A list of flags as a bool array of length n; missing → all True, None entries → False."""
    if x is None:
        return np.ones(n, dtype=bool)
    a = np.array([bool(v) if v is not None else False for v in x], dtype=bool)
    return a if a.shape == (n,) else np.ones(n, dtype=bool)


def _get(d: Any, *keys: str, default: Any = None) -> Any:
    """Nested ``d[k1][k2]...`` that returns ``default`` on any missing level."""
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return default
        d = d[k]
    return d


def _positive(y: np.ndarray | None) -> np.ndarray | None:
    """Values usable on a log axis: non-positive and non-finite entries become NaN."""
    if y is None:
        return None
    y = np.array(y, dtype=float)
    y[~(np.isfinite(y) & (y > 0))] = np.nan
    return y


def _fit_len(y: np.ndarray | None, n: int) -> np.ndarray | None:
    """``y`` if it has length n, else None (a malformed entry is skipped, not fatal)."""
    return y if y is not None and y.shape == (n,) else None


def _threshold_keys(block: Any) -> list[str]:
    """Threshold keys of a ``theory.rg``-style dict, sorted by numeric value."""
    if not isinstance(block, Mapping):
        return []
    return sorted(block, key=lambda k: (_num(k), k))


def _main_threshold(results: Mapping) -> str | None:
    """The key of the main threshold: ``config.threshold`` if present in ``theory.rg``, else the
    key nearest 0.5, else None."""
    keys = _threshold_keys(_get(results, "theory", "rg")) or _threshold_keys(
        _get(results, "theory", "rg_dof")
    )
    if not keys:
        return None
    t = _num(_get(results, "config", "threshold"))
    if math.isfinite(t) and f"{t:g}" in keys:
        return f"{t:g}"
    target = t if math.isfinite(t) else 0.5
    return min(keys, key=lambda k: abs(_num(k) - target) if math.isfinite(_num(k)) else math.inf)


def _rg_curve(block: Any, n: int) -> tuple[np.ndarray | None, np.ndarray]:
    """MSE of one RG threshold block with NaN where it is not applicable, and the ok-mask."""
    mse = _fit_len(_arr(_get(block, "mse")), n)
    if mse is None:
        return None, np.zeros(n, dtype=bool)
    ok = _bools(_get(block, "applicable"), n) & np.isfinite(mse) & (mse > 0)
    return np.where(ok, mse, np.nan), ok


def _na_start(etas: np.ndarray, ok: np.ndarray, eta_max: float) -> float | None:
    """Where the not-applicable range of the paper's RG begins, or None if it is applicable on the
    whole grid. Uses η_max when it is consistent with the grid, else the geometric midpoint
    between the last applicable η and the first one beyond it."""
    if ok.all() or etas.size == 0:
        return None
    if not ok.any():
        return float(np.nanmin(etas))
    last_ok = float(np.nanmax(etas[ok]))
    beyond = etas[~ok & (etas > last_ok)]
    if beyond.size == 0:  # only isolated gaps below the last applicable η: nothing to shade
        return None
    first_bad = float(np.nanmin(beyond))
    if math.isfinite(eta_max) and last_ok <= eta_max < first_bad:
        return eta_max
    return math.sqrt(last_ok * first_bad)


def _fmt(x: float) -> str:
    """A compact number for titles and labels."""
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e+")
    return f"{x:.4g}"


def _title(results: Mapping, what: str) -> str:
    """Two-line title: the figure name and task, then the kernel, σ², trials."""
    cfg = _get(results, "config", default={}) or {}
    name = _get(results, "task", "name") or cfg.get("task")
    n_pool = _get(results, "task", "n_pool", default=_get(results, "spectrum", "n_pool"))
    first = f"{what} — {name}" if name else what
    if n_pool is not None:
        first += f" (N = {int(n_pool)})"
    parts = []
    act = cfg.get("activation")
    if act:
        kern = f"{_ACT_NAMES.get(str(act).lower(), str(act))} NNGP"
        if cfg.get("depth") is not None:
            kern += f", depth {cfg['depth']}"
        if cfg.get("W_std") is not None:
            kern += f", σ_w = {_fmt(_num(cfg['W_std']))}"
        if cfg.get("b_std") is not None:
            kern += f", σ_b = {_fmt(_num(cfg['b_std']))}"
        parts.append(kern)
    if cfg.get("sigma2") is not None:
        parts.append(f"σ² = {_fmt(_num(cfg['sigma2']))}")
    trials = _get(results, "empirical", "trials", default=cfg.get("trials"))
    if trials is not None:
        parts.append(f"{int(trials)} trials")
    return first + ("\n" + "; ".join(parts) if parts else "")


def _axes(ax: Any, ncols: int, figsize: tuple[float, float], **kw) -> tuple[Figure, list[Axes]]:
    """Use the caller's Axes (one, or a sequence) or make a new Figure with ``ncols`` panels."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        axs = fig.subplots(1, ncols, squeeze=False, **kw)[0]
        return fig, list(axs)
    axs = list(ax) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
    return axs[0].figure, axs


def _finish(fig: Figure, path: str | Path | None) -> Figure:
    """Save ``fig`` as PNG when ``path`` is given; return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=_DPI)
    return fig


def _log_limits(values: list[np.ndarray | None], pad: float = 1.6) -> tuple[float, float] | None:
    """Log-axis limits covering the positive finite entries of ``values``, padded by ``pad``."""
    vs = [v[np.isfinite(v) & (v > 0)] for v in values if v is not None]
    vs = [v for v in vs if v.size]
    if not vs:
        return None
    allv = np.concatenate(vs)
    return float(allv.min()) / pad, float(allv.max()) * pad


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in results", ha="center", va="center",
            transform=ax.transAxes, color="0.4")


def _errorbar(ax: Axes, etas, y, se, key: str, **kw):
    """Empirical points with SE error bars clipped to stay positive on a log axis."""
    y = _positive(y)
    yerr = None
    if se is not None:
        se = np.where(np.isfinite(se), np.abs(se), 0.0)
        yerr = np.vstack([np.minimum(se, 0.9 * np.nan_to_num(y)), se])
    return ax.errorbar(etas, y, yerr=yerr, color=_COLORS[key], label=LABELS[key], gid=key,
                       capsize=2.5, linestyle="none", zorder=4, **kw)


def _shade_not_applicable(ax: Axes, start: float, stop: float, etas: np.ndarray | None = None,
                          curves: Sequence[np.ndarray | None] = (), text: str = _NA_TEXT) -> None:
    """Light grey band over [start, stop] on the (log) x axis, with a label inside it.

    The label goes horizontally when the band is wide enough, else vertically; at the top or the
    bottom of the band, whichever leaves more room above/below the ``curves`` (values at ``etas``)
    inside it. Call after the axis limits are final. Drawn beneath the data.
    """
    if not (stop > start > 0):
        return
    ax.axvspan(start, stop, color="0.9", zorder=0, lw=0, gid="rg_not_applicable")
    ax.axvline(start, color="0.6", lw=0.8, ls=(0, (2, 2)), zorder=0.6)
    lo, hi = ax.get_xlim()
    frac = math.log(stop / start) / math.log(hi / lo) if hi > lo > 0 else 0.0
    wide = frac >= 0.22  # wide enough for the two-line label at fontsize 8
    top = True
    ylo, yhi = ax.get_ylim()
    if etas is not None and ylo > 0 and yhi > ylo:
        inside = etas >= start
        ys = [c[inside] for c in curves if c is not None and c.shape == etas.shape]
        ys = np.concatenate(ys) if ys else np.array([])
        ys = ys[np.isfinite(ys) & (ys >= ylo) & (ys <= yhi)]  # off-scale values take no room
        if ys.size:
            f = np.log(ys / ylo) / math.log(yhi / ylo)
            top = 1 - f.max() >= f.min()
    ax.text(math.sqrt(start * stop), 0.975 if top else 0.06,
            text if wide else text.replace("\n", " "), rotation=0 if wide else 90,
            ha="center", va="top" if top else "bottom", fontsize=8, color="0.35", zorder=0.7,
            clip_on=True, transform=ax.get_xaxis_transform(), gid="rg_not_applicable_label")


def _eta_limits(etas: np.ndarray) -> tuple[float, float]:
    e = etas[np.isfinite(etas) & (etas > 0)]
    if e.size == 0:
        return 1.0, 10.0
    return float(e.min()) / 1.25, float(e.max()) * 1.25


# ----------------------------------------------------------------------------------------------
# figures


def learning_curves(
    results: Mapping,
    path: str | Path | None = None,
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
    learned-mode correction (§3b, dash-dot) and spectral bias (dotted). Each theory's fidelity,
    the mean |log(theory/empirical)| from ``results["fidelity"]``, is shown in brackets in the
    legend. Where the paper's RG is not applicable no RG value is drawn and the η range is shaded.
    EK values far below every other curve (as at σ² = 1e-8, where EK is ~1e-13) would squash the
    plot: the y range reaches at most ``ek_floor_decades`` decades below the other curves and a
    note gives EK's off-scale range (``ek_floor_decades=None``: show EK in full).
    """
    own = ax is None
    fig, (ax,) = _axes(ax, 1, (8.0, 6.4))
    etas = _arr(results.get("etas"))
    if etas is None or etas.size == 0:
        _no_data(ax, "η grid")
        ax.set_title(_title(results, "Learning curves"), fontsize=10)
        return _finish(fig, path)
    n = etas.size
    theory = results.get("theory") or {}
    fid = results.get("fidelity") or {}
    tkey = f"{_num(threshold):g}" if threshold is not None else _main_threshold(results)

    def lab(key: str, extra: str = "") -> str:
        f = _num(fid.get(key))
        return LABELS[key] + extra + (f"  [{f:.2f}]" if math.isfinite(f) else "")

    core: list[np.ndarray | None] = []
    emp = results.get("empirical") or {}
    y = _fit_len(_arr(emp.get("mse_pool")), n)
    if y is not None:
        _errorbar(ax, etas, y, _fit_len(_arr(emp.get("mse_pool_se")), n), "empirical",
                  marker="o", ms=5)
        core.append(_positive(y))
    yh = _fit_len(_arr(emp.get("mse_heldout")), n)
    if heldout and yh is not None:
        _errorbar(ax, etas, yh, _fit_len(_arr(emp.get("mse_heldout_se")), n), "heldout",
                  marker="o", ms=5, mfc="none", elinewidth=0.8)
        core.append(_positive(yh))

    tsuffix = f", T = {tkey}" if tkey is not None else ""
    na_from = None
    rg_block = _get(theory, "rg", tkey) if tkey is not None else None
    if rg_block is not None:
        y_rg, ok = _rg_curve(rg_block, n)
        if y_rg is not None:
            ax.plot(etas, y_rg, _STYLES["rg"], color=_COLORS["rg"], lw=2, gid="rg",
                    label=lab("rg", tsuffix), zorder=3)
            core.append(y_rg)
            na_from = _na_start(etas, ok, _num(rg_block.get("eta_max")))
    dof_block = _get(theory, "rg_dof", tkey) if tkey is not None else None
    if dof_block is not None:
        y_dof, _ = _rg_curve(dof_block, n)
        if y_dof is not None:
            ax.plot(etas, y_dof, _STYLES["rg_dof"], color=_COLORS["rg_dof"], lw=2, gid="rg_dof",
                    label=lab("rg_dof", tsuffix), zorder=3)
            core.append(y_dof)
    y_sb = _fit_len(_positive(_arr(theory.get("spectral_bias"))), n)
    if y_sb is not None:
        ax.plot(etas, y_sb, _STYLES["spectral_bias"], color=_COLORS["spectral_bias"], lw=2.2,
                gid="spectral_bias", label=lab("spectral_bias"), zorder=3)
        core.append(y_sb)
    y_ek = _fit_len(_positive(_arr(theory.get("ek"))), n)
    if y_ek is not None:
        ax.plot(etas, y_ek, _STYLES["ek"], color=_COLORS["ek"], lw=1.6, gid="ek",
                label=lab("ek"), zorder=2)

    ax.set_xscale("log")
    ax.set_yscale("log")
    xlo, xhi = _eta_limits(etas)
    ax.set_xlim(xlo, xhi)
    lims = _log_limits(core) or _log_limits([y_ek])
    if lims is not None:
        lo, hi = lims
        if y_ek is not None and np.isfinite(y_ek).any() and core:
            ek_min, ek_max = float(np.nanmin(y_ek)), float(np.nanmax(y_ek))
            floor = 0.0 if ek_floor_decades is None else lo / 10.0**ek_floor_decades
            if ek_min < floor:
                note = (f"EK (bare ridge) off-scale below: {_fmt(ek_min)} … {_fmt(ek_max)}"
                        if ek_max < floor else f"EK continues below (min {_fmt(ek_min)})")
                ax.text(0.01, 0.015, note, ha="left", va="bottom", fontsize=8, zorder=6,
                        color=_COLORS["ek"], transform=ax.transAxes, gid="ek_note")
            if ek_max >= floor:  # partly on scale: extend down to EK, at most to the floor
                lo = max(min(lo, ek_min / 1.6), floor)
                hi = max(hi, ek_max * 1.6)
        ax.set_ylim(lo, hi)
    if na_from is not None:
        _shade_not_applicable(ax, max(na_from, xlo), xhi, etas, core + [y_ek])

    ax.set_xlabel("number of training points η")
    ax.set_ylabel("test MSE on the pool (labels ±1, dimensionless)")
    ax.set_title(_title(results, "Learning curves"), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        title = "[ ] = mean |log(theory / empirical)|" if any(
            math.isfinite(_num(v)) for v in fid.values()) else None
        rank = {LABELS[k]: i for i, k in enumerate(
            ("empirical", "heldout", "rg", "rg_dof", "spectral_bias", "ek"))}
        order = sorted(range(len(labels)), key=lambda j: (
            min((r for lb, r in rank.items() if labels[j].startswith(lb)), default=99), j))
        handles, labels = [handles[j] for j in order], [labels[j] for j in order]
        kw = dict(fontsize=8, title=title, title_fontsize=8, framealpha=0.9)
        if own:  # below the axes, so that it never hides a curve
            fig.legend(handles, labels, loc="outside lower center", ncols=2, **kw)
        else:
            ax.legend(handles, labels, loc="best", **kw)
    else:
        _no_data(ax, "curves")
    return _finish(fig, path)


def _threshold_colors(keys: list[str]) -> dict[str, Any]:
    """A viridis colour per threshold key, spread over the range of T."""
    cmap = colormaps["viridis"]
    ts = np.array([_num(k) for k in keys])
    fin = ts[np.isfinite(ts)]
    if fin.size == 0 or fin.max() == fin.min():
        return {k: cmap(0.45 if len(keys) == 1 else i / max(len(keys) - 1, 1) * 0.85)
                for i, k in enumerate(keys)}
    lo, hi = fin.min(), fin.max()
    return {k: cmap(0.05 + 0.8 * ((t - lo) / (hi - lo) if np.isfinite(t) else 0.5))
            for k, t in zip(keys, ts)}


def _sweep_panel(ax: Axes, etas: np.ndarray, blocks: Mapping, colors: dict, style: str,
                 name: str, gid: str, alpha: float = 1.0, mark_eta_max: bool = True) -> list:
    """Draw one RG variant for every threshold; mark each T's η_max (where applicability ends)."""
    n = etas.size
    drawn = []
    marked = False
    xhi = float(np.nanmax(etas))
    for k in _threshold_keys(blocks):
        y, ok = _rg_curve(blocks[k], n)
        if y is None:
            continue
        ax.plot(etas, y, style, color=colors[k], lw=1.8, alpha=alpha, gid=f"{gid}:{k}",
                label=f"{name}, T = {k}")
        drawn.append(y)
        if not mark_eta_max:
            continue
        start = _na_start(etas, ok, _num(_get(blocks[k], "eta_max")))
        if start is not None and start < xhi * 1.25:
            ax.axvline(start, color=colors[k], lw=1.1, ls=(0, (1, 1.5)), alpha=alpha,
                       gid=f"{gid}_eta_max:{k}", label=None if marked else
                       "η_max(T): RG n/a beyond")
            ax.plot([start], [0.985], marker="v", color=colors[k], ms=6, alpha=alpha,
                    transform=ax.get_xaxis_transform(), clip_on=False)
            marked = True
    return drawn


def threshold_sweep(
    results: Mapping,
    path: str | Path | None = None,
    *,
    ax: Axes | Sequence[Axes] | None = None,
) -> Figure:
    """Paper Fig. 4: the RG learning curve for each learnability threshold T.

    Left panel: the empirical curve and the paper's RG for every T in ``theory.rg`` (colour =
    T, viridis), with each T's η_max marked by a dotted vertical line (the paper's RG is not
    applicable beyond it, and is not drawn there). Right panel: the same for rgjax's RG with the
    learned-mode correction (§3b, not in the paper). With a single ``ax`` both go into it, the
    corrected curves lighter and dash-dot.
    """
    two = ax is None or (isinstance(ax, (Sequence, np.ndarray)) and len(ax) >= 2)
    fig, axs = _axes(ax, 2 if two else 1, (12.5, 5.0), sharey=True)
    etas = _arr(results.get("etas"))
    theory = results.get("theory") or {}
    rg = theory.get("rg") or {}
    dof = theory.get("rg_dof") or {}
    emp = results.get("empirical") or {}
    title = _title(results, "Threshold sweep")
    if etas is None or etas.size == 0:
        for a in axs:
            _no_data(a, "η grid")
        (fig.suptitle if ax is None else axs[0].set_title)(title, fontsize=10)
        return _finish(fig, path)
    n = etas.size
    colors = _threshold_colors(sorted(set(_threshold_keys(rg)) | set(_threshold_keys(dof)),
                                      key=lambda k: (_num(k), k)))
    y_emp = _fit_len(_arr(emp.get("mse_pool")), n)
    se_emp = _fit_len(_arr(emp.get("mse_pool_se")), n)

    panels = [(axs[0], rg, _STYLES["rg"], "paper's RG", "rg", 1.0, True)]
    if two:
        panels.append((axs[1], dof, _STYLES["rg_dof"], "corrected RG (rgjax §3b)", "rg_dof", 1.0,
                       True))
    else:
        panels.append((axs[0], dof, _STYLES["rg_dof"], "corrected RG (rgjax §3b)", "rg_dof", 0.5,
                       False))
    curves: dict[int, list] = {id(a): [] for a in axs}
    for a, blocks, style, name, gid, alpha, mark in panels:
        curves[id(a)] += _sweep_panel(a, etas, blocks, colors, style, name, gid, alpha, mark)
    xlo, xhi = _eta_limits(etas)
    all_curves = [c for cs in curves.values() for c in cs]
    lims = _log_limits(all_curves + [_positive(y_emp)])
    for i, a in enumerate(axs):
        if y_emp is not None:
            _errorbar(a, etas, y_emp, se_emp, "empirical", marker="o", ms=4.5)
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlim(xlo, xhi)
        if lims is not None:
            a.set_ylim(*lims)
        a.set_xlabel("number of training points η")
        a.grid(True, which="major", alpha=0.3)
        handles, labels = a.get_legend_handles_labels()
        if handles:
            rank = [2 if lb.startswith("empirical") else 1 if lb.startswith("η_max") else 0
                    for lb in labels]
            order = sorted(range(len(handles)), key=lambda j: (rank[j], j))
            a.legend([handles[j] for j in order], [labels[j] for j in order], loc="best",
                     fontsize=8, framealpha=0.9)
        else:
            _no_data(a, "RG curves")
        if two:
            a.set_title("paper's RG (EK + renormalized ridge)" if i == 0 else
                        "RG + learned-mode correction (rgjax §3b, not in paper)", fontsize=10)
    axs[0].set_ylabel("test MSE on the pool (labels ±1, dimensionless)")
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        axs[0].set_title(title, fontsize=10)
    return _finish(fig, path)


def _flow_from_spectrum(results: Mapping) -> tuple[np.ndarray | None, np.ndarray | None]:
    """σ²(κ) = σ² + trace − Σ_{k≤κ} λ_k at κ = 1..k, when ``ridge_flow`` is missing."""
    lam = _arr(_get(results, "spectrum", "eigenvalues"))
    s2 = _num(_get(results, "config", "sigma2"))
    if lam is None or not math.isfinite(s2):
        return None, None
    trace = _num(_get(results, "spectrum", "trace"))
    if not math.isfinite(trace):
        trace = float(np.nansum(lam))
    kappa = np.arange(1, lam.size + 1, dtype=float)
    return kappa, s2 + np.maximum(trace - np.nancumsum(lam), 0.0)


def ridge_flow(
    results: Mapping,
    path: str | Path | None = None,
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
    """
    fig, (ax,) = _axes(ax, 1, (7.0, 5.0))
    kappa = _arr(_get(results, "ridge_flow", "kappa"))
    s2k = _arr(_get(results, "ridge_flow", "sigma2"))
    if kappa is None or s2k is None or kappa.shape != s2k.shape:
        kappa, s2k = _flow_from_spectrum(results)
    s2 = _num(_get(results, "config", "sigma2"))
    ys: list[np.ndarray | None] = []
    na_note = None
    if kappa is not None:
        good = np.isfinite(kappa) & (kappa > 0) & np.isfinite(s2k) & (s2k > 0)
        order = np.argsort(kappa[good])
        ax.plot(kappa[good][order], s2k[good][order], "-", color="tab:blue", lw=2, gid="flow",
                label=r"universal flow $\sigma^2(\kappa) = \sigma^2 + \Sigma_{k>\kappa} \lambda_k$")
        ys.append(s2k[good])
    if math.isfinite(s2) and s2 > 0:
        ax.axhline(s2, color="0.4", ls="--", lw=1.2, gid="bare_ridge",
                   label=f"bare ridge σ² = {_fmt(s2)}")
        ys.append(np.array([s2]))

    tkey = f"{_num(threshold):g}" if threshold is not None else _main_threshold(results)
    block = _get(results, "theory", "rg", tkey) if tkey is not None else None
    etas = _arr(results.get("etas"))
    if block is not None and etas is not None:
        n = etas.size
        ks = _fit_len(_arr(block.get("kappa")), n)
        se = _fit_len(_arr(block.get("sigma2_eff")), n)
        if ks is not None and se is not None:
            ok = (_bools(block.get("applicable"), n) & np.isfinite(ks) & (ks >= 1)
                  & np.isfinite(se) & (se > 0))
            idx = np.flatnonzero(ok)
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
                    ax.annotate(f"η = {_fmt(etas[i])}", (ks[i], se[i]), xytext=(7, 5),
                                textcoords="offset points", fontsize=8, color="0.15")
                ys.append(se[pick])
            if not (_bools(block.get("applicable"), n)).all():
                na_note = (f"paper's RG n/a for η > {_fmt(_num(block.get('eta_max')))}\n"
                           f"(no mode below T = {tkey})")

    ax.set_xscale("log")
    ax.set_yscale("log")
    lims = _log_limits(ys, pad=2.0)
    if lims is not None:
        ax.set_ylim(*lims)
    ax.set_xlabel("cutoff κ (number of kept modes)")
    ax.set_ylabel(r"renormalized ridge $\sigma^2(\kappa)$  (kernel units)")
    t = f", T = {tkey}" if tkey is not None else ""
    ax.set_title(_title(results, f"Ridge flow{t}"), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8, framealpha=0.9, title=na_note, title_fontsize=8,
                  alignment="left")
    else:
        _no_data(ax, "ridge flow")
    return _finish(fig, path)


def fit_power_law(
    eigenvalues: Any, k_range: tuple[int, int] | None = None
) -> tuple[float, float, tuple[int, int]]:
    """Least-squares fit of ``log λ_k = slope · log k + intercept`` over ``k_range`` (1-based,
    inclusive). The default range is the middle of the spectrum, ``k ∈ [max(2, n/100), n/4]``,
    avoiding the top modes and the finite-pool tail. Returns ``(slope, intercept, (k_lo, k_hi))``;
    slope and intercept are NaN when fewer than three positive eigenvalues fall in the range.
    For ``λ_k ∝ k^{−(1+α)}`` the slope is ``−(1+α)``."""
    lam = _arr(eigenvalues)
    n = 0 if lam is None else lam.size
    if k_range is None:
        k_lo = max(2, n // 100)
        k_hi = max(k_lo + 2, n // 4)
    else:
        k_lo, k_hi = int(k_range[0]), int(k_range[1])
    k_hi = min(k_hi, n)
    if n == 0 or k_hi < k_lo:
        return math.nan, math.nan, (k_lo, k_hi)
    k = np.arange(k_lo, k_hi + 1, dtype=float)
    v = lam[k_lo - 1 : k_hi]
    good = np.isfinite(v) & (v > 0)
    if good.sum() < 3:
        return math.nan, math.nan, (k_lo, k_hi)
    slope, intercept = np.polyfit(np.log(k[good]), np.log(v[good]), 1)
    return float(slope), float(intercept), (k_lo, k_hi)


def spectrum(
    results: Mapping,
    path: str | Path | None = None,
    *,
    ax: Sequence[Axes] | None = None,
    fit_range: tuple[int, int] | None = None,
) -> Figure:
    """The kernel spectrum on the pool and where the target's power sits.

    Left: λ_k against k (log-log) with a power-law fit over ``fit_range`` (default: the middle
    of the spectrum, see :func:`fit_power_law`); the fitted exponent is in the legend. Right: the
    cumulative target power Σ_{j≤k} y_j² / target_power and, for comparison, the cumulative kernel
    trace Σ_{j≤k} λ_j / trace, against k. ``ax``: a pair of Axes.
    """
    fig, axs = _axes(ax, 2, (12.0, 4.6))
    a1 = axs[0]
    a2 = axs[1] if len(axs) > 1 else None
    spec = results.get("spectrum") or {}
    lam = _arr(spec.get("eigenvalues"))
    y2 = _arr(spec.get("target_coefficients_sq"))
    if lam is not None and lam.size:
        k = np.arange(1, lam.size + 1)
        a1.plot(k, _positive(lam), "-", color="tab:blue", lw=1.8, gid="eigenvalues",
                label=r"$\lambda_k$ (operator eigenvalue $w_k/N$)")
        slope, icpt, (k_lo, k_hi) = fit_power_law(lam, fit_range)
        if math.isfinite(slope):
            kk = np.geomspace(k_lo, k_hi, 50)
            a1.plot(kk, np.exp(icpt) * kk**slope, "--", color="tab:red", lw=1.6, gid="fit",
                    label=f"fit k = {k_lo}–{k_hi}: " + rf"$\lambda_k \propto k^{{{slope:.2f}}}$"
                    + f"  (α = {-slope - 1:.2f})")
            a1.axvspan(k_lo, k_hi, color="tab:red", alpha=0.06, lw=0)
        a1.legend(loc="lower left", fontsize=8, framealpha=0.9)
        a1.set_xscale("log")
        a1.set_yscale("log")
    else:
        _no_data(a1, "eigenvalues")
    a1.set_xlabel("mode index k")
    a1.set_ylabel(r"eigenvalue $\lambda_k$  (kernel units)")
    a1.grid(True, which="major", alpha=0.3)

    if a2 is not None:
        drawn = False
        if y2 is not None and y2.size:
            tp = _num(spec.get("target_power"))
            if not (math.isfinite(tp) and tp > 0):
                tp = float(np.nansum(y2))
            k2 = np.arange(1, y2.size + 1)
            a2.plot(k2, np.nancumsum(y2) / tp, "-", color="tab:purple", lw=2, gid="target_power",
                    label=r"target power $\Sigma_{j\leq k}\, y_j^2 \,/\, \langle y^2 \rangle_\mu$")
            drawn = True
        if lam is not None and lam.size:
            tr = _num(spec.get("trace"))
            if not (math.isfinite(tr) and tr > 0):
                tr = float(np.nansum(lam))
            a2.plot(np.arange(1, lam.size + 1), np.nancumsum(np.nan_to_num(lam)) / tr, "--",
                    color="tab:blue", lw=1.4, gid="trace_fraction",
                    label=r"kernel trace $\Sigma_{j\leq k} \lambda_j \,/\, \mathrm{tr}\,K/N$")
            drawn = True
        if drawn:
            a2.axhline(1.0, color="0.5", lw=0.8, ls=":")
            a2.set_xscale("log")
            a2.set_ylim(0, 1.05)
            a2.legend(loc="lower right", fontsize=8, framealpha=0.9)
        else:
            _no_data(a2, "target coefficients")
        a2.set_xlabel("mode index k")
        a2.set_ylabel("cumulative fraction")
        a2.grid(True, which="major", alpha=0.3)
    title = _title(results, "Spectrum")
    clipped = _num(spec.get("clipped_mass"))
    if math.isfinite(clipped) and clipped > 0:
        title += f"; clipped negative mass {_fmt(clipped)}"
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        a1.set_title(title, fontsize=10)
    return _finish(fig, path)


def plot_all(results: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Write ``learning_curves.png``, ``threshold_sweep.png``, ``ridge_flow.png``,
    ``spectrum.png`` (and ``functional_rg.png`` when the results have the non-Gaussian RG) into
    ``out_dir`` (created if needed); return ``{name: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    figures = [("learning_curves", learning_curves), ("threshold_sweep", threshold_sweep),
               ("ridge_flow", ridge_flow), ("spectrum", spectrum)]
    if "functional_flow" in results or "rg_reweighted" in (results.get("theory") or {}):
        figures.append(("functional_rg", functional_rg))
    for name, fn in figures:
        p = out / f"{name}.png"
        fn(results, p)
        written[name] = p
    return written


# ==============================================================================================
# Feature-mode Gaussianity figures (paper Figs. 2 and 5, THEORY §6), drawn from the dict that
# :func:`rgjax.gaussianity.run_gaussianity` writes to ``gaussianity.json``. Mode numbers k are
# 1-based. The JSON holds the raw feature values φ_k(x_i) of the displayed modes only.

_GAUSS_STYLE = dict(color="tab:blue", ls="--", lw=1.8)
_CAUCHY_STYLE = dict(color="tab:red", ls="-", lw=1.6)


def _gauss_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def _cauchy_pdf(x: np.ndarray, loc: float, scale: float) -> np.ndarray:
    return 1.0 / (math.pi * scale * (1.0 + ((x - loc) / scale) ** 2))


def _mode_entry(block: Mapping, i: int) -> dict[str, float]:
    """The i-th mode of a ``pair``/``tails`` block as scalars (NaN where missing)."""
    keys = ("modes", "gauss_mean", "gauss_std", "cauchy_loc", "cauchy_scale", "loglik_gauss",
            "loglik_cauchy", "ks_gauss", "ks_cauchy", "excess_kurtosis", "eigenvalues")
    out = {}
    for k in keys:
        v = block.get(k)
        out[k] = _num(v[i]) if isinstance(v, Sequence) and len(v) > i else math.nan
    return out


def gaussianity_pair(results: Mapping, path: str | Path | None = None) -> Figure:
    """Paper Fig. 2: joint scatter of two low feature modes, marginal histograms, Gaussian fits.

    Points are coloured by target (class) when ``pair.targets`` is present. Each marginal shows
    the histogram (density) of φ_k and the maximum-likelihood Gaussian; the legend gives its
    mean log-likelihood, KS statistic and the excess kurtosis of the sample.
    """
    fig = Figure(figsize=(7.2, 7.0), layout="constrained")
    gs = fig.add_gridspec(2, 2, width_ratios=(4, 1.3), height_ratios=(1.3, 4))
    ax = fig.add_subplot(gs[1, 0])
    hx = fig.add_subplot(gs[0, 0], sharex=ax)
    hy = fig.add_subplot(gs[1, 1], sharey=ax)
    blk = results.get("pair") or {}
    feats = blk.get("features")
    if not (isinstance(feats, Sequence) and len(feats) >= 2):
        _no_data(ax, "pair features")
        fig.suptitle(_title(results, "Feature modes"), fontsize=10)
        return _finish(fig, path)
    a, b = _arr(feats[0]), _arr(feats[1])
    ea, eb = _mode_entry(blk, 0), _mode_entry(blk, 1)
    ka, kb = int(ea["modes"]), int(eb["modes"])
    tgt = _arr(blk.get("targets"))
    classes = list(_get(results, "task", "classes", default=[]) or [])
    if tgt is not None and tgt.shape == a.shape and np.unique(tgt).size <= 10:
        for j, val in enumerate(np.unique(tgt)[::-1]):
            sel = tgt == val
            name = (f"class {classes[j]} (y = {val:+g})" if len(classes) == np.unique(tgt).size
                    else f"y = {val:+g}")
            ax.scatter(a[sel], b[sel], s=5, alpha=0.45, lw=0, color=f"C{j + 2}", label=name,
                       rasterized=True)
        ax.legend(loc="upper right", fontsize=8, markerscale=2.5, framealpha=0.9)
    else:
        ax.scatter(a, b, s=5, alpha=0.45, lw=0, color="0.25", rasterized=True)
    ax.set_xlabel(rf"$\phi_{{{ka}}}(x_i)$   (mode k = {ka})")
    ax.set_ylabel(rf"$\phi_{{{kb}}}(x_i)$   (mode k = {kb})")
    ax.grid(True, alpha=0.3)

    def marginal(h: Axes, v: np.ndarray, e: dict, vertical: bool) -> None:
        bins = min(60, max(10, int(np.sqrt(v.size))))
        h.hist(v, bins=bins, density=True, color="0.7", orientation="horizontal" if vertical
               else "vertical", label="data")
        t = np.linspace(np.nanmin(v), np.nanmax(v), 400)
        pdf = _gauss_pdf(t, e["gauss_mean"], e["gauss_std"])
        if vertical:
            h.plot(pdf, t, label="Gaussian fit (ML)", **_GAUSS_STYLE)
            h.tick_params(axis="y", labelleft=False)
            h.set_xlabel("density")
        else:
            h.plot(t, pdf, label="Gaussian fit (ML)", **_GAUSS_STYLE)
            h.tick_params(axis="x", labelbottom=False)
            h.set_ylabel("density")
        h.grid(True, alpha=0.3)

    marginal(hx, a, ea, False)
    marginal(hy, b, eb, True)
    # The empty corner holds the legend of the marginals and the fit statistics of both modes.
    corner = fig.add_subplot(gs[0, 1])
    corner.axis("off")
    handles, labels = hx.get_legend_handles_labels()
    corner.legend(handles, labels, loc="upper left", fontsize=7.5, frameon=False,
                  borderaxespad=0.0)
    stats = "\n".join(
        f"k = {int(e['modes'])}:  ℓ$_G$ = {e['loglik_gauss']:.3f}\n"
        f"    KS$_G$ = {e['ks_gauss']:.3f}\n    ex. kurtosis = {e['excess_kurtosis']:.2f}"
        for e in (ea, eb))
    corner.text(0.0, 0.0, stats + "\n(ℓ: mean log-lik. per point)", transform=corner.transAxes,
                fontsize=7.5, va="bottom", ha="left", linespacing=1.25)
    fig.suptitle(_title(results, f"Feature modes k = {ka}, {kb} (Fig. 2)"), fontsize=10)
    return _finish(fig, path)


def gaussianity_tails(results: Mapping, path: str | Path | None = None, *,
                      ax: Sequence[Axes] | None = None) -> Figure:
    """Paper Fig. 5: histograms of high-k feature modes with the Gaussian and Cauchy fits.

    One panel per mode in ``tails``, density on a log axis (down to one count per bin) so the
    tails are visible; the legend gives each fit's mean log-likelihood ℓ and KS statistic.
    ``ax``: a sequence of Axes, one per mode.
    """
    blk = results.get("tails") or {}
    feats = blk.get("features") if isinstance(blk.get("features"), Sequence) else []
    m = max(1, len(feats))
    fig, axs = _axes(ax, m, (4.4 * m, 4.3))
    if not feats:
        _no_data(axs[0], "tail-mode features")
    for i, v in enumerate(feats[: len(axs)]):
        a, v = axs[i], _arr(v)
        e = _mode_entry(blk, i)
        v = v[np.isfinite(v)]
        bins = min(80, max(15, int(2 * np.sqrt(v.size))))
        counts, edges, _ = a.hist(v, bins=bins, density=True, color="0.72", label="data")
        t = np.linspace(edges[0], edges[-1], 800)
        a.plot(t, _gauss_pdf(t, e["gauss_mean"], e["gauss_std"]),
               label=f"Gaussian: ℓ = {e['loglik_gauss']:.3f}, KS = {e['ks_gauss']:.3f}",
               **_GAUSS_STYLE)
        a.plot(t, _cauchy_pdf(t, e["cauchy_loc"], e["cauchy_scale"]),
               label=f"Cauchy: ℓ = {e['loglik_cauchy']:.3f}, KS = {e['ks_cauchy']:.3f}",
               **_CAUCHY_STYLE)
        a.set_yscale("log")
        floor = 1.0 / (v.size * (edges[1] - edges[0]))  # density of a single point in one bin
        top = max(float(np.nanmax(counts)), float(_cauchy_pdf(np.array(e["cauchy_loc"]),
                                                               e["cauchy_loc"], e["cauchy_scale"])))
        a.set_ylim(0.3 * floor, 40.0 * top)  # headroom above the peak for the legend
        better = "Cauchy" if e["loglik_cauchy"] > e["loglik_gauss"] else "Gaussian"
        a.set_title(f"k = {int(e['modes'])}  (λ_k = {_fmt(e['eigenvalues'])}); "
                    f"ex. kurtosis {e['excess_kurtosis']:.3g}\nbetter fit: {better}", fontsize=9)
        a.set_xlabel(rf"$\phi_{{{int(e['modes'])}}}(x_i)$")
        a.set_ylabel("density (log)")
        a.legend(fontsize=7, loc="upper right", framealpha=0.9)
        a.grid(True, which="major", alpha=0.3)
    title = _title(results, "High-k feature modes (Fig. 5)")
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        axs[0].set_title(title + "\n" + axs[0].get_title(), fontsize=9)
    return _finish(fig, path)


def gaussianity_sweep_plot(results: Mapping, path: str | Path | None = None, *,
                           ax: Sequence[Axes] | None = None) -> Figure:
    """Gaussian vs Cauchy across the spectrum (paper's appendix on Figs. 2 and 5).

    Top: mean log-likelihood difference ℓ_Cauchy − ℓ_Gauss against k (log x), positive where the
    Cauchy fit is better, with the crossover (start of the final Cauchy-better run) marked.
    Middle: KS statistic of each fit. Bottom: excess kurtosis (symlog y; 0 for a Gaussian, +∞
    for a Cauchy population). ``ax``: three Axes.
    """
    if ax is None:
        fig = Figure(figsize=(7.5, 8.6), layout="constrained")
        axs = list(fig.subplots(3, 1, sharex=True))
    else:
        fig, axs = _axes(ax, 3, (7.5, 8.6))
    sw = results.get("sweep") or {}
    k = _arr(sw.get("modes"))
    if k is None or k.size == 0:
        for a in axs:
            _no_data(a, "sweep")
        return _finish(fig, path)
    lg, lc = _arr(sw.get("loglik_gauss")), _arr(sw.get("loglik_cauchy"))
    d = lc - lg
    cross = results.get("crossover")
    a1 = axs[0]
    a1.axhline(0.0, color="0.4", lw=0.9)
    a1.plot(k, d, "-", color="0.5", lw=1.0, zorder=1)
    c = d > 0
    a1.scatter(k[c], d[c], color=_CAUCHY_STYLE["color"], s=22, zorder=3, label="Cauchy fits better")
    a1.scatter(k[~c], d[~c], color=_GAUSS_STYLE["color"], s=22, zorder=3,
               label="Gaussian fits better")
    # Modes added by the refinement around the crossover (every mode in that bracket): small dots.
    ref = results.get("refined") or {}
    rk = _arr(ref.get("modes"))
    if rk is not None and rk.size:
        rd = _arr(ref.get("loglik_cauchy")) - _arr(ref.get("loglik_gauss"))
        extra = ~np.isin(rk, k)
        if extra.any():
            a1.scatter(rk[extra], rd[extra], s=5, zorder=2, lw=0,
                       color=np.where(rd[extra] > 0, _CAUCHY_STYLE["color"], _GAUSS_STYLE["color"]),
                       alpha=0.6, label=f"every mode near the crossover ({int(extra.sum())})")
    a1.set_ylabel(r"$\ell_{\rm Cauchy} - \ell_{\rm Gauss}$ (per point)")
    if len(axs) > 1:
        a2 = axs[1]
        kg, kc = _arr(sw.get("ks_gauss")), _arr(sw.get("ks_cauchy"))
        if kg is not None and kg.shape == k.shape:
            a2.plot(k, kg, marker="o", ms=3.5, label="KS, Gaussian fit",
                    **{**_GAUSS_STYLE, "lw": 1.2})
        if kc is not None and kc.shape == k.shape:
            a2.plot(k, kc, marker="s", ms=3.5, label="KS, Cauchy fit",
                    **{**_CAUCHY_STYLE, "lw": 1.2})
        a2.set_ylabel("KS statistic")
        a2.set_ylim(bottom=0)
        a2.legend(fontsize=8, loc="upper center", framealpha=0.9)
    if len(axs) > 2:
        a3 = axs[2]
        ku = _arr(sw.get("excess_kurtosis"))
        if ku is not None and ku.shape == k.shape:
            a3.plot(k, ku, "o-", color="tab:purple", ms=3.5, lw=1.2, label="excess kurtosis")
        a3.axhline(0.0, color="0.4", lw=0.9, label="Gaussian (0)")
        a3.set_yscale("symlog", linthresh=1.0)
        lo = float(np.nanmin(ku)) if ku is not None and np.isfinite(ku).any() else 0.0
        a3.set_ylim(bottom=min(-1.5, 1.5 * lo))  # excess kurtosis is >= -2 for any sample
        a3.set_ylabel("excess kurtosis (symlog)")
        a3.legend(fontsize=8, loc="upper left", framealpha=0.9)
    for a in axs:
        a.set_xscale("log")
        a.grid(True, which="major", alpha=0.3)
        if cross is not None:
            a.axvline(float(cross), color="k", ls=":", lw=1.3, gid="crossover",
                      label=f"crossover k = {int(cross)}" if a is a1 else None)
    a1.legend(fontsize=8, loc="upper left", framealpha=0.9)
    axs[-1].set_xlabel("mode index k (1-based)")
    n_pool = _get(results, "task", "n_pool")
    cs = results.get("crossover_sweep")
    sub = "crossover: none in the sweep" if cross is None else f"crossover k = {int(cross)}"
    if cross is not None and cs is not None and cs != cross:
        sub += f" (log sweep alone: {int(cs)})"
    if n_pool:
        sub += f" of N = {int(n_pool)}"
    title = _title(results, "Gaussian vs Cauchy feature modes") + "\n" + sub
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        a1.set_title(title, fontsize=9)
    return _finish(fig, path)


def plot_gaussianity(results: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Write ``gaussianity_pair.png``, ``gaussianity_tails.png`` and ``gaussianity_sweep.png``
    into ``out_dir`` from a ``gaussianity.json`` dict; return ``{name: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, fn in (("gaussianity_pair", gaussianity_pair),
                     ("gaussianity_tails", gaussianity_tails),
                     ("gaussianity_sweep", gaussianity_sweep_plot)):
        p = out / f"{name}.png"
        fn(results, p)
        written[name] = p
    return written


# ==============================================================================================
# Non-Gaussian (functional) RG, THEORY §5: ``theory.rg_reweighted`` and ``functional_flow`` of the
# results written by ``rgjax curve``.


def functional_rg(results: Mapping, path: str | Path | None = None, *, ax: Any = None) -> Figure:
    """Two panels: (left) the learning curve of the input-dependent-ridge RG beside the paper's
    Gaussian RG and the empirical curve; (right) the functional flow — quantile bands of
    ``σ²_κ(x_i)`` over the pool against κ, with their mean, the Gaussian flow ``σ² + t_κ``."""
    fig, (a1, a2) = _axes(ax, 2, (12.0, 4.8))
    etas = _arr(results.get("etas"))
    t = _main_threshold(results)
    theory = results.get("theory") or {}
    drawn = []
    if etas is not None and etas.size:
        emp = results.get("empirical") or {}
        y = _positive(_fit_len(_arr(emp.get("mse_pool")), etas.size))
        if y is not None:
            _errorbar(a1, etas, y, _fit_len(_arr(emp.get("mse_pool_se")), etas.size), "empirical",
                      marker="o", ms=4.5)
            drawn.append(y)
        curves = (
            ("rg", "RG, paper (Gaussian features, σ²_eff)", "tab:blue", "-"),
            ("rg_reweighted", "RG, input-dependent ridge σ²_κ(x) (reweighted, THEORY §5)",
             "tab:purple", "--"),
        )
        for key, label, color, style in curves:
            block = (theory.get(key) or {}).get(t) if t is not None else None
            if not block:
                continue
            yv = _positive(_fit_len(_arr(block.get("mse")), etas.size))
            if yv is None:
                continue
            a1.plot(etas, yv, style, color=color, lw=2, label=label, gid=key)
            drawn.append(yv)
        lim = _log_limits(drawn)
        a1.set_xscale("log")
        a1.set_yscale("log")
        if lim:
            a1.set_ylim(*lim)
        a1.set_xlabel("number of training points η")
        a1.set_ylabel("test MSE on the pool")
        a1.set_title(f"Gaussian vs input-dependent ridge, T = {t}")
        a1.grid(alpha=0.3, which="major")
        a1.legend(fontsize=8, loc="lower left")
    else:
        _no_data(a1, "learning curves")

    flow = results.get("functional_flow") or {}
    kap = _arr(flow.get("kappa"))
    q = _arr(flow.get("quantiles"))
    levels = _arr(flow.get("levels"))
    mean = _arr(flow.get("mean"))
    if kap is not None and q is not None and q.ndim == 2 and kap.size == q.shape[0]:
        x = np.maximum(kap, 0) + 1  # κ = 0 on a log axis: plot against κ + 1
        nq = q.shape[1]
        for lo in range(nq // 2):
            hi = nq - 1 - lo
            lab = None
            if levels is not None and levels.size == nq:
                lab = f"{levels[lo]:.0%}–{levels[hi]:.0%} of pool points"
            a2.fill_between(x, q[:, lo], q[:, hi], color="tab:purple", alpha=0.18 + 0.17 * lo,
                            lw=0, label=lab)
        if nq % 2 == 1:
            a2.plot(x, q[:, nq // 2], color="tab:purple", lw=1.2, label="median σ²_κ(x)")
        if mean is not None and mean.size == kap.size:
            a2.plot(x, mean, "-", color="tab:blue", lw=2, label="pool mean = Gaussian σ² + t_κ",
                    gid="flow_mean")
        a2.set_xscale("log")
        a2.set_yscale("log")
        a2.set_xlabel("cutoff κ + 1 (kept modes + 1)")
        a2.set_ylabel("input-dependent ridge σ²_κ(x_i)")
        a2.set_title("functional RG flow σ²_{κ−1}(x) = σ²_κ(x) + λ_κ φ_κ(x)²")
        a2.grid(alpha=0.3, which="major")
        a2.legend(fontsize=8, loc="lower left")
    else:
        _no_data(a2, "functional flow")
    fig.suptitle(_title(results, "Non-Gaussian features: functional RG"), fontsize=10)
    return _finish(fig, path)


# ==============================================================================================
# Hermite toy model (paper Fig. 3, THEORY §5), drawn from the dict that
# :func:`rgjax.toy.run_toy` writes to ``toy.json``.

_RUN_COLORS = ("tab:blue", "tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:cyan")
_STANDARD_COLOR = "tab:green"  # the paper draws the standard-theory prediction in green
_RG_COLOR = "black"


def _scale(values: list[np.ndarray]) -> tuple[float, str]:
    """A power of ten that brings the largest finite |value| to order one, and its axis label."""
    vals = np.concatenate([np.abs(v[np.isfinite(v)]) for v in values if v is not None and v.size]
                          or [np.zeros(1)])
    top = float(vals.max()) if vals.size else 0.0
    if top == 0.0:
        return 1.0, ""
    exp = math.floor(math.log10(top))
    return (10.0**exp, f" [×1e{exp}]") if exp <= -2 or exp >= 3 else (1.0, "")


def _lam_label(run: Mapping) -> str:
    return rf"$\lambda_>$ = {_fmt(_num(run.get('lambda_greater')))}"


def _predictor_panel(ax: Axes, results: Mapping) -> None:
    """Averaged predictor vs x per λ_> with ±1 SE bands, the standard theory (0) and the RG."""
    grid = _arr(results.get("grid"))
    runs = [r for r in results.get("runs") or [] if isinstance(r, Mapping)]
    if grid is None or not runs:
        _no_data(ax, "toy predictor")
        return
    curves = [(_arr(_get(r, "predictor", "mean")), _arr(_get(r, "predictor", "se")),
               _arr(_get(r, "predictor", "rg"))) for r in runs]
    ok = [c[0] is not None and c[0].shape == grid.shape for c in curves]
    scale, unit = _scale([c[0] + np.nan_to_num(c[1]) for c, good in zip(curves, ok) if good]
                         + [c[0] - np.nan_to_num(c[1]) for c, good in zip(curves, ok) if good])
    ax.axhline(0.0, color=_STANDARD_COLOR, lw=2.2, zorder=1,
               label="standard theory (EK / Gaussian RG): 0")
    for i, (run, (mean, se, rg), good) in enumerate(zip(runs, curves, ok)):
        if not good:
            continue
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


def _coefficient_panel(ax: Axes, results: Mapping) -> None:
    """The ψ_1 coefficient c ± SE (and ± 2 SE) per λ_> against the theories as functions of λ_>."""
    runs = [r for r in results.get("runs") or [] if isinstance(r, Mapping)]
    lams = np.array([_num(r.get("lambda_greater")) for r in runs])
    cs = np.array([_num(r.get("c")) for r in runs])
    ses = np.array([_num(r.get("c_se")) for r in runs])
    curve = results.get("theory_curve") or {}
    lg, rg, rg1 = (_arr(curve.get(k)) for k in ("lambda_greater", "rg", "rg_first_order"))
    if not runs and lg is None:
        _no_data(ax, "toy coefficients")
        return
    scale, unit = _scale([cs + np.nan_to_num(ses) * 2, cs - np.nan_to_num(ses) * 2]
                         + [v for v in (rg, rg1) if v is not None])
    ax.axhline(0.0, color=_STANDARD_COLOR, lw=2.2, zorder=1, label="standard theory: 0")
    if lg is not None and rg is not None and rg.shape == lg.shape:
        ax.plot(lg, rg / scale, color=_RG_COLOR, lw=1.5, zorder=2,
                label="input-dependent RG (quadrature)")
    if lg is not None and rg1 is not None and rg1.shape == lg.shape:
        ax.plot(lg, rg1 / scale, color="0.5", ls=":", lw=1.5, zorder=2,
                label=r"input-dependent RG, first order in $\lambda_>/\sigma^2$")
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
        z0, zr = _num(run.get("z_zero")), _num(run.get("z_rg"))
        note = f"{z0:+.1f} SE from 0" + (f"\n{zr:+.1f} SE from RG" if math.isfinite(zr) else "")
        ax.annotate(note, (lam, c / scale), xytext=(7, 4), textcoords="offset points",
                    fontsize=7.5, va="bottom", color=color)
    ax.set_xlabel(r"$\lambda_>$ (eigenvalue of the integrated-out $\psi_2$)")
    ax.set_ylabel(rf"coefficient of $\psi_1$ in the averaged predictor{unit}")
    finite = lams[np.isfinite(lams)]
    if finite.size:
        span = max(float(np.ptp(finite)), float(np.max(np.abs(finite))), 1e-12)
        ax.set_xlim(float(finite.min()) - 0.15 * span, float(finite.max()) + 0.45 * span)
    ax.legend(fontsize=7.5, loc="lower left")
    ax.grid(alpha=0.3)


def _toy_title(results: Mapping) -> str:
    cfg = results.get("config") or {}
    parts = []
    for key, label in (("n", "n"), ("sigma2", "σ²"), ("lambda_1", r"$\lambda_1$")):
        if cfg.get(key) is not None:
            parts.append(f"{label} = {_fmt(_num(cfg[key]))}")
    if cfg.get("target_degree") is not None:
        parts.append(rf"target $\psi_{{{int(cfg['target_degree'])}}}$")
    if cfg.get("m") is not None:
        parts.append(f"m = {int(cfg['m']):,} data sets")
    return (r"Hermite toy model (paper Fig. 3): kernel $\lambda_1\psi_1\psi_1 + \lambda_>\psi_2\psi_2$"
            + ("\n" + ", ".join(parts) if parts else ""))


def toy_predictor(results: Mapping[str, Any], path: str | Path | None = None, *,
                  ax: Axes | Any = None) -> Figure:
    """Paper Fig. 3: the data-set-averaged GP predictor against the standard and the RG theory.

    Left: the averaged predictor f̄(x) for each λ_> with its ±1 SE band, the standard theory's
    zero line and the input-dependent RG prediction ``c_RG ψ_1(x)`` (dashed). Right: the
    coefficient of ψ_1 (± 1 and ± 2 SE) for each λ_> against the RG prediction as a function of λ_>
    (quadrature and first order) and the standard theory's 0 — the clearer view, since the effect
    (~1e-4) is small against the predictor's range.

    Args:
      results: the dictionary written to ``toy.json`` by :func:`rgjax.toy.run_toy`.
      path: write a PNG there when given.
      ax: an Axes (predictor panel only) or a pair of Axes to draw into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, axs = _axes(ax, 2, (12.0, 4.8))
    _predictor_panel(axs[0], results)
    if len(axs) > 1:
        _coefficient_panel(axs[1], results)
    if ax is None:
        fig.suptitle(_toy_title(results), fontsize=10)
    return _finish(fig, path)


def plot_toy(results: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Write ``toy.png`` into ``out_dir``; return ``{"toy": path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    toy_predictor(results, out / "toy.png")
    return {"toy": out / "toy.png"}


# ==============================================================================================
# Optimisation with gradients (rgjax.optimize), drawn from the dict that
# :func:`rgjax.optimize.run_optimize` writes to ``optimize.json``.


_OBJECTIVE_NAMES = {
    "rg": "RG (paper), smooth cutoff",
    "rg_dof": "RG + learned-mode corr. (rgjax §3b), smooth cutoff",
    "spectral_bias": "spectral bias",
}


def _opt_title(results: Mapping, what: str) -> str:
    cfg = results.get("config") or {}
    task = _get(results, "task", "name", default=cfg.get("task")) or "task"
    n = _get(results, "task", "n_pool")
    obj = _OBJECTIVE_NAMES.get(cfg.get("objective"), str(cfg.get("objective")))
    parts = [f"{task}" + (f", N = {n}" if n is not None else ""), f"η = {cfg.get('eta')}"]
    if cfg.get("objective") in ("rg", "rg_dof"):
        parts.append(f"T = {cfg.get('threshold')}, τ = {cfg.get('temperature')}")
    return f"{what}: {obj}\n" + "; ".join(parts)


def optimize_loss(results: Mapping, path: str | Path | None = None, *, ax: Any = None) -> Figure:
    """Objective vs step (left) and the parameter trajectories vs step (right, log scale)."""
    fig, (a1, a2) = _axes(ax, 2, (11, 4.2))
    fit = results.get("fit") or {}
    loss = _positive(_arr(fit.get("loss")))
    if loss is None or not np.isfinite(loss).any():
        a1.text(0.5, 0.5, "no loss trajectory in results", ha="center", va="center",
                transform=a1.transAxes, color="0.4")
    else:
        a1.plot(np.arange(loss.size), loss, color="tab:blue", gid="loss")
        a1.set_yscale("log")
        a1.set_xlabel("step")
        a1.set_ylabel("predicted test MSE (objective)")
        a1.grid(True, which="both", alpha=0.3)
        skipped = np.flatnonzero(np.asarray(fit.get("skipped") or [], dtype=bool))
        if skipped.size:
            a1.plot(skipped, loss[skipped], "x", color="tab:red", label="skipped (non-finite)")
            a1.legend(fontsize=8)
    w, b, s2 = (_arr(fit.get(k)) for k in ("W_std", "b_std", "sigma2"))
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
    title = _opt_title(results, "optimisation")
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        a1.set_title(title, fontsize=9)
    return _finish(fig, path)


_CURVE_STYLE = {"initial": dict(ls="--", marker="o", mfc="none"),
                "final": dict(ls="-", marker="s", mfc=None)}
_CURVE_COLOR = {"initial": "tab:gray", "final": "tab:blue"}


def optimize_mse(results: Mapping, path: str | Path | None = None, *, ax: Any = None) -> Figure:
    """Predicted (the objective; lines) and empirical (points ± SE) test MSE against η at the
    initial and the final parameters; the optimisation's η is marked."""
    fig, (a,) = _axes(ax, 1, (6.6, 4.8))
    etas = _arr(results.get("etas"))
    drawn = False
    for name in ("initial", "final"):
        entry = results.get(name) or {}
        if etas is None:
            break
        pred = _positive(_arr(_get(entry, "predicted", "objective")))
        emp = _positive(_arr(_get(entry, "empirical", "mse_pool")))
        se = _arr(_get(entry, "empirical", "mse_pool_se"))
        color, style = _CURVE_COLOR[name], _CURVE_STYLE[name]
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
    if not drawn:
        a.text(0.5, 0.5, "no curves in results", ha="center", va="center",
               transform=a.transAxes, color="0.4")
    else:
        a.set_xscale("log")
        a.set_yscale("log")
        eta = _get(results, "config", "eta")
        if eta is not None:
            a.axvline(float(eta), color="0.6", lw=0.8, ls=":", zorder=0)
        a.set_xlabel("training points η")
        a.set_ylabel("test MSE (pool)")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    a.set_title(_opt_title(results, "before / after"), fontsize=9)
    return _finish(fig, path)


def _mark(a: Axes, w_vals: np.ndarray, b_vals: np.ndarray, entry: Any, marker: str, color: str,
          label: str) -> None:
    """Mark a grid optimum (by its index) on an imshow panel."""
    idx = _get(entry, "index")
    if idx is None:
        return
    i, j = int(idx[0]), int(idx[1])
    if 0 <= i < w_vals.size and 0 <= j < b_vals.size:
        a.plot(j, i, marker, color=color, ms=12, mew=2, mfc="none", label=label)


def optimize_grid(results: Mapping, path: str | Path | None = None, *, ax: Any = None) -> Figure:
    """Heat maps of the objective (left) and the empirical MSE (right) at η over the (W_std, b_std)
    grid (shared by all layers, initial σ²); squares: theory optimum, circles: empirical optimum."""
    fig, axs = _axes(ax, 2, (11, 4.6))
    grid = results.get("grid")
    if not isinstance(grid, Mapping):
        for a in axs:
            a.text(0.5, 0.5, "no grid search in results", ha="center", va="center",
                   transform=a.transAxes, color="0.4")
        return _finish(fig, path)
    w_vals, b_vals = _arr(grid.get("W_std")), _arr(grid.get("b_std"))
    panels = (("predicted", "predicted (objective)"), ("empirical", "empirical GP (pool MSE)"))
    for a, (key, label) in zip(axs, panels):
        z = _positive(np.array(grid.get(key), dtype=float)) if grid.get(key) is not None else None
        if z is None or z.shape != (w_vals.size, b_vals.size) or not np.isfinite(z).any():
            a.text(0.5, 0.5, f"no {key} values", ha="center", va="center",
                   transform=a.transAxes, color="0.4")
            continue
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
    s2 = grid.get("sigma2")
    title = _opt_title(results, "grid search") + (f"; σ² = {s2:.3g}" if s2 is not None else "")
    if ax is None:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, path)


def plot_optimize(results: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Write ``optimize_loss.png``, ``optimize_mse.png`` and (with a grid) ``optimize_grid.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = [("optimize_loss", optimize_loss), ("optimize_mse", optimize_mse)]
    if isinstance(results.get("grid"), Mapping):
        figures.append(("optimize_grid", optimize_grid))
    written = {}
    for name, fn in figures:
        p = out / f"{name}.png"
        fn(results, p)
        written[name] = p
    return written
