"""Exact GP regression and empirical learning curves (THEORY §2).

The posterior mean from η training points is ``f̄(x) = K(x, X_η) (K(X_η, X_η) + σ² I)⁻¹ y_η``.
``learning_curve`` measures its test error on a pool of N points: for every training-set size η it
draws ``trials`` training sets of η distinct pool points, fits the GP on each and reports

* the pool MSE ``(1/N) Σ_i (f̄(x_i) − y_i)²`` over all N pool points (THEORY §2 convention), and
* the held-out MSE over the N − η pool points not in the training set,

with their means over trials and standard errors ``std(ddof=1)/√trials``.

Design:

* The trials of one η run in chunks that bound memory, each chunk one jitted program: a ``vmap``
  over the trials, or on CPU for systems above 512 a ``lax.map`` loop (a loop of LAPACK calls
  beats the batched kernels there and holds one (η, η) system at a time). With several devices
  the trials of a chunk are split over them with ``shard_map``.
* η is a traced value: η <= 512 is solved at the next of 8, 32, 128, 512 with an identity block
  (exact), so all η of one bucket share one compilation; larger η compile once each (the
  factorisation then dominates). The last chunk is padded to the chunk shape.
* Predictions on the pool are ``K @ a`` with ``a`` the weights scattered into an N-vector, so a
  trial needs O(η² + N) memory and a chunk of trials is a single matrix product.
* A trial's points enter its system in increasing pool order (nested: within each segment
  between consecutive η), which does not change the solution and makes the (η, η) gather from
  ``K`` about 5x faster than in draw order.
* Random draws are keyed by ``fold_in(fold_in(key, η), trial)``: the training sets of a given
  (η, trial) do not depend on the rest of the η grid, on the chunk size, on the number of trials
  or on resumption. ``training_sets`` returns them, to reproduce any trial elsewhere.
* ``nested=True`` draws one permutation per trial (key ``fold_in(fold_in(key, 0), trial)``) whose
  prefixes are the training sets of every η. One Cholesky factorisation at the largest η, one
  forward solve and one triangular solve with a right-hand side per η then give every η of the
  trial (see ``_nested_weights``), in a single compiled program for the whole run.
* Linear solves are Cholesky in float64; a trial whose Cholesky fails (NaN, possible at tiny σ²
  on an ill-conditioned Gram matrix) is redone with an eigendecomposition (see
  ``gp_posterior_mean``). Non-finite results are an error, never returned.
* With ``results_path`` finished trials are appended as JSON lines (one per η, or per η and chunk
  of trials when nested) and fsynced, so an interrupted run resumes where it stopped (see
  ``learning_curve`` for the file format).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from rgjax._validate import check_finite, check_sigma2, check_x64, concrete

__all__ = [
    "LearningCurve",
    "RESULTS_FORMAT",
    "gp_posterior_mean",
    "learning_curve",
    "training_sets",
]

#: Value of the ``"format"`` field in the fingerprint of every results-file line.
RESULTS_FORMAT = "rgjax.learning_curve/1"

_DEFAULT_MEMORY_BUDGET = 2**30  # bytes for the intermediates of one chunk of trials
_PROBE_SEED = 20240506  # fixed: fingerprints must agree between runs and machines
_PROBE_RTOL = 1e-9  # fingerprint tolerance, relative to the array's scale


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

_ARRAY_FIELDS = (
    "etas",
    "mse_pool",
    "mse_pool_se",
    "mse_heldout",
    "mse_heldout_se",
    "mse_pool_trials",
    "mse_heldout_trials",
    "n_fallback",
)
_META_FIELDS = ("trials", "sigma2", "n_pool", "nested")


@dataclasses.dataclass(frozen=True, eq=False)
class LearningCurve:
    """Empirical learning curve of exact GP regression on a pool of ``n_pool`` points.

    Attributes (E = number of η values, T = ``trials``):
        etas: (E,) int training-set sizes, increasing.
        mse_pool, mse_pool_se: (E,) mean over trials of the pool MSE and its standard error.
        mse_heldout, mse_heldout_se: (E,) the same on held-out points (pool minus training set).
        mse_pool_trials, mse_heldout_trials: (E, T) per-trial values; trial t of η always uses the
            training set ``training_sets(key, n_pool, η, T)[t]``.
        n_fallback: (E,) number of trials solved by the eigh fallback instead of Cholesky.
        trials: T.  sigma2: the ridge σ².  n_pool: N.
        nested: whether the training sets were nested draws (``learning_curve(nested=True)``:
            trial t of η uses ``training_sets(key, n_pool, η, T, nested=True)[t]``).

    A JAX pytree (arrays are leaves); ``to_dict``/``from_dict`` give a JSON-ready round trip.
    """

    etas: np.ndarray
    mse_pool: np.ndarray
    mse_pool_se: np.ndarray
    mse_heldout: np.ndarray
    mse_heldout_se: np.ndarray
    mse_pool_trials: np.ndarray
    mse_heldout_trials: np.ndarray
    n_fallback: np.ndarray
    trials: int
    sigma2: float
    n_pool: int
    nested: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain Python lists/numbers, ready for ``json.dump`` (floats round-trip exactly)."""
        out: dict[str, Any] = {f: np.asarray(getattr(self, f)).tolist() for f in _ARRAY_FIELDS}
        out.update(trials=int(self.trials), sigma2=float(self.sigma2), n_pool=int(self.n_pool),
                   nested=bool(self.nested))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearningCurve:
        """Inverse of ``to_dict``."""
        ints = {"etas", "n_fallback"}
        arrays = {
            f: np.asarray(d[f], dtype=np.int64 if f in ints else np.float64) for f in _ARRAY_FIELDS
        }
        return cls(
            **arrays, trials=int(d["trials"]), sigma2=float(d["sigma2"]), n_pool=int(d["n_pool"]),
            nested=bool(d.get("nested", False)),
        )


jax.tree_util.register_dataclass(
    LearningCurve, data_fields=list(_ARRAY_FIELDS), meta_fields=list(_META_FIELDS)
)


# --------------------------------------------------------------------------------------------
# Exact GP posterior mean
# --------------------------------------------------------------------------------------------


def _float_dtype() -> Any:
    # float64 when x64 is enabled (required for σ² = 1e-8); float32 otherwise, with a warning.
    return jnp.result_type(float)


def _cholesky_weights(k: jax.Array, y: jax.Array, sigma2: jax.Array) -> jax.Array:
    """α = (k + σ² I)⁻¹ y by Cholesky; NaN when the factorisation fails. k (η, η), y (η, ...).

    Reads the lower triangle of ``k`` only (no symmetrisation pass: kernels are symmetric).
    """
    eye = jnp.eye(k.shape[0], dtype=k.dtype)
    chol = jax.lax.linalg.cholesky(k + sigma2 * eye, symmetrize_input=False)
    z = jax.scipy.linalg.solve_triangular(chol, y, lower=True)
    return jax.scipy.linalg.solve_triangular(chol, z, lower=True, trans="T")


def _eigh_weights(k: jax.Array, y: jax.Array, sigma2: jax.Array) -> jax.Array:
    """α = V (w⁺ + σ²)⁻¹ Vᵀ y with k = V diag(w) Vᵀ and w⁺ = max(w, 0). k (η, η), y (η, ...).

    Reads the lower triangle of ``k``, like the Cholesky path. Clipping the round-off negative
    eigenvalues of a PSD kernel keeps every denominator >= σ² > 0.
    """
    w, v = jnp.linalg.eigh(k, UPLO="L", symmetrize_input=False)
    inv = 1.0 / (jnp.clip(w, 0.0) + sigma2)
    coef = v.T @ y
    return v @ (inv.reshape(inv.shape + (1,) * (y.ndim - 1)) * coef)


@jax.jit
def _posterior_weights(k: jax.Array, y: jax.Array, sigma2: jax.Array) -> jax.Array:
    """Cholesky weights, or eigh weights when Cholesky produced NaN/Inf."""
    alpha = _cholesky_weights(k, y, sigma2)
    ok = jnp.all(jnp.isfinite(alpha))
    return jax.lax.cond(ok, lambda: alpha, lambda: _eigh_weights(k, y, sigma2))


def gp_posterior_mean(
    k_train: Any, y_train: Any, k_test_train: Any, sigma2: float | jax.Array
) -> jax.Array:
    """Exact GP posterior mean ``f̄ = K(X*, X_η) (K(X_η, X_η) + σ² I)⁻¹ y_η``.

    Args:
        k_train: (η, η) Gram matrix of the training inputs (symmetric PSD).
        y_train: (η,) or (η, m) training targets.
        k_test_train: (M, η) kernel between test and training inputs.
        sigma2: ridge σ² > 0 (scalar).

    Returns:
        (M,) or (M, m) posterior mean at the test inputs, in float64 when x64 is enabled.

    The solve is a Cholesky factorisation of ``K + σ² I``. At tiny σ² (the paper's 1e-8 with O(1)
    kernel entries) round-off can make that matrix numerically indefinite and the factorisation
    fails (NaN). The solve then falls back to ``K = V diag(w) Vᵀ``: negative round-off eigenvalues
    are clipped to 0 and ``α = V diag(1/(w + σ²)) Vᵀ y``, the exact ridge solution for the nearest
    PSD matrix. Under ``jit`` both branches are compiled and only one runs (under ``vmap`` both
    run). Only the lower triangle of ``k_train`` is read. On concrete inputs a non-finite result
    raises ``FloatingPointError``.
    """
    k_train, y_train, k_test_train = _check_posterior_inputs(k_train, y_train, k_test_train)
    check_sigma2(sigma2)
    if jnp.ndim(sigma2) != 0:
        raise ValueError(f"`sigma2` must be a scalar; got shape {jnp.shape(sigma2)}.")
    dtype = _float_dtype()
    check_x64(dtype, sigma2, _max_abs_diag(k_train), what="GP solve")
    sigma2 = jnp.asarray(sigma2, dtype)
    mean = jnp.asarray(k_test_train, dtype) @ _posterior_weights(
        jnp.asarray(k_train, dtype), jnp.asarray(y_train, dtype), sigma2
    )
    m = concrete(mean)
    if m is not None and not np.all(np.isfinite(m)):
        raise FloatingPointError(
            "gp_posterior_mean produced NaN/Inf even with the eigh fallback; check that `k_train` "
            "is a symmetric PSD kernel matrix and that `sigma2` is not below float64 resolution."
        )
    return mean


def _max_abs_diag(k: Any) -> Any:
    d = concrete(k)
    return None if d is None else (np.max(np.abs(np.diagonal(d))) if d.size else 0.0)


def _check_posterior_inputs(k_train: Any, y_train: Any, k_test_train: Any) -> tuple[Any, Any, Any]:
    k_train, y_train, k_test_train = (
        x if isinstance(x, jax.Array) else np.asarray(x) for x in (k_train, y_train, k_test_train)
    )
    if k_train.ndim != 2 or k_train.shape[0] != k_train.shape[1]:
        raise ValueError(f"`k_train` must be a square (η, η) matrix; got shape {k_train.shape}.")
    n = k_train.shape[0]
    if n == 0:
        raise ValueError("`k_train` is empty: need at least one training point.")
    if y_train.ndim not in (1, 2) or y_train.shape[0] != n:
        raise ValueError(
            f"`y_train` must have shape (η,) or (η, m) with η = {n} to match `k_train`; "
            f"got shape {y_train.shape}."
        )
    if k_test_train.ndim != 2 or k_test_train.shape[1] != n:
        raise ValueError(
            f"`k_test_train` must have shape (M, η) with η = {n} to match `k_train`; "
            f"got shape {k_test_train.shape}."
        )
    for x, name in ((k_train, "k_train"), (y_train, "y_train"), (k_test_train, "k_test_train")):
        check_finite(x, name)
    return k_train, y_train, k_test_train


# --------------------------------------------------------------------------------------------
# Training-set draws
# --------------------------------------------------------------------------------------------

#: η slot of the key stream of nested draws (``nested=True``): trial t permutes the pool with
#: key ``fold_in(fold_in(key, 0), t)``. Training-set sizes are >= 1, so the nested stream never
#: coincides with the stream of an independent draw.
_NESTED_STREAM = 0


@partial(jax.jit, static_argnames=("n",))
def _permutations(key: jax.Array, stream: jax.Array, trial_ids: jax.Array, n: int) -> jax.Array:
    """(c, N) random permutations of range(N); row r has key fold_in(fold_in(key, stream), id_r).

    ``stream`` is η for independent draws and ``_NESTED_STREAM`` for nested ones. A training set
    is the first η entries of its row. ``stream`` is traced, so this compiles once per (N, c) and
    the η-specific programs hold no random-number generation (threefry compiles slowly on CPU).
    """
    key_s = jax.random.fold_in(key, stream)
    return jax.vmap(lambda t: jax.random.permutation(jax.random.fold_in(key_s, t), n))(trial_ids)


def _as_key(key: Any) -> jax.Array:
    """A typed PRNG key from a typed key, a legacy uint32[2] key, or an int seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(
                f"`key` must be a single PRNG key; got a key array of shape {key.shape}."
            )
        return key
    raw = concrete(key)
    if raw is None or raw.dtype != np.uint32 or raw.shape != (2,):
        raise ValueError(
            "`key` must be a JAX PRNG key (`jax.random.key(0)` or `jax.random.PRNGKey(0)`) or an "
            f"int seed; got {type(key).__name__}."
        )
    return jax.random.wrap_key_data(jnp.asarray(raw))


def training_sets(key: Any, n: int, eta: int, trials: int, *, nested: bool = False) -> np.ndarray:
    """The training sets ``learning_curve`` uses: (trials, η) int array of distinct pool indices.

    Row t is trial t of training-set size η, drawn uniformly without replacement from
    ``range(n)``; it is the same for any η grid, chunk size or number of trials.

    * ``nested=False`` (independent draws): key ``fold_in(fold_in(key, η), t)``, so the sets of
      different η are independent.
    * ``nested=True``: the first η entries of one random permutation per trial (key
      ``fold_in(fold_in(key, 0), t)``), so trial t's set for η is a prefix of its set for any
      larger η. Each set is still uniform; only sets of one trial at different η are correlated.
    """
    n, eta, trials = int(n), int(eta), int(trials)
    if not 0 < eta <= n:
        raise ValueError(f"`eta` must satisfy 0 < eta <= n = {n}; got {eta}.")
    if trials < 1:
        raise ValueError(f"`trials` must be >= 1; got {trials}.")
    stream = _NESTED_STREAM if nested else eta
    perms = _permutations(_as_key(key), stream, jnp.arange(trials, dtype=jnp.int32), n)
    return np.asarray(perms[:, :eta])


# --------------------------------------------------------------------------------------------
# Batched trials
# --------------------------------------------------------------------------------------------

_PAD_SIZES = (8, 32, 128, 512)  # η up to 512 are solved at the next of these sizes
_PAD_LIMIT = _PAD_SIZES[-1]


def _padded_size(eta: int, n: int) -> int:
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


def _sequential(ex: _Executor, size: int) -> bool:
    """Loop over the trials of a chunk rather than vmap them: on CPU, for systems above 512.

    There a loop of LAPACK calls is 1.3-1.6x faster than the batched kernels (measured for ten
    Cholesky solves of size 1000) and holds one trial's system in memory at a time. Small
    systems are cheap either way and a vmapped program compiles in half the time.
    """
    return ex.cpu and size > _PAD_LIMIT


@dataclasses.dataclass(frozen=True)
class _Executor:
    """Where chunks of trials run.

    mesh/sharding: the trial axis split over several devices with ``shard_map`` (None for one
    device); device: the single device when ``mesh`` is None; cpu: whether the devices are CPUs
    (see ``_sequential``).
    """

    mesh: jax.sharding.Mesh | None
    sharding: jax.sharding.NamedSharding | None
    device: jax.Device | None
    cpu: bool

    @property
    def n_dev(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def put(self, a: Any) -> jax.Array:
        """Trial-axis array (ids) onto the devices."""
        return jax.device_put(a, self.sharding if self.mesh is not None else self.device)


def _executor(devices: Sequence[jax.Device] | None) -> _Executor:
    """Execution plan for ``devices`` (default: all local devices)."""
    devs = list(jax.local_devices() if devices is None else devices)
    if not devs:
        raise ValueError("`devices` is empty; pass at least one device or None for all.")
    cpu = devs[0].platform == "cpu"
    if len(devs) == 1:
        return _Executor(None, None, devs[0], cpu)
    # Auto axis type: jax >= 0.10 meshes may default to explicit sharding, which linalg rejects.
    types = (jax.sharding.AxisType.Auto,) if hasattr(jax.sharding, "AxisType") else None
    mesh = jax.sharding.Mesh(np.asarray(devs), ("trials",), axis_types=types)
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("trials"))
    return _Executor(mesh, sharding, None, cpu)


def _map_trials(body: Callable, xs: jax.Array, sequential: bool) -> Any:
    return jax.lax.map(body, xs) if sequential else jax.vmap(body)(xs)


def _independent_weights(
    k: jax.Array, y: jax.Array, sigma2: jax.Array, eta: jax.Array, p: jax.Array, *,
    size: int, method: str,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One trial: weights scattered into an N-vector, held-out mask, solve success flag.

    The training set is ``p[:eta]``; the system is solved at ``size >= eta`` (see
    ``_padded_size``), rows and columns beyond η being an identity block with zero right-hand
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
        alpha = _eigh_weights(k_tt, rhs, sigma2)
    ok = jnp.all(jnp.isfinite(alpha))
    # Scattering α into an N-vector turns the pool prediction into K @ a: O(N) memory per
    # trial and one matrix product for the whole chunk.
    a = jnp.zeros(n, k.dtype).at[i].set(alpha)
    held = jnp.ones(n, k.dtype).at[i].set(jnp.where(live, 0.0, 1.0).astype(k.dtype))
    return a, held, ok


def _independent_chunk(
    k: jax.Array, y: jax.Array, perms: jax.Array, eta: jax.Array, sigma2: jax.Array, *,
    size: int, method: str, sequential: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
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
    k: jax.Array, y: jax.Array, sigma2: jax.Array, etas: jax.Array, p: jax.Array, *, size: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
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
    k: jax.Array, y: jax.Array, perms: jax.Array, etas: jax.Array, sigma2: jax.Array, *,
    size: int, sequential: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
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


def _shard_map(f: Callable, mesh: jax.sharding.Mesh, in_specs: Any, out_specs: Any) -> Callable:
    """``jax.shard_map`` (jax >= 0.6) or ``jax.experimental.shard_map`` (older), unchecked."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # pragma: no cover - jax < 0.6

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


@functools.lru_cache(maxsize=128)
def _program(kind: str, mesh: jax.sharding.Mesh | None, **static: Any) -> Callable:
    """Jitted chunk function ``(k, y, perms, eta(s), sigma2) -> (pool, held, ok)``.

    With a mesh, each device runs the chunk function on its share of the trials (``shard_map``;
    ``k``, ``y``, η and σ² replicated), so per-device memory is that of ``chunk / n_dev`` trials.
    """
    fn = partial(_independent_chunk if kind == "independent" else _nested_chunk, **static)
    if mesh is not None:
        P = jax.sharding.PartitionSpec
        fn = _shard_map(fn, mesh, (P(), P(), P("trials"), P(), P()), P("trials"))
    return jax.jit(fn)


def _chunk_size(per_trial: int, per_program: int, trials: int, memory_budget: int) -> int:
    """Trials per chunk so that a chunk's intermediates stay under ``memory_budget`` bytes."""
    return int(max(1, min(trials, (memory_budget - per_program) // per_trial)))


def _independent_chunk_size(n: int, eta: int, trials: int, budget: int, ex: _Executor) -> int:
    """Per trial: a few float64 N-vectors (weights, mask, prediction, squared error, the int32
    permutation) plus the gathered (size, size) system and its factor, held once per device when
    trials run sequentially, once per trial otherwise."""
    size = _padded_size(eta, n)
    system, seq = 8 * 2 * size * size, _sequential(ex, size)
    per_trial = 8 * 5 * n + (0 if seq else system)
    chunk = _chunk_size(per_trial, system if seq else 0, trials, budget * ex.n_dev)
    return -(-chunk // ex.n_dev) * ex.n_dev  # whole trials per device; padding is discarded


def _nested_chunk_size(n: int, size: int, n_eta: int, trials: int, budget: int,
                       ex: _Executor) -> int:
    """Per trial: (N, E) weights, predictions and squared errors, plus the (size, size) system and
    factor and the (size, E) right-hand sides (once per device when sequential)."""
    system, seq = 8 * (2 * size * size + 2 * size * n_eta), _sequential(ex, size)
    per_trial = 8 * (3 * n * n_eta + 2 * n) + (0 if seq else system)
    chunk = _chunk_size(per_trial, system if seq else 0, trials, budget * ex.n_dev)
    return -(-chunk // ex.n_dev) * ex.n_dev


def _pad_ids(ids: np.ndarray, size: int) -> np.ndarray:
    """Pad with the last id to ``size`` entries (one compiled shape; padding is discarded)."""
    return np.concatenate([ids, np.full(size - len(ids), ids[-1])]).astype(np.int32)


def _run_independent(
    k: jax.Array, y: jax.Array, key: jax.Array, stream: int, eta: int, ids: np.ndarray,
    sigma2: jax.Array, chunk: int, ex: _Executor, advance: Callable[[int], None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trials ``ids`` of one η, drawn from key stream ``stream``: pool MSEs, held-out MSEs and
    which trials needed the eigh fallback (three arrays of len(ids)).

    Cholesky first; the few trials where it fails are redone with eigh at the exact size η.
    """
    n = k.shape[0]
    count = len(ids)
    pool, held, ok = np.empty(count), np.empty(count), np.empty(count, dtype=bool)
    eta_arr = jnp.asarray(eta, jnp.int32)

    def run(sel: np.ndarray, size: int, method: str) -> tuple[np.ndarray, ...]:
        perms = _permutations(key, stream, ex.put(_pad_ids(ids[sel], size)), n)
        system = _padded_size(eta, n) if method == "cholesky" else eta
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


def _check_finite_errors(pool: np.ndarray, held: np.ndarray, eta: Any) -> None:
    if not (np.all(np.isfinite(pool)) and np.all(np.isfinite(held))):
        raise FloatingPointError(
            f"non-finite test error at eta={eta} even with the eigh fallback; check that `K` is "
            "a symmetric PSD kernel matrix and that `sigma2` is not below float64 resolution."
        )


def _run_nested(
    k: jax.Array, y: jax.Array, key: jax.Array, etas: list[int], ids: np.ndarray,
    sigma2: jax.Array, chunk: int, ex: _Executor,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nested trials ``ids`` (at most ``chunk``) at every η of ``etas``: (len(ids), E) pool MSEs,
    held-out MSEs and eigh-fallback flags.

    A trial whose factorisation of the largest system fails is redone per η on the same nested
    sets by ``_run_independent`` (Cholesky of the η-point system, then eigh), exactly what an
    independent-draw run does with a failing trial.
    """
    n = k.shape[0]
    size = etas[-1]
    chunk = -(-min(chunk, len(ids)) // ex.n_dev) * ex.n_dev
    perms = _permutations(key, _NESTED_STREAM, ex.put(_pad_ids(ids, chunk)), n)
    program = _program("nested", ex.mesh, size=size, sequential=_sequential(ex, size))
    out = program(k, y, perms, jnp.asarray(etas, jnp.int32), sigma2)
    pool, held, ok = (np.array(o)[: len(ids)] for o in out)
    fallback = np.zeros(pool.shape, dtype=bool)
    for e, eta in enumerate(etas):
        bad = np.flatnonzero(~ok[:, e])
        if bad.size:
            pool[bad, e], held[bad, e], fallback[bad, e] = _run_independent(
                k, y, key, _NESTED_STREAM, eta, ids[bad], sigma2, chunk, ex, lambda _: None
            )
    _check_finite_errors(pool, held, etas)
    return pool, held, fallback


# --------------------------------------------------------------------------------------------
# Results file: fingerprint, loading, appending
# --------------------------------------------------------------------------------------------


@jax.jit
def _probe_values(a: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """[rms(a), u_c · a v_c for each c]; a (N,) or (N, N), u and v (count, N)."""
    vals = jnp.sum(u * (v @ a.T), axis=1) if a.ndim == 2 else u @ a
    return jnp.concatenate([jnp.sqrt(jnp.mean(a * a))[None], vals])


def _probes(a: jax.Array, count: int = 4) -> list[float]:
    """Scale-free summary of an (N,) or (N, N) array: rms and ``uᵀ a v`` for fixed ±1/√N vectors.

    Every entry of ``a`` enters the probes, which tolerate round-off (unlike a hash of the bytes),
    so a Gram matrix rebuilt on another device still matches.
    """
    n = a.shape[0]
    rng = np.random.default_rng(_PROBE_SEED)
    u, v = (rng.choice([-1.0, 1.0], size=(count, n)) / math.sqrt(n) for _ in range(2))
    return [float(x) for x in np.asarray(_probe_values(a, u.astype(a.dtype), v.astype(a.dtype)))]


def _fingerprint(
    k: jax.Array, y: jax.Array, sigma2: float, trials: int, key: jax.Array, nested: bool
) -> dict:
    fp = {
        "format": RESULTS_FORMAT,
        "n_pool": int(k.shape[0]),
        "trials": int(trials),
        "sigma2": float(sigma2),
        "key_impl": str(jax.random.key_impl(key)),
        "key": [int(x) for x in np.asarray(jax.random.key_data(key)).ravel()],
        "K_probes": _probes(k),
        "y_probes": _probes(y),
    }
    if nested:  # only then: files of independent-draw runs keep their original fingerprint
        fp["nested"] = True
    return fp


# Value of a fingerprint field that a file may lack (it was added later).
_FINGERPRINT_DEFAULTS = {"nested": False}


def _fingerprint_diff(old: dict, new: dict) -> list[str]:
    """Names (with values where short) of the fingerprint fields that differ."""
    diffs = []
    for name in [*new, *(f for f in old if f not in new)]:
        value = new.get(name, _FINGERPRINT_DEFAULTS.get(name))
        other = old.get(name, _FINGERPRINT_DEFAULTS.get(name))
        if name.endswith("_probes"):
            same = isinstance(other, list) and len(other) == len(value)
            if same:
                # Tolerance relative to the array's scale: the probes are bounded by N·rms.
                scale = max(abs(value[0]), abs(other[0]), 1e-300) * new["n_pool"]
                same = all(abs(a - b) <= _PROBE_RTOL * scale for a, b in zip(other, value))
            if not same:
                diffs.append(name.removesuffix("_probes") + " (values differ)")
        elif other != value:
            diffs.append(f"{name} (file {other!r}, now {value!r})")
    return diffs


@dataclasses.dataclass
class _EtaResults:
    """Per-trial results of one η gathered from records (full or partial)."""

    pool: np.ndarray
    held: np.ndarray
    have: np.ndarray
    n_fallback: int = 0

    @classmethod
    def empty(cls, trials: int) -> _EtaResults:
        return cls(np.full(trials, np.nan), np.full(trials, np.nan), np.zeros(trials, bool))

    def add(self, start: int, pool: Any, held: Any, n_fallback: int) -> None:
        """Trials ``start..start+len(pool)-1``; trials already present keep their first value."""
        sel = np.arange(start, start + len(pool))
        new = ~self.have[sel]
        if not new.any():
            return
        self.pool[sel[new]] = np.asarray(pool, dtype=np.float64)[new]
        self.held[sel[new]] = np.asarray(held, dtype=np.float64)[new]
        self.have[sel[new]] = True
        self.n_fallback += int(n_fallback)


def _load_results(
    path: Path, fingerprint: dict, trials: int, overwrite: bool
) -> dict[int, _EtaResults]:
    """Trials already in a results file, keyed by η. Repairs a truncated last line.

    Raises ``ValueError`` on a fingerprint mismatch (unless ``overwrite``, which empties the file)
    or on a corrupt line that is not the last one.
    """
    if not path.exists():
        return {}
    if overwrite:
        path.write_bytes(b"")
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        # A crash mid-write leaves a partial last line: drop it so appends start on a clean line.
        with open(path, "r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    done: dict[int, _EtaResults] = {}
    for lineno, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            eta = int(rec["eta"])
            start = int(rec.get("trial_start", 0))
            count = len(rec["mse_pool"])
            ok = len(rec["mse_heldout"]) == count and (
                count == trials if "trial_start" not in rec else 0 < count <= trials - start
            ) and start >= 0
            n_fallback = int(rec["n_fallback"])
            fp = rec["fingerprint"]
            if not isinstance(fp, dict):
                raise TypeError("its fingerprint is not a JSON object")
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"`results_path` {str(path)!r}: line {lineno} is not a learning-curve record "
                f"({err}); fix or remove the file, or pass overwrite=True to start fresh."
            ) from None
        diff = _fingerprint_diff(fp, fingerprint)
        if diff:
            raise ValueError(
                f"`results_path` {str(path)!r} holds results of a different configuration "
                f"(line {lineno} differs in: {', '.join(diff)}); pass overwrite=True to discard "
                "it and start fresh, or choose another results_path."
            )
        if not ok:
            what = (f"{trials} trials" if "trial_start" not in rec
                    else f"trials {start}..{start + count - 1} of 0..{trials - 1}")
            raise ValueError(
                f"`results_path` {str(path)!r}: line {lineno} does not hold {what} "
                "(mse_pool and mse_heldout must list one value per trial)."
            )
        done.setdefault(eta, _EtaResults.empty(trials)).add(
            start, rec["mse_pool"], rec["mse_heldout"], n_fallback
        )
    return done


def _runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive integers in sorted ``ids``, as (first index, stop index) into
    ``ids``."""
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    bounds = np.concatenate([[0], breaks, [len(ids)]])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _append_record(path: Path, record: dict) -> None:
    """Append one JSON line and force it to disk: what is on disk survives any later crash."""
    line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------
# Validation of learning_curve inputs
# --------------------------------------------------------------------------------------------


def _is_kernel(k: Any) -> bool:
    return callable(k) and not hasattr(k, "shape")


def _gram_or_array(k: Any, x: Any) -> Any:
    """The (N, N) Gram matrix: ``k`` itself, or ``rgjax.kernels.gram(k, x)`` for a kernel object."""
    if _is_kernel(k):
        if x is None:
            raise ValueError(
                "`x` is required when `K` is a kernel object: pass the (N, ...) pool inputs "
                "as x=..., or pass the Gram matrix as `K`."
            )
        check_finite(x, "x")
        from rgjax.kernels import gram  # lazy: only this path needs the kernels module

        return gram(k, x)
    if x is not None:
        raise ValueError(
            "`x` is only used when `K` is a kernel object; `K` is already a Gram matrix, "
            "so drop x=... (or pass the kernel as `K`)."
        )
    return k


def _check_pool(k: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    shape_k, shape_y = jnp.shape(k), jnp.shape(y)
    if len(shape_k) != 2 or shape_k[0] != shape_k[1]:
        raise ValueError(
            f"`K` must be a square (N, N) Gram matrix of the pool; got shape {shape_k}."
        )
    n = shape_k[0]
    if shape_y != (n,):
        raise ValueError(
            f"`y` must have shape (N,) = ({n},) to match `K`; got shape {shape_y}."
        )
    if n < 3:
        raise ValueError(f"`K`: the pool needs at least 3 points (a training set and a held-out "
                         f"point for eta >= 1); got N = {n}.")
    check_finite(k, "K")
    check_finite(y, "y")
    dtype = _float_dtype()
    return jnp.asarray(k, dtype), jnp.asarray(y, dtype)


def _check_etas(etas: Any, n: int) -> list[int]:
    a = np.atleast_1d(np.asarray(etas))
    if a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"`etas` must be a non-empty 1-D sequence of training-set sizes; got {etas!r}."
        )
    if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
        raise ValueError(f"`etas` must be integers (training-set sizes); got {a.tolist()!r}.")
    a = a.astype(np.int64)
    if np.any(a <= 0):
        raise ValueError(f"`etas` must be >= 1 (training-set sizes); got {a.tolist()!r}.")
    if np.any(a >= n):
        raise ValueError(
            f"`etas` must be < N = {n} (the pool size), so that at least one held-out point "
            f"remains; got values up to {int(a.max())}."
        )
    return sorted(set(a.tolist()))


def _check_int(value: Any, name: str, minimum: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum} ({why}); got {value!r}.")
    return int(value)


# --------------------------------------------------------------------------------------------
# Learning curve
# --------------------------------------------------------------------------------------------


def learning_curve(
    K: Any,
    y: Any,
    etas: Sequence[int] | np.ndarray,
    sigma2: float,
    *,
    trials: int,
    key: Any,
    x: Any = None,
    chunk_size: int | None = None,
    results_path: str | os.PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
    memory_budget: int = _DEFAULT_MEMORY_BUDGET,
    callback: Callable[[int, dict], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
    nested: bool = False,
) -> LearningCurve:
    """Empirical learning curve of exact GP regression on a pool (THEORY §2).

    For each η, ``trials`` training sets of η distinct pool points are drawn without replacement
    (trial t uses ``training_sets(key, N, η, trials, nested=nested)[t]``), the GP posterior mean
    is computed on the whole pool, and the pool MSE ``(1/N) Σ_i (f̄(x_i) − y_i)²`` and the MSE on
    the N − η held-out points are recorded.

    Args:
        K: (N, N) Gram matrix of the pool (numpy or JAX), or a kernel object ``k(x1, x2=None)``
            together with ``x``, in which case ``rgjax.kernels.gram(K, x)`` builds it.
        y: (N,) pool targets.
        etas: training-set sizes, integers with 1 <= η < N (at least one held-out point).
            Sorted and de-duplicated in the result.
        sigma2: ridge σ² > 0.
        trials: training sets per η, >= 2 (the standard error needs two).
        key: JAX PRNG key (typed or legacy) or int seed.
        x: (N, ...) pool inputs, only when ``K`` is a kernel object.
        chunk_size: trials per batch; default: as many as fit in ``memory_budget``. Results do
            not depend on it (beyond float round-off).
        results_path: JSON-lines file making the run resumable (see below).
        progress: show a tqdm bar over η × trials.
        overwrite: discard the contents of ``results_path`` and start fresh.
        memory_budget: bytes allowed per device for a chunk's intermediates (default 1 GiB),
            about ``40 N`` per trial plus ``16 s²`` for the s × s system (s = η, or the next
            of 8, 32, 128, 512 for η <= 512); nested: ``24 N E`` per trial for E values of η,
            plus ``16 max(η)²``. On CPU, systems above 512 are solved one trial after another,
            so their term counts once; otherwise it counts per trial.
        callback: called as ``callback(eta, record)`` after each record is written (not for
            results loaded from the file); ``record`` is the dict written to the results file.
        devices: devices to split each chunk of trials over (data parallel: ``K`` is replicated
            on each, so each needs the N² matrix plus its share of the chunk budget). Default:
            all local devices, e.g. every GPU; pass ``[jax.devices()[0]]`` to use one. Results
            do not depend on the number of devices (beyond float round-off).
        nested: draw one random permutation of the pool per trial and use its first η entries
            as the training set of every η (``training_sets(..., nested=True)``). One Cholesky
            factorisation at the largest η then serves all η of a trial: its leading blocks are
            the factors of the smaller systems. Every (η, trial) set is still a uniform draw and
            the trials are independent, so each η's mean and standard error are as valid as with
            independent draws; only the errors of one trial at different η are correlated (the
            curve looks smoother than independent draws would make it). Cost per trial is one
            factorisation at max η instead of one per η: on a log-spaced grid about 1.8x less
            factorisation, more on denser grids. Default False: independent draws per η.

    Returns:
        A ``LearningCurve`` (``nested`` records which draws were used).

    Results file: one JSON object per line::

        {"fingerprint": {"format": "rgjax.learning_curve/1", "n_pool": N, "trials": T,
                         "sigma2": σ², "key_impl": "threefry2x32", "key": [..],
                         "K_probes": [rms, p1..p4], "y_probes": [rms, p1..p4]},
         "eta": η, "mse_pool": [T floats], "mse_heldout": [T floats], "n_fallback": int,
         "seconds": float, "finished": unix time}

    A line holds the trials of one η: all T of them, or, with ``"trial_start": s``, trials
    s, s+1, … (written by nested runs after each chunk of trials, and when a run resumes an η
    with some of its trials missing). Nested runs add ``"nested": true`` to the fingerprint, and
    their ``"seconds"`` is the time of the whole chunk (all its η together).
    The probes are ``uᵀ K v`` (and ``u·y``) for fixed ±1/√N vectors, compared with a relative
    tolerance of 1e-9 so that a Gram matrix rebuilt with different round-off still matches. On a
    rerun, trials already in the file with a matching fingerprint are loaded, not recomputed
    (their floats round-trip exactly); a mismatching fingerprint raises ``ValueError`` unless
    ``overwrite=True``. Each line is flushed and fsynced; a truncated last line (a crash
    mid-write) is removed and its trials recomputed. One process per file.
    """
    k_arr, y_arr = _check_pool(_gram_or_array(K, x), y)
    n = k_arr.shape[0]
    eta_list = _check_etas(etas, n)
    check_sigma2(sigma2)
    if np.ndim(sigma2) != 0:
        raise ValueError(f"`sigma2` must be a scalar; got shape {np.shape(sigma2)}.")
    sigma2 = float(sigma2)
    trials = _check_int(trials, "trials", 2, "the standard error needs at least two trials")
    if chunk_size is not None:
        chunk_size = _check_int(chunk_size, "chunk_size", 1, "trials per batch")
    memory_budget = _check_int(memory_budget, "memory_budget", 1, "bytes")
    if not isinstance(nested, (bool, np.bool_)):
        raise ValueError(f"`nested` must be True or False; got {nested!r}.")
    nested = bool(nested)
    key = _as_key(key)
    if k_arr.dtype == jnp.float32:  # x64 disabled: σ² may be below float32 resolution
        scale = np.max(np.abs(np.diagonal(np.asarray(k_arr))))
        check_x64(k_arr.dtype, sigma2, scale, what="Gram matrix")

    path = None if results_path is None else Path(results_path)
    fingerprint = None
    loaded: dict[int, _EtaResults] = {}
    if path is not None:
        fingerprint = _fingerprint(k_arr, y_arr, sigma2, trials, key, nested)
        path.parent.mkdir(parents=True, exist_ok=True)
        loaded = _load_results(path, fingerprint, trials, overwrite)
    results = {eta: loaded.get(eta, _EtaResults.empty(trials)) for eta in eta_list}

    ex = _executor(devices)
    if ex.mesh is not None:
        replicated = jax.sharding.NamedSharding(ex.mesh, jax.sharding.PartitionSpec())
        k_arr, y_arr = jax.device_put(k_arr, replicated), jax.device_put(y_arr, replicated)
    else:
        k_arr, y_arr = jax.device_put(k_arr, ex.device), jax.device_put(y_arr, ex.device)
    s2 = jnp.asarray(sigma2, k_arr.dtype)

    def write(eta: int, ids: np.ndarray, pool: np.ndarray, held: np.ndarray,
              fallback: np.ndarray, seconds: float) -> None:
        """Store trials ``ids`` of η and append one record per run of consecutive trials."""
        for a, b in _runs(ids):
            record = {"fingerprint": fingerprint, "eta": eta}
            if b - a < trials:
                record["trial_start"] = int(ids[a])
            record.update({
                "mse_pool": pool[a:b].tolist(),
                "mse_heldout": held[a:b].tolist(),
                "n_fallback": int(np.count_nonzero(fallback[a:b])),
                "seconds": seconds,
                "finished": time.time(),
            })  # fmt: skip
            results[eta].add(int(ids[a]), pool[a:b], held[a:b], record["n_fallback"])
            if path is not None:
                _append_record(path, record)
            if callback is not None:
                callback(eta, record)

    with tqdm(
        total=len(eta_list) * trials, disable=not progress, unit="trial", desc="learning curve"
    ) as bar:
        bar.update(sum(int(r.have.sum()) for r in results.values()))
        if nested:
            _nested_loop(k_arr, y_arr, key, eta_list, results, trials, s2, chunk_size,
                         memory_budget, ex, bar, write)
        else:
            for eta in eta_list:
                ids = np.flatnonzero(~results[eta].have)
                if not ids.size:
                    continue
                bar.set_postfix_str(f"eta={eta}")
                chunk = chunk_size or _independent_chunk_size(n, eta, trials, memory_budget, ex)
                t0 = time.perf_counter()
                pool, held, fallback = _run_independent(
                    k_arr, y_arr, key, eta, eta, ids, s2, chunk, ex, bar.update
                )
                write(eta, ids, pool, held, fallback, time.perf_counter() - t0)
    return _assemble(eta_list, results, trials, sigma2, n, nested)


def _nested_loop(
    k: jax.Array, y: jax.Array, key: jax.Array, eta_list: list[int],
    results: dict[int, _EtaResults], trials: int, sigma2: jax.Array, chunk_size: int | None,
    memory_budget: int, ex: _Executor, bar: Any, write: Callable[..., None],
) -> None:
    """Nested draws: chunks of trials, each solved at every η it still lacks in one program."""
    n = k.shape[0]
    missing = np.stack([~results[eta].have for eta in eta_list])  # (E, T)
    ids = np.flatnonzero(missing.any(axis=0))
    if not ids.size:
        return
    todo = [eta for eta, m in zip(eta_list, missing) if m.any()]
    chunk = chunk_size or _nested_chunk_size(n, todo[-1], len(todo), trials, memory_budget, ex)
    chunk = -(-chunk // ex.n_dev) * ex.n_dev  # whole trials per device
    bar.set_postfix_str(f"nested, eta<={todo[-1]}")
    for start in range(0, ids.size, chunk):
        part = ids[start : start + chunk]
        rows = [e for e in range(len(eta_list)) if missing[e, part].any()]
        etas_c = [eta_list[e] for e in rows]
        t0 = time.perf_counter()
        pool, held, fallback = _run_nested(k, y, key, etas_c, part, sigma2, chunk, ex)
        seconds = time.perf_counter() - t0
        for j, e in enumerate(rows):
            new = missing[e, part]
            write(eta_list[e], part[new], pool[new, j], held[new, j], fallback[new, j], seconds)
            bar.update(int(new.sum()))


def _assemble(
    etas: list[int], results: dict[int, _EtaResults], trials: int, sigma2: float, n: int,
    nested: bool,
) -> LearningCurve:
    pool = np.stack([results[e].pool for e in etas])
    held = np.stack([results[e].held for e in etas])
    se = lambda a: np.std(a, axis=1, ddof=1) / math.sqrt(trials)  # noqa: E731
    return LearningCurve(
        etas=np.asarray(etas, dtype=np.int64),
        mse_pool=pool.mean(axis=1),
        mse_pool_se=se(pool),
        mse_heldout=held.mean(axis=1),
        mse_heldout_se=se(held),
        mse_pool_trials=pool,
        mse_heldout_trials=held,
        n_fallback=np.array([results[e].n_fallback for e in etas], dtype=np.int64),
        trials=trials,
        sigma2=sigma2,
        n_pool=n,
        nested=nested,
    )
