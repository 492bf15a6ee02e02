"""Bad input gets a clear, named error; shape contracts hold (hypothesis property tests)."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rgjax.rg as rg
import rgjax.theory as theory
from rgjax._validate import RgjaxWarning
from rgjax.spectrum import from_eigenvalues, from_gram, powerlaw

from _helpers import rbf_gram

SPEC = powerlaw(200)


def test_gram_shape_errors():
    K, y = rbf_gram(10)
    with pytest.raises(ValueError, match=r"`K` must be a square"):
        from_gram(K[:, :9], y)
    with pytest.raises(ValueError, match=r"`y` must have shape"):
        from_gram(K, y[:9])
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 10\]"):
        from_gram(K, y, k=11)


def test_non_symmetric_gram():
    K, y = rbf_gram(10)
    K[0, 1] += 1e-3
    with pytest.raises(ValueError, match="not symmetric"):
        from_gram(K, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_in_inputs(bad):
    K, y = rbf_gram(10)
    K2 = K.copy()
    K2[2, 3] = K2[3, 2] = bad
    with pytest.raises(ValueError, match=r"`K` contains 2 NaN/Inf"):
        from_gram(K2, y)
    y2 = y.copy()
    y2[4] = bad
    with pytest.raises(ValueError, match=r"`y` contains 1 NaN/Inf"):
        from_gram(K, y2)


@pytest.mark.parametrize("sigma2", [0.0, -1e-3, np.nan])
def test_sigma2_must_be_positive(sigma2):
    for fn in (theory.mse_ek, theory.mse_rg, theory.mse_spectral_bias, theory.kappa, rg.cutoff,
               rg.effective_ridge, rg.learnability):
        with pytest.raises(ValueError, match="`sigma2` must be finite and > 0"):
            fn(SPEC, 10.0, sigma2)
    with pytest.raises(ValueError, match="`sigma2`"):
        rg.ridge_flow(SPEC, sigma2)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5])
def test_threshold_outside_unit_interval(threshold):
    with pytest.raises(ValueError, match=r"`threshold`.*\(0, 1\)"):
        theory.mse_rg(SPEC, 10.0, 1e-8, threshold)
    with pytest.raises(ValueError, match=r"`threshold`"):
        rg.eta_max(SPEC, 1e-8, threshold)


@pytest.mark.parametrize("eta", [0.0, -5.0, [10.0, 0.0], np.nan])
def test_eta_must_be_positive(eta):
    with pytest.raises(ValueError, match="`eta`"):
        theory.mse_spectral_bias(SPEC, eta, 1e-8)
    with pytest.raises(ValueError, match="`eta`"):
        theory.mse_rg(SPEC, eta, 1e-8)


def test_not_a_spectrum():
    with pytest.raises(TypeError, match="`spec` must be an rgjax Spectrum"):
        theory.mse_ek(np.ones(3), 10.0, 1e-8)


def test_float32_with_tiny_sigma2_warns_with_fix():
    spec32 = from_eigenvalues(np.asarray(SPEC.eigenvalues, np.float32),
                              np.asarray(SPEC.target_coefficients, np.float32))
    assert spec32.eigenvalues.dtype == jnp.float32
    with pytest.warns(RgjaxWarning, match="jax_enable_x64"):
        theory.mse_rg(spec32, 10.0, 1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        theory.mse_rg(spec32, 10.0, 1e-2)  # resolvable in float32: no warning


def test_input_dependent_ridge_kappa_range():
    K, y = rbf_gram(20)
    spec = from_gram(K, y)
    with pytest.raises(ValueError, match="`kappa`"):
        rg.input_dependent_ridge(spec, 1e-3, 21)
    with pytest.raises(ValueError, match="eigenvectors"):
        rg.input_dependent_ridge(SPEC, 1e-3, 3)


# ---- hypothesis: shape and value contracts -------------------------------------------------

eta_shapes = st.sampled_from([(), (1,), (4,), (2, 3)])


@settings(max_examples=25, deadline=None)
@given(
    shape=eta_shapes,
    log_eta=st.floats(-1, 4),
    log_s2=st.floats(-10, 1),
    alpha=st.floats(0.1, 2.0),
    threshold=st.floats(0.05, 0.95),
)
def test_theory_shape_and_value_contracts(shape, log_eta, log_s2, alpha, threshold):
    spec = powerlaw(300, alpha)
    eta = jnp.full(shape, 10.0**log_eta) * (1 + jnp.arange(np.prod(shape, dtype=int)).reshape(shape))
    s2 = 10.0**log_s2
    tp = float(spec.target_power)
    ek = theory.mse_ek(spec, eta, s2)
    sb = theory.mse_spectral_bias(spec, eta, s2)
    rgv = theory.mse_rg(spec, eta, s2, threshold)
    kap = theory.kappa(spec, eta, s2)
    cut = rg.cutoff(spec, eta, s2, threshold)
    for arr in (ek, sb, rgv, kap, cut.kappa, cut.applicable):
        assert arr.shape == shape
    assert rg.learnability(spec, eta, s2).shape == shape + (300,)
    assert np.all((ek >= 0) & (ek <= tp * (1 + 1e-12)))
    assert np.all(sb >= ek * (1 - 1e-9))  # E_0 ≥ 1 and κ ≥ σ²: spectral bias never below EK
    ok = np.asarray(cut.applicable)
    r = np.asarray(rgv)
    assert np.all(np.isnan(r) == ~ok)
    assert np.all((r[ok] >= 0) & (r[ok] <= tp * (1 + 1e-12)))
    assert np.all(r[ok] >= np.asarray(ek)[ok] * (1 - 1e-9))  # σ²_eff ≥ σ²
    assert np.all((np.asarray(kap) >= s2 * (1 - 1e-12)) & (np.asarray(kap) <= s2 + 1 + 1e-9))
    kk = np.asarray(cut.kappa)
    assert np.all((kk >= 0) & (kk <= 300))


def test_check_int_accepts_integral_counts_and_names_the_argument():
    from rgjax._validate import check_int

    assert check_int(5, "n", 1) == 5 and check_int(5.0, "n", 1) == 5 and check_int(1e6, "m", 2) == 10**6
    assert check_int(np.int64(7), "n", 1, 10) == 7
    assert check_int(2**60 + 1, "n", 1) == 2**60 + 1  # exact beyond float precision
    for bad in (5.5, True, np.bool_(True), float("nan"), float("inf"), "5", None, 0, 11):
        with pytest.raises(ValueError, match=r"`n` must be an integer in \[1, 10\] \(why\)"):
            check_int(bad, "n", 1, 10, why="why")
