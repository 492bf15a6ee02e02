"""Faults: `rgjax curve` killed (SIGKILL) at several points of its run, then run again, ends with
the same results as an uninterrupted run, keeps what it had finished, and leaves no lock."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rgjax.jobs._io import LOCK_FILE

ARGS = ["curve", "--task", "synthetic-powerlaw", "--pool-size", "300", "--n-etas", "6",
        "--trials", "6", "--no-nested", "--quiet", "--no-plots"]
#: Parts of results.json that legitimately differ between runs.
VOLATILE = {"timings", "versions"}


def _run(out, env, kill_after=None):
    cmd = [sys.executable, "-c", "import sys; from rgjax.cli import main; sys.exit(main())",
           *ARGS, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        return True
    time.sleep(kill_after)
    if proc.poll() is not None:  # finished before the kill
        return True
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return False


def _stable(path):
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in VOLATILE}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", RGJAX_CACHE=str(cache), RGJAX_COMPILE_CACHE=str(cache / "jax"))
    return env


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, env):
    reference = tmp_path / "reference"
    _run(reference, env)  # also fills the compilation cache, so the runs below are quick
    want = _stable(reference / "results.json")
    out = tmp_path / "killed"
    records = []
    for delay in (1.0, 2.5, 4.0):  # start-up, spectrum and theories, the empirical stage
        _run(out, env, kill_after=delay)
        jsonl = out / "empirical.jsonl"
        records.append(len(jsonl.read_text().splitlines()) if jsonl.exists() else 0)
    assert records == sorted(records)  # nothing finished was lost by a later kill
    _run(out, env)
    assert _stable(out / "results.json") == want
    assert not (out / LOCK_FILE).exists()
    lines = (out / "empirical.jsonl").read_text().splitlines()
    assert all(json.loads(line)["checksum"].startswith("sha256:") for line in lines)
