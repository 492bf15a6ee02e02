"""Static checks of the package: ruff (style, imports, bugs) and basedpyright (types), both clean.

Their configuration lives in ``pyproject.toml`` (``[tool.ruff]``, ``[tool.basedpyright]``); both tools
come with the ``test`` extra.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def test_ruff_is_clean():
    pytest.importorskip("ruff", reason="ruff comes with the test extra")
    out = _run("ruff", "check", "--no-cache", "rgjax")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_type_checker_is_clean():
    pytest.importorskip("basedpyright", reason="basedpyright comes with the test extra")
    out = _run("basedpyright", "rgjax")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
