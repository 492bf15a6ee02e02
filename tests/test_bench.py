"""``rgjax bench``: one quick run on the CPU (shared by the tests), its JSON, table and figure,
``rgjax plot`` redrawing it, and one-line errors for bad options."""

import json
import math

import pytest

from rgjax import cli
from rgjax.jobs import bench
from rgjax.plotting import plot_bench

#: Comparisons that are exact up to round-off (the others: top-k's solver tolerance, the toy's
#: independent random numbers, the pipeline without a reference).
EXACT = {"gram", "eigh", "theory", "empirical"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``rgjax bench --quick`` run through the command line: (folder, parsed bench.json)."""
    out = tmp_path_factory.mktemp("bench")
    assert cli.main(["bench", "--quick", "--quiet", "--out", str(out)]) == 0
    return out, json.loads((out / bench.RESULTS_FILE).read_text())


def test_quick_run_writes_every_stage(quick):
    out, res = quick
    assert res["kind"] == "bench" and res["complete"] is True
    assert res["resolved"]["ladder"] == "quick" and res["resolved"]["platform"] == "cpu"
    assert res["compile_cache"] == {"requested": False, "enabled": False}
    assert res["device"]["devices"][0]["platform"] == "cpu"
    assert {"rgjax", "jax", "numpy", "scipy", "sklearn"} <= set(res["versions"])
    stages = {r["stage"] for r in res["records"]}
    assert stages == set(bench.STAGES)
    cases = {r["case"] for r in res["records"] if r["stage"] == "theory"}
    assert cases == {"ek", "rg", "rg_dof", "spectral_bias"}
    cases = {r["case"] for r in res["records"] if r["stage"] == "empirical"}
    assert cases == {"independent", "nested"}
    keys = {"stage", "case", "n", "params", "cold_s", "compile_s", "warm_s", "repeats",
            "baseline", "baseline_s", "ratio", "accuracy", "accuracy_ref", "accuracy_kind",
            "peak_rss_mb", "device_peak_mb", "note", "error"}
    for r in res["records"]:
        assert set(r) == keys, r["stage"]
        assert r["error"] is None, (r["stage"], r["error"])
        assert r["cold_s"] >= r["warm_s"] > 0, r
        assert 0 <= r["compile_s"] <= r["cold_s"], r
        assert r["peak_rss_mb"] > 0 and r["device_peak_mb"] is None  # the CPU reports no stats
        if r["baseline_s"] is not None:
            assert math.isclose(r["ratio"], r["baseline_s"] / r["warm_s"])


def test_accuracies_against_the_baselines(quick):
    _, res = quick
    for r in res["records"]:
        if r["stage"] in EXACT:
            assert r["baseline"] and r["accuracy"] < 1e-8, r
        elif r["stage"] == "topk":
            assert r["accuracy"] < 1e-6, r
        elif r["stage"] == "toy":  # independent random numbers: a z-score
            assert r["accuracy_kind"] == "z" and r["accuracy"] < 5, r
        else:
            assert r["accuracy"] is None and r["baseline"] is None


def test_table_figure_and_plot_redraw(quick, capsys):
    out, res = quick
    md = (out / bench.TABLE_FILE).read_text()
    table = bench.format_table(res)
    assert table in md and table.splitlines()[0].startswith("| stage | size | cold s |")
    assert len(table.splitlines()) == 2 + len(res["records"])
    png = out / "bench.png"
    assert png.stat().st_size > 10_000
    png.unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert png.is_file() and str(png) in capsys.readouterr().out
    plot_bench({"records": [{"stage": "gram", "n": 10, "error": "MemoryError: no"}]})


def test_run_with_a_failing_stage_records_the_error_and_goes_on(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(bench, "_eigh_stage", fail)
    res = bench.run(bench.BenchConfig(quick=True, sizes=(64,), stages=("gram", "eigh")),
                    tmp_path, progress=False, plots=False, log=None)
    eigh = [r for r in res["records"] if r["stage"] == "eigh"]
    assert [r["error"] for r in eigh] == ["MemoryError: out of memory"]
    assert [r["n"] for r in res["records"] if r["stage"] == "gram"] == [64]
    assert "failed: MemoryError" in (tmp_path / bench.TABLE_FILE).read_text()


def test_ladders_and_sizes():
    cfg = bench.BenchConfig()
    assert bench.ladder(cfg, "cpu") == bench.LADDERS["cpu"]
    assert bench.ladder(cfg, "gpu")["eigh"] == (4000, 8000, 16_000, 20_000)
    assert 50_000 in bench.ladder(cfg, "gpu")["topk"]
    sized = bench.ladder(bench.BenchConfig(sizes=(300, 100), stages=("toy", "eigh")), "cpu")
    assert sized == {"toy": bench.LADDERS["cpu"]["toy"], "eigh": (100, 300)}
    assert bench.top_k(cfg, 50_000) == 256 and bench.top_k(cfg, 200) == 12


@pytest.mark.parametrize("argv, text", [
    (["--sizes", "0"], "`sizes`"),
    (["--stages", "nosuch"], "'nosuch'"),
    (["--repeats", "0"], "`repeats`"),
    (["--k", "0"], "`k`"),
])
def test_bad_options_are_one_clear_error(argv, text, tmp_path, capsys):
    assert cli.main(["bench", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rgjax: error:") and text in err and "\n" not in err
    assert not (tmp_path / "x").exists()
