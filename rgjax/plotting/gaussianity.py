"""Feature-mode Gaussianity figures (paper Figs. 2 and 5, docs/theory.md §6), drawn from the
parsed ``gaussianity.json`` of the gaussianity job.

* :func:`plot_gaussianity_pair` — paper Fig. 2: two low modes, joint scatter and marginals;
* :func:`plot_gaussianity_tails` — paper Fig. 5: histograms of high-k modes with Gaussian and
  Cauchy fits;
* :func:`plot_gaussianity_sweep` — Gaussian vs Cauchy across the spectrum, with the crossover;
* :func:`save_gaussianity_figures` — all three, written to a folder.

Mode numbers k are 1-based. The JSON holds the raw feature values φ_k(x_i) of the displayed
modes only.
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
    FigureFn,
    PathLike,
    Results,
    as_array,
    as_float,
    figure_title,
    finish,
    fmt,
    get_axes,
    mapping,
    nested,
    no_data,
    write_figures,
)

__all__ = [
    "plot_gaussianity_pair",
    "plot_gaussianity_sweep",
    "plot_gaussianity_tails",
    "save_gaussianity_figures",
]

_GAUSS_COLOR = "tab:blue"
_CAUCHY_COLOR = "tab:red"
_GAUSS_STYLE: dict[str, Any] = dict(color=_GAUSS_COLOR, ls="--", lw=1.8)
_CAUCHY_STYLE: dict[str, Any] = dict(color=_CAUCHY_COLOR, ls="-", lw=1.6)
_MODE_KEYS = ("modes", "gauss_mean", "gauss_std", "cauchy_loc", "cauchy_scale", "loglik_gauss",
              "loglik_cauchy", "ks_gauss", "ks_cauchy", "excess_kurtosis", "eigenvalues")


def _gauss_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def _cauchy_pdf(x: np.ndarray, loc: float, scale: float) -> np.ndarray:
    return 1.0 / (math.pi * scale * (1.0 + ((x - loc) / scale) ** 2))


def _mode_entry(block: Mapping[str, Any], i: int) -> dict[str, float]:
    """The i-th mode of a ``pair``/``tails`` block as scalars (NaN where missing)."""
    out: dict[str, float] = {}
    for k in _MODE_KEYS:
        v = block.get(k)
        out[k] = as_float(v[i]) if isinstance(v, Sequence) and len(v) > i else math.nan
    return out


# ----------------------------------------------------------------------------------------------
# pair of low modes (paper Fig. 2)


def _pair_axes(ax: AxesLike) -> tuple[Figure, Axes, Axes | None, Axes | None, Axes | None]:
    """(figure, scatter, top marginal, right marginal, corner): a new 2×2 grid, or the caller's
    Axes in that order (missing ones are None and their panels are left out)."""
    if ax is None:
        fig = Figure(figsize=(7.2, 7.0), layout="constrained")
        gs = fig.add_gridspec(2, 2, width_ratios=(4, 1.3), height_ratios=(1.3, 4))
        scatter = fig.add_subplot(gs[1, 0])
        hx = fig.add_subplot(gs[0, 0], sharex=scatter)
        hy = fig.add_subplot(gs[1, 1], sharey=scatter)
        return fig, scatter, hx, hy, fig.add_subplot(gs[0, 1])
    fig, axs = get_axes(ax, 1, (7.2, 7.0))
    axs4: list[Axes | None] = [*axs[1:4], None, None, None]
    return fig, axs[0], axs4[0], axs4[1], axs4[2]


def _marginal(h: Axes, v: np.ndarray, e: Mapping[str, float], vertical: bool) -> None:
    """Histogram (density) of one mode and its maximum-likelihood Gaussian."""
    bins = min(60, max(10, int(np.sqrt(v.size))))
    h.hist(v, bins=bins, density=True, color="0.7",
           orientation="horizontal" if vertical else "vertical", label="data")
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


def _pair_scatter(ax: Axes, results: Results, blk: Mapping[str, Any], a: np.ndarray,
                  b: np.ndarray, ka: int, kb: int) -> None:
    """Joint scatter of the two modes, coloured by target (class) when ``targets`` is present."""
    tgt = as_array(blk.get("targets"))
    classes = list(nested(results, "task", "classes", default=[]) or [])
    if tgt is not None and tgt.shape == a.shape and np.unique(tgt).size <= 10:
        values = np.unique(tgt)
        for j, val in enumerate(values[::-1]):
            sel = tgt == val
            name = (f"class {classes[j]} (y = {val:+g})" if len(classes) == values.size
                    else f"y = {val:+g}")
            ax.scatter(a[sel], b[sel], s=5, alpha=0.45, lw=0, color=f"C{j + 2}", label=name,
                       rasterized=True)
        ax.legend(loc="upper right", fontsize=8, markerscale=2.5, framealpha=0.9)
    else:
        ax.scatter(a, b, s=5, alpha=0.45, lw=0, color="0.25", rasterized=True)
    ax.set_xlabel(rf"$\phi_{{{ka}}}(x_i)$   (mode k = {ka})")
    ax.set_ylabel(rf"$\phi_{{{kb}}}(x_i)$   (mode k = {kb})")
    ax.grid(True, alpha=0.3)


def _pair_corner(corner: Axes, hx: Axes | None, entries: Sequence[Mapping[str, float]]) -> None:
    """The empty corner holds the legend of the marginals and the fit statistics of both modes."""
    corner.axis("off")
    if hx is not None:
        handles, labels = hx.get_legend_handles_labels()
        corner.legend(handles, labels, loc="upper left", fontsize=7.5, frameon=False,
                      borderaxespad=0.0)
    stats = "\n".join(
        f"k = {int(e['modes'])}:  ℓ$_G$ = {e['loglik_gauss']:.3f}\n"
        f"    KS$_G$ = {e['ks_gauss']:.3f}\n    ex. kurtosis = {e['excess_kurtosis']:.2f}"
        for e in entries)
    corner.text(0.0, 0.0, stats + "\n(ℓ: mean log-lik. per point)", transform=corner.transAxes,
                fontsize=7.5, va="bottom", ha="left", linespacing=1.25)


def plot_gaussianity_pair(results: Results, path: PathLike | None = None, *,
                          ax: AxesLike = None) -> Figure:
    """Paper Fig. 2: joint scatter of two low feature modes, marginal histograms, Gaussian fits.

    Points are coloured by target (class) when ``pair.targets`` is present. Each marginal shows
    the histogram (density) of φ_k and the maximum-likelihood Gaussian; the corner gives each
    mode's mean log-likelihood, KS statistic and the excess kurtosis of the sample.

    Args:
      results: the parsed ``gaussianity.json``.
      path: write a PNG there when given.
      ax: Axes to draw into, in the order (scatter, top marginal, right marginal, corner); a
        single Axes gets the scatter only. Default: a new figure with all four.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    fig, scatter, hx, hy, corner = _pair_axes(ax)
    blk = mapping(results.get("pair"))
    feats = blk.get("features")
    a = as_array(feats[0]) if isinstance(feats, Sequence) and len(feats) >= 2 else None
    b = as_array(feats[1]) if isinstance(feats, Sequence) and len(feats) >= 2 else None
    if a is None or b is None:
        if ax is None and corner is not None:  # nothing to put in the corner: leave it out
            corner.remove()
        no_data(scatter, "pair features")
        fig.suptitle(figure_title(results, "Feature modes"), fontsize=10)
        return finish(fig, path)
    ea, eb = _mode_entry(blk, 0), _mode_entry(blk, 1)
    ka, kb = int(ea["modes"]), int(eb["modes"])
    _pair_scatter(scatter, results, blk, a, b, ka, kb)
    if hx is not None:
        _marginal(hx, a, ea, False)
    if hy is not None:
        _marginal(hy, b, eb, True)
    if corner is not None:
        _pair_corner(corner, hx, (ea, eb))
    title = figure_title(results, f"Feature modes k = {ka}, {kb} (Fig. 2)")
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        scatter.set_title(title, fontsize=9)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# high-k modes (paper Fig. 5)


def _tail_panel(a: Axes, v: np.ndarray, e: Mapping[str, float]) -> None:
    """Histogram of one high-k mode (log density) with its Gaussian and Cauchy fits."""
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
    peak = _cauchy_pdf(np.array(e["cauchy_loc"]), e["cauchy_loc"], e["cauchy_scale"])
    top = max(float(np.nanmax(counts)), float(peak))
    a.set_ylim(0.3 * floor, 40.0 * top)  # headroom above the peak for the legend
    better = "Cauchy" if e["loglik_cauchy"] > e["loglik_gauss"] else "Gaussian"
    a.set_title(f"k = {int(e['modes'])}  (λ_k = {fmt(e['eigenvalues'])}); "
                f"ex. kurtosis {e['excess_kurtosis']:.3g}\nbetter fit: {better}", fontsize=9)
    a.set_xlabel(rf"$\phi_{{{int(e['modes'])}}}(x_i)$")
    a.set_ylabel("density (log)")
    a.legend(fontsize=7, loc="upper right", framealpha=0.9)
    a.grid(True, which="major", alpha=0.3)


def plot_gaussianity_tails(results: Results, path: PathLike | None = None, *,
                           ax: AxesLike = None) -> Figure:
    """Paper Fig. 5: histograms of high-k feature modes with the Gaussian and Cauchy fits.

    One panel per mode in ``tails``, density on a log axis (down to one count per bin) so the
    tails are visible; the legend gives each fit's mean log-likelihood ℓ and KS statistic.

    Args:
      results: the parsed ``gaussianity.json``.
      path: write a PNG there when given.
      ax: a sequence of Axes, one per mode; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    blk = mapping(results.get("tails"))
    raw = blk.get("features")
    feats: Sequence[object] = raw if isinstance(raw, Sequence) else []
    m = max(1, len(feats))
    fig, axs = get_axes(ax, m, (4.4 * m, 4.3))
    if not feats:
        no_data(axs[0], "tail-mode features")
    for i, f in enumerate(feats[: len(axs)]):
        v = as_array(f)
        if v is not None:
            _tail_panel(axs[i], v, _mode_entry(blk, i))
    title = figure_title(results, "High-k feature modes (Fig. 5)")
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        axs[0].set_title(title + "\n" + axs[0].get_title(), fontsize=9)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# sweep over the spectrum


def _loglik_panel(a1: Axes, results: Results, k: np.ndarray, d: np.ndarray) -> None:
    """ℓ_Cauchy − ℓ_Gauss per mode, coloured by the better fit, with the refined modes."""
    a1.axhline(0.0, color="0.4", lw=0.9)
    a1.plot(k, d, "-", color="0.5", lw=1.0, zorder=1)
    c = d > 0
    a1.scatter(k[c], d[c], color=_CAUCHY_COLOR, s=22, zorder=3, label="Cauchy fits better")
    a1.scatter(k[~c], d[~c], color=_GAUSS_COLOR, s=22, zorder=3, label="Gaussian fits better")
    # Modes added by the refinement around the crossover (every mode in that bracket): small dots.
    ref = mapping(results.get("refined"))
    rk = as_array(ref.get("modes"))
    rg, rc = as_array(ref.get("loglik_gauss")), as_array(ref.get("loglik_cauchy"))
    if rk is not None and rk.size and rg is not None and rc is not None:
        rd = rc - rg
        extra = ~np.isin(rk, k)
        if extra.any():
            a1.scatter(rk[extra], rd[extra], s=5, zorder=2, lw=0,
                       color=np.where(rd[extra] > 0, _CAUCHY_COLOR, _GAUSS_COLOR).tolist(),
                       alpha=0.6, label=f"every mode near the crossover ({int(extra.sum())})")
    a1.set_ylabel(r"$\ell_{\rm Cauchy} - \ell_{\rm Gauss}$ (per point)")


def _ks_panel(a2: Axes, sw: Mapping[str, Any], k: np.ndarray) -> None:
    """KS statistic of the Gaussian and the Cauchy fit per mode."""
    kg, kc = as_array(sw.get("ks_gauss")), as_array(sw.get("ks_cauchy"))
    if kg is not None and kg.shape == k.shape:
        a2.plot(k, kg, marker="o", ms=3.5, label="KS, Gaussian fit",
                **{**_GAUSS_STYLE, "lw": 1.2})
    if kc is not None and kc.shape == k.shape:
        a2.plot(k, kc, marker="s", ms=3.5, label="KS, Cauchy fit",
                **{**_CAUCHY_STYLE, "lw": 1.2})
    a2.set_ylabel("KS statistic")
    a2.set_ylim(bottom=0)
    a2.legend(fontsize=8, loc="upper center", framealpha=0.9)


def _kurtosis_panel(a3: Axes, sw: Mapping[str, Any], k: np.ndarray) -> None:
    """Excess kurtosis per mode (symlog; 0 for a Gaussian)."""
    ku = as_array(sw.get("excess_kurtosis"))
    if ku is not None and ku.shape == k.shape:
        a3.plot(k, ku, "o-", color="tab:purple", ms=3.5, lw=1.2, label="excess kurtosis")
    a3.axhline(0.0, color="0.4", lw=0.9, label="Gaussian (0)")
    a3.set_yscale("symlog", linthresh=1.0)
    lo = float(np.nanmin(ku)) if ku is not None and np.isfinite(ku).any() else 0.0
    a3.set_ylim(bottom=min(-1.5, 1.5 * lo))  # excess kurtosis is >= -2 for any sample
    a3.set_ylabel("excess kurtosis (symlog)")
    a3.legend(fontsize=8, loc="upper left", framealpha=0.9)


def _sweep_subtitle(results: Results) -> str:
    """Where the crossover is (and where the log sweep alone put it), out of N modes."""
    cross = results.get("crossover")
    n_pool = nested(results, "task", "n_pool")
    cs = results.get("crossover_sweep")
    sub = "crossover: none in the sweep" if cross is None else f"crossover k = {int(cross)}"
    if cross is not None and cs is not None and cs != cross:
        sub += f" (log sweep alone: {int(cs)})"
    if n_pool:
        sub += f" of N = {int(n_pool)}"
    return sub


def plot_gaussianity_sweep(results: Results, path: PathLike | None = None, *,
                           ax: AxesLike = None) -> Figure:
    """Gaussian vs Cauchy across the spectrum (paper's appendix on Figs. 2 and 5).

    Top: mean log-likelihood difference ℓ_Cauchy − ℓ_Gauss against k (log x), positive where the
    Cauchy fit is better, with the crossover (start of the final Cauchy-better run) marked.
    Middle: KS statistic of each fit. Bottom: excess kurtosis (symlog y; 0 for a Gaussian, +∞
    for a Cauchy population).

    Args:
      results: the parsed ``gaussianity.json``.
      path: write a PNG there when given.
      ax: up to three Axes (top to bottom); default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    if ax is None:
        fig = Figure(figsize=(7.5, 8.6), layout="constrained")
        axs = list(fig.subplots(3, 1, sharex=True))
    else:
        fig, axs = get_axes(ax, 3, (7.5, 8.6))
    sw = mapping(results.get("sweep"))
    k = as_array(sw.get("modes"))
    lg, lc = as_array(sw.get("loglik_gauss")), as_array(sw.get("loglik_cauchy"))
    if k is None or k.size == 0 or lg is None or lc is None:
        for a in axs:
            no_data(a, "sweep")
        return finish(fig, path)
    a1 = axs[0]
    _loglik_panel(a1, results, k, lc - lg)
    if len(axs) > 1:
        _ks_panel(axs[1], sw, k)
    if len(axs) > 2:
        _kurtosis_panel(axs[2], sw, k)
    cross = results.get("crossover")
    for a in axs:
        a.set_xscale("log")
        a.grid(True, which="major", alpha=0.3)
        if cross is not None:
            a.axvline(float(cross), color="k", ls=":", lw=1.3, gid="crossover",
                      label=f"crossover k = {int(cross)}" if a is a1 else None)
    a1.legend(fontsize=8, loc="upper left", framealpha=0.9)
    axs[-1].set_xlabel("mode index k (1-based)")
    title = (figure_title(results, "Gaussian vs Cauchy feature modes") + "\n"
             + _sweep_subtitle(results))
    if ax is None:
        fig.suptitle(title, fontsize=10)
    else:
        a1.set_title(title, fontsize=9)
    return finish(fig, path)


# ----------------------------------------------------------------------------------------------
# the job's figures


def save_gaussianity_figures(results: Results, out: PathLike) -> dict[str, Path]:
    """Write ``gaussianity_pair.png``, ``gaussianity_tails.png`` and ``gaussianity_sweep.png``
    into the folder ``out`` (created if needed) from a ``gaussianity.json`` dict.

    Returns:
      ``{name: path}`` of the files written.
    """
    figures: tuple[tuple[str, FigureFn], ...] = (
        ("gaussianity_pair", plot_gaussianity_pair),
        ("gaussianity_tails", plot_gaussianity_tails),
        ("gaussianity_sweep", plot_gaussianity_sweep))
    return write_figures(results, out, figures)
