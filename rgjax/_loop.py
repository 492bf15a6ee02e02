"""One optax loop for every fit of :mod:`rgjax.optimize`: a jit-compiled step, frozen leaves,
skipped non-finite steps, and the trajectory on the host.

The step function is traced once per loop (its inputs never change type), so a fit of ``S`` steps
costs one compilation and ``S + 1`` dispatches; the extra one evaluates the final loss. Compiled
steps are kept between calls (keyed by the loss function, the optimiser object and the frozen
leaves), so a second fit of the same problem shape, with other data or another η, compiles
nothing.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from rgjax._pytree import dataclass, field
from rgjax._typing import Array
from rgjax._validate import warn

__all__ = ["Trajectory", "optax_loop", "describe_optimizer"]


@dataclass(eq=False)
class Trajectory:
    """What :func:`optax_loop` records (host numpy), ``S`` = steps."""

    params: list[Any]  # steps + 1 pytrees (host numpy), params[i] is the input of step i
    loss: np.ndarray  # (steps + 1,) loss at params[i]
    grad_norm: np.ndarray  # (steps + 1,)
    skipped: np.ndarray  # (steps,) True where the loss/gradient was not finite (no update)
    n_traces: int = field(static=True)
    seconds: float = field(static=True)


#: ``(params, optimiser state, *args) → (params, state, loss, |grad|, step applied?)``
_Step = Callable[..., tuple[Any, Any, Array, Array, Array]]


#: ``apply_if_finite`` never gives up and applies a non-finite step (int32 state).
_NEVER = 2**31 - 1
#: Compiled step functions kept between calls (least recently used dropped first).
_CACHE_SIZE = 32


def _masked_optimizer(
    optimizer: optax.GradientTransformation, labels: Mapping[str, str] | None
) -> optax.GradientTransformationExtraArgs:
    """``optimizer`` on the ``"train"`` leaves only, skipping steps with a non-finite gradient.

    Frozen leaves (``"freeze"``) get exactly zero updates, whatever the optimiser would do to them
    (weight decay, say). ``apply_if_finite`` leaves params and optimiser state unchanged on a
    non-finite gradient; it may skip every step (it never gives up and applies one).
    """
    if labels is not None:
        optimizer = optax.multi_transform(
            {"train": optimizer, "freeze": optax.set_to_zero()}, dict(labels),
            mask_compatible_extra_args=True,  # the gradient passed to line searches, too
        )
    return optax.with_extra_args_support(
        optax.apply_if_finite(optimizer, max_consecutive_errors=_NEVER)
    )


def _with_frozen(q: Any, p: Any) -> Any:
    """``q`` with the leaves a masked optimiser hides (``optax.MaskedNode``) taken from ``p``."""
    masked = lambda v: isinstance(v, optax.MaskedNode)  # noqa: E731
    return jax.tree.map(lambda a, b: b if masked(a) else a, q, p, is_leaf=masked)


def _make_step(
    loss_fn: Callable[..., Array],
    optimizer: optax.GradientTransformationExtraArgs,
    labels: Mapping[str, str] | None,
    traces: list[int],
) -> _Step:
    def trainable(tree: Any) -> Any:
        return tree if labels is None else {k: v for k, v in tree.items() if labels[k] == "train"}

    def step(p: Any, state: Any, *a: Any) -> tuple[Any, Any, Array, Array, Array]:
        traces[0] += 1  # Python side effect: runs once per trace, i.e. per compilation
        loss, grads = jax.value_and_grad(loss_fn)(p, *a)
        gnorm = optax.tree.norm(trainable(grads))
        # A non-finite loss (the hard RG where it is not applicable) gives no descent direction:
        # its gradient counts as non-finite, so that apply_if_finite skips the step.
        grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
        updates, new_state = optimizer.update(
            grads, state, p, value=loss, grad=grads,
            value_fn=lambda q: loss_fn(_with_frozen(q, p), *a),
        )
        ok = cast(optax.ApplyIfFiniteState, new_state).last_finite
        return optax.apply_updates(p, updates), new_state, loss, gnorm, ok

    return step


def optax_loop(
    loss_fn: Callable[..., Array],
    params: Any,
    args: tuple[Any, ...],
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    labels: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    log_every: int = 25,
    progress: bool = False,
    desc: str = "optimise",
) -> Trajectory:
    """Minimise ``loss_fn(params, *args)`` with ``optimizer`` for ``steps`` steps.

    One jit-compiled step function; ``args`` are passed to it (never closed over: constants would
    be folded into the program at compile time, and a different pool would recompile). ``labels``
    (``"train"``/``"freeze"`` per key of a dict of params) freezes some leaves. Steps whose loss
    or gradient is not finite leave params and optimiser state unchanged and are flagged. The loop
    runs one extra evaluation (its update discarded) for the final loss.
    """
    wrapped, step_jit, traces = _compiled_step(loss_fn, optimizer, labels)
    traced_before = traces[0]
    # Optimiser states may start with weak-typed scalars that come back strongly typed (optax's
    # L-BFGS line-search info): a different input type on step 2 would compile the step again.
    state = jax.tree.map(_strong, wrapped.init(params))
    params = jax.tree.map(_strong, params)
    history, losses, gnorms, oks = [params], [], [], []
    bar = tqdm(total=steps, desc=desc, unit="step") if progress else None
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
    return _trajectory(history, losses, gnorms, oks, traces[0] - traced_before, seconds, desc)


class _StepCache:
    """The jitted steps of earlier loops by :func:`_step_key` (bounded: least recently used out)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, tuple[Any, _Step, list[int]]] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], tuple[Any, _Step, list[int]]]) -> Any:
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        entry = self.entries[key] = build()
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return entry


_STEPS = _StepCache(_CACHE_SIZE)


def _step_key(loss_fn: Any, optimizer: Any, labels: Mapping[str, str] | None) -> Hashable | None:
    """A hashable key that identifies the step program, or None when a part cannot be hashed.

    A ``functools.partial`` is keyed by its function and arguments (a new partial per call would
    otherwise never match); the optimiser by identity (optax transformations are tuples of
    closures), so reuse the same optimiser object to reuse the compiled step.
    """
    if isinstance(loss_fn, functools.partial):
        loss_fn = (loss_fn.func, loss_fn.args, tuple(sorted(loss_fn.keywords.items())))
    key = (loss_fn, optimizer, None if labels is None else tuple(sorted(labels.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _compiled_step(
    loss_fn: Callable[..., Array], optimizer: optax.GradientTransformation,
    labels: Mapping[str, str] | None,
) -> tuple[optax.GradientTransformationExtraArgs, _Step, list[int]]:
    """``(wrapped optimiser, jitted step, [traces so far])``, shared by identical loops."""

    def build() -> tuple[Any, _Step, list[int]]:
        wrapped = _masked_optimizer(optimizer, labels)
        traces = [0]
        return wrapped, jax.jit(_make_step(loss_fn, wrapped, labels, traces)), traces

    key = _step_key(loss_fn, optimizer, labels)
    return build() if key is None else _STEPS.get(key, build)


def _trajectory(
    history: list[Any], losses: list[Array], gnorms: list[Array], oks: list[Array],
    n_traces: int, seconds: float, desc: str,
) -> Trajectory:
    """The loop's record on the host; warns when steps were skipped."""
    # One device-to-host copy of the whole record; no eager stacking (a program per length).
    host, losses, gnorms, oks = jax.device_get((history, losses, gnorms, oks))
    skipped = ~np.array(oks, dtype=bool) if oks else np.zeros(0, bool)
    if skipped.any():
        warn(
            f"{desc}: {int(skipped.sum())} of {len(oks)} steps had a non-finite loss or gradient "
            "and were skipped (with the hard threshold the RG is NaN where it is not applicable; "
            "use a smooth cutoff, temperature=...)."
        )
    return Trajectory(
        params=host,
        loss=np.array(losses, dtype=float),
        grad_norm=np.array(gnorms, dtype=float),
        skipped=skipped,
        n_traces=n_traces,
        seconds=seconds,
    )


def _strong(a: Any) -> Any:
    """``a`` without JAX's weak type (same dtype); non-arrays unchanged."""
    if isinstance(a, jax.Array) and a.weak_type:
        return jnp.asarray(a, dtype=a.dtype)
    return a


def describe_optimizer(optimizer: Any) -> str:
    """A short name of an optax transformation, for results and logs."""
    return getattr(optimizer, "__name__", None) or type(optimizer).__name__
