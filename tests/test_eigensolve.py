"""Top-k eigensolver, top-k spectra and truncation checks, against dense ``numpy.linalg.eigh``.

Sizes are kept small (N ≤ 800) and the solver configurations few: each distinct (N, k, block,
basis) compiles once (a few seconds on a loaded 2-core machine).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rgjax
from rgjax import rg, spectrum, truncation
from rgjax._validate import RgjaxWarning
from rgjax.eigensolve import SolverReport, TopkResult, default_basis, topk_eigh

from _helpers import rbf_gram

N_POOL = 800
K_TOP = 96
SIGMA2 = 1e-8


def _nngp_pool(n: int, d: int = 40, seed: int = 0):
    """FC-ReLU depth-3 NNGP Gram matrix of Gaussian inputs with a power-law covariance."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.arange(1, d + 1) ** -0.5
    x /= np.sqrt(np.mean(np.sum(x**2, axis=1)))
    K = np.asarray(rgjax.gram(rgjax.fc(3, "relu", W_std=np.sqrt(2.0), b_std=0.1), x))
    y = np.sign(x[:, 0] + 0.5 * x[:, 1] ** 2 - 0.3)
    return x, K, y


@pytest.fixture(scope="module")
def pool():
    x, K, y = _nngp_pool(N_POOL)
    w, v = np.linalg.eigh(K)  # independent dense reference
    return dict(x=x, K=K, y=y, w=w[::-1], v=v[:, ::-1])


@pytest.fixture(scope="module")
def topk(pool):
    return topk_eigh(jnp.asarray(pool["K"]), K_TOP)


def _powerlaw_matrix(n: int, exponent: float = 1.3, seed: int = 1):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(n, n)))
    w = np.arange(1, n + 1, dtype=float) ** -exponent
    K = (u * w) @ u.T
    return (K + K.T) / 2, w, u


# ---------------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------------


def test_nngp_top_eigenpairs_match_dense_eigh(pool, topk):
    K, w, v = pool["K"], pool["w"], pool["v"]
    assert isinstance(topk, TopkResult) and isinstance(topk.report, SolverReport)
    lam = np.asarray(topk.eigenvalues)
    vec = np.asarray(topk.eigenvectors)
    assert bool(topk.converged) and int(topk.report.iterations) >= 1
    assert np.all(np.diff(lam) <= 0)
    # the NNGP spectrum is a power law with tiny relative gaps near k
    assert w[K_TOP - 1] / w[K_TOP] < 1.1
    np.testing.assert_allclose(lam, w[:K_TOP], rtol=1e-10)
    np.testing.assert_allclose(vec.T @ vec, np.eye(K_TOP), atol=1e-12)
    # the reported residuals are the true ones
    res = np.linalg.norm(K @ vec - vec * lam, axis=0)
    np.testing.assert_allclose(topk.residuals, res, rtol=1e-6, atol=1e-14 * w[0])
    assert np.all(np.asarray(topk.report.relative_residuals) <= 1e-6)
    # subspace: each dense eigenvector of the top half lies in the computed span
    outside = v[:, : K_TOP // 2] - vec @ (vec.T @ v[:, : K_TOP // 2])
    assert np.max(np.linalg.norm(outside, axis=0)) < 1e-8
    # target coefficients where the eigenvector is well defined (relative gap > 1e-3)
    y = pool["y"]
    yk, yk_dense = vec.T @ y, v[:, :K_TOP].T @ y
    wk = w[: K_TOP + 1]
    left = np.concatenate([[np.inf], wk[:-2] - wk[1:-1]])  # w_{i-1} - w_i
    right = wk[:-1] - wk[1:]  # w_i - w_{i+1}
    sep = np.minimum(left, right) / w[:K_TOP] > 1e-3
    assert sep.sum() > K_TOP // 3
    np.testing.assert_allclose(yk[sep] ** 2, yk_dense[sep] ** 2, atol=1e-8 * np.sum(y**2))


# One solver configuration (N = 300, k = 30) shared by the smaller tests: one compilation.
N_SMALL, K_SMALL = 300, 30


def test_synthetic_powerlaw_eigenvalues_exact():
    K, w, u = _powerlaw_matrix(N_SMALL)
    r = topk_eigh(K, K_SMALL, key=3)
    np.testing.assert_allclose(r.eigenvalues, w[:K_SMALL], rtol=1e-11)
    vec = np.asarray(r.eigenvectors)
    np.testing.assert_allclose(np.abs(np.sum(vec * u[:, :K_SMALL], axis=0)), 1.0, atol=1e-9)


def test_matrix_free_callables_equal_dense(pool, topk):
    K = jnp.asarray(pool["K"])
    part = topk_eigh(functools.partial(jnp.matmul, K), K_TOP, n=N_POOL)
    np.testing.assert_allclose(part.eigenvalues, topk.eigenvalues, rtol=1e-13)
    np.testing.assert_allclose(
        np.abs(np.asarray(part.eigenvectors)), np.abs(np.asarray(topk.eigenvectors)), atol=1e-9
    )
    assert int(part.report.n_matvec) == int(topk.report.n_matvec)


def test_from_matvec_with_kernel_operator_never_stores_k(pool):
    # rgjax.kernels.gram_operator: K @ V by kernel tiles; a pytree whose arrays (x and the
    # hyper-parameters) reach the solver as jit operands. Its diagonal() gives the trace.
    from rgjax.kernels import gram_operator

    kern = rgjax.fc(3, "relu", W_std=np.sqrt(2.0), b_std=0.1)
    op = gram_operator(kern, jnp.asarray(pool["x"]), block_size=400)
    spec = spectrum.from_matvec(op, pool["y"], 24)
    np.testing.assert_allclose(spec.eigenvalues, pool["w"][:24] / N_POOL, rtol=1e-10)
    np.testing.assert_allclose(spec.kernel_diagonal, np.diag(pool["K"]), rtol=1e-12)
    np.testing.assert_allclose(spec.trace, np.trace(pool["K"]) / N_POOL, rtol=1e-12)
    assert spec.solver is not None and bool(spec.solver.converged)


def test_deterministic_given_key(pool, topk):
    again = topk_eigh(jnp.asarray(pool["K"]), K_TOP)
    np.testing.assert_array_equal(np.asarray(again.eigenvalues), np.asarray(topk.eigenvalues))
    np.testing.assert_array_equal(np.asarray(again.eigenvectors), np.asarray(topk.eigenvectors))
    other = topk_eigh(jnp.asarray(pool["K"]), K_TOP, key=jax.random.PRNGKey(7), tol=1e-8)
    np.testing.assert_allclose(other.eigenvalues, topk.eigenvalues, rtol=1e-10)


def test_thick_restarts_converge_and_unconverged_warns():
    K, w, _ = _powerlaw_matrix(N_SMALL, exponent=1.1, seed=2)
    k, b = K_SMALL, 8
    # A basis of only k + 2b forces restarts: they must converge to the same pairs.
    r = topk_eigh(K, k, block_size=b, basis_size=k + 2 * b + 2, max_iter=200)
    assert bool(r.converged) and int(r.report.iterations) > 1
    assert int(r.report.n_matvec) > k + 2 * b
    np.testing.assert_allclose(r.eigenvalues, w[:k], rtol=1e-10)
    with pytest.warns(RgjaxWarning, match=r"did not converge in max_iter=1 .*basis_size"):
        bad = topk_eigh(K, k, block_size=b, basis_size=k + 2 * b + 2, max_iter=1)
    assert not bool(bad.converged) and int(bad.report.iterations) == 1
    assert np.max(np.asarray(bad.report.relative_residuals)) > 1e-6
    # no warning when asked not to
    topk_eigh(K, k, block_size=b, basis_size=k + 2 * b + 2, max_iter=1, warn_unconverged=False)


def test_rank_deficient_and_degenerate_matrices():
    rng = np.random.default_rng(5)
    n, r = N_SMALL, 12
    u, _ = np.linalg.qr(rng.normal(size=(n, n)))
    # rank 12 with a 3-fold degenerate top eigenvalue: the Krylov space is exhausted after a few
    # blocks, and the solver must keep going with random directions, not produce NaN.
    w = np.concatenate([[2.0, 2.0, 2.0], np.geomspace(1.0, 0.01, r - 3), np.zeros(n - r)])
    K = (u * w) @ u.T
    K = (K + K.T) / 2
    res = topk_eigh(K, K_SMALL)
    lam = np.asarray(res.eigenvalues)
    assert np.all(np.isfinite(lam)) and bool(res.converged)
    np.testing.assert_allclose(lam[:r], w[:r], rtol=1e-10)
    np.testing.assert_allclose(lam[r:], 0.0, atol=1e-12)
    vec = np.asarray(res.eigenvectors)
    np.testing.assert_allclose(vec.T @ vec, np.eye(K_SMALL), atol=1e-10)


def test_small_problem_is_solved_densely():
    K, w, _ = _powerlaw_matrix(60, seed=4)
    r = topk_eigh(K, 10)  # basis would cover the whole space
    assert int(r.report.iterations) == 0 and bool(r.converged)
    np.testing.assert_allclose(r.eigenvalues, w[:10], rtol=1e-12)


def test_eigenvalue_derivatives_exact_and_eigenvectors_nan():
    K, w, u = _powerlaw_matrix(N_SMALL, seed=6)
    rng = np.random.default_rng(0)
    D = rng.normal(size=K.shape)
    D = (D + D.T) / 2
    k = K_SMALL

    def top(t):
        return topk_eigh(jnp.asarray(K) + t * D, k, warn_unconverged=False)

    _, (dw, dv) = jax.jvp(lambda t: (top(t).eigenvalues, top(t).eigenvectors), (0.0,), (1.0,))
    # first-order perturbation theory from the dense eigenvectors: dw_i = u_iᵀ D u_i
    dw_ref = np.einsum("ni,nm,mi->i", u[:, :k], D, u[:, :k])
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-8)
    assert np.all(np.isnan(np.asarray(dv)))  # eigenvector derivatives: not supported, loudly
    # reverse mode (the transposed rule), on the small dense path to keep compilation short
    K6, w6, u6 = _powerlaw_matrix(60, seed=4)
    D6 = D[:60, :60]
    g = jax.grad(lambda t: jnp.sum(topk_eigh(jnp.asarray(K6) + t * D6, 10).eigenvalues ** 2))(0.0)
    dw6 = np.einsum("ni,nm,mi->i", u6[:, :10], D6, u6[:, :10])
    assert float(g) == pytest.approx(float(2 * np.sum(w6[:10] * dw6)), rel=1e-8)


def test_solver_input_errors():
    K, _, _ = _powerlaw_matrix(60, seed=4)
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 60\]"):
        topk_eigh(K, 0)
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 60\]"):
        topk_eigh(K, 61)
    with pytest.raises(ValueError, match="`k`"):
        topk_eigh(K, 2.5)
    with pytest.raises(TypeError, match="array or a callable"):
        topk_eigh("K", 3)
    with pytest.raises(ValueError, match="square"):
        topk_eigh(K[:, :50], 3)
    with pytest.raises(ValueError, match="`n`.*required"):
        topk_eigh(lambda V: K @ V, 3)
    with pytest.raises(ValueError, match=r"returned shape \(59, 8\)"):
        topk_eigh(lambda V: V[:-1], 3, n=60)
    with pytest.raises(ValueError, match="`matvec` failed"):
        topk_eigh(lambda V: jnp.ones((3, 3)) @ V, 3, n=60)
    with pytest.raises(ValueError, match="multiple of `block_size`"):
        topk_eigh(K, 3, block_size=8, basis_size=20)
    with pytest.raises(ValueError, match="`basis_size`"):
        topk_eigh(K, 10, block_size=8, basis_size=16)
    with pytest.raises(ValueError, match="`tol`"):
        topk_eigh(K, 3, tol=0.0)
    with pytest.raises(ValueError, match="`max_iter`"):
        topk_eigh(K, 3, max_iter=0)
    with pytest.raises(ValueError, match="`key`"):
        topk_eigh(K, 3, key="seed")
    assert default_basis(256) == (8, 640)


# ---------------------------------------------------------------------------------------------
# Spectra from the solver
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spectra(pool):
    K, y = pool["K"], pool["y"]
    full = rgjax.from_gram(K, y)
    top = rgjax.from_gram(K, y, K_TOP, method="topk")
    # dense_k: the top modes only, the rest counted as unlearnable (no tail measure)
    return full, full.truncate(K_TOP, tail=False), top


def test_from_gram_topk_matches_dense_truncation(pool, spectra):
    full, dense_k, top = spectra
    assert top.n_modes == K_TOP and top.is_truncated and top.n_pool == N_POOL
    assert top.solver is not None and bool(top.solver.converged)
    assert dense_k.solver is None and full.solver is None
    np.testing.assert_allclose(top.eigenvalues, dense_k.eigenvalues, rtol=1e-10)
    np.testing.assert_allclose(top.trace, np.trace(pool["K"]) / N_POOL, rtol=1e-14)
    np.testing.assert_allclose(top.target_power, np.mean(pool["y"] ** 2), rtol=1e-14)
    np.testing.assert_allclose(top.kernel_diagonal, np.diag(pool["K"]), rtol=1e-14)
    np.testing.assert_allclose(top.tail_mass, np.sum(full.eigenvalues[K_TOP:]), rtol=1e-9)
    np.testing.assert_allclose(top.residual_power, dense_k.residual_power, rtol=1e-8)
    assert float(top.clipped_mass) == 0.0
    # the spectrum (with its report) is a pytree that passes through jit
    out = jax.jit(lambda s: s)(top)
    assert isinstance(out.solver, SolverReport) and out.n_pool == N_POOL
    assert top.truncate(10).solver.residuals.shape == (10,)


@functools.partial(jax.jit, static_argnames=("dof", "rtol"))
def _curves(spec, eta, sigma2, dof=False, rtol=1e-3):
    """Every curve and truncation check at once (one compilation instead of op-by-op dispatch)."""
    return dict(
        rg=rgjax.mse_rg(spec, eta, sigma2, dof_correction=dof),
        sb=rgjax.mse_spectral_bias(spec, eta, sigma2),
        ek=rgjax.mse_ek(spec, eta, sigma2),
        bound_rg=truncation.truncation_error_bound(spec, eta, sigma2, dof_correction=dof),
        bound_ek=truncation.truncation_error_bound(spec, eta, sigma2, theory="ek"),
        valid_rg=truncation.truncation_valid(spec, eta, sigma2, rtol=rtol, dof_correction=dof),
        valid_ek=truncation.truncation_valid(spec, eta, sigma2, rtol=rtol, theory="ek"),
        err_sb=truncation.truncation_error(spec, eta, sigma2, theory="spectral_bias"),
    )


@pytest.mark.parametrize("dof", [False, True])
def test_curves_from_topk_match_dense(spectra, dof):
    full, dense_k, top = spectra
    e_max = float(rg.eta_max(top, SIGMA2))
    eta = np.geomspace(1.0, 0.99 * e_max, 25)
    # (without its solver report and tail the top-k spectrum has dense_k's structure)
    bare = dataclasses.replace(top, solver=None, tail=None)
    c_top, c_k, c_full, c_tail = (
        {n: np.asarray(v) for n, v in _curves(s, eta, SIGMA2, dof=dof).items()}
        for s in (bare, dense_k, full, top)
    )
    # the solver: same curves as the dense spectrum truncated to the same k
    for name in ("rg", "sb", "ek"):
        np.testing.assert_allclose(c_top[name], c_k[name], rtol=1e-9)
    # with its tail measure: the full spectrum's RG and EK, the spectral bias within its estimate
    for name in ("rg", "ek"):
        np.testing.assert_allclose(c_tail[name], c_full[name], rtol=1e-9)
    assert np.all(np.abs(c_tail["sb"] - c_full["sb"]) <= c_tail["err_sb"])
    assert np.all(c_tail["valid_rg"] == (eta < e_max))
    # the truncation: against the *full* spectrum the RG curve is within the proven bound, and
    # within rtol wherever truncation_valid(rtol) says so
    rg_top, rg_full, bound = c_top["rg"], c_full["rg"], c_top["bound_rg"]
    ok = np.isfinite(rg_top)  # with the dof correction the RG needs κ* < η
    np.testing.assert_array_equal(np.isfinite(bound), ok)
    assert ok.sum() >= eta.size - 2
    diff = rg_top[ok] - rg_full[ok]
    assert np.all(diff >= -1e-12 * rg_full[ok]) and np.all(diff <= bound[ok] * (1 + 1e-9) + 1e-14)
    valid = c_top["valid_rg"]
    assert 0 < valid.sum() < eta.size
    np.testing.assert_allclose(rg_top[valid], rg_full[valid], rtol=1e-3)


def test_truncated_curves_match_full_to_1e6_where_valid():
    # A fast-decaying (RBF) spectrum: there the top modes carry the curve to 1e-6.
    K, y = rbf_gram(N_SMALL, d=2, lengthscale=5.0)
    full = rgjax.from_gram(K, y)
    top = rgjax.from_gram(K, y, K_SMALL, method="topk")
    eta = np.geomspace(1.0, 200.0, 25)
    c_top, c_full = ({n: np.asarray(v) for n, v in _curves(s, eta, 1e-4, rtol=1e-6).items()}
                     for s in (top, full))
    for theory in ("rg", "ek"):
        valid, bound = c_top[f"valid_{theory}"], c_top[f"bound_{theory}"]
        a, b = c_top[theory], c_full[theory]
        assert valid.sum() >= 5
        np.testing.assert_allclose(a[valid], b[valid], rtol=1e-6)
        ok = np.isfinite(bound)
        assert np.all(a[ok] - b[ok] <= bound[ok] * (1 + 1e-9) + 1e-15)
    assert np.all(c_full["valid_rg"]) and np.all(c_full["bound_ek"] == 0)


def test_from_matvec_equals_from_gram_topk(pool, spectra):
    _, _, top = spectra
    K, y = jnp.asarray(pool["K"]), pool["y"]
    mv = functools.partial(jnp.matmul, K)
    s = spectrum.from_matvec(mv, y, K_TOP, diagonal=np.diag(pool["K"]))
    np.testing.assert_allclose(s.eigenvalues, top.eigenvalues, rtol=1e-13)
    np.testing.assert_allclose(
        np.abs(s.target_coefficients), np.abs(top.target_coefficients), atol=1e-9
    )
    np.testing.assert_allclose(s.trace, top.trace, rtol=1e-15)
    np.testing.assert_allclose(s.kernel_diagonal, top.kernel_diagonal)
    t = spectrum.from_matvec(mv, y, K_TOP, trace=float(np.trace(pool["K"])) / N_POOL)
    assert t.kernel_diagonal is None
    np.testing.assert_allclose(t.tail_mass, top.tail_mass, rtol=1e-12)
    eta = np.geomspace(1, 200, 7)
    np.testing.assert_allclose(
        rgjax.mse_rg(t, eta, SIGMA2), rgjax.mse_rg(top, eta, SIGMA2), rtol=1e-9
    )


def test_from_matvec_and_from_gram_errors(pool):
    K, y = jnp.asarray(pool["K"]), pool["y"]
    mv = functools.partial(jnp.matmul, K)
    diag = np.diag(pool["K"])
    with pytest.raises(ValueError, match="exactly one of `diagonal`"):
        spectrum.from_matvec(mv, y, 8)
    with pytest.raises(ValueError, match="exactly one of `diagonal`"):
        spectrum.from_matvec(mv, y, 8, diagonal=diag, trace=1.0)
    with pytest.raises(ValueError, match=r"`diagonal` must have shape \(N,\) = \(800,\)"):
        spectrum.from_matvec(mv, y, 8, diagonal=diag[:-1])
    with pytest.raises(ValueError, match="`trace` must be a scalar"):
        spectrum.from_matvec(mv, y, 8, trace=diag)
    # (k = K_TOP: the same compiled solver as test_matrix_free_callables_equal_dense)
    with pytest.raises(ValueError, match=r"not tr\(K\)"):
        spectrum.from_matvec(mv, y, K_TOP, trace=float(np.sum(diag)))
    with pytest.raises(ValueError, match="smaller than the sum of the top"):
        spectrum.from_matvec(mv, y, K_TOP, trace=1e-6)
    with pytest.raises(TypeError, match="callable"):
        spectrum.from_matvec(K, y, 8, diagonal=diag)
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 800\]"):
        spectrum.from_matvec(mv, y, 0, diagonal=diag)
    with pytest.raises(ValueError, match="`y` must have shape"):
        spectrum.from_matvec(mv, y[:, None], 8, diagonal=diag)
    with pytest.raises(ValueError, match="needs `k`"):
        rgjax.from_gram(pool["K"], y, method="topk")
    with pytest.raises(ValueError, match="unknown `method`"):
        rgjax.from_gram(pool["K"], y, 8, method="lanczos")
    asym = pool["K"].copy()
    asym[3, 7] += 1e-6 * np.abs(asym).max()
    with pytest.raises(ValueError, match="not symmetric"):
        rgjax.from_gram(asym, y, 8, method="topk")  # probe-based check, before any solve
    bad = pool["K"].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN/Inf"):
        rgjax.from_gram(bad, y, 8, method="topk")


def test_gpu_guard_decision_and_fallback(monkeypatch):
    fits = spectrum.dense_eigh_fits
    assert fits(2**31, "gpu") and not fits(2**31 + 1, "gpu")
    assert not fits(16385**2 * 8, "cuda") and not fits(2**32, "rocm")
    assert fits(2**40, "cpu") and fits(2**40, "tpu") and fits(16384**2 * 8, "gpu")
    # the wiring, on CPU: pretend K lives on a GPU with a tiny limit
    K, w, _ = _powerlaw_matrix(60, seed=4)  # the same solver program as the small-problem test
    y = np.sign(np.arange(60) % 3 - 0.5)
    monkeypatch.setattr(spectrum, "_platform_of", lambda K: "gpu")
    monkeypatch.setattr(spectrum, "GPU_DENSE_EIGH_MAX_BYTES", 1000)
    monkeypatch.setattr(spectrum, "GPU_FALLBACK_K", 10)
    with pytest.warns(RgjaxWarning, match=r"dense eigh on gpu fails.*top k=10 modes"):
        spec = rgjax.from_gram(K, y)
    assert spec.n_modes == 10 and spec.solver is not None
    np.testing.assert_allclose(spec.eigenvalues, w[:10] / 60, rtol=1e-10)
    monkeypatch.setattr(spectrum, "GPU_FALLBACK_K", 2048)
    with pytest.warns(RgjaxWarning, match="top k=10 modes"):
        assert rgjax.from_gram(K, y, 10).n_modes == 10  # a given k wins


# ---------------------------------------------------------------------------------------------
# "k is too small for this η"
# ---------------------------------------------------------------------------------------------


def test_truncation_valid_is_eta_below_eta_max(spectra):
    full, _, top = spectra
    for dof in (False, True):
        e_max = float(rg.eta_max(top, SIGMA2, dof_correction=dof))
        eta = np.array([1.0, 0.5 * e_max, 0.999 * e_max, 1.001 * e_max, 3 * e_max])
        valid = np.asarray(truncation.truncation_valid(top, eta, SIGMA2, dof_correction=dof))
        np.testing.assert_array_equal(valid, eta < e_max)
    assert bool(np.all(truncation.truncation_valid(full, eta, SIGMA2)))
    with pytest.raises(ValueError, match="`theory`"):
        truncation.truncation_valid(top, eta, SIGMA2, theory="nope")
    with pytest.raises(ValueError, match="`rtol`"):
        truncation.truncation_valid(top, eta, SIGMA2, rtol=-1.0)
    with pytest.raises(ValueError, match="`theory`"):
        truncation.truncation_error_bound(top, eta, SIGMA2, theory="spectral_bias")
    np.testing.assert_array_equal(
        np.asarray(truncation.truncation_error_bound(full, eta, SIGMA2))[:2], 0.0)


def test_truncation_message_and_warning(spectra):
    _, _, top = spectra
    e_max = float(rg.eta_max(top, SIGMA2))
    eta = np.array([10.0, 2 * e_max])
    msg = truncation.truncation_message(top, eta, SIGMA2)
    assert msg.startswith(f"k={K_TOP} modes (of N={N_POOL}, a tail measure) are too few for "
                          f"η ≥ {2 * e_max:.4g}")
    assert "RgjaxWarning" not in msg
    assert "σ²=1e-08" in msg and "pass a larger" in msg.lower() and f"{e_max:.4g}" in msg
    assert truncation.truncation_message(top, [10.0], SIGMA2) is None
    bare = dataclasses.replace(top, tail=None)  # unlearnable tail: its bound exceeds 1e-9
    assert "rtol=1e-09" in truncation.truncation_message(bare, [10.0, 50.0], SIGMA2, rtol=1e-9)
    with pytest.warns(RgjaxWarning, match="too few"):
        valid = truncation.check_truncation(top, eta, SIGMA2)
    np.testing.assert_array_equal(np.asarray(valid), [True, False])
