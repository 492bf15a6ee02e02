"""How well a predicted learning curve matches a measured one: fidelity and log-log slope.

Both work on plain arrays of one value per training-set size η and skip the points where a value
is missing (NaN, e.g. where the paper's RG is not applicable) or not positive (a logarithm is
taken), so a theory that covers only part of the η grid is judged on that part.
"""

from __future__ import annotations

import numpy as np

from rgjax._typing import ArrayLike

__all__ = ["fidelity", "loglog_slope"]


def fidelity(theory: ArrayLike, empirical: ArrayLike) -> float:
    """Mean ``|log(theory / empirical)|`` over the η where both are finite and positive.

    Args:
      theory: ``(E,)`` predicted MSE, one value per η.
      empirical: ``(E,)`` measured MSE on the same η.

    Returns:
      The mean absolute log-ratio (0 is a perfect prediction, 1 is off by a factor e on
      average), or NaN when no η has both values finite and positive.

    Examples:
      >>> import numpy as np
      >>> print(f"{fidelity(np.e * np.ones(3), np.ones(3)):.4f}")
      1.0000
      >>> print(fidelity([np.nan, 2.0], [1.0, 2.0]))
      0.0
    """
    t, e = np.asarray(theory, float), np.asarray(empirical, float)
    ok = np.isfinite(t) & np.isfinite(e) & (t > 0) & (e > 0)
    return float(np.mean(np.abs(np.log(t[ok] / e[ok])))) if ok.any() else float("nan")


def loglog_slope(etas: ArrayLike, values: ArrayLike) -> float:
    """Least-squares slope of ``log values`` against ``log η`` over the finite, positive points.

    Args:
      etas: ``(E,)`` training-set sizes η (positive).
      values: ``(E,)`` MSE (or any positive quantity) at those η.

    Returns:
      The fitted exponent ``s`` of ``values ∝ η^s``, or NaN with fewer than two usable points.

    Examples:
      >>> import numpy as np
      >>> etas = np.array([10, 20, 40, 80])
      >>> print(f"{loglog_slope(etas, 3.0 * etas**-0.7):.4f}")
      -0.7000
    """
    v = np.asarray(values, float)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(etas, float)[ok]), np.log(v[ok]), 1)[0])
