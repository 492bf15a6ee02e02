"""Infinite-width NNGP kernels in pure JAX, composable in the style of neural-tangents' ``stax``.

A network is described by layers (:class:`Dense`, :class:`Relu`, :class:`Conv`, ...) combined with
:func:`serial`; the result is a :class:`Kernel`, an immutable pytree whose hyper-parameters
(``W_std``, ``b_std``, ``alpha``) are leaves, so ``jax.grad``/``jax.jit``/``jax.vmap`` work on it.
Calling it, ``kernel(x1, x2=None)``, returns the NNGP matrix ``K(x1, x2)`` of shape ``(n1, n2)``.

Conventions (identical to neural-tangents' ``stax`` with the default ``'ntk'`` parameterization,
which has the same NNGP as the ``'standard'`` one):

* The input covariance is ``x·x'/d`` for ``x`` of shape ``(n, d)``; for images ``(n, H, W, C)`` it
  is the channel average ``Σ_c x[h, w, c] x'[h', w', c] / C`` for *every pair* of positions, i.e.
  the full spatial covariance ``(n1, n2, H, W, H, W)`` is kept (memory ∝ (HW)²: small images only).
* :class:`Dense` maps ``K ↦ W_std² K + b_std²`` (its fan-in normalisation is the ``/d`` above, or
  the ``E[φ(u)φ(v)]`` of the previous activation).
* An activation maps the covariance triple ``(k11, k22, k12)`` (variances of the two inputs and
  their covariance) to ``E[φ(u)φ(v)]`` with ``(u, v) ~ N(0, [[k11, k12], [k12, k22]])``, in closed
  form (ReLU, Erf, LeakyRelu, Abs, Identity) or by Gauss–Hermite quadrature (:class:`Elementwise`).
* :class:`Conv` averages the covariance over the filter window, ``W_std²/(fh·fw) Σ_offset
  K[p+o, p'+o] + b_std²`` (zero padding for ``'SAME'``, as in ``lax.conv``), and
  :class:`GlobalAvgPool` averages it over all pairs of positions.

Besides the layers the module provides :func:`fc` (a fully connected network by activation name),
:func:`gram` (an N×N Gram matrix built tile by tile with bounded memory, on the host or with its
rows sharded over devices), :func:`gram_operator`/:func:`gram_matvec` (products ``K @ V`` without
storing ``K``), :func:`gram_diagonal` (the diagonal, for traces) and :func:`from_kernel_fn` (an
adapter for any neural-tangents-style ``kernel_fn(x1, x2, 'nngp')``). Multi-device and multi-host
use is described in :func:`gram`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rgjax._validate import check_finite, concrete

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
    "gram",
    "gram_diagonal",
    "gram_matvec",
    "gram_operator",
    "GramOperator",
    "from_kernel_fn",
    "ACTIVATIONS",
]

# Dot products at full precision: on TPU/GPU the default float32 matmul precision may drop to
# bf16/tf32 passes, which would corrupt the small eigenvalues the RG theory looks at.
_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------------------------
# Covariance state propagated through the layers
# --------------------------------------------------------------------------------------------


class _Cov(NamedTuple):
    """Second moments of the pre-activations for two batches of inputs.

    With ``P`` the spatial shape (``()`` for fully connected, ``(H, W)`` for images):
      cov1: ``(n1, *P, *P)`` covariance of each ``x1[i]`` with itself over all pairs of positions
        (for ``P = ()`` simply the variances ``(n1,)``).
      cov2: ``(n2, *P, *P)`` the same for ``x2``.
      cross: ``(n1, n2, *P, *P)`` the NNGP between ``x1[i]`` and ``x2[j]``.
    """

    cov1: jax.Array
    cov2: jax.Array
    cross: jax.Array
    n_spatial: int

    def map(self, fn: Callable[[jax.Array], jax.Array]) -> "_Cov":
        """Apply the same linear map to the three covariances (Dense, Conv, pooling)."""
        return _Cov(fn(self.cov1), fn(self.cov2), fn(self.cross), self.n_spatial)


def _input_cov(x1: jax.Array, x2: jax.Array) -> _Cov:
    """Channel-averaged input covariance ``x·x'/C`` (C = last axis) for every pair of positions."""
    c = x1.shape[-1]
    if x1.ndim == 2:
        cov1 = jnp.einsum("ic,ic->i", x1, x1, precision=_HIGHEST) / c
        cov2 = jnp.einsum("ic,ic->i", x2, x2, precision=_HIGHEST) / c
        cross = jnp.matmul(x1, x2.T, precision=_HIGHEST) / c
        return _Cov(cov1, cov2, cross, 0)
    cov1 = jnp.einsum("ihwc,iklc->ihwkl", x1, x1, precision=_HIGHEST) / c
    cov2 = jnp.einsum("ihwc,iklc->ihwkl", x2, x2, precision=_HIGHEST) / c
    cross = jnp.einsum("ihwc,jklc->ijhwkl", x1, x2, precision=_HIGHEST) / c
    return _Cov(cov1, cov2, cross, 2)


def _variances(cov: jax.Array, n_spatial: int) -> jax.Array:
    """Diagonal ``cov[i, p, p]`` of a ``(n, *P, *P)`` self-covariance, shape ``(n, *P)``."""
    if n_spatial == 0:
        return cov
    n, spatial = cov.shape[0], cov.shape[1 : 1 + n_spatial]
    size = math.prod(spatial)
    flat = cov.reshape(n, size, size)
    return jnp.diagonal(flat, axis1=1, axis2=2).reshape(n, *spatial)


def _apply_activation(fn: Callable, state: _Cov) -> _Cov:
    """Map all covariances through an activation kernel ``fn(k11, k22, k12)`` (broadcasting)."""
    nsp = state.n_spatial
    v1, v2 = _variances(state.cov1, nsp), _variances(state.cov2, nsp)
    ones = (1,) * nsp
    sp = v1.shape[1:]
    # cross[i, j, p, p'] pairs the variance of x1[i] at p with that of x2[j] at p'
    cross = fn(
        v1.reshape(v1.shape[0], 1, *sp, *ones),
        v2.reshape(1, v2.shape[0], *ones, *sp),
        state.cross,
    )

    def self_cov(v: jax.Array, cov: jax.Array) -> jax.Array:
        return fn(v.reshape(v.shape[0], *sp, *ones), v.reshape(v.shape[0], *ones, *sp), cov)

    return _Cov(self_cov(v1, state.cov1), self_cov(v2, state.cov2), cross, nsp)


# --------------------------------------------------------------------------------------------
# Closed-form activation kernels: pure functions of (k11, k22, k12), broadcasting elementwise
# --------------------------------------------------------------------------------------------


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(max(x, 0))`` with a zero (not infinite) derivative at ``x <= 0``."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def _correlation(k11: jax.Array, k22: jax.Array, k12: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sqrt(k11 k22), ρ)`` with ρ clipped to [-1, 1]; ρ = 0 where a variance vanishes.

    The clip absorbs round-off on the diagonal (ρ = 1 ± 1e-16); clipped entries get a zero
    derivative through ρ, which is the exact derivative there (ρ ≡ 1 on the diagonal).
    """
    norm = _safe_sqrt(k11 * k22)
    pos = norm > 0
    rho = jnp.clip(k12 / jnp.where(pos, norm, 1.0), -1.0, 1.0)
    return norm, jnp.where(pos, rho, 0.0)


@jax.custom_jvp
def _arccos1(rho: jax.Array) -> jax.Array:
    """Normalised arc-cosine kernel of order 1: ``E[relu(u) relu(v)]`` for unit variances.

    ``(sqrt(1-ρ²) + (π - arccos ρ) ρ) / (2π)``. Its derivative ``(π - arccos ρ)/(2π)`` is finite
    at ρ = ±1, but autodiff of the two terms separately gives ∞ - ∞ there: hence the custom JVP.
    """
    return (jnp.sqrt((1.0 - rho) * (1.0 + rho)) + (jnp.pi - jnp.arccos(rho)) * rho) / (2 * jnp.pi)


@_arccos1.defjvp
def _arccos1_jvp(primals, tangents):
    (rho,), (t,) = primals, tangents
    return _arccos1(rho), (jnp.pi - jnp.arccos(rho)) / (2 * jnp.pi) * t


def _relu_kernel(k11, k22, k12):
    norm, rho = _correlation(k11, k22, k12)
    return norm * _arccos1(rho)


def _leaky_relu_kernel(alpha, k11, k22, k12):
    # φ(x) = αx + (1-α) relu(x) and E[u relu(v)] = k12/2, hence α k12 + (1-α)² E[relu relu].
    return alpha * k12 + (1.0 - alpha) ** 2 * _relu_kernel(k11, k22, k12)


def _erf_kernel(k11, k22, k12):
    # E[erf(u) erf(v)] = (2/π) arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22))); |argument| < 1 always.
    arg = 2.0 * k12 / jnp.sqrt((1.0 + 2.0 * k11) * (1.0 + 2.0 * k22))
    return (2.0 / jnp.pi) * jnp.arcsin(jnp.clip(arg, -1.0, 1.0))


@functools.lru_cache(maxsize=32)
def _gauss_hermite(num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``E[g(z)]``, ``z ~ N(0, 1)`` (probabilists' Hermite, weights sum 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(num_points)
    return z, w / np.sqrt(2.0 * np.pi)


def _quadrature_kernel(fn: Callable, num_points: int, k11, k22, k12):
    """``E[fn(u) fn(v)]`` by tensor-product Gauss–Hermite quadrature.

    Writes ``u = √k11 z1``, ``v = √k22 (ρ z1 + √(1-ρ²) z2)`` with independent standard normals. The
    outer sum over z1 is a ``lax.scan``: memory ``O(num_points)`` per entry, not its square.
    """
    k11, k22, k12 = jnp.broadcast_arrays(k11, k22, k12)
    _, rho = _correlation(k11, k22, k12)
    sd1, sd2 = _safe_sqrt(k11), _safe_sqrt(k22)
    # √(1-ρ²) has an infinite derivative at ρ = ±1; _safe_sqrt gives 0 there (and ρ is clipped).
    s = _safe_sqrt((1.0 - rho) * (1.0 + rho))
    z_np, w_np = _gauss_hermite(num_points)
    z, w = jnp.asarray(z_np, k12.dtype), jnp.asarray(w_np, k12.dtype)

    def body(acc, node):
        za, wa = node
        v = sd2[..., None] * (rho[..., None] * za + s[..., None] * z)
        inner = jnp.sum(fn(v) * w, axis=-1)
        return acc + wa * fn(sd1 * za) * inner, None

    acc, _ = jax.lax.scan(body, jnp.zeros_like(k12), (z, w))
    return acc


# --------------------------------------------------------------------------------------------
# Hyper-parameter checks (concrete values only: under tracing they are skipped)
# --------------------------------------------------------------------------------------------


def _check_scalar(value: Any, name: str, layer: str, nonneg: bool) -> None:
    a = concrete(value)
    if a is None or a.dtype.kind not in "biuf":
        return
    if a.ndim != 0:
        raise ValueError(f"`{name}` of {layer} must be a scalar; got shape {a.shape}.")
    if not np.isfinite(a) or (nonneg and a < 0):
        need = "finite and >= 0" if nonneg else "finite"
        raise ValueError(f"`{name}` of {layer} must be {need}; got {a.item()!r}.")


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def _pytree(data: tuple[str, ...] = (), meta: tuple[str, ...] = ()):
    """Frozen dataclass registered as a pytree: ``data`` fields are leaves, ``meta`` are static.

    Registered as an ordinary custom node rather than with ``jax.tree_util.register_dataclass``:
    on jax 0.10.2 the treedefs of *different* dataclass types with the same field names compare
    equal (e.g. ``Abs()`` and ``Identity()``) while hashing differently, so on a hash-bucket
    collision ``jit``'s cache returns the computation compiled for the other layer type (seen
    here: the Identity network evaluated as Abs). Ordinary nodes compare their types.
    Unflattening bypasses ``__init__``, so leaves may be tracers or placeholders.
    """

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)

        def flatten_with_keys(obj):
            children = tuple((jax.tree_util.GetAttrKey(f), getattr(obj, f)) for f in data)
            return children, tuple(getattr(obj, f) for f in meta)

        def flatten(obj):
            return tuple(getattr(obj, f) for f in data), tuple(getattr(obj, f) for f in meta)

        def unflatten(aux, children):
            obj = object.__new__(cls)
            for name, value in zip(meta + data, tuple(aux) + tuple(children)):
                object.__setattr__(obj, name, value)
            return obj

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
        return cls

    return wrap


class Kernel:
    """Base class of every layer and network: a callable NNGP kernel and an immutable pytree.

    ``kernel(x1, x2=None)`` takes ``x1`` of shape ``(n1, d)`` (fully connected) or ``(n1, H, W, C)``
    (images, NHWC) and ``x2`` of the same trailing shape (``None`` means ``x2 = x1``). It returns
    the NNGP matrix of shape ``(n1, n2)``; a network ending on spatial layers (no pooling/flatten)
    returns the full spatial covariance ``(n1, n2, H', W', H', W')``.

    The computation is jit-compiled (once per architecture and input shapes); inputs and concrete
    hyper-parameters are validated first. It can be called inside ``jit``/``grad``/``vmap``.
    """

    def _apply(self, state: _Cov) -> _Cov:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_params(self) -> None:
        """Raise ``ValueError`` for concrete invalid hyper-parameters (overridden by layers)."""

    def _raw(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        """Unvalidated NNGP of two validated batches (traced inside ``jit``)."""
        return self._apply(_input_cov(x1, x2)).cross

    def __call__(self, x1: Any, x2: Any = None) -> jax.Array:
        x1, x2 = _validate_inputs(x1, x2, allowed_ndim=(2, 4))
        self._check_params()
        return _jit_raw(self, x1, x1 if x2 is None else x2)


@jax.jit
def _jit_raw(kernel: Any, x1: jax.Array, x2: jax.Array) -> jax.Array:
    return kernel._raw(x1, x2)


@_pytree(data=("layers",))
class Serial(Kernel):
    """Composition of layers, applied left to right. Build it with :func:`serial`."""

    layers: tuple

    def _apply(self, state: _Cov) -> _Cov:
        for layer in self.layers:
            state = layer._apply(state)
        return state

    def _check_params(self) -> None:
        for layer in self.layers:
            layer._check_params()


@_pytree(data=("W_std", "b_std"))
class Dense(Kernel):
    """Fully connected (or per-position, channel-wise) layer: ``K ↦ W_std² K + b_std²``.

    ``W_std``: weights have variance ``W_std²/fan_in``; ``b_std``: bias standard deviation.
    """

    W_std: Any = 1.0
    b_std: Any = 0.0

    def _apply(self, state: _Cov) -> _Cov:
        w2, b2 = self.W_std**2, self.b_std**2
        return state.map(lambda k: w2 * k + b2)

    def _check_params(self) -> None:
        _check_scalar(self.W_std, "W_std", "Dense", nonneg=True)
        _check_scalar(self.b_std, "b_std", "Dense", nonneg=True)


@_pytree()
class Relu(Kernel):
    """``max(x, 0)``: arc-cosine kernel of order 1 (closed form)."""

    def _apply(self, state: _Cov) -> _Cov:
        return _apply_activation(_relu_kernel, state)


@_pytree()
class Erf(Kernel):
    """``erf(x)``: ``(2/π) arcsin(2 k12 / sqrt((1 + 2 k11)(1 + 2 k22)))`` (closed form)."""

    def _apply(self, state: _Cov) -> _Cov:
        return _apply_activation(_erf_kernel, state)


@_pytree(data=("alpha",))
class LeakyRelu(Kernel):
    """``x if x > 0 else alpha·x``: ``alpha k12 + (1-alpha)² E[relu relu]``; ``alpha`` is a leaf."""

    alpha: Any

    def _apply(self, state: _Cov) -> _Cov:
        return _apply_activation(functools.partial(_leaky_relu_kernel, self.alpha), state)

    def _check_params(self) -> None:
        _check_scalar(self.alpha, "alpha", "LeakyRelu", nonneg=False)


@_pytree()
class Abs(Kernel):
    """``|x|``: the leaky-ReLU kernel at ``alpha = -1``, ``4 E[relu relu] - k12``."""

    def _apply(self, state: _Cov) -> _Cov:
        return _apply_activation(functools.partial(_leaky_relu_kernel, -1.0), state)


@_pytree()
class Identity(Kernel):
    """Linear activation: the covariance is unchanged."""

    def _apply(self, state: _Cov) -> _Cov:
        return state


@_pytree(meta=("fn", "num_points"))
class Elementwise(Kernel):
    """Any scalar activation ``fn`` (a jax-traceable function of an array, applied elementwise).

    ``E[fn(u) fn(v)]`` is computed by ``num_points × num_points`` Gauss–Hermite quadrature; exact
    for polynomials of degree < 2·num_points in each variable, slower to converge for kinks (ReLU:
    use :class:`Relu`). Per kernel entry: ``num_points²`` evaluations, ``num_points`` memory.
    """

    fn: Callable
    num_points: int = 32

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"`fn` of Elementwise must be callable; got {self.fn!r}.")
        if int(self.num_points) < 1:
            raise ValueError(f"`num_points` of Elementwise must be >= 1; got {self.num_points!r}.")
        object.__setattr__(self, "num_points", int(self.num_points))

    def _apply(self, state: _Cov) -> _Cov:
        return _apply_activation(
            functools.partial(_quadrature_kernel, self.fn, self.num_points), state
        )


def _conv_geometry(size: int, f: int, s: int, padding: str) -> tuple[int, int, int]:
    """(output size, low pad, high pad) along one axis, following ``lax``'s SAME/VALID rules."""
    if padding == "VALID":
        if size < f:
            raise ValueError(
                f"Conv with padding='VALID' needs inputs at least {f} wide; got {size}."
            )
        return (size - f) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + f - size, 0)
    return out, total // 2, total - total // 2


def _conv_cov(k: jax.Array, filter_shape, strides, padding: str) -> jax.Array:
    """Average ``k[..., h+a, w+b, h'+a, w'+b]`` over the filter offsets (a, b) (same offset on
    both sides because the two units share the filter); ``k`` is ``(..., H, W, H, W)``."""
    (fh, fw), (sh, sw) = filter_shape, strides
    ho, ph_lo, ph_hi = _conv_geometry(k.shape[-4], fh, sh, padding)
    wo, pw_lo, pw_hi = _conv_geometry(k.shape[-3], fw, sw, padding)
    pads = [(0, 0)] * (k.ndim - 4) + [(ph_lo, ph_hi), (pw_lo, pw_hi)] * 2
    kp = jnp.pad(k, pads)  # zero padding: padded positions carry no signal, as in lax.conv
    acc = jnp.zeros(k.shape[:-4] + (ho, wo, ho, wo), k.dtype)
    for a in range(fh):
        hs = slice(a, a + (ho - 1) * sh + 1, sh)
        for b in range(fw):
            ws = slice(b, b + (wo - 1) * sw + 1, sw)
            acc = acc + kp[..., hs, ws, hs, ws]
    return acc / (fh * fw)


def _require_spatial(state: _Cov, layer: str) -> None:
    if state.n_spatial != 2:
        raise ValueError(
            f"{layer} needs image inputs of shape (n, H, W, C) and no earlier pooling/flatten; "
            "got a fully connected representation."
        )


@_pytree(data=("W_std", "b_std"), meta=("filter_shape", "strides", "padding"))
class Conv(Kernel):
    """2-D convolution on NHWC images (infinitely many channels).

    ``K ↦ W_std²/(fh·fw) Σ_{offsets o} K[p+o, p'+o] + b_std²`` on the full spatial covariance
    ``(..., H, W, H, W)``; ``padding`` is ``'SAME'`` (zero padding) or ``'VALID'``.
    """

    filter_shape: tuple = (3, 3)
    strides: tuple = (1, 1)
    padding: str = "SAME"
    W_std: Any = 1.0
    b_std: Any = 0.0

    def __post_init__(self):
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

    def _apply(self, state: _Cov) -> _Cov:
        _require_spatial(state, "Conv")
        w2, b2 = self.W_std**2, self.b_std**2
        conv = functools.partial(
            _conv_cov, filter_shape=self.filter_shape, strides=self.strides, padding=self.padding
        )
        return state.map(lambda k: w2 * conv(k) + b2)

    def _check_params(self) -> None:
        _check_scalar(self.W_std, "W_std", "Conv", nonneg=True)
        _check_scalar(self.b_std, "b_std", "Conv", nonneg=True)


@_pytree()
class GlobalAvgPool(Kernel):
    """Average over positions: the covariance is averaged over all pairs ``(p, p')``."""

    def _apply(self, state: _Cov) -> _Cov:
        _require_spatial(state, "GlobalAvgPool")
        return _Cov(*(jnp.mean(k, axis=(-4, -3, -2, -1)) for k in state[:3]), 0)


@_pytree()
class Flatten(Kernel):
    """Flatten ``(H, W, C) → H·W·C`` features: the covariance is averaged over ``p = p'``
    (the next Dense's fan-in is H·W·C, hence the average rather than the sum)."""

    def _apply(self, state: _Cov) -> _Cov:
        _require_spatial(state, "Flatten")

        def diag_mean(k):
            h, w = k.shape[-2:]
            flat = k.reshape(k.shape[:-4] + (h * w, h * w))
            return jnp.mean(jnp.diagonal(flat, axis1=-2, axis2=-1), axis=-1)

        return _Cov(*(diag_mean(k) for k in state[:3]), 0)


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


def _activation_layer(activation: Any, alpha: Any, num_points: int) -> Kernel:
    """The activation layer for :func:`fc` from a name, a callable or a layer instance."""
    if isinstance(activation, Kernel):  # checked first: layers are callable too
        return activation
    if isinstance(activation, str):
        key = activation.lower()
        if key == "relu":
            return Relu()
        if key == "erf":
            return Erf()
        if key == "leaky_relu":
            return LeakyRelu(alpha)
        if key == "abs":
            return Abs()
        if key == "identity":
            return Identity()
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
    activation: Any = "relu",
    W_std: Any = 1.0,
    b_std: Any = 0.0,
    *,
    alpha: Any = 0.01,
    num_points: int = 32,
) -> Serial:
    """Fully connected network ``[Dense(W_std, b_std), act] × depth + Dense(W_std, b_std)``.

    ``activation``: one of ``'relu', 'erf', 'leaky_relu', 'abs', 'identity'``, a callable (→
    :class:`Elementwise` with ``num_points``) or a layer instance; ``alpha``: leaky-ReLU slope.
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"`depth` must be an integer >= 0; got {depth!r}.")
    layers: list[Kernel] = []
    for _ in range(int(depth)):
        layers += [Dense(W_std, b_std), _activation_layer(activation, alpha, num_points)]
    layers.append(Dense(W_std, b_std))
    return Serial(tuple(layers))


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _as_input(
    x: Any, name: str, allowed_ndim: tuple[int, ...] | None, host: bool = False
) -> jax.Array | np.ndarray:
    """``x`` as a floating JAX array after checking finiteness and ndim (errors name ``name``).

    ``host=True`` returns a numpy array instead (same dtype as the JAX array would have), so a
    numpy input is not copied to the device.
    """
    check_finite(x, name)
    if host:
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(jnp.result_type(float))
        canonical = jax.dtypes.canonicalize_dtype(arr.dtype)
        if arr.dtype != canonical:
            arr = arr.astype(canonical)
    else:
        arr = jnp.asarray(x)
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            arr = arr.astype(jnp.result_type(float))
    if arr.ndim < 2 or (allowed_ndim is not None and arr.ndim not in allowed_ndim):
        raise ValueError(
            f"`{name}` must have shape (n, d) or (n, H, W, C); got shape {tuple(arr.shape)} "
            f"(ndim={arr.ndim}). A single point needs a leading batch axis, e.g. x[None]."
        )
    return arr


def _validate_inputs(x1: Any, x2: Any, allowed_ndim: tuple[int, ...] | None, names=("x1", "x2")):
    """Validate a pair of input batches (``x2`` may be ``None``); return them in a common dtype."""
    x1 = _as_input(x1, names[0], allowed_ndim)
    if x2 is None:
        return x1, None
    x2 = _as_input(x2, names[1], allowed_ndim)
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(
            f"`{names[1]}` has feature shape {tuple(x2.shape[1:])} but `{names[0]}` has "
            f"{tuple(x1.shape[1:])}; "
            "both batches must have the same shape after the batch axis."
        )
    dtype = jnp.promote_types(x1.dtype, x2.dtype)
    return x1.astype(dtype), x2.astype(dtype)


# --------------------------------------------------------------------------------------------
# neural-tangents adapter
# --------------------------------------------------------------------------------------------


@_pytree(meta=("kernel_fn",))
class KernelFn:
    """Wrap a neural-tangents-style ``kernel_fn(x1, x2, 'nngp')`` as an rgjax kernel.

    Callable as ``k(x1, x2=None) -> (n1, n2)`` and accepted by :func:`gram`. The wrapped function
    must be jax-traceable (neural-tangents' are); it is the static part of this pytree.
    """

    kernel_fn: Callable

    def _raw(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        out = self.kernel_fn(x1, x2, "nngp")
        out = jnp.asarray(getattr(out, "nngp", out))  # also accept a returned Kernel namedtuple
        if out.shape != (x1.shape[0], x2.shape[0]):
            raise ValueError(
                f"kernel_fn returned shape {tuple(out.shape)}; expected the NNGP matrix "
                f"{(x1.shape[0], x2.shape[0])}."
            )
        return out

    def __call__(self, x1: Any, x2: Any = None) -> jax.Array:
        x1, x2 = _validate_inputs(x1, x2, allowed_ndim=None)
        # x2 = x1 explicitly: not every user-written kernel_fn implements neural-tangents' None.
        return self._raw(x1, x1 if x2 is None else x2)


def from_kernel_fn(kernel_fn: Callable) -> KernelFn:
    """Adapt ``kernel_fn(x1, x2, 'nngp') -> (n1, n2)`` (e.g. ``stax.serial(...)[2]``) to rgjax."""
    if not callable(kernel_fn):
        raise TypeError(f"`kernel_fn` must be callable; got {kernel_fn!r}.")
    return KernelFn(kernel_fn)


# --------------------------------------------------------------------------------------------
# Gram matrices: blocked (host or row-sharded over devices), matrix-free products, diagonal
# --------------------------------------------------------------------------------------------


def _check_gram_args(
    kernel: Any, x: Any, block_size: Any, host: bool = False
) -> jax.Array | np.ndarray:
    """Validate the arguments shared by :func:`gram`, :func:`gram_operator`, :func:`gram_diagonal`.

    Returns ``x`` as a floating JAX array ``(N, ...)`` (with ``host=True`` on the CPU backend, a
    numpy input stays a numpy array: no device copy). Raises ``TypeError`` for a non-kernel,
    ``ValueError`` for a bad ``block_size``, bad ``x`` or a kernel that does not return one number
    per pair of inputs (a network ending on spatial layers).
    """
    if not isinstance(kernel, (Kernel, KernelFn)):
        raise TypeError(
            "`kernel` must be an rgjax kernel (e.g. fc(2) or serial(...)); wrap a "
            f"neural-tangents kernel_fn with from_kernel_fn(kernel_fn). "
            f"Got {type(kernel).__name__}."
        )
    integral = isinstance(block_size, (int, np.integer)) and not isinstance(block_size, bool)
    if not integral or block_size < 1:
        raise ValueError(f"`block_size` must be a positive integer; got {block_size!r}.")
    allowed = (2, 4) if isinstance(kernel, Kernel) else None
    if host and not isinstance(x, jax.Array) and jax.default_backend() == "cpu":
        x = _as_input(x, "x", allowed, host=True)
    else:
        x, _ = _validate_inputs(x, None, allowed_ndim=allowed, names=("x", ""))
    if isinstance(kernel, Kernel):
        kernel._check_params()
        one = jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype)
        shape = jax.eval_shape(kernel._raw, one, one).shape
        if shape != (1, 1):
            raise ValueError(
                f"`kernel` returns shape {shape} for one pair of inputs, not a single number: it "
                "ends on spatial layers. Add GlobalAvgPool() or Flatten() (and a Dense) at the end "
                "of the network to get an (N, N) Gram matrix."
            )
    return x


# ---- host path ------------------------------------------------------------------------------


@jax.jit
def _tile(kernel: Any, xa: jax.Array, xb: jax.Array) -> jax.Array:
    return kernel._raw(xa, xb)


def _gram_host(
    kernel: Any, x: jax.Array | np.ndarray, block_size: int, progress: bool
) -> np.ndarray:
    """Host numpy ``(N, N)`` Gram matrix filled tile by tile (see :func:`gram`).

    ``x`` is a JAX array, or on the CPU backend the numpy input itself: its blocks are then
    copied in per tile instead of holding a device copy of all of ``x``.
    """
    n = x.shape[0]
    if n == 0:
        return np.empty((0, 0), dtype=np.asarray(x).dtype)
    b = min(int(block_size), n)
    nb = -(-n // b)
    # Every tile has shape (b, b): the last block starts at n - b (overlapping its neighbour)
    # and only its new rows/columns are kept. One compiled tile, and no padded copy of x.
    starts = [min(i * b, n - b) for i in range(nb)]
    pairs = [(i, j) for i in range(nb) for j in range(i, nb)]
    out: np.ndarray | None = None
    bar = _progress(len(pairs)) if progress else None

    def dispatch(t: int) -> jax.Array:
        i, j = pairs[t]
        return _tile(kernel, x[starts[i] : starts[i] + b], x[starts[j] : starts[j] + b])

    pending = dispatch(0)
    for t, (i, j) in enumerate(pairs):
        tile = np.asarray(pending)  # waits for tile t (on CPU: a view of its buffer, no copy)
        if t + 1 < len(pairs):  # async dispatch: compute the next tile while storing this one
            pending = dispatch(t + 1)
        if out is None:
            out = np.empty((n, n), dtype=tile.dtype)
        r0, r1, c0, c1 = i * b, min((i + 1) * b, n), j * b, min((j + 1) * b, n)
        tile = tile[r0 - starts[i] : r1 - starts[i], c0 - starts[j] : c1 - starts[j]]
        if i == j:
            out[r0:r1, c0:c1] = tile
            out[r0:r1, c0:c1] += tile.T
            out[r0:r1, c0:c1] *= 0.5
        else:
            out[r0:r1, c0:c1] = tile
            out[c0:c1, r0:r1] = tile.T
        del tile
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _progress(total: int):
    from tqdm import tqdm  # a core dependency; imported lazily to keep `import rgjax` light

    return tqdm(total=total, desc="gram tiles", unit="tile")


# ---- devices: meshes, shard_map -------------------------------------------------------------


def _shard_map(f: Callable, mesh: Any, in_specs: Any, out_specs: Any) -> Callable:
    """``jax.shard_map`` (jax >= 0.6) or ``jax.experimental.shard_map`` (older), unchecked."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # pragma: no cover - jax < 0.6

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def _row_mesh(devices: list) -> jax.sharding.Mesh:
    """A 1-D mesh ``('rows',)`` over ``devices``, with the Auto axis type where jax has them (on
    jax >= 0.10 ``make_mesh`` defaults to Explicit axes, which ``jnp.linalg.eigh`` rejects)."""
    arr = np.empty(len(devices), dtype=object)
    arr[:] = devices
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is not None:
        try:
            return jax.sharding.Mesh(arr, ("rows",), axis_types=(axis_type.Auto,))
        except TypeError:  # pragma: no cover - jax versions without axis_types in Mesh
            pass
    return jax.sharding.Mesh(arr, ("rows",))  # pragma: no cover


def _row_sharding(devices: Any, sharding: Any) -> jax.sharding.NamedSharding | None:
    """The row sharding requested through ``devices`` or ``sharding`` (None: host path)."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    if devices is not None and sharding is not None:
        raise ValueError("pass either `devices` or `sharding`, not both.")
    if sharding is not None:
        if not isinstance(sharding, NamedSharding):
            raise ValueError(
                "`sharding` must be a jax.sharding.NamedSharding that splits rows, e.g. "
                f"NamedSharding(mesh, PartitionSpec('rows', None)); got {type(sharding).__name__}."
            )
        spec = tuple(sharding.spec)
        if not spec or spec[0] is None or any(s is not None for s in spec[1:]):
            raise ValueError(
                "`sharding` must split the rows over mesh axes and keep columns whole, i.e. "
                f"PartitionSpec(axis) or PartitionSpec(axis, None); got {sharding.spec}."
            )
        return NamedSharding(sharding.mesh, P(spec[0], None))
    if devices is None:
        return None
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"`devices`={devices} must lie in [1, {len(available)}] (the devices jax sees); "
                "or pass a list of jax devices."
            )
        devs = list(available[: int(devices)])
    else:
        try:
            devs = list(devices)
        except TypeError:
            raise ValueError(
                f"`devices` must be a sequence of jax devices or a count; got {devices!r}."
            ) from None
        if not devs or not all(isinstance(d, jax.Device) for d in devs):
            raise ValueError(
                "`devices` must be a non-empty sequence of jax devices (e.g. jax.devices()) or "
                f"a count; got {devices!r}."
            )
        if len({d.id for d in devs}) != len(devs):
            raise ValueError("`devices` lists the same device more than once.")
    return NamedSharding(_row_mesh(devs), P("rows", None))


def _axis_size(sharding: Any) -> int:
    """Number of row shards: the product of the mesh axes named in ``spec[0]``."""
    axes = sharding.spec[0]
    axes = axes if isinstance(axes, tuple) else (axes,)
    return math.prod(sharding.mesh.shape[a] for a in axes)


def _replicated(x: jax.Array, mesh: Any) -> jax.Array:
    """``x`` replicated over ``mesh`` (also across processes: every process passes the same x)."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    target = NamedSharding(mesh, P())
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(target, x.ndim):
        return x
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, target, lambda idx: host[idx])


def _balanced_tile(total: int, block: int) -> int:
    """Tile length ``≤ block`` covering ``total`` with the fewest tiles and least overlap."""
    count = -(-total // block)
    return -(-total // count)


@functools.partial(jax.jit, static_argnames=("sharding", "row_tile", "col_tile"))
def _gram_rows(kernel: Any, x: jax.Array, *, sharding: Any, row_tile: int, col_tile: int):
    """Row-sharded ``(N, N)`` Gram matrix: each device fills its ``(N/D, N)`` row block in place,
    one ``(row_tile, col_tile)`` tile at a time (tiles at the edges are shifted back to fit)."""
    from jax.sharding import PartitionSpec as P

    axis = sharding.spec[0]
    n = x.shape[0]
    rows = n // _axis_size(sharding)
    n_row_tiles, n_col_tiles = -(-rows // row_tile), -(-n // col_tile)
    one = jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype)
    dtype = jax.eval_shape(kernel._raw, one, one).dtype

    def local(kernel, x):
        row0 = jax.lax.axis_index(axis) * rows

        def body(t, out):
            i, j = t // n_col_tiles, t % n_col_tiles
            r0 = jnp.minimum(i * row_tile, rows - row_tile)
            c0 = jnp.minimum(j * col_tile, n - col_tile)
            xa = jax.lax.dynamic_slice_in_dim(x, row0 + r0, row_tile, axis=0)
            xb = jax.lax.dynamic_slice_in_dim(x, c0, col_tile, axis=0)
            return jax.lax.dynamic_update_slice(out, kernel._raw(xa, xb).astype(dtype), (r0, c0))

        out = jnp.zeros((rows, n), dtype)
        return jax.lax.fori_loop(0, n_row_tiles * n_col_tiles, body, out)

    return _shard_map(local, sharding.mesh, (P(), P()), P(axis, None))(kernel, x)


def _gram_sharded(kernel: Any, x: jax.Array, block_size: int, sharding: Any) -> jax.Array:
    n, n_shards = x.shape[0], _axis_size(sharding)
    if n % n_shards:
        raise ValueError(
            f"`x` has N={n} points, which {n_shards} row shards cannot split evenly (jax "
            "shardings need equal shards). Use a number of devices that divides N, e.g. "
            f"devices=jax.devices()[:k], or trim/pad x to a multiple of {n_shards} "
            f"(x[:{n - n % n_shards}] drops the last {n % n_shards} points)."
        )
    if n == 0:
        return jax.device_put(jnp.zeros((0, 0), x.dtype), sharding)
    rows = n // n_shards
    row_tile = _balanced_tile(rows, min(block_size, rows))
    col_tile = _balanced_tile(n, min(block_size, n))
    x = _replicated(x, sharding.mesh)
    return _gram_rows(kernel, x, sharding=sharding, row_tile=row_tile, col_tile=col_tile)


def gram(
    kernel: Kernel | KernelFn,
    x: Any,
    block_size: int = 512,
    *,
    progress: bool = False,
    devices: Any = None,
    sharding: Any = None,
) -> np.ndarray | jax.Array:
    """The ``(N, N)`` Gram matrix ``K(x, x)`` of ``x`` (shape ``(N, d)`` or ``(N, H, W, C)``).

    Args:
      kernel: an rgjax kernel (:func:`fc`, :func:`serial`, ...) or :func:`from_kernel_fn`.
      x: ``(N, ...)`` inputs.
      block_size: tile edge; memory beyond the output is a few tiles of ``block_size²`` numbers
        (times ``(HW)²`` for image kernels: use a small block there). The default 512 is as fast
        as 1024 on CPU and keeps the host path's extra memory at N = 4000, d = 784 to ≈ 0.1-0.2×
        the output (1024: ≈ 0.4×; ``benchmarks/bench_kernels.py``).
      progress: show a tqdm bar over tiles (host path only; the device path is one program).
      devices: ``None`` (default: host path below), a sequence of jax devices, or a count ``k``
        (the first ``k`` of ``jax.devices()``): return a ``jax.Array`` whose rows are split over
        these devices, ``NamedSharding(Mesh(devices, ('rows',)), PartitionSpec('rows', None))``.
      sharding: instead of ``devices``, a ``NamedSharding`` splitting rows over any mesh axes,
        ``PartitionSpec(axis)`` or ``PartitionSpec(axis, None)``; the result has that sharding.

    Returns:
      Without ``devices``/``sharding``: a host ``numpy.ndarray`` ``(N, N)``, exactly symmetric.
      With them: a ``jax.Array`` ``(N, N)`` sharded by rows, equal to the host result to
      round-off (≈1e-16 relative; symmetric to round-off). N must be divisible by the number of
      row shards (jax shardings need equal shards). float64 when x64 is enabled.

    Host path (default): the output is a host numpy array filled tile by tile. Only tiles
    ``(I, J)`` with ``J ≥ I`` of a ``block × block`` grid are computed and mirrored, which halves
    the work and makes the result exactly symmetric (diagonal tiles are symmetrised,
    ``(T + Tᵀ)/2``). Every tile has one shape (the last block is shifted back to end at N), so
    the kernel is compiled once. Peak memory: the N² output plus two tiles (the next tile is
    computed while the current one is stored). On the CPU backend a numpy ``x`` is not copied
    to the device as a whole: its blocks are passed per tile.

    Device path: one compiled program (``shard_map``) in which every device fills its own
    ``(N/D, N)`` row block in place, tile by tile, so each device holds its block plus one tile of
    intermediates. It computes all N² entries (no mirroring across devices, which would need
    communication), i.e. ``N²/D`` per device. The result feeds ``jnp.linalg.eigh``, ``K @ V``
    and the other jax operations directly (the mesh uses the Auto axis type).

    Multi-device and multi-host use:

    * One host, several accelerators: ``gram(kernel, x, devices=jax.devices())``. On CPU, test
      with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before importing jax.
    * Several hosts: call ``jax.distributed.initialize()`` in every process first, load the same
      ``x`` everywhere, then make the same calls with the global devices,
      ``gram(kernel, x, devices=jax.devices())`` or ``sharding=NamedSharding(mesh, P('rows'))``;
      each process computes and holds only the rows on its own devices (``K.addressable_shards``).
      :func:`gram_operator`/:func:`gram_matvec` take the same ``devices``/``sharding`` arguments
      and need no N² memory at all.
    """
    row_sharding = _row_sharding(devices, sharding)
    x = _check_gram_args(kernel, x, block_size, host=row_sharding is None)
    if row_sharding is None:
        return _gram_host(kernel, x, int(block_size), progress)
    return _gram_sharded(kernel, x, int(block_size), row_sharding)


# ---- diagonal -------------------------------------------------------------------------------


@jax.jit
def _diagonal_closed(kernel: Any, x: jax.Array) -> jax.Array:
    # The self-covariance of the layer recursion is the Gram diagonal: O(N) work. The second
    # batch (one point) only keeps the cross term small.
    return kernel._apply(_input_cov(x, x[:1])).cov1


@functools.partial(jax.jit, static_argnames=("size",))
def _diagonal_blocks(kernel: Any, x: jax.Array, size: int) -> jax.Array:
    # Generic kernel_fn: diagonals of (size × size) tiles along the diagonal, O(N·size) work.
    n = x.shape[0]
    nb = -(-n // size)
    xp = jnp.concatenate([x, jnp.broadcast_to(x[-1:], (nb * size - n,) + x.shape[1:])], axis=0)
    blocks = xp.reshape((nb, size) + x.shape[1:])
    d = jax.lax.map(lambda xb: jnp.diagonal(kernel._raw(xb, xb)), blocks)
    return d.reshape(-1)[:n]


def gram_diagonal(kernel: Kernel | KernelFn, x: Any) -> jax.Array:
    """``K(x_i, x_i)`` for every point: the ``(N,)`` diagonal of :func:`gram` without the matrix.

    For rgjax layers it is the self-covariance of the layer recursion, ``O(N)`` work; for a
    wrapped ``kernel_fn`` it takes the diagonals of ``32 × 32`` tiles (``O(32 N)``). Equal to
    ``diag(gram(kernel, x))`` to round-off; its sum is the trace the spectrum's tail mass needs.
    """
    x = _check_gram_args(kernel, x, 1)
    if x.shape[0] == 0:
        return jnp.zeros((0,), x.dtype)
    if isinstance(kernel, Kernel):
        return _diagonal_closed(kernel, x)
    return _diagonal_blocks(kernel, x, size=min(32, x.shape[0]))


# ---- matrix-free products -------------------------------------------------------------------


def _pair_schedule(nb: int, n_shards: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle tile pairs ``(I, J)``, ``J ≥ I``, dealt round-robin to ``n_shards``.

    Returns ``I, J, weight`` of shape ``(n_shards, m)``; padding pairs have weight 0.
    """
    rows, cols = np.triu_indices(nb)
    count = rows.size
    m = -(-count // n_shards)
    pad = m * n_shards - count
    weight = np.concatenate([np.ones(count), np.zeros(pad)])
    rows = np.concatenate([rows, np.zeros(pad, int)]).astype(np.int32)
    cols = np.concatenate([cols, np.zeros(pad, int)]).astype(np.int32)
    shape = (m, n_shards)  # round-robin: pair t goes to shard t % n_shards
    return tuple(a.reshape(shape).T.copy() for a in (rows, cols, weight))


@functools.partial(jax.jit, static_argnames=("size", "sharding"))
def _matvec(kernel: Any, x: jax.Array, v: jax.Array, *, size: int, sharding: Any) -> jax.Array:
    """``K(x, x) @ v`` for ``v`` of shape ``(N, k)`` through ``(size, size)`` tiles ``J ≥ I``.

    Each tile ``T = K(x_I, x_J)`` contributes ``T v_J`` to rows I and ``Tᵀ v_I`` to rows J (if
    I ≠ J): the kernel is evaluated on half the matrix. Rows are padded to a multiple of
    ``size`` by repeating the last point, with zero rows in ``v`` (so padding adds nothing).
    With a sharding the tiles are dealt to the row shards and the partial products summed.
    """
    from jax.sharding import PartitionSpec as P

    n, k = v.shape
    nb = -(-n // size)
    npad = nb * size
    xp = jnp.concatenate([x, jnp.broadcast_to(x[-1:], (npad - n,) + x.shape[1:])], axis=0)
    one = jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype)
    dtype = jnp.result_type(jax.eval_shape(kernel._raw, one, one).dtype, v.dtype)
    vp = jnp.pad(v.astype(dtype), ((0, npad - n), (0, 0)))
    n_shards = 1 if sharding is None else _axis_size(sharding)
    rows_np, cols_np, weight_np = _pair_schedule(nb, n_shards)
    dot = functools.partial(jnp.matmul, precision=_HIGHEST)

    def local(kernel, xp, vp, shard):
        rows_i, cols_j = jnp.asarray(rows_np)[shard], jnp.asarray(cols_np)[shard]
        weights = jnp.asarray(weight_np, dtype)[shard]

        def body(t, acc):
            i, j, w = rows_i[t] * size, cols_j[t] * size, weights[t]
            tile = kernel._raw(
                jax.lax.dynamic_slice_in_dim(xp, i, size, axis=0),
                jax.lax.dynamic_slice_in_dim(xp, j, size, axis=0),
            ).astype(dtype)
            v_i = jax.lax.dynamic_slice_in_dim(vp, i, size, axis=0)
            v_j = jax.lax.dynamic_slice_in_dim(vp, j, size, axis=0)
            upd = jax.lax.dynamic_slice_in_dim(acc, i, size, axis=0) + w * dot(tile, v_j)
            acc = jax.lax.dynamic_update_slice_in_dim(acc, upd, i, axis=0)
            w_t = jnp.where(i != j, w, jnp.zeros_like(w))
            upd = jax.lax.dynamic_slice_in_dim(acc, j, size, axis=0) + w_t * dot(tile.T, v_i)
            return jax.lax.dynamic_update_slice_in_dim(acc, upd, j, axis=0)

        return jax.lax.fori_loop(0, rows_np.shape[1], body, jnp.zeros((npad, k), dtype))

    if sharding is None:
        out = local(kernel, xp, vp, 0)
    else:
        axis = sharding.spec[0]

        def sharded(kernel, xp, vp):
            return jax.lax.psum(local(kernel, xp, vp, jax.lax.axis_index(axis)), axis)

        out = _shard_map(sharded, sharding.mesh, (P(), P(), P()), P())(kernel, xp, vp)
    return out[:n]


@_pytree(data=("kernel", "x"), meta=("block_size", "sharding"))
class GramOperator:
    """The Gram matrix ``K(x, x)`` as a linear operator: products without storing ``K``.

    Build it with :func:`gram_operator`. ``op(V)`` (also ``op.matvec(V)``) returns ``K @ V`` for
    ``V`` of shape ``(N,)`` or ``(N, b)``, in the same shape; ``op.diagonal()`` is the ``(N,)``
    diagonal and ``op.trace()`` its sum; ``op.shape == (N, N)``. It is a pytree (kernel
    hyper-parameters and ``x`` are leaves), so it can be passed into ``jit``; products are
    compiled once per shape of ``V``.
    """

    kernel: Any
    x: jax.Array
    block_size: int
    sharding: Any

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def dtype(self) -> Any:
        one = jax.ShapeDtypeStruct((1,) + tuple(self.x.shape[1:]), self.x.dtype)
        return jax.eval_shape(self.kernel._raw, one, one).dtype

    def __call__(self, V: Any) -> jax.Array:
        """``K @ V``: ``V`` of shape ``(N,)`` or ``(N, b)`` → the same shape."""
        check_finite(V, "V")
        v = jnp.asarray(V)
        if v.ndim not in (1, 2) or v.shape[0] != self.n:
            raise ValueError(
                f"`V` must have shape (N,) or (N, b) with N = {self.n} (the number of points in "
                f"x); got shape {tuple(v.shape)}."
            )
        if not jnp.issubdtype(v.dtype, jnp.floating):
            v = v.astype(jnp.result_type(float))
        if self.n == 0:
            return jnp.zeros(v.shape, jnp.result_type(self.dtype, v.dtype))
        out = _matvec(
            self.kernel, self.x, v[:, None] if v.ndim == 1 else v, size=self.block_size,
            sharding=self.sharding,
        )
        return out.reshape(v.shape)

    matvec = __call__

    def diagonal(self) -> jax.Array:
        """``(N,)`` diagonal ``K(x_i, x_i)`` (see :func:`gram_diagonal`)."""
        if self.n == 0:
            return jnp.zeros((0,), self.x.dtype)
        if isinstance(self.kernel, Kernel):
            return _diagonal_closed(self.kernel, self.x)
        return _diagonal_blocks(self.kernel, self.x, size=min(32, self.n))

    def trace(self) -> jax.Array:
        """``Σ_i K(x_i, x_i)``, a scalar."""
        return jnp.sum(self.diagonal())


def gram_operator(
    kernel: Kernel | KernelFn,
    x: Any,
    block_size: int = 512,
    *,
    devices: Any = None,
    sharding: Any = None,
) -> GramOperator:
    """``K(x, x)`` as a :class:`GramOperator`: ``op(V) = K @ V`` without storing the matrix.

    Args:
      kernel: an rgjax kernel or :func:`from_kernel_fn`.
      x: ``(N, ...)`` inputs (validated once, here).
      block_size: tile edge; each product evaluates the kernel on the ``J ≥ I`` tiles of a
        ``block × block`` grid (half the matrix) and holds one tile plus ``V`` and the result:
        memory ``O(block² + N b)``, never ``N²``. One product costs about as much as
        building the matrix once with :func:`gram` (the kernel evaluations dominate), so use the
        operator when ``K`` does not fit, or fits only on several devices. On GPUs larger
        blocks (2048-4096) keep the device busier.
      devices: as in :func:`gram`; the tiles are then dealt round-robin to the row shards and
        the partial products summed (``psum``). Any N works here.
      sharding: as in :func:`gram` (instead of ``devices``).

    ``op`` is the callable ``matvec(V: (N, b)) -> (N, b)`` that top-k eigensolvers take;
    ``functools.partial(gram_matvec, kernel, x)`` is equivalent but validates ``x`` on every
    call.
    """
    x = _check_gram_args(kernel, x, block_size)
    row_sharding = _row_sharding(devices, sharding)
    if row_sharding is not None:
        x = _replicated(x, row_sharding.mesh)
    size = min(int(block_size), max(x.shape[0], 1))
    return GramOperator(kernel, x, size, row_sharding)


def gram_matvec(
    kernel: Kernel | KernelFn,
    x: Any,
    V: Any,
    block_size: int = 512,
    *,
    devices: Any = None,
    sharding: Any = None,
) -> jax.Array:
    """``K(x, x) @ V`` for ``V`` of shape ``(N,)`` or ``(N, b)``, without storing ``K``.

    Same as ``gram_operator(kernel, x, block_size, devices=..., sharding=...)(V)``; see
    :func:`gram_operator` for memory and device use. Returns the shape of ``V``.
    """
    return gram_operator(kernel, x, block_size, devices=devices, sharding=sharding)(V)
