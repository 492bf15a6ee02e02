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


def rows(backend: str) -> list[tuple[str, str, str, str, str]]:
    out = []
    if d := _load("kernels", backend):
        nt = d.get("neural_tangents") or {}
        mem = d.get("memory", {}).get("gram_warm", {})
        out.append(("kernels", f"FC-ReLU depth {d['depth']}, N={d['n']}, d={d['d']}",
                    "numpy / neural-tangents 0.6.5",
                    f"×{d['ratio_vs_numpy']:.1f} / ×{nt['ratio_full']:.1f}" if nt else f"×{d['ratio_vs_numpy']:.1f} / n.a.",
                    f"≥1× NT; peak {mem.get('peak_over_output', float('nan')):.2f}× output (goal ≤1.2)"))
    if d := _load("spectrum", backend):
        r = max(d["rows"], key=lambda r: r["n"])
        acc = r.get("max_rel_eig_err", r.get("max_rel_err"))
        out.append(("spectrum", f"top-{r['k']} + trace, N={r['n']}", "scipy / numpy dense eigh",
                    f"×{r['ratio_scipy']:.1f} / ×{r['ratio_numpy']:.1f}",
                    "≥10×" + (f"; max rel. eig. error {acc:.0e}" if acc is not None else "")))
    if d := _load("theory", backend):
        t = d.get("three_theories", d)
        out.append(("theory", f"EK+RG+SB, {d['n_eta']} η × {d['n_modes']} modes",
                    "scipy brentq + numpy per η", f"×{t['ratio']:.1f}", "≥20×"))
    if d := _load("empirical", backend):
        for r in d["runs"]:
            if abs(r["sigma2"] - 1e-8) < 1e-12:
                out.append(("empirical", f"{len(d['etas'])} η × {d['trials']} trials, N={d['n_pool']}, "
                            f"σ²=1e-8, {r['mode']} sets", "sklearn KernelRidge loop", f"×{r['ratio']:.1f}",
                            f"≥3×; MSE rel. diff {r['max_rel_diff_mse_pool']:.0e}"))
    if d := _load("toy", backend):
        r = max(d["results"], key=lambda r: r["m"])
        out.append(("toy", f"{r['m']:.0e} Hermite-toy data sets × 2 kernels", "batched numpy (/ power-sum numpy)",
                    f"×{r['ratio_vs_numpy']:.1f} / ×{r['ratio_vs_numpy_power_sums']:.1f}", "≥5×"))
    if d := _load("scaling", backend):
        f = d["fits"].get("topk", {})
        ns = [r["n"] for r in d["runs"]["topk"]]
        import numpy as np

        big = [r for r in d["runs"]["topk"] if r["n"] >= np.median(ns)]
        stage = {}
        for name in ("gram", "eigh"):
            t = [r["timings"][name] for r in big]
            stage[name] = float(np.polyfit(np.log([r["n"] for r in big]), np.log(t), 1)[0])
        out.append(("scaling", f"`rgjax curve` pipeline, N={min(ns)}…{max(ns)}, top-{d['workload']['eigs']}",
                    "—", f"time ∝ N^{f.get('exponent_all', float('nan')):.2f} (N^{f.get('exponent_large') or float('nan'):.2f} for large N)",
                    f"≤2.3; stages at large N: Gram N^{stage['gram']:.2f}, top-k N^{stage['eigh']:.2f}; "
                    f"{d['runs']['topk'][0]['total_s']:.0f} s fixed cost (compilation) at N={min(ns)}"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="cpu")
    p.add_argument("--write", action="store_true",
                   help="also replace the table between the bench-table markers of README.md and "
                   "docs/benchmarks.md")
    args = p.parse_args()
    lines = ["| bench | workload | baseline (same run) | speed-up | goal / notes |",
             "|---|---|---|---|---|"]
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
