"""The pool → kernel → Gram matrix → spectrum pipeline of ``rgjax curve`` and ``gaussianity``.

Both jobs start the same way: load a task's pool, build the NNGP kernel of a fully connected
network (or the exact linear kernel of the synthetic task), its Gram matrix on the pool and the
spectrum of that matrix. :class:`PoolConfig` holds the fields that define those steps (the job
configs inherit from it, so ``dataclasses.asdict`` of a job config stays one flat dict) and
:func:`build_pool` runs them once, timing each step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from rgjax._pytree import dataclass, field
from rgjax._typing import Array
from rgjax._validate import check_int
from rgjax.datasets import Task, load_task
from rgjax.jobs._stages import Stages, array_digest
from rgjax.kernels import Dense, Kernel, fc, gram
from rgjax.spectrum import Spectrum, from_gram

__all__ = ["SOURCES", "PoolConfig", "Pool", "build_pool", "kernel_for", "task_summary",
           "default_etas"]

#: Where ``load_task`` may take a task's data from (``source``).
SOURCES = ("auto", "tfds", "bundled", "synthetic")

#: A job's logger: one printed line per call.
Log = Callable[[str], Any]


def _help(text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: the CLI help line (and e.g. ``choices``)."""
    return {"help": text, **extra}


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """The task and kernel of a job that works on a pool's NNGP spectrum (docs/theory.md §7).

    Defaults: the bundled MNIST 0-1 pool and a fully connected ReLU NNGP with 2 hidden layers,
    ``W_std² = 2`` and ``b_std² = 0.01``. The job configs (``CurveConfig``, ``GaussianityConfig``)
    inherit these fields; their metadata carries the ``rgjax`` command's help lines.
    """

    task: str = dataclasses.field(
        default="mnist-0-1", metadata=_help("mnist-A-B, cifar10-A-B or synthetic-powerlaw"))
    source: str = dataclasses.field(
        default="auto",
        metadata=_help("data source (auto: tfds data on disk, else the bundled pool)",
                       choices=SOURCES))
    pool_size: int | None = dataclasses.field(
        default=None, metadata=_help("subsample the pool to N points (default: the whole pool)"))
    split: str = dataclasses.field(default="train", metadata=_help("tfds split for MNIST"))
    download: bool = dataclasses.field(
        default=False,
        metadata=_help("let tensorflow-datasets download the data (needs the internet)"))
    data_dir: str | None = dataclasses.field(
        default=None, metadata=_help("tensorflow-datasets data folder"))
    activation: str = dataclasses.field(
        default="relu", metadata=_help("relu, erf, leaky_relu, abs, identity"))
    depth: int = dataclasses.field(default=2, metadata=_help("hidden layers"))
    W_std: float = dataclasses.field(default=math.sqrt(2.0), metadata=_help("weight std"))
    b_std: float = dataclasses.field(default=0.1, metadata=_help("bias std"))
    seed: int = dataclasses.field(default=0, metadata=_help("random seed"))
    block_size: int = dataclasses.field(
        default=512, metadata=_help("tile edge of the Gram matrix computation"))
    n_modes: int = dataclasses.field(
        default=4000, metadata=_help("synthetic-powerlaw: feature modes"))
    alpha: float = dataclasses.field(
        default=0.5, metadata=_help("synthetic-powerlaw: λ_k ∝ k^-(1+α)"))
    beta: float = dataclasses.field(
        default=0.5, metadata=_help("synthetic-powerlaw: y_k² ∝ k^-(1+β)"))

    def __post_init__(self) -> None:
        check_int(self.depth, "depth", 0, why="hidden layers")
        check_int(self.block_size, "block_size", 1)
        for name in ("W_std", "b_std"):  # found here, before the task is loaded
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
        fc(self.depth, self.activation)  # an unknown activation, too


@dataclass(eq=False)
class Pool:
    """A task's pool with its kernel, Gram matrix and spectrum.

    Attributes:
      task: the loaded :class:`~rgjax.datasets.Task` (N points).
      kernel: the NNGP kernel (:func:`kernel_for`).
      K: ``(N, N)`` Gram matrix of ``kernel`` on ``task.x``.
      spec: the spectrum of ``K`` with the targets ``task.y`` (dense or top-k).
      timings: seconds spent in ``load_task``, ``gram`` and ``eigh``.
    """

    task: Task
    kernel: Kernel
    K: Array | np.ndarray
    spec: Spectrum
    timings: dict[str, float] = field(default_factory=dict)


def default_etas(n_pool: int, n: int = 12, lo: int = 5) -> np.ndarray:
    """``(≤ n,)`` log-spaced integer training-set sizes from ``lo`` to ``n_pool // 2``.

    Rounding merges some of the low points, so the result is unique, sorted and may hold fewer
    than ``n`` sizes.

    Examples:
      >>> print(default_etas(1000, n=5).tolist())
      [5, 16, 50, 158, 500]
    """
    hi = max(lo + 1, n_pool // 2)
    return np.unique(np.round(np.geomspace(lo, hi, n)).astype(int))


def kernel_for(task: Task, cfg: PoolConfig) -> Kernel:
    """The kernel of ``task``: ``cfg``'s fully connected NNGP, or ``x·x'`` for a linear task.

    The synthetic power-law task asks for the linear kernel (``task.kernel == "linear"``): its
    population spectrum is then exact (docs/theory.md §7).
    """
    if task.kernel == "linear":
        return Dense(W_std=math.sqrt(task.dim), b_std=0.0)
    return fc(cfg.depth, cfg.activation, W_std=cfg.W_std, b_std=cfg.b_std)


def task_summary(task: Task) -> dict[str, Any]:
    """The ``"task"`` block of a job's results: name, source, N, d, classes, split, kernel."""
    return {"name": task.name, "source": task.source, "n_pool": task.n_pool, "dim": task.dim,
            "class_counts": task.class_counts, "classes": list(task.classes),
            "split": task.split, "kernel": task.kernel or "nngp"}


def _load(cfg: PoolConfig) -> Task:
    synthetic: dict[str, Any] = {}
    if cfg.task == "synthetic-powerlaw":
        synthetic = dict(n_modes=cfg.n_modes, alpha=cfg.alpha, beta=cfg.beta)
    return load_task(cfg.task, pool_size=cfg.pool_size, source=cfg.source, seed=cfg.seed,
                     split=cfg.split, download=cfg.download, data_dir=cfg.data_dir, **synthetic)


def _spectrum(K: Array | np.ndarray, y: np.ndarray, eigs: int | None) -> Spectrum:
    """Dense ``eigh`` (all N modes), or the top ``eigs`` modes when fewer than N are asked for."""
    if eigs is None or eigs >= K.shape[0]:
        return from_gram(K, y)
    return from_gram(K, y, k=eigs, method="topk")


#: PoolConfig fields that do not change the Gram matrix's values (where the data comes from
#: and how the tiles are cut): left out of the stages' fingerprints.
_NOT_IN_FINGERPRINT = ("download", "data_dir", "block_size", "source")


def pool_fingerprint(cfg: PoolConfig, task: Task) -> dict[str, Any]:
    """What defines a pool's Gram matrix: the kernel options and the data themselves."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PoolConfig)
              if f.name not in _NOT_IN_FINGERPRINT}
    return {**fields, "data": array_digest(task.x, task.y), "kernel": task.kernel or "nngp"}


def build_pool(cfg: PoolConfig, *, eigs: int | None = None,
               check: Callable[[Task], Any] | None = None, progress: bool = True,
               log: Log = print, stages: Stages | None = None) -> Pool:
    """Load ``cfg``'s task, build its kernel, Gram matrix and spectrum, timing each step.

    Args:
      cfg: the task and kernel.
      eigs: keep the top ``eigs`` modes (iterative solver; the trace carries the tail); None or
        ``≥ N`` diagonalises densely.
      check: called with the loaded task before the (expensive) kernel, to validate the job's
        own inputs against N (raise to stop).
      progress: show a progress bar over the Gram matrix tiles.
      log: receives one line about the task and one about the kernel and spectrum.
      stages: keep the Gram matrix and the spectrum in the results folder, and reuse them when
        they were kept with the same fingerprint (:mod:`rgjax.jobs._stages`).

    Returns:
      The :class:`Pool`; ``timings`` holds ``load_task``, ``gram`` and ``eigh`` in seconds.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    task = _load(cfg)
    timings["load_task"] = time.perf_counter() - t0
    log(f"task {task.name}: N = {task.n_pool} points, d = {task.dim}, source = {task.source}")
    if check is not None:
        check(task)

    fp = pool_fingerprint(cfg, task)

    def kept(name: str, fingerprint: dict[str, Any], compute: Callable[[], Any]) -> Any:
        return compute() if stages is None else stages.run(name, fingerprint, compute)

    t0 = time.perf_counter()
    kern = kernel_for(task, cfg)

    def make_gram() -> Any:
        return gram(kern, task.x, block_size=cfg.block_size, progress=progress)

    K = kept("gram", fp, make_gram)
    timings["gram"] = time.perf_counter() - t0
    t0 = time.perf_counter()

    def make_spectrum() -> Spectrum:
        spec = _spectrum(K, task.y, eigs)
        jax.block_until_ready(spec.eigenvalues)
        return spec

    spec = kept("spectrum", {**fp, "eigs": eigs}, make_spectrum)
    timings["eigh"] = time.perf_counter() - t0
    how = "dense" if not spec.is_truncated else f"top-{spec.n_modes}"
    log(f"kernel + spectrum ({how}): {timings['gram']:.1f} s + {timings['eigh']:.1f} s "
        f"(trace {float(spec.trace):.4g}, clipped mass {float(spec.clipped_mass):.2g})")
    return Pool(task=task, kernel=kern, K=K, spec=spec, timings=timings)
