"""Faults: `rgjax curve` killed (SIGKILL) inside each of its stages, then run again, ends with the
same results as an uninterrupted run and recomputes nothing it had finished; two runs into one
folder at once; a read-only folder; a full disk."""

import errno
import json
import os
import subprocess
import sys

import pytest

from rgjax.jobs import _io, _stages
from rgjax.jobs import curve as curve_job
from rgjax.jobs._io import LOCK_FILE

ARGS = ["curve", "--task", "synthetic-powerlaw", "--pool-size", "300", "--n-etas", "6",
        "--trials", "6", "--no-nested", "--quiet", "--no-plots"]
#: Parts of results.json that legitimately differ between runs.
VOLATILE = {"timings", "versions"}

# Runs the command line with one function replaced by one that kills the process (SIGKILL, at its
# n-th call: RGJAX_TEST_KILL=module:function@n), and others by ones that fail loudly if called
# (RGJAX_TEST_FORBID=module:function,...): the stages a rerun must not recompute; and one made
# slow (RGJAX_TEST_SLOW=module:function=seconds), to hold a lock long enough.
RUNNER = r"""
import importlib, os, signal, sys

def patch(spec, fn):
    module, attr = spec.split(":")
    setattr(importlib.import_module(module), attr, fn)

kill = os.environ.get("RGJAX_TEST_KILL")
if kill:
    spec, _, nth = kill.partition("@")
    module, attr = spec.split(":")
    real = getattr(importlib.import_module(module), attr)
    calls = [0]

    def killer(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    patch(spec, killer)
slow = os.environ.get("RGJAX_TEST_SLOW")
if slow:
    import time

    spec, _, seconds = slow.partition("=")
    module, attr = spec.split(":")
    real_slow = getattr(importlib.import_module(module), attr)

    def slowed(*args, **kwargs):
        time.sleep(float(seconds))
        return real_slow(*args, **kwargs)

    patch(spec, slowed)
for spec in filter(None, os.environ.get("RGJAX_TEST_FORBID", "").split(",")):
    def forbidden(*args, _spec=spec, **kwargs):
        raise SystemExit(f"recomputed a finished stage: {_spec}")

    patch(spec, forbidden)
from rgjax.cli import main
sys.exit(main())
"""

GRAM = "rgjax.jobs._pipeline:gram"
SPECTRUM = "rgjax.jobs._pipeline:_spectrum"
THEORY = "rgjax.jobs.curve:theory_curves"
RECORD = "rgjax.empirical:append_record"
RESULTS = "rgjax.jobs.curve:save_and_plot"
TORN = "rgjax.jobs._stages:_write_atomic@2"  # the Gram matrix's JSON, after its npz


def _start(out, env, kill=None, forbid=(), slow=""):
    env = {**env, "RGJAX_TEST_KILL": kill or "", "RGJAX_TEST_FORBID": ",".join(forbid),
           "RGJAX_TEST_SLOW": slow}
    return subprocess.Popen([sys.executable, "-c", RUNNER, *ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(out, env, kill=None, forbid=()):
    proc = _start(out, env, kill, forbid)
    stdout, stderr = proc.communicate(timeout=600)
    if kill:
        assert proc.returncode == -9, (kill, stderr[-2000:])
    else:
        assert proc.returncode == 0, stderr[-2000:]
    return stdout + stderr


def _stable(path):
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in VOLATILE}


def _records(out):
    jsonl = out / "empirical.jsonl"
    return len(jsonl.read_text().splitlines()) if jsonl.exists() else 0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", RGJAX_CACHE=str(cache), RGJAX_COMPILE_CACHE=str(cache / "jax"))
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
    out = tmp_path_factory.mktemp("reference")
    _run(out, env)  # also fills the compilation cache, so the runs below are quick
    return _stable(out / "results.json")


def test_killed_in_each_stage_then_rerun(tmp_path, env, reference):
    """Killed while keeping the Gram matrix (between its arrays and its JSON, the commit mark),
    inside the spectrum, the theories, the empirical curve (at its third record) and the
    results, one after the other into one folder; each run must not recompute what an earlier
    one finished (those functions fail if called), and must not use the torn stage."""
    out = tmp_path / "killed"
    chain = [(TORN, ()), (SPECTRUM, ()), (THEORY, (GRAM,)), (f"{RECORD}@3", (GRAM, SPECTRUM)),
             (RESULTS, (GRAM, SPECTRUM, THEORY))]
    records = []
    for kill, forbid in chain:
        text = _run(out, env, kill=kill, forbid=forbid)
        records.append(_records(out))
        assert not list(out.rglob("*.tmp")), kill  # no half-written file left behind
        if kill == TORN:
            assert (out / "stages" / "gram.npz").exists()
            assert not (out / "stages" / "gram.json").exists()
        else:
            assert text.count("reused from stages/") == len(forbid), (kill, text)
    assert records[:3] == [0, 0, 0] and records[3] == 2 and records[4] > 2
    n = records[4]
    text = _run(out, env, forbid=(GRAM, SPECTRUM, THEORY))
    assert text.count("reused from stages/") == 3
    assert _records(out) == n  # every η was finished before the last kill: none recomputed
    assert _stable(out / "results.json") == reference
    assert not (out / LOCK_FILE).exists()
    lines = (out / "empirical.jsonl").read_text().splitlines()
    assert all(json.loads(line)["checksum"].startswith("sha256:") for line in lines)


def test_two_runs_into_one_folder_at_once(tmp_path, env, reference):
    out = tmp_path / "shared"
    # Loading the task takes 4 s longer in both: whichever takes the lock first still holds it
    # when the other arrives, however the two start-ups happen to be scheduled.
    slow = "rgjax.jobs._pipeline:_load=4"
    procs = [_start(out, env, slow=slow), _start(out, env, slow=slow)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another rgjax run" in loser and "pid" in loser
    assert _stable(out / "results.json") == reference
    assert not (out / LOCK_FILE).exists()


def test_a_read_only_folder_is_found_before_any_work(tmp_path, monkeypatch):
    real = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(LOCK_FILE):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(_io.os, "open", refuse)
    monkeypatch.setattr(curve_job, "build_pool", lambda *a, **k: pytest.fail("work started"))
    cfg = curve_job.CurveConfig(task="synthetic-powerlaw", pool_size=120, n_etas=3, trials=2)
    with pytest.raises(OSError, match="cannot write to the results folder .*pass a writable --out"):
        curve_job.run(cfg, tmp_path / "ro", progress=False, plots=False, log=lambda _: None)
    assert not (tmp_path / "ro").exists()  # a failed start leaves no empty folder


def test_a_full_disk_stops_with_one_clear_error_and_keeps_what_was_finished(tmp_path,
                                                                          monkeypatch):
    cfg = curve_job.CurveConfig(task="synthetic-powerlaw", pool_size=120, n_etas=3, trials=2)
    out = tmp_path / "full"
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.warns(Warning, match="not kept"), pytest.raises(
            OSError, match=r"could not write .*empirical.jsonl.*No space left.*free disk space"):
        curve_job.run(cfg, out, progress=False, plots=False, log=lambda _: None)
    assert not list(out.rglob("*.tmp")) and not (out / LOCK_FILE).exists()
    monkeypatch.setattr(os, "fsync", real)
    # the disk has room again: the rerun finishes; a failing results.json write is one error too
    calls = []

    def fail_results(obj, path):
        calls.append(path)
        raise OSError(errno.ENOSPC, f"could not write {str(path)!r} (No space left on device)")

    monkeypatch.setattr(curve_job, "save_and_plot",
                        lambda results, path, plot=None: fail_results(results, path))
    with pytest.raises(OSError, match="results.json"):
        curve_job.run(cfg, out, progress=False, plots=False, log=lambda _: None)
    monkeypatch.undo()
    lines = []
    results = curve_job.run(cfg, out, progress=False, plots=False, log=lines.append)
    assert sum("reused" in line for line in lines) == 3 and len(results["etas"]) == 3
    assert _stages.STAGES_FOLDER in {p.name for p in out.iterdir()}
