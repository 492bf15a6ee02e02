"""Learning curves fitted by least squares in log space: a power law, or the RG threshold T.

:func:`fit_curve` and :class:`CurveFit` are part of :mod:`rgjax.optimize` (import them from
there); they run the same jit-compiled optax loop as the kernel fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rgjax._loop import Trajectory, describe_optimizer, optax_loop
from rgjax._pytree import dataclass, field
from rgjax._typing import Array, ArrayLike
from rgjax._validate import check_int, check_sigma2, check_temperature, check_threshold
from rgjax.spectrum import Spectrum
from rgjax.theory import mse_rg

__all__ = ["CurveFit", "fit_curve"]

_CURVE_MODELS = ("power_law", "rg_threshold")
#: One object, so that curve fits with the default optimiser share their compiled step.
_DEFAULT_OPTIMIZER = optax.lbfgs()


@dataclass(eq=False)
class CurveFit:
    """A model fitted to a learning curve by least squares in log space (a pytree).

    Attributes:
      model: ``"power_law"`` (``a η^(−b)`` plus ``c`` with ``floor``) or ``"rg_threshold"``.
      params: fitted values: ``{"a", "b"}`` (+ ``"c"``), or ``{"threshold"}``.
      etas: ``(E,)`` the training-set sizes.
      mse: ``(E,)`` the data.
      fitted: ``(E,)`` the fitted curve at ``etas``.
      loss: final mean squared log-residual.
      losses: ``(S + 1,)`` its trajectory.
      n_traces: compilations of the step function in this fit (1; 0 when an earlier fit of the
        same shapes and optimiser object compiled it).
      config: the settings (floor, sigma2, temperature, dof_correction, steps).
      spec: the spectrum of ``"rg_threshold"`` (None for ``"power_law"``).
    """

    model: str = field(static=True)
    params: dict[str, float]
    etas: np.ndarray
    mse: np.ndarray
    fitted: np.ndarray
    loss: float
    losses: np.ndarray
    n_traces: int = field(static=True)
    config: dict[str, Any] = field(static=True)
    spec: Spectrum | None = None

    def evaluate(self, etas: ArrayLike) -> np.ndarray:
        """The fitted curve at other training-set sizes."""
        e = np.asarray(etas, dtype=float)
        if self.model == "power_law":
            p = self.params
            return p["a"] * e ** (-p["b"]) + p.get("c", 0.0)
        if self.spec is None:
            raise ValueError("an 'rg_threshold' fit needs its spectrum to be evaluated.")
        c = self.config
        return np.asarray(mse_rg(self.spec, jnp.asarray(e), c["sigma2"], self.params["threshold"],
                                 temperature=c["temperature"], dof_correction=c["dof_correction"]))

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


def _power_law_log(p: Mapping[str, Array], log_eta: Array) -> Array:
    main = p["log_a"] - p["b"] * log_eta
    if "log_c" in p:
        return jnp.logaddexp(main, p["log_c"])  # log(a η^-b + c), stable
    return main


def _power_law_loss(p: Mapping[str, Array], log_eta: Array, log_mse: Array) -> Array:
    return jnp.mean((_power_law_log(p, log_eta) - log_mse) ** 2)


def _threshold_loss(
    p: Mapping[str, Array], spec: Spectrum, etas: Array, log_mse: Array, sigma2: Array,
    temperature: Array, dof: bool,
) -> Array:
    t = jax.nn.sigmoid(p["logit_threshold"])
    pred = mse_rg(spec, etas, sigma2, t, temperature=temperature, dof_correction=dof)
    return jnp.mean((jnp.log(pred) - log_mse) ** 2)


def _check_curve(etas: ArrayLike, mse: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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
    return e, m


def _fit_power_law(
    e: np.ndarray, m: np.ndarray, floor: bool, init: Mapping[str, float],
    optimizer: optax.GradientTransformation, steps: int,
) -> tuple[dict[str, float], np.ndarray, Trajectory, dict[str, Any]]:
    log_e, log_m = jnp.asarray(np.log(e)), jnp.asarray(np.log(m))
    slope, intercept = np.polyfit(np.log(e), np.log(m), 1)
    a0 = float(init.get("a", math.exp(intercept)))
    b0 = float(init.get("b", -slope))
    p0 = {"log_a": math.log(a0), "b": b0}
    if floor:
        p0["log_c"] = math.log(float(init.get("c", 0.1 * m.min())))
    params = {k: jnp.asarray(v, jnp.result_type(float)) for k, v in p0.items()}
    traj = optax_loop(_power_law_loss, params, (log_e, log_m), optimizer, steps,
                       desc="fit_curve[power_law]")
    p = traj.params[-1]
    out = {"a": float(np.exp(p["log_a"])), "b": float(p["b"])}
    if floor:
        out["c"] = float(np.exp(p["log_c"]))
    fitted = np.exp(np.asarray(_power_law_log(p, log_e)))
    config = {"floor": bool(floor), "steps": steps, "optimizer": describe_optimizer(optimizer)}
    return out, fitted, traj, config


def _fit_threshold(
    e: np.ndarray, m: np.ndarray, spec: Spectrum, sigma2: float, temperature: float,
    dof_correction: bool, init: Mapping[str, float], optimizer: optax.GradientTransformation,
    steps: int,
) -> tuple[dict[str, float], np.ndarray, Trajectory, dict[str, Any]]:
    t0 = float(init.get("threshold", 0.5))
    check_threshold(t0, "init['threshold']")
    dtype = spec.eigenvalues.dtype
    params = {"logit_threshold": jnp.asarray(math.log(t0 / (1 - t0)), dtype)}
    args = (spec, jnp.asarray(e, dtype), jnp.asarray(np.log(m)), jnp.asarray(sigma2, dtype),
            jnp.asarray(temperature, dtype))
    traj = optax_loop(partial(_threshold_loss, dof=bool(dof_correction)), params, args,
                       optimizer, steps, desc="fit_curve[rg_threshold]")
    t = float(jax.nn.sigmoid(traj.params[-1]["logit_threshold"]))
    fitted = np.asarray(mse_rg(spec, jnp.asarray(e, dtype), sigma2, t, temperature=temperature,
                               dof_correction=dof_correction))
    config = {"sigma2": float(sigma2), "temperature": float(temperature),
              "dof_correction": bool(dof_correction), "steps": steps,
              "optimizer": describe_optimizer(optimizer)}
    return {"threshold": t}, fitted, traj, config


def fit_curve(
    etas: ArrayLike,
    mse: ArrayLike,
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
      etas: ``(E,)`` training-set sizes (> 0, E ≥ 2).
      mse: ``(E,)`` errors (> 0).
      model: ``"power_law"`` or ``"rg_threshold"``.
      floor: add the constant ``c`` to the power law.
      spec: the spectrum of ``"rg_threshold"``.
      sigma2: the bare ridge of ``"rg_threshold"``.
      temperature: the smooth cutoff τ of ``"rg_threshold"``.
      dof_correction: ``"rg_threshold"`` with rgjax's learned-mode correction.
      init: starting values in natural units (``{"a", "b", "c"}`` or ``{"threshold"}``).
      optimizer: default L-BFGS (``optax.lbfgs()``, with its line search), which converges on
        these small least-squares problems in tens of steps.
      steps: optimisation steps ≥ 1.

    Returns:
      A :class:`CurveFit`.
    """
    if model not in _CURVE_MODELS:
        raise ValueError(f"unknown `model` {model!r}; choose one of {_CURVE_MODELS}.")
    steps = check_int(steps, "steps", 1)
    e, m = _check_curve(etas, mse)
    optimizer = _DEFAULT_OPTIMIZER if optimizer is None else optimizer
    init = dict(init or {})
    if model == "power_law":
        if spec is not None or sigma2 is not None:
            raise ValueError("`spec`/`sigma2` belong to model='rg_threshold', not 'power_law'.")
        out, fitted, traj, config = _fit_power_law(e, m, floor, init, optimizer, steps)
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
        check_temperature(temperature)
        if temperature is None:
            raise ValueError("model='rg_threshold' needs a smooth cutoff: pass temperature > 0.")
        out, fitted, traj, config = _fit_threshold(e, m, spec, sigma2, temperature,
                                                   dof_correction, init, optimizer, steps)
    return CurveFit(model=model, params=out, etas=e, mse=m, fitted=fitted,
                    loss=float(traj.loss[-1]), losses=traj.loss, n_traces=traj.n_traces,
                    config=config, spec=spec if model == "rg_threshold" else None)
