"""Hermite toy model: the exact-posterior Monte Carlo of paper Fig. 3 (docs/theory.md §5).

The model and its theories live in :mod:`rgjax.toy_problem` (:class:`ToyProblem`, the Hermite
features, :func:`rg_prediction`, …) and are re-exported here; this module is the experiment, and
:mod:`rgjax._counter_rng` its random stream. The paper's case: kernel ``λ_1ψ_1ψ_1 + λ_>ψ_2ψ_2``
with ``λ_1 = 1``, ``λ_> ∈ {0, 0.1}``, target ``ψ_5``, ``n = 100``, ``σ² = 400``, ``m = 5·10⁶``
data sets.

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

Accuracy (measured). The RG solves the kept theory in the continuum (EK) limit, so it misses the
finite-n fluctuations of ``ΦᵀΦ``; to first order in λ_> and leading order in ``1/(σ²/λ_1 + n)`` they
change c by ``λ_2 n (2⟨ψ_1³ψ_2²ψ_5⟩ − √30) / (σ⁶ (1/λ_1 + n/σ²)²)`` (``⟨ψ_1³ψ_2²ψ_5⟩ ≈ 104``), i.e.
the RG overestimates |c| by ~6–9 % at the paper's numbers (paired Monte Carlo, m = 5·10⁶, seed 0:
c(0.1) − c(0) = −2.41e−4 ± 0.01e−4 against −2.64e−4) — below the standard error of m = 5·10⁶ data
sets (2.8e−5).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache, partial
from typing import Any, TypeAlias, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from rgjax._counter_rng import cos_2pi, normal_halves, seed_key_data, uniforms
from rgjax._pytree import dataclass, field
from rgjax._sharding import shard_map
from rgjax._typing import Array, ArrayLike
from rgjax._validate import X64_FIX, check_int, warn
from rgjax.toy_problem import (
    QUAD_ORDER,
    Terms,
    ToyProblem,
    check_lambdas,
    gauss_hermite,
    gaussian_expectation,
    gaussian_rg_prediction,
    hermite,
    hermite_moment,
    hermite_table,
    rg_first_order,
    rg_prediction,
    standard_prediction,
)

__all__ = [
    "ToyProblem",
    "ToyCheckpoint",
    "ToyMonteCarlo",
    "QUAD_ORDER",
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
]

#: ``(G, R)`` of :func:`_power_plan`: ``ΦᵀΦ = Σ_k G[k] S_k`` and ``Φᵀy = Σ_k R[k] S_k``.
Plan: TypeAlias = tuple[np.ndarray, np.ndarray]
#: Running (count, mean ``(q,)``, co-moment ``(q, q)``) of the Chan merge.
Stats: TypeAlias = tuple[Array, Array, Array]
#: :data:`Stats` and the next data-set index: the state a compiled chunk step carries.
State: TypeAlias = tuple[Array, Array, Array, Array]
#: A jax device. (``jax.Device`` is a class at run time, but jaxlib ships no stub for it.)
Device: TypeAlias = jax.Device  # pyright: ignore[reportInvalidTypeForm]
#: Which devices share a chunk: None (all local), a count, one device or a sequence of devices.
DeviceSpec: TypeAlias = int | Device | Sequence[Device] | None

_MAX_INDEX = 2**32  # fold_in takes a uint32 data-set index
_SMALL_P = 6  # unrolled Cholesky / explicit reductions up to this many features
_MAX_POWER = 12  # power sums up to Σx¹²; beyond, monomial cancellation would cost accuracy
_U32 = np.uint32


def _require_x64() -> None:
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(f"the toy Monte Carlo accumulates in float64: {X64_FIX}.")


# ----------------------------------------------------------------------------------------------
# random inputs


def toy_inputs(seed: int, indices: ArrayLike, n: int) -> Array:
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

    Examples:
      >>> from rgjax.toy import toy_inputs
      >>> x = toy_inputs(0, [0, 1, 2], 5)
      >>> x.shape, bool((toy_inputs(0, [2], 5)[0] == x[2]).all())
      ((3, 5), True)
    """
    _require_x64()
    n = check_int(n, "n", 1, why="points per data set")
    idx = jnp.asarray(indices, dtype=jnp.uint32)
    return _inputs_jit(seed_key_data(seed), idx, n)


@partial(jax.jit, static_argnums=2)
def _inputs_jit(key_data: Array, indices: Array, n: int) -> Array:
    return jnp.concatenate(normal_halves(key_data, indices, n), axis=-1)


# ----------------------------------------------------------------------------------------------
# power sums of the inputs


def _psi_monomials(d: int) -> np.ndarray:
    """Monomial coefficients of ``ψ_d = He_d / √(d!)``, lowest power first, ``(d + 1,)``."""
    return np.polynomial.hermite_e.herme2poly(np.eye(d + 1)[d]) / math.sqrt(math.factorial(d))


@lru_cache(maxsize=64)
def _power_plan(degrees: tuple[int, ...], target: Terms) -> Plan | None:
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


def _powers(x: Array, top: int) -> list[Array]:
    """``[x¹, …, x^top]`` by squaring (``x^k = x^⌊k/2⌋ · x^⌈k/2⌉``); entry ``k − 1`` is ``x^k``."""
    out = [x]
    for k in range(2, top + 1):
        out.append(out[k // 2 - 1] * out[k - k // 2 - 1])
    return out


def _power_sums(parts: Sequence[Array], top: int, n: int) -> list[Array]:
    """``[S_0 = n, S_1, …, S_top]``, ``S_k = Σ_i x_i^k`` over the last axis of all ``parts``."""
    sums: list[Array] | None = None
    for part in parts:
        if part.shape[-1] == 0:
            continue
        s = [jnp.sum(pk, axis=-1) for pk in _powers(part, top)]
        sums = s if sums is None else [u + v for u, v in zip(sums, s)]
    assert sums is not None, "n >= 1 points"
    return [jnp.full(sums[0].shape, float(n), sums[0].dtype)] + sums


def _materialise(arrays: tuple[Array, ...], trips: Array) -> tuple[Array, ...]:
    """``arrays`` unchanged, but computed once into memory: the identity as a while loop whose trip
    count (``trips``, 1 at run time) the compiler cannot know. XLA otherwise fuses the whole
    threefry-and-polynomial producer into every consumer — recomputing it once per power sum —
    and on CPU drops ``lax.optimization_barrier``. A performance device only."""
    one = trips.astype(arrays[0].dtype)

    def body(carry: tuple[Array, ...]) -> tuple[Array, ...]:
        return (carry[0] + 1,) + tuple(a * one for a in carry[1:])

    init = (jnp.zeros((), trips.dtype),) + tuple(arrays)
    return jax.lax.while_loop(lambda c: c[0] < trips, body, init)[1:]


def _pair_power_sums(key_data: Array, indices: Array, n: int, top: int,
                     trips: Array) -> list[Array]:
    """``[S_0 = n, S_1, …, S_top]``, ``S_k = Σ_i x_i^k`` of the inputs of data sets ``indices``,
    straight from the Box–Muller ``(r, θ)`` without forming the inputs; each ``(k,)``.

    A pair ``(a, b) = (r cos θ, r sin θ)`` has ``a^k + b^k = r^k e_k`` with ``e_k = cos^k θ +
    sin^k θ``, which obeys ``e_k = σ e_{k−1} − p e_{k−2}`` (``e_0 = 2``, ``e_1 = σ``) for
    ``σ = cos θ + sin θ = √2 C`` and ``p = cos θ sin θ = C² − 1/2``, ``C = cos(θ − π/4)``. So
    per pair one cosine, and one power sum per k over the pairs; for odd n the last point (the
    cosine of an unpaired draw) is added directly.
    """
    u1, u2 = uniforms(key_data, indices, n)
    full = n // 2
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    cos_shift = cos_2pi(u2 - 0.125)  # u2 − 1/8 is exact on the 2⁻⁵² grid
    r, cos_shift = _materialise((r, cos_shift), trips)
    rp, c = r[:, :full], cos_shift[:, :full]
    sigma, prod = math.sqrt(2.0) * c, c * c - 0.5
    e = {1: sigma, 2: jnp.ones_like(c)}  # e_2 = cos² + sin² = 1
    for k in range(3, top + 1):
        e[k] = sigma * e[k - 1] - prod * e[k - 2]
    r_pow = _powers(rp, top)
    sums = [jnp.sum(r_pow[k - 1] * e[k], axis=-1) for k in range(1, top + 1)]
    if n % 2:  # the unpaired last point, r cos θ
        last = r[:, full] * cos_2pi(u2[:, full])
        sums = [s + pk for s, pk in zip(sums, _powers(last, top))]
    return [jnp.full(sums[0].shape, float(n), sums[0].dtype)] + sums


# ----------------------------------------------------------------------------------------------
# per-data-set exact posterior


def _combine(sums: list[Array], coefs: np.ndarray) -> Array:
    """``Σ_k coefs[k] S_k`` over the nonzero coefficients."""
    terms = [float(c) * sums[k] for k, c in enumerate(coefs) if c != 0.0]
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(sums[0])


def _symmetric(entry: dict[tuple[int, int], Array], p: int) -> Array:
    """``(..., p, p)`` from the lower-triangle entries ``entry[a, b]``, ``b ≤ a``."""
    return jnp.stack([jnp.stack([entry[max(a, b), min(a, b)] for b in range(p)], -1)
                      for a in range(p)], -2)


def _gram_and_rhs_from_sums(sums: list[Array], plan: Plan) -> tuple[Array, Array]:
    """``ΦᵀΦ`` ``(..., p, p)`` and ``Φᵀy`` ``(..., p)`` from power sums (:func:`_power_plan`)."""
    gram_c, rhs_c = plan
    p = gram_c.shape[1]
    if p > _SMALL_P:
        s = jnp.stack(sums, axis=-1)
        return jnp.einsum("...k,kab->...ab", s, gram_c), jnp.einsum("...k,ka->...a", s, rhs_c)
    entry = {(a, b): _combine(sums, gram_c[:, a, b]) for a in range(p) for b in range(a + 1)}
    rhs = jnp.stack([_combine(sums, rhs_c[:, a]) for a in range(p)], -1)
    return _symmetric(entry, p), rhs


def _gram_and_rhs_table(x: Array, degrees: tuple[int, ...], target: Terms) -> tuple[Array, Array]:
    """``ΦᵀΦ`` ``(..., p, p)`` and ``Φᵀy`` ``(..., p)`` for inputs ``x`` ``(..., n)`` from the
    Hermite features themselves (the general path, for degrees beyond the power-sum plan)."""
    table = hermite_table(x, max(max(degrees), max(d for d, _ in target)))
    y = sum(c * table[d] for d, c in target)
    feats = [table[d] for d in degrees]
    p = len(degrees)
    if p > _SMALL_P:
        phi = jnp.stack(feats, -1)
        return jnp.einsum("...ia,...ib->...ab", phi, phi), jnp.einsum("...ia,...i->...a", phi, y)
    entry = {(a, b): jnp.sum(feats[a] * feats[b], axis=-1) for a in range(p) for b in range(a + 1)}
    rhs = jnp.stack([jnp.sum(f * y, axis=-1) for f in feats], -1)
    return _symmetric(entry, p), rhs


def _gram_and_rhs(parts: Sequence[Array], n: int, degrees: tuple[int, ...],
                  target: Terms) -> tuple[Array, Array]:
    """``ΦᵀΦ`` and ``Φᵀy`` of the points in ``parts`` (arrays ``(..., n_i)``, ``Σ n_i = n``): from
    power sums of x when the degrees allow (:data:`_MAX_POWER`), else from the feature table."""
    plan = _power_plan(degrees, target)
    if plan is None:
        x = jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        return _gram_and_rhs_table(x, degrees, target)
    return _gram_and_rhs_from_sums(_power_sums(parts, plan[0].shape[0] - 1, n), plan)


def _spd_solve(a: Array, b: Array) -> Array:
    """Solve ``a c = b`` for SPD ``a`` ``(..., p, p)``, ``b`` ``(..., p)``: an unrolled Cholesky for
    small p (elementwise over the batch — far faster than batched LAPACK on 2 × 2 systems)."""
    p = a.shape[-1]
    if p > _SMALL_P:
        chol = jnp.linalg.cholesky(a)
        return jax.scipy.linalg.cho_solve((chol, True), b[..., None])[..., 0]
    low: dict[tuple[int, int], Array] = {}
    for j in range(p):
        low[j, j] = jnp.sqrt(a[..., j, j] - sum(low[j, k] ** 2 for k in range(j)))
        for i in range(j + 1, p):
            low[i, j] = (a[..., i, j] - sum(low[i, k] * low[j, k] for k in range(j))) / low[j, j]
    z: list[Array] = []
    for i in range(p):
        z.append((b[..., i] - sum(low[i, k] * z[k] for k in range(i))) / low[i, i])
    c: dict[int, Array] = {}
    for i in reversed(range(p)):
        c[i] = (z[i] - sum(low[k, i] * c[k] for k in range(i + 1, p))) / low[i, i]
    return jnp.stack([c[i] for i in range(p)], -1)


def _coefficients(gram: Array, rhs: Array, sqrt_lam: Array, sigma2: Array) -> Array:
    """``c = s ⊙ (I + s sᵀ ⊙ ΦᵀΦ/σ²)⁻¹ (s ⊙ Φᵀy/σ²)`` with ``s = √λ``.

    Shapes: gram ``(..., p, p)``, rhs ``(..., p)``, sqrt_lam ``(L, p)`` → ``(..., L, p)``.
    """
    p = sqrt_lam.shape[-1]
    outer = sqrt_lam[:, :, None] * sqrt_lam[:, None, :]  # (L, p, p)
    a = jnp.eye(p) + outer * gram[..., None, :, :] / sigma2
    b = sqrt_lam * rhs[..., None, :] / sigma2
    return sqrt_lam * _spd_solve(a, b)


def posterior_coefficients(x: ArrayLike, problem: ToyProblem, lambdas: ArrayLike) -> Array:
    """Exact GP posterior-mean coefficients on the kernel's degrees, per data set.

    Args:
      x: ``(..., n)`` inputs of the data sets (e.g. from :func:`toy_inputs`).
      problem: degrees, target, σ².
      lambdas: ``(p,)`` or ``(L, p)`` kernel eigenvalues.

    Returns:
      ``(..., L, p)``: ``c[..., l, j]`` multiplies ``ψ_{degrees[j]}`` in the posterior mean.
    """
    lam = check_lambdas(lambdas, problem.p)
    return _posterior_jit(jnp.asarray(x), jnp.sqrt(jnp.asarray(lam)), jnp.asarray(problem.sigma2),
                          problem.degrees, problem.terms)


@partial(jax.jit, static_argnums=(3, 4))
def _posterior_jit(x: Array, sqrt_lam: Array, sigma2: Array, degrees: tuple[int, ...],
                   target: Terms) -> Array:
    gram, rhs = _gram_and_rhs([x], x.shape[-1], degrees, target)
    return _coefficients(gram, rhs, sqrt_lam, sigma2)


def _set_coefficients(key_data: Array, indices: Array, sqrt_lam: Array, sigma2: Array, *, n: int,
                      degrees: tuple[int, ...], target: Terms) -> Array:
    """Draw data sets ``indices`` ``(k,)`` and solve: ``(k, L, p)`` — the Monte Carlo's kernel
    (power sums straight from the Box–Muller draws where the degrees allow)."""
    plan = _power_plan(degrees, target)
    if plan is None:
        gram, rhs = _gram_and_rhs_table(jnp.concatenate(normal_halves(key_data, indices, n), -1),
                                        degrees, target)
    else:
        trips = (sigma2 > 0).astype(jnp.int32)  # 1: σ² > 0 is validated, unknown when compiling
        sums = _pair_power_sums(key_data, indices, n, plan[0].shape[0] - 1, trips)
        gram, rhs = _gram_and_rhs_from_sums(sums, plan)
    return _coefficients(gram, rhs, sqrt_lam, sigma2)


@partial(jax.jit, static_argnames=("n", "degrees", "target"))
def _trials_jit(key_data: Array, indices: Array, sqrt_lam: Array, sigma2: Array, *, n: int,
                degrees: tuple[int, ...], target: Terms) -> Array:
    return _set_coefficients(key_data, indices, sqrt_lam, sigma2, n=n, degrees=degrees,
                             target=target)


def trial_coefficients(problem: ToyProblem, lambdas: ArrayLike, indices: ArrayLike,
                       seed: int = 0) -> Array:
    """Per-data-set coefficients ``(k, L, p)`` of data sets ``indices`` ``(k,)`` — exactly the ones
    :func:`monte_carlo` averages (same draws, same computation); equal, to rounding, to
    ``posterior_coefficients(toy_inputs(seed, indices, n), problem, lambdas)``."""
    _require_x64()
    lam = check_lambdas(lambdas, problem.p)
    idx = jnp.asarray(indices, dtype=jnp.uint32)
    return _trials_jit(seed_key_data(seed), idx, jnp.sqrt(jnp.asarray(lam)),
                       jnp.asarray(problem.sigma2), n=problem.n, degrees=problem.degrees,
                       target=problem.terms)


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


def _resolve_devices(devices: DeviceSpec) -> tuple[Device, ...]:
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
        devs = tuple(cast(Iterable[Device], devices))
    except TypeError:  # one device
        devs = (cast(Device, devices),)
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        raise ValueError("`devices` must be None (all local devices), a device count, or a "
                         f"non-empty sequence of jax devices; got {devices!r}.")
    if len(set(devs)) != len(devs):
        raise ValueError(f"`devices` lists a device twice: {devs!r}.")
    return devs


def _set_mesh(devices: tuple[Device, ...]) -> Mesh:
    """1-D mesh ``('sets',)``; Auto axis type where jax has axis types (jax >= 0.10 defaults to
    Explicit)."""
    arr = np.empty(len(devices), dtype=object)
    arr[:] = devices
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is not None:
        try:
            return Mesh(arr, (_AXIS,), axis_types=(axis_type.Auto,))
        except TypeError:  # pragma: no cover - jax without axis_types in Mesh
            pass
    return Mesh(arr, (_AXIS,))  # pragma: no cover


def _chan_merge(state: Stats, count: Array, mean: Array, m2: Array) -> Stats:
    """Chan et al.'s parallel merge of (count, mean ``(q,)``, co-moment ``(q, q)``) pairs."""
    n_a, mean_a, m2_a = state
    total = n_a + count
    delta = mean - mean_a
    frac = count / jnp.maximum(total, 1.0)
    return (total, mean_a + delta * frac, m2_a + m2 + jnp.outer(delta, delta) * n_a * frac)


def _masked_stats(c: Array, valid: Array) -> Stats:
    """(count, mean, co-moment) of the rows of ``c`` ``(k, q)`` where ``valid``."""
    w = valid.astype(c.dtype)
    count = jnp.sum(w)
    mean = (w @ c) / jnp.maximum(count, 1.0)
    dev = (c - mean) * w[:, None]
    return count, mean, dev.T @ dev


def _chunk_step(state: State, key_data: Array, m: Array, sqrt_lam: Array, sigma2: Array, *,
                chunk: int, n: int, degrees: tuple[int, ...], target: Terms, mesh: Mesh) -> State:
    """Data sets ``start … start+chunk−1`` (those < m count; ``start`` is the last entry of
    ``state``), split evenly over the mesh: each device draws and solves its share and returns its
    (count, mean, co-moment); the shares are merged into ``state`` in device order, and ``start``
    advances by ``chunk`` (kept on the device: no host transfer per chunk)."""
    n_dev = mesh.devices.size
    local = chunk // n_dev
    count, mean, m2, start = state

    def shard(key_data: Array, start: Array, m: Array, sqrt_lam: Array,
              sigma2: Array) -> tuple[Array, ...]:
        first = start + jax.lax.axis_index(_AXIS).astype(jnp.uint32) * _U32(local)
        idx = first + jnp.arange(local, dtype=jnp.uint32)
        c = _set_coefficients(key_data, idx, sqrt_lam, sigma2, n=n, degrees=degrees, target=target)
        return tuple(s[None] for s in _masked_stats(c.reshape(local, -1), idx < m))

    rep, per_device = PartitionSpec(), PartitionSpec(_AXIS)
    counts, means, m2s = shard_map(shard, mesh, (rep,) * 5, (per_device,) * 3)(
        key_data, start, m, sqrt_lam, sigma2)
    stats = (count, mean, m2)
    for d in range(n_dev):
        stats = _chan_merge(stats, counts[d], means[d], m2s[d])
    return (*stats, start + _U32(chunk))


@lru_cache(maxsize=16)
def _compiled_step(chunk: int, n: int, degrees: tuple[int, ...], target: Terms,
                   shape: tuple[int, int],
                   devices: tuple[Device, ...]) -> tuple[jax.stages.Compiled, NamedSharding]:
    """Ahead-of-time compiled :func:`_chunk_step` over ``devices`` and the replicated sharding of
    its arguments (cached: repeated runs skip compilation)."""
    mesh = _set_mesh(devices)
    rep = NamedSharding(mesh, PartitionSpec())
    q = shape[0] * shape[1]
    fl, u32 = jnp.float64, jnp.uint32
    f = partial(jax.ShapeDtypeStruct, sharding=rep)
    args = ((f((), fl), f((q,), fl), f((q, q), fl), f((), u32)), f((2,), u32), f((), u32),
            f(shape, fl), f((), fl))
    step = partial(_chunk_step, chunk=chunk, n=n, degrees=degrees, target=target, mesh=mesh)
    jitted = jax.jit(step, in_shardings=rep, out_shardings=rep)
    return jitted.lower(*args).compile(), rep


@dataclass(eq=False)
class ToyCheckpoint:
    """The running sums of a :func:`monte_carlo` run after its first ``start`` data sets (host
    copies, to be kept on disk).

    Attributes:
      count, mean, m2: ``()``, ``(q,)``, ``(q, q)`` count, mean and co-moment so far.
      start: ``()`` uint32 index of the next data set (a multiple of ``chunk``).
      chunk: data sets per compiled step of the run that made it (static).
    """

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    start: np.ndarray
    chunk: int = field(static=True, default=0)


def _start_state(resume: ToyCheckpoint | None, chunk: int,
                 q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.uint32]:
    """The initial running sums: zeros, or ``resume``'s after checking it fits this run."""
    if resume is None:
        return np.zeros(()), np.zeros(q), np.zeros((q, q)), np.uint32(0)
    mean, m2 = np.asarray(resume.mean, np.float64), np.asarray(resume.m2, np.float64)
    start = int(np.asarray(resume.start))
    if resume.chunk != chunk or mean.shape != (q,) or m2.shape != (q, q) or start % chunk:
        warn(f"`resume` was made by another run (chunk {resume.chunk}, {mean.size} sums) than "
             f"this one (chunk {chunk}, {q} sums): starting afresh.")
        return _start_state(None, chunk, q)
    return np.asarray(resume.count, np.float64), mean, m2, np.uint32(start)


@dataclass(eq=False)
class ToyMonteCarlo:
    """Averaged exact posterior over ``m`` data sets, for ``L`` kernels sharing the data sets.

    A pytree: the problem, arrays and timings are leaves; ``m``, ``seed``, ``chunk_size`` and
    ``n_devices`` (counts describing the run) are static.

    Attributes:
      problem: the :class:`ToyProblem`.
      lambdas: ``(L, p)`` kernel eigenvalues.
      m: number of data sets.
      seed: the experiment's seed.
      chunk_size: data sets per chunk (all devices together).
      mean: ``(L, p)`` mean posterior coefficients.
      cov: ``(L·p, L·p)`` sample covariance (ddof = 1) of the per-data-set coefficient vector
        (kernels stacked), so SEs of any linear combination — predictor values, differences between
        kernels — follow.
      compile_s: seconds spent compiling the chunk step (≈ 0 when cached).
      run_s: seconds spent running the chunks.
      n_devices: devices each chunk was split over.
    """

    problem: ToyProblem
    lambdas: np.ndarray
    m: int = field(static=True)
    seed: int = field(static=True)
    chunk_size: int = field(static=True)
    mean: np.ndarray
    cov: np.ndarray
    compile_s: float = math.nan
    run_s: float = math.nan
    n_devices: int = field(static=True, default=1)

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

    def predictor(self, grid: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (lists and floats)."""
        return {"problem": self.problem.to_dict(), "lambdas": self.lambdas.tolist(), "m": self.m,
                "seed": self.seed, "chunk_size": self.chunk_size, "mean": self.mean.tolist(),
                "se": self.coef_se.tolist(), "coef_cov": self.coef_cov.tolist(),
                "cov": self.cov.tolist(), "compile_s": self.compile_s, "run_s": self.run_s,
                "n_devices": self.n_devices}


def _chunking(problem: ToyProblem, m: int, chunk_size: int | None,
              devs: tuple[Device, ...]) -> tuple[int, int]:
    """``(chunk, n_chunks)``: data sets per compiled step (a multiple of the device count, at
    most ``m`` rounded up) and the number of steps."""
    n_dev = len(devs)
    if chunk_size is None:
        budget = _CHUNK_BUDGET.get(devs[0].platform, 256e6)
        chunk_size = n_dev * default_chunk_size(problem.n, problem.max_degree, budget)
    chunk = min(check_int(chunk_size, "chunk_size", 1, why="data sets per chunk"), m)
    chunk = -(-chunk // n_dev) * n_dev
    n_chunks = -(-m // chunk)
    if n_chunks * chunk > _MAX_INDEX or m >= _MAX_INDEX:
        raise ValueError(f"`m` = {m} exceeds the 2**32 data-set indices that fold_in can address.")
    return chunk, n_chunks


def monte_carlo(
    problem: ToyProblem,
    lambdas: ArrayLike,
    m: int,
    *,
    seed: int = 0,
    chunk_size: int | None = None,
    devices: DeviceSpec = None,
    progress: bool = True,
    resume: ToyCheckpoint | None = None,
    checkpoint: Callable[[ToyCheckpoint], Any] | None = None,
    checkpoint_every: float = 30.0,
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
      resume: continue from this :class:`ToyCheckpoint` (made by ``checkpoint`` of a run with
        the same problem, eigenvalues, ``m`` and seed): the result is the one an uninterrupted
        run gives, bit for bit. One of another chunk size is ignored with a warning.
      checkpoint: called with the running sums every ``checkpoint_every`` seconds, after the
        last chunk, and when interrupted (Ctrl-C) before the interruption goes on.
      checkpoint_every: seconds between two ``checkpoint`` calls.

    Returns:
      a :class:`ToyMonteCarlo` (mean ``(L, p)``, covariance ``(L·p, L·p)``).

    Examples:
      >>> from rgjax.toy import ToyProblem, monte_carlo
      >>> mc = monte_carlo(ToyProblem(n=20, sigma2=5.0), [[1.0, 0.0], [1.0, 0.5]], 1000,
      ...                  progress=False)
      >>> mc.mean.shape, mc.cov.shape, mc.m
      ((2, 2), (4, 4), 1000)
    """
    _require_x64()
    lam = check_lambdas(lambdas, problem.p)
    m = check_int(m, "m", 2, why="the standard error needs two data sets")
    devs = _resolve_devices(devices)
    chunk, n_chunks = _chunking(problem, m, chunk_size, devs)

    t0 = time.perf_counter()
    step, rep = _compiled_step(chunk, problem.n, problem.degrees, problem.terms, lam.shape, devs)
    compile_s = time.perf_counter() - t0
    q = lam.size
    put = partial(jax.device_put, device=rep)
    start = _start_state(resume, chunk, q)
    state = put(start)
    rest = put((np.uint32(m), np.sqrt(lam), np.float64(problem.sigma2)))
    key_data = put(np.asarray(seed_key_data(seed)))

    def save(state: Any) -> None:
        if checkpoint is not None:
            values = tuple(np.asarray(v) for v in jax.block_until_ready(state))
            checkpoint(ToyCheckpoint(*values, chunk=chunk))

    t0 = last = time.perf_counter()
    first = int(start[3]) // chunk
    with tqdm(total=m, initial=min(m, first * chunk), desc="toy Monte Carlo", unit="set",
              unit_scale=True, disable=not progress, leave=False) as bar:
        try:
            for j in range(first, n_chunks):
                state = step(state, key_data, *rest)
                if progress:  # block only to keep the bar honest
                    jax.block_until_ready(state)
                    bar.update(min(chunk, m - j * chunk))
                if checkpoint is not None and time.perf_counter() - last >= checkpoint_every:
                    save(state)
                    last = time.perf_counter()
        except KeyboardInterrupt:
            save(state)  # the chunks finished so far are kept
            raise
    save(state)
    count, mean, m2, _ = (np.asarray(v) for v in jax.block_until_ready(state))
    run_s = time.perf_counter() - t0
    assert int(count) == m, (count, m)
    return ToyMonteCarlo(problem=problem, lambdas=lam, m=m, seed=int(seed), chunk_size=chunk,
                         mean=mean.reshape(lam.shape), cov=m2 / (m - 1), compile_s=compile_s,
                         run_s=run_s, n_devices=len(devs))
