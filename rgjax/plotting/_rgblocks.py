"""Reading the RG blocks of a curve job's results, and marking where the paper's RG stops.

A block is ``theory.rg[T]`` (or ``theory.rg_dof[T]``, …) for one threshold key ``T``: lists over
the η grid of ``mse``, ``kappa``, ``sigma2_eff`` and ``applicable``, and the scalar ``eta_max``
(docs/theory.md §3: beyond η_max no mode is below the threshold and the paper's RG does not apply).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from rgjax.plotting._style import Results, as_array, as_flags, as_float, fit_len, nested

__all__ = [
    "NA_TEXT",
    "main_threshold",
    "na_start",
    "rg_curve",
    "shade_not_applicable",
    "threshold_key",
    "threshold_keys",
]

#: Label of the shaded range where the paper's RG is not applicable.
NA_TEXT = "RG n/a\n(no mode below T)"


def threshold_keys(block: object) -> list[str]:
    """Threshold keys of a ``theory.rg``-style dict, sorted by numeric value."""
    if not isinstance(block, Mapping):
        return []
    return sorted(block, key=lambda k: (as_float(k), k))


def main_threshold(results: Results) -> str | None:
    """The key of the main threshold: ``config.threshold`` if present in ``theory.rg``, else the
    key nearest 0.5, else None."""
    keys = threshold_keys(nested(results, "theory", "rg")) or threshold_keys(
        nested(results, "theory", "rg_dof")
    )
    if not keys:
        return None
    t = as_float(nested(results, "config", "threshold"))
    if math.isfinite(t) and f"{t:g}" in keys:
        return f"{t:g}"
    target = t if math.isfinite(t) else 0.5

    def distance(k: str) -> float:
        return abs(as_float(k) - target) if math.isfinite(as_float(k)) else math.inf

    return min(keys, key=distance)


def threshold_key(results: Results, threshold: float | str | None) -> str | None:
    """The key of ``threshold`` as given, or of the main threshold when it is None."""
    return f"{as_float(threshold):g}" if threshold is not None else main_threshold(results)


def rg_curve(block: object, n: int) -> tuple[np.ndarray | None, np.ndarray]:
    """MSE of one RG threshold block with NaN where it is not applicable, and the ok-mask."""
    mse = fit_len(as_array(nested(block, "mse")), n)
    if mse is None:
        return None, np.zeros(n, dtype=bool)
    ok = as_flags(nested(block, "applicable"), n) & np.isfinite(mse) & (mse > 0)
    return np.where(ok, mse, np.nan), ok


def na_start(etas: np.ndarray, ok: np.ndarray, eta_max: float) -> float | None:
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


def _label_side(ax: Axes, start: float, etas: np.ndarray | None,
                curves: Sequence[np.ndarray | None]) -> bool:
    """Whether the label of a band from ``start`` on goes at the top (True) or the bottom: the
    side with more room between the axis edge and the ``curves`` (values at ``etas``) inside it."""
    ylo, yhi = ax.get_ylim()
    if etas is None or not (ylo > 0 and yhi > ylo):
        return True
    inside = etas >= start
    parts = [c[inside] for c in curves if c is not None and c.shape == etas.shape]
    ys = np.concatenate(parts) if parts else np.array([])
    ys = ys[np.isfinite(ys) & (ys >= ylo) & (ys <= yhi)]  # off-scale values take no room
    if not ys.size:
        return True
    f = np.log(ys / ylo) / math.log(yhi / ylo)
    return bool(1 - f.max() >= f.min())


def shade_not_applicable(ax: Axes, start: float, stop: float, etas: np.ndarray | None = None,
                         curves: Sequence[np.ndarray | None] = (), text: str = NA_TEXT) -> None:
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
    top = _label_side(ax, start, etas, curves)
    ax.text(math.sqrt(start * stop), 0.975 if top else 0.06,
            text if wide else text.replace("\n", " "), rotation=0 if wide else 90,
            ha="center", va="top" if top else "bottom", fontsize=8, color="0.35", zorder=0.7,
            clip_on=True, transform=ax.get_xaxis_transform(), gid="rg_not_applicable_label")
