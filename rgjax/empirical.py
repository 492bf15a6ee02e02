"""Exact GP regression and empirical learning curves (docs/theory.md §2).

The posterior mean from η training points is ``f̄(x) = K(x, X_η) (K(X_η, X_η) + σ² I)⁻¹ y_η``.
``learning_curve`` measures its test error on a pool of N points: for every training-set size η it
draws ``trials`` training sets of η distinct pool points, fits the GP on each and reports

* the pool MSE ``(1/N) Σ_i (f̄(x_i) − y_i)²`` over all N pool points (the convention of
  docs/theory.md §2), and
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
  of trials when nested) and fsynced, so an interrupted run resumes where it stopped (the file
  format is in :mod:`rgjax.store`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeGuard, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike
from tqdm import tqdm

from rgjax._pytree import dataclass, field
from rgjax._trials import (
    NESTED_STREAM,
    Executor,
    eigh_weights,
    executor,
    independent_chunk_size,
    nested_chunk_size,
    permutations,
    run_independent,
    run_nested,
)
from rgjax._typing import Array, ArrayLike, Device, KeyLike, PathLike, Scalar
from rgjax._validate import check_finite, check_int, check_sigma2, check_x64, concrete
from rgjax.kernels import Kernel, KernelFn, gram
from rgjax.spectrum import check_gram_values
from rgjax.store import (
    RESULTS_FORMAT,
    EtaResults,
    Record,
    append_record,
    fingerprint,
    load_results,
    trial_records,
)

__all__ = [
    "LearningCurve",
    "RESULTS_FORMAT",
    "gp_posterior_mean",
    "learning_curve",
    "training_sets",
]

_DEFAULT_MEMORY_BUDGET = 2**30  # bytes for the intermediates of one chunk of trials


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


@dataclass(eq=False)
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
    trials: int = field(static=True)
    sigma2: float = field(static=True)
    n_pool: int = field(static=True)
    nested: bool = field(static=True, default=False)

    def to_dict(self) -> Record:
        """Plain Python lists/numbers, ready for ``json.dump`` (floats round-trip exactly)."""
        out: Record = {f: np.asarray(getattr(self, f)).tolist() for f in _ARRAY_FIELDS}
        out.update(trials=int(self.trials), sigma2=float(self.sigma2), n_pool=int(self.n_pool),
                   nested=bool(self.nested))
        return out

    @classmethod
    def from_dict(cls, d: Record) -> LearningCurve:
        """Inverse of ``to_dict``."""
        ints = {"etas", "n_fallback"}
        arrays = {
            f: np.asarray(d[f], dtype=np.int64 if f in ints else np.float64) for f in _ARRAY_FIELDS
        }
        return cls(
            **arrays, trials=int(d["trials"]), sigma2=float(d["sigma2"]), n_pool=int(d["n_pool"]),
            nested=bool(d.get("nested", False)),
        )



# --------------------------------------------------------------------------------------------
# Exact GP posterior mean
# --------------------------------------------------------------------------------------------


def _float_dtype() -> DTypeLike:
    # float64 when x64 is enabled (required for σ² = 1e-8); float32 otherwise, with a warning.
    return jnp.result_type(float)


def _cholesky_weights(k: Array, y: Array, sigma2: Array) -> Array:
    """α = (k + σ² I)⁻¹ y by Cholesky; NaN when the factorisation fails. k (η, η), y (η, ...).

    Reads the lower triangle of ``k`` only (no symmetrisation pass: kernels are symmetric).
    """
    eye = jnp.eye(k.shape[0], dtype=k.dtype)
    chol = jax.lax.linalg.cholesky(k + sigma2 * eye, symmetrize_input=False)
    z = jax.scipy.linalg.solve_triangular(chol, y, lower=True)
    return jax.scipy.linalg.solve_triangular(chol, z, lower=True, trans="T")


@jax.jit
def _posterior_weights(k: Array, y: Array, sigma2: Array) -> Array:
    """Cholesky weights, or eigh weights when Cholesky produced NaN/Inf."""
    alpha = _cholesky_weights(k, y, sigma2)
    ok = jnp.all(jnp.isfinite(alpha))
    return jax.lax.cond(ok, lambda: alpha, lambda: eigh_weights(k, y, sigma2))


def gp_posterior_mean(
    k_train: ArrayLike, y_train: ArrayLike, k_test_train: ArrayLike, sigma2: Scalar
) -> Array:
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
    k_tt, y_t, k_st = _check_posterior_inputs(k_train, y_train, k_test_train)
    check_sigma2(sigma2)
    if jnp.ndim(sigma2) != 0:
        raise ValueError(f"`sigma2` must be a scalar; got shape {jnp.shape(sigma2)}.")
    dtype = _float_dtype()
    check_x64(dtype, sigma2, _max_abs_diag(k_tt), what="GP solve")
    mean = jnp.asarray(k_st, dtype) @ _posterior_weights(
        jnp.asarray(k_tt, dtype), jnp.asarray(y_t, dtype), jnp.asarray(sigma2, dtype)
    )
    m = concrete(mean)
    if m is not None and not np.all(np.isfinite(m)):
        raise FloatingPointError(
            "gp_posterior_mean produced NaN/Inf even with the eigh fallback; check that `k_train` "
            "is a symmetric PSD kernel matrix and that `sigma2` is not below float64 resolution."
        )
    return mean


def _max_abs_diag(k: ArrayLike) -> float | None:
    d = concrete(k)
    return None if d is None else (float(np.max(np.abs(np.diagonal(d)))) if d.size else 0.0)


def _check_posterior_inputs(
    k_train: ArrayLike, y_train: ArrayLike, k_test_train: ArrayLike
) -> tuple[Array | np.ndarray, Array | np.ndarray, Array | np.ndarray]:
    """The three arrays (numpy unless already JAX), with their shapes and values checked."""
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

def _as_key(key: KeyLike) -> Array:
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


def training_sets(
    key: KeyLike, n: int, eta: int, trials: int, *, nested: bool = False
) -> np.ndarray:
    """The training sets ``learning_curve`` uses: (trials, η) int array of distinct pool indices.

    Row t is trial t of training-set size η, drawn uniformly without replacement from
    ``range(n)``; it is the same for any η grid, chunk size or number of trials.

    * ``nested=False`` (independent draws): key ``fold_in(fold_in(key, η), t)``, so the sets of
      different η are independent.
    * ``nested=True``: the first η entries of one random permutation per trial (key
      ``fold_in(fold_in(key, 0), t)``), so trial t's set for η is a prefix of its set for any
      larger η. Each set is still uniform; only sets of one trial at different η are correlated.
    """
    n = check_int(n, "n", 1, why="the pool size")
    eta = check_int(eta, "eta", 1, n, f"a training set drawn from the pool of n={n}")
    trials = check_int(trials, "trials", 1)
    stream = NESTED_STREAM if nested else eta
    perms = permutations(_as_key(key), stream, jnp.arange(trials, dtype=jnp.int32), n)
    return np.asarray(perms[:, :eta])


# --------------------------------------------------------------------------------------------
# Validation of learning_curve inputs
# --------------------------------------------------------------------------------------------


def _is_kernel(k: object) -> TypeGuard[Kernel | KernelFn]:
    return callable(k) and not hasattr(k, "shape")


def _gram_or_array(k: ArrayLike | Kernel | KernelFn, x: ArrayLike | None) -> ArrayLike:
    """The (N, N) Gram matrix: ``k`` itself, or ``rgjax.kernels.gram(k, x)`` for a kernel object."""
    if _is_kernel(k):
        if x is None:
            raise ValueError(
                "`x` is required when `K` is a kernel object: pass the (N, ...) pool inputs "
                "as x=..., or pass the Gram matrix as `K`."
            )
        check_finite(x, "x")
        return gram(k, x)
    if x is not None:
        raise ValueError(
            "`x` is only used when `K` is a kernel object; `K` is already a Gram matrix, "
            "so drop x=... (or pass the kernel as `K`)."
        )
    return cast(ArrayLike, k)  # not a kernel object: a Gram matrix


def _check_pool(k: ArrayLike, y: ArrayLike) -> tuple[Array, Array]:
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
    k_arr = jnp.asarray(k, dtype)
    # The solves read one triangle and the predictions the whole matrix: an asymmetric or
    # indefinite K would give silently wrong errors. The same checks as from_gram's.
    check_gram_values(k_arr, exact_symmetry=True, psd=True)
    return k_arr, jnp.asarray(y, dtype)


def _check_etas(etas: ArrayLike | Sequence[int], n: int) -> list[int]:
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


def _check_settings(
    sigma2: Scalar, trials: int, chunk_size: int | None, memory_budget: int, nested: bool
) -> tuple[float, int, int | None, int, bool]:
    """``(σ², trials, chunk_size, memory_budget, nested)`` as plain Python values, or raise."""
    check_sigma2(sigma2)
    if np.ndim(sigma2) != 0:
        raise ValueError(f"`sigma2` must be a scalar; got shape {np.shape(sigma2)}.")
    trials = check_int(trials, "trials", 2, why="the standard error needs at least two trials")
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", 1, why="trials per batch")
    memory_budget = check_int(memory_budget, "memory_budget", 1, why="bytes")
    if not isinstance(nested, (bool, np.bool_)):
        raise ValueError(f"`nested` must be True or False; got {nested!r}.")
    return float(sigma2), trials, chunk_size, memory_budget, bool(nested)


# --------------------------------------------------------------------------------------------
# Learning curve
# --------------------------------------------------------------------------------------------


def learning_curve(
    K: ArrayLike | Kernel | KernelFn,
    y: ArrayLike,
    etas: Sequence[int] | ArrayLike,
    sigma2: Scalar,
    *,
    trials: int,
    key: KeyLike,
    x: ArrayLike | None = None,
    chunk_size: int | None = None,
    results_path: PathLike | None = None,
    progress: bool = True,
    overwrite: bool = False,
    memory_budget: int = _DEFAULT_MEMORY_BUDGET,
    callback: Callable[[int, Record], None] | None = None,
    devices: Sequence[Device] | None = None,
    nested: bool = False,
) -> LearningCurve:
    """Empirical learning curve of exact GP regression on a pool (docs/theory.md §2).

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

    Results file (format in :mod:`rgjax.store`): one JSON object per line, holding the trials of
    one η — all T of them, or, with ``"trial_start": s``, trials s, s+1, … (written by nested runs
    after each chunk of trials, and when a run resumes an η with some of its trials missing) —
    and the *fingerprint* of the run: pool size, trials, σ², PRNG key, nested flag, and probes
    ``uᵀ K v``, ``u·y`` for fixed ±1/√N vectors, compared with a relative tolerance of 1e-9 so
    that a Gram matrix rebuilt with different round-off still matches. Nested runs' ``"seconds"``
    is the time of the whole chunk (all its η together). On a rerun, trials already in the file
    with a matching fingerprint are loaded, not recomputed (their floats round-trip exactly); a
    mismatching fingerprint raises ``ValueError`` unless ``overwrite=True``. Each line is flushed
    and fsynced; a truncated last line (a crash mid-write) is removed and its trials recomputed.
    One process per file.

    Examples:
        >>> import numpy as np
        >>> from rgjax.empirical import learning_curve
        >>> x = np.linspace(-1.0, 1.0, 40)
        >>> K = np.exp(-((x[:, None] - x[None, :]) ** 2) / 0.1)
        >>> curve = learning_curve(K, np.sin(3 * x), [4, 16], 1e-6, trials=2, key=0,
        ...                        progress=False)
        >>> curve.etas.tolist(), curve.mse_pool_trials.shape
        ([4, 16], (2, 2))
        >>> bool(curve.mse_pool[1] < curve.mse_pool[0])
        True
    """
    k_arr, y_arr = _check_pool(_gram_or_array(K, x), y)
    n = k_arr.shape[0]
    eta_list = _check_etas(etas, n)
    sigma2, trials, chunk_size, memory_budget, nested = _check_settings(
        sigma2, trials, chunk_size, memory_budget, nested
    )
    key = _as_key(key)
    if k_arr.dtype == jnp.float32:  # x64 disabled: σ² may be below float32 resolution
        scale = np.max(np.abs(np.diagonal(np.asarray(k_arr))))
        check_x64(k_arr.dtype, sigma2, scale, what="Gram matrix")

    path = None if results_path is None else Path(results_path)
    fp = None
    loaded: dict[int, EtaResults] = {}
    if path is not None:
        fp = fingerprint(k_arr, y_arr, sigma2, trials, key, nested)
        path.parent.mkdir(parents=True, exist_ok=True)
        loaded = load_results(path, fp, trials, overwrite)
    results = {eta: loaded.get(eta, EtaResults.empty(trials)) for eta in eta_list}

    ex = executor(devices)
    k_arr, y_arr = ex.replicate(k_arr), ex.replicate(y_arr)
    s2 = jax.device_put(np.asarray(sigma2, k_arr.dtype))  # jnp.asarray would compile a cast

    def write(eta: int, ids: np.ndarray, pool: np.ndarray, held: np.ndarray,
              fallback: np.ndarray, seconds: float) -> None:
        """Store trials ``ids`` of η and append one record per run of consecutive trials."""
        for start, record in trial_records(fp, eta, trials, ids, pool, held, fallback, seconds):
            record["finished"] = time.time()
            results[eta].add(start, record["mse_pool"], record["mse_heldout"],
                             record["n_fallback"])
            if path is not None:
                append_record(path, record)
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
            _independent_loop(k_arr, y_arr, key, eta_list, results, trials, s2, chunk_size,
                              memory_budget, ex, bar, write)
    return _assemble(eta_list, results, trials, sigma2, n, nested)


def _independent_loop(
    k: Array, y: Array, key: Array, eta_list: list[int], results: dict[int, EtaResults],
    trials: int, sigma2: Array, chunk_size: int | None, memory_budget: int, ex: Executor,
    bar: tqdm, write: Callable[..., None],
) -> None:
    """Independent draws: the missing trials of each η in turn, in chunks."""
    n = k.shape[0]
    for eta in eta_list:
        ids = np.flatnonzero(~results[eta].have)
        if not ids.size:
            continue
        bar.set_postfix_str(f"eta={eta}")
        chunk = chunk_size or independent_chunk_size(n, eta, trials, memory_budget, ex)
        t0 = time.perf_counter()
        pool, held, fallback = run_independent(
            k, y, key, eta, eta, ids, sigma2, chunk, ex, bar.update
        )
        write(eta, ids, pool, held, fallback, time.perf_counter() - t0)


def _nested_loop(
    k: Array, y: Array, key: Array, eta_list: list[int], results: dict[int, EtaResults],
    trials: int, sigma2: Array, chunk_size: int | None, memory_budget: int, ex: Executor,
    bar: tqdm, write: Callable[..., None],
) -> None:
    """Nested draws: chunks of trials, each solved at every η it still lacks in one program."""
    n = k.shape[0]
    missing = np.stack([~results[eta].have for eta in eta_list])  # (E, T)
    ids = np.flatnonzero(missing.any(axis=0))
    if not ids.size:
        return
    todo = [eta for eta, m in zip(eta_list, missing) if m.any()]
    chunk = chunk_size or nested_chunk_size(n, todo[-1], len(todo), trials, memory_budget, ex)
    chunk = -(-chunk // ex.n_dev) * ex.n_dev  # whole trials per device
    bar.set_postfix_str(f"nested, eta<={todo[-1]}")
    for start in range(0, ids.size, chunk):
        part = ids[start : start + chunk]
        rows = [e for e in range(len(eta_list)) if missing[e, part].any()]
        etas_c = [eta_list[e] for e in rows]
        t0 = time.perf_counter()
        pool, held, fallback = run_nested(k, y, key, etas_c, part, sigma2, chunk, ex)
        seconds = time.perf_counter() - t0
        for j, e in enumerate(rows):
            new = missing[e, part]
            write(eta_list[e], part[new], pool[new, j], held[new, j], fallback[new, j], seconds)
            bar.update(int(new.sum()))


def _assemble(
    etas: list[int], results: dict[int, EtaResults], trials: int, sigma2: float, n: int,
    nested: bool,
) -> LearningCurve:
    pool = np.stack([results[e].pool for e in etas])
    held = np.stack([results[e].held for e in etas])

    def se(a: np.ndarray) -> np.ndarray:
        return np.std(a, axis=1, ddof=1) / math.sqrt(trials)

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
