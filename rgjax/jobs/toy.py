"""The ``rgjax toy`` job."""

from __future__ import annotations

# MOVED RAW: imports to be fixed

# ----------------------------------------------------------------------------------------------
# the paper's experiment (``rgjax toy``)


def _table_rows(results: Mapping) -> list[str]:
    head = (f"{'λ_>':>6} {'c (ψ_1)':>11} {'± SE':>9} {'c/SE':>7} {'RG quad':>11} {'RG 1st':>11} "
            f"{'standard':>9} {'(c−RG)/SE':>10}")
    rows = [head, "-" * len(head)]
    for run in results["runs"]:
        rows.append(f"{run['lambda_greater']:>6g} {run['c']:>11.3e} {run['c_se']:>9.2e} "
                    f"{run['z_zero']:>7.2f} {run['c_rg']:>11.3e} {run['c_rg_first_order']:>11.3e} "
                    f"{run['c_standard']:>9.2g} {run['z_rg']:>10.2f}")
    return rows


def format_table(results: Mapping) -> str:
    """The printed summary of :func:`run_toy`'s results: one row per λ_>."""
    return "\n".join(_table_rows(results))


def run_toy(
    out_dir: str | Path,
    *,
    lambdas_greater: Sequence[float] = (0.0, 0.1),
    lambda_1: float = 1.0,
    target_degree: int = 5,
    n: int = 100,
    sigma2: float = 400.0,
    m: int = 5_000_000,
    seed: int = 0,
    chunk_size: int | None = None,
    devices: Any = None,
    progress: bool = True,
    log: Callable[[str], Any] | None = print,
) -> dict:
    """Paper Fig. 3: kernel ``λ_1ψ_1ψ_1 + λ_>ψ_2ψ_2``, target ``ψ_{target_degree}``; Monte Carlo of
    the averaged exact posterior against the standard (0) and the input-dependent RG predictions.

    All λ_> values share the same ``m`` data sets (one pass; each estimate equals a separate run
    with the same seed). ``devices`` splits the Monte Carlo as in :func:`monte_carlo`. Writes
    ``out_dir/toy.json`` (atomically) and ``out_dir/toy.png``, logs a table, and returns the JSON
    dictionary.
    """
    from rgjax.experiment import _versions, write_json_atomic

    t_start = time.perf_counter()
    if not math.isfinite(float(lambda_1)) or lambda_1 < 0:
        raise ValueError(f"`lambda_1` (eigenvalue of ψ_1) must be finite and >= 0; got {lambda_1!r}.")
    lg = np.atleast_1d(np.asarray(lambdas_greater, dtype=float))
    if lg.ndim != 1 or lg.size == 0 or not np.all(np.isfinite(lg)) or np.any(lg < 0):
        raise ValueError(f"`lambdas_greater` (eigenvalues of ψ_2) must be finite and >= 0; "
                         f"got {lambdas_greater!r}.")
    target_degree = _check_int(target_degree, "target_degree", 0, "a Hermite degree")
    problem = ToyProblem(degrees=(1, 2), target={target_degree: 1.0}, n=n, sigma2=sigma2)
    lam = np.stack([np.full_like(lg, float(lambda_1)), lg], axis=1)  # (L, 2)
    kept = (1,)

    mc = monte_carlo(problem, lam, m, seed=seed, chunk_size=chunk_size, devices=devices,
                     progress=progress)

    t_theory = time.perf_counter()
    grid = np.linspace(-3.0, 3.0, 121)
    psi_grid = hermite(grid, problem.degrees)  # (G, 2)
    std = standard_prediction(problem, lam)
    grg = gaussian_rg_prediction(problem, lam, kept)
    rg = rg_prediction(problem, lam, kept)
    rg1 = rg_first_order(problem, lam, kept)
    pred_mean, pred_se = mc.predictor(grid)
    se = mc.coef_se
    runs = []
    for i, lam_g in enumerate(lg):
        c, c_se = float(mc.mean[i, 0]), float(se[i, 0])
        runs.append({
            "lambda_greater": float(lam_g), "lambdas": lam[i].tolist(),
            "coef": mc.mean[i].tolist(), "coef_se": se[i].tolist(), "coef_cov": mc.coef_cov[i].tolist(),
            "c": c, "c_se": c_se, "z_zero": c / c_se,
            "c_standard": float(std[i, 0]), "c_gaussian_rg": float(grg[i, 0]),
            "c_rg": float(rg[i, 0]), "c_rg_first_order": float(rg1[i, 0]),
            "z_rg": (c - float(rg[i, 0])) / c_se,
            "z_rg_first_order": (c - float(rg1[i, 0])) / c_se,
            "z_standard": (c - float(std[i, 0])) / c_se,
            "predictor": {"mean": pred_mean[i].tolist(), "se": pred_se[i].tolist(),
                          "standard": (psi_grid @ std[i]).tolist(),
                          "rg": (psi_grid[:, :1] @ rg[i]).tolist()},
        })
    # Paired differences against the first λ_> (same data sets, so a much smaller SE).
    paired = [{"lambda_greater": float(lg[i]), "minus": float(lg[0]),
               "diff": float(mc.mean[i, 0] - mc.mean[0, 0]),
               "se": float(mc.difference_se(i, 0)[0]),
               "rg_diff": float(rg[i, 0] - rg[0, 0])} for i in range(1, lg.size)]
    curve_lg = np.linspace(0.0, max(float(lg.max()), 1e-12) * 1.25, 41)
    curve_lam = np.stack([np.full_like(curve_lg, float(lambda_1)), curve_lg], axis=1)
    theory_s = time.perf_counter() - t_theory

    results: dict[str, Any] = {
        "kind": "toy",
        "description": "Hermite toy model, paper Fig. 3 (THEORY §5): ψ_1 coefficient of the "
                       "data-set-averaged GP posterior mean vs standard and input-dependent RG",
        "config": {"lambdas_greater": lg.tolist(), "lambda_1": float(lambda_1),
                   "target_degree": target_degree, "n": problem.n, "sigma2": problem.sigma2,
                   "m": mc.m, "seed": int(seed), "chunk_size": mc.chunk_size,
                   "n_devices": mc.n_devices,
                   "degrees": list(problem.degrees), "kept_degrees": list(kept),
                   "target": {str(target_degree): 1.0}, "quadrature_order": _QUAD_ORDER,
                   "common_random_numbers": True},
        "seed": int(seed),
        "grid": grid.tolist(),
        "runs": runs,
        "paired": paired,
        "theory_curve": {"lambda_greater": curve_lg.tolist(),
                         "rg": rg_prediction(problem, curve_lam, kept)[:, 0].tolist(),
                         "rg_first_order": rg_first_order(problem, curve_lam, kept)[:, 0].tolist(),
                         "standard": standard_prediction(problem, curve_lam)[:, 0].tolist()},
        "moments": {"psi1_psi5_psi2sq": hermite_moment(1, 5, 2, 2), "sqrt30": math.sqrt(30)},
        "timings": {"compile_s": mc.compile_s, "monte_carlo_s": mc.run_s, "theory_s": theory_s,
                    "trials_per_s": mc.m / mc.run_s if mc.run_s > 0 else None},
        "versions": _versions(),
    }

    out = Path(out_dir)
    t_plot = time.perf_counter()
    from rgjax.plotting import toy_predictor

    toy_predictor(results, out / "toy.png")
    results["timings"]["plot_s"] = time.perf_counter() - t_plot
    results["timings"]["total_s"] = time.perf_counter() - t_start
    write_json_atomic(results, out / "toy.json")
    if log is not None:
        log(f"Hermite toy model (paper Fig. 3): n={problem.n}, σ²={problem.sigma2:g}, "
            f"λ_1={float(lambda_1):g}, target ψ_{target_degree}, m={mc.m:,} data sets, seed={seed}")
        log(format_table(results))
        for pr in paired:
            log(f"paired c(λ_>={pr['lambda_greater']:g}) − c(λ_>={pr['minus']:g}) = "
                f"{pr['diff']:.3e} ± {pr['se']:.1e} (RG: {pr['rg_diff']:.3e})")
        log(f"Monte Carlo {mc.run_s:.1f} s (+{mc.compile_s:.1f} s compile), "
            f"{results['timings']['trials_per_s']:.3g} data sets/s; wrote {out / 'toy.json'} and "
            f"{out / 'toy.png'}")
    return results
