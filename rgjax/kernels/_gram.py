"""Gram matrices ``K(x, x)``: built tile by tile on the host or with rows sharded over devices,
and their diagonal without the matrix."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from rgjax._sharding import shard_map
from rgjax._typing import Array, ArrayLike
from rgjax._validate import check_int
from rgjax.kernels._covariance import input_cov
from rgjax.kernels._inputs import as_input, validate_inputs
from rgjax.kernels._layers import Kernel, KernelFn
from rgjax.kernels._mesh import Device, axis_size, mesh_of, replicated, row_sharding

__all__ = [
    "gram",
    "gram_diagonal",
    "gram_diagonal_traced",
    "check_gram_args",
    "gram_tile",
]


# ---- validation -----------------------------------------------------------------------------


def _gram_input(
    kernel: object, x: ArrayLike, block_size: object, host: bool
) -> tuple[Array | np.ndarray, int]:
    """Validated ``(x, block_size)``; with ``host=True`` on CPU a numpy ``x`` stays numpy."""
    if not isinstance(kernel, (Kernel, KernelFn)):
        raise TypeError(
            "`kernel` must be an rgjax kernel (e.g. fc(2) or serial(...)); wrap a "
            f"neural-tangents kernel_fn with from_kernel_fn(kernel_fn). "
            f"Got {type(kernel).__name__}."
        )
    block = check_int(block_size, "block_size", 1, why="the tile edge")
    allowed = (2, 4) if isinstance(kernel, Kernel) else None
    xa: Array | np.ndarray
    if host and not isinstance(x, jax.Array) and jax.default_backend() == "cpu":
        xa = as_input(x, "x", allowed, host=True)
    else:
        xa, _ = validate_inputs(x, None, allowed_ndim=allowed, names=("x", ""))
    if isinstance(kernel, Kernel):
        kernel.check_params()
        one = jax.ShapeDtypeStruct((1,) + tuple(xa.shape[1:]), xa.dtype)
        shape = jax.eval_shape(kernel.nngp_traced, one, one).shape
        if shape != (1, 1):
            raise ValueError(
                f"`kernel` returns shape {shape} for one pair of inputs, not a single number: it "
                "ends on spatial layers. Add GlobalAvgPool() or Flatten() (and a Dense) at the end "
                "of the network to get an (N, N) Gram matrix."
            )
    return xa, block


def check_gram_args(kernel: object, x: ArrayLike, block_size: object = 1) -> tuple[Array, int]:
    """Validate the arguments shared by :func:`gram`, ``gram_operator`` and :func:`gram_diagonal`.

    Returns ``x`` as a floating JAX array ``(N, ...)`` and ``block_size`` as an int. Raises
    ``TypeError`` for a non-kernel, ``ValueError`` for a bad ``block_size``, bad ``x`` or a kernel
    that does not return one number per pair of inputs (a network ending on spatial layers).
    """
    xa, block = _gram_input(kernel, x, block_size, host=False)
    return cast(Array, xa), block  # host=False: always a JAX array


# ---- host path ------------------------------------------------------------------------------


@jax.jit
def gram_tile(kernel: Kernel | KernelFn, xa: Array, xb: Array) -> Array:
    """One ``(len(xa), len(xb))`` tile of the Gram matrix (compiled once per tile shape)."""
    return kernel.nngp_traced(xa, xb)


def _store_tile(
    out: np.ndarray, tile: np.ndarray, rows: slice, cols: slice, diagonal: bool
) -> None:
    """Write tile ``(I, J)`` and its mirror; a diagonal tile is symmetrised, ``(T + Tᵀ)/2``."""
    if diagonal:
        out[rows, cols] = tile
        out[rows, cols] += tile.T
        out[rows, cols] *= 0.5
    else:
        out[rows, cols] = tile
        out[cols, rows] = tile.T


def _gram_host(
    kernel: Kernel | KernelFn, x: Array | np.ndarray, block_size: int, progress: bool
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
    bar = tqdm(total=len(pairs), desc="gram tiles", unit="tile") if progress else None

    def dispatch(t: int) -> Array:
        i, j = pairs[t]
        return gram_tile(kernel, x[starts[i] : starts[i] + b], x[starts[j] : starts[j] + b])

    pending = dispatch(0)
    for t, (i, j) in enumerate(pairs):
        tile = np.asarray(pending)  # waits for tile t (on CPU: a view of its buffer, no copy)
        if t + 1 < len(pairs):  # async dispatch: compute the next tile while storing this one
            pending = dispatch(t + 1)
        if out is None:
            out = np.empty((n, n), dtype=tile.dtype)
        r0, r1, c0, c1 = i * b, min((i + 1) * b, n), j * b, min((j + 1) * b, n)
        tile = tile[r0 - starts[i] : r1 - starts[i], c0 - starts[j] : c1 - starts[j]]
        _store_tile(out, tile, slice(r0, r1), slice(c0, c1), diagonal=i == j)
        del tile
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    assert out is not None  # nb >= 1 tiles were stored
    return out


# ---- device path ----------------------------------------------------------------------------


def _balanced_tile(total: int, block: int) -> int:
    """Tile length ``≤ block`` covering ``total`` with the fewest tiles and least overlap."""
    count = -(-total // block)
    return -(-total // count)


@functools.partial(jax.jit, static_argnames=("sharding", "row_tile", "col_tile"))
def _gram_rows(
    kernel: Kernel | KernelFn,
    x: Array,
    *,
    sharding: NamedSharding,
    row_tile: int,
    col_tile: int,
) -> Array:
    """Row-sharded ``(N, N)`` Gram matrix: each device fills its ``(N/D, N)`` row block in place,
    one ``(row_tile, col_tile)`` tile at a time (tiles at the edges are shifted back to fit)."""
    axis = sharding.spec[0]
    n = x.shape[0]
    rows = n // axis_size(sharding)
    n_row_tiles, n_col_tiles = -(-rows // row_tile), -(-n // col_tile)
    one = jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), x.dtype)
    dtype = jax.eval_shape(kernel.nngp_traced, one, one).dtype

    def local(kernel: Kernel | KernelFn, x: Array) -> Array:
        row0 = jax.lax.axis_index(axis) * rows

        def body(t: Array, out: Array) -> Array:
            i, j = t // n_col_tiles, t % n_col_tiles
            r0 = jnp.minimum(i * row_tile, rows - row_tile)
            c0 = jnp.minimum(j * col_tile, n - col_tile)
            xa = jax.lax.dynamic_slice_in_dim(x, row0 + r0, row_tile, axis=0)
            xb = jax.lax.dynamic_slice_in_dim(x, c0, col_tile, axis=0)
            tile = kernel.nngp_traced(xa, xb).astype(dtype)
            return jax.lax.dynamic_update_slice(out, tile, (r0, c0))

        out = jnp.zeros((rows, n), dtype)
        return jax.lax.fori_loop(0, n_row_tiles * n_col_tiles, body, out)

    return shard_map(local, mesh_of(sharding), (P(), P()), P(axis, None))(kernel, x)


def _gram_sharded(
    kernel: Kernel | KernelFn, x: Array, block_size: int, sharding: NamedSharding
) -> Array:
    """Row-sharded Gram matrix (see :func:`gram`); N must split evenly over the row shards."""
    n, n_shards = x.shape[0], axis_size(sharding)
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
    x = replicated(x, mesh_of(sharding))
    return _gram_rows(kernel, x, sharding=sharding, row_tile=row_tile, col_tile=col_tile)


# ---- public ---------------------------------------------------------------------------------


def gram(
    kernel: Kernel | KernelFn,
    x: ArrayLike,
    block_size: int = 512,
    *,
    progress: bool = False,
    devices: int | Sequence[Device] | None = None,
    sharding: NamedSharding | None = None,
) -> np.ndarray | Array:
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

    Examples:
      >>> import numpy as np
      >>> from rgjax.kernels import fc, gram
      >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
      >>> K = gram(fc(1, "erf", W_std=1.2), x, block_size=2)
      >>> K.shape, bool(np.array_equal(K, K.T))
      ((3, 3), True)
      >>> print(f"{K[0, 0]:.4f} {K[0, 2]:.4f}")
      0.5787 0.4465
    """
    sharded = row_sharding(devices, sharding)
    if sharded is None:
        xh, block = _gram_input(kernel, x, block_size, host=True)
        return _gram_host(kernel, xh, block, progress)
    xd, block = check_gram_args(kernel, x, block_size)
    return _gram_sharded(kernel, xd, block, sharded)


# ---- diagonal -------------------------------------------------------------------------------


@jax.jit
def _diagonal_closed(kernel: Kernel, x: Array) -> Array:
    # The self-covariance of the layer recursion is the Gram diagonal: O(N) work. The second
    # batch (one point) only keeps the cross term small.
    return kernel.propagate(input_cov(x, x[:1])).cov1


@functools.partial(jax.jit, static_argnames=("size",))
def _diagonal_blocks(kernel: KernelFn, x: Array, size: int) -> Array:
    # Generic kernel_fn: diagonals of (size × size) tiles along the diagonal, O(N·size) work.
    n = x.shape[0]
    nb = -(-n // size)
    xp = jnp.concatenate([x, jnp.broadcast_to(x[-1:], (nb * size - n,) + x.shape[1:])], axis=0)
    blocks = xp.reshape((nb, size) + x.shape[1:])
    d = jax.lax.map(lambda xb: jnp.diagonal(kernel.nngp_traced(xb, xb)), blocks)
    return d.reshape(-1)[:n]


def gram_diagonal_traced(kernel: Kernel | KernelFn, x: Array) -> Array:
    """:func:`gram_diagonal` of validated ``x`` ``(N, ...)`` → ``(N,)``, without the checks."""
    if x.shape[0] == 0:
        return jnp.zeros((0,), x.dtype)
    if isinstance(kernel, Kernel):
        return _diagonal_closed(kernel, x)
    return _diagonal_blocks(kernel, x, size=min(32, x.shape[0]))


def gram_diagonal(kernel: Kernel | KernelFn, x: ArrayLike) -> Array:
    """``K(x_i, x_i)`` for every point: the ``(N,)`` diagonal of :func:`gram` without the matrix.

    For rgjax layers it is the self-covariance of the layer recursion, ``O(N)`` work; for a
    wrapped ``kernel_fn`` it takes the diagonals of ``32 × 32`` tiles (``O(32 N)``). Equal to
    ``diag(gram(kernel, x))`` to round-off; its sum is the trace the spectrum's tail mass needs.
    """
    xa, _ = check_gram_args(kernel, x)
    return gram_diagonal_traced(kernel, xa)
