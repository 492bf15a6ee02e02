"""Learning-curve theories: identities, limits, a second algorithm, gradients, and the
eigenvector-free resolvent forms from a Gram matrix (docs/theory.md §§2–4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.optimize import brentq

import rgjax.rg as rg
import rgjax.theory as theory
from rgjax.spectrum import from_eigenvalues, from_gram, powerlaw

from _helpers import powerlaw_arrays, rbf_gram

ETAS = jnp.array([1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0])


def test_kappa_against_scipy_brentq():
    lam, yk = powerlaw_arrays(500, alpha=0.8)
    spec = from_eigenvalues(lam, yk)
    for s2 in (1e-8, 1e-2):
        got = np.asarray(theory.kappa(spec, ETAS, s2))
        for eta, k in zip(np.asarray(ETAS), got):
            f = lambda kap: kap - s2 - kap * np.sum(lam / (eta * lam + kap))
            ref = brentq(f, s2, s2 + lam.sum(), xtol=1e-300, rtol=1e-15, maxiter=500)
            assert k == pytest.approx(ref, rel=1e-10)


def test_spectral_bias_equals_eigenlearning_and_conservation():
    lam, yk = powerlaw_arrays(800, alpha=0.4, beta=1.2)
    spec = from_eigenvalues(lam, yk)
    for s2, noise in ((1e-8, 0.0), (1e-2, 0.0), (1e-3, 0.05)):
        sb = theory.mse_spectral_bias(spec, ETAS, s2, noise)
        el = theory.eigenlearning(spec, ETAS, s2, noise)
        np.testing.assert_allclose(el.mse, sb + noise, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(jnp.sum(el.learnabilities, -1) + s2 / el.kappa_s, ETAS, rtol=1e-10)
        # relation to the RG: κ = σ² + Σ λ_k (1 − L_k)
        # (1 − L_k) cancels when L_k ≈ 1: the absolute round-off is ~ eps·Σλ_k = 1e-16
        np.testing.assert_allclose(
            el.kappa, s2 + jnp.sum(spec.eigenvalues * (1 - el.learnabilities), -1), rtol=1e-10,
            atol=1e-14,
        )


def test_kappa_decreases_with_eta():
    spec = powerlaw(1000)
    kap = np.asarray(theory.kappa(spec, jnp.geomspace(0.1, 1e4, 60), 1e-8))
    assert np.all(np.diff(kap) < 0)


def test_every_mse_tends_to_target_power_as_eta_to_zero():
    K, y = rbf_gram(90)
    spec = from_gram(K, y)
    tp = float(np.mean(y**2))
    for fn in (theory.mse_ek, theory.mse_rg, theory.mse_spectral_bias,
               lambda s, e, v: theory.mse_rg(s, e, v, dof_correction=True),
               lambda s, e, v: theory.mse_rg(s, e, v, temperature=0.01)):
        # η → 0 relative to the ridge: ηλ_1 ≪ σ²
        assert float(fn(spec, 1e-9, 1e-2)) == pytest.approx(tp, rel=1e-6)


def test_rg_tends_to_ek_when_sigma2_dominates_tail():
    spec = powerlaw(2000)
    etas = jnp.array([10.0, 1e3, 1e5])
    for s2 in (1e1, 1e3, 1e5):
        ek = theory.mse_ek(spec, etas, s2)
        rgv = theory.mse_rg(spec, etas, s2)
        t_eff = rg.effective_ridge(spec, etas, s2) - s2
        assert np.all(t_eff <= spec.trace)
        # (r/(r+ηλ))² changes by at most a factor (1 + t/σ²)² when r grows from σ² to σ²+t
        bound = (1 + t_eff / s2) ** 2 - 1
        assert np.all(np.abs(rgv / ek - 1) <= bound + 1e-12)
    assert float(jnp.max(jnp.abs(rgv / ek - 1))) < 1e-4


def test_corrected_rg_matches_spectral_bias_on_split_spectrum():
    # 10 strong modes and 20,000 weak ones: learned modes each use up one data point
    # (docs/theory.md §3b)
    m, n_weak = 10, 20_000
    lam = np.concatenate([np.full(m, 0.99 / m), np.full(n_weak, 0.01 / n_weak)])
    yk = np.concatenate([np.full(m, np.sqrt(0.8 / m)), np.full(n_weak, np.sqrt(0.2 / n_weak))])
    spec = from_eigenvalues(lam, yk)
    etas = jnp.array([15.0, 20.0, 40.0, 100.0, 200.0])
    sb = theory.mse_spectral_bias(spec, etas, 1e-8)
    dof = theory.mse_rg(spec, etas, 1e-8, dof_correction=True)
    paper = theory.mse_rg(spec, etas, 1e-8)
    assert np.all(rg.cutoff(spec, etas, 1e-8).kappa == m)
    rel = np.abs(np.asarray(dof / sb) - 1)
    # the hard threshold is the limit of fully learned top modes: the gap closes as η/m grows
    assert np.all(np.diff(rel[:3]) < 0) and np.all(rel[2:] < 0.01) and rel[1] < 0.025
    # the paper's RG misses the 1/(1 − m/η) factors: clearly off at η close to m
    assert float(sb[0] / paper[0]) > 2.0


def _truncation_bound(top, etas, ridge):
    """Tail modes enter as fully unlearned; their true factor (r/(r+ηλ))² lies in
    [(r/(r+ηλ_{k+1}))², 1] with λ_{k+1} ≤ λ_k, which bounds the difference rigorously."""
    lam_next = top.eigenvalues[-1]
    return top.residual_power * (1 - (ridge / (ridge + etas * lam_next)) ** 2)


def test_truncated_spectrum_gives_same_curves():
    spec = powerlaw(6000)
    top = spec.truncate(2000, tail=False)  # the modes beyond 2000 count as unlearnable
    assert top.is_truncated
    etas = jnp.array([2.0, 10.0, 50.0, 200.0])
    for T in (0.3, 0.5):
        for dof in (False, True):
            # the cutoff and the effective ridge only need the top modes and the trace: identical
            r_full = rg.effective_ridge(spec, etas, 1e-8, T, dof_correction=dof)
            r_top = rg.effective_ridge(top, etas, 1e-8, T, dof_correction=dof)
            np.testing.assert_allclose(r_top, r_full, rtol=1e-10)
            full = theory.mse_rg(spec, etas, 1e-8, T, dof_correction=dof)
            cut = theory.mse_rg(top, etas, 1e-8, T, dof_correction=dof)
            kept = rg.cutoff(spec, etas, 1e-8, T, dof_correction=dof).kappa
            dof_factor = 1 / (1 - kept / etas) if dof else 1.0
            bound = _truncation_bound(top, etas, r_full) * dof_factor
            assert np.all(cut >= full) and np.all(cut - full <= bound + 1e-14)
    # at small η the tail is deeply unlearnable: agreement to 1e-6
    small = jnp.array([0.5, 2.0])
    np.testing.assert_allclose(theory.mse_rg(top, small, 1e-8), theory.mse_rg(spec, small, 1e-8), rtol=1e-6)
    np.testing.assert_allclose(theory.mse_spectral_bias(top, small, 1e-8),
                               theory.mse_spectral_bias(spec, small, 1e-8), rtol=1e-6)
    # spectral bias treats the tail as unlearnable: error O(η λ_k / κ) for k > 2000
    np.testing.assert_allclose(theory.mse_spectral_bias(top, etas, 1e-8),
                               theory.mse_spectral_bias(spec, etas, 1e-8), rtol=2e-3)
    # same with a truncated eigendecomposition of a real Gram matrix
    K, y = rbf_gram(150, lengthscale=0.7)
    full = from_gram(K, y)
    cut = full.truncate(100, tail=False)
    e2 = jnp.array([2.0, 5.0, 10.0])
    r = rg.effective_ridge(full, e2, 1e-8)
    np.testing.assert_allclose(rg.effective_ridge(cut, e2, 1e-8), r, rtol=1e-8)
    diff = theory.mse_rg(cut, e2, 1e-8) - theory.mse_rg(full, e2, 1e-8)
    assert np.all(diff >= -1e-12) and np.all(diff <= _truncation_bound(cut, e2, r) + 1e-12)
    # with the dropped modes kept as an exact tail measure, every theory equals the full one
    exact = full.truncate(100)
    for f in (lambda s: theory.mse_rg(s, e2, 1e-8), lambda s: theory.mse_ek(s, e2, 1e-3),
              lambda s: theory.mse_spectral_bias(s, e2, 1e-8)):
        np.testing.assert_allclose(f(exact), f(full), rtol=1e-12)


def test_jit_and_vmap():
    spec = powerlaw(500)
    f = jax.jit(lambda s, e, v: theory.mse_spectral_bias(s, e, v))
    np.testing.assert_allclose(f(spec, ETAS, 1e-6), theory.mse_spectral_bias(spec, ETAS, 1e-6), rtol=1e-12)
    g = jax.jit(lambda s, e: theory.mse_rg(s, e, 1e-6, 0.5, dof_correction=True))
    np.testing.assert_allclose(g(spec, ETAS), theory.mse_rg(spec, ETAS, 1e-6, dof_correction=True), rtol=1e-12)
    per_eta = jax.vmap(lambda e: theory.kappa(spec, e, 1e-6))(ETAS)
    np.testing.assert_allclose(per_eta, theory.kappa(spec, ETAS, 1e-6), rtol=1e-12)


# ---- gradients ------------------------------------------------------------------------------


def _spec_from(lam, yk):
    return from_eigenvalues(lam, yk)


@pytest.mark.parametrize(
    "name,fn",
    [
        ("kappa", lambda s, e, v: theory.kappa(s, e, v)),
        ("effective_ridge", lambda s, e, v: rg.effective_ridge(s, e, v)),
        ("effective_ridge_dof", lambda s, e, v: rg.effective_ridge(s, e, v, dof_correction=True)),
        ("mse_rg", lambda s, e, v: theory.mse_rg(s, e, v)),
        ("mse_rg_dof", lambda s, e, v: theory.mse_rg(s, e, v, dof_correction=True)),
        ("mse_rg_smooth", lambda s, e, v: theory.mse_rg(s, e, v, temperature=0.05)),
        ("mse_spectral_bias", lambda s, e, v: theory.mse_spectral_bias(s, e, v)),
        ("mse_ek", lambda s, e, v: theory.mse_ek(s, e, v)),
    ],
)
def test_gradients_against_finite_differences(name, fn):
    lam, yk = powerlaw_arrays(60, alpha=0.6)
    lam = jnp.asarray(lam)
    yk = jnp.asarray(yk)
    eta = 7.3  # κ* is locally constant here: the hard rule is smooth in a neighbourhood
    s2 = 3e-3
    # w.r.t. sigma2 (log-parameterised so the finite-difference step is relative)
    check_grads(lambda ls: fn(_spec_from(lam, yk), eta, jnp.exp(ls)), (jnp.log(s2),), order=1,
                modes=["fwd", "rev"], eps=1e-5, atol=1e-6, rtol=1e-5)
    # w.r.t. eigenvalues (and target coefficients)
    check_grads(lambda l: fn(_spec_from(l, yk), eta, s2), (lam,), order=1,
                modes=["fwd", "rev"], eps=1e-7, atol=1e-6, rtol=1e-5)
    check_grads(lambda t: fn(_spec_from(lam, t), eta, s2), (yk,), order=1,
                modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradients_finite_on_degenerate_spectrum():
    # exactly degenerate eigenvalues (e.g. a symmetric data set) and exact zeros
    lam = jnp.array([0.3, 0.3, 0.3, 0.05, 0.05, 0.0, 0.0])
    yk = jnp.array([0.5, 0.2, 0.1, 0.3, 0.1, 0.05, 0.0])
    fns = [
        lambda l, v: theory.kappa(_spec_from(l, yk), 4.0, v),
        lambda l, v: theory.mse_spectral_bias(_spec_from(l, yk), 4.0, v),
        lambda l, v: theory.mse_rg(_spec_from(l, yk), 4.0, v),
        lambda l, v: theory.mse_rg(_spec_from(l, yk), 4.0, v, dof_correction=True),
        lambda l, v: theory.mse_rg(_spec_from(l, yk), 4.0, v, temperature=0.1),
        lambda l, v: rg.effective_ridge(_spec_from(l, yk), 4.0, v),
    ]
    for f in fns:
        gl, gs = jax.grad(f, argnums=(0, 1))(lam, 1e-8)
        assert np.all(np.isfinite(gl)) and np.isfinite(gs)
    # and through a Gram matrix with a degenerate spectrum: mse via the spectrum of K(s) = s K0
    K0 = jnp.eye(6) + 1.0
    y = jnp.array([1.0, -1, 1, -1, 1, -1])
    g = jax.grad(lambda s: theory.mse_spectral_bias(from_gram(s * K0, y), 3.0, 1e-8))(1.0)
    assert np.isfinite(float(g))


def test_not_applicable_range_gives_nan_and_finite_gradients_elsewhere():
    K, y = rbf_gram(80, seed=11)
    spec = from_gram(K, y)
    em = float(rg.eta_max(spec, 1e-8))
    etas = jnp.array([2.0, em * 0.5, em * 2])
    out = theory.mse_rg(spec, etas, 1e-8)
    assert np.isfinite(out[0]) and np.isfinite(out[1]) and np.isnan(out[2])
    cut = rg.cutoff(spec, etas, 1e-8)
    assert cut.applicable.tolist() == [True, True, False] and int(cut.kappa[2]) == 80
    g = jax.grad(lambda v: jnp.nansum(theory.mse_rg(spec, etas, v)))(1e-8)
    assert np.isfinite(float(g))


# ---- the fast paths: closed-form cutoff, grid-started κ solver (many η) ---------------------


def _literal_mse_rg(lam, yk, eta, s2, T, dof):
    """docs/theory.md §3/§3b literally: scan the learnabilities from the top mode, then EK with
    σ²_eff."""
    t = np.array([lam[k + 1:].sum() for k in range(len(lam))])
    kept = len(lam)
    for k in range(len(lam)):  # 0-based: k modes above this one
        ridge = s2 + t[k]
        if dof:
            if k >= eta:
                kept = k
                break
            ridge = ridge / (1 - k / eta)
        if eta * lam[k] / (eta * lam[k] + ridge) < T:
            kept = k
            break
    if kept == len(lam) or (dof and kept >= eta):
        return np.nan
    r = s2 + (t[kept - 1] if kept > 0 else lam.sum())
    factor = 1.0
    if dof:
        factor = 1 / (1 - kept / eta)
        r = r * factor
    return factor * np.sum((r / (r + eta * lam)) ** 2 * yk**2)


@pytest.mark.parametrize("dof", [False, True])
def test_closed_form_cutoff_equals_learnability_scan(dof):
    rng = np.random.default_rng(5)
    K, y = rbf_gram(70, seed=2, lengthscale=0.9)
    lam_pl, yk_pl = powerlaw_arrays(300, alpha=0.3)
    # degenerate eigenvalues and exact zeros at the end
    lam_deg = np.repeat([0.4, 0.1, 0.02, 0.0], [2, 3, 5, 4]) / 1.3
    specs = [from_gram(K, y), from_eigenvalues(lam_pl, yk_pl),
             from_eigenvalues(lam_deg, rng.normal(size=lam_deg.size) * 0.3)]
    etas = jnp.asarray(np.concatenate([np.geomspace(0.3, 3000, 57), np.arange(1.0, 40.0)]))
    # rg.cutoff uses the closed-form crossing sizes; the reference is the literal definition:
    # the first mode from the top whose learnability (rg.learnability) falls below T.
    fast = jax.jit(lambda s, e, v, t: rg.cutoff(s, e, v, t, dof_correction=dof))
    for spec in specs:
        for T, s2 in ((0.5, 1e-8), (0.2, 1e-3), (0.8, 1e-5)):
            got = fast(spec, etas, s2, T)
            below = np.asarray(rg.learnability(spec, etas, s2, dof_correction=dof)) < T
            crossed = below.any(axis=-1)
            kappa = np.where(crossed, below.argmax(axis=-1), spec.n_modes)
            applicable = crossed & (kappa < np.asarray(etas)) if dof else crossed
            np.testing.assert_array_equal(got.kappa, kappa)
            np.testing.assert_array_equal(got.applicable, applicable)
    lam, yk = np.asarray(specs[0].eigenvalues), np.asarray(specs[0].target_coefficients)
    ref = [_literal_mse_rg(lam, yk, float(e), 1e-6, 0.5, dof) for e in etas]
    np.testing.assert_allclose(theory.mse_rg(specs[0], etas, 1e-6, dof_correction=dof), ref,
                               rtol=1e-12, equal_nan=True)


def test_ek_sums_to_a_few_ulp_over_many_modes():
    # the one-pass layout (partial sums of 12 modes, then over the rows) against exact summation
    import math

    rng = np.random.default_rng(9)
    lam = np.sort(rng.pareto(1.5, 5000))[::-1] / 50.0
    yk = rng.normal(size=5000) * 0.02
    spec = from_eigenvalues(lam, yk)
    etas = np.geomspace(0.1, 1e5, 37)
    got = np.asarray(theory.mse_ek(spec, jnp.asarray(etas), 1e-4))
    for g, eta in zip(got, etas):
        q = 1e-4 / (1e-4 + eta * lam)
        assert g == pytest.approx(math.fsum(q * q * yk**2), rel=2e-15)
    # fewer modes than one block of the pass, and 0, 1 or 2 values of η
    small = from_eigenvalues(lam[:5] / lam[:5].sum(), yk[:5])
    for n in (0, 1, 2):
        e = jnp.geomspace(0.5, 50.0, n)
        want = [math.fsum((1e-3 / (1e-3 + v * np.asarray(small.eigenvalues))) ** 2 * yk[:5] ** 2)
                for v in np.asarray(e)]
        np.testing.assert_allclose(theory.mse_ek(small, e, 1e-3), np.reshape(want, (n,)),
                                   rtol=2e-15)


def _brentq_theory(lam, yk, eta, s2, noise=0.0):
    """κ by scipy brentq to full precision, then γ and E_g as written in docs/theory.md §4."""
    f = lambda kap: kap - s2 - kap * np.sum(lam / (eta * lam + kap))  # noqa: E731
    kap = brentq(f, s2, s2 + lam.sum(), xtol=1e-300, rtol=1e-15, maxiter=500)
    d = eta * lam + kap
    gamma = np.sum(eta * lam**2 / d**2)
    return kap, (np.sum(kap**2 * yk**2 / d**2) + noise * gamma) / (1 - gamma)


@pytest.mark.parametrize("case", ["powerlaw", "split", "steep"])
def test_many_eta_against_brentq(case):
    # ≥ 32 η take the grid-started solver; results must match a per-η brentq to rounding
    if case == "powerlaw":
        lam, yk = powerlaw_arrays(3000, alpha=0.5)
        s2 = 1e-8
    elif case == "split":  # 10 strong modes, then a flat tail: η(κ) has a plateau near η = 10
        lam = np.concatenate([np.full(10, 0.099), np.full(2000, 0.01 / 2000)])
        yk = np.sqrt(np.concatenate([np.full(10, 0.08), np.full(2000, 0.2 / 2000)]))
        s2 = 1e-8
    else:
        lam, yk = powerlaw_arrays(400, alpha=2.0, beta=0.2)
        s2 = 1e-2
    spec = from_eigenvalues(lam, yk)
    etas = np.geomspace(0.5, 1e4, 90)
    kap = np.asarray(theory.kappa(spec, jnp.asarray(etas), s2))
    sb = np.asarray(theory.mse_spectral_bias(spec, jnp.asarray(etas), s2, 0.01))
    ref = np.array([_brentq_theory(lam, yk, e, s2, 0.01) for e in etas])
    np.testing.assert_allclose(kap, ref[:, 0], rtol=1e-13)
    np.testing.assert_allclose(sb, ref[:, 1], rtol=1e-12)
    # the few-η path (no grid) gives the same numbers
    few = np.asarray(theory.kappa(spec, jnp.asarray(etas[::9]), s2))
    np.testing.assert_allclose(few, kap[::9], rtol=1e-13)
    el = theory.eigenlearning(spec, jnp.asarray(etas), s2, 0.01)
    np.testing.assert_allclose(el.mse, sb + 0.01, rtol=1e-12)
    np.testing.assert_allclose(jnp.sum(el.learnabilities, -1) + s2 / el.kappa_s, etas, rtol=1e-12)


def test_kappa_of_an_empty_spectrum_and_eta_array_shapes():
    # no eigenvalue mass at all: κ = σ² exactly and nothing is learned
    spec = from_eigenvalues(jnp.zeros(5), jnp.array([0.5, 0.5, 0.5, 0.5, 0.0]))
    etas = jnp.geomspace(1.0, 100.0, 40)
    np.testing.assert_allclose(theory.kappa(spec, etas, 1e-3), 1e-3, rtol=1e-15)
    np.testing.assert_allclose(theory.mse_spectral_bias(spec, etas, 1e-3), 1.0, rtol=1e-15)
    spec = powerlaw(200)
    grid = jnp.geomspace(1.0, 1e3, 48).reshape(4, 3, 4)
    out = theory.mse_spectral_bias(spec, grid, 1e-6)
    assert out.shape == (4, 3, 4)
    np.testing.assert_allclose(out.ravel(), theory.mse_spectral_bias(spec, grid.ravel(), 1e-6),
                               rtol=1e-14)


def test_gradients_on_the_grid_path():
    lam, yk = powerlaw_arrays(80, alpha=0.6)
    lam, yk = jnp.asarray(lam), jnp.asarray(yk)
    etas = jnp.geomspace(1.0, 300.0, 40)  # ≥ 32 η: grid-started solver

    @jax.jit
    def f(l, ls, t, e):  # κ, E_g (with label noise) and E_0 together, over many η
        spec, s2 = _spec_from(l, t), jnp.exp(ls)
        el = theory.eigenlearning(spec, e, s2)
        return (jnp.sum(theory.mse_spectral_bias(spec, e, s2, 0.02)) + jnp.sum(el.e0)
                + 10.0 * jnp.sum(theory.kappa(spec, e, s2)))

    check_grads(f, (lam, jnp.log(1e-3), yk, etas), order=1, modes=["fwd", "rev"], eps=1e-7,
                atol=1e-6, rtol=1e-5)
    # ∂κ/∂η < 0 on every η
    dk = jax.grad(lambda e: jnp.sum(theory.kappa(_spec_from(lam, yk), e, 1e-3)))(etas)
    assert np.all(np.asarray(dk) < 0)


# ---- resolvent (eigenvector-free) forms, from a Gram matrix ---------------------------------


def test_resolvent_forms_equal_the_spectrum_forms():
    K, y = rbf_gram(70, seed=3)
    spec = from_gram(K, y)
    etas = jnp.array([2.0, 7.0, 20.0])
    for dof in (False, True):
        for temperature in (None, 0.05):
            want = theory.mse_rg(spec, etas, 1e-3, 0.5, dof_correction=dof, temperature=temperature)
            got = theory.mse_rg_resolvent(K, y, etas, 1e-3, 0.5, dof_correction=dof,
                                          temperature=temperature)
            np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)
    want = theory.mse_spectral_bias(spec, etas, 1e-3, 0.01)
    np.testing.assert_allclose(theory.mse_spectral_bias_resolvent(K, y, etas, 1e-3, 0.01), want,
                               rtol=1e-9)
    for objective in theory.OBJECTIVES:
        values = [theory.mse_from_gram(K, y, etas, 1e-3, objective=objective, path=p)
                  for p in theory.PATHS]
        np.testing.assert_allclose(values[0], values[1], rtol=1e-9)


@pytest.mark.parametrize("call, needle", [
    (lambda K, y: theory.mse_from_gram(K, y, 3.0, 1e-3, objective="ek"), "objective"),
    (lambda K, y: theory.mse_from_gram(K, y, 3.0, 1e-3, path="svd"), "path"),
    (lambda K, y: theory.mse_from_gram(K[:, :3], y, 3.0, 1e-3), "square"),
    (lambda K, y: theory.mse_from_gram(K, y[:3], 3.0, 1e-3), "`y`"),
    (lambda K, y: theory.mse_rg_resolvent(K, y, 3.0, 1e-3, temperature=-1.0), "temperature"),
    (lambda K, y: theory.mse_rg_resolvent(K, y, 3.0, 1e-3, threshold=1.5), "threshold"),
    (lambda K, y: theory.mse_spectral_bias_resolvent(K, y, 3.0, 1e-3, noise=-0.1), "noise"),
    (lambda K, y: theory.mse_from_gram(K, y, 3.0, 1e-3, noise=0.1), "noise"),
])
def test_resolvent_forms_name_bad_inputs(call, needle):
    K, y = rbf_gram(10)
    with pytest.raises(ValueError, match=needle):
        call(K, y)


def test_eigenlearning_is_a_pytree():
    out = theory.eigenlearning(powerlaw(50), jnp.array([3.0, 30.0]), 1e-3)
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, out)
    assert isinstance(doubled, theory.Eigenlearning)
    np.testing.assert_array_equal(doubled.kappa, 2 * out.kappa)
    assert len(jax.tree_util.tree_leaves(out)) == 5
