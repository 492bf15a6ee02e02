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
:func:`gram` (an N×N Gram matrix built tile by tile with bounded memory) and :func:`from_kernel_fn`
(an adapter for any neural-tangents-style ``kernel_fn(x1, x2, 'nngp')``).
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


def _as_input(x: Any, name: str, allowed_ndim: tuple[int, ...] | None) -> jax.Array:
    """``x`` as a floating JAX array after checking finiteness and ndim (errors name ``name``)."""
    check_finite(x, name)
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
# Blocked Gram matrix
# --------------------------------------------------------------------------------------------


@jax.jit
def _tile(kernel: Any, xa: jax.Array, xb: jax.Array) -> jax.Array:
    return kernel._raw(xa, xb)


def gram(
    kernel: Kernel | KernelFn, x: Any, block_size: int = 1024, *, progress: bool = False
) -> np.ndarray:
    """The ``(N, N)`` Gram matrix ``K(x, x)`` of ``x`` (shape ``(N, ...)``), with bounded memory.

    Design: the output is a host numpy array filled tile by tile. Only tiles ``(I, J)`` with
    ``J ≥ I`` of a ``block × block`` grid are computed and mirrored, which halves the work and
    makes the result exactly symmetric (diagonal tiles are symmetrised, ``(T + Tᵀ)/2``). The last
    block is padded (by repeating the last point), so every tile has one shape and the kernel is
    compiled once. Peak memory: the N² output plus two tiles of intermediates (the next tile is
    dispatched before the current one is copied out). A ``jax.lax.map`` over row blocks would
    instead hold the padded output on the device and copy it when trimming, doubling the peak.

    ``block_size`` trades speed for memory; image kernels hold ``block² (HW)²`` numbers per
    intermediate, so use a small block there. ``progress=True`` shows a tqdm bar over tiles.
    Returns float64 when x64 is enabled.
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
    x, _ = _validate_inputs(
        x, None, allowed_ndim=(2, 4) if isinstance(kernel, Kernel) else None, names=("x", "")
    )
    if isinstance(kernel, Kernel):
        kernel._check_params()
    n = x.shape[0]
    b = min(int(block_size), max(n, 1))
    nb = -(-n // b)
    if nb * b > n:  # repeat the last point: a valid input for any kernel_fn (zeros may not be)
        x = jnp.concatenate([x, jnp.repeat(x[-1:], nb * b - n, axis=0)], axis=0)
    blocks = [x[i * b : (i + 1) * b] for i in range(nb)]
    pairs = [(i, j) for i in range(nb) for j in range(i, nb)]
    out: np.ndarray | None = None
    bar = _progress(len(pairs)) if progress else None

    pending = _tile(kernel, blocks[pairs[0][0]], blocks[pairs[0][1]]) if pairs else None
    for t, (i, j) in enumerate(pairs):
        current = pending
        if t + 1 < len(pairs):  # async dispatch: compute the next tile while copying this one
            pending = _tile(kernel, blocks[pairs[t + 1][0]], blocks[pairs[t + 1][1]])
        tile = np.asarray(current)
        if out is None:
            out = np.empty((n, n), dtype=tile.dtype)
        r0, r1, c0, c1 = i * b, min((i + 1) * b, n), j * b, min((j + 1) * b, n)
        tile = tile[: r1 - r0, : c1 - c0]
        if i == j:
            out[r0:r1, c0:c1] = 0.5 * (tile + tile.T)
        else:
            out[r0:r1, c0:c1] = tile
            out[c0:c1, r0:r1] = tile.T
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if out is None:
        out = np.empty((0, 0), dtype=np.asarray(x).dtype)
    return out


def _progress(total: int):
    from tqdm.auto import tqdm  # a core dependency; imported lazily to keep `import rgjax` light

    return tqdm(total=total, desc="gram tiles", unit="tile")
