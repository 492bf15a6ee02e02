"""Tests of rgjax.empirical: exact GP solves, batched learning curves, resumable results files."""

import json

import jax
import numpy as np
import pytest

from rgjax import empirical
from rgjax.empirical import LearningCurve, gp_posterior_mean, learning_curve, training_sets

N = 60
SIGMA2 = 1e-3
TRIALS = 4
ETAS = [1, 7, 30, 59]


def rbf_pool(n=N, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    K = np.exp(-0.5 * np.sum((x[:, None] - x[None]) ** 2, axis=-1) / 1.5**2)
    y = np.sign(x[:, 0] + 0.3 * x[:, 1] ** 2 - 0.2)
    return x, K, y


@pytest.fixture(scope="module")
def pool():
    return rbf_pool()


@pytest.fixture(scope="module")
def reference_curve(pool):
    _, K, y = pool
    return learning_curve(K, y, ETAS, SIGMA2, trials=TRIALS, key=jax.random.key(3), progress=False)


def numpy_trial(K, y, idx, sigma2):
    """Pool and held-out MSE of one training set, by a direct dense solve."""
    alpha = np.linalg.solve(K[np.ix_(idx, idx)] + sigma2 * np.eye(len(idx)), y[idx])
    sq = (K[:, idx] @ alpha - y) ** 2
    held = np.ones(len(y), bool)
    held[idx] = False
    return sq.mean(), sq[held].mean()


# ------------------------------------------------------------------ gp_posterior_mean


def test_posterior_mean_matches_dense_solve():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(25, 40))
    k_all = a @ a.T / 40
    k_train, k_test = k_all[:15, :15], k_all[15:, :15]
    y = rng.normal(size=(15, 2))
    ref = k_test @ np.linalg.solve(k_train + 1e-3 * np.eye(15), y)
    out = gp_posterior_mean(k_train, y, k_test, 1e-3)
    assert out.shape == (10, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    single = gp_posterior_mean(k_train, y[:, 0], k_test, 1e-3)
    np.testing.assert_allclose(single, ref[:, 0], rtol=1e-10)


def test_posterior_mean_eigh_fallback_on_singular_kernel():
    # Rank-3 linear kernel on 12 points: K + 1e-20 I is numerically indefinite, Cholesky fails.
    rng = np.random.default_rng(2)
    x, x_test, w = rng.normal(size=(12, 3)), rng.normal(size=(5, 3)), rng.normal(size=3)
    k_train, k_test, y = x @ x.T, x_test @ x.T, x @ w
    assert np.isnan(np.asarray(empirical._cholesky_weights(k_train, y, 1e-20))).any()
    out = np.asarray(gp_posterior_mean(k_train, y, k_test, 1e-20))
    assert np.all(np.isfinite(out))
    # σ² → 0 limit: the minimum-norm interpolant, K* K⁺ y = x* w for a target in the row space.
    np.testing.assert_allclose(out, k_test @ np.linalg.pinv(k_train) @ y, rtol=1e-6, atol=1e-8)
    lstsq = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(out, x_test @ lstsq, rtol=1e-6, atol=1e-8)


def test_posterior_mean_under_jit():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(8, 8))
    k = a @ a.T
    f = jax.jit(gp_posterior_mean)
    ref = k[:3] @ np.linalg.solve(k + 0.1 * np.eye(8), np.ones(8))
    np.testing.assert_allclose(f(k, np.ones(8), k[:3], 0.1), ref, rtol=1e-10)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.ones((3, 4)), np.ones(3), np.ones((2, 3)), 1e-3), "k_train"),
        ((np.eye(3), np.ones(4), np.ones((2, 3)), 1e-3), "y_train"),
        ((np.eye(3), np.ones(3), np.ones((2, 4)), 1e-3), "k_test_train"),
        ((np.eye(3), np.array([1.0, np.nan, 0.0]), np.ones((2, 3)), 1e-3), "y_train"),
        ((np.eye(3), np.ones(3), np.ones((2, 3)), 0.0), "sigma2"),
    ],
)
def test_posterior_mean_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        gp_posterior_mean(*args)


# ------------------------------------------------------------------ learning_curve


def test_learning_curve_matches_numpy_loop(pool, reference_curve):
    _, K, y = pool
    lc = reference_curve
    assert isinstance(lc, LearningCurve)
    np.testing.assert_array_equal(lc.etas, ETAS)
    assert lc.mse_pool_trials.shape == (len(ETAS), TRIALS) and lc.trials == TRIALS
    for e, eta in enumerate(ETAS):
        idx = training_sets(jax.random.key(3), N, eta, TRIALS)
        assert idx.shape == (TRIALS, eta)
        for t in range(TRIALS):
            assert len(set(idx[t].tolist())) == eta and idx[t].min() >= 0 and idx[t].max() < N
            pool_mse, held_mse = numpy_trial(K, y, idx[t], SIGMA2)
            assert abs(lc.mse_pool_trials[e, t] - pool_mse) < 1e-10
            assert abs(lc.mse_heldout_trials[e, t] - held_mse) < 1e-10
    trials = lc.mse_pool_trials
    np.testing.assert_allclose(lc.mse_pool, trials.mean(1), rtol=1e-14)
    np.testing.assert_allclose(lc.mse_pool_se, trials.std(1, ddof=1) / np.sqrt(TRIALS), rtol=1e-12)
    held = lc.mse_heldout_trials
    np.testing.assert_allclose(lc.mse_heldout_se, held.std(1, ddof=1) / np.sqrt(TRIALS), rtol=1e-12)
    assert np.all(lc.mse_pool_se > 0) and np.all(lc.n_fallback == 0)
    # The learning curve falls, and draws differ between trials.
    assert lc.mse_pool[-1] < lc.mse_pool[0]
    assert len({tuple(r) for r in training_sets(jax.random.key(3), N, 7, TRIALS)}) == TRIALS


def test_draws_independent_of_chunking_grid_trials_and_key_type(pool, reference_curve):
    _, K, y = pool
    ref = reference_curve.mse_pool_trials[ETAS.index(7)]
    for kwargs in ({"chunk_size": 1}, {"chunk_size": 3}, {"memory_budget": 1}):
        lc = learning_curve(
            K, y, [7], SIGMA2, trials=TRIALS, key=jax.random.key(3), progress=False, **kwargs
        )
        np.testing.assert_allclose(lc.mse_pool_trials[0], ref, rtol=1e-12)
    # Another grid, fewer trials, a legacy uint32 key: trial t of η = 7 is the same draw.
    lc = learning_curve(K, y, [7, 20], SIGMA2, trials=3, key=jax.random.PRNGKey(3), progress=False)
    np.testing.assert_allclose(lc.mse_pool_trials[0], ref[:3], rtol=1e-12)
    other = learning_curve(K, y, [7], SIGMA2, trials=TRIALS, key=jax.random.key(4), progress=False)
    assert not np.allclose(other.mse_pool_trials[0], ref)


def test_result_serialisation_and_pytree(reference_curve):
    lc = reference_curve
    back = LearningCurve.from_dict(json.loads(json.dumps(lc.to_dict())))
    for f in ("etas", "mse_pool", "mse_pool_se", "mse_heldout_trials", "n_fallback"):
        np.testing.assert_array_equal(getattr(back, f), getattr(lc, f))
    assert (back.trials, back.sigma2, back.n_pool) == (TRIALS, SIGMA2, N)
    leaves, treedef = jax.tree_util.tree_flatten(lc)
    assert len(leaves) == 8
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, lc)
    np.testing.assert_allclose(doubled.mse_pool, 2 * lc.mse_pool)


def test_kernel_object_builds_gram(pool):
    from rgjax.kernels import fc, gram

    x, _, y = pool
    kernel = fc(1)
    lc = learning_curve(kernel, y, [7], SIGMA2, trials=2, key=0, x=x, progress=False)
    direct = learning_curve(gram(kernel, x), y, [7], SIGMA2, trials=2, key=0, progress=False)
    np.testing.assert_array_equal(lc.mse_pool_trials, direct.mse_pool_trials)


def test_linear_target_learned_exactly_once_eta_exceeds_dimension():
    # K = X Xᵀ with y linear in x, no noise: with η ≥ d points the GP recovers y (σ² tiny).
    d, n = 8, 80
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=d)
    lc = learning_curve(x @ x.T, y, [1, 2, 8, 20, 40], 1e-8, trials=6, key=1, progress=False)
    power = np.mean(y**2)
    assert np.all(lc.mse_pool[2:] < 1e-10 * power)
    assert np.all(lc.mse_heldout[2:] < 1e-10 * power)
    # One point learns one direction out of d: error ≈ (1 − 1/d) of the target power.
    assert 0.6 * power < lc.mse_pool[0] < 1.05 * power
    assert lc.mse_pool[1] < lc.mse_pool[0]


def test_learning_curve_eigh_fallback_on_rank_deficient_kernel():
    d, n = 3, 30
    rng = np.random.default_rng(6)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=d)
    lc = learning_curve(x @ x.T, y, [2, 12], 1e-20, trials=3, key=2, progress=False)
    assert lc.n_fallback[1] > 0  # Cholesky fails on the rank-3 12×12 system
    assert np.all(np.isfinite(lc.mse_pool_trials))
    assert np.all(lc.mse_pool_trials[1] < 1e-12 * np.mean(y**2))
    idx = training_sets(2, n, 2, 3)
    for t in range(3):
        pool_mse, held_mse = numpy_trial(x @ x.T, y, idx[t], 1e-20)
        np.testing.assert_allclose(lc.mse_pool_trials[0, t], pool_mse, rtol=1e-8)


# ------------------------------------------------------------------ resumption


class Interrupt(Exception):
    pass


def test_resume_after_interruption(pool, reference_curve, tmp_path):
    _, K, y = pool
    path = tmp_path / "lc.jsonl"
    def run(**kw):
        return learning_curve(
            K, y, ETAS, SIGMA2, trials=TRIALS, key=jax.random.key(3), progress=False,
            results_path=path, **kw,
        )

    def stop_after_two(eta, record):
        if eta == ETAS[1]:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(callback=stop_after_two)
    lines = path.read_text().splitlines()
    assert [json.loads(s)["eta"] for s in lines] == ETAS[:2]

    computed = []
    lc = run(callback=lambda eta, rec: computed.append(eta))
    assert computed == ETAS[2:]  # finished η are loaded, not recomputed
    for f in ("mse_pool_trials", "mse_heldout_trials", "mse_pool", "mse_pool_se", "mse_heldout_se"):
        np.testing.assert_array_equal(getattr(lc, f), getattr(reference_curve, f))

    # A complete file: nothing is recomputed, and a sub-grid is served from it.
    computed.clear()
    sub = learning_curve(
        K, y, [30], SIGMA2, trials=TRIALS, key=jax.random.key(3), progress=False, results_path=path,
        callback=lambda eta, rec: computed.append(eta),
    )
    assert computed == [] and sub.mse_pool[0] == reference_curve.mse_pool[2]


def test_resume_after_truncated_last_line(pool, reference_curve, tmp_path):
    _, K, y = pool
    path = tmp_path / "sub" / "lc.jsonl"
    kw = dict(trials=TRIALS, key=jax.random.key(3), progress=False, results_path=path)
    learning_curve(K, y, ETAS, SIGMA2, **kw)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # crash in the middle of writing the last line

    computed = []
    lc = learning_curve(K, y, ETAS, SIGMA2, callback=lambda eta, rec: computed.append(eta), **kw)
    assert computed == [ETAS[-1]]
    np.testing.assert_array_equal(lc.mse_pool_trials, reference_curve.mse_pool_trials)
    records = [json.loads(s) for s in path.read_text().splitlines()]  # every line parses again
    assert sorted(r["eta"] for r in records) == ETAS
    fp = records[0]["fingerprint"]
    assert fp["format"] == empirical.RESULTS_FORMAT and fp["n_pool"] == N and fp["sigma2"] == SIGMA2


def test_fingerprint_mismatch_is_an_error_unless_overwrite(pool, tmp_path):
    _, K, y = pool
    path = tmp_path / "lc.jsonl"
    kw = dict(trials=TRIALS, key=jax.random.key(3), progress=False, results_path=path)
    learning_curve(K, y, [7], SIGMA2, **kw)
    with pytest.raises(ValueError, match=r"different configuration.*sigma2"):
        learning_curve(K, y, [7], 2 * SIGMA2, **kw)
    with pytest.raises(ValueError, match=r"different configuration.*\by\b"):
        learning_curve(K, -y, [7], SIGMA2, **kw)
    with pytest.raises(ValueError, match=r"different configuration.*\bK\b"):
        learning_curve(K * 1.001, y, [7], SIGMA2, **kw)
    with pytest.raises(ValueError, match=r"different configuration.*key"):
        learning_curve(K, y, [7], SIGMA2, **{**kw, "key": jax.random.key(4)})
    # Round-off in a rebuilt Gram matrix still matches.
    learning_curve(K * (1 + 1e-15), y, [7], SIGMA2, **kw)
    computed = []
    learning_curve(
        K, y, [7], 2 * SIGMA2, overwrite=True, callback=lambda e, r: computed.append(e), **kw
    )
    assert computed == [7]
    lines = path.read_text().splitlines()
    assert [json.loads(s)["fingerprint"]["sigma2"] for s in lines] == [2 * SIGMA2]


# ------------------------------------------------------------------ input validation


@pytest.mark.parametrize(
    "change, match",
    [
        ({"K": np.ones((N, N - 1))}, r"`K` must be a square"),
        ({"y": np.ones(N - 1)}, r"`y` must have shape \(N,\) = \(60,\)"),
        ({"K": np.full((N, N), np.nan)}, r"`K` contains"),
        ({"y": np.r_[np.inf, np.ones(N - 1)]}, r"`y` contains"),
        ({"sigma2": 0.0}, r"`sigma2` must be finite and > 0"),
        ({"sigma2": -1e-8}, r"`sigma2`"),
        ({"etas": [0, 5]}, r"`etas` must be >= 1"),
        ({"etas": [5, N]}, r"`etas` must be < N = 60.*held-out"),
        ({"etas": [2.5]}, r"`etas` must be integers"),
        ({"etas": []}, r"`etas` must be a non-empty"),
        ({"trials": 1}, r"`trials` must be an integer >= 2.*standard error"),
        ({"trials": 2.0}, r"`trials`"),
        ({"chunk_size": 0}, r"`chunk_size`"),
        ({"key": "seed"}, r"`key` must be a JAX PRNG key"),
        ({"x": np.ones((N, 3))}, r"`x` is only used when `K` is a kernel"),
    ],
)
def test_learning_curve_bad_inputs(pool, change, match):
    _, K, y = pool
    args = {"K": K, "y": y, "etas": [5], "sigma2": SIGMA2, "trials": 2, "key": 0, **change}
    K_, y_, etas, s2 = args.pop("K"), args.pop("y"), args.pop("etas"), args.pop("sigma2")
    with pytest.raises(ValueError, match=match):
        learning_curve(K_, y_, etas, s2, progress=False, **args)


def test_kernel_without_x_is_an_error(pool):
    from rgjax.kernels import fc

    _, _, y = pool
    with pytest.raises(ValueError, match=r"`x` is required when `K` is a kernel"):
        learning_curve(fc(1), y, [5], SIGMA2, trials=2, key=0, progress=False)


# ------------------------------------------------------------------ several devices

_SHARDED_SCRIPT = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from rgjax.empirical import learning_curve
rng = np.random.default_rng(0)
x = rng.normal(size=(40, 3))
K = np.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1))
y = np.sign(x[:, 0])
kw = dict(trials=3, key=1, progress=False)
many = learning_curve(K, y, [7, 20], 1e-3, **kw)  # 3 trials padded to 4, one per device
one = learning_curve(K, y, [7, 20], 1e-3, devices=jax.devices()[:1], **kw)
assert len(jax.devices()) == 4
np.testing.assert_allclose(many.mse_pool_trials, one.mse_pool_trials, rtol=1e-12)
np.testing.assert_allclose(many.mse_heldout_trials, one.mse_heldout_trials, rtol=1e-12)
print("ok")
"""


def test_trials_sharded_over_devices_match_one_device():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _SHARDED_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
