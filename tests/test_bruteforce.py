"""Theory against brute force: exact GP regression on Gaussian features with a power-law spectrum.

Features φ_k(x) ~ N(0, 1) i.i.d., kernel K(x, x') = Σ_k λ_k φ_k(x) φ_k(x'), λ_k ∝ k^-1.5 over P
modes, target ȳ_k with ȳ_k² ∝ k^-1.5. For each training set the posterior mean has coefficients
f̂_k = λ_k Φᵀ (K + σ² I)⁻¹ y, and the test error over the population is exactly Σ_k (f̂_k − ȳ_k)².
Written in plain numpy, independent of rgjax.
"""

import numpy as np
import pytest

import rgjax.rg as rg
import rgjax.theory as theory
from rgjax.spectrum import from_eigenvalues

from _helpers import powerlaw_arrays

P = 3000
SIGMA2 = 1e-8
# (η, trials): enough trials for a ~1% standard error of the mean
GRID = [(50, 100), (100, 60), (200, 40), (400, 20)]


def simulate(lam, ybar, eta, trials, sigma2, rng):
    errs = np.empty(trials)
    for t in range(trials):
        phi = rng.standard_normal((eta, P))
        K = (phi * lam) @ phi.T
        alpha = np.linalg.solve(K + sigma2 * np.eye(eta), phi @ ybar)
        errs[t] = np.sum((lam * (phi.T @ alpha) - ybar) ** 2)
    return errs.mean(), errs.std(ddof=1) / np.sqrt(trials)


@pytest.fixture(scope="module")
def measured():
    lam, ybar = powerlaw_arrays(P, alpha=0.5, beta=0.5)
    rng = np.random.default_rng(1234)
    res = {eta: simulate(lam, ybar, eta, tr, SIGMA2, rng) for eta, tr in GRID}
    return from_eigenvalues(lam, ybar), res


def test_spectral_bias_within_5_percent(measured):
    spec, res = measured
    for eta, (mean, se) in res.items():
        assert se / mean < 0.02  # the comparison is only meaningful if the noise is small
        pred = float(theory.mse_spectral_bias(spec, eta, SIGMA2))
        assert abs(pred / mean - 1) < 0.05, (eta, pred, mean, se)


def test_corrected_rg_within_25_percent(measured):
    spec, res = measured
    for eta, (mean, _) in res.items():
        pred = float(theory.mse_rg(spec, eta, SIGMA2, dof_correction=True))
        assert abs(pred / mean - 1) < 0.25, (eta, pred, mean)


def test_paper_rg_low_by_at_most_a_factor_two_and_drifting(measured):
    """The paper's RG drops the learned-mode factor 1/(1 − κ*/η) ≥ 1 (docs/theory.md §3b), so it must lie
    *below* the simulation, increasingly with η. Measured here (seed 1234): ratio 0.57, 0.54, 0.50,
    0.45 at η = 50, 100, 200, 400 — within a factor 2 up to η = 200 (η_max ≈ 888), a factor 2.2
    low at η = 400. The issue's expectation "within a factor 2 where it applies" therefore holds
    only for η ≤ η_max/4; this is reported, not tuned away."""
    spec, res = measured
    em = float(rg.eta_max(spec, SIGMA2))
    ratios = []
    for eta, (mean, _) in res.items():
        if eta >= em:
            assert np.isnan(float(theory.mse_rg(spec, eta, SIGMA2)))
            continue
        ratios.append(float(theory.mse_rg(spec, eta, SIGMA2)) / mean)
        if eta <= em / 4:
            assert 0.5 < ratios[-1] < 1.0, (eta, ratios[-1])
    assert len(ratios) >= 3
    assert all(r < 1 for r in ratios) and all(np.diff(ratios) < 0.02)


def test_bare_ek_is_orders_of_magnitude_off(measured):
    # the contrast of the paper's Fig. 1: without renormalisation the ridge 1e-8 predicts ~0
    spec, res = measured
    for eta, (mean, _) in res.items():
        assert float(theory.mse_ek(spec, eta, SIGMA2)) < 1e-6 * mean
