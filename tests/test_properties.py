"""Property tests (hypothesis): the η-list parser, the spectrum constructor and the theories'
arguments, on random inputs. Shapes are fixed so that each jitted theory compiles once."""

import argparse

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rgjax
from rgjax import cli

FAST = settings(max_examples=40, deadline=None)
MODES = 8


@FAST
@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=6))
def test_integer_lists_parse_back_exactly(values):
    assert cli._ints(",".join(map(str, values))) == tuple(values)
    assert cli._ints(",".join(f"{v:.1f}" for v in values)) == tuple(values)  # 5.0 is 5


@FAST
@given(st.lists(st.integers(1, 1000), min_size=0, max_size=3),
       st.floats(0.01, 0.99), st.integers(1, 1000))
def test_a_fraction_anywhere_is_rejected(before, frac, whole):
    text = ",".join([*map(str, before), f"{whole + frac:.3f}"])
    with pytest.raises(argparse.ArgumentTypeError, match="integers"):
        cli._ints(text)


def _spectrum_arrays(draw_lam, draw_y):
    lam = np.sort(np.asarray(draw_lam, float))[::-1]
    return lam, np.asarray(draw_y, float)


lams = st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=MODES, max_size=MODES)
ys = st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=MODES, max_size=MODES)


@FAST
@given(lams, ys)
def test_spectra_hold_their_sums(lam, y):
    lam, y = _spectrum_arrays(lam, y)
    spec = rgjax.from_eigenvalues(lam, y)
    assert float(spec.trace) == pytest.approx(lam.sum(), abs=1e-12)
    assert float(spec.target_power) == pytest.approx(np.sum(y**2), abs=1e-12)
    assert not spec.is_truncated and float(spec.residual_power) == 0.0


@FAST
@given(lams, ys)
def test_unsorted_or_negative_eigenvalues_are_errors(lam, y):
    lam, y = _spectrum_arrays(lam, y)
    if lam[0] > lam[-1]:
        with pytest.raises(ValueError, match="descending"):
            rgjax.from_eigenvalues(lam[::-1], y)
    bad = lam.copy()
    bad[-1] = -0.5
    with pytest.raises(ValueError, match="non-negative"):
        rgjax.from_eigenvalues(bad, y)


@FAST
@given(st.lists(st.floats(0.01, 10.0), min_size=MODES, max_size=MODES), ys,
       st.floats(1e-6, 1.0), st.lists(st.floats(0.5, 500.0), min_size=3, max_size=3))
def test_theories_are_between_zero_and_the_target_power(lam, y, sigma2, etas):
    lam, y = _spectrum_arrays(lam, y)
    spec = rgjax.from_eigenvalues(lam, y)
    power = float(np.sum(y**2))
    ek = np.asarray(rgjax.mse_ek(spec, etas, sigma2))
    sb = np.asarray(rgjax.mse_spectral_bias(spec, etas, sigma2))
    kap = np.asarray(rgjax.kappa(spec, etas, sigma2))
    assert np.all(ek >= 0) and np.all(ek <= power * (1 + 1e-12))
    assert np.all(sb >= 0) and np.all(np.isfinite(sb))
    assert np.all(kap >= sigma2 * (1 - 1e-12)) and np.all(kap <= sigma2 + lam.sum() + 1e-12)


@FAST
@given(st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))))
def test_bad_ridges_and_sizes_are_errors(bad):
    spec = rgjax.powerlaw(MODES)
    with pytest.raises(ValueError, match="sigma2"):
        rgjax.mse_ek(spec, 5.0, bad)
    with pytest.raises(ValueError, match="eta"):
        rgjax.mse_rg(spec, bad, 1e-3)
