"""Hermite toy model: non-Gaussian features and the input-dependent ridge (paper Fig. 3, THEORY §5).

Set-up. Inputs ``x ~ N(0, 1)`` in one dimension; features ``ψ_j = He_j / √(j!)`` (probabilists'
Hermite polynomials, orthonormal under N(0, 1)); a kernel ``K = Σ_{j∈D} λ_j ψ_j ψ_j`` over a set of
degrees ``D``; a target given by Hermite coefficients ``y = Σ_t y_t ψ_t``; ``n`` training points;
ridge ``σ²``. The paper's case: ``D = {1, 2}``, ``λ_1 = 1``, ``λ_2 = λ_> ∈ {0, 0.1}``, ``y = ψ_5``,
``n = 100``, ``σ² = 400``, ``m = 5·10⁶`` data sets.

Experiment. For each of ``m`` independent data sets the exact GP posterior mean is
``f̄ = Σ_j c_j ψ_j`` with, ``Φ`` the ``(n, p)`` feature matrix and ``Λ = diag(λ_j)``,

    c = Λ Φᵀ (Φ Λ Φᵀ + σ² I_n)⁻¹ y                       (n × n, the usual GP formula)
      = Λ^{1/2} (I_p + Λ^{1/2} ΦᵀΦ Λ^{1/2} / σ²)⁻¹ Λ^{1/2} Φᵀ y / σ²   (p × p)

(push-through identity ``Λ^{1/2}Φᵀ(ΦΛΦᵀ + σ²)⁻¹ = (σ² + Λ^{1/2}ΦᵀΦΛ^{1/2})⁻¹Λ^{1/2}Φᵀ``). The
second form equals ``(Λ⁻¹ + ΦᵀΦ/σ²)⁻¹ Φᵀy/σ²`` when every λ_j > 0, but stays well defined for
``λ_j = 0`` (that coefficient is then exactly 0) and its matrix has eigenvalues ≥ 1, so a small
Cholesky solve is stable. Per data set only ``ΦᵀΦ`` and ``Φᵀy`` are needed: reductions over the n
points, never an n × n matrix.

Monte Carlo. Data set ``i`` is a function of ``(seed, i)`` alone (:func:`toy_inputs`: threefry
words from ``fold_in(key(seed), i)``, Box–Muller normals), so every result is independent of the
chunking and of the devices, and several kernels (λ vectors) evaluated in one run see the *same*
data sets (common random numbers: each kernel's estimate is what it would be alone, and differences
between kernels have small standard errors). The features are polynomials, so ``ΦᵀΦ`` and ``Φᵀy``
are fixed linear combinations of the power sums ``S_k = Σ_i x_i^k`` (k ≤ 7 for the paper's case);
per data set only those sums are formed — no feature matrix — and the ``p × p`` system is solved by
an unrolled Cholesky. Chunks are processed by one compiled function (jit, the last chunk padded and
masked; ``shard_map`` over a 1-D device mesh when several devices share a chunk) that also merges
the chunk into running float64 mean/co-moment sums with Chan's parallel update. The averaged
predictor is linear in the coefficients, so the full coefficient covariance gives its standard-error
band on any grid.

Theory. Standard (EK, bare ridge): ``c_j = L_j y_j`` with ``L_j = nλ_j / (nλ_j + σ²)``, i.e. 0 for a
target outside the kernel's degrees. Gaussian RG: the kept degrees with the renormalised ridge
``σ² + Σ_> λ_j`` (also 0 there). Input-dependent RG (THEORY §5): integrating out the "greater"
degrees leaves the ridge ``σ²(x) = σ² + Σ_> λ_j ψ_j(x)²`` and a reweighted regression for the kept
coefficients, ``(Λ_<⁻¹ + n⟨Ψ_<ᵀΨ_< / σ²(x)⟩) c = n⟨Ψ_<ᵀ y / σ²(x)⟩``, evaluated by Gauss–Hermite
quadrature; to first order in λ_>/σ² for the paper's case ``c ≈ −(nλ_2√30/σ⁴)/(1/λ_1 + n/σ²)``
because ``⟨ψ_1ψ_5ψ_2²⟩ = √30``. The RG predicts the kept coefficients only.

Accuracy (measured). The RG solves the kept theory in the continuum (EK) limit, so it misses the
finite-n fluctuations of ``ΦᵀΦ``; to first order in λ_> and leading order in ``1/(σ²/λ_1 + n)`` they
change c by ``λ_2 n (2⟨ψ_1³ψ_2²ψ_5⟩ − √30) / (σ⁶ (1/λ_1 + n/σ²)²)`` (``⟨ψ_1³ψ_2²ψ_5⟩ ≈ 104``), i.e. the
RG overestimates |c| by ~6–9 % at the paper's numbers (paired Monte Carlo, m = 5·10⁶, seed 0:
c(0.1) − c(0) = −2.41e−4 ± 0.01e−4 against −2.64e−4) — below the standard error of m = 5·10⁶ data
sets (2.8e−5).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._validate import X64_FIX, check_sigma2

__all__ = [
    "ToyProblem",
    "ToyMonteCarlo",
    "hermite",
    "gauss_hermite",
    "gaussian_expectation",
    "hermite_moment",
    "toy_inputs",
    "posterior_coefficients",
    "trial_coefficients",
    "default_chunk_size",
    "monte_carlo",
    "standard_prediction",
    "gaussian_rg_prediction",
    "rg_prediction",
    "rg_first_order",
    "run_toy",
    "format_table",
]

_MAX_INDEX = 2**32  # fold_in takes a uint32 data-set index
_SMALL_P = 6  # unrolled Cholesky / explicit reductions up to this many features
_QUAD_ORDER = 256

# ----------------------------------------------------------------------------------------------
# validation


def _check_degrees(degrees: Any, name: str) -> tuple[int, ...]:
    """Non-empty tuple of distinct non-negative integer degrees."""
    try:
        vals = tuple(degrees)
    except TypeError:
        vals = (degrees,)
    out = []
    for d in vals:
        if isinstance(d, (bool, np.bool_)) or not float(d).is_integer() or d < 0:
            raise ValueError(f"`{name}` must be non-negative integer Hermite degrees; got {vals!r}.")
        out.append(int(d))
    if not out:
        raise ValueError(f"`{name}` must name at least one Hermite degree.")
    if len(set(out)) != len(out):
        raise ValueError(f"`{name}` has repeated degrees: {vals!r}.")
    return tuple(out)


def _check_target(target: Any) -> tuple[tuple[int, float], ...]:
    """``{degree: coef}`` or an array indexed by degree → sorted ``((degree, coef), ...)``, nonzero."""
    if isinstance(target, Mapping):
        items = list(target.items())
    else:
        arr = np.atleast_1d(np.asarray(target, dtype=float))
        if arr.ndim == 2 and arr.shape[1] == 2:  # ((degree, coef), ...), the normalised form
            items = [(d, c) for d, c in arr.tolist()]
        elif arr.ndim == 1:
            items = list(enumerate(arr.tolist()))
        else:
            raise ValueError("`target` must be {degree: coef}, ((degree, coef), ...) or a 1-D array "
                             f"(entry d = coefficient of ψ_d); got shape {arr.shape}.")
    degs = _check_degrees([d for d, _ in items], "target") if items else ()
    coefs = [float(c) for _, c in items]
    if not all(math.isfinite(c) for c in coefs):
        raise ValueError(f"`target` coefficients must be finite; got {dict(zip(degs, coefs))!r}.")
    pairs = tuple(sorted((d, c) for d, c in zip(degs, coefs) if c != 0.0))
    if not pairs:
        raise ValueError("`target` has no nonzero Hermite coefficient; give e.g. {5: 1.0}.")
    return pairs


def _check_int(value: Any, name: str, lo: int, why: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not float(value).is_integer() or value < lo:
        raise ValueError(f"`{name}` must be an integer >= {lo} ({why}); got {value!r}.")
    return int(value)


def _check_lambdas(lambdas: Any, p: int, name: str = "lambdas") -> np.ndarray:
    """One λ vector ``(p,)`` or a stack ``(L, p)`` → float64 ``(L, p)``, finite and ≥ 0."""
    lam = np.asarray(lambdas, dtype=float)
    if lam.ndim == 1:
        lam = lam[None]
    if lam.ndim != 2 or lam.shape[1] != p or lam.shape[0] < 1:
        raise ValueError(f"`{name}` must have shape ({p},) or (L, {p}), one eigenvalue per kernel "
                         f"degree; got shape {np.shape(lambdas)}.")
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"`{name}` (kernel eigenvalues) must be finite and >= 0; got {lam.tolist()!r}.")
    return lam


def _require_x64() -> None:
    if not jax.config.jax_enable_x64:
        raise RuntimeError(f"the toy Monte Carlo accumulates in float64: {X64_FIX}.")


# ----------------------------------------------------------------------------------------------
# the problem


@dataclasses.dataclass(frozen=True)
class ToyProblem:
    """Everything but the kernel eigenvalues: degrees, target, n, σ² (validated on construction).

    Attributes:
      degrees: the kernel's Hermite degrees, ``(p,)``; eigenvalues are passed separately so that
        several kernels can share one Monte Carlo run.
      target: ``((degree, coef), ...)`` (nonzero coefficients, sorted); the constructor also takes
        ``{degree: coef}`` or a 1-D array whose entry d is the coefficient of ψ_d.
      n: training points per data set.
      sigma2: ridge σ² > 0.
    """

    degrees: tuple[int, ...] = (1, 2)
    target: Any = ((5, 1.0),)
    n: int = 100
    sigma2: float = 400.0

    def __post_init__(self):
        object.__setattr__(self, "degrees", _check_degrees(self.degrees, "degrees"))
        object.__setattr__(self, "target", _check_target(self.target))
        object.__setattr__(self, "n", _check_int(self.n, "n", 1, "training points per data set"))
        check_sigma2(self.sigma2)
        object.__setattr__(self, "sigma2", float(self.sigma2))

    @property
    def p(self) -> int:
        return len(self.degrees)

    @property
    def max_degree(self) -> int:
        return max(max(self.degrees), max(d for d, _ in self.target))

    def target_on(self, degrees: Sequence[int]) -> np.ndarray:
        """The target's coefficients on ``degrees`` (0 where it has none), ``(len(degrees),)``."""
        t = dict(self.target)
        return np.array([t.get(d, 0.0) for d in degrees])

    def to_dict(self) -> dict:
        return {"degrees": list(self.degrees), "target": {str(d): c for d, c in self.target},
                "n": self.n, "sigma2": self.sigma2}


# ----------------------------------------------------------------------------------------------
# Hermite features and Gaussian quadrature


def _hermite_table(x: Any, max_degree: int) -> list:
    """``[ψ_0(x), …, ψ_max(x)]`` by ``ψ_{k+1} = (x ψ_k − √k ψ_{k−1}) / √(k+1)`` (numpy or jax)."""
    table = [x * 0 + 1.0, x]
    for k in range(1, max_degree):
        table.append((x * table[k] - math.sqrt(k) * table[k - 1]) / math.sqrt(k + 1))
    return table[: max_degree + 1]


def hermite(x: Any, degrees: Sequence[int] | int) -> Any:
    """Orthonormal Hermite features ``ψ_d(x) = He_d(x)/√(d!)``.

    Args:
      x: inputs, any shape ``S`` (numpy or JAX array).
      degrees: an int or a sequence of ``q`` degrees.

    Returns:
      ``S`` for an int, else ``S + (q,)``; numpy in, numpy out.
    """
    single = np.ndim(degrees) == 0
    degs = _check_degrees([degrees] if single else degrees, "degrees")
    table = _hermite_table(x, max(degs))
    if single:
        return table[degs[0]]
    xp = jnp if isinstance(x, jax.Array) else np
    return xp.stack([table[d] for d in degs], axis=-1)


def gauss_hermite(order: int = _QUAD_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights ``(order,)`` with ``Σ w f(x) ≈ E_{x~N(0,1)}[f(x)]``, exact for polynomials
    of degree < 2·order."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    return nodes, weights / math.sqrt(2 * math.pi)


def gaussian_expectation(f: Callable[[np.ndarray], np.ndarray], order: int = _QUAD_ORDER) -> Any:
    """``E_{x~N(0,1)}[f(x)]`` by Gauss–Hermite quadrature; ``f`` maps nodes ``(order,)`` to
    ``(order,)`` or ``(order, ...)``."""
    nodes, weights = gauss_hermite(order)
    return np.tensordot(weights, np.asarray(f(nodes)), axes=(0, 0))


def hermite_moment(*degrees: int) -> float:
    """``⟨Π_i ψ_{d_i}⟩`` under N(0, 1), exact (quadrature of the right order); e.g.
    ``hermite_moment(1, 5, 2, 2) = √30``."""
    degs = [_check_int(d, "degrees", 0, "Hermite degrees") for d in degrees]
    order = sum(degs) // 2 + 1
    return float(gaussian_expectation(lambda x: np.prod([hermite(x, d) for d in degs], axis=0), order))


# ----------------------------------------------------------------------------------------------
# random inputs: threefry words → Box–Muller normals


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_U32 = np.uint32


def _threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple:
    """Threefry-2x32, 20 rounds (Salmon et al. 2011): bit-identical to ``jax.random``'s hash.

    Written out in jnp so that XLA fuses it with what consumes the bits; on CPU jax lowers its own
    threefry as a rolled loop whose intermediate arrays go through memory every four rounds.
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


def _unit_interval(hi: jax.Array, lo: jax.Array) -> jax.Array:
    """The top 52 bits of the 64-bit word ``hi:lo`` as a float64 in [0, 1) (exact)."""
    word = (hi.astype(jnp.uint64) << np.uint64(32)) | lo.astype(jnp.uint64)
    one_to_two = (word >> np.uint64(12)) | np.uint64(0x3FF0000000000000)
    return jax.lax.bitcast_convert_type(one_to_two, jnp.float64) - 1.0


# Taylor coefficients of sin a / a and cos a in a²: on |a| ≤ π/4 the truncation errors are < 1e-16
# (sin, cos), and the cos series to a²² is < 1e-19 on |a| ≤ π/2.
_SIN_COEFS = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(8))
_COS_COEFS = tuple((-1) ** k / math.factorial(2 * k) for k in range(9))
_COS_WIDE_COEFS = tuple((-1) ** k / math.factorial(2 * k) for k in range(12))


def _horner(a2: jax.Array, coefs: tuple) -> jax.Array:
    out = coefs[-1]
    for coef in coefs[-2::-1]:
        out = out * a2 + coef
    return out


def _sincos_2pi(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``cos 2πu`` and ``sin 2πu`` for u in [0, 1), to ~1 ulp: 2πu = (π/2)(q + g) with
    ``q = round(4u)`` and ``|g| ≤ 1/2`` (both exact), a polynomial on ``|(π/2)g| ≤ π/4``, and the
    quarter turn q applied by selects (XLA's general float64 sin/cos is far slower)."""
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


def _cos_2pi(u: jax.Array) -> jax.Array:
    """``cos 2πu`` for u in [−1/4, 1], to ~1 ulp: ``2πu = π(q + g)``, ``q = round(2u)``,
    ``|g| ≤ 1/2``, one polynomial on ``|πg| ≤ π/2`` and the sign ``(−1)^q``."""
    t = 2.0 * u
    q = jnp.round(t)
    a = (t - q) * math.pi
    c = _horner(a * a, _COS_WIDE_COEFS)
    return jnp.where((q.astype(jnp.int32) & 1) == 1, -c, c)


def _seed_key_data(seed: int) -> jax.Array:
    """``uint32[2]`` data of the experiment's threefry key (whatever jax's default PRNG impl)."""
    return jax.random.key_data(jax.random.key(seed, impl="threefry2x32"))


def _uniforms(key_data: jax.Array, indices: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """The Box–Muller uniforms of data sets ``indices`` ``(k,)``: ``u1`` in (0, 1] and ``u2`` in
    [0, 1), each ``(k, ⌈n/2⌉)`` (see :func:`toy_inputs`)."""
    half = -(-n // 2)
    zero = jnp.zeros((), jnp.uint32)
    # fold_in(key, i) = threefry(key, (0, i)) — jax's definition, unrolled here as well
    k0, k1 = _threefry2x32(key_data[0], key_data[1], zero, indices[:, None])  # (k, 1) each
    j = jnp.arange(half, dtype=jnp.uint32)[None, :]
    u1 = 1.0 - _unit_interval(*_threefry2x32(k0, k1, zero, j))
    u2 = _unit_interval(*_threefry2x32(k0, k1, zero, j + _U32(half)))
    return u1, u2


def _normal_halves(key_data: jax.Array, indices: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """Data sets ``indices`` ``(k,)``: their inputs as ``(r cos θ, r sin θ)``, ``(k, ⌈n/2⌉)`` and
    ``(k, n − ⌈n/2⌉)`` (the inputs are the two concatenated)."""
    u1, u2 = _uniforms(key_data, indices, n)
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    cos, sin = _sincos_2pi(u2)
    return r * cos, (r * sin)[:, : n - u1.shape[-1]]


def _materialise(arrays: tuple, trips: jax.Array) -> tuple:
    """``arrays`` unchanged, but computed once into memory: the identity as a while loop whose trip
    count (``trips``, 1 at run time) the compiler cannot know. XLA otherwise fuses the whole
    threefry-and-polynomial producer into every consumer — recomputing it once per power sum —
    and on CPU drops ``lax.optimization_barrier``. A performance device only."""
    one = trips.astype(arrays[0].dtype)

    def body(carry):
        return (carry[0] + 1,) + tuple(a * one for a in carry[1:])

    init = (jnp.zeros((), trips.dtype),) + tuple(arrays)
    return jax.lax.while_loop(lambda c: c[0] < trips, body, init)[1:]


def _pair_power_sums(key_data: jax.Array, indices: jax.Array, n: int, top: int,
                     trips: jax.Array) -> list:
    """``[S_0 = n, S_1, …, S_top]``, ``S_k = Σ_i x_i^k`` of the inputs of data sets ``indices``,
    straight from the Box–Muller ``(r, θ)`` without forming the inputs.

    A pair ``(a, b) = (r cos θ, r sin θ)`` has ``a^k + b^k = r^k e_k`` with ``e_k = cos^k θ +
    sin^k θ``, which obeys ``e_k = σ e_{k−1} − p e_{k−2}`` (``e_0 = 2``, ``e_1 = σ``) for
    ``σ = cos θ + sin θ = √2 C`` and ``p = cos θ sin θ = C² − 1/2``, ``C = cos(θ − π/4)``. So
    per pair one cosine, and one power sum per k over the pairs; for odd n the last point (the
    cosine of an unpaired draw) is added directly.
    """
    u1, u2 = _uniforms(key_data, indices, n)
    full = n // 2
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    cos_shift = _cos_2pi(u2 - 0.125)  # u2 − 1/8 is exact on the 2⁻⁵² grid
    r, cos_shift = _materialise((r, cos_shift), trips)
    rp, c = r[:, :full], cos_shift[:, :full]
    sigma, prod = math.sqrt(2.0) * c, c * c - 0.5
    e = [None, sigma, jnp.ones_like(c)]  # e_2 = cos² + sin² = 1
    for k in range(3, top + 1):
        e.append(sigma * e[k - 1] - prod * e[k - 2])
    r_pow = _powers(rp, top)
    sums = [jnp.sum(r_pow[k - 1] * e[k], axis=-1) for k in range(1, top + 1)]
    if n % 2:  # the unpaired last point, r cos θ
        last = r[:, full] * _cos_2pi(u2[:, full])
        sums = [s + pk for s, pk in zip(sums, _powers(last, top))]
    return [jnp.full(sums[0].shape, float(n), sums[0].dtype)] + sums


def toy_inputs(seed: int, indices: Any, n: int) -> jax.Array:
    """The inputs of data sets ``indices``: ``x[i] ~ N(0, 1)^n``, a function of ``(seed, i)`` only.

    Definition (float64 throughout): with ``h = ⌈n/2⌉`` and
    ``w = jax.random.bits(jax.random.fold_in(jax.random.key(seed, impl="threefry2x32"), i), (2h,),
    jnp.uint64)`` (threefry-2x32, counters 0 … 2h−1 — computed here by a fused re-implementation
    that equals this bit for bit), ``u1_j = 1 − ⌊w_j / 2¹²⌋ / 2⁵²`` in (0, 1] and
    ``u2_j = ⌊w_{h+j} / 2¹²⌋ / 2⁵²`` in [0, 1); Box–Muller gives ``x_j = r_j cos 2πu2_j`` and
    ``x_{h+j} = r_j sin 2πu2_j`` with ``r_j = √(−2 ln u1_j)``, truncated to n points. These are
    exact N(0, 1) draws up to the 52-bit grid of the uniforms (|x| ≤ 8.5, a tail of
    probability 2⁻⁵²). Box–Muller is used instead of ``jax.random.normal``'s inverse error
    function because it is several times cheaper in float64; :func:`monte_carlo` never forms
    these inputs but takes their power sums straight from each pair's ``(r_j, u2_j)``.

    Args:
      seed: integer seed of the experiment.
      indices: ``(k,)`` data-set indices in ``[0, 2³²)``.
      n: points per data set.

    Returns:
      ``(k, n)`` float64.
    """
    _require_x64()
    n = _check_int(n, "n", 1, "points per data set")
    idx = jnp.asarray(indices, dtype=jnp.uint32)
    return _inputs_jit(_seed_key_data(seed), idx, n)


@partial(jax.jit, static_argnums=2)
def _inputs_jit(key_data: jax.Array, indices: jax.Array, n: int) -> jax.Array:
    return jnp.concatenate(_normal_halves(key_data, indices, n), axis=-1)


# ----------------------------------------------------------------------------------------------
# per-data-set exact posterior

_MAX_POWER = 12  # power sums up to Σx¹²; beyond, monomial cancellation would cost accuracy


def _psi_monomials(d: int) -> np.ndarray:
    """Monomial coefficients of ``ψ_d = He_d / √(d!)``, lowest power first, ``(d + 1,)``."""
    return np.polynomial.hermite_e.herme2poly(np.eye(d + 1)[d]) / math.sqrt(math.factorial(d))


@lru_cache(maxsize=64)
def _power_plan(degrees: tuple[int, ...], target: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """``(G, R)`` with ``ΦᵀΦ_ab = Σ_k G[k, a, b] S_k`` and ``Φᵀy_a = Σ_k R[k, a] S_k``, where
    ``S_k = Σ_i x_i^k`` (``S_0 = n``): the features are polynomials, so every entry is a fixed
    combination of power sums. None when a power above ``_MAX_POWER`` would be needed."""
    top = max(2 * max(degrees), max(degrees) + max(d for d, _ in target))
    if top > _MAX_POWER:
        return None
    psi = [_psi_monomials(d) for d in degrees]
    y = np.zeros(top + 1)
    for d, c in target:
        y[: d + 1] += c * _psi_monomials(d)
    gram = np.zeros((top + 1, len(degrees), len(degrees)))
    rhs = np.zeros((top + 1, len(degrees)))
    for a, pa in enumerate(psi):
        for b, pb in enumerate(psi):
            prod = np.convolve(pa, pb)
            gram[: prod.size, a, b] = prod
        prod = np.convolve(pa, y)[: top + 1]
        rhs[: prod.size, a] = prod
    return gram, rhs


def _powers(x: jax.Array, top: int) -> list:
    """``[x¹, …, x^top]`` by squaring (``x^k = x^⌊k/2⌋ · x^⌈k/2⌉``)."""
    out = [None, x]
    for k in range(2, top + 1):
        out.append(out[k // 2] * out[k - k // 2])
    return out[1:]


def _power_sums(parts: Sequence[jax.Array], top: int, n: int) -> list:
    """``[S_0 = n, S_1, …, S_top]``, ``S_k = Σ_i x_i^k`` over the last axis of all ``parts``."""
    sums = None
    for part in parts:
        if part.shape[-1] == 0:
            continue
        s = [jnp.sum(pk, axis=-1) for pk in _powers(part, top)]
        sums = s if sums is None else [u + v for u, v in zip(sums, s)]
    return [jnp.full(sums[0].shape, float(n), sums[0].dtype)] + sums


def _combine(sums: list, coefs: np.ndarray) -> jax.Array:
    """``Σ_k coefs[k] S_k`` over the nonzero coefficients."""
    terms = [float(c) * sums[k] for k, c in enumerate(coefs) if c != 0.0]
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(sums[0])


def _gram_and_rhs_from_sums(sums: list, plan: tuple) -> tuple[jax.Array, jax.Array]:
    """``ΦᵀΦ`` ``(..., p, p)`` and ``Φᵀy`` ``(..., p)`` from power sums (:func:`_power_plan`)."""
    gram_c, rhs_c = plan
    p = gram_c.shape[1]
    if p > _SMALL_P:
        s = jnp.stack(sums, axis=-1)
        return jnp.einsum("...k,kab->...ab", s, gram_c), jnp.einsum("...k,ka->...a", s, rhs_c)
    g = [[None] * p for _ in range(p)]
    for a in range(p):
        for b in range(a + 1):
            g[a][b] = g[b][a] = _combine(sums, gram_c[:, a, b])
    gram = jnp.stack([jnp.stack(row, -1) for row in g], -2)
    rhs = jnp.stack([_combine(sums, rhs_c[:, a]) for a in range(p)], -1)
    return gram, rhs


def _gram_and_rhs_table(x: jax.Array, degrees: tuple[int, ...],
                        target: tuple) -> tuple[jax.Array, jax.Array]:
    """``ΦᵀΦ`` ``(..., p, p)`` and ``Φᵀy`` ``(..., p)`` for inputs ``x`` ``(..., n)`` from the
    Hermite features themselves (the general path, for degrees beyond the power-sum plan)."""
    table = _hermite_table(x, max(max(degrees), max(d for d, _ in target)))
    y = sum(c * table[d] for d, c in target)
    feats = [table[d] for d in degrees]
    p = len(degrees)
    if p > _SMALL_P:
        phi = jnp.stack(feats, -1)
        return jnp.einsum("...ia,...ib->...ab", phi, phi), jnp.einsum("...ia,...i->...a", phi, y)
    g = [[None] * p for _ in range(p)]
    for a in range(p):
        for b in range(a + 1):
            g[a][b] = g[b][a] = jnp.sum(feats[a] * feats[b], axis=-1)
    gram = jnp.stack([jnp.stack(row, -1) for row in g], -2)
    rhs = jnp.stack([jnp.sum(f * y, axis=-1) for f in feats], -1)
    return gram, rhs


def _gram_and_rhs(parts: Sequence[jax.Array], n: int, degrees: tuple[int, ...],
                  target: tuple) -> tuple[jax.Array, jax.Array]:
    """``ΦᵀΦ`` and ``Φᵀy`` of the points in ``parts`` (arrays ``(..., n_i)``, ``Σ n_i = n``): from
    power sums of x when the degrees allow (:data:`_MAX_POWER`), else from the feature table."""
    plan = _power_plan(degrees, target)
    if plan is None:
        x = jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        return _gram_and_rhs_table(x, degrees, target)
    return _gram_and_rhs_from_sums(_power_sums(parts, plan[0].shape[0] - 1, n), plan)


def _spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``a c = b`` for SPD ``a`` ``(..., p, p)``, ``b`` ``(..., p)``: an unrolled Cholesky for
    small p (elementwise over the batch — far faster than batched LAPACK on 2 × 2 systems)."""
    p = a.shape[-1]
    if p > _SMALL_P:
        chol = jnp.linalg.cholesky(a)
        return jax.scipy.linalg.cho_solve((chol, True), b[..., None])[..., 0]
    low = [[None] * p for _ in range(p)]
    for j in range(p):
        low[j][j] = jnp.sqrt(a[..., j, j] - sum(low[j][k] ** 2 for k in range(j)))
        for i in range(j + 1, p):
            low[i][j] = (a[..., i, j] - sum(low[i][k] * low[j][k] for k in range(j))) / low[j][j]
    z: list = []
    for i in range(p):
        z.append((b[..., i] - sum(low[i][k] * z[k] for k in range(i))) / low[i][i])
    c: list = [None] * p
    for i in reversed(range(p)):
        c[i] = (z[i] - sum(low[k][i] * c[k] for k in range(i + 1, p))) / low[i][i]
    return jnp.stack(c, -1)


def _coefficients(gram: jax.Array, rhs: jax.Array, sqrt_lam: jax.Array, sigma2: float) -> jax.Array:
    """``c = s ⊙ (I + s sᵀ ⊙ ΦᵀΦ/σ²)⁻¹ (s ⊙ Φᵀy/σ²)`` with ``s = √λ``.

    Shapes: gram ``(..., p, p)``, rhs ``(..., p)``, sqrt_lam ``(L, p)`` → ``(..., L, p)``.
    """
    p = sqrt_lam.shape[-1]
    outer = sqrt_lam[:, :, None] * sqrt_lam[:, None, :]  # (L, p, p)
    a = jnp.eye(p) + outer * gram[..., None, :, :] / sigma2
    b = sqrt_lam * rhs[..., None, :] / sigma2
    return sqrt_lam * _spd_solve(a, b)


def posterior_coefficients(x: Any, problem: ToyProblem, lambdas: Any) -> jax.Array:
    """Exact GP posterior-mean coefficients on the kernel's degrees, per data set.

    Args:
      x: ``(..., n)`` inputs of the data sets (e.g. from :func:`toy_inputs`).
      problem: degrees, target, σ².
      lambdas: ``(p,)`` or ``(L, p)`` kernel eigenvalues.

    Returns:
      ``(..., L, p)``: ``c[..., l, j]`` multiplies ``ψ_{degrees[j]}`` in the posterior mean.
    """
    lam = _check_lambdas(lambdas, problem.p)
    return _posterior_jit(jnp.asarray(x), jnp.sqrt(jnp.asarray(lam)), jnp.asarray(problem.sigma2),
                          problem.degrees, problem.target)


@partial(jax.jit, static_argnums=(3, 4))
def _posterior_jit(x, sqrt_lam, sigma2, degrees, target):
    gram, rhs = _gram_and_rhs([x], x.shape[-1], degrees, target)
    return _coefficients(gram, rhs, sqrt_lam, sigma2)


def _set_coefficients(key_data, indices, sqrt_lam, sigma2, *, n, degrees, target) -> jax.Array:
    """Draw data sets ``indices`` ``(k,)`` and solve: ``(k, L, p)`` — the Monte Carlo's kernel
    (power sums straight from the Box–Muller draws where the degrees allow)."""
    plan = _power_plan(degrees, target)
    if plan is None:
        gram, rhs = _gram_and_rhs_table(jnp.concatenate(_normal_halves(key_data, indices, n), -1),
                                        degrees, target)
    else:
        trips = (sigma2 > 0).astype(jnp.int32)  # 1: σ² > 0 is validated, unknown when compiling
        sums = _pair_power_sums(key_data, indices, n, plan[0].shape[0] - 1, trips)
        gram, rhs = _gram_and_rhs_from_sums(sums, plan)
    return _coefficients(gram, rhs, sqrt_lam, sigma2)


@partial(jax.jit, static_argnames=("n", "degrees", "target"))
def _trials_jit(key_data, indices, sqrt_lam, sigma2, *, n, degrees, target):
    return _set_coefficients(key_data, indices, sqrt_lam, sigma2, n=n, degrees=degrees,
                             target=target)


def trial_coefficients(problem: ToyProblem, lambdas: Any, indices: Any, seed: int = 0) -> jax.Array:
    """Per-data-set coefficients ``(k, L, p)`` of data sets ``indices`` ``(k,)`` — exactly the ones
    :func:`monte_carlo` averages (same draws, same computation); equal, to rounding, to
    ``posterior_coefficients(toy_inputs(seed, indices, n), problem, lambdas)``."""
    _require_x64()
    lam = _check_lambdas(lambdas, problem.p)
    idx = jnp.asarray(indices, dtype=jnp.uint32)
    return _trials_jit(_seed_key_data(seed), idx, jnp.sqrt(jnp.asarray(lam)),
                       jnp.asarray(problem.sigma2), n=problem.n, degrees=problem.degrees,
                       target=problem.target)


# ----------------------------------------------------------------------------------------------
# Monte Carlo: chunked, chunk-size- and device-count-independent accumulation

_AXIS = "sets"
_CHUNK_BUDGET = {"cpu": 16e6}  # bytes of per-chunk work arrays per device; accelerators: 256 MB


def default_chunk_size(n: int, max_degree: int, budget_bytes: float = 16e6) -> int:
    """Data sets per chunk (per device) so that the ``(chunk, n)`` float64 work arrays fit in about
    ``budget_bytes`` (16 MB, cache-sized, on CPU; :func:`monte_carlo` uses 256 MB on GPU/TPU); a
    power of two, at least 256."""
    per_set = 8.0 * n * (max_degree + 4)
    return int(max(256, 2 ** math.floor(math.log2(max(1.0, budget_bytes / per_set)))))


def _resolve_devices(devices: Any) -> tuple:
    """``None`` (all local devices), a count k (the first k), or a sequence of devices."""
    local = jax.local_devices()
    if devices is None:
        return tuple(local)
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, (bool, np.bool_)):
        if not 1 <= devices <= len(local):
            raise ValueError(f"`devices` = {devices} but {len(local)} local device(s) exist; pass "
                             f"1 … {len(local)}, a list of jax devices, or None for all.")
        return tuple(local[: int(devices)])
    try:
        devs = tuple(devices)
    except TypeError:
        devs = (devices,)
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        raise ValueError("`devices` must be None (all local devices), a device count, or a "
                         f"non-empty sequence of jax devices; got {devices!r}.")
    if len(set(devs)) != len(devs):
        raise ValueError(f"`devices` lists a device twice: {devs!r}.")
    return devs


def _set_mesh(devices: tuple) -> jax.sharding.Mesh:
    """1-D mesh ``('sets',)``; Auto axis type where jax has axis types (jax >= 0.10 defaults to
    Explicit)."""
    arr = np.empty(len(devices), dtype=object)
    arr[:] = devices
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is not None:
        try:
            return jax.sharding.Mesh(arr, (_AXIS,), axis_types=(axis_type.Auto,))
        except TypeError:  # pragma: no cover - jax without axis_types in Mesh
            pass
    return jax.sharding.Mesh(arr, (_AXIS,))  # pragma: no cover


def _shard_map(f: Callable, mesh: Any, in_specs: Any, out_specs: Any) -> Callable:
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # pragma: no cover - jax < 0.6

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def _chan_merge(state: tuple, count: jax.Array, mean: jax.Array, m2: jax.Array) -> tuple:
    """Chan et al.'s parallel merge of (count, mean ``(q,)``, co-moment ``(q, q)``) pairs."""
    n_a, mean_a, m2_a = state
    total = n_a + count
    delta = mean - mean_a
    frac = count / jnp.maximum(total, 1.0)
    return (total, mean_a + delta * frac, m2_a + m2 + jnp.outer(delta, delta) * n_a * frac)


def _masked_stats(c: jax.Array, valid: jax.Array) -> tuple:
    """(count, mean, co-moment) of the rows of ``c`` ``(k, q)`` where ``valid``."""
    w = valid.astype(c.dtype)
    count = jnp.sum(w)
    mean = (w @ c) / jnp.maximum(count, 1.0)
    dev = (c - mean) * w[:, None]
    return count, mean, dev.T @ dev


def _chunk_step(state, key_data, m, sqrt_lam, sigma2, *, chunk, n, degrees, target, mesh):
    """Data sets ``start … start+chunk−1`` (those < m count; ``start`` is the last entry of
    ``state``), split evenly over the mesh: each device draws and solves its share and returns its
    (count, mean, co-moment); the shares are merged into ``state`` in device order, and ``start``
    advances by ``chunk`` (kept on the device: no host transfer per chunk)."""
    n_dev = mesh.devices.size
    local = chunk // n_dev
    *stats, start = state

    def shard(key_data, start, m, sqrt_lam, sigma2):
        first = start + jax.lax.axis_index(_AXIS).astype(jnp.uint32) * _U32(local)
        idx = first + jnp.arange(local, dtype=jnp.uint32)
        c = _set_coefficients(key_data, idx, sqrt_lam, sigma2, n=n, degrees=degrees, target=target)
        return tuple(s[None] for s in _masked_stats(c.reshape(local, -1), idx < m))

    from jax.sharding import PartitionSpec as P

    counts, means, m2s = _shard_map(shard, mesh, (P(),) * 5, (P(_AXIS),) * 3)(
        key_data, start, m, sqrt_lam, sigma2)
    stats = tuple(stats)
    for d in range(n_dev):
        stats = _chan_merge(stats, counts[d], means[d], m2s[d])
    return (*stats, start + _U32(chunk))


@lru_cache(maxsize=16)
def _compiled_step(chunk: int, n: int, degrees: tuple, target: tuple, shape: tuple[int, int],
                   devices: tuple):
    """Ahead-of-time compiled :func:`_chunk_step` over ``devices`` and the replicated sharding of
    its arguments (cached: repeated runs skip compilation)."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = _set_mesh(devices)
    rep = NamedSharding(mesh, P())
    q = shape[0] * shape[1]
    fl, u32 = jnp.float64, jnp.uint32
    f = partial(jax.ShapeDtypeStruct, sharding=rep)
    args = ((f((), fl), f((q,), fl), f((q, q), fl), f((), u32)), f((2,), u32), f((), u32),
            f(shape, fl), f((), fl))
    step = partial(_chunk_step, chunk=chunk, n=n, degrees=degrees, target=target, mesh=mesh)
    jitted = jax.jit(step, in_shardings=rep, out_shardings=rep)
    return jitted.lower(*args).compile(), rep


@dataclasses.dataclass(frozen=True)
class ToyMonteCarlo:
    """Averaged exact posterior over ``m`` data sets, for ``L`` kernels sharing the data sets.

    Attributes:
      problem: the :class:`ToyProblem`.
      lambdas: ``(L, p)`` kernel eigenvalues.
      m: number of data sets; seed: the experiment's seed; chunk_size: data sets per chunk (all
        devices together).
      mean: ``(L, p)`` mean posterior coefficients.
      cov: ``(L·p, L·p)`` sample covariance (ddof = 1) of the per-data-set coefficient vector
        (kernels stacked), so SEs of any linear combination — predictor values, differences between
        kernels — follow.
      compile_s, run_s: seconds spent compiling the chunk step (≈ 0 when cached) and running
        the chunks.
      n_devices: devices each chunk was split over.
    """

    problem: ToyProblem
    lambdas: np.ndarray
    m: int
    seed: int
    chunk_size: int
    mean: np.ndarray
    cov: np.ndarray
    compile_s: float = math.nan
    run_s: float = math.nan
    n_devices: int = 1

    @property
    def coef_cov(self) -> np.ndarray:
        """Per-kernel covariance of the per-data-set coefficients, ``(L, p, p)``."""
        L, p = self.lambdas.shape
        c = self.cov.reshape(L, p, L, p)
        return np.stack([c[i, :, i, :] for i in range(L)])

    @property
    def coef_se(self) -> np.ndarray:
        """Standard errors ``std/√m`` of :attr:`mean`, ``(L, p)``."""
        return np.sqrt(np.diagonal(self.coef_cov, axis1=1, axis2=2) / self.m)

    def predictor(self, grid: Any) -> tuple[np.ndarray, np.ndarray]:
        """Averaged predictor on ``grid`` ``(G,)`` and its standard error: two ``(L, G)`` arrays."""
        psi = np.asarray(hermite(np.asarray(grid, dtype=float), self.problem.degrees))  # (G, p)
        mean = self.mean @ psi.T
        var = np.einsum("gp,lpq,gq->lg", psi, self.coef_cov, psi)
        return mean, np.sqrt(np.maximum(var, 0.0) / self.m)

    def difference_se(self, i: int, j: int) -> np.ndarray:
        """SE ``(p,)`` of ``mean[i] − mean[j]`` (small: both kernels saw the same data sets)."""
        L, p = self.lambdas.shape
        c = self.cov.reshape(L, p, L, p)
        var = np.diag(c[i, :, i, :] + c[j, :, j, :] - c[i, :, j, :] - c[j, :, i, :])
        return np.sqrt(np.maximum(var, 0.0) / self.m)

    def to_dict(self) -> dict:
        """JSON-ready summary (lists and floats)."""
        return {"problem": self.problem.to_dict(), "lambdas": self.lambdas.tolist(), "m": self.m,
                "seed": self.seed, "chunk_size": self.chunk_size, "mean": self.mean.tolist(),
                "se": self.coef_se.tolist(), "coef_cov": self.coef_cov.tolist(),
                "cov": self.cov.tolist(), "compile_s": self.compile_s, "run_s": self.run_s,
                "n_devices": self.n_devices}


def monte_carlo(
    problem: ToyProblem,
    lambdas: Any,
    m: int,
    *,
    seed: int = 0,
    chunk_size: int | None = None,
    devices: Any = None,
    progress: bool = True,
) -> ToyMonteCarlo:
    """Average the exact posterior-mean coefficients over ``m`` independent data sets.

    Per data set: draw its n inputs (:func:`toy_inputs`), form ``ΦᵀΦ`` and ``Φᵀy`` from the power
    sums ``Σx^k`` (the features are polynomials; no feature matrix is built), solve the ``p × p``
    system in closed form, and merge into running float64 mean/co-moment sums.

    Args:
      problem: degrees, target, n, σ².
      lambdas: ``(p,)`` or ``(L, p)`` eigenvalues; all ``L`` kernels use the same data sets.
      m: number of data sets (≥ 2).
      seed: data set i is a function of ``(seed, i)`` only (:func:`toy_inputs`), so results do
        not depend on ``chunk_size`` or ``devices`` beyond float rounding.
      chunk_size: data sets per compiled step, all devices together (rounded up to a multiple of
        the device count); default :func:`default_chunk_size` per device.
      devices: split each chunk over these devices (``shard_map`` over a 1-D mesh): None for all
        local devices (one on a plain CPU), a count k for the first k, or a sequence of devices.
      progress: show a tqdm bar over chunks.

    Returns:
      a :class:`ToyMonteCarlo` (mean ``(L, p)``, covariance ``(L·p, L·p)``).
    """
    _require_x64()
    lam = _check_lambdas(lambdas, problem.p)
    m = _check_int(m, "m", 2, "the standard error needs two data sets")
    devs = _resolve_devices(devices)
    n_dev = len(devs)
    if chunk_size is None:
        budget = _CHUNK_BUDGET.get(devs[0].platform, 256e6)
        chunk_size = n_dev * default_chunk_size(problem.n, problem.max_degree, budget)
    chunk = min(_check_int(chunk_size, "chunk_size", 1, "data sets per chunk"), m)
    chunk = -(-chunk // n_dev) * n_dev
    n_chunks = -(-m // chunk)
    if n_chunks * chunk > _MAX_INDEX or m >= _MAX_INDEX:
        raise ValueError(f"`m` = {m} exceeds the 2**32 data-set indices that fold_in can address.")

    t0 = time.perf_counter()
    step, rep = _compiled_step(chunk, problem.n, problem.degrees, problem.target, lam.shape, devs)
    compile_s = time.perf_counter() - t0
    q = lam.size
    put = partial(jax.device_put, device=rep)
    state = put((np.zeros(()), np.zeros(q), np.zeros((q, q)), np.uint32(0)))
    rest = put((np.uint32(m), np.sqrt(lam), np.float64(problem.sigma2)))
    key_data = put(np.asarray(_seed_key_data(seed)))

    from tqdm import tqdm  # core dependency; lazy import keeps `import rgjax.toy` light

    t0 = time.perf_counter()
    with tqdm(total=m, desc="toy Monte Carlo", unit="set", unit_scale=True, disable=not progress,
              leave=False) as bar:
        for j in range(n_chunks):
            state = step(state, key_data, *rest)
            if progress:  # block only to keep the bar honest
                jax.block_until_ready(state)
                bar.update(min(chunk, m - j * chunk))
    count, mean, m2, _ = (np.asarray(v) for v in jax.block_until_ready(state))
    run_s = time.perf_counter() - t0
    assert int(count) == m, (count, m)
    return ToyMonteCarlo(problem=problem, lambdas=lam, m=m, seed=int(seed), chunk_size=chunk,
                         mean=mean.reshape(lam.shape), cov=m2 / (m - 1), compile_s=compile_s,
                         run_s=run_s, n_devices=n_dev)


# ----------------------------------------------------------------------------------------------
# theory


def _kept_split(problem: ToyProblem, kept: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (into ``problem.degrees``) of the kept and the greater (integrated-out) degrees."""
    kept = _check_degrees(kept, "kept")
    missing = [d for d in kept if d not in problem.degrees]
    if missing:
        raise ValueError(f"`kept` degrees {missing} are not kernel degrees {problem.degrees}.")
    k = np.array([problem.degrees.index(d) for d in kept])
    g = np.array([j for j in range(problem.p) if problem.degrees[j] not in kept], dtype=int)
    return k, g


def standard_prediction(problem: ToyProblem, lambdas: Any) -> np.ndarray:
    """EK with the bare ridge: ``c_j = nλ_j/(nλ_j + σ²) y_j`` on the kernel's degrees, ``(L, p)``;
    0 wherever the target has no component (the paper's case)."""
    lam = _check_lambdas(lambdas, problem.p)
    learn = problem.n * lam / (problem.n * lam + problem.sigma2)
    return learn * problem.target_on(problem.degrees)


def gaussian_rg_prediction(problem: ToyProblem, lambdas: Any, kept: Sequence[int] = (1,)) -> np.ndarray:
    """Gaussian-feature RG (THEORY §3): the kept degrees learned in the EK limit with the
    renormalised ridge ``σ² + Σ_> λ_j``; ``(L, len(kept))``."""
    lam = _check_lambdas(lambdas, problem.p)
    k, g = _kept_split(problem, kept)
    ridge = problem.sigma2 + lam[:, g].sum(axis=1, keepdims=True)
    lk = problem.n * lam[:, k]
    return lk / (lk + ridge) * problem.target_on(np.asarray(problem.degrees)[k])


def rg_prediction(problem: ToyProblem, lambdas: Any, kept: Sequence[int] = (1,),
                  order: int = _QUAD_ORDER) -> np.ndarray:
    """Input-dependent-ridge RG (THEORY §5) for the kept coefficients, by Gauss–Hermite quadrature.

    Solves ``(Λ_<⁻¹ + n⟨Ψ_<ᵀΨ_< / σ²(x)⟩) c = n⟨Ψ_<ᵀ y / σ²(x)⟩`` with
    ``σ²(x) = σ² + Σ_> λ_j ψ_j(x)²``, in the form ``c = s(I + n s M s)⁻¹ s n r``, ``s = Λ_<^{1/2}``,
    which also covers ``λ = 0``.

    Returns:
      ``(L, len(kept))``, in the order of ``kept``.
    """
    lam = _check_lambdas(lambdas, problem.p)
    k, g = _kept_split(problem, kept)
    nodes, weights = gauss_hermite(order)
    degs = np.asarray(problem.degrees)
    psi_k = hermite(nodes, degs[k])  # (Q, k)
    y = sum(c * hermite(nodes, d) for d, c in problem.target)  # (Q,)
    psi_g2 = hermite(nodes, degs[g]) ** 2 if g.size else np.zeros((nodes.size, 0))
    inv_ridge = 1.0 / (problem.sigma2 + psi_g2 @ lam[:, g].T)  # (Q, L)
    big_m = np.einsum("q,ql,qa,qb->lab", weights, inv_ridge, psi_k, psi_k)
    r = np.einsum("q,ql,qa,q->la", weights, inv_ridge, psi_k, y)
    s = np.sqrt(lam[:, k])
    a = np.eye(k.size) + problem.n * s[:, :, None] * big_m * s[:, None, :]
    return s * np.linalg.solve(a, (s * problem.n * r)[..., None])[..., 0]


def rg_first_order(problem: ToyProblem, lambdas: Any, kept: Sequence[int] = (1,)) -> np.ndarray:
    """:func:`rg_prediction` to first order in ``λ_>/σ²`` (``1/σ²(x) ≈ (1 − Σ_> λ_jψ_j²/σ²)/σ²``).

    With ``c⁰_a = nλ_a y_a/(nλ_a + σ²)``, ``Q_ab = Σ_> λ_g⟨ψ_aψ_bψ_g²⟩`` and
    ``r_a = Σ_> λ_g Σ_t y_t⟨ψ_aψ_tψ_g²⟩`` (exact moments): ``c_a = c⁰_a + (n/σ⁴)(Qc⁰ − r)_a /
    (1/λ_a + n/σ²)``. The paper's case gives ``−(nλ_2√30/σ⁴)/(1/λ_1 + n/σ²)``.

    Returns:
      ``(L, len(kept))``.
    """
    lam = _check_lambdas(lambdas, problem.p)
    k, g = _kept_split(problem, kept)
    degs = np.asarray(problem.degrees)
    dk, dg = degs[k], degs[g]
    n, s2 = problem.n, problem.sigma2
    c0 = standard_prediction(problem, lam)[:, k]
    mom_q = np.array([[[hermite_moment(a, b, d, d) for d in dg] for b in dk] for a in dk])
    mom_r = np.array([[sum(c * hermite_moment(a, t, d, d) for t, c in problem.target) for d in dg]
                      for a in dk])
    big_q = np.einsum("abg,lg->lab", mom_q.reshape(dk.size, dk.size, dg.size), lam[:, g])
    r = mom_r.reshape(dk.size, dg.size) @ lam[:, g].T  # (k, L)
    lk = lam[:, k]
    # (1/λ + n/σ²)⁻¹ written as λ/(1 + nλ/σ²): 0 for λ = 0 instead of 0·∞.
    return c0 + lk / (1 + n * lk / s2) * (n / s2**2) * (np.einsum("lab,lb->la", big_q, c0) - r.T)
