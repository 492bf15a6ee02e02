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

Besides the layers the package provides :func:`fc` (a fully connected network by activation name),
:func:`gram` (an N×N Gram matrix built tile by tile with bounded memory, on the host or with its
rows sharded over devices), :func:`gram_operator`/:func:`gram_matvec` (products ``K @ V`` without
storing ``K``), :func:`gram_diagonal` (the diagonal, for traces) and :func:`from_kernel_fn` (an
adapter for any neural-tangents-style ``kernel_fn(x1, x2, 'nngp')``). Multi-device and multi-host
use is described in :func:`gram`.

Modules: ``_covariance`` (the covariance state layers propagate), ``_activations`` (closed forms
and quadrature of ``E[φ(u)φ(v)]``), ``_layers`` (layers, :func:`serial`, :func:`fc`,
:class:`KernelFn`), ``_inputs`` (input checks), ``_gram`` (:func:`gram`, :func:`gram_diagonal`),
``_operator`` (:class:`GramOperator`), ``_mesh`` (row meshes and shardings).
"""

from rgjax.kernels._gram import gram, gram_diagonal
from rgjax.kernels._layers import (
    ACTIVATIONS,
    Abs,
    Conv,
    Dense,
    Elementwise,
    Erf,
    Flatten,
    GlobalAvgPool,
    Identity,
    Kernel,
    KernelFn,
    LeakyRelu,
    Relu,
    Serial,
    fc,
    from_kernel_fn,
    serial,
)
from rgjax.kernels._operator import GramOperator, gram_matvec, gram_operator

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
