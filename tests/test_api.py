"""The public API: everything exported is importable and documented."""

import inspect

import rgjax


def test_every_public_name_exists_and_has_a_docstring():
    missing = [n for n in rgjax.__all__ if not hasattr(rgjax, n)]
    assert not missing
    undocumented = [n for n in rgjax.__all__
                    if n != "__version__" and not (inspect.getdoc(getattr(rgjax, n)) or "").strip()]
    assert not undocumented, undocumented
    assert rgjax.__doc__ and "docs/theory.md" in rgjax.__doc__


def test_importing_rgjax_stays_light():
    import subprocess
    import sys

    code = "import rgjax, sys; print(any(m in sys.modules for m in ('matplotlib', 'tensorflow_datasets', 'mlxtend')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
