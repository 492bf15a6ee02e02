"""The command line: help with examples everywhere, `rgjax doctor`, one-line user errors."""

import argparse
import dataclasses
import json
import math

import pytest

from rgjax import cli
from rgjax.jobs.curve import CurveConfig
from rgjax.jobs.gaussianity import GaussianityConfig
from rgjax.jobs.toy import ToyConfig


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "cache"))


def _subparsers():
    parser = cli._parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_every_subcommand_help_has_an_example():
    parser, subs = _subparsers()
    assert "rgjax curve" in parser.format_help()
    assert set(subs) >= {"curve", "gaussianity", "toy", "optimize", "plot", "demo", "doctor"}
    for name, sub in subs.items():
        text = sub.format_help()
        assert "example" in text and f"rgjax {name}" in text, name


def test_doctor_reports_devices_x64_extras_data_and_cache(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "cache"))
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    for label in ("jax", "device", "float64", "mlxtend", "tensorflow_datasets", "bundled data"):
        assert label in out
    assert "float64  on" in out  # the CLI turns x64 on before anything else
    assert str(tmp_path / "cache") in out and "not created yet" in out


def test_no_compile_cache_before_or_after_the_subcommand():
    parser = cli._parser()
    assert parser.parse_args(["curve"]).no_compile_cache is False
    assert parser.parse_args(["--no-compile-cache", "curve"]).no_compile_cache is True
    for name in cli.CACHED:
        assert parser.parse_args([name, "--no-compile-cache"]).no_compile_cache is True, name
        assert parser.parse_args([name]).no_compile_cache is False, name
    assert parser.parse_args(["doctor"]).no_compile_cache is False
    assert "--no-compile-cache" in parser.format_help()


def test_user_errors_are_one_line_with_exit_status_2(capsys):
    assert cli.main(["curve", "--task", "mnist-0-7x", "--no-plots", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rgjax: error:") and "\n" not in err and "--debug" in err


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError):
        cli.main(["--debug", "curve", "--task", "mnist-0-7x", "--no-plots", "--quiet"])


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


# ------------------------------------------------------------------------------------------------
# the job options come from the job configs


def _options(sub):
    return {a.dest: a for a in sub._actions if a.option_strings}


def test_job_options_are_the_config_fields_with_their_defaults():
    _, subs = _subparsers()
    for name, job in cli._jobs().items():
        opts = _options(subs[name])
        for f in dataclasses.fields(job.config):
            if "help" not in f.metadata:
                continue
            assert f.name in opts, (name, f.name)
            action, default = opts[f.name], cli._default(f)
            if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction
                          | argparse._StoreConstAction):
                assert action.default == default, (name, f.name)
            else:
                assert action.default == default and f.metadata["help"] in action.help, (
                    name, f.name)
        assert {"out", "no_plots", "quiet"} <= set(opts)


def test_todays_flag_names_are_kept():
    _, subs = _subparsers()
    flags = {name: {s for a in sub._actions for s in a.option_strings} for name, sub in subs.items()}
    assert {"--task", "--source", "--download", "--data-dir", "--split", "--pool-size",
            "--activation", "--depth", "--W-std", "--b-std", "--seed", "--sigma2", "--thresholds",
            "--threshold", "--etas", "--trials", "--eigs", "--n-modes", "--alpha", "--beta",
            "--out", "--no-plots", "--quiet"} <= flags["curve"]
    assert {"--modes-pair", "--high-modes", "--points", "--W-std", "--out"} <= flags["gaussianity"]
    assert {"--lambdas-greater", "--lambda-1", "--target-degree", "--n", "--sigma2", "--m",
            "--seed", "--out", "--quiet"} <= flags["toy"]
    assert {"--task", "--source", "--pool-size", "--eta", "--objective", "--steps", "--trials",
            "--no-grid", "--shared", "--seed", "--out", "--quiet"} <= flags["optimize"]


def test_parsed_options_build_the_configs():
    parser = cli._parser()
    assert cli._config(CurveConfig, parser.parse_args(["curve"])) == CurveConfig()
    assert cli._config(GaussianityConfig, parser.parse_args(["gaussianity"])) == GaussianityConfig()
    assert cli._config(ToyConfig, parser.parse_args(["toy"])) == ToyConfig()
    args = parser.parse_args(["curve", "--W-std", "1.5", "--thresholds", "0.2,0.6", "--etas",
                              "5,10", "--download", "--eigs", "50"])
    cfg = cli._config(CurveConfig, args)
    assert (cfg.W_std, cfg.thresholds, cfg.etas, cfg.download, cfg.eigs) == (
        1.5, (0.2, 0.5, 0.6), (5, 10), True, 50)
    for bad in ("", "5.5,10.7", "5,x"):  # an empty list is not "the default"; 5.5 is no count
        with pytest.raises(SystemExit):
            parser.parse_args(["curve", "--etas", bad])
    g = cli._config(GaussianityConfig, parser.parse_args(["gaussianity", "--points", "9",
                                                          "--high-modes", "7,8"]))
    assert (g.n_points, g.high_modes) == (9, (7, 8))
    t = cli._config(ToyConfig, parser.parse_args(["toy", "--lambdas-greater", "0,0.2,0.4"]))
    assert t.lambdas_greater == (0.0, 0.2, 0.4) and t.m == 5_000_000
    opt = cli._jobs()["optimize"].config
    o = cli._config(opt, parser.parse_args(["optimize", "--no-grid", "--shared"]))
    assert (o.grid, o.per_layer) == (False, False)
    o = cli._config(opt, parser.parse_args(["optimize"]))
    assert o == opt() and o.per_layer is True
    assert math.isclose(CurveConfig().W_std, math.sqrt(2.0))
    with pytest.raises(SystemExit):
        parser.parse_args(["curve", "--source", "internet"])
    with pytest.raises(SystemExit):
        parser.parse_args(["curve", "--etas", "5,x"])
