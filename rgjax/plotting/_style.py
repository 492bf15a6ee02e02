"""Shared style of rgjax's figures: the label table of the theories, colours, line styles, the
resolution, and the small helpers that turn parsed JSON into arrays and finish a figure.

Results dictionaries are parsed JSON: plain dicts of lists and numbers, with JSON ``null`` (Python
``None``) wherever a value is missing or not finite. The readers here never raise on such holes:
``None`` and unparsable entries become NaN, missing keys become ``None``/defaults, so every figure
can be drawn from a partial or older results file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, SupportsFloat, TypeAlias, overload

import numpy as np
from matplotlib.axes import Axes
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

__all__ = [
    "ACT_NAMES",
    "AxesLike",
    "COLORS",
    "DPI",
    "LABELS",
    "Label",
    "PathLike",
    "Results",
    "STYLES",
    "as_array",
    "as_flags",
    "as_float",
    "errorbar_points",
    "eta_limits",
    "figure_title",
    "finish",
    "fit_len",
    "fmt",
    "FigureFn",
    "get_axes",
    "log_limits",
    "mapping",
    "nested",
    "no_data",
    "positive",
    "write_figures",
]

#: A parsed results file (``results.json``, ``toy.json``, …): JSON objects, lists and numbers.
Results: TypeAlias = Mapping[str, Any]
#: A file or folder to write to.
PathLike: TypeAlias = str | os.PathLike[str]
#: Where to draw: one Axes, a sequence (or array) of Axes, or ``None`` for a new figure.
AxesLike: TypeAlias = Axes | Sequence[Axes] | np.ndarray | None


class Label(NamedTuple):
    """How one curve is named: ``short`` in text tables, ``long`` in figure legends."""

    short: str
    long: str


#: The one label table of the curves, by results key. The learned-mode correction (``rg_dof``,
#: docs/theory.md §3b) is rgjax's own extension and not part of the paper; both labels say so.
LABELS: dict[str, Label] = {
    "empirical": Label("empirical", "empirical (pool MSE ± SE)"),
    "heldout": Label("held-out", "empirical (held-out points ± SE)"),
    "ek": Label("EK (bare ridge)", "EK, bare ridge σ²"),
    "rg": Label("RG (paper)", "RG, paper (EK + renormalized ridge)"),
    "rg_dof": Label("RG+dof (rgjax §3b)", "RG + learned-mode correction (rgjax §3b, not in paper)"),
    "spectral_bias": Label("spectral bias", "spectral bias (Canatar et al.)"),
    "rg_reweighted": Label(
        "RG, input-dep. ridge",
        "RG, input-dependent ridge σ²_κ(x) (reweighted, docs/theory.md §5)",
    ),
}

#: Colour of each curve, by results key.
COLORS: dict[str, str] = {
    "empirical": "black",
    "heldout": "0.45",
    "ek": "tab:red",
    "rg": "tab:blue",
    "rg_dof": "tab:green",
    "spectral_bias": "tab:orange",
}
#: Line style of each theory, by results key.
STYLES: dict[str, str] = {"ek": "--", "rg": "-", "rg_dof": "-.", "spectral_bias": ":"}
#: Display names of the activations in titles.
ACT_NAMES: dict[str, str] = {
    "relu": "ReLU", "gelu": "GELU", "erf": "erf", "tanh": "tanh", "linear": "linear",
}
#: Resolution of the written PNGs.
DPI = 150

# ----------------------------------------------------------------------------------------------
# JSON data → numbers and arrays


def as_float(x: object) -> float:
    """A scalar as float; None (JSON null) and unparsable values become NaN."""
    if not isinstance(x, (str, SupportsFloat)):  # None, lists, objects
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def as_array(x: object) -> np.ndarray | None:
    """A list (possibly holding None) as a float array with NaN for None; None stays None."""
    if x is None:
        return None
    return np.atleast_1d(np.array(x, dtype=float))


def as_flags(x: object, n: int) -> np.ndarray:
    """A list of flags as a bool array of length n; missing → all True, None entries → False."""
    if not isinstance(x, (Sequence, np.ndarray)) or isinstance(x, str):  # None: missing
        return np.ones(n, dtype=bool)
    a = np.array([bool(v) if v is not None else False for v in x], dtype=bool)
    return a if a.shape == (n,) else np.ones(n, dtype=bool)


def nested(d: object, *keys: str, default: Any = None) -> Any:
    """Nested ``d[k1][k2]...`` that returns ``default`` on any missing level."""
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return default
        d = d[k]
    return d


def mapping(x: object) -> Mapping[str, Any]:
    """``x`` if it is a JSON object, else an empty one (a missing block reads as empty)."""
    return x if isinstance(x, Mapping) else {}


@overload
def positive(y: np.ndarray) -> np.ndarray: ...
@overload
def positive(y: None) -> None: ...
@overload
def positive(y: np.ndarray | None) -> np.ndarray | None: ...


def positive(y: np.ndarray | None) -> np.ndarray | None:
    """Values usable on a log axis: non-positive and non-finite entries become NaN."""
    if y is None:
        return None
    y = np.array(y, dtype=float)
    y[~(np.isfinite(y) & (y > 0))] = np.nan
    return y


def fit_len(y: np.ndarray | None, n: int) -> np.ndarray | None:
    """``y`` if it has length n, else None (a malformed entry is skipped, not fatal)."""
    return y if y is not None and y.shape == (n,) else None


def log_limits(values: Sequence[np.ndarray | None], pad: float = 1.6) -> tuple[float, float] | None:
    """Log-axis limits covering the positive finite entries of ``values``, padded by ``pad``."""
    vs = [v[np.isfinite(v) & (v > 0)] for v in values if v is not None]
    vs = [v for v in vs if v.size]
    if not vs:
        return None
    allv = np.concatenate(vs)
    return float(allv.min()) / pad, float(allv.max()) * pad


# ----------------------------------------------------------------------------------------------
# text


def fmt(x: float) -> str:
    """A compact number for titles and labels."""
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e+")
    return f"{x:.4g}"


def _kernel_text(cfg: Mapping[str, Any]) -> str | None:
    """"ReLU NNGP, depth 2, σ_w = 1.414, σ_b = 0.1" from the config, or None without activation."""
    act = cfg.get("activation")
    if not act:
        return None
    kern = f"{ACT_NAMES.get(str(act).lower(), str(act))} NNGP"
    if cfg.get("depth") is not None:
        kern += f", depth {cfg['depth']}"
    if cfg.get("W_std") is not None:
        kern += f", σ_w = {fmt(as_float(cfg['W_std']))}"
    if cfg.get("b_std") is not None:
        kern += f", σ_b = {fmt(as_float(cfg['b_std']))}"
    return kern


def figure_title(results: Results, what: str) -> str:
    """Two-line title: the figure name and task, then the kernel, σ², trials."""
    cfg = mapping(nested(results, "config"))
    name = nested(results, "task", "name") or cfg.get("task")
    n_pool = nested(results, "task", "n_pool", default=nested(results, "spectrum", "n_pool"))
    first = f"{what} — {name}" if name else what
    if n_pool is not None:
        first += f" (N = {int(n_pool)})"
    parts: list[str] = []
    kern = _kernel_text(cfg)
    if kern is not None:
        parts.append(kern)
    if cfg.get("sigma2") is not None:
        parts.append(f"σ² = {fmt(as_float(cfg['sigma2']))}")
    trials = nested(results, "empirical", "trials", default=cfg.get("trials"))
    if trials is not None:
        parts.append(f"{int(trials)} trials")
    return first + ("\n" + "; ".join(parts) if parts else "")


# ----------------------------------------------------------------------------------------------
# figures and axes


def root_figure(ax: Axes) -> Figure:
    """The top-level Figure that ``ax`` belongs to (through any SubFigure)."""
    fig = ax.figure
    return fig if isinstance(fig, Figure) else fig.figure


def get_axes(ax: AxesLike, ncols: int, figsize: tuple[float, float],
             **kw: Any) -> tuple[Figure, list[Axes]]:
    """Use the caller's Axes (one, or a sequence) or make a new Figure with ``ncols`` panels."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        axs = fig.subplots(1, ncols, squeeze=False, **kw)[0]
        return fig, list(axs)
    axs = list(ax) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
    return root_figure(axs[0]), axs


def finish(fig: Figure, path: PathLike | None) -> Figure:
    """Save ``fig`` as PNG when ``path`` is given; return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    return fig


#: A figure function as the job writers call it: ``fn(results, path)``.
FigureFn: TypeAlias = Callable[[Results, Path], Figure]


def write_figures(results: Results, out: PathLike,
                  figures: Sequence[tuple[str, FigureFn]]) -> dict[str, Path]:
    """Draw each ``(name, fn)`` of ``figures`` into ``out/name.png`` (folder created if needed).

    Returns:
      ``{name: path}`` of the files written.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, fn in figures:
        written[name] = folder / f"{name}.png"
        fn(results, written[name])
    return written


def no_data(ax: Axes, what: str) -> None:
    """A grey "no … in results" note in the middle of an empty panel."""
    ax.text(0.5, 0.5, f"no {what} in results", ha="center", va="center",
            transform=ax.transAxes, color="0.4")


def eta_limits(etas: np.ndarray) -> tuple[float, float]:
    """Log-axis limits of an η grid: its positive range widened by a factor 1.25 each side."""
    e = etas[np.isfinite(etas) & (etas > 0)]
    if e.size == 0:
        return 1.0, 10.0
    return float(e.min()) / 1.25, float(e.max()) * 1.25


def errorbar_points(ax: Axes, etas: np.ndarray, y: np.ndarray, se: np.ndarray | None,
                    key: str, **kw: Any) -> ErrorbarContainer:
    """Empirical points (``key``: "empirical" or "heldout", for colour and label) with SE error
    bars clipped to stay positive on a log axis."""
    yp = positive(y)
    yerr = None
    if se is not None:
        se = np.where(np.isfinite(se), np.abs(se), 0.0)
        yerr = np.vstack([np.minimum(se, 0.9 * np.nan_to_num(yp)), se])
    return ax.errorbar(etas, yp, yerr=yerr, color=COLORS[key], label=LABELS[key].long, gid=key,
                       capsize=2.5, linestyle="none", zorder=4, **kw)
