"""Deprecated alias of :mod:`rgjax.jobs.curve` (the ``rgjax curve`` job); kept for one release."""

from __future__ import annotations

import warnings

from rgjax.jobs.curve import CurveConfig, default_etas, format_table, run_curve

warnings.warn(
    "rgjax.experiment moved to rgjax.jobs.curve (CurveConfig, run); this alias will be removed "
    "in the next release.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["CurveConfig", "default_etas", "format_table", "run_curve"]
