"""Shared plumbing for the benchmark scripts: timing, peak memory, machine facts, JSON output.

Every benchmark measures rgjax and its baseline in the same process run and reports the ratio
``baseline_time / rgjax_time``; absolute times are recorded for context, never asserted.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax

jax.config.update("jax_enable_x64", True)

from rgjax.jobs._io import versions, write_json_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def block(out: Any) -> Any:
    """Wait for every array in ``out`` (jax dispatch is asynchronous)."""
    return jax.block_until_ready(out)


def timed(fn: Callable[[], Any], repeat: int = 1, warmup: bool = True) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls of ``fn`` (after one warm-up call), and the last output."""
    if warmup:
        block(fn())
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = block(fn())
        best = min(best, time.perf_counter() - t0)
    return best, out


def compile_time(fn: Callable[[], Any]) -> float:
    """Wall time of a first call (compilation included)."""
    t0 = time.perf_counter()
    block(fn())
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(script: str, *args: str, timeout: float = 3600) -> str:
    """Run ``python -c script args…`` in a fresh process (for a clean peak-memory measurement).

    Returns its stdout; the child should print one JSON line as its last line.
    """
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
        timeout=timeout, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"isolated benchmark failed:\n{out.stderr[-4000:]}")
    return out.stdout


def machine() -> dict:
    """What the numbers were measured on."""
    devs = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in devs],
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "x64": bool(jax.config.jax_enable_x64),
    }


def save(name: str, payload: dict) -> Path:
    """Write ``results/<name>_<backend>.json`` atomically with versions and machine facts."""
    path = RESULTS / f"{name}_{jax.default_backend()}.json"
    write_json_atomic({"benchmark": name, "machine": machine(), "versions": versions(), **payload}, path)
    print(f"wrote {path}")
    return path
