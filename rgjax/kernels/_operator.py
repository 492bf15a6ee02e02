"""The Gram matrix as a linear operator: products ``K(x, x) @ V`` without storing ``K``."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rgjax._pytree import dataclass, field
from rgjax._sharding import shard_map
from rgjax._typing import Array, ArrayLike
from rgjax._validate import check_finite
from rgjax.kernels._covariance import HIGHEST
from rgjax.kernels._gram import check_gram_args, gram_diagonal_traced
from rgjax.kernels._layers import Kernel, KernelFn
from rgjax.kernels._mesh import Device, axis_size, mesh_of, replicated, row_sharding

__all__ = ["GramOperator", "gram_operator", "gram_matvec", "tiled_matvec", "pair_schedule"]


def pair_schedule(nb: int, n_shards: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    i, j, w = (a.reshape(shape).T.copy() for a in (rows, cols, weight))
    return i, j, w


def _output_dtype(kernel: Kernel | KernelFn, x: Array) -> jnp.dtype:
    """The dtype of the kernel's values on inputs like ``x``."""
    one = jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype)
    return jax.eval_shape(kernel.nngp_traced, one, one).dtype


@functools.partial(jax.jit, static_argnames=("size", "sharding"))
def tiled_matvec(
    kernel: Kernel | KernelFn, x: Array, v: Array, *, size: int, sharding: NamedSharding | None
) -> Array:
    """``K(x, x) @ v`` for ``v`` of shape ``(N, k)`` through ``(size, size)`` tiles ``J ≥ I``.

    Each tile ``T = K(x_I, x_J)`` contributes ``T v_J`` to rows I and ``Tᵀ v_I`` to rows J (if
    I ≠ J): the kernel is evaluated on half the matrix. Rows are padded to a multiple of
    ``size`` by repeating the last point, with zero rows in ``v`` (so padding adds nothing).
    With a sharding the tiles are dealt to the row shards and the partial products summed.
    """
    n, k = v.shape
    nb = -(-n // size)
    npad = nb * size
    xp = jnp.concatenate([x, jnp.broadcast_to(x[-1:], (npad - n,) + x.shape[1:])], axis=0)
    dtype = jnp.result_type(_output_dtype(kernel, x), v.dtype)
    vp = jnp.pad(v.astype(dtype), ((0, npad - n), (0, 0)))
    n_shards = 1 if sharding is None else axis_size(sharding)
    rows_np, cols_np, weight_np = pair_schedule(nb, n_shards)
    dot = functools.partial(jnp.matmul, precision=HIGHEST)

    def local(kernel: Kernel | KernelFn, xp: Array, vp: Array, shard: Array | int) -> Array:
        rows_i, cols_j = jnp.asarray(rows_np)[shard], jnp.asarray(cols_np)[shard]
        weights = jnp.asarray(weight_np, dtype)[shard]

        def body(t: Array, acc: Array) -> Array:
            i, j, w = rows_i[t] * size, cols_j[t] * size, weights[t]
            tile = kernel.nngp_traced(
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

        def sharded(kernel: Kernel | KernelFn, xp: Array, vp: Array) -> Array:
            return jax.lax.psum(local(kernel, xp, vp, jax.lax.axis_index(axis)), axis)

        out = shard_map(sharded, mesh_of(sharding), (P(), P(), P()), P())(kernel, xp, vp)
    return out[:n]


@dataclass(eq=False)
class GramOperator:
    """The Gram matrix ``K(x, x)`` as a linear operator: products without storing ``K``.

    Build it with :func:`gram_operator`. ``op(V)`` (also ``op.matvec(V)``) returns ``K @ V`` for
    ``V`` of shape ``(N,)`` or ``(N, b)``, in the same shape; ``op.diagonal()`` is the ``(N,)``
    diagonal and ``op.trace()`` its sum; ``op.shape == (N, N)``. It is a pytree (kernel
    hyper-parameters and ``x`` are leaves), so it can be passed into ``jit``; products are
    compiled once per shape of ``V``.
    """

    kernel: Kernel | KernelFn
    x: Array
    block_size: int = field(static=True)
    sharding: NamedSharding | None = field(static=True)

    @property
    def n(self) -> int:
        """N, the number of points."""
        return self.x.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """``(N, N)``."""
        return (self.n, self.n)

    @property
    def dtype(self) -> jnp.dtype:
        """The dtype of the kernel's values."""
        return _output_dtype(self.kernel, self.x)

    def __call__(self, V: ArrayLike) -> Array:
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
        out = tiled_matvec(
            self.kernel,
            self.x,
            v[:, None] if v.ndim == 1 else v,
            size=self.block_size,
            sharding=self.sharding,
        )
        return out.reshape(v.shape)

    matvec = __call__

    def diagonal(self) -> Array:
        """``(N,)`` diagonal ``K(x_i, x_i)`` (see :func:`~rgjax.kernels.gram_diagonal`)."""
        return gram_diagonal_traced(self.kernel, self.x)

    def trace(self) -> Array:
        """``Σ_i K(x_i, x_i)``, a scalar."""
        return jnp.sum(self.diagonal())


def gram_operator(
    kernel: Kernel | KernelFn,
    x: ArrayLike,
    block_size: int = 512,
    *,
    devices: int | Sequence[Device] | None = None,
    sharding: NamedSharding | None = None,
) -> GramOperator:
    """``K(x, x)`` as a :class:`GramOperator`: ``op(V) = K @ V`` without storing the matrix.

    Args:
      kernel: an rgjax kernel or :func:`~rgjax.kernels.from_kernel_fn`.
      x: ``(N, ...)`` inputs (validated once, here).
      block_size: tile edge; each product evaluates the kernel on the ``J ≥ I`` tiles of a
        ``block × block`` grid (half the matrix) and holds one tile plus ``V`` and the result:
        memory ``O(block² + N b)``, never ``N²``. One product costs about as much as
        building the matrix once with :func:`~rgjax.kernels.gram` (the kernel evaluations
        dominate), so use the operator when ``K`` does not fit, or fits only on several devices.
        On GPUs larger blocks (2048-4096) keep the device busier.
      devices: as in :func:`~rgjax.kernels.gram`; the tiles are then dealt round-robin to the
        row shards and the partial products summed (``psum``). Any N works here.
      sharding: as in :func:`~rgjax.kernels.gram` (instead of ``devices``).

    Returns:
      The operator; ``op`` is the callable ``matvec(V: (N, b)) -> (N, b)`` that top-k
      eigensolvers take. ``functools.partial(gram_matvec, kernel, x)`` is equivalent but
      validates ``x`` on every call.
    """
    xa, block = check_gram_args(kernel, x, block_size)
    sharded = row_sharding(devices, sharding)
    if sharded is not None:
        xa = replicated(xa, mesh_of(sharded))
    size = min(block, max(xa.shape[0], 1))
    return GramOperator(kernel, xa, size, sharded)


def gram_matvec(
    kernel: Kernel | KernelFn,
    x: ArrayLike,
    V: ArrayLike,
    block_size: int = 512,
    *,
    devices: int | Sequence[Device] | None = None,
    sharding: NamedSharding | None = None,
) -> Array:
    """``K(x, x) @ V`` for ``V`` of shape ``(N,)`` or ``(N, b)``, without storing ``K``.

    Same as ``gram_operator(kernel, x, block_size, devices=..., sharding=...)(V)``; see
    :func:`gram_operator` for memory and device use. Returns the shape of ``V``.
    """
    return gram_operator(kernel, x, block_size, devices=devices, sharding=sharding)(V)
