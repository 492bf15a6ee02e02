"""Activation kernels ``E[φ(u) φ(v)]``, ``(u, v) ~ N(0, [[k11, k12], [k12, k22]])``.

Pure functions of the covariance triple ``(k11, k22, k12)`` that broadcast elementwise: closed
forms for ReLU, leaky ReLU (and so Abs), Erf, and Gauss–Hermite quadrature for any other
activation. Derivatives are finite everywhere, including ``ρ = ±1`` (the diagonal, duplicated
points) and zero variance, where ``arccos``, ``arcsin`` and ``√(1-ρ²)`` have infinite slopes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._typing import Array, Scalar

__all__ = [
    "safe_sqrt",
    "correlation",
    "relu_kernel",
    "leaky_relu_kernel",
    "erf_kernel",
    "gauss_hermite",
    "quadrature_kernel",
]


def safe_sqrt(x: Array) -> Array:
    """``sqrt(max(x, 0))`` with a zero (not infinite) derivative at ``x <= 0``."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def correlation(k11: Array, k22: Array, k12: Array) -> tuple[Array, Array]:
    """``(sqrt(k11 k22), ρ)`` with ρ clipped to [-1, 1]; ρ = 0 where a variance vanishes.

    The clip absorbs round-off on the diagonal (ρ = 1 ± 1e-16); clipped entries get a zero
    derivative through ρ, which is the exact derivative there (ρ ≡ 1 on the diagonal).
    """
    norm = safe_sqrt(k11 * k22)
    pos = norm > 0
    rho = jnp.clip(k12 / jnp.where(pos, norm, 1.0), -1.0, 1.0)
    return norm, jnp.where(pos, rho, 0.0)


@jax.custom_jvp
def _arccos1(rho: Array) -> Array:
    """Normalised arc-cosine kernel of order 1: ``E[relu(u) relu(v)]`` for unit variances.

    ``(sqrt(1-ρ²) + (π - arccos ρ) ρ) / (2π)``. Its derivative ``(π - arccos ρ)/(2π)`` is finite
    at ρ = ±1, but autodiff of the two terms separately gives ∞ - ∞ there: hence the custom JVP.
    """
    return (jnp.sqrt((1.0 - rho) * (1.0 + rho)) + (jnp.pi - jnp.arccos(rho)) * rho) / (2 * jnp.pi)


@_arccos1.defjvp
def _arccos1_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (rho,), (t,) = primals, tangents
    return _arccos1(rho), (jnp.pi - jnp.arccos(rho)) / (2 * jnp.pi) * t


def relu_kernel(k11: Array, k22: Array, k12: Array) -> Array:
    """``E[relu(u) relu(v)] = sqrt(k11 k22) · arccos1(ρ)`` (arc-cosine kernel of order 1)."""
    norm, rho = correlation(k11, k22, k12)
    return norm * _arccos1(rho)


def leaky_relu_kernel(alpha: Scalar, k11: Array, k22: Array, k12: Array) -> Array:
    """``E[φ(u) φ(v)]`` for ``φ(x) = x if x > 0 else alpha·x`` (``alpha = -1``: ``|x|``)."""
    # φ(x) = αx + (1-α) relu(x) and E[u relu(v)] = k12/2, hence α k12 + (1-α)² E[relu relu].
    return alpha * k12 + (1.0 - alpha) ** 2 * relu_kernel(k11, k22, k12)


def erf_kernel(k11: Array, k22: Array, k12: Array) -> Array:
    """``E[erf(u) erf(v)] = (2/π) arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))``."""
    # |argument| < 1 always; the clip only absorbs round-off.
    arg = 2.0 * k12 / jnp.sqrt((1.0 + 2.0 * k11) * (1.0 + 2.0 * k22))
    return (2.0 / jnp.pi) * jnp.arcsin(jnp.clip(arg, -1.0, 1.0))


@functools.lru_cache(maxsize=32)
def gauss_hermite(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``E[g(z)]``, ``z ~ N(0, 1)`` (probabilists' Hermite, weights sum 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(num_points)
    return z, w / np.sqrt(2.0 * np.pi)


def quadrature_kernel(
    fn: Callable[[Array], Array], num_points: int, k11: Array, k22: Array, k12: Array
) -> Array:
    """``E[fn(u) fn(v)]`` by tensor-product Gauss–Hermite quadrature.

    Writes ``u = √k11 z1``, ``v = √k22 (ρ z1 + √(1-ρ²) z2)`` with independent standard normals. The
    outer sum over z1 is a ``lax.scan``: memory ``O(num_points)`` per entry, not its square.
    """
    k11, k22, k12 = jnp.broadcast_arrays(k11, k22, k12)
    _, rho = correlation(k11, k22, k12)
    sd1, sd2 = safe_sqrt(k11), safe_sqrt(k22)
    # √(1-ρ²) has an infinite derivative at ρ = ±1; safe_sqrt gives 0 there (and ρ is clipped).
    s = safe_sqrt((1.0 - rho) * (1.0 + rho))
    z_np, w_np = gauss_hermite(num_points)
    z, w = jnp.asarray(z_np, k12.dtype), jnp.asarray(w_np, k12.dtype)

    def body(acc: Array, node: tuple[Array, Array]) -> tuple[Array, None]:
        za, wa = node
        v = sd2[..., None] * (rho[..., None] * za + s[..., None] * z)
        inner = jnp.sum(fn(v) * w, axis=-1)
        return acc + wa * fn(sd1 * za) * inner, None

    acc, _ = jax.lax.scan(body, jnp.zeros_like(k12), (z, w))
    return acc
