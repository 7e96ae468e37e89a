"""The "cpu" kernels' on-disk cache (sanmini.ops.numba_cache): on by default, keyed by the ops'
sources, overridable and disableable; a second process compiles nothing."""
import json
import os
import subprocess
import sys
from pathlib import Path

from sanmini.ops import numba_cache
from sanmini.ops.numba_cache import cache_key, kernel_cache_dir


def test_the_key_changes_with_any_source_and_only_then():
    sources = {"cpu.py": "kernels", "elementwise.py": "per-element math"}
    assert cache_key(sources) == cache_key(dict(sources))
    assert cache_key({**sources, "elementwise.py": "per-element math, changed"}) != cache_key(sources)
    assert cache_key() == cache_key({p.name: p.read_text() for p in numba_cache.OPS_DIR.glob("*.py")})


def test_the_folder_by_default_override_and_off(tmp_path):
    key = f"sanmini-ops-{cache_key()}"
    assert kernel_cache_dir({"XDG_CACHE_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg" / "sanmini" / "numba" / key
    assert kernel_cache_dir({"NUMBA_CACHE_DIR": str(tmp_path / "nb")}) == tmp_path / "nb" / key
    assert kernel_cache_dir({"SANMINI_NUMBA_CACHE": str(tmp_path / "mine"), "NUMBA_CACHE_DIR": "x"}) == \
        tmp_path / "mine" / key
    assert (tmp_path / "mine" / key).is_dir()
    for off in ("0", "off"):
        assert kernel_cache_dir({"SANMINI_NUMBA_CACHE": off}) is None
    (tmp_path / "file").write_text("not a folder")
    assert kernel_cache_dir({"SANMINI_NUMBA_CACHE": str(tmp_path / "file")}) is None   # no cache, no error


FIRST_STEP = """
import json, torch
import numba
from sanmini import ops
from sanmini.ops import cpu
x = torch.randn(1, 8, 10, 10, requires_grad=True)
w = torch.randn(1, 2, 9, 100, requires_grad=True)
y = ops.aggregation(x, w, 3, padding=1, pad_mode="reflect", backend="cpu")
d = ops.subtraction2(x, x * 2, 3, padding=1, backend="cpu")
(y.sum() + d.sum()).backward()
kernels = [k for k in vars(cpu).values() if isinstance(k, numba.core.dispatcher.Dispatcher)]
print(json.dumps({"dir": str(cpu.CACHE_DIR), "user_dir": numba.config.CACHE_DIR,
                  "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
                  "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels)}))
"""


def _first_step(env):
    done = subprocess.run([sys.executable, "-c", FIRST_STEP], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_kernels_instead_of_compiling_them(tmp_path):
    env = {**os.environ, "SANMINI_NUMBA_CACHE": str(tmp_path), "NUMBA_CACHE_DIR": ""}
    first, second = _first_step(env), _first_step(env)
    assert Path(first["dir"]) == tmp_path / f"sanmini-ops-{cache_key()}"
    assert first["misses"] > 0                                  # compiled and saved
    assert second["hits"] > 0 and second["misses"] == 0        # loaded, nothing compiled
    assert first["user_dir"] == ""                              # Numba's own setting restored
    off = _first_step({**env, "SANMINI_NUMBA_CACHE": "0"})
    assert off["dir"] == "None" and off["hits"] == 0
