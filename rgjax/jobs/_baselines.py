"""Reference implementations that ``rgjax bench`` times rgjax against (numpy, scipy, sklearn).

Each is written the way a user without rgjax would write it: whole-matrix numpy for the NNGP
Gram matrix, LAPACK ``eigh`` and ARPACK ``eigsh`` for the spectrum, one η at a time in a Python
loop for the theories (``scipy.optimize.brentq`` for the spectral-bias κ, as reference research
codes do), ``KernelRidge`` per training set for the empirical curve, and batched numpy for the
Hermite toy. scipy and scikit-learn are optional: :func:`optional` returns ``None`` when one is
missing and the bench then records no baseline (or the numpy one) for that stage.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["optional", "numpy_relu_nngp", "dense_eigh", "topk_eigh", "theory_ek", "theory_rg",
           "theory_spectral_bias", "kernel_ridge_mse", "toy_monte_carlo"]


def optional(name: str) -> ModuleType | None:
    """The module ``name`` (e.g. ``"scipy.linalg"``) if it is installed, else ``None``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def numpy_relu_nngp(x: np.ndarray, depth: int, w_std: float, b_std: float) -> np.ndarray:
    """``(N, N)`` NNGP of ``[Dense, ReLU] × depth + Dense`` from ``(N, d)`` inputs, whole-matrix
    numpy (the arc-cosine recursion in neural-tangents' conventions, as ``rgjax.fc`` uses)."""
    w2, b2 = w_std**2, b_std**2
    k = w2 * (x @ x.T) / x.shape[1] + b2
    for _ in range(depth):
        d = np.sqrt(np.diag(k))
        norm = np.outer(d, d)
        rho = np.clip(k / norm, -1.0, 1.0)
        theta = np.arccos(rho)
        k = w2 * norm * (np.sin(theta) + (np.pi - theta) * rho) / (2 * np.pi) + b2
    return k


def dense_eigh(K: np.ndarray) -> tuple[str, np.ndarray]:
    """Name and ``(N,)`` descending eigenvalues of a full ``eigh`` (eigenvectors computed too, as
    rgjax does): ``scipy.linalg.eigh`` with the divide-and-conquer driver, else numpy's."""
    linalg = optional("scipy.linalg")
    if linalg is not None:
        w, _ = linalg.eigh(K, driver="evd", check_finite=False)
        return "scipy.linalg.eigh", np.asarray(w)[::-1]
    w, _ = np.linalg.eigh(K)
    return "numpy.linalg.eigh", w[::-1]


def topk_eigh(K: np.ndarray, k: int) -> tuple[str, np.ndarray] | None:
    """Name and ``(k,)`` descending top eigenvalues from ARPACK (``scipy.sparse.linalg.eigsh``,
    eigenvectors too); ``None`` without scipy."""
    sparse = optional("scipy.sparse.linalg")
    if sparse is None:
        return None
    w, _ = sparse.eigsh(K, k=k, which="LA")
    return "scipy.sparse.linalg.eigsh", np.sort(np.asarray(w))[::-1]


def theory_ek(lam: np.ndarray, yk2: np.ndarray, etas: np.ndarray, s2: float) -> np.ndarray:
    """``(E,)`` EK with the bare ridge, ``Σ_k (σ²/(σ² + ηλ_k))² y_k²``, one η at a time."""
    return np.array([np.sum((s2 / (s2 + eta * lam)) ** 2 * yk2) for eta in etas])


def _rg_one(lam: np.ndarray, yk2: np.ndarray, t: np.ndarray, eta: float, s2: float,
            threshold: float, dof: bool) -> float:
    """The paper's RG (or rgjax's dof-corrected RG, docs/theory.md §3b) at one η."""
    signal = eta * lam
    ridge = s2 + t
    if dof:
        frac = 1.0 - np.arange(lam.size) / eta
        ok = frac > 0
        ridge = np.where(ok, ridge / np.where(ok, frac, 1.0), np.inf)
    with np.errstate(invalid="ignore"):
        learn = np.where(np.isfinite(ridge), signal / (signal + ridge), 0.0)
    below = learn < threshold
    if not below.any():
        return math.nan  # no mode below the threshold: not applicable (docs/theory.md §3)
    kappa = int(np.argmax(below))  # κ* = (first mode below T) − 1, 1-based
    r = s2 + (t[kappa - 1] if kappa > 0 else t[0] + lam[0])
    factor = 1.0
    if dof:
        if kappa >= eta:
            return math.nan
        factor = 1.0 / (1.0 - kappa / eta)
        r = r * factor
    return float(factor * np.sum((r / (r + signal)) ** 2 * yk2))


def theory_rg(lam: np.ndarray, yk2: np.ndarray, etas: np.ndarray, s2: float, threshold: float,
              dof: bool) -> np.ndarray:
    """``(E,)`` the paper's RG (``dof``: with the learned-mode correction), NaN where it is not
    applicable; the tail masses ``t_k = Σ_{j>k} λ_j`` once, then one η at a time."""
    t = np.maximum(np.cumsum(lam[::-1])[::-1] - lam, 0.0)
    return np.array([_rg_one(lam, yk2, t, float(eta), s2, threshold, dof) for eta in etas])


def theory_spectral_bias(lam: np.ndarray, yk2: np.ndarray, etas: np.ndarray,
                         s2: float) -> np.ndarray | None:
    """``(E,)`` spectral bias: ``brentq`` for ``κ = σ² + κ Σ_k λ_k/(ηλ_k + κ)`` on
    ``[σ², σ² + Σλ]`` (rtol 1e-14), then ``γ`` and ``E_g``, one η at a time; ``None`` without
    scipy."""
    optimize = optional("scipy.optimize")
    if optimize is None:
        return None
    out = []
    for eta in etas:
        def f(k: float, eta: float = float(eta)) -> float:
            return k - s2 - k * float(np.sum(lam / (eta * lam + k)))

        kap = optimize.brentq(f, s2, s2 + lam.sum(), xtol=1e-300, rtol=1e-14)
        d = eta * lam + kap
        gamma = np.sum(eta * lam**2 / d**2)
        out.append(np.sum(kap**2 * yk2 / d**2) / (1 - gamma))
    return np.array(out)


def kernel_ridge_mse(K: np.ndarray, y: np.ndarray, sets: Sequence[np.ndarray],
                     sigma2: float) -> tuple[str, np.ndarray]:
    """Name and ``(E, T)`` pool MSEs of exact GP regression on the training sets ``sets[e][t]``:
    scikit-learn ``KernelRidge(kernel="precomputed", alpha=σ²)`` per set, else
    ``numpy.linalg.solve`` of ``(K_SS + σ² I) α = y_S``."""
    kr = optional("sklearn.kernel_ridge")
    out = np.empty((len(sets), len(sets[0])))
    for e, per_trial in enumerate(sets):
        for t, idx in enumerate(per_trial):
            if kr is not None:
                model: Any = kr.KernelRidge(kernel="precomputed", alpha=sigma2)
                pred = model.fit(K[np.ix_(idx, idx)], y[idx]).predict(K[:, idx])
            else:
                a = K[np.ix_(idx, idx)] + sigma2 * np.eye(len(idx))
                pred = K[:, idx] @ np.linalg.solve(a, y[idx])
            out[e, t] = np.mean((pred - y) ** 2)
    return ("sklearn KernelRidge" if kr is not None else "numpy.linalg.solve"), out


def toy_monte_carlo(lambdas: np.ndarray, m: int, n: int, sigma2: float, seed: int,
                    block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SE ``(L, 2)`` of the exact posterior coefficients of the Hermite toy (features
    ψ_1, ψ_2, target ψ_5) over ``m`` data sets of ``n`` points: per block of data sets
    ``standard_normal`` inputs, the feature matrix, ``einsum`` for ``ΦᵀΦ`` and ``Φᵀy``, a batched
    ``numpy.linalg.solve`` and running sums (numpy's own random numbers, not rgjax's)."""
    rng = np.random.default_rng(seed)
    s = np.sqrt(lambdas)  # (L, 2)
    total = np.zeros(lambdas.size)
    total_sq = np.zeros((lambdas.size, lambdas.size))
    done = 0
    while done < m:
        b = min(block, m - done)
        x = rng.standard_normal((b, n))
        phi = np.stack([x, (x * x - 1) / math.sqrt(2)], axis=-1)  # ψ_1, ψ_2: (b, n, 2)
        y = (x**5 - 10 * x**3 + 15 * x) / math.sqrt(120)  # ψ_5
        gram = np.einsum("bia,bic->bac", phi, phi)
        rhs = np.einsum("bia,bi->ba", phi, y)
        a = np.eye(2) + s[:, :, None] * s[:, None, :] * gram[:, None] / sigma2  # (b, L, 2, 2)
        c = s * np.linalg.solve(a, (s * rhs[:, None] / sigma2)[..., None])[..., 0]
        flat = c.reshape(b, -1)
        total += flat.sum(axis=0)
        total_sq += flat.T @ flat
        done += b
    mean = total / m
    cov = (total_sq - m * np.outer(mean, mean)) / (m - 1)
    return mean.reshape(lambdas.shape), np.sqrt(np.diag(cov) / m).reshape(lambdas.shape)
