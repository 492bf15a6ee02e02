"""One pass over the ``(η × modes)`` array: several sums ``Σ_k f(η, k)`` at once (docs/theory.md
§§2–4).

The theories of :mod:`rgjax.theory` cost a few such passes each; this module lays a pass out so
that XLA on CPU vectorises it (:func:`mode_sums`), and provides the two passes they share: the EK
sum (:func:`ek_sum`) and the resolvent moments of the spectral-bias solver (:func:`moments`,
with :func:`series` to move them along ``s``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rgjax._typing import Array

__all__ = ["LANES", "ek_sum", "mode_sums", "moments", "series"]


#: Modes per partial sum; see :func:`mode_sums`.
LANES = 12
#: ``terms(per_eta, per_mode)`` of :func:`mode_sums`: the summands, one array per sum.
_Terms = Callable[[list[Array], list[Array]], list[Array]]
_BIG = 1e150  # cap on 1 + λ/ρ in the paired EK pass (keeps the product of two finite)


def mode_sums(terms: _Terms, per_eta: Sequence[Array], per_mode: Sequence[Array]) -> list[Array]:
    """``[Σ_k t(η, k) for t in terms(...)]`` for every η of the 1-D ``per_eta`` arrays: one pass.

    ``terms(e, m)`` gets the per-η arrays shaped ``(1, n, 1)`` and the per-mode arrays shaped
    ``(rows, 1, LANES)`` and returns a list of at least two arrays, which are summed by one
    variadic reduce over the short last axis and then over the rows (the last ``k mod LANES``
    modes go through a second, small reduce). Why this shape (XLA CPU): a reduce over ≤ 12
    contiguous elements is unrolled and vectorised across the outputs, and the variadic reduce
    evaluates the shared ``1/(λ + s)`` once for every sum. A long reduce with several outputs
    compiles to scalar code; a single-output ``jnp.sum`` goes to a library kernel that is
    vectorised but single-threaded and about half as fast, and several of those in one program had
    their broadcasts merged and materialised; zero-padding the modes to a multiple of ``LANES``
    gets fused into the loop as bounds checks that stop the vectorisation. Partial sums of ≤ 12
    terms, then a sum over the rows, also keep the round-off at a few ulp. Not differentiable
    (callers wrap it in custom JVPs).
    """
    k = per_mode[0].shape[0]
    rows = k // LANES
    e = [v[None, :, None] for v in per_eta]

    def reduce(blocks: list[Array]) -> list[Array]:
        parts = terms(e, blocks)
        zeros = tuple(np.zeros((), t.dtype) for t in parts)
        add = lambda x, y: tuple(p + q for p, q in zip(x, y))  # noqa: E731
        return [jnp.sum(t, axis=0) for t in lax.reduce(tuple(parts), zeros, add, (2,))]

    sums: list[Array] = []
    if rows:
        sums = reduce([v[: rows * LANES].reshape(rows, 1, LANES) for v in per_mode])
    if rows * LANES < k:
        rest = reduce([v[rows * LANES:].reshape(1, 1, -1) for v in per_mode])
        sums = [a + b for a, b in zip(sums, rest)] if sums else rest
    return sums


def _ek_terms(e: list[Array], m: list[Array]) -> list[Array]:
    """Two η per division: with ``u = 1 + λ/ρ``, ``1/u_a = u_b/(u_a u_b)`` and vice versa."""
    (inv_a, inv_b), (lam, y2) = e, m
    u_a = jnp.minimum(1.0 + lam * inv_a, _BIG)
    u_b = jnp.minimum(1.0 + lam * inv_b, _BIG)
    p = 1.0 / (u_a * u_b)
    q_a, q_b = u_b * p, u_a * p  # ρ/(ρ + λ) for each of the two
    return [q_a * q_a * y2, q_b * q_b * y2]


def _ek_plain(rho: Array, lam: Array, y2: Array) -> Array:
    q = rho[:, None] / (rho[:, None] + lam)
    return jnp.sum(q * q * y2, axis=-1)


@jax.custom_jvp
def ek_sum(rho: Array, lam: Array, y2: Array) -> Array:
    """``Σ_k y_k² (ρ/(ρ + λ_k))²`` for each ``ρ > 0`` of the 1-D ``rho``.

    One pass, two ``ρ`` per division (division is what an EK pass spends most of its time on).
    The cap ``1 + λ/ρ ≤ 1e150`` changes a term only where ``(ρ/(ρ + λ))² < 1e-300``.
    """
    n = rho.shape[0]
    half = (n + 1) // 2
    inv = 1.0 / jnp.concatenate([rho, rho[n - 1:]]) if n % 2 else 1.0 / rho
    out_a, out_b = mode_sums(_ek_terms, (inv[:half], inv[half:]), (lam, y2))
    return jnp.concatenate([out_a, out_b])[:n]


@ek_sum.defjvp
def ek_sum_jvp(primals: tuple[Array, ...], tangents: tuple[Array, ...]) -> tuple[Array, Array]:
    # Under differentiation the plain formula gives both (same value to rounding, less to compile).
    return jax.jvp(_ek_plain, primals, tangents)


def moments(s: Array, lam: Array, y2: Array | None, n_lam: int, n_y: int,
            lamw: Array | None = None) -> list[Array]:
    """``M_p = Σ_k w_k/(λ_k + s)^p`` for ``p = 1..n_lam`` and ``Y_p = Σ_k y_k²/(λ_k + s)^p`` for
    ``p = 2..n_y + 1``, for each ``s`` of the 1-D array ``s``: one pass over the modes.

    ``w_k = λ_k``, or ``lamw`` when given (modes of a quadrature count with their weight).
    """

    def terms(e: list[Array], m: list[Array]) -> list[Array]:
        (s_,), (lam_, num_, y2_) = e, (m if lamw is not None else [m[0], m[0], m[1]])
        r = 1.0 / (lam_ + s_)
        out = []
        t = num_ * r
        for _ in range(n_lam):
            out.append(t)
            t = t * r
        t = y2_ * (r * r)
        for _ in range(n_y):
            out.append(t)
            t = t * r
        return out

    y2 = jnp.zeros_like(lam) if y2 is None else y2
    return mode_sums(terms, (s,), (lam, y2) if lamw is None else (lam, lamw, y2))


def series(coeffs: Sequence[Array], d: Array, first: int) -> Array:
    """``Σ_j w_j (−δ)^j coeffs[j]`` with ``w_j = 1`` (``first=1``) or ``j + 1`` (``first=2``): the
    moments at ``s + δ`` from those at ``s``, as
    ``1/(λ+s+δ)^p = Σ_j C(p+j−1, j)(−δ)^j/(λ+s)^{p+j}``."""
    out = jnp.zeros_like(d)
    for j in reversed(range(len(coeffs))):
        out = coeffs[j] * (1.0 if first == 1 else j + 1.0) - d * out
    return out
