"""End-to-end gradients: kernel hyper-parameters / σ² / inputs X / threshold T → Gram → spectrum →
σ²_eff, κ, MSE_RG, MSE_spectral-bias, checked against central finite differences in float64; the
hard threshold as the τ → 0 limit of the smooth one; degenerate spectra (rgjax.optimize)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rgjax import from_gram, rg, theory
from rgjax import optimize as opt

N, D, ETA, T0 = 40, 5, 10.0, 0.5
H = 1e-5  # central-difference step (log-parameters, T, and unit-norm directions in X)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(N, D))
    y = np.sign(x[:, 0] - x[:, 1] + 0.2 * rng.normal(size=N))
    params = opt.init_params(2, W_std=[1.3, 1.5, 1.2], b_std=[0.2, 0.1, 0.3], sigma2=1e-3)
    direction = rng.normal(size=(N, D))
    direction = jnp.asarray(direction / np.linalg.norm(direction))
    return jnp.asarray(x), jnp.asarray(y), params, direction


def _spec(params, x, y):
    return from_gram(opt.build_kernel(params, depth=2)(x), y)


def _s2(params):
    return jnp.exp(params["log_sigma2"])


# name → (function of (params, x, y, T), depends smoothly on T). The MSEs use the default
# (resolvent) path; the eigenvector path is compared with it below.
QUANTITIES = {
    "effective_ridge_smooth": (lambda p, x, y, t: rg.effective_ridge(
        _spec(p, x, y), ETA, _s2(p), t, temperature=0.05), True),
    "effective_ridge_hard": (lambda p, x, y, t: rg.effective_ridge(_spec(p, x, y), ETA, _s2(p), t),
                             False),
    "kappa": (lambda p, x, y, t: theory.kappa(_spec(p, x, y), ETA, _s2(p)), False),
    "mse_rg_smooth": (lambda p, x, y, t: opt.predicted_mse(
        p, x, y, ETA, threshold=t, temperature=0.05), True),
    "mse_rg_hard": (lambda p, x, y, t: opt.predicted_mse(
        p, x, y, ETA, threshold=t, temperature=None), False),
    "mse_rg_dof_smooth": (lambda p, x, y, t: opt.predicted_mse(
        p, x, y, ETA, objective="rg_dof", threshold=t, temperature=0.05), True),
    "mse_spectral_bias": (lambda p, x, y, t: opt.predicted_mse(
        p, x, y, ETA, objective="spectral_bias"), False),
}


NAMES = list(QUANTITIES)


@pytest.fixture(scope="module")
def compiled(data):
    """All quantities' values and gradients from one compiled program each (compiles dominate)."""
    x, y, params, _ = data

    def values(p, xx, t):
        return jnp.stack([QUANTITIES[n][0](p, xx, y, t) for n in NAMES])

    def grads(p, xx, t):
        return [jax.grad(QUANTITIES[n][0], argnums=(0, 1, 3))(p, xx, y, t) for n in NAMES]

    return jax.jit(values), jax.jit(grads)(params, x, T0)


def _fd(values, *plus_minus):
    """Central differences of every quantity: (values(+) − values(−)) / 2H, shape (len(NAMES),)."""
    plus, minus = plus_minus
    return (np.asarray(values(*plus)) - np.asarray(values(*minus))) / (2 * H)


def _close(got, want, rtol=1e-5):
    got, want = np.asarray(got, float), np.asarray(want, float)
    scale = max(np.max(np.abs(want)), 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6 * scale)


@pytest.fixture(scope="module")
def finite_differences(data, compiled):
    x, y, params, direction = data
    values, _ = compiled
    fd = {"params": {}}
    for key, value in params.items():
        v = np.asarray(value, dtype=float)
        g = np.zeros(v.shape + (len(NAMES),))
        for idx in np.ndindex(v.shape):
            e = np.zeros_like(v)
            e[idx] = H
            g[idx] = _fd(values, (dict(params, **{key: jnp.asarray(v + e)}), x, T0),
                         (dict(params, **{key: jnp.asarray(v - e)}), x, T0))
        fd["params"][key] = g
    fd["x_direction"] = _fd(values, (params, x + H * direction, T0),
                            (params, x - H * direction, T0))
    fd["x_entries"] = {}
    for i, j in ((0, 0), (N - 1, D - 1)):
        e = jnp.zeros_like(x).at[i, j].set(H)
        fd["x_entries"][i, j] = _fd(values, (params, x + e, T0), (params, x - e, T0))
    fd["T"] = _fd(values, (params, x, T0 + H), (params, x, T0 - H))
    return fd


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_central_finite_differences(name, data, compiled, finite_differences):
    x, y, params, direction = data
    q = NAMES.index(name)
    g_params, g_x, g_t = compiled[1][q]
    fd = finite_differences

    if name.endswith("hard"):
        # piecewise smooth: check at a point where κ* does not move under the perturbations
        spec = _spec(params, x, y)
        kap = int(rg.cutoff(spec, ETA, float(_s2(params)), T0).kappa)
        for key, v in params.items():
            for s in (-1, 1):
                p = dict(params, **{key: v + s * H})
                assert int(rg.cutoff(_spec(p, x, y), ETA, float(_s2(p)), T0).kappa) == kap

    for key in params:  # every W_std and b_std of every layer, and σ²
        assert np.all(np.isfinite(np.asarray(g_params[key]))), key
        _close(g_params[key], fd["params"][key][..., q])
    # every hyper-parameter matters: no accidentally disconnected leaf
    assert all(np.all(np.asarray(g_params[k]) != 0) for k in params)

    # inputs X: directional derivative along a random unit direction, and two single entries
    _close(jnp.vdot(g_x, direction), fd["x_direction"][q])
    for (i, j), d in fd["x_entries"].items():
        _close(g_x[i, j], d[q], rtol=1e-4)

    # threshold T: smooth cutoff only (the hard rule is locally constant in T)
    if QUANTITIES[name][1]:
        assert abs(float(g_t)) > 0
        _close(g_t, fd["T"][q])
    else:
        assert float(g_t) == 0.0 and fd["T"][q] == 0.0


AGREE = [("rg", 0.05), ("rg_dof", None), ("spectral_bias", None)]


def test_resolvent_and_eigen_paths_agree_on_a_generic_spectrum(data):
    x, y, params, _ = data

    @jax.jit
    def both_paths(p, xx):
        out = []
        for objective, temperature in AGREE:
            for path in opt.PATHS:
                kw = dict(objective=objective, temperature=temperature, threshold=0.4, path=path)
                f = lambda q, z, kw=kw: opt.predicted_mse(q, z, y, ETA, **kw)  # noqa: E731
                out.append(jax.value_and_grad(f, argnums=(0, 1))(p, xx))
        return out

    out = both_paths(params, x)
    for k in range(len(AGREE)):
        (v_res, g_res), (v_eig, g_eig) = out[2 * k], out[2 * k + 1]
        assert float(v_res) == pytest.approx(float(v_eig), rel=1e-10), AGREE[k]
        for a, b in zip(jax.tree_util.tree_leaves(g_res), jax.tree_util.tree_leaves(g_eig)):
            _close(a, b, rtol=1e-8)


def test_whole_pipeline_compiles_as_one_function_and_vectorises_over_eta(data):
    x, y, params, _ = data
    f = jax.jit(jax.value_and_grad(lambda p, e: jnp.sum(opt.predicted_mse(p, x, y, e))))
    etas = jnp.array([5.0, 10.0, 20.0])
    val, g = f(params, etas)
    each = [float(opt.predicted_mse(params, x, y, e)) for e in (5.0, 10.0, 20.0)]
    assert float(val) == pytest.approx(sum(each), rel=1e-10)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in g.values())


def test_hard_gradient_is_the_small_temperature_limit(data):
    x, y, params, _ = data
    spec = _spec(params, x, y)
    lk = np.asarray(rg.learnability(spec, ETA, float(_s2(params))))
    margin = float(np.min(np.abs(lk - T0)))
    assert margin > 0.02  # the limit is only claimed away from L_k = T

    def grads(temperature):
        g = jax.grad(lambda p: opt.predicted_mse(p, x, y, ETA, temperature=temperature))(params)
        return np.concatenate([np.ravel(np.asarray(v)) for v in g.values()])

    hard = grads(None)
    errors = [np.max(np.abs(grads(t) - hard)) / np.max(np.abs(hard)) for t in (0.004, 0.002, 0.001)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-8


# ---- degenerate spectra ---------------------------------------------------------------------


def _degenerate_case(n=30, seed=0):
    """K = a I + b 11ᵀ: one top mode and an exactly (n−1)-fold degenerate block; a perturbation
    u uᵀ + (u vᵀ + v uᵀ) with u, v ⊥ 1 rotates inside that block."""
    rng = np.random.default_rng(seed)
    K = 0.05 * np.eye(n) + np.ones((n, n))
    y = np.sign(rng.normal(size=n))
    u, v = rng.normal(size=(2, n))
    u -= u.mean()
    v -= v.mean()
    dK = np.outer(u, u) + np.outer(u, v) + np.outer(v, u)
    return jnp.asarray(K), jnp.asarray(y), jnp.asarray(dK / np.linalg.norm(dK))


DEGENERATE = {
    # η = 2 keeps the block far below the threshold (L ≈ 0.07): σ²_eff is a symmetric function
    "spectral_bias": lambda K, y, path: theory.mse_from_gram(
        K, y, 2.0, 1e-3, objective="spectral_bias", path=path),
    "rg_hard": lambda K, y, path: theory.mse_from_gram(K, y, 2.0, 1e-3, temperature=None, path=path),
    "rg_dof_smooth": lambda K, y, path: theory.mse_from_gram(
        K, y, 2.0, 1e-3, objective="rg_dof", temperature=0.02, path=path),
}


@pytest.fixture(scope="module")
def degenerate():
    K, y, dK = _degenerate_case()
    cases = list(DEGENERATE)

    @jax.jit
    def values(k):
        return jnp.stack([DEGENERATE[c](k, y, "resolvent") for c in cases])

    @jax.jit
    def directional(k):
        """(dMSE/dK · dK, all entries of dMSE/dK finite) for every case and path."""
        out = {}
        for c in cases:
            for path in opt.PATHS:
                g = jax.grad(lambda kk: DEGENERATE[c](kk, y, path))(k)  # noqa: B023
                out[c, path] = (jnp.vdot(g, dK), jnp.all(jnp.isfinite(g)))
        return out

    fd = (np.asarray(values(K + H * dK)) - np.asarray(values(K - H * dK))) / (2 * H)
    return K, dict(zip(cases, fd)), directional(K)


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_degenerate_gram_resolvent_gradient_is_exact_where_eigenvectors_fail(name, degenerate):
    K, fd, directional = degenerate
    w = np.linalg.eigvalsh(np.asarray(K))
    assert np.ptp(w[:-1]) < 1e-12 * w[-1]  # exactly degenerate block of size N − 1
    (res, res_finite), (eig, eig_finite) = (directional[name, p] for p in opt.PATHS)
    assert bool(res_finite) and bool(eig_finite)  # every entry of dMSE/dK, both paths
    res, eig = float(res), float(eig)
    assert res == pytest.approx(fd[name], rel=1e-6, abs=1e-10)
    # The eigenvector path zeroes the rotation inside the block: finite but, for this perturbation,
    # not the derivative. Its error is reported, not asserted (fixing from_gram would be welcome).
    print(f"\n{name}: FD {fd[name]:.6e}, resolvent {res:.6e}, eigen {eig:.6e} "
          f"(rel. error {abs(eig / fd[name] - 1):.2e})")


def test_duplicated_points_give_finite_exact_gradients():
    rng = np.random.default_rng(1)
    base = rng.uniform(size=(10, D))
    x = jnp.asarray(np.repeat(base, 3, axis=0))  # rank ≤ 10: a 20-fold zero eigenvalue
    y = jnp.asarray(np.repeat(np.sign(base[:, 0] - 0.5), 3))
    params = opt.init_params(2, sigma2=1e-4)
    direction = jnp.asarray(rng.normal(size=x.shape))
    combos = [(o, path) for o in ("rg", "spectral_bias") for path in opt.PATHS]

    @jax.jit
    def all_combos(p, xx):
        def f(q, z, o, path):
            return opt.predicted_mse(q, z, y, 6.0, objective=o, path=path)

        return [jax.value_and_grad(f, argnums=(0, 1))(p, xx, o, path) for o, path in combos]

    out = all_combos(params, x)
    plus, minus = all_combos(params, x + H * direction), all_combos(params, x - H * direction)
    for k, combo in enumerate(combos):
        _, (g_p, g_x) = out[k]
        leaves = jax.tree_util.tree_leaves((g_p, g_x))
        assert all(np.all(np.isfinite(np.asarray(v))) for v in leaves), combo
        if combo[1] == "resolvent":
            # moving one copy of a duplicated point rotates the zero eigenspace
            fd = (float(plus[k][0]) - float(minus[k][0])) / (2 * H)
            got = float(jnp.vdot(g_x, direction))
            assert got == pytest.approx(fd, rel=1e-5, abs=1e-9), combo
