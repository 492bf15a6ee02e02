"""Validation of the input batches and hyper-parameters of kernels (errors name the argument)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._typing import Array, ArrayLike
from rgjax._validate import check_finite, concrete

__all__ = ["as_input", "validate_inputs", "check_scalar"]


def as_input(
    x: ArrayLike, name: str, allowed_ndim: tuple[int, ...] | None, host: bool = False
) -> Array | np.ndarray:
    """``x`` as a floating JAX array after checking finiteness and ndim (errors name ``name``).

    ``host=True`` returns a numpy array instead (same dtype as the JAX array would have), so a
    numpy input is not copied to the device.
    """
    check_finite(x, name)
    if host:
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(jnp.result_type(float))
        canonical = jax.dtypes.canonicalize_dtype(arr.dtype)
        if arr.dtype != canonical:
            arr = arr.astype(canonical)
    else:
        arr = jnp.asarray(x)
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            arr = arr.astype(jnp.result_type(float))
    if arr.ndim < 2 or (allowed_ndim is not None and arr.ndim not in allowed_ndim):
        raise ValueError(
            f"`{name}` must have shape (n, d) or (n, H, W, C); got shape {tuple(arr.shape)} "
            f"(ndim={arr.ndim}). A single point needs a leading batch axis, e.g. x[None]."
        )
    return arr


def validate_inputs(
    x1: ArrayLike,
    x2: ArrayLike | None,
    allowed_ndim: tuple[int, ...] | None,
    names: tuple[str, str] = ("x1", "x2"),
) -> tuple[Array, Array | None]:
    """Validate a pair of input batches (``x2`` may be ``None``); return them in a common dtype.

    ``x1``: ``(n1, ...)``; ``x2``: ``(n2, ...)`` with the same shape after the batch axis.
    """
    a1 = jnp.asarray(as_input(x1, names[0], allowed_ndim))
    if x2 is None:
        return a1, None
    a2 = jnp.asarray(as_input(x2, names[1], allowed_ndim))
    if a1.shape[1:] != a2.shape[1:]:
        raise ValueError(
            f"`{names[1]}` has feature shape {tuple(a2.shape[1:])} but `{names[0]}` has "
            f"{tuple(a1.shape[1:])}; "
            "both batches must have the same shape after the batch axis."
        )
    dtype = jnp.promote_types(a1.dtype, a2.dtype)
    return a1.astype(dtype), a2.astype(dtype)


def check_scalar(value: object, name: str, layer: str, nonneg: bool) -> None:
    """Raise ``ValueError`` for a concrete hyper-parameter that is not a finite scalar
    (``nonneg``: also ``>= 0``); tracers pass unchecked."""
    a = concrete(value)
    if a is None or a.dtype.kind not in "biuf":
        return
    if a.ndim != 0:
        raise ValueError(f"`{name}` of {layer} must be a scalar; got shape {a.shape}.")
    if not np.isfinite(a) or (nonneg and a < 0):
        need = "finite and >= 0" if nonneg else "finite"
        raise ValueError(f"`{name}` of {layer} must be {need}; got {a.item()!r}.")
