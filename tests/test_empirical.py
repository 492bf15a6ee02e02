"""Tests of rgjax.empirical: exact GP solves, batched learning curves, resumable results files."""

import json

import jax
import numpy as np
import pytest

from rgjax import _trials, empirical
from rgjax._trials import padded_size
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
    assert (back.trials, back.sigma2, back.n_pool, back.nested) == (TRIALS, SIGMA2, N, False)
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
        ({"trials": 2.5}, r"`trials` must be an integer"),
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


def test_integral_float_counts_are_accepted(pool):
    # Counts go through rgjax._validate.check_int: 2.0 is the integer 2 (2.5 is rejected above).
    _, K, y = pool
    a = learning_curve(K, y, [5], SIGMA2, trials=2, key=0, progress=False)
    b = learning_curve(K, y, [5], SIGMA2, trials=2.0, key=0, progress=False)
    assert b.trials == 2
    np.testing.assert_array_equal(a.mse_pool_trials, b.mse_pool_trials)


def test_kernel_without_x_is_an_error(pool):
    from rgjax.kernels import fc

    _, _, y = pool
    with pytest.raises(ValueError, match=r"`x` is required when `K` is a kernel"):
        learning_curve(fc(1), y, [5], SIGMA2, trials=2, key=0, progress=False)


# ------------------------------------------------------------------ nested draws


@pytest.fixture(scope="module")
def nested_curve(pool):
    _, K, y = pool
    return learning_curve(
        K, y, ETAS, SIGMA2, trials=TRIALS, key=jax.random.key(3), progress=False, nested=True
    )


def test_nested_training_sets_are_prefixes_of_one_permutation():
    big = training_sets(3, N, 40, 5, nested=True)
    assert big.shape == (5, 40) and all(len(set(r)) == 40 for r in big.tolist())
    for eta in (1, 7, 39):
        np.testing.assert_array_equal(training_sets(3, N, eta, 5, nested=True), big[:, :eta])
    assert len({tuple(r) for r in big.tolist()}) == 5  # trials differ
    # Nested draws have their own key stream: not the independent sets of any η.
    assert not np.array_equal(training_sets(3, N, 7, 5), training_sets(3, N, 7, 5, nested=True))
    # Fewer trials are a prefix of more trials.
    np.testing.assert_array_equal(training_sets(3, N, 40, 2, nested=True), big[:2])


def test_nested_sets_are_uniform_draws():
    # Each pool point is in a set of size η with probability η/N, for nested and independent
    # draws alike; 4000 trials of η = 3 out of N = 12 → count ~ Binomial(4000, 1/4), sd ≈ 27.
    n, eta, trials = 12, 3, 4000
    for nested in (False, True):
        sets = training_sets(7, n, eta, trials, nested=nested)
        counts = np.bincount(sets.ravel(), minlength=n)
        expected, sd = trials * eta / n, np.sqrt(trials * eta / n * (1 - eta / n))
        assert np.all(np.abs(counts - expected) < 5 * sd), counts
        assert all(len(set(r)) == eta for r in sets[:50].tolist())


def _two_sample_z(a, b):
    """Per row of two (E, T) samples: z of the difference of means, and z of the log ratio of
    standard deviations (delta method, ``Var log s ≈ (kurtosis − 1)/(4T)``, each sample's own
    kurtosis, as the errors are far from normal)."""
    t = a.shape[1]
    se = np.hypot(a.std(1, ddof=1), b.std(1, ddof=1)) / np.sqrt(t)
    z_mean = (a.mean(1) - b.mean(1)) / se

    def kurt(x):
        c = x - x.mean(1, keepdims=True)
        return np.mean(c**4, 1) / np.mean(c**2, 1) ** 2

    z_sd = np.log(a.std(1) / b.std(1)) / np.sqrt((kurt(a) - 1 + kurt(b) - 1) / (4 * t))
    return z_mean, z_sd


def test_nested_draws_match_independent_ones_in_mean_and_standard_error(pool):
    # `rgjax curve` defaults to nested draws: each η's mean and standard error must be those of
    # independent draws (only the correlation across η differs). 500 trials per η on each side.
    x, K, y = pool
    etas, trials = [3, 10, 25, 45], 500
    nested = learning_curve(K, y, etas, SIGMA2, trials=trials, key=11, progress=False,
                            nested=True)
    indep = learning_curve(K, y, etas, SIGMA2, trials=trials, key=12, progress=False)
    for kind in ("pool", "heldout"):
        a, b = getattr(nested, f"mse_{kind}_trials"), getattr(indep, f"mse_{kind}_trials")
        z_mean, z_sd = _two_sample_z(a, b)
        assert np.all(np.abs(z_mean) < 4) and np.all(np.abs(z_sd) < 4), (kind, z_mean, z_sd)
        se = getattr(nested, f"mse_{kind}_se")
        np.testing.assert_allclose(se, a.std(1, ddof=1) / np.sqrt(trials), rtol=1e-12)
    # The check has power: sets drawn from the points with x_0 > 0 only are told apart.
    rng = np.random.default_rng(0)
    favoured = np.flatnonzero(x[:, 0] > 0)
    biased = np.array([[numpy_trial(K, y, rng.choice(favoured, eta, replace=False), SIGMA2)[0]
                        for _ in range(trials)] for eta in etas[:2]])
    z_mean, _ = _two_sample_z(biased, indep.mse_pool_trials[:2])
    assert np.all(np.abs(z_mean) > 6), z_mean


def test_nested_curve_matches_numpy_per_eta_solves(pool, nested_curve):
    _, K, y = pool
    lc = nested_curve
    assert lc.nested and np.all(lc.n_fallback == 0)
    assert lc.mse_pool_trials.shape == (len(ETAS), TRIALS)
    for e, eta in enumerate(ETAS):
        idx = training_sets(jax.random.key(3), N, eta, TRIALS, nested=True)
        for t in range(TRIALS):
            pool_mse, held_mse = numpy_trial(K, y, idx[t], SIGMA2)
            assert abs(lc.mse_pool_trials[e, t] - pool_mse) < 1e-10
            assert abs(lc.mse_heldout_trials[e, t] - held_mse) < 1e-10
    np.testing.assert_allclose(lc.mse_pool, lc.mse_pool_trials.mean(1), rtol=1e-14)
    np.testing.assert_allclose(
        lc.mse_heldout_se, lc.mse_heldout_trials.std(1, ddof=1) / np.sqrt(TRIALS), rtol=1e-12
    )
    back = LearningCurve.from_dict(json.loads(json.dumps(lc.to_dict())))
    assert back.nested is True
    np.testing.assert_array_equal(back.mse_pool_trials, lc.mse_pool_trials)


def test_nested_independent_of_chunking_and_grid(pool, nested_curve):
    _, K, y = pool
    ref = nested_curve.mse_pool_trials
    kw = dict(trials=TRIALS, key=jax.random.key(3), progress=False, nested=True)
    for extra in ({"chunk_size": 1}, {"chunk_size": 3}, {"memory_budget": 1}):
        lc = learning_curve(K, y, ETAS, SIGMA2, **kw, **extra)
        np.testing.assert_allclose(lc.mse_pool_trials, ref, rtol=1e-12)
        np.testing.assert_allclose(lc.mse_heldout_trials, nested_curve.mse_heldout_trials,
                                   rtol=1e-12)
    # A sub-grid (smaller largest system) gives the same trials.
    sub = learning_curve(K, y, ETAS[1:3], SIGMA2, **kw)
    np.testing.assert_allclose(sub.mse_pool_trials, ref[1:3], rtol=1e-12)


def test_nested_fallback_on_rank_deficient_kernel():
    # Rank-3 kernel at σ² = 1e-20: the factorisation at η = 20 fails, so every η of a trial is
    # redone on its own: Cholesky at η = 2 (a PD 2×2 system), eigh at η = 12 and 20.
    d, n = 3, 30
    rng = np.random.default_rng(6)
    x = rng.normal(size=(n, d))
    K, y = x @ x.T, x @ rng.normal(size=d)
    lc = learning_curve(K, y, [2, 12, 20], 1e-20, trials=3, key=2, progress=False, nested=True)
    np.testing.assert_array_equal(lc.n_fallback, [0, 3, 3])
    assert np.all(lc.mse_pool_trials[1:] < 1e-12 * np.mean(y**2))
    idx = training_sets(2, n, 2, 3, nested=True)
    for t in range(3):
        pool_mse, held_mse = numpy_trial(K, y, idx[t], 1e-20)
        np.testing.assert_allclose(lc.mse_pool_trials[0, t], pool_mse, rtol=1e-8)
        np.testing.assert_allclose(lc.mse_heldout_trials[0, t], held_mse, rtol=1e-8)


def test_nested_resume_after_interruption(pool, nested_curve, tmp_path):
    _, K, y = pool
    path = tmp_path / "nested.jsonl"
    kw = dict(trials=TRIALS, key=jax.random.key(3), progress=False, results_path=path,
              nested=True, chunk_size=2)
    seen = []

    def stop_after_first_chunk(eta, record):
        seen.append(eta)
        if len(seen) == len(ETAS):
            raise Interrupt

    with pytest.raises(Interrupt):
        learning_curve(K, y, ETAS, SIGMA2, callback=stop_after_first_chunk, **kw)
    records = [json.loads(s) for s in path.read_text().splitlines()]
    assert [r["eta"] for r in records] == ETAS
    assert all(r["trial_start"] == 0 and len(r["mse_pool"]) == 2 for r in records)
    assert all(r["fingerprint"]["nested"] is True for r in records)

    computed = []
    log = lambda eta, rec: computed.append((eta, rec.get("trial_start")))  # noqa: E731
    lc = learning_curve(K, y, ETAS, SIGMA2, callback=log, **kw)
    assert computed == [(eta, 2) for eta in ETAS]  # only the second chunk of trials
    np.testing.assert_allclose(lc.mse_pool_trials, nested_curve.mse_pool_trials, rtol=1e-12)
    np.testing.assert_array_equal(lc.mse_pool_trials[:, :2],
                                  [r["mse_pool"] for r in records])  # loaded, not recomputed

    # Extending the grid computes the new η only, for every trial.
    computed.clear()
    more = learning_curve(K, y, ETAS + [45], SIGMA2, callback=log, **kw)
    assert computed == [(45, 0), (45, 2)]
    new = list(more.etas).index(45)
    np.testing.assert_array_equal(np.delete(more.mse_pool_trials, new, 0), lc.mse_pool_trials)
    idx = training_sets(jax.random.key(3), N, 45, TRIALS, nested=True)
    for t in range(TRIALS):
        assert abs(more.mse_pool_trials[new, t] - numpy_trial(K, y, idx[t], SIGMA2)[0]) < 1e-10


def test_independent_run_resumes_partly_finished_eta(pool, reference_curve, tmp_path):
    # A record may hold a range of trials ("trial_start"): only the missing trials are computed.
    _, K, y = pool
    path = tmp_path / "lc.jsonl"
    kw = dict(trials=TRIALS, key=jax.random.key(3), progress=False, results_path=path)
    learning_curve(K, y, [7], SIGMA2, **kw)
    rec = json.loads(path.read_text())
    rec.update(trial_start=1, mse_pool=rec["mse_pool"][1:3], mse_heldout=rec["mse_heldout"][1:3])
    del rec["checksum"]  # a hand-made record, as files written before checksums hold them
    path.write_text(json.dumps(rec) + "\n")
    computed = []
    lc = learning_curve(K, y, [7], SIGMA2, callback=lambda e, r: computed.append(r), **kw)
    assert [(r.get("trial_start"), len(r["mse_pool"])) for r in computed] == [(0, 1), (3, 1)]
    np.testing.assert_allclose(lc.mse_pool_trials[0], reference_curve.mse_pool_trials[1],
                               rtol=1e-12)
    assert lc.n_fallback[0] == 0


def test_nested_and_independent_results_files_do_not_mix(pool, tmp_path):
    _, K, y = pool
    kw = dict(trials=2, key=0, progress=False)
    nested_file, independent_file = tmp_path / "n.jsonl", tmp_path / "i.jsonl"
    learning_curve(K, y, [7], SIGMA2, results_path=nested_file, nested=True, **kw)
    learning_curve(K, y, [7], SIGMA2, results_path=independent_file, **kw)
    with pytest.raises(ValueError, match=r"different configuration.*nested \(file True, now False"):
        learning_curve(K, y, [7], SIGMA2, results_path=nested_file, **kw)
    with pytest.raises(ValueError, match=r"different configuration.*nested \(file False, now True"):
        learning_curve(K, y, [7], SIGMA2, results_path=independent_file, nested=True, **kw)
    # Files of independent-draw runs keep the fingerprint fields they always had.
    assert "nested" not in json.loads(independent_file.read_text())["fingerprint"]


def test_results_record_with_bad_trial_range_is_an_error(pool, tmp_path):
    _, K, y = pool
    path = tmp_path / "lc.jsonl"
    kw = dict(trials=4, key=0, progress=False, results_path=path, nested=True, chunk_size=2)
    learning_curve(K, y, [7], SIGMA2, **kw)
    rec = json.loads(path.read_text().splitlines()[1])
    rec["trial_start"] = 3  # two values from trial 3 of 0..3
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match=r"line 1 does not hold trials 3\.\.4 of 0\.\.3"):
        learning_curve(K, y, [7], SIGMA2, **kw)


def test_looped_and_vmapped_trials_agree_above_512(monkeypatch):
    # On CPU, systems above 512 are solved one trial at a time (lax.map); accelerators vmap them.
    # Force the vmap path here too and check both against a dense numpy solve.
    n, eta, s2 = 530, 520, 1e-3
    K, y = rbf_pool(n)[1:]
    results = {}
    for looped in (True, False):
        monkeypatch.setattr(_trials, "_sequential", lambda ex, size, looped=looped: looped)
        results[looped] = [
            learning_curve(K, y, [eta], s2, trials=2, key=5, progress=False, nested=nested)
            for nested in (False, True)
        ]
    for nested in (False, True):
        loop, vec = results[True][nested], results[False][nested]
        np.testing.assert_allclose(vec.mse_pool_trials, loop.mse_pool_trials, rtol=1e-10)
        np.testing.assert_allclose(vec.mse_heldout_trials, loop.mse_heldout_trials, rtol=1e-10)
        for t, idx in enumerate(training_sets(5, n, eta, 2, nested=nested)):
            pool_mse, held_mse = numpy_trial(K, y, idx, s2)
            np.testing.assert_allclose(loop.mse_pool_trials[0, t], pool_mse, rtol=1e-9)
            np.testing.assert_allclose(loop.mse_heldout_trials[0, t], held_mse, rtol=1e-9)


def test_padded_sizes():
    # η <= 512 share a few compiled system sizes (capped at the pool size); above, exact.
    assert [padded_size(e, 4000) for e in (1, 8, 9, 32, 33, 129, 512)] == [
        8, 8, 32, 32, 128, 512, 512
    ]
    assert padded_size(513, 4000) == 513 and padded_size(59, 60) == 60


def test_bad_nested_argument(pool):
    _, K, y = pool
    with pytest.raises(ValueError, match=r"`nested` must be True or False"):
        learning_curve(K, y, [5], SIGMA2, trials=2, key=0, progress=False, nested="yes")


# ------------------------------------------------------------------ several devices

_SHARDED_CHILD = r"""
import json
import jax
import numpy as np
from rgjax.empirical import learning_curve, training_sets

assert jax.device_count() == 8
rng = np.random.default_rng(0)
n = 530
x = rng.normal(size=(n, 3))
K = np.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1))
y = np.sign(x[:, 0])
etas, s2 = [7, 520], 1e-3  # 520 > 512: the per-trial lax.map path inside shard_map
out = {}
for nested in (False, True):
    kw = dict(trials=3, key=1, progress=False, nested=nested)
    many = learning_curve(K, y, etas, s2, **kw)  # 3 trials padded to 8, one per device
    one = learning_curve(K, y, etas, s2, devices=jax.devices()[:1], **kw)
    # independent reference for η = 520 (numpy dense solve on the same training sets)
    ref = []
    for idx in training_sets(1, n, 520, 3, nested=nested):
        alpha = np.linalg.solve(K[np.ix_(idx, idx)] + s2 * np.eye(520), y[idx])
        ref.append(np.mean((K[:, idx] @ alpha - y) ** 2))
    rel = lambda a, b: float(np.max(np.abs(a / b - 1)))
    out[str(nested)] = {
        "pool_8_vs_1": rel(many.mse_pool_trials, one.mse_pool_trials),
        "held_8_vs_1": rel(many.mse_heldout_trials, one.mse_heldout_trials),
        "numpy_520": rel(many.mse_pool_trials[1], np.array(ref)),
        "nested": bool(many.nested),
    }
print(json.dumps(out))
"""


def test_trials_sharded_over_8_devices_match_one_device():
    # Every device runs the same per-trial solves; only the pool-prediction matrix product is
    # blocked differently (one trial per device instead of eight on one), so the MSEs agree to
    # round-off. The systems have condition number up to ~λ_max/σ² ≈ 5e5, and the residuals
    # f − y cancel to ~σ², so 1e-10 relative bounds that round-off with a margin (measured:
    # ≤ 5e-12 for independent draws; nested draws, solved one trial at a time on every device,
    # agree to ≤ 2.3e-16).
    from _helpers import run_with_devices

    out = json.loads(run_with_devices(_SHARDED_CHILD, n_devices=8).strip().splitlines()[-1])
    for mode in ("False", "True"):
        res = out[mode]
        assert res["nested"] == (mode == "True")
        for name in ("pool_8_vs_1", "held_8_vs_1", "numpy_520"):
            assert res[name] < 1e-10, (mode, name, res[name])


def test_a_record_changed_after_writing_fails_its_checksum_and_is_recomputed(pool, tmp_path):
    _, K, y = pool
    path = tmp_path / "curve.jsonl"
    first = learning_curve(K, y, ETAS, SIGMA2, trials=TRIALS, key=jax.random.key(3),
                           progress=False, results_path=path)
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    assert rec["checksum"].startswith("sha256:")
    rec["mse_pool"][0] *= 0.5  # an edited value, fingerprint and JSON intact
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    calls = []
    with pytest.warns(Warning, match="fails its checksum"):
        again = learning_curve(K, y, ETAS, SIGMA2, trials=TRIALS, key=jax.random.key(3),
                               progress=False, results_path=path,
                               callback=lambda eta, r: calls.append(eta))
    np.testing.assert_array_equal(again.mse_pool_trials, first.mse_pool_trials)
    assert calls == [rec["eta"]]  # only the dropped record's trials were computed again
    # the file is whole again: a third run computes nothing and warns about nothing
    third = learning_curve(K, y, ETAS, SIGMA2, trials=TRIALS, key=jax.random.key(3),
                           progress=False, results_path=path, callback=lambda *a: calls.append(a))
    np.testing.assert_array_equal(third.mse_pool_trials, first.mse_pool_trials)
    assert calls == [rec["eta"]]
