#!/usr/bin/env bash
# The GPU benchmark in one run (JAX with CUDA already installed; no network needed).
#
#   bash benchmarks/gpu.sh                     # on the GPU machine, from the repository root
#   RGJAX_GPU_SMOKE=1 bash benchmarks/gpu.sh   # tiny sizes on any machine (checks the script)
#
# It installs rgjax without touching the installed JAX (its other dependencies from ./.whl when
# that folder holds wheels, installed into build/gpu-site inside the repository), then records, into
# benchmarks/results/gpu_<backend>.json (and $OUT/ when set):
#   1. device info (nvidia-smi, jax devices, versions);
#   2. float64 dense eigh at N = 8k, 16k, 20k (20k is 3.2 GB > 2^31 bytes: cuSOLVER's limit; the
#      failure is recorded, and rgjax.from_gram's fallback to top-k is exercised);
#   3. the top-k path at N = 50k (Gram built on the GPU, top-256 + trace);
#   4. the full `rgjax curve` pipeline on an N = 10k synthetic task (top-k and dense).
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
python3 benchmarks/bench_gpu.py ${RGJAX_GPU_SMOKE:+--smoke}
rc=$?
if [ -n "${OUT:-}" ]; then cp benchmarks/results/gpu_*.json "$OUT"/ 2>/dev/null; fi
exit $rc
