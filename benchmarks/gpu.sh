#!/usr/bin/env bash
# The GPU benchmark in one run (JAX with CUDA already installed; no network needed).
#
#   bash benchmarks/gpu.sh                     # on the GPU machine, from the repository root
#   RGJAX_GPU_SMOKE=1 bash benchmarks/gpu.sh   # tiny sizes on any machine (checks the script)
#
# It installs rgjax without touching the installed JAX (its other dependencies from ./.whl when
# that folder holds wheels, installed into build/gpu-site inside the repository), prints the
# device, then runs `rgjax bench` (`--quick` for the smoke run) into $OUT (default
# benchmarks/results/bench-gpu). On a GPU its default ladder covers float64 dense eigh at
# N = 4k…20k (20k is 3.2 GB > 2^31 bytes, cuSOLVER's limit: rgjax.from_gram's fallback to top-k
# is recorded), top-k at N = 50k, the four theories, the empirical curve, the toy Monte Carlo and
# the whole `rgjax curve` pipeline at N = 10k; every stage against its CPU baseline where one is
# installed. bench.json and bench.md are then copied to benchmarks/results/bench_<platform>.*.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  site="$PWD/build/gpu-site"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl \
    && export PYTHONPATH="$site:${PYTHONPATH:-}"
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || export PYTHONPATH="$PWD:${PYTHONPATH:-}"
nvidia-smi 2>/dev/null | head -15 || echo "no nvidia-smi"
python3 -c "import jax, rgjax; print('jax', jax.__version__, jax.devices(), 'rgjax', rgjax.__version__)" || exit 1
out="${OUT:-benchmarks/results/bench-gpu}"
python3 -m rgjax.cli bench --out "$out" ${RGJAX_GPU_SMOKE:+--quick}
rc=$?
platform=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['resolved']['platform'])" "$out/bench.json" 2>/dev/null || echo unknown)
cp "$out/bench.json" "benchmarks/results/bench_${platform}.json" 2>/dev/null
cp "$out/bench.md" "benchmarks/results/bench_${platform}.md" 2>/dev/null
exit $rc
