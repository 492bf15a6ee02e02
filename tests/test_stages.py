"""Finished stages kept in a results folder (rgjax.jobs._stages): exact round trips, fingerprints,
checksums, and a rerun of `rgjax curve` that recomputes nothing."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

import rgjax
from rgjax.jobs import _pipeline, _stages
from rgjax.jobs import curve as curve_job
from rgjax.jobs._stages import Stages


def _equal_trees(a, b):
    la, ta = _leaves(a)
    lb, tb = _leaves(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _leaves(x):
    if hasattr(x, "__dataclass_fields__"):
        out, kinds = [], [type(x).__name__]
        for name in x.__dataclass_fields__:
            leaves, k = _leaves(getattr(x, name))
            out += leaves
            kinds += [name, k]
        return out, kinds
    if isinstance(x, dict):
        out, kinds = [], ["dict"]
        for key, v in x.items():
            leaves, k = _leaves(v)
            out += leaves
            kinds += [key, k]
        return out, kinds
    if isinstance(x, (list, tuple)):
        out, kinds = [], [type(x).__name__]
        for v in x:
            leaves, k = _leaves(v)
            out += leaves
            kinds.append(k)
        return out, kinds
    return [x], "leaf"


@pytest.fixture(scope="module")
def spectra():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5))
    y = np.tanh(x[:, 0])
    K = np.asarray(rgjax.gram(rgjax.fc(2, "relu"), x, progress=False))
    return rgjax.from_gram(K, y), rgjax.from_gram(K, y, 10, method="topk")


def test_values_round_trip_exactly(tmp_path, spectra):
    full, top = spectra
    value = {"spec": full, "top": top, "curves": {"0.5": {"mse": np.arange(3.0),
                                                          "eta_max": math.nan}},
             "etas": (1, 2, 3), "flag": True, "name": "x", "none": None, "inf": -math.inf}
    stages = Stages(tmp_path, log=lambda _: None)
    calls = []
    got = stages.run("s", {"a": 1}, lambda: calls.append(1) or value)
    again = stages.run("s", {"a": 1}, lambda: calls.append(1) or value)
    assert calls == [1]  # the second run loaded the kept value
    _equal_trees(got, again)
    _equal_trees(value, again)
    assert again["curves"]["0.5"]["eta_max"] != again["curves"]["0.5"]["eta_max"]  # NaN kept
    # the loaded spectra work like the originals
    eta = np.array([3.0, 20.0])
    for orig, back in ((full, again["spec"]), (top, again["top"])):
        np.testing.assert_array_equal(rgjax.mse_spectral_bias(back, eta, 1e-6),
                                      rgjax.mse_spectral_bias(orig, eta, 1e-6))
    assert again["top"].tail.steps == top.tail.steps


def test_other_fingerprint_recomputes_and_replaces(tmp_path):
    lines = []
    stages = Stages(tmp_path, log=lines.append)
    assert stages.run("s", {"sigma2": 1e-8}, lambda: np.ones(2))[0] == 1
    assert stages.run("s", {"sigma2": 1e-6}, lambda: np.zeros(2))[0] == 0
    assert any("other options" in line for line in lines)
    assert stages.run("s", {"sigma2": 1e-6}, lambda: np.full(2, 7.0))[0] == 0  # kept: reused


@pytest.mark.parametrize("damage", ["edit_npz", "truncate_npz", "edit_json", "drop_npz"])
def test_a_damaged_stage_is_recomputed_with_a_warning(tmp_path, damage):
    stages = Stages(tmp_path, log=lambda _: None)
    stages.run("s", {"a": 1}, lambda: {"x": np.arange(100.0)})
    npz, meta = tmp_path / "stages" / "s.npz", tmp_path / "stages" / "s.json"
    if damage == "edit_npz":
        blob = bytearray(npz.read_bytes())
        blob[-200] ^= 0xFF
        npz.write_bytes(bytes(blob))
    elif damage == "truncate_npz":
        npz.write_bytes(npz.read_bytes()[:100])
    elif damage == "edit_json":
        info = json.loads(meta.read_text())
        info["tree"]["__dict__"][0][0] = "y"
        meta.write_text(json.dumps(info))
    else:
        npz.unlink()
    with pytest.warns(rgjax.RgjaxWarning, match="damaged"):
        got = stages.run("s", {"a": 1}, lambda: {"x": np.full(3, 2.0)})
    np.testing.assert_array_equal(got["x"], np.full(3, 2.0))
    assert stages.run("s", {"a": 1}, lambda: None)["x"].shape == (3,)  # the new one was kept


def test_an_interrupted_write_leaves_no_stage(tmp_path, monkeypatch):
    """The JSON is the commit mark: killed between the npz and the JSON, nothing is reused."""
    stages = Stages(tmp_path, log=lambda _: None)
    stages.run("s", {"a": 1}, lambda: np.ones(3))
    real = _stages._write_atomic

    def fail_on_json(path, data):
        if path.suffix == ".json":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(_stages, "_write_atomic", fail_on_json)
    with pytest.warns(rgjax.RgjaxWarning, match="No space left on device.*not kept"):
        assert stages.run("s", {"a": 2}, lambda: np.zeros(3))[0] == 0  # the value is right
    monkeypatch.setattr(_stages, "_write_atomic", real)
    assert not (tmp_path / "stages" / "s.json").exists()
    assert not list((tmp_path / "stages").glob("*.tmp"))
    assert stages.run("s", {"a": 1}, lambda: np.full(3, 5.0))[0] == 5  # recomputed, not stale


def test_large_values_and_foreign_classes_are_not_kept(tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr(_stages, "MAX_BYTES", 100)
    stages = Stages(tmp_path, log=lines.append)
    stages.run("big", {}, lambda: np.ones(1000))
    assert not (tmp_path / "stages" / "big.json").exists() and "not kept" in lines[-1]
    with pytest.raises(TypeError, match="cannot keep"):
        stages.run("odd", {}, lambda: {1, 2})
    with pytest.raises(ValueError, match="not an rgjax class"):
        _stages._rgjax_class("os:system")
    assert _stages.array_digest(np.ones(3)) != _stages.array_digest(np.ones(3, np.float32))


def test_a_rerun_of_rgjax_curve_recomputes_nothing(tmp_path, monkeypatch):
    cfg = curve_job.CurveConfig(task="synthetic-powerlaw", pool_size=120, n_etas=4, trials=3)
    first = curve_job.run(cfg, tmp_path, progress=False, plots=False, log=lambda _: None)

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(_pipeline, "gram", forbidden)
    monkeypatch.setattr(_pipeline, "_spectrum", forbidden)
    monkeypatch.setattr(curve_job, "theory_curves", forbidden)
    monkeypatch.setattr(curve_job, "functional_flow", forbidden)
    lines = []
    second = curve_job.run(cfg, tmp_path, progress=False, plots=False, log=lines.append)
    assert sum("reused" in line for line in lines) == 3  # gram, spectrum, theory
    for key in ("theory", "empirical", "spectrum", "fidelity", "etas", "functional_flow"):
        assert second[key] == first[key], key
    # another σ² (with --overwrite) reuses the pool's stages and recomputes the theories
    monkeypatch.undo()
    monkeypatch.setattr(_pipeline, "gram", forbidden)
    monkeypatch.setattr(_pipeline, "_spectrum", forbidden)
    other = curve_job.CurveConfig(task="synthetic-powerlaw", pool_size=120, n_etas=4, trials=3,
                                  sigma2=1e-6)
    lines.clear()
    third = curve_job.run(other, tmp_path, progress=False, plots=False, log=lines.append,
                          overwrite=True)
    assert sum("reused" in line for line in lines) == 2
    assert any("theory: the kept stage is of other options" in line for line in lines)
    assert third["theory"]["ek"] != first["theory"]["ek"]
    assert jnp.isfinite(jnp.asarray(third["theory"]["ek"])).all()
