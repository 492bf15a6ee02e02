"""Device-parallel helpers shared by the kernels, the empirical curves and the toy Monte Carlo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

try:  # jax >= 0.6
    from jax import shard_map as _shard_map

    _CHECK_FLAG = "check_vma"
except ImportError:  # pragma: no cover - older jax
    from jax.experimental.shard_map import shard_map as _shard_map  # type: ignore[no-redef]

    _CHECK_FLAG = "check_rep"

__all__ = ["shard_map"]


def shard_map(
    f: Callable, mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh, in_specs: Any, out_specs: Any
) -> Callable:
    """``jax.shard_map`` without replication checks, on every supported jax.

    The checks are off because every caller returns per-device blocks that it assembles itself
    (rows of a Gram matrix, trials, data sets): nothing is replicated that the checker could verify.
    """
    no_check: dict[str, Any] = {_CHECK_FLAG: False}
    return _shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, **no_check)
