"""The `rgjax curve` main job end to end, its resumption, CLI errors, and theory vs experiment on
the synthetic power-law task (where the exact answer is known)."""

import json

import numpy as np
import pytest

from rgjax import cli
from rgjax.experiment import CurveConfig, default_etas, fidelity, loglog_slope, run_curve

FIGURES = ("learning_curves.png", "threshold_sweep.png", "ridge_flow.png", "spectrum.png")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "cache"))


def test_fidelity_and_slope_helpers():
    etas = np.array([10, 20, 40, 80])
    emp = 3.0 * etas**-0.7
    assert loglog_slope(etas, emp) == pytest.approx(-0.7)
    assert fidelity(emp * np.e, emp) == pytest.approx(1.0)
    assert fidelity(np.array([np.nan, 1, 1, 1]), np.ones(4)) == 0.0
    assert np.isnan(loglog_slope(etas, np.full(4, np.nan)))
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
    from rgjax import empirical

    calls = []
    real = empirical.learning_curve

    def interrupted(*args, **kwargs):
        def stop_after_two(eta, record):
            calls.append(eta)
            if len(calls) == 2:
                raise KeyboardInterrupt
        return real(*args, **kwargs, callback=stop_after_two)

    monkeypatch.setattr(empirical, "learning_curve", interrupted)
    cfg = CurveConfig(task="mnist-0-1", source="bundled", pool_size=120, etas=(4, 8, 16, 32),
                      trials=2)
    with pytest.raises(KeyboardInterrupt):
        run_curve(cfg, tmp_path, progress=False, plots=False, log=lambda *_: None)
    assert len((tmp_path / "empirical.jsonl").read_text().splitlines()) == 2
    monkeypatch.setattr(empirical, "learning_curve", real)
    calls.clear()
    counted = []
    monkeypatch.setattr(empirical, "learning_curve",
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
                      trials=30, seed=1)
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


def test_gaussianity_cli(tmp_path, capsys):
    out = tmp_path / "g"
    argv = ["gaussianity", "--task", "mnist-0-1", "--source", "bundled", "--pool-size", "120",
            "--points", "8", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    res = json.loads((out / "gaussianity.json").read_text())
    assert "crossover" in res
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["gaussianity_pair.png", "gaussianity_sweep.png", "gaussianity_tails.png"]
    for p in out.glob("*.png"):
        p.unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 3
    assert cli.main(argv[:-3] + ["--modes-pair", "1,2,3", "--out", str(out)]) == 2
    assert "--modes-pair" in capsys.readouterr().err


def test_toy_cli(tmp_path):
    out = tmp_path / "toy"
    assert cli.main(["toy", "--m", "4000", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "toy.json").read_text())
    assert (out / "toy.png").stat().st_size > 10_000
    (out / "toy.png").unlink()
    assert cli.main(["plot", str(out)]) == 0 and (out / "toy.png").exists()
    assert res and cli.main(["toy", "--m", "1", "--out", str(out)]) == 2


def test_demo_and_help(capsys):
    assert cli.main(["demo", "--pool-size", "120"]) == 0
    out = capsys.readouterr().out
    assert "RG flow of the ridge" in out and "spectral bias" in out
    assert cli.main([]) == 0
    assert "curve" in capsys.readouterr().out


def test_optimize_cli(tmp_path):
    out = tmp_path / "opt"
    argv = ["optimize", "--task", "mnist-0-1", "--source", "bundled", "--pool-size", "80",
            "--eta", "20", "--steps", "3", "--trials", "2", "--no-grid", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    assert (out / "optimize.json").exists()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "optimize_loss.png" in pngs and "optimize_mse.png" in pngs
    assert cli.main(argv[:7] + ["--eta", "0", "--out", str(out)]) == 2
