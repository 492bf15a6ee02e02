"""The results folder's lock: one run per folder, stale locks taken over, no empty folder left
by a failed start."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from rgjax import cli
from rgjax._validate import RgjaxWarning
from rgjax.jobs import toy
from rgjax.jobs._io import LOCK_FILE, FolderInUse, results_folder

CFG = toy.ToyConfig(m=2048, lambdas_greater=(0.1,))


def _lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps(
        {"pid": pid, "host": host or socket.gethostname(), "job": "rgjax toy",
         "started": time.time()}))


def test_a_second_run_into_a_busy_folder_stops_at_once(tmp_path, monkeypatch):
    _lock(tmp_path, os.getpid())  # a live owner: this very process
    monkeypatch.setattr(toy, "monte_carlo", lambda *a, **k: pytest.fail("the job started"))
    with pytest.raises(FolderInUse, match=f"pid {os.getpid()}"):
        toy.run(CFG, tmp_path, progress=False, plots=False, log=lambda *_: None)
    assert not (tmp_path / toy.RESULTS_FILE).exists()
    _lock(tmp_path, 1, host="another-host")  # liveness unknown elsewhere: also in use
    with pytest.raises(FolderInUse, match="another-host"):
        toy.run(CFG, tmp_path, progress=False, plots=False, log=lambda *_: None)


def test_the_command_line_names_the_running_one(tmp_path, capsys):
    _lock(tmp_path, os.getpid())
    code = cli.main(["toy", "--m", "2048", "--out", str(tmp_path), "--quiet", "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and "in use by another rgjax run" in err and "Traceback" not in err


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(tmp_path, dead.pid)
    with pytest.warns(RgjaxWarning, match="stale lock"):
        res = toy.run(CFG, tmp_path, progress=False, plots=False, log=lambda *_: None)
    assert res["config"]["m"] == 2048 and not (tmp_path / LOCK_FILE).exists()
    _lock(tmp_path, os.getpid())
    (tmp_path / LOCK_FILE).write_text("{")  # a run killed while writing its lock
    with pytest.warns(RgjaxWarning, match="stale lock"), results_folder(tmp_path, "test"):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_failed_start_leaves_no_folder(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError), results_folder(out, "test"):
        assert (out / LOCK_FILE).exists()
        raise RuntimeError("failed before writing anything")
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"), results_folder(tmp_path / "file",
                                                                              "test"):
        pass
