"""Test configuration: float64 everywhere, and every RgjaxWarning is an error."""

import warnings

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

from rgjax._validate import RgjaxWarning  # noqa: E402


@pytest.fixture(autouse=True)
def _rgjax_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RgjaxWarning)
        yield
