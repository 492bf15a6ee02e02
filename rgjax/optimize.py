"""Differentiable RG: gradients from kernel hyper-parameters to the predicted test error, and optax
loops over them (docs/theory.md §§3–4).

Everything from the kernel hyper-parameters to the predicted test MSE is one JAX function:
``params → NNGP kernel → Gram matrix K → spectrum → σ²_eff or κ → MSE``, so ``jax.grad`` gives the
derivative with respect to every ``W_std``/``b_std`` of every layer, the bare ridge σ², the
inputs X and the learnability threshold T, and ``jax.jit`` compiles it as one program.

Two gradient paths (``path=``, see :func:`rgjax.theory.mse_from_gram`) give the same *values*.
``"eigen"`` runs the theories on :func:`rgjax.spectrum.from_gram`'s spectrum; the target
coefficients ``y_k = v_kᵀy/√N`` need eigenvector derivatives, which are wrong for perturbations of
K that mix an exactly degenerate eigenspace. ``"resolvent"`` (the default) needs no eigenvectors
(docs/theory.md §4): the y-dependent term is one Cholesky solve and everything else a symmetric
function of the eigenvalues, so its gradient is exact on every spectrum at the same cost.

The hard-threshold RG is piecewise smooth in the hyper-parameters (κ* is locally constant), so its
gradient exists almost everywhere but does not see where κ* jumps. The smooth cutoff
(``temperature`` τ, see :func:`rgjax.rg.effective_ridge`) is the default for optimisation; its
gradient tends to the hard one as τ → 0 wherever the latter exists.

Parameters are a dict of log-values, which keeps them positive and makes relative steps natural::

    {"log_W_std": (L,) or (), "log_b_std": (L,) or (), "log_sigma2": ()}

with ``L = depth + 1`` Dense layers of :func:`rgjax.kernels.fc` (shape ``()`` shares one value
across all layers). :func:`init_params` builds it, :func:`build_kernel` turns it into a kernel.

Optimisation: :func:`fit_kernel` (kernel hyper-parameters and σ² on a pool), :func:`fit_sigma2`
(σ² on a fixed spectrum), :func:`fit_curve` (a power law or the RG threshold T fitted to a
learning curve), all through one jit-compiled optax step (compiled once per call, not per step).
The ``rgjax optimize`` job (JSON, figures, and an honest comparison against a grid search of the
empirical error) is :mod:`rgjax.jobs.optimize`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rgjax._curvefit import CurveFit, fit_curve
from rgjax._loop import describe_optimizer, optax_loop
from rgjax._pytree import dataclass, field
from rgjax._typing import Array, ArrayLike, Scalar
from rgjax._validate import (
    check_eta,
    check_finite,
    check_int,
    check_sigma2,
    check_temperature,
    check_threshold,
)
from rgjax.kernels import Dense, Serial, fc, serial
from rgjax.spectrum import Spectrum
from rgjax.theory import (
    OBJECTIVES,
    PATHS,
    check_noise,
    check_objective,
    check_path,
    mse_from_gram_traced,
    mse_rg,
    mse_spectral_bias,
)

__all__ = [
    "OBJECTIVES",
    "PATHS",
    "init_params",
    "build_kernel",
    "natural_params",
    "predicted_mse",
    "FitResult",
    "fit_kernel",
    "fit_sigma2",
    "CurveFit",
    "fit_curve",
]

_PARAM_KEYS = ("log_W_std", "log_b_std", "log_sigma2")
_TRAINABLE = ("W_std", "b_std", "sigma2")
_SQRT2 = math.sqrt(2.0)  # the default W_std: He initialisation for ReLU
_LEARNING_RATE = 0.05  # adam's default step: ≈ 5% relative changes of the hyper-parameters
#: One object, so that fits with the default optimiser share their compiled step.
_DEFAULT_OPTIMIZER = optax.adam(_LEARNING_RATE)
#: Log-parameters: ``{"log_W_std", "log_b_std", "log_sigma2"}`` (see :func:`init_params`).
Params = Mapping[str, ArrayLike]


# ---------------------------------------------------------------------------------------------
# Checks (concrete values only; under tracing they are skipped like everywhere in rgjax)
# ---------------------------------------------------------------------------------------------


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


def _check_xy(x: ArrayLike, y: ArrayLike) -> tuple[Array, Array]:
    check_finite(x, "x")
    check_finite(y, "y")
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    y = jnp.asarray(y, dtype=jnp.result_type(float))
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape (N, d) (flattened inputs); got {x.shape}.")
    if y.shape != (x.shape[0],):
        raise ValueError(f"`y` must have shape (N,) = ({x.shape[0]},) to match `x`; got {y.shape}.")
    return x, y


def _check_scalar_eta(eta: ArrayLike) -> None:
    check_eta(eta)
    if jnp.ndim(eta) != 0:
        raise ValueError(
            f"`eta` must be a scalar training-set size here; got shape {jnp.shape(eta)}."
        )


def task_arrays(task_or_inputs: Any, y: ArrayLike | None = None) -> tuple[Array, Array]:
    """``(x, y)``: the ``(N, d)`` inputs and ``(N,)`` targets of a Task, or of arrays, validated.

    Args:
      task_or_inputs: anything with ``.x`` and ``.y`` (a :class:`rgjax.datasets.Task`), or ``x``.
      y: the targets when ``task_or_inputs`` is an array (None with a Task).

    Returns:
      Float arrays (float64 when x64 is on) of shapes ``(N, d)`` and ``(N,)``.
    """
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


# ---------------------------------------------------------------------------------------------
# Parameters ↔ kernels
# ---------------------------------------------------------------------------------------------


def init_params(
    depth: int = 2,
    W_std: ArrayLike = _SQRT2,
    b_std: ArrayLike = 0.1,
    sigma2: float = 1e-8,
    *,
    per_layer: bool = True,
) -> dict[str, Array]:
    """Log-parameters of a depth-``depth`` fully connected NNGP plus the ridge.

    Args:
      depth: hidden layers (``L = depth + 1`` Dense layers, as in :func:`rgjax.kernels.fc`).
      W_std: scalar, or a sequence of ``L`` values (one per Dense layer); all > 0.
      b_std: scalar, or a sequence of ``L`` values; all > 0.
      sigma2: bare ridge σ² > 0.
      per_layer: give every layer its own parameter (shape ``(L,)``); False shares one value
        (shape ``()``, needs scalar ``W_std``/``b_std``).

    Returns:
      ``{"log_W_std", "log_b_std", "log_sigma2"}`` as float64 (non-weak) arrays, so that optax
      updates never change their type (which would recompile the step).
    """
    depth = check_int(depth, "depth", 0)
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


def build_kernel(params: Params, *, depth: int = 2, activation: Any = "relu") -> Serial:
    """The :func:`rgjax.kernels.fc` network ``[Dense, act] × depth + Dense`` with the params'
    W_std, b_std.

    Works on traced params (inside ``jit``/``grad``): the Dense layers' leaves are
    ``exp(log_W_std[i])``, ``exp(log_b_std[i])``.
    """
    depth = check_int(depth, "depth", 0)
    n = depth + 1
    w = jnp.broadcast_to(jnp.exp(params["log_W_std"]), (n,))
    b = jnp.broadcast_to(jnp.exp(params["log_b_std"]), (n,))
    layers = list(fc(depth, activation).layers)  # activation layers from fc's own rules
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, Dense)]
    for j, i in enumerate(dense):
        layers[i] = Dense(w[j], b[j])
    return serial(*layers)


def natural_params(params: Params, depth: int | None = None) -> dict[str, Any]:
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
# The predicted test error as one differentiable function of the parameters
# ---------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("objective", "path", "hard", "depth", "activation"))
def _predicted_mse_jit(
    params: Params, x: Array, y: Array, eta: Array, threshold: ArrayLike,
    temperature: ArrayLike, noise: ArrayLike, *, objective: str, path: str, hard: bool,
    depth: int, activation: Any,
) -> Array:
    K = build_kernel(params, depth=depth, activation=activation)(x)
    sigma2 = jnp.exp(params["log_sigma2"])
    return mse_from_gram_traced(K, y, eta, sigma2, threshold, temperature, noise,
                                objective=objective, path=path, hard=hard)


def predicted_mse(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    eta: ArrayLike,
    *,
    objective: str = "rg",
    threshold: ArrayLike = 0.5,
    temperature: ArrayLike | None = 0.05,
    depth: int = 2,
    activation: Any = "relu",
    path: str = "resolvent",
    noise: ArrayLike = 0.0,
) -> Array:
    """Predicted test MSE at training-set size ``eta`` as one differentiable, jit-compiled function.

    ``params → fc(depth, activation) kernel → K(x, x) → spectrum → theory``. Usable under
    ``jax.grad``/``jax.jit``/``jax.vmap`` with respect to ``params`` (every layer's ``W_std``,
    ``b_std`` and σ², in log space), ``x``, ``y``, ``eta``, ``threshold``, ``temperature`` and
    ``noise``.

    Args:
      params: ``{"log_W_std", "log_b_std", "log_sigma2"}`` (see :func:`init_params`).
      x: ``(N, d)`` pool inputs.
      y: ``(N,)`` pool targets.
      eta: training-set size (scalar or array; one solve per entry on the resolvent path).
      objective: ``"rg"`` (paper), ``"rg_dof"`` (rgjax, docs/theory.md §3b) or
        ``"spectral_bias"``.
      threshold: learnability threshold ``T`` of the RG objectives.
      temperature: smooth-cutoff τ of the RG objectives; None is the hard threshold (piecewise
        smooth; NaN where not applicable).
      depth: hidden layers of the :func:`rgjax.kernels.fc` architecture.
      activation: its activation.
      path: ``"resolvent"`` (default; exact gradients on degenerate spectra) or ``"eigen"``.
      noise: label-noise variance ε² (spectral bias only).

    Returns:
      ``eta``'s shape (a scalar for scalar ``eta``).

    Examples:
      >>> import jax, numpy as np
      >>> from rgjax.optimize import init_params, predicted_mse
      >>> x = np.random.default_rng(0).normal(size=(20, 3))
      >>> y = np.sign(x[:, 0])
      >>> params = init_params(depth=1, sigma2=1e-3)
      >>> print(f"{float(predicted_mse(params, x, y, 10.0, depth=1)):.4f}")
      0.0211
      >>> grads = jax.grad(lambda p: predicted_mse(p, x, y, 10.0, depth=1))(params)
      >>> grads["log_W_std"].shape
      (2,)
    """
    check_objective(objective)
    check_path(path)
    depth = check_int(depth, "depth", 0)
    _check_params(params, depth)
    check_temperature(temperature)
    check_noise(noise, objective)
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
# Fitting kernel hyper-parameters
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class FitResult:
    """Trajectory and result of :func:`fit_kernel` / :func:`fit_sigma2` (a pytree).

    Attributes (S = steps, L = number of Dense layers, or 1 for shared parameters):
      objective: the objective minimised.
      eta: the training-set size.
      loss: ``(S + 1,)`` objective at the parameters entering step i; ``loss[S]`` at the final ones.
      W_std: ``(S + 1, L)`` trajectory (None for :func:`fit_sigma2`).
      b_std: ``(S + 1, L)`` trajectory (None for :func:`fit_sigma2`).
      sigma2: ``(S + 1,)`` ridge trajectory.
      grad_norm: ``(S + 1,)`` gradient norm (log-parameters; frozen ones excluded).
      skipped: ``(S,)`` steps skipped because the loss or gradient was not finite.
      params: final log-parameters (numpy).
      kernel: the final kernel (an :func:`rgjax.kernels.fc`-shaped ``Serial``; None for
        ``fit_sigma2``).
      config: the settings (threshold, temperature, path, depth, activation, noise, trainable,
        steps, optimizer).
      n_traces: how many times this fit traced (compiled) its step function: 1, or 0 when an
        earlier fit of the same shapes, objective and optimiser object already had.
      seconds: wall time of the loop (including the one compilation).
    """

    objective: str = field(static=True)
    eta: float
    loss: np.ndarray
    W_std: np.ndarray | None
    b_std: np.ndarray | None
    sigma2: np.ndarray
    grad_norm: np.ndarray
    skipped: np.ndarray
    params: dict[str, np.ndarray]
    kernel: Serial | None
    config: dict[str, Any] = field(static=True)
    n_traces: int = field(static=True)
    seconds: float = field(static=True)

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
        if self.W_std is not None and self.b_std is not None:
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


def _trainable_labels(params: Params, trainable: Sequence[str]) -> dict[str, str] | None:
    """``"train"``/``"freeze"`` per log-parameter, or None when everything is trained."""
    bad = [t for t in trainable if t not in _TRAINABLE]
    if bad or not trainable:
        raise ValueError(
            f"`trainable` must be a non-empty subset of {_TRAINABLE}; got {tuple(trainable)!r}."
        )
    if set(trainable) == set(_TRAINABLE):
        return None
    return {k: "train" if k[4:] in trainable else "freeze" for k in params}


def fit_kernel(
    task_or_inputs: Any,
    *,
    eta: Scalar,
    objective: str = "rg",
    init: Params | None = None,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 150,
    threshold: Scalar = 0.5,
    temperature: Scalar | None = 0.05,
    y: ArrayLike | None = None,
    activation: Any = "relu",
    depth: int = 2,
    path: str = "resolvent",
    noise: Scalar = 0.0,
    trainable: Sequence[str] = _TRAINABLE,
    log: Callable[[str], None] | None = None,
    log_every: int = 25,
    progress: bool = False,
) -> FitResult:
    """Minimise the predicted test MSE at training-set size ``eta`` over W_std, b_std and σ².

    Args:
      task_or_inputs: a :class:`rgjax.datasets.Task` (its ``x`` and ``y`` are used) or an
        ``(N, d)`` array ``x`` together with ``y``.
      eta: training-set size η > 0.
      objective: ``"rg"`` (paper), ``"rg_dof"`` (rgjax, docs/theory.md §3b) or
        ``"spectral_bias"``.
      init: initial log-parameters (default ``init_params(depth)``: W_std = √2, b_std = 0.1 per
        layer, σ² = 1e-8); shape ``()`` entries are shared across layers and stay shared.
      optimizer: any optax transformation (default ``optax.adam(0.05)``, i.e. ≈5% relative steps).
      steps: number of optimisation steps ≥ 1.
      threshold: the RG learnability threshold T.
      temperature: the RG cutoff's smoothness (default: the smooth cutoff τ = 0.05; None = hard).
      y: ``(N,)`` targets when ``task_or_inputs`` is an array.
      activation: activation of the :func:`rgjax.kernels.fc` architecture.
      depth: its hidden layers.
      path: gradient path (default ``"resolvent"``, exact on degenerate spectra).
      noise: label-noise variance (spectral bias only).
      trainable: which of ``"W_std", "b_std", "sigma2"`` to optimise (others stay at ``init``).
      log: called with a progress line every ``log_every`` steps (e.g. ``print``).
      log_every: steps between two ``log`` lines.
      progress: show a tqdm bar over steps.

    Returns:
      A :class:`FitResult`; ``result.kernel`` is the final kernel, ``result.natural()`` the final
      (W_std, b_std, σ²).

    Examples:
      >>> import numpy as np
      >>> from rgjax.optimize import fit_kernel, init_params
      >>> x = np.random.default_rng(0).normal(size=(20, 3))
      >>> y = np.sign(x[:, 0])
      >>> fit = fit_kernel(x, y=y, eta=10.0, depth=1, steps=3, init=init_params(1, sigma2=1e-3))
      >>> fit.loss.shape, fit.W_std.shape
      ((4,), (4, 2))
      >>> bool(fit.final_loss < fit.initial_loss)
      True

      Another fit of the same shapes (other data, another η) reuses the compiled step:

      >>> again = fit_kernel(-x, y=y, eta=12.0, depth=1, steps=3, init=init_params(1))
      >>> again.n_traces
      0
    """
    x, y = task_arrays(task_or_inputs, y)
    objective = check_objective(objective)
    path = check_path(path)
    depth = check_int(depth, "depth", 0)
    steps = check_int(steps, "steps", 1)
    _check_scalar_eta(eta)
    check_threshold(threshold)
    check_temperature(temperature)
    check_noise(noise, objective)
    params = init_params(depth) if init is None else {k: jnp.asarray(v, jnp.result_type(float))
                                                       for k, v in init.items()}
    _check_params(params, depth)
    labels = _trainable_labels(params, tuple(trainable))
    optimizer = _DEFAULT_OPTIMIZER if optimizer is None else optimizer
    hard = temperature is None and objective != "spectral_bias"
    loss_fn = partial(_predicted_mse_jit, objective=objective, path=path, hard=hard, depth=depth,
                      activation=activation)
    dtype = x.dtype
    args = (x, y, jnp.asarray(eta, dtype), jnp.asarray(threshold, dtype),
            jnp.asarray(1.0 if temperature is None else temperature, dtype),
            jnp.asarray(noise, dtype))
    traj = optax_loop(loss_fn, params, args, optimizer, steps, labels=labels, log=log,
                       log_every=log_every, progress=progress, desc=f"fit_kernel[{objective}]")
    n_layers = depth + 1
    w = np.stack([np.broadcast_to(np.exp(p["log_W_std"]), (n_layers,)) for p in traj.params])
    b = np.stack([np.broadcast_to(np.exp(p["log_b_std"]), (n_layers,)) for p in traj.params])
    s2 = np.array([float(np.exp(p["log_sigma2"])) for p in traj.params])
    final = traj.params[-1]
    config = dict(threshold=float(threshold),
                  temperature=None if temperature is None else float(temperature),
                  path=path, depth=depth, activation=str(activation), noise=float(noise),
                  trainable=list(trainable), steps=steps, optimizer=describe_optimizer(optimizer),
                  n_pool=int(x.shape[0]))
    return FitResult(
        objective=objective, eta=float(eta), loss=traj.loss, W_std=w, b_std=b, sigma2=s2,
        grad_norm=traj.grad_norm, skipped=traj.skipped, params=final,
        kernel=build_kernel(final, depth=depth, activation=activation), config=config,
        n_traces=traj.n_traces, seconds=traj.seconds,
    )


@cache  # one loss function per variant: compiled steps are reused
def _sigma2_loss(objective: str, hard: bool) -> Callable[..., Array]:
    def loss(params: Params, spec: Spectrum, eta: Array, threshold: Array, temperature: Array,
             noise: Array) -> Array:
        s2 = jnp.exp(params["log_sigma2"])
        if objective == "spectral_bias":
            return mse_spectral_bias(spec, eta, s2, noise)
        return mse_rg(spec, eta, s2, threshold, dof_correction=objective == "rg_dof",
                      temperature=None if hard else temperature)

    return loss


def fit_sigma2(
    spec: Spectrum,
    eta: Scalar,
    *,
    objective: str = "spectral_bias",
    sigma2: float = 1.0,
    noise: Scalar = 0.0,
    threshold: Scalar = 0.5,
    temperature: Scalar | None = 0.05,
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 300,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Optimise the ridge σ² (in log space) for a fixed spectrum at training-set size ``eta``.

    The kernel is fixed, so no eigenvector derivatives are involved. With label noise ε² and a
    target drawn from the kernel's own prior (``y_k² = c λ_k``) the spectral-bias optimum is
    ``σ² = ε²/c`` (the Bayes-optimal ridge).

    Args:
      spec: the fixed spectrum.
      eta: training-set size η > 0.
      objective: one of :data:`OBJECTIVES`.
      sigma2: initial ridge σ² > 0.
      noise: label-noise variance ε² (spectral bias only).
      threshold: the RG learnability threshold T.
      temperature: the RG cutoff's smoothness (None = hard).
      optimizer: any optax transformation (default ``optax.adam(0.05)``).
      steps: number of optimisation steps ≥ 1.
      log: called with a progress line every 25 steps.

    Returns:
      A :class:`FitResult` with ``W_std = b_std = kernel = None``.
    """
    if not isinstance(spec, Spectrum):
        raise TypeError(f"`spec` must be an rgjax Spectrum; got {type(spec).__name__}.")
    objective = check_objective(objective)
    steps = check_int(steps, "steps", 1)
    _check_scalar_eta(eta)
    check_sigma2(sigma2)
    check_threshold(threshold)
    check_temperature(temperature)
    check_noise(noise, objective)
    dtype = spec.eigenvalues.dtype
    params = {"log_sigma2": jnp.asarray(math.log(sigma2), dtype)}
    hard = temperature is None
    args = (spec, jnp.asarray(eta, dtype), jnp.asarray(threshold, dtype),
            jnp.asarray(1.0 if temperature is None else temperature, dtype),
            jnp.asarray(noise, dtype))
    optimizer = _DEFAULT_OPTIMIZER if optimizer is None else optimizer
    traj = optax_loop(_sigma2_loss(objective, hard), params, args, optimizer, steps, log=log,
                       desc=f"fit_sigma2[{objective}]")
    s2 = np.array([float(np.exp(p["log_sigma2"])) for p in traj.params])
    config = dict(threshold=float(threshold),
                  temperature=None if temperature is None else float(temperature),
                  noise=float(noise), steps=steps, optimizer=describe_optimizer(optimizer),
                  trainable=["sigma2"])
    return FitResult(
        objective=objective, eta=float(eta), loss=traj.loss, W_std=None, b_std=None, sigma2=s2,
        grad_norm=traj.grad_norm, skipped=traj.skipped, params=traj.params[-1], kernel=None,
        config=config, n_traces=traj.n_traces, seconds=traj.seconds,
    )
