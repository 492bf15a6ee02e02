"""A job's results folder: strict JSON written atomically, versions, figures drawn from disk."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import jax
import matplotlib
import numpy as np
import optax

from rgjax._validate import warn
from rgjax._version import __version__
from rgjax.store import writing

__all__ = ["LOCK_FILE", "FolderInUse", "locked", "results_folder", "versions", "jsonable",
           "write_json_atomic", "save_and_plot"]

#: The lock file a running job keeps in its results folder.
LOCK_FILE = ".rgjax.lock"


class FolderInUse(OSError):
    """Another rgjax run holds the results folder."""

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
    with writing(path):
        _write_json_atomic(obj, path)


def _write_json_atomic(obj: Any, path: Path) -> None:
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


@contextlib.contextmanager
def results_folder(out: str | os.PathLike[str], job: str) -> Iterator[Path]:
    """Create ``out`` and hold its lock for the duration of a run.

    The lock file records the owner's PID, host and start time. A second run into the same
    folder stops at once with :class:`FolderInUse` naming the running one (two runs would
    interleave their records and overwrite each other's results); a lock left by a process that
    no longer exists on this host is taken over, with a warning.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out {str(folder)!r} is a file, not a folder; pass a folder.")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    try:
        _acquire(lock, job)
    except OSError:
        if created:  # a failed start leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    failed = True
    try:
        yield folder
        failed = False
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        if failed and created:  # a failed start leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty


def _acquire(lock: Path, job: str) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "job": job, "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(lock)
            if owner is not None and not _stale(owner):
                started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["started"]))
                raise FolderInUse(
                    f"{str(lock.parent)!r} is in use by another rgjax run ({owner['job']}, pid "
                    f"{owner['pid']} on {owner['host']}, started {started}): wait for it to "
                    f"finish or pass another --out (if that run is gone, delete {lock})."
                ) from None
            warn(f"taking over the stale lock of {str(lock.parent)!r} (its run is gone).")
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        except OSError as err:  # a read-only folder: found before any work, not at the end
            raise OSError(err.errno, f"cannot write to the results folder "
                          f"{str(lock.parent)!r} ({err.strerror}): pass a writable --out.") from err
        with writing(lock), os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise FolderInUse(f"could not lock {str(lock.parent)!r}: another run took it first.")


def _owner(lock: Path) -> dict[str, Any] | None:
    """The lock's owner, or None when the file is unreadable (a run killed while writing it)."""
    try:
        raw = json.loads(lock.read_text())
        return {"pid": int(raw["pid"]), "host": str(raw["host"]),
                "started": float(raw["started"]), "job": str(raw["job"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stale(owner: Mapping[str, Any]) -> bool:
    """True when the owner ran on this host and its process no longer exists."""
    if owner["host"] != socket.gethostname():
        return False  # its liveness cannot be checked from here
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


_Run = TypeVar("_Run", bound=Callable[..., Any])


def locked(job: str) -> Callable[[_Run], _Run]:
    """Decorate a job's ``run(cfg, out, ...)`` so that it holds ``out``'s lock while it runs
    (:func:`results_folder`)."""

    def wrap(run: _Run) -> _Run:
        @functools.wraps(run)
        def locked_run(cfg: Any, out: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
            with results_folder(out, job):
                return run(cfg, out, *args, **kwargs)

        return locked_run  # type: ignore[return-value]

    return wrap
