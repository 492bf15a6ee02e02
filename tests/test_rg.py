"""RG flow, learnabilities, cutoff and effective ridge against literal implementations of docs/theory.md §3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rgjax.rg as rg
from rgjax.spectrum import from_eigenvalues, from_gram, powerlaw

from _helpers import powerlaw_arrays, rbf_gram


def literal_cutoff(lam, sigma2, eta, T, dof=False):
    """docs/theory.md §3 / §3b written as a plain loop: scan from the top mode, stop at the first L_k < T."""
    n = len(lam)
    for k in range(1, n + 1):  # 1-based mode index
        t_k = sum(lam[k:])
        ridge = sigma2 + t_k
        if dof:
            if k - 1 >= eta:
                return k - 1, (k - 1) < eta
            ridge = ridge / (1 - (k - 1) / eta)
        L = eta * lam[k - 1] / (eta * lam[k - 1] + ridge)
        if L < T:
            kappa = k - 1
            return kappa, (not dof) or kappa < eta
    return n, False


def test_ridge_flow_universal_and_stepwise():
    lam, yk = powerlaw_arrays(400, alpha=0.7)
    spec = from_eigenvalues(lam, yk)
    flow = np.asarray(rg.ridge_flow(spec, 1e-6))
    assert flow.shape == (401,)
    # σ²(κ) = σ² + Σ_{k>κ} λ_k (brute force), and σ²(κ−1) = σ²(κ) + λ_κ
    brute = np.array([1e-6 + lam[kap:].sum() for kap in range(401)])
    np.testing.assert_allclose(flow, brute, rtol=1e-12)
    np.testing.assert_allclose(flow[:-1] - flow[1:], lam, rtol=1e-9, atol=1e-16)
    assert flow[-1] == pytest.approx(1e-6) and flow[0] == pytest.approx(1e-6 + 1.0)


def test_ridge_flow_powerlaw_exponent():
    # λ_k ∝ k^-(1+α)  ⇒  σ²(κ) − σ² = Σ_{k>κ}^N λ_k ∝ κ^-α − N^-α up to O(1/κ) (Euler–Maclaurin)
    alpha, n = 0.5, 200_000
    spec = powerlaw(n, alpha)
    flow = np.asarray(rg.ridge_flow(spec, 1e-8)) - 1e-8
    kap = np.array([400, 800, 1600, 3200, 6400])
    ratio = flow[kap] / (kap**-alpha - n**-alpha)
    assert np.ptp(ratio) / ratio.mean() < 5e-3
    # far from the end of the spectrum the log-log slope is −α
    big = powerlaw(2_000_000, alpha)
    f2 = np.asarray(rg.ridge_flow(big, 1e-8))[[100, 1000]] - 1e-8
    assert np.log(f2[1] / f2[0]) / np.log(10) == pytest.approx(-alpha, abs=0.03)


@pytest.mark.parametrize("dof", [False, True])
@pytest.mark.parametrize("T", [0.3, 0.5, 0.7])
def test_cutoff_matches_literal_scan(dof, T):
    K, y = rbf_gram(60, seed=3)
    spec = from_gram(K, y)
    lam = [float(v) for v in spec.eigenvalues]
    etas = np.array([1, 2, 3, 5, 8, 13, 21, 34, 55, 1e3, 1e5])
    for s2 in (1e-8, 1e-3):
        cut = rg.cutoff(spec, etas, s2, T, dof_correction=dof)
        for i, eta in enumerate(etas):
            kap, ok = literal_cutoff(lam, s2, eta, T, dof)
            assert int(cut.kappa[i]) == kap, (eta, s2)
            assert bool(cut.applicable[i]) == ok, (eta, s2)
            if ok:
                t = sum(lam[kap:])
                expect = (s2 + t) / (1 - kap / eta) if dof else s2 + t
                got = rg.effective_ridge(spec, eta, s2, T, dof_correction=dof)
                assert float(got) == pytest.approx(expect, rel=1e-10)
            else:
                assert np.isnan(float(rg.effective_ridge(spec, eta, s2, T, dof_correction=dof)))


def test_learnability_formula_and_monotone_in_eta():
    lam, yk = powerlaw_arrays(100)
    spec = from_eigenvalues(lam, yk)
    L = np.asarray(rg.learnability(spec, np.array([3.0, 30.0]), 1e-4))
    t = np.array([lam[k + 1:].sum() for k in range(100)])
    np.testing.assert_allclose(L[0], 3 * lam / (3 * lam + 1e-4 + t), rtol=1e-12)
    assert np.all(L[1] > L[0])


def test_eta_max_brackets_applicability():
    for dof in (False, True):
        K, y = rbf_gram(50, seed=5)
        spec = from_gram(K, y)
        for T in (0.3, 0.5, 0.8):
            em = float(rg.eta_max(spec, 1e-6, T, dof_correction=dof))
            assert np.isfinite(em)
            below = rg.cutoff(spec, em * (1 - 1e-9), 1e-6, T, dof_correction=dof)
            above = rg.cutoff(spec, em * (1 + 1e-9), 1e-6, T, dof_correction=dof)
            assert not bool(above.applicable)
            if not dof:  # the dof rule can also fail for κ* ≥ η; the crossing itself is bracketed
                assert bool(below.applicable)
            else:
                L = rg.learnability(spec, em * (1 - 1e-9), 1e-6, dof_correction=True)
                assert bool(jnp.any(L < T))


def test_smooth_cutoff_tends_to_hard():
    spec = powerlaw(2000)
    etas = jnp.array([3.0, 30.0, 300.0])
    hard = rg.effective_ridge(spec, etas, 1e-8)
    for dof in (False, True):
        hard = rg.effective_ridge(spec, etas, 1e-8, dof_correction=dof)
        errs = [
            float(jnp.max(jnp.abs(rg.effective_ridge(spec, etas, 1e-8, dof_correction=dof,
                                                     temperature=tau) / hard - 1)))
            for tau in (1e-1, 1e-2, 1e-3, 1e-5)
        ]
        assert errs[-1] < 1e-3 and errs[-1] < errs[0]
    # the smooth cutoff is differentiable in the threshold
    g = jax.grad(lambda T: rg.effective_ridge(spec, 30.0, 1e-8, T, temperature=0.05))(0.5)
    assert np.isfinite(float(g)) and float(g) != 0.0


def test_input_dependent_ridge():
    K, y = rbf_gram(70, seed=7)
    spec = from_gram(K, y)
    n = 70
    s2 = 1e-4
    kaps = np.array([0, 1, 5, 20, 70])
    ridge = np.asarray(rg.input_dependent_ridge(spec, s2, kaps))
    assert ridge.shape == (5, n)
    w, v = np.linalg.eigh(K)
    w, v = w[::-1], v[:, ::-1]
    for i, kap in enumerate(kaps):
        # the diagonal of the integrated-out kernel K_> = Σ_{k>κ} w_k v_k v_kᵀ
        k_greater = (v[:, kap:] * w[kap:]) @ v[:, kap:].T
        np.testing.assert_allclose(ridge[i], s2 + np.diag(k_greater), atol=1e-10)
    # mean over the pool = Gaussian RG ridge σ² + t_κ
    flow = np.asarray(rg.ridge_flow(spec, s2))
    np.testing.assert_allclose(ridge.mean(axis=1), flow[kaps], rtol=1e-10)
    # functional flow: σ²_{κ-1}(x) = σ²_κ(x) + λ_κ φ_κ(x)²
    phi = np.asarray(spec.features())
    lam = np.asarray(spec.eigenvalues)
    np.testing.assert_allclose(ridge[2] - ridge[3], 0 * ridge[2] + (phi[:, 5:20] ** 2 * lam[5:20]).sum(1), atol=1e-10)
    # a truncated spectrum (top-k + kernel diagonal) gives the same ridge
    top = from_gram(K, y, k=25)
    np.testing.assert_allclose(rg.input_dependent_ridge(top, s2, kaps[:4]), ridge[:4], atol=1e-9)
