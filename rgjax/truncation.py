"""Is a truncated spectrum enough? An error estimate for every theory at every η (docs/theory.md
§8).

A spectrum that holds the top ``k`` modes sees the rest through its tail measure
(:mod:`rgjax.tail`), or, without one, through their total mass and target power only (counted
as unlearnable). :func:`truncation_error` estimates, per η, how far each theory's curve can be
from the full spectrum's:

* with a tail measure: the change from the ``m``-node quadratures to the ``(m − 1)``-node ones
  (conservative under the geometric convergence of Gauss quadrature), plus, for the spectral
  bias, three jackknife standard errors of its stochastic (probe) part, and at least the error
  of the held eigenpairs (``64 ε √k`` relative, and ten times the top-k solver's largest relative
  residual squared);
* without one: for EK and the RG the proven bound ``c · min(1, 2ηλ_k/r) · R_k``
  (:func:`truncation_error_bound`); for the spectral bias the change when the tail's mass and
  target power are moved from "unlearnable" to a point at ``λ_k`` (the most learnable the tail
  can be), which brackets the truth.

The RG also needs its cutoff inside the held modes (``η < eta_max``): elsewhere the estimate is
NaN and the η is not valid. :func:`truncation_valid` says where the estimate is within ``rtol``
of the curve (default 1e-3), :func:`truncation_message` says it in words and
:func:`check_truncation` warns with it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._typing import Array, ArrayLike
from rgjax._validate import check_finite, concrete, warn
from rgjax.rg import as_eta, check_inputs, cutoff_traced, effective_ridge_traced, eta_max
from rgjax.spectrum import Spectrum
from rgjax.tail import TailMeasure, with_probe_weights
from rgjax.theory import curve_traced

__all__ = [
    "THEORIES",
    "DEFAULT_RTOL",
    "truncation_error",
    "truncation_error_bound",
    "truncation_valid",
    "truncation_message",
    "check_truncation",
]

#: The curves an estimate is given for (``dof_correction`` selects the corrected RG).
THEORIES = ("rg", "ek", "spectral_bias")
#: :func:`truncation_valid`'s default relative tolerance.
DEFAULT_RTOL = 1e-3
#: Round-off floor of an estimate, in units of ``ε √k`` times the curve.
_ROUNDOFF = 64.0
#: Jackknife standard errors added to the spectral bias's estimate (its probes are random).
_JACKKNIFE_SE = 3.0


def _check_theory(theory: object) -> str:
    if theory not in THEORIES:
        raise ValueError(f"`theory` must be one of {THEORIES}; got {theory!r}.")
    return str(theory)


def _check_rtol(rtol: object) -> None:
    if rtol is not None and (isinstance(rtol, bool) or not isinstance(rtol, (int, float))
                             or not rtol > 0):
        raise ValueError(f"`rtol` must be a positive number or None; got {rtol!r}.")
    if rtol is not None:
        check_finite(rtol, "rtol")


def truncation_error(
    spec: Spectrum,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    *,
    theory: str = "rg",
    dof_correction: bool = False,
) -> Array:
    """Estimated absolute error of ``theory``'s curve from a truncated spectrum, per η.

    Args:
      spec: the spectrum (a full one has error 0).
      eta: training-set sizes.
      sigma2: bare ridge.
      threshold: the RG's learnability threshold T.
      theory: ``"rg"``, ``"ek"`` or ``"spectral_bias"``.
      dof_correction: the corrected RG of docs/theory.md §3b (``theory="rg"``).

    Returns:
      ``eta``'s shape, in units of the MSE; NaN where the RG does not apply or its cutoff
      leaves the held modes.
    """
    check_inputs(spec, eta, sigma2, threshold)
    theory = _check_theory(theory)
    return _estimates(spec, eta, sigma2, threshold, theory, bool(dof_correction))[1]


def truncation_error_bound(
    spec: Spectrum,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    *,
    theory: str = "rg",
    dof_correction: bool = False,
) -> Array:
    """Proven bound on the error of EK or the RG when the modes beyond the held ``k`` count as
    unlearnable (a spectrum without a tail measure; docs/theory.md §8).

    ``0 ≤ MSE(truncated) − MSE(full) ≤ c · min(1, 2ηλ_k/r) · R_k`` with ``r`` the ridge (σ², or
    σ²_eff / σ²_dof with ``c = 1/(1 − κ*/η)``) and ``R_k`` the residual power. NaN where the RG
    does not apply or its cutoff leaves the held modes.
    """
    check_inputs(spec, eta, sigma2, threshold)
    if _check_theory(theory) == "spectral_bias":
        raise ValueError("`theory`='spectral_bias' has no bound (it covers the EK-type sums, "
                         "'rg' and 'ek'); use its estimate: truncation_error(..., "
                         "theory='spectral_bias').")
    return _bound(spec, eta, sigma2, threshold, theory, bool(dof_correction))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _bound(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, threshold: ArrayLike,
           theory: str, dof_correction: bool) -> Array:
    eta = as_eta(eta, spec.eigenvalues.dtype)
    bound, ok = _bound_traced(spec, eta, sigma2, threshold, theory, dof_correction)
    return jnp.where(ok, bound, jnp.nan)


def _bound_traced(spec: Spectrum, eta: Array, sigma2: ArrayLike, threshold: ArrayLike,
                  theory: str, dof_correction: bool) -> tuple[Array, Array]:
    if theory == "ek":
        ridge, factor = jnp.broadcast_to(jnp.asarray(sigma2, eta.dtype), eta.shape), 1.0
        ok = jnp.ones(eta.shape, bool)
    else:
        ridge, factor, ok = effective_ridge_traced(spec, eta, sigma2, threshold, dof_correction,
                                                   None)
        ok = ok & _inside(spec, eta, sigma2, threshold, dof_correction)
    x = eta * spec.eigenvalues[-1] / ridge
    return factor * jnp.minimum(1.0, 2.0 * x) * spec.residual_power, ok


def _inside(spec: Spectrum, eta: Array, sigma2: ArrayLike, threshold: ArrayLike,
            dof_correction: bool) -> Array:
    """True where some held mode falls below ``T``: the cutoff lies inside the held modes."""
    return cutoff_traced(spec, eta, sigma2, threshold, dof_correction).kappa < spec.n_modes


@functools.partial(jax.jit, static_argnums=(4, 5))
def _estimates(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, threshold: ArrayLike,
               theory: str, dof_correction: bool) -> tuple[Array, Array, Array]:
    """``(curve, error estimate, cutoff inside the held modes)``, each ``eta``'s shape."""
    eta = as_eta(eta, spec.eigenvalues.dtype)

    def curve(tail: TailMeasure | None) -> Array:
        return curve_traced(spec, eta, sigma2, threshold, theory, dof_correction, tail)

    value = curve(None)
    inside = jnp.ones(eta.shape, bool)
    if not spec.is_truncated:
        error = jnp.zeros(eta.shape, value.dtype)
    elif spec.tail is None and theory != "spectral_bias":
        error, _ = _bound_traced(spec, eta, sigma2, threshold, theory, dof_correction)
    elif spec.tail is None:
        error = jnp.abs(curve(_point_tail(spec)) - value)
    else:
        error = jnp.abs(curve(spec.tail.coarse()) - value)
        if theory == "spectral_bias" and spec.tail.n_probes > 1:
            error = error + _JACKKNIFE_SE * _jackknife_se(curve, spec.tail)
            error = error + _power2_error(curve, spec.tail, value)
        error = jnp.maximum(error, _floor(spec, value.dtype) * jnp.abs(value))
    if theory == "rg":
        _, _, applicable = effective_ridge_traced(spec, eta, sigma2, threshold, dof_correction,
                                                  None)
        if spec.is_truncated:
            inside = _inside(spec, eta, sigma2, threshold, dof_correction)
        value = jnp.where(applicable, value, jnp.nan)
        error = jnp.where(applicable & inside, error, jnp.nan)
    return value, error, inside


def _floor(spec: Spectrum, dtype: jnp.dtype) -> Array:
    """Relative error of the held eigenpairs themselves: round-off of sums over k modes, and for
    a top-k solve its residuals (second order: ``10 max(‖Kv − wv‖/w)²``)."""
    floor = jnp.asarray(_ROUNDOFF * np.finfo(dtype).eps * np.sqrt(spec.n_modes), dtype)
    if spec.solver is not None:
        res = jnp.max(spec.solver.relative_residuals)
        floor = jnp.maximum(floor, 10.0 * jnp.where(jnp.isfinite(res), res, 0.0) ** 2)
    return floor


def _point_tail(spec: Spectrum) -> TailMeasure:
    """The tail's mass and target power at one point, ``λ_k`` (the most learnable they can be)."""
    lam = spec.eigenvalues[-1:]
    power = spec.residual_power[None]
    ones = jnp.ones((1, 1), lam.dtype)  # rescaled to the tail mass by the theories
    zero, nan = jnp.zeros((1,), lam.dtype), jnp.asarray(jnp.nan, lam.dtype)
    return TailMeasure(lam, power, lam, power, lam, ones, zero, lam, ones, zero, nan, nan, 1)


def _power2_error(curve: object, tail: TailMeasure, value: Array) -> Array:
    """The change of the curve when ``power2`` (the tail's second moment that calibrates the
    probes) moves by its round-off."""
    moved = dataclasses.replace(tail, power2=tail.power2 + tail.power2_error)
    error = jnp.abs(curve(moved) - value)  # type: ignore[operator]
    return jnp.where(jnp.isfinite(tail.power2), error, 0.0)


def _jackknife_se(curve: object, tail: TailMeasure) -> Array:
    """Jackknife standard error of ``curve(tail)`` over the tail's probes."""
    p = tail.n_probes
    keep = 1.0 - jnp.eye(p, dtype=tail.probe_weights.dtype)  # row r: every probe but r
    weights = keep[:, :, None] * tail.probe_weights[None] * (p / (p - 1))
    coarse = keep[:, :, None] * tail.probe_weights_coarse[None] * (p / (p - 1))

    def leave_out(w: Array, wc: Array) -> Array:
        return curve(with_probe_weights(tail, w, wc))  # type: ignore[operator]

    values = jax.vmap(leave_out)(weights, coarse)  # (p, ...) one curve per left-out probe
    mean = jnp.mean(values, axis=0)
    return jnp.sqrt((p - 1) / p * jnp.sum((values - mean) ** 2, axis=0))


def truncation_valid(
    spec: Spectrum,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    rtol: float | None = DEFAULT_RTOL,
    *,
    theory: str = "rg",
    dof_correction: bool = False,
) -> Array:
    """Where a truncated spectrum's curve can be trusted to ``rtol`` (bool, ``eta``'s shape).

    True where :func:`truncation_error` is at most ``rtol`` times the curve and, for the RG,
    the cutoff ``κ*(η, T)`` lies inside the held modes (``η < eta_max``). ``rtol=None`` checks
    the cutoff only. A full spectrum is valid everywhere: whether the RG applies at all in a
    finite pool is :func:`rgjax.rg.cutoff`'s ``applicable`` (docs/theory.md §3).
    """
    check_inputs(spec, eta, sigma2, threshold)
    theory = _check_theory(theory)
    _check_rtol(rtol)
    if not spec.is_truncated:
        return jnp.asarray(np.ones(np.shape(eta), bool))
    value, error, inside = _estimates(spec, eta, sigma2, threshold, theory, bool(dof_correction))
    return _valid(value, error, inside, None if rtol is None else float(rtol))


@jax.jit
def _valid(value: Array, error: Array, inside: Array, rtol: float | None) -> Array:
    if rtol is None:
        return inside
    # NaN curves (the RG where it does not apply) are not a truncation problem: not flagged.
    return inside & ~(error > rtol * jnp.abs(value))


def truncation_message(
    spec: Spectrum,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    rtol: float | None = DEFAULT_RTOL,
    *,
    theory: str = "rg",
    dof_correction: bool = False,
) -> str | None:
    """A sentence saying for which ``η`` the held ``k`` modes are too few, or None if they suffice.

    Concrete inputs only (returns None under ``jit``).
    """
    check_inputs(spec, eta, sigma2, threshold)
    theory = _check_theory(theory)
    _check_rtol(rtol)
    if not spec.is_truncated:
        return None
    arrays = _estimates(spec, eta, sigma2, threshold, theory, bool(dof_correction))  # once
    valid = concrete(_valid(*arrays, None if rtol is None else float(rtol)))
    if valid is None or bool(np.all(valid)):
        return None
    value, error, inside = (np.broadcast_to(np.asarray(a), valid.shape) for a in arrays)
    eta_np = np.broadcast_to(np.asarray(eta, float), valid.shape)
    reasons = []
    if theory == "rg" and not np.all(inside):
        e_max = float(eta_max(spec, sigma2, threshold, dof_correction=dof_correction))
        reasons.append(f"the RG cutoff κ* lies beyond the computed modes from η_max = "
                       f"{e_max:.4g} on")
    if rtol is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = error / np.abs(value)
        over = np.isfinite(rel) & (rel > rtol)
        if np.any(over):
            reasons.append(f"the modes beyond k may change the {theory} curve by up to "
                           f"{float(np.max(rel[over])):.2g} (relative; rtol={rtol:g}) from "
                           f"η = {float(np.min(eta_np[over])):.4g} on")
    first_bad = float(np.min(eta_np[~valid]))
    s2, t = float(np.min(np.asarray(sigma2))), float(np.min(np.asarray(threshold)))
    how = ("a tail measure" if spec.tail is not None
           else "no tail measure (the modes beyond k count as unlearnable)")
    return (f"k={spec.n_modes} modes (of N={spec.n_pool}, {how}) are too few for "
            f"η ≥ {first_bad:.4g} at σ²={s2:.3g} (T={t:g}): {'; '.join(reasons)}. Pass a larger "
            "k to from_gram(..., method='topk') or from_matvec (or more tail_steps / "
            "tail_probes), or keep η below that value.")


def check_truncation(
    spec: Spectrum,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    rtol: float | None = DEFAULT_RTOL,
    *,
    theory: str = "rg",
    dof_correction: bool = False,
) -> Array:
    """:func:`truncation_valid`, and an :class:`~rgjax.RgjaxWarning` with
    :func:`truncation_message` when some ``η`` is not valid."""
    msg = truncation_message(spec, eta, sigma2, threshold, rtol, theory=theory,
                             dof_correction=dof_correction)
    if msg is not None:
        warn(msg)
    return truncation_valid(spec, eta, sigma2, threshold, rtol, theory=theory,
                            dof_correction=dof_correction)
