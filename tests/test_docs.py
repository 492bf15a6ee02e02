"""The documentation builds offline, with every warning an error, and covers the public API."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rgjax

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocstrings", reason="docs toolchain is part of the test extra")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-2000:]
    assert (tmp_path / "site" / "api" / "theory" / "index.html").is_file()
    shutil.rmtree(tmp_path / "site")


def test_every_module_has_an_api_page_and_every_export_is_documented():
    pages = {p.stem for p in (ROOT / "docs" / "api").glob("*.md")}
    modules = {p.stem for p in (ROOT / "rgjax").glob("*.py") if not p.stem.startswith("_")}
    assert modules - {"cli"} <= pages, modules - pages
    for name in rgjax.__all__:
        obj = getattr(rgjax, name)
        assert (getattr(obj, "__doc__", None) or "").strip(), f"rgjax.{name} has no docstring"


def test_cli_page_lists_every_subcommand():
    from test_cli import _subparsers

    text = (ROOT / "docs" / "cli.md").read_text()
    _, subs = _subparsers()
    for name in subs:
        assert f"rgjax {name}" in text, name
