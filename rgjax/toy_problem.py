"""Hermite toy model: its set-up and the theories' predictions (paper Fig. 3, docs/theory.md §5).

This module is the analytic half of the toy model; :mod:`rgjax.toy` holds the experiment (exact
posteriors of random data sets and their Monte Carlo average) and re-exports every name defined
here, so ``from rgjax.toy import ToyProblem, rg_prediction`` is the one import users need.

Set-up. Inputs ``x ~ N(0, 1)`` in one dimension; features ``ψ_j = He_j / √(j!)`` (probabilists'
Hermite polynomials, orthonormal under N(0, 1)); a kernel ``K = Σ_{j∈D} λ_j ψ_j ψ_j`` over a set of
degrees ``D``; a target given by Hermite coefficients ``y = Σ_t y_t ψ_t``; ``n`` training points;
ridge ``σ²``. The paper's case: ``D = {1, 2}``, ``λ_1 = 1``, ``λ_2 = λ_> ∈ {0, 0.1}``, ``y = ψ_5``,
``n = 100``, ``σ² = 400``. A :class:`ToyProblem` holds everything but the eigenvalues ``λ``, which
are passed separately so that several kernels can share one Monte Carlo run.

Theory. Standard (EK, bare ridge): ``c_j = L_j y_j`` with ``L_j = nλ_j / (nλ_j + σ²)``, i.e. 0 for a
target outside the kernel's degrees. Gaussian RG: the kept degrees with the renormalised ridge
``σ² + Σ_> λ_j`` (also 0 there). Input-dependent RG (docs/theory.md §5): integrating out the
"greater" degrees leaves the ridge ``σ²(x) = σ² + Σ_> λ_j ψ_j(x)²`` and a reweighted regression for
the kept coefficients, ``(Λ_<⁻¹ + n⟨Ψ_<ᵀΨ_< / σ²(x)⟩) c = n⟨Ψ_<ᵀ y / σ²(x)⟩``, evaluated by
Gauss–Hermite quadrature; to first order in λ_>/σ² for the paper's case
``c ≈ −(nλ_2√30/σ⁴)/(1/λ_1 + n/σ²)`` because ``⟨ψ_1ψ_5ψ_2²⟩ = √30``. The RG predicts the kept
coefficients only. Everything here is numpy: a handful of small solves, no compilation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias, TypeVar, cast, overload

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._pytree import dataclass, field
from rgjax._typing import Array, ArrayLike
from rgjax._validate import check_int, check_sigma2

__all__ = [
    "QUAD_ORDER",
    "Degrees",
    "Terms",
    "TargetLike",
    "ToyProblem",
    "check_lambdas",
    "hermite_table",
    "hermite",
    "gauss_hermite",
    "gaussian_expectation",
    "hermite_moment",
    "standard_prediction",
    "gaussian_rg_prediction",
    "rg_prediction",
    "rg_first_order",
]

#: Gauss–Hermite nodes of :func:`rg_prediction`'s quadrature (converged to ~1e-10 at 128).
QUAD_ORDER = 256

#: Hermite degrees: one int, a sequence of ints or an integer array.
Degrees: TypeAlias = int | Sequence[int] | np.ndarray
#: A target in normal form: sorted ``((degree, coefficient), ...)``, nonzero coefficients only.
Terms: TypeAlias = tuple[tuple[int, float], ...]
#: What :class:`ToyProblem` accepts as a target: ``{degree: coef}``, ``((degree, coef), ...)``, or
#: a 1-D array whose entry d is the coefficient of ψ_d.
TargetLike: TypeAlias = (
    Mapping[int, float] | Sequence[tuple[int, float]] | Sequence[float] | ArrayLike
)

_X = TypeVar("_X", np.ndarray, Array, float)

# ----------------------------------------------------------------------------------------------
# validation


def _check_degrees(degrees: object, name: str) -> tuple[int, ...]:
    """Non-empty tuple of distinct non-negative integer degrees."""
    try:
        vals = tuple(cast(Sequence[int], degrees))
    except TypeError:
        vals = (degrees,)
    out: list[int] = []
    for d in vals:
        if (isinstance(d, (bool, np.bool_)) or not float(cast(float, d)).is_integer()
                or cast(float, d) < 0):
            raise ValueError(
                f"`{name}` must be non-negative integer Hermite degrees; got {vals!r}.")
        out.append(int(cast(float, d)))
    if not out:
        raise ValueError(f"`{name}` must name at least one Hermite degree.")
    if len(set(out)) != len(out):
        raise ValueError(f"`{name}` has repeated degrees: {vals!r}.")
    return tuple(out)


def _target_items(target: TargetLike) -> list[tuple[float, float]]:
    """The ``(degree, coef)`` pairs of any accepted target form, unchecked."""
    if isinstance(target, Mapping):
        return [(d, c) for d, c in target.items()]
    arr = np.atleast_1d(np.asarray(target, dtype=float))
    if arr.ndim == 2 and arr.shape[1] == 2:  # ((degree, coef), ...), the normalised form
        return [(d, c) for d, c in arr.tolist()]
    if arr.ndim == 1:
        return list(enumerate(arr.tolist()))
    raise ValueError("`target` must be {degree: coef}, ((degree, coef), ...) or a 1-D array "
                     f"(entry d = coefficient of ψ_d); got shape {arr.shape}.")


def _check_target(target: TargetLike) -> Terms:
    """Any accepted target form → sorted ``((degree, coef), ...)`` with nonzero coefficients."""
    items = _target_items(target)
    degs = _check_degrees([d for d, _ in items], "target") if items else ()
    coefs = [float(c) for _, c in items]
    if not all(math.isfinite(c) for c in coefs):
        raise ValueError(f"`target` coefficients must be finite; got {dict(zip(degs, coefs))!r}.")
    pairs = tuple(sorted((d, c) for d, c in zip(degs, coefs) if c != 0.0))
    if not pairs:
        raise ValueError("`target` has no nonzero Hermite coefficient; give e.g. {5: 1.0}.")
    return pairs


def check_lambdas(lambdas: ArrayLike, p: int, name: str = "lambdas") -> np.ndarray:
    """One λ vector ``(p,)`` or a stack ``(L, p)`` → float64 ``(L, p)``, finite and ≥ 0.

    Raises:
      ValueError: naming ``name``, for a wrong shape or a negative or non-finite eigenvalue.
    """
    lam = np.asarray(lambdas, dtype=float)
    if lam.ndim == 1:
        lam = lam[None]
    if lam.ndim != 2 or lam.shape[1] != p or lam.shape[0] < 1:
        raise ValueError(f"`{name}` must have shape ({p},) or (L, {p}), one eigenvalue per kernel "
                         f"degree; got shape {np.shape(lambdas)}.")
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(
            f"`{name}` (kernel eigenvalues) must be finite and >= 0; got {lam.tolist()!r}.")
    return lam


# ----------------------------------------------------------------------------------------------
# the problem


@dataclass
class ToyProblem:
    """Everything but the kernel eigenvalues: degrees, target, n, σ² (validated on construction).

    A pytree whose one leaf is ``sigma2``; degrees, target and n are static (they fix shapes).

    Attributes:
      degrees: the kernel's Hermite degrees, ``(p,)``; eigenvalues are passed separately so that
        several kernels can share one Monte Carlo run.
      target: ``((degree, coef), ...)`` (nonzero coefficients, sorted); the constructor also takes
        ``{degree: coef}`` or a 1-D array whose entry d is the coefficient of ψ_d.
      n: training points per data set.
      sigma2: ridge σ² > 0.

    Examples:
      >>> from rgjax.toy import ToyProblem
      >>> problem = ToyProblem()  # the paper's: ψ_1, ψ_2 kernel, target ψ_5, n = 100, σ² = 400
      >>> problem.degrees, problem.target, problem.n, problem.sigma2
      ((1, 2), ((5, 1.0),), 100, 400.0)
      >>> ToyProblem(target={3: 0.5, 1: 2.0}).terms
      ((1, 2.0), (3, 0.5))
    """

    degrees: tuple[int, ...] = field(static=True, default=(1, 2))
    target: TargetLike = field(static=True, default=((5, 1.0),))
    n: int = field(static=True, default=100)
    sigma2: float = 400.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "degrees", _check_degrees(self.degrees, "degrees"))
        object.__setattr__(self, "target", _check_target(self.target))
        object.__setattr__(self, "n", check_int(self.n, "n", 1, why="training points per data set"))
        check_sigma2(self.sigma2)
        object.__setattr__(self, "sigma2", float(self.sigma2))

    @property
    def terms(self) -> Terms:
        """The target in normal form, sorted ``((degree, coef), ...)`` (what ``target`` holds)."""
        return cast(Terms, self.target)

    @property
    def p(self) -> int:
        """Number of kernel degrees."""
        return len(self.degrees)

    @property
    def max_degree(self) -> int:
        """Highest Hermite degree of the kernel or the target."""
        return max(max(self.degrees), max(d for d, _ in self.terms))

    def target_on(self, degrees: Degrees) -> np.ndarray:
        """The target's coefficients on ``degrees`` (0 where it has none), ``(len(degrees),)``."""
        t = dict(self.terms)
        return np.array([t.get(d, 0.0) for d in np.atleast_1d(degrees).tolist()])

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: degrees, target ``{"degree": coef}``, n, sigma2."""
        return {"degrees": list(self.degrees), "target": {str(d): c for d, c in self.terms},
                "n": self.n, "sigma2": self.sigma2}


# ----------------------------------------------------------------------------------------------
# Hermite features and Gaussian quadrature


def hermite_table(x: _X, max_degree: int) -> list[_X]:
    """``[ψ_0(x), …, ψ_max(x)]`` by ``ψ_{k+1} = (x ψ_k − √k ψ_{k−1}) / √(k+1)``.

    Works on numpy arrays, JAX arrays (also traced) and floats alike; each entry has ``x``'s shape.
    """
    table = [x * 0 + 1.0, x]
    for k in range(1, max_degree):
        table.append((x * table[k] - math.sqrt(k) * table[k - 1]) / math.sqrt(k + 1))
    return table[: max_degree + 1]


@overload
def hermite(x: Array, degrees: Degrees) -> Array: ...
@overload
def hermite(x: np.ndarray | float, degrees: Degrees) -> np.ndarray: ...


def hermite(x: Array | np.ndarray | float, degrees: Degrees) -> Array | np.ndarray:
    """Orthonormal Hermite features ``ψ_d(x) = He_d(x)/√(d!)``.

    Args:
      x: inputs, any shape ``S`` (numpy or JAX array).
      degrees: an int or a sequence of ``q`` degrees.

    Returns:
      ``S`` for an int, else ``S + (q,)``; numpy in, numpy out.

    Examples:
      >>> import numpy as np
      >>> from rgjax.toy import hermite
      >>> hermite(np.array([0.0, 1.0, 2.0]), [0, 1, 2]).round(4).tolist()
      [[1.0, 0.0, -0.7071], [1.0, 1.0, 0.0], [1.0, 2.0, 2.1213]]
    """
    single = np.ndim(degrees) == 0
    degs = _check_degrees([degrees] if single else degrees, "degrees")
    if isinstance(x, jax.Array):
        table = hermite_table(x, max(degs))
        return table[degs[0]] if single else jnp.stack([table[d] for d in degs], axis=-1)
    table = hermite_table(cast(np.ndarray, x), max(degs))  # or a float: same arithmetic
    return np.asarray(table[degs[0]]) if single else np.stack([table[d] for d in degs], axis=-1)


def gauss_hermite(order: int = QUAD_ORDER) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights ``(order,)`` with ``Σ w f(x) ≈ E_{x~N(0,1)}[f(x)]``, exact for polynomials
    of degree < 2·order."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    return nodes, weights / math.sqrt(2 * math.pi)


def gaussian_expectation(f: Callable[[np.ndarray], ArrayLike],
                         order: int = QUAD_ORDER) -> np.ndarray:
    """``E_{x~N(0,1)}[f(x)]`` by Gauss–Hermite quadrature; ``f`` maps nodes ``(order,)`` to
    ``(order,)`` or ``(order, ...)``; the result has the trailing shape ``(...)``."""
    nodes, weights = gauss_hermite(order)
    return np.tensordot(weights, np.asarray(f(nodes)), axes=(0, 0))


def hermite_moment(*degrees: int) -> float:
    """``⟨Π_i ψ_{d_i}⟩`` under N(0, 1), exact (quadrature of the right order).

    Examples:
      >>> from rgjax.toy import hermite_moment
      >>> print(f"{hermite_moment(1, 5, 2, 2) ** 2:.6f}")  # ⟨ψ_1ψ_5ψ_2²⟩ = √30
      30.000000
    """
    degs = [check_int(d, "degrees", 0, why="Hermite degrees") for d in degrees]
    order = sum(degs) // 2 + 1
    return float(gaussian_expectation(lambda x: np.prod([hermite(x, d) for d in degs], axis=0),
                                      order))


# ----------------------------------------------------------------------------------------------
# theory


def _kept_split(problem: ToyProblem, kept: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (into ``problem.degrees``) of the kept and the greater (integrated-out)
    degrees."""
    kept = _check_degrees(kept, "kept")
    missing = [d for d in kept if d not in problem.degrees]
    if missing:
        raise ValueError(f"`kept` degrees {missing} are not kernel degrees {problem.degrees}.")
    k = np.array([problem.degrees.index(d) for d in kept])
    g = np.array([j for j in range(problem.p) if problem.degrees[j] not in kept], dtype=int)
    return k, g


def standard_prediction(problem: ToyProblem, lambdas: ArrayLike) -> np.ndarray:
    """EK with the bare ridge: ``c_j = nλ_j/(nλ_j + σ²) y_j`` on the kernel's degrees, ``(L, p)``;
    0 wherever the target has no component (the paper's case)."""
    lam = check_lambdas(lambdas, problem.p)
    learn = problem.n * lam / (problem.n * lam + problem.sigma2)
    return learn * problem.target_on(problem.degrees)


def gaussian_rg_prediction(problem: ToyProblem, lambdas: ArrayLike,
                           kept: Sequence[int] = (1,)) -> np.ndarray:
    """Gaussian-feature RG (docs/theory.md §3): the kept degrees learned in the EK limit with the
    renormalised ridge ``σ² + Σ_> λ_j``; ``(L, len(kept))``."""
    lam = check_lambdas(lambdas, problem.p)
    k, g = _kept_split(problem, kept)
    ridge = problem.sigma2 + lam[:, g].sum(axis=1, keepdims=True)
    lk = problem.n * lam[:, k]
    return lk / (lk + ridge) * problem.target_on(np.asarray(problem.degrees)[k])


def rg_prediction(problem: ToyProblem, lambdas: ArrayLike, kept: Sequence[int] = (1,),
                  order: int = QUAD_ORDER) -> np.ndarray:
    """Input-dependent-ridge RG (docs/theory.md §5) for the kept coefficients, by Gauss–Hermite
    quadrature.

    Solves ``(Λ_<⁻¹ + n⟨Ψ_<ᵀΨ_< / σ²(x)⟩) c = n⟨Ψ_<ᵀ y / σ²(x)⟩`` with
    ``σ²(x) = σ² + Σ_> λ_j ψ_j(x)²``, in the form ``c = s(I + n s M s)⁻¹ s n r``, ``s = Λ_<^{1/2}``,
    which also covers ``λ = 0``.

    Args:
      problem: degrees, target, n, σ².
      lambdas: ``(p,)`` or ``(L, p)`` kernel eigenvalues.
      kept: the kept degrees (the rest are integrated out).
      order: quadrature nodes.

    Returns:
      ``(L, len(kept))``, in the order of ``kept``.

    Examples:
      >>> from rgjax.toy import ToyProblem, rg_prediction
      >>> c = rg_prediction(ToyProblem(), [[1.0, 0.0], [1.0, 0.1]])  # the paper's two kernels
      >>> print(c.shape, abs(c[0, 0]) < 1e-12, f"{c[1, 0]:.3e}")  # λ_> = 0: no effect
      (2, 1) True -2.641e-04
    """
    lam = check_lambdas(lambdas, problem.p)
    k, g = _kept_split(problem, kept)
    nodes, weights = gauss_hermite(order)
    degs = np.asarray(problem.degrees)
    psi_k = hermite(nodes, degs[k])  # (Q, k)
    y = sum(c * hermite(nodes, d) for d, c in problem.terms)  # (Q,)
    psi_g2 = hermite(nodes, degs[g]) ** 2 if g.size else np.zeros((nodes.size, 0))
    inv_ridge = 1.0 / (problem.sigma2 + psi_g2 @ lam[:, g].T)  # (Q, L)
    big_m = np.einsum("q,ql,qa,qb->lab", weights, inv_ridge, psi_k, psi_k)
    r = np.einsum("q,ql,qa,q->la", weights, inv_ridge, psi_k, y)
    s = np.sqrt(lam[:, k])
    a = np.eye(k.size) + problem.n * s[:, :, None] * big_m * s[:, None, :]
    return s * np.linalg.solve(a, (s * problem.n * r)[..., None])[..., 0]


def rg_first_order(problem: ToyProblem, lambdas: ArrayLike,
                   kept: Sequence[int] = (1,)) -> np.ndarray:
    """:func:`rg_prediction` to first order in ``λ_>/σ²`` (``1/σ²(x) ≈ (1 − Σ_> λ_jψ_j²/σ²)/σ²``).

    With ``c⁰_a = nλ_a y_a/(nλ_a + σ²)``, ``Q_ab = Σ_> λ_g⟨ψ_aψ_bψ_g²⟩`` and
    ``r_a = Σ_> λ_g Σ_t y_t⟨ψ_aψ_tψ_g²⟩`` (exact moments): ``c_a = c⁰_a + (n/σ⁴)(Qc⁰ − r)_a /
    (1/λ_a + n/σ²)``. The paper's case gives ``−(nλ_2√30/σ⁴)/(1/λ_1 + n/σ²)``.

    Returns:
      ``(L, len(kept))``.

    Examples:
      >>> from rgjax.toy import ToyProblem, rg_first_order
      >>> print(f"{rg_first_order(ToyProblem(), [1.0, 0.1])[0, 0]:.4e}")
      -2.7386e-04
    """
    lam = check_lambdas(lambdas, problem.p)
    k, g = _kept_split(problem, kept)
    degs = np.asarray(problem.degrees)
    dk, dg = degs[k].tolist(), degs[g].tolist()
    n, s2 = problem.n, problem.sigma2
    c0 = standard_prediction(problem, lam)[:, k]
    mom_q = np.array([[[hermite_moment(a, b, d, d) for d in dg] for b in dk] for a in dk])
    mom_r = np.array([[sum(c * hermite_moment(a, t, d, d) for t, c in problem.terms)
                       for d in dg] for a in dk])
    big_q = np.einsum("abg,lg->lab", mom_q.reshape(len(dk), len(dk), len(dg)), lam[:, g])
    r = mom_r.reshape(len(dk), len(dg)) @ lam[:, g].T  # (k, L)
    lk = lam[:, k]
    # (1/λ + n/σ²)⁻¹ written as λ/(1 + nλ/σ²): 0 for λ = 0 instead of 0·∞.
    return c0 + lk / (1 + n * lk / s2) * (n / s2**2) * (np.einsum("lab,lb->la", big_q, c0) - r.T)
