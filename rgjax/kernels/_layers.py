"""NNGP layers: the :class:`Kernel` base class, the layers, :func:`serial`, :func:`fc`, and the
:class:`KernelFn` adapter for neural-tangents-style ``kernel_fn``.

Every layer is an immutable pytree (``rgjax._pytree.dataclass``) whose hyper-parameters are leaves
and whose configuration (filter shapes, callables) is static. A layer maps the covariance state
:class:`~rgjax.kernels._covariance.Cov` (method :meth:`Kernel.propagate`); a network is a
:class:`Serial` of layers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rgjax._pytree import dataclass, field
from rgjax._typing import Array, ArrayLike, Scalar
from rgjax._validate import check_int
from rgjax.kernels._activations import (
    erf_kernel,
    leaky_relu_kernel,
    quadrature_kernel,
    relu_kernel,
)
from rgjax.kernels._covariance import (
    Cov,
    apply_activation,
    conv_cov,
    input_cov,
    require_spatial,
)
from rgjax.kernels._inputs import check_scalar, validate_inputs

__all__ = [
    "Kernel",
    "Serial",
    "Dense",
    "Relu",
    "Erf",
    "LeakyRelu",
    "Abs",
    "Identity",
    "Elementwise",
    "Conv",
    "GlobalAvgPool",
    "Flatten",
    "KernelFn",
    "serial",
    "fc",
    "from_kernel_fn",
    "ACTIVATIONS",
]


class Kernel:
    """Base class of every layer and network: a callable NNGP kernel and an immutable pytree.

    ``kernel(x1, x2=None)`` takes ``x1`` of shape ``(n1, d)`` (fully connected) or ``(n1, H, W, C)``
    (images, NHWC) and ``x2`` of the same trailing shape (``None`` means ``x2 = x1``). It returns
    the NNGP matrix of shape ``(n1, n2)``; a network ending on spatial layers (no pooling/flatten)
    returns the full spatial covariance ``(n1, n2, H', W', H', W')``.

    The computation is jit-compiled (once per architecture and input shapes); inputs and concrete
    hyper-parameters are validated first. It can be called inside ``jit``/``grad``/``vmap``.

    The layer protocol (used by :func:`~rgjax.kernels.gram` and the other Gram functions):
    :meth:`propagate` maps the covariance state, :meth:`check_params` validates concrete
    hyper-parameters, :meth:`nngp_traced` is the unvalidated, traceable core of ``__call__``.
    """

    def propagate(self, state: Cov) -> Cov:  # pragma: no cover - abstract
        """Map the covariance state of the two batches through this layer."""
        raise NotImplementedError

    def check_params(self) -> None:
        """Raise ``ValueError`` for concrete invalid hyper-parameters (overridden by layers)."""

    def nngp_traced(self, x1: Array, x2: Array) -> Array:
        """Unvalidated NNGP ``(n1, n2)`` of two validated batches (traced inside ``jit``)."""
        return self.propagate(input_cov(x1, x2)).cross

    def __call__(self, x1: ArrayLike, x2: ArrayLike | None = None) -> Array:
        a1, a2 = validate_inputs(x1, x2, allowed_ndim=(2, 4))
        self.check_params()
        return _nngp_jit(self, a1, a1 if a2 is None else a2)


@jax.jit
def _nngp_jit(kernel: Kernel, x1: Array, x2: Array) -> Array:
    return kernel.nngp_traced(x1, x2)


@dataclass
class Serial(Kernel):
    """Composition of layers, applied left to right. Build it with :func:`serial`."""

    layers: tuple[Kernel, ...]

    def propagate(self, state: Cov) -> Cov:
        for layer in self.layers:
            state = layer.propagate(state)
        return state

    def check_params(self) -> None:
        for layer in self.layers:
            layer.check_params()


@dataclass
class Dense(Kernel):
    """Fully connected (or per-position, channel-wise) layer: ``K ↦ W_std² K + b_std²``.

    ``W_std``: weights have variance ``W_std²/fan_in``; ``b_std``: bias standard deviation.
    """

    W_std: Scalar = 1.0
    b_std: Scalar = 0.0

    def propagate(self, state: Cov) -> Cov:
        w2, b2 = self.W_std**2, self.b_std**2
        return state.map(lambda k: w2 * k + b2)

    def check_params(self) -> None:
        check_scalar(self.W_std, "W_std", "Dense", nonneg=True)
        check_scalar(self.b_std, "b_std", "Dense", nonneg=True)


@dataclass
class Relu(Kernel):
    """``max(x, 0)``: arc-cosine kernel of order 1 (closed form)."""

    def propagate(self, state: Cov) -> Cov:
        return apply_activation(relu_kernel, state)


@dataclass
class Erf(Kernel):
    """``erf(x)``: ``(2/π) arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))`` (closed form)."""

    def propagate(self, state: Cov) -> Cov:
        return apply_activation(erf_kernel, state)


@dataclass
class LeakyRelu(Kernel):
    """``x if x > 0 else alpha·x``: ``alpha k12 + (1-alpha)² E[relu relu]``; ``alpha`` is a leaf."""

    alpha: Scalar

    def propagate(self, state: Cov) -> Cov:
        return apply_activation(functools.partial(leaky_relu_kernel, self.alpha), state)

    def check_params(self) -> None:
        check_scalar(self.alpha, "alpha", "LeakyRelu", nonneg=False)


@dataclass
class Abs(Kernel):
    """``|x|``: the leaky-ReLU kernel at ``alpha = -1``, ``4 E[relu relu] - k12``."""

    def propagate(self, state: Cov) -> Cov:
        return apply_activation(functools.partial(leaky_relu_kernel, -1.0), state)


@dataclass
class Identity(Kernel):
    """Linear activation: the covariance is unchanged."""

    def propagate(self, state: Cov) -> Cov:
        return state


@dataclass
class Elementwise(Kernel):
    """Any scalar activation ``fn`` (a jax-traceable function of an array, applied elementwise).

    ``E[fn(u) fn(v)]`` is computed by ``num_points × num_points`` Gauss–Hermite quadrature; exact
    for polynomials of degree < 2·num_points in each variable, slower to converge for kinks (ReLU:
    use :class:`Relu`). Per kernel entry: ``num_points²`` evaluations, ``num_points`` memory.
    """

    fn: Callable[[Array], Array] = field(static=True)
    num_points: int = field(static=True, default=32)

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"`fn` of Elementwise must be callable; got {self.fn!r}.")
        why = "Gauss–Hermite nodes of Elementwise"
        points = check_int(self.num_points, "num_points", 1, why=why)
        object.__setattr__(self, "num_points", points)

    def propagate(self, state: Cov) -> Cov:
        return apply_activation(
            functools.partial(quadrature_kernel, self.fn, self.num_points), state
        )


@dataclass
class Conv(Kernel):
    """2-D convolution on NHWC images (infinitely many channels).

    ``K ↦ W_std²/(fh·fw) Σ_{offsets o} K[p+o, p'+o] + b_std²`` on the full spatial covariance
    ``(..., H, W, H, W)``; ``padding`` is ``'SAME'`` (zero padding) or ``'VALID'``.
    """

    filter_shape: tuple[int, int] = field(static=True, default=(3, 3))
    strides: tuple[int, int] = field(static=True, default=(1, 1))
    padding: str = field(static=True, default="SAME")
    W_std: Scalar = 1.0
    b_std: Scalar = 0.0

    def __post_init__(self) -> None:
        fs, st = tuple(int(v) for v in self.filter_shape), tuple(int(v) for v in self.strides)
        if len(fs) != 2 or min(fs) < 1:
            raise ValueError(
                f"`filter_shape` of Conv must be two positive ints; got {self.filter_shape!r}."
            )
        if len(st) != 2 or min(st) < 1:
            raise ValueError(f"`strides` of Conv must be two positive ints; got {self.strides!r}.")
        pad = str(self.padding).upper()
        if pad not in ("SAME", "VALID"):
            raise ValueError(f"`padding` of Conv must be 'SAME' or 'VALID'; got {self.padding!r}.")
        object.__setattr__(self, "filter_shape", fs)
        object.__setattr__(self, "strides", st)
        object.__setattr__(self, "padding", pad)

    def propagate(self, state: Cov) -> Cov:
        require_spatial(state, "Conv")
        w2, b2 = self.W_std**2, self.b_std**2
        conv = functools.partial(
            conv_cov, filter_shape=self.filter_shape, strides=self.strides, padding=self.padding
        )
        return state.map(lambda k: w2 * conv(k) + b2)

    def check_params(self) -> None:
        check_scalar(self.W_std, "W_std", "Conv", nonneg=True)
        check_scalar(self.b_std, "b_std", "Conv", nonneg=True)


@dataclass
class GlobalAvgPool(Kernel):
    """Average over positions: the covariance is averaged over all pairs ``(p, p')``."""

    def propagate(self, state: Cov) -> Cov:
        require_spatial(state, "GlobalAvgPool")
        return state.reduce(lambda k: jnp.mean(k, axis=(-4, -3, -2, -1)))


def _mean_over_same_position(k: Array) -> Array:
    """``(..., H, W, H, W) → (...)``: the average of ``k[..., p, p]`` over positions ``p``."""
    h, w = k.shape[-2:]
    flat = k.reshape(k.shape[:-4] + (h * w, h * w))
    return jnp.mean(jnp.diagonal(flat, axis1=-2, axis2=-1), axis=-1)


@dataclass
class Flatten(Kernel):
    """Flatten ``(H, W, C) → H·W·C`` features: the covariance is averaged over ``p = p'``
    (the next Dense's fan-in is H·W·C, hence the average rather than the sum)."""

    def propagate(self, state: Cov) -> Cov:
        require_spatial(state, "Flatten")
        return state.reduce(_mean_over_same_position)


def serial(*layers: Kernel) -> Serial:
    """Compose layers left to right: ``serial(Dense(), Relu(), Dense())``."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Kernel):
            raise TypeError(
                f"serial() takes rgjax kernel layers; argument {i} is {type(layer).__name__}. "
                "Wrap a scalar function as Elementwise(fn)."
            )
    return Serial(tuple(layers))


ACTIVATIONS = ("relu", "erf", "leaky_relu", "abs", "identity")
"""Activation names accepted by :func:`fc` (besides callables and layer instances)."""


def _activation_layer(
    activation: str | Kernel | Callable[[Array], Array], alpha: Scalar, num_points: int
) -> Kernel:
    """The activation layer for :func:`fc` from a name, a callable or a layer instance."""
    if isinstance(activation, Kernel):  # checked first: layers are callable too
        return activation
    if isinstance(activation, str):
        key = activation.lower()
        if key == "leaky_relu":
            return LeakyRelu(alpha)
        by_name: dict[str, type[Kernel]] = {
            "relu": Relu,
            "erf": Erf,
            "abs": Abs,
            "identity": Identity,
        }
        if key in by_name:
            return by_name[key]()
        raise ValueError(
            f"unknown `activation` {activation!r}; valid names are {sorted(ACTIVATIONS)}, "
            "or pass a callable (used through Elementwise quadrature)."
        )
    if callable(activation):
        return Elementwise(activation, num_points)
    raise TypeError(
        f"`activation` must be a name, a callable or a Kernel layer; got {activation!r}."
    )


def fc(
    depth: int,
    activation: str | Kernel | Callable[[Array], Array] = "relu",
    W_std: Scalar = 1.0,
    b_std: Scalar = 0.0,
    *,
    alpha: Scalar = 0.01,
    num_points: int = 32,
) -> Serial:
    """Fully connected network ``[Dense(W_std, b_std), act] × depth + Dense(W_std, b_std)``.

    Args:
      depth: number of hidden layers (an integer >= 0).
      activation: one of ``'relu', 'erf', 'leaky_relu', 'abs', 'identity'``, a callable (→
        :class:`Elementwise` with ``num_points``) or a layer instance.
      W_std: weight standard deviation of every :class:`Dense` (a leaf: differentiable).
      b_std: bias standard deviation of every :class:`Dense`.
      alpha: leaky-ReLU slope (used by ``'leaky_relu'`` only).
      num_points: Gauss–Hermite nodes per axis for a callable ``activation``.

    Returns:
      A :class:`Serial` network; ``fc(depth)(x1, x2)`` is the ``(n1, n2)`` NNGP.

    Examples:
      >>> import numpy as np
      >>> from rgjax.kernels import fc
      >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> K = fc(2, "relu", W_std=1.5, b_std=0.1)(x)
      >>> K.shape
      (3, 3)
      >>> print(f"{float(K[0, 0]):.4f} {float(K[0, 1]):.4f}")
      1.4577 0.7333
      >>> bool(np.allclose(K, K.T))
      True
    """
    depth = check_int(depth, "depth", 0, why="the number of hidden layers")
    layers: list[Kernel] = []
    for _ in range(depth):
        layers += [Dense(W_std, b_std), _activation_layer(activation, alpha, num_points)]
    layers.append(Dense(W_std, b_std))
    return Serial(tuple(layers))


@dataclass
class KernelFn:
    """Wrap a neural-tangents-style ``kernel_fn(x1, x2, 'nngp')`` as an rgjax kernel.

    Callable as ``k(x1, x2=None) -> (n1, n2)`` and accepted by :func:`~rgjax.kernels.gram`. The
    wrapped function must be jax-traceable (neural-tangents' are); it is the static part of this
    pytree.
    """

    kernel_fn: Callable[..., object] = field(static=True)

    def nngp_traced(self, x1: Array, x2: Array) -> Array:
        """Unvalidated NNGP ``(n1, n2)`` of two validated batches (traceable)."""
        out = self.kernel_fn(x1, x2, "nngp")
        out = jnp.asarray(getattr(out, "nngp", out))  # also accept a returned Kernel namedtuple
        if out.shape != (x1.shape[0], x2.shape[0]):
            raise ValueError(
                f"kernel_fn returned shape {tuple(out.shape)}; expected the NNGP matrix "
                f"{(x1.shape[0], x2.shape[0])}."
            )
        return out

    def __call__(self, x1: ArrayLike, x2: ArrayLike | None = None) -> Array:
        a1, a2 = validate_inputs(x1, x2, allowed_ndim=None)
        # x2 = x1 explicitly: not every user-written kernel_fn implements neural-tangents' None.
        return self.nngp_traced(a1, a1 if a2 is None else a2)


def from_kernel_fn(kernel_fn: Callable[..., object]) -> KernelFn:
    """Adapt ``kernel_fn(x1, x2, 'nngp') -> (n1, n2)`` (e.g. ``stax.serial(...)[2]``) to rgjax."""
    if not callable(kernel_fn):
        raise TypeError(f"`kernel_fn` must be callable; got {kernel_fn!r}.")
    return KernelFn(kernel_fn)
