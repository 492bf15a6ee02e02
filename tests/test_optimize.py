"""rgjax.optimize: optax loops over the differentiable theory (σ² optimum known in closed form and
from a fine grid of the theory), one compilation per fit, frozen parameters with any optimiser,
learning-curve fits, the `optimize` job (rgjax.jobs.optimize), its figures, and named errors for
bad inputs."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rgjax import datasets, plotting, from_eigenvalues, powerlaw, theory
from rgjax import optimize as opt
from rgjax.jobs.optimize import RESULTS_FILE, OptimizeConfig, format_table, run


@pytest.fixture(scope="module")
def synthetic():
    task = datasets.synthetic_powerlaw_task(60, n_modes=12, seed=1)
    return jnp.asarray(task.x), jnp.asarray(task.y)


# ---- σ² optimum ------------------------------------------------------------------------------


def test_fit_sigma2_finds_the_bayes_optimal_ridge():
    # target drawn from the kernel's prior (y_k² = c λ_k) plus label noise ε²: the spectral-bias
    # error is minimal at σ² = ε²/c; check the theory's grid agrees, then the optimiser.
    k = np.arange(1, 201.0)
    lam = k**-1.5 / np.sum(k**-1.5)
    c, noise, eta = 2.0, 0.1, 50.0
    spec = from_eigenvalues(lam, np.sqrt(c * lam))
    grid = np.geomspace(1e-3, 1.0, 601)
    errs = np.asarray(jax.vmap(lambda s: theory.mse_spectral_bias(spec, eta, s, noise))(grid))
    assert grid[np.argmin(errs)] == pytest.approx(noise / c, rel=0.015)

    fit = opt.fit_sigma2(spec, eta, noise=noise, sigma2=1.0, steps=200)
    assert fit.sigma2[-1] == pytest.approx(noise / c, rel=0.02)
    assert fit.final_loss < fit.initial_loss and fit.final_loss <= errs.min() * (1 + 1e-5)
    assert fit.n_traces == 1 and fit.W_std is None
    json.dumps(fit.to_dict())


def test_fit_kernel_sigma2_lands_on_the_grid_optimum_of_the_theory(synthetic):
    x, y = synthetic
    eta, noise = 20.0, 0.05
    init = opt.init_params(0, W_std=1.0, b_std=1e-3, sigma2=1e-3)

    def theory_at(log_s2):
        return opt.predicted_mse(dict(init, log_sigma2=log_s2), x, y, eta, depth=0,
                                 objective="spectral_bias", noise=noise)

    log_grid = jnp.linspace(np.log(1e-4), np.log(10.0), 801)
    errs = np.asarray(jax.jit(jax.vmap(theory_at))(log_grid))
    best = float(np.exp(log_grid[np.argmin(errs)]))
    assert 2e-4 < best < 5.0  # an interior optimum

    fit = opt.fit_kernel(x, y=y, eta=eta, objective="spectral_bias", noise=noise, depth=0,
                         init=init, trainable=("sigma2",), steps=150)
    assert fit.sigma2[-1] == pytest.approx(best, rel=0.03)
    assert fit.final_loss <= errs.min() * (1 + 1e-6) and fit.final_loss < fit.initial_loss
    # frozen hyper-parameters do not move
    assert np.all(fit.W_std == fit.W_std[0]) and np.all(fit.b_std == fit.b_std[0])
    assert fit.n_traces <= 1


def test_fit_kernel_one_compilation_and_decreasing_objective(synthetic):
    x, y = synthetic
    fit = opt.fit_kernel(x, y=y, eta=15.0, objective="rg", depth=1, steps=25,
                         init=opt.init_params(1, sigma2=1e-2))
    assert fit.n_traces <= 1  # one trace of the step for all 26 calls (0: an earlier test's)
    assert fit.loss.shape == (26,) and fit.W_std.shape == (26, 2) and fit.sigma2.shape == (26,)
    assert not fit.skipped.any()
    assert fit.final_loss < 0.99 * fit.initial_loss
    # the returned kernel is the final one and reproduces the final loss
    assert float(opt.predicted_mse(fit.params, x, y, 15.0, depth=1)) == pytest.approx(
        fit.final_loss, rel=1e-10)
    w_last = fit.kernel.layers[-1].W_std
    assert float(w_last) == pytest.approx(fit.W_std[-1, -1], rel=1e-12)
    d = fit.to_dict()
    json.dumps(d)
    assert d["n_traces"] == fit.n_traces and len(d["final"]["W_std"]) == 2


def test_fit_kernel_compiles_once_per_problem_shape(synthetic):
    # a second fit with other data, another η and other start values compiles no XLA program
    from jax import monitoring

    x, y = synthetic
    compiled = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(kwargs.get("fun_name", "?"))

    kw = dict(depth=2, steps=3, objective="spectral_bias", trainable=("W_std", "sigma2"))
    first = opt.fit_kernel(x, y=y, eta=9.0, init=opt.init_params(2, sigma2=1e-2), **kw)
    x2, y2 = np.asarray(x)[::-1] * 1.5, np.asarray(y)[::-1]  # numpy: no eager jax here
    monitoring.register_event_duration_secs_listener(listener)
    try:
        second = opt.fit_kernel(x2, y=y2, eta=13.0, steps=4,
                                init=opt.init_params(2, W_std=1.2, sigma2=1e-3),
                                **{k: v for k, v in kw.items() if k != "steps"})
    finally:
        monitoring.unregister_event_duration_listener(listener)
    assert first.n_traces == 1 and second.n_traces == 0
    assert compiled == [], compiled
    assert second.final_loss != first.final_loss  # it did run on the new problem
    # another shape is another program
    third = opt.fit_kernel(x[:-1], y=y[:-1], eta=9.0, init=opt.init_params(2, sigma2=1e-2), **kw)
    assert third.n_traces == 1


def test_frozen_parameters_stay_put_with_any_optimizer(synthetic):
    # L-BFGS uses the gradient and the loss along a line search: with frozen leaves it must see
    # (and its line search evaluate) the trainable ones only
    x, y = synthetic
    init = opt.init_params(1, sigma2=1e-2)
    for optimizer in (optax.lbfgs(), optax.adamw(0.05, weight_decay=0.1)):
        fit = opt.fit_kernel(x, y=y, eta=15.0, depth=1, steps=5, optimizer=optimizer, init=init,
                             trainable=("b_std", "sigma2"))
        assert np.all(fit.W_std == fit.W_std[0]) and not np.all(fit.b_std == fit.b_std[0])
        assert fit.final_loss < fit.initial_loss and fit.n_traces == 1  # a new optimiser object


def test_fit_results_are_pytrees(synthetic):
    x, y = synthetic
    fit = opt.fit_kernel(x, y=y, eta=15.0, depth=1, steps=2, init=opt.init_params(1, sigma2=1e-2))
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, fit)
    assert isinstance(doubled, opt.FitResult) and doubled.config == fit.config
    np.testing.assert_array_equal(doubled.loss, 2 * fit.loss)
    assert doubled.kernel.layers[-1].W_std == 2 * fit.kernel.layers[-1].W_std
    curve = opt.fit_curve(np.geomspace(5, 500, 6), np.geomspace(5, 500, 6) ** -0.5)
    leaves = jax.tree_util.tree_leaves(curve)
    assert any(np.shape(v) == (6,) for v in leaves)
    assert not any(isinstance(v, str) for v in leaves)  # model and config are static


def test_hard_threshold_fit_skips_not_applicable_steps_with_a_warning(synthetic):
    x, y = synthetic
    # beyond η_max (≈ 12.5 here) no mode is below T: the hard RG is NaN (not applicable)
    with pytest.warns(Warning, match="non-finite"):
        fit = opt.fit_kernel(x, y=y, eta=50.0, temperature=None, depth=1, steps=2,
                             init=opt.init_params(1, sigma2=1e-8))
    assert fit.skipped.all() and np.all(fit.sigma2 == fit.sigma2[0])


# ---- learning-curve fits ---------------------------------------------------------------------


def test_fit_curve_recovers_power_laws():
    etas = np.geomspace(5, 500, 12)
    pure = opt.fit_curve(etas, 2.0 * etas**-0.7)
    assert pure.params["a"] == pytest.approx(2.0, rel=1e-8)
    assert pure.params["b"] == pytest.approx(0.7, rel=1e-8)
    floored = opt.fit_curve(etas, 2.0 * etas**-0.7 + 3e-3, floor=True)
    for key, want in (("a", 2.0), ("b", 0.7), ("c", 3e-3)):
        assert floored.params[key] == pytest.approx(want, rel=1e-5), key
    np.testing.assert_allclose(floored.fitted, 2.0 * etas**-0.7 + 3e-3, rtol=1e-6)
    np.testing.assert_allclose(floored.evaluate([1000.0]), [2.0 * 1000**-0.7 + 3e-3], rtol=1e-5)
    # adam works too (any optax optimiser)
    adam = opt.fit_curve(etas, 2.0 * etas**-0.7 + 3e-3, floor=True, optimizer=optax.adam(0.05),
                         steps=400)
    assert adam.params["b"] == pytest.approx(0.7, rel=1e-3)
    assert floored.n_traces <= 1 and adam.n_traces == 1 and pure.n_traces <= 1
    json.dumps(floored.to_dict())


def test_fit_curve_recovers_the_rg_threshold():
    spec = powerlaw(300)
    etas = np.geomspace(2, 100, 10)
    data = np.asarray(theory.mse_rg(spec, jnp.asarray(etas), 1e-4, 0.35, temperature=0.05))
    fit = opt.fit_curve(etas, data, model="rg_threshold", spec=spec, sigma2=1e-4)
    assert fit.params["threshold"] == pytest.approx(0.35, abs=1e-6)
    assert fit.loss < 1e-12
    np.testing.assert_allclose(fit.evaluate(etas), data, rtol=1e-6)


# ---- the `rgjax optimize` job ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("optimize")
    mp = pytest.MonkeyPatch()
    mp.setenv("RGJAX_CACHE", str(out / "cache"))
    lines = []
    try:
        cfg = OptimizeConfig(task="mnist-0-1", eta=10, steps=3, trials=2, source="bundled",
                             pool_size=60, grid=((1.0, 2.0), (0.1, 1.0)), curve_etas=(5,))
        res = run(cfg, out, progress=False, log=lines.append)
    finally:
        mp.undo()
    return out, res, lines


def test_run_optimize_writes_json_and_figures(small_run):
    out, res, lines = small_run
    on_disk = json.loads((out / RESULTS_FILE).read_text())
    assert RESULTS_FILE == "optimize.json"
    assert on_disk["summary"] == res["summary"]
    for key in ("config", "versions", "task", "fit", "etas", "initial", "final", "grid", "summary",
                "timings"):
        assert key in res, key
    assert res["etas"] == [5, 10] and res["task"]["n_pool"] == 60
    assert res["fit"]["n_traces"] == 1 and len(res["fit"]["loss"]) == 4
    for name in ("initial", "final"):
        assert set(res[name]["predicted"]) == {"objective", "rg", "rg_dof", "spectral_bias"}
        assert len(res[name]["empirical"]["mse_pool"]) == 2
    g = res["grid"]
    assert np.shape(g["empirical"]) == (2, 2) == np.shape(g["predicted"])
    assert g["best_empirical"]["empirical"] == pytest.approx(np.min(g["empirical"]))
    assert set(res["summary"]) == {"initial", "gradient", "grid_best_predicted",
                                   "grid_best_empirical", "paired_differences"}
    paired = res["summary"]["paired_differences"]["gradient_minus_initial"]
    diff = np.subtract(res["summary"]["gradient"]["empirical_trials"],
                       res["summary"]["initial"]["empirical_trials"])
    assert paired["mean"] == pytest.approx(diff.mean())
    for f in ("optimize_loss.png", "optimize_mse.png", "optimize_grid.png"):
        assert (out / f).stat().st_size > 10_000
    assert any("gradient optimum" in line for line in lines)
    assert format_table(res) in lines
    # the config block records every setting of the run (its keys are part of the file format)
    assert res["config"] == {
        "task": "mnist-0-1", "source": "bundled", "pool_size": 60, "eta": 10, "objective": "rg",
        "steps": 3, "learning_rate": 0.05, "optimizer": "adam", "trials": 2, "seed": 0,
        "threshold": 0.5, "temperature": 0.05, "depth": 2, "activation": "relu",
        "W_std": pytest.approx(np.sqrt(2.0)), "b_std": 0.1, "sigma2": 1e-8, "per_layer": True,
        "grid": [[1.0, 2.0], [0.1, 1.0]], "path": "resolvent"}


def test_figures_tolerate_missing_parts(small_run, tmp_path):
    _, res, _ = small_run
    bare = dict(res, grid=None, initial={}, fit={"loss": [None, 1.0]})
    written = plotting.save_optimize_figures(bare, tmp_path)
    assert set(written) == {"optimize_loss", "optimize_mse"}
    fig = plotting.plot_optimize_grid(bare)
    assert fig.axes


# ---- named errors ----------------------------------------------------------------------------


def _xy():
    return np.ones((5, 2)) * np.arange(5)[:, None], np.array([1.0, -1, 1, -1, 1])


@pytest.mark.parametrize("call, err, needle", [
    (lambda: opt.predicted_mse(opt.init_params(), *_xy(), 0.0), ValueError, "eta"),
    (lambda: opt.predicted_mse(opt.init_params(), *_xy(), 3.0, objective="ek"), ValueError,
     "objective"),
    (lambda: opt.predicted_mse(opt.init_params(), *_xy(), 3.0, path="svd"), ValueError, "path"),
    (lambda: opt.predicted_mse(opt.init_params(), *_xy(), 3.0, temperature=0.0), ValueError,
     "temperature"),
    (lambda: opt.predicted_mse(opt.init_params(), *_xy(), 3.0, noise=0.1), ValueError, "noise"),
    (lambda: opt.predicted_mse({"log_W_std": 0.0}, *_xy(), 3.0), ValueError, "params"),
    (lambda: opt.predicted_mse(opt.init_params(3), *_xy(), 3.0), ValueError, "shape"),
    (lambda: opt.predicted_mse(opt.init_params(), np.ones(5), np.ones(5), 3.0), ValueError, "x"),
    (lambda: opt.fit_kernel(_xy()[0], y=_xy()[1], eta=-1.0), ValueError, "eta"),
    (lambda: opt.fit_kernel(_xy()[0], y=_xy()[1], eta=3.0, steps=0), ValueError, "steps"),
    (lambda: opt.fit_kernel(_xy()[0], y=_xy()[1], eta=3.0, steps=2.5), ValueError, "steps"),
    (lambda: opt.fit_kernel(_xy()[0], y=_xy()[1], eta=3.0, objective="mse"), ValueError,
     "objective"),
    (lambda: opt.fit_kernel(_xy()[0], eta=3.0), ValueError, "`y` is required"),
    (lambda: opt.fit_kernel(_xy()[0], y=_xy()[1], eta=3.0, trainable=("alpha",)), ValueError,
     "trainable"),
    (lambda: opt.fit_kernel(_xy()[0], y=_xy()[1], eta=3.0, threshold=1.0), ValueError, "threshold"),
    (lambda: opt.fit_sigma2(powerlaw(10), 0.0), ValueError, "eta"),
    (lambda: opt.fit_sigma2("spec", 3.0), TypeError, "Spectrum"),
    (lambda: opt.init_params(2, W_std=-1.0), ValueError, "W_std"),
    (lambda: opt.init_params(2, b_std=[0.1, 0.2]), ValueError, "b_std"),
    (lambda: opt.fit_curve([1, 2, 3], [1, 0.5, 0.2], model="exp"), ValueError, "model"),
    (lambda: opt.fit_curve([1, 2, 3], [1, 0.5]), ValueError, "equal length"),
    (lambda: opt.fit_curve([1, 2, 3], [1, 0.0, 0.2]), ValueError, "mse"),
    (lambda: opt.fit_curve([1, 2, 3], [1, 0.5, 0.2], model="rg_threshold"), ValueError, "spec"),
    (lambda: opt.fit_curve([1, 2, 3], [1, 0.5, 0.2], steps=0), ValueError, "steps"),
    (lambda: run(OptimizeConfig(grid=((1.0,), ())), "/nonexistent"), ValueError, "grid"),
    (lambda: run(OptimizeConfig(objective="ek"), "/nonexistent"), ValueError, "objective"),
    (lambda: run(OptimizeConfig(trials=1), "/nonexistent"), ValueError, "trials"),
])
def test_bad_inputs_raise_named_errors(call, err, needle):
    with pytest.raises(err, match=needle):
        call()


def test_run_optimize_rejects_eta_beyond_the_pool(tmp_path):
    task = datasets.synthetic_powerlaw_task(20, n_modes=5)
    with pytest.raises(ValueError, match="eta"):
        run(OptimizeConfig(eta=20), tmp_path, task=task, progress=False, log=None)


def test_config_fields_carry_their_help():
    for f in dataclasses.fields(OptimizeConfig):
        assert f.metadata.get("help"), f.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        OptimizeConfig().eta = 5  # type: ignore[misc]
