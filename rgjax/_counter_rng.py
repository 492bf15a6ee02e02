"""Counter-based standard normals: threefry words → 52-bit uniforms → Box–Muller.

The random stream of the Hermite toy Monte Carlo (:mod:`rgjax.toy`). Draw ``j`` of data set ``i``
is a pure function of ``(seed, i, j)``, so a Monte Carlo gives the same numbers whatever its
chunking and however many devices share it, and several kernels can be evaluated on the very
same data sets (common random numbers).

Definition (float64 throughout; :func:`rgjax.toy.toy_inputs` documents it for users): the words of
data set ``i`` are ``jax.random.bits(fold_in(key(seed, impl="threefry2x32"), i), (2h,), uint64)``
with ``h = ⌈n/2⌉``; ``u1_j = 1 − ⌊w_j / 2¹²⌋ / 2⁵²`` in (0, 1], ``u2_j = ⌊w_{h+j} / 2¹²⌋ / 2⁵²``
in [0, 1); the normals are ``r_j cos 2πu2_j`` and ``r_j sin 2πu2_j`` with ``r_j = √(−2 ln u1_j)``.

Why hand-written rather than ``jax.random``: the threefry hash is written out in ``jnp`` (bit
for bit jax's) so that XLA fuses it with what consumes the bits — on CPU jax lowers its own
threefry as a rolled loop whose intermediates go through memory every four rounds — and the
Box–Muller angles use a short polynomial instead of XLA's general float64 ``sin``/``cos``, which
is several times slower. Box–Muller itself is several times cheaper in float64 than
``jax.random.normal``'s inverse error function.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._typing import Array, KeyLike

__all__ = [
    "threefry2x32",
    "unit_interval",
    "sincos_2pi",
    "cos_2pi",
    "seed_key_data",
    "uniforms",
    "normal_halves",
]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_U32 = np.uint32

# Taylor coefficients of sin a / a and cos a in a²: on |a| ≤ π/4 the truncation errors are < 1e-16
# (sin, cos), and the cos series to a²² is < 1e-19 on |a| ≤ π/2.
_SIN_COEFS = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(8))
_COS_COEFS = tuple((-1) ** k / math.factorial(2 * k) for k in range(9))
_COS_WIDE_COEFS = tuple((-1) ** k / math.factorial(2 * k) for k in range(12))


def threefry2x32(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """Threefry-2x32, 20 rounds (Salmon et al. 2011): bit-identical to ``jax.random``'s hash.

    Args:
      k0: first key word, uint32, any shape broadcasting with the others.
      k1: second key word.
      x0: first counter word.
      x1: second counter word.

    Returns:
      The two output words, uint32, of the broadcast shape.
    """
    ks = (k0, k1, k0 ^ k1 ^ _U32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << _U32(r)) | (x1 >> _U32(32 - r))
            x1 = x0 ^ x1
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + _U32(i + 1)
    return x0, x1


def unit_interval(hi: Array, lo: Array) -> Array:
    """The top 52 bits of the 64-bit word ``hi:lo`` (uint32 each) as a float64 in [0, 1) (exact)."""
    word = (hi.astype(jnp.uint64) << np.uint64(32)) | lo.astype(jnp.uint64)
    one_to_two = (word >> np.uint64(12)) | np.uint64(0x3FF0000000000000)
    return jax.lax.bitcast_convert_type(one_to_two, jnp.float64) - 1.0


def _horner(a2: Array, coefs: tuple[float, ...]) -> Array:
    """``Σ_k coefs[k] a2^k`` by Horner's rule."""
    out: Array | float = coefs[-1]
    for coef in coefs[-2::-1]:
        out = out * a2 + coef
    return jnp.asarray(out)  # already an array (len(coefs) > 1): a no-op for the type checker


def sincos_2pi(u: Array) -> tuple[Array, Array]:
    """``cos 2πu`` and ``sin 2πu`` for ``u`` in [0, 1) (any shape), to ~1 ulp.

    ``2πu = (π/2)(q + g)`` with ``q = round(4u)`` and ``|g| ≤ 1/2`` (both exact), a polynomial on
    ``|(π/2)g| ≤ π/4``, and the quarter turn ``q`` applied by selects.
    """
    t = 4.0 * u
    q = jnp.round(t)
    a = (t - q) * (math.pi / 2)
    a2 = a * a
    s = _horner(a2, _SIN_COEFS) * a
    c = _horner(a2, _COS_COEFS)
    quarter = q.astype(jnp.int32) & 3
    cos = jnp.where(quarter == 0, c, jnp.where(quarter == 1, -s, jnp.where(quarter == 2, -c, s)))
    sin = jnp.where(quarter == 0, s, jnp.where(quarter == 1, c, jnp.where(quarter == 2, -s, -c)))
    return cos, sin


def cos_2pi(u: Array) -> Array:
    """``cos 2πu`` for ``u`` in [−1/4, 1] (any shape), to ~1 ulp.

    ``2πu = π(q + g)`` with ``q = round(2u)``, ``|g| ≤ 1/2``: one polynomial on ``|πg| ≤ π/2``
    and the sign ``(−1)^q``.
    """
    t = 2.0 * u
    q = jnp.round(t)
    a = (t - q) * math.pi
    c = _horner(a * a, _COS_WIDE_COEFS)
    return jnp.where((q.astype(jnp.int32) & 1) == 1, -c, c)


def seed_key_data(seed: KeyLike) -> Array:
    """``uint32[2]`` data of the threefry key of ``seed`` (whatever jax's default PRNG impl)."""
    return jax.random.key_data(jax.random.key(seed, impl="threefry2x32"))


def uniforms(key_data: Array, indices: Array, n: int) -> tuple[Array, Array]:
    """The Box–Muller uniforms of data sets ``indices``.

    Args:
      key_data: ``(2,)`` uint32, from :func:`seed_key_data`.
      indices: ``(k,)`` uint32 data-set indices.
      n: points per data set.

    Returns:
      ``u1`` in (0, 1] and ``u2`` in [0, 1), each ``(k, ⌈n/2⌉)`` float64.
    """
    half = -(-n // 2)
    zero = jnp.zeros((), jnp.uint32)
    # fold_in(key, i) = threefry(key, (0, i)) — jax's definition, unrolled here as well
    k0, k1 = threefry2x32(key_data[0], key_data[1], zero, indices[:, None])  # (k, 1) each
    j = jnp.arange(half, dtype=jnp.uint32)[None, :]
    u1 = 1.0 - unit_interval(*threefry2x32(k0, k1, zero, j))
    u2 = unit_interval(*threefry2x32(k0, k1, zero, j + _U32(half)))
    return u1, u2


def normal_halves(key_data: Array, indices: Array, n: int) -> tuple[Array, Array]:
    """The standard normals of data sets ``indices`` ``(k,)`` as the two Box–Muller halves.

    Returns:
      ``(r cos θ, r sin θ)``, shapes ``(k, ⌈n/2⌉)`` and ``(k, n − ⌈n/2⌉)``; a data set's ``n``
      inputs are the two concatenated along the last axis.
    """
    u1, u2 = uniforms(key_data, indices, n)
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    cos, sin = sincos_2pi(u2)
    return r * cos, (r * sin)[:, : n - u1.shape[-1]]
