"""Wilsonian RG of the ridge: flow, learnabilities, cutoff κ*(η, T), effective ridge.

docs/theory.md §§3, 3b, 5.

Integrating out the *greater* modes ``k > κ`` of a Gaussian-feature GP leaves the *lesser* theory
unchanged except for the ridge, ``σ²(κ) = σ² + t_κ`` with the tail mass ``t_κ = Σ_{k>κ} λ_k``.
The data set the IR scale: the flow stops at the first mode whose learnability drops below the
threshold ``T``.

Conventions (docs/theory.md §3):

* ``L_k(η) = ηλ_k / (ηλ_k + σ² + t_k)`` (mode ``k`` with every mode beyond it integrated out);
* ``κ*(η, T) = (smallest k with L_k < T) − 1``, scanning from the top mode down;
* ``σ²_eff = σ² + t_{κ*}``;
* when no mode is below ``T`` the prediction is *not applicable*: :func:`cutoff` flags it,
  :func:`effective_ridge` and :func:`rgjax.theory.mse_rg` return NaN, and :func:`eta_max` gives
  the largest η with a crossing.

With ``dof_correction=True`` (rgjax's extension, docs/theory.md §3b, not in the paper) mode ``k``
sees the ridge ``(σ² + t_k) / (1 − (k−1)/η)`` and ``σ²_dof = (σ² + t_{κ*}) / (1 − κ*/η)``; it is
defined while ``κ* < η``.

Truncated spectra (top ``k`` modes plus the trace, from ``method="topk"`` or ``from_matvec``): the
RG needs the cutoff ``κ*`` inside the computed modes, i.e. ``η < eta_max(spec)``; the theories see
the modes beyond ``k`` through the spectrum's tail measure (:mod:`rgjax.tail`), and
:mod:`rgjax.truncation` estimates their error and says where a curve can be trusted.

Every function accepts a scalar or an array ``eta`` and returns arrays of ``eta``'s shape (with a
trailing mode axis where stated). All are jit-able and differentiable; input checks run on concrete
values only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import DTypeLike

from rgjax._pytree import dataclass
from rgjax._typing import Array, ArrayLike
from rgjax._validate import (
    check_eta,
    check_sigma2,
    check_temperature,
    check_threshold,
    check_x64,
    concrete,
)
from rgjax.spectrum import Spectrum

__all__ = [
    "Cutoff",
    "tail_masses",
    "ridge_flow",
    "learnability",
    "cutoff",
    "effective_ridge",
    "eta_max",
    "input_dependent_ridge",
]


@dataclass
class Cutoff:
    """Where the RG flow stops.

    Attributes:
      kappa: int array, ``eta``'s shape: ``κ*``, the number of kept (learnable) modes. Equal to
        ``spec.n_modes`` where no mode falls below ``T`` (not applicable).
      applicable: bool array, ``eta``'s shape: False where no held mode falls below ``T`` (the hard
        rule would collapse to bare EK), or, with the dof correction, where ``κ* ≥ η``.
    """

    kappa: Array
    applicable: Array


def check_inputs(
    spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, threshold: ArrayLike | None = None
) -> None:
    """Validate the common arguments of the RG and theory functions (concrete values only)."""
    if not isinstance(spec, Spectrum):
        raise TypeError(
            f"`spec` must be an rgjax Spectrum (from rgjax.from_gram or rgjax.from_eigenvalues); "
            f"got {type(spec).__name__}."
        )
    check_eta(eta)
    check_sigma2(sigma2)
    if threshold is not None:
        check_threshold(threshold)
    check_x64(spec.eigenvalues.dtype, sigma2, spec.trace)


def as_eta(eta: ArrayLike, dtype: DTypeLike) -> Array:
    """``eta`` as an array of the spectrum's dtype (the shape every result takes)."""
    return jnp.asarray(eta, dtype=dtype)


@jax.jit
def tail_masses(spec: Spectrum) -> Array:
    """``(k,)`` ``t_k = Σ_{j>k} λ_j`` for each held mode ``k`` (1-based), tail beyond k included.

    Summed from the small end (a reversed cumulative sum) so that tiny tails keep full relative
    precision instead of suffering the cancellation of ``trace − Σ_{j≤k} λ_j``.
    """
    lam = spec.eigenvalues
    after = jnp.cumsum(lam[::-1])[::-1] - lam  # Σ_{j>k} over held modes
    return jnp.maximum(after, 0.0) + spec.tail_mass


def ridge_flow(spec: Spectrum, sigma2: ArrayLike) -> Array:
    """The universal flow ``σ²(κ) = σ² + t_κ`` for ``κ = 0, 1, …, k``.

    Args:
      spec: the spectrum.
      sigma2: bare ridge ``σ² > 0``.

    Returns:
      ``(k + 1,)`` array; entry ``κ`` is the ridge after integrating out every mode beyond the
      top ``κ``. Entry 0 is ``σ² + trace``; entry ``k`` is ``σ² +`` (tail beyond the held modes),
      i.e. the bare ``σ²`` for a full spectrum. ``σ²(κ−1) = σ²(κ) + λ_κ``.
    """
    check_sigma2(sigma2)
    return _ridge_flow(spec, sigma2)


@jax.jit
def _ridge_flow(spec: Spectrum, sigma2: ArrayLike) -> Array:
    t = tail_masses(spec)
    t0 = t[:1] + spec.eigenvalues[:1]
    return jnp.asarray(sigma2) + jnp.concatenate([t0, t])


def _mode_ridges(spec: Spectrum, eta: Array, sigma2: ArrayLike, dof_correction: bool) -> Array:
    """``(..., k)`` ridge seen by mode k in the cutoff rule; ``inf`` where the dof rule runs out."""
    base = jnp.asarray(sigma2) + tail_masses(spec)
    if not dof_correction:
        return jnp.broadcast_to(base, eta.shape + base.shape)
    used = jnp.arange(spec.n_modes, dtype=eta.dtype)  # k − 1 modes above mode k are learned
    frac = 1.0 - used / eta[..., None]
    ok = frac > 0
    # Mode k cannot be learned once the k−1 modes above it have used up all η points.
    return jnp.where(ok, base / jnp.where(ok, frac, 1.0), jnp.inf)


def learnability(
    spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, *, dof_correction: bool = False
) -> Array:
    """Learnability ``L_k(η)`` of each mode with the renormalized ridge of the modes beyond it.

    ``L_k = ηλ_k / (ηλ_k + σ² + t_k)``; with ``dof_correction`` the ridge is
    ``(σ² + t_k)/(1 − (k−1)/η)`` (docs/theory.md §3b) and ``L_k = 0`` once ``k − 1 ≥ η``.

    Returns:
      ``eta.shape + (k,)``.
    """
    check_inputs(spec, eta, sigma2)
    return _learnability_jit(spec, eta, sigma2, dof_correction)


@functools.partial(jax.jit, static_argnums=3)  # one compiled program, also when called eagerly
def _learnability_jit(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike,
                      dof_correction: bool) -> Array:
    return _learnability(spec, as_eta(eta, spec.eigenvalues.dtype), sigma2, dof_correction)


def _learnability(spec: Spectrum, eta: Array, sigma2: ArrayLike, dof_correction: bool) -> Array:
    signal = eta[..., None] * spec.eigenvalues
    ridge = _mode_ridges(spec, eta, sigma2, dof_correction)
    finite = jnp.isfinite(ridge)
    safe = jnp.where(finite, ridge, 1.0)  # keeps the discarded branch's gradient finite
    return jnp.where(finite, signal / (signal + safe), 0.0)


def cutoff(
    spec: Spectrum,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    *,
    dof_correction: bool = False,
) -> Cutoff:
    """Hard cutoff ``κ*(η, T)`` = (index of the first mode, from the top, with ``L_k < T``) − 1.

    Args:
      spec: the spectrum (``k`` held modes).
      eta: scalar or array of training-set sizes.
      sigma2: bare ridge ``σ² > 0``.
      threshold: learnability threshold ``T ∈ (0, 1)``.
      dof_correction: rgjax's learned-mode correction (docs/theory.md §3b).

    Returns:
      A :class:`Cutoff` with arrays of ``eta``'s shape.

    Examples:
      >>> from rgjax.spectrum import powerlaw
      >>> from rgjax.rg import cutoff
      >>> cut = cutoff(powerlaw(1000), [10.0, 100.0, 1e6], 1e-3)
      >>> cut.kappa.tolist(), cut.applicable.tolist()
      ([5, 66, 1000], [True, True, False])
    """
    check_inputs(spec, eta, sigma2, threshold)
    return _cutoff(spec, eta, sigma2, threshold, dof_correction)


@functools.partial(jax.jit, static_argnums=4)
def _cutoff(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, threshold: ArrayLike,
            dof_correction: bool) -> Cutoff:
    return cutoff_traced(spec, as_eta(eta, spec.eigenvalues.dtype), sigma2, threshold,
                         dof_correction)


def cutoff_traced(
    spec: Spectrum, eta: Array, sigma2: ArrayLike, threshold: ArrayLike, dof_correction: bool
) -> Cutoff:
    """:func:`cutoff` without input checks (traceable; ``eta`` already an array).

    ``L_k(η) < T`` iff ``η < η_k`` (:func:`_crossing_sizes`). The first mode below ``T`` is the
    first ``k`` whose running maximum ``max_{j≤k} η_j`` exceeds ``η``, and that 0-based index,
    ``κ*``, is the number of running maxima ``≤ η``: a binary search per ``η``.
    """
    eta_k = _crossing_sizes(spec, sigma2, threshold, dof_correction)
    # κ* is integer-valued: no derivative flows through the search (σ²_eff's derivative is t_κ*'s)
    crossing = lax.stop_gradient(lax.cummax(eta_k))
    kept = jnp.searchsorted(crossing, lax.stop_gradient(eta), side="right")
    applicable = kept < spec.n_modes
    if dof_correction:
        applicable = applicable & (kept < eta)
    return Cutoff(kappa=kept, applicable=applicable)


def _crossing_sizes(
    spec: Spectrum, sigma2: ArrayLike, threshold: ArrayLike, dof_correction: bool
) -> Array:
    """``(k,)`` crossing sizes ``η_k``: mode ``k`` has ``L_k(η) < T`` exactly for ``η < η_k``.

    ``η_k = T(σ² + t_k)/((1 − T)λ_k)`` since each ``L_k`` grows with η; with the dof correction
    ``L_k = 0`` once ``k − 1 ≥ η``, so the condition reads ``η < k − 1 + η_k``. ``η_k = ∞``
    where ``λ_k = 0``. Shared by :func:`cutoff` and :func:`eta_max`.
    """
    lam = spec.eigenvalues
    dtype = lam.dtype
    base = jnp.asarray(sigma2, dtype) + tail_masses(spec)
    thr = jnp.asarray(threshold, dtype)
    pos = lam > 0
    eta_k = jnp.where(pos, (thr / (1.0 - thr)) * base / jnp.where(pos, lam, 1.0), jnp.inf)
    if dof_correction:
        eta_k = eta_k + jnp.arange(spec.n_modes, dtype=dtype)
    return eta_k


def _soft_integrated_out(
    spec: Spectrum, eta: Array, sigma2: ArrayLike, threshold: ArrayLike, temperature: ArrayLike,
    dof_correction: bool,
) -> Array:
    """``(..., k)`` smooth indicator that mode k lies beyond the cutoff.

    Hard rule: mode k is integrated out iff some mode ``j ≤ k`` has ``L_j < T``. Smooth rule:
    ``s_j = sigmoid((T − L_j)/τ)`` and ``u_k = 1 − Π_{j≤k} (1 − s_j)``, which tends to the hard
    indicator as ``τ → 0``. The product is accumulated in log space for stability.
    """
    lk = _learnability(spec, eta, sigma2, dof_correction)
    z = (threshold - lk) / temperature
    log_keep = jnp.cumsum(jax.nn.log_sigmoid(-z), axis=-1)
    return -jnp.expm1(log_keep)


def effective_ridge(
    spec: Spectrum,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    *,
    dof_correction: bool = False,
    temperature: ArrayLike | None = None,
) -> Array:
    """Effective ridge ``σ²_eff(η) = σ² + t_{κ*}`` where the RG flow stops (docs/theory.md §3).

    Args:
      spec: the spectrum.
      eta: scalar or array of training-set sizes.
      sigma2: bare ridge ``σ² > 0``.
      threshold: learnability threshold ``T ∈ (0, 1)``.
      dof_correction: rgjax's learned-mode correction (docs/theory.md §3b, not in the paper):
        returns ``σ²_dof = (σ² + t_{κ*}) / (1 − κ*/η)``.
      temperature: if given, the smooth cutoff (see :func:`_soft_integrated_out`) with this ``τ``;
        it is defined for every η (no not-applicable range) and differentiable in ``T``. With
        ``dof_correction`` the soft count of kept modes ``Σ_k (1 − u_k)`` replaces ``κ*``.

    Returns:
      ``eta``'s shape; NaN where the hard rule is not applicable (see :func:`cutoff`).

    Examples:
      >>> from rgjax.spectrum import powerlaw
      >>> from rgjax.rg import effective_ridge
      >>> ridge = effective_ridge(powerlaw(1000), [10.0, 100.0, 1e6], 1e-3)
      >>> [f"{float(r):.4f}" for r in ridge]
      ['0.3104', '0.0724', 'nan']
    """
    check_inputs(spec, eta, sigma2, threshold)
    check_temperature(temperature)
    return _effective_ridge(spec, eta, sigma2, threshold, temperature, dof_correction)


@functools.partial(jax.jit, static_argnums=5)
def _effective_ridge(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, threshold: ArrayLike,
                     temperature: ArrayLike | None, dof_correction: bool) -> Array:
    ridge, _, applicable = effective_ridge_traced(
        spec, as_eta(eta, spec.eigenvalues.dtype), sigma2, threshold, dof_correction, temperature
    )
    return jnp.where(applicable, ridge, jnp.nan)


def effective_ridge_traced(
    spec: Spectrum,
    eta: Array,
    sigma2: ArrayLike,
    threshold: ArrayLike,
    dof_correction: bool,
    temperature: ArrayLike | None,
) -> tuple[Array, Array, Array]:
    """Return (σ²_eff or σ²_dof, dof factor 1/(1 − κ*/η) (1 if no correction), applicable).

    :func:`effective_ridge` without input checks or NaN masking (traceable; ``eta`` an array).

    The ridge is finite everywhere (callers put NaN where ``applicable`` is False *after* their own
    arithmetic, so that gradients of the discarded entries stay finite).
    """
    if temperature is None:
        cut = cutoff_traced(spec, eta, sigma2, threshold, dof_correction)
        kept = cut.kappa
        t = tail_masses(spec)
        # t_{κ*} for κ* ≥ 1 is t[κ*−1]; κ* = 0 means every mode is integrated out (the trace).
        total = t[0] + spec.eigenvalues[0]
        t_kappa = jnp.where(kept > 0, t[jnp.clip(kept - 1, 0, spec.n_modes - 1)], total)
        applicable = cut.applicable
        kept = kept.astype(eta.dtype)
    else:
        u = _soft_integrated_out(spec, eta, sigma2, threshold, temperature, dof_correction)
        t_kappa = jnp.sum(u * spec.eigenvalues, axis=-1) + spec.tail_mass
        kept = jnp.sum(1.0 - u, axis=-1)
        applicable = jnp.ones(eta.shape, bool)
        if dof_correction:
            applicable = kept < eta
    ridge = jnp.asarray(sigma2) + t_kappa
    factor = jnp.ones_like(ridge)
    if dof_correction:
        # Safe denominator: keeps gradients finite in the branch that `where` discards.
        frac = jnp.where(applicable, 1.0 - kept / eta, 1.0)
        factor = 1.0 / frac
        ridge = ridge * factor
    return ridge, factor, applicable


def eta_max(
    spec: Spectrum, sigma2: ArrayLike, threshold: ArrayLike = 0.5, *, dof_correction: bool = False
) -> Array:
    """Largest η at which some held mode still falls below ``T`` (the RG's range of validity).

    ``L_k(η) < T`` iff ``η < η_k = T (σ² + t_k) / ((1 − T) λ_k)`` (each ``L_k`` grows with η), so
    the hard rule applies exactly for ``η < max_k η_k``. With ``dof_correction`` the condition
    reads ``η < k − 1 + η_k``. ``inf`` when a held mode has ``λ_k = 0``. For a truncated spectrum
    this is a lower bound (modes beyond the held ones are not examined).

    Returns:
      ``()`` the largest crossing size ``max_k η_k``.
    """
    check_sigma2(sigma2)
    check_threshold(threshold)
    return _eta_max(spec, sigma2, threshold, dof_correction)


@functools.partial(jax.jit, static_argnums=3)
def _eta_max(spec: Spectrum, sigma2: ArrayLike, threshold: ArrayLike,
             dof_correction: bool) -> Array:
    return jnp.max(_crossing_sizes(spec, sigma2, threshold, dof_correction))


def input_dependent_ridge(spec: Spectrum, sigma2: ArrayLike, kappa: ArrayLike) -> Array:
    """Input-dependent ridge ``σ²_κ(x_i) = σ² + Σ_{k>κ} λ_k φ_k(x_i)²`` on the pool.

    On the pool this is ``σ² + K_ii − Σ_{k≤κ} w_k v_k[i]²``, the diagonal of the integrated-out
    kernel; its mean over the pool is the Gaussian result ``σ² + t_κ`` (docs/theory.md §5).

    Args:
      spec: a spectrum with eigenvectors (from :func:`rgjax.from_gram`).
      sigma2: bare ridge.
      kappa: int or int array of kept-mode counts, each in ``[0, k]``.

    Returns:
      ``kappa.shape + (N,)``.
    """
    check_sigma2(sigma2)
    if spec.eigenvectors is None:
        raise ValueError("`spec` holds no eigenvectors; build it with rgjax.from_gram(K, y).")
    kap = kappa if isinstance(kappa, jax.Array) else np.asarray(kappa)
    kap_np = concrete(kap)
    if kap_np is not None and (
        kap_np.dtype.kind not in "iu"
        or kap_np.min(initial=0) < 0
        or kap_np.max(initial=0) > spec.n_modes
    ):
        raise ValueError(f"`kappa` must be integers in [0, {spec.n_modes}]; got {kap_np!r}.")
    if spec.is_truncated and spec.kernel_diagonal is None:
        raise ValueError(_NEEDS_DIAGONAL)
    return _ridge_profile(spec, sigma2, kap)


_NEEDS_DIAGONAL = ("a truncated `spec` needs `kernel_diagonal` for the input-dependent ridge; "
                   "build it with rgjax.from_gram(K, y, k=...).")


@jax.jit
def _ridge_profile(spec: Spectrum, sigma2: ArrayLike, kap: Array) -> Array:
    """:func:`input_dependent_ridge` after its checks: one compiled program per shape."""
    kap = jnp.asarray(kap)
    if spec.eigenvectors is None:
        raise ValueError("`spec` holds no eigenvectors; build it with rgjax.from_gram(K, y).")
    # λ_k φ_k(x_i)² = w_k v_k[i]²: per-mode contribution to the diagonal, shape (N, k).
    contrib = (spec.n_pool * spec.eigenvalues) * spec.eigenvectors**2
    # A materialised transpose: folded into the product it would change the order of its sums.
    contrib_t = lax.optimization_barrier(contrib.T)
    modes = jnp.arange(spec.n_modes)
    if spec.is_truncated:
        if spec.kernel_diagonal is None:
            raise ValueError(_NEEDS_DIAGONAL)
        kept = (modes < kap[..., None]).astype(contrib.dtype)  # kappa.shape + (k,)
        greater = jnp.maximum(spec.kernel_diagonal - kept @ contrib_t, 0.0)
    else:
        # Full spectrum: sum the greater modes directly (no cancellation against K_ii).
        beyond = (modes >= kap[..., None]).astype(contrib.dtype)
        greater = beyond @ contrib_t
    return jnp.asarray(sigma2) + greater
