"""The modes beyond a truncated spectrum as a quadrature: the tail measure (docs/theory.md §8).

A top-k spectrum holds the eigenpairs ``(λ_k, v_k)`` of the first ``k`` modes. Every theory is a
sum over *all* N modes of ``f(λ) y²`` (target-weighted) or of ``g(λ)`` (unweighted), and the
modes beyond ``k`` are not known one by one. Their contribution is a quadratic form of the
deflated operator ``A_⊥ = P (K/N) P`` with ``P = I − V Vᵀ``:

* ``Σ_{j>k} f(λ_j) y_j² = y_⊥ᵀ f(A_⊥) y_⊥ / N`` with ``y_⊥ = P y``;
* ``Σ_{j>k} g(λ_j) = E[z_⊥ᵀ g(A_⊥) z_⊥]`` for Rademacher probes ``z`` (Hutchinson).

Two Lanczos runs on ``A_⊥`` (full reorthogonalisation) give them:

* from ``y_⊥``, ``m`` steps: the ``m``-node Gauss quadrature of the target-weighted measure
  (nodes: the Ritz values; weights: ``‖y_⊥‖²/N`` times the squared first components of the
  tridiagonal's eigenvectors). Exact for polynomials of degree ``2m − 1``, geometric convergence
  for the rational functions of the theories; the functions with a pole close to 0 (EK and RG
  at a small ridge and a large η) need its ``m`` steps (EK at σ² = 1e-3, η = N/2: 7e-11 at
  m = 36, 5e-5 at m = 12).
* from the block ``[z_⊥1 … z_⊥p]``, ``⌈m/4⌉`` block steps: the Ritz values of the block
  Krylov space are shared nodes, and each probe's squared components on the Ritz vectors are its
  weights: per probe the block Gauss quadrature of its measure. The matrix is read once per
  step with a ``(N, p)`` block, which costs little more than a single vector on CPUs and GPUs.

Two refinements keep the stochastic part small (docs/theory.md §8):

* Ritz pairs whose residual is at round-off level are eigenpairs of ``A_⊥``: they count once,
  exactly (``exact`` weights), not through the probes. When the Krylov space covers the whole
  tail, every node is exact and so is every theory.
* The tail's exact first and second moments, ``Σ_{j>k} λ_j`` (the trace) and ``Σ_{j>k} λ_j²``
  (``‖K‖_F²/N² − Σ_{j≤k} λ_j²``, ``power2``, known when ``K`` is a matrix), calibrate the probe
  weights in the theories (:mod:`rgjax.theory`): the parts of the unweighted sums that are linear
  and quadratic in ``λ`` are then exact, and the probes only estimate the rest.

:func:`tail_measure` computes all of it matrix-free (``K`` or any ``matvec`` on ``(N, b)`` blocks,
row-sharded ``K`` included) in one compiled program. Each quadrature comes with a coarser
version from the same run (``m − 1`` steps; all blocks but the last): the difference between the
two is the error estimate of the fine one (conservative under geometric convergence).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._pytree import dataclass, field
from rgjax._typing import Array, ArrayLike, KeyLike
from rgjax._validate import check_int
from rgjax.eigensolve import Operator, check_operator

__all__ = ["DEFAULT_PROBES", "DEFAULT_STEPS", "TailMeasure", "check_tail_options", "exact_tail",
           "tail_measure", "with_probe_weights"]

#: Lanczos steps ``m`` of the target-weighted quadrature (the probes' block runs ``⌈m/4⌉``).
DEFAULT_STEPS = 32
#: Rademacher probes ``p`` of the unweighted tail sums (one block of ``p`` columns).
DEFAULT_PROBES = 32
# A Ritz pair whose residual is below this fraction of the operator's norm counts as an
# eigenpair (exact weight 1): its eigenvalue is then right to ~(residual)²/gap.
_CONVERGED = 1e-9
# Relative round-off (in units of ε) of ‖K‖_F²/N², which power2 inherits.
_POWER2_ROUNDOFF = 32.0
# A new Lanczos vector below this multiple of ε λ_1 √N is round-off of the product with K (the
# Krylov space is exhausted): dropped instead of normalised.
_DROP = 1e3
# A block whose singular values span less than 1/_SVQB is orthonormalised through its Gram
# matrix; one whose kept singular values span more than 1/_ILL is reprojected afterwards.
_SVQB = 1e-4
_ILL = 1e-8


@dataclass
class TailMeasure:
    """Quadratures of the modes beyond the held ones.

    ``Σ_{j>k} f(λ_j) y_j² ≈ Σ_i weights[i] f(nodes[i])`` (``m`` nodes) and
    ``Σ_{j>k} g(λ_j) ≈ Σ_i (exact[i] + (1 − exact[i]) Σ_r probe_weights[r, i]) g(probe_nodes[i])``
    (``D = ⌈m/4⌉ p`` nodes shared by the ``p`` probes) before the calibration of
    :mod:`rgjax.theory`. The probe weights carry the ``1/p`` of the average, so each probe's own
    estimate is ``p`` times its row.

    Attributes:
      nodes, weights: ``(m,)`` the target-weighted Gauss quadrature; ``Σ weights = ‖y_⊥‖²/N``.
      nodes_coarse, weights_coarse: ``(m − 1,)`` its ``(m − 1)``-node version.
      probe_nodes: ``(D,)`` Ritz values of the probes' block Krylov space.
      probe_weights: ``(p, D)`` each probe's weights over them.
      exact: ``(D,)`` 1 where the node is a converged eigenpair counted once (0 elsewhere;
        fractions for Ritz vectors partly made of dropped basis directions).
      probe_nodes_coarse, probe_weights_coarse, exact_coarse: the same from all blocks but the
        last (``D' = D − p``).
      power2: ``()`` the exact ``Σ_{j>k} λ_j²`` of the tail, NaN when unknown (matrix-free).
      power2_error: ``()`` its round-off (``‖K‖_F²/N² − Σ_{j≤k} λ_j²`` cancels digits).
      steps: Lanczos steps ``m`` of the target-weighted quadrature (static).
    """

    nodes: Array
    weights: Array
    nodes_coarse: Array
    weights_coarse: Array
    probe_nodes: Array
    probe_weights: Array
    exact: Array
    probe_nodes_coarse: Array
    probe_weights_coarse: Array
    exact_coarse: Array
    power2: Array
    power2_error: Array
    steps: int = field(static=True, default=0)

    @property
    def n_probes(self) -> int:
        """Number of Rademacher probes ``p``."""
        return int(self.probe_weights.shape[0])

    def coarse(self) -> TailMeasure:
        """The coarse quadratures in place of the fine ones."""
        return TailMeasure(self.nodes_coarse, self.weights_coarse, self.nodes_coarse,
                           self.weights_coarse, self.probe_nodes_coarse,
                           self.probe_weights_coarse, self.exact_coarse, self.probe_nodes_coarse,
                           self.probe_weights_coarse, self.exact_coarse, self.power2,
                           self.power2_error, self.steps - 1)


def with_probe_weights(tail: TailMeasure, weights: Array, weights_coarse: Array) -> TailMeasure:
    """``tail`` with other probe weights (the jackknife of :mod:`rgjax.truncation`)."""
    return dataclasses.replace(tail, probe_weights=weights, probe_weights_coarse=weights_coarse)


def exact_tail(eigenvalues: Array, y2: Array, rest: TailMeasure | None = None) -> TailMeasure:
    """The tail measure of known modes: nodes ``λ_j`` with weights ``y_j²``, counted once
    (``exact``), followed by the quadratures of ``rest`` (modes beyond those, if any).

    Its coarse quadratures equal the fine ones for the known modes: their error is zero.
    """
    lam, y2 = jnp.asarray(eigenvalues), jnp.asarray(y2)
    p = 1 if rest is None else rest.n_probes
    ones = jnp.ones(lam.shape, lam.dtype)
    each = jnp.full((p,) + lam.shape, 1.0 / p, lam.dtype)
    power2 = jnp.sum(lam * lam)
    if rest is None:
        return TailMeasure(lam, y2, lam, y2, lam, each, ones, lam, each, ones, power2,
                           jnp.zeros_like(power2), 0)

    def join(a: Array, b: Array) -> Array:
        return jnp.concatenate([a, b], axis=-1)

    return TailMeasure(join(lam, rest.nodes), join(y2, rest.weights),
                       join(lam, rest.nodes_coarse), join(y2, rest.weights_coarse),
                       join(lam, rest.probe_nodes), join(each, rest.probe_weights),
                       join(ones, rest.exact), join(lam, rest.probe_nodes_coarse),
                       join(each, rest.probe_weights_coarse), join(ones, rest.exact_coarse),
                       power2 + rest.power2, rest.power2_error, rest.steps)


def check_tail_options(steps: object, probes: object) -> tuple[int, int]:
    """``(steps, probes)`` as ints, or one error naming the argument (steps 0: no tail)."""
    steps = check_int(steps, "tail_steps", 0, why="Lanczos steps of the tail measure, 0 for "
                      "none")
    if steps == 1:
        raise ValueError("`tail_steps` must be 0 (no tail measure) or at least 2: the error "
                         "estimate compares the m-step quadrature with the (m − 1)-step one.")
    probes = check_int(probes, "tail_probes", 2, why="the stochastic estimate needs two")
    return steps, probes


def tail_measure(
    operator: ArrayLike | Callable[[Array], Array],
    eigenvectors: ArrayLike,
    y: ArrayLike,
    *,
    steps: int = DEFAULT_STEPS,
    probes: int = DEFAULT_PROBES,
    key: KeyLike = 0,
    eigenvalues: ArrayLike | None = None,
) -> TailMeasure:
    """The tail measure of the modes of ``operator`` beyond ``eigenvectors``.

    Args:
      operator: the ``(N, N)`` Gram matrix ``K`` (numpy or JAX, row-sharded allowed) or a
        jax-traceable ``matvec(V) -> K @ V`` on ``(N, b)`` blocks (as for
        :func:`rgjax.eigensolve.topk_eigh`).
      eigenvectors: ``(N, k)`` orthonormal eigenvectors of the held modes (deflated exactly).
      y: ``(N,)`` the targets.
      steps: Lanczos steps ``m ≥ 2`` of the target-weighted quadrature, capped at ``N − k``.
        The probes' block runs :func:`probe_steps` ``(m)`` steps, capped where its Krylov
        space would exceed the tail.
      probes: Rademacher probes ``p ≥ 2`` of the unweighted sums.
      key: seed or ``jax.random`` key of the probes (folded with 1 first, so that the same seed
        as the top-k solver's gives independent numbers).
      eigenvalues: ``(k,)`` the held eigenvalues ``λ_k`` of ``K/N``. With a matrix ``K`` they
        give the tail's exact second moment ``power2`` (NaN otherwise).

    Returns:
      A :class:`TailMeasure` with quadratures of the operator ``K/N`` (rgjax's normalisation).
    """
    V = jnp.asarray(eigenvectors)
    yv = jnp.asarray(y)
    shape = getattr(operator, "shape", None)
    if yv.ndim != 1 or (shape is not None and tuple(shape)[:1] != yv.shape):
        raise ValueError(f"`y` must have shape (N,) with N the size of the operator "
                         f"{tuple(shape) if shape is not None else ''}; got {yv.shape}.")
    op, operands, n, dtype = check_operator(operator, yv.shape[0], yv.dtype)
    if V.ndim != 2 or V.shape[0] != n:
        raise ValueError(f"`eigenvectors` must be (N, k) with N = {n}; got {V.shape}.")
    free = n - V.shape[1]
    if free < 2:
        raise ValueError(f"the tail of a {n}-point pool with k = {V.shape[1]} held modes has "
                         f"{free} mode(s): no quadrature is needed (use the full spectrum).")
    steps, probes = check_tail_options(steps, probes)
    steps = min(steps, free)
    blocks = max(2, min(probe_steps(steps), -(-free // probes) + 1))
    seed = key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        seed = np.asarray(int(key), jax.dtypes.canonicalize_dtype(np.int64))
    matrix = isinstance(operator, (np.ndarray, jax.Array)) and eigenvalues is not None
    held = jnp.asarray(jnp.zeros((0,)) if eigenvalues is None else eigenvalues, dtype)
    return _tail_program(op, (steps, blocks, probes), matrix, operands, V.astype(dtype),
                         yv.astype(dtype), jnp.asarray(seed), held)


def _top_eigenvalue(op: Operator, operands: tuple[Array, ...], V: Array, held: Array) -> Array:
    """``λ_1`` of ``K/N`` (the held eigenvalues' largest, else ``‖K v_1‖/N``): the scale of the
    round-off that each product with ``K`` leaves, which no deflation removes."""
    if held.shape[0]:
        return jnp.max(jnp.abs(held))
    return jnp.linalg.norm(op.apply(V[:, :1], operands)) / V.shape[0]


def probe_steps(steps: int) -> int:
    """Block Lanczos steps of the probes for ``steps`` target steps: ``⌈steps/4⌉`` (at least 2).

    The probes' error is mostly their sampling error, and their block Krylov space is ``p``
    times larger than a single vector's: at N = 4000 the spectral bias moved by less than its
    sampling error between 8 and 12 block steps, by 1.3–1.8× more at 6–7 (at η = N/2) and by 10×
    more at 4.
    """
    return max(2, -(-steps // 4))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _tail_program(op: Operator, sizes: tuple[int, int, int], matrix: bool,
                  operands: tuple[Array, ...], V: Array, y: Array, key: Array,
                  held: Array) -> TailMeasure:
    steps, blocks, probes = sizes
    n = y.shape[0]
    if key.ndim == 0 and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.PRNGKey(key)  # an int seed
    top = _top_eigenvalue(op, operands, V, held)
    alpha, beta, norm2 = _lanczos(op, operands, V, y, steps, top)
    nodes, weights = _tridiagonal_gauss(alpha, beta, norm2 / n)  # rgjax's y_k = v_kᵀy/√N
    coarse = _tridiagonal_gauss(alpha[:-1], beta[:-1], norm2 / n)
    # Folded: the probes are independent of a solver start block drawn from the same seed.
    z = jax.random.rademacher(jax.random.fold_in(key, 1), (n, probes), y.dtype)
    T, R0, coupling, live = _block_lanczos(op, operands, V, z, blocks, top)
    fine = _block_gauss(T, R0, coupling, live, probes)
    d = (blocks - 1) * probes  # all blocks but the last, coupled to the last one
    rough = _block_gauss(T[:d, :d], R0, T[d:, :d], live[:d], probes)
    power2 = error = jnp.asarray(jnp.nan, y.dtype)
    if matrix:
        # Σ_{j>k} λ_j² = ‖K‖_F²/N² − Σ_{j≤k} λ_j²: one pass over K, no product with V. The
        # difference keeps the round-off of the total (measured ~7ε of it; 32ε assumed).
        total = jnp.sum(operands[0] ** 2) / n**2
        power2 = jnp.maximum(total - jnp.sum(held * held), 0.0)
        error = _POWER2_ROUNDOFF * jnp.finfo(y.dtype).eps * total
    return TailMeasure(nodes, weights, *coarse, *fine, *rough, power2, error, steps)


def _lanczos(op: Operator, operands: tuple[Array, ...], V: Array, y: Array, steps: int,
             top: Array) -> tuple[Array, Array, Array]:
    """Lanczos on ``(I − VVᵀ)(K/N)(I − VVᵀ)`` from ``y (N,)``.

    Full reorthogonalisation (against its own basis and ``V``: see
    :func:`_step`) keeps the quadrature exact to round-off. Returns the tridiagonal
    ``alpha`` (m,), ``beta`` (m − 1,) and ``‖(I − VVᵀ) y‖²``. When the Krylov space is
    exhausted (fewer than ``m`` distinct eigenvalues carry ``y``) the rest of the tridiagonal
    is zero: its extra nodes decouple with zero weight. ``top`` (``λ_1``) sets the round-off
    level of a product with ``K`` (``ε λ_1 √N``), below which a new direction is noise.
    """
    n = y.shape[0]
    x = y - V @ (V.T @ y)
    x = x - V @ (V.T @ x)
    norm2 = jnp.sum(x * x)
    nrm = jnp.sqrt(norm2)
    Q = jnp.zeros((n, steps), y.dtype).at[:, 0].set(x / jnp.where(nrm > 0, nrm, 1.0))
    eps = jnp.finfo(y.dtype).eps

    def body(j: int, state: tuple) -> tuple:
        Q, alpha, beta, live = state
        q = Q[:, j]
        h, w = _step(op.apply(q[:, None], operands)[:, 0] / n, V, Q)
        b = jnp.sqrt(jnp.sum(w * w))
        # Breakdown: what is left is round-off of the product with K (the Krylov space is
        # invariant); the rest of the tridiagonal stays zero.
        ok = live & (b > _DROP * eps * top * jnp.sqrt(n))
        nxt = jnp.where(ok, w / jnp.where(ok, b, 1.0), 0.0)
        Q = jax.lax.dynamic_update_index_in_dim(Q, nxt, jnp.minimum(j + 1, steps - 1), 1)
        alpha = alpha.at[j].set(jnp.where(live, h[j], 0.0))
        beta = beta.at[j].set(jnp.where(ok, b, 0.0))
        return Q, alpha, beta, ok

    init = (Q, jnp.zeros((steps,), y.dtype), jnp.zeros((steps,), y.dtype), nrm > 0)
    _, alpha, beta, _ = jax.lax.fori_loop(0, steps, body, init)
    return alpha, beta[:-1], norm2


def _tridiagonal_gauss(alpha: Array, beta: Array, scale: Array) -> tuple[Array, Array]:
    """Gauss quadrature of the tridiagonal: nodes (its eigenvalues, clipped at 0: the operator
    is PSD, the rest is round-off) and weights ``scale · τ²`` (first row of its eigenvectors)."""
    T = jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1)
    theta, U = jnp.linalg.eigh(T)
    return jnp.maximum(theta, 0.0), scale * U[0] ** 2


def _svd(W: Array) -> tuple[Array, Array, Array]:
    """Thin SVD of a tall ``W (N, c)`` through Householder QR and the SVD of its ``c × c``
    factor: singular values accurate to ``ε ‖W‖`` (a Gram matrix would give only ``√ε ‖W‖``)."""
    Qh, Rh = jnp.linalg.qr(W)
    U, sv, Vt = jnp.linalg.svd(Rh)
    return Qh @ U, sv, Vt


def _svqb(W: Array) -> tuple[Array, Array, Array]:
    """``W``'s columns orthonormalised through the eigendecomposition of ``WᵀW`` (fast for tall
    blocks): ``(B, sv, R)`` with ``W = B R``. Singular values are accurate only to ``√ε ‖W‖``."""
    s, E = jnp.linalg.eigh(W.T @ W)
    sv = jnp.sqrt(jnp.maximum(s[::-1], 0.0))
    E = E[:, ::-1]
    B = (W @ E) * jnp.where(sv > 0, 1.0 / jnp.where(sv > 0, sv, 1.0), 0.0)
    return B, sv, sv[:, None] * E.T


def _orthonormal(P: Array, V: Array, Q: Array, noise: Array) -> tuple[Array, Array, Array]:
    """Orthonormal columns spanning ``P (N, c)`` (already projected out of ``V`` and ``Q``),
    rank-revealing: directions with singular value below ``noise`` are round-off (the Krylov
    space is exhausted) and come out as zero columns (``live`` 0). Returns ``(B, R, live)``
    with ``P = B R`` on the kept directions.

    A well-conditioned block (singular values within ``_SVQB`` of each other, none near
    ``noise``) takes SVQB twice (a Gram matrix: fast). Otherwise the singular values come from
    Householder QR (accurate to ``ε ‖P‖``, which the Gram matrix is not), and a kept direction
    with a small singular value ``σ`` carries the round-off left along ``V`` and ``Q`` amplified
    by ``‖P‖/σ``: when some ``σ`` is below ``_ILL ‖P‖`` the directions are projected out of
    ``V`` and ``Q`` once more and re-orthonormalised.
    """
    B, sv, R = _svqb(P)
    fast = (sv[-1] > _SVQB * sv[0]) & (sv[-1] > 1e3 * noise)

    def quick(_: Array) -> tuple[Array, Array, Array]:
        return _svqb(B)[0], R, jnp.ones(sv.shape, bool)

    def careful(P: Array) -> tuple[Array, Array, Array]:
        U, sv, Vt = _svd(P)
        live = sv > noise

        def reproject(B: Array) -> Array:
            B = B - V @ (V.T @ B)
            B = B - Q @ (Q.T @ B)
            B = B - Q @ (Q.T @ B)
            Ub, _, Vbt = _svd(B)
            return Ub @ Vbt  # the nearest orthonormal columns: same span, same order

        weakest = jnp.min(jnp.where(live, sv, jnp.inf))
        B = jax.lax.cond(weakest < _ILL * sv[0], reproject, lambda B: B, U * live)
        return B, jnp.where(live[:, None], sv[:, None] * Vt, 0.0), live

    B, R, live = jax.lax.cond(fast, quick, careful, P)
    return B * live, R, live.astype(P.dtype)


def _step(W: Array, V: Array, Q: Array) -> tuple[Array, Array]:
    """A new Krylov direction from ``W = A q``: ``(h, W')`` with ``h = QᵀW`` (the column of the
    projected operator) and ``W'`` projected out of ``Q`` and ``V``.

    Twice against the Krylov basis ("twice is enough"), then once against ``V``, last: the
    subtraction of ``Q h`` brings back the basis's own round-off along ``V`` times
    ``‖h‖/‖W'‖``, and ``K`` returns a component along ``V`` multiplied by ``λ_1/λ_{k+1}``; left
    in the basis, either would compound from step to step (measured: 0.4 of a Lanczos vector
    along ``V`` after 35 steps). With every basis vector orthogonal to ``V`` to round-off, the
    component of ``W`` along ``V`` is itself round-off and does not reach ``h``.
    """
    h = Q.T @ W
    W = W - Q @ h
    W = W - Q @ (Q.T @ W)
    return h, W - V @ (V.T @ W)


def _block_lanczos(op: Operator, operands: tuple[Array, ...], V: Array, X: Array, steps: int,
                   top: Array) -> tuple[Array, Array, Array, Array]:
    """Block Lanczos on ``(I − VVᵀ)(K/N)(I − VVᵀ)`` from ``X (N, c)``, ``steps`` blocks.

    Full reorthogonalisation against ``V`` and every earlier block. Returns the projected
    operator ``T = QᵀAQ`` (D, D) with ``D = steps · c``, the first block's ``R0`` (``X_⊥ = Q_0
    R0``), the coupling ``Q_mᵀ A Q`` (c, D) of the block after the last (zero outside the last
    block's columns: it gives the Ritz residuals), and the live mask of the basis columns (D,).
    New directions below ``_DROP ε λ_1 √N`` (``top = λ_1``) are round-off of the products with
    ``K``: an exhausted Krylov space. They are dropped (see :func:`_orthonormal`).
    """
    n, c = X.shape
    d = steps * c
    X = X - V @ (V.T @ X)
    X = X - V @ (V.T @ X)
    Q = jnp.zeros((n, d), X.dtype)
    noise = _DROP * jnp.finfo(X.dtype).eps * top * jnp.sqrt(n)
    Q0, _, live0 = _orthonormal(X, V, Q, noise * jnp.sqrt(n))  # ‖z‖ = √N, not 1
    R0 = Q0.T @ X  # X_⊥ = Q0 R0 in the final basis

    def step(Q: Array, j: Array) -> tuple[Array, ...]:
        # h: column block j of T (the rows of later blocks are still zero)
        h, w = _step(op.apply(jax.lax.dynamic_slice_in_dim(Q, j * c, c, axis=1), operands) / n,
                     V, Q)
        return (h, *_orthonormal(w, V, Q, noise))

    def body(j: Array, state: tuple) -> tuple:
        Q, T, live = state
        h, nxt, _, lv = step(Q, j)
        T = jax.lax.dynamic_update_slice(T, h, (0, j * c))
        Q = jax.lax.dynamic_update_slice(Q, nxt, (0, (j + 1) * c))
        return Q, T, jax.lax.dynamic_update_slice(live, lv, ((j + 1) * c,))

    init = (Q.at[:, :c].set(Q0), jnp.zeros((d, d), X.dtype),
            jnp.zeros((d,), X.dtype).at[:c].set(live0))
    Q, T, live = jax.lax.fori_loop(0, steps - 1, body, init)
    h, _, r, _ = step(Q, jnp.asarray(steps - 1))
    T = T.at[:, d - c:].set(h)
    # Each column block of T holds the rows up to its own block: mirror the upper blocks.
    blocks = jnp.arange(d) // c
    upper = jnp.where(blocks[:, None] <= blocks[None, :], T, 0.0)
    diag = blocks[:, None] == blocks[None, :]
    T = jnp.where(diag, (upper + upper.T) / 2, upper + upper.T)
    coupling = jnp.zeros((c, d), X.dtype).at[:, d - c:].set(r)
    return T, R0, coupling, live


def _block_gauss(T: Array, R0: Array, coupling: Array, live: Array,
                 probes: int) -> tuple[Array, Array, Array]:
    """Nodes, probe weights and exact weights of the block Krylov space ``T``.

    Nodes are the Ritz values (clipped at 0: the operator is PSD, the rest is round-off);
    each start vector's weights are its squared components ``(R0ᵀ U_0)²`` on the Ritz vectors.
    A Ritz pair with residual ``‖coupling · u‖`` below ``_CONVERGED ‖A‖`` is an eigenpair: its
    ``exact`` weight is the share of its Ritz vector on live basis directions (1 unless the
    Krylov space was exhausted).
    """
    theta, U = jnp.linalg.eigh(T)
    first = R0.T @ U[:probes]  # (p, D): probe r on Ritz vector i
    resid = jnp.sqrt(jnp.sum((coupling @ U) ** 2, axis=0))
    anorm = jnp.max(jnp.abs(theta))
    exact = jnp.where(resid <= _CONVERGED * anorm, live @ (U * U), 0.0)
    return jnp.maximum(theta, 0.0), first**2 / probes, exact
