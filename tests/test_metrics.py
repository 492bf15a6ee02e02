"""`rgjax.metrics`: the fidelity of a predicted learning curve and its log-log slope."""

import numpy as np
import pytest

from rgjax.metrics import fidelity, loglog_slope


def test_fidelity_and_slope_helpers():
    etas = np.array([10, 20, 40, 80])
    emp = 3.0 * etas**-0.7
    assert loglog_slope(etas, emp) == pytest.approx(-0.7)
    assert fidelity(emp * np.e, emp) == pytest.approx(1.0)
    assert fidelity(np.array([np.nan, 1, 1, 1]), np.ones(4)) == 0.0
    assert np.isnan(loglog_slope(etas, np.full(4, np.nan)))


def test_no_usable_point_gives_nan():
    assert np.isnan(fidelity([np.nan, -1.0], [1.0, 1.0]))
    assert np.isnan(loglog_slope([10, 20], [1.0, 0.0]))  # one positive point: no slope
