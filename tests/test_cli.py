"""The command line: help with examples everywhere, `rgjax doctor`, one-line user errors."""

import argparse

import pytest

from rgjax import cli


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


def test_user_errors_are_one_line_with_exit_status_2(capsys):
    assert cli.main(["curve", "--task", "mnist-0-7x", "--no-plots", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rgjax: error:") and "\n" not in err and "--debug" in err


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError):
        cli.main(["--debug", "curve", "--task", "mnist-0-7x", "--no-plots", "--quiet"])
