"""Hermite toy model (paper Fig. 3, docs/theory.md §5): the random inputs (threefry + Box–Muller
against jax.random and numpy), the power-sum Gram against the feature matrices, the exact
per-data-set solve, chunked and sharded accumulation, quadrature theory, a statistical check of
the input-dependent RG, and input validation."""

import json
import math
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import run_with_devices
from matplotlib.figure import Figure
from numpy.polynomial import hermite_e

from rgjax import toy
from rgjax._counter_rng import seed_key_data, sincos_2pi
from rgjax.jobs.toy import ToyConfig
from rgjax.jobs.toy import run as run_toy
from rgjax.plotting import plot_toy_predictor

PAPER = toy.ToyProblem()  # degrees (1, 2), target ψ_5, n = 100, σ² = 400
PAPER_LAMBDAS = [[1.0, 0.0], [1.0, 0.1]]


def _psi_ref(x, d):
    """ψ_d from numpy's probabilists' Hermite series: He_d / √(d!)."""
    return hermite_e.hermeval(x, np.eye(d + 1)[d]) / math.sqrt(math.factorial(d))


# ----------------------------------------------------------------------------------------------
# Hermite features and quadrature


def test_hermite_matches_numpy_and_is_orthonormal():
    x = np.linspace(-4, 4, 33)
    feats = toy.hermite(x, range(9))
    assert feats.shape == (33, 9)
    for d in range(9):
        np.testing.assert_allclose(feats[:, d], _psi_ref(x, d), rtol=1e-12, atol=1e-12)
    gram = toy.gaussian_expectation(lambda z: np.einsum("qa,qb->qab", toy.hermite(z, range(9)),
                                                        toy.hermite(z, range(9))), order=20)
    np.testing.assert_allclose(gram, np.eye(9), atol=1e-12)


def test_sqrt30_identity():
    assert toy.hermite_moment(1, 5, 2, 2) == pytest.approx(math.sqrt(30), rel=1e-13)
    # independently, from numpy's Hermite polynomials and a high-order rule
    nodes, w = hermite_e.hermegauss(40)
    direct = np.sum(w * _psi_ref(nodes, 1) * _psi_ref(nodes, 5) * _psi_ref(nodes, 2) ** 2)
    assert direct / math.sqrt(2 * math.pi) == pytest.approx(math.sqrt(30), rel=1e-12)


# ----------------------------------------------------------------------------------------------
# per-data-set exact posterior


def _dense_gp(x, problem, lam):
    """Textbook GP posterior mean: K = Φ Λ Φᵀ (n × n), c = Λ Φᵀ (K + σ² I)⁻¹ y (numpy)."""
    phi = np.stack([_psi_ref(x, d) for d in problem.degrees], axis=1)
    y = sum(c * _psi_ref(x, d) for d, c in problem.target)
    kmat = phi @ np.diag(lam) @ phi.T
    alpha = np.linalg.solve(kmat + problem.sigma2 * np.eye(x.size), y)
    return np.diag(lam) @ phi.T @ alpha, alpha, phi


@pytest.mark.parametrize(
    "problem, lambdas",
    [
        (toy.ToyProblem(n=30, sigma2=2.0), [[1.0, 0.1], [1.0, 0.0]]),
        (toy.ToyProblem(degrees=(0, 1, 3), target={1: 0.5, 3: -1.0, 4: 2.0}, n=12, sigma2=0.3),
         [[0.7, 2.0, 0.0], [0.1, 0.0, 5.0]]),
        # degrees beyond the power-sum plan (Σx¹⁵ would be needed): the feature-table path
        (toy.ToyProblem(degrees=(1, 7), target={8: 1.0, 2: 0.5}, n=15, sigma2=4.0),
         [[1.0, 0.3], [0.5, 0.0]]),
    ],
)
def test_posterior_matches_dense_gp_solve(problem, lambdas):
    idx = np.array([0, 7, 123, 99_999])
    x = np.asarray(toy.toy_inputs(3, idx, problem.n))
    assert x.shape == (4, problem.n)
    coefs = np.asarray(toy.trial_coefficients(problem, lambdas, idx, seed=3))
    assert coefs.shape == (4, 2, problem.p)
    x_test = np.linspace(-2.5, 2.5, 7)
    for i in range(4):
        for ell, lam in enumerate(np.asarray(lambdas)):
            c_ref, alpha, phi = _dense_gp(x[i], problem, lam)
            np.testing.assert_allclose(coefs[i, ell], c_ref, rtol=1e-9, atol=1e-13)
            # the predictor at new inputs, K(x*, X) α, equals Σ_j c_j ψ_j(x*)
            phi_t = np.stack([_psi_ref(x_test, d) for d in problem.degrees], axis=1)
            k_test = phi_t @ np.diag(lam) @ phi.T
            np.testing.assert_allclose(phi_t @ coefs[i, ell], k_test @ alpha, rtol=1e-9, atol=1e-13)
    # a zero eigenvalue gives exactly zero weight to its degree
    assert np.all(coefs[:, np.asarray(lambdas) == 0] == 0)


def test_draws_depend_only_on_the_data_set_index():
    block = np.asarray(toy.toy_inputs(0, np.arange(10), 5))
    single = np.asarray(toy.toy_inputs(0, [7], 5))
    np.testing.assert_array_equal(block[7], single[0])
    assert not np.allclose(block[0], block[1])
    assert not np.allclose(block, np.asarray(toy.toy_inputs(1, np.arange(10), 5)))
    assert abs(block.mean()) < 1.0


def test_draws_are_jax_threefry_words_through_box_muller():
    # Independent computation: the 64-bit words from jax.random.bits (partitionable threefry, jax's
    # default), then Box–Muller in numpy (libm log/cos/sin).
    seed, idx, n = 11, np.array([0, 5, 2**31 + 3, 2**32 - 1], dtype=np.uint32), 9
    x = np.asarray(toy.toy_inputs(seed, idx, n))
    h = -(-n // 2)
    with jax.threefry_partitionable(True):
        key = jax.random.key(seed, impl="threefry2x32")
        words = np.stack([np.asarray(jax.random.bits(jax.random.fold_in(key, int(i)), (2 * h,),
                                                     jnp.uint64)) for i in idx])
    frac = (words >> np.uint64(12)).astype(np.float64) / 2.0**52  # exact: 52-bit integers
    u1, u2 = 1.0 - frac[:, :h], frac[:, h:]
    r = np.sqrt(-2.0 * np.log(u1))
    ref = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], axis=1)[:, :n]
    np.testing.assert_allclose(x, ref, rtol=1e-13, atol=1e-14)


def test_sincos_polynomial_is_accurate():
    # quarter-turn boundaries, their neighbours, and random points of the 52-bit grid
    edges = np.array([0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1 - 2.0**-52])
    u = np.concatenate([edges, np.nextafter(edges[1:], 0), np.nextafter(edges[:-1], 1),
                        np.random.default_rng(0).integers(0, 2**52, 100_000) / 2.0**52])
    cos, sin = (np.asarray(v) for v in jax.jit(sincos_2pi)(jnp.asarray(u)))
    # reference in extended precision (2πu itself is not exact in float64)
    angle = 2 * np.longdouble("3.14159265358979323846264338327950288") * u.astype(np.longdouble)
    np.testing.assert_allclose(cos, np.cos(angle).astype(float), rtol=0, atol=3e-16)
    np.testing.assert_allclose(sin, np.sin(angle).astype(float), rtol=0, atol=3e-16)


def test_draws_are_standard_normal_and_independent():
    from scipy import stats

    x = np.asarray(toy.toy_inputs(3, np.arange(2_000), 100))  # 2·10⁵ draws
    flat = x.ravel()
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    se = 1 / math.sqrt(flat.size)
    for k, moment, sd in [(1, 0.0, 1.0), (2, 1.0, math.sqrt(2)), (3, 0.0, math.sqrt(15)),
                          (4, 3.0, math.sqrt(96)), (6, 15.0, math.sqrt(10395 - 225))]:
        assert abs(np.mean(flat**k) - moment) < 5 * sd * se, k
    # the two Box–Muller outputs of a pair (points j and 50 + j) are independent: uncorrelated
    # squares, and no dependence between data sets either
    a, b = x[:, :50].ravel(), x[:, 50:].ravel()
    assert abs(np.corrcoef(a**2, b**2)[0, 1]) < 5 / math.sqrt(a.size)
    assert abs(np.corrcoef(x[:-1, 0], x[1:, 0])[0, 1]) < 5 / math.sqrt(x.shape[0])


@pytest.mark.parametrize(
    "degrees, target",
    [((1, 2), {5: 1.0}), ((0, 1, 3), {1: 0.5, 3: -1.0, 4: 2.0}), ((2, 4, 6), {6: 1.0, 0: -0.3}),
     (tuple(range(7)), {3: 1.0})],  # p = 7: the einsum branch
)
def test_power_sum_gram_matches_feature_matrices(degrees, target):
    prob = toy.ToyProblem(degrees=degrees, target=target, n=100)
    plan = toy._power_plan(prob.degrees, prob.target)
    assert plan is not None
    x = np.asarray(toy.toy_inputs(5, np.arange(40), prob.n))
    gram, rhs = (np.asarray(v) for v in jax.jit(
        lambda z: toy._gram_and_rhs([z[:, :37], z[:, 37:]], prob.n, prob.degrees, prob.target))(x))
    # independently: numpy's Hermite series as feature matrices
    phi = np.stack([_psi_ref(x, d) for d in prob.degrees], axis=-1)  # (40, n, p)
    y = sum(c * _psi_ref(x, d) for d, c in prob.target)
    scale = np.sqrt(np.einsum("bia,bia->ba", phi, phi))  # entry tolerances relative to ‖ψ_a‖‖ψ_b‖
    np.testing.assert_allclose(gram, np.einsum("bia,bic->bac", phi, phi),
                               rtol=0, atol=1e-12 * np.max(scale) ** 2)
    np.testing.assert_allclose(rhs, np.einsum("bia,bi->ba", phi, y), rtol=0,
                               atol=1e-12 * np.max(scale) * np.sqrt(np.max(np.sum(y * y, -1))))
    # and the old formulation (the feature table in jax) agrees
    gram_t, rhs_t = toy._gram_and_rhs_table(jnp.asarray(x), prob.degrees, prob.target)
    np.testing.assert_allclose(gram, gram_t, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(rhs, rhs_t, rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("n", [1, 2, 21, 100])
def test_pair_power_sums_are_power_sums_of_the_inputs(n):
    # the Monte Carlo's sums come from (r, θ) of each Box–Muller pair without forming the inputs
    idx = jnp.arange(64, dtype=jnp.uint32)
    key_data = seed_key_data(3)
    x = np.asarray(toy.toy_inputs(3, idx, n))
    sums = jax.jit(lambda k, i: toy._pair_power_sums(k, i, n, 9, jnp.int32(1)))(key_data, idx)
    for k, s in enumerate(sums):
        scale = np.sum(np.abs(x) ** k, axis=-1)
        np.testing.assert_allclose(np.asarray(s), np.sum(x**k, axis=-1), rtol=0,
                                   atol=1e-13 * np.max(scale))


def test_power_plan_limits():
    assert toy._power_plan((1, 2), ((5, 1.0),)) is not None  # Σx⁷
    assert toy._power_plan((6,), ((6, 1.0),)) is not None  # Σx¹², the limit
    assert toy._power_plan((1, 7), ((2, 1.0),)) is None  # Σx¹⁴
    assert toy._power_plan((1,), ((12, 1.0),)) is None  # Σx¹³


def test_trials_are_the_posterior_of_the_inputs():
    idx = np.arange(50, 80)
    trials = np.asarray(toy.trial_coefficients(PAPER, PAPER_LAMBDAS, idx, seed=9))
    via_inputs = np.asarray(toy.posterior_coefficients(toy.toy_inputs(9, idx, PAPER.n), PAPER,
                                                       PAPER_LAMBDAS))
    np.testing.assert_allclose(trials, via_inputs, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# Monte Carlo accumulation

SMALL = toy.ToyProblem(n=20, sigma2=5.0)
SMALL_LAMBDAS = [[1.0, 0.0], [1.0, 0.5]]


def test_chunk_size_independence():
    runs = [toy.monte_carlo(SMALL, SMALL_LAMBDAS, 10_007, seed=4, chunk_size=cs, progress=False)
            for cs in (1000, 4096, 20_000)]
    assert runs[2].chunk_size == 10_007  # capped at m: a single chunk
    for other in runs[1:]:
        np.testing.assert_allclose(other.mean, runs[0].mean, rtol=0, atol=1e-13)
        np.testing.assert_allclose(other.cov, runs[0].cov, rtol=1e-11, atol=1e-15)
        np.testing.assert_allclose(other.coef_se, runs[0].coef_se, rtol=1e-11, atol=1e-15)


def test_accumulation_equals_numpy_on_stacked_trials():
    m = 6_000
    mc = toy.monte_carlo(SMALL, SMALL_LAMBDAS, m, seed=2, chunk_size=1000, progress=False)
    trials = np.asarray(toy.trial_coefficients(SMALL, SMALL_LAMBDAS, np.arange(m), seed=2))
    flat = trials.reshape(m, -1)
    np.testing.assert_allclose(mc.mean, trials.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mc.cov, np.cov(flat, rowvar=False, ddof=1), rtol=1e-10, atol=1e-16)
    np.testing.assert_allclose(mc.coef_se, trials.std(axis=0, ddof=1) / math.sqrt(m),
                               rtol=1e-10, atol=1e-16)
    # the predictor band from the coefficient covariance = SE of the per-trial predictors
    grid = np.linspace(-3, 3, 9)
    mean, se = mc.predictor(grid)
    per_trial = trials @ toy.hermite(grid, SMALL.degrees).T  # (m, L, G)
    np.testing.assert_allclose(mean, per_trial.mean(axis=0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(se, per_trial.std(axis=0, ddof=1) / math.sqrt(m), rtol=1e-9,
                               atol=1e-16)
    # paired difference between the two kernels (same data sets)
    diff = trials[:, 1] - trials[:, 0]
    np.testing.assert_allclose(mc.difference_se(1, 0), diff.std(axis=0, ddof=1) / math.sqrt(m),
                               rtol=1e-9)


def test_same_seed_same_numbers():
    a = toy.monte_carlo(SMALL, SMALL_LAMBDAS, 3_000, seed=7, chunk_size=1024, progress=False)
    b = toy.monte_carlo(SMALL, SMALL_LAMBDAS, 3_000, seed=7, chunk_size=1024, progress=False)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.cov, b.cov)
    assert a.n_devices == 1 and a.to_dict()["n_devices"] == 1


def test_problem_and_result_are_pytrees():
    # σ² is the problem's one leaf (degrees, target and n fix shapes); the Monte Carlo result
    # keeps its arrays and timings as leaves and its counts as static metadata
    assert jax.tree_util.tree_leaves(PAPER) == [400.0]
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, PAPER)
    assert (doubled.degrees, doubled.terms, doubled.n, doubled.sigma2) == ((1, 2), ((5, 1.0),),
                                                                           100, 800.0)
    mc = toy.monte_carlo(SMALL, SMALL_LAMBDAS, 3_000, seed=7, chunk_size=1024, progress=False)
    leaves, treedef = jax.tree_util.tree_flatten(mc)
    assert len(leaves) == 6  # σ², lambdas, mean, cov, compile_s, run_s
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert (back.m, back.seed, back.chunk_size, back.n_devices) == (3_000, 7, 1024, 1)
    np.testing.assert_array_equal(back.coef_se, mc.coef_se)


def test_monte_carlo_sharded_over_devices_matches_one_device():
    code = textwrap.dedent("""
        import json
        import jax
        import numpy as np
        from rgjax import toy

        assert len(jax.devices()) == 8
        prob = toy.ToyProblem(n=21, sigma2=5.0)  # odd n: a truncated Box–Muller pair
        lam = [[1.0, 0.0], [1.0, 0.5]]
        kw = dict(seed=4, chunk_size=1000, progress=False)
        runs = {"all": toy.monte_carlo(prob, lam, 10_007, **kw),
                "three": toy.monte_carlo(prob, lam, 10_007, devices=jax.devices()[5:], **kw)}
        print(json.dumps({k: {"mean": r.mean.tolist(), "cov": r.cov.tolist(), "chunk": r.chunk_size,
                              "n_devices": r.n_devices} for k, r in runs.items()}))
    """)
    out = json.loads(run_with_devices(code, n_devices=8).strip().splitlines()[-1])
    assert [out[k]["n_devices"] for k in ("all", "three")] == [8, 3]
    assert [out[k]["chunk"] for k in ("all", "three")] == [1000, 1002]  # a multiple of the count
    # both equal the single-device run in this process (same draws, same solves)
    here = toy.monte_carlo(toy.ToyProblem(n=21, sigma2=5.0), [[1.0, 0.0], [1.0, 0.5]], 10_007,
                           seed=4, chunk_size=1000, progress=False)
    assert here.n_devices == 1 and here.chunk_size == 1000
    for k in ("all", "three"):
        np.testing.assert_allclose(out[k]["mean"], here.mean, rtol=0, atol=1e-13)
        np.testing.assert_allclose(out[k]["cov"], here.cov, rtol=1e-11, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# theory


def test_standard_predictions():
    np.testing.assert_array_equal(toy.standard_prediction(PAPER, PAPER_LAMBDAS), 0.0)
    np.testing.assert_array_equal(toy.gaussian_rg_prediction(PAPER, PAPER_LAMBDAS), 0.0)
    # target inside the kernel: EK learnability nλ/(nλ + σ²), renormalised ridge for the Gaussian RG
    prob = toy.ToyProblem(target={1: 2.0, 2: -1.0, 5: 1.0}, n=50, sigma2=10.0)
    np.testing.assert_allclose(toy.standard_prediction(prob, [1.0, 0.3]),
                               [[2 * 50 / 60, -1 * 15 / 25]])
    np.testing.assert_allclose(toy.gaussian_rg_prediction(prob, [1.0, 0.3]), [[2 * 50 / 60.3]])


def test_rg_without_greater_modes_is_ek():
    # λ_> = 0: σ²(x) = σ², the reweighted regression is EK (also with a target inside the kernel)
    prob = toy.ToyProblem(target={1: 0.7, 5: 1.0}, n=40, sigma2=3.0)
    np.testing.assert_allclose(toy.rg_prediction(prob, [[2.0, 0.0]]), [[0.7 * 80 / 83]], rtol=1e-12)
    np.testing.assert_allclose(toy.rg_prediction(PAPER, PAPER_LAMBDAS)[0], 0.0, atol=1e-14)


def test_rg_first_order_formula_and_small_lambda_limit():
    n, s2 = PAPER.n, PAPER.sigma2
    first = toy.rg_first_order(PAPER, PAPER_LAMBDAS)[:, 0]
    paper_formula = -(n * 0.1 * math.sqrt(30) / s2**2) / (1 / 1.0 + n / s2)
    np.testing.assert_allclose(first, [0.0, paper_formula], rtol=1e-12)
    assert paper_formula == pytest.approx(-2.739e-4, rel=1e-3)
    errs = []
    for lam2 in (1e-1, 1e-2, 1e-3, 1e-4):
        lam = [[1.0, lam2]]
        quad = toy.rg_prediction(PAPER, lam)[0, 0]
        errs.append(abs(quad / toy.rg_first_order(PAPER, lam)[0, 0] - 1))
    assert errs[0] < 0.1 and errs[-1] < 1e-4
    assert all(b < 0.2 * a for a, b in zip(errs, errs[1:]))  # → 1 linearly in λ_2
    # quadrature converged
    np.testing.assert_allclose(toy.rg_prediction(PAPER, PAPER_LAMBDAS, order=128),
                               toy.rg_prediction(PAPER, PAPER_LAMBDAS, order=256), rtol=1e-10,
                               atol=1e-15)


def test_rg_first_order_general_targets_match_quadrature():
    # a target partly inside the kernel and two kept degrees: first order agrees to O((λ_>/σ²)²)
    prob = toy.ToyProblem(degrees=(1, 2, 3), target={1: 0.5, 3: 0.2, 5: 1.0}, n=50, sigma2=100.0)
    lam = [[1.0, 1e-3, 0.5]]
    quad = toy.rg_prediction(prob, lam, kept=(1, 3))
    first = toy.rg_first_order(prob, lam, kept=(1, 3))
    np.testing.assert_allclose(first, quad, rtol=1e-4)
    assert not np.allclose(quad, toy.gaussian_rg_prediction(prob, lam, kept=(1, 3)), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# statistics: experiment vs theories


def test_monte_carlo_agrees_with_input_dependent_rg():
    # n = 10, λ_1 = 0.25, λ_> = 1, σ² = 400: the RG effect is ≈ 12 SE at m = 10⁶, and the
    # finite-n corrections the RG omits (∝ 1/(σ²/λ_1 + n)) are ≈ 3% of it.
    prob = toy.ToyProblem(n=10, sigma2=400.0)
    lam = [[0.25, 0.0], [0.25, 1.0]]
    mc = toy.monte_carlo(prob, lam, 1_000_000, seed=0, progress=False)
    c, se = mc.mean[:, 0], mc.coef_se[:, 0]
    rg = toy.rg_prediction(prob, lam)[:, 0]
    assert abs(rg[1]) / se[1] >= 10
    assert abs(c[1] - rg[1]) < 3 * se[1]  # input-dependent RG
    assert abs(c[1]) > 6 * se[1]  # standard theory (0) rejected
    assert abs(c[0]) < 4 * se[0]  # λ_> = 0: no effect


def test_paper_setup_paired_difference_close_to_rg():
    # Common random numbers make c(λ_> = 0.1) − c(0) precise (SE ≈ 1e-5 relative to 2.4e-4): it
    # lies a few to 10% below the RG value — the RG treats the kept mode in the continuum limit and
    # misses the finite-n Gram fluctuations (relative size ~ ⟨ψ_1³ψ_2²ψ_5⟩/(√30 (σ²/λ_1 + n))).
    mc = toy.monte_carlo(PAPER, PAPER_LAMBDAS, 200_000, seed=1, progress=False)
    diff = mc.mean[1, 0] - mc.mean[0, 0]
    rg = toy.rg_prediction(PAPER, PAPER_LAMBDAS)[1, 0]
    assert mc.difference_se(1, 0)[0] < 0.05 * abs(rg)
    assert 0.8 < diff / rg < 1.02


# ----------------------------------------------------------------------------------------------
# the pipeline and its figure


def test_run_toy_writes_json_and_png(tmp_path):
    lines = []
    res = run_toy(ToyConfig(m=20_000, n=20, sigma2=50.0), tmp_path, progress=False,
                  log=lines.append)
    data = json.loads((tmp_path / "toy.json").read_text())
    assert (tmp_path / "toy.png").stat().st_size > 10_000
    assert data["config"]["m"] == 20_000 and data["seed"] == 0
    assert [r["lambda_greater"] for r in data["runs"]] == [0.0, 0.1]
    for run in data["runs"]:
        assert run["z_zero"] == pytest.approx(run["c"] / run["c_se"])
        assert len(run["predictor"]["mean"]) == len(data["grid"])
        assert run["c_standard"] == 0.0
    assert data["moments"]["psi1_psi5_psi2sq"] == pytest.approx(math.sqrt(30))
    assert {"compile_s", "monte_carlo_s", "total_s"} <= set(data["timings"])
    assert "jax" in data["versions"]
    assert any("(c−RG)/SE" in line for line in lines)
    fig = plot_toy_predictor(data)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    one = Figure().subplots()
    assert plot_toy_predictor(res, ax=one) is one.figure
    assert isinstance(plot_toy_predictor({}), Figure)  # empty results: labelled panels, no crash


# ----------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigma2": 0.0}, "sigma2"),
        ({"sigma2": -1.0}, "sigma2"),
        ({"n": 0}, "`n`"),
        ({"n": 2.5}, "`n`"),
        ({"degrees": ()}, "degrees"),
        ({"degrees": (1, 1)}, "degrees"),
        ({"degrees": (-1, 2)}, "degrees"),
        ({"degrees": (1.5,)}, "degrees"),
        ({"target": {}}, "target"),
        ({"target": {5: 0.0}}, "target"),
        ({"target": {-2: 1.0}}, "target"),
        ({"target": {5: float("nan")}}, "target"),
        ({"target": np.ones((2, 3))}, "target"),
    ],
)
def test_bad_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy.ToyProblem(**kwargs)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="lambdas"):
        toy.posterior_coefficients(np.zeros((1, 100)), PAPER, [1.0, -0.1])
    with pytest.raises(ValueError, match="lambdas"):
        toy.monte_carlo(PAPER, [1.0, 0.1, 0.2], 10, progress=False)
    with pytest.raises(ValueError, match="lambdas"):
        toy.rg_prediction(PAPER, [[1.0, float("inf")]])
    with pytest.raises(ValueError, match="`m`"):
        toy.monte_carlo(PAPER, [1.0, 0.1], 1, progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        toy.monte_carlo(PAPER, [1.0, 0.1], 10, chunk_size=0, progress=False)
    for bad in (0, len(jax.local_devices()) + 1, [], ["cpu"], jax.local_devices() * 2):
        with pytest.raises(ValueError, match="`devices`"):
            toy.monte_carlo(PAPER, [1.0, 0.1], 10, devices=bad, progress=False)
    with pytest.raises(ValueError, match="`n`"):
        toy.toy_inputs(0, [1, 2], 0)
    with pytest.raises(ValueError, match="kept"):
        toy.rg_prediction(PAPER, PAPER_LAMBDAS, kept=(3,))
    with pytest.raises(ValueError, match="lambdas_greater"):
        run_toy(ToyConfig(lambdas_greater=(0.0, -0.1), m=10), tmp_path, progress=False, log=None)
    with pytest.raises(ValueError, match="lambda_1"):
        run_toy(ToyConfig(lambda_1=-1.0, m=10), tmp_path, progress=False, log=None)
    with pytest.raises(ValueError, match="target_degree"):
        run_toy(ToyConfig(target_degree=-5, m=10), tmp_path, progress=False, log=None)
    with pytest.raises(ValueError, match="sigma2"):
        run_toy(ToyConfig(sigma2=0.0, m=10), tmp_path, progress=False, log=None)
    with pytest.raises(ValueError, match="`m`"):
        run_toy(ToyConfig(m=1), tmp_path, progress=False, log=None)
    assert not (tmp_path / "toy.json").exists()


def test_monte_carlo_resumes_from_a_checkpoint_bit_for_bit():
    prob = toy.ToyProblem(n=20, sigma2=5.0)
    lam = [[1.0, 0.0], [1.0, 0.5]]
    ref = toy.monte_carlo(prob, lam, 10_000, chunk_size=1000, progress=False)
    saved = []

    def keep_then_interrupt(c):
        saved.append(c)
        if len(saved) == 3:  # Ctrl-C after the third chunk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        toy.monte_carlo(prob, lam, 10_000, chunk_size=1000, progress=False,
                        checkpoint=keep_then_interrupt, checkpoint_every=0.0)
    assert [int(c.start) for c in saved] == [1000, 2000, 3000, 3000]  # and once on the way out
    resumed = toy.monte_carlo(prob, lam, 10_000, chunk_size=1000, progress=False,
                              resume=saved[-1])
    np.testing.assert_array_equal(resumed.mean, ref.mean)
    np.testing.assert_array_equal(resumed.cov, ref.cov)
    # a checkpoint of another chunk size is not mixed in: a warning, and a fresh start
    with pytest.warns(Warning, match="starting afresh"):
        fresh = toy.monte_carlo(prob, lam, 10_000, chunk_size=2000, progress=False,
                                resume=saved[-1])
    np.testing.assert_allclose(fresh.mean, ref.mean, rtol=1e-12)


def test_toy_job_interrupted_then_rerun_gives_the_uninterrupted_results(tmp_path, monkeypatch):
    cfg = ToyConfig(m=6000, chunk_size=1000, n=20)
    ref = run_toy(cfg, tmp_path / "ref", progress=False, plots=False, log=None)
    real = toy.monte_carlo
    calls = []

    def interrupted(*args, checkpoint=None, **kwargs):
        def stop(c):
            checkpoint(c)
            calls.append(int(c.start))
            if len(calls) == 2:
                raise KeyboardInterrupt

        return real(*args, checkpoint=stop, checkpoint_every=0.0, **kwargs)

    import rgjax.jobs.toy as toy_job

    monkeypatch.setattr(toy_job, "monte_carlo", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_toy(cfg, tmp_path / "run", progress=False, plots=False, log=None)
    monkeypatch.undo()
    lines = []
    again = run_toy(cfg, tmp_path / "run", progress=False, plots=False, log=lines.append)
    assert "resumed after 2,000 of 6,000 data sets" in lines[0]
    assert again["runs"] == ref["runs"] and again["paired"] == ref["paired"]
