"""Exact GP regression and empirical learning curves (THEORY §2).

The posterior mean from η training points is ``f̄(x) = K(x, X_η) (K(X_η, X_η) + σ² I)⁻¹ y_η``.
``learning_curve`` measures its test error on a pool of N points: for every training-set size η it
draws ``trials`` training sets of η distinct pool points, fits the GP on each and reports

* the pool MSE ``(1/N) Σ_i (f̄(x_i) − y_i)²`` over all N pool points (THEORY §2 convention), and
* the held-out MSE over the N − η pool points not in the training set,

with their means over trials and standard errors ``std(ddof=1)/√trials``.

Design:

* Trials of one η run as one ``jax.vmap`` inside ``jax.jit``, in chunks that bound memory; one
  compilation per (η, chunk) shape (the last chunk is padded to the same shape).
* Predictions on the pool are ``K @ a`` with ``a`` the weights scattered into an N-vector, so a
  trial needs O(η² + N) memory and a chunk of trials is a single matrix product.
* Random draws are keyed by ``fold_in(fold_in(key, η), trial)``: the training sets of a given
  (η, trial) do not depend on the rest of the η grid, on the chunk size, on the number of trials
  or on resumption. ``training_sets`` returns them, to reproduce any trial elsewhere.
* Linear solves are Cholesky in float64; a trial whose Cholesky fails (NaN, possible at tiny σ²
  on an ill-conditioned Gram matrix) is redone with an eigendecomposition (see
  ``gp_posterior_mean``). Non-finite results are an error, never returned.
* With ``results_path`` each finished η is appended as one JSON line and fsynced, so an
  interrupted run resumes where it stopped (see ``learning_curve`` for the file format).
"""

from __future__ import annotations

import dataclasses
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
from tqdm.auto import tqdm

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
_META_FIELDS = ("trials", "sigma2", "n_pool")


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

    def to_dict(self) -> dict[str, Any]:
        """Plain Python lists/numbers, ready for ``json.dump`` (floats round-trip exactly)."""
        out: dict[str, Any] = {f: np.asarray(getattr(self, f)).tolist() for f in _ARRAY_FIELDS}
        out.update(trials=int(self.trials), sigma2=float(self.sigma2), n_pool=int(self.n_pool))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearningCurve:
        """Inverse of ``to_dict``."""
        ints = {"etas", "n_fallback"}
        arrays = {
            f: np.asarray(d[f], dtype=np.int64 if f in ints else np.float64) for f in _ARRAY_FIELDS
        }
        return cls(
            **arrays, trials=int(d["trials"]), sigma2=float(d["sigma2"]), n_pool=int(d["n_pool"])
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


@partial(jax.jit, static_argnames=("n",))
def _permutations(key: jax.Array, eta: jax.Array, trial_ids: jax.Array, n: int) -> jax.Array:
    """(c, N) random permutations of range(N); row r has key fold_in(fold_in(key, η), trial_ids[r]).

    The training set of a trial is the first η entries of its row. η is traced, so this compiles
    once per (N, c) and the η-specific code below holds no random-number generation (threefry
    compiles slowly on CPU).
    """
    key_eta = jax.random.fold_in(key, eta)
    return jax.vmap(lambda t: jax.random.permutation(jax.random.fold_in(key_eta, t), n))(trial_ids)


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


def training_sets(key: Any, n: int, eta: int, trials: int) -> np.ndarray:
    """The training sets ``learning_curve`` uses: (trials, η) int array of distinct pool indices.

    Row t is trial t of training-set size η, drawn without replacement from ``range(n)`` with key
    ``fold_in(fold_in(key, η), t)``; it is the same for any η grid, chunk size or number of trials.
    """
    n, eta, trials = int(n), int(eta), int(trials)
    if not 0 < eta <= n:
        raise ValueError(f"`eta` must satisfy 0 < eta <= n = {n}; got {eta}.")
    perms = _permutations(_as_key(key), eta, jnp.arange(trials, dtype=jnp.int32), n)
    return np.asarray(perms[:, :eta])


# --------------------------------------------------------------------------------------------
# Batched trials
# --------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("eta", "method"))
def _trial_chunk(
    k: jax.Array, y: jax.Array, perms: jax.Array, sigma2: jax.Array, *, eta: int, method: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Pool MSE, held-out MSE and solve success flag for a chunk of trials of one η.

    k (N, N), y (N,), perms (c, N) permutations whose first η entries are the training indices
    → three (c,) arrays. Compiles once per (c, η, method).
    """
    n = k.shape[0]
    idx = perms[:, :eta]
    solve = _cholesky_weights if method == "cholesky" else _eigh_weights

    def weights(i: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        k_tt = k[i[:, None], i[None, :]]  # one (η, η) gather; never materialise K[:, idx]
        alpha = solve(k_tt, y[i], sigma2)
        ok = jnp.all(jnp.isfinite(alpha))
        # Scattering α into an N-vector turns the pool prediction into K @ a: O(N) memory per
        # trial and one matrix product for the whole chunk.
        a = jnp.zeros(n, k.dtype).at[i].set(alpha)
        held = jnp.ones(n, k.dtype).at[i].set(0.0)
        return a, held, ok

    a, held_mask, ok = jax.vmap(weights)(idx)  # (c, N), (c, N), (c,)
    f = a @ k.T  # f[c, i] = Σ_j K_ij a[c, j]
    sq = (f - y) ** 2
    mse_pool = jnp.mean(sq, axis=1)
    mse_held = jnp.sum(sq * held_mask, axis=1) / (n - eta)
    return mse_pool, mse_held, ok


def _chunk_size(n: int, eta: int, trials: int, memory_budget: int) -> int:
    """Trials per chunk so that a chunk's intermediates stay under ``memory_budget`` bytes.

    Per trial: the (η, η) gathered kernel and its factor, a few float64 N-vectors (weights, mask,
    prediction, squared error) and the int32 permutation.
    """
    per_trial = 8 * (2 * eta * eta + 5 * n)
    return int(max(1, min(trials, memory_budget // per_trial)))


def _run_eta(
    k: jax.Array,
    y: jax.Array,
    key: jax.Array,
    eta: int,
    trials: int,
    sigma2: jax.Array,
    chunk: int,
    advance: Callable[[int], None],
    sharding: jax.sharding.NamedSharding | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """All trials of one η: (trials,) pool MSEs, (trials,) held-out MSEs, number of fallbacks.

    With ``sharding`` (trial axis over devices; ``chunk`` a multiple of the device count) every
    chunk is split across the devices, ``k`` and ``y`` being replicated on them.
    """
    n = k.shape[0]
    n_dev = 1 if sharding is None else sharding.mesh.size
    pool = np.empty(trials)
    held = np.empty(trials)
    ok = np.empty(trials, dtype=bool)

    def run(ids: np.ndarray, size: int, method: str) -> tuple[np.ndarray, ...]:
        # Pad with the last id so every call of this η has the same shape (one compilation).
        padded = np.concatenate([ids, np.full(size - len(ids), ids[-1])]).astype(np.int32)
        perms = _permutations(key, eta, jax.device_put(padded, sharding), n)
        out = _trial_chunk(k, y, perms, sigma2, eta=eta, method=method)
        return tuple(np.asarray(o)[: len(ids)] for o in out)

    for start in range(0, trials, chunk):
        ids = np.arange(start, min(start + chunk, trials))
        pool[ids], held[ids], ok[ids] = run(ids, chunk, "cholesky")
        advance(len(ids))

    failed = np.flatnonzero(~ok)
    if failed.size:
        # Few trials fail in practice: pad to a power of two, not to the full chunk.
        size = min(chunk, 1 << int(math.ceil(math.log2(failed.size))))
        size = -(-size // n_dev) * n_dev
        for start in range(0, failed.size, size):
            ids = failed[start : start + size]
            pool[ids], held[ids], _ = run(ids, size, "eigh")
    if not (np.all(np.isfinite(pool)) and np.all(np.isfinite(held))):
        raise FloatingPointError(
            f"non-finite test error at eta={eta} even with the eigh fallback; check that `K` is "
            "a symmetric PSD kernel matrix and that `sigma2` is not below float64 resolution."
        )
    return pool, held, int(failed.size)


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


def _fingerprint(k: jax.Array, y: jax.Array, sigma2: float, trials: int, key: jax.Array) -> dict:
    return {
        "format": RESULTS_FORMAT,
        "n_pool": int(k.shape[0]),
        "trials": int(trials),
        "sigma2": float(sigma2),
        "key_impl": str(jax.random.key_impl(key)),
        "key": [int(x) for x in np.asarray(jax.random.key_data(key)).ravel()],
        "K_probes": _probes(k),
        "y_probes": _probes(y),
    }


def _fingerprint_diff(old: dict, new: dict) -> list[str]:
    """Names (with values where short) of the fingerprint fields that differ."""
    diffs = []
    for name, value in new.items():
        other = old.get(name)
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


def _load_results(path: Path, fingerprint: dict, trials: int, overwrite: bool) -> dict[int, dict]:
    """Finished η records of a results file, keyed by η. Repairs a truncated last line.

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
    done: dict[int, dict] = {}
    for lineno, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            eta = int(rec["eta"])
            ok = len(rec["mse_pool"]) == trials and len(rec["mse_heldout"]) == trials
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
            raise ValueError(
                f"`results_path` {str(path)!r}: line {lineno} does not hold {trials} trials."
            )
        done.setdefault(eta, rec)
    return done


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
) -> LearningCurve:
    """Empirical learning curve of exact GP regression on a pool (THEORY §2).

    For each η, ``trials`` training sets of η distinct pool points are drawn without replacement
    (trial t uses ``training_sets(key, N, η, trials)[t]``), the GP posterior mean is computed on
    the whole pool, and the pool MSE ``(1/N) Σ_i (f̄(x_i) − y_i)²`` and the MSE on the N − η
    held-out points are recorded.

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
        chunk_size: trials per vmapped batch; default: as many as fit in ``memory_budget``.
            Results do not depend on it (beyond float round-off in the final matrix product).
        results_path: JSON-lines file making the run resumable (see below).
        progress: show a tqdm bar over η × trials.
        overwrite: discard the contents of ``results_path`` and start fresh.
        memory_budget: bytes allowed per device for a chunk's intermediates (default 1 GiB),
            about ``8 (2η² + 5N)`` per trial.
        callback: called as ``callback(eta, record)`` after each η is computed (not for η loaded
            from the results file); ``record`` is the dict written to the results file.
        devices: devices to split each chunk of trials over (data parallel: ``K`` is replicated
            on each, so each needs the N² matrix plus its share of the chunk budget). Default:
            all local devices, e.g. every GPU; pass ``[jax.devices()[0]]`` to use one.

    Returns:
        A ``LearningCurve``.

    Results file: one JSON object per line and per finished η::

        {"fingerprint": {"format": "rgjax.learning_curve/1", "n_pool": N, "trials": T,
                         "sigma2": σ², "key_impl": "threefry2x32", "key": [..],
                         "K_probes": [rms, p1..p4], "y_probes": [rms, p1..p4]},
         "eta": η, "mse_pool": [T floats], "mse_heldout": [T floats], "n_fallback": int,
         "seconds": float, "finished": unix time}

    The probes are ``uᵀ K v`` (and ``u·y``) for fixed ±1/√N vectors, compared with a relative
    tolerance of 1e-9 so that a Gram matrix rebuilt with different round-off still matches. On a
    rerun, η already in the file with a matching fingerprint are loaded, not recomputed (their
    floats round-trip exactly); a mismatching fingerprint raises ``ValueError`` unless
    ``overwrite=True``. Each line is flushed and fsynced; a truncated last line (a crash
    mid-write) is removed and its η recomputed. One process per file.
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
    key = _as_key(key)
    if k_arr.dtype == jnp.float32:  # x64 disabled: σ² may be below float32 resolution
        scale = np.max(np.abs(np.diagonal(np.asarray(k_arr))))
        check_x64(k_arr.dtype, sigma2, scale, what="Gram matrix")

    path = None if results_path is None else Path(results_path)
    fingerprint = None
    done: dict[int, dict] = {}
    if path is not None:
        fingerprint = _fingerprint(k_arr, y_arr, sigma2, trials, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        done = _load_results(path, fingerprint, trials, overwrite)

    sharding = _trial_sharding(devices)
    if sharding is not None:
        replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
        k_arr, y_arr = jax.device_put(k_arr, replicated), jax.device_put(y_arr, replicated)
    n_dev = 1 if sharding is None else sharding.mesh.size
    s2 = jnp.asarray(sigma2, k_arr.dtype)
    records: dict[int, dict] = {}
    with tqdm(
        total=len(eta_list) * trials, disable=not progress, unit="trial", desc="learning curve"
    ) as bar:
        for eta in eta_list:
            if eta in done:
                records[eta] = done[eta]
                bar.update(trials)
                continue
            bar.set_postfix_str(f"eta={eta}")
            chunk = min(chunk_size or _chunk_size(n, eta, trials, memory_budget * n_dev), trials)
            chunk = -(-chunk // n_dev) * n_dev  # whole trials per device; padding is discarded
            t0 = time.perf_counter()
            pool, held, n_fb = _run_eta(
                k_arr, y_arr, key, eta, trials, s2, chunk, bar.update, sharding
            )
            record = {
                "fingerprint": fingerprint,
                "eta": eta,
                "mse_pool": pool.tolist(),
                "mse_heldout": held.tolist(),
                "n_fallback": n_fb,
                "seconds": time.perf_counter() - t0,
                "finished": time.time(),
            }
            if path is not None:
                _append_record(path, record)
            records[eta] = record
            if callback is not None:
                callback(eta, record)
    return _assemble(eta_list, records, trials, sigma2, n)


def _trial_sharding(devices: Sequence[jax.Device] | None) -> jax.sharding.NamedSharding | None:
    """Sharding of the trial axis over ``devices`` (default: local devices); None for one device."""
    devs = list(jax.local_devices() if devices is None else devices)
    if not devs:
        raise ValueError("`devices` is empty; pass at least one device or None for all.")
    if len(devs) == 1:
        return None
    # Auto axis type: jax >= 0.10 meshes may default to explicit sharding, which linalg rejects.
    types = (jax.sharding.AxisType.Auto,) if hasattr(jax.sharding, "AxisType") else None
    mesh = jax.sharding.Mesh(np.asarray(devs), ("trials",), axis_types=types)
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("trials"))


def _assemble(
    etas: list[int], records: dict[int, dict], trials: int, sigma2: float, n: int
) -> LearningCurve:
    pool = np.array([records[e]["mse_pool"] for e in etas], dtype=np.float64)
    held = np.array([records[e]["mse_heldout"] for e in etas], dtype=np.float64)
    se = lambda a: np.std(a, axis=1, ddof=1) / math.sqrt(trials)  # noqa: E731
    return LearningCurve(
        etas=np.asarray(etas, dtype=np.int64),
        mse_pool=pool.mean(axis=1),
        mse_pool_se=se(pool),
        mse_heldout=held.mean(axis=1),
        mse_heldout_se=se(held),
        mse_pool_trials=pool,
        mse_heldout_trials=held,
        n_fallback=np.array([int(records[e]["n_fallback"]) for e in etas], dtype=np.int64),
        trials=trials,
        sigma2=sigma2,
        n_pool=n,
    )
