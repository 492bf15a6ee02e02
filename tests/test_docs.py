"""The documentation builds offline, with every warning an error, covers the public API, and the
theory page's sections are the ones the code cites."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rgjax

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"

#: Sections of docs/theory.md, in order (the numbering docstrings cite, "docs/theory.md §3b").
SECTIONS = ("1", "2", "3", "3b", "4", "5", "6", "7", "8")


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocstrings", reason="docs toolchain is part of the test extra")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:] + out.stdout[-2000:]
    assert (tmp_path / "site" / "api" / "theory" / "index.html").is_file()
    assert (tmp_path / "site" / "theory" / "index.html").is_file()
    shutil.rmtree(tmp_path / "site")


def test_every_module_has_an_api_page_and_every_export_is_documented():
    pages = {p.stem for p in (ROOT / "docs" / "api").glob("*.md")}
    modules = {p.stem for p in (ROOT / "rgjax").glob("*.py") if not p.stem.startswith("_")}
    packages = {p.parent.name for p in (ROOT / "rgjax").glob("*/__init__.py")}
    assert (modules | packages) - {"cli"} <= pages, (modules | packages) - pages
    for name in rgjax.__all__:
        obj = getattr(rgjax, name)
        if isinstance(obj, str):  # __version__
            continue
        assert (getattr(obj, "__doc__", None) or "").strip(), f"rgjax.{name} has no docstring"


def test_cli_page_lists_every_subcommand():
    from test_cli import _subparsers

    text = (ROOT / "docs" / "cli.md").read_text()
    _, subs = _subparsers()
    for name in subs:
        assert f"rgjax {name}" in text, name


def _theory_sections() -> list[str]:
    return re.findall(r"^## §(\w+) .*\{#s\1\}$", THEORY.read_text(), flags=re.M)


def test_theory_page_has_the_sections_in_order():
    assert tuple(_theory_sections()) == SECTIONS
    nav = (ROOT / "mkdocs.yml").read_text()
    assert "theory.md" in nav.split("API reference")[0], "docs/theory.md is not in the nav"


def _sources() -> list[Path]:
    files = [*(ROOT / "rgjax").rglob("*.py"), *(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]
    files += [*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "benchmarks").glob("*.sh")]
    return files


def test_theory_citations_resolve():
    """Every "docs/theory.md §N" (also "§§N, M" and "§N–M") names a section that exists."""
    known = set(_theory_sections())
    cite = re.compile(
        r"docs/theory\.md\s*(?:``)?\s*§§?\s*([0-9]+b?(?:\s*(?:[,–-]|and)\s*§?[0-9]+b?)*)")
    bad = []
    for path in _sources():
        for m in cite.finditer(path.read_text(encoding="utf-8")):
            for sec in re.findall(r"[0-9]+b?", m.group(1)):
                if sec not in known:
                    bad.append(f"{path.relative_to(ROOT)}: §{sec}")
    assert not bad, bad


def _notebook_text(path: Path) -> str:
    """Sources and stored outputs of a notebook, as one string."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        parts.append("".join(cell.get("source", [])))
        parts.append(json.dumps(cell.get("outputs", []), ensure_ascii=False))
    return "\n".join(parts)


#: Things that belong to one machine or one workplace, not to the project.
_WORKPLACE = re.compile(
    r"/tmp/|/home/|site-packages|\.venv/|THEORY\.md|THEORY §|\bissue #?\d"
    r"|\b(?:was|were|is|are|been|be|not) lent\b|shared folder"
)


def test_docs_readme_notebooks_benchmarks_speak_of_the_project_alone():
    files = [ROOT / "README.md", ROOT / "mkdocs.yml", *(ROOT / "docs").rglob("*.md")]
    files += [*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "benchmarks").glob("*.sh")]
    files += [*(ROOT / "benchmarks" / "results").glob("*.json")]
    bad = []
    for path in files:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _WORKPLACE.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:120]}")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for m in _WORKPLACE.finditer(_notebook_text(path)):
            bad.append(f"{path.relative_to(ROOT)}: {m.group(0)!r}")
    assert not bad, "\n".join(bad)
