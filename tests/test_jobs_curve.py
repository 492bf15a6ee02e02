"""The `rgjax curve` main job end to end, its resumption, CLI errors, the shared pool pipeline,
the deprecated `rgjax.experiment` alias, and theory vs experiment on the synthetic power-law task
(where the exact answer is known)."""

import dataclasses
import importlib
import json
import math

import numpy as np
import pytest

from rgjax import cli
from rgjax.jobs import _pipeline, curve as curve_job
from rgjax.jobs._pipeline import PoolConfig, build_pool, default_etas, kernel_for, task_summary
from rgjax.jobs.curve import CurveConfig, format_table
from rgjax.jobs.curve import run as run_curve
from rgjax.kernels import Dense
from rgjax.metrics import fidelity, loglog_slope

FIGURES = ("learning_curves.png", "threshold_sweep.png", "ridge_flow.png", "spectrum.png")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "cache"))


def test_default_etas():
    e = default_etas(1000)
    assert e[0] == 5 and e[-1] == 500 and np.all(np.diff(e) > 0)


def test_curve_cli_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["curve", "--task", "mnist-8-9", "--source", "bundled", "--pool-size", "160",
            "--etas", "4,8,16,40", "--trials", "3", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "mean |log(theory/empirical)|" in printed and "results:" in printed
    for f in FIGURES:
        assert (out / f).stat().st_size > 10_000
    res = json.loads((out / "results.json").read_text())
    for key in ("config", "versions", "seed", "task", "spectrum", "etas", "empirical", "theory",
                "ridge_flow", "fidelity", "slopes", "timings"):
        assert key in res, key
    assert res["task"]["n_pool"] == 160 and res["etas"] == [4, 8, 16, 40]
    assert set(res["theory"]["rg"]) == {"0.3", "0.5", "0.7"} == set(res["theory"]["rg_dof"])
    for name in ("ek", "spectral_bias"):
        assert len(res["theory"][name]) == 4
    for entry in res["theory"]["rg"].values():
        assert set(entry) == {"mse", "kappa", "sigma2_eff", "applicable", "eta_max"}
        # NaN is stored as null, exactly where the RG is not applicable
        assert [m is None for m in entry["mse"]] == [not a for a in entry["applicable"]]
    assert set(res["fidelity"]) == {"ek", "rg", "rg_dof", "spectral_bias", "rg_reweighted"}
    assert len(res["theory"]["rg_reweighted"]["0.5"]["mse"]) == 4 and "functional_flow" in res
    assert len(res["empirical"]["mse_pool"]) == 4 and len(res["empirical"]["mse_pool_se"]) == 4
    assert res["config"]["W_std"] == pytest.approx(2**0.5) and res["config"]["sigma2"] == 1e-8
    assert res["spectrum"]["n_modes"] == 160
    # the EK is absurd at σ² = 1e-8 (Fig. 1's contrast), the RG is not
    assert res["fidelity"]["ek"] > 5 > res["fidelity"]["rg"]

    # rerun: the empirical η are loaded from empirical.jsonl, not recomputed
    lines = (out / "empirical.jsonl").read_text().splitlines()
    assert len(lines) == 4
    stamp = [json.loads(line)["finished"] for line in lines]
    assert cli.main(argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert [json.loads(line)["finished"] for line in (out / "empirical.jsonl").read_text().splitlines()] == stamp
    assert again["empirical"]["mse_pool"] == res["empirical"]["mse_pool"]

    # figures can be redrawn from the JSON alone
    for f in FIGURES:
        (out / f).unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert all((out / f).exists() for f in FIGURES)


def test_interrupted_run_keeps_finished_etas(tmp_path, monkeypatch):
    calls = []
    real = curve_job.learning_curve

    def interrupted(*args, **kwargs):
        def stop_after_two(eta, record):
            calls.append(eta)
            if len(calls) == 2:
                raise KeyboardInterrupt
        return real(*args, **kwargs, callback=stop_after_two)

    monkeypatch.setattr(curve_job, "learning_curve", interrupted)
    cfg = CurveConfig(task="mnist-0-1", source="bundled", pool_size=120, etas=(4, 8, 16, 32),
                      trials=2)
    with pytest.raises(KeyboardInterrupt):
        run_curve(cfg, tmp_path, progress=False, plots=False, log=lambda *_: None)
    assert len((tmp_path / "empirical.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(curve_job, "learning_curve", real)
    calls.clear()
    counted = []
    monkeypatch.setattr(curve_job, "learning_curve",
                        lambda *a, **k: real(*a, **k, callback=lambda e, r: counted.append(e)))
    res = run_curve(cfg, tmp_path, progress=False, plots=False, log=lambda *_: None)
    assert counted == [16, 32]  # only the missing η were computed
    assert all(v is not None for v in res["empirical"]["mse_pool"])


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["curve", "--task", "mnist-3-3", "--source", "bundled"], "task"),
        (["curve", "--task", "cifar10-ship-truck", "--source", "bundled"], "rgjax[datasets]"),
        (["curve", "--task", "mnist-0-1", "--source", "bundled", "--threshold", "1.5"], "threshold"),
        (["curve", "--task", "mnist-0-1", "--source", "bundled", "--sigma2", "0"], "sigma2"),
        (["curve", "--task", "mnist-0-1", "--source", "bundled", "--etas", "5,2000"], "eta"),
        (["plot", "/nonexistent/dir"], "results.json"),
    ],
)
def test_cli_user_errors_are_one_line(argv, needle, capsys, tmp_path):
    if argv[0] == "curve":
        argv = argv + ["--out", str(tmp_path / "x"), "--quiet", "--no-plots"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and err[-1].startswith("rgjax: error:") and needle in err[-1]


def test_synthetic_powerlaw_spectral_bias_within_10_percent(tmp_path):
    """Gaussian features, linear kernel: the spectral-bias theory is exact up to finite-size terms."""
    cfg = CurveConfig(task="synthetic-powerlaw", pool_size=800, n_modes=2000, etas=(20, 50, 100, 200),
                      trials=40, seed=1)
    res = run_curve(cfg, tmp_path, progress=False, plots=False, log=lambda *_: None)
    emp = np.array(res["empirical"]["mse_pool"])
    se = np.array(res["empirical"]["mse_pool_se"])
    sb = np.array(res["theory"]["spectral_bias"])
    assert np.all(se / emp < 0.04)
    assert np.all(np.abs(sb / emp - 1) < 0.10), sb / emp
    # the held-out points are fresh draws from the population, so the spectral bias of the exact
    # population spectrum (from the generator, not the pool) predicts the held-out error
    pop = np.array(res["population_theory"]["spectral_bias"])
    held = np.array(res["empirical"]["mse_heldout"])
    assert np.all(np.abs(pop / held - 1) < 0.10), pop / held


# ------------------------------------------------------------------------------------------------
# the config, the shared pipeline and the deprecated alias

#: The keys of results.json's "config" block (a results file is read back by these names).
CONFIG_KEYS = {"task", "source", "pool_size", "split", "download", "data_dir", "activation", "depth",
               "W_std", "b_std", "sigma2", "thresholds", "threshold", "etas", "n_etas", "trials",
               "nested", "seed", "block_size", "eigs", "n_modes", "alpha", "beta"}


def test_config_is_one_flat_dict_with_the_paper_defaults():
    cfg = dataclasses.asdict(CurveConfig())
    assert set(cfg) == CONFIG_KEYS
    assert cfg["W_std"] == math.sqrt(2.0) and cfg["b_std"] == 0.1 and cfg["depth"] == 2
    assert cfg["thresholds"] == (0.3, 0.5, 0.7) and cfg["threshold"] == 0.5
    assert cfg["etas"] is None and cfg["n_etas"] == 12 and cfg["trials"] == 20
    assert cfg["nested"] is True
    assert isinstance(CurveConfig(), PoolConfig)
    assert CurveConfig(threshold=0.4).thresholds == (0.3, 0.4, 0.5, 0.7)
    for bad, match in ((dict(trials=1), "trials"), (dict(depth=-1), "depth"),
                       (dict(eigs=0), "eigs"), (dict(thresholds=(0.5, 1.0)), "threshold"),
                       (dict(sigma2=float("inf")), "sigma2")):
        with pytest.raises(ValueError, match=match):
            CurveConfig(**bad)


def test_build_pool_loads_checks_then_builds_the_kernel(monkeypatch):
    lines = []
    cfg = PoolConfig(task="mnist-0-1", source="bundled", pool_size=40)
    pool = build_pool(cfg, progress=False, log=lines.append)
    assert pool.K.shape == (40, 40) and pool.spec.n_modes == 40 and not pool.spec.is_truncated
    assert set(pool.timings) == {"load_task", "gram", "eigh"}
    assert lines[0].startswith("task mnist-0-1: N = 40") and "dense" in lines[1]
    summary = task_summary(pool.task)
    assert summary["n_pool"] == 40 and summary["kernel"] == "nngp" and summary["classes"]
    top = build_pool(cfg, eigs=8, progress=False, log=lambda s: None)
    assert top.spec.is_truncated and top.spec.n_modes == 8
    np.testing.assert_allclose(top.spec.eigenvalues, pool.spec.eigenvalues[:8], rtol=1e-6)

    # `check` sees the task before the kernel is built; raising stops the pipeline there
    def no_gram(*args, **kwargs):
        raise AssertionError("the Gram matrix was built before the check")

    monkeypatch.setattr(_pipeline, "gram", no_gram)

    def reject(task):
        raise ValueError(f"N = {task.n_pool} is too small")

    with pytest.raises(ValueError, match="N = 40"):
        build_pool(cfg, check=reject, progress=False, log=lambda s: None)


def test_synthetic_task_gets_the_linear_kernel():
    pool = build_pool(PoolConfig(task="synthetic-powerlaw", pool_size=30, n_modes=50),
                      progress=False, log=lambda s: None)
    assert isinstance(kernel_for(pool.task, PoolConfig()), Dense)
    assert task_summary(pool.task)["kernel"] == "linear"
    x = np.asarray(pool.task.x)
    np.testing.assert_allclose(pool.K, x @ x.T, rtol=1e-10, atol=1e-12)


def test_format_table_reads_the_json():
    res = {"config": {"threshold": 0.5, "sigma2": 1e-8},
           "etas": [5, 10],
           "empirical": {"trials": 3, "mse_pool": [0.5, 0.25], "mse_pool_se": [0.1, None]},
           "theory": {"rg": {"0.5": {"mse": [0.4, None]}}, "rg_dof": {"0.5": {"mse": [0.45, 0.3]}},
                      "spectral_bias": [0.5, 0.2], "ek": [1e-9, 1e-10]},
           "fidelity": {"rg": 0.2, "rg_dof": 0.1, "spectral_bias": None, "ek": 20.0},
           "slopes": {"empirical": -1.0, "rg": None}}
    table = format_table(res)
    assert "RG (paper)" in table and "n/a" in table and "3 trials per eta" in table
    assert "mean |log(theory/empirical)|" in table and "log-log slope: empirical -1" in table


def test_experiment_alias_warns_and_still_runs(tmp_path):
    with pytest.warns(DeprecationWarning, match="rgjax.jobs.curve"):
        import rgjax.experiment as experiment

        experiment = importlib.reload(experiment)
    assert experiment.run_curve is run_curve and experiment.CurveConfig is CurveConfig
    assert experiment.fidelity is fidelity and experiment.loglog_slope is loglog_slope
    cfg = experiment.CurveConfig(task="mnist-0-1", source="bundled", pool_size=40, etas=(4, 8),
                                 trials=2)
    res = experiment.run_curve(cfg, tmp_path, progress=False, plots=False, log=lambda *_: None)
    assert res["etas"] == [4, 8] and (tmp_path / curve_job.RESULTS_FILE).exists()
