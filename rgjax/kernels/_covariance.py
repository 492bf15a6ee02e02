"""The covariance state that NNGP layers propagate, and the linear maps that act on it.

With ``P`` the spatial shape (``()`` for fully connected, ``(H, W)`` for images) a batch pair
``(x1, x2)`` is described by three second moments of the pre-activations: the self-covariances
``(n1, *P, *P)`` and ``(n2, *P, *P)`` of every input over all pairs of positions, and the cross
covariance ``(n1, n2, *P, *P)``, which is the NNGP. Layers are maps of this state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rgjax._pytree import dataclass, field
from rgjax._typing import Array

__all__ = [
    "HIGHEST",
    "Cov",
    "input_cov",
    "variances",
    "apply_activation",
    "conv_geometry",
    "conv_cov",
    "require_spatial",
]

# Dot products at full precision: on TPU/GPU the default float32 matmul precision may drop to
# bf16/tf32 passes, which would corrupt the small eigenvalues the RG theory looks at.
HIGHEST = jax.lax.Precision.HIGHEST


@dataclass(eq=False)
class Cov:
    """Second moments of the pre-activations for two batches of inputs.

    With ``P`` the spatial shape (``()`` for fully connected, ``(H, W)`` for images):
      cov1: ``(n1, *P, *P)`` covariance of each ``x1[i]`` with itself over all pairs of positions
        (for ``P = ()`` simply the variances ``(n1,)``).
      cov2: ``(n2, *P, *P)`` the same for ``x2``.
      cross: ``(n1, n2, *P, *P)`` the NNGP between ``x1[i]`` and ``x2[j]``.
      n_spatial: ``len(P)``, 0 or 2.
    """

    cov1: Array
    cov2: Array
    cross: Array
    n_spatial: int = field(static=True)

    def map(self, fn: Callable[[Array], Array]) -> Cov:
        """Apply the same linear map to the three covariances (Dense, Conv, pooling)."""
        return Cov(fn(self.cov1), fn(self.cov2), fn(self.cross), self.n_spatial)

    def reduce(self, fn: Callable[[Array], Array]) -> Cov:
        """Apply a map that removes the spatial axes (pooling, flattening) to the three."""
        return Cov(fn(self.cov1), fn(self.cov2), fn(self.cross), 0)


def input_cov(x1: Array, x2: Array) -> Cov:
    """Channel-averaged input covariance ``x·x'/C`` (C = last axis) for every pair of positions.

    ``x1``: ``(n1, C)`` or ``(n1, H, W, C)``; ``x2``: the same trailing shape.
    """
    c = x1.shape[-1]
    if x1.ndim == 2:
        cov1 = jnp.einsum("ic,ic->i", x1, x1, precision=HIGHEST) / c
        cov2 = jnp.einsum("ic,ic->i", x2, x2, precision=HIGHEST) / c
        cross = jnp.matmul(x1, x2.T, precision=HIGHEST) / c
        return Cov(cov1, cov2, cross, 0)
    cov1 = jnp.einsum("ihwc,iklc->ihwkl", x1, x1, precision=HIGHEST) / c
    cov2 = jnp.einsum("ihwc,iklc->ihwkl", x2, x2, precision=HIGHEST) / c
    cross = jnp.einsum("ihwc,jklc->ijhwkl", x1, x2, precision=HIGHEST) / c
    return Cov(cov1, cov2, cross, 2)


def variances(cov: Array, n_spatial: int) -> Array:
    """Diagonal ``cov[i, p, p]`` of a ``(n, *P, *P)`` self-covariance, shape ``(n, *P)``."""
    if n_spatial == 0:
        return cov
    n, spatial = cov.shape[0], cov.shape[1 : 1 + n_spatial]
    size = math.prod(spatial)
    flat = cov.reshape(n, size, size)
    return jnp.diagonal(flat, axis1=1, axis2=2).reshape(n, *spatial)


def apply_activation(fn: Callable[[Array, Array, Array], Array], state: Cov) -> Cov:
    """Map all covariances through an activation kernel ``fn(k11, k22, k12)`` (broadcasting)."""
    nsp = state.n_spatial
    v1, v2 = variances(state.cov1, nsp), variances(state.cov2, nsp)
    ones = (1,) * nsp
    sp = v1.shape[1:]
    # cross[i, j, p, p'] pairs the variance of x1[i] at p with that of x2[j] at p'
    cross = fn(
        v1.reshape(v1.shape[0], 1, *sp, *ones),
        v2.reshape(1, v2.shape[0], *ones, *sp),
        state.cross,
    )

    def self_cov(v: Array, cov: Array) -> Array:
        return fn(v.reshape(v.shape[0], *sp, *ones), v.reshape(v.shape[0], *ones, *sp), cov)

    return Cov(self_cov(v1, state.cov1), self_cov(v2, state.cov2), cross, nsp)


def conv_geometry(size: int, f: int, s: int, padding: str) -> tuple[int, int, int]:
    """(output size, low pad, high pad) along one axis, following ``lax``'s SAME/VALID rules."""
    if padding == "VALID":
        if size < f:
            raise ValueError(
                f"Conv with padding='VALID' needs inputs at least {f} wide; got {size}."
            )
        return (size - f) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + f - size, 0)
    return out, total // 2, total - total // 2


def conv_cov(
    k: Array, filter_shape: tuple[int, int], strides: tuple[int, int], padding: str
) -> Array:
    """Average ``k[..., h+a, w+b, h'+a, w'+b]`` over the filter offsets (a, b).

    The offset is the same on both sides because the two units share the filter; ``k`` is
    ``(..., H, W, H, W)`` and the result ``(..., H', W', H', W')``.
    """
    (fh, fw), (sh, sw) = filter_shape, strides
    ho, ph_lo, ph_hi = conv_geometry(k.shape[-4], fh, sh, padding)
    wo, pw_lo, pw_hi = conv_geometry(k.shape[-3], fw, sw, padding)
    pads = [(0, 0)] * (k.ndim - 4) + [(ph_lo, ph_hi), (pw_lo, pw_hi)] * 2
    kp = jnp.pad(k, pads)  # zero padding: padded positions carry no signal, as in lax.conv
    acc = jnp.zeros(k.shape[:-4] + (ho, wo, ho, wo), k.dtype)
    for a in range(fh):
        hs = slice(a, a + (ho - 1) * sh + 1, sh)
        for b in range(fw):
            ws = slice(b, b + (wo - 1) * sw + 1, sw)
            acc = acc + kp[..., hs, ws, hs, ws]
    return acc / (fh * fw)


def require_spatial(state: Cov, layer: str) -> None:
    """Raise ``ValueError`` unless ``state`` still has the two spatial axes of images."""
    if state.n_spatial != 2:
        raise ValueError(
            f"{layer} needs image inputs of shape (n, H, W, C) and no earlier pooling/flatten; "
            "got a fully connected representation."
        )
