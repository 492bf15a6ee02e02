"""Input checks shared by every module: one place for the wording of errors and warnings.

Checks run only on concrete values; under ``jit``/``grad`` tracing they are skipped (the traced
computation is the same function, validated on the first concrete call by the caller).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

__all__ = [
    "RgjaxWarning",
    "concrete",
    "check_finite",
    "check_sigma2",
    "check_threshold",
    "check_eta",
    "check_x64",
    "check_int",
    "check_temperature",
    "as_float_array",
    "warn",
    "X64_FIX",
]

X64_FIX = "enable float64 with `jax.config.update('jax_enable_x64', True)` before creating arrays"


class RgjaxWarning(UserWarning):
    """Warning category for everything rgjax reports (clipped eigenvalues, float32 precision...)."""


def warn(message: str, stacklevel: int = 3) -> None:
    warnings.warn(message, RgjaxWarning, stacklevel=stacklevel)


def concrete(x: object) -> np.ndarray | None:
    """Return ``x`` as a numpy array, or ``None`` when it is a JAX tracer (inside jit/grad)."""
    if x is None:
        return None
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_finite(x: object, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``x`` holds NaN or Inf."""
    a = concrete(x)
    if a is None or a.dtype.kind not in "fc":
        return
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(
            f"`{name}` contains {bad} NaN/Inf value(s); clean or impute them before calling rgjax."
        )


def check_sigma2(sigma2: object, name: str = "sigma2") -> None:
    """The ridge must be finite and strictly positive."""
    a = concrete(sigma2)
    if a is None:
        return
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(
            f"`{name}` must be finite and > 0 (got {a!r}); the paper's ridge is sigma2=1e-8. "
            "For a noiseless interpolant use a tiny positive value, not 0."
        )


def check_threshold(threshold: object, name: str = "threshold") -> None:
    """The learnability threshold T must lie in the open interval (0, 1)."""
    a = concrete(threshold)
    if a is None:
        return
    if not np.all(np.isfinite(a)) or np.any(a <= 0) or np.any(a >= 1):
        raise ValueError(
            f"`{name}` (the learnability threshold T) must lie strictly inside (0, 1); got {a!r}. "
            "The paper's default is 0.5."
        )


def check_eta(eta: object, name: str = "eta", n_max: int | None = None) -> None:
    """Training-set sizes must be finite and > 0 (and at most ``n_max`` when given)."""
    a = concrete(eta)
    if a is None:
        return
    if a.dtype.kind not in "iuf":  # text, objects, booleans: not a number of training points
        raise ValueError(f"`{name}` (training-set size) must be a number or an array of numbers; "
                         f"got {eta!r}.")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"`{name}` (training-set size) must be finite and > 0; got {a!r}.")
    if n_max is not None and np.any(a > n_max):
        raise ValueError(
            f"`{name}` has values up to {float(np.max(a)):g}, larger than the pool of {n_max} "
            "points; "
            f"use eta <= {n_max} (learning curves usually stop near N/2)."
        )


def check_x64(dtype: DTypeLike, sigma2: object, scale: object, what: str = "spectrum") -> None:
    """Warn when float32 cannot resolve ``sigma2`` relative to ``scale`` (e.g. the kernel trace)."""
    if jnp.dtype(dtype) != jnp.float32:
        return
    s, c = concrete(sigma2), concrete(scale)
    if s is None or c is None:
        return
    if np.min(s) < 10 * np.finfo(np.float32).eps * float(np.max(np.abs(c))):
        warn(
            f"the {what} is float32, which cannot resolve sigma2={float(np.min(s)):g} against a "
            f"kernel scale of {float(np.max(np.abs(c))):g}; {X64_FIX}.",
            stacklevel=4,
        )


def as_float_array(x: ArrayLike | None, name: str) -> jax.Array:
    """Convert to a floating JAX array (float64 when x64 is on), validating finiteness."""
    if x is None:
        raise ValueError(f"`{name}` is required (got None).")
    check_finite(x, name)
    arr = jnp.asarray(x)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def check_int(value: object, name: str, lo: int, hi: int | None = None, why: str = "") -> int:
    """Return ``value`` as an ``int`` in ``[lo, hi]``, or raise ``ValueError`` naming ``name``.

    Integral floats (``5.0``, ``1e6``) are accepted and converted, as a user expects of a count;
    booleans, fractions, NaN and anything out of range are rejected. ``why`` explains the bound.
    """
    number = float("nan")
    if not isinstance(value, (bool, np.bool_, str, bytes)):  # "5" is text, not a count
        try:
            number = float(value)  # pyright: ignore[reportArgumentType]  # anything float() takes
        except (TypeError, ValueError, OverflowError):
            pass
    if not number.is_integer() or number < lo or (hi is not None and number > hi):
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        reason = f" ({why})" if why else ""
        raise ValueError(f"`{name}` must be an integer {bounds}{reason}; got {value!r}.")
    # exact for Python and numpy integers beyond 2**53, where the float is only a check
    return int(value) if isinstance(value, (int, np.integer)) else int(number)


def check_temperature(temperature: object) -> None:
    """The smooth-cutoff τ must be a finite scalar > 0 (None: the hard threshold)."""
    if temperature is None:
        return
    if isinstance(temperature, (bool, str, bytes)):
        raise ValueError(f"`temperature` (smooth-cutoff τ) must be a number > 0 or None; got "
                         f"{temperature!r}.")
    t = concrete(temperature)  # pyright: ignore[reportArgumentType]
    if t is not None and (t.ndim != 0 or not np.isfinite(t) or t <= 0):
        raise ValueError(
            f"`temperature` (smooth-cutoff τ) must be a finite scalar > 0, or None for the hard "
            f"threshold; got {t.tolist()!r}."
        )
