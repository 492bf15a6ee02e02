"""Learning-curve predictions: EK, the paper's RG, rgjax's corrected RG, spectral bias (THEORY §§2–4).

All functions take a :class:`~rgjax.spectrum.Spectrum`, a scalar or array ``eta`` (training-set
sizes) and the bare ridge ``sigma2``; they return arrays of ``eta``'s shape, are jit-able and
differentiable. Modes beyond a truncated spectrum enter through its ``trace`` and ``target_power``
and are treated as unlearnable (``ηλ_k ≪`` ridge), which is exact in the regime the RG describes.

* :func:`mse_ek` — equivalent-kernel limit, bare ridge: ``Σ_k (σ²/(σ² + ηλ_k))² y_k²``.
* :func:`mse_rg` — EK with the renormalized ridge ``σ²_eff(η)`` (the paper's RG, Fig. 1);
  ``dof_correction=True`` gives rgjax's learned-mode correction (THEORY §3b, not in the paper).
* :func:`mse_spectral_bias` — Canatar–Bordelon–Pehlevan ``E_g`` (= eigenlearning, Simon et al.).
* :func:`kappa`, :func:`eigenlearning` — the self-consistent ridge ``κ`` and the eigenlearning
  quantities (learnabilities, ``E_0``).

``κ`` solves ``κ = σ² + κ Σ_k λ_k/(ηλ_k + κ)`` by a safeguarded Newton/bisection iteration in
``log κ`` inside ``lax.while_loop``; its derivatives come from the implicit-function theorem
(``jax.custom_jvp``), never from differentiating the iterations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from rgjax._validate import check_finite
from rgjax.rg import _effective, _eta, _validate
from rgjax.spectrum import Spectrum

__all__ = [
    "Eigenlearning",
    "mse_ek",
    "mse_rg",
    "mse_spectral_bias",
    "kappa",
    "eigenlearning",
]

_MAX_ITER = 200
_TOL = 1e-14  # on log κ; Newton converges quadratically, so the last step is far below this


def _mode_sum(spec: Spectrum, weights: jax.Array) -> jax.Array:
    """``Σ_k weights_k y_k² + (target power beyond the held modes)``; weights ``(..., k)``."""
    return jnp.sum(weights * spec.target_coefficients**2, axis=-1) + spec.residual_power


def mse_ek(spec: Spectrum, eta: Any, sigma2: Any) -> jax.Array:
    """Equivalent-kernel learning curve with the bare ridge: ``Σ_k (σ²/(σ² + ηλ_k))² y_k²``.

    Returns:
      ``eta``'s shape.
    """
    _validate(spec, eta, sigma2)
    eta = _eta(eta, spec.eigenvalues.dtype)
    return _ek(spec, eta, jnp.asarray(sigma2))


def _ek(spec: Spectrum, eta: jax.Array, ridge: jax.Array) -> jax.Array:
    r = ridge[..., None]
    return _mode_sum(spec, (r / (r + eta[..., None] * spec.eigenvalues)) ** 2)


def mse_rg(
    spec: Spectrum,
    eta: Any,
    sigma2: Any,
    threshold: Any = 0.5,
    *,
    dof_correction: bool = False,
    temperature: Any | None = None,
) -> jax.Array:
    """RG learning curve: EK with the renormalized ridge (THEORY §3; §3b with ``dof_correction``).

    ``MSE_RG(η) = Σ_k (σ²_eff/(σ²_eff + ηλ_k))² y_k²`` with ``σ²_eff = σ² + t_{κ*(η, T)}``.
    With ``dof_correction=True`` (rgjax's extension, not in the paper):
    ``(1/(1 − κ*/η)) Σ_k (σ²_dof/(σ²_dof + ηλ_k))² y_k²``.

    Args:
      spec: the spectrum.
      eta: scalar or array of training-set sizes.
      sigma2: bare ridge ``σ² > 0``.
      threshold: learnability threshold ``T ∈ (0, 1)`` (default 0.5, the paper's).
      dof_correction: use the learned-mode correction of THEORY §3b.
      temperature: smooth cutoff temperature ``τ`` (None: the hard rule). See
        :func:`rgjax.rg.effective_ridge`.

    Returns:
      ``eta``'s shape; NaN where the hard rule is not applicable (no mode below ``T``; see
      :func:`rgjax.rg.eta_max`).
    """
    _validate(spec, eta, sigma2, threshold)
    eta = _eta(eta, spec.eigenvalues.dtype)
    ridge, factor, applicable = _effective(
        spec, eta, sigma2, threshold, dof_correction, temperature
    )
    return jnp.where(applicable, factor * _ek(spec, eta, ridge), jnp.nan)


# ---------------------------------------------------------------------------------------------
# Spectral bias / eigenlearning: the self-consistent κ
# ---------------------------------------------------------------------------------------------


def _kappa_residual(kap, eta, sigma2, lam, tail):
    """``h(κ) = 1 − (σ² + tail)/κ − Σ_k λ_k/(ηλ_k + κ)``: increasing in κ, zero at the root."""
    return 1.0 - (sigma2 + tail) / kap - jnp.sum(lam / (eta * lam + kap))


def _kappa_solve(eta, sigma2, lam, tail):
    """Safeguarded Newton in ``u = log κ`` on the bracket ``[σ² + tail, σ² + tail + Σλ]``.

    At the lower end every mode term is ≥ 0 so ``h ≤ 0``; at the upper end ``Σ λ/(ηλ+κ) ≤ Σλ/κ``
    gives ``h ≥ 0``. Newton steps that leave the bracket are replaced by bisection.
    """
    c = sigma2 + tail
    lo = jnp.log(c)
    hi = jnp.log(c + jnp.sum(lam))

    def h_and_slope(u):
        k = jnp.exp(u)
        d = eta * lam + k
        h = 1.0 - c / k - jnp.sum(lam / d)
        slope = c / k + k * jnp.sum(lam / d**2)  # dh/du > 0
        return h, slope

    def cond(state):
        _, a, b, it, done = state
        return (~done) & (it < _MAX_ITER)

    def body(state):
        u, a, b, it, _ = state
        h, slope = h_and_slope(u)
        a = jnp.where(h < 0, u, a)
        b = jnp.where(h > 0, u, b)
        step = h / jnp.where(slope > 0, slope, 1.0)
        un = u - step
        tol = _TOL * (1.0 + jnp.abs(u))
        # A converged Newton step may land a rounding error outside the bracket: accept it rather
        # than bisect away from the root (that cost ~50 extra iterations on some η).
        small = jnp.abs(step) <= tol
        inside = (un >= a) & (un <= b) & jnp.isfinite(un)
        un = jnp.where(inside | small, un, 0.5 * (a + b))
        done = (h == 0) | small | (b - a <= tol)
        return un, a, b, it + 1, done

    u0 = 0.5 * (lo + hi)
    u, *_ = jax.lax.while_loop(cond, body, (u0, lo, hi, 0, hi <= lo))
    return jnp.exp(u)


@jax.custom_jvp
def _kappa_scalar(eta, sigma2, lam, tail):
    return _kappa_solve(eta, sigma2, lam, tail)


@_kappa_scalar.defjvp
def _kappa_scalar_jvp(primals, tangents):
    # Implicit function theorem on h(κ; θ) = 0:  dκ = −(∂h/∂θ · dθ) / (∂h/∂κ).
    eta, sigma2, lam, tail = primals
    kap = _kappa_scalar(eta, sigma2, lam, tail)
    _, dh = jax.jvp(lambda *p: _kappa_residual(kap, *p), primals, tangents)
    dh_dk = (sigma2 + tail) / kap**2 + jnp.sum(lam / (eta * lam + kap) ** 2)
    return kap, -dh / dh_dk


def _kappa(spec: Spectrum, eta: jax.Array, sigma2: Any) -> jax.Array:
    dtype = spec.eigenvalues.dtype
    flat = jnp.ravel(eta)
    sigma2 = jnp.asarray(sigma2, dtype)
    solve = jax.vmap(_kappa_scalar, in_axes=(0, None, None, None))
    return solve(flat, sigma2, spec.eigenvalues, spec.tail_mass).reshape(eta.shape)


def kappa(spec: Spectrum, eta: Any, sigma2: Any) -> jax.Array:
    """Self-consistent ridge ``κ(η)`` of the spectral-bias theory (THEORY §4).

    Unique positive root of ``κ = σ² + κ Σ_k λ_k/(ηλ_k + κ)``; modes beyond a truncated spectrum
    add their mass (``≈ λ_k`` each, as ``ηλ_k ≪ κ``). Differentiable by implicit differentiation.

    Returns:
      ``eta``'s shape.
    """
    _validate(spec, eta, sigma2)
    return _kappa(spec, _eta(eta, spec.eigenvalues.dtype), sigma2)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Eigenlearning:
    """Eigenlearning quantities (Simon et al.), equivalent to the spectral-bias theory.

    Attributes:
      kappa: ``eta``'s shape; κ of :func:`kappa`.
      kappa_s: ``eta``'s shape; ``κ/η``, the eigenlearning "effective regularisation".
      learnabilities: ``eta.shape + (k,)``; ``L_k = λ_k/(λ_k + κ_S)``.
      e0: ``eta``'s shape; overfitting coefficient ``η/(η − Σ_k L_k²) = 1/(1 − γ)``.
      mse: ``eta``'s shape; test error against noisy labels, ``E_0 (Σ_k (1 − L_k)² y_k² + ε²)``
        (= :func:`mse_spectral_bias` + ε²).
    """

    kappa: jax.Array
    kappa_s: jax.Array
    learnabilities: jax.Array
    e0: jax.Array
    mse: jax.Array


def eigenlearning(spec: Spectrum, eta: Any, sigma2: Any, noise: Any = 0.0) -> Eigenlearning:
    """Eigenlearning form of the spectral-bias theory (THEORY §4).

    Conservation law: ``Σ_k L_k + (σ² + tail)/κ_S = η``.

    Args:
      noise: label-noise variance ``ε²`` (0 for clean labels).
    """
    _validate(spec, eta, sigma2)
    check_finite(noise, "noise")
    eta = _eta(eta, spec.eigenvalues.dtype)
    kap = _kappa(spec, eta, sigma2)
    ks = kap / eta
    denom = spec.eigenvalues + ks[..., None]
    lk = spec.eigenvalues / denom
    e0 = eta / (eta - jnp.sum(lk**2, axis=-1))
    # 1 − L_k written as κ_S/(λ_k + κ_S): no cancellation for well-learned modes (L_k → 1)
    mse = e0 * (_mode_sum(spec, (ks[..., None] / denom) ** 2) + noise)
    return Eigenlearning(kappa=kap, kappa_s=ks, learnabilities=lk, e0=e0, mse=mse)


def mse_spectral_bias(spec: Spectrum, eta: Any, sigma2: Any, noise: Any = 0.0) -> jax.Array:
    """Spectral-bias generalisation error ``E_g(η)`` (Canatar, Bordelon & Pehlevan 2021).

    ``γ = Σ_k ηλ_k²/(ηλ_k + κ)²`` and
    ``E_g = (1/(1 − γ)) [Σ_k κ² y_k²/(ηλ_k + κ)² + ε² γ]`` — the error against the clean target,
    which is what the pool MSE of THEORY §2 measures.

    Args:
      noise: label-noise variance ``ε²`` on the training labels.

    Returns:
      ``eta``'s shape.
    """
    _validate(spec, eta, sigma2)
    check_finite(noise, "noise")
    eta = _eta(eta, spec.eigenvalues.dtype)
    kap = _kappa(spec, eta, sigma2)[..., None]
    d = eta[..., None] * spec.eigenvalues + kap
    gamma = jnp.sum(eta[..., None] * spec.eigenvalues**2 / d**2, axis=-1)
    bias = _mode_sum(spec, (kap / d) ** 2)
    return (bias + noise * gamma) / (1.0 - gamma)
