import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgjax.spectrum import Spectrum, from_eigenvalues, from_gram, powerlaw
from rgjax._validate import RgjaxWarning

from _helpers import rbf_gram


def test_from_gram_matches_numpy_eigh_and_conventions():
    K, y = rbf_gram(120)
    spec = from_gram(K, y)
    n = K.shape[0]
    w, v = np.linalg.eigh(K)
    w, v = w[::-1], v[:, ::-1]
    np.testing.assert_allclose(spec.eigenvalues, np.clip(w, 0, None) / n, atol=1e-13)
    # eigenvector signs are arbitrary: compare y_k² and reconstruct K instead
    np.testing.assert_allclose(spec.target_coefficients**2, (v.T @ y / np.sqrt(n)) ** 2, atol=1e-12)
    vec = np.asarray(spec.eigenvectors)
    np.testing.assert_allclose((vec * (n * np.asarray(spec.eigenvalues))) @ vec.T, K, atol=1e-10)
    # docs/theory.md §1: Σ y_k² = mean y², Σ λ_k = mean K_ii, features orthonormal under the pool measure
    np.testing.assert_allclose(np.sum(spec.target_coefficients**2), np.mean(y**2), rtol=1e-12)
    np.testing.assert_allclose(spec.trace, np.trace(K) / n, rtol=1e-14)
    np.testing.assert_allclose(np.sum(spec.eigenvalues), spec.trace, rtol=1e-10)
    phi = np.asarray(spec.features())
    np.testing.assert_allclose(phi.T @ phi / n, np.eye(n), atol=1e-10)
    # y_k is the projection of y on the features
    np.testing.assert_allclose(spec.target_coefficients, phi.T @ y / n, atol=1e-12)
    assert np.all(np.diff(np.asarray(spec.eigenvalues)) <= 0)
    assert not spec.is_truncated and float(spec.tail_mass) == 0.0


def test_truncated_spectrum_keeps_totals():
    K, y = rbf_gram(80)
    full = from_gram(K, y)
    top = from_gram(K, y, k=10)
    assert top.n_modes == 10 and top.is_truncated and top.n_pool == 80
    np.testing.assert_allclose(top.eigenvalues, full.eigenvalues[:10], rtol=1e-12)
    np.testing.assert_allclose(top.tail_mass, np.sum(full.eigenvalues[10:]), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(
        top.residual_power, np.sum(full.target_coefficients[10:] ** 2), rtol=1e-8, atol=1e-14
    )
    np.testing.assert_allclose(top.kernel_diagonal, np.diag(K))


def test_negative_roundoff_is_clipped_and_recorded():
    rng = np.random.default_rng(1)
    v, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    w = np.linspace(1, 0, 30)
    w[-3:] = [-1e-15, -2e-15, -3e-15]  # round-off size
    K = (v * w) @ v.T
    K = (K + K.T) / 2
    spec = from_gram(K, rng.normal(size=30))
    assert float(jnp.min(spec.eigenvalues)) == 0.0
    assert 0 < float(spec.clipped_mass) < 1e-14


def test_large_negative_eigenvalues_are_an_error_unless_allowed():
    rng = np.random.default_rng(2)
    v, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    w = np.linspace(1, -0.1, 20)
    K = (v * w) @ v.T
    K = (K + K.T) / 2
    y = rng.normal(size=20)
    with pytest.raises(ValueError, match="not PSD.*allow_indefinite=True"):
        from_gram(K, y)
    with pytest.raises(ValueError, match="not PSD"):
        from_gram(-np.eye(20), y)
    with pytest.warns(RgjaxWarning, match="not PSD"):
        spec = from_gram(K, y, allow_indefinite=True)
    assert float(spec.clipped_mass) > 1e-3


def test_spectrum_is_a_pytree():
    spec = powerlaw(50)
    leaves, tree = jax.tree_util.tree_flatten(spec)
    again = jax.tree_util.tree_unflatten(tree, leaves)
    assert isinstance(again, Spectrum) and again.n_pool == 50
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, spec)
    np.testing.assert_allclose(doubled.eigenvalues, 2 * spec.eigenvalues)
    # passes through jit as an argument
    assert float(jax.jit(lambda s: jnp.sum(s.eigenvalues))(spec)) == pytest.approx(1.0)


def test_powerlaw_normalised():
    spec = powerlaw(1000, alpha=0.5, beta=1.0)
    assert float(jnp.sum(spec.eigenvalues)) == pytest.approx(1.0)
    assert float(jnp.sum(spec.target_coefficients**2)) == pytest.approx(1.0)
    lam = np.asarray(spec.eigenvalues)
    np.testing.assert_allclose(lam[9] / lam[0], 10 ** (-1.5), rtol=1e-12)


def test_from_eigenvalues_validation():
    with pytest.raises(ValueError, match="descending"):
        from_eigenvalues([0.1, 0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        from_eigenvalues([0.5, -0.1], [1.0, 1.0])
    with pytest.raises(ValueError, match="n_pool"):
        from_eigenvalues([0.5, 0.1], [1.0, 1.0], trace=1.0)
    with pytest.raises(ValueError, match="shape"):
        from_eigenvalues([0.5, 0.1], [1.0])
    with pytest.raises(ValueError, match="features"):
        powerlaw(5).features()


def test_gram_gradient_matches_finite_differences_and_is_finite_when_degenerate():
    from jax.test_util import check_grads

    K, y = rbf_gram(25, seed=4)
    K = jnp.asarray(K)
    y = jnp.asarray(y)

    def f(A):
        spec = from_gram((A + A.T) / 2, y)  # finite differences perturb entries one at a time
        return jnp.sum(spec.eigenvalues**2 * spec.target_coefficients**2) + spec.eigenvalues[0]

    check_grads(f, (K,), order=1, modes=["rev"], eps=1e-6, atol=1e-7, rtol=1e-6)
    # exactly degenerate spectrum: K0 = I + 11ᵀ has one eigenvalue n+1 and n−1 equal to 1
    K0 = jnp.eye(6) + 1.0
    y6 = jnp.array([1.0, -1, 1, -1, 1, 0.5])

    def g(s):
        spec = from_gram(s * K0, y6)
        return jnp.sum(spec.target_coefficients**2 / (spec.eigenvalues + 0.1))

    val, grad = jax.value_and_grad(g)(1.3)
    eps = 1e-6
    fd = (g(1.3 + eps) - g(1.3 - eps)) / (2 * eps)
    assert np.isfinite(float(grad)) and float(grad) == pytest.approx(float(fd), rel=1e-6)
