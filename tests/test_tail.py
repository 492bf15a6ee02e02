"""The tail measure of a truncated spectrum (docs/theory.md §8): Gauss quadrature of the modes
beyond the held ones, the theories that use it, and the error estimates of rgjax.truncation,
against dense eigendecompositions."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rgjax
from rgjax import tail as tailmod
from rgjax import theory as theory_mod
from rgjax import truncation

N, K_TOP = 320, 32


def _problem(name, n=N, seed=0):
    """(K, y) of the three test problems: ReLU NNGP on the synthetic power-law task, ReLU NNGP on
    uniform 30-d inputs, and a depth-4 erf NNGP."""
    rng = np.random.default_rng(seed)
    if name == "powerlaw":
        task = rgjax.load_task("synthetic-powerlaw", pool_size=n, seed=seed)
        x, y, kernel = np.asarray(task.x), np.asarray(task.y), rgjax.fc(2, "relu", 2**0.5, 0.1)
    elif name == "uniform30":
        x = rng.uniform(size=(n, 30))
        y = np.sign(rng.normal(size=n) + x[:, 0] - 0.5)
        kernel = rgjax.fc(2, "relu", W_std=2**0.5, b_std=0.1)
    else:
        x = rng.normal(size=(n, 10))
        y = np.tanh(x[:, 0] + 0.5 * x[:, 1] * x[:, 2])
        kernel = rgjax.fc(4, "erf", W_std=1.5, b_std=0.05)
    return np.asarray(rgjax.gram(kernel, x, progress=False)), y


@pytest.fixture(scope="module", params=["powerlaw", "uniform30", "erf4"])
def problem(request):
    K, y = _problem(request.param)
    full = rgjax.from_gram(K, y)
    top = rgjax.from_gram(K, y, K_TOP, method="topk", tail_steps=24)
    return request.param, K, y, full, top


@functools.partial(jax.jit, static_argnames=("theory", "dof"))
def _curve_and_error(spec, eta, sigma2, theory, dof=False):
    th = {"ek": "ek", "rg": "rg", "sb": "spectral_bias"}[theory]
    value = {"ek": lambda: rgjax.mse_ek(spec, eta, sigma2),
             "rg": lambda: rgjax.mse_rg(spec, eta, sigma2, dof_correction=dof),
             "sb": lambda: rgjax.mse_spectral_bias(spec, eta, sigma2)}[theory]()
    return value, truncation.truncation_error(spec, eta, sigma2, theory=th, dof_correction=dof)


# ---------------------------------------------------------------------------------------------
# The quadrature itself
# ---------------------------------------------------------------------------------------------


def test_quadrature_is_exact_on_polynomials_of_degree_below_2m():
    K, y = _problem("uniform30", n=120)
    n, k, m, p = 120, 10, 8, 3
    blocks = tailmod.probe_steps(m)  # the probes' block runs ⌈m/4⌉ = 2 steps
    w, v = np.linalg.eigh(K)
    V = v[:, ::-1][:, :k]
    tm = tailmod.tail_measure(K, V, y, steps=m, probes=p, key=5)
    P = np.eye(n) - V @ V.T
    A = P @ (K / n) @ P
    yp = P @ y
    z = np.asarray(jax.random.rademacher(jax.random.fold_in(jax.random.PRNGKey(5), 1), (n, p),
                                         jnp.float64))
    zp = P @ z
    for d in range(2 * m):
        Ad = np.linalg.matrix_power(A, d)
        exact_y = yp @ Ad @ yp / n
        quad_y = np.sum(np.asarray(tm.weights) * np.asarray(tm.nodes) ** d)
        np.testing.assert_allclose(quad_y, exact_y, rtol=1e-9, atol=1e-15 * abs(exact_y))
        if d < 2 * blocks:  # block Gauss quadrature: each probe's own form, exactly
            exact_z = np.einsum("ip,ij,jp->p", zp, Ad, zp) / p
            quad_z = np.asarray(tm.probe_weights) @ np.asarray(tm.probe_nodes) ** d
            np.testing.assert_allclose(quad_z, exact_z, rtol=1e-9)
    # degree 2m is no longer exact (the check can fail), nor is 2·blocks for the probes
    d = 2 * m
    exact_y = yp @ np.linalg.matrix_power(A, d) @ yp / n
    quad_y = np.sum(np.asarray(tm.weights) * np.asarray(tm.nodes) ** d)
    assert abs(quad_y - exact_y) > 1e-9 * abs(exact_y)
    Ad = np.linalg.matrix_power(A, 2 * blocks)
    quad_z = np.asarray(tm.probe_weights) @ np.asarray(tm.probe_nodes) ** (2 * blocks)
    assert np.all(np.abs(quad_z - np.einsum("ip,ij,jp->p", zp, Ad, zp) / p) > 1e-9 * quad_z)
    # coarse: m − 1 nodes, same total weight (the measure's mass ‖y_⊥‖²/N); the probes' coarse
    # quadrature drops the last block
    assert tm.nodes_coarse.shape == (m - 1,) and tm.probe_nodes.shape == (p * blocks,)
    assert tm.probe_weights.shape == (p, p * blocks)
    assert tm.probe_nodes_coarse.shape == (p * (blocks - 1),)
    np.testing.assert_allclose(np.sum(tm.weights_coarse), np.sum(tm.weights), rtol=1e-12)
    # no Ritz pair of so small a Krylov space has converged: nothing counts as exact
    assert float(np.max(tm.exact)) == 0.0


def test_tail_second_moment_and_calibration():
    """power2 = Σ_{j>k} λ_j² from ‖K‖_F², and the calibrated probe weights reproduce the tail's
    first and second moments exactly (the theories' control variates)."""
    K, y = _problem("powerlaw", n=200)
    full = rgjax.from_gram(K, y)
    top = rgjax.from_gram(K, y, 20, method="topk", tail_probes=4)  # 8 nodes for 180 modes
    lam = np.asarray(full.eigenvalues)
    assert float(np.max(top.tail.exact)) == 0.0
    np.testing.assert_allclose(float(top.tail.power2), np.sum(lam[20:] ** 2), rtol=1e-6)
    assert float(top.tail.power2_error) < 1e-3 * float(top.tail.power2)
    weight, left = theory_mod._tail_weights(top.tail, top.tail_mass)
    theta = np.asarray(top.tail.probe_nodes)
    np.testing.assert_allclose(np.sum(weight * theta), np.sum(lam[20:]), rtol=1e-9)
    np.testing.assert_allclose(np.sum(weight * theta**2), np.sum(lam[20:] ** 2), rtol=1e-6)
    assert float(left) == 0.0 and np.all(np.asarray(weight) >= 0)
    # matrix-free (no power2): a ratio estimator, first moment only
    ratio = dataclasses.replace(top.tail, power2=jnp.asarray(jnp.nan))
    weight, _ = theory_mod._tail_weights(ratio, top.tail_mass)
    np.testing.assert_allclose(np.sum(weight * theta), np.sum(lam[20:]), rtol=1e-9)
    assert abs(np.sum(weight * theta**2) / np.sum(lam[20:] ** 2) - 1) > 1e-6


def test_tail_equals_dense_once_steps_cover_the_tail():
    K, y = _problem("erf4", n=60)
    full = rgjax.from_gram(K, y)
    top = rgjax.from_gram(K, y, 20, method="topk", tail_steps=40)  # the tail has 40 modes
    # the probes' block Krylov space covers the tail: every mode is a converged pair, once
    np.testing.assert_allclose(float(np.sum(top.tail.exact)), 40.0, rtol=1e-9)
    eta = np.array([2.0, 8.0, 25.0])
    for f in (lambda s: rgjax.mse_ek(s, eta, 1e-3), lambda s: rgjax.mse_rg(s, eta, 1e-8),
              lambda s: rgjax.mse_rg(s, eta, 1e-8, dof_correction=True),
              lambda s: rgjax.mse_spectral_bias(s, eta, 1e-8)):
        a, b = np.asarray(f(top)), np.asarray(f(full))
        ok = np.isfinite(b)
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-9)
    nodes = np.sort(np.asarray(top.tail.nodes))
    tail_eigs = np.sort(np.asarray(full.eigenvalues[20:]))
    big = tail_eigs > 1e-10 * tail_eigs[-1]
    np.testing.assert_allclose(nodes[-big.sum():], tail_eigs[big], rtol=1e-7)


def test_options_and_errors():
    K, y = _problem("uniform30", n=80)
    none = rgjax.from_gram(K, y, 10, method="topk", tail_steps=0)
    assert none.tail is None
    with pytest.raises(ValueError, match="tail_steps"):
        rgjax.from_gram(K, y, 10, method="topk", tail_steps=1)
    with pytest.raises(ValueError, match="tail_probes"):
        rgjax.from_gram(K, y, 10, method="topk", tail_probes=1)
    with pytest.raises(ValueError, match="no quadrature"):
        tailmod.tail_measure(K, np.linalg.eigh(K)[1][:, 1:], y)
    # truncating a full spectrum keeps the dropped modes exactly; tail=False drops them
    full = rgjax.from_gram(K, y)
    assert full.truncate(10).tail.nodes.shape == (70,)
    assert full.truncate(10, tail=False).tail is None
    assert float(jnp.sum(truncation.truncation_error(full.truncate(10), [5.0, 20.0], 1e-3,
                                                     theory="ek"))) < 1e-14


# ---------------------------------------------------------------------------------------------
# Theories from top-k + tail against the full spectrum, and the error estimates
# ---------------------------------------------------------------------------------------------


def test_theories_match_the_full_spectrum(problem):
    name, _, _, full, top = problem
    eta = np.geomspace(2.0, N / 2, 9)
    for theory, sigma2, dof in (("ek", 1e-3, False), ("rg", 1e-8, False), ("rg", 1e-8, True),
                                ("sb", 1e-8, False)):
        a, err = (np.asarray(v) for v in _curve_and_error(top, eta, sigma2, theory, dof))
        b = np.asarray(_curve_and_error(full, eta, sigma2, theory, dof)[0])
        true = np.abs(a - b)
        ok = np.isfinite(err)
        if theory == "rg":  # κ* inside the held modes: there the RG is exact
            np.testing.assert_allclose(a[ok], b[ok], rtol=1e-8, err_msg=f"{name} dof={dof}")
            assert ok.sum() >= 3
        elif theory == "ek":
            np.testing.assert_allclose(a, b, rtol=1e-8, err_msg=name)
        else:
            assert np.all(true <= err), (name, true / b, err / b)  # never optimistic
            assert np.all(true / b < 2e-3) and np.all(err / b < 2e-2), (name, true / b, err / b)


@pytest.mark.parametrize("name", ["powerlaw", "uniform30"])
def test_spectral_bias_standard_error_is_calibrated(name):
    """Over 24 probe draws, (spectral bias − dense) / jackknife SE has mean ≈ 0 and standard
    deviation ≈ 1: the stochastic part of the error estimate neither hides nor inflates the
    sampling error (3 SE are added to the estimate)."""
    K, y = _problem(name)
    full = rgjax.from_gram(K, y)
    eta = np.geomspace(2.0, N / 2, 5)
    dense = np.asarray(rgjax.mse_spectral_bias(full, eta, 1e-8))
    top = rgjax.from_gram(K, y, K_TOP, method="topk", tail_steps=0)

    @jax.jit
    def value_and_se(tail):
        spec = dataclasses.replace(top, tail=tail)

        def curve(t):
            return theory_mod.curve_traced(spec, jnp.asarray(eta), 1e-8, 0.5, "spectral_bias",
                                           False, t)

        return curve(None), truncation._jackknife_se(curve, tail)

    z = []
    for seed in range(24):
        tail = tailmod.tail_measure(K, top.eigenvectors, y, key=seed + 1,
                                    eigenvalues=top.eigenvalues)
        value, se = value_and_se(tail)
        z.append((np.asarray(value) - dense) / np.asarray(se))
    z = np.asarray(z)
    assert np.all((z.std(axis=0) > 0.6) & (z.std(axis=0) < 1.6)), z.std(axis=0)
    assert np.all(np.abs(z.mean(axis=0)) < 0.7), z.mean(axis=0)


def test_validity_flags_against_the_true_error(problem):
    name, _, _, full, top = problem
    eta = np.geomspace(2.0, N / 2, 9)
    for theory, th in (("sb", "spectral_bias"), ("rg", "rg")):
        valid = np.asarray(truncation.truncation_valid(top, eta, 1e-8, theory=th))
        a = np.asarray(_curve_and_error(top, eta, 1e-8, theory)[0])
        b = np.asarray(_curve_and_error(full, eta, 1e-8, theory)[0])
        assert valid.any(), name
        np.testing.assert_array_less(np.abs(a[valid] - b[valid]), 1e-3 * np.abs(b[valid]))


def test_without_a_tail_measure_the_estimates_cover_the_error(problem):
    name, _, _, full, top = problem
    bare = top.truncate(K_TOP, tail=False)
    eta = np.geomspace(2.0, N / 2, 9)
    for theory in ("ek", "sb"):
        sigma2 = 1e-3 if theory == "ek" else 1e-8
        a, err = (np.asarray(v) for v in _curve_and_error(bare, eta, sigma2, theory))
        b = np.asarray(_curve_and_error(full, eta, sigma2, theory)[0])
        assert np.all(np.abs(a - b) <= err * (1 + 1e-9) + 1e-15), (name, theory)


def test_gradients_through_tail_spectra_match_finite_differences(problem):
    _, _, _, _, top = problem

    def loss(log_s2, eta):
        s2 = jnp.exp(log_s2)
        return (rgjax.mse_spectral_bias(top, eta, s2) + rgjax.mse_ek(top, eta, s2)
                + rgjax.mse_rg(top, eta, s2, temperature=0.05))

    for eta in (4.0, 40.0):
        x0, h = np.log(1e-3), 1e-5
        g = float(jax.grad(loss)(x0, eta))
        fd = (float(loss(x0 + h, eta)) - float(loss(x0 - h, eta))) / (2 * h)
        assert g == pytest.approx(fd, rel=1e-6)
    g_eta = float(jax.grad(lambda e: rgjax.mse_spectral_bias(top, e, 1e-3))(20.0))
    fd = (float(rgjax.mse_spectral_bias(top, 20.0 + 1e-4, 1e-3))
          - float(rgjax.mse_spectral_bias(top, 20.0 - 1e-4, 1e-3))) / 2e-4
    assert g_eta == pytest.approx(fd, rel=1e-6)


def test_matrix_free_path_equals_the_dense_input_path():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(200, 30))
    y = np.sign(rng.normal(size=200) + x[:, 0] - 0.5)
    kernel = rgjax.fc(2, "relu", W_std=2**0.5, b_std=0.1)
    K = rgjax.gram(kernel, x, progress=False)
    dense = rgjax.from_gram(K, y, 20, method="topk", tail_steps=16)
    free = rgjax.from_matvec(rgjax.gram_operator(kernel, x), y, 20, tail_steps=16)
    assert np.isnan(float(free.tail.power2))  # matrix-free: no ‖K‖_F², no second moment
    dense = dataclasses.replace(dense, tail=dataclasses.replace(dense.tail, power2=jnp.nan))
    eta = np.array([3.0, 30.0, 90.0])
    for f in (lambda s: rgjax.mse_ek(s, eta, 1e-3),
              lambda s: rgjax.mse_spectral_bias(s, eta, 1e-8)):
        np.testing.assert_allclose(f(free), f(dense), rtol=1e-8)
    np.testing.assert_allclose(np.sort(np.asarray(free.tail.nodes)),
                               np.sort(np.asarray(dense.tail.nodes)), rtol=1e-6, atol=1e-14)
