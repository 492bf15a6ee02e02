"""The ``rgjax optimize`` job."""

from __future__ import annotations

# MOVED RAW: imports to be fixed

#: Default validation grid: (W_std values, b_std values), shared by all layers.
DEFAULT_GRID = ((0.5, 1.0, math.sqrt(2.0), 2.0, 3.0), (0.01, 0.03, 0.1, 0.3, 1.0, 3.0))


def _check_grid(grid: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    if grid is None:
        return DEFAULT_GRID
    if grid is False or (isinstance(grid, (tuple, list)) and len(grid) == 0):
        return None
    try:
        w, b = (tuple(float(v) for v in axis) for axis in grid)
    except (TypeError, ValueError):
        raise ValueError(
            "`grid` must be a pair (W_std values, b_std values), None for the default grid, or "
            f"False to skip the grid search; got {grid!r}."
        ) from None
    if not w or not b or min(w + b) <= 0 or not all(map(math.isfinite, w + b)):
        raise ValueError(
            f"`grid` values must be finite and > 0, and each axis non-empty; got {grid!r}."
        )
    return w, b


def _evaluate(kern, x, y, sigma2, etas, *, objective, threshold, temperature, trials, seed,
              progress):
    """Theory curves and the empirical GP learning curve of one kernel on the pool."""
    from rgjax import empirical

    K = kernels.gram(kern, x)
    spec = from_gram(K, y)
    e = jnp.asarray(etas, dtype=spec.eigenvalues.dtype)
    pred = {k: np.asarray(v) for k, v in
            _all_theories(spec, e, sigma2, threshold, temperature, objective=objective).items()}
    curve = empirical.learning_curve(K, y, etas, sigma2, trials=trials, key=seed,
                                     progress=progress)
    emp = {"mse_pool": curve.mse_pool, "mse_pool_se": curve.mse_pool_se,
           "mse_heldout": curve.mse_heldout, "mse_heldout_se": curve.mse_heldout_se,
           "mse_pool_trials": curve.mse_pool_trials}
    return pred, emp


@partial(jax.jit, static_argnames=("objective",))
def _theory_on_spec(spec, eta, sigma2, threshold, temperature, *, objective):
    if objective == "spectral_bias":
        return theory.mse_spectral_bias(spec, eta, sigma2)
    return theory.mse_rg(spec, eta, sigma2, threshold, temperature=temperature,
                         dof_correction=objective == "rg_dof")


@partial(jax.jit, static_argnames=("objective",))
def _all_theories(spec, eta, sigma2, threshold, temperature, *, objective):
    """The objective (smooth cutoff) and the paper's hard RG, rgjax's RG+dof, spectral bias."""
    return {
        "objective": _theory_on_spec(spec, eta, sigma2, threshold, temperature,
                                     objective=objective),
        "rg": theory.mse_rg(spec, eta, sigma2, threshold),
        "rg_dof": theory.mse_rg(spec, eta, sigma2, threshold, dof_correction=True),
        "spectral_bias": theory.mse_spectral_bias(spec, eta, sigma2),
    }


def _grid_search(x, y, grid, *, eta, sigma2, depth, activation, objective, threshold,
                 temperature, trials, seed, progress):
    """Predicted (the objective) and empirical MSE at ``eta`` on a (W_std, b_std) grid."""
    from rgjax import empirical

    w_vals, b_vals = grid
    shape = (len(w_vals), len(b_vals))
    pred, emp, se = np.empty(shape), np.empty(shape), np.empty(shape)
    per_trial = np.empty(shape + (trials,))
    cells = [(i, j) for i in range(shape[0]) for j in range(shape[1])]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cells), desc="grid (W_std, b_std)", unit="point")
    for i, j in cells:
        kern = kernels.fc(depth, activation, W_std=w_vals[i], b_std=b_vals[j])
        K = kernels.gram(kern, x)
        spec = from_gram(K, y)
        pred[i, j] = float(_theory_on_spec(spec, float(eta), sigma2, threshold, temperature,
                                           objective=objective))
        curve = empirical.learning_curve(K, y, [eta], sigma2, trials=trials, key=seed,
                                         progress=False)
        emp[i, j], se[i, j] = float(curve.mse_pool[0]), float(curve.mse_pool_se[0])
        per_trial[i, j] = curve.mse_pool_trials[0]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    def best(values):
        masked = np.where(np.isfinite(values), values, np.inf)
        i, j = np.unravel_index(int(np.argmin(masked)), shape)
        return {"W_std": w_vals[i], "b_std": b_vals[j], "index": [int(i), int(j)],
                "predicted": float(pred[i, j]), "empirical": float(emp[i, j]),
                "empirical_se": float(se[i, j]), "empirical_trials": per_trial[i, j]}

    return {"W_std": list(w_vals), "b_std": list(b_vals), "sigma2": float(sigma2),
            "predicted": pred, "empirical": emp, "empirical_se": se,
            "empirical_trials": per_trial,
            "best_predicted": best(pred), "best_empirical": best(emp)}


def _paired(a: Any, b: Any) -> dict[str, float]:
    """Mean and standard error of the per-trial difference ``a − b`` (same training sets)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(d.size))}


def run_optimize(
    task: Any = "mnist-0-1",
    out_dir: str | Path = "runs/optimize",
    *,
    eta: int = 100,
    objective: str = "rg",
    steps: int = 150,
    learning_rate: float = 0.05,
    trials: int = 20,
    seed: int = 0,
    source: str = "auto",
    pool_size: int | None = 500,
    grid: Any = None,
    threshold: float = 0.5,
    temperature: float = 0.05,
    depth: int = 2,
    activation: str = "relu",
    W_std: float = math.sqrt(2.0),
    b_std: float = 0.1,
    sigma2: float = 1e-8,
    per_layer: bool = True,
    curve_etas: Sequence[int] | None = None,
    progress: bool = True,
    plots: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict:
    """The ``rgjax optimize`` job: fit the kernel to the predicted error, then check it empirically.

    1. Load the task (default: bundled MNIST 0-1, subsampled to ``pool_size`` = 500 points: one
       optimisation step costs an ``eigh`` and its derivative, ≈ 0.25 s at N = 500 on 2 CPU
       cores but ≈ 2 s at N = 1,000; ``pool_size=None`` uses the whole pool).
    2. :func:`fit_kernel` from (W_std, b_std, σ²) (per layer with ``per_layer``) with
       ``optax.adam(learning_rate)`` for ``steps`` steps on the smooth-cutoff objective at ``eta``.
    3. At the initial and the final parameters: the theories (the objective, the paper's hard RG,
       rgjax's corrected RG, spectral bias) and the empirical GP learning curve (``trials``
       training sets per η) on ``curve_etas`` (default: 8 log-spaced η up to N/2, plus ``eta``).
    4. Validation: on a (W_std, b_std) ``grid`` shared by all layers at the initial σ², the
       objective and the empirical MSE at ``eta``; the optimum of each is reported next to the
       gradient-found parameters (``grid=False`` skips it).
    5. ``out_dir/optimize.json`` (atomic) and, with ``plots``, ``optimize_loss.png``,
       ``optimize_mse.png`` and ``optimize_grid.png``.

    Whether the theory's optimum is empirically good is reported in ``summary``, not assumed.

    Returns:
      The results dictionary as written to JSON (NaN as None).
    """

    from rgjax import datasets
    from rgjax.experiment import _versions, default_etas

    say = log if log is not None else (lambda _msg: None)
    objective = _check_objective(objective)
    steps = _check_steps(steps)
    grid_axes = _check_grid(grid)
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 2:
        raise ValueError(f"`trials` must be an integer >= 2; got {trials!r}.")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"`learning_rate` must be finite and > 0; got {learning_rate!r}.")
    check_threshold(threshold)
    _check_temperature(temperature)
    if temperature is None:
        raise ValueError(
            "run_optimize optimises the smooth-cutoff objective: pass temperature > 0."
        )
    out = Path(out_dir)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    if isinstance(task, str):
        task = datasets.load_task(task, pool_size=pool_size, source=source, seed=seed,
                                  verbose=progress)
    x, y = _inputs(task, None)
    n = int(x.shape[0])
    timings["load_task"] = time.perf_counter() - t0
    if isinstance(eta, bool) or not isinstance(eta, (int, np.integer)) or not 1 <= eta < n:
        raise ValueError(f"`eta` must be an integer in [1, N-1] = [1, {n - 1}]; got {eta!r}.")
    etas = np.asarray(default_etas(n, 8) if curve_etas is None else curve_etas, dtype=int)
    etas = np.unique(np.concatenate([etas, [int(eta)]]))
    if etas.min() < 1 or etas.max() >= n:
        raise ValueError(f"`curve_etas` must lie in [1, N-1] = [1, {n - 1}].")
    say(f"task {getattr(task, 'name', 'inputs')}: N = {n}, d = {x.shape[1]}; objective "
        f"{objective} at eta = {eta}, T = {threshold:g}, tau = {temperature:g}")

    t0 = time.perf_counter()
    init = init_params(depth, W_std, b_std, sigma2, per_layer=per_layer)
    fit = fit_kernel(x, y=y, eta=float(eta), objective=objective, init=init,
                     optimizer=optax.adam(learning_rate), steps=steps, threshold=threshold,
                     temperature=temperature, activation=activation, depth=depth,
                     progress=progress)
    timings["fit"] = time.perf_counter() - t0
    say(f"fit: loss {fit.initial_loss:.4g} -> {fit.final_loss:.4g} in {steps} steps "
        f"({timings['fit']:.1f} s, {fit.n_traces} compilation)")

    t0 = time.perf_counter()
    points = {}
    idx = int(np.searchsorted(etas, eta))
    for name, p in (("initial", init), ("final", fit.params)):
        nat = natural_params(p, depth)
        kern = build_kernel(p, depth=depth, activation=activation)
        pred, emp = _evaluate(kern, x, y, nat["sigma2"], etas, objective=objective,
                              threshold=threshold, temperature=temperature, trials=trials,
                              seed=seed, progress=progress)
        points[name] = nat | {
            "predicted": pred, "empirical": emp,
            "at_eta": {"predicted": float(pred["objective"][idx]),
                       "empirical": float(emp["mse_pool"][idx]),
                       "empirical_se": float(emp["mse_pool_se"][idx]),
                       "empirical_trials": emp["mse_pool_trials"][idx]},
        }
    timings["evaluate"] = time.perf_counter() - t0

    grid_res = None
    if grid_axes is not None:
        t0 = time.perf_counter()
        grid_res = _grid_search(x, y, grid_axes, eta=int(eta), sigma2=sigma2, depth=depth,
                                activation=activation, objective=objective, threshold=threshold,
                                temperature=temperature, trials=trials, seed=seed,
                                progress=progress)
        timings["grid"] = time.perf_counter() - t0

    summary = {
        "initial": points["initial"]["at_eta"] | natural_params(init, depth),
        "gradient": points["final"]["at_eta"] | natural_params(fit.params, depth),
    }
    # Every empirical point uses the same training sets (same key, same η), so differences
    # between parameter settings are paired: their standard errors are much smaller.
    grad_trials = summary["gradient"]["empirical_trials"]
    summary["paired_differences"] = {
        "gradient_minus_initial": _paired(grad_trials, summary["initial"]["empirical_trials"])}
    if grid_res is not None:
        summary["grid_best_predicted"] = grid_res["best_predicted"]
        summary["grid_best_empirical"] = grid_res["best_empirical"]
        for key in ("grid_best_predicted", "grid_best_empirical"):
            summary["paired_differences"][f"gradient_minus_{key}"] = _paired(
                grad_trials, summary[key]["empirical_trials"])
    results = {
        "kind": "rgjax.optimize",
        "config": {
            "task": getattr(task, "name", None), "source": getattr(task, "source", None),
            "pool_size": pool_size, "eta": int(eta), "objective": objective, "steps": steps,
            "learning_rate": learning_rate, "optimizer": "adam", "trials": trials, "seed": seed,
            "threshold": threshold, "temperature": temperature, "depth": depth,
            "activation": activation, "W_std": W_std, "b_std": b_std, "sigma2": sigma2,
            "per_layer": per_layer, "grid": None if grid_axes is None else list(grid_axes),
            "path": "resolvent",
        },
        "versions": _versions(),
        "task": {"name": getattr(task, "name", None), "n_pool": n, "dim": int(x.shape[1])},
        "fit": fit.to_dict(),
        "etas": etas,
        "initial": points["initial"],
        "final": points["final"],
        "grid": grid_res,
        "summary": summary,
        "timings": timings,
    }
    out.mkdir(parents=True, exist_ok=True)
    from rgjax import plotting
    from rgjax.experiment import save_and_plot

    results = save_and_plot(results, out / "optimize.json",
                            plotting.plot_optimize if plots else None)
    say(format_summary(results))
    return results


def _fmt_params(entry: Mapping[str, Any]) -> str:
    def vals(v):
        v = v if isinstance(v, list) else [v]
        return "/".join(f"{float(u):.3g}" for u in v)

    return f"W_std {vals(entry['W_std'])}, b_std {vals(entry['b_std'])}"


def format_summary(results: Mapping[str, Any]) -> str:
    """The printed table of ``rgjax optimize``: predicted and empirical MSE at each optimum."""
    s = results["summary"]
    cfg = results["config"]

    def num(v):
        return "n/a" if v is None else f"{v:.4g}"

    lines = [f"objective {cfg['objective']} at eta = {cfg['eta']} ({cfg['trials']} trials per "
             "empirical point)",
             f"{'':24} {'predicted':>10} {'empirical ± SE':>22}  parameters"]
    rows = [("initial", s["initial"]), ("gradient optimum", s["gradient"])]
    rows += [(label, s[key]) for label, key in (("grid best (theory)", "grid_best_predicted"),
                                                ("grid best (empirical)", "grid_best_empirical"))
             if key in s]
    for label, e in rows:
        emp = f"{num(e['empirical'])} ± {num(e.get('empirical_se'))}"
        extra = f", sigma2 {e['sigma2']:.3g}" if "sigma2" in e else ""
        lines.append(f"{label:24} {num(e['predicted']):>10} {emp:>22}  {_fmt_params(e)}{extra}")
    for key, d in (s.get("paired_differences") or {}).items():
        what = key.replace("gradient_minus_", "gradient optimum − ").replace("_", " ")
        lines.append(f"paired (same training sets): {what}: {num(d['mean'])} ± {num(d['se'])}")
    return "\n".join(lines)
