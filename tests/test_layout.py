"""The package layout: imports go one way, no private names cross modules, modules stay small.

Layers, lowest first:

* **core** — every module outside ``jobs/``, ``plotting/``, ``cli.py`` and the ``experiment`` alias.
  It imports the standard library, jax, numpy, optax, tqdm and other core modules, without cycles.
* **plotting** — reads results dicts; imports the standard library, numpy, matplotlib and itself.
* **jobs** — one module per CLI job; imports core, plotting and the other job modules' helpers.
* **cli** — on top; imports the jobs lazily (inside its handlers) so that ``rgjax --help`` is fast.

Everything is read with the ``ast`` module: nothing is imported, so a broken module still reports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "rgjax"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
THIRD_PARTY = {
    "core": {"jax", "jaxlib", "numpy", "optax", "tqdm"},
    "plotting": {"numpy", "matplotlib"},
    "jobs": {"jax", "jaxlib", "numpy", "optax", "tqdm", "matplotlib"},
    "cli": {"jax", "jaxlib", "numpy"},
}
LOWER = {"core": {"core"}, "plotting": {"plotting"}, "jobs": {"core", "plotting", "jobs"},
         "cli": {"core", "plotting", "jobs"}}
#: Optional dependencies, imported where they are needed so that the core install works without.
OPTIONAL = {"tensorflow_datasets", "mlxtend", "importlib_resources"}
MAX_MODULE_LINES = 800
MAX_BODY_LINES = 80
#: The CLI's argument parser is a long list of options, not logic.
LONG_FUNCTION_OK = {("rgjax.cli", "build_parser"), ("rgjax.cli", "_parser")}


@dataclass(frozen=True)
class Import:
    module: str  # resolved absolute module name
    names: tuple[str, ...]  # imported names ("" for `import x`)
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def layer(mod: str) -> str:
    if mod.startswith("rgjax.jobs") or mod == "rgjax.experiment":
        return "jobs"
    if mod.startswith("rgjax.plotting"):
        return "plotting"
    if mod == "rgjax.cli":
        return "cli"
    return "core"


def _resolve(mod: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    pkg = mod if MODULES[mod].name == "__init__.py" else mod.rsplit(".", 1)[0]
    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(mod: str) -> list[Import]:
    tree = ast.parse(MODULES[mod].read_text())
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(fn) if n is not fn}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(a.name, ("",), node.lineno, id(node) in inside) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, node)
            out.append(Import(target, tuple(a.name for a in node.names), node.lineno,
                              id(node) in inside))
    return out


def _submodule(target: str, name: str) -> str | None:
    """``from target import name`` imports a module when ``target.name`` is one of ours."""
    full = f"{target}.{name}"
    return full if full in MODULES else None


def rgjax_targets(imp: Import) -> list[str]:
    """The rgjax modules an import statement loads (submodules where it names them)."""
    if imp.module != "rgjax" and not imp.module.startswith("rgjax."):
        return []
    subs = [_submodule(imp.module, n) for n in imp.names if n]
    return [s for s in subs if s] or [imp.module]


def all_imports():
    return [(mod, imp) for mod in MODULES for imp in imports(mod)]


def test_every_module_is_read():
    assert "rgjax.rg" in MODULES and "rgjax.cli" in MODULES and len(MODULES) > 10


def test_imports_go_one_way():
    bad = []
    for mod, imp in all_imports():
        top = imp.module.split(".")[0]
        if top == "rgjax":
            for target in rgjax_targets(imp):
                if target != "rgjax" and layer(target) not in LOWER[layer(mod)]:
                    bad.append(f"{mod}:{imp.line} ({layer(mod)}) imports {target} ({layer(target)})")
        elif top not in STDLIB and top not in THIRD_PARTY[layer(mod)] and top not in OPTIONAL:
            bad.append(f"{mod}:{imp.line} ({layer(mod)}) imports third-party {imp.module}")
    assert not bad, "\n".join(bad)


def test_core_import_graph_has_no_cycle():
    graph = {m: set() for m in MODULES if layer(m) == "core"}
    for mod, imp in all_imports():
        if mod in graph and not imp.in_function:
            graph[mod] |= {t for t in rgjax_targets(imp) if t in graph and t != "rgjax"}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_import_of_the_rgjax_namespace_inside_the_package():
    bad = [f"{mod}:{imp.line}" for mod, imp in all_imports()
           if mod != "rgjax" and imp.module == "rgjax"]
    assert not bad, "use `from rgjax.<module> import name` inside the package: " + ", ".join(bad)


def test_no_import_inside_a_function():
    bad = []
    for mod, imp in all_imports():
        if not imp.in_function or imp.module.split(".")[0] in OPTIONAL:
            continue
        if mod == "rgjax.cli" and imp.module.startswith("rgjax.jobs"):
            continue  # the CLI loads a job only when it runs it
        bad.append(f"{mod}:{imp.line} imports {imp.module} inside a function")
    assert not bad, "\n".join(bad)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_crosses_modules():
    bad = []
    for mod, imp in all_imports():
        if not imp.module.startswith("rgjax"):
            continue
        bad += [f"{mod}:{imp.line} imports {imp.module}.{n}" for n in imp.names if _private(n)]
    for mod, path in MODULES.items():
        aliases = {}
        for imp in imports(mod):
            for n in imp.names:
                sub = _submodule(imp.module, n) if n else imp.module
                if sub and sub.startswith("rgjax"):
                    aliases[n or sub.split(".")[0]] = sub
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                bad.append(f"{mod}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        body = body[1:]  # the docstring does not count
    if not body:
        return 0
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


def test_modules_and_functions_stay_small():
    big_modules = [f"{m}: {n} lines" for m, p in MODULES.items()
                   if layer(m) == "core" and (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    long_functions = []
    for mod, path in MODULES.items():
        for fn in ast.walk(ast.parse(path.read_text())):
            if (isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and (mod, fn.name) not in LONG_FUNCTION_OK
                    and (n := _body_lines(fn)) > MAX_BODY_LINES):
                long_functions.append(f"{mod}.{fn.name}: {n} lines")
    assert not big_modules and not long_functions, "\n".join(big_modules + long_functions)


def test_one_pytree_mechanism():
    """Containers are declared with ``rgjax._pytree.dataclass``, the one registration point."""
    registrations = ("register_dataclass", "register_pytree_node_class", "register_pytree_node",
                     "register_pytree_with_keys", "register_static")
    bad = []
    for mod, path in MODULES.items():
        if mod == "rgjax._pytree":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if name in registrations:
                bad.append(f"{mod}:{node.lineno} uses {name}")
            if layer(mod) == "core" and isinstance(node, ast.ClassDef):
                for dec in node.decorator_list:
                    src = ast.unparse(dec)
                    if src.startswith(("dataclasses.dataclass", "dataclass(frozen")):
                        bad.append(f"{mod}:{node.lineno} {node.name} is a plain dataclass")
    assert not bad, "\n".join(bad)


def test_importing_rgjax_loads_neither_jobs_nor_plotting():
    code = ("import sys, rgjax; print(sorted(m for m in sys.modules if m.startswith("
            "('rgjax.jobs', 'rgjax.plotting', 'rgjax.cli', 'matplotlib'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
