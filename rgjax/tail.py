"""The modes beyond a truncated spectrum as a quadrature: the tail measure (docs/theory.md §8).

A top-k spectrum holds the eigenpairs ``(λ_k, v_k)`` of the first ``k`` modes. Every theory is a
sum over *all* N modes of ``f(λ) y²`` (target-weighted) or of ``g(λ)`` (unweighted), and the
modes beyond ``k`` are not known one by one. Their contribution is a quadratic form of the
deflated operator ``A_⊥ = P (K/N) P`` with ``P = I − V Vᵀ``:

* ``Σ_{j>k} f(λ_j) y_j² = y_⊥ᵀ f(A_⊥) y_⊥ / N`` with ``y_⊥ = P y``. ``m`` steps of Lanczos on
  ``A_⊥`` from ``y_⊥`` give the ``m``-node Gauss quadrature of exactly this measure: nodes ``θ_i``
  (the Ritz values) and weights ``‖y_⊥‖²/N · τ_i²`` (``τ_i`` the first components of the
  tridiagonal's eigenvectors). It is exact for polynomials of degree ``2m − 1`` and converges
  geometrically for the rational functions of the theories.
* ``Σ_{j>k} g(λ_j) = E[z_⊥ᵀ g(A_⊥) z_⊥]`` for Rademacher probes ``z`` (Hutchinson), each
  evaluated by the same Gauss quadrature (stochastic Lanczos quadrature). The theories use
  these only for the part of the unweighted sums that the exact tail trace does not give (see
  :mod:`rgjax.theory`), which keeps the sampling error small.

:func:`tail_measure` computes both, matrix-free (``K`` or any ``matvec`` on ``(N, b)`` blocks,
row-sharded ``K`` included), in one compiled program. Each quadrature also comes with its
``(m − 1)``-node version from the same run: the difference between the two is the error
estimate of the ``m``-node one (conservative under geometric convergence).
"""

from __future__ import annotations

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

#: Lanczos steps of each quadrature (``m``): nodes per quadrature.
DEFAULT_STEPS = 48
#: Rademacher probes of the stochastic quadrature of the unweighted tail sums (each runs
#: ``DEFAULT_STEPS // 2`` steps).
DEFAULT_PROBES = 16


@dataclass
class TailMeasure:
    """Quadratures of the modes beyond the held ones (``m`` nodes each, ``p`` probes).

    ``Σ_{j>k} f(λ_j) y_j² ≈ Σ_i weights[i] f(nodes[i])`` and
    ``Σ_{j>k} g(λ_j) ≈ Σ_{r,i} probe_weights[r, i] g(probe_nodes[r, i])`` (the probe weights
    carry the ``1/p`` of the average, so that each probe's own estimate is ``p`` times its row).

    Attributes:
      nodes, weights: ``(m,)`` the target-weighted Gauss quadrature; ``Σ weights = ‖y_⊥‖²/N``.
      nodes_coarse, weights_coarse: ``(m − 1,)`` its ``(m − 1)``-node version.
      probe_nodes, probe_weights: ``(p, m_p)`` the stochastic quadrature of the unweighted sums
        (``m_p = m // 2`` steps per probe: their sampling error dominates, not the quadrature's).
      probe_nodes_coarse, probe_weights_coarse: ``(p, m_p − 1)``.
    """

    nodes: Array
    weights: Array
    nodes_coarse: Array
    weights_coarse: Array
    probe_nodes: Array
    probe_weights: Array
    probe_nodes_coarse: Array
    probe_weights_coarse: Array
    steps: int = field(static=True, default=0)

    @property
    def n_probes(self) -> int:
        """Number of Rademacher probes ``p``."""
        return int(self.probe_nodes.shape[0])

    def coarse(self) -> TailMeasure:
        """The ``(m − 1)``-node quadratures in place of the ``m``-node ones."""
        return TailMeasure(self.nodes_coarse, self.weights_coarse, self.nodes_coarse,
                           self.weights_coarse, self.probe_nodes_coarse,
                           self.probe_weights_coarse, self.probe_nodes_coarse,
                           self.probe_weights_coarse, self.steps - 1)


def with_probe_weights(tail: TailMeasure, weights: Array, weights_coarse: Array) -> TailMeasure:
    """``tail`` with other probe weights (the jackknife of :mod:`rgjax.truncation`)."""
    return TailMeasure(tail.nodes, tail.weights, tail.nodes_coarse, tail.weights_coarse,
                       tail.probe_nodes, weights, tail.probe_nodes_coarse, weights_coarse,
                       tail.steps)


def exact_tail(eigenvalues: Array, y2: Array, rest: TailMeasure | None = None) -> TailMeasure:
    """The tail measure of known modes: nodes ``λ_j`` with weights ``y_j²`` (and 1 in the
    unweighted sums), followed by the quadratures of ``rest`` (modes beyond those, if any).

    Its coarse quadratures equal the fine ones for the known modes: their error is zero.
    """
    lam, y2 = jnp.asarray(eigenvalues), jnp.asarray(y2)
    if rest is None:
        ones = jnp.ones((1,) + lam.shape, lam.dtype)
        return TailMeasure(lam, y2, lam, y2, lam[None], ones, lam[None], ones, 0)
    p = rest.n_probes
    known = jnp.broadcast_to(lam, (p,) + lam.shape)
    each = jnp.full((p,) + lam.shape, 1.0 / p, lam.dtype)

    def join(a: Array, b: Array) -> Array:
        return jnp.concatenate([a, b], axis=-1)

    return TailMeasure(join(lam, rest.nodes), join(y2, rest.weights),
                       join(lam, rest.nodes_coarse), join(y2, rest.weights_coarse),
                       join(known, rest.probe_nodes), join(each, rest.probe_weights),
                       join(known, rest.probe_nodes_coarse), join(each, rest.probe_weights_coarse),
                       rest.steps)


def check_tail_options(steps: object, probes: object) -> tuple[int, int]:
    """``(steps, probes)`` as ints, or one error naming the argument (steps 0: no tail)."""
    steps = check_int(steps, "tail_steps", 0, why="Lanczos steps of the tail measure, 0 for none")
    if steps == 1:
        raise ValueError("`tail_steps` must be 0 (no tail measure) or at least 2: the error "
                         "estimate compares the m-node quadrature with the (m − 1)-node one.")
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
) -> TailMeasure:
    """The tail measure of the modes of ``operator`` beyond ``eigenvectors``.

    Args:
      operator: the ``(N, N)`` Gram matrix ``K`` (numpy or JAX, row-sharded allowed) or a
        jax-traceable ``matvec(V) -> K @ V`` on ``(N, b)`` blocks (as for
        :func:`rgjax.eigensolve.topk_eigh`).
      eigenvectors: ``(N, k)`` orthonormal eigenvectors of the held modes (deflated exactly).
      y: ``(N,)`` the targets.
      steps: Lanczos steps ``m ≥ 2`` of the target-weighted quadrature (nodes), capped at
        ``N − k``; each probe runs ``m // 2``.
      probes: Rademacher probes ``p ≥ 2`` of the unweighted sums.
      key: seed or ``jax.random`` key of the probes (folded with 1 first, so that the same seed
        as the top-k solver's gives independent numbers).

    Returns:
      A :class:`TailMeasure` with quadratures of the operator ``K/N`` (rgjax's normalisation).
    """
    V = jnp.asarray(eigenvectors)
    yv = jnp.asarray(y)
    op, operands, n, dtype = check_operator(operator, yv.shape[0], yv.dtype)
    if V.ndim != 2 or V.shape[0] != n or yv.shape != (n,):
        raise ValueError(f"`eigenvectors` must be (N, k) and `y` (N,) with N = {n}; got "
                         f"{V.shape} and {yv.shape}.")
    free = n - V.shape[1]
    if free < 2:
        raise ValueError(f"the tail of a {n}-point pool with k = {V.shape[1]} held modes has "
                         f"{free} mode(s): no quadrature is needed (use the full spectrum).")
    steps, probes = check_tail_options(steps, probes)
    steps = min(steps, free)
    seed = key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        seed = np.asarray(int(key), jax.dtypes.canonicalize_dtype(np.int64))
    return _tail_program(op, steps, probes, operands, V.astype(dtype), yv.astype(dtype),
                         jnp.asarray(seed))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _tail_program(op: Operator, steps: int, probes: int, operands: tuple[Array, ...], V: Array,
                  y: Array, key: Array) -> TailMeasure:
    n = y.shape[0]
    if key.ndim == 0 and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.PRNGKey(key)  # an int seed
    # Folded: the probes are independent of a solver start block drawn from the same seed.
    z = jax.random.rademacher(jax.random.fold_in(key, 1), (n, probes), y.dtype)
    alpha, beta, norm2 = _lanczos(op, operands, V, y[:, None], steps)
    nodes, weights = _gauss(alpha, beta, norm2 / n)  # ‖y_⊥‖²/N: rgjax's y_k = v_kᵀy/√N
    coarse_nodes, coarse_weights = _gauss(alpha[:-1], beta[:-1], norm2 / n)
    # The probes' error is their sampling error, not the quadrature's: half the steps for each
    # of them buys more probes for the same products (the matvecs dominate the cost).
    p_steps = probe_steps(steps)
    alpha, beta, norm2 = _lanczos(op, operands, V, z, p_steps)
    p_nodes, p_weights = _gauss(alpha, beta, norm2 / probes)
    pc_nodes, pc_weights = _gauss(alpha[:-1], beta[:-1], norm2 / probes)
    return TailMeasure(nodes[0], weights[0], coarse_nodes[0], coarse_weights[0], p_nodes,
                       p_weights, pc_nodes, pc_weights, steps)


def probe_steps(steps: int) -> int:
    """Lanczos steps of each probe: half the target's (at least 2)."""
    return max(2, steps // 2)


def _deflate(W: Array, V: Array) -> Array:
    """``(I − VVᵀ) W``, twice (one pass leaves round-off of the size of the top modes)."""
    W = W - V @ (V.T @ W)
    return W - V @ (V.T @ W)


def _lanczos(op: Operator, operands: tuple[Array, ...], V: Array, X: Array,
             steps: int) -> tuple[Array, Array, Array]:
    """Lanczos on ``(I − VVᵀ)(K/N)(I − VVᵀ)`` from each column of ``X`` (N, c), all at once.

    Full reorthogonalisation (against ``V`` and the column's own basis) keeps the quadrature
    exact to round-off. Returns the tridiagonals ``alpha`` (m, c) and ``beta`` (m − 1, c) and
    the squared norms ``‖(I − VVᵀ) x‖²`` (c,). A column whose Krylov space is exhausted (the
    tail has fewer than ``m`` distinct eigenvalues in it) continues with zeros: its extra nodes
    decouple with zero weight.
    """
    n, c = X.shape
    X = _deflate(X, V)
    norm2 = jnp.sum(X * X, axis=0)
    nrm = jnp.sqrt(norm2)
    Q = jnp.zeros((steps, n, c), X.dtype).at[0].set(X / jnp.where(nrm > 0, nrm, 1.0))
    eps = jnp.finfo(X.dtype).eps

    def body(j: int, state: tuple) -> tuple:
        Q, alpha, beta, live = state
        q = Q[j]
        w = _deflate(op.apply(q, operands) / n, V)
        a = jnp.sum(q * w, axis=0)
        w = w - a * q
        w = w - jnp.einsum("snc,sc->nc", Q, jnp.einsum("snc,nc->sc", Q, w))  # full reorth.
        w = _deflate(w, V)
        b = jnp.sqrt(jnp.sum(w * w, axis=0))
        # Breakdown: what is left is round-off of the operator's scale (the Krylov space of the
        # column is invariant); the rest of its tridiagonal stays zero.
        ok = live & (b > 64 * eps * (jnp.abs(a) + jnp.max(jnp.abs(alpha), axis=0) + 1e-300))
        nxt = jnp.where(ok, w / jnp.where(ok, b, 1.0), 0.0)
        Q = jax.lax.dynamic_update_index_in_dim(Q, nxt, jnp.minimum(j + 1, steps - 1), 0)
        alpha = alpha.at[j].set(jnp.where(live, a, 0.0))
        beta = beta.at[j].set(jnp.where(ok, b, 0.0))
        return Q, alpha, beta, ok

    init = (Q, jnp.zeros((steps, c), X.dtype), jnp.zeros((steps, c), X.dtype), nrm > 0)
    _, alpha, beta, _ = jax.lax.fori_loop(0, steps, body, init)
    return alpha, beta[:-1], norm2


def _gauss(alpha: Array, beta: Array, scale: Array) -> tuple[Array, Array]:
    """Gauss quadratures of the tridiagonals (columns): nodes (c, m) and weights (c, m).

    Nodes are the eigenvalues of ``T = tridiag(β, α, β)``; weights ``scale · τ²`` with ``τ`` the
    first row of its eigenvectors. Nodes are clipped at 0 (the operator is PSD; round-off).
    """
    T = (jax.vmap(jnp.diag, in_axes=1)(alpha)
         + jax.vmap(lambda b: jnp.diag(b, 1) + jnp.diag(b, -1), in_axes=1)(beta))
    theta, U = jnp.linalg.eigh(T)
    return jnp.maximum(theta, 0.0), scale[:, None] * U[:, 0, :] ** 2
