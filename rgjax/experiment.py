"""Deprecated alias of :mod:`rgjax.jobs.curve` (the ``rgjax curve`` job); kept for one release.

``run_curve`` is :func:`rgjax.jobs.curve.run`; ``fidelity`` and ``loglog_slope`` live in
:mod:`rgjax.metrics`, ``write_json_atomic`` and ``save_and_plot`` in :mod:`rgjax.jobs._io`.
"""

from __future__ import annotations

import warnings

from rgjax.jobs._io import save_and_plot, write_json_atomic
from rgjax.jobs.curve import CurveConfig, default_etas, format_table, theory_curves
from rgjax.jobs.curve import run as run_curve
from rgjax.metrics import fidelity, loglog_slope

warnings.warn(
    "rgjax.experiment moved to rgjax.jobs.curve (CurveConfig, run); this alias will be removed "
    "in the next release.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["CurveConfig", "default_etas", "fidelity", "format_table", "loglog_slope", "run_curve",
           "save_and_plot", "theory_curves", "write_json_atomic"]
