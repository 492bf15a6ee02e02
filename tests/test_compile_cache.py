"""The persistent compilation cache: enable/disable/status, the environment variable, a second
process that loads what the first compiled, and the command's default (on) and its switches."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from rgjax import cli, compile_cache

ROOT = Path(__file__).resolve().parents[1]
#: The JAX options that rgjax.compile_cache sets.
OPTIONS = ("jax_compilation_cache_dir", "jax_enable_compilation_cache",
           "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture(autouse=True)
def _jax_config():
    """Put JAX's cache options back as they were: the test process must not keep a cache on."""
    saved = {name: getattr(jax.config, name) for name in OPTIONS}
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    jax_cache.reset_cache()


def test_enable_disable_status_round_trip(tmp_path):
    assert not compile_cache.status().enabled
    folder = compile_cache.enable(tmp_path / "cc", min_compile_time_s=0.0)
    assert folder == (tmp_path / "cc").resolve() and folder.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(folder)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    s = compile_cache.status()
    assert s == compile_cache.CacheStatus(folder, True, 0, 0)
    assert compile_cache.status(tmp_path / "elsewhere").enabled is False

    jax.jit(lambda x: x * 3.0 + 1.0)(jax.numpy.arange(7.0)).block_until_ready()
    s = compile_cache.status()
    assert s.enabled and s.files >= 1 and s.size_bytes > 0  # small programs are cached too

    compile_cache.disable()
    assert jax.config.jax_compilation_cache_dir is None
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0  # JAX's default again
    off = compile_cache.status(folder)
    assert not off.enabled and off.files == s.files  # the entries stay on disk
    assert not compile_cache.status().enabled


def test_enable_moves_an_open_cache(tmp_path):
    compile_cache.enable(tmp_path / "a")
    jax.jit(lambda x: x - 2.5)(jax.numpy.ones(5)).block_until_ready()
    compile_cache.enable(tmp_path / "b")
    jax.jit(lambda x: x / 4.5)(jax.numpy.ones(5)).block_until_ready()
    assert compile_cache.status(tmp_path / "b").files >= 1


def test_default_folder_follows_rgjax_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "rc"))
    assert compile_cache.default_folder() == tmp_path / "rc" / "jax-compile"
    assert compile_cache.enable() == (tmp_path / "rc" / "jax-compile").resolve()


def test_bad_inputs_are_one_clear_error(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder.*RGJAX_COMPILE_CACHE"):
        compile_cache.enable(f)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_compile_time_s"):
            compile_cache.enable(tmp_path, min_compile_time_s=bad)
    with pytest.raises(TypeError, match="folder path"):
        compile_cache.enable(3)  # pyright: ignore[reportArgumentType]
    assert jax.config.jax_compilation_cache_dir is None  # nothing was turned on


def test_a_file_as_the_folder_is_a_one_line_cli_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("RGJAX_COMPILE_CACHE", str(tmp_path / "f"))
    assert cli.main(["demo", "--pool-size", "60"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "RGJAX_COMPILE_CACHE" in err
    assert cli.main(["--no-compile-cache", "demo", "--pool-size", "60"]) == 0


def test_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "rc"))
    default = tmp_path / "rc" / "jax-compile"
    env = compile_cache.folder_from_env
    assert env({}) == default and env({"RGJAX_COMPILE_CACHE": "  "}) == default
    for off in ("0", "off", "OFF", "false", "False", "no", " 0 "):
        assert env({"RGJAX_COMPILE_CACHE": off}) is None, off
    assert env({"RGJAX_COMPILE_CACHE": str(tmp_path / "x")}) == tmp_path / "x"
    assert env({"RGJAX_COMPILE_CACHE": "~/cc"}) == Path.home() / "cc"
    monkeypatch.setenv("RGJAX_COMPILE_CACHE", "off")
    assert env() is None


SCRIPT = textwrap.dedent("""
    import sys
    import jax
    import jax.numpy as jnp
    from rgjax import compile_cache

    hits = []
    jax.monitoring.register_event_listener(
        lambda name, **kw: hits.append(name) if name.endswith("/cache_hits") else None)
    compile_cache.enable(sys.argv[1])

    @jax.jit
    def f(x):
        return jnp.sin(x) @ jnp.cos(x).T + jnp.tanh(x).sum()

    print(float(f(jnp.arange(12.0).reshape(3, 4)).sum()), len(hits))
""")


def _python(args, env=None, timeout=300):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    folder = tmp_path / "cc"
    value1, hits1 = _python(["-c", SCRIPT, str(folder)]).split()
    files = compile_cache.status(folder).files
    value2, hits2 = _python(["-c", SCRIPT, str(folder)]).split()
    assert int(hits1) == 0 and files >= 1  # the first process compiled and wrote
    assert int(hits2) >= 1  # the second one loaded instead of compiling
    assert value2 == value1  # bit-identical (repr of the same float)
    assert compile_cache.status(folder).files == files  # nothing new written


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "RGJAX_COMPILE_CACHE"}
    return {**env, **extra}


def test_the_command_caches_by_default_and_its_switches_turn_it_off(tmp_path):
    """In fresh processes without RGJAX_COMPILE_CACHE (the test session sets it to 0)."""
    demo = ["-m", "rgjax.cli", "demo", "--pool-size", "60"]
    env = _clean_env(RGJAX_CACHE=str(tmp_path / "rc"))
    folder = tmp_path / "rc" / "jax-compile"
    _python(["-m", "rgjax.cli", "--no-compile-cache", *demo[2:]], env)
    _python([*demo, "--no-compile-cache"], env)
    _python(demo, {**env, "RGJAX_COMPILE_CACHE": "0"})
    assert not folder.exists()
    _python(demo, env)
    assert compile_cache.status(folder).files >= 10
    moved = tmp_path / "moved"
    _python(demo, {**env, "RGJAX_COMPILE_CACHE": str(moved)})
    assert compile_cache.status(moved).files >= 10


def test_in_process_cli_leaves_the_cache_off(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "rc"))
    monkeypatch.delenv("RGJAX_COMPILE_CACHE", raising=False)
    assert cli.main(["--no-compile-cache", "demo", "--pool-size", "60"]) == 0
    assert jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv("RGJAX_COMPILE_CACHE", "0")
    assert cli.main(["demo", "--pool-size", "60"]) == 0
    assert jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv("RGJAX_COMPILE_CACHE", str(tmp_path / "on"))
    assert cli.main(["demo", "--pool-size", "60"]) == 0  # the fixture turns it off afterwards
    assert compile_cache.status().enabled  # (programs compiled above stay in memory, unwritten)
    assert compile_cache.status().folder == (tmp_path / "on").resolve()
    capsys.readouterr()


def test_doctor_row(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RGJAX_CACHE", str(tmp_path / "rc"))
    monkeypatch.delenv("RGJAX_COMPILE_CACHE", raising=False)
    assert cli.main(["doctor"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "compile cache" in line)
    assert str(tmp_path / "rc" / "jax-compile") in row and "(on; 0 files, 0.0 MB" in row
    assert cli.main(["--no-compile-cache", "doctor"]) == 0
    assert "(off: --no-compile-cache" in capsys.readouterr().out
    monkeypatch.setenv("RGJAX_COMPILE_CACHE", "off")
    assert "(off: RGJAX_COMPILE_CACHE=off" in dict(cli.doctor_report())["compile cache"]
    monkeypatch.setenv("RGJAX_COMPILE_CACHE", str(tmp_path / "cc"))
    (tmp_path / "cc").mkdir()
    (tmp_path / "cc" / "k-cache").write_bytes(b"\0" * 250_000)
    row = dict(cli.doctor_report())["compile cache"]
    assert row.startswith(str(tmp_path / "cc")) and "(on; 1 files, 0.2 MB" in row
    assert jax.config.jax_compilation_cache_dir is None  # doctor only reports
