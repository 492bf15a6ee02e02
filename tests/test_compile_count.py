"""How many XLA programs a default ``rgjax curve`` run compiles (docs/theory.md §7).

The job runs in a fresh Python process (so that programs compiled by earlier tests cannot hide
its compiles), on the CPU, in float64 and without the persistent compilation cache. Two records
of each compile are kept: the backend-compile duration event of ``jax.monitoring`` (the count)
and the ``jax_log_compiles`` line (the program's name with its argument shapes). No eager
``jnp`` call may remain in the pipeline: every stage is one jitted program, compiled once.
"""

import collections
import json
import os
import subprocess
import sys

from rgjax._trials import padded_size
from rgjax.jobs._pipeline import default_etas

#: The pool of the measured run.
N_POOL = 200

#: At most this many programs for a whole run (it compiles 16 at N = 200): gram tile, Gram
#: checks, eigh, spectrum assembly, theories, cutoff and reweighted RG, functional flow, ridge
#: flow, the PRNG key, the definiteness probe of the empirical stage, the two fingerprint probes,
#: the permutations and the nested-trial program
#: (independent draws add one trial program per padded system size).
MAX_PROGRAMS = 25
#: The job's own stages: each is one program, compiled exactly once per run.
STAGES = ("gram_tile", "_gram_stats", "_dense_eigh", "_assemble_arrays", "_theory_arrays",
          "_rg_cutoff", "_mse_reweighted", "_ridge_profile", "_ridge_flow", "permutations",
          "_nested_chunk", "_psd_probe")

_SCRIPT = r"""
import json, logging, sys, tempfile
import jax
from jax import monitoring

jax.config.update("jax_enable_x64", True)
events, logged = [], []
EVENT = "/jax/core/compile/backend_compile_duration"

def listener(event, duration, **kwargs):
    if event == EVENT:
        name = kwargs.get("fun_name", "?")
        events.append(name[4:-1] if name.startswith("jit(") else name)

class Handler(logging.Handler):
    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            logged.append(msg.split(" Argument mapping")[0])

monitoring.register_event_duration_secs_listener(listener)
log = logging.getLogger("jax._src.interpreters.pxla")
log.addHandler(Handler())
log.propagate = False
jax.config.update("jax_log_compiles", True)

from rgjax.jobs.curve import CurveConfig, run

run(CurveConfig(pool_size=int(sys.argv[1]), trials=2, source="bundled",
                nested=sys.argv[2] == "nested"), tempfile.mkdtemp(),
    progress=False, plots=False, log=lambda *_: None)
print(json.dumps({"events": events, "logged": logged}))
"""


def _compiles(tmp_path, pool_size, draws="nested"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1", RGJAX_COMPILE_CACHE="0",
               RGJAX_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(pool_size), draws], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_curve_compiles_each_stage_once(tmp_path):
    out = _compiles(tmp_path, N_POOL)
    events, logged = out["events"], out["logged"]
    names = collections.Counter(events)
    listing = "\n".join(logged)
    # Both records see the same compiles, and the event names the program being compiled.
    assert len(events) == len(logged) > 0, listing
    # No program compiled twice for the same argument shapes.
    twice = [line for line, n in collections.Counter(logged).items() if n > 1]
    assert not twice, "\n".join(twice)
    # Each of the job's stages is one program, compiled once.
    for stage in STAGES:
        assert names[stage] == 1, (stage, names[stage], listing)
    # No eager op-by-op program: everything else is the key, probes and trial programs.
    others = set(names) - set(STAGES)
    assert others <= {"_threefry_seed", "stage", "_probe_values"}, listing
    assert names["stage"] <= 1 and names["_probe_values"] <= 2, listing  # the key's seed; K and y
    assert len(events) <= MAX_PROGRAMS, listing


def test_independent_draws_compile_one_trial_program_per_padded_size(tmp_path):
    # --no-nested: the trials of each η run in a program per padded system size (η is traced),
    # and nothing else changes.
    out = _compiles(tmp_path, N_POOL, draws="independent")
    names, logged = collections.Counter(out["events"]), out["logged"]
    listing = "\n".join(logged)
    sizes = {padded_size(int(eta), N_POOL) for eta in default_etas(N_POOL)}
    assert names["_independent_chunk"] == len(sizes), listing
    assert names["_nested_chunk"] == 0, listing
    # The same argument shapes twice only for the trial program (its size is static).
    twice = [line for line, n in collections.Counter(logged).items()
             if n > 1 and "_independent_chunk" not in line]
    assert not twice, "\n".join(twice)
    assert len(out["events"]) <= MAX_PROGRAMS, listing
