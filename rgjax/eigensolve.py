"""Top-k eigenpairs of a symmetric PSD matrix, dense or matrix-free (docs/theory.md §1).

The RG and spectral-bias theories need only the top ``k`` eigenpairs of the Gram matrix plus its
trace, so at large ``N`` a dense ``eigh`` (``O(N³)`` time, ``N²`` memory for the eigenvectors) is
replaced by :func:`topk_eigh`.

Algorithm: thick-restart block Krylov (block Lanczos with full reorthogonalisation) and
Rayleigh–Ritz. From a random ``(N, b)`` block the solver builds an orthonormal basis ``Q`` of the
block Krylov space ``span{V, KV, K²V, …}`` with ``m`` columns, keeping ``W = KQ`` (one product
with a ``(N, b)`` block per Krylov step: ``m`` matrix-vector products per cycle), and
diagonalises ``H = QᵀW``. The Ritz pairs ``(θ_i, x_i = Q s_i)`` come with exact residuals
``‖K x_i − θ_i x_i‖ = ‖W s_i − θ_i Q s_i‖`` at no extra product. If a residual of the top ``k``
is above tolerance, the next cycle keeps the best ``l`` Ritz vectors (and their products) and
continues the Krylov sequence from the block after the last one.

Why Krylov rather than subspace iteration: on power-law NNGP spectra ``λ_i/λ_{i+1} → 1``, so the
gap that drives convergence is tiny. Subspace iteration converges like ``(λ_{b+1}/λ_i)^q`` and
needs a block far larger than ``k`` and many products. A Krylov space converges like a Chebyshev
polynomial of degree ``m/b`` in the same ratio — roughly its square root — and oversampling
(``m ≈ 2.5k``) makes the ratio that matters ``λ_k/λ_m`` (≈ 3 on NNGP spectra) instead of
``λ_k/λ_{k+1}``. On FC-ReLU NNGP Gram matrices with ``λ_i ∝ i^{-1.2…-1.4}`` (N = 2000,
k = 16…500) one cycle of ``2.5k`` products gave relative residuals ≤ 5e-9 and the top-k
eigenvalues to ≈ 1e-13 relative. Orthogonalisation is block classical Gram–Schmidt, twice, with
SVQB normalisation (small eigen-decompositions instead of a Householder QR, which is slow for
tall blocks on CPUs); blocks that lose rank (an exhausted Krylov space, a low-rank K) are
refilled with random directions.

The operator is either a dense ``(N, N)`` array (any sharding: it only enters products
``K @ V``; a mesh with Explicit axes is re-labelled Auto) or a matrix-free callable
``matvec(V) -> K @ V`` on ``(N, b)`` blocks (e.g.
``functools.partial(rgjax.kernels.gram_matvec, kernel, x)``), so that the Gram matrix need never
be stored. The whole solver is one ``jax.jit`` program (``lax.fori_loop``/``lax.while_loop``,
at most ``max_iter`` cycles: it cannot hang); results are deterministic given ``key``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable
from typing import TypedDict, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.typing import DTypeLike

from rgjax._pytree import dataclass, field
from rgjax._typing import Array, ArrayLike, KeyLike
from rgjax._validate import check_int, concrete, warn

__all__ = [
    "SolverReport",
    "SolverOptions",
    "TopkResult",
    "topk_eigh",
    "default_basis",
    "warn_if_unconverged",
    "as_auto_sharded",
    "DEFAULT_TOL",
]

T = TypeVar("T")

# A new Krylov direction whose singular value is below this fraction of the block's largest lies
# (numerically) in the span of the basis or of the other directions: an invariant subspace was
# found, or the space is exhausted. It is replaced by a fresh random direction. (SVQB resolves
# singular values down to ~1e-8 of the largest; 1e-6 keeps a margin.)
_DEFICIENT_RTOL = 1e-6


@dataclass
class SolverReport:
    """How a top-k eigen-solve went (a :class:`~rgjax.Spectrum` keeps it as ``spec.solver``).

    Attributes:
      residuals: ``(k,)`` ``‖K v_i − w_i v_i‖₂`` of each returned pair (computed from the stored
        products ``KQ``, exact up to round-off). ``|w_i − λ| ≤ residual_i`` for some eigenvalue
        ``λ`` of K, and ``≲ residual_i² / gap_i`` when ``w_i`` is separated by ``gap_i`` from the
        other eigenvalues.
      relative_residuals: ``(k,)`` ``residual_i / |w_i|`` (inf where ``w_i = 0``).
      iterations: ``()`` int, Krylov + Rayleigh–Ritz cycles done (1 = no restart; 0 = solved
        densely because the Krylov basis would have covered the whole space).
      n_matvec: ``()`` int, matrix-vector products applied (columns of all ``K @ V`` blocks).
      converged: ``()`` bool, every ``residual_i ≤ max(tol·|w_i|, 10√N·ε·|w_1|)`` (the second
        term is the round-off level of the products).
      tol: ``()`` the relative tolerance used.
    """

    residuals: Array
    relative_residuals: Array
    iterations: Array
    n_matvec: Array
    converged: Array
    tol: Array

    def __repr__(self) -> str:
        res = concrete(self.relative_residuals)
        it, mv, ok = (concrete(a) for a in (self.iterations, self.n_matvec, self.converged))
        if res is None or it is None or mv is None or ok is None:
            return f"SolverReport(k={self.residuals.shape[-1]}, traced)"
        worst = float(np.max(res)) if res.size else 0.0
        return (
            f"SolverReport(k={res.shape[-1]}, converged={bool(ok)}, iterations={int(it)}, "
            f"n_matvec={int(mv)}, max relative residual={worst:.2g})"
        )


@dataclass
class TopkResult:
    """Top-k eigenpairs of a symmetric matrix and the solver's report.

    Attributes:
      eigenvalues: ``(k,)`` Ritz values ``w_1 ≥ … ≥ w_k`` (eigenvalues of the matrix itself, not
        divided by N).
      eigenvectors: ``(N, k)`` orthonormal Ritz vectors ``v_i``.
      report: the :class:`SolverReport` (per-pair residuals, cycles, products, converged flag).
    """

    eigenvalues: Array
    eigenvectors: Array
    report: SolverReport

    @property
    def converged(self) -> Array:
        """``()`` bool, see :class:`SolverReport`."""
        return self.report.converged

    @property
    def residuals(self) -> Array:
        """``(k,)`` ``‖K v_i − w_i v_i‖₂``, see :class:`SolverReport`."""
        return self.report.residuals

    def __repr__(self) -> str:
        return f"TopkResult({self.report!r})"


class SolverOptions(TypedDict, total=False):
    """Keyword arguments of :func:`topk_eigh` that :func:`rgjax.from_gram` and
    :func:`rgjax.from_matvec` pass through as ``solver_options``."""

    block_size: int | None
    basis_size: int | None
    max_iter: int


# ---------------------------------------------------------------------------------------------
# Operators: a dense matrix or a callable, with its arrays as traced jit operands
# ---------------------------------------------------------------------------------------------


@dataclass
class Operator:
    """Static (hashable) half of an operator; its arrays travel separately as jit operands.

    ``apply(V, operands)`` computes ``K @ V``. For a ``functools.partial`` its array arguments
    are lifted into ``operands`` (so that jit does not bake them in as constants); the rest of
    the arguments and the function itself are static. Every field is static: the object is a
    ``jit`` static argument, hashed and compared by value.
    """

    func: Callable[..., Array] | None = field(static=True)  # None: dense matrix, operands = (K,)
    treedef: Hashable | None = field(static=True, default=None)  # PyTreeDef of (args, kwargs)
    static_leaves: tuple[Hashable, ...] = field(static=True, default=())
    is_array: tuple[bool, ...] = field(static=True, default=())

    def apply(self, V: Array, operands: tuple[Array, ...]) -> Array:
        if self.func is None:
            (K,) = operands
            return K @ V
        it = iter(operands)
        leaves = [next(it) if arr else s for arr, s in zip(self.is_array, self.static_leaves)]
        args, kwargs = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return self.func(*args, V, **kwargs)


def as_auto_sharded(x: T) -> T:
    """``x`` with its mesh's *Explicit* axes switched to *Auto* (same devices and layout).

    On jax ≥ 0.10 ``jax.make_mesh`` defaults to explicit axis types, under which many operations
    on a row-sharded matrix (``K - K.T``, ``jnp.diag(K)``, ``eigh``) are type errors. rgjax only
    needs XLA's sharding propagation, so it re-labels such arrays as Auto. Anything else is
    returned unchanged (including tracers: inside ``jit`` pass Auto-sharded arrays; arrays that
    a matvec callable closes over are not seen either: pass them through ``functools.partial``).
    """
    sharding = getattr(x, "sharding", None)
    if isinstance(x, Tracer) or not isinstance(sharding, jax.sharding.NamedSharding):
        return x
    mesh = sharding.mesh
    explicit = jax.sharding.AxisType.Explicit
    types = tuple(getattr(mesh, "axis_types", ()) or ())
    if explicit not in types or mesh.devices is None:  # no devices: an abstract mesh
        return x
    auto = jax.sharding.Mesh(
        mesh.devices, mesh.axis_names, axis_types=(jax.sharding.AxisType.Auto,) * len(types)
    )
    return jax.device_put(x, jax.sharding.NamedSharding(auto, sharding.spec))


def _is_array(x: object) -> bool:
    """A numpy or jax array (tracers included); array-like objects such as operators are not."""
    return isinstance(x, (jax.Array, np.ndarray))


def _make_operator(matvec: Callable[[Array], Array]) -> tuple[Operator, tuple[Array, ...]]:
    """Split a callable into its static half and its array operands.

    Array arguments of a ``functools.partial`` and array leaves of a callable pytree (e.g.
    :class:`rgjax.kernels.GramOperator`) become operands; anything else is opaque.
    """
    if isinstance(matvec, functools.partial):
        func, tree = matvec.func, (matvec.args, dict(matvec.keywords))
    else:
        leaves, _ = jax.tree_util.tree_flatten(matvec)
        if len(leaves) == 1 and leaves[0] is matvec:  # not a pytree: opaque
            return Operator(_Call(matvec), _EMPTY, (), ()), ()
        func, tree = _call_pytree, ((matvec,), {})
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    is_array = tuple(_is_array(x) for x in leaves)
    static = tuple(None if a else x for a, x in zip(is_array, leaves))
    op = Operator(func, treedef, static, is_array)
    try:
        hash(op)
    except TypeError:  # unhashable static parts: fall back to the opaque callable
        return Operator(_Call(matvec), _EMPTY, (), ()), ()
    return op, tuple(x for a, x in zip(is_array, leaves) if a)


def _call_pytree(fn: Callable[[Array], Array], V: Array) -> Array:
    return fn(V)


_EMPTY = jax.tree_util.tree_structure(((), {}))


@dataclass(eq=False)
class _Call:
    """An opaque callable, hashed by identity (jit recompiles for a new callable object)."""

    fn: Callable[[Array], Array] = field(static=True)

    def __call__(self, V: Array) -> Array:
        return self.fn(V)


# ---------------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------------


def _project(Zt: Array, Qt: Array) -> Array:
    """``Z − QQᵀZ`` in row layout: ``Zt`` (b, N), ``Qt`` (c, N) with orthonormal or zero rows."""
    return Zt - (Zt @ Qt.T) @ Qt


def _svqb(Pt: Array) -> tuple[Array, Array]:
    """Orthonormalise the rows of ``Pt`` (b, N) through ``eig(PᵀP) = U diag(s) Uᵀ``.

    Returns the rows ``diag(s)^{-1/2} Uᵀ Pt`` and ``s`` (ascending). Rows with ``s = 0`` come out
    zero; callers replace small-``s`` directions before relying on the result.
    """
    G = Pt @ Pt.T
    s, U = jnp.linalg.eigh((G + G.T) / 2)
    inv = jnp.where(s > 0, jax.lax.rsqrt(jnp.where(s > 0, s, 1.0)), 0.0)
    return (U * inv).T @ Pt, s


def _orthonormal_block(
    Zt: Array, Qt: Array, key: Array, local: Array | None = None, kscale2: Array | None = None
) -> Array:
    """Orthonormal rows (b, N) spanning ``(I − QQᵀ)Z`` and orthogonal to the rows of ``Qt``.

    Classical Gram–Schmidt against the basis ``Qt`` (rows orthonormal or zero), twice ("twice
    is enough"): the first pass against ``local`` only when given (the last two Krylov blocks,
    which hold almost all of ``Z``'s projection by the block three-term recurrence), the second
    against the whole basis. Normalisation by SVQB (an eigen-decomposition of the b×b Gram
    matrix, far faster than Householder QR for tall blocks), applied twice so that the rows are
    orthonormal to working precision.

    A third pass runs when the new directions are small against ``Z`` (cancellation: the
    round-off left along the basis is then amplified by normalising) or ill-conditioned among
    themselves. Directions that lie in the span of the basis or of the other rows — an invariant
    subspace was found, or the range of K is exhausted — are replaced by random ones, so the
    block is always of full rank. ``kscale2`` is ``‖K‖²`` (estimated): directions below
    ``1e3·ε·‖K‖`` are round-off.
    """
    eps = jnp.finfo(Zt.dtype).eps
    zscale2 = jnp.max(jnp.sum(Zt * Zt, axis=1))
    kscale2 = zscale2 if kscale2 is None else jnp.maximum(kscale2, zscale2)
    Pt = _project(Zt, Qt if local is None else local)
    Bt, s = _svqb(_project(Pt, Qt))
    deficient = (s <= _DEFICIENT_RTOL**2 * s[-1]) | (s <= (1e3 * eps) ** 2 * kscale2)
    # Leftover components along the basis, ≈ ε‖Z‖ after two passes, are amplified to
    # ε‖Z‖/√s by the normalisation: reproject when that could exceed ~1e4 ε.
    repair_needed = (s[0] < 1e-8 * zscale2) | (s[0] < 1e-4 * s[-1]) | jnp.any(deficient)

    def repair(Bt: Array) -> Array:
        rnd = jax.random.normal(key, Bt.shape, Bt.dtype)
        return _svqb(_project(_project(jnp.where(deficient[:, None], rnd, Bt), Qt), Qt))[0]

    Bt = jax.lax.cond(repair_needed, repair, lambda Bt: Bt, Bt)
    return _svqb(Bt)[0]


def _rayleigh_ritz(
    Qt: Array, Wt: Array, k: int, l: int
) -> tuple[Array, Array, Array, Array]:
    """Ritz pairs of the basis rows ``Qt`` (m, N) with ``Wt = (KQ)ᵀ``.

    Returns ``θ`` (l,) descending, ``Xt = SᵀQt`` (l, N), ``KXt = SᵀWt`` (l, N), residuals (k,).
    """
    H = Qt @ Wt.T
    theta, S = jnp.linalg.eigh((H + H.T) / 2)
    theta, S = theta[::-1][:l], S[:, ::-1][:, :l]
    Xt, KXt = S.T @ Qt, S.T @ Wt
    res = jnp.linalg.norm(KXt[:k] - theta[:k, None] * Xt[:k], axis=1)
    return theta, Xt, KXt, res


# The Krylov fill is split into this many stretches, each orthogonalising against a statically
# sized prefix of the basis (the filled part) rather than the whole buffer.
_SEGMENTS = 4


def _fill(
    op: Operator,
    operands: tuple[Array, ...],
    Qt: Array,
    Wt: Array,
    first: int | Array,
    last: int,
    b: int,
    key: Array,
) -> tuple[Array, Array]:
    """Krylov blocks ``first … last−1``: ``W_j = K Q_j`` and ``Q_{j+1} = orth(W_j)``.

    Rows of block ``j`` are ``[jb, (j+1)b)``; the block after ``last − 1`` is written to rows
    ``[last·b, (last+1)·b)``. Rows beyond the filled part must be zero. ``first`` may be traced;
    the loop is split into static stretches so that each orthogonalises against a statically
    sized prefix of the basis (its filled part) instead of the whole buffer.
    """
    bounds = np.linspace(0, last, min(_SEGMENTS, last) + 1).round().astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        width = (int(hi) + 1) * b  # rows that may be non-zero during this stretch

        def body(j: Array, carry: tuple[Array, Array], width: int = width) -> tuple[Array, Array]:
            Qt, Wt = carry
            Vt = jax.lax.dynamic_slice_in_dim(Qt, j * b, b, axis=0)
            Wj = op.apply(Vt.T, operands).T
            Wt = jax.lax.dynamic_update_slice_in_dim(Wt, Wj, j * b, axis=0)
            local = jax.lax.dynamic_slice_in_dim(Qt, jnp.maximum(j - 1, 0) * b, 2 * b, axis=0)
            kscale2 = jnp.max(jnp.sum(Wt[:b] * Wt[:b], axis=1))  # ≈ ‖K‖²: first block / Ritz
            Zt = _orthonormal_block(Wj, Qt[:width], jax.random.fold_in(key, j), local, kscale2)
            Qt = jax.lax.dynamic_update_slice_in_dim(Qt, Zt, (j + 1) * b, axis=0)
            return Qt, Wt

        Qt, Wt = jax.lax.fori_loop(jnp.maximum(first, int(lo)), int(hi), body, (Qt, Wt))
    return Qt, Wt


_Cfg = tuple[int, int, int, int]  # (k, b, m, l): wanted pairs, block, basis, kept at restart
_Out = tuple[Array, Array, Array, Array, Array, Array]  # w, V, residuals, cycles, products, ok


def _solve(
    op: Operator,
    cfg: _Cfg,
    operands: tuple[Array, ...],
    V0: Array,
    key: Array,
    tol: Array,
    max_iter: Array,
) -> _Out:
    """Thick-restart block Krylov. ``cfg = (k, b, m, l)`` (static); ``max_iter`` may be traced.

    Cycle 1 fills blocks ``0 … m/b − 1`` from the random start; every later cycle keeps the
    ``l`` best Ritz vectors in rows ``[0, l)`` and fills blocks ``l/b … m/b − 1``.
    """
    k, b, m, l = cfg
    n, dtype = V0.shape[0], V0.dtype
    floor_factor = 10.0 * math.sqrt(n) * float(jnp.finfo(dtype).eps)

    def cycle(state: tuple) -> tuple:
        Qt, Wt, first, it, nmv = state[:5]
        Qt, Wt = _fill(op, operands, Qt, Wt, first, m // b, b, jax.random.fold_in(key, it))
        theta, Xt, KXt, res = _rayleigh_ritz(Qt[:m], Wt, k, l)
        bound = jnp.maximum(tol * jnp.abs(theta[:k]), floor_factor * jnp.abs(theta[0]))
        converged = jnp.all(res <= bound)
        # Restart: the l best Ritz vectors (their products reused) and the next Krylov block.
        Qn = jnp.zeros_like(Qt).at[:l].set(Xt).at[l : l + b].set(Qt[m:])
        Wn = jnp.zeros_like(Wt).at[:l].set(KXt)
        nmv = nmv + m - first * b
        return Qn, Wn, l // b, it + 1, nmv, converged, theta[:k], Xt[:k], res

    Qt = jnp.zeros((m + b, n), dtype)
    Qt = Qt.at[:b].set(_orthonormal_block(V0.T, Qt[:0], jax.random.fold_in(key, 2**31 - 1)))
    state: tuple = (
        Qt, jnp.zeros((m, n), dtype), 0, 0, 0, jnp.array(False),
        jnp.zeros((k,), dtype), jnp.zeros((k, n), dtype), jnp.full((k,), jnp.inf, dtype),
    )
    state = jax.lax.while_loop(lambda s: (~s[5]) & (s[3] < max_iter), cycle, state)
    _, _, _, it, nmv, converged, theta, Xt, res = state
    return theta, Xt.T, res, it, nmv, converged


def _dense_small(
    op: Operator, operands: tuple[Array, ...], n: int, k: int, dtype: DTypeLike
) -> _Out:
    """Exact path when the Krylov basis would cover the whole space: materialise K and ``eigh``."""
    K = op.apply(jnp.eye(n, dtype=dtype), operands)
    K = (K + K.T) / 2
    w, v = jnp.linalg.eigh(K)
    w, v = w[::-1][:k], v[:, ::-1][:, :k]
    res = jnp.linalg.norm(K @ v - v * w, axis=0)
    nmv = jnp.array(n if op.func is not None else 0)
    return w, v, res, jnp.array(0), nmv, jnp.array(True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _topk(
    op: Operator,
    cfg: _Cfg,
    operands: tuple[Array, ...],
    V0: Array,
    key: Array,
    tol: Array,
    max_iter: Array,
) -> _Out:
    k, b, m, _ = cfg
    n = V0.shape[0]
    if m + b > n:
        return _dense_small(op, operands, n, k, V0.dtype)
    return _solve(op, cfg, operands, V0, key, tol, max_iter)


@_topk.defjvp
def _topk_jvp(op: Operator, cfg: _Cfg, primals: tuple, tangents: tuple) -> tuple[_Out, tuple]:
    # Eigenvalues: dw_i = v_iᵀ dK v_i with dK V = d(matvec)(V): exact for simple eigenvalues.
    # Eigenvectors of a truncated decomposition would need (w_i − K)⁻¹ on the uncomputed modes:
    # not supported, so their tangent is NaN, and anything that depends on them (y_k, features)
    # gets a NaN derivative rather than a silently wrong one.
    operands = primals[0]
    out = _topk(op, cfg, *primals)
    w, V, res, it, nmv, ok = out
    dW = jax.jvp(lambda ops: op.apply(V, ops), (operands,), (tangents[0],))[1]
    dw = jnp.sum(V * dW, axis=0)
    float0 = lambda a: np.zeros(np.shape(a), jax.dtypes.float0)  # noqa: E731
    return out, (dw, jnp.nan * dW, jnp.zeros_like(res), float0(it), float0(nmv), float0(ok))




# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

DEFAULT_TOL = 1e-6
"""Default relative residual tolerance of :func:`topk_eigh`."""


def default_basis(k: int) -> tuple[int, int]:
    """Default ``(block_size, basis_size)`` for ``k`` wanted eigenpairs.

    Block ``b = clip(round(k/32), 8, 128)`` and basis ``m`` = the multiple of ``b`` at or above
    ``max(2.5k, k + 32b)``: ``m/b = 80`` Krylov blocks for ``256 ≤ k ≤ 4096``, at least 33 for
    small k. Tuned on NNGP Gram matrices with power-law spectra (``λ_i ∝ i^{-1.2 … -1.4}``,
    N = 2000, k = 16 … 500): one cycle reached relative residuals 1e-8 … 1e-13 and top-k
    eigenvalues to ≈ 1e-13 relative.
    """
    b = int(min(128, max(8, round(k / 32))))
    return b, _basis_for(k, b)


def _basis_for(k: int, b: int) -> int:
    return b * math.ceil(max(2.5 * k, k + 32 * b) / b)


def _kept(k: int, b: int, m: int) -> int:
    """Ritz vectors kept at a restart: ``k + (m − k)/4`` rounded up to a multiple of ``b``."""
    return min(b * math.ceil((k + (m - k) // 4) / b), m - b)


def topk_eigh(
    operator: ArrayLike | Callable[[Array], Array],
    k: int,
    *,
    n: int | None = None,
    dtype: DTypeLike | None = None,
    key: KeyLike = 0,
    tol: float = DEFAULT_TOL,
    block_size: int | None = None,
    basis_size: int | None = None,
    max_iter: int = 20,
    warn_unconverged: bool = True,
) -> TopkResult:
    """Top ``k`` eigenpairs of a symmetric (PSD) matrix by thick-restart block Krylov.

    Args:
      operator: the ``(N, N)`` symmetric matrix as an array (a row-sharded ``jax.Array`` works:
        it is only used in products ``K @ V``), or a callable ``matvec(V) -> K @ V`` mapping
        ``(N, b)`` blocks to ``(N, b)`` blocks. The callable must be jax-traceable (it is traced
        inside ``jax.jit``). Arrays it closes over are baked into the compiled program as
        constants; instead pass a callable pytree (``rgjax.kernels.gram_operator(kernel, x)``)
        or ``functools.partial(f, *arrays)`` (e.g. ``partial(rgjax.kernels.gram_matvec, kernel,
        x)``, called as ``gram_matvec(kernel, x, V)``): their array leaves become jit operands.
      k: number of eigenpairs, ``1 ≤ k ≤ N``.
      n: ``N``; required with a callable.
      dtype: dtype of a callable's vectors (default: float64 with x64 on, else float32).
      key: int seed or ``jax.random`` key of the random start block; equal keys give equal
        results.
      tol: converged when every ``‖Kv_i − w_i v_i‖ ≤ tol·|w_i|`` (or the round-off floor
        ``10√N·ε·|w_1|``). The eigenvalue error is at most the residual, and about
        residual²/gap on a separated eigenvalue: the default 1e-6 gave top-k eigenvalues to
        ≈ 1e-12 relative and learning curves to ≈ 1e-9 on NNGP spectra.
      block_size: Krylov block ``b`` (default :func:`default_basis`). An eigenvalue repeated more
        than ``b`` times exactly can be missed (a limit of every block Krylov method); Gram
        matrices of distinct data points do not have such multiplicities.
      basis_size: Krylov basis ``m`` per cycle, a multiple of ``b``, ``m ≥ k + b`` (default
        ≈ 2.5k): the oversampling. Larger converges in fewer cycles, at ``O(N m²)``
        orthogonalisation cost and ``O(m³)`` for the Rayleigh–Ritz step.
      max_iter: maximum number of cycles (restarts + 1); the solver never runs longer.
      warn_unconverged: issue an :class:`~rgjax.RgjaxWarning` when not converged (checked on
        concrete results only, i.e. not inside ``jit``).

    Returns:
      A :class:`TopkResult`: ``eigenvalues`` (k,), ``eigenvectors`` (N, k) and ``report``.
      When ``m + b > N`` (small problems) the matrix is diagonalised densely (a callable is
      applied to the identity), which is exact.

    Cost: ``m`` products with K per cycle (``m`` columns, in blocks of ``b``), ``O(N m²)`` for
    orthogonalisation and Rayleigh–Ritz, memory ``≈ 6 N m`` numbers besides K (the basis, its
    products, and the restart copies).

    Differentiation: ``jax.jvp``/``jax.grad`` give exact derivatives of the eigenvalues
    (``dw_i = v_iᵀ dK v_i``, through the matrix or the callable's array arguments). Eigenvector
    derivatives are not supported (they need the uncomputed modes) and come out NaN; use
    :func:`rgjax.from_gram` with ``method="dense"`` for those.

    Examples:
      >>> import numpy as np
      >>> from rgjax.eigensolve import topk_eigh
      >>> K = np.diag(0.8 ** np.arange(200.0))  # eigenvalues 1, 0.8, 0.64, ...
      >>> res = topk_eigh(K, 3, block_size=4, basis_size=24)
      >>> [f"{float(w):.4f}" for w in res.eigenvalues], bool(res.converged)
      (['1.0000', '0.8000', '0.6400'], True)
      >>> res.eigenvectors.shape
      (200, 3)
    """
    op, operands, n, dtype = check_operator(operator, n, dtype)
    k = check_int(k, "k", 1, n, f"at most the matrix size N={n}")
    b, m = default_basis(k)
    if block_size is not None:
        b = check_int(block_size, "block_size", 1, n, f"at most N={n}")
        m = _basis_for(k, b)
    if basis_size is not None:
        m = check_int(basis_size, "basis_size", k + b, None, f"k + block_size = {k + b}")
        if m % b:
            raise ValueError(
                f"`basis_size`={m} must be a multiple of `block_size`={b}; use "
                f"{b * math.ceil(m / b)}."
            )
    max_iter = check_int(max_iter, "max_iter", 1)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise ValueError(f"`tol` must be a number in (0, 1); got {tol!r}. The default is 1e-6.")
    _check_matvec_shape(op, operands, n, b, dtype)
    cfg = (k, b, m, _kept(k, b, m))
    out = _topk_program(op, cfg, n, np.dtype(dtype), operands, _as_key(key), np.asarray(tol, dtype),
                 np.asarray(max_iter))
    if warn_unconverged:
        warn_if_unconverged(out.report, basis_size=m, max_iter=max_iter)
    return out


def warn_if_unconverged(report: SolverReport, *, basis_size: int, max_iter: int) -> None:
    """Issue an :class:`~rgjax.RgjaxWarning` naming the fix when a concrete report says the
    solver did not converge."""
    ok, rel = concrete(report.converged), concrete(report.relative_residuals)
    if ok is None or rel is None or bool(ok):
        return
    worst = int(np.argmax(rel))
    k = rel.shape[-1]
    warn(
        f"topk_eigh did not converge in max_iter={max_iter} cycles ({int(report.n_matvec)} "
        f"products): the largest relative residual is {float(rel[worst]):.2g} at pair "
        f"{worst + 1} of k={k} (tol={float(report.tol):.2g}), so eigenvalues near the end of the "
        f"top {k} may be inaccurate. Pass a larger basis_size (now {basis_size}; more "
        "oversampling helps most on flat spectra), a larger max_iter, or compute more modes "
        "than you need (a larger k) and keep the top ones.",
        stacklevel=4,
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _topk_program(op: Operator, cfg: _Cfg, n: int, dtype: np.dtype,
                  operands: tuple[Array, ...], key: Array, tol: Array,
                  max_iter: Array) -> TopkResult:
    """:func:`topk_eigh` after its checks: start block, solver and report in one program."""
    if key.ndim == 0 and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.PRNGKey(key)  # an int seed (see _as_key)
    V0 = jax.random.normal(key, (n, cfg[1]), dtype)
    w, v, res, it, nmv, ok = _topk(op, cfg, operands, V0, key, tol, max_iter)
    absw = jnp.abs(w)
    safe = jnp.where(absw > 0, absw, 1.0)
    rel = jnp.where(absw > 0, res / safe, jnp.where(res > 0, jnp.inf, 0.0))
    return TopkResult(w, v, SolverReport(res, rel, it, nmv, ok, tol))


def _as_key(key: KeyLike) -> Array | np.ndarray:
    """A jax key, or an int seed as a 0-d numpy array (turned into a key inside the program)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return np.asarray(int(key), jax.dtypes.canonicalize_dtype(np.int64))
    if isinstance(key, jax.Array) and (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape == (2,)
    ):
        return key
    raise ValueError(
        f"`key` must be an int seed or a jax.random key; got {type(key).__name__}. "
        "Pass e.g. key=0 or key=jax.random.PRNGKey(0)."
    )


def check_operator(
    operator: ArrayLike | Callable[[Array], Array], n: int | None, dtype: DTypeLike | None
) -> tuple[Operator, tuple[Array, ...], int, jnp.dtype]:
    """Return ``(op, operands, N, dtype)`` for an array or a callable, or raise naming the fix."""
    if callable(operator) and not _is_array(operator):
        if n is None:
            raise ValueError(
                "`n` (the matrix size N) is required when `operator` is a callable; "
                "call topk_eigh(matvec, k, n=N)."
            )
        n = check_int(n, "n", 1)
        dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
        op, operands = _make_operator(operator)
        return op, tuple(as_auto_sharded(x) for x in operands), n, dtype
    if not _is_array(operator):
        raise TypeError(
            "`operator` must be an (N, N) array or a callable matvec(V) -> K @ V on (N, b) "
            f"blocks; got {type(operator).__name__}."
        )
    K = as_auto_sharded(operator) if isinstance(operator, jax.Array) else jnp.asarray(operator)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"`operator` must be a square (N, N) matrix; got shape {K.shape}.")
    if n is not None and n != K.shape[0]:
        raise ValueError(f"`n`={n} does not match the matrix size {K.shape[0]}; omit `n`.")
    if not jnp.issubdtype(K.dtype, jnp.floating):
        K = K.astype(jnp.result_type(float))
    return Operator(None), (K,), K.shape[0], K.dtype


def _check_matvec_shape(
    op: Operator, operands: tuple[Array, ...], n: int, b: int, dtype: DTypeLike
) -> None:
    """Trace the callable once on a ``(N, b)`` block (no computation) and check what it returns."""
    if op.func is None:
        return
    spec = jax.ShapeDtypeStruct((n, b), dtype)
    try:
        out = jax.eval_shape(op.apply, spec, operands)
    except Exception as err:  # report what the solver needs from the callable
        raise ValueError(
            f"`matvec` failed on a ({n}, {b}) block of dtype {jnp.dtype(dtype).name}: {err}. It "
            "must be a jax-traceable function mapping (N, b) blocks V to K @ V."
        ) from err
    if getattr(out, "shape", None) != (n, b):
        raise ValueError(
            f"`matvec` returned shape {getattr(out, 'shape', type(out).__name__)} for a "
            f"({n}, {b}) block; it must return K @ V with shape ({n}, {b})."
        )
