"""A job's results folder: strict JSON written atomically, versions, figures drawn from disk."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import matplotlib
import numpy as np
import optax

from rgjax._version import __version__

__all__ = ["versions", "jsonable", "write_json_atomic", "save_and_plot"]

#: Draws a job's figures from its (reloaded) results into a folder; returns name → file.
Plotter = Callable[[Mapping[str, Any], Path], Mapping[str, Path]]


def versions() -> dict[str, Any]:
    """Versions of rgjax and its dependencies, the platform and the devices (kept with results)."""
    return {
        "rgjax": __version__,
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", jax.__version__),
        "numpy": np.__version__,
        "optax": optax.__version__,
        "matplotlib": matplotlib.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
    }


def jsonable(x: Any) -> Any:
    """numpy/JAX values → JSON types, NaN/Inf → null (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (jax.Array, np.ndarray)):
        return jsonable(np.asarray(x).tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON to a temporary file in the same folder and rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(jsonable(obj), f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_and_plot(results: dict, path: Path, plot: Plotter | None = None) -> dict:
    """Write ``results`` to ``path`` (atomic JSON), reload it so figures are drawn from exactly what
    a later ``rgjax plot`` would read, draw them with ``plot(results, folder)`` and record the time.

    Returns the reloaded (pure-JSON) results.
    """
    write_json_atomic(results, path)
    results = json.loads(path.read_text())
    if plot is not None:
        t0 = time.perf_counter()
        plot(results, path.parent)
        results.setdefault("timings", {})["plots"] = time.perf_counter() - t0
        write_json_atomic(results, path)
    return results
