"""Benchmark figure, drawn from the parsed ``bench.json`` of the bench job.

* :func:`plot_bench` — one panel per stage: warm and cold time against the size (log-log), the
  baseline dashed, failed sizes marked;
* :func:`save_bench_figures` — that figure, written to a folder.
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
    as_float,
    finish,
    mapping,
    no_data,
    root_figure,
    write_figures,
)

__all__ = ["plot_bench", "save_bench_figures"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
#: What a stage's size counts (the x axis).
_SIZE_LABEL = {"toy": "data sets m", "theory": "modes N"}


def _records(results: Results) -> list[Mapping[str, Any]]:
    """The entries of ``records`` that are JSON objects with a stage."""
    return [r for r in results.get("records") or [] if isinstance(r, Mapping) and r.get("stage")]


def _by_stage(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records grouped by stage, stages in the order they first appear."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        out.setdefault(str(r["stage"]), []).append(r)
    return out


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(sizes, values)`` of one key over records, sorted by size, positive finite values only."""
    pts = sorted((as_float(r.get("n")), as_float(r.get(key))) for r in records)
    pts = [(n, v) for n, v in pts if math.isfinite(n) and math.isfinite(v) and v > 0 and n > 0]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def _stage_panel(ax: Axes, stage: str, records: Sequence[Mapping[str, Any]]) -> None:
    """Warm (solid), cold (dotted) and baseline (dashed) time per case of one stage."""
    cases: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        cases.setdefault(str(r.get("case") or stage), []).append(r)
    drawn = False
    for i, (case, recs) in enumerate(cases.items()):
        color = _COLORS[i % len(_COLORS)]
        label = "" if case == stage else f"{case}: "
        for key, ls, marker, what in (("warm_s", "-", "o", "warm"), ("cold_s", ":", "x", "cold"),
                                      ("baseline_s", "--", "s", "baseline")):
            n, t = _series(recs, key)
            if n.size:
                name = what if what != "baseline" else str(recs[0].get("baseline") or what)
                ax.plot(n, t, ls=ls, marker=marker, ms=4, color=color, label=f"{label}{name}")
                drawn = True
        failed = [as_float(r.get("n")) for r in recs if r.get("error")]
        for n in failed:
            ax.axvline(n, color=color, lw=0.8, alpha=0.6, ls="-.")
        if failed:
            ax.plot([], [], color=color, ls="-.", label=f"{label}failed")
    if not drawn:
        no_data(ax, f"{stage} timings")
        ax.set_title(stage)
        return
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_SIZE_LABEL.get(stage, "pool size N"))
    ax.set_ylabel("seconds")
    ax.set_title(stage)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, loc="best")


def _title(results: Results) -> str:
    dev = mapping(results.get("device"))
    kinds = sorted({str(d.get("kind")) for d in dev.get("devices") or [] if isinstance(d, Mapping)})
    cache = "on" if mapping(results.get("compile_cache")).get("enabled") else "off"
    ladder = mapping(results.get("resolved")).get("ladder")
    parts = [f"rgjax bench: {', '.join(kinds) or 'unknown device'} ({dev.get('backend', '?')})"]
    if ladder:
        parts.append(f"{ladder} sizes")
    parts.append(f"compilation cache {cache}")
    return ", ".join(parts) + "\nwarm solid, cold (compile included) dotted, baseline dashed"


def _axes(ax: AxesLike, n: int) -> tuple[Figure, list[Axes]]:
    """The caller's Axes, or a new figure with a grid of ``n`` panels (spares hidden)."""
    if ax is not None:
        axs = list(ax) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
        return root_figure(axs[0]), axs
    ncols = min(4, max(1, n))
    nrows = math.ceil(max(1, n) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.6 * nrows), layout="constrained")
    axs = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for extra in axs[n:]:
        extra.set_visible(False)
    return fig, axs


def plot_bench(results: Results, path: PathLike | None = None, *, ax: AxesLike = None) -> Figure:
    """Time against size for every stage of a ``rgjax bench`` run, log-log.

    One panel per stage (per case within it, e.g. the four theories): the warm time (best of
    the repeats, solid), the cold time (first call, compilation included, dotted) and the
    baseline (dashed, labelled by its library); a dash-dotted vertical line marks a size where
    the stage failed (its error is in the JSON and the table).

    Args:
      results: the parsed ``bench.json`` of the bench job.
      path: write a PNG there when given.
      ax: an Axes or a sequence of Axes (one per stage, in the order of the records) to draw
        into; default a new figure.

    Returns:
      the :class:`~matplotlib.figure.Figure`.
    """
    stages = _by_stage(_records(results))
    fig, axs = _axes(ax, len(stages))
    if not stages:
        no_data(axs[0], "benchmark records")
    for a, (stage, recs) in zip(axs, stages.items()):
        _stage_panel(a, stage, recs)
    if ax is None:
        fig.suptitle(_title(results), fontsize=10)
    return finish(fig, path)


def save_bench_figures(results: Results, out: PathLike) -> dict[str, Path]:
    """Write ``bench.png`` into the folder ``out`` (created if needed).

    Returns:
      ``{"bench": path}``.
    """
    return write_figures(results, out, [("bench", plot_bench)])
