"""The ``rgjax gaussianity`` job."""

from __future__ import annotations

# MOVED RAW: imports to be fixed

# ------------------------------------------------------------------------------------------------
# pipeline


def _modes_block(spec, report: GaussianityReport, modes: Sequence[int]) -> dict[str, Any]:
    """``report``'s entries for ``modes`` plus their raw feature values (for the figures)."""
    x = mode_features(spec, modes)
    return _subset(report, modes).to_dict() | {"features": np.asarray(x).T.tolist()}


def _with_targets(block: dict, y: Any) -> dict:
    # The pair figure colours points by target (class); only N more numbers in the JSON.
    return block | {"targets": np.asarray(y, float).tolist()}


def run_gaussianity(
    task_name: str = "mnist-0-1",
    out_dir: str | os.PathLike = "runs/gaussianity-mnist-0-1",
    *,
    source: str = "auto",
    pool_size: int | None = None,
    split: str = "train",
    download: bool = False,
    data_dir: str | None = None,
    activation: str = "relu",
    depth: int = 2,
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.1,
    block_size: int = 512,
    modes_pair: tuple[int, int] = (2, 3),
    high_modes: Sequence[int] | None = None,
    n_points: int = 40,
    seed: int = 0,
    plots: bool = True,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> dict:
    """Feature-mode diagnostics of a task's NNGP kernel; writes ``out_dir/gaussianity.json``.

    Loads the task, builds the kernel, Gram matrix and spectrum exactly as ``rgjax curve`` does
    (same defaults), then computes :func:`gaussianity_sweep` (``n_points`` log-spaced modes), its
    :func:`crossover` (``crossover_sweep``), the mode-exact ``crossover`` after
    :func:`refine_sweep` (``refined``), and the reports of ``modes_pair`` (Fig. 2) and
    ``high_modes`` (Fig. 5, default :func:`default_high_modes`), storing the raw feature values of
    those few modes (and the targets, for colouring the pair scatter). Mode numbers are 1-based.
    Writes the JSON atomically, then (``plots``) ``gaussianity_pair.png``, ``gaussianity_tails.png``
    and ``gaussianity_sweep.png``, and logs a short table.

    ``modes_pair`` defaults to (2, 3): mode 1 of a kernel with positive entries (ReLU NNGP) is the
    near-constant Perron mode, whose histogram is a narrow bump away from 0.

    Returns:
      The results dict as written to JSON (NaN as None).
    """
    from rgjax import datasets, kernels, spectrum
    from rgjax.experiment import _versions

    if len(tuple(modes_pair)) != 2:
        raise ValueError(f"`modes_pair` must be two mode numbers; got {modes_pair!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    config = dict(task=task_name, source=source, pool_size=pool_size, split=split,
                  download=download, data_dir=data_dir, activation=activation, depth=depth,
                  W_std=W_std, b_std=b_std, block_size=block_size, modes_pair=list(modes_pair),
                  high_modes=None if high_modes is None else list(high_modes),
                  n_points=n_points, seed=seed)

    t0 = time.perf_counter()
    task = datasets.load_task(task_name, pool_size=pool_size, source=source, seed=seed,
                              split=split, download=download, data_dir=data_dir)
    timings["load_task"] = time.perf_counter() - t0
    n = task.n_pool
    log(f"task {task.name}: N = {n} points, d = {task.dim}, source = {task.source}")
    if n < MIN_POINTS:
        raise ValueError(
            f"too few points: the pool has N={n}; the diagnostics need >= {MIN_POINTS}."
        )
    # Validate mode numbers before the expensive part.
    pair = _check_modes(modes_pair, n, "modes_pair")
    high = _check_modes(default_high_modes(n) if high_modes is None else high_modes, n,
                        "high_modes")

    t0 = time.perf_counter()
    if task.kernel == "linear":  # synthetic task: the same kernel as `rgjax curve` uses
        kern = kernels.Dense(W_std=math.sqrt(task.dim), b_std=0.0)
    else:
        kern = kernels.fc(depth, activation, W_std=W_std, b_std=b_std)
    K = kernels.gram(kern, task.x, block_size=block_size, progress=progress)
    timings["gram"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    spec = spectrum.from_gram(K, task.y)
    jax.block_until_ready(spec.eigenvalues)
    timings["eigh"] = time.perf_counter() - t0
    del K

    t0 = time.perf_counter()
    swept = sweep_modes(spec.n_modes, n_points)
    # One call for every mode needed: the jitted core compiles once per run.
    everything = mode_diagnostics(spec, np.unique(np.concatenate([swept, pair, high])))
    sweep = _subset(everything, swept)
    cross_sweep = crossover(sweep)
    refined = refine_sweep(spec, sweep)
    cross = crossover(refined)
    first_c = next((int(k) for k, b in zip(sweep.modes, sweep.better) if b == "cauchy"), None)
    pair_block = _with_targets(_modes_block(spec, everything, pair), task.y)
    tails_block = _modes_block(spec, everything, high)
    timings["diagnostics"] = time.perf_counter() - t0

    results = {
        "config": config,
        "versions": _versions(),
        "seed": seed,
        "task": {"name": task.name, "source": task.source, "n_pool": n, "dim": task.dim,
                 "class_counts": task.class_counts, "classes": list(task.classes),
                 "split": task.split, "kernel": task.kernel or "nngp"},
        "spectrum": {"n_modes": spec.n_modes, "n_pool": spec.n_pool, "trace": float(spec.trace),
                     "clipped_mass": float(spec.clipped_mass)},
        "conventions": {
            "modes": "1-based mode numbers k (k = 1 is the largest eigenvalue)",
            "features": "phi_k(x_i) = sqrt(N) v_k[i], mean square 1 over the pool",
            "loglik": "mean log-likelihood per point of the maximum-likelihood fit",
            "crossover_sweep": "smallest swept k with loglik_cauchy > loglik_gauss for every "
                               "swept j >= k",
            "crossover": "the same rule on `refined` = sweep + every mode between crossover_sweep "
                         "and the swept mode below it (exact to one mode)",
        },
        "sweep": sweep.to_dict(),
        "refined": refined.to_dict(),
        "crossover": cross,
        "crossover_sweep": cross_sweep,
        "first_cauchy_better": first_c,
        "pair": pair_block,
        "tails": tails_block,
        "timings": timings,
    }
    from rgjax import plotting
    from rgjax.experiment import save_and_plot

    results = save_and_plot(results, out / "gaussianity.json",
                            plotting.plot_gaussianity if plots else None)
    log(format_gaussianity_table(results))
    return results


def format_gaussianity_table(results: dict, max_rows: int = 16) -> str:
    """A short printed summary: a subsample of the sweep, the pair and tail modes, the crossover."""
    sw = results["sweep"]
    m = len(sw["modes"])
    rows = np.round(np.linspace(0, m - 1, min(m, max_rows))).astype(int)
    cs = results.get("crossover_sweep")
    if cs in sw["modes"]:  # always show the swept crossover and the mode before it
        i = sw["modes"].index(cs)
        rows = np.concatenate([rows, [max(i - 1, 0), i]])
    rows = np.unique(rows)

    def f(v: Any, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    head = (f"{'k':>6} {'lambda_k':>10} {'ll Gauss':>9} {'ll Cauchy':>9} {'C-G':>8} "
            f"{'KS G':>6} {'KS C':>6} {'ex.kurt':>9}  better")

    def line(block: dict, i: int) -> str:
        return (f"{block['modes'][i]:>6} {f(block['eigenvalues'][i], '10.3e')} "
                f"{f(block['loglik_gauss'][i], '9.3f')} {f(block['loglik_cauchy'][i], '9.3f')} "
                f"{f(block['loglik_difference'][i], '+8.3f')} {f(block['ks_gauss'][i], '6.3f')} "
                f"{f(block['ks_cauchy'][i], '6.3f')} {f(block['excess_kurtosis'][i], '9.2f')}  "
                f"{block['better'][i]}")

    task = results.get("task", {})
    lines = [f"feature-mode Gaussianity — {task.get('name')} (N = {task.get('n_pool')}); "
             f"sweep of {m} modes (showing {rows.size})", head, "-" * len(head)]
    lines += [line(sw, int(i)) for i in rows]
    for name in ("pair", "tails"):
        blk = results[name]
        lines.append(f"{name} modes:")
        lines += [line(blk, i) for i in range(len(blk["modes"]))]
    cross = results.get("crossover")
    lines.append("crossover (Cauchy better from here on): "
                 + ("none in the sweep" if cross is None else
                    f"k = {cross} (sweep resolution: k = {results.get('crossover_sweep')})")
                 + f"; first Cauchy-better swept mode: {results.get('first_cauchy_better')}")
    return "\n".join(lines)
