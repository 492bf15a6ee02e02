"""Learning-curve predictions: EK, the paper's RG, rgjax's corrected RG, spectral bias
(docs/theory.md §§2–4).

The spectrum forms take a :class:`~rgjax.spectrum.Spectrum`, a scalar or array ``eta`` (training-set
sizes) and the bare ridge ``sigma2``; they return arrays of ``eta``'s shape, are jit-able and
differentiable. Modes beyond a truncated spectrum enter through its ``trace`` and ``target_power``
and are treated as unlearnable (``ηλ_k ≪`` ridge), which is exact in the regime the RG describes.

* :func:`mse_ek` — equivalent-kernel limit, bare ridge: ``Σ_k (σ²/(σ² + ηλ_k))² y_k²``.
* :func:`mse_rg` — EK with the renormalized ridge ``σ²_eff(η)`` (the paper's RG, Fig. 1);
  ``dof_correction=True`` gives rgjax's learned-mode correction (docs/theory.md §3b, not in the
  paper).
* :func:`mse_spectral_bias` — Canatar–Bordelon–Pehlevan ``E_g`` (= eigenlearning, Simon et al.).
* :func:`kappa`, :func:`eigenlearning` — the self-consistent ridge ``κ`` and the eigenlearning
  quantities (learnabilities, ``E_0``).
* :func:`mse_rg_resolvent`, :func:`mse_spectral_bias_resolvent`, :func:`mse_from_gram` — the same
  values from a Gram matrix ``K`` and targets ``y`` without eigenvectors (docs/theory.md §4,
  resolvent forms), whose gradients with respect to ``K`` are exact on every spectrum: the
  ``y``-dependent term is a Cholesky solve, everything else a symmetric function of the
  eigenvalues. :mod:`rgjax.optimize` differentiates through them.

How the work is organised (each theory costs a few passes over the ``(η × modes)`` array, and
the passes are what is worth counting; :mod:`rgjax._passes` lays a pass out):

* EK and RG: one pass each (two η share each division). The hard cutoff ``κ*(η, T)`` does not
  need the ``(η × modes)`` learnability array: ``L_k(η) < T`` exactly when
  ``η < η_k = T(σ² + t_k)/((1 − T)λ_k)`` (plus ``k − 1`` with the dof correction, see
  :func:`rgjax.rg.eta_max`), so the first mode below ``T`` is a ``searchsorted`` of ``η`` in the
  running maximum of ``η_k``. This is the rule of
  :func:`rgjax.rg.cutoff` rearranged; the two can differ only when ``η`` lies within rounding of
  some ``η_k`` (a tie of ``L_k`` with ``T``).
* Spectral bias: in ``s = κ/η`` the self-consistency equation reads
  ``η(s) = Σ_k λ_k/(λ_k + s) + (σ² + tail)/s``, explicit and decreasing in ``s``. For 32 or more
  ``η`` a grid of 64 values of ``s``, with ``log η`` and its first two derivatives in ``log s``,
  gives every root to ~1e-6 by quintic Hermite interpolation of the inverse function. Each
  iteration of the safeguarded Newton/bisection solver (in ``log s``; bracket
  ``κ ∈ [σ² + tail, σ² + trace]``) is one pass that returns the moments ``Σ_k λ_k/(λ_k + s)^p``
  and ``Σ_k y_k²/(λ_k + s)^p``; from them the root, ``γ`` and the bias at ``s + δ`` follow by the
  geometric series of ``1/(λ + s + δ)``, exact to rounding once ``|δ|/s ≤ (ε/4)^{1/3}``. One pass
  usually suffices. Derivatives come from the implicit-function theorem (``jax.custom_jvp``),
  never from differentiating the iterations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rgjax._passes import LANES, ek_sum, moments, series
from rgjax._pytree import dataclass
from rgjax._typing import Array, ArrayLike
from rgjax._validate import (
    check_eta,
    check_finite,
    check_sigma2,
    check_temperature,
    check_threshold,
    concrete,
)
from rgjax.rg import as_eta, check_inputs, effective_ridge_traced
from rgjax.spectrum import Spectrum, from_gram
from rgjax.tail import TailMeasure

__all__ = [
    "Eigenlearning",
    "mse_ek",
    "mse_rg",
    "mse_spectral_bias",
    "kappa",
    "eigenlearning",
    "OBJECTIVES",
    "PATHS",
    "mse_rg_resolvent",
    "mse_spectral_bias_resolvent",
    "mse_from_gram",
]

_MAX_ITER = 200
_SERIES_ORDER = 2  # δ-series of 1/(λ + s + δ) kept to (δ/s)^2: exact once |δ|/s ≤ (ε/4)^{1/3}
_GRID = 64  # nodes of the initial-guess grid in log s
_GRID_MIN_ETA = 32  # below this many η the grid costs more than the iterations it saves


def mse_ek(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike) -> Array:
    """Equivalent-kernel learning curve with the bare ridge: ``Σ_k (σ²/(σ² + ηλ_k))² y_k²``.

    Returns:
      ``eta``'s shape.
    """
    check_inputs(spec, eta, sigma2)
    return _mse_ek(spec, eta, sigma2)


@jax.jit  # every public theory is one compiled program, also when called eagerly
def _mse_ek(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike) -> Array:
    return _ek(spec, as_eta(eta, spec.eigenvalues.dtype), jnp.asarray(sigma2))


def _ek(spec: Spectrum, eta: Array, ridge: Array, tail: TailMeasure | None = None) -> Array:
    """``Σ_k (r/(r + ηλ_k))² y_k² +`` the tail, as ``ρ/(ρ + λ_k)``, ``ρ = r/η``: one pass.

    The tail is its target-weighted quadrature (``tail``, default ``spec.tail``), or, without
    one, its target power counted as unlearnable.
    """
    rho = ridge / eta
    tail = spec.tail if tail is None else tail
    lam, y2, rest = spec.eigenvalues, spec.target_coefficients**2, spec.residual_power
    if tail is not None:
        # The quadrature carries the whole tail power (Σ weights = ‖y_⊥‖²/N): nothing is left
        # but the round-off of residual_power − Σ weights, which would swamp a tiny EK curve.
        lam, y2 = jnp.concatenate([lam, tail.nodes]), jnp.concatenate([y2, tail.weights])
        rest = jnp.zeros_like(rest)
    out = ek_sum(jnp.ravel(rho), lam, y2)
    return out.reshape(rho.shape) + rest


def mse_rg(
    spec: Spectrum,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    *,
    dof_correction: bool = False,
    temperature: ArrayLike | None = None,
) -> Array:
    """RG learning curve: EK with the renormalized ridge (docs/theory.md §3; §3b with
    ``dof_correction``).

    ``MSE_RG(η) = Σ_k (σ²_eff/(σ²_eff + ηλ_k))² y_k²`` with ``σ²_eff = σ² + t_{κ*(η, T)}``.
    With ``dof_correction=True`` (rgjax's extension, not in the paper):
    ``(1/(1 − κ*/η)) Σ_k (σ²_dof/(σ²_dof + ηλ_k))² y_k²``.

    Args:
      spec: the spectrum.
      eta: scalar or array of training-set sizes.
      sigma2: bare ridge ``σ² > 0``.
      threshold: learnability threshold ``T ∈ (0, 1)`` (default 0.5, the paper's).
      dof_correction: use the learned-mode correction of docs/theory.md §3b.
      temperature: smooth cutoff temperature ``τ`` (None: the hard rule). See
        :func:`rgjax.rg.effective_ridge`.

    Returns:
      ``eta``'s shape; NaN where the hard rule is not applicable (no mode below ``T``; see
      :func:`rgjax.rg.eta_max`).

    Examples:
      >>> from rgjax.spectrum import powerlaw
      >>> from rgjax.theory import mse_rg
      >>> spec = powerlaw(1000, alpha=0.5)
      >>> mse = mse_rg(spec, [10.0, 100.0], 1e-4)
      >>> print([f"{float(m):.4f}" for m in mse])
      ['0.2464', '0.0524']
      >>> print(f"{float(mse_rg(spec, 100.0, 1e-4, dof_correction=True)):.4f}")
      0.1245
    """
    check_inputs(spec, eta, sigma2, threshold)
    check_temperature(temperature)
    return _mse_rg(spec, eta, sigma2, threshold, temperature, dof_correction)


@functools.partial(jax.jit, static_argnums=5)
def _mse_rg(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, threshold: ArrayLike,
            temperature: ArrayLike | None, dof_correction: bool) -> Array:
    eta = as_eta(eta, spec.eigenvalues.dtype)
    ridge, factor, applicable = effective_ridge_traced(
        spec, eta, sigma2, threshold, dof_correction, temperature
    )
    return jnp.where(applicable, factor * _ek(spec, eta, ridge), jnp.nan)


# ---------------------------------------------------------------------------------------------
# Spectral bias / eigenlearning: the self-consistent κ
# ---------------------------------------------------------------------------------------------


def _grid_start(log_eta: Array, lo: Array, hi: Array, c: Array, lam: Array,
                lamw: Array | None) -> Array:
    """Initial ``log s`` for every η from a grid of ``η(s)`` (quintic Hermite, inverse function).

    ``g(u) = log η(e^u)`` is explicit and strictly decreasing; its first two derivatives come from
    the moments ``M_1..M_3``. The inverse ``u(g)`` has ``u' = 1/g'`` and ``u'' = −g''/g'^3``.
    """
    nodes = jnp.linspace(jnp.min(lo), jnp.max(hi), _GRID)
    s = jnp.exp(nodes)
    m1, m2, m3 = moments(s, lam, None, 3, 0, lamw)
    e = m1 + c / s
    e1 = -s * m2 - c / s  # dη/du
    e2 = -s * m2 + 2.0 * s * s * m3 + c / s  # d²η/du²
    g = jnp.log(e)
    g1 = e1 / e
    g2 = e2 / e - g1 * g1
    d1 = 1.0 / g1
    d2 = -g2 / g1**3
    j = jnp.searchsorted(-g, -log_eta, side="left", method="compare_all")  # 64 nodes: compare all
    j = jnp.clip(j - 1, 0, _GRID - 2)
    x0, x1 = g[j], g[j + 1]
    h = x1 - x0
    t = jnp.clip((log_eta - x0) / h, 0.0, 1.0)
    t2, t3 = t * t, t * t * t
    t4, t5 = t3 * t, t3 * t2
    h0 = 1 - 10 * t3 + 15 * t4 - 6 * t5
    h1 = t - 6 * t3 + 8 * t4 - 3 * t5
    h2 = 0.5 * (t2 - 3 * t3 + 3 * t4 - t5)
    h3 = 0.5 * (t3 - 2 * t4 + t5)
    h4 = -4 * t3 + 7 * t4 - 3 * t5
    h5 = 10 * t3 - 15 * t4 + 6 * t5
    u0 = (h0 * nodes[j] + h1 * h * d1[j] + h2 * h * h * d2[j]
          + h3 * h * h * d2[j + 1] + h4 * h * d1[j + 1] + h5 * nodes[j + 1])
    u0 = jnp.where(jnp.isfinite(u0), u0, 0.5 * (lo + hi))
    return jnp.clip(u0, lo, hi)


@jax.jit  # one compiled program also for eager (un-jitted) calls
def _solve(eta: Array, c: Array, lam: Array, y2: Array | None,
           lamw: Array | None = None) -> tuple[Array, Array, Array]:
    """Root ``s* = κ/η`` of ``η(s) = Σ_k λ_k/(λ_k + s) + c/s`` for each η of the 1-D ``eta``.

    With ``lamw`` the numerators are ``lamw_k`` instead of ``λ_k`` (quadrature nodes of the tail
    count with their weights, docs/theory.md §8).

    Returns ``s*`` and, when ``y2`` is given, ``M_2 = Σ λ/(λ+s*)²`` and ``Y_2 = Σ y²/(λ+s*)²``.
    Safeguarded Newton in ``u = log s`` on ``log η(s) = log η``, bracket
    ``[log(c/η), log((c + Σλ)/η)]`` (κ between the bare ridge plus tail and ``σ² + trace``). Every
    iteration is one pass (:func:`~rgjax._passes.moments`); once the step ``δ`` in ``s`` satisfies
    ``|δ|/s ≤ (ε/(N+2))^{1/(N+1)}`` the series of the moments at ``s + δ`` is exact to rounding,
    so the root is refined on it and the outputs are read off it without another pass.
    """
    order = _SERIES_ORDER
    dtype = eta.dtype
    eps = float(jnp.finfo(dtype).eps)
    series_ok = (eps / (order + 2)) ** (1.0 / (order + 1))  # |δ|/s below this: series exact
    log_eta = jnp.log(eta)
    lo = jnp.log(c / eta)
    hi = jnp.log((c + jnp.sum(lam if lamw is None else lamw)) / eta)
    # Zero modes add nothing to any moment: pad once to whole blocks of LANES, so that every pass
    # in the loop is a single reduce (the loop boundary keeps the padding out of the loop body).
    pad = (0, -lam.shape[0] % LANES)
    lam = jnp.pad(lam, pad)
    y2 = None if y2 is None else jnp.pad(y2, pad)
    lamw = None if lamw is None else jnp.pad(lamw, pad)
    if eta.shape[0] >= _GRID_MIN_ETA:
        u0 = _grid_start(log_eta, lo, hi, c, lam, lamw)
    else:
        u0 = 0.5 * (lo + hi)
    with_y = y2 is not None
    n_lam = order + 2 if with_y else order + 1
    n_y = order + 1 if with_y else 0
    zero = jnp.zeros_like(eta)

    def cond(state):
        it, _, _, _, done, *_ = state
        return (it < _MAX_ITER) & ~jnp.all(done)

    def body(state):
        it, u, a, b, done, s_out, m2_out, y_out = state
        s = jnp.exp(u)
        mom = moments(s, lam, y2, n_lam, n_y, lamw)
        m, ym = mom[:n_lam], mom[n_lam:]
        eta_s = m[0] + c / s
        f = jnp.log(eta_s) - log_eta  # > 0: η(s) too large, the root lies above u
        slope = -(s * m[1] + c / s) / eta_s  # d log η / d log s < 0
        a = jnp.where(f >= 0, u, a)
        b = jnp.where(f <= 0, u, b)
        du = -f / slope
        # Refine δ on the truncated series (exact to rounding when |δ|/s ≤ ρ)
        d = s * jnp.expm1(du)
        for _ in range(3):
            sd = s + d
            p = series(m[: order + 1], d, 1) + c / sd - eta
            dp = -series(m[1 : order + 1], d, 2) - c / (sd * sd)
            d = d - p / dp
        # (|du| small too: far from the root the three series steps need not converge)
        small = (jnp.abs(d) <= series_ok * s) & (jnp.abs(du) <= 1e-2)
        collapsed = (b - a) <= 4.0 * eps * (1.0 + jnp.abs(u))
        d = jnp.where(small, d, 0.0)
        accept = small | collapsed
        new = ~done
        s_out = jnp.where(new, s + d, s_out)
        if with_y:
            m2_out = jnp.where(new, series(m[1 : order + 2], d, 2), m2_out)
            y_out = jnp.where(new, series(ym, d, 2), y_out)
        done = done | accept
        un = u + du
        inside = (un > a) & (un < b) & jnp.isfinite(un)
        un = jnp.where(inside, un, 0.5 * (a + b))
        return it + 1, jnp.where(done, u, un), a, b, done, s_out, m2_out, y_out

    init = (0, u0, lo, hi, jnp.zeros(eta.shape, bool), zero, zero, zero)
    _, _, _, _, _, s, m2, yb = lax.while_loop(cond, body, init)
    return s, m2, yb


def _residual(kap: Array, eta: Array, sigma2: Array, lam: Array, lamw: Array,
              tail: Array) -> Array:
    """``h(κ) = 1 − (σ² + tail)/κ − Σ_k w_k/(ηλ_k + κ)`` per η: increasing in κ, 0 at the root
    (``w_k = λ_k`` for held modes; the tail's quadrature nodes count with their weights)."""
    d = eta[:, None] * lam + kap[:, None]
    return 1.0 - (sigma2 + tail) / kap - jnp.sum(lamw / d, axis=-1)


def _kappa_tangent(kap: Array, primals: tuple[Array, ...], tangents: tuple[Array, ...]) -> Array:
    """Implicit function theorem on ``h(κ; θ) = 0``: ``dκ = −(∂h/∂θ · dθ) / (∂h/∂κ)``."""
    eta, sigma2, lam, lamw, tail = primals
    _, dh = jax.jvp(lambda *p: _residual(kap, *p), primals, tangents)
    d = eta[:, None] * lam + kap[:, None]
    dh_dk = (sigma2 + tail) / kap**2 + jnp.sum(lamw / d**2, axis=-1)  # > 0
    return -dh / dh_dk


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _kappa_core(weighted: bool, eta: Array, sigma2: Array, lam: Array, lamw: Array,
                tail: Array) -> Array:
    """κ for each η of the 1-D ``eta`` (``lamw`` used only when ``weighted``; else ``= lam``)."""
    s, _, _ = _solve(eta, sigma2 + tail, lam, None, lamw if weighted else None)
    return eta * s


@_kappa_core.defjvp
def _kappa_core_jvp(weighted: bool, primals: tuple[Array, ...],
                    tangents: tuple[Array, ...]) -> tuple[Array, Array]:
    kap = _kappa_core(weighted, *primals)
    return kap, _kappa_tangent(kap, primals, tangents)


def _sb_explicit(
    kap: Array, eta: Array, lam: Array, lamw: Array, y2: Array, resid: Array
) -> tuple[Array, Array]:
    """``γ = Σ ηw_kλ_k/(ηλ_k + κ)²`` and the bias ``Σ κ²y²/(ηλ + κ)² + resid`` at a given κ."""
    d = eta[:, None] * lam + kap[:, None]
    gamma = jnp.sum(eta[:, None] * lamw * lam / d**2, axis=-1)
    bias = jnp.sum(y2 * (kap[:, None] / d) ** 2, axis=-1) + resid
    return gamma, bias


_Four = tuple[Array, Array, Array, Array]


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _sb_core(
    weighted: bool, eta: Array, sigma2: Array, lam: Array, lamw: Array, y2: Array, tail: Array,
    resid: Array
) -> _Four:
    """``(κ, γ, 1 − γ, bias)`` of the spectral-bias theory for each η of the 1-D ``eta``.

    ``1 − γ = (c/s + s M_2)/η`` with ``c = σ² + tail``, from ``η − Σ L_k² = c/s + Σ L_k(1 − L_k)``
    at the root: a sum of positive terms, free of the cancellation in ``1 − Σ L_k²/η``.
    """
    c = sigma2 + tail
    s, m2, yb = _solve(eta, c, lam, y2, lamw if weighted else None)
    omg = (c / s + s * m2) / eta
    return eta * s, 1.0 - omg, omg, s * s * yb + resid


@_sb_core.defjvp
def _sb_core_jvp(
    weighted: bool, primals: tuple[Array, ...], tangents: tuple[Array, ...]
) -> tuple[_Four, _Four]:
    eta, sigma2, lam, lamw, y2, tail, resid = primals
    d_eta, d_s2, d_lam, d_lamw, d_y2, d_tail, d_resid = tangents
    out = _sb_core(weighted, *primals)
    kap = out[0]
    dk = _kappa_tangent(kap, (eta, sigma2, lam, lamw, tail),
                        (d_eta, d_s2, d_lam, d_lamw, d_tail))
    _, (dg, db) = jax.jvp(
        _sb_explicit, (kap, eta, lam, lamw, y2, resid), (dk, d_eta, d_lam, d_lamw, d_y2, d_resid)
    )
    return out, (dk, dg, -dg, db)


def _flat(spec: Spectrum, eta: Array, sigma2: ArrayLike) -> tuple[Array, Array]:
    return jnp.ravel(eta), jnp.asarray(sigma2, spec.eigenvalues.dtype)


def _modes(spec: Spectrum, tail: TailMeasure | None) -> tuple[Array, Array, Array, Array, Array]:
    """``(λ, w, y², tail mass, residual power)`` of the spectral-bias sums: the held modes, then
    the tail's quadrature nodes as modes of fractional weight (docs/theory.md §8).

    Target-weighted nodes carry ``y²`` and no ``w``; probe nodes carry ``w`` (their unweighted
    weight times ``λ``, see :func:`_tail_weights`) and no ``y²``. The quadratures carry the whole
    tail mass and power: no unlearnable remainder is left, except the mass when the tail has no
    probe weight at all.
    """
    lam, y2 = spec.eigenvalues, spec.target_coefficients**2
    if tail is None:
        return lam, lam, y2, spec.tail_mass, spec.residual_power
    weight, left = _tail_weights(tail, spec.tail_mass)
    pn = tail.probe_nodes
    return (jnp.concatenate([lam, tail.nodes, pn]),
            jnp.concatenate([lam, jnp.zeros_like(tail.nodes), weight * pn]),
            jnp.concatenate([y2, tail.weights, jnp.zeros_like(pn)]), left, jnp.zeros_like(left))


def _tail_weights(tail: TailMeasure, mass: Array) -> tuple[Array, Array]:
    """Unweighted weight of each tail node, and the mass left over (docs/theory.md §8).

    Converged eigenpairs count once (``exact``). The probes' weights ``s_i`` are calibrated to
    ``s_i (a + b θ_i)`` so that the stochastic nodes reproduce the exact rest of the tail's
    first moment (``mass − Σ_exact θ``) and second moment (``power2 − Σ_exact θ²``): the parts of
    every unweighted sum that are linear and quadratic in λ are then exact, and the probes
    only estimate the rest. Without ``power2`` (matrix-free), or where the calibrated weights
    would not all be positive, ``b = 0``: a ratio estimator of the first moment alone.
    """
    theta, ex = tail.probe_nodes, tail.exact
    s = (1.0 - ex) * jnp.sum(tail.probe_weights, axis=0)
    rest1 = jnp.maximum(mass - jnp.sum(ex * theta), 0.0)
    rest2 = jnp.maximum(tail.power2 - jnp.sum(ex * theta**2), 0.0)
    m1, m2, m3 = (jnp.sum(s * theta**j) for j in (1, 2, 3))
    det = m1 * m3 - m2 * m2  # ≥ 0 (Cauchy–Schwarz); 0 when the probes sit on one node
    ok = jnp.isfinite(tail.power2) & (det > 1e-12 * m1 * m3)
    safe = jnp.where(ok, det, 1.0)
    a = jnp.where(ok, (rest1 * m3 - rest2 * m2) / safe, 0.0)
    b = jnp.where(ok, (m1 * rest2 - m2 * rest1) / safe, 0.0)
    ok = ok & jnp.all((a + b * theta >= 0.0) | (s <= 0.0))
    ratio = jnp.where(m1 > 0, rest1 / jnp.where(m1 > 0, m1, 1.0), 0.0)
    factor = jnp.where(ok, a + b * theta, ratio)
    return ex + s * factor, jnp.where(m1 > 0, 0.0, rest1)


def kappa_traced(spec: Spectrum, eta: Array, sigma2: ArrayLike,
                 tail: TailMeasure | None = None) -> Array:
    """Unvalidated, traceable core of :func:`kappa` (``eta`` already an array; ``tail``
    replaces ``spec.tail`` when given)."""
    flat, sigma2 = _flat(spec, eta, sigma2)
    tail = spec.tail if tail is None else tail
    lam, lamw, _, mass, _ = _modes(spec, tail)
    return _kappa_core(tail is not None, flat, sigma2, lam, lamw, mass).reshape(eta.shape)


def _spectral_bias(spec: Spectrum, eta: Array, sigma2: ArrayLike,
                   tail: TailMeasure | None = None) -> tuple[Array, ...]:
    """``(κ, γ, 1 − γ, bias)``, each of ``eta``'s shape."""
    flat, sigma2 = _flat(spec, eta, sigma2)
    tail = spec.tail if tail is None else tail
    out = _sb_core(tail is not None, flat, sigma2, *_modes(spec, tail))
    return tuple(o.reshape(eta.shape) for o in out)


def kappa(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike) -> Array:
    """Self-consistent ridge ``κ(η)`` of the spectral-bias theory (docs/theory.md §4).

    Unique positive root of ``κ = σ² + κ Σ_k λ_k/(ηλ_k + κ)``; modes beyond a truncated spectrum
    add their mass (``≈ λ_k`` each, as ``ηλ_k ≪ κ``). Differentiable by implicit differentiation.

    Returns:
      ``eta``'s shape.
    """
    check_inputs(spec, eta, sigma2)
    return _kappa(spec, eta, sigma2)


@jax.jit
def _kappa(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike) -> Array:
    return kappa_traced(spec, as_eta(eta, spec.eigenvalues.dtype), sigma2)


@dataclass(eq=False)
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

    kappa: Array
    kappa_s: Array
    learnabilities: Array
    e0: Array
    mse: Array


def eigenlearning(
    spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, noise: ArrayLike = 0.0
) -> Eigenlearning:
    """Eigenlearning form of the spectral-bias theory (docs/theory.md §4).

    Conservation law: ``Σ_k L_k + (σ² + tail)/κ_S = η``.

    Args:
      noise: label-noise variance ``ε²`` (0 for clean labels).
    """
    check_inputs(spec, eta, sigma2)
    check_noise(noise, "spectral_bias")
    return _eigenlearning(spec, eta, sigma2, noise)


@jax.jit
def _eigenlearning(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike,
                   noise: ArrayLike) -> Eigenlearning:
    eta = as_eta(eta, spec.eigenvalues.dtype)
    kap, _, one_minus_gamma, bias = _spectral_bias(spec, eta, sigma2)
    ks = kap / eta
    lk = spec.eigenvalues / (spec.eigenvalues + ks[..., None])
    e0 = 1.0 / one_minus_gamma  # = η/(η − Σ_k L_k²)
    # bias = Σ_k (1 − L_k)² y_k² + residual power, from the solver (1 − L_k = κ_S/(λ_k + κ_S))
    mse = e0 * (bias + noise)
    return Eigenlearning(kappa=kap, kappa_s=ks, learnabilities=lk, e0=e0, mse=mse)


def mse_spectral_bias(
    spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike, noise: ArrayLike = 0.0
) -> Array:
    """Spectral-bias generalisation error ``E_g(η)`` (Canatar, Bordelon & Pehlevan 2021).

    ``γ = Σ_k ηλ_k²/(ηλ_k + κ)²`` and
    ``E_g = (1/(1 − γ)) [Σ_k κ² y_k²/(ηλ_k + κ)² + ε² γ]`` — the error against the clean target,
    which is what the pool MSE of docs/theory.md §2 measures.

    Args:
      noise: label-noise variance ``ε²`` on the training labels.

    Returns:
      ``eta``'s shape.

    Examples:
      >>> from rgjax.spectrum import from_eigenvalues
      >>> from rgjax.theory import mse_spectral_bias
      >>> spec = from_eigenvalues([0.5, 0.3, 0.2], [0.6, 0.0, 0.8])
      >>> print(f"{float(mse_spectral_bias(spec, 2.0, 0.1)):.4f}")
      0.4533
    """
    check_inputs(spec, eta, sigma2)
    check_noise(noise, "spectral_bias")
    return _mse_spectral_bias(spec, eta, sigma2, noise)


@jax.jit
def _mse_spectral_bias(spec: Spectrum, eta: ArrayLike, sigma2: ArrayLike,
                       noise: ArrayLike) -> Array:
    eta = as_eta(eta, spec.eigenvalues.dtype)
    _, gamma, one_minus_gamma, bias = _spectral_bias(spec, eta, sigma2)
    return (bias + noise * gamma) / one_minus_gamma


def curve_traced(spec: Spectrum, eta: Array, sigma2: ArrayLike, threshold: ArrayLike,
                 theory: str, dof_correction: bool, tail: TailMeasure | None) -> Array:
    """One theory's curve without checks or NaN masking (traceable; ``eta`` an array), with
    ``tail`` in place of ``spec.tail`` (for error estimates; ``None``: the spectrum's own).

    ``theory``: ``"ek"`` (σ² the ridge), ``"rg"`` (hard cutoff, ``dof_correction`` as in
    :func:`mse_rg`) or ``"spectral_bias"``.
    """
    if theory == "ek":
        return _ek(spec, eta, jnp.asarray(sigma2, eta.dtype), tail)
    if theory == "spectral_bias":
        _, _, one_minus_gamma, bias = _spectral_bias(spec, eta, sigma2, tail)
        return bias / one_minus_gamma
    ridge, factor, _ = effective_ridge_traced(spec, eta, sigma2, threshold, dof_correction, None)
    return factor * _ek(spec, eta, ridge, tail)


# ---------------------------------------------------------------------------------------------
# Resolvent (eigenvector-free) forms: the theories from a Gram matrix, exact gradients in K
# ---------------------------------------------------------------------------------------------

#: Objectives: the paper's RG, rgjax's RG with the learned-mode correction (§3b), spectral bias.
OBJECTIVES = ("rg", "rg_dof", "spectral_bias")
#: Gradient paths of :func:`mse_from_gram`: no eigenvectors, or through ``from_gram``'s.
PATHS = ("resolvent", "eigen")


def check_objective(objective: Any) -> str:
    """``objective`` if it is one of :data:`OBJECTIVES`, else ``ValueError``."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown `objective` {objective!r}; choose one of {OBJECTIVES}.")
    return objective


def check_path(path: Any) -> str:
    """``path`` if it is one of :data:`PATHS`, else ``ValueError``."""
    if path not in PATHS:
        raise ValueError(f"unknown gradient `path` {path!r}; choose one of {PATHS}.")
    return path


def check_noise(noise: ArrayLike, objective: str) -> None:
    """Label noise ε² must be a finite scalar ≥ 0, and > 0 only for the spectral-bias objective."""
    a = concrete(noise)
    if a is None:
        return
    if a.ndim != 0 or not np.isfinite(a) or a < 0:
        raise ValueError(
            f"`noise` (label-noise variance ε²) must be a finite scalar >= 0; got {a!r}."
        )
    if a > 0 and objective != "spectral_bias":
        raise ValueError(
            "`noise` > 0 enters only the spectral-bias theory; the RG objectives have no "
            "label-noise term. Use objective='spectral_bias' or noise=0."
        )


def _resolvent_error(K: Array, y: Array, eta: Array, ridge: Array) -> Array:
    """``Σ_k (r/(r + ηλ_k))² y_k² = r² yᵀ(r I + ηK/N)⁻² y / N`` by one Cholesky solve.

    ``K``: ``(N, N)``; ``y``: ``(N,)``; scalar ``eta`` and ``ridge``. Exact derivatives for any K
    (no eigenvectors involved).
    """
    n = K.shape[0]
    m = ridge * jnp.eye(n, dtype=K.dtype) + (eta / n) * K
    z = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(m, lower=True), y)
    return ridge**2 * jnp.dot(z, z) / n


def _over_eta(fn: Callable[[Array], Array], eta: Array) -> Array:
    """Apply a scalar-η function to every entry of ``eta`` (vmapped), keeping ``eta``'s shape."""
    return jax.vmap(fn)(jnp.ravel(eta)).reshape(jnp.shape(eta))


def _symmetric(K: Array) -> Array:
    # Gram builders are symmetric to round-off; exact symmetry keeps Cholesky and eigh consistent.
    return 0.5 * (K + K.T)


def _rg_resolvent(K: Array, y: Array, eta: Array, sigma2: ArrayLike, threshold: ArrayLike,
                  temperature: ArrayLike | None, dof_correction: bool) -> Array:
    spec = from_gram(K, y)  # only the eigenvalues are used: their derivative is exact

    def one(e: Array) -> Array:
        ridge, factor, applicable = effective_ridge_traced(
            spec, e, sigma2, threshold, dof_correction, temperature
        )
        err = factor * _resolvent_error(K, y, e, ridge)
        return jnp.where(applicable, err, jnp.nan)

    return _over_eta(one, eta)


def _sb_resolvent(K: Array, y: Array, eta: Array, sigma2: ArrayLike, noise: ArrayLike) -> Array:
    spec = from_gram(K, y)
    lam = spec.eigenvalues

    def one(e: Array) -> Array:
        # κ and γ are symmetric functions of the eigenvalues; only the bias needs y (resolvent).
        kap = kappa_traced(spec, e, sigma2)
        gamma = jnp.sum(e * lam**2 / (e * lam + kap) ** 2)
        bias = _resolvent_error(K, y, e / kap, jnp.ones((), K.dtype))  # κ²yᵀ(κ+ηA)⁻²y/N
        return (bias + noise * gamma) / (1.0 - gamma)

    return _over_eta(one, eta)


def _validate_gram_call(K: ArrayLike, y: ArrayLike, eta: ArrayLike, sigma2: ArrayLike,
                        threshold: ArrayLike | None = None) -> None:
    if jnp.ndim(K) != 2 or jnp.shape(K)[0] != jnp.shape(K)[1]:
        raise ValueError(f"`K` must be a square (N, N) Gram matrix; got shape {jnp.shape(K)}.")
    if jnp.shape(y) != (jnp.shape(K)[0],):
        raise ValueError(f"`y` must have shape (N,) = ({jnp.shape(K)[0]},); got {jnp.shape(y)}.")
    check_finite(K, "K")
    check_finite(y, "y")
    check_eta(eta)
    check_sigma2(sigma2)
    if jnp.ndim(sigma2) != 0:
        raise ValueError(f"`sigma2` must be a scalar; got shape {jnp.shape(sigma2)}.")
    if threshold is not None:
        check_threshold(threshold)


def mse_rg_resolvent(
    K: ArrayLike,
    y: ArrayLike,
    eta: ArrayLike,
    sigma2: ArrayLike,
    threshold: ArrayLike = 0.5,
    *,
    dof_correction: bool = False,
    temperature: ArrayLike | None = None,
) -> Array:
    """RG learning curve from the Gram matrix without eigenvector derivatives.

    Same value as ``mse_rg(from_gram(K, y), eta, sigma2, threshold, ...)``: ``σ²_eff`` (or
    ``σ²_dof`` and the ``1/(1 − κ*/η)`` factor) from the eigenvalues of ``K/N``, and
    ``Σ_k (r/(r + ηλ_k))² y_k² = r² yᵀ(r I + ηK/N)⁻² y / N`` by a Cholesky solve.

    Args:
      K: ``(N, N)`` symmetric PSD Gram matrix.
      y: ``(N,)`` targets.
      eta: scalar or array of training-set sizes (one solve per entry).
      sigma2: bare ridge > 0 (scalar).
      threshold: ``T ∈ (0, 1)``.
      dof_correction: rgjax's learned-mode correction (docs/theory.md §3b).
      temperature: smooth-cutoff τ, or None for the hard threshold.

    Returns:
      ``eta``'s shape; NaN where the hard rule is not applicable.
    """
    _validate_gram_call(K, y, eta, sigma2, threshold)
    check_temperature(temperature)
    K = jnp.asarray(K)
    return _mse_from_gram_jit(
        K, jnp.asarray(y, K.dtype), jnp.asarray(eta, K.dtype), sigma2, threshold,
        1.0 if temperature is None else temperature, 0.0,
        objective="rg_dof" if dof_correction else "rg", path="resolvent",
        hard=temperature is None,
    )


def mse_spectral_bias_resolvent(
    K: ArrayLike, y: ArrayLike, eta: ArrayLike, sigma2: ArrayLike, noise: ArrayLike = 0.0
) -> Array:
    """Spectral-bias ``E_g`` from the Gram matrix without eigenvector derivatives.

    Same value as ``mse_spectral_bias(from_gram(K, y), eta, sigma2, noise)``. κ (the root of
    ``κ = σ² + κ tr((ηK/N + κ I)⁻¹ K/N)``) and γ come from the eigenvalues of ``K/N``; the bias
    ``κ² yᵀ(κ I + ηK/N)⁻² y / N`` from a Cholesky solve. Its gradient is exact on any spectrum,
    degenerate or not.

    Args:
      K: ``(N, N)`` symmetric PSD Gram matrix.
      y: ``(N,)`` targets.
      eta: scalar or array of training-set sizes.
      sigma2: bare ridge > 0 (scalar).
      noise: label-noise variance ``ε² ≥ 0``.

    Returns:
      ``eta``'s shape.
    """
    _validate_gram_call(K, y, eta, sigma2)
    check_noise(noise, "spectral_bias")
    K = jnp.asarray(K)
    return _mse_from_gram_jit(
        K, jnp.asarray(y, K.dtype), jnp.asarray(eta, K.dtype), sigma2, 0.5, 1.0, noise,
        objective="spectral_bias", path="resolvent", hard=False,
    )


def mse_from_gram_traced(K: Array, y: Array, eta: Array, sigma2: ArrayLike, threshold: ArrayLike,
                         temperature: ArrayLike, noise: ArrayLike, *, objective: str, path: str,
                         hard: bool) -> Array:
    """Unvalidated, traceable core of :func:`mse_from_gram`; ``hard`` ignores ``temperature``."""
    temp = None if hard else temperature
    K = _symmetric(K)
    if path == "resolvent":
        if objective == "spectral_bias":
            return _sb_resolvent(K, y, eta, sigma2, noise)
        return _rg_resolvent(K, y, eta, sigma2, threshold, temp, objective == "rg_dof")
    spec = from_gram(K, y)
    if objective == "spectral_bias":
        return mse_spectral_bias(spec, eta, sigma2, noise)
    return mse_rg(spec, eta, sigma2, threshold, dof_correction=objective == "rg_dof",
                  temperature=temp)


# The public entry points share one compiled program per (objective, path, hard): eager calls
# would dispatch the κ while-loop and the eigh derivative op by op.
_mse_from_gram_jit = jax.jit(mse_from_gram_traced, static_argnames=("objective", "path", "hard"))


def mse_from_gram(
    K: ArrayLike,
    y: ArrayLike,
    eta: ArrayLike,
    sigma2: ArrayLike,
    *,
    objective: str = "rg",
    threshold: ArrayLike = 0.5,
    temperature: ArrayLike | None = 0.05,
    noise: ArrayLike = 0.0,
    path: str = "resolvent",
) -> Array:
    """The predicted test MSE of ``objective`` from a Gram matrix, by either gradient ``path``.

    Args:
      K: ``(N, N)`` symmetric PSD Gram matrix.
      y: ``(N,)`` targets.
      eta: scalar or array of training-set sizes.
      sigma2: bare ridge > 0 (scalar).
      objective: one of :data:`OBJECTIVES`.
      threshold: learnability threshold ``T`` of the RG objectives.
      temperature: smooth-cutoff τ of the RG objectives (None: the hard threshold).
      noise: label-noise variance ε² (spectral bias only).
      path: ``"resolvent"`` (no eigenvectors: exact gradients on degenerate spectra) or
        ``"eigen"`` (through :func:`rgjax.spectrum.from_gram`).

    Returns:
      ``eta``'s shape.
    """
    check_objective(objective)
    check_path(path)
    check_temperature(temperature)
    check_noise(noise, objective)
    _validate_gram_call(K, y, eta, sigma2, threshold)
    K = jnp.asarray(K)
    hard = temperature is None and objective != "spectral_bias"  # τ is irrelevant there
    return _mse_from_gram_jit(
        K, jnp.asarray(y, K.dtype), jnp.asarray(eta, K.dtype), sigma2, threshold,
        1.0 if temperature is None else temperature, noise,
        objective=objective, path=path, hard=hard,
    )
