"""JAX's persistent compilation cache, set up for rgjax: compile a program once, reuse it after.

Every ``jax.jit`` program is compiled by XLA the first time it runs in a process; ``rgjax curve``
spends a large share of a cold start compiling. With the persistent cache on, each compiled
executable is also written to a folder and the next process loads it from there instead of
compiling again. The ``rgjax`` command turns it on by default for its jobs (``curve``,
``gaussianity``, ``toy``, ``optimize``, ``demo``), in a ``jax-compile`` folder under rgjax's cache
folder (:func:`rgjax.datasets.default_cache_dir`, moved by ``RGJAX_CACHE``). In a notebook or a
script, call :func:`enable` once, before the first computation.

The environment variable ``RGJAX_COMPILE_CACHE`` steers the command: ``0``, ``off``, ``false`` or
``no`` turns the cache off, any other non-empty value is the folder to use. ``rgjax
--no-compile-cache JOB`` turns it off for one run.

Reuse is safe: JAX keys every entry by a hash of the program (its StableHLO text), the compile
options, the jax and jaxlib versions, the backend and platform version and the device kind and
count, so an entry written by another jax, another machine or another program is never loaded,
only left unused (delete the folder to reclaim its space). Results are bit-identical with and
without the cache: a hit loads the very executable that a miss would have compiled. The folder
is trusted code: do not point it at a folder that others can write to.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from rgjax._typing import PathLike
from rgjax.datasets import default_cache_dir

__all__ = [
    "ENV_VAR", "FOLDER_NAME", "MIN_COMPILE_TIME_S", "OFF_VALUES", "CacheStatus", "default_folder",
    "folder_from_env", "enable", "disable", "status",
]

#: The environment variable that steers the ``rgjax`` command's cache (a folder, or ``0``).
ENV_VAR = "RGJAX_COMPILE_CACHE"
#: The cache's folder under :func:`rgjax.datasets.default_cache_dir`.
FOLDER_NAME = "jax-compile"
#: Programs that took at least this long to compile are cached. JAX's own default (1 s) would
#: skip most of rgjax's programs, which mostly compile in well under a second, while loading one
#: from disk takes about 10 ms: every program is worth keeping.
MIN_COMPILE_TIME_S = 0.0
#: Values of ``RGJAX_COMPILE_CACHE`` that turn the cache off (case-insensitive).
OFF_VALUES = frozenset({"0", "off", "false", "no"})

#: The JAX options :func:`enable` sets, with the values :func:`disable` puts back.
_OPTIONS = {
    "jax_enable_compilation_cache": True,
    "jax_persistent_cache_min_compile_time_secs": 1.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


class CacheStatus(NamedTuple):
    """What :func:`status` reports about the persistent compilation cache."""

    folder: Path  # the folder in use, else the one asked about, else the default one
    enabled: bool  # whether JAX writes to and reads from ``folder`` in this process
    files: int  # regular files in ``folder`` (recursively; 0 if it does not exist)
    size_bytes: int  # their total size


def default_folder() -> Path:
    """``default_cache_dir() / "jax-compile"`` (``~/.cache/rgjax/jax-compile`` unless moved)."""
    return default_cache_dir() / FOLDER_NAME


def folder_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder the ``rgjax`` command caches compiled programs in; ``None`` when turned off.

    Read from ``RGJAX_COMPILE_CACHE`` in ``environ`` (default ``os.environ``): unset or empty →
    :func:`default_folder`; ``0``, ``off``, ``false`` or ``no`` (any case) → ``None``; anything
    else is a folder (``~`` expanded).
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if not value:
        return default_folder()
    if value.lower() in OFF_VALUES:
        return None
    return Path(value).expanduser()


def _folder(path: PathLike) -> Path:
    """``path`` as an absolute folder, created if missing; one clear error if it cannot be."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a folder path (str or os.PathLike), got {type(path)}")
    folder = Path(path).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"the compile cache path {str(folder)!r} is a file, not a folder; pass a folder, "
            f"or set {ENV_VAR} to a folder (or to 0 to turn the cache off)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot create the compile cache folder {str(folder)!r} ({err.strerror}); pass "
            f"another folder, or set {ENV_VAR} to one (or to 0 to turn the cache off)") from err
    return folder


def enable(path: PathLike | None = None, *,
           min_compile_time_s: float = MIN_COMPILE_TIME_S) -> Path:
    """Turn on JAX's persistent compilation cache in ``path``; return the folder.

    Sets ``jax_compilation_cache_dir`` to ``path`` (created if missing; default
    :func:`default_folder`), ``jax_persistent_cache_min_compile_time_secs`` to
    ``min_compile_time_s`` and removes the minimum entry size, so that rgjax's many small
    programs are cached too (JAX's default caches only programs that took at least 1 s to
    compile). Call it before the first computation; programs already compiled in this process
    stay in memory and are written only when compiled again. Calling it again moves the cache.

    JAX keys each entry by the program, its compile options, the jax/jaxlib versions, the backend
    and the device kind, so a stale entry (other versions) or a foreign one (another machine or
    device) is never reused; the folder can be shared by several environments. Results are
    bit-identical with and without the cache. The folder holds executable code: keep it private.

    Args:
        path: the cache folder; ``None`` → :func:`default_folder`
            (``$RGJAX_CACHE/jax-compile`` or ``~/.cache/rgjax/jax-compile``).
        min_compile_time_s: cache programs whose compilation took at least this many seconds
            (``>= 0``; default 0, every program).

    Returns:
        The absolute cache folder.

    Raises:
        ValueError: ``path`` is an existing file, or ``min_compile_time_s`` is negative or not
            finite.
        OSError: the folder cannot be created.

    Examples:
        >>> import shutil, tempfile
        >>> from rgjax import compile_cache
        >>> folder = compile_cache.enable(tempfile.mkdtemp())
        >>> compile_cache.status().enabled
        True
        >>> compile_cache.disable()
        >>> compile_cache.status(folder).enabled
        False
        >>> shutil.rmtree(folder)
    """
    t = float(min_compile_time_s)
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(
            f"min_compile_time_s must be a finite number >= 0, got {min_compile_time_s}")
    folder = _folder(default_folder() if path is None else path)
    jax_cache.reset_cache()  # a cache already opened in this process keeps its old folder
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", t)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no minimum size
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder


def disable() -> None:
    """Turn the persistent compilation cache off and put JAX's thresholds back to its defaults.

    Programs compiled from now on are neither read from nor written to any folder; the folder
    and its entries are left as they are (delete it to reclaim the space).
    """
    jax.config.update("jax_compilation_cache_dir", None)
    for name, value in _OPTIONS.items():
        jax.config.update(name, value)
    jax_cache.reset_cache()


def _option(name: str) -> Any:
    """The current value of the JAX option ``name`` (e.g. ``"jax_compilation_cache_dir"``)."""
    return getattr(jax.config, name)


def status(path: PathLike | None = None) -> CacheStatus:
    """The folder, whether the cache is on, and how many files and bytes the folder holds.

    Args:
        path: the folder to report on; ``None`` → the folder in use, else :func:`default_folder`.
            ``enabled`` is true only when JAX caches in this very folder.
    """
    current = _option("jax_compilation_cache_dir")
    on = bool(current) and bool(_option("jax_enable_compilation_cache"))
    if path is None:
        folder = Path(current) if current else default_folder()
    else:
        folder = Path(path).expanduser().resolve()
    enabled = on and Path(str(current)).expanduser().resolve() == folder.resolve()
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return CacheStatus(folder, enabled, len(sizes), sum(sizes))
