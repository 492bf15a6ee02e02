"""Feature-mode Gaussianity diagnostics (paper Figs. 2 and 5, docs/theory.md §6).

For mode ``k`` the sample ``{φ_k(x_i)}_{i≤N}``, with ``φ_k(x_i) = √N v_k[i]`` (mean square 1 under
the pool measure), is the *feature mode*. The paper's Gaussian-feature RG assumes these samples are
Gaussian; Fig. 2 shows that low modes of real data roughly are, Fig. 5 that high modes are better
described by a Cauchy distribution. This module quantifies both, vectorised over many modes:

* :func:`fit_gaussian`, :func:`fit_cauchy` — maximum-likelihood fits of samples ``(N,)`` or of
  ``m`` modes at once ``(N, m)``. The Cauchy MLE has no closed form: it starts from the median and
  half the inter-quartile range (exact for a Cauchy population) and iterates a safeguarded Newton
  method on the two score equations, falling back to a monotone (PX-)EM step whenever Newton would
  not increase the likelihood. Everything is one jitted, vmapped ``lax.while_loop``.
* :func:`gaussian_loglik`, :func:`cauchy_loglik`, :func:`ks_statistic`, :func:`excess_kurtosis`.
* :func:`mode_diagnostics` — all of the above for chosen modes of a :class:`~rgjax.Spectrum`, as a
  :class:`GaussianityReport`; :func:`gaussianity_sweep` over log-spaced modes; :func:`crossover`
  (where the Cauchy fit takes over for good) and :func:`refine_sweep` (every mode around it).

The ``rgjax gaussianity`` job (task → kernel → spectrum → these diagnostics → JSON and figures)
is :mod:`rgjax.jobs.gaussianity`.

**Mode numbers are 1-based** everywhere in this module (``k = 1`` is the top mode, as in the paper's
``k``); ``k`` runs over ``1..spectrum.n_modes``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from rgjax._pytree import data_fields, dataclass, field
from rgjax._typing import Array, ArrayLike
from rgjax._validate import check_int, warn
from rgjax.spectrum import Spectrum

__all__ = [
    "GaussianityReport",
    "fit_gaussian",
    "fit_cauchy",
    "gaussian_loglik",
    "cauchy_loglik",
    "ks_statistic",
    "excess_kurtosis",
    "mode_diagnostics",
    "mode_features",
    "sweep_modes",
    "gaussianity_sweep",
    "crossover",
    "refine_sweep",
    "default_high_modes",
    "check_modes",
    "subset",
    "MIN_POINTS",
    "FAMILIES",
]

#: Fewest samples per mode accepted: below this neither fit nor a KS statistic means anything.
MIN_POINTS = 8

#: The two fitted families, as ``ks_statistic``'s ``family`` names them.
FAMILIES = ("gaussian", "cauchy")

# Cauchy solver: relative step tolerance on (loc/scale, log scale) and the iteration cap. Newton
# converges in ~5-10 steps from the quantile start; the cap only bites for pathological samples.
_CAUCHY_TOL = 1e-12
_CAUCHY_MAX_ITER = 500
# Modes are processed in column chunks so a sweep over all N modes of a 10^4 pool stays in memory.
_CHUNK = 256

#: 1-based mode numbers: one int, or a 1-D sequence or array of them.
Modes: TypeAlias = int | Sequence[int] | np.ndarray | Array


# ------------------------------------------------------------------------------------------------
# samples → fits


def _as_columns(samples: ArrayLike) -> tuple[Array, bool]:
    """``(N,)`` or ``(N, m)`` → ``(N, m)`` float array, and whether the input was 1-D."""
    x = jnp.asarray(samples)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim not in (1, 2):
        raise ValueError(f"`samples` must have shape (N,) or (N, m); got {x.shape}.")
    one_d = x.ndim == 1
    x = x[:, None] if one_d else x
    if x.shape[0] < MIN_POINTS:
        raise ValueError(
            f"too few points: `samples` has N={x.shape[0]} per mode; the fits need at least "
            f"{MIN_POINTS}."
        )
    if x.shape[1] == 0:
        raise ValueError("`samples` holds no modes (shape (N, 0)).")
    xn = np.asarray(x)
    if not np.all(np.isfinite(xn)):
        raise ValueError("`samples` contains NaN/Inf values.")
    if np.any(np.ptp(xn, axis=0) == 0):
        bad = np.flatnonzero(np.ptp(xn, axis=0) == 0).tolist()
        raise ValueError(f"`samples` column(s) {bad[:10]} are constant: no scale can be fitted.")
    return x, one_d


def _out(a: Array, one_d: bool) -> Array:
    return a[0] if one_d else a


def fit_gaussian(samples: ArrayLike) -> tuple[Array, Array]:
    """Maximum-likelihood Gaussian: ``(mean, std)`` with the 1/N (biased) variance.

    Args:
      samples: ``(N,)`` one sample or ``(N, m)`` m samples (columns).
    Returns:
      ``mean``, ``std``: scalars, or ``(m,)`` each.
    """
    x, one_d = _as_columns(samples)
    mean = jnp.mean(x, axis=0)
    std = jnp.sqrt(jnp.mean((x - mean) ** 2, axis=0))
    return _out(mean, one_d), _out(std, one_d)


def _cauchy_mean_loglik(params: Array, x: Array) -> Array:
    """Mean Cauchy log-density of ``x`` (N,) at ``params = (loc, log scale)``."""
    m, t = params[0], params[1]
    z = (x - m) * jnp.exp(-t)
    return -jnp.log(jnp.pi) - t - jnp.mean(jnp.log1p(z * z))


def _px_em_step(params: Array, x: Array) -> Array:
    # Cauchy = normal scale mixture; the E-step weight of point i is ∝ 1/(s² + r_i²). Dividing the
    # weighted variance by Σw (parameter-expanded EM) instead of N keeps monotonicity and
    # converges much faster; its fixed point is exactly the score equations' solution.
    m, s2 = params[0], jnp.exp(2 * params[1])
    w = 1.0 / (s2 + (x - m) ** 2)
    m_new = jnp.sum(w * x) / jnp.sum(w)
    s2_new = jnp.sum(w * (x - m_new) ** 2) / jnp.sum(w)
    return jnp.stack([m_new, 0.5 * jnp.log(s2_new)])


def _cauchy_start(x: Array) -> Array:
    # Median and half the IQR are the population loc/scale of a Cauchy: a start inside the
    # basin of the (unique, Copas 1975) maximum for any reasonable sample.
    q25, med, q75 = jnp.quantile(x, jnp.array([0.25, 0.5, 0.75]))
    spread = jnp.maximum(jnp.max(jnp.abs(x - med)), jnp.finfo(x.dtype).tiny)
    # Ties can make the IQR zero (>=50% equal values); fall back to a small share of the range.
    s0 = jnp.where(q75 > q25, 0.5 * (q75 - q25), 1e-3 * spread)
    return jnp.stack([med, jnp.log(s0)])


def _cauchy_grad_hess(p: Array, x: Array) -> tuple[Array, Array]:
    """Gradient (2,) and Hessian (2, 2) of the mean Cauchy log-likelihood in (loc, log scale).

    Written out (cheaper to compile than autodiff inside the vmapped loop); with z = (x−m)/s and
    q = 1 + z²: ∂m = ⟨2z/q⟩/s, ∂t = ⟨2z²/q⟩ − 1, ∂mm = −⟨2(1−z²)/q²⟩/s², ∂mt = −⟨4z/q²⟩/s,
    ∂tt = −⟨4z²/q²⟩.
    """
    s = jnp.exp(p[1])
    z = (x - p[0]) / s
    q = 1.0 + z * z
    g = jnp.stack([jnp.mean(2 * z / q) / s, jnp.mean(2 * z * z / q) - 1.0])
    hmm = -jnp.mean(2 * (1 - z * z) / q**2) / s**2
    hmt = -jnp.mean(4 * z / q**2) / s
    htt = -jnp.mean(4 * z * z / q**2)
    return g, jnp.array([[hmm, hmt], [hmt, htt]])


def _fit_cauchy_1d(x: Array, tol: float = _CAUCHY_TOL,
                   max_iter: int = _CAUCHY_MAX_ITER) -> tuple[Array, Array, Array, Array]:
    """Cauchy MLE of one sample (N,): ``(loc, scale, iterations, converged)``."""
    tol = max(tol, 64 * float(jnp.finfo(x.dtype).eps))  # reachable in float32 too

    def step(p: Array) -> Array:
        g, h = _cauchy_grad_hess(p, x)
        det = h[0, 0] * h[1, 1] - h[0, 1] * h[1, 0]
        neg_def = (h[0, 0] < 0) & (det > 0)
        safe_det = jnp.where(neg_def, det, 1.0)
        # Newton step −H⁻¹g for the 2×2 system, written out.
        dn = -jnp.stack([h[1, 1] * g[0] - h[0, 1] * g[1],
                         h[0, 0] * g[1] - h[1, 0] * g[0]]) / safe_det
        p_newton = p + dn
        f0, f1 = _cauchy_mean_loglik(p, x), _cauchy_mean_loglik(p_newton, x)
        # Accept Newton only where the likelihood is locally concave and does not drop; otherwise
        # the monotone EM step (slow but safe) moves towards the basin of the maximum.
        ok = neg_def & jnp.all(jnp.isfinite(p_newton)) & (f1 >= f0 - 1e-15 * jnp.abs(f0))
        return jnp.where(ok, p_newton, _px_em_step(p, x))

    def size(p_new: Array, p_old: Array) -> Array:
        d = p_new - p_old
        return jnp.maximum(jnp.abs(d[0]) * jnp.exp(-p_new[1]), jnp.abs(d[1]))

    def cond(state: tuple[Array, int, Array]) -> Array:
        _, i, delta = state
        return (i < max_iter) & (delta > tol)

    def body(state: tuple[Array, int, Array]) -> tuple[Array, int, Array]:
        p, i, _ = state
        p_new = step(p)
        return p_new, i + 1, size(p_new, p)

    p0 = _cauchy_start(x)
    p, n_iter, delta = jax.lax.while_loop(cond, body, (p0, 0, jnp.asarray(jnp.inf, x.dtype)))
    return p[0], jnp.exp(p[1]), jnp.asarray(n_iter), delta <= tol


def _ks_1d(x: Array, cdf: Callable[[Array], Array]) -> Array:
    n = x.shape[0]
    c = cdf(jnp.sort(x))
    i = jnp.arange(1, n + 1, dtype=c.dtype)
    return jnp.maximum(jnp.max(i / n - c), jnp.max(c - (i - 1) / n))


def _diagnose_1d(x: Array) -> dict[str, Array]:
    """Every per-mode number for one sample (N,) — the body of the vmapped, jitted core."""
    mean = jnp.mean(x)
    r = x - mean
    m2 = jnp.mean(r * r)
    std = jnp.sqrt(m2)
    loc, scale, iters, conv = _fit_cauchy_1d(x)
    zc = (x - loc) / scale
    return dict(
        mean_square=jnp.mean(x * x),
        gauss_mean=mean,
        gauss_std=std,
        cauchy_loc=loc,
        cauchy_scale=scale,
        # at the Gaussian MLE ⟨z²⟩ = 1 exactly; the explicit mean keeps it honest for any input
        loglik_gauss=-0.5 * jnp.log(2 * jnp.pi) - jnp.log(std) - 0.5 * jnp.mean(r * r) / m2,
        loglik_cauchy=-jnp.log(jnp.pi) - jnp.log(scale) - jnp.mean(jnp.log1p(zc * zc)),
        ks_gauss=_ks_1d(x, lambda t: ndtr((t - mean) / std)),
        ks_cauchy=_ks_1d(x, lambda t: 0.5 + jnp.arctan((t - loc) / scale) / jnp.pi),
        excess_kurtosis=jnp.mean(r**4) / m2**2 - 3.0,
        cauchy_iterations=iters,
        cauchy_converged=conv,
    )


_diagnose_columns = jax.jit(jax.vmap(_diagnose_1d, in_axes=1))


def _bucket(m: int) -> int:
    # Column counts are padded to a power of two (≥ 4, ≤ _CHUNK) so that a run compiles the core
    # for a handful of shapes, not once per number of modes.
    return min(_CHUNK, max(4, 1 << (m - 1).bit_length()))


def _diagnose_full(x: Array) -> dict[str, np.ndarray]:
    """:func:`_diagnose_1d` for every column of ``x`` (N, m), chunked and padded → numpy (m,)."""
    parts = []
    for i in range(0, x.shape[1], _CHUNK):
        c = x[:, i : i + _CHUNK]
        m = c.shape[1]
        width = _bucket(m)
        if width > m:  # pad with copies of the first column, dropped again below
            c = jnp.concatenate([c, jnp.broadcast_to(c[:, :1], (c.shape[0], width - m))], axis=1)
        parts.append({k: np.asarray(v)[:m] for k, v in _diagnose_columns(c).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _cauchy_fit_full(x: Array) -> tuple[np.ndarray, ...]:
    """Cauchy MLE of the columns of ``x`` (N, m) → numpy (loc, scale, iterations, converged)."""
    d = _diagnose_full(x)
    return d["cauchy_loc"], d["cauchy_scale"], d["cauchy_iterations"], d["cauchy_converged"]


def fit_cauchy(samples: ArrayLike) -> tuple[Array, Array]:
    """Maximum-likelihood Cauchy: ``(loc, scale)``.

    Args:
      samples: ``(N,)`` one sample or ``(N, m)`` m samples (columns), all fitted at once.
    Returns:
      ``loc``, ``scale``: scalars, or ``(m,)`` each. Solved to a relative step of 1e-12 (see the
      module docstring); a :class:`~rgjax.RgjaxWarning` names any column that did not converge.

    Examples:
      >>> import numpy as np
      >>> from rgjax.gaussianity import fit_cauchy
      >>> q = np.tan(np.pi * (np.arange(1, 2000) / 2000 - 0.5))  # Cauchy(0, 1) quantiles
      >>> loc, scale = fit_cauchy(2.0 + 3.0 * q)
      >>> print(f"{float(loc):.3f} {float(scale):.3f}")
      2.000 2.997
    """
    x, one_d = _as_columns(samples)
    loc, scale, _, conv = _cauchy_fit_full(x)
    if not conv.all():
        warn(f"Cauchy MLE did not converge for column(s) {np.flatnonzero(~conv)[:10].tolist()} "
             f"within {_CAUCHY_MAX_ITER} iterations; the returned values are the last iterate.")
    return _out(jnp.asarray(loc), one_d), _out(jnp.asarray(scale), one_d)


# ------------------------------------------------------------------------------------------------
# goodness of fit


def _params(a: ArrayLike, m: int, name: str) -> Array:
    a = jnp.atleast_1d(jnp.asarray(a, dtype=jnp.result_type(float)))
    if a.shape not in ((1,), (m,)):
        raise ValueError(f"`{name}` must be a scalar or have shape ({m},); got {a.shape}.")
    return jnp.broadcast_to(a, (m,))


def gaussian_loglik(samples: ArrayLike, mean: ArrayLike, std: ArrayLike) -> Array:
    """Mean Gaussian log-density per point. ``samples`` (N,) or (N, m); params scalar or (m,)."""
    x, one_d = _as_columns(samples)
    mu, sd = _params(mean, x.shape[1], "mean"), _params(std, x.shape[1], "std")
    z = (x - mu) / sd
    ll = -0.5 * jnp.log(2 * jnp.pi) - jnp.log(sd) - 0.5 * jnp.mean(z * z, axis=0)
    return _out(ll, one_d)


def cauchy_loglik(samples: ArrayLike, loc: ArrayLike, scale: ArrayLike) -> Array:
    """Mean Cauchy log-density per point. ``samples`` (N,) or (N, m); params scalar or (m,)."""
    x, one_d = _as_columns(samples)
    m, s = _params(loc, x.shape[1], "loc"), _params(scale, x.shape[1], "scale")
    z = (x - m) / s
    ll = -jnp.log(jnp.pi) - jnp.log(s) - jnp.mean(jnp.log1p(z * z), axis=0)
    return _out(ll, one_d)


def _cdf(family: str, z: Array) -> Array:
    if family == "gaussian":
        return ndtr(z)
    if family == "cauchy":
        return 0.5 + jnp.arctan(z) / jnp.pi
    raise ValueError(f"`family` must be one of {FAMILIES}; got {family!r}.")


def ks_statistic(samples: ArrayLike, family: str, loc: ArrayLike, scale: ArrayLike) -> Array:
    """Kolmogorov–Smirnov statistic ``sup_x |F_N(x) − F(x)|`` against a fitted distribution.

    Args:
      samples: ``(N,)`` or ``(N, m)``.
      family: ``"gaussian"`` (loc = mean, scale = std) or ``"cauchy"``.
      loc: location, scalar or ``(m,)``.
      scale: scale, scalar or ``(m,)``.

    Returns:
      Scalar or ``(m,)``. (Parameters are fitted on the same sample, so the usual KS p-values do not
      apply; the statistic is a distance for comparing the two families.)
    """
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {FAMILIES}; got {family!r}.")
    x, one_d = _as_columns(samples)
    n = x.shape[0]
    mu, sd = _params(loc, x.shape[1], "loc"), _params(scale, x.shape[1], "scale")
    cdf = _cdf(family, (jnp.sort(x, axis=0) - mu) / sd)
    i = jnp.arange(1, n + 1, dtype=cdf.dtype)[:, None]
    d = jnp.maximum(jnp.max(i / n - cdf, axis=0), jnp.max(cdf - (i - 1) / n, axis=0))
    return _out(d, one_d)


def excess_kurtosis(samples: ArrayLike) -> Array:
    """Excess kurtosis ``m4/m2² − 3`` (biased moments; 0 for a Gaussian, as scipy's default)."""
    x, one_d = _as_columns(samples)
    r = x - jnp.mean(x, axis=0)
    m2 = jnp.mean(r**2, axis=0)
    return _out(jnp.mean(r**4, axis=0) / m2**2 - 3.0, one_d)


# ------------------------------------------------------------------------------------------------
# reports on a spectrum


@dataclass(eq=False)
class GaussianityReport:
    """Per-mode diagnostics; every array has shape ``(m,)``, one entry per mode in ``modes``.

    A pytree: the fourteen arrays are its leaves, ``n_points`` is static.

    Attributes:
      modes: 1-based mode numbers k (sorted as given).
      eigenvalues: ``λ_k`` of those modes.
      mean_square: ``(1/N) Σ_i φ_k(x_i)²`` (1 up to round-off: the normalisation check).
      gauss_mean: Gaussian MLE mean.
      gauss_std: Gaussian MLE standard deviation (1/N variance).
      cauchy_loc: Cauchy MLE location.
      cauchy_scale: Cauchy MLE scale.
      loglik_gauss: mean log-likelihood per point of the Gaussian fit.
      loglik_cauchy: mean log-likelihood per point of the Cauchy fit.
      ks_gauss: KS statistic of the sample against the fitted Gaussian CDF.
      ks_cauchy: KS statistic of the sample against the fitted Cauchy CDF.
      excess_kurtosis: ``m4/m2² − 3``.
      cauchy_iterations: iterations of the Cauchy solver.
      cauchy_converged: whether the Cauchy solver reached its tolerance.
      n_points: N, the number of samples per mode (static).
    """

    modes: np.ndarray
    eigenvalues: np.ndarray
    mean_square: np.ndarray
    gauss_mean: np.ndarray
    gauss_std: np.ndarray
    cauchy_loc: np.ndarray
    cauchy_scale: np.ndarray
    loglik_gauss: np.ndarray
    loglik_cauchy: np.ndarray
    ks_gauss: np.ndarray
    ks_cauchy: np.ndarray
    excess_kurtosis: np.ndarray
    cauchy_iterations: np.ndarray
    cauchy_converged: np.ndarray
    n_points: int = field(static=True, default=0)

    @property
    def loglik_difference(self) -> np.ndarray:
        """``(m,)`` mean log-likelihood of the Cauchy fit minus the Gaussian fit (> 0: Cauchy)."""
        return np.asarray(self.loglik_cauchy) - np.asarray(self.loglik_gauss)

    @property
    def better(self) -> tuple[str, ...]:
        """Per mode, the family with the higher mean log-likelihood (ties go to "gaussian")."""
        return tuple("cauchy" if d > 0 else "gaussian" for d in self.loglik_difference)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready dict (lists and numbers), including ``better`` and the difference."""
        d = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["loglik_difference"] = _plain(self.loglik_difference)
        d["better"] = list(self.better)
        return d

    def __len__(self) -> int:
        return int(np.size(self.modes))


def _plain(v: ArrayLike) -> object:
    """An array as JSON-ready lists and numbers (non-finite floats as None)."""
    a = np.asarray(v)
    if a.dtype == bool:
        return a.tolist()
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(int).tolist()
    if a.ndim == 0:
        return float(a) if math.isfinite(float(a)) else None
    return [float(x) if math.isfinite(x) else None for x in a.astype(float).tolist()]


def _check_spectrum(spec: object) -> Array:
    """The ``(N, k)`` eigenvectors of ``spec``, after checking that it is a :class:`Spectrum` that
    holds them, with at least :data:`MIN_POINTS` points."""
    if not isinstance(spec, Spectrum):
        raise TypeError(
            f"`spec` must be an rgjax Spectrum (from_gram(K, y)); got {type(spec).__name__}."
        )
    if spec.eigenvectors is None:
        raise ValueError(
            "this Spectrum holds no eigenvectors (built by from_eigenvalues): feature modes need "
            "them; build it with from_gram(K, y)."
        )
    n = spec.eigenvectors.shape[0]
    if n < MIN_POINTS:
        raise ValueError(
            f"too few points: the pool has N={n}; the Gaussianity diagnostics need at least "
            f"{MIN_POINTS}."
        )
    return spec.eigenvectors


def check_modes(modes: Modes, n_modes: int, name: str = "modes") -> np.ndarray:
    """1-based mode numbers → int array ``(m,)``, or a ValueError naming ``name`` and the valid
    range ``[1, n_modes]``."""
    a = np.atleast_1d(np.asarray(modes))
    if a.size == 0:
        raise ValueError(f"`{name}` is empty; pass 1-based mode numbers in [1, {n_modes}].")
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer)
                           or (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)))):
        raise ValueError(f"`{name}` must be a 1-D sequence of integer mode numbers; got {modes!r}.")
    a = a.astype(int)
    bad = a[(a < 1) | (a > n_modes)]
    if bad.size:
        raise ValueError(
            f"`{name}` out of range: {bad[:10].tolist()}; mode numbers are 1-based, "
            f"k ∈ [1, {n_modes}] (k = 1 is the top mode)."
        )
    return a


def mode_features(spec: Spectrum, modes: Modes) -> Array:
    """``(N, m)`` feature values ``φ_k(x_i) = √N v_k[i]`` of the 1-based ``modes``."""
    vecs = _check_spectrum(spec)
    k = check_modes(modes, spec.n_modes)
    n = vecs.shape[0]
    return jnp.sqrt(float(n)) * vecs[:, k - 1]


def _diagnose(x: Array, modes: np.ndarray, eigenvalues: np.ndarray) -> GaussianityReport:
    """All diagnostics for the columns of ``x`` (N, m), with mode numbers/eigenvalues attached."""
    d = _diagnose_full(x)
    conv = d["cauchy_converged"].astype(bool)
    if not conv.all():
        warn(f"Cauchy MLE did not converge for mode(s) {np.asarray(modes)[~conv][:10].tolist()} "
             f"within {_CAUCHY_MAX_ITER} iterations; the last iterate is reported.")
    d |= {"cauchy_iterations": d["cauchy_iterations"].astype(int), "cauchy_converged": conv}
    return GaussianityReport(modes=np.asarray(modes, int),
                             eigenvalues=np.asarray(eigenvalues, float), **d,
                             n_points=int(x.shape[0]))


def subset(report: GaussianityReport, modes: Sequence[int] | np.ndarray) -> GaussianityReport:
    """The entries of ``report`` for ``modes`` (each must be in it), in the order given.

    Raises:
      KeyError: a mode that ``report`` does not hold.
    """
    pos = {int(k): i for i, k in enumerate(np.asarray(report.modes))}
    idx = np.array([pos[int(k)] for k in modes], int)
    arrays = {name: np.asarray(getattr(report, name))[idx]
              for name in data_fields(GaussianityReport)}
    return GaussianityReport(**arrays, n_points=report.n_points)


def mode_diagnostics(spec: Spectrum, modes: Modes) -> GaussianityReport:
    """Gaussian and Cauchy fits, log-likelihoods, KS statistics and kurtosis of feature modes.

    Args:
      spec: a :class:`~rgjax.Spectrum` with eigenvectors (``from_gram``).
      modes: 1-based mode numbers ``k`` (int or sequence), each in ``[1, spec.n_modes]``.
    Returns:
      A :class:`GaussianityReport` with one entry per mode, in the order given.
    Raises:
      TypeError / ValueError: not a Spectrum, no eigenvectors, N < :data:`MIN_POINTS`, or a mode
      number out of range.

    Examples:
      >>> import jax.numpy as jnp, numpy as np
      >>> from rgjax.gaussianity import mode_diagnostics
      >>> from rgjax.spectrum import from_gram
      >>> x = np.random.default_rng(0).normal(size=(200, 3))
      >>> K = jnp.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1))  # an RBF Gram matrix
      >>> report = mode_diagnostics(from_gram(K, jnp.asarray(x[:, 0])), [2, 3])
      >>> report.modes.tolist(), bool(np.allclose(report.mean_square, 1.0)), report.better[0]
      ([2, 3], True, 'gaussian')
    """
    _check_spectrum(spec)
    k = check_modes(modes, spec.n_modes)
    x = mode_features(spec, k)
    return _diagnose(x, k, np.asarray(spec.eigenvalues)[k - 1])


def sweep_modes(n_modes: int, n_points: int = 40) -> np.ndarray:
    """About ``n_points`` log-spaced unique 1-based mode numbers from 1 to ``n_modes`` inclusive."""
    n_points = check_int(n_points, "n_points", 2, why="a sweep needs both ends")
    n_modes = check_int(n_modes, "n_modes", 1)
    return np.unique(np.round(np.geomspace(1, n_modes, n_points)).astype(int))


def gaussianity_sweep(spec: Spectrum, n_points: int = 40) -> GaussianityReport:
    """:func:`mode_diagnostics` on :func:`sweep_modes` ``(spec.n_modes, n_points)``.

    Rounding to integers merges some of the low log-spaced points, so fewer than ``n_points``
    modes may be returned when ``n_points`` is comparable with ``log`` of the number of modes.
    """
    _check_spectrum(spec)
    return mode_diagnostics(spec, sweep_modes(spec.n_modes, n_points))


def crossover(report: GaussianityReport | Mapping[str, object]) -> int | None:
    """The mode from which the Cauchy fit stays better than the Gaussian, or None.

    Rule: sort the report's modes; with ``d_k = loglik_cauchy − loglik_gauss`` the crossover is the
    smallest reported k such that ``d_j > 0`` for *every* reported ``j ≥ k`` (the start of the final
    run of Cauchy-better modes). Isolated Cauchy-better modes at low k (e.g. a peaked class-split
    mode) therefore do not count. None when the highest reported mode is Gaussian-better. The
    resolution is that of the report (log-spaced sweep points). Accepts a report or its
    :meth:`~GaussianityReport.to_dict`.

    Examples:
      >>> from rgjax.gaussianity import crossover
      >>> crossover({"modes": [1, 2, 4, 8], "loglik_gauss": [0, 0, 0, 0],
      ...            "loglik_cauchy": [-1, 0.5, -0.2, 0.3]})  # mode 2 is an isolated win
      8
    """
    if isinstance(report, GaussianityReport):
        modes, diff = np.asarray(report.modes), report.loglik_difference
    else:
        modes = np.asarray(report["modes"], int)
        diff = (np.asarray(report["loglik_cauchy"], float)
                - np.asarray(report["loglik_gauss"], float))
    if modes.size == 0:
        return None
    order = np.argsort(modes, kind="stable")
    modes, diff = modes[order], diff[order]
    cauchy = np.nan_to_num(diff, nan=-np.inf) > 0
    if not cauchy[-1]:
        return None
    not_c = np.flatnonzero(~cauchy)
    start = 0 if not_c.size == 0 else int(not_c[-1]) + 1
    return int(modes[start])


def _merge(a: GaussianityReport, b: GaussianityReport) -> GaussianityReport:
    """Union of two reports on the same pool, sorted by mode (``a`` wins on duplicates)."""
    modes = np.concatenate([np.asarray(a.modes), np.asarray(b.modes)])
    _, first = np.unique(modes, return_index=True)  # sorted unique modes, first occurrence
    arrays = {name: np.concatenate([np.asarray(getattr(a, name)),
                                    np.asarray(getattr(b, name))])[first]
              for name in data_fields(GaussianityReport)}
    return GaussianityReport(**arrays, n_points=a.n_points)


def refine_sweep(spec: Spectrum, report: GaussianityReport) -> GaussianityReport:
    """Add every mode between the sweep's crossover and the swept mode just below it.

    A log-spaced sweep is coarse exactly where the crossover usually is (the top decile of modes).
    The returned report is ``report`` plus all modes ``k_prev < k < k_cross``, so
    :func:`crossover` of it is exact to one mode, under the sweep's assumption that the modes
    above ``k_cross`` stay Cauchy-better. Unchanged when there is no crossover or no gap.
    """
    _check_spectrum(spec)
    k_cross = crossover(report)
    modes = np.sort(np.asarray(report.modes))
    if k_cross is None or k_cross == modes[0]:
        return report
    k_prev = int(modes[modes < k_cross].max())
    gap = np.arange(k_prev + 1, k_cross)
    if gap.size == 0:
        return report
    return _merge(report, mode_diagnostics(spec, gap))


def default_high_modes(n_modes: int) -> tuple[int, ...]:
    """Default modes of the tails figure: k = N/2, 0.9 N and N (1-based, unique).

    On MNIST-sized pools the crossover lies near the top decile of modes (see the sweep), so these
    show a Gaussian-like mode, one near the crossover and the most localised (last) mode.
    """
    ks = {max(1, round(n_modes * f)) for f in (0.5, 0.9, 1.0)}
    return tuple(sorted(ks))
