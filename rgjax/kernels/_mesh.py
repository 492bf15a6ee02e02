"""Row shardings of Gram matrices: the 1-D ``('rows',)`` mesh, the checks of the ``devices`` and
``sharding`` arguments, and the replication of the inputs that every device reads whole."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias, cast

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rgjax._typing import Array, ArrayLike

__all__ = ["Device", "row_mesh", "row_sharding", "mesh_of", "axis_size", "replicated"]

# jax exports its device class as a variable (``jax.Device = xla_client.Device``), which type
# checkers reject in annotations; this alias names the same class for the signatures here.
Device: TypeAlias = jax.Device  # pyright: ignore[reportInvalidTypeForm]


def row_mesh(devices: Sequence[Device]) -> Mesh:
    """A 1-D mesh ``('rows',)`` over ``devices``, with the Auto axis type where jax has them.

    On jax >= 0.10 ``make_mesh`` defaults to Explicit axes, which ``jnp.linalg.eigh`` rejects.
    """
    arr = np.empty(len(devices), dtype=object)
    arr[:] = devices
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is not None:
        try:
            return Mesh(arr, ("rows",), axis_types=(axis_type.Auto,))
        except TypeError:  # pragma: no cover - jax versions without axis_types in Mesh
            pass
    return Mesh(arr, ("rows",))  # pragma: no cover


def _user_sharding(sharding: object) -> NamedSharding:
    """A user's ``NamedSharding`` checked to split rows only, as ``P(axis, None)``."""
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
    if not isinstance(sharding.mesh, Mesh):
        raise ValueError(
            "`sharding` must be defined on a jax.sharding.Mesh of devices; got a mesh of type "
            f"{type(sharding.mesh).__name__}."
        )
    return NamedSharding(sharding.mesh, P(spec[0], None))


def _device_list(devices: int | Sequence[Device]) -> list[Device]:
    """The devices named by a count (the first ``k`` of ``jax.devices()``) or a sequence."""
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"`devices`={devices} must lie in [1, {len(available)}] (the devices jax sees); "
                "or pass a list of jax devices."
            )
        return list(available[: int(devices)])
    try:
        devs = list(devices)  # pyright: ignore[reportArgumentType]  # a bool fails here, as it should
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
    return devs


def row_sharding(
    devices: int | Sequence[Device] | None, sharding: NamedSharding | None
) -> NamedSharding | None:
    """The row sharding requested through ``devices`` or ``sharding`` (None: host path)."""
    if devices is not None and sharding is not None:
        raise ValueError("pass either `devices` or `sharding`, not both.")
    if sharding is not None:
        return _user_sharding(sharding)
    if devices is None:
        return None
    return NamedSharding(row_mesh(_device_list(devices)), P("rows", None))


def mesh_of(sharding: NamedSharding) -> Mesh:
    """The device mesh of a sharding made by :func:`row_sharding` (always a concrete ``Mesh``)."""
    return cast(Mesh, sharding.mesh)


def axis_size(sharding: NamedSharding) -> int:
    """Number of row shards: the product of the mesh axes named in ``spec[0]``."""
    axes = sharding.spec[0]
    axes = axes if isinstance(axes, tuple) else (axes,)
    return math.prod(sharding.mesh.shape[a] for a in axes)


def replicated(x: ArrayLike, mesh: Mesh) -> Array:
    """``x`` replicated over ``mesh`` (also across processes: every process passes the same x)."""
    target = NamedSharding(mesh, P())
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(target, x.ndim):
        return x
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, target, lambda idx: host[idx])
