"""The ``Examples:`` sections of the docstrings run as doctests (float64 on, see conftest)."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Headline functions whose docstrings must carry an example.
HEADLINE = {
    "rgjax.kernels": ["fc", "gram"],
    "rgjax.spectrum": ["from_gram"],
    "rgjax.eigensolve": ["topk_eigh"],
    "rgjax.rg": ["cutoff", "effective_ridge"],
    "rgjax.theory": ["mse_rg", "mse_spectral_bias"],
    "rgjax.empirical": ["learning_curve"],
    "rgjax.optimize": ["predicted_mse", "fit_kernel"],
    "rgjax.datasets": ["load_task"],
}


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted((ROOT / "rgjax").rglob("*.py")):
        if ">>> " in path.read_text():
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("module", _modules_with_examples())
def test_examples_run(module):
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(mod, module) if t.examples]
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module}"


@pytest.mark.parametrize("module", sorted(HEADLINE))
def test_headline_functions_have_examples(module):
    mod = importlib.import_module(module)
    missing = [n for n in HEADLINE[module] if ">>>" not in (getattr(mod, n).__doc__ or "")]
    assert not missing, f"{module}: no Examples in {missing}"
