"""Benchmark: ``rgjax.gram`` (FC-ReLU NNGP Gram matrix) against baselines measured in the same run.

Network: ``[Dense(W_std, b_std), Relu] × depth + Dense`` with W_std = √2, b_std = 0.1, on N × d
uniform inputs in float64 (default N = 4000, d = 784: MNIST-sized, depth 3).

* numpy: a plain vectorised numpy implementation of the same arc-cosine recursion, whole matrix
  at once (what a research script would write).
* neural-tangents 0.6.5 (``--nt-python``): it needs jax ≤ 0.5.3, so it runs in another
  interpreter (a venv with ``jax==0.5.3 jaxlib==0.5.3 frozendict absl-py numpy`` and
  ``pip install --no-deps neural-tangents==0.6.5``; ``neural_tangents.experimental``, the only
  part that needs TensorFlow, is stubbed out). It gets the same inputs through a temporary
  ``.npy`` file and times ``stax.serial(Dense, Relu, …)``'s ``kernel_fn`` both whole and through
  ``nt.batch`` (blocks of ≈ ``--block-size``); its matrix comes back for the agreement check.
* matrix-free: one ``gram_operator`` product ``K @ V`` with 8 columns (the unit of work of a
  top-k eigensolver), against the same product with the dense matrix.

Ratios are baseline time / rgjax time, after one warm-up call of each (compile time is reported
separately). Peak memory of ``gram`` is measured in a fresh child process as peak RSS minus the
RSS after imports and input creation, divided by the N² output size: once after a warm-up
compile (the steady state; goal ≤ 1.2) and once cold (first call, compilation included). numpy
and neural-tangents peaks are reported the same way.

    python benchmarks/bench_kernels.py                                        # N = 4000
    python benchmarks/bench_kernels.py --n 1000 --d 100                       # quick
    python benchmarks/bench_kernels.py --nt-python /path/to/nt-venv/bin/python

Writes ``benchmarks/results/kernels_<backend>.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from _common import compile_time, machine, peak_rss_mb, run_isolated, save, timed  # noqa: E402

import rgjax  # noqa: E402
from rgjax.jobs._baselines import numpy_relu_nngp as _numpy_relu_nngp  # noqa: E402

W_STD, B_STD = float(np.sqrt(2.0)), 0.1


def numpy_relu_nngp(x: np.ndarray, depth: int, w_std: float = W_STD, b_std: float = B_STD):
    """Reference NNGP of [Dense, ReLU] × depth + Dense in numpy (``rgjax bench``'s baseline)."""
    return _numpy_relu_nngp(x, depth, w_std, b_std)


def make_inputs(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(size=(n, d))


# ---- peak memory in a fresh process -------------------------------------------------------

_MEMORY_CHILD = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
sys.path.insert(0, sys.argv[1])
from bench_kernels import make_inputs, numpy_relu_nngp, W_STD, B_STD
import rgjax

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024  # MiB

what = sys.argv[2]
n, d, depth, block = (int(v) for v in sys.argv[3:7])
x = make_inputs(n, d)
kern = rgjax.fc(depth, "relu", W_STD, B_STD)
if what == "gram_warm":  # compile the (block, block) tile first: same cache entry as the full call
    rgjax.gram(kern, x[: min(n, 2 * block)], block_size=block)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS:")
if what == "numpy":
    K = numpy_relu_nngp(x, depth)
else:
    K = rgjax.gram(kern, x, block_size=block)
peak = status("VmHWM:")
out_mb = K.nbytes / 2**20
print(json.dumps({"baseline_mb": base, "peak_mb": peak, "extra_mb": peak - base,
                  "output_mb": out_mb, "peak_over_output": (peak - base) / out_mb}))
"""


def isolated_memory(what: str, n: int, d: int, depth: int, block: int) -> dict:
    here = str(Path(__file__).resolve().parent)
    out = run_isolated(_MEMORY_CHILD, here, what, str(n), str(d), str(depth), str(block))
    return json.loads(out.strip().splitlines()[-1])


# ---- neural-tangents in its own interpreter ---------------------------------------------

_NT_CHILD = r"""
import json, sys, time, types
sys.modules["neural_tangents.experimental"] = types.ModuleType("neural_tangents.experimental")
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import neural_tangents as nt
from neural_tangents import stax

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024

xpath, outpath, depth, w_std, b_std, batch, mode = sys.argv[1:8]
depth, w_std, b_std, batch = int(depth), float(w_std), float(b_std), int(batch)
x = np.load(xpath)
layers = []
for _ in range(depth):
    layers += [stax.Dense(1, W_std=w_std, b_std=b_std), stax.Relu()]
layers += [stax.Dense(1, W_std=w_std, b_std=b_std)]
kernel_fn = stax.serial(*layers)[2]
full = jax.jit(kernel_fn, static_argnames="get")
batched = nt.batch(kernel_fn, batch_size=batch, store_on_device=False)
res = {"jax": jax.__version__, "nt": getattr(nt, "__version__", "?"), "batch_size": batch}
if mode == "time":
    runs = [("batch", lambda: batched(x, None, "nngp")), ("full", lambda: full(x, None, "nngp"))]
    for name, fn in runs:
        t0 = time.perf_counter()
        np.asarray(fn())
        res[name + "_first_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        K = np.asarray(fn())
        res[name + "_s"] = time.perf_counter() - t0
        if name == "batch":
            np.save(outpath, K)
        del K
else:  # peak memory in this fresh process, as for rgjax (batch: after a warm-up compile)
    if mode == "mem_batch":
        np.asarray(batched(x[: 2 * batch], None, "nngp"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status("VmRSS:")
    K = np.asarray(batched(x, None, "nngp") if mode == "mem_batch" else full(x, None, "nngp"))
    res["peak_over_output"] = (status("VmHWM:") - base) / (K.nbytes / 2**20)
print(json.dumps(res))
"""


def largest_divisor_at_most(n: int, cap: int) -> int:
    return max(b for b in range(1, min(n, cap) + 1) if n % b == 0)


def run_neural_tangents(
    nt_python: str, x: np.ndarray, depth: int, block: int
) -> tuple[dict, np.ndarray]:
    """Time neural-tangents in ``nt_python`` on ``x``; its peak memory in two fresh processes."""
    batch = largest_divisor_at_most(x.shape[0], max(block, 1000))  # nt.batch needs N % batch == 0
    with tempfile.TemporaryDirectory() as tmp:
        xpath, kpath = os.path.join(tmp, "x.npy"), os.path.join(tmp, "K.npy")
        np.save(xpath, x)
        platforms = os.environ.get("JAX_PLATFORMS", "cpu")
        env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS=platforms)
        results = []
        for mode in ("time", "mem_batch", "mem_full"):
            out = subprocess.run(
                [nt_python, "-c", _NT_CHILD, xpath, kpath, str(depth), repr(W_STD), repr(B_STD),
                 str(batch), mode],
                capture_output=True, text=True, env=env, timeout=3600, check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"neural-tangents child ({mode}) failed:\n{out.stderr[-4000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        res = results[0]
        res["batch_peak_over_output"] = results[1]["peak_over_output"]
        res["full_peak_over_output_cold"] = results[2]["peak_over_output"]
        return res, np.load(kpath)


# ---- main --------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--block-size", type=int, default=None,
                   help="gram's block_size (default: gram's own default)")
    p.add_argument("--also-block", type=int, default=1024,
                   help="a second block size to time and measure (0: skip)")
    p.add_argument("--nt-python", default=None,
                   help="python of an env where neural_tangents 0.6.5 imports (jax 0.5.3)")
    p.add_argument("--no-save", action="store_true", help="print only; do not write results/")
    args = p.parse_args()
    default_block = inspect.signature(rgjax.gram).parameters["block_size"].default
    block = args.block_size or default_block
    n, d, depth = args.n, args.d, args.depth

    x = make_inputs(n, d)
    kern = rgjax.fc(depth, "relu", W_STD, B_STD)
    first_s = compile_time(lambda: rgjax.gram(kern, x, block_size=block))  # compile included
    t_rg, K = timed(lambda: rgjax.gram(kern, x, block_size=block), warmup=False)
    compile_s = max(first_s - t_rg, 0.0)
    t_np, K_np = timed(lambda: numpy_relu_nngp(x, depth))
    scale = float(np.max(np.abs(K_np)))
    diff_np = float(np.max(np.abs(K - K_np)))
    assert diff_np <= 1e-10 * scale, diff_np
    del K_np
    res: dict = {
        "n": n, "d": d, "depth": depth, "W_std": W_STD, "b_std": B_STD, "block_size": block,
        "output_mb": K.nbytes / 2**20,
        "rgjax_s": t_rg, "rgjax_first_call_s": first_s, "rgjax_compile_s": compile_s,
        "numpy_s": t_np, "ratio_vs_numpy": t_np / t_rg, "max_abs_diff_numpy": diff_np,
        "max_abs_kernel": scale,
    }
    print(f"gram   N={n} d={d} depth={depth} block={block}: rgjax {t_rg:.2f} s "
          f"(compile {compile_s:.2f} s), numpy {t_np:.2f} s -> ratio {t_np / t_rg:.2f}x, "
          f"max|diff| {diff_np:.1e}")

    if args.also_block and args.also_block != block:
        t_b, K_b = timed(lambda: rgjax.gram(kern, x, block_size=args.also_block))
        res["other_block"] = {"block_size": args.also_block, "rgjax_s": t_b,
                              "ratio_vs_numpy": t_np / t_b,
                              "max_abs_diff_default_block": float(np.max(np.abs(K_b - K)))}
        del K_b
        print(f"       block={args.also_block}: rgjax {t_b:.2f} s -> ratio {t_np / t_b:.2f}x")

    # matrix-free product with 8 columns vs the dense product
    V = np.random.default_rng(1).normal(size=(n, 8))
    op = rgjax.kernels.gram_operator(kern, x)
    t_mv, out = timed(lambda: op(V))
    t_dense, ref = timed(lambda: K @ V, repeat=3)
    rel = float(np.max(np.abs(np.asarray(out) - ref)) / np.max(np.abs(ref)))
    res["matvec"] = {"columns": 8, "operator_s": t_mv, "dense_product_s": t_dense,
                     "operator_over_gram": t_mv / t_rg, "max_rel_diff": rel}
    print(f"matvec K@V (8 cols) without K: {t_mv:.2f} s = {t_mv / t_rg:.2f} x gram time "
          f"(dense product with K in memory: {t_dense * 1e3:.1f} ms)")

    if args.nt_python:
        nt, K_nt = run_neural_tangents(args.nt_python, x, depth, block)
        diff_nt = float(np.max(np.abs(K - K_nt)))
        nt.update({"max_abs_diff": diff_nt, "ratio_batch": nt["batch_s"] / t_rg,
                   "ratio_full": nt["full_s"] / t_rg})
        res["neural_tangents"] = nt
        assert diff_nt <= 1e-10 * scale, diff_nt
        print(f"neural-tangents {nt['nt']} (jax {nt['jax']}): nt.batch({nt['batch_size']}) "
              f"{nt['batch_s']:.2f} s -> ratio {nt['ratio_batch']:.2f}x; whole matrix "
              f"{nt['full_s']:.2f} s -> ratio {nt['ratio_full']:.2f}x; max|diff| {diff_nt:.1e}")
    else:
        res["neural_tangents"] = None
        print("neural-tangents: skipped (pass --nt-python /path/to/python of a jax 0.5.3 env)")

    mem = {"gram_warm": isolated_memory("gram_warm", n, d, depth, block),
           "gram_cold": isolated_memory("gram_cold", n, d, depth, block),
           "numpy": isolated_memory("numpy", n, d, depth, block)}
    if args.also_block and args.also_block != block:
        mem["gram_warm_other_block"] = isolated_memory("gram_warm", n, d, depth, args.also_block)
    res["memory"] = mem
    print(f"peak memory / N² output ({mem['gram_warm']['output_mb']:.0f} MB): gram "
          f"{mem['gram_warm']['peak_over_output']:.2f} (after compile; goal <= 1.2), "
          f"{mem['gram_cold']['peak_over_output']:.2f} (first call, compilation included); "
          f"numpy {mem['numpy']['peak_over_output']:.2f}"
          + (f"; gram block={args.also_block} "
             f"{mem['gram_warm_other_block']['peak_over_output']:.2f}"
             if "gram_warm_other_block" in mem else "")
          + (f"; neural-tangents batch {res['neural_tangents']['batch_peak_over_output']:.2f} "
             f"(after compile), whole {res['neural_tangents']['full_peak_over_output_cold']:.2f} "
             "(first call)"
             if res["neural_tangents"] else ""))
    res["peak_rss_mb_parent"] = peak_rss_mb()
    if not args.no_save:
        save("kernels", res)
    else:
        print(json.dumps({"machine": machine(), **res}, indent=1))


if __name__ == "__main__":
    main()
