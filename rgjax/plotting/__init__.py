"""Figures of rgjax's jobs, drawn from their results dictionaries alone.

Every figure function has the signature ``plot_<thing>(results, path=None, *, ax=None)``: it takes
a parsed results file (a plain dict of lists and numbers; JSON ``null`` is read as NaN) and returns
a :class:`matplotlib.figure.Figure`; with ``path`` it also writes a PNG (150 dpi). Figures are
built as bare :class:`~matplotlib.figure.Figure` objects, never through ``pyplot``, so nothing here
touches pyplot's global state or the backend: the package works headless (PNG output goes through
Agg) and in notebooks (a returned Figure displays inline). Pass ``ax=`` to draw into an existing
Axes (or a sequence of Axes for the multi-panel figures) instead.

Figures, by job:

* curve (``results.json``, :mod:`rgjax.plotting.curve`): :func:`plot_learning_curves` (paper
  Fig. 1), :func:`plot_threshold_sweep` (Fig. 4), :func:`plot_ridge_flow`, :func:`plot_spectrum`,
  :func:`plot_functional_rg` (docs/theory.md §5);
* gaussianity (``gaussianity.json``, :mod:`rgjax.plotting.gaussianity`):
  :func:`plot_gaussianity_pair` (Fig. 2), :func:`plot_gaussianity_tails` (Fig. 5),
  :func:`plot_gaussianity_sweep`;
* toy (``toy.json``, :mod:`rgjax.plotting.toy`): :func:`plot_toy_predictor` (Fig. 3);
* optimize (``optimize.json``, :mod:`rgjax.plotting.optimize`): :func:`plot_optimize_loss`,
  :func:`plot_optimize_mse`, :func:`plot_optimize_grid`;
* bench (``bench.json``, :mod:`rgjax.plotting.bench`): :func:`plot_bench` (time against size per
  stage).

Each job has a writer ``save_<job>_figures(results, out) -> dict[str, Path]`` that draws all its
figures into the folder ``out``; :data:`FIGURES` maps each results file name to its writer.
:data:`LABELS` is the one table of the curves' names (``short`` for tables, ``long`` for legends).

Where the paper's RG is not applicable (no mode below the threshold, η > η_max, docs/theory.md §3)
no RG value is drawn; the range is shaded and labelled instead. The learned-mode correction
(docs/theory.md §3b) is rgjax's extension and not part of the paper; its label says so wherever it
appears.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rgjax.plotting._style import LABELS, Label, PathLike, Results
from rgjax.plotting.bench import plot_bench, save_bench_figures
from rgjax.plotting.curve import (
    fit_power_law,
    plot_functional_rg,
    plot_learning_curves,
    plot_ridge_flow,
    plot_spectrum,
    plot_threshold_sweep,
    save_curve_figures,
)
from rgjax.plotting.gaussianity import (
    plot_gaussianity_pair,
    plot_gaussianity_sweep,
    plot_gaussianity_tails,
    save_gaussianity_figures,
)
from rgjax.plotting.optimize import (
    plot_optimize_grid,
    plot_optimize_loss,
    plot_optimize_mse,
    save_optimize_figures,
)
from rgjax.plotting.toy import plot_toy_predictor, save_toy_figures

__all__ = [
    "FIGURES",
    "LABELS",
    "Label",
    "fit_power_law",
    "plot_bench",
    "plot_functional_rg",
    "plot_gaussianity_pair",
    "plot_gaussianity_sweep",
    "plot_gaussianity_tails",
    "plot_learning_curves",
    "plot_optimize_grid",
    "plot_optimize_loss",
    "plot_optimize_mse",
    "plot_ridge_flow",
    "plot_spectrum",
    "plot_threshold_sweep",
    "plot_toy_predictor",
    "save_bench_figures",
    "save_curve_figures",
    "save_gaussianity_figures",
    "save_optimize_figures",
    "save_toy_figures",
]

#: The figure writer of each job, by the name of its results file: ``FIGURES[name](results, out)``
#: draws every figure of that job into the folder ``out`` and returns ``{figure: path}``.
FIGURES: dict[str, Callable[[Results, PathLike], dict[str, Path]]] = {
    "results.json": save_curve_figures,
    "gaussianity.json": save_gaussianity_figures,
    "toy.json": save_toy_figures,
    "optimize.json": save_optimize_figures,
    "bench.json": save_bench_figures,
}
