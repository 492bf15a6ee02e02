"""Device-parallel helpers shared by the kernels, the empirical curves and the toy Monte Carlo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

try:  # jax >= 0.6
    from jax import shard_map as _shard_map

    _NO_CHECK = {"check_vma": False}
except ImportError:  # pragma: no cover - older jax
    from jax.experimental.shard_map import shard_map as _shard_map  # type: ignore[no-redef]

    _NO_CHECK = {"check_rep": False}

__all__ = ["shard_map"]


def shard_map(f: Callable, mesh: jax.sharding.Mesh, in_specs: Any, out_specs: Any) -> Callable:
    """``jax.shard_map`` without replication checks, on every supported jax.

    The checks are off because every caller returns per-device blocks that it assembles itself
    (rows of a Gram matrix, trials, data sets): nothing is replicated that the checker could verify.
    """
    return _shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, **_NO_CHECK)
