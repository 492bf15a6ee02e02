"""The kernel spectrum on the data measure (THEORY §1).

A pool of N inputs with targets y defines the uniform measure μ on the pool. For the Gram matrix
``K = Σ_k w_k v_k v_kᵀ`` (eigenvalues descending) rgjax fixes the normalisation

* operator eigenvalues ``λ_k = w_k / N``,
* features ``φ_k(x_i) = √N v_k[i]`` (orthonormal under μ),
* target coefficients ``y_k = v_kᵀ y / √N`` (so ``Σ_k y_k² = mean(y²)``).

A :class:`Spectrum` may hold only the top ``k`` modes: everything downstream obtains the tail mass
``Σ_{k>κ} λ_k`` from :attr:`Spectrum.trace` (the mean kernel diagonal) and the target power outside
the kept modes from :attr:`Spectrum.target_power`, so a truncated spectrum is a first-class object.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._validate import as_float_array, concrete, warn

__all__ = ["Spectrum", "from_gram", "from_eigenvalues", "powerlaw"]

# Clipped negative eigenvalues above this fraction of the trace are more than round-off: warn.
_CLIP_WARN_FRACTION = 1e-8


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Eigen-decomposition of a kernel on a pool, in rgjax's normalisation.

    Attributes:
      eigenvalues: ``(k,)`` operator eigenvalues ``λ_k = w_k/N``, descending, clipped at 0.
      target_coefficients: ``(k,)`` ``y_k = v_kᵀ y/√N``.
      trace: ``()`` ``Σ_k λ_k`` over *all* N modes, ``= tr(K)/N`` (mean kernel diagonal).
      target_power: ``()`` ``mean(y²) = Σ_k y_k²`` over all N modes.
      eigenvectors: ``(N, k)`` unit eigenvectors ``v_k`` of the Gram matrix, or ``None``.
      kernel_diagonal: ``(N,)`` ``K_ii``, or ``None``; needed for the input-dependent ridge of a
        truncated spectrum (THEORY §5).
      clipped_mass: ``()`` total ``|λ|`` of negative round-off eigenvalues that were set to 0.
      n_pool: pool size N (static).
    """

    eigenvalues: jax.Array
    target_coefficients: jax.Array
    trace: jax.Array
    target_power: jax.Array
    eigenvectors: jax.Array | None = None
    kernel_diagonal: jax.Array | None = None
    clipped_mass: jax.Array | float = 0.0
    n_pool: int = dataclasses.field(default=0, metadata=dict(static=True))

    @property
    def n_modes(self) -> int:
        """Number of modes held (``k``)."""
        return int(self.eigenvalues.shape[-1])

    @property
    def is_truncated(self) -> bool:
        """True when fewer than ``n_pool`` modes are held."""
        return self.n_modes < self.n_pool

    @property
    def tail_mass(self) -> jax.Array:
        """``Σ_{k > n_modes} λ_k``: eigenvalue mass beyond the held modes (exactly 0 when full)."""
        if not self.is_truncated:
            # trace − Σλ would only add round-off of size 1e-16·trace to every tail.
            return jnp.zeros((), self.eigenvalues.dtype)
        return jnp.maximum(self.trace - jnp.sum(self.eigenvalues), 0.0)

    @property
    def residual_power(self) -> jax.Array:
        """``Σ_{k > n_modes} y_k²``: target power beyond the held modes (exactly 0 when full)."""
        if not self.is_truncated:
            return jnp.zeros((), self.eigenvalues.dtype)
        return jnp.maximum(self.target_power - jnp.sum(self.target_coefficients**2), 0.0)

    def features(self) -> jax.Array:
        """``(N, k)`` feature values ``φ_k(x_i) = √N v_k[i]`` (orthonormal under the pool measure)."""
        if self.eigenvectors is None:
            raise ValueError(
                "this Spectrum holds no eigenvectors (built by from_eigenvalues); "
                "use from_gram(K, y) to get features."
            )
        return jnp.sqrt(float(self.n_pool)) * self.eigenvectors

    def truncate(self, k: int) -> "Spectrum":
        """Keep the top ``k`` modes; trace and target power still describe the whole pool."""
        if not 1 <= k <= self.n_modes:
            raise ValueError(f"`k` must lie in [1, {self.n_modes}]; got {k}.")
        vecs = None if self.eigenvectors is None else self.eigenvectors[:, :k]
        return dataclasses.replace(
            self,
            eigenvalues=self.eigenvalues[:k],
            target_coefficients=self.target_coefficients[:k],
            eigenvectors=vecs,
        )

    def __repr__(self) -> str:  # arrays can be 10^4 long: summarise instead
        lam = concrete(self.eigenvalues)
        head = "traced" if lam is None else f"λ_1={lam[0]:.3g}, λ_k={lam[-1]:.3g}"
        return (
            f"Spectrum(n_modes={self.n_modes}, n_pool={self.n_pool}, {head}, "
            f"dtype={self.eigenvalues.dtype})"
        )


def _check_gram(K: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    K = as_float_array(K, "K")
    y = as_float_array(y, "y")
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"`K` must be a square (N, N) Gram matrix; got shape {K.shape}.")
    if y.ndim != 1 or y.shape[0] != K.shape[0]:
        raise ValueError(
            f"`y` must have shape (N,) = ({K.shape[0]},) to match K; got {y.shape}. "
            "For multi-output targets call from_gram once per output."
        )
    k_np = concrete(K)
    if k_np is not None:
        scale = float(np.max(np.abs(k_np))) or 1.0
        asym = float(np.max(np.abs(k_np - k_np.T)))
        # Blocked Gram builders are symmetric to round-off; anything larger is a different matrix.
        if asym > 1e-8 * scale:
            raise ValueError(
                f"`K` is not symmetric (max |K - Kᵀ| = {asym:.3g}, relative {asym / scale:.3g}); "
                "pass a kernel Gram matrix, or symmetrise it with (K + K.T) / 2 if the asymmetry "
                "is round-off."
            )
    return K, y


def from_gram(K: Any, y: Any, k: int | None = None, *, method: str = "dense") -> Spectrum:
    """Diagonalise a Gram matrix on the pool measure.

    Args:
      K: ``(N, N)`` symmetric PSD Gram matrix ``K(x_i, x_j)``.
      y: ``(N,)`` targets.
      k: keep only the top ``k`` modes (default: all N). The trace and target power still cover
        all N modes, so the tail enters every theory exactly through them.
      method: ``"dense"`` (float64 ``eigh``). Top-k iterative solvers plug in here later.

    Returns:
      A :class:`Spectrum`. Negative round-off eigenvalues are clipped to 0; their total mass is
      stored in ``clipped_mass`` and a :class:`~rgjax.RgjaxWarning` is issued when it exceeds
      ``1e-8 × trace`` (more than round-off).

    Differentiable with respect to ``K`` and ``y``. On exactly degenerate eigenvalues (relative
    gap ≤ 1e-12) the eigenvector rotation inside the degenerate subspace is given zero derivative
    instead of NaN: gradients of the theories stay finite, and are exact for perturbations of K
    that do not mix the degenerate subspace (e.g. rescaling the kernel).
    """
    K, y = _check_gram(K, y)
    n = K.shape[0]
    if k is not None and not 1 <= int(k) <= n:
        raise ValueError(f"`k` must lie in [1, N={n}]; got {k}.")
    if method != "dense":
        raise ValueError(f"unknown `method` {method!r}; available: 'dense'.")
    w, v = _dense_eigh(K)
    spec = _assemble(w, v, y, jnp.diag(K), n)
    _report_clipping(spec)
    return spec if k is None else spec.truncate(int(k))


# Eigenvalues closer than this (relative to the largest) are treated as exactly degenerate.
_DEGENERATE_RTOL = 1e-12


@jax.custom_jvp
def _eigh_descending(K: jax.Array) -> tuple[jax.Array, jax.Array]:
    w, v = jnp.linalg.eigh(K)
    return w[::-1], v[:, ::-1]


@_eigh_descending.defjvp
def _eigh_descending_jvp(primals, tangents):
    # Standard eigh derivative, dV = V (F ∘ Vᵀ dK V) with F_ij = 1/(w_j − w_i), except that the
    # rotation *inside* an exactly degenerate eigenspace (F_ij = ±inf, where plain eigh gives NaN)
    # is set to zero. Eigenvalue derivatives and anything invariant under such rotations
    # (traces, eigenvalue functions, y-weighted sums for perturbations that do not mix the
    # degenerate subspace) stay exact.
    (K,), (dK,) = primals, tangents
    w, v = _eigh_descending(K)
    a = v.T @ ((dK + dK.T) / 2) @ v
    gap = w[None, :] - w[:, None]
    tol = _DEGENERATE_RTOL * jnp.max(jnp.abs(w)) + jnp.finfo(w.dtype).tiny
    degenerate = jnp.abs(gap) <= tol
    f = jnp.where(degenerate, 0.0, 1.0 / jnp.where(degenerate, 1.0, gap))
    return (w, v), (jnp.diagonal(a), v @ (f * a))


_dense_eigh = jax.jit(_eigh_descending)


def _assemble(w: jax.Array, v: jax.Array, y: jax.Array, diag: jax.Array, n: int) -> Spectrum:
    lam = w / n
    clipped = jnp.sum(jnp.where(lam < 0, -lam, 0.0))
    return Spectrum(
        eigenvalues=jnp.maximum(lam, 0.0),
        target_coefficients=v.T @ y / jnp.sqrt(float(n)),
        trace=jnp.mean(diag),
        target_power=jnp.mean(y**2),
        eigenvectors=v,
        kernel_diagonal=diag,
        clipped_mass=clipped,
        n_pool=n,
    )


def _report_clipping(spec: Spectrum) -> None:
    clipped, tr = concrete(spec.clipped_mass), concrete(spec.trace)
    if clipped is None or tr is None:
        return
    if float(clipped) > _CLIP_WARN_FRACTION * abs(float(tr)):
        warn(
            f"clipped negative eigenvalues of total mass {float(clipped):.3g} "
            f"({float(clipped) / float(tr):.2g} of the trace); the Gram matrix is not PSD beyond "
            "round-off: check the kernel, or build K in float64."
        )


def from_eigenvalues(
    eigenvalues: Any,
    target_coefficients: Any,
    *,
    trace: Any | None = None,
    target_power: Any | None = None,
    n_pool: int | None = None,
) -> Spectrum:
    """Build a spectrum directly from ``λ_k`` and ``y_k`` (synthetic or population spectra).

    Args:
      eigenvalues: ``(k,)`` non-negative, sorted descending.
      target_coefficients: ``(k,)``.
      trace: total ``Σ λ`` over all modes (default: the sum of those given, i.e. no tail).
      target_power: total ``Σ y²`` (default: the sum of those given).
      n_pool: number of modes of the full problem (default: ``k``). Required when ``trace`` or
        ``target_power`` describe modes beyond those given (a truncated spectrum).
    """
    lam = as_float_array(eigenvalues, "eigenvalues")
    yk = as_float_array(target_coefficients, "target_coefficients")
    if lam.ndim != 1 or yk.shape != lam.shape:
        raise ValueError(
            f"`eigenvalues` and `target_coefficients` must both have shape (k,); got "
            f"{lam.shape} and {yk.shape}."
        )
    lam_np = concrete(lam)
    if lam_np is not None:
        if np.any(lam_np < 0):
            raise ValueError("`eigenvalues` must be non-negative (clip round-off negatives first).")
        if np.any(np.diff(lam_np) > 0):
            raise ValueError("`eigenvalues` must be sorted in descending order.")
    tr = jnp.sum(lam) if trace is None else jnp.asarray(trace, dtype=lam.dtype)
    tp = jnp.sum(yk**2) if target_power is None else jnp.asarray(target_power, dtype=lam.dtype)
    if n_pool is None and (trace is not None or target_power is not None):
        raise ValueError(
            "pass `n_pool` (the total number of modes) together with `trace`/`target_power`, "
            "so that the spectrum knows it is truncated."
        )
    n = lam.shape[0] if n_pool is None else int(n_pool)
    if n < lam.shape[0]:
        raise ValueError(f"`n_pool`={n} is smaller than the number of modes {lam.shape[0]}.")
    return Spectrum(eigenvalues=lam, target_coefficients=yk, trace=tr, target_power=tp, n_pool=n)


def powerlaw(
    n_modes: int, alpha: float = 0.5, beta: float | None = None, *, normalize: bool = True
) -> Spectrum:
    """A power-law population spectrum: ``λ_k ∝ k^{-(1+α)}``, ``y_k² ∝ k^{-(1+β)}`` (β defaults to α).

    With ``normalize`` both ``Σ λ_k`` and ``Σ y_k²`` equal 1. Useful for demos and tests.
    """
    if n_modes < 1:
        raise ValueError(f"`n_modes` must be >= 1; got {n_modes}.")
    beta = alpha if beta is None else beta
    k = jnp.arange(1, n_modes + 1, dtype=jnp.result_type(float))
    lam = k ** (-(1.0 + alpha))
    y2 = k ** (-(1.0 + beta))
    if normalize:
        lam, y2 = lam / jnp.sum(lam), y2 / jnp.sum(y2)
    return from_eigenvalues(lam, jnp.sqrt(y2))
