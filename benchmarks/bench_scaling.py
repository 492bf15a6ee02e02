"""Benchmark: the whole ``rgjax curve`` pipeline against the pool size N (synthetic task).

Workload per N: the synthetic power-law task (Gaussian features, ``--n-modes`` of them, linear
kernel), Gram matrix, spectrum, every theory, the input-dependent RG, the functional flow and the
empirical learning curve on a fixed η grid (``--etas``, ``--trials`` training sets each), figures
off. The spectrum comes from the top-k solver (``--eigs`` modes, the trace carrying the tail) or,
for comparison up to ``--dense-max``, from dense ``eigh``.

Each N runs in a fresh process, so its time includes JAX compilation (as a user's run does) and
its peak memory is its own. The script fits ``log time = a + p log N`` and reports the exponent
``p`` over all sizes and over the larger half (where compilation no longer dominates); the goal
for the top-k pipeline is ``p ≤ 2.3`` (dense ``eigh`` alone is ``N³``).

    python benchmarks/bench_scaling.py                          # N = 1k … 16k, top-k; dense ≤ 4k
    python benchmarks/bench_scaling.py --sizes 1000,2000 --dense-max 0    # quick

Writes ``benchmarks/results/scaling_<backend>.json`` and ``benchmarks/results/scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _common import RESULTS, run_isolated, save  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import jax
jax.config.update("jax_enable_x64", True)
from rgjax.jobs.curve import CurveConfig, run
n, eigs, n_modes, trials, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
etas = tuple(int(e) for e in sys.argv[6].split(","))
cfg = CurveConfig(task="synthetic-powerlaw", pool_size=n, n_modes=n_modes, etas=etas,
                  trials=trials, eigs=eigs or None)
t0 = time.perf_counter()
res = run(cfg, out, progress=False, plots=False, log=lambda *a, **k: None)
total = time.perf_counter() - t0
print(json.dumps({"n": n, "eigs": eigs or None, "total_s": total, "timings": res["timings"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "fidelity_spectral_bias": res["fidelity"]["spectral_bias"],
                  "n_modes_kept": res["spectrum"]["n_modes"]}))
"""


def run_one(n: int, eigs: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = run_isolated(CHILD, str(n), str(eigs), str(args.n_modes), str(args.trials), tmp,
                           ",".join(str(e) for e in args.etas))
    return json.loads(out.strip().splitlines()[-1])


def exponent(ns, ts) -> float:
    return float(np.polyfit(np.log(ns), np.log(ts), 1)[0])


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    for label, rs, style in (("top-k pipeline", rows["topk"], "o-"), ("dense eigh pipeline", rows["dense"], "s--")):
        if not rs:
            continue
        ns = np.array([r["n"] for r in rs])
        ts = np.array([r["total_s"] for r in rs])
        ax.loglog(ns, ts, style, label=f"{label} (slope {exponent(ns, ts):.2f})")
        stage = np.array([r["timings"].get("eigh", np.nan) for r in rs])
        ax.loglog(ns, stage, style[0] + ":", alpha=0.6, label=f"  its spectrum stage")
    ns = np.array([r["n"] for r in rows["topk"]])
    if len(ns):
        ref = rows["topk"][-1]["total_s"]
        ax.loglog(ns, ref * (ns / ns[-1]) ** 2, "k-", lw=0.6, alpha=0.4, label="∝ N²")
    ax.set_xlabel("pool size N")
    ax.set_ylabel("wall time (s)")
    ax.set_title("rgjax curve pipeline vs N (synthetic task)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p.add_argument("--sizes", type=ints, default=[1000, 2000, 4000, 8000, 16000])
    p.add_argument("--eigs", type=int, default=256, help="top-k modes (default 256)")
    p.add_argument("--dense-max", type=int, default=4000, help="largest N for the dense comparison")
    p.add_argument("--n-modes", type=int, default=2000, help="synthetic feature dimension")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--etas", type=ints, default=[5, 10, 20, 50, 100, 200, 500])
    args = p.parse_args()

    rows: dict[str, list] = {"topk": [], "dense": []}
    for n in args.sizes:
        r = run_one(n, args.eigs, args)
        rows["topk"].append(r)
        print(f"N={n:>6} top-{args.eigs}: {r['total_s']:7.1f} s  (gram {r['timings']['gram']:.1f}, "
              f"spectrum {r['timings']['eigh']:.1f}, empirical {r['timings']['empirical']:.1f}) "
              f"peak {r['peak_rss_mb']:.0f} MB", flush=True)
        if n <= args.dense_max:
            r = run_one(n, 0, args)
            rows["dense"].append(r)
            print(f"N={n:>6} dense   : {r['total_s']:7.1f} s  (spectrum {r['timings']['eigh']:.1f}) "
                  f"peak {r['peak_rss_mb']:.0f} MB", flush=True)
    fits = {}
    for name, rs in rows.items():
        if len(rs) >= 2:
            ns = np.array([r["n"] for r in rs], float)
            ts = np.array([r["total_s"] for r in rs])
            half = ns >= np.median(ns)
            fits[name] = {"exponent_all": exponent(ns, ts),
                          "exponent_large": exponent(ns[half], ts[half]) if half.sum() >= 2 else None}
            print(f"{name}: time ∝ N^{fits[name]['exponent_all']:.2f} over all N"
                  + (f", N^{fits[name]['exponent_large']:.2f} over N ≥ {int(np.median(ns))}"
                     if fits[name]["exponent_large"] is not None else ""))
    save("scaling", {"workload": vars(args), "runs": rows, "fits": fits, "goal_exponent": 2.3})
    plot(rows, RESULTS / "scaling.png")


if __name__ == "__main__":
    main()
