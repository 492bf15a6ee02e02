"""Reweighted lesser-mode regression and the functional flow (docs/theory.md §5)."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import hadamard

import rgjax.rg as rg
import rgjax.theory as theory
from rgjax.nongaussian import functional_flow, mse_reweighted, reweighted_coefficients
from rgjax.spectrum import from_gram, powerlaw

from _helpers import rbf_gram


def test_constant_ridge_reproduces_gaussian_rg_coefficients():
    K, y = rbf_gram(60, seed=2)
    spec = from_gram(K, y)
    eta, kap, r = 12.0, 7, 0.03
    f = reweighted_coefficients(spec, y, eta, kap, r)
    lam, yk = spec.eigenvalues[:kap], spec.target_coefficients[:kap]
    np.testing.assert_allclose(f, eta * lam / (eta * lam + r) * yk, rtol=1e-10)


def test_reweighted_solution_is_the_minimiser():
    # an independent numpy solve of the unscaled normal equations, and a first-order check
    K, y = rbf_gram(50, seed=6)
    spec = from_gram(K, y)
    n, eta, kap = 50, 9.0, 6
    ridge = np.asarray(rg.input_dependent_ridge(spec, 1e-3, kap))
    assert np.ptp(ridge) > 0.1 * ridge.mean()  # genuinely input-dependent here
    f = np.asarray(reweighted_coefficients(spec, y, eta, kap, ridge))
    phi = np.asarray(spec.features())[:, :kap]
    lam = np.asarray(spec.eigenvalues)[:kap]
    w = 1 / ridge
    A = np.diag(1 / lam) + eta * (phi.T * w) @ phi / n
    ref = np.linalg.solve(A, eta * (phi.T * w) @ y / n)
    np.testing.assert_allclose(f, ref, rtol=1e-8)

    def objective(c):
        return np.sum(c**2 / (2 * lam)) + eta / 2 * np.mean((phi @ c - y) ** 2 / ridge)

    rng = np.random.default_rng(0)
    for _ in range(5):
        d = 1e-4 * rng.normal(size=kap)
        assert objective(f + d) > objective(f) and objective(f - d) > objective(f)


def test_uniform_eigenvectors_give_exactly_the_gaussian_rg():
    # Walsh–Hadamard eigenvectors have v_k[i]² = 1/N for every k and i: σ²_κ(x) is constant, so the
    # functional RG must coincide with the Gaussian RG at every η.
    n = 64
    H = hadamard(n) / np.sqrt(n)
    w = n * np.arange(1, n + 1, dtype=float) ** -1.6
    K = (H * w) @ H.T
    rng = np.random.default_rng(3)
    y = np.sign(rng.normal(size=n))
    spec = from_gram(K, y)
    etas = np.array([2.0, 4.0, 8.0, 16.0, 30.0])
    ridge = np.asarray(rg.input_dependent_ridge(spec, 1e-6, jnp.arange(0, n)))
    np.testing.assert_allclose(ridge, ridge.mean(axis=1, keepdims=True) * np.ones((1, n)), rtol=1e-8)
    np.testing.assert_allclose(mse_reweighted(spec, y, etas, 1e-6), theory.mse_rg(spec, etas, 1e-6),
                               rtol=1e-8)


def test_reweighted_curve_on_a_real_pool():
    K, y = rbf_gram(120, seed=8, lengthscale=0.8)
    spec = from_gram(K, y)
    em = float(rg.eta_max(spec, 1e-8))
    etas = np.array([em / 30, em / 8, em / 2, em * 2])
    got = mse_reweighted(spec, y, etas, 1e-8)
    ref = np.asarray(theory.mse_rg(spec, etas, 1e-8))
    assert np.isnan(got[-1]) and np.isnan(ref[-1])  # same not-applicable range
    assert np.all(np.isfinite(got[:3])) and np.all(got[:3] > 0)
    assert np.all(got[:3] <= float(spec.target_power) * 1.5)
    assert not np.allclose(got[:3], ref[:3], rtol=1e-6)  # the weight does couple the modes here
    assert mse_reweighted(spec, y, 10.0, 1e-8).shape == ()


def test_functional_flow_means_follow_the_gaussian_flow():
    K, y = rbf_gram(80, seed=9)
    spec = from_gram(K, y)
    flow = functional_flow(spec, 1e-4, [0, 1, 5, 20, 79])
    np.testing.assert_allclose(flow.mean, np.asarray(rg.ridge_flow(spec, 1e-4))[[0, 1, 5, 20, 79]],
                               rtol=1e-10)
    assert flow.quantiles.shape == (5, 5)
    assert np.all(np.diff(flow.quantiles, axis=1) >= 0)
    # the flow only adds: σ²_{κ−1}(x) ≥ σ²_κ(x) pointwise, so quantiles decrease with κ
    assert np.all(np.diff(flow.quantiles, axis=0) <= 1e-12)
    d = flow.to_dict()
    assert set(d) == {"kappa", "mean", "quantiles", "levels", "cv"}


def test_bad_inputs():
    K, y = rbf_gram(20)
    spec = from_gram(K, y)
    with pytest.raises(ValueError, match="eigenvectors"):
        mse_reweighted(powerlaw(20), y, 5.0, 1e-8)
    with pytest.raises(ValueError, match="`y` must have shape"):
        mse_reweighted(spec, y[:5], 5.0, 1e-8)
    with pytest.raises(ValueError, match="`sigma2`"):
        mse_reweighted(spec, y, 5.0, -1.0)
    with pytest.raises(ValueError, match="`threshold`"):
        mse_reweighted(spec, y, 5.0, 1e-8, 1.0)
    with pytest.raises(ValueError, match="`eta`"):
        mse_reweighted(spec, y, 0.0, 1e-8)


def test_padded_curve_equals_the_per_eta_solve():
    # mse_reweighted solves every η in one program, padding the lesser system to a common width
    # with the modes beyond each κ* masked; the literal algorithm solves a κ*-sized system per η.
    K, y = rbf_gram(120, seed=4)
    spec = from_gram(K, y)
    sigma2, thr = 1e-4, 0.5
    etas = np.array([3.0, 7.0, 15.0, 31.0, 60.0])
    cut = rg.cutoff(spec, etas, sigma2, thr)
    kappas = np.asarray(cut.kappa)
    assert len(set(kappas[np.asarray(cut.applicable)].tolist())) >= 3  # several system sizes
    lam, yk = np.asarray(spec.eigenvalues), np.asarray(spec.target_coefficients)
    t = np.asarray(rg.tail_masses(spec))
    ref = np.full(etas.shape, np.nan)
    for i, (e, kap, ok) in enumerate(zip(etas, kappas, np.asarray(cut.applicable))):
        if not ok:
            continue
        r_eff = sigma2 + (t[kap - 1] if kap > 0 else float(spec.trace))
        greater = np.sum((r_eff / (r_eff + e * lam[kap:])) ** 2 * yk[kap:] ** 2)
        greater += float(spec.residual_power)
        ridge = rg.input_dependent_ridge(spec, sigma2, int(kap))
        f = np.asarray(reweighted_coefficients(spec, y, e, int(kap), ridge)) if kap else np.zeros(0)
        ref[i] = np.sum((f - yk[:kap]) ** 2) + greater
    got = mse_reweighted(spec, y, etas, sigma2, thr)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-10)
