"""Print the README's benchmark table from ``benchmarks/results/*_<backend>.json``.

    python benchmarks/table.py            # cpu results
    python benchmarks/table.py --backend gpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str, backend: str) -> dict | None:
    path = RESULTS / f"{name}_{backend}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _times(first: float | None, warm: float | None) -> str:
    """The "first call / warm" cell: compile included, then steady state."""
    def fmt(t: float | None) -> str:
        if t is None:
            return "n.a."
        return f"{t:.2f} s" if t >= 0.1 else f"{t * 1e3:.1f} ms"

    return f"{fmt(first)} / {fmt(warm)}"


def rows(backend: str) -> list[tuple[str, ...]]:
    out = []
    if d := _load("kernels", backend):
        nt = d.get("neural_tangents") or {}
        mem = d.get("memory", {}).get("gram_warm", {})
        out.append(("kernels", f"FC-ReLU depth {d['depth']}, N={d['n']}, d={d['d']}",
                    "numpy / neural-tangents 0.6.5",
                    f"×{d['ratio_vs_numpy']:.1f} / ×{nt['ratio_full']:.1f}"
                    + (" (NT: earlier run)" if nt.get("from_an_earlier_run") else "") if nt
                    else f"×{d['ratio_vs_numpy']:.1f} / n.a.",
                    _times(d.get("rgjax_first_call_s"), d["rgjax_s"]),
                    f"≥1× NT; peak {mem.get('peak_over_output', float('nan')):.2f}× output "
                    "(goal ≤1.2)"))
    if d := _load("spectrum", backend):
        r = max(d["rows"], key=lambda r: r["n"])
        acc = r.get("max_rel_eig_err", r.get("max_rel_err"))
        out.append(("spectrum", f"top-{r['k']} + trace, N={r['n']}", "scipy / numpy dense eigh",
                    f"×{r['ratio_scipy']:.1f} / ×{r['ratio_numpy']:.1f}",
                    _times(r.get("topk_first_call_s"), r["topk_s"]),
                    "≥10×" + (f"; max rel. eig. error {acc:.0e}" if acc is not None else "")))
    if d := _load("theory", backend):
        t = d.get("three_theories", d)
        fc = d.get("first_call") or {}
        note = "≥20×"
        if fc:
            note += (f"; first call of `mse_rg` + `mse_spectral_bias` on a new spectrum "
                     f"{fc['cold_s']:.2f} s ({fc['warm_cache_s']:.2f} s with the compile cache)")
        out.append(("theory", f"EK+RG+SB, {d['n_eta']} η × {d['n_modes']} modes",
                    "scipy brentq + numpy per η", f"×{t['ratio']:.1f}",
                    _times(d.get("rgjax_first_call_s", d.get("compile_s")), t["rgjax_s"]), note))
    if d := _load("empirical", backend):
        for r in d["runs"]:
            if abs(r["sigma2"] - 1e-8) < 1e-12:
                who = {"independent": "independent sets (`learning_curve` default)",
                       "nested": "nested sets (`rgjax curve` default)"}.get(r["mode"], r["mode"])
                out.append(("empirical", f"{len(d['etas'])} η × {d['trials']} trials, "
                            f"N={d['n_pool']}, σ²=1e-8, {who}", "sklearn KernelRidge loop",
                            f"×{r['ratio']:.1f}", _times(r.get("rgjax_first_call_s"), r["rgjax_s"]),
                            f"≥3×; MSE rel. diff {r['max_rel_diff_mse_pool']:.0e}"))
    if d := _load("toy", backend):
        r = max(d["results"], key=lambda r: r["m"])
        first = r.get("rgjax_first_call_s", r["rgjax_compile_s"] + r["rgjax_wall_s"])
        out.append(("toy", f"{r['m']:.0e} Hermite-toy data sets × 2 kernels",
                    "batched numpy (/ power-sum numpy)",
                    f"×{r['ratio_vs_numpy']:.1f} / ×{r['ratio_vs_numpy_power_sums']:.1f}",
                    _times(first, r["rgjax_run_s"]), "≥5×"))
    if d := _load("tail", backend):
        out.append(_tail_row(d))
    if d := _load("scaling", backend):
        out.append(_scaling_row(d))
    return out


def _tail_row(d: dict) -> tuple[str, ...]:
    runs = d["runs"]
    worst = {key: max(r["theories"][key]["max_rel_err_tail"] for r in runs)
             for key in ("rg", "rg_dof", "ek", "spectral_bias")}
    inner = max(r["theories"]["spectral_bias"].get("max_rel_err_tail_rho_le_1", float("nan"))
                for r in runs)
    speed = min(r["speedup_vs_dense"] for r in runs)
    cost = max(r["cost_tail_over_topk"] for r in runs)
    r0 = runs[0]
    note = (f"max rel. error vs full spectrum: RG {worst['rg']:.0e}, RG+dof {worst['rg_dof']:.0e}, "
            f"EK {worst['ek']:.0e}, spectral bias {worst['spectral_bias']:.0e} "
            f"({inner:.0e} where ηλ_(k+1)/κ ≤ 1); "
            f"cost ×{cost:.2f} of top-k alone (goal ≤1.3)")
    if d.get("large"):
        g = d["large"]
        note += f"; N={g['n']}: top-k + tail {g['topk_tail_s']:.0f} s"
    return ("tail", f"top-{r0['k']} + tail measure, N={r0['n']}, 3 problems",
            "dense eigh (full spectrum)", f"×{speed:.1f}",
            _times(r0["topk_tail_first_s"], r0["topk_tail_s"]), note)


def _scaling_row(d: dict) -> tuple[str, ...]:
    import numpy as np

    f = d["fits"].get("topk", {})
    runs = d["runs"]["topk"]
    ns = [r["n"] for r in runs]
    big = [r for r in runs if r["n"] >= np.median(ns)]
    stage = {}
    for name in ("gram", "eigh"):
        t = [r["timings"][name] for r in big]
        stage[name] = float(np.polyfit(np.log([r["n"] for r in big]), np.log(t), 1)[0])
    first = runs[0]
    return ("scaling", f"`rgjax curve` pipeline, N={min(ns)}…{max(ns)}, top-{d['workload']['eigs']}",
            "—", f"time ∝ N^{f.get('exponent_all', float('nan')):.2f} "
            f"(N^{f.get('exponent_large') or float('nan'):.2f} for large N)",
            _times(first.get("total_s"), None),
            f"≤2.3; stages at large N: Gram N^{stage['gram']:.2f}, top-k N^{stage['eigh']:.2f}; "
            f"the first run (N={min(ns)}) includes compilation")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="cpu")
    p.add_argument("--write", action="store_true",
                   help="also replace the table between the bench-table markers of README.md and "
                   "docs/benchmarks.md")
    args = p.parse_args()
    lines = ["| bench | workload | baseline (same run) | speed-up (warm) | rgjax first call / warm "
             "| goal / notes |",
             "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(args.backend)]
    table = "\n".join(lines)
    print(table)
    if args.write:
        root = RESULTS.parents[1]
        for doc in (root / "README.md", root / "docs" / "benchmarks.md"):
            text = doc.read_text()
            head, rest = text.split("<!-- bench-table -->", 1)
            _, tail = rest.split("<!-- /bench-table -->", 1)
            doc.write_text(f"{head}<!-- bench-table -->\n{table}\n<!-- /bench-table -->{tail}")
            print(f"updated {doc}")


if __name__ == "__main__":
    main()
