"""Batched, device-parallel trials of exact GP regression: the engine of ``learning_curve``.

:func:`rgjax.empirical.learning_curve` hands this module the missing trials of each η; it draws
their training sets (:func:`permutations`), solves them in chunks that bound memory, one jitted
program per chunk shape (:func:`run_independent`, :func:`run_nested`), and returns per-trial
pool and held-out MSEs. The design notes are in :mod:`rgjax.empirical`'s docstring.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rgjax._pytree import dataclass, field
from rgjax._sharding import shard_map
from rgjax._typing import Array, Device

__all__ = [
    "NESTED_STREAM",
    "Executor",
    "eigh_weights",
    "executor",
    "independent_chunk_size",
    "nested_chunk_size",
    "padded_size",
    "permutations",
    "run_independent",
    "run_nested",
]


def eigh_weights(k: Array, y: Array, sigma2: Array) -> Array:
    """α = V (w⁺ + σ²)⁻¹ Vᵀ y with k = V diag(w) Vᵀ and w⁺ = max(w, 0). k (η, η), y (η, ...).

    Reads the lower triangle of ``k``, like the Cholesky path. Clipping the round-off negative
    eigenvalues of a PSD kernel keeps every denominator >= σ² > 0.
    """
    w, v = jnp.linalg.eigh(k, UPLO="L", symmetrize_input=False)
    inv = 1.0 / (jnp.clip(w, 0.0) + sigma2)
    coef = v.T @ y
    return v @ (inv.reshape(inv.shape + (1,) * (y.ndim - 1)) * coef)



#: η slot of the key stream of nested draws (``nested=True``): trial t permutes the pool with
#: key ``fold_in(fold_in(key, 0), t)``. Training-set sizes are >= 1, so the nested stream never
#: coincides with the stream of an independent draw.
NESTED_STREAM = 0


@partial(jax.jit, static_argnames=("n",))
def permutations(key: Array, stream: Array, trial_ids: Array, n: int) -> Array:
    """(c, N) random permutations of range(N); row r has key fold_in(fold_in(key, stream), id_r).

    ``stream`` is η for independent draws and ``NESTED_STREAM`` for nested ones. A training set
    is the first η entries of its row. ``stream`` is traced, so this compiles once per (N, c) and
    the η-specific programs hold no random-number generation (threefry compiles slowly on CPU).
    """
    key_s = jax.random.fold_in(key, stream)
    return jax.vmap(lambda t: jax.random.permutation(jax.random.fold_in(key_s, t), n))(trial_ids)



_PAD_SIZES = (8, 32, 128, 512)  # η up to 512 are solved at the next of these sizes
_PAD_LIMIT = _PAD_SIZES[-1]


def padded_size(eta: int, n: int) -> int:
    """System size at which the trials of η are solved by Cholesky (pool of n points).

    η <= 512 is padded to the next of 8, 32, 128, 512 with an identity block and a zero
    right-hand side, which leaves the solution exact, so all η of one bucket share a compiled
    program (η is traced). Compiling a program costs 0.5-1 s of CPU, while at these sizes a
    trial's cost is dominated by the O(N²) pool prediction, not by the padded O(size³)
    factorisation. Above 512 the factorisation dominates and each η is solved at its own size.
    """
    if eta > _PAD_LIMIT:
        return eta
    return min(n, next(s for s in _PAD_SIZES if s >= eta))


def _sequential(ex: Executor, size: int) -> bool:
    """Loop over the trials of a chunk rather than vmap them: on CPU, for systems above 512.

    There a loop of LAPACK calls is 1.3-1.6x faster than the batched kernels (measured for ten
    Cholesky solves of size 1000) and holds one trial's system in memory at a time. Small
    systems are cheap either way and a vmapped program compiles in half the time.
    """
    return ex.cpu and size > _PAD_LIMIT


@dataclass
class Executor:
    """Where chunks of trials run.

    mesh/sharding: the trial axis split over several devices with ``shard_map`` (None for one
    device); device: the single device when ``mesh`` is None; cpu: whether the devices are CPUs
    (see ``_sequential``).
    """

    mesh: Mesh | None = field(static=True)
    sharding: NamedSharding | None = field(static=True)
    device: Device | None = field(static=True)
    cpu: bool = field(static=True)

    @property
    def n_dev(self) -> int:
        """Number of devices the trials of a chunk are split over."""
        return 1 if self.mesh is None else self.mesh.size

    def put(self, a: np.ndarray) -> Array:
        """Trial-axis array (ids) onto the devices."""
        return jax.device_put(a, self.sharding if self.mesh is not None else self.device)

    def replicate(self, a: Array) -> Array:
        """A pool array (``K``, ``y``) onto the device, or a full copy onto each of the mesh."""
        if self.mesh is None:
            return jax.device_put(a, self.device)
        return jax.device_put(a, NamedSharding(self.mesh, PartitionSpec()))


def executor(devices: Sequence[Device] | None) -> Executor:
    """Execution plan for ``devices`` (default: all local devices)."""
    devs = list(jax.local_devices() if devices is None else devices)
    if not devs:
        raise ValueError("`devices` is empty; pass at least one device or None for all.")
    cpu = devs[0].platform == "cpu"
    if len(devs) == 1:
        return Executor(None, None, devs[0], cpu)
    # Auto axis type: jax >= 0.10 meshes may default to explicit sharding, which linalg rejects.
    types = (jax.sharding.AxisType.Auto,) if hasattr(jax.sharding, "AxisType") else None
    mesh = Mesh(np.asarray(devs), ("trials",), axis_types=types)
    sharding = NamedSharding(mesh, PartitionSpec("trials"))
    return Executor(mesh, sharding, None, cpu)


def _map_trials(
    body: Callable[[Array], tuple[Array, ...]], xs: Array, sequential: bool
) -> tuple[Array, ...]:
    return jax.lax.map(body, xs) if sequential else jax.vmap(body)(xs)


def _independent_weights(
    k: Array, y: Array, sigma2: Array, eta: Array, p: Array, *,
    size: int, method: str,
) -> tuple[Array, Array, Array]:
    """One trial: weights scattered into an N-vector, held-out mask, solve success flag.

    The training set is ``p[:eta]``; the system is solved at ``size >= eta`` (see
    ``padded_size``), rows and columns beyond η being an identity block with zero right-hand
    side, so their weights are exactly zero.
    """
    n = k.shape[0]
    live = jnp.arange(size) < eta
    # The training points in increasing pool order (then the padding, also sorted): the order
    # of a system's points does not change its solution, and a monotone gather runs ~5x faster.
    i = jax.lax.sort((jnp.where(live, 0, 1), p[:size]), num_keys=2)[1]
    k_tt = k[i[:, None], i[None, :]]  # one (size, size) gather; never materialise K[:, idx]
    rhs = y[i]
    if method == "cholesky":
        if size <= _PAD_LIMIT:  # a padded bucket (sizes above the limit are always exact)
            k_tt = jnp.where(live[:, None] & live[None, :], k_tt, 0.0)
            rhs = jnp.where(live, rhs, 0.0)
            ridge = jnp.where(live, sigma2, 1.0)
        else:
            ridge = jnp.full(size, sigma2, k.dtype)
        chol = jax.lax.linalg.cholesky(k_tt + jnp.diag(ridge), symmetrize_input=False)
        z = jax.scipy.linalg.solve_triangular(chol, rhs, lower=True)
        alpha = jax.scipy.linalg.solve_triangular(chol, z, lower=True, trans="T")
    else:  # eigh fallback: always at the exact size η (no identity block to mix with)
        alpha = eigh_weights(k_tt, rhs, sigma2)
    ok = jnp.all(jnp.isfinite(alpha))
    # Scattering α into an N-vector turns the pool prediction into K @ a: O(N) memory per
    # trial and one matrix product for the whole chunk.
    a = jnp.zeros(n, k.dtype).at[i].set(alpha)
    held = jnp.ones(n, k.dtype).at[i].set(jnp.where(live, 0.0, 1.0).astype(k.dtype))
    return a, held, ok


def _independent_chunk(
    k: Array, y: Array, perms: Array, eta: Array, sigma2: Array, *,
    size: int, method: str, sequential: bool,
) -> tuple[Array, Array, Array]:
    """Pool MSE, held-out MSE and solve success flag of a chunk of trials of one η: three (c,).

    perms (c, N): permutations whose first η entries are the training indices. η is traced:
    one compilation per (c, size, method).
    """
    n = k.shape[0]
    body = partial(_independent_weights, k, y, sigma2, eta, size=size, method=method)
    a, held, ok = _map_trials(body, perms, sequential)  # (c, N), (c, N), (c,)
    f = a @ k.T  # f[c, i] = Σ_j K_ij a[c, j]
    sq = (f - y) ** 2
    mse_pool = jnp.mean(sq, axis=1)
    mse_held = jnp.sum(sq * held, axis=1) / (n - eta).astype(k.dtype)
    return mse_pool, mse_held, ok


def _nested_weights(
    k: Array, y: Array, sigma2: Array, etas: Array, p: Array, *, size: int
) -> tuple[Array, Array, Array]:
    """One nested trial, all η at once: (N, E) weights, (N,) ranks in ``p``, (E,) success flags.

    With ``L`` the Cholesky factor of the ``size = max η`` system, the factor of the first η
    points is the leading block ``L[:η, :η]``. The forward solve ``z = L⁻¹ y`` restricted to its
    first η entries is that block's forward solve, and since ``L⁻ᵀ`` is upper triangular,
    ``L⁻ᵀ (z masked to its first η entries)`` is the η-point weight vector padded with exact
    zeros. One factorisation and one triangular solve with E right-hand sides serve every η.
    """
    n = k.shape[0]
    # Points sorted by pool index within each segment between consecutive η: every η's set is
    # still a prefix, and the gather reads memory in (piecewise) increasing order, ~5x faster.
    segment = jnp.searchsorted(etas, jnp.arange(size), side="right")
    i = jax.lax.sort((segment, p[:size]), num_keys=2)[1]
    k_tt = k[i[:, None], i[None, :]]
    chol = jax.lax.linalg.cholesky(
        k_tt + sigma2 * jnp.eye(size, dtype=k.dtype), symmetrize_input=False
    )
    z = jax.scipy.linalg.solve_triangular(chol, y[i], lower=True)
    zs = jnp.where(jnp.arange(size)[:, None] < etas[None, :], z[:, None], 0.0)  # (size, E)
    alphas = jax.scipy.linalg.solve_triangular(chol, zs, lower=True, trans="T")
    ok = jnp.all(jnp.isfinite(alphas), axis=0)
    a = jnp.zeros((n, etas.shape[0]), k.dtype).at[i].set(alphas)
    rank = jnp.zeros(n, jnp.int32).at[p].set(jnp.arange(n, dtype=jnp.int32))
    return a, rank, ok


def _nested_chunk(
    k: Array, y: Array, perms: Array, etas: Array, sigma2: Array, *,
    size: int, sequential: bool,
) -> tuple[Array, Array, Array]:
    """Pool MSE, held-out MSE and Cholesky success of a chunk of nested trials: three (c, E).

    etas (E,) increasing, traced, ``size = etas[-1]``: one compilation per (c, size, E).
    """
    n = k.shape[0]
    body = partial(_nested_weights, k, y, sigma2, etas, size=size)
    a, rank, ok = _map_trials(body, perms, sequential)  # (c, N, E), (c, N), (c, E)
    f = jnp.einsum("ij,cje->cei", k, a)  # one matrix product for every trial and η
    sq = (f - y) ** 2
    held = rank[:, None, :] >= etas[None, :, None]  # pool points outside the first η of p
    mse_pool = jnp.mean(sq, axis=2)
    mse_held = jnp.sum(jnp.where(held, sq, 0.0), axis=2) / (n - etas).astype(k.dtype)
    return mse_pool, mse_held, ok


@functools.lru_cache(maxsize=128)
def _program(kind: str, mesh: Mesh | None, **static: int | str | bool) -> Callable[..., tuple]:
    """Jitted chunk function ``(k, y, perms, eta(s), sigma2) -> (pool, held, ok)``.

    With a mesh, each device runs the chunk function on its share of the trials (``shard_map``;
    ``k``, ``y``, η and σ² replicated), so per-device memory is that of ``chunk / n_dev`` trials.
    """
    fn = partial(_independent_chunk if kind == "independent" else _nested_chunk, **static)
    if mesh is not None:
        P = PartitionSpec
        fn = shard_map(fn, mesh, (P(), P(), P("trials"), P(), P()), P("trials"))
    return jax.jit(fn)


def _chunk_size(per_trial: int, per_program: int, trials: int, memory_budget: int) -> int:
    """Trials per chunk so that a chunk's intermediates stay under ``memory_budget`` bytes."""
    return int(max(1, min(trials, (memory_budget - per_program) // per_trial)))


def independent_chunk_size(n: int, eta: int, trials: int, budget: int, ex: Executor) -> int:
    """Per trial: a few float64 N-vectors (weights, mask, prediction, squared error, the int32
    permutation) plus the gathered (size, size) system and its factor, held once per device when
    trials run sequentially, once per trial otherwise."""
    size = padded_size(eta, n)
    system, seq = 8 * 2 * size * size, _sequential(ex, size)
    per_trial = 8 * 5 * n + (0 if seq else system)
    chunk = _chunk_size(per_trial, system if seq else 0, trials, budget * ex.n_dev)
    return -(-chunk // ex.n_dev) * ex.n_dev  # whole trials per device; padding is discarded


def nested_chunk_size(n: int, size: int, n_eta: int, trials: int, budget: int,
                       ex: Executor) -> int:
    """Per trial: (N, E) weights, predictions and squared errors, plus the (size, size) system and
    factor and the (size, E) right-hand sides (once per device when sequential)."""
    system, seq = 8 * (2 * size * size + 2 * size * n_eta), _sequential(ex, size)
    per_trial = 8 * (3 * n * n_eta + 2 * n) + (0 if seq else system)
    chunk = _chunk_size(per_trial, system if seq else 0, trials, budget * ex.n_dev)
    return -(-chunk // ex.n_dev) * ex.n_dev


def _pad_ids(ids: np.ndarray, size: int) -> np.ndarray:
    """Pad with the last id to ``size`` entries (one compiled shape; padding is discarded)."""
    return np.concatenate([ids, np.full(size - len(ids), ids[-1])]).astype(np.int32)


def run_independent(
    k: Array, y: Array, key: Array, stream: int, eta: int, ids: np.ndarray,
    sigma2: Array, chunk: int, ex: Executor, advance: Callable[[int], object],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trials ``ids`` of one η, drawn from key stream ``stream``: pool MSEs, held-out MSEs and
    which trials needed the eigh fallback (three arrays of len(ids)).

    Cholesky first; the few trials where it fails are redone with eigh at the exact size η.
    """
    n = k.shape[0]
    count = len(ids)
    pool, held, ok = np.empty(count), np.empty(count), np.empty(count, dtype=bool)
    eta_arr = np.asarray(eta, np.int32)

    def run(sel: np.ndarray, size: int, method: str) -> tuple[np.ndarray, ...]:
        perms = permutations(key, stream, ex.put(_pad_ids(ids[sel], size)), n)
        system = padded_size(eta, n) if method == "cholesky" else eta
        program = _program("independent", ex.mesh, size=system, method=method,
                           sequential=_sequential(ex, system))
        out = program(k, y, perms, eta_arr, sigma2)
        return tuple(np.asarray(o)[: len(sel)] for o in out)

    chunk = -(-min(chunk, count) // ex.n_dev) * ex.n_dev
    for start in range(0, count, chunk):
        sel = np.arange(start, min(start + chunk, count))
        pool[sel], held[sel], ok[sel] = run(sel, chunk, "cholesky")
        advance(len(sel))

    failed = np.flatnonzero(~ok)
    if failed.size:
        # Few trials fail in practice: pad to a power of two, not to the full chunk.
        size = min(chunk, 1 << int(math.ceil(math.log2(failed.size))))
        size = -(-size // ex.n_dev) * ex.n_dev
        for start in range(0, failed.size, size):
            sel = failed[start : start + size]
            pool[sel], held[sel], _ = run(sel, size, "eigh")
    _check_finite_errors(pool, held, eta)
    return pool, held, ~ok


def _check_finite_errors(pool: np.ndarray, held: np.ndarray, eta: int | list[int]) -> None:
    if not (np.all(np.isfinite(pool)) and np.all(np.isfinite(held))):
        raise FloatingPointError(
            f"non-finite test error at eta={eta} even with the eigh fallback; check that `K` is "
            "a symmetric PSD kernel matrix and that `sigma2` is not below float64 resolution."
        )


def run_nested(
    k: Array, y: Array, key: Array, etas: list[int], ids: np.ndarray,
    sigma2: Array, chunk: int, ex: Executor,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nested trials ``ids`` (at most ``chunk``) at every η of ``etas``: (len(ids), E) pool MSEs,
    held-out MSEs and eigh-fallback flags.

    A trial whose factorisation of the largest system fails is redone per η on the same nested
    sets by ``run_independent`` (Cholesky of the η-point system, then eigh), exactly what an
    independent-draw run does with a failing trial.
    """
    n = k.shape[0]
    size = etas[-1]
    chunk = -(-min(chunk, len(ids)) // ex.n_dev) * ex.n_dev
    perms = permutations(key, NESTED_STREAM, ex.put(_pad_ids(ids, chunk)), n)
    program = _program("nested", ex.mesh, size=size, sequential=_sequential(ex, size))
    out = program(k, y, perms, np.asarray(etas, np.int32), sigma2)
    pool, held, ok = (np.array(o)[: len(ids)] for o in out)
    fallback = np.zeros(pool.shape, dtype=bool)
    for e, eta in enumerate(etas):
        bad = np.flatnonzero(~ok[:, e])
        if bad.size:
            pool[bad, e], held[bad, e], fallback[bad, e] = run_independent(
                k, y, key, NESTED_STREAM, eta, ids[bad], sigma2, chunk, ex, lambda _: None
            )
    _check_finite_errors(pool, held, etas)
    return pool, held, fallback


