"""Differentiable RG: gradients from kernel hyper-parameters to the predicted test error, and optax
loops over them (THEORY §§3–4, DESIGN "optimize.py").

Everything from the kernel hyper-parameters to the predicted test MSE is one JAX function:
``params → NNGP kernel → Gram matrix K → spectrum → σ²_eff or κ → MSE``, so ``jax.grad`` gives the
derivative with respect to every ``W_std``/``b_std`` of every layer, the bare ridge σ², the
inputs X and the learnability threshold T, and ``jax.jit`` compiles it as one program.

Two gradient paths (``path=``) give the same *values*:

* ``"eigen"``: the theories of :mod:`rgjax.theory` on :func:`rgjax.from_gram`'s spectrum. The target
  coefficients ``y_k = v_kᵀy/√N`` need eigenvector derivatives, which ``from_gram`` sets to zero for
  rotations inside an exactly degenerate eigenspace: finite, but wrong for perturbations of K that
  mix such a subspace.
* ``"resolvent"`` (the default): eigenvector-free. The only y-dependent term is a resolvent form,
  ``Σ_k (r/(r + ηλ_k))² y_k² = r² yᵀ(r I + ηK/N)⁻² y / N`` (one Cholesky solve), and ``r`` — the
  effective ridge ``σ²_eff`` of the RG, or κ of the spectral-bias theory — together with
  ``γ = Σ_k ηλ_k²/(ηλ_k + κ)²`` comes from the eigenvalues alone. Sums ``Σ_k f(λ_k)`` are symmetric
  functions of the eigenvalues, whose derivatives are exact even on degenerate spectra. It is the
  default for optimisation because its gradient is exact on every spectrum at the same cost
  (one ``eigh`` plus one Cholesky per η). The RG's ``σ²_eff`` is a symmetric function only while no
  degenerate eigenspace straddles the cutoff; where one does, ``σ²_eff`` itself has a kink (a
  partial sum of equal eigenvalues) and no path can give a two-sided derivative.

The hard-threshold RG is piecewise smooth in the hyper-parameters (κ* is locally constant), so its
gradient exists almost everywhere but does not see where κ* jumps. The smooth cutoff
(``temperature`` τ, see :func:`rgjax.rg.effective_ridge`) is the default for optimisation; its
gradient tends to the hard one as τ → 0 wherever the latter exists.

Parameters are a dict of log-values, which keeps them positive and makes relative steps natural::

    {"log_W_std": (L,) or (), "log_b_std": (L,) or (), "log_sigma2": ()}

with ``L = depth + 1`` Dense layers of :func:`rgjax.fc` (shape ``()`` shares one value across all
layers). :func:`init_params` builds it, :func:`build_kernel` turns it into a kernel.

Optimisation: :func:`fit_kernel` (kernel hyper-parameters and σ² on a pool), :func:`fit_sigma2`
(σ² on a fixed spectrum), :func:`fit_curve` (a power law or the RG threshold T fitted to a
learning curve), all through one jit-compiled optax step (compiled once per call, not per step);
:func:`run_optimize` is the ``rgjax optimize`` job (JSON + figures, with an honest comparison
against a grid search of the empirical error).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rgjax import kernels, rg, theory
from rgjax._validate import (
    check_eta,
    check_finite,
    check_sigma2,
    check_threshold,
    concrete,
    warn,
)
from rgjax.spectrum import Spectrum, from_gram

__all__ = [
    "OBJECTIVES",
    "PATHS",
    "init_params",
    "build_kernel",
    "natural_params",
    "mse_rg_resolvent",
    "mse_spectral_bias_resolvent",
    "mse_from_gram",
    "predicted_mse",
    "FitResult",
    "fit_kernel",
    "fit_sigma2",
    "CurveFit",
    "fit_curve",
    "run_optimize",
    "format_summary",
    "DEFAULT_GRID",
]

#: Objectives: the paper's RG, rgjax's learned-mode corrected RG (THEORY §3b), spectral bias (§4).
OBJECTIVES = ("rg", "rg_dof", "spectral_bias")
#: Gradient paths (see the module docstring).
PATHS = ("resolvent", "eigen")
_PARAM_KEYS = ("log_W_std", "log_b_std", "log_sigma2")
_TRAINABLE = ("W_std", "b_std", "sigma2")
_CURVE_MODELS = ("power_law", "rg_threshold")


# ---------------------------------------------------------------------------------------------
# Checks (concrete values only; under tracing they are skipped like everywhere in rgjax)
# ---------------------------------------------------------------------------------------------


def _check_objective(objective: Any) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown `objective` {objective!r}; choose one of {OBJECTIVES}.")
    return objective


def _check_path(path: Any) -> str:
    if path not in PATHS:
        raise ValueError(f"unknown gradient `path` {path!r}; choose one of {PATHS}.")
    return path


def _check_temperature(temperature: Any) -> None:
    if temperature is None:
        return
    t = concrete(temperature)
    if t is not None and (t.ndim != 0 or not np.isfinite(t) or t <= 0):
        raise ValueError(
            f"`temperature` (smooth-cutoff τ) must be a finite scalar > 0, or None for the hard "
            f"threshold; got {t!r}."
        )


def _check_noise(noise: Any, objective: str) -> None:
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


def _check_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1; got {steps!r}.")
    return int(steps)


def _check_depth(depth: Any) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"`depth` must be an integer >= 0; got {depth!r}.")
    return int(depth)


def _check_params(params: Any, depth: int) -> None:
    if not isinstance(params, Mapping) or set(params) != set(_PARAM_KEYS):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(
            f"`params` must be a dict with exactly the keys {list(_PARAM_KEYS)} (log-values; build "
            f"it with rgjax.optimize.init_params); got {got}."
        )
    n_layers = depth + 1
    for key in ("log_W_std", "log_b_std"):
        shape = jnp.shape(params[key])
        if shape not in ((), (n_layers,)):
            raise ValueError(
                f"`params[{key!r}]` must have shape () (shared by all layers) or ({n_layers},) "
                f"(one per Dense layer of a depth-{depth} network); got {shape}."
            )
        check_finite(params[key], f"params[{key!r}]")
    if jnp.shape(params["log_sigma2"]) != ():
        raise ValueError(
            f"`params['log_sigma2']` must be a scalar; got {jnp.shape(params['log_sigma2'])}."
        )
    check_finite(params["log_sigma2"], "params['log_sigma2']")


def _check_xy(x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    check_finite(x, "x")
    check_finite(y, "y")
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    y = jnp.asarray(y, dtype=jnp.result_type(float))
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape (N, d) (flattened inputs); got {x.shape}.")
    if y.shape != (x.shape[0],):
        raise ValueError(f"`y` must have shape (N,) = ({x.shape[0]},) to match `x`; got {y.shape}.")
    return x, y


def _check_scalar_eta(eta: Any) -> None:
    check_eta(eta)
    if jnp.ndim(eta) != 0:
        raise ValueError(
            f"`eta` must be a scalar training-set size here; got shape {jnp.shape(eta)}."
        )


# ---------------------------------------------------------------------------------------------
# Parameters ↔ kernels
# ---------------------------------------------------------------------------------------------


def init_params(
    depth: int = 2,
    W_std: Any = math.sqrt(2.0),
    b_std: Any = 0.1,
    sigma2: float = 1e-8,
    *,
    per_layer: bool = True,
) -> dict[str, jax.Array]:
    """Log-parameters of a depth-``depth`` fully connected NNGP plus the ridge.

    Args:
      depth: hidden layers (``L = depth + 1`` Dense layers, as in :func:`rgjax.fc`).
      W_std: scalar, or a sequence of ``L`` values (one per Dense layer); all > 0.
      b_std: scalar, or a sequence of ``L`` values; all > 0.
      sigma2: bare ridge σ² > 0.
      per_layer: give every layer its own parameter (shape ``(L,)``); False shares one value
        (shape ``()``, needs scalar ``W_std``/``b_std``).

    Returns:
      ``{"log_W_std", "log_b_std", "log_sigma2"}`` as float64 (non-weak) arrays, so that optax
      updates never change their type (which would recompile the step).
    """
    depth = _check_depth(depth)
    n = depth + 1
    dtype = jnp.result_type(float)
    out = {}
    for key, value in (("W_std", W_std), ("b_std", b_std)):
        v = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(
                f"`{key}` must be finite and > 0 (it is optimised in log space); got {value!r}. "
                "For a bias-free layer use a tiny value such as 1e-6."
            )
        if v.ndim == 0:
            v = np.full(n, float(v)) if per_layer else v
        elif v.shape != (n,) or not per_layer:
            raise ValueError(
                f"`{key}` must be a scalar or {n} values (one per Dense layer, per_layer=True); "
                f"got shape {v.shape}."
            )
        out[f"log_{key}"] = jnp.asarray(np.log(v), dtype=dtype)
    check_sigma2(sigma2)
    out["log_sigma2"] = jnp.asarray(math.log(float(sigma2)), dtype=dtype)
    return out


def build_kernel(
    params: Mapping[str, Any], *, depth: int = 2, activation: Any = "relu"
) -> kernels.Serial:
    """The :func:`rgjax.fc` network ``[Dense, act] × depth + Dense`` with the params' W_std, b_std.

    Works on traced params (inside ``jit``/``grad``): the Dense layers' leaves are
    ``exp(log_W_std[i])``, ``exp(log_b_std[i])``.
    """
    depth = _check_depth(depth)
    n = depth + 1
    w = jnp.broadcast_to(jnp.exp(params["log_W_std"]), (n,))
    b = jnp.broadcast_to(jnp.exp(params["log_b_std"]), (n,))
    layers = list(kernels.fc(depth, activation).layers)  # activation layers from fc's own rules
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, kernels.Dense)]
    for j, i in enumerate(dense):
        layers[i] = kernels.Dense(w[j], b[j])
    return kernels.serial(*layers)


def natural_params(params: Mapping[str, Any], depth: int | None = None) -> dict[str, Any]:
    """``{"W_std": [...], "b_std": [...], "sigma2": float}`` (per-layer lists) from log-params.

    With ``depth`` shared (scalar) parameters are expanded to ``depth + 1`` layers.
    """
    out = {}
    for key in ("W_std", "b_std"):
        v = np.exp(np.asarray(params[f"log_{key}"], dtype=float))
        if depth is not None:
            v = np.broadcast_to(v, (depth + 1,))
        out[key] = np.atleast_1d(v).tolist()
    out["sigma2"] = float(np.exp(np.asarray(params["log_sigma2"], dtype=float)))
    return out


# ---------------------------------------------------------------------------------------------
# Eigenvector-free (resolvent) forms of the theories
# ---------------------------------------------------------------------------------------------


def _resolvent_error(K: jax.Array, y: jax.Array, eta: jax.Array, ridge: jax.Array) -> jax.Array:
    """``Σ_k (r/(r + ηλ_k))² y_k² = r² yᵀ(r I + ηK/N)⁻² y / N`` by one Cholesky solve.

    Scalar ``eta`` and ``ridge``; exact derivatives for any K (no eigenvectors involved).
    """
    n = K.shape[0]
    m = ridge * jnp.eye(n, dtype=K.dtype) + (eta / n) * K
    z = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(m, lower=True), y)
    return ridge**2 * jnp.dot(z, z) / n


def _over_eta(fn: Callable[[jax.Array], jax.Array], eta: jax.Array) -> jax.Array:
    """Apply a scalar-η function to every entry of ``eta`` (vmapped), keeping ``eta``'s shape."""
    return jax.vmap(fn)(jnp.ravel(eta)).reshape(jnp.shape(eta))


def _symmetric(K: jax.Array) -> jax.Array:
    # Gram builders are symmetric to round-off; exact symmetry keeps Cholesky and eigh consistent.
    return 0.5 * (K + K.T)


def _rg_resolvent(K, y, eta, sigma2, threshold, temperature, dof_correction):
    spec = from_gram(K, y)  # only the eigenvalues are used: their derivative is exact

    def one(e):
        ridge, factor, applicable = rg.effective_ridge_traced(
            spec, e, sigma2, threshold, dof_correction, temperature
        )
        err = factor * _resolvent_error(K, y, e, ridge)
        return jnp.where(applicable, err, jnp.nan)

    return _over_eta(one, eta)


def _sb_resolvent(K, y, eta, sigma2, noise):
    spec = from_gram(K, y)
    lam = spec.eigenvalues

    def one(e):
        # κ and γ are symmetric functions of the eigenvalues; only the bias needs y (resolvent).
        kap = theory.kappa_traced(spec, e, sigma2)
        gamma = jnp.sum(e * lam**2 / (e * lam + kap) ** 2)
        bias = _resolvent_error(K, y, e / kap, jnp.ones((), K.dtype))  # κ²yᵀ(κ+ηA)⁻²y/N
        return (bias + noise * gamma) / (1.0 - gamma)

    return _over_eta(one, eta)


def _validate_gram_call(K, y, eta, sigma2, threshold=None):
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
    K: Any,
    y: Any,
    eta: Any,
    sigma2: Any,
    threshold: Any = 0.5,
    *,
    dof_correction: bool = False,
    temperature: Any | None = None,
) -> jax.Array:
    """RG learning curve from the Gram matrix without eigenvector derivatives.

    Same value as ``mse_rg(from_gram(K, y), eta, sigma2, threshold, ...)``: ``σ²_eff`` (or
    ``σ²_dof`` and the ``1/(1 − κ*/η)`` factor) from the eigenvalues of ``K/N``, and
    ``Σ_k (r/(r + ηλ_k))² y_k² = r² yᵀ(r I + ηK/N)⁻² y / N`` by a Cholesky solve.

    Args:
      K: ``(N, N)`` symmetric PSD Gram matrix.  y: ``(N,)`` targets.
      eta: scalar or array of training-set sizes (one solve per entry).
      sigma2: bare ridge > 0 (scalar).  threshold: ``T ∈ (0, 1)``.
      dof_correction: rgjax's learned-mode correction (THEORY §3b).
      temperature: smooth-cutoff τ, or None for the hard threshold.

    Returns:
      ``eta``'s shape; NaN where the hard rule is not applicable.
    """
    _validate_gram_call(K, y, eta, sigma2, threshold)
    _check_temperature(temperature)
    K = jnp.asarray(K)
    return _mse_core_jit(K, jnp.asarray(y, K.dtype), jnp.asarray(eta, K.dtype), sigma2, threshold,
                         1.0 if temperature is None else temperature, 0.0,
                         objective="rg_dof" if dof_correction else "rg", path="resolvent",
                         hard=temperature is None)


def mse_spectral_bias_resolvent(
    K: Any, y: Any, eta: Any, sigma2: Any, noise: Any = 0.0
) -> jax.Array:
    """Spectral-bias ``E_g`` from the Gram matrix without eigenvector derivatives.

    Same value as ``mse_spectral_bias(from_gram(K, y), eta, sigma2, noise)``. κ (the root of
    ``κ = σ² + κ tr((ηK/N + κ I)⁻¹ K/N)``) and γ come from the eigenvalues of ``K/N``; the bias
    ``κ² yᵀ(κ I + ηK/N)⁻² y / N`` from a Cholesky solve. Its gradient is exact on any spectrum,
    degenerate or not.

    Returns:
      ``eta``'s shape.
    """
    _validate_gram_call(K, y, eta, sigma2)
    _check_noise(noise, "spectral_bias")
    K = jnp.asarray(K)
    return _mse_core_jit(K, jnp.asarray(y, K.dtype), jnp.asarray(eta, K.dtype), sigma2, 0.5, 1.0,
                         noise, objective="spectral_bias", path="resolvent", hard=False)


def _mse_core(K, y, eta, sigma2, threshold, temperature, noise, *, objective, path, hard):
    """Unvalidated objective on a Gram matrix (traceable); ``hard`` ignores ``temperature``."""
    temp = None if hard else temperature
    K = _symmetric(K)
    if path == "resolvent":
        if objective == "spectral_bias":
            return _sb_resolvent(K, y, eta, sigma2, noise)
        return _rg_resolvent(K, y, eta, sigma2, threshold, temp, objective == "rg_dof")
    spec = from_gram(K, y)
    if objective == "spectral_bias":
        return theory.mse_spectral_bias(spec, eta, sigma2, noise)
    return theory.mse_rg(spec, eta, sigma2, threshold, dof_correction=objective == "rg_dof",
                         temperature=temp)


# Public entry points share one compiled program per (objective, path, hard): eager calls would
# dispatch the κ while-loop and the eigh derivative op by op.
_mse_core_jit = jax.jit(_mse_core, static_argnames=("objective", "path", "hard"))


def mse_from_gram(
    K: Any,
    y: Any,
    eta: Any,
    sigma2: Any,
    *,
    objective: str = "rg",
    threshold: Any = 0.5,
    temperature: Any | None = 0.05,
    noise: Any = 0.0,
    path: str = "resolvent",
) -> jax.Array:
    """The predicted test MSE of ``objective`` from a Gram matrix, by either gradient ``path``.

    Returns:
      ``eta``'s shape.
    """
    _check_objective(objective)
    _check_path(path)
    _check_temperature(temperature)
    _check_noise(noise, objective)
    _validate_gram_call(K, y, eta, sigma2, threshold)
    K = jnp.asarray(K)
    hard = temperature is None and objective != "spectral_bias"  # τ is irrelevant there
    return _mse_core_jit(K, jnp.asarray(y, K.dtype), jnp.asarray(eta, K.dtype), sigma2, threshold,
                         1.0 if temperature is None else temperature, noise,
                         objective=objective, path=path, hard=hard)


@partial(jax.jit, static_argnames=("objective", "path", "hard", "depth", "activation"))
def _predicted_mse_jit(params, x, y, eta, threshold, temperature, noise, *,
                       objective, path, hard, depth, activation):
    K = build_kernel(params, depth=depth, activation=activation)(x)
    sigma2 = jnp.exp(params["log_sigma2"])
    return _mse_core(K, y, eta, sigma2, threshold, temperature, noise,
                     objective=objective, path=path, hard=hard)


def predicted_mse(
    params: Mapping[str, Any],
    x: Any,
    y: Any,
    eta: Any,
    *,
    objective: str = "rg",
    threshold: Any = 0.5,
    temperature: Any | None = 0.05,
    depth: int = 2,
    activation: Any = "relu",
    path: str = "resolvent",
    noise: Any = 0.0,
) -> jax.Array:
    """Predicted test MSE at training-set size ``eta`` as one differentiable, jit-compiled function.

    ``params → fc(depth, activation) kernel → K(x, x) → spectrum → theory``. Usable under
    ``jax.grad``/``jax.jit``/``jax.vmap`` with respect to ``params`` (every layer's ``W_std``,
    ``b_std`` and σ², in log space), ``x``, ``y``, ``eta``, ``threshold``, ``temperature`` and
    ``noise``.

    Args:
      params: ``{"log_W_std", "log_b_std", "log_sigma2"}`` (see :func:`init_params`).
      x: ``(N, d)`` pool inputs.  y: ``(N,)`` pool targets.
      eta: training-set size (scalar or array; one solve per entry on the resolvent path).
      objective: ``"rg"`` (paper), ``"rg_dof"`` (rgjax §3b) or ``"spectral_bias"``.
      threshold: learnability threshold ``T`` of the RG objectives.
      temperature: smooth-cutoff τ of the RG objectives; None is the hard threshold (piecewise
        smooth; NaN where not applicable).
      depth: hidden layers of the :func:`rgjax.fc` architecture.
      activation: its activation.
      path: ``"resolvent"`` (default; exact gradients on degenerate spectra) or ``"eigen"``.
      noise: label-noise variance ε² (spectral bias only).

    Returns:
      ``eta``'s shape (a scalar for scalar ``eta``).
    """
    _check_objective(objective)
    _check_path(path)
    depth = _check_depth(depth)
    _check_params(params, depth)
    _check_temperature(temperature)
    _check_noise(noise, objective)
    check_threshold(threshold)
    check_eta(eta)
    x, y = _check_xy(x, y)
    return _predicted_mse_jit(
        dict(params), x, y, jnp.asarray(eta, x.dtype), threshold,
        1.0 if temperature is None else temperature, noise,
        objective=objective, path=path, hard=temperature is None and objective != "spectral_bias",
        depth=depth, activation=activation,
    )


# ---------------------------------------------------------------------------------------------
# One optax loop for every fit
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Trajectory:
    params: list  # steps + 1 pytrees (host numpy), params[i] is the input of step i
    loss: np.ndarray  # (steps + 1,) loss at params[i]
    grad_norm: np.ndarray  # (steps + 1,)
    skipped: np.ndarray  # (steps,) True where the loss/gradient was not finite (no update)
    n_traces: int
    seconds: float


def _optax_loop(
    loss_fn: Callable[..., jax.Array],
    params: Any,
    args: tuple,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    mask: Any = None,
    log: Callable[[str], None] | None = None,
    log_every: int = 25,
    progress: bool = False,
    desc: str = "optimise",
) -> _Trajectory:
    """Minimise ``loss_fn(params, *args)`` with ``optimizer`` for ``steps`` steps.

    One jit-compiled step function; ``args`` are passed to it (never closed over: constants would
    be folded into the program at compile time, and a different pool would recompile). Steps
    whose loss or gradient is not finite leave params and optimiser state unchanged and are
    flagged. The loop runs one extra evaluation (its update discarded) for the final loss.
    """
    optimizer = optax.with_extra_args_support(optimizer)
    traces = [0]

    def step(p, state, *a):
        traces[0] += 1  # Python side effect: runs once per trace, i.e. per compilation
        loss, grads = jax.value_and_grad(loss_fn)(p, *a)
        if mask is not None:
            grads = jax.tree_util.tree_map(lambda g, m: g * m, grads, mask)
        updates, new_state = optimizer.update(
            grads, state, p, value=loss, grad=grads, value_fn=lambda q: loss_fn(q, *a)
        )
        if mask is not None:  # e.g. weight decay would still move frozen leaves
            updates = jax.tree_util.tree_map(lambda u, m: u * m, updates, mask)
        new_p = optax.apply_updates(p, updates)
        leaves = jax.tree_util.tree_leaves(grads)
        gnorm = jnp.sqrt(sum(jnp.sum(g**2) for g in leaves))
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        keep = partial(jax.tree_util.tree_map, lambda n, o: jnp.where(ok, n, o))
        return keep(new_p, p), keep(new_state, state), loss, gnorm, ok

    step_jit = jax.jit(step)
    # Optimiser states may start with weak-typed scalars that come back strongly typed (optax's
    # L-BFGS line-search info): a different input type on step 2 would compile the step again.
    state = jax.tree_util.tree_map(_strong, optimizer.init(params))
    params = jax.tree_util.tree_map(_strong, params)
    history, losses, gnorms, oks = [params], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step")
    t0 = time.perf_counter()
    for i in range(steps + 1):
        new_params, new_state, loss, gnorm, ok = step_jit(params, state, *args)
        losses.append(loss)
        gnorms.append(gnorm)
        if i == steps:
            break  # final evaluation only
        oks.append(ok)
        params, state = new_params, new_state
        history.append(params)
        if bar is not None:
            bar.update(1)
        if log is not None and (i % log_every == 0 or i == steps - 1):
            log(f"{desc}: step {i + 1}/{steps}  loss {float(loss):.6g}  |grad| {float(gnorm):.3g}")
    jax.block_until_ready(losses[-1])
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    host = [jax.tree_util.tree_map(np.asarray, p) for p in history]
    skipped = ~np.asarray(jnp.stack(oks)) if oks else np.zeros(0, bool)
    if skipped.any():
        warn(
            f"{desc}: {int(skipped.sum())} of {steps} steps had a non-finite loss or gradient and "
            "were skipped (with the hard threshold the RG is NaN where it is not applicable; use "
            "a smooth cutoff, temperature=...)."
        )
    return _Trajectory(
        params=host,
        loss=np.asarray(jnp.stack(losses), dtype=float),
        grad_norm=np.asarray(jnp.stack(gnorms), dtype=float),
        skipped=skipped,
        n_traces=traces[0],
        seconds=seconds,
    )


def _strong(a: Any) -> Any:
    """``a`` without JAX's weak type (same dtype); non-arrays unchanged."""
    if isinstance(a, jax.Array) and a.weak_type:
        return jnp.asarray(a, dtype=a.dtype)
    return a


def _default_optimizer(learning_rate: float = 0.05) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


def _describe(optimizer: Any) -> str:
    return getattr(optimizer, "__name__", None) or type(optimizer).__name__


# ---------------------------------------------------------------------------------------------
# Fitting kernel hyper-parameters
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class FitResult:
    """Trajectory and result of :func:`fit_kernel` / :func:`fit_sigma2`.

    Attributes (S = steps, L = number of Dense layers, or 1 for shared parameters):
      objective: the objective minimised.
      eta: the training-set size.
      loss: ``(S + 1,)`` objective at the parameters entering step i; ``loss[S]`` at the final ones.
      W_std, b_std: ``(S + 1, L)`` parameter trajectories (None for :func:`fit_sigma2`).
      sigma2: ``(S + 1,)`` ridge trajectory.
      grad_norm: ``(S + 1,)`` gradient norm (log-parameters; frozen ones excluded).
      skipped: ``(S,)`` steps skipped because the loss or gradient was not finite.
      params: final log-parameters (numpy).
      kernel: the final kernel (an :func:`rgjax.fc`-shaped ``Serial``; None for ``fit_sigma2``).
      config: the settings (threshold, temperature, path, depth, activation, noise, trainable,
        steps, optimizer).
      n_traces: how many times the step function was traced (1: no recompilation across steps).
      seconds: wall time of the loop (including the one compilation).
    """

    objective: str
    eta: float
    loss: np.ndarray
    W_std: np.ndarray | None
    b_std: np.ndarray | None
    sigma2: np.ndarray
    grad_norm: np.ndarray
    skipped: np.ndarray
    params: dict[str, np.ndarray]
    kernel: Any
    config: dict[str, Any]
    n_traces: int
    seconds: float

    @property
    def initial_loss(self) -> float:
        return float(self.loss[0])

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    @property
    def steps(self) -> int:
        return int(self.loss.shape[0] - 1)

    def natural(self, index: int = -1) -> dict[str, Any]:
        """``{"W_std": [...], "b_std": [...], "sigma2": float}`` at trajectory entry ``index``."""
        out: dict[str, Any] = {"sigma2": float(self.sigma2[index])}
        if self.W_std is not None:
            out["W_std"] = self.W_std[index].tolist()
            out["b_std"] = self.b_std[index].tolist()
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists and numbers; the kernel object is left out)."""
        return {
            "objective": self.objective,
            "eta": float(self.eta),
            "loss": self.loss.tolist(),
            "W_std": None if self.W_std is None else self.W_std.tolist(),
            "b_std": None if self.b_std is None else self.b_std.tolist(),
            "sigma2": self.sigma2.tolist(),
            "grad_norm": self.grad_norm.tolist(),
            "skipped": self.skipped.tolist(),
            "params": {k: np.asarray(v).tolist() for k, v in self.params.items()},
            "initial": self.natural(0),
            "final": self.natural(-1),
            "initial_loss": self.initial_loss,
            "final_loss": self.final_loss,
            "config": dict(self.config),
            "n_traces": int(self.n_traces),
            "seconds": float(self.seconds),
        }


def _trainable_mask(params: Mapping[str, Any], trainable: Sequence[str]) -> dict[str, Any] | None:
    bad = [t for t in trainable if t not in _TRAINABLE]
    if bad or not trainable:
        raise ValueError(
            f"`trainable` must be a non-empty subset of {_TRAINABLE}; got {tuple(trainable)!r}."
        )
    if set(trainable) == set(_TRAINABLE):
        return None
    return {k: jnp.full(jnp.shape(v), float(k[4:] in trainable), jnp.result_type(float))
            for k, v in params.items()}


def _fit_loss(objective, path, hard, depth, activation):
    def loss(params, x, y, eta, threshold, temperature, noise):
        return _predicted_mse_jit(params, x, y, eta, threshold, temperature, noise,
                                  objective=objective, path=path, hard=hard, depth=depth,
                                  activation=activation)

    return loss


def fit_kernel(
    task_or_inputs: Any,
    *,
    eta: float,
    objective: str = "rg",
    init: Mapping[str, Any] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 150,
    threshold: float = 0.5,
    temperature: float | None = 0.05,
    y: Any = None,
    activation: Any = "relu",
    depth: int = 2,
    path: str = "resolvent",
    noise: float = 0.0,
    trainable: Sequence[str] = _TRAINABLE,
    log: Callable[[str], None] | None = None,
    log_every: int = 25,
    progress: bool = False,
) -> FitResult:
    """Minimise the predicted test MSE at training-set size ``eta`` over W_std, b_std and σ².

    Args:
      task_or_inputs: a :class:`rgjax.Task` (its ``x`` and ``y`` are used) or an ``(N, d)`` array
        ``x`` together with ``y``.
      eta: training-set size η > 0.
      objective: ``"rg"`` (paper), ``"rg_dof"`` (rgjax §3b) or ``"spectral_bias"``.
      init: initial log-parameters (default ``init_params(depth)``: W_std = √2, b_std = 0.1 per
        layer, σ² = 1e-8); shape ``()`` entries are shared across layers and stay shared.
      optimizer: any optax transformation (default ``optax.adam(0.05)``, i.e. ≈5% relative steps).
      steps: number of optimisation steps ≥ 1.
      threshold: the RG learnability threshold T.
      temperature: the RG cutoff's smoothness (default: the smooth cutoff τ = 0.05; None = hard).
      y: ``(N,)`` targets when ``task_or_inputs`` is an array.
      activation: activation of the :func:`rgjax.fc` architecture.
      depth: its hidden layers.
      path: gradient path (default ``"resolvent"``, exact on degenerate spectra).
      noise: label-noise variance (spectral bias only).
      trainable: which of ``"W_std", "b_std", "sigma2"`` to optimise (others stay at ``init``).
      log: called with a progress line every ``log_every`` steps (e.g. ``print``).
      progress: show a tqdm bar over steps.

    Returns:
      A :class:`FitResult`; ``result.kernel`` is the final kernel, ``result.natural()`` the final
      (W_std, b_std, σ²).
    """
    x, y = _inputs(task_or_inputs, y)
    objective = _check_objective(objective)
    path = _check_path(path)
    depth = _check_depth(depth)
    steps = _check_steps(steps)
    _check_scalar_eta(eta)
    check_threshold(threshold)
    _check_temperature(temperature)
    _check_noise(noise, objective)
    params = init_params(depth) if init is None else {k: jnp.asarray(v, jnp.result_type(float))
                                                       for k, v in init.items()}
    _check_params(params, depth)
    mask = _trainable_mask(params, tuple(trainable))
    optimizer = _default_optimizer() if optimizer is None else optimizer
    hard = temperature is None and objective != "spectral_bias"
    loss_fn = _fit_loss(objective, path, hard, depth, activation)
    dtype = x.dtype
    args = (x, y, jnp.asarray(eta, dtype), jnp.asarray(threshold, dtype),
            jnp.asarray(1.0 if temperature is None else temperature, dtype),
            jnp.asarray(noise, dtype))
    traj = _optax_loop(loss_fn, params, args, optimizer, steps, mask=mask, log=log,
                       log_every=log_every, progress=progress, desc=f"fit_kernel[{objective}]")
    n_layers = depth + 1
    w = np.stack([np.broadcast_to(np.exp(p["log_W_std"]), (n_layers,)) for p in traj.params])
    b = np.stack([np.broadcast_to(np.exp(p["log_b_std"]), (n_layers,)) for p in traj.params])
    s2 = np.array([float(np.exp(p["log_sigma2"])) for p in traj.params])
    final = traj.params[-1]
    config = dict(threshold=float(threshold),
                  temperature=None if temperature is None else float(temperature),
                  path=path, depth=depth, activation=str(activation), noise=float(noise),
                  trainable=list(trainable), steps=steps, optimizer=_describe(optimizer),
                  n_pool=int(x.shape[0]))
    return FitResult(
        objective=objective, eta=float(eta), loss=traj.loss, W_std=w, b_std=b, sigma2=s2,
        grad_norm=traj.grad_norm, skipped=traj.skipped, params=final,
        kernel=build_kernel(final, depth=depth, activation=activation), config=config,
        n_traces=traj.n_traces, seconds=traj.seconds,
    )


def _inputs(task_or_inputs: Any, y: Any) -> tuple[jax.Array, jax.Array]:
    if hasattr(task_or_inputs, "x") and hasattr(task_or_inputs, "y"):
        if y is not None:
            raise ValueError(
                "pass `y` only with an array of inputs; a Task carries its own targets."
            )
        return _check_xy(task_or_inputs.x, task_or_inputs.y)
    if y is None:
        raise ValueError(
            "`y` is required when `task_or_inputs` is an array of inputs (not a Task)."
        )
    return _check_xy(task_or_inputs, y)


def _sigma2_loss(objective, hard):
    def loss(params, spec, eta, threshold, temperature, noise):
        s2 = jnp.exp(params["log_sigma2"])
        if objective == "spectral_bias":
            return theory.mse_spectral_bias(spec, eta, s2, noise)
        return theory.mse_rg(spec, eta, s2, threshold, dof_correction=objective == "rg_dof",
                             temperature=None if hard else temperature)

    return loss


def fit_sigma2(
    spec: Spectrum,
    eta: float,
    *,
    objective: str = "spectral_bias",
    sigma2: float = 1.0,
    noise: float = 0.0,
    threshold: float = 0.5,
    temperature: float | None = 0.05,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 300,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Optimise the ridge σ² (in log space) for a fixed spectrum at training-set size ``eta``.

    The kernel is fixed, so no eigenvector derivatives are involved. With label noise ε² and a
    target drawn from the kernel's own prior (``y_k² = c λ_k``) the spectral-bias optimum is
    ``σ² = ε²/c`` (the Bayes-optimal ridge).

    Returns:
      A :class:`FitResult` with ``W_std = b_std = kernel = None``.
    """
    if not isinstance(spec, Spectrum):
        raise TypeError(f"`spec` must be an rgjax Spectrum; got {type(spec).__name__}.")
    objective = _check_objective(objective)
    steps = _check_steps(steps)
    _check_scalar_eta(eta)
    check_sigma2(sigma2)
    check_threshold(threshold)
    _check_temperature(temperature)
    _check_noise(noise, objective)
    dtype = spec.eigenvalues.dtype
    params = {"log_sigma2": jnp.asarray(math.log(sigma2), dtype)}
    hard = temperature is None
    args = (spec, jnp.asarray(eta, dtype), jnp.asarray(threshold, dtype),
            jnp.asarray(1.0 if hard else temperature, dtype), jnp.asarray(noise, dtype))
    optimizer = _default_optimizer() if optimizer is None else optimizer
    traj = _optax_loop(_sigma2_loss(objective, hard), params, args, optimizer, steps, log=log,
                       desc=f"fit_sigma2[{objective}]")
    s2 = np.array([float(np.exp(p["log_sigma2"])) for p in traj.params])
    config = dict(threshold=float(threshold), temperature=None if hard else float(temperature),
                  noise=float(noise), steps=steps, optimizer=_describe(optimizer),
                  trainable=["sigma2"])
    return FitResult(
        objective=objective, eta=float(eta), loss=traj.loss, W_std=None, b_std=None, sigma2=s2,
        grad_norm=traj.grad_norm, skipped=traj.skipped, params=traj.params[-1], kernel=None,
        config=config, n_traces=traj.n_traces, seconds=traj.seconds,
    )


# ---------------------------------------------------------------------------------------------
# Fitting learning curves
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class CurveFit:
    """A model fitted to a learning curve by least squares in log space.

    Attributes:
      model: ``"power_law"`` (``a η^(−b)`` plus ``c`` with ``floor``) or ``"rg_threshold"``.
      params: fitted values: ``{"a", "b"}`` (+ ``"c"``), or ``{"threshold"}``.
      etas: ``(E,)`` the training-set sizes.  mse: ``(E,)`` the data.
      fitted: ``(E,)`` the fitted curve at ``etas``.
      loss: final mean squared log-residual.  losses: ``(S + 1,)`` its trajectory.
      n_traces: compilations of the step function (1).
      config: the settings (floor, sigma2, temperature, dof_correction, steps).
    """

    model: str
    params: dict[str, float]
    etas: np.ndarray
    mse: np.ndarray
    fitted: np.ndarray
    loss: float
    losses: np.ndarray
    n_traces: int
    config: dict[str, Any]
    spec: Spectrum | None = None

    def evaluate(self, etas: Any) -> np.ndarray:
        """The fitted curve at other training-set sizes."""
        e = np.asarray(etas, dtype=float)
        if self.model == "power_law":
            p = self.params
            return p["a"] * e ** (-p["b"]) + p.get("c", 0.0)
        c = self.config
        return np.asarray(theory.mse_rg(self.spec, jnp.asarray(e), c["sigma2"],
                                        self.params["threshold"], temperature=c["temperature"],
                                        dof_correction=c["dof_correction"]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the spectrum is left out)."""
        return {
            "model": self.model,
            "params": dict(self.params),
            "etas": self.etas.tolist(),
            "mse": self.mse.tolist(),
            "fitted": self.fitted.tolist(),
            "loss": float(self.loss),
            "losses": self.losses.tolist(),
            "n_traces": int(self.n_traces),
            "config": dict(self.config),
        }


def _power_law_log(p, log_eta):
    main = p["log_a"] - p["b"] * log_eta
    if "log_c" in p:
        return jnp.logaddexp(main, p["log_c"])  # log(a η^-b + c), stable
    return main


def _power_law_loss(p, log_eta, log_mse):
    return jnp.mean((_power_law_log(p, log_eta) - log_mse) ** 2)


def _threshold_loss(p, spec, etas, log_mse, sigma2, temperature, dof):
    t = jax.nn.sigmoid(p["logit_threshold"])
    pred = theory.mse_rg(spec, etas, sigma2, t, temperature=temperature, dof_correction=dof)
    return jnp.mean((jnp.log(pred) - log_mse) ** 2)


def fit_curve(
    etas: Any,
    mse: Any,
    *,
    model: str = "power_law",
    floor: bool = False,
    spec: Spectrum | None = None,
    sigma2: float | None = None,
    temperature: float = 0.05,
    dof_correction: bool = False,
    init: Mapping[str, float] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 200,
) -> CurveFit:
    """Fit a learning curve by least squares in log space (``mean (log model − log mse)²``), optax.

    Models:

    * ``"power_law"``: ``a η^(−b)``, or ``a η^(−b) + c`` with ``floor=True``; parameters
      ``log a``, ``b``, ``log c``. Initialised by the closed-form log-log regression (exact
      without the floor), then refined.
    * ``"rg_threshold"``: the smooth-cutoff RG curve ``mse_rg(spec, η, σ², T, temperature=τ)`` on
      the given spectrum and ridge, fitted over ``T = sigmoid(logit)`` ∈ (0, 1) (init 0.5).

    Args:
      etas: ``(E,)`` training-set sizes (> 0, E ≥ 2).  mse: ``(E,)`` errors (> 0).
      init: starting values in natural units (``{"a", "b", "c"}`` or ``{"threshold"}``).
      optimizer: default L-BFGS (``optax.lbfgs()``, with its line search), which converges on
        these small least-squares problems in tens of steps.
      steps: optimisation steps ≥ 1.

    Returns:
      A :class:`CurveFit`.
    """
    if model not in _CURVE_MODELS:
        raise ValueError(f"unknown `model` {model!r}; choose one of {_CURVE_MODELS}.")
    steps = _check_steps(steps)
    e = np.asarray(etas, dtype=float)
    m = np.asarray(mse, dtype=float)
    if e.ndim != 1 or m.shape != e.shape or e.size < 2:
        raise ValueError(
            f"`etas` and `mse` must be 1-D of equal length >= 2; got shapes {e.shape} and "
            f"{m.shape}."
        )
    if not (np.all(np.isfinite(e)) and np.all(e > 0)):
        raise ValueError("`etas` must be finite and > 0.")
    if not (np.all(np.isfinite(m)) and np.all(m > 0)):
        raise ValueError(
            "`mse` must be finite and > 0 (the fit is in log space); drop NaN/0 points."
        )
    optimizer = optax.lbfgs() if optimizer is None else optimizer
    log_e, log_m = jnp.asarray(np.log(e)), jnp.asarray(np.log(m))
    init = dict(init or {})
    if model == "power_law":
        if spec is not None or sigma2 is not None:
            raise ValueError("`spec`/`sigma2` belong to model='rg_threshold', not 'power_law'.")
        slope, intercept = np.polyfit(np.log(e), np.log(m), 1)
        a0 = float(init.get("a", math.exp(intercept)))
        b0 = float(init.get("b", -slope))
        p0 = {"log_a": math.log(a0), "b": b0}
        if floor:
            p0["log_c"] = math.log(float(init.get("c", 0.1 * m.min())))
        params = {k: jnp.asarray(v, jnp.result_type(float)) for k, v in p0.items()}
        traj = _optax_loop(_power_law_loss, params, (log_e, log_m), optimizer, steps,
                           desc="fit_curve[power_law]")
        p = traj.params[-1]
        out = {"a": float(np.exp(p["log_a"])), "b": float(p["b"])}
        if floor:
            out["c"] = float(np.exp(p["log_c"]))
        fitted = np.exp(np.asarray(_power_law_log(p, log_e)))
        config = {"floor": bool(floor), "steps": steps, "optimizer": _describe(optimizer)}
    else:
        if not isinstance(spec, Spectrum):
            raise ValueError(
                "model='rg_threshold' needs `spec`, an rgjax Spectrum (from_gram(K, y))."
            )
        if sigma2 is None:
            raise ValueError(
                "model='rg_threshold' needs the bare ridge `sigma2` of the learning curve."
            )
        check_sigma2(sigma2)
        _check_temperature(temperature)
        if temperature is None:
            raise ValueError("model='rg_threshold' needs a smooth cutoff: pass temperature > 0.")
        t0 = float(init.get("threshold", 0.5))
        check_threshold(t0, "init['threshold']")
        dtype = spec.eigenvalues.dtype
        params = {"logit_threshold": jnp.asarray(math.log(t0 / (1 - t0)), dtype)}
        args = (spec, jnp.asarray(e, dtype), log_m, jnp.asarray(sigma2, dtype),
                jnp.asarray(temperature, dtype))
        traj = _optax_loop(partial(_threshold_loss, dof=bool(dof_correction)), params, args,
                           optimizer, steps, desc="fit_curve[rg_threshold]")
        p = traj.params[-1]
        t = float(jax.nn.sigmoid(p["logit_threshold"]))
        out = {"threshold": t}
        fitted = np.asarray(theory.mse_rg(spec, jnp.asarray(e, dtype), sigma2, t,
                                          temperature=temperature, dof_correction=dof_correction))
        config = {"sigma2": float(sigma2), "temperature": float(temperature),
                  "dof_correction": bool(dof_correction), "steps": steps,
                  "optimizer": _describe(optimizer)}
    return CurveFit(model=model, params=out, etas=e, mse=m, fitted=fitted,
                    loss=float(traj.loss[-1]), losses=traj.loss, n_traces=traj.n_traces,
                    config=config, spec=spec if model == "rg_threshold" else None)
