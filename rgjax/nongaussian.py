"""Non-Gaussian features: input-dependent ridge, functional RG flow, reweighted regression.

docs/theory.md §5. Without the Gaussian-feature assumption, integrating out the greater modes
``k > κ`` leaves the input-dependent ridge ``σ²_κ(x) = σ² + Σ_{k>κ} λ_k φ_k(x)²``
(:func:`rgjax.rg.input_dependent_ridge`). The lesser theory becomes a spatially reweighted
regression: the kept coefficients minimise

    Σ_{k≤κ} f_k²/(2λ_k) + (η/2) ⟨(f_<(x) − y(x))² / σ²_κ(x)⟩_μ,

i.e. solve ``(Λ_<⁻¹ + η Φ_<ᵀ W Φ_< / N) f_< = η Φ_<ᵀ W y / N`` with ``W = diag(1/σ²_κ(x_i))``.
With a constant weight ``1/(σ² + t_κ)`` this is exactly the Gaussian RG of docs/theory.md §3; a
non-constant weight couples modes that are orthogonal under μ.

:func:`reweighted_coefficients` solves the lesser theory for a given cutoff;
:func:`mse_reweighted` turns it into a learning-curve prediction at the RG cutoff ``κ*(η, T)``, to
be shown beside :func:`rgjax.theory.mse_rg`; :func:`functional_flow` summarises the flow
``σ²_{κ−1}(x) = σ²_κ(x) + λ_κ φ_κ(x)²`` over the pool.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rgjax._pytree import dataclass
from rgjax._typing import Array, ArrayLike, Scalar
from rgjax._validate import check_eta, check_sigma2, check_threshold, concrete
from rgjax.rg import cutoff_traced, input_dependent_ridge, tail_masses
from rgjax.spectrum import Spectrum

__all__ = ["reweighted_coefficients", "mse_reweighted", "FunctionalFlow", "functional_flow"]


def _need_vectors(spec: Spectrum) -> None:
    if not isinstance(spec, Spectrum):
        raise TypeError(f"`spec` must be an rgjax Spectrum; got {type(spec).__name__}.")
    if spec.eigenvectors is None:
        raise ValueError("`spec` holds no eigenvectors; build it with rgjax.from_gram(K, y).")


def reweighted_coefficients(
    spec: Spectrum, y: ArrayLike, eta: Scalar, kappa: int, ridge: ArrayLike
) -> Array:
    """Kept coefficients ``f_<`` (shape ``(κ,)``) of the reweighted lesser theory.

    Args:
      spec: a spectrum with eigenvectors.
      y: ``(N,)`` pool targets.
      eta: training-set size η.
      kappa: number of kept modes κ (``1 ≤ κ ≤ k``).
      ridge: ``(N,)`` ridge profile ``σ²_κ(x_i)`` (e.g. :func:`rgjax.rg.input_dependent_ridge`),
        or a scalar for the Gaussian RG.

    Returns:
      ``(κ,)`` the solution of ``(Λ_<⁻¹ + η Φ_<ᵀ W Φ_< / N) f = η Φ_<ᵀ W y / N``.
    """
    _need_vectors(spec)
    n = spec.n_pool
    phi = spec.features()[:, :kappa]  # (N, κ)
    lam = spec.eigenvalues[:kappa]
    w = jnp.broadcast_to(1.0 / jnp.asarray(ridge), (n,))
    return _lesser_solve(phi, jnp.sqrt(lam), w, jnp.asarray(y), eta / n)


def _lesser_solve(phi: Array, s: Array, w: Array, y: Array, scale: ArrayLike) -> Array:
    """``s ⊙ (I + S A S)⁻¹ (s ⊙ b)`` with ``A = scale·ΦᵀWΦ``, ``b = scale·ΦᵀWy``, ``S = diag(s)``.

    ``s = √λ`` scales the rows so the system is ``I + √Λ A √Λ``: well conditioned even when the
    smallest kept λ is tiny; ``s = 0`` on a mode leaves an identity row (the mode drops out).
    Shapes: ``phi (N, W)``, ``s (W,)``, ``w (N,)``, ``y (N,)``; returns ``(W,)``.
    """
    a = (phi * w[:, None]).T @ phi * scale
    b = (phi * w[:, None]).T @ y * scale
    m = jnp.eye(s.shape[0], dtype=a.dtype) + s[:, None] * a * s[None, :]
    return s * jnp.linalg.solve(m, s * b)


def mse_reweighted(
    spec: Spectrum, y: ArrayLike, eta: ArrayLike, sigma2: float, threshold: float = 0.5
) -> np.ndarray:
    """Learning curve of the input-dependent-ridge (functional) RG, beside :func:`mse_rg`.

    At each η the cutoff is the Gaussian RG's ``κ*(η, T)`` (docs/theory.md §3). The kept modes
    are fitted by the reweighted regression with ``W = 1/σ²_{κ*}(x_i)``; the greater modes are
    treated exactly as in the Gaussian RG (EK factor with ``σ²_eff``), so that a constant ridge
    profile reproduces :func:`rgjax.theory.mse_rg` identically:

        MSE = Σ_{k≤κ*} (f_k − y_k)² + Σ_{k>κ*} (σ²_eff/(σ²_eff + ηλ_k))² y_k²  (+ residual power).

    Args:
      spec: spectrum with eigenvectors (from :func:`rgjax.from_gram`).
      y: ``(N,)`` the pool targets the spectrum was built with.
      eta: scalar or ``(E,)`` training-set sizes.

    Returns:
      numpy array of ``eta``'s shape; NaN where the Gaussian RG is not applicable.
    """
    _need_vectors(spec)
    check_eta(eta)
    check_sigma2(sigma2)
    check_threshold(threshold)
    y = np.asarray(y, spec.eigenvalues.dtype)
    if y.shape != (spec.n_pool,):
        raise ValueError(f"`y` must have shape ({spec.n_pool},) like the pool; got {y.shape}.")
    etas = np.atleast_1d(np.asarray(eta, spec.eigenvalues.dtype))
    kap, ok = (np.asarray(a) for a in _rg_cutoff(spec, etas, sigma2, threshold))
    # κ* changes the size of the lesser system from one η to the next: every η solves a system of
    # the largest size, rounded up to a multiple of _WIDTH_STEP, with the modes beyond its own κ*
    # masked out (they decouple exactly), so that one program serves the whole curve.
    top = int(np.max(np.where(ok, kap, 0), initial=0))
    width = min(spec.n_modes, max(1, -(-top // _WIDTH_STEP) * _WIDTH_STEP))
    # η/N on the host: in the program a division by the constant N becomes a product with 1/N.
    out = _mse_reweighted(spec, y, etas, etas / spec.n_pool, sigma2, kap, ok, width)
    return np.asarray(out).reshape(np.shape(eta))


#: The lesser systems of :func:`mse_reweighted` are padded to a multiple of this many modes.
_WIDTH_STEP = 64


@jax.jit
def _rg_cutoff(spec: Spectrum, etas: Array, sigma2: Array, threshold: Array) -> tuple[Array, Array]:
    cut = cutoff_traced(spec, etas, sigma2, threshold, False)
    return cut.kappa, cut.applicable


@functools.partial(jax.jit, static_argnames=("width",))
def _mse_reweighted(spec: Spectrum, y: Array, etas: Array, scales: Array, sigma2: Array,
                    kap: Array, ok: Array, width: int) -> Array:
    """:func:`mse_reweighted` for every η (``κ* ≤ width``) in one program."""
    t = tail_masses(spec)
    lam = spec.eigenvalues
    yk = spec.target_coefficients
    modes = jnp.arange(spec.n_modes)
    phi = spec.features()[:, :width]  # (N, W)

    def one(args: tuple[Array, Array, Array]) -> Array:
        e, scale, k = args
        r_eff = sigma2 + jnp.where(k > 0, t[jnp.maximum(k - 1, 0)], spec.trace)
        ek = (r_eff / (r_eff + e * lam)) ** 2
        greater = jnp.sum(jnp.where(modes >= k, ek * yk**2, 0.0)) + spec.residual_power
        w = 1.0 / input_dependent_ridge(spec, sigma2, k)
        keep = modes[:width] < k
        # s = 0 beyond κ* leaves identity rows: the padded modes drop out of the solve.
        f = _lesser_solve(phi, jnp.where(keep, jnp.sqrt(lam[:width]), 0.0), w, y, scale)
        lesser = jnp.sum(jnp.where(keep, (f - yk[:width]) ** 2, 0.0))
        return jnp.where(k > 0, lesser + greater, greater)

    mse = lax.map(one, (etas, scales, kap))
    return jnp.where(ok, mse, jnp.nan)


@dataclass
class FunctionalFlow:
    """Distribution of the input-dependent ridge over the pool along the flow.

    Attributes:
      kappa: ``(m,)`` cutoffs.
      mean: ``(m,)`` pool mean of ``σ²_κ(x)`` (= the Gaussian ``σ² + t_κ``).
      quantiles: ``(m, q)`` pool quantiles of ``σ²_κ(x)`` at ``levels``.
      levels: ``(q,)`` quantile levels.
      cv: ``(m,)`` coefficient of variation std/mean of ``σ²_κ(x) − σ²`` over the pool: 0 for
        Gaussian-like (spatially uniform) tails.
    """

    kappa: np.ndarray
    mean: np.ndarray
    quantiles: np.ndarray
    levels: np.ndarray
    cv: np.ndarray

    def to_dict(self) -> dict[str, list]:
        """Plain lists, ready for ``json.dump``."""
        fields = dataclasses.fields(self)
        return {f.name: np.asarray(getattr(self, f.name)).tolist() for f in fields}


def functional_flow(
    spec: Spectrum,
    sigma2: float,
    kappas: Sequence[int] | ArrayLike | None = None,
    levels: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
) -> FunctionalFlow:
    """Summarise ``σ²_κ(x_i)`` over the pool for a sequence of cutoffs (the functional flow).

    docs/theory.md §5.

    Args:
      spec: a spectrum with eigenvectors.
      sigma2: bare ridge σ².
      kappas: cutoffs (default: 40 log-spaced values in ``[0, k − 1]``).
      levels: quantile levels reported per κ.

    Returns:
      A :class:`FunctionalFlow` over the ``m`` cutoffs.
    """
    _need_vectors(spec)
    check_sigma2(sigma2)
    if kappas is None:
        top = max(spec.n_modes - 1, 1)
        kap = np.unique(np.concatenate([[0], np.geomspace(1, top, 40).astype(int)]))
    else:
        kap = np.asarray(kappas)
    if concrete(kap) is None or kap.dtype.kind not in "iu":
        raise ValueError("`kappas` must be a sequence of integers.")
    ridge = np.asarray(input_dependent_ridge(spec, sigma2, kap))  # (m, N)
    excess = ridge - sigma2
    mean_excess = excess.mean(axis=1)
    positive = mean_excess > 0
    cv = np.where(positive, excess.std(axis=1) / np.where(positive, mean_excess, 1), 0)
    return FunctionalFlow(
        kappa=kap,
        mean=ridge.mean(axis=1),
        quantiles=np.quantile(ridge, np.asarray(levels), axis=1).T,
        levels=np.asarray(levels, float),
        cv=cv,
    )
