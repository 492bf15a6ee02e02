"""Test configuration: float64 everywhere, every RgjaxWarning is an error, and the ``rgjax``
command's persistent compilation cache off (tests/test_compile_cache.py checks it in subprocesses).
"""

import os
import warnings

import jax

jax.config.update("jax_enable_x64", True)
os.environ.setdefault("RGJAX_COMPILE_CACHE", "0")

import pytest  # noqa: E402

from rgjax._validate import RgjaxWarning  # noqa: E402


@pytest.fixture(autouse=True)
def _rgjax_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RgjaxWarning)
        yield
